//! The committed-work window: counts the engines hand over at each commit
//! (drift counts, see `propensity_engine::drift`; resolved sessions, see
//! `propensity_engine::online_eval`), summed over the last window in
//! buckets, so that monitoring figures describe recent traffic. Each
//! partition has its own windows (`crate::partition_monitoring`), written
//! to the changelog bucket by bucket and restored with the partition.
//!
//! Invariants kept here:
//! - Buckets are aligned on the wall clock (epoch milliseconds, a twelfth
//!   of the window each), so a bucket restored on another instance, or
//!   after a restart, is the same bucket there and the work of a commit
//!   goes to exactly one of them.
//! - Counts of different models never mix: at a model swap each slot
//!   keeps the counts of the model version it now holds, wherever that
//!   version was before (a promotion moves the challenger's counts to the
//!   champion role), and starts empty for a new version
//!   ([`slots_by_version`], [`CommittedWindow::remap`]).
//! - Time is passed in, so the windowing is tested without sleeping.

use std::collections::VecDeque;
use std::time::Duration;

use propensity_engine::drift::{DriftPsi, DriftReference, ModelDriftCounts};
use propensity_engine::online_eval::OutcomeEvalCounts;

/// Buckets per window: the window slides by a twelfth of its length.
const BUCKETS: i64 = 12;

/// One outcome's counts, which add up.
pub trait WindowCounts: Clone + Default {
    /// Adds `other` to these.
    fn add(&mut self, other: &Self);
    /// Whether nothing was counted.
    fn is_empty(&self) -> bool;
}

impl WindowCounts for Option<ModelDriftCounts> {
    fn add(&mut self, other: &Self) {
        match (self.as_mut(), other) {
            (Some(s), Some(c)) => s.merge(c),
            (None, c) => *self = c.clone(),
            (Some(_), None) => {}
        }
    }
    fn is_empty(&self) -> bool {
        self.as_ref().is_none_or(|c| c.events == 0)
    }
}

impl WindowCounts for OutcomeEvalCounts {
    fn add(&mut self, other: &Self) {
        self.merge(other);
    }
    fn is_empty(&self) -> bool {
        self.sessions() == 0
    }
}

/// Adds `counts` slot by slot to `sum`, growing it to their length.
pub fn add_slots<E: WindowCounts>(sum: &mut Vec<E>, counts: &[E]) {
    if sum.len() < counts.len() {
        sum.resize(counts.len(), E::default());
    }
    for (s, c) in sum.iter_mut().zip(counts) {
        s.add(c);
    }
}

/// Counts per slot of the last window, in wall-clock buckets.
pub struct CommittedWindow<E> {
    window_ms: i64,
    bucket_ms: i64,
    /// (bucket start in epoch ms, counts per slot), oldest first.
    buckets: VecDeque<(i64, Vec<E>)>,
}

impl<E: WindowCounts> CommittedWindow<E> {
    /// An empty window of `window` length.
    pub fn new(window: Duration) -> Self {
        let window_ms = i64::try_from(window.as_millis())
            .unwrap_or(i64::MAX)
            .max(BUCKETS);
        Self {
            window_ms,
            bucket_ms: window_ms / BUCKETS,
            buckets: VecDeque::new(),
        }
    }

    /// The start of the bucket holding the moment `now_ms`.
    pub fn bucket_start(&self, now_ms: i64) -> i64 {
        now_ms.div_euclid(self.bucket_ms) * self.bucket_ms
    }

    /// Adds the counts per slot an engine holds at `now_ms` (read, not
    /// taken: the caller clears them, so no commit allocates) and returns
    /// the start of the bucket they went to; `None` when there was nothing
    /// to add. A clock that went back adds to the newest bucket.
    pub fn add(&mut self, now_ms: i64, counts: &[E]) -> Option<i64> {
        if counts.iter().all(E::is_empty) {
            return None;
        }
        let start = self.bucket_start(now_ms);
        match self.buckets.back_mut() {
            Some((newest, sum)) if *newest >= start => {
                add_slots(sum, counts);
                Some(*newest)
            }
            _ => {
                self.buckets.push_back((start, counts.to_vec()));
                Some(start)
            }
        }
    }

    /// Whether the bucket starting at `start` is still in the window at
    /// `now_ms`.
    fn in_window(&self, start: i64, now_ms: i64) -> bool {
        start > now_ms.saturating_sub(self.window_ms)
    }

    /// Drops the buckets that left the window by `now_ms` and returns
    /// their starts.
    pub fn expire(&mut self, now_ms: i64) -> Vec<i64> {
        let mut gone = Vec::new();
        while let Some((start, _)) = self.buckets.front() {
            if self.in_window(*start, now_ms) {
                break;
            }
            gone.push(*start);
            self.buckets.pop_front();
        }
        gone
    }

    /// The bucket starting at `start`, if held.
    pub fn bucket(&self, start: i64) -> Option<&[E]> {
        self.buckets
            .iter()
            .find(|(s, _)| *s == start)
            .map(|(_, c)| c.as_slice())
    }

