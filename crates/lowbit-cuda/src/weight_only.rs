//! Weight-only GEMM `Y[M, N] = X[M, K] · dequant(W)[N, K]ᵀ` with X, Y in f16 or bf16
//! (`kernels/weight_only/`).
//!
//! A [`WeightOnlyGemm`] holds one quantized weight on the device in the kernels' tiled fragment
//! layout (lowbit-core [`TiledWeight`]): INT 2/3/4/8-bit (symmetric, asymmetric, act-order), BitMoD
//! mixed 3/4-bit, NF4 and 2/3/4-bit tables. [`WeightOnlyGemm::plan`] checks a problem before anything
//! runs (CUTLASS-style `can_implement`) and says how much workspace it needs; [`WeightOnlyGemm::run`]
//! launches on the device's stream, [`WeightOnlyGemm::run_raw`] on any caller's stream (PyTorch).
//! [`WeightOnlyGemm::reference`] is the CPU oracle: lowbit-core's f64 GEMM on the dequantized weight.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, SyncOnDrop};
use lowbit_core::repack::{TiledFormat, TiledWeight};
use lowbit_core::{QuantizedWeight, WeightScheme};
use lowbit_kernels_sys as sys;
use ndarray::{Array2, ArrayView2};

use crate::buffer::{DeviceTensor, OutDtype, upload};
use crate::cublas::{Cublas, ensure_cublas};
use crate::device::Device;
use crate::error::{CudaError, Result, check_with};

const LAUNCHER: &str = "lowbit_wo_gemm";

/// Which kernel runs a weight-only GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GemmPath {
    /// Warp-level `mma.sync` kernel (sm_80+), split-K, up to 64 rows of X per block: the small-M path.
    Mma,
    /// Warpgroup `wgmma` kernel (sm_90a builds on Hopper only), 128 rows of X per block.
    Wgmma,
    /// Warp-specialized persistent `wgmma` kernel (sm_90a builds on Hopper only, INT 4-bit formats only): a
    /// producer warp fills an mbarrier ring with TMA boxes of W and X, two consumer warpgroups decode W into
    /// registers (or, with K splits for grids that leave half the SMs idle, into shared memory: ws-S); the
    /// automatic choice for INT4 at 64 <= M <= 1024 where its weight tiles number at least 0.4 x SMs (M < 128)
    /// or 0.2 x SMs (`kernels/weight_only/NOTES.md`, ws v1 and ws-S). Needs X rows 16-byte aligned and
    /// K % 8 == 0; split plans use the zeroed split-K workspace.
    Ws,
    /// Dequantize the weight into the workspace (`lowbit_wo_dequantize`), then cuBLAS f16/bf16 GEMM: the
    /// large-M path while the wgmma kernel is slower than cuBLAS (see `kernels/weight_only/NOTES.md`).
    DequantCublas,
}

/// From this M up the automatic plan dequantizes and calls cuBLAS (when libcublas is available). Measured
/// on an H200 (`kernels/weight_only/NOTES.md`, v6): the shared-memory-staged dequantization costs ~0.17 ms on
/// 28672x8192, so dequantize + cuBLAS beats the wgmma kernel from M = 128 (294 vs 374 µs) and the mma.sync
/// kernel stays ahead at M = 64 (232 vs ~290 µs).
pub const DEQUANT_CUBLAS_MIN_M: usize = 128;

/// Optional overrides of the automatic launch plan (benchmarks and tests); `None` = automatic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GemmConfig {
    /// Kernel path (automatic: dequantize + cuBLAS from M = 128 when libcublas loads, else wgmma from M = 128
    /// on Hopper, mma.sync otherwise).
    pub path: Option<GemmPath>,
    /// Rows of X per block: 8, 16, 32 or 64.
    pub m_tile: Option<u32>,
    /// Split-K factor.
    pub splits: Option<u32>,
    /// Columns of X staged per shared-memory chunk (a multiple of the format's k-step). An upper bound for the
    /// double-buffered chunks: where a block's whole K range fits shared memory at the kernel's blocks per SM, the
    /// launch stages it in one buffer instead (no barrier inside the block).
    pub kc: Option<u32>,
    /// Warps per 16-row strip of W (in-block split-K): 1, 2, 4 or 8 (automatic: more than one for small
    /// grids whose whole K fits one chunk of X, and at M = 1 on INT formats where the compact-X kernel's blocks
    /// fill one wave). At M <= 8 with an 8-row m-tile on INT formats it runs the compact-X kernel (only the M
    /// real rows of X in shared memory), otherwise one X chunk must hold the whole K range.
    pub k_warps: Option<u32>,
}

