//! Runtime status shared between the pipeline thread and the HTTP/metrics
//! side: readiness and the counters operators watch. Atomics only, so the
//! pipeline never blocks on a reader.

use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Mutex;

use propensity_engine::online_eval::OnlineEvaluation;
use propensity_engine::EngineCounters;

/// What the pipeline reports about itself.
#[derive(Debug, Default)]
pub struct RuntimeStatus {
    /// Partitions assigned and state restored: events are being processed.
    pub ready: AtomicBool,
    /// The broker answered recently (a poll or commit succeeded).
    pub broker_reachable: AtomicBool,
    /// Partitions assigned.
    pub assigned_partitions: AtomicI64,
    /// Partitions still restoring.
    pub restoring_partitions: AtomicI64,
    /// Changelog records restored since start.
    pub restored_records: AtomicU64,
    /// Consent records loaded while restoring.
    pub consent_records_loaded: AtomicU64,
    /// Rebalances seen.
    pub rebalances: AtomicU64,
    /// Transactions committed.
    pub commits: AtomicU64,
    /// Transactions aborted.
    pub aborts: AtomicU64,
    /// Producer re-creations after fatal errors.
    pub producer_restarts: AtomicU64,
    /// Events consumed (including re-consumed after an abort).
    pub events_consumed: AtomicU64,
    /// Events dead-lettered as `unproducible` (the broker refused their
    /// outputs); they never reach an engine, so they are counted here.
    pub unproducible_events: AtomicU64,
    /// Sum of engine counters at the last commit, over all partitions this
    /// instance has owned (counts since start of the process).
    pub engine: Mutex<EngineCounters>,
    /// Consumer lag per (topic, partition): end offset minus the group's
    /// committed offset, for the partitions this instance owns.
    pub consumer_lag: Mutex<Vec<(String, i32, i64)>>,
    /// Partitions with lag that have committed nothing for longer than
    /// `kafka.stall_timeout_secs`.
    pub stalled_partitions: Mutex<Vec<i32>>,
    /// The online evaluation last published per outcome and role (the
    /// champions' slots, then the challengers', as
    /// `Engine::online_eval`), for the admin API's model status.
    pub online_evaluation: Mutex<Vec<Option<OnlineEvaluation>>>,
    /// Last error, for readiness output.
    pub last_error: Mutex<Option<String>>,
}

impl RuntimeStatus {
    /// Sets a flag.
    pub fn set(flag: &AtomicBool, v: bool) {
        flag.store(v, Ordering::Relaxed);
    }

    /// Records an error message.
    pub fn error(&self, message: String) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = Some(message);
        }
    }

    /// Forgets the last error once its cause is gone (the broker answered
    /// after an outage at start), so `/readyz` shows no stale reason.
    pub fn clear_error(&self) {
        if let Ok(mut e) = self.last_error.lock() {
            *e = None;
        }
    }
}
