//! The numbers behind the report's charts that `metrics` does not already give: score
//! histograms by class, cumulative gains and lift by decile, expected calibration error and
//! the miscalibration check that decides whether the report shows a warning.
//!
//! These are summaries, not raw scores, so an [`OutcomeEvaluation`](crate::OutcomeEvaluation)
//! stays small (a few dozen numbers per outcome) however many events were evaluated.

use serde::Serialize;

use crate::metrics::{CalibrationBin, EvaluationReport};

/// Bins of the score histogram ([`score_histogram`]).
pub const SCORE_HISTOGRAM_BINS: usize = 20;

/// A calibration bin is flagged only with at least this many rows: a bin of a handful of rows
/// is far off the diagonal by chance alone.
pub const MIN_ROWS_FOR_CHECK: usize = 30;
/// ... and only when observed and predicted differ by more than this (absolute) ...
pub const MIN_ABSOLUTE_GAP: f64 = 0.05;
/// ... and by more than this many binomial standard errors of the bin's mean prediction.
/// Rows of one session are correlated, so the real standard error is larger than the binomial
/// one; 3 keeps the check from firing on noise.
pub const STANDARD_ERRORS: f64 = 3.0;
/// Expected calibration error above which the report warns even without a flagged bin.
pub const ECE_WARNING: f64 = 0.03;

/// How many rows of each class fell into each of `bins` equal-width score bins over `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScoreHistogram {
    /// Rows whose outcome happened, per bin.
    pub positives: Vec<usize>,
    /// Rows whose outcome did not happen, per bin.
    pub negatives: Vec<usize>,
}

impl ScoreHistogram {
    /// Number of bins.
    pub fn bins(&self) -> usize {
        self.positives.len()
    }
}

/// Histogram of `probs` by label ([`SCORE_HISTOGRAM_BINS`]-style equal-width bins; a score of
/// exactly 1.0 goes into the last bin, scores outside `[0, 1]` are clamped, NaN is skipped).
pub fn score_histogram(probs: &[f64], labels: &[bool], bins: usize) -> ScoreHistogram {
    let mut h = ScoreHistogram {
        positives: vec![0; bins],
        negatives: vec![0; bins],
    };
    if bins == 0 {
        return h;
    }
    for (&p, &y) in probs.iter().zip(labels) {
        if p.is_nan() {
            continue;
        }
        let i = ((p.clamp(0.0, 1.0) * bins as f64) as usize).min(bins - 1);
        if y {
            h.positives[i] += 1;
        } else {
            h.negatives[i] += 1;
        }
    }
    h
}

/// One decile of rows ranked by score, highest first.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GainsRow {
    /// 1 = the tenth of rows with the highest scores.
    pub decile: usize,
    /// Rows in this decile.
    pub rows: usize,
    /// Rows in this decile whose outcome happened.
    pub positives: usize,
    /// Share of all positives found in deciles 1..=this one (cumulative gains).
    pub cumulative_gain: f64,
    /// This decile's positive rate divided by the overall rate (1 = no better than random).
    pub lift: f64,
}

/// Cumulative gains and lift by decile: rows sorted by score (highest first, ties in input
/// order so the result is deterministic), cut into ten near-equal parts. Empty when there are
/// no rows or no positives (gains and lift would divide by zero).
pub fn gains_by_decile(probs: &[f64], labels: &[bool]) -> Vec<GainsRow> {
    let n = probs.len().min(labels.len());
    let total_pos = labels[..n].iter().filter(|&&y| y).count();
    if n == 0 || total_pos == 0 {
        return Vec::new();
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]));
    let base_rate = total_pos as f64 / n as f64;
    let mut out = Vec::with_capacity(10);
    let mut cum = 0usize;
    for d in 0..10 {
        let (lo, hi) = (d * n / 10, (d + 1) * n / 10);
        let rows = hi - lo;
        let positives = order[lo..hi].iter().filter(|&&i| labels[i]).count();
        cum += positives;
        let lift = if rows == 0 {
            0.0
        } else {
            positives as f64 / rows as f64 / base_rate
        };
        out.push(GainsRow {
            decile: d + 1,
            rows,
            positives,
            cumulative_gain: cum as f64 / total_pos as f64,
            lift,
        });
    }
    out
}

/// Expected calibration error: the row-weighted mean of `|observed − predicted|` over the
/// bins. NaN when the bins hold no rows.
pub fn expected_calibration_error(bins: &[CalibrationBin]) -> f64 {
    let n: usize = bins.iter().map(|b| b.count).sum();
    if n == 0 {
        return f64::NAN;
    }
    bins.iter()
        .map(|b| b.count as f64 * (b.observed_rate - b.mean_predicted).abs())
        .sum::<f64>()
        / n as f64
}

/// Whether a bin is far enough off the diagonal, with enough rows, to be called miscalibrated
/// (see [`MIN_ROWS_FOR_CHECK`], [`MIN_ABSOLUTE_GAP`], [`STANDARD_ERRORS`]).
pub fn bin_is_off(b: &CalibrationBin) -> bool {
    if b.count < MIN_ROWS_FOR_CHECK {
        return false;
    }
    let p = b.mean_predicted.clamp(1e-6, 1.0 - 1e-6);
    let se = (p * (1.0 - p) / b.count as f64).sqrt();
    let gap = (b.observed_rate - b.mean_predicted).abs();
    gap > MIN_ABSOLUTE_GAP && gap > STANDARD_ERRORS * se
}

