//! Result files: `<out>/<card-slug>/<suite>.json` (everything: card, clocks, versions, method,
//! rows) and `<suite>.md` (a readable summary), plus the optional `<suite>.png` from
//! `benches/plot.py`.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::shapes::Shape;
use crate::sysinfo::{ClockSummary, Clocks};
use crate::timing::TimingConfig;

/// Version of the JSON layout; bump on incompatible changes (`plot.py` checks it).
pub const SCHEMA_VERSION: u32 = 1;

/// The card a report was measured on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CardInfo {
    /// Device name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Directory name of the results (`h100-sxm`, `h200`, ...).
    pub slug: String,
    /// CUDA ordinal.
    pub ordinal: usize,
    /// PCI bus id (`00000000:18:00.0`).
    pub pci_bus_id: Option<String>,
    /// Compute capability, e.g. "9.0".
    pub compute_capability: String,
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// Device memory, bytes.
    pub memory_bytes: usize,
    /// L2 cache, bytes.
    pub l2_cache_bytes: usize,
    /// Peak HBM bandwidth from the card table, GB/s (`null` for unknown cards).
    pub hbm_peak_gbps: Option<f64>,
    /// Source of that peak.
    pub hbm_peak_source: Option<String>,
    /// Measured device-to-device copy bandwidth (read + write bytes), GB/s.
    pub copy_gbps: Option<f64>,
    /// Bytes copied (each way) by that probe.
    pub copy_bytes: Option<usize>,
    /// Measured read bandwidth of a pure read kernel (`lowbit_cuda::probe::read_probe`), GB/s: the card's
    /// achievable HBM read ceiling in this run.
    pub read_gbps: Option<f64>,
    /// Bytes read by that probe.
    pub read_bytes: Option<usize>,
    /// `nvidia-smi` clocks and power when the run started.
    pub clocks_start: Option<Clocks>,
    /// ... and when it ended.
    pub clocks_end: Option<Clocks>,
    /// Clock / power samples (every 250 ms) over the whole run.
    pub clock_samples: Option<ClockSummary>,
}

/// Software the numbers depend on.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SoftwareInfo {
    /// Driver version string from `nvidia-smi` (e.g. "580.159.04").
    pub driver: Option<String>,
    /// CUDA version the driver supports (`cuDriverGetVersion`, e.g. "13.0").
    pub driver_cuda: String,
    /// CUDA runtime linked into the kernel library (static cudart, e.g. "13.0").
    pub cuda_runtime: String,
    /// cuBLAS version (`cublasGetProperty`, e.g. "13.1.0").
    pub cublas: Option<String>,
    /// `cublasGetVersion` (e.g. 130100).
    pub cublas_version: Option<i32>,
    /// The libcublas file that was loaded.
    pub cublas_library: Option<String>,
    /// The libcublasLt file that was loaded.
    pub cublaslt_library: Option<String>,
    /// Set when libcublas was not on the loader's path and the harness found and preloaded it from
    /// this directory (`baseline::ensure_cublas`).
    pub cublas_found_in: Option<String>,
    /// nvcc that compiled the kernels (`nvcc --version` release line).
    pub nvcc: String,
    /// GPU targets compiled into the kernel library.
    pub kernel_archs: String,
    /// Kernel C ABI version.
    pub kernels_abi: i32,
    /// Version of this harness.
    pub lowbit_bench: String,
}

/// How the numbers were produced.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MethodInfo {
    /// The timing knobs (warm-up, reps, L2 rotation factor, graph or stream, ...).
    pub timing: TimingConfig,
    /// One-paragraph description of the timing method.
    pub timing_description: String,
    /// How weights were generated.
    pub weights: String,
    /// How activations were generated and used.
    pub activations: String,
    /// Correctness spot check performed on each point.
    pub check: String,
    /// RNG seed.
    pub seed: u64,
    /// Host threads used for preparation.
    pub threads: usize,
}

/// A point that was not measured, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Skipped {
    /// What (op, shape, M).
    pub what: String,
    /// Why.
    pub reason: String,
}

