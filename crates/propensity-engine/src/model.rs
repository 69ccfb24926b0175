//! Model artifacts and scoring. An artifact is a logistic regression in
//! standardized feature space, stored as JSON so a human can read what a
//! model weighs. Loading validates everything once (format, outcome, feature
//! fingerprint, lengths, finite numbers); scoring is then a dot product with
//! the standardisation folded into the weights, and explanations reuse the
//! unfolded form.
//!
//! Invariant: `probability` is always P(outcome achieved). The training
//! crate is responsible for producing weights with that meaning (linfa's
//! label-ordering pitfall is handled there and pinned by its tests).

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::EngineConfig;
use crate::error::EngineError;
use crate::stable_hash::stable_hash;
use crate::wire::Contribution;

/// The artifact format tag.
pub const MODEL_FORMAT: &str = "propensity-model/v1";

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
    /// Training metadata (free-form, informational).
    #[serde(default)]
    pub training: serde_json::Value,
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
    /// Intercept with the means folded in.
    folded_bias: f64,
    weights: Vec<f64>,
    means: Vec<f64>,
    stds: Vec<f64>,
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
            return Err(err(format!(
                "field `format` is `{}`, expected `{MODEL_FORMAT}`",
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
        let folded_weights = artifact
            .weights
            .iter()
            .zip(&artifact.stds)
            .map(|(w, s)| (w / s) as f32)
            .collect();
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
            folded_bias,
            weights: artifact.weights.clone(),
            means: artifact.means.clone(),
            stds: artifact.stds.clone(),
        })
    }

    /// P(outcome achieved) for a feature vector.
    pub fn probability(&self, features: &[f32]) -> f64 {
        let mut z = self.folded_bias;
        for (w, x) in self.folded_weights.iter().zip(features) {
            z += f64::from(*w) * f64::from(*x);
        }
        sigmoid(z)
    }

    /// The `n` largest contributions by absolute value (ties by feature
    /// order, so explanations are deterministic).
    pub fn explain(&self, features: &[f32], names: &[String], n: usize) -> Vec<Contribution> {
        let mut parts: Vec<(usize, f64)> = self
            .weights
            .iter()
            .zip(&self.means)
            .zip(&self.stds)
            .zip(features)
            .map(|(((w, m), s), x)| w * (f64::from(*x) - m) / s)
            .enumerate()
            .collect();
        parts.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        parts
            .into_iter()
            .take(n)
            .map(|(i, c)| Contribution {
                feature: names.get(i).cloned().unwrap_or_default(),
                value: round6(f64::from(features[i])),
                contribution: round6(c),
            })
            .collect()
    }
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

/// One model slot per configured outcome (in config order). Shared behind
/// an `Arc` so a hot reload swaps the whole set atomically.
#[derive(Debug, Clone, Default)]
pub struct ModelSet {
    models: Vec<Option<OutcomeModel>>,
}

impl ModelSet {
    /// No models: the engine tracks sessions and features but scores
    /// nothing (used to collect training data).
    pub fn empty(outcomes: usize) -> Arc<Self> {
        Arc::new(Self {
            models: vec![None; outcomes],
        })
    }

    /// Builds a set from `(origin, artifact)` pairs, one per configured
    /// outcome, in config order; every outcome must have a model.
    pub fn from_artifacts(
        config: &EngineConfig,
        artifacts: Vec<(String, ModelArtifact)>,
    ) -> Result<Arc<Self>, EngineError> {
        let mut models = vec![None; config.outcomes.len()];
        for (origin, artifact) in artifacts {
            let idx =
                config
                    .outcome_index(&artifact.outcome)
                    .ok_or_else(|| EngineError::Model {
                        outcome: artifact.outcome.clone(),
                        origin: origin.clone(),
                        message: "field `outcome` names an outcome the config does not declare"
                            .into(),
                    })?;
            let name = &config.outcomes[idx].name;
            models[idx] = Some(OutcomeModel::from_artifact(
                &artifact, config, name, &origin,
            )?);
        }
        Ok(Arc::new(Self { models }))
    }

    /// The model of outcome `idx`.
    pub fn get(&self, idx: usize) -> Option<&OutcomeModel> {
        self.models.get(idx).and_then(Option::as_ref)
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigmoid_is_stable() {
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
        assert!(sigmoid(800.0) <= 1.0 && sigmoid(800.0) > 0.999);
        assert!(sigmoid(-800.0) >= 0.0 && sigmoid(-800.0) < 1e-300);
    }

    #[test]
    fn versions_follow_parameters() {
        let a = ModelArtifact::derive_version("p", &[1.0, 2.0], 0.5);
        assert_eq!(a, ModelArtifact::derive_version("p", &[1.0, 2.0], 0.5));
        assert_ne!(a, ModelArtifact::derive_version("p", &[1.0, 2.5], 0.5));
        assert!(a.starts_with("p-"));
    }
}
