//! Offer feedback: what engagement services report about the offers they
//! got (shown, accepted, declined, ignored, expired), counted per map and
//! status, and the contact policy it drives: after `max_declines` declines
//! of a map's offers within `within_days`, the map makes no offer to the
//! visitor for `suppress_days` (its decisions are `contact_policy`).
//!
//! Invariants kept here:
//! - Feedback is gated like events: it is applied only while the visitor's
//!   latest consent grants tracking; otherwise it is dropped (counted,
//!   never stored). Erasure and revocation forget the contact state with
//!   the rest of the visitor's activity.
//! - Every consumed record is applied, dropped (no consent, unknown map)
//!   or dead-lettered: [`FeedbackCounters::reconciles`].
//! - The state lives beside the visitor map, not in it: only visitors with
//!   feedback pay for it, and `Activity` keeps its heap size class. It is
//!   part of the visitor's changelog snapshot (maps by name), so it
//!   survives restarts and rebalances like the rest.
//! - A decline of the offer whose decline was counted last is not counted
//!   again: feedback producers may retry, and a retry must not suppress.
//! - Time is the feedback's own timestamp (suppression windows) and the
//!   event's time (whether a decision falls in one): nothing reads a clock,
//!   so replay decides as the runtime does for the same order.

use ahash::AHashMap;
use compact_str::CompactString;
use serde::Serialize;
use smallvec::SmallVec;

use crate::config::ActionMap;
use crate::stable_hash::stable_hash;
use crate::visitor::ContactSnapshot;
use crate::wire::{decode_feedback, DeadLetter, FeedbackStatus, Origin};

use super::counters::reason_index;
use super::{Engine, EngineSink};

/// One action map's contact-policy state of a visitor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct MapContact {
    /// Index into the configured action maps.
    map: u8,
    /// Declines counted since `window_start_ms`.
    declines: u16,
    /// Start of the counting window (`i64::MIN`: none open).
    window_start_ms: i64,
    /// No offer of the map before this time (`i64::MIN`: none).
    suppressed_until_ms: i64,
    /// Stable hash of the offer id of the last decline counted (0: none):
    /// a decline sent again (a producer's retry) is not counted twice.
    last_declined: u64,
}

impl MapContact {
    /// Whether it still says anything at `t`: declines in an open window,
    /// or a suppression not over.
    fn holds_at(&self, t: i64, window_ms: i64) -> bool {
        (self.declines > 0 && t <= self.window_start_ms.saturating_add(window_ms))
            || self.suppressed_until_ms > t
    }
}

/// A visitor's contact state: one entry per map with state (usually one).
pub(super) type ContactBook = SmallVec<[MapContact; 1]>;

/// Feedback counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct FeedbackCounters {
    /// Feedback records consumed.
    pub consumed: u64,
    /// Applied: counted by map and status (and the contact policy run).
    pub applied: u64,
    /// Dropped: the visitor's consent does not grant tracking now.
    pub dropped_no_consent: u64,
    /// Dropped: no configured action map has that name.
    pub dropped_unknown_map: u64,
    /// Dead-lettered, by reason (`DeadLetterReason::ALL` order).
    pub dead_lettered: [u64; 8],
    /// Applied feedback per action map, by status (`FeedbackStatus::ALL`
    /// order).
    pub by_map_status: Vec<[u64; 5]>,
    /// Suppressions the contact policy started, per action map.
    pub suppressions_by_map: Vec<u64>,
}

impl FeedbackCounters {
    /// Counters for `maps` action maps.
    pub fn new(maps: usize) -> Self {
        Self {
            by_map_status: vec![[0; 5]; maps],
            suppressions_by_map: vec![0; maps],
            ..Self::default()
        }
    }

    /// Adds `other` in (lists element-wise, a longer one extends).
    pub fn merge(&mut self, other: &FeedbackCounters) {
        self.consumed += other.consumed;
        self.applied += other.applied;
        self.dropped_no_consent += other.dropped_no_consent;
        self.dropped_unknown_map += other.dropped_unknown_map;
        for (x, y) in self.dead_lettered.iter_mut().zip(&other.dead_lettered) {
            *x += y;
        }
        if self.by_map_status.len() < other.by_map_status.len() {
            self.by_map_status.resize(other.by_map_status.len(), [0; 5]);
        }
        for (mine, theirs) in self.by_map_status.iter_mut().zip(&other.by_map_status) {
            for (x, y) in mine.iter_mut().zip(theirs) {
                *x += y;
            }
        }
        if self.suppressions_by_map.len() < other.suppressions_by_map.len() {
            self.suppressions_by_map
                .resize(other.suppressions_by_map.len(), 0);
        }
        for (x, y) in self
            .suppressions_by_map
            .iter_mut()
            .zip(&other.suppressions_by_map)
        {
            *x += y;
        }
    }

    /// consumed = applied + dropped + dead-lettered.
    pub fn reconciles(&self) -> bool {
        self.consumed
            == self.applied
                + self.dropped_no_consent
                + self.dropped_unknown_map
                + self.dead_lettered.iter().sum::<u64>()
    }
}

