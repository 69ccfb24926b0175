//! The engine: one pure state machine that takes visitor events and consent
//! records (as bytes, in processing order) and emits offers, scores, dead
//! letters and state-change notices through an [`EngineSink`]. It does no
//! I/O and reads no clock: callers pass the decision time, so a replay of
//! the same input gives byte-identical output.
//!
//! Invariants, in the order the code enforces them:
//! 1. Consent is the gate: an event is processed only when the latest
//!    consent state known *now* grants `tracking` (or, in opt-out mode, when
//!    there is no record). Without any record in opt-in mode it waits in a
//!    bounded buffer; nothing else about a non-consenting visitor is kept.
//! 2. No consent is retroactive: the event's own time must also fall in the
//!    visitor's *current* uninterrupted granted interval, which starts at
//!    the grant that followed the latest denial, revocation or erasure
//!    ([`ConsentState::tracking_since_ms`]). So a lagging pipeline that
//!    reads a re-grant before the events sent while not granting drops them
//!    (as `erased`, `revoked` or `no_consent`: the state before the grant).
//!    Conservatively, this also drops events from a granted period before a
//!    revocation that arrive after the re-grant: the revocation wiped that
//!    period. A visitor whose first record grants (or who had opt-out
//!    defaults granting tracking) has no lower bound, so events from before
//!    the first record keep the pre-consent rules of 1. The bound survives
//!    restarts in the visitor's changelog snapshot, because compaction of
//!    the consent topic keeps only the latest record (the grant).
//! 3. Every consumed event ends in exactly one bucket: processed, dropped
//!    (by reason), dead-lettered, or still buffered — so the counters always
//!    reconcile.
//! 4. At most one offer per event; caps are checked before an offer exists.
//! 5. Sharing an engine changes nothing: Kafka partitions are the unit of
//!    ordering and ownership (`run` holds one engine per partition,
//!    `replay` and training one engine for all), so every engine-level
//!    clock and bound is kept per partition of the visitor id
//!    ([`crate::partitioning`], murmur2 among [`EngineConfig::partitions`],
//!    computed once per record and only when there are several): the
//!    watermark (greatest event time seen in the partition), the
//!    pre-consent TTL sweep, the idle sweep and its schedule, the buffered
//!    total checked against `buffer_max_total`, and session serials
//!    (partition in the top bits). Everything else is per visitor. So the
//!    same per-partition input order gives the same outputs (offers,
//!    scores, dead letters, changelog notices, training examples) and
//!    summed counters whatever partitions share an engine; the
//!    `partition_sharding` property test checks it.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, VecDeque};
use std::sync::Arc;

use ahash::AHashMap;
use serde::Serialize;

use crate::compact::{InlineVec, MaybeMs, Slots, SmallStr};
use crate::config::{ActionMap, ConsentMode, EngineConfig, Outcome, Trigger};
use crate::error::EngineError;
use crate::features::{FeatureScratch, FeatureSpec, PathInfo};
use crate::glob::url_path;
use crate::model::ModelSet;
use crate::partitioning::partition_of_u32;
use crate::purpose::{Purpose, PurposeSet};
use crate::stable_hash::{stable_hash, stable_hash_parts};
use crate::timestamp::format_rfc3339_ms;
use crate::visitor::{
    Activity, BufferedEvent, ConsentState, PriorDenial, Session, VisitorEntry, VisitorSnapshot,
};
use crate::wire::{
    check_key, decode_consent, decode_event, ConsentChange, ConsentUpdate, DeadLetter,
    DeadLetterReason, DecodeError, Event, EventKind, Offer, Origin, OutcomeScore,
};

/// Why a valid event was not processed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DropReason {
    /// The visitor's latest consent denies tracking and never granted it;
    /// or the event predates the current grant, which followed such a state.
    NoConsent,
    /// The visitor granted tracking earlier and has revoked it; or the event
    /// predates the current grant, which followed a revocation.
    Revoked,
    /// The visitor asked for erasure and has not granted tracking since; or
    /// the event predates the current grant, which followed an erasure.
    Erased,
    /// The event waited for a first consent record longer than the TTL.
    PreConsentTtl,
    /// The pre-consent buffer (per visitor or global) was full.
    PreConsentOverflow,
    /// An event with this id was already processed in the session.
    Duplicate,
    /// Older than the visitor's newest event by more than the lateness bound.
    Late,
}

impl From<PriorDenial> for DropReason {
    fn from(d: PriorDenial) -> Self {
        match d {
            PriorDenial::NoConsent => DropReason::NoConsent,
            PriorDenial::Revoked => DropReason::Revoked,
            PriorDenial::Erased => DropReason::Erased,
        }
    }
}

impl DropReason {
    /// All reasons, in counter order.
    pub const ALL: [DropReason; 7] = [
        DropReason::NoConsent,
        DropReason::Revoked,
        DropReason::Erased,
        DropReason::PreConsentTtl,
        DropReason::PreConsentOverflow,
        DropReason::Duplicate,
        DropReason::Late,
    ];

    /// Stable code (metrics label, summary key).
    pub fn code(self) -> &'static str {
        match self {
            DropReason::NoConsent => "no_consent",
            DropReason::Revoked => "revoked",
            DropReason::Erased => "erased",
            DropReason::PreConsentTtl => "pre_consent_ttl",
            DropReason::PreConsentOverflow => "pre_consent_overflow",
            DropReason::Duplicate => "duplicate",
            DropReason::Late => "late",
        }
    }
}

/// Where the engine's outputs go. Only `offer` and `dead_letter` are
/// mandatory; the rest default to no-ops so a sink pays only for what it
/// uses (building a score costs a timestamp format per outcome).
pub trait EngineSink {
    /// An offer was decided.
    fn offer(&mut self, offer: Offer);
    /// A record could not be decoded.
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>);
    /// Whether [`EngineSink::score`] should be called.
    fn wants_scores(&self) -> bool {
        false
    }
    /// An outcome was scored after an event.
    fn score(&mut self, _score: &OutcomeScore<'_>) {}
    /// Every scored probability, by outcome index (config order): cheaper
    /// than [`EngineSink::score`] (no record is built), for histograms.
    fn probability(&mut self, _outcome: usize, _probability: f64) {}
    /// The visitor's changelog state changed (snapshot or tombstone due).
    fn state_changed(&mut self, _visitor_id: &str) {}
    /// Whether training examples should be reported.
    fn wants_examples(&self) -> bool {
        false
    }
    /// A feature vector for an outcome not yet achieved in a session.
    fn example(&mut self, _session_serial: u64, _outcome: usize, _features: &[f32]) {}
    /// A session achieved an outcome.
    fn achieved(&mut self, _session_serial: u64, _outcome: usize) {}
}

