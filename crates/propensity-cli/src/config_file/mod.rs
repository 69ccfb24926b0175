//! The configuration file: the shipped default embedded in the binary, a
//! user file replacing it, and `PROPENSITY__SECTION__KEY` environment
//! overrides on top, deserialized once with unknown keys rejected and then
//! validated into the forms each crate runs on. Errors name who is at
//! fault: the environment variable whose override breaks the configuration,
//! else the file, with the key path and the line and column it is on.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result};
use propensity_engine::config::{
    ActionMapSettings, AdaptiveSettings, ConsentSettings, InputSettings, OfferSettings,
    OutcomeSettings, SessionSettings,
};
use propensity_engine::features::{FeatureSettings, Vocabulary};
use propensity_engine::{EngineConfig, EngineSettings};
use propensity_kafka::KafkaSettings;
use propensity_training::{FitParams, QualityChecks, TrainingError, TrainingPlan};
use serde::{Deserialize, Serialize};

mod env_overrides;

use env_overrides::{apply_env_overrides, env_overrides, EnvOverride};

/// The shipped configuration, used when no `--config` is given.
pub const EMBEDDED_CONFIG: &str = include_str!("../../../../config/propensity.toml");

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

/// The whole file as written. The engine's sections repeat
/// [`EngineSettings`]'s fields instead of `#[serde(flatten)]`-ing it:
/// serde does not support `deny_unknown_fields` together with `flatten`,
/// and a misspelt key must stay an error naming it.
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
    /// `[adaptive]`
    #[serde(default)]
    pub adaptive: AdaptiveSettings,
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

    /// Parses and validates config text with the given environment. An
    /// error names who is at fault: the environment variable whose override
    /// makes the configuration invalid, else the file with the line of the
    /// key.
    pub fn from_text(
        origin: &str,
        text: &str,
        env: impl Iterator<Item = (String, String)>,
    ) -> Result<Self> {
        let table: toml::Table = toml::from_str(text)
            .with_context(|| format!("config file {origin} is not valid TOML"))?;
        let overrides = env_overrides(env)?;
        let mut effective = table.clone();
        apply_env_overrides(&mut effective, &overrides)?;
        let (file, engine) = validate(effective)
            .map_err(|problem| blame(origin, text, &table, &overrides, &problem))?;
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

/// One thing wrong with a configuration, before it is known whom to blame
/// (the file or an environment variable).
#[derive(Debug, Clone, PartialEq)]
struct Problem {
    /// Dotted key path when the check knows it (`kafka.partitions`,
    /// `action_maps[2].trigger.threshold`); deserialization errors leave it
    /// to be found from the error's position in the file.
    key: Option<String>,
    /// What is wrong.
    message: String,
}

impl Problem {
    fn at(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: Some(key.into()),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.key {
            Some(key) => write!(f, "config key `{key}`: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Deserializes and validates the merged configuration. Every check that
/// can fail is here, so that [`blame`] can rerun them without one override.
fn validate(table: toml::Table) -> Result<(ConfigFile, EngineConfig), Problem> {
    refuse_removed_keys(&table)?;
    let file = ConfigFile::deserialize(toml::Value::Table(table)).map_err(|e| Problem {
        key: None,
        message: e.message().to_owned(),
    })?;
    let engine_problem = |e: propensity_engine::EngineError| match e {
        propensity_engine::EngineError::Config { key, message } => Problem::at(key, message),
        other => Problem {
            key: None,
            message: other.to_string(),
        },
    };
    file.kafka.validate().map_err(|e| match e {
        propensity_kafka::KafkaError::Config { key, message } => Problem::at(key, message),
        other => Problem {
            key: None,
            message: other.to_string(),
        },
    })?;
    let engine_settings = EngineSettings {
        consent: file.consent.clone(),
        sessions: file.sessions.clone(),
        input: file.input.clone(),
        features: file.features.clone(),
        outcomes: file.outcomes.clone(),
        offers: file.offers.clone(),
        action_maps: file.action_maps.clone(),
        adaptive: file.adaptive.clone(),
    };
    let engine = EngineConfig::from_settings(&engine_settings)
        .and_then(|e| e.with_partitions(file.kafka.partitions))
        .map_err(engine_problem)?;
    if !matches!(file.logging.format.as_str(), "text" | "json") {
        return Err(Problem::at("logging.format", "must be `text` or `json`"));
    }
    if file.models.watch_interval_secs < 0.0 || !file.models.watch_interval_secs.is_finite() {
        return Err(Problem::at("models.watch_interval_secs", "must be >= 0"));
    }
    if let Err(e) = quality_checks(&file.training).validate() {
        return Err(match e {
            TrainingError::InvalidParams { field, reason } => {
                Problem::at(format!("training.{field}"), reason)
            }
            other => Problem::at("training", other.to_string()),
        });
    }
    Ok((file, engine))
}

/// The error for `problem`: an environment variable is at fault when the
/// configuration without its override does not have this problem (an
/// override that is merely present is not blamed); otherwise the file is,
/// with the line and column of the key.
fn blame(
    origin: &str,
    text: &str,
    table: &toml::Table,
    overrides: &[EnvOverride],
    problem: &Problem,
) -> anyhow::Error {
    for (i, culprit) in overrides.iter().enumerate() {
        let others: Vec<EnvOverride> = overrides
            .iter()
            .enumerate()
            .filter(|(j, _)| *j != i)
            .map(|(_, o)| o.clone())
            .collect();
        let mut without = table.clone();
        let differs = apply_env_overrides(&mut without, &others).is_ok()
            && validate(without).err().as_ref() != Some(problem);
        if differs {
            let key = culprit.key_path();
            // The key once: the variable's own key needs no repeating.
            let what = match &problem.key {
                Some(k) if *k == key => problem.message.clone(),
                _ => problem.to_string(),
            };
            return anyhow::anyhow!(
                "invalid configuration from environment variable {} (sets `{key}`): {what}",
                culprit.name
            );
        }
    }
    file_error(origin, text, problem)
}

/// A problem of the file itself, placed: validation problems at their
/// key's line, deserialization problems where toml reports them when it
/// reads the text (which also gives the key path the message lacks).
fn file_error(origin: &str, text: &str, problem: &Problem) -> anyhow::Error {
    let keys = key_spans(text);
    let (key, message, span) = match &problem.key {
        Some(key) => (Some(key.clone()), problem.message.clone(), span_of(&keys, key)),
        None => match toml::from_str::<ConfigFile>(text) {
            Err(e) => {
                let span = e.span();
                let key = span.as_ref().and_then(|s| key_at(&keys, s.start));
                (key, e.message().to_owned(), span)
            }
            // The file alone is valid; several overrides together are not.
            Ok(_) => {
                return anyhow::anyhow!(
                    "invalid configuration in {origin} with the PROPENSITY__ environment overrides: {problem}"
                )
            }
        },
    };
    let place = span.map_or_else(String::new, |s| {
        let (line, column) = line_column(text, s.start);
        format!(", line {line}, column {column}")
    });
    let located = Problem { key, message };
    anyhow::anyhow!("invalid configuration in {origin}{place}: {located}")
}

/// 1-based line and column of a byte offset.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

/// Every key of a TOML text with its dotted path (array items as `[i]`,
/// keys containing dots quoted, as the validation errors write them) and
/// the span from the key to the end of its value.
fn key_spans(text: &str) -> Vec<(String, std::ops::Range<usize>)> {
    fn walk(
        table: &toml::de::DeTable<'_>,
        prefix: &str,
        out: &mut Vec<(String, std::ops::Range<usize>)>,
    ) {
        for (k, v) in table.iter() {
            let name = k.get_ref();
            let path = match (prefix.is_empty(), name.contains('.')) {
                (true, false) => name.to_string(),
                (true, true) => format!("\"{name}\""),
                (false, false) => format!("{prefix}.{name}"),
                (false, true) => format!("{prefix}.\"{name}\""),
            };
            out.push((path.clone(), k.span().start..v.span().end.max(k.span().end)));
            walk_value(v, &path, out);
        }
    }
    fn walk_value(
        v: &toml::Spanned<toml::de::DeValue<'_>>,
        path: &str,
        out: &mut Vec<(String, std::ops::Range<usize>)>,
    ) {
        match v.get_ref() {
            toml::de::DeValue::Table(t) => walk(t, path, out),
            toml::de::DeValue::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    let item_path = format!("{path}[{i}]");
                    out.push((item_path.clone(), item.span()));
                    walk_value(item, &item_path, out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    if let Ok(doc) = toml::de::DeTable::parse(text) {
        walk(doc.get_ref(), "", &mut out);
    }
    out
}

/// Where `key` is written, or its nearest written parent (a key left out
/// of the file is reported at its section).
fn span_of(keys: &[(String, std::ops::Range<usize>)], key: &str) -> Option<std::ops::Range<usize>> {
    let mut key = key;
    loop {
        if let Some((_, span)) = keys.iter().find(|(k, _)| k == key) {
            return Some(span.clone());
        }
        key = &key[..key.rfind(['.', '['])?];
    }
}

/// The deepest key whose span holds `offset`.
fn key_at(keys: &[(String, std::ops::Range<usize>)], offset: usize) -> Option<String> {
    keys.iter()
        .filter(|(_, s)| s.contains(&offset))
        .max_by_key(|(_, s)| std::cmp::Reverse(s.len()))
        .map(|(k, _)| k.clone())
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

fn refuse_removed_keys(value: &toml::Table) -> Result<(), Problem> {
    let features = value.get("features").and_then(toml::Value::as_table);
    if let Some(key) = REMOVED_FEATURE_KEYS
        .iter()
        .find(|k| features.is_some_and(|f| f.contains_key(**k)))
    {
        return Err(Problem::at(
            format!("features.{key}"),
            "was removed: open-ended values now get features from a vocabulary that `propensity train` learns (set `features.vocabulary_max_values` and `features.vocabulary_min_count` instead, then retrain)",
        ));
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

#[cfg(test)]
mod tests;
