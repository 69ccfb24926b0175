//! Model artifacts and scoring. An artifact is a logistic regression in
//! standardized feature space, stored as JSON so a human can read what a
//! model weighs. Loading validates everything once (format, outcome, feature
//! fingerprint, lengths, finite numbers); scoring is then a dot product with
//! the standardisation folded into the weights, and explanations reuse the
//! unfolded form, choosing reasons a person can act on ([`choose_reasons`])
//! and labelling them from the feature names ([`FeatureLabel`]).
//!
//! Invariant: `probability` is always P(outcome achieved). The training
//! crate is responsible for producing weights with that meaning (linfa's
//! label-ordering pitfall is handled there and pinned by its tests).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::{EngineConfig, Trigger};
use crate::drift::DriftReference;
use crate::error::EngineError;
use crate::features::{FeatureLabel, Vocabulary};
use crate::stable_hash::stable_hash;
use crate::wire::Contribution;
pub use crate::wire::ModelRole;

/// The artifact format tag. v2 added the learned vocabulary and the
/// features built on it; v1 artifacts (hashed buckets) are refused.
pub const MODEL_FORMAT: &str = "propensity-model/v2";

/// A model artifact as stored in `<models dir>/<outcome>.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelArtifact {
    /// Always [`MODEL_FORMAT`].
    pub format: String,
    /// Outcome name.
    pub outcome: String,
    /// Version shown in offers and metrics.
    pub model_version: String,
    /// Fingerprint of the feature spec it was trained under.
    pub feature_fingerprint: String,
    /// The vocabulary learned at training time (the same in every artifact
    /// of one training run); the engine compiles its features with it.
    /// Defaulted only so that a v1 artifact reads far enough to be refused
    /// by its `format`.
    #[serde(default)]
    pub vocabulary: Vocabulary,
    /// Feature names, in vector order.
    pub feature_names: Vec<String>,
    /// Standardisation means.
    pub means: Vec<f64>,
    /// Standardisation deviations (all > 0).
    pub stds: Vec<f64>,
    /// Weights in standardized space.
    pub weights: Vec<f64>,
    /// Intercept: P = sigmoid(intercept + Σ w·(x−μ)/σ).
    pub intercept: f64,
    /// The score distribution of the training population: its 1st, 2nd, …,
    /// 99th percentiles (99 non-decreasing probabilities), so a score can
    /// be placed among the scores of the training events
    /// ([`OutcomeModel::percentile`]). Empty in artifacts trained before
    /// percentiles existed: their scores carry no percentile, and a
    /// `top_percent` trigger cannot use them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub score_percentiles: Vec<f64>,
    /// The training population binned per feature and for the score, for
    /// drift monitoring (see [`crate::drift`]). Absent in artifacts trained
    /// before drift monitoring existed: their models report no PSI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub drift_reference: Option<DriftReference>,
    /// Training metadata (free-form, informational).
    #[serde(default)]
    pub training: serde_json::Value,
}

/// How many percentiles [`ModelArtifact::score_percentiles`] holds.
pub const SCORE_PERCENTILES: usize = 99;

/// The 1st…99th percentiles of `scores` (nearest rank on the sorted
/// scores: the k-th is the score `k %` of the way up), for
/// [`ModelArtifact::score_percentiles`]; empty for no scores. Not-a-number
/// scores are left out.
pub fn score_percentiles(scores: &[f64]) -> Vec<f64> {
    let mut sorted: Vec<f64> = scores.iter().copied().filter(|s| !s.is_nan()).collect();
    if sorted.is_empty() {
        return Vec::new();
    }
    sorted.sort_unstable_by(f64::total_cmp);
    let last = (sorted.len() - 1) as f64;
    (1..=SCORE_PERCENTILES)
        .map(|k| sorted[(k as f64 / 100.0 * last).round() as usize])
        .collect()
}

impl ModelArtifact {
    /// A version derived from the parameters, so identical models share a
    /// version and any retrain that changes a weight gets a new one.
    pub fn derive_version(outcome: &str, weights: &[f64], intercept: f64) -> String {
        let mut bytes = Vec::with_capacity(weights.len() * 8 + 8);
        for w in weights.iter().chain(std::iter::once(&intercept)) {
            bytes.extend_from_slice(&w.to_le_bytes());
        }
        format!("{outcome}-{:012x}", stable_hash(&bytes) >> 16)
    }
}

