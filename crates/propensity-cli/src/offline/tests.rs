//! Tests of the offline commands on generated traffic: training quality and calibration,
//! the demo end to end, and `train` on real-data problems (skipped outcomes, `--outcomes`,
//! `--strict`, malformed lines).

use super::*;
use crate::config_file::EMBEDDED_CONFIG;

fn config() -> Config {
    Config::from_text("embedded", EMBEDDED_CONFIG, std::iter::empty()).unwrap()
}

fn examples_of(config: &Config, visitors: usize, seed: u64) -> ExampleCollector {
    let traffic = generate(&SimulationParams {
        visitors,
        seed,
        ..SimulationParams::default()
    })
    .unwrap();
    collect_generated(config, &traffic)
}

/// Training on simulated traffic reaches a useful AUC on a holdout and
/// on fresh traffic, and the probabilities it publishes mean
/// P(outcome achieved): calibrated to the observed rate, higher for the
/// sessions that do achieve it.
#[test]
fn models_trained_on_simulated_traffic_are_useful_and_calibrated() {
    let config = config();
    let train = examples_of(&config, 2500, 3);
    let trained = train_outcomes(
        &config.engine,
        &train,
        &config.training_plan(),
        |_, _, _| {},
    )
    .unwrap();
    for t in &trained {
        let auc = t.holdout.as_ref().and_then(|h| h.auc).unwrap();
        assert!(auc >= 0.75, "{}: holdout AUC {auc:.3}", t.artifact.outcome);
    }
    let models = ModelSet::from_artifacts(
        &config.engine,
        trained
            .into_iter()
            .map(|t| ("test".to_owned(), t.artifact))
            .collect(),
    )
    .unwrap();
    let fresh = examples_of(&config, 1500, 4);
    for e in evaluate_outcomes(&config.engine, &models, &fresh).unwrap() {
        let auc = e.per_event.auc.unwrap();
        assert!(auc >= 0.75, "{}: AUC on fresh traffic {auc:.3}", e.outcome);
        let predicted: f64 = e
            .per_event
            .calibration
            .iter()
            .map(|b| b.mean_predicted * b.count as f64)
            .sum::<f64>()
            / e.per_event.count as f64;
        let observed = e.per_event.base_rate;
        assert!(
            (predicted - observed).abs() < 0.35 * observed + 0.01,
            "{}: mean probability {predicted:.4} vs observed rate {observed:.4}",
            e.outcome
        );
    }
}

/// Writes generated traffic (`invalid_rate` malformed event lines) under `dir`.
fn traffic_files(dir: &Path, invalid_rate: f64) -> (PathBuf, PathBuf, TrafficSummary) {
    let params = SimulationParams {
        visitors: 800,
        seed: 21,
        invalid_rate,
        ..SimulationParams::default()
    };
    let summary = generate_files(&params, &dir.join("traffic"), &Progress::hidden()).unwrap();
    (
        dir.join("traffic/events.jsonl"),
        dir.join("traffic/consent.jsonl"),
        summary,
    )
}

fn artifacts(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    names
}

fn train_with(
    config: &Config,
    files: &(PathBuf, PathBuf, TrafficSummary),
    out: &Path,
    options: &TrainOptions,
) -> Result<TrainReport> {
    train(
        config,
        &files.0,
        &files.1,
        out,
        options,
        &Progress::hidden(),
    )
}

/// An outcome that never happens is skipped with a warning naming it and the count
/// against the minimum, gets no artifact, and the other outcomes are trained; when it is
/// the only outcome asked for, training fails saying why.
#[test]
fn train_skips_an_outcome_without_positives_and_trains_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let text =
        EMBEDDED_CONFIG.replace("form_id = \"webinar-signup\"", "form_id = \"no-such-form\"");
    let config = Config::from_text("never.toml", &text, std::iter::empty()).unwrap();
    let out = dir.path().join("models");
    let r = train_with(&config, &files, &out, &TrainOptions::default()).unwrap();
    assert_eq!(
        artifacts(&out),
        vec!["application_complete.json", "purchase.json"]
    );
    assert_eq!(r.skipped.len(), 1, "{:?}", r.skipped);
    assert_eq!(
        (r.skipped[0].outcome.as_str(), r.skipped[0].positives),
        ("webinar_signup", 0)
    );
    let warning = r
        .warnings
        .iter()
        .find(|w| w.contains("webinar_signup"))
        .unwrap();
    assert!(
        warning.contains("0 positive examples") && warning.contains("min_positives = 50"),
        "{warning}"
    );
    let mut printed = Vec::new();
    print_train_report(&r, &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();
    assert!(printed.contains("skipped webinar_signup"), "{printed}");

    let only = TrainOptions {
        outcomes: Some(vec!["webinar_signup".into()]),
        strict: false,
    };
    let err = format!(
        "{:#}",
        train_with(&config, &files, &dir.path().join("none"), &only).unwrap_err()
    );
    assert!(
        err.contains("every outcome was skipped") && err.contains("webinar_signup"),
        "{err}"
    );
    assert_eq!(err.matches("positive examples").count(), 1, "{err}");
    assert!(artifacts(&dir.path().join("none")).is_empty());
}

