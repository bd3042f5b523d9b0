//! Facts about the machine recorded beside every result: clocks and power from `nvidia-smi`
//! (once, and sampled while the benchmark runs), the driver string, and a UTC timestamp.
//!
//! `nvidia-smi` is optional: when it is missing or fails, the fields are `null` and nothing else
//! changes. The GPU is addressed by PCI bus id, which (unlike an index) means the same card for
//! CUDA and for `nvidia-smi` whatever `CUDA_VISIBLE_DEVICES` says.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{SystemTime, UNIX_EPOCH};

use cudarc::driver::CudaContext;
use cudarc::driver::sys::CUdevice_attribute;
use serde::{Deserialize, Serialize};

use crate::timing::percentile;

/// The `nvidia-smi -i` selector of a CUDA device: its PCI bus id (`00000000:18:00.0`).
pub fn pci_bus_id(ctx: &CudaContext) -> Option<String> {
    let attr = |a| ctx.attribute(a).ok();
    let domain = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DOMAIN_ID)?;
    let bus = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_BUS_ID)?;
    let dev = attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_PCI_DEVICE_ID)?;
    Some(format!("{domain:08X}:{bus:02X}:{dev:02X}.0"))
}

/// Runs `nvidia-smi args...`; its stdout when it exits successfully.
fn nvidia_smi(args: &[&str]) -> Option<String> {
    let out = Command::new("nvidia-smi").args(args).stderr(Stdio::null()).output().ok()?;
    out.status.success().then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// A number from an `nvidia-smi --format=csv,nounits` field (`[N/A]`, `[Not Supported]` → `None`).
fn field(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Clocks and power of the card at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Clocks {
    /// Current SM clock, MHz.
    pub sm_mhz: Option<f64>,
    /// Maximum SM clock, MHz.
    pub max_sm_mhz: Option<f64>,
    /// Current memory clock, MHz.
    pub mem_mhz: Option<f64>,
    /// Board power draw, W.
    pub power_w: Option<f64>,
}

/// Parses one line of `--query-gpu=clocks.sm,clocks.max.sm,clocks.mem,power.draw
/// --format=csv,noheader,nounits`.
pub fn parse_clocks(line: &str) -> Option<Clocks> {
    let f: Vec<&str> = line.trim().split(',').collect();
    if f.len() != 4 {
        return None;
    }
    Some(Clocks { sm_mhz: field(f[0]), max_sm_mhz: field(f[1]), mem_mhz: field(f[2]), power_w: field(f[3]) })
}

/// Current clocks of the card `selector` (a PCI bus id or index), if `nvidia-smi` can tell.
pub fn query_clocks(selector: &str) -> Option<Clocks> {
    let out = nvidia_smi(&[
        "--query-gpu=clocks.sm,clocks.max.sm,clocks.mem,power.draw",
        "--format=csv,noheader,nounits",
        "-i",
        selector,
    ])?;
    parse_clocks(out.lines().next()?)
}

/// The driver version string (e.g. `580.159.04`), if `nvidia-smi` can tell.
pub fn driver_string(selector: &str) -> Option<String> {
    let out = nvidia_smi(&["--query-gpu=driver_version", "--format=csv,noheader", "-i", selector])?;
    let v = out.lines().next()?.trim().to_string();
    (!v.is_empty()).then_some(v)
}

/// Summary of the clock / power samples taken while the benchmark ran.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct ClockSummary {
    /// Samples taken (every 250 ms).
    pub samples: usize,
    /// Samples with GPU utilization ≥ 50% ("busy").
    pub busy_samples: usize,
    /// Median SM clock over busy samples, MHz.
    pub busy_sm_mhz_median: Option<f64>,
    /// 5th percentile of the SM clock over busy samples, MHz (power capping shows here).
    pub busy_sm_mhz_p5: Option<f64>,
    /// Lowest SM clock over busy samples, MHz.
    pub busy_sm_mhz_min: Option<f64>,
    /// Median power over busy samples, W.
    pub busy_power_w_median: Option<f64>,
    /// Highest power over all samples, W.
    pub power_w_max: Option<f64>,
}

/// Summarizes lines of `--query-gpu=clocks.sm,power.draw,utilization.gpu
/// --format=csv,noheader,nounits` (unparsable lines are skipped).
pub fn summarize_samples<S: AsRef<str>>(lines: &[S]) -> ClockSummary {
    let mut all_power = Vec::new();
    let (mut busy_sm, mut busy_power) = (Vec::new(), Vec::new());
    let mut samples = 0;
    for line in lines {
        let f: Vec<&str> = line.as_ref().trim().split(',').collect();
        if f.len() != 3 {
            continue;
        }
        let (sm, power, util) = (field(f[0]), field(f[1]), field(f[2]));
        if sm.is_none() && power.is_none() && util.is_none() {
            continue;
        }
        samples += 1;
        all_power.extend(power);
        if util.is_some_and(|u| u >= 50.0) {
            busy_sm.extend(sm);
            busy_power.extend(power);
        }
    }
    let sorted = |mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v
    };
    let (busy_sm, busy_power) = (sorted(busy_sm), sorted(busy_power));
    let q = |v: &[f64], p: f64| (!v.is_empty()).then(|| percentile(v, p));
    ClockSummary {
        samples,
        busy_samples: busy_sm.len(),
        busy_sm_mhz_median: q(&busy_sm, 0.5),
        busy_sm_mhz_p5: q(&busy_sm, 0.05),
        busy_sm_mhz_min: busy_sm.first().copied(),
        busy_power_w_median: q(&busy_power, 0.5),
        power_w_max: all_power.iter().copied().reduce(f64::max),
    }
}

