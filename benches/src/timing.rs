//! The timing core: CUDA events on one stream, warm-up, the median of many timed repetitions,
//! operands rotated through more than `l2_factor` × the L2 cache, and (by default) one CUDA graph
//! per timed batch.
//!
//! # How one operation is timed ([`Timer::measure`])
//!
//! The caller allocates `copies` independent copies of the operand that streams from memory (the
//! weight): the smallest count with `copies × bytes ≥ l2_factor × L2` ([`rotation_copies`], factor 3
//! by default, as ThunderKittens does), so consecutive calls never find their weight in L2. Call `i`
//! uses copy `i % copies`. Activations and outputs are *not* rotated: like a decode step they stay
//! L2-resident when they fit, which is what a kernel sees inside a model.
//!
//! 1. **Untimed warm-up**: one call per copy (module loading, cuBLAS heuristics, first touch),
//!    then a stream synchronize so launch errors surface here.
//! 2. **Estimate**: `max(copies, 4)` back-to-back calls between two events give a per-call time
//!    (an over-estimate when launches are host-bound, which only makes batches smaller).
//! 3. **Batch size**: `calls` = the smallest multiple of `copies` whose estimated run time is at
//!    least `min_batch_us` ([`calls_per_rep`]), so every copy is visited equally and event
//!    resolution (~0.5 µs) and per-batch overheads are amortised.
//! 4. **Timed repetitions**: with [`TimingMethod::Graph`] the `calls` launches are captured once
//!    into a CUDA graph (`cuStreamBeginCapture`, relaxed mode) and the graph is replayed `warmup`
//!    times, then `reps` times with an event recorded between consecutive replays; with
//!    [`TimingMethod::Stream`] the `calls` launches are issued back-to-back from the host instead
//!    (the host must then launch faster than the GPU executes: [`Measurement::launch_bound`] flags
//!    operations whose per-call host issue time, taken in step 2, reaches 90% of the measured
//!    time). Batches are queued back-to-back and synchronized once at the end, so the GPU never
//!    idles between repetitions. Each sample is `elapsed(event r, event r+1) / calls`; the
//!    reported time is the median of the samples (p10 / p90 kept as the spread).
//!
//! A graph that cannot be captured (a library refusing capture) falls back to stream launches for
//! that operation and says so in [`Measurement::fallback`]. The number of repetitions is lowered
//! (not below [`MIN_REPS`]) when `reps` batches would exceed `max_seconds_per_op`.
//!
//! This is the "streamed" method of `h100-baselines.md` §4 and of its "Peers measured" section
//! (graph over rotated weight copies, median of replays, inter-kernel gaps of the graph included),
//! so numbers are comparable with those tables.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use cudarc::driver::sys::{CUevent_flags, CUgraphInstantiate_flags, CUstreamCaptureMode};
use cudarc::driver::{CudaEvent, CudaGraph, CudaStream};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result};
use crate::nvml::{NvmlSampler, Window};

/// Fewest timed repetitions kept when the time budget per operation cuts `reps`.
pub const MIN_REPS: usize = 5;

/// Most copies of an operand allocated for L2 rotation (tiny operands: the budget would otherwise
/// mean thousands of allocations; 1024 copies of even a 64 KiB operand exceed 3 × 50 MiB).
pub const MAX_COPIES: usize = 1024;

/// How a timed batch of launches is issued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TimingMethod {
    /// The batch is captured once into a CUDA graph and replayed (no host launch overhead).
    Graph,
    /// The batch is launched from the host, back-to-back, between two events.
    Stream,
}

impl fmt::Display for TimingMethod {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TimingMethod::Graph => "graph",
            TimingMethod::Stream => "stream",
        })
    }
}

impl FromStr for TimingMethod {
    type Err = BenchError;

    fn from_str(s: &str) -> Result<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "graph" => Ok(TimingMethod::Graph),
            "stream" => Ok(TimingMethod::Stream),
            other => Err(BenchError::invalid(format!("timing method '{other}': use graph or stream"))),
        }
    }
}