/// A validated model ready to score.
#[derive(Debug, Clone)]
pub struct OutcomeModel {
    /// Version string.
    pub version: String,
    /// Weights divided by σ (for the fast path).
    folded_weights: Vec<f32>,
    /// Whether every folded weight is finite, so that `w × 0` is `±0` and
    /// zero features may be skipped (see [`OutcomeModel::probability_sparse`]).
    all_finite: bool,
    /// Intercept with the means folded in.
    folded_bias: f64,
    /// The intercept in standardized space.
    intercept: f64,
    weights: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
    /// Per feature: a poor reason for a person (see [`choose_reasons`]),
    /// read from the names once at load so that explaining parses none.
    weak: Vec<bool>,
    /// [`ModelArtifact::score_percentiles`] (empty: none).
    percentiles: Vec<f64>,
    /// [`ModelArtifact::drift_reference`], shared by the copies of the set.
    drift: Option<Arc<DriftReference>>,
}

impl OutcomeModel {
    /// Validates an artifact against the engine config. `origin` (a file
    /// path) appears in errors.
    pub fn from_artifact(
        artifact: &ModelArtifact,
        config: &EngineConfig,
        expected_outcome: &str,
        origin: &str,
    ) -> Result<Self, EngineError> {
        let err = |m: String| EngineError::Model {
            outcome: expected_outcome.to_owned(),
            origin: origin.to_owned(),
            message: m,
        };
        if artifact.format != MODEL_FORMAT {
            let why = if artifact.format == "propensity-model/v1" {
                ": v1 models use the hashed-bucket features this version replaced with learned vocabularies; retrain with `propensity train`"
            } else {
                ""
            };
            return Err(err(format!(
                "field `format` is `{}`, expected `{MODEL_FORMAT}`{why}",
                artifact.format
            )));
        }
        if artifact.outcome != expected_outcome {
            return Err(err(format!(
                "field `outcome` is `{}`: this file belongs to another outcome",
                artifact.outcome
            )));
        }
        let spec = &config.features;
        if artifact.vocabulary != *spec.vocabulary() {
            return Err(err(
                "field `vocabulary` differs from the engine's: the model comes from another training run than the models the engine started with; load all models of one run together (restart the engine to switch runs)".into(),
            ));
        }
        if artifact.feature_fingerprint != spec.fingerprint() {
            return Err(err(format!(
                "field `feature_fingerprint` is `{}` but the configured [features] have fingerprint `{}`: the model was trained with other features; retrain it with this config",
                artifact.feature_fingerprint,
                spec.fingerprint()
            )));
        }
        let dim = spec.dim();
        for (field, len) in [
            ("feature_names", artifact.feature_names.len()),
            ("means", artifact.means.len()),
            ("stds", artifact.stds.len()),
            ("weights", artifact.weights.len()),
        ] {
            if len != dim {
                return Err(err(format!(
                    "field `{field}` has {len} entries, the feature spec has {dim}"
                )));
            }
        }
        if artifact.feature_names.as_slice() != spec.names() {
            return Err(err(
                "field `feature_names` differs from the feature spec".into()
            ));
        }
        for (field, v) in [
            ("means", &artifact.means),
            ("stds", &artifact.stds),
            ("weights", &artifact.weights),
        ] {
            if let Some(i) = v.iter().position(|x| !x.is_finite()) {
                return Err(err(format!("field `{field}[{i}]` is not a finite number")));
            }
        }
        if let Some(i) = artifact.stds.iter().position(|s| *s <= 0.0) {
            return Err(err(format!("field `stds[{i}]` must be positive")));
        }
        if !artifact.intercept.is_finite() {
            return Err(err("field `intercept` is not a finite number".into()));
        }
        if artifact.model_version.is_empty() {
            return Err(err("field `model_version` is empty".into()));
        }
        let q = &artifact.score_percentiles;
        if !q.is_empty() {
            if q.len() != SCORE_PERCENTILES {
                return Err(err(format!(
                    "field `score_percentiles` has {} entries, expected {SCORE_PERCENTILES} (the 1st to the 99th percentile) or none",
                    q.len()
                )));
            }
            if let Some(i) = q.iter().position(|x| !(0.0..=1.0).contains(x)) {
                return Err(err(format!(
                    "field `score_percentiles[{i}]` is not a probability in [0, 1]"
                )));
            }
            if let Some(i) = q.windows(2).position(|w| w[1] < w[0]) {
                return Err(err(format!(
                    "field `score_percentiles[{}]` is below the entry before it: percentiles must not decrease",
                    i + 1
                )));
            }
        }
        if let Some(d) = &artifact.drift_reference {
            d.check(dim)
                .map_err(|e| err(format!("field `drift_reference`: {e}")))?;
        }
        let folded_weights: Vec<f32> = artifact
            .weights
            .iter()
            .zip(&artifact.stds)
            .map(|(w, s)| (w / s) as f32)
            .collect();
        let all_finite = folded_weights.iter().all(|w| w.is_finite());
        let folded_bias = artifact.intercept
            - artifact
                .weights
                .iter()
                .zip(&artifact.means)
                .zip(&artifact.stds)
                .map(|((w, m), s)| w * m / s)
                .sum::<f64>();
        Ok(Self {
            version: artifact.model_version.clone(),
            folded_weights,
            all_finite,
            folded_bias,
            intercept: artifact.intercept,
            weights: artifact.weights.clone(),
            means: artifact.means.clone(),
            stds: artifact.stds.clone(),
            weak: artifact
                .feature_names
                .iter()
                .map(|n| FeatureLabel::new(n).is_weak_reason())
                .collect(),
            percentiles: artifact.score_percentiles.clone(),
            drift: artifact.drift_reference.clone().map(Arc::new),
        })
    }

