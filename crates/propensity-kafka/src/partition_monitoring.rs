//! A partition's monitoring windows (the drift counts and resolved
//! sessions of its committed work, see `crate::committed_window`) and
//! their changelog records.
//!
//! Each commit that counted something writes one small **delta** record
//! per window, holding that commit's counts only, under one of
//! [`DELTA_SLOTS`] rotating keys. Every [`FOLD_EVERY`] deltas of a bucket,
//! and when the commits move on to the next bucket, the bucket is
//! **folded**: its whole counts are written as the bucket's **base**
//! record (one key per bucket) with the sequence number of the last delta
//! it includes. So a commit writes its own counts plus a base every few
//! dozen commits, not its bucket's whole histogram, and the compacted
//! topic holds a fixed number of keys per partition. A bucket that leaves
//! the window gets a tombstone for its base.
//!
//! Invariants kept here:
//! - Exactly once: a commit's counts are in the delta (and any base)
//!   written in the same transaction, so a restore (after `kill -9`, an
//!   abort or a rebalance) has every committed resolved session and scored
//!   event once and none of an aborted transaction (its work is done
//!   again and counted then).
//! - A restored bucket is its base plus the deltas of that bucket whose
//!   sequence number is above the base's `folded_through`; any other delta
//!   is already in a base. Sequence numbers only rise (a restore continues
//!   after the highest one read), and a delta slot is reused only after
//!   [`DELTA_SLOTS`] deltas, while at most [`FOLD_EVERY`] of them are not
//!   folded yet, so a delta is never overwritten before its fold.
//! - A record names the model version of each of its slots; a restore puts
//!   each slot's counts where that version serves now (a promotion or a
//!   retraining between the write and the restore moves or drops them, as
//!   at a swap).
//! - Monitoring is not decision state: a record that cannot be read is
//!   left out, with a warning, instead of refusing the partition.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use propensity_engine::drift::{DriftCountsRecord, ModelDriftCounts};
use propensity_engine::online_eval::OutcomeEvalCounts;
use propensity_engine::{Engine, ModelRole, ModelSet};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::committed_window::{add_slots, slots_by_version, CommittedWindow, WindowCounts};

/// Header marking a changelog record of a monitoring window (a base or a
/// delta); its value names the window ([`WindowKind::name`]).
pub const MONITORING_WINDOW_HEADER: &str = "propensity.monitoring_window";

/// Rotating keys of the delta records, per window and partition.
pub const DELTA_SLOTS: u64 = 64;

/// A bucket is folded into its base after this many deltas (and when the
/// commits move on to another bucket). At most half of [`DELTA_SLOTS`].
pub const FOLD_EVERY: u32 = 32;

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

    /// The changelog key of the base of the bucket starting at `start_ms`.
    pub fn key(self, start_ms: i64) -> String {
        format!("{}{start_ms}", self.key_prefix())
    }

    /// The changelog key of the delta record with sequence number `seq`.
    pub fn delta_key(self, seq: u64) -> String {
        format!("{}delta.{}", self.key_prefix(), seq % DELTA_SLOTS)
    }

    /// What a changelog key of this window names.
    fn parse_key(self, key: &[u8]) -> Option<KeyOf> {
        let rest = std::str::from_utf8(key)
            .ok()?
            .strip_prefix(&self.key_prefix())?;
        match rest.strip_prefix("delta.") {
            Some(slot) => slot.parse().ok().map(KeyOf::Delta),
            None => rest.parse().ok().map(KeyOf::Base),
        }
    }
}

