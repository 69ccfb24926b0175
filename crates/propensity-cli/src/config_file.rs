//! The configuration file: the shipped default embedded in the binary, a
//! user file replacing it, and `PROPENSITY__SECTION__KEY` environment
//! overrides on top, deserialized once with unknown keys rejected and then
//! validated into the forms each crate runs on. Errors name the file and the
//! key.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use propensity_engine::config::{
    ActionMapSettings, ConsentSettings, InputSettings, OfferSettings, OutcomeSettings,
    SessionSettings,
};
use propensity_engine::features::{FeatureSettings, Vocabulary};
use propensity_engine::{EngineConfig, EngineSettings};
use propensity_kafka::KafkaSettings;
use propensity_training::{FitParams, QualityChecks, TrainingError, TrainingPlan};
use serde::{Deserialize, Serialize};

/// The shipped configuration, used when no `--config` is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../config/propensity.toml");

/// Prefix of environment overrides.
const ENV_PREFIX: &str = "PROPENSITY__";

/// `[models]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsSettings {
    /// Directory of `<outcome>.json` artifacts.
    pub dir: PathBuf,
    /// How often the directory is checked for new artifacts (0: only on
    /// SIGHUP).
    pub watch_interval_secs: f64,
}

impl Default for ModelsSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("models"),
            watch_interval_secs: 5.0,
        }
    }
}

/// `[training]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TrainingSettings {
    /// L2 penalty.
    pub l2: f64,
    /// Optimizer iterations.
    pub max_iterations: u64,
    /// Negative undersampling ratio.
    pub negative_to_positive_max: f64,
    /// Holdout fraction (by session).
    pub holdout_fraction: f64,
    /// Seed.
    pub seed: u64,
    /// Outcomes with fewer positive examples are skipped (warning, no artifact).
    pub min_positives: usize,
    /// A model whose holdout AUC is below this gets a warning.
    pub auc_floor: f64,
    /// A model whose holdout expected calibration error is above this gets a warning.
    pub max_calibration_error: f64,
}

impl Default for TrainingSettings {
    fn default() -> Self {
        let f = FitParams::default();
        let q = QualityChecks::default();
        Self {
            l2: f.l2,
            max_iterations: f.max_iterations,
            negative_to_positive_max: f.negative_to_positive_max,
            holdout_fraction: 0.2,
            seed: 7,
            min_positives: q.min_positives,
            auc_floor: q.auc_floor,
            max_calibration_error: q.max_calibration_error,
        }
    }
}

/// `[http]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Address of `/metrics`, `/healthz`, `/readyz` and the admin API.
    pub listen: String,
    /// Bearer token of the admin endpoints; empty: admin endpoints off.
    pub admin_token: String,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:9464".into(),
            admin_token: String::new(),
        }
    }
}

/// `[logging]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoggingSettings {
    /// `text` or `json`.
    pub format: String,
    /// `RUST_LOG`-style filter (the `RUST_LOG` variable wins when set).
    pub filter: String,
}

impl Default for LoggingSettings {
    fn default() -> Self {
        Self {
            format: "text".into(),
            filter: "info".into(),
        }
    }
}

/// The whole file as written.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    /// `[consent]`
    #[serde(default)]
    pub consent: ConsentSettings,
    /// `[sessions]`
    #[serde(default)]
    pub sessions: SessionSettings,
    /// `[input]`
    #[serde(default)]
    pub input: InputSettings,
    /// `[features]`
    pub features: FeatureSettings,
    /// `[[outcomes]]`
    pub outcomes: Vec<OutcomeSettings>,
    /// `[offers]`
    #[serde(default)]
    pub offers: OfferSettings,
    /// `[[action_maps]]`
    #[serde(default)]
    pub action_maps: Vec<ActionMapSettings>,
    /// `[models]`
    #[serde(default)]
    pub models: ModelsSettings,
    /// `[training]`
    #[serde(default)]
    pub training: TrainingSettings,
    /// `[kafka]`
    #[serde(default)]
    pub kafka: KafkaSettings,
    /// `[http]`
    #[serde(default)]
    pub http: HttpSettings,
    /// `[logging]`
    #[serde(default)]
    pub logging: LoggingSettings,
}

/// A loaded, validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where it came from (a path or `<embedded default>`).
    pub origin: String,
    /// The file as deserialized (after overrides).
    pub file: ConfigFile,
    /// The validated engine configuration. Its partition count is
    /// `kafka.partitions`, so that replay, training, the demo and the
    /// bench keep the per-partition clocks and bounds `run` keeps (one
    /// engine per partition there); `run` uses
    /// [`Config::engine_with_partitions`] with the count the topics really
    /// have.
    pub engine: Arc<EngineConfig>,
}

