//! Sharding invariance: the same input order gives the same outputs
//! whatever visitors share an engine.
//!
//! Kafka partitions are the unit of ordering and ownership: `propensity run`
//! holds one engine per partition, `propensity replay` (and training) one
//! engine for all partitions. Every engine-level clock and bound — the
//! watermark, the pre-consent TTL sweep, the idle sweep, the total
//! pre-consent buffer cap and session serials — is per partition, so a
//! random stream (several visitors; events with bounded disorder and late
//! ones; grants, denials, revocations, erasures by record and by tombstone;
//! gaps beyond the session timeout and the idle expiry; pre-consent
//! buffering with TTL expiry and caps small enough to hit; malformed
//! records) gives, per partition, exactly the same outputs in the same
//! order (offers, scores, dead letters, state-change notices, training
//! examples and achieved outcomes with their session serials) and the same
//! summed counters through
//!
//! - ONE engine holding all P partitions, and
//! - N ≥ 2 engines, each holding a random group of the partitions (and one
//!   engine per partition, the Kafka runtime's layout), every record routed
//!   to the engine of its visitor's partition in stream order.
//!
//! Plus pinned scenarios for the three ways sharing used to leak, and a
//! coverage test showing the generated streams do reach TTL expiry, buffer
//! overflow, late drops, idle expiry, offers, revocations and erasures.
//!
//! Why one file of this size: the stream generator, the three ways of
//! grouping partitions and the pinned scenarios test one property; the
//! generator is most of the length.

mod common;

use std::collections::BTreeMap;
use std::sync::Arc;

use common::{
    bytes, config_from, consent, low_threshold_settings, page_view, proptest_cases, rfc3339,
    test_models, BASE_MS,
};
use propensity_engine::partitioning::partition_of;
use propensity_engine::wire::{DeadLetter, Decision, Offer, OutcomeScore};
use propensity_engine::{
    DropReason, Engine, EngineConfig, EngineCounters, EngineSettings, EngineSink, Origin,
};
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::json;

const VISITORS: usize = 10;
const URLS: [&str; 8] = [
    "/",
    "/products/widget",
    "/cart",
    "/checkout",
    "/webinars/ai",
    "/loans/personal",
    "/apply",
    "/help",
];
const PURPOSES: [&str; 4] = ["tracking", "support", "sales", "marketing"];

fn visitor_id(v: usize) -> String {
    format!("visitor-{v:02}")
}

/// The low-threshold test settings (offers fire often, caps limit them)
/// with short clocks, so a stream of a few hundred seconds crosses every
/// bound: 10 s buffer TTL, at most 3 waiting events per visitor and 4 per
/// partition, a 60 s session timeout, 120 s idle expiry and 30 s allowed
/// lateness.
fn config(partitions: i32) -> Arc<EngineConfig> {
    config_with(partitions, |_| {})
}

/// [`config`] with a change to the settings.
fn config_with(partitions: i32, change: impl Fn(&mut EngineSettings)) -> Arc<EngineConfig> {
    let mut s = low_threshold_settings();
    s.consent.buffer_ttl_secs = 10.0;
    s.consent.buffer_max_per_visitor = 3;
    s.consent.buffer_max_total = 4;
    s.sessions.inactivity_timeout_secs = 60.0;
    s.sessions.visitor_idle_expiry_secs = 120.0;
    s.sessions.allowed_lateness_secs = 30.0;
    // Control groups on half the maps: held-out decisions consume caps and
    // their assignment must not depend on the engine or a restart either.
    for (i, m) in s.action_maps.iter_mut().enumerate() {
        m.holdout_fraction = if i % 2 == 0 { 0.4 } else { 0.0 };
    }
    s.offers.holdout_period = propensity_engine::control_group::HoldoutPeriod::Day;
    // Two outcomes learn online and serve: their scores, and so the
    // offers, depend on every session each partition resolved before, so
    // the properties below cover the learners' state too (per partition,
    // whatever the grouping; restored from the changelog on a restart).
    s.adaptive.outcomes = vec!["purchase".into(), "application_complete".into()];
    s.adaptive.role = propensity_engine::ModelRole::Champion;
    s.adaptive.prior_sessions = 2.0;
    s.adaptive.alpha = 0.5;
    change(&mut s);
    let c = config_from(&s);
    Arc::new(
        c.as_ref()
            .clone()
            .with_partitions(partitions)
            .expect("a valid partition count"),
    )
}