impl GemmConfig {
    fn to_ffi(self) -> sys::lowbit_wo_config {
        sys::lowbit_wo_config {
            m_tile: self.m_tile.unwrap_or(0) as i32,
            splits: self.splits.unwrap_or(0) as i32,
            kc: self.kc.unwrap_or(0) as i32,
            k_warps: self.k_warps.unwrap_or(0) as i32,
            path: match self.path {
                None => sys::LOWBIT_WO_PATH_AUTO as i32,
                Some(GemmPath::Mma) => sys::LOWBIT_WO_PATH_MMA as i32,
                Some(GemmPath::Wgmma) => sys::LOWBIT_WO_PATH_WGMMA as i32,
                Some(GemmPath::Ws) => sys::LOWBIT_WO_PATH_WS as i32,
                Some(GemmPath::DequantCublas) => sys::LOWBIT_WO_PATH_AUTO as i32, // never reaches the launcher
            },
        }
    }
}

/// A checked GEMM problem: what [`WeightOnlyGemm::run`] will launch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GemmPlan {
    /// Rows of X and Y.
    pub m: usize,
    /// Element type of X and Y.
    pub dtype: OutDtype,
    /// Workspace bytes the launch needs (split-K partial sums, act-order gather, the dense weight of the
    /// cuBLAS path); 0 = none.
    pub workspace_bytes: usize,
    /// Leading workspace bytes that must be zero when the launch starts (the split-K partial sums; 0 when
    /// the plan has no split-K). Every completed launch leaves them zero again, so one zeroed workspace
    /// serves any number of launches on one stream; the bytes after them are scratch.
    pub zeroed_bytes: usize,
    /// The plan dequantizes into the workspace and calls cuBLAS ([`GemmPath::DequantCublas`]).
    pub dequant_cublas: bool,
    /// Launch overrides.
    pub config: GemmConfig,
}

/// A quantized weight resident on one device in the weight-only GEMM layout.
#[derive(Debug)]
pub struct WeightOnlyGemm {
    words: CudaSlice<u32>,
    hi_words: Option<CudaSlice<u32>>,
    meta: CudaSlice<u32>,
    channel_scales: Option<CudaSlice<f32>>,
    lut: Option<CudaSlice<f32>>,
    perm: Option<CudaSlice<u32>>,
    format: TiledFormat,
    lut_tables: i32,
    n: usize,
    k: usize,
    n_pad: usize,
    k_pad: usize,
    group_len: usize,
    scheme: WeightScheme,
    ordinal: usize,
    sm_count: i32,
    weight_bytes: usize,
    /// cuBLAS handle of the large-M path, made on first use (`None` inside: libcublas not loadable).
    cublas: std::sync::OnceLock<Option<std::sync::Mutex<Cublas>>>,
}

impl WeightOnlyGemm {
    /// Validates and repacks `w` (lowbit-core [`TiledWeight::from_weight`]) and uploads it to `dev`.
    /// bipolar-INT weights are rejected (they run on the bipolar GEMM).
    pub fn new(dev: &Device, w: &QuantizedWeight) -> Result<Self> {
        let tiled = TiledWeight::from_weight(w)?;
        Self::from_tiled(dev, &tiled, w.scheme(), w.storage_bytes())
    }

