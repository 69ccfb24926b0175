//! A partition's monitoring windows (the drift counts and resolved
//! sessions of its committed work, see `crate::committed_window`) and
//! their changelog records: one record per window bucket, keyed by the
//! bucket's start, rewritten in the transaction of every commit that added
//! to it and deleted (a tombstone) once it leaves the window.
//!
//! Invariants kept here:
//! - Exactly once: a commit's counts enter the bucket record written in
//!   the same transaction, so a restore (after `kill -9`, an abort or a
//!   rebalance) has every committed resolved session and scored event once
//!   and none of an aborted transaction (its work is done again and counted
//!   then).
//! - A record names the model version of each of its slots; a restore puts
//!   each slot's counts where that version serves now (a promotion or a
//!   retraining between the write and the restore moves or drops them, as
//!   at a swap).
//! - Monitoring is not decision state: a record that cannot be read is
//!   left out, with a warning, instead of refusing the partition.

use std::collections::BTreeSet;
use std::time::Duration;

use propensity_engine::drift::{DriftCountsRecord, ModelDriftCounts};
use propensity_engine::online_eval::OutcomeEvalCounts;
use propensity_engine::{Engine, ModelRole, ModelSet};
use serde::{Deserialize, Serialize};

use crate::committed_window::{remapped, slots_by_version, CommittedWindow};

/// Header marking a changelog record of a monitoring window bucket; its
/// value names the window ([`WindowKind::name`]).
pub const MONITORING_WINDOW_HEADER: &str = "propensity.monitoring_window";

/// The two windows of a partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum WindowKind {
    /// Drift counts of the scored events (`kafka.drift_window_secs`).
    Drift,
    /// Resolved sessions (`kafka.online_eval_window_secs`).
    OnlineEval,
}

impl WindowKind {
    /// The value of [`MONITORING_WINDOW_HEADER`].
    pub fn name(self) -> &'static str {
        match self {
            WindowKind::Drift => "drift",
            WindowKind::OnlineEval => "online_eval",
        }
    }

    /// The kind a header value names.
    pub fn parse(value: &[u8]) -> Option<Self> {
        [WindowKind::Drift, WindowKind::OnlineEval]
            .into_iter()
            .find(|k| k.name().as_bytes() == value)
    }

    fn key_prefix(self) -> String {
        format!("__propensity.{}_window.", self.name())
    }

    /// The changelog key of the bucket starting at `start_ms`.
    pub fn key(self, start_ms: i64) -> String {
        format!("{}{start_ms}", self.key_prefix())
    }

    /// The bucket start a changelog key names.
    fn start_of(self, key: &[u8]) -> Option<i64> {
        std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.key_prefix())?
            .parse()
            .ok()
    }
}

/// The model version in each window slot of a model set: drift slots are
/// the outcomes' champions; online-evaluation slots are the champions,
/// then the challengers (see `Engine::online_eval`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SlotVersions {
    /// Per outcome, its champion's version.
    pub drift: Vec<Option<String>>,
    /// Per role and outcome, the version serving in it.
    pub online: Vec<Option<String>>,
}

impl SlotVersions {
    /// The slots of `models`.
    pub fn of(models: &ModelSet) -> Self {
        let n = models.outcomes();
        let version =
            |i: usize, role: ModelRole| models.in_role(i, role).map(|m| m.version.clone());
        Self {
            drift: (0..n).map(|i| version(i, ModelRole::Champion)).collect(),
            online: ModelRole::ALL
                .iter()
                .flat_map(|r| (0..n).map(move |i| (i, *r)))
                .map(|(i, r)| version(i, r))
                .collect(),
        }
    }
}

/// The value of a bucket's changelog record.
#[derive(Serialize, Deserialize)]
struct BucketRecord<R> {
    /// The model version of each slot when it was written.
    versions: Vec<Option<String>>,
    /// The counts of each slot.
    counts: Vec<R>,
}

