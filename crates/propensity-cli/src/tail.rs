//! `propensity tail offers|scores|decisions|conversions|dead-letters`: prints what the pipeline
//! publishes, as its consumers see it (committed transactions only), one
//! line per record on stdout, readable by default or as JSON lines with
//! `--json`. Owns the command's options, how each topic's records are
//! rendered (pure functions, tested here) and the read loop; the Kafka
//! client is `propensity_kafka::tail`.
//!
//! Tailing commits nothing and joins no group, so it can run beside the
//! pipeline and its real consumers without moving anyone's offsets.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use propensity_kafka::inspect::probe;
use propensity_kafka::shard::{ORIGINAL_SIZE_HEADER, TRUNCATED_HEADER};
use propensity_kafka::tail::{TailConsumer, TailRecord, TailStart};
use serde_json::Value;

use crate::config_file::Config;

/// How long the broker probe before the first read may take: long enough
/// for a remote cluster's metadata, short enough that a wrong address is
/// reported at once rather than after librdkafka's minute of retries.
pub const PROBE_TIMEOUT: Duration = Duration::from_secs(10);

/// Pretty lines show at most this much of a dead letter's value.
const VALUE_PREVIEW_CHARS: usize = 120;

/// The output topics there are to tail (their names come from `[kafka]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TailTopic {
    /// Engagement offers (`kafka.offers_topic`).
    Offers,
    /// Outcome scores (`kafka.scores_topic`; published only when set).
    Scores,
    /// Decision records (`kafka.decisions_topic`; published only when set).
    Decisions,
    /// Conversion records (`kafka.conversions_topic`; published only when
    /// set).
    Conversions,
    /// Dead letters (`kafka.dead_letter_topic`): the raw record and its
    /// headers (reason, origin, error).
    DeadLetters,
}

/// Options of `tail`.
#[derive(Debug, clap::Args)]
pub struct TailArgs {
    /// The output topic to read.
    #[arg(value_enum)]
    pub topic: TailTopic,
    /// Start with every record still in the topic (default: only records
    /// committed after the tail starts).
    #[arg(long)]
    pub from_beginning: bool,
    /// Exit (status 0) after this many records.
    #[arg(long, value_name = "N")]
    pub count: Option<u64>,
    /// Stop after this many seconds: status 0, or 1 when `--count` records
    /// did not come. Also bounds the broker probe.
    #[arg(long, value_name = "SECS")]
    pub timeout: Option<f64>,
    /// Raw JSON lines: offers and scores as published; dead letters as an
    /// object with their headers, key and value.
    #[arg(long)]
    pub json: bool,
}

/// `propensity tail`: reads until `--count` or `--timeout`, else until
/// killed. Each line is flushed as it is written, so `| head -1` and
/// `| grep` see records as they come.
pub fn run(config: &Config, args: &TailArgs, out: &mut dyn Write) -> Result<()> {
    let settings = &config.file.kafka;
    settings.validate()?;
    let (topic, key) = match args.topic {
        TailTopic::Offers => (&settings.offers_topic, "kafka.offers_topic"),
        TailTopic::Scores => (&settings.scores_topic, "kafka.scores_topic"),
        TailTopic::Decisions => (&settings.decisions_topic, "kafka.decisions_topic"),
        TailTopic::Conversions => (&settings.conversions_topic, "kafka.conversions_topic"),
        TailTopic::DeadLetters => (&settings.dead_letter_topic, "kafka.dead_letter_topic"),
    };
    if topic.is_empty() {
        let what = match args.topic {
            TailTopic::Decisions => "decisions are not published",
            TailTopic::Conversions => "conversions are not published",
            _ => "scores are not published",
        };
        let publishes = match args.topic {
            TailTopic::Decisions => "one record per action map decision",
            TailTopic::Conversions => {
                "one record per session that converted after an offered or held-out decision"
            }
            _ => "one score per scored event",
        };
        bail!(
            "{what}: `{key}` is empty in {}; set it (and restart `propensity run`) to publish {publishes}",
            config.origin
        );
    }
    let limit = match args.timeout {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            bail!("--timeout must be a positive number of seconds")
        }
        Some(s) => Some(Duration::from_secs_f64(s)),
        None => None,
    };
    let started = Instant::now();
    let cluster = probe(
        settings,
        limit.map_or(PROBE_TIMEOUT, |l| l.min(PROBE_TIMEOUT)),
    )?;
    let Some(layout) = cluster.get(topic.as_str()) else {
        bail!(
            "topic `{topic}` (`{key}`) does not exist on `{}`: run `propensity topics create`, or check the topic names in {}",
            settings.brokers,
            config.origin
        );
    };
    let start = if args.from_beginning {
        TailStart::Beginning
    } else {
        TailStart::End
    };
    let consumer = TailConsumer::new(settings, topic, &layout.partitions, start)?;
    tracing::info!(
        topic = %topic,
        partitions = layout.partitions.len(),
        from = if args.from_beginning { "beginning" } else { "end" },
        "tailing"
    );
    let mut seen = 0u64;
    loop {
        if args.count.is_some_and(|n| seen >= n) {
            return Ok(());
        }
        let wait = match limit {
            Some(l) => match l.checked_sub(started.elapsed()) {
                Some(left) => left.min(Duration::from_millis(500)),
                None => break,
            },
            None => Duration::from_millis(500),
        };
        match consumer.next(wait) {
            Ok(Some(record)) => {
                let line = if args.json {
                    json_line(args.topic, &record)
                } else {
                    pretty_line(args.topic, &record)
                };
                writeln!(out, "{line}")?;
                out.flush()?;
                seen += 1;
            }
            Ok(None) => {}
            // librdkafka retries broker trouble itself; say it and wait on.
            Err(e) => {
                tracing::warn!(topic = %topic, error = %e, "reading the topic failed; retrying")
            }
        }
    }
    match args.count {
        Some(n) if seen < n => bail!(
            "{seen} of {n} records from `{topic}` within the --timeout of {:.1} s",
            limit.unwrap_or_default().as_secs_f64()
        ),
        _ => Ok(()),
    }
}

