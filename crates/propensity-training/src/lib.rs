//! Model training and evaluation for Propensity: pure numerics, no I/O.
//!
//! This crate owns three things and nothing else:
//! * [`fit_outcome_model`]: fitting one logistic-regression model per business outcome
//!   (standardization, negative undersampling with prior correction, and the orientation fix
//!   for linfa-logistic's "the more frequent label is the positive class" convention);
//! * evaluation metrics over predicted probabilities ([`roc_auc`], [`log_loss`],
//!   [`brier_score`], [`calibration_table`], [`roc_curve`], [`evaluate`]);
//! * the glue from engine-collected examples ([`ExampleCollector`]) to model artifacts
//!   ([`train_outcomes`]) and evaluations ([`evaluate_outcomes`]);
//! * font-free PNG plots of ROC and calibration curves ([`roc_plot_png`],
//!   [`calibration_plot_png`]).
//!
//! Everything is deterministic: the same inputs (including [`FitParams::seed`]) give the same
//! model and the same bytes.

mod dataset;
mod error;
mod fit;
mod metrics;
mod pipeline;
mod plot;
mod rng;

pub use dataset::{ExampleCollector, OutcomeExamples};
pub use error::TrainingError;
pub use fit::{fit_outcome_model, FitParams, FittedModel};
pub use metrics::{
    brier_score, calibration_table, evaluate, log_loss, roc_auc, roc_curve, CalibrationBin,
    EvaluationReport, LOG_LOSS_EPSILON,
};
pub use pipeline::{
    evaluate_outcomes, train_outcomes, OutcomeEvaluation, TrainedOutcome, TrainingPlan,
};
pub use plot::{
    calibration_plot_png, curve_color, curve_color_name, roc_plot_png, write_calibration_plot_png,
    write_roc_plot_png, PALETTE, PLOT_HEIGHT, PLOT_WIDTH,
};