/// `--outcomes` trains the subset only; an unknown name fails naming it, the flag and
/// the configured outcomes.
#[test]
fn train_outcomes_subset_and_unknown_name() {
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let out = dir.path().join("models");
    let options = TrainOptions {
        outcomes: Some(vec!["purchase".into()]),
        strict: false,
    };
    let r = train_with(&config(), &files, &out, &options).unwrap();
    assert_eq!(r.outcomes.len(), 1);
    assert_eq!(artifacts(&out), vec!["purchase.json"]);
    let options = TrainOptions {
        outcomes: Some(vec!["purchase".into(), "purchse".into()]),
        strict: false,
    };
    let err = format!(
        "{:#}",
        train_with(&config(), &files, &dir.path().join("x"), &options).unwrap_err()
    );
    assert!(
        err.contains("--outcomes")
            && err.contains("`purchse`")
            && err.contains("purchase, webinar_signup, application_complete"),
        "{err}"
    );
}

/// A holdout AUC under `training.auc_floor` is a warning; with `--strict` it is an error
/// listing the warnings, and no artifact is written.
#[test]
fn strict_train_fails_on_a_warning_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let floor = Config::from_text(
        "strict.toml",
        EMBEDDED_CONFIG,
        [(
            "PROPENSITY__TRAINING__AUC_FLOOR".to_owned(),
            "0.99".to_owned(),
        )]
        .into_iter(),
    )
    .unwrap();
    let out = dir.path().join("lenient");
    let r = train_with(&floor, &files, &out, &TrainOptions::default()).unwrap();
    assert!(
        r.warnings.iter().any(|w| w.contains("auc_floor = 0.99")),
        "{:?}",
        r.warnings
    );
    assert_eq!(artifacts(&out).len(), 3);
    let strict = TrainOptions {
        outcomes: None,
        strict: true,
    };
    let out = dir.path().join("strict");
    let err = format!(
        "{:#}",
        train_with(&floor, &files, &out, &strict).unwrap_err()
    );
    assert!(
        err.contains("--strict") && err.contains("auc_floor = 0.99"),
        "{err}"
    );
    assert!(artifacts(&out).is_empty(), "{:?}", artifacts(&out));
    // Without warnings, --strict trains as usual.
    let out = dir.path().join("clean");
    train_with(&config(), &files, &out, &strict).unwrap();
    assert_eq!(artifacts(&out).len(), 3);
}

/// Malformed input lines are counted (by reason) in the train report, printed, and a
/// warning.
#[test]
fn train_counts_and_reports_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.02);
    assert!(files.2.invalid_lines > 0);
    let r = train_with(
        &config(),
        &files,
        &dir.path().join("m"),
        &TrainOptions::default(),
    )
    .unwrap();
    assert_eq!(r.input.events_dead_lettered, files.2.invalid_lines as u64);
    let by_reason: u64 = r.input.dead_letters_by_reason.values().sum();
    assert_eq!(by_reason, r.input.events_dead_lettered);
    let n = r.input.events_dead_lettered;
    assert!(
        r.warnings
            .iter()
            .any(|w| w.starts_with(&format!("{n} input records were dead-lettered"))),
        "{:?}",
        r.warnings
    );
    let mut printed = Vec::new();
    print_train_report(&r, &mut printed).unwrap();
    let printed = String::from_utf8(printed).unwrap();
    assert!(
        printed.contains(&format!("{n} dead-lettered")) && printed.contains("by reason: "),
        "{printed}"
    );
}

/// The demo runs end to end on small traffic and its replay reconciles.
#[test]
fn demo_runs_and_reconciles() {
    let dir = tempfile::tempdir().unwrap();
    let mut report = Vec::new();
    crate::demo::run_demo(
        &config(),
        dir.path(),
        &crate::demo::DemoSize {
            train_visitors: 800,
            eval_visitors: 300,
        },
        &mut report,
        &Progress::hidden(),
    )
    .unwrap();
    let text = String::from_utf8(report).unwrap();
    assert!(text.contains("(reconciles)"), "{text}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["reconciles"], true);
    assert!(summary["offers"].as_u64().unwrap() > 0, "{summary}");
    assert!(dir.path().join("report/roc.png").exists());
}
