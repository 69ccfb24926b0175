//! Expiry: the partition watermark and what it expires. Events waiting
//! for consent past the TTL are dropped (`pre_consent_ttl`), the activity
//! of visitors idle past the expiry is forgotten, and at the end of input
//! ([`Engine::finish`]) everything still waiting is dropped as expired.
//!
//! Invariants kept here:
//! - Time is event time only: a partition's watermark is the greatest
//!   event time seen in it, it never moves back, and a sweep touches only
//!   that partition's visitors, by that partition's clock (invariant 5).
//! - What expires is a function of the clock and the state alone: waiting
//!   events in deadline order, idle sweeps whenever the clock crosses a
//!   multiple of their period. A restart that restores both expires at the
//!   same moments as the run it continues.
//! - Expiry never forgets consent, which must outlive sessions to gate
//!   future events; a visitor leaves the map only once it holds neither
//!   consent nor activity.
//! - An expired event moves from the buffered gauges (engine and
//!   partition) to `pre_consent_ttl`, so the counters still reconcile,
//!   and the visitor's changelog is told (`state_changed`).
//! - The idle queue finds exactly the visitors a full scan of the map
//!   would (see [`Engine::sweep_idle`]).

use std::cmp::{Ordering, Reverse};

use compact_str::CompactString;

use crate::compact::MaybeMs;
use crate::partitioning::partition_of_u32;

use super::learning::teach_ended_session;
use super::session::label_ended_session;
use super::{holds_nothing, DropReason, Engine, EngineSink};

/// A visitor in the idle queue: `time` is at most its latest event time.
/// Ordered by time, reversed, so that `BinaryHeap` pops the earliest.
pub(super) struct IdleItem {
    pub(super) time: i64,
    pub(super) visitor: CompactString,
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

impl Engine {
    /// Moves partition `part`'s watermark to `t` if later, then expires
    /// that partition's waiting events past their TTL and, every quarter
    /// of the idle expiry, sweeps its idle visitors. Only this partition's
    /// visitors are touched, by this partition's clock.
    pub(super) fn advance_watermark(&mut self, part: usize, t: i64, sink: &mut impl EngineSink) {
        let ps = &mut self.parts[part];
        if t <= ps.watermark_ms {
            return;
        }
        let previous = std::mem::replace(&mut ps.watermark_ms, t);
        let ttl = self.config.buffer_ttl_ms;
        while let Some(Reverse((deadline, _))) = ps.ttl_queue.peek() {
            if *deadline >= t {
                break;
            }
            let Some(Reverse((_, visitor))) = ps.ttl_queue.pop() else {
                break;
            };
            if let Some(entry) = self.visitors.get_mut(visitor.as_str()) {
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
                    if holds_nothing(entry) {
                        self.visitors.remove(visitor.as_str());
                    }
                }
            }
        }
        // Idle sweeps at fixed multiples of a quarter of the idle expiry:
        // whether one runs depends on the clock alone, which the changelog
        // keeps, not on when this engine started.
        let period = (self.config.visitor_idle_ms / 4).max(1000);
        if previous != i64::MIN && t.div_euclid(period) > previous.div_euclid(period) {
            self.sweep_idle(part, t, sink);
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
        // Sessions ending here teach the learners after the sweep, in an
        // order of their own (last event, then visitor): the queue's order
        // among equal times depends on its history, which a restore does
        // not reproduce, and learning is order-dependent.
        let mut to_teach: Vec<(CompactString, crate::visitor::Session)> = Vec::new();
        while ps.idle_queue.peek().is_some_and(|i| i.time < limit) {
            let Some(item) = ps.idle_queue.pop() else {
                break;
            };
            let Some(entry) = self.visitors.get_mut(item.visitor.as_str()) else {
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
                    if let Some(ended) = a.session.take() {
                        label_ended_session(&ended, &mut self.online);
                        if self.config.adaptive.is_some() {
                            to_teach.push((item.visitor.clone(), ended));
                        }
                    }
                    self.peaks.forget(item.visitor.as_str());
                    a.last_offer_ms = MaybeMs::NONE;
                    a.idle_queued = false;
                    entry.last_event_ms = MaybeMs::NONE;
                    entry.tidy();
                    sink.state_changed(item.visitor.as_str());
                    if holds_nothing(entry) {
                        self.visitors.remove(item.visitor.as_str());
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
        to_teach.sort_unstable_by(|a, b| (a.1.last_ms, &a.0).cmp(&(b.1.last_ms, &b.0)));
        for (visitor, ended) in &to_teach {
            teach_ended_session(
                &self.config,
                &self.models,
                ps,
                &self.vectors,
                visitor.as_str(),
                ended,
            );
            self.vectors.forget(visitor.as_str());
        }
        for visitor in std::mem::take(&mut ps.idle_recheck) {
            if self
                .visitors
                .get(visitor.as_str())
                .is_some_and(|e| holds_nothing(e) && !e.last_event_ms.is_some())
            {
                self.visitors.remove(visitor.as_str());
            }
        }
    }

    /// End of input (replay, training): events still waiting for consent
    /// can no longer get it and are dropped as expired.
    pub fn finish(&mut self, sink: &mut impl EngineSink) {
        let partitions = self.config.partitions;
        // (partition, events expired, visitor left holding nothing)
        let mut expired: Vec<(u32, u64, Option<CompactString>)> = Vec::new();
        for (visitor, entry) in self.visitors.iter_mut() {
            if let Some(a) = entry.activity.as_deref_mut() {
                if !a.buffer.is_empty() {
                    let n = a.buffer.len() as u64;
                    a.buffer.clear();
                    entry.tidy();
                    sink.state_changed(visitor.as_str());
                    let empty = holds_nothing(entry) && !entry.last_event_ms.is_some();
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
}
