//! Tests of the offline commands on generated traffic: training quality and calibration,
//! the demo end to end, and `train` on real-data problems (skipped outcomes, `--outcomes`,
//! `--strict`, malformed lines).

use super::*;
use crate::config_file::EMBEDDED_CONFIG;
use propensity_engine::drift::{DriftPsi, ModelDriftCounts};

fn config() -> Config {
    Config::from_text("embedded", EMBEDDED_CONFIG, std::iter::empty()).unwrap()
}

fn traffic_of(visitors: usize, seed: u64) -> GeneratedTraffic {
    generate(&SimulationParams {
        visitors,
        seed,
        ..SimulationParams::default()
    })
    .unwrap()
}

/// One model per outcome trained on `traffic`, with the configuration (and
/// learned vocabulary) it was trained under.
fn trained_on(traffic: &GeneratedTraffic) -> (Config, Vec<TrainedOutcome>) {
    let Collected {
        config,
        examples: train,
        ..
    } = collect_generated(&config(), traffic).unwrap();
    let trained = train_outcomes(
        &config.engine,
        &train,
        &config.training_plan(),
        |_, _, _| {},
    )
    .unwrap();
    (config, trained)
}

/// The trained models, loaded as the engine serves them.
fn serving(config: &Config, trained: Vec<TrainedOutcome>) -> std::sync::Arc<ModelSet> {
    ModelSet::from_artifacts(
        &config.engine,
        trained
            .into_iter()
            .map(|t| ("test".to_owned(), t.artifact))
            .collect(),
    )
    .unwrap()
}

/// The drift scenario: models trained on the usual traffic see fresh usual
/// traffic as stable (score PSI below 0.1), and the traffic of a paid
/// social campaign for a sale (`campaign_after`) as shifted: more than
/// the usual traffic for every outcome, and past the `ModelDrift` alert's
/// 0.25 for purchase, the outcome the sale's buyers move,
/// with a device, traffic source, OS or browser feature among the five
/// that moved most.
#[test]
fn a_campaign_shifts_the_traffic_past_the_drift_threshold() {
    let (config, trained) = trained_on(&traffic_of(2000, 11));
    let models = serving(&config, trained);
    let names = config.engine.features.names().to_vec();
    // Every row of the traffic counted (no sample: this is the offline
    // figure), score and vector as the engine computes them.
    let psi = |traffic: &GeneratedTraffic| -> Vec<DriftPsi> {
        let examples = generated_examples_under(&config, traffic);
        let dim = examples.dim();
        (0..config.engine.outcomes.len())
            .map(|i| {
                let model = models.get(i).expect("model");
                let reference = model.drift_reference().expect("trained with a reference");
                let mut counts = ModelDriftCounts::new(reference);
                for row in examples.outcomes[i].rows.chunks(dim) {
                    let nonzero: Vec<u32> = (0..dim as u32)
                        .filter(|&j| row[j as usize] != 0.0)
                        .collect();
                    counts.observe(reference, row, &nonzero, model.probability(row));
                }
                counts.psi(reference).expect("rows")
            })
            .collect()
    };
    let usual = psi(&traffic_of(1500, 12));
    let campaign = psi(&generate(&SimulationParams {
        visitors: 1500,
        seed: 12,
        campaign_after: Some(0.0),
        ..SimulationParams::default()
    })
    .unwrap());
    for (i, (u, c)) in usual.iter().zip(&campaign).enumerate() {
        let outcome = &config.engine.outcomes[i].name;
        assert!(
            u.score < 0.1,
            "{outcome}: usual traffic score PSI {:.3}",
            u.score
        );
        eprintln!(
            "{outcome}: score PSI usual {:.3}, campaign {:.3}",
            u.score, c.score
        );
        assert!(c.score > u.score, "{outcome}: campaign {:.3}", c.score);
        // The sale's buyers move the purchase scores past the alert.
        if outcome == "purchase" {
            assert!(c.score > 0.25, "{outcome}: campaign {:.3}", c.score);
        }
        let moved: Vec<&str> = c
            .top_features(5)
            .iter()
            .map(|(j, _)| names[*j].as_str())
            .collect();
        assert!(
            moved
                .iter()
                .any(|n| ["device.", "traffic_source.", "os.", "browser."]
                    .iter()
                    .any(|p| n.starts_with(p))),
            "{outcome}: features that moved most {moved:?}"
        );
    }
}

