//! Raw-pointer launchers of the SSM kernels (`lowbit_cuda::ssm`) for `lowbit.ssm_ops`: int8 conv1d (prefill and
//! decode step), the Mamba1 selective scan (and its decode step) and gated RMSNorm → FWHT → int8.
//!
//! Same conventions as `gpu.rs`: device tensors cross as `data_ptr()` integers (0 = an absent optional tensor)
//! with their row strides in elements (`ld*`: elements between consecutive tokens), the device ordinal, and the
//! caller's stream (`torch.cuda.current_stream().cuda_stream`); launches are asynchronous on that stream and
//! nothing here owns or frees torch's memory. The Python layer checks dtypes, devices and shapes; the kernels
//! re-check sizes, NULLs and alignment, and their errors come back as `ValueError` (shapes, alignment, arguments)
//! or `RuntimeError` (CUDA).

use std::ffi::c_void;

use lowbit_cuda::ssm::{self as k, GatedNormConfig, RawConv1dWeights, RawScanParams};
use pyo3::prelude::*;

use crate::errors::{cuda_err, value_err};
use crate::gpu::{device_for, out_dtype};

fn stream_ptr(stream: usize) -> *mut c_void {
    stream as *mut c_void
}

/// Int8 causal depthwise conv1d over whole sequences: x int8 `[batch, length, channels]` (`ldx` per token) →
/// y int8 (`ldy` per token). Scales, weight `[channels, width]` and bias (0 = none) are f32 pointers.
#[pyfunction]
#[pyo3(signature = (*, device, x, ldx, batch, length, channels, x_scale, weight, width, bias, out_scale, silu, y, ldy, stream))]
#[allow(clippy::too_many_arguments)]
fn ssm_conv1d_int8(
    py: Python<'_>,
    device: usize,
    x: u64,
    ldx: usize,
    batch: usize,
    length: usize,
    channels: usize,
    x_scale: u64,
    weight: u64,
    width: usize,
    bias: u64,
    out_scale: u64,
    silu: bool,
    y: u64,
    ldy: usize,
    stream: usize,
) -> PyResult<()> {
    let dev = device_for(py, device)?;
    let w = RawConv1dWeights { x_scale, weight, width, bias, out_scale, silu };
    py.detach(|| {
        // SAFETY: the caller (lowbit.ssm_ops) passes live CUDA tensors of `device` of the stated shapes and torch's
        // current stream of that device; torch keeps them alive until the stream's work is done.
        unsafe { k::conv1d_int8_raw(&dev, x, ldx, batch, length, channels, &w, y, ldy, stream_ptr(stream)) }
    })
    .map_err(cuda_err)
}

/// One conv1d decode step: x int8 `[batch, channels]` (`ldx`), conv_state int8 `[batch, channels, width]`
/// (contiguous, updated in place), y int8 `[batch, channels]` (`ldy`).
#[pyfunction]
#[pyo3(signature = (*, device, x, ldx, conv_state, batch, channels, x_scale, weight, width, bias, out_scale, silu, y, ldy, stream))]
#[allow(clippy::too_many_arguments)]
fn ssm_conv1d_update_int8(
    py: Python<'_>,
    device: usize,
    x: u64,
    ldx: usize,
    conv_state: u64,
    batch: usize,
    channels: usize,
    x_scale: u64,
    weight: u64,
    width: usize,
    bias: u64,
    out_scale: u64,
    silu: bool,
    y: u64,
    ldy: usize,
    stream: usize,
) -> PyResult<()> {
    if conv_state == 0 {
        return Err(value_err("conv1d decode step: null conv_state pointer"));
    }
    let dev = device_for(py, device)?;
    let w = RawConv1dWeights { x_scale, weight, width, bias, out_scale, silu };
    py.detach(|| {
        // SAFETY: as in ssm_conv1d_int8; conv_state has batch·channels·width int8 elements.
        unsafe { k::conv1d_update_int8_raw(&dev, x, ldx, conv_state, batch, channels, &w, y, ldy, stream_ptr(stream)) }
    })
    .map_err(cuda_err)
}

