//! `lowbit-bench`: lowbit's benchmark CLI (see `benches/README.md`).
//!
//! Exit codes: 0 success; 1 error (or a run that stopped early; its partial results are still
//! written); 2 no usable GPU or no libcublas; 3 the run finished but a spot check failed.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use lowbit_bench::baseline::{self, Baseline};
use lowbit_bench::context::BenchContext;
use lowbit_bench::progress::Progress;
use lowbit_bench::report::{MethodInfo, Report, SCHEMA_VERSION, fmt_opt, run_plot, write_report};
use lowbit_bench::shapes::{self, parse_usize_list};
use lowbit_bench::suites::weight_only::{self, WeightOnlyConfig};
use lowbit_bench::suites::{bipolar, int8};
use lowbit_bench::sysinfo::now_utc;
use lowbit_bench::timing::{TimingConfig, TimingMethod};
use lowbit_bench::weights::{CHUNK_ROWS, default_threads};
use lowbit_bench::{BenchError, Result};

/// lowbit's benchmark harness: kernels vs cuBLAS, in the same run, on the same card.
#[derive(Debug, Parser)]
#[command(name = "lowbit-bench", version, about)]
struct Cli {
    /// CUDA device ordinal.
    #[arg(long, global = true, default_value_t = 0)]
    device: usize,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Weight-only GEMM (W{2,3,4,8}A16) vs cuBLAS fp16 / bf16 over layer shapes and M.
    WeightOnly(Box<WeightOnlyArgs>),
    /// int8 tensor-core GEMMs (W8A8, W4A8) vs cuBLASLt int8 and cuBLAS fp16 over layer shapes and M.
    Int8(Box<Int8Args>),
    /// bipolar-INT GEMMs (w{q}a{p}-bipolar; planes, int8 mapping, auto) vs cuBLASLt int8 and cuBLAS fp16.
    Bipolar(Box<BipolarArgs>),
    /// Device, versions and measured copy bandwidth.
    Info {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Args)]
