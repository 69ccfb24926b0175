//! Evaluation metrics over predicted probabilities and observed outcomes: ROC AUC, ROC curve,
//! log loss, Brier score, calibration table, and the [`EvaluationReport`] bundling them.
//!
//! All functions take `probs[i]` = predicted P(outcome) and `labels[i]` = whether the outcome
//! happened, for the same row `i`, and are pure and deterministic. Scores are ordered with
//! `f64::total_cmp`, so even NaN scores have a fixed (if meaningless) position.
//!
//! # Panics
//! Every function panics if `probs.len() != labels.len()`: that is a programming error in the
//! caller (the two slices come from the same rows), not a data condition.

use serde::{Deserialize, Serialize};

/// Probabilities are clipped to `[LOG_LOSS_EPSILON, 1 - LOG_LOSS_EPSILON]` in [`log_loss`] so a
/// single confident mistake costs about 34.5 nats instead of infinity.
pub const LOG_LOSS_EPSILON: f64 = 1e-15;

/// One bin of a reliability (calibration) diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the bin's predicted-probability range (inclusive).
    pub lower: f64,
    /// Upper edge (exclusive, except 1.0 for the last bin, which is inclusive).
    pub upper: f64,
    /// Rows whose prediction fell in the bin (always > 0: empty bins are omitted).
    pub count: usize,
    /// Mean predicted probability of those rows.
    pub mean_predicted: f64,
    /// Fraction of those rows where the outcome happened.
    pub observed_rate: f64,
}

/// Summary of one outcome model's quality on a labelled set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvaluationReport {
    /// ROC AUC; `None` when only one class is present (serialized as `null`).
    pub auc: Option<f64>,
    /// Mean log loss in nats ([`log_loss`]); NaN (serialized as `null`) when `count == 0`.
    pub log_loss: f64,
    /// Brier score ([`brier_score`]); NaN (serialized as `null`) when `count == 0`.
    pub brier: f64,
    /// Fraction of rows where the outcome happened; 0 when `count == 0`.
    pub base_rate: f64,
    /// Number of rows evaluated.
    pub count: usize,
    /// Non-empty calibration bins ([`calibration_table`]).
    pub calibration: Vec<CalibrationBin>,
}

fn check_lengths(probs: &[f64], labels: &[bool]) {
    assert_eq!(
        probs.len(),
        labels.len(),
        "probabilities and labels must describe the same rows"
    );
}

/// Area under the ROC curve, via the Mann–Whitney rank-sum statistic with average ranks for
/// ties (so a tie between a positive and a negative counts one half).
///
/// Returns `None` when there are no positives or no negatives (AUC is undefined).
pub fn roc_auc(probs: &[f64], labels: &[bool]) -> Option<f64> {
    check_lengths(probs, labels);
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return None;
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[a].total_cmp(&probs[b]));

    // Sum of the (1-based, tie-averaged) ranks of the positives.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let score = probs[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| probs[i].total_cmp(&score).is_eq())
                .count();
        // Ranks start+1 ..= end share their average.
        let average_rank = (start + 1 + end) as f64 / 2.0;
        let group_positives = order[start..end].iter().filter(|&&i| labels[i]).count();
        positive_rank_sum += average_rank * group_positives as f64;
        start = end;
    }
    let (p, n) = (positives as f64, negatives as f64);
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * n))
}

/// ROC curve as `(false positive rate, true positive rate)` points, from `(0, 0)` to `(1, 1)`,
/// one point per distinct score (thresholds from high to low; tied scores move diagonally).
///
/// Its trapezoidal area equals [`roc_auc`]. Returns an empty vector when either class is
/// absent (one of the rates would divide by zero).
pub fn roc_curve(probs: &[f64], labels: &[bool]) -> Vec<(f64, f64)> {
    check_lengths(probs, labels);
    let positives = labels.iter().filter(|&&l| l).count();
    let negatives = labels.len() - positives;
    if positives == 0 || negatives == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..probs.len()).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));

    let mut curve = vec![(0.0, 0.0)];
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut start = 0;
    while start < order.len() {
        let score = probs[order[start]];
        let end = start
            + order[start..]
                .iter()
                .take_while(|&&i| probs[i].total_cmp(&score).is_eq())
                .count();
        for &i in &order[start..end] {
            if labels[i] {
                tp += 1;
            } else {
                fp += 1;
            }
        }
        curve.push((fp as f64 / negatives as f64, tp as f64 / positives as f64));
        start = end;
    }
    curve
}

/// Mean negative log-likelihood (natural log) of the labels under the predicted
/// probabilities, with probabilities clipped to `[1e-15, 1 - 1e-15]`
/// ([`LOG_LOSS_EPSILON`]). NaN for empty input.
pub fn log_loss(probs: &[f64], labels: &[bool]) -> f64 {
    check_lengths(probs, labels);
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let p = p.clamp(LOG_LOSS_EPSILON, 1.0 - LOG_LOSS_EPSILON);
            if l {
                -p.ln()
            } else {
                -(1.0 - p).ln()
            }
        })
        .sum();
    total / probs.len() as f64
}

