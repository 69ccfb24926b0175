//! Why a record is dead-lettered: the stable reason codes, [`DecodeError`],
//! and the classification of a serde failure into a reason and the name of
//! the field at fault.
//!
//! Invariants: reason codes are stable (consumers and metrics depend on
//! them); messages name fields and limits but never quote field values,
//! which may be personal data; and a shape table handed to
//! [`classify_serde_error`] lists exactly the fields of the raw structs it
//! describes, with the JSON shape serde accepts for each (checked by the
//! `shape_tables` test support below, run from each decoder's tests).

use serde::{Deserialize, Serialize};

/// Why a record was dead-lettered: a stable code that consumers and metrics
/// may depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterReason {
    /// Bytes are not UTF-8.
    InvalidUtf8,
    /// Not a JSON object.
    InvalidJson,
    /// A required field is absent (or null).
    MissingField,
    /// A field has the wrong type or an invalid value.
    InvalidField,
    /// `timestamp` is not RFC 3339.
    InvalidTimestamp,
    /// `type` is not one of the known event types.
    UnknownType,
    /// The record exceeds the size limit.
    TooLarge,
    /// The Kafka key differs from `visitor_id`.
    KeyMismatch,
}

impl DeadLetterReason {
    /// All reasons, for metrics and summaries.
    pub const ALL: [DeadLetterReason; 8] = [
        DeadLetterReason::InvalidUtf8,
        DeadLetterReason::InvalidJson,
        DeadLetterReason::MissingField,
        DeadLetterReason::InvalidField,
        DeadLetterReason::InvalidTimestamp,
        DeadLetterReason::UnknownType,
        DeadLetterReason::TooLarge,
        DeadLetterReason::KeyMismatch,
    ];

    /// The stable code.
    pub fn code(self) -> &'static str {
        match self {
            DeadLetterReason::InvalidUtf8 => "invalid_utf8",
            DeadLetterReason::InvalidJson => "invalid_json",
            DeadLetterReason::MissingField => "missing_field",
            DeadLetterReason::InvalidField => "invalid_field",
            DeadLetterReason::InvalidTimestamp => "invalid_timestamp",
            DeadLetterReason::UnknownType => "unknown_type",
            DeadLetterReason::TooLarge => "too_large",
            DeadLetterReason::KeyMismatch => "key_mismatch",
        }
    }
}

/// A record that failed to decode: the reason code and a human message
/// naming the field. The message never quotes field *values* (they may be
/// personal data); it only names fields and limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError {
    /// Stable reason code.
    pub reason: DeadLetterReason,
    /// Human explanation.
    pub message: String,
}

impl DecodeError {
    pub(super) fn new(reason: DeadLetterReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
    pub(super) fn missing(field: &str) -> Self {
        Self::new(
            DeadLetterReason::MissingField,
            format!("required field `{field}` is missing"),
        )
    }
    pub(super) fn invalid(field: &str, why: &str) -> Self {
        Self::new(
            DeadLetterReason::InvalidField,
            format!("field `{field}` {why}"),
        )
    }
}

/// Turns a serde error on a record into a reason code. serde's messages say
/// *what* type was wrong but not *which* field, so on this (rare) path the
/// record is parsed again generically to find the field by name.
pub(super) fn classify_serde_error(
    bytes: &[u8],
    err: &serde_json::Error,
    fields: &[(&str, Shape)],
) -> DecodeError {
    use serde_json::error::Category;
    match err.classify() {
        Category::Syntax | Category::Eof | Category::Io => DecodeError::new(
            DeadLetterReason::InvalidJson,
            format!(
                "not valid JSON (line {}, column {})",
                err.line(),
                err.column()
            ),
        ),
        Category::Data => {
            let Ok(value) = serde_json::from_slice::<serde_json::Value>(bytes) else {
                return DecodeError::new(DeadLetterReason::InvalidJson, "not valid JSON");
            };
            if !value.is_object() {
                return DecodeError::new(
                    DeadLetterReason::InvalidJson,
                    "the record must be a JSON object",
                );
            }
            for (path, shape) in fields {
                let mut v = Some(&value);
                for part in path.split('.') {
                    v = v.and_then(|x| x.get(part));
                }
                if let Some(v) = v {
                    if !v.is_null() && !shape.accepts(v) {
                        return DecodeError::invalid(path, shape.expected());
                    }
                }
            }
            DecodeError::new(DeadLetterReason::InvalidField, "a field has the wrong type")
        }
    }
}

/// The JSON shape a field must have, for naming the field in errors.
#[derive(Clone, Copy)]
pub(super) enum Shape {
    Str,
    Obj,
    UInt,
    Bool,
    Properties,
}

impl Shape {
    fn accepts(self, v: &serde_json::Value) -> bool {
        match self {
            Shape::Str => v.is_string(),
            Shape::Obj => v.is_object(),
            Shape::UInt => v.as_u64().is_some_and(|n| n <= u64::from(u32::MAX)),
            Shape::Bool => v.is_boolean(),
            Shape::Properties => v.as_object().is_some_and(|o| {
                o.values()
                    .all(|x| x.is_string() || x.is_number() || x.is_boolean())
            }),
        }
    }
    fn expected(self) -> &'static str {
        match self {
            Shape::Str => "must be a string",
            Shape::Obj => "must be an object",
            Shape::UInt => "must be a non-negative integer",
            Shape::Bool => "must be a boolean",
            Shape::Properties => "must be an object of strings, numbers and booleans",
        }
    }
}

