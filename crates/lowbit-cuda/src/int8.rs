//! int8 tensor-core GEMMs (`kernels/int8/`): W8A8 and W4A8 with a fused epilogue, and the activation
//! quantization kernel that produces their int8 inputs.
//!
//! [`Int8Gemm`] holds one weight on the device, int8 ([`W8Weight`]) or 4-bit ([`W4A8Weight`], expanded to int8
//! inside the kernel). [`Int8Gemm::plan`] checks a problem (CUTLASS-style `can_implement`) and sizes the
//! split-K workspace; [`Int8Gemm::run`] launches on the device's stream, [`Int8Gemm::run_raw`] on any stream
//! with raw pointers (PyTorch). The math, exact in int32 before the epilogue:
//!
//! `y[m, n] = (((f32(Σ_k x[m, k] · wq[n, k]) · rs[m]) · cs[n] + rc[m] · cc[n]) + rc2[m] · cc2[n]) + bias[n]`
//!
//! with `cs` defaulting to the weight's channel scales; the CPU oracle is [`lowbit_core::int8`].
//! [`act_quant`] quantizes f16 / bf16 activations to int8 with per-token scales, optionally fused with a
//! residual add, RMSNorm and a Hadamard rotation.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop};
use lowbit_core::int8::{I8Out, W4A8Weight, W8Weight, pack_w4, tile_bip2, tile_weight};
use lowbit_kernels_sys as sys;

use crate::buffer::{OutDtype, upload};
use crate::device::Device;
use crate::error::{CudaError, Result, check_with};

const LAUNCHER: &str = "lowbit_i8_gemm";

/// Kernel path of the int8 GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum I8Path {
    /// `mma.sync` m16n8k32 (IMMA), any sm_80+ GPU.
    Mma,
    /// `wgmma` m64nNk32 s8 (sm_90a builds on Hopper only).
    Wgmma,
    /// Small-M weight streaming on `mma.sync` (any sm_80+ GPU): M ≤ 16; W4 per-channel or with groups of a
    /// multiple of 128 columns; packed bipolar codes; `bx` 8 or 16 (≥ M). The automatic plan takes it at M ≤ 16 except
    /// where it takes `Ws` (9 ≤ M ≤ 16 on Hopper, see there).
    Stream,
    /// The warp-specialized persistent `wgmma` kernel for large M (sm_90a, W8 and W4 weights, `bx` 64, 128 or 256;
    /// split-K only where its own plan finds the output tiles leave SMs idle, never forced): a producer warp fills a
    /// shared-memory ring by bulk copies / TMA, two consumer warpgroups (W4: expanded to int8 in shared memory). The
    /// automatic plan takes it for M ≥ 256 where it runs, and at 9 ≤ M ≤ 16 for W8 (and W4 where the 128-row tiles fill
    /// 60–100% of the SMs), ahead of the streaming kernel there (kernels/int8/NOTES.md v15).
    Ws,
}

/// Launch overrides (tests, benchmarks); `None` = automatic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct I8Config {
    /// Kernel path (automatic: wgmma on Hopper, mma.sync elsewhere).
    pub path: Option<I8Path>,
    /// Activation rows per CTA: wgmma 8, 16, 64, 128, 256 (256: W8, or W4 on the `Ws` path); mma.sync 16 or 64.
    pub bx: Option<u32>,
    /// Split-K factor.
    pub splits: Option<u32>,
}

impl I8Config {
    fn to_ffi(self) -> sys::lowbit_i8_config {
        sys::lowbit_i8_config {
            path: match self.path {
                None => sys::LOWBIT_I8_PATH_AUTO as i32,
                Some(I8Path::Mma) => sys::LOWBIT_I8_PATH_MMA as i32,
                Some(I8Path::Wgmma) => sys::LOWBIT_I8_PATH_WGMMA as i32,
                Some(I8Path::Stream) => sys::LOWBIT_I8_PATH_STREAM as i32,
                Some(I8Path::Ws) => sys::LOWBIT_I8_PATH_WS as i32,
            },
            bx: self.bx.unwrap_or(0) as i32,
            splits: self.splits.unwrap_or(0) as i32,
        }
    }
}

/// A checked problem: what [`Int8Gemm::run`] launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct I8Plan {
    /// Rows of X and Y.
    pub m: usize,
    /// Workspace bytes (split-K accumulator and counters; 0 = none).
    pub workspace_bytes: usize,
    /// Launch overrides.
    pub config: I8Config,
}

/// Per-row (activation) scales of the epilogue.
#[derive(Debug, Clone, Copy)]
pub enum RowScale<'a> {
    /// One scale per row (dynamic per-token quantization), `[M]` f32 on the device.
    PerToken(&'a CudaSlice<f32>),
    /// One calibrated scale for every row.
    PerTensor(f32),
}

