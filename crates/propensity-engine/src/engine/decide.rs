//! Decisions: what a processed event's session leads to. Every outcome the
//! session has not achieved is scored (where a model exists), then the
//! action maps are tried in priority order — trigger, conditions, purpose
//! consent, frequency caps — and the first that passes them all takes the
//! event: it makes the offer, or, for a visitor in the map's control group,
//! holds it out. Every map whose trigger and conditions held gets one
//! decision record (`offered`, `held_out`, `capped`, `no_purpose`,
//! `lower_priority`, `contact_policy`).
//!
//! Invariants kept here:
//! - At most one offer per event, and caps are checked before an offer
//!   exists: a map stopped by its purpose or a cap counts as suppressed and
//!   changes no cap state.
//! - A held-out decision changes the cap state exactly as an offer would
//!   and sends nothing, so both arms of a control group see the same caps.
//! - Every counted decision is one of the six kinds, so decisions =
//!   offered + held out + capped + no purpose + lower priority + contact
//!   policy, per map. A map its contact policy suppresses for the visitor
//!   (after declined offers) is checked after purpose and before the caps,
//!   and consumes no cap.
//! - An achieved outcome is neither scored nor offered on for the rest of
//!   the session (its probability stays `None`).
//! - Offer ids are a stable hash of visitor, session, map and event, so a
//!   replay of the same input gives the same ids; nothing here reads a
//!   clock (`now_ms` is passed in).
//! - `last_probability` is updated only after every map has looked at the
//!   previous value, so a falling trigger compares with the previous event.
//! - A `falls_to` offer is explained by what fell since the session's
//!   peak score of the outcome (see `peaks`), other offers by the largest
//!   contributions to their score. The peaks move only after every map has
//!   looked at this event, so a fall's offer sees the peak it fell from.

use crate::compact::MaybeMs;
use crate::config::{ActionMap, EngineConfig, Trigger};
use crate::control_group::in_control_arm;
use crate::features::FeatureScratch;
use crate::model::{ModelSet, OutcomeModel};
use crate::purpose::PurposeSet;
use crate::stable_hash::stable_hash_parts;
use crate::timestamp::format_rfc3339_ms;
use crate::visitor::Session;
use crate::wire::{
    Arm, Contribution, Conversion, Decision, DecisionKind, Event, ModelRole, Offer, OutcomeScore,
};

use super::feedback::suppressed;
use super::learning::{ensure_learner, role_model};
use super::partition::PartitionState;
use super::peaks::Peak;
use super::session::EventCtx;
use super::EngineSink;

