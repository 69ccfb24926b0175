//! Reading the decision and conversion records back into each action map's
//! control-group table: what `propensity report` prints from files or
//! topics, and what must equal the engine's own counters (the Prometheus
//! `propensity_decisions_total` and `propensity_control_group_*` series).
//!
//! Invariants kept here:
//! - A session counts once per map and arm: in treatment when it has at
//!   least one `offered` decision of the map, in control when it has a
//!   `held_out` one (sessions are told apart by visitor and session id).
//! - A conversion counts only for a session counted in that map and arm,
//!   so converted ≤ sessions. A conversion whose decision is not in the
//!   input (a topic whose older records retention removed, or files cut
//!   differently) is counted apart as unmatched, never in a rate.
//! - Reading the same record twice changes nothing (sets, not counts, of
//!   sessions): a reader that sees a record twice reports the same table.
//!   Decisions by kind are counted by id for the same reason, and offer
//!   feedback by (offer, status).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::engine::ControlGroupResult;
use crate::wire::{decode_feedback, Arm, DecisionKind, FeedbackStatus};

/// The fields of a decision record the table needs.
#[derive(Debug, Deserialize)]
struct DecisionFields {
    decision_id: String,
    visitor_id: String,
    session_id: String,
    action_map: String,
    decision: DecisionKind,
}

/// The fields of a conversion record the table needs.
#[derive(Debug, Deserialize)]
struct ConversionFields {
    visitor_id: String,
    session_id: String,
    action_map: String,
    arm: Arm,
}

/// One map's records so far.
#[derive(Debug, Default)]
struct MapRecords {
    decisions: BTreeMap<String, DecisionKind>,
    /// (visitor, session) with an offered (0) or held-out (1) decision.
    sessions: [BTreeSet<(String, String)>; 2],
    /// (visitor, session) with a conversion in treatment (0) or control (1).
    converted: [BTreeSet<(String, String)>; 2],
    /// (offer, status) of the feedback on the map's offers.
    feedback: BTreeSet<(String, FeedbackStatus)>,
}

fn arm_index(arm: Arm) -> usize {
    match arm {
        Arm::Treatment => 0,
        Arm::Control => 1,
    }
}

/// One action map's row of the table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MapReport {
    /// Decisions by kind (`offered`, `held_out`, …), each id once.
    pub decisions: BTreeMap<&'static str, u64>,
    /// Sessions and conversions per arm, and the uplift.
    pub control_group: ControlGroupResult,
    /// Conversions whose session has no decision of that arm in the input.
    pub unmatched_conversions: u64,
    /// Offers with feedback of each status (`shown`, `accepted`, …).
    pub feedback: BTreeMap<&'static str, u64>,
}

/// Decision and conversion records, tallied per action map.
#[derive(Debug, Default)]
pub struct DecisionLog {
    maps: BTreeMap<String, MapRecords>,
    /// Records that did not parse as their kind.
    pub unreadable: u64,
}

impl DecisionLog {
    /// Adds one decision record (its JSON); a record that does not parse
    /// is counted in [`DecisionLog::unreadable`].
    pub fn add_decision(&mut self, json: &[u8]) {
        let Ok(d) = serde_json::from_slice::<DecisionFields>(json) else {
            self.unreadable += 1;
            return;
        };
        let map = self.maps.entry(d.action_map).or_default();
        map.decisions.insert(d.decision_id, d.decision);
        let arm = match d.decision {
            DecisionKind::Offered => Arm::Treatment,
            DecisionKind::HeldOut => Arm::Control,
            _ => return,
        };
        map.sessions[arm_index(arm)].insert((d.visitor_id, d.session_id));
    }

    /// Adds one conversion record (its JSON).
    pub fn add_conversion(&mut self, json: &[u8]) {
        let Ok(c) = serde_json::from_slice::<ConversionFields>(json) else {
            self.unreadable += 1;
            return;
        };
        self.maps.entry(c.action_map).or_default().converted[arm_index(c.arm)]
            .insert((c.visitor_id, c.session_id));
    }

    /// Adds one offer-feedback record (its JSON); a record the engine
    /// would dead-letter is counted in [`DecisionLog::unreadable`].
    pub fn add_feedback(&mut self, json: &[u8]) {
        let Ok(f) = decode_feedback(None, json, usize::MAX) else {
            self.unreadable += 1;
            return;
        };
        self.maps
            .entry(f.action_map.into_owned())
            .or_default()
            .feedback
            .insert((f.offer_id.into_owned(), f.status));
    }

