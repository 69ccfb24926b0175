//! `propensity config-reference`: every configuration key with its
//! default, its environment variable and what it means.
//!
//! The defaults are not written here: they come from the embedded
//! `config/propensity.toml` as the binary parses it (and, where a key left
//! out of a `--config` file takes another value, from the structs' own
//! defaults), so they cannot drift from what runs. The meanings are the one
//! hand-written part, in [`KEYS`]; the tests hold that table, the shipped
//! file and the parsed configuration to the same set of keys, so a new key
//! without a meaning, or a meaning without a key, fails the build.

use std::collections::BTreeMap;
use std::io::Write;

use anyhow::{Context, Result};

use crate::config_file::{Config, EMBEDDED_CONFIG};

/// The key path of every librdkafka property under `[kafka.client]`; the
/// table has no fixed keys.
const CLIENT_PROPERTY: &str = "kafka.client.<property>";

/// Array items are written `section[]`: their keys are the same for every
/// item, and an item is set in a file only (arrays of tables have no
/// environment variable).
const ITEM: &str = "[]";

/// Every key and what it means, in the order of the shipped file.
pub const KEYS: &[(&str, &str)] = &[
    ("consent.mode", "`opt_in`: a visitor without a consent record is not tracked (events wait in the pre-consent buffer, then are dropped); `opt_out`: tracked until a record says otherwise"),
    ("consent.opt_out_default_purposes", "purposes a visitor without a record has in `opt_out` mode"),
    ("consent.buffer_ttl_secs", "how long (event time) an event may wait for its visitor's first consent record"),
    ("consent.buffer_max_per_visitor", "events waiting for consent per visitor; more are dropped (`pre_consent_overflow`)"),
    ("consent.buffer_max_total", "events waiting for consent per Kafka partition; more are dropped"),
    ("sessions.inactivity_timeout_secs", "without an explicit `session_id`, a gap longer than this starts a new session"),
    ("sessions.visitor_idle_expiry_secs", "visitor state is forgotten after this much event-time inactivity (bounds memory); at least `inactivity_timeout_secs`"),
    ("sessions.allowed_lateness_secs", "events older than the visitor's newest by more than this are dropped as `late`"),
    ("sessions.max_event_ids_per_session", "event ids remembered per session to drop duplicates"),
    ("input.max_record_bytes", "larger records are dead-lettered as `too_large`"),
    ("features.vocabulary_max_values", "open-ended values (browser, OS, source, …) that get a feature of their own, per field, most frequent first; changing it changes the feature fingerprint"),
    ("features.vocabulary_min_count", "events a value needs in the training data to get a feature of its own"),
    ("features.max_dwell_secs", "dwell time on one page is capped at this"),
    ("features.page_categories[].name", "a page category (a feature per category)"),
    ("features.page_categories[].exact", "URL paths in this category exactly"),
    ("features.page_categories[].prefixes", "URL path prefixes of this category; the longest match wins, anything else is `other`"),
    ("outcomes[].name", "an outcome to predict; its model is `<models.dir>/<name>.json`"),
    ("outcomes[].achieved_when.event_type", "the session achieves the outcome with an event of this type (all given fields must match)"),
    ("outcomes[].achieved_when.url_path", "… on a URL path matching this glob (`*` = anything)"),
    ("outcomes[].achieved_when.form_id", "… with a form event of this form id"),
    ("outcomes[].achieved_when.form_action", "… with this form action (`started`, `submitted`, `abandoned`)"),
    ("outcomes[].achieved_when.custom_name", "… with a custom event of this name"),
    ("offers.max_per_session", "at most this many offers per session, across all action maps"),
    ("offers.min_gap_secs", "minimum event-time gap between two offers to the same visitor"),
    ("offers.attribution_window_secs", "conversions count when the outcome is achieved within this many seconds of the session's latest offered or held-out decision; 0 = the rest of the session"),
    ("offers.holdout_period", "how long a visitor stays in one arm of a control group: `day`, `week`, `month` or `never` (UTC, by event time)"),
    ("action_maps[].name", "unique name of the action map; appears in offers and metrics"),
    ("action_maps[].outcome", "the outcome whose probability drives the trigger"),
    ("action_maps[].trigger.kind", "`at_or_above`: fires while P(outcome) >= threshold; `falls_to`: fires when it falls from above the threshold to it or below; `top_percent`: fires while the score is in the top `value` % of the model's training scores"),
    ("action_maps[].trigger.threshold", "probability threshold in [0, 1] (`at_or_above`, `falls_to`)"),
    ("action_maps[].trigger.value", "`top_percent` only: share of the training population's scores, in percent, 1 to 99"),
    ("action_maps[].purpose", "consent purpose the offer needs (`support`, `sales`, `marketing`)"),
    ("action_maps[].priority", "higher wins when several maps fire on one event (ties: by name)"),
    ("action_maps[].max_per_session", "at most this many offers of this map per session"),
    ("action_maps[].contact_policy.max_declines", "optional contact policy: declined offers (feedback) that suppress the map for the visitor"),
    ("action_maps[].contact_policy.within_days", "the declines count within this many days (default 30); an acceptance or a suppression starts the count anew"),
    ("action_maps[].contact_policy.suppress_days", "how long the map then makes no offer to the visitor (decisions `contact_policy`)"),
    ("action_maps[].holdout_fraction", "share of visitors in the map's control group, in [0, 1): their decisions are `held_out` (caps consumed, nothing sent); 0 = no control group"),
    ("action_maps[].conditions.min_events", "optional: processed events the session needs"),
    ("action_maps[].conditions.url_pattern", "optional: glob on the current page's URL path"),
    ("action_maps[].conditions.device_categories", "optional: allowed device categories"),
    ("action_maps[].conditions.traffic_sources", "optional: allowed traffic sources (case-insensitive)"),
    ("action_maps[].action.type", "what to offer: `chat`, `callback`, `content_offer` or `webhook`"),
    ("action_maps[].action.queue", "`chat` and `callback`: the queue the offer goes to"),
    ("action_maps[].action.content_id", "`content_offer`: the content to offer"),
    ("action_maps[].action.url", "`webhook`: the URL to call"),
    ("models.dir", "directory of model artifacts (`<outcome>.json`), relative to the working directory"),
    ("models.watch_interval_secs", "how often `run` checks the directory for new artifacts (0: only on SIGHUP)"),
    ("adaptive.outcomes", "outcomes whose model also learns online (FTRL-Proximal) from the sessions it resolves; empty: none"),
    ("adaptive.role", "`challenger` (scored in shadow beside the trained champion) or `champion` (serves and drives offers)"),
    ("adaptive.alpha", "FTRL learning-rate scale: per feature the rate is alpha / (beta + sqrt(n))"),
    ("adaptive.beta", "FTRL learning-rate offset"),
    ("adaptive.l1", "FTRL L1 regularisation"),
    ("adaptive.l2", "FTRL L2 regularisation"),
    ("adaptive.prior_sessions", "resolved sessions the warm start counts as already seen: larger keeps the trained weights longer"),
    ("training.l2", "L2 penalty at the centre of the regularization grid `train` searches"),
    ("training.max_iterations", "L-BFGS iteration cap per fit"),
    ("training.negative_to_positive_max", "negatives are undersampled to at most this many per positive (the intercept is corrected for it)"),
    ("training.holdout_fraction", "fraction of sessions held out for evaluation"),
    ("training.seed", "seed of the holdout split and the undersampling"),
    ("training.min_positives", "outcomes with fewer positive examples are skipped (warning, no artifact)"),
    ("training.auc_floor", "a model whose holdout AUC is below this gets a warning"),
    ("training.max_calibration_error", "a model whose holdout expected calibration error is above this gets a warning"),
    ("kafka.brokers", "bootstrap servers of the cluster (`host:port,host:port`)"),
    ("kafka.group_id", "consumer group shared by all instances"),
    ("kafka.events_topic", "input: visitor events, keyed by visitor_id (murmur2)"),
    ("kafka.consent_topic", "input: consent records, compacted, co-partitioned with events"),
    ("kafka.offers_topic", "output: engagement offers (exactly once)"),
    ("kafka.scores_topic", "output: outcome scores; empty: not published"),
    ("kafka.decisions_topic", "output: decision records (one per action map whose trigger and conditions held: offered, held_out, capped, no_purpose, lower_priority, contact_policy); empty: not published"),
    ("kafka.feedback_topic", "input: offer feedback (shown, accepted, declined, ignored, expired), keyed by visitor_id, co-partitioned with events; counted per map and status and driving contact policies; empty: not consumed"),
    ("kafka.conversions_topic", "output: conversion records (a session with an offered or held_out decision of a map achieved its outcome; one per map and arm); empty: not published"),
    ("kafka.dead_letter_topic", "output: dead letters (original key and value, reason in headers)"),
    ("kafka.changelog_topic", "internal: session and frequency-cap state, compacted, co-partitioned"),
    ("kafka.partitions", "partitions of the topics `topics create` makes; caps how many instances do work"),
    ("kafka.replication_factor", "replication factor of the topics `topics create` makes"),
    ("kafka.commit_interval_ms", "how often the open transaction commits: the lower bound on event-to-offer latency"),
    ("kafka.transactional_id_prefix", "transactional ids are `<prefix>-<group_id>-<instance id>`"),
    ("kafka.max_in_flight_bytes", "bound on consumed-but-uncommitted and queued bytes (backpressure)"),
    ("kafka.drain_timeout_secs", "on SIGTERM/SIGINT, time allowed to commit and leave; keep it below the orchestrator's kill timeout"),
    ("kafka.statistics_interval_ms", "how often consumer lag and the stall check are refreshed (100 … 3,600,000)"),
    ("kafka.stall_timeout_secs", "a partition with lag that commits nothing for this long is stalled (`/readyz` 503)"),
    ("kafka.drift_window_secs", "drift monitoring: PSI of scores and features over the committed work of this many seconds (1 … 604,800)"),
    ("kafka.drift_min_events", "drift monitoring: a model's PSI is published once its window holds this many scored events"),
    ("kafka.online_eval_window_secs", "online evaluation: AUC, log loss, Brier and calibration over the sessions resolved in this many seconds of committed work (1 … 604,800)"),
    ("kafka.online_eval_min_sessions", "online evaluation: figures are published once the window holds this many resolved sessions"),
    ("kafka.online_auc_floor", "the `OnlineAucLow` alert fires while a model's online AUC is below this (0 … 1)"),
    ("kafka.probe_timeout_secs", "how long a command waits for the brokers' first answer: `topics create`, `produce` and `bench --kafka` then fail naming the broker, `run` reports it in `/readyz` and retries with backoff"),
    ("kafka.workers", "threads that process a batch's events, one partition at a time per thread; 0: one per core; outputs are the same for any value"),
    (CLIENT_PROPERTY, "librdkafka properties passed to every client as strings (SASL, SSL, timeouts); the environment variable reads `_` as `.`; properties exactly-once depends on are refused"),
    ("http.listen", "address of `/metrics`, `/healthz`, `/readyz` and the admin API"),
    ("http.admin_token", "bearer token of the admin API; empty: the admin API is off"),
    ("logging.format", "`text` for humans, `json` for log pipelines"),
    ("logging.filter", "`RUST_LOG`-style filter; the `RUST_LOG` variable wins when set"),
];

