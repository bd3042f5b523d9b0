//! The Mamba2 SSD kernels (Quamba2, `kernels/ssm/ssd_*.cu`) on the GPU: the chunked prefill scan
//! ([`ssd_chunk_scan`]) and the single decode step ([`ssd_state_update`]), both with int8 x / dt / B / C and
//! their scales, fp32 state and f16 output. The math and layouts are those of
//! [`lowbit_core::ssd`](lowbit_core::ssd), whose f64 references the GPU tests compare against.
//!
//! The safe functions take [`CudaSlice`]s of contiguous tensors and check every length against the
//! [`SsdShape`] first ([`CudaError::BufferSize`]; bad shapes are [`CudaError::Shape`]); the `*_raw` functions
//! take raw device pointers, row strides and a stream (PyTorch tensors) and leave the checks to the launcher.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, SyncOnDrop};
use lowbit_core::ssd::SsdShape;
use lowbit_kernels_sys as sys;

use crate::device::Device;
use crate::error::{CudaError, Result, check_with};
use crate::launch::{in_context, need};

const SCAN: &str = "lowbit_ssd_chunk_scan";
const UPDATE: &str = "lowbit_ssd_state_update";

/// Largest state size N the prefill kernel takes.
pub const SSD_MAX_DSTATE: usize = 256;

/// Which prefill kernel runs (`lowbit_ssd_variant`); results agree to rounding, only speed differs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SsdVariant {
    /// cp.async staging when x, B and C rows allow 16-byte copies, else direct loads.
    #[default]
    Auto,
    /// Direct global loads at the start of every chunk (any layout).
    Direct,
    /// The next chunk's int8 tiles staged with cp.async during the current chunk ([`CudaError::NoKernel`] unless
    /// N, P and the token strides are multiples of 16 and the int8 buffers 16-byte aligned).
    Async,
}

impl SsdVariant {
    fn to_ffi(self) -> i32 {
        (match self {
            SsdVariant::Auto => sys::LOWBIT_SSD_AUTO,
            SsdVariant::Direct => sys::LOWBIT_SSD_DIRECT,
            SsdVariant::Async => sys::LOWBIT_SSD_ASYNC,
        }) as i32
    }
}

/// The per-head / per-group parameters in device memory (f32).
#[derive(Debug, Clone, Copy)]
pub struct SsdDeviceParams<'a> {
    /// `[H·P]` per-channel x scales.
    pub x_scale: &'a CudaSlice<f32>,
    /// Scale of the dt codes.
    pub dt_scale: f32,
    /// `[H]` dt bias (none = 0).
    pub dt_bias: Option<&'a CudaSlice<f32>>,
    /// `[H]` A (negative).
    pub a: &'a CudaSlice<f32>,
    /// `[G]` B scales.
    pub b_scale: &'a CudaSlice<f32>,
    /// `[G]` C scales.
    pub c_scale: &'a CudaSlice<f32>,
    /// `[H]` skip connection (none = 0).
    pub d: Option<&'a CudaSlice<f32>>,
    /// `(lo, hi)` clamp of delta; `(0, ∞)` = none.
    pub dt_limit: (f32, f32),
}

/// The int8 activations of one launch (contiguous): prefill `x` `[B, L, H, P]`, `dt` `[B, L, H]`, `b`/`c`
/// `[B, L, G, N]`; decode the same without `L`.
#[derive(Debug, Clone, Copy)]
pub struct SsdInputs<'a> {
    /// x codes.
    pub x: &'a CudaSlice<i8>,
    /// dt codes.
    pub dt: &'a CudaSlice<i8>,
    /// B codes.
    pub b: &'a CudaSlice<i8>,
    /// C codes.
    pub c: &'a CudaSlice<i8>,
}

