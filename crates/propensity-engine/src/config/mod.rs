//! Engine configuration: the raw form deserialized from what the user wrote
//! (`settings`: `*Settings`, unknown keys rejected) and the validated form
//! the engine runs on (`EngineConfig`, here), converted once by
//! [`EngineConfig::from_settings`].
//!
//! Every validation error names the key path at fault (for example
//! `action_maps[1].outcome`), because a config error is a user error and the
//! user must be able to find the line to fix.

mod settings;

pub use settings::*;

use crate::control_group::{holdout_threshold, HoldoutPeriod};
use crate::error::EngineError;
use crate::features::{FeatureSpec, Vocabulary};
use crate::glob::UrlPattern;
use crate::purpose::{Purpose, PurposeSet};
use crate::visitor::MAX_ACTION_MAPS;
use crate::wire::{DeviceCategory, EventKind, FormAction};

// The action type is part of the offer record, so the wire contract owns
// it; re-exported here because action maps are configured with it (and
// `config::ActionSpec` stays a valid path).
pub use crate::wire::ActionSpec;

/// A validated outcome.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// Outcome name.
    pub name: String,
    /// Required event type (derived from the predicate's fields).
    pub event_type: Option<EventKind>,
    /// URL path pattern.
    pub url_path: Option<UrlPattern>,
    /// Form id.
    pub form_id: Option<String>,
    /// Form action.
    pub form_action: Option<FormAction>,
    /// Custom event name.
    pub custom_name: Option<String>,
}

/// A validated action map.
#[derive(Debug, Clone)]
pub struct ActionMap {
    /// Name.
    pub name: String,
    /// Index into [`EngineConfig::outcomes`].
    pub outcome: usize,
    /// Trigger.
    pub trigger: Trigger,
    /// Purpose the offer needs.
    pub purpose: Purpose,
    /// Priority (higher wins).
    pub priority: i32,
    /// Per-session cap of this map.
    pub max_per_session: u32,
    /// The control group's share as a threshold on the assignment hash
    /// ([`crate::control_group::holdout_threshold`]); 0: no control group.
    pub holdout_threshold: u64,
    /// Contact policy from offer feedback (`None`: feedback is counted
    /// only).
    pub contact_policy: Option<ContactPolicy>,
    /// Minimum events in session.
    pub min_events: u32,
    /// Current-page pattern.
    pub url_pattern: Option<UrlPattern>,
    /// Allowed device categories.
    pub device_categories: Option<Vec<DeviceCategory>>,
    /// Allowed traffic sources, lower-cased.
    pub traffic_sources: Option<Vec<String>>,
    /// The action.
    pub action: ActionSpec,
}

/// A validated contact policy (see `ContactPolicySettings`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContactPolicy {
    /// Declines that suppress the map.
    pub max_declines: u16,
    /// The window declines count in, ms.
    pub window_ms: i64,
    /// How long a suppression lasts, ms.
    pub suppress_ms: i64,
}

