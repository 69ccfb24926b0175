//! Counters: what the engine did, as numbers — [`DropReason`] (why a valid
//! event was not processed), [`EngineCounters`] (totals and gauges) and
//! [`EngineSummary`] (the same with names instead of indices).
//!
//! Invariants kept here:
//! - Array counters are indexed in the `ALL` order of their enum
//!   (`EventKind::ALL`, [`DropReason::ALL`], `DeadLetterReason::ALL`), and
//!   the per-outcome and per-map lists in config order; the codes are
//!   stable, as they are metric labels and summary keys.
//! - [`EngineCounters::reconciles`] states invariant 3 of the engine:
//!   every consumed event is processed, dropped, dead-lettered or still
//!   buffered. The engine keeps it by counting each event in exactly one
//!   of those buckets and moving it out of `buffered_events` when it
//!   leaves the buffer.
//! - Gauges (`buffered_events`, `active_sessions`, `visitors`) are the
//!   state held now; [`EngineCounters::merge`] sums them like totals (the
//!   state of several engines), and [`EngineCounters::totals_only`] is
//!   what stays once the state is gone.

use serde::Serialize;

use crate::config::EngineConfig;
use crate::control_group::{uplift, Uplift};
use crate::visitor::PriorDenial;
use crate::wire::{DeadLetterReason, EventKind, FeedbackStatus};

use super::FeedbackCounters;

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
    /// Decisions held out (control group) per action map: the caps were
    /// consumed as by an offer, nothing was sent.
    pub held_out_by_map: Vec<u64>,
    /// Decisions of a map whose trigger and conditions held on an event a
    /// higher-priority map took. With the three above, every decision:
    /// decisions = offers + held out + capped + no purpose + lower priority.
    pub lower_priority_by_map: Vec<u64>,
    /// Decisions of a map its contact policy suppressed for the visitor
    /// (after declines, see `feedback`). With the four above, every
    /// decision: decisions = offers + held out + capped + no purpose +
    /// lower priority + contact policy.
    pub suppressed_by_contact_by_map: Vec<u64>,
    /// Offer feedback.
    pub feedback: FeedbackCounters,
    /// Sessions with at least one `offered` decision, per action map.
    pub sessions_offered_by_map: Vec<u64>,
    /// Sessions with at least one `held_out` decision, per action map.
    pub sessions_held_out_by_map: Vec<u64>,
    /// Of those offered, the sessions that then achieved the map's outcome.
    pub converted_offered_by_map: Vec<u64>,
    /// Of those held out, the sessions that then achieved the map's outcome.
    pub converted_held_out_by_map: Vec<u64>,
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
        add_list(&mut self.held_out_by_map, &other.held_out_by_map);
        add_list(
            &mut self.lower_priority_by_map,
            &other.lower_priority_by_map,
        );
        add_list(
            &mut self.suppressed_by_contact_by_map,
            &other.suppressed_by_contact_by_map,
        );
        self.feedback.merge(&other.feedback);
        for (mine, theirs) in [
            (
                &mut self.sessions_offered_by_map,
                &other.sessions_offered_by_map,
            ),
            (
                &mut self.sessions_held_out_by_map,
                &other.sessions_held_out_by_map,
            ),
            (
                &mut self.converted_offered_by_map,
                &other.converted_offered_by_map,
            ),
            (
                &mut self.converted_held_out_by_map,
                &other.converted_held_out_by_map,
            ),
        ] {
            add_list(mine, theirs);
        }
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
    /// Held out (control group), per action map.
    pub held_out_by_action_map: std::collections::BTreeMap<String, u64>,
    /// Taken by a map of higher priority, per action map.
    pub lower_priority_by_action_map: std::collections::BTreeMap<String, u64>,
    /// Suppressed by the map's contact policy (after declines), per map.
    pub suppressed_by_contact_policy: std::collections::BTreeMap<String, u64>,
    /// Offer feedback.
    pub feedback: FeedbackSummary,
    /// Per action map with a control group at work (sessions in both
    /// arms or either): sessions offered and held out, how many of each
    /// then achieved the map's outcome, and the uplift.
    pub control_groups: std::collections::BTreeMap<String, ControlGroupResult>,
}

