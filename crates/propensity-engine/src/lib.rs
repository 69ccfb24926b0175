//! # propensity-engine
//!
//! The pure core of Propensity: the wire contract, the consent gate,
//! sessions, features, scoring, action maps and offer decisions. It does no
//! I/O — no Kafka, no files, no clock, no async runtime — so it is tested and
//! benchmarked on its own, and every adapter (file replay, the Kafka
//! runtime, HTTP) drives the same [`Engine`] and gets the same decisions.
//!
//! Data flows one way: bytes → [`wire`] decoding → [`Engine`] (consent gate →
//! [`visitor`] session state → [`features`] → [`model`] scores → action
//! maps) → an [`EngineSink`] chosen by the adapter.

#![deny(missing_docs)]

pub mod adaptive;
pub mod compact;
pub mod config;
pub mod control_group;
pub mod decision_log;
pub mod drift;
pub mod engine;
pub mod error;
pub mod features;
pub mod glob;
pub mod model;
pub mod online_eval;
pub mod partitioning;
pub mod purpose;
pub mod replay;
pub mod sparse_counts;
pub mod stable_hash;
pub mod timestamp;
pub mod visitor;
pub mod wire;

pub use config::{EngineConfig, EngineSettings};
pub use engine::{DropReason, Engine, EngineCounters, EngineSink, EngineSummary};
pub use error::EngineError;
pub use model::{ModelArtifact, ModelRole, ModelSet};
pub use wire::{DeadLetter, DeadLetterReason, Offer, Origin, OutcomeScore};
