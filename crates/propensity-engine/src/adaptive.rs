//! The adaptive model: a logistic regression that keeps learning from the
//! sessions it resolves, with FTRL-Proximal (`linfa-ftrl`), over the same
//! features as the trained model it starts from.
//!
//! Design (see docs/operations.md "Adaptive model"):
//! - **Space.** It learns in the trained artifact's standardized space,
//!   `(x − μ) / σ` with the artifact's μ and σ, plus a constant 1 for the
//!   intercept, so its weights read like an artifact's and it is written
//!   back as one ([`Learner::weights`]).
//! - **Warm start.** FTRL keeps per weight `z` and `n` (the sum of squared
//!   gradients); its weight is `−(z − sign(z)·l1) / ((β + √n)/α + l2)`
//!   (0 when `|z| ≤ l1`). Starting with `n = prior_sessions` for every
//!   weight and `z` solved from the trained weight makes the first scores
//!   those of the trained model (to f64 rounding), and `prior_sessions`
//!   says how much stream it takes to move them.
//! - **Exactly once.** One update per session and outcome, when the
//!   session resolves (achieved: label 1, with the vector of its last score
//!   before the outcome; ended without it: label 0, with its last vector),
//!   as online evaluation labels it. The engine owns when that happens;
//!   here an update is a pure function of the state and the example, so a
//!   replay of the same records gives the same bits.
//! - **Per partition.** Each partition's engine learns from its own
//!   sessions (one learner per partition and outcome), so its state is part
//!   of that partition's changelog and a restore or a rebalance moves it
//!   with the partition; partitions are consolidated into one artifact on
//!   demand by averaging their weights ([`consolidate`]).

use linfa::dataset::{DatasetBase, Pr};
use linfa_ftrl::Ftrl;
use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use crate::config::AdaptiveConfig;
use crate::error::EngineError;
use crate::model::OutcomeModel;

/// What a learner adds to the version of the model it started from.
pub const VERSION_SUFFIX: &str = "+ftrl";

/// The version a learner warm-started from `base_version` scores under.
pub fn learner_version(base_version: &str) -> String {
    format!("{base_version}{VERSION_SUFFIX}")
}

/// The serializable state of a learner (the changelog keeps it per
/// partition and outcome).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LearnerState {
    /// The version of the trained model it was warm-started from: a state
    /// of another base is not restored (the base was replaced; learning
    /// starts again from the new one).
    pub base_version: String,
    /// Updates applied (resolved sessions learnt from).
    pub updates: u64,
    /// FTRL's `z`, one per feature and the intercept last. Written as the
    /// numbers' IEEE-754 bits: JSON text does not round-trip every f64
    /// through every parser, and a restored learner must be the same bits.
    #[serde(with = "f64_bits")]
    pub z: Vec<f64>,
    /// FTRL's `n`, likewise.
    #[serde(with = "f64_bits")]
    pub n: Vec<f64>,
}

/// `Vec<f64>` as the numbers' bits (`u64`), exact through any JSON parser.
mod f64_bits {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| x.to_bits()))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Ok(Vec::<u64>::deserialize(d)?
            .into_iter()
            .map(f64::from_bits)
            .collect())
    }
}

/// One outcome's adaptive model in one partition.
#[derive(Debug, Clone)]
pub struct Learner {
    ftrl: Ftrl<f64>,
    base_version: String,
    updates: u64,
    /// The current weights as a model to score with.
    model: OutcomeModel,
    /// The standardized example, reused (one row: features, then 1).
    row: Array2<f64>,
}

impl Learner {
    /// A learner starting from `base` (see the module doc on the warm
    /// start).
    pub fn warm_start(base: &OutcomeModel, config: &AdaptiveConfig) -> Result<Self, EngineError> {
        let n0 = config.prior_sessions;
        let scale = (config.beta + n0.sqrt()) / config.alpha + config.l2;
        let z: Vec<f64> = base
            .weights()
            .iter()
            .copied()
            .chain(std::iter::once(base.intercept()))
            .map(|w| {
                if w == 0.0 {
                    0.0
                } else {
                    // weight = (sign(z)·l1 − z) / scale, with sign(z) = −sign(w).
                    -w.signum() * config.l1 - w * scale
                }
            })
            .collect();
        let n = vec![n0; z.len()];
        let state = LearnerState {
            base_version: base.version.clone(),
            updates: 0,
            z,
            n,
        };
        Self::from_state(base, config, &state)
    }

