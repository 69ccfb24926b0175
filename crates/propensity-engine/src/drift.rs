//! Drift: how far the traffic a model scores has moved from the traffic it
//! was trained on. An artifact carries a [`DriftReference`]: per feature,
//! and for the score, the training population binned at its deciles. The
//! engine counts the vectors and scores it sees into the same bins
//! ([`DriftCounts`]), and the population stability index (PSI) compares
//! the two distributions:
//!
//! PSI = Σ over bins (live share − training share) · ln(live share / training share)
//!
//! with both shares floored at [`SHARE_FLOOR`] so that an empty bin gives
//! a large but finite value. Customary reading: below 0.1 stable, 0.1–0.25
//! a shift worth a look, above 0.25 a population the model was not trained
//! for.
//!
//! Invariants kept here:
//! - Bin `k` holds the values `v` with `edges[k-1] < v <= edges[k]` (the
//!   first bin is unbounded below, the last above); edges are strictly
//!   increasing, so ties in the training population (a count that is 0 in
//!   most sessions) fall into one bin and its share says how many there
//!   were, instead of splitting a tie across deciles.
//! - Counting is exact and order-free: the same vectors give the same
//!   counts whatever order they come in or however they are split across
//!   engines (counts add), so an offline computation over the same rows
//!   gives the same PSI as the engines did.
//! - A feature binned into a single bin (no edges) is not monitored: the
//!   time of day, week and year, whose window of an hour sees one hour,
//!   would always look shifted. Its PSI is `None`.
//! - One event in [`SAMPLE_EVERY`] is counted, chosen by a hash of its
//!   event id ([`sampled`]): a deterministic choice, the same in every
//!   engine, replay and evaluation, whatever the order or the partitioning
//!   (binning every feature of every model on every event cost the engine
//!   15–20 % of its throughput; a sample of an hour of traffic is still
//!   thousands of vectors).
//! - A feature that is 0 costs nothing per event: only non-zero entries
//!   are placed in bins, and the zeros are the events not placed, added to
//!   the bin of 0 when a PSI is computed.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::sparse_counts::SparseCounts;

/// One event in this many is counted for drift.
pub const SAMPLE_EVERY: u64 = 8;

/// Whether the event whose id hashes to `id_hash`
/// ([`crate::stable_hash::stable_hash`] of the id's bytes) is counted for
/// drift. The hash's top bits, so the choice is independent of the low
/// bits other uses of the same hash read.
pub fn sampled_hash(id_hash: u64) -> bool {
    (id_hash >> 32) % SAMPLE_EVERY == 0
}

/// Whether the event with id `event_id` is counted for drift.
pub fn sampled(event_id: &str) -> bool {
    sampled_hash(crate::stable_hash::stable_hash(event_id.as_bytes()))
}

/// How many quantiles cut the training population into bins (deciles).
pub const DRIFT_BINS: usize = 10;

/// The floor of a bin's share in the PSI (an empty bin would be infinite).
pub const SHARE_FLOOR: f64 = 1e-4;

/// One quantity of the training population, binned.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Binned {
    /// Upper bounds of every bin but the last, strictly increasing.
    pub edges: Vec<f64>,
    /// The share of the population in each bin (`edges.len() + 1` values,
    /// summing to 1).
    pub shares: Vec<f64>,
}

impl Binned {
    /// Bins `values` at their deciles (ties merged, NaN ignored).
    pub fn from_values(values: &[f64]) -> Self {
        let mut sorted: Vec<f64> = values.iter().copied().filter(|v| !v.is_nan()).collect();
        sorted.sort_unstable_by(f64::total_cmp);
        let edges = decile_edges(&sorted);
        let mut counts = vec![0u64; edges.len() + 1];
        for v in &sorted {
            counts[bin_of(&edges, *v)] += 1;
        }
        Self::from_counts(edges, &counts)
    }

    /// Edges and the population's count in each bin.
    fn from_counts(edges: Vec<f64>, counts: &[u64]) -> Self {
        let n = counts.iter().sum::<u64>().max(1) as f64;
        Self {
            shares: counts.iter().map(|c| *c as f64 / n).collect(),
            edges,
        }
    }

    /// A quantity that is not monitored: one bin holding everything.
    pub fn unmonitored() -> Self {
        Self {
            edges: Vec::new(),
            shares: vec![1.0],
        }
    }

