//! Training and evaluating one model per outcome from collected examples: the glue between
//! the engine's examples ([`ExampleCollector`]), the fits and the metrics, producing model
//! artifacts the engine loads.
//!
//! Training one outcome, in order:
//! 1. **Split by session** (every event of a session on one side, deterministic by seed):
//!    holdout (reported, never fitted) and training; within training, a validation part
//!    (another hash seed) on which the regularization is chosen.
//! 2. **Prepare** ([`prepare_outcomes`]): standardization statistics over all training rows,
//!    the seeded negative sample, and the standardized column-major `f32` search matrix of
//!    the kept rows, grid rows first and validation rows last (see `design.rs`). The
//!    collector's rows are read in place; nothing else is copied.
//! 3. **Grid**: one fit per candidate l2 on the leading (non-validation) kept rows, as a
//!    regularization path (strongest penalty first, each fit warm-started from the last);
//!    each is scored by AUC on *all* validation rows (not undersampled), read from the
//!    collector.
//! 4. **Refit** on all kept rows with the best l2 (highest validation AUC; ties go to the
//!    stronger penalty), warm-started from that grid point's solution.
//!
//! Every fit (grid and refit) descends on the `f32` matrix and is then checked and polished
//! on an `f64` copy of the same rows, built once per outcome, until it meets
//! scikit-learn's stopping rule (`fit::fit_and_polish`, `fit::stopping`). A warm start that
//! already meets the rule costs one gradient, as in scikit-learn (0 iterations).
//!
//! Steps 3 and 4 of one outcome are one job; the outcomes' jobs run on every core
//! ([`crate::parallel`]), largest first. Jobs are pure, so the models do not depend on the
//! thread count.
//!
//! [`train_checked`] (in `checks.rs`) wraps this for real data: it skips outcomes with too
//! few positives, trains a named subset, and checks each holdout's AUC and calibration.
//!
//! Why one file of this size: the four steps share the plan and prepared-outcome types and
//! are read in order; the tests are in `tests.rs`.

use std::time::Instant;

use ndarray::{Array1, Array2, ArrayView1, Axis, Slice};
use propensity_engine::drift::DriftReference;
use propensity_engine::model::{score_percentiles, MODEL_FORMAT};
use propensity_engine::stable_hash::stable_hash_seeded;
use propensity_engine::{EngineConfig, ModelArtifact};
use serde::{Deserialize, Serialize};

mod checks;
pub use checks::{
    holdout_warnings, select_outcomes, split_by_positives, train_checked, CheckedTraining,
    QualityChecks, QualityWarning, SkippedOutcome, WarningKind,
};

use crate::dataset::ExampleCollector;
use crate::design::{check_finite, sample_rows, standardization, standardized_matrix, PickedRows};
use crate::error::TrainingError;
use crate::fit::{
    fit_and_polish, validate_params, FitParams, FittedModel, SampleCounts, Solution,
    GRADIENT_TOLERANCE_PER_ROW,
};
use crate::metrics::{evaluate, roc_auc, EvaluationReport};
use crate::parallel::{run_jobs, thread_count};

/// Training settings beyond the fit itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingPlan {
    /// Fit hyper-parameters.
    pub fit: FitParams,
    /// Fraction of sessions held out for evaluation, in [0, 0.9].
    pub holdout_fraction: f64,
    /// Seed of the holdout split.
    pub seed: u64,
}

/// How the L2 penalty is chosen and how many threads fit. Separate from [`TrainingPlan`] so
/// that the configuration file's `[training]` table keeps its shape;
/// [`SearchPlan::around`] derives the default from it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SearchPlan {
    /// Candidate L2 penalties (linfa-logistic `alpha` on its summed loss, i.e. 1/C of
    /// scikit-learn's `LogisticRegression`). One value (or none: `fit.l2`) skips the
    /// validation fits. Each must be finite and >= 0.
    pub l2_grid: Vec<f64>,
    /// Fraction of the *training* sessions whose rows score the grid, in (0, 0.5].
    pub validation_fraction: f64,
    /// Threads running fits; 0 means every core.
    pub threads: usize,
    /// Gradient tolerance per kept row (see [`GRADIENT_TOLERANCE_PER_ROW`]); > 0.
    pub tolerance_per_row: f64,
}

