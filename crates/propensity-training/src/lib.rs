//! Model training and evaluation for Propensity: pure numerics, no I/O.
//!
//! This crate owns three things and nothing else:
//! * [`fit_outcome_model`]: fitting one logistic-regression model per business outcome
//!   (standardization, negative undersampling with prior correction, and the orientation fix
//!   for linfa-logistic's "the more frequent label is the positive class" convention);
//! * evaluation metrics over predicted probabilities ([`roc_auc`], [`log_loss`],
//!   [`brier_score`], [`calibration_table`], [`roc_curve`], [`evaluate`]);
//! * the glue from engine-collected examples ([`ExampleCollector`]) to model artifacts
//!   ([`train_outcomes`]; [`train_checked`] for real data: skips outcomes with too few
//!   positives, trains a named subset, flags low holdout AUC and poor calibration) and
//!   evaluations ([`evaluate_outcomes`]);
//! * the evaluation report ([`report`]): charts drawn with plotters (PNG and inline SVG), a
//!   self-contained HTML page, the glossary and the calibration warning.
//!
//! Everything is deterministic: the same inputs (including [`FitParams::seed`]) give the same
//! model and the same bytes.

mod dataset;
mod design;
mod error;
mod evaluation;
mod fit;
mod metrics;
mod parallel;
mod pipeline;
pub mod report;
mod rng;

pub use dataset::{ExampleCollector, OutcomeExamples};
pub use error::TrainingError;
pub use evaluation::{evaluate_outcomes, OutcomeEvaluation};
pub use fit::{fit_outcome_model, FitParams, FittedModel, GRADIENT_TOLERANCE_PER_ROW};
pub use metrics::{
    brier_score, calibration_table, evaluate, log_loss, roc_auc, roc_curve, CalibrationBin,
    EvaluationReport, LOG_LOSS_EPSILON,
};
pub use pipeline::{
    holdout_warnings, prepare_outcomes, select_outcomes, split_by_positives, train_checked,
    train_outcomes, train_outcomes_with, train_prepared, train_prepared_timed, CheckedTraining,
    GridPoint, PhaseTimes, PreparedOutcome, QualityChecks, QualityWarning, SearchPlan, Selection,
    SkippedOutcome, TrainedOutcome, TrainingPlan, WarningKind,
};
