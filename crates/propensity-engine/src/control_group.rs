//! Control groups: which arm of an action map a visitor is in.
//!
//! Invariants kept here:
//! - Assignment is a pure function of the visitor id, the map's name and
//!   the period of the event's time (UTC), so a visitor stays in one arm
//!   for the whole period, across restarts, instances and `replay`, and
//!   needs no state.
//! - The share of visitors in the control arm is the map's
//!   `holdout_fraction`: the assignment hash is finalized (mixed) so that
//!   its high bits are uniform, and compared with the fraction scaled to
//!   the full 64-bit range.
//! - Different maps and different periods draw independently (the map name
//!   and the period are hashed with the visitor).
//!
//! It also owns the arithmetic of reading a control group ([`uplift`]):
//! the difference of conversion rates between the sessions that got a
//! map's offer and those held out, with Newcombe's hybrid score interval.

use serde::{Deserialize, Serialize};

use crate::stable_hash::stable_hash_parts;
use crate::timestamp::utc_month_index;

/// How long a visitor stays in one arm (`[offers] holdout_period`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldoutPeriod {
    /// A UTC calendar day.
    Day,
    /// A week, Monday to Sunday (UTC).
    Week,
    /// A UTC calendar month (the default).
    #[default]
    Month,
    /// For good: the arm never changes.
    Never,
}

impl HoldoutPeriod {
    /// The period `epoch_ms` falls in, as a number (days, weeks or months
    /// since 1970; 0 for [`HoldoutPeriod::Never`]).
    pub fn index(self, epoch_ms: i64) -> i64 {
        let days = epoch_ms.div_euclid(86_400_000);
        match self {
            HoldoutPeriod::Day => days,
            // 1970-01-01 was a Thursday: shifting by 3 days puts week
            // boundaries on Mondays.
            HoldoutPeriod::Week => (days + 3).div_euclid(7),
            HoldoutPeriod::Month => utc_month_index(epoch_ms),
            HoldoutPeriod::Never => 0,
        }
    }
}

/// A map's holdout fraction as a threshold on the 64-bit assignment hash:
/// `fraction × 2⁶⁴`, saturating (a fraction must be below 1).
pub fn holdout_threshold(fraction: f64) -> u64 {
    if fraction <= 0.0 {
        0
    } else {
        // 2^64 as f64 is exact; the cast saturates at u64::MAX.
        (fraction * 18_446_744_073_709_551_616.0) as u64
    }
}

/// Whether `visitor` is in the control arm of the map called `map` in the
/// period of `epoch_ms`. Always false for a threshold of 0.
pub fn in_control_arm(
    visitor: &str,
    map: &str,
    period: HoldoutPeriod,
    threshold: u64,
    epoch_ms: i64,
) -> bool {
    if threshold == 0 {
        return false;
    }
    let index = period.index(epoch_ms).to_le_bytes();
    let h = stable_hash_parts(
        0x686f_6c64, // "hold"
        &[visitor.as_bytes(), map.as_bytes(), &index],
    );
    finalize(h) < threshold
}

/// The effect of an action map's offers, measured against its control
/// group: conversion of sessions with an `offered` decision minus
/// conversion of sessions with a `held_out` one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Uplift {
    /// Conversion rate difference (treatment − control).
    pub difference: f64,
    /// 95 % interval of the difference: Newcombe's hybrid score interval
    /// (his method 10, from two Wilson intervals), which keeps its coverage
    /// for small counts and rates near 0 or 1, where the Wald interval
    /// does not.
    pub ci_low: f64,
    /// Upper end of that interval.
    pub ci_high: f64,
    /// Outcomes the offers caused: `difference × offered sessions`.
    pub incremental_outcomes: f64,
}

/// z for a two-sided 95 % interval.
const Z_95: f64 = 1.959_963_984_540_054;

/// The Wilson score interval of `x` successes in `n` trials (n > 0).
fn wilson(x: u64, n: u64) -> (f64, f64) {
    let (x, n) = (x as f64, n as f64);
    let p = x / n;
    let z2 = Z_95 * Z_95;
    let centre = (p + z2 / (2.0 * n)) / (1.0 + z2 / n);
    let half = Z_95 / (1.0 + z2 / n) * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    ((centre - half).max(0.0), (centre + half).min(1.0))
}

/// The uplift of `treated_converted` of `treated` sessions against
/// `control_converted` of `control`; `None` while either arm has no session.
pub fn uplift(
    treated: u64,
    treated_converted: u64,
    control: u64,
    control_converted: u64,
) -> Option<Uplift> {
    if treated == 0 || control == 0 {
        return None;
    }
    let p1 = treated_converted as f64 / treated as f64;
    let p2 = control_converted as f64 / control as f64;
    let (l1, u1) = wilson(treated_converted, treated);
    let (l2, u2) = wilson(control_converted, control);
    let difference = p1 - p2;
    Some(Uplift {
        difference,
        ci_low: difference - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt(),
        ci_high: difference + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt(),
        incremental_outcomes: difference * treated as f64,
    })
}

