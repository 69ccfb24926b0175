//! Small sampling helpers on top of `rand` (weighted choice, normal noise,
//! logistic link) and the per-visitor RNG derivation that keeps output
//! deterministic per seed.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The RNG used everywhere in the crate.
pub(crate) type SimRng = ChaCha8Rng;

/// An independent RNG stream for one purpose of one seed.
///
/// Each visitor gets stream `index + 1` and the malformed-line generator stream
/// 0, so a visitor's traffic depends only on (seed, visitor index, params), not
/// on how many draws other visitors made — adding visitors never perturbs
/// existing ones.
pub(crate) fn stream_rng(seed: u64, stream: u64) -> SimRng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// Index drawn with probability proportional to `weights` (non-negative, at
/// least one positive; otherwise returns the last index).
pub(crate) fn weighted_index(rng: &mut SimRng, weights: &[f64]) -> usize {
    let total: f64 = weights.iter().sum();
    let mut x = rng.random::<f64>() * total;
    for (i, w) in weights.iter().enumerate() {
        if x < *w {
            return i;
        }
        x -= w;
    }
    // Only reachable through float rounding (x ≈ total) or all-zero weights:
    // return the last positive weight's index.
    weights
        .iter()
        .rposition(|w| *w > 0.0)
        .unwrap_or(weights.len().saturating_sub(1))
}

/// Picks one of `items` with the paired weights.
pub(crate) fn pick_weighted<T: Copy>(rng: &mut SimRng, items: &[(T, f64)]) -> T {
    let total: f64 = items.iter().map(|(_, w)| w).sum();
    let mut x = rng.random::<f64>() * total;
    for (item, w) in items {
        if x < *w {
            return *item;
        }
        x -= w;
    }
    // Float rounding only: fall back to the last positively weighted item.
    let last = items
        .iter()
        .rposition(|(_, w)| *w > 0.0)
        .unwrap_or(items.len() - 1);
    items[last].0
}

/// Uniformly chosen element (slice must be non-empty).
pub(crate) fn pick<T: Copy>(rng: &mut SimRng, items: &[T]) -> T {
    items[rng.random_range(0..items.len())]
}

/// Standard normal draw (Box–Muller; `rand` 0.9 has no normal distribution
/// without `rand_distr`).
pub(crate) fn standard_normal(rng: &mut SimRng) -> f64 {
    // 1 - u lies in (0, 1], so the logarithm is finite.
    let u1 = 1.0 - rng.random::<f64>();
    let u2 = rng.random::<f64>();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// Logistic function.
pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// Uniform integer milliseconds in `[lo_secs, hi_secs]` seconds.
pub(crate) fn uniform_ms(rng: &mut SimRng, lo_secs: f64, hi_secs: f64) -> i64 {
    let secs = lo_secs + (hi_secs - lo_secs) * rng.random::<f64>();
    (secs * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_index_respects_zero_weights() {
        let mut rng = stream_rng(1, 0);
        for _ in 0..1000 {
            let i = weighted_index(&mut rng, &[0.0, 1.0, 0.0, 3.0]);
            assert!(i == 1 || i == 3);
        }
    }

    #[test]
    fn normal_is_roughly_standard() {
        let mut rng = stream_rng(7, 0);
        let xs: Vec<f64> = (0..20_000).map(|_| standard_normal(&mut rng)).collect();
        let mean = xs.iter().sum::<f64>() / xs.len() as f64;
        let var = xs.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / xs.len() as f64;
        assert!(
            mean.abs() < 0.03 && (var - 1.0).abs() < 0.05,
            "{mean} {var}"
        );
    }

    #[test]
    fn streams_are_independent() {
        let a: Vec<u64> = (0..4).map(|_| stream_rng(5, 1).random()).collect();
        let b: u64 = stream_rng(5, 2).random();
        assert_eq!(a[0], a[1]);
        assert_ne!(a[0], b);
    }
}