impl Default for SearchPlan {
    fn default() -> Self {
        Self::around(&FitParams::default())
    }
}

impl SearchPlan {
    /// The default search for a configured fit: `l2 × {0.1, 1, 10, 100}`, a fifth of the
    /// training sessions for validation, every core. Around the configured value because the
    /// configuration names one penalty; upwards more than downwards because on a summed loss
    /// a fixed penalty fades as data grows, so small data sets are the ones that need more.
    pub fn around(fit: &FitParams) -> Self {
        Self {
            l2_grid: [0.1, 1.0, 10.0, 100.0].iter().map(|m| m * fit.l2).collect(),
            validation_fraction: 0.2,
            threads: 0,
            tolerance_per_row: GRADIENT_TOLERANCE_PER_ROW,
        }
    }

    /// The distinct candidates, ascending (`fallback` when the grid is empty).
    fn candidates(&self, fallback: f64) -> Vec<f64> {
        let mut grid = if self.l2_grid.is_empty() {
            vec![fallback]
        } else {
            self.l2_grid.clone()
        };
        grid.sort_by(f64::total_cmp);
        grid.dedup();
        grid
    }

    fn validate(&self) -> Result<(), TrainingError> {
        if let Some(bad) = self.l2_grid.iter().find(|v| !v.is_finite() || **v < 0.0) {
            return Err(TrainingError::InvalidParams {
                field: "l2_grid",
                reason: format!("every value must be finite and >= 0, got {bad}"),
            });
        }
        if !(self.validation_fraction > 0.0 && self.validation_fraction <= 0.5) {
            return Err(TrainingError::InvalidParams {
                field: "validation_fraction",
                reason: format!("must be within (0, 0.5], got {}", self.validation_fraction),
            });
        }
        if !(self.tolerance_per_row.is_finite() && self.tolerance_per_row > 0.0) {
            return Err(TrainingError::InvalidParams {
                field: "tolerance_per_row",
                reason: format!("must be finite and > 0, got {}", self.tolerance_per_row),
            });
        }
        Ok(())
    }
}

/// One candidate of the regularization grid and how it did.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GridPoint {
    /// The L2 penalty.
    pub l2: f64,
    /// AUC on the validation rows of the model fitted on the other training rows.
    pub validation_auc: Option<f64>,
}

/// How the L2 penalty of one outcome was chosen.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selection {
    /// The penalty of the final model.
    pub l2: f64,
    /// Every candidate with its validation AUC (empty when the grid was skipped).
    pub grid: Vec<GridPoint>,
    /// Why the grid was skipped, if it was.
    pub skipped: Option<String>,
    /// Training rows in validation sessions (all scored, not undersampled).
    pub validation_rows: usize,
    /// Kept rows the grid fits saw.
    pub grid_fit_rows: usize,
}

/// The result of training one outcome.
#[derive(Debug, Clone, Serialize)]
pub struct TrainedOutcome {
    /// The artifact to save.
    pub artifact: ModelArtifact,
    /// Training rows (events) used.
    pub train_rows: usize,
    /// Positive training rows.
    pub train_positives: usize,
    /// Holdout evaluation per event (None without a holdout).
    pub holdout: Option<EvaluationReport>,
    /// The regularization choice.
    pub selection: Selection,
}

/// Whether `session` falls in the `fraction` of sessions picked by `seed`.
fn session_in(session: u64, fraction: f64, seed: u64) -> bool {
    let h = stable_hash_seeded(seed, &session.to_le_bytes());
    (h as f64 / u64::MAX as f64) < fraction
}

/// The validation split must not line up with the holdout split: another hash seed.
const VALIDATION_SEED_SALT: u64 = 0x7A11_DA7E_5EED_0001;

