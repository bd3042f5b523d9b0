//! Suite `bipolar`: the bipolar-INT GEMM ([`lowbit_cuda::BipolarGemm`], APT-LLM, `kernels/bipolar/`) for several
//! `(q, p)` = (weight, activation) bit pairs, each through **both mappings** (BGMMA bit planes, the int8 core) and the
//! **automatic choice** ([`BipolarGemm::choose`]), against a direct cuBLASLt int8 GEMM (`cublaslt-int8`) and cuBLAS
//! fp16 (`cublas-f16`) on the same shapes, in the same run, on the same card and stream.
//!
//! Op names follow the issue: `w{q}a{p}-bipolar`; a row's `mapping` is `planes`, `int8` or `auto` (the auto row
//! repeats the measurement of the mapping it picked, named in `chosen`: the same kernel is not timed twice). Per shape:
//! 1. **Weights**, per weight width `q`: a chunk of N(0, 0.02²) rows is quantized (native bipolar, per-channel
//!    scales) and repeated to N rows; per `(q, p)` one [`BipolarGemm`] is built and cloned on the device `R` times
//!    so that `R × (plane bytes) ≥ 3 × L2` (the int8 mapping's weight rotates through the same copies).
//! 2. **Activations**, per `(p, M)`: random fp16 `[M, K]` quantized on the device by the library's activation kernel.
//! 3. **Timing**, per M: both baselines, then every pair and mapping ([`crate::timing::Timer`], graph replay).
//! 4. **Spot check** (exact): each mapping runs once more with an int32 output into a poisoned buffer; the first
//!    rows' exact `Y_int` (plane result, or the int8 accumulator through [`BipolarGemm::exact_from_int8`]) is compared
//!    with a CPU integer reference on sampled elements, and the two mappings with each other on every downloaded
//!    element. `check_ok` is true only on exact agreement.

use std::collections::HashMap;
use std::fmt::Write as _;

use cudarc::driver::{CudaSlice, DevicePtrMut};
use lowbit_core::bipolar::{BipolarMatrix, value};
use lowbit_core::granularity::Granularity;
use lowbit_core::int8::I8Out;
use lowbit_cuda::bipolar::{BipConfig, BipMapping, BipPlan, BipolarActivations, int8_value_offset};
use lowbit_cuda::cublaslt::CublasLtInt8;
use lowbit_cuda::{BipolarGemm, OutDtype};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::context::BenchContext;
use crate::error::{BenchError, Result};
use crate::nvml::Window;
use crate::progress::Progress;
use crate::report::{Report, Skipped, fmt_opt};
use crate::shapes::Shape;
use crate::suites::common::{SyncOnExit, is_soft, repeat_rows};
use crate::suites::int_baselines::{IntBaseline, IntBaselines};
use crate::timing::{Measurement, TimingConfig, TimingMethod, rotation_copies};
use crate::weights::random_normal;

/// Suite name (file names, `suite` field).
pub const SUITE: &str = "bipolar";

/// Default M sweep (the issue's).
pub const DEFAULT_MS: [usize; 6] = [1, 16, 256, 1024, 4096, 8192];

/// Default shapes: the issue's Llama-2-70B projections and 4096².
pub const DEFAULT_SHAPES: &str = "8192x8192,28672x8192,8192x28672,4096x4096";

/// Default `(q, p)` pairs: every row of the issue's acceptance table (W1A1, W2A2, W1A4, W4A1, W2A4, W4A2, the
/// "others" W4A4, W2A8, W4A8, W8A8) and the decode targets (W2 / W4 weights at M = 1 with A2 / A4 / A8).
pub const DEFAULT_PAIRS: &str = "w1a1,w2a2,w1a4,w4a1,w2a4,w4a2,w4a4,w2a8,w4a8,w8a8";

/// Rows quantized per (shape, q); the rest repeat them.
pub const CHUNK_ROWS: usize = 512;

/// Bit widths of the issue (`p, q ∈ {1, 2, 3, 4, 8}`); the library takes 1..=8.
pub const ISSUE_BITS: [u32; 5] = [1, 2, 3, 4, 8];

/// Output elements per row checked against the CPU reference.
const CHECK_SAMPLES: usize = 16;

/// Rows of Y downloaded for the check.
const CHECK_ROWS: usize = 4;

/// A `(weight bits q, activation bits p)` pair under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pair {
    /// Weight bits `q`.
    pub q: u32,
    /// Activation bits `p`.
    pub p: u32,
}

impl Pair {
    /// Op name: `w{q}a{p}-bipolar`.
    pub fn name(self) -> String {
        format!("w{}a{}-bipolar", self.q, self.p)
    }

