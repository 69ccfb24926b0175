//! Property tests of the engine's end-to-end guarantees over random
//! interleavings of consent records (grants, denials, erasures by record and
//! by tombstone, malformed ones) and visitor events (random types, times in
//! a small window, explicit or derived sessions, duplicate ids, malformed
//! records) for a handful of visitors:
//!
//! - the consent gate, checked event by event against an independent model
//!   of consent semantics (latest timestamp wins, ties go to the later read;
//!   erasure applies whatever its time and only a strictly newer record
//!   lifts it; no consent is retroactive: an event dated before the grant
//!   that ended the visitor's latest denial, revocation or erasure is
//!   dropped for that state), including the drop reason of every event;
//! - `load_consent` leaves the same consent state as applying the records,
//!   and a snapshot + restore + the latest record alone (what compaction
//!   leaves) gives the same gate;
//! - a restart from the changelog written at a commit half-way, followed by
//!   only the records after that commit (the bounded restore: consent before
//!   it is not read again), leaves the same consent states and makes the
//!   same outputs as the run that never stopped;
//! - frequency caps (per map and per session, minimum gap per visitor);
//! - determinism (two fresh runs give byte-identical outputs);
//! - counter reconciliation after `finish`.
//!
//! Plus scenario tests pinning the cases the properties found, and a
//! coverage test proving the generated scenarios do reach offers,
//! revocations, erasures and caps (so the properties are not vacuous).
//!
//! Why one file of this size: the properties share one scenario generator
//! and one reference model of consent and caps, and each pinned scenario
//! below was found by those properties; kept beside them so a failing case
//! and the property that found it are read together.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, LazyLock};

use common::{
    bytes, config_from, consent, low_threshold_settings, page_view, proptest_cases, rfc3339,
    shipped_config, shipped_settings, test_models, Output, RecordingSink, ScoreRecord, BASE_MS,
};
use propensity_engine::config::ConsentMode;
use propensity_engine::purpose::Purpose;
use propensity_engine::timestamp::parse_rfc3339;
use propensity_engine::{
    DropReason, Engine, EngineConfig, EngineCounters, ModelSet, Offer, Origin,
};
use proptest::prelude::*;
use proptest::sample::Index;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config as ProptestConfig, TestRunner};
use serde_json::{json, Value};

const VISITORS: [&str; 4] = ["v0", "v1", "v2", "v3"];
const URLS: [&str; 12] = [
    "/",
    "/products/widget",
    "/cart",
    "/checkout",
    "/checkout/payment",
    "/checkout/complete",
    "/webinars/ai",
    "/loans/personal",
    "/apply",
    "/blog/post",
    "/help",
    "/about",
];
const FORMS: [&str; 3] = ["webinar-signup", "loan-application", "newsletter"];
const FORM_ACTIONS: [&str; 3] = ["started", "submitted", "abandoned"];
const CHAT_ACTIONS: [&str; 4] = ["requested", "started", "message", "ended"];
const CUSTOM_NAMES: [&str; 3] = ["video_play", "calculator_used", "download"];
const DEVICES: [&str; 4] = ["desktop", "mobile", "tablet", "other"];
const PURPOSES: [&str; 4] = ["tracking", "support", "sales", "marketing"];

// ------------------------------------------------------------ configurations

/// A configuration variant under test.
struct Variant {
    name: &'static str,
    config: Arc<EngineConfig>,
    models: Arc<ModelSet>,
}

fn variant(name: &'static str, config: Arc<EngineConfig>) -> Variant {
    let models = test_models(&config);
    Variant {
        name,
        config,
        models,
    }
}

static VARIANTS: LazyLock<Vec<Variant>> = LazyLock::new(|| {
    let mut opt_out = low_threshold_settings();
    opt_out.consent.mode = ConsentMode::OptOut;
    let mut opt_out_no_tracking = low_threshold_settings();
    opt_out_no_tracking.consent.mode = ConsentMode::OptOut;
    opt_out_no_tracking.consent.opt_out_default_purposes =
        vec![Purpose::Support, Purpose::Sales, Purpose::Marketing];
    let mut short_buffer = low_threshold_settings();
    short_buffer.consent.buffer_ttl_secs = 3.0;
    short_buffer.consent.buffer_max_per_visitor = 2;
    vec![
        variant("shipped", shipped_config()),
        variant("low-threshold", config_from(&low_threshold_settings())),
        variant("low-threshold opt_out", config_from(&opt_out)),
        variant(
            "low-threshold opt_out, no tracking by default",
            config_from(&opt_out_no_tracking),
        ),
        variant("low-threshold, small buffer", config_from(&short_buffer)),
    ]
});

// ------------------------------------------------------------- generation

#[derive(Debug, Clone)]
enum Kind {
    Page(usize),
    Search(Option<u8>),
    Form(usize, usize, Option<u8>),
    Chat(usize),
    Custom(usize),
}

#[derive(Debug, Clone)]
enum Op {
    /// A valid event; `advance_s` moves the scenario clock first.
    Event {
        visitor: usize,
        advance_s: i64,
        kind: Kind,
        /// Session choice, interpreted by the visitor's session style.
        session: u8,
        duplicate_of: Option<Index>,
        keyed: bool,
        device: Option<usize>,
        /// Dated 400 s before the clock (beyond the allowed lateness).
        late: bool,
    },
    /// A consent state record dated `offset_s` from the clock.
    Consent {
        visitor: usize,
        offset_s: i64,
        purposes: [bool; 4],
        keyed: bool,
    },
    /// An erasure: a record with `erase: true`, or a Kafka tombstone.
    Erase {
        visitor: usize,
        offset_s: i64,
        tombstone: bool,
    },
    /// An event record that must be dead-lettered.
    BadEvent { visitor: usize, variant: u8 },
    /// A consent record that must be dead-lettered.
    BadConsent { visitor: usize, variant: u8 },
}

