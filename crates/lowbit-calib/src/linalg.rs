//! Dense f64 linear algebra GPTQ needs: Cholesky factorisation, triangular inverse, and the upper Cholesky
//! factor of an inverse (`H⁻¹ = Uᵀ·U`), written for row-major [`Array2<f64>`] with contiguous inner loops.
//!
//! GPTQ needs `U` with `H⁻¹ = Uᵀ U`, `U` upper triangular. The reference computes `chol(H)`, then `H⁻¹`,
//! then `chol(H⁻¹)`: three O(K³) steps. Here one Cholesky and one triangular inverse suffice: with `J` the
//! reversal permutation, let `J H J = L Lᵀ` (lower `L`). Then `H = M Mᵀ` with `M = J L J` upper, so
//! `H⁻¹ = M⁻ᵀ M⁻¹ = (M⁻¹)ᵀ (M⁻¹)` and `U = M⁻¹ = J L⁻¹ J` (upper, positive diagonal, hence the unique factor).

use crate::error::{CalibError, Result};
use ndarray::{Array2, ArrayView2};

/// Checks `a` is square and finite.
fn check_square(what: &str, a: &ArrayView2<f64>) -> Result<usize> {
    let (r, c) = a.dim();
    if r != c {
        return Err(CalibError::shape(what, "a square matrix", format!("[{r}, {c}]")));
    }
    if r == 0 {
        return Err(CalibError::shape(what, "a non-empty matrix", "[0, 0]"));
    }
    if let Some(((i, j), v)) = a.indexed_iter().find(|(_, v)| !v.is_finite()) {
        return Err(CalibError::NonFinite { what: what.into(), index: format!("[{i}, {j}]"), value: *v });
    }
    Ok(r)
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    // Four independent accumulators let the compiler vectorise without reassociating a single sum.
    let mut acc = [0f64; 4];
    let (ca, cb) = (a.chunks_exact(4), b.chunks_exact(4));
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for t in 0..4 {
            acc[t] += x[t] * y[t];
        }
    }
    let tail: f64 = ra.iter().zip(rb).map(|(x, y)| x * y).sum();
    (acc[0] + acc[1]) + (acc[2] + acc[3]) + tail
}

/// Lower Cholesky factor `L` of a symmetric positive-definite `a` (`a = L Lᵀ`); only the lower triangle of
/// `a` is read. `None` when the matrix is not numerically positive definite: a pivot `≤ k·ε·a_ii` (a singular
/// matrix whose last pivot is rounding noise would otherwise give a factor of garbage).
///
/// Errors: `a` not square, empty or not finite.
pub fn cholesky_lower(a: ArrayView2<f64>) -> Result<Option<Array2<f64>>> {
    let k = check_square("Cholesky input", &a)?;
    let mut l = Array2::<f64>::zeros((k, k));
    let ls = l.as_slice_mut().expect("fresh array is contiguous");
    let tol = k as f64 * f64::EPSILON;
    for i in 0..k {
        for j in 0..=i {
            let (ri, rj) = (i * k, j * k);
            let s = a[[i, j]] - dot(&ls[ri..ri + j], &ls[rj..rj + j]);
            if i == j {
                if !(s > tol * a[[i, i]] && s.is_finite()) {
                    return Ok(None);
                }
                ls[ri + i] = s.sqrt();
            } else {
                ls[ri + j] = s / ls[rj + j];
            }
        }
    }
    Ok(Some(l))
}

/// Inverse of a lower-triangular matrix with non-zero diagonal, computed row by row
/// (`X[i, :] = (e_i − Σ_{k<i} L[i,k]·X[k, :]) / L[i,i]`). Errors: not square, not finite, or a zero pivot.
pub fn invert_lower(l: ArrayView2<f64>) -> Result<Array2<f64>> {
    let k = check_square("triangular input", &l)?;
    if let Some(i) = (0..k).find(|&i| l[[i, i]] == 0.0) {
        return Err(CalibError::option("triangular input", format!("zero diagonal element at {i}")));
    }
    let mut x = Array2::<f64>::zeros((k, k));
    let xs = x.as_slice_mut().expect("fresh array is contiguous");
    let mut row = vec![0f64; k];
    for i in 0..k {
        row[..=i].fill(0.0);
        row[i] = 1.0;
        for kk in 0..i {
            let c = l[[i, kk]];
            if c != 0.0 {
                let src = &xs[kk * k..kk * k + kk + 1];
                for (r, s) in row[..=kk].iter_mut().zip(src) {
                    *r -= c * s;
                }
            }
        }
        let d = l[[i, i]];
        for (dst, r) in xs[i * k..i * k + i + 1].iter_mut().zip(&row[..=i]) {
            *dst = r / d;
        }
    }
    Ok(x)
}

/// The upper-triangular `U` with `h⁻¹ = Uᵀ U` (GPTQ's `Hinv`), without forming `h⁻¹` (see the module doc).
/// `None` when `h` is not numerically positive definite.
pub fn upper_cholesky_of_inverse(h: ArrayView2<f64>) -> Result<Option<Array2<f64>>> {
    let k = check_square("Hessian", &h)?;
    let flipped = Array2::from_shape_fn((k, k), |(i, j)| h[[k - 1 - i, k - 1 - j]]);
    let Some(l) = cholesky_lower(flipped.view())? else { return Ok(None) };
    let li = invert_lower(l.view())?;
    let u = Array2::from_shape_fn((k, k), |(i, j)| li[[k - 1 - i, k - 1 - j]]);
    if u.iter().any(|v| !v.is_finite()) {
        return Ok(None);
    }
    Ok(Some(u))
}
