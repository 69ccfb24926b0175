//! The offline commands on JSON-lines files: generate, train, evaluate and
//! replay. Each is a function from arguments to a report, so `demo` can
//! chain them and tests can call them without a process.
//!
//! Why one file of this size: the four commands share the replay helpers
//! and the two-pass example collection, and each report's printer sits
//! beside the command that builds it.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use propensity_engine::engine::ControlGroupResult;
use propensity_engine::features::{Vocabulary, VocabularyField};
use propensity_engine::replay::{replay, ReplaySources};
use propensity_engine::{Engine, EngineSink, EngineSummary, ModelSet};
use propensity_simulator::{
    generate, write_lines, GeneratedTraffic, SimulationParams, TrafficSummary,
};
use propensity_training::report::{expected_calibration_error, BusinessView};
use propensity_training::{
    evaluate_outcomes, select_outcomes, train_checked, train_outcomes, ExampleCollector,
    OutcomeEvaluation, SearchPlan, SkippedOutcome, TrainedOutcome,
};
use serde::Serialize;

use crate::config_file::Config;
use crate::jsonl::{create_output, read_inputs, FileSink, InputFile};
use crate::model_files::{
    load_models, save_artifact, save_skip_marker, serve, ServedModels, SkipMarker,
};
use crate::progress::{Progress, Unit};
use crate::vocabulary_pass::learn_vocabulary;

/// Lines written per step of `generate`'s bar.
const WRITE_CHUNK: usize = 16_384;

/// Writes generated traffic to `<out>/events.jsonl` and
/// `<out>/consent.jsonl` (and a summary), returning the summary.
pub fn generate_files(
    params: &SimulationParams,
    out: &Path,
    progress: &Progress,
) -> Result<TrafficSummary> {
    // The simulator reports nothing until it is done: a spinner.
    let spinner = progress.spinner(format!("generating {} visitors", params.visitors));
    let traffic = generate(params).context("cannot generate traffic")?;
    spinner.finish_and_clear();
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let total = traffic.events.len() + traffic.consent.len();
    let bar = progress.bar("writing records", Unit::Records, Some(total as u64));
    for (name, lines) in [
        ("events.jsonl", &traffic.events),
        ("consent.jsonl", &traffic.consent),
    ] {
        let path = out.join(name);
        let mut w = create_output(&path)?;
        for chunk in lines.chunks(WRITE_CHUNK) {
            write_lines(chunk, &mut w)
                .with_context(|| format!("cannot write {}", path.display()))?;
            bar.inc(chunk.len() as u64);
        }
        w.flush()?;
    }
    bar.finish_and_clear();
    let mut w = create_output(&out.join("traffic-summary.json"))?;
    serde_json::to_writer_pretty(&mut w, &traffic.summary)?;
    w.flush()?;
    Ok(traffic.summary)
}

/// Training examples and the configuration they were collected under.
pub struct Collected {
    /// The configuration with its features compiled with the vocabulary
    /// learned from the same events: train with it, and the artifacts
    /// carry that vocabulary.
    pub config: Config,
    /// The examples.
    pub examples: ExampleCollector,
    /// The engine's counts while collecting.
    pub input: EngineSummary,
}

/// Where the vocabulary of open-ended values comes from when collecting
/// examples.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VocabularySource {
    /// Learn it from the same input (a first replay).
    Learn,
    /// Keep the one `config`'s features were compiled with (the deployed
    /// models', with `train --vocabulary-from`, so that the new models
    /// hot-reload into a running engine; or the models' being evaluated).
    Keep,
}

