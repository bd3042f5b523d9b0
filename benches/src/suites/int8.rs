//! Suite `int8`: the int8 tensor-core GEMMs ([`lowbit_cuda::Int8Gemm`]) against a direct cuBLASLt int8 GEMM
//! (`cublaslt-int8`: int8 inputs, int32 output, `CUBLAS_COMPUTE_32I`) and cuBLAS fp16 (`cublas-f16`) on the same
//! shapes, in the same run, on the same card and stream.
//!
//! Ops: `w8a8` (int8 weights, per-channel scales), `w4a8-g128` (4-bit, QQQ group-128 scales), `w4a8` (4-bit,
//! per-channel). Each takes int8 activations with per-token f32 scales and writes f16 through the fused epilogue
//! (the cuBLASLt baseline writes raw int32, i.e. does strictly less work). Per shape:
//! 1. **Weights**: a chunk of N(0, 0.02²) rows is quantized once per op and repeated to N rows; every op's weight
//!    (and the baselines' int8 / fp16 weights) is uploaded `R` times so that `R × bytes ≥ 3 × L2`.
//! 2. **Activations**: random int8 `[max M, K]` codes, per-token scales, and an fp16 `[max M, K]` matrix.
//! 3. **Timing**, per M: both baselines, then every op ([`crate::timing::Timer`], graph replay).
//! 4. **Spot check** (exact): each op runs once more with an int32 output into a poisoned buffer and is compared
//!    element for element with cuBLASLt's int32 result on the same int8 operands (for W4A8 the expanded int8
//!    weight `q · g`). `check_ok` is true only on exact agreement.

use std::fmt::Write as _;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut};
use lowbit_core::int8::{I8Out, W4A8Weight, W8Weight};
use lowbit_cuda::cublaslt::CublasLtInt8;
use lowbit_cuda::int8::RawEpilogue;
use lowbit_cuda::{I8Config, Int8Gemm};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};

use crate::context::BenchContext;
use crate::error::{BenchError, Result};
use crate::progress::Progress;
use crate::report::{Report, Skipped, fmt_opt};
use crate::shapes::Shape;
use crate::suites::common::{SyncOnExit, is_soft, repeat_rows};
use crate::suites::int_baselines::{IntBaseline, IntBaselines};
use crate::timing::{Measurement, TimingConfig, TimingMethod, rotation_copies};
use crate::weights::random_normal;

/// Suite name (file names, `suite` field).
pub const SUITE: &str = "int8";

/// Default M sweep.
pub const DEFAULT_MS: [usize; 5] = [1, 16, 256, 1024, 4096];

/// Default shapes: the layers of Llama-2-7B, Llama-2-70B and Mamba2-8B.
pub const DEFAULT_SHAPES: &str = "llama-2-7b,llama-2-70b,mamba2-8b";

/// Rows quantized per (shape, op); the rest repeat them.
pub const CHUNK_ROWS: usize = 512;

/// An int8 GEMM under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Op {
    /// int8 weights, per-channel scales.
    #[serde(rename = "w8a8")]
    W8a8,
    /// 4-bit weights, group-128 integer scales (QQQ), per-channel f32 scales.
    #[serde(rename = "w4a8-g128")]
    W4a8G128,
    /// 4-bit weights, per-channel scales.
    #[serde(rename = "w4a8")]
    W4a8,
}

impl Op {
    /// Every op, in report order.
    pub const ALL: [Op; 3] = [Op::W8a8, Op::W4a8G128, Op::W4a8];

    /// Report name.
    pub fn name(self) -> &'static str {
        match self {
            Op::W8a8 => "w8a8",
            Op::W4a8G128 => "w4a8-g128",
            Op::W4a8 => "w4a8",
        }
    }

    /// Parses a comma-separated list (`all` = every op).
    pub fn parse_list(s: &str) -> Result<Vec<Op>> {
        if s.trim().eq_ignore_ascii_case("all") {
            return Ok(Op::ALL.to_vec());
        }
        let mut out = Vec::new();
        for p in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let op = Op::ALL
                .into_iter()
                .find(|o| o.name().eq_ignore_ascii_case(p))
                .ok_or_else(|| BenchError::invalid(format!("unknown int8 op '{p}' (w8a8, w4a8-g128, w4a8)")))?;
            if !out.contains(&op) {
                out.push(op);
            }
        }
        if out.is_empty() {
            return Err(BenchError::invalid("no op given"));
        }
        Ok(out)
    }
}

