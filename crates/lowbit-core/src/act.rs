//! int8 activations, symmetric: per-token (dynamic, one scale per row) or per-tensor (static, calibrated).
//!
//! `x ≈ f32(q) · s`, `q = clamp(rne(x / s), −127, 127)`; per-token `s_m = absmax_m / 127` (all-zero row: 1).

use crate::error::{LowbitError, Result};
use crate::util::{check_len, check_matrix, rne};
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};

/// Scale granularity of int8 activations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActGranularity {
    /// One scale per row (token), computed at run time.
    PerToken,
    /// One calibrated scale for the whole tensor.
    PerTensor,
}

/// An `[m, k]` int8 activation matrix with its scales.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8Activations {
    /// Rows (tokens).
    pub m: usize,
    /// Columns (features).
    pub k: usize,
    /// Scale granularity.
    pub granularity: ActGranularity,
    /// Codes in `[−127, 127]`, row-major.
    pub codes: Vec<i8>,
    /// `m` scales (per-token) or 1 (per-tensor).
    pub scales: Vec<f32>,
}

/// `absmax / 127`, or 1 when that is 0 (an all-zero row, or a subnormal absmax whose scale underflows): the
/// codes are then all 0 and the scale stays valid (finite and positive).
fn nonzero_scale(s: f32) -> f32 {
    if s == 0.0 { 1.0 } else { s }
}

fn quantize_row(row: impl Iterator<Item = f32>, s: f32, out: &mut Vec<i8>) {
    out.extend(row.map(|x| rne(x / s).clamp(-127.0, 127.0) as i8));
}

impl Int8Activations {
    /// Dynamic per-token quantization.
    pub fn quantize_per_token(x: ArrayView2<f32>) -> Result<Self> {
        check_matrix("activations", &x)?;
        let (m, k) = x.dim();
        let mut codes = Vec::with_capacity(m * k);
        let mut scales = Vec::with_capacity(m);
        for row in x.rows() {
            let absmax = row.iter().fold(0f32, |a, v| a.max(v.abs()));
            let s = nonzero_scale(absmax / 127.0);
            quantize_row(row.iter().copied(), s, &mut codes);
            scales.push(s);
        }
        Ok(Self { m, k, granularity: ActGranularity::PerToken, codes, scales })
    }

    /// Static per-tensor quantization with a calibrated `scale` (values beyond `127·scale` saturate).
    pub fn quantize_per_tensor(x: ArrayView2<f32>, scale: f32) -> Result<Self> {
        check_matrix("activations", &x)?;
        if !(scale.is_finite() && scale > 0.0) {
            return Err(LowbitError::invalid("activation scale", format!("{scale} is not finite and positive")));
        }
        let (m, k) = x.dim();
        let mut codes = Vec::with_capacity(m * k);
        for row in x.rows() {
            quantize_row(row.iter().copied(), scale, &mut codes);
        }
        Ok(Self { m, k, granularity: ActGranularity::PerTensor, codes, scales: vec![scale] })
    }

    /// The min-max per-tensor scale of calibration data (`absmax / 127`).
    pub fn calibrate_per_tensor(x: ArrayView2<f32>) -> Result<f32> {
        check_matrix("calibration activations", &x)?;
        let absmax = x.iter().fold(0f32, |a, v| a.max(v.abs()));
        Ok(nonzero_scale(absmax / 127.0))
    }

    /// Checks lengths and ranges.
    pub fn validate(&self) -> Result<()> {
        check_len("activation codes", self.codes.len(), self.m * self.k)?;
        let ns = match self.granularity {
            ActGranularity::PerToken => self.m,
            ActGranularity::PerTensor => 1,
        };
        check_len("activation scales", self.scales.len(), ns)?;
        if let Some(i) = self.codes.iter().position(|&c| c == i8::MIN) {
            return Err(LowbitError::invalid("activation codes", format!("-128 at {i} (symmetric range is ±127)")));
        }
        if let Some(s) = self.scales.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(LowbitError::invalid("activation scales", format!("{s} is not finite and positive")));
        }
        Ok(())
    }

    /// Scale of row `r`.
    #[inline]
    pub fn scale(&self, r: usize) -> f32 {
        match self.granularity {
            ActGranularity::PerToken => self.scales[r],
            ActGranularity::PerTensor => self.scales[0],
        }
    }

    /// The codes as an `[m, k]` array.
    pub fn codes_array(&self) -> Array2<i8> {
        Array2::from_shape_vec((self.m, self.k), self.codes.clone()).expect("validated length")
    }

    /// Dequantized activations `f32(q) · s`.
    pub fn dequantize(&self) -> Array2<f32> {
        Array2::from_shape_fn((self.m, self.k), |(r, c)| self.codes[r * self.k + c] as f32 * self.scale(r))
    }
}