/// One outcome made ready to fit: the split, the statistics and the design matrix.
#[derive(Debug)]
pub struct PreparedOutcome {
    /// Outcome index in the configuration.
    pub index: usize,
    /// Outcome name.
    pub name: String,
    /// Training rows (collector row indices), not undersampled.
    train: Vec<usize>,
    /// Holdout rows (collector row indices).
    holdout: Vec<usize>,
    /// Training rows in validation sessions (collector row indices).
    validation: Vec<usize>,
    /// Label of every collector row of the outcome.
    labels: Vec<bool>,
    means: Vec<f64>,
    stds: Vec<f64>,
    counts: SampleCounts,
    /// Standardized kept rows in `f32` (the search matrix), column-major: grid rows, then
    /// validation rows.
    x: Array2<f32>,
    /// Collector row indices of `x`'s rows, in order: the `f64` polish matrix is rebuilt
    /// from them.
    kept: Vec<usize>,
    y: Array1<bool>,
    /// Leading rows of `x` outside validation sessions.
    grid_rows: usize,
    /// Why the grid cannot run on this outcome (one class missing somewhere).
    grid_unusable: Option<String>,
}

impl PreparedOutcome {
    /// Rows of the final fit (kept by undersampling).
    pub fn fit_rows(&self) -> usize {
        self.kept.len()
    }
    /// The `f64` matrix fits are checked and polished on (standardized kept rows, grid rows
    /// first, column-major), built anew on each call.
    pub fn exact_matrix(&self, examples: &ExampleCollector) -> Array2<f64> {
        self.standardized_copy(examples, &self.kept).0
    }
    /// The labels of [`exact_matrix`](Self::exact_matrix)'s rows.
    pub fn matrix_labels(&self) -> ArrayView1<'_, bool> {
        self.y.view()
    }
    /// How many leading rows of the matrix the grid fits use.
    pub fn grid_rows(&self) -> usize {
        self.grid_rows
    }
    /// Training rows before undersampling.
    pub fn train_rows(&self) -> usize {
        self.train.len()
    }
    /// `ln(sampling rate)` added to the intercept.
    pub fn intercept_correction(&self) -> f64 {
        self.counts.intercept_correction()
    }
    /// One cold fit (no grid, no warm start) of the whole matrix at `l2`, `f32` then the
    /// `f64` polish, on this thread: the fitter alone, for benchmarks.
    pub fn fit_once(
        &self,
        examples: &ExampleCollector,
        l2: f64,
        max_iterations: u64,
        tolerance_per_row: f64,
    ) -> Result<FittedModel, TrainingError> {
        let exact = self.exact_matrix(examples);
        let (solution, _) = fit_and_polish(
            self.x.view(),
            exact.view(),
            self.y.view(),
            l2,
            max_iterations,
            tolerance_per_row,
            None,
        )?;
        Ok(self.model(solution))
    }
    /// Standardized copies of the validation rows and their labels (benchmark export only:
    /// training scores them in place).
    pub fn validation_matrix(&self, examples: &ExampleCollector) -> (Array2<f64>, Vec<bool>) {
        self.standardized_copy(examples, &self.validation)
    }
    /// Standardized copies of the holdout rows and their labels (benchmark export only).
    pub fn holdout_matrix(&self, examples: &ExampleCollector) -> (Array2<f64>, Vec<bool>) {
        self.standardized_copy(examples, &self.holdout)
    }
    fn standardized_copy(
        &self,
        examples: &ExampleCollector,
        rows: &[usize],
    ) -> (Array2<f64>, Vec<bool>) {
        let src = self.rows(examples, rows);
        let all: Vec<usize> = (0..rows.len()).collect();
        let labels: Vec<bool> = rows.iter().map(|&i| self.labels[i]).collect();
        let (m, _) = standardized_matrix::<f64>(&src, &labels, &all, &self.means, &self.stds);
        (m, labels)
    }
    fn rows<'a>(&self, examples: &'a ExampleCollector, pick: &'a [usize]) -> PickedRows<'a> {
        PickedRows {
            values: &examples.outcomes[self.index].rows,
            dim: examples.dim(),
            pick,
        }
    }
    /// AUC of `model` on `rows`, read in place (logits: monotone, and never saturated).
    fn auc(&self, examples: &ExampleCollector, model: &FittedModel, rows: &[usize]) -> Option<f64> {
        let src = self.rows(examples, rows);
        let scores: Vec<f64> = (0..rows.len())
            .map(|i| model.logit_f32(src.row(i)))
            .collect();
        let labels: Vec<bool> = rows.iter().map(|&i| self.labels[i]).collect();
        roc_auc(&scores, &labels)
    }
    fn model(&self, solution: Solution) -> FittedModel {
        FittedModel::from_solution(self.means.clone(), self.stds.clone(), solution, self.counts)
    }
}

