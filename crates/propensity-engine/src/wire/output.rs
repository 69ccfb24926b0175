//! The records the engine emits: offers (with the action they ask for and
//! the contributions that explain them), decisions, outcome scores, and
//! dead letters with their JSON-lines form.
//!
//! Invariants: these serialized forms are the output contract (consumers
//! read them and golden tests pin them), so a field is never renamed,
//! reordered or dropped here; a dead letter keeps the original payload
//! whole, as text when it is UTF-8 and as base64 otherwise, and its message
//! never quotes field values.
//!
//! [`ActionSpec`] lives here rather than in the configuration because it is
//! part of the offer record; the configuration re-exports it for action
//! maps, so the wire contract does not depend on the configuration.

use base64::Engine as _;
use serde::{Deserialize, Serialize};

use super::errors::DeadLetterReason;
use crate::purpose::Purpose;

/// One feature's part in a score, for a person and for a program.
///
/// `label` was added to the contract after `feature`, `value` and
/// `contribution` and is written last; records from before it read back
/// with an empty label.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    /// Feature name (see `propensity features`).
    pub feature: String,
    /// The feature's value in its own units: a count (3 views), seconds, 0/1
    /// for a flag, a fraction for a share — the model's transform
    /// (`ln(1 + x)` for counts and durations) inverted.
    pub value: f64,
    /// Its contribution to the log-odds: weight × (vector value − training
    /// mean) / training deviation, on the transformed scale the model uses.
    pub contribution: f64,
    /// What the value means, in words ("viewed pricing pages 3 times").
    #[serde(default)]
    pub label: String,
}
/// The action an offer asks the engagement service to take.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, tag = "type", rename_all = "snake_case")]
pub enum ActionSpec {
    /// Proactive chat, routed to a queue.
    Chat {
        /// Routing queue.
        queue: String,
    },
    /// Callback request, routed to a queue.
    Callback {
        /// Routing queue.
        queue: String,
    },
    /// A content offer (e.g. a guide or a discount).
    ContentOffer {
        /// Content identifier.
        content_id: String,
    },
    /// A webhook call by the engagement service.
    Webhook {
        /// Target URL.
        url: String,
    },
}

impl ActionSpec {
    /// The wire name of the action type.
    pub fn type_name(&self) -> &'static str {
        match self {
            ActionSpec::Chat { .. } => "chat",
            ActionSpec::Callback { .. } => "callback",
            ActionSpec::ContentOffer { .. } => "content_offer",
            ActionSpec::Webhook { .. } => "webhook",
        }
    }
}

/// An engagement offer (output topic, key = `visitor_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Offer {
    /// Deterministic id: the same inputs always give the same id.
    pub offer_id: String,
    /// Visitor id.
    pub visitor_id: String,
    /// Session id (explicit, or derived `auto-…`).
    pub session_id: String,
    /// Action map that fired.
    pub action_map: String,
    /// What to do.
    pub action: ActionSpec,
    /// The consent purpose the offer relies on.
    pub purpose: Purpose,
    /// The outcome whose probability fired the map.
    pub outcome: String,
    /// P(outcome achieved in this session).
    pub probability: f64,
    /// Where the probability falls among the training population's scores
    /// (0–99: 90 or more is the top 10 %); absent when the model has no
    /// score distribution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<u8>,
    /// Version of the model that scored it.
    pub model_version: String,
    /// The event after which the offer was decided.
    pub trigger_event_id: String,
    /// That event's time, RFC 3339.
    pub event_time: String,
    /// When the decision was made, RFC 3339 (the event time in replay; wall
    /// clock in the Kafka runtime).
    pub decided_at: String,
    /// Up to three reasons (see [`crate::model::OutcomeModel::explain`]
    /// for how they are chosen).
    pub explanation: Vec<Contribution>,
}

/// An outcome score (optional output): one per scored event, outcome and
/// model role (the champion's, and the challenger's where one is loaded).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutcomeScore<'a> {
    /// Scored event.
    pub event_id: &'a str,
    /// Visitor id.
    pub visitor_id: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// Outcome.
    pub outcome: &'a str,
    /// P(outcome achieved).
    pub probability: f64,
    /// Where the probability falls among the training population's scores
    /// (0–99: 90 or more is the top 10 %); absent when the model has no
    /// score distribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentile: Option<u8>,
    /// Model version.
    pub model_version: &'a str,
    /// Event time, RFC 3339.
    pub event_time: &'a str,
    /// `champion` (the model whose scores drive offers) or `challenger`
    /// (scored in shadow, never offered on). Added after `event_time`.
    pub role: ModelRole,
}

/// Which of an outcome's models a score comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelRole {
    /// The model that serves: its scores drive the action maps.
    Champion,
    /// The model scored in shadow beside it: published and evaluated only.
    Challenger,
}

impl ModelRole {
    /// Both roles, champion first (the order of the online-evaluation
    /// slots, see `Engine::online_eval`).
    pub const ALL: [ModelRole; 2] = [ModelRole::Champion, ModelRole::Challenger];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ModelRole::Champion => "champion",
            ModelRole::Challenger => "challenger",
        }
    }
}

/// What an action map's decision was (see [`Decision`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DecisionKind {
    /// An offer went out.
    Offered,
    /// The visitor is in the map's control group: the caps were consumed
    /// as by an offer, and nothing was sent.
    HeldOut,
    /// A frequency cap stopped it.
    Capped,
    /// The visitor's consent lacks the map's purpose.
    NoPurpose,
    /// A map of higher priority took the event (offered or held out).
    LowerPriority,
    /// The map's contact policy suppresses it for the visitor (after
    /// declined offers).
    ContactPolicy,
}