fn kind_strategy() -> impl Strategy<Value = Kind> {
    prop_oneof![
        5 => (0..URLS.len()).prop_map(Kind::Page),
        2 => proptest::option::of(0u8..3).prop_map(Kind::Search),
        2 => (0..FORMS.len(), 0..FORM_ACTIONS.len(), proptest::option::of(0u8..6))
            .prop_map(|(f, a, n)| Kind::Form(f, a, n)),
        1 => (0..CHAT_ACTIONS.len()).prop_map(Kind::Chat),
        1 => (0..CUSTOM_NAMES.len()).prop_map(Kind::Custom),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    let visitor = 0..VISITORS.len();
    prop_oneof![
        14 => (
            visitor.clone(),
            -3i64..=6,
            kind_strategy(),
            0u8..10,
            proptest::option::weighted(0.12, any::<Index>()),
            any::<bool>(),
            proptest::option::of(0..DEVICES.len()),
            proptest::bool::weighted(0.03),
        )
            .prop_map(|(visitor, advance_s, kind, session, duplicate_of, keyed, device, late)| {
                Op::Event { visitor, advance_s, kind, session, duplicate_of, keyed, device, late }
            }),
        4 => (
            visitor.clone(),
            -3i64..=3,
            (proptest::bool::weighted(0.7), any::<bool>(), any::<bool>(), any::<bool>()),
            any::<bool>(),
        )
            .prop_map(|(visitor, offset_s, (t, su, sa, m), keyed)| Op::Consent {
                visitor,
                offset_s,
                purposes: [t, su, sa, m],
                keyed,
            }),
        1 => (visitor.clone(), -3i64..=3, any::<bool>())
            .prop_map(|(visitor, offset_s, tombstone)| Op::Erase { visitor, offset_s, tombstone }),
        1 => (visitor.clone(), 0u8..8).prop_map(|(visitor, variant)| Op::BadEvent { visitor, variant }),
        1 => (visitor, 0u8..5).prop_map(|(visitor, variant)| Op::BadConsent { visitor, variant }),
    ]
}

/// A scenario: a configuration variant, each visitor's session style and
/// the operations.
type Scenario = (usize, [u8; 4], Vec<Op>);

fn scenario_strategy() -> impl Strategy<Value = Scenario> {
    (
        0..VARIANTS.len(),
        [0u8..3, 0u8..3, 0u8..3, 0u8..3],
        prop::collection::vec(op_strategy(), 1..120),
    )
}

/// The session id of an event: style 0 never sends one (sessions are
/// derived), style 1 sends a sticky id that changes one time in ten, style 2
/// mixes derived sessions and three explicit ids at random.
fn session_id(visitor: &str, style: u8, choice: u8) -> Option<String> {
    match style {
        0 => None,
        1 => Some(format!("s-{visitor}-{}", u8::from(choice == 9))),
        _ if choice < 4 => None,
        _ => Some(format!("s-{visitor}-{}", choice % 3)),
    }
}

// ---------------------------------------------------------------- records

/// What a valid consent record says, for the test's own model.
#[derive(Debug, Clone, Copy)]
enum Change {
    State([bool; 4]),
    Erase,
}

/// A concrete input record.
#[derive(Debug, Clone)]
enum Record {
    Event {
        visitor: usize,
        key: Option<Vec<u8>>,
        bytes: Vec<u8>,
        valid: bool,
        /// Event time (of a valid event).
        time_ms: i64,
    },
    Consent {
        visitor: usize,
        key: Option<Vec<u8>>,
        value: Option<Vec<u8>>,
        time_ms: i64,
        /// `None`: malformed, must be dead-lettered.
        change: Option<Change>,
    },
}

fn event_json(
    id: &str,
    visitor: &str,
    t_ms: i64,
    kind: &Kind,
    session: Option<&str>,
    device: Option<usize>,
) -> Value {
    let mut v = json!({
        "event_id": id,
        "visitor_id": visitor,
        "timestamp": rfc3339(t_ms),
    });
    let (type_name, field, body) = match kind {
        Kind::Page(i) => (
            "page_view",
            "page",
            json!({"url": format!("https://shop.example.com{}?ref=x", URLS[*i]), "title": "T"}),
        ),
        Kind::Search(results) => (
            "search",
            "search",
            match results {
                Some(n) => json!({"query": "blue widget", "results": n}),
                None => json!({"query": "blue widget"}),
            },
        ),
        Kind::Form(f, a, n) => {
            let mut form = json!({"form_id": FORMS[*f], "action": FORM_ACTIONS[*a]});
            if let Some(n) = n {
                form["fields_completed"] = json!(n);
            }
            ("form_fill", "form", form)
        }
        Kind::Chat(a) => ("chat", "chat", json!({"action": CHAT_ACTIONS[*a]})),
        Kind::Custom(n) => (
            "custom",
            "custom",
            json!({"name": CUSTOM_NAMES[*n], "properties": {"seconds": 12.5, "ok": true, "label": "x"}}),
        ),
    };
    v["type"] = json!(type_name);
    v[field] = body;
    if let Some(s) = session {
        v["session_id"] = json!(s);
    }
    if let Some(d) = device {
        v["device"] = json!({"category": DEVICES[d], "browser": "Firefox", "os": "Linux"});
        v["traffic"] = json!({"source": "Newsletter", "medium": "email"});
    }
    v
}

/// Turns operations into concrete records (ids, times, bytes).
fn render(styles: &[u8; 4], ops: &[Op]) -> Vec<Record> {
    let mut clock = BASE_MS;
    let mut ids: Vec<Vec<String>> = vec![Vec::new(); VISITORS.len()];
    let mut out = Vec::with_capacity(ops.len());
    for (n, op) in ops.iter().enumerate() {
        match op {
            Op::Event {
                visitor,
                advance_s,
                kind,
                session,
                duplicate_of,
                keyed,
                device,
                late,
            } => {
                clock += advance_s * 1000;
                let t = if *late { clock - 400_000 } else { clock };
                let v = VISITORS[*visitor];
                let id = match duplicate_of {
                    Some(i) if !ids[*visitor].is_empty() => {
                        ids[*visitor][i.index(ids[*visitor].len())].clone()
                    }
                    _ => format!("e{n}"),
                };
                ids[*visitor].push(id.clone());
                let session = session_id(v, styles[*visitor], *session);
                let value = event_json(&id, v, t, kind, session.as_deref(), *device);
                out.push(Record::Event {
                    visitor: *visitor,
                    key: keyed.then(|| v.as_bytes().to_vec()),
                    bytes: bytes(&value),
                    valid: true,
                    time_ms: t,
                });
            }
            Op::Consent {
                visitor,
                offset_s,
                purposes,
                keyed,
            } => {
                let v = VISITORS[*visitor];
                let t = clock + offset_s * 1000;
                let granted: Vec<&str> = PURPOSES
                    .iter()
                    .zip(purposes)
                    .filter(|(_, g)| **g)
                    .map(|(p, _)| *p)
                    .collect();
                let mut value = consent(v, t, &granted);
                value["source"] = json!("cmp");
                out.push(Record::Consent {
                    visitor: *visitor,
                    key: keyed.then(|| v.as_bytes().to_vec()),
                    value: Some(bytes(&value)),
                    time_ms: t,
                    change: Some(Change::State(*purposes)),
                });
            }
            Op::Erase {
                visitor,
                offset_s,
                tombstone,
            } => {
                let v = VISITORS[*visitor];
                let t = clock + offset_s * 1000;
                let value = (!tombstone).then(|| {
                    bytes(&json!({"visitor_id": v, "timestamp": rfc3339(t), "erase": true}))
                });
                out.push(Record::Consent {
                    visitor: *visitor,
                    key: Some(v.as_bytes().to_vec()),
                    value,
                    time_ms: t,
                    change: Some(Change::Erase),
                });
            }
            Op::BadEvent { visitor, variant } => {
                let v = VISITORS[*visitor];
                let good = event_json(&format!("bad{n}"), v, clock, &Kind::Page(0), None, None);
                let mut key = None;
                let bytes = match variant {
                    0 => b"not json {".to_vec(),
                    1 => {
                        let b = bytes(&good);
                        b[..b.len() / 2].to_vec()
                    }
                    2 => {
                        let mut g = good;
                        if let Some(o) = g.as_object_mut() {
                            o.remove("event_id");
                        }
                        bytes(&g)
                    }
                    3 => {
                        let mut g = good;
                        g["timestamp"] = json!("yesterday");
                        bytes(&g)
                    }
                    4 => {
                        let mut g = good;
                        g["type"] = json!("teleport");
                        bytes(&g)
                    }
                    5 => {
                        key = Some(b"someone-else".to_vec());
                        bytes(&good)
                    }
                    6 => b"{\"event_id\":\"\xff\"}".to_vec(),
                    _ => {
                        let mut g = good;
                        g["padding"] = json!("x".repeat(70_000));
                        bytes(&g)
                    }
                };
                out.push(Record::Event {
                    visitor: *visitor,
                    key,
                    bytes,
                    valid: false,
                    time_ms: clock,
                });
            }
            Op::BadConsent { visitor, variant } => {
                let v = VISITORS[*visitor];
                let good = consent(v, clock, &["tracking"]);
                let mut key = None;
                let value = match variant {
                    0 => b"{\"visitor_id\":".to_vec(),
                    1 => {
                        let mut g = good;
                        if let Some(o) = g.as_object_mut() {
                            o.remove("timestamp");
                        }
                        bytes(&g)
                    }
                    2 => {
                        let mut g = good;
                        g["purposes"] = json!("all");
                        bytes(&g)
                    }
                    3 => {
                        key = Some(b"someone-else".to_vec());
                        bytes(&good)
                    }
                    _ => bytes(&json!({"visitor_id": v, "timestamp": rfc3339(clock)})),
                };
                out.push(Record::Consent {
                    visitor: *visitor,
                    key,
                    value: Some(value),
                    time_ms: clock,
                    change: None,
                });
            }
        }
    }
    out
}

// ------------------------------------------------------- the test's models

/// The latest consent state of one visitor in the test's own model.
#[derive(Debug, Clone, Copy)]
struct ModelState {
    /// Record time (for an erasure: the latest time seen up to it).
    time_ms: i64,
    /// tracking, support, sales, marketing.
    purposes: [bool; 4],
    erased: bool,
    /// Tracking was granted (by a record, or by opt-out defaults before the
    /// first record) since the last erasure.
    ever_tracked: bool,
}

impl ModelState {
    /// Why an event is dropped under this state (`None`: it grants tracking).
    fn denial(&self) -> Option<DropReason> {
        if self.erased {
            Some(DropReason::Erased)
        } else if self.purposes[0] {
            None
        } else if self.ever_tracked {
            Some(DropReason::Revoked)
        } else {
            Some(DropReason::NoConsent)
        }
    }
}

/// What the gate must do with a valid event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Fate {
    /// Past the gate: processed, or dropped as duplicate or late.
    Pass,
    /// Waits for a first record (or overflows the buffer).
    Buffer,
    /// Dropped by the gate, for this reason.
    Drop(DropReason),
}