    /// Parses `w{q}a{p}` or `w{q}a{p}-bipolar` (bits 1..=8).
    pub fn parse(s: &str) -> Result<Pair> {
        let t = s.trim().to_ascii_lowercase();
        let t = t.strip_suffix("-bipolar").unwrap_or(&t);
        let bad = || BenchError::invalid(format!("bipolar pair '{s}': expected w{{q}}a{{p}} with q, p in 1..=8"));
        let rest = t.strip_prefix('w').ok_or_else(bad)?;
        let (q, p) = rest.split_once('a').ok_or_else(bad)?;
        let q: u32 = q.parse().map_err(|_| bad())?;
        let p: u32 = p.parse().map_err(|_| bad())?;
        if !(1..=8).contains(&q) || !(1..=8).contains(&p) {
            return Err(bad());
        }
        Ok(Pair { q, p })
    }

    /// Parses a comma-separated list; `all` = every pair with `q, p ∈ 1..=8` (64, the issue's "every other p,q ≤ 8"
    /// row), `issue` = every pair of [`ISSUE_BITS`]² (25), `default` = [`DEFAULT_PAIRS`].
    pub fn parse_list(s: &str) -> Result<Vec<Pair>> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("all") {
            return Ok((1..=8).flat_map(|q| (1..=8).map(move |p| Pair { q, p })).collect());
        }
        if t.eq_ignore_ascii_case("issue") {
            return Ok(ISSUE_BITS.iter().flat_map(|&q| ISSUE_BITS.iter().map(move |&p| Pair { q, p })).collect());
        }
        if t.eq_ignore_ascii_case("default") {
            return Pair::parse_list(DEFAULT_PAIRS);
        }
        let mut out = Vec::new();
        for part in t.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let pair = Pair::parse(part)?;
            if !out.contains(&pair) {
                out.push(pair);
            }
        }
        if out.is_empty() {
            return Err(BenchError::invalid("no bipolar pair given"));
        }
        Ok(out)
    }
}

/// Which mapping a row reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MappingSel {
    /// BGMMA bit planes, forced.
    #[serde(rename = "planes")]
    Planes,
    /// The int8 core, forced.
    #[serde(rename = "int8")]
    Int8,
    /// The library's automatic choice.
    #[serde(rename = "auto")]
    Auto,
}

impl MappingSel {
    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            MappingSel::Planes => "planes",
            MappingSel::Int8 => "int8",
            MappingSel::Auto => "auto",
        }
    }
}

fn mapping_name(m: BipMapping) -> &'static str {
    match m {
        BipMapping::Planes => "planes",
        BipMapping::Int8 => "int8",
    }
}

/// The suite's configuration.
#[derive(Debug, Clone)]
pub struct BipolarConfig {
    /// Shapes.
    pub shapes: Vec<Shape>,
    /// M values.
    pub ms: Vec<usize>,
    /// `(q, p)` pairs.
    pub pairs: Vec<Pair>,
    /// Timing knobs.
    pub timing: TimingConfig,
    /// Run the exact spot check.
    pub check: bool,
    /// RNG seed.
    pub seed: u64,
    /// Host threads.
    pub threads: usize,
}

/// One measured point: a pair through one mapping at one (shape, M) against one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Op (`w{q}a{p}-bipolar`).
    pub op: String,
    /// `planes`, `int8` or `auto`.
    pub mapping: String,
    /// The mapping that ran (for `auto`: the library's choice).
    pub chosen: String,
    /// Weight bits.
    pub q: u32,
    /// Activation bits.
    pub p: u32,
    /// Rows of X and Y.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Kernel time per call, median, µs.
    pub time_us: f64,
    /// 10th percentile, µs.
    pub time_us_p10: f64,
    /// 90th percentile, µs.
    pub time_us_p90: f64,
    /// Baseline name.
    pub baseline: String,
    /// Baseline time per call, median, µs.
    pub baseline_us: f64,
    /// `baseline_us / time_us` (> 1: the kernel is faster).
    pub speedup: f64,
    /// Effective TOPS, `2·M·N·K / time` (the issue's unit, whatever the bit widths).
    pub tops: f64,
    /// Baseline TOPS.
    pub baseline_tops: f64,
    /// Weight bytes the mapping reads (planes `q·N·K/8`, int8 `N·K`).
    pub weight_bytes: usize,
    /// `weight_bytes / time`, GB/s.
    pub weight_gbps: f64,
    /// `weight_gbps` as % of the card's HBM peak.
    pub pct_of_hbm: Option<f64>,
    /// Exact spot check passed; `null` when not checked.
    pub check_ok: Option<bool>,
    /// Elements that differed in the spot check.
    pub check_mismatches: Option<usize>,
    /// Timing method of the kernel.
    pub timing: TimingMethod,
    /// Weight copies rotated through (kernel).
    pub copies: usize,
    /// Timing remarks.
    pub notes: Vec<String>,
    /// SM clock, power and clock-event reasons during the kernel's timed batches (NVML; `null` without it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_card: Option<Window>,
    /// The same during the baseline's timed batches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub baseline_card: Option<Window>,
}

