//! Evaluating loaded models on collected examples through the production scoring path
//! (`OutcomeModel::probability`): per-event and per-session metrics, ROC points, score
//! distributions and gains for the report.

use propensity_engine::drift::{DriftPsi, ModelDriftCounts};
use propensity_engine::model::ModelSet;
use propensity_engine::EngineConfig;
use serde::Serialize;

use crate::dataset::ExampleCollector;
use crate::error::TrainingError;
use crate::metrics::{evaluate, roc_curve, EvaluationReport};
use crate::report::{
    gains_by_decile, score_histogram, GainsRow, ScoreHistogram, SCORE_HISTOGRAM_BINS,
};

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
    /// Per-event scores by class, for the report's score-distribution chart.
    pub scores: ScoreHistogram,
    /// Per-event cumulative gains and lift by decile, for the report.
    pub gains: Vec<GainsRow>,
    /// The evaluated traffic's drift from the model's training population
    /// (`None`: the artifact has no drift reference).
    pub drift: Option<DriftPsi>,
}

/// Scores collected examples with loaded models (the production scoring
/// path, `OutcomeModel::probability`) and evaluates them; each outcome's
/// drift comes from `drift_counts` (the engine's, per outcome, from the
/// run that collected the examples; empty: no drift figures).
pub fn evaluate_outcomes(
    config: &EngineConfig,
    models: &ModelSet,
    examples: &ExampleCollector,
    drift_counts: &[Option<ModelDriftCounts>],
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
        // The engine's counts of the same traffic (its sample of it, see
        // `propensity_engine::drift`), so the figure is the one a running
        // instance publishes.
        let drift = match (
            model.drift_reference(),
            drift_counts.get(o).and_then(Option::as_ref),
        ) {
            (Some(reference), Some(counts)) => counts.psi(reference),
            _ => None,
        };
        out.push(OutcomeEvaluation {
            outcome: outcome.name.clone(),
            model_version: model.version.clone(),
            per_event: evaluate(&probs, &labels, 10),
            per_session: evaluate(&sp, &sl, 10),
            roc: roc_curve(&probs, &labels),
            scores: score_histogram(&probs, &labels, SCORE_HISTOGRAM_BINS),
            gains: gains_by_decile(&probs, &labels),
            drift,
        });
    }
    Ok(out)
}
