//! The consent gate: which events are processed, which wait, which are
//! dropped, and what a consent record does to the visitor — including the
//! bounded buffer that holds events of visitors with no consent record
//! yet (opt-in mode).
//!
//! Invariants kept here (1 and 2 of the engine):
//! - An event is processed only when the consent known *now* grants
//!   `tracking`, or when there is no record and the opt-out defaults grant
//!   it. With no record in opt-in mode it is buffered; in every other case
//!   it is dropped for the visitor's state (`erased`, `revoked`,
//!   `no_consent`) and nothing is kept about it.
//! - No consent is retroactive: an event (buffered or not) older than the
//!   current granted interval is dropped for the state before the grant.
//! - The buffer is bounded per visitor and per partition (never per
//!   engine, so the bound is the same however partitions are shared);
//!   buffered events age by event time, here by the visitor's own later
//!   events and in [`super::expiry`] by the partition watermark.
//! - Every buffered event leaves the buffer through exactly one counter:
//!   processed (or dropped by processing) when tracking is granted,
//!   unless by then it is past the TTL (`pre_consent_ttl`) or older than
//!   a restored granted-interval start; `no_consent` when a record denies;
//!   `erased` on erasure. The buffered gauges (engine and partition) fall
//!   by the same count.
//! - A stale consent record changes nothing but `consent_stale`.
//!   Revocation forgets the session at once; erasure forgets all but the
//!   consent state. The changelog is told of every record that changes the
//!   consent state (the snapshot carries it, so that a restore need not
//!   read the consent topic from its start).

use crate::config::{ConsentMode, EngineConfig};
use crate::purpose::{Purpose, PurposeSet};
use crate::visitor::{BufferedEvent, ConsentState, VisitorEntry};
use crate::wire::{decode_event, ConsentChange, ConsentUpdate, Event};

use super::restore::take_restored_since;
use super::session::event_ctx;
use super::{holds_nothing, DropReason, Engine, EngineSink};

impl Engine {
    fn drop_event(&mut self, reason: DropReason) {
        self.counters.events_dropped[reason as usize] += 1;
    }

    pub(super) fn gate_event(
        &mut self,
        part: usize,
        event: &Event<'_>,
        bytes: &[u8],
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        // One hash lookup per event: the entry found here is the one the
        // event is applied to (inserted only for a visitor not yet held).
        let entry = self.visitors.get_mut(&*event.visitor_id);
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
        event_ctx!(self, part).apply(entry, event, purposes, now_ms, sink);
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
        let entry = match self.visitors.get_mut(&*event.visitor_id) {
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
            if holds_nothing(entry) && !entry.last_event_ms.is_some() {
                self.visitors.remove(&*event.visitor_id);
            }
            return;
        }
        act.buffer.push(BufferedEvent {
            time_ms: t,
            bytes: bytes.to_vec(),
        });
        self.counters.buffered_events += 1;
        ps.buffered += 1;
        ps.ttl_queue.push(std::cmp::Reverse((
            t + cfg.buffer_ttl_ms,
            event.visitor_id.as_ref().into(),
        )));
        sink.state_changed(&event.visitor_id);
    }

    pub(super) fn apply_consent(
        &mut self,
        update: ConsentUpdate<'_>,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        let visitor = update.visitor_id.as_ref();
        let part = self.visitor_slot(visitor);
        let entry = match self.visitors.get_mut(visitor) {
            Some(e) => e,
            None => self.visitors.entry(visitor.into()).or_default(),
        };
        // No record yet: in opt-out mode the defaults applied.
        let no_record_tracks = no_record_tracks(&self.config);
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
                self.contact.remove(visitor);
                self.peaks.forget(visitor);
                self.vectors.forget(visitor);
                self.counters.erasures += 1;
                self.counters.consent_applied += 1;
                sink.state_changed(visitor);
            }
            ConsentChange::State(purposes) => {
                let was_tracking = current.map_or(no_record_tracks, |c| c.tracking());
                let tracking = next.tracking();
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
                // The snapshot carries the consent state: every record
                // applied reaches the changelog.
                sink.state_changed(visitor);
                if tracking {
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
                } else {
                    self.counters.events_dropped[DropReason::NoConsent as usize] +=
                        buffered.len() as u64;
                    if was_tracking {
                        self.counters.revocations += 1;
                        // Revocation stops processing at once: the session
                        // (features, probabilities, caps) is forgotten, and
                        // so is the contact state from offer feedback.
                        if let Some(a) = entry.activity.as_deref_mut() {
                            self.counters.active_sessions -= u64::from(a.session.is_some());
                            a.session = None;
                        }
                        entry.tidy();
                        self.contact.remove(visitor);
                        self.peaks.forget(visitor);
                        self.vectors.forget(visitor);
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
        // One lookup: ids of up to 24 bytes make a key without allocating.
        let entry = self
            .visitors
            .entry(event.visitor_id.as_ref().into())
            .or_default();
        event_ctx!(self, part).apply(entry, event, purposes, now_ms, sink);
    }
}

/// Whether a visitor without any consent record is tracked: in opt-out
/// mode, when the default purposes grant `tracking`.
pub(super) fn no_record_tracks(config: &EngineConfig) -> bool {
    config.consent_mode == ConsentMode::OptOut && config.opt_out_purposes.grants(Purpose::Tracking)
}
