//! Sessions: what processing one event of a consenting visitor does to
//! the visitor's own state — the lateness and duplicate checks, starting
//! or continuing the session, the idle queue, feature accumulators and
//! the outcomes the session achieves — before handing over to scoring
//! and decisions ([`super::decide`]). Also the outcome predicates
//! ([`achieves`]) and the scratch reused across events.
//!
//! Invariants kept here:
//! - An event that reaches [`EventCtx::apply`] ends in exactly one bucket:
//!   dropped as `late`, dropped as `duplicate`, or processed.
//! - A visitor has at most one session. A new one starts when there is
//!   none, when the event carries a session id that is not the current
//!   session's explicit id, or, for events without a session id, when the
//!   current session was explicit or has timed out. A returning visitor's new session reuses the accumulators'
//!   allocation but keeps nothing of the old session's state.
//! - Session serials come from the visitor's partition
//!   ([`PartitionState`]), never from the engine, so they do not depend on
//!   which partitions share an engine.
//! - A visitor's latest event time only rises, and a visitor holding a
//!   session or an offer time has an item in its partition's idle queue
//!   at or before that time: the invariant
//!   [`Engine::sweep_idle`](super::Engine::sweep_idle) relies on.
//! - An outcome is counted and reported achieved at most once per session.
//! - A session resolves once per outcome it was scored for, for online
//!   evaluation ([`crate::online_eval`]): achieved (labelled here with its
//!   last score before the achieving event) or ended without it (a new
//!   session here, idle expiry in `expiry`); a session forgotten by a
//!   revocation or an erasure is never labelled. The session's peaks
//!   (`peaks`) end with it.
//! - The scratch (including the path cache) only saves allocation and
//!   work: it changes no result.

use ahash::AHashMap;
use compact_str::CompactString;
use smallvec::SmallVec;

use crate::compact::MaybeMs;
use crate::config::{EngineConfig, Outcome};
use crate::drift::ModelDriftCounts;
use crate::features::{FeatureScratch, FeatureSpec, PathInfo};
use crate::glob::url_path;
use crate::model::ModelSet;
use crate::online_eval::OutcomeEvalCounts;
use crate::purpose::PurposeSet;
use crate::stable_hash::{stable_hash, stable_hash_parts};
use crate::visitor::{Session, VisitorEntry};
use crate::wire::Event;

use super::expiry::IdleItem;
use super::feedback::ContactBook;
use super::learning::{teach, teach_ended_session, VectorBook};
use super::partition::PartitionState;
use super::peaks::PeakBook;
use super::{DropReason, EngineCounters, EngineSink};

/// Training/decision scratch reused across events to avoid allocation.
#[derive(Default)]
pub(super) struct Scratch {
    pub(super) features: FeatureScratch,
    pub(super) probabilities: Vec<Option<f64>>,
    /// The challengers' probabilities of this event (shadow scoring).
    pub(super) challenger_probabilities: Vec<Option<f64>>,
    /// Whether this event is counted for drift ([`crate::drift::sampled`]).
    pub(super) drift_sampled: bool,
    paths: PathCache,
}

/// A direct-mapped cache of [`FeatureSpec::path_info`] by path: hashing a
/// path for a slot is cheaper than the category match and the stable hash
/// it saves, and a site's pages recur. A hit compares the whole path, and
/// the info is a pure function of it under the engine's fixed spec, so the
/// cache changes no result (its per-process random hasher only places
/// entries).
#[derive(Default)]
struct PathCache {
    slots: Vec<Option<(CompactString, PathInfo)>>,
    hasher: ahash::RandomState,
}

impl PathCache {
    const SLOTS: usize = 1024;

    fn info(&mut self, spec: &FeatureSpec, path: &str) -> PathInfo {
        if self.slots.is_empty() {
            self.slots = vec![None; Self::SLOTS];
        }
        let at = self.hasher.hash_one(path.as_bytes()) as usize % Self::SLOTS;
        match self.slots.get_mut(at) {
            Some(Some((key, info))) if key.as_bytes() == path.as_bytes() => *info,
            Some(slot) => {
                let info = spec.path_info(path);
                *slot = Some((CompactString::new(path), info));
                info
            }
            None => spec.path_info(path),
        }
    }
}

/// An [`EventCtx`] over an engine's fields other than its visitor map, so
/// that an entry of the map can stay borrowed while the event is applied to
/// it (a method taking `&mut self` would borrow the map too).
macro_rules! event_ctx {
    ($engine:expr, $part:expr) => {
        $crate::engine::session::EventCtx {
            config: &$engine.config,
            models: &$engine.models,
            counters: &mut $engine.counters,
            scratch: &mut $engine.scratch,
            part: &mut $engine.parts[$part],
            contact: &$engine.contact,
            peaks: &mut $engine.peaks,
            vectors: &mut $engine.vectors,
            drift: &mut $engine.drift,
            online: &mut $engine.online,
        }
    };
}
pub(super) use event_ctx;