/// A changelog record of the windows.
#[derive(Debug)]
pub struct WindowRecord {
    /// Which window.
    pub kind: WindowKind,
    /// The record's key ([`WindowKind::key`]).
    pub key: String,
    /// The bucket's counts; `None`: a tombstone (it left the window).
    pub value: Option<Vec<u8>>,
}

/// A partition's drift and online-evaluation windows.
pub struct PartitionMonitoring {
    drift: CommittedWindow<Option<ModelDriftCounts>>,
    online: CommittedWindow<OutcomeEvalCounts>,
    /// The model version of each slot the windows are laid out in.
    versions: SlotVersions,
    /// Buckets added to since their record was last written.
    changed: BTreeSet<(WindowKind, i64)>,
    /// Buckets that left the window and whose records are still to delete.
    expired: BTreeSet<(WindowKind, i64)>,
}

impl PartitionMonitoring {
    /// Empty windows of the given lengths, laid out for `models`.
    pub fn new(drift_window: Duration, online_window: Duration, models: &ModelSet) -> Self {
        Self {
            drift: CommittedWindow::new(drift_window),
            online: CommittedWindow::new(online_window),
            versions: SlotVersions::of(models),
            changed: BTreeSet::new(),
            expired: BTreeSet::new(),
        }
    }

    /// Moves the counts of the engine's work since the last call (the
    /// open transaction's) into the buckets of `now_ms`, and expires the
    /// buckets that left the windows. The records of both are then due
    /// ([`PartitionMonitoring::take_records`]). If the transaction aborts,
    /// the partition is restored from the changelog, these counts with it.
    pub fn take_from(&mut self, engine: &mut Engine, now_ms: i64) {
        if let Some(start) = self.drift.add(now_ms, engine.drift_counts()) {
            self.changed.insert((WindowKind::Drift, start));
        }
        if let Some(start) = self.online.add(now_ms, engine.online_eval()) {
            self.changed.insert((WindowKind::OnlineEval, start));
        }
        engine.clear_monitoring_counts();
        self.expire(now_ms);
    }

    fn expire(&mut self, now_ms: i64) {
        let drift = self.drift.expire(now_ms);
        let online = self.online.expire(now_ms);
        let gone = drift
            .into_iter()
            .map(|s| (WindowKind::Drift, s))
            .chain(online.into_iter().map(|s| (WindowKind::OnlineEval, s)));
        for bucket in gone {
            self.changed.remove(&bucket);
            self.expired.insert(bucket);
        }
    }

    /// The records due: every changed bucket's (every bucket's with
    /// `rewrite`) and a tombstone for every expired one.
    pub fn take_records(&mut self, rewrite: bool) -> Vec<WindowRecord> {
        if rewrite {
            let drift = self.drift.starts().map(|s| (WindowKind::Drift, s));
            let online = self.online.starts().map(|s| (WindowKind::OnlineEval, s));
            let all: Vec<_> = drift.chain(online).collect();
            self.changed.extend(all);
        }
        let mut records = Vec::with_capacity(self.changed.len() + self.expired.len());
        for (kind, start) in std::mem::take(&mut self.changed) {
            let value = match kind {
                WindowKind::Drift => self.drift.bucket(start).map(|counts| {
                    let counts: Vec<Option<DriftCountsRecord>> = counts
                        .iter()
                        .map(|c| c.as_ref().map(ModelDriftCounts::record))
                        .collect();
                    encode(&self.versions.drift, &counts)
                }),
                WindowKind::OnlineEval => self
                    .online
                    .bucket(start)
                    .map(|counts| encode(&self.versions.online, counts)),
            };
            if let Some(value) = value {
                records.push(WindowRecord {
                    kind,
                    key: kind.key(start),
                    value: Some(value),
                });
            }
        }
        for (kind, start) in std::mem::take(&mut self.expired) {
            records.push(WindowRecord {
                kind,
                key: kind.key(start),
                value: None,
            });
        }
        records
    }