/// The fused epilogue, device vectors borrowed for the launch.
#[derive(Debug, Clone, Copy)]
pub struct I8Epilogue<'a> {
    /// Output type.
    pub out: I8Out,
    /// Row scales.
    pub row_scale: RowScale<'a>,
    /// Column scales `[N]`; `None` = the weight's channel scales.
    pub col_scale: Option<&'a CudaSlice<f32>>,
    /// Rank-1 correction `rc[M] · cc[N]`.
    pub correction: Option<(&'a CudaSlice<f32>, &'a CudaSlice<f32>)>,
    /// Second rank-1 correction `rc2[M] · cc2[N]`, added after the first (the bipolar GEMM's int8 mapping of
    /// W8A8 needs two); `None` costs nothing.
    pub correction2: Option<(&'a CudaSlice<f32>, &'a CudaSlice<f32>)>,
    /// Bias `[N]`.
    pub bias: Option<&'a CudaSlice<f32>>,
    /// Output scale of [`I8Out::I8`] (when `out_scales` is `None`).
    pub out_scale: f32,
    /// `[N]` per-column output scales of [`I8Out::I8`].
    pub out_scales: Option<&'a CudaSlice<f32>>,
}

impl<'a> I8Epilogue<'a> {
    /// Scales only (`y = acc · rs[m] · cs[n]`) into `out`.
    pub fn scaled(out: I8Out, row_scale: RowScale<'a>) -> Self {
        Self {
            out,
            row_scale,
            col_scale: None,
            correction: None,
            correction2: None,
            bias: None,
            out_scale: 1.0,
            out_scales: None,
        }
    }

    /// The lengths of the vectors it holds (what [`check_epilogue_lens`] checks).
    fn lens(&self) -> EpilogueLens {
        EpilogueLens {
            row_scale: match self.row_scale {
                RowScale::PerToken(s) => Some(s.len()),
                RowScale::PerTensor(_) => None,
            },
            col_scale: self.col_scale.map(|c| c.len()),
            correction: self.correction.map(|(r, c)| (r.len(), c.len())),
            correction2: self.correction2.map(|(r, c)| (r.len(), c.len())),
            bias: self.bias.map(|b| b.len()),
            out_scales: self.out_scales.map(|o| o.len()),
        }
    }
}

/// Element counts of an epilogue's optional vectors (`None` = absent).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpilogueLens {
    /// Per-token row scales.
    pub row_scale: Option<usize>,
    /// Column scales.
    pub col_scale: Option<usize>,
    /// First rank-1 correction (row, column).
    pub correction: Option<(usize, usize)>,
    /// Second rank-1 correction (row, column).
    pub correction2: Option<(usize, usize)>,
    /// Bias.
    pub bias: Option<usize>,
    /// Per-column int8 output scales.
    pub out_scales: Option<usize>,
}

/// Checks the epilogue's vectors against `m` rows and `n` columns: every row vector needs `≥ m` elements, every
/// column vector `≥ n` ([`CudaError::BufferSize`] naming the vector otherwise). Host-only.
pub fn check_epilogue_lens(l: &EpilogueLens, m: usize, n: usize) -> Result<()> {
    let want = |what: &'static str, have: Option<usize>, want: usize| -> Result<()> {
        match have {
            Some(h) if h < want => Err(CudaError::BufferSize { what, expected: want, got: h }),
            _ => Ok(()),
        }
    };
    want("row scales", l.row_scale, m)?;
    want("column scales", l.col_scale, n)?;
    want("row correction", l.correction.map(|c| c.0), m)?;
    want("column correction", l.correction.map(|c| c.1), n)?;
    want("second row correction", l.correction2.map(|c| c.0), m)?;
    want("second column correction", l.correction2.map(|c| c.1), n)?;
    want("bias", l.bias, n)?;
    want("output scales", l.out_scales, n)
}

/// Bytes per output element of `out`.
pub fn out_elem_bytes(out: I8Out) -> usize {
    match out {
        I8Out::F16 | I8Out::Bf16 => 2,
        I8Out::I8 => 1,
        I8Out::I32 => 4,
    }
}

fn out_ffi(out: I8Out) -> i32 {
    (match out {
        I8Out::F16 => sys::LOWBIT_I8_OUT_F16,
        I8Out::Bf16 => sys::LOWBIT_I8_OUT_BF16,
        I8Out::I8 => sys::LOWBIT_I8_OUT_I8,
        I8Out::I32 => sys::LOWBIT_I8_OUT_I32,
    }) as i32
}

/// An int8-GEMM weight resident on one device. `clone` copies its device buffers on the device's stream (cudarc's
/// `CudaSlice::clone`: panics when the copy fails); benchmarks use it for weight rotation copies.
#[derive(Debug, Clone)]
pub struct Int8Gemm {
    codes: CudaSlice<u8>,
    group_scales: Option<CudaSlice<u8>>,
    scales: CudaSlice<f32>,
    w4: bool,
    /// Packed bipolar codes for the streaming kernel (`LOWBIT_I8_BIP2` / `BIP4`): 2 or 4; 0 = none.
    bip: u32,
    n: usize,
    k: usize,
    group_len: usize,
    ordinal: usize,
    sm_count: i32,
    weight_bytes: usize,
}

