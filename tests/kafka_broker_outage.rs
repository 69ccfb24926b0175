//! The broker goes away for 20 s mid-stream, while traffic keeps coming and
//! the pipeline has uncommitted input, and comes back: the pipeline notices
//! (a transaction is aborted or a transactional call retried, shown by
//! `/metrics` or else by the instance's log), resumes without crashing, and
//! the offers still equal the replay's, none lost or duplicated.

use std::collections::HashSet;
use std::process::Command;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use propensity_engine::replay::{merge_order, RecordKind};
use propensity_kafka::probe::CommitProbe;
use propensity_kafka::produce::{visitor_key, OutgoingRecord, TrafficProducer};
use propensity_system_tests::{
    assert_same_offers, offers_in, read_lines, Deployment, Instance, Traffic,
};

fn broker(action: &str) {
    let script = std::env::var("PROPENSITY_TEST_BROKER_SCRIPT").unwrap_or_else(|_| {
        panic!("PROPENSITY_TEST_BROKER_SCRIPT must name the script that controls the test broker (tests/run-all.sh sets it to deploy/local/kafka)")
    });
    let status = Command::new(&script)
        .arg(action)
        .status()
        .expect("broker script");
    assert!(status.success(), "{script} {action} failed");
}

/// The broker's outage, run in the background; dropping it waits for the
/// broker to be started again, so a failing test never leaves it stopped.
struct Outage(Option<JoinHandle<()>>);

impl Outage {
    fn begin() -> Self {
        Self(Some(std::thread::spawn(|| {
            broker("stop");
            std::thread::sleep(Duration::from_secs(20));
            broker("start");
        })))
    }

    fn end(mut self) {
        if let Some(h) = self.0.take() {
            h.join().expect("broker thread");
        }
    }
}

impl Drop for Outage {
    fn drop(&mut self) {
        if let Some(h) = self.0.take() {
            let _ = h.join();
        }
    }
}

