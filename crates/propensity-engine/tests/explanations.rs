//! Offer explanations as a person reads them, through the whole engine
//! under the shipped configuration: every reason is labelled with its value
//! in its own units, and a `falls_to` offer ("slipping away") names what
//! fell since the session's peak score — the same after a restart from the
//! changelog anywhere along the way, since the peak is in the visitor's
//! snapshot.

mod common;

use std::sync::Arc;

use common::*;
use propensity_engine::wire::{Offer, Origin};
use propensity_engine::{Engine, EngineConfig, ModelSet};

/// Purchase rises on checkout pages, less on product pages, and falls away
/// from both; the other outcomes never fire.
fn models(config: &EngineConfig) -> Arc<ModelSet> {
    let specs = [
        ModelSpec {
            outcome: "purchase",
            weights: &[
                ("current_page.checkout", 3.0),
                ("current_page.product", 2.0),
                ("events.total", 0.3),
            ],
            intercept: -3.0,
        },
        ModelSpec {
            outcome: "webinar_signup",
            weights: &[],
            intercept: -9.0,
        },
        ModelSpec {
            outcome: "application_complete",
            weights: &[],
            intercept: -9.0,
        },
    ];
    let artifacts = specs
        .iter()
        .map(|m| ("<test>".to_owned(), artifact(config, m)))
        .collect();
    ModelSet::from_artifacts(config, artifacts).expect("models")
}

/// Five checkout page views 15 s apart, then, 2 min after the last, a blog
/// page: the purchase probability falls from about 0.6 to about 0.09,
/// through the `cart-rescue-offer` map's 0.15.
fn journey() -> Vec<(String, i64, &'static str)> {
    let mut v: Vec<(String, i64, &'static str)> = (0..5)
        .map(|i| (format!("e{i}"), BASE_MS + i * 15_000, "https://s/checkout"))
        .collect();
    v.push((
        "e5".into(),
        BASE_MS + 4 * 15_000 + 120_000,
        "https://s/blog/post",
    ));
    v
}

/// An engine under the shipped config with the test models, visitor `v`
/// granted `purposes`; the grant record is returned for restores.
fn engine_with_grant(purposes: &[&str]) -> (Arc<EngineConfig>, Engine, RecordingSink, Vec<u8>) {
    let config = shipped_config();
    let mut engine = Engine::new(config.clone(), models(&config));
    let mut sink = RecordingSink::default();
    let grant = bytes(&consent("v", BASE_MS, purposes));
    engine.process_consent(
        None,
        Some(&grant),
        BASE_MS,
        &Origin::Unknown,
        None,
        &mut sink,
    );
    (config, engine, sink, grant)
}

/// Five checkout views (the peak, about 0.63, at the fifth), a product
/// page 1 min later (about 0.40: still above the 0.15 threshold), then a
/// blog page 2 min after that (about 0.085: the fall).
fn journey_past_the_peak() -> Vec<(String, i64, &'static str)> {
    let mut v = journey();
    let last_checkout = BASE_MS + 4 * 15_000;
    v.pop();
    v.push(("e5".into(), last_checkout + 60_000, "https://s/products/a"));
    v.push(("e6".into(), last_checkout + 180_000, "https://s/blog/post"));
    v
}

/// Runs `events` for visitor `v` (session `s`, or the events' `session`
/// ids when given); with `restart_before`, the visitor's state goes through
/// the changelog into a fresh engine before that event.
fn run_events(events: &[(String, i64, &'static str)], restart_before: Option<usize>) -> Vec<Offer> {
    let (config, mut engine, mut sink, grant) = engine_with_grant(&["tracking", "marketing"]);
    for (i, (id, t, url)) in events.iter().enumerate() {
        if restart_before == Some(i) {
            let snap = engine.snapshot("v").expect("state");
            engine = Engine::new(config.clone(), models(&config));
            engine.restore("v", Some(&snap)).expect("restores");
            assert!(engine.load_consent(None, Some(&grant), BASE_MS));
        }
        let e = bytes(&page_view(id, "v", *t, url));
        engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);
    }
    sink.offers().into_iter().cloned().collect()
}

/// Runs the journey; with `restart_before_last`, the visitor's state goes
/// through the changelog into a fresh engine before the last event.
fn run(restart_before_last: bool) -> Vec<Offer> {
    let events = journey();
    run_events(&events, restart_before_last.then_some(events.len() - 1))
}

#[test]
fn a_falls_to_offer_says_what_fell() {
    let offers = run(false);
    let maps: Vec<&str> = offers.iter().map(|o| o.action_map.as_str()).collect();
    assert_eq!(maps, ["cart-rescue-offer"]);
    let reasons = &offers[0].explanation;
    // Leaving checkout is the fall; the count of events rose (a rise is
    // never a reason for a fall), nothing else changed.
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].feature, "current_page.checkout");
    assert_eq!(reasons[0].label, "last on checkout pages 2 min ago");
    assert_eq!(reasons[0].value, 0.0);
}

#[test]
fn the_fall_is_explained_the_same_after_a_restart() {
    assert_eq!(run(true), run(false));
}

