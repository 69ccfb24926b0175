//! Offer feedback through the engine.
//!
//! - The contact policy: after `max_declines` declines of a map's offers
//!   within the window, the map's decisions for the visitor are
//!   `contact_policy` (no offer) until the suppression ends; an acceptance
//!   starts the count anew; other maps are untouched.
//! - Feedback is consent-gated: a visitor without tracking consent has
//!   feedback dropped, and revocation forgets the contact state.
//! - Counts reconcile (consumed = applied + dropped + dead-lettered), and
//!   the state survives a restart through the changelog snapshot.

mod common;

use common::{
    bytes, config_from, consent, low_threshold_settings, page_view, test_models, RecordingSink,
    BASE_MS,
};
use propensity_engine::config::ContactPolicySettings;
use propensity_engine::{Engine, EngineConfig, EngineSummary, Origin};
use serde_json::{json, Value};
use std::sync::Arc;

const MAP: &str = "checkout-assist-chat";
const DAY: i64 = 86_400_000;
const ALL: [&str; 4] = ["tracking", "support", "sales", "marketing"];

fn config() -> Arc<EngineConfig> {
    let mut s = low_threshold_settings();
    for m in &mut s.action_maps {
        if m.name == MAP {
            m.contact_policy = Some(ContactPolicySettings {
                max_declines: 2,
                within_days: 7.0,
                suppress_days: 5.0,
            });
        }
    }
    config_from(&s)
}

/// Feedback on an offer whose id is made of `t` (each call a new offer).
fn feedback(visitor: &str, status: &str, t: i64) -> Vec<u8> {
    bytes(&json!({
        "offer_id": format!("o-{t}"),
        "visitor_id": visitor,
        "action_map": MAP,
        "status": status,
        "timestamp": common::rfc3339(t),
    }))
}

/// One session of checkout browsing starting at `t0`; returns the
/// decisions of [`MAP`] it got, by kind.
fn session(engine: &mut Engine, visitor: &str, t0: i64) -> Vec<String> {
    let mut sink = RecordingSink::default();
    for (n, path) in ["/", "/cart", "/checkout"].iter().enumerate() {
        let t = t0 + n as i64 * 10_000;
        let url = format!("https://shop.example.com{path}");
        let e = bytes(&page_view(&format!("{visitor}-{t}"), visitor, t, &url));
        engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);
    }
    sink.decisions()
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).expect("JSON"))
        .filter(|d| d["action_map"] == MAP)
        .map(|d| d["decision"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn grant(engine: &mut Engine, visitor: &str, t: i64, purposes: &[&str]) {
    let c = bytes(&consent(visitor, t, purposes));
    engine.process_consent(
        None,
        Some(&c),
        t,
        &Origin::Unknown,
        None,
        &mut RecordingSink::default(),
    );
}

fn send(engine: &mut Engine, visitor: &str, status: &str, t: i64) {
    engine.process_feedback(
        None,
        &feedback(visitor, status, t),
        &Origin::Unknown,
        &mut RecordingSink::default(),
    );
}

#[test]
fn declines_suppress_the_map_for_the_configured_days() {
    let config = config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    grant(&mut engine, "ana", BASE_MS, &ALL);
    assert!(session(&mut engine, "ana", BASE_MS).contains(&"offered".to_owned()));
    // One decline: not yet.
    send(&mut engine, "ana", "declined", BASE_MS + DAY);
    assert!(session(&mut engine, "ana", BASE_MS + DAY + 1000).contains(&"offered".to_owned()));
    // The second within 7 days: suppressed for 5 days from it.
    send(&mut engine, "ana", "declined", BASE_MS + 2 * DAY);
    let during = session(&mut engine, "ana", BASE_MS + 3 * DAY);
    assert!(
        !during.is_empty() && during.iter().all(|k| k == "contact_policy"),
        "{during:?}"
    );
    // Other maps still offer meanwhile? (The policy is per map.)
    let after = session(&mut engine, "ana", BASE_MS + 7 * DAY + 1000);
    assert!(after.contains(&"offered".to_owned()), "{after:?}");
    let summary = EngineSummary::new(engine.counters(), &config);
    assert_eq!(summary.feedback.suppressions_by_action_map[MAP], 1);
    assert!(summary.suppressed_by_contact_policy[MAP] >= 1);
    assert_eq!(summary.feedback.by_action_map[MAP]["declined"], 2);
    assert!(summary.feedback.reconciles);
}

#[test]
fn an_acceptance_or_an_old_decline_starts_the_count_anew() {
    let config = config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    grant(&mut engine, "ben", BASE_MS, &ALL);
    send(&mut engine, "ben", "declined", BASE_MS + DAY);
    send(&mut engine, "ben", "accepted", BASE_MS + DAY + 1);
    send(&mut engine, "ben", "declined", BASE_MS + 2 * DAY);
    assert!(session(&mut engine, "ben", BASE_MS + 3 * DAY).contains(&"offered".to_owned()));
    // 8 days after the last decline: outside the 7-day window.
    send(&mut engine, "ben", "declined", BASE_MS + 10 * DAY);
    assert!(session(&mut engine, "ben", BASE_MS + 11 * DAY).contains(&"offered".to_owned()));
}

#[test]
fn a_decline_sent_again_is_counted_once() {
    let config = config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    grant(&mut engine, "eve", BASE_MS, &ALL);
    let again = feedback("eve", "declined", BASE_MS + DAY);
    for _ in 0..3 {
        engine.process_feedback(
            None,
            &again,
            &Origin::Unknown,
            &mut RecordingSink::default(),
        );
    }
    assert!(session(&mut engine, "eve", BASE_MS + 2 * DAY).contains(&"offered".to_owned()));
    // A decline of another offer is the second one.
    send(&mut engine, "eve", "declined", BASE_MS + 2 * DAY + 60_000);
    let kinds = session(&mut engine, "eve", BASE_MS + 3 * DAY);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "contact_policy"),
        "{kinds:?}"
    );
}