/// Rows, skipped points and the abort reason of a run.
#[derive(Debug, Default)]
pub struct SuiteOutput {
    /// Measured rows.
    pub rows: Vec<Row>,
    /// Points not measured.
    pub skipped: Vec<Skipped>,
    /// Why the run stopped early.
    pub aborted: Option<String>,
}

/// Timed operations of a run (progress bar): two baselines and two mappings per pair.
pub fn planned_ops(cfg: &BipolarConfig) -> u64 {
    (cfg.shapes.len() * cfg.ms.len() * (2 + 2 * cfg.pairs.len())) as u64
}

/// Runs the suite; errors of one point skip it, others stop the run (rows so far are kept).
pub fn run(ctx: &BenchContext, cfg: &BipolarConfig, pb: &Progress) -> SuiteOutput {
    let mut out = SuiteOutput::default();
    let lt = match CublasLtInt8::new(ctx.stream().clone()) {
        Ok(l) => l,
        Err(e) => {
            out.aborted = Some(format!("cuBLASLt: {e}"));
            return out;
        }
    };
    for shape in &cfg.shapes {
        if let Err(e) = run_shape(ctx, &lt, cfg, shape, pb, &mut out) {
            out.aborted = Some(format!("shape {}: {e}", shape.id()));
            let _ = ctx.stream().synchronize();
            let _ = ctx.device().synchronize();
            break;
        }
    }
    out
}

/// A `q`-bit bipolar weight of `n` rows: `chunk` quantized, its codes and scales repeated.
fn tiled_weight(chunk: ndarray::ArrayView2<f32>, n: usize, q: u32) -> Result<BipolarMatrix> {
    let k = chunk.ncols();
    let c = BipolarMatrix::quantize(chunk, q, Granularity::PerChannel)?;
    let codes = repeat_rows(&c.codes(), k, n);
    Ok(BipolarMatrix::from_codes(n, k, q, Granularity::PerChannel, &codes, repeat_rows(&c.scales, 1, n), None)?)
}

/// Weight bytes a mapping streams.
fn mapping_bytes(mapping: BipMapping, q: u32, n: usize, k: usize) -> usize {
    match mapping {
        BipMapping::Planes => q as usize * n * lowbit_cuda::bipolar::plane_ld(k) * 4,
        BipMapping::Int8 => n * k,
    }
}

/// The issue's exact integer `Y_int[r, c] = Σ_k v_x[r, k] · v_w[c, k]` from the activations' int8 operand row
/// (`v = 2·op + d_p`, `lowbit_cuda::bipolar::int8_value_offset`) and the weight's codes.
fn reference_element(x_op: &[i8], p: u32, w: &BipolarMatrix, c: usize) -> i64 {
    let d = int8_value_offset(p);
    (0..w.k).map(|kk| (2 * x_op[kk] as i64 + d) * value(w.code(c, kk), w.bits) as i64).sum()
}

struct PairState {
    pair: Pair,
    copies: Vec<BipolarGemm>,
}

struct Checked {
    ok: bool,
    bad: usize,
    /// The first rows' `Y_int` (for the cross-mapping comparison).
    y: Vec<i64>,
}

/// Runs `plan` once into `got` (`≥ M·N` int32, its first rows poisoned here) and checks those rows against the CPU
/// reference on sampled columns.
#[allow(clippy::too_many_arguments)]
fn spot_check(
    ctx: &BenchContext,
    got: &mut CudaSlice<i32>,
    g: &BipolarGemm,
    w: &BipolarMatrix,
    acts: &BipolarActivations,
    plan: &BipPlan,
    wsp: u64,
    wsb: usize,
    seed: u64,
) -> Result<Checked> {
    let (dev, stream) = (ctx.device(), ctx.stream());
    let (n, k) = g.shape();
    let (p, _) = g.bits();
    let m = plan.m;
    let rows = m.min(CHECK_ROWS);
    stream.memcpy_htod(&vec![0x7FFF_7FFFi32; rows * n], &mut got.slice_mut(0..rows * n))?;
    let gp = got.device_ptr_mut(stream).0;
    // SAFETY: got holds ≥ m·N int32, the workspace wsb bytes (256-aligned), all on this stream's context; the stream is
    // synchronized below before any of them is dropped.
    unsafe { g.run_raw(dev, stream, acts, I8Out::I32, gp, plan, wsp, wsb) }?;
    let acc = stream.clone_dtoh(&got.slice(0..rows * n))?;
    let k16 = k.next_multiple_of(16);
    let x_op = stream.clone_dtoh(&acts.codes8().slice(0..rows * k16))?;
    let x_sums = stream.clone_dtoh(&acts.row_sums().slice(0..rows))?;
    stream.synchronize()?;
    let y: Vec<i64> = match plan.mapping {
        BipMapping::Planes => acc.iter().map(|&v| v as i64).collect(),
        BipMapping::Int8 => g.exact_from_int8(&acc, rows, &x_sums),
    };
    let mut rng = StdRng::seed_from_u64(seed);
    let mut bad = 0;
    for r in 0..rows {
        let xr = &x_op[r * k16..r * k16 + k];
        let cols = (0..CHECK_SAMPLES.min(n)).map(|i| if i == 0 { n - 1 } else { rng.random_range(0..n) });
        for c in cols {
            if y[r * n + c] != reference_element(xr, p, w, c) {
                bad += 1;
            }
        }
    }
    Ok(Checked { ok: bad == 0, bad, y })
}