/// The scan's C parameter block from the Python arguments (pointers as integers, 0 = NULL).
#[allow(clippy::too_many_arguments)]
fn scan_params(
    u: u64,
    ldu: usize,
    u_scale: u64,
    dt: u64,
    lddt: usize,
    dt_scale: f32,
    dt_bias: u64,
    dt_add: f32,
    delta_softplus: bool,
    a: u64,
    b: u64,
    ldb: usize,
    b_scale: f32,
    c: u64,
    ldc: usize,
    c_scale: f32,
    d_skip: u64,
    z: u64,
    ldz: usize,
    z_scale: f32,
    shape: (usize, usize, usize, usize),
    reverse: bool,
) -> RawScanParams {
    let (batch, len, dim, dstate) = shape;
    RawScanParams {
        u: u as *const i8,
        ldu: ldu as i64,
        u_scale: u_scale as *const f32,
        dt: dt as *const i8,
        lddt: lddt as i64,
        dt_scale,
        dt_bias: dt_bias as *const f32,
        dt_add,
        delta_softplus: i32::from(delta_softplus),
        a: a as *const f32,
        b: b as *const i8,
        ldb: ldb as i64,
        b_scale,
        c: c as *const i8,
        ldc: ldc as i64,
        c_scale,
        d_skip: d_skip as *const f32,
        z: z as *const i8,
        ldz: ldz as i64,
        z_scale,
        batch: batch as i64,
        len: len as i64,
        dim: dim as i64,
        dstate: dstate as i64,
        reverse: i32::from(reverse),
    }
}

/// Mamba1 selective scan: int8 u / dt / z `[batch, length, dim]` and B / C `[batch, length, dstate]` with their
/// row strides, f32 u_scale / dt_bias / D `[dim]` and A `[dim, dstate]`; y f16 (`ldy` per token). With
/// `step = True` (length 1) `initial_state` is the state updated in place and `final_state` must be 0.
#[pyfunction]
#[pyo3(signature = (
    *, device, u, ldu, u_scale, dt, lddt, dt_scale, dt_bias, dt_add, delta_softplus, a, b, ldb, b_scale, c, ldc,
    c_scale, d_skip, z, ldz, z_scale, batch, length, dim, dstate, reverse, initial_state, final_state, y, ldy, step,
    stream
))]
#[allow(clippy::too_many_arguments)]
fn ssm_selective_scan_int8(
    py: Python<'_>,
    device: usize,
    u: u64,
    ldu: usize,
    u_scale: u64,
    dt: u64,
    lddt: usize,
    dt_scale: f32,
    dt_bias: u64,
    dt_add: f32,
    delta_softplus: bool,
    a: u64,
    b: u64,
    ldb: usize,
    b_scale: f32,
    c: u64,
    ldc: usize,
    c_scale: f32,
    d_skip: u64,
    z: u64,
    ldz: usize,
    z_scale: f32,
    batch: usize,
    length: usize,
    dim: usize,
    dstate: usize,
    reverse: bool,
    initial_state: u64,
    final_state: u64,
    y: u64,
    ldy: usize,
    step: bool,
    stream: usize,
) -> PyResult<()> {
    if step && (initial_state == 0 || final_state != 0) {
        return Err(value_err("selective state update: pass the state as initial_state and final_state = 0"));
    }
    let dev = device_for(py, device)?;
    py.detach(|| {
        // Built on this side of the GIL release: the C block holds raw pointers, which are not `Send`.
        let p = scan_params(
            u,
            ldu,
            u_scale,
            dt,
            lddt,
            dt_scale,
            dt_bias,
            dt_add,
            delta_softplus,
            a,
            b,
            ldb,
            b_scale,
            c,
            ldc,
            c_scale,
            d_skip,
            z,
            ldz,
            z_scale,
            (batch, length, dim, dstate),
            reverse,
        );
        // SAFETY: the caller (lowbit.ssm_ops) passes live CUDA tensors of `device` of the stated shapes and strides
        // and torch's current stream of that device; torch keeps them alive until the stream's work is done.
        unsafe {
            if step {
                k::selective_state_update_int8_raw(&dev, &p, initial_state, y, ldy, stream_ptr(stream))
            } else {
                k::selective_scan_int8_raw(&dev, &p, initial_state, final_state, y, ldy, stream_ptr(stream))
            }
        }
    })
    .map_err(cuda_err)
}