/// Consent semantics written from the contract, independently of the
/// engine: the record with the greatest timestamp wins, ties go to the
/// record read later; an erasure applies whatever its timestamp and blocks
/// everything until a record strictly newer than everything seen before it.
/// No consent is retroactive: the model keeps every state a visitor went
/// through and, for an event, looks back from the latest one over the
/// trailing run of states granting tracking; if a state denying it comes
/// before that run, an event dated before the run's first record is
/// dropped for that state.
struct ConsentModel {
    opt_in: bool,
    defaults: [bool; 4],
    states: Vec<Option<ModelState>>,
    /// Every state each visitor went through (applied records), in order.
    history: Vec<Vec<ModelState>>,
}

impl ConsentModel {
    fn new(config: &EngineConfig) -> Self {
        Self {
            opt_in: config.consent_mode == ConsentMode::OptIn,
            defaults: [
                Purpose::Tracking,
                Purpose::Support,
                Purpose::Sales,
                Purpose::Marketing,
            ]
            .map(|p| config.opt_out_purposes.grants(p)),
            states: vec![None; VISITORS.len()],
            history: vec![Vec::new(); VISITORS.len()],
        }
    }

    /// Effective purposes now.
    fn purposes(&self, v: usize) -> [bool; 4] {
        match self.states[v] {
            None if self.opt_in => [false; 4],
            None => self.defaults,
            Some(s) if s.erased => [false; 4],
            Some(s) => s.purposes,
        }
    }

    fn tracking(&self, v: usize) -> bool {
        self.purposes(v)[0]
    }

    fn grants(&self, v: usize, purpose: Purpose) -> bool {
        let i = PURPOSES
            .iter()
            .position(|p| *p == purpose.as_str())
            .expect("known purpose");
        self.purposes(v)[i]
    }

    /// The start of the current granted interval and the reason for events
    /// before it, when tracking is granted and a denial precedes the run of
    /// grants; `None` otherwise.
    fn bound(&self, v: usize) -> Option<(i64, DropReason)> {
        let h = &self.history[v];
        let first_grant = h.iter().rposition(|s| s.denial().is_some())? + 1;
        let grant = h.get(first_grant)?;
        Some((grant.time_ms, h[first_grant - 1].denial()?))
    }

    /// What the gate must do with a valid event of `v` dated `t`.
    fn fate(&self, v: usize, t: i64) -> Fate {
        let Some(state) = self.states[v] else {
            return match (self.opt_in, self.defaults[0]) {
                (true, _) => Fate::Buffer,
                (false, true) => Fate::Pass,
                (false, false) => Fate::Drop(DropReason::NoConsent),
            };
        };
        if let Some(reason) = state.denial() {
            return Fate::Drop(reason);
        }
        match self.bound(v) {
            Some((since, reason)) if t < since => Fate::Drop(reason),
            _ => Fate::Pass,
        }
    }

    /// Applies a record; false when it is stale (ignored).
    fn apply(&mut self, v: usize, time_ms: i64, change: Change) -> bool {
        let current = self.states[v];
        let next = match change {
            Change::Erase => {
                let since = current.map_or(time_ms, |c| c.time_ms.max(time_ms));
                ModelState {
                    time_ms: since,
                    purposes: [false; 4],
                    erased: true,
                    ever_tracked: false,
                }
            }
            Change::State(purposes) => {
                if let Some(c) = current {
                    if time_ms < c.time_ms || (c.erased && time_ms <= c.time_ms) {
                        return false;
                    }
                }
                let tracked_before = match current {
                    Some(c) => c.ever_tracked,
                    // Opt-out defaults that grant tracking count as a grant.
                    None => !self.opt_in && self.defaults[0],
                };
                ModelState {
                    time_ms,
                    purposes,
                    erased: false,
                    ever_tracked: purposes[0] || tracked_before,
                }
            }
        };
        self.states[v] = Some(next);
        self.history[v].push(next);
        true
    }
}

/// Frequency-cap bookkeeping, driven by the output stream. A session
/// instance is `(visitor, session id, generation)`: the generation moves
/// when scores switch to another session id (every new session's first
/// event is scored) or when consent is revoked or erased (which forgets
/// the session, so an explicit id may come back as a new session).
struct CapModel<'a> {
    config: &'a EngineConfig,
    generation: Vec<u32>,
    current: Vec<Option<String>>,
    /// The scores of the visitor's latest scored event: (event id, outcome → p).
    last_scores: Vec<Option<(String, HashMap<String, f64>)>>,
    last_offer_ms: Vec<Option<i64>>,
    per_map: HashMap<(usize, String, u32, String), u32>,
    per_session: HashMap<(usize, String, u32), u32>,
}

impl<'a> CapModel<'a> {
    fn new(config: &'a EngineConfig) -> Self {
        let n = VISITORS.len();
        Self {
            config,
            generation: vec![0; n],
            current: vec![None; n],
            last_scores: vec![None; n],
            last_offer_ms: vec![None; n],
            per_map: HashMap::new(),
            per_session: HashMap::new(),
        }
    }

    fn forget_session(&mut self, v: usize) {
        self.generation[v] += 1;
        self.current[v] = None;
        self.last_scores[v] = None;
    }

    fn erase(&mut self, v: usize) {
        self.forget_session(v);
        self.last_offer_ms[v] = None;
    }

    fn score(&mut self, v: usize, s: &ScoreRecord) {
        if self.current[v].as_deref() != Some(s.session_id.as_str()) {
            self.generation[v] += 1;
            self.current[v] = Some(s.session_id.clone());
        }
        match &mut self.last_scores[v] {
            Some((id, scores)) if *id == s.event_id => {
                scores.insert(s.outcome.clone(), s.probability);
            }
            slot => {
                *slot = Some((
                    s.event_id.clone(),
                    HashMap::from([(s.outcome.clone(), s.probability)]),
                ));
            }
        }
    }

    fn offer(&mut self, v: usize, o: &Offer) -> Result<(), TestCaseError> {
        prop_assert_eq!(
            self.current[v].as_deref(),
            Some(o.session_id.as_str()),
            "an offer belongs to the session of the event scored just before it"
        );
        let (event_id, scores) = self.last_scores[v]
            .as_ref()
            .ok_or_else(|| TestCaseError::fail("offer without a preceding score"))?;
        prop_assert_eq!(event_id, &o.trigger_event_id);
        prop_assert_eq!(scores.get(&o.outcome).copied(), Some(o.probability));

        let map = self
            .config
            .action_maps
            .iter()
            .find(|m| m.name == o.action_map)
            .ok_or_else(|| TestCaseError::fail(format!("unknown map {}", o.action_map)))?;
        let session = (v, o.session_id.clone(), self.generation[v]);
        let n_map = self
            .per_map
            .entry((
                v,
                o.session_id.clone(),
                self.generation[v],
                o.action_map.clone(),
            ))
            .or_default();
        *n_map += 1;
        prop_assert!(
            *n_map <= map.max_per_session,
            "map {} made {} offers in session {:?} (cap {})",
            o.action_map,
            n_map,
            session,
            map.max_per_session
        );
        let n_session = self.per_session.entry(session.clone()).or_default();
        *n_session += 1;
        prop_assert!(
            *n_session <= self.config.max_offers_per_session,
            "{} offers in session {:?} (cap {})",
            n_session,
            session,
            self.config.max_offers_per_session
        );
        let t = parse_rfc3339(&o.event_time)
            .ok_or_else(|| TestCaseError::fail("offer event_time is not RFC 3339"))?
            .epoch_ms;
        if let Some(last) = self.last_offer_ms[v] {
            prop_assert!(
                t - last >= self.config.min_offer_gap_ms,
                "offers to {} at {} and {}: gap below {} ms",
                VISITORS[v],
                last,
                t,
                self.config.min_offer_gap_ms
            );
        }
        self.last_offer_ms[v] = Some(t);
        Ok(())
    }
}

// ------------------------------------------------------------------ running