/// Range checks of both plans; errors name the field.
fn validate_plans(plan: &TrainingPlan, search: &SearchPlan) -> Result<(), TrainingError> {
    if !(0.0..=0.9).contains(&plan.holdout_fraction) {
        return Err(TrainingError::InvalidParams {
            field: "holdout_fraction",
            reason: format!("must be within [0, 0.9], got {}", plan.holdout_fraction),
        });
    }
    validate_params(&plan.fit)?;
    search.validate()
}

/// Splits, standardizes, undersamples and builds the design matrix of every outcome.
pub fn prepare_outcomes(
    config: &EngineConfig,
    examples: &ExampleCollector,
    plan: &TrainingPlan,
    search: &SearchPlan,
) -> Result<Vec<PreparedOutcome>, TrainingError> {
    validate_plans(plan, search)?;
    config
        .outcomes
        .iter()
        .enumerate()
        .map(|(o, outcome)| {
            prepare_one(examples, o, &outcome.name, plan, search).map_err(|e| {
                TrainingError::Outcome {
                    outcome: outcome.name.clone(),
                    source: Box::new(e),
                }
            })
        })
        .collect()
}

fn prepare_one(
    examples: &ExampleCollector,
    o: usize,
    name: &str,
    plan: &TrainingPlan,
    search: &SearchPlan,
) -> Result<PreparedOutcome, TrainingError> {
    let ex = &examples.outcomes[o];
    let labels = examples.labels(o);
    let validation_seed = plan.seed ^ VALIDATION_SEED_SALT;
    let (mut train, mut holdout) = (Vec::new(), Vec::new());
    for i in 0..labels.len() {
        if examples.in_holdout(o, i, plan.holdout_fraction, plan.seed) {
            holdout.push(i);
        } else {
            train.push(i);
        }
    }
    let rows = train.len();
    if rows == 0 {
        return Err(TrainingError::NoRows);
    }
    let src = PickedRows {
        values: &ex.rows,
        dim: examples.dim(),
        pick: &train,
    };
    check_finite(&src)?;
    let y: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
    let positives = y.iter().filter(|&&b| b).count();
    let negatives = rows - positives;
    if positives == 0 {
        return Err(TrainingError::NoPositives { rows });
    }
    if negatives == 0 {
        return Err(TrainingError::NoNegatives { rows });
    }
    let (means, stds) = standardization(&src)?;
    // The same seeded sample as a plain fit of these rows would draw.
    let keep = sample_rows(
        &y,
        positives,
        negatives,
        plan.fit.negative_to_positive_max,
        plan.fit.seed,
    );
    let negatives_kept = keep.len() - positives;
    let is_validation = |t: usize| {
        session_in(
            ex.sessions[train[t]],
            search.validation_fraction,
            validation_seed,
        )
    };
    // Grid rows first, validation rows last, each in row order.
    let (mut order, tail): (Vec<usize>, Vec<usize>) =
        keep.iter().partition(|&&t| !is_validation(t));
    let grid_rows = order.len();
    order.extend(tail);
    let validation: Vec<usize> = (0..rows)
        .filter(|&t| is_validation(t))
        .map(|t| train[t])
        .collect();
    let (x, y_kept) = standardized_matrix::<f32>(&src, &y, &order, &means, &stds);
    let kept: Vec<usize> = order.iter().map(|&t| train[t]).collect();

    let classes = |v: &mut dyn Iterator<Item = bool>| {
        let (mut t, mut f) = (false, false);
        for b in v {
            t |= b;
            f |= !b;
        }
        t && f
    };
    let grid_unusable = if !classes(&mut y_kept.iter().take(grid_rows).copied()) {
        Some("the non-validation rows lack a class".to_owned())
    } else if !classes(&mut validation.iter().map(|&i| labels[i])) {
        Some("the validation rows lack a class".to_owned())
    } else {
        None
    };
    Ok(PreparedOutcome {
        index: o,
        name: name.to_owned(),
        train,
        holdout,
        validation,
        labels,
        means,
        stds,
        counts: SampleCounts {
            positives,
            negatives,
            negatives_kept,
        },
        x,
        kept,
        y: y_kept,
        grid_rows,
        grid_unusable,
    })
}

