//! Suite `weight-only`: the weight-only GEMM `Y[M, N] = X[M, K] · dequant(W)[N, K]ᵀ`
//! ([`lowbit_cuda::WeightOnlyGemm`]) against cuBLAS fp16 / bf16 on the same shapes, in the same run.
//!
//! Per shape:
//! 1. **Weights**: a chunk of random-normal rows is quantized once per scheme and tiled to all
//!    N rows ([`crate::weights`]); each scheme's weight is uploaded `R` times (`R × bytes ≥ 3 × L2`);
//!    the cuBLAS baselines get `R'` copies of the (unquantized) fp16 / bf16 weight of the same shape.
//! 2. **Activations**: one random `[max M, K]` matrix per dtype (uniform ±1); each M uses its first
//!    M rows. Activations and outputs are not rotated (L2-resident when they fit, as in decode).
//! 3. **Timing**, for each M: every baseline, then every scheme with the baseline's dtype, so a
//!    kernel and its baseline are measured minutes apart at most, on the same card and stream
//!    ([`crate::timing::Timer`]). One row per (scheme, M, baseline): like with like, the kernel
//!    runs with the baseline's activation type.
//! 4. **Spot check** (after timing, per scheme and dtype): the kernel's output (into a NaN-poisoned
//!    buffer) against cuBLAS on the *dequantized* weight (exact dequantization rounded to the
//!    dtype); the relative Frobenius error is recorded in every row (`rel_err`, `check_ok`), so a
//!    fast wrong kernel cannot look good.

use std::collections::HashMap;
use std::fmt::Write as _;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use lowbit_core::{Granularity, WeightScheme};
use lowbit_cuda::{GemmConfig, OutDtype, WeightOnlyGemm};
use serde::{Deserialize, Serialize};

use crate::baseline::Baseline;
use crate::context::BenchContext;
use crate::error::{BenchError, Result};
use crate::progress::Progress;
use crate::report::{Report, Skipped, fmt_opt};
use crate::shapes::Shape;
use crate::suites::common::{SyncOnExit, is_soft};
use crate::timing::{Measurement, TimingConfig, TimingMethod, rotation_copies};
use crate::weights::{
    WEIGHT_STD, chunk_rows_for, dequantized_bits, float_bits, from_bits, prepare, random_activations, random_normal,
};

/// Suite name (file names, `suite` field).
pub const SUITE: &str = "weight-only";

/// Default M sweep.
pub const DEFAULT_MS: [usize; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// M sweep of `--quick`.
pub const QUICK_MS: [usize; 3] = [1, 16, 256];

/// Default scheme list.
pub const DEFAULT_SCHEMES: &str = "w4-int-g128";

/// Every scheme the weight-only kernels implement that the suite knows how to report.
pub const ALL_SCHEMES: &str =
    "w4-int-g128,w3-mixed-g128,w4-mixed-g128,w4-nf4-g128,w8-int-pc,w2-int-g128,w3-int-g128,w4-int-asym-g128";

/// Relative Frobenius error above which a spot check fails, per dtype. The kernel and cuBLAS both
/// accumulate in f32 and round the output once; the tolerance is twice the test suite's budget
/// against the exact f64 reference (`weight_only_gpu.rs`: 2e-3 f16, 1.2e-2 bf16).
pub fn check_tolerance(dtype: OutDtype) -> f64 {
    match dtype {
        OutDtype::F16 => 4e-3,
        OutDtype::Bf16 => 2.4e-2,
    }
}

/// The suite's configuration.
#[derive(Debug, Clone)]
pub struct WeightOnlyConfig {
    /// Shapes to run.
    pub shapes: Vec<Shape>,
    /// M values.
    pub ms: Vec<usize>,
    /// Weight schemes.
    pub schemes: Vec<WeightScheme>,
    /// Baselines (each also fixes the kernel's activation type for its rows).
    pub baselines: Vec<Baseline>,
    /// Timing knobs.
    pub timing: TimingConfig,
    /// Run the correctness spot check.
    pub check: bool,
    /// RNG seed.
    pub seed: u64,
    /// Host threads for preparation.
    pub threads: usize,
    /// Rows quantized per (shape, scheme); the rest repeat them (0 = quantize every row).
    pub chunk_rows: usize,
    /// Launch overrides of the kernel (path; `default()` = automatic).
    pub gemm: GemmConfig,
}

/// Kernel id of a scheme in reports: `w{bits}a16-{kind}-{granularity}`, e.g. `w4a16-int-g128`,
/// `w3a16-mixed-g128`, `w8a16-int-pc`, `w4a16-int-asym-g128`, `w4a16-nf4-g128`.
pub fn op_name(scheme: &WeightScheme) -> String {
    let s = scheme.to_string();
    let rest = s.split_once('-').map_or(s.as_str(), |(_, r)| r);
    format!("w{}a16-{rest}", scheme.bits)
}

/// Parses a comma-separated scheme list (`all` = [`ALL_SCHEMES`]); rejects bipolar and custom tables,
/// which the weight-only GEMM does not run.
pub fn parse_schemes(s: &str) -> Result<Vec<WeightScheme>> {
    let list = if s.trim().eq_ignore_ascii_case("all") { ALL_SCHEMES } else { s };
    let mut out: Vec<WeightScheme> = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let scheme: WeightScheme = part.parse()?;
        if matches!(scheme.kind, lowbit_core::SchemeKind::Bipolar | lowbit_core::SchemeKind::Lut) {
            return Err(BenchError::invalid(format!(
                "scheme '{part}': bipolar and custom-table weights do not run on the weight-only GEMM"
            )));
        }
        if !out.contains(&scheme) {
            out.push(scheme);
        }
    }
    if out.is_empty() {
        return Err(BenchError::invalid("no scheme given"));
    }
    Ok(out)
}