/// Offer feedback in a summary (see [`FeedbackCounters`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FeedbackSummary {
    /// Records consumed.
    pub consumed: u64,
    /// Applied.
    pub applied: u64,
    /// Dropped: no tracking consent.
    pub dropped_no_consent: u64,
    /// Dropped: unknown action map.
    pub dropped_unknown_map: u64,
    /// Dead-lettered.
    pub dead_lettered: u64,
    /// Whether consumed = applied + dropped + dead-lettered.
    pub reconciles: bool,
    /// Applied feedback per action map and status (maps with any).
    pub by_action_map: std::collections::BTreeMap<String, std::collections::BTreeMap<String, u64>>,
    /// Suppressions the contact policies started, per action map (maps
    /// with a policy).
    pub suppressions_by_action_map: std::collections::BTreeMap<String, u64>,
}

/// One action map's control-group reading (see [`EngineSummary::control_groups`]).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ControlGroupResult {
    /// Sessions with an `offered` decision of the map.
    pub offered_sessions: u64,
    /// Of those, sessions that then achieved the map's outcome.
    pub offered_converted: u64,
    /// Sessions with a `held_out` decision of the map.
    pub held_out_sessions: u64,
    /// Of those, sessions that then achieved the map's outcome.
    pub held_out_converted: u64,
    /// Conversion difference with its 95 % interval; `None` until both arms
    /// have a session.
    pub uplift: Option<Uplift>,
}

impl ControlGroupResult {
    /// The reading of these counts, with the uplift when both arms have a
    /// session.
    pub fn new(
        offered_sessions: u64,
        offered_converted: u64,
        held_out_sessions: u64,
        held_out_converted: u64,
    ) -> Self {
        Self {
            offered_sessions,
            offered_converted,
            held_out_sessions,
            held_out_converted,
            uplift: uplift(
                offered_sessions,
                offered_converted,
                held_out_sessions,
                held_out_converted,
            ),
        }
    }
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
            let n = c.events_dead_lettered[i]
                + c.consent_dead_lettered[i]
                + c.feedback.dead_lettered[i];
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
            held_out_by_action_map: per_map(&c.held_out_by_map),
            lower_priority_by_action_map: per_map(&c.lower_priority_by_map),
            suppressed_by_contact_policy: per_map(&c.suppressed_by_contact_by_map),
            feedback: FeedbackSummary {
                consumed: c.feedback.consumed,
                applied: c.feedback.applied,
                dropped_no_consent: c.feedback.dropped_no_consent,
                dropped_unknown_map: c.feedback.dropped_unknown_map,
                dead_lettered: c.feedback.dead_lettered.iter().sum(),
                reconciles: c.feedback.reconciles(),
                by_action_map: config
                    .action_maps
                    .iter()
                    .zip(&c.feedback.by_map_status)
                    .filter(|(_, counts)| counts.iter().any(|n| *n > 0))
                    .map(|(m, counts)| {
                        let by_status = FeedbackStatus::ALL
                            .iter()
                            .map(|s| (s.as_str().to_owned(), counts[s.index()]))
                            .collect();
                        (m.name.clone(), by_status)
                    })
                    .collect(),
                suppressions_by_action_map: config
                    .action_maps
                    .iter()
                    .zip(&c.feedback.suppressions_by_map)
                    .filter(|(m, _)| m.contact_policy.is_some())
                    .map(|(m, n)| (m.name.clone(), *n))
                    .collect(),
            },
            control_groups: config
                .action_maps
                .iter()
                .enumerate()
                .filter_map(|(i, m)| {
                    let at = |v: &[u64]| v.get(i).copied().unwrap_or(0);
                    let r = ControlGroupResult::new(
                        at(&c.sessions_offered_by_map),
                        at(&c.converted_offered_by_map),
                        at(&c.sessions_held_out_by_map),
                        at(&c.converted_held_out_by_map),
                    );
                    (m.holdout_threshold > 0 || r.held_out_sessions > 0)
                        .then(|| (m.name.clone(), r))
                })
                .collect(),
        }
    }
}

/// The counter index of a dead-letter reason (`DeadLetterReason::ALL`
/// order).
pub(super) fn reason_index(reason: DeadLetterReason) -> usize {
    DeadLetterReason::ALL
        .iter()
        .position(|r| *r == reason)
        .unwrap_or(0)
}
