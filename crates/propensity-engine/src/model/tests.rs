//! Tests of model artifacts and scoring: validation at load, sparse and
//! dense scoring bit for bit, explanations and reason choice, versions.

use super::*;

#[test]
fn sigmoid_is_stable() {
    assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
    assert!(sigmoid(800.0) <= 1.0 && sigmoid(800.0) > 0.999);
    assert!(sigmoid(-800.0) >= 0.0 && sigmoid(-800.0) < 1e-300);
}

#[test]
fn sparse_scoring_has_the_bits_of_dense_scoring() {
    let model = OutcomeModel {
        version: "t".into(),
        folded_weights: vec![0.5, -1.25, 3.0, -0.0, 2.0e-3],
        all_finite: true,
        folded_bias: -0.0,
        intercept: 0.0,
        weights: vec![],
        means: vec![],
        stds: vec![],
        weak: vec![],
        drift: None,
        percentiles: vec![],
    };
    for x in [
        [0.0f32, 0.0, 0.0, 0.0, 0.0],
        [0.0, -0.0, 1.0, 0.0, 7.5],
        [0.3, 0.0, 0.0, 2.0, -0.0],
        [1.0, 0.4, 0.0, 0.0, 0.0],
    ] {
        let nonzero: Vec<u32> = (0..x.len() as u32)
            .filter(|&i| x[i as usize] != 0.0)
            .collect();
        assert_eq!(
            model.probability(&x).to_bits(),
            model.probability_sparse(&x, &nonzero).to_bits(),
            "{x:?}"
        );
    }
}

#[test]
fn explanations_are_the_head_of_the_sorted_contributions() {
    let model = OutcomeModel {
        version: "t".into(),
        folded_weights: vec![],
        all_finite: true,
        folded_bias: 0.0,
        intercept: 0.0,
        weights: vec![1.0, -2.0, 0.5, 2.0, -0.0, 3.0, f64::NAN],
        means: vec![0.0; 7],
        stds: vec![1.0; 7],
        weak: vec![false; 7],
        drift: None,
        percentiles: vec![],
    };
    let names: Vec<String> = (0..7).map(|i| format!("f{i}")).collect();
    let x = [1.0f32, 1.0, 4.0, 1.0, 9.0, -1.0, 0.0];
    for n in 0..9 {
        let mut all: Vec<(usize, f64)> = (0..7)
            .map(|i| (i, model.weights[i] * f64::from(x[i])))
            .collect();
        all.sort_by(|a, b| b.1.abs().total_cmp(&a.1.abs()).then(a.0.cmp(&b.0)));
        let want: Vec<String> = all.iter().take(n).map(|(i, _)| names[*i].clone()).collect();
        let got: Vec<String> = model
            .explain(&x, &names, n)
            .into_iter()
            .map(|c| c.feature)
            .collect();
        assert_eq!(got, want, "n = {n}");
    }
}

/// A model over `names` with `weights`, mean 0 and deviation 1, so a
/// contribution is `weight × x`.
fn model_over(names: &[&str], weights: &[f64]) -> (OutcomeModel, Vec<String>) {
    let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
    let model = OutcomeModel {
        version: "t".into(),
        folded_weights: vec![],
        all_finite: true,
        folded_bias: 0.0,
        intercept: 0.0,
        weights: weights.to_vec(),
        means: vec![0.0; weights.len()],
        stds: vec![1.0; weights.len()],
        weak: names
            .iter()
            .map(|n| FeatureLabel::new(n).is_weak_reason())
            .collect(),
        drift: None,
        percentiles: vec![],
    };
    (model, names)
}

fn features_of(reasons: &[Contribution]) -> Vec<&str> {
    reasons.iter().map(|c| c.feature.as_str()).collect()
}

#[test]
fn other_buckets_and_time_circles_give_way_to_named_features_half_as_strong() {
    let (model, names) = model_over(
        &[
            "views.pricing",
            "views.other",
            "time.hour_sin",
            "events.search",
        ],
        &[1.0, 2.0, 1.5, 0.1],
    );
    // views.other (2.0) is larger than views.pricing (1.0), but
    // views.pricing explains half as much: it comes first. Then only
    // events.search (0.1) is named, and the weak ones dominate it.
    let x = [1.0f32, 1.0, 1.0, 1.0];
    assert_eq!(
        features_of(&model.explain(&x, &names, 1)),
        ["views.pricing"]
    );
    assert_eq!(
        features_of(&model.explain(&x, &names, 3)),
        ["views.pricing", "views.other", "time.hour_sin"]
    );
    // Just under half: the other bucket dominates and leads.
    let x = [0.99f32, 1.0, 0.0, 0.0];
    assert_eq!(
        features_of(&model.explain(&x, &names, 2)),
        ["views.other", "views.pricing"]
    );
    // The time circle is held back the same way.
    let x = [0.75f32, 0.0, 1.0, 0.0];
    assert_eq!(
        features_of(&model.explain(&x, &names, 1)),
        ["views.pricing"]
    );
}

