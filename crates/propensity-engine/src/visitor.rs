//! What the engine holds about one visitor: consent state, the current
//! session with its feature accumulators and frequency-cap counters, and
//! events waiting for a first consent record. This is the unit of the
//! state changelog: [`VisitorSnapshot`] is what survives a crash or moves
//! with a partition. Since format 2 it carries the visitor's whole consent
//! state as of the commit that wrote it, so a restore reads only the consent
//! records committed after that (a bounded tail) instead of the whole
//! consent topic. Format 1 snapshots carried no consent but the start of the
//! current granted interval (which compaction can erase from the consent
//! topic); they still restore, with consent rebuilt from the topic.

use std::ops::Deref;

use compact_str::CompactString;
use serde::{Deserialize, Serialize};
use smallvec::SmallVec;

use crate::compact::MaybeMs;
use crate::features::Accumulators;
use crate::purpose::{Purpose, PurposeSet};
use crate::wire::ConsentChange;

/// Why tracking was not granted just before a visitor's current granted
/// interval began: the reason an event dated before that interval is
/// dropped under (see [`ConsentState::tracking_since_ms`]). One byte.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[repr(u8)]
pub enum PriorDenial {
    /// A state that denied tracking, with no grant of it before (also the
    /// value while there is no such interval: it is then never read).
    #[default]
    NoConsent,
    /// A state that withdrew tracking after it had been granted.
    Revoked,
    /// An erasure.
    Erased,
}

impl PriorDenial {
    /// Whether this is the default (not written to JSON).
    pub fn is_no_consent(&self) -> bool {
        *self == PriorDenial::NoConsent
    }
}

/// `i64::MIN`: no lower bound on event time.
fn unbounded() -> i64 {
    i64::MIN
}

fn is_unbounded(t: &i64) -> bool {
    *t == i64::MIN
}

/// The latest consent state known for a visitor, plus the start of its
/// current granted interval.
///
/// The gate processes an event only when (1) this state grants `tracking`
/// (not erased) and (2) the event's own time is at or after
/// `tracking_since_ms`: no consent is retroactive, so events a visitor sent
/// while denying, revoked or erased stay dropped even when they arrive
/// (pipeline lag) after a later grant. Built only by
/// [`ConsentState::after`], so that applying a record and loading it from
/// the compacted topic give the same state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConsentState {
    /// Time of the record that set it.
    pub time_ms: i64,
    /// Granted purposes (meaningless while `erased`).
    pub purposes: PurposeSet,
    /// An erasure is the latest record: nothing is processed until a newer
    /// record grants tracking.
    pub erased: bool,
    /// Tracking was granted at some point (so a denial is a revocation).
    pub ever_granted: bool,
    /// While tracking is granted: the time of the record that started the
    /// current uninterrupted period of grants (a grant that followed a
    /// denial, revocation or erasure); events dated before it are dropped
    /// for `prior_denial`. `i64::MIN` when no record before that period
    /// denied tracking (the first record granted it, or opt-out defaults
    /// that grant it applied before), so events from before a visitor's
    /// first record keep the pre-consent rules. Always `i64::MIN` while
    /// tracking is not granted (the gate drops everything then; the next
    /// grant sets it afresh).
    #[serde(default = "unbounded", skip_serializing_if = "is_unbounded")]
    pub tracking_since_ms: i64,
    /// What the state was just before `tracking_since_ms` (the drop reason
    /// of an event dated before it).
    #[serde(default, skip_serializing_if = "PriorDenial::is_no_consent")]
    pub prior_denial: PriorDenial,
}

impl ConsentState {
    /// Whether this state grants `tracking` (an erasure grants nothing).
    pub fn tracking(&self) -> bool {
        !self.erased && self.purposes.grants(Purpose::Tracking)
    }

    /// Why this state denies tracking, or `None` when it grants it.
    pub fn denial(&self) -> Option<PriorDenial> {
        if self.erased {
            Some(PriorDenial::Erased)
        } else if self.purposes.grants(Purpose::Tracking) {
            None
        } else if self.ever_granted {
            Some(PriorDenial::Revoked)
        } else {
            Some(PriorDenial::NoConsent)
        }
    }

