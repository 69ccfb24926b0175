//! Fitting one outcome's logistic-regression model: validation, standardization, negative
//! undersampling with prior correction, the linfa-logistic call (in `f32`, then polished in
//! `f64`: see [`fit_and_polish`]; stopped by scikit-learn's rule: see [`stopping`]), and the
//! orientation fix that makes the returned model
//! always predict P(outcome == true).
//!
//! ## Why the orientation fix exists
//! linfa-logistic 0.8.1 encodes a binary target as ±1 with **+1 for the more frequent label**
//! (ties: the label seen first), and its `params()` / `intercept()` / `predict_probabilities`
//! all refer to that label. With `bool` targets the fitted model therefore predicts
//! P(outcome) when positives are the majority and P(no outcome) when they are the minority,
//! which is the usual case for conversions. We read `FittedLogisticRegression::labels().pos.class`
//! (the label linfa mapped to +1) and negate weights and intercept when it is `false`, using
//! 1 - sigmoid(z) = sigmoid(-z).

use linfa::traits::Fit;
use linfa::DatasetBase;
use linfa_logistic::LogisticRegression;
use ndarray::{ArrayView1, ArrayView2};
use serde::{Deserialize, Serialize};

use crate::design::{check_finite, sample_rows, standardization, standardized_matrix};
use crate::error::TrainingError;

mod stopping;

/// Hyper-parameters of [`fit_outcome_model`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitParams {
    /// L2 penalty `alpha` handed to linfa-logistic (`alpha/2 * ||w||²`, intercept not
    /// penalized). linfa's loss is a *sum* over rows, so the penalty's relative strength
    /// shrinks as the training set grows. Must be finite and >= 0. Default 1.0.
    pub l2: f64,
    /// Maximum L-BFGS iterations. linfa returns the best parameters seen when the budget runs
    /// out, without an error. Must be >= 1. Default 200.
    pub max_iterations: u64,
    /// Class-imbalance handling: negatives are undersampled to at most this many times the
    /// number of positives (then the intercept is prior-corrected, see
    /// [`FittedModel::intercept_correction`]). `f64::INFINITY` disables undersampling.
    /// Must be > 0. Default 4.0.
    pub negative_to_positive_max: f64,
    /// Seed of the deterministic negative sample. Default 0.
    pub seed: u64,
}

impl Default for FitParams {
    fn default() -> Self {
        Self {
            l2: 1.0,
            max_iterations: 200,
            negative_to_positive_max: 4.0,
            seed: 0,
        }
    }
}

/// A fitted outcome model, expressed in *standardized* feature space:
///
/// `P(outcome) = sigmoid(intercept + Σ weights[i] * (x[i] - means[i]) / stds[i])`
///
/// `intercept` already includes [`intercept_correction`](Self::intercept_correction), so the
/// formula above is calibrated to the base rate of the full (unsampled) training data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FittedModel {
    /// Per-feature mean over all training rows (before undersampling).
    pub means: Vec<f64>,
    /// Per-feature population standard deviation over all training rows (before
    /// undersampling). A constant feature gets a std of **1.0** instead of 0, and its mean is
    /// its constant value, so `(x - mean) / std` is exactly 0 on training-like data and the
    /// feature contributes nothing (its weight is also pulled to 0 by the L2 penalty). A value
    /// different from the constant at scoring time is then scaled by 1, not by infinity.
    pub stds: Vec<f64>,
    /// Per-feature weights on the standardized features, oriented so that a positive weight
    /// raises P(outcome == true).
    pub weights: Vec<f64>,
    /// Intercept (log-odds of the outcome at the feature means), including
    /// `intercept_correction`.
    pub intercept: f64,
    /// Training rows where the outcome happened.
    pub positives: usize,
    /// Training rows where it did not (before undersampling).
    pub negatives: usize,
    /// Negative rows actually handed to the optimizer (`<= negatives`).
    pub negatives_kept: usize,
    /// Prior correction added to linfa's intercept: `ln(negatives_kept / negatives)`, i.e. the
    /// log of the negative sampling rate (King & Zeng 2001). 0 when nothing was dropped.
    /// Undersampling negatives by rate r multiplies the odds of the outcome by 1/r; adding
    /// ln(r) to the log-odds undoes that.
    pub intercept_correction: f64,
}

