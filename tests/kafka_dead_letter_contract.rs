//! The dead-letter topic's contract, checked against real dead letters:
//! `docs/wire-contract.md` ("On the dead-letter topic") documents the
//! headers in a table, `config/schemas/dead-letter-headers.schema.json` is
//! the same table as a JSON Schema, and the runtime writes the records.
//! All three must agree, so a change on any side fails here:
//!
//! - the documented table and the schema name the same headers, with the
//!   same ones always present, and the schema's reason codes are exactly
//!   the engine's plus `unproducible`;
//! - a `propensity run` instance dead-letters one record of every kind it
//!   can (each event reason, a bad consent record, a consent tombstone with
//!   a key that is not UTF-8, an empty value, a value cut to fit the
//!   producer, a value the broker refuses); every dead letter read back
//!   from the broker carries only documented headers, once each, every
//!   always-present one, and validates against the schema;
//! - key and value are the input record's own bytes (cut or absent exactly
//!   when the headers say so), and the origin headers point at the input
//!   record;
//! - every documented header occurs on some real dead letter (the table
//!   promises nothing the runtime never writes).
//!
//! The offline format (`replay --dead-letters-out`, JSON lines) is checked
//! against `dead-letter.schema.json` by the engine's schema tests.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use propensity_engine::wire::DeadLetterReason;
use propensity_kafka::shard::UNPRODUCIBLE_REASON;
use propensity_system_tests::{
    set_max_message_bytes, workspace_root, AckProducer, Deployment, Record,
};
use serde_json::Value;

/// `input.max_record_bytes` of the instance: small, so that `too_large`
/// and the two size cases below need no multi-megabyte records but one.
const MAX_RECORD_BYTES: usize = 8_000;
/// The dead-letter topic's `max.message.bytes` while the small records are
/// dead-lettered: above every small dead letter, below the refused one.
const DLQ_LIMIT_SMALL: &str = "20000";
/// Then raised so that a dead letter cut to the producer's
/// `message.max.bytes` (1,000,000) fits.
const DLQ_LIMIT_LARGE: &str = "2000000";

/// One row of the documented header table.
#[derive(Debug)]
struct DocumentedHeader {
    name: String,
    always: bool,
}

/// The rows of the table under "On the dead-letter topic" in
/// docs/wire-contract.md: `| \`name\` | present | value |`.
fn documented_headers() -> Vec<DocumentedHeader> {
    let path = workspace_root().join("docs/wire-contract.md");
    let text = std::fs::read_to_string(&path).expect("docs/wire-contract.md");
    let section = text
        .split_once("### On the dead-letter topic")
        .map(|(_, rest)| rest)
        .expect("docs/wire-contract.md has no section `### On the dead-letter topic`");
    let table = section
        .split_once("| header | present | value |")
        .map(|(_, rest)| rest)
        .expect("the section has no `| header | present | value |` table");
    let rows: Vec<DocumentedHeader> = table
        .lines()
        .skip(2) // the rest of the header line, then `| --- | … |`
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            let cells: Vec<&str> = l.trim_matches('|').split('|').map(str::trim).collect();
            DocumentedHeader {
                name: cells[0].trim_matches('`').to_owned(),
                always: cells[1] == "always",
            }
        })
        .collect();
    assert!(rows.len() >= 6, "header table too short: {rows:?}");
    rows
}

fn headers_schema() -> Value {
    let path = workspace_root().join("config/schemas/dead-letter-headers.schema.json");
    let text = std::fs::read_to_string(&path).expect("dead-letter-headers.schema.json");
    serde_json::from_str(&text).expect("dead-letter-headers.schema.json is not JSON")
}

fn string_set(v: &Value) -> BTreeSet<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn documented_header_table_and_schema_agree() {
    let doc = documented_headers();
    let schema = headers_schema();
    let documented: BTreeSet<String> = doc.iter().map(|h| h.name.clone()).collect();
    let in_schema: BTreeSet<String> = schema["properties"]
        .as_object()
        .expect("schema properties")
        .keys()
        .cloned()
        .collect();
    assert_eq!(
        documented, in_schema,
        "docs/wire-contract.md's header table and dead-letter-headers.schema.json name different headers"
    );
    let always: BTreeSet<String> = doc
        .iter()
        .filter(|h| h.always)
        .map(|h| h.name.clone())
        .collect();
    assert_eq!(
        always,
        string_set(&schema["required"]),
        "the headers documented as `always` are not the schema's required ones"
    );
    assert_eq!(
        schema["additionalProperties"], false,
        "the schema must be closed"
    );
    let mut reasons: BTreeSet<String> = DeadLetterReason::ALL
        .iter()
        .map(|r| r.code().to_owned())
        .collect();
    reasons.insert(UNPRODUCIBLE_REASON.to_owned());
    assert_eq!(
        string_set(&schema["$defs"]["reason"]["enum"]),
        reasons,
        "the schema's reason codes are not the runtime's"
    );
}