/// Samples SM clock, power and utilization every 250 ms in a child `nvidia-smi` process while the
/// benchmark runs ([`ClockMonitor::start`] / [`ClockMonitor::stop`]).
#[derive(Debug)]
pub struct ClockMonitor {
    child: Child,
    reader: Option<JoinHandle<()>>,
    lines: Arc<Mutex<Vec<String>>>,
}

impl ClockMonitor {
    /// Starts sampling card `selector`; `None` when `nvidia-smi` cannot be started.
    pub fn start(selector: &str) -> Option<Self> {
        let mut child = Command::new("nvidia-smi")
            .args([
                "--query-gpu=clocks.sm,power.draw,utilization.gpu",
                "--format=csv,noheader,nounits",
                "-i",
                selector,
                "-lms",
                "250",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let stdout = child.stdout.take()?;
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(|l| l.ok()) {
                if let Ok(mut v) = sink.lock() {
                    v.push(line);
                }
            }
        });
        Some(Self { child, reader: Some(reader), lines })
    }

    /// Stops the sampler (kills the child it started) and summarizes what it saw.
    pub fn stop(mut self) -> ClockSummary {
        self.halt();
        let lines = self.lines.lock().map(|v| v.clone()).unwrap_or_default();
        summarize_samples(&lines)
    }

    fn halt(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if let Some(h) = self.reader.take() {
            let _ = h.join();
        }
    }
}

impl Drop for ClockMonitor {
    fn drop(&mut self) {
        self.halt();
    }
}

/// `YYYY-MM-DDTHH:MM:SSZ` for seconds since the Unix epoch.
pub fn format_utc(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

/// Now, as [`format_utc`].
pub fn now_utc() -> String {
    format_utc(SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_line() {
        let c = parse_clocks("1980, 1980, 2619, 121.37").unwrap();
        assert_eq!(
            c,
            Clocks { sm_mhz: Some(1980.0), max_sm_mhz: Some(1980.0), mem_mhz: Some(2619.0), power_w: Some(121.37) }
        );
        let c = parse_clocks("345, 1980, 2619, [N/A]").unwrap();
        assert_eq!(c.power_w, None);
        assert!(parse_clocks("garbage").is_none());
    }

    #[test]
    fn sample_summary_uses_busy_samples() {
        let lines = [
            "345, 70.1, 0",
            "1980, 650.0, 100",
            "1755, 700.2, 98",
            "[N/A], [N/A], [N/A]",
            "1980, 640.0, 97",
            "bad line",
            "1410, 690.0, 100",
        ];
        let s = summarize_samples(&lines);
        assert_eq!((s.samples, s.busy_samples), (5, 4));
        assert_eq!(s.busy_sm_mhz_median, Some((1755.0 + 1980.0) / 2.0));
        assert_eq!(s.busy_sm_mhz_min, Some(1410.0));
        assert_eq!(s.power_w_max, Some(700.2));
        assert_eq!(summarize_samples::<&str>(&[]), ClockSummary::default());
    }

    #[test]
    fn utc_formatting() {
        assert_eq!(format_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(format_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(format_utc(1_795_674_616), "2026-11-26T06:30:16Z");
        assert!(now_utc().ends_with('Z'));
    }
}
