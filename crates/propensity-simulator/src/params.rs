//! Simulation parameters, the consent-scenario mix, and their validation.

use serde::{Deserialize, Serialize};

use crate::error::SimulationError;
use crate::timefmt::{MAX_EPOCH_MS, MS_PER_DAY};

/// 2026-11-02T09:00:00Z, the default start of the arrival window.
pub const DEFAULT_START_TIME_MS: i64 = 1_793_610_000_000;

/// Longest arrival window accepted (one year); keeps all arithmetic far from
/// overflow and all timestamps within four-digit years.
pub const MAX_SPAN_SECS: u64 = 366 * 86_400;

/// Slack after the arrival window that later sessions and consent records may
/// use (returning visitors come back within a week, three sessions at most).
const TAIL_MS: i64 = 30 * MS_PER_DAY;

/// Tolerance for the consent-mix fractions summing to one (allows hand-typed
/// thirds like 0.333).
const MIX_SUM_TOLERANCE: f64 = 1e-3;

/// What to simulate. Every field has a default; see [`SimulationParams::default`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SimulationParams {
    /// Number of distinct visitors (at least 1).
    pub visitors: usize,
    /// Seed of the deterministic generator: same params, same output.
    pub seed: u64,
    /// Start of the arrival window, epoch milliseconds (UTC).
    pub start_time_ms: i64,
    /// First sessions start uniformly within this many seconds after
    /// `start_time_ms`; later sessions of a visitor may fall after the window.
    pub span_secs: u64,
    /// Fraction, in `[0, 1)`, of all event lines that are malformed extras
    /// (added on top of the valid events).
    pub invalid_rate: f64,
    /// How visitors are spread over consent scenarios.
    pub consent_mix: ConsentMix,
    /// A behaviour shift mid-stream (a drift scenario): visitors whose
    /// first session starts after this fraction of the arrival window, in
    /// `[0, 1]`, come from a paid social campaign for a sale instead of the
    /// usual population — mostly buyers, mostly mobile, from Facebook ads — so
    /// a model trained on the usual traffic sees a population it was not
    /// trained on. `None`: no shift.
    pub campaign_after: Option<f64>,
}

impl Default for SimulationParams {
    fn default() -> Self {
        Self {
            visitors: 1000,
            seed: 42,
            start_time_ms: DEFAULT_START_TIME_MS,
            span_secs: 3600,
            invalid_rate: 0.0,
            consent_mix: ConsentMix::default(),
            campaign_after: None,
        }
    }
}

/// Fractions of visitors per consent scenario; they must sum to 1 (±0.001).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConsentMix {
    /// Full grant (tracking true) recorded before the first event.
    pub grant_before: f64,
    /// Grant recorded 1–8 s after the first event (inside a buffering TTL).
    pub grant_late_within_ttl: f64,
    /// Grant recorded 15–60 s after the first event (after the TTL expired).
    pub grant_late_after_ttl: f64,
    /// Denial (tracking false) recorded before the first event.
    pub deny: f64,
    /// No consent record at all.
    pub none: f64,
    /// Grant before the first event, then a tracking-false record in the middle
    /// of the first session.
    pub revoke_mid_session: f64,
    /// Grant before the first event, then an erasure request after the last
    /// event (a few visitors re-grant afterwards).
    pub erase_after_session: f64,
}

impl Default for ConsentMix {
    fn default() -> Self {
        Self {
            grant_before: 0.70,
            grant_late_within_ttl: 0.06,
            grant_late_after_ttl: 0.03,
            deny: 0.08,
            none: 0.04,
            revoke_mid_session: 0.06,
            erase_after_session: 0.03,
        }
    }
}

/// One consent scenario a visitor is assigned to (see [`ConsentMix`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConsentScenario {
    /// See [`ConsentMix::grant_before`].
    GrantBefore,
    /// See [`ConsentMix::grant_late_within_ttl`].
    GrantLateWithinTtl,
    /// See [`ConsentMix::grant_late_after_ttl`].
    GrantLateAfterTtl,
    /// See [`ConsentMix::deny`].
    Deny,
    /// See [`ConsentMix::none`].
    None,
    /// See [`ConsentMix::revoke_mid_session`].
    RevokeMidSession,
    /// See [`ConsentMix::erase_after_session`].
    EraseAfterSession,
}

impl ConsentScenario {
    /// All scenarios, in the order used for sampling and reporting.
    pub const ALL: [ConsentScenario; 7] = [
        Self::GrantBefore,
        Self::GrantLateWithinTtl,
        Self::GrantLateAfterTtl,
        Self::Deny,
        Self::None,
        Self::RevokeMidSession,
        Self::EraseAfterSession,
    ];

    /// The snake_case name, identical to the [`ConsentMix`] field name; used as
    /// the key in [`crate::TrafficSummary::visitors_by_consent_scenario`].
    pub fn name(self) -> &'static str {
        match self {
            Self::GrantBefore => "grant_before",
            Self::GrantLateWithinTtl => "grant_late_within_ttl",
            Self::GrantLateAfterTtl => "grant_late_after_ttl",
            Self::Deny => "deny",
            Self::None => "none",
            Self::RevokeMidSession => "revoke_mid_session",
            Self::EraseAfterSession => "erase_after_session",
        }
    }
}

impl ConsentMix {
    /// The fraction configured for `scenario`.
    pub fn fraction(&self, scenario: ConsentScenario) -> f64 {
        match scenario {
            ConsentScenario::GrantBefore => self.grant_before,
            ConsentScenario::GrantLateWithinTtl => self.grant_late_within_ttl,
            ConsentScenario::GrantLateAfterTtl => self.grant_late_after_ttl,
            ConsentScenario::Deny => self.deny,
            ConsentScenario::None => self.none,
            ConsentScenario::RevokeMidSession => self.revoke_mid_session,
            ConsentScenario::EraseAfterSession => self.erase_after_session,
        }
    }