/// What a window's changelog key names.
enum KeyOf {
    /// The base of the bucket starting then.
    Base(i64),
    /// A delta slot.
    Delta(u64),
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

/// One window's counts as stored in a record, slot by slot.
trait StoredCounts: WindowCounts {
    /// The stored form of one slot.
    type Record: Serialize + DeserializeOwned;
    fn to_record(&self) -> Self::Record;
    /// Slot `slot`'s counts from their stored form, under `models`.
    fn from_record(record: &Self::Record, slot: usize, models: &ModelSet) -> Result<Self, String>;
}

impl StoredCounts for Option<ModelDriftCounts> {
    type Record = Option<DriftCountsRecord>;
    fn to_record(&self) -> Self::Record {
        self.as_ref().map(ModelDriftCounts::record)
    }
    fn from_record(record: &Self::Record, slot: usize, models: &ModelSet) -> Result<Self, String> {
        let (Some(stored), Some(reference)) = (
            record.as_ref(),
            models.get(slot).and_then(|m| m.drift_reference()),
        ) else {
            return Ok(None);
        };
        ModelDriftCounts::from_record(reference, stored).map(Some)
    }
}

impl StoredCounts for OutcomeEvalCounts {
    type Record = OutcomeEvalCounts;
    fn to_record(&self) -> Self::Record {
        self.clone()
    }
    fn from_record(record: &Self::Record, _: usize, _: &ModelSet) -> Result<Self, String> {
        Ok(record.clone())
    }
}

/// The value of a window record: what kind of record it is (`head`:
/// [`BaseHead`] or [`DeltaHead`]), and counts per slot.
#[derive(Serialize, Deserialize)]
struct StoredRecord<H, R> {
    #[serde(flatten)]
    head: H,
    /// The model version of each slot when it was written.
    versions: Vec<Option<String>>,
    /// The counts of each slot: the bucket's (a base) or the commit's (a
    /// delta).
    counts: Vec<R>,
}

/// What a base record says besides its counts.
#[derive(Serialize, Deserialize)]
struct BaseHead {
    /// The sequence number of the last delta included (`None`: none).
    folded_through: Option<u64>,
}

/// What a delta record says besides its counts.
#[derive(Serialize, Deserialize)]
struct DeltaHead {
    /// The bucket the commit's counts went to.
    start: i64,
    /// Its sequence number in the window.
    seq: u64,
}

/// A changelog record of the windows.
#[derive(Debug)]
pub struct WindowRecord {
    /// Which window.
    pub kind: WindowKind,
    /// The record's key ([`WindowKind::key`], [`WindowKind::delta_key`]).
    pub key: String,
    /// The value; `None`: a tombstone (the bucket left the window).
    pub value: Option<Vec<u8>>,
}

/// The latest record of each key a restore read of one window, still
/// encoded: the changelog may hold many versions of a key not compacted
/// yet, and only the last one of each is decoded.
#[derive(Default)]
struct Restored {
    /// Per bucket: its latest base.
    bases: BTreeMap<i64, Vec<u8>>,
    /// Per delta slot: its latest delta.
    deltas: BTreeMap<u64, Vec<u8>>,
    /// Records whose key names no bucket or delta slot of the window.
    unknown_keys: Vec<String>,
}

/// One window of a partition and what its next records must say.
struct StoredWindow<E> {
    kind: WindowKind,
    window: CommittedWindow<E>,
    /// The model version of each slot the window is laid out in.
    versions: Vec<Option<String>>,
    /// The bucket with deltas not folded yet, and how many.
    open: Option<(i64, u32)>,
    /// Buckets to fold at the next write.
    fold: BTreeSet<i64>,
    /// Buckets that left the window; their bases are to be deleted.
    expired: BTreeSet<i64>,
    /// Delta records of the open transaction, encoded.
    deltas: Vec<(u64, Vec<u8>)>,
    /// The next delta's sequence number (per window, so that a window's
    /// deltas take its slots in turn).
    next_seq: u64,
    /// What a restore has read so far.
    restored: Restored,
}

impl<E: StoredCounts> StoredWindow<E> {
    fn new(kind: WindowKind, window: Duration, versions: Vec<Option<String>>) -> Self {
        Self {
            kind,
            window: CommittedWindow::new(window),
            versions,
            open: None,
            fold: BTreeSet::new(),
            expired: BTreeSet::new(),
            deltas: Vec::new(),
            next_seq: 0,
            restored: Restored::default(),
        }
    }

    /// Adds a commit's counts at `now_ms` as the next delta.
    fn add(&mut self, now_ms: i64, counts: &[E]) {
        let Some(start) = self.window.add(now_ms, counts) else {
            return;
        };
        let seq = self.next_seq;
        self.next_seq += 1;
        self.deltas
            .push((seq, self.encode(DeltaHead { start, seq }, counts)));
        self.open = match self.open {
            Some((s, n)) if s == start && n + 1 < FOLD_EVERY => Some((s, n + 1)),
            Some((s, _)) if s == start => {
                self.fold.insert(s);
                None
            }
            Some((s, _)) => {
                self.fold.insert(s);
                Some((start, 1))
            }
            None => Some((start, 1)),
        };
    }