/// Brier score: mean squared difference between the predicted probability and the outcome
/// (1 or 0). Lower is better; 0.25 is a constant 0.5 prediction. NaN for empty input.
pub fn brier_score(probs: &[f64], labels: &[bool]) -> f64 {
    check_lengths(probs, labels);
    let total: f64 = probs
        .iter()
        .zip(labels)
        .map(|(&p, &l)| {
            let d = p - if l { 1.0 } else { 0.0 };
            d * d
        })
        .sum();
    total / probs.len() as f64
}

/// Reliability table with `bins` equal-width bins over `[0, 1]`.
///
/// Bin `i` covers `[i/bins, (i+1)/bins)`; the last bin also holds exactly 1.0. Probabilities
/// outside `[0, 1]` are clamped into the end bins for placement (their `mean_predicted`
/// contribution is the raw value); NaN probabilities are skipped. Empty bins are omitted so
/// every returned bin has finite means; `bins == 0` returns an empty table.
pub fn calibration_table(probs: &[f64], labels: &[bool], bins: usize) -> Vec<CalibrationBin> {
    check_lengths(probs, labels);
    if bins == 0 {
        return Vec::new();
    }
    // Per bin: (count, sum of predictions, positives).
    let mut acc = vec![(0usize, 0.0f64, 0usize); bins];
    for (&p, &l) in probs.iter().zip(labels) {
        if p.is_nan() {
            continue;
        }
        let index = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        let slot = &mut acc[index];
        slot.0 += 1;
        slot.1 += p;
        slot.2 += usize::from(l);
    }
    acc.into_iter()
        .enumerate()
        .filter(|(_, (count, _, _))| *count > 0)
        .map(|(i, (count, sum, positives))| CalibrationBin {
            lower: i as f64 / bins as f64,
            upper: (i + 1) as f64 / bins as f64,
            count,
            mean_predicted: sum / count as f64,
            observed_rate: positives as f64 / count as f64,
        })
        .collect()
}

