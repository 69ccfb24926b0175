//! Reading topics back: [`Record`] and [`read_topic`], JSON and JSON-lines
//! helpers, and the comparison of offers between the Kafka run and the replay;
//! and [`set_max_message_bytes`], the one topic setting tests change.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use propensity_kafka::reader::PartitionReader;
use propensity_kafka::{CancellationToken, KafkaSettings};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message};
use serde_json::Value;

use crate::random_suffix;

/// A consumed record.
#[derive(Debug, Clone)]
pub struct Record {
    /// Partition.
    pub partition: i32,
    /// Key.
    pub key: Option<Vec<u8>>,
    /// Value.
    pub value: Option<Vec<u8>>,
    /// Headers, values as (lossy) UTF-8 text; a repeated name keeps its
    /// last value.
    pub headers: BTreeMap<String, String>,
    /// Headers exactly as on the record, in order: contract tests need to
    /// see repeated names and bytes that are not UTF-8, which `headers`
    /// hides.
    pub raw_headers: Vec<(String, Option<Vec<u8>>)>,
}

/// Reads every committed record of `topic` (read_committed, to the end).
pub fn read_topic(settings: &KafkaSettings, topic: &str) -> Vec<Record> {
    let mut reader = PartitionReader::new(settings, &format!("test-{}", random_suffix()), topic)
        .expect("reader");
    let parts: Vec<i32> = (0..settings.partitions).collect();
    let from: Vec<(i32, Option<i64>)> = parts.iter().map(|p| (*p, None)).collect();
    reader.assign(&from).expect("assign");
    // A commit's markers reach the partitions after the commit returns:
    // read everything the group's offsets already account for.
    let ends = reader
        .settled_end_offsets(&parts, Duration::from_secs(60), &CancellationToken::new())
        .expect("settled end offsets");
    let mut out = Vec::new();
    reader
        .read_until(&ends, &CancellationToken::new(), |p, m| {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_owned(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let raw_headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| (x.key.to_owned(), x.value.map(<[u8]>::to_vec)))
                        .collect()
                })
                .unwrap_or_default();
            out.push(Record {
                partition: p,
                raw_headers,
                key: m.key().map(<[u8]>::to_vec),
                value: m.payload().map(<[u8]>::to_vec),
                headers,
            });
        })
        .expect("read");
    out
}

/// Lines of a file.
pub fn read_lines(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .expect("read file")
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect()
}

/// A JSON document in a file.
pub fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} is not JSON: {e}", path.display()))
}

/// JSON lines of a file.
pub fn read_json_lines(path: &Path) -> Vec<Value> {
    read_lines(path)
        .iter()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

/// Offers keyed by `offer_id`, without `decided_at` (wall clock in Kafka,
/// event time in replay). Panics on a duplicate id: exactly-once means
/// every offer exists once.
pub fn offers_by_id(offers: &[Value], what: &str) -> BTreeMap<String, Value> {
    let mut map = BTreeMap::new();
    for o in offers {
        let mut o = o.clone();
        let id = o["offer_id"].as_str().expect("offer_id").to_owned();
        if let Some(obj) = o.as_object_mut() {
            obj.remove("decided_at");
        }
        assert!(
            map.insert(id.clone(), o).is_none(),
            "{what}: offer {id} appears twice"
        );
    }
    map
}

/// The offers a topic holds, parsed.
pub fn offers_in(records: &[Record]) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("offer JSON")
        })
        .collect()
}

/// Decisions published on Kafka equal `replay`'s: each exactly once (no
/// duplicate id), the same ids, and the same kind, arm, map and event for
/// each; and the `offered` ones are exactly the offers published.
pub fn assert_same_decisions(kafka: &[Value], replay: &[Value], kafka_offers: &[Value]) {
    let k = assert_same_records(
        kafka,
        replay,
        "decision_id",
        &[
            "decision",
            "arm",
            "action_map",
            "trigger_event_id",
            "session_id",
        ],
    );
    let offered: std::collections::BTreeSet<&str> = k
        .values()
        .filter(|d| d["decision"] == "offered")
        .map(|d| d["decision_id"].as_str().unwrap_or_default())
        .collect();
    let offers: std::collections::BTreeSet<&str> = kafka_offers
        .iter()
        .map(|o| o["offer_id"].as_str().unwrap_or_default())
        .collect();
    assert_eq!(offered, offers, "offered decisions vs offers published");
}

