//! Error metrics between a reference and an approximation of the same shape.

use crate::error::{LowbitError, Result};
use ndarray::ArrayView2;

fn pairs<'a, A, B>(
    reference: &'a ArrayView2<A>,
    test: &'a ArrayView2<B>,
) -> Result<impl Iterator<Item = (f64, f64)> + 'a>
where
    A: Copy + Into<f64>,
    B: Copy + Into<f64>,
{
    if reference.dim() != test.dim() {
        return Err(LowbitError::shape(
            "metric operands",
            format!("{:?}", reference.dim()),
            format!("{:?}", test.dim()),
        ));
    }
    Ok(reference.iter().zip(test.iter()).map(|(&a, &b)| (a.into(), b.into())))
}

/// Signal-to-quantization-noise ratio in dB: `10·log10(Σ ref² / Σ (ref − test)²)`; `+∞` when identical.
pub fn sqnr_db<A: Copy + Into<f64>, B: Copy + Into<f64>>(reference: ArrayView2<A>, test: ArrayView2<B>) -> Result<f64> {
    let (mut sig, mut noise) = (0f64, 0f64);
    for (a, b) in pairs(&reference, &test)? {
        sig += a * a;
        noise += (a - b) * (a - b);
    }
    Ok(if noise == 0.0 { f64::INFINITY } else { 10.0 * (sig / noise).log10() })
}

/// Relative Frobenius error `‖ref − test‖ / ‖ref‖` (0 when identical; `+∞` for a zero reference and non-zero test).
pub fn rel_fro_error<A: Copy + Into<f64>, B: Copy + Into<f64>>(
    reference: ArrayView2<A>,
    test: ArrayView2<B>,
) -> Result<f64> {
    let (mut sig, mut noise) = (0f64, 0f64);
    for (a, b) in pairs(&reference, &test)? {
        sig += a * a;
        noise += (a - b) * (a - b);
    }
    Ok(if noise == 0.0 { 0.0 } else { (noise / sig).sqrt() })
}

/// Largest absolute elementwise difference.
pub fn max_abs_error<A: Copy + Into<f64>, B: Copy + Into<f64>>(
    reference: ArrayView2<A>,
    test: ArrayView2<B>,
) -> Result<f64> {
    Ok(pairs(&reference, &test)?.fold(0f64, |m, (a, b)| m.max((a - b).abs())))
}

/// All three metrics at once.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorReport {
    /// SQNR in dB.
    pub sqnr_db: f64,
    /// Relative Frobenius error.
    pub rel_error: f64,
    /// Max absolute error.
    pub max_abs: f64,
}

/// Computes an [`ErrorReport`].
pub fn report<A: Copy + Into<f64>, B: Copy + Into<f64>>(
    reference: ArrayView2<A>,
    test: ArrayView2<B>,
) -> Result<ErrorReport> {
    Ok(ErrorReport {
        sqnr_db: sqnr_db(reference.view(), test.view())?,
        rel_error: rel_fro_error(reference.view(), test.view())?,
        max_abs: max_abs_error(reference, test)?,
    })
}
