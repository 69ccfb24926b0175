//! Valid wire records and proptest strategies that mutate them (drop
//! fields, change types and values, turn objects into arrays, add unknown
//! fields; at the text level, truncate or insert bytes), shared by the
//! decoder-robustness and schema tests.

use proptest::prelude::*;
use proptest::sample::Index;
use serde_json::{json, Value};

/// A marker put in every string value of the valid records: error messages
/// must never quote it (values may be personal data).
pub const MARKER: &str = "Qz7PII";

/// Valid visitor events covering every type and every optional field.
pub fn valid_events() -> Vec<Value> {
    let m = MARKER;
    vec![
        json!({
            "event_id": format!("e1-{m}"), "visitor_id": format!("v-{m}"), "session_id": format!("s-{m}"),
            "type": "page_view", "timestamp": "2026-11-29T10:00:00.123Z",
            "page": {"url": format!("https://shop.example.com/products/{m}?q=1"), "title": format!("T {m}"), "referrer": format!("https://r.example/{m}")},
            "device": {"category": "mobile", "browser": format!("B{m}"), "os": format!("O{m}")},
            "traffic": {"source": format!("s{m}"), "medium": format!("m{m}"), "campaign": format!("c{m}")}
        }),
        json!({
            "event_id": format!("e2-{m}"), "visitor_id": format!("v-{m}"), "type": "search",
            "timestamp": "2026-11-29T11:00:00+01:00",
            "search": {"query": format!("q {m}"), "results": 0}
        }),
        json!({
            "event_id": format!("e3-{m}"), "visitor_id": format!("v-{m}"), "type": "form_fill",
            "timestamp": "2026-11-29T10:00:02Z",
            "form": {"form_id": format!("f-{m}"), "action": "submitted", "fields_completed": 4}
        }),
        json!({
            "event_id": format!("e4-{m}"), "visitor_id": format!("v-{m}"), "type": "chat",
            "timestamp": "2026-11-29t10:00:03.5z", "chat": {"action": "requested"}
        }),
        json!({
            "event_id": format!("e5-{m}"), "visitor_id": format!("v-{m}"), "type": "custom",
            "timestamp": "2026-11-29 10:00:04Z",
            "custom": {"name": format!("n-{m}"), "properties": {"k": format!("x{m}"), "n": 1.5, "b": true}},
            "page": {"url": "/pricing"}
        }),
    ]
}

/// Valid consent records: a state, an erasure, a state with every field.
pub fn valid_consents() -> Vec<Value> {
    let m = MARKER;
    vec![
        json!({"visitor_id": format!("v-{m}"), "timestamp": "2026-11-29T10:00:00Z",
               "purposes": {"tracking": true, "support": false, "sales": true}}),
        json!({"visitor_id": format!("v-{m}"), "timestamp": "2026-11-29T10:00:00Z", "erase": true}),
        json!({"visitor_id": format!("v-{m}"), "timestamp": "2026-11-29T10:00:00.5-05:00",
               "purposes": {"tracking": true, "support": true, "sales": false, "marketing": true},
               "erase": false, "source": format!("cmp-{m}"), "consent_id": format!("c-{m}")}),
    ]
}

/// A replacement value: every JSON type, the interesting strings of the
/// contract (enum values, timestamps, empty and over-long strings), and
/// non-integral numbers only (an integral float such as `5.0` is a known,
/// documented gap between JSON Schema's "integer" and the decoder).
pub fn replacement() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        (-3i64..5).prop_map(Value::from),
        Just(json!(4_294_967_296_i64)),
        Just(json!(-7.5)),
        Just(json!(0.5)),
        "[a-z_]{0,10}".prop_map(Value::from),
        Just(json!("")),
        Just(json!("x".repeat(129))),
        Just(json!("u".repeat(2049))),
        Just(json!("t".repeat(4097))),
        Just(json!("p".repeat(257))),
        prop::sample::select(vec![
            "page_view",
            "search",
            "form_fill",
            "chat",
            "custom",
            "started",
            "submitted",
            "abandoned",
            "requested",
            "message",
            "ended",
            "desktop",
            "tablet",
            "other",
            "2026-11-29T10:00:00Z",
            "2026-02-29T10:00:00Z",
            "2024-02-29T23:59:60.1+14:00",
            "2026-11-31T10:00:00Z",
            "2026-11-29T10:00:00",
            "/checkout",
        ])
        .prop_map(Value::from),
        Just(json!([])),
        Just(json!(["started"])),
        Just(json!({})),
        Just(json!({"url": "/x", "query": "q", "action": "started", "name": "n", "form_id": "f"})),
        Just(json!({"tracking": true})),
        Just(json!({"k": null})),
        Just(json!({"k": [1]})),
    ]
}