/// The knobs of the timing method; recorded verbatim in every report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TimingConfig {
    /// Untimed batches (graph replays or stream batches) before the timed ones.
    pub warmup: usize,
    /// Timed batches; the reported time is their median.
    pub reps: usize,
    /// Rotate operands through at least this multiple of the L2 size.
    pub l2_factor: f64,
    /// Graph replay (default) or host launches.
    pub method: TimingMethod,
    /// Smallest estimated duration of one timed batch, in µs.
    pub min_batch_us: f64,
    /// Time budget for the timed batches of one operation, in seconds (lowers `reps`).
    pub max_seconds_per_op: f64,
    /// Sleep between operations, in ms (0 = none).
    pub cooldown_ms: u64,
}

impl Default for TimingConfig {
    fn default() -> Self {
        Self {
            warmup: 10,
            reps: 50,
            l2_factor: 3.0,
            method: TimingMethod::Graph,
            min_batch_us: 1000.0,
            max_seconds_per_op: 2.0,
            cooldown_ms: 0,
        }
    }
}

/// Order statistics of a set of samples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Median.
    pub median: f64,
    /// 10th percentile (linear interpolation).
    pub p10: f64,
    /// 90th percentile (linear interpolation).
    pub p90: f64,
    /// Smallest sample.
    pub min: f64,
    /// Largest sample.
    pub max: f64,
    /// Number of samples.
    pub n: usize,
}

impl Stats {
    /// Statistics of `samples`; `None` when empty or when a sample is not finite.
    pub fn from_samples(samples: &[f64]) -> Option<Stats> {
        if samples.is_empty() || samples.iter().any(|v| !v.is_finite()) {
            return None;
        }
        let mut s = samples.to_vec();
        s.sort_by(f64::total_cmp);
        Some(Stats {
            median: percentile(&s, 0.5),
            p10: percentile(&s, 0.1),
            p90: percentile(&s, 0.9),
            min: s[0],
            max: s[s.len() - 1],
            n: s.len(),
        })
    }
}

/// Median of `samples` (mean of the two middle values for an even count); `None` when empty.
pub fn median(samples: &[f64]) -> Option<f64> {
    Stats::from_samples(samples).map(|s| s.median)
}

/// The `q`-quantile (`0 ≤ q ≤ 1`) of **sorted** `sorted`, linearly interpolated between the two
/// nearest ranks (NumPy's default). Panics on an empty slice.
pub fn percentile(sorted: &[f64], q: f64) -> f64 {
    assert!(!sorted.is_empty(), "percentile of no samples");
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let (lo, hi) = (pos.floor() as usize, pos.ceil() as usize);
    let frac = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * frac
}

/// Smallest number of copies `R ≥ 1` of a `bytes_per_copy` operand with `R × bytes ≥ factor × L2`,
/// capped at [`MAX_COPIES`].
pub fn rotation_copies(bytes_per_copy: usize, l2_bytes: usize, factor: f64) -> usize {
    if bytes_per_copy == 0 {
        return 1;
    }
    let need = (factor.max(0.0) * l2_bytes as f64).ceil();
    ((need / bytes_per_copy as f64).ceil() as usize).clamp(1, MAX_COPIES)
}

/// Launches per timed batch: the smallest multiple of `copies` (≥ `copies`) whose estimated
/// duration `calls × est_us` reaches `min_batch_us`.
pub fn calls_per_rep(copies: usize, est_us: f64, min_batch_us: f64) -> usize {
    let copies = copies.max(1);
    let want = if est_us > 0.0 && est_us.is_finite() { (min_batch_us / est_us).ceil().max(1.0) as usize } else { 1 };
    want.div_ceil(copies).max(1) * copies
}

