//! What the engine holds about one visitor: consent state, the current
//! session with its feature accumulators and frequency-cap counters, and
//! events waiting for a first consent record. This is the unit of the
//! state changelog: [`VisitorSnapshot`] is what survives a crash or moves
//! with a partition (consent is not in it: it is rebuilt from the compacted
//! consent topic, the source of truth).

use std::ops::Deref;

use serde::{Deserialize, Serialize};

use crate::compact::{InlineVec, MaybeMs, Slots, SmallStr};
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

/// Inline capacity of [`Session::seen_events`]: the ids of short sessions
/// need no heap block; longer sessions move to a `Vec`. Three keeps the
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
    pub id: SmallStr,
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
    pub seen_events: InlineVec<u64, INLINE_EVENT_IDS>,
    /// Bit i: outcome i achieved in this session.
    pub achieved: u64,
    /// Latest probability per outcome (NaN before the first score), for
    /// "falls to" triggers. JSON has no NaN (serde_json writes `null`), so
    /// `null` reads back as NaN.
    #[serde(deserialize_with = "probabilities")]
    pub last_probability: Slots<f32, INLINE_SLOTS>,
    /// Current page path (for action-map URL conditions), bounded by the
    /// wire limit on URLs.
    pub current_path: SmallStr,
    /// Lower-cased traffic source (for action-map conditions).
    pub traffic_source: Option<SmallStr>,
    /// Offers made in this session.
    pub offers_total: u32,
    /// Offers per action map (index into the sorted action maps).
    pub offers_per_map: Slots<u32, INLINE_SLOTS>,
}

/// Reads `last_probability`, mapping `null` (how a NaN was written) to NaN.
fn probabilities<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Slots<f32, INLINE_SLOTS>, D::Error> {
    let v = Vec::<Option<f32>>::deserialize(d)?;
    let mut out = Slots::from_elem(f32::NAN, v.len());
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

    /// The changelog form, or `None` when only a tombstone is due.
    pub fn snapshot(&self) -> Option<VisitorSnapshot> {
        let a = self.activity.as_deref()?;
        self.has_state().then(|| VisitorSnapshot {
            v: 1,
            session: a.session.clone(),
            buffer: a.buffer.to_vec(),
            last_offer_ms: a.last_offer_ms.get(),
            last_event_ms: self.last_event_ms.get(),
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
        // regression here is a regression in memory per visitor.
        assert!(std::mem::size_of::<VisitorEntry>() <= 32);
        // One heap block per active visitor: 488 bytes is glibc's 496-byte
        // size class (with its 8-byte header); one byte more costs 16.
        #[cfg(target_pointer_width = "64")]
        assert!(std::mem::size_of::<Activity>() <= 488);
    }

    #[test]
    fn nan_probabilities_round_trip() {
        let p: Slots<f32, INLINE_SLOTS> = Slots::from_slice(&[f32::NAN, 0.25]);
        let json = serde_json::to_string(&*p).unwrap();
        assert_eq!(json, "[null,0.25]");
        let back = probabilities(&mut serde_json::Deserializer::from_str(&json)).unwrap();
        assert!(back[0].is_nan());
        assert_eq!(back[1], 0.25);
    }
}
