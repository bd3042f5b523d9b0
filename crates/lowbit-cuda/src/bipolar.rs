//! bipolar-INT GEMM (APT-LLM, `kernels/bipolar/`): `p`-bit bipolar activations × `q`-bit bipolar weights, for
//! every `p, q ∈ 1..=8`, with two tensor-core mappings of the same exact integer product
//! `Y_int[m, n] = Σ_k v_x[m, k] · v_w[n, k]` (each `b`-bit code `u` means `v = 2u − (2^b − 1)`):
//!
//! - [`BipMapping::Planes`]: the `p·q` one-bit plane products on BGMMA (`wgmma … b1.and.popc`, sm_90a), recovered
//!   as `Σ 2^(i+j)·D_ij` in registers with the popcount correction — the winner when `p·q` is small;
//! - [`BipMapping::Int8`]: the values themselves through the int8 core ([`Int8Gemm`], wgmma s8 / IMMA): a value of
//!   `b ≤ 7` bits fits int8 as is; an 8-bit value `v = 2ŝ + 1` enters as `ŝ = u − 128` and the epilogue's scale
//!   and rank-1 correction vectors restore `Y_int` (`2·acc + Σ v` of the other side). 8-bit activations with
//!   8-bit weights (`Y = 4·acc + S_x[m] + S_w[n] − K`) or with weight offsets use the int8 core's second rank-1
//!   epilogue term ([`I8Epilogue::correction2`]): `a_x[m]·(a_w·(S_w − K))[n]` and `(a_x·S_x)[m]·a_w[n]`.
//!   At `M ≤` [`PACKED_MAX_M`] weights of `q ≤ 4` bits (K % 32 == 0) run as packed 2- / 4-bit codes on the int8
//!   core's streaming kernel (`v = 2u − (2^q − 1)` applied exactly in int32 there; same accumulator, q/8 of the
//!   weight bytes; `kernels/int8/NOTES.md` v10); the weight is then held in both forms on the device.
//!
//! Both end in the int8 core's epilogue: `y = f32(Y_int)·a_x[m]·a_w[n] (+ a_x[m]·S_x[m]·b_w[n])` to f16 / bf16,
//! where `a_x` are per-token activation scales, `a_w` per-channel weight scales and `b_w` the optional offsets of
//! INT-converted weights ([`BipolarMatrix::from_int_affine`]); `S_x` is the activation row's value sum.
//! [`BipolarGemm::plan`] picks the mapping per `(p, q, M, N, K)` unless forced. Per-group weight scales are not
//! supported yet (the plane path steps K in 256-bit blocks): such weights are rejected with a typed error.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut, DeviceRepr, SyncOnDrop};
use lowbit_core::bipolar::BipolarMatrix;
use lowbit_core::granularity::Granularity;
use lowbit_core::int8::I8Out;
use lowbit_kernels_sys as sys;

use crate::buffer::{OutDtype, upload};
use crate::device::Device;
use crate::error::{CudaError, Result, check_with};
use crate::int8::{I8Config, I8Epilogue, Int8Gemm, RawEpilogue, RowScale, out_elem_bytes};

const LAUNCHER: &str = "lowbit_bip_gemm";
const ACT_LAUNCHER: &str = "lowbit_bip_act_quant";

/// Tensor-core mapping of the bipolar GEMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BipMapping {
    /// Bit planes on BGMMA (sm_90a).
    Planes,
    /// Exact int8 expansion through the int8 core.
    Int8,
}

/// Kernel of the plane mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BipPlanePath {
    /// The synchronous cp.async kernel (every instance, split-K).
    Sync,
    /// The warp-specialized persistent kernel (sm_90a, large M: TMA producer warp, two BGMMA consumer
    /// warpgroups, one CTA per SM; `p·q ≤ 8`, `q ≤ 4`, no split-K).
    Ws,
}

/// Launch overrides; `None` = automatic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BipConfig {
    /// Mapping (automatic: [`BipolarGemm::choose`]).
    pub mapping: Option<BipMapping>,
    /// Plane path: activation rows per CTA (8, or the instance's large tile).
    pub bx: Option<u32>,
    /// Plane path: split-K factor.
    pub splits: Option<u32>,
    /// Plane path: kernel (automatic: the warp-specialized one where it has an instance, `bx` and `splits` are
    /// automatic and its tiles fill every SM, else the synchronous one).
    pub plane_path: Option<BipPlanePath>,
}

fn path_code(p: Option<BipPlanePath>) -> i32 {
    (match p {
        None => sys::LOWBIT_BIP_PATH_AUTO,
        Some(BipPlanePath::Sync) => sys::LOWBIT_BIP_PATH_SYNC,
        Some(BipPlanePath::Ws) => sys::LOWBIT_BIP_PATH_WS,
    }) as i32
}

/// A checked problem: what [`BipolarGemm::run`] launches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BipPlan {
    /// Rows of X and Y.
    pub m: usize,
    /// The mapping that runs.
    pub mapping: BipMapping,
    /// Workspace bytes (split-K; 0 = none).
    pub workspace_bytes: usize,
    /// Launch overrides.
    pub config: BipConfig,
}

/// Words per plane row: `ceil(K / 32)` rounded up to a multiple of 4 (16-byte rows).
pub fn plane_ld(k: usize) -> usize {
    k.div_ceil(32).next_multiple_of(4)
}

/// Bit planes `[bits][rows][ceil(K/32)]` (lowbit-core layout) re-laid with rows of [`plane_ld`] words.
fn padded_planes(planes: &[u32], bits: usize, rows: usize, k: usize) -> Vec<u32> {
    let (w, ld) = (k.div_ceil(32), plane_ld(k));
    let mut out = vec![0u32; bits * rows * ld];
    for (i, src) in planes.chunks_exact(w).enumerate() {
        out[i * ld..i * ld + w].copy_from_slice(src);
    }
    out
}

/// Σ_k v per row of a bipolar matrix, in i64 (then checked to fit i32 by the callers' K limit).
fn value_sums(m: &BipolarMatrix) -> Vec<i32> {
    let pop = m.plane_popcounts();
    (0..m.n)
        .map(|r| {
            let s: i64 = (0..m.bits as usize).map(|i| (2 * pop[i * m.n + r] as i64 - m.k as i64) << i).sum();
            s as i32
        })
        .collect()
}

/// The int8 mapping's operand of `b`-bit bipolar codes: the code `u` itself for `b ≤ 7`, `u − 128` for 8 bits. The
/// value is `v = 2·op + d_b` ([`int8_value_offset`]). Non-negative codes of `b` bits keep the upper `8 − b` operand
/// bits zero, which costs the tensor cores less switching power than the odd values `2u − (2^b − 1)` (sign-extended,
/// every bit toggling) that the mapping multiplied before: kernels/bipolar/NOTES.md "operand codes".
pub fn int8_operand(codes: &[u8], bits: u32) -> Vec<i8> {
    codes.iter().map(|&u| if bits == 8 { (u as i32 - 128) as i8 } else { u as i8 }).collect()
}

