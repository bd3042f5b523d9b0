//! # lowbit-bench
//!
//! The benchmark harness shared by every lowbit kernel family (`lowbit-bench` binary):
//!
//! - [`timing`]: CUDA-event timing on one stream, warm-up, median of many repetitions, operands
//!   rotated through more than 3× the L2 cache, a CUDA graph per timed batch (stream launches as the
//!   fallback);
//! - [`baseline`]: first-class cuBLAS baselines (fp16 / bf16 GEMM through cudarc), run in the same
//!   process, on the same card and stream, as the kernel under test;
//! - [`shapes`]: the layer shapes of `benches/shapes/*.csv` (Llama, Mamba-2), embedded in the binary;
//! - [`weights`]: fast realistic quantized weights for big shapes (a quantized row chunk, tiled);
//! - [`suites`]: one module per kernel family (so far [`suites::weight_only`]);
//! - [`nvml`]: the SM clock, power and clock-event reasons of each measurement's timed batches (NVML);
//! - [`report`], [`card`], [`sysinfo`]: the JSON / Markdown results under `docs/results/<card>/`,
//!   with the card, clocks, versions and method recorded beside the numbers.
//!
//! Everything except the measurement itself runs and is tested without a GPU; the measurement
//! needs an NVIDIA GPU and libcublas (see `benches/README.md`).

pub mod baseline;
pub mod card;
pub mod context;
pub mod error;
pub mod nvml;
pub mod progress;
pub mod report;
pub mod shapes;
pub mod suites;
pub mod sysinfo;
pub mod timing;
pub mod weights;

pub use error::{BenchError, Result};