fn run_shape(
    ctx: &BenchContext,
    lt: &CublasLtInt8,
    cfg: &BipolarConfig,
    shape: &Shape,
    pb: &Progress,
    out: &mut SuiteOutput,
) -> Result<()> {
    let (n, k) = (shape.n, shape.k);
    let (dev, stream) = (ctx.device(), ctx.stream());
    let cublas = ctx.cublas()?;
    let l2 = dev.info().l2_cache_bytes;
    let timer = ctx.timer(cfg.timing.clone());
    let m_max = cfg.ms.iter().copied().max().unwrap_or(1);
    let seed = cfg.seed ^ (n as u64).wrapping_mul(1_000_003) ^ (k as u64).wrapping_mul(7919);
    let id = shape.id();
    let card = ctx.card();

    pb.set_message(format!("{id}: weights"));
    let floats = random_normal(CHUNK_ROWS.min(n), k, seed, 0.02, cfg.threads);
    // One tiled weight per q, one BipolarGemm (with rotation copies) per pair.
    let mut mats: HashMap<u32, BipolarMatrix> = HashMap::new();
    let mut pairs = Vec::new();
    for &pair in &cfg.pairs {
        pb.set_message(format!("{id}: weights {}", pair.name()));
        let built = (|| -> Result<PairState> {
            if let std::collections::hash_map::Entry::Vacant(e) = mats.entry(pair.q) {
                e.insert(tiled_weight(floats.view(), n, pair.q)?);
            }
            let g = BipolarGemm::new(dev, &mats[&pair.q], pair.p)?;
            let r = rotation_copies(mapping_bytes(BipMapping::Planes, pair.q, n, k), l2, cfg.timing.l2_factor);
            let mut copies = Vec::with_capacity(r);
            for _ in 1..r {
                copies.push(g.clone());
            }
            copies.push(g);
            dev.synchronize()?;
            Ok(PairState { pair, copies })
        })();
        match built {
            Ok(s) => pairs.push(s),
            Err(e) if is_soft(&e) => {
                out.skipped.push(Skipped { what: format!("{} {id}", pair.name()), reason: e.to_string() })
            }
            Err(e) => return Err(e),
        }
    }
    // Baselines' weights and activations; the bipolar activations are the fp16 ones, quantized per pair.
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let mut bl = IntBaselines::new(ctx, floats.view(), n, m_max, &mut rng, seed ^ 0xF16, &cfg.timing, cfg.threads)?;
    drop(floats);
    let _sync = SyncOnExit(stream);
    let y16p = bl.y16.device_ptr_mut(stream).0;

    let first_row = out.rows.len();
    for &m in &cfg.ms {
        let base = bl.measure(ctx, &timer, lt, cublas, m, &id, pb, &mut out.skipped)?;

        for st in &pairs {
            let pair = st.pair;
            let g0 = &st.copies[0];
            // Activations: the first M rows of x16, quantized by the library (on the device's stream).
            let acts = (|| -> Result<BipolarActivations> {
                let mut a = g0.activations(dev, m)?;
                g0.quantize_activations(dev, &bl.x16, OutDtype::F16, &mut a)?;
                dev.synchronize()?;
                Ok(a)
            })();
            let acts = match acts {
                Ok(a) => a,
                Err(e) if is_soft(&e) => {
                    out.skipped.push(Skipped { what: format!("{} {id} M={m}", pair.name()), reason: e.to_string() });
                    pb.inc();
                    pb.inc();
                    continue;
                }
                Err(e) => return Err(e),
            };
            let auto = g0.choose(dev, m)?;
            let mut measured: Vec<(BipMapping, Measurement, Option<Checked>)> = Vec::new();
            for mapping in [BipMapping::Planes, BipMapping::Int8] {
                let what = format!("{} {} {id} M={m}", pair.name(), mapping_name(mapping));
                pb.set_message(what.clone());
                let timed = (|| -> Result<(Measurement, Option<Checked>)> {
                    let config = BipConfig { mapping: Some(mapping), ..BipConfig::default() };
                    let plan = g0.plan(dev, m, config)?;
                    let mut ws = g0.workspace(dev, &plan)?;
                    dev.synchronize()?;
                    let (wsp, wsb) = match ws.as_mut() {
                        Some(w) => (w.device_ptr_mut(stream).0.next_multiple_of(256), plan.workspace_bytes),
                        None => (0, 0),
                    };
                    let meas = timer.measure(st.copies.len(), |i| {
                        // SAFETY: y16 holds m_max·N ≥ m·N f16, the workspace the plan's bytes (zeroed, 256-aligned,
                        // one stream); the copies and acts live until the stream is synchronized below.
                        Ok(unsafe { st.copies[i].run_raw(dev, stream, &acts, I8Out::F16, y16p, &plan, wsp, wsb) }?)
                    })?;
                    let check = if cfg.check {
                        Some(spot_check(ctx, &mut bl.y32, g0, &mats[&pair.q], &acts, &plan, wsp, wsb, seed ^ m as u64)?)
                    } else {
                        None
                    };
                    stream.synchronize()?;
                    drop(ws);
                    Ok((meas, check))
                })();
                match timed {
                    Ok((meas, check)) => measured.push((mapping, meas, check)),
                    Err(e) if is_soft(&e) => out.skipped.push(Skipped { what, reason: e.to_string() }),
                    Err(e) => return Err(e),
                }
                pb.inc();
            }
            // Cross-check: both mappings' Y_int on the downloaded rows.
            if let [(_, _, Some(a)), (_, _, Some(b))] = measured.as_mut_slice() {
                let bad = a.y.iter().zip(&b.y).filter(|(x, y)| x != y).count();
                if bad > 0 {
                    for c in [&mut *a, &mut *b] {
                        c.ok = false;
                        c.bad += bad;
                    }
                }
            }
            let mut rows_of = |sel: MappingSel, mapping: BipMapping, meas: &Measurement, check: &Option<Checked>| {
                let chk = check.as_ref().map(|c| (c.ok, c.bad));
                if let Some((false, bad)) = chk {
                    pb.log(format!(
                        "CHECK FAILED {} {} {id} M={m}: {bad} elements differ",
                        pair.name(),
                        mapping_name(mapping)
                    ));
                }
                for b in [IntBaseline::CublasLtInt8, IntBaseline::CublasF16] {
                    let Some(bm) = base.get(&b) else { continue };
                    let row = make_row(pair, sel, mapping, (m, n, k), meas, b, bm, card.hbm_peak_gbps, chk);
                    if sel != MappingSel::Auto {
                        let card =
                            |w: &Option<Window>| w.as_ref().map_or(String::new(), |w| format!(" [{}]", w.brief()));
                        pb.log(format!(
                            "{} {} {id} M={m}: {:.1} us ({:.0} TOPS){} vs {} {:.1} us{} -> {:.2}x",
                            row.op,
                            row.mapping,
                            row.time_us,
                            row.tops,
                            card(&row.kernel_card),
                            b.name(),
                            row.baseline_us,
                            card(&row.baseline_card),
                            row.speedup
                        ));
                    }
                    out.rows.push(row);
                }
            };
            for (mapping, meas, check) in &measured {
                let sel = if *mapping == BipMapping::Planes { MappingSel::Planes } else { MappingSel::Int8 };
                rows_of(sel, *mapping, meas, check);
            }
            match auto.and_then(|a| measured.iter().find(|x| x.0 == a)) {
                Some((mapping, meas, check)) => rows_of(MappingSel::Auto, *mapping, meas, check),
                None => out.skipped.push(Skipped {
                    what: format!("{} auto {id} M={m}", pair.name()),
                    reason: format!("the automatic choice ({:?}) was not measured", auto.map(mapping_name)),
                }),
            }
        }
    }
    out.rows[first_row..]
        .sort_by(|a, b| (a.m, &a.op, &a.mapping, &a.baseline).cmp(&(b.m, &b.op, &b.mapping, &b.baseline)));
    stream.synchronize()?;
    dev.synchronize()?;
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn make_row(
    pair: Pair,
    sel: MappingSel,
    mapping: BipMapping,
    (m, n, k): (usize, usize, usize),
    kernel: &Measurement,
    baseline: IntBaseline,
    base: &Measurement,
    hbm: Option<f64>,
    check: Option<(bool, usize)>,
) -> Row {
    let (t, tb) = (kernel.stats.median, base.stats.median);
    let ops = 2.0 * m as f64 * n as f64 * k as f64;
    let weight_bytes = mapping_bytes(mapping, pair.q, n, k);
    let gbps = weight_bytes as f64 / (t * 1e-6) / 1e9;
    let mut notes = Vec::new();
    for (who, meas) in [("kernel", kernel), ("baseline", base)] {
        if let Some(f) = &meas.fallback {
            notes.push(format!("{who}: {f}"));
        }
    }
    Row {
        op: pair.name(),
        mapping: sel.name().to_string(),
        chosen: mapping_name(mapping).to_string(),
        q: pair.q,
        p: pair.p,
        m,
        n,
        k,
        time_us: t,
        time_us_p10: kernel.stats.p10,
        time_us_p90: kernel.stats.p90,
        baseline: baseline.name().to_string(),
        baseline_us: tb,
        speedup: tb / t,
        tops: ops / (t * 1e-6) / 1e12,
        baseline_tops: ops / (tb * 1e-6) / 1e12,
        weight_bytes,
        weight_gbps: gbps,
        pct_of_hbm: hbm.map(|p| 100.0 * gbps / p),
        check_ok: check.map(|c| c.0),
        check_mismatches: check.map(|c| c.1),
        timing: kernel.method,
        copies: kernel.copies,
        notes,
        kernel_card: kernel.card.clone(),
        baseline_card: base.card.clone(),
    }
}

/// An acceptance target: `(label, pair, M, N, K, baseline, target ratio or TOPS)`. A `None` pair means every
/// measured pair the label selects (W2 / W4 weights, or the pairs no other row names: the ≥ 0.95× row).
pub type Target = (&'static str, Option<Pair>, usize, usize, usize, IntBaseline, f64);

/// The issue's acceptance targets.
pub fn acceptance_targets() -> Vec<Target> {
    let lt = IntBaseline::CublasLtInt8;
    let f16 = IntBaseline::CublasF16;
    let pr = |q, p| Some(Pair { q, p });
    vec![
        ("W1A1 8192³ eff TOPS ≥ 9000", pr(1, 1), 8192, 8192, 8192, lt, 9000.0),
        ("M=4096 W2A2 ≥ 1.6× Lt int8", pr(2, 2), 4096, 8192, 8192, lt, 1.6),
        ("M=4096 W1A4 ≥ 1.6× Lt int8", pr(1, 4), 4096, 8192, 8192, lt, 1.6),
        ("M=4096 W4A1 ≥ 1.6× Lt int8", pr(4, 1), 4096, 8192, 8192, lt, 1.6),
        ("M=4096 W2A4 ≥ 1.0× Lt int8", pr(2, 4), 4096, 8192, 8192, lt, 1.0),
        ("M=4096 W4A2 ≥ 1.0× Lt int8", pr(4, 2), 4096, 8192, 8192, lt, 1.0),
        ("M=4096 others ≥ 0.95× Lt int8", None, 4096, 8192, 8192, lt, 0.95),
        ("M=1 28672x8192 W2 ≥ 6× cuBLAS f16", None, 1, 28672, 8192, f16, 6.0),
        ("M=1 28672x8192 W4 ≥ 3.6× cuBLAS f16", None, 1, 28672, 8192, f16, 3.6),
    ]
}

fn is_named(p: Pair) -> bool {
    matches!((p.q, p.p), (1, 1) | (2, 2) | (1, 4) | (4, 1) | (2, 4) | (4, 2))
}

/// Best (fastest) row of `pair` at a point against a baseline, among the forced mappings and `auto`.
fn best<'a>(rows: &'a [Row], pair: Pair, m: usize, n: usize, k: usize, b: IntBaseline, sel: &str) -> Option<&'a Row> {
    rows.iter()
        .filter(|r| r.q == pair.q && r.p == pair.p && r.m == m && r.n == n && r.k == k && r.baseline == b.name())
        .filter(|r| sel == "best" || r.mapping == sel)
        .min_by(|a, b| a.time_us.total_cmp(&b.time_us))
}