/// Records published on Kafka equal `replay`'s, matched by `id_field`:
/// each exactly once (no duplicate id), the same ids, and the same
/// `fields`; returns Kafka's by id. Replay must have made some.
pub fn assert_same_records(
    kafka: &[Value],
    replay: &[Value],
    id_field: &str,
    fields: &[&str],
) -> std::collections::BTreeMap<String, Value> {
    let by_id = |records: &[Value], what: &str| {
        let mut map = std::collections::BTreeMap::new();
        for d in records {
            let id = d[id_field].as_str().expect(id_field).to_owned();
            assert!(
                map.insert(id.clone(), d.clone()).is_none(),
                "{what}: {id_field} {id} twice"
            );
        }
        map
    };
    let k = by_id(kafka, "kafka");
    let r = by_id(replay, "replay");
    assert!(!r.is_empty(), "replay made no record with a {id_field}");
    let missing = r.keys().filter(|id| !k.contains_key(*id)).count();
    let extra = k.keys().filter(|id| !r.contains_key(*id)).count();
    assert!(
        missing == 0 && extra == 0,
        "records by {id_field} differ: {missing} missing from Kafka, {extra} extra (of {} replayed)",
        r.len()
    );
    for (id, d) in &r {
        for field in fields {
            assert_eq!(
                k[id][field], d[field],
                "{id_field} {id}: field {field} differs"
            );
        }
    }
    k
}

/// Asserts that Kafka's offers equal the replay's, naming what differs.
pub fn assert_same_offers(kafka: &[Value], replay: &[Value]) {
    let k = offers_by_id(kafka, "kafka");
    let r = offers_by_id(replay, "replay");
    let missing: Vec<&String> = r.keys().filter(|id| !k.contains_key(*id)).collect();
    let extra: Vec<&String> = k.keys().filter(|id| !r.contains_key(*id)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "offers differ: {} missing from Kafka, {} extra in Kafka (of {} replayed); first missing: {:?}; first extra: {:?}",
        missing.len(),
        extra.len(),
        r.len(),
        missing.first().map(|id| &r[*id]),
        extra.first().map(|id| &k[*id])
    );
    for (id, offer) in &r {
        let got = &k[id];
        for field in [
            "visitor_id",
            "session_id",
            "action_map",
            "outcome",
            "trigger_event_id",
            "event_time",
            "model_version",
            "action",
            "purpose",
        ] {
            assert_eq!(
                got[field], offer[field],
                "offer {id}: field {field} differs"
            );
        }
        let (a, b) = (got["probability"].as_f64(), offer["probability"].as_f64());
        assert_eq!(a, b, "offer {id}: probability differs");
    }
    assert!(
        !r.is_empty(),
        "the replay made no offers: the comparison would prove nothing"
    );
}

/// Parsed JSON values of a topic's records.
pub fn json_values(records: &[Record], what: &str) -> Vec<Value> {
    records
        .iter()
        .map(|r| {
            serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .unwrap_or_else(|e| panic!("{what}: not JSON: {e}"))
        })
        .collect()
}

/// Sets a topic's `max.message.bytes` and waits until the broker reports
/// it (a record produced before would meet the old limit).
pub fn set_max_message_bytes(brokers: &str, topic: &str, limit: &str) {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("admin client");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let change = AlterConfig::new(ResourceSpecifier::Topic(topic)).set("max.message.bytes", limit);
    for r in rt
        .block_on(admin.alter_configs(&[change], &AdminOptions::new()))
        .expect("alter configs")
    {
        r.expect("max.message.bytes accepted");
    }
    let started = Instant::now();
    loop {
        let described = rt
            .block_on(
                admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &AdminOptions::new()),
            )
            .expect("describe configs");
        let current = described
            .into_iter()
            .filter_map(Result::ok)
            .find_map(|r| r.get("max.message.bytes").and_then(|e| e.value.clone()));
        if current.as_deref() == Some(limit) {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "{topic}: max.message.bytes still {current:?}, not {limit}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}