struct WeightOnlyArgs {
    /// Shapes: acceptance | all | quick | NxK,... | model names (llama-2-7b, mamba2-8b, ...), comma-separated.
    /// Default: acceptance (quick with --quick).
    #[arg(long)]
    shapes: Option<String>,
    /// M values, comma-separated. Default: 1,2,4,...,1024,4096 (1,16,256 with --quick).
    #[arg(long = "m")]
    m: Option<String>,
    /// Weight schemes, comma-separated, or `all`.
    #[arg(long, default_value = weight_only::DEFAULT_SCHEMES)]
    schemes: String,
    /// Baselines, comma-separated (each also sets the kernel's activation dtype for its rows).
    #[arg(long, default_value = "cublas-f16,cublas-bf16")]
    baselines: String,
    #[command(flatten)]
    timing: TimingArgs,
    /// Rows quantized per (shape, scheme); the others repeat them. 0 = every row.
    #[arg(long, default_value_t = CHUNK_ROWS)]
    chunk_rows: usize,
    /// Skip the correctness spot check.
    #[arg(long)]
    no_check: bool,
    /// Kernel path of the weight-only GEMM: auto, mma, wgmma, ws (warp-specialized, INT4, sm_90a) or dequant
    /// (dequantize + cuBLAS).
    #[arg(long, default_value = "auto")]
    path: String,
    /// Force the split-K factor of the mma.sync path (default: automatic).
    #[arg(long)]
    splits: Option<u32>,
    /// Force the rows of X per block of the mma.sync path: 8, 16, 32 or 64 (default: automatic).
    #[arg(long)]
    m_tile: Option<u32>,
    /// Force the warps per 16-row strip of the mma.sync path (in-block split-K): 1, 2, 4 or 8.
    #[arg(long)]
    k_warps: Option<u32>,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Host threads for preparation (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Output directory; results go to <out>/<card>/weight-only.{json,md}.
    #[arg(long, default_value = "docs/results")]
    out: PathBuf,
    /// Smoke test: 2 shapes, M in {1, 16, 256} (explicit --shapes / --m win).
    #[arg(long)]
    quick: bool,
    /// Also run `python3 benches/plot.py` on the JSON (never fails the run).
    #[arg(long)]
    plot: bool,
}

#[derive(Debug, Args)]
struct Int8Args {
    /// Shapes: acceptance | all | quick | NxK,... | model names. Default: llama-2-7b,llama-2-70b,mamba2-8b.
    #[arg(long)]
    shapes: Option<String>,
    /// M values, comma-separated. Default: 1,16,256,1024,4096.
    #[arg(long = "m")]
    m: Option<String>,
    /// Ops: w8a8, w4a8-g128, w4a8 (comma-separated) or all.
    #[arg(long, default_value = "all")]
    ops: String,
    #[command(flatten)]
    timing: TimingArgs,
    /// Skip the exact spot check against cuBLASLt.
    #[arg(long)]
    no_check: bool,
    /// Kernel path: auto, mma, wgmma, stream (small-M weight streaming, M <= 16) or ws (warp-specialized, large M).
    #[arg(long, default_value = "auto")]
    path: String,
    /// Force the split-K factor.
    #[arg(long)]
    splits: Option<u32>,
    /// Force the activation rows per CTA (wgmma 8, 16, 64, 128, 256; mma.sync 16, 64).
    #[arg(long)]
    bx: Option<u32>,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Host threads for preparation (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Output directory; results go to <out>/<card>/int8.{json,md}.
    #[arg(long, default_value = "docs/results")]
    out: PathBuf,
    /// Also run `python3 benches/plot.py` on the JSON (never fails the run).
    #[arg(long)]
    plot: bool,
}

#[derive(Debug, Args)]
struct BipolarArgs {
    /// Shapes: NxK,... | model names | acceptance | all. Default: 8192x8192,28672x8192,8192x28672,4096x4096.
    #[arg(long)]
    shapes: Option<String>,
    /// M values, comma-separated. Default: 1,16,256,1024,4096,8192.
    #[arg(long = "m")]
    m: Option<String>,
    /// (weight, activation) bit pairs: w{q}a{p},... (q, p in 1..=8), `default` (the acceptance rows, W8A8 included),
    /// `all` (every q, p in 1..=8) or `issue` (q, p in {1,2,3,4,8}).
    #[arg(long, default_value = "default")]
    pairs: String,
    #[command(flatten)]
    timing: TimingArgs,
    /// Skip the exact spot check against the CPU integer reference.
    #[arg(long)]
    no_check: bool,
    /// RNG seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Host threads for preparation (default: all cores).
    #[arg(long)]
    threads: Option<usize>,
    /// Output directory; results go to <out>/<card>/bipolar.{json,md}.
    #[arg(long, default_value = "docs/results")]
    out: PathBuf,
    /// Also run `python3 benches/plot.py` on the JSON (never fails the run).
    #[arg(long)]
    plot: bool,
}

/// Timing options shared by every suite; unset values take the suite's defaults ([`SuiteDefaults`]).
#[derive(Debug, Args)]
struct TimingArgs {
    /// Timed batches per operation, median reported [default: weight-only and int8 50, bipolar 20].
    #[arg(long)]
    reps: Option<usize>,
    /// Untimed batches before them [default: weight-only and int8 10, bipolar 5].
    #[arg(long)]
    warmup: Option<usize>,
    /// graph (CUDA graph replay of each batch) or stream (host launches).
    #[arg(long, default_value = "graph")]
    timing: String,
    /// Rotate weights through at least this multiple of the L2 size.
    #[arg(long, default_value_t = 3.0)]
    l2_factor: f64,
    /// Smallest estimated duration of one timed batch, µs.
    #[arg(long, default_value_t = 1000.0)]
    min_batch_us: f64,
    /// Time budget for the timed batches of one operation, s; lowers --reps, never below 5 [default: weight-only
    /// 2, int8 1, bipolar 0.5].
    #[arg(long)]
    max_seconds_per_op: Option<f64>,
    /// Sleep between operations, ms.
    #[arg(long, default_value_t = 0)]
    cooldown_ms: u64,
}

/// A suite's timing defaults: (reps, warmup, max seconds per op).
struct SuiteDefaults(usize, usize, f64);

const WEIGHT_ONLY_TIMING: SuiteDefaults = SuiteDefaults(50, 10, 2.0);
const INT8_TIMING: SuiteDefaults = SuiteDefaults(50, 10, 1.0);
const BIPOLAR_TIMING: SuiteDefaults = SuiteDefaults(20, 5, 0.5);

impl TimingArgs {
    /// The validated timing configuration, with `d` filling what the command line left unset.
    fn config(&self, d: SuiteDefaults) -> Result<TimingConfig> {
        let reps = self.reps.unwrap_or(d.0);
        let max_seconds_per_op = self.max_seconds_per_op.unwrap_or(d.2);
        if reps == 0 {
            return Err(BenchError::invalid("--reps must be at least 1"));
        }
        let non_negative = |v: f64| v.is_finite() && v >= 0.0;
        if !non_negative(self.l2_factor) || !non_negative(self.min_batch_us) || !non_negative(max_seconds_per_op) {
            return Err(BenchError::invalid(
                "--l2-factor, --min-batch-us and --max-seconds-per-op must be finite and >= 0",
            ));
        }
        if max_seconds_per_op == 0.0 {
            return Err(BenchError::invalid("--max-seconds-per-op must be positive"));
        }
        Ok(TimingConfig {
            warmup: self.warmup.unwrap_or(d.1),
            reps,
            l2_factor: self.l2_factor,
            method: self.timing.parse::<TimingMethod>()?,
            min_batch_us: self.min_batch_us,
            max_seconds_per_op,
            cooldown_ms: self.cooldown_ms,
        })
    }
}

/// `--m` as given, else the suite's default M values.
fn ms_or(m: &Option<String>, default: &[usize]) -> Result<Vec<usize>> {
    match m {
        Some(s) => parse_usize_list(s, "--m"),
        None => Ok(default.to_vec()),
    }
}

/// Opens the device, starts the progress bar for `planned` operations, logs the card and `what` runs, and measures
/// the copy bandwidth (recorded in the report's card section).
fn start_run(device: usize, planned: u64, what: String) -> Result<(BenchContext, Progress)> {
    let mut ctx = BenchContext::open(device, true)?;
    let progress = Progress::new(planned);
    progress.log(format!(
        "{} ({}), {} SMs, L2 {} MiB; cuBLAS {}; {what}",
        ctx.card().name,
        ctx.card().slug,
        ctx.card().sm_count,
        ctx.card().l2_cache_bytes >> 20,
        ctx.software().cublas.as_deref().unwrap_or("?"),
    ));
    let copy = ctx.measure_copy_bandwidth()?;
    let read = ctx.measure_read_bandwidth()?;
    progress.log(format!("device-to-device copy: {copy:.0} GB/s (read + write); read-only kernel: {read:.0} GB/s"));
    Ok((ctx, progress))
}

/// Writes the report (JSON + Markdown, optionally the plot) and turns its outcome into the exit code: 1 for a run
/// that stopped early, 3 when `failed` rows failed their check (`check` names the check in the message).
fn finish_run<R: serde::Serialize>(
    out: &std::path::Path,
    report: &Report<R>,
    markdown: &str,
    plot: bool,
    failed: usize,
    check: &str,
) -> Result<ExitCode> {
    let (json, md) = write_report(out, report, markdown)?;
    eprintln!("wrote {} and {}", json.display(), md.display());
    if plot {
        match run_plot(&json) {
            Ok(png) => eprintln!("wrote {}", png.display()),
            Err(e) => eprintln!("warning: no plot: {e}"),
        }
    }
    if let Some(a) = &report.aborted {
        eprintln!("error: the run stopped early: {a}");
        return Ok(ExitCode::from(1));
    }
    if failed > 0 {
        eprintln!("error: {failed} rows failed {check}");
        return Ok(ExitCode::from(3));
    }
    Ok(ExitCode::SUCCESS)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Cmd::WeightOnly(args) => weight_only_cmd(cli.device, args),
        Cmd::Int8(args) => int8_cmd(cli.device, args),
        Cmd::Bipolar(args) => bipolar_cmd(cli.device, args),
        Cmd::Info { json } => info_cmd(cli.device, *json).map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(if e.is_environment() { 2 } else { 1 })
        }
    }
}

