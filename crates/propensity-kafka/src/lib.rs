//! # propensity-kafka
//!
//! The Kafka adapter of Propensity: runs the pure engine in a consumer
//! group with exactly-once output (a transactional producer; offers, scores,
//! dead letters, the state changelog and the consumed offsets commit
//! together), consent-first processing, state restore on assignment, topic
//! administration and test-traffic production.

#![deny(missing_docs)]

pub mod access;
pub mod adaptive_state;
pub mod background_load;
pub mod client_config;
pub mod client_log;
pub mod committed_window;
pub mod delivery;
pub mod error;
pub mod inspect;
pub mod metrics;
pub mod model_handle;
pub mod partition_monitoring;
pub mod passthrough;
pub mod pipeline;
pub mod probe;
pub mod produce;
pub mod progress;
pub mod reachability;
pub mod reader;
pub mod settings;
pub mod shard;
pub mod status;
pub mod tail;
pub mod topics;
pub mod transaction;

pub use error::KafkaError;
pub use metrics::PipelineMetrics;
pub use model_handle::ModelHandle;
pub use pipeline::{run_pipeline, PipelineOptions};
pub use settings::KafkaSettings;
pub use status::RuntimeStatus;
/// The one stop signal of a running pipeline: cancelled by the binary on
/// SIGTERM/SIGINT (or when another task of the process fails) and checked by
/// every loop of the pipeline thread, retries included.
pub use tokio_util::sync::CancellationToken;
