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
    let (_, selection, _, _) =
        fit_one(&c, &prepared[0], &search.candidates(1.0), &plan, &search).unwrap();
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
    let (_, sel, _, _) =
        fit_one(&c, &prepared[0], &search.candidates(1.0), &plan, &search).unwrap();
    assert_eq!(sel.grid[0].validation_auc, sel.grid[1].validation_auc);
    assert_eq!(sel.l2, 1.000_000_001);
    let single = SearchPlan {
        l2_grid: vec![5.0],
        ..search
    };
    let (_, sel, _, _) =
        fit_one(&c, &prepared[0], &single.candidates(1.0), &plan, &single).unwrap();
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
                let (s, sel, _, _) = r.unwrap();
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
    let (solution, _, _, _) = fit_one(&c, p, &search.candidates(1.0), &plan, &search).unwrap();
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