    /// The state after a valid record dated `time_ms`, or `None` when the
    /// record is stale (older than `current`, or not strictly newer than an
    /// erasure) and changes nothing. `no_record_tracks`: whether a visitor
    /// without any record is tracked (opt-out defaults that grant
    /// `tracking`), which makes a first denial a revocation. The one place
    /// the transition is written: applying a record and loading it from the
    /// compacted topic both use it.
    pub fn after(
        current: Option<ConsentState>,
        change: &ConsentChange,
        time_ms: i64,
        no_record_tracks: bool,
    ) -> Option<ConsentState> {
        let purposes = match change {
            // Erasure is a right, not a state: it applies whatever its
            // timestamp, and only a strictly newer grant lifts it.
            ConsentChange::Erase => {
                return Some(ConsentState {
                    time_ms: current.map_or(time_ms, |c| c.time_ms.max(time_ms)),
                    purposes: PurposeSet::NONE,
                    erased: true,
                    ever_granted: false,
                    tracking_since_ms: i64::MIN,
                    prior_denial: PriorDenial::NoConsent,
                });
            }
            ConsentChange::State(p) => *p,
        };
        // Ties go to the later read, except against an erasure.
        if current.is_some_and(|c| time_ms < c.time_ms || (c.erased && time_ms == c.time_ms)) {
            return None;
        }
        let tracking = purposes.grants(Purpose::Tracking);
        let was_tracking = current.map_or(no_record_tracks, |c| c.tracking());
        let (tracking_since_ms, prior_denial) = match current.map(|c| (c, c.denial())) {
            // Not granting: nothing passes the gate, so no bound is kept.
            _ if !tracking => (i64::MIN, PriorDenial::NoConsent),
            // A first record that grants: earlier events are pre-consent.
            None => (i64::MIN, PriorDenial::NoConsent),
            // A grant after a grant (e.g. other purposes): same period.
            Some((c, None)) => (c.tracking_since_ms, c.prior_denial),
            // A grant after a denial, revocation or erasure: a new period.
            Some((_, Some(denial))) => (time_ms, denial),
        };
        Some(ConsentState {
            time_ms,
            purposes,
            erased: false,
            ever_granted: tracking || was_tracking || current.is_some_and(|c| c.ever_granted),
            tracking_since_ms,
            prior_denial,
        })
    }

    /// The lower bound this state puts on event time and the drop reason
    /// below it; `None` when there is none (unbounded, or tracking is not
    /// granted and the gate drops everything anyway).
    pub fn bound(&self) -> Option<(i64, PriorDenial)> {
        (self.tracking() && self.tracking_since_ms != i64::MIN)
            .then_some((self.tracking_since_ms, self.prior_denial))
    }

    /// Merges a granted interval's start restored from the changelog (the
    /// compacted consent topic may no longer hold the denial that started
    /// it): the later start wins. Ignored unless this state grants
    /// tracking (a denial or erasure since then ended that interval).
    pub fn merge_restored_since(&mut self, since_ms: i64, prior: PriorDenial) {
        if self.tracking() && since_ms > self.tracking_since_ms {
            self.tracking_since_ms = since_ms;
            self.prior_denial = prior;
        }
    }
}

/// An event waiting for the visitor's first consent record. The bytes are
/// kept (not the parsed form) so the event is decoded again on release by
/// the same code path as any other event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BufferedEvent {
    /// Event time, epoch ms (for the TTL).
    pub time_ms: i64,
    /// The original record.
    pub bytes: Vec<u8>,
}

/// Inline capacity of [`Session::seen_events`]: the ids of short sessions
/// need no heap block; longer sessions move to the heap. Three keeps the
/// list at 32 bytes (four would make it 40 and push [`Activity`] into the
/// next malloc size class).
pub const INLINE_EVENT_IDS: usize = 3;

/// Inline capacity of the per-outcome and per-action-map slots; configs
/// with more outcomes or maps keep them on the heap.
pub const INLINE_SLOTS: usize = 4;