    /// Lays the windows out for `models` after a swap: each slot keeps
    /// the counts of the version it now holds, a new version starts empty.
    pub fn remap(&mut self, models: &ModelSet) {
        let new = SlotVersions::of(models);
        if new == self.versions {
            return;
        }
        self.drift
            .remap(&slots_by_version(&self.versions.drift, &new.drift));
        self.online
            .remap(&slots_by_version(&self.versions.online, &new.online));
        self.versions = new;
    }

    /// Applies one changelog record of the windows during a restore (the
    /// latest record of a bucket is its committed state; `value` `None`,
    /// a tombstone, removes it). `models` are those the partition is
    /// restored with. An error says why the record is unreadable.
    pub fn restore(
        &mut self,
        kind: WindowKind,
        key: &[u8],
        value: Option<&[u8]>,
        models: &ModelSet,
    ) -> Result<(), String> {
        let start = kind
            .start_of(key)
            .ok_or_else(|| format!("key {:?} names no bucket", String::from_utf8_lossy(key)))?;
        let Some(value) = value else {
            match kind {
                WindowKind::Drift => self.drift.remove(start),
                WindowKind::OnlineEval => self.online.remove(start),
            }
            return Ok(());
        };
        match kind {
            WindowKind::Drift => {
                let record: BucketRecord<Option<DriftCountsRecord>> =
                    serde_json::from_slice(value).map_err(|e| e.to_string())?;
                let from = slots_by_version(&record.versions, &self.versions.drift);
                let counts = from
                    .iter()
                    .enumerate()
                    .map(|(i, k)| {
                        let (Some(stored), Some(reference)) = (
                            k.and_then(|k| record.counts.get(k))
                                .and_then(Option::as_ref),
                            models.get(i).and_then(|m| m.drift_reference()),
                        ) else {
                            return Ok(None);
                        };
                        ModelDriftCounts::from_record(reference, stored).map(Some)
                    })
                    .collect::<Result<Vec<_>, String>>()?;
                self.drift.put(start, counts);
            }
            WindowKind::OnlineEval => {
                let record: BucketRecord<OutcomeEvalCounts> =
                    serde_json::from_slice(value).map_err(|e| e.to_string())?;
                let from = slots_by_version(&record.versions, &self.versions.online);
                self.online.put(start, remapped(&record.counts, &from));
            }
        }
        Ok(())
    }

    /// After a restore: the buckets restored that have left the window by
    /// `now_ms` are dropped and their records deleted at the next commit.
    pub fn restored(&mut self, now_ms: i64) {
        self.expire(now_ms);
    }

    /// The drift window's counts per outcome as of `now_ms`.
    pub fn drift_sum(&self, now_ms: i64) -> Vec<Option<ModelDriftCounts>> {
        self.drift.sum(now_ms)
    }

    /// The online-evaluation window's counts per slot as of `now_ms`.
    pub fn online_sum(&self, now_ms: i64) -> Vec<OutcomeEvalCounts> {
        self.online.sum(now_ms)
    }
}

