//! Drift monitoring through the whole engine: models carrying a drift
//! reference binned from one traffic are served another, and the PSI the
//! engine's counts give equals the PSI computed offline, by the textbook
//! formula, from the vectors and scores the same run produced for the
//! events of the drift sample (chosen here from the event ids). Counting
//! is exact: the reference traffic itself has a PSI of 0, and counts split
//! across engines add up to one engine's.

mod common;

use std::sync::Arc;

use common::traffic::{generated_traffic, PINNED_SEED};
use common::{artifact, shipped_config, RecordingSink, TEST_MODELS};
use propensity_engine::drift::{
    sampled, DriftReference, ModelDriftCounts, SAMPLE_EVERY, SHARE_FLOOR,
};
use propensity_engine::wire::{DeadLetter, Event, Offer, Origin};
use propensity_engine::{Engine, EngineConfig, EngineSink, ModelSet};

/// A scored vector and its score.
type ScoredRow = (Vec<f32>, f64);

/// Every scored vector and its score, per outcome, of the events the
/// drift sample takes (by event id, computed here from the ids); and how
/// many were scored in all.
#[derive(Default)]
struct Scored {
    pending: Vec<Option<Vec<f32>>>,
    by_outcome: Vec<Vec<ScoredRow>>,
    in_sample: bool,
    scored: usize,
}

impl EngineSink for Scored {
    fn offer(&mut self, _offer: Offer) {}
    fn dead_letter(&mut self, _dead_letter: DeadLetter<'_>) {}
    fn processed(&mut self, event: &Event<'_>, _path: Option<&str>) {
        self.in_sample = sampled(&event.event_id);
    }
    fn wants_examples(&self) -> bool {
        true
    }
    // The engine reports an outcome's example, then its probability.
    fn example(&mut self, _serial: u64, outcome: usize, features: &[f32]) {
        if self.pending.len() <= outcome {
            self.pending.resize(outcome + 1, None);
        }
        self.pending[outcome] = Some(features.to_vec());
    }
    fn probability(&mut self, outcome: usize, probability: f64) {
        if self.by_outcome.len() <= outcome {
            self.by_outcome.resize(outcome + 1, Vec::new());
        }
        self.scored += 1;
        if let Some(v) = self.pending.get_mut(outcome).and_then(Option::take) {
            if self.in_sample {
                self.by_outcome[outcome].push((v, probability));
            }
        }
    }
}

fn run(engine: &mut Engine, records: &[(bool, Vec<u8>, i64)], sink: &mut impl EngineSink) {
    for (is_consent, bytes, t) in records {
        if *is_consent {
            engine.process_consent(None, Some(bytes), *t, &Origin::Unknown, None, sink);
        } else {
            engine.process_event(None, bytes, &Origin::Unknown, None, sink);
        }
    }
}

/// The test models, each with a drift reference binned from what it
/// scored on the reference traffic's drift sample (so the same traffic
/// counted again has a PSI of exactly 0).
fn models_with_reference(
    config: &Arc<EngineConfig>,
    reference: &[(bool, Vec<u8>, i64)],
) -> Arc<ModelSet> {
    let plain = ModelSet::from_artifacts(
        config,
        TEST_MODELS
            .iter()
            .map(|m| ("<test>".to_owned(), artifact(config, m)))
            .collect(),
    )
    .expect("models");
    let mut engine = Engine::new(config.clone(), plain);
    let mut scored = Scored::default();
    run(&mut engine, reference, &mut scored);
    let dim = config.features.dim();
    let artifacts = TEST_MODELS
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let rows = &scored.by_outcome[i];
            let scores: Vec<f64> = rows.iter().map(|r| r.1).collect();
            let mut a = artifact(config, m);
            a.drift_reference = Some(DriftReference::from_rows(
                rows.len(),
                dim,
                |k| &rows[k].0,
                &scores,
                |_| true,
            ));
            ("<test>".to_owned(), a)
        })
        .collect();
    ModelSet::from_artifacts(config, artifacts).expect("models with drift references")
}