impl FittedModel {
    /// Number of features the model expects.
    pub fn feature_count(&self) -> usize {
        self.weights.len()
    }

    /// The linear predictor (log-odds of the outcome) for one row of raw features.
    ///
    /// Fails with [`TrainingError::FeatureCountMismatch`] when `features.len()` is not
    /// [`feature_count`](Self::feature_count).
    pub fn logit(&self, features: &[f64]) -> Result<f64, TrainingError> {
        if features.len() != self.weights.len() {
            return Err(TrainingError::FeatureCountMismatch {
                expected: self.weights.len(),
                got: features.len(),
            });
        }
        Ok(self.logit_unchecked(features.iter().copied()))
    }

    /// P(outcome == true) for one row of raw (unstandardized) features.
    ///
    /// Same length contract as [`logit`](Self::logit).
    pub fn probability(&self, features: &[f64]) -> Result<f64, TrainingError> {
        self.logit(features).map(sigmoid)
    }

    /// P(outcome == true) for every row of a raw feature matrix.
    ///
    /// Fails with [`TrainingError::FeatureCountMismatch`] when the column count is not
    /// [`feature_count`](Self::feature_count).
    pub fn predict_probabilities(&self, x: ArrayView2<f64>) -> Result<Vec<f64>, TrainingError> {
        if x.ncols() != self.weights.len() {
            return Err(TrainingError::FeatureCountMismatch {
                expected: self.weights.len(),
                got: x.ncols(),
            });
        }
        Ok(x.rows()
            .into_iter()
            .map(|row| sigmoid(self.logit_unchecked(row.iter().copied())))
            .collect())
    }

    /// The same model expressed on raw features: `(raw_weights, raw_intercept)` with
    /// `P(outcome) = sigmoid(raw_intercept + Σ raw_weights[i] * x[i])`.
    ///
    /// Algebraically identical to the standardized form; handy for engines that prefer not to
    /// standardize at scoring time (at the cost of slightly different rounding).
    pub fn raw_space(&self) -> (Vec<f64>, f64) {
        let mut intercept = self.intercept;
        let weights = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .map(|((w, m), s)| {
                let raw = w / s;
                intercept -= raw * m;
                raw
            })
            .collect();
        (weights, intercept)
    }

    fn logit_unchecked(&self, features: impl Iterator<Item = f64>) -> f64 {
        self.weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .zip(features)
            .fold(self.intercept, |acc, (((w, m), s), x)| {
                acc + w * (x - m) / s
            })
    }
}

/// Numerically stable logistic function (never evaluates `exp` of a large positive number).
pub(crate) fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// The stopping tolerance per training row (the default): scikit-learn's `tol`.
///
/// A fit stops when every component of the gradient of the *mean* loss is at most this,
/// scikit-learn's rule for `lbfgs` (its objective is `1/n Σ loss + ||w||²/(2·C·n)` since
/// scikit-learn 1.4, the same as linfa's summed one divided by n). linfa only tests the L2
/// norm of its summed loss's gradient; [`stopping`] enforces the rule around it.
pub const GRADIENT_TOLERANCE_PER_ROW: f64 = 1e-4;

/// A linfa solution on standardized features, oriented to P(outcome == true), before prior
/// correction. Also the warm start of a refit.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Solution {
    /// Weights on the standardized features.
    pub(crate) weights: Vec<f64>,
    /// Intercept of the rows the optimizer saw (no prior correction).
    pub(crate) intercept: f64,
}

/// Which label linfa-logistic 0.8.1 will map to +1 for these targets: the more frequent one,
/// the first seen on a tie (its `label_classes`). Only used to hand a warm start over in
/// linfa's orientation; the fitted model's own `labels()` still decides the final sign.
pub(crate) fn linfa_positive_class(y: &[bool]) -> bool {
    let trues = y.iter().filter(|&&b| b).count();
    let falses = y.len() - trues;
    match trues.cmp(&falses) {
        std::cmp::Ordering::Greater => true,
        std::cmp::Ordering::Less => false,
        std::cmp::Ordering::Equal => y.first().copied().unwrap_or(true),
    }
}