fn weight_only_cmd(device: usize, a: &WeightOnlyArgs) -> Result<ExitCode> {
    // Everything that can be validated without a GPU is validated first.
    let rows = shapes::builtin_rows()?;
    let shape_spec = a.shapes.clone().unwrap_or_else(|| if a.quick { "quick" } else { "acceptance" }.to_string());
    let default_ms = if a.quick { &weight_only::QUICK_MS[..] } else { &weight_only::DEFAULT_MS[..] };
    let ms = ms_or(&a.m, default_ms)?;
    let timing = a.timing.config(WEIGHT_ONLY_TIMING)?;
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let cfg = WeightOnlyConfig {
        shapes: shapes::select(&shape_spec, &rows)?,
        ms,
        schemes: weight_only::parse_schemes(&a.schemes)?,
        baselines: Baseline::parse_list(&a.baselines)?,
        timing: timing.clone(),
        check: !a.no_check,
        seed: a.seed,
        threads,
        chunk_rows: a.chunk_rows,
        gemm: lowbit_cuda::GemmConfig {
            path: match a.path.as_str() {
                "auto" => None,
                "mma" => Some(lowbit_cuda::GemmPath::Mma),
                "wgmma" => Some(lowbit_cuda::GemmPath::Wgmma),
                "dequant" => Some(lowbit_cuda::GemmPath::DequantCublas),
                "ws" => Some(lowbit_cuda::GemmPath::Ws),
                other => {
                    return Err(lowbit_bench::error::BenchError::invalid(format!(
                        "--path {other}: expected auto, mma, wgmma, ws or dequant"
                    )));
                }
            },
            splits: a.splits,
            m_tile: a.m_tile,
            k_warps: a.k_warps,
            ..lowbit_cuda::GemmConfig::default()
        },
    };

    let started = now_utc();
    let what = format!(
        "{} shapes x {} M x {} schemes x {} baselines",
        cfg.shapes.len(),
        cfg.ms.len(),
        cfg.schemes.len(),
        cfg.baselines.len()
    );
    let (mut ctx, progress) = start_run(device, weight_only::planned_ops(&cfg), what)?;
    let output = weight_only::run(&ctx, &cfg, &progress);
    progress.finish();

    let report = Report {
        schema_version: SCHEMA_VERSION,
        suite: weight_only::SUITE.to_string(),
        started_utc: started,
        finished_utc: now_utc(),
        command: std::env::args().collect(),
        card: ctx.finish_card(),
        software: ctx.software().clone(),
        method: MethodInfo {
            timing: timing.clone(),
            timing_description: format!(
                "CUDA events on one non-blocking stream; per operation: one untimed call per weight copy, an \
                 estimate, then {} untimed and up to {} timed batches ({}), each batch a whole number of \
                 rotations through the weight copies lasting >= {} us; time per call = median over batches of \
                 batch time / calls. Copies: smallest R with R x bytes >= {} x L2.",
                timing.warmup,
                timing.reps,
                match timing.method {
                    TimingMethod::Graph => "each batch captured once into a CUDA graph and replayed",
                    TimingMethod::Stream => "each batch launched back-to-back from the host",
                },
                timing.min_batch_us,
                timing.l2_factor
            ),
            weights: format!(
                "N(0, 0.02^2) floats; the first {} rows (all rows when N is smaller or not a multiple of 16) \
                 quantized with lowbit_core::quantize and repacked, then repeated to N rows; cuBLAS weights are the \
                 unquantized floats of the same rows in f16 / bf16",
                cfg.chunk_rows
            ),
            activations: "uniform in [-1, 1), one [max M, K] matrix per dtype, the first M rows used; not rotated \
                          (L2-resident when they fit, as in decode)"
                .to_string(),
            check: if cfg.check {
                "spot check per (scheme, M, dtype): kernel output (NaN-poisoned first) vs cuBLAS on the exactly \
                 dequantized weight rounded to the dtype; relative Frobenius error, tolerance 4e-3 (f16) / 2.4e-2 (bf16)"
                    .to_string()
            } else {
                "none (--no-check)".to_string()
            },
            seed: cfg.seed,
            threads,
        },
        shapes: cfg.shapes.clone(),
        rows: output.rows,
        skipped: output.skipped,
        aborted: output.aborted,
    };
    let failed = report.rows.iter().filter(|r| r.check_ok == Some(false)).count();
    finish_run(
        &a.out,
        &report,
        &weight_only::markdown(&report),
        a.plot,
        failed,
        "the correctness spot check (rel_err in the JSON)",
    )
}

