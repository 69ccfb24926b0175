//! `propensity demo`: the whole offline pipeline in one command with no
//! setup — generate traffic, train one model per outcome, evaluate them on
//! fresh traffic and replay that traffic into offers — then a short report
//! and where the files are.

use std::io::Write;
use std::path::Path;
use std::time::Instant;

use anyhow::Result;
use propensity_simulator::SimulationParams;

use crate::config_file::Config;
use crate::offline::{
    evaluate, generate_files, print_evaluation, print_replay_summary, print_train_report,
    replay_files, train, ReplayArgs, TrainOptions,
};
use crate::progress::Progress;

/// Sizes of the demo's two traffic sets.
pub struct DemoSize {
    /// Visitors in the training set.
    pub train_visitors: usize,
    /// Visitors in the evaluation/replay set.
    pub eval_visitors: usize,
}

/// Runs the demo into `out`. Each phase clears its bars before the report
/// goes on, so `w` may be the same terminal.
pub fn run_demo(
    config: &Config,
    out: &Path,
    size: &DemoSize,
    w: &mut impl Write,
    progress: &Progress,
) -> Result<()> {
    let started = Instant::now();
    let train_dir = out.join("train-traffic");
    let eval_dir = out.join("eval-traffic");
    let models = out.join("models");
    let report = out.join("report");
    writeln!(w, "Propensity demo → {}", out.display())?;

    let train_params = SimulationParams {
        visitors: size.train_visitors,
        seed: 1,
        ..SimulationParams::default()
    };
    let t = generate_files(&train_params, &train_dir, progress)?;
    let eval_params = SimulationParams {
        visitors: size.eval_visitors,
        seed: 2,
        invalid_rate: 0.01,
        ..SimulationParams::default()
    };
    let e = generate_files(&eval_params, &eval_dir, progress)?;
    writeln!(
        w,
        "\n1. generated traffic: training {} visitors / {} events, evaluation {} visitors / {} events (+{} malformed lines)",
        t.visitors, t.events, e.visitors, e.events, e.invalid_lines
    )?;

    writeln!(
        w,
        "\n2. trained one logistic-regression model per outcome (consented events only):"
    )?;
    let tr = train(
        config,
        &train_dir.join("events.jsonl"),
        &train_dir.join("consent.jsonl"),
        &models,
        &TrainOptions::default(),
        progress,
    )?;
    print_train_report(&tr, w)?;

    writeln!(w, "\n3. evaluated on the evaluation traffic:")?;
    let ev = evaluate(
        config,
        &eval_dir.join("events.jsonl"),
        &eval_dir.join("consent.jsonl"),
        &models,
        Some(&report),
        progress,
    )?;
    print_evaluation(&ev, w)?;

    writeln!(
        w,
        "\n4. replayed the evaluation traffic through the engine:"
    )?;
    let offers = out.join("offers.jsonl");
    let summary = replay_files(
        config,
        &ReplayArgs {
            events: &eval_dir.join("events.jsonl"),
            consent: &eval_dir.join("consent.jsonl"),
            models: &models,
            offers_out: &offers,
            scores_out: Some(&out.join("scores.jsonl")),
            decisions_out: Some(&out.join("decisions.jsonl")),
            feedback: None,
            conversions_out: Some(&out.join("conversions.jsonl")),
            dead_letters_out: Some(&out.join("dead-letters.jsonl")),
            summary_json: Some(&out.join("summary.json")),
            adaptive_out: None,
        },
        None,
        progress,
    )?;
    print_replay_summary(&summary, w)?;
    writeln!(
        w,
        "\nfiles: {} (offers.jsonl, decisions.jsonl, conversions.jsonl, scores.jsonl, dead-letters.jsonl, summary.json, models/, report/report.html and *.png)",
        out.display()
    )?;
    writeln!(w, "done in {:.1} s", started.elapsed().as_secs_f64())?;
    Ok(())
}