impl EventCtx<'_> {
    /// Scores the outcomes `session` has not achieved into the scratch
    /// probabilities (`None`: achieved, or no model), reporting examples,
    /// probabilities and scores to `sink`.
    pub(super) fn score(
        &mut self,
        session: &Session,
        event: &Event<'_>,
        sink: &mut impl EngineSink,
    ) {
        let cfg = self.config;
        let t = event.time.epoch_ms;
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
            // An adaptive champion replaces the loaded model's score.
            if cfg
                .adaptive
                .as_ref()
                .is_some_and(|a| a.role == ModelRole::Champion)
            {
                score_learners(
                    cfg,
                    self.models,
                    self.part,
                    session,
                    ModelRole::Champion,
                    &scratch.features,
                    &mut scratch.probabilities,
                );
            }
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
                let model = role_model(cfg, self.models, self.part, i, ModelRole::Champion);
                let (Some(model), Some(p)) = (model, scratch.probabilities[i]) else {
                    continue;
                };
                self.counters.scores += 1;
                sink.probability(i, p);
                if let (true, Some(counts), Some(reference)) = (
                    scratch.drift_sampled,
                    self.drift.get_mut(i).and_then(Option::as_mut),
                    model.drift_reference(),
                ) {
                    counts.observe(
                        reference,
                        scratch.features.values(),
                        scratch.features.nonzero(),
                        p,
                    );
                }
                if wants_scores {
                    publish_score(
                        sink,
                        (event, session, &outcome.name),
                        (model, p),
                        &mut event_time,
                        ModelRole::Champion,
                    );
                }
            }
            if has_challengers(cfg, self.models) {
                self.score_challengers(session, event, event_time, sink);
            }
        }
    }

    /// Scores the challengers in shadow on the vector [`EventCtx::score`]
    /// computed, into the scratch's challenger probabilities, publishing
    /// them with `role = challenger`. Nothing that decides reads them.
    fn score_challengers(
        &mut self,
        session: &Session,
        event: &Event<'_>,
        mut event_time: Option<String>,
        sink: &mut impl EngineSink,
    ) {
        let scratch = &mut *self.scratch;
        let n = self.config.outcomes.len();
        scratch.challenger_probabilities.clear();
        scratch.challenger_probabilities.resize(n, None);
        self.models.challenger_probabilities(
            scratch.features.values(),
            scratch.features.nonzero(),
            |i| session.achieved & (1 << i) != 0,
            &mut scratch.challenger_probabilities,
        );
        if self.config.adaptive.is_some() {
            score_learners(
                self.config,
                self.models,
                self.part,
                session,
                ModelRole::Challenger,
                &scratch.features,
                &mut scratch.challenger_probabilities,
            );
        }
        if !sink.wants_scores() {
            return;
        }
        for (i, outcome) in self.config.outcomes.iter().enumerate() {
            let model = role_model(
                self.config,
                self.models,
                self.part,
                i,
                ModelRole::Challenger,
            );
            let (Some(model), Some(p)) = (model, scratch.challenger_probabilities[i]) else {
                continue;
            };
            publish_score(
                sink,
                (event, session, &outcome.name),
                (model, p),
                &mut event_time,
                ModelRole::Challenger,
            );
        }
    }

    /// Tries the action maps on the probabilities [`EventCtx::score`] left
    /// in the scratch, makes at most one offer, then remembers the
    /// probabilities for the next event's triggers.
    pub(super) fn decide(
        &mut self,
        session: &mut Session,
        last_offer_ms: &mut MaybeMs,
        event: &Event<'_>,
        purposes: PurposeSet,
        now_ms: Option<i64>,
        sink: &mut impl EngineSink,
    ) {
        let cfg = self.config;
        let t = event.time.epoch_ms;
        let visitor = event.visitor_id.as_ref();
        let scratch = &*self.scratch;
        let wants_decisions = sink.wants_decisions();
        let mut event_time = None;
        // Action maps, highest priority first: the first that fires and
        // passes consent and caps takes the event (an offer, or a held-out
        // decision in its control group); every map that fires gets a
        // decision.
        let mut taken = false;
        for (mi, map) in cfg.action_maps.iter().enumerate() {
            let Some(p) = scratch.probabilities[map.outcome] else {
                continue;
            };
            let prev = session.last_probability[map.outcome];
            let Some(model) = role_model(
                cfg,
                self.models,
                self.part,
                map.outcome,
                ModelRole::Champion,
            ) else {
                continue;
            };
            if !fires(map, model, p, prev) || !conditions_hold(map, session) {
                continue;
            }
            // The arm hashes visitor, map and period: computed only where an
            // offer would go out or a decision record needs it.
            let arm_of = || {
                if in_control_arm(
                    visitor,
                    &map.name,
                    cfg.holdout_period,
                    map.holdout_threshold,
                    t,
                ) {
                    Arm::Control
                } else {
                    Arm::Treatment
                }
            };
            let mut arm = None;
            let kind = if taken {
                self.counters.lower_priority_by_map[mi] += 1;
                DecisionKind::LowerPriority
            } else if !purposes.grants(map.purpose) {
                self.counters.suppressed_by_purpose[mi] += 1;
                DecisionKind::NoPurpose
            } else if map.contact_policy.is_some() && suppressed(self.contact, visitor, mi, t) {
                self.counters.suppressed_by_contact_by_map[mi] += 1;
                DecisionKind::ContactPolicy
            } else if session.offers_per_map[mi] >= map.max_per_session
                || session.offers_total >= cfg.max_offers_per_session
                || last_offer_ms
                    .get()
                    .is_some_and(|last| t - last < cfg.min_offer_gap_ms)
            {
                self.counters.suppressed_by_cap[mi] += 1;
                DecisionKind::Capped
            } else {
                // Both arms consume the caps alike, so they stay comparable.
                taken = true;
                session.offers_per_map[mi] += 1;
                session.offers_total += 1;
                *last_offer_ms = MaybeMs::new(Some(t));
                // The session's first decision of each arm counts it in
                // that arm for attribution.
                let this_arm = *arm.insert(arm_of());
                let bit = arm_bit(mi, this_arm);
                let first_in_arm = session.decided_arms & bit == 0;
                session.decided_arms |= bit;
                match this_arm {
                    Arm::Control => {
                        self.counters.held_out_by_map[mi] += 1;
                        self.counters.sessions_held_out_by_map[mi] += u64::from(first_in_arm);
                        DecisionKind::HeldOut
                    }
                    Arm::Treatment => {
                        self.counters.offers_by_map[mi] += 1;
                        self.counters.sessions_offered_by_map[mi] += u64::from(first_in_arm);
                        DecisionKind::Offered
                    }
                }
            };
            if !wants_decisions && kind != DecisionKind::Offered {
                continue;
            }
            let arm = arm.unwrap_or_else(arm_of);
            let percentile = model.percentile(p);
            let session_id = session.id.as_str();
            let parts: [&[u8]; 4] = [
                visitor.as_bytes(),
                session_id.as_bytes(),
                map.name.as_bytes(),
                event.event_id.as_bytes(),
            ];
            let decision_id = hex_id(stable_hash_parts(1, &parts), stable_hash_parts(2, &parts));
            let time = event_time.get_or_insert_with(|| format_rfc3339_ms(t));
            if wants_decisions {
                sink.decision(&Decision {
                    decision_id: &decision_id,
                    visitor_id: visitor,
                    session_id,
                    action_map: &map.name,
                    outcome: &cfg.outcomes[map.outcome].name,
                    decision: kind,
                    arm,
                    probability: p,
                    percentile,
                    model_version: &model.version,
                    trigger_event_id: &event.event_id,
                    event_time: time,
                });
            }
            if kind == DecisionKind::Offered {
                sink.offer(Offer {
                    offer_id: decision_id,
                    visitor_id: visitor.to_owned(),
                    session_id: session_id.to_owned(),
                    action_map: map.name.clone(),
                    action: map.action.clone(),
                    purpose: map.purpose,
                    outcome: cfg.outcomes[map.outcome].name.clone(),
                    probability: p,
                    percentile,
                    model_version: model.version.clone(),
                    trigger_event_id: event.event_id.to_string(),
                    event_time: time.clone(),
                    decided_at: format_rfc3339_ms(now_ms.unwrap_or(t)),
                    explanation: explain(
                        model,
                        map,
                        self.peaks.peak(visitor, session.serial, map.outcome),
                        scratch.features.values(),
                        t,
                        cfg.features.names(),
                    ),
                });
            }
        }
        self.peaks.observe(
            visitor,
            session.serial,
            &session.last_probability,
            &scratch.probabilities,
            t,
            &scratch.features,
        );
        for (i, p) in scratch.probabilities.iter().enumerate() {
            if let Some(p) = p {
                session.last_probability[i] = *p as f32;
            }
        }
        if has_challengers(cfg, self.models) {
            remember_challenger_scores(session, &scratch.challenger_probabilities);
        }
        if cfg.adaptive.is_some() && scratch.probabilities.iter().any(Option::is_some) {
            self.vectors
                .observe(visitor, session.serial, &scratch.features);
        }
    }
}