// ------------------------------------------------------------- generation

#[derive(Debug, Clone)]
enum Op {
    /// A page view (or a search when `url` is `None`) `advance_s` after the
    /// previous record, dated up to `jitter_s` earlier (bounded disorder),
    /// or 45 s earlier when `late` (beyond the allowed lateness).
    Event {
        visitor: usize,
        advance_s: i64,
        jitter_s: i64,
        url: Option<usize>,
        session: u8,
        late: bool,
        /// Repeat the visitor's previous event id.
        duplicate: bool,
    },
    /// A consent state record dated `offset_s` from the clock.
    Consent {
        visitor: usize,
        offset_s: i64,
        purposes: [bool; 4],
    },
    /// An erasure: `erase: true`, or a Kafka tombstone.
    Erase { visitor: usize, tombstone: bool },
    /// A malformed event of the visitor (keyed, so it has a partition).
    BadEvent { visitor: usize },
    /// A malformed consent record of the visitor.
    BadConsent { visitor: usize },
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let visitor = 0..VISITORS;
    // Mostly small steps; now and then a gap beyond the session timeout
    // (60 s) or the idle expiry (120 s).
    let advance = prop_oneof![12 => 0i64..=6, 2 => 20i64..=70, 1 => 100i64..=200];
    prop_oneof![
        14 => (
            visitor.clone(),
            advance,
            0i64..=5,
            proptest::option::weighted(0.85, 0..URLS.len()),
            0u8..10,
            proptest::bool::weighted(0.05),
            proptest::bool::weighted(0.05),
        )
            .prop_map(|(visitor, advance_s, jitter_s, url, session, late, duplicate)| {
                Op::Event { visitor, advance_s, jitter_s, url, session, late, duplicate }
            }),
        4 => (
            visitor.clone(),
            -3i64..=3,
            (proptest::bool::weighted(0.7), any::<bool>(), any::<bool>(), any::<bool>()),
        )
            .prop_map(|(visitor, offset_s, (t, su, sa, m))| Op::Consent {
                visitor,
                offset_s,
                purposes: [t, su, sa, m],
            }),
        1 => (visitor.clone(), any::<bool>())
            .prop_map(|(visitor, tombstone)| Op::Erase { visitor, tombstone }),
        1 => visitor.clone().prop_map(|visitor| Op::BadEvent { visitor }),
        1 => visitor.prop_map(|visitor| Op::BadConsent { visitor }),
    ]
}

/// A case: the partition count, the group (engine) of each partition, each
/// visitor's session style and the operations.
#[derive(Debug, Clone)]
struct Case {
    partitions: i32,
    groups: Vec<usize>,
    styles: Vec<u8>,
    ops: Vec<Op>,
}

fn case_strategy() -> impl Strategy<Value = Case> {
    (4i32..=6)
        .prop_flat_map(|p| {
            (
                Just(p),
                (2usize..=p as usize)
                    .prop_flat_map(move |n| prop::collection::vec(0..n, p as usize)),
                prop::collection::vec(0u8..3, VISITORS),
                prop::collection::vec(op_strategy(), 1..160),
            )
        })
        .prop_map(|(partitions, mut groups, styles, ops)| {
            // At least two engines: partitions 0 and 1 are apart.
            groups[0] = 0;
            groups[1] = 1;
            Case {
                partitions,
                groups,
                styles,
                ops,
            }
        })
}

