//! The state-space-model kernels of `kernels/ssm` (Mamba1 side and shared pieces of Quamba / Quamba2): the int8
//! causal depthwise conv1d ([`conv1d_int8`], [`conv1d_update_int8`]), the Mamba1 selective scan with int8 inputs
//! ([`selective_scan_int8`], [`selective_state_update_int8`]) and gated RMSNorm → Hadamard → int8
//! ([`gated_rmsnorm_quant`]).
//!
//! Two forms of each launch:
//! - safe functions over [`CudaSlice`]s on [`Device`]'s stream, which check every buffer length against the shape
//!   ([`CudaError::BufferSize`]) before anything is launched;
//! - `*_raw` functions over raw device pointers and a caller's stream (PyTorch tensors through `lowbit._C`),
//!   `unsafe` because pointer validity cannot be checked; the launchers still check sizes, NULLs and alignment.
//!
//! Every launcher status maps to a typed [`CudaError`] naming the launcher and its arguments. The CPU references
//! are in `lowbit_core::ssm`; the arithmetic is documented in `kernels/include/lowbit_kernels.h`.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, SyncOnDrop};
use lowbit_core::ssm::ScanShape;
use lowbit_kernels_sys as sys;

use crate::buffer::OutDtype;
use crate::device::Device;
use crate::error::{CudaError, Result, check_with};
use crate::launch::{in_context, need};

/// The C parameter block of the selective scan (`lowbit_ssm_scan_params`), for the `_raw` launches.
pub use sys::lowbit_ssm_scan_params as RawScanParams;

/// Largest conv1d width the kernels take.
pub const MAX_CONV_WIDTH: usize = sys::LOWBIT_SSM_MAX_CONV_WIDTH as usize;
/// Largest d_state of the selective scan.
pub const MAX_DSTATE: usize = sys::LOWBIT_SSM_MAX_DSTATE as usize;
/// Largest row length of [`gated_rmsnorm_quant`].
pub const MAX_NORM_DIM: usize = sys::LOWBIT_SSM_MAX_NORM_DIM as usize;

fn shape_err(launcher: &'static str, detail: String) -> CudaError {
    CudaError::Shape { launcher, detail }
}

/// Collects the device pointers of one launch and keeps their stream-sync guards alive until it is enqueued.
struct Ptrs<'a> {
    stream: &'a cudarc::driver::CudaStream,
    guards: Vec<SyncOnDrop<'a>>,
}

impl<'a> Ptrs<'a> {
    fn new(dev: &'a Device) -> Self {
        Self { stream: dev.stream(), guards: Vec::new() }
    }
    fn get<T>(&mut self, s: &'a CudaSlice<T>) -> u64 {
        let (p, g) = s.device_ptr(self.stream);
        self.guards.push(g);
        p
    }
    fn get_mut<T>(&mut self, s: &'a mut CudaSlice<T>) -> u64 {
        let (p, g) = s.device_ptr_mut(self.stream);
        self.guards.push(g);
        p
    }
    fn opt<T>(&mut self, s: Option<&'a CudaSlice<T>>) -> u64 {
        s.map_or(0, |s| self.get(s))
    }
    fn stream_ptr(&self) -> *mut c_void {
        self.stream.cu_stream().cast()
    }
}

// ------------------------------------------------------------------------------------------------------------
// conv1d
// ------------------------------------------------------------------------------------------------------------

/// Per-channel parameters of the int8 conv1d (device buffers).
#[derive(Debug, Clone, Copy)]
pub struct Conv1dWeights<'a> {
    /// Input scale per channel, `[channels]`.
    pub x_scale: &'a CudaSlice<f32>,
    /// Filter taps `[channels, width]`.
    pub weight: &'a CudaSlice<f32>,
    /// Filter width (1..=[`MAX_CONV_WIDTH`]).
    pub width: usize,
    /// Bias per channel, `[channels]`.
    pub bias: Option<&'a CudaSlice<f32>>,
    /// Output scale per channel, `[channels]`.
    pub out_scale: &'a CudaSlice<f32>,
    /// Apply SiLU before quantizing.
    pub silu: bool,
}