/// Counters of everything the engine did. Gauges are current values.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EngineCounters {
    /// Event records consumed (valid or not).
    pub events_consumed: u64,
    /// Valid events consumed, by type (`EventKind::ALL` order).
    pub events_by_type: [u64; 5],
    /// Events processed (scored where models exist).
    pub events_processed: u64,
    /// Events dropped, by reason (`DropReason::ALL` order).
    pub events_dropped: [u64; 7],
    /// Event records dead-lettered, by reason (`DeadLetterReason::ALL` order).
    pub events_dead_lettered: [u64; 8],
    /// Consent records consumed.
    pub consent_consumed: u64,
    /// Consent records applied.
    pub consent_applied: u64,
    /// Consent records older than the state already known (ignored).
    pub consent_stale: u64,
    /// Consent records dead-lettered, by reason.
    pub consent_dead_lettered: [u64; 8],
    /// Erasure requests applied.
    pub erasures: u64,
    /// Revocations applied (tracking withdrawn after a grant).
    pub revocations: u64,
    /// Outcome scores computed.
    pub scores: u64,
    /// Sessions that achieved each outcome (config order).
    pub outcomes_achieved: Vec<u64>,
    /// Offers made per action map (priority order of `EngineConfig::action_maps`).
    pub offers_by_map: Vec<u64>,
    /// Offers a map would have made but a frequency cap prevented.
    pub suppressed_by_cap: Vec<u64>,
    /// Offers a map would have made but its purpose was not granted.
    pub suppressed_by_purpose: Vec<u64>,
    /// Gauge: events waiting for consent.
    pub buffered_events: u64,
    /// Gauge: sessions held.
    pub active_sessions: u64,
    /// Gauge: visitors held (consent or activity).
    pub visitors: u64,
}

impl EngineCounters {
    /// Dropped events in total.
    pub fn dropped_total(&self) -> u64 {
        self.events_dropped.iter().sum()
    }

    /// Dead-lettered event records in total.
    pub fn dead_lettered_total(&self) -> u64 {
        self.events_dead_lettered.iter().sum()
    }

    /// Adds `other` into these counters: totals and gauges alike (the sum
    /// of several engines' current state), lists element-wise (a longer
    /// list extends this one).
    pub fn merge(&mut self, other: &EngineCounters) {
        fn add(into: &mut [u64], from: &[u64]) {
            for (x, y) in into.iter_mut().zip(from) {
                *x += y;
            }
        }
        fn add_list(into: &mut Vec<u64>, from: &[u64]) {
            if into.len() < from.len() {
                into.resize(from.len(), 0);
            }
            add(into, from);
        }
        self.events_consumed += other.events_consumed;
        add(&mut self.events_by_type, &other.events_by_type);
        self.events_processed += other.events_processed;
        add(&mut self.events_dropped, &other.events_dropped);
        add(&mut self.events_dead_lettered, &other.events_dead_lettered);
        self.consent_consumed += other.consent_consumed;
        self.consent_applied += other.consent_applied;
        self.consent_stale += other.consent_stale;
        add(
            &mut self.consent_dead_lettered,
            &other.consent_dead_lettered,
        );
        self.erasures += other.erasures;
        self.revocations += other.revocations;
        self.scores += other.scores;
        add_list(&mut self.outcomes_achieved, &other.outcomes_achieved);
        add_list(&mut self.offers_by_map, &other.offers_by_map);
        add_list(&mut self.suppressed_by_cap, &other.suppressed_by_cap);
        add_list(
            &mut self.suppressed_by_purpose,
            &other.suppressed_by_purpose,
        );
        self.buffered_events += other.buffered_events;
        self.active_sessions += other.active_sessions;
        self.visitors += other.visitors;
    }

    /// These counters with the gauges (state held right now) set to zero:
    /// what stays of an engine's work once its state is gone.
    pub fn totals_only(&self) -> EngineCounters {
        EngineCounters {
            buffered_events: 0,
            active_sessions: 0,
            visitors: 0,
            ..self.clone()
        }
    }

    /// consumed = processed + dropped + dead-lettered + still buffered.
    pub fn reconciles(&self) -> bool {
        self.events_consumed
            == self.events_processed
                + self.dropped_total()
                + self.dead_lettered_total()
                + self.buffered_events
    }
}

/// Training/decision scratch reused across events to avoid allocation.
#[derive(Default)]
struct Scratch {
    features: FeatureScratch,
    probabilities: Vec<Option<f64>>,
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
    slots: Vec<Option<(SmallStr, PathInfo)>>,
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
                *slot = Some((SmallStr::new(path), info));
                info
            }
            None => spec.path_info(path),
        }
    }
}

