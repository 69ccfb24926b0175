//! Consent scenarios: assigns each visitor one scenario from the
//! [`ConsentMix`] and produces the consent records (complete states, not
//! deltas) and erasure requests that scenario implies, timed relative to the
//! visitor's events.

use rand::Rng;

use crate::behaviour::SimEvent;
use crate::params::{ConsentMix, ConsentScenario};
use crate::sampling::{uniform_ms, weighted_index, SimRng};

/// The four consent purposes of the contract.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Purposes {
    pub tracking: bool,
    pub support: bool,
    pub sales: bool,
    pub marketing: bool,
}

/// A consent-topic record before serialization.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum ConsentRecord {
    /// The visitor's complete consent state as of `time_ms`.
    State {
        time_ms: i64,
        purposes: Purposes,
        source: Option<&'static str>,
        consent_id: Option<String>,
    },
    /// Right-to-erasure request.
    Erase { time_ms: i64 },
}

impl ConsentRecord {
    pub fn time_ms(&self) -> i64 {
        match self {
            Self::State { time_ms, .. } | Self::Erase { time_ms } => *time_ms,
        }
    }
}

/// Draws a scenario with probability proportional to the mix fractions.
pub(crate) fn sample_scenario(rng: &mut SimRng, mix: &ConsentMix) -> ConsentScenario {
    let weights = ConsentScenario::ALL.map(|s| mix.fraction(s));
    ConsentScenario::ALL[weighted_index(rng, &weights)]
}

/// Builds the visitor's consent records for `scenario`, in time order.
///
/// `sessions` must be non-empty and each session must hold at least two
/// events (the simulator guarantees three), so "the middle of the first
/// session" exists.
pub(crate) fn consent_records(
    rng: &mut SimRng,
    scenario: ConsentScenario,
    visitor_number: usize,
    sessions: &[Vec<SimEvent>],
) -> Vec<ConsentRecord> {
    let first_session = sessions.first().map(Vec::as_slice).unwrap_or_default();
    let Some(first_ms) = first_session.first().map(|e| e.time_ms) else {
        return Vec::new();
    };
    let last_ms = sessions
        .iter()
        .flatten()
        .map(|e| e.time_ms)
        .max()
        .unwrap_or(first_ms);
    let mut ids = 0;
    let mut next_id = |rng: &mut SimRng| {
        ids += 1;
        // Most CMPs report a consent id; some integrations drop it.
        rng.random_bool(0.8)
            .then(|| format!("c-{visitor_number:06}-{ids}"))
    };
    // Banner decisions happen shortly before the first tracked event.
    let before_first = |rng: &mut SimRng| first_ms - uniform_ms(rng, 0.2, 20.0);
    let mut grant = |rng: &mut SimRng, time_ms: i64, source| ConsentRecord::State {
        time_ms,
        purposes: granted_purposes(rng),
        source,
        consent_id: next_id(rng),
    };
    match scenario {
        ConsentScenario::None => Vec::new(),
        ConsentScenario::GrantBefore => {
            let t = before_first(rng);
            vec![grant(rng, t, Some("cmp-banner"))]
        }
        ConsentScenario::GrantLateWithinTtl => {
            let t = first_ms + uniform_ms(rng, 1.0, 8.0);
            vec![grant(rng, t, Some("cmp-banner"))]
        }
        ConsentScenario::GrantLateAfterTtl => {
            let t = first_ms + uniform_ms(rng, 15.0, 60.0);
            vec![grant(rng, t, Some("cmp-banner"))]
        }
        ConsentScenario::Deny => {
            let t = before_first(rng);
            let purposes = Purposes {
                tracking: false,
                // Some visitors still allow support cookies (chat widget).
                support: rng.random_bool(0.3),
                sales: false,
                marketing: false,
            };
            vec![ConsentRecord::State {
                time_ms: t,
                purposes,
                source: Some("cmp-banner"),
                consent_id: next_id(rng),
            }]
        }
        ConsentScenario::RevokeMidSession => {
            let t = before_first(rng);
            let granted = grant(rng, t, Some("cmp-banner"));
            // Halfway between two consecutive events of the first session, so
            // the revocation strictly separates earlier and later events.
            let k = first_session.len() / 2;
            let (a, b) = match (
                k.checked_sub(1).and_then(|i| first_session.get(i)),
                first_session.get(k),
            ) {
                (Some(a), Some(b)) => (a.time_ms, b.time_ms),
                _ => (first_ms, first_ms + 2),
            };
            let revoked = ConsentRecord::State {
                time_ms: a + (b - a) / 2,
                purposes: Purposes {
                    tracking: false,
                    support: false,
                    sales: false,
                    marketing: false,
                },
                source: Some("preference-center"),
                consent_id: next_id(rng),
            };
            vec![granted, revoked]
        }
        ConsentScenario::EraseAfterSession => {
            let t = before_first(rng);
            let mut records = vec![grant(rng, t, Some("cmp-banner"))];
            let erase_ms = last_ms + uniform_ms(rng, 10.0, 600.0);
            records.push(ConsentRecord::Erase { time_ms: erase_ms });
            // A few come back and consent again later.
            if rng.random_bool(0.2) {
                let t = erase_ms + uniform_ms(rng, 60.0, 3600.0);
                records.push(grant(rng, t, Some("cmp-banner")));
            }
            records
        }
    }
}

/// A grant: tracking always, the other purposes mostly.
fn granted_purposes(rng: &mut SimRng) -> Purposes {
    Purposes {
        tracking: true,
        support: rng.random_bool(0.9),
        sales: rng.random_bool(0.85),
        marketing: rng.random_bool(0.7),
    }
}