/// A session in progress. Held inline in [`Activity`] (one heap block per
/// visitor instead of one per field): short strings and lists are inline
/// too, see [`crate::compact`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Explicit `session_id`, or a derived `auto-…` id.
    pub id: CompactString,
    /// Whether `id` came from the events.
    pub explicit: bool,
    /// Process-local serial, used to label training examples.
    pub serial: u64,
    /// First event time.
    pub start_ms: i64,
    /// Latest event time.
    pub last_ms: i64,
    /// Processed events.
    pub events: u32,
    /// Feature accumulators.
    pub acc: Accumulators,
    /// Stable hashes of processed event ids (duplicate detection), bounded.
    pub seen_events: SmallVec<[u64; INLINE_EVENT_IDS]>,
    /// Bit i: outcome i achieved in this session.
    pub achieved: u64,
    /// Latest probability per outcome (NaN before the first score), for
    /// "falls to" triggers and online evaluation; once a challenger has
    /// scored the session, followed by the challengers' latest (slot
    /// `outcomes + i`). JSON has no NaN (serde_json writes `null`), so
    /// `null` reads back as NaN.
    #[serde(deserialize_with = "probabilities")]
    pub last_probability: SmallVec<[f32; INLINE_SLOTS]>,
    /// Current page path (for action-map URL conditions), bounded by the
    /// wire limit on URLs.
    pub current_path: CompactString,
    /// Lower-cased traffic source (for action-map conditions).
    pub traffic_source: Option<CompactString>,
    /// Offers made in this session.
    pub offers_total: u32,
    /// Offers per action map (index into the sorted action maps).
    pub offers_per_map: SmallVec<[u32; INLINE_SLOTS]>,
    /// Control-group attribution: bit m, this session had an `offered`
    /// decision of action map m; bit 16 + m, a `held_out` one (at most
    /// [`MAX_ACTION_MAPS`] maps; a `u32` fits the session's padding, so
    /// it costs no memory). When the session achieves a map's outcome,
    /// the conversion is counted in those arms. Absent in snapshots of
    /// earlier versions: read as none.
    #[serde(default)]
    pub decided_arms: u32,
}

/// Action maps a configuration may have: [`Session::decided_arms`] keeps
/// two bits per map in a `u32`.
pub const MAX_ACTION_MAPS: usize = 16;

/// Reads `last_probability`, mapping `null` (how a NaN was written) to NaN.
fn probabilities<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<SmallVec<[f32; INLINE_SLOTS]>, D::Error> {
    let v = Vec::<Option<f32>>::deserialize(d)?;
    let mut out = SmallVec::from_elem(f32::NAN, v.len());
    for (slot, p) in out.iter_mut().zip(v) {
        *slot = p.unwrap_or(f32::NAN);
    }
    Ok(out)
}

/// Events waiting for consent: one pointer, null while empty (as it is for
/// every visitor with a consent record), instead of a 24-byte `Vec`.
// The box is the point: an absent buffer costs 8 bytes, not a `Vec`'s 24,
// and a second allocation only happens for the rare visitor who waits.
#[allow(clippy::box_collection)]
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventBuffer(Option<Box<Vec<BufferedEvent>>>);

impl EventBuffer {
    /// Appends an event.
    pub fn push(&mut self, event: BufferedEvent) {
        self.0.get_or_insert_with(Box::default).push(event);
    }

    /// Keeps the events `keep` accepts (freeing the buffer if none is).
    pub fn retain(&mut self, keep: impl FnMut(&BufferedEvent) -> bool) {
        if let Some(v) = &mut self.0 {
            v.retain(keep);
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Drops every event.
    pub fn clear(&mut self) {
        self.0 = None;
    }
}

impl Deref for EventBuffer {
    type Target = [BufferedEvent];
    fn deref(&self) -> &[BufferedEvent] {
        self.0.as_deref().map_or(&[], Vec::as_slice)
    }
}

impl<'a> IntoIterator for &'a EventBuffer {
    type Item = &'a BufferedEvent;
    type IntoIter = std::slice::Iter<'a, BufferedEvent>;
    fn into_iter(self) -> Self::IntoIter {
        self.iter()
    }
}

impl From<Vec<BufferedEvent>> for EventBuffer {
    fn from(v: Vec<BufferedEvent>) -> Self {
        EventBuffer((!v.is_empty()).then(|| Box::new(v)))
    }
}

/// Session, buffer and caps of a visitor: boxed in [`VisitorEntry`] so
/// that visitors known only by their consent (most of them, once idle
/// sessions expire) cost a small hash-table slot and nothing else.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Activity {
    /// Current session.
    pub session: Option<Session>,
    /// Events waiting for consent.
    pub buffer: EventBuffer,
    /// Event time of the last offer (minimum-gap cap).
    pub last_offer_ms: MaybeMs,
    /// Whether the engine's idle queue holds an item for this visitor (the
    /// engine's bookkeeping; not part of the snapshot).
    pub idle_queued: bool,
}

impl Activity {
    /// Whether the idle sweep may have something to forget: a session or
    /// an offer time.
    pub fn may_go_idle(&self) -> bool {
        self.session.is_some() || self.last_offer_ms.is_some()
    }

