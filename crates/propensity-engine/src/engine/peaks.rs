//! Peaks: what a `falls_to` offer ("slipping away") is explained against.
//! For each outcome that has a `falls_to` action map, the engine keeps, per
//! session, the highest score of the session's current run above the
//! outcome's lowest `falls_to` threshold (its *floor*), with that score's
//! event time and the non-zero entries of the feature vector it saw. The
//! offer made when the score falls to a threshold names what fell since
//! that peak ([`OutcomeModel::explain_fall`](crate::model::OutcomeModel::explain_fall)):
//! a session that drifts down through several scores above the threshold
//! is explained by everything it lost since its best moment, not only by
//! the last step.
//!
//! Invariants kept here:
//! - A peak exists for (visitor, outcome) only while the session's latest
//!   score of the outcome is above the floor: the first score above it
//!   sets the peak, a higher one replaces it (an equal one keeps the
//!   earlier), and a score at or below the floor drops it — after the maps
//!   have looked at it, so the offer of the fall still sees it. An outcome
//!   achieved (no longer scored) drops its peak at the session's next
//!   event.
//! - Peaks belong to one session: they carry its serial and are never read
//!   for another; they are forgotten when the session ends (a new session,
//!   idle expiry, revocation, erasure) or a restore replaces the visitor.
//! - They are in the visitor's changelog snapshot (by outcome name), so a
//!   restarted engine explains a fall exactly as the uninterrupted run
//!   would; a snapshot without them (written before peaks existed, or
//!   under a configuration without `falls_to` maps) leaves the offer
//!   explained by its score's own largest contributions.
//! - Only sessions above a floor pay: with no `falls_to` map nothing is
//!   tracked, and an event whose scores were and are at or below every
//!   floor costs no lookup here.

use ahash::AHashMap;
use compact_str::CompactString;

use crate::config::{EngineConfig, Outcome, Trigger};
use crate::features::FeatureScratch;
use crate::visitor::PeakSnapshot;

/// The highest score of a session's run above an outcome's floor.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Peak {
    outcome: u32,
    probability: f64,
    event_ms: i64,
    /// The non-zero entries of the vector the score saw, by feature index
    /// (most of a vector is zero: a few hundred bytes instead of the whole).
    features: Vec<(u32, f32)>,
}

impl Peak {
    /// The event time of the peak score.
    pub(super) fn event_ms(&self) -> i64 {
        self.event_ms
    }

    /// The vector of the peak score, `len` features long.
    pub(super) fn vector(&self, len: usize) -> Vec<f32> {
        let mut v = vec![0.0; len];
        for &(i, x) in self.features.iter() {
            if let Some(slot) = v.get_mut(i as usize) {
                *slot = x;
            }
        }
        v
    }
}

/// The peaks of one visitor's current session.
#[derive(Debug)]
struct SessionPeaks {
    serial: u64,
    peaks: Vec<Peak>,
}

/// The peaks of every visitor whose session is above a floor.
#[derive(Debug, Default)]
pub(super) struct PeakBook {
    /// Per outcome: the lowest threshold of its `falls_to` maps, `None`
    /// when it has none (nothing is tracked for it).
    floors: Vec<Option<f64>>,
    by_visitor: AHashMap<CompactString, SessionPeaks>,
}

impl PeakBook {
    /// An empty book for `config`'s `falls_to` maps.
    pub(super) fn new(config: &EngineConfig) -> Self {
        let mut floors: Vec<Option<f64>> = vec![None; config.outcomes.len()];
        for map in &config.action_maps {
            if let (Trigger::FallsTo { threshold }, Some(floor)) =
                (map.trigger, floors.get_mut(map.outcome))
            {
                *floor = Some(floor.map_or(threshold, |f| f.min(threshold)));
            }
        }
        Self {
            floors,
            by_visitor: AHashMap::new(),
        }
    }

