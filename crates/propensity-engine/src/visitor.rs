//! What the engine holds about one visitor: consent state, the current
//! session with its feature accumulators and frequency-cap counters, and
//! events waiting for a first consent record. This is the unit of the
//! state changelog: [`VisitorSnapshot`] is what survives a crash or moves
//! with a partition (consent is not in it: it is rebuilt from the compacted
//! consent topic, the source of truth).

use serde::{Deserialize, Serialize};

use crate::features::Accumulators;
use crate::purpose::PurposeSet;

/// The latest consent state known for a visitor.
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

/// A session in progress.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Session {
    /// Explicit `session_id`, or a derived `auto-…` id.
    pub id: String,
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
    pub seen_events: Vec<u64>,
    /// Bit i: outcome i achieved in this session.
    pub achieved: u64,
    /// Latest probability per outcome (NaN before the first score), for
    /// "falls to" triggers.
    pub last_probability: Vec<f32>,
    /// Current page path (for action-map URL conditions), bounded by the
    /// wire limit on URLs.
    pub current_path: String,
    /// Lower-cased traffic source (for action-map conditions).
    pub traffic_source: Option<String>,
    /// Offers made in this session.
    pub offers_total: u32,
    /// Offers per action map (index into the sorted action maps).
    pub offers_per_map: Vec<u32>,
}

/// Everything held about a visitor.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VisitorEntry {
    /// Latest consent, if any record was seen.
    pub consent: Option<ConsentState>,
    /// Current session.
    pub session: Option<Box<Session>>,
    /// Events waiting for consent.
    pub buffer: Vec<BufferedEvent>,
    /// Event time of the last offer (minimum-gap cap).
    pub last_offer_ms: Option<i64>,
    /// Latest event time seen for the visitor (lateness, idle expiry).
    pub last_event_ms: Option<i64>,
}

/// The changelog form of a visitor: everything but consent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VisitorSnapshot {
    /// Snapshot format version.
    pub v: u32,
    /// Current session.
    pub session: Option<Session>,
    /// Events waiting for consent.
    pub buffer: Vec<BufferedEvent>,
    /// Last offer time.
    pub last_offer_ms: Option<i64>,
    /// Last event time.
    pub last_event_ms: Option<i64>,
}

impl VisitorEntry {
    /// Whether anything but consent is held (i.e. a changelog record is
    /// needed; otherwise a tombstone).
    pub fn has_state(&self) -> bool {
        self.session.is_some() || !self.buffer.is_empty() || self.last_offer_ms.is_some()
    }

    /// The changelog form, or `None` when only a tombstone is due.
    pub fn snapshot(&self) -> Option<VisitorSnapshot> {
        self.has_state().then(|| VisitorSnapshot {
            v: 1,
            session: self.session.as_deref().cloned(),
            buffer: self.buffer.clone(),
            last_offer_ms: self.last_offer_ms,
            last_event_ms: self.last_event_ms,
        })
    }

    /// Forgets all but consent (revocation).
    pub fn clear_activity(&mut self) {
        self.session = None;
        self.buffer.clear();
    }
}