    /// The same model (standardisation, percentiles, drift reference) with
    /// other weights and intercept in standardized space, under `version`:
    /// what an adaptive model scores with after an update. Non-finite
    /// numbers are taken as 0, so a learner cannot make a model that
    /// scores NaN.
    pub fn with_weights(&self, version: &str, weights: &[f64], intercept: f64) -> Self {
        let mut model = self.clone();
        model.version = version.to_owned();
        model.set_weights(weights, intercept);
        model
    }

    /// Replaces the weights and intercept in place (see
    /// [`OutcomeModel::with_weights`]), folding them again; allocates
    /// nothing.
    pub fn set_weights(&mut self, weights: &[f64], intercept: f64) {
        let finite = |x: f64| if x.is_finite() { x } else { 0.0 };
        for (i, w) in self.weights.iter_mut().enumerate() {
            *w = finite(weights.get(i).copied().unwrap_or(0.0));
        }
        self.intercept = finite(intercept);
        for ((f, w), s) in self
            .folded_weights
            .iter_mut()
            .zip(&self.weights)
            .zip(&self.stds)
        {
            *f = (w / s) as f32;
        }
        self.all_finite = self.folded_weights.iter().all(|w| w.is_finite());
        self.folded_bias = self.intercept
            - self
                .weights
                .iter()
                .zip(&self.means)
                .zip(&self.stds)
                .map(|((w, m), s)| w * m / s)
                .sum::<f64>();
    }

    /// Weights in standardized space, in feature order.
    pub fn weights(&self) -> &[f64] {
        &self.weights
    }

    /// The intercept in standardized space.
    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Standardisation means and deviations, in feature order.
    pub fn standardisation(&self) -> (&[f64], &[f64]) {
        (&self.means, &self.stds)
    }

    /// The training population's binned distribution, for drift
    /// monitoring; `None` when the artifact has none.
    pub fn drift_reference(&self) -> Option<&Arc<DriftReference>> {
        self.drift.as_ref()
    }

    /// Where `probability` falls among the training population's scores:
    /// how many of its 1st…99th percentiles are at or below it (0 to 99),
    /// so a score in the top 10 % of the training events has percentile 90
    /// or more. `None` when the artifact has no score distribution.
    pub fn percentile(&self, probability: f64) -> Option<u8> {
        if self.percentiles.is_empty() {
            return None;
        }
        Some(self.percentiles.partition_point(|q| *q <= probability) as u8)
    }

    /// Whether the artifact carried a score distribution.
    pub fn has_percentiles(&self) -> bool {
        !self.percentiles.is_empty()
    }

