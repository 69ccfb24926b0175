//! Golden wire tests: fixed input lines under `tests/golden/` decode to the
//! values written here, and a fixed journey (`golden/journey.txt`) run
//! through the engine under a frozen config (`golden/config.toml`) and
//! fixed models gives offers, scores and dead letters whose serialized JSON
//! equals the golden files byte for byte (`offers.jsonl`, `scores.jsonl`,
//! `dead-letters.jsonl`).
//!
//! To regenerate after a deliberate wire or engine change, run with
//! `UPDATE_GOLDEN=1`, then review the diff of `tests/golden/` by eye.

mod common;

use std::path::PathBuf;
use std::sync::Arc;

use common::{config_from, rfc3339, settings_from_file, test_models, RecordingSink, BASE_MS};
use propensity_engine::purpose::Purpose;
use propensity_engine::timestamp::parse_rfc3339;
use propensity_engine::wire::{
    decode_consent, decode_event, ChatAction, ConsentChange, DeviceCategory, EventKind, FormAction,
};
use propensity_engine::{Engine, EngineConfig, Offer, Origin};

const MAX: usize = 65_536;

fn golden_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden")
}

fn golden_lines(name: &str) -> Vec<String> {
    let path = golden_dir().join(name);
    std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Compares `actual` with a golden file, or writes it under `UPDATE_GOLDEN`.
fn assert_golden(name: &str, actual: &str) {
    let path = golden_dir().join(name);
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}; run with UPDATE_GOLDEN=1 and review it",
            path.display()
        )
    });
    if expected != actual {
        let first = expected
            .lines()
            .zip(actual.lines())
            .position(|(a, b)| a != b)
            .unwrap_or(expected.lines().count().min(actual.lines().count()));
        panic!(
            "{name} differs from the golden at line {}:\n golden: {:?}\n actual: {:?}\n(if the change is deliberate, rerun with UPDATE_GOLDEN=1 and review the diff)",
            first + 1,
            expected.lines().nth(first),
            actual.lines().nth(first)
        );
    }
}

fn frozen_config() -> Arc<EngineConfig> {
    config_from(&settings_from_file(&golden_dir().join("config.toml")))
}

#[test]
fn golden_event_lines_decode_to_the_expected_values() {
    let lines = golden_lines("events.jsonl");
    assert_eq!(lines.len(), 5);
    let events: Vec<_> = lines
        .iter()
        .map(|l| decode_event(l.as_bytes(), MAX).unwrap_or_else(|e| panic!("{l}: {e:?}")))
        .collect();

    let e = &events[0];
    assert_eq!(
        (e.event_id.as_ref(), e.visitor_id.as_ref()),
        ("g-1", "visitor-42")
    );
    assert_eq!(e.session_id.as_deref(), Some("s-9"));
    assert_eq!(e.kind, EventKind::PageView);
    // 11:00:00.123+01:00 is 10:00:00.123Z; the offset is kept.
    assert_eq!(e.time.epoch_ms, BASE_MS + 123);
    assert_eq!(e.time.offset_minutes, 60);
    let page = e.page.as_ref().expect("page");
    assert_eq!(
        page.url,
        "https://shop.example.com/checkout/payment?step=2#top"
    );
    assert_eq!(page.title.as_deref(), Some("Payment"));
    assert_eq!(
        page.referrer.as_deref(),
        Some("https://shop.example.com/cart")
    );
    let device = e.device.as_ref().expect("device");
    assert_eq!(device.category, Some(DeviceCategory::Desktop));
    assert_eq!(
        (device.browser.as_deref(), device.os.as_deref()),
        (Some("Firefox"), Some("Linux"))
    );
    let traffic = e.traffic.as_ref().expect("traffic");
    assert_eq!(traffic.source.as_deref(), Some("google"));
    assert_eq!(traffic.medium.as_deref(), Some("cpc"));
    assert_eq!(traffic.campaign.as_deref(), Some("winter"));
    assert!(e.search.is_none() && e.form.is_none() && e.chat.is_none() && e.custom.is_none());

    let e = &events[1];
    assert_eq!(e.kind, EventKind::Search);
    assert_eq!(e.time.epoch_ms, BASE_MS + 5_000);
    assert_eq!(e.search.as_ref().expect("search").results, Some(0));
    assert!(e.session_id.is_none() && e.page.is_none() && e.device.is_none());

    let e = &events[2];
    assert_eq!(e.kind, EventKind::FormFill);
    assert_eq!(e.time.epoch_ms, BASE_MS + 6_500);
    let form = e.form.as_ref().expect("form");
    assert_eq!(form.form_id, "loan-application");
    assert_eq!(form.action, FormAction::Submitted);
    assert_eq!(form.fields_completed, Some(7));

    let e = &events[3];
    assert_eq!(e.kind, EventKind::Chat);
    assert_eq!(e.chat, Some(ChatAction::Requested));
    assert!(e.session_id.is_none(), "a null session_id is absent");

    let e = &events[4];
    assert_eq!(e.kind, EventKind::Custom);
    assert_eq!(e.visitor_id, "visitor-\u{e9}", "JSON escapes are decoded");
    assert_eq!(e.time.epoch_ms, BASE_MS + 8_000);
    assert_eq!(e.time.offset_minutes, -360);
    assert_eq!(e.custom.as_ref().expect("custom").name, "calculator_used");
}