/// The engine state for one shard of visitors: any set of Kafka
/// partitions (all of them in replay and training; one in the Kafka
/// runtime). Visitors are placed by [`partition_of_u32`] of their id among
/// [`EngineConfig::partitions`], and every clock and bound is kept per
/// partition ([`PartitionState`]), so what happens to a visitor depends
/// only on its partition's records, never on which other partitions share
/// the engine.
pub struct Engine {
    config: Arc<EngineConfig>,
    models: Arc<ModelSet>,
    /// Keyed by visitor id; queried with the id's bytes (see [`SmallStr`]),
    /// so a lookup builds no key.
    visitors: AHashMap<SmallStr, VisitorEntry>,
    counters: EngineCounters,
    /// The state of each partition seen, in first-seen order: the Kafka
    /// runtime's engine holds one, found on the fast path of
    /// [`Engine::slot`].
    parts: Vec<PartitionState>,
    /// Partition → index in `parts` (`u32::MAX`: not seen), allocated when
    /// a second partition appears (replay), so an engine of one partition
    /// pays nothing for it.
    slot_of: Vec<u32>,
    scratch: Scratch,
    /// Granted-interval starts restored from changelog snapshots of
    /// visitors whose consent is not loaded yet (restore runs before the
    /// consent topic is read): merged into the visitor's state by its first
    /// consent record, then removed. Empty outside a restore.
    restored_since: AHashMap<SmallStr, (i64, PriorDenial)>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(config: Arc<EngineConfig>, models: Arc<ModelSet>) -> Self {
        let n_out = config.outcomes.len();
        let n_maps = config.action_maps.len();
        Self {
            counters: EngineCounters {
                outcomes_achieved: vec![0; n_out],
                offers_by_map: vec![0; n_maps],
                suppressed_by_cap: vec![0; n_maps],
                suppressed_by_purpose: vec![0; n_maps],
                ..EngineCounters::default()
            },
            config,
            models,
            visitors: AHashMap::new(),
            parts: Vec::new(),
            slot_of: Vec::new(),
            scratch: Scratch::default(),
            restored_since: AHashMap::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<EngineConfig> {
        &self.config
    }

    /// Swaps the models (hot reload). Takes effect from the next event.
    pub fn set_models(&mut self, models: Arc<ModelSet>) {
        self.models = models;
    }

    /// The models in use.
    pub fn models(&self) -> &Arc<ModelSet> {
        &self.models
    }

    /// Counters, with gauges up to date.
    pub fn counters(&self) -> &EngineCounters {
        &self.counters
    }

    /// Consumes one visitor-event record. `key` is the Kafka key, if any.
    /// `now_ms` is the decision time for offers (`None`: the event time).
    pub fn process_event(
        &mut self,
        key: Option<&[u8]>,
        bytes: &[u8],
        origin: &Origin,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        self.counters.events_consumed += 1;
        // The decoded event stays where `decode_event` returned it and is
        // used by reference: it is large (hundreds of bytes), and moving it
        // out of the `Result` would copy it on every event.
        let decoded = decode_event(bytes, self.config.max_record_bytes);
        let key_error = match &decoded {
            Ok(e) => check_key(key, &e.visitor_id).err(),
            Err(_) => None,
        };
        let event = match (&decoded, key_error) {
            (Ok(e), None) => e,
            (_, Some(err)) => return self.dead_letter_event(err, bytes, origin, sink),
            (Err(_), None) => {
                if let Err(err) = decoded {
                    self.dead_letter_event(err, bytes, origin, sink);
                }
                return;
            }
        };
        self.counters.events_by_type[event.kind.index()] += 1;
        // The visitor's partition, once per event (no hashing with one).
        let part = self.visitor_slot(&event.visitor_id);
        self.advance_watermark(part, event.time.epoch_ms, sink);
        self.gate_event(part, event, bytes, now_ms, sink);
        self.counters.visitors = self.visitors.len() as u64;
    }

    fn dead_letter_event(
        &mut self,
        err: DecodeError,
        bytes: &[u8],
        origin: &Origin,
        sink: &mut impl EngineSink,
    ) {
        self.counters.events_dead_lettered[reason_index(err.reason)] += 1;
        sink.dead_letter(DeadLetter {
            reason: err.reason,
            error: err.message,
            payload: bytes,
            origin,
        });
    }

    /// Consumes one consent record. `value == None` is a Kafka tombstone
    /// (erasure) dated `record_time_ms`.
    pub fn process_consent(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        record_time_ms: i64,
        origin: &Origin,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        self.counters.consent_consumed += 1;
        match decode_consent(key, value, record_time_ms, self.config.max_record_bytes) {
            Ok(update) => {
                self.apply_consent(update, now_ms, sink);
                self.counters.visitors = self.visitors.len() as u64;
            }
            Err(err) => {
                self.counters.consent_dead_lettered[reason_index(err.reason)] += 1;
                sink.dead_letter(DeadLetter {
                    reason: err.reason,
                    error: err.message,
                    payload: value.unwrap_or_default(),
                    origin,
                });
            }
        }
    }

    /// End of input (replay, training): events still waiting for consent
    /// can no longer get it and are dropped as expired.
    pub fn finish(&mut self, sink: &mut impl EngineSink) {
        let partitions = self.config.partitions;
        // (partition, events expired, visitor left holding nothing)
        let mut expired: Vec<(u32, u64, Option<SmallStr>)> = Vec::new();
        for (visitor, entry) in self.visitors.iter_mut() {
            if let Some(a) = entry.activity.as_deref_mut() {
                if !a.buffer.is_empty() {
                    let n = a.buffer.len() as u64;
                    a.buffer.clear();
                    entry.tidy();
                    sink.state_changed(visitor.as_str());
                    let empty = entry.consent.is_none()
                        && !entry.has_state()
                        && !entry.last_event_ms.is_some();
                    expired.push((
                        partition_of_u32(visitor.as_bytes(), partitions),
                        n,
                        empty.then(|| visitor.clone()),
                    ));
                }
            }
        }
        for (partition, n, empty) in expired {
            let slot = self.slot(partition);
            let ps = &mut self.parts[slot];
            ps.buffered -= n;
            ps.idle_recheck.extend(empty);
            self.counters.events_dropped[DropReason::PreConsentTtl as usize] += n;
            self.counters.buffered_events -= n;
        }
        for ps in &mut self.parts {
            ps.ttl_queue.clear();
        }
        self.counters.visitors = self.visitors.len() as u64;
    }

    /// The changelog value of a visitor: `None` means tombstone.
    pub fn snapshot(&self, visitor_id: &str) -> Option<Vec<u8>> {
        let snap = self.visitor_snapshot(visitor_id)?;
        serde_json::to_vec(&snap).ok()
    }

    /// The changelog form of a visitor, including a granted-interval start
    /// restored but not yet merged into consent (so writing the visitor
    /// before its consent is loaded does not lose it).
    fn visitor_snapshot(&self, visitor_id: &str) -> Option<VisitorSnapshot> {
        let entry = self.visitors.get(visitor_id.as_bytes());
        let mut snap = entry.and_then(VisitorEntry::snapshot);
        if entry.is_none_or(|e| e.consent.is_none()) {
            if let Some(&(since, prior)) = self.restored_since.get(visitor_id.as_bytes()) {
                let s = snap.get_or_insert_with(|| VisitorSnapshot {
                    v: 1,
                    session: None,
                    buffer: Vec::new(),
                    last_offer_ms: None,
                    last_event_ms: entry.and_then(|e| e.last_event_ms.get()),
                    tracking_since_ms: None,
                    prior_denial: PriorDenial::NoConsent,
                });
                s.tracking_since_ms = Some(since);
                s.prior_denial = prior;
            }
        }
        snap
    }

    /// Restores a visitor's changelog state (`None`: tombstone). Consent is
    /// not part of it and is left as it is, except the granted-interval
    /// start the snapshot carries: merged into consent (the later start
    /// wins), or kept until the visitor's first consent record is loaded or
    /// applied and merged then.
    pub fn restore(&mut self, visitor_id: &str, value: Option<&[u8]>) -> Result<(), EngineError> {
        let snapshot: Option<VisitorSnapshot> = match value {
            Some(v) => {
                Some(serde_json::from_slice(v).map_err(|e| EngineError::Snapshot(e.to_string()))?)
            }
            None => None,
        };
        let slot = self.visitor_slot(visitor_id);
        let ps = &mut self.parts[slot];
        let entry = self.visitors.entry(visitor_id.into()).or_default();
        let since = snapshot
            .as_ref()
            .and_then(|s| s.tracking_since_ms.map(|t| (t, s.prior_denial)));
        match (&mut entry.consent, since) {
            (Some(c), Some((t, prior))) => c.merge_restored_since(t, prior),
            (Some(_), None) => {}
            // The changelog is last-write-wins: a later snapshot replaces.
            (None, Some(since)) => {
                self.restored_since.insert(visitor_id.into(), since);
            }
            (None, None) => {
                self.restored_since.remove(visitor_id.as_bytes());
            }
        }
        ps.buffered -= entry.buffer().len() as u64;
        self.counters.buffered_events -= entry.buffer().len() as u64;
        self.counters.active_sessions -= u64::from(entry.session().is_some());
        entry.activity = None;
        entry.last_event_ms = MaybeMs::NONE;
        if let Some(s) = snapshot {
            for b in &s.buffer {
                ps.ttl_queue
                    .push_back((b.time_ms + self.config.buffer_ttl_ms, visitor_id.into()));
            }
            ps.buffered += s.buffer.len() as u64;
            self.counters.buffered_events += s.buffer.len() as u64;
            self.counters.active_sessions += u64::from(s.session.is_some());
            if let Some(last) = s.last_event_ms {
                ps.watermark_ms = ps.watermark_ms.max(last);
            }
            let mut activity = Box::new(Activity {
                session: s.session.map(|mut sess| {
                    sess.serial = ps.next_session_serial;
                    ps.next_session_serial += 1;
                    sess
                }),
                buffer: s.buffer.into(),
                last_offer_ms: s.last_offer_ms.into(),
                idle_queued: false,
            });
            if let Some(last) = s.last_event_ms {
                if activity.may_go_idle() {
                    activity.idle_queued = true;
                    ps.idle_queue.push(IdleItem {
                        time: last,
                        visitor: visitor_id.into(),
                    });
                }
            }
            entry.activity = Some(activity);
            entry.last_event_ms = s.last_event_ms.into();
            entry.tidy();
        }
        if entry.consent.is_none() && !entry.has_state() {
            self.visitors.remove(visitor_id.as_bytes());
        }
        self.counters.visitors = self.visitors.len() as u64;
        Ok(())
    }

    /// Loads a consent record into state *without* side effects (no session
    /// clearing, no buffer release, no dead letters): used when rebuilding
    /// consent from the compacted topic for records whose effects are
    /// already reflected in restored changelog state. The consent state it
    /// leaves is the one applying the same records would leave (one
    /// transition, [`ConsentState::after`]), merged with a granted-interval
    /// start restored from the changelog. Returns whether the record was
    /// readable.
    pub fn load_consent(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        record_time_ms: i64,
    ) -> bool {
        let Ok(update) = decode_consent(key, value, record_time_ms, self.config.max_record_bytes)
        else {
            return false;
        };
        let visitor = update.visitor_id.as_ref();
        let entry = match self.visitors.get_mut(visitor.as_bytes()) {
            Some(e) => e,
            None => self.visitors.entry(visitor.into()).or_default(),
        };
        let no_record_tracks = self.config.consent_mode == ConsentMode::OptOut
            && self.config.opt_out_purposes.grants(Purpose::Tracking);
        let current = entry.consent;
        if let Some(mut next) =
            ConsentState::after(current, &update.change, update.time_ms, no_record_tracks)
        {
            if current.is_none() {
                take_restored_since(&mut self.restored_since, visitor, &mut next);
            }
            entry.consent = Some(next);
        }
        self.counters.visitors = self.visitors.len() as u64;
        true
    }

    /// What is held about a visitor (data-subject access): consent and the
    /// changelog snapshot.
    pub fn visitor_view(
        &self,
        visitor_id: &str,
    ) -> Option<(Option<ConsentState>, Option<VisitorSnapshot>)> {
        self.visitors
            .get(visitor_id.as_bytes())
            .map(|e| (e.consent, self.visitor_snapshot(visitor_id)))
    }

    /// Visitor ids currently held (for tests and access requests).
    pub fn visitor_ids(&self) -> impl Iterator<Item = &str> {
        self.visitors.keys().map(SmallStr::as_str)
    }

    // ------------------------------------------------------------ internals

    fn drop_event(&mut self, reason: DropReason) {
        self.counters.events_dropped[reason as usize] += 1;
    }

    /// The partition of a visitor among [`EngineConfig::partitions`]:
    /// murmur2 of the id, as Kafka's producers place it; no hashing with
    /// one partition.
    #[inline]
    fn visitor_slot(&mut self, visitor: &str) -> usize {
        let partition = partition_of_u32(visitor.as_bytes(), self.config.partitions);
        self.slot(partition)
    }

    /// The index in `parts` of a partition's state, created on first use.
    #[inline]
    fn slot(&mut self, partition: u32) -> usize {
        match self.parts.first() {
            Some(first) if first.partition == partition => 0,
            _ => self.slot_slow(partition),
        }
    }

    /// The lookup behind [`Engine::slot`]: every event of all but the first
    /// partition in a replay comes here (an index, no hashing).
    fn slot_slow(&mut self, partition: u32) -> usize {
        let at = partition as usize;
        if self.slot_of.len() <= at {
            let len = (self.config.partitions as usize).max(at + 1);
            self.slot_of.resize(len, u32::MAX);
            for (i, ps) in self.parts.iter().enumerate() {
                self.slot_of[ps.partition as usize] = i as u32;
            }
        }
        match self.slot_of[at] {
            u32::MAX => {
                self.slot_of[at] = self.parts.len() as u32;
                self.parts.push(PartitionState::new(partition));
                self.parts.len() - 1
            }
            i => i as usize,
        }
    }

    /// Moves partition `part`'s watermark to `t` if later, then expires
    /// that partition's waiting events past their TTL and, every quarter
    /// of the idle expiry, sweeps its idle visitors. Only this partition's
    /// visitors are touched, by this partition's clock.
    fn advance_watermark(&mut self, part: usize, t: i64, sink: &mut impl EngineSink) {
        let ps = &mut self.parts[part];
        if t <= ps.watermark_ms {
            return;
        }
        ps.watermark_ms = t;
        let ttl = self.config.buffer_ttl_ms;
        while let Some((deadline, _)) = ps.ttl_queue.front() {
            if *deadline >= t {
                break;
            }
            let Some((_, visitor)) = ps.ttl_queue.pop_front() else {
                break;
            };
            if let Some(entry) = self.visitors.get_mut(visitor.as_bytes()) {
                let expired = match entry.activity.as_deref_mut() {
                    Some(a) => {
                        let before = a.buffer.len();
                        a.buffer.retain(|b| b.time_ms + ttl >= t);
                        (before - a.buffer.len()) as u64
                    }
                    None => 0,
                };
                if expired > 0 {
                    self.counters.events_dropped[DropReason::PreConsentTtl as usize] += expired;
                    self.counters.buffered_events -= expired;
                    ps.buffered -= expired;
                    entry.tidy();
                    sink.state_changed(visitor.as_str());
                    if entry.consent.is_none() && !entry.has_state() {
                        self.visitors.remove(visitor.as_bytes());
                    }
                }
            }
        }
        if t >= ps.next_idle_sweep_ms {
            let first = ps.next_idle_sweep_ms == i64::MIN;
            ps.next_idle_sweep_ms = t + (self.config.visitor_idle_ms / 4).max(1000);
            if !first {
                self.sweep_idle(part, t, sink);
            }
        }
    }

    /// Forgets activity of visitors idle longer than the expiry, keeping
    /// consent (which must outlive sessions to gate future events): every
    /// visitor whose latest event is older than `now - visitor_idle`, whose
    /// buffer is empty and who holds a session or an offer time.
    ///
    /// Rather than scanning the whole map (a sweep runs every quarter of the
    /// expiry, and the map holds every visitor with consent), the sweep
    /// walks `idle_queue` up to the limit. That finds exactly the visitors a
    /// scan would, by this invariant: every visitor that holds a session or
    /// an offer time and has a latest event time has an item in the queue
    /// whose time is at most that latest event time. Processing an event
    /// queues its visitor when not already queued (`Activity::idle_queued`)
    /// and only ever raises the latest event time; a visitor found active
    /// again here is queued again at its latest event time; one found stale
    /// but with waiting events is looked at again at the next sweep, as the
    /// scan would; one found holding nothing any more leaves the queue and
    /// is queued again by its next session. Items may outlive their visitor
    /// or be duplicated (an activity freed and created again): such items
    /// are skipped or re-checked, which is harmless.
    fn sweep_idle(&mut self, part: usize, now: i64, sink: &mut impl EngineSink) {
        let limit = now - self.config.visitor_idle_ms;
        let ps = &mut self.parts[part];
        let mut again = Vec::new();
        while ps.idle_queue.peek().is_some_and(|i| i.time < limit) {
            let Some(item) = ps.idle_queue.pop() else {
                break;
            };
            let Some(entry) = self.visitors.get_mut(item.visitor.as_bytes()) else {
                continue;
            };
            let last = entry.last_event_ms.get();
            let Some(a) = entry.activity.as_deref_mut() else {
                continue;
            };
            match last {
                Some(l) if a.may_go_idle() && l < limit => {
                    if !a.buffer.is_empty() {
                        again.push(item);
                        continue;
                    }
                    self.counters.active_sessions -= u64::from(a.session.is_some());
                    a.session = None;
                    a.last_offer_ms = MaybeMs::NONE;
                    a.idle_queued = false;
                    entry.last_event_ms = MaybeMs::NONE;
                    entry.tidy();
                    sink.state_changed(item.visitor.as_str());
                    if entry.consent.is_none() && !entry.has_state() {
                        self.visitors.remove(item.visitor.as_bytes());
                    }
                }
                // Active since it was queued: queued again at its latest
                // event time (not before the limit, so not seen again now).
                Some(l) if a.may_go_idle() => again.push(IdleItem {
                    time: l,
                    visitor: item.visitor,
                }),
                _ => a.idle_queued = false,
            }
        }
        ps.idle_queue.extend(again);
        for visitor in std::mem::take(&mut ps.idle_recheck) {
            if self.visitors.get(visitor.as_bytes()).is_some_and(|e| {
                e.consent.is_none() && !e.has_state() && !e.last_event_ms.is_some()
            }) {
                self.visitors.remove(visitor.as_bytes());
            }
        }
    }

    fn gate_event(
        &mut self,
        part: usize,
        event: &Event<'_>,
        bytes: &[u8],
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        // One hash lookup per event: the entry found here is the one the
        // event is applied to (inserted only for a visitor not yet held).
        // Ids that fit inline are looked up as whole keys, which compare
        // without a `memcmp` call.
        let entry = match SmallStr::inline(&event.visitor_id) {
            Some(key) => self.visitors.get_mut(&key),
            None => self.visitors.get_mut(event.visitor_id.as_bytes()),
        };
        let consent = entry.as_ref().and_then(|e| e.consent);
        let purposes = match consent {
            Some(c) if c.erased => return self.drop_event(DropReason::Erased),
            // No consent is retroactive: an event sent before the current
            // granted interval began is dropped for the state before it.
            Some(c) if c.purposes.grants(Purpose::Tracking) => {
                if event.time.epoch_ms < c.tracking_since_ms {
                    return self.drop_event(c.prior_denial.into());
                }
                c.purposes
            }
            Some(c) if c.ever_granted => return self.drop_event(DropReason::Revoked),
            Some(_) => return self.drop_event(DropReason::NoConsent),
            None => match self.config.consent_mode {
                ConsentMode::OptOut if self.config.opt_out_purposes.grants(Purpose::Tracking) => {
                    self.config.opt_out_purposes
                }
                // Defaults without `tracking` track no one without a record.
                ConsentMode::OptOut => return self.drop_event(DropReason::NoConsent),
                ConsentMode::OptIn => return self.buffer_event(part, event, bytes, sink),
            },
        };
        let entry = match entry {
            Some(e) => e,
            None => self
                .visitors
                .entry(event.visitor_id.as_ref().into())
                .or_default(),
        };
        EventCtx {
            config: &self.config,
            models: &self.models,
            counters: &mut self.counters,
            scratch: &mut self.scratch,
            part: &mut self.parts[part],
        }
        .apply(entry, event, purposes, now_ms, sink);
    }

    fn buffer_event(
        &mut self,
        part: usize,
        event: &Event<'_>,
        bytes: &[u8],
        sink: &mut impl EngineSink,
    ) {
        let cfg = &self.config;
        let ps = &mut self.parts[part];
        let t = event.time.epoch_ms;
        let entry = match self.visitors.get_mut(event.visitor_id.as_bytes()) {
            Some(e) => e,
            None => self
                .visitors
                .entry(event.visitor_id.as_ref().into())
                .or_default(),
        };
        let act = entry.activity_mut();
        // The visitor's own later events age its buffer too (event time).
        let before = act.buffer.len();
        act.buffer.retain(|b| b.time_ms + cfg.buffer_ttl_ms >= t);
        let expired = (before - act.buffer.len()) as u64;
        self.counters.events_dropped[DropReason::PreConsentTtl as usize] += expired;
        self.counters.buffered_events -= expired;
        ps.buffered -= expired;
        // The total cap is per partition: the same whether this engine
        // holds one partition or all of them.
        if act.buffer.len() >= cfg.buffer_max_per_visitor
            || ps.buffered >= cfg.buffer_max_total as u64
        {
            self.counters.events_dropped[DropReason::PreConsentOverflow as usize] += 1;
            entry.tidy();
            if entry.consent.is_none() && !entry.has_state() && !entry.last_event_ms.is_some() {
                self.visitors.remove(event.visitor_id.as_bytes());
            }
            return;
        }
        act.buffer.push(BufferedEvent {
            time_ms: t,
            bytes: bytes.to_vec(),
        });
        self.counters.buffered_events += 1;
        ps.buffered += 1;
        ps.ttl_queue
            .push_back((t + cfg.buffer_ttl_ms, event.visitor_id.as_ref().into()));
        sink.state_changed(&event.visitor_id);
    }

    fn apply_consent(
        &mut self,
        update: ConsentUpdate<'_>,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        let visitor = update.visitor_id.as_ref();
        let part = self.visitor_slot(visitor);
        let entry = match self.visitors.get_mut(visitor.as_bytes()) {
            Some(e) => e,
            None => self.visitors.entry(visitor.into()).or_default(),
        };
        // No record yet: in opt-out mode the defaults applied.
        let no_record_tracks = self.config.consent_mode == ConsentMode::OptOut
            && self.config.opt_out_purposes.grants(Purpose::Tracking);
        let current = entry.consent;
        let Some(mut next) =
            ConsentState::after(current, &update.change, update.time_ms, no_record_tracks)
        else {
            self.counters.consent_stale += 1;
            return;
        };
        if current.is_none() {
            take_restored_since(&mut self.restored_since, visitor, &mut next);
        }
        match update.change {
            ConsentChange::Erase => {
                let buffered = entry.buffer().len() as u64;
                self.counters.events_dropped[DropReason::Erased as usize] += buffered;
                self.counters.buffered_events -= buffered;
                self.parts[part].buffered -= buffered;
                self.counters.active_sessions -= u64::from(entry.session().is_some());
                *entry = VisitorEntry {
                    consent: Some(next),
                    ..VisitorEntry::default()
                };
                self.counters.erasures += 1;
                self.counters.consent_applied += 1;
                sink.state_changed(visitor);
            }
            ConsentChange::State(purposes) => {
                let was_tracking = current.map_or(no_record_tracks, |c| c.tracking());
                let tracking = next.tracking();
                // A new granted interval (after a denial, revocation or
                // erasure) must reach the changelog: compaction may remove
                // the record that denied before it.
                let since_changed = entry.tracking_since() != next.bound();
                entry.consent = Some(next);
                self.counters.consent_applied += 1;
                let buffered = entry
                    .activity
                    .as_deref_mut()
                    .map(|a| std::mem::take(&mut a.buffer))
                    .unwrap_or_default();
                entry.tidy();
                self.counters.buffered_events -= buffered.len() as u64;
                self.parts[part].buffered -= buffered.len() as u64;
                if tracking {
                    let changed = !buffered.is_empty() || since_changed;
                    for b in &buffered {
                        if b.time_ms + self.config.buffer_ttl_ms < update.time_ms {
                            self.drop_event(DropReason::PreConsentTtl);
                            continue;
                        }
                        // Buffered events precede the first record, so this
                        // bound is `i64::MIN` unless one was restored.
                        if b.time_ms < next.tracking_since_ms {
                            self.drop_event(next.prior_denial.into());
                            continue;
                        }
                        // Buffered bytes were validated when they arrived.
                        if let Ok(event) = decode_event(&b.bytes, usize::MAX) {
                            self.apply_event(part, &event, purposes, now_ms, sink);
                        }
                    }
                    if changed {
                        sink.state_changed(visitor);
                    }
                } else {
                    self.counters.events_dropped[DropReason::NoConsent as usize] +=
                        buffered.len() as u64;
                    if was_tracking {
                        self.counters.revocations += 1;
                        // Revocation stops processing at once: the session
                        // (features, probabilities, caps) is forgotten.
                        if let Some(a) = entry.activity.as_deref_mut() {
                            self.counters.active_sessions -= u64::from(a.session.is_some());
                            a.session = None;
                        }
                        entry.tidy();
                    }
                    if was_tracking || !buffered.is_empty() || since_changed {
                        sink.state_changed(visitor);
                    }
                }
            }
        }
        self.counters.visitors = self.visitors.len() as u64;
    }

    /// Processes an event of a consenting visitor (looked up, or inserted).
    fn apply_event(
        &mut self,
        part: usize,
        event: &Event<'_>,
        purposes: PurposeSet,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        let entry = match self.visitors.get_mut(event.visitor_id.as_bytes()) {
            Some(e) => e,
            None => self
                .visitors
                .entry(event.visitor_id.as_ref().into())
                .or_default(),
        };
        EventCtx {
            config: &self.config,
            models: &self.models,
            counters: &mut self.counters,
            scratch: &mut self.scratch,
            part: &mut self.parts[part],
        }
        .apply(entry, event, purposes, now_ms, sink);
    }
}

/// What processing one event touches besides the visitor's own entry,
/// borrowed field by field from the [`Engine`]: the entry is borrowed from
/// the visitor map at the same time, so an event costs one hash lookup.
struct EventCtx<'a> {
    config: &'a EngineConfig,
    models: &'a ModelSet,
    counters: &'a mut EngineCounters,
    scratch: &'a mut Scratch,
    /// The visitor's partition: session serials and the idle queue.
    part: &'a mut PartitionState,
}

impl EventCtx<'_> {
    /// Processes an event of a consenting visitor: session, features,
    /// outcomes, scores, action maps.
    fn apply(
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
                Some(id) => SmallStr::new(id),
                None => auto_session_id(stable_hash_parts(
                    3,
                    &[visitor.as_bytes(), &t.to_le_bytes()],
                )),
            };
            // A returning visitor's new session reuses the accumulators'
            // allocation.
            let acc = match act.session.take() {
                Some(old) => {
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
                seen_events: InlineVec::new(),
                achieved: 0,
                last_probability: Slots::from_elem(f32::NAN, cfg.outcomes.len()),
                current_path: SmallStr::EMPTY,
                traffic_source: None,
                offers_total: 0,
                offers_per_map: Slots::from_elem(0, cfg.action_maps.len()),
            });
            self.part.next_session_serial += 1;
        }
        let Some(session) = act.session.as_mut() else {
            return;
        };
        let id_hash = stable_hash(event.event_id.as_bytes());
        if session.seen_events.contains(&id_hash) {
            self.counters.events_dropped[DropReason::Duplicate as usize] += 1;
            return;
        }
        if session.seen_events.len() >= cfg.max_event_ids_per_session {
            session.seen_events.remove_first();
        }
        session.seen_events.push(id_hash);
        self.counters.events_processed += 1;
        let last = entry.last_event_ms.get().map_or(t, |l| l.max(t));
        entry.last_event_ms = MaybeMs::new(Some(last));
        if !act.idle_queued {
            act.idle_queued = true;
            self.part.idle_queue.push(IdleItem {
                time: last,
                visitor: SmallStr::new(visitor),
            });
        }
        session.last_ms = session.last_ms.max(t);
        session.events += 1;
        // The URL path feeds features, the current page and outcome
        // patterns: extracted once.
        let path = event.page.as_ref().map(|p| url_path(&p.url));
        let info = path.map(|p| self.scratch.paths.info(&cfg.features, p));
        cfg.features
            .observe_with_info(&mut session.acc, event, info);
        if let Some(path) = path {
            session.current_path.set(path);
        }
        if session.traffic_source.is_none() {
            if let Some(src) = event.traffic.as_ref().and_then(|t| t.source.as_ref()) {
                session.traffic_source = Some(SmallStr::ascii_lowercase(src));
            }
        }
        for (i, outcome) in cfg.outcomes.iter().enumerate() {
            if session.achieved & (1 << i) == 0 && achieves_at(outcome, event, path) {
                session.achieved |= 1 << i;
                self.counters.outcomes_achieved[i] += 1;
                sink.achieved(session.serial, i);
            }
        }

        let all_achieved = (0..cfg.outcomes.len()).all(|i| session.achieved & (1 << i) != 0);
        let scratch = &mut *self.scratch;
        scratch.probabilities.clear();
        scratch.probabilities.resize(cfg.outcomes.len(), None);
        if !all_achieved {
            cfg.features.compute_into(
                &session.acc,
                session.start_ms,
                t,
                event.time.local_ms(),
                &mut scratch.features,
            );
            self.models.probabilities_sparse(
                scratch.features.values(),
                scratch.features.nonzero(),
                |i| session.achieved & (1 << i) != 0,
                &mut scratch.probabilities,
            );
            let wants_examples = sink.wants_examples();
            let wants_scores = sink.wants_scores();
            let mut event_time = None;
            for (i, outcome) in cfg.outcomes.iter().enumerate() {
                if session.achieved & (1 << i) != 0 {
                    continue;
                }
                if wants_examples {
                    sink.example(session.serial, i, scratch.features.values());
                }
                let (Some(model), Some(p)) = (self.models.get(i), scratch.probabilities[i]) else {
                    continue;
                };
                self.counters.scores += 1;
                sink.probability(i, p);
                if wants_scores {
                    let time = event_time.get_or_insert_with(|| format_rfc3339_ms(t));
                    sink.score(&OutcomeScore {
                        event_id: &event.event_id,
                        visitor_id: visitor,
                        session_id: session.id.as_str(),
                        outcome: &outcome.name,
                        probability: p,
                        model_version: &model.version,
                        event_time: time,
                    });
                }
            }
        }

        // Action maps, highest priority first: the first that fires and
        // passes consent and caps makes the only offer for this event.
        for (mi, map) in cfg.action_maps.iter().enumerate() {
            let Some(p) = scratch.probabilities[map.outcome] else {
                continue;
            };
            let prev = session.last_probability[map.outcome];
            if !fires(map, p, prev) || !conditions_hold(map, session) {
                continue;
            }
            if !purposes.grants(map.purpose) {
                self.counters.suppressed_by_purpose[mi] += 1;
                continue;
            }
            let capped = session.offers_per_map[mi] >= map.max_per_session
                || session.offers_total >= cfg.max_offers_per_session
                || act
                    .last_offer_ms
                    .get()
                    .is_some_and(|last| t - last < cfg.min_offer_gap_ms);
            if capped {
                self.counters.suppressed_by_cap[mi] += 1;
                continue;
            }
            session.offers_per_map[mi] += 1;
            session.offers_total += 1;
            act.last_offer_ms = MaybeMs::new(Some(t));
            self.counters.offers_by_map[mi] += 1;
            let Some(model) = self.models.get(map.outcome) else {
                continue;
            };
            let session_id = session.id.as_str();
            let parts: [&[u8]; 4] = [
                visitor.as_bytes(),
                session_id.as_bytes(),
                map.name.as_bytes(),
                event.event_id.as_bytes(),
            ];
            let offer_id = hex_id(stable_hash_parts(1, &parts), stable_hash_parts(2, &parts));
            sink.offer(Offer {
                offer_id,
                visitor_id: visitor.to_owned(),
                session_id: session_id.to_owned(),
                action_map: map.name.clone(),
                action: map.action.clone(),
                purpose: map.purpose,
                outcome: cfg.outcomes[map.outcome].name.clone(),
                probability: p,
                model_version: model.version.clone(),
                trigger_event_id: event.event_id.to_string(),
                event_time: format_rfc3339_ms(t),
                decided_at: format_rfc3339_ms(now_ms.unwrap_or(t)),
                explanation: model.explain(scratch.features.values(), cfg.features.names(), 3),
            });
            break;
        }
        for (i, p) in scratch.probabilities.iter().enumerate() {
            if let Some(p) = p {
                session.last_probability[i] = *p as f32;
            }
        }
        sink.state_changed(visitor);
    }
}

