//! The crate's single error type: everything `generate` can refuse or fail on.

/// Why a simulation could not be produced.
#[derive(Debug, thiserror::Error)]
pub enum SimulationError {
    /// A [`crate::SimulationParams`] field is out of its allowed range; `field`
    /// names it exactly as it is spelled in the struct (dotted for nested fields).
    #[error("invalid simulation parameter `{field}`: {reason}")]
    InvalidParameter {
        /// The offending field, e.g. `"consent_mix.deny"`.
        field: &'static str,
        /// Human-readable explanation including the rejected value.
        reason: String,
    },
    /// A record could not be encoded as JSON. Our records are plain structs, so
    /// this indicates a bug rather than bad input; it exists so that no code path
    /// has to unwrap.
    #[error("failed to encode a record as JSON: {0}")]
    Encoding(#[from] serde_json::Error),
}

impl SimulationError {
    /// The parameter field this error is about, if it is a validation error.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::InvalidParameter { field, .. } => Some(field),
            Self::Encoding(_) => None,
        }
    }
}
