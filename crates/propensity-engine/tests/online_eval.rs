//! Online evaluation through the whole engine: generated traffic is scored,
//! sessions resolve (an outcome achieved, a new session, idle expiry), and
//! the engine's figures equal those computed here, independently, from
//! the scores and outcomes the same run reported: one row per session and
//! outcome, its last score before the outcome or the end.

mod common;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use common::traffic::generated_traffic;
use common::{shipped_config, test_models, test_models_with_challengers};
use propensity_engine::online_eval::OutcomeEvalCounts;
use propensity_engine::online_eval::{score_bin, EPS};
use propensity_engine::wire::{DeadLetter, Event, Offer, Origin, OutcomeScore};
use propensity_engine::{Engine, EngineSink, ModelRole};

/// Per (session serial, outcome): the last score and whether the session
/// achieved the outcome (and so resolved) right after it.
#[derive(Default)]
struct Sessions {
    visitor_of_event: String,
    visitor: HashMap<u64, String>,
    pending: Option<(u64, usize)>,
    /// The session of the event being scored (from its last example).
    scoring: u64,
    last: BTreeMap<(u64, usize), f32>,
    /// The challengers' last scores, like `last`.
    last_challenger: BTreeMap<(u64, usize), f32>,
    achieved: BTreeSet<(u64, usize)>,
}