/// The clocks and bounds of one Kafka partition within an engine. They
/// were engine-wide once, which made a visitor's fate depend on the other
/// visitors sharing its engine (one engine per partition in `run`, one for
/// all in `replay`); per partition, both deployments agree for the same
/// per-partition input order.
struct PartitionState {
    /// Which partition.
    partition: u32,
    /// Greatest event time seen in the partition: drives its TTL and idle
    /// expiry.
    watermark_ms: i64,
    /// `(deadline, visitor)` in insertion order, for pre-consent TTL sweeps.
    ttl_queue: VecDeque<(i64, SmallStr)>,
    /// Visitors that may go idle, earliest first (see [`Engine::sweep_idle`]).
    idle_queue: BinaryHeap<IdleItem>,
    /// Visitors left holding nothing by [`Engine::finish`]: removed at the
    /// partition's next idle sweep, as a full scan of the map would.
    idle_recheck: Vec<SmallStr>,
    next_idle_sweep_ms: i64,
    /// Events of the partition waiting for consent, checked against
    /// [`EngineConfig::buffer_max_total`].
    buffered: u64,
    /// The next session's serial: the partition in the top bits (below
    /// [`crate::partitioning::MAX_PARTITIONS`] = 2^20), then a count of the
    /// partition's sessions, so serials are unique across the engines of
    /// one run and do not depend on how partitions are grouped. With one
    /// partition they are 0, 1, 2, …
    next_session_serial: u64,
}

