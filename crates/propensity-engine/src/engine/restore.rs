//! Restore: the changelog side of the engine. [`Engine::snapshot`] writes
//! a visitor's changelog value, [`Engine::restore`] reads one back,
//! [`Engine::load_consent`] rebuilds consent from the compacted topic
//! without side effects, and [`Engine::visitor_view`] answers access
//! requests from the same state.
//!
//! Invariants kept here:
//! - A snapshot of format 2 carries the visitor's consent state as of the
//!   commit that wrote it: restoring it sets that state, so only consent
//!   records committed after it need reading (applied with their effects,
//!   like any new record). A tombstone means nothing is held, consent
//!   included.
//! - A snapshot of format 1 carries no consent, only the start of the
//!   current granted interval (invariant 2 of the engine), which compaction
//!   of the consent topic would otherwise lose; consent is then rebuilt from
//!   the whole topic. A restored start is merged into consent (the later
//!   start wins) or, while the visitor's consent is not loaded yet, kept in
//!   `restored_since` — and written in its snapshots — until the first
//!   consent record merges it.
//! - The changelog is last-write-wins: a restore replaces what is held
//!   about the visitor, moving the gauges (buffered events, sessions) out
//!   for the old state and in for the new, so they describe what is held.
//!   Restored state re-enters the partition's bookkeeping:
//!   buffered events its TTL queue, a session a fresh serial, a visitor
//!   that may go idle the idle queue (at its latest event time), and that
//!   time the partition watermark.
//! - Loading consent leaves the state applying the same records would
//!   leave, and nothing else: no session clearing, no buffer release, no
//!   counters but the visitors gauge, no sink calls.

use ahash::AHashMap;
use compact_str::CompactString;

use crate::compact::MaybeMs;
use crate::error::EngineError;
use crate::visitor::{
    Activity, ConsentState, PriorDenial, VisitorEntry, VisitorSnapshot, SNAPSHOT_FORMAT,
};
use crate::wire::decode_consent;

use super::expiry::IdleItem;
use super::gate::no_record_tracks;
use super::{holds_nothing, Engine};

impl Engine {
    /// The changelog value of a visitor: `None` means tombstone.
    pub fn snapshot(&self, visitor_id: &str) -> Option<Vec<u8>> {
        let snap = self.visitor_snapshot(visitor_id)?;
        serde_json::to_vec(&snap).ok()
    }

    /// The changelog form of a visitor, including a granted-interval start
    /// restored but not yet merged into consent (so writing the visitor
    /// before its consent is loaded does not lose it).
    fn visitor_snapshot(&self, visitor_id: &str) -> Option<VisitorSnapshot> {
        let entry = self.visitors.get(visitor_id);
        let mut snap = entry.and_then(VisitorEntry::snapshot);
        // Contact state exists only for visitors with consent (feedback is
        // gated), so only for visitors that have a snapshot.
        if let Some(s) = snap.as_mut() {
            s.contact = self.contact_snapshot(visitor_id);
            if let Some(session) = entry.and_then(VisitorEntry::session) {
                s.peaks = self
                    .peaks
                    .snapshot(visitor_id, session.serial, &self.config.outcomes);
                s.learning_vector = self
                    .vectors
                    .vector(visitor_id, session.serial)
                    .map(<[_]>::to_vec)
                    .unwrap_or_default();
            }
        }
        if entry.is_none_or(|e| e.consent.is_none()) {
            if let Some(&(since, prior)) = self.restored_since.get(visitor_id) {
                let s = snap.get_or_insert_with(|| VisitorSnapshot {
                    v: SNAPSHOT_FORMAT,
                    consent: None,
                    session: None,
                    buffer: Vec::new(),
                    last_offer_ms: None,
                    last_event_ms: entry.and_then(|e| e.last_event_ms.get()),
                    tracking_since_ms: None,
                    prior_denial: PriorDenial::NoConsent,
                    contact: Vec::new(),
                    peaks: Vec::new(),
                    learning_vector: Vec::new(),
                });
                s.tracking_since_ms = Some(since);
                s.prior_denial = prior;
            }
        }
        snap
    }

