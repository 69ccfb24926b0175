//! The drift window: the engines' drift counts (see
//! `propensity_engine::drift`) of committed work, summed over the last
//! `drift_window_secs` in buckets, and the population stability index of
//! each model's score and features over that window.
//!
//! Invariants kept here:
//! - Only committed work is counted: the pipeline hands counts over after
//!   a successful commit, and an aborted transaction's work is dropped
//!   with the shards that did it, so an event re-processed after an abort
//!   is counted once.
//! - Counts of different models never mix: a model swap empties the
//!   window (the engines start counting again in the new models' bins).
//! - A PSI is given only over at least `min_events` scored vectors: on a
//!   handful of events every distribution looks shifted.
//! - Time is passed in (`Instant`), so the windowing is tested without
//!   sleeping.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use propensity_engine::drift::{DriftPsi, DriftReference, ModelDriftCounts};

/// Buckets per window: the window slides by a twelfth of its length.
const BUCKETS: u32 = 12;

/// Drift counts of the last window, in buckets.
pub struct DriftWindow {
    window: Duration,
    min_events: u64,
    /// (bucket start, counts per outcome), oldest first.
    buckets: VecDeque<(Instant, Vec<Option<ModelDriftCounts>>)>,
}

impl DriftWindow {
    /// An empty window of `window` length that reports a PSI from
    /// `min_events` scored vectors per model.
    pub fn new(window: Duration, min_events: u64) -> Self {
        Self {
            window,
            min_events,
            buckets: VecDeque::new(),
        }
    }

    /// Adds counts taken from an engine at `now`.
    pub fn add(&mut self, now: Instant, counts: Vec<Option<ModelDriftCounts>>) {
        if counts.iter().flatten().all(|c| c.events == 0) {
            return;
        }
        let bucket = self.window / BUCKETS;
        match self.buckets.back_mut() {
            Some((start, sum)) if now.saturating_duration_since(*start) < bucket => {
                if sum.len() < counts.len() {
                    sum.resize(counts.len(), None);
                }
                for (s, c) in sum.iter_mut().zip(counts) {
                    match (s.as_mut(), c) {
                        (Some(s), Some(c)) => s.merge(&c),
                        (None, c) => *s = c,
                        (Some(_), None) => {}
                    }
                }
            }
            _ => self.buckets.push_back((now, counts)),
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

    /// Empties the window (the models were swapped).
    pub fn clear(&mut self) {
        self.buckets.clear();
    }

    /// Per outcome, the PSI of the window's counts as of `now` against the
    /// outcome's model's drift reference (`references`, one per outcome);
    /// `None` for an outcome without a reference or with fewer than
    /// `min_events` vectors in the window.
    pub fn psi<'a>(
        &mut self,
        now: Instant,
        references: impl IntoIterator<Item = Option<&'a DriftReference>>,
    ) -> Vec<Option<DriftPsi>> {
        self.expire(now);
        references
            .into_iter()
            .enumerate()
            .map(|(i, reference)| {
                let reference = reference?;
                let mut sum: Option<ModelDriftCounts> = None;
                for (_, counts) in &self.buckets {
                    if let Some(c) = counts.get(i).and_then(Option::as_ref) {
                        match sum.as_mut() {
                            Some(s) => s.merge(c),
                            None => sum = Some(c.clone()),
                        }
                    }
                }
                let sum = sum.filter(|s| s.events >= self.min_events.max(1))?;
                sum.psi(reference)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let mut w = DriftWindow::new(hour, 100);
        // Too few events: no PSI yet.
        w.add(t0, counts(&r, 50, 9.0, 0.99));
        assert_eq!(w.psi(t0, [Some(&r)]), vec![None]);
        // Enough, all in the top bins: shifted.
        w.add(t0 + Duration::from_secs(60), counts(&r, 50, 9.0, 0.99));
        let shifted = w.psi(t0 + Duration::from_secs(61), [Some(&r)]);
        let psi = shifted[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score > 0.25 && psi.features[0] > Some(0.25), "{psi:?}");
        // An hour later those buckets have left the window; traffic like
        // the training population's is stable.
        let later = t0 + hour + Duration::from_secs(120);
        for k in 0..10 {
            w.add(later, counts(&r, 10, k as f32, (f64::from(k) + 0.5) / 10.0));
        }
        let stable = w.psi(later, [Some(&r)]);
        let psi = stable[0].as_ref().expect("100 events");
        assert_eq!(psi.events, 100);
        assert!(psi.score < 1e-9 && psi.features[0] < Some(1e-9), "{psi:?}");
        // An outcome without a reference has no PSI; a cleared window none.
        assert_eq!(w.psi(later, [None]), vec![None]);
        w.clear();
        assert_eq!(w.psi(later, [Some(&r)]), vec![None]);
    }
}
