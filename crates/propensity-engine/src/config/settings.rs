//! The configuration as the user wrote it: the `[consent]`, `[sessions]`,
//! `[input]`, `[features]`, `[[outcomes]]`, `[offers]` and `[[action_maps]]`
//! tables deserialized with unknown keys rejected, before any validation.
//! [`super::EngineConfig::from_settings`] turns them into the form the
//! engine runs on.

use crate::control_group::HoldoutPeriod;
use serde::{Deserialize, Serialize};

use crate::features::FeatureSettings;
use crate::purpose::Purpose;
use crate::wire::{ActionSpec, DeviceCategory, EventKind, FormAction};

/// Whether a visitor without any consent record may be tracked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum ConsentMode {
    /// No record means no tracking (GDPR default).
    #[default]
    OptIn,
    /// No record means tracking is allowed until a record says otherwise.
    OptOut,
}

/// `[consent]`: the consent gate and the pre-consent buffer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsentSettings {
    /// `opt_in` or `opt_out`.
    pub mode: ConsentMode,
    /// Purposes granted to a visitor without a record in `opt_out` mode.
    pub opt_out_default_purposes: Vec<Purpose>,
    /// How long (event time) an event may wait for its visitor's first
    /// consent record in `opt_in` mode.
    pub buffer_ttl_secs: f64,
    /// At most this many events wait per visitor; more are dropped.
    pub buffer_max_per_visitor: usize,
    /// At most this many events wait per Kafka partition (of the visitors'
    /// ids, see [`crate::partitioning`]); more are dropped. Per partition,
    /// not per process, so the cap bites the same whether one engine holds
    /// every partition (`replay`) or one each (`run`).
    pub buffer_max_total: usize,
}

impl Default for ConsentSettings {
    fn default() -> Self {
        Self {
            mode: ConsentMode::OptIn,
            opt_out_default_purposes: vec![
                Purpose::Tracking,
                Purpose::Support,
                Purpose::Sales,
                Purpose::Marketing,
            ],
            buffer_ttl_secs: 10.0,
            buffer_max_per_visitor: 64,
            buffer_max_total: 100_000,
        }
    }
}

/// `[sessions]`: session boundaries and the life of visitor state.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionSettings {
    /// A gap longer than this (event time) starts a new session when events
    /// carry no `session_id`.
    pub inactivity_timeout_secs: f64,
    /// Visitor session state is dropped after this much event-time
    /// inactivity, which bounds memory by the number of active visitors.
    pub visitor_idle_expiry_secs: f64,
    /// Events older than the visitor's newest event by more than this are
    /// dropped as `late` (they would corrupt dwell times and sessions).
    pub allowed_lateness_secs: f64,
    /// Event ids remembered per session for duplicate detection.
    pub max_event_ids_per_session: usize,
}

impl Default for SessionSettings {
    fn default() -> Self {
        Self {
            inactivity_timeout_secs: 1200.0,
            visitor_idle_expiry_secs: 3600.0,
            allowed_lateness_secs: 300.0,
            max_event_ids_per_session: 256,
        }
    }
}

/// `[input]`: limits on records.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InputSettings {
    /// Records larger than this are dead-lettered as `too_large`.
    pub max_record_bytes: usize,
}

impl Default for InputSettings {
    fn default() -> Self {
        Self {
            max_record_bytes: 64 * 1024,
        }
    }
}

/// `[[outcomes]]`: a business outcome and when a session achieves it.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutcomeSettings {
    /// Outcome name; also the model file name (`<name>.json`).
    pub name: String,
    /// The predicate that marks the outcome achieved.
    pub achieved_when: AchievedWhen,
}

/// An outcome predicate. Every given field must match.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AchievedWhen {
    /// Event type.
    pub event_type: Option<EventKind>,
    /// Glob (`*` = any run of characters) matched against the URL path.
    pub url_path: Option<String>,
    /// Form id (implies `form_fill`).
    pub form_id: Option<String>,
    /// Form action (implies `form_fill`).
    pub form_action: Option<FormAction>,
    /// Custom event name (implies `custom`).
    pub custom_name: Option<String>,
}

/// `[offers]`: frequency caps across action maps.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OfferSettings {
    /// At most this many offers per session, across all action maps.
    pub max_per_session: u32,
    /// Minimum event-time gap between two offers to the same visitor.
    pub min_gap_secs: f64,
    /// How long a visitor stays in one arm of a map's control group
    /// (`day`, `week`, `month` or `never`): the period of the event time,
    /// UTC.
    pub holdout_period: HoldoutPeriod,
    /// Attribution window: a session's outcome counts as a conversion of
    /// its offered and held-out decisions when achieved within this many
    /// seconds of the session's latest one; 0 (the default): any time in
    /// the rest of the session.
    pub attribution_window_secs: f64,
}

impl Default for OfferSettings {
    fn default() -> Self {
        Self {
            max_per_session: 3,
            min_gap_secs: 10.0,
            holdout_period: HoldoutPeriod::Month,
            attribution_window_secs: 0.0,
        }
    }
}