/// Runs the engine without models over both files and collects training
/// examples (consented events only, production features), after a first
/// replay that learns the vocabulary when asked to (consented events only
/// too). One engine holds every partition; `config.engine` places visitors
/// among `kafka.partitions`, with clocks and bounds per partition, so the
/// examples are the ones `run`'s per-partition engines would see.
pub fn collect_examples(
    config: &Config,
    events: &Path,
    consent: &Path,
    vocabulary: VocabularySource,
    progress: &Progress,
) -> Result<Collected> {
    let (ev, co) = read_inputs(events, consent, progress)?;
    let sources = ReplaySources {
        events: &ev.name,
        consent: &co.name,
        feedback: "",
    };
    let lines = (ev.lines(), co.lines());
    let lines = (lines.0.as_slice(), lines.1.as_slice());
    match vocabulary {
        VocabularySource::Learn => collect_lines(config, lines, &sources, progress),
        VocabularySource::Keep => Ok(examples_under(config.clone(), lines, &sources, progress)),
    }
}

/// [`collect_examples`] on records in memory.
fn collect_lines(
    config: &Config,
    lines: (&[&[u8]], &[&[u8]]),
    sources: &ReplaySources<'_>,
    progress: &Progress,
) -> Result<Collected> {
    let config = learn_vocabulary(config, |engine, sink| {
        replay_lines(
            engine,
            lines,
            &[],
            sources,
            sink,
            progress,
            "learning vocabularies",
        );
    })?;
    Ok(examples_under(config, lines, sources, progress))
}

/// Training examples of records in memory under `config`'s features as
/// they are (no vocabulary is learned).
fn examples_under(
    config: Config,
    lines: (&[&[u8]], &[&[u8]]),
    sources: &ReplaySources<'_>,
    progress: &Progress,
) -> Collected {
    let mut engine = Engine::new(
        config.engine.clone(),
        ModelSet::empty(config.engine.outcomes.len()),
    );
    let mut examples =
        ExampleCollector::new(config.engine.outcomes.len(), config.engine.features.dim());
    replay_lines(
        &mut engine,
        lines,
        &[],
        sources,
        &mut examples,
        progress,
        "collecting examples",
    );
    let input = EngineSummary::new(engine.counters(), &config.engine);
    Collected {
        config,
        examples,
        input,
    }
}

/// Replays both files (and the feedback file, when given) through
/// `engine` into `sink` in record-time order, under a progress bar
/// labelled `label`.
pub(crate) fn replay_inputs(
    engine: &mut Engine,
    (ev, co): (&InputFile, &InputFile),
    feedback: Option<&InputFile>,
    sink: &mut impl EngineSink,
    progress: &Progress,
    label: &'static str,
) {
    let sources = ReplaySources {
        events: &ev.name,
        consent: &co.name,
        feedback: feedback.map_or("", |f| f.name.as_str()),
    };
    replay_lines(
        engine,
        (&ev.lines(), &co.lines()),
        &feedback.map(InputFile::lines).unwrap_or_default(),
        &sources,
        sink,
        progress,
        label,
    );
}

/// Replays event, consent and feedback records through `engine` into
/// `sink` in record-time order, under a progress bar labelled `label`.
fn replay_lines(
    engine: &mut Engine,
    (ev, co): (&[&[u8]], &[&[u8]]),
    fb: &[&[u8]],
    sources: &ReplaySources<'_>,
    sink: &mut impl EngineSink,
    progress: &Progress,
    label: &'static str,
) {
    let total = ev.len() + co.len() + fb.len();
    let bar = progress.bar(label, Unit::Records, Some(total as u64));
    replay(engine, ev, co, fb, sources, sink, |n| {
        bar.set_position(n as u64)
    });
    bar.finish_and_clear();
}

/// What `train` reports.
#[derive(Debug, Serialize)]
pub struct TrainReport {
    /// Per trained outcome.
    pub outcomes: Vec<TrainedOutcome>,
    /// Outcomes not trained (too few positives), with why; no artifact was written.
    pub skipped: Vec<SkippedOutcome>,
    /// Every warning (skips, failed holdout checks, dead-lettered input), one line each,
    /// without the `warning: ` prefix.
    pub warnings: Vec<String>,
    /// Where artifacts went.
    pub model_dir: PathBuf,
    /// The engine's counts while collecting (dead letters by reason included).
    pub input: EngineSummary,
    /// The vocabulary learned from the input (stored in every artifact).
    pub vocabulary: Vocabulary,
}