/// Style 0 never sends a session id (sessions are derived from gaps),
/// style 1 a sticky id that changes one time in ten (so a session can
/// outlive the idle expiry only in engines whose clock did not move),
/// style 2 mixes both.
fn session_id(visitor: &str, style: u8, choice: u8) -> Option<String> {
    match style {
        0 => None,
        1 => Some(format!("s-{visitor}-{}", u8::from(choice == 9))),
        _ if choice < 4 => None,
        _ => Some(format!("s-{visitor}-{}", choice % 3)),
    }
}

/// A concrete record with the visitor whose partition it belongs to.
#[derive(Debug, Clone)]
enum Record {
    Event {
        visitor: usize,
        key: Option<Vec<u8>>,
        bytes: Vec<u8>,
    },
    Consent {
        visitor: usize,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        time_ms: i64,
    },
}

impl Record {
    fn visitor(&self) -> usize {
        match self {
            Record::Event { visitor, .. } | Record::Consent { visitor, .. } => *visitor,
        }
    }
}

fn render(case: &Case) -> Vec<Record> {
    let mut clock = BASE_MS;
    let mut last_id: Vec<Option<String>> = vec![None; VISITORS];
    let mut out = Vec::with_capacity(case.ops.len());
    for (n, op) in case.ops.iter().enumerate() {
        match op {
            Op::Event {
                visitor,
                advance_s,
                jitter_s,
                url,
                session,
                late,
                duplicate,
            } => {
                clock += advance_s * 1000;
                let t = if *late {
                    clock - 45_000
                } else {
                    clock - jitter_s * 1000
                };
                let v = visitor_id(*visitor);
                let id = match (&last_id[*visitor], duplicate) {
                    (Some(prev), true) => prev.clone(),
                    _ => format!("e{n}"),
                };
                last_id[*visitor] = Some(id.clone());
                let mut value = match url {
                    Some(u) => {
                        page_view(&id, &v, t, &format!("https://shop.example.com{}", URLS[*u]))
                    }
                    None => json!({
                        "event_id": id,
                        "visitor_id": v,
                        "type": "search",
                        "timestamp": rfc3339(t),
                        "search": {"query": "blue widget", "results": 3},
                    }),
                };
                if let Some(s) = session_id(&v, case.styles[*visitor], *session) {
                    value["session_id"] = json!(s);
                }
                out.push(Record::Event {
                    visitor: *visitor,
                    key: None,
                    bytes: bytes(&value),
                });
            }
            Op::Consent {
                visitor,
                offset_s,
                purposes,
            } => {
                let v = visitor_id(*visitor);
                let t = clock + offset_s * 1000;
                let granted: Vec<&str> = PURPOSES
                    .iter()
                    .zip(purposes)
                    .filter(|(_, g)| **g)
                    .map(|(p, _)| *p)
                    .collect();
                out.push(Record::Consent {
                    visitor: *visitor,
                    key: None,
                    value: Some(bytes(&consent(&v, t, &granted))),
                    time_ms: t,
                });
            }
            Op::Erase { visitor, tombstone } => {
                let v = visitor_id(*visitor);
                let value = (!tombstone).then(|| {
                    bytes(&json!({"visitor_id": v, "timestamp": rfc3339(clock), "erase": true}))
                });
                out.push(Record::Consent {
                    visitor: *visitor,
                    key: Some(v.into_bytes()),
                    value,
                    time_ms: clock,
                });
            }
            Op::BadEvent { visitor } => out.push(Record::Event {
                visitor: *visitor,
                key: Some(visitor_id(*visitor).into_bytes()),
                bytes: b"not json {".to_vec(),
            }),
            Op::BadConsent { visitor } => out.push(Record::Consent {
                visitor: *visitor,
                key: Some(visitor_id(*visitor).into_bytes()),
                value: Some(bytes(
                    &json!({"visitor_id": visitor_id(*visitor), "timestamp": "soon"}),
                )),
                time_ms: clock,
            }),
        }
    }
    out
}

