//! `[kafka]`: topics, group, transactions and the librdkafka properties
//! passed through to every client. Validated once at start-up; the settings
//! Propensity must control for exactly-once (isolation level, transactional
//! id, partitioner, auto commit) are enforced here and may not be
//! overridden from `[kafka.client]`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::KafkaError;

/// `[kafka]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaSettings {
    /// Bootstrap servers (`bootstrap.servers`).
    pub brokers: String,
    /// Consumer group of all instances.
    pub group_id: String,
    /// Visitor events (input, keyed by visitor_id).
    pub events_topic: String,
    /// Consent records (input, compacted, keyed by visitor_id,
    /// co-partitioned with events).
    pub consent_topic: String,
    /// Engagement offers (output).
    pub offers_topic: String,
    /// Outcome scores (output); empty: not published.
    pub scores_topic: String,
    /// Decision records (output); empty: not published.
    pub decisions_topic: String,
    /// Conversion records (output); empty: not published.
    pub conversions_topic: String,
    /// Offer feedback (input, keyed by visitor_id, co-partitioned with
    /// events); empty: not consumed.
    pub feedback_topic: String,
    /// Dead letters (output).
    pub dead_letter_topic: String,
    /// Session-state changelog (compacted, co-partitioned with events).
    pub changelog_topic: String,
    /// Partitions of the topics `propensity topics create` makes.
    pub partitions: i32,
    /// Replication factor of the topics `propensity topics create` makes.
    pub replication_factor: i32,
    /// How often the open transaction is committed.
    pub commit_interval_ms: u64,
    /// Transactional ids are `<prefix>-<group>-<partition>`-style and must
    /// be unique per group.
    pub transactional_id_prefix: String,
    /// Bound on bytes consumed but not yet committed (backpressure).
    pub max_in_flight_bytes: usize,
    /// On SIGTERM/SIGINT, finish and commit within this time, then exit.
    pub drain_timeout_secs: f64,
    /// How often the consumer lag (end offsets against the group's
    /// committed offsets) and the stall check are refreshed.
    pub statistics_interval_ms: u64,
    /// A partition with lag that has committed nothing for this long is
    /// stalled: `/readyz` answers 503 and `propensity_stalled_partitions`
    /// counts it.
    pub stall_timeout_secs: f64,
    /// The drift window: the PSI of each model's scores and features is
    /// computed over the committed work of this many seconds.
    pub drift_window_secs: f64,
    /// A model's PSI is published once its drift window holds this many
    /// scored events.
    pub drift_min_events: u64,
    /// Online evaluation: each model's AUC, log loss, Brier score and
    /// calibration over the sessions resolved in the committed work of
    /// this many seconds.
    pub online_eval_window_secs: f64,
    /// The online figures are published once the window holds this many
    /// resolved sessions.
    pub online_eval_min_sessions: u64,
    /// The AUC below which the `OnlineAucLow` alert fires (exported as
    /// `propensity_online_auc_floor`).
    pub online_auc_floor: f64,
    /// How long a command waits for the brokers' first answer (a metadata
    /// request) before it gives up (`topics create`, `produce`,
    /// `bench --kafka`) or, for `run`, reports the broker unreachable and
    /// retries. librdkafka's own timeouts are a minute, far too long to
    /// learn that a broker address is wrong.
    pub probe_timeout_secs: f64,
    /// Threads that process a batch's events, one partition's events on one
    /// thread at a time; 0: one per core. Consumption, consent catch-up
    /// and the transaction stay on the loop thread.
    pub workers: usize,
    /// librdkafka properties passed to every client as-is (security,
    /// SASL, SSL, timeouts…).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaSettings {
    fn default() -> Self {
        Self {
            brokers: "127.0.0.1:9092".into(),
            group_id: "propensity".into(),
            events_topic: "visitor-events".into(),
            consent_topic: "visitor-consent".into(),
            offers_topic: "engagement-offers".into(),
            scores_topic: String::new(),
            decisions_topic: String::new(),
            conversions_topic: String::new(),
            feedback_topic: String::new(),
            dead_letter_topic: "propensity-dead-letters".into(),
            changelog_topic: "propensity-state-changelog".into(),
            partitions: 6,
            replication_factor: 1,
            commit_interval_ms: 100,
            transactional_id_prefix: "propensity".into(),
            max_in_flight_bytes: 64 * 1024 * 1024,
            drain_timeout_secs: 10.0,
            statistics_interval_ms: 5000,
            stall_timeout_secs: 60.0,
            drift_window_secs: 3600.0,
            drift_min_events: 1000,
            online_eval_window_secs: 3600.0,
            online_eval_min_sessions: 200,
            online_auc_floor: 0.6,
            probe_timeout_secs: 5.0,
            workers: 0,
            client: BTreeMap::new(),
        }
    }
}