impl EventCtx<'_> {
    /// Attribution: `session` just achieved outcome `outcome`, so it
    /// converted in every arm it was decided in, for each map of that
    /// outcome, within the attribution window (default: the rest of the
    /// session). Counted, and one conversion record per map and arm.
    pub(super) fn attribute(
        &mut self,
        session: &Session,
        last_decision_ms: Option<i64>,
        event: &Event<'_>,
        outcome: usize,
        sink: &mut impl EngineSink,
    ) {
        let cfg = self.config;
        // The window runs from the latest offered or held-out decision of
        // any map (the caps' last offer time: both arms set it alike).
        if cfg.attribution_window_ms > 0
            && last_decision_ms.is_some_and(|d| event.time.epoch_ms - d > cfg.attribution_window_ms)
        {
            return;
        }
        let wants_conversions = sink.wants_conversions();
        let mut event_time = None;
        for (mi, map) in cfg.action_maps.iter().enumerate() {
            if map.outcome != outcome {
                continue;
            }
            for arm in [Arm::Treatment, Arm::Control] {
                if session.decided_arms & arm_bit(mi, arm) == 0 {
                    continue;
                }
                match arm {
                    Arm::Treatment => self.counters.converted_offered_by_map[mi] += 1,
                    Arm::Control => self.counters.converted_held_out_by_map[mi] += 1,
                }
                if !wants_conversions {
                    continue;
                }
                let visitor = event.visitor_id.as_ref();
                let session_id = session.id.as_str();
                let parts: [&[u8]; 4] = [
                    visitor.as_bytes(),
                    session_id.as_bytes(),
                    map.name.as_bytes(),
                    arm.as_str().as_bytes(),
                ];
                let conversion_id =
                    hex_id(stable_hash_parts(4, &parts), stable_hash_parts(5, &parts));
                let time = event_time.get_or_insert_with(|| format_rfc3339_ms(event.time.epoch_ms));
                sink.conversion(&Conversion {
                    conversion_id: &conversion_id,
                    visitor_id: visitor,
                    session_id,
                    action_map: &map.name,
                    outcome: &cfg.outcomes[outcome].name,
                    arm,
                    event_id: &event.event_id,
                    event_time: time,
                });
            }
        }
    }
}

