//! The Kafka runtime's one error type, split by who must act: the user
//! (configuration, topics), the broker (transient, retried) or us (fatal).

use thiserror::Error;

/// Errors of the Kafka runtime.
#[derive(Debug, Error)]
pub enum KafkaError {
    /// A configuration key is invalid.
    #[error("config key `{key}`: {message}")]
    Config {
        /// Key path.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Topics are missing or incompatible.
    #[error("topic check failed: {0}")]
    Topics(String),
    /// No broker answered a bounded metadata request: said once, naming the
    /// brokers, instead of librdkafka's retries repeating for a minute.
    #[error("cannot reach the Kafka brokers `{brokers}` (kafka.brokers) within {secs} s: {cause}; check the address, that the brokers run, and the [kafka.client] security settings")]
    Unreachable {
        /// `kafka.brokers` as configured.
        brokers: String,
        /// How long the probe waited.
        secs: u64,
        /// librdkafka's answer.
        cause: String,
    },
    /// A librdkafka client error.
    #[error("kafka: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    /// The engine refused something (models, state).
    #[error(transparent)]
    Engine(#[from] propensity_engine::EngineError),
    /// The producer was fenced or hit a fatal error.
    #[error("fatal producer error: {0}")]
    Fatal(String),
    /// A reader made no progress for too long although records wait (the
    /// caller aborts and rebuilds, and the partition shows as stalled).
    #[error("reading `{topic}` made no progress for {secs} s: {why}")]
    NoProgress {
        /// Topic read.
        topic: String,
        /// Seconds without progress.
        secs: u64,
        /// What was last seen.
        why: String,
    },
    /// Shut down while waiting.
    #[error("shutting down")]
    Shutdown,
}