    /// Whether it is monitored (has more than one bin).
    pub fn is_monitored(&self) -> bool {
        !self.edges.is_empty()
    }

    /// The bin of `v`.
    pub fn bin(&self, v: f64) -> usize {
        bin_of(&self.edges, v)
    }

    /// How many bins there are.
    pub fn bins(&self) -> usize {
        self.edges.len() + 1
    }

    /// The PSI of live `counts` (one per bin) against the training shares;
    /// `None` when nothing was counted or the lengths differ.
    pub fn psi(&self, counts: &[u64]) -> Option<f64> {
        let total: u64 = counts.iter().sum();
        if total == 0 || counts.len() != self.shares.len() {
            return None;
        }
        let psi = counts
            .iter()
            .zip(&self.shares)
            .map(|(c, e)| {
                let a = (*c as f64 / total as f64).max(SHARE_FLOOR);
                let e = e.max(SHARE_FLOOR);
                (a - e) * (a / e).ln()
            })
            .sum();
        Some(psi)
    }

    /// Checks the shape: strictly increasing finite edges, one share per
    /// bin, shares in [0, 1].
    pub fn check(&self) -> Result<(), String> {
        if self.edges.iter().any(|e| !e.is_finite()) || self.edges.windows(2).any(|w| w[0] >= w[1])
        {
            return Err("edges must be finite and strictly increasing".into());
        }
        if self.edges.len() >= DRIFT_BINS {
            return Err(format!(
                "{} edges: at most {} (deciles)",
                self.edges.len(),
                DRIFT_BINS - 1
            ));
        }
        if self.shares.len() != self.edges.len() + 1 {
            return Err(format!(
                "{} shares for {} edges (one more than the edges expected)",
                self.shares.len(),
                self.edges.len()
            ));
        }
        if self.shares.iter().any(|s| !(0.0..=1.0).contains(s)) {
            return Err("shares must lie in [0, 1]".into());
        }
        Ok(())
    }
}

/// The deciles of `sorted` (ascending, no NaN), ties merged.
fn decile_edges(sorted: &[f64]) -> Vec<f64> {
    let mut edges: Vec<f64> = Vec::with_capacity(DRIFT_BINS - 1);
    if let Some(last) = sorted.len().checked_sub(1) {
        for k in 1..DRIFT_BINS {
            let q = sorted[(k * last) / DRIFT_BINS];
            if edges.last().is_none_or(|e| q > *e) {
                edges.push(q);
            }
        }
    }
    edges
}

/// At most this many rows (evenly spaced) place a feature's edges; the
/// shares are then counted over every row.
const EDGE_SAMPLE_ROWS: usize = 65_536;

/// The first `k` with `v <= edges[k]`, or `edges.len()`.
fn bin_of(edges: &[f64], v: f64) -> usize {
    edges.partition_point(|e| *e < v)
}

/// The training population of one model, binned: every feature of the
/// vector, in vector order, and the score.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftReference {
    /// Rows it was computed from.
    pub rows: u64,
    /// Per feature, in vector order.
    pub features: Vec<Binned>,
    /// The model's score (the probability).
    pub score: Binned,
}