// ------------------------------------------------------------------ running

/// Everything an engine emits, exactly (probabilities and features as bits).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Out {
    Offer(String),
    Decision(String),
    Score(String),
    DeadLetter(String),
    StateChanged(String),
    Example(u64, usize, Vec<u32>),
    Achieved(u64, usize),
}

/// Records outputs by partition: `current` is the partition of the record
/// being processed (outputs of the end-of-input `finish` carry a visitor
/// id, placed by its own partition).
struct ShardSink {
    partitions: i32,
    current: Option<i32>,
    by_partition: BTreeMap<i32, Vec<Out>>,
}

impl ShardSink {
    fn new(partitions: i32) -> Self {
        Self {
            partitions,
            current: None,
            by_partition: BTreeMap::new(),
        }
    }

    fn push(&mut self, visitor: Option<&str>, out: Out) {
        let p = match (self.current, visitor) {
            (Some(p), _) => p,
            (None, Some(v)) => partition_of(v.as_bytes(), self.partitions),
            (None, None) => -1,
        };
        self.by_partition.entry(p).or_default().push(out);
    }
}

impl EngineSink for ShardSink {
    fn offer(&mut self, offer: Offer) {
        let line = serde_json::to_string(&offer).expect("an offer serializes");
        self.push(Some(&offer.visitor_id), Out::Offer(line));
    }
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        self.push(None, Out::DeadLetter(dead_letter.to_json_line()));
    }
    fn wants_scores(&self) -> bool {
        true
    }
    fn wants_decisions(&self) -> bool {
        true
    }
    fn decision(&mut self, decision: &Decision<'_>) {
        let line = serde_json::to_string(decision).expect("a decision serializes");
        self.push(Some(decision.visitor_id), Out::Decision(line));
    }
    fn score(&mut self, score: &OutcomeScore<'_>) {
        let line = serde_json::to_string(score).expect("a score serializes");
        self.push(Some(score.visitor_id), Out::Score(line));
    }
    fn state_changed(&mut self, visitor_id: &str) {
        self.push(Some(visitor_id), Out::StateChanged(visitor_id.to_owned()));
    }
    fn wants_examples(&self) -> bool {
        true
    }
    fn example(&mut self, session_serial: u64, outcome: usize, features: &[f32]) {
        let bits = features.iter().map(|f| f.to_bits()).collect();
        self.push(None, Out::Example(session_serial, outcome, bits));
    }
    fn achieved(&mut self, session_serial: u64, outcome: usize) {
        self.push(None, Out::Achieved(session_serial, outcome));
    }
}

/// What a layout produced: per partition, the outputs during the stream in
/// order and the outputs of `finish` (whose order across visitors is the
/// visitor map's, so they are compared sorted); and the summed counters.
#[derive(Debug, PartialEq)]
struct Run {
    stream: BTreeMap<i32, Vec<Out>>,
    finish: BTreeMap<i32, Vec<Out>>,
    counters: EngineCounters,
}

/// Runs `records` through `engines` engines, the record of a visitor in
/// partition p going to engine `group_of[p]`, in stream order.
fn run(config: &Arc<EngineConfig>, records: &[Record], group_of: &[usize], engines: usize) -> Run {
    let p_count = config.partitions as i32;
    let models = test_models(config);
    let mut shards: Vec<(Engine, ShardSink)> = (0..engines)
        .map(|_| {
            (
                Engine::new(config.clone(), models.clone()),
                ShardSink::new(p_count),
            )
        })
        .collect();
    let mut counters = Engine::new(config.clone(), models.clone())
        .counters()
        .clone();
    for (i, rec) in records.iter().enumerate() {
        let p = partition_of(visitor_id(rec.visitor()).as_bytes(), p_count);
        let (engine, sink) = &mut shards[group_of[p as usize]];
        feed(engine, sink, p, i, rec);
    }
    let mut stream = BTreeMap::new();
    let mut finish: BTreeMap<i32, Vec<Out>> = BTreeMap::new();
    for (engine, sink) in &mut shards {
        for (p, outs) in std::mem::take(&mut sink.by_partition) {
            assert!(
                stream.insert(p, outs).is_none(),
                "partition {p} in two engines"
            );
        }
        sink.current = None;
        engine.finish(sink);
        for (p, mut outs) in std::mem::take(&mut sink.by_partition) {
            outs.sort();
            finish.entry(p).or_default().extend(outs);
        }
        let c = engine.counters();
        assert!(c.reconciles(), "{c:?}");
        assert_eq!(
            c.visitors,
            engine.visitor_ids().count() as u64,
            "visitors gauge"
        );
        counters.merge(c);
    }
    Run {
        stream,
        finish,
        counters,
    }
}