impl Conv1dWeights<'_> {
    fn check(&self, channels: usize) -> Result<()> {
        if self.width == 0 || self.width > MAX_CONV_WIDTH {
            return Err(shape_err(
                "lowbit_ssm_conv1d_int8",
                format!("width {} not in 1..={MAX_CONV_WIDTH}", self.width),
            ));
        }
        need("conv1d x_scale", self.x_scale.len(), channels)?;
        need("conv1d weight", self.weight.len(), channels * self.width)?;
        need("conv1d out_scale", self.out_scale.len(), channels)?;
        if let Some(b) = self.bias {
            need("conv1d bias", b.len(), channels)?;
        }
        Ok(())
    }
}

/// Raw device pointers of the conv1d parameters (0 = NULL for `bias`).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawConv1dWeights {
    /// f32 `[channels]`.
    pub x_scale: u64,
    /// f32 `[channels, width]`.
    pub weight: u64,
    /// Filter width.
    pub width: usize,
    /// f32 `[channels]` or 0.
    pub bias: u64,
    /// f32 `[channels]`.
    pub out_scale: u64,
    /// Apply SiLU.
    pub silu: bool,
}

/// Int8 causal conv1d prefill on raw pointers: `x` `[batch, len, channels]` with `ldx` elements per token →
/// `y` (`ldy` per token).
///
/// # Safety
/// Every pointer must address device memory of `dev`'s context of the documented size (x: `batch · len` rows of
/// `ldx` int8, y likewise with `ldy`, not overlapping x; the weight vectors as in [`RawConv1dWeights`]), and
/// `stream` must be a stream of that context (or null); nothing else may write them until the launch completes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv1d_int8_raw(
    dev: &Device,
    x: u64,
    ldx: usize,
    batch: usize,
    len: usize,
    channels: usize,
    w: &RawConv1dWeights,
    y: u64,
    ldy: usize,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st = unsafe {
            sys::lowbit_ssm_conv1d_int8(
                x as *const i8,
                ldx as i64,
                batch as i64,
                len as i64,
                channels as i64,
                w.x_scale as *const f32,
                w.weight as *const f32,
                w.width as i32,
                w.bias as *const f32,
                w.out_scale as *const f32,
                i32::from(w.silu),
                y as *mut i8,
                ldy as i64,
                stream,
            )
        };
        check_with(st, "lowbit_ssm_conv1d_int8", || {
            format!("batch={batch} len={len} channels={channels} width={} ldx={ldx} ldy={ldy}", w.width)
        })
    })
}

/// One conv1d decode step on raw pointers: `x` `[batch, channels]` (`ldx`), `conv_state` int8
/// `[batch, channels, width]` updated in place, `y` `[batch, channels]` (`ldy`).
///
/// # Safety
/// As [`conv1d_int8_raw`], with `conv_state` `batch · channels · width` writable int8.
#[allow(clippy::too_many_arguments)]
pub unsafe fn conv1d_update_int8_raw(
    dev: &Device,
    x: u64,
    ldx: usize,
    conv_state: u64,
    batch: usize,
    channels: usize,
    w: &RawConv1dWeights,
    y: u64,
    ldy: usize,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st = unsafe {
            sys::lowbit_ssm_conv1d_update_int8(
                x as *const i8,
                ldx as i64,
                conv_state as *mut i8,
                batch as i64,
                channels as i64,
                w.x_scale as *const f32,
                w.weight as *const f32,
                w.width as i32,
                w.bias as *const f32,
                w.out_scale as *const f32,
                i32::from(w.silu),
                y as *mut i8,
                ldy as i64,
                stream,
            )
        };
        check_with(st, "lowbit_ssm_conv1d_update_int8", || {
            format!("batch={batch} channels={channels} width={} ldx={ldx} ldy={ldy}", w.width)
        })
    })
}

