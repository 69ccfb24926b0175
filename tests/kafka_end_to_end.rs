//! End to end on a real broker: generated traffic (with malformed lines)
//! through `propensity run` gives exactly the offers `propensity replay`
//! gives on the same records, none twice; malformed records are
//! dead-lettered with Kafka Connect-style headers.

use std::time::Duration;

use propensity_system_tests::{assert_same_offers, offers_in, read_lines, Deployment};

#[test]
fn kafka_offers_equal_replay_offers() {
    let d = Deployment::new("e2e", 3, false);
    let traffic = d.generate(250, 21, 0.01);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));
    let status = instance.terminate(Duration::from_secs(30));
    assert!(
        status.success(),
        "propensity run exited with {status} after SIGTERM"
    );

    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let (replay, summary) = d.replay(&traffic);
    assert_same_offers(&kafka, &replay);

    // Every malformed line is dead-lettered once, whole, with its origin:
    // as many as the replay dead-letters from the same file.
    let expected = summary["events_dead_lettered"].as_u64().expect("count");
    let dlq = d.read_topic(&d.settings.dead_letter_topic);
    assert!(
        expected > 0,
        "the traffic has no malformed lines to test with"
    );
    assert_eq!(
        dlq.len() as u64,
        expected,
        "dead letters in Kafka vs in the replay"
    );
    let lines = read_lines(&traffic.events);
    for r in &dlq {
        assert_eq!(r.headers["__connect.errors.topic"], d.settings.events_topic);
        assert!(r.headers["__connect.errors.offset"].parse::<i64>().is_ok());
        assert!(!r.headers["propensity.reason"].is_empty());
        let value = String::from_utf8_lossy(r.value.as_deref().expect("payload kept"));
        assert!(
            lines.iter().any(|l| *l == value),
            "the dead letter's payload is an original line"
        );
    }
}