/// The suite's configuration.
#[derive(Debug, Clone)]
pub struct Int8Config {
    /// Shapes.
    pub shapes: Vec<Shape>,
    /// M values.
    pub ms: Vec<usize>,
    /// Ops.
    pub ops: Vec<Op>,
    /// Timing knobs.
    pub timing: TimingConfig,
    /// Run the exact spot check.
    pub check: bool,
    /// RNG seed.
    pub seed: u64,
    /// Host threads.
    pub threads: usize,
    /// Launch overrides.
    pub gemm: I8Config,
}

/// One measured point: an op at one (shape, M) against one baseline.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Op (`w8a8`, `w4a8-g128`, `w4a8`).
    pub op: String,
    /// Rows of X and Y.
    pub m: usize,
    /// Output features.
    pub n: usize,
    /// Input features.
    pub k: usize,
    /// Weight bits.
    pub bits: u32,
    /// Group size (`null` = per-channel).
    pub group: Option<usize>,
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
    /// Kernel TOPS, `2·M·N·K / time`.
    pub tops: f64,
    /// Baseline TOPS.
    pub baseline_tops: f64,
    /// Stored weight bytes of the op.
    pub weight_bytes: usize,
    /// `weight_bytes / time`, GB/s.
    pub weight_gbps: f64,
    /// `weight_gbps` as % of the card's HBM peak.
    pub pct_of_hbm: Option<f64>,
    /// Exact spot check passed (int32 accumulator equal to cuBLASLt's); `null` when not checked.
    pub check_ok: Option<bool>,
    /// Elements that differed in the spot check.
    pub check_mismatches: Option<usize>,
    /// Timing method of the kernel.
    pub timing: TimingMethod,
    /// Weight copies rotated through (kernel).
    pub copies: usize,
    /// Timing remarks.
    pub notes: Vec<String>,
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

/// Timed operations of a run (progress bar).
pub fn planned_ops(cfg: &Int8Config) -> u64 {
    (cfg.shapes.len() * cfg.ms.len() * (2 + cfg.ops.len())) as u64
}

/// Runs the suite; errors of one point skip it, others stop the run (rows so far are kept).
pub fn run(ctx: &BenchContext, cfg: &Int8Config, pb: &Progress) -> SuiteOutput {
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
            break;
        }
    }
    out
}

struct OpState {
    op: Op,
    copies: Vec<Int8Gemm>,
    /// The int8 operand the tensor cores see (for the exact check against cuBLASLt).
    expanded: CudaSlice<i8>,
    weight_bytes: usize,
}

fn build_op(
    ctx: &BenchContext,
    op: Op,
    floats: ndarray::ArrayView2<f32>,
    n: usize,
    cfg: &Int8Config,
) -> Result<OpState> {
    let (dev, l2) = (ctx.device(), ctx.device().info().l2_cache_bytes);
    let k = floats.ncols();
    let (copies, expanded, weight_bytes) = match op {
        Op::W8a8 => {
            let c = W8Weight::quantize(floats)?;
            let full = W8Weight { n, k, codes: repeat_rows(&c.codes, k, n), scales: repeat_rows(&c.scales, 1, n) };
            let r = rotation_copies(n * k, l2, cfg.timing.l2_factor);
            let copies = (0..r).map(|_| Int8Gemm::new_w8(dev, &full)).collect::<std::result::Result<Vec<_>, _>>()?;
            (copies, lowbit_cuda::upload(dev, &full.codes)?, n * k + 4 * n)
        }
        Op::W4a8G128 | Op::W4a8 => {
            let group = if op == Op::W4a8G128 { Some(128) } else { None };
            let c = W4A8Weight::quantize(floats, group)?;
            let gpr = c.groups_per_row();
            let full = W4A8Weight {
                n,
                k,
                group,
                packed: repeat_rows(&c.packed, k / 8, n),
                group_scales: if group.is_some() { repeat_rows(&c.group_scales, gpr, n) } else { Vec::new() },
                scales: repeat_rows(&c.scales, 1, n),
            };
            let r = rotation_copies(n * k / 2, l2, cfg.timing.l2_factor);
            let copies = (0..r).map(|_| Int8Gemm::new_w4(dev, &full)).collect::<std::result::Result<Vec<_>, _>>()?;
            let exp = repeat_rows(&c.expanded_i8(), k, n);
            (copies, lowbit_cuda::upload(dev, &exp)?, full.storage_bytes())
        }
    };
    Ok(OpState { op, copies, expanded, weight_bytes })
}

