//! Shared helpers of the engine's integration tests: loading the shipped
//! `config/propensity.toml` into an [`EngineConfig`], building test model
//! artifacts, a recording [`EngineSink`], and builders for wire records.
//! Every test crate under `tests/` includes this module; not every crate
//! uses every helper.

#![allow(dead_code)]

pub mod mutate;
pub mod traffic;

use std::path::PathBuf;
use std::sync::Arc;

use propensity_engine::config::Trigger;
use propensity_engine::model::MODEL_FORMAT;
use propensity_engine::wire::{Conversion, DeadLetterReason, Decision, Offer, OutcomeScore};
use propensity_engine::{
    DeadLetter, Engine, EngineConfig, EngineSettings, EngineSink, ModelArtifact, ModelRole,
    ModelSet, Origin,
};
use serde::Deserialize;
use serde_json::{json, Value};

/// 2026-11-29T10:00:00Z, a Sunday.
pub const BASE_MS: i64 = 1_795_946_400_000;

/// The workspace root.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The engine sections of the shipped configuration file, as settings.
pub fn shipped_settings() -> EngineSettings {
    settings_from_file(&repo_root().join("config/propensity.toml"))
}

/// The engine sections of a configuration file: the non-engine tables
/// (`models`, `training`, `kafka`, `http`, `logging`, `metrics`) are removed
/// and the rest is read as [`EngineSettings`].
pub fn settings_from_file(path: &std::path::Path) -> EngineSettings {
    let text =
        std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let mut value = toml::from_str::<toml::Value>(&text)
        .unwrap_or_else(|e| panic!("parsing {}: {e}", path.display()));
    let table = value
        .as_table_mut()
        .expect("the config file is a TOML table");
    for non_engine in ["models", "training", "kafka", "http", "logging", "metrics"] {
        table.remove(non_engine);
    }
    EngineSettings::deserialize(value).unwrap_or_else(|e| panic!("engine settings: {e}"))
}

/// Validates settings into a shared config.
pub fn config_from(settings: &EngineSettings) -> Arc<EngineConfig> {
    Arc::new(EngineConfig::from_settings(settings).unwrap_or_else(|e| panic!("config: {e}")))
}

/// The shipped configuration, validated.
pub fn shipped_config() -> Arc<EngineConfig> {
    config_from(&shipped_settings())
}

/// A variant of the shipped settings whose action maps fire on almost every
/// event, so the frequency caps are what limits offers: low `at_or_above`
/// thresholds, no conditions, per-map caps of 1–2 (5 in all), at most 3
/// offers per session and 5 s between offers.
pub fn low_threshold_settings() -> EngineSettings {
    let mut s = shipped_settings();
    s.offers.max_per_session = 3;
    s.offers.min_gap_secs = 5.0;
    for m in &mut s.action_maps {
        m.conditions = Default::default();
        match &mut m.trigger {
            Trigger::AtOrAbove { threshold } => {
                *threshold = 0.05;
                m.max_per_session = if m.name == "checkout-assist-chat" {
                    1
                } else {
                    2
                };
            }
            Trigger::FallsTo { threshold } => {
                *threshold = 0.6;
                m.max_per_session = 1;
            }
            Trigger::TopPercent { .. } => {}
        }
    }
    s
}

/// Model weights: `(feature, weight)` pairs and an intercept; every other
/// weight is 0.
pub struct ModelSpec<'a> {
    /// Outcome name.
    pub outcome: &'a str,
    /// Non-zero weights.
    pub weights: &'a [(&'a str, f64)],
    /// Intercept.
    pub intercept: f64,
}

/// A model artifact for `config` (means 0, stds 1), whose training
/// population's scores were uniform: the k-th percentile is k/100, so a
/// probability p has percentile ⌊100 p⌋.
pub fn artifact(config: &EngineConfig, spec: &ModelSpec<'_>) -> ModelArtifact {
    let names = config.features.names();
    let mut weights = vec![0.0; names.len()];
    for (feature, w) in spec.weights {
        let i = names
            .iter()
            .position(|n| n == feature)
            .unwrap_or_else(|| panic!("no feature `{feature}`"));
        weights[i] = *w;
    }
    ModelArtifact {
        format: MODEL_FORMAT.to_owned(),
        outcome: spec.outcome.to_owned(),
        model_version: ModelArtifact::derive_version(spec.outcome, &weights, spec.intercept),
        feature_fingerprint: config.features.fingerprint().to_owned(),
        vocabulary: config.features.vocabulary().clone(),
        feature_names: names.to_vec(),
        means: vec![0.0; names.len()],
        stds: vec![1.0; names.len()],
        weights,
        intercept: spec.intercept,
        score_percentiles: (1..=99).map(|k| f64::from(k) / 100.0).collect(),
        drift_reference: None,
        training: Value::Null,
    }
}