/// An input record sent to the pipeline and the dead letter it must give.
struct Case {
    what: &'static str,
    topic: String,
    key: Option<Vec<u8>>,
    value: Option<Vec<u8>>,
    reason: &'static str,
    /// Whether the dead letter's value is cut (`Some(true)`), absent
    /// (`Some(false)`), or whole (`None`).
    cut: Option<bool>,
    offset: i64,
}

fn event(id: &str, visitor: &str, extra: &str) -> Vec<u8> {
    format!(
        r#"{{"event_id":"{id}","visitor_id":"{visitor}","type":"page_view","timestamp":"2026-11-29T10:00:05Z","page":{{"url":"https://shop.example.com/pricing"}}{extra}}}"#
    )
    .into_bytes()
}

#[test]
fn every_real_dead_letter_matches_the_documented_headers() {
    let doc = documented_headers();
    let validator = jsonschema::draft202012::new(&headers_schema())
        .expect("dead-letter-headers.schema.json is not a valid JSON Schema");
    // One partition: every input record, good or bad, lies on the
    // partition whose commit the test waits for.
    let mut d = Deployment::new("dlcontract", 1, false);
    d.env.push((
        "PROPENSITY__INPUT__MAX_RECORD_BYTES".to_owned(),
        MAX_RECORD_BYTES.to_string(),
    ));
    let (events, consent) = (
        d.settings.events_topic.clone(),
        d.settings.consent_topic.clone(),
    );
    set_max_message_bytes(
        &d.settings.brokers,
        &d.settings.dead_letter_topic,
        DLQ_LIMIT_SMALL,
    );
    let instance = d.start("a");
    instance.wait_ready(Duration::from_secs(60));
    // The test's producer may send the ~1 MB record below.
    let producer = AckProducer::new(&d.settings, &[("message.max.bytes", "2000000")]);
    let grant =
        br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{"tracking":true}}"#;
    producer.wait_acked(
        &[producer.send(&consent, Some(b"v1"), Some(grant), None)],
        Duration::from_secs(30),
    );
    let case = |what, topic: &str, key: &[u8], value: Option<Vec<u8>>, reason, cut| Case {
        what,
        topic: topic.to_owned(),
        key: Some(key.to_vec()),
        value,
        reason,
        cut,
        offset: -1,
    };
    let mut phase_one = vec![
        case("not JSON", &events, b"v1", Some(b"not json".to_vec()), "invalid_json", None),
        case("empty value", &events, b"v1", Some(Vec::new()), "invalid_json", Some(false)),
        case("bytes that are not UTF-8", &events, b"v1", Some(b"{\"event_id\":\"\xff\"}".to_vec()), "invalid_utf8", None),
        case("no page", &events, b"v1", Some(br#"{"event_id":"e1","visitor_id":"v1","type":"page_view","timestamp":"2026-11-29T10:00:01Z"}"#.to_vec()), "missing_field", None),
        case("a number for a url", &events, b"v1", Some(br#"{"event_id":"e2","visitor_id":"v1","type":"page_view","timestamp":"2026-11-29T10:00:01Z","page":{"url":7}}"#.to_vec()), "invalid_field", None),
        case("another key", &events, b"other", Some(event("e3", "v1", "")), "key_mismatch", None),
        case("an unknown type", &events, b"v1", Some(br#"{"event_id":"e4","visitor_id":"v1","type":"teleport","timestamp":"2026-11-29T10:00:01Z"}"#.to_vec()), "unknown_type", None),
        case("noon", &events, b"v1", Some(br#"{"event_id":"e5","visitor_id":"v1","type":"page_view","timestamp":"noon","page":{"url":"https://x/"}}"#.to_vec()), "invalid_timestamp", None),
        // Over input.max_record_bytes, its dead letter within the topic's.
        case("10 kB", &events, b"v1", Some(event("e6", "v1", &format!(r#","pad":"{}""#, "x".repeat(10_000)))), "too_large", None),
        // Its dead letter (30 kB) is over the topic's limit: refused by the
        // broker, so dead-lettered without its value.
        case("30 kB", &events, b"v1", Some(event("e7", "v1", &format!(r#","pad":"{}""#, "x".repeat(30_000)))), "unproducible", Some(false)),
        case("consent without purposes", &consent, b"v1", Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:02Z"}"#.to_vec()), "missing_field", None),
        case("tombstone keyed by bytes that are not UTF-8", &consent, b"\xff\xfe", None, "invalid_utf8", Some(false)),
    ];
    // Phase two: the topic takes ~1 MB, and a record bigger than the
    // pipeline producer's message.max.bytes (1,000,000) is cut to fit.
    let mut phase_two = vec![case(
        "1.04 MB",
        &events,
        b"v1",
        Some(event(
            "e8",
            "v1",
            &format!(r#","pad":"{}""#, "x".repeat(1_040_000)),
        )),
        "too_large",
        Some(true),
    )];
    let send_all = |cases: &mut Vec<Case>| {
        let tickets: Vec<usize> = cases
            .iter()
            .map(|c| producer.send(&c.topic, c.key.as_deref(), c.value.as_deref(), None))
            .collect();
        // A good event last: once it is committed, so is everything before
        // it on the partition (consent first, then events in order).
        let good = producer.send(&events, Some(b"v1"), Some(&event("ok", "v1", "")), None);
        let acked = producer.wait_acked(&tickets, Duration::from_secs(60));
        producer.wait_acked(&[good], Duration::from_secs(60));
        for (c, a) in cases.iter_mut().zip(acked) {
            c.offset = a.offset;
        }
        d.wait_processed(Duration::from_secs(120));
    };
    send_all(&mut phase_one);
    set_max_message_bytes(
        &d.settings.brokers,
        &d.settings.dead_letter_topic,
        DLQ_LIMIT_LARGE,
    );
    send_all(&mut phase_two);
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit: {status}");

    let cases: Vec<Case> = phase_one.into_iter().chain(phase_two).collect();
    let dead = d.read_topic(&d.settings.dead_letter_topic);
    assert_eq!(
        dead.len(),
        cases.len(),
        "one dead letter per bad record: {:?}",
        dead.iter()
            .map(|r| r.headers.get("propensity.reason"))
            .collect::<Vec<_>>()
    );
    let mut seen_headers: BTreeSet<String> = BTreeSet::new();
    for c in &cases {
        let origin = (c.topic.clone(), c.offset.to_string());
        let found: Vec<&Record> = dead
            .iter()
            .filter(|r| {
                (
                    r.headers
                        .get("__connect.errors.topic")
                        .cloned()
                        .unwrap_or_default(),
                    r.headers
                        .get("__connect.errors.offset")
                        .cloned()
                        .unwrap_or_default(),
                ) == origin
            })
            .collect();
        assert_eq!(
            found.len(),
            1,
            "{}: dead letters pointing at {origin:?}",
            c.what
        );
        let r = found[0];
        let headers = check_headers(c.what, r, &doc, &validator);
        seen_headers.extend(headers.keys().cloned());
        assert_eq!(headers["propensity.reason"], c.reason, "{}", c.what);
        assert_eq!(
            headers["__connect.errors.exception.class.name"], c.reason,
            "{}: class.name carries the reason code",
            c.what
        );
        assert_eq!(headers["__connect.errors.partition"], "0", "{}", c.what);
        assert_eq!(r.key, c.key, "{}: the input key, unchanged", c.what);
        let input = c.value.clone().unwrap_or_default();
        match c.cut {
            None => {
                assert_eq!(
                    r.value.as_deref(),
                    Some(input.as_slice()),
                    "{}: the value, whole",
                    c.what
                );
                assert!(!headers.contains_key("propensity.truncated"), "{}", c.what);
            }
            Some(false) => {
                assert_eq!(r.value, None, "{}: no value", c.what);
                if c.reason == UNPRODUCIBLE_REASON {
                    assert_eq!(headers["propensity.truncated"], "true", "{}", c.what);
                    assert_eq!(
                        headers["propensity.original_size"],
                        input.len().to_string(),
                        "{}",
                        c.what
                    );
                }
            }
            Some(true) => {
                let v = r.value.as_deref().unwrap_or_default();
                assert!(
                    !v.is_empty() && v.len() < input.len() && input.starts_with(v),
                    "{}: a prefix of the value ({} of {} bytes)",
                    c.what,
                    v.len(),
                    input.len()
                );
                assert_eq!(headers["propensity.truncated"], "true", "{}", c.what);
                assert_eq!(
                    headers["propensity.original_size"],
                    input.len().to_string(),
                    "{}",
                    c.what
                );
            }
        }
    }
    let never: Vec<&str> = doc
        .iter()
        .map(|h| h.name.as_str())
        .filter(|n| !seen_headers.contains(*n))
        .collect();
    assert!(
        never.is_empty(),
        "documented headers no real dead letter carried: {never:?}"
    );
}

/// The checks every dead letter passes, whatever its kind; returns its
/// headers by name.
fn check_headers(
    what: &str,
    r: &Record,
    doc: &[DocumentedHeader],
    validator: &jsonschema::Validator,
) -> BTreeMap<String, String> {
    let mut headers = BTreeMap::new();
    for (name, value) in &r.raw_headers {
        let value = value
            .as_deref()
            .unwrap_or_else(|| panic!("{what}: header {name} has no value"));
        let value = std::str::from_utf8(value)
            .unwrap_or_else(|_| panic!("{what}: header {name} is not UTF-8"));
        assert!(
            headers.insert(name.clone(), value.to_owned()).is_none(),
            "{what}: header {name} appears twice"
        );
        assert!(
            doc.iter().any(|h| &h.name == name),
            "{what}: header {name} is not in docs/wire-contract.md's table"
        );
    }
    for h in doc.iter().filter(|h| h.always) {
        assert!(
            headers.contains_key(&h.name),
            "{what}: documented as always present, {} is missing",
            h.name
        );
    }
    let as_json = serde_json::to_value(&headers).expect("headers as JSON");
    let errors: Vec<String> = validator
        .iter_errors(&as_json)
        .map(|e| format!("{e} at {}", e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{what}: headers do not validate against dead-letter-headers.schema.json: {errors:#?}\n{as_json}"
    );
    headers
}
