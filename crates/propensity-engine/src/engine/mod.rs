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
//!    ([`ConsentState::tracking_since_ms`](crate::visitor::ConsentState::tracking_since_ms)).
//!    So a lagging pipeline that
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
//!
//! This module is the façade: the [`Engine`] state, its constructor and
//! the record entry points, and the [`EngineSink`] the outputs go to. Each
//! job lives in its own child module, as further `impl Engine` blocks:
//! - `counters`: [`DropReason`], [`EngineCounters`], [`EngineSummary`];
//! - `partition`: the per-partition clocks and bounds, and which partition
//!   a visitor belongs to (invariant 5);
//! - `gate`: the consent gate, the pre-consent buffer and consent records
//!   (invariants 1 and 2);
//! - `expiry`: the watermark, TTL and idle expiry, the end of input;
//! - `session`: what an event does to its visitor's session and outcomes;
//! - `decide`: scores, triggers, conditions, caps and offers (invariant 4);
//! - `restore`: changelog snapshots, restore and consent loading;
//! - `feedback`: offer feedback and the contact policy it drives;
//! - `peaks`: the session peaks that `falls_to` offers are explained
//!   against.
//!
//! Invariant 3 is every module's: whichever decides an event's fate, or
//! takes it out of the buffer, counts it in exactly one bucket.
//!
//! Monitoring is counted beside the outputs and changes none of them: drift
//! counts ([`crate::drift`]) and resolved sessions
//! ([`crate::online_eval`]), which the caller reads and clears after each
//! commit ([`Engine::drift_counts`], [`Engine::online_eval`],
//! [`Engine::clear_monitoring_counts`]) and a model swap empties.

mod counters;
mod decide;
mod expiry;
mod feedback;
mod gate;
mod learning;
mod partition;
mod peaks;
mod restore;
mod session;

pub use counters::{
    ControlGroupResult, DropReason, EngineCounters, EngineSummary, FeedbackSummary,
};
pub use feedback::FeedbackCounters;
pub use session::achieves;

use std::sync::Arc;

use ahash::AHashMap;

use crate::drift::ModelDriftCounts;
use crate::online_eval::OutcomeEvalCounts;
use compact_str::CompactString;

use crate::config::EngineConfig;
use crate::model::ModelSet;
use crate::visitor::{PriorDenial, VisitorEntry};
use crate::wire::{
    check_key, decode_consent, decode_event, Conversion, DeadLetter, Decision, DecodeError, Event,
    Offer, Origin, OutcomeScore,
};

