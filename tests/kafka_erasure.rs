//! Erasure through the admin API: a visitor who has received offers asks
//! to be forgotten (a consent tombstone); afterwards the admin API shows
//! nothing of them but the erasure itself — no session, no caps, no
//! buffered events and none of the recent offers it listed before.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use propensity_kafka::produce::{OutgoingRecord, TrafficProducer};
use propensity_system_tests::{offers_in, Deployment, Instance};
use serde_json::Value;

fn held(instance: &Instance, visitor: &str) -> Value {
    let (status, body) = instance.http_get(&format!("/v1/visitors/{visitor}"), Some("admin-token"));
    assert_eq!(status, 200, "access request: {body}");
    serde_json::from_str(&body).expect("json")
}

#[test]
fn an_erased_visitor_leaves_nothing_but_the_erasure_in_the_admin_api() {
    let d = Deployment::new("erasure", 3, false);
    let traffic = d.generate(300, 11, 0.0);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));

    // The visitor with the most offers (the recent-offer list is per
    // partition and bounded, so the one with the most is surely listed).
    let offers = offers_in(&d.read_topic(&d.settings.offers_topic));
    let mut per_visitor: BTreeMap<String, usize> = BTreeMap::new();
    for o in &offers {
        *per_visitor
            .entry(o["visitor_id"].as_str().expect("visitor").to_owned())
            .or_default() += 1;
    }
    let (visitor, count) = per_visitor
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(v, n)| (v.clone(), *n))
        .expect("the generated traffic produced offers");
    let before = held(&instance, &visitor);
    let listed = before["held"]["recent_offers"]
        .as_array()
        .or_else(|| before["recent_offers"].as_array())
        .map_or(0, Vec::len);
    assert!(
        listed > 0,
        "{visitor} has {count} offers on the topic and the admin API lists them before the erasure: {before}"
    );

    let producer = TrafficProducer::new(&d.settings).expect("producer");
    producer
        .send(OutgoingRecord {
            topic: &d.settings.consent_topic,
            key: Some(visitor.as_bytes()),
            value: None,
        })
        .expect("send tombstone");
    producer.flush(Duration::from_secs(30)).expect("flush");

    let started = Instant::now();
    let after = loop {
        let now = held(&instance, &visitor);
        let text = now.to_string();
        if text.contains("\"erased\":true") {
            break now;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the erasure did not apply within 30 s: {now}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let text = after.to_string();
    assert!(
        !text.contains("offer_id"),
        "no offer of the erased visitor is listed any more: {after}"
    );
    assert!(
        !text.contains("\"session\":{"),
        "no session is held for the erased visitor: {after}"
    );
    assert!(instance.terminate(Duration::from_secs(30)).success());
    println!("erasure: {visitor} had {count} offers ({listed} listed); after the erasure: {after}");
}
