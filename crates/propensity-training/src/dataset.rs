//! Training data from the engine itself: an [`EngineSink`] that records,
//! for every processed event, the feature vector of each outcome not yet
//! achieved in the session, and which sessions achieved which outcome.
//! Because the examples come out of the same `Engine` (consent gate,
//! sessions, `FeatureSpec::compute_into`) that scores in production, training
//! only ever sees consented events and exactly the production features.
//!
//! Labels: an example is positive when its session later achieves the
//! outcome. The engine stops emitting examples for an outcome once it is
//! achieved, so "later" is the same as "at all" here.

use std::collections::{HashMap, HashSet};

use propensity_engine::stable_hash::stable_hash_seeded;
use propensity_engine::{DeadLetter, EngineSink, Offer};

/// Examples of one outcome.
#[derive(Debug, Default, Clone)]
pub struct OutcomeExamples {
    /// Row-major feature matrix (`rows × dim`).
    pub rows: Vec<f32>,
    /// Session serial of each row.
    pub sessions: Vec<u64>,
    /// Index of the last row of each session (session-level evaluation:
    /// the last score before the outcome or the session end).
    pub last_row_of_session: HashMap<u64, usize>,
}

/// Collects examples from an engine run.
#[derive(Debug, Clone)]
pub struct ExampleCollector {
    dim: usize,
    /// Per outcome, in config order.
    pub outcomes: Vec<OutcomeExamples>,
    /// `(session serial, outcome)` pairs that were achieved.
    pub achieved: HashSet<(u64, usize)>,
    /// Dead letters seen (counted only; training ignores bad records).
    pub dead_letters: u64,
}

impl ExampleCollector {
    /// A collector for `outcomes` outcomes and feature dimension `dim`.
    pub fn new(outcomes: usize, dim: usize) -> Self {
        Self {
            dim,
            outcomes: vec![OutcomeExamples::default(); outcomes],
            achieved: HashSet::new(),
            dead_letters: 0,
        }
    }

    /// Feature dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Label of every row of outcome `o`.
    pub fn labels(&self, o: usize) -> Vec<bool> {
        self.outcomes[o]
            .sessions
            .iter()
            .map(|s| self.achieved.contains(&(*s, o)))
            .collect()
    }

    /// Whether row `i` of outcome `o` is in the holdout: decided per session
    /// (all events of a session on one side), deterministically by seed.
    pub fn in_holdout(&self, o: usize, i: usize, fraction: f64, seed: u64) -> bool {
        let s = self.outcomes[o].sessions[i];
        let h = stable_hash_seeded(seed, &s.to_le_bytes());
        (h as f64 / u64::MAX as f64) < fraction
    }
}

impl EngineSink for ExampleCollector {
    fn offer(&mut self, _offer: Offer) {}

    fn dead_letter(&mut self, _dead_letter: DeadLetter<'_>) {
        self.dead_letters += 1;
    }

    fn wants_examples(&self) -> bool {
        true
    }

    fn example(&mut self, session_serial: u64, outcome: usize, features: &[f32]) {
        let ex = &mut self.outcomes[outcome];
        ex.last_row_of_session
            .insert(session_serial, ex.sessions.len());
        ex.sessions.push(session_serial);
        ex.rows.extend_from_slice(features);
    }

    fn achieved(&mut self, session_serial: u64, outcome: usize) {
        self.achieved.insert((session_serial, outcome));
    }
}
