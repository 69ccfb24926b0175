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
//!
//! An outcome that `train` skipped (too few positives: a site without
//! webinars yet) leaves `<dir>/<outcome>.skipped.json` instead of an
//! artifact ([`SkipMarker`]). The engine then runs without that outcome's
//! model: it is not scored and its action maps never fire, and loading
//! says so with the reason. Without an artifact or a marker, loading still
//! fails, naming the file it expected: a missing model is never silent.
//!
//! A challenger of an outcome is `<dir>/challengers/<outcome>.json`
//! (optional, of the same training run's vocabulary): scored in shadow
//! beside the champion, hot-reloaded with it, and promoted by exchanging
//! the two files in one `renameat2(RENAME_EXCHANGE)` ([`promote`]), so a
//! reload sees either the old pair or the swapped pair, never a mix.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::{bail, Context, Result};
use propensity_engine::{EngineConfig, EngineError, ModelArtifact, ModelSet};
use serde::{Deserialize, Serialize};

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

/// The challenger artifact path of an outcome.
pub fn challenger_path(dir: &Path, outcome: &str) -> PathBuf {
    dir.join("challengers").join(format!("{outcome}.json"))
}

/// The skip-marker path of an outcome.
pub fn skip_marker_path(dir: &Path, outcome: &str) -> PathBuf {
    dir.join(format!("{outcome}.skipped.json"))
}

/// What `train` leaves for an outcome it did not train: the engine serves
/// the other outcomes and leaves this one unscored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkipMarker {
    /// The outcome.
    pub outcome: String,
    /// Why training skipped it (positives against the minimum).
    pub reason: String,
}

/// Loads one artifact per configured outcome and the configuration to serve
/// them with. Outcomes with a skip marker instead of an artifact are logged
/// as unscored.
pub fn load_models(dir: &Path, config: &Config) -> Result<ServedModels> {
    let found = read_artifacts(dir, &config.engine)?;
    warn_unscored(&found.skipped);
    serve_with_challengers(config, found)
}

/// Loads one artifact per configured outcome for an engine already
/// running under `running` (a hot reload): models of another vocabulary
/// are refused, since sessions in flight hold features of the running one.
pub fn reload_models(dir: &Path, running: &EngineConfig) -> Result<Arc<ModelSet>> {
    let found = read_artifacts(dir, running)?;
    warn_unscored(&found.skipped);
    Ok(ModelSet::with_challengers(
        running,
        found.artifacts,
        found.challengers,
    )?)
}

fn warn_unscored(skipped: &[SkipMarker]) {
    for s in skipped {
        tracing::warn!(
            outcome = %s.outcome,
            reason = %s.reason,
            "outcome not scored: training skipped it, so it has no model (its action maps never fire)"
        );
    }
}