/// Options of `train` beyond the files.
#[derive(Debug, Clone, Default)]
pub struct TrainOptions {
    /// Train only these outcomes (`--outcomes`); `None`: all configured.
    pub outcomes: Option<Vec<String>>,
    /// `--strict`: any warning fails the command before an artifact is written.
    pub strict: bool,
    /// `--vocabulary-from`: keep the vocabulary of the models in this
    /// directory rather than learning one.
    pub vocabulary_from: Option<PathBuf>,
}

/// The warning about input records the engine dead-lettered (malformed lines and the like),
/// with the count by reason; `None` when there were none.
fn dead_letter_warning(input: &EngineSummary) -> Option<String> {
    let total = input.events_dead_lettered + input.consent_dead_lettered;
    if total == 0 {
        return None;
    }
    Some(format!(
        "{total} input records were dead-lettered and not used for training ({} events, {} consent; by reason: {})",
        input.events_dead_lettered,
        input.consent_dead_lettered,
        by_reason(&input.dead_letters_by_reason)
    ))
}

fn by_reason(counts: &std::collections::BTreeMap<String, u64>) -> String {
    if counts.is_empty() {
        return "none".into();
    }
    counts
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `propensity train`: collects examples, trains the selected outcomes that have enough
/// positives, checks their holdouts, and writes one artifact per trained outcome. Warnings
/// are returned in the report (the caller prints them); with `options.strict` any warning
/// is an error instead, and nothing is written.
pub fn train(
    config: &Config,
    events: &Path,
    consent: &Path,
    out: &Path,
    options: &TrainOptions,
    progress: &Progress,
) -> Result<TrainReport> {
    let names: Vec<&str> = config
        .engine
        .outcomes
        .iter()
        .map(|o| o.name.as_str())
        .collect();
    // Before reading any input: a typo in --outcomes fails at once.
    select_outcomes(&names, options.outcomes.as_deref()).context("--outcomes")?;
    let Collected {
        config,
        examples,
        input,
    } = match &options.vocabulary_from {
        None => collect_examples(config, events, consent, VocabularySource::Learn, progress)?,
        Some(dir) => {
            let deployed = load_models(dir, config)
                .with_context(|| format!("--vocabulary-from {}", dir.display()))?;
            collect_examples(
                &deployed.config,
                events,
                consent,
                VocabularySource::Keep,
                progress,
            )?
        }
    };
    // Outcomes are fitted in parallel and the callback only tells when each
    // starts, so a spinner counting starts: a bar would be full while the
    // fits still run.
    let spinner = progress.spinner("fitting models");
    let mut started = 0;
    let plan = config.training_plan();
    let checked = train_checked(
        &config.engine,
        &examples,
        &plan,
        &SearchPlan::around(&plan.fit),
        &config.quality_checks(),
        options.outcomes.as_deref(),
        |name, _, n| {
            started += 1;
            spinner.set_message(format!(
                "fitting models: {started}/{n} started, last {name}"
            ));
        },
    )
    .context("training failed")?;
    spinner.finish_and_clear();
    let mut warnings: Vec<String> = dead_letter_warning(&input).into_iter().collect();
    warnings.extend(checked.warnings.iter().map(|w| w.message.clone()));
    if options.strict && !warnings.is_empty() {
        bail!(
            "--strict: {} warning(s), no models written:\n  warning: {}",
            warnings.len(),
            warnings.join("\n  warning: ")
        );
    }
    for t in &checked.trained {
        save_artifact(out, &t.artifact)?;
    }
    for s in &checked.skipped {
        let marker = SkipMarker {
            outcome: s.outcome.clone(),
            reason: s.reason.clone(),
        };
        let vocabulary = config.engine.features.vocabulary();
        if let Some(aside) = save_skip_marker(out, &marker, vocabulary)? {
            warnings.push(format!(
                "outcome '{}' was skipped and its previous model, from another vocabulary, was moved to {}",
                s.outcome,
                aside.display()
            ));
        }
    }
    Ok(TrainReport {
        outcomes: checked.trained,
        skipped: checked.skipped,
        warnings,
        model_dir: out.to_path_buf(),
        input,
        vocabulary: config.engine.features.vocabulary().clone(),
    })
}

/// Prints a training report: the input counts, a table of the trained outcomes, the skipped
/// ones and the warnings.
pub fn print_train_report(r: &TrainReport, w: &mut impl Write) -> Result<()> {
    writeln!(
        w,
        "input: {} events consumed, {} dead-lettered; {} consent records, {} dead-lettered; dead letters by reason: {}",
        r.input.events_consumed,
        r.input.events_dead_lettered,
        r.input.consent_consumed,
        r.input.consent_dead_lettered,
        by_reason(&r.input.dead_letters_by_reason)
    )?;
    let learned: Vec<String> = VocabularyField::ALL
        .iter()
        .map(|f| format!("{} {}", f.key(), r.vocabulary.values(*f).len()))
        .collect();
    writeln!(
        w,
        "vocabulary learned (values with a feature of their own): {}",
        learned.join(", ")
    )?;
    writeln!(
        w,
        "{:<22} {:>9} {:>9} {:>12} {:>14} {:>8}",
        "outcome", "rows", "positive", "holdout AUC", "holdout logloss", "ECE"
    )?;
    for t in &r.outcomes {
        let (auc, ll, ece) = t
            .holdout
            .as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN), |h| {
                (
                    h.auc.unwrap_or(f64::NAN),
                    h.log_loss,
                    expected_calibration_error(&h.calibration),
                )
            });
        writeln!(
            w,
            "{:<22} {:>9} {:>9} {:>12.3} {:>14.4} {:>8.3}",
            t.artifact.outcome, t.train_rows, t.train_positives, auc, ll, ece
        )?;
    }
    for s in &r.skipped {
        writeln!(w, "skipped {}: {}", s.outcome, s.reason)?;
    }
    writeln!(w, "models written to {}", r.model_dir.display())?;
    if !r.warnings.is_empty() {
        writeln!(w, "{} warning(s):", r.warnings.len())?;
        for line in &r.warnings {
            writeln!(w, "  {line}")?;
        }
    }
    Ok(())
}