    /// The table, by action map name.
    pub fn report(&self) -> BTreeMap<String, MapReport> {
        self.maps
            .iter()
            .map(|(name, m)| {
                let mut decisions: BTreeMap<&'static str, u64> =
                    DecisionKind::ALL.iter().map(|k| (k.as_str(), 0)).collect();
                for kind in m.decisions.values() {
                    *decisions.entry(kind.as_str()).or_default() += 1;
                }
                let matched = |arm: usize| {
                    m.converted[arm]
                        .iter()
                        .filter(|s| m.sessions[arm].contains(*s))
                        .count() as u64
                };
                let (treated, control) = (matched(0), matched(1));
                let unmatched =
                    (m.converted[0].len() + m.converted[1].len()) as u64 - treated - control;
                let row = MapReport {
                    decisions,
                    control_group: ControlGroupResult::new(
                        m.sessions[0].len() as u64,
                        treated,
                        m.sessions[1].len() as u64,
                        control,
                    ),
                    unmatched_conversions: unmatched,
                    feedback: FeedbackStatus::ALL
                        .iter()
                        .map(|s| {
                            let n = m.feedback.iter().filter(|(_, x)| x == s).count();
                            (s.as_str(), n as u64)
                        })
                        .collect(),
                };
                (name.clone(), row)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decision(id: &str, session: &str, kind: &str, arm: &str) -> Vec<u8> {
        format!(
            r#"{{"decision_id":"{id}","visitor_id":"v-{session}","session_id":"{session}","action_map":"chat","outcome":"purchase","decision":"{kind}","arm":"{arm}","probability":0.5,"model_version":"m","trigger_event_id":"e","event_time":"2026-11-30T00:00:00.000Z"}}"#
        )
        .into_bytes()
    }

    fn conversion(session: &str, arm: &str) -> Vec<u8> {
        format!(
            r#"{{"conversion_id":"c","visitor_id":"v-{session}","session_id":"{session}","action_map":"chat","outcome":"purchase","arm":"{arm}","event_id":"e","event_time":"2026-11-30T00:00:00.000Z"}}"#
        )
        .into_bytes()
    }

    #[test]
    fn sessions_count_once_per_arm_and_conversions_only_for_them() {
        let mut log = DecisionLog::default();
        for (id, s, kind, arm) in [
            ("1", "a", "offered", "treatment"),
            ("2", "a", "offered", "treatment"),
            ("3", "b", "held_out", "control"),
            ("4", "c", "capped", "treatment"),
            ("5", "d", "offered", "treatment"),
        ] {
            log.add_decision(&decision(id, s, kind, arm));
        }
        // Read twice: nothing changes.
        log.add_decision(&decision("1", "a", "offered", "treatment"));
        log.add_conversion(&conversion("a", "treatment"));
        log.add_conversion(&conversion("a", "treatment"));
        log.add_conversion(&conversion("b", "control"));
        // Session c was only capped: its conversion has no decided arm.
        log.add_conversion(&conversion("c", "treatment"));
        log.add_conversion(b"not json");
        let fb = |offer: &str, status: &str| {
            format!(
                r#"{{"offer_id":"{offer}","visitor_id":"v-a","action_map":"chat","status":"{status}","timestamp":"2026-11-30T00:00:00Z"}}"#
            )
            .into_bytes()
        };
        for (offer, status) in [
            ("1", "shown"),
            ("1", "declined"),
            ("1", "declined"),
            ("5", "shown"),
        ] {
            log.add_feedback(&fb(offer, status));
        }
        let row = &log.report()["chat"];
        assert_eq!(row.decisions["offered"], 3);
        assert_eq!(row.decisions["held_out"], 1);
        assert_eq!(row.decisions["capped"], 1);
        assert_eq!(row.decisions["lower_priority"], 0);
        let g = &row.control_group;
        assert_eq!((g.offered_sessions, g.offered_converted), (2, 1));
        assert_eq!((g.held_out_sessions, g.held_out_converted), (1, 1));
        assert_eq!(row.unmatched_conversions, 1);
        assert_eq!(log.unreadable, 1);
        assert_eq!(
            (
                row.feedback["shown"],
                row.feedback["declined"],
                row.feedback["accepted"]
            ),
            (2, 1, 0)
        );
        let u = g.uplift.expect("both arms");
        assert!((u.difference - (0.5 - 1.0)).abs() < 1e-12);
    }
}
