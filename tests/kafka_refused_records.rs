//! A record whose outputs the broker refuses (here: a dead letter larger
//! than the dead-letter topic's own `max.message.bytes`, which the producer
//! cannot know about) must not stop the pipeline: the runtime isolates the
//! input event behind the refusal and dead-letters it once, without its
//! value, as `unproducible`; every other record is processed, every
//! partition commits to the end, and the counts reconcile.

use std::time::Duration;

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::{set_max_message_bytes, Deployment};

/// The dead-letter topic's record limit in this test.
const TOPIC_LIMIT: &str = "3000";

#[test]
fn an_event_whose_dead_letter_the_broker_refuses_is_dead_lettered_once_without_its_value() {
    let d = Deployment::new("refused", 3, false);
    set_max_message_bytes(
        &d.settings.brokers,
        &d.settings.dead_letter_topic,
        TOPIC_LIMIT,
    );
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let send = |topic: &str, key: &str, value: &[u8]| {
        producer
            .send(OutgoingRecord {
                topic,
                key: Some(key.as_bytes()),
                value: Some(value),
            })
            .expect("send");
    };
    let visitors: Vec<String> = (0..12).map(|i| format!("rf-{i}")).collect();
    for v in &visitors {
        let consent = format!(
            r#"{{"visitor_id":"{v}","timestamp":"2026-11-29T10:00:00Z","purposes":{{"tracking":true,"sales":true,"marketing":true,"support":true}}}}"#
        );
        send(&d.settings.consent_topic, v, consent.as_bytes());
    }
    let mut good: u32 = 0;
    let event = |v: &str, n: u32| {
        format!(
            r#"{{"event_id":"{v}-e{n}","visitor_id":"{v}","type":"page_view","timestamp":"2026-11-29T10:00:{n:02}Z","page":{{"url":"https://shop.example.com/pricing"}}}}"#
        )
    };
    for n in 1..=5 {
        for v in &visitors {
            send(&d.settings.events_topic, v, event(v, n).as_bytes());
            good += 1;
        }
    }
    // Not JSON, 20 kB: the engine dead-letters it whole (well within the
    // producer's 1 MB), and the broker refuses that dead letter (3 kB topic
    // limit). A small bad record's dead letter still fits.
    let poison = format!("not json {}", "x".repeat(20_000));
    send(&d.settings.events_topic, &visitors[0], poison.as_bytes());
    send(&d.settings.events_topic, &visitors[1], b"also not json");
    for n in 6..=8 {
        for v in &visitors {
            send(&d.settings.events_topic, v, event(v, n).as_bytes());
            good += 1;
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");

    let instance = d.start("a");
    d.wait_processed(Duration::from_secs(120));
    let (m, settled) = instance.wait_metrics(Duration::from_secs(30), |m| {
        m.sum("propensity_events_processed_total") >= f64::from(good)
            && m.sum_where("propensity_dead_letters_total", &[("source", "events")]) >= 2.0
    });
    assert!(
        settled,
        "not every event accounted for: {:?}",
        m.reconciliation()
    );
    let books = m.reconciliation();
    assert!(books.balanced(), "counts do not reconcile: {books:?}");
    // The refusal aborted a transaction full of events; they were redone
    // (one per transaction) and count once: committed work only.
    let redone = m.sum("propensity_events_rewound_total");
    assert!(redone > 0.0, "the aborted batch shows as redone");
    assert_eq!(
        (books.consumed, books.processed),
        (u64::from(good) + 2, u64::from(good)),
        "every record counted once: {books:?}"
    );
    assert_eq!(
        m.sum_where(
            "propensity_dead_letters_total",
            &[("reason", "unproducible")]
        ),
        1.0,
        "exactly one unproducible dead letter"
    );
    let (status, body) = instance.http_get("/readyz", None);
    assert_eq!(status, 200, "ready at the end: {body}");

    let dead = d.read_topic(&d.settings.dead_letter_topic);
    let unproducible: Vec<_> = dead
        .iter()
        .filter(|r| r.headers.get("propensity.reason").map(String::as_str) == Some("unproducible"))
        .collect();
    assert_eq!(
        unproducible.len(),
        1,
        "one unproducible dead letter: {dead:?}"
    );
    let u = unproducible[0];
    assert!(u.value.is_none(), "the refused value is not repeated");
    assert_eq!(
        u.headers.get("propensity.original_size"),
        Some(&poison.len().to_string())
    );
    assert_eq!(u.key.as_deref(), Some(visitors[0].as_bytes()));
    let small: Vec<_> = dead
        .iter()
        .filter(|r| r.headers.get("propensity.reason").map(String::as_str) == Some("invalid_json"))
        .collect();
    assert_eq!(
        small.len(),
        1,
        "the small bad record is dead-lettered whole"
    );
    assert_eq!(small[0].value.as_deref(), Some(&b"also not json"[..]));
    let log = instance.log_text();
    assert!(log.contains("refused"), "the log names the refusal");
    println!(
        "refused records: 1 isolated and dead-lettered as unproducible; {good} good events processed; {redone} redone after the abort; books {books:?}"
    );
}