fn int8_cmd(device: usize, a: &Int8Args) -> Result<ExitCode> {
    let rows = shapes::builtin_rows()?;
    let ms = ms_or(&a.m, &int8::DEFAULT_MS)?;
    let timing = a.timing.config(INT8_TIMING)?;
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let cfg = int8::Int8Config {
        shapes: shapes::select(a.shapes.as_deref().unwrap_or(int8::DEFAULT_SHAPES), &rows)?,
        ms,
        ops: int8::Op::parse_list(&a.ops)?,
        timing: timing.clone(),
        check: !a.no_check,
        seed: a.seed,
        threads,
        gemm: lowbit_cuda::I8Config {
            path: match a.path.as_str() {
                "auto" => None,
                "mma" => Some(lowbit_cuda::I8Path::Mma),
                "wgmma" => Some(lowbit_cuda::I8Path::Wgmma),
                "stream" => Some(lowbit_cuda::I8Path::Stream),
                "ws" => Some(lowbit_cuda::I8Path::Ws),
                other => {
                    return Err(BenchError::invalid(format!(
                        "--path {other}: expected auto, mma, wgmma, stream or ws"
                    )));
                }
            },
            splits: a.splits,
            bx: a.bx,
        },
    };
    let started = now_utc();
    let what = format!("{} shapes x {} M x {} ops", cfg.shapes.len(), cfg.ms.len(), cfg.ops.len());
    let (mut ctx, progress) = start_run(device, int8::planned_ops(&cfg), what)?;
    let output = int8::run(&ctx, &cfg, &progress);
    progress.finish();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        suite: int8::SUITE.to_string(),
        started_utc: started,
        finished_utc: now_utc(),
        command: std::env::args().collect(),
        card: ctx.finish_card(),
        software: ctx.software().clone(),
        method: MethodInfo {
            timing: timing.clone(),
            timing_description:
                "as lowbit-bench weight-only: CUDA events on one non-blocking stream, batches of whole \
                                 rotations through the weight copies captured into CUDA graphs, median over batches"
                    .to_string(),
            weights: format!(
                "N(0, 0.02^2) floats; the first {} rows quantized (W8 per-channel, W4 QQQ g128 / per-channel), \
                 repeated to N rows; cuBLASLt gets the W8 codes, cuBLAS the fp16 floats",
                int8::CHUNK_ROWS
            ),
            activations: "random int8 codes in [-127, 127] with per-token f32 scales (kernels); random fp16 in \
                          [-1, 1) (cuBLAS fp16); one [max M, K] matrix, first M rows"
                .to_string(),
            check: if cfg.check {
                "exact: each op's int32 accumulator (poisoned output) equals cuBLASLt int8 on the same operands"
                    .to_string()
            } else {
                "none (--no-check)".to_string()
            },
            seed: cfg.seed,
            threads,
        },
        shapes: cfg.shapes.clone(),
        rows: output.rows,
        skipped: output.skipped,
        aborted: output.aborted,
    };
    let failed = report.rows.iter().filter(|r| r.check_ok == Some(false)).count();
    finish_run(&a.out, &report, &int8::markdown(&report), a.plot, failed, "the exact check against cuBLASLt")
}