/// Timed repetitions that fit `budget_s` at `per_rep_us` each: `wanted`, lowered to the budget but
/// never below `min(wanted, floor)`.
pub fn reps_within(budget_s: f64, per_rep_us: f64, wanted: usize, floor: usize) -> usize {
    let wanted = wanted.max(1);
    if per_rep_us.is_nan() || per_rep_us <= 0.0 || !budget_s.is_finite() {
        return wanted;
    }
    let fit = (budget_s * 1e6 / per_rep_us).floor() as usize;
    fit.clamp(floor.min(wanted), wanted)
}

/// The result of timing one operation. Times are per call, in µs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Measurement {
    /// Per-call time statistics over the timed batches, µs.
    pub stats: Stats,
    /// How the timed batches were issued.
    pub method: TimingMethod,
    /// Launches per timed batch (a multiple of `copies`).
    pub calls_per_rep: usize,
    /// Timed batches.
    pub reps: usize,
    /// Untimed batches before them.
    pub warmup: usize,
    /// Operand copies rotated through.
    pub copies: usize,
    /// Why graph timing fell back to stream launches, if it did.
    pub fallback: Option<String>,
    /// Stream timing only: issuing one call took the host at least 90% of the measured time per
    /// call, so the time may be the launch rate rather than the kernel's.
    pub launch_bound: bool,
    /// SM clock, power and clock-event reasons while the timed batches ran (NVML, when available).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card: Option<Window>,
}

/// Times operations on one stream (see the module documentation).
#[derive(Debug)]
pub struct Timer {
    stream: Arc<CudaStream>,
    cfg: TimingConfig,
    nvml: Option<Arc<NvmlSampler>>,
    /// Host instants bracketing the last timed batches' GPU execution (for the NVML window).
    last: std::cell::Cell<Option<(Instant, Instant)>>,
}

impl Timer {
    /// A timer on `stream`. For [`TimingMethod::Graph`] the stream must not be the legacy default
    /// stream (it cannot be captured): use a stream from `CudaContext::new_stream`.
    pub fn new(stream: Arc<CudaStream>, cfg: TimingConfig) -> Self {
        Self { stream, cfg, nvml: None, last: std::cell::Cell::new(None) }
    }

    /// Records the card's clock and power during each measurement's timed batches ([`Measurement::card`]).
    pub fn with_nvml(mut self, nvml: Option<Arc<NvmlSampler>>) -> Self {
        self.nvml = nvml;
        self
    }

    /// The stream every launch must go to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// The timing configuration.
    pub fn config(&self) -> &TimingConfig {
        &self.cfg
    }

    fn timing_event(&self) -> Result<CudaEvent> {
        Ok(self.stream.context().new_event(Some(CUevent_flags::CU_EVENT_DEFAULT))?)
    }

    /// Times `launch`, which must enqueue exactly one call on [`Timer::stream`] using operand copy
    /// `i` (`0 ≤ i < copies`) and nothing else (no synchronization, no allocation: it may be
    /// captured into a graph).
    pub fn measure<F>(&self, copies: usize, mut launch: F) -> Result<Measurement>
    where
        F: FnMut(usize) -> Result<()>,
    {
        let copies = copies.max(1);
        let stream = self.stream.clone();
        if self.cfg.cooldown_ms > 0 {
            std::thread::sleep(Duration::from_millis(self.cfg.cooldown_ms));
        }
        // 1. Untimed warm-up: every copy once.
        for i in 0..copies {
            launch(i)?;
        }
        stream.synchronize()?;
        // 2. Estimate the per-call time.
        let n_est = copies.max(4);
        let (e0, e1) = (self.timing_event()?, self.timing_event()?);
        e0.record(&stream)?;
        let t_issue = Instant::now();
        for i in 0..n_est {
            launch(i % copies)?;
        }
        // Host time to issue one call (few enough calls that the launch queue does not fill up).
        let host_us_per_call = t_issue.elapsed().as_secs_f64() * 1e6 / n_est as f64;
        e1.record(&stream)?;
        let est_us = f64::from(e0.elapsed_ms(&e1)?) * 1000.0 / n_est as f64;
        // 3. Batch size and repetitions within the budget.
        let calls = calls_per_rep(copies, est_us, self.cfg.min_batch_us);
        let reps = reps_within(self.cfg.max_seconds_per_op, calls as f64 * est_us, self.cfg.reps, MIN_REPS);
        let warmup = self.cfg.warmup.min(reps);
        // 4. Timed repetitions.
        let mut fallback = None;
        if self.cfg.method == TimingMethod::Graph {
            match self.capture(calls, copies, &mut launch) {
                Ok(graph) => {
                    let samples = self.timed(reps, warmup, calls, &mut || Ok(graph.launch()?))?;
                    return self.finish(samples, TimingMethod::Graph, calls, reps, warmup, copies, None, false);
                }
                Err(e) => fallback = Some(format!("graph capture failed ({e}); timed stream launches instead")),
            }
        }
        let mut issue = || -> Result<()> {
            for c in 0..calls {
                launch(c % copies)?;
            }
            Ok(())
        };
        let samples = self.timed(reps, warmup, calls, &mut issue)?;
        let launch_bound = Stats::from_samples(&samples).is_some_and(|s| host_us_per_call >= 0.9 * s.median);
        self.finish(samples, TimingMethod::Stream, calls, reps, warmup, copies, fallback, launch_bound)
    }

