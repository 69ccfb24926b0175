//! The design matrices handed to linfa-logistic: standardization statistics, the choice of
//! rows (negative undersampling) and the standardized copies of those rows, in the layout and
//! precision the fitter reads fastest.
//!
//! ## Why these copies, column-major
//! The examples arrive as `f32` rows (the engine's feature vectors, see
//! [`ExampleCollector`](crate::ExampleCollector)). Everything before the fit reads them in
//! place through [`RowSource`]: statistics, the sample, validation and holdout predictions.
//! The copies are the standardized matrices of the rows the optimizer sees, written once,
//! already in their final order and layout:
//! * **column-major** (Fortran order): linfa-logistic's gradient is `xᵀ·r`, which ndarray
//!   (without BLAS) computes as one dot product per row of `xᵀ`, i.e. per column of `x`.
//!   Column-major makes each of those a contiguous, unrolled dot; row-major makes each a
//!   strided walk over the whole matrix (measured on the 170,780 × 107 bench matrix: 23 ms
//!   column-major against 110 ms row-major). `x·w` goes to matrixmultiply, which packs
//!   either layout (45 ms against 30 ms): column-major wins the sum.
//! * **`f32` for the search, `f64` for the polish**: every L-BFGS pass is bound by reading
//!   the matrix, so the `f32` copy (half the bytes) makes each pass about twice as fast
//!   (`x·w` 20 ms, `xᵀ·r` 15 ms on the same matrix). Every fit descends on it first; the
//!   stopping rule is then checked, and the fit finished, on an `f64` copy of the same rows
//!   (see `fit::fit_and_polish`). That copy is built once per outcome when its fits start
//!   and dropped when they end: 12 bytes per value for one outcome per running fit.
//! * **grid rows first, validation rows last**: the regularization grid fits on the leading
//!   rows (a slice view, no copy) and the final fit on all of them.

use ndarray::{Array1, Array2, ArrayView2, ShapeBuilder};

use crate::error::TrainingError;
use crate::fit::Element;
use crate::rng::SplitMix64;

/// Read access to raw feature rows, wherever they live.
pub(crate) trait RowSource: Sync {
    /// Number of rows.
    fn rows(&self) -> usize;
    /// Number of features per row.
    fn cols(&self) -> usize;
    /// Calls `f(column, value)` for every value of `row`, in column order.
    fn for_each_in_row(&self, row: usize, f: impl FnMut(usize, f64));
}

/// An `f64` matrix (any strides): the public [`fit_outcome_model`](crate::fit_outcome_model)
/// path and the tests.
impl RowSource for ArrayView2<'_, f64> {
    fn rows(&self) -> usize {
        self.nrows()
    }
    fn cols(&self) -> usize {
        self.ncols()
    }
    fn for_each_in_row(&self, row: usize, mut f: impl FnMut(usize, f64)) {
        for (j, v) in self.row(row).iter().enumerate() {
            f(j, *v);
        }
    }
}

/// A subset of the collector's flat row-major `f32` rows, picked by index, without copying.
pub(crate) struct PickedRows<'a> {
    /// Row-major values, `dim` per row.
    pub(crate) values: &'a [f32],
    /// Features per row.
    pub(crate) dim: usize,
    /// Which rows of `values`, in order.
    pub(crate) pick: &'a [usize],
}

impl PickedRows<'_> {
    /// Row `i` of the subset.
    pub(crate) fn row(&self, i: usize) -> &[f32] {
        let r = self.pick[i];
        &self.values[r * self.dim..(r + 1) * self.dim]
    }
}

impl RowSource for PickedRows<'_> {
    fn rows(&self) -> usize {
        self.pick.len()
    }
    fn cols(&self) -> usize {
        self.dim
    }
    fn for_each_in_row(&self, row: usize, mut f: impl FnMut(usize, f64)) {
        for (j, v) in self.row(row).iter().enumerate() {
            f(j, f64::from(*v));
        }
    }
}

/// Fails on the first NaN/inf, reporting the lowest such column and its first row.
pub(crate) fn check_finite(x: &impl RowSource) -> Result<(), TrainingError> {
    // First bad row per column; a row-order scan must still report the lowest column.
    let mut first: Option<(usize, usize, f64)> = None;
    for row in 0..x.rows() {
        x.for_each_in_row(row, |column, value| {
            if !value.is_finite() && first.is_none_or(|(c, _, _)| column < c) {
                first = Some((column, row, value));
            }
        });
    }
    match first {
        Some((column, row, value)) => Err(TrainingError::NonFiniteFeature { column, row, value }),
        None => Ok(()),
    }
}