impl EngineSink for Sessions {
    fn offer(&mut self, _offer: Offer) {}
    fn dead_letter(&mut self, _dead_letter: DeadLetter<'_>) {}
    fn processed(&mut self, event: &Event<'_>, _path: Option<&str>) {
        self.visitor_of_event = event.visitor_id.to_string();
    }
    fn wants_examples(&self) -> bool {
        true
    }
    fn example(&mut self, serial: u64, outcome: usize, _features: &[f32]) {
        self.visitor.insert(serial, self.visitor_of_event.clone());
        self.pending = Some((serial, outcome));
        self.scoring = serial;
    }
    fn wants_scores(&self) -> bool {
        true
    }
    fn score(&mut self, score: &OutcomeScore<'_>) {
        if score.role == ModelRole::Challenger {
            let outcome = OUTCOMES
                .iter()
                .position(|o| *o == score.outcome)
                .expect("a configured outcome");
            self.last_challenger
                .insert((self.scoring, outcome), score.probability as f32);
        }
    }
    fn probability(&mut self, outcome: usize, p: f64) {
        if let Some((serial, o)) = self.pending.take() {
            if o == outcome {
                // The session keeps its scores as f32.
                self.last.insert((serial, o), p as f32);
            }
        }
    }
    fn achieved(&mut self, serial: u64, outcome: usize) {
        if self.last.contains_key(&(serial, outcome)) {
            self.achieved.insert((serial, outcome));
        }
    }
}

/// The shipped config's outcomes, in order.
const OUTCOMES: [&str; 3] = ["purchase", "webinar_signup", "application_complete"];

#[test]
fn online_figures_equal_the_offline_computation_over_the_same_sessions() {
    let config = shipped_config();
    assert_eq!(config.outcomes.len(), OUTCOMES.len());
    // With challengers: both roles are evaluated, each on its own scores.
    let mut engine = Engine::new(config.clone(), test_models_with_challengers(&config));
    let mut sink = Sessions::default();
    // Generated traffic without its revocations (a revoked session is
    // forgotten unlabelled; that rule has a test of its own below).
    let records: Vec<_> = generated_traffic(200, 5)
        .into_iter()
        .filter(|(is_consent, bytes, _)| {
            !*is_consent
                || !String::from_utf8_lossy(bytes).contains(r#""tracking":false"#)
                || String::from_utf8_lossy(bytes).contains(r#""sales":true"#)
        })
        .collect();
    let end = records.iter().map(|r| r.2).max().expect("records");
    for (is_consent, bytes, t) in &records {
        if *is_consent {
            engine.process_consent(None, Some(bytes), *t, &Origin::Unknown, None, &mut sink);
        } else {
            engine.process_event(None, bytes, &Origin::Unknown, None, &mut sink);
        }
    }
    // Three hours later another visitor's event: every session expires.
    let late = common::bytes(&common::consent("zz-late", end + 10_800_000, &["tracking"]));
    engine.process_consent(
        None,
        Some(&late),
        end + 10_800_000,
        &Origin::Unknown,
        None,
        &mut sink,
    );
    let e = common::bytes(&common::page_view(
        "zz-late-1",
        "zz-late",
        end + 10_800_000,
        "https://s/",
    ));
    engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);

    let online = engine.online_eval();
    let n = OUTCOMES.len();
    assert_eq!(online.len(), 2 * n, "champion then challenger slots");
    let (champions, challengers) = online.split_at(n);
    let checked = check_against_offline(champions, &sink.last, &sink);
    assert!(checked >= 1, "no outcome had both classes (champions)");
    let checked = check_against_offline(challengers, &sink.last_challenger, &sink);
    assert!(checked >= 1, "no outcome had both classes (challengers)");
    assert_ne!(
        champions[0].summary().map(|s| s.brier),
        challengers[0].summary().map(|s| s.brier),
        "the roles are evaluated on their own scores"
    );
}

/// Checks each outcome's counts against the figures computed here from
/// `last` (the last score per session and outcome) and the achievements;
/// returns how many outcomes had both classes.
fn check_against_offline(
    online: &[OutcomeEvalCounts],
    last: &BTreeMap<(u64, usize), f32>,
    sink: &Sessions,
) -> usize {
    let mut checked = 0;
    for (i, counts) in online.iter().enumerate() {
        let rows: Vec<(f64, bool)> = last
            .iter()
            .filter(|((serial, o), _)| *o == i && sink.visitor[serial] != "zz-late")
            .map(|(key, p)| (f64::from(*p), sink.achieved.contains(key)))
            .collect();
        let s = counts.summary().expect("sessions resolved");
        assert_eq!(s.sessions, rows.len() as u64, "outcome {i}");
        assert!(s.sessions >= 100, "outcome {i}: {} sessions", s.sessions);
        let positives = rows.iter().filter(|r| r.1).count() as u64;
        assert_eq!(s.positives, positives, "outcome {i}");
        let n = rows.len() as f64;
        let log_loss = rows
            .iter()
            .map(|(p, y)| {
                let p = p.clamp(EPS, 1.0 - EPS);
                if *y {
                    -p.ln()
                } else {
                    -(1.0 - p).ln()
                }
            })
            .sum::<f64>()
            / n;
        assert!(
            (s.log_loss - log_loss).abs() < 1e-9,
            "outcome {i}: {} vs {log_loss}",
            s.log_loss
        );
        let brier = rows
            .iter()
            .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
            .sum::<f64>()
            / n;
        assert!((s.brier - brier).abs() < 1e-9, "outcome {i}");
        // AUC pair by pair, on the histogram's bins (ties one half), and
        // close to the AUC of the exact scores.
        let pos: Vec<&(f64, bool)> = rows.iter().filter(|r| r.1).collect();
        let neg: Vec<&(f64, bool)> = rows.iter().filter(|r| !r.1).collect();
        if pos.is_empty() || neg.is_empty() {
            assert_eq!(s.auc, None);
            continue;
        }
        let pairwise = |key: &dyn Fn(f64) -> f64| {
            let mut wins = 0.0;
            for p in &pos {
                for q in &neg {
                    let (a, b) = (key(p.0), key(q.0));
                    wins += if a > b {
                        1.0
                    } else if a == b {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
            wins / (pos.len() * neg.len()) as f64
        };
        let binned = pairwise(&|p| score_bin(p) as f64);
        let exact = pairwise(&|p| p);
        let auc = s.auc.expect("both classes");
        assert!(
            (auc - binned).abs() < 1e-12,
            "outcome {i}: {auc} vs {binned}"
        );
        assert!(
            (auc - exact).abs() < 0.01,
            "outcome {i}: {auc} vs exact {exact}"
        );
        checked += 1;
    }
    checked
}

#[test]
fn revoked_sessions_are_not_labelled_and_a_model_swap_starts_again() {
    let config = shipped_config();
    let models = test_models(&config);
    let mut engine = Engine::new(config.clone(), Arc::clone(&models));
    let mut sink = Sessions::default();
    let t0 = common::BASE_MS;
    common::grant_all(&mut engine, "v", t0, &mut sink);
    for k in 0..4 {
        let e = common::bytes(&common::page_view(
            &format!("e{k}"),
            "v",
            t0 + k * 10_000,
            "https://s/",
        ));
        engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);
    }
    let revoke = common::bytes(&common::consent("v", t0 + 60_000, &[]));
    engine.process_consent(
        None,
        Some(&revoke),
        t0 + 60_000,
        &Origin::Unknown,
        None,
        &mut sink,
    );
    // Long after: the idle sweep finds nothing to label.
    common::grant_all(&mut engine, "w", t0 + 10_000_000, &mut sink);
    let e = common::bytes(&common::page_view("w0", "w", t0 + 10_000_000, "https://s/"));
    engine.process_event(None, &e, &Origin::Unknown, None, &mut sink);
    assert!(engine.online_eval().iter().all(|c| c.sessions() == 0));

    // w's session ends with a new explicit session; then a model swap
    // empties the counts.
    let mut e2 = common::page_view("w1", "w", t0 + 10_060_000, "https://s/");
    e2["session_id"] = serde_json::json!("second");
    engine.process_event(None, &common::bytes(&e2), &Origin::Unknown, None, &mut sink);
    assert!(engine.online_eval().iter().any(|c| c.sessions() == 1));
    engine.set_models(models);
    assert!(engine.online_eval().iter().all(|c| c.sessions() == 0));
}
