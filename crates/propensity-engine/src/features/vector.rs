//! The feature vector: [`FeatureSpec::compute_into`] turns a session's
//! accumulators into the vector that training records and scoring scores,
//! in reusable buffers ([`FeatureScratch`]).
//!
//! Invariants kept here:
//! - The vector has [`FeatureSpec::dim`] entries in the order of
//!   [`FeatureSpec::names`]; it is zero-filled first, and accumulators of
//!   another layout give the all-zero vector.
//! - [`FeatureScratch::nonzero`] lists exactly the indices of the non-zero
//!   entries, increasing: features are set in index order.
//! - The lookup tables change no bit of the result (see `tables`).

use crate::timestamp::calendar;
use crate::wire::{DeviceCategory, EventKind};

use super::accumulate::Accumulators;
use super::spec::{FeatureSpec, SCALARS, WEEKDAYS};
use super::tables::Tables;
use super::vocabulary::VocabularyField;

/// Buffers reused across [`FeatureSpec::compute_into`] calls: the feature
/// vector and the indices of its non-zero entries.
#[derive(Debug, Clone, Default)]
pub struct FeatureScratch {
    values: Vec<f32>,
    /// Kept at the vector's length; the first `nnz` entries are valid.
    nonzero: Vec<u32>,
    nnz: usize,
}

impl FeatureScratch {
    /// Sets feature `k` (the vector is zero-filled first, so only values
    /// that may be non-zero are set) and lists it when it is non-zero, in
    /// the increasing order the callers keep.
    #[inline]
    fn set(&mut self, k: usize, v: f32) {
        if let Some(o) = self.values.get_mut(k) {
            *o = v;
        }
        if v != 0.0 {
            if let Some(slot) = self.nonzero.get_mut(self.nnz) {
                *slot = k as u32;
                self.nnz += 1;
            }
        }
    }

    /// Sets features `base..base + xs.len()` to `ln_1p` of a run of
    /// counters. Most counters are `+0.0`, whose feature is the `+0.0`
    /// already there: a bit mask of the others is built without branches
    /// and only those are computed (`-0.0` has other bits, so it is
    /// computed, and keeps its sign as `ln_1p` does).
    fn set_ln_1p_run(&mut self, tables: &Tables, base: usize, xs: &[f32]) {
        for (chunk, xs) in xs.chunks(64).enumerate() {
            let mut mask = 0u64;
            for (j, x) in xs.iter().enumerate() {
                mask |= u64::from(x.to_bits() != 0) << j;
            }
            while mask != 0 {
                let j = mask.trailing_zeros() as usize;
                mask &= mask - 1;
                if let Some(x) = xs.get(j) {
                    self.set(base + chunk * 64 + j, tables.ln_1p(*x));
                }
            }
        }
    }

    /// The feature vector of the last computation.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// The indices of its non-zero entries, increasing (see
    /// [`crate::model::OutcomeModel::probability_sparse`]).
    pub fn nonzero(&self) -> &[u32] {
        self.nonzero.get(..self.nnz).unwrap_or_default()
    }

    /// Its non-zero entries as `(index, value)`, increasing: what is kept
    /// of a vector beyond its event (session peaks, learning vectors).
    pub fn nonzero_entries(&self) -> impl Iterator<Item = (u32, f32)> + '_ {
        self.nonzero()
            .iter()
            .map(|&i| (i, self.values.get(i as usize).copied().unwrap_or(0.0)))
    }
}

impl FeatureSpec {
    /// Computes the feature vector of a session after an event into `out`
    /// (resized to [`FeatureSpec::dim`]). `session_start_ms` and
    /// `local_event_ms` give duration and time-of-day. Only unit tests call
    /// this; the engine calls [`FeatureSpec::compute_into`].
    #[cfg(test)]
    pub fn compute(
        &self,
        acc: &Accumulators,
        session_start_ms: i64,
        event_ms: i64,
        local_event_ms: i64,
        out: &mut Vec<f32>,
    ) {
        let mut scratch = FeatureScratch::default();
        self.compute_into(
            acc,
            session_start_ms,
            event_ms,
            local_event_ms,
            &mut scratch,
        );
        out.clear();
        out.extend_from_slice(scratch.values());
    }

