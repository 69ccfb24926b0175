//! Offline/online equality, pinned bit for bit: deterministic generated
//! traffic (many visitors, returning sessions, every event type, local
//! time offsets, consent arriving late, revocations) runs through the
//! engine with dense models (a weight on every feature, so any changed bit
//! of any feature moves a probability), and every training example's
//! feature vector (as a digest of its bits), every probability (as its
//! bits), every offer (as JSON, explanations included) and the final
//! counters must equal `tests/golden/generated-scores.txt`.
//!
//! The golden pins what the engine computes today: its hot path may get
//! faster (buffers kept between events, caches, explanation vectors built
//! only when needed), but the vectors training records and the scores the
//! engine serves must not change. To regenerate after a deliberate change
//! of the features or the models, run with `UPDATE_GOLDEN=1` and say so in
//! the change (models trained under the old features must be retrained).

mod common;

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use common::{artifact, consent, rfc3339, shipped_settings, ModelSpec, BASE_MS};
use propensity_engine::config::Trigger;
use propensity_engine::wire::OutcomeScore;
use propensity_engine::{DeadLetter, Engine, EngineConfig, EngineSink, ModelSet, Offer, Origin};
use serde_json::{json, Value};

/// A small deterministic generator (64-bit LCG, high bits): the traffic
/// must be the same on every machine and in every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
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

/// Deterministic records of `visitors` visitors, in time order:
/// `(is_consent, bytes, record time)`.
fn generated_traffic(visitors: usize) -> Vec<(bool, Vec<u8>, i64)> {
    let mut rng = Lcg(20_261_201);
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
            common::bytes(&consent(&visitor, consent_at, purposes)),
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
                records.push((false, common::bytes(&e), t));
                // A duplicate now and then.
                if rng.below(25) == 0 {
                    records.push((false, common::bytes(&e), t));
                }
            }
            // The next session starts after the inactivity timeout.
            t += 1_300_000 + rng.below(3_600_000) as i64;
        }
        if rng.below(10) == 0 {
            // A revocation, then a re-grant: later events are processed
            // again in a new granted interval.
            records.push((true, common::bytes(&consent(&visitor, t, &[])), t));
            records.push((true, common::bytes(&consent(&visitor, t + 1, &all)), t + 1));
        }
    }
    records.sort_by_key(|r| r.2);
    records
}

/// Dense models: a weight on every feature (small, of both signs, from the
/// feature index), so each feature's bits reach the probability.
fn dense_models(config: &EngineConfig) -> Arc<ModelSet> {
    let names: Vec<String> = config.features.names().to_vec();
    let artifacts = ["purchase", "webinar_signup", "application_complete"]
        .iter()
        .enumerate()
        .map(|(o, outcome)| {
            let weights: Vec<(&str, f64)> = names
                .iter()
                .enumerate()
                .map(|(i, n)| (n.as_str(), ((i * 7 + o * 3) % 11) as f64 / 10.0 - 0.5))
                .collect();
            let spec = ModelSpec {
                outcome,
                weights: &weights,
                intercept: -0.7 + o as f64 * 0.2,
            };
            ("<dense>".to_owned(), artifact(config, &spec))
        })
        .collect();
    ModelSet::from_artifacts(config, artifacts).unwrap_or_else(|e| panic!("models: {e}"))
}

/// Writes one line per example, score, offer and achieved outcome, in
/// emission order (cleared by the test after each record).
#[derive(Default)]
struct PinningSink {
    out: String,
}

/// FNV-1a of bytes: equal digests for equal bytes.
fn digest_bytes(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
    })
}

/// A digest of the bits of a vector: equal digests for equal bits.
fn digest(values: &[f32]) -> u64 {
    let bytes: Vec<u8> = values
        .iter()
        .flat_map(|v| v.to_bits().to_le_bytes())
        .collect();
    digest_bytes(&bytes)
}