/// All metrics at once, with a `bins`-bin calibration table.
pub fn evaluate(probs: &[f64], labels: &[bool], bins: usize) -> EvaluationReport {
    check_lengths(probs, labels);
    let count = labels.len();
    let positives = labels.iter().filter(|&&l| l).count();
    EvaluationReport {
        auc: roc_auc(probs, labels),
        log_loss: log_loss(probs, labels),
        brier: brier_score(probs, labels),
        base_rate: if count == 0 {
            0.0
        } else {
            positives as f64 / count as f64
        },
        count,
        calibration: calibration_table(probs, labels, bins),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const T: bool = true;
    const F: bool = false;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() < 1e-12
    }

    #[test]
    fn auc_known_values() {
        assert_eq!(roc_auc(&[0.1, 0.2, 0.8, 0.9], &[F, F, T, T]), Some(1.0));
        assert_eq!(roc_auc(&[0.9, 0.8, 0.2, 0.1], &[F, F, T, T]), Some(0.0));
        assert_eq!(roc_auc(&[0.5; 4], &[F, T, F, T]), Some(0.5));
        assert_eq!(roc_auc(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]), Some(0.75));
        // One tied positive/negative pair out of four pairs counts 1/2: (3 + 0.5) / 4.
        assert_eq!(roc_auc(&[0.1, 0.5, 0.5, 0.8], &[F, F, T, T]), Some(0.875));
        assert_eq!(roc_auc(&[0.1, 0.2], &[T, T]), None);
        assert_eq!(roc_auc(&[0.1, 0.2], &[F, F]), None);
        assert_eq!(roc_auc(&[], &[]), None);
    }

    #[test]
    fn roc_curve_known_example() {
        let curve = roc_curve(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T]);
        assert_eq!(
            curve,
            vec![(0.0, 0.0), (0.0, 0.5), (0.5, 0.5), (0.5, 1.0), (1.0, 1.0)]
        );
        // Ties move diagonally in one step.
        assert_eq!(
            roc_curve(&[0.5; 4], &[F, T, F, T]),
            vec![(0.0, 0.0), (1.0, 1.0)]
        );
        assert!(roc_curve(&[0.3], &[T]).is_empty());
    }

    #[test]
    fn log_loss_known_values() {
        let ln2 = std::f64::consts::LN_2;
        assert!(close(log_loss(&[0.5, 0.5], &[T, F]), ln2));
        // -(ln 0.8 + ln 0.9) / 2
        let expected = -(0.8f64.ln() + 0.9f64.ln()) / 2.0;
        assert!(close(log_loss(&[0.8, 0.1], &[T, F]), expected));
        // Certain and wrong is clipped, not infinite: -ln(1e-15) ≈ 34.539.
        let clipped = log_loss(&[0.0], &[T]);
        assert!(close(clipped, -(1e-15f64).ln()), "{clipped}");
        assert!(log_loss(&[1.0], &[T]) < 1e-14);
        assert!(log_loss(&[], &[]).is_nan());
    }

    #[test]
    fn brier_known_values() {
        assert!(close(brier_score(&[1.0, 0.0], &[T, F]), 0.0));
        assert!(close(brier_score(&[0.5, 0.5], &[T, F]), 0.25));
        // ((0.8-1)² + (0.1-0)² + (0.3-1)²) / 3 = (0.04 + 0.01 + 0.49) / 3 = 0.18
        assert!(close(brier_score(&[0.8, 0.1, 0.3], &[T, F, T]), 0.18));
        assert!(brier_score(&[], &[]).is_nan());
    }

    #[test]
    fn calibration_table_bins() {
        let probs = [0.05, 0.15, 0.12, 0.95, 1.0, 0.5];
        let labels = [F, T, F, T, T, F];
        let table = calibration_table(&probs, &labels, 10);
        assert_eq!(table.len(), 4, "{table:?}");
        assert_eq!(table[0].count, 1);
        assert!(close(table[0].lower, 0.0) && close(table[0].upper, 0.1));
        assert_eq!(table[1].count, 2);
        assert!(close(table[1].mean_predicted, 0.135));
        assert!(close(table[1].observed_rate, 0.5));
        assert!(close(table[2].lower, 0.5));
        // 0.95 and exactly 1.0 share the last bin.
        assert_eq!(table[3].count, 2);
        assert!(close(table[3].upper, 1.0));
        assert!(close(table[3].observed_rate, 1.0));
        assert!(calibration_table(&probs, &labels, 0).is_empty());
        assert_eq!(calibration_table(&[f64::NAN], &[T], 5), vec![]);
    }

    #[test]
    fn evaluate_bundles_and_serializes() {
        let report = evaluate(&[0.1, 0.4, 0.35, 0.8], &[F, F, T, T], 2);
        assert_eq!(report.auc, Some(0.75));
        assert_eq!(report.count, 4);
        assert!(close(report.base_rate, 0.5));
        assert_eq!(report.calibration.len(), 2);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["auc"], 0.75);
        assert_eq!(json["calibration"][1]["count"], 1);

        let empty = evaluate(&[], &[], 10);
        assert_eq!(empty.auc, None);
        assert_eq!(empty.count, 0);
        let json = serde_json::to_string(&empty).unwrap();
        assert!(json.contains("\"log_loss\":null"), "{json}");
    }

    #[test]
    #[should_panic(expected = "same rows")]
    fn length_mismatch_panics() {
        let _ = log_loss(&[0.5], &[T, F]);
    }

    /// Brute-force AUC over all positive/negative pairs (ties count 1/2).
    fn pairwise_auc(probs: &[f64], labels: &[bool]) -> Option<f64> {
        let (mut wins, mut pairs) = (0.0, 0.0);
        for (i, &pi) in probs.iter().enumerate() {
            for (j, &pj) in probs.iter().enumerate() {
                if labels[i] && !labels[j] {
                    pairs += 1.0;
                    if pi > pj {
                        wins += 1.0;
                    } else if pi == pj {
                        wins += 0.5;
                    }
                }
            }
        }
        (pairs > 0.0).then(|| wins / pairs)
    }

    fn trapezoid(curve: &[(f64, f64)]) -> f64 {
        curve
            .windows(2)
            .map(|w| (w[1].0 - w[0].0) * (w[1].1 + w[0].1) / 2.0)
            .sum()
    }

    proptest! {
        #[test]
        fn auc_matches_pairs_and_curve_area(
            rows in prop::collection::vec((0u8..20, any::<bool>()), 0..60)
        ) {
            // Coarse scores so ties are common.
            let probs: Vec<f64> = rows.iter().map(|(s, _)| f64::from(*s) / 20.0).collect();
            let labels: Vec<bool> = rows.iter().map(|(_, l)| *l).collect();
            let auc = roc_auc(&probs, &labels);
            let brute = pairwise_auc(&probs, &labels);
            prop_assert_eq!(auc.is_some(), brute.is_some());
            if let (Some(a), Some(b)) = (auc, brute) {
                prop_assert!((a - b).abs() < 1e-9);
                prop_assert!((0.0..=1.0).contains(&a));
                prop_assert!((trapezoid(&roc_curve(&probs, &labels)) - a).abs() < 1e-9);
                let flipped: Vec<f64> = probs.iter().map(|p| 1.0 - p).collect();
                let af = roc_auc(&flipped, &labels).unwrap();
                prop_assert!((a + af - 1.0).abs() < 1e-9);
            }
            let table = calibration_table(&probs, &labels, 7);
            prop_assert_eq!(table.iter().map(|b| b.count).sum::<usize>(), probs.len());
        }
    }
}
