//! Percentiles: where a score falls among the training population's scores.
//!
//! - Scores, decisions and offers carry the percentile of their
//!   probability under the model's `score_percentiles` (the test models'
//!   training scores were uniform, so p has percentile ⌊100 p⌋).
//! - A `top_percent` trigger fires exactly on the events whose score is in
//!   the top share of the training population.
//! - A `top_percent` map cannot run on a model without a score
//!   distribution, and a share outside 1–99 is refused; both errors name
//!   what to fix.

mod common;

use common::{
    artifact, bytes, config_from, low_threshold_settings, page_view, test_models, RecordingSink,
    BASE_MS, TEST_MODELS,
};
use propensity_engine::config::Trigger;
use propensity_engine::{Engine, EngineConfig, ModelSet, Origin};
use serde_json::Value;

const URLS: [&str; 6] = [
    "/",
    "/products/widget",
    "/cart",
    "/checkout",
    "/search?q=x",
    "/webinars/ai",
];

/// The low-threshold maps, the purchase ones turned into `top_percent`
/// triggers of `share` with no caps in the way (a capped decision is
/// still a decision, so every firing shows).
fn top_percent_settings(share: u8) -> propensity_engine::EngineSettings {
    let mut s = low_threshold_settings();
    s.action_maps.retain(|m| m.outcome == "purchase");
    for m in &mut s.action_maps {
        m.trigger = Trigger::TopPercent { value: share };
    }
    s
}

#[test]
fn top_percent_fires_exactly_on_the_top_share_of_the_training_scores() {
    let config = config_from(&top_percent_settings(20));
    let mut engine = Engine::new(config.clone(), test_models(&config));
    let mut sink = RecordingSink::default();
    let origin = Origin::Unknown;
    for v in 0..60 {
        let visitor = format!("v{v}");
        let t0 = BASE_MS + v * 100_000;
        common::grant_all(&mut engine, &visitor, t0, &mut sink);
        for n in 0..(3 + v % 7) {
            let url = format!("https://s{}", URLS[((v + n * 3) % 6) as usize]);
            let event = bytes(&page_view(
                &format!("{visitor}-{n}"),
                &visitor,
                t0 + n * 5_000,
                &url,
            ));
            engine.process_event(None, &event, &origin, None, &mut sink);
        }
    }
    let decisions: Vec<Value> = sink
        .decisions()
        .iter()
        .map(|d| serde_json::from_str(d).expect("JSON"))
        .collect();
    let (mut top, mut below) = (0, 0);
    for s in sink.scores().iter().filter(|s| s.outcome == "purchase") {
        let json: Value = serde_json::from_str(&s.json).expect("JSON");
        let percentile = json["percentile"]
            .as_u64()
            .expect("a percentile on every score");
        assert_eq!(
            percentile,
            (s.probability * 100.0).floor().min(99.0) as u64,
            "{json}"
        );
        let fired = decisions
            .iter()
            .any(|d| d["trigger_event_id"] == json["event_id"] && d["outcome"] == "purchase");
        if percentile >= 80 {
            top += 1;
            assert!(fired, "percentile {percentile} did not fire: {json}");
        } else {
            below += 1;
            assert!(!fired, "percentile {percentile} fired: {json}");
        }
    }
    assert!(
        top > 20 && below > 20,
        "{top} scores in the top 20 %, {below} below"
    );
    for d in &decisions {
        assert!(d["percentile"].as_u64() >= Some(80), "{d}");
    }
    for o in sink.offers() {
        assert!(o.percentile >= Some(80), "{o:?}");
    }
    assert!(!sink.offers().is_empty());
}

#[test]
fn a_top_percent_map_needs_a_model_with_a_score_distribution() {
    let config = config_from(&top_percent_settings(10));
    let artifacts = TEST_MODELS
        .iter()
        .map(|m| {
            let mut a = artifact(&config, m);
            if m.outcome == "purchase" {
                a.score_percentiles.clear();
            }
            ("models/purchase.json".to_owned(), a)
        })
        .collect();
    let err = ModelSet::from_artifacts(&config, artifacts)
        .expect_err("refused")
        .to_string();
    assert!(
        err.contains("score_percentiles")
            && err.contains("checkout-assist-chat")
            && err.contains("models/purchase.json"),
        "{err}"
    );
}

#[test]
fn a_share_outside_1_to_99_is_refused_naming_the_key() {
    for share in [0, 100] {
        let err = EngineConfig::from_settings(&top_percent_settings(share))
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("action_maps[0].trigger.value") && err.contains("1 to 99"),
            "{err}"
        );
    }
}