/// Trains every configured outcome with the default [`SearchPlan`] around `plan.fit.l2`.
/// `progress(outcome, index, total)` is called as each outcome's first fit starts.
pub fn train_outcomes(
    config: &EngineConfig,
    examples: &ExampleCollector,
    plan: &TrainingPlan,
    progress: impl FnMut(&str, usize, usize),
) -> Result<Vec<TrainedOutcome>, TrainingError> {
    train_outcomes_with(
        config,
        examples,
        plan,
        &SearchPlan::around(&plan.fit),
        progress,
    )
}

/// Trains every configured outcome: [`prepare_outcomes`], then [`train_prepared`].
pub fn train_outcomes_with(
    config: &EngineConfig,
    examples: &ExampleCollector,
    plan: &TrainingPlan,
    search: &SearchPlan,
    progress: impl FnMut(&str, usize, usize),
) -> Result<Vec<TrainedOutcome>, TrainingError> {
    let prepared = prepare_outcomes(config, examples, plan, search)?;
    train_prepared(config, examples, &prepared, plan, search, progress)
}

/// Where [`train_prepared`]'s time went, seconds (benchmarks).
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct PhaseTimes {
    /// Wall time of all fits (outcomes in parallel).
    pub fit_secs: f64,
    /// Grid fits and their validation scoring, summed over outcomes (thread time).
    pub grid_secs: f64,
    /// Refits (`f32`, then the `f64` polish), summed over outcomes (thread time).
    pub refit_secs: f64,
    /// The polishes alone (building their `f64` matrix included), summed over outcomes
    /// (thread time; part of `refit_secs`).
    pub polish_secs: f64,
}

/// What [`fit_one`] returns.
struct OutcomeFit {
    /// The final (polished) solution.
    solution: Solution,
    selection: Selection,
    /// Seconds of the grid fits and their validation scoring.
    grid_secs: f64,
    /// Seconds of the refit, polish included.
    refit_secs: f64,
    /// Seconds of the polish alone.
    polish_secs: f64,
}

/// Every outcome's fits, one job per outcome on `search.threads` threads, largest matrices
/// first; results by outcome index.
fn fit_all(
    examples: &ExampleCollector,
    prepared: &[PreparedOutcome],
    plan: &TrainingPlan,
    search: &SearchPlan,
    progress: &mut impl FnMut(&str, usize, usize),
) -> Vec<Result<OutcomeFit, TrainingError>> {
    let candidates = search.candidates(plan.fit.l2);
    let total = prepared.len();
    let jobs: Vec<usize> = (0..total).collect();
    let order = longest_first(&jobs, |&o| prepared[o].x.nrows());
    run_jobs(
        &order,
        thread_count(search.threads),
        |o| fit_one(examples, &prepared[o], &candidates, plan, search),
        |o| progress(&prepared[o].name, o, total),
    )
}

