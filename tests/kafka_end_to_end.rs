//! End to end on a real broker: generated traffic (with malformed lines)
//! through `propensity run` gives exactly the offers `propensity replay`
//! gives on the same records, none twice; malformed records are
//! dead-lettered with Kafka Connect-style headers; the drift gauges count
//! every committed score once and equal the PSI `propensity evaluate`
//! computes offline from the same records, and the online evaluation
//! labels as many achieving sessions as `evaluate`'s per-session rows;
//! both windows keep that through `kill -9` and rebalances (they are
//! partition state in the changelog).

use std::time::Duration;

use propensity_system_tests::{
    assert_same_offers, offers_in, read_lines, Deployment, Instance, Metrics, Traffic,
};
use serde_json::Value;

/// What `propensity evaluate` computes offline from the traffic: per
/// outcome, the drift sample (events, score PSI, sum of feature PSIs) and
/// the per-session rows (sessions, of which achieved).
struct Offline {
    drift: Vec<(String, u64, f64, f64)>,
    per_session: Vec<(String, u64, u64)>,
}

impl Offline {
    fn of(d: &Deployment, traffic: &Traffic) -> Self {
        let evaluation = d.evaluate(traffic);
        let outcomes = evaluation["outcomes"].as_array().expect("outcomes");
        let drift: Vec<(String, u64, f64, f64)> = outcomes
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
        assert_eq!(drift.len(), 3);
        // Every session that achieved an outcome after a score resolved at
        // once, so the instances labelled as many positives as evaluate's
        // per-session rows have (sessions still open when the input ends
        // are not resolved yet, so negatives are fewer).
        let per_session = outcomes
            .iter()
            .map(|o| {
                let s = &o["per_session"];
                let count = s["count"].as_u64().expect("count");
                let positives =
                    (s["base_rate"].as_f64().expect("base rate") * count as f64).round();
                (
                    o["outcome"].as_str().expect("name").to_owned(),
                    count,
                    positives as u64,
                )
            })
            .collect();
        Self { drift, per_session }
    }

    /// Whether the scrape's windows hold every scored event sampled and
    /// every achieving session (summed over the instances scraped).
    fn all_in(&self, m: &Metrics) -> bool {
        self.drift
            .iter()
            .all(|(outcome, events, _, _)| window_events(m, outcome) == *events)
            && self
                .per_session
                .iter()
                .all(|(outcome, _, positives)| resolved(m, outcome, "achieved") == *positives)
    }