    /// Whether nothing is held (the box can be freed).
    pub fn is_empty(&self) -> bool {
        self.session.is_none() && self.buffer.is_empty() && !self.last_offer_ms.is_some()
    }
}

/// Everything held about a visitor: 32 bytes inline (the hash table holds
/// up to twice as many slots as visitors, so this size is paid twice).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisitorEntry {
    /// Latest consent, if any record was seen.
    pub consent: Option<ConsentState>,
    /// Latest event time seen for the visitor (lateness, idle expiry).
    /// Inline rather than in [`Activity`]: the idle sweep reads it for
    /// every visitor, and must not chase a pointer per visitor to do so.
    pub last_event_ms: MaybeMs,
    /// Session, buffer and caps; `None` when none of them holds anything
    /// (kept so by [`VisitorEntry::tidy`]; readers do not rely on it).
    pub activity: Option<Box<Activity>>,
}

/// The snapshot format written now: 2 carries the consent state.
pub const SNAPSHOT_FORMAT: u32 = 2;

/// The changelog form of a visitor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorSnapshot {
    /// Snapshot format version ([`SNAPSHOT_FORMAT`] when written now; 1:
    /// no `consent` field, consent is rebuilt from the consent topic).
    pub v: u32,
    /// The latest consent state (format 2; `None`: no consent record seen,
    /// or a format 1 snapshot). An erased visitor keeps its erasure here
    /// and nothing else: the suppression that keeps dropping its events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consent: Option<ConsentState>,
    /// Current session.
    pub session: Option<Session>,
    /// Events waiting for consent.
    pub buffer: Vec<BufferedEvent>,
    /// Last offer time.
    pub last_offer_ms: Option<i64>,
    /// Last event time.
    pub last_event_ms: Option<i64>,
    /// [`ConsentState::tracking_since_ms`] when it is not `i64::MIN`
    /// (absent in snapshots of older versions and of visitors without a
    /// bound): compaction keeps only a visitor's latest consent record, so
    /// the denial or erasure before a grant may be gone from the topic
    /// after a restart; this keeps the bound, and so the gate's decisions,
    /// independent of restarts. Format 2 has it in `consent` too, and still
    /// writes it here so that a binary of format 1 reading the snapshot
    /// (a rollback) keeps the bound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tracking_since_ms: Option<i64>,
    /// [`ConsentState::prior_denial`], with `tracking_since_ms`.
    #[serde(default, skip_serializing_if = "PriorDenial::is_no_consent")]
    pub prior_denial: PriorDenial,
    /// Contact-policy state per action map (declines counted, suppression),
    /// from offer feedback; absent when none. Maps are named, not indexed:
    /// it outlives sessions, and so deployments that reorder the maps.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub contact: Vec<ContactSnapshot>,
    /// The session's peak scores that `falls_to` offers are explained
    /// against (see `engine::peaks`); absent when none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub peaks: Vec<PeakSnapshot>,
    /// The non-zero entries (`[index, value]`) of the vector of the
    /// session's last score, which the adaptive model learns from when the
    /// session resolves (see `engine::learning`); absent when no outcome
    /// learns.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub learning_vector: Vec<(u32, f32)>,
}

/// A session's peak score of one outcome, as the changelog keeps it: the
/// highest score of its current run above the outcome's lowest `falls_to`
/// threshold, and what that score saw.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PeakSnapshot {
    /// The outcome's name (names, not indices: outcomes may be reordered).
    pub outcome: String,
    /// The peak probability.
    pub probability: f64,
    /// Its event time.
    pub event_ms: i64,
    /// The non-zero entries of the feature vector it saw, as
    /// `[index, value]` pairs in increasing index order.
    pub features: Vec<(u32, f32)>,
}

/// One action map's contact-policy state of a visitor, as the changelog
/// keeps it (see `engine::feedback`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactSnapshot {
    /// The action map.
    pub map: String,
    /// Declines counted in the current window.
    pub declines: u16,
    /// When the current window started (the first decline counted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window_start_ms: Option<i64>,
    /// The map makes no offer to the visitor before this time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub suppressed_until_ms: Option<i64>,
    /// Stable hash of the offer id of the last decline counted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_declined: Option<u64>,
}

impl VisitorEntry {
    /// The current session.
    pub fn session(&self) -> Option<&Session> {
        self.activity.as_ref()?.session.as_ref()
    }

    /// Events waiting for consent.
    pub fn buffer(&self) -> &[BufferedEvent] {
        self.activity.as_ref().map_or(&[], |a| &a.buffer[..])
    }