/// The validated configuration the engine runs on.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Consent mode.
    pub consent_mode: ConsentMode,
    /// Purposes of a visitor without a record in opt-out mode.
    pub opt_out_purposes: PurposeSet,
    /// Pre-consent buffer TTL (event time).
    pub buffer_ttl_ms: i64,
    /// Pre-consent buffer cap per visitor.
    pub buffer_max_per_visitor: usize,
    /// Pre-consent buffer cap per partition (all visitors of a partition).
    pub buffer_max_total: usize,
    /// The partition count visitors are placed by (murmur2 of the visitor
    /// id, as Kafka's producers place them): the events topic's partition
    /// count. Every engine-level clock and bound is kept per partition
    /// ([`crate::Engine`]), so this must be the count the input was (or
    /// would be) partitioned with for `replay` to equal `run`. Not part of
    /// [`EngineSettings`]: callers set it with
    /// [`EngineConfig::with_partitions`] (default 1).
    pub partitions: u32,
    /// Session inactivity timeout.
    pub session_timeout_ms: i64,
    /// Visitor state idle expiry.
    pub visitor_idle_ms: i64,
    /// Allowed lateness.
    pub allowed_lateness_ms: i64,
    /// Event ids remembered per session.
    pub max_event_ids_per_session: usize,
    /// Record size limit.
    pub max_record_bytes: usize,
    /// Compiled feature spec.
    pub features: FeatureSpec,
    /// Outcomes, in configuration order (the order of scores).
    pub outcomes: Vec<Outcome>,
    /// Per-session cap across maps.
    pub max_offers_per_session: u32,
    /// Minimum gap between offers to a visitor.
    pub min_offer_gap_ms: i64,
    /// How long a visitor stays in one arm of a control group.
    pub holdout_period: HoldoutPeriod,
    /// Attribution window after the session's latest offered or held-out
    /// decision, ms; 0: the rest of the session.
    pub attribution_window_ms: i64,
    /// Action maps sorted by priority (descending), then name: the first
    /// map that fires on an event wins, which makes ties deterministic.
    pub action_maps: Vec<ActionMap>,
    /// The adaptive model (`None`: no outcome learns).
    pub adaptive: Option<AdaptiveConfig>,
}

/// [`AdaptiveSettings`], validated.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveConfig {
    /// Per outcome (config order): whether it learns.
    pub learns: Vec<bool>,
    /// Its role.
    pub role: crate::wire::ModelRole,
    /// FTRL hyper-parameters and the warm start's weight.
    pub alpha: f64,
    /// See [`AdaptiveSettings::beta`].
    pub beta: f64,
    /// See [`AdaptiveSettings::l1`].
    pub l1: f64,
    /// See [`AdaptiveSettings::l2`].
    pub l2: f64,
    /// See [`AdaptiveSettings::prior_sessions`].
    pub prior_sessions: f64,
}

impl AdaptiveConfig {
    /// Whether outcome `i` learns in `role`.
    pub fn learns_as(&self, i: usize, role: crate::wire::ModelRole) -> bool {
        self.role == role && self.learns.get(i).copied().unwrap_or(false)
    }
}

fn adaptive_config(
    s: &AdaptiveSettings,
    outcomes: &[Outcome],
) -> Result<Option<AdaptiveConfig>, EngineError> {
    if s.outcomes.is_empty() {
        return Ok(None);
    }
    let mut learns = vec![false; outcomes.len()];
    for (k, name) in s.outcomes.iter().enumerate() {
        let Some(i) = outcomes.iter().position(|o| &o.name == name) else {
            return Err(EngineError::config(
                format!("adaptive.outcomes[{k}]"),
                format!("`{name}` is not a configured outcome"),
            ));
        };
        learns[i] = true;
    }
    for (key, v, positive) in [
        ("adaptive.alpha", s.alpha, true),
        ("adaptive.beta", s.beta, false),
        ("adaptive.l1", s.l1, false),
        ("adaptive.l2", s.l2, false),
        ("adaptive.prior_sessions", s.prior_sessions, false),
    ] {
        if !v.is_finite() || v < 0.0 || (positive && v == 0.0) {
            let what = if positive {
                "positive"
            } else {
                "zero or positive"
            };
            return Err(EngineError::config(
                key,
                format!("must be a {what} number, got {v}"),
            ));
        }
    }
    Ok(Some(AdaptiveConfig {
        learns,
        role: s.role,
        alpha: s.alpha,
        beta: s.beta,
        l1: s.l1,
        l2: s.l2,
        prior_sessions: s.prior_sessions,
    }))
}

fn secs_to_ms(key: &str, secs: f64, allow_zero: bool) -> Result<i64, EngineError> {
    if !secs.is_finite() || secs < 0.0 || (!allow_zero && secs == 0.0) || secs > 1e9 {
        return Err(EngineError::config(
            key,
            format!("must be a positive number of seconds, got {secs}"),
        ));
    }
    Ok((secs * 1000.0).round() as i64)
}

