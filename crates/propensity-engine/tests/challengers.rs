//! Champion/challenger through the whole engine: a challenger is scored in
//! shadow on every event its champion scores, published with
//! `role = "challenger"` and its own version, and changes nothing else.
//! The challengers used here score nearly every event above every trigger
//! threshold, so a challenger score that reached a decision would show as
//! offers the champion-only run does not make.

mod common;

use common::traffic::feed_pinned;
use common::{
    shipped_config, test_models, test_models_with_challengers, Output, RecordingSink,
    CHALLENGER_MODELS,
};
use propensity_engine::wire::Origin;
use propensity_engine::{Engine, EngineConfig, ModelRole, ModelSet};
use std::sync::Arc;

/// Runs the generated traffic through an engine serving `models`.
fn run(config: &Arc<EngineConfig>, models: Arc<ModelSet>) -> RecordingSink {
    let mut engine = Engine::new(config.clone(), models);
    let mut sink = RecordingSink::default();
    feed_pinned(&mut engine, 300, &mut sink);
    sink
}

/// Everything but the challengers' scores, in emission order.
fn without_challenger_scores(sink: &RecordingSink) -> Vec<&Output> {
    sink.outputs
        .iter()
        .filter(|o| !matches!(o, Output::Score(s) if s.role == ModelRole::Challenger))
        .collect()
}

#[test]
fn shadow_scores_never_cause_offers_and_change_no_other_output() {
    let config = shipped_config();
    let alone = run(&config, test_models(&config));
    let shadowed = run(&config, test_models_with_challengers(&config));

    assert!(
        alone.offers().len() >= 10,
        "the champions alone make offers"
    );
    // Offers, decisions, conversions, dead letters and the champions'
    // scores: identical, in the same order.
    assert_eq!(
        without_challenger_scores(&shadowed),
        alone.outputs.iter().collect::<Vec<_>>()
    );

    // The challengers were scored: one record beside every champion
    // score, with the challenger's version, and (being other models)
    // other probabilities, above most thresholds.
    let champion: Vec<_> = shadowed
        .scores()
        .into_iter()
        .filter(|s| s.role == ModelRole::Champion)
        .collect();
    let challenger: Vec<_> = shadowed
        .scores()
        .into_iter()
        .filter(|s| s.role == ModelRole::Challenger)
        .collect();
    assert_eq!(challenger.len(), champion.len());
    let key = |s: &&common::ScoreRecord| (s.event_id.clone(), s.outcome.clone());
    let mut a: Vec<_> = champion.iter().map(key).collect();
    let mut b: Vec<_> = challenger.iter().map(key).collect();
    a.sort();
    b.sort();
    assert_eq!(
        a, b,
        "the same events and outcomes are scored by both roles"
    );
    let challenger_versions: Vec<String> = CHALLENGER_MODELS
        .iter()
        .map(|m| common::artifact(&config, m).model_version)
        .collect();
    assert!(challenger
        .iter()
        .all(|s| challenger_versions.contains(&s.model_version)));
    assert!(champion
        .iter()
        .all(|s| !challenger_versions.contains(&s.model_version)));
    assert!(challenger
        .iter()
        .all(|s| s.json.contains(r#""role":"challenger""#)));
    assert!(champion
        .iter()
        .all(|s| s.json.contains(r#""role":"champion""#)));
    let high = challenger.iter().filter(|s| s.probability > 0.9).count();
    assert!(
        high * 2 > challenger.len(),
        "{high} of {} challenger scores above 0.9",
        challenger.len()
    );
}

#[test]
fn a_promotion_swaps_the_roles_from_the_next_event() {
    let config = shipped_config();
    let both = test_models_with_challengers(&config);
    let promoted = {
        let of = |specs: &[common::ModelSpec<'_>]| {
            specs
                .iter()
                .map(|m| ("<test>".to_owned(), common::artifact(&config, m)))
                .collect()
        };
        ModelSet::with_challengers(&config, of(&CHALLENGER_MODELS), of(&common::TEST_MODELS))
            .expect("the swapped set loads")
    };
    let mut engine = Engine::new(config.clone(), both.clone());
    let mut sink = RecordingSink::default();
    let t0 = common::BASE_MS;
    common::grant_all(&mut engine, "v", t0, &mut sink);
    let view = |k: i64| {
        common::bytes(&common::page_view(
            &format!("e{k}"),
            "v",
            t0 + k * 1_000,
            "https://s/products/x",
        ))
    };
    engine.process_event(None, &view(1), &Origin::Unknown, None, &mut sink);
    engine.set_models(promoted.clone());
    engine.process_event(None, &view(2), &Origin::Unknown, None, &mut sink);
    let version_of = |event: &str, role: ModelRole| -> String {
        sink.scores()
            .into_iter()
            .find(|s| s.event_id == event && s.outcome == "purchase" && s.role == role)
            .map(|s| s.model_version.clone())
            .expect("scored")
    };
    assert_eq!(
        version_of("e1", ModelRole::Champion),
        version_of("e2", ModelRole::Challenger)
    );
    assert_eq!(
        version_of("e1", ModelRole::Challenger),
        version_of("e2", ModelRole::Champion)
    );
    assert_eq!(
        both.challenger(0).map(|m| m.version.clone()),
        promoted.get(0).map(|m| m.version.clone())
    );
}

#[test]
fn a_challenger_without_a_champion_is_refused_naming_the_outcome() {
    let config = shipped_config();
    let champions = common::TEST_MODELS[..2]
        .iter()
        .map(|m| ("models/x.json".to_owned(), common::artifact(&config, m)))
        .collect();
    let challengers = vec![(
        "models/challengers/application_complete.json".to_owned(),
        common::artifact(&config, &CHALLENGER_MODELS[2]),
    )];
    let err = ModelSet::with_challengers(&config, champions, challengers)
        .expect_err("refused")
        .to_string();
    assert!(err.contains("application_complete"), "{err}");
    assert!(err.contains("no champion"), "{err}");
}
