//! Lookup tables for the hot arithmetic of
//! [`FeatureSpec::compute_into`](super::FeatureSpec::compute_into): `ln(1 + n)`
//! for small counters and the time-of-day features of each hour, built once
//! per compiled spec.
//!
//! Invariant kept here: a lookup returns the very bits the call it replaces
//! would return, for every input (inputs the tables do not cover take the
//! call), so features are identical with or without the tables.

/// Counters below this are looked up in [`Tables::ln_1p`].
const LN_1P_TABLE: usize = 256;

/// `ln(1 + n)` for small integers `n` and the time-of-day features for each
/// hour, computed once by the very expressions
/// [`FeatureSpec::compute_into`](super::FeatureSpec::compute_into) would
/// evaluate, so a lookup returns the same bits as the call (features are
/// identical with or without the tables; only libm calls are saved — most
/// counters are small whole numbers).
#[derive(Clone)]
pub(super) struct Tables {
    ln_1p: Box<[f32; LN_1P_TABLE]>,
    hour_sin_cos: [(f32, f32); 24],
    month_sin_cos: [(f32, f32); 12],
}

impl Tables {
    pub(super) fn new() -> Self {
        let mut ln_1p = Box::new([0.0; LN_1P_TABLE]);
        for (n, v) in ln_1p.iter_mut().enumerate() {
            *v = (n as f32).ln_1p();
        }
        let mut hour_sin_cos = [(0.0, 0.0); 24];
        for (hour, v) in hour_sin_cos.iter_mut().enumerate() {
            *v = circle(hour as u32, 24);
        }
        let mut month_sin_cos = [(0.0, 0.0); 12];
        for (month, v) in month_sin_cos.iter_mut().enumerate() {
            *v = circle(month as u32, 12);
        }
        Self {
            ln_1p,
            hour_sin_cos,
            month_sin_cos,
        }
    }

    /// `x.ln_1p()`, from the table when `x` is a small whole number. The
    /// test compares bits, so `-0.0` (whose `ln_1p` is `-0.0`, not the
    /// table's `+0.0`) and NaN take the call.
    #[inline]
    pub(super) fn ln_1p(&self, x: f32) -> f32 {
        let n = x as u32;
        if n < LN_1P_TABLE as u32 && (n as f32).to_bits() == x.to_bits() {
            self.ln_1p[n as usize]
        } else {
            x.ln_1p()
        }
    }

    /// `(sin, cos)` of the hour's angle on the 24-hour circle.
    pub(super) fn hour_sin_cos(&self, hour: u32) -> (f32, f32) {
        match self.hour_sin_cos.get(hour as usize) {
            Some(v) => *v,
            None => circle(hour, 24),
        }
    }

    /// `(sin, cos)` of the month's angle (1 = January) on the year circle.
    pub(super) fn month_sin_cos(&self, month: u32) -> (f32, f32) {
        match month
            .checked_sub(1)
            .and_then(|m| self.month_sin_cos.get(m as usize))
        {
            Some(v) => *v,
            None => circle(month.wrapping_sub(1), 12),
        }
    }
}

/// `(sin, cos)` of step `k` of `n` around the circle: cyclic time enters
/// the vector as a point on the circle, so 23:00 sits next to 00:00 and
/// December next to January.
fn circle(k: u32, n: u32) -> (f32, f32) {
    let angle = k as f32 / n as f32 * std::f32::consts::TAU;
    (angle.sin(), angle.cos())
}

impl std::fmt::Debug for Tables {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tables")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_give_the_bits_of_the_calls() {
        let t = Tables::new();
        for x in [
            0.0f32, 1.0, 2.0, 3.0, 17.0, 255.0, 256.0, 1e6, 0.5, 30.25, -0.0, 1e-30,
        ] {
            assert_eq!(t.ln_1p(x).to_bits(), x.ln_1p().to_bits(), "{x}");
        }
        for n in 0..300u32 {
            let x = n as f32;
            assert_eq!(t.ln_1p(x).to_bits(), x.ln_1p().to_bits(), "{x}");
        }
        for hour in 0..24u32 {
            let angle = hour as f32 / 24.0 * std::f32::consts::TAU;
            let (s, c) = t.hour_sin_cos(hour);
            assert_eq!(
                (s.to_bits(), c.to_bits()),
                (angle.sin().to_bits(), angle.cos().to_bits())
            );
        }
        for month in 1..=12u32 {
            let angle = (month - 1) as f32 / 12.0 * std::f32::consts::TAU;
            let (s, c) = t.month_sin_cos(month);
            assert_eq!(
                (s.to_bits(), c.to_bits()),
                (angle.sin().to_bits(), angle.cos().to_bits())
            );
        }
        assert_eq!(t.month_sin_cos(1), (0.0, 1.0));
    }
}