impl Int8Gemm {
    /// Uploads an int8 weight (W8A8). K must be a multiple of 16.
    pub fn new_w8(dev: &Device, w: &W8Weight) -> Result<Self> {
        w.validate()?;
        if !w.k.is_multiple_of(16) || w.k == 0 {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!("W8 k = {} (need a multiple of 16)", w.k),
            });
        }
        let bytes: Vec<u8> = w.codes.iter().map(|&c| c as u8).collect();
        let tiled = tile_weight(&bytes, w.n, w.k, false)?;
        Self::upload(dev, &tiled, None, &w.scales, false, w.n, w.k, w.k, w.n * w.k + 4 * w.n)
    }

    /// Uploads exact int8 operand codes over the full two's-complement range (−128 included), `[n, k]` row-major,
    /// with `n` channel scales: for callers whose codes are exact integers of another format rather than the
    /// symmetric quantizer's ±127 (the bipolar GEMM's int8 mapping). K must be a multiple of 16.
    pub fn new_w8_codes(dev: &Device, codes: &[i8], n: usize, k: usize, scales: &[f32]) -> Result<Self> {
        if codes.len() != n * k || scales.len() != n || n == 0 {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!("W8 codes {} / scales {} for n = {n}, k = {k}", codes.len(), scales.len()),
            });
        }
        if !k.is_multiple_of(16) || k == 0 {
            return Err(CudaError::Shape { launcher: LAUNCHER, detail: format!("W8 k = {k} (need a multiple of 16)") });
        }
        let bytes: Vec<u8> = codes.iter().map(|&c| c as u8).collect();
        let tiled = tile_weight(&bytes, n, k, false)?;
        Self::upload(dev, &tiled, None, scales, false, n, k, k, n * k + 4 * n)
    }

    /// Uploads a 4-bit weight (W4A8, per-channel or grouped). K must be a multiple of 32.
    pub fn new_w4(dev: &Device, w: &W4A8Weight) -> Result<Self> {
        w.validate()?;
        let bytes: Vec<u8> = w.packed.iter().flat_map(|v| v.to_le_bytes()).collect();
        let tiled = tile_weight(&bytes, w.n, w.k, true)?;
        let gs = if w.group.is_some() { Some(w.group_scales.as_slice()) } else { None };
        Self::upload(dev, &tiled, gs, &w.scales, true, w.n, w.k, w.group.unwrap_or(w.k), w.storage_bytes())
    }

    /// Uploads a `bits`-bit bipolar weight (`bits ∈ 1..=4`) as packed unsigned codes `u` (`[n, k]` row-major) with
    /// `n` channel scales, for the small-M streaming kernel only (`M ≤ 16`; larger `M` or another path is
    /// [`CudaError::NoKernel`]): 1- and 2-bit codes go to the 2-bit format (`LOWBIT_I8_BIP2`, [`tile_bip2`]), 3- and
    /// 4-bit codes to the 4-bit one (`LOWBIT_I8_BIP4`, the W4 layout). The kernel multiplies the codes themselves:
    /// the accumulator equals that of [`Self::new_w8_codes`] with the codes `u` as int8 (the bipolar GEMM's int8
    /// mapping at decode, `kernels/int8/NOTES.md` v10 / v21). K must be a multiple of 32.
    pub fn new_bipolar_codes(
        dev: &Device,
        codes: &[u8],
        bits: u32,
        n: usize,
        k: usize,
        scales: &[f32],
    ) -> Result<Self> {
        if codes.len() != n * k || scales.len() != n || n == 0 {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!("bipolar codes {} / scales {} for n = {n}, k = {k}", codes.len(), scales.len()),
            });
        }
        if !(1..=4).contains(&bits) {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("bipolar weight bits {bits} (packed streaming formats hold 1..=4)"),
            });
        }
        if !k.is_multiple_of(32) || k == 0 {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!("bipolar k = {k} (need a multiple of 32)"),
            });
        }
        if let Some(i) = codes.iter().position(|&u| u as u32 >= 1 << bits) {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("bipolar code {} at {i} does not fit {bits} bits", codes[i]),
            });
        }
        let packed_bits = if bits <= 2 { 2 } else { 4 };
        let tiled = if packed_bits == 2 {
            tile_bip2(codes, n, k)?
        } else {
            // pack_w4 stores q + 8 for q in -8..=7: pass q = u - 8.
            let q: Vec<i8> = codes.iter().map(|&c| (c as i32 - 8) as i8).collect();
            let bytes: Vec<u8> = pack_w4(&q, n, k)?.iter().flat_map(|v| v.to_le_bytes()).collect();
            tile_weight(&bytes, n, k, true)?
        };
        let bytes = tiled.len() + 4 * n;
        let mut g = Self::upload(dev, &tiled, None, scales, false, n, k, k, bytes)?;
        g.bip = packed_bits;
        Ok(g)
    }

    #[allow(clippy::too_many_arguments)]
    fn upload(
        dev: &Device,
        codes: &[u8],
        gs: Option<&[u8]>,
        scales: &[f32],
        w4: bool,
        n: usize,
        k: usize,
        group_len: usize,
        weight_bytes: usize,
    ) -> Result<Self> {
        if n > i32::MAX as usize || k > i32::MAX as usize {
            return Err(CudaError::Shape { launcher: LAUNCHER, detail: format!("n = {n}, k = {k} exceed 2^31 - 1") });
        }
        let g = Self {
            codes: upload(dev, codes)?,
            group_scales: gs.map(|g| upload(dev, g)).transpose()?,
            scales: upload(dev, scales)?,
            w4,
            bip: 0,
            n,
            k,
            group_len,
            ordinal: dev.ordinal(),
            sm_count: dev.info().sm_count as i32,
            weight_bytes,
        };
        dev.synchronize()?;
        Ok(g)
    }

    /// `(N, K)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// Whether the weight is 4-bit (W4A8).
    pub fn is_w4(&self) -> bool {
        self.w4
    }

    /// Bytes of the weight as stored (codes, group and channel scales).
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// The weight's channel scales on the device (`[N]`).
    pub fn channel_scales(&self) -> &CudaSlice<f32> {
        &self.scales
    }

    /// The device address of the channel scales (`[N]` f32) for [`RawEpilogue::cs`] in [`Self::run_raw`]. They
    /// are written once, synchronously, when the weight is uploaded, and launches only read them.
    pub fn channel_scales_ptr(&self, dev: &Device) -> Result<u64> {
        self.check_device(dev)?;
        dev.bind_to_thread()?;
        let (p, _guard) = self.scales.device_ptr(dev.stream());
        Ok(p)
    }

    fn ffi(&self, codes: u64, gs: u64) -> sys::lowbit_i8_weight {
        sys::lowbit_i8_weight {
            format: match (self.bip, self.w4) {
                (2, _) => sys::LOWBIT_I8_BIP2,
                (4, _) => sys::LOWBIT_I8_BIP4,
                (_, true) => sys::LOWBIT_I8_W4,
                _ => sys::LOWBIT_I8_W8,
            } as i32,
            n: self.n as i32,
            k: self.k as i32,
            codes: codes as *const c_void,
            group_scales: gs as *const u8,
            group_len: self.group_len as i32,
        }
    }

    fn check_device(&self, dev: &Device) -> Result<()> {
        dev.check_owner(self.ordinal, LAUNCHER)
    }

    /// Checks that the kernels implement `m` rows with `config`; returns the plan with its workspace size.
    pub fn plan(&self, dev: &Device, m: usize, config: I8Config) -> Result<I8Plan> {
        self.check_device(dev)?;
        if m == 0 || m > i32::MAX as usize {
            return Err(CudaError::Shape { launcher: LAUNCHER, detail: format!("m = {m} (need 1..=2^31-1)") });
        }
        if config.splits == Some(0) || config.bx == Some(0) {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("config {config:?}: bx and splits must be positive"),
            });
        }
        dev.bind_to_thread()?;
        let w = self.ffi(1 << 12, if self.group_scales.is_some() { 1 << 12 } else { 0 });
        let cfg = config.to_ffi();
        // SAFETY: pure host planning on the descriptor's integers (the pointers are placeholders that are
        // only checked for alignment / nullness, never dereferenced); may query the current device.
        let bytes = unsafe { sys::lowbit_i8_gemm_workspace_bytes(&w, m as i64, &cfg, self.sm_count) };
        if bytes < 0 {
            if self.bip != 0 && (m > 16 || !matches!(config.path, None | Some(I8Path::Stream))) {
                return Err(CudaError::NoKernel {
                    launcher: LAUNCHER,
                    detail: format!(
                        "packed {}-bit bipolar weight at m = {m}, {config:?}: the streaming kernel only (m <= 16)",
                        self.bip
                    ),
                });
            }
            if config.path == Some(I8Path::Wgmma) && !wgmma_available(dev)? {
                return Err(CudaError::NoKernel {
                    launcher: LAUNCHER,
                    detail: format!("the wgmma path on {} (needs sm_90a code on an sm_90 GPU)", dev.info().sm_name()),
                });
            }
            return Err(CudaError::InvalidArgument { launcher: LAUNCHER, detail: format!("m={m} config={config:?}") });
        }
        Ok(I8Plan { m, workspace_bytes: bytes as usize, config })
    }

    /// A zeroed workspace for `plan` (`None` when it needs none). Reusable across calls of one stream.
    pub fn workspace(&self, dev: &Device, plan: &I8Plan) -> Result<Option<CudaSlice<u8>>> {
        if plan.workspace_bytes == 0 {
            return Ok(None);
        }
        dev.bind_to_thread()?;
        Ok(Some(dev.stream().alloc_zeros::<u8>(plan.workspace_bytes + 256)?))
    }

    /// `y = epilogue(x · Wqᵀ)` on the device's stream: `x` is `[M, K]` int8 (row-major), `y` `[M, N]` of the
    /// epilogue's output type (`Y` must have that element size: `u16` for f16 / bf16, `i8`, `i32`).
    /// Asynchronous. The workspace comes from [`Self::workspace`] for this plan.
    #[allow(clippy::too_many_arguments)]
    pub fn run<'a, Y: DeviceRepr>(
        &'a self,
        dev: &'a Device,
        x: &'a CudaSlice<i8>,
        m: usize,
        epi: &I8Epilogue<'a>,
        y: &mut CudaSlice<Y>,
        config: I8Config,
        workspace: Option<&mut CudaSlice<u8>>,
    ) -> Result<()> {
        let plan = self.plan(dev, m, config)?;
        let esize = out_elem_bytes(epi.out);
        if std::mem::size_of::<Y>() != esize {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!(
                    "output {:?} has {esize}-byte elements, y has {}-byte",
                    epi.out,
                    std::mem::size_of::<Y>()
                ),
            });
        }
        for (what, have, want) in [("int8 GEMM x", x.len(), m * self.k), ("int8 GEMM y", y.len(), m * self.n)] {
            if have < want {
                return Err(CudaError::BufferSize { what, expected: want, got: have });
            }
        }
        check_epilogue_lens(&epi.lens(), m, self.n)?;
        let have = workspace.as_ref().map_or(0, |w| w.len());
        if have < plan.workspace_bytes {
            return Err(CudaError::BufferSize {
                what: "int8 GEMM workspace",
                expected: plan.workspace_bytes,
                got: have,
            });
        }
        dev.bind_to_thread()?;
        let stream = dev.stream();
        let mut guards: Vec<SyncOnDrop<'_>> = Vec::new();
        let mut ptr = |p: (u64, SyncOnDrop<'a>)| keep(&mut guards, p);
        let (rs, rs_val) = match epi.row_scale {
            RowScale::PerToken(s) => (ptr(s.device_ptr(stream)), 0.0),
            RowScale::PerTensor(v) => (0, v),
        };
        let cs = ptr(epi.col_scale.unwrap_or(&self.scales).device_ptr(stream));
        let (rc, cc) = match epi.correction {
            Some((a, b)) => (ptr(a.device_ptr(stream)), ptr(b.device_ptr(stream))),
            None => (0, 0),
        };
        let (rc2, cc2) = match epi.correction2 {
            Some((a, b)) => (ptr(a.device_ptr(stream)), ptr(b.device_ptr(stream))),
            None => (0, 0),
        };
        let bias = epi.bias.map_or(0, |b| ptr(b.device_ptr(stream)));
        let os = epi.out_scales.map_or(0, |o| ptr(o.device_ptr(stream)));
        let xp = ptr(x.device_ptr(stream));
        let (yp, yg) = y.device_ptr_mut(stream);
        let (wsp, wsg) = match workspace {
            Some(ws) => {
                let (p, g) = ws.device_ptr_mut(stream);
                (p.next_multiple_of(256), Some(g))
            }
            None => (0, None),
        };
        let raw = RawEpilogue { out: epi.out, rs, rs_val, cs, rc, cc, bias, out_scale: epi.out_scale, os, rc2, cc2 };
        // SAFETY: every buffer length was checked above against the plan's sizes; all are allocations of
        // `dev`'s context (current on this thread) and the launch goes to its stream; the guards keep them
        // ordered on that stream; y is borrowed mutably so it aliases nothing.
        let r = unsafe {
            self.run_raw(dev, xp, self.k, &raw, yp, self.n, &plan, wsp, plan.workspace_bytes, stream.cu_stream().cast())
        };
        drop((yg, wsg, guards));
        r
    }

    /// Launch with raw device pointers on any stream (PyTorch: `data_ptr()`, the current stream).
    ///
    /// # Safety
    /// - `x` addresses `plan.m` rows of `ldx >= K` int8 (16-byte aligned rows), `y` `plan.m` rows of
    ///   `ldy >= N` elements of the output type; the epilogue's non-zero pointers address `[M]` / `[N]` f32;
    ///   `workspace` holds `workspace_bytes >= plan.workspace_bytes` bytes, zero before its first use, not used
    ///   concurrently by another launch; all in `dev`'s primary context;
    /// - `stream` is a valid stream of that context (or null) and `self` outlives the launch.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_raw(
        &self,
        dev: &Device,
        x: u64,
        ldx: usize,
        epi: &RawEpilogue,
        y: u64,
        ldy: usize,
        plan: &I8Plan,
        workspace: u64,
        workspace_bytes: usize,
        stream: *mut c_void,
    ) -> Result<()> {
        self.check_device(dev)?;
        dev.bind_to_thread()?;
        let stream_ref = dev.stream();
        let (cp, cg) = self.codes.device_ptr(stream_ref);
        let gs = self.group_scales.as_ref().map(|g| g.device_ptr(stream_ref));
        let w = self.ffi(cp, gs.as_ref().map_or(0, |g| g.0));
        let e = sys::lowbit_i8_epilogue {
            out_dtype: out_ffi(epi.out),
            row_scale: epi.rs as *const f32,
            row_scale_value: epi.rs_val,
            col_scale: epi.cs as *const f32,
            row_corr: epi.rc as *const f32,
            col_corr: epi.cc as *const f32,
            bias: epi.bias as *const f32,
            out_scale: epi.out_scale,
            out_scales: epi.os as *const f32,
            row_corr2: epi.rc2 as *const f32,
            col_corr2: epi.cc2 as *const f32,
        };
        let cfg = plan.config.to_ffi();
        // SAFETY: per this function's contract; the launcher validates sizes, nullness and alignment.
        let status = unsafe {
            sys::lowbit_i8_gemm(
                &w,
                x as *const i8,
                ldx as i64,
                plan.m as i64,
                &e,
                y as *mut c_void,
                ldy as i64,
                workspace as *mut c_void,
                workspace_bytes as i64,
                &cfg,
                self.sm_count,
                stream,
            )
        };
        drop((cg, gs));
        check_with(status, LAUNCHER, || {
            format!(
                "m={} n={} k={} {} out={:?} ldx={ldx} ldy={ldy} {:?}",
                plan.m,
                self.n,
                self.k,
                match (self.bip, self.w4) {
                    (2, _) => "BIP2",
                    (4, _) => "BIP4",
                    (_, true) => "W4",
                    _ => "W8",
                },
                epi.out,
                plan.config
            )
        })
    }
}