#[test]
fn a_weak_reason_is_chosen_when_it_is_alone() {
    let (model, names) = model_over(&["views.other", "events.search"], &[2.0, 0.0]);
    let x = [1.0f32, 1.0];
    assert_eq!(
        features_of(&model.explain(&x, &names, 2)),
        ["views.other", "events.search"]
    );
    let (model, names) = model_over(&["dwell_secs.other"], &[-1.0]);
    assert_eq!(
        features_of(&model.explain(&[1.0], &names, 3)),
        ["dwell_secs.other"]
    );
}

#[test]
fn reasons_carry_own_units_and_labels() {
    let (model, names) = model_over(&["views.pricing", "browser.firefox"], &[0.5, -0.25]);
    let x = [4.0f32.ln(), 1.0];
    let r = model.explain(&x, &names, 2);
    assert_eq!(r[0].feature, "views.pricing");
    assert_eq!(r[0].value, 3.0);
    assert_eq!(r[0].label, "viewed pricing pages 3 times");
    // The contribution stays on the vector scale: 0.5 × ln 4.
    assert_eq!(r[0].contribution, round6(0.5 * f64::from(4.0f32.ln())));
    assert_eq!((r[1].value, r[1].label.as_str()), (1.0, "uses Firefox"));
    assert_eq!(r[1].contribution, -0.25);
}

#[test]
fn a_fall_is_explained_by_what_fell_between_two_vectors() {
    let (model, names) = model_over(
        &[
            "current_page.product",
            "views.blog",
            "session.duration_secs",
            "time.hour_sin",
            "views.product",
        ],
        &[1.2, -0.3, -0.5, 5.0, 2.0],
    );
    let ln = |v: f64| v.ln_1p() as f32;
    // Was on a product page 6 min ago; now on the blog, later in the
    // day. The product views did not change: not a reason.
    let before = [1.0f32, ln(1.0), ln(300.0), 0.50, ln(3.0)];
    let now = [0.0f32, ln(2.0), ln(660.0), 0.46, ln(3.0)];
    let r = model.explain_fall(&before, &now, &names, 360.0, 3);
    assert_eq!(
        features_of(&r),
        [
            "current_page.product",
            "session.duration_secs",
            "views.blog"
        ],
        "{r:?}"
    );
    assert_eq!(r[0].label, "last on product pages 6 min ago");
    assert_eq!((r[0].value, r[0].contribution), (0.0, 0.0));
    assert_eq!(r[1].label, "session running for 11 min");
    assert_eq!(r[1].contribution, round6(-0.5 * f64::from(ln(660.0))));
    assert_eq!(
        r[2].label,
        "viewed blog pages twice (1 more in the last 6 min)"
    );
    // Nothing fell: the reasons of the score itself.
    let same = model.explain_fall(&now, &now, &names, 10.0, 1);
    assert_eq!(same, model.explain(&now, &names, 1));
}

#[test]
fn versions_follow_parameters() {
    let a = ModelArtifact::derive_version("p", &[1.0, 2.0], 0.5);
    assert_eq!(a, ModelArtifact::derive_version("p", &[1.0, 2.0], 0.5));
    assert_ne!(a, ModelArtifact::derive_version("p", &[1.0, 2.5], 0.5));
    assert!(a.starts_with("p-"));
}

#[test]
fn percentiles_place_a_score_among_the_training_scores() {
    // 1,000 scores 0.000, 0.001, …, 0.999: the k-th percentile is ≈ k/100.
    let scores: Vec<f64> = (0..1000).map(|i| f64::from(i) / 1000.0).collect();
    let q = score_percentiles(&scores);
    assert_eq!(q.len(), SCORE_PERCENTILES);
    assert!(q.windows(2).all(|w| w[0] <= w[1]));
    for (k, v) in q.iter().enumerate() {
        assert!((v - (k + 1) as f64 / 100.0).abs() < 0.0015, "{k}: {v}");
    }
    let model = OutcomeModel {
        version: "t".into(),
        folded_weights: vec![],
        all_finite: true,
        folded_bias: 0.0,
        intercept: 0.0,
        weights: vec![],
        means: vec![],
        stds: vec![],
        weak: vec![],
        drift: None,
        percentiles: q,
    };
    // A share `s` of the training scores lies at or below `s`: its
    // percentile is ⌊100 s⌋ (within the rank rounding).
    for (p, expect) in [
        (0.0, 0),
        (0.0095, 0),
        (0.5, 50),
        (0.905, 90),
        (0.999, 99),
        (1.0, 99),
    ] {
        assert_eq!(model.percentile(p), Some(expect), "p = {p}");
    }
    assert_eq!(score_percentiles(&[]), Vec::<f64>::new());
    assert_eq!(score_percentiles(&[0.3]), vec![0.3; SCORE_PERCENTILES]);
}