/// One measured point: a kernel at one (shape, M, dtype) against one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Kernel id, e.g. `w4a16-int-g128`.
    pub op: String,
    /// Weight scheme, e.g. `w4-int-g128`.
    pub scheme: String,
    /// Activation / output type of the kernel (= the baseline's).
    pub dtype: String,
    /// Rows of X and Y.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Bits per weight code.
    pub bits: u32,
    /// Group size along K (`null` = per-channel).
    pub group: Option<usize>,
    /// Kernel time per call, median, µs.
    pub time_us: f64,
    /// Kernel time, 10th percentile over repetitions, µs.
    pub time_us_p10: f64,
    /// Kernel time, 90th percentile, µs.
    pub time_us_p90: f64,
    /// Baseline name (`cublas-f16`, `cublas-bf16`).
    pub baseline: Baseline,
    /// Baseline time per call, median, µs.
    pub baseline_us: f64,
    /// `baseline_us / time_us` (> 1: the kernel is faster).
    pub speedup: f64,
    /// Kernel TFLOP/s, `2·M·N·K / time`.
    pub tflops: f64,
    /// Baseline TFLOP/s.
    pub baseline_tflops: f64,
    /// Stored bytes of the quantized weight (codes + metadata, `WeightOnlyGemm::weight_bytes`).
    pub weight_bytes: usize,
    /// Bytes of the weight in the kernels' tiled layout (what the kernel reads).
    pub device_bytes: usize,
    /// `weight_bytes / time`, GB/s (10⁹ B/s).
    pub weight_gbps: f64,
    /// `(device_bytes + 2·M·K + 2·M·N) / time`, GB/s: weight, activations and outputs.
    pub io_gbps: f64,
    /// `weight_gbps` as % of the card's HBM peak (`null` for unknown cards).
    pub pct_of_hbm: Option<f64>,
    /// `weight_gbps` as % of the copy bandwidth measured in this run.
    pub pct_of_copy: Option<f64>,
    /// `weight_gbps` as % of the read-only kernel's bandwidth measured in this run (the card's read ceiling).
    pub pct_of_read: Option<f64>,
    /// Baseline weight bytes (`2·N·K`) per baseline time, GB/s.
    pub baseline_weight_gbps: f64,
    /// Spot check: relative Frobenius error of the kernel vs cuBLAS on the dequantized weight.
    pub rel_err: Option<f64>,
    /// Spot check passed (`rel_err ≤` [`check_tolerance`]); `null` when not checked.
    pub check_ok: Option<bool>,
    /// How the kernel's batches were issued.
    pub timing: TimingMethod,
    /// How the baseline's batches were issued.
    pub baseline_timing: TimingMethod,
    /// Kernel launches per timed batch.
    pub calls_per_rep: usize,
    /// Timed batches (kernel).
    pub reps: usize,
    /// Weight copies rotated through (kernel).
    pub copies: usize,
    /// Weight copies rotated through (baseline).
    pub baseline_copies: usize,
    /// Timing remarks (graph fallback, launch-bound batches).
    pub notes: Vec<String>,
}

/// Everything [`make_row`] needs about the weight and the card.
#[derive(Debug, Clone, Copy)]
pub struct RowContext {
    /// Stored bytes of the quantized weight.
    pub weight_bytes: usize,
    /// Bytes of the tiled weight.
    pub device_bytes: usize,
    /// HBM peak of the card, GB/s.
    pub hbm_peak_gbps: Option<f64>,
    /// Measured copy bandwidth, GB/s.
    pub copy_gbps: Option<f64>,
    /// Measured read-only kernel bandwidth, GB/s.
    pub read_gbps: Option<f64>,
}

fn notes_of(who: &str, m: &Measurement) -> Vec<String> {
    let mut v = Vec::new();
    if let Some(f) = &m.fallback {
        v.push(format!("{who}: {f}"));
    }
    if m.launch_bound {
        v.push(format!("{who}: stream launches were host-bound (time may be the launch rate)"));
    }
    v
}

/// Builds a row from the two measurements (all derived figures computed here).
#[allow(clippy::too_many_arguments)]
pub fn make_row(
    scheme: &WeightScheme,
    (m, n, k): (usize, usize, usize),
    kernel: &Measurement,
    baseline: Baseline,
    base: &Measurement,
    ctx: RowContext,
) -> Row {
    let t = kernel.stats.median;
    let tb = base.stats.median;
    let flops = 2.0 * m as f64 * n as f64 * k as f64;
    let gbps = |bytes: f64, us: f64| bytes / (us * 1e-6) / 1e9;
    let weight_gbps = gbps(ctx.weight_bytes as f64, t);
    let io = ctx.device_bytes as f64 + 2.0 * (m * k) as f64 + 2.0 * (m * n) as f64;
    let mut notes = notes_of("kernel", kernel);
    notes.extend(notes_of("baseline", base));
    Row {
        op: op_name(scheme),
        scheme: scheme.to_string(),
        dtype: baseline.dtype().to_string(),
        m,
        n,
        k,
        bits: scheme.bits,
        group: match scheme.granularity {
            Granularity::Group(g) => Some(g),
            Granularity::PerChannel => None,
        },
        time_us: t,
        time_us_p10: kernel.stats.p10,
        time_us_p90: kernel.stats.p90,
        baseline,
        baseline_us: tb,
        speedup: tb / t,
        tflops: flops / (t * 1e-6) / 1e12,
        baseline_tflops: flops / (tb * 1e-6) / 1e12,
        weight_bytes: ctx.weight_bytes,
        device_bytes: ctx.device_bytes,
        weight_gbps,
        io_gbps: gbps(io, t),
        pct_of_hbm: ctx.hbm_peak_gbps.map(|p| 100.0 * weight_gbps / p),
        pct_of_copy: ctx.copy_gbps.map(|p| 100.0 * weight_gbps / p),
        pct_of_read: ctx.read_gbps.map(|p| 100.0 * weight_gbps / p),
        baseline_weight_gbps: gbps(2.0 * n as f64 * k as f64, tb),
        rel_err: None,
        check_ok: None,
        timing: kernel.method,
        baseline_timing: base.method,
        calls_per_rep: kernel.calls_per_rep,
        reps: kernel.reps,
        copies: kernel.copies,
        baseline_copies: base.copies,
        notes,
    }
}

