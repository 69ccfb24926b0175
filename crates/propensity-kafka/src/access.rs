//! Data-subject access: "what does Propensity hold about this visitor?"
//! answered by the pipeline thread that owns the visitor's partition (the
//! engines are owned by that thread, so questions travel to it through a
//! channel and it answers between batches). Also the Java client's murmur2
//! partitioner (the engine's, re-exported), to say which partition — and so
//! which instance — owns a visitor held elsewhere.

use std::sync::mpsc::{Receiver, Sender};

use serde::Serialize;

/// A question for the pipeline.
pub struct AccessRequest {
    /// The visitor asked about.
    pub visitor_id: String,
    /// Where the answer goes.
    pub reply: Sender<AccessAnswer>,
}

/// The pipeline's answer.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum AccessAnswer {
    /// This instance owns the visitor's partition; `held` is everything kept
    /// (null when nothing is).
    Owned {
        /// Partition of the visitor.
        partition: i32,
        /// What is held.
        held: Option<serde_json::Value>,
    },
    /// Another instance owns the partition.
    OwnedElsewhere {
        /// Partition of the visitor.
        partition: i32,
        /// Partitions this instance owns.
        owned_here: Vec<i32>,
    },
}

/// The channel pair between HTTP and pipeline.
pub fn access_channel() -> (Sender<AccessRequest>, Receiver<AccessRequest>) {
    std::sync::mpsc::channel()
}

/// Kafka's murmur2 partitioner, re-exported from the engine, which places
/// visitors by it too (per-partition clocks; see
/// `propensity_engine::partitioning`): one implementation, so "which
/// partition owns this visitor" has one answer.
pub use propensity_engine::partitioning::{murmur2, partition_of};