/// What `evaluate` reports.
#[derive(Debug, Serialize)]
pub struct EvaluationSummary {
    /// Per outcome.
    pub outcomes: Vec<OutcomeEvaluation>,
    /// Offers per action map on the evaluated traffic (engine with the models).
    pub business: BusinessView,
    /// Files written with `--report`.
    pub report_files: Vec<PathBuf>,
    /// Feature names in vector order (for the drift lines).
    pub feature_names: Vec<String>,
}

/// `propensity evaluate`.
pub fn evaluate(
    config: &Config,
    events: &Path,
    consent: &Path,
    models_dir: &Path,
    report_dir: Option<&Path>,
    progress: &Progress,
) -> Result<EvaluationSummary> {
    let ServedModels { config, models } = load_models(models_dir, config)?;
    let config = &config;
    // The engine runs with the models so the action maps fire: the examples are the same,
    // and the offers give the report's business view.
    let (examples, business, drift) = crate::report::collect_examples_and_offers(
        config,
        events,
        consent,
        models.clone(),
        progress,
    )?;
    let spinner = progress.spinner("scoring and measuring");
    let outcomes = evaluate_outcomes(&config.engine, &models, &examples, &drift)
        .context("evaluation failed")?;
    spinner.finish_and_clear();
    let report_files = match report_dir {
        Some(dir) => crate::report::write_report_files(dir, &outcomes, Some(&business))?,
        None => Vec::new(),
    };
    Ok(EvaluationSummary {
        outcomes,
        business,
        report_files,
        feature_names: config.engine.features.names().to_vec(),
    })
}