/// Writes `train`'s marker for a skipped outcome (atomically, like an
/// artifact). A previous artifact of the outcome stays when it can still be
/// served with this run's models (same vocabulary); otherwise it is moved
/// to `<outcome>.json.previous`, since loading would refuse it next to the
/// new ones. Returns where the previous artifact went, if it moved.
pub fn save_skip_marker(
    dir: &Path,
    marker: &SkipMarker,
    vocabulary: &propensity_engine::features::Vocabulary,
) -> Result<Option<PathBuf>> {
    let artifact = artifact_path(dir, &marker.outcome);
    let mut moved = None;
    if artifact.exists() {
        let previous = read_artifact(&artifact, &marker.outcome)?;
        if &previous.vocabulary == vocabulary {
            return Ok(None);
        }
        let aside = dir.join(format!("{}.json.previous", marker.outcome));
        std::fs::rename(&artifact, &aside)
            .with_context(|| format!("cannot move {} aside", artifact.display()))?;
        moved = Some(aside);
    }
    write_atomically(
        dir,
        &skip_marker_path(dir, &marker.outcome),
        &serde_json::to_string_pretty(marker)?,
    )?;
    Ok(moved)
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

/// [`serve`] with challengers: `load_models` for a directory that has
/// some. A challenger of another training run is refused (its features
/// would be computed with another vocabulary), naming its file.
fn serve_with_challengers(config: &Config, found: FoundModels) -> Result<ServedModels> {
    if found.challengers.is_empty() {
        return serve(config, found.artifacts);
    }
    let served = serve(config, found.artifacts.clone())?;
    let models =
        ModelSet::with_challengers(&served.config.engine, found.artifacts, found.challengers)?;
    Ok(ServedModels {
        config: served.config,
        models,
    })
}

/// The artifacts of a model directory, and the configured outcomes that
/// have a skip marker instead.
struct FoundModels {
    artifacts: Vec<(String, ModelArtifact)>,
    /// The challengers present (`challengers/<outcome>.json`).
    challengers: Vec<(String, ModelArtifact)>,
    skipped: Vec<SkipMarker>,
}

/// What tells a changed model file: per outcome, the champion's and the
/// challenger's inode, size and modification time (a promotion exchanges
/// two files whose times may be equal; their inodes differ).
pub type FileStamp = Option<(u64, u64, SystemTime)>;

/// The [`FileStamp`]s of every model file of `config`'s outcomes in `dir`.
pub fn files_stamp(dir: &Path, config: &EngineConfig) -> Vec<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let stamp = |path: PathBuf| -> FileStamp {
        let m = std::fs::metadata(path).ok()?;
        Some((m.ino(), m.len(), m.modified().ok()?))
    };
    config
        .outcomes
        .iter()
        .flat_map(|o| {
            [
                stamp(artifact_path(dir, &o.name)),
                stamp(challenger_path(dir, &o.name)),
            ]
        })
        .collect()
}