/// Feeds record number `i` (of partition `p`) to an engine.
fn feed(engine: &mut Engine, sink: &mut ShardSink, p: i32, i: usize, rec: &Record) {
    sink.current = Some(p);
    let origin = Origin::File {
        file: "stream".into(),
        line: i as u64 + 1,
    };
    match rec {
        Record::Event { key, bytes, .. } => {
            engine.process_event(key.as_deref(), bytes, &origin, None, sink)
        }
        Record::Consent {
            key,
            value,
            time_ms,
            ..
        } => engine.process_consent(
            key.as_deref(),
            value.as_deref(),
            *time_ms,
            &origin,
            None,
            sink,
        ),
    }
}

/// What leaves the pipeline: offers, decisions, scores and dead letters. (Training
/// examples carry session serials, which a restore assigns afresh, and
/// state-change notices only drive the changelog.)
fn published(outs: &[Out]) -> Vec<&Out> {
    outs.iter()
        .filter(|o| {
            matches!(
                o,
                Out::Offer(_) | Out::Decision(_) | Out::Score(_) | Out::DeadLetter(_)
            )
        })
        .collect()
}

/// The restart property for one case and one commit: one engine per
/// partition (the Kafka runtime's layout) runs the whole stream; at record
/// `cut` the changelog (every changed visitor's snapshot) and each
/// partition's clock are taken, as a commit writes them; fresh engines
/// restore them and run the rest of the stream. What they publish must be
/// exactly what the uninterrupted engines published after the cut: the
/// streams cross the TTL, the idle expiry and the lateness bound, so
/// events waiting for consent and idle sessions at the commit expire at
/// the same moments only if the restart keeps the clocks.
fn check_restart(case: &Case, cut: usize) -> Result<(), TestCaseError> {
    let config = config(case.partitions);
    let records = render(case);
    let p_count = case.partitions;
    let models = test_models(&config);
    let engines = || -> Vec<(Engine, ShardSink)> {
        (0..p_count)
            .map(|_| {
                (
                    Engine::new(config.clone(), models.clone()),
                    ShardSink::new(p_count),
                )
            })
            .collect()
    };
    let mut running = engines();
    let mut at_cut = None;
    for (i, rec) in records.iter().enumerate() {
        if i == cut {
            let commit: Vec<_> = running
                .iter()
                .enumerate()
                .map(|(p, (engine, sink))| {
                    let outs = sink.by_partition.get(&(p as i32));
                    let changed: std::collections::BTreeSet<&String> = outs
                        .into_iter()
                        .flatten()
                        .filter_map(|o| match o {
                            Out::StateChanged(v) => Some(v),
                            _ => None,
                        })
                        .collect();
                    let changelog: Vec<(String, Option<Vec<u8>>)> = changed
                        .into_iter()
                        .map(|v| (v.clone(), engine.snapshot(v)))
                        .collect();
                    let clock = engine.partition_clock(p as u32);
                    let learners = engine.learner_states(p as u32);
                    (changelog, clock, learners, outs.map_or(0, Vec::len))
                })
                .collect();
            at_cut = Some(commit);
        }
        let p = partition_of(visitor_id(rec.visitor()).as_bytes(), p_count);
        let (engine, sink) = &mut running[p as usize];
        feed(engine, sink, p, i, rec);
    }
    let Some(commit) = at_cut else {
        return Ok(());
    };
    let mut restarted = engines();
    for (p, (changelog, clock, learners, _)) in commit.iter().enumerate() {
        let engine = &mut restarted[p].0;
        engine
            .restore_learner_states(p as u32, learners)
            .map_err(|e| TestCaseError::fail(format!("restore learners: {e}")))?;
        for (v, snapshot) in changelog {
            engine
                .restore(v, snapshot.as_deref())
                .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
        }
        if let Some(clock) = clock {
            engine.restore_partition_clock(p as u32, *clock);
        }
    }
    for (i, rec) in records.iter().enumerate().skip(cut) {
        let p = partition_of(visitor_id(rec.visitor()).as_bytes(), p_count);
        let (engine, sink) = &mut restarted[p as usize];
        feed(engine, sink, p, i, rec);
    }
    for (p, (_, _, _, outputs_at_cut)) in commit.iter().enumerate() {
        let key = p as i32;
        let before = running[p]
            .1
            .by_partition
            .get(&key)
            .map_or(&[][..], |o| &o[*outputs_at_cut..]);
        let after = restarted[p]
            .1
            .by_partition
            .get(&key)
            .map_or(&[][..], Vec::as_slice);
        prop_assert_eq!(
            published(before),
            published(after),
            "partition {}: published outputs after a restart at record {} differ",
            p,
            cut
        );
    }
    Ok(())
}