/// The element types a design matrix is stored in for linfa-logistic: `f32` for the search
/// (half the bytes per pass, see `design.rs`), `f64` for the polish that makes the final model
/// meet the tolerance exactly as a plain `f64` fit would.
///
/// linfa-logistic's own float trait is private, so its `Fit` cannot be named generically;
/// [`Element::linfa`] is that one call, written once for both types by a macro.
pub(crate) trait Element: Copy + Send + Sync + 'static {
    /// `v` in this precision (rounded to nearest for `f32`).
    fn from_f64(v: f64) -> Self;
    /// This value as an `f64` (exact for both types).
    fn to_f64(self) -> f64;
    /// linfa-logistic on `x` in this precision: `(parameters, intercept, linfa's +1 label)`,
    /// parameters in linfa's orientation. `init` is linfa's parameter vector (weights, then
    /// the intercept), already in its orientation.
    fn linfa(
        x: ArrayView2<Self>,
        y: ArrayView1<bool>,
        l2: f64,
        max_iterations: u64,
        gradient_tolerance: f64,
        init: Option<Vec<f64>>,
    ) -> Result<(Vec<f64>, f64, bool), TrainingError>;
}

macro_rules! linfa_element {
    ($t:ty, $from:expr) => {
        impl Element for $t {
            fn from_f64(v: f64) -> Self {
                $from(v)
            }
            fn to_f64(self) -> f64 {
                f64::from(self)
            }
            fn linfa(
                x: ArrayView2<Self>,
                y: ArrayView1<bool>,
                l2: f64,
                max_iterations: u64,
                gradient_tolerance: f64,
                init: Option<Vec<f64>>,
            ) -> Result<(Vec<f64>, f64, bool), TrainingError> {
                let mut params = LogisticRegression::<$t>::default()
                    .alpha(Self::from_f64(l2))
                    .max_iterations(max_iterations)
                    .gradient_tolerance(Self::from_f64(gradient_tolerance));
                if let Some(init) = init {
                    params = params.initial_params(init.into_iter().map(Self::from_f64).collect());
                }
                let fitted = params
                    .fit(&DatasetBase::new(x, y))
                    .map_err(|e| TrainingError::Linfa(e.to_string()))?;
                Ok((
                    fitted.params().iter().map(|&w| f64::from(w)).collect(),
                    f64::from(fitted.intercept()),
                    fitted.labels().pos.class,
                ))
            }
        }
    };
}

/// Rounds to nearest: what the search matrix holds.
fn f64_to_f32(v: f64) -> f32 {
    v as f32
}
linfa_element!(f32, f64_to_f32);
linfa_element!(f64, std::convert::identity);

/// One linfa-logistic fit of standardized rows `x` with labels `y` (both classes present),
/// stopped by argmin's test: the L2 norm of the summed loss's gradient at most
/// `gradient_tolerance` (absolute; see [`stopping`] for the rule fits actually follow).
/// `warm` starts L-BFGS from a previous solution (oriented to `true`; turned into linfa's
/// orientation here) instead of zero.
pub(crate) fn linfa_fit<E: Element>(
    x: ArrayView2<E>,
    y: ArrayView1<bool>,
    l2: f64,
    max_iterations: u64,
    gradient_tolerance: f64,
    warm: Option<&Solution>,
) -> Result<Solution, TrainingError> {
    let init = warm.map(|start| {
        let y_slice: Vec<bool> = y.iter().copied().collect();
        let sign = if linfa_positive_class(&y_slice) {
            1.0
        } else {
            -1.0
        };
        // linfa's parameter vector: weights, then the intercept.
        start
            .weights
            .iter()
            .chain(std::iter::once(&start.intercept))
            .map(|v| sign * v)
            .collect()
    });
    let (params, intercept, positive) =
        E::linfa(x, y, l2, max_iterations, gradient_tolerance, init)?;
    // linfa's +1 class is whichever label was more frequent in these rows (see module docs);
    // its parameters describe the log-odds of that class. Flip them when it is `false`.
    let sign = if positive { 1.0 } else { -1.0 };
    let solution = Solution {
        weights: params.iter().map(|w| sign * w).collect(),
        intercept: sign * intercept,
    };
    if !solution.intercept.is_finite() || solution.weights.iter().any(|w| !w.is_finite()) {
        return Err(TrainingError::Linfa(
            "optimizer produced non-finite parameters".to_owned(),
        ));
    }
    Ok(solution)
}

