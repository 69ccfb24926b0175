//! The offer-feedback decoder: what an engagement service reports about an
//! offer it received (shown, accepted, declined, ignored, expired) →
//! validated [`FeedbackUpdate`], or a [`DecodeError`].
//!
//! Invariants: a keyed record's key equals its `visitor_id` (feedback is
//! co-partitioned with events, by visitor); `action_map` is required — the
//! engine keeps no table of the offers it made, so a feedback record says
//! which map's offer it answers (every offer carries its `action_map`);
//! [`FEEDBACK_SHAPES`] lists exactly the fields of [`RawFeedback`], with
//! the shapes serde accepts (a unit test checks both ways).

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

use super::decode::{check_id, check_key, check_size_and_utf8, cow, required_time, Obj, Text};
use super::errors::{classify_serde_error, DecodeError, Shape};

#[derive(Deserialize)]
struct RawFeedback<'a> {
    #[serde(borrow)]
    offer_id: Option<Text<'a>>,
    #[serde(borrow)]
    visitor_id: Option<Text<'a>>,
    #[serde(borrow)]
    action_map: Option<Text<'a>>,
    #[serde(borrow)]
    status: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
}

/// The JSON shape of every field of [`RawFeedback`], for naming the field
/// at fault when serde rejects a record.
const FEEDBACK_SHAPES: &[(&str, Shape)] = &[
    ("offer_id", Shape::Str),
    ("visitor_id", Shape::Str),
    ("action_map", Shape::Str),
    ("status", Shape::Str),
    ("timestamp", Shape::Str),
];

/// What happened to an offer, as its engagement service reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FeedbackStatus {
    /// The offer was presented to the visitor.
    Shown,
    /// The visitor took it up.
    Accepted,
    /// The visitor turned it down.
    Declined,
    /// The visitor saw it and did nothing.
    Ignored,
    /// It was never shown (the visitor left, the queue was closed…).
    Expired,
}

impl FeedbackStatus {
    /// Every status, in counter order.
    pub const ALL: [FeedbackStatus; 5] = [
        FeedbackStatus::Shown,
        FeedbackStatus::Accepted,
        FeedbackStatus::Declined,
        FeedbackStatus::Ignored,
        FeedbackStatus::Expired,
    ];

    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            FeedbackStatus::Shown => "shown",
            FeedbackStatus::Accepted => "accepted",
            FeedbackStatus::Declined => "declined",
            FeedbackStatus::Ignored => "ignored",
            FeedbackStatus::Expired => "expired",
        }
    }

    /// The counter index ([`FeedbackStatus::ALL`] order).
    pub fn index(self) -> usize {
        self as usize
    }
}

/// A validated feedback record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedbackUpdate<'a> {
    /// The offer it answers.
    pub offer_id: Cow<'a, str>,
    /// Visitor id.
    pub visitor_id: Cow<'a, str>,
    /// The action map of that offer.
    pub action_map: Cow<'a, str>,
    /// What happened.
    pub status: FeedbackStatus,
    /// When, epoch ms.
    pub time_ms: i64,
}

/// Decodes a feedback record; `key` is the Kafka key when there is one and
/// must equal `visitor_id`.
pub fn decode_feedback<'a>(
    key: Option<&[u8]>,
    bytes: &'a [u8],
    max_bytes: usize,
) -> Result<FeedbackUpdate<'a>, DecodeError> {
    let text = check_size_and_utf8(bytes, max_bytes)?;
    let Obj(raw) = serde_json::from_str::<Obj<RawFeedback<'_>>>(text)
        .map_err(|e| classify_serde_error(bytes, &e, FEEDBACK_SHAPES))?;
    let visitor_id = check_id("visitor_id", cow(raw.visitor_id))?;
    check_key(key, &visitor_id)?;
    let offer_id = check_id("offer_id", cow(raw.offer_id))?;
    let action_map = check_id("action_map", cow(raw.action_map))?;
    let status_text = cow(raw.status).ok_or_else(|| DecodeError::missing("status"))?;
    let status = FeedbackStatus::ALL
        .into_iter()
        .find(|s| s.as_str() == status_text)
        .ok_or_else(|| {
            DecodeError::invalid(
                "status",
                "must be one of shown, accepted, declined, ignored, expired",
            )
        })?;
    let time = required_time(raw.timestamp)?;
    Ok(FeedbackUpdate {
        offer_id,
        visitor_id,
        action_map,
        status,
        time_ms: time.epoch_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::DeadLetterReason;

    const MAX: usize = 65_536;

    #[test]
    fn feedback_records() {
        let f = decode_feedback(
            Some(b"v1"),
            br#"{"offer_id":"o1","visitor_id":"v1","action_map":"chat","status":"declined","timestamp":"2026-11-29T10:00:00Z"}"#,
            MAX,
        )
        .unwrap();
        assert_eq!(
            (f.offer_id.as_ref(), f.action_map.as_ref(), f.status),
            ("o1", "chat", FeedbackStatus::Declined)
        );
        for (record, reason) in [
            (
                &br#"{"offer_id":"o1","visitor_id":"v1","action_map":"chat","status":"maybe","timestamp":"2026-11-29T10:00:00Z"}"#[..],
                DeadLetterReason::InvalidField,
            ),
            (
                br#"{"offer_id":"o1","visitor_id":"v1","status":"shown","timestamp":"2026-11-29T10:00:00Z"}"#,
                DeadLetterReason::MissingField,
            ),
            (
                br#"{"offer_id":"o1","visitor_id":"v2","action_map":"chat","status":"shown","timestamp":"2026-11-29T10:00:00Z"}"#,
                DeadLetterReason::KeyMismatch,
            ),
            (
                br#"{"offer_id":"o1","visitor_id":"v1","action_map":"chat","status":"shown","timestamp":"yesterday"}"#,
                DeadLetterReason::InvalidTimestamp,
            ),
        ] {
            let e = decode_feedback(Some(b"v1"), record, MAX).unwrap_err();
            assert_eq!(e.reason, reason, "{}", String::from_utf8_lossy(record));
        }
    }

    #[test]
    fn shape_table_matches_raw_structs() {
        use crate::wire::errors::shape_tables::{assert_table_matches, fields_of};
        assert_table_matches(
            FEEDBACK_SHAPES,
            &[("", fields_of::<RawFeedback<'_>>())],
            &[],
            |record| serde_json::from_str::<Obj<RawFeedback<'_>>>(record).is_ok(),
            |record| decode_feedback(None, record.as_bytes(), MAX).err(),
        );
    }
}
