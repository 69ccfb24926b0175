//! Snapshots of the adaptive models (`[adaptive]`) to files: per outcome,
//! the partitions' learners consolidated into one model artifact (their
//! weights averaged, see `propensity_engine::adaptive::consolidate`) over
//! the champion artifact it started from, and every partition's learner
//! state as JSON. A snapshot artifact is an ordinary artifact: it can be
//! installed as a champion or a challenger, and a learner warm-starts
//! from it.

use std::path::Path;

use anyhow::{Context, Result};
use propensity_engine::adaptive::{consolidate, LearnerState};
use propensity_engine::{EngineConfig, ModelArtifact};
use serde::Serialize;
use serde_json::json;

use crate::model_files::{artifact_path, read_artifact};

/// One partition's learner of one outcome, as written to `learners.json`.
#[derive(Debug, Serialize)]
pub struct PartitionLearner {
    /// The partition.
    pub partition: u32,
    /// The outcome.
    pub outcome: String,
    /// Its state.
    pub state: LearnerState,
}

/// The consolidated artifact of one outcome's learners, over its champion
/// artifact `base` (weights, intercept, version and training metadata
/// replaced); `None` without learners.
pub fn snapshot_artifact(
    base: &ModelArtifact,
    learners: &[&propensity_engine::adaptive::Learner],
) -> Option<ModelArtifact> {
    let (weights, intercept, updates) = consolidate(learners)?;
    let mut artifact = base.clone();
    artifact.model_version = ModelArtifact::derive_version(&base.outcome, &weights, intercept);
    artifact.weights = weights;
    artifact.intercept = intercept;
    artifact.training = json!({
        "adaptive": {
            "base_version": base.model_version,
            "partitions": learners.len(),
            "updates": updates,
            "consolidation": "mean of the partitions' weights",
        },
        "base_training": base.training,
    });
    Some(artifact)
}

/// Writes `dir/<outcome>.json` (consolidated) for every learning outcome
/// with learners, and `dir/learners.json` (every partition's state), from
/// `engine`; the base artifacts are read from `models`. Returns the
/// artifacts written.
pub fn write_snapshot(
    engine: &propensity_engine::Engine,
    config: &EngineConfig,
    models: &Path,
    dir: &Path,
) -> Result<Vec<ModelArtifact>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    let mut states = Vec::new();
    for (i, outcome) in config.outcomes.iter().enumerate() {
        let learners = engine.learners(i);
        if learners.is_empty() {
            continue;
        }
        let base = read_artifact(&artifact_path(models, &outcome.name), &outcome.name)?;
        if let Some(artifact) = snapshot_artifact(&base, &learners) {
            let path = dir.join(format!("{}.json", outcome.name));
            std::fs::write(&path, serde_json::to_string_pretty(&artifact)?)
                .with_context(|| format!("cannot write {}", path.display()))?;
            written.push(artifact);
        }
    }
    for p in 0..config.partitions {
        for (outcome, state) in engine.learner_states(p) {
            states.push(PartitionLearner {
                partition: p,
                outcome,
                state,
            });
        }
    }
    let path = dir.join("learners.json");
    std::fs::write(&path, serde_json::to_string_pretty(&states)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(written)
}
