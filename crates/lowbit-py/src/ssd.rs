//! Raw-pointer launchers of the Mamba2 SSD kernels (`lowbit_cuda::ssd`) for `lowbit.ssd_ops`: the chunked
//! prefill scan and the single decode step, with int8 x / dt / B / C.
//!
//! Same conventions as `gpu.rs`: device tensors cross as `data_ptr()` integers (0 = an absent optional tensor)
//! with the token-row strides of x, B/C and dt in elements, the device ordinal and the caller's stream
//! (`torch.cuda.current_stream().cuda_stream`); launches are asynchronous on that stream and nothing here owns or
//! frees torch's memory. The Python layer checks dtypes, devices and shapes; the kernels re-check sizes, NULLs and
//! alignment, and their errors come back as `ValueError` (shapes, alignment, arguments) or `RuntimeError` (CUDA).

use std::ffi::c_void;

use lowbit_core::ssd::SsdShape;
use lowbit_cuda::ssd::{SsdRawArgs, ssd_chunk_scan_raw, ssd_state_update_raw};
use pyo3::prelude::*;

use crate::errors::{cuda_err, value_err};
use crate::gpu::device_for;

/// SSD prefill: x int8 `[batch, length, nheads, headdim]` (`ldx` per token), dt int8 `[batch, length, nheads]`
/// (`lddt`), B / C int8 `[batch, length, ngroups, dstate]` (`ldbc`), f32 x_scale `[nheads·headdim]`, dt_bias / A /
/// D `[nheads]`, B_scale / C_scale `[ngroups]`; writes y f16 `[batch, length, nheads, headdim]` (contiguous) and,
/// when `final_state` != 0, the f32 state `[batch, nheads, headdim, dstate]`; `initial_state` (0 = zeros) has the
/// same layout.
#[pyfunction]
#[pyo3(signature = (*, device, x, ldx, x_scale, dt, lddt, dt_scale, dt_bias, a, b, c, ldbc, b_scale, c_scale, d,
    dt_lo, dt_hi, initial_state, y, final_state, batch, length, nheads, headdim, ngroups, dstate, stream))]
#[allow(clippy::too_many_arguments)]
fn ssd_chunk_scan_int8(
    py: Python<'_>,
    device: usize,
    x: u64,
    ldx: usize,
    x_scale: u64,
    dt: u64,
    lddt: usize,
    dt_scale: f32,
    dt_bias: u64,
    a: u64,
    b: u64,
    c: u64,
    ldbc: usize,
    b_scale: u64,
    c_scale: u64,
    d: u64,
    dt_lo: f32,
    dt_hi: f32,
    initial_state: u64,
    y: u64,
    final_state: u64,
    batch: usize,
    length: usize,
    nheads: usize,
    headdim: usize,
    ngroups: usize,
    dstate: usize,
    stream: usize,
) -> PyResult<()> {
    if x == 0 || y == 0 {
        return Err(value_err("ssd_chunk_scan_int8: null x or y pointer"));
    }
    let dev = device_for(py, device)?;
    let s = SsdShape { batch, len: length, nheads, headdim, ngroups, dstate };
    let args = SsdRawArgs {
        x,
        x_scale,
        dt,
        dt_scale,
        dt_bias,
        a,
        b,
        b_scale,
        c,
        c_scale,
        d,
        dt_limit: (dt_lo, dt_hi),
        ldx,
        ldbc,
        lddt,
    };
    py.detach(|| {
        // SAFETY: the caller (lowbit.ssd_ops) passes live CUDA tensors of `device` with the stated shapes and
        // strides and torch's current stream of that device; torch keeps them alive until the stream's work is
        // done. The launcher re-checks shapes, NULLs and alignment.
        unsafe { ssd_chunk_scan_raw(&dev, &s, &args, initial_state, y, final_state, stream as *mut c_void) }
    })
    .map_err(cuda_err)
}

/// One SSD decode step: `state` f32 `[batch, nheads, headdim, dstate]` (contiguous, updated in place), x int8
/// `[batch, nheads, headdim]` (`ldx` per batch row), dt int8 `[batch, nheads]` (`lddt`), B / C int8
/// `[batch, ngroups, dstate]` (`ldbc`); writes y f16 `[batch, nheads, headdim]` (contiguous).
#[pyfunction]
#[pyo3(signature = (*, device, state, x, ldx, x_scale, dt, lddt, dt_scale, dt_bias, a, b, c, ldbc, b_scale,
    c_scale, d, dt_lo, dt_hi, y, batch, nheads, headdim, ngroups, dstate, stream))]
#[allow(clippy::too_many_arguments)]
fn ssd_state_update_int8(
    py: Python<'_>,
    device: usize,
    state: u64,
    x: u64,
    ldx: usize,
    x_scale: u64,
    dt: u64,
    lddt: usize,
    dt_scale: f32,
    dt_bias: u64,
    a: u64,
    b: u64,
    c: u64,
    ldbc: usize,
    b_scale: u64,
    c_scale: u64,
    d: u64,
    dt_lo: f32,
    dt_hi: f32,
    y: u64,
    batch: usize,
    nheads: usize,
    headdim: usize,
    ngroups: usize,
    dstate: usize,
    stream: usize,
) -> PyResult<()> {
    if state == 0 || x == 0 || y == 0 {
        return Err(value_err("ssd_state_update_int8: null state, x or y pointer"));
    }
    let dev = device_for(py, device)?;
    let s = SsdShape { batch, len: 1, nheads, headdim, ngroups, dstate };
    let args = SsdRawArgs {
        x,
        x_scale,
        dt,
        dt_scale,
        dt_bias,
        a,
        b,
        b_scale,
        c,
        c_scale,
        d,
        dt_limit: (dt_lo, dt_hi),
        ldx,
        ldbc,
        lddt,
    };
    py.detach(|| {
        // SAFETY: as in ssd_chunk_scan_int8.
        unsafe { ssd_state_update_raw(&dev, &s, &args, state, y, stream as *mut c_void) }
    })
    .map_err(cuda_err)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ssd_chunk_scan_int8, m)?)?;
    m.add_function(wrap_pyfunction!(ssd_state_update_int8, m)?)?;
    Ok(())
}
