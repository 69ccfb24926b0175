//! Consent races on a real broker, with producers that never wait for the
//! pipeline between the records under test:
//!
//! - an acknowledged revocation is followed at once by the visitor's next
//!   events, hundreds of visitors at a time, under background load: none
//!   of those events may be scored or offered on;
//! - a pipeline that lags behind its input (everything produced before it
//!   starts) must not apply a later re-grant retroactively to events that
//!   were produced while the visitor did not grant tracking.
//!
//! Both reconcile the event accounting from `/metrics`.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, Instant};

use propensity_system_tests::{
    consent_record, json_values, now_epoch_ms, page_view, rfc3339, AckProducer, Deployment,
    Instance, Reconciliation,
};
use serde_json::{json, Value};

/// Event ids of every score on the scores topic.
fn scored_event_ids(d: &Deployment) -> HashSet<String> {
    json_values(&d.read_topic(&d.settings.scores_topic), "score")
        .iter()
        .filter_map(|s| s["event_id"].as_str().map(str::to_owned))
        .collect()
}

/// Offers on the offers topic.
fn offers(d: &Deployment) -> Vec<Value> {
    json_values(&d.read_topic(&d.settings.offers_topic), "offer")
}

/// Waits until the instance's metrics have counted `consumed` events, then
/// returns the reconciliation (asserting it balances).
fn reconcile(instance: &Instance, consumed: u64) -> (Reconciliation, BTreeMap<String, f64>) {
    let (m, ok) = instance.wait_metrics(Duration::from_secs(30), |m| {
        m.reconciliation().consumed >= consumed
    });
    let r = m.reconciliation();
    let dropped = m.by_label("propensity_events_dropped_total", "reason");
    println!(
        "metrics: {r}; dropped by reason: {dropped:?}; consent records by result: {:?}; erasures {}, revocations {}",
        m.by_label("propensity_consent_records_total", "result"),
        m.sum("propensity_erasures_total"),
        m.sum("propensity_revocations_total")
    );
    assert!(
        ok,
        "/metrics counted {} consumed events, {consumed} were produced",
        r.consumed
    );
    assert!(r.balanced(), "the event accounting does not reconcile: {r}");
    (r, dropped)
}