    fn expire(&mut self, now_ms: i64) {
        for start in self.window.expire(now_ms) {
            if self.open.is_some_and(|(s, _)| s == start) {
                self.open = None;
            }
            self.fold.remove(&start);
            self.expired.insert(start);
        }
    }

    /// The records due.
    fn take_records(&mut self, rewrite: bool, out: &mut Vec<WindowRecord>) {
        let last_seq = self.next_seq.checked_sub(1);
        if rewrite {
            self.fold.extend(self.window.starts());
            self.open = None;
        }
        for (seq, value) in self.deltas.drain(..) {
            out.push(WindowRecord {
                kind: self.kind,
                key: self.kind.delta_key(seq),
                value: Some(value),
            });
        }
        for start in std::mem::take(&mut self.fold) {
            let Some(counts) = self.window.bucket(start) else {
                continue;
            };
            let head = BaseHead {
                folded_through: last_seq,
            };
            out.push(WindowRecord {
                kind: self.kind,
                key: self.kind.key(start),
                value: Some(self.encode(head, counts)),
            });
        }
        for start in std::mem::take(&mut self.expired) {
            out.push(WindowRecord {
                kind: self.kind,
                key: self.kind.key(start),
                value: None,
            });
        }
    }

    fn remap(&mut self, versions: Vec<Option<String>>) {
        self.window
            .remap(&slots_by_version(&self.versions, &versions));
        self.versions = versions;
    }

    /// A record of `counts` (the window's layout) with `head`.
    fn encode<H: Serialize>(&self, head: H, counts: &[E]) -> Vec<u8> {
        let record = StoredRecord {
            head,
            versions: self.versions.clone(),
            counts: counts.iter().map(E::to_record).collect::<Vec<_>>(),
        };
        serde_json::to_vec(&record).unwrap_or_default()
    }

    /// A record's head and counts, laid out for `models`.
    fn decode<H: DeserializeOwned>(
        &self,
        value: &[u8],
        models: &ModelSet,
    ) -> Result<(H, Vec<E>), String> {
        let record: StoredRecord<H, E::Record> =
            serde_json::from_slice(value).map_err(|e| e.to_string())?;
        let counts = self.laid_out(&record.versions, &record.counts, models)?;
        Ok((record.head, counts))
    }

    /// Counts of a record laid out for the current models: each slot takes
    /// the stored slot of the same model version, read under that model.
    fn laid_out(
        &self,
        versions: &[Option<String>],
        counts: &[E::Record],
        models: &ModelSet,
    ) -> Result<Vec<E>, String> {
        slots_by_version(versions, &self.versions)
            .into_iter()
            .enumerate()
            .map(|(slot, from)| match from.and_then(|k| counts.get(k)) {
                Some(stored) => E::from_record(stored, slot, models),
                None => Ok(E::default()),
            })
            .collect()
    }

    /// Reads one record of this window during a restore, kept encoded
    /// until [`StoredWindow::restored`] (which also reports a key that is
    /// not one of this window's).
    fn restore(&mut self, key: &[u8], value: Option<&[u8]>) {
        let Some(named) = self.kind.parse_key(key) else {
            // Same shape as the unreadable records' reasons: key first.
            self.restored.unknown_keys.push(format!(
                "{}: names no bucket or delta slot of this window",
                String::from_utf8_lossy(key)
            ));
            return;
        };
        match (named, value) {
            (KeyOf::Base(start), None) => {
                self.restored.bases.remove(&start);
            }
            (KeyOf::Base(start), Some(value)) => {
                self.restored.bases.insert(start, value.to_vec());
            }
            (KeyOf::Delta(slot), None) => {
                self.restored.deltas.remove(&slot);
            }
            (KeyOf::Delta(slot), Some(value)) => {
                self.restored.deltas.insert(slot, value.to_vec());
            }
        }
    }

