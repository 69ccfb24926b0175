//! The engine crate's one error type. Input records never produce an
//! `EngineError`: bad records become dead letters with a reason code
//! ([`crate::wire::DeadLetterReason`]). These errors are for things a user
//! configured or supplied wrongly (config, model artifacts), and they refuse
//! start-up with a message naming the key or file at fault.

use thiserror::Error;

/// Errors from configuring the engine or loading models.
#[derive(Debug, Error)]
pub enum EngineError {
    /// A configuration key has an invalid value.
    #[error("config key `{key}`: {message}")]
    Config {
        /// Dotted key path, e.g. `action_maps[2].trigger.threshold`.
        key: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// A model artifact is unusable.
    #[error("model for outcome `{outcome}` ({origin}): {message}")]
    Model {
        /// The outcome the model was meant for.
        outcome: String,
        /// Where it came from (file path or `<memory>`).
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// A model is missing for a declared outcome.
    #[error("no model for outcome `{outcome}`: expected {expected}")]
    MissingModel {
        /// The outcome.
        outcome: String,
        /// Where it was looked for.
        expected: String,
    },
    /// A state snapshot (changelog record) could not be decoded.
    #[error("state snapshot for a visitor is unreadable: {0}")]
    Snapshot(String),
    /// An adaptive model's state (changelog record) could not be restored.
    #[error("adaptive model state is unreadable: {0}")]
    AdaptiveState(String),
}

impl EngineError {
    /// A config error for `key`.
    pub fn config(key: impl Into<String>, message: impl Into<String>) -> Self {
        EngineError::Config {
            key: key.into(),
            message: message.into(),
        }
    }
}
