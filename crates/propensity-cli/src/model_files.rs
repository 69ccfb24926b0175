//! Model artifacts on disk: `<dir>/<outcome>.json`, one per configured
//! outcome. Loading reports the file and the field at fault; saving writes
//! through a temporary file and a rename, so a watcher never sees half a
//! model.
//!
//! Every artifact of one training run carries the same learned vocabulary,
//! and the engine's features are compiled with it ([`ServedModels`]):
//! loading refuses artifacts of different runs side by side, naming both
//! files, and a hot reload ([`reload_models`]) refuses a vocabulary other
//! than the one the running engine was started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use propensity_engine::{EngineConfig, EngineError, ModelArtifact, ModelSet};

use crate::config_file::Config;

/// Models with the configuration they are served under: the configured
/// engine with its features compiled with the models' vocabulary.
#[derive(Debug, Clone)]
pub struct ServedModels {
    /// The configuration to run the engine with.
    pub config: Config,
    /// The validated models.
    pub models: Arc<ModelSet>,
}

/// The artifact path of an outcome.
pub fn artifact_path(dir: &Path, outcome: &str) -> PathBuf {
    dir.join(format!("{outcome}.json"))
}

/// Loads one artifact per configured outcome and the configuration to serve
/// them with.
pub fn load_models(dir: &Path, config: &Config) -> Result<ServedModels> {
    serve(config, read_artifacts(dir, &config.engine)?)
}

/// Loads one artifact per configured outcome for an engine already
/// running under `running` (a hot reload): models of another vocabulary
/// are refused, since sessions in flight hold features of the running one.
pub fn reload_models(dir: &Path, running: &EngineConfig) -> Result<Arc<ModelSet>> {
    Ok(ModelSet::from_artifacts(
        running,
        read_artifacts(dir, running)?,
    )?)
}

/// Validates `artifacts` (origin, artifact) of one training run and the
/// configuration that serves them.
pub fn serve(config: &Config, artifacts: Vec<(String, ModelArtifact)>) -> Result<ServedModels> {
    let Some((first_origin, first)) = artifacts.first() else {
        bail!("no model artifacts to load");
    };
    if let Some((origin, _)) = artifacts
        .iter()
        .find(|(_, a)| a.vocabulary != first.vocabulary)
    {
        bail!(
            "{origin} and {first_origin} come from different training runs (field `vocabulary` differs); train all outcomes together with `propensity train`"
        );
    }
    let config = config
        .with_vocabulary(first.vocabulary.clone())
        .with_context(|| format!("field `vocabulary` of {first_origin}"))?;
    let models = ModelSet::from_artifacts(&config.engine, artifacts)?;
    Ok(ServedModels { config, models })
}

fn read_artifacts(dir: &Path, config: &EngineConfig) -> Result<Vec<(String, ModelArtifact)>> {
    let mut artifacts = Vec::new();
    for outcome in &config.outcomes {
        let path = artifact_path(dir, &outcome.name);
        if !path.exists() {
            return Err(EngineError::MissingModel {
                outcome: outcome.name.clone(),
                expected: format!("{} (train one with `propensity train`)", path.display()),
            }
            .into());
        }
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read model file {}", path.display()))?;
        let artifact: ModelArtifact =
            serde_json::from_str(&text).map_err(|e| EngineError::Model {
                outcome: outcome.name.clone(),
                origin: path.display().to_string(),
                message: format!("not a model artifact: {e}"),
            })?;
        artifacts.push((path.display().to_string(), artifact));
    }
    Ok(artifacts)
}

/// Writes an artifact atomically (temp file + rename).
pub fn save_artifact(dir: &Path, artifact: &ModelArtifact) -> Result<PathBuf> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = artifact_path(dir, &artifact.outcome);
    let tmp = dir.join(format!(".{}.json.tmp", artifact.outcome));
    let json = serde_json::to_string_pretty(artifact)?;
    std::fs::write(&tmp, json).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, &path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}
