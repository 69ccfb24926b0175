//! Crash recovery and graceful shutdown.
//!
//! - The pipeline is killed with SIGKILL at least five times while traffic
//!   flows, each time while the group has **uncommitted input** (checked
//!   through the group's committed offsets against the events topic's end
//!   right before the kill, and again once the process is dead, when its
//!   commits can no longer advance), and restarted; each restart commits
//!   that input, and at the end the offers topic read with read_committed
//!   equals the replay's offers: none missing, none duplicated.
//! - SIGTERM while a long transaction is open with uncommitted input: the
//!   process exits 0 within the drain timeout, and the drain committed the
//!   input and its offers.

use std::collections::{BTreeSet, HashMap};
use std::time::{Duration, Instant};

use propensity_kafka::probe::CommitProbe;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_system_tests::{
    assert_same_offers, offers_in, read_lines, Deployment, Instance, Traffic,
};
use serde_json::{json, Value};

/// The events topic's current end offsets when the group has **not**
/// committed up to them (some input is uncommitted); `None` when everything
/// is committed or the broker did not answer.
fn uncommitted(probe: &CommitProbe) -> Option<HashMap<i32, i64>> {
    let ends = probe.end_offsets().ok()?;
    match probe.committed_reaches(&ends) {
        Ok(false) => Some(ends),
        _ => None,
    }
}

