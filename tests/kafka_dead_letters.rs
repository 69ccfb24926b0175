//! Bad records on the events topic land in the dead-letter topic with the
//! original key and value bytes untouched and Kafka Connect-style headers;
//! the counts reconcile; a clean SIGTERM exits 0; and start-up refuses
//! topics that are not co-partitioned, naming them.

use std::time::Duration;

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::{read_json, Deployment};

#[test]
fn bad_records_are_dead_lettered_whole_and_counts_reconcile() {
    let d = Deployment::new("dlq", 2, false);
    let instance = d.start("a");
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let good_consent =
        br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{"tracking":true}}"#;
    producer
        .send(OutgoingRecord {
            topic: &d.settings.consent_topic,
            key: Some(b"v1"),
            value: Some(good_consent),
        })
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    let big = format!(
        r#"{{"event_id":"big","visitor_id":"v1","type":"page_view","timestamp":"2026-11-29T10:00:01Z","page":{{"url":"https://x/"}},"pad":"{}"}}"#,
        "x".repeat(70_000)
    );
    let bad: Vec<(&[u8], Vec<u8>, &str)> = vec![
        (b"v1", b"not json".to_vec(), "invalid_json"),
        (b"v1", b"{\"event_id\":\"\xff\"}".to_vec(), "invalid_utf8"),
        (b"v1", br#"{"event_id":"e1","type":"chat","timestamp":"2026-11-29T10:00:01Z","chat":{"action":"started"}}"#.to_vec(), "missing_field"),
        (b"other", br#"{"event_id":"e2","visitor_id":"v1","type":"chat","timestamp":"2026-11-29T10:00:01Z","chat":{"action":"started"}}"#.to_vec(), "key_mismatch"),
        (b"v1", br#"{"event_id":"e3","visitor_id":"v1","type":"teleport","timestamp":"2026-11-29T10:00:01Z"}"#.to_vec(), "unknown_type"),
        (b"v1", br#"{"event_id":"e4","visitor_id":"v1","type":"chat","timestamp":"noon","chat":{"action":"started"}}"#.to_vec(), "invalid_timestamp"),
        (b"v1", big.into_bytes(), "too_large"),
    ];
    for (key, value, _) in &bad {
        producer
            .send(OutgoingRecord {
                topic: &d.settings.events_topic,
                key: Some(key),
                value: Some(value),
            })
            .expect("send");
    }
    let good = br#"{"event_id":"ok1","visitor_id":"v1","type":"page_view","timestamp":"2026-11-29T10:00:02Z","page":{"url":"https://shop.example.com/pricing"}}"#;
    producer
        .send(OutgoingRecord {
            topic: &d.settings.events_topic,
            key: Some(b"v1"),
            value: Some(good),
        })
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    d.wait_processed(Duration::from_secs(60));
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "SIGTERM exit: {status}");

    let dlq = d.read_topic(&d.settings.dead_letter_topic);
    assert_eq!(dlq.len(), bad.len(), "one dead letter per bad record");
    for (key, value, reason) in &bad {
        let found = dlq
            .iter()
            .find(|r| r.value.as_deref() == Some(value.as_slice()))
            .unwrap_or_else(|| panic!("no dead letter keeps the {reason} record whole"));
        assert_eq!(
            found.key.as_deref(),
            Some(*key),
            "{reason}: original key kept"
        );
        assert_eq!(found.headers["propensity.reason"], *reason);
        assert_eq!(
            found.headers["__connect.errors.topic"],
            d.settings.events_topic
        );
        assert!(found.headers.contains_key("__connect.errors.partition"));
        assert!(found.headers.contains_key("__connect.errors.offset"));
        assert!(!found.headers["__connect.errors.exception.message"].is_empty());
    }
    let s = &read_json(&d.dir.path().join("summary-a.json"));
    assert_eq!(s["events_consumed"], 8, "{s}");
    assert_eq!(s["events_dead_lettered"], 7, "{s}");
    assert_eq!(s["events_processed"], 1, "{s}");
    assert_eq!(s["reconciles"], true, "{s}");
}

#[test]
fn start_up_refuses_topics_that_are_not_co_partitioned() {
    let d = Deployment::new("copart", 2, false);
    // Re-point the consent topic at a topic with another partition count.
    let other = Deployment::new("copart-other", 3, false);
    let out = d
        .command(&["run", "--instance-id", "x"])
        .env(
            "PROPENSITY__KAFKA__CONSENT_TOPIC",
            &other.settings.consent_topic,
        )
        .output()
        .expect("run");
    assert!(!out.status.success(), "run must refuse to start");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&other.settings.consent_topic) && err.contains("partitions"),
        "the error names the topic and the problem: {err}"
    );
}