    /// Checks every fraction is in `[0, 1]` and that they sum to 1 (±0.001).
    pub fn validate(&self) -> Result<(), SimulationError> {
        for scenario in ConsentScenario::ALL {
            let value = self.fraction(scenario);
            // `contains` is false for NaN, so NaN is rejected here too.
            if !(0.0..=1.0).contains(&value) {
                return Err(SimulationError::InvalidParameter {
                    field: mix_field(scenario),
                    reason: format!("must be a fraction in [0, 1], got {value}"),
                });
            }
        }
        let sum: f64 = ConsentScenario::ALL.iter().map(|s| self.fraction(*s)).sum();
        if (sum - 1.0).abs() > MIX_SUM_TOLERANCE {
            return Err(SimulationError::InvalidParameter {
                field: "consent_mix",
                reason: format!("fractions must sum to 1, got {sum}"),
            });
        }
        Ok(())
    }
}

fn mix_field(scenario: ConsentScenario) -> &'static str {
    match scenario {
        ConsentScenario::GrantBefore => "consent_mix.grant_before",
        ConsentScenario::GrantLateWithinTtl => "consent_mix.grant_late_within_ttl",
        ConsentScenario::GrantLateAfterTtl => "consent_mix.grant_late_after_ttl",
        ConsentScenario::Deny => "consent_mix.deny",
        ConsentScenario::None => "consent_mix.none",
        ConsentScenario::RevokeMidSession => "consent_mix.revoke_mid_session",
        ConsentScenario::EraseAfterSession => "consent_mix.erase_after_session",
    }
}

impl SimulationParams {
    /// Checks all fields; the error names the first offending field.
    pub fn validate(&self) -> Result<(), SimulationError> {
        if self.visitors == 0 {
            return Err(SimulationError::InvalidParameter {
                field: "visitors",
                reason: "must be at least 1, got 0".to_owned(),
            });
        }
        if let Some(f) = self.campaign_after {
            if !(0.0..=1.0).contains(&f) {
                return Err(SimulationError::InvalidParameter {
                    field: "campaign_after",
                    reason: format!("must be a fraction in [0, 1], got {f}"),
                });
            }
        }
        if self.span_secs > MAX_SPAN_SECS {
            return Err(SimulationError::InvalidParameter {
                field: "span_secs",
                reason: format!("must be at most {MAX_SPAN_SECS}, got {}", self.span_secs),
            });
        }
        // Every generated instant lies in [start - 1 min, start + span + TAIL]
        // (consent may precede the first event slightly); keep that inside the
        // four-digit-year range that RFC 3339 allows.
        let latest = MAX_EPOCH_MS - TAIL_MS - (MAX_SPAN_SECS as i64) * 1000;
        if !(60_000..=latest).contains(&self.start_time_ms) {
            return Err(SimulationError::InvalidParameter {
                field: "start_time_ms",
                reason: format!(
                    "must be between 60000 and {latest} (epoch ms), got {}",
                    self.start_time_ms
                ),
            });
        }
        if !(0.0..1.0).contains(&self.invalid_rate) {
            return Err(SimulationError::InvalidParameter {
                field: "invalid_rate",
                reason: format!("must be in [0, 1), got {}", self.invalid_rate),
            });
        }
        self.consent_mix.validate()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field_of(params: &SimulationParams) -> Option<&'static str> {
        params.validate().err().and_then(|e| e.field())
    }

    #[test]
    fn defaults_are_valid() {
        assert!(SimulationParams::default().validate().is_ok());
        let sum: f64 = ConsentScenario::ALL
            .iter()
            .map(|s| ConsentMix::default().fraction(*s))
            .sum();
        assert!((sum - 1.0).abs() < 1e-12);
    }

    #[test]
    fn errors_name_the_field() {
        let base = SimulationParams::default();
        let p = SimulationParams {
            visitors: 0,
            ..base.clone()
        };
        assert_eq!(field_of(&p), Some("visitors"));
        for rate in [1.0, -0.1, f64::NAN] {
            let p = SimulationParams {
                invalid_rate: rate,
                ..base.clone()
            };
            assert_eq!(field_of(&p), Some("invalid_rate"), "{rate}");
        }
        let p = SimulationParams {
            start_time_ms: MAX_EPOCH_MS,
            ..base.clone()
        };
        assert_eq!(field_of(&p), Some("start_time_ms"));
        let p = SimulationParams {
            span_secs: u64::MAX,
            ..base.clone()
        };
        assert_eq!(field_of(&p), Some("span_secs"));

        let mut p = base.clone();
        p.consent_mix.deny = 1.5;
        assert_eq!(field_of(&p), Some("consent_mix.deny"));
        let mut p = base.clone();
        p.consent_mix.none = f64::NAN;
        assert_eq!(field_of(&p), Some("consent_mix.none"));
        let mut p = base.clone();
        p.consent_mix.grant_before = 0.5;
        assert_eq!(field_of(&p), Some("consent_mix"));
        let msg = p
            .validate()
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(msg.contains("consent_mix") && msg.contains("sum"), "{msg}");
    }

    #[test]
    fn deserializes_partial_config() {
        let p: SimulationParams =
            serde_json::from_str(r#"{"visitors": 5, "consent_mix": {"deny": 0.08}}"#).unwrap();
        assert_eq!(p.visitors, 5);
        assert_eq!(p.consent_mix, ConsentMix::default());
        assert_eq!(p.start_time_ms, DEFAULT_START_TIME_MS);
    }
}