impl Config {
    /// Loads `path` (or the embedded default), applies environment
    /// overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<Self> {
        let (origin, text) = match path {
            Some(p) => (
                p.display().to_string(),
                std::fs::read_to_string(p)
                    .with_context(|| format!("cannot read config file {}", p.display()))?,
            ),
            None => ("<embedded default>".to_owned(), EMBEDDED_CONFIG.to_owned()),
        };
        Self::from_text(&origin, &text, std::env::vars())
    }

    /// Parses and validates config text with the given environment.
    pub fn from_text(
        origin: &str,
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let mut value: toml::Table = toml::from_str(text)
            .with_context(|| format!("config file {origin} is not valid TOML"))?;
        apply_env_overrides(&mut value, env)?;
        refuse_removed_keys(origin, &value)?;
        let file: ConfigFile = ConfigFile::deserialize(toml::Value::Table(value))
            .map_err(|e| anyhow::anyhow!("config file {origin}: {}", e.message()))
            .with_context(|| format!("invalid configuration in {origin}"))?;
        let engine_settings = EngineSettings {
            consent: file.consent.clone(),
            sessions: file.sessions.clone(),
            input: file.input.clone(),
            features: file.features.clone(),
            outcomes: file.outcomes.clone(),
            offers: file.offers.clone(),
            action_maps: file.action_maps.clone(),
        };
        file.kafka
            .validate()
            .with_context(|| format!("invalid configuration in {origin}"))?;
        let engine = EngineConfig::from_settings(&engine_settings)
            .and_then(|e| e.with_partitions(file.kafka.partitions))
            .with_context(|| format!("invalid configuration in {origin}"))?;
        if !matches!(file.logging.format.as_str(), "text" | "json") {
            bail!("invalid configuration in {origin}: config key `logging.format`: must be `text` or `json`");
        }
        if file.models.watch_interval_secs < 0.0 || !file.models.watch_interval_secs.is_finite() {
            bail!("invalid configuration in {origin}: config key `models.watch_interval_secs`: must be >= 0");
        }
        if let Err(e) = quality_checks(&file.training).validate() {
            match e {
                TrainingError::InvalidParams { field, reason } => {
                    bail!("invalid configuration in {origin}: config key `training.{field}`: {reason}")
                }
                other => bail!("invalid configuration in {origin}: [training]: {other}"),
            }
        }
        Ok(Self {
            origin: origin.to_owned(),
            file,
            engine: Arc::new(engine),
        })
    }

    /// The engine configuration for topics of `partitions` partitions (what
    /// `run` finds the topics have, which may differ from
    /// `kafka.partitions`): visitors are placed among that many partitions.
    pub fn engine_with_partitions(&self, partitions: i32) -> Result<Arc<EngineConfig>> {
        if u32::try_from(partitions).ok() == Some(self.engine.partitions) {
            return Ok(self.engine.clone());
        }
        Ok(Arc::new(
            self.engine
                .as_ref()
                .clone()
                .with_partitions(partitions)
                .context("the topics' partition count")?,
        ))
    }

    /// The same configuration with the engine's features compiled with a
    /// learned vocabulary (training's, or the model artifacts').
    pub fn with_vocabulary(&self, vocabulary: Vocabulary) -> Result<Config> {
        let engine = self
            .engine
            .as_ref()
            .clone()
            .with_vocabulary(vocabulary)
            .context("the learned vocabulary")?;
        Ok(Config {
            engine: Arc::new(engine),
            ..self.clone()
        })
    }

    /// The training plan from `[training]`.
    pub fn training_plan(&self) -> TrainingPlan {
        let t = &self.file.training;
        TrainingPlan {
            fit: FitParams {
                l2: t.l2,
                max_iterations: t.max_iterations,
                negative_to_positive_max: t.negative_to_positive_max,
                seed: t.seed,
            },
            holdout_fraction: t.holdout_fraction,
            seed: t.seed,
        }
    }

    /// The skip and warning thresholds from `[training]`.
    pub fn quality_checks(&self) -> QualityChecks {
        quality_checks(&self.file.training)
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> Result<String> {
        let mut file = self.file.clone();
        for (k, v) in file.kafka.client.iter_mut() {
            if KafkaSettings::is_secret(k) {
                *v = "***".into();
            }
        }
        if !file.http.admin_token.is_empty() {
            file.http.admin_token = "***".into();
        }
        Ok(toml::to_string(&file)?)
    }
}

/// Keys earlier versions read, with what replaced them: a config written
/// for them fails with the way forward rather than "unknown field".
const REMOVED_FEATURE_KEYS: [&str; 5] = [
    "path_hash_buckets",
    "custom_event_buckets",
    "browser_buckets",
    "os_buckets",
    "traffic_source_buckets",
];

fn refuse_removed_keys(origin: &str, value: &toml::Table) -> Result<()> {
    let features = value.get("features").and_then(toml::Value::as_table);
    if let Some(key) = REMOVED_FEATURE_KEYS
        .iter()
        .find(|k| features.is_some_and(|f| f.contains_key(**k)))
    {
        bail!(
            "invalid configuration in {origin}: config key `features.{key}` was removed: open-ended values now get features from a vocabulary that `propensity train` learns (set `features.vocabulary_max_values` and `features.vocabulary_min_count` instead, then retrain)"
        );
    }
    Ok(())
}

