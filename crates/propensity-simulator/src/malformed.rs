//! Malformed event lines: the kinds of garbage a real ingestion topic sees
//! (non-JSON text, contract violations), mixed into the event stream so the
//! engine's validation and dead-letter paths get exercised.

use rand::Rng;
use serde_json::{json, Value};

use crate::sampling::{pick, SimRng};
use crate::timefmt::format_timestamp;

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
    let mut record = json!({
        "event_id": format!("e-bad-{n}"),
        "visitor_id": visitor_id,
        "type": "page_view",
        "timestamp": format_timestamp(time_ms),
        "page": { "url": "https://shop.example.com/products/widget-3" },
    });
    let Value::Object(fields) = &mut record else {
        return record.to_string();
    };
    match kind {
        MalformedKind::MissingEventId => {
            fields.remove("event_id");
        }
        MalformedKind::BadTimestamp => {
            let bad = match rng.random_range(0..4) {
                0 => Value::from("2026-11-02 09:15:00"),
                1 => Value::from("not-a-time"),
                2 => Value::from("2026-13-45T25:61:00.000Z"),
                _ => Value::from(time_ms),
            };
            fields.insert("timestamp".to_owned(), bad);
        }
        MalformedKind::UnknownType => {
            let bad = pick(rng, &["pageview", "PAGE_VIEW", "purchase_click", "scroll"]);
            fields.insert("type".to_owned(), Value::from(bad));
        }
        MalformedKind::WrongFieldType => {
            if rng.random_bool(0.5) {
                let numeric: u64 = rng.random_range(1..1_000_000);
                fields.insert("visitor_id".to_owned(), Value::from(numeric));
            } else {
                fields.insert("page".to_owned(), Value::from("https://shop.example.com/"));
            }
        }
        MalformedKind::BadVisitorId => {
            // Empty, or longer than the contract's 128 characters.
            let bad = if rng.random_bool(0.7) {
                String::new()
            } else {
                "v".repeat(129)
            };
            fields.insert("visitor_id".to_owned(), Value::from(bad));
        }
        MalformedKind::MissingPage => {
            fields.remove("page");
        }
        MalformedKind::NotJson => {}
    }
    record.to_string()
}
