//! The committed-work window: counts the engines hand over after each
//! commit (drift counts, see `propensity_engine::drift`; resolved sessions,
//! see `propensity_engine::online_eval`), summed over the last window in
//! buckets, so that monitoring figures describe recent traffic.
//!
//! Invariants kept here:
//! - Only committed work is counted: the pipeline hands counts over after
//!   a successful commit, and an aborted transaction's work is dropped
//!   with the shards that did it, so an event re-processed after an abort
//!   is counted once.
//! - Counts of different models never mix: at a model swap each slot
//!   keeps the counts of the model version it now holds, wherever that
//!   version was before (a promotion moves the challenger's counts to the
//!   champion role), and starts empty for a new version
//!   ([`slots_by_version`], [`CommittedWindow::remap`]).
//! - Time is passed in (`Instant`), so the windowing is tested without
//!   sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use propensity_engine::drift::{DriftPsi, DriftReference, ModelDriftCounts};
use propensity_engine::online_eval::OutcomeEvalCounts;

/// Buckets per window: the window slides by a twelfth of its length.
const BUCKETS: u32 = 12;

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

/// Counts per outcome of the last window, in buckets.
pub struct CommittedWindow<E> {
    window: Duration,
    /// (bucket start, counts per outcome), oldest first.
    buckets: VecDeque<(Instant, Vec<E>)>,
}

impl<E: WindowCounts> CommittedWindow<E> {
    /// An empty window of `window` length.
    pub fn new(window: Duration) -> Self {
        Self {
            window,
            buckets: VecDeque::new(),
        }
    }

    /// Adds the counts per outcome an engine holds at `now` (read, not
    /// taken: the caller clears them, so no commit allocates).
    pub fn add(&mut self, now: Instant, counts: &[E]) {
        if counts.iter().all(E::is_empty) {
            return;
        }
        let bucket = self.window / BUCKETS;
        match self.buckets.back_mut() {
            Some((start, sum)) if now.saturating_duration_since(*start) < bucket => {
                if sum.len() < counts.len() {
                    sum.resize(counts.len(), E::default());
                }
                for (s, c) in sum.iter_mut().zip(counts) {
                    s.add(c);
                }
            }
            _ => self.buckets.push_back((now, counts.to_vec())),
        }
        self.expire(now);
    }

    /// Drops the buckets that started a window or more before `now`.
    fn expire(&mut self, now: Instant) {
        while self
            .buckets
            .front()
            .is_some_and(|(start, _)| now.saturating_duration_since(*start) >= self.window)
        {
            self.buckets.pop_front();
        }
    }

    /// Empties the window.
    pub fn clear(&mut self) {
        self.buckets.clear();
    }

    /// Rearranges the slots after a model swap: slot `j` of the new layout
    /// takes the counts of old slot `from[j]` (`None`: starts empty), so a
    /// model that keeps serving, or moves to another role (a promotion),
    /// keeps its counts, and counts of a model that is gone are dropped.
    pub fn remap(&mut self, from: &[Option<usize>]) {
        for (_, counts) in &mut self.buckets {
            let old = std::mem::take(counts);
            *counts = from
                .iter()
                .map(|f| f.and_then(|k| old.get(k).cloned()).unwrap_or_default())
                .collect();
        }
        self.buckets
            .retain(|(_, counts)| !counts.iter().all(E::is_empty));
    }

    /// The window's counts per outcome as of `now` (empty: nothing in it).
    pub fn sum(&mut self, now: Instant) -> Vec<E> {
        self.expire(now);
        let mut sum: Vec<E> = Vec::new();
        for (_, counts) in &self.buckets {
            if sum.len() < counts.len() {
                sum.resize(counts.len(), E::default());
            }
            for (s, c) in sum.iter_mut().zip(counts) {
                s.add(c);
            }
        }
        sum
    }
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

/// Per outcome, the PSI of a drift window's counts against the outcome's
/// model's drift reference (`references`, one per outcome); `None` for an
/// outcome without a reference or with fewer than `min_events` vectors.
pub fn window_psi<'a>(
    window: &mut CommittedWindow<Option<ModelDriftCounts>>,
    now: Instant,
    references: impl IntoIterator<Item = Option<&'a DriftReference>>,
    min_events: u64,
) -> Vec<Option<DriftPsi>> {
    let sum = window.sum(now);
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

    fn eval(sessions: usize, p: f64) -> OutcomeEvalCounts {
        let mut c = OutcomeEvalCounts::default();
        for k in 0..sessions {
            c.observe(p, k % 2 == 0);
        }
        c
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
        let t0 = Instant::now();
        let mut w = CommittedWindow::new(Duration::from_secs(3600));
        w.add(
            t0,
            &[eval(10, 0.2), eval(20, 0.3), eval(30, 0.4), eval(0, 0.5)],
        );
        w.remap(&from);
        let sessions: Vec<u64> = w.sum(t0).iter().map(|c| c.sessions()).collect();
        assert_eq!(sessions, vec![30, 20, 10, 0]);
        // A retrained model (a new version) starts empty.
        let retrained = [v("A3"), v("B1"), v("A1"), None];
        w.remap(&slots_by_version(&new, &retrained));
        let sessions: Vec<u64> = w.sum(t0).iter().map(|c| c.sessions()).collect();
        assert_eq!(sessions, vec![0, 20, 10, 0]);
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
        let t0 = Instant::now();
        let hour = Duration::from_secs(3600);
        let mut w = CommittedWindow::new(hour);
        // Too few events: no PSI yet.
        w.add(t0, &counts(&r, 50, 9.0, 0.99));
        assert_eq!(window_psi(&mut w, t0, [Some(&r)], 100), vec![None]);
        // Enough, all in the top bins: shifted.
        w.add(t0 + Duration::from_secs(60), &counts(&r, 50, 9.0, 0.99));
        let shifted = window_psi(&mut w, t0 + Duration::from_secs(61), [Some(&r)], 100);
        let psi = shifted[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score > 0.25 && psi.features[0] > Some(0.25), "{psi:?}");
        // An hour later those buckets have left the window; traffic like
        // the training population's is stable.
        let later = t0 + hour + Duration::from_secs(120);
        for k in 0..10 {
            w.add(
                later,
                &counts(&r, 10, k as f32, (f64::from(k) + 0.5) / 10.0),
            );
        }
        let stable = window_psi(&mut w, later, [Some(&r)], 100);
        let psi = stable[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score < 1e-9 && psi.features[0] < Some(1e-9), "{psi:?}");
        // An outcome without a reference has no PSI; a cleared window none.
        assert_eq!(window_psi(&mut w, later, [None], 100), vec![None]);
        w.clear();
        assert_eq!(window_psi(&mut w, later, [Some(&r)], 100), vec![None]);
    }
}
