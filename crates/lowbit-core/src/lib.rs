//! # lowbit-core
//!
//! Pure-Rust heart of lowbit: no CUDA anywhere in this crate.
//!
//! - **Formats** ([`affine`], [`bipolar`], [`bitmod`], [`lut`], [`act`]): every weight and activation format
//!   lowbit's kernels consume, with its exact bit layout (see `docs/formats.md`), a quantizer, a packer and a
//!   bit-exact dequantizer that the GPU kernels are tested against.
//! - [`weight`]: [`QuantizedWeight`], the sum of all weight formats, and [`WeightScheme`], the textual scheme
//!   names (`w4-int-g128`, `w3-mixed-g128`, ...) used by the CLI, the checkpoint and the benches.
//! - [`mod@reference`]: naive f64-accumulating GEMMs on dequantized operands, the oracle for every kernel.
//! - [`ssm`]: CPU references of the state-space-model kernels (int8 conv1d, Mamba1 selective scan, gated norm).
//! - [`ssd`]: CPU references of the Mamba2 SSD kernels (int8 chunked scan and decode step; plain f64 recurrence).
//! - [`metrics`]: SQNR, relative Frobenius error, max abs error.
//! - [`checkpoint`]: the versioned safetensors checkpoint of quantized tensors.
//! - [`model`] and [`gguf`]: readers for float model weights (safetensors, GGUF) that the CLI quantizes.

pub mod act;
pub mod affine;
pub mod bipolar;
pub mod bitmod;
pub mod bits;
pub mod checkpoint;
pub mod error;
pub mod gguf;
pub mod granularity;
pub mod int8;
pub mod lut;
pub mod metrics;
pub mod model;
pub mod reference;
pub mod repack;
pub mod ssd;
pub mod ssm;
mod util;
pub mod weight;

pub use act::{ActGranularity, Int8Activations};
pub use affine::IntAffineWeight;
pub use bipolar::BipolarMatrix;
pub use bitmod::MixedWeight;
pub use error::{LowbitError, Result};
pub use granularity::Granularity;
pub use lut::LutWeight;
pub use weight::{QuantizedWeight, SchemeKind, WeightScheme, quantize};
