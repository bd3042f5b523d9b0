//! CPU reference GEMMs: naive by design, f64 accumulation on **dequantized** operands.
//!
//! `Y[M, N] = X[M, K] · Wᵀ` with `W[N, K]` (rows = output features). Every (weight format × activation
//! format) pair goes through [`gemm`]: both operands are dequantized to f64 exactly as the kernels see them,
//! then multiplied with f64 accumulation. Exact integer references ([`int8_gemm_exact`],
//! [`bipolar_gemm_exact`], [`bipolar_gemm_popcount`]) serve the integer kernels, which must agree bit for bit
//! before scales are applied.

use crate::act::Int8Activations;
use crate::bipolar::BipolarMatrix;
use crate::error::{LowbitError, Result};
use crate::weight::QuantizedWeight;
use half::{bf16, f16};
use ndarray::{Array2, ArrayView2};

/// An activation operand in any format the kernels accept.
#[derive(Debug, Clone)]
pub enum Activations {
    /// f32 activations.
    F32(Array2<f32>),
    /// f16 activations.
    F16(Array2<f16>),
    /// bf16 activations.
    Bf16(Array2<bf16>),
    /// int8 activations with per-token or per-tensor scales.
    Int8(Int8Activations),
    /// bipolar-INT activations (per-token scales: granularity per-channel over rows).
    Bipolar(BipolarMatrix),
}

impl Activations {
    /// `(M, K)`.
    pub fn shape(&self) -> (usize, usize) {
        match self {
            Self::F32(a) => a.dim(),
            Self::F16(a) => a.dim(),
            Self::Bf16(a) => a.dim(),
            Self::Int8(a) => (a.m, a.k),
            Self::Bipolar(a) => (a.n, a.k),
        }
    }

    /// The values the kernel multiplies, as f64.
    pub fn dequantize(&self) -> Array2<f64> {
        match self {
            Self::F32(a) => a.mapv(f64::from),
            Self::F16(a) => a.mapv(f64::from),
            Self::Bf16(a) => a.mapv(f64::from),
            Self::Int8(a) => a.dequantize().mapv(f64::from),
            Self::Bipolar(a) => a.dequantize().mapv(f64::from),
        }
    }
}

/// `Y = X · Wᵀ` in f64 for `x[M, K]`, `w[N, K]`.
pub fn gemm_f64(x: ArrayView2<f64>, w: ArrayView2<f64>) -> Result<Array2<f64>> {
    let (m, k) = x.dim();
    let (n, kw) = w.dim();
    if k != kw {
        return Err(LowbitError::shape("reference GEMM K", format!("K = {k} (from X)"), format!("K = {kw} (from W)")));
    }
    let mut y = Array2::<f64>::zeros((m, n));
    for i in 0..m {
        let xr = x.row(i);
        for j in 0..n {
            let wr = w.row(j);
            let mut acc = 0f64;
            for t in 0..k {
                acc += xr[t] * wr[t];
            }
            y[[i, j]] = acc;
        }
    }
    Ok(y)
}

/// The reference for any (activation, weight) pair: both dequantized, f64 accumulation.
pub fn gemm(x: &Activations, w: &QuantizedWeight) -> Result<Array2<f64>> {
    w.validate()?;
    match x {
        Activations::Int8(a) => a.validate()?,
        Activations::Bipolar(a) => a.validate()?,
        Activations::F32(_) | Activations::F16(_) | Activations::Bf16(_) => {}
    }
    let wd = w.dequantize().mapv(f64::from);
    gemm_f64(x.dequantize().view(), wd.view())
}

/// Exact integer product of int8 activations and signed integer weight values `w_int[N, K]`
/// (e.g. `q − z` of an INT8 affine weight): `Σ_k x_q · w_int` in i64 (kernels accumulate in i32).
pub fn int8_gemm_exact(x: &Int8Activations, w_int: ArrayView2<i32>) -> Result<Array2<i64>> {
    x.validate()?;
    let (n, k) = w_int.dim();
    if k != x.k {
        return Err(LowbitError::shape("int8 GEMM K", format!("K = {}", x.k), format!("K = {k}")));
    }
    Ok(Array2::from_shape_fn((x.m, n), |(i, j)| (0..k).map(|t| x.codes[i * k + t] as i64 * w_int[[j, t]] as i64).sum()))
}

/// Exact integer product of two bipolar matrices' values: `Σ_k v_x · v_w` (before scales).
pub fn bipolar_gemm_exact(x: &BipolarMatrix, w: &BipolarMatrix) -> Result<Array2<i64>> {
    x.validate()?;
    w.validate()?;
    if x.k != w.k {
        return Err(LowbitError::shape("bipolar GEMM K", format!("K = {}", x.k), format!("K = {}", w.k)));
    }
    let (xv, wv) = (x.values(), w.values());
    Ok(Array2::from_shape_fn((x.n, w.n), |(i, j)| (0..x.k).map(|t| xv[[i, t]] as i64 * wv[[j, t]] as i64).sum()))
}

/// The same product computed the way the 1-bit tensor-core kernels do: for every plane pair (i, j),
/// `D_ij = 4·popc(X_i ∧ W_j) − 2·r^X_i − 2·r^W_j + K`, recovered as `Σ 2^(i+j)·D_ij`.
pub fn bipolar_gemm_popcount(x: &BipolarMatrix, w: &BipolarMatrix) -> Result<Array2<i64>> {
    // Set padding bits would be counted by the popcounts; a short plane buffer would panic.
    x.validate()?;
    w.validate()?;
    if x.k != w.k {
        return Err(LowbitError::shape("bipolar GEMM K", format!("K = {}", x.k), format!("K = {}", w.k)));
    }
    let wpr = x.k.div_ceil(32);
    let (rx, rw) = (x.plane_popcounts(), w.plane_popcounts());
    let k = x.k as i64;
    Ok(Array2::from_shape_fn((x.n, w.n), |(m, n)| {
        let mut acc = 0i64;
        for i in 0..x.bits as usize {
            let xa = &x.planes[(i * x.n + m) * wpr..(i * x.n + m + 1) * wpr];
            for j in 0..w.bits as usize {
                let wb = &w.planes[(j * w.n + n) * wpr..(j * w.n + n + 1) * wpr];
                let p: i64 = xa.iter().zip(wb).map(|(a, b)| (a & b).count_ones() as i64).sum();
                let d = 4 * p - 2 * rx[i * x.n + m] as i64 - 2 * rw[j * w.n + n] as i64 + k;
                acc += d << (i + j);
            }
        }
        acc
    }))
}
