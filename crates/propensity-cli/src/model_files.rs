//! Model artifacts on disk: `<dir>/<outcome>.json`, one per configured
//! outcome. Loading reports the file and the field at fault; saving writes
//! through a temporary file and a rename, so a watcher never sees half a
//! model.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use propensity_engine::{EngineConfig, EngineError, ModelArtifact, ModelSet};

/// The artifact path of an outcome.
pub fn artifact_path(dir: &Path, outcome: &str) -> PathBuf {
    dir.join(format!("{outcome}.json"))
}

/// Loads and validates one artifact per configured outcome.
pub fn load_models(dir: &Path, config: &EngineConfig) -> Result<Arc<ModelSet>> {
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
    Ok(ModelSet::from_artifacts(config, artifacts)?)
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