    /// A learner in `state`, over `base`'s standardisation (which must be
    /// the model `state.base_version` names; the caller checks).
    pub fn from_state(
        base: &OutcomeModel,
        config: &AdaptiveConfig,
        state: &LearnerState,
    ) -> Result<Self, EngineError> {
        let dim = base.weights().len() + 1;
        if state.z.len() != dim || state.n.len() != dim {
            return Err(EngineError::AdaptiveState(format!(
                "adaptive state of {} has {} weights, the model has {dim}",
                state.base_version,
                state.z.len()
            )));
        }
        if state.z.iter().chain(&state.n).any(|x| !x.is_finite())
            || state.n.iter().any(|n| *n < 0.0)
        {
            return Err(EngineError::AdaptiveState(format!(
                "adaptive state of {} holds a non-finite or negative number",
                state.base_version
            )));
        }
        // linfa-ftrl builds a model from its parameters only with random
        // `z`; its serde form (ndarray's `{v, dim, data}`) sets them.
        let array = |v: &[f64]| serde_json::json!({"v": 1, "dim": [v.len()], "data": v});
        let ftrl: Ftrl<f64> = serde_json::from_value(serde_json::json!({
            "alpha": config.alpha,
            "beta": config.beta,
            "l1_ratio": config.l1,
            "l2_ratio": config.l2,
            "z": array(&state.z),
            "n": array(&state.n),
        }))
        .map_err(|e| EngineError::AdaptiveState(format!("adaptive state: {e}")))?;
        let current = ftrl.get_weights();
        let (weights, intercept) = split_intercept(&current);
        Ok(Self {
            model: base.with_weights(&learner_version(&state.base_version), weights, intercept),
            ftrl,
            base_version: state.base_version.clone(),
            updates: state.updates,
            row: Array2::zeros((1, dim)),
        })
    }

    /// Its state, for the changelog.
    pub fn state(&self) -> LearnerState {
        LearnerState {
            base_version: self.base_version.clone(),
            updates: self.updates,
            z: self.ftrl.z().to_vec(),
            n: self.ftrl.n().to_vec(),
        }
    }

    /// The model it scores with now.
    pub fn model(&self) -> &OutcomeModel {
        &self.model
    }

    /// The version of the trained model it started from.
    pub fn base_version(&self) -> &str {
        &self.base_version
    }

    /// Updates applied.
    pub fn updates(&self) -> u64 {
        self.updates
    }

    /// The current weights in standardized space and the intercept.
    pub fn weights(&self) -> (Vec<f64>, f64) {
        (self.model.weights().to_vec(), self.model.intercept())
    }

    /// Learns from one resolved session: `features` are the non-zero
    /// entries of the vector of its last score (index, raw value), `label`
    /// whether it achieved the outcome.
    pub fn learn(&mut self, features: &[(u32, f32)], label: bool) {
        let (means, stds) = self.model.standardisation();
        let dim = means.len();
        // Standardize every feature (a zero is −μ/σ, not 0), then the 1.
        let mut raw = vec![0.0f32; dim];
        for &(i, x) in features {
            if let Some(slot) = raw.get_mut(i as usize) {
                *slot = x;
            }
        }
        for (j, ((x, m), s)) in raw.iter().zip(means).zip(stds).enumerate() {
            self.row[[0, j]] = (f64::from(*x) - m) / s;
        }
        self.row[[0, dim]] = 1.0;
        let p = self.model.probability(&raw);
        let dataset = DatasetBase::new(self.row.view(), Array1::from_elem(1, label));
        let probabilities = Array1::from_elem(1, Pr::new(p as f32));
        self.ftrl.update(&dataset, probabilities.view());
        self.updates += 1;
        let current = self.ftrl.get_weights();
        let (weights, intercept) = split_intercept(&current);
        self.model.set_weights(weights, intercept);
    }
}

/// FTRL's weights (features, then the intercept) as (features, intercept).
fn split_intercept(w: &Array1<f64>) -> (&[f64], f64) {
    let all = w.as_slice().unwrap_or_default();
    match all.split_last() {
        Some((intercept, weights)) => (weights, *intercept),
        None => (all, 0.0),
    }
}

/// The weights of several partitions' learners of one outcome, averaged
/// (each partition saw other visitors of the same traffic), with their
/// updates summed: what a snapshot to an artifact writes. `None` for no
/// learners.
pub fn consolidate(learners: &[&Learner]) -> Option<(Vec<f64>, f64, u64)> {
    let first = learners.first()?;
    let (mut sum, mut intercept) = first.weights();
    let mut updates = first.updates;
    for l in &learners[1..] {
        let (w, b) = l.weights();
        for (s, x) in sum.iter_mut().zip(w) {
            *s += x;
        }
        intercept += b;
        updates += l.updates;
    }
    let k = learners.len() as f64;
    Some((
        sum.into_iter().map(|s| s / k).collect(),
        intercept / k,
        updates,
    ))
}
