//! Rough wall-clock measurement of `fit_outcome_model` on 50,000 rows × 60 features.
//!
//! Run with `cargo run --release -p propensity-training --example fit_timing`. Prints timings
//! and quality figures; asserts nothing about time (machines differ).

use std::time::Instant;

use ndarray::Array2;
use propensity_training::{evaluate, fit_outcome_model, FitParams};

/// SplitMix64, duplicated here because the crate's generator is private.
struct Rng(u64);

impl Rng {
    fn next_f64(&mut self) -> f64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        ((z ^ (z >> 31)) >> 11) as f64 / (1u64 << 53) as f64
    }

    fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.next_f64();
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

fn main() -> Result<(), propensity_training::TrainingError> {
    const ROWS: usize = 50_000;
    const COLS: usize = 60;
    let mut rng = Rng(7);
    let truth: Vec<f64> = (0..COLS)
        .map(|j| {
            if j % 3 == 0 {
                0.8 / (1.0 + j as f64 / 10.0)
            } else {
                0.0
            }
        })
        .collect();
    let mut x = Array2::<f64>::zeros((ROWS, COLS));
    let mut y = Vec::with_capacity(ROWS);
    for mut row in x.rows_mut() {
        let mut z = -3.0;
        for (v, w) in row.iter_mut().zip(&truth) {
            *v = rng.normal() * 2.0 + 1.0;
            z += w * (*v - 1.0) / 2.0;
        }
        y.push(rng.next_f64() < 1.0 / (1.0 + (-z).exp()));
    }

    for (label, params) in [
        ("default (negatives <= 4x positives)", FitParams::default()),
        (
            "no undersampling",
            FitParams {
                negative_to_positive_max: f64::INFINITY,
                ..FitParams::default()
            },
        ),
    ] {
        let start = Instant::now();
        let model = fit_outcome_model(x.view(), &y, &params)?;
        let elapsed = start.elapsed();
        let probs = model.predict_probabilities(x.view())?;
        let report = evaluate(&probs, &y, 10);
        println!(
            "{label}: fit {ROWS}x{COLS} in {:.3}s; positives {}, negatives kept {}/{}, \
             correction {:.3}; AUC {:.4}, log loss {:.4}, mean p {:.4} vs base rate {:.4}",
            elapsed.as_secs_f64(),
            model.positives,
            model.negatives_kept,
            model.negatives,
            model.intercept_correction,
            report.auc.unwrap_or(f64::NAN),
            report.log_loss,
            probs.iter().sum::<f64>() / probs.len() as f64,
            report.base_rate,
        );
    }
    Ok(())
}