    #[allow(clippy::too_many_arguments)]
    fn finish(
        &self,
        samples: Vec<f64>,
        method: TimingMethod,
        calls_per_rep: usize,
        reps: usize,
        warmup: usize,
        copies: usize,
        fallback: Option<String>,
        launch_bound: bool,
    ) -> Result<Measurement> {
        let stats = Stats::from_samples(&samples)
            .ok_or_else(|| BenchError::invalid(format!("timing produced unusable samples: {samples:?}")))?;
        let card = match (&self.nvml, self.last.take()) {
            (Some(n), Some((from, to))) => Some(n.window(from, to)),
            _ => None,
        };
        Ok(Measurement { stats, method, calls_per_rep, reps, warmup, copies, fallback, launch_bound, card })
    }

    /// Captures `calls` launches (`launch(c % copies)`) into an instantiated, uploaded CUDA graph
    /// without running them; the stream leaves capture mode whatever happens.
    pub fn capture<F>(&self, calls: usize, copies: usize, launch: &mut F) -> Result<CudaGraph>
    where
        F: FnMut(usize) -> Result<()>,
    {
        self.stream.begin_capture(CUstreamCaptureMode::CU_STREAM_CAPTURE_MODE_RELAXED)?;
        let mut launched = Ok(());
        for c in 0..calls {
            if let Err(e) = launch(c % copies) {
                launched = Err(e);
                break;
            }
        }
        let ended = self.stream.end_capture(CUgraphInstantiate_flags(0));
        launched?;
        let graph = ended?.ok_or_else(|| BenchError::invalid("stream capture produced an empty graph"))?;
        graph.upload()?;
        self.stream.synchronize()?;
        Ok(graph)
    }