    /// P(outcome achieved) for a feature vector.
    pub fn probability(&self, features: &[f32]) -> f64 {
        let mut z = self.folded_bias;
        for (w, x) in self.folded_weights.iter().zip(features) {
            z += f64::from(*w) * f64::from(*x);
        }
        sigmoid(z)
    }

    /// [`OutcomeModel::probability`] over the non-zero features only:
    /// `nonzero` must list, in increasing order, every index whose feature
    /// is not `±0` (extra indices are harmless). Feature vectors are mostly
    /// zeros (one-hot groups, counters of things that did not happen), so
    /// this is a few times less work.
    ///
    /// The result has the same bits as the dense sum: the terms are added
    /// in the same order, and a skipped term `w × ±0` is `±0` (weights are
    /// finite, else the dense path is taken), which leaves the running sum
    /// unchanged except that `-0 + +0 = +0`; a zero sum gives 0.5 either
    /// way and any later non-zero term erases the sign of a zero.
    pub fn probability_sparse(&self, features: &[f32], nonzero: &[u32]) -> f64 {
        if !self.all_finite {
            return self.probability(features);
        }
        let mut z = self.folded_bias;
        for &i in nonzero {
            let i = i as usize;
            if let (Some(w), Some(x)) = (self.folded_weights.get(i), features.get(i)) {
                z += f64::from(*w) * f64::from(*x);
            }
        }
        sigmoid(z)
    }

    /// Up to `n` reasons for the score of `features`: the contributions
    /// `w·(x−μ)/σ` with the largest absolute values, chosen by
    /// [`choose_reasons`] (an `other` bucket or a time-of-day/year circle
    /// gives way to a named feature at least half as strong), each with its
    /// value in the feature's own units and a label. Deterministic (ties by
    /// feature order); runs per offer, and allocates nothing per feature.
    pub fn explain(&self, features: &[f32], names: &[String], n: usize) -> Vec<Contribution> {
        let parts = self.contributions(features).enumerate();
        choose_reasons(parts, &self.weak, n)
            .into_iter()
            .map(|(i, c)| {
                let x = features.get(i).copied().unwrap_or(0.0);
                let name = names.get(i).map_or("", String::as_str);
                let f = FeatureLabel::new(name);
                Contribution {
                    feature: name.to_owned(),
                    value: round6(f.own_value(x)),
                    contribution: round6(c),
                    label: f.label(x),
                }
            })
            .collect()
    }

    /// Up to `n` reasons why the probability fell from the score of
    /// `before` to that of `now`, `gap_secs` later (a `falls_to` offer):
    /// the features whose contribution fell, most first, chosen by
    /// [`choose_reasons`] on the size of the fall. Each reason carries the
    /// feature's value and contribution now (the same quantities as
    /// [`OutcomeModel::explain`]) and a label saying what changed ("last on
    /// product pages 6 min ago"). When no contribution fell (the vectors
    /// are equal), the reasons of `now` as [`OutcomeModel::explain`] gives
    /// them.
    pub fn explain_fall(
        &self,
        before: &[f32],
        now: &[f32],
        names: &[String],
        gap_secs: f64,
        n: usize,
    ) -> Vec<Contribution> {
        // The change of w·(x−μ)/σ is w·(x_now − x_before)/σ; only falls
        // explain a fall (rises are reported as 0 and never chosen).
        let falls = self
            .weights
            .iter()
            .zip(&self.stds)
            .zip(now.iter().zip(before))
            .map(|((w, s), (x, b))| (w * (f64::from(*x) - f64::from(*b)) / s).min(0.0))
            .enumerate()
            .filter(|(_, d)| *d < 0.0);
        let picked = choose_reasons(falls, &self.weak, n);
        if picked.is_empty() {
            return self.explain(now, names, n);
        }
        picked
            .into_iter()
            .map(|(i, _)| {
                let x = now.get(i).copied().unwrap_or(0.0);
                let b = before.get(i).copied().unwrap_or(0.0);
                let name = names.get(i).map_or("", String::as_str);
                let f = FeatureLabel::new(name);
                Contribution {
                    feature: name.to_owned(),
                    value: round6(f.own_value(x)),
                    contribution: round6(self.contribution(i, x)),
                    label: f.change_label(b, x, gap_secs),
                }
            })
            .collect()
    }