/// `d_b` of the int8 operand: the value of a `b`-bit bipolar code is `v = 2·op + d_b`, with `d_b = −(2^b − 1)` for the
/// unsigned operand (`b ≤ 7`) and `d_8 = 1` for `u − 128`.
pub fn int8_value_offset(bits: u32) -> i64 {
    if bits == 8 { 1 } else { 1 - (1i64 << bits) }
}

/// `Y_int` (`[m, n]`) from the int8 mapping's accumulator `acc = Σ op_x·op_w` over depth `k` and the value row sums
/// of both sides: with `v = 2·op + d` on each side, `Y = 4·acc + d_w·S_x[m] + d_x·S_w[n] − K·d_x·d_w`.
#[allow(clippy::too_many_arguments)]
pub fn exact_from_int8_parts(
    acc: &[i32],
    m: usize,
    n: usize,
    k: usize,
    p: u32,
    q: u32,
    x_sums: &[i32],
    w_sums: &[i32],
) -> Vec<i64> {
    let (dx, dw) = (int8_value_offset(p), int8_value_offset(q));
    let kdd = k as i64 * dx * dw;
    (0..m * n)
        .map(|i| {
            let (r, c) = (i / n, i % n);
            4 * acc[i] as i64 + dw * x_sums[r] as i64 + dx * w_sums[c] as i64 - kdd
        })
        .collect()
}

/// The int8 mapping's epilogue vectors of a weight (host side): `y = f32(acc)·a_x[m]·col_scale[n] + a_x[m]·col1[n]
/// + (a_x·S_x)[m]·col2[n]` equals `a_x·(a_w·Y + b_w·S_x)` (the plane mapping's epilogue) up to f32 rounding.
#[derive(Debug, Clone, PartialEq)]
pub struct Int8EpilogueVectors {
    /// `4·a_w`.
    pub col_scale: Vec<f32>,
    /// First rank-1 term: its row vector and `[N]` column vector.
    pub corr: Option<(Int8RowVector, Vec<f32>)>,
    /// Second rank-1 term (row vector always `a_x·S_x`): `[N]` column vector.
    pub corr2: Option<Vec<f32>>,
}

/// Which activation vector a rank-1 term of the int8 mapping uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Int8RowVector {
    /// `a_x`: `+ a_x · (a_w·d_x·(S_w − K·d_w))`.
    Scales,
    /// `a_x · S_x`: `+ (a_x·S_x) · (d_w·a_w + b_w)`.
    ScaledSums,
}

/// [`Int8EpilogueVectors`] for `p`-bit activations and a `q`-bit weight with channel scales `a_w`, optional offsets
/// `b_w`, value row sums `S_w` and depth `k`: from [`exact_from_int8_parts`], `a_x·(a_w·Y + b_w·S_x)` =
/// `4·a_x·a_w·acc + a_x·a_w·d_x·(S_w − K·d_w) + (a_x·S_x)·(d_w·a_w + b_w)`. Both rank-1 terms are always present
/// (`d ≠ 0`): the `a_x` term first, the `a_x·S_x` term second.
pub fn int8_epilogue_vectors(
    p: u32,
    q: u32,
    k: usize,
    scales: &[f32],
    offsets: Option<&[f32]>,
    w_sums: &[i32],
) -> Int8EpilogueVectors {
    let (dx, dw) = (int8_value_offset(p), int8_value_offset(q));
    let col_scale = scales.iter().map(|s| 4.0 * s).collect();
    // d_x·(S_w − K·d_w) is an exact integer (|·| < 2^40); one f64 product, one rounding to f32.
    let by_scales =
        scales.iter().zip(w_sums).map(|(&s, &sw)| (s as f64 * (dx * (sw as i64 - k as i64 * dw)) as f64) as f32);
    let by_sums = scales.iter().enumerate().map(|(i, &s)| {
        let b = offsets.map_or(0.0, |o| o[i] as f64);
        (dw as f64 * s as f64 + b) as f32
    });
    Int8EpilogueVectors {
        col_scale,
        corr: Some((Int8RowVector::Scales, by_scales.collect())),
        corr2: Some(by_sums.collect()),
    }
}

#[derive(Debug, Clone)]
struct Int8Side {
    gemm: Int8Gemm,
    /// The same operand as packed 2- / 4-bit codes for the int8 core's streaming kernel (`q ≤ 4`, K % 32 == 0):
    /// what the int8 mapping runs at `M ≤` [`PACKED_MAX_M`] (same accumulator, a quarter / half of the bytes).
    packed: Option<Int8Gemm>,
    col_scale: CudaSlice<f32>,
    /// The first rank-1 term's row vector and column vector.
    corr: Option<(Int8RowVector, CudaSlice<f32>)>,
    /// The second rank-1 term's column vector (row vector `a_x·S_x`).
    corr2: Option<CudaSlice<f32>>,
}

/// Largest M at which the int8 mapping runs the packed-code weight (the int8 core's streaming kernel).
pub const PACKED_MAX_M: usize = 16;

impl Int8Side {
    /// The int8 core weight that runs `m` rows: the packed codes at decode, else the int8 values.
    fn gemm_for(&self, m: usize) -> &Int8Gemm {
        match &self.packed {
            Some(p) if m <= PACKED_MAX_M => p,
            _ => &self.gemm,
        }
    }
}

/// Activations of one GEMM call on the device: per-token scales, value row sums, bit planes and the int8 operand.
#[derive(Debug)]
pub struct BipolarActivations {
    m: usize,
    k: usize,
    bits: u32,
    planes: CudaSlice<u32>,
    scales: CudaSlice<f32>,
    row_sums: CudaSlice<i32>,
    row_corr: CudaSlice<f32>,
    codes8: CudaSlice<i8>,
}

impl BipolarActivations {
    /// Rows (tokens).
    pub fn m(&self) -> usize {
        self.m
    }
    /// Per-token scales `[M]`.
    pub fn scales(&self) -> &CudaSlice<f32> {
        &self.scales
    }
    /// Value row sums `[M]`.
    pub fn row_sums(&self) -> &CudaSlice<i32> {
        &self.row_sums
    }
    /// Bit planes `[p][M][plane_ld(K)]`.
    pub fn planes(&self) -> &CudaSlice<u32> {
        &self.planes
    }
    /// The int8 mapping's operand `[M][K16]` (K rounded up to 16; the code `u`, or `u − 128` for 8 bits).
    pub fn codes8(&self) -> &CudaSlice<i8> {
        &self.codes8
    }
}

/// A bipolar-INT weight on one device, ready for both mappings. `clone` copies its device buffers on the device's
/// stream (cudarc's `CudaSlice::clone`: panics when the copy fails); benchmarks use it for weight rotation copies.
#[derive(Debug, Clone)]
pub struct BipolarGemm {
    n: usize,
    k: usize,
    q: u32,
    p: u32,
    planes: CudaSlice<u32>,
    row_sums: CudaSlice<i32>,
    scales: CudaSlice<f32>,
    offsets: Option<CudaSlice<f32>>,
    int8: Option<Int8Side>,
    int8_missing: &'static str,
    host_row_sums: Vec<i32>,
    ordinal: usize,
    sm_count: i32,
}

fn k16(k: usize) -> usize {
    k.next_multiple_of(16)
}