/// Raw device addresses of one launch (0 = NULL for the optional arrays) and the token-row strides in
/// elements (`ldx >= H·P`, `ldbc >= G·N`, `lddt >= H`), for callers that own their memory (PyTorch).
#[derive(Debug, Clone, Copy, Default)]
pub struct SsdRawArgs {
    /// x codes.
    pub x: u64,
    /// `[H·P]` f32.
    pub x_scale: u64,
    /// dt codes.
    pub dt: u64,
    /// Scale of the dt codes.
    pub dt_scale: f32,
    /// `[H]` f32 or 0.
    pub dt_bias: u64,
    /// `[H]` f32.
    pub a: u64,
    /// B codes.
    pub b: u64,
    /// `[G]` f32.
    pub b_scale: u64,
    /// C codes.
    pub c: u64,
    /// `[G]` f32.
    pub c_scale: u64,
    /// `[H]` f32 or 0.
    pub d: u64,
    /// `(lo, hi)` clamp of delta.
    pub dt_limit: (f32, f32),
    /// Elements between token rows of x.
    pub ldx: usize,
    /// Elements between token rows of B and C.
    pub ldbc: usize,
    /// Elements between token rows of dt.
    pub lddt: usize,
}

fn detail(s: &SsdShape) -> String {
    format!(
        "batch={} len={} nheads={} headdim={} ngroups={} dstate={}",
        s.batch, s.len, s.nheads, s.headdim, s.ngroups, s.dstate
    )
}

/// Shape rules of both kernels, as typed errors before anything is launched.
fn check_shape(s: &SsdShape, launcher: &'static str, prefill: bool) -> Result<()> {
    let bad = |why: &str| Err(CudaError::Shape { launcher, detail: format!("{}: {why}", detail(s)) });
    if s.batch == 0 || s.nheads == 0 || s.headdim == 0 || s.ngroups == 0 || s.dstate == 0 || (prefill && s.len == 0) {
        return bad("every size must be at least 1");
    }
    if !s.nheads.is_multiple_of(s.ngroups) {
        return bad("nheads must be a multiple of ngroups");
    }
    if prefill && s.dstate > SSD_MAX_DSTATE {
        return bad("dstate must be at most 256");
    }
    if s.batch > 65535 || s.nheads > 65535 {
        return bad("batch and nheads must be at most 65535");
    }
    Ok(())
}

fn keep<'a>(guards: &mut Vec<SyncOnDrop<'a>>, p: (u64, SyncOnDrop<'a>)) -> u64 {
    guards.push(p.1);
    p.0
}

