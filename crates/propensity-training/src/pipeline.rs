//! Training and evaluating one model per outcome from collected examples:
//! the glue between the engine's examples ([`ExampleCollector`]), the fit
//! ([`fit_outcome_model`]) and the metrics, producing model artifacts the
//! engine loads.

use ndarray::Array2;
use propensity_engine::model::{ModelSet, MODEL_FORMAT};
use propensity_engine::{EngineConfig, ModelArtifact};
use serde::{Deserialize, Serialize};

use crate::dataset::ExampleCollector;
use crate::error::TrainingError;
use crate::fit::{fit_outcome_model, FitParams};
use crate::metrics::{evaluate, roc_curve, EvaluationReport};

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
}

fn matrix(c: &ExampleCollector, o: usize, pick: &[usize]) -> Array2<f64> {
    let dim = c.dim();
    let rows = &c.outcomes[o].rows;
    let mut m = Array2::<f64>::zeros((pick.len(), dim));
    for (r, &i) in pick.iter().enumerate() {
        for (j, v) in rows[i * dim..(i + 1) * dim].iter().enumerate() {
            m[[r, j]] = f64::from(*v);
        }
    }
    m
}

/// Trains every configured outcome. `progress(outcome, index, total)` is
/// called before each fit.
pub fn train_outcomes(
    config: &EngineConfig,
    examples: &ExampleCollector,
    plan: &TrainingPlan,
    mut progress: impl FnMut(&str, usize, usize),
) -> Result<Vec<TrainedOutcome>, TrainingError> {
    if !(0.0..=0.9).contains(&plan.holdout_fraction) {
        return Err(TrainingError::InvalidParams {
            field: "holdout_fraction",
            reason: format!("must be within [0, 0.9], got {}", plan.holdout_fraction),
        });
    }
    let spec = &config.features;
    let mut out = Vec::new();
    for (o, outcome) in config.outcomes.iter().enumerate() {
        progress(&outcome.name, o, config.outcomes.len());
        let wrap = |e: TrainingError| TrainingError::Outcome {
            outcome: outcome.name.clone(),
            source: Box::new(e),
        };
        let labels = examples.labels(o);
        let (mut train, mut hold) = (Vec::new(), Vec::new());
        for i in 0..labels.len() {
            if examples.in_holdout(o, i, plan.holdout_fraction, plan.seed) {
                hold.push(i);
            } else {
                train.push(i);
            }
        }
        let y: Vec<bool> = train.iter().map(|&i| labels[i]).collect();
        let fitted =
            fit_outcome_model(matrix(examples, o, &train).view(), &y, &plan.fit).map_err(wrap)?;
        let model_version =
            ModelArtifact::derive_version(&outcome.name, &fitted.weights, fitted.intercept);
        let holdout = if hold.is_empty() {
            None
        } else {
            let probs = fitted
                .predict_probabilities(matrix(examples, o, &hold).view())
                .map_err(wrap)?;
            let yh: Vec<bool> = hold.iter().map(|&i| labels[i]).collect();
            Some(evaluate(&probs, &yh, 10))
        };
        let artifact = ModelArtifact {
            format: MODEL_FORMAT.to_owned(),
            outcome: outcome.name.clone(),
            model_version,
            feature_fingerprint: spec.fingerprint().to_owned(),
            feature_names: spec.names().to_vec(),
            means: fitted.means.clone(),
            stds: fitted.stds.clone(),
            weights: fitted.weights.clone(),
            intercept: fitted.intercept,
            training: serde_json::json!({
                "rows": train.len(),
                "positives": fitted.positives,
                "negatives": fitted.negatives,
                "negatives_kept": fitted.negatives_kept,
                "intercept_correction": fitted.intercept_correction,
                "l2": plan.fit.l2,
                "holdout_fraction": plan.holdout_fraction,
                "holdout_auc": holdout.as_ref().and_then(|h| h.auc),
                "holdout_log_loss": holdout.as_ref().map(|h| h.log_loss),
            }),
        };
        out.push(TrainedOutcome {
            artifact,
            train_rows: train.len(),
            train_positives: fitted.positives,
            holdout,
        });
    }
    Ok(out)
}

/// Evaluation of one outcome's model.
#[derive(Debug, Clone, Serialize)]
pub struct OutcomeEvaluation {
    /// Outcome name.
    pub outcome: String,
    /// Model version.
    pub model_version: String,
    /// Every scored event.
    pub per_event: EvaluationReport,
    /// One row per session: its last score before the outcome or the end.
    pub per_session: EvaluationReport,
    /// ROC curve points (per event), for plots.
    #[serde(skip)]
    pub roc: Vec<(f64, f64)>,
}

/// Scores collected examples with loaded models (the production scoring
/// path, `OutcomeModel::probability`) and evaluates them.
pub fn evaluate_outcomes(
    config: &EngineConfig,
    models: &ModelSet,
    examples: &ExampleCollector,
) -> Result<Vec<OutcomeEvaluation>, TrainingError> {
    let dim = examples.dim();
    let mut out = Vec::new();
    for (o, outcome) in config.outcomes.iter().enumerate() {
        let Some(model) = models.get(o) else {
            continue;
        };
        let ex = &examples.outcomes[o];
        let labels = examples.labels(o);
        if labels.is_empty() {
            return Err(TrainingError::Outcome {
                outcome: outcome.name.clone(),
                source: Box::new(TrainingError::NoRows),
            });
        }
        let probs: Vec<f64> = (0..labels.len())
            .map(|i| model.probability(&ex.rows[i * dim..(i + 1) * dim]))
            .collect();
        let mut last: Vec<usize> = ex.last_row_of_session.values().copied().collect();
        last.sort_unstable();
        let sp: Vec<f64> = last.iter().map(|&i| probs[i]).collect();
        let sl: Vec<bool> = last.iter().map(|&i| labels[i]).collect();
        out.push(OutcomeEvaluation {
            outcome: outcome.name.clone(),
            model_version: model.version.clone(),
            per_event: evaluate(&probs, &labels, 10),
            per_session: evaluate(&sp, &sl, 10),
            roc: roc_curve(&probs, &labels),
        });
    }
    Ok(out)
}