fn run_shape(
    ctx: &BenchContext,
    lt: &CublasLtInt8,
    cfg: &Int8Config,
    shape: &Shape,
    pb: &Progress,
    out: &mut SuiteOutput,
) -> Result<()> {
    let (n, k) = (shape.n, shape.k);
    let (dev, stream) = (ctx.device(), ctx.stream());
    let cublas = ctx.cublas()?;
    let timer = ctx.timer(cfg.timing.clone());
    let m_max = cfg.ms.iter().copied().max().unwrap_or(1);
    let seed = cfg.seed ^ (n as u64).wrapping_mul(1_000_003) ^ (k as u64).wrapping_mul(7919);
    let id = shape.id();
    let card = ctx.card();

    pb.set_message(format!("{id}: weights"));
    let rows = CHUNK_ROWS.min(n);
    let floats = random_normal(rows, k, seed, 0.02, cfg.threads);
    let mut ops = Vec::new();
    for &op in &cfg.ops {
        match build_op(ctx, op, floats.view(), n, cfg) {
            Ok(s) => ops.push(s),
            Err(e) if is_soft(&e) => {
                out.skipped.push(Skipped { what: format!("{} {id}", op.name()), reason: e.to_string() })
            }
            Err(e) => return Err(e),
        }
    }
    // Baselines' weights and activations; the int8 activations are shared with the ops (per-token scales next).
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5EED);
    let mut bl = IntBaselines::new(ctx, floats.view(), n, m_max, &mut rng, seed ^ 0xF16, &cfg.timing, cfg.threads)?;
    drop(floats);
    let xs: Vec<f32> = (0..m_max).map(|_| rng.random_range(1e-3f32..1e-2)).collect();
    let xscale = stream.clone_htod(&xs)?;
    let _sync = SyncOnExit(stream);
    let y16p = bl.y16.device_ptr_mut(stream).0;
    let x8p = bl.x8.device_ptr(stream).0;
    let xsp = xscale.device_ptr(stream).0;

    let first_row = out.rows.len();
    for &m in &cfg.ms {
        let base = bl.measure(ctx, &timer, lt, cublas, m, &id, pb, &mut out.skipped)?;

        for st in &ops {
            let what = format!("{} {id} M={m}", st.op.name());
            pb.set_message(what.clone());
            let timed = (|| -> Result<(Measurement, Option<(bool, usize)>)> {
                let g0 = &st.copies[0];
                let plan = g0.plan(dev, m, cfg.gemm)?;
                let mut ws = g0.workspace(dev, &plan)?;
                let (wsp, wsb) = match ws.as_mut() {
                    Some(w) => (w.device_ptr_mut(stream).0.next_multiple_of(256), plan.workspace_bytes),
                    None => (0, 0),
                };
                let epi = |g: &Int8Gemm, out: I8Out| RawEpilogue {
                    rs: xsp,
                    rs_val: 0.0,
                    cs: g.channel_scales().device_ptr(stream).0,
                    ..RawEpilogue::new(out)
                };
                let epis: Vec<RawEpilogue> = st.copies.iter().map(|g| epi(g, I8Out::F16)).collect();
                let cu = stream.cu_stream().cast();
                let meas = timer.measure(st.copies.len(), |i| {
                    // SAFETY: x8 holds m rows of K int8 (16-byte aligned rows: K % 16 == 0 for these shapes), y16
                    // m·N f16, the scales [m] / [N] f32, the workspace the plan's bytes (zeroed, one stream); all
                    // alive until the stream is synchronized at the end of this function.
                    Ok(unsafe { st.copies[i].run_raw(dev, x8p, k, &epis[i], y16p, n, &plan, wsp, wsb, cu) }?)
                })?;
                let check = if cfg.check && base.contains_key(&IntBaseline::CublasLtInt8) {
                    // Exact check: int32 output of the kernel (poisoned first) vs cuBLASLt on the same operands.
                    let mut got = stream.clone_htod(&vec![0x7FFF_7FFFi32; m * n])?;
                    let gp = got.device_ptr_mut(stream).0;
                    // SAFETY: as above, with an [m, N] int32 output.
                    unsafe { g0.run_raw(dev, x8p, k, &epi(g0, I8Out::I32), gp, n, &plan, wsp, wsb, cu) }?;
                    let mut want = stream.alloc_zeros::<i32>(m * n)?;
                    let (wp, ep) = (want.device_ptr_mut(stream).0, st.expanded.device_ptr(stream).0);
                    // SAFETY: x8 m·K, the expanded weight N·K int8, want m·N int32 on this stream.
                    unsafe { lt.matmul_raw(m, n, k, x8p, ep, wp) }?;
                    let (a, b) = (stream.clone_dtoh(&got)?, stream.clone_dtoh(&want)?);
                    let bad = a.iter().zip(&b).filter(|(x, y)| x != y).count();
                    Some((bad == 0, bad))
                } else {
                    None
                };
                stream.synchronize()?;
                drop(ws);
                Ok((meas, check))
            })();
            match timed {
                Ok((meas, check)) => {
                    if let Some((false, bad)) = check {
                        pb.log(format!("CHECK FAILED {what}: {bad} of {} int32 elements differ from cuBLASLt", m * n));
                    }
                    for (b, bm) in &base {
                        let row = make_row(st, (m, n, k), &meas, *b, bm, card.hbm_peak_gbps, check);
                        pb.log(format!(
                            "{what}: {:.1} us vs {} {:.1} us -> {:.2}x",
                            row.time_us,
                            b.name(),
                            row.baseline_us,
                            row.speedup
                        ));
                        out.rows.push(row);
                    }
                }
                Err(e) if is_soft(&e) => out.skipped.push(Skipped { what, reason: e.to_string() }),
                Err(e) => return Err(e),
            }
            pb.inc();
        }
    }
    out.rows[first_row..].sort_by(|a, b| (a.m, &a.op, &a.baseline).cmp(&(b.m, &b.op, &b.baseline)));
    stream.synchronize()?;
    Ok(())
}

