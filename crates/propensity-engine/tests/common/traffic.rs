//! Deterministic generated traffic for the engine's tests: many visitors,
//! returning sessions, every event type, local time offsets, consent
//! arriving late, duplicates, revocations and re-grants; the same records
//! on every machine and in every run for a given seed.

use serde_json::{json, Value};

use super::{bytes, consent, rfc3339, BASE_MS};

/// A small deterministic generator (64-bit LCG, high bits): the traffic
/// must be the same on every machine and in every run.
pub struct Lcg(pub u64);

impl Lcg {
    pub fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    pub fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

const URLS: [&str; 14] = [
    "https://shop.example.com/",
    "https://shop.example.com/products/widget?color=red",
    "https://shop.example.com/products/gadget",
    "https://shop.example.com/pricing#plans",
    "https://shop.example.com/cart",
    "https://shop.example.com/checkout",
    "https://shop.example.com/checkout/payment?step=2#top",
    "https://shop.example.com/checkout/complete",
    "https://shop.example.com/webinars/ai",
    "https://shop.example.com/loans/calculator",
    "https://shop.example.com/apply",
    "https://shop.example.com/blog/why-loans",
    "https://shop.example.com/help/returns",
    "/about/team",
];

/// An RFC 3339 time with a UTC offset of `offset_min` minutes (the local
/// time feeds the calendar features).
fn local_time(epoch_ms: i64, offset_min: i64) -> String {
    if offset_min == 0 {
        return rfc3339(epoch_ms);
    }
    let local = rfc3339(epoch_ms + offset_min * 60_000);
    let sign = if offset_min < 0 { '-' } else { '+' };
    let m = offset_min.abs();
    format!(
        "{}{sign}{:02}:{:02}",
        local.trim_end_matches('Z'),
        m / 60,
        m % 60
    )
}

/// One generated event of visitor `v` at `t_ms`.
fn event(rng: &mut Lcg, id: &str, v: &str, session: Option<&str>, t: String, first: bool) -> Value {
    let mut e = json!({"event_id": id, "visitor_id": v, "timestamp": t});
    if let Some(s) = session {
        e["session_id"] = json!(s);
    }
    match rng.below(10) {
        0 => {
            e["type"] = json!("search");
            e["search"] = json!({"query": "q", "results": rng.below(3)});
        }
        1 => {
            e["type"] = json!("form_fill");
            let form = ["loan-application", "webinar-signup", "newsletter"];
            let action = ["started", "submitted", "abandoned"];
            e["form"] = json!({
                "form_id": rng.pick(&form),
                "action": rng.pick(&action),
                "fields_completed": rng.below(9),
            });
        }
        2 => {
            e["type"] = json!("chat");
            let action = ["requested", "started", "message", "ended"];
            e["chat"] = json!({"action": rng.pick(&action)});
        }
        3 => {
            e["type"] = json!("custom");
            let name = ["calculator_used", "video_played", "coupon_copied"];
            e["custom"] = json!({"name": rng.pick(&name)});
        }
        _ => {
            e["type"] = json!("page_view");
            let mut page = json!({"url": rng.pick(&URLS)});
            if rng.below(4) == 0 {
                let referrers = [
                    "https://www.google.com/search",
                    "https://news.example.org/a",
                ];
                page["referrer"] = json!(rng.pick(&referrers));
            }
            e["page"] = page;
        }
    }
    if first || rng.below(8) == 0 {
        let category = ["desktop", "mobile", "tablet", "other"];
        let browser = ["Firefox", "Chrome", "Safari", "Lynx"];
        let os = ["Linux", "iOS", "Windows", "Android"];
        e["device"] = json!({
            "category": rng.pick(&category),
            "browser": rng.pick(&browser),
            "os": rng.pick(&os),
        });
        let source = ["google", "Newsletter", "bing", "partner"];
        e["traffic"] = json!({"source": rng.pick(&source)});
    }
    e
}

/// The seed of the traffic `scores_pinned` pins.
pub const PINNED_SEED: u64 = 20_261_201;

/// Deterministic records of `visitors` visitors, in time order:
/// `(is_consent, bytes, record time)`; another `seed`, other traffic of
/// the same shape.
pub fn generated_traffic(visitors: usize, seed: u64) -> Vec<(bool, Vec<u8>, i64)> {
    let mut rng = Lcg(seed);
    let mut records = Vec::new();
    for v in 0..visitors {
        let visitor = format!("visitor-{v}");
        // Spread over a year and the day: months, weekdays and hours vary.
        let mut t = BASE_MS + rng.below(365 * 86_400_000) as i64;
        let offset = [0, 60, -300, 330][rng.below(4) as usize];
        let all = ["tracking", "support", "sales", "marketing"];
        let purposes: &[&str] = match rng.below(6) {
            0 => &["tracking"],
            1 => &["support", "sales"],
            _ => &all,
        };
        // Consent slightly after the first event (buffered) or before it.
        let consent_at = t + rng.below(4_000) as i64 - 2_000;
        records.push((
            true,
            bytes(&consent(&visitor, consent_at, purposes)),
            consent_at,
        ));
        let sessions = 1 + rng.below(3);
        let mut n = 0;
        for s in 0..sessions {
            let explicit = (rng.below(3) == 0).then(|| format!("s-{v}-{s}"));
            for k in 0..(2 + rng.below(14)) {
                // Gaps with milliseconds: dwell and duration are not whole.
                t += 300 + rng.below(240_000) as i64;
                let id = format!("e-{v}-{n}");
                n += 1;
                let e = event(
                    &mut rng,
                    &id,
                    &visitor,
                    explicit.as_deref(),
                    local_time(t, offset),
                    k == 0,
                );
                records.push((false, bytes(&e), t));
                // A duplicate now and then.
                if rng.below(25) == 0 {
                    records.push((false, bytes(&e), t));
                }
            }
            // The next session starts after the inactivity timeout.
            t += 1_300_000 + rng.below(3_600_000) as i64;
        }
        if rng.below(10) == 0 {
            // A revocation, then a re-grant: later events are processed
            // again in a new granted interval.
            records.push((true, bytes(&consent(&visitor, t, &[])), t));
            records.push((true, bytes(&consent(&visitor, t + 1, &all)), t + 1));
        }
    }
    records.sort_by_key(|r| r.2);
    records
}

/// Feeds [`generated_traffic`] of `visitors` visitors (seed
/// [`PINNED_SEED`]) through `engine` into `sink`, in time order.
pub fn feed_pinned(
    engine: &mut propensity_engine::Engine,
    visitors: usize,
    sink: &mut impl propensity_engine::EngineSink,
) {
    use propensity_engine::wire::Origin;
    for (is_consent, bytes, t) in generated_traffic(visitors, PINNED_SEED) {
        if is_consent {
            engine.process_consent(None, Some(&bytes), t, &Origin::Unknown, None, sink);
        } else {
            engine.process_event(None, &bytes, &Origin::Unknown, None, sink);
        }
    }
}