/// Prints an evaluation as a table.
pub fn print_evaluation(e: &EvaluationSummary, w: &mut impl Write) -> Result<()> {
    writeln!(
        w,
        "{:<22} {:>10} {:>9} {:>9} {:>8} {:>7} {:>12} {:>9}",
        "outcome", "events", "AUC", "logloss", "Brier", "ECE", "session AUC", "sessions"
    )?;
    for o in &e.outcomes {
        writeln!(
            w,
            "{:<22} {:>10} {:>9.3} {:>9.4} {:>8.4} {:>7.3} {:>12.3} {:>9}",
            o.outcome,
            o.per_event.count,
            o.per_event.auc.unwrap_or(f64::NAN),
            o.per_event.log_loss,
            o.per_event.brier,
            expected_calibration_error(&o.per_event.calibration),
            o.per_session.auc.unwrap_or(f64::NAN),
            o.per_session.count
        )?;
    }
    for o in &e.outcomes {
        let table: Vec<String> = o
            .per_event
            .calibration
            .iter()
            .map(|b| {
                format!(
                    "[{:.1},{:.1}) n={} pred={:.3} obs={:.3}",
                    b.lower, b.upper, b.count, b.mean_predicted, b.observed_rate
                )
            })
            .collect();
        writeln!(w, "calibration {}: {}", o.outcome, table.join("; "))?;
    }
    print_drift(&e.outcomes, &e.feature_names, w)?;
    crate::report::print_report_notes(&e.outcomes, Some(&e.business), w)?;
    for f in &e.report_files {
        writeln!(w, "wrote {}", f.display())?;
    }
    Ok(())
}

/// One line per outcome: the evaluated traffic's population stability
/// index against the model's training population, for the score and the
/// features that moved most.
fn print_drift(
    outcomes: &[OutcomeEvaluation],
    feature_names: &[String],
    w: &mut impl Write,
) -> Result<()> {
    for o in outcomes {
        let Some(d) = &o.drift else {
            writeln!(
                w,
                "drift {}: the model has no drift reference (trained before drift monitoring; retrain to get one)",
                o.outcome
            )?;
            continue;
        };
        let top: Vec<String> = d
            .top_features(3)
            .into_iter()
            .map(|(j, psi)| {
                let name = feature_names.get(j).map_or("?", String::as_str);
                format!("{name} {psi:.3}")
            })
            .collect();
        writeln!(
            w,
            "drift {}: score PSI {:.3} ({}); largest feature PSI: {} ({} events; PSI < 0.1 stable, 0.1-0.25 a shift worth a look, > 0.25 traffic the model was not trained on)",
            o.outcome,
            d.score,
            psi_reading(d.score),
            top.join(", "),
            d.events
        )?;
    }
    Ok(())
}

/// The customary reading of a PSI.
fn psi_reading(psi: f64) -> &'static str {
    if psi > 0.25 {
        "shifted"
    } else if psi >= 0.1 {
        "moderate shift"
    } else {
        "stable"
    }
}

/// Arguments of `replay`.
pub struct ReplayArgs<'a> {
    /// Events file.
    pub events: &'a Path,
    /// Consent file.
    pub consent: &'a Path,
    /// Models directory.
    pub models: &'a Path,
    /// Offers output.
    pub offers_out: &'a Path,
    /// Scores output.
    pub scores_out: Option<&'a Path>,
    /// Decisions output.
    pub decisions_out: Option<&'a Path>,
    /// Conversions output.
    pub conversions_out: Option<&'a Path>,
    /// Offer feedback input.
    pub feedback: Option<&'a Path>,
    /// Dead letters output.
    pub dead_letters_out: Option<&'a Path>,
    /// Summary output.
    pub summary_json: Option<&'a Path>,
    /// Where to snapshot the adaptive models (`[adaptive]`) at the end.
    pub adaptive_out: Option<&'a Path>,
}