#[test]
fn golden_consent_lines_decode_to_the_expected_values() {
    let lines = golden_lines("consent.jsonl");
    assert_eq!(lines.len(), 3);
    let key = Some(&b"visitor-42"[..]);
    let updates: Vec<_> = lines
        .iter()
        .map(|l| {
            decode_consent(key, Some(l.as_bytes()), 0, MAX).unwrap_or_else(|e| panic!("{l}: {e:?}"))
        })
        .collect();
    assert!(updates.iter().all(|u| u.visitor_id == "visitor-42"));
    assert_eq!(updates[0].time_ms, BASE_MS);
    match updates[0].change {
        ConsentChange::State(p) => {
            assert!(p.grants(Purpose::Tracking) && p.grants(Purpose::Sales));
            assert!(!p.grants(Purpose::Marketing) && !p.grants(Purpose::Support));
        }
        ConsentChange::Erase => panic!("a state, not an erasure"),
    }
    assert_eq!(updates[1].time_ms, BASE_MS + 300_000);
    assert_eq!(updates[1].change, ConsentChange::Erase);
    assert_eq!(updates[2].time_ms, BASE_MS + 360_250);
    match updates[2].change {
        ConsentChange::State(p) => {
            for purpose in [
                Purpose::Tracking,
                Purpose::Support,
                Purpose::Sales,
                Purpose::Marketing,
            ] {
                assert!(
                    !p.grants(purpose),
                    "an empty purposes object grants nothing"
                );
            }
        }
        ConsentChange::Erase => panic!("a state, not an erasure"),
    }
}

/// Runs `golden/journey.txt` (lines `consent <json>` / `event <json>`).
fn run_journey(now_ms: Option<i64>) -> (Engine, RecordingSink) {
    let config = frozen_config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = RecordingSink::default();
    for (i, line) in golden_lines("journey.txt").iter().enumerate() {
        let origin = Origin::File {
            file: "journey.txt".into(),
            line: i as u64 + 1,
        };
        let (kind, record) = line.split_once(' ').expect("`consent …` or `event …`");
        match kind {
            "consent" => {
                engine.process_consent(None, Some(record.as_bytes()), 0, &origin, now_ms, &mut sink)
            }
            "event" => engine.process_event(None, record.as_bytes(), &origin, now_ms, &mut sink),
            other => panic!("line {}: unknown kind {other}", i + 1),
        }
    }
    engine.finish(&mut sink);
    (engine, sink)
}

fn is_rfc3339_ms_utc(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && parse_rfc3339(s).is_some_and(|t| rfc3339(t.epoch_ms) == s)
}

#[test]
fn journey_outputs_match_the_goldens() {
    let (engine, sink) = run_journey(None);
    let offers = sink.offers();

    // What must hold whatever the goldens say.
    assert!(!offers.is_empty());
    for o in &offers {
        assert_eq!(o.offer_id.len(), 32, "{}", o.offer_id);
        assert!(o
            .offer_id
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert_eq!(o.explanation.len(), 3);
        for c in &o.explanation {
            // Every reason is labelled, and a count is in its own units (a
            // whole number), not ln(1 + count).
            assert!(!c.label.is_empty() && c.label != c.feature, "{c:?}");
            if c.feature.starts_with("events.") || c.feature.starts_with("views.") {
                assert_eq!(c.value, c.value.round(), "{c:?}");
            }
        }
        assert!(o.probability > 0.0 && o.probability < 1.0);
        assert!(is_rfc3339_ms_utc(&o.event_time), "{}", o.event_time);
        assert_eq!(o.decided_at, o.event_time, "replay decides at event time");
        assert_eq!(
            o.visitor_id, "ana",
            "ben granted no sales/marketing purpose"
        );
    }
    let c = engine.counters();
    assert!(c.reconciles());
    assert_eq!(c.events_consumed, 14);
    assert_eq!(c.dead_lettered_total(), 3);
    assert_eq!(c.events_dropped.iter().sum::<u64>(), 1, "one duplicate");

    let offers_text: String = offers
        .iter()
        .map(|o| serde_json::to_string(o).expect("offer serializes") + "\n")
        .collect();
    let scores_text: String = sink
        .scores()
        .iter()
        .map(|s| s.json.clone() + "\n")
        .collect();
    let dead_text: String = sink
        .dead_letters()
        .iter()
        .map(|d| d.line.clone() + "\n")
        .collect();
    assert_golden("offers.jsonl", &offers_text);
    assert_golden("scores.jsonl", &scores_text);
    assert_golden("dead-letters.jsonl", &dead_text);

    // The golden offers read back into the same offers.
    for (line, offer) in offers_text.lines().zip(&offers) {
        let back: Offer = serde_json::from_str(line).expect("golden offer parses");
        assert_eq!(&back, *offer);
    }
}

#[test]
fn decision_time_changes_decided_at_only() {
    let (_, replay) = run_journey(None);
    let wall = BASE_MS + 86_400_000;
    let (_, live) = run_journey(Some(wall));
    let a = replay.offers();
    let b = live.offers();
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(&b) {
        assert_eq!(y.decided_at, rfc3339(wall));
        let mut y = (*y).clone();
        y.decided_at = x.decided_at.clone();
        assert_eq!(*x, &y, "only decided_at depends on the decision time");
    }
}

#[test]
fn rfc3339_test_helper_matches_known_instants() {
    assert_eq!(rfc3339(BASE_MS), "2026-11-29T10:00:00.000Z");
    assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(rfc3339(1_709_251_199_999), "2024-02-29T23:59:59.999Z");
    assert_eq!(rfc3339(951_782_400_000), "2000-02-29T00:00:00.000Z");
}