/// One key of the reference.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Entry {
    /// Dotted key path (`kafka.partitions`, `outcomes[].name`).
    pub key: &'static str,
    /// The value without `--config` (the embedded file), as TOML; `None`
    /// for keys the embedded file leaves unset.
    pub default: Option<String>,
    /// The value a `--config` file that leaves the key out gets, when it
    /// differs from `default`.
    pub when_omitted: Option<String>,
    /// The environment variable that overrides it, if any.
    pub env: Option<String>,
    /// What it means.
    pub meaning: &'static str,
}

/// Key paths and values of a configuration, arrays of tables merged per
/// key (`outcomes[].name` → every item's value), `[kafka.client]` as one key.
pub fn flatten(value: &toml::Table) -> BTreeMap<String, Vec<toml::Value>> {
    fn walk(prefix: &str, table: &toml::Table, out: &mut BTreeMap<String, Vec<toml::Value>>) {
        for (k, v) in table {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            if path == "kafka.client" {
                let entry = out.entry(CLIENT_PROPERTY.to_owned()).or_default();
                entry.extend(v.as_table().into_iter().flat_map(|t| t.values().cloned()));
                continue;
            }
            match v {
                toml::Value::Table(t) => walk(&path, t, out),
                toml::Value::Array(items)
                    if !items.is_empty() && items.iter().all(toml::Value::is_table) =>
                {
                    for item in items.iter().filter_map(toml::Value::as_table) {
                        walk(&format!("{path}{ITEM}"), item, out);
                    }
                }
                other => out.entry(path).or_default().push(other.clone()),
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// The environment variable of a key, if it has one.
fn env_name(key: &str) -> Option<String> {
    if key.contains(ITEM) {
        return None;
    }
    if key == CLIENT_PROPERTY {
        return Some("PROPENSITY__KAFKA__CLIENT__<PROPERTY>".to_owned());
    }
    Some(format!(
        "PROPENSITY__{}",
        key.split('.')
            .map(str::to_ascii_uppercase)
            .collect::<Vec<_>>()
            .join("__")
    ))
}

/// A configuration as parsed and written back: every key it knows with
/// the value it has, defaults filled in.
fn effective(text: &str) -> Result<BTreeMap<String, Vec<toml::Value>>> {
    let config = Config::from_text("<embedded default>", text, std::iter::empty())?;
    let value = toml::Table::try_from(&config.file).context("cannot write the configuration")?;
    Ok(flatten(&value))
}

/// One key's value for the reference: scalar keys as they are, keys of
/// array items not at all (every item has its own).
fn shown(key: &str, values: Option<&Vec<toml::Value>>) -> Option<String> {
    if key.contains(ITEM) || key == CLIENT_PROPERTY {
        return None;
    }
    values.and_then(|v| v.first()).map(toml::Value::to_string)
}

/// The reference, generated from the embedded configuration.
pub fn reference() -> Result<Vec<Entry>> {
    let embedded = effective(EMBEDDED_CONFIG)?;
    // The least a `--config` file must hold (the features and outcomes
    // have no defaults); everything else takes the structs' defaults.
    let shipped: toml::Table = toml::from_str(EMBEDDED_CONFIG)?;
    let mut minimal = toml::Table::new();
    for section in ["features", "outcomes"] {
        if let Some(v) = shipped.get(section) {
            minimal.insert(section.to_owned(), v.clone());
        }
    }
    if let Some(features) = minimal
        .get_mut("features")
        .and_then(toml::Value::as_table_mut)
    {
        features.retain(|k, _| k == "page_categories");
    }
    let omitted = effective(&toml::to_string(&minimal)?)?;
    Ok(KEYS
        .iter()
        .map(|&(key, meaning)| {
            let default = shown(key, embedded.get(key));
            let when_omitted = shown(key, omitted.get(key)).filter(|o| Some(o) != default.as_ref());
            Entry {
                key,
                default,
                when_omitted,
                env: env_name(key),
                meaning,
            }
        })
        .collect())
}

/// Prints the reference, one block per key.
pub fn print(entries: &[Entry], json: bool, out: &mut impl Write) -> Result<()> {
    if json {
        writeln!(out, "{}", serde_json::to_string_pretty(entries)?)?;
        return Ok(());
    }
    writeln!(
        out,
        "# Every configuration key: its default (the embedded config/propensity.toml), the\n\
         # environment variable that overrides it, and what it means. `--config FILE`\n\
         # replaces the embedded file as a whole; a key FILE leaves out takes the value\n\
         # shown as \"left out\" where that differs. Keys with [] belong to each item of\n\
         # an array of tables and are set in the file only."
    )?;
    for e in entries {
        writeln!(out)?;
        writeln!(out, "{}", e.key)?;
        match (&e.default, &e.when_omitted) {
            (Some(d), Some(o)) => {
                writeln!(out, "    default:  {d} (left out of a --config file: {o})")?
            }
            (Some(d), None) => writeln!(out, "    default:  {d}")?,
            (None, Some(o)) => writeln!(out, "    default:  {o}")?,
            (None, None) => {}
        }
        if let Some(env) = &e.env {
            writeln!(out, "    env:      {env}")?;
        }
        writeln!(out, "    {}", e.meaning)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn documented() -> BTreeSet<&'static str> {
        KEYS.iter().map(|(k, _)| *k).collect()
    }

    /// Keys of array items that neither the shipped file nor the parsed
    /// configuration shows (optional fields no shipped item uses); each is
    /// checked to be accepted by the parser below.
    const OPTIONAL_ITEM_KEYS: [&str; 8] = [
        "outcomes[].achieved_when.custom_name",
        "action_maps[].conditions.device_categories",
        "action_maps[].conditions.traffic_sources",
        "action_maps[].action.url",
        "action_maps[].trigger.value",
        "action_maps[].contact_policy.max_declines",
        "action_maps[].contact_policy.within_days",
        "action_maps[].contact_policy.suppress_days",
    ];

    #[test]
    fn every_shipped_key_is_in_the_reference_and_every_reference_key_is_shipped() {
        let shipped: BTreeSet<String> = flatten(&toml::from_str(EMBEDDED_CONFIG).unwrap())
            .into_keys()
            .collect();
        let parsed: BTreeSet<String> = effective(EMBEDDED_CONFIG).unwrap().into_keys().collect();
        let documented = documented();
        for key in shipped.iter().chain(&parsed) {
            assert!(
                documented.contains(key.as_str()),
                "`{key}` is a configuration key without a meaning in config_reference::KEYS"
            );
        }
        for key in &documented {
            let known = shipped.contains(*key)
                || (key.contains(ITEM) && parsed.contains(*key))
                || OPTIONAL_ITEM_KEYS.contains(key);
            assert!(
                known || *key == CLIENT_PROPERTY,
                "`{key}` is in config_reference::KEYS but not in config/propensity.toml"
            );
        }
        assert_eq!(KEYS.len(), documented.len(), "a key is documented twice");
    }

    #[test]
    fn optional_item_keys_are_real() {
        let text = EMBEDDED_CONFIG
            .replace(
                "achieved_when = { event_type = \"page_view\", url_path = \"/checkout/complete\" }",
                "achieved_when = { custom_name = \"bought\" }",
            )
            .replace(
                "conditions = { min_events = 5 }",
                "conditions = { min_events = 5, device_categories = [\"desktop\"], traffic_sources = [\"email\"] }",
            )
            .replace(
                "action = { type = \"callback\", queue = \"loan-advisors\" }",
                "action = { type = \"webhook\", url = \"https://example.com/hook\" }",
            )
            .replace(
                "trigger = { kind = \"falls_to\", threshold = 0.15 }",
                "trigger = { kind = \"top_percent\", value = 10 }\ncontact_policy = { max_declines = 3, within_days = 30, suppress_days = 5 }",
            );
        let parsed = effective(&text).unwrap();
        for key in OPTIONAL_ITEM_KEYS {
            assert!(
                parsed.contains_key(key),
                "{key} is not a key the parser knows"
            );
        }
    }

    #[test]
    fn defaults_and_variables_come_from_the_parsed_configuration() {
        let entries = reference().unwrap();
        let get = |k: &str| entries.iter().find(|e| e.key == k).unwrap();
        assert_eq!(get("kafka.partitions").default.as_deref(), Some("6"));
        assert_eq!(
            get("kafka.partitions").env.as_deref(),
            Some("PROPENSITY__KAFKA__PARTITIONS")
        );
        assert_eq!(
            get("kafka.brokers").default.as_deref(),
            Some("\"127.0.0.1:9092\"")
        );
        assert_eq!(
            get("kafka.probe_timeout_secs").default.as_deref(),
            Some("5.0")
        );
        assert_eq!(get("outcomes[].name").env, None);
        assert_eq!(
            get(CLIENT_PROPERTY).env.as_deref(),
            Some("PROPENSITY__KAFKA__CLIENT__<PROPERTY>")
        );
        // Every key with a value in the embedded file shows it.
        let parsed = effective(EMBEDDED_CONFIG).unwrap();
        for e in &entries {
            if !e.key.contains(ITEM) && e.key != CLIENT_PROPERTY {
                assert!(
                    e.default.is_some() && parsed.contains_key(e.key),
                    "{}",
                    e.key
                );
            }
        }
        let mut text = Vec::new();
        print(&entries, false, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert!(
            text.contains(
                "kafka.partitions\n    default:  6\n    env:      PROPENSITY__KAFKA__PARTITIONS\n"
            ),
            "{text}"
        );
    }
}
