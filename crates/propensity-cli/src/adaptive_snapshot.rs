//! Snapshots of the adaptive models (`[adaptive]`) to files: per outcome,
//! the partitions' learners consolidated into one model artifact (their
//! weights averaged, see `propensity_engine::adaptive::consolidate`) over
//! the champion artifact it started from, and every partition's learner
//! state as JSON. A snapshot artifact is an ordinary artifact: it can be
//! installed as a champion or a challenger, and a learner warm-starts
//! from it.

use std::path::Path;

use anyhow::{Context, Result};
use propensity_engine::adaptive::{consolidate, Learner, LearnerState};
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
pub fn snapshot_artifact(base: &ModelArtifact, learners: &[&Learner]) -> Option<ModelArtifact> {
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

/// Consolidates one outcome's `learners` over its champion artifact in
/// `models` and writes the result to `out/<outcome>.json`; `None` (nothing
/// written) without learners.
fn write_outcome(
    models: &Path,
    out: &Path,
    outcome: &str,
    learners: &[&Learner],
) -> Result<Option<ModelArtifact>> {
    if learners.is_empty() {
        return Ok(None);
    }
    let base = read_artifact(&artifact_path(models, outcome), outcome)?;
    let Some(artifact) = snapshot_artifact(&base, learners) else {
        return Ok(None);
    };
    write_json(&out.join(format!("{outcome}.json")), &artifact)?;
    Ok(Some(artifact))
}

/// Writes `out/learners.json`: every partition's state, by partition, then
/// outcome in configuration order (both snapshots write the same file for
/// the same states).
fn write_learners(
    out: &Path,
    config: &EngineConfig,
    mut learners: Vec<PartitionLearner>,
) -> Result<()> {
    learners.sort_by_key(|l| (l.partition, config.outcome_index(&l.outcome)));
    write_json(&out.join("learners.json"), &learners)
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    std::fs::write(path, serde_json::to_string_pretty(value)?)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Writes `dir/<outcome>.json` (consolidated) for every learning outcome
/// with learners, and `dir/learners.json` (every partition's state), from
/// `engine` (`replay --adaptive-out`); the base artifacts are read from
/// `models`. Returns the artifacts written.
pub fn write_snapshot(
    engine: &propensity_engine::Engine,
    config: &EngineConfig,
    models: &Path,
    dir: &Path,
) -> Result<Vec<ModelArtifact>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut written = Vec::new();
    for (i, outcome) in config.outcomes.iter().enumerate() {
        written.extend(write_outcome(
            models,
            dir,
            &outcome.name,
            &engine.learners(i),
        )?);
    }
    let states = (0..config.partitions)
        .flat_map(|p| {
            engine
                .learner_states(p)
                .into_iter()
                .map(move |(outcome, state)| PartitionLearner {
                    partition: p,
                    outcome,
                    state,
                })
        })
        .collect();
    write_learners(dir, config, states)?;
    Ok(written)
}

/// What a snapshot from Kafka found and wrote, per learning outcome.
#[derive(Debug, Serialize)]
pub struct OutcomeSnapshot {
    /// The outcome.
    pub outcome: String,
    /// Partitions whose learner of the current champion was consolidated.
    pub partitions: usize,
    /// Their updates, summed.
    pub updates: u64,
    /// Partitions skipped: their learner started from another champion
    /// (replaced since; it starts again from the current one).
    pub skipped_other_base: usize,
    /// The artifact written (`None`: no learner of the current champion).
    pub model_version: Option<String>,
}

/// `propensity models snapshot-adaptive`: reads every partition's latest
/// committed learner state from the changelog topic (read_committed, no
/// group), consolidates each learning outcome's learners of the current
/// champion (in `models`) into an artifact in `out`, and writes
/// `learners.json` beside them.
pub fn snapshot_from_kafka(
    config: &crate::config_file::Config,
    models: &Path,
    out: &Path,
) -> Result<Vec<OutcomeSnapshot>> {
    let served = crate::model_files::load_models(models, config)?;
    let engine_config = &served.config.engine;
    let Some(adaptive) = &engine_config.adaptive else {
        anyhow::bail!(
            "no outcome learns online: `adaptive.outcomes` is empty in {}",
            config.origin
        );
    };
    let settings = &config.file.kafka;
    settings.validate()?;
    let latest = propensity_kafka::adaptive_state::read_latest_learner_states(settings)?;
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))?;
    let mut report = Vec::new();
    let mut all = Vec::new();
    for (i, outcome) in engine_config.outcomes.iter().enumerate() {
        if !adaptive.learns.get(i).copied().unwrap_or(false) {
            continue;
        }
        let Some(base) = served.models.get(i) else {
            continue;
        };
        let mut learners = Vec::new();
        let mut skipped = 0;
        for (p, states) in &latest {
            for (name, state) in states {
                if name != &outcome.name {
                    continue;
                }
                if state.base_version != base.version {
                    skipped += 1;
                    continue;
                }
                learners.push(Learner::from_state(base, adaptive, state)?);
                all.push(PartitionLearner {
                    partition: u32::try_from(*p).unwrap_or(0),
                    outcome: name.clone(),
                    state: state.clone(),
                });
            }
        }
        let refs: Vec<&Learner> = learners.iter().collect();
        let written = write_outcome(models, out, &outcome.name, &refs)?;
        report.push(OutcomeSnapshot {
            outcome: outcome.name.clone(),
            partitions: learners.len(),
            updates: learners.iter().map(Learner::updates).sum(),
            skipped_other_base: skipped,
            model_version: written.map(|a| a.model_version),
        });
    }
    write_learners(out, engine_config, all)?;
    Ok(report)
}