/// One structural change to a record.
#[derive(Debug, Clone)]
pub enum Mutation {
    /// Remove the field at a path.
    Remove(Index),
    /// Replace the value at a path.
    Replace(Index, Value),
    /// Replace an object at a path by the array of its values (what a
    /// lenient decoder might accept as a struct).
    ObjectToArray(Index),
    /// Add a field under an object at a path.
    AddField(Index, String, Value),
}

/// Structural mutations.
pub fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        3 => any::<Index>().prop_map(Mutation::Remove),
        5 => (any::<Index>(), replacement()).prop_map(|(i, v)| Mutation::Replace(i, v)),
        1 => any::<Index>().prop_map(Mutation::ObjectToArray),
        1 => (any::<Index>(), "[a-z_]{1,8}", replacement())
            .prop_map(|(i, k, v)| Mutation::AddField(i, k, v)),
    ]
}

/// Paths of every value below the root (object keys only).
fn paths(v: &Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    fn walk(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        if let Value::Object(o) = v {
            for (k, child) in o {
                prefix.push(k.clone());
                out.push(prefix.clone());
                walk(child, prefix, out);
                prefix.pop();
            }
        }
    }
    walk(v, &mut Vec::new(), &mut out);
    out
}

fn at<'a>(v: &'a mut Value, path: &[String]) -> Option<&'a mut Value> {
    let mut cur = v;
    for k in path {
        cur = cur.as_object_mut()?.get_mut(k)?;
    }
    Some(cur)
}

/// Applies a mutation (a no-op when the record has no fitting place).
pub fn apply(record: &mut Value, m: &Mutation) {
    let all = paths(record);
    if all.is_empty() {
        return;
    }
    match m {
        Mutation::Remove(i) => {
            let path = &all[i.index(all.len())];
            let (last, parent) = path.split_last().expect("non-empty path");
            if let Some(Value::Object(o)) = at(record, parent) {
                o.remove(last);
            }
        }
        Mutation::Replace(i, v) => {
            if let Some(slot) = at(record, &all[i.index(all.len())]) {
                *slot = v.clone();
            }
        }
        Mutation::ObjectToArray(i) => {
            let objects: Vec<&Vec<String>> = all
                .iter()
                .filter(|p| matches!(at(&mut record.clone(), p), Some(Value::Object(_))))
                .collect();
            if objects.is_empty() {
                return;
            }
            let path = objects[i.index(objects.len())].clone();
            if let Some(slot) = at(record, &path) {
                let values: Vec<Value> = slot
                    .as_object()
                    .map(|o| o.values().cloned().collect())
                    .unwrap_or_default();
                *slot = Value::Array(values);
            }
        }
        Mutation::AddField(i, k, v) => {
            let mut objects: Vec<Vec<String>> = vec![Vec::new()];
            objects.extend(
                all.iter()
                    .filter(|p| matches!(at(&mut record.clone(), p), Some(Value::Object(_))))
                    .cloned(),
            );
            let path = &objects[i.index(objects.len())];
            if let Some(Value::Object(o)) = at(record, path) {
                o.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
    }
}

/// A text-level change to the serialized record.
#[derive(Debug, Clone)]
pub enum TextMutation {
    /// Keep the text.
    Keep,
    /// Cut it at a byte.
    Truncate(Index),
    /// Insert a byte.
    Insert(Index, u8),
    /// Overwrite a byte.
    Overwrite(Index, u8),
}

/// Text mutations, mostly none.
pub fn text_mutation() -> impl Strategy<Value = TextMutation> {
    prop_oneof![
        4 => Just(TextMutation::Keep),
        1 => any::<Index>().prop_map(TextMutation::Truncate),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextMutation::Insert(i, b)),
        1 => (any::<Index>(), any::<u8>()).prop_map(|(i, b)| TextMutation::Overwrite(i, b)),
    ]
}

/// Applies a text mutation.
pub fn apply_text(bytes: &mut Vec<u8>, m: &TextMutation) {
    if bytes.is_empty() {
        return;
    }
    match m {
        TextMutation::Keep => {}
        TextMutation::Truncate(i) => bytes.truncate(i.index(bytes.len())),
        TextMutation::Insert(i, b) => bytes.insert(i.index(bytes.len() + 1), *b),
        TextMutation::Overwrite(i, b) => {
            let i = i.index(bytes.len());
            bytes[i] = *b;
        }
    }
}