/// Int8 causal conv1d prefill on `dev`'s stream: contiguous `x` `[batch, len, channels]` → `y` (same shape).
pub fn conv1d_int8(
    dev: &Device,
    x: &CudaSlice<i8>,
    batch: usize,
    len: usize,
    channels: usize,
    w: &Conv1dWeights<'_>,
    y: &mut CudaSlice<i8>,
) -> Result<()> {
    w.check(channels)?;
    need("conv1d x", x.len(), batch * len * channels)?;
    need("conv1d y", y.len(), batch * len * channels)?;
    let mut p = Ptrs::new(dev);
    let raw = RawConv1dWeights {
        x_scale: p.get(w.x_scale),
        weight: p.get(w.weight),
        width: w.width,
        bias: p.opt(w.bias),
        out_scale: p.get(w.out_scale),
        silu: w.silu,
    };
    let (xp, yp) = (p.get(x), p.get_mut(y));
    // SAFETY: lengths checked above; every buffer lives in dev's context and the launch goes to its stream.
    unsafe { conv1d_int8_raw(dev, xp, channels, batch, len, channels, &raw, yp, channels, p.stream_ptr()) }
}

/// One conv1d decode step on `dev`'s stream: `x` `[batch, channels]`, `conv_state` `[batch, channels, width]`
/// (in place), `y` `[batch, channels]`.
pub fn conv1d_update_int8(
    dev: &Device,
    x: &CudaSlice<i8>,
    conv_state: &mut CudaSlice<i8>,
    batch: usize,
    channels: usize,
    w: &Conv1dWeights<'_>,
    y: &mut CudaSlice<i8>,
) -> Result<()> {
    w.check(channels)?;
    need("conv1d x", x.len(), batch * channels)?;
    need("conv1d state", conv_state.len(), batch * channels * w.width)?;
    need("conv1d y", y.len(), batch * channels)?;
    let mut p = Ptrs::new(dev);
    let raw = RawConv1dWeights {
        x_scale: p.get(w.x_scale),
        weight: p.get(w.weight),
        width: w.width,
        bias: p.opt(w.bias),
        out_scale: p.get(w.out_scale),
        silu: w.silu,
    };
    let (xp, sp, yp) = (p.get(x), p.get_mut(conv_state), p.get_mut(y));
    // SAFETY: lengths checked above; every buffer lives in dev's context and the launch goes to its stream.
    unsafe { conv1d_update_int8_raw(dev, xp, channels, sp, batch, channels, &raw, yp, channels, p.stream_ptr()) }
}

// ------------------------------------------------------------------------------------------------------------
// selective scan
// ------------------------------------------------------------------------------------------------------------

/// Device inputs of the selective scan, contiguous (`[batch, len, ·]`; `len = 1` for a decode step).
#[derive(Debug, Clone, Copy)]
pub struct ScanBuffers<'a> {
    /// u int8 `[batch, len, dim]`.
    pub u: &'a CudaSlice<i8>,
    /// dt int8 `[batch, len, dim]`.
    pub dt: &'a CudaSlice<i8>,
    /// B int8 `[batch, len, dstate]`.
    pub b: &'a CudaSlice<i8>,
    /// C int8 `[batch, len, dstate]`.
    pub c: &'a CudaSlice<i8>,
    /// z int8 `[batch, len, dim]`.
    pub z: Option<&'a CudaSlice<i8>>,
    /// u scale per channel `[dim]`.
    pub u_scale: &'a CudaSlice<f32>,
    /// dt bias `[dim]`.
    pub dt_bias: Option<&'a CudaSlice<f32>>,
    /// A `[dim, dstate]`.
    pub a: &'a CudaSlice<f32>,
    /// D skip `[dim]`.
    pub d_skip: Option<&'a CudaSlice<f32>>,
}

/// Scalar parameters of the selective scan.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScanScalars {
    /// Per-tensor scale of dt.
    pub dt_scale: f32,
    /// Added after the softplus.
    pub dt_add: f32,
    /// Apply softplus to `dt · dt_scale + dt_bias`.
    pub delta_softplus: bool,
    /// Per-tensor scale of B.
    pub b_scale: f32,
    /// Per-tensor scale of C.
    pub c_scale: f32,
    /// Per-tensor scale of z.
    pub z_scale: f32,
    /// Scan from the last timestep to the first.
    pub reverse: bool,
}

impl Default for ScanScalars {
    fn default() -> Self {
        Self {
            dt_scale: 1.0,
            dt_add: 0.0,
            delta_softplus: true,
            b_scale: 1.0,
            c_scale: 1.0,
            z_scale: 1.0,
            reverse: false,
        }
    }
}

