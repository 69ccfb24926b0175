//! The adaptive model on Kafka: every outcome learns online and serves
//! (`[adaptive] role = "champion"`), so every score and offer depends on
//! the learners' state, which lives in the changelog. The instance is
//! killed with SIGKILL while traffic flows, restarted, joined by a second
//! instance (a rebalance moves partitions and their learners) which is
//! then killed too; afterwards the offers and decisions equal `replay`'s
//! of the same records, and each partition's learner state in the
//! changelog equals `replay`'s bit for bit, with the same number of
//! updates: nothing was learnt twice or lost.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use propensity_system_tests::{assert_same_offers, offers_in, read_json, Deployment};
use serde_json::Value;

const ADAPTIVE: [(&str, &str); 4] = [
    (
        "PROPENSITY__ADAPTIVE__OUTCOMES",
        r#"["purchase", "webinar_signup", "application_complete"]"#,
    ),
    ("PROPENSITY__ADAPTIVE__ROLE", "\"champion\""),
    // Fast learning, so that the state changes the offers.
    ("PROPENSITY__ADAPTIVE__ALPHA", "0.5"),
    ("PROPENSITY__ADAPTIVE__PRIOR_SESSIONS", "2.0"),
];

/// The latest adaptive-state record of each changelog partition:
/// partition → [(outcome, state)].
fn changelog_learners(d: &Deployment) -> BTreeMap<i32, Value> {
    let mut latest = BTreeMap::new();
    for r in d.read_topic(&d.settings.changelog_topic) {
        if r.headers.contains_key("propensity.adaptive_state") {
            let v: Value = serde_json::from_slice(r.value.as_deref().unwrap_or_default())
                .expect("adaptive state JSON");
            latest.insert(r.partition, v);
        }
    }
    latest
}

#[test]
fn learners_survive_kill_9_and_rebalances_without_learning_twice() {
    let mut d = Deployment::new("adaptive", 3, false);
    for (k, v) in ADAPTIVE {
        d.env.push((k.to_owned(), v.to_owned()));
    }
    d.wait_topics_visible(Duration::from_secs(30));
    let traffic = d.generate(400, 23, 0.0);
    let mut a = Some(d.start("a"));
    let mut b = None;
    let mut step = 0;
    let started = Instant::now();
    d.produce_paced(&traffic, |i, total| {
        let due = [total / 4, total / 2, total * 3 / 4];
        if step >= due.len() || i < due[step] {
            return;
        }
        match step {
            // Killed with work in flight, restarted: restore from the
            // changelog.
            0 => {
                a.take().expect("a").kill9();
                a = Some(d.start("a"));
            }
            // A second instance: partitions (and learners) move.
            1 => b = Some(d.start("b")),
            // It dies: its partitions move back, restored again.
            _ => b.take().expect("b").kill9(),
        }
        step += 1;
    });
    assert_eq!(step, 3, "every disruption happened");
    d.wait_processed(Duration::from_secs(240));
    let a = a.take().expect("a");
    let (_, metrics) = a.http_get("/metrics", None);
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("propensity_model_info{")
                && l.contains("role=\"champion\"")
                && l.contains("+ftrl\"")),
        "model_info shows the learners serving"
    );
    let status = a.terminate(Duration::from_secs(60));
    assert!(status.success(), "exit after SIGTERM: {status}");
    eprintln!(
        "traffic with a kill, a join and a kill in {:.1} s",
        started.elapsed().as_secs_f64()
    );

    // Offers and decisions: exactly what one uninterrupted replay makes
    // with the same learning.
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_all(&traffic);
    assert!(kafka.len() >= 20, "{} offers", kafka.len());
    assert_same_offers(&kafka, &replay.offers);
    d.assert_decision_log_matches(&replay, &kafka);

    // The learners: replay's, per partition, bit for bit.
    let out = d.dir.path().join("adaptive-snapshot");
    let status = d
        .command(&["replay", "--events"])
        .arg(&traffic.events)
        .arg("--consent")
        .arg(&traffic.consent)
        .arg("--models")
        .arg(propensity_system_tests::models_dir())
        .arg("--offers-out")
        .arg(d.dir.path().join("adaptive-offers.jsonl"))
        .arg("--adaptive-out")
        .arg(&out)
        .status()
        .expect("replay");
    assert!(status.success());
    let replayed = read_json(&out.join("learners.json"));
    let kafka_states = changelog_learners(&d);
    assert_eq!(kafka_states.len(), 3, "a state record per partition");
    let mut updates = 0;
    for entry in replayed.as_array().expect("learners") {
        let p = entry["partition"].as_i64().expect("partition") as i32;
        let outcome = entry["outcome"].as_str().expect("outcome");
        let kafka_state = kafka_states[&p]
            .as_array()
            .and_then(|a| a.iter().find(|s| s[0] == outcome))
            .map(|s| &s[1])
            .unwrap_or_else(|| panic!("partition {p}: no state for {outcome}"));
        assert_eq!(
            kafka_state["updates"], entry["state"]["updates"],
            "partition {p}, {outcome}: updates"
        );
        assert_eq!(
            kafka_state, &entry["state"],
            "partition {p}, {outcome}: learner state differs from replay's"
        );
        updates += entry["state"]["updates"].as_u64().unwrap_or(0);
    }
    eprintln!("{updates} updates in all, equal to replay's");
    assert!(updates >= 100, "{updates} updates");
    // The snapshot is an artifact the engine loads (its own version).
    let artifact = read_json(&out.join("purchase.json"));
    assert_eq!(artifact["format"], "propensity-model/v2");
    assert!(artifact["training"]["adaptive"]["updates"].as_u64() > Some(0));
    // Snapshotting the deployment from its changelog gives the same
    // learners and the same artifacts as the replay's.
    let from_kafka = d.dir.path().join("adaptive-from-kafka");
    let output = d
        .command(&["models", "snapshot-adaptive", "--out"])
        .arg(&from_kafka)
        .arg("--models")
        .arg(propensity_system_tests::models_dir())
        .output()
        .expect("snapshot-adaptive");
    assert!(
        output.status.success(),
        "snapshot-adaptive: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("{}", String::from_utf8_lossy(&output.stdout));
    for file in [
        "learners.json",
        "purchase.json",
        "webinar_signup.json",
        "application_complete.json",
    ] {
        assert_eq!(
            read_json(&from_kafka.join(file)),
            read_json(&out.join(file)),
            "{file}: the snapshot from Kafka differs from replay's"
        );
    }
}