/// What processing one event touches besides the visitor's own entry,
/// borrowed field by field from the [`Engine`](super::Engine): the entry
/// is borrowed from the visitor map at the same time, so an event costs
/// one hash lookup.
pub(super) struct EventCtx<'a> {
    pub(super) config: &'a EngineConfig,
    pub(super) models: &'a ModelSet,
    pub(super) counters: &'a mut EngineCounters,
    pub(super) scratch: &'a mut Scratch,
    /// The visitor's partition: session serials and the idle queue.
    pub(super) part: &'a mut PartitionState,
    /// Contact-policy state by visitor (read only while deciding).
    pub(super) contact: &'a AHashMap<CompactString, ContactBook>,
    /// Peak scores that `falls_to` offers are explained against.
    pub(super) peaks: &'a mut PeakBook,
    /// Last scored vectors for learning (see `learning`).
    pub(super) vectors: &'a mut VectorBook,
    /// Drift counts per outcome (see [`crate::drift`]).
    pub(super) drift: &'a mut [Option<ModelDriftCounts>],
    /// Online evaluation per outcome (see [`crate::online_eval`]).
    pub(super) online: &'a mut [OutcomeEvalCounts],
}

impl EventCtx<'_> {
    /// Processes an event of a consenting visitor: session, features,
    /// outcomes, scores, action maps.
    pub(super) fn apply(
        &mut self,
        entry: &mut VisitorEntry,
        event: &Event<'_>,
        purposes: PurposeSet,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        let cfg = self.config;
        let t = event.time.epoch_ms;
        let visitor = event.visitor_id.as_ref();
        if entry
            .last_event_ms
            .get()
            .is_some_and(|last| t < last - cfg.allowed_lateness_ms)
        {
            self.counters.events_dropped[DropReason::Late as usize] += 1;
            return;
        }
        // Borrows the `activity` field only: `last_event_ms` is updated below.
        let act = &mut **entry.activity.get_or_insert_with(Box::default);
        let new_session = match (&act.session, &event.session_id) {
            (None, _) => true,
            (Some(s), Some(id)) => !(s.explicit && s.id == **id),
            (Some(s), None) => s.explicit || t - s.last_ms > cfg.session_timeout_ms,
        };
        if new_session {
            if act.session.is_none() {
                self.counters.active_sessions += 1;
            }
            let id = match &event.session_id {
                Some(id) => CompactString::new(id),
                None => auto_session_id(stable_hash_parts(
                    3,
                    &[visitor.as_bytes(), &t.to_le_bytes()],
                )),
            };
            // A returning visitor's new session reuses the accumulators'
            // allocation.
            let acc = match act.session.take() {
                Some(old) => {
                    self.peaks.forget(visitor);
                    label_ended_session(&old, self.online);
                    teach_ended_session(cfg, self.models, self.part, self.vectors, visitor, &old);
                    self.vectors.forget(visitor);
                    let mut acc = old.acc;
                    cfg.features.reset_accumulators(&mut acc);
                    acc
                }
                None => cfg.features.new_accumulators(),
            };
            act.session = Some(Session {
                id,
                explicit: event.session_id.is_some(),
                serial: self.part.next_session_serial,
                start_ms: t,
                last_ms: t,
                events: 0,
                acc,
                seen_events: SmallVec::new(),
                achieved: 0,
                last_probability: SmallVec::from_elem(f32::NAN, cfg.outcomes.len()),
                current_path: CompactString::const_new(""),
                traffic_source: None,
                offers_total: 0,
                offers_per_map: SmallVec::from_elem(0, cfg.action_maps.len()),
                decided_arms: 0,
            });
            self.part.next_session_serial += 1;
        }
        let Some(session) = act.session.as_mut() else {
            return;
        };
        let id_hash = stable_hash(event.event_id.as_bytes());
        self.scratch.drift_sampled = crate::drift::sampled_hash(id_hash);
        if session.seen_events.contains(&id_hash) {
            self.counters.events_dropped[DropReason::Duplicate as usize] += 1;
            return;
        }
        // The list is bounded: the oldest id makes room (the bound is at
        // least 1, so the list is not empty here; checked anyway, since
        // `remove` panics on an empty list).
        if session.seen_events.len() >= cfg.max_event_ids_per_session
            && !session.seen_events.is_empty()
        {
            session.seen_events.remove(0);
        }
        session.seen_events.push(id_hash);
        self.counters.events_processed += 1;
        let last = entry.last_event_ms.get().map_or(t, |l| l.max(t));
        entry.last_event_ms = MaybeMs::new(Some(last));
        if !act.idle_queued {
            act.idle_queued = true;
            self.part.idle_queue.push(IdleItem {
                time: last,
                visitor: CompactString::new(visitor),
            });
        }
        // Recency is the gap since the session's latest event so far.
        let previous_event_ms = (session.events > 0).then_some(session.last_ms);
        session.last_ms = session.last_ms.max(t);
        session.events += 1;
        // The URL path feeds features, the current page and outcome
        // patterns: extracted once.
        let path = event.page.as_ref().map(|p| url_path(&p.url));
        let info = path.map(|p| self.scratch.paths.info(&cfg.features, p));
        cfg.features
            .observe_with_info(&mut session.acc, event, info, previous_event_ms);
        sink.processed(event, path);
        // Replaced only when it changed: a long path's heap block is kept
        // while the visitor stays on the page.
        if let Some(path) = path.filter(|p| session.current_path != *p) {
            session.current_path = CompactString::new(path);
        }
        if session.traffic_source.is_none() {
            if let Some(src) = event.traffic.as_ref().and_then(|t| t.source.as_ref()) {
                let mut source = CompactString::new(src);
                source.make_ascii_lowercase();
                session.traffic_source = Some(source);
            }
        }
        let n = cfg.outcomes.len();
        for (i, outcome) in cfg.outcomes.iter().enumerate() {
            if session.achieved & (1 << i) == 0 && achieves_at(outcome, event, path) {
                session.achieved |= 1 << i;
                // Resolved: its last score (before this event) was right
                // to the extent it was high; the champion's in slot i, the
                // challenger's in slot n + i.
                for slot in [i, n + i] {
                    let last = session.last_probability.get(slot).copied();
                    let last = last.unwrap_or(f32::NAN);
                    if let (false, Some(c)) = (last.is_nan(), self.online.get_mut(slot)) {
                        c.observe(f64::from(last), true);
                    }
                }
                if cfg.adaptive.as_ref().is_some_and(|a| a.learns[i]) {
                    let vector = self.vectors.vector(visitor, session.serial);
                    teach(cfg, self.models, self.part, vector, i, true);
                }
                self.counters.outcomes_achieved[i] += 1;
                sink.achieved(session.serial, i);
                // Attribution: the session converted in every arm it was
                // decided in, for each map of this outcome (the window is
                // the rest of the session).
                if session.decided_arms != 0 {
                    self.attribute(session, act.last_offer_ms.get(), event, i, sink);
                }
            }
        }

        self.score(session, event, sink);
        self.decide(
            session,
            &mut act.last_offer_ms,
            event,
            purposes,
            now_ms,
            sink,
        );
        sink.state_changed(visitor);
    }
}

