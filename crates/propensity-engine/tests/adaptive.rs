//! The adaptive model: a learner warm-started from a trained model scores
//! as it does; updates move its score toward the labels; its state
//! round-trips through JSON to the same bits; and through the whole
//! engine, as a challenger, it changes no output but its own scores and
//! learns once per session that online evaluation labels for it.

mod common;

use common::traffic::feed_pinned;
use common::{artifact, shipped_settings, test_models, Output, RecordingSink, TEST_MODELS};
use propensity_engine::adaptive::{Learner, LearnerState, VERSION_SUFFIX};
use propensity_engine::config::AdaptiveConfig;
use propensity_engine::model::OutcomeModel;
use propensity_engine::{Engine, EngineConfig, ModelRole};
use std::sync::Arc;

fn adaptive(prior_sessions: f64) -> AdaptiveConfig {
    AdaptiveConfig {
        learns: vec![true; 3],
        role: ModelRole::Challenger,
        alpha: 0.2,
        beta: 1.0,
        l1: 0.0,
        l2: 0.0,
        prior_sessions,
    }
}

/// A trained-looking model of the shipped config: the test weights, with
/// means and deviations that are not 0 and 1, so standardisation matters.
fn base(config: &EngineConfig) -> OutcomeModel {
    let mut a = artifact(config, &TEST_MODELS[0]);
    for (j, (m, s)) in a.means.iter_mut().zip(a.stds.iter_mut()).enumerate() {
        *m = 0.1 * (j % 7) as f64;
        *s = 0.5 + 0.25 * (j % 5) as f64;
    }
    OutcomeModel::from_artifact(&a, config, "purchase", "<test>").expect("valid")
}

/// A sparse vector and its dense form.
fn vector(dim: usize, seed: u32) -> (Vec<(u32, f32)>, Vec<f32>) {
    let entries: Vec<(u32, f32)> = (0..dim as u32)
        .filter(|j| (j * 7 + seed) % 5 == 0)
        .map(|j| (j, 0.5 + ((j + seed) % 4) as f32))
        .collect();
    let mut dense = vec![0.0; dim];
    for &(j, x) in &entries {
        dense[j as usize] = x;
    }
    (entries, dense)
}

#[test]
fn a_warm_started_learner_scores_as_its_base_and_learns_toward_the_labels() {
    let config = common::shipped_config();
    let base = base(&config);
    let dim = config.features.dim();
    let mut learner = Learner::warm_start(&base, &adaptive(50.0)).expect("warm start");
    assert_eq!(
        learner.model().version,
        format!("{}{VERSION_SUFFIX}", base.version)
    );
    for seed in 0..20 {
        let (_, x) = vector(dim, seed);
        let (a, b) = (base.probability(&x), learner.model().probability(&x));
        assert!((a - b).abs() < 1e-12, "seed {seed}: {a} vs {b}");
    }
    let (pos, pos_dense) = vector(dim, 1);
    let (neg, neg_dense) = vector(dim, 2);
    let (p0, q0) = (
        learner.model().probability(&pos_dense),
        learner.model().probability(&neg_dense),
    );
    for _ in 0..30 {
        learner.learn(&pos, true);
        learner.learn(&neg, false);
    }
    let (p1, q1) = (
        learner.model().probability(&pos_dense),
        learner.model().probability(&neg_dense),
    );
    assert!(p1 > p0 + 0.05, "positive: {p0} -> {p1}");
    assert!(q1 < 0.7 * q0, "negative: {q0} -> {q1}");
    assert_eq!(learner.updates(), 60);

    // The state, through JSON, restores the same bits.
    let text = serde_json::to_string(&learner.state()).expect("json");
    let state: LearnerState = serde_json::from_str(&text).expect("reads back");
    let restored = Learner::from_state(&base, &adaptive(50.0), &state).expect("restores");
    let bits = |l: &Learner| {
        let (w, b) = l.weights();
        w.iter()
            .chain(std::iter::once(&b))
            .map(|x| x.to_bits())
            .collect::<Vec<_>>()
    };
    assert_eq!(bits(&restored), bits(&learner));
    assert_eq!(restored.updates(), 60);
    // A state of another length is refused, naming the base.
    let mut short = state.clone();
    short.z.pop();
    let err = Learner::from_state(&base, &adaptive(50.0), &short)
        .expect_err("refused")
        .to_string();
    assert!(err.contains(&base.version), "{err}");
}

#[test]
fn a_larger_prior_keeps_the_trained_weights_longer() {
    let config = common::shipped_config();
    let base = base(&config);
    let (pos, dense) = vector(config.features.dim(), 3);
    let moved = |prior: f64| {
        let mut l = Learner::warm_start(&base, &adaptive(prior)).expect("warm start");
        for _ in 0..10 {
            l.learn(&pos, true);
        }
        l.model().probability(&dense) - base.probability(&dense)
    };
    let (fast, slow) = (moved(1.0), moved(1000.0));
    assert!(
        fast > slow && slow > 0.0,
        "prior 1: +{fast}, prior 1000: +{slow}"
    );
}

#[test]
fn an_adaptive_challenger_changes_no_other_output_and_learns_once_per_labelled_session() {
    let mut settings = shipped_settings();
    settings.adaptive.outcomes = vec![
        "purchase".into(),
        "webinar_signup".into(),
        "application_complete".into(),
    ];
    let learning = common::config_from(&settings);
    let plain = common::shipped_config();
    let run = |config: &Arc<EngineConfig>| {
        let mut engine = Engine::new(config.clone(), test_models(config));
        let mut sink = RecordingSink::default();
        feed_pinned(&mut engine, 300, &mut sink);
        (engine, sink)
    };
    let (plain_engine, alone) = run(&plain);
    let (engine, shadowed) = run(&learning);
    let others: Vec<&Output> = shadowed
        .outputs
        .iter()
        .filter(|o| !matches!(o, Output::Score(s) if s.role == ModelRole::Challenger))
        .collect();
    assert_eq!(others, alone.outputs.iter().collect::<Vec<_>>());
    let challenger: Vec<_> = shadowed
        .scores()
        .into_iter()
        .filter(|s| s.role == ModelRole::Challenger)
        .collect();
    assert!(!challenger.is_empty());
    assert!(challenger
        .iter()
        .all(|s| s.model_version.ends_with(VERSION_SUFFIX)));
    // Learning moved some scores away from the champion's.
    let champion = shadowed
        .scores()
        .into_iter()
        .filter(|s| s.role == ModelRole::Champion)
        .map(|s| ((s.event_id.clone(), s.outcome.clone()), s.probability))
        .collect::<std::collections::BTreeMap<_, _>>();
    let moved = challenger
        .iter()
        .filter(|s| champion[&(s.event_id.clone(), s.outcome.clone())] != s.probability)
        .count();
    assert!(
        moved * 2 > challenger.len(),
        "{moved} of {} moved",
        challenger.len()
    );
    // One update per labelled session and outcome.
    let n = learning.outcomes.len();
    let mut total = 0;
    for i in 0..n {
        let updates: u64 = engine.learners(i).iter().map(|l| l.updates()).sum();
        assert_eq!(
            updates,
            engine.online_eval()[n + i].sessions(),
            "outcome {i}"
        );
        assert_eq!(
            engine.online_eval()[n + i].sessions(),
            engine.online_eval()[i].sessions(),
            "both roles labelled the same sessions"
        );
        total += updates;
    }
    assert!(total >= 100, "{total} updates");
    // Without [adaptive] nothing is kept for learning.
    assert_eq!(plain_engine.sessions_with_learning_vectors(), 0);
    assert!(plain_engine.learners(0).is_empty());
}