/// Waits until the group's commits reach `ends`; false on timeout.
fn wait_committed(probe: &CommitProbe, ends: &HashMap<i32, i64>, timeout: Duration) -> bool {
    let started = Instant::now();
    loop {
        if probe.committed_reaches(ends).unwrap_or(false) {
            return true;
        }
        if started.elapsed() > timeout {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn offers_survive_repeated_kill_9_with_uncommitted_input() {
    let d = Deployment::new("crash", 3, false);
    d.wait_topics_visible(Duration::from_secs(30));
    let probe = CommitProbe::new(&d.settings).expect("probe");
    // Enough traffic for a dozen kill points: a kill can land just after
    // the commit it was aimed before, so the test keeps killing until five
    // have been confirmed to hit uncommitted input.
    let traffic = d.generate(400, 22, 0.0);
    let mut instance = Some(d.start("a"));
    let (mut kills, mut uncommitted_kills, mut checks) = (0usize, 0usize, 0usize);
    let mut recoveries: Vec<f64> = Vec::new();
    let mut last_kill = Instant::now();
    d.produce_paced(&traffic, |i, total| {
        // Kill points: at least 1.2 s apart (each run gets to commit), and
        // only at a moment when some produced input is not committed yet.
        let due = uncommitted_kills < 6
            && kills < 14
            && i > total / 20
            && last_kill.elapsed() > Duration::from_millis(1200);
        if !due {
            return;
        }
        checks += 1;
        let Some(ends) = uncommitted(&probe) else {
            return;
        };
        instance.take().expect("instance").kill9();
        kills += 1;
        // The process is gone, so the group's commits cannot advance any
        // more: still behind `ends` means it died with that input
        // uncommitted (an error, e.g. a commit caught half-way, counts as
        // not shown).
        if probe.committed_reaches(&ends).ok() == Some(false) {
            uncommitted_kills += 1;
        }
        let restarted = Instant::now();
        instance = Some(d.start("a"));
        assert!(
            wait_committed(&probe, &ends, Duration::from_secs(120)),
            "kill {kills}: the restarted instance did not commit the input left uncommitted ({ends:?})"
        );
        recoveries.push(restarted.elapsed().as_secs_f64());
        last_kill = Instant::now();
    });
    d.wait_processed(Duration::from_secs(180));
    let inst = instance.take().expect("instance");
    let status = inst.terminate(Duration::from_secs(30));
    eprintln!(
        "{kills} kills after {checks} checks; {uncommitted_kills} with uncommitted input confirmed after death; \
         restart-to-commit times (s): {recoveries:.1?}"
    );
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        uncommitted_kills >= 5,
        "only {uncommitted_kills} of {kills} kills hit uncommitted input (need 5)"
    );

    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_all(&traffic);
    assert_same_offers(&kafka, &replay.offers);
    // Decisions and conversions share the offers' transactions: exactly
    // once as well, in both arms of the control group.
    d.assert_decision_log_matches(&replay, &kafka);
}

/// The visitors of `traffic` whose every consent record precedes their first
/// event, written as new files: producing all their consent before all their
/// events is then the same as producing in time order.
fn consent_first_visitors(d: &Deployment, traffic: &Traffic) -> Traffic {
    let events = read_lines(&traffic.events);
    let consent = read_lines(&traffic.consent);
    let field = |line: &str, f: &str| -> Option<String> {
        serde_json::from_str::<Value>(line).ok()?[f]
            .as_str()
            .map(str::to_owned)
    };
    let mut first_event: HashMap<String, String> = HashMap::new();
    for l in &events {
        if let (Some(v), Some(t)) = (field(l, "visitor_id"), field(l, "timestamp")) {
            let e = first_event.entry(v).or_insert_with(|| t.clone());
            if t < *e {
                *e = t;
            }
        }
    }
    let mut last_consent: HashMap<String, String> = HashMap::new();
    for l in &consent {
        if let (Some(v), Some(t)) = (field(l, "visitor_id"), field(l, "timestamp")) {
            let e = last_consent.entry(v).or_insert_with(|| t.clone());
            if t > *e {
                *e = t;
            }
        }
    }
    let keep: BTreeSet<&String> = first_event
        .iter()
        .filter(|(v, t)| last_consent.get(*v).is_some_and(|c| c <= *t))
        .map(|(v, _)| v)
        .collect();
    let filter = |lines: &[String]| -> String {
        lines
            .iter()
            .filter(|l| field(l, "visitor_id").is_some_and(|v| keep.contains(&v)))
            .map(|l| format!("{l}\n"))
            .collect()
    };
    let dir = d.dir.path().join("consent-first");
    std::fs::create_dir_all(&dir).expect("dir");
    let out = Traffic {
        events: dir.join("events.jsonl"),
        consent: dir.join("consent.jsonl"),
    };
    std::fs::write(&out.events, filter(&events)).expect("write");
    std::fs::write(&out.consent, filter(&consent)).expect("write");
    out
}

fn send_lines(producer: &TrafficProducer, topic: &str, lines: &[String]) {
    for l in lines {
        let key = visitor_key(l.as_bytes());
        producer
            .send(OutgoingRecord {
                topic,
                key: key.as_deref().map(str::as_bytes),
                value: Some(l.as_bytes()),
            })
            .expect("send");
    }
    producer.flush(Duration::from_secs(30)).expect("flush");
}

fn wait_ready(instance: &Instance) {
    let started = Instant::now();
    while instance.http_get("/readyz", None).0 != 200 {
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "not ready within 60 s; log: {}",
            instance.log.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn sigterm_drains_the_open_transaction() {
    // Long enough that the next periodic commit cannot come before the
    // SIGTERM even on a loaded machine: it is due one interval after the
    // warm-up commit *started*, and this test only sees that commit after
    // it ended (a slow commit under load eats into the margin).
    const COMMIT_INTERVAL_MS: u64 = 8000;
    const DRAIN_TIMEOUT_SECS: u64 = 10;
    let mut d = Deployment::new("drain", 3, false);
    d.wait_topics_visible(Duration::from_secs(30));
    d.env.push((
        "PROPENSITY__KAFKA__COMMIT_INTERVAL_MS".into(),
        COMMIT_INTERVAL_MS.to_string(),
    ));
    d.env.push((
        "PROPENSITY__KAFKA__DRAIN_TIMEOUT_SECS".into(),
        format!("{DRAIN_TIMEOUT_SECS}.0"),
    ));
    let probe = CommitProbe::new(&d.settings).expect("probe");
    let traffic = consent_first_visitors(&d, &d.generate(150, 26, 0.0));
    let (events, consent) = (read_lines(&traffic.events), read_lines(&traffic.consent));
    let instance = d.start("a");
    wait_ready(&instance);
    let producer = TrafficProducer::new(&d.settings).expect("producer");

    // Warm-up: one event (of a visitor who does not consent, so it makes
    // nothing) committed, so the next transaction opens right after a
    // commit and stays open for the whole commit interval.
    let first_time = serde_json::from_str::<Value>(&events[0]).expect("event")["timestamp"].clone();
    let warm_consent = json!({"visitor_id": "warm-up", "timestamp": first_time,
        "purposes": {"tracking": false, "sales": false, "marketing": false, "support": false}});
    let warm_event = json!({"event_id": "warm-up-1", "visitor_id": "warm-up", "type": "page_view",
        "timestamp": first_time, "page": {"url": "https://shop.example.com/"}});
    send_lines(
        &producer,
        &d.settings.consent_topic,
        &[warm_consent.to_string()],
    );
    send_lines(
        &producer,
        &d.settings.events_topic,
        &[warm_event.to_string()],
    );
    d.wait_processed(Duration::from_secs(60));
    let warm_committed = Instant::now();

    // The traffic: all consent first, then all events (equivalent to time
    // order for these visitors), then time for the instance to consume it
    // into its open transaction.
    send_lines(&producer, &d.settings.consent_topic, &consent);
    send_lines(&producer, &d.settings.events_topic, &events);
    std::thread::sleep(Duration::from_millis(1500));

    let ends = uncommitted(&probe).expect("input is uncommitted right before SIGTERM");
    let before_signal = warm_committed.elapsed();
    assert!(
        before_signal < Duration::from_millis(COMMIT_INTERVAL_MS - 1000),
        "SIGTERM would come {before_signal:?} after the last commit: too close to the next periodic commit to prove the drain"
    );
    let signalled = Instant::now();
    let status = instance.terminate(Duration::from_secs(DRAIN_TIMEOUT_SECS + 5));
    let took = signalled.elapsed();
    eprintln!(
        "SIGTERM {:.1} s after the last commit with {} events uncommitted; exit {status} after {:.2} s",
        before_signal.as_secs_f64(),
        events.len(),
        took.as_secs_f64()
    );
    assert!(status.success(), "exit after SIGTERM: {status}");
    assert!(
        took < Duration::from_secs(DRAIN_TIMEOUT_SECS),
        "the drain took {took:?}, more than the drain timeout"
    );
    // No process of the group runs any more: whatever is committed now, the
    // drain committed.
    assert!(
        wait_committed(&probe, &ends, Duration::from_secs(5)),
        "the drain did not commit the consumed input ({ends:?})"
    );
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_offers(&traffic);
    assert_same_offers(&kafka, &replay);
    eprintln!("{} offers committed by the drain", kafka.len());
}