    /// After a restore: each bucket is its base plus its deltas not in the
    /// base, laid out for `models`; a bucket with such deltas is folded at
    /// the next write, and the buckets out of the window by `now_ms` are
    /// deleted. Returns why each record left out could not be read.
    fn restored(&mut self, now_ms: i64, models: &ModelSet) -> Vec<String> {
        let Restored {
            bases,
            deltas,
            unknown_keys: mut errors,
        } = std::mem::take(&mut self.restored);
        let mut buckets: BTreeMap<i64, Vec<E>> = BTreeMap::new();
        let mut folded: BTreeMap<i64, Option<u64>> = BTreeMap::new();
        for (start, value) in bases {
            match self.decode::<BaseHead>(&value, models) {
                Ok((head, counts)) => {
                    if let Some(t) = head.folded_through {
                        self.next_seq = self.next_seq.max(t + 1);
                    }
                    folded.insert(start, head.folded_through);
                    buckets.insert(start, counts);
                }
                Err(e) => errors.push(format!("{}: {e}", self.kind.key(start))),
            }
        }
        for (slot, value) in deltas {
            let (DeltaHead { start, seq }, counts) = match self.decode(&value, models) {
                Ok(read) => read,
                Err(e) => {
                    errors.push(format!("{}: {e}", self.kind.delta_key(slot)));
                    continue;
                }
            };
            self.next_seq = self.next_seq.max(seq + 1);
            let through = folded.get(&start).copied().flatten();
            if through.is_some_and(|t| seq <= t) {
                continue;
            }
            add_slots(buckets.entry(start).or_default(), &counts);
            self.fold.insert(start);
        }
        for (start, counts) in buckets {
            self.window.put(start, counts);
        }
        self.open = None;
        self.expire(now_ms);
        errors
    }
}

/// A partition's drift and online-evaluation windows.
pub struct PartitionMonitoring {
    drift: StoredWindow<Option<ModelDriftCounts>>,
    online: StoredWindow<OutcomeEvalCounts>,
}

impl PartitionMonitoring {
    /// Empty windows of the given lengths, laid out for `models`.
    pub fn new(drift_window: Duration, online_window: Duration, models: &ModelSet) -> Self {
        let versions = SlotVersions::of(models);
        Self {
            drift: StoredWindow::new(WindowKind::Drift, drift_window, versions.drift),
            online: StoredWindow::new(WindowKind::OnlineEval, online_window, versions.online),
        }
    }

    /// Moves the counts of the engine's work since the last call (the
    /// open transaction's) into the buckets of `now_ms`, as deltas, and
    /// expires the buckets that left the windows. Their records are then
    /// due ([`PartitionMonitoring::take_records`]). If the transaction
    /// aborts, the partition is restored from the changelog, these counts
    /// with it.
    pub fn take_from(&mut self, engine: &mut Engine, now_ms: i64) {
        self.drift.add(now_ms, engine.drift_counts());
        self.online.add(now_ms, engine.online_eval());
        engine.clear_monitoring_counts();
        self.drift.expire(now_ms);
        self.online.expire(now_ms);
    }

    /// The records due: this transaction's deltas, the bases of the buckets
    /// folded (of every bucket with `rewrite`) and a tombstone for every
    /// bucket that left its window.
    pub fn take_records(&mut self, rewrite: bool) -> Vec<WindowRecord> {
        let mut out = Vec::new();
        self.drift.take_records(rewrite, &mut out);
        self.online.take_records(rewrite, &mut out);
        out
    }

    /// Lays the windows out for `models` after a swap: each slot keeps
    /// the counts of the version it now holds, a new version starts empty.
    pub fn remap(&mut self, models: &ModelSet) {
        let new = SlotVersions::of(models);
        if new.drift != self.drift.versions {
            self.drift.remap(new.drift);
        }
        if new.online != self.online.versions {
            self.online.remap(new.online);
        }
    }

    /// Reads one changelog record of the windows during a restore (`value`
    /// `None`: a tombstone). Once every record is read,
    /// [`PartitionMonitoring::restored`] builds the windows and reports
    /// every record it left out, a key that is not a window's included.
    pub fn restore(&mut self, kind: WindowKind, key: &[u8], value: Option<&[u8]>) {
        match kind {
            WindowKind::Drift => self.drift.restore(key, value),
            WindowKind::OnlineEval => self.online.restore(key, value),
        }
    }

    /// After a restore: the windows from the records read, laid out for
    /// `models` (those the partition is restored with); buckets with deltas
    /// not folded yet are folded at the next commit, and those that have
    /// left the window by `now_ms` are deleted then. Returns why each
    /// record left out could not be read.
    pub fn restored(&mut self, now_ms: i64, models: &ModelSet) -> Vec<String> {
        let mut errors = self.drift.restored(now_ms, models);
        errors.extend(self.online.restored(now_ms, models));
        errors
    }