fn make_row(
    st: &OpState,
    (m, n, k): (usize, usize, usize),
    kernel: &Measurement,
    baseline: IntBaseline,
    base: &Measurement,
    hbm: Option<f64>,
    check: Option<(bool, usize)>,
) -> Row {
    let (t, tb) = (kernel.stats.median, base.stats.median);
    let ops = 2.0 * m as f64 * n as f64 * k as f64;
    let gbps = st.weight_bytes as f64 / (t * 1e-6) / 1e9;
    let mut notes = Vec::new();
    for (who, meas) in [("kernel", kernel), ("baseline", base)] {
        if let Some(f) = &meas.fallback {
            notes.push(format!("{who}: {f}"));
        }
    }
    Row {
        op: st.op.name().to_string(),
        m,
        n,
        k,
        bits: if st.op == Op::W8a8 { 8 } else { 4 },
        group: (st.op == Op::W4a8G128).then_some(128),
        time_us: t,
        time_us_p10: kernel.stats.p10,
        time_us_p90: kernel.stats.p90,
        baseline: baseline.name().to_string(),
        baseline_us: tb,
        speedup: tb / t,
        tops: ops / (t * 1e-6) / 1e12,
        baseline_tops: ops / (tb * 1e-6) / 1e12,
        weight_bytes: st.weight_bytes,
        weight_gbps: gbps,
        pct_of_hbm: hbm.map(|p| 100.0 * gbps / p),
        check_ok: check.map(|c| c.0),
        check_mismatches: check.map(|c| c.1),
        timing: kernel.method,
        copies: kernel.copies,
        notes,
    }
}