/// A fit that stops by scikit-learn's rule on the `f64` matrix `exact` (see [`stopping`]),
/// most of its descent done on the `f32` copy `search` of the same rows. Returns the
/// solution and the seconds spent on `exact` (checks and polish).
///
/// Why two precisions: an `f32` matrix halves the bytes every L-BFGS pass reads, and linfa
/// makes about five passes per iteration, so the `f32` stage does most of the descent at
/// about half the cost. But linfa then also sums the loss in `f32`, and near the optimum the
/// cost's rounding noise exceeds its decrease, so the `f32` stage runs one round, aimed at
/// the rule through the shape of the gradient at the start ([`stopping::round_tolerance`]).
/// The rule itself is checked, and met if need be, on `exact`: a restarted L-BFGS relearns
/// its curvature, so the better the `f32` round aims, the less `f64` work is left. A start
/// (warm, else [`base_rate_start`]) that already meets the rule is returned without any fit.
pub(crate) fn fit_and_polish(
    search: ArrayView2<f32>,
    exact: ArrayView2<f64>,
    y: ArrayView1<bool>,
    l2: f64,
    max_iterations: u64,
    tolerance_per_row: f64,
    warm: Option<&Solution>,
) -> Result<(Solution, f64), TrainingError> {
    debug_assert_eq!(exact.dim(), search.dim());
    let started = std::time::Instant::now();
    let target = tolerance_per_row * exact.nrows() as f64;
    let start = match warm {
        Some(w) => w.clone(),
        None => base_rate_start(y, exact.ncols()),
    };
    let at_start = stopping::gradient_norms(exact, y, l2, &start);
    if at_start.largest <= target {
        return Ok((start, started.elapsed().as_secs_f64()));
    }
    let mut exact_secs = started.elapsed().as_secs_f64();
    let rough = linfa_fit(
        search,
        y,
        l2,
        max_iterations,
        stopping::search_tolerance(target, at_start, exact.nrows(), exact.ncols()),
        Some(&start),
    )?;
    let polish = std::time::Instant::now();
    let solution = stopping::fit_to_rule(exact, y, l2, max_iterations, tolerance_per_row, rough)?;
    exact_secs += polish.elapsed().as_secs_f64();
    Ok((solution, exact_secs))
}

/// The cold start of a fit: no weights, the intercept at the log-odds of the rows' base
/// rate. That is the optimum of the intercept-only model (its intercept gradient is 0), so
/// the first L-BFGS step, a unit step against the summed gradient, is not spent on the
/// intercept; measured, it cut a cold `f32` stage on 137,000 rows from 5.4 s to 3.8 s. Rows
/// of one class only are refused before any fit, so both counts are positive.
fn base_rate_start(y: ArrayView1<bool>, cols: usize) -> Solution {
    let positives = y.iter().filter(|&&label| label).count();
    Solution {
        weights: vec![0.0; cols],
        intercept: (positives as f64 / (y.len() - positives) as f64).ln(),
    }
}

/// Row counts behind a fit: what the prior correction needs.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SampleCounts {
    /// Rows where the outcome happened (all kept).
    pub(crate) positives: usize,
    /// Rows where it did not, before undersampling.
    pub(crate) negatives: usize,
    /// Negative rows handed to the optimizer.
    pub(crate) negatives_kept: usize,
}

impl SampleCounts {
    /// `ln(negatives_kept / negatives)`, 0 when nothing was dropped (see
    /// [`FittedModel::intercept_correction`]).
    pub(crate) fn intercept_correction(&self) -> f64 {
        if self.negatives_kept == self.negatives {
            0.0
        } else {
            (self.negatives_kept as f64 / self.negatives as f64).ln()
        }
    }
}

impl FittedModel {
    /// Assembles a model from a solution, adding the prior correction for the sample.
    pub(crate) fn from_solution(
        means: Vec<f64>,
        stds: Vec<f64>,
        solution: Solution,
        counts: SampleCounts,
    ) -> Self {
        let intercept_correction = counts.intercept_correction();
        Self {
            means,
            stds,
            weights: solution.weights,
            intercept: solution.intercept + intercept_correction,
            positives: counts.positives,
            negatives: counts.negatives,
            negatives_kept: counts.negatives_kept,
            intercept_correction,
        }
    }