    /// `w·(x−μ)/σ` of every feature, in feature order.
    fn contributions<'a>(&'a self, features: &'a [f32]) -> impl Iterator<Item = f64> + 'a {
        self.weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .zip(features)
            .map(|(((w, m), s), x)| w * (f64::from(*x) - m) / s)
    }

    /// `w·(x−μ)/σ` of feature `i` at vector value `x` (0 outside the model).
    fn contribution(&self, i: usize, x: f32) -> f64 {
        match (self.weights.get(i), self.means.get(i), self.stds.get(i)) {
            (Some(w), Some(m), Some(s)) => w * (f64::from(x) - m) / s,
            _ => 0.0,
        }
    }
}

/// Chooses up to `n` reasons from `(feature index, size)` pairs given in
/// increasing index order; `weak[i]` marks the features that are poor
/// reasons for a person ([`FeatureLabel::is_weak_reason`]: an `other`
/// bucket, which names nothing the reader can act on, or a sine/cosine of
/// the time, which names no moment on its own).
///
/// The rule: rank by |size|, larger first, ties by lower index (a total
/// order, so the choice is deterministic). Each slot takes the best
/// remaining named feature, unless the best remaining weak feature is more
/// than twice as large in |size| (or no named one is left): a weak feature
/// is never chosen while a named feature explains at least half as much,
/// and is chosen when it is alone or dominates.
///
/// Cost: one pass keeping the best `n` of each kind (insertion into lists
/// of at most `n + 1`), then a merge; the two lists are the only
/// allocations.
pub fn choose_reasons(
    parts: impl Iterator<Item = (usize, f64)>,
    weak: &[bool],
    n: usize,
) -> Vec<(usize, f64)> {
    use std::cmp::Ordering;
    // "a before b": larger |size| first, then lower index.
    let before = |a: &(usize, f64), b: &(usize, f64)| {
        b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)) == Ordering::Less
    };
    let keep = |top: &mut Vec<(usize, f64)>, part: (usize, f64)| {
        let at = top
            .iter()
            .position(|t| before(&part, t))
            .unwrap_or(top.len());
        if at < n {
            top.insert(at, part);
            top.truncate(n);
        }
    };
    let mut named: Vec<(usize, f64)> = Vec::with_capacity(n + 1);
    let mut weaks: Vec<(usize, f64)> = Vec::with_capacity(n + 1);
    for part in parts {
        if weak.get(part.0).copied().unwrap_or(false) {
            keep(&mut weaks, part);
        } else {
            keep(&mut named, part);
        }
    }
    let mut out = Vec::with_capacity(n);
    let (mut a, mut b) = (named.iter().peekable(), weaks.iter().peekable());
    while out.len() < n {
        let take_weak = match (a.peek(), b.peek()) {
            (None, None) => break,
            (Some(_), None) => false,
            (None, Some(_)) => true,
            (Some(x), Some(y)) => (2.0 * x.1.abs()).total_cmp(&y.1.abs()) == Ordering::Less,
        };
        let next = if take_weak { b.next() } else { a.next() };
        out.extend(next.copied());
    }
    out
}

/// Rounds for output: six decimals are plenty for humans and keep offers
/// compact; it is deterministic, so byte-identical output is unaffected.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// The logistic function, stable for large |z|.
pub fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Scores the filled `lanes` (outcome index, model; filled from the
/// first) into `out`; empty lanes compute the first model's sum again and
/// are discarded.
fn score_lanes(
    lanes: &[Option<(usize, &OutcomeModel)>; 4],
    features: &[f32],
    nonzero: &[u32],
    out: &mut [Option<f64>],
) {
    let Some((_, first)) = lanes[0] else {
        return;
    };
    if lanes.iter().flatten().any(|(_, m)| !m.all_finite) {
        for (i, m) in lanes.iter().flatten() {
            if let Some(slot) = out.get_mut(*i) {
                *slot = Some(m.probability_sparse(features, nonzero));
            }
        }
        return;
    }
    let m = lanes.map(|lane| lane.map_or(first, |(_, m)| m));
    let mut z = m.map(|m| m.folded_bias);
    for &i in nonzero {
        let i = i as usize;
        let Some(x) = features.get(i) else { continue };
        let x = f64::from(*x);
        for (z, m) in z.iter_mut().zip(&m) {
            if let Some(w) = m.folded_weights.get(i) {
                *z += f64::from(*w) * x;
            }
        }
    }
    for (lane, z) in lanes.iter().zip(z) {
        if let Some((i, _)) = lane {
            if let Some(slot) = out.get_mut(*i) {
                *slot = Some(sigmoid(z));
            }
        }
    }
}

/// One model slot per configured outcome (in config order), and one
/// challenger slot per outcome. Shared behind an `Arc` so a hot reload
/// swaps the whole set atomically, champions and challengers together: a
/// promotion (the two artifacts exchanged) is seen by every event at once.
///
/// A challenger is scored in shadow ([`ModelSet::challenger_probabilities`]):
/// its scores are published with `role = "challenger"` and evaluated
/// online, and nothing else reads them, so it never makes an offer.
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    models: Vec<Option<OutcomeModel>>,
    /// Empty when no outcome has a challenger (so the hot path checks one
    /// length), else one slot per outcome.
    challengers: Vec<Option<OutcomeModel>>,
}