impl Engine {
    /// Consumes one feedback record. `key` is the Kafka key, if any.
    pub fn process_feedback(
        &mut self,
        key: Option<&[u8]>,
        bytes: &[u8],
        origin: &Origin,
        sink: &mut impl EngineSink,
    ) {
        self.counters.feedback.consumed += 1;
        let update = match decode_feedback(key, bytes, self.config.max_record_bytes) {
            Ok(u) => u,
            Err(err) => {
                self.counters.feedback.dead_lettered[reason_index(err.reason)] += 1;
                sink.dead_letter(DeadLetter {
                    reason: err.reason,
                    error: err.message,
                    payload: bytes,
                    origin,
                });
                return;
            }
        };
        let visitor = update.visitor_id.as_ref();
        let tracking = self
            .visitors
            .get(visitor)
            .and_then(|e| e.consent)
            .is_some_and(|c| c.tracking());
        if !tracking {
            self.counters.feedback.dropped_no_consent += 1;
            return;
        }
        let Some(mi) = self
            .config
            .action_maps
            .iter()
            .position(|m| m.name == update.action_map)
        else {
            self.counters.feedback.dropped_unknown_map += 1;
            return;
        };
        self.counters.feedback.applied += 1;
        self.counters.feedback.by_map_status[mi][update.status.index()] += 1;
        let map = &self.config.action_maps[mi];
        let Some(policy) = map.contact_policy else {
            return;
        };
        let t = update.time_ms;
        // Never 0, so 0 can mean "none".
        let offer_hash = stable_hash(update.offer_id.as_bytes()) | 1;
        let book = self.contact.entry(visitor.into()).or_default();
        let at = match book.iter().position(|c| usize::from(c.map) == mi) {
            Some(i) => i,
            None => {
                book.push(MapContact {
                    map: mi as u8,
                    declines: 0,
                    window_start_ms: i64::MIN,
                    suppressed_until_ms: i64::MIN,
                    last_declined: 0,
                });
                book.len() - 1
            }
        };
        let c = &mut book[at];
        match update.status {
            FeedbackStatus::Declined if c.last_declined == offer_hash => {}
            FeedbackStatus::Declined => {
                c.last_declined = offer_hash;
                if c.declines == 0 || t > c.window_start_ms.saturating_add(policy.window_ms) {
                    c.window_start_ms = t;
                    c.declines = 0;
                }
                c.declines += 1;
                if c.declines >= policy.max_declines {
                    c.suppressed_until_ms = c.suppressed_until_ms.max(t + policy.suppress_ms);
                    c.declines = 0;
                    c.window_start_ms = i64::MIN;
                    self.counters.feedback.suppressions_by_map[mi] += 1;
                }
            }
            // An acceptance starts the count anew; a suppression already
            // running keeps its term.
            FeedbackStatus::Accepted => {
                c.declines = 0;
                c.window_start_ms = i64::MIN;
            }
            FeedbackStatus::Shown | FeedbackStatus::Ignored | FeedbackStatus::Expired => {}
        }
        let maps = &self.config.action_maps;
        book.retain(|c| holds(c, maps, t));
        if book.is_empty() {
            self.contact.remove(visitor);
        }
        sink.state_changed(visitor);
    }

    /// The changelog form of a visitor's contact state.
    pub(super) fn contact_snapshot(&self, visitor: &str) -> Vec<ContactSnapshot> {
        // Every snapshot asks: without feedback, no hashing.
        if self.contact.is_empty() {
            return Vec::new();
        }
        let Some(book) = self.contact.get(visitor) else {
            return Vec::new();
        };
        let known = |t: i64| (t != i64::MIN).then_some(t);
        book.iter()
            .filter_map(|c| {
                Some(ContactSnapshot {
                    map: self
                        .config
                        .action_maps
                        .get(usize::from(c.map))?
                        .name
                        .clone(),
                    declines: c.declines,
                    window_start_ms: known(c.window_start_ms),
                    suppressed_until_ms: known(c.suppressed_until_ms),
                    last_declined: (c.last_declined != 0).then_some(c.last_declined),
                })
            })
            .collect()
    }

    /// Replaces a visitor's contact state with a snapshot's; entries of
    /// maps no longer configured are dropped.
    pub(super) fn restore_contact(&mut self, visitor: &str, snapshot: &[ContactSnapshot]) {
        let book: ContactBook = snapshot
            .iter()
            .filter_map(|s| {
                let mi = self
                    .config
                    .action_maps
                    .iter()
                    .position(|m| m.name == s.map)?;
                Some(MapContact {
                    map: u8::try_from(mi).ok()?,
                    declines: s.declines,
                    window_start_ms: s.window_start_ms.unwrap_or(i64::MIN),
                    suppressed_until_ms: s.suppressed_until_ms.unwrap_or(i64::MIN),
                    last_declined: s.last_declined.unwrap_or(0),
                })
            })
            .collect();
        if !book.is_empty() {
            self.contact.insert(visitor.into(), book);
        } else if !self.contact.is_empty() {
            self.contact.remove(visitor);
        }
    }

    /// Whether the visitor holds contact state (for access requests).
    pub(super) fn has_contact(&self, visitor: &str) -> bool {
        self.contact.contains_key(visitor)
    }
}

/// Whether an entry still says anything at `t` under its map's policy (an
/// entry of a map without a policy any more says nothing).
fn holds(c: &MapContact, maps: &[ActionMap], t: i64) -> bool {
    maps.get(usize::from(c.map))
        .and_then(|m| m.contact_policy)
        .is_some_and(|p| c.holds_at(t, p.window_ms))
}

/// Whether `book` suppresses map `map_index` at event time `t`.
pub(super) fn suppressed(
    contact: &AHashMap<CompactString, ContactBook>,
    visitor: &str,
    map_index: usize,
    t: i64,
) -> bool {
    !contact.is_empty()
        && contact.get(visitor).is_some_and(|book| {
            book.iter()
                .any(|c| usize::from(c.map) == map_index && c.suppressed_until_ms > t)
        })
}