/// The calibration verdict for one report.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationCheck {
    /// Expected calibration error ([`expected_calibration_error`]).
    pub ece: f64,
    /// The bins that [`bin_is_off`].
    pub off_bins: Vec<CalibrationBin>,
}

impl CalibrationCheck {
    /// Checks a report's calibration table.
    pub fn of(report: &EvaluationReport) -> Self {
        Self {
            ece: expected_calibration_error(&report.calibration),
            off_bins: report
                .calibration
                .iter()
                .filter(|b| bin_is_off(b))
                .cloned()
                .collect(),
        }
    }

    /// Whether the report should warn.
    pub fn is_off(&self) -> bool {
        !self.off_bins.is_empty() || self.ece > ECE_WARNING
    }

    /// One sentence for the warning, naming the bins; `None` when calibrated.
    pub fn warning(&self, outcome: &str) -> Option<String> {
        if !self.is_off() {
            return None;
        }
        let mut parts = Vec::new();
        if self.ece > ECE_WARNING {
            parts.push(format!("ECE {:.3} is above {ECE_WARNING}", self.ece));
        }
        if !self.off_bins.is_empty() {
            let bins: Vec<String> = self
                .off_bins
                .iter()
                .map(|b| {
                    format!(
                        "predicted {:.2} but observed {:.2} (n={})",
                        b.mean_predicted, b.observed_rate, b.count
                    )
                })
                .collect();
            let mut part = format!(
                "{} bin(s) off the diagonal by more than {MIN_ABSOLUTE_GAP} and {STANDARD_ERRORS} standard errors: {}",
                bins.len(),
                bins.join(", ")
            );
            if self.ece <= ECE_WARNING {
                // A low ECE next to a warning needs saying why, or readers trust the ECE.
                part.push_str(&format!(
                    " (its ECE of {:.3} is low only because most events score near 0, where it is right)",
                    self.ece
                ));
            }
            parts.push(part);
        }
        Some(format!(
            "{outcome} is miscalibrated: {}. Read its probabilities as a ranking, not as rates, until it is retrained or recalibrated.",
            parts.join("; ")
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bin(count: usize, pred: f64, obs: f64) -> CalibrationBin {
        CalibrationBin {
            lower: 0.0,
            upper: 1.0,
            count,
            mean_predicted: pred,
            observed_rate: obs,
        }
    }

    #[test]
    fn histogram_counts_each_class_and_puts_one_in_the_last_bin() {
        let h = score_histogram(
            &[0.0, 0.04, 0.5, 1.0, f64::NAN],
            &[true, false, false, true, true],
            20,
        );
        assert_eq!(h.positives.iter().sum::<usize>(), 2);
        assert_eq!(h.negatives.iter().sum::<usize>(), 2);
        assert_eq!(h.positives[0], 1);
        assert_eq!(h.positives[19], 1);
        assert_eq!(h.negatives[10], 1);
    }

    #[test]
    fn gains_of_a_perfect_ranking_reach_one_at_the_base_rate() {
        // 100 rows, 10 positives with the top scores: the first decile holds them all.
        let probs: Vec<f64> = (0..100).map(|i| f64::from(i) / 100.0).collect();
        let labels: Vec<bool> = (0..100).map(|i| i >= 90).collect();
        let g = gains_by_decile(&probs, &labels);
        assert_eq!(g.len(), 10);
        assert_eq!(g[0].positives, 10);
        assert!((g[0].cumulative_gain - 1.0).abs() < 1e-12);
        assert!((g[0].lift - 10.0).abs() < 1e-12);
        assert!((g[9].cumulative_gain - 1.0).abs() < 1e-12);
        assert_eq!(g.iter().map(|r| r.rows).sum::<usize>(), 100);
        assert!(gains_by_decile(&probs, &[false; 100]).is_empty());
    }

    #[test]
    fn ece_weights_bins_by_rows() {
        let e = expected_calibration_error(&[bin(90, 0.1, 0.1), bin(10, 0.5, 0.3)]);
        assert!((e - 0.02).abs() < 1e-12);
    }

    #[test]
    fn small_or_close_bins_are_not_flagged() {
        assert!(!bin_is_off(&bin(3, 0.8, 0.0)), "3 rows prove nothing");
        assert!(
            !bin_is_off(&bin(5000, 0.10, 0.13)),
            "within the absolute gap"
        );
        assert!(!bin_is_off(&bin(40, 0.5, 0.58)), "within 3 standard errors");
        assert!(bin_is_off(&bin(586, 0.142, 0.208)));
        assert!(bin_is_off(&bin(114, 0.547, 0.377)));
    }

    #[test]
    fn warning_only_when_off() {
        let calibrated = CalibrationCheck {
            ece: 0.01,
            off_bins: vec![],
        };
        assert!(calibrated.warning("x").is_none());
        let off = CalibrationCheck {
            ece: 0.01,
            off_bins: vec![bin(500, 0.7, 0.45)],
        };
        let w = off.warning("webinar_signup").unwrap();
        assert!(
            w.contains("webinar_signup") && w.contains("predicted 0.70 but observed 0.45"),
            "{w}"
        );
        assert!(CalibrationCheck {
            ece: 0.05,
            off_bins: vec![]
        }
        .is_off());
    }
}
