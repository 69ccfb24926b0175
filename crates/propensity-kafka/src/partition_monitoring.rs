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