/// A session ended (a new one started, or it expired idle): each outcome
/// it was scored for and did not achieve resolves as a negative with its
/// last score, by each role that scored it (`online` holds the champions'
/// slots, then the challengers', like the session's last probabilities).
pub(super) fn label_ended_session(session: &Session, online: &mut [OutcomeEvalCounts]) {
    let n = online.len() / 2;
    for (slot, (p, c)) in session
        .last_probability
        .iter()
        .zip(online.iter_mut())
        .enumerate()
    {
        if session.achieved & (1 << (slot % n.max(1))) == 0 && !p.is_nan() {
            c.observe(f64::from(*p), false);
        }
    }
}

/// The derived id of a session without an explicit `session_id`:
/// `auto-` and 16 lower-case hex digits (`format!("auto-{hash:016x}")`,
/// built in place: 21 bytes, so it is stored inline).
pub(super) fn auto_session_id(hash: u64) -> CompactString {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = *b"auto-0000000000000000";
    for (i, d) in buf[5..].iter_mut().enumerate() {
        *d = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    CompactString::new(std::str::from_utf8(&buf).unwrap_or_default())
}

/// Whether `event` achieves `outcome` (every given predicate field matches).
pub fn achieves(outcome: &Outcome, event: &Event<'_>) -> bool {
    achieves_at(
        outcome,
        event,
        event.page.as_ref().map(|p| url_path(&p.url)),
    )
}

/// [`achieves`] with the URL path of the event's page already extracted.
fn achieves_at(outcome: &Outcome, event: &Event<'_>, path: Option<&str>) -> bool {
    if outcome.event_type.is_some_and(|t| t != event.kind) {
        return false;
    }
    if let Some(pattern) = &outcome.url_path {
        match path {
            Some(path) if pattern.matches(path) => {}
            _ => return false,
        }
    }
    if let Some(id) = &outcome.form_id {
        if event.form.as_ref().is_none_or(|f| f.form_id != id.as_str()) {
            return false;
        }
    }
    if let Some(action) = outcome.form_action {
        if !event.form.as_ref().is_some_and(|f| f.action == action) {
            return false;
        }
    }
    if let Some(name) = &outcome.custom_name {
        if event
            .custom
            .as_ref()
            .is_none_or(|c| c.name != name.as_str())
        {
            return false;
        }
    }
    true
}