#[test]
fn feedback_is_gated_by_consent_and_revocation_forgets_it() {
    let config = config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    // No consent at all: dropped.
    send(&mut engine, "cy", "declined", BASE_MS);
    grant(&mut engine, "cy", BASE_MS + 1, &ALL);
    send(&mut engine, "cy", "declined", BASE_MS + DAY);
    send(&mut engine, "cy", "declined", BASE_MS + DAY + 1);
    assert!(session(&mut engine, "cy", BASE_MS + 2 * DAY)
        .iter()
        .all(|k| k == "contact_policy"));
    // Revoked, then granted again: the suppression is gone with the rest.
    grant(&mut engine, "cy", BASE_MS + 2 * DAY + 60_000, &[]);
    send(&mut engine, "cy", "declined", BASE_MS + 2 * DAY + 70_000);
    grant(&mut engine, "cy", BASE_MS + 3 * DAY, &ALL);
    assert!(session(&mut engine, "cy", BASE_MS + 3 * DAY + 1000).contains(&"offered".to_owned()));
    // Unknown map and garbage.
    let unknown = bytes(
        &json!({"offer_id": "o", "visitor_id": "cy", "action_map": "gone", "status": "shown", "timestamp": common::rfc3339(BASE_MS)}),
    );
    let mut sink = RecordingSink::default();
    engine.process_feedback(None, &unknown, &Origin::Unknown, &mut sink);
    engine.process_feedback(None, b"{not json", &Origin::Unknown, &mut sink);
    assert_eq!(sink.dead_letters().len(), 1);
    let f = EngineSummary::new(engine.counters(), &config).feedback;
    assert_eq!(
        (
            f.consumed,
            f.applied,
            f.dropped_no_consent,
            f.dropped_unknown_map,
            f.dead_lettered
        ),
        (6, 2, 2, 1, 1)
    );
    assert!(f.reconciles);
}

#[test]
fn a_suppression_survives_a_restart_through_the_changelog() {
    let config = config();
    let mut engine = Engine::new(config.clone(), test_models(&config));
    grant(&mut engine, "dee", BASE_MS, &ALL);
    send(&mut engine, "dee", "declined", BASE_MS + DAY);
    send(&mut engine, "dee", "declined", BASE_MS + DAY + 1);
    let snapshot = engine.snapshot("dee").expect("a snapshot");
    let text = String::from_utf8(snapshot.clone()).expect("JSON");
    assert!(text.contains("\"contact\"") && text.contains(MAP), "{text}");
    let mut restarted = Engine::new(config.clone(), test_models(&config));
    restarted.restore("dee", Some(&snapshot)).expect("restore");
    let kinds = session(&mut restarted, "dee", BASE_MS + 2 * DAY);
    assert!(
        !kinds.is_empty() && kinds.iter().all(|k| k == "contact_policy"),
        "{kinds:?}"
    );
    // An access request shows it.
    let (_, rest) = restarted.visitor_view("dee").expect("held");
    assert!(rest.is_some_and(|s| !s.contact.is_empty()));
}
