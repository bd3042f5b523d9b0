//! The baselines of the int8-core suites (`int8`, `bipolar`): a direct cuBLASLt int8 GEMM (`cublaslt-int8`: int8
//! inputs, int32 output, `CUBLAS_COMPUTE_32I`) and cuBLAS fp16 (`cublas-f16`), with their operands for one shape.
//!
//! Both suites time the same two baselines the same way: the weight chunk's W8 codes (cuBLASLt) and fp16 floats
//! (cuBLAS) repeated to N rows and uploaded `R` times so that `R × bytes ≥ l2_factor × L2`, random int8 and fp16
//! activations `[max M, K]`, and per M one timed batch each on the suite's stream.

use std::collections::HashMap;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use lowbit_core::int8::W8Weight;
use lowbit_cuda::OutDtype;
use lowbit_cuda::cublaslt::CublasLtInt8;
use rand::Rng;
use rand::rngs::StdRng;
use serde::{Deserialize, Serialize};

use crate::baseline::Cublas;
use crate::context::BenchContext;
use crate::error::Result;
use crate::progress::Progress;
use crate::report::Skipped;
use crate::suites::common::repeat_rows;
use crate::timing::{Measurement, Timer, TimingConfig, rotation_copies};
use crate::weights::{float_bits, random_activations};

/// A baseline of the int8-core suites.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum IntBaseline {
    /// Direct cuBLASLt int8 GEMM, int32 output.
    #[serde(rename = "cublaslt-int8")]
    CublasLtInt8,
    /// cuBLAS fp16 GEMM (f32 accumulation).
    #[serde(rename = "cublas-f16")]
    CublasF16,
}

impl IntBaseline {
    /// Both, in report order.
    pub const ALL: [IntBaseline; 2] = [IntBaseline::CublasLtInt8, IntBaseline::CublasF16];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            IntBaseline::CublasLtInt8 => "cublaslt-int8",
            IntBaseline::CublasF16 => "cublas-f16",
        }
    }
}

/// One shape's baseline weights (rotation copies), activations and outputs, on the context's stream.
pub struct IntBaselines {
    n: usize,
    k: usize,
    lt_copies: Vec<CudaSlice<i8>>,
    f16_copies: Vec<CudaSlice<u16>>,
    /// int8 activations `[max M, K]`, uniform in `-127..=127` (cuBLASLt's operand; the int8 suite's kernels read it
    /// too).
    pub x8: CudaSlice<i8>,
    /// fp16 activations `[max M, K]` (cuBLAS's operand; the bipolar suite quantizes them).
    pub x16: CudaSlice<u16>,
    /// fp16 output `[max M, N]`.
    pub y16: CudaSlice<u16>,
    /// int32 output `[max M, N]`.
    pub y32: CudaSlice<i32>,
}

impl IntBaselines {
    /// Uploads the operands for an `n × K` weight whose first rows are `floats` (repeated to `n` rows) and up to
    /// `m_max` activation rows. The int8 activations are drawn from `rng` (the caller may go on drawing from it), the
    /// fp16 ones from `x16_seed`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        ctx: &BenchContext,
        floats: ndarray::ArrayView2<f32>,
        n: usize,
        m_max: usize,
        rng: &mut StdRng,
        x16_seed: u64,
        timing: &TimingConfig,
        threads: usize,
    ) -> Result<IntBaselines> {
        let stream = ctx.stream();
        let k = floats.ncols();
        let l2 = ctx.device().info().l2_cache_bytes;
        let w8_full: Vec<i8> = repeat_rows(&W8Weight::quantize(floats)?.codes, k, n);
        let lt_copies = (0..rotation_copies(n * k, l2, timing.l2_factor))
            .map(|_| stream.clone_htod(&w8_full))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        drop(w8_full);
        let f16_full = repeat_rows(&float_bits(floats, OutDtype::F16), k, n);
        let f16_copies = (0..rotation_copies(2 * n * k, l2, timing.l2_factor))
            .map(|_| stream.clone_htod(&f16_full))
            .collect::<std::result::Result<Vec<_>, _>>()?;
        drop(f16_full);
        let xq: Vec<i8> = (0..m_max * k).map(|_| rng.random_range(-127i32..=127) as i8).collect();
        let x8 = stream.clone_htod(&xq)?;
        let x16 = stream.clone_htod(&random_activations(m_max, k, OutDtype::F16, x16_seed, threads))?;
        let y16 = stream.alloc_zeros::<u16>(m_max * n)?;
        let y32 = stream.alloc_zeros::<i32>(m_max * n)?;
        stream.synchronize()?;
        Ok(IntBaselines { n, k, lt_copies, f16_copies, x8, x16, y16, y32 })
    }

    /// Times both baselines at `m` rows (`m ≤ max M`). A shape cuBLASLt refuses is recorded in `skipped` and left
    /// out of the map; any other error stops.
    #[allow(clippy::too_many_arguments)]
    pub fn measure(
        &mut self,
        ctx: &BenchContext,
        timer: &Timer,
        lt: &CublasLtInt8,
        cublas: &Cublas,
        m: usize,
        id: &str,
        pb: &Progress,
        skipped: &mut Vec<Skipped>,
    ) -> Result<HashMap<IntBaseline, Measurement>> {
        let stream = ctx.stream();
        let (n, k) = (self.n, self.k);
        let (x8p, x16p) = (self.x8.device_ptr(stream).0, self.x16.device_ptr(stream).0);
        let (y16p, y32p) = (self.y16.device_ptr_mut(stream).0, self.y32.device_ptr_mut(stream).0);
        let mut base = HashMap::new();
        pb.set_message(format!("{id} M={m} cublaslt-int8"));
        let lt_ptrs: Vec<u64> = self.lt_copies.iter().map(|w| w.device_ptr(stream).0).collect();
        match lt.prepare(m, n, k) {
            Ok(()) => {
                let meas = timer.measure(lt_ptrs.len(), |i| {
                    // SAFETY: x8 holds max M ≥ m rows of K int8, each copy N·K int8, y32 max M·N int32, all on this
                    // stream's context and owned by self, which the caller keeps until the stream is synchronized.
                    Ok(unsafe { lt.matmul_raw(m, n, k, x8p, lt_ptrs[i], y32p) }?)
                })?;
                base.insert(IntBaseline::CublasLtInt8, meas);
            }
            Err(e) => skipped.push(Skipped { what: format!("cublaslt-int8 {id} M={m}"), reason: e.to_string() }),
        }
        pb.inc();
        pb.set_message(format!("{id} M={m} cublas-f16"));
        let f16_ptrs: Vec<u64> = self.f16_copies.iter().map(|w| w.device_ptr(stream).0).collect();
        let meas = timer.measure(f16_ptrs.len(), |i| {
            // SAFETY: as above, with f16 operands and the f16 output.
            Ok(unsafe { cublas.gemm_raw(OutDtype::F16, m, n, k, x16p, f16_ptrs[i], y16p) }?)
        })?;
        base.insert(IntBaseline::CublasF16, meas);
        pb.inc();
        Ok(base)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn baseline_names_match_serde() {
        for b in IntBaseline::ALL {
            assert_eq!(serde_json::to_string(&b).unwrap(), format!("\"{}\"", b.name()));
        }
    }
}
