//! Learning: the engine side of the adaptive model ([`crate::adaptive`]).
//! Per partition and learning outcome a [`Learner`], warm-started from the
//! outcome's champion on first use; per session, the vector of its last
//! score ([`VectorBook`]); and the one update per session and outcome when
//! the session resolves, labelled as online evaluation labels it.
//!
//! Invariants kept here:
//! - A session teaches each learning outcome once: achieved (label 1) at
//!   the event that achieves it, with the vector of its last score before
//!   that event; ended without it (label 0) when a new session starts or
//!   it expires idle. A revoked or erased session teaches nothing (its
//!   vector is forgotten with it), like online evaluation.
//! - The vector belongs to one session (its serial) and is part of the
//!   visitor's changelog snapshot, so a restart resolves the session with
//!   the vector the uninterrupted run would have used.
//! - A learner belongs to its partition: the changelog keeps its state per
//!   partition ([`Engine::learner_states`]), and learners of a base model
//!   that was replaced (hot reload) start again from the new one.
//! - Only configurations with `[adaptive]` outcomes pay: without them no
//!   vector is kept and no learner exists.

use ahash::AHashMap;
use compact_str::CompactString;

use crate::adaptive::{Learner, LearnerState};
use crate::config::EngineConfig;
use crate::features::FeatureScratch;
use crate::model::{ModelRole, ModelSet, OutcomeModel};
use crate::visitor::Session;

use super::partition::PartitionState;
use super::Engine;

/// The vector of each open session's last score (non-zero entries), for
/// the visitors of sessions scored under a learning configuration.
#[derive(Debug, Default)]
pub(super) struct VectorBook {
    by_visitor: AHashMap<CompactString, (u64, Vec<(u32, f32)>)>,
}

impl VectorBook {
    /// Keeps the vector just scored for the visitor's session `serial`.
    pub(super) fn observe(&mut self, visitor: &str, serial: u64, features: &FeatureScratch) {
        let record = self
            .by_visitor
            .entry(CompactString::new(visitor))
            .or_insert_with(|| (serial, Vec::new()));
        record.0 = serial;
        record.1.clear();
        record.1.extend(features.nonzero_entries());
    }

    /// The last vector of the visitor's session `serial`.
    pub(super) fn vector(&self, visitor: &str, serial: u64) -> Option<&[(u32, f32)]> {
        if self.by_visitor.is_empty() {
            return None;
        }
        self.by_visitor
            .get(visitor)
            .filter(|r| r.0 == serial)
            .map(|r| r.1.as_slice())
    }

    /// Forgets the visitor's vector (its session ended, was revoked or
    /// erased).
    pub(super) fn forget(&mut self, visitor: &str) {
        if !self.by_visitor.is_empty() {
            self.by_visitor.remove(visitor);
        }
    }

    /// Sets the visitor's vector from a snapshot, for its restored session
    /// `serial` (`None`, or no entries: none). Indices beyond `dim` are
    /// dropped.
    pub(super) fn restore(
        &mut self,
        visitor: &str,
        serial: Option<u64>,
        entries: &[(u32, f32)],
        dim: usize,
    ) {
        self.forget(visitor);
        if let (Some(serial), false) = (serial, entries.is_empty()) {
            let kept = entries
                .iter()
                .copied()
                .filter(|&(i, _)| (i as usize) < dim)
                .collect();
            self.by_visitor.insert(visitor.into(), (serial, kept));
        }
    }

    /// How many sessions have a vector held.
    pub(super) fn len(&self) -> usize {
        self.by_visitor.len()
    }
}

/// The model outcome `i` is scored with in `role`: the partition's learner
/// where the outcome learns in that role, else the loaded model.
pub(super) fn role_model<'m>(
    config: &EngineConfig,
    models: &'m ModelSet,
    part: &'m PartitionState,
    i: usize,
    role: ModelRole,
) -> Option<&'m OutcomeModel> {
    match &config.adaptive {
        Some(a) if a.learns_as(i, role) => part
            .learners
            .get(i)
            .and_then(Option::as_ref)
            .map(Learner::model),
        _ => models.in_role(i, role),
    }
}