/// The markdown report: per shape, one table with both baselines' times and every op's time and ratio (W8A8 vs
/// cuBLASLt int8, W4A8 vs cuBLAS fp16), plus W4A8-g128 over W8A8.
pub fn markdown(r: &Report<Row>) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# lowbit-bench int8 — {} ({})\n", r.card.name, r.card.slug);
    let _ = writeln!(
        s,
        "Same run, same card and stream. Times are medians per call in µs (CUDA graph replay, weights rotated through \
         > 3x L2). `w8a8` ratio is vs `cublaslt-int8` (int8 in, int32 out); `w4a8*` ratios are vs `cublas-f16`; the \
         last column is w8a8 time / w4a8-g128 time. ✗ marks a point whose exact int32 check against cuBLASLt failed.\n"
    );
    let _ = writeln!(
        s,
        "cuBLAS {}, driver {}, kernels {}; started {}.\n",
        r.software.cublas.as_deref().unwrap_or("?"),
        r.software.driver.as_deref().unwrap_or("?"),
        r.software.kernel_archs,
        r.started_utc
    );
    for shape in &r.shapes {
        let rows: Vec<&Row> = r.rows.iter().filter(|x| x.n == shape.n && x.k == shape.k).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}\n", shape.label());
        let _ = writeln!(
            s,
            "| M | cublaslt-int8 | cublas-f16 | w8a8 (vs lt) | w4a8-g128 (vs f16) | w4a8 (vs f16) | w4a8-g128 / w8a8 |"
        );
        let _ = writeln!(s, "|---|---|---|---|---|---|---|");
        let mut ms: Vec<usize> = rows.iter().map(|x| x.m).collect();
        ms.dedup();
        for m in ms {
            let get = |op: &str, b: &str| rows.iter().find(|x| x.m == m && x.op == op && x.baseline == b);
            let base = |b: &str| rows.iter().find(|x| x.m == m && x.baseline == b).map(|x| x.baseline_us);
            let cell = |x: Option<&&Row>| match x {
                Some(x) => {
                    format!("{:.1} ({:.2}x){}", x.time_us, x.speedup, if x.check_ok == Some(false) { " ✗" } else { "" })
                }
                None => "–".into(),
            };
            let w8 = get("w8a8", "cublaslt-int8").or_else(|| get("w8a8", "cublas-f16"));
            let w4g = get("w4a8-g128", "cublas-f16");
            let ratio = match (w8, w4g) {
                (Some(a), Some(b)) => format!("{:.2}x", a.time_us / b.time_us),
                _ => "–".into(),
            };
            let _ = writeln!(
                s,
                "| {m} | {} | {} | {} | {} | {} | {ratio} |",
                fmt_opt(base("cublaslt-int8"), 1),
                fmt_opt(base("cublas-f16"), 1),
                cell(get("w8a8", "cublaslt-int8")),
                cell(w4g),
                cell(get("w4a8", "cublas-f16")),
            );
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
    fn op_names_round_trip() {
        assert_eq!(Op::parse_list("all").unwrap(), Op::ALL.to_vec());
        assert_eq!(Op::parse_list("w4a8, w8a8,w4a8").unwrap(), vec![Op::W4a8, Op::W8a8]);
        assert!(Op::parse_list("w3a8").is_err());
        assert!(Op::parse_list(" ").is_err());
        for op in Op::ALL {
            assert_eq!(serde_json::to_string(&op).unwrap(), format!("\"{}\"", op.name()));
        }
        assert_eq!(serde_json::to_string(&IntBaseline::CublasLtInt8).unwrap(), "\"cublaslt-int8\"");
    }
}