    /// The linear predictor of one collector row (`f32`, the engine's feature vector), without
    /// copying it; the length was checked when the rows were collected.
    pub(crate) fn logit_f32(&self, features: &[f32]) -> f64 {
        self.logit_unchecked(features.iter().map(|v| f64::from(*v)))
    }
}

/// Fits P(outcome == true | x) by L2-regularized logistic regression (linfa-logistic,
/// L-BFGS) and returns it as a [`FittedModel`].
///
/// Steps:
/// 1. validate shapes, labels, parameters and finiteness of `x`;
/// 2. compute per-column means and population stds over **all** rows (constant columns get
///    std 1.0, see [`FittedModel::stds`]);
/// 3. if there are more than `negative_to_positive_max × positives` negatives, keep a
///    deterministic uniform sample (seeded by `params.seed`) of exactly that many (at least
///    one); all positives are kept;
/// 4. fit linfa-logistic on the standardized kept rows (column-major), with `bool` targets,
///    until every gradient component of the mean loss is at most
///    [`GRADIENT_TOLERANCE_PER_ROW`]: first on an `f32` copy, then on the `f64` copy (see
///    `fit_and_polish`);
/// 5. orient the result to the `true` class and add `ln(sampling rate)` to the intercept.
///
/// Errors: [`TrainingError::NoRows`], [`TrainingError::LengthMismatch`],
/// [`TrainingError::InvalidParams`], [`TrainingError::NonFiniteFeature`],
/// [`TrainingError::NoPositives`], [`TrainingError::NoNegatives`],
/// [`TrainingError::FeatureOverflow`], [`TrainingError::Linfa`].
pub fn fit_outcome_model(
    x: ArrayView2<f64>,
    y: &[bool],
    params: &FitParams,
) -> Result<FittedModel, TrainingError> {
    let rows = x.nrows();
    if rows == 0 {
        return Err(TrainingError::NoRows);
    }
    if y.len() != rows {
        return Err(TrainingError::LengthMismatch {
            rows,
            labels: y.len(),
        });
    }
    validate_params(params)?;
    check_finite(&x)?;
    let positives = y.iter().filter(|&&label| label).count();
    let negatives = rows - positives;
    if positives == 0 {
        return Err(TrainingError::NoPositives { rows });
    }
    if negatives == 0 {
        return Err(TrainingError::NoNegatives { rows });
    }

    let (means, stds) = standardization(&x)?;
    let keep = sample_rows(
        y,
        positives,
        negatives,
        params.negative_to_positive_max,
        params.seed,
    );
    let negatives_kept = keep.len() - positives;
    let (search, y_train) = standardized_matrix::<f32>(&x, y, &keep, &means, &stds);
    let (exact, _) = standardized_matrix::<f64>(&x, y, &keep, &means, &stds);
    let (solution, _) = fit_and_polish(
        search.view(),
        exact.view(),
        y_train.view(),
        params.l2,
        params.max_iterations,
        GRADIENT_TOLERANCE_PER_ROW,
        None,
    )?;
    Ok(FittedModel::from_solution(
        means,
        stds,
        solution,
        SampleCounts {
            positives,
            negatives,
            negatives_kept,
        },
    ))
}

pub(crate) fn validate_params(params: &FitParams) -> Result<(), TrainingError> {
    if !params.l2.is_finite() || params.l2 < 0.0 {
        return Err(TrainingError::InvalidParams {
            field: "l2",
            reason: format!("must be finite and >= 0, got {}", params.l2),
        });
    }
    if params.max_iterations == 0 {
        return Err(TrainingError::InvalidParams {
            field: "max_iterations",
            reason: "must be >= 1".to_owned(),
        });
    }
    // +inf is allowed and means "never undersample".
    if params.negative_to_positive_max.is_nan() || params.negative_to_positive_max <= 0.0 {
        return Err(TrainingError::InvalidParams {
            field: "negative_to_positive_max",
            reason: format!("must be > 0, got {}", params.negative_to_positive_max),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