/// Checks the lengths of the parameters and activations (`tokens` = B·L, or B for the decode step) and
/// returns the raw arguments, keeping the stream-sync guards alive in `guards`.
fn raw_args<'a>(
    dev: &'a Device,
    s: &SsdShape,
    prm: &SsdDeviceParams<'a>,
    inp: &SsdInputs<'a>,
    tokens: usize,
    guards: &mut Vec<SyncOnDrop<'a>>,
) -> Result<SsdRawArgs> {
    let (hp, gn) = (s.nheads * s.headdim, s.ngroups * s.dstate);
    need("SSD x_scale", prm.x_scale.len(), hp)?;
    need("SSD A", prm.a.len(), s.nheads)?;
    need("SSD B_scale", prm.b_scale.len(), s.ngroups)?;
    need("SSD C_scale", prm.c_scale.len(), s.ngroups)?;
    if let Some(b) = prm.dt_bias {
        need("SSD dt_bias", b.len(), s.nheads)?;
    }
    if let Some(d) = prm.d {
        need("SSD D", d.len(), s.nheads)?;
    }
    need("SSD x", inp.x.len(), tokens * hp)?;
    need("SSD dt", inp.dt.len(), tokens * s.nheads)?;
    need("SSD B", inp.b.len(), tokens * gn)?;
    need("SSD C", inp.c.len(), tokens * gn)?;
    let st = dev.stream();
    let mut p = |x: (u64, SyncOnDrop<'a>)| keep(guards, x);
    Ok(SsdRawArgs {
        x: p(inp.x.device_ptr(st)),
        x_scale: p(prm.x_scale.device_ptr(st)),
        dt: p(inp.dt.device_ptr(st)),
        dt_scale: prm.dt_scale,
        dt_bias: prm.dt_bias.map_or(0, |b| p(b.device_ptr(st))),
        a: p(prm.a.device_ptr(st)),
        b: p(inp.b.device_ptr(st)),
        b_scale: p(prm.b_scale.device_ptr(st)),
        c: p(inp.c.device_ptr(st)),
        c_scale: p(prm.c_scale.device_ptr(st)),
        d: prm.d.map_or(0, |d| p(d.device_ptr(st))),
        dt_limit: prm.dt_limit,
        ldx: hp,
        ldbc: gn,
        lddt: s.nheads,
    })
}

/// SSD prefill over whole sequences on `dev`'s stream: `y` `[B, L, H, P]` (f16 bit patterns) and, when given,
/// `final_state` `[B, H, P, N]` (f32), from the int8 inputs and `initial_state` (`[B, H, P, N]`, none = zeros).
pub fn ssd_chunk_scan(
    dev: &Device,
    s: &SsdShape,
    prm: &SsdDeviceParams<'_>,
    inp: &SsdInputs<'_>,
    initial_state: Option<&CudaSlice<f32>>,
    y: &mut CudaSlice<u16>,
    final_state: Option<&mut CudaSlice<f32>>,
) -> Result<()> {
    ssd_chunk_scan_variant(dev, s, prm, inp, initial_state, y, final_state, SsdVariant::Auto)
}

/// [`ssd_chunk_scan`] with a forced kernel variant (tests and benchmarks).
#[allow(clippy::too_many_arguments)]
pub fn ssd_chunk_scan_variant(
    dev: &Device,
    s: &SsdShape,
    prm: &SsdDeviceParams<'_>,
    inp: &SsdInputs<'_>,
    initial_state: Option<&CudaSlice<f32>>,
    y: &mut CudaSlice<u16>,
    final_state: Option<&mut CudaSlice<f32>>,
    variant: SsdVariant,
) -> Result<()> {
    check_shape(s, SCAN, true)?;
    let tokens = s.batch * s.len;
    need("SSD y", y.len(), tokens * s.nheads * s.headdim)?;
    if let Some(h0) = initial_state {
        need("SSD initial_state", h0.len(), s.state_len())?;
    }
    if let Some(hf) = &final_state {
        need("SSD final_state", hf.len(), s.state_len())?;
    }
    dev.bind_to_thread()?;
    let st = dev.stream();
    let mut guards = Vec::new();
    let args = raw_args(dev, s, prm, inp, tokens, &mut guards)?;
    let h0 = initial_state.map_or(0, |h| keep(&mut guards, h.device_ptr(st)));
    let (yp, yg) = y.device_ptr_mut(st);
    let (hf, hg) = match final_state {
        Some(h) => {
            let (p, g) = h.device_ptr_mut(st);
            (p, Some(g))
        }
        None => (0, None),
    };
    // SAFETY: every buffer was checked to hold its shape's elements and lives in dev's context, current on this
    // thread; the launch is ordered on dev's stream, whose guards are held until it is enqueued.
    let r = unsafe { launch_scan(s, &args, h0, yp, hf, variant, st.cu_stream().cast()) };
    drop((guards, yg, hg));
    r
}

/// One SSD decode step on `dev`'s stream: `state` `[B, H, P, N]` updated in place, `y` `[B, H, P]` (f16 bit
/// patterns), from int8 inputs `x` `[B, H, P]`, `dt` `[B, H]`, `B`/`C` `[B, G, N]` (`s.len` is ignored).
pub fn ssd_state_update(
    dev: &Device,
    s: &SsdShape,
    prm: &SsdDeviceParams<'_>,
    inp: &SsdInputs<'_>,
    state: &mut CudaSlice<f32>,
    y: &mut CudaSlice<u16>,
) -> Result<()> {
    check_shape(s, UPDATE, false)?;
    need("SSD y", y.len(), s.batch * s.nheads * s.headdim)?;
    need("SSD state", state.len(), s.state_len())?;
    dev.bind_to_thread()?;
    let st = dev.stream();
    let mut guards = Vec::new();
    let args = raw_args(dev, s, prm, inp, s.batch, &mut guards)?;
    let (sp, sg) = state.device_ptr_mut(st);
    let (yp, yg) = y.device_ptr_mut(st);
    // SAFETY: as in ssd_chunk_scan.
    let r = unsafe { launch_update(s, &args, sp, yp, st.cu_stream().cast()) };
    drop((guards, sg, yg));
    r
}

/// [`ssd_chunk_scan`] on raw device addresses and a caller's stream (PyTorch: `data_ptr()` and
/// `torch.cuda.current_stream().cuda_stream`). `initial_state` / `final_state` may be 0. Asynchronous.
///
/// # Safety
/// Every non-zero address must point to live memory of `dev` holding the documented elements for `s` with the
/// strides of `args` (`y` and the states contiguous), not used by other work until the launch completes;
/// `stream` must be a valid stream of `dev`'s primary context (or null).
pub unsafe fn ssd_chunk_scan_raw(
    dev: &Device,
    s: &SsdShape,
    args: &SsdRawArgs,
    initial_state: u64,
    y: u64,
    final_state: u64,
    stream: *mut c_void,
) -> Result<()> {
    check_shape(s, SCAN, true)?;
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract.
        unsafe { launch_scan(s, args, initial_state, y, final_state, SsdVariant::Auto, stream) }
    })
}