#[test]
fn a_fall_is_explained_since_the_peak_not_the_previous_score() {
    let offers = run_events(&journey_past_the_peak(), None);
    let maps: Vec<&str> = offers.iter().map(|o| o.action_map.as_str()).collect();
    assert_eq!(maps, ["cart-rescue-offer"]);
    let reasons = &offers[0].explanation;
    // Since the previous score (on the product page) only the product page
    // was lost; since the peak (the fifth checkout view, 3 min before the
    // fall) the checkout page was, and the product page came and went.
    assert_eq!(reasons.len(), 1, "{reasons:?}");
    assert_eq!(reasons[0].feature, "current_page.checkout");
    assert_eq!(reasons[0].label, "last on checkout pages 3 min ago");
}

#[test]
fn the_peak_survives_a_restart_anywhere_along_the_way() {
    let events = journey_past_the_peak();
    let uninterrupted = run_events(&events, None);
    for restart_before in 1..events.len() {
        assert_eq!(
            run_events(&events, Some(restart_before)),
            uninterrupted,
            "restart before event {restart_before}"
        );
    }
}

#[test]
fn a_new_session_falls_from_its_own_peak() {
    // A first session peaks on checkout pages; 40 min later (past the
    // 20 min inactivity timeout) a second one peaks on a product page and
    // falls on the blog: its offer knows nothing of the first session.
    let mut events = journey();
    events.pop();
    let later = BASE_MS + 40 * 60_000;
    for (i, url) in ["https://s/a", "https://s/b", "https://s/c", "https://s/d"]
        .into_iter()
        .enumerate()
    {
        events.push((format!("n{i}"), later + i as i64 * 10_000, url));
    }
    events.push(("n4".into(), later + 40_000, "https://s/products/a"));
    events.push(("n5".into(), later + 100_000, "https://s/blog/post"));
    let offers = run_events(&events, None);
    let maps: Vec<&str> = offers.iter().map(|o| o.action_map.as_str()).collect();
    assert_eq!(maps, ["cart-rescue-offer"]);
    let reasons = &offers[0].explanation;
    assert_eq!(reasons[0].feature, "current_page.product", "{reasons:?}");
    assert_eq!(reasons[0].label, "last on product pages 1 min ago");
    assert!(
        reasons.iter().all(|r| r.feature != "current_page.checkout"),
        "{reasons:?}"
    );
}

#[test]
fn peaks_are_forgotten_with_their_session() {
    let events = journey_past_the_peak();
    // Up to the product page: the session is above the threshold, so its
    // peak is held.
    let up_to_product = |engine: &mut Engine, sink: &mut RecordingSink| {
        for (id, t, url) in &events[..6] {
            let e = bytes(&page_view(id, "v", *t, url));
            engine.process_event(None, &e, &Origin::Unknown, None, sink);
        }
        assert_eq!(engine.sessions_with_peaks(), 1);
    };
    let after = events[5].1 + 1_000;
    let records = [
        (
            "the fall",
            bytes(&page_view("e6", "v", events[6].1, events[6].2)),
        ),
        ("a revocation", bytes(&consent("v", after, &[]))),
        (
            "an erasure",
            bytes(
                &serde_json::json!({"visitor_id": "v", "timestamp": rfc3339(after), "erase": true}),
            ),
        ),
        // Another visitor's event 2 h later: v's session expires idle.
        (
            "idle expiry",
            bytes(&page_view("w0", "w", after + 7_200_000, "https://s/a")),
        ),
    ];
    for (what, record) in records {
        let (_, mut engine, mut sink, _) = engine_with_grant(&["tracking", "marketing"]);
        grant_all(&mut engine, "w", BASE_MS, &mut sink);
        up_to_product(&mut engine, &mut sink);
        if what == "a revocation" || what == "an erasure" {
            engine.process_consent(
                None,
                Some(&record),
                after,
                &Origin::Unknown,
                None,
                &mut sink,
            );
        } else {
            engine.process_event(None, &record, &Origin::Unknown, None, &mut sink);
        }
        assert_eq!(engine.sessions_with_peaks(), 0, "after {what}");
    }
}

#[test]
fn other_offers_keep_the_largest_contributions_with_labels() {
    // With sales consent the checkout chat fires on the third checkout
    // view (3 events on a /c* page).
    let (_, mut engine, mut sink, _) = engine_with_grant(&["tracking", "sales"]);
    for (id, t, url) in journey().into_iter().take(3) {
        let e = bytes(&page_view(&id, "v", t, url));
        engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);
    }
    let offers = sink.offers();
    assert_eq!(offers.len(), 1);
    let r = &offers[0].explanation;
    let got: Vec<(&str, f64, &str)> = r
        .iter()
        .map(|c| (c.feature.as_str(), c.value, c.label.as_str()))
        .collect();
    assert_eq!(
        got[..2],
        [
            ("current_page.checkout", 1.0, "now on a checkout page"),
            ("events.total", 3.0, "3 events in this session"),
        ]
    );
}