impl ScanBuffers<'_> {
    fn check(&self, s: ScanShape) -> Result<()> {
        let ScanShape { batch, len, dim, dstate } = s;
        if batch == 0 || len == 0 || dim == 0 || dstate == 0 || dstate > MAX_DSTATE {
            return Err(shape_err(
                "lowbit_ssm_selective_scan_int8",
                format!("{s:?} (all non-zero, dstate <= {MAX_DSTATE})"),
            ));
        }
        let (act, bc) = (batch * len * dim, batch * len * dstate);
        need("scan u", self.u.len(), act)?;
        need("scan dt", self.dt.len(), act)?;
        need("scan B", self.b.len(), bc)?;
        need("scan C", self.c.len(), bc)?;
        if let Some(z) = self.z {
            need("scan z", z.len(), act)?;
        }
        need("scan u_scale", self.u_scale.len(), dim)?;
        need("scan A", self.a.len(), dim * dstate)?;
        if let Some(v) = self.dt_bias {
            need("scan dt_bias", v.len(), dim)?;
        }
        if let Some(v) = self.d_skip {
            need("scan D", v.len(), dim)?;
        }
        Ok(())
    }

    fn raw<'a>(&'a self, p: &mut Ptrs<'a>, sc: &ScanScalars, s: ScanShape) -> RawScanParams {
        RawScanParams {
            u: p.get(self.u) as *const i8,
            ldu: s.dim as i64,
            u_scale: p.get(self.u_scale) as *const f32,
            dt: p.get(self.dt) as *const i8,
            lddt: s.dim as i64,
            dt_scale: sc.dt_scale,
            dt_bias: p.opt(self.dt_bias) as *const f32,
            dt_add: sc.dt_add,
            delta_softplus: i32::from(sc.delta_softplus),
            a: p.get(self.a) as *const f32,
            b: p.get(self.b) as *const i8,
            ldb: s.dstate as i64,
            b_scale: sc.b_scale,
            c: p.get(self.c) as *const i8,
            ldc: s.dstate as i64,
            c_scale: sc.c_scale,
            d_skip: p.opt(self.d_skip) as *const f32,
            z: p.opt(self.z) as *const i8,
            ldz: s.dim as i64,
            z_scale: sc.z_scale,
            batch: s.batch as i64,
            len: s.len as i64,
            dim: s.dim as i64,
            dstate: s.dstate as i64,
            reverse: i32::from(sc.reverse),
        }
    }
}

fn scan_detail(p: &RawScanParams, ldy: usize) -> String {
    format!(
        "batch={} len={} dim={} dstate={} ldu={} lddt={} ldb={} ldc={} ldz={} ldy={ldy} reverse={} z={}",
        p.batch,
        p.len,
        p.dim,
        p.dstate,
        p.ldu,
        p.lddt,
        p.ldb,
        p.ldc,
        p.ldz,
        p.reverse,
        !p.z.is_null()
    )
}

/// Selective scan on raw pointers: `y` f16 `[batch, len, dim]` (`ldy` per token), the initial state (0 = zeros)
/// and the final state (0 = not written), both f32 `[batch, dim, dstate]`.
///
/// # Safety
/// Every pointer in `p` and the arguments must address device memory of `dev`'s context of the sizes documented
/// on `lowbit_ssm_scan_params` (inputs `batch · len` rows of their `ld*`), `y` `batch · len` rows of `ldy` f16;
/// `stream` a stream of that context (or null); nothing else may write them until the launch completes.
pub unsafe fn selective_scan_int8_raw(
    dev: &Device,
    p: &RawScanParams,
    initial_state: u64,
    final_state: u64,
    y: u64,
    ldy: usize,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st = unsafe {
            sys::lowbit_ssm_selective_scan_int8(
                p,
                initial_state as *const f32,
                final_state as *mut f32,
                y as *mut c_void,
                ldy as i64,
                stream,
            )
        };
        check_with(st, "lowbit_ssm_selective_scan_int8", || scan_detail(p, ldy))
    })
}