impl DriftReference {
    /// Bins `rows` vectors (`row(i)` gives vector `i`, `dim` long) and
    /// their `scores`: each feature's edges are the deciles of at most
    /// [`EDGE_SAMPLE_ROWS`] evenly spaced rows, its shares those of every
    /// row (so the rows themselves have a PSI of exactly 0). Features for
    /// which `monitored` is false get a single bin.
    pub fn from_rows<'a>(
        rows: usize,
        dim: usize,
        row: impl Fn(usize) -> &'a [f32],
        scores: &[f64],
        monitored: impl Fn(usize) -> bool,
    ) -> Self {
        let stride = rows.div_ceil(EDGE_SAMPLE_ROWS).max(1);
        let mut column = Vec::with_capacity(rows.min(EDGE_SAMPLE_ROWS));
        let edges: Vec<Vec<f64>> = (0..dim)
            .map(|j| {
                if !monitored(j) {
                    return Vec::new();
                }
                column.clear();
                column.extend(
                    (0..rows)
                        .step_by(stride)
                        .map(|i| f64::from(row(i).get(j).copied().unwrap_or(0.0)))
                        .filter(|v| !v.is_nan()),
                );
                column.sort_unstable_by(f64::total_cmp);
                decile_edges(&column)
            })
            .collect();
        // Row by row, since that is how the rows are laid out; a zero (most
        // entries) takes its feature's bin of 0 without a search.
        let zero_bins: Vec<usize> = edges.iter().map(|e| bin_of(e, 0.0)).collect();
        let mut counts: Vec<Vec<u64>> = edges.iter().map(|e| vec![0; e.len() + 1]).collect();
        for i in 0..rows {
            for (j, &v) in row(i).iter().enumerate().take(dim) {
                let bin = if v == 0.0 {
                    zero_bins[j]
                } else {
                    bin_of(&edges[j], f64::from(v))
                };
                counts[j][bin] += 1;
            }
        }
        Self {
            rows: rows as u64,
            features: edges
                .into_iter()
                .zip(&counts)
                .map(|(e, c)| {
                    if e.is_empty() {
                        Binned::unmonitored()
                    } else {
                        Binned::from_counts(e, c)
                    }
                })
                .collect(),
            score: Binned::from_values(scores),
        }
    }

    /// Checks every binning against a vector of `dim` features.
    pub fn check(&self, dim: usize) -> Result<(), String> {
        if self.features.len() != dim {
            return Err(format!(
                "{} features binned, the vector has {dim}",
                self.features.len()
            ));
        }
        for (j, b) in self.features.iter().enumerate() {
            b.check().map_err(|e| format!("feature {j}: {e}"))?;
        }
        self.score.check().map_err(|e| format!("score: {e}"))
    }
}

/// Edges per feature in the flat layout: a feature has at most this many.
const EDGE_SLOTS: usize = DRIFT_BINS - 1;

/// Live counts of one model's vectors and scores in its reference's bins.
///
/// Laid out for the hot path (every scored event, every model): each
/// feature's edges sit in a fixed-width slot of one flat array (padded with
/// +∞, which no value exceeds), so a value's bin is the count of edges
/// below it — the same bin as [`Binned::bin`], found by comparisons the
/// CPU runs side by side instead of a search that chases pointers — and
/// the counts are one flat array too.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelDriftCounts {
    /// Vectors counted.
    pub events: u64,
    /// Every feature's edges, [`EDGE_SLOTS`] per feature (shared by the
    /// copies made from one reference).
    edges: Arc<[f64]>,
    /// Per feature, [`DRIFT_BINS`] counts of non-zero values (zeros are
    /// added by [`ModelDriftCounts::feature_counts`]).
    nonzero: Vec<u64>,
    /// The score's bins' counts.
    pub score: Vec<u64>,
}

impl ModelDriftCounts {
    /// Empty counts shaped by `reference`.
    pub fn new(reference: &DriftReference) -> Self {
        let mut edges = vec![f64::INFINITY; reference.features.len() * EDGE_SLOTS];
        for (slot, b) in edges.chunks_mut(EDGE_SLOTS).zip(&reference.features) {
            for (e, x) in slot.iter_mut().zip(&b.edges) {
                *e = *x;
            }
        }
        Self {
            events: 0,
            nonzero: vec![0; reference.features.len() * DRIFT_BINS],
            edges: edges.into(),
            score: vec![0; reference.score.bins()],
        }
    }

    /// Zeroes the counts, keeping their shape and blocks.
    pub fn clear(&mut self) {
        self.events = 0;
        self.nonzero.fill(0);
        self.score.fill(0);
    }

    /// Counts one vector (its values and the indices of its non-zero
    /// entries) and its score, `reference` being the one the counts were
    /// made for.
    pub fn observe(
        &mut self,
        reference: &DriftReference,
        values: &[f32],
        nonzero: &[u32],
        score: f64,
    ) {
        self.events += 1;
        for &j in nonzero {
            let j = j as usize;
            let (Some(edges), Some(v)) = (
                self.edges.get(j * EDGE_SLOTS..(j + 1) * EDGE_SLOTS),
                values.get(j),
            ) else {
                continue;
            };
            let v = f64::from(*v);
            let bin = edges.iter().filter(|e| **e < v).count();
            if let Some(c) = self.nonzero.get_mut(j * DRIFT_BINS + bin) {
                *c += 1;
            }
        }
        if let Some(c) = self.score.get_mut(reference.score.bin(score)) {
            *c += 1;
        }
    }

