//! Tests of the training pipeline: splits, the regularization grid, parallel and sequential
//! fits, and the artifacts `train_outcomes` writes.

use super::*;
use crate::rng::SplitMix64;
use propensity_engine::EngineSink;

/// A collector with `outcomes` outcomes over `sessions` sessions of `per_session` rows
/// each: feature 0 carries the signal (`strength`), the other `dim - 1` are noise, and a
/// session achieves outcome `o` with probability sigmoid(bias + strength · mean x0).
fn collector(
    outcomes: usize,
    sessions: u64,
    per_session: usize,
    dim: usize,
    strength: f64,
    bias: f64,
    seed: u64,
) -> ExampleCollector {
    let mut c = ExampleCollector::new(outcomes, dim);
    let mut rng = SplitMix64::new(seed);
    let mut row = vec![0f32; dim];
    for s in 0..sessions {
        let level = rng.next_normal();
        for o in 0..outcomes {
            for _ in 0..per_session {
                row[0] = (level + 0.3 * rng.next_normal()) as f32;
                for v in row.iter_mut().skip(1) {
                    *v = rng.next_normal() as f32;
                }
                c.example(s, o, &row);
            }
            if rng.next_f64() < crate::fit::sigmoid(bias + strength * level) {
                c.achieved(s, o);
            }
        }
    }
    c
}

fn plan() -> TrainingPlan {
    TrainingPlan {
        fit: FitParams::default(),
        holdout_fraction: 0.2,
        seed: 7,
    }
}

fn prepare(c: &ExampleCollector, plan: &TrainingPlan, search: &SearchPlan) -> Vec<PreparedOutcome> {
    (0..c.outcomes.len())
        .map(|o| prepare_one(c, o, &format!("o{o}"), plan, search).unwrap())
        .collect()
}

/// With few rows and many noise features the weak penalties overfit: the grid must
/// notice on the validation rows and pick the penalty whose validation AUC is highest
/// (ties to the stronger), which here is not the weakest one.
#[test]
fn grid_picks_the_l2_with_the_best_validation_auc() {
    let c = collector(1, 400, 1, 60, 1.0, -0.5, 11);
    let plan = plan();
    let search = SearchPlan {
        l2_grid: vec![0.01, 1.0, 30.0, 300.0],
        threads: 1,
        ..SearchPlan::around(&plan.fit)
    };
    let prepared = prepare(&c, &plan, &search);
    let selection = fit_one(&c, &prepared[0], &search.candidates(1.0), &plan, &search)
        .unwrap()
        .selection;
    assert_eq!(selection.grid.len(), 4, "{selection:?}");
    let aucs: Vec<f64> = selection
        .grid
        .iter()
        .map(|g| g.validation_auc.unwrap())
        .collect();
    let best = aucs.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let chosen = selection
        .grid
        .iter()
        .find(|g| g.l2 == selection.l2)
        .unwrap();
    assert_eq!(chosen.validation_auc, Some(best), "{selection:?}");
    assert!(
        selection.l2 > 0.01,
        "the weakest penalty overfits here: {selection:?}"
    );
    assert!(best > aucs[0] + 0.005, "{selection:?}");
}

/// Ties go to the stronger penalty; one candidate skips the grid.
#[test]
fn ties_go_to_the_stronger_penalty_and_one_candidate_skips_the_grid() {
    let c = collector(1, 300, 2, 3, 2.0, 0.0, 12);
    let plan = plan();
    // Two candidates so close that their models rank the rows identically.
    let search = SearchPlan {
        l2_grid: vec![1.0, 1.000_000_001],
        threads: 1,
        ..SearchPlan::around(&plan.fit)
    };
    let prepared = prepare(&c, &plan, &search);
    let sel = fit_one(&c, &prepared[0], &search.candidates(1.0), &plan, &search)
        .unwrap()
        .selection;
    assert_eq!(sel.grid[0].validation_auc, sel.grid[1].validation_auc);
    assert_eq!(sel.l2, 1.000_000_001);
    let single = SearchPlan {
        l2_grid: vec![5.0],
        ..search
    };
    let sel = fit_one(&c, &prepared[0], &single.candidates(1.0), &plan, &single)
        .unwrap()
        .selection;
    assert_eq!((sel.l2, sel.grid.len()), (5.0, 0));
    assert!(sel.skipped.is_some());
}