/// Models whose probabilities rise as a session grows (`events.total`) and
/// with checkout/loan/webinar pages, and fall with searches, so that both
/// `at_or_above` and `falls_to` maps of the shipped config fire.
pub const TEST_MODELS: [ModelSpec<'static>; 3] = [
    ModelSpec {
        outcome: "purchase",
        weights: &[
            ("events.total", 1.4),
            ("views.checkout", 0.9),
            ("views.cart", 0.5),
            ("events.search", -1.6),
        ],
        intercept: -2.0,
    },
    ModelSpec {
        outcome: "webinar_signup",
        weights: &[("events.page_view", 1.1), ("views.webinar", 0.8)],
        intercept: -1.8,
    },
    ModelSpec {
        outcome: "application_complete",
        weights: &[
            ("events.total", 1.0),
            ("views.loan", 0.9),
            ("forms.started", 0.7),
        ],
        intercept: -2.2,
    },
];

/// Challengers for [`TEST_MODELS`]: other weights, and intercepts so high
/// that nearly every score is above every trigger threshold, so a
/// challenger score that reached a decision would make offers everywhere.
pub const CHALLENGER_MODELS: [ModelSpec<'static>; 3] = [
    ModelSpec {
        outcome: "purchase",
        weights: &[("events.total", 0.6), ("views.product", 0.7)],
        intercept: 4.0,
    },
    ModelSpec {
        outcome: "webinar_signup",
        weights: &[("views.webinar", 1.5)],
        intercept: 3.5,
    },
    ModelSpec {
        outcome: "application_complete",
        weights: &[("forms.started", 1.2)],
        intercept: 3.0,
    },
];

/// [`test_models`] with [`CHALLENGER_MODELS`] as challengers.
pub fn test_models_with_challengers(config: &EngineConfig) -> Arc<ModelSet> {
    let of = |specs: &[ModelSpec<'_>]| {
        specs
            .iter()
            .map(|m| ("<test>".to_owned(), artifact(config, m)))
            .collect()
    };
    ModelSet::with_challengers(config, of(&TEST_MODELS), of(&CHALLENGER_MODELS))
        .unwrap_or_else(|e| panic!("models: {e}"))
}

/// A model set with [`TEST_MODELS`] for every outcome of `config`.
pub fn test_models(config: &EngineConfig) -> Arc<ModelSet> {
    let artifacts = TEST_MODELS
        .iter()
        .map(|m| ("<test>".to_owned(), artifact(config, m)))
        .collect();
    ModelSet::from_artifacts(config, artifacts).unwrap_or_else(|e| panic!("models: {e}"))
}

/// A score as recorded by [`RecordingSink`].
#[derive(Debug, Clone, PartialEq)]
pub struct ScoreRecord {
    /// Scored event.
    pub event_id: String,
    /// Visitor.
    pub visitor_id: String,
    /// Session.
    pub session_id: String,
    /// Outcome.
    pub outcome: String,
    /// Probability.
    pub probability: f64,
    /// Which model scored it.
    pub role: ModelRole,
    /// That model's version.
    pub model_version: String,
    /// The score serialized as the engine's sink would publish it.
    pub json: String,
}

/// A dead letter as recorded by [`RecordingSink`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetterRecord {
    /// Reason.
    pub reason: DeadLetterReason,
    /// Message.
    pub error: String,
    /// `DeadLetter::to_json_line`.
    pub line: String,
}

/// One engine output, in emission order.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// An outcome score.
    Score(ScoreRecord),
    /// An offer.
    Offer(Offer),
    /// A dead letter.
    DeadLetter(DeadLetterRecord),
    /// A decision, serialized as the engine's sink would publish it.
    Decision(String),
    /// A conversion, serialized as the engine's sink would publish it.
    Conversion(String),
}