impl BipolarGemm {
    /// Uploads a `q`-bit bipolar weight (per-channel scales, optional offsets) for `p`-bit activations. Checks
    /// `K·(2^p − 1)(2^q − 1) < 2^31` (the exact int32 result); builds the int8 mapping's weight where it exists.
    pub fn new(dev: &Device, w: &BipolarMatrix, p: u32) -> Result<Self> {
        w.validate()?;
        if !(1..=8).contains(&p) {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("activation bits {p} (supported 1..=8)"),
            });
        }
        if w.granularity != Granularity::PerChannel {
            return Err(CudaError::NoKernel {
                launcher: LAUNCHER,
                detail: format!(
                    "weight scales {:?}: the bipolar GEMM supports per-channel weight scales only",
                    w.granularity
                ),
            });
        }
        let (n, k, q) = (w.n, w.k, w.bits);
        let bound = k as u64 * ((1u64 << p) - 1) * ((1u64 << q) - 1);
        if n > i32::MAX as usize || bound >= 1 << 31 {
            return Err(CudaError::Shape {
                launcher: LAUNCHER,
                detail: format!("n = {n}, K = {k}: K·(2^{p} − 1)(2^{q} − 1) = {bound} must stay below 2^31"),
            });
        }
        let host_row_sums = value_sums(w);
        let planes = upload(dev, &padded_planes(&w.planes, q as usize, n, k))?;
        let row_sums = upload(dev, &host_row_sums)?;
        let scales = upload(dev, &w.scales)?;
        let offsets = w.offsets.as_ref().map(|o| upload(dev, o)).transpose()?;

        // The int8 mapping: operands are the codes u (b <= 7) or u - 128 (b = 8).
        let (int8, int8_missing) = if !k.is_multiple_of(16) {
            (None, "K is not a multiple of 16 (int8 core)")
        } else {
            let unsigned = w.codes();
            let codes = int8_operand(&unsigned, q);
            let v = int8_epilogue_vectors(p, q, k, &w.scales, w.offsets.as_deref(), &host_row_sums);
            let cs = v.col_scale;
            let gemm = Int8Gemm::new_w8_codes(dev, &codes, n, k, &cs)?;
            let packed = if q <= 4 && k.is_multiple_of(32) {
                Some(Int8Gemm::new_bipolar_codes(dev, &unsigned, q, n, k, &cs)?)
            } else {
                None
            };
            let side = Int8Side {
                gemm,
                packed,
                col_scale: upload(dev, &cs)?,
                corr: v.corr.map(|(r, c)| upload(dev, &c).map(|c| (r, c))).transpose()?,
                corr2: v.corr2.map(|c| upload(dev, &c)).transpose()?,
            };
            (Some(side), "")
        };
        dev.synchronize()?;
        Ok(Self {
            n,
            k,
            q,
            p,
            planes,
            row_sums,
            scales,
            offsets,
            int8,
            int8_missing,
            host_row_sums,
            ordinal: dev.ordinal(),
            sm_count: dev.info().sm_count as i32,
        })
    }

    /// `(N, K)`.
    pub fn shape(&self) -> (usize, usize) {
        (self.n, self.k)
    }

    /// `(p, q)`: activation and weight bits.
    pub fn bits(&self) -> (u32, u32) {
        (self.p, self.q)
    }

    /// The weight's value row sums `S_w` (host copy).
    pub fn weight_row_sums(&self) -> &[i32] {
        &self.host_row_sums
    }

    /// Whether the int8 mapping runs this weight as packed 2- / 4-bit codes at `M ≤` [`PACKED_MAX_M`] (`q ≤ 4`,
    /// K % 32 == 0; the int8 core's streaming kernel, int8 NOTES v10). Measured on an H100 at M = 1 and 16 (same run
    /// as cuBLAS f16; plane timings from `docs/results/h100/bipolar.md`): faster than the plane mapping for
    /// `q ∈ 2..=4` on every measured shape, slower for `q = 1` (one plane).
    pub fn int8_decode_packed(&self) -> bool {
        self.int8.as_ref().is_some_and(|s| s.packed.is_some())
    }

    /// Whether the int8 mapping exists for this weight (and why not).
    pub fn int8_mapping(&self) -> std::result::Result<(), &'static str> {
        if self.int8.is_some() { Ok(()) } else { Err(self.int8_missing) }
    }

    /// Activation rows per tile of the warp-specialized plane kernel for these bits on `dev` (0: none).
    pub fn ws_tile(&self, dev: &Device) -> Result<u32> {
        dev.bind_to_thread()?;
        // SAFETY: pure query of the compiled instance list and the current device.
        Ok(unsafe { sys::lowbit_bip_ws_tile(self.p as i32, self.q as i32) }.max(0) as u32)
    }

    /// Whether the plane mapping has an instance for these bits and `bx` (0 = any) on `dev`.
    pub fn planes_available(&self, dev: &Device, bx: u32) -> Result<bool> {
        dev.bind_to_thread()?;
        // SAFETY: host-side instance lookup and device attribute queries; no launch.
        Ok(unsafe { sys::lowbit_bip_plane_available(self.p as i32, self.q as i32, bx as i32) } == 1)
    }

    /// The automatic mapping for `m` rows ([`auto_mapping`] on this weight's bits and the kernels that exist on
    /// `dev`).
    pub fn choose(&self, dev: &Device, m: usize) -> Result<Option<BipMapping>> {
        let kernels = MappingKernels {
            planes: self.planes_available(dev, 0)?,
            ws_tile: self.ws_tile(dev)?,
            int8: self.int8.is_some(),
            int8_packed: self.int8_decode_packed(),
            sms: dev.info().sm_count,
        };
        Ok(auto_mapping(&kernels, self.p, self.q, m, self.n, self.k))
    }

    fn operands(&self, x_planes: u64, x_sums: u64, m: usize) -> (sys::lowbit_bip_operand, sys::lowbit_bip_operand) {
        let ld = plane_ld(self.k) as i64;
        let x = sys::lowbit_bip_operand {
            planes: x_planes as *const u32,
            ld,
            plane_stride: m as i64 * ld,
            row_sums: x_sums as *const i32,
            bits: self.p as i32,
            rows: m as i32,
        };
        let w = sys::lowbit_bip_operand {
            planes: std::ptr::null(),
            ld,
            plane_stride: self.n as i64 * ld,
            row_sums: std::ptr::null(),
            bits: self.q as i32,
            rows: self.n as i32,
        };
        (x, w)
    }

    fn check_device(&self, dev: &Device) -> Result<()> {
        dev.check_owner(self.ordinal, LAUNCHER)
    }

    /// Checks that `m` rows can run with `config`; returns the plan with its mapping and workspace size.
    pub fn plan(&self, dev: &Device, m: usize, config: BipConfig) -> Result<BipPlan> {
        self.check_device(dev)?;
        if m == 0 || m > i32::MAX as usize {
            return Err(CudaError::Shape { launcher: LAUNCHER, detail: format!("m = {m} (need 1..=2^31-1)") });
        }
        if config.bx == Some(0) || config.splits == Some(0) {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("config {config:?}: bx and splits must be positive"),
            });
        }
        let mapping = match config.mapping {
            Some(mp) => mp,
            None => self.choose(dev, m)?.ok_or_else(|| CudaError::NoKernel {
                launcher: LAUNCHER,
                detail: format!(
                    "W{}A{} on {}: no plane instance here and no int8 mapping ({})",
                    self.q,
                    self.p,
                    dev.info().sm_name(),
                    self.int8_missing
                ),
            })?,
        };
        let workspace_bytes = match mapping {
            BipMapping::Int8 => {
                let side = self.int8.as_ref().ok_or_else(|| CudaError::NoKernel {
                    launcher: LAUNCHER,
                    detail: format!("int8 mapping of W{}A{}: {}", self.q, self.p, self.int8_missing),
                })?;
                side.gemm_for(m).plan(dev, m, I8Config::default())?.workspace_bytes
            }
            BipMapping::Planes => {
                if config.plane_path == Some(BipPlanePath::Ws) && self.ws_tile(dev)? == 0 {
                    return Err(CudaError::NoKernel {
                        launcher: LAUNCHER,
                        detail: format!(
                            "warp-specialized plane kernel for W{}A{} on {}: none (sm_90a only; p·q ≤ 8, q ≤ 4)",
                            self.q,
                            self.p,
                            dev.info().sm_name()
                        ),
                    });
                }
                if !self.planes_available(dev, config.bx.unwrap_or(0))? {
                    return Err(CudaError::NoKernel {
                        launcher: LAUNCHER,
                        detail: format!(
                            "plane mapping of W{}A{} (bx {:?}) on {}: no instance (sm_90a only; p·q ≤ 8, or small tiles \
                             for p, q ∈ {{1, 2, 3, 4, 8}} with p·q ≤ 32)",
                            self.q,
                            self.p,
                            config.bx,
                            dev.info().sm_name()
                        ),
                    });
                }
                let (x, mut w) = self.operands(1 << 12, 1 << 12, m);
                w.planes = (1usize << 12) as *const u32;
                w.row_sums = (1usize << 12) as *const i32;
                let cfg = sys::lowbit_bip_config {
                    bx: config.bx.unwrap_or(0) as i32,
                    splits: config.splits.unwrap_or(0) as i32,
                    path: path_code(config.plane_path),
                };
                dev.bind_to_thread()?;
                // SAFETY: pure host planning on the descriptors' integers (placeholder pointers are only checked for
                // nullness and alignment); may query the current device.
                let b = unsafe { sys::lowbit_bip_gemm_workspace_bytes(&x, &w, self.k as i32, &cfg, self.sm_count) };
                if b < 0 {
                    return Err(CudaError::InvalidArgument {
                        launcher: LAUNCHER,
                        detail: format!("m={m} W{}A{} config={config:?}", self.q, self.p),
                    });
                }
                b as usize
            }
        };
        Ok(BipPlan { m, mapping, workspace_bytes, config })
    }

    /// A zeroed workspace for `plan` (`None` when it needs none). Reusable across calls of one stream.
    pub fn workspace(&self, dev: &Device, plan: &BipPlan) -> Result<Option<CudaSlice<u8>>> {
        if plan.workspace_bytes == 0 {
            return Ok(None);
        }
        dev.bind_to_thread()?;
        Ok(Some(dev.stream().alloc_zeros::<u8>(plan.workspace_bytes + 256)?))
    }

    /// Device buffers for `m` rows of activations.
    pub fn activations(&self, dev: &Device, m: usize) -> Result<BipolarActivations> {
        if m == 0 {
            return Err(CudaError::Shape { launcher: ACT_LAUNCHER, detail: "m = 0".into() });
        }
        dev.bind_to_thread()?;
        let s = dev.stream();
        Ok(BipolarActivations {
            m,
            k: self.k,
            bits: self.p,
            planes: s.alloc_zeros::<u32>(self.p as usize * m * plane_ld(self.k))?,
            scales: s.alloc_zeros::<f32>(m)?,
            row_sums: s.alloc_zeros::<i32>(m)?,
            row_corr: s.alloc_zeros::<f32>(m)?,
            codes8: s.alloc_zeros::<i8>(m * k16(self.k))?,
        })
    }

    /// Uploads host-quantized activations (`p`-bit, per-token scales: granularity per-channel over rows, no
    /// offsets) into `acts`: tests and offline use. The int8 operand and the row vectors are derived on the host
    /// exactly as the activation kernel computes them.
    pub fn upload_activations(&self, dev: &Device, x: &BipolarMatrix) -> Result<BipolarActivations> {
        x.validate()?;
        if x.k != self.k || x.bits != self.p || x.granularity != Granularity::PerChannel || x.offsets.is_some() {
            return Err(CudaError::InvalidArgument {
                launcher: ACT_LAUNCHER,
                detail: format!(
                    "activations [{}, {}] {}-bit {:?} offsets {}: need K = {}, {} bits, per-token scales, no offsets",
                    x.n,
                    x.k,
                    x.bits,
                    x.granularity,
                    x.offsets.is_some(),
                    self.k,
                    self.p
                ),
            });
        }
        let (m, k) = (x.n, x.k);
        let sums = value_sums(x);
        let ops = int8_operand(&x.codes(), self.p);
        let mut c8 = vec![0i8; m * k16(k)];
        for (r, row) in ops.chunks_exact(k).enumerate() {
            c8[r * k16(k)..r * k16(k) + k].copy_from_slice(row);
        }
        let rc: Vec<f32> = x.scales.iter().zip(&sums).map(|(s, &v)| s * v as f32).collect();
        Ok(BipolarActivations {
            m,
            k,
            bits: self.p,
            planes: upload(dev, &padded_planes(&x.planes, self.p as usize, m, k))?,
            scales: upload(dev, &x.scales)?,
            row_sums: upload(dev, &sums)?,
            row_corr: upload(dev, &rc)?,
            codes8: upload(dev, &c8)?,
        })
    }

    /// Quantizes f16 / bf16 activations `x` (`[m, K]` row-major, `m = acts.m()`) into `acts` on the device's stream
    /// (one kernel: scales, planes, int8 operand, row sums; bit-exact with `BipolarMatrix::quantize` per token).
    pub fn quantize_activations(
        &self,
        dev: &Device,
        x: &CudaSlice<u16>,
        dtype: OutDtype,
        acts: &mut BipolarActivations,
    ) -> Result<()> {
        self.check_device(dev)?;
        let (m, k) = (acts.m, self.k);
        if acts.k != k || acts.bits != self.p {
            return Err(CudaError::InvalidArgument {
                launcher: ACT_LAUNCHER,
                detail: format!(
                    "activation buffers for K = {}, {} bits; weight needs {k}, {}",
                    acts.k, acts.bits, self.p
                ),
            });
        }
        if x.len() < m * k {
            return Err(CudaError::BufferSize { what: "bipolar activations x", expected: m * k, got: x.len() });
        }
        dev.bind_to_thread()?;
        let st = dev.stream();
        let ld = plane_ld(k);
        let (xp, xg) = x.device_ptr(st);
        let (sp, sg) = acts.scales.device_ptr_mut(st);
        let (rp, rg) = acts.row_sums.device_ptr_mut(st);
        let (cp, cg) = acts.row_corr.device_ptr_mut(st);
        let (pp, pg) = acts.planes.device_ptr_mut(st);
        let (qp, qg) = acts.codes8.device_ptr_mut(st);
        // SAFETY: the buffers were allocated by `activations` for m rows of K (planes [p][m][ld], codes [m][K16]),
        // x holds m * K elements (checked); all belong to dev's context, current here; launched on its stream.
        let status = unsafe {
            sys::lowbit_bip_act_quant(
                xp as *const c_void,
                k as i64,
                m as i64,
                k as i64,
                dtype.to_ffi(),
                self.p as i32,
                sp as *mut f32,
                rp as *mut i32,
                cp as *mut f32,
                pp as *mut u32,
                ld as i64,
                (m * ld) as i64,
                qp as *mut i8,
                k16(k) as i64,
                st.cu_stream().cast(),
            )
        };
        drop((xg, sg, rg, cg, pg, qg));
        check_with(status, ACT_LAUNCHER, || format!("m={m} k={k} p={} {dtype:?}", self.p))
    }

    /// `y = epilogue(Y_int)` on the device's stream (see the module docs); `y` is `[M, N]` of `out`'s element
    /// size. With [`I8Out::I32`] `y` receives the mapping's exact integer: `Y_int` for the plane mapping, the int8
    /// core's accumulator for the int8 mapping ([`Self::exact_from_int8`] turns it into `Y_int`).
    #[allow(clippy::too_many_arguments)]
    pub fn run<Y: DeviceRepr>(
        &self,
        dev: &Device,
        acts: &BipolarActivations,
        out: I8Out,
        y: &mut CudaSlice<Y>,
        plan: &BipPlan,
        workspace: Option<&mut CudaSlice<u8>>,
    ) -> Result<()> {
        self.check_device(dev)?;
        let m = plan.m;
        if acts.m != m || acts.k != self.k || acts.bits != self.p {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!(
                    "activations [{}, {}] {}-bit for a plan of m = {m}, K = {}, {} bits",
                    acts.m, acts.k, acts.bits, self.k, self.p
                ),
            });
        }
        let esize = out_elem_bytes(out);
        if std::mem::size_of::<Y>() != esize {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("output {out:?} has {esize}-byte elements, y has {}-byte", std::mem::size_of::<Y>()),
            });
        }
        if y.len() < m * self.n {
            return Err(CudaError::BufferSize { what: "bipolar GEMM y", expected: m * self.n, got: y.len() });
        }
        let have = workspace.as_ref().map_or(0, |w| w.len());
        if have < plan.workspace_bytes {
            return Err(CudaError::BufferSize {
                what: "bipolar GEMM workspace",
                expected: plan.workspace_bytes,
                got: have,
            });
        }
        match plan.mapping {
            BipMapping::Int8 => {
                let side = self.int8.as_ref().ok_or_else(|| CudaError::NoKernel {
                    launcher: LAUNCHER,
                    detail: format!("int8 mapping: {}", self.int8_missing),
                })?;
                let row = |r: Int8RowVector| match r {
                    Int8RowVector::Scales => &acts.scales,
                    Int8RowVector::ScaledSums => &acts.row_corr,
                };
                let epi = I8Epilogue {
                    out,
                    row_scale: RowScale::PerToken(&acts.scales),
                    col_scale: Some(&side.col_scale),
                    correction: side.corr.as_ref().map(|(r, c)| (row(*r), c)),
                    correction2: side.corr2.as_ref().map(|c| (&acts.row_corr, c)),
                    bias: None,
                    out_scale: 1.0,
                    out_scales: None,
                };
                side.gemm_for(m).run(dev, &acts.codes8, m, &epi, y, I8Config::default(), workspace)
            }
            BipMapping::Planes => {
                dev.bind_to_thread()?;
                let st = dev.stream();
                let (yp, yg) = y.device_ptr_mut(st);
                let (wsp, wsg) = match workspace {
                    Some(w) => {
                        let (p, g) = w.device_ptr_mut(st);
                        (p.next_multiple_of(256), Some(g))
                    }
                    None => (0, None),
                };
                let r = self.run_planes(dev, st, acts, out, yp, plan, wsp);
                drop((yg, wsg));
                r
            }
        }
    }

    /// [`Self::run`] on an explicit stream with a raw output and workspace (benchmarks: CUDA-graph capture on a
    /// non-default stream). Same checks on the plan and the activations as [`Self::run`].
    ///
    /// # Safety
    /// `y` addresses `plan.m × N` elements of `out`'s type; `workspace` (256-byte aligned) holds
    /// `workspace_bytes ≥ plan.workspace_bytes` bytes, zero before its first use (0 when the plan needs none);
    /// `stream` belongs to `dev`'s context; `y`, the workspace, `acts` and `self` stay alive until `stream` has run
    /// the launch (the harness disables cudarc's event tracking, so nothing orders them across streams).
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn run_raw(
        &self,
        dev: &Device,
        stream: &Arc<CudaStream>,
        acts: &BipolarActivations,
        out: I8Out,
        y: u64,
        plan: &BipPlan,
        workspace: u64,
        workspace_bytes: usize,
    ) -> Result<()> {
        self.check_device(dev)?;
        let m = plan.m;
        if acts.m != m || acts.k != self.k || acts.bits != self.p || y == 0 {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!(
                    "activations [{}, {}] {}-bit for a plan of m = {m}, K = {}, {} bits (y null: {})",
                    acts.m,
                    acts.k,
                    acts.bits,
                    self.k,
                    self.p,
                    y == 0
                ),
            });
        }
        if workspace_bytes < plan.workspace_bytes || (plan.workspace_bytes > 0 && workspace == 0) {
            return Err(CudaError::BufferSize {
                what: "bipolar GEMM workspace",
                expected: plan.workspace_bytes,
                got: workspace_bytes,
            });
        }
        dev.bind_to_thread()?;
        match plan.mapping {
            BipMapping::Int8 => {
                let side = self.int8.as_ref().ok_or_else(|| CudaError::NoKernel {
                    launcher: LAUNCHER,
                    detail: format!("int8 mapping: {}", self.int8_missing),
                })?;
                let ptr = |s: &CudaSlice<f32>| s.device_ptr(stream).0;
                let (rc, cc) = side.corr.as_ref().map_or((0, 0), |(r, c)| {
                    (
                        match r {
                            Int8RowVector::Scales => ptr(&acts.scales),
                            Int8RowVector::ScaledSums => ptr(&acts.row_corr),
                        },
                        ptr(c),
                    )
                });
                let (rc2, cc2) = side.corr2.as_ref().map_or((0, 0), |c| (ptr(&acts.row_corr), ptr(c)));
                let epi = RawEpilogue {
                    rs: ptr(&acts.scales),
                    rs_val: 0.0,
                    cs: ptr(&side.col_scale),
                    rc,
                    cc,
                    rc2,
                    cc2,
                    ..RawEpilogue::new(out)
                };
                let gemm = side.gemm_for(m);
                let i8plan = gemm.plan(dev, m, I8Config::default())?;
                let x = acts.codes8.device_ptr(stream).0;
                // SAFETY: codes8 holds m rows of K16 int8 (16-byte rows), the epilogue vectors [m] / [N] f32 of this
                // weight and these activations; y, the workspace and the stream as the caller guarantees.
                unsafe {
                    gemm.run_raw(
                        dev,
                        x,
                        k16(self.k),
                        &epi,
                        y,
                        self.n,
                        &i8plan,
                        workspace,
                        workspace_bytes,
                        stream.cu_stream().cast(),
                    )
                }
            }
            BipMapping::Planes => self.run_planes(dev, stream, acts, out, y, plan, workspace),
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn run_planes<'a>(
        &'a self,
        dev: &'a Device,
        st: &'a Arc<CudaStream>,
        acts: &'a BipolarActivations,
        out: I8Out,
        yp: u64,
        plan: &BipPlan,
        wsp: u64,
    ) -> Result<()> {
        dev.bind_to_thread()?;
        let mut guards: Vec<SyncOnDrop<'a>> = Vec::new();
        let mut ptr = |p: (u64, SyncOnDrop<'a>)| keep(&mut guards, p);
        let xp = ptr(acts.planes.device_ptr(st));
        let xs = ptr(acts.row_sums.device_ptr(st));
        let wp = ptr(self.planes.device_ptr(st));
        let ws_sums = ptr(self.row_sums.device_ptr(st));
        let rs = ptr(acts.scales.device_ptr(st));
        let cs = ptr(self.scales.device_ptr(st));
        let (rc, cc) = match &self.offsets {
            Some(o) => (ptr(acts.row_corr.device_ptr(st)), ptr(o.device_ptr(st))),
            None => (0, 0),
        };
        let (x, mut w) = self.operands(xp, xs, plan.m);
        w.planes = wp as *const u32;
        w.row_sums = ws_sums as *const i32;
        let e = sys::lowbit_i8_epilogue {
            out_dtype: out_ffi(out),
            row_scale: rs as *const f32,
            row_scale_value: 1.0,
            col_scale: cs as *const f32,
            row_corr: rc as *const f32,
            col_corr: cc as *const f32,
            bias: std::ptr::null(),
            out_scale: 1.0,
            out_scales: std::ptr::null(),
            // The plane kernels take one rank-1 term (the launcher rejects a second).
            row_corr2: std::ptr::null(),
            col_corr2: std::ptr::null(),
        };
        let cfg = sys::lowbit_bip_config {
            bx: plan.config.bx.unwrap_or(0) as i32,
            splits: plan.config.splits.unwrap_or(0) as i32,
            path: path_code(plan.config.plane_path),
        };
        // SAFETY: every buffer was sized for this weight / these activations (checked in `run` / `run_raw`); all
        // belong to dev's context, current here, and `st` is one of its streams; y is borrowed mutably (`run`) or
        // guaranteed by `run_raw`'s caller; the workspace holds plan.workspace_bytes after 256-byte alignment.
        let status = unsafe {
            sys::lowbit_bip_gemm(
                &x,
                &w,
                self.k as i32,
                &e,
                yp as *mut c_void,
                self.n as i64,
                wsp as *mut c_void,
                plan.workspace_bytes as i64,
                &cfg,
                self.sm_count,
                st.cu_stream().cast(),
            )
        };
        drop(guards);
        check_with(status, LAUNCHER, || {
            format!("m={} n={} k={} W{}A{} out={out:?} {:?}", plan.m, self.n, self.k, self.q, self.p, plan.config)
        })
    }

    /// `Y_int` from the int8 mapping's raw accumulator (`[M, N]`, [`I8Out::I32`]) and the activations' value row
    /// sums: `Y = fx·fw·acc + (p = 8: S_w) + (q = 8: S_x)` (8-bit sides enter as `ŝ`, `v = 2ŝ + 1`).
    pub fn exact_from_int8(&self, acc: &[i32], m: usize, x_row_sums: &[i32]) -> Vec<i64> {
        exact_from_int8_parts(acc, m, self.n, self.k, self.p, self.q, x_row_sums, &self.host_row_sums)
    }
}

