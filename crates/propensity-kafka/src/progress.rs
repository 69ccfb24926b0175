//! Per-partition progress of the events topic: the consumer lag (end offset
//! minus the group's committed offset) and whether a partition is stalled
//! (it has lag and nothing has been committed for it for longer than the
//! stall timeout).
//!
//! Lag is computed from committed offsets, not from librdkafka's statistics:
//! librdkafka's `consumer_lag` ignores offsets committed inside
//! transactions, which is how this pipeline commits, and has no value at
//! all for a group that never committed. A partition without a committed
//! offset counts from its log start. Pure bookkeeping: the caller queries
//! the offsets and passes the time.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What is known of one partition.
#[derive(Debug, Clone, Copy)]
struct Partition {
    /// Next offset the group will read after a restart (committed).
    committed: i64,
    /// End offset at the last query (last stable offset).
    end: i64,
    /// Since when the partition has been waiting: its assignment, its last
    /// commit that moved it, or the moment lag appeared after none.
    waiting_since: Instant,
}

/// Lag and stall bookkeeping of the partitions an instance owns.
#[derive(Debug, Default)]
pub struct Progress {
    partitions: BTreeMap<i32, Partition>,
}

impl Progress {
    /// Starts tracking `partition` (newly assigned) at its committed offset
    /// (or log start) and current end.
    pub fn assigned(&mut self, partition: i32, committed: i64, end: i64, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if p.committed == committed {
                // Restored again without progress (a rebuild after a
                // failure): the wait goes on, it does not start over.
                p.end = end.max(committed);
                return;
            }
        }
        self.partitions.insert(
            partition,
            Partition {
                committed,
                end: end.max(committed),
                waiting_since: now,
            },
        );
    }

    /// Stops tracking a revoked partition.
    pub fn revoked(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Keeps only `owned` partitions.
    pub fn retain(&mut self, owned: &[i32]) {
        self.partitions.retain(|p, _| owned.contains(p));
    }

    /// Forgets every partition.
    pub fn clear(&mut self) {
        self.partitions.clear();
    }

    /// A transaction committed `offset` (next to read) for `partition`.
    pub fn committed(&mut self, partition: i32, offset: i64, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if offset > p.committed {
                p.committed = offset;
                p.end = p.end.max(offset);
                p.waiting_since = now;
            }
        }
    }

    /// A fresh end offset of `partition`.
    pub fn end(&mut self, partition: i32, end: i64, now: Instant) {
        if let Some(p) = self.partitions.get_mut(&partition) {
            if p.end <= p.committed && end > p.committed {
                // Lag appears after none: the clock starts now, not at the
                // last commit, which may be long ago on a quiet partition.
                p.waiting_since = now;
            }
            p.end = end.max(p.committed);
        }
    }

    /// Lag per partition, in records.
    pub fn lags(&self) -> Vec<(i32, i64)> {
        self.partitions
            .iter()
            .map(|(p, s)| (*p, s.end - s.committed))
            .collect()
    }

    /// Partitions with lag whose commits have not moved for longer than
    /// `timeout`.
    pub fn stalled(&self, timeout: Duration, now: Instant) -> Vec<i32> {
        self.partitions
            .iter()
            .filter(|(_, s)| {
                s.end > s.committed && now.saturating_duration_since(s.waiting_since) > timeout
            })
            .map(|(p, _)| *p)
            .collect()
    }

    /// The committed offset of a tracked partition.
    pub fn committed_offset(&self, partition: i32) -> Option<i64> {
        self.partitions.get(&partition).map(|p| p.committed)
    }

    /// The partitions tracked.
    pub fn partitions(&self) -> Vec<i32> {
        self.partitions.keys().copied().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TIMEOUT: Duration = Duration::from_secs(60);

    #[test]
    fn lag_counts_from_the_committed_offset_and_follows_commits() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.assigned(0, 10, 50, t0);
        p.assigned(1, 0, 0, t0);
        assert_eq!(p.lags(), [(0, 40), (1, 0)]);
        p.committed(0, 50, t0);
        p.end(1, 7, t0);
        assert_eq!(p.lags(), [(0, 0), (1, 7)]);
        p.revoked(1);
        assert_eq!(p.lags(), [(0, 0)]);
    }

    #[test]
    fn a_partition_with_lag_and_no_commit_for_the_timeout_is_stalled() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.assigned(0, 0, 100, t0);
        p.assigned(1, 0, 100, t0);
        let later = t0 + TIMEOUT + Duration::from_secs(1);
        p.committed(1, 60, t0 + Duration::from_secs(30));
        assert_eq!(p.stalled(TIMEOUT, later), [0]);
        // Committing moves it out of the stalled set.
        p.committed(0, 1, later);
        assert!(p.stalled(TIMEOUT, later).is_empty());
    }

    #[test]
    fn restoring_again_without_progress_does_not_restart_the_stall_clock() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.assigned(0, 10, 50, t0);
        let later = t0 + TIMEOUT + Duration::from_secs(1);
        p.assigned(0, 10, 60, later);
        assert_eq!(
            p.stalled(TIMEOUT, later),
            [0],
            "a failing rebuild is a stall"
        );
        p.assigned(0, 20, 60, later);
        assert!(p.stalled(TIMEOUT, later).is_empty(), "progress restarts it");
        p.retain(&[1]);
        assert!(p.lags().is_empty());
    }

    #[test]
    fn a_quiet_partition_is_not_stalled_the_moment_lag_appears() {
        let t0 = Instant::now();
        let mut p = Progress::default();
        p.assigned(0, 5, 5, t0);
        let hour = t0 + Duration::from_secs(3600);
        assert!(p.stalled(TIMEOUT, hour).is_empty(), "no lag, no stall");
        p.end(0, 6, hour);
        assert!(p.stalled(TIMEOUT, hour + Duration::from_secs(1)).is_empty());
        assert_eq!(p.stalled(TIMEOUT, hour + TIMEOUT * 2), [0]);
    }
}