fn check_name(key: &str, name: &str) -> Result<(), EngineError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(EngineError::config(
            key,
            format!("`{name}` must be 1-64 characters of [A-Za-z0-9_-]"),
        ))
    }
}

impl EngineConfig {
    /// Validates settings; every error names the key at fault.
    pub fn from_settings(s: &EngineSettings) -> Result<Self, EngineError> {
        let buffer_ttl_ms = secs_to_ms("consent.buffer_ttl_secs", s.consent.buffer_ttl_secs, true)?;
        if s.consent.buffer_max_per_visitor == 0 && s.consent.mode == ConsentMode::OptIn {
            // Zero is allowed (no buffering) but then every pre-consent event
            // is dropped at once; that is a valid, if strict, choice.
        }
        let session_timeout_ms = secs_to_ms(
            "sessions.inactivity_timeout_secs",
            s.sessions.inactivity_timeout_secs,
            false,
        )?;
        let visitor_idle_ms = secs_to_ms(
            "sessions.visitor_idle_expiry_secs",
            s.sessions.visitor_idle_expiry_secs,
            false,
        )?;
        if visitor_idle_ms < session_timeout_ms {
            return Err(EngineError::config(
                "sessions.visitor_idle_expiry_secs",
                "must be at least sessions.inactivity_timeout_secs, or sessions would be forgotten before they end",
            ));
        }
        let allowed_lateness_ms = secs_to_ms(
            "sessions.allowed_lateness_secs",
            s.sessions.allowed_lateness_secs,
            true,
        )?;
        if s.sessions.max_event_ids_per_session == 0 {
            return Err(EngineError::config(
                "sessions.max_event_ids_per_session",
                "must be at least 1",
            ));
        }
        if s.input.max_record_bytes < 256 {
            return Err(EngineError::config(
                "input.max_record_bytes",
                "must be at least 256",
            ));
        }
        let features = FeatureSpec::compile(&s.features)?;

        if s.outcomes.is_empty() {
            return Err(EngineError::config(
                "outcomes",
                "declare at least one [[outcomes]]",
            ));
        }
        let mut outcomes = Vec::with_capacity(s.outcomes.len());
        for (i, o) in s.outcomes.iter().enumerate() {
            let key = format!("outcomes[{i}]");
            check_name(&format!("{key}.name"), &o.name)?;
            if outcomes.iter().any(|x: &Outcome| x.name == o.name) {
                return Err(EngineError::config(
                    format!("{key}.name"),
                    format!("duplicate outcome `{}`", o.name),
                ));
            }
            outcomes.push(compile_outcome(&key, o)?);
        }

        if s.action_maps.len() > MAX_ACTION_MAPS {
            return Err(EngineError::config(
                "action_maps",
                format!(
                    "at most {MAX_ACTION_MAPS} action maps, got {}",
                    s.action_maps.len()
                ),
            ));
        }
        let mut action_maps = Vec::with_capacity(s.action_maps.len());
        for (i, m) in s.action_maps.iter().enumerate() {
            let key = format!("action_maps[{i}]");
            check_name(&format!("{key}.name"), &m.name)?;
            if action_maps.iter().any(|x: &ActionMap| x.name == m.name) {
                return Err(EngineError::config(
                    format!("{key}.name"),
                    format!("duplicate action map `{}`", m.name),
                ));
            }
            action_maps.push(compile_action_map(&key, m, &outcomes)?);
        }
        action_maps.sort_by(|a, b| b.priority.cmp(&a.priority).then(a.name.cmp(&b.name)));

        let adaptive = adaptive_config(&s.adaptive, &outcomes)?;
        Ok(Self {
            consent_mode: s.consent.mode,
            opt_out_purposes: PurposeSet::from_purposes(&s.consent.opt_out_default_purposes),
            buffer_ttl_ms,
            buffer_max_per_visitor: s.consent.buffer_max_per_visitor,
            buffer_max_total: s.consent.buffer_max_total,
            session_timeout_ms,
            visitor_idle_ms,
            allowed_lateness_ms,
            max_event_ids_per_session: s.sessions.max_event_ids_per_session,
            max_record_bytes: s.input.max_record_bytes,
            features,
            outcomes,
            max_offers_per_session: s.offers.max_per_session,
            min_offer_gap_ms: secs_to_ms("offers.min_gap_secs", s.offers.min_gap_secs, true)?,
            holdout_period: s.offers.holdout_period,
            attribution_window_ms: secs_to_ms(
                "offers.attribution_window_secs",
                s.offers.attribution_window_secs,
                true,
            )?,
            action_maps,
            adaptive,
            partitions: 1,
        })
    }