/// When an action map fires.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "kind", rename_all = "snake_case")]
pub enum Trigger {
    /// The probability is at or above `threshold`.
    AtOrAbove {
        /// Threshold in [0, 1].
        threshold: f64,
    },
    /// The probability falls from above `threshold` to at or below it
    /// ("the visitor is slipping away").
    FallsTo {
        /// Threshold in [0, 1].
        threshold: f64,
    },
    /// The score is in the top `value` % of the training population's
    /// scores (its percentile is at least `100 − value`; see
    /// `OutcomeModel::percentile`): a threshold that keeps its meaning
    /// when a retrained model shifts every probability. Needs models with
    /// a score distribution (trained by this version).
    TopPercent {
        /// Share of the training population, in percent, 1 to 99.
        value: u8,
    },
}

/// Optional conditions of an action map; all given ones must hold.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConditionSettings {
    /// Minimum number of processed events in the session.
    pub min_events: Option<u32>,
    /// Glob matched against the URL path of the visitor's current page.
    pub url_pattern: Option<String>,
    /// Allowed device categories.
    pub device_categories: Option<Vec<DeviceCategory>>,
    /// Allowed traffic sources (compared case-insensitively).
    pub traffic_sources: Option<Vec<String>>,
}

/// `[[action_maps]]`: when to make which offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActionMapSettings {
    /// Unique name; appears in offers and metrics.
    pub name: String,
    /// The outcome whose probability drives the trigger.
    pub outcome: String,
    /// When it fires.
    pub trigger: Trigger,
    /// The consent purpose the offer needs.
    pub purpose: Purpose,
    /// Higher wins when several maps fire on one event.
    #[serde(default)]
    pub priority: i32,
    /// At most this many offers of this map per session.
    #[serde(default = "one")]
    pub max_per_session: u32,
    /// Share of visitors in this map's control group, in [0, 1): where the
    /// map would make an offer to one of them, the decision is recorded as
    /// `held_out`, consumes the caps like an offer, and nothing is sent.
    /// 0 (the default) means no control group.
    #[serde(default)]
    pub holdout_fraction: f64,
    /// Optional contact policy driven by offer feedback: after
    /// `max_declines` declines within `within_days`, the map makes no offer
    /// to the visitor for `suppress_days`.
    #[serde(default)]
    pub contact_policy: Option<ContactPolicySettings>,
    /// Optional conditions.
    #[serde(default)]
    pub conditions: ConditionSettings,
    /// What to offer.
    pub action: ActionSpec,
}

fn one() -> u32 {
    1
}

/// `contact_policy = { max_declines = 3, within_days = 30, suppress_days = 5 }`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContactPolicySettings {
    /// Declines (feedback `declined`) that suppress the map, 1 or more.
    pub max_declines: u32,
    /// Declines count within this many days of the first one counted
    /// (default 30); an acceptance or a suppression starts the count anew.
    #[serde(default = "thirty")]
    pub within_days: f64,
    /// How long the map stays suppressed for the visitor, in days.
    pub suppress_days: f64,
}

fn thirty() -> f64 {
    30.0
}

/// Everything the engine reads from the configuration file.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EngineSettings {
    /// `[consent]`
    #[serde(default)]
    pub consent: ConsentSettings,
    /// `[sessions]`
    #[serde(default)]
    pub sessions: SessionSettings,
    /// `[input]`
    #[serde(default)]
    pub input: InputSettings,
    /// `[features]`
    pub features: FeatureSettings,
    /// `[[outcomes]]`
    pub outcomes: Vec<OutcomeSettings>,
    /// `[offers]`
    #[serde(default)]
    pub offers: OfferSettings,
    /// `[[action_maps]]`
    #[serde(default)]
    pub action_maps: Vec<ActionMapSettings>,
    /// `[adaptive]`
    #[serde(default)]
    pub adaptive: AdaptiveSettings,
}

/// `[adaptive]`: outcomes whose model also learns online, with
/// FTRL-Proximal, from the sessions it resolves (see [`crate::adaptive`]).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdaptiveSettings {
    /// The outcomes that learn (empty: none, the default).
    pub outcomes: Vec<String>,
    /// `challenger` (the adaptive model is scored in shadow beside the
    /// static champion) or `champion` (it serves: its scores drive offers).
    pub role: crate::wire::ModelRole,
    /// FTRL's learning-rate scale: per feature, the rate is
    /// `alpha / (beta + sqrt(n))`, `n` the sum of its squared gradients.
    pub alpha: f64,
    /// FTRL's learning-rate offset.
    pub beta: f64,
    /// L1 regularisation (drives weights to exactly 0).
    pub l1: f64,
    /// L2 regularisation.
    pub l2: f64,
    /// How many resolved sessions' worth of squared gradient the warm start
    /// counts as already seen (`n` starts here): larger keeps the trained
    /// weights longer, smaller lets the stream move them sooner.
    pub prior_sessions: f64,
}

impl Default for AdaptiveSettings {
    fn default() -> Self {
        Self {
            outcomes: Vec::new(),
            role: crate::wire::ModelRole::Challenger,
            alpha: 0.05,
            beta: 1.0,
            l1: 0.0,
            l2: 0.0,
            prior_sessions: 50.0,
        }
    }
}
