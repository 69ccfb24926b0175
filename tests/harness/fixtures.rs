//! Record fixtures: page views, consent records and their timestamps.

use serde_json::Value;

/// RFC 3339 (UTC, milliseconds) of an epoch time.
pub fn rfc3339(epoch_ms: i64) -> String {
    propensity_engine::timestamp::format_rfc3339_ms(epoch_ms)
}

/// Wall-clock now, epoch milliseconds.
pub fn now_epoch_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

/// A page view of `visitor` at `time_ms` (paths cycle through a shop's
/// funnel, so sessions get scored and some get offers).
pub fn page_view(event_id: &str, visitor: &str, time_ms: i64, n: usize) -> Value {
    let path = [
        "/products/widget-1",
        "/pricing",
        "/cart",
        "/checkout",
        "/checkout/payment",
    ][n % 5];
    serde_json::json!({
        "event_id": event_id,
        "visitor_id": visitor,
        "type": "page_view",
        "timestamp": rfc3339(time_ms),
        "page": {"url": format!("https://shop.example.com{path}")},
        "device": {"category": "desktop"}
    })
}

/// A consent record: `tracking` as given, the other purposes as `others`.
pub fn consent_record(visitor: &str, time_ms: i64, tracking: bool, others: bool) -> Value {
    serde_json::json!({
        "visitor_id": visitor,
        "timestamp": rfc3339(time_ms),
        "purposes": {"tracking": tracking, "sales": others, "marketing": others, "support": others}
    })
}