    /// The same configuration placing visitors among `partitions` Kafka
    /// partitions (the events topic's count; `kafka.partitions`, or the
    /// count the topics really have). Refused outside
    /// 1..=[`MAX_PARTITIONS`](crate::partitioning::MAX_PARTITIONS).
    pub fn with_partitions(mut self, partitions: i32) -> Result<Self, EngineError> {
        let max = crate::partitioning::MAX_PARTITIONS;
        match u32::try_from(partitions) {
            Ok(n) if (1..=max).contains(&n) => {
                self.partitions = n;
                Ok(self)
            }
            _ => Err(EngineError::config(
                "kafka.partitions",
                format!("must be within 1..={max}, got {partitions}"),
            )),
        }
    }

    /// The same configuration with its features compiled with a learned
    /// vocabulary (see [`FeatureSpec::with_vocabulary`]).
    pub fn with_vocabulary(mut self, vocabulary: Vocabulary) -> Result<Self, EngineError> {
        self.features = self.features.with_vocabulary(vocabulary)?;
        Ok(self)
    }

    /// Index of the outcome called `name`.
    pub fn outcome_index(&self, name: &str) -> Option<usize> {
        self.outcomes.iter().position(|o| o.name == name)
    }
}

fn compile_outcome(key: &str, o: &OutcomeSettings) -> Result<Outcome, EngineError> {
    let w = &o.achieved_when;
    let mut implied: Option<EventKind> = None;
    if w.form_id.is_some() || w.form_action.is_some() {
        implied = Some(EventKind::FormFill);
    }
    if w.custom_name.is_some() {
        if implied.is_some() {
            return Err(EngineError::config(
                format!("{key}.achieved_when"),
                "form_* and custom_name cannot both be set: no event is both",
            ));
        }
        implied = Some(EventKind::Custom);
    }
    let event_type = match (w.event_type, implied) {
        (Some(t), Some(i)) if t != i => {
            return Err(EngineError::config(
                format!("{key}.achieved_when.event_type"),
                format!(
                    "`{}` contradicts the other fields, which need `{}`",
                    t.as_str(),
                    i.as_str()
                ),
            ))
        }
        (t, i) => t.or(i),
    };
    if event_type.is_none() && w.url_path.is_none() {
        return Err(EngineError::config(
            format!("{key}.achieved_when"),
            "set at least one of event_type, url_path, form_id, form_action, custom_name",
        ));
    }
    let url_path = match &w.url_path {
        Some(p) => Some(
            UrlPattern::parse(p)
                .map_err(|e| EngineError::config(format!("{key}.achieved_when.url_path"), e))?,
        ),
        None => None,
    };
    Ok(Outcome {
        name: o.name.clone(),
        event_type,
        url_path,
        form_id: w.form_id.clone(),
        form_action: w.form_action,
        custom_name: w.custom_name.clone(),
    })
}