/// `--json`: offers and scores exactly as published (one JSON object per
/// line already); dead letters, whose value may be anything, as an object.
pub fn json_line(topic: TailTopic, r: &TailRecord) -> String {
    match (topic, &r.value) {
        (TailTopic::DeadLetters, _) => dead_letter_json(r).to_string(),
        (_, Some(v)) => String::from_utf8_lossy(v).trim_end().to_owned(),
        (_, None) => "null".to_owned(),
    }
}

/// A dead letter as one JSON object: where it is, its key, its headers
/// (reason, origin, error: `DeadLetterSource::record` in
/// `propensity_kafka::shard` writes them) and its value, as text when it is
/// UTF-8, else base64.
fn dead_letter_json(r: &TailRecord) -> Value {
    let headers: BTreeMap<&str, String> = r
        .headers
        .iter()
        .map(|(k, v)| (k.as_str(), String::from_utf8_lossy(v).into_owned()))
        .collect();
    let mut o = serde_json::json!({
        "partition": r.partition,
        "offset": r.offset,
        "timestamp_ms": r.timestamp_ms,
        "key": r.key.as_deref().map(String::from_utf8_lossy),
        "headers": headers,
        "value": Value::Null,
    });
    if let Some(v) = &r.value {
        match std::str::from_utf8(v) {
            Ok(text) => o["value"] = Value::from(text),
            Err(_) => {
                use base64::Engine as _;
                o["value_base64"] =
                    Value::from(base64::engine::general_purpose::STANDARD.encode(v));
            }
        }
    }
    o
}

/// The readable line of a record.
pub fn pretty_line(topic: TailTopic, r: &TailRecord) -> String {
    let parsed = r
        .value
        .as_deref()
        .and_then(|v| serde_json::from_slice::<Value>(v).ok());
    match (topic, parsed) {
        (TailTopic::DeadLetters, _) => pretty_dead_letter(r),
        (TailTopic::Offers, Some(o)) => pretty_offer(&o),
        (TailTopic::Scores, Some(s)) => pretty_score(&s),
        (TailTopic::Decisions, Some(d)) => pretty_decision(&d),
        (TailTopic::Conversions, Some(c)) => pretty_conversion(&c),
        (_, None) => format!(
            "p{}@{} not JSON ({} bytes)",
            r.partition,
            r.offset,
            r.value.as_ref().map_or(0, Vec::len)
        ),
    }
}

fn text<'v>(v: &'v Value, field: &str) -> &'v str {
    v[field].as_str().unwrap_or("?")
}

/// `<event time>  offer <outcome> <p> → <action> (<map>, <purpose>)  visitor <id>: <reasons>`.
fn pretty_offer(o: &Value) -> String {
    let reasons: Vec<&str> = o["explanation"]
        .as_array()
        .map(|r| r.iter().filter_map(|x| x["label"].as_str()).collect())
        .unwrap_or_default();
    let mut line = format!(
        "{}  offer {} {:.3} → {} ({}, {})  visitor {} session {}",
        text(o, "event_time"),
        text(o, "outcome"),
        o["probability"].as_f64().unwrap_or(f64::NAN),
        o["action"]["type"].as_str().unwrap_or("?"),
        text(o, "action_map"),
        text(o, "purpose"),
        text(o, "visitor_id"),
        text(o, "session_id"),
    );
    if !reasons.is_empty() {
        line.push_str(": ");
        line.push_str(&reasons.join("; "));
    }
    line
}