    /// The windows hold each committed scored event and resolved session
    /// once; with `one_instance` (all partitions in the scrape's instance)
    /// its PSIs equal the offline ones too.
    fn assert_equal(&self, m: &Metrics, all_in: bool, one_instance: bool) {
        for (outcome, count, positives) in &self.per_session {
            assert!(*positives > 0, "{outcome}: no session achieved it");
            assert_eq!(
                resolved(m, outcome, "achieved"),
                *positives,
                "{outcome} (all in: {all_in})"
            );
            let negatives = resolved(m, outcome, "not_achieved");
            assert!(
                negatives <= count - positives,
                "{outcome}: {negatives} negatives"
            );
            let auc = m.sum_where(
                "propensity_online_auc",
                &[("outcome", outcome), ("role", "champion")],
            );
            assert!(
                !one_instance || negatives == 0 || (0.5..=1.0).contains(&auc),
                "{outcome}: online AUC {auc}"
            );
        }
        for (outcome, events, score, features) in &self.drift {
            assert!(
                *events > 100,
                "{outcome}: only {events} scored events in the sample"
            );
            assert_eq!(
                window_events(m, outcome),
                *events,
                "{outcome} (all in: {all_in})"
            );
            if !one_instance {
                continue;
            }
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
    }
}

fn window_events(m: &Metrics, outcome: &str) -> u64 {
    m.sum_where("propensity_drift_window_events", &[("outcome", outcome)]) as u64
}

fn resolved(m: &Metrics, outcome: &str, result: &str) -> u64 {
    m.sum_where(
        "propensity_online_sessions",
        &[
            ("outcome", outcome),
            ("result", result),
            ("role", "champion"),
        ],
    ) as u64
}

/// A deployment whose drift and online-evaluation gauges are published
/// from the first scored event and resolved session, refreshed often.
fn monitored_deployment(name: &str) -> Deployment {
    let mut d = Deployment::new(name, 3, false);
    for (key, value) in [
        ("DRIFT_MIN_EVENTS", "1"),
        ("ONLINE_EVAL_MIN_SESSIONS", "1"),
        ("STATISTICS_INTERVAL_MS", "300"),
    ] {
        d.env
            .push((format!("PROPENSITY__KAFKA__{key}"), value.to_owned()));
    }
    d
}

#[test]
fn kafka_offers_equal_replay_offers() {
    let d = monitored_deployment("e2e");
    let traffic = d.generate(250, 21, 0.01);
    let instance = d.start("a");
    d.produce_paced(&traffic, |_, _| {});
    d.wait_processed(Duration::from_secs(120));

    // Drift: one instance owns every partition, so its window holds every
    // committed score, each once; evaluate computes the same PSI offline.
    let offline = Offline::of(&d, &traffic);
    let (m, all_in) = instance.wait_metrics(Duration::from_secs(30), |m| offline.all_in(m));
    offline.assert_equal(&m, all_in, true);
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

/// The monitoring windows are partition state in the changelog: through a
/// `kill -9` mid-stream (its uncommitted work done again), an instance
/// joining while traffic flows (partitions move, their windows with them)
/// and that instance leaving again, the windows hold every committed
/// scored event and resolved session exactly once, and the PSIs equal the
/// offline ones once one instance owns every partition again.
#[test]
fn monitoring_windows_survive_kill_9_and_move_with_their_partitions() {
    let d = monitored_deployment("monitoring");
    let traffic = d.generate(250, 23, 0.01);
    let mut a = Some(d.start("a"));
    let mut b: Option<Instance> = None;
    d.produce_paced(&traffic, |i, total| {
        if i == total / 3 {
            a.take().expect("instance a").kill9();
            a = Some(d.start("a"));
        } else if i == 2 * total / 3 {
            b = Some(d.start("b"));
        }
    });
    d.wait_processed(Duration::from_secs(180));
    let a = a.expect("instance a");
    let b = b.expect("instance b");
    let offline = Offline::of(&d, &traffic);

    // Two instances: their windows add up to the whole traffic's.
    let both = || {
        let mut m = a.metrics();
        m.series.extend(b.metrics().series);
        m
    };
    let started = std::time::Instant::now();
    let mut m = both();
    while !offline.all_in(&m) && started.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(300));
        m = both();
    }
    let all_in = offline.all_in(&m);
    offline.assert_equal(&m, all_in, false);
    assert!(
        b.metrics().sum("propensity_drift_window_events") > 0.0,
        "b took no partition with a window"
    );

    // b leaves: a restores b's partitions, windows included.
    let status = b.terminate(Duration::from_secs(30));
    assert!(status.success(), "b exited with {status} after SIGTERM");
    let (m, all_in) = a.wait_metrics(Duration::from_secs(60), |m| offline.all_in(m));
    offline.assert_equal(&m, all_in, true);
    let status = a.terminate(Duration::from_secs(30));
    assert!(status.success(), "a exited with {status} after SIGTERM");

    // The window records: per commit a delta of its own counts, now and
    // then a bucket's base; a bounded number of keys per partition.
    let windows: Vec<_> = d
        .read_topic(&d.settings.changelog_topic)
        .into_iter()
        .filter(|r| r.headers.contains_key("propensity.monitoring_window"))
        .collect();
    let key = |r: &propensity_system_tests::Record| {
        String::from_utf8_lossy(r.key.as_deref().unwrap_or_default()).into_owned()
    };
    let sizes = |delta: bool| {
        let mut v: Vec<usize> = windows
            .iter()
            .filter(|r| key(r).contains(".delta.") == delta)
            .filter_map(|r| r.value.as_ref().map(Vec::len))
            .collect();
        v.sort_unstable();
        v
    };
    let (deltas, bases) = (sizes(true), sizes(false));
    let keys: std::collections::BTreeSet<_> =
        windows.iter().map(|r| (r.partition, key(r))).collect();
    eprintln!(
        "window records: {} deltas (median {} bytes, largest {}), {} bases (median {} bytes, largest {}), {} (partition, key) pairs",
        deltas.len(),
        deltas.get(deltas.len() / 2).copied().unwrap_or(0),
        deltas.last().copied().unwrap_or(0),
        bases.len(),
        bases.get(bases.len() / 2).copied().unwrap_or(0),
        bases.last().copied().unwrap_or(0),
        keys.len()
    );
    assert!(!deltas.is_empty() && !bases.is_empty(), "deltas and bases");
    assert!(
        keys.len() <= 3 * 2 * (64 + 13),
        "{} keys: at most 64 delta slots and 13 buckets per window and partition",
        keys.len()
    );
    assert!(
        bases.last().copied().unwrap_or(0) < 16_384,
        "a base record of {:?} bytes",
        bases.last()
    );
}