/// librdkafka properties Propensity sets itself; a `[kafka.client]` entry
/// for one of these is a configuration error, because overriding it would
/// break exactly-once or co-partitioning.
pub const ENFORCED_PROPERTIES: &[&str] = &[
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "isolation.level",
    "transactional.id",
    "enable.idempotence",
    "partitioner",
    "partition.assignment.strategy",
];

/// Substrings of property names whose values are secrets (masked when the
/// configuration is printed).
pub const SECRET_MARKERS: &[&str] = &[
    "password",
    "secret",
    "token",
    "key.pem",
    "sasl.oauthbearer.config",
];

impl KafkaSettings {
    /// `workers` resolved: 0 means the number of cores.
    pub fn worker_threads(&self) -> usize {
        match self.workers {
            0 => std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get),
            n => n,
        }
    }

    /// Validates the settings; errors name the key.
    pub fn validate(&self) -> Result<(), KafkaError> {
        let cfg = |key: &str, msg: &str| KafkaError::Config {
            key: format!("kafka.{key}"),
            message: msg.to_owned(),
        };
        for (key, v) in [
            ("brokers", &self.brokers),
            ("group_id", &self.group_id),
            ("events_topic", &self.events_topic),
            ("consent_topic", &self.consent_topic),
            ("offers_topic", &self.offers_topic),
            ("dead_letter_topic", &self.dead_letter_topic),
            ("changelog_topic", &self.changelog_topic),
            ("transactional_id_prefix", &self.transactional_id_prefix),
        ] {
            if v.trim().is_empty() {
                return Err(cfg(key, "must not be empty"));
            }
        }
        if self.partitions < 1 {
            return Err(cfg("partitions", "must be at least 1"));
        }
        if self.replication_factor < 1 {
            return Err(cfg("replication_factor", "must be at least 1"));
        }
        if !(10..=60_000).contains(&self.commit_interval_ms) {
            return Err(cfg("commit_interval_ms", "must be within 10..=60000"));
        }
        if self.max_in_flight_bytes < 1024 * 1024 {
            return Err(cfg("max_in_flight_bytes", "must be at least 1 MiB"));
        }
        if !(100..=3_600_000).contains(&self.statistics_interval_ms) {
            return Err(cfg(
                "statistics_interval_ms",
                "must be within 100..=3600000",
            ));
        }
        if !(self.stall_timeout_secs.is_finite() && self.stall_timeout_secs >= 1.0) {
            return Err(cfg(
                "stall_timeout_secs",
                "must be a number of seconds, at least 1",
            ));
        }
        if !(self.drift_window_secs.is_finite()
            && (1.0..=604_800.0).contains(&self.drift_window_secs))
        {
            return Err(cfg(
                "drift_window_secs",
                "must be a number of seconds within 1..=604800 (a week)",
            ));
        }
        if self.drift_min_events < 1 {
            return Err(cfg("drift_min_events", "must be at least 1"));
        }
        if !(self.online_eval_window_secs.is_finite()
            && (1.0..=604_800.0).contains(&self.online_eval_window_secs))
        {
            return Err(cfg(
                "online_eval_window_secs",
                "must be a number of seconds within 1..=604800 (a week)",
            ));
        }
        if self.online_eval_min_sessions < 1 {
            return Err(cfg("online_eval_min_sessions", "must be at least 1"));
        }
        if !(0.0..=1.0).contains(&self.online_auc_floor) {
            return Err(cfg("online_auc_floor", "must be within 0..=1"));
        }
        if !(self.probe_timeout_secs.is_finite()
            && (0.1..=300.0).contains(&self.probe_timeout_secs))
        {
            return Err(cfg(
                "probe_timeout_secs",
                "must be a number of seconds within 0.1..=300",
            ));
        }
        if !(self.drain_timeout_secs.is_finite() && self.drain_timeout_secs > 0.0) {
            return Err(cfg("drain_timeout_secs", "must be a positive number"));
        }
        // The optional outputs count only when set.
        let topics: Vec<&String> = [
            &self.events_topic,
            &self.consent_topic,
            &self.offers_topic,
            &self.dead_letter_topic,
            &self.changelog_topic,
            &self.scores_topic,
            &self.decisions_topic,
            &self.conversions_topic,
            &self.feedback_topic,
        ]
        .into_iter()
        .filter(|t| !t.is_empty())
        .collect();
        for (i, a) in topics.iter().enumerate() {
            if topics[i + 1..].contains(a) {
                return Err(cfg(
                    "*_topic",
                    &format!("topic `{a}` is used for two purposes"),
                ));
            }
        }
        for key in self.client.keys() {
            if ENFORCED_PROPERTIES.contains(&key.as_str()) {
                return Err(KafkaError::Config {
                    key: format!("kafka.client.\"{key}\""),
                    message: "is set by Propensity itself (exactly-once and co-partitioning depend on it); use the [kafka] keys instead".into(),
                });
            }
        }
        Ok(())
    }

    /// Whether a client property's value is a secret.
    pub fn is_secret(property: &str) -> bool {
        SECRET_MARKERS.iter().any(|m| property.contains(m))
    }
}
