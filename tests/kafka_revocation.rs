//! Revocation on a real broker: once a revocation is produced and
//! acknowledged, none of the visitor's later events is scored or offered
//! on, while its earlier events were (so the check can fail).

use std::time::Duration;

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::{read_json, Deployment};
use serde_json::{json, Value};

fn event(visitor: &str, n: u32, second: u32) -> Value {
    let path = [
        "/products/widget-1",
        "/pricing",
        "/cart",
        "/checkout",
        "/checkout/payment",
    ][(n % 5) as usize];
    json!({
        "event_id": format!("{visitor}-e{n}"),
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": format!("2026-11-29T10:{:02}:{:02}.000Z", second / 60, second % 60),
        "page": {"url": format!("https://shop.example.com{path}")},
        "device": {"category": "desktop"}
    })
}

fn consent(visitor: &str, second: u32, tracking: bool) -> Value {
    json!({
        "visitor_id": visitor,
        "timestamp": format!("2026-11-29T10:{:02}:{:02}.000Z", second / 60, second % 60),
        "purposes": {"tracking": tracking, "sales": tracking, "marketing": tracking, "support": tracking}
    })
}

#[test]
fn nothing_after_an_acknowledged_revocation_is_scored_or_offered() {
    let d = Deployment::new("revoke", 3, true);
    let instance = d.start("a");
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let send = |topic: &str, v: &Value| {
        let bytes = serde_json::to_vec(v).expect("json");
        let key = v["visitor_id"]
            .as_str()
            .expect("visitor")
            .as_bytes()
            .to_vec();
        producer
            .send(OutgoingRecord {
                topic,
                key: Some(&key),
                value: Some(&bytes),
            })
            .expect("send");
    };
    let visitors = ["rv-1", "rv-2", "rv-3", "rv-4"];
    for v in visitors {
        send(&d.settings.consent_topic, &consent(v, 0, true));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    for n in 0..6 {
        for v in visitors {
            send(&d.settings.events_topic, &event(v, n, 10 + n * 20));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    d.wait_processed(Duration::from_secs(60));

    // The revocation is acknowledged before the later events exist.
    for v in visitors {
        send(&d.settings.consent_topic, &consent(v, 200, false));
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    for n in 6..12 {
        for v in visitors {
            send(&d.settings.events_topic, &event(v, n, 210 + n * 5));
        }
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
    d.wait_processed(Duration::from_secs(60));
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success());

    let scores: Vec<Value> = d
        .read_topic(&d.settings.scores_topic)
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("score"))
        .collect();
    let scored: std::collections::HashSet<String> = scores
        .iter()
        .map(|s| s["event_id"].as_str().unwrap_or("").to_owned())
        .collect();
    for v in visitors {
        for n in 0..6 {
            assert!(
                scored.contains(&format!("{v}-e{n}")),
                "{v}-e{n} (before revocation) was not scored"
            );
        }
        for n in 6..12 {
            assert!(
                !scored.contains(&format!("{v}-e{n}")),
                "{v}-e{n} was scored after the revocation"
            );
        }
    }
    let offers: Vec<Value> = d
        .read_topic(&d.settings.offers_topic)
        .iter()
        .map(|r| serde_json::from_slice(r.value.as_deref().unwrap_or_default()).expect("offer"))
        .collect();
    for o in &offers {
        let trigger = o["trigger_event_id"].as_str().unwrap_or("");
        let n: u32 = trigger
            .rsplit('e')
            .next()
            .and_then(|x| x.parse().ok())
            .unwrap_or(0);
        assert!(
            n < 6,
            "offer {} triggered by {trigger} after the revocation",
            o["offer_id"]
        );
    }
    let s = &read_json(&d.dir.path().join("summary-a.json"));
    assert_eq!(s["dropped_by_reason"]["revoked"], 24, "summary: {s}");
    assert_eq!(s["revocations"], 4, "summary: {s}");
}