/// What a run produced, for determinism and coverage checks.
struct RunResult {
    sink: RecordingSink,
    engine: Engine,
    stale_consent: u64,
    /// Sessions that reached the per-session cap.
    sessions_at_cap: usize,
    /// (session, map) pairs that reached a per-map cap above 1.
    maps_at_cap: usize,
    /// Events dropped, by reason, although the latest state grants tracking
    /// (dated before the current granted interval).
    dropped_before_grant: [u64; 3],
    /// Whether events were waiting for consent at the restart's commit (the
    /// case that needs the restored clock and the deadline-ordered TTL).
    restart_with_waiting_events: bool,
}

fn feed(engine: &mut Engine, record: &Record, sink: &mut RecordingSink) {
    let origin = Origin::Unknown;
    match record {
        Record::Event { key, bytes, .. } => {
            engine.process_event(key.as_deref(), bytes, &origin, None, sink);
        }
        Record::Consent {
            key,
            value,
            time_ms,
            ..
        } => {
            engine.process_consent(
                key.as_deref(),
                value.as_deref(),
                *time_ms,
                &origin,
                None,
                sink,
            );
        }
    }
}

/// Runs the records through a fresh engine, checking every invariant after
/// every record.
fn run_checked(v: &Variant, records: &[Record]) -> Result<RunResult, TestCaseError> {
    let config = &*v.config;
    let mut engine = Engine::new(v.config.clone(), v.models.clone());
    let mut sink = RecordingSink::default();
    let mut gate = ConsentModel::new(config);
    let mut caps = CapModel::new(config);
    let mut predicted_revoked = 0u64;
    let mut predicted_erased = 0u64;
    let mut predicted_no_consent = 0u64;
    let mut stale_consent = 0u64;
    // Fed every consent record through `load_consent` only (a restore).
    let mut loaded = Engine::new(v.config.clone(), v.models.clone());
    // Per visitor: the latest consent record applied (not stale).
    let mut latest_applied: Vec<Option<&Record>> = vec![None; VISITORS.len()];
    let mut dropped_before_grant = [0u64; 3];
    // The changelog as the pipeline writes it (a commit after every
    // record: each visitor told by `state_changed` gets its snapshot), and
    // its contents and the outputs so far at a commit half-way through.
    let mut changelog: BTreeMap<&str, Option<Vec<u8>>> = BTreeMap::new();
    let cut = records.len() / 2;
    let mut at_cut = (BTreeMap::new(), 0, 0, Vec::new());

    for (i, record) in records.iter().enumerate() {
        if i == cut {
            // The pipeline writes each partition's clock with the consent
            // position at every commit.
            let clocks: Vec<(u32, i64)> = (0..v.config.partitions)
                .filter_map(|p| engine.partition_clock(p).map(|c| (p, c)))
                .collect();
            at_cut = (
                changelog.clone(),
                sink.outputs.len(),
                engine.counters().buffered_events,
                clocks,
            );
        }
        let before = sink.outputs.len();
        let counters_before = engine.counters().clone();
        let snapshots_before: Vec<Option<Vec<u8>>> =
            VISITORS.iter().map(|n| engine.snapshot(n)).collect();
        let changes_before = sink.state_changes.len();
        feed(&mut engine, record, &mut sink);
        for changed in &sink.state_changes[changes_before..] {
            let name = VISITORS
                .iter()
                .find(|n| **n == changed.as_str())
                .expect("a known visitor");
            changelog.insert(name, engine.snapshot(name));
        }
        // The changelog sees every change of a visitor's snapshot (the
        // consent state included).
        for (n, old) in VISITORS.iter().zip(&snapshots_before) {
            if engine.snapshot(n) != *old {
                prop_assert!(
                    sink.state_changes[changes_before..].iter().any(|c| c == n),
                    "record {} ({}): snapshot of {} changed, no state_changed",
                    i,
                    v.name,
                    n
                );
            }
        }
        let (visitor, malformed, prior_state) = match record {
            Record::Event {
                visitor,
                valid,
                time_ms,
                ..
            } => {
                if *valid {
                    let fate = gate.fate(*visitor, *time_ms);
                    if let (Fate::Drop(r), true) = (fate, gate.tracking(*visitor)) {
                        dropped_before_grant[r as usize] += 1;
                    }
                    match fate {
                        Fate::Drop(DropReason::Erased) => predicted_erased += 1,
                        Fate::Drop(DropReason::Revoked) => predicted_revoked += 1,
                        Fate::Drop(DropReason::NoConsent) => predicted_no_consent += 1,
                        _ => {}
                    }
                    check_fate(i, fate, &counters_before, engine.counters()).map_err(|e| {
                        TestCaseError::fail(format!(
                            "{e} ({}, {} at {}, consent history {:?})",
                            v.name, VISITORS[*visitor], time_ms, gate.history[*visitor]
                        ))
                    })?;
                    if fate != Fate::Pass {
                        prop_assert_eq!(
                            sink.outputs.len(),
                            before,
                            "record {}: outputs for an event the gate stops",
                            i
                        );
                    }
                }
                (*visitor, !*valid, gate.states[*visitor])
            }
            Record::Consent {
                visitor,
                key,
                value,
                time_ms,
                change,
            } => {
                let prior = gate.states[*visitor];
                if let Some(change) = change {
                    let was_tracking = gate.tracking(*visitor);
                    if gate.apply(*visitor, *time_ms, *change) {
                        latest_applied[*visitor] = Some(record);
                        if matches!(change, Change::Erase) {
                            caps.erase(*visitor);
                        } else if was_tracking && !gate.tracking(*visitor) {
                            caps.forget_session(*visitor);
                        }
                    } else {
                        stale_consent += 1;
                    }
                }
                // Loading the same records leaves the same consent state.
                loaded.load_consent(key.as_deref(), value.as_deref(), *time_ms);
                let name = VISITORS[*visitor];
                prop_assert_eq!(
                    engine.visitor_view(name).and_then(|(c, _)| c),
                    loaded.visitor_view(name).and_then(|(c, _)| c),
                    "record {} ({}): load_consent and apply disagree on {}",
                    i,
                    v.name,
                    name
                );
                (*visitor, change.is_none(), prior)
            }
        };
        let name = VISITORS[visitor];
        // The granted interval's start: in the consent state, and in the
        // changelog snapshot (so that it survives compaction and restarts).
        let expected_bound = gate.bound(visitor);
        let (consent_now, snapshot_now) = engine.visitor_view(name).unwrap_or_default();
        prop_assert_eq!(
            consent_now
                .and_then(|c| c.bound())
                .map(|(t, r)| (t, DropReason::from(r))),
            expected_bound,
            "record {} ({}): granted interval of {} (history {:?})",
            i,
            v.name,
            name,
            gate.history[visitor]
        );
        prop_assert_eq!(
            snapshot_now.and_then(|s| s.tracking_since_ms),
            expected_bound.map(|(t, _)| t),
            "record {}: snapshot of {} does not carry the granted interval",
            i,
            name
        );
        let new = &sink.outputs[before..];
        let mut offers = 0;
        let mut dead_letters = 0;
        for out in new {
            match out {
                Output::Decision(d) | Output::Conversion(d) => {
                    let d: serde_json::Value = serde_json::from_str(d).expect("output JSON");
                    prop_assert_eq!(
                        d["visitor_id"].as_str(),
                        Some(name),
                        "record {}: decision or conversion for another visitor",
                        i
                    );
                    prop_assert!(
                        gate.tracking(visitor),
                        "record {} ({}): decision or conversion on {} while its consent does not grant tracking",
                        i,
                        v.name,
                        name
                    );
                }
                Output::Score(s) => {
                    prop_assert_eq!(
                        &s.visitor_id,
                        name,
                        "record {}: score for another visitor",
                        i
                    );
                    prop_assert!(
                        gate.tracking(visitor),
                        "record {} ({}): {} scored while its consent does not grant tracking ({:?})",
                        i,
                        v.name,
                        name,
                        gate.states[visitor]
                    );
                    caps.score(visitor, s);
                }
                Output::Offer(o) => {
                    offers += 1;
                    prop_assert_eq!(
                        &o.visitor_id,
                        name,
                        "record {}: offer for another visitor",
                        i
                    );
                    prop_assert!(
                        gate.tracking(visitor),
                        "record {} ({}): offer to {} while its consent does not grant tracking ({:?})",
                        i,
                        v.name,
                        name,
                        gate.states[visitor]
                    );
                    prop_assert!(
                        gate.grants(visitor, o.purpose),
                        "record {} ({}): offer {} needs {:?}, not granted",
                        i,
                        v.name,
                        o.action_map,
                        o.purpose
                    );
                    caps.offer(visitor, o)?;
                }
                Output::DeadLetter(_) => dead_letters += 1,
            }
        }
        if malformed {
            prop_assert_eq!(dead_letters, 1, "record {}: malformed, one dead letter", i);
            prop_assert_eq!(
                new.len(),
                1,
                "record {}: a malformed record makes nothing else",
                i
            );
        } else {
            prop_assert_eq!(dead_letters, 0, "record {}: valid record dead-lettered", i);
        }
        match record {
            Record::Event { .. } => {
                prop_assert!(offers <= 1, "record {}: {} offers for one event", i, offers)
            }
            Record::Consent { .. } => {
                // Only the first record of an opt-in visitor may release
                // buffered events (which are then processed under it).
                if !new.is_empty() && !malformed {
                    prop_assert!(
                        prior_state.is_none() && gate.opt_in,
                        "record {}: consent record produced outputs but nothing was buffered",
                        i
                    );
                }
            }
        }
        // Without tracking nothing but buffered events (opt-in, before any
        // record) may be held: a revocation or erasure forgets the session.
        if !gate.tracking(visitor) {
            if let Some((_, Some(snapshot))) = engine.visitor_view(name) {
                prop_assert!(
                    snapshot.session.is_none(),
                    "record {} ({}): {} has a session while not tracked ({:?})",
                    i,
                    v.name,
                    name,
                    gate.states[visitor]
                );
                if gate.states[visitor].is_some() {
                    prop_assert!(
                        snapshot.buffer.is_empty(),
                        "record {}: buffer kept after a consent record",
                        i
                    );
                }
            }
        }
        let c = engine.counters();
        prop_assert!(
            c.reconciles(),
            "record {}: counters do not reconcile: {:?}",
            i,
            c
        );
    }

    // A restart: each visitor's snapshot restored into a fresh engine, then
    // only the visitor's latest applied consent record loaded (what
    // compaction leaves of the consent topic). The gate must be the same.
    for (visitor, name) in VISITORS.iter().enumerate() {
        let Some(Record::Consent {
            key,
            value,
            time_ms,
            ..
        }) = latest_applied[visitor]
        else {
            continue;
        };
        let mut restarted = Engine::new(v.config.clone(), v.models.clone());
        restarted
            .restore(name, engine.snapshot(name).as_deref())
            .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
        restarted.load_consent(key.as_deref(), value.as_deref(), *time_ms);
        let gate_of = |e: &Engine| {
            e.visitor_view(name)
                .and_then(|(c, _)| c)
                .map(|c| (c.tracking(), c.bound()))
        };
        prop_assert_eq!(
            gate_of(&restarted),
            gate_of(&engine),
            "{} ({}): the gate differs after a restart (history {:?})",
            name,
            v.name,
            gate.history[visitor]
        );
    }

    // A bounded restart at the half-way commit: the changelog restored
    // (visitors, then each partition's clock), then only the records after
    // the commit (consent included) processed with their effects. Consent
    // before the commit is not read again: the snapshots must carry it.
    // Same consent states and the same outputs as the run that never
    // stopped, events waiting for consent at the commit included: they
    // expire in deadline order by the restored clock.
    let (restored_changelog, outputs_at_cut, buffered_at_cut, clocks) = at_cut;
    let mut restarted = Engine::new(v.config.clone(), v.models.clone());
    for (name, value) in &restored_changelog {
        restarted
            .restore(name, value.as_deref())
            .map_err(|e| TestCaseError::fail(format!("restore: {e}")))?;
    }
    for (partition, clock) in clocks {
        restarted.restore_partition_clock(partition, clock);
    }
    let mut restarted_sink = RecordingSink::default();
    for record in &records[cut..] {
        feed(&mut restarted, record, &mut restarted_sink);
    }
    for name in VISITORS {
        prop_assert_eq!(
            restarted.visitor_view(name).and_then(|(c, _)| c),
            engine.visitor_view(name).and_then(|(c, _)| c),
            "{} ({}): consent differs after a restart from the changelog at record {}",
            name,
            v.name,
            cut
        );
    }
    let tail = RecordingSink {
        outputs: sink.outputs[outputs_at_cut..].to_vec(),
        state_changes: Vec::new(),
    };
    prop_assert_eq!(
        serialized_outputs(&restarted_sink),
        serialized_outputs(&tail),
        "{}: outputs after a restart from the changelog at record {} differ ({} events waiting for consent at the cut)",
        v.name,
        cut,
        buffered_at_cut
    );
    let restart_with_waiting_events = buffered_at_cut > 0;

    engine.finish(&mut sink);
    let c = engine.counters().clone();
    let event_records = records
        .iter()
        .filter(|r| matches!(r, Record::Event { .. }))
        .count() as u64;
    let malformed_events = records
        .iter()
        .filter(|r| matches!(r, Record::Event { valid: false, .. }))
        .count() as u64;
    let consent_records = records.len() as u64 - event_records;
    let malformed_consent = records
        .iter()
        .filter(|r| matches!(r, Record::Consent { change: None, .. }))
        .count() as u64;
    prop_assert!(c.reconciles(), "after finish: {:?}", c);
    prop_assert_eq!(c.events_consumed, event_records);
    prop_assert_eq!(c.buffered_events, 0, "finish leaves nothing buffered");
    prop_assert_eq!(c.dead_lettered_total(), malformed_events);
    prop_assert_eq!(c.consent_consumed, consent_records);
    prop_assert_eq!(
        c.consent_dead_lettered.iter().sum::<u64>(),
        malformed_consent
    );
    prop_assert_eq!(c.consent_stale, stale_consent, "stale consent records");
    prop_assert_eq!(
        c.consent_applied,
        consent_records - malformed_consent - stale_consent
    );
    prop_assert_eq!(
        sink.dead_letters().len() as u64,
        malformed_events + malformed_consent
    );
    prop_assert_eq!(
        sink.offers().len() as u64,
        c.offers_by_map.iter().sum::<u64>()
    );
    prop_assert_eq!(sink.scores().len() as u64, c.scores);
    {
        // Exact for revocations (only the gate drops as revoked); buffered
        // events dropped by an erasure or a first denial add to the others.
        let dropped = |r: DropReason| c.events_dropped[r as usize];
        prop_assert_eq!(
            dropped(DropReason::Revoked),
            predicted_revoked,
            "revoked drops"
        );
        prop_assert!(
            dropped(DropReason::Erased) >= predicted_erased,
            "erased drops"
        );
        prop_assert!(
            dropped(DropReason::NoConsent) >= predicted_no_consent,
            "no-consent drops"
        );
    }
    let sessions_at_cap = caps
        .per_session
        .values()
        .filter(|n| **n == config.max_offers_per_session)
        .count();
    let maps_at_cap = caps
        .per_map
        .iter()
        .filter(|((.., map), n)| {
            config
                .action_maps
                .iter()
                .any(|m| m.name == *map && m.max_per_session > 1 && m.max_per_session == **n)
        })
        .count();
    Ok(RunResult {
        sink,
        engine,
        stale_consent,
        sessions_at_cap,
        maps_at_cap,
        dropped_before_grant,
        restart_with_waiting_events,
    })
}