#[test]
fn a_restart_from_the_changelog_publishes_what_the_uninterrupted_run_did() {
    // Many cases: a restart without the partition clocks differs only when
    // a cut falls between a dropped event that moved the clock and an idle
    // sweep it decides (about one case in 2,000; 4,000 cases take ~1 s).
    let mut runner = TestRunner::new(ProptestConfig {
        cases: proptest_cases(4000),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&(case_strategy(), 0.0f64..1.0), |(case, at)| {
            let cut = (case.ops.len() as f64 * at) as usize;
            check_restart(&case, cut)
        })
        .unwrap_or_else(|e| panic!("{e}"));
}

/// The sharding property for one case: one engine for everything equals
/// the case's random grouping and one engine per partition.
fn check(case: &Case) -> Result<(), TestCaseError> {
    let config = config(case.partitions);
    let records = render(case);
    let one = run(&config, &records, &vec![0; case.partitions as usize], 1);
    let engines = case.groups.iter().max().map_or(1, |m| m + 1);
    let grouped = run(&config, &records, &case.groups, engines);
    let per_partition: Vec<usize> = (0..case.partitions as usize).collect();
    let each = run(&config, &records, &per_partition, per_partition.len());
    // Serials label training sessions across all engines of a run: one
    // never serves two partitions.
    let mut partition_of_serial = BTreeMap::new();
    for (p, outs) in &each.stream {
        for o in outs {
            if let Out::Example(serial, _, _) | Out::Achieved(serial, _) = o {
                let first = *partition_of_serial.entry(*serial).or_insert(*p);
                prop_assert_eq!(first, *p, "serial {} in two partitions", serial);
            }
        }
    }
    for (name, other) in [("grouped", &grouped), ("one per partition", &each)] {
        for (p, outs) in &one.stream {
            let theirs = other.stream.get(p).map(Vec::as_slice).unwrap_or(&[]);
            prop_assert_eq!(
                outs.as_slice(),
                theirs,
                "partition {} outputs differ: one engine vs {} ({:?})",
                p,
                name,
                case.groups
            );
        }
        prop_assert_eq!(one.stream.len(), other.stream.len(), "{}", name);
        prop_assert_eq!(
            &one.finish,
            &other.finish,
            "finish outputs: one engine vs {}",
            name
        );
        prop_assert_eq!(
            &one.counters,
            &other.counters,
            "counters: one engine vs {}",
            name
        );
    }
    Ok(())
}

#[test]
fn outputs_do_not_depend_on_which_partitions_share_an_engine() {
    let mut runner = TestRunner::new(ProptestConfig {
        cases: proptest_cases(160),
        failure_persistence: None,
        ..ProptestConfig::default()
    });
    runner
        .run(&case_strategy(), |case| check(&case))
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------- pinned scenarios

/// Two visitor ids in different partitions of `partitions`.
fn ids_in_two_partitions(partitions: i32) -> (String, String) {
    let a = "visitor-a".to_owned();
    let pa = partition_of(a.as_bytes(), partitions);
    let b = (0..)
        .map(|i| format!("visitor-b{i}"))
        .find(|b| partition_of(b.as_bytes(), partitions) != pa)
        .expect("some id lands elsewhere");
    (a, b)
}

fn grant(engine: &mut Engine, visitor: &str, t: i64, sink: &mut ShardSink) {
    let value = bytes(&consent(
        visitor,
        t,
        &["tracking", "sales", "support", "marketing"],
    ));
    engine.process_consent(None, Some(&value), t, &Origin::Unknown, None, sink);
}

fn view(
    engine: &mut Engine,
    id: &str,
    visitor: &str,
    t: i64,
    session: Option<&str>,
    sink: &mut ShardSink,
) {
    let mut v = page_view(id, visitor, t, "https://shop.example.com/products/widget");
    if let Some(s) = session {
        v["session_id"] = json!(s);
    }
    engine.process_event(None, &bytes(&v), &Origin::Unknown, None, sink);
}

/// Another partition's traffic does not expire a visitor's session: with
/// one engine for both partitions, visitor a (explicit session) idle for
/// 100 s while b's events move b's clock 200 s keeps its session, as it
/// would in an engine of its own.
#[test]
fn another_partitions_clock_does_not_expire_a_session() {
    let config = config(4);
    let (a, b) = ids_in_two_partitions(4);
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = ShardSink::new(4);
    grant(&mut engine, &a, BASE_MS, &mut sink);
    grant(&mut engine, &b, BASE_MS, &mut sink);
    view(&mut engine, "a1", &a, BASE_MS, Some("s"), &mut sink);
    for k in 0..=20 {
        view(
            &mut engine,
            &format!("b{k}"),
            &b,
            BASE_MS + k * 10_000,
            None,
            &mut sink,
        );
    }
    view(
        &mut engine,
        "a2",
        &a,
        BASE_MS + 100_000,
        Some("s"),
        &mut sink,
    );
    // Two sessions in all (a's one, b's one: its gaps are 10 s).
    let serials: std::collections::BTreeSet<u64> = sink
        .by_partition
        .values()
        .flatten()
        .filter_map(|o| match o {
            Out::Example(s, _, _) => Some(*s),
            _ => None,
        })
        .collect();
    assert_eq!(serials.len(), 2, "{serials:?}");
    assert_eq!(engine.counters().active_sessions, 2);
}

/// Another partition's clock does not expire a visitor's waiting events:
/// a's event waits 5 s (TTL 10 s) while b's clock runs 60 s ahead; a's
/// grant then releases it.
#[test]
fn another_partitions_clock_does_not_expire_waiting_events() {
    let config = config(4);
    let (a, b) = ids_in_two_partitions(4);
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = ShardSink::new(4);
    grant(&mut engine, &b, BASE_MS, &mut sink);
    view(&mut engine, "a1", &a, BASE_MS, None, &mut sink);
    view(&mut engine, "b1", &b, BASE_MS + 60_000, None, &mut sink);
    grant(&mut engine, &a, BASE_MS + 5_000, &mut sink);
    let c = engine.counters();
    assert_eq!(c.events_dropped[DropReason::PreConsentTtl as usize], 0);
    assert_eq!(c.events_processed, 2);
}

/// The total buffer cap is per partition: b's waiting events do not fill
/// a's partition's buffer.
#[test]
fn the_total_buffer_cap_is_per_partition() {
    let config = config(4);
    let (a, b) = ids_in_two_partitions(4);
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = ShardSink::new(4);
    // b: 3 waiting (its per-visitor cap); b2, in b's partition, 1 more: the
    // partition holds 4, its cap.
    let b2 = (0..)
        .map(|i| format!("visitor-c{i}"))
        .find(|c| partition_of(c.as_bytes(), 4) == partition_of(b.as_bytes(), 4))
        .expect("some id shares b's partition");
    for k in 0..3 {
        view(&mut engine, &format!("b{k}"), &b, BASE_MS, None, &mut sink);
    }
    view(&mut engine, "c0", &b2, BASE_MS, None, &mut sink);
    view(&mut engine, "c1", &b2, BASE_MS, None, &mut sink);
    assert_eq!(
        engine.counters().events_dropped[DropReason::PreConsentOverflow as usize],
        1,
        "b's partition is full"
    );
    view(&mut engine, "a1", &a, BASE_MS, None, &mut sink);
    let c = engine.counters();
    assert_eq!(c.events_dropped[DropReason::PreConsentOverflow as usize], 1);
    assert_eq!(c.buffered_events, 5);
}

// ---------------------------------------------------------------- coverage

/// The generated streams reach what the property is about, so it does not
/// hold vacuously: TTL expiry, overflow, late and duplicate drops,
/// revocations, erasures and offers happen, and the idle expiry and the
/// total buffer cap change outputs (a run without them differs) in some
/// cases.
#[test]
fn generated_streams_reach_every_bound() {
    let mut runner = TestRunner::deterministic();
    let strategy = case_strategy();
    let mut dropped = [0u64; 7];
    let (mut revocations, mut erasures, mut offers) = (0u64, 0u64, 0u64);
    let (mut held_out, mut lower_priority) = (0u64, 0u64);
    let (mut idle_matters, mut total_cap_matters) = (0u32, 0u32);
    for _ in 0..100 {
        let case = strategy.new_tree(&mut runner).expect("a case").current();
        let everything = vec![0; case.partitions as usize];
        let records = render(&case);
        let one = run(&config(case.partitions), &records, &everything, 1);
        let c = &one.counters;
        for (d, n) in dropped.iter_mut().zip(c.events_dropped) {
            *d += n;
        }
        revocations += c.revocations;
        erasures += c.erasures;
        offers += c.offers_by_map.iter().sum::<u64>();
        held_out += c.held_out_by_map.iter().sum::<u64>();
        lower_priority += c.lower_priority_by_map.iter().sum::<u64>();
        let no_idle = config_with(case.partitions, |s| {
            s.sessions.visitor_idle_expiry_secs = 1e6;
        });
        idle_matters += u32::from(run(&no_idle, &records, &everything, 1).stream != one.stream);
        let no_total_cap = config_with(case.partitions, |s| s.consent.buffer_max_total = 1_000_000);
        total_cap_matters +=
            u32::from(run(&no_total_cap, &records, &everything, 1).stream != one.stream);
    }
    for r in [
        DropReason::PreConsentTtl,
        DropReason::PreConsentOverflow,
        DropReason::Late,
        DropReason::Revoked,
        DropReason::Erased,
        DropReason::Duplicate,
    ] {
        assert!(
            dropped[r as usize] > 0,
            "no event dropped as {}: {dropped:?}",
            r.code()
        );
    }
    assert!(revocations > 0 && erasures > 0 && offers > 0);
    assert!(
        held_out > 0 && lower_priority > 0,
        "held out {held_out}, lower priority {lower_priority}"
    );
    assert!(idle_matters > 0, "the idle expiry never mattered");
    assert!(total_cap_matters > 0, "the total buffer cap never mattered");
}