/// One outcome's fits: the grid as a regularization path, then the refit.
///
/// The grid runs from the strongest penalty to the weakest, each fit warm-started from the
/// previous solution: a strongly penalized problem converges in few iterations, and each
/// next solution lies close to the last, so the path costs little more than one cold fit.
/// The refit on all kept rows starts from the chosen point's solution and ends with the
/// `f64` polish.
fn fit_one(
    examples: &ExampleCollector,
    p: &PreparedOutcome,
    candidates: &[f64],
    plan: &TrainingPlan,
    search_plan: &SearchPlan,
) -> Result<OutcomeFit, TrainingError> {
    let t0 = Instant::now();
    // The f64 rows every stopping check and polish reads; the grid uses its leading rows.
    let exact = p.exact_matrix(examples);
    let mut polish_secs = 0.0;
    let run_grid = candidates.len() > 1 && p.grid_unusable.is_none();
    let mut grid = Vec::new();
    // (validation AUC, l2, solution) of the best point so far.
    let mut best: Option<(f64, f64, Solution)> = None;
    if run_grid {
        let n = p.grid_rows;
        let leading = Slice::from(..n);
        let (search, exact, y) = (
            p.x.slice_axis(Axis(0), leading),
            exact.slice_axis(Axis(0), leading),
            p.y.slice_axis(Axis(0), leading),
        );
        let mut previous: Option<Solution> = None;
        for &l2 in candidates.iter().rev() {
            let (solution, secs) = fit_and_polish(
                search,
                exact,
                y,
                l2,
                plan.fit.max_iterations,
                search_plan.tolerance_per_row,
                previous.as_ref(),
            )?;
            polish_secs += secs;
            let auc = p.auc(examples, &p.model(solution.clone()), &p.validation);
            grid.push(GridPoint {
                l2,
                validation_auc: auc,
            });
            // Walking down from the strongest penalty, a tie keeps the earlier (stronger).
            let score = auc.unwrap_or(f64::NEG_INFINITY);
            if best.as_ref().is_none_or(|(s, _, _)| score > *s) {
                best = Some((score, l2, solution.clone()));
            }
            previous = Some(solution);
        }
        // Reported in ascending l2, like the candidates.
        grid.reverse();
    }
    let grid_secs = t0.elapsed().as_secs_f64();
    let (l2, warm, skipped) = match best {
        Some((_, l2, solution)) => (l2, Some(solution), None),
        // Skipped: the only candidate, else the configured penalty.
        None if candidates.len() == 1 => {
            (candidates[0], None, Some("a single candidate".to_owned()))
        }
        None => (plan.fit.l2, None, p.grid_unusable.clone()),
    };
    let t1 = Instant::now();
    let (solution, secs) = fit_and_polish(
        p.x.view(),
        exact.view(),
        p.y.view(),
        l2,
        plan.fit.max_iterations,
        search_plan.tolerance_per_row,
        warm.as_ref(),
    )?;
    polish_secs += secs;
    let selection = Selection {
        l2,
        grid,
        skipped,
        validation_rows: p.validation.len(),
        grid_fit_rows: p.grid_rows,
    };
    Ok(OutcomeFit {
        solution,
        selection,
        grid_secs,
        refit_secs: t1.elapsed().as_secs_f64(),
        polish_secs,
    })
}

/// Grid fits and refits of prepared outcomes (see the module docs), then artifacts and
/// holdout evaluations.
pub fn train_prepared(
    config: &EngineConfig,
    examples: &ExampleCollector,
    prepared: &[PreparedOutcome],
    plan: &TrainingPlan,
    search: &SearchPlan,
    progress: impl FnMut(&str, usize, usize),
) -> Result<Vec<TrainedOutcome>, TrainingError> {
    train_prepared_timed(config, examples, prepared, plan, search, progress).map(|(t, _)| t)
}