/// Checks, from the counters before and after one valid event, that the
/// event met the fate the model predicts (and nothing else happened to it).
fn check_fate(
    i: usize,
    fate: Fate,
    before: &EngineCounters,
    after: &EngineCounters,
) -> Result<(), TestCaseError> {
    let d = |r: DropReason| after.events_dropped[r as usize] - before.events_dropped[r as usize];
    let processed = after.events_processed - before.events_processed;
    let gate_drops = [
        DropReason::NoConsent,
        DropReason::Revoked,
        DropReason::Erased,
    ];
    // Other visitors' buffered events may expire as the watermark moves.
    let buffered_gain = (after.buffered_events + d(DropReason::PreConsentTtl)) as i64
        - before.buffered_events as i64;
    match fate {
        Fate::Drop(reason) => {
            for r in gate_drops {
                prop_assert_eq!(
                    d(r),
                    u64::from(r == reason),
                    "record {}: expected a drop as {}, got {:?} → {:?}",
                    i,
                    reason.code(),
                    before.events_dropped,
                    after.events_dropped
                );
            }
            prop_assert_eq!(
                processed + d(DropReason::Duplicate) + d(DropReason::Late),
                0,
                "record {}: dropped as {} by the model, passed the gate",
                i,
                reason.code()
            );
            prop_assert_eq!(
                buffered_gain,
                0,
                "record {}: a dropped event was buffered",
                i
            );
        }
        Fate::Pass => {
            for r in gate_drops {
                prop_assert_eq!(
                    d(r),
                    0,
                    "record {}: expected to pass the gate, dropped as {}",
                    i,
                    r.code()
                );
            }
            prop_assert_eq!(
                processed + d(DropReason::Duplicate) + d(DropReason::Late),
                1,
                "record {}: expected processed, duplicate or late",
                i
            );
            prop_assert_eq!(
                buffered_gain,
                0,
                "record {}: a passing event was buffered",
                i
            );
        }
        Fate::Buffer => {
            for r in gate_drops {
                prop_assert_eq!(
                    d(r),
                    0,
                    "record {}: expected buffered, dropped as {}",
                    i,
                    r.code()
                );
            }
            prop_assert_eq!(
                processed + d(DropReason::Duplicate) + d(DropReason::Late),
                0,
                "record {}: expected buffered, passed the gate",
                i
            );
            prop_assert_eq!(
                buffered_gain + d(DropReason::PreConsentOverflow) as i64,
                1,
                "record {}: expected buffered (or overflowed)",
                i
            );
        }
    }
    Ok(())
}