    /// Adds the drift window's counts per outcome as of `now_ms` to `sum`.
    pub fn add_drift_to(&self, sum: &mut Vec<Option<ModelDriftCounts>>, now_ms: i64) {
        self.drift.window.add_to(sum, now_ms);
    }

    /// Adds the online-evaluation window's counts per slot as of `now_ms`
    /// to `sum`.
    pub fn add_online_to(&self, sum: &mut Vec<OutcomeEvalCounts>, now_ms: i64) {
        self.online.window.add_to(sum, now_ms);
    }

    /// The online-evaluation window's counts per slot as of `now_ms`.
    #[cfg(test)]
    fn online_sum(&self, now_ms: i64) -> Vec<OutcomeEvalCounts> {
        self.online.window.sum(now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: Duration = Duration::from_secs(3600);
    const T0: i64 = 1_800_000_000_000;
    const FIVE_MIN: i64 = 300_000;

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
        m.drift.versions = vec![Some(champion.to_owned())];
        m.online.versions = vec![Some(champion.to_owned()), challenger.map(str::to_owned)];
        m
    }

    /// One commit adding `counts` at `now_ms`; its records.
    fn commit(
        m: &mut PartitionMonitoring,
        now_ms: i64,
        counts: &[OutcomeEvalCounts],
    ) -> Vec<WindowRecord> {
        m.online.add(now_ms, counts);
        m.online.expire(now_ms);
        m.take_records(false)
    }

    fn restore_all(records: &[WindowRecord], into: &mut PartitionMonitoring, now_ms: i64) {
        for r in records {
            into.restore(r.kind, r.key.as_bytes(), r.value.as_deref());
        }
        assert_eq!(
            into.restored(now_ms, &ModelSet::empty(1)),
            Vec::<String>::new()
        );
    }

    fn totals(m: &PartitionMonitoring, now_ms: i64) -> Vec<u64> {
        m.online_sum(now_ms).iter().map(|c| c.sessions()).collect()
    }

    fn bases(records: &[WindowRecord]) -> usize {
        records
            .iter()
            .filter(|r| r.value.is_some() && !r.key.contains("delta"))
            .count()
    }

    #[test]
    fn a_commit_writes_its_own_counts_and_buckets_are_folded_now_and_then() {
        let mut live = monitoring("A1", Some("A2"));
        let mut log = Vec::new();
        // A commit with nothing counted writes nothing.
        assert!(commit(&mut live, T0, &[sessions(0, 0.0), sessions(0, 0.0)]).is_empty());
        // Each commit: one delta of its own counts; every FOLD_EVERY deltas
        // of a bucket, its base too.
        let (mut deltas, mut base) = (Vec::new(), 0);
        for k in 0..(2 * FOLD_EVERY as i64) {
            // Each commit's session in a bin of its own.
            let p = 0.2 + k as f64 / 200.0;
            let records = commit(&mut live, T0 + k, &[sessions(1, p), sessions(0, 0.0)]);
            let folded = (k + 1) % i64::from(FOLD_EVERY) == 0;
            assert_eq!(bases(&records), usize::from(folded), "commit {k}");
            for r in &records {
                let size = r.value.as_ref().map_or(0, Vec::len);
                if r.key.contains("delta") {
                    deltas.push(size);
                } else {
                    base = base.max(size);
                }
            }
            log.extend(records);
        }
        // Deltas do not grow with the bucket; its base does.
        let (small, large) = (deltas.iter().min(), deltas.iter().max());
        assert!(large <= small.map(|s| s + 16).as_ref(), "{deltas:?}");
        assert!(
            base > 2 * large.copied().unwrap_or(0),
            "base {base}, deltas {deltas:?}"
        );
        // The next bucket: the open one is folded with the first delta.
        let records = commit(
            &mut live,
            T0 + FIVE_MIN,
            &[sessions(3, 0.6), sessions(2, 0.4)],
        );
        assert_eq!(bases(&records), 0, "the previous bucket was folded already");
        log.extend(records);
        let records = commit(
            &mut live,
            T0 + FIVE_MIN + 1,
            &[sessions(1, 0.6), sessions(0, 0.0)],
        );
        log.extend(records);
        let records = commit(
            &mut live,
            T0 + 2 * FIVE_MIN,
            &[sessions(1, 0.1), sessions(0, 0.0)],
        );
        assert_eq!(bases(&records), 1, "the bucket left behind is folded");
        log.extend(records);
        let now = T0 + 2 * FIVE_MIN;
        assert_eq!(totals(&live, now), vec![64 + 5, 2]);

        // A restore of the whole log: the same windows, bit for bit (the
        // deltas of the open bucket on top of no base, those of folded
        // buckets not twice).
        let mut restored = monitoring("A1", Some("A2"));
        restore_all(&log, &mut restored, now);
        assert_eq!(restored.online_sum(now), live.online_sum(now));
        // Restored deltas not folded yet are folded at the next commit,
        // and the deltas go on after the highest sequence number read.
        let after = restored.take_records(false);
        assert_eq!(bases(&after), 1);
        assert_eq!(restored.online.next_seq, live.online.next_seq);
        // The compacted log keeps at most DELTA_SLOTS delta keys.
        let keys: BTreeSet<&str> = log.iter().map(|r| r.key.as_str()).collect();
        assert!(
            keys.len() <= DELTA_SLOTS as usize + 3,
            "{} keys",
            keys.len()
        );
    }

    #[test]
    fn records_follow_the_model_versions_and_expire() {
        let mut live = monitoring("A1", Some("A2"));
        let mut log = commit(&mut live, T0, &[sessions(10, 0.3), sessions(4, 0.6)]);
        log.extend(commit(
            &mut live,
            T0 + 1_000,
            &[sessions(5, 0.2), sessions(0, 0.0)],
        ));
        log.extend(commit(
            &mut live,
            T0 + 2 * FIVE_MIN,
            &[sessions(7, 0.9), sessions(1, 0.1)],
        ));
        let now = T0 + 2 * FIVE_MIN;

        // The same models: the same counts.
        let mut same = monitoring("A1", Some("A2"));
        restore_all(&log, &mut same, now);
        assert_eq!(totals(&same, now), vec![22, 5]);
        // A2 promoted meanwhile: its counts come back in the champion role.
        let mut promoted = monitoring("A2", Some("A1"));
        restore_all(&log, &mut promoted, now);
        assert_eq!(totals(&promoted, now), vec![5, 22]);
        // A retrained champion starts empty; the challenger kept.
        let mut retrained = monitoring("A3", Some("A2"));
        restore_all(&log, &mut retrained, now);
        assert_eq!(totals(&retrained, now), vec![0, 5]);

        // An hour on, the first bucket leaves the window: its base gets a
        // tombstone, and a restore of the whole log no longer has it.
        let later = T0 + 3_600_000;
        let records = commit(&mut live, later, &[sessions(2, 0.5), sessions(0, 0.0)]);
        let tombstones: Vec<&WindowRecord> = records.iter().filter(|r| r.value.is_none()).collect();
        assert_eq!(tombstones.len(), 1);
        assert_eq!(tombstones[0].key, WindowKind::OnlineEval.key(T0));
        log.extend(records);
        let mut restored = monitoring("A1", Some("A2"));
        restore_all(&log, &mut restored, later);
        assert_eq!(totals(&restored, later), vec![9, 1]);

        // A restore long after: every bucket expired, each deleted once.
        let mut stale = monitoring("A1", Some("A2"));
        restore_all(&log, &mut stale, T0 + 3 * 3_600_000);
        assert_eq!(totals(&stale, T0 + 3 * 3_600_000), Vec::<u64>::new());
        let deletes = stale.take_records(false);
        assert!(!deletes.is_empty());
        assert!(deletes.iter().all(|r| r.value.is_none()));
        // A rewrite writes the base of every bucket held.
        assert_eq!(bases(&restored.take_records(true)), 2);
        // A record that cannot be read, or whose key is not the window's,
        // is left out, and said why.
        let mut unreadable = monitoring("A1", Some("A2"));
        let key = WindowKind::OnlineEval.key(T0);
        unreadable.restore(
            WindowKind::OnlineEval,
            key.as_bytes(),
            Some(b"{\"versions\":[]}"),
        );
        unreadable.restore(WindowKind::OnlineEval, b"__propensity.drift_window.1", None);
        let errors = unreadable.restored(later, &ModelSet::empty(1));
        assert_eq!(errors.len(), 2, "{errors:?}");
        assert!(
            errors.iter().any(|e| e.starts_with(&key)),
            "the unreadable base: {errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.starts_with("__propensity.drift_window.1: names no bucket")),
            "the foreign key: {errors:?}"
        );
    }
}