fn keep<'a>(guards: &mut Vec<SyncOnDrop<'a>>, p: (u64, SyncOnDrop<'a>)) -> u64 {
    guards.push(p.1);
    p.0
}

fn out_ffi(out: I8Out) -> i32 {
    (match out {
        I8Out::F16 => sys::LOWBIT_I8_OUT_F16,
        I8Out::Bf16 => sys::LOWBIT_I8_OUT_BF16,
        I8Out::I8 => sys::LOWBIT_I8_OUT_I8,
        I8Out::I32 => sys::LOWBIT_I8_OUT_I32,
    }) as i32
}

/// What exists for one bipolar weight on one device: the inputs of [`auto_mapping`] besides the shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MappingKernels {
    /// A plane instance exists ([`BipolarGemm::planes_available`]).
    pub planes: bool,
    /// Activation rows per tile of the warp-specialized plane kernel, 0 if it does not run here
    /// ([`BipolarGemm::ws_tile`]).
    pub ws_tile: u32,
    /// The int8 mapping exists ([`BipolarGemm::int8_mapping`]).
    pub int8: bool,
    /// The int8 mapping streams packed 2- / 4-bit codes at `M ≤` [`PACKED_MAX_M`] ([`BipolarGemm::int8_decode_packed`]).
    pub int8_packed: bool,
    /// Streaming multiprocessors of the device.
    pub sms: u32,
}