use counters::reason_index;
use partition::PartitionState;
use session::Scratch;

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
    /// Whether [`EngineSink::decision`] should be called.
    fn wants_decisions(&self) -> bool {
        false
    }
    /// An action map's trigger and conditions held on an event: what was
    /// decided (every decision, offered or not).
    fn decision(&mut self, _decision: &Decision<'_>) {}
    /// Whether [`EngineSink::conversion`] should be called.
    fn wants_conversions(&self) -> bool {
        false
    }
    /// A session achieved an outcome after offered or held-out decisions
    /// of a map of that outcome: one call per map and arm.
    fn conversion(&mut self, _conversion: &Conversion<'_>) {}
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
    /// An event passed the consent gate and deduplication and was folded
    /// into its session (`path`: its page's URL path). Training learns
    /// vocabularies here, so they come from consented events only.
    fn processed(&mut self, _event: &Event<'_>, _path: Option<&str>) {}
}

/// The engine state for one shard of visitors: any set of Kafka
/// partitions (all of them in replay and training; one in the Kafka
/// runtime). Visitors are placed by
/// [`partition_of_u32`](crate::partitioning::partition_of_u32) of their
/// id among [`EngineConfig::partitions`], and every clock and bound is kept
/// per partition (`PartitionState`), so what happens to a visitor
/// depends only on its partition's records, never on which other
/// partitions share the engine.
pub struct Engine {
    config: Arc<EngineConfig>,
    models: Arc<ModelSet>,
    /// Keyed by visitor id (inline up to 24 bytes, so most ids cost no heap
    /// block); queried with a `&str`, so a lookup builds no key.
    visitors: AHashMap<CompactString, VisitorEntry>,
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
    restored_since: AHashMap<CompactString, (i64, PriorDenial)>,
    /// Contact-policy state of the visitors that have any (see
    /// `feedback`): beside the visitor map so that the others pay nothing.
    contact: AHashMap<CompactString, feedback::ContactBook>,
    /// Peak scores of the sessions above a `falls_to` threshold (see
    /// `peaks`): beside the visitor map, so that the others pay nothing.
    peaks: peaks::PeakBook,
    /// The vector of each open session's last score, kept only when an
    /// outcome learns (see `learning`).
    vectors: learning::VectorBook,
    /// Per outcome: the scored vectors and scores counted in its model's
    /// drift bins (`None`: no model, or one without a drift reference).
    /// Monitoring only: not in the changelog; read and cleared by the caller.
    drift: Vec<Option<ModelDriftCounts>>,
    /// Per outcome and role: resolved sessions labelled with their last
    /// score (see [`crate::online_eval`]); the champions' slots, then the
    /// challengers'. Monitoring only, like `drift`.
    online: Vec<OutcomeEvalCounts>,
}

impl Engine {
    /// A fresh engine.
    pub fn new(config: Arc<EngineConfig>, models: Arc<ModelSet>) -> Self {
        let n_out = config.outcomes.len();
        let n_maps = config.action_maps.len();
        let peaks = peaks::PeakBook::new(&config);
        let drift = drift_counts_for(&models);
        Self {
            counters: EngineCounters {
                outcomes_achieved: vec![0; n_out],
                offers_by_map: vec![0; n_maps],
                suppressed_by_cap: vec![0; n_maps],
                suppressed_by_purpose: vec![0; n_maps],
                held_out_by_map: vec![0; n_maps],
                lower_priority_by_map: vec![0; n_maps],
                sessions_offered_by_map: vec![0; n_maps],
                sessions_held_out_by_map: vec![0; n_maps],
                converted_offered_by_map: vec![0; n_maps],
                converted_held_out_by_map: vec![0; n_maps],
                suppressed_by_contact_by_map: vec![0; n_maps],
                feedback: FeedbackCounters::new(n_maps),
                ..EngineCounters::default()
            },
            config,
            models,
            visitors: AHashMap::new(),
            parts: Vec::new(),
            slot_of: Vec::new(),
            scratch: Scratch::default(),
            restored_since: AHashMap::new(),
            contact: AHashMap::new(),
            peaks,
            vectors: learning::VectorBook::default(),
            drift,
            online: vec![OutcomeEvalCounts::default(); 2 * n_out],
        }
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<EngineConfig> {
        &self.config
    }

    /// Swaps the models (hot reload). Takes effect from the next event;
    /// drift counts start again in the new models' bins.
    pub fn set_models(&mut self, models: Arc<ModelSet>) {
        self.drift = drift_counts_for(&models);
        for c in &mut self.online {
            *c = OutcomeEvalCounts::default();
        }
        self.models = models;
    }

    /// Per outcome, what was counted in its model's drift bins since the
    /// engine started, its models were swapped, or the counts were last
    /// cleared (`None`: no model with a drift reference).
    pub fn drift_counts(&self) -> &[Option<ModelDriftCounts>] {
        &self.drift
    }

    /// Per outcome and role, the sessions resolved since the engine
    /// started, its models were swapped, or the counts were last cleared:
    /// `2 × outcomes` slots, the champions' (slot i: outcome i) then the
    /// challengers' (slot outcomes + i), in [`crate::ModelRole::ALL`]
    /// order.
    pub fn online_eval(&self) -> &[OutcomeEvalCounts] {
        &self.online
    }

    /// Zeroes the drift counts and resolved sessions in place (the caller
    /// has read them: [`Engine::drift_counts`], [`Engine::online_eval`]).
    pub fn clear_monitoring_counts(&mut self) {
        for c in self.drift.iter_mut().flatten() {
            c.clear();
        }
        for c in &mut self.online {
            c.clear();
        }
    }

    /// The models in use.
    pub fn models(&self) -> &Arc<ModelSet> {
        &self.models
    }

    /// How many visitors have a session peak held for `falls_to`
    /// explanations (memory accounting, tests).
    pub fn sessions_with_peaks(&self) -> usize {
        self.peaks.visitors()
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
}

/// Whether an entry holds neither a consent record nor any activity: the
/// test every path that removes a visitor from the map applies. The paths
/// that may find a latest event time still held (the pre-consent overflow,
/// the end of input and the idle re-check) also require it to be gone.
fn holds_nothing(entry: &VisitorEntry) -> bool {
    entry.consent.is_none() && !entry.has_state()
}

/// Empty drift counts for each outcome's model that has a reference.
fn drift_counts_for(models: &ModelSet) -> Vec<Option<ModelDriftCounts>> {
    (0..models.outcomes())
        .map(|i| {
            models
                .get(i)
                .and_then(|m| m.drift_reference())
                .map(|r| ModelDriftCounts::new(r))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::decide::hex_id;
    use super::session::auto_session_id;

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