#[test]
fn acknowledged_revocation_races_events_under_load() {
    /// At least this many rounds, more while the race budget lasts.
    const MIN_ROUNDS: usize = 3;
    const MAX_ROUNDS: usize = 8;
    const RACE_BUDGET: Duration = Duration::from_secs(45);
    const VISITORS: usize = 400;
    /// Visitors whose revocations are acknowledged together, then followed
    /// at once by their next events; waves follow each other at once.
    const WAVE: usize = 5;
    const PRE: usize = 3;
    const POST: usize = 3;
    let started = Instant::now();
    // Load on the broker (10 MB/s) and two CPU-burning threads: broker and
    // scheduling delays of tens of milliseconds open the race windows.
    let d = Deployment::new_under_load_at("races", 4, true, 10.0, 2);
    let instance = d.start("a");
    let producer = AckProducer::new(&d.settings, &[]);
    let (events, consent) = (&d.settings.events_topic, &d.settings.consent_topic);
    let base = now_epoch_ms() - 3_600_000;
    let mut pre_ids: Vec<String> = Vec::new();
    let mut post_ids: HashSet<String> = HashSet::new();
    let (mut ack_wait, mut precondition_wait, mut waves) = (Duration::ZERO, Duration::ZERO, 0);
    let mut rounds = 0;
    for round in 0..MAX_ROUNDS {
        if round >= MIN_ROUNDS && started.elapsed() > RACE_BUDGET {
            break;
        }
        rounds += 1;
        let visitors: Vec<String> = (0..VISITORS).map(|i| format!("race-{round}-{i}")).collect();
        let t0 = base + round as i64 * 120_000;
        let grants: Vec<usize> = visitors
            .iter()
            .map(|v| producer.send_json(consent, &consent_record(v, t0, true, true), None))
            .collect();
        producer.wait_acked(&grants, Duration::from_secs(30));
        for n in 0..PRE {
            for v in &visitors {
                let id = format!("{v}-pre{n}");
                let t = t0 + 1000 * (n as i64 + 1);
                producer.send_json(events, &page_view(&id, v, t, n), None);
                pre_ids.push(id);
            }
        }
        // Precondition only (the events *before* the revocation must have
        // been scored for the test to mean anything): wait until they are
        // committed. Nothing waits for the pipeline between a revocation
        // and the events after it.
        let t = Instant::now();
        d.wait_all_committed(Duration::from_secs(120))
            .unwrap_or_else(|e| panic!("pre-revocation events of round {round}: {e}"));
        precondition_wait += t.elapsed();

        // The race, wave after wave: the wave's revocations, acknowledged
        // by the broker, then at once its visitors' next events (event time
        // after the revocation); the next wave follows at once. (Several
        // threads racing at once keep the pipeline busy and the consent
        // reader fed, which closes the windows these waves open.)
        for wave in visitors.chunks(WAVE) {
            let t = Instant::now();
            let revocations: Vec<usize> = wave
                .iter()
                .map(|v| {
                    let r = consent_record(v, t0 + 10_000, false, false);
                    producer.send_json(consent, &r, None)
                })
                .collect();
            producer.wait_acked(&revocations, Duration::from_secs(30));
            ack_wait += t.elapsed();
            for n in 0..POST {
                for v in wave {
                    let id = format!("{v}-post{n}");
                    let t = t0 + 11_000 + 1000 * n as i64;
                    producer.send_json(events, &page_view(&id, v, t, PRE + n), None);
                    post_ids.insert(id);
                }
            }
            waves += 1;
        }
    }
    producer.flush(Duration::from_secs(60));
    let took = d
        .wait_all_committed(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "everything committed {:.1} s after the last record",
        took.as_secs_f64()
    );

    let scored = scored_event_ids(&d);
    let pre_scored = pre_ids.iter().filter(|id| scored.contains(*id)).count();
    let mut post_scored: Vec<&String> = post_ids.iter().filter(|id| scored.contains(*id)).collect();
    post_scored.sort();
    let offers = offers(&d);
    let post_offers: Vec<&Value> = offers
        .iter()
        .filter(|o| post_ids.contains(o["trigger_event_id"].as_str().unwrap_or("")))
        .collect();
    println!(
        "races: {} acknowledged revocations, each followed at once by {POST} events ({} post-revocation events), in {waves} waves of {WAVE} in {rounds} rounds under background load; \
         waited {:.1} s for revocation acks, {:.1} s for the pre-revocation precondition",
        rounds * VISITORS,
        post_ids.len(),
        ack_wait.as_secs_f64(),
        precondition_wait.as_secs_f64()
    );
    println!(
        "pre-revocation events scored: {pre_scored}/{}; post-revocation events scored: {} (first: {:?}); offers: {} total, {} triggered after a revocation; test took {:.1} s",
        pre_ids.len(),
        post_scored.len(),
        post_scored.iter().take(5).collect::<Vec<_>>(),
        offers.len(),
        post_offers.len(),
        started.elapsed().as_secs_f64()
    );
    let total_events = (rounds * VISITORS * (PRE + POST)) as u64;
    let (r, dropped) = reconcile(&instance, total_events);

    assert_eq!(
        pre_scored,
        pre_ids.len(),
        "events before the revocation (committed before it was written) must all be scored"
    );
    assert!(
        post_scored.is_empty(),
        "{} of {} events produced after their visitor's revocation was acknowledged were scored, e.g. {:?}",
        post_scored.len(),
        post_ids.len(),
        post_scored.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        post_offers.is_empty(),
        "{} offers were triggered by events after an acknowledged revocation, e.g. {}",
        post_offers.len(),
        post_offers[0]
    );
    assert_eq!(r.consumed, total_events, "consumed: {r}");
    assert_eq!(
        r.processed,
        pre_ids.len() as u64,
        "processed = the pre-revocation events only: {r}"
    );
    let revoked = dropped.get("revoked").copied().unwrap_or(0.0) as usize;
    assert!(
        revoked >= post_ids.len(),
        "dropped as revoked: {revoked}, post-revocation events: {}",
        post_ids.len()
    );
    assert!(instance.terminate(Duration::from_secs(30)).success());
}

