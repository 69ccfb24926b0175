//! Restore on a real broker: how much of the consent topic a restarting
//! instance reads, and that what it restores keeps the consent gate.
//!
//! - A changelog written by this version carries each visitor's consent as
//!   of the committed consent position, so a restart reads only the
//!   consent records committed after it: exactly those, counted by
//!   `propensity_consent_restored_records_total`. Visitors whose consent
//!   came before the restart are still tracked (their consent came from
//!   the changelog alone), and the revocations in the tail still stop
//!   their visitors' later events.
//! - A changelog of the previous format (no consent in its snapshots, no
//!   format header) is read with the whole consent topic, once; that
//!   instance rewrites it, and the next restart reads only the tail.

use std::collections::HashSet;
use std::time::Duration;

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_kafka::shard::{
    CHANGELOG_FORMAT, CHANGELOG_FORMAT_HEADER, CONSENT_POSITION_HEADER, CONSENT_POSITION_KEY,
    PARTITION_CLOCK_HEADER,
};
use propensity_system_tests::{consent_record, now_epoch_ms, page_view, Deployment, Instance};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use serde_json::Value;

const RESTORED: &str = "propensity_consent_restored_records_total";

fn send_all(d: &Deployment, topic: &str, values: &[Value]) {
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    for v in values {
        let bytes = serde_json::to_vec(v).expect("json");
        let key = v["visitor_id"].as_str().expect("visitor").as_bytes();
        producer
            .send(OutgoingRecord {
                topic,
                key: Some(key),
                value: Some(&bytes),
            })
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

/// Event ids of every score published.
fn scored(d: &Deployment) -> HashSet<String> {
    d.read_topic(&d.settings.scores_topic)
        .iter()
        .map(|r| {
            let s: Value =
                serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("score JSON");
            s["event_id"].as_str().unwrap_or_default().to_owned()
        })
        .collect()
}

/// Starts an instance, waits until it is ready and has committed every
/// event, and returns it with the consent records its restore read.
fn restart(d: &Deployment, name: &str) -> (Instance, f64) {
    let instance = d.start(name);
    instance.wait_ready(Duration::from_secs(120));
    d.wait_processed(Duration::from_secs(120));
    let restored = instance.metrics().sum(RESTORED);
    (instance, restored)
}

/// Per partition, the clock (`propensity.partition_clock`) of the latest
/// consent position record in the changelog.
fn committed_clocks(d: &Deployment) -> std::collections::BTreeMap<i32, i64> {
    let mut latest = std::collections::BTreeMap::new();
    for r in d.read_topic(&d.settings.changelog_topic) {
        if r.key.as_deref() == Some(CONSENT_POSITION_KEY.as_bytes()) {
            latest.insert(r.partition, r.headers.get(PARTITION_CLOCK_HEADER).cloned());
        }
    }
    latest
        .into_iter()
        .map(|(p, clock)| {
            let clock = clock
                .unwrap_or_else(|| panic!("partition {p}: no clock in the latest position record"));
            let ms = clock
                .parse::<i64>()
                .unwrap_or_else(|_| panic!("partition {p}: clock {clock:?} is not a number"));
            (p, ms)
        })
        .collect()
}

/// A grant of every purpose at `t0` for each visitor.
fn grants(visitors: &[String], t0: i64) -> Vec<Value> {
    visitors
        .iter()
        .map(|v| consent_record(v, t0, true, true))
        .collect()
}

fn views(visitors: &[String], n: usize, t0: i64) -> Vec<Value> {
    visitors
        .iter()
        .map(|v| page_view(&format!("{v}-e{n}"), v, t0 + n as i64 * 1_000, n))
        .collect()
}

#[test]
fn a_restart_reads_only_the_consent_committed_after_the_changelog() {
    let d = Deployment::new("restore-tail", 2, true);
    let t0 = now_epoch_ms() - 600_000;
    let visitors: Vec<String> = (0..400).map(|i| format!("rt-{i}")).collect();
    send_all(&d, &d.settings.consent_topic, &grants(&visitors, t0));
    send_all(&d, &d.settings.events_topic, &views(&visitors, 0, t0));
    let (first, _) = restart(&d, "a");
    assert!(first.terminate(Duration::from_secs(30)).success());
    // Each partition's event-time clock is committed with its consent
    // position: every event so far is dated t0.
    assert_eq!(
        committed_clocks(&d),
        (0..2).map(|p| (p, t0)).collect(),
        "committed partition clocks"
    );

    // While no instance runs: 25 revocations, then everyone's next event
    // (produced without waiting for anything, so the restart lags).
    let revoked = &visitors[..25];
    let revocations: Vec<Value> = revoked
        .iter()
        .map(|v| consent_record(v, t0 + 500, false, false))
        .collect();
    send_all(&d, &d.settings.consent_topic, &revocations);
    send_all(&d, &d.settings.events_topic, &views(&visitors, 1, t0));

    let (second, restored) = restart(&d, "b");
    // The restored clock moved on with the tail's events (t0 + 1 s).
    let clocks = committed_clocks(&d);
    assert!(
        clocks.values().all(|&c| c == t0 + 1_000) && clocks.len() == 2,
        "committed partition clocks after the restart: {clocks:?}"
    );
    assert_eq!(
        restored,
        revocations.len() as f64,
        "the restore read {restored} consent records: only the {} after the committed position were due (log: {})",
        revocations.len(),
        second.log_text()
    );
    assert!(second.terminate(Duration::from_secs(30)).success());

    let scored = scored(&d);
    for (i, v) in visitors.iter().enumerate() {
        assert!(scored.contains(&format!("{v}-e0")), "{v}-e0 not scored");
        let after = scored.contains(&format!("{v}-e1"));
        if i < revoked.len() {
            assert!(!after, "{v}-e1 scored after its revocation");
        } else {
            // Its consent reached the restarted instance through the
            // changelog only.
            assert!(after, "{v}-e1 not scored after the restart");
        }
    }
}

#[test]
fn a_changelog_of_the_previous_format_is_read_with_all_consent_once_then_rewritten() {
    let d = Deployment::new("restore-upgrade", 1, true);
    let t0 = now_epoch_ms() - 600_000;
    let visitors: Vec<String> = (0..60).map(|i| format!("ru-{i}")).collect();
    let grants = grants(&visitors, t0);
    send_all(&d, &d.settings.consent_topic, &grants);
    // What the previous version left: the consent position past every
    // grant (their effects are in the changelog), no format header, no
    // consent in any snapshot.
    let producer: BaseProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", &d.settings.brokers)
        .create()
        .expect("producer");
    let position = grants.len().to_string();
    producer
        .send(
            BaseRecord::<[u8], [u8]>::to(&d.settings.changelog_topic)
                .partition(0)
                .key(CONSENT_POSITION_KEY.as_bytes())
                .payload(position.as_bytes())
                .headers(OwnedHeaders::new().insert(Header {
                    key: CONSENT_POSITION_HEADER,
                    value: Some("1"),
                })),
        )
        .map_err(|(e, _)| e)
        .expect("send");
    producer.flush(Duration::from_secs(30)).expect("flush");
    send_all(&d, &d.settings.events_topic, &views(&visitors, 0, t0));

    let (first, restored) = restart(&d, "a");
    assert_eq!(
        restored,
        grants.len() as f64,
        "an old-format changelog needs the whole consent topic"
    );
    assert!(first.terminate(Duration::from_secs(30)).success());
    let changelog = d.read_topic(&d.settings.changelog_topic);
    for v in &visitors {
        let written = changelog
            .iter()
            .rfind(|r| r.key.as_deref() == Some(v.as_bytes()))
            .unwrap_or_else(|| panic!("{v} was not rewritten into the changelog"));
        assert_eq!(
            written
                .headers
                .get(CHANGELOG_FORMAT_HEADER)
                .map(String::as_str),
            Some(CHANGELOG_FORMAT)
        );
        let snapshot: Value =
            serde_json::from_slice(written.value.as_deref().expect("a snapshot")).expect("JSON");
        assert_eq!(snapshot["consent"]["purposes"], 15, "{v}: {snapshot}");
    }

    send_all(&d, &d.settings.events_topic, &views(&visitors, 1, t0));
    let (second, restored) = restart(&d, "b");
    // Position records now carry the partition's clock (a format-1 one
    // has none): the latest events are dated t0 + 1 s.
    assert_eq!(
        committed_clocks(&d),
        [(0, t0 + 1_000)].into_iter().collect(),
        "committed partition clock after the rewrite"
    );
    assert_eq!(restored, 0.0, "the rewritten changelog bounds the restore");
    assert!(second.terminate(Duration::from_secs(30)).success());
    let scored = scored(&d);
    for v in &visitors {
        for n in 0..2 {
            assert!(scored.contains(&format!("{v}-e{n}")), "{v}-e{n} not scored");
        }
    }
}