impl ModelSet {
    /// No models: the engine tracks sessions and features but scores
    /// nothing (used to collect training data).
    pub fn empty(outcomes: usize) -> Arc<Self> {
        Arc::new(Self {
            models: vec![None; outcomes],
            challengers: Vec::new(),
        })
    }

    /// Builds a set from `(origin, artifact)` pairs, one per configured
    /// outcome, in config order; every outcome must have a model.
    pub fn from_artifacts(
        config: &EngineConfig,
        artifacts: Vec<(String, ModelArtifact)>,
    ) -> Result<Arc<Self>, EngineError> {
        Self::with_challengers(config, artifacts, Vec::new())
    }

    /// [`ModelSet::from_artifacts`] with challengers: `(origin, artifact)`
    /// pairs, at most one per outcome, each validated as a champion is (a
    /// promotion must never leave a model the engine cannot serve). A
    /// challenger of an outcome without a champion is refused: there is
    /// nothing to compare it with.
    pub fn with_challengers(
        config: &EngineConfig,
        champions: Vec<(String, ModelArtifact)>,
        challengers: Vec<(String, ModelArtifact)>,
    ) -> Result<Arc<Self>, EngineError> {
        let models = validated_slots(config, champions)?;
        let challengers = if challengers.is_empty() {
            Vec::new()
        } else {
            let origins: Vec<String> = challengers.iter().map(|(o, _)| o.clone()).collect();
            let slots = validated_slots(config, challengers)?;
            for (i, slot) in slots.iter().enumerate() {
                if slot.is_some() && models[i].is_none() {
                    let name = &config.outcomes[i].name;
                    return Err(EngineError::Model {
                        outcome: name.clone(),
                        origin: origins.join(", "),
                        message: format!(
                            "a challenger for `{name}`, which has no champion model to run beside: train the outcome first"
                        ),
                    });
                }
            }
            slots
        };
        Ok(Arc::new(Self {
            models,
            challengers,
        }))
    }

    /// How many outcomes the set has a slot for (with a model or not).
    pub fn outcomes(&self) -> usize {
        self.models.len()
    }

    /// The model of outcome `idx`.
    pub fn get(&self, idx: usize) -> Option<&OutcomeModel> {
        self.models.get(idx).and_then(Option::as_ref)
    }

    /// [`OutcomeModel::probability_sparse`] of every outcome `i` that has a
    /// model and for which `skip(i)` is false, into `out[i]` (other slots
    /// are left as they are). The models are scored four at a time: their
    /// sums are independent chains of additions the CPU overlaps, and each
    /// is still added in index order, so every probability has the same
    /// bits as when scored alone.
    pub fn probabilities_sparse(
        &self,
        features: &[f32],
        nonzero: &[u32],
        skip: impl Fn(usize) -> bool,
        out: &mut [Option<f64>],
    ) {
        score_slots(&self.models, features, nonzero, skip, out);
    }

    /// Whether any model is loaded.
    pub fn is_empty(&self) -> bool {
        self.models.iter().all(Option::is_none)
    }

    /// Version per outcome slot.
    pub fn versions(&self) -> Vec<Option<&str>> {
        self.models
            .iter()
            .map(|m| m.as_ref().map(|m| m.version.as_str()))
            .collect()
    }

