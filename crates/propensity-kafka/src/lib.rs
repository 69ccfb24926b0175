//! # propensity-kafka
//!
//! The Kafka adapter of Propensity: runs the pure engine in a consumer
//! group with exactly-once output (transactional producer, offsets committed
//! in the transaction), consent-first processing, a state changelog and
//! topic administration.

#![deny(missing_docs)]

pub mod error;
pub mod settings;

pub use error::KafkaError;
pub use settings::KafkaSettings;