    /// Adds `other`'s counts (same reference).
    pub fn merge(&mut self, other: &Self) {
        self.events += other.events;
        for (x, y) in self.nonzero.iter_mut().zip(&other.nonzero) {
            *x += y;
        }
        for (x, y) in self.score.iter_mut().zip(&other.score) {
            *x += y;
        }
    }

    /// The stored form of these counts (the reference's edges are not
    /// part of it: [`ModelDriftCounts::from_record`] takes them from the
    /// model's reference again).
    pub fn record(&self) -> DriftCountsRecord {
        DriftCountsRecord {
            events: self.events,
            nonzero: SparseCounts::from_dense(&self.nonzero),
            score: SparseCounts::from_dense(&self.score),
        }
    }

    /// Counts shaped by `reference` holding `record`'s; an error when the
    /// record was made for a reference of another shape.
    pub fn from_record(
        reference: &DriftReference,
        record: &DriftCountsRecord,
    ) -> Result<Self, String> {
        let mut counts = Self::new(reference);
        counts.events = record.events;
        counts.nonzero = record.nonzero.to_dense(counts.nonzero.len())?;
        counts.score = record.score.to_dense(counts.score.len())?;
        Ok(counts)
    }

    /// Feature `j`'s counts per bin, zeros included.
    pub fn feature_counts(&self, reference: &DriftReference, j: usize) -> Vec<u64> {
        let (Some(b), Some(nonzero)) = (
            reference.features.get(j),
            self.nonzero.get(j * DRIFT_BINS..(j + 1) * DRIFT_BINS),
        ) else {
            return Vec::new();
        };
        let mut counts = nonzero[..b.bins().min(DRIFT_BINS)].to_vec();
        let placed: u64 = nonzero.iter().sum();
        if let Some(c) = counts.get_mut(b.bin(0.0)) {
            *c += self.events.saturating_sub(placed);
        }
        counts
    }

    /// The PSI of the score and of every feature (in vector order) against
    /// `reference`; `None` before anything was counted.
    pub fn psi(&self, reference: &DriftReference) -> Option<DriftPsi> {
        if self.events == 0 {
            return None;
        }
        Some(DriftPsi {
            events: self.events,
            score: reference.score.psi(&self.score)?,
            features: (0..reference.features.len())
                .map(|j| {
                    let b = &reference.features[j];
                    if !b.is_monitored() {
                        return None;
                    }
                    Some(b.psi(&self.feature_counts(reference, j)).unwrap_or(0.0))
                })
                .collect(),
        })
    }
}

/// The stored form of [`ModelDriftCounts`]: the counts, not the edges.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DriftCountsRecord {
    events: u64,
    nonzero: SparseCounts,
    score: SparseCounts,
}

/// PSIs of one model's live traffic against its training population.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DriftPsi {
    /// Vectors counted.
    pub events: u64,
    /// The score's PSI.
    pub score: f64,
    /// Each feature's PSI, in vector order (`None`: not monitored).
    pub features: Vec<Option<f64>>,
}