    /// The starts of the buckets held, oldest first.
    pub fn starts(&self) -> impl Iterator<Item = i64> + '_ {
        self.buckets.iter().map(|(s, _)| *s)
    }

    /// Puts `counts` in place of the bucket starting at `start` (a
    /// restore: the latest record of a bucket is its committed state).
    pub fn put(&mut self, start: i64, counts: Vec<E>) {
        match self.buckets.binary_search_by_key(&start, |(s, _)| *s) {
            Ok(k) => self.buckets[k].1 = counts,
            Err(k) => self.buckets.insert(k, (start, counts)),
        }
    }

    /// Removes the bucket starting at `start` (its record was deleted).
    pub fn remove(&mut self, start: i64) {
        self.buckets.retain(|(s, _)| *s != start);
    }

    /// Rearranges the slots after a model swap: slot `j` of the new layout
    /// takes the counts of old slot `from[j]` (`None`: starts empty), so a
    /// model that keeps serving, or moves to another role (a promotion),
    /// keeps its counts, and counts of a model that is gone are dropped.
    pub fn remap(&mut self, from: &[Option<usize>]) {
        for (_, counts) in &mut self.buckets {
            *counts = remapped(counts, from);
        }
    }

    /// The window's counts per slot as of `now_ms` (empty: nothing in it).
    pub fn sum(&self, now_ms: i64) -> Vec<E> {
        let mut sum: Vec<E> = Vec::new();
        self.add_to(&mut sum, now_ms);
        sum
    }

    /// Adds the window's counts per slot as of `now_ms` to `sum` (the
    /// windows of several partitions into one total, without a copy of
    /// each).
    pub fn add_to(&self, sum: &mut Vec<E>, now_ms: i64) {
        for (_, counts) in self
            .buckets
            .iter()
            .filter(|(s, _)| self.in_window(*s, now_ms))
        {
            add_slots(sum, counts);
        }
    }
}

/// `counts` laid out anew: slot `j` takes old slot `from[j]` (`None`, or
/// a slot beyond `counts`: empty).
fn remapped<E: WindowCounts>(counts: &[E], from: &[Option<usize>]) -> Vec<E> {
    from.iter()
        .map(|f| f.and_then(|k| counts.get(k).cloned()).unwrap_or_default())
        .collect()
}

/// Where each slot of the new models' layout finds its counts in the old
/// one: slot `j` (of `new`, each a model version or `None`) takes the old
/// slot holding the same version, if any (ties: the same slot first).
/// Versions are per slot: `(outcome i, role r)` is slot `r × outcomes + i`
/// for online evaluation, `i` for drift.
pub fn slots_by_version(old: &[Option<String>], new: &[Option<String>]) -> Vec<Option<usize>> {
    new.iter()
        .enumerate()
        .map(|(j, v)| {
            let v = v.as_ref()?;
            if old.get(j).and_then(Option::as_ref) == Some(v) {
                return Some(j);
            }
            old.iter().position(|o| o.as_ref() == Some(v))
        })
        .collect()
}