/// `propensity replay`.
pub fn replay_files(
    config: &Config,
    args: &ReplayArgs<'_>,
    models: Option<ServedModels>,
    progress: &Progress,
) -> Result<EngineSummary> {
    let ServedModels { config, models } = match models {
        Some(m) => m,
        None => load_models(args.models, config)?,
    };
    let config = &config;
    let (ev, co) = read_inputs(args.events, args.consent, progress)?;
    let mut sink = FileSink::create(args.offers_out, args.scores_out, args.dead_letters_out)?
        .with_decisions(args.decisions_out, args.conversions_out)?;
    // One engine for every partition, with a watermark, TTL and idle sweep,
    // buffer cap and session serials per partition (`kafka.partitions`):
    // the same outputs as `run`'s engine per partition for the same
    // per-partition order.
    let mut engine = Engine::new(config.engine.clone(), models);
    let feedback = match args.feedback {
        Some(path) => {
            let bar = progress.bar("reading feedback", Unit::Bytes, None);
            let file = InputFile::read(path, &bar)?;
            bar.finish_and_clear();
            Some(file)
        }
        None => None,
    };
    replay_inputs(
        &mut engine,
        (&ev, &co),
        feedback.as_ref(),
        &mut sink,
        progress,
        "replaying",
    );
    sink.finish()?;
    if let Some(dir) = args.adaptive_out {
        crate::adaptive_snapshot::write_snapshot(&engine, &config.engine, args.models, dir)?;
    }
    let summary = EngineSummary::new(engine.counters(), &config.engine);
    if let Some(path) = args.summary_json {
        let mut w = create_output(path)?;
        serde_json::to_writer_pretty(&mut w, &summary)?;
        writeln!(w)?;
        w.flush()?;
    }
    Ok(summary)
}

/// Prints a replay summary for humans.
pub fn print_replay_summary(s: &EngineSummary, w: &mut impl Write) -> Result<()> {
    writeln!(
        w,
        "events: {} consumed = {} processed + {} dropped + {} dead-lettered + {} still buffered ({})",
        s.events_consumed,
        s.events_processed,
        s.events_dropped,
        s.events_dead_lettered,
        s.events_buffered,
        if s.reconciles { "reconciles" } else { "DOES NOT RECONCILE" }
    )?;
    let drops: Vec<String> = s
        .dropped_by_reason
        .iter()
        .filter(|(_, n)| **n > 0)
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    writeln!(
        w,
        "dropped by reason: {}",
        if drops.is_empty() {
            "none".into()
        } else {
            drops.join(", ")
        }
    )?;
    let dls: Vec<String> = s
        .dead_letters_by_reason
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    writeln!(
        w,
        "dead letters by reason: {}",
        if dls.is_empty() {
            "none".into()
        } else {
            dls.join(", ")
        }
    )?;
    writeln!(
        w,
        "consent: {} records, {} applied, {} stale, {} revocations, {} erasures",
        s.consent_consumed, s.consent_applied, s.consent_stale, s.revocations, s.erasures
    )?;
    writeln!(w, "scores: {}", s.scores)?;
    let offers: Vec<String> = s
        .offers_by_action_map
        .iter()
        .map(|(k, n)| format!("{k}={n}"))
        .collect();
    writeln!(w, "offers: {} ({})", s.offers, offers.join(", "))?;
    let capped: u64 = s.suppressed_by_cap.values().sum();
    let purpose: u64 = s.suppressed_by_purpose.values().sum();
    writeln!(
        w,
        "suppressed: {capped} by frequency caps, {purpose} for lack of purpose consent"
    )?;
    let held_out: u64 = s.held_out_by_action_map.values().sum();
    let lower: u64 = s.lower_priority_by_action_map.values().sum();
    let contact: u64 = s.suppressed_by_contact_policy.values().sum();
    writeln!(
        w,
        "decisions: {} ({} offered, {held_out} held out, {capped} capped, {purpose} no purpose, {lower} lower priority, {contact} contact policy)",
        s.offers + held_out + capped + purpose + lower + contact,
        s.offers
    )?;
    for (map, g) in &s.control_groups {
        writeln!(w, "{}", control_group_line(map, g))?;
    }
    let f = &s.feedback;
    if f.consumed > 0 {
        writeln!(
            w,
            "feedback: {} consumed = {} applied + {} dropped (no consent) + {} dropped (unknown map) + {} dead-lettered ({})",
            f.consumed,
            f.applied,
            f.dropped_no_consent,
            f.dropped_unknown_map,
            f.dead_lettered,
            if f.reconciles { "reconciles" } else { "DOES NOT RECONCILE" }
        )?;
        for (map, by_status) in &f.by_action_map {
            let counts: Vec<String> = by_status.iter().map(|(k, n)| format!("{k}={n}")).collect();
            let suppressions = f
                .suppressions_by_action_map
                .get(map)
                .map_or(String::new(), |n| {
                    format!("; contact policy suppressed it {n} times")
                });
            writeln!(w, "feedback {map}: {}{suppressions}", counts.join(", "))?;
        }
    }
    Ok(())
}