/// Training on simulated traffic reaches a useful AUC on a holdout and
/// on fresh traffic, and the probabilities it publishes mean
/// P(outcome achieved): calibrated to the observed rate, higher for the
/// sessions that do achieve it.
#[test]
fn models_trained_on_simulated_traffic_are_useful_and_calibrated() {
    let (config, trained) = trained_on(&traffic_of(2500, 3));
    for t in &trained {
        let auc = t.holdout.as_ref().and_then(|h| h.auc).unwrap();
        assert!(auc >= 0.75, "{}: holdout AUC {auc:.3}", t.artifact.outcome);
    }
    let models = serving(&config, trained);
    // Fresh traffic, under the features (vocabulary) the models were trained with.
    let fresh = generated_examples_under(&config, &traffic_of(1500, 4));
    for e in evaluate_outcomes(&config.engine, &models, &fresh, &[]).unwrap() {
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
    // Percentiles mean what they say on traffic like the training
    // traffic: about 10 % of fresh events score in the top 10 %, and half
    // at or above the median.
    let dim = fresh.dim();
    for (i, o) in fresh.outcomes.iter().enumerate() {
        let model = models.get(i).expect("a model per outcome");
        let percentiles: Vec<u8> = o
            .rows
            .chunks(dim)
            .map(|row| {
                model
                    .percentile(model.probability(row))
                    .expect("a distribution")
            })
            .collect();
        let share = |min: u8| {
            percentiles.iter().filter(|p| **p >= min).count() as f64 / percentiles.len() as f64
        };
        let (top, upper) = (share(90), share(50));
        eprintln!("outcome {i}: top 10 % {top:.3}, upper half {upper:.3}");
        assert!(
            (top - 0.10).abs() < 0.03 && (upper - 0.50).abs() < 0.06,
            "outcome {i}: {top:.3} of fresh events in the top 10 %, {upper:.3} in the upper half"
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
        vec![
            "application_complete.json",
            "purchase.json",
            "webinar_signup.skipped.json"
        ]
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
        ..TrainOptions::default()
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

/// The engine serves the outcomes that were trained and leaves a skipped one unscored
/// (its marker says why); without the marker a missing model still fails, naming the file.
/// A skipped outcome's previous model stays only if it can be served with the new ones.
#[test]
fn a_skipped_outcome_is_served_unscored_and_a_stale_model_moves_aside() {
    use crate::model_files::load_models;
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let skipping = Config::from_text(
        "never.toml",
        &EMBEDDED_CONFIG.replace("form_id = \"webinar-signup\"", "form_id = \"no-such-form\""),
        std::iter::empty(),
    )
    .unwrap();
    let webinar = skipping.engine.outcome_index("webinar_signup").unwrap();

    // A directory holding a full run of another vocabulary, then a run that skips one.
    let out = dir.path().join("models");
    let other = Config::from_text(
        "small.toml",
        &EMBEDDED_CONFIG.replace("vocabulary_max_values = 12", "vocabulary_max_values = 2"),
        std::iter::empty(),
    )
    .unwrap();
    train_with(&other, &files, &out, &TrainOptions::default()).unwrap();
    let r = train_with(&skipping, &files, &out, &TrainOptions::default()).unwrap();
    assert!(
        r.warnings
            .iter()
            .any(|w| w.contains("webinar_signup.json.previous")),
        "{:?}",
        r.warnings
    );
    assert_eq!(
        artifacts(&out),
        vec![
            "application_complete.json",
            "purchase.json",
            "webinar_signup.json.previous",
            "webinar_signup.skipped.json"
        ]
    );
    let served = load_models(&out, &skipping).unwrap();
    assert!(served.models.get(webinar).is_none());
    for o in ["purchase", "application_complete"] {
        let i = served.config.engine.outcome_index(o).unwrap();
        assert!(served.models.get(i).is_some(), "{o}");
    }

    // Scored without it: probabilities of the other outcomes only.
    let (offers, scores) = (
        dir.path().join("offers.jsonl"),
        dir.path().join("scores.jsonl"),
    );
    let args = ReplayArgs {
        events: &files.0,
        consent: &files.1,
        models: &out,
        offers_out: &offers,
        scores_out: Some(&scores),
        decisions_out: None,
        feedback: None,
        conversions_out: None,
        dead_letters_out: None,
        summary_json: None,
        adaptive_out: None,
    };
    replay_files(&skipping, &args, None, &Progress::hidden()).unwrap();
    let mut by_outcome = std::collections::BTreeMap::<String, usize>::new();
    for line in std::fs::read_to_string(&scores).unwrap().lines() {
        let score: serde_json::Value = serde_json::from_str(line).unwrap();
        *by_outcome
            .entry(score["outcome"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert!(
        by_outcome.get("purchase").is_some_and(|&n| n > 100),
        "{by_outcome:?}"
    );
    assert!(!by_outcome.contains_key("webinar_signup"), "{by_outcome:?}");

    // A later run that trains it removes the marker.
    train_with(&config(), &files, &out, &TrainOptions::default()).unwrap();
    assert!(!artifacts(&out).contains(&"webinar_signup.skipped.json".to_owned()));

    // No artifact and no marker: refused, naming the expected file.
    std::fs::remove_file(out.join("webinar_signup.json")).unwrap();
    let err = format!("{:#}", load_models(&out, &skipping).unwrap_err());
    assert!(
        err.contains("webinar_signup") && err.contains("webinar_signup.json"),
        "{err}"
    );
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
        ..TrainOptions::default()
    };
    let r = train_with(&config(), &files, &out, &options).unwrap();
    assert_eq!(r.outcomes.len(), 1);
    assert_eq!(artifacts(&out), vec!["purchase.json"]);
    let options = TrainOptions {
        outcomes: Some(vec!["purchase".into(), "purchse".into()]),
        strict: false,
        ..TrainOptions::default()
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
        ..TrainOptions::default()
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

/// `train` learns a vocabulary from its input, stores it in every artifact, and the
/// models load with features built on it; artifacts of different runs are refused side
/// by side, and so are v1 artifacts; `--vocabulary-from` keeps a deployed vocabulary so
/// that new models hot-reload into the engine serving the old ones.
#[test]
fn vocabularies_are_learned_stored_and_kept_on_request() {
    use crate::model_files::{load_models, reload_models};
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let config = config();
    let first = dir.path().join("first");
    let report = train_with(&config, &files, &first, &TrainOptions::default()).unwrap();
    let learned = &report.vocabulary;
    assert!(
        learned.browser.contains(&"chrome".to_owned()),
        "{learned:?}"
    );
    assert!(
        learned.custom_event.contains(&"add_to_cart".to_owned()),
        "{learned:?}"
    );
    assert!(!learned.referrer_host.is_empty(), "{learned:?}");
    let served = load_models(&first, &config).unwrap();
    assert_eq!(served.config.engine.features.vocabulary(), learned);
    assert!(served.config.engine.features.dim() > config.engine.features.dim());
    assert!(served
        .config
        .engine
        .features
        .names()
        .contains(&"browser.chrome".to_owned()));

    // Other traffic, a smaller vocabulary: another run.
    let params = SimulationParams {
        visitors: 600,
        seed: 77,
        ..SimulationParams::default()
    };
    generate_files(&params, &dir.path().join("other"), &Progress::hidden()).unwrap();
    let other_files = (
        dir.path().join("other/events.jsonl"),
        dir.path().join("other/consent.jsonl"),
    );
    let small = Config::from_text(
        "small.toml",
        &EMBEDDED_CONFIG.replace("vocabulary_max_values = 12", "vocabulary_max_values = 2"),
        std::iter::empty(),
    )
    .unwrap();
    let second = dir.path().join("second");
    let options = TrainOptions::default();
    let r = train(
        &small,
        &other_files.0,
        &other_files.1,
        &second,
        &options,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(r.vocabulary.browser.len(), 2);
    let err = format!(
        "{:#}",
        reload_models(&second, &served.config.engine).unwrap_err()
    );
    assert!(err.contains("field `vocabulary` differs"), "{err}");
    let mixed = dir.path().join("mixed");
    std::fs::create_dir_all(&mixed).unwrap();
    for name in artifacts(&first) {
        std::fs::copy(first.join(&name), mixed.join(&name)).unwrap();
    }
    std::fs::copy(second.join("purchase.json"), mixed.join("purchase.json")).unwrap();
    let err = format!("{:#}", load_models(&mixed, &config).unwrap_err());
    assert!(err.contains("different training runs"), "{err}");

    // Kept vocabulary: the new models reload into the engine serving the first ones.
    let kept = TrainOptions {
        vocabulary_from: Some(first.clone()),
        ..TrainOptions::default()
    };
    let third = dir.path().join("third");
    let r = train(
        &config,
        &other_files.0,
        &other_files.1,
        &third,
        &kept,
        &Progress::hidden(),
    )
    .unwrap();
    assert_eq!(&r.vocabulary, learned);
    reload_models(&third, &served.config.engine).unwrap();

    // A v1 artifact is refused with the way forward.
    let path = first.join("purchase.json");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("propensity-model/v2", "propensity-model/v1"),
    )
    .unwrap();
    let err = format!("{:#}", load_models(&first, &config).unwrap_err());
    assert!(
        err.contains("v1 models use the hashed-bucket features"),
        "{err}"
    );
    assert!(err.contains("purchase.json"), "{err}");
}

/// A challenger file is loaded beside its champion and scored in shadow;
/// `promote` exchanges the two files (the old champion becomes the
/// challenger, so promoting again rolls back), refuses an outcome without a
/// challenger naming the file it looked for, and a challenger of another
/// training run is refused at load naming its file.
#[test]
fn challengers_load_and_promotion_exchanges_the_files() {
    use crate::model_files::{challenger_path, load_models, promote, reload_models};
    let dir = tempfile::tempdir().unwrap();
    let files = traffic_files(dir.path(), 0.0);
    let config = config();
    let models = dir.path().join("models");
    train_with(&config, &files, &models, &TrainOptions::default()).unwrap();
    let champion: propensity_engine::ModelArtifact =
        serde_json::from_str(&std::fs::read_to_string(models.join("purchase.json")).unwrap())
            .unwrap();
    let err = promote(&models, "purchase").unwrap_err().to_string();
    assert!(err.contains("challengers/purchase.json"), "{err}");

    let mut challenger = champion.clone();
    challenger.model_version = format!("{}-challenger", champion.model_version);
    challenger.intercept += 0.5;
    let path = challenger_path(&models, "purchase");
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, serde_json::to_string(&challenger).unwrap()).unwrap();
    let served = load_models(&models, &config).unwrap();
    let version = |m: Option<&propensity_engine::model::OutcomeModel>| m.map(|m| m.version.clone());
    assert_eq!(
        version(served.models.challenger(0)),
        Some(challenger.model_version.clone())
    );
    assert_eq!(version(served.models.challenger(1)), None);

    let (now_champion, now_challenger) = promote(&models, "purchase").unwrap();
    assert_eq!(now_champion, challenger.model_version);
    assert_eq!(now_challenger, champion.model_version);
    let reloaded = reload_models(&models, &served.config.engine).unwrap();
    assert_eq!(
        version(reloaded.get(0)),
        Some(challenger.model_version.clone())
    );
    assert_eq!(
        version(reloaded.challenger(0)),
        Some(champion.model_version.clone())
    );
    assert_eq!(reloaded.promoted_since(&served.models), vec![0]);
    assert!(served.models.promoted_since(&served.models).is_empty());
    promote(&models, "purchase").unwrap();
    let back = reload_models(&models, &served.config.engine).unwrap();
    assert_eq!(version(back.get(0)), Some(champion.model_version.clone()));

    // A challenger of another run (another vocabulary) is refused.
    let mut foreign = challenger.clone();
    foreign.vocabulary.browser.push("netscape".into());
    std::fs::write(&path, serde_json::to_string(&foreign).unwrap()).unwrap();
    let err = format!(
        "{:#}",
        reload_models(&models, &served.config.engine).unwrap_err()
    );
    assert!(err.contains("challengers/purchase.json"), "{err}");
    assert!(err.contains("vocabulary"), "{err}");
}

/// A sink that keeps nothing (the test reads the engine's own counts).
struct Discard;

impl EngineSink for Discard {
    fn offer(&mut self, _offer: propensity_engine::Offer) {}
    fn dead_letter(&mut self, _dead_letter: propensity_engine::DeadLetter<'_>) {}
}

/// The drift scenario with an adaptive challenger: models trained on the
/// usual traffic serve a stream that turns into a sale campaign a tenth of
/// the way in; the static champion and an adaptive challenger
/// warm-started from it score the same events. The drift figure over the
/// campaign's first hours passes the ModelDrift alert's 0.25 (the same
/// stream without the campaign stays below 0.1); over the sessions
/// resolved in the last 40 % of events the static model scores worse than
/// without the campaign, and the adaptive model better than the static one
/// (AUC, log loss, Brier); and it learnt once per session online
/// evaluation labelled for it.
#[test]
fn an_adaptive_challenger_recovers_after_a_campaign_shift() {
    use propensity_engine::config::AdaptiveConfig;
    let (config, trained) = trained_on(&traffic_of(2000, 11));
    let models = serving(&config, trained);
    let mut engine_config = (*config.engine).clone();
    let n = engine_config.outcomes.len();
    engine_config.adaptive = Some(AdaptiveConfig {
        learns: vec![true; n],
        role: propensity_engine::ModelRole::Challenger,
        alpha: 0.05,
        beta: 1.0,
        l1: 0.0,
        l2: 0.0,
        prior_sessions: 50.0,
    });
    let engine_config = std::sync::Arc::new(engine_config);
    let purchase = 0;
    // One stream through the static champion and the adaptive challenger:
    // the engine after it, the sessions labelled before the late part, and
    // the drift figure of the campaign's first hours.
    let run = |campaign_after: Option<f64>| {
        let mut engine = Engine::new(engine_config.clone(), models.clone());
        let stream = generate(&SimulationParams {
            visitors: 4000,
            seed: 13,
            // Hours, so that sessions resolve (idle expiry: 1 h) while the
            // stream goes on and the learner sees both labels.
            span_secs: 8 * 3600,
            campaign_after,
            ..SimulationParams::default()
        })
        .unwrap();
        let times: Vec<i64> = stream.events.iter().map(|l| l.time_ms).collect();
        // Three phases: the usual traffic; the campaign's first hours, where
        // the drift alarm must see the shift; and the late part (the last 40 %
        // of events), where the models are compared.
        let campaign_starts = times[0] + 8 * 3600 * 1000 / 10;
        let (late_starts, last) = (times[times.len() * 3 / 5], times[times.len() - 1]);
        let bounds = [i64::MIN, campaign_starts, late_starts, i64::MAX];
        let part = |lines: &[propensity_simulator::TimedLine], k: usize| -> Vec<Vec<u8>> {
            lines
                .iter()
                .filter(|l| (bounds[k]..bounds[k + 1]).contains(&l.time_ms))
                .map(|l| l.line.as_bytes().to_vec())
                .collect()
        };
        let sources = ReplaySources {
            events: "events",
            consent: "consent",
            feedback: "",
        };
        let purchase = 0;
        let reference = models
            .get(purchase)
            .and_then(|m| m.drift_reference().cloned());
        let mut early: Vec<u64> = vec![0; 2 * n];
        let mut campaign_psi = None;
        for k in 0..3 {
            if k == 2 {
                // The drift alarm's figure over the campaign's first hours (the
                // drift sample, one event in 8).
                campaign_psi = engine.drift_counts()[purchase]
                    .as_ref()
                    .zip(reference.as_ref())
                    .and_then(|(c, r)| c.psi(r));
            }
            if k > 0 {
                // Sessions labelled so far (for the update count), then figures
                // of the next phase only.
                for (e, c) in early.iter_mut().zip(engine.online_eval()) {
                    *e += c.sessions();
                }
                engine.clear_monitoring_counts();
            }
            let ev = part(&stream.events, k);
            let co = part(&stream.consent, k);
            let ev: Vec<&[u8]> = ev.iter().map(Vec::as_slice).collect();
            let co: Vec<&[u8]> = co.iter().map(Vec::as_slice).collect();
            replay_lines(
                &mut engine,
                (&ev, &co),
                &[],
                &sources,
                &mut Discard,
                &Progress::hidden(),
                "test",
            );
        }
        // A day later another visitor's consent: every session left resolves.
        let flush = format!(
            r#"{{"visitor_id":"zz-flush","timestamp":"{}","purposes":{{"tracking":true}}}}"#,
            propensity_engine::timestamp::format_rfc3339_ms(last + 86_400_000)
        );
        replay_lines(
            &mut engine,
            (&[], &[flush.as_bytes()]),
            &[],
            &sources,
            &mut Discard,
            &Progress::hidden(),
            "test",
        );
        (engine, early, campaign_psi)
    };
    let (engine, early, campaign_psi) = run(Some(0.1));
    let online = engine.online_eval();
    let champion = online[purchase].summary().expect("champion sessions");
    let adaptive = online[n + purchase].summary().expect("challenger sessions");
    eprintln!(
        "late campaign, purchase: champion AUC {:?} log loss {:.4} Brier {:.4}; adaptive AUC {:?} log loss {:.4} Brier {:.4} ({} sessions)",
        champion.auc, champion.log_loss, champion.brier, adaptive.auc, adaptive.log_loss, adaptive.brier, adaptive.sessions
    );
    assert_eq!(champion.sessions, adaptive.sessions);
    assert!(adaptive.sessions >= 500, "{} sessions", adaptive.sessions);
    assert!(adaptive.log_loss < 0.8 * champion.log_loss);
    assert!(adaptive.brier < 0.8 * champion.brier);
    assert!(adaptive.auc > champion.auc);
    // The same stream without the campaign: the static model scores its
    // late sessions better than the campaign's (it lost ground), and the
    // drift figure stays low.
    let (usual_engine, _, usual_psi) = run(None);
    let usual = usual_engine.online_eval()[purchase]
        .summary()
        .expect("usual sessions");
    eprintln!(
        "no campaign, purchase: champion AUC {:?} log loss {:.4} ({} sessions); score PSI {:.3}",
        usual.auc,
        usual.log_loss,
        usual.sessions,
        usual_psi.as_ref().map_or(f64::NAN, |p| p.score)
    );
    assert!(champion.auc < usual.auc);
    assert!(usual_psi.expect("drift counts").score < 0.1);
    let psi = campaign_psi.expect("drift counts");
    eprintln!(
        "campaign's first hours, purchase score PSI {:.3} ({} sampled events)",
        psi.score, psi.events
    );
    assert!(psi.score > 0.25, "score PSI {:.3}", psi.score);
    // One update per resolved session and outcome: as many as the
    // sessions online evaluation labelled for the adaptive model.
    for i in 0..n {
        let updates: u64 = engine.learners(i).iter().map(|l| l.updates()).sum();
        let labelled = early[n + i] + online[n + i].sessions();
        assert_eq!(updates, labelled, "outcome {i}");
    }
}
