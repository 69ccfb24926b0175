//! Online evaluation: how good a model is on the traffic it serves, from
//! sessions as they resolve. A session resolves for an outcome when it
//! achieves it (a positive, labelled with its last score before the
//! achieving event) or when it ends without it — a new session of the
//! visitor, or idle expiry (a negative, labelled with its last score).
//! These are the rows of the offline per-session evaluation (`evaluate`'s
//! "session AUC"): the last score before the outcome or the end.
//!
//! Invariants kept here:
//! - Counting is exact and order-free: scores are kept in
//!   [`SCORE_BINS`] equal-width bins (AUC by rank statistics over them,
//!   ties within a bin counting one half), and log loss and Brier score as
//!   exact sums, so counts add across engines and an offline computation
//!   over the same sessions gives the same figures.
//! - A session whose visitor revoked consent or was erased is never
//!   labelled: what it did is no longer processed, for evaluation neither.
//! - The stored form ([`EvalCountsRecord`], the changelog's monitoring
//!   windows) gives back the same counts bit for bit: sums are kept as
//!   their f64 bits, since a decimal round trip may move the last bit.

use serde::{Deserialize, Serialize};

use crate::sparse_counts::SparseCounts;

/// Equal-width score bins of the AUC histogram.
pub const SCORE_BINS: usize = 1000;

/// Probabilities are clamped to `[EPS, 1 − EPS]` in the log loss.
pub const EPS: f64 = 1e-15;

/// Resolved sessions of one outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(into = "EvalCountsRecord", try_from = "EvalCountsRecord")]
pub struct OutcomeEvalCounts {
    /// Per score bin: sessions that achieved the outcome.
    positives: Vec<u64>,
    /// Per score bin: sessions that ended without it.
    negatives: Vec<u64>,
    /// Σ −ln p (positives) or −ln(1 − p) (negatives).
    log_loss_sum: f64,
    /// Σ (p − label)².
    brier_sum: f64,
    /// Per decile of probability: Σ p, sessions, positives.
    decile_p: [f64; 10],
    decile_n: [u64; 10],
    decile_pos: [u64; 10],
}

impl Default for OutcomeEvalCounts {
    fn default() -> Self {
        Self {
            positives: vec![0; SCORE_BINS],
            negatives: vec![0; SCORE_BINS],
            log_loss_sum: 0.0,
            brier_sum: 0.0,
            decile_p: [0.0; 10],
            decile_n: [0; 10],
            decile_pos: [0; 10],
        }
    }
}

/// The stored form of [`OutcomeEvalCounts`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalCountsRecord {
    positives: SparseCounts,
    negatives: SparseCounts,
    log_loss_bits: u64,
    brier_bits: u64,
    decile_p_bits: [u64; 10],
    decile_n: [u64; 10],
    decile_pos: [u64; 10],
}

impl From<OutcomeEvalCounts> for EvalCountsRecord {
    fn from(c: OutcomeEvalCounts) -> Self {
        Self {
            positives: SparseCounts::from_dense(&c.positives),
            negatives: SparseCounts::from_dense(&c.negatives),
            log_loss_bits: c.log_loss_sum.to_bits(),
            brier_bits: c.brier_sum.to_bits(),
            decile_p_bits: c.decile_p.map(f64::to_bits),
            decile_n: c.decile_n,
            decile_pos: c.decile_pos,
        }
    }
}

impl TryFrom<EvalCountsRecord> for OutcomeEvalCounts {
    type Error = String;

    fn try_from(r: EvalCountsRecord) -> Result<Self, String> {
        Ok(Self {
            positives: r.positives.to_dense(SCORE_BINS)?,
            negatives: r.negatives.to_dense(SCORE_BINS)?,
            log_loss_sum: f64::from_bits(r.log_loss_bits),
            brier_sum: f64::from_bits(r.brier_bits),
            decile_p: r.decile_p_bits.map(f64::from_bits),
            decile_n: r.decile_n,
            decile_pos: r.decile_pos,
        })
    }
}