impl DriftPsi {
    /// The `n` features with the largest PSI, largest first (ties by
    /// vector order), as (index, PSI).
    pub fn top_features(&self, n: usize) -> Vec<(usize, f64)> {
        let mut order: Vec<(usize, f64)> = self
            .features
            .iter()
            .enumerate()
            .filter_map(|(j, p)| Some((j, (*p)?)))
            .collect();
        order.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        order.truncate(n);
        order
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deciles_merge_ties_and_shares_count_them() {
        // 70 % zeros, then 1..=30: the zeros are one bin of share 0.7.
        let values: Vec<f64> = (0..100).map(|i| f64::from((i - 69).max(0))).collect();
        let b = Binned::from_values(&values);
        assert_eq!(b.edges[0], 0.0);
        assert!((b.shares[0] - 0.7).abs() < 1e-12, "{b:?}");
        assert!(b.edges.windows(2).all(|w| w[0] < w[1]));
        assert!((b.shares.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        assert_eq!(b.check(), Ok(()));
        // A value on an edge belongs to the bin below it.
        assert_eq!(b.bin(0.0), 0);
        assert_eq!(b.bin(1e-9), 1);
        assert_eq!(b.bin(1e9), b.bins() - 1);
    }

    #[test]
    fn psi_is_zero_on_the_training_shares_and_grows_with_a_shift() {
        let values: Vec<f64> = (0..1000).map(f64::from).collect();
        let b = Binned::from_values(&values);
        let same: Vec<u64> = b
            .shares
            .iter()
            .map(|s| (s * 1000.0).round() as u64)
            .collect();
        assert!(b.psi(&same).expect("counted").abs() < 1e-9);
        // Everything in the top bin: the textbook value by hand.
        let mut shifted = vec![0u64; b.bins()];
        shifted[b.bins() - 1] = 500;
        let by_hand: f64 = b
            .shares
            .iter()
            .enumerate()
            .map(|(k, e)| {
                let a: f64 = if k == b.bins() - 1 { 1.0 } else { SHARE_FLOOR };
                (a - e) * (a / e).ln()
            })
            .sum();
        let psi = b.psi(&shifted).expect("counted");
        assert!((psi - by_hand).abs() < 1e-12, "{psi} vs {by_hand}");
        assert!(psi > 0.25);
        assert_eq!(b.psi(&vec![0; b.bins()]), None);
    }

    #[test]
    fn zeros_are_counted_without_being_placed() {
        let rows: Vec<[f32; 2]> = (0..100)
            .map(|i| [if i % 4 == 0 { i as f32 } else { 0.0 }, (i % 10) as f32])
            .collect();
        let scores: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let reference =
            DriftReference::from_rows(rows.len(), 2, |i| &rows[i][..], &scores, |_| true);
        assert_eq!(reference.check(2), Ok(()));
        let mut live = ModelDriftCounts::new(&reference);
        let mut dense = vec![vec![0u64; 0]; 2];
        for (j, d) in dense.iter_mut().enumerate() {
            *d = vec![0; reference.features[j].bins()];
        }
        for (i, r) in rows.iter().enumerate() {
            let nonzero: Vec<u32> = (0..2).filter(|&j| r[j as usize] != 0.0).collect();
            live.observe(&reference, r, &nonzero, scores[i]);
            for (j, d) in dense.iter_mut().enumerate() {
                d[reference.features[j].bin(f64::from(r[j]))] += 1;
            }
        }
        for (j, d) in dense.iter().enumerate() {
            assert_eq!(&live.feature_counts(&reference, j), d, "feature {j}");
        }
        // The training rows themselves: no drift.
        let psi = live.psi(&reference).expect("counted");
        assert!(psi.score.abs() < 1e-12);
        assert!(psi
            .features
            .iter()
            .all(|p| p.is_some_and(|p| p.abs() < 1e-12)));
        // The stored form gives the same counts back, for a reference of
        // the same shape only.
        let text = serde_json::to_string(&live.record()).expect("json");
        let record: DriftCountsRecord = serde_json::from_str(&text).expect("parses");
        assert_eq!(
            ModelDriftCounts::from_record(&reference, &record).as_ref(),
            Ok(&live)
        );
        let narrower =
            DriftReference::from_rows(rows.len(), 1, |i| &rows[i][..1], &scores, |_| true);
        assert!(ModelDriftCounts::from_record(&narrower, &record).is_err());
        // Counts add.
        let mut twice = live.clone();
        twice.merge(&live);
        assert_eq!(twice.events, 200);
        assert_eq!(
            twice.feature_counts(&reference, 0)[0],
            2 * d0(&live, &reference)
        );
    }

    #[test]
    fn unmonitored_features_have_one_bin_and_no_psi() {
        let rows: Vec<[f32; 2]> = (0..50).map(|i| [i as f32, (i % 7) as f32]).collect();
        let scores = vec![0.5; 50];
        let r = DriftReference::from_rows(rows.len(), 2, |i| &rows[i][..], &scores, |j| j == 0);
        assert!(r.features[0].is_monitored() && !r.features[1].is_monitored());
        assert_eq!(r.features[1], Binned::unmonitored());
        assert_eq!(r.check(2), Ok(()));
        let mut live = ModelDriftCounts::new(&r);
        live.observe(&r, &[3.0, 99.0], &[0, 1], 0.5);
        let psi = live.psi(&r).expect("counted");
        assert!(psi.features[0].is_some());
        assert_eq!(psi.features[1], None);
        assert_eq!(psi.top_features(5).len(), 1);
    }

    fn d0(live: &ModelDriftCounts, reference: &DriftReference) -> u64 {
        live.feature_counts(reference, 0)[0]
    }
}
