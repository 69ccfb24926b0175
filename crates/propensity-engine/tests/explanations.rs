//! Offer explanations as a person reads them, through the whole engine
//! under the shipped configuration: every reason is labelled with its value
//! in its own units, and a `falls_to` offer ("slipping away") names what
//! fell since the previous score — the same after a restart from the
//! changelog between the two events, since the engine recomputes the
//! previous vector from the session state rather than remembering it.

mod common;

use std::sync::Arc;

use common::*;
use propensity_engine::wire::{Offer, Origin};
use propensity_engine::{Engine, EngineConfig, ModelSet};

/// Purchase rises on checkout pages and falls away from them; the other
/// outcomes never fire.
fn models(config: &EngineConfig) -> Arc<ModelSet> {
    let specs = [
        ModelSpec {
            outcome: "purchase",
            weights: &[("current_page.checkout", 3.0), ("events.total", 0.3)],
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

/// Runs the journey; with `restart_before_last`, the visitor's state goes
/// through the changelog into a fresh engine before the last event.
fn run(restart_before_last: bool) -> Vec<Offer> {
    let (config, mut engine, mut sink, grant) = engine_with_grant(&["tracking", "marketing"]);
    let events = journey();
    for (i, (id, t, url)) in events.iter().enumerate() {
        if restart_before_last && i + 1 == events.len() {
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
