//! # lowbit-calib
//!
//! The offline calibrator of lowbit (pure Rust, no CUDA). Python (`lowbit.quantize_`) collects each linear
//! layer's input activations with forward hooks and hands them over as f32 `[rows, K]` arrays; this crate
//! turns them into statistics and quantized weights that lowbit-core stores and the GPU kernels consume.
//!
//! - [`observer`]: activation observers. [`MinMaxObserver`], [`HistogramObserver`] (streaming histogram
//!   with exact range growth, [`HistogramObserver::percentile`]), MSE-optimal clipping
//!   ([`HistogramObserver::mse_clip`]), per-tensor or per-channel, and [`static_scale`] for static int8
//!   activation scales (W8A8 / W4A8).
//! - [`hessian`]: [`HessianAccumulator`] (`H = (2/n)·Σ xᵀx`, f32 products accumulated in f64) and [`Hessian`].
//! - [`gptq`]: [`gptq_quantize`] for every weight-only scheme of lowbit-core (INT affine 2–8 bits
//!   sym/asym, groups 32/64/128 or per-channel, act-order with `g_idx`; NF4 and custom LUTs; BitMoD mixed
//!   FP3/FP4 with per-group datatype choice at the group start; bipolar-INT), and [`rtn_quantize`], the
//!   round-to-nearest baseline through the same quantizers.
//! - [`datatype`]: BitMoD per-group datatype search options (squared or Hessian-weighted error, candidate
//!   subsets) and [`bitmod_quantize`].
//! - [`linalg`]: Cholesky, triangular inverse, and the upper Cholesky factor of `H⁻¹`.
//! - [`quamba`]: Quamba / Quamba2 for Mamba SSMs: the percentile EMA observer, group absmax observers (B/C
//!   per state group, x per cluster, SSM state per cluster and state index), sort-and-cluster (head and
//!   channel reordering with Ward / K-means clusters), and offline Hadamard fusion.
//!
//! Bipolar conversion of an INT weight is lowbit-core's ([`lowbit_core::BipolarMatrix::from_int_affine`],
//! lossless), so it is not repeated here.
//!
//! Every fallible call returns [`CalibError`]: NaN/Inf in data (naming the tensor and element), no samples,
//! shape mismatches, an indefinite Hessian after the largest damping, unsupported schemes, bad options.
//!
//! ```
//! use lowbit_calib::{gptq_quantize, GptqOptions, HessianAccumulator};
//! use lowbit_core::WeightScheme;
//! use ndarray::Array2;
//!
//! let (n, k) = (8, 64);
//! let w = Array2::from_shape_fn((n, k), |(i, j)| ((i * 7 + j * 3) % 11) as f32 / 11.0 - 0.5);
//! let x = Array2::from_shape_fn((256, k), |(i, j)| ((i * 5 + j * 13) % 17) as f32 / 17.0 - 0.5);
//! let mut acc = HessianAccumulator::new(k)?;
//! acc.update(x.view())?;
//! let h = acc.finish()?;
//! let scheme: WeightScheme = "w4-int-g32".parse()?;
//! let out = gptq_quantize(w.view(), &h, &scheme, &GptqOptions::default())?;
//! assert_eq!(out.weight.shape(), (n, k));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod codec;
pub mod datatype;
pub mod error;
pub mod gptq;
pub mod hessian;
pub mod linalg;
pub mod observer;
pub mod quamba;

pub use datatype::{DatatypeSearch, ErrorMetric, bitmod_quantize};
pub use error::{CalibError, Result};
pub use gptq::{ClipSearch, GptqOptions, GptqResult, GptqStats, gptq_quantize, gptq_quantize_lut, rtn_quantize};
pub use hessian::{Hessian, HessianAccumulator};
pub use observer::{
    ClipRange, Histogram, HistogramObserver, MinMaxObserver, MseClip, ObserverGranularity, ScaleMethod, static_scale,
    static_scales,
};