/// `<event time>  score <outcome> <p>  visitor <id> session <id> event <id> (<model>)`.
fn pretty_score(s: &Value) -> String {
    format!(
        "{}  score {} {:.3}  visitor {} session {} event {} ({})",
        text(s, "event_time"),
        text(s, "outcome"),
        s["probability"].as_f64().unwrap_or(f64::NAN),
        text(s, "visitor_id"),
        text(s, "session_id"),
        text(s, "event_id"),
        text(s, "model_version"),
    )
}

/// `<event time>  decision <map> <kind> (<arm>) <outcome> <p>  visitor <id> session <id> event <id>`.
fn pretty_decision(d: &Value) -> String {
    format!(
        "{}  decision {} {} ({}) {} {:.3}  visitor {} session {} event {}",
        text(d, "event_time"),
        text(d, "action_map"),
        text(d, "decision"),
        text(d, "arm"),
        text(d, "outcome"),
        d["probability"].as_f64().unwrap_or(f64::NAN),
        text(d, "visitor_id"),
        text(d, "session_id"),
        text(d, "trigger_event_id"),
    )
}

/// `<event time>  conversion <map> (<arm>) <outcome>  visitor <id> session <id> event <id>`.
fn pretty_conversion(c: &Value) -> String {
    format!(
        "{}  conversion {} ({}) {}  visitor {} session {} event {}",
        text(c, "event_time"),
        text(c, "action_map"),
        text(c, "arm"),
        text(c, "outcome"),
        text(c, "visitor_id"),
        text(c, "session_id"),
        text(c, "event_id"),
    )
}

/// `dead letter <reason>  from <topic>/<partition>@<offset>  key <k>: <error>  value (<n> bytes): <preview>`.
fn pretty_dead_letter(r: &TailRecord) -> String {
    let header = |name: &str| {
        r.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
    };
    let or_unknown = |name: &str| header(name).unwrap_or_else(|| "?".to_owned());
    let mut line = format!(
        "dead letter {}  from {}/{}@{}",
        or_unknown("propensity.reason"),
        or_unknown("__connect.errors.topic"),
        or_unknown("__connect.errors.partition"),
        or_unknown("__connect.errors.offset"),
    );
    if let Some(k) = &r.key {
        line.push_str(&format!("  key {}", quoted(&String::from_utf8_lossy(k))));
    }
    if let Some(message) = header("__connect.errors.exception.message") {
        line.push_str(&format!(": {message}"));
    }
    let size = r.value.as_ref().map_or(0, Vec::len);
    line.push_str(&format!("  value ({size} bytes"));
    if header(TRUNCATED_HEADER).as_deref() == Some("true") {
        line.push_str(&format!(
            ", cut from {}",
            header(ORIGINAL_SIZE_HEADER).unwrap_or_else(|| "?".to_owned())
        ));
    }
    line.push(')');
    if let Some(v) = r.value.as_deref().filter(|v| !v.is_empty()) {
        let preview: String = String::from_utf8_lossy(v)
            .chars()
            .take(VALUE_PREVIEW_CHARS)
            .collect();
        let more = if preview.len() < size { "…" } else { "" };
        line.push_str(&format!(": {}{more}", quoted(&preview)));
    }
    line
}

