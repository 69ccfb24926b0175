//! The crate's single error type, [`TrainingError`].
//!
//! Messages name the field, column or parameter at fault. The fitting functions do not know
//! which business outcome they are fitting, so callers should add that context when they
//! report the error (e.g. "outcome `purchase`: no positive examples ...").

/// Everything that can go wrong while fitting a model or encoding a plot.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainingError {
    /// The feature matrix has no rows.
    #[error("no training rows: the feature matrix is empty")]
    NoRows,

    /// The feature matrix and the label slice disagree on the number of rows.
    #[error(
        "row/label length mismatch: feature matrix has {rows} rows but {labels} labels were given"
    )]
    LengthMismatch {
        /// Rows in the feature matrix.
        rows: usize,
        /// Entries in the label slice.
        labels: usize,
    },

    /// The outcome never happened in the training rows, so there is nothing to learn.
    #[error("no positive examples: the outcome is false in all {rows} training rows")]
    NoPositives {
        /// Number of training rows.
        rows: usize,
    },

    /// The outcome happened in every training row, so there is nothing to learn.
    #[error("no negative examples: the outcome is true in all {rows} training rows")]
    NoNegatives {
        /// Number of training rows.
        rows: usize,
    },

    /// A row handed to a fitted model has the wrong number of features.
    #[error("feature count mismatch: the model expects {expected} features but got {got}")]
    FeatureCountMismatch {
        /// Features the model was fitted on.
        expected: usize,
        /// Features supplied.
        got: usize,
    },

    /// A feature value is NaN or infinite.
    #[error("non-finite value {value} in feature column {column} (row {row})")]
    NonFiniteFeature {
        /// Zero-based feature column index.
        column: usize,
        /// Zero-based row index of the first offending value in that column.
        row: usize,
        /// The offending value.
        value: f64,
    },

    /// A feature column's values are so large that its standard deviation overflows.
    #[error(
        "feature column {column} cannot be standardized: its standard deviation overflows f64"
    )]
    FeatureOverflow {
        /// Zero-based feature column index.
        column: usize,
    },

    /// A [`FitParams`](crate::FitParams) field is out of range.
    #[error("invalid fit parameter `{field}`: {reason}")]
    InvalidParams {
        /// Name of the offending field of `FitParams`.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },

    /// linfa-logistic refused the problem or its optimizer failed; the message is linfa's.
    #[error("linfa-logistic fit failed: {0}")]
    Linfa(String),

    /// An outcome named for training is not configured.
    #[error("unknown outcome `{name}`; the configured outcomes are: {configured}")]
    UnknownOutcome {
        /// The name asked for.
        name: String,
        /// The configured outcome names, comma-separated.
        configured: String,
    },

    /// Every outcome asked for was skipped (too few positives or one class missing).
    #[error("nothing to train: every outcome was skipped ({reasons})")]
    AllOutcomesSkipped {
        /// Each skipped outcome with its reason, `; `-separated.
        reasons: String,
    },

    /// The PNG encoder or the writer it writes into failed.
    #[error("PNG encoding failed: {0}")]
    Png(String),

    /// plotters could not draw a report chart (or the vendored font did not load).
    #[error("drawing a chart failed: {0}")]
    Chart(String),

    /// An error while training or evaluating one outcome, with its name. The message is the
    /// name only and the cause is the [`source`](std::error::Error::source): printing the
    /// chain (anyhow's `{:#}`) then reads `outcome `x`: cause` once, not twice.
    #[error("outcome `{outcome}`")]
    Outcome {
        /// Outcome name.
        outcome: String,
        /// What went wrong.
        #[source]
        source: Box<TrainingError>,
    },
}
