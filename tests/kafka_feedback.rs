//! Offer feedback on the real broker: engagement services' feedback on
//! the feedback topic drives the contact policy of [`CONTROL_GROUP_MAP`]
//! (two declines within 30 days suppress it for 30 days), applied exactly
//! once through a `kill -9` and a rebalance.
//!
//! Phase 1: generated traffic, produced paced and processed. Phase 2: for
//! every visitor the map offered to, one or two declines (alternately) on
//! the feedback topic, dated after all of phase 1. Phase 3: those visitors
//! come back two days later to the checkout, produced without pacing while
//! the instance is killed and a second one joins. A decline applied twice
//! would suppress a visitor with one, so the decisions (and offers) must
//! equal `replay --feedback` on the same records, each exactly once.

use std::collections::BTreeMap;
use std::time::Duration;

use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_system_tests::{
    assert_same_offers, offers_in, page_view, read_lines, rfc3339, Deployment, Traffic,
    CONTROL_GROUP_MAP,
};
use serde_json::{json, Value};

const DAY: i64 = 86_400_000;

fn time_of(v: &Value, field: &str) -> i64 {
    propensity_engine::timestamp::parse_rfc3339(v[field].as_str().unwrap_or_default())
        .map_or(i64::MIN, |t| t.epoch_ms)
}

#[test]
fn declines_suppress_the_map_exactly_once_through_kill_9_and_a_rebalance() {
    let d = Deployment::new("feedback", 3, false);
    d.wait_topics_visible(Duration::from_secs(30));
    let traffic = d.generate(300, 41, 0.0);
    let mut first = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(180));

    // Phase 2: feedback on the map's offers, after every phase-1 event.
    let events = read_lines(&traffic.events);
    let last_ms = events
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .map(|v| time_of(&v, "timestamp"))
        .max()
        .expect("events");
    let offers = offers_in(&d.read_topic(&d.settings.offers_topic));
    let mut offered: BTreeMap<String, String> = BTreeMap::new();
    for o in offers
        .iter()
        .filter(|o| o["action_map"] == CONTROL_GROUP_MAP.0)
    {
        offered.insert(
            o["visitor_id"].as_str().unwrap_or_default().to_owned(),
            o["offer_id"].as_str().unwrap_or_default().to_owned(),
        );
    }
    assert!(
        offered.len() >= 10,
        "only {} visitors offered",
        offered.len()
    );
    let mut feedback_lines = Vec::new();
    for (i, (visitor, offer)) in offered.iter().enumerate() {
        for k in 0..(1 + i % 2) {
            // A second decline answers another (made-up) offer: a decline
            // sent again is counted once.
            let offer = if k == 0 {
                offer.clone()
            } else {
                format!("{offer}-next")
            };
            feedback_lines.push(
                json!({
                    "offer_id": offer,
                    "visitor_id": visitor,
                    "action_map": CONTROL_GROUP_MAP.0,
                    "status": "declined",
                    "timestamp": rfc3339(last_ms + 60_000 + (i * 10 + k) as i64),
                })
                .to_string(),
            );
        }
    }
    // Phase 3: the same visitors at the checkout two days later.
    let mut returning = Vec::new();
    for (i, visitor) in offered.keys().enumerate() {
        for n in 0..5 {
            let t = last_ms + 2 * DAY + i as i64 * 1_000 + n as i64 * 10_000;
            returning.push(page_view(&format!("{visitor}-back-{n}"), visitor, t, n).to_string());
        }
    }
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let send = |topic: &str, lines: &[String]| {
        for l in lines {
            producer
                .send(OutgoingRecord {
                    topic,
                    key: visitor_key(l.as_bytes()).as_deref().map(str::as_bytes),
                    value: Some(l.as_bytes()),
                })
                .expect("send");
        }
    };
    send(&d.settings.feedback_topic, &feedback_lines);
    // Acknowledged before any returning event is produced: applied first.
    producer.flush(Duration::from_secs(60)).expect("flush");
    let (head, tail) = returning.split_at(returning.len() / 3);
    send(&d.settings.events_topic, head);
    producer.flush(Duration::from_secs(60)).expect("flush");
    std::thread::sleep(Duration::from_millis(60));
    first.kill9();
    first = d.start("a");
    let second = d.start("b");
    send(&d.settings.events_topic, tail);
    producer.flush(Duration::from_secs(60)).expect("flush");
    d.wait_processed(Duration::from_secs(180));
    assert!(second.terminate(Duration::from_secs(30)).success());
    assert!(first.terminate(Duration::from_secs(30)).success());

    // The same records through replay.
    let all_events = d.dir.path().join("events-all.jsonl");
    let mut lines = events.clone();
    lines.extend(returning.iter().cloned());
    std::fs::write(&all_events, lines.join("\n") + "\n").expect("write events");
    let feedback = d.dir.path().join("feedback.jsonl");
    std::fs::write(&feedback, feedback_lines.join("\n") + "\n").expect("write feedback");
    let all = Traffic {
        events: all_events,
        consent: traffic.consent.clone(),
    };
    let replay = d.replay_with_feedback(&all, Some(&feedback));
    let kafka_offers = offers_in(&d.read_topic(&d.settings.offers_topic));
    assert_same_offers(&kafka_offers, &replay.offers);
    d.assert_decision_log_matches(&replay, &kafka_offers);
    let f = &replay.summary["feedback"];
    assert_eq!(f["reconciles"], true, "{f}");
    assert_eq!(f["consumed"].as_u64(), Some(feedback_lines.len() as u64));
    let suppressed = replay
        .decisions
        .iter()
        .filter(|x| x["decision"] == "contact_policy")
        .count();
    let suppressions = &f["suppressions_by_action_map"][CONTROL_GROUP_MAP.0];
    eprintln!(
        "{} visitors offered, {} declines; {suppressions} suppressions, {suppressed} contact_policy decisions",
        offered.len(),
        feedback_lines.len()
    );
    assert!(suppressed > 0, "no decision was suppressed");
    // `report --from-kafka` reads the feedback topic too: every decline
    // answers a distinct offer.
    let report = d.report_from_kafka();
    assert_eq!(
        report[CONTROL_GROUP_MAP.0]["feedback"]["declined"].as_u64(),
        Some(feedback_lines.len() as u64),
        "{report}"
    );
}