fn compile_action_map(
    key: &str,
    m: &ActionMapSettings,
    outcomes: &[Outcome],
) -> Result<ActionMap, EngineError> {
    let outcome = outcomes
        .iter()
        .position(|o| o.name == m.outcome)
        .ok_or_else(|| {
            let known: Vec<&str> = outcomes.iter().map(|o| o.name.as_str()).collect();
            EngineError::config(
                format!("{key}.outcome"),
                format!(
                    "unknown outcome `{}` (declared: {})",
                    m.outcome,
                    known.join(", ")
                ),
            )
        })?;
    match m.trigger {
        Trigger::AtOrAbove { threshold } | Trigger::FallsTo { threshold } => {
            if !(0.0..=1.0).contains(&threshold) {
                return Err(EngineError::config(
                    format!("{key}.trigger.threshold"),
                    format!("must be within [0, 1], got {threshold}"),
                ));
            }
        }
        Trigger::TopPercent { value } => {
            if !(1..=99).contains(&value) {
                return Err(EngineError::config(
                    format!("{key}.trigger.value"),
                    format!(
                        "must be a whole percent from 1 to 99 (10: the top 10 % of scores), got {value}"
                    ),
                ));
            }
        }
    }
    if !(0.0..1.0).contains(&m.holdout_fraction) {
        return Err(EngineError::config(
            format!("{key}.holdout_fraction"),
            format!(
                "must be within [0, 1) (0.05 holds out 5 % of visitors), got {}",
                m.holdout_fraction
            ),
        ));
    }
    if m.max_per_session == 0 {
        return Err(EngineError::config(
            format!("{key}.max_per_session"),
            "must be at least 1 (remove the map to disable it)",
        ));
    }
    let contact_policy = match &m.contact_policy {
        None => None,
        Some(c) => {
            let days = |field: &str, v: f64| -> Result<i64, EngineError> {
                if v.is_finite() && v > 0.0 && v <= 3650.0 {
                    Ok((v * 86_400_000.0).round() as i64)
                } else {
                    Err(EngineError::config(
                        format!("{key}.contact_policy.{field}"),
                        format!("must be a number of days in (0, 3650], got {v}"),
                    ))
                }
            };
            let max_declines = u16::try_from(c.max_declines)
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    EngineError::config(
                        format!("{key}.contact_policy.max_declines"),
                        format!("must be from 1 to 65535, got {}", c.max_declines),
                    )
                })?;
            Some(ContactPolicy {
                max_declines,
                window_ms: days("within_days", c.within_days)?,
                suppress_ms: days("suppress_days", c.suppress_days)?,
            })
        }
    };
    let non_empty = |field: &str, v: &str| -> Result<(), EngineError> {
        if v.trim().is_empty() {
            Err(EngineError::config(
                format!("{key}.action.{field}"),
                "must not be empty",
            ))
        } else {
            Ok(())
        }
    };
    match &m.action {
        ActionSpec::Chat { queue } | ActionSpec::Callback { queue } => non_empty("queue", queue)?,
        ActionSpec::ContentOffer { content_id } => non_empty("content_id", content_id)?,
        ActionSpec::Webhook { url } => {
            non_empty("url", url)?;
            if !(url.starts_with("https://") || url.starts_with("http://")) {
                return Err(EngineError::config(
                    format!("{key}.action.url"),
                    "must be an http(s) URL",
                ));
            }
        }
    }
    let url_pattern = match &m.conditions.url_pattern {
        Some(p) => Some(
            UrlPattern::parse(p)
                .map_err(|e| EngineError::config(format!("{key}.conditions.url_pattern"), e))?,
        ),
        None => None,
    };
    Ok(ActionMap {
        name: m.name.clone(),
        outcome,
        trigger: m.trigger,
        purpose: m.purpose,
        priority: m.priority,
        max_per_session: m.max_per_session,
        holdout_threshold: holdout_threshold(m.holdout_fraction),
        contact_policy,
        min_events: m.conditions.min_events.unwrap_or(0),
        url_pattern,
        device_categories: m.conditions.device_categories.clone(),
        traffic_sources: m
            .conditions
            .traffic_sources
            .as_ref()
            .map(|v| v.iter().map(|s| s.to_ascii_lowercase()).collect()),
        action: m.action.clone(),
    })
}