/// A string as a JSON literal: quotes, and control characters (newlines of
/// a garbage record) escaped, so one record stays one line.
fn quoted(s: &str) -> String {
    Value::from(s).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(value: &[u8], headers: &[(&str, &str)]) -> TailRecord {
        TailRecord {
            partition: 2,
            offset: 41,
            timestamp_ms: Some(1_700_000_000_000),
            key: Some(b"v-1".to_vec()),
            value: Some(value.to_vec()),
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.as_bytes().to_vec()))
                .collect(),
        }
    }

    const OFFER: &str = r#"{"offer_id":"o1","visitor_id":"ana","session_id":"s1","action_map":"checkout-assist-chat","action":{"type":"chat","queue":"q"},"purpose":"sales","outcome":"purchase","probability":0.5713,"model_version":"m","trigger_event_id":"a3","event_time":"2026-11-29T10:00:45.000Z","decided_at":"2026-11-29T10:00:45.000Z","explanation":[{"feature":"events.total","value":3.0,"contribution":1.9,"label":"3 events in this session"},{"feature":"views.cart","value":1.0,"contribution":0.3,"label":"viewed cart pages once"}]}"#;

    #[test]
    fn json_lines_are_the_published_values() {
        let r = record(format!("{OFFER}\n").as_bytes(), &[]);
        assert_eq!(json_line(TailTopic::Offers, &r), OFFER);
    }

    #[test]
    fn an_offer_reads_as_one_line_with_its_reasons() {
        let line = pretty_line(TailTopic::Offers, &record(OFFER.as_bytes(), &[]));
        assert_eq!(
            line,
            "2026-11-29T10:00:45.000Z  offer purchase 0.571 → chat (checkout-assist-chat, sales)  visitor ana session s1: 3 events in this session; viewed cart pages once"
        );
    }

    #[test]
    fn a_score_reads_as_one_line() {
        let s = r#"{"event_id":"b1","visitor_id":"ben","session_id":"s2","outcome":"purchase","probability":0.33558,"model_version":"purchase-c3","event_time":"2026-11-29T10:00:02.000Z"}"#;
        assert_eq!(
            pretty_line(TailTopic::Scores, &record(s.as_bytes(), &[])),
            "2026-11-29T10:00:02.000Z  score purchase 0.336  visitor ben session s2 event b1 (purchase-c3)"
        );
    }

    #[test]
    fn a_decision_reads_as_one_line() {
        let d = r#"{"decision_id":"4f1c2b9e8d7a6b5c4d3e2f1a0b9c8d7e","visitor_id":"ana","session_id":"s1","action_map":"checkout-assist-chat","outcome":"purchase","decision":"held_out","arm":"control","probability":0.6123,"model_version":"purchase-c3","trigger_event_id":"a7","event_time":"2026-11-29T10:00:35.000Z"}"#;
        assert_eq!(
            pretty_line(TailTopic::Decisions, &record(d.as_bytes(), &[])),
            "2026-11-29T10:00:35.000Z  decision checkout-assist-chat held_out (control) purchase 0.612  visitor ana session s1 event a7"
        );
        assert_eq!(
            json_line(TailTopic::Decisions, &record(d.as_bytes(), &[])),
            d
        );
    }

    #[test]
    fn a_conversion_reads_as_one_line() {
        let c = r#"{"conversion_id":"9a0c4e1f2b3d5a6c7e8f9a0b1c2d3e4f","visitor_id":"ana","session_id":"s1","action_map":"checkout-assist-chat","outcome":"purchase","arm":"control","event_id":"a9","event_time":"2026-11-29T10:01:05.000Z"}"#;
        assert_eq!(
            pretty_line(TailTopic::Conversions, &record(c.as_bytes(), &[])),
            "2026-11-29T10:01:05.000Z  conversion checkout-assist-chat (control) purchase  visitor ana session s1 event a9"
        );
    }

    #[test]
    fn a_dead_letter_shows_its_headers_and_stays_on_one_line() {
        let r = record(
            b"not\njson",
            &[
                ("__connect.errors.topic", "visitor-events"),
                ("__connect.errors.partition", "2"),
                ("__connect.errors.offset", "40"),
                ("__connect.errors.exception.message", "expected value"),
                ("propensity.reason", "invalid_json"),
            ],
        );
        let line = pretty_line(TailTopic::DeadLetters, &r);
        assert_eq!(
            line,
            r#"dead letter invalid_json  from visitor-events/2@40  key "v-1": expected value  value (8 bytes): "not\njson""#
        );
        let json: Value =
            serde_json::from_str(&json_line(TailTopic::DeadLetters, &r)).expect("JSON");
        assert_eq!(json["headers"]["propensity.reason"], "invalid_json");
        assert_eq!(json["value"], "not\njson");
        assert_eq!(json["key"], "v-1");
    }

    #[test]
    fn a_cut_dead_letter_says_so_and_bytes_that_are_not_text_go_base64() {
        let r = record(
            &[0xff, 0xfe],
            &[
                ("propensity.reason", "too_large"),
                (TRUNCATED_HEADER, "true"),
                (ORIGINAL_SIZE_HEADER, "1048576"),
            ],
        );
        assert!(
            pretty_line(TailTopic::DeadLetters, &r).contains("value (2 bytes, cut from 1048576)")
        );
        let json: Value =
            serde_json::from_str(&json_line(TailTopic::DeadLetters, &r)).expect("JSON");
        assert_eq!(json["value_base64"], "//4=");
        assert_eq!(json["value"], Value::Null);
    }
}