    /// Uploads an already repacked weight; `scheme` and `weight_bytes` (the packed size a user would
    /// store) are kept for reporting.
    pub fn from_tiled(dev: &Device, t: &TiledWeight, scheme: WeightScheme, weight_bytes: usize) -> Result<Self> {
        let too_big = |what: &str| CudaError::Shape { launcher: LAUNCHER, detail: format!("{what} exceeds 2^31 - 1") };
        if t.n_pad > i32::MAX as usize || t.k_pad > i32::MAX as usize {
            return Err(too_big("n or k"));
        }
        let opt = |v: &Vec<f32>| -> Result<Option<CudaSlice<f32>>> {
            if v.is_empty() { Ok(None) } else { Ok(Some(upload(dev, v)?)) }
        };
        let g = Self {
            words: upload(dev, &t.words)?,
            hi_words: if t.hi_words.is_empty() { None } else { Some(upload(dev, &t.hi_words)?) },
            meta: upload(dev, &t.meta)?,
            channel_scales: opt(&t.channel_scales)?,
            lut: opt(&t.lut)?,
            perm: t.perm.as_ref().map(|p| upload(dev, p)).transpose()?,
            format: t.format,
            lut_tables: if t.lut.is_empty() { 0 } else { (t.lut.len() >> t.format.bits()) as i32 },
            n: t.n,
            k: t.k,
            n_pad: t.n_pad,
            k_pad: t.k_pad,
            group_len: t.group_len,
            scheme,
            ordinal: dev.ordinal(),
            sm_count: dev.info().sm_count as i32,
            weight_bytes,
            cublas: std::sync::OnceLock::new(),
        };
        // Uploads are ordered on the device's stream; make them visible to any stream (run_raw).
        dev.synchronize()?;
        Ok(g)
    }

    /// `(N, K)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// The weight's scheme.
    pub fn scheme(&self) -> WeightScheme {
        self.scheme
    }

    /// Bytes of the quantized weight as stored (codes and metadata), for bandwidth figures.
    pub fn weight_bytes(&self) -> usize {
        self.weight_bytes
    }