    /// Restores a visitor's changelog state (`None`: tombstone). A format 2
    /// snapshot or a tombstone replaces the consent state too; a format 1
    /// snapshot leaves consent as it is, except the granted-interval start
    /// it carries: merged into consent (the later start wins), or kept until
    /// the visitor's first consent record is loaded or applied and merged
    /// then.
    pub fn restore(&mut self, visitor_id: &str, value: Option<&[u8]>) -> Result<(), EngineError> {
        let mut snapshot: Option<VisitorSnapshot> = match value {
            Some(v) => {
                Some(serde_json::from_slice(v).map_err(|e| EngineError::Snapshot(e.to_string()))?)
            }
            None => None,
        };
        let contact = snapshot.as_ref().map_or(&[][..], |s| &s.contact[..]);
        self.restore_contact(visitor_id, contact);
        let peaks = snapshot
            .as_mut()
            .map(|s| std::mem::take(&mut s.peaks))
            .unwrap_or_default();
        let learning_vector = snapshot
            .as_mut()
            .map(|s| std::mem::take(&mut s.learning_vector))
            .unwrap_or_default();
        let slot = self.visitor_slot(visitor_id);
        let ps = &mut self.parts[slot];
        let entry = self.visitors.entry(visitor_id.into()).or_default();
        match &snapshot {
            Some(s) if s.v < 2 => {}
            // Last-write-wins covers consent: the restore reads the
            // changelog before any consent record of the partition.
            _ => entry.consent = snapshot.as_ref().and_then(|s| s.consent),
        }
        let since = snapshot
            .as_ref()
            .and_then(|s| s.tracking_since_ms.map(|t| (t, s.prior_denial)));
        match (&mut entry.consent, since) {
            (Some(c), since) => {
                if let Some((t, prior)) = since {
                    c.merge_restored_since(t, prior);
                }
                // Merged (or carried by a format 2 consent state): nothing
                // left to wait for.
                self.restored_since.remove(visitor_id);
            }
            // The changelog is last-write-wins: a later snapshot replaces.
            (None, Some(since)) => {
                self.restored_since.insert(visitor_id.into(), since);
            }
            (None, None) => {
                self.restored_since.remove(visitor_id);
            }
        }
        ps.buffered -= entry.buffer().len() as u64;
        self.counters.buffered_events -= entry.buffer().len() as u64;
        self.counters.active_sessions -= u64::from(entry.session().is_some());
        entry.activity = None;
        entry.last_event_ms = MaybeMs::NONE;
        if let Some(s) = snapshot {
            for b in &s.buffer {
                ps.ttl_queue.push(std::cmp::Reverse((
                    b.time_ms + self.config.buffer_ttl_ms,
                    visitor_id.into(),
                )));
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
        // Peaks follow the restored session, under its new serial.
        let serial = entry.session().map(|s| s.serial);
        self.peaks.restore(
            visitor_id,
            serial,
            &peaks,
            &self.config.outcomes,
            self.config.features.dim(),
        );
        self.vectors.restore(
            visitor_id,
            serial,
            &learning_vector,
            self.config.features.dim(),
        );
        if holds_nothing(entry) {
            self.visitors.remove(visitor_id);
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
        let entry = match self.visitors.get_mut(visitor) {
            Some(e) => e,
            None => self.visitors.entry(visitor.into()).or_default(),
        };
        let no_record_tracks = no_record_tracks(&self.config);
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

    /// What is held about a visitor (data-subject access): consent, and
    /// the rest of its changelog snapshot (without the consent it repeats)
    /// when anything besides consent is held — activity, or the start of a
    /// granted interval; `None` for a visitor known only by its consent
    /// (an erased one, for instance).
    pub fn visitor_view(
        &self,
        visitor_id: &str,
    ) -> Option<(Option<ConsentState>, Option<VisitorSnapshot>)> {
        let entry = self.visitors.get(visitor_id)?;
        let beyond_consent = entry.has_state()
            || self.has_contact(visitor_id)
            || entry.tracking_since().is_some()
            || self.restored_since.contains_key(visitor_id);
        let rest = self
            .visitor_snapshot(visitor_id)
            .filter(|_| beyond_consent)
            .map(|s| VisitorSnapshot { consent: None, ..s });
        Some((entry.consent, rest))
    }

    /// Visitor ids currently held (for tests and access requests).
    pub fn visitor_ids(&self) -> impl Iterator<Item = &str> {
        self.visitors.keys().map(CompactString::as_str)
    }
}

/// Merges (and forgets) the granted-interval start restored for a visitor
/// into the state its first consent record produced.
pub(super) fn take_restored_since(
    restored: &mut AHashMap<CompactString, (i64, PriorDenial)>,
    visitor: &str,
    next: &mut ConsentState,
) {
    if restored.is_empty() {
        return;
    }
    if let Some((since, prior)) = restored.remove(visitor) {
        next.merge_restored_since(since, prior);
        if restored.is_empty() {
            // Restores are rare: give the table's memory back.
            restored.shrink_to_fit();
        }
    }
}