/// Every output serialized, in order.
fn serialized_outputs(sink: &RecordingSink) -> Vec<String> {
    sink.outputs
        .iter()
        .map(|o| match o {
            Output::Score(s) => format!("score {}", s.json),
            Output::Offer(o) => format!(
                "offer {}",
                serde_json::to_string(o).expect("offer serializes")
            ),
            Output::DeadLetter(d) => format!("dead {}", d.line),
            Output::Decision(d) => format!("decision {d}"),
            Output::Conversion(c) => format!("conversion {c}"),
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(proptest_cases(96)))]

    /// (a) consent gate, (b) caps, (d) reconciliation — all checked record
    /// by record in `run_checked` — and (c) determinism: a second fresh run
    /// gives byte-identical offers, scores and dead letters.
    #[test]
    fn consent_caps_determinism_and_reconciliation((variant_idx, styles, ops) in scenario_strategy()) {
        let v = &VARIANTS[variant_idx];
        let records = render(&styles, &ops);
        let first = run_checked(v, &records)?;
        let second = run_checked(v, &records)?;
        let a = serialized_outputs(&first.sink);
        let b = serialized_outputs(&second.sink);
        prop_assert_eq!(a, b, "two runs of the same input differ ({})", v.name);
        prop_assert_eq!(first.engine.counters(), second.engine.counters());
    }
}

/// The generated scenarios reach what the properties are about: offers of
/// every kind of map, suppression by caps and by purpose, revocations,
/// erasures, stale records, released buffers, late and duplicate events.
/// Without this, a generator bug could make the properties vacuous.
#[test]
fn generated_scenarios_cover_the_interesting_paths() {
    let mut runner = TestRunner::deterministic();
    let strategy = scenario_strategy();
    let mut offers = 0u64;
    let mut offers_per_variant = vec![0u64; VARIANTS.len()];
    let mut by_cap = 0u64;
    let mut by_purpose = 0u64;
    let mut revocations = 0u64;
    let mut erasures = 0u64;
    let mut stale = 0u64;
    let mut sessions_at_cap = 0;
    let mut maps_at_cap = 0;
    let mut dropped = [0u64; 7];
    let mut before_grant = [0u64; 3];
    let mut maps = std::collections::BTreeSet::new();
    let mut restarts_with_waiting = 0;
    for _ in 0..96 {
        let (variant_idx, styles, ops) = strategy
            .new_tree(&mut runner)
            .expect("a scenario")
            .current();
        let v = &VARIANTS[variant_idx];
        let run = run_checked(v, &render(&styles, &ops)).expect("the properties hold");
        let c = run.engine.counters();
        offers += c.offers_by_map.iter().sum::<u64>();
        offers_per_variant[variant_idx] += c.offers_by_map.iter().sum::<u64>();
        by_cap += c.suppressed_by_cap.iter().sum::<u64>();
        by_purpose += c.suppressed_by_purpose.iter().sum::<u64>();
        revocations += c.revocations;
        erasures += c.erasures;
        stale += run.stale_consent;
        sessions_at_cap += run.sessions_at_cap;
        maps_at_cap += run.maps_at_cap;
        for (d, n) in dropped.iter_mut().zip(c.events_dropped) {
            *d += n;
        }
        for (d, n) in before_grant.iter_mut().zip(run.dropped_before_grant) {
            *d += n;
        }
        for o in run.sink.offers() {
            maps.insert(o.action_map.clone());
        }
        restarts_with_waiting += usize::from(run.restart_with_waiting_events);
    }
    assert!(offers > 50, "offers: {offers}");
    // Restarts while events wait for consent are the hard case, not rare.
    assert!(
        restarts_with_waiting > 20,
        "restarts with events waiting for consent: {restarts_with_waiting} of 96"
    );
    assert!(
        by_cap > 20 && by_purpose > 20,
        "suppressed: cap {by_cap}, purpose {by_purpose}"
    );
    assert!(
        sessions_at_cap > 5 && maps_at_cap > 5,
        "caps reached: {sessions_at_cap} {maps_at_cap}"
    );
    assert!(
        revocations > 5 && erasures > 5 && stale > 5,
        "{revocations} {erasures} {stale}"
    );
    for r in [
        DropReason::NoConsent,
        DropReason::Revoked,
        DropReason::Erased,
        DropReason::PreConsentTtl,
        DropReason::Duplicate,
        DropReason::Late,
    ] {
        assert!(
            dropped[r as usize] > 0,
            "no {} drops: {dropped:?}",
            r.code()
        );
    }
    // No consent is retroactive: events dated before a re-grant reach the
    // gate after it, for each kind of state the grant ended.
    assert!(
        before_grant.iter().all(|n| *n > 0),
        "events before a re-grant (no consent, revoked, erased): {before_grant:?}"
    );
    eprintln!("coverage: before grant {before_grant:?} at cap {sessions_at_cap} {maps_at_cap} offers {offers} {offers_per_variant:?} cap {by_cap} purpose {by_purpose} rev {revocations} er {erasures} stale {stale} dropped {dropped:?} maps {maps:?}");
    assert_eq!(
        maps.len(),
        VARIANTS[0].config.action_maps.len(),
        "maps that made offers: {maps:?}"
    );
    // Every variant but "no tracking by default" makes offers.
    for (i, n) in offers_per_variant.iter().enumerate() {
        assert!(
            *n > 0 || VARIANTS[i].name.contains("no tracking"),
            "{}: no offers",
            VARIANTS[i].name
        );
    }
}

// ---------------------------------------------------------------- scenarios

fn run_plain(
    config: &Arc<EngineConfig>,
    records: &[(bool, Vec<u8>, i64)],
) -> (Engine, RecordingSink) {
    let mut engine = Engine::new(config.clone(), test_models(config));
    let mut sink = RecordingSink::default();
    for (is_consent, value, t) in records {
        if *is_consent {
            engine.process_consent(None, Some(value), *t, &Origin::Unknown, None, &mut sink);
        } else {
            engine.process_event(None, value, &Origin::Unknown, None, &mut sink);
        }
    }
    (engine, sink)
}

fn checkout_journey(visitor: &str, start_ms: i64, n: usize) -> Vec<(bool, Vec<u8>, i64)> {
    (0..n)
        .map(|i| {
            let t = start_ms + i as i64 * 15_000;
            let url = [
                "https://s/cart",
                "https://s/checkout",
                "https://s/checkout/payment",
            ][i % 3];
            (
                false,
                bytes(&page_view(&format!("{visitor}-e{i}"), visitor, t, url)),
                t,
            )
        })
        .collect()
}