/// Test support: checks a decoder's shape table against the serde structs
/// it hand-copies, so the two cannot drift apart unnoticed. A field serde
/// reads but the table lacks would be reported as "a field has the wrong
/// type" without its name; a table entry serde does not read (or reads with
/// another type) could name the wrong field.
#[cfg(test)]
pub(super) mod shape_tables {
    use std::collections::BTreeSet;

    use serde::de::{Deserialize, Deserializer, Error as _, Visitor};
    use serde_json::{json, Value};

    use super::{DeadLetterReason, DecodeError, Shape};

    /// The field names serde reads for struct `T` (after `rename`), taken
    /// from the derived impl itself, which hands them to
    /// `deserialize_struct`. Works for derived structs read directly, not
    /// through the `Obj` wrapper (that goes through `deserialize_map`).
    pub(in crate::wire) fn fields_of<'de, T: Deserialize<'de>>() -> &'static [&'static str] {
        let mut fields = None;
        let _ = T::deserialize(FieldNames(&mut fields));
        fields.expect("not a derived struct: it never called deserialize_struct")
    }

    struct FieldNames<'r>(&'r mut Option<&'static [&'static str]>);

    impl<'de> Deserializer<'de> for FieldNames<'_> {
        type Error = serde::de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(Self::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = Some(fields);
            Err(Self::Error::custom("field names recorded"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string
            bytes byte_buf option unit unit_struct newtype_struct seq tuple
            tuple_struct map enum identifier ignored_any
        }
    }

    /// One value of every JSON shape, plus edge cases of the numeric shape.
    fn samples() -> Vec<Value> {
        vec![
            json!("x"),
            json!(5),
            json!(-1),
            json!(1.5),
            json!(u64::from(u32::MAX) + 1),
            json!(true),
            json!({}),
            json!({"k": "v", "n": 1, "b": false}),
            json!({"k": [1]}),
            json!([]),
        ]
    }

    /// A record whose only leaf is `leaf`, at the dotted `path`.
    fn record_with(path: &str, leaf: &Value) -> String {
        path.rsplit('.')
            .fold(leaf.clone(), |v, part| json!({ part: v }))
            .to_string()
    }

    /// Asserts that `table` and the raw structs agree, both ways:
    ///
    /// - names: the table's paths are exactly the fields serde reads, where
    ///   `structs` maps each object path (`""` for the record itself) to the
    ///   fields of the struct read there (from [`fields_of`]); every object
    ///   entry of the table must be listed in `structs`, so a new nested
    ///   struct cannot escape the check;
    /// - shapes: for every entry and sample value, serde accepts the value
    ///   (`parses`) exactly when the entry's shape does, null is always
    ///   accepted (absent), and a rejected value is dead-lettered as
    ///   `invalid_field` naming that path (`decode`).
    ///
    /// `known_drift` lists `(path, value)` pairs exempt from the shape
    /// check, each with the reason in the caller.
    pub(in crate::wire) fn assert_table_matches(
        table: &[(&str, Shape)],
        structs: &[(&str, &[&str])],
        known_drift: &[(&str, Value)],
        parses: impl Fn(&str) -> bool,
        decode: impl Fn(&str) -> Option<DecodeError>,
    ) {
        let in_table: BTreeSet<&str> = table.iter().map(|(p, _)| *p).collect();
        assert_eq!(in_table.len(), table.len(), "duplicate path in the table");
        let mut read_by_serde = BTreeSet::new();
        for (prefix, fields) in structs {
            if !prefix.is_empty() {
                assert!(
                    table
                        .iter()
                        .any(|(p, s)| p == prefix && matches!(s, Shape::Obj)),
                    "`{prefix}` is listed as a struct but is not an object entry of the table"
                );
            }
            for field in *fields {
                read_by_serde.insert(if prefix.is_empty() {
                    (*field).to_owned()
                } else {
                    format!("{prefix}.{field}")
                });
            }
        }
        for (path, shape) in table {
            if matches!(shape, Shape::Obj) {
                assert!(
                    structs.iter().any(|(p, _)| p == path),
                    "object `{path}`: list its struct's fields in this test"
                );
            }
        }
        let in_table: BTreeSet<String> = in_table.into_iter().map(str::to_owned).collect();
        let missing: Vec<_> = read_by_serde.difference(&in_table).collect();
        let extra: Vec<_> = in_table.difference(&read_by_serde).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "shape table drifted from the raw structs: read by serde but not in the table: \
             {missing:?}; in the table but not read by serde: {extra:?}"
        );

        for (path, shape) in table {
            assert!(
                parses(&record_with(path, &Value::Null)),
                "`{path}`: null must read as absent"
            );
            for value in samples() {
                if known_drift.iter().any(|(p, v)| p == path && *v == value) {
                    continue;
                }
                let record = record_with(path, &value);
                assert_eq!(
                    parses(&record),
                    shape.accepts(&value),
                    "`{path}`: serde and the table's shape disagree on {record}"
                );
                if !shape.accepts(&value) {
                    assert_eq!(
                        decode(&record),
                        Some(DecodeError::new(
                            DeadLetterReason::InvalidField,
                            format!("field `{path}` {}", shape.expected()),
                        )),
                        "`{path}`: {record}"
                    );
                }
            }
        }
    }
}
