//! Malformed event lines: the kinds of garbage a real ingestion topic sees
//! (non-JSON text, contract violations), mixed into the event stream so the
//! engine's validation and dead-letter paths get exercised.

use rand::Rng;
use serde_json::{json, Value};

use crate::sampling::{pick, SimRng};
use crate::timefmt::format_timestamp;
use crate::wire::OrderedMap;

/// Each variant breaks exactly one rule of the wire contract (or JSON itself).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum MalformedKind {
    NotJson,
    MissingEventId,
    BadTimestamp,
    UnknownType,
    WrongFieldType,
    BadVisitorId,
    MissingPage,
}

const KINDS: [MalformedKind; 7] = [
    MalformedKind::NotJson,
    MalformedKind::MissingEventId,
    MalformedKind::BadTimestamp,
    MalformedKind::UnknownType,
    MalformedKind::WrongFieldType,
    MalformedKind::BadVisitorId,
    MalformedKind::MissingPage,
];

/// How many malformed lines make them `rate` of all lines, given `valid`
/// valid lines: `invalid / (valid + invalid) ≈ rate`.
pub(crate) fn malformed_count(valid: usize, rate: f64) -> usize {
    if rate <= 0.0 {
        return 0;
    }
    (valid as f64 * rate / (1.0 - rate)).round() as usize
}

/// One malformed line, pretending to come from `visitor_id` at `time_ms`.
/// `n` makes its (fake) event id unique and distinct from valid ids, so a
/// deduplicating consumer never confuses it with a real event.
pub(crate) fn malformed_line(rng: &mut SimRng, n: usize, visitor_id: &str, time_ms: i64) -> String {
    let kind = pick(rng, &KINDS);
    if kind == MalformedKind::NotJson {
        return match rng.random_range(0..4) {
            0 => format!("GET /products/widget-3 HTTP/1.1 visitor={visitor_id}"),
            // Truncated mid-record, as from a producer crash.
            1 => format!(r#"{{"event_id":"e-bad-{n}","visitor_id":"{visitor_id}","type":"page_vi"#),
            2 => "<html><body>502 Bad Gateway</body></html>".to_owned(),
            _ => "}{".to_owned(),
        };
    }
    // Ordered like a real event (see `wire::OrderedMap` for why not a Map).
    let mut fields: Vec<(&str, Value)> = vec![
        ("event_id", Value::from(format!("e-bad-{n}"))),
        ("visitor_id", Value::from(visitor_id)),
        ("type", Value::from("page_view")),
        ("timestamp", Value::from(format_timestamp(time_ms))),
        (
            "page",
            json!({ "url": "https://shop.example.com/products/widget-3" }),
        ),
    ];
    let mut set = |key: &str, value: Value| {
        if let Some(slot) = fields.iter_mut().find(|(k, _)| *k == key) {
            slot.1 = value;
        }
    };
    let mut remove = None;
    match kind {
        MalformedKind::MissingEventId => remove = Some("event_id"),
        MalformedKind::BadTimestamp => {
            let bad = match rng.random_range(0..4) {
                0 => Value::from("2026-11-02 09:15:00"),
                1 => Value::from("not-a-time"),
                2 => Value::from("2026-13-45T25:61:00.000Z"),
                _ => Value::from(time_ms),
            };
            set("timestamp", bad);
        }
        MalformedKind::UnknownType => {
            let bad = pick(rng, &["pageview", "PAGE_VIEW", "purchase_click", "scroll"]);
            set("type", Value::from(bad));
        }
        MalformedKind::WrongFieldType => {
            if rng.random_bool(0.5) {
                let numeric: u64 = rng.random_range(1..1_000_000);
                set("visitor_id", Value::from(numeric));
            } else {
                set("page", Value::from("https://shop.example.com/"));
            }
        }
        MalformedKind::BadVisitorId => {
            // Empty, or longer than the contract's 128 characters.
            let bad = if rng.random_bool(0.7) {
                String::new()
            } else {
                "v".repeat(129)
            };
            set("visitor_id", Value::from(bad));
        }
        MalformedKind::MissingPage => remove = Some("page"),
        MalformedKind::NotJson => {}
    }
    fields.retain(|(k, _)| Some(*k) != remove);
    // Serializing strings, numbers and a one-key object cannot fail; fall
    // back to an obviously broken line rather than unwrapping.
    serde_json::to_string(&OrderedMap(&fields)).unwrap_or_else(|_| "{".to_owned())
}