fn keep<'a>(guards: &mut Vec<SyncOnDrop<'a>>, p: (u64, SyncOnDrop<'a>)) -> u64 {
    guards.push(p.1);
    p.0
}

/// The epilogue with raw device pointers (0 = absent) for [`Int8Gemm::run_raw`].
#[derive(Debug, Clone, Copy)]
pub struct RawEpilogue {
    /// Output type.
    pub out: I8Out,
    /// `[M]` row scales, or 0 for `rs_val`.
    pub rs: u64,
    /// Per-tensor row scale.
    pub rs_val: f32,
    /// `[N]` column scales or 0.
    pub cs: u64,
    /// `[M]` row correction or 0.
    pub rc: u64,
    /// `[N]` column correction or 0.
    pub cc: u64,
    /// `[N]` bias or 0.
    pub bias: u64,
    /// int8 output scale (when `os` is 0).
    pub out_scale: f32,
    /// `[N]` per-column int8 output scales or 0.
    pub os: u64,
    /// `[M]` second row correction or 0 (with `cc2`: both or neither).
    pub rc2: u64,
    /// `[N]` second column correction or 0.
    pub cc2: u64,
}

impl RawEpilogue {
    /// Output `out` with no vectors (every pointer 0), per-tensor row scale 1 and int8 output scale 1: the base that
    /// callers complete with struct update syntax.
    pub fn new(out: I8Out) -> Self {
        Self { out, rs: 0, rs_val: 1.0, cs: 0, rc: 0, cc: 0, bias: 0, out_scale: 1.0, os: 0, rc2: 0, cc2: 0 }
    }
}