    /// The C descriptor with device pointers; the guards order each access on `stream`.
    fn ffi<'a>(
        &'a self,
        stream: &'a cudarc::driver::CudaStream,
        guards: &mut Vec<SyncOnDrop<'a>>,
    ) -> sys::lowbit_wo_weight {
        let mut ptr = |p: (u64, SyncOnDrop<'a>)| {
            guards.push(p.1);
            p.0
        };
        sys::lowbit_wo_weight {
            format: self.format as i32,
            n: self.n as i32,
            k: self.k as i32,
            n_pad: self.n_pad as i32,
            k_pad: self.k_pad as i32,
            group_len: self.group_len as i32,
            words: ptr(self.words.device_ptr(stream)) as *const u32,
            hi_words: self.hi_words.as_ref().map_or(std::ptr::null(), |h| ptr(h.device_ptr(stream)) as *const u32),
            meta: ptr(self.meta.device_ptr(stream)) as *const u32,
            channel_scales: self
                .channel_scales
                .as_ref()
                .map_or(std::ptr::null(), |c| ptr(c.device_ptr(stream)) as *const f32),
            lut: self.lut.as_ref().map_or(std::ptr::null(), |l| ptr(l.device_ptr(stream)) as *const f32),
            lut_tables: self.lut_tables,
            perm: self.perm.as_ref().map_or(std::ptr::null(), |p| ptr(p.device_ptr(stream)) as *const u32),
        }
    }

    /// Checks that the kernels implement `m` rows of `dtype` with `config` and returns the plan
    /// (including the workspace size). Nothing is launched; no GPU work is done.
    pub fn plan(&self, dev: &Device, m: usize, dtype: OutDtype, config: GemmConfig) -> Result<GemmPlan> {
        self.check_device(dev)?;
        if m == 0 || m > i32::MAX as usize {
            return Err(CudaError::Shape { launcher: LAUNCHER, detail: format!("m = {m} (need 1..=2^31-1)") });
        }
        if let Some(t) = config.m_tile
            && ![8, 16, 32, 64].contains(&t)
        {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("m_tile {t} (8, 16, 32 or 64)"),
            });
        }
        let kstep = self.format.tiles_per_step() as u32 * 16;
        if let Some(kc) = config.kc
            && (kc == 0 || kc % kstep != 0)
        {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("kc {kc} is not a positive multiple of the k-step {kstep}"),
            });
        }
        if config.splits == Some(0) {
            return Err(CudaError::InvalidArgument { launcher: LAUNCHER, detail: "splits = 0".into() });
        }
        let dequant = match config.path {
            Some(GemmPath::DequantCublas) => {
                if self.cublas(dev).is_none() {
                    return Err(CudaError::NoCublas);
                }
                true
            }
            None => m >= DEQUANT_CUBLAS_MIN_M && self.cublas(dev).is_some() && !self.auto_is_ws(dev, m, dtype)?,
            Some(_) => false,
        };
        if dequant {
            // The dense weight, then (act-order) the gathered X, each 256-byte aligned.
            let align = |b: usize| b.div_ceil(256) * 256;
            let gather = if self.perm.is_some() { align(m * self.k * 2) } else { 0 };
            return Ok(GemmPlan {
                m,
                dtype,
                workspace_bytes: align(self.n * self.k * 2) + gather,
                zeroed_bytes: 0,
                config,
                dequant_cublas: true,
            });
        }
        dev.bind_to_thread()?;
        let mut guards = Vec::new();
        let w = self.ffi(dev.stream(), &mut guards);
        let cfg = config.to_ffi();
        // SAFETY: pure host computation on the descriptor's integers; no pointer is dereferenced.
        let bytes = unsafe { sys::lowbit_wo_gemm_workspace_bytes(&w, m as i64, dtype.to_ffi(), &cfg, self.sm_count) };
        // SAFETY: as above.
        let zeroed =
            unsafe { sys::lowbit_wo_gemm_workspace_zeroed_bytes(&w, m as i64, dtype.to_ffi(), &cfg, self.sm_count) };
        drop(guards);
        if bytes < 0 || zeroed < 0 || zeroed > bytes {
            return Err(CudaError::InvalidArgument {
                launcher: "lowbit_wo_gemm_workspace_bytes",
                detail: format!("m={m} dtype={dtype} config={config:?}"),
            });
        }
        Ok(GemmPlan {
            m,
            dtype,
            workspace_bytes: bytes as usize,
            zeroed_bytes: zeroed as usize,
            config,
            dequant_cublas: false,
        })
    }

    /// Whether the launcher's automatic plan picks the warp-specialized kernel for `m` rows of `dtype`
    /// (then it also beats dequantize + cuBLAS: `kernels/weight_only/NOTES.md`, ws v1).
    fn auto_is_ws(&self, dev: &Device, m: usize, dtype: OutDtype) -> Result<bool> {
        dev.bind_to_thread()?;
        let mut guards = Vec::new();
        let w = self.ffi(dev.stream(), &mut guards);
        // SAFETY: pure host computation on the descriptor's integers plus device attribute queries; no
        // pointer is dereferenced.
        let p = unsafe { sys::lowbit_wo_gemm_auto_path(&w, m as i64, dtype.to_ffi(), self.sm_count) };
        drop(guards);
        Ok(p == sys::LOWBIT_WO_PATH_WS as i32)
    }

    /// The cuBLAS handle of the large-M path (made on first use, on `dev`'s stream); `None` when libcublas
    /// cannot be loaded.
    fn cublas(&self, dev: &Device) -> Option<&std::sync::Mutex<Cublas>> {
        self.cublas
            .get_or_init(|| {
                ensure_cublas().ok()?;
                Cublas::new(dev.stream().clone()).ok().map(std::sync::Mutex::new)
            })
            .as_ref()
    }

    /// The large-M path on `stream`: dequantize into the workspace, gather X's columns for act-order
    /// weights, cuBLAS GEMM.
    ///
    /// # Safety
    /// As [`Self::run_raw`]; `ldx` must equal K; `workspace` holds `plan.workspace_bytes` bytes.
    unsafe fn run_dequant_cublas(
        &self,
        dev: &Device,
        x: u64,
        y: u64,
        plan: &GemmPlan,
        workspace: u64,
        stream: *mut c_void,
    ) -> Result<()> {
        let blas = self.cublas(dev).ok_or(CudaError::NoCublas)?;
        let blas = blas.lock().map_err(|_| CudaError::InvalidArgument {
            launcher: "cublas",
            detail: "cuBLAS handle poisoned by a panic in another thread".into(),
        })?;
        if workspace == 0 {
            return Err(CudaError::BufferSize {
                what: "weight-only GEMM workspace",
                expected: plan.workspace_bytes,
                got: 0,
            });
        }
        let dense = workspace;
        let dense_bytes = (self.n * self.k * 2).div_ceil(256) * 256;
        let mut guards = Vec::new();
        let w = self.ffi(dev.stream(), &mut guards);
        let dt = plan.dtype.to_ffi();
        // SAFETY: the descriptor's arrays live as long as `self`; `dense` holds N·K 16-bit elements (the
        // plan counted them) and `stream` is valid per the contract.
        let st = unsafe { sys::lowbit_wo_dequantize(&w, dense as *mut c_void, self.k as i64, dt, stream) };
        check_with(st, "lowbit_wo_dequantize", || format!("n={} k={} {}", self.n, self.k, plan.dtype))?;
        let mut xp = x;
        if self.perm.is_some() {
            let gathered = dense + dense_bytes as u64;
            // SAFETY: x holds m·K elements (contract), `gathered` m·K (the plan counted them).
            let st = unsafe {
                sys::lowbit_wo_gather_columns(
                    &w,
                    x as *const c_void,
                    self.k as i64,
                    plan.m as i64,
                    gathered as *mut c_void,
                    dt,
                    stream,
                )
            };
            check_with(st, "lowbit_wo_gather_columns", || format!("m={} k={}", plan.m, self.k))?;
            xp = gathered;
        }
        drop(guards);
        // The handle launches on its own stream: point it at `stream` for this call, then back.
        let handle = blas.handle();
        // SAFETY: valid handle; `stream` is a valid stream of this context (contract).
        unsafe { cudarc::cublas::sys::cublasSetStream_v2(handle, stream as _) }.result()?;
        // SAFETY: W (dense, N·K), X (m·K) and Y (m·N) are device buffers of this context (contract and plan).
        let r = unsafe { blas.gemm_raw(plan.dtype, plan.m, self.n, self.k, xp, dense, y) };
        // SAFETY: as above, with the handle's own stream.
        unsafe { cudarc::cublas::sys::cublasSetStream_v2(handle, blas.stream().cu_stream() as _) }.result()?;
        r
    }

    fn check_device(&self, dev: &Device) -> Result<()> {
        dev.check_owner(self.ordinal, LAUNCHER)
    }

    /// Allocates a zeroed workspace big enough for `plan` (None when it needs none); launches of plans with
    /// the same or smaller [`GemmPlan::zeroed_bytes`] and no dense cuBLAS weight may share it on one stream.
    pub fn workspace(&self, dev: &Device, plan: &GemmPlan) -> Result<Option<CudaSlice<u8>>> {
        if plan.workspace_bytes == 0 {
            return Ok(None);
        }
        dev.bind_to_thread()?;
        Ok(Some(dev.stream().alloc_zeros::<u8>(plan.workspace_bytes)?))
    }

    /// Runs `y = x · Wᵀ` on the device's stream: `x` is `[M, K]`, `y` is `[M, N]`, same dtype.
    /// Asynchronous. `workspace` must come from [`Self::workspace`] for a plan of the same M and dtype
    /// (or be `None` when the plan needs none); it may serve further calls (its split-K part is left zero).
    pub fn run(
        &self,
        dev: &Device,
        x: &DeviceTensor,
        y: &mut DeviceTensor,
        config: GemmConfig,
        workspace: Option<&mut CudaSlice<u8>>,
    ) -> Result<()> {
        if x.cols() != self.k || y.cols() != self.n || x.rows() != y.rows() || x.dtype() != y.dtype() {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!(
                    "x is [{}, {}] {}, y is [{}, {}] {}, W is [{}, {}]: need x [M, K], y [M, N] of one dtype",
                    x.rows(),
                    x.cols(),
                    x.dtype(),
                    y.rows(),
                    y.cols(),
                    y.dtype(),
                    self.n,
                    self.k
                ),
            });
        }
        let plan = self.plan(dev, x.rows(), x.dtype(), config)?;
        let have = workspace.as_ref().map_or(0, |w| w.len());
        if have < plan.workspace_bytes {
            return Err(CudaError::BufferSize {
                what: "weight-only GEMM workspace",
                expected: plan.workspace_bytes,
                got: have,
            });
        }
        dev.bind_to_thread()?;
        let stream = dev.stream();
        if plan.dequant_cublas {
            let (xp, xg) = x.data().device_ptr(stream);
            let (yp, yg) = y.data_mut().device_ptr_mut(stream);
            let (wsp, wsg) = match workspace {
                Some(ws) => {
                    let (p, g) = ws.device_ptr_mut(stream);
                    (p, Some(g))
                }
                None => (0, None),
            };
            // SAFETY: x, y and the workspace hold what the plan needs (checked above) and belong to dev's
            // context, current on this thread; the work goes to dev's stream.
            let r = unsafe { self.run_dequant_cublas(dev, xp, yp, &plan, wsp, stream.cu_stream().cast()) };
            drop((xg, yg, wsg));
            return r;
        }
        let mut guards = Vec::new();
        let w = self.ffi(stream, &mut guards);
        let (xp, xg) = x.data().device_ptr(stream);
        let (yp, yg) = y.data_mut().device_ptr_mut(stream);
        let (wsp, wsg) = match workspace {
            Some(ws) => {
                let (p, g) = ws.device_ptr_mut(stream);
                (p, Some(g))
            }
            None => (0, None),
        };
        let cfg = config.to_ffi();
        // SAFETY: the descriptor's arrays were built by `TiledWeight` for exactly these sizes and live as
        // long as `self`; x and y hold [M, K] and [M, N] elements (checked above); the workspace holds
        // the planned bytes; all are allocations of `dev`'s context (current on this thread) and the
        // launch goes to its stream.
        let status = unsafe {
            sys::lowbit_wo_gemm(
                &w,
                xp as *const c_void,
                self.k as i64,
                yp as *mut c_void,
                plan.m as i64,
                plan.dtype.to_ffi(),
                wsp as *mut c_void,
                plan.workspace_bytes as i64,
                &cfg,
                self.sm_count,
                stream.cu_stream().cast(),
            )
        };
        drop((xg, yg, wsg, guards));
        check_with(status, LAUNCHER, || format!("m={} n={} k={} {} {:?}", plan.m, self.n, self.k, plan.dtype, config))
    }

    /// Runs on a caller's stream with raw device pointers (PyTorch tensors: `data_ptr()` and
    /// `torch.cuda.current_stream().cuda_stream`). Asynchronous; nothing is synchronized.
    ///
    /// # Safety
    /// - `x` must address `m` rows of `ldx >= K` elements and `y` `m * N` writable elements, of `dtype`,
    ///   and `workspace` at least [`GemmPlan::workspace_bytes`] bytes (256-byte aligned, or 0 when none is
    ///   needed) whose first [`GemmPlan::zeroed_bytes`] are zero (the launch leaves them zero), all in
    ///   `dev`'s primary context and not used by other work until the launch completes;
    /// - `stream` must be a valid stream of that context (or null) for the duration of the launch;
    /// - `self` must outlive the launch on `stream`.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_raw(
        &self,
        dev: &Device,
        x: u64,
        ldx: usize,
        y: u64,
        plan: &GemmPlan,
        workspace: u64,
        stream: *mut c_void,
    ) -> Result<()> {
        let previous = cudarc::driver::result::ctx::get_current()?;
        dev.bind_to_thread()?;
        if plan.dequant_cublas {
            if ldx != self.k {
                return Err(CudaError::Shape {
                    launcher: "weight-only GEMM (dequantize + cuBLAS)",
                    detail: format!("ldx = {ldx} must equal K = {} on this path", self.k),
                });
            }
            // SAFETY: forwarded from this function's contract.
            let r = unsafe { self.run_dequant_cublas(dev, x, y, plan, workspace, stream) };
            if let Some(prev) = previous
                && prev != dev.context().cu_ctx()
            {
                // SAFETY: `prev` was current on this thread a moment ago and is still alive.
                unsafe { cudarc::driver::result::ctx::set_current(prev) }?;
            }
            return r;
        }
        let mut guards = Vec::new();
        let w = self.ffi(dev.stream(), &mut guards);
        let cfg = plan.config.to_ffi();
        // SAFETY: per this function's contract; the launcher validates sizes, nullness and alignment.
        let status = unsafe {
            sys::lowbit_wo_gemm(
                &w,
                x as *const c_void,
                ldx as i64,
                y as *mut c_void,
                plan.m as i64,
                plan.dtype.to_ffi(),
                workspace as *mut c_void,
                plan.workspace_bytes as i64,
                &cfg,
                self.sm_count,
                stream,
            )
        };
        drop(guards);
        if let Some(prev) = previous
            && prev != dev.context().cu_ctx()
        {
            // SAFETY: `prev` was current on this thread a moment ago and is still alive.
            unsafe { cudarc::driver::result::ctx::set_current(prev) }?;
        }
        check_with(status, LAUNCHER, || format!("m={} n={} k={} ldx={ldx}", plan.m, self.n, self.k))
    }

    /// CPU oracle: `x · dequant(W)ᵀ` with f64 accumulation on the exactly dequantized weight.
    pub fn reference(w: &QuantizedWeight, x: ArrayView2<f32>) -> Result<Array2<f64>> {
        let act = lowbit_core::reference::Activations::F32(x.to_owned());
        Ok(lowbit_core::reference::gemm(&act, w)?)
    }
}