fn info_cmd(device: usize, json: bool) -> Result<()> {
    let has_cublas = baseline::ensure_cublas().is_ok();
    let mut ctx = BenchContext::open(device, has_cublas)?;
    let copy = ctx.measure_copy_bandwidth()?;
    let read = ctx.measure_read_bandwidth()?;
    let card = ctx.finish_card();
    let sw = ctx.software().clone();
    if json {
        let v = serde_json::json!({ "card": card, "software": sw });
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(());
    }
    println!("device      {} (ordinal {}, {}), cc {}", card.name, card.ordinal, card.slug, card.compute_capability);
    println!("PCI         {}", card.pci_bus_id.as_deref().unwrap_or("?"));
    println!(
        "SMs {}, L2 {} MiB, memory {:.1} GiB",
        card.sm_count,
        card.l2_cache_bytes >> 20,
        card.memory_bytes as f64 / (1u64 << 30) as f64
    );
    let pct = card.hbm_peak_gbps.map(|p| 100.0 * copy / p);
    println!(
        "bandwidth   D2D copy {copy:.0} GB/s (read + write, {} MiB) = {}% of HBM peak {} GB/s",
        card.copy_bytes.unwrap_or(0) >> 20,
        fmt_opt(pct, 1),
        fmt_opt(card.hbm_peak_gbps, 0)
    );
    println!(
        "            read-only kernel {read:.0} GB/s ({} MiB) = {}% of HBM peak",
        card.read_bytes.unwrap_or(0) >> 20,
        fmt_opt(card.hbm_peak_gbps.map(|p| 100.0 * read / p), 1)
    );
    if let Some(c) = card.clocks_start {
        println!(
            "clocks      SM {} / max {} MHz, memory {} MHz, power {} W",
            fmt_opt(c.sm_mhz, 0),
            fmt_opt(c.max_sm_mhz, 0),
            fmt_opt(c.mem_mhz, 0),
            fmt_opt(c.power_w, 1)
        );
    } else {
        println!("clocks      (nvidia-smi not available)");
    }
    println!("driver      {} (CUDA {})", sw.driver.as_deref().unwrap_or("?"), sw.driver_cuda);
    println!("cudart      {} (static, in the kernel library)", sw.cuda_runtime);
    match &sw.cublas {
        Some(v) => println!(
            "cuBLAS      {v} ({}), {}{}",
            sw.cublas_version.map_or("?".to_string(), |v| v.to_string()),
            sw.cublas_library.as_deref().unwrap_or("?"),
            sw.cublas_found_in.as_ref().map_or(String::new(), |d| format!(" (found in {d}, not on LD_LIBRARY_PATH)"))
        ),
        None => println!("cuBLAS      not found: {}", BenchError::NoCublas),
    }
    println!("nvcc        {}", sw.nvcc);
    println!("kernels     {} (ABI {})", sw.kernel_archs, sw.kernels_abi);
    Ok(())
}