/// Relative Frobenius error `‖got − want‖ / ‖want‖` of two 16-bit outputs of `dtype`; NaN when
/// `got` holds a non-finite value (poison left behind, overflow). Parallel over `threads`.
pub fn rel_frobenius(got: &[u16], want: &[u16], dtype: OutDtype, threads: usize) -> f64 {
    assert_eq!(got.len(), want.len(), "outputs of different sizes");
    if got.is_empty() {
        return 0.0;
    }
    let per = got.len().div_ceil(threads.max(1));
    let parts: Vec<(f64, f64, bool)> = std::thread::scope(|s| {
        let hs: Vec<_> = got
            .chunks(per)
            .zip(want.chunks(per))
            .map(|(g, w)| {
                s.spawn(move || {
                    let (mut num, mut den, mut finite) = (0.0f64, 0.0f64, true);
                    for (&a, &b) in g.iter().zip(w) {
                        let (a, b) = (from_bits(a, dtype), from_bits(b, dtype));
                        finite &= a.is_finite();
                        num += (a - b) * (a - b);
                        den += b * b;
                    }
                    (num, den, finite)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    if parts.iter().any(|p| !p.2) {
        return f64::NAN;
    }
    let (num, den) = parts.iter().fold((0.0, 0.0), |(a, b), p| (a + p.0, b + p.1));
    (num / den.max(f64::MIN_POSITIVE)).sqrt()
}

/// Whether an error concerns only one point (unsupported shape / plan), so the suite can skip it
/// and go on, rather than a broken device.
/// Rows, skipped points and the abort reason of a run.
#[derive(Debug, Default)]
pub struct SuiteOutput {
    /// Measured rows.
    pub rows: Vec<Row>,
    /// Points not measured.
    pub skipped: Vec<Skipped>,
    /// Why the run stopped early, if it did.
    pub aborted: Option<String>,
}

/// Number of timed operations of a run (for the progress bar).
pub fn planned_ops(cfg: &WeightOnlyConfig) -> u64 {
    (cfg.shapes.len() * cfg.ms.len() * cfg.baselines.len() * (1 + cfg.schemes.len())) as u64
}

/// Runs the suite. Errors that concern one point skip it; any other error stops the run and is
/// reported in [`SuiteOutput::aborted`] (the rows measured so far are kept).
pub fn run(ctx: &BenchContext, cfg: &WeightOnlyConfig, pb: &Progress) -> SuiteOutput {
    let mut out = SuiteOutput::default();
    for shape in &cfg.shapes {
        if let Err(e) = run_shape(ctx, cfg, shape, pb, &mut out) {
            out.aborted = Some(format!("shape {}: {e}", shape.id()));
            let _ = ctx.stream().synchronize();
            break;
        }
    }
    out
}

/// `chunk` (`rows × k` 16-bit values) uploaded and repeated row-wise to `n` rows on the device.
fn upload_tiled_rows(stream: &std::sync::Arc<CudaStream>, chunk: &[u16], n: usize, k: usize) -> Result<CudaSlice<u16>> {
    let rows = chunk.len() / k;
    let src = stream.clone_htod(chunk)?;
    if rows >= n {
        return Ok(src);
    }
    let mut full = stream.alloc_zeros::<u16>(n * k)?;
    let mut r0 = 0;
    while r0 < n {
        let r = rows.min(n - r0);
        stream.memcpy_dtod(&src.slice(..r * k), &mut full.slice_mut(r0 * k..(r0 + r) * k))?;
        r0 += r;
    }
    Ok(full)
}

/// `copies` device copies of `first` (the first is `first` itself).
fn replicate(stream: &std::sync::Arc<CudaStream>, first: CudaSlice<u16>, copies: usize) -> Result<Vec<CudaSlice<u16>>> {
    let mut v = Vec::with_capacity(copies);
    for _ in 1..copies {
        v.push(stream.clone_dtod(&first)?);
    }
    v.insert(0, first);
    Ok(v)
}

/// Synchronizes a stream when dropped, so buffers declared before it (and freed on another
/// stream) are not released while the stream still uses them.
/// One scheme's device state for a shape.
struct SchemeState {
    scheme: WeightScheme,
    chunk: lowbit_core::QuantizedWeight,
    copies: Vec<WeightOnlyGemm>,
    row_ctx: RowContext,
}

fn run_shape(
    ctx: &BenchContext,
    cfg: &WeightOnlyConfig,
    shape: &Shape,
    pb: &Progress,
    out: &mut SuiteOutput,
) -> Result<()> {
    let (n, k) = (shape.n, shape.k);
    let (dev, stream) = (ctx.device(), ctx.stream());
    let cublas = ctx.cublas()?;
    let l2 = dev.info().l2_cache_bytes;
    let factor = cfg.timing.l2_factor;
    let timer = ctx.timer(cfg.timing.clone());
    let m_max = cfg.ms.iter().copied().max().unwrap_or(1);
    let seed = cfg.seed ^ (n as u64).wrapping_mul(1_000_003) ^ (k as u64).wrapping_mul(7919);
    let card = ctx.card();
    let id = shape.id();

    // 1. Weights.
    let rows = chunk_rows_for(n, cfg.chunk_rows);
    pb.set_message(format!("{id}: generating {rows}x{k} weights"));
    let floats = random_normal(rows, k, seed, WEIGHT_STD, cfg.threads);
    let mut base_w: Vec<(Baseline, Vec<CudaSlice<u16>>)> = Vec::new();
    for &b in &cfg.baselines {
        let full = upload_tiled_rows(stream, &float_bits(floats.view(), b.dtype()), n, k)?;
        base_w.push((b, replicate(stream, full, rotation_copies(2 * n * k, l2, factor))?));
    }
    let mut schemes: Vec<SchemeState> = Vec::new();
    for scheme in &cfg.schemes {
        pb.set_message(format!("{id}: quantizing {scheme}"));
        let state = prepare(floats.view(), n, scheme, cfg.threads).and_then(|prepared| {
            let device_bytes = prepared.tiled.device_bytes();
            let r = rotation_copies(device_bytes, l2, factor);
            let copies = (0..r)
                .map(|_| WeightOnlyGemm::from_tiled(dev, &prepared.tiled, *scheme, prepared.storage_bytes))
                .collect::<std::result::Result<Vec<_>, _>>()?;
            pb.log(format!(
                "{id} {}: quantized {rows} rows in {:.2} s, {:.1} MB x {r} copies",
                op_name(scheme),
                prepared.seconds,
                device_bytes as f64 / 1e6
            ));
            Ok(SchemeState {
                scheme: *scheme,
                chunk: prepared.chunk,
                copies,
                row_ctx: RowContext {
                    weight_bytes: prepared.storage_bytes,
                    device_bytes,
                    hbm_peak_gbps: card.hbm_peak_gbps,
                    copy_gbps: card.copy_gbps,
                    read_gbps: card.read_gbps,
                },
            })
        });
        match state {
            Ok(st) => schemes.push(st),
            Err(e) if is_soft(&e) => {
                out.skipped.push(Skipped { what: format!("{} {id}", op_name(scheme)), reason: e.to_string() });
            }
            Err(e) => return Err(e),
        }
    }
    // The weight copies were allocated on the device's default stream: whatever way this function
    // returns, the timing stream must be idle before they are freed (dropped after this guard).
    let _sync = SyncOnExit(stream);
    drop(floats);

    // 2. Activations (one [m_max, K] matrix per dtype) and the output buffer.
    let mut xs: HashMap<OutDtype, CudaSlice<u16>> = HashMap::new();
    for &b in &cfg.baselines {
        if let std::collections::hash_map::Entry::Vacant(e) = xs.entry(b.dtype()) {
            e.insert(stream.clone_htod(&random_activations(m_max, k, b.dtype(), seed ^ 0x5EED, cfg.threads))?);
        }
    }
    let mut y = stream.alloc_zeros::<u16>(m_max * n)?;
    stream.synchronize()?;
    let y_ptr = y.device_ptr_mut(stream).0;

    // 3. Timing.
    let first_row = out.rows.len();
    for &m in &cfg.ms {
        let mut base_times: Vec<(Baseline, Measurement)> = Vec::new();
        for (b, copies) in &base_w {
            pb.set_message(format!("{id} M={m} {b}"));
            let x_ptr = xs[&b.dtype()].device_ptr(stream).0;
            let w_ptrs: Vec<u64> = copies.iter().map(|w| w.device_ptr(stream).0).collect();
            let meas = timer.measure(w_ptrs.len(), |i| {
                // SAFETY: x holds m_max ≥ m rows of K, each weight copy N·K and y m_max·N elements of the
                // baseline's dtype, all allocated on this stream's context and alive until the
                // stream is synchronized at the end of this function.
                Ok(unsafe { cublas.gemm_raw(b.dtype(), m, n, k, x_ptr, w_ptrs[i], y_ptr) }?)
            })?;
            pb.inc();
            base_times.push((*b, meas));
        }
        for st in &schemes {
            for (b, base) in &base_times {
                let dtype = b.dtype();
                let what = format!("{} {id} M={m} {dtype}", op_name(&st.scheme));
                pb.set_message(what.clone());
                match time_kernel(ctx, &timer, st, m, dtype, xs[&dtype].device_ptr(stream).0, y_ptr, cfg.gemm) {
                    Ok(meas) => {
                        let row = make_row(&st.scheme, (m, n, k), &meas, *b, base, st.row_ctx);
                        pb.log(format!(
                            "{what}: {:.1} us vs {b} {:.1} us -> {:.2}x, {:.0} GB/s of weights",
                            row.time_us, row.baseline_us, row.speedup, row.weight_gbps
                        ));
                        out.rows.push(row);
                    }
                    Err(e) if is_soft(&e) => out.skipped.push(Skipped { what, reason: e.to_string() }),
                    Err(e) => return Err(e),
                }
                pb.inc();
            }
        }
    }
    stream.synchronize()?;

    // 4. Spot check.
    if cfg.check {
        for st in &schemes {
            for &b in &cfg.baselines {
                let dtype = b.dtype();
                pb.set_message(format!("{id}: checking {} {dtype}", op_name(&st.scheme)));
                let w_ref = upload_tiled_rows(stream, &dequantized_bits(&st.chunk, dtype), n, k)?;
                let mut y_ref = stream.alloc_zeros::<u16>(m_max * n)?;
                for &m in &cfg.ms {
                    let checked = check_point(ctx, st, &w_ref, &mut y, &mut y_ref, (m, n, k), &xs[&dtype], dtype, cfg);
                    let (rel, ok) = match checked {
                        Ok(r) => (Some(r), Some(r <= check_tolerance(dtype))),
                        Err(e) if is_soft(&e) => (None, None),
                        Err(e) => return Err(e),
                    };
                    if ok == Some(false) {
                        pb.log(format!(
                            "CHECK FAILED {} {id} M={m} {dtype}: relative error {} > {:.1e}",
                            op_name(&st.scheme),
                            fmt_opt(rel, 6),
                            check_tolerance(dtype)
                        ));
                    }
                    for row in out.rows[first_row..].iter_mut() {
                        if row.scheme == st.scheme.to_string() && row.m == m && row.dtype == dtype.to_string() {
                            row.rel_err = rel.filter(|r| r.is_finite());
                            row.check_ok = ok;
                        }
                    }
                }
                stream.synchronize()?;
            }
        }
    }
    stream.synchronize()?;
    Ok(())
}

/// Times one scheme at (M, dtype).
#[allow(clippy::too_many_arguments)]
fn time_kernel(
    ctx: &BenchContext,
    timer: &crate::timing::Timer,
    st: &SchemeState,
    m: usize,
    dtype: OutDtype,
    x_ptr: u64,
    y_ptr: u64,
    gemm: GemmConfig,
) -> Result<Measurement> {
    let (dev, stream) = (ctx.device(), ctx.stream());
    let (_, k) = st.copies[0].shape();
    let plan = st.copies[0].plan(dev, m, dtype, gemm)?;
    let mut ws = st.copies[0].workspace(dev, &plan)?;
    dev.synchronize()?; // the workspace was allocated on the device's default stream
    let ws_ptr = ws.as_mut().map_or(0, |w| w.device_ptr_mut(stream).0);
    let raw_stream = stream.cu_stream().cast();
    let meas = timer.measure(st.copies.len(), |i| {
        // SAFETY: x holds ≥ m rows of K elements and y ≥ m·N elements of `dtype`, the workspace the
        // planned bytes; all live in this device's context until the stream is synchronized below,
        // and the launch goes to the timing stream of that context.
        Ok(unsafe { st.copies[i].run_raw(dev, x_ptr, k, y_ptr, &plan, ws_ptr, raw_stream) }?)
    });
    stream.synchronize()?; // before the workspace is freed
    meas
}

/// Runs the kernel (copy 0) into a poisoned output and cuBLAS on the dequantized weight; returns
/// the relative Frobenius error of the first M rows.
#[allow(clippy::too_many_arguments)]
fn check_point(
    ctx: &BenchContext,
    st: &SchemeState,
    w_ref: &CudaSlice<u16>,
    y: &mut CudaSlice<u16>,
    y_ref: &mut CudaSlice<u16>,
    (m, n, k): (usize, usize, usize),
    x: &CudaSlice<u16>,
    dtype: OutDtype,
    cfg: &WeightOnlyConfig,
) -> Result<f64> {
    let (dev, stream) = (ctx.device(), ctx.stream());
    let g = &st.copies[0];
    let plan = g.plan(dev, m, dtype, cfg.gemm)?;
    let mut ws = g.workspace(dev, &plan)?;
    dev.synchronize()?;
    let x_ptr = x.device_ptr(stream).0;
    let y_ptr = y.device_ptr_mut(stream).0;
    let ws_ptr = ws.as_mut().map_or(0, |w| w.device_ptr_mut(stream).0);
    // SAFETY: y holds ≥ m·N 16-bit elements on this context; 0xFF bytes are a NaN in f16 and bf16.
    unsafe { cudarc::driver::result::memset_d8_async(y_ptr, 0xFF, m * n * 2, stream.cu_stream()) }?;
    // SAFETY: as in `time_kernel`.
    unsafe { g.run_raw(dev, x_ptr, k, y_ptr, &plan, ws_ptr, stream.cu_stream().cast()) }?;
    let y_ref_ptr = y_ref.device_ptr_mut(stream).0;
    // SAFETY: x ≥ m·K, w_ref N·K, y_ref ≥ m·N elements of `dtype` on this context.
    unsafe { ctx.cublas()?.gemm_raw(dtype, m, n, k, x_ptr, w_ref.device_ptr(stream).0, y_ref_ptr) }?;
    let got = stream.clone_dtoh(&y.slice(..m * n))?;
    let want = stream.clone_dtoh(&y_ref.slice(..m * n))?;
    Ok(rel_frobenius(&got, &want, dtype, cfg.threads))
}

/// The Markdown summary of a report: header (card, clocks, versions, method) and, per shape and
/// baseline, a table of M × scheme with the kernel time and the speedup.
pub fn markdown(r: &Report<Row>) -> String {
    let mut s = String::new();
    let c = &r.card;
    let sw = &r.software;
    let _ = writeln!(s, "# {} on {} ({})\n", r.suite, c.name, c.slug);
    let _ =
        writeln!(s, "Generated by `lowbit-bench` from `{}.json` ({} to {}).\n", r.suite, r.started_utc, r.finished_utc);
    let _ = writeln!(
        s,
        "- Card: {}, {} SMs, cc {}, L2 {:.0} MiB, {:.0} GiB; HBM peak {} GB/s{}; measured D2D copy {} GB/s, \
         read-only kernel {} GB/s",
        c.name,
        c.sm_count,
        c.compute_capability,
        c.l2_cache_bytes as f64 / (1u64 << 20) as f64,
        c.memory_bytes as f64 / (1u64 << 30) as f64,
        fmt_opt(c.hbm_peak_gbps, 0),
        c.hbm_peak_source.as_ref().map_or(String::new(), |src| format!(" ({src})")),
        fmt_opt(c.copy_gbps, 0),
        fmt_opt(c.read_gbps, 0),
    );
    if let Some(cs) = &c.clock_samples {
        let _ = writeln!(
            s,
            "- SM clock while busy: median {} MHz, p5 {} MHz, min {} MHz ({} of {} samples busy); power median {} W, max {} W",
            fmt_opt(cs.busy_sm_mhz_median, 0),
            fmt_opt(cs.busy_sm_mhz_p5, 0),
            fmt_opt(cs.busy_sm_mhz_min, 0),
            cs.busy_samples,
            cs.samples,
            fmt_opt(cs.busy_power_w_median, 0),
            fmt_opt(cs.power_w_max, 0),
        );
    }
    let _ = writeln!(
        s,
        "- Software: driver {} (CUDA {}), kernels' cudart {}, cuBLAS {}, {}, archs {}",
        sw.driver.as_deref().unwrap_or("?"),
        sw.driver_cuda,
        sw.cuda_runtime,
        sw.cublas.as_deref().unwrap_or("?"),
        sw.nvcc,
        sw.kernel_archs
    );
    let t = &r.method.timing;
    let _ = writeln!(
        s,
        "- Method: {} timing, weights rotated through >= {}x L2, warm-up {} + median of up to {} batches of >= {} us; {}",
        t.method, t.l2_factor, t.warmup, t.reps, t.min_batch_us, r.method.check
    );
    let _ = writeln!(s, "- Cells: kernel µs (speedup = baseline µs / kernel µs); ✗ = spot check failed.\n");
    if let Some(a) = &r.aborted {
        let _ = writeln!(s, "**Run aborted:** {a}\n");
    }
    let failed: Vec<&Row> = r.rows.iter().filter(|x| x.check_ok == Some(false)).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "**{} points failed the spot check** (see `rel_err` in the JSON).\n", failed.len());
    }
    for shape in &r.shapes {
        for b in Baseline::ALL {
            let rows: Vec<&Row> =
                r.rows.iter().filter(|x| x.n == shape.n && x.k == shape.k && x.baseline == b).collect();
            if rows.is_empty() {
                continue;
            }
            let mut ops: Vec<&str> = Vec::new();
            let mut ms: Vec<usize> = Vec::new();
            for x in &rows {
                if !ops.contains(&x.op.as_str()) {
                    ops.push(&x.op);
                }
                if !ms.contains(&x.m) {
                    ms.push(x.m);
                }
            }
            ms.sort_unstable();
            let _ = writeln!(s, "## {} vs {b}\n", shape.label());
            let _ = write!(s, "| M | {b} µs |");
            for op in &ops {
                let _ = write!(s, " {op} |");
            }
            let _ = write!(s, "\n|---|---|");
            for _ in &ops {
                let _ = write!(s, "---|");
            }
            s.push('\n');
            for m in ms {
                let base = rows.iter().find(|x| x.m == m).map(|x| x.baseline_us);
                let _ = write!(s, "| {m} | {} |", fmt_opt(base, 1));
                for op in &ops {
                    match rows.iter().find(|x| x.m == m && x.op == *op) {
                        Some(x) => {
                            let mark = if x.check_ok == Some(false) { " ✗" } else { "" };
                            let _ = write!(s, " {:.1} ({:.2}x){mark} |", x.time_us, x.speedup);
                        }
                        None => s.push_str(" - |"),
                    }
                }
                s.push('\n');
            }
            s.push('\n');
        }
    }
    // The memory-bound points: how close M = 1 gets to the card's read bandwidth (issue: >= 80% on the large shape).
    let first = r.rows.first().map(|x| x.baseline);
    let m1: Vec<&Row> = r.rows.iter().filter(|x| x.m == 1 && Some(x.baseline) == first).collect();
    if !m1.is_empty() {
        let _ = writeln!(s, "## Weight bandwidth at M = 1\n");
        let _ = writeln!(s, "| N×K | op | µs | weight GB/s | % of HBM peak | % of read-only kernel | % of D2D copy |");
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        for x in m1 {
            let _ = writeln!(
                s,
                "| {}×{} | {} | {:.1} | {:.0} | {} | {} | {} |",
                x.n,
                x.k,
                x.op,
                x.time_us,
                x.weight_gbps,
                fmt_opt(x.pct_of_hbm, 1),
                fmt_opt(x.pct_of_read, 1),
                fmt_opt(x.pct_of_copy, 1)
            );
        }
        s.push('\n');
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "## Skipped\n");
        for sk in &r.skipped {
            let _ = writeln!(s, "- {}: {}", sk.what, sk.reason);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::timing::Stats;

    fn meas(us: f64, method: TimingMethod) -> Measurement {
        Measurement {
            stats: Stats { median: us, p10: us * 0.9, p90: us * 1.1, min: us * 0.8, max: us * 1.2, n: 50 },
            method,
            calls_per_rep: 10,
            reps: 50,
            warmup: 10,
            copies: 3,
            fallback: None,
            launch_bound: false,
            card: None,
        }
    }

    #[test]
    fn op_names() {
        let name = |s: &str| op_name(&s.parse().unwrap());
        assert_eq!(name("w4-int-g128"), "w4a16-int-g128");
        assert_eq!(name("w3-mixed-g128"), "w3a16-mixed-g128");
        assert_eq!(name("w8-int-pc"), "w8a16-int-pc");
        assert_eq!(name("w4-int-asym-g128"), "w4a16-int-asym-g128");
        assert_eq!(name("w4-nf4-g128"), "w4a16-nf4-g128");
        assert_eq!(name("w2-int-g64"), "w2a16-int-g64");
    }

    #[test]
    fn scheme_lists() {
        let all = parse_schemes("all").unwrap();
        assert_eq!(all.len(), 8);
        assert_eq!(all.iter().map(|s| s.to_string()).collect::<Vec<_>>().join(","), ALL_SCHEMES);
        assert_eq!(parse_schemes(DEFAULT_SCHEMES).unwrap().len(), 1);
        assert_eq!(parse_schemes("w4-int-g128, w4-int-g128,w8-int-pc").unwrap().len(), 2);
        assert!(parse_schemes("w2-bipolar-g128").is_err());
        assert!(parse_schemes("w5-float").is_err());
        assert!(parse_schemes("").is_err());
    }

    #[test]
    fn row_figures() {
        let scheme: WeightScheme = "w4-int-g128".parse().unwrap();
        let ctx = RowContext {
            weight_bytes: 1_000_000,
            device_bytes: 1_100_000,
            hbm_peak_gbps: Some(3352.0),
            copy_gbps: Some(3000.0),
            read_gbps: Some(2500.0),
        };
        let mut k = meas(10.0, TimingMethod::Graph);
        k.fallback = Some("capture failed".into());
        let b = meas(25.0, TimingMethod::Stream);
        let r = make_row(&scheme, (16, 4096, 4096), &k, Baseline::CublasF16, &b, ctx);
        assert_eq!((r.op.as_str(), r.scheme.as_str(), r.dtype.as_str()), ("w4a16-int-g128", "w4-int-g128", "f16"));
        assert_eq!((r.bits, r.group), (4, Some(128)));
        assert!((r.speedup - 2.5).abs() < 1e-12);
        let flops = 2.0 * 16.0 * 4096.0 * 4096.0;
        assert!((r.tflops - flops / 10e-6 / 1e12).abs() < 1e-9);
        assert!((r.baseline_tflops - flops / 25e-6 / 1e12).abs() < 1e-9);
        assert!((r.weight_gbps - 100.0).abs() < 1e-9); // 1e6 B / 10 µs
        assert!((r.pct_of_hbm.unwrap() - 100.0 * 100.0 / 3352.0).abs() < 1e-9);
        assert!((r.pct_of_copy.unwrap() - 100.0 / 30.0).abs() < 1e-9);
        assert!((r.pct_of_read.unwrap() - 100.0 / 25.0).abs() < 1e-9);
        let io = 1_100_000.0 + 2.0 * 16.0 * 4096.0 * 2.0;
        assert!((r.io_gbps - io / 10e-6 / 1e9).abs() < 1e-6);
        assert!((r.baseline_weight_gbps - 2.0 * 4096.0 * 4096.0 / 25e-6 / 1e9).abs() < 1e-6);
        assert_eq!((r.timing, r.baseline_timing), (TimingMethod::Graph, TimingMethod::Stream));
        assert_eq!(r.notes, vec!["kernel: capture failed".to_string()]);
        let pc: WeightScheme = "w8-int-pc".parse().unwrap();
        let r = make_row(&pc, (1, 8, 8), &k, Baseline::CublasBf16, &b, RowContext { hbm_peak_gbps: None, ..ctx });
        assert_eq!((r.group, r.pct_of_hbm, r.dtype.as_str()), (None, None, "bf16"));
    }

    #[test]
    fn frobenius_error() {
        let d = OutDtype::F16;
        let a: Vec<u16> = [1.0f32, 2.0, -3.0, 4.0].iter().map(|&v| crate::weights::to_bits(v, d)).collect();
        assert_eq!(rel_frobenius(&a, &a, d, 3), 0.0);
        let mut b = a.clone();
        b[3] = crate::weights::to_bits(5.0, d);
        let want = (1.0f64 / 30.0).sqrt(); // |4 - 5| / sqrt(1 + 4 + 9 + 16)
        assert!((rel_frobenius(&b, &a, d, 2) - want).abs() < 1e-12);
        b[0] = 0xFFFF; // poison
        assert!(rel_frobenius(&b, &a, d, 1).is_nan());
        assert_eq!(rel_frobenius(&[], &[], d, 4), 0.0);
    }

    fn sample_report() -> Report<Row> {
        use crate::report::{CardInfo, MethodInfo, SCHEMA_VERSION, SoftwareInfo};
        use crate::sysinfo::{ClockSummary, Clocks};
        let scheme: WeightScheme = "w3-mixed-g128".parse().unwrap();
        let ctx = RowContext {
            weight_bytes: 1 << 20,
            device_bytes: 1 << 20,
            hbm_peak_gbps: Some(4800.0),
            copy_gbps: None,
            read_gbps: None,
        };
        let mut rows = Vec::new();
        for (m, t) in [(1usize, 5.0), (16, 6.0)] {
            for b in Baseline::ALL {
                let mut r = make_row(
                    &scheme,
                    (m, 4096, 4096),
                    &meas(t, TimingMethod::Graph),
                    b,
                    &meas(12.5, TimingMethod::Graph),
                    ctx,
                );
                r.rel_err = Some(1e-4);
                r.check_ok = Some(m == 1);
                rows.push(r);
            }
        }
        Report {
            schema_version: SCHEMA_VERSION,
            suite: SUITE.into(),
            started_utc: "2026-11-26T06:30:16Z".into(),
            finished_utc: "2026-11-26T06:40:00Z".into(),
            command: vec!["lowbit-bench".into(), "weight-only".into()],
            card: CardInfo {
                name: "NVIDIA H200".into(),
                slug: "h200".into(),
                ordinal: 0,
                pci_bus_id: Some("00000000:18:00.0".into()),
                compute_capability: "9.0".into(),
                sm_count: 132,
                memory_bytes: 150_000_000_000,
                l2_cache_bytes: 52_428_800,
                hbm_peak_gbps: Some(4800.0),
                hbm_peak_source: Some("datasheet".into()),
                copy_gbps: Some(4100.5),
                copy_bytes: Some(1 << 30),
                read_gbps: Some(4300.0),
                read_bytes: Some(1 << 30),
                clocks_start: Some(Clocks {
                    sm_mhz: Some(1980.0),
                    max_sm_mhz: Some(1980.0),
                    mem_mhz: None,
                    power_w: Some(120.0),
                }),
                clocks_end: None,
                clock_samples: Some(ClockSummary { samples: 10, busy_samples: 8, ..ClockSummary::default() }),
            },
            software: SoftwareInfo {
                driver: Some("580.159.04".into()),
                driver_cuda: "13.0".into(),
                cuda_runtime: "13.0".into(),
                cublas: Some("13.1.0".into()),
                cublas_version: Some(130100),
                cublas_library: None,
                cublaslt_library: None,
                cublas_found_in: None,
                nvcc: "Cuda compilation tools, release 13.0, V13.0.88".into(),
                kernel_archs: "sm_90a".into(),
                kernels_abi: 1,
                lowbit_bench: "0.1.0".into(),
            },
            method: MethodInfo {
                timing: TimingConfig::default(),
                timing_description: "graph".into(),
                weights: "chunk".into(),
                activations: "uniform".into(),
                check: "spot check".into(),
                seed: 0,
                threads: 16,
            },
            shapes: crate::shapes::select("4096x4096", &crate::shapes::builtin_rows().unwrap()).unwrap(),
            rows,
            skipped: vec![Skipped { what: "w2a16-int-g128 4096x4096 M=1 f16".into(), reason: "no kernel".into() }],
            aborted: None,
        }
    }

    #[test]
    fn report_json_round_trip() {
        let r = sample_report();
        let text = serde_json::to_string_pretty(&r).unwrap();
        let back: Report<Row> = serde_json::from_str(&text).unwrap();
        assert_eq!(back, r);
        // The field names the issue asks for, as JSON keys.
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        let row = &v["rows"][0];
        for key in [
            "op",
            "m",
            "n",
            "k",
            "bits",
            "group",
            "time_us",
            "baseline",
            "baseline_us",
            "speedup",
            "tflops",
            "weight_gbps",
            "pct_of_hbm",
        ] {
            assert!(row.get(key).is_some(), "missing {key}");
        }
        assert_eq!(row["op"], "w3a16-mixed-g128");
        assert_eq!(row["baseline"], "cublas-f16");
        assert_eq!(row["timing"], "graph");
        assert_eq!(v["method"]["timing"]["l2_factor"], 3.0);
        assert_eq!(v["card"]["slug"], "h200");
    }

    #[test]
    fn markdown_tables() {
        let md = markdown(&sample_report());
        assert!(
            md.contains(
                "## 4096x4096 (llama-2-7b: q_proj/k_proj/v_proj/o_proj; llama-3-8b: q_proj/o_proj) vs cublas-f16"
            ),
            "{md}"
        );
        assert!(md.contains("| M | cublas-f16 µs | w3a16-mixed-g128 |"), "{md}");
        assert!(md.contains("| 1 | 12.5 | 5.0 (2.50x) |"), "{md}");
        assert!(md.contains("| 16 | 12.5 | 6.0 (2.08x) ✗ |"), "{md}");
        assert!(md.contains("vs cublas-bf16"));
        assert!(md.contains("points failed the spot check"));
        assert!(md.contains("## Skipped"));
    }

    #[test]
    fn planned_op_count() {
        let cfg = WeightOnlyConfig {
            shapes: crate::shapes::select("acceptance", &crate::shapes::builtin_rows().unwrap()).unwrap(),
            ms: DEFAULT_MS.to_vec(),
            schemes: parse_schemes("all").unwrap(),
            baselines: Baseline::ALL.to_vec(),
            timing: TimingConfig::default(),
            check: true,
            seed: 0,
            threads: 1,
            chunk_rows: 1024,
            gemm: GemmConfig::default(),
        };
        assert_eq!(planned_ops(&cfg), 4 * 12 * 2 * 9);
    }
}