#[test]
fn shipped_config_offers_checkout_chat_to_a_consenting_visitor() {
    let config = shipped_config();
    let mut records = vec![(
        true,
        bytes(&consent("v", BASE_MS, &["tracking", "sales"])),
        BASE_MS,
    )];
    records.extend(checkout_journey("v", BASE_MS, 6));
    let (engine, sink) = run_plain(&config, &records);
    let offers = sink.offers();
    let maps: Vec<&str> = offers.iter().map(|o| o.action_map.as_str()).collect();
    // The chat needs 3 events on a /c* page; the loan callback's
    // probability reaches 0.4 at the 6th event, when the chat is capped.
    assert_eq!(maps, ["checkout-assist-chat", "loan-advisor-callback"]);
    assert_eq!(offers[0].trigger_event_id, "v-e2");
    assert_eq!(offers[1].trigger_event_id, "v-e5");
    assert!(offers.iter().all(|o| o.purpose == Purpose::Sales));
    assert!(offers[0].probability >= 0.5 && offers[1].probability >= 0.4);
    // No marketing consent: the webinar map fired but was suppressed.
    let idx = config
        .action_maps
        .iter()
        .position(|m| m.name == "webinar-agenda-offer")
        .expect("shipped map");
    assert!(engine.counters().suppressed_by_purpose[idx] > 0);
}

#[test]
fn events_before_the_first_grant_are_released_and_scored() {
    let config = shipped_config();
    let mut records = checkout_journey("v", BASE_MS, 3);
    let grant_at = BASE_MS + 31_000;
    // Too old for the 10 s buffer: the first two expire, the third is kept.
    records.push((
        true,
        bytes(&consent("v", grant_at, &["tracking"])),
        grant_at,
    ));
    let (engine, sink) = run_plain(&config, &records);
    let c = engine.counters();
    assert_eq!(c.events_processed, 1);
    assert_eq!(c.events_dropped[DropReason::PreConsentTtl as usize], 2);
    assert!(sink.scores().iter().all(|s| s.event_id == "v-e2"));
    assert_eq!(sink.scores().len(), 3);
}

#[test]
fn an_erasure_is_lifted_only_by_a_strictly_newer_grant() {
    let config = config_from(&low_threshold_settings());
    let t = BASE_MS + 5_000;
    let grant = bytes(&consent("v", t, &["tracking", "sales", "marketing"]));
    let records = vec![
        (true, grant.clone(), t),
        (
            true,
            bytes(&json!({"visitor_id": "v", "timestamp": rfc3339(t), "erase": true})),
            t,
        ),
        // The same grant again (a redelivery, or a record of the same
        // millisecond): it must not undo the erasure.
        (true, grant, t),
        (
            false,
            bytes(&page_view("e1", "v", t + 1_000, "https://s/cart")),
            0,
        ),
    ];
    let (engine, sink) = run_plain(&config, &records);
    assert!(sink.scores().is_empty() && sink.offers().is_empty());
    let c = engine.counters();
    assert_eq!(c.events_dropped[DropReason::Erased as usize], 1);
    assert_eq!(c.consent_stale, 1);
    // A strictly newer grant lifts it.
    let mut records2 = records.clone();
    records2.push((true, bytes(&consent("v", t + 1, &["tracking"])), t + 1));
    records2.push((
        false,
        bytes(&page_view("e2", "v", t + 2_000, "https://s/cart")),
        0,
    ));
    let (engine, sink) = run_plain(&config, &records2);
    assert_eq!(engine.counters().events_processed, 1);
    assert!(sink.scores().iter().all(|s| s.event_id == "e2"));
}

#[test]
fn an_opt_out_denial_is_a_revocation_that_forgets_the_session() {
    let mut s = low_threshold_settings();
    s.consent.mode = ConsentMode::OptOut;
    let config = config_from(&s);
    let mut records = checkout_journey("v", BASE_MS, 2);
    let deny_at = BASE_MS + 20_000;
    records.push((true, bytes(&consent("v", deny_at, &[])), deny_at));
    records.push((
        false,
        bytes(&page_view("late", "v", deny_at + 1_000, "https://s/")),
        0,
    ));
    let (engine, _) = run_plain(&config, &records);
    let c = engine.counters();
    assert_eq!(c.events_processed, 2);
    assert_eq!(c.revocations, 1);
    assert_eq!(c.events_dropped[DropReason::Revoked as usize], 1);
    let (_, snapshot) = engine.visitor_view("v").expect("consent is kept");
    assert!(
        snapshot.is_none_or(|s| s.session.is_none()),
        "session kept after denial"
    );
}

#[test]
fn opt_out_without_tracking_by_default_processes_no_unrecorded_visitor() {
    let mut s = low_threshold_settings();
    s.consent.mode = ConsentMode::OptOut;
    s.consent.opt_out_default_purposes = vec![Purpose::Sales];
    let config = config_from(&s);
    let (engine, sink) = run_plain(&config, &checkout_journey("v", BASE_MS, 3));
    assert!(sink.outputs.is_empty(), "{:?}", sink.outputs);
    assert_eq!(
        engine.counters().events_dropped[DropReason::NoConsent as usize],
        3
    );
    assert!(engine.visitor_view("v").is_none_or(|(_, s)| s.is_none()));
}

#[test]
fn shipped_settings_load_and_match_the_file() {
    let s = shipped_settings();
    let c = shipped_config();
    assert_eq!(c.consent_mode, ConsentMode::OptIn);
    assert_eq!(c.outcomes.len(), 3);
    assert_eq!(s.action_maps.len(), 4);
    // Sorted by priority, highest first.
    let names: Vec<&str> = c.action_maps.iter().map(|m| m.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "checkout-assist-chat",
            "cart-rescue-offer",
            "loan-advisor-callback",
            "webinar-agenda-offer"
        ]
    );
    assert_eq!(c.max_offers_per_session, 3);
    assert_eq!(c.min_offer_gap_ms, 10_000);
}

// ------------------------------------------------- no consent is retroactive

/// A page view record for `run_plain`.
fn view(id: &str, visitor: &str, t: i64) -> (bool, Vec<u8>, i64) {
    (
        false,
        bytes(&page_view(id, visitor, t, "https://s/cart")),
        t,
    )
}

/// A consent record for `run_plain`.
fn state(visitor: &str, t: i64, purposes: &[&str]) -> (bool, Vec<u8>, i64) {
    (true, bytes(&consent(visitor, t, purposes)), t)
}

/// An erasure record for `run_plain`.
fn erasure(visitor: &str, t: i64) -> (bool, Vec<u8>, i64) {
    (
        true,
        bytes(&json!({"visitor_id": visitor, "timestamp": rfc3339(t), "erase": true})),
        t,
    )
}

/// The ids of the events scored, each once, in order.
fn scored_ids(sink: &RecordingSink) -> Vec<String> {
    let mut ids: Vec<String> = Vec::new();
    for s in sink.scores() {
        if ids.last() != Some(&s.event_id) {
            ids.push(s.event_id.clone());
        }
    }
    ids
}

fn dropped(engine: &Engine, r: DropReason) -> u64 {
    engine.counters().events_dropped[r as usize]
}

#[test]
fn events_sent_while_erased_stay_dropped_after_a_re_grant() {
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let records = vec![
        state("v", t0, &["tracking"]),
        view("e1", "v", t0 + 1_000),
        erasure("v", t0 + 10_000),
        state("v", t0 + 30_000, &["tracking", "sales"]),
        // The pipeline lags: events sent while erased arrive after the
        // re-grant. None of them may be processed.
        view("e2", "v", t0 + 15_000),
        view("e3", "v", t0 + 20_000),
        view("e4", "v", t0 + 29_999),
        // From the grant's own millisecond on, events are processed.
        view("e5", "v", t0 + 30_000),
        view("e6", "v", t0 + 40_000),
    ];
    let (engine, sink) = run_plain(&config, &records);
    assert_eq!(scored_ids(&sink), ["e1", "e5", "e6"]);
    let c = engine.counters();
    assert_eq!(c.events_processed, 3);
    assert_eq!(dropped(&engine, DropReason::Erased), 3);
    assert_eq!(c.dropped_total(), 3);
    assert!(c.reconciles(), "{c:?}");
    assert_eq!(c.consent_applied, 3);
}