/// Waits until the group has committed the events topic up to its end,
/// riding out broker errors (the broker may be away or just back).
fn wait_committed(probe: &CommitProbe, timeout: Duration) {
    let started = Instant::now();
    let mut fresh: Option<CommitProbe> = None;
    loop {
        // A client that lived through the broker restart can keep failing
        // on stale metadata (FencedLeaderEpoch) long after the broker is
        // back, while the pipeline has long committed: after an error the
        // question is asked again by a new client.
        let asking = fresh.as_ref().unwrap_or(probe);
        let answer = asking
            .end_offsets()
            .and_then(|ends| asking.committed_reaches(&ends));
        if answer.is_err() {
            fresh = CommitProbe::new(probe.settings()).ok();
        }
        let done = answer.unwrap_or(false);
        if done {
            return;
        }
        assert!(
            started.elapsed() < timeout,
            "the group did not commit the events topic to its end within {timeout:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The harness's paced production (time order, consent barriers), with
/// flushes and barrier waits that outlast a broker outage: the records
/// keep coming while the broker is away.
fn produce_paced_through_outage(
    d: &Deployment,
    probe: &CommitProbe,
    traffic: &Traffic,
    mut between: impl FnMut(usize, usize),
) {
    const PATIENCE: Duration = Duration::from_secs(300);
    let events = read_lines(&traffic.events);
    let consent = read_lines(&traffic.consent);
    let ev: Vec<&[u8]> = events.iter().map(|l| l.as_bytes()).collect();
    let co: Vec<&[u8]> = consent.iter().map(|l| l.as_bytes()).collect();
    let order = merge_order(&ev, &co);
    let producer = TrafficProducer::new(&d.settings).expect("producer");
    let mut pending: HashSet<String> = HashSet::new();
    for (i, rec) in order.iter().enumerate() {
        between(i, order.len());
        let (topic, line) = match rec.kind {
            RecordKind::Event => (&d.settings.events_topic, ev[rec.index]),
            RecordKind::Consent => (&d.settings.consent_topic, co[rec.index]),
        };
        let key = visitor_key(line);
        if rec.kind == RecordKind::Consent {
            if key.as_ref().is_some_and(|k| pending.contains(k)) {
                producer.flush(PATIENCE).expect("flush");
                wait_committed(probe, PATIENCE);
                pending.clear();
            }
        } else if let Some(k) = &key {
            pending.insert(k.clone());
        }
        producer
            .send(OutgoingRecord {
                topic,
                key: key.as_deref().map(str::as_bytes),
                value: Some(line),
            })
            .expect("send");
        if rec.kind == RecordKind::Consent {
            producer.flush(PATIENCE).expect("flush");
        }
    }
    producer.flush(PATIENCE).expect("flush");
}

/// The sum of every sample of metric `name` with a label matching `label`
/// (`""`: all samples).
fn metric_sum(metrics: &str, name: &str, label: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains(label))
        .filter(|l| {
            l.strip_prefix(name)
                .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Evidence of failed transactions in `/metrics`: (aborted transactions,
/// producer restarts).
fn failure_counters(instance: &Instance) -> (f64, f64) {
    let m = instance.http_get("/metrics", None).1;
    (
        metric_sum(&m, "propensity_transactions_total", "result=\"aborted\""),
        metric_sum(&m, "propensity_producer_restarts_total", ""),
    )
}

/// Log lines of the pipeline that name a transactional retry or abort, or
/// a rebuild (a batch or consent catch-up that failed while no transaction
/// was open aborts nothing, but is rebuilt from the committed state).
const RETRY_OR_ABORT_LINES: &[&str] = &[
    "batch failed; aborting and rewinding",
    "consent catch-up failed; rewinding",
    "restore failed, retrying",
    "transactional call failed, retrying",
    "retriable transaction error, retrying",
    "transaction commit failed",
    "abort_transaction failed",
    "init_transactions failed, retrying",
    "cannot create the producer yet, retrying",
];

#[test]
fn survives_a_20_second_broker_outage() {
    let d = Deployment::new("outage", 3, false);
    d.wait_topics_visible(Duration::from_secs(30));
    let probe = CommitProbe::new(&d.settings).expect("probe");
    let traffic = d.generate(200, 24, 0.0);
    let instance = d.start("a");
    let mut outage: Option<Outage> = None;
    let mut before = (0.0, 0.0);
    let mut uncommitted_at_outage = false;
    produce_paced_through_outage(&d, &probe, &traffic, |i, total| {
        // From a third of the traffic on, the first moment some input is
        // uncommitted: the broker stops (in the background, so traffic
        // keeps coming and the producer buffers it) for 20 s.
        if outage.is_some() || i < total / 3 {
            return;
        }
        let behind = probe
            .end_offsets()
            .and_then(|ends| probe.committed_reaches(&ends))
            .ok()
            == Some(false);
        if !behind && i < total / 2 {
            return;
        }
        uncommitted_at_outage = behind;
        before = failure_counters(&instance);
        outage = Some(Outage::begin());
    });
    let traffic_ended = Instant::now();
    outage.take().expect("the outage happened").end();
    wait_committed(&probe, Duration::from_secs(240));
    eprintln!(
        "everything committed {:.1} s after the last record was sent",
        traffic_ended.elapsed().as_secs_f64()
    );
    let after = failure_counters(&instance);
    // The books count committed work only: an aborted batch is redone and
    // counted once, so the counts equal the records sent however many
    // transactions the outage aborted.
    let sent = read_lines(&traffic.events).len() as u64;
    let (m, counted) = instance.wait_metrics(Duration::from_secs(30), |m| {
        m.reconciliation().consumed >= sent
    });
    let books = m.reconciliation();
    eprintln!(
        "metrics: {books}; events redone after aborts: {}",
        m.sum("propensity_events_rewound_total")
    );
    let log = instance.log_text();
    let status = instance.terminate(Duration::from_secs(30));
    assert!(status.success(), "exit {status}; log:\n{log}");
    let named: Vec<&str> = RETRY_OR_ABORT_LINES
        .iter()
        .copied()
        .filter(|l| log.contains(l))
        .collect();
    eprintln!(
        "uncommitted input when the outage began: {uncommitted_at_outage}; \
         aborted transactions {} -> {}, producer restarts {} -> {}; log lines: {named:?}",
        before.0, after.0, before.1, after.1
    );
    assert!(
        after.0 > before.0 || after.1 > before.1 || !named.is_empty(),
        "no transaction was aborted or retried during the outage (metrics {before:?} -> {after:?}, \
         no such log line); log:\n{log}"
    );
    assert!(counted && books.balanced(), "{books}");
    assert_eq!(
        books.consumed, sent,
        "events counted as consumed vs event records sent: {books}"
    );
    let kafka = offers_in(&d.read_topic(&d.settings.offers_topic));
    let replay = d.replay_offers(&traffic);
    assert_same_offers(&kafka, &replay);
}
