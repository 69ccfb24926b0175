//! # propensity-kafka
//!
//! The Kafka adapter of Propensity: runs the pure engine in a consumer
//! group with exactly-once output (a transactional producer; offers, scores,
//! dead letters, the state changelog and the consumed offsets commit
//! together), consent-first processing, state restore on assignment, topic
//! administration and test-traffic production.

#![deny(missing_docs)]

pub mod access;
pub mod client_config;
pub mod delivery;
pub mod error;
pub mod metrics;
pub mod model_handle;
pub mod passthrough;
pub mod pipeline;
pub mod probe;
pub mod produce;
pub mod progress;
pub mod reader;
pub mod settings;
pub mod shard;
pub mod status;
pub mod topics;
pub mod transaction;

pub use error::KafkaError;
pub use metrics::PipelineMetrics;
pub use model_handle::ModelHandle;
pub use pipeline::{run_pipeline, PipelineOptions};
pub use settings::KafkaSettings;
pub use status::RuntimeStatus;