/// The score bin of `p` (clamped into `[0, 1]`; NaN in bin 0).
pub fn score_bin(p: f64) -> usize {
    ((p.clamp(0.0, 1.0) * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1)
}

impl OutcomeEvalCounts {
    /// Labels one resolved session's last score `p`.
    pub fn observe(&mut self, p: f64, achieved: bool) {
        let bin = score_bin(p);
        let pc = p.clamp(EPS, 1.0 - EPS);
        let y = if achieved { 1.0 } else { 0.0 };
        if achieved {
            self.positives[bin] += 1;
            self.log_loss_sum -= pc.ln();
        } else {
            self.negatives[bin] += 1;
            self.log_loss_sum -= (1.0 - pc).ln();
        }
        self.brier_sum += (p - y) * (p - y);
        let d = ((p.clamp(0.0, 1.0) * 10.0) as usize).min(9);
        self.decile_p[d] += p;
        self.decile_n[d] += 1;
        self.decile_pos[d] += u64::from(achieved);
    }

    /// Adds `other`'s sessions.
    pub fn merge(&mut self, other: &Self) {
        for (a, b) in self.positives.iter_mut().zip(&other.positives) {
            *a += b;
        }
        for (a, b) in self.negatives.iter_mut().zip(&other.negatives) {
            *a += b;
        }
        self.log_loss_sum += other.log_loss_sum;
        self.brier_sum += other.brier_sum;
        for d in 0..10 {
            self.decile_p[d] += other.decile_p[d];
            self.decile_n[d] += other.decile_n[d];
            self.decile_pos[d] += other.decile_pos[d];
        }
    }

    /// Zeroes the counts, keeping their blocks.
    pub fn clear(&mut self) {
        self.positives.fill(0);
        self.negatives.fill(0);
        self.log_loss_sum = 0.0;
        self.brier_sum = 0.0;
        self.decile_p = [0.0; 10];
        self.decile_n = [0; 10];
        self.decile_pos = [0; 10];
    }

    /// Resolved sessions counted.
    pub fn sessions(&self) -> u64 {
        self.decile_n.iter().sum()
    }

    /// The figures of the sessions counted; `None` before any.
    pub fn summary(&self) -> Option<OnlineEvaluation> {
        let n = self.sessions();
        if n == 0 {
            return None;
        }
        let p_total: u64 = self.positives.iter().sum();
        let n_total: u64 = self.negatives.iter().sum();
        // Rank statistic: each positive beats the negatives in lower bins
        // and ties half of those in its own.
        let auc = (p_total > 0 && n_total > 0).then(|| {
            let mut below = 0u64;
            let mut wins = 0.0;
            for (pos, neg) in self.positives.iter().zip(&self.negatives) {
                wins += *pos as f64 * (below as f64 + 0.5 * *neg as f64);
                below += neg;
            }
            wins / (p_total as f64 * n_total as f64)
        });
        Some(OnlineEvaluation {
            sessions: n,
            positives: p_total,
            auc,
            log_loss: self.log_loss_sum / n as f64,
            brier: self.brier_sum / n as f64,
            calibration: (0..10)
                .filter(|&d| self.decile_n[d] > 0)
                .map(|d| CalibrationDecile {
                    decile: d as u8,
                    sessions: self.decile_n[d],
                    mean_predicted: self.decile_p[d] / self.decile_n[d] as f64,
                    observed_rate: self.decile_pos[d] as f64 / self.decile_n[d] as f64,
                })
                .collect(),
        })
    }
}

/// A model's figures on resolved sessions.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OnlineEvaluation {
    /// Resolved sessions.
    pub sessions: u64,
    /// Of which achieved the outcome.
    pub positives: u64,
    /// Area under the ROC curve (`None` without both classes).
    pub auc: Option<f64>,
    /// Mean log loss.
    pub log_loss: f64,
    /// Mean Brier score.
    pub brier: f64,
    /// Calibration by decile of probability (deciles with sessions only).
    pub calibration: Vec<CalibrationDecile>,
}

/// One decile of probability: what was predicted and what happened.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CalibrationDecile {
    /// 0 for [0, 0.1), …, 9 for [0.9, 1].
    pub decile: u8,
    /// Sessions in it.
    pub sessions: u64,
    /// Their mean probability.
    pub mean_predicted: f64,
    /// The share that achieved the outcome.
    pub observed_rate: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_stored_form_gives_back_the_same_counts_bit_for_bit() {
        let mut c = OutcomeEvalCounts::default();
        for k in 0..500 {
            // Probabilities whose logarithms use every bit of the sums.
            c.observe(f64::from(k) / 499.0 * 0.987 + 0.0061, k % 3 == 0);
        }
        let text = serde_json::to_string(&c).expect("json");
        let back: OutcomeEvalCounts = serde_json::from_str(&text).expect("parses");
        assert_eq!(back, c);
        assert_eq!(back.log_loss_sum.to_bits(), c.log_loss_sum.to_bits());
        // Sparse: 500 sessions in at most 500 of the 2,000 bins.
        assert!(text.len() < 12_000, "{} bytes", text.len());
        let bad = text.replacen("[[", "[[5000,1],[", 1);
        assert!(serde_json::from_str::<OutcomeEvalCounts>(&bad).is_err());
    }

    #[test]
    fn auc_is_the_pairwise_rank_statistic_with_ties_half() {
        let sessions = [
            (0.9, true),
            (0.8, false),
            (0.7, true),
            (0.3, false),
            (0.3, true),
            (0.1, false),
        ];
        let mut c = OutcomeEvalCounts::default();
        for (p, y) in sessions {
            c.observe(p, y);
        }
        // Pairs (positive, negative): 0.9 beats 3; 0.7 beats 2 and loses
        // to 0.8; 0.3 ties 0.3 and beats 0.1: (3 + 2 + 1.5) / 9.
        let s = c.summary().expect("sessions");
        assert_eq!(s.auc, Some(6.5 / 9.0));
        assert_eq!((s.sessions, s.positives), (6, 3));
        let ll: f64 = sessions
            .iter()
            .map(|(p, y)| if *y { -f64::ln(*p) } else { -f64::ln(1.0 - p) })
            .sum::<f64>()
            / 6.0;
        assert!((s.log_loss - ll).abs() < 1e-12);
        let brier: f64 = sessions
            .iter()
            .map(|(p, y)| (p - if *y { 1.0 } else { 0.0 }).powi(2))
            .sum::<f64>()
            / 6.0;
        assert!((s.brier - brier).abs() < 1e-12);
        // Deciles 1, 3, 7, 8, 9: the 0.3 decile holds one of each class.
        let d3 = s
            .calibration
            .iter()
            .find(|d| d.decile == 3)
            .expect("decile 3");
        assert_eq!((d3.sessions, d3.observed_rate), (2, 0.5));
        // Counts add.
        let mut twice = c.clone();
        twice.merge(&c);
        let t = twice.summary().expect("sessions");
        assert_eq!((t.sessions, t.auc), (12, s.auc));
        assert_eq!(OutcomeEvalCounts::default().summary(), None);
        twice.clear();
        assert_eq!(twice, OutcomeEvalCounts::default());
    }
}