/// [`train_prepared`], also returning how long each phase took.
pub fn train_prepared_timed(
    config: &EngineConfig,
    examples: &ExampleCollector,
    prepared: &[PreparedOutcome],
    plan: &TrainingPlan,
    search: &SearchPlan,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<(Vec<TrainedOutcome>, PhaseTimes), TrainingError> {
    let wrap = |p: &PreparedOutcome| {
        let name = p.name.clone();
        move |e: TrainingError| TrainingError::Outcome {
            outcome: name,
            source: Box::new(e),
        }
    };
    let t0 = Instant::now();
    let results = fit_all(examples, prepared, plan, search, &mut progress);
    let mut times = PhaseTimes {
        fit_secs: t0.elapsed().as_secs_f64(),
        ..PhaseTimes::default()
    };

    let spec = &config.features;
    let mut out = Vec::with_capacity(prepared.len());
    for (p, result) in prepared.iter().zip(results) {
        let OutcomeFit {
            solution,
            selection,
            grid_secs,
            refit_secs,
            polish_secs,
        } = result.map_err(wrap(p))?;
        times.grid_secs += grid_secs;
        times.refit_secs += refit_secs;
        times.polish_secs += polish_secs;
        let fitted = p.model(solution);
        // Every event of the training traffic, scored: the population the
        // artifact's percentiles describe (training rows, then holdout rows).
        let population: Vec<usize> = p.train.iter().chain(&p.holdout).copied().collect();
        let src = p.rows(examples, &population);
        let scores: Vec<f64> = (0..population.len())
            .map(|i| crate::fit::sigmoid(fitted.logit_f32(src.row(i))))
            .collect();
        let holdout = if p.holdout.is_empty() {
            None
        } else {
            let probs = &scores[p.train.len()..];
            let yh: Vec<bool> = p.holdout.iter().map(|&i| p.labels[i]).collect();
            Some(evaluate(probs, &yh, 10))
        };
        let model_version =
            ModelArtifact::derive_version(&p.name, &fitted.weights, fitted.intercept);
        let artifact = ModelArtifact {
            format: MODEL_FORMAT.to_owned(),
            outcome: p.name.clone(),
            model_version,
            feature_fingerprint: spec.fingerprint().to_owned(),
            vocabulary: spec.vocabulary().clone(),
            feature_names: spec.names().to_vec(),
            means: fitted.means.clone(),
            stds: fitted.stds.clone(),
            weights: fitted.weights.clone(),
            intercept: fitted.intercept,
            score_percentiles: score_percentiles(&scores),
            // The same population, binned for drift monitoring; the time
            // of day, week and year are not monitored (a window of an hour
            // sees one hour of one day).
            drift_reference: Some(DriftReference::from_rows(
                population.len(),
                src.dim,
                |i| src.row(i),
                &scores,
                |j| spec.names().get(j).is_some_and(|n| !n.starts_with("time.")),
            )),
            training: serde_json::json!({
                "rows": p.train.len(),
                "positives": fitted.positives,
                "negatives": fitted.negatives,
                "negatives_kept": fitted.negatives_kept,
                "intercept_correction": fitted.intercept_correction,
                "l2": selection.l2,
                "l2_grid": selection.grid.iter().map(|g| g.l2).collect::<Vec<_>>(),
                "validation_auc": selection.grid.iter().map(|g| g.validation_auc).collect::<Vec<_>>(),
                "l2_grid_skipped": selection.skipped,
                "validation_fraction": search.validation_fraction,
                "validation_rows": selection.validation_rows,
                "gradient_tolerance_per_row": search.tolerance_per_row,
                "stopping_rule": "every gradient component of the mean loss <= gradient_tolerance_per_row (scikit-learn lbfgs)",
                "holdout_fraction": plan.holdout_fraction,
                "holdout_auc": holdout.as_ref().and_then(|h| h.auc),
                "holdout_log_loss": holdout.as_ref().map(|h| h.log_loss),
            }),
        };
        out.push(TrainedOutcome {
            artifact,
            train_rows: p.train.len(),
            train_positives: fitted.positives,
            holdout,
            selection,
        });
    }
    Ok((out, times))
}

/// Job indices ordered by `size` descending (stable: equal sizes keep their order).
fn longest_first<J>(jobs: &[J], size: impl Fn(&J) -> usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..jobs.len()).collect();
    order.sort_by_key(|&k| std::cmp::Reverse(size(&jobs[k])));
    order
}

#[cfg(test)]
mod tests;