impl PartitionState {
    fn new(partition: u32) -> Self {
        Self {
            partition,
            watermark_ms: i64::MIN,
            ttl_queue: VecDeque::new(),
            idle_queue: BinaryHeap::new(),
            idle_recheck: Vec::new(),
            next_idle_sweep_ms: i64::MIN,
            buffered: 0,
            next_session_serial: u64::from(partition) << 44,
        }
    }
}

/// A visitor in the idle queue: `time` is at most its latest event time.
/// Ordered by time, reversed, so that `BinaryHeap` pops the earliest.
struct IdleItem {
    time: i64,
    visitor: SmallStr,
}

impl PartialEq for IdleItem {
    fn eq(&self, other: &Self) -> bool {
        self.time == other.time
    }
}

impl Eq for IdleItem {}

impl PartialOrd for IdleItem {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for IdleItem {
    fn cmp(&self, other: &Self) -> Ordering {
        other.time.cmp(&self.time)
    }
}

/// Merges (and forgets) the granted-interval start restored for a visitor
/// into the state its first consent record produced.
fn take_restored_since(
    restored: &mut AHashMap<SmallStr, (i64, PriorDenial)>,
    visitor: &str,
    next: &mut ConsentState,
) {
    if restored.is_empty() {
        return;
    }
    if let Some((since, prior)) = restored.remove(visitor.as_bytes()) {
        next.merge_restored_since(since, prior);
        if restored.is_empty() {
            // Restores are rare: give the table's memory back.
            restored.shrink_to_fit();
        }
    }
}

/// `format!("{a:016x}{b:016x}")`, written directly.
fn hex_id(a: u64, b: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for v in [a, b] {
        for k in (0..16).rev() {
            out.push(char::from(HEX[((v >> (4 * k)) & 0xf) as usize]));
        }
    }
    out
}

/// The derived id of a session without an explicit `session_id`:
/// `auto-` and 16 lower-case hex digits (`format!("auto-{hash:016x}")`,
/// built in place: 21 bytes, so it is stored inline).
fn auto_session_id(hash: u64) -> SmallStr {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut buf = *b"auto-0000000000000000";
    for (i, d) in buf[5..].iter_mut().enumerate() {
        *d = HEX[((hash >> (60 - 4 * i)) & 0xf) as usize];
    }
    SmallStr::new(std::str::from_utf8(&buf).unwrap_or_default())
}

fn reason_index(reason: DeadLetterReason) -> usize {
    DeadLetterReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}

fn fires(map: &ActionMap, p: f64, prev: f32) -> bool {
    match map.trigger {
        Trigger::AtOrAbove { threshold } => p >= threshold,
        Trigger::FallsTo { threshold } => {
            !prev.is_nan() && f64::from(prev) > threshold && p <= threshold
        }
    }
}

fn conditions_hold(map: &ActionMap, session: &Session) -> bool {
    if session.events < map.min_events {
        return false;
    }
    if let Some(p) = &map.url_pattern {
        if !p.matches(session.current_path.as_str()) {
            return false;
        }
    }
    if let Some(devices) = &map.device_categories {
        if !session.acc.device.is_some_and(|d| devices.contains(&d)) {
            return false;
        }
    }
    if let Some(sources) = &map.traffic_sources {
        if !session
            .traffic_source
            .as_ref()
            .is_some_and(|s| sources.iter().any(|x| s == x.as_str()))
        {
            return false;
        }
    }
    true
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
    let _ = EventKind::ALL;
    true
}

/// A serializable summary of counters with names instead of indices.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct EngineSummary {
    /// Event records consumed.
    pub events_consumed: u64,
    /// Processed events.
    pub events_processed: u64,
    /// Dropped events in total.
    pub events_dropped: u64,
    /// Dropped events by reason.
    pub dropped_by_reason: std::collections::BTreeMap<String, u64>,
    /// Dead-lettered event records.
    pub events_dead_lettered: u64,
    /// Dead letters (events and consent) by reason.
    pub dead_letters_by_reason: std::collections::BTreeMap<String, u64>,
    /// Events still waiting for consent.
    pub events_buffered: u64,
    /// Whether consumed = processed + dropped + dead-lettered + buffered.
    pub reconciles: bool,
    /// Valid events by type.
    pub events_by_type: std::collections::BTreeMap<String, u64>,
    /// Consent records consumed.
    pub consent_consumed: u64,
    /// Consent records applied.
    pub consent_applied: u64,
    /// Stale consent records ignored.
    pub consent_stale: u64,
    /// Consent records dead-lettered.
    pub consent_dead_lettered: u64,
    /// Erasures.
    pub erasures: u64,
    /// Revocations.
    pub revocations: u64,
    /// Scores computed.
    pub scores: u64,
    /// Sessions achieving each outcome.
    pub outcomes_achieved: std::collections::BTreeMap<String, u64>,
    /// Offers per action map.
    pub offers_by_action_map: std::collections::BTreeMap<String, u64>,
    /// Offers in total.
    pub offers: u64,
    /// Suppressed by frequency caps, per action map.
    pub suppressed_by_cap: std::collections::BTreeMap<String, u64>,
    /// Suppressed for lack of purpose consent, per action map.
    pub suppressed_by_purpose: std::collections::BTreeMap<String, u64>,
}

