//! The consent decoder: a consent record (or a Kafka tombstone) → validated
//! [`ConsentUpdate`], or a [`DecodeError`].
//!
//! Owns the raw consent forms, the [`CONSENT_SHAPES`] table, and what a
//! record means for the gate ([`ConsentChange`]).
//!
//! Invariants: a record states the visitor's complete consent, not a delta,
//! and a purpose it does not mention is not granted (consent must be
//! explicit); `erase: true` or a tombstone (key without value) means erase,
//! whatever purposes the record lists; a keyed record's key equals its
//! `visitor_id`; `CONSENT_SHAPES` lists exactly the fields of the `Raw*`
//! structs, with the shapes serde accepts (a unit test checks both ways).

use std::borrow::Cow;

use serde::Deserialize;

use super::decode::{
    check_id, check_key, check_size_and_utf8, cow, object, required_time, Obj, Text,
};
use super::errors::{classify_serde_error, DeadLetterReason, DecodeError, Shape};
use crate::purpose::{Purpose, PurposeSet};

#[derive(Deserialize)]
struct RawConsent<'a> {
    #[serde(borrow)]
    visitor_id: Option<Text<'a>>,
    #[serde(borrow)]
    timestamp: Option<Text<'a>>,
    #[serde(default, deserialize_with = "object")]
    purposes: Option<RawPurposes>,
    erase: Option<bool>,
    #[serde(borrow)]
    #[allow(dead_code)]
    source: Option<Text<'a>>,
    #[serde(borrow)]
    #[allow(dead_code)]
    consent_id: Option<Text<'a>>,
}

#[derive(Deserialize)]
struct RawPurposes {
    tracking: Option<bool>,
    support: Option<bool>,
    sales: Option<bool>,
    marketing: Option<bool>,
}

/// The JSON shape of every field of the raw consent forms, for naming the
/// field at fault when serde rejects a record. It copies the `Raw*` structs
/// above by hand and must list exactly their fields: the
/// `shape_table_matches_raw_structs` test fails when the two differ.
const CONSENT_SHAPES: &[(&str, Shape)] = &[
    ("visitor_id", Shape::Str),
    ("timestamp", Shape::Str),
    ("purposes", Shape::Obj),
    ("purposes.tracking", Shape::Bool),
    ("purposes.support", Shape::Bool),
    ("purposes.sales", Shape::Bool),
    ("purposes.marketing", Shape::Bool),
    ("erase", Shape::Bool),
    ("source", Shape::Str),
    ("consent_id", Shape::Str),
];

/// What a consent record says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsentChange {
    /// The visitor's complete consent state (not a delta).
    State(PurposeSet),
    /// Forget everything about the visitor.
    Erase,
}

/// A validated consent record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentUpdate<'a> {
    /// Visitor id.
    pub visitor_id: Cow<'a, str>,
    /// Record time, epoch ms.
    pub time_ms: i64,
    /// What it says.
    pub change: ConsentChange,
}

/// Decodes a consent record. `key` is the Kafka key when there is one: it
/// must equal `visitor_id`. A missing value with a key is a tombstone, which
/// means erasure at `tombstone_time_ms` (the Kafka record time).
pub fn decode_consent<'a>(
    key: Option<&'a [u8]>,
    value: Option<&'a [u8]>,
    tombstone_time_ms: i64,
    max_bytes: usize,
) -> Result<ConsentUpdate<'a>, DecodeError> {
    let Some(bytes) = value else {
        let key = key.ok_or_else(|| DecodeError::missing("key"))?;
        let visitor = std::str::from_utf8(key).map_err(|_| {
            DecodeError::new(DeadLetterReason::InvalidUtf8, "tombstone key is not UTF-8")
        })?;
        let visitor_id = check_id("key", Some(Cow::Borrowed(visitor)))?;
        return Ok(ConsentUpdate {
            visitor_id,
            time_ms: tombstone_time_ms,
            change: ConsentChange::Erase,
        });
    };
    let text = check_size_and_utf8(bytes, max_bytes)?;
    let Obj(raw) = serde_json::from_str::<Obj<RawConsent<'_>>>(text)
        .map_err(|e| classify_serde_error(bytes, &e, CONSENT_SHAPES))?;
    let visitor_id = check_id("visitor_id", cow(raw.visitor_id))?;
    check_key(key, &visitor_id)?;
    let time = required_time(raw.timestamp)?;
    let change = if raw.erase == Some(true) {
        ConsentChange::Erase
    } else {
        let p = raw
            .purposes
            .ok_or_else(|| DecodeError::missing("purposes"))?;
        // A missing purpose is false: consent must be explicit.
        ConsentChange::State(
            PurposeSet::NONE
                .with(Purpose::Tracking, p.tracking == Some(true))
                .with(Purpose::Support, p.support == Some(true))
                .with(Purpose::Sales, p.sales == Some(true))
                .with(Purpose::Marketing, p.marketing == Some(true)),
        )
    };
    Ok(ConsentUpdate {
        visitor_id,
        time_ms: time.epoch_ms,
        change,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: usize = 65_536;

    #[test]
    fn consent_records() {
        let c = decode_consent(
            Some(b"v1"),
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{"tracking":true,"sales":true}}"#),
            0,
            MAX,
        )
        .unwrap();
        match c.change {
            ConsentChange::State(p) => {
                assert!(p.grants(Purpose::Tracking) && p.grants(Purpose::Sales));
                assert!(!p.grants(Purpose::Marketing));
            }
            ConsentChange::Erase => panic!("not an erasure"),
        }
        let e = decode_consent(
            None,
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","erase":true}"#),
            0,
            MAX,
        )
        .unwrap();
        assert_eq!(e.change, ConsentChange::Erase);
        let t = decode_consent(Some(b"v9"), None, 42, MAX).unwrap();
        assert_eq!(
            (t.visitor_id.as_ref(), t.time_ms, t.change),
            ("v9", 42, ConsentChange::Erase)
        );
        let m = decode_consent(
            Some(b"other"),
            Some(br#"{"visitor_id":"v1","timestamp":"2026-11-29T10:00:00Z","purposes":{}}"#),
            0,
            MAX,
        )
        .unwrap_err();
        assert_eq!(m.reason, DeadLetterReason::KeyMismatch);
    }

    /// The shape table against the raw structs, both ways (names and
    /// shapes): see `errors::shape_tables`.
    #[test]
    fn shape_table_matches_raw_structs() {
        use crate::wire::errors::shape_tables::{assert_table_matches, fields_of};
        assert_table_matches(
            CONSENT_SHAPES,
            &[
                ("", fields_of::<RawConsent<'_>>()),
                ("purposes", fields_of::<RawPurposes>()),
            ],
            &[],
            |record| serde_json::from_str::<Obj<RawConsent<'_>>>(record).is_ok(),
            |record| decode_consent(None, Some(record.as_bytes()), 0, MAX).err(),
        );
    }
}