fn quality_checks(t: &TrainingSettings) -> QualityChecks {
    QualityChecks {
        min_positives: t.min_positives,
        auc_floor: t.auc_floor,
        max_calibration_error: t.max_calibration_error,
    }
}

/// Applies `PROPENSITY__SECTION__KEY=value` overrides. The value is read as
/// a TOML value when it parses as one (numbers, booleans, arrays, quoted
/// strings) and as a plain string otherwise.
fn apply_env_overrides(
    root: &mut toml::Table,
    env: impl Iterator<Item = (String, String)>,
) -> Result<()> {
    let mut vars: Vec<(String, String)> = env.filter(|(k, _)| k.starts_with(ENV_PREFIX)).collect();
    vars.sort();
    for (name, raw) in vars {
        let path: Vec<String> = name[ENV_PREFIX.len()..]
            .split("__")
            .map(|p| p.to_ascii_lowercase())
            .collect();
        if path.iter().any(String::is_empty) || path.len() < 2 {
            bail!("environment variable {name}: expected PROPENSITY__<SECTION>__<KEY>");
        }
        let value = toml::from_str::<toml::Table>(&format!("v = {raw}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(raw.clone()));
        let mut table = &mut *root;
        for part in &path[..path.len() - 1] {
            let entry = table
                .entry(part.clone())
                .or_insert_with(|| toml::Value::Table(toml::Table::new()));
            table = entry.as_table_mut().with_context(|| {
                format!("environment variable {name}: `{part}` is not a section")
            })?;
        }
        table.insert(path[path.len() - 1].clone(), value);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)]) -> Result<Config> {
        Config::from_text(
            "test.toml",
            EMBEDDED_CONFIG,
            env.iter().map(|(a, b)| (a.to_string(), b.to_string())),
        )
    }

    #[test]
    fn embedded_config_is_valid() {
        let c = load(&[]).unwrap();
        assert_eq!(c.engine.outcomes.len(), 3);
        assert!(!c.engine.action_maps.is_empty());
    }

    #[test]
    fn env_overrides_apply_with_types() {
        let c = load(&[
            ("PROPENSITY__CONSENT__MODE", "opt_out"),
            ("PROPENSITY__KAFKA__PARTITIONS", "12"),
            ("PROPENSITY__KAFKA__BROKERS", "kafka-1:9092,kafka-2:9092"),
        ])
        .unwrap();
        assert_eq!(c.file.kafka.partitions, 12);
        assert_eq!(c.engine.partitions, 12, "the engine places visitors by it");
        assert_eq!(c.engine_with_partitions(3).unwrap().partitions, 3);
        assert_eq!(c.file.kafka.brokers, "kafka-1:9092,kafka-2:9092");
        assert_eq!(
            c.engine.consent_mode,
            propensity_engine::config::ConsentMode::OptOut
        );
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        let err = format!(
            "{:#}",
            load(&[("PROPENSITY__CONSENT__MODEE", "opt_out")]).unwrap_err()
        );
        assert!(err.contains("modee"), "{err}");
        let err = format!(
            "{:#}",
            load(&[("PROPENSITY__OFFERS__MIN_GAP_SECS", "-1")]).unwrap_err()
        );
        assert!(err.contains("offers.min_gap_secs"), "{err}");
        for (var, key) in [
            ("PROPENSITY__TRAINING__AUC_FLOOR", "training.auc_floor"),
            (
                "PROPENSITY__TRAINING__MIN_POSITIVES",
                "training.min_positives",
            ),
            (
                "PROPENSITY__TRAINING__MAX_CALIBRATION_ERROR",
                "training.max_calibration_error",
            ),
        ] {
            let value = if key.ends_with("auc_floor") {
                "1.5"
            } else {
                "0"
            };
            let err = format!("{:#}", load(&[(var, value)]).unwrap_err());
            assert!(err.contains(key), "{err}");
        }
        let bad = EMBEDDED_CONFIG.replace("outcome = \"purchase\"", "outcome = \"purchse\"");
        let err = format!(
            "{:#}",
            Config::from_text("x.toml", &bad, std::iter::empty()).unwrap_err()
        );
        assert!(
            err.contains("action_maps[") && err.contains("purchse") && err.contains("x.toml"),
            "{err}"
        );
    }

    #[test]
    fn removed_bucket_keys_say_what_replaced_them() {
        let text = EMBEDDED_CONFIG.replace(
            "vocabulary_min_count = 20",
            "vocabulary_min_count = 20\nbrowser_buckets = 4",
        );
        let err = format!(
            "{:#}",
            Config::from_text("old.toml", &text, std::iter::empty()).unwrap_err()
        );
        assert!(
            err.contains("old.toml") && err.contains("`features.browser_buckets` was removed"),
            "{err}"
        );
        assert!(err.contains("features.vocabulary_max_values"), "{err}");
    }

    #[test]
    fn secrets_are_masked() {
        let mut c = load(&[("PROPENSITY__HTTP__ADMIN_TOKEN", "hunter2")]).unwrap();
        c.file
            .kafka
            .client
            .insert("sasl.password".into(), "s3cret".into());
        let shown = c.to_masked_toml().unwrap();
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("***"));
    }
}