    /// This set with `challengers` (one slot per outcome) beside its
    /// champions, already validated (benchmarks and tests; files go through
    /// [`ModelSet::with_challengers`]).
    pub fn shadowed_by(&self, challengers: Vec<Option<OutcomeModel>>) -> Arc<Self> {
        Arc::new(Self {
            models: self.models.clone(),
            challengers,
        })
    }

    /// The outcomes whose challenger in `previous` is the champion here
    /// (a promotion, seen by a reload): the outcome's champion version is
    /// `previous`'s challenger version.
    pub fn promoted_since(&self, previous: &ModelSet) -> Vec<usize> {
        (0..self.outcomes())
            .filter(|&i| match (self.get(i), previous.challenger(i)) {
                (Some(now), Some(was)) => {
                    now.version == was.version
                        && previous.get(i).is_none_or(|old| old.version != now.version)
                }
                _ => false,
            })
            .collect()
    }

    /// Whether any outcome has a challenger.
    pub fn has_challengers(&self) -> bool {
        !self.challengers.is_empty()
    }

    /// The challenger of outcome `idx`.
    pub fn challenger(&self, idx: usize) -> Option<&OutcomeModel> {
        self.challengers.get(idx).and_then(Option::as_ref)
    }

    /// The model of outcome `idx` in `role`.
    pub fn in_role(&self, idx: usize, role: ModelRole) -> Option<&OutcomeModel> {
        match role {
            ModelRole::Champion => self.get(idx),
            ModelRole::Challenger => self.challenger(idx),
        }
    }

    /// [`ModelSet::probabilities_sparse`] for the challengers: the same
    /// sums (so a challenger that is a copy of its champion gives the same
    /// bits), into `out[i]` for every outcome with a challenger that `skip`
    /// keeps.
    pub fn challenger_probabilities(
        &self,
        features: &[f32],
        nonzero: &[u32],
        skip: impl Fn(usize) -> bool,
        out: &mut [Option<f64>],
    ) {
        score_slots(&self.challengers, features, nonzero, skip, out);
    }
}

/// Scores every model of `slots` whose index `skip` keeps into `out`, four
/// at a time (see [`ModelSet::probabilities_sparse`]).
fn score_slots(
    slots: &[Option<OutcomeModel>],
    features: &[f32],
    nonzero: &[u32],
    skip: impl Fn(usize) -> bool,
    out: &mut [Option<f64>],
) {
    let mut lanes: [Option<(usize, &OutcomeModel)>; 4] = [None; 4];
    let mut k = 0;
    for (i, model) in slots.iter().enumerate() {
        let Some(model) = model else { continue };
        if skip(i) {
            continue;
        }
        lanes[k] = Some((i, model));
        k += 1;
        if k == lanes.len() {
            score_lanes(&lanes, features, nonzero, out);
            lanes = [None; 4];
            k = 0;
        }
    }
    if k > 0 {
        score_lanes(&lanes, features, nonzero, out);
    }
}

/// One validated model per outcome slot from `(origin, artifact)` pairs.
fn validated_slots(
    config: &EngineConfig,
    artifacts: Vec<(String, ModelArtifact)>,
) -> Result<Vec<Option<OutcomeModel>>, EngineError> {
    let mut models: Vec<Option<OutcomeModel>> = vec![None; config.outcomes.len()];
    for (origin, artifact) in artifacts {
        let idx = config
            .outcome_index(&artifact.outcome)
            .ok_or_else(|| EngineError::Model {
                outcome: artifact.outcome.clone(),
                origin: origin.clone(),
                message: "field `outcome` names an outcome the config does not declare".into(),
            })?;
        let name = &config.outcomes[idx].name;
        let model = OutcomeModel::from_artifact(&artifact, config, name, &origin)?;
        // A `top_percent` trigger reads the model's score distribution:
        // refused here, not silently never firing.
        if let Some(map) = config
            .action_maps
            .iter()
            .find(|m| m.outcome == idx && matches!(m.trigger, Trigger::TopPercent { .. }))
        {
            if !model.has_percentiles() {
                return Err(EngineError::Model {
                    outcome: name.clone(),
                    origin,
                    message: format!(
                        "has no field `score_percentiles`, which action map `{}` needs for its `top_percent` trigger: retrain the model with this version of `propensity train`",
                        map.name
                    ),
                });
            }
        }
        models[idx] = Some(model);
    }
    Ok(models)
}

#[cfg(test)]
mod tests;