/// One selective-scan decode step on raw pointers (`p.len` = 1): `state` f32 `[batch, dim, dstate]` in place,
/// `y` f16 `[batch, dim]` (`ldy`).
///
/// # Safety
/// As [`selective_scan_int8_raw`], with `state` `batch · dim · dstate` writable f32.
pub unsafe fn selective_state_update_int8_raw(
    dev: &Device,
    p: &RawScanParams,
    state: u64,
    y: u64,
    ldy: usize,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st =
            unsafe { sys::lowbit_ssm_state_update_int8(p, state as *mut f32, y as *mut c_void, ldy as i64, stream) };
        check_with(st, "lowbit_ssm_state_update_int8", || scan_detail(p, ldy))
    })
}

/// Mamba1 selective scan on `dev`'s stream: contiguous inputs of shape `s`, `y` f16 bits `[batch, len, dim]`;
/// `initial_state` / `final_state` f32 `[batch, dim, dstate]` (optional).
pub fn selective_scan_int8(
    dev: &Device,
    bufs: &ScanBuffers<'_>,
    sc: &ScanScalars,
    s: ScanShape,
    initial_state: Option<&CudaSlice<f32>>,
    final_state: Option<&mut CudaSlice<f32>>,
    y: &mut CudaSlice<u16>,
) -> Result<()> {
    bufs.check(s)?;
    let states = s.batch * s.dim * s.dstate;
    if let Some(h) = initial_state {
        need("scan initial_state", h.len(), states)?;
    }
    if let Some(h) = &final_state {
        need("scan final_state", h.len(), states)?;
    }
    need("scan y", y.len(), s.batch * s.len * s.dim)?;
    let mut p = Ptrs::new(dev);
    let raw = bufs.raw(&mut p, sc, s);
    let h0 = p.opt(initial_state);
    let h1 = final_state.map_or(0, |h| p.get_mut(h));
    let yp = p.get_mut(y);
    // SAFETY: lengths checked above; every buffer lives in dev's context and the launch goes to its stream.
    unsafe { selective_scan_int8_raw(dev, &raw, h0, h1, yp, s.dim, p.stream_ptr()) }
}

/// One selective-scan decode step on `dev`'s stream: inputs `[batch, dim]` / `[batch, dstate]` (`s.len` must be
/// 1), `state` f32 `[batch, dim, dstate]` in place, `y` f16 bits `[batch, dim]`.
pub fn selective_state_update_int8(
    dev: &Device,
    bufs: &ScanBuffers<'_>,
    sc: &ScanScalars,
    s: ScanShape,
    state: &mut CudaSlice<f32>,
    y: &mut CudaSlice<u16>,
) -> Result<()> {
    if s.len != 1 {
        return Err(shape_err("lowbit_ssm_state_update_int8", format!("len = {} (a decode step has len 1)", s.len)));
    }
    bufs.check(s)?;
    need("state update state", state.len(), s.batch * s.dim * s.dstate)?;
    need("state update y", y.len(), s.batch * s.dim)?;
    let mut p = Ptrs::new(dev);
    let raw = bufs.raw(&mut p, sc, s);
    let (hp, yp) = (p.get_mut(state), p.get_mut(y));
    // SAFETY: lengths checked above; every buffer lives in dev's context and the launch goes to its stream.
    unsafe { selective_state_update_int8_raw(dev, &raw, hp, yp, s.dim, p.stream_ptr()) }
}

// ------------------------------------------------------------------------------------------------------------
// gated RMSNorm -> FWHT -> int8
// ------------------------------------------------------------------------------------------------------------

/// Scalar parameters of [`gated_rmsnorm_quant`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GatedNormConfig {
    /// Per-tensor scale of z.
    pub z_scale: f32,
    /// Channels per RMSNorm group (dividing dim); ignored without `norm`.
    pub group_size: usize,
    /// RMSNorm epsilon.
    pub eps: f32,
    /// Apply the group RMSNorm (Mamba2).
    pub norm: bool,
    /// Normalized FWHT block (power of two dividing dim; 0 or 1 = none).
    pub hadamard: usize,
    /// Static per-tensor output scale.
    pub out_scale: f32,
}