    /// After the maps have decided on an event of the session `serial`:
    /// moves its peaks by the event's scores (`probabilities`, `None` where
    /// not scored), `previous` being the session's latest scores before
    /// them (NaN where none), `features` the vector the scores saw.
    pub(super) fn observe(
        &mut self,
        visitor: &str,
        serial: u64,
        previous: &[f32],
        probabilities: &[Option<f64>],
        event_ms: i64,
        features: &FeatureScratch,
    ) {
        for (outcome, floor) in self.floors.iter().enumerate() {
            let Some(floor) = *floor else {
                continue;
            };
            let above = probabilities
                .get(outcome)
                .copied()
                .flatten()
                .filter(|p| *p > floor);
            let was_above = previous.get(outcome).is_some_and(|p| f64::from(*p) > floor);
            match above {
                Some(p) => {
                    let record = self
                        .by_visitor
                        .entry(CompactString::new(visitor))
                        .or_insert_with(|| SessionPeaks {
                            serial,
                            peaks: Vec::new(),
                        });
                    if record.serial != serial {
                        record.serial = serial;
                        record.peaks.clear();
                    }
                    let at = match record
                        .peaks
                        .iter()
                        .position(|k| k.outcome as usize == outcome)
                    {
                        Some(i) if record.peaks[i].probability >= p => continue,
                        Some(i) => i,
                        None => {
                            record.peaks.push(Peak {
                                outcome: outcome as u32,
                                probability: p,
                                event_ms,
                                features: Vec::new(),
                            });
                            record.peaks.len() - 1
                        }
                    };
                    // A rising session replaces its peak on every event that raises it:
                    // the entries' block is reused.
                    let peak = &mut record.peaks[at];
                    peak.probability = p;
                    peak.event_ms = event_ms;
                    peak.features.clear();
                    peak.features.extend(features.nonzero_entries());
                }
                None if was_above && !self.by_visitor.is_empty() => {
                    if let Some(record) = self.by_visitor.get_mut(visitor) {
                        record.peaks.retain(|k| k.outcome as usize != outcome);
                        if record.peaks.is_empty() || record.serial != serial {
                            self.by_visitor.remove(visitor);
                        }
                    }
                }
                None => {}
            }
        }
    }

    /// The peak of `outcome` in the session `serial` of `visitor`, if its
    /// score is above the outcome's floor.
    pub(super) fn peak(&self, visitor: &str, serial: u64, outcome: usize) -> Option<&Peak> {
        if self.by_visitor.is_empty() {
            return None;
        }
        let record = self.by_visitor.get(visitor)?;
        if record.serial != serial {
            return None;
        }
        record.peaks.iter().find(|k| k.outcome as usize == outcome)
    }

    /// How many visitors have peaks held.
    pub(super) fn visitors(&self) -> usize {
        self.by_visitor.len()
    }

    /// Forgets the visitor's peaks (its session ended).
    pub(super) fn forget(&mut self, visitor: &str) {
        if !self.by_visitor.is_empty() {
            self.by_visitor.remove(visitor);
        }
    }

    /// The changelog form of the peaks of the visitor's session `serial`.
    pub(super) fn snapshot(
        &self,
        visitor: &str,
        serial: u64,
        outcomes: &[Outcome],
    ) -> Vec<PeakSnapshot> {
        if self.by_visitor.is_empty() {
            return Vec::new();
        }
        let Some(record) = self.by_visitor.get(visitor).filter(|r| r.serial == serial) else {
            return Vec::new();
        };
        record
            .peaks
            .iter()
            .filter_map(|k| {
                Some(PeakSnapshot {
                    outcome: outcomes.get(k.outcome as usize)?.name.clone(),
                    probability: k.probability,
                    event_ms: k.event_ms,
                    features: k.features.clone(),
                })
            })
            .collect()
    }

    /// Replaces the visitor's peaks with a snapshot's, for its restored
    /// session `serial` (`None`: no session, so no peaks). Peaks of
    /// outcomes that are gone or have no `falls_to` map any more, and
    /// feature indices beyond the vector's `dim`, are dropped.
    pub(super) fn restore(
        &mut self,
        visitor: &str,
        serial: Option<u64>,
        snapshot: &[PeakSnapshot],
        outcomes: &[Outcome],
        dim: usize,
    ) {
        self.forget(visitor);
        let Some(serial) = serial else {
            return;
        };
        let peaks: Vec<Peak> = snapshot
            .iter()
            .filter_map(|s| {
                let outcome = outcomes.iter().position(|o| o.name == s.outcome)?;
                self.floors.get(outcome).copied().flatten()?;
                Some(Peak {
                    outcome: u32::try_from(outcome).ok()?,
                    probability: s.probability,
                    event_ms: s.event_ms,
                    features: s
                        .features
                        .iter()
                        .copied()
                        .filter(|&(i, _)| (i as usize) < dim)
                        .collect(),
                })
            })
            .collect();
        if !peaks.is_empty() {
            self.by_visitor
                .insert(visitor.into(), SessionPeaks { serial, peaks });
        }
    }
}