/// [`ssd_state_update`] on raw device addresses and a caller's stream. Asynchronous.
///
/// # Safety
/// As [`ssd_chunk_scan_raw`]; `state` must be non-zero.
pub unsafe fn ssd_state_update_raw(
    dev: &Device,
    s: &SsdShape,
    args: &SsdRawArgs,
    state: u64,
    y: u64,
    stream: *mut c_void,
) -> Result<()> {
    check_shape(s, UPDATE, false)?;
    in_context(dev, || {
        // SAFETY: forwarded from this function's contract.
        unsafe { launch_update(s, args, state, y, stream) }
    })
}

/// # Safety
/// The pointers must satisfy the launcher's contract (see `ssd_chunk_scan_raw`).
unsafe fn launch_scan(
    s: &SsdShape,
    a: &SsdRawArgs,
    h0: u64,
    y: u64,
    hf: u64,
    variant: SsdVariant,
    stream: *mut c_void,
) -> Result<()> {
    // SAFETY: per the caller's contract; the launcher validates shapes, NULLs and alignment before launching.
    let st = unsafe {
        sys::lowbit_ssd_chunk_scan(
            a.x as *const i8,
            a.x_scale as *const f32,
            a.dt as *const i8,
            a.dt_scale,
            a.dt_bias as *const f32,
            a.a as *const f32,
            a.b as *const i8,
            a.b_scale as *const f32,
            a.c as *const i8,
            a.c_scale as *const f32,
            a.d as *const f32,
            h0 as *const f32,
            a.dt_limit.0,
            a.dt_limit.1,
            y as *mut c_void,
            hf as *mut f32,
            s.batch as i64,
            s.len as i64,
            s.nheads as i64,
            s.headdim as i64,
            s.ngroups as i64,
            s.dstate as i64,
            a.ldx as i64,
            a.ldbc as i64,
            a.lddt as i64,
            variant.to_ffi(),
            stream,
        )
    };
    check_with(st, SCAN, || {
        format!("{} ldx={} ldbc={} lddt={} dt_limit={:?} {variant:?}", detail(s), a.ldx, a.ldbc, a.lddt, a.dt_limit)
    })
}