/// A complete report of one suite run; `R` is the suite's row type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Report<R> {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Suite name (`weight-only`).
    pub suite: String,
    /// UTC start time.
    pub started_utc: String,
    /// UTC end time.
    pub finished_utc: String,
    /// The command line.
    pub command: Vec<String>,
    /// The card.
    pub card: CardInfo,
    /// Software versions.
    pub software: SoftwareInfo,
    /// Method.
    pub method: MethodInfo,
    /// The shapes measured, with the layers they stand for.
    pub shapes: Vec<Shape>,
    /// The measurements.
    pub rows: Vec<R>,
    /// Points not measured.
    pub skipped: Vec<Skipped>,
    /// Set when the run stopped early (the rows are what was measured before).
    pub aborted: Option<String>,
}

/// "13.0" for a CUDA version integer (`1000 · major + 10 · minor`, e.g. 13000, 12080).
pub fn cuda_version_string(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// Writes `contents` to `path` through a temporary file and a rename (no half-written results).
pub fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let io = |source| BenchError::Io { path: path.display().to_string(), source };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, contents).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// Writes `<out>/<report.card.slug>/<suite>.json` and `.md`; returns both paths.
pub fn write_report<R: Serialize>(out: &Path, report: &Report<R>, markdown: &str) -> Result<(PathBuf, PathBuf)> {
    let dir = out.join(&report.card.slug);
    let json = dir.join(format!("{}.json", report.suite));
    let md = dir.join(format!("{}.md", report.suite));
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    write_atomic(&json, text.as_bytes())?;
    write_atomic(&md, markdown.as_bytes())?;
    Ok((json, md))
}

/// Where `plot.py` is: `$LOWBIT_BENCH_PLOT`, `benches/plot.py` under the working directory, or
/// next to the executable (`plot.py`, `../benches/plot.py`, `../../benches/plot.py`).
pub fn find_plot_script() -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(p) = std::env::var_os("LOWBIT_BENCH_PLOT") {
        candidates.push(PathBuf::from(p));
    }
    candidates.push(PathBuf::from("benches/plot.py"));
    if let Some(dir) = std::env::current_exe().ok().and_then(|e| e.parent().map(Path::to_path_buf)) {
        for rel in ["plot.py", "../benches/plot.py", "../../benches/plot.py", "../../../benches/plot.py"] {
            candidates.push(dir.join(rel));
        }
    }
    candidates.into_iter().find(|p| p.is_file())
}

/// Runs `python3 plot.py <json>`; the PNG path on success, a message otherwise (never fatal:
/// python or matplotlib may be missing on the machine).
pub fn run_plot(json: &Path) -> std::result::Result<PathBuf, String> {
    let script = find_plot_script().ok_or("benches/plot.py not found (set LOWBIT_BENCH_PLOT)")?;
    let out =
        Command::new("python3").arg(&script).arg(json).output().map_err(|e| format!("cannot run python3: {e}"))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(format!("{} failed: {}", script.display(), err.trim()));
    }
    Ok(json.with_extension("png"))
}

/// `v` with `digits` significant decimals, or `-` when missing / not finite (Markdown cells).
pub fn fmt_opt(v: Option<f64>, digits: usize) -> String {
    match v {
        Some(x) if x.is_finite() => format!("{x:.digits$}"),
        _ => "-".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuda_versions() {
        assert_eq!(cuda_version_string(13000), "13.0");
        assert_eq!(cuda_version_string(12080), "12.8");
        assert_eq!(cuda_version_string(13010), "13.1");
    }

    #[test]
    fn atomic_write_creates_directories() {
        let dir = std::env::temp_dir().join(format!("lowbit-bench-test-{}", std::process::id()));
        let p = dir.join("a/b/c.json");
        write_atomic(&p, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "{}");
        assert!(!p.with_extension("tmp").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn markdown_cells() {
        assert_eq!(fmt_opt(Some(1.23456), 2), "1.23");
        assert_eq!(fmt_opt(None, 2), "-");
        assert_eq!(fmt_opt(Some(f64::NAN), 2), "-");
    }
}