/// Per outcome, the PSI of a drift window's summed counts against the
/// outcome's model's drift reference (`references`, one per outcome);
/// `None` for an outcome without a reference or with fewer than
/// `min_events` vectors.
pub fn window_psi<'a>(
    sum: &[Option<ModelDriftCounts>],
    references: impl IntoIterator<Item = Option<&'a DriftReference>>,
    min_events: u64,
) -> Vec<Option<DriftPsi>> {
    references
        .into_iter()
        .enumerate()
        .map(|(i, reference)| {
            let counts = sum.get(i)?.as_ref()?;
            if counts.events < min_events.max(1) {
                return None;
            }
            counts.psi(reference?)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR_MS: i64 = 3_600_000;

    fn eval(sessions: usize, p: f64) -> OutcomeEvalCounts {
        let mut c = OutcomeEvalCounts::default();
        for k in 0..sessions {
            c.observe(p, k % 2 == 0);
        }
        c
    }

    fn sessions(w: &CommittedWindow<OutcomeEvalCounts>, now_ms: i64) -> Vec<u64> {
        w.sum(now_ms).iter().map(|c| c.sessions()).collect()
    }

    #[test]
    fn a_promotion_moves_the_challengers_counts_to_the_champion_role() {
        let v = |s: &str| Some(s.to_owned());
        // Outcomes a and b; a has champion A1 and challenger A2, b only B1.
        let old = [v("A1"), v("B1"), v("A2"), None];
        // A2 promoted: A2 champion, A1 challenger; b unchanged.
        let new = [v("A2"), v("B1"), v("A1"), None];
        let from = slots_by_version(&old, &new);
        assert_eq!(from, vec![Some(2), Some(1), Some(0), None]);
        let t0 = 10 * HOUR_MS;
        let mut w = CommittedWindow::new(Duration::from_secs(3600));
        w.add(
            t0,
            &[eval(10, 0.2), eval(20, 0.3), eval(30, 0.4), eval(0, 0.5)],
        );
        w.remap(&from);
        assert_eq!(sessions(&w, t0), vec![30, 20, 10, 0]);
        // A retrained model (a new version) starts empty.
        let retrained = [v("A3"), v("B1"), v("A1"), None];
        w.remap(&slots_by_version(&new, &retrained));
        assert_eq!(sessions(&w, t0), vec![0, 20, 10, 0]);
    }

    #[test]
    fn buckets_are_aligned_on_the_clock_and_expire_a_window_later() {
        let mut w = CommittedWindow::new(Duration::from_secs(3600));
        let five_min = 300_000;
        let t0 = 10 * HOUR_MS + 7_000;
        // Two commits in one five-minute bucket, one in the next.
        assert_eq!(w.add(t0, &[eval(2, 0.5)]), Some(10 * HOUR_MS));
        assert_eq!(w.add(t0 + 1_000, &[eval(4, 0.5)]), Some(10 * HOUR_MS));
        assert_eq!(
            w.add(t0 + five_min, &[eval(8, 0.5)]),
            Some(10 * HOUR_MS + five_min)
        );
        // Nothing to add: no bucket.
        assert_eq!(w.add(t0, &[eval(0, 0.5)]), None);
        // A clock that went back adds to the newest bucket.
        assert_eq!(
            w.add(t0 - HOUR_MS, &[eval(1, 0.5)]),
            Some(10 * HOUR_MS + five_min)
        );
        assert_eq!(sessions(&w, t0 + five_min), vec![15]);
        assert_eq!(w.bucket(10 * HOUR_MS).map(|c| c[0].sessions()), Some(6));
        // An hour after its start the first bucket is out of the sum, and
        // expiring names it once.
        assert_eq!(sessions(&w, 11 * HOUR_MS), vec![9]);
        assert_eq!(w.expire(11 * HOUR_MS), vec![10 * HOUR_MS]);
        assert_eq!(w.expire(11 * HOUR_MS), Vec::<i64>::new());
        assert_eq!(
            w.starts().collect::<Vec<_>>(),
            vec![10 * HOUR_MS + five_min]
        );
        // A restored bucket takes its place in order, and replaces one
        // with the same start.
        w.put(10 * HOUR_MS + 2 * five_min, vec![eval(3, 0.5)]);
        w.put(10 * HOUR_MS + five_min, vec![eval(1, 0.5)]);
        assert_eq!(
            w.starts().collect::<Vec<_>>(),
            vec![10 * HOUR_MS + five_min, 10 * HOUR_MS + 2 * five_min]
        );
        assert_eq!(sessions(&w, 11 * HOUR_MS), vec![4]);
        w.remove(10 * HOUR_MS + five_min);
        assert_eq!(sessions(&w, 11 * HOUR_MS), vec![3]);
    }

    /// A one-feature reference: the feature is 0..10 evenly, the score
    /// 0..1 evenly.
    fn reference() -> DriftReference {
        let rows: Vec<[f32; 1]> = (0..1000).map(|i| [(i % 10) as f32]).collect();
        let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
        DriftReference::from_rows(rows.len(), 1, |i| &rows[i][..], &scores, |_| true)
    }

    /// `n` vectors whose feature is `value` and score `score`.
    fn counts(
        r: &DriftReference,
        n: usize,
        value: f32,
        score: f64,
    ) -> Vec<Option<ModelDriftCounts>> {
        let mut c = ModelDriftCounts::new(r);
        let nonzero: &[u32] = if value == 0.0 { &[] } else { &[0] };
        for _ in 0..n {
            c.observe(r, &[value], nonzero, score);
        }
        vec![Some(c)]
    }

    #[test]
    fn the_window_slides_and_needs_enough_events() {
        let r = reference();
        let t0 = 10 * HOUR_MS;
        let mut w = CommittedWindow::new(Duration::from_secs(3600));
        // Too few events: no PSI yet.
        w.add(t0, &counts(&r, 50, 9.0, 0.99));
        assert_eq!(window_psi(&w.sum(t0), [Some(&r)], 100), vec![None]);
        // Enough, all in the top bins: shifted.
        w.add(t0 + 60_000, &counts(&r, 50, 9.0, 0.99));
        let shifted = window_psi(&w.sum(t0 + 61_000), [Some(&r)], 100);
        let psi = shifted[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score > 0.25 && psi.features[0] > Some(0.25), "{psi:?}");
        // An hour later those buckets have left the window; traffic like
        // the training population's is stable.
        let later = t0 + HOUR_MS + 120_000;
        for k in 0..10 {
            w.add(
                later,
                &counts(&r, 10, k as f32, (f64::from(k) + 0.5) / 10.0),
            );
        }
        let stable = window_psi(&w.sum(later), [Some(&r)], 100);
        let psi = stable[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score < 1e-9 && psi.features[0] < Some(1e-9), "{psi:?}");
        // An outcome without a reference has no PSI.
        assert_eq!(window_psi(&w.sum(later), [None], 100), vec![None]);
    }
}