/// The models do not depend on the number of threads: every outcome's job is pure.
#[test]
fn parallel_and_sequential_fits_are_identical() {
    let c = collector(3, 600, 3, 5, 1.5, -1.5, 13);
    let plan = plan();
    let fits = |threads| {
        let search = SearchPlan {
            threads,
            ..SearchPlan::around(&plan.fit)
        };
        let prepared = prepare(&c, &plan, &search);
        let mut started = Vec::new();
        let out: Vec<(Solution, Selection)> =
            fit_all(&c, &prepared, &plan, &search, &mut |_: &str, o, _| {
                started.push(o)
            })
            .into_iter()
            .map(|r| {
                let OutcomeFit {
                    solution: s,
                    selection: sel,
                    ..
                } = r.unwrap();
                (s, sel)
            })
            .collect();
        started.sort_unstable();
        assert_eq!(started, vec![0, 1, 2]);
        out
    };
    let sequential = fits(1);
    assert_eq!(sequential, fits(2));
    assert_eq!(sequential, fits(3));
    // The outcomes differ, so the comparison is not trivially of equal jobs.
    assert_ne!(sequential[0].0, sequential[1].0);
}

/// Validation rows are whole sessions of the training split, never holdout rows, and the
/// matrix holds the grid rows first; the same seed gives the same split.
#[test]
fn validation_split_is_by_session_inside_training_and_deterministic() {
    let c = collector(1, 500, 4, 3, 1.0, -1.0, 14);
    let plan = plan();
    let search = SearchPlan::around(&plan.fit);
    let p = &prepare(&c, &plan, &search)[0];
    let again = &prepare(&c, &plan, &search)[0];
    assert_eq!(p.validation, again.validation);
    assert_eq!(p.x, again.x);
    let sessions = &c.outcomes[0].sessions;
    let val: std::collections::HashSet<u64> = p.validation.iter().map(|&i| sessions[i]).collect();
    let hold: std::collections::HashSet<u64> = p.holdout.iter().map(|&i| sessions[i]).collect();
    assert!(val.is_disjoint(&hold));
    for &i in &p.train {
        assert_eq!(val.contains(&sessions[i]), p.validation.contains(&i));
    }
    let share = val.len() as f64 / (500.0 - hold.len() as f64);
    assert!((0.1..0.3).contains(&share), "{share}");
    assert!(p.grid_rows > 0 && p.grid_rows < p.x.nrows());
}

/// Through the whole path, published probabilities are P(outcome) when the outcome is
/// the majority of the kept rows too (linfa maps `true` to +1 then).
#[test]
fn majority_outcome_still_predicts_the_true_class() {
    let c = collector(1, 800, 2, 3, 2.0, 1.8, 15);
    let plan = plan();
    let search = SearchPlan::around(&plan.fit);
    let prepared = prepare(&c, &plan, &search);
    let p = &prepared[0];
    let rate = p.y.iter().filter(|&&b| b).count() as f64 / p.y.len() as f64;
    assert!(rate > 0.6, "positives must be the majority: {rate}");
    let solution = fit_one(&c, p, &search.candidates(1.0), &plan, &search)
        .unwrap()
        .solution;
    let model = p.model(solution);
    assert!(model.weights[0] > 0.5, "{:?}", model.weights);
    let src = p.rows(&c, &p.train);
    let mean = (0..p.train.len())
        .map(|i| crate::fit::sigmoid(model.logit_f32(src.row(i))))
        .sum::<f64>()
        / p.train.len() as f64;
    let base = p.train.iter().filter(|&&i| p.labels[i]).count() as f64 / p.train.len() as f64;
    assert!((mean - base).abs() < 0.03, "mean {mean} base {base}");
}

