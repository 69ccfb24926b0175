//! What the event and consent decoders share: the size and UTF-8 check that
//! turns bytes into text, the serde helpers the `Raw*` structs are read
//! with, the id and length checks, and the Kafka key check.
//!
//! Invariants: a record over the size limit is rejected before any parsing;
//! text is validated as UTF-8 exactly once; strings borrow from the input
//! unless JSON escapes force a copy; a nested record or a record itself is
//! read only from a JSON object, never from an array by position; ids are
//! non-empty and at most [`MAX_ID_LEN`] characters.

use std::borrow::Cow;

use serde::Deserialize;

use super::errors::{DeadLetterReason, DecodeError};
use crate::timestamp::{parse_rfc3339, EventTime};

/// Maximum length of `event_id`, `visitor_id` and `session_id`.
pub const MAX_ID_LEN: usize = 128;

/// Checks the size limit and UTF-8, and returns the record as text: serde
/// then reads it with `from_str`, which does not validate every string a
/// second time (`from_slice` would).
pub(super) fn check_size_and_utf8(bytes: &[u8], max_bytes: usize) -> Result<&str, DecodeError> {
    if bytes.len() > max_bytes {
        return Err(DecodeError::new(
            DeadLetterReason::TooLarge,
            format!(
                "record is {} bytes, over the limit of {max_bytes}",
                bytes.len()
            ),
        ));
    }
    std::str::from_utf8(bytes).map_err(|e| {
        DecodeError::new(
            DeadLetterReason::InvalidUtf8,
            format!("invalid UTF-8 at byte {}", e.valid_up_to()),
        )
    })
}

/// Checks a Kafka key against the record's visitor id.
pub fn check_key(key: Option<&[u8]>, visitor_id: &str) -> Result<(), DecodeError> {
    match key {
        Some(k) if k != visitor_id.as_bytes() => Err(DecodeError::new(
            DeadLetterReason::KeyMismatch,
            "the message key differs from field `visitor_id` (records must be keyed by visitor_id)",
        )),
        _ => Ok(()),
    }
}

// ------------------------------------------------- serde helpers for raw forms

/// A JSON string that borrows from the input when it has no escapes. serde
/// only borrows a `Cow<str>` field that is not wrapped in `Option`, so this
/// newtype does the borrowing itself (`visit_borrowed_str`).
pub(super) struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TextVisitor<'a>(std::marker::PhantomData<&'a ()>);
        impl<'de: 'a, 'a> serde::de::Visitor<'de> for TextVisitor<'a> {
            type Value = Text<'a>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Text<'a>, E> {
                Ok(Text(Cow::Owned(v)))
            }
        }
        d.deserialize_str(TextVisitor(std::marker::PhantomData))
    }
}

/// Unwraps an optional [`Text`].
pub(super) fn cow(t: Option<Text<'_>>) -> Option<Cow<'_, str>> {
    t.map(|t| t.0)
}

/// Deserializes only from a JSON object. serde's derived struct impls also
/// accept an array (fields by position), which the contract does not allow:
/// `"chat": ["started"]` or a top-level array must be dead-lettered, not
/// decoded with fields assigned by position.
pub(super) struct Obj<T>(pub(super) T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        d.deserialize_map(ObjVisitor(std::marker::PhantomData))
    }
}

/// `deserialize_with` for optional object fields (null is `None`).
pub(super) fn object<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Ok(Option::<Obj<T>>::deserialize(d)?.map(|o| o.0))
}

// ------------------------------------------------------------ field checks

pub(super) fn check_id<'a>(
    field: &str,
    v: Option<Cow<'a, str>>,
) -> Result<Cow<'a, str>, DecodeError> {
    let v = v.ok_or_else(|| DecodeError::missing(field))?;
    if v.is_empty() {
        return Err(DecodeError::invalid(field, "must not be empty"));
    }
    // A string has at most as many characters as bytes: counting them is
    // only needed when the byte length is over the limit.
    if v.len() > MAX_ID_LEN && v.chars().count() > MAX_ID_LEN {
        return Err(DecodeError::invalid(field, "is longer than 128 characters"));
    }
    Ok(v)
}

pub(super) fn check_len<'a>(
    field: &str,
    v: Option<Cow<'a, str>>,
    max: usize,
) -> Result<Option<Cow<'a, str>>, DecodeError> {
    match v {
        Some(s) if s.len() > max => Err(DecodeError::invalid(
            field,
            &format!("is longer than {max} bytes"),
        )),
        other => Ok(other),
    }
}

/// The required `timestamp` field of events and consent records, parsed:
/// one rule and one message for both decoders.
pub(super) fn required_time(t: Option<Text<'_>>) -> Result<EventTime, DecodeError> {
    let ts = cow(t).ok_or_else(|| DecodeError::missing("timestamp"))?;
    parse_rfc3339(&ts).ok_or_else(|| {
        DecodeError::new(
            DeadLetterReason::InvalidTimestamp,
            "field `timestamp` must be RFC 3339, e.g. 2026-11-29T10:00:00.123Z",
        )
    })
}