#[test]
fn events_sent_while_revoked_stay_dropped_after_a_re_grant() {
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let records = vec![
        state("v", t0, &["tracking"]),
        view("e1", "v", t0 + 1_000),
        state("v", t0 + 10_000, &[]),
        state("v", t0 + 30_000, &["tracking"]),
        view("e2", "v", t0 + 15_000),
        view("e3", "v", t0 + 29_000),
        // Sent in the earlier granted period, arriving after revocation and
        // re-grant: dropped too (the revocation wiped that period).
        view("e0", "v", t0 + 5_000),
        view("e4", "v", t0 + 31_000),
    ];
    let (engine, sink) = run_plain(&config, &records);
    assert_eq!(scored_ids(&sink), ["e1", "e4"]);
    let c = engine.counters();
    assert_eq!(c.revocations, 1);
    assert_eq!(dropped(&engine, DropReason::Revoked), 3);
    assert_eq!(c.dropped_total(), 3);
    assert!(c.reconciles(), "{c:?}");
}

#[test]
fn events_sent_while_denied_stay_dropped_after_a_grant_and_purpose_changes() {
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let records = vec![
        // The first record denies: the later grant bounds event time.
        state("v", t0, &["support"]),
        state("v", t0 + 30_000, &["tracking"]),
        // A grant after a grant (purposes change) keeps the same period.
        state("v", t0 + 40_000, &["tracking", "sales", "marketing"]),
        view("e1", "v", t0 + 10_000),
        view("e2", "v", t0 + 35_000),
        // Before the first record, but the first record denied: dropped.
        view("e0", "v", t0 - 5_000),
        view("e3", "v", t0 + 45_000),
    ];
    let (engine, sink) = run_plain(&config, &records);
    assert_eq!(scored_ids(&sink), ["e2", "e3"]);
    let c = engine.counters();
    assert_eq!(c.revocations, 0);
    assert_eq!(dropped(&engine, DropReason::NoConsent), 2);
    assert_eq!(c.dropped_total(), 2);
    assert!(c.reconciles(), "{c:?}");
    let (consent, _) = engine.visitor_view("v").expect("held");
    let consent = consent.expect("consent");
    assert_eq!(consent.tracking_since_ms, t0 + 30_000);
}

#[test]
fn a_first_grant_leaves_earlier_events_to_the_pre_consent_rules() {
    // Opt-in: events before the first record wait and are released by it.
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let (engine, sink) = run_plain(
        &config,
        &[
            view("e1", "v", t0),
            view("e2", "v", t0 + 2_000),
            state("v", t0 + 5_000, &["tracking"]),
            // Late but within the bounds: no lower bound after a first grant.
            view("e3", "v", t0 + 1_000),
        ],
    );
    assert_eq!(scored_ids(&sink), ["e1", "e2", "e3"]);
    assert!(engine.counters().reconciles());
    let (consent, snapshot) = engine.visitor_view("v").expect("held");
    assert_eq!(consent.expect("consent").tracking_since_ms, i64::MIN);
    assert_eq!(snapshot.expect("a session").tracking_since_ms, None);
    // Opt-out with defaults granting tracking: a first grant is not a new
    // period either.
    let mut s = low_threshold_settings();
    s.consent.mode = ConsentMode::OptOut;
    let (engine, sink) = run_plain(
        &config_from(&s),
        &[
            view("e1", "v", t0),
            state("v", t0 + 5_000, &["tracking"]),
            view("e2", "v", t0 + 1_000),
        ],
    );
    assert_eq!(scored_ids(&sink), ["e1", "e2"]);
    assert_eq!(engine.counters().dropped_total(), 0);
}

#[test]
fn the_granted_interval_survives_a_restart_after_compaction() {
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let grant = consent("v", t0 + 30_000, &["tracking"]);
    // Engine A sees the erasure and the grant.
    let (mut a, mut sink) = run_plain(
        &config,
        &[state("v", t0, &["tracking"]), erasure("v", t0 + 10_000)],
    );
    assert_erasure_only(a.snapshot("v"));
    sink.state_changes.clear();
    a.process_consent(
        None,
        Some(&bytes(&grant)),
        t0 + 30_000,
        &Origin::Unknown,
        None,
        &mut sink,
    );
    assert_eq!(
        sink.state_changes,
        ["v"],
        "a new granted interval must reach the changelog"
    );
    let snapshot = a.snapshot("v").expect("the interval start is snapshotted");
    let json: Value = serde_json::from_slice(&snapshot).expect("JSON");
    assert_eq!(json["tracking_since_ms"], json!(t0 + 30_000));
    assert_eq!(json["prior_denial"], json!("erased"));

    // Engine B restarts from the changelog and the compacted consent topic,
    // which holds only the grant.
    let while_erased = bytes(&page_view("e1", "v", t0 + 20_000, "https://s/cart"));
    let after_grant = bytes(&page_view("e2", "v", t0 + 31_000, "https://s/cart"));
    let restart = |restore_first: bool| {
        let mut b = Engine::new(config.clone(), test_models(&config));
        if restore_first {
            b.restore("v", Some(&snapshot)).expect("restores");
        }
        assert!(b.load_consent(None, Some(&bytes(&grant)), t0 + 30_000));
        if !restore_first {
            b.restore("v", Some(&snapshot)).expect("restores");
        }
        let mut sink = RecordingSink::default();
        for e in [&while_erased, &after_grant] {
            b.process_event(None, e, &Origin::Unknown, None, &mut sink);
        }
        (b, sink)
    };
    for restore_first in [true, false] {
        let (b, sink) = restart(restore_first);
        assert_eq!(scored_ids(&sink), ["e2"], "restore first: {restore_first}");
        assert_eq!(dropped(&b, DropReason::Erased), 1);
        assert!(b.counters().reconciles());
        // And B writes the bound again with the visitor's next snapshot.
        let json: Value =
            serde_json::from_slice(&b.snapshot("v").expect("a session")).expect("JSON");
        assert_eq!(json["tracking_since_ms"], json!(t0 + 30_000));
        assert_eq!(json["prior_denial"], json!("erased"));
    }

    // Without the snapshot, the compacted topic alone would let it through:
    // the snapshot is what keeps the result independent of the restart.
    let mut c = Engine::new(config.clone(), test_models(&config));
    assert!(c.load_consent(None, Some(&bytes(&grant)), t0 + 30_000));
    let mut sink = RecordingSink::default();
    c.process_event(None, &while_erased, &Origin::Unknown, None, &mut sink);
    assert_eq!(c.counters().events_processed, 1);

    // A snapshot written before this field existed still restores, and a
    // visitor without a bound writes nothing new.
    let old = br#"{"v":1,"session":null,"buffer":[],"last_offer_ms":null,"last_event_ms":null}"#;
    let mut d = Engine::new(config.clone(), test_models(&config));
    d.restore("w", Some(old)).expect("old snapshots restore");
    let (e, _) = run_plain(
        &config,
        &[state("w", t0, &["tracking"]), view("e1", "w", t0 + 1_000)],
    );
    let json: Value = serde_json::from_slice(&e.snapshot("w").expect("a session")).expect("JSON");
    assert!(json.get("tracking_since_ms").is_none() && json.get("prior_denial").is_none());
}

/// An erased visitor's changelog record: the erasure (format 2 carries
/// consent, so a restore need not find it in the consent topic) and
/// nothing else about the visitor.
fn assert_erasure_only(snapshot: Option<Vec<u8>>) {
    let json: Value =
        serde_json::from_slice(&snapshot.expect("the erasure is written")).expect("JSON");
    assert_eq!(json["v"], json!(2));
    assert_eq!(json["consent"]["erased"], json!(true));
    assert_eq!(json["session"], Value::Null);
    assert_eq!(json["buffer"], json!([]));
    assert_eq!(json["last_offer_ms"], Value::Null);
    assert_eq!(json["last_event_ms"], Value::Null);
    assert!(json.get("tracking_since_ms").is_none());
}

#[test]
fn an_erasure_after_a_re_grant_leaves_only_the_erasure() {
    let config = config_from(&low_threshold_settings());
    let t0 = BASE_MS;
    let (engine, _) = run_plain(
        &config,
        &[
            state("v", t0, &[]),
            state("v", t0 + 10_000, &["tracking"]),
            view("e1", "v", t0 + 11_000),
            erasure("v", t0 + 20_000),
        ],
    );
    assert_eq!(engine.counters().events_processed, 1);
    // Nothing but the erasure is held, in memory and in the changelog.
    assert_erasure_only(engine.snapshot("v"));
    let (consent, snapshot) = engine.visitor_view("v").expect("the erasure is kept");
    assert!(consent.expect("consent").erased && snapshot.is_none());
}