/// A sink that records offers, scores and dead letters in order.
#[derive(Debug, Default)]
pub struct RecordingSink {
    /// Everything emitted, in order.
    pub outputs: Vec<Output>,
    /// Visitors reported by `state_changed`, in order.
    pub state_changes: Vec<String>,
}

impl RecordingSink {
    /// The offers, in order.
    pub fn offers(&self) -> Vec<&Offer> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Offer(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    /// The scores, in order.
    pub fn scores(&self) -> Vec<&ScoreRecord> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Score(x) => Some(x),
                _ => None,
            })
            .collect()
    }

    /// The decisions (JSON), in order.
    pub fn decisions(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Decision(x) => Some(x.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The conversions (JSON), in order.
    pub fn conversions(&self) -> Vec<&str> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::Conversion(x) => Some(x.as_str()),
                _ => None,
            })
            .collect()
    }

    /// The dead letters, in order.
    pub fn dead_letters(&self) -> Vec<&DeadLetterRecord> {
        self.outputs
            .iter()
            .filter_map(|o| match o {
                Output::DeadLetter(x) => Some(x),
                _ => None,
            })
            .collect()
    }
}

impl EngineSink for RecordingSink {
    fn offer(&mut self, offer: Offer) {
        self.outputs.push(Output::Offer(offer));
    }

    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        self.outputs.push(Output::DeadLetter(DeadLetterRecord {
            reason: dead_letter.reason,
            error: dead_letter.error.clone(),
            line: dead_letter.to_json_line(),
        }));
    }

    fn wants_scores(&self) -> bool {
        true
    }

    fn state_changed(&mut self, visitor_id: &str) {
        self.state_changes.push(visitor_id.to_owned());
    }

    fn wants_decisions(&self) -> bool {
        true
    }

    fn decision(&mut self, decision: &Decision<'_>) {
        self.outputs.push(Output::Decision(
            serde_json::to_string(decision).expect("a decision serializes"),
        ));
    }

    fn wants_conversions(&self) -> bool {
        true
    }

    fn conversion(&mut self, conversion: &Conversion<'_>) {
        self.outputs.push(Output::Conversion(
            serde_json::to_string(conversion).expect("a conversion serializes"),
        ));
    }

    fn score(&mut self, score: &OutcomeScore<'_>) {
        self.outputs.push(Output::Score(ScoreRecord {
            event_id: score.event_id.to_owned(),
            visitor_id: score.visitor_id.to_owned(),
            session_id: score.session_id.to_owned(),
            outcome: score.outcome.to_owned(),
            probability: score.probability,
            role: score.role,
            model_version: score.model_version.to_owned(),
            json: serde_json::to_string(score).expect("a score serializes"),
        }));
    }
}

/// RFC 3339 (UTC, milliseconds) of epoch ms: the engine's own formatter,
/// which `timestamp.rs` pins to known instants and the simulator's
/// `timefmt` tests check against an independent day-counting inverse.
pub fn rfc3339(epoch_ms: i64) -> String {
    propensity_engine::timestamp::format_rfc3339_ms(epoch_ms)
}

/// A page view.
pub fn page_view(event_id: &str, visitor: &str, t_ms: i64, url: &str) -> Value {
    json!({
        "event_id": event_id,
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": rfc3339(t_ms),
        "page": {"url": url},
    })
}

/// A consent record granting exactly the listed purposes.
pub fn consent(visitor: &str, t_ms: i64, purposes: &[&str]) -> Value {
    let mut p = serde_json::Map::new();
    for name in ["tracking", "support", "sales", "marketing"] {
        p.insert(name.to_owned(), Value::Bool(purposes.contains(&name)));
    }
    json!({"visitor_id": visitor, "timestamp": rfc3339(t_ms), "purposes": p})
}

/// Applies a consent record of `visitor` at `t_ms` granting every purpose.
pub fn grant_all(engine: &mut Engine, visitor: &str, t_ms: i64, sink: &mut impl EngineSink) {
    let c = bytes(&consent(
        visitor,
        t_ms,
        &["tracking", "support", "sales", "marketing"],
    ));
    engine.process_consent(None, Some(&c), t_ms, &Origin::Unknown, None, sink);
}

/// Bytes of a JSON value.
pub fn bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("JSON serializes")
}

/// Proptest cases: `default`, or `PROPTEST_CASES` when set (for a deeper
/// run, e.g. `PROPTEST_CASES=5000 cargo test -p propensity-engine`).
pub fn proptest_cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