/// Whether the wgmma path runs on `dev` (an sm_90 GPU with sm_90a code compiled in).
pub fn wgmma_available(dev: &Device) -> Result<bool> {
    dev.bind_to_thread()?;
    // SAFETY: queries the current device's attributes and a kernel's attributes; no launch.
    Ok(unsafe { sys::lowbit_i8_wgmma_available() } == 1)
}

/// Options of [`act_quant`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ActQuantConfig<'a> {
    /// RMSNorm weight `[K]` (same dtype) and epsilon.
    pub rms_norm: Option<(&'a CudaSlice<u16>, f32)>,
    /// Hadamard block size (power of two dividing K, ≤ 8192), 0 = none.
    pub hadamard: usize,
    /// Per-tensor static scale; `None` = dynamic per-token scales.
    pub static_scale: Option<f32>,
}

/// Quantizes f16 / bf16 activations `x` `[M, K]` into int8 `q` `[M, K]` and per-token `scales` `[M]` (unused
/// with a static scale), with the fused steps of `cfg`, on the device's stream. `residual` (same dtype and
/// shape), when given, is added first and overwritten with the sum `x + residual` rounded to the dtype.
#[allow(clippy::too_many_arguments)]
pub fn act_quant(
    dev: &Device,
    x: &CudaSlice<u16>,
    m: usize,
    k: usize,
    dtype: OutDtype,
    residual: Option<&mut CudaSlice<u16>>,
    cfg: &ActQuantConfig<'_>,
    q: &mut CudaSlice<i8>,
    scales: &mut CudaSlice<f32>,
) -> Result<()> {
    const L: &str = "lowbit_act_quant";
    for (what, have, want) in [("act_quant x", x.len(), m * k), ("act_quant q", q.len(), m * k)] {
        if have < want {
            return Err(CudaError::BufferSize { what, expected: want, got: have });
        }
    }
    if cfg.static_scale.is_none() && scales.len() < m {
        return Err(CudaError::BufferSize { what: "act_quant scales", expected: m, got: scales.len() });
    }
    if let Some(r) = &residual
        && r.len() < m * k
    {
        return Err(CudaError::BufferSize { what: "act_quant residual", expected: m * k, got: r.len() });
    }
    if let Some((g, _)) = cfg.rms_norm
        && g.len() < k
    {
        return Err(CudaError::BufferSize { what: "act_quant RMSNorm weight", expected: k, got: g.len() });
    }
    dev.bind_to_thread()?;
    let stream = dev.stream();
    let (xp, xg) = x.device_ptr(stream);
    let (qp, qg) = q.device_ptr_mut(stream);
    let (sp, sg) = scales.device_ptr_mut(stream);
    let (rp, rg) = match residual {
        Some(r) => {
            let (p, g) = r.device_ptr_mut(stream);
            (p, Some(g))
        }
        None => (0, None),
    };
    let (gp, gg, eps) = match cfg.rms_norm {
        Some((g, eps)) => {
            let (p, gd) = g.device_ptr(stream);
            (p, Some(gd), eps)
        }
        None => (0, None, 0.0),
    };
    // SAFETY: lengths checked above; all buffers belong to dev's context, current on this thread; the launch
    // goes to its stream.
    let st = unsafe {
        sys::lowbit_act_quant(
            xp as *const c_void,
            k as i64,
            rp as *mut c_void,
            gp as *const c_void,
            eps,
            cfg.hadamard as i32,
            cfg.static_scale.unwrap_or(0.0),
            qp as *mut i8,
            k as i64,
            sp as *mut f32,
            m as i64,
            k as i64,
            dtype.to_ffi(),
            stream.cu_stream().cast(),
        )
    };
    drop((xg, qg, sg, rg, gg));
    check_with(st, L, || format!("m={m} k={k} {dtype} hadamard={} static={:?}", cfg.hadamard, cfg.static_scale))
}