    /// Issues `warmup` untimed then `reps` timed batches (of `calls` calls each) back-to-back, with
    /// an event between consecutive batches; returns the per-call samples (µs).
    fn timed(
        &self,
        reps: usize,
        warmup: usize,
        calls: usize,
        issue: &mut dyn FnMut() -> Result<()>,
    ) -> Result<Vec<f64>> {
        let events = (0..=reps).map(|_| self.timing_event()).collect::<Result<Vec<_>>>()?;
        for _ in 0..warmup {
            issue()?;
        }
        events[0].record(&self.stream)?;
        for r in 0..reps {
            issue()?;
            events[r + 1].record(&self.stream)?;
        }
        events[reps].synchronize()?;
        if self.nvml.is_some() {
            // The timed batches ran back-to-back and ended just before the synchronize returned.
            let end = Instant::now();
            let gpu = f64::from(events[0].elapsed_ms(&events[reps])?) * 1e-3;
            let from = end.checked_sub(Duration::from_secs_f64(gpu.max(0.0))).unwrap_or(end);
            self.last.set(Some((from, end)));
        }
        events.windows(2).map(|w| Ok(f64::from(w[0].elapsed_ms(&w[1])?) * 1000.0 / calls as f64)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[7.5]), Some(7.5));
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[1.0, f64::NAN]), None);
    }

    #[test]
    fn percentiles_interpolate_like_numpy() {
        let s: Vec<f64> = (0..=10).map(f64::from).collect();
        assert_eq!(percentile(&s, 0.1), 1.0);
        assert_eq!(percentile(&s, 0.9), 9.0);
        assert_eq!(percentile(&s, 0.0), 0.0);
        assert_eq!(percentile(&s, 1.0), 10.0);
        // numpy.percentile([1, 2, 3, 4], 10) == 1.3
        assert!((percentile(&[1.0, 2.0, 3.0, 4.0], 0.1) - 1.3).abs() < 1e-12);
        let st = Stats::from_samples(&[5.0, 1.0, 4.0, 2.0, 3.0]).unwrap();
        assert_eq!((st.min, st.median, st.max, st.n), (1.0, 3.0, 5.0, 5));
        assert!((st.p10 - 1.4).abs() < 1e-12 && (st.p90 - 4.6).abs() < 1e-12);
    }

    #[test]
    fn rotation_covers_the_l2_factor() {
        let l2 = 50 << 20;
        // 32 MiB fp16 4096x4096: 5 copies = 160 MiB >= 150 MiB.
        assert_eq!(rotation_copies(32 << 20, l2, 3.0), 5);
        // 448 MiB: one copy already exceeds 3x L2.
        assert_eq!(rotation_copies(448 << 20, l2, 3.0), 1);
        // Exactly 3x: no extra copy.
        assert_eq!(rotation_copies(50 << 20, l2, 3.0), 3);
        for bytes in [1usize, 1000, 8 << 20, 117 << 20] {
            let r = rotation_copies(bytes, l2, 3.0);
            assert!(r == MAX_COPIES || r * bytes >= 3 * l2, "{bytes}: {r}");
            assert!(r == 1 || (r - 1) * bytes < 3 * l2, "{bytes}: {r} is not minimal");
        }
        assert_eq!(rotation_copies(0, l2, 3.0), 1);
    }

    #[test]
    fn batches_are_whole_rotations_and_long_enough() {
        assert_eq!(calls_per_rep(5, 10.0, 1000.0), 100);
        assert_eq!(calls_per_rep(3, 10.0, 1000.0), 102);
        assert_eq!(calls_per_rep(2, 2800.0, 1000.0), 2);
        assert_eq!(calls_per_rep(1, 2800.0, 1000.0), 1);
        assert_eq!(calls_per_rep(4, 0.0, 1000.0), 4);
        assert_eq!(calls_per_rep(0, f64::NAN, 1000.0), 1);
    }

    #[test]
    fn reps_respect_the_budget_and_floor() {
        assert_eq!(reps_within(2.0, 1000.0, 50, MIN_REPS), 50);
        assert_eq!(reps_within(2.0, 100_000.0, 50, MIN_REPS), 20);
        assert_eq!(reps_within(2.0, 10_000_000.0, 50, MIN_REPS), MIN_REPS);
        assert_eq!(reps_within(2.0, 10_000_000.0, 3, MIN_REPS), 3);
        assert_eq!(reps_within(2.0, 0.0, 50, MIN_REPS), 50);
    }

    #[test]
    fn method_names_round_trip() {
        for m in [TimingMethod::Graph, TimingMethod::Stream] {
            assert_eq!(m.to_string().parse::<TimingMethod>().unwrap(), m);
            assert_eq!(serde_json::to_string(&m).unwrap(), format!("\"{m}\""));
        }
        assert!("events".parse::<TimingMethod>().is_err());
    }
}