/// The automatic mapping rule behind [`BipolarGemm::choose`] for `p`-bit activations, `q`-bit weights, `m` rows,
/// `n` output columns and depth `k`.
///
/// Derived from `lowbit-bench bipolar` on an H100, both mappings timed in the same run (docs/results/h100/bipolar.md,
/// kernels/bipolar/NOTES.md "Chooser"):
/// - `M ≤` [`PACKED_MAX_M`] with packed 2- / 4-bit codes (`q ∈ 2..=4`): the int8 core's streaming kernel (M = 1,
///   28672×8192: W2 6.3× cuBLAS f16 against 4.2× for the planes; W4 3.8× against 2.4×), except for 8 < M ≤ 16 on
///   wide layers (N ≥ 3K), where the packed kernel's 16-row orientation loses to the planes (28672×8192, M = 16:
///   W2A2 56.8 µs against 28.0 µs; on 8192×28672, 8192² and 4096² the packed codes win by 15–50%) while
///   `p·q ≤ 8` (W2A8, W4A4, W4A8 took 108–142 µs on the planes there against 57–70 µs for the packed codes).
/// - Otherwise M ≤ 64: bit planes (`q` bits per weight where the unpacked int8 mapping reads 8).
/// - Where the warp-specialized plane kernel runs (its tiles fill every SM, as the launcher decides) and `p·q ≤ 4`:
///   bit planes (M = 4096, N = K = 8192: W1A4 1.53×, W2A2 1.46×, W4A1 1.15× cuBLASLt int8; the int8 mapping runs
///   1.04–1.07× there with its unsigned operand codes, v21). W2A4 runs on the planes below M = 1024 (M = 256:
///   10–16% ahead on every bench shape with the TMA-store epilogue, docs/results/h100/bipolar.md of the sixth
///   session) and on the int8 core from M = 1024 (6–29% ahead at 1024; at M = 4096 on 8192²: 351.4 µs against the
///   planes' 380.1 µs = 1.06× / 0.98× cuBLASLt int8 in one cool-card run of the tenth session, once the int8 mapping
///   multiplied the unsigned codes; before that the two were within run-to-run noise there).
/// - M ≥ 1024 and `p·q = 1`: bit planes (even the synchronous plane kernel beats the int8 core for W1A1).
/// - Everything else, and W8A8 at every M: the int8 core.
///
/// Where the preferred mapping does not exist the other one runs; `None` when neither does.
pub fn auto_mapping(kn: &MappingKernels, p: u32, q: u32, m: usize, n: usize, k: usize) -> Option<BipMapping> {
    if p == 8 && q == 8 {
        // W8A8: 64 plane products and no plane instance for p·q = 64; the int8 core (IGMMA, two rank-1 epilogue
        // terms) runs it at every M.
        return if kn.int8 { Some(BipMapping::Int8) } else { kn.planes.then_some(BipMapping::Planes) };
    }
    let pq = p * q;
    let ws_runs = kn.ws_tile > 0 && n.div_ceil(128) * m.div_ceil(kn.ws_tile as usize) >= kn.sms as usize;
    let prefer_planes = if m <= PACKED_MAX_M && kn.int8_packed && (2..=4).contains(&q) {
        // 9..=16 rows on a wide layer: the planes win only while their work (p·q plane pairs) stays small.
        m > 8 && n >= 3 * k && pq <= 8
    } else {
        // W2A4 on the planes below M = 1024 too: the ws kernel's TMA-store epilogue (sixth session) made it 10-16%
        // faster than the int8 core at M = 256 on every bench shape, while from M = 1024 the int8 core stays ahead.
        let w2a4_mid = q == 2 && p == 4 && m < 1024;
        m <= 64 || (ws_runs && (pq <= 4 || w2a4_mid)) || (m >= 1024 && pq == 1)
    };
    match (prefer_planes, kn.planes, kn.int8) {
        (true, true, _) | (false, true, false) => Some(BipMapping::Planes),
        (_, _, true) => Some(BipMapping::Int8),
        (_, false, false) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use lowbit_core::bipolar::BipolarMatrix;

    #[test]
    fn padded_planes_keep_rows_and_zero_padding() {
        let k = 70; // 3 words, ld 4
        let codes: Vec<u8> = (0..2 * k).map(|i| (i * 7 % 4) as u8).collect();
        let m = BipolarMatrix::from_codes(2, k, 2, Granularity::PerChannel, &codes, vec![1.0; 2], None).unwrap();
        let p = padded_planes(&m.planes, 2, 2, k);
        assert_eq!(plane_ld(k), 4);
        assert_eq!(p.len(), 2 * 2 * 4);
        for (i, row) in m.planes.chunks_exact(3).enumerate() {
            assert_eq!(&p[i * 4..i * 4 + 3], row);
            assert_eq!(p[i * 4 + 3], 0);
        }
    }

    #[test]
    fn auto_mapping_follows_the_measured_thresholds() {
        use BipMapping::{Int8, Planes};
        let h100 = MappingKernels { planes: true, ws_tile: 128, int8: true, int8_packed: true, sms: 132 };
        let unpacked = MappingKernels { int8_packed: false, ..h100 };
        let no_ws = MappingKernels { ws_tile: 0, ..h100 };
        let auto = |k: &MappingKernels, p, q, m, n, kk| auto_mapping(k, p, q, m, n, kk);
        // Decode: packed 2- / 4-bit codes on the int8 streaming kernel, 1-bit weights (and unpacked ones) on planes.
        for (p, q) in [(2, 2), (8, 2), (1, 4), (4, 4), (8, 3), (2, 4), (4, 2)] {
            assert_eq!(auto(&h100, p, q, 1, 28672, 8192), Some(Int8), "W{q}A{p}");
            assert_eq!(auto(&h100, p, q, 1, 8192, 28672), Some(Int8), "W{q}A{p}");
            assert_eq!(auto(&h100, p, q, 16, 8192, 28672), Some(Int8), "W{q}A{p}");
            assert_eq!(auto(&h100, p, q, 16, 4096, 4096), Some(Int8), "W{q}A{p}");
            // 9..=16 rows on a wide layer: the planes up to p·q = 8 (W2A8, W4A4, W4A8 ran at twice the
            // packed-code time on the planes there: docs/results/h100/bipolar-211e588.md).
            let wide = if p * q <= 8 { Planes } else { Int8 };
            assert_eq!(auto(&h100, p, q, 16, 28672, 8192), Some(wide), "W{q}A{p}");
            assert_eq!(auto(&unpacked, p, q, 1, 28672, 8192), Some(Planes), "W{q}A{p}");
        }
        assert_eq!(auto(&h100, 4, 1, 1, 8192, 8192), Some(Planes));
        assert_eq!(auto(&h100, 2, 2, 64, 8192, 8192), Some(Planes));
        // Large M: the ws plane kernel for p·q <= 4, the int8 core for W2A4, W4A2 and wider pairs.
        for (p, q) in [(1, 1), (2, 2), (4, 1), (1, 4)] {
            assert_eq!(auto(&h100, p, q, 4096, 8192, 8192), Some(Planes), "W{q}A{p}");
        }
        for (p, q) in [(2, 4), (4, 4), (8, 2), (8, 4), (8, 1)] {
            assert_eq!(auto(&h100, p, q, 4096, 8192, 8192), Some(Int8), "W{q}A{p}");
        }
        // W2A4 where the ws kernel runs: the planes below M = 1024, the int8 core from 1024 (8192^2 at M = 4096:
        // 1.06x against the planes' 0.98x cuBLASLt int8 with the unsigned operand codes, v21).
        assert_eq!(auto(&h100, 4, 2, 256, 28672, 8192), Some(Planes));
        assert_eq!(auto(&h100, 4, 2, 1024, 28672, 8192), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 1024, 8192, 8192), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 4096, 8192, 8192), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 8192, 8192, 8192), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 4096, 8192, 28672), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 8192, 28672, 8192), Some(Int8));
        assert_eq!(auto(&h100, 4, 2, 4096, 4096, 4096), Some(Int8));
        assert_eq!(auto(&no_ws, 4, 2, 4096, 8192, 8192), Some(Int8));
        assert_eq!(auto(&h100, 2, 4, 256, 28672, 8192), Some(Int8), "W4A2 stays on the int8 core");
        // The ws kernel's tiles must fill the SMs (64 x 2 = 128 tiles < 132 here); without it only W1A1 stays.
        assert_eq!(auto(&h100, 2, 2, 256, 8192, 8192), Some(Int8));
        assert_eq!(auto(&h100, 2, 2, 256, 28672, 8192), Some(Planes));
        assert_eq!(auto(&no_ws, 2, 2, 4096, 8192, 8192), Some(Int8));
        assert_eq!(auto(&no_ws, 1, 1, 1024, 8192, 8192), Some(Planes));
        assert_eq!(auto(&no_ws, 1, 1, 256, 8192, 8192), Some(Int8));
        // The other mapping runs where the preferred one is missing.
        let int8_only = MappingKernels { planes: false, ws_tile: 0, ..h100 };
        let planes_only = MappingKernels { int8: false, int8_packed: false, ..h100 };
        assert_eq!(auto(&int8_only, 2, 2, 64, 8192, 8192), Some(Int8));
        assert_eq!(auto(&int8_only, 2, 2, 16, 28672, 8192), Some(Int8));
        assert_eq!(auto(&planes_only, 4, 4, 4096, 8192, 8192), Some(Planes));
        let none = MappingKernels { planes: false, ws_tile: 0, int8: false, int8_packed: false, sms: 132 };
        assert_eq!(auto(&none, 2, 2, 4096, 8192, 8192), None);
        // W8A8: the int8 core at every M (even where a plane instance would exist).
        for m in [1, 16, 64, 256, 4096] {
            assert_eq!(auto(&h100, 8, 8, m, 8192, 8192), Some(Int8), "W8A8 m={m}");
            assert_eq!(auto(&unpacked, 8, 8, m, 28672, 8192), Some(Int8), "W8A8 m={m}");
        }
        assert_eq!(auto(&planes_only, 8, 8, 4096, 8192, 8192), Some(Planes));
        assert_eq!(auto(&none, 8, 8, 1, 8192, 8192), None);
    }

    /// The int8 mapping's algebra, on the CPU for every (p, q), W8A8 included: int8 operands, an exact int32 product
    /// (lowbit-core's int8 reference GEMM) and the correction give the bipolar product exactly.
    #[test]
    fn int8_mapping_is_exact_for_every_pq() {
        let (m, n, k) = (5, 7, 83);
        for p in 1..=8u32 {
            for q in 1..=8u32 {
                let cx: Vec<u8> = (0..m * k).map(|i| ((i * 131 + p as usize * 7) % (1 << p)) as u8).collect();
                let cw: Vec<u8> = (0..n * k).map(|i| ((i * 197 + q as usize * 3) % (1 << q)) as u8).collect();
                let x = BipolarMatrix::from_codes(m, k, p, Granularity::PerChannel, &cx, vec![1.0; m], None).unwrap();
                let w = BipolarMatrix::from_codes(n, k, q, Granularity::PerChannel, &cw, vec![1.0; n], None).unwrap();
                let acc = lowbit_core::int8::gemm_i32(&int8_operand(&cx, p), m, k, &int8_operand(&cw, q), n);
                let got = exact_from_int8_parts(&acc, m, n, k, p, q, &value_sums(&x), &value_sums(&w));
                let want: Vec<i64> = lowbit_core::reference::bipolar_gemm_exact(&x, &w).unwrap().into_iter().collect();
                assert_eq!(got, want, "W{q}A{p}");
            }
        }
    }

    /// The int8 mapping's epilogue vectors, on the CPU for every (p, q) with and without weight offsets: the int8
    /// core's epilogue (lowbit-core `Epilogue::value`, both rank-1 terms, the kernel's f32 operation order) on the
    /// exact accumulator gives `a_x·(a_w·Y + b_w·S_x)` (f64 reference) to f32 rounding; every pair uses both terms.
    #[test]
    fn int8_epilogue_vectors_give_the_scaled_product() {
        let (m, n, k) = (6, 9, 211);
        let mut seed = 7u64;
        let mut rnd = move || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) as f64 / (1u64 << 31) as f64) as f32
        };
        for p in 1..=8u32 {
            for q in 1..=8u32 {
                for with_off in [false, true] {
                    let cx: Vec<u8> = (0..m * k).map(|_| (rnd() * (1 << p) as f32) as u8).collect();
                    let cw: Vec<u8> = (0..n * k).map(|_| (rnd() * (1 << q) as f32) as u8).collect();
                    let ax: Vec<f32> = (0..m).map(|_| 0.01 + 0.02 * rnd()).collect();
                    let aw: Vec<f32> = (0..n).map(|_| 0.005 + 0.01 * rnd()).collect();
                    let bw: Option<Vec<f32>> = with_off.then(|| (0..n).map(|_| rnd() - 0.5).collect());
                    let g = Granularity::PerChannel;
                    let x = BipolarMatrix::from_codes(m, k, p, g, &cx, ax.clone(), None).unwrap();
                    let w = BipolarMatrix::from_codes(n, k, q, g, &cw, aw.clone(), bw.clone()).unwrap();
                    let (sx, sw) = (value_sums(&x), value_sums(&w));
                    let v = int8_epilogue_vectors(p, q, k, &aw, bw.as_deref(), &sw);
                    assert!(v.corr2.is_some() && v.corr.is_some(), "W{q}A{p} offsets {with_off}: both terms");
                    let axsx: Vec<f32> = ax.iter().zip(&sx).map(|(a, &s)| a * s as f32).collect();
                    let row = |r: Int8RowVector| if r == Int8RowVector::Scales { ax.clone() } else { axsx.clone() };
                    let e = lowbit_core::int8::Epilogue {
                        row_scale: Some(ax.clone()),
                        col_scale: Some(v.col_scale.clone()),
                        correction: v.corr.as_ref().map(|(r, c)| (row(*r), c.clone())),
                        correction2: v.corr2.as_ref().map(|c| (axsx.clone(), c.clone())),
                        ..Default::default()
                    };
                    let acc = lowbit_core::int8::gemm_i32(&int8_operand(&cx, p), m, k, &int8_operand(&cw, q), n);
                    let y = lowbit_core::reference::bipolar_gemm_exact(&x, &w).unwrap();
                    for r in 0..m {
                        for c in 0..n {
                            let off = bw.as_ref().map_or(0.0, |b| b[c] as f64 * sx[r] as f64);
                            let want = ax[r] as f64 * (aw[c] as f64 * y[[r, c]] as f64 + off);
                            // The terms' magnitudes bound the f32 rounding of the sum (a few ulps of each).
                            let (dx, dw) = (int8_value_offset(p) as f64, int8_value_offset(q) as f64);
                            let mag = ax[r] as f64
                                * (aw[c] as f64 * (4 * acc[r * n + c] as i64).unsigned_abs() as f64
                                    + aw[c] as f64 * dx.abs() * (sw[c] as f64 - k as f64 * dw).abs()
                                    + (aw[c] as f64 * dw.abs() + bw.as_ref().map_or(0.0, |b| b[c].abs() as f64))
                                        * sx[r].unsigned_abs() as f64);
                            let got = e.value(acc[r * n + c], r, c) as f64;
                            assert!(
                                (got - want).abs() <= 1e-6 * mag + 1e-30,
                                "W{q}A{p} offsets {with_off} ({r}, {c}): got {got} want {want} (scale {mag})"
                            );
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn value_sums_match_values() {
        let k = 45;
        for bits in 1..=8u32 {
            let codes: Vec<u8> = (0..3 * k).map(|i| ((i * 37 + 11) % (1 << bits)) as u8).collect();
            let m = BipolarMatrix::from_codes(3, k, bits, Granularity::PerChannel, &codes, vec![1.0; 3], None).unwrap();
            let want: Vec<i32> = m.values().rows().into_iter().map(|r| r.sum()).collect();
            assert_eq!(value_sums(&m), want, "bits {bits}");
        }
    }
}