/// Makes sure the partition has a learner for outcome `i` over the current
/// champion (a new one, warm-started, on first use or when the champion
/// was replaced). `false`: the outcome does not learn or has no champion.
pub(super) fn ensure_learner(
    config: &EngineConfig,
    models: &ModelSet,
    part: &mut PartitionState,
    i: usize,
) -> bool {
    let (Some(adaptive), Some(base)) = (&config.adaptive, models.get(i)) else {
        return false;
    };
    if !adaptive.learns.get(i).copied().unwrap_or(false) {
        return false;
    }
    if part.learners.len() < config.outcomes.len() {
        part.learners.resize_with(config.outcomes.len(), || None);
    }
    let current = part.learners[i]
        .as_ref()
        .is_some_and(|l| l.base_version() == base.version);
    if !current {
        part.learners[i] = Learner::warm_start(base, adaptive).ok();
    }
    part.learners[i].is_some()
}

/// One resolved session teaches outcome `i` (`label`: achieved), with the
/// vector of its last score, if it has one.
pub(super) fn teach(
    config: &EngineConfig,
    models: &ModelSet,
    part: &mut PartitionState,
    vector: Option<&[(u32, f32)]>,
    i: usize,
    label: bool,
) {
    let Some(vector) = vector else {
        return;
    };
    if ensure_learner(config, models, part, i) {
        if let Some(l) = part.learners[i].as_mut() {
            l.learn(vector, label);
            part.learners_changed = true;
        }
    }
}

/// A session ended without achieving them: every learning outcome it was
/// scored for and did not achieve learns a 0 from its last vector.
pub(super) fn teach_ended_session(
    config: &EngineConfig,
    models: &ModelSet,
    part: &mut PartitionState,
    vectors: &VectorBook,
    visitor: &str,
    session: &Session,
) {
    let Some(adaptive) = &config.adaptive else {
        return;
    };
    let vector = vectors.vector(visitor, session.serial);
    for (i, learns) in adaptive.learns.iter().enumerate() {
        let scored = session.last_probability.get(i).is_some_and(|p| !p.is_nan());
        if *learns && scored && session.achieved & (1 << i) == 0 {
            teach(config, models, part, vector, i, false);
        }
    }
}

impl Engine {
    /// The learners' states of a partition, by outcome name (for its
    /// changelog record); empty when nothing learns there.
    pub fn learner_states(&self, partition: u32) -> Vec<(String, LearnerState)> {
        let Some(ps) = self.parts.iter().find(|ps| ps.partition == partition) else {
            return Vec::new();
        };
        ps.learners
            .iter()
            .enumerate()
            .filter_map(|(i, l)| {
                Some((
                    self.config.outcomes.get(i)?.name.clone(),
                    l.as_ref()?.state(),
                ))
            })
            .collect()
    }

    /// Whether a partition's learners changed since the last call (then
    /// their states are due in the changelog).
    pub fn take_learners_changed(&mut self, partition: u32) -> bool {
        self.parts
            .iter_mut()
            .find(|ps| ps.partition == partition)
            .is_some_and(|ps| std::mem::take(&mut ps.learners_changed))
    }

    /// Restores a partition's learners from its changelog record. States
    /// of outcomes that no longer learn, or of a base model that is not
    /// the current champion (replaced since), are dropped: those learners
    /// start again from the current champion.
    pub fn restore_learner_states(
        &mut self,
        partition: u32,
        states: &[(String, LearnerState)],
    ) -> Result<(), crate::EngineError> {
        let slot = self.slot(partition);
        let config = self.config.clone();
        let Some(adaptive) = &config.adaptive else {
            return Ok(());
        };
        let ps = &mut self.parts[slot];
        ps.learners.clear();
        ps.learners.resize_with(config.outcomes.len(), || None);
        for (name, state) in states {
            let Some(i) = config.outcome_index(name) else {
                continue;
            };
            let Some(base) = self.models.get(i) else {
                continue;
            };
            if !adaptive.learns[i] || base.version != state.base_version {
                continue;
            }
            ps.learners[i] = Some(Learner::from_state(base, adaptive, state)?);
        }
        Ok(())
    }

    /// Every partition's learner of outcome `outcome`, in partition order
    /// (to consolidate them into an artifact, see
    /// [`crate::adaptive::consolidate`]: the same order as a snapshot read
    /// from the changelog, so both average to the same bits).
    pub fn learners(&self, outcome: usize) -> Vec<&Learner> {
        let mut found: Vec<(u32, &Learner)> = self
            .parts
            .iter()
            .filter_map(|ps| Some((ps.partition, ps.learners.get(outcome)?.as_ref()?)))
            .collect();
        found.sort_unstable_by_key(|(p, _)| *p);
        found.into_iter().map(|(_, l)| l).collect()
    }

    /// How many open sessions hold a vector for learning (memory
    /// accounting, tests).
    pub fn sessions_with_learning_vectors(&self) -> usize {
        self.vectors.len()
    }
}
