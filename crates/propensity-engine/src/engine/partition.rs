//! Partitions: which Kafka partition of the visitor id a record belongs
//! to, and the state kept per partition ([`PartitionState`]): the
//! watermark, the TTL and idle queues, the buffered total and the session
//! serials.
//!
//! Invariants kept here (invariant 5 of the engine):
//! - Every engine-level clock and bound lives in a [`PartitionState`],
//!   never in the engine, so what happens to a visitor depends only on its
//!   partition's records, whatever other partitions share the engine.
//! - A visitor's partition is murmur2 of its id among
//!   `EngineConfig::partitions`, as Kafka's producers place it, computed
//!   once per record (no hashing with one partition).
//! - A partition's state is created on first use and kept for the
//!   engine's life; `slot_of` is allocated only when a second partition
//!   appears, so an engine of one partition pays nothing for it.
//! - A partition's clock is the only clock its expiry reads: TTL
//!   deadlines come out of a heap in deadline order and idle sweeps run at
//!   fixed multiples of their period, so a restart that restores the clock
//!   (and the visitors) expires exactly what the uninterrupted run would.
//! - Session serials are the partition in the top bits and a count of the
//!   partition's sessions below: unique across the engines of one run.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use compact_str::CompactString;

use crate::partitioning::partition_of_u32;

use super::expiry::IdleItem;
use super::Engine;

/// The clocks and bounds of one Kafka partition within an engine. They
/// were engine-wide once, which made a visitor's fate depend on the other
/// visitors sharing its engine (one engine per partition in `run`, one for
/// all in `replay`); per partition, both deployments agree for the same
/// per-partition input order.
pub(super) struct PartitionState {
    /// Which partition.
    pub(super) partition: u32,
    /// Greatest event time seen in the partition: drives its TTL and idle
    /// expiry. Written to the changelog with the consent position (see
    /// [`Engine::partition_clock`]), so a restart expires at the same
    /// moments as the run it continues.
    pub(super) watermark_ms: i64,
    /// `(deadline, visitor)`, earliest deadline first (ties by visitor), for
    /// pre-consent TTL sweeps: a sweep expires exactly the waiting events
    /// past their deadline, whatever order they arrived or were restored in.
    pub(super) ttl_queue: BinaryHeap<Reverse<(i64, CompactString)>>,
    /// Visitors that may go idle, earliest first (see [`Engine::sweep_idle`]).
    pub(super) idle_queue: BinaryHeap<IdleItem>,
    /// Visitors left holding nothing by [`Engine::finish`]: removed at the
    /// partition's next idle sweep, as a full scan of the map would.
    pub(super) idle_recheck: Vec<CompactString>,
    /// Events of the partition waiting for consent, checked against
    /// [`EngineConfig::buffer_max_total`](crate::config::EngineConfig::buffer_max_total).
    pub(super) buffered: u64,
    /// The next session's serial: the partition in the top bits (below
    /// [`crate::partitioning::MAX_PARTITIONS`] = 2^20), then a count of the
    /// partition's sessions, so serials are unique across the engines of
    /// one run and do not depend on how partitions are grouped. With one
    /// partition they are 0, 1, 2, …
    pub(super) next_session_serial: u64,
    /// Per outcome: the partition's adaptive model (see `learning`); empty
    /// when nothing learns.
    pub(super) learners: Vec<Option<crate::adaptive::Learner>>,
    /// Whether a learner changed since the changelog last took its state.
    pub(super) learners_changed: bool,
}

impl PartitionState {
    fn new(partition: u32) -> Self {
        Self {
            partition,
            watermark_ms: i64::MIN,
            ttl_queue: BinaryHeap::new(),
            idle_queue: BinaryHeap::new(),
            idle_recheck: Vec::new(),
            buffered: 0,
            next_session_serial: u64::from(partition) << 44,
            learners: Vec::new(),
            learners_changed: false,
        }
    }
}

impl Engine {
    /// The event-time clock of a Kafka partition: the greatest event time
    /// seen in it (restored visitors' included), `None` before any. The
    /// pipeline writes it to the changelog at each commit and hands it back
    /// with [`Engine::restore_partition_clock`].
    pub fn partition_clock(&self, partition: u32) -> Option<i64> {
        self.parts
            .iter()
            .find(|ps| ps.partition == partition)
            .map(|ps| ps.watermark_ms)
            .filter(|&ms| ms != i64::MIN)
    }

    /// Restores a partition's clock from the changelog: raises it to
    /// `watermark_ms`, expiring nothing (whatever was past its deadline at
    /// that clock had expired before the commit that wrote it). The next
    /// events then expire waiting events and idle visitors at the moments
    /// the run before the restart would have.
    pub fn restore_partition_clock(&mut self, partition: u32, watermark_ms: i64) {
        let slot = self.slot(partition);
        let ps = &mut self.parts[slot];
        ps.watermark_ms = ps.watermark_ms.max(watermark_ms);
    }

    /// The partition of a visitor among
    /// [`EngineConfig::partitions`](crate::config::EngineConfig::partitions):
    /// murmur2 of the id, as Kafka's producers place it; no hashing with
    /// one partition.
    #[inline]
    pub(super) fn visitor_slot(&mut self, visitor: &str) -> usize {
        let partition = partition_of_u32(visitor.as_bytes(), self.config.partitions);
        self.slot(partition)
    }

    /// The index in `parts` of a partition's state, created on first use.
    #[inline]
    pub(super) fn slot(&mut self, partition: u32) -> usize {
        match self.parts.first() {
            Some(first) if first.partition == partition => 0,
            _ => self.slot_slow(partition),
        }
    }

    /// The lookup behind [`Engine::slot`]: every event of all but the first
    /// partition in a replay comes here (an index, no hashing).
    fn slot_slow(&mut self, partition: u32) -> usize {
        let at = partition as usize;
        if self.slot_of.len() <= at {
            let len = (self.config.partitions as usize).max(at + 1);
            self.slot_of.resize(len, u32::MAX);
            for (i, ps) in self.parts.iter().enumerate() {
                self.slot_of[ps.partition as usize] = i as u32;
            }
        }
        match self.slot_of[at] {
            u32::MAX => {
                self.slot_of[at] = self.parts.len() as u32;
                self.parts.push(PartitionState::new(partition));
                self.parts.len() - 1
            }
            i => i as usize,
        }
    }
}