/// PSI by the textbook formula over dense vectors (zeros binned like any
/// value), written apart from the engine's counting.
fn offline_psi(reference: &DriftReference, rows: &[ScoredRow]) -> (f64, Vec<f64>) {
    let psi = |shares: &[f64], bin_of: &dyn Fn(&ScoredRow) -> usize| {
        let mut counts = vec![0.0; shares.len()];
        for r in rows {
            counts[bin_of(r)] += 1.0;
        }
        let n = rows.len() as f64;
        counts
            .iter()
            .zip(shares)
            .map(|(c, e)| {
                let a = (c / n).max(SHARE_FLOOR);
                let e = e.max(SHARE_FLOOR);
                (a - e) * (a / e).ln()
            })
            .sum::<f64>()
    };
    let score = psi(&reference.score.shares, &|r| reference.score.bin(r.1));
    let features = (0..reference.features.len())
        .map(|j| {
            let b = &reference.features[j];
            psi(&b.shares, &|r| b.bin(f64::from(r.0[j])))
        })
        .collect();
    (score, features)
}

#[test]
fn online_psi_equals_the_offline_computation() {
    let config = shipped_config();
    let reference = generated_traffic(150, PINNED_SEED);
    let models = models_with_reference(&config, &reference);
    // Other visitors of the same shape, from another seed.
    let live = generated_traffic(150, 7);
    let mut engine = Engine::new(config.clone(), models.clone());
    let mut scored = Scored::default();
    run(&mut engine, &live, &mut scored);
    // About one event in SAMPLE_EVERY is in the sample.
    let sampled_rows: usize = scored.by_outcome.iter().map(Vec::len).sum();
    let expected = scored.scored as f64 / SAMPLE_EVERY as f64;
    assert!(
        (sampled_rows as f64 - expected).abs() < 0.25 * expected,
        "{sampled_rows} rows sampled of {} scored",
        scored.scored
    );
    let mut compared = 0;
    for (i, counts) in engine.drift_counts().iter().enumerate() {
        let counts = counts.as_ref().expect("every test model has a reference");
        let reference = models
            .get(i)
            .and_then(|m| m.drift_reference())
            .expect("reference");
        let online = counts.psi(reference).expect("scores counted");
        let rows = &scored.by_outcome[i];
        assert_eq!(online.events, rows.len() as u64);
        let (score, features) = offline_psi(reference, rows);
        assert!(
            (online.score - score).abs() < 1e-12,
            "outcome {i}: {} vs {score}",
            online.score
        );
        for (j, (a, b)) in online.features.iter().zip(&features).enumerate() {
            let a = a.expect("every feature monitored");
            assert!((a - b).abs() < 1e-12, "outcome {i} feature {j}: {a} vs {b}");
        }
        // The traffic differs, so something drifted a little.
        assert!(features.iter().any(|p| *p > 0.0), "outcome {i}");
        compared += 1;
    }
    assert_eq!(compared, 3);
}

#[test]
fn the_reference_traffic_has_no_drift_and_counts_add_across_engines() {
    let config = shipped_config();
    let reference = generated_traffic(120, PINNED_SEED);
    let models = models_with_reference(&config, &reference);
    let mut whole = Engine::new(config.clone(), models.clone());
    run(&mut whole, &reference, &mut RecordingSink::default());
    for (i, counts) in whole.drift_counts().iter().enumerate() {
        let counts = counts.as_ref().expect("counted");
        let r = models
            .get(i)
            .and_then(|m| m.drift_reference())
            .expect("reference");
        let psi = counts.psi(r).expect("counted");
        assert_eq!(psi.score, 0.0, "outcome {i}");
        assert!(
            psi.features.iter().all(|p| *p == Some(0.0)),
            "outcome {i}: {psi:?}"
        );
    }
    // Visitors split between two engines (each visitor's records in one):
    // the counts add up to the single engine's.
    let (mut a, mut b) = (
        Engine::new(config.clone(), models.clone()),
        Engine::new(config.clone(), models.clone()),
    );
    for record in &reference {
        let odd = String::from_utf8_lossy(&record.1).contains("visitor-1");
        let engine = if odd { &mut a } else { &mut b };
        run(
            engine,
            std::slice::from_ref(record),
            &mut RecordingSink::default(),
        );
    }
    let taken_a = a.drift_counts().to_vec();
    a.clear_monitoring_counts();
    assert!(a.drift_counts().iter().flatten().all(|c| c.events == 0));
    for (i, (x, y)) in taken_a.iter().zip(b.drift_counts()).enumerate() {
        let mut sum: ModelDriftCounts = x.clone().expect("counted");
        sum.merge(y.as_ref().expect("counted"));
        assert_eq!(Some(&sum), whole.drift_counts()[i].as_ref(), "outcome {i}");
    }
}