/// The bit of `Session::decided_arms` that says the session had a decision
/// of map `map_index` in `arm` (maps are at most 16: two 16-bit halves).
fn arm_bit(map_index: usize, arm: Arm) -> u32 {
    1 << (map_index
        + match arm {
            Arm::Treatment => 0,
            Arm::Control => 16,
        })
}

/// `format!("{a:016x}{b:016x}")`, written directly.
pub(super) fn hex_id(a: u64, b: u64) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for v in [a, b] {
        for k in (0..16).rev() {
            out.push(char::from(HEX[((v >> (4 * k)) & 0xf) as usize]));
        }
    }
    out
}

/// The reasons of an offer whose score saw the vector `now`: for a
/// `falls_to` map, what fell since the session's peak of the outcome (when
/// one is known); otherwise, and as a fallback, the largest contributions
/// to this score.
fn explain(
    model: &OutcomeModel,
    map: &ActionMap,
    peak: Option<&Peak>,
    now: &[f32],
    t: i64,
    names: &[String],
) -> Vec<Contribution> {
    match (map.trigger, peak) {
        (Trigger::FallsTo { .. }, Some(peak)) => {
            let gap_secs = (t - peak.event_ms()).max(0) as f64 / 1000.0;
            model.explain_fall(&peak.vector(now.len()), now, names, gap_secs, 3)
        }
        _ => model.explain(now, names, 3),
    }
}

fn fires(map: &ActionMap, model: &OutcomeModel, p: f64, prev: f32) -> bool {
    match map.trigger {
        Trigger::AtOrAbove { threshold } => p >= threshold,
        Trigger::FallsTo { threshold } => {
            !prev.is_nan() && f64::from(prev) > threshold && p <= threshold
        }
        Trigger::TopPercent { value } => model
            .percentile(p)
            .is_some_and(|pc| u16::from(pc) + u16::from(value) >= 100),
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

/// Keeps the challengers' scores of this event in the session's slots
/// after the champions' (`last_probability[n + i]`, see
/// [`Session::last_probability`]), for labelling the session when it
/// resolves. The slots are added the first time a challenger scores the
/// session, so sessions without challengers keep `n` slots.
fn remember_challenger_scores(session: &mut Session, challenger: &[Option<f64>]) {
    let n = challenger.len();
    if session.last_probability.len() < 2 * n {
        session.last_probability.resize(2 * n, f32::NAN);
    }
    for (i, p) in challenger.iter().enumerate() {
        if let Some(p) = p {
            session.last_probability[n + i] = *p as f32;
        }
    }
}

/// Whether any outcome has a challenger: a loaded one or a learner.
fn has_challengers(config: &EngineConfig, models: &ModelSet) -> bool {
    models.has_challengers()
        || config
            .adaptive
            .as_ref()
            .is_some_and(|a| a.role == ModelRole::Challenger)
}

/// Scores the outcomes that learn in `role` with the partition's learners
/// (warm-started on first use) into `out`, skipping achieved outcomes.
fn score_learners(
    config: &EngineConfig,
    models: &ModelSet,
    part: &mut PartitionState,
    session: &Session,
    role: ModelRole,
    features: &FeatureScratch,
    out: &mut [Option<f64>],
) {
    let Some(adaptive) = &config.adaptive else {
        return;
    };
    for i in 0..config.outcomes.len() {
        if !adaptive.learns_as(i, role)
            || session.achieved & (1 << i) != 0
            || !ensure_learner(config, models, part, i)
        {
            continue;
        }
        let learner = part.learners.get(i).and_then(Option::as_ref);
        if let (Some(l), Some(slot)) = (learner, out.get_mut(i)) {
            *slot = Some(
                l.model()
                    .probability_sparse(features.values(), features.nonzero()),
            );
        }
    }
}

/// Sends the score record of `p` from `model` in `role` for an event, its
/// session and an outcome; the event time is formatted once per event, by
/// the first score that needs it.
fn publish_score(
    sink: &mut impl EngineSink,
    (event, session, outcome): (&Event<'_>, &Session, &str),
    (model, p): (&OutcomeModel, f64),
    event_time: &mut Option<String>,
    role: ModelRole,
) {
    let time = event_time.get_or_insert_with(|| format_rfc3339_ms(event.time.epoch_ms));
    sink.score(&OutcomeScore {
        event_id: &event.event_id,
        visitor_id: event.visitor_id.as_ref(),
        session_id: session.id.as_str(),
        outcome,
        probability: p,
        percentile: model.percentile(p),
        model_version: &model.version,
        event_time: time,
        role,
    });
}