    /// Computes the feature vector of a session after an event into
    /// reusable buffers (the vector resized to [`FeatureSpec::dim`]), also
    /// listing the indices of the non-zero features
    /// ([`FeatureScratch::nonzero`]): most features are zero, and scoring
    /// can skip them. The one-hot groups are listed by their single index
    /// rather than by testing every slot. `session_start_ms` and
    /// `local_event_ms` give duration and time-of-day.
    pub fn compute_into(
        &self,
        acc: &Accumulators,
        session_start_ms: i64,
        event_ms: i64,
        local_event_ms: i64,
        scratch: &mut FeatureScratch,
    ) {
        let dim = self.dim();
        scratch.values.clear();
        scratch.values.resize(dim, 0.0);
        scratch.nonzero.resize(dim, 0);
        scratch.nnz = 0;
        let c = &acc.counters;
        if c.len() != self.acc_len {
            return;
        }
        let ncat = self.categories.len() + 1;
        let t = &self.tables;
        let kinds = &c[self.acc_kinds..self.acc_kinds + EventKind::ALL.len()];
        let total = kinds.iter().fold(0.0, |sum, x| sum + x);
        scratch.set_ln_1p_run(t, 0, kinds);
        let mut i = kinds.len();
        scratch.set(i, t.ln_1p(total));
        i += 1;
        // Views, dwell, path and custom buckets and the scalars follow each
        // other in the accumulators exactly as in the vector (see `compile`
        // and `build_names`): one pass over the run.
        let run = &c[self.acc_views..self.acc_scalars + SCALARS.len()];
        scratch.set_ln_1p_run(t, i, run);
        i += run.len();
        scratch.set(
            i,
            t.ln_1p(((event_ms - session_start_ms).max(0)) as f32 / 1000.0),
        );
        scratch.set(i + 1, t.ln_1p(acc.distinct_pages.len() as f32));
        i += 2;
        // Shares of the session's page views by category: what the visitor
        // came for, independent of how long the session is.
        let views = &c[self.acc_views..self.acc_views + ncat];
        let page_views = views.iter().fold(0.0, |sum, x| sum + x);
        if page_views > 0.0 {
            for (k, v) in views.iter().enumerate() {
                if *v != 0.0 {
                    scratch.set(i + k, v / page_views);
                }
            }
        }
        i += ncat;
        let mut onehot = |idx: Option<u16>, n: usize, i: &mut usize| {
            if let Some(k) = idx {
                if (k as usize) < n {
                    scratch.set(*i + k as usize, 1.0);
                }
            }
            *i += n;
        };
        onehot(acc.current_category, ncat, &mut i);
        onehot(
            acc.current_kind.map(u16::from),
            EventKind::ALL.len(),
            &mut i,
        );
        onehot(
            acc.device.map(|d| {
                DeviceCategory::ALL
                    .iter()
                    .position(|x| *x == d)
                    .unwrap_or(0) as u16
            }),
            DeviceCategory::ALL.len(),
            &mut i,
        );
        for (slot, field) in [
            (acc.browser, VocabularyField::Browser),
            (acc.os, VocabularyField::Os),
            (acc.source, VocabularyField::TrafficSource),
            (acc.referrer, VocabularyField::ReferrerHost),
        ] {
            onehot(slot, self.group_len(field), &mut i);
        }
        let when = calendar(local_event_ms);
        let (sin, cos) = t.hour_sin_cos(when.hour);
        scratch.set(i, sin);
        scratch.set(i + 1, cos);
        let (sin, cos) = t.month_sin_cos(when.month);
        scratch.set(i + 2, sin);
        scratch.set(i + 3, cos);
        i += 4;
        scratch.set(i + when.weekday as usize, 1.0);
        i += WEEKDAYS.len();
        scratch.set(i, if when.weekday >= 5 { 1.0 } else { 0.0 });
        debug_assert_eq!(i + 1, dim);
    }
}