fn bipolar_cmd(device: usize, a: &BipolarArgs) -> Result<ExitCode> {
    let rows = shapes::builtin_rows()?;
    let ms = ms_or(&a.m, &bipolar::DEFAULT_MS)?;
    let timing = a.timing.config(BIPOLAR_TIMING)?;
    let threads = a.threads.unwrap_or_else(default_threads).max(1);
    let cfg = bipolar::BipolarConfig {
        shapes: shapes::select(a.shapes.as_deref().unwrap_or(bipolar::DEFAULT_SHAPES), &rows)?,
        ms,
        pairs: bipolar::Pair::parse_list(&a.pairs)?,
        timing: timing.clone(),
        check: !a.no_check,
        seed: a.seed,
        threads,
    };
    let started = now_utc();
    let what = format!("{} shapes x {} M x {} pairs x 2 mappings", cfg.shapes.len(), cfg.ms.len(), cfg.pairs.len());
    let (mut ctx, progress) = start_run(device, bipolar::planned_ops(&cfg), what)?;
    let output = bipolar::run(&ctx, &cfg, &progress);
    progress.finish();
    let report = Report {
        schema_version: SCHEMA_VERSION,
        suite: bipolar::SUITE.to_string(),
        started_utc: started,
        finished_utc: now_utc(),
        command: std::env::args().collect(),
        card: ctx.finish_card(),
        software: ctx.software().clone(),
        method: MethodInfo {
            timing: timing.clone(),
            timing_description: "as lowbit-bench int8: CUDA events on one non-blocking stream, batches of whole \
                                 rotations through the weight copies captured into CUDA graphs, median over batches; \
                                 the auto rows repeat the measurement of the mapping the library chose"
                .to_string(),
            weights: format!(
                "N(0, 0.02^2) floats; the first {} rows quantized to native bipolar codes (per-channel scales), \
                 repeated to N rows; cuBLASLt gets W8 per-channel codes of the same floats, cuBLAS the fp16 floats",
                bipolar::CHUNK_ROWS
            ),
            activations: "random fp16 in [-1, 1) quantized per token to p-bit bipolar codes by the library's \
                          activation kernel (kernels); random int8 codes (cuBLASLt); fp16 (cuBLAS); first M rows"
                .to_string(),
            check: if cfg.check {
                "exact: each mapping's Y_int (int32 output into a poisoned buffer; the int8 mapping through \
                 exact_from_int8) equals a CPU integer reference on 16 sampled columns of the first 4 rows, and \
                 the two mappings agree on every element of those rows"
                    .to_string()
            } else {
                "none (--no-check)".to_string()
            },
            seed: cfg.seed,
            threads,
        },
        shapes: cfg.shapes.clone(),
        rows: output.rows,
        skipped: output.skipped,
        aborted: output.aborted,
    };
    let failed = report.rows.iter().filter(|r| r.check_ok == Some(false)).count();
    finish_run(&a.out, &report, &bipolar::markdown(&report), a.plot, failed, "the exact check")
}