fn encode<R: Serialize>(versions: &[Option<String>], counts: &[R]) -> Vec<u8> {
    #[derive(Serialize)]
    struct Borrowed<'a, R> {
        versions: &'a [Option<String>],
        counts: &'a [R],
    }
    serde_json::to_vec(&Borrowed { versions, counts }).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: i64 = 1_800_000_000_000;

    fn sessions(n: usize, p: f64) -> OutcomeEvalCounts {
        let mut c = OutcomeEvalCounts::default();
        for k in 0..n {
            c.observe(p, k % 3 == 0);
        }
        c
    }

    /// Windows laid out for one outcome whose champion is `champion` and
    /// challenger `challenger` (no drift references: the online window
    /// alone).
    fn monitoring(champion: &str, challenger: Option<&str>) -> PartitionMonitoring {
        let mut m = PartitionMonitoring::new(HOUR, HOUR, &ModelSet::empty(1));
        m.versions = SlotVersions {
            drift: vec![Some(champion.to_owned())],
            online: vec![Some(champion.to_owned()), challenger.map(str::to_owned)],
        };
        m
    }

    fn add(m: &mut PartitionMonitoring, now_ms: i64, counts: &[OutcomeEvalCounts]) {
        let start = m.online.add(now_ms, counts).expect("counts");
        m.changed.insert((WindowKind::OnlineEval, start));
        m.expire(now_ms);
    }

    fn restore_all(records: &[WindowRecord], into: &mut PartitionMonitoring) {
        for r in records {
            into.restore(
                r.kind,
                r.key.as_bytes(),
                r.value.as_deref(),
                &ModelSet::empty(1),
            )
            .expect("readable");
        }
    }

    fn totals(m: &PartitionMonitoring, now_ms: i64) -> Vec<u64> {
        m.online_sum(now_ms).iter().map(|c| c.sessions()).collect()
    }

    #[test]
    fn records_restore_the_same_windows_and_follow_the_model_versions() {
        let mut live = monitoring("A1", Some("A2"));
        add(&mut live, T0, &[sessions(10, 0.3), sessions(4, 0.6)]);
        // Only the changed bucket is written, once.
        let first = live.take_records(false);
        assert_eq!(first.len(), 1);
        assert!(live.take_records(false).is_empty());
        add(&mut live, T0 + 1_000, &[sessions(5, 0.2), sessions(0, 0.0)]);
        add(
            &mut live,
            T0 + 600_000,
            &[sessions(7, 0.9), sessions(1, 0.1)],
        );
        let second = live.take_records(false);
        assert_eq!(second.len(), 2, "two buckets changed");
        let log: Vec<WindowRecord> = first.into_iter().chain(second).collect();

        // The same models: the same counts, bit for bit.
        let mut restored = monitoring("A1", Some("A2"));
        restore_all(&log, &mut restored);
        assert_eq!(totals(&restored, T0 + 600_000), vec![22, 5]);
        assert_eq!(
            restored.online_sum(T0 + 600_000),
            live.online_sum(T0 + 600_000)
        );

        // A2 promoted meanwhile: its counts come back in the champion role.
        let mut promoted = monitoring("A2", Some("A1"));
        restore_all(&log, &mut promoted);
        assert_eq!(totals(&promoted, T0 + 600_000), vec![5, 22]);
        // A retrained champion starts empty; the challenger kept.
        let mut retrained = monitoring("A3", Some("A2"));
        restore_all(&log, &mut retrained);
        assert_eq!(totals(&retrained, T0 + 600_000), vec![0, 5]);

        // An hour on, the first bucket leaves the window: a tombstone, and
        // a restore of the whole log no longer has it.
        add(
            &mut live,
            T0 + 3_600_000,
            &[sessions(2, 0.5), sessions(0, 0.0)],
        );
        let third = live.take_records(false);
        let tombstones: Vec<&WindowRecord> = third.iter().filter(|r| r.value.is_none()).collect();
        assert_eq!(tombstones.len(), 1);
        assert_eq!(
            tombstones[0].key,
            WindowKind::OnlineEval.key(T0 - T0 % 300_000)
        );
        let log: Vec<WindowRecord> = log.into_iter().chain(third).collect();
        let mut later = monitoring("A1", Some("A2"));
        restore_all(&log, &mut later);
        assert_eq!(totals(&later, T0 + 3_600_000), vec![9, 1]);

        // A restore long after: every bucket expired, each deleted once.
        let mut stale = monitoring("A1", Some("A2"));
        restore_all(&log, &mut stale);
        stale.restored(T0 + 3 * 3_600_000);
        assert_eq!(totals(&stale, T0 + 3 * 3_600_000), Vec::<u64>::new());
        let deletes = stale.take_records(false);
        assert_eq!(deletes.len(), 2);
        assert!(deletes.iter().all(|r| r.value.is_none()));
        // A rewrite writes every bucket held.
        assert_eq!(later.take_records(true).len(), 2);
        // A record that cannot be read is an error naming why.
        let bad = later.restore(
            WindowKind::OnlineEval,
            WindowKind::OnlineEval.key(T0).as_bytes(),
            Some(b"{\"versions\":[]}"),
            &ModelSet::empty(1),
        );
        assert!(bad.is_err());
    }
}