impl EngineSummary {
    /// Summarises counters under a config.
    pub fn new(c: &EngineCounters, config: &EngineConfig) -> Self {
        let per_map = |v: &[u64]| {
            config
                .action_maps
                .iter()
                .zip(v)
                .map(|(m, n)| (m.name.clone(), *n))
                .collect()
        };
        let mut dead_letters_by_reason = std::collections::BTreeMap::new();
        for (i, r) in DeadLetterReason::ALL.iter().enumerate() {
            let n = c.events_dead_lettered[i] + c.consent_dead_lettered[i];
            if n > 0 {
                dead_letters_by_reason.insert(r.code().to_owned(), n);
            }
        }
        Self {
            events_consumed: c.events_consumed,
            events_processed: c.events_processed,
            events_dropped: c.dropped_total(),
            dropped_by_reason: DropReason::ALL
                .iter()
                .map(|r| (r.code().to_owned(), c.events_dropped[*r as usize]))
                .collect(),
            events_dead_lettered: c.dead_lettered_total(),
            dead_letters_by_reason,
            events_buffered: c.buffered_events,
            reconciles: c.reconciles(),
            events_by_type: EventKind::ALL
                .iter()
                .map(|k| (k.as_str().to_owned(), c.events_by_type[k.index()]))
                .collect(),
            consent_consumed: c.consent_consumed,
            consent_applied: c.consent_applied,
            consent_stale: c.consent_stale,
            consent_dead_lettered: c.consent_dead_lettered.iter().sum(),
            erasures: c.erasures,
            revocations: c.revocations,
            scores: c.scores,
            outcomes_achieved: config
                .outcomes
                .iter()
                .zip(&c.outcomes_achieved)
                .map(|(o, n)| (o.name.clone(), *n))
                .collect(),
            offers_by_action_map: per_map(&c.offers_by_map),
            offers: c.offers_by_map.iter().sum(),
            suppressed_by_cap: per_map(&c.suppressed_by_cap),
            suppressed_by_purpose: per_map(&c.suppressed_by_purpose),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_written_as_format_would() {
        for (a, b) in [
            (0, 0),
            (1, u64::MAX),
            (0x0123_4567_89ab_cdef, 0xfedc_ba98_7654_3210),
        ] {
            assert_eq!(hex_id(a, b), format!("{a:016x}{b:016x}"));
            assert_eq!(auto_session_id(a).as_str(), format!("auto-{a:016x}"));
        }
    }
}