/// An outcome with fewer positives than the minimum is skipped with its count and the
/// minimum in the reason; the others are kept.
#[test]
fn outcomes_with_too_few_positives_are_skipped_and_the_rest_kept() {
    // Outcome 1 keeps the achievements of 5 sessions only.
    let mut c = collector(2, 300, 2, 3, 1.0, -0.5, 5);
    let mut kept = 0;
    c.achieved.retain(|&(_, o)| {
        kept += usize::from(o == 1);
        o == 0 || kept <= 5
    });
    let names = ["common", "rare"];
    let positives = |o: usize| c.labels(o).iter().filter(|&&b| b).count();
    assert!(
        positives(0) >= 50 && positives(1) < 50,
        "{} {}",
        positives(0),
        positives(1)
    );
    let (keep, skipped) = split_by_positives(&names, &c, &[0, 1], 50);
    assert_eq!(keep, vec![0]);
    assert_eq!(skipped.len(), 1, "{skipped:?}");
    assert_eq!(skipped[0].outcome, "rare");
    assert_eq!(skipped[0].positives, positives(1));
    assert!(
        skipped[0].reason.contains("min_positives = 50"),
        "{}",
        skipped[0].reason
    );
    // A minimum of 1 keeps both (the rare one has a few positives).
    let (keep, skipped) = split_by_positives(&names, &c, &[0, 1], positives(1).max(1));
    assert_eq!((keep.len(), skipped.len()), (2, 0));
}

/// `--outcomes`: the named subset in configuration order; an unknown name fails naming it
/// and the configured ones.
#[test]
fn outcome_selection_keeps_config_order_and_names_unknown_outcomes() {
    let names = ["a", "b", "c"];
    assert_eq!(select_outcomes(&names, None).unwrap(), vec![0, 1, 2]);
    let only = vec!["c".to_owned(), "a".to_owned()];
    assert_eq!(select_outcomes(&names, Some(&only)).unwrap(), vec![0, 2]);
    let only = vec!["a".to_owned(), "d".to_owned()];
    let err = select_outcomes(&names, Some(&only))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`d`") && err.contains("a, b, c"), "{err}");
}

/// A holdout AUC under the floor and a calibration error over the threshold each give a
/// warning naming the outcome and the threshold; a good holdout gives none.
#[test]
fn holdout_checks_flag_low_auc_and_poor_calibration() {
    let checks = QualityChecks::default();
    // Random scores: AUC near 0.5; all predictions 0.9 while the rate is 0.5: ECE 0.4.
    let labels: Vec<bool> = (0..400).map(|i| i % 2 == 0).collect();
    let flat = crate::metrics::evaluate(&vec![0.9; 400], &labels, 10);
    let w = holdout_warnings("signup", Some(&flat), &checks);
    let kinds: Vec<WarningKind> = w.iter().map(|w| w.kind).collect();
    assert_eq!(
        kinds,
        vec![WarningKind::LowAuc, WarningKind::Miscalibrated],
        "{w:?}"
    );
    assert!(w[0].message.contains("`signup`") && w[0].message.contains("auc_floor = 0.6"));
    assert!(w[1].message.contains("max_calibration_error = 0.05"));
    // Separating and calibrated enough: 0.96 / 0.04 predicted for rates 1 / 0 (ECE 0.04).
    let good: Vec<f64> = labels
        .iter()
        .map(|&l| if l { 0.96 } else { 0.04 })
        .collect();
    let good = crate::metrics::evaluate(&good, &labels, 10);
    assert!(holdout_warnings("signup", Some(&good), &checks).is_empty());
    assert!(holdout_warnings("signup", None, &checks).is_empty());
}

/// The outcome wrapper's message names the outcome once and leaves the cause to `source`,
/// so printing the chain does not repeat the cause.
#[test]
fn outcome_error_reads_once_through_the_chain() {
    let e = TrainingError::Outcome {
        outcome: "webinar_signup".into(),
        source: Box::new(TrainingError::NoPositives { rows: 10 }),
    };
    let mut chain = e.to_string();
    let mut cause = std::error::Error::source(&e);
    while let Some(c) = cause {
        chain.push_str(&format!(": {c}"));
        cause = c.source();
    }
    assert_eq!(chain.matches("no positive examples").count(), 1, "{chain}");
    assert!(
        chain.starts_with("outcome `webinar_signup`: no positive"),
        "{chain}"
    );
}

#[test]
fn quality_checks_are_validated_naming_the_field() {
    let bad = QualityChecks {
        auc_floor: 1.5,
        ..QualityChecks::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("auc_floor"));
    let bad = QualityChecks {
        min_positives: 0,
        ..QualityChecks::default()
    };
    assert!(bad
        .validate()
        .unwrap_err()
        .to_string()
        .contains("min_positives"));
    let bad = QualityChecks {
        max_calibration_error: 0.0,
        ..QualityChecks::default()
    };
    let err = bad.validate().unwrap_err().to_string();
    assert!(err.contains("max_calibration_error"), "{err}");
}