impl EngineSink for PinningSink {
    fn offer(&mut self, mut offer: Offer) {
        // The pin predates percentiles (a function of the probability
        // pinned here and of the artifact; `golden_wire` pins them), so
        // the digests prove that adding them changed no other bit.
        offer.percentile = None;
        let json = serde_json::to_string(&offer).expect("an offer serializes");
        let _ = writeln!(self.out, "offer {json}");
    }
    fn dead_letter(&mut self, dead_letter: DeadLetter<'_>) {
        let _ = writeln!(self.out, "dead_letter {:?}", dead_letter.reason);
    }
    fn wants_scores(&self) -> bool {
        true
    }
    fn score(&mut self, s: &OutcomeScore<'_>) {
        let _ = writeln!(
            self.out,
            "score {} {} {:016x}",
            s.event_id,
            s.outcome,
            s.probability.to_bits()
        );
    }
    fn wants_examples(&self) -> bool {
        true
    }
    fn example(&mut self, serial: u64, outcome: usize, features: &[f32]) {
        let _ = writeln!(
            self.out,
            "example {serial} {outcome} {:016x}",
            digest(features)
        );
    }
    fn achieved(&mut self, serial: u64, outcome: usize) {
        let _ = writeln!(self.out, "achieved {serial} {outcome}");
    }
}

fn golden_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/generated-scores.txt")
}

/// The shipped settings with triggers that fire often (a `falls_to` map
/// above all, whose explanation needs the session's peak).
fn busy_config() -> Arc<EngineConfig> {
    let mut s = shipped_settings();
    s.offers.max_per_session = 6;
    s.offers.min_gap_secs = 1.0;
    for m in &mut s.action_maps {
        m.conditions = Default::default();
        m.max_per_session = 3;
        if let Trigger::FallsTo { threshold } = &mut m.trigger {
            *threshold = 0.5;
        }
    }
    common::config_from(&s)
}

#[test]
fn feature_vectors_scores_and_offers_equal_the_pinned_bits() {
    let config = busy_config();
    let models = dense_models(&config);
    let mut engine = Engine::new(config.clone(), models);
    let mut sink = PinningSink::default();
    let origin = Origin::Unknown;
    // One golden line per record: the digest of what the engine emitted
    // for it (a golden of every line would be a megabyte of offers). A
    // difference names the first record whose outputs changed.
    let mut actual = String::new();
    let (mut offers, mut examples, mut falls_to_offers) = (0, 0, 0);
    for (i, (is_consent, bytes, t)) in generated_traffic(120).into_iter().enumerate() {
        sink.out.clear();
        if is_consent {
            engine.process_consent(None, Some(&bytes), t, &origin, None, &mut sink);
        } else {
            engine.process_event(None, &bytes, &origin, Some(t + 250), &mut sink);
        }
        for line in sink.out.lines() {
            offers += usize::from(line.starts_with("offer "));
            examples += usize::from(line.starts_with("example "));
            falls_to_offers += usize::from(line.contains("cart-rescue-offer"));
        }
        let _ = writeln!(actual, "{i} {:016x}", digest_bytes(sink.out.as_bytes()));
    }
    engine.finish(&mut sink);
    let _ = writeln!(actual, "counters {:?}", engine.counters());
    // The traffic must exercise what the pin is for: examples, offers, and
    // `falls_to` offers (explained against the session's peak).
    assert!(examples > 3000, "{examples} examples");
    assert!(offers > 200, "{offers} offers");
    assert!(falls_to_offers > 10, "{falls_to_offers} falls_to offers");

    let path = golden_path();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}; run with UPDATE_GOLDEN=1", path.display()));
    if let Some((e, a)) = expected.lines().zip(actual.lines()).find(|(e, a)| e != a) {
        panic!("generated-scores.txt differs:\n golden: {e}\n actual: {a}");
    }
    assert_eq!(
        expected.lines().count(),
        actual.lines().count(),
        "generated-scores.txt: line count"
    );
}