/// The markdown report: the acceptance table first (best mapping and the automatic choice), then per shape one
/// table per M with every pair's planes / int8 / auto times and ratios.
pub fn markdown(r: &Report<Row>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lowbit-bench bipolar — {} ({})\n", r.card.name, r.card.slug);
    let _ = writeln!(
        s,
        "Same run, same card and stream. Times are medians per call in µs (CUDA graph replay, weights rotated through \
         > 3x L2 of the plane bytes). TOPS are effective, 2·M·N·K / time. `planes` = BGMMA bit planes, `int8` = the \
         int8 core, `auto` = the library's choice (`BipolarGemm::choose`, its mapping in brackets; the same \
         measurement as that mapping). Ratios: vs `cublaslt-int8` (int8 in, int32 out) and vs `cublas-f16`. ✗ marks a \
         failed exact check. In the acceptance table `@ a / b MHz` is the median SM clock (NVML, 1 ms samples) during \
         the kernel's / the baseline's timed batches.\n"
    );
    let _ = writeln!(
        s,
        "cuBLAS {}, driver {}, kernels {}; started {}.\n",
        r.software.cublas.as_deref().unwrap_or("?"),
        r.software.driver.as_deref().unwrap_or("?"),
        r.software.kernel_archs,
        r.started_utc
    );
    let mut pairs: Vec<Pair> = r.rows.iter().map(|x| Pair { q: x.q, p: x.p }).collect();
    pairs.sort();
    pairs.dedup();

    let _ = writeln!(s, "## Acceptance (issue 5)\n");
    let _ = writeln!(s, "| target | pair | best mapping | auto | met |");
    let _ = writeln!(s, "|---|---|---|---|---|");
    for (label, pair, m, n, k, b, target) in acceptance_targets() {
        let cands: Vec<Pair> = match (pair, label.contains("W2 "), label.contains("W4 ")) {
            (Some(p), _, _) => vec![p],
            (None, true, _) => pairs.iter().copied().filter(|p| p.q == 2).collect(),
            (None, _, true) => pairs.iter().copied().filter(|p| p.q == 4).collect(),
            _ => pairs.iter().copied().filter(|p| !is_named(*p)).collect(),
        };
        let tops_target = label.contains("TOPS");
        for p in cands {
            let (Some(bst), auto) = (best(&r.rows, p, m, n, k, b, "best"), best(&r.rows, p, m, n, k, b, "auto")) else {
                let _ = writeln!(s, "| {label} | {} | not measured | – | – |", p.name());
                continue;
            };
            let val = |x: &Row| if tops_target { x.tops } else { x.speedup };
            let fmt = |x: &Row| {
                let mark = if x.check_ok == Some(false) { " ✗" } else { "" };
                let mhz =
                    |w: &Option<Window>| w.as_ref().and_then(|w| w.sm_mhz).map_or("?".into(), |m| format!("{m:.0}"));
                let clk = if x.kernel_card.is_some() || x.baseline_card.is_some() {
                    format!(" @ {} / {} MHz", mhz(&x.kernel_card), mhz(&x.baseline_card))
                } else {
                    String::new()
                };
                if tops_target {
                    format!("{:.0} TOPS ({}, {:.1} µs; {:.2}x Lt{clk}){mark}", x.tops, x.chosen, x.time_us, x.speedup)
                } else {
                    format!("{:.2}x ({}, {:.1} µs vs {:.1}{clk}){mark}", x.speedup, x.chosen, x.time_us, x.baseline_us)
                }
            };
            let met = if val(bst) >= target { "yes" } else { "no" };
            let a = auto.map_or("–".to_string(), fmt);
            let _ = writeln!(s, "| {label} | {} | {} | {a} | {met} |", p.name(), fmt(bst));
        }
    }
    let _ = writeln!(s);

    for shape in &r.shapes {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| x.n == shape.n && x.k == shape.k).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}\n", shape.label());
        let _ = writeln!(
            s,
            "| M | pair | cublaslt-int8 | cublas-f16 | planes (vs lt / vs f16) | int8 (vs lt / vs f16) | auto | TOPS (auto) |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|---|");
        let mut ms: Vec<usize> = rows.iter().map(|x| x.m).collect();
        ms.sort_unstable();
        ms.dedup();
        for m in ms {
            for &p in &pairs {
                let get = |sel: &str, b: IntBaseline| {
                    rows.iter()
                        .find(|x| x.m == m && x.q == p.q && x.p == p.p && x.mapping == sel && x.baseline == b.name())
                };
                let any = get("planes", IntBaseline::CublasF16)
                    .or_else(|| get("int8", IntBaseline::CublasF16))
                    .or_else(|| get("auto", IntBaseline::CublasF16));
                let Some(any) = any else { continue };
                let lt_us = get("auto", IntBaseline::CublasLtInt8)
                    .or_else(|| get("planes", IntBaseline::CublasLtInt8))
                    .or_else(|| get("int8", IntBaseline::CublasLtInt8))
                    .map(|x| x.baseline_us);
                let cell = |sel: &str| match (get(sel, IntBaseline::CublasLtInt8), get(sel, IntBaseline::CublasF16)) {
                    (lt, Some(f)) => format!(
                        "{:.1} ({} / {:.2}x){}",
                        f.time_us,
                        lt.map_or("–".to_string(), |l| format!("{:.2}x", l.speedup)),
                        f.speedup,
                        if f.check_ok == Some(false) { " ✗" } else { "" }
                    ),
                    _ => "–".into(),
                };
                let auto = get("auto", IntBaseline::CublasF16);
                let _ = writeln!(
                    s,
                    "| {m} | {} | {} | {:.1} | {} | {} | {} | {} |",
                    p.name(),
                    fmt_opt(lt_us, 1),
                    any.baseline_us,
                    cell("planes"),
                    cell("int8"),
                    auto.map_or("–".to_string(), |a| format!("{:.1} [{}]", a.time_us, a.chosen)),
                    auto.map_or("–".to_string(), |a| format!("{:.0}", a.tops)),
                );
            }
        }
        let _ = writeln!(s);
    }
    if !r.skipped.is_empty() {
        let _ = writeln!(s, "## Skipped\n");
        for k in &r.skipped {
            let _ = writeln!(s, "- {}: {}", k.what, k.reason);
        }
    }
    if let Some(a) = &r.aborted {
        let _ = writeln!(s, "\n**The run stopped early:** {a}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pair_names_round_trip() {
        let p = Pair::parse("w2a4").unwrap();
        assert_eq!(p, Pair { q: 2, p: 4 });
        assert_eq!(p.name(), "w2a4-bipolar");
        assert_eq!(Pair::parse(" W1A1-bipolar ").unwrap(), Pair { q: 1, p: 1 });
        for bad in ["w0a1", "w9a1", "w2", "a2w2", "w2a", "wxa1", ""] {
            assert!(Pair::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(Pair::parse_list("w1a1, w2a2,w1a1").unwrap(), vec![Pair { q: 1, p: 1 }, Pair { q: 2, p: 2 }]);
        let all = Pair::parse_list("all").unwrap();
        assert_eq!(all.len(), 64);
        for (q, p) in [(1, 1), (3, 3), (5, 7), (8, 8), (7, 5)] {
            assert!(all.contains(&Pair { q, p }), "W{q}A{p} in all");
        }
        assert_eq!(Pair::parse_list("issue").unwrap().len(), 25);
        let default = Pair::parse_list("default").unwrap();
        assert_eq!(default.len(), 10);
        assert!(default.contains(&Pair { q: 8, p: 8 }), "W8A8 in the default pairs");
        assert!(Pair::parse_list(" , ").is_err());
        assert_eq!(serde_json::to_string(&MappingSel::Int8).unwrap(), "\"int8\"");
        assert_eq!(serde_json::to_string(&IntBaseline::CublasLtInt8).unwrap(), "\"cublaslt-int8\"");
    }

    #[test]
    fn default_pairs_cover_the_acceptance_table() {
        let rows = crate::shapes::builtin_rows().unwrap();
        let shapes = crate::shapes::select(DEFAULT_SHAPES, &rows).unwrap();
        let nk: Vec<(usize, usize)> = shapes.iter().map(|s| (s.n, s.k)).collect();
        for want in [(8192, 8192), (28672, 8192), (8192, 28672), (4096, 4096)] {
            assert!(nk.contains(&want), "{want:?} in {nk:?}");
        }
        for (_, _, m, n, k, ..) in acceptance_targets() {
            assert!(DEFAULT_MS.contains(&m) && nk.contains(&(n, k)), "target point M={m} {n}x{k}");
        }
        let pairs = Pair::parse_list(DEFAULT_PAIRS).unwrap();
        for (label, pair, ..) in acceptance_targets() {
            match pair {
                Some(p) => assert!(pairs.contains(&p), "{label}"),
                None if label.contains("W2 ") => assert!(pairs.iter().any(|p| p.q == 2)),
                None if label.contains("W4 ") => assert!(pairs.iter().any(|p| p.q == 4)),
                None => assert!(pairs.iter().any(|p| !is_named(*p))),
            }
        }
    }

    #[test]
    fn tiled_weight_and_reference() {
        let chunk = random_normal(3, 64, 7, 0.02, 1);
        let w = tiled_weight(chunk.view(), 7, 2).unwrap();
        assert_eq!((w.n, w.k, w.bits), (7, 64, 2));
        for c in 0..64 {
            assert_eq!(w.code(5, c), w.code(2, c));
        }
        // Reference: against the library's values() on an explicit dot product.
        let vals = w.values();
        // 4-bit activations enter as the codes u (v = 2u − 15).
        let x: Vec<i8> = (0..64).map(|i| ((i * 37) % 16) as i8).collect();
        for c in 0..7 {
            let want: i64 = (0..64).map(|kk| (2 * x[kk] as i64 - 15) * vals[[c, kk]] as i64).sum();
            assert_eq!(reference_element(&x, 4, &w, c), want);
        }
        // 8-bit activations enter as ŝ = u − 128 with v = 2ŝ + 1.
        let want: i64 = (0..64).map(|kk| (2 * x[kk] as i64 + 1) * vals[[0, kk]] as i64).sum();
        assert_eq!(reference_element(&x, 8, &w, 0), want);
        assert_eq!(mapping_bytes(BipMapping::Planes, 2, 7, 64), 2 * 7 * 4 * 4);
        assert_eq!(mapping_bytes(BipMapping::Int8, 2, 7, 64), 7 * 64);
    }

    #[test]
    fn markdown_lists_acceptance() {
        let rows = vec![Row {
            op: "w1a1-bipolar".into(),
            mapping: "auto".into(),
            chosen: "planes".into(),
            q: 1,
            p: 1,
            m: 8192,
            n: 8192,
            k: 8192,
            time_us: 100.0,
            time_us_p10: 99.0,
            time_us_p90: 101.0,
            baseline: "cublaslt-int8".into(),
            baseline_us: 200.0,
            speedup: 2.0,
            tops: 10995.0,
            baseline_tops: 5497.0,
            weight_bytes: 1,
            weight_gbps: 1.0,
            pct_of_hbm: None,
            check_ok: Some(true),
            check_mismatches: Some(0),
            timing: TimingMethod::Graph,
            copies: 1,
            notes: vec![],
            kernel_card: None,
            baseline_card: None,
        }];
        let b = best(&rows, Pair { q: 1, p: 1 }, 8192, 8192, 8192, IntBaseline::CublasLtInt8, "best").unwrap();
        assert_eq!(b.tops, 10995.0);
        assert!(best(&rows, Pair { q: 2, p: 2 }, 8192, 8192, 8192, IntBaseline::CublasLtInt8, "best").is_none());
    }
}