/// Gated RMSNorm → FWHT → int8: y f16 `[rows, dim]` (`ldy`), z int8 (`ldz`, 0 = no gate), weight f32 `[dim]`
/// (0 = none) → q int8 `[rows, dim]` (`ldq`).
#[pyfunction]
#[pyo3(signature = (
    *, device, y, ldy, z, ldz, z_scale, weight, rows, dim, group_size, eps, norm, hadamard, out_scale, q, ldq, stream
))]
#[allow(clippy::too_many_arguments)]
fn ssm_gated_rmsnorm_quant(
    py: Python<'_>,
    device: usize,
    y: u64,
    ldy: usize,
    z: u64,
    ldz: usize,
    z_scale: f32,
    weight: u64,
    rows: usize,
    dim: usize,
    group_size: usize,
    eps: f32,
    norm: bool,
    hadamard: usize,
    out_scale: f32,
    q: u64,
    ldq: usize,
    stream: usize,
) -> PyResult<()> {
    let dev = device_for(py, device)?;
    let cfg = GatedNormConfig { z_scale, group_size, eps, norm, hadamard, out_scale };
    py.detach(|| {
        // SAFETY: as in ssm_selective_scan_int8.
        unsafe { k::gated_rmsnorm_quant_raw(&dev, y, ldy, z, ldz, weight, rows, dim, &cfg, q, ldq, stream_ptr(stream)) }
    })
    .map_err(cuda_err)
}

/// `lowbit_ssm_residual_rmsnorm_quant` on raw device pointers (0 = NULL) and a torch stream handle.
#[pyfunction]
#[pyo3(signature = (
    *, device, x, ldx, residual, ldr, out, ldo, gamma, eps, hadamard, static_scale, q, ldq, rows, k, dtype, stream
))]
#[allow(clippy::too_many_arguments)]
fn ssm_residual_rmsnorm_quant(
    py: Python<'_>,
    device: usize,
    x: u64,
    ldx: usize,
    residual: u64,
    ldr: usize,
    out: u64,
    ldo: usize,
    gamma: u64,
    eps: f32,
    hadamard: usize,
    static_scale: f32,
    q: u64,
    ldq: usize,
    rows: usize,
    k: usize,
    dtype: &str,
    stream: usize,
) -> PyResult<()> {
    let dev = device_for(py, device)?;
    let dt = out_dtype(dtype)?;
    py.detach(|| {
        // SAFETY: as in ssm_selective_scan_int8.
        unsafe {
            k::residual_rmsnorm_quant_raw(
                &dev,
                x,
                ldx,
                residual,
                ldr,
                out,
                ldo,
                gamma,
                eps,
                hadamard,
                static_scale,
                q,
                ldq,
                rows,
                k,
                dt,
                stream_ptr(stream),
            )
        }
    })
    .map_err(cuda_err)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(ssm_conv1d_int8, m)?)?;
    m.add_function(wrap_pyfunction!(ssm_conv1d_update_int8, m)?)?;
    m.add_function(wrap_pyfunction!(ssm_selective_scan_int8, m)?)?;
    m.add_function(wrap_pyfunction!(ssm_gated_rmsnorm_quant, m)?)?;
    m.add_function(wrap_pyfunction!(ssm_residual_rmsnorm_quant, m)?)?;
    Ok(())
}