/// Reads the model files of `dir` as one consistent set: a promotion (or a
/// deployment) that lands between the reads of two files would give a mix
/// (the promoted model read as challenger and again as champion), so the
/// files' stamps are compared before and after, and a set read while they
/// moved is read again.
fn read_artifacts(dir: &Path, config: &EngineConfig) -> Result<FoundModels> {
    const ATTEMPTS: usize = 5;
    for _ in 0..ATTEMPTS {
        let before = files_stamp(dir, config);
        let found = read_artifacts_once(dir, config);
        if files_stamp(dir, config) == before {
            return found;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    bail!(
        "the model files in {} kept changing while being read ({ATTEMPTS} attempts); try again when they are in place",
        dir.display()
    )
}

fn read_artifacts_once(dir: &Path, config: &EngineConfig) -> Result<FoundModels> {
    let found = read_files(dir, config)?;
    if let Some(adaptive) = &config.adaptive {
        for (origin, artifact) in &found.challengers {
            if let Some(i) = config.outcome_index(&artifact.outcome) {
                if adaptive.learns_as(i, propensity_engine::ModelRole::Challenger) {
                    bail!(
                        "{origin}: outcome `{}` learns online as its challenger ([adaptive] role = \"challenger\"), so it cannot have a challenger file too; remove the file or the outcome from adaptive.outcomes",
                        artifact.outcome
                    );
                }
            }
        }
    }
    Ok(found)
}

fn read_files(dir: &Path, config: &EngineConfig) -> Result<FoundModels> {
    let mut found = FoundModels {
        artifacts: Vec::new(),
        challengers: Vec::new(),
        skipped: Vec::new(),
    };
    for outcome in &config.outcomes {
        let challenger = challenger_path(dir, &outcome.name);
        if challenger.exists() {
            let artifact = read_artifact(&challenger, &outcome.name)?;
            found
                .challengers
                .push((challenger.display().to_string(), artifact));
        }
        let path = artifact_path(dir, &outcome.name);
        if path.exists() {
            let artifact = read_artifact(&path, &outcome.name)?;
            found.artifacts.push((path.display().to_string(), artifact));
            continue;
        }
        let marker_path = skip_marker_path(dir, &outcome.name);
        if !marker_path.exists() {
            return Err(EngineError::MissingModel {
                outcome: outcome.name.clone(),
                expected: format!("{} (train one with `propensity train`)", path.display()),
            }
            .into());
        }
        let text = std::fs::read_to_string(&marker_path)
            .with_context(|| format!("cannot read {}", marker_path.display()))?;
        let marker: SkipMarker = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a skip marker", marker_path.display()))?;
        if marker.outcome != outcome.name {
            bail!(
                "{}: field `outcome` is `{}`, expected `{}`",
                marker_path.display(),
                marker.outcome,
                outcome.name
            );
        }
        found.skipped.push(marker);
    }
    if found.artifacts.is_empty() {
        bail!(
            "no model artifacts in {}: training skipped every configured outcome ({})",
            dir.display(),
            found
                .skipped
                .iter()
                .map(|s| format!("{}: {}", s.outcome, s.reason))
                .collect::<Vec<_>>()
                .join("; ")
        );
    }
    Ok(found)
}

/// Reads and parses one artifact (not validated against a config).
pub fn read_artifact(path: &Path, outcome: &str) -> Result<ModelArtifact> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read model file {}", path.display()))?;
    Ok(serde_json::from_str(&text).map_err(|e| EngineError::Model {
        outcome: outcome.to_owned(),
        origin: path.display().to_string(),
        message: format!("not a model artifact: {e}"),
    })?)
}

/// Writes an artifact atomically (temp file + rename) and removes the
/// outcome's skip marker, if an earlier run left one.
pub fn save_artifact(dir: &Path, artifact: &ModelArtifact) -> Result<PathBuf> {
    let path = artifact_path(dir, &artifact.outcome);
    write_atomically(dir, &path, &serde_json::to_string_pretty(artifact)?)?;
    let marker = skip_marker_path(dir, &artifact.outcome);
    if marker.exists() {
        std::fs::remove_file(&marker)
            .with_context(|| format!("cannot remove {}", marker.display()))?;
    }
    Ok(path)
}

/// Writes `text` to `path` in `dir` through a temporary file and a rename,
/// so a watcher never sees half a file.
fn write_atomically(dir: &Path, path: &Path, text: &str) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, text).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Promotes the challenger of `outcome` in `dir`: the champion and
/// challenger files are exchanged in one atomic `renameat2` with
/// `RENAME_EXCHANGE`, so every reader (a running instance's hot reload, on
/// this or another host sharing the directory) sees the old pair or the
/// new one. The old champion becomes the challenger: promoting again rolls
/// back. Both files are read and must belong to `outcome` before anything
/// moves. Returns (new champion, new challenger) versions.
pub fn promote(dir: &Path, outcome: &str) -> Result<(String, String)> {
    let champion = artifact_path(dir, outcome);
    let challenger = challenger_path(dir, outcome);
    if !challenger.exists() {
        bail!(
            "no challenger for `{outcome}`: {} does not exist",
            challenger.display()
        );
    }
    if !champion.exists() {
        bail!(
            "no champion for `{outcome}`: {} does not exist",
            champion.display()
        );
    }
    let old_champion = read_artifact(&champion, outcome)?;
    let old_challenger = read_artifact(&challenger, outcome)?;
    for (path, artifact) in [(&champion, &old_champion), (&challenger, &old_challenger)] {
        if artifact.outcome != outcome {
            bail!(
                "{}: field `outcome` is `{}`, expected `{outcome}`",
                path.display(),
                artifact.outcome
            );
        }
    }
    if old_champion.vocabulary != old_challenger.vocabulary {
        bail!(
            "{} and {} come from different training runs (field `vocabulary` differs): a running engine would refuse the promoted model; train the challenger with the champion's run",
            challenger.display(),
            champion.display()
        );
    }
    rustix::fs::renameat_with(
        rustix::fs::CWD,
        &champion,
        rustix::fs::CWD,
        &challenger,
        rustix::fs::RenameFlags::EXCHANGE,
    )
    .map_err(std::io::Error::from)
    .with_context(|| {
        format!(
            "cannot exchange {} and {} atomically (renameat2 RENAME_EXCHANGE; the filesystem must support it)",
            champion.display(),
            challenger.display()
        )
    })?;
    Ok((old_challenger.model_version, old_champion.model_version))
}