/// [`act_quant`] with raw device pointers on any stream (PyTorch: `data_ptr()`, the current stream). `x` has
/// `m` rows `ldx` elements apart, `q` rows `ldq` bytes apart; `residual` (0 = none) is dense `[m, k]`,
/// `gamma` (0 = no RMSNorm) `[k]`, both of `dtype`; `scales` `[m]` f32 (0 allowed with a static scale);
/// `hadamard` 0 or 1 = none; `static_scale` `None` = dynamic per-token scales.
///
/// # Safety
/// Every non-zero pointer addresses a live allocation of those sizes in `dev`'s primary context; `stream` is a
/// valid stream of that context (or null). The launcher checks sizes, nullness, alignment and values.
#[allow(clippy::too_many_arguments)]
pub unsafe fn act_quant_raw(
    dev: &Device,
    x: u64,
    ldx: usize,
    residual: u64,
    gamma: u64,
    eps: f32,
    hadamard: usize,
    static_scale: Option<f32>,
    q: u64,
    ldq: usize,
    scales: u64,
    m: usize,
    k: usize,
    dtype: OutDtype,
    stream: *mut c_void,
) -> Result<()> {
    const L: &str = "lowbit_act_quant";
    dev.bind_to_thread()?;
    let st = static_scale.unwrap_or(0.0);
    if static_scale.is_some() && !(st > 0.0 && st.is_finite()) {
        return Err(CudaError::InvalidArgument { launcher: L, detail: format!("static scale {st} (need finite > 0)") });
    }
    // SAFETY: per this function's contract; the launcher validates the rest before touching memory.
    let status = unsafe {
        sys::lowbit_act_quant(
            x as *const c_void,
            ldx as i64,
            residual as *mut c_void,
            gamma as *const c_void,
            eps,
            hadamard as i32,
            st,
            q as *mut i8,
            ldq as i64,
            scales as *mut f32,
            m as i64,
            k as i64,
            dtype.to_ffi(),
            stream,
        )
    };
    check_with(status, L, || format!("m={m} k={k} {dtype} hadamard={hadamard} static={static_scale:?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weight(format: i32, k: i32, codes: usize) -> sys::lowbit_i8_weight {
        sys::lowbit_i8_weight {
            format,
            n: 8,
            k,
            codes: codes as *const c_void,
            group_scales: std::ptr::null(),
            group_len: 0,
        }
    }

    /// The launcher's host-side checks run before any CUDA call, so bad arguments are typed errors even without
    /// a GPU (CI).
    #[test]
    fn launcher_rejects_bad_arguments_without_a_gpu() {
        let x = 4096usize as *const i8;
        let epi = sys::lowbit_i8_epilogue { out_dtype: 3, ..Default::default() };
        let y = 4096usize as *mut c_void;
        let call = |w: &sys::lowbit_i8_weight, x: *const i8| {
            // SAFETY: every case is rejected by host-side validation before a pointer is dereferenced or CUDA is
            // called (the pointers are never read).
            let st = unsafe {
                sys::lowbit_i8_gemm(
                    w,
                    x,
                    64,
                    1,
                    &epi,
                    y,
                    8,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null(),
                    132,
                    std::ptr::null_mut(),
                )
            };
            check_with(st, LAUNCHER, || "test".into())
        };
        assert!(matches!(call(&weight(0, 64, 4096), std::ptr::null()), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(call(&weight(0, 40, 4096), x), Err(CudaError::Shape { .. })));
        assert!(matches!(call(&weight(1, 48, 4096), x), Err(CudaError::Shape { .. })));
        assert!(matches!(call(&weight(7, 64, 4096), x), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(call(&weight(0, 64, 4100), x), Err(CudaError::Alignment { .. })));
        assert!(matches!(call(&weight(0, 0, 4096), x), Err(CudaError::Shape { .. })));
        // SAFETY: host-only planning on integers; the placeholder pointer is never dereferenced.
        let ws = unsafe { sys::lowbit_i8_gemm_workspace_bytes(&weight(0, 40, 4096), 1, std::ptr::null(), 132) };
        assert_eq!(ws, -1);
        // SAFETY: NULL x is rejected before anything else.
        let st = unsafe {
            sys::lowbit_act_quant(
                std::ptr::null(),
                64,
                std::ptr::null_mut(),
                std::ptr::null(),
                0.0,
                0,
                0.0,
                4096usize as *mut i8,
                64,
                4096usize as *mut f32,
                1,
                64,
                0,
                std::ptr::null_mut(),
            )
        };
        assert!(matches!(check_with(st, "lowbit_act_quant", String::new), Err(CudaError::InvalidArgument { .. })));
        assert_eq!(out_elem_bytes(I8Out::Bf16), 2);
        assert_eq!(out_elem_bytes(I8Out::I32), 4);
    }

    /// The second rank-1 pair: a lone vector (either side) is an invalid argument and a misaligned one an alignment
    /// error, from the launcher's host checks (no GPU needed); the safe API's length checks name the vector.
    #[test]
    fn second_correction_is_validated_without_a_gpu() {
        let w = weight(0, 64, 4096);
        let call = |rc2: usize, cc2: usize| {
            let epi = sys::lowbit_i8_epilogue {
                out_dtype: 0,
                row_corr2: rc2 as *const f32,
                col_corr2: cc2 as *const f32,
                ..Default::default()
            };
            // SAFETY: every case is rejected by host-side validation before planning, a dereference or a CUDA call.
            let st = unsafe {
                sys::lowbit_i8_gemm(
                    &w,
                    4096usize as *const i8,
                    64,
                    1,
                    &epi,
                    4096usize as *mut c_void,
                    8,
                    std::ptr::null_mut(),
                    0,
                    std::ptr::null(),
                    132,
                    std::ptr::null_mut(),
                )
            };
            check_with(st, LAUNCHER, || "test".into())
        };
        assert!(matches!(call(4096, 0), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(call(0, 4096), Err(CudaError::InvalidArgument { .. })));
        assert!(matches!(call(4098, 4096), Err(CudaError::Alignment { .. })));
        assert!(matches!(call(4096, 4097), Err(CudaError::Alignment { .. })));

        let ok = EpilogueLens {
            row_scale: Some(5),
            col_scale: Some(7),
            correction: Some((5, 7)),
            correction2: Some((6, 9)),
            bias: Some(7),
            out_scales: None,
        };
        check_epilogue_lens(&ok, 5, 7).unwrap();
        check_epilogue_lens(&EpilogueLens::default(), 5, 7).unwrap();
        let short = |l: EpilogueLens| match check_epilogue_lens(&l, 5, 7) {
            Err(CudaError::BufferSize { what, expected, got }) => (what, expected, got),
            r => panic!("{l:?}: {r:?}"),
        };
        assert_eq!(short(EpilogueLens { correction2: Some((4, 7)), ..ok }), ("second row correction", 5, 4));
        assert_eq!(short(EpilogueLens { correction2: Some((5, 6)), ..ok }), ("second column correction", 7, 6));
        assert_eq!(short(EpilogueLens { correction: Some((5, 0)), ..ok }), ("column correction", 7, 0));
        assert_eq!(short(EpilogueLens { row_scale: Some(1), ..ok }), ("row scales", 5, 1));
    }
}