/// How a visitor stops granting tracking between `e*` and `w*`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    /// Consent-topic tombstone (dated by its Kafka timestamp, t4).
    Tombstone,
    /// `{"erase": true}` at t4.
    Erase,
    /// Granted at t0, tracking withdrawn at t4.
    Revoke,
    /// Denied from the first record (t0), denied again at t4.
    Deny,
}

const KINDS: [Kind; 4] = [Kind::Tombstone, Kind::Erase, Kind::Revoke, Kind::Deny];

#[test]
fn consent_is_never_retroactive_when_the_pipeline_lags() {
    const VISITORS: usize = 400;
    let started = Instant::now();
    let d = Deployment::new("retro", 4, true);
    let producer = AckProducer::new(&d.settings, &[]);
    let (events, consent) = (&d.settings.events_topic, &d.settings.consent_topic);
    let base = now_epoch_ms() - 2 * 3_600_000;
    let t = |k: i64| base + k * 1000;
    let visitors: Vec<(String, Kind)> = (0..VISITORS)
        .map(|i| (format!("retro-{i}"), KINDS[i % KINDS.len()]))
        .collect();
    let mut expected_scored: Vec<String> = Vec::new();
    let mut e_ids: Vec<(String, Kind)> = Vec::new();
    let mut w_ids: Vec<(String, Kind)> = Vec::new();
    // Stage by stage, all visitors interleaved; per visitor the topics
    // hold: t0 grant (denial for Deny), e1..e3 at t1..t3, the t4 record,
    // w1..w3 at t5..t7, the re-grant at t8, a1..a2 at t9..t10.
    for (v, kind) in &visitors {
        let first = consent_record(v, t(0), *kind != Kind::Deny, *kind != Kind::Deny);
        producer.send_json(consent, &first, None);
    }
    for n in 1..=3 {
        for (v, kind) in &visitors {
            let id = format!("{v}-e{n}");
            producer.send_json(events, &page_view(&id, v, t(n), n as usize), None);
            e_ids.push((id, *kind));
        }
    }
    for (v, kind) in &visitors {
        match kind {
            Kind::Tombstone => {
                producer.send(consent, Some(v.as_bytes()), None, Some(t(4)));
            }
            Kind::Erase => {
                let r = json!({"visitor_id": v, "timestamp": rfc3339(t(4)), "erase": true});
                producer.send_json(consent, &r, None);
            }
            Kind::Revoke => {
                producer.send_json(consent, &consent_record(v, t(4), false, true), None);
            }
            Kind::Deny => {
                producer.send_json(consent, &consent_record(v, t(4), false, false), None);
            }
        }
    }
    for n in 5..=7 {
        for (v, kind) in &visitors {
            let id = format!("{v}-w{}", n - 4);
            producer.send_json(events, &page_view(&id, v, t(n), n as usize), None);
            w_ids.push((id, *kind));
        }
    }
    for (v, _) in &visitors {
        producer.send_json(consent, &consent_record(v, t(8), true, true), None);
    }
    for n in 9..=10 {
        for (v, _) in &visitors {
            let id = format!("{v}-a{}", n - 8);
            producer.send_json(events, &page_view(&id, v, t(n), n as usize), None);
            expected_scored.push(id);
        }
    }
    producer.flush(Duration::from_secs(60));

    // The pipeline starts only now: it lags behind all of it.
    let instance = d.start("a");
    let took = d
        .wait_all_committed(Duration::from_secs(120))
        .unwrap_or_else(|e| panic!("{e}"));
    println!(
        "lagging pipeline committed everything {:.1} s after its start",
        took.as_secs_f64()
    );

    let scored = scored_event_ids(&d);
    let by_kind = |ids: &[(String, Kind)]| {
        let mut m: BTreeMap<String, (usize, usize)> = BTreeMap::new();
        for (id, kind) in ids {
            let e = m.entry(format!("{kind:?}")).or_default();
            e.1 += 1;
            if scored.contains(id) {
                e.0 += 1;
            }
        }
        m
    };
    let w_scored: Vec<&String> = w_ids
        .iter()
        .filter(|(id, _)| scored.contains(id))
        .map(|(id, _)| id)
        .collect();
    let e_scored: Vec<&String> = e_ids
        .iter()
        .filter(|(id, _)| scored.contains(id))
        .map(|(id, _)| id)
        .collect();
    let a_missing: Vec<&String> = expected_scored
        .iter()
        .filter(|id| !scored.contains(*id))
        .collect();
    let not_expected: HashSet<&String> = e_ids.iter().chain(&w_ids).map(|(id, _)| id).collect();
    let offers = offers(&d);
    let bad_offers: Vec<&Value> = offers
        .iter()
        .filter(|o| {
            o["trigger_event_id"]
                .as_str()
                .is_some_and(|id| not_expected.contains(&id.to_owned()))
        })
        .collect();
    println!(
        "visitors: {VISITORS} ({} per kind: tombstone, erase, revoke, deny), all input produced before the start; \
         events: {} e*, {} w*, {} a*",
        VISITORS / KINDS.len(),
        e_ids.len(),
        w_ids.len(),
        expected_scored.len()
    );
    println!(
        "scored (scored/total) by kind: w* {:?}; e* {:?}; a* scored {}/{}; offers {} total, {} triggered by e*/w*; test took {:.1} s",
        by_kind(&w_ids),
        by_kind(&e_ids),
        expected_scored.len() - a_missing.len(),
        expected_scored.len(),
        offers.len(),
        bad_offers.len(),
        started.elapsed().as_secs_f64()
    );
    let total_events = (e_ids.len() + w_ids.len() + expected_scored.len()) as u64;
    let (r, dropped) = reconcile(&instance, total_events);

    assert!(
        w_scored.is_empty(),
        "{} of {} events produced while the visitor did not grant tracking were scored after a later re-grant, e.g. {:?}",
        w_scored.len(),
        w_ids.len(),
        w_scored.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        e_scored.is_empty(),
        "{} of {} events from before a revocation/denial/erasure were scored when processed after the re-grant (outside the current granted interval), e.g. {:?}",
        e_scored.len(),
        e_ids.len(),
        e_scored.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        a_missing.is_empty(),
        "{} of {} events after the re-grant were not scored, e.g. {:?}",
        a_missing.len(),
        expected_scored.len(),
        a_missing.iter().take(5).collect::<Vec<_>>()
    );
    assert!(
        bad_offers.is_empty(),
        "{} offers triggered by events outside a granted interval, e.g. {}",
        bad_offers.len(),
        bad_offers[0]
    );
    assert_eq!(r.consumed, total_events, "{r}");
    assert_eq!(
        r.processed,
        expected_scored.len() as u64,
        "processed = the a* events only: {r}"
    );
    let dropped_total: f64 = dropped.values().sum();
    assert!(
        dropped_total as usize >= w_ids.len(),
        "propensity_events_dropped_total ({dropped_total}, by reason {dropped:?}) does not account for the {} w* events",
        w_ids.len()
    );
    assert_eq!(
        r.dropped,
        (e_ids.len() + w_ids.len()) as u64,
        "dropped = e* and w* events: {r}; by reason {dropped:?}"
    );
    assert!(instance.terminate(Duration::from_secs(30)).success());
}