/// Gated RMSNorm → FWHT → int8 on raw pointers: `y` f16 `[rows, dim]` (`ldy`), `z` int8 (`ldz`, 0 = no gate),
/// `weight` f32 `[dim]` (0 = none) → `q` int8 `[rows, dim]` (`ldq`).
///
/// # Safety
/// Pointers must address device memory of `dev`'s context of those sizes; `stream` a stream of that context
/// (or null); nothing else may write them until the launch completes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn gated_rmsnorm_quant_raw(
    dev: &Device,
    y: u64,
    ldy: usize,
    z: u64,
    ldz: usize,
    weight: u64,
    rows: usize,
    dim: usize,
    cfg: &GatedNormConfig,
    q: u64,
    ldq: usize,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st = unsafe {
            sys::lowbit_ssm_gated_rmsnorm_quant(
                y as *const c_void,
                ldy as i64,
                z as *const i8,
                ldz as i64,
                cfg.z_scale,
                weight as *const f32,
                rows as i64,
                dim as i64,
                cfg.group_size as i64,
                cfg.eps,
                i32::from(cfg.norm),
                cfg.hadamard as i32,
                cfg.out_scale,
                q as *mut i8,
                ldq as i64,
                stream,
            )
        };
        check_with(st, "lowbit_ssm_gated_rmsnorm_quant", || {
            format!(
                "rows={rows} dim={dim} group_size={} norm={} hadamard={} out_scale={} eps={}",
                cfg.group_size, cfg.norm, cfg.hadamard, cfg.out_scale, cfg.eps
            )
        })
    })
}

/// Launches `lowbit_ssm_residual_rmsnorm_quant` (residual add in f32 → RMSNorm → FWHT → int8 with a static
/// scale; see `lowbit_kernels.h`) on `stream`: `x` `dtype` `[rows][ldx]` (0: no add), `residual` f32
/// `[rows][ldr]`, `out` f32 `[rows][ldo]` (0: not written; may equal `residual`), `gamma` `dtype` `[k]` (0: no
/// norm), `q` int8 `[rows][ldq]`.
///
/// # Safety
/// Pointers must address device memory of `dev`'s context of those sizes; `stream` a stream of that context
/// (or null); nothing else may access them until the launch completes.
#[allow(clippy::too_many_arguments)]
pub unsafe fn residual_rmsnorm_quant_raw(
    dev: &Device,
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
    dtype: OutDtype,
    stream: *mut c_void,
) -> Result<()> {
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract; the launcher validates sizes, NULLs and alignment.
        let st = unsafe {
            sys::lowbit_ssm_residual_rmsnorm_quant(
                x as *const c_void,
                ldx as i64,
                residual as *const f32,
                ldr as i64,
                out as *mut f32,
                ldo as i64,
                gamma as *const c_void,
                eps,
                hadamard as i32,
                static_scale,
                q as *mut i8,
                ldq as i64,
                rows as i64,
                k as i64,
                dtype.to_ffi(),
                stream,
            )
        };
        check_with(st, "lowbit_ssm_residual_rmsnorm_quant", || {
            format!("rows={rows} k={k} hadamard={hadamard} static_scale={static_scale} eps={eps} dtype={dtype:?}")
        })
    })
}

/// Gated RMSNorm → FWHT → int8 on `dev`'s stream: `y` f16 bits `[rows, dim]`, `z` int8 `[rows, dim]`, `weight`
/// f32 `[dim]` → `q` int8 `[rows, dim]`.
#[allow(clippy::too_many_arguments)]
pub fn gated_rmsnorm_quant(
    dev: &Device,
    y: &CudaSlice<u16>,
    z: Option<&CudaSlice<i8>>,
    weight: Option<&CudaSlice<f32>>,
    rows: usize,
    dim: usize,
    cfg: &GatedNormConfig,
    q: &mut CudaSlice<i8>,
) -> Result<()> {
    need("gated norm y", y.len(), rows * dim)?;
    if let Some(z) = z {
        need("gated norm z", z.len(), rows * dim)?;
    }
    if let Some(w) = weight {
        need("gated norm weight", w.len(), dim)?;
    }
    need("gated norm q", q.len(), rows * dim)?;
    let mut p = Ptrs::new(dev);
    let (yp, zp, wp, qp) = (p.get(y), p.opt(z), p.opt(weight), p.get_mut(q));
    // SAFETY: lengths checked above; every buffer lives in dev's context and the launch goes to its stream.
    unsafe { gated_rmsnorm_quant_raw(dev, yp, dim, zp, dim, wp, rows, dim, cfg, qp, dim, p.stream_ptr()) }
}