/// Per-column means and population standard deviations (two passes for accuracy).
///
/// Each column is summed in row order, exactly as a column-by-column pass would, so the
/// statistics do not depend on where the rows live. A column whose values are all identical
/// gets mean = that value exactly and std = 1.0: a computed mean of identical values can
/// differ from them by rounding, which would turn a constant column into ±tiny/tiny = ±1
/// noise. Exact equality is the test, so a column that varies at all keeps its real (possibly
/// small) spread.
pub(crate) fn standardization(x: &impl RowSource) -> Result<(Vec<f64>, Vec<f64>), TrainingError> {
    let (rows, cols) = (x.rows(), x.cols());
    let mut first = vec![0.0; cols];
    let mut constant = vec![true; cols];
    let mut sums = vec![0.0; cols];
    if rows > 0 {
        x.for_each_in_row(0, |j, v| first[j] = v);
    }
    for row in 0..rows {
        x.for_each_in_row(row, |j, v| {
            sums[j] += v;
            constant[j] &= v == first[j];
        });
    }
    let n = rows as f64;
    let means: Vec<f64> = (0..cols)
        .map(|j| if constant[j] { first[j] } else { sums[j] / n })
        .collect();
    let mut squares = vec![0.0; cols];
    for row in 0..rows {
        x.for_each_in_row(row, |j, v| {
            let d = v - means[j];
            squares[j] += d * d;
        });
    }
    let mut stds = Vec::with_capacity(cols);
    for j in 0..cols {
        if constant[j] {
            stds.push(1.0);
            continue;
        }
        let std = (squares[j] / n).sqrt();
        if !means[j].is_finite() || !std.is_finite() {
            return Err(TrainingError::FeatureOverflow { column: j });
        }
        // Not reachable for a non-constant column in exact arithmetic; guards underflow.
        stds.push(if std > 0.0 { std } else { 1.0 });
    }
    Ok((means, stds))
}

/// Positions (ascending) of the rows handed to the optimizer: all positives plus a
/// deterministic uniform sample of negatives of size
/// `min(negatives, max(1, floor(ratio × positives)))`.
///
/// Uses selection sampling (Knuth, TAOCP vol. 2, Algorithm S): each negative is kept with
/// probability (still needed)/(still available), which yields exactly the target count,
/// every subset equally likely, in one ordered pass.
pub(crate) fn sample_rows(
    y: &[bool],
    positives: usize,
    negatives: usize,
    ratio: f64,
    seed: u64,
) -> Vec<usize> {
    let cap = ratio * positives as f64;
    // `cap` may be +inf or exceed usize; compare in f64 before converting.
    let target = if cap >= negatives as f64 {
        negatives
    } else {
        (cap.floor() as usize).clamp(1, negatives)
    };
    if target == negatives {
        return (0..y.len()).collect();
    }
    let mut rng = SplitMix64::new(seed);
    let mut needed = target;
    let mut available = negatives;
    let mut keep = Vec::with_capacity(positives + target);
    for (row, &label) in y.iter().enumerate() {
        if label {
            keep.push(row);
            continue;
        }
        if needed > 0 && rng.next_f64() * (available as f64) < needed as f64 {
            keep.push(row);
            needed -= 1;
        }
        available -= 1;
    }
    keep
}

/// The standardized, column-major matrix of `order`'s rows of `x` and their labels, in
/// precision `E`. Values are standardized in `f64` and rounded once, so the `f32` matrix is
/// the `f64` one rounded to nearest.
pub(crate) fn standardized_matrix<E: Element>(
    x: &impl RowSource,
    y: &[bool],
    order: &[usize],
    means: &[f64],
    stds: &[f64],
) -> (Array2<E>, Array1<bool>) {
    let n = order.len();
    // `.f()`: Fortran (column-major) order, see the module docs.
    let mut m = Array2::from_elem((n, x.cols()).f(), E::from_f64(0.0));
    for (r, &row) in order.iter().enumerate() {
        x.for_each_in_row(row, |j, v| {
            m[[r, j]] = E::from_f64((v - means[j]) / stds[j]);
        });
    }
    let labels = order.iter().map(|&row| y[row]).collect();
    (m, labels)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn picked_rows_read_the_collector_layout() {
        let values: Vec<f32> = (0..12).map(|v| v as f32).collect();
        let rows = PickedRows {
            values: &values,
            dim: 3,
            pick: &[3, 1],
        };
        assert_eq!(rows.row(0), &[9.0, 10.0, 11.0]);
        let mut seen = Vec::new();
        rows.for_each_in_row(1, |j, v| seen.push((j, v)));
        assert_eq!(seen, vec![(0, 3.0), (1, 4.0), (2, 5.0)]);
    }

    #[test]
    fn matrix_is_column_major_standardized_and_in_the_given_order() {
        let x = ndarray::array![[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]];
        let (means, stds) = standardization(&x.view()).unwrap();
        assert_eq!(means, vec![3.0, 10.0]);
        assert_eq!(stds[1], 1.0);
        let (m, y) =
            standardized_matrix::<f64>(&x.view(), &[true, false, true], &[2, 0], &means, &stds);
        assert!(m.t().is_standard_layout(), "column-major expected");
        let s = (8.0f64 / 3.0).sqrt();
        assert_eq!(m.column(0).to_vec(), vec![2.0 / s, -2.0 / s]);
        assert_eq!(m.column(1).to_vec(), vec![0.0, 0.0]);
        assert_eq!(y.to_vec(), vec![true, true]);
    }
}