impl DecisionKind {
    /// Every kind, in counter order.
    pub const ALL: [DecisionKind; 6] = [
        DecisionKind::Offered,
        DecisionKind::HeldOut,
        DecisionKind::Capped,
        DecisionKind::NoPurpose,
        DecisionKind::LowerPriority,
        DecisionKind::ContactPolicy,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            DecisionKind::Offered => "offered",
            DecisionKind::HeldOut => "held_out",
            DecisionKind::Capped => "capped",
            DecisionKind::NoPurpose => "no_purpose",
            DecisionKind::LowerPriority => "lower_priority",
            DecisionKind::ContactPolicy => "contact_policy",
        }
    }
}

/// The arm of a map's control group a visitor is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Arm {
    /// Offers are made (every visitor, when the map has no control group).
    Treatment,
    /// Offers are held out.
    Control,
}

impl Arm {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Arm::Treatment => "treatment",
            Arm::Control => "control",
        }
    }
}

/// A decision (optional output, key = `visitor_id`): one per action map
/// whose trigger and conditions held on an event, whether or not an offer
/// went out. An `offered` decision's id is its offer's id.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision<'a> {
    /// Deterministic id: a stable hash of visitor, session, map and event.
    pub decision_id: &'a str,
    /// Visitor id.
    pub visitor_id: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// The action map.
    pub action_map: &'a str,
    /// The outcome whose probability fired the map.
    pub outcome: &'a str,
    /// What was decided.
    pub decision: DecisionKind,
    /// The visitor's arm of the map's control group in this period.
    pub arm: Arm,
    /// P(outcome achieved in this session).
    pub probability: f64,
    /// Where the probability falls among the training population's scores
    /// (0–99: 90 or more is the top 10 %); absent when the model has no
    /// score distribution.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub percentile: Option<u8>,
    /// Version of the model that scored it.
    pub model_version: &'a str,
    /// The event after which it was decided.
    pub trigger_event_id: &'a str,
    /// That event's time, RFC 3339.
    pub event_time: &'a str,
}

/// A conversion (optional output, key = `visitor_id`): a session achieved
/// an outcome after an `offered` or `held_out` decision of an action map of
/// that outcome. One per map and arm the session was decided in, so the
/// records per map and arm count the control group's conversions (the
/// attribution window is the rest of the session).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Conversion<'a> {
    /// Deterministic id: a stable hash of visitor, session, map and arm.
    pub conversion_id: &'a str,
    /// Visitor id.
    pub visitor_id: &'a str,
    /// Session id.
    pub session_id: &'a str,
    /// The action map the conversion is attributed to.
    pub action_map: &'a str,
    /// The outcome achieved.
    pub outcome: &'a str,
    /// The arm the session was decided in.
    pub arm: Arm,
    /// The event that achieved the outcome.
    pub event_id: &'a str,
    /// That event's time, RFC 3339.
    pub event_time: &'a str,
}

/// Where a record came from, for dead letters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Origin {
    /// A line of a file.
    File {
        /// Path.
        file: String,
        /// 1-based line number.
        line: u64,
    },
    /// A Kafka record.
    Kafka {
        /// Topic.
        topic: String,
        /// Partition.
        partition: i32,
        /// Offset.
        offset: i64,
    },
    /// Anything else (tests, benchmarks).
    Unknown,
}

/// A dead-lettered record.
#[derive(Debug, Clone, PartialEq)]
pub struct DeadLetter<'a> {
    /// Reason code.
    pub reason: DeadLetterReason,
    /// Human message.
    pub error: String,
    /// The original bytes, whole.
    pub payload: &'a [u8],
    /// Where it came from.
    pub origin: &'a Origin,
}

#[derive(Serialize)]
struct DeadLetterLine<'a> {
    reason: &'static str,
    error: &'a str,
    source: &'a Origin,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    payload_base64: Option<String>,
}

impl DeadLetter<'_> {
    /// The JSON-lines form used in files: the payload as a string when it is
    /// UTF-8, otherwise base64 in `payload_base64`, so it is kept whole.
    pub fn to_json_line(&self) -> String {
        let text = std::str::from_utf8(self.payload).ok();
        let line = DeadLetterLine {
            reason: self.reason.code(),
            error: &self.error,
            source: self.origin,
            payload: text,
            payload_base64: if text.is_none() {
                Some(base64::engine::general_purpose::STANDARD.encode(self.payload))
            } else {
                None
            },
        };
        serde_json::to_string(&line).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_line_keeps_payload_whole() {
        let origin = Origin::File {
            file: "in.jsonl".into(),
            line: 7,
        };
        let dl = DeadLetter {
            reason: DeadLetterReason::InvalidJson,
            error: "not valid JSON".into(),
            payload: b"{oops",
            origin: &origin,
        };
        let v: serde_json::Value = serde_json::from_str(&dl.to_json_line()).unwrap();
        assert_eq!(v["payload"], "{oops");
        assert_eq!(v["reason"], "invalid_json");
        assert_eq!(v["source"]["line"], 7);
        let bin = DeadLetter {
            payload: &[0xff, 0x00],
            ..dl
        };
        let v: serde_json::Value = serde_json::from_str(&bin.to_json_line()).unwrap();
        assert_eq!(v["payload_base64"], "/wA=");
    }
}