/// The SplitMix64 finalizer (Steele, Lea and Flood): every output bit
/// depends on every input bit, so comparing the whole value with a
/// threshold draws a uniform fraction.
fn finalize(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000;
    /// 2026-11-30T12:00:00Z, a Monday.
    const MONDAY_NOON: i64 = 1_796_040_000_000;

    #[test]
    fn the_control_share_matches_the_fraction() {
        for fraction in [0.02, 0.1, 0.5] {
            let threshold = holdout_threshold(fraction);
            let n = 40_000;
            let control = (0..n)
                .filter(|i| {
                    in_control_arm(
                        &format!("visitor-{i}"),
                        "chat",
                        HoldoutPeriod::Month,
                        threshold,
                        MONDAY_NOON,
                    )
                })
                .count();
            let share = control as f64 / n as f64;
            // Binomial standard deviation at n = 40,000 is at most 0.0025.
            assert!(
                (share - fraction).abs() < 0.01,
                "fraction {fraction}: control share {share}"
            );
        }
        assert!(!in_control_arm(
            "v",
            "chat",
            HoldoutPeriod::Month,
            0,
            MONDAY_NOON
        ));
    }

    /// Reference values from statsmodels 0.14's
    /// `confint_proportions_2indep(x1, n1, x2, n2, method="newcomb")`, an
    /// independent implementation.
    #[test]
    fn the_uplift_interval_is_newcombes() {
        for ((x1, n1, x2, n2), (low, high)) in [
            (
                (56, 70, 48, 80),
                (0.052_431_472_402_364_98, 0.333_872_654_036_906_14),
            ),
            (
                (9, 10, 3, 10),
                (0.170_522_723_934_502_9, 0.809_017_973_535_488),
            ),
            (
                (120, 1000, 100, 1000),
                (-0.007_492_167_515_211_062, 0.047_550_667_456_339_055),
            ),
            (
                (0, 50, 0, 40),
                (-0.087_621_601_197_286_68, 0.071_347_599_133_358_74),
            ),
        ] {
            let u = uplift(n1, x1, n2, x2).expect("both arms");
            assert!(
                (u.ci_low - low).abs() < 1e-9,
                "{x1}/{n1} vs {x2}/{n2}: low {}",
                u.ci_low
            );
            assert!(
                (u.ci_high - high).abs() < 1e-9,
                "{x1}/{n1} vs {x2}/{n2}: high {}",
                u.ci_high
            );
            let d = x1 as f64 / n1 as f64 - x2 as f64 / n2 as f64;
            assert!((u.difference - d).abs() < 1e-12);
            assert!((u.incremental_outcomes - d * n1 as f64).abs() < 1e-9);
        }
        assert_eq!(uplift(0, 0, 10, 1), None);
        assert_eq!(uplift(10, 1, 0, 0), None);
    }

    #[test]
    fn a_visitor_keeps_its_arm_within_a_period_and_redraws_after() {
        let threshold = holdout_threshold(0.5);
        let arm = |v: &str, map: &str, period, t| in_control_arm(v, map, period, threshold, t);
        let visitors: Vec<String> = (0..400).map(|i| format!("v{i}")).collect();
        // Within the week (Monday noon to Sunday 23:59): the same arm.
        for v in &visitors {
            let first = arm(v, "chat", HoldoutPeriod::Week, MONDAY_NOON);
            for t in [
                MONDAY_NOON - 12 * 3_600_000,
                MONDAY_NOON + 6 * DAY + 11 * 3_600_000,
            ] {
                assert_eq!(arm(v, "chat", HoldoutPeriod::Week, t), first, "{v} at {t}");
            }
        }
        // Next week, another map, or another month: independent draws, so
        // about half the visitors change arm.
        let changed = |other: &dyn Fn(&str) -> bool| {
            visitors
                .iter()
                .filter(|v| other(v) != arm(v, "chat", HoldoutPeriod::Week, MONDAY_NOON))
                .count()
        };
        for (what, n) in [
            (
                "next week",
                changed(&|v| arm(v, "chat", HoldoutPeriod::Week, MONDAY_NOON + 7 * DAY)),
            ),
            (
                "another map",
                changed(&|v| arm(v, "callback", HoldoutPeriod::Week, MONDAY_NOON)),
            ),
        ] {
            assert!((140..=260).contains(&n), "{what}: {n} of 400 changed arm");
        }
        assert_eq!(
            HoldoutPeriod::Never.index(MONDAY_NOON),
            HoldoutPeriod::Never.index(0)
        );
        assert_eq!(
            HoldoutPeriod::Month.index(MONDAY_NOON),
            HoldoutPeriod::Month.index(MONDAY_NOON - 29 * DAY)
        );
        assert_ne!(
            HoldoutPeriod::Month.index(MONDAY_NOON),
            HoldoutPeriod::Month.index(MONDAY_NOON + DAY)
        );
    }
}
