//! Small shared checks and float helpers (crate-private).

use crate::error::{LowbitError, Result};
use ndarray::ArrayView2;

/// Fails on an empty matrix or any NaN / infinity, naming the first offending element.
pub(crate) fn check_matrix(what: &str, w: &ArrayView2<f32>) -> Result<()> {
    let (n, k) = w.dim();
    if n == 0 || k == 0 {
        return Err(LowbitError::Empty { what: what.to_string(), shape: format!("[{n}, {k}]") });
    }
    for ((r, c), &v) in w.indexed_iter() {
        if !v.is_finite() {
            return Err(LowbitError::NonFinite { what: what.to_string(), index: format!("[{r}, {c}]"), value: v });
        }
    }
    Ok(())
}

/// Checks a buffer length, naming the field.
pub(crate) fn check_len(what: &str, len: usize, expected: usize) -> Result<()> {
    if len != expected {
        return Err(LowbitError::shape(what, format!("{expected} elements"), format!("{len} elements")));
    }
    Ok(())
}

/// Checks every value of a float slice is finite (and optionally non-negative).
pub(crate) fn check_finite_slice(what: &str, v: &[f32], nonneg: bool) -> Result<()> {
    for (i, &x) in v.iter().enumerate() {
        if !x.is_finite() || (nonneg && x < 0.0) {
            return Err(LowbitError::invalid(what, format!("element {i} is {x}")));
        }
    }
    Ok(())
}

/// Round half to even, the one rounding mode of every lowbit quantizer.
#[inline]
pub(crate) fn rne(x: f32) -> f32 {
    x.round_ties_even()
}
