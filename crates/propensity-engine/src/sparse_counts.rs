//! Histogram counts in their stored form: only the non-zero bins, as
//! (bin, count) pairs. The monitoring windows' changelog records hold
//! score and feature histograms of up to a thousand bins of which a few
//! are non-zero, so a record is a few kilobytes instead of tens.

use serde::{Deserialize, Serialize};

/// The non-zero bins of a histogram, in bin order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct SparseCounts(Vec<(u32, u64)>);

impl SparseCounts {
    /// The non-zero bins of `dense`.
    pub fn from_dense(dense: &[u64]) -> Self {
        Self(
            dense
                .iter()
                .enumerate()
                .filter(|(_, c)| **c != 0)
                .filter_map(|(k, c)| Some((u32::try_from(k).ok()?, *c)))
                .collect(),
        )
    }

    /// The histogram of `bins` bins these came from; an error names a bin
    /// outside it (counts of a differently shaped histogram).
    pub fn to_dense(&self, bins: usize) -> Result<Vec<u64>, String> {
        let mut dense = vec![0; bins];
        for (k, c) in &self.0 {
            let slot = dense
                .get_mut(*k as usize)
                .ok_or_else(|| format!("bin {k} of a histogram of {bins} bins"))?;
            *slot = *c;
        }
        Ok(dense)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_non_zero_bins_are_kept_and_they_come_back_in_place() {
        let dense = [0, 3, 0, 0, 7, 0];
        let sparse = SparseCounts::from_dense(&dense);
        assert_eq!(
            serde_json::to_string(&sparse).expect("json"),
            "[[1,3],[4,7]]"
        );
        assert_eq!(sparse.to_dense(6).expect("fits"), dense.to_vec());
        assert!(sparse.to_dense(4).is_err(), "bin 4 of 4 bins");
    }
}