/// One map's control group on one line: both arms' sessions, conversions
/// and rates, and the uplift with its interval.
pub fn control_group_line(map: &str, g: &ControlGroupResult) -> String {
    let rate = |x: u64, n: u64| {
        if n == 0 {
            "-".to_owned()
        } else {
            format!("{:.1} %", 100.0 * x as f64 / n as f64)
        }
    };
    let uplift = match &g.uplift {
        Some(u) => format!(
            "uplift {:+.1} points (95 % CI {:+.1} to {:+.1}), {:+.1} outcomes caused",
            100.0 * u.difference,
            100.0 * u.ci_low,
            100.0 * u.ci_high,
            u.incremental_outcomes
        ),
        None => "uplift: needs sessions in both arms".to_owned(),
    };
    format!(
        "control group {map}: offered {} sessions, {} converted ({}); held out {}, {} converted ({}); {uplift}",
        g.offered_sessions,
        g.offered_converted,
        rate(g.offered_converted, g.offered_sessions),
        g.held_out_sessions,
        g.held_out_converted,
        rate(g.held_out_converted, g.held_out_sessions),
    )
}

/// Training examples of generated traffic, collected by the engine (see
/// [`collect_examples`]).
pub fn collect_generated(config: &Config, traffic: &GeneratedTraffic) -> Result<Collected> {
    let ev: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let co: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let sources = ReplaySources {
        events: "generated",
        consent: "generated",
        feedback: "",
    };
    collect_lines(config, (&ev, &co), &sources, &Progress::hidden())
}

/// Examples of generated traffic under `config`'s features as they are
/// (fresh traffic scored with models trained on other traffic).
#[cfg(test)]
pub fn generated_examples_under(config: &Config, traffic: &GeneratedTraffic) -> ExampleCollector {
    let ev: Vec<&[u8]> = traffic.events.iter().map(|l| l.line.as_bytes()).collect();
    let co: Vec<&[u8]> = traffic.consent.iter().map(|l| l.line.as_bytes()).collect();
    let sources = ReplaySources {
        events: "generated",
        consent: "generated",
        feedback: "",
    };
    examples_under(config.clone(), (&ev, &co), &sources, &Progress::hidden()).examples
}

/// Trains models in memory on `visitors` generated visitors (benchmarks
/// need realistic models without touching disk).
pub fn train_in_memory(config: &Config, visitors: usize, seed: u64) -> Result<ServedModels> {
    let traffic = generate(&SimulationParams {
        visitors,
        seed,
        ..SimulationParams::default()
    })?;
    let collected = collect_generated(config, &traffic)?;
    let trained = train_outcomes(
        &collected.config.engine,
        &collected.examples,
        &collected.config.training_plan(),
        |_, _, _| {},
    )?;
    serve(
        &collected.config,
        trained
            .into_iter()
            .map(|t| ("<in memory>".to_owned(), t.artifact))
            .collect(),
    )
}

#[cfg(test)]
mod tests;