    /// Event time of the last offer.
    pub fn last_offer_ms(&self) -> Option<i64> {
        self.activity.as_ref()?.last_offer_ms.get()
    }

    /// The activity state, created empty when there is none.
    pub fn activity_mut(&mut self) -> &mut Activity {
        self.activity.get_or_insert_with(Box::default)
    }

    /// Frees the activity box when it holds nothing.
    pub fn tidy(&mut self) {
        if self.activity.as_ref().is_some_and(|a| a.is_empty()) {
            self.activity = None;
        }
    }

    /// Whether anything but consent is held (i.e. a changelog record is
    /// needed; otherwise a tombstone).
    pub fn has_state(&self) -> bool {
        self.activity.as_ref().is_some_and(|a| !a.is_empty())
    }

    /// The start of the current granted interval, when it bounds event
    /// time (see [`ConsentState::tracking_since_ms`]).
    pub fn tracking_since(&self) -> Option<(i64, PriorDenial)> {
        self.consent.and_then(|c| c.bound())
    }

    /// The changelog form, or `None` when only a tombstone is due: neither
    /// consent nor anything else is held.
    pub fn snapshot(&self) -> Option<VisitorSnapshot> {
        if self.consent.is_none() && !self.has_state() {
            return None;
        }
        let since = self.tracking_since();
        let a = self.activity.as_deref();
        Some(VisitorSnapshot {
            v: SNAPSHOT_FORMAT,
            consent: self.consent,
            session: a.and_then(|a| a.session.clone()),
            buffer: a.map_or_else(Vec::new, |a| a.buffer.to_vec()),
            last_offer_ms: a.and_then(|a| a.last_offer_ms.get()),
            last_event_ms: self.last_event_ms.get(),
            tracking_since_ms: since.map(|(t, _)| t),
            prior_denial: since.map_or(PriorDenial::NoConsent, |(_, r)| r),
            contact: Vec::new(),
            peaks: Vec::new(),
            learning_vector: Vec::new(),
        })
    }

    /// Forgets all but consent (revocation).
    pub fn clear_activity(&mut self) {
        if let Some(a) = self.activity.as_deref_mut() {
            a.session = None;
            a.buffer.clear();
        }
        self.tidy();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_small() {
        // The hash table pays this twice per visitor (load factor), so a
        // regression here is a regression in memory per visitor. 40 = the
        // 24-byte consent state (time, granted-interval start, purposes and
        // flags: the start is what makes no consent retroactive) + the
        // latest event time + the activity pointer.
        assert!(std::mem::size_of::<Option<ConsentState>>() <= 24);
        assert!(std::mem::size_of::<VisitorEntry>() <= 40);
        // One heap block per active visitor: 488 bytes is glibc's 496-byte
        // size class (with its 8-byte header); one byte more costs 16.
        #[cfg(target_pointer_width = "64")]
        assert!(std::mem::size_of::<Activity>() <= 488);
    }

    #[test]
    fn consent_json_shows_the_interval_start_only_when_bounded() {
        let grant = ConsentChange::State(PurposeSet::from_purposes(&[Purpose::Tracking]));
        let deny = ConsentChange::State(PurposeSet::NONE);
        let first = ConsentState::after(None, &grant, 10, false).unwrap();
        let json = serde_json::to_value(first).unwrap();
        assert!(json.get("tracking_since_ms").is_none() && json.get("prior_denial").is_none());
        let denied = ConsentState::after(Some(first), &deny, 20, false).unwrap();
        let again = ConsentState::after(Some(denied), &grant, 30, false).unwrap();
        assert_eq!(again.bound(), Some((30, PriorDenial::Revoked)));
        let json = serde_json::to_string(&again).unwrap();
        assert!(json.contains(r#""tracking_since_ms":30,"prior_denial":"revoked""#));
        assert_eq!(serde_json::from_str::<ConsentState>(&json).unwrap(), again);
    }

    #[test]
    fn nan_probabilities_round_trip() {
        let p: SmallVec<[f32; INLINE_SLOTS]> = SmallVec::from_slice(&[f32::NAN, 0.25]);
        let json = serde_json::to_string(&*p).unwrap();
        assert_eq!(json, "[null,0.25]");
        let back = probabilities(&mut serde_json::Deserializer::from_str(&json)).unwrap();
        assert!(back[0].is_nan());
        assert_eq!(back[1], 0.25);
    }
}