/// # Safety
/// The pointers must satisfy the launcher's contract (see `ssd_state_update_raw`).
unsafe fn launch_update(s: &SsdShape, a: &SsdRawArgs, state: u64, y: u64, stream: *mut c_void) -> Result<()> {
    // SAFETY: per the caller's contract; the launcher validates shapes, NULLs and alignment before launching.
    let st = unsafe {
        sys::lowbit_ssd_state_update(
            state as *mut f32,
            a.x as *const i8,
            a.x_scale as *const f32,
            a.dt as *const i8,
            a.dt_scale,
            a.dt_bias as *const f32,
            a.a as *const f32,
            a.b as *const i8,
            a.b_scale as *const f32,
            a.c as *const i8,
            a.c_scale as *const f32,
            a.d as *const f32,
            a.dt_limit.0,
            a.dt_limit.1,
            y as *mut c_void,
            s.batch as i64,
            s.nheads as i64,
            s.headdim as i64,
            s.ngroups as i64,
            s.dstate as i64,
            a.ldx as i64,
            a.ldbc as i64,
            a.lddt as i64,
            stream,
        )
    };
    check_with(st, UPDATE, || {
        format!("{} ldx={} ldbc={} lddt={} dt_limit={:?}", detail(s), a.ldx, a.ldbc, a.lddt, a.dt_limit)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shape(batch: usize, len: usize, nheads: usize, headdim: usize, ngroups: usize, dstate: usize) -> SsdShape {
        SsdShape { batch, len, nheads, headdim, ngroups, dstate }
    }

    /// The launchers' host-side checks run before any CUDA call, so bad arguments are typed errors even without
    /// a GPU (CI).
    #[test]
    fn launchers_reject_bad_arguments_without_a_gpu() {
        let fake = 4096u64;
        let args = SsdRawArgs {
            x: fake,
            x_scale: fake,
            dt: fake,
            dt_scale: 0.1,
            a: fake,
            b: fake,
            b_scale: fake,
            c: fake,
            c_scale: fake,
            dt_limit: (0.0, f32::INFINITY),
            ldx: 8,
            ldbc: 16,
            lddt: 2,
            ..Default::default()
        };
        let s = shape(1, 3, 2, 4, 1, 16);
        let null = std::ptr::null_mut();
        // SAFETY: every case is rejected by host-side validation before a pointer is dereferenced or CUDA is
        // called.
        let scan = |s: &SsdShape, a: &SsdRawArgs, y: u64| unsafe { launch_scan(s, a, 0, y, 0, SsdVariant::Auto, null) };
        assert!(matches!(scan(&s, &args, 0), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(scan(&s, &SsdRawArgs { x: 0, ..args }, fake), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(scan(&shape(1, 3, 3, 4, 2, 16), &args, fake), Err(CudaError::Shape { .. })));
        assert!(matches!(scan(&shape(1, 3, 2, 4, 1, 257), &args, fake), Err(CudaError::Shape { .. })));
        assert!(matches!(scan(&shape(1, 0, 2, 4, 1, 16), &args, fake), Err(CudaError::Shape { .. })));
        assert!(matches!(scan(&s, &SsdRawArgs { ldx: 7, ..args }, fake), Err(CudaError::Shape { .. })));
        assert!(matches!(scan(&s, &SsdRawArgs { ldbc: 15, ..args }, fake), Err(CudaError::Shape { .. })));
        assert!(matches!(scan(&s, &SsdRawArgs { a: fake + 2, ..args }, fake), Err(CudaError::Alignment { .. })));
        assert!(matches!(scan(&s, &args, fake + 1), Err(CudaError::Alignment { .. })));
        let e = scan(&s, &SsdRawArgs { dt_limit: (1.0, 0.5), ..args }, fake).unwrap_err();
        assert!(matches!(e, CudaError::InvalidArgument { .. }), "{e}");
        assert!(e.to_string().starts_with("lowbit_ssd_chunk_scan: invalid argument: batch=1 len=3"), "{e}");
        // SsdVariant::Async needs 16-byte rows: P = 4 (ldx = 8) cannot take it.
        // SAFETY: as above.
        let e = unsafe { launch_scan(&s, &args, 0, fake, 0, SsdVariant::Async, null) }.unwrap_err();
        assert!(matches!(e, CudaError::NoKernel { .. }), "{e}");
        // SAFETY: as above.
        let upd = |state: u64, a: &SsdRawArgs| unsafe { launch_update(&s, a, state, fake, null) };
        assert!(matches!(upd(0, &args), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(upd(fake, &SsdRawArgs { lddt: 1, ..args }), Err(CudaError::Shape { .. })));
        assert!(matches!(upd(fake + 2, &args), Err(CudaError::Alignment { .. })));
        // The Rust-side shape check names the launcher too.
        let e = check_shape(&shape(1, 3, 3, 4, 2, 16), SCAN, true).unwrap_err();
        assert!(e.to_string().contains("nheads must be a multiple of ngroups"), "{e}");
        check_shape(&shape(1, 0, 2, 4, 1, 512), UPDATE, false).unwrap();
    }
}
