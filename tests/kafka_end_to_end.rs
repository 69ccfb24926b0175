//! End to end on a real broker: generated traffic (with malformed lines)
//! through `propensity run` gives exactly the offers `propensity replay`
//! gives on the same records, none twice; malformed records are
//! dead-lettered with Kafka Connect-style headers; the drift gauges count
//! every committed score once and equal the PSI `propensity evaluate`
//! computes offline from the same records, and the online evaluation
//! labels as many achieving sessions as `evaluate`'s per-session rows.

use std::time::Duration;

use propensity_system_tests::{assert_same_offers, offers_in, read_lines, Deployment, Metrics};
use serde_json::Value;

#[test]
fn kafka_offers_equal_replay_offers() {
    let mut d = Deployment::new("e2e", 3, false);
    // Drift gauges from the first scored event, refreshed often.
    for (key, value) in [
        ("DRIFT_MIN_EVENTS", "1"),
        ("ONLINE_EVAL_MIN_SESSIONS", "1"),
        ("STATISTICS_INTERVAL_MS", "300"),
    ] {
        d.env
            .push((format!("PROPENSITY__KAFKA__{key}"), value.to_owned()));
    }
    let traffic = d.generate(250, 21, 0.01);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));

    // Drift: one instance owns every partition, so its window holds every
    // committed score, each once; evaluate computes the same PSI offline.
    let evaluation = d.evaluate(&traffic);
    let offline: Vec<(String, u64, f64, f64)> = evaluation["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| {
            let drift = &o["drift"];
            let features: f64 = drift["features"]
                .as_array()
                .expect("features")
                .iter()
                .filter_map(Value::as_f64)
                .sum();
            (
                o["outcome"].as_str().expect("name").to_owned(),
                drift["events"].as_u64().expect("events"),
                drift["score"].as_f64().expect("score PSI"),
                features,
            )
        })
        .collect();
    assert_eq!(offline.len(), 3);
    let window_events = |m: &Metrics, outcome: &str| {
        m.sum_where("propensity_drift_window_events", &[("outcome", outcome)]) as u64
    };
    // Online evaluation: every session that achieved an outcome after a
    // score resolved at once, so the instance labelled as many positives
    // as evaluate's per-session rows have (sessions still open when the
    // input ends are not resolved yet, so negatives are fewer).
    let per_session: Vec<(String, u64, u64)> = evaluation["outcomes"]
        .as_array()
        .expect("outcomes")
        .iter()
        .map(|o| {
            let s = &o["per_session"];
            let count = s["count"].as_u64().expect("count");
            let positives = (s["base_rate"].as_f64().expect("base rate") * count as f64).round();
            (
                o["outcome"].as_str().expect("name").to_owned(),
                count,
                positives as u64,
            )
        })
        .collect();
    let resolved = |m: &Metrics, outcome: &str, result: &str| {
        m.sum_where(
            "propensity_online_sessions",
            &[("outcome", outcome), ("result", result)],
        ) as u64
    };
    let (m, all_in) = instance.wait_metrics(Duration::from_secs(30), |m| {
        offline
            .iter()
            .all(|(outcome, events, _, _)| window_events(m, outcome) == *events)
            && per_session
                .iter()
                .all(|(outcome, _, positives)| resolved(m, outcome, "achieved") == *positives)
    });
    for (outcome, count, positives) in &per_session {
        assert!(*positives > 0, "{outcome}: no session achieved it");
        assert_eq!(
            resolved(&m, outcome, "achieved"),
            *positives,
            "{outcome} (all in: {all_in})"
        );
        let negatives = resolved(&m, outcome, "not_achieved");
        assert!(
            negatives <= count - positives,
            "{outcome}: {negatives} negatives"
        );
        let auc = m.sum_where("propensity_online_auc", &[("outcome", outcome)]);
        assert!(
            negatives == 0 || (0.5..=1.0).contains(&auc),
            "{outcome}: online AUC {auc}"
        );
    }
    for (outcome, events, score, features) in &offline {
        assert!(
            *events > 100,
            "{outcome}: only {events} scored events in the sample"
        );
        assert_eq!(
            window_events(&m, outcome),
            *events,
            "{outcome} (all in: {all_in})"
        );
        let live = m.sum_where("propensity_score_psi", &[("outcome", outcome)]);
        assert!(
            (live - score).abs() < 1e-9,
            "{outcome}: score PSI {live} live, {score} offline"
        );
        let live = m.sum_where("propensity_feature_psi", &[("outcome", outcome)]);
        assert!(
            (live - features).abs() < 1e-9,
            "{outcome}: feature PSIs sum to {live} live, {features} offline"
        );
    }
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
