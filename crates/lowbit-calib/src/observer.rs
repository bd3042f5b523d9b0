//! Activation observers: running min/max, a streaming histogram (percentiles), MSE-optimal clipping, and
//! the static int8 activation scale of W8A8 / W4A8 layers.
//!
//! Observers take activations as `x[rows, K]` (tokens × features). **Per-tensor** observers keep one
//! statistic for all of `x`; **per-channel** observers keep one per feature column (`K` of them).
//!
//! ## Streaming histogram
//! [`Histogram`] has a fixed number of equal-width bins over `[lo, lo + bins·width)`, plus the exact min and
//! max seen. The first batch sets the range to its own `[min, max]`. When a later batch falls outside, the
//! range grows by an **integer** factor `f` of the bin width and an integer number `j` of old bins on the
//! low side: new bin `b` spans old bins `f·b − j .. f·b − j + f`, so re-binning moves whole old bins and is
//! exact (no mass is split or approximated). Statistics treat each bin's count as spread uniformly over the
//! part of the bin inside `[min, max]`.
//!
//! ## MSE-optimal clipping
//! For a uniform quantizer of `bits` bits with clip range `[α·lo, α·hi]` (symmetric: `[−α·absmax, α·absmax]`),
//! [`Histogram::mse_clip`] evaluates the expected squared quantization error of the observed distribution
//! **exactly** for the piecewise-uniform density (integrating `(x − Q(x))²` piece by piece over every bin,
//! clipping error included) for `α = 1/steps, 2/steps, …, 1` and returns the best. The quantizer is the one
//! lowbit uses: symmetric levels `m·Δ`, `|m| ≤ 2^(b−1) − 1`, `Δ = c / (2^(b−1) − 1)`; asymmetric levels
//! `(q − z)·Δ`, `q ∈ [0, 2^b − 1]`, `Δ = (hi − lo)/(2^b − 1)`, `z = rne(−lo/Δ)`.
//!
//! ## Static int8 activation scales
//! [`static_scale`] turns a per-tensor observer into the f32 scale that
//! [`lowbit_core::Int8Activations::quantize_per_tensor`] takes (`x ≈ q·s`, `|q| ≤ 127`): `s = clip / 127`
//! with the clip from the exact absmax, an absolute percentile (e.g. 99.99, as Quamba's percentile observer),
//! or the MSE-optimal 8-bit symmetric clip.

use crate::error::{CalibError, Result, check_finite_f32};
use ndarray::ArrayView2;

/// One statistic for the whole tensor, or one per feature column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ObserverGranularity {
    /// One statistic for every element.
    #[default]
    PerTensor,
    /// One statistic per column of `x[rows, K]` (per input feature).
    PerChannel,
}

/// A closed value range `[lo, hi]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipRange {
    /// Lower end.
    pub lo: f32,
    /// Upper end.
    pub hi: f32,
}

impl ClipRange {
    /// `max(|lo|, |hi|)`.
    pub fn absmax(&self) -> f32 {
        self.lo.abs().max(self.hi.abs())
    }

    /// The symmetric scale of this range for signed `bits`-bit codes (`absmax / (2^(b−1) − 1)`, 1 when that
    /// is 0, lowbit's convention for an all-zero tensor). Errors: `bits` outside 2..=16.
    pub fn symmetric_scale(&self, bits: u32) -> Result<f32> {
        check_bits(bits)?;
        Ok(nonzero(self.absmax() / ((1u32 << (bits - 1)) - 1) as f32))
    }

    /// Asymmetric scale and zero point for unsigned `bits`-bit codes (range widened to include 0):
    /// `s = (hi − lo)/(2^b − 1)`, `z = rne(−lo/s)` clamped to the code range. Errors: `bits` outside 2..=16.
    pub fn asymmetric_params(&self, bits: u32) -> Result<(f32, u32)> {
        check_bits(bits)?;
        let qmax = ((1u32 << bits) - 1) as f32;
        let (lo, hi) = (self.lo.min(0.0), self.hi.max(0.0));
        let s = nonzero((hi - lo) / qmax);
        Ok((s, (-lo / s).round_ties_even().clamp(0.0, qmax) as u32))
    }
}

fn nonzero(s: f32) -> f32 {
    if s == 0.0 || !s.is_finite() { 1.0 } else { s }
}

fn check_bits(bits: u32) -> Result<()> {
    if !(2..=16).contains(&bits) {
        return Err(CalibError::option("bits", format!("{bits} is not in 2..=16")));
    }
    Ok(())
}

fn check_width(what: &str, k: &mut Option<usize>, x: &ArrayView2<f32>) -> Result<()> {
    match *k {
        Some(k) if k != x.ncols() => {
            Err(CalibError::shape(what, format!("[rows, {k}] (as earlier batches)"), format!("{:?}", x.dim())))
        }
        _ => {
            *k = Some(x.ncols());
            Ok(())
        }
    }
}

/// Running minimum and maximum, per tensor or per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct MinMaxObserver {
    granularity: ObserverGranularity,
    k: Option<usize>,
    min: Vec<f32>,
    max: Vec<f32>,
    rows: usize,
}

impl MinMaxObserver {
    /// An empty observer.
    pub fn new(granularity: ObserverGranularity) -> Self {
        Self { granularity, k: None, min: vec![], max: vec![], rows: 0 }
    }

    /// Adds a batch `x[rows, K]` (every batch must have the same `K`; an empty batch is a no-op).
    /// Errors: NaN/Inf (naming the element), a `K` differing from earlier batches.
    pub fn update(&mut self, x: ArrayView2<f32>) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        check_finite_f32("activations", &x)?;
        check_width("activations", &mut self.k, &x)?;
        let channels = match self.granularity {
            ObserverGranularity::PerTensor => 1,
            ObserverGranularity::PerChannel => x.ncols(),
        };
        if self.min.is_empty() {
            self.min = vec![f32::INFINITY; channels];
            self.max = vec![f32::NEG_INFINITY; channels];
        }
        for row in x.rows() {
            for (c, &v) in row.iter().enumerate() {
                let i = if channels == 1 { 0 } else { c };
                self.min[i] = self.min[i].min(v);
                self.max[i] = self.max[i].max(v);
            }
        }
        self.rows += x.nrows();
        Ok(())
    }

    /// Rows seen.
    pub fn samples(&self) -> usize {
        self.rows
    }

    /// The observed range of every channel (one entry per tensor). Errors: no data seen.
    pub fn ranges(&self) -> Result<Vec<ClipRange>> {
        if self.rows == 0 {
            return Err(CalibError::NoSamples { what: "min/max observer".into() });
        }
        Ok(self.min.iter().zip(&self.max).map(|(&lo, &hi)| ClipRange { lo, hi }).collect())
    }

    /// The observed range of a per-tensor observer. Errors: no data, or a per-channel observer.
    pub fn range(&self) -> Result<ClipRange> {
        if self.granularity != ObserverGranularity::PerTensor {
            return Err(CalibError::option("observer", "range() needs a per-tensor observer; use ranges()"));
        }
        Ok(self.ranges()?[0])
    }
}

/// A streaming histogram of one stream of values (see the module doc for range growth).
#[derive(Debug, Clone, PartialEq)]
pub struct Histogram {
    lo: f64,
    width: f64,
    counts: Vec<u64>,
    min: f32,
    max: f32,
    total: u64,
}

/// The result of an MSE clip search.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MseClip {
    /// The clip range (symmetric: `[−c, c]`).
    pub range: ClipRange,
    /// The chosen ratio `α` of the full range.
    pub ratio: f32,
    /// Expected squared quantization error per element at the chosen clip.
    pub mse: f64,
    /// The same at `α = 1` (min/max clipping), for comparison.
    pub mse_minmax: f64,
}

impl Histogram {
    /// An empty histogram of `bins` bins (≥ 2).
    pub fn new(bins: usize) -> Result<Self> {
        if bins < 2 {
            return Err(CalibError::option("histogram bins", format!("{bins} (need at least 2)")));
        }
        Ok(Self { lo: 0.0, width: 0.0, counts: vec![0; bins], min: f32::INFINITY, max: f32::NEG_INFINITY, total: 0 })
    }

    /// Values seen.
    pub fn count(&self) -> u64 {
        self.total
    }

    /// Exact smallest value seen (`+∞` when empty).
    pub fn min(&self) -> f32 {
        self.min
    }

    /// Exact largest value seen (`−∞` when empty).
    pub fn max(&self) -> f32 {
        self.max
    }

    /// Bin counts.
    pub fn counts(&self) -> &[u64] {
        &self.counts
    }

    /// The bin edges: `lo + i·width` for `i ∈ 0..=bins`.
    pub fn edges(&self) -> Vec<f64> {
        (0..=self.counts.len()).map(|i| self.lo + i as f64 * self.width).collect()
    }

    /// Adds finite values (the caller checks finiteness). Two passes: range, then binning.
    pub fn add<I: Iterator<Item = f32> + Clone>(&mut self, values: I) {
        let (mut bmin, mut bmax, mut n) = (f32::INFINITY, f32::NEG_INFINITY, 0u64);
        for v in values.clone() {
            bmin = bmin.min(v);
            bmax = bmax.max(v);
            n += 1;
        }
        if n == 0 {
            return;
        }
        self.grow(bmin as f64, bmax as f64);
        self.min = self.min.min(bmin);
        self.max = self.max.max(bmax);
        let bins = self.counts.len();
        let inv = 1.0 / self.width;
        for v in values {
            let b = ((v as f64 - self.lo) * inv).floor();
            let b = if b <= 0.0 { 0 } else { (b as usize).min(bins - 1) };
            self.counts[b] += 1;
        }
        self.total += n;
    }

    /// Makes `[lo, lo + bins·width)` cover `[a, b]`, re-binning exactly by whole old bins.
    fn grow(&mut self, a: f64, b: f64) {
        let bins = self.counts.len() as f64;
        if self.total == 0 {
            let span = if b > a { b - a } else { a.abs().max(1.0) * 1e-6 };
            // A hair of headroom so that `b` lands inside the last bin rather than on its upper edge.
            self.width = span / bins * (1.0 + 1e-9);
            self.lo = a;
            return;
        }
        let hi = self.lo + bins * self.width;
        if a >= self.lo && b < hi {
            return;
        }
        let j = if a < self.lo { ((self.lo - a) / self.width).ceil() } else { 0.0 };
        let new_lo = self.lo - j * self.width;
        let need = b.max(hi) - new_lo;
        let mut f = (need / (bins * self.width)).ceil().max(1.0);
        if new_lo + bins * f * self.width <= b {
            f += 1.0; // `b` exactly on the upper edge
        }
        let mut counts = vec![0u64; self.counts.len()];
        let last = counts.len() - 1;
        for (i, &c) in self.counts.iter().enumerate() {
            if c > 0 {
                let nb = ((i as f64 + j) / f).floor() as usize;
                counts[nb.min(last)] += c;
            }
        }
        self.counts = counts;
        self.lo = new_lo;
        self.width *= f;
    }

    /// Bins as `(a, b, count)` with `[a, b]` the part of the bin inside `[min, max]`.
    fn pieces(&self) -> impl Iterator<Item = (f64, f64, f64)> + '_ {
        let (mn, mx) = (self.min as f64, self.max as f64);
        self.counts.iter().enumerate().filter(|(_, c)| **c > 0).map(move |(i, &c)| {
            let a = (self.lo + i as f64 * self.width).max(mn);
            let b = (self.lo + (i + 1) as f64 * self.width).min(mx);
            (a.min(b), b, c as f64)
        })
    }

    fn check_nonempty(&self) -> Result<()> {
        if self.total == 0 {
            return Err(CalibError::NoSamples { what: "histogram".into() });
        }
        Ok(())
    }

    /// The `q`-quantile (`q ∈ [0, 1]`) of the values. Errors: empty, `q` outside `[0, 1]`.
    pub fn quantile(&self, q: f64) -> Result<f32> {
        self.check_nonempty()?;
        if !(0.0..=1.0).contains(&q) {
            return Err(CalibError::option("quantile", format!("{q} is not in [0, 1]")));
        }
        let target = q * self.total as f64;
        let mut cum = 0.0;
        for (a, b, c) in self.pieces() {
            if cum + c >= target {
                let frac = ((target - cum) / c).clamp(0.0, 1.0);
                return Ok(((a + frac * (b - a)) as f32).clamp(self.min, self.max));
            }
            cum += c;
        }
        Ok(self.max)
    }

    /// The `p`-th percentile (`p ∈ [0, 100]`) of the values.
    pub fn percentile(&self, p: f64) -> Result<f32> {
        self.quantile(p / 100.0)
    }

    /// Mass (count) `≤ t` (`strict`: `< t`) under the piecewise-uniform density.
    fn mass_below(&self, t: f64, strict: bool) -> f64 {
        let mut m = 0.0;
        for (a, b, c) in self.pieces() {
            if b < t || (!strict && b == t) {
                m += c;
            } else if a < t || (!strict && a == t) {
                m += if b > a { c * (t - a) / (b - a) } else { c };
            }
        }
        m
    }

    /// The `p`-th percentile (`p ∈ [0, 100]`) of `|x|`: the symmetric clip that keeps `p` % of the values.
    pub fn abs_percentile(&self, p: f64) -> Result<f32> {
        self.check_nonempty()?;
        if !(0.0..=100.0).contains(&p) {
            return Err(CalibError::option("percentile", format!("{p} is not in [0, 100]")));
        }
        let absmax = (self.min.abs().max(self.max.abs())) as f64;
        let target = p / 100.0 * self.total as f64;
        let (mut lo, mut hi) = (0.0, absmax);
        for _ in 0..64 {
            let mid = 0.5 * (lo + hi);
            let inside = self.mass_below(mid, false) - self.mass_below(-mid, true);
            if inside >= target {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(hi as f32)
    }

    /// Expected squared error per element of the uniform quantizer `Q(x) = Δ·clamp(rne(x/Δ), mlo, mhi)`.
    fn quant_mse(&self, step: f64, mlo: f64, mhi: f64) -> f64 {
        let mut total = 0.0;
        for (a, b, c) in self.pieces() {
            let level = |x: f64| (x / step).round().clamp(mlo, mhi);
            if b <= a {
                let d = a - level(a) * step;
                total += c * d * d;
                continue;
            }
            let mut x0 = a;
            let mut m = level(a);
            let mut integral = 0.0;
            while x0 < b {
                let upper = if m >= mhi { f64::INFINITY } else { (m + 0.5) * step };
                let x1 = b.min(upper);
                if x1 > x0 {
                    let l = m * step;
                    integral += ((x1 - l).powi(3) - (x0 - l).powi(3)) / 3.0;
                }
                x0 = x1;
                m += 1.0;
            }
            total += c * integral / (b - a);
        }
        total / self.total as f64
    }

    /// MSE-optimal clip for a `bits`-bit uniform quantizer, symmetric or asymmetric, searching `α` over
    /// `1/steps, …, 1` (see the module doc). Errors: empty, `bits` outside 2..=16, `steps == 0`.
    pub fn mse_clip(&self, bits: u32, symmetric: bool, steps: usize) -> Result<MseClip> {
        self.check_nonempty()?;
        check_bits(bits)?;
        if steps == 0 {
            return Err(CalibError::option("clip search steps", "must be at least 1"));
        }
        let (mn, mx) = (self.min.min(0.0) as f64, self.max.max(0.0) as f64);
        let absmax = mn.abs().max(mx);
        let eval = |alpha: f64| -> Option<(ClipRange, f64)> {
            if symmetric {
                let qmax = ((1u32 << (bits - 1)) - 1) as f64;
                let c = alpha * absmax;
                let step = c / qmax;
                (step > 0.0).then(|| (ClipRange { lo: -c as f32, hi: c as f32 }, self.quant_mse(step, -qmax, qmax)))
            } else {
                let qmax = ((1u32 << bits) - 1) as f64;
                let (lo, hi) = (alpha * mn, alpha * mx);
                let step = (hi - lo) / qmax;
                (step > 0.0).then(|| {
                    let z = (-lo / step).round_ties_even().clamp(0.0, qmax);
                    (ClipRange { lo: lo as f32, hi: hi as f32 }, self.quant_mse(step, -z, qmax - z))
                })
            }
        };
        let Some((full_range, mse_minmax)) = eval(1.0) else {
            // All values are zero: any clip is exact.
            let r = ClipRange { lo: 0.0, hi: 0.0 };
            return Ok(MseClip { range: r, ratio: 1.0, mse: 0.0, mse_minmax: 0.0 });
        };
        let mut best = MseClip { range: full_range, ratio: 1.0, mse: mse_minmax, mse_minmax };
        for i in 1..steps {
            let alpha = i as f64 / steps as f64;
            if let Some((range, mse)) = eval(alpha)
                && mse < best.mse
            {
                best = MseClip { range, ratio: alpha as f32, mse, mse_minmax };
            }
        }
        Ok(best)
    }
}

/// A streaming histogram observer, per tensor or per channel.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramObserver {
    granularity: ObserverGranularity,
    bins: usize,
    k: Option<usize>,
    hists: Vec<Histogram>,
    rows: usize,
}

/// Default number of histogram bins.
pub const DEFAULT_BINS: usize = 2048;
/// Default number of clip ratios tried by the MSE search.
pub const DEFAULT_CLIP_STEPS: usize = 200;

impl HistogramObserver {
    /// An empty observer with `bins` bins per histogram (≥ 2; [`DEFAULT_BINS`] is a good choice).
    pub fn new(bins: usize, granularity: ObserverGranularity) -> Result<Self> {
        Histogram::new(bins)?;
        Ok(Self { granularity, bins, k: None, hists: vec![], rows: 0 })
    }

    /// Adds a batch `x[rows, K]` (same `K` every time; an empty batch is a no-op). Errors: NaN/Inf (naming
    /// the element), a `K` differing from earlier batches.
    pub fn update(&mut self, x: ArrayView2<f32>) -> Result<()> {
        if x.is_empty() {
            return Ok(());
        }
        check_finite_f32("activations", &x)?;
        check_width("activations", &mut self.k, &x)?;
        match self.granularity {
            ObserverGranularity::PerTensor => {
                if self.hists.is_empty() {
                    self.hists.push(Histogram::new(self.bins)?);
                }
                self.hists[0].add(x.iter().copied());
            }
            ObserverGranularity::PerChannel => {
                if self.hists.is_empty() {
                    self.hists = vec![Histogram::new(self.bins)?; x.ncols()];
                }
                for (h, col) in self.hists.iter_mut().zip(x.columns()) {
                    h.add(col.iter().copied());
                }
            }
        }
        self.rows += x.nrows();
        Ok(())
    }

    /// Rows seen.
    pub fn samples(&self) -> usize {
        self.rows
    }

    /// Granularity.
    pub fn granularity(&self) -> ObserverGranularity {
        self.granularity
    }

    /// The histograms: one (per tensor) or one per channel. Errors: no data seen.
    pub fn histograms(&self) -> Result<&[Histogram]> {
        if self.rows == 0 {
            return Err(CalibError::NoSamples { what: "histogram observer".into() });
        }
        Ok(&self.hists)
    }

    /// The histogram of a per-tensor observer. Errors: no data, or a per-channel observer.
    pub fn tensor(&self) -> Result<&Histogram> {
        if self.granularity != ObserverGranularity::PerTensor {
            return Err(CalibError::option("observer", "a per-tensor statistic of a per-channel observer"));
        }
        Ok(&self.histograms()?[0])
    }

    /// Exact ranges, one per histogram.
    pub fn ranges(&self) -> Result<Vec<ClipRange>> {
        Ok(self.histograms()?.iter().map(|h| ClipRange { lo: h.min(), hi: h.max() }).collect())
    }

    /// `p`-th percentile (`p ∈ [0, 100]`) of the values, one per histogram.
    pub fn percentile(&self, p: f64) -> Result<Vec<f32>> {
        self.histograms()?.iter().map(|h| h.percentile(p)).collect()
    }

    /// `p`-th percentile of `|x|`, one per histogram.
    pub fn abs_percentile(&self, p: f64) -> Result<Vec<f32>> {
        self.histograms()?.iter().map(|h| h.abs_percentile(p)).collect()
    }

    /// MSE-optimal clip for `bits` bits, one per histogram ([`Histogram::mse_clip`]).
    pub fn mse_clip(&self, bits: u32, symmetric: bool, steps: usize) -> Result<Vec<MseClip>> {
        self.histograms()?.iter().map(|h| h.mse_clip(bits, symmetric, steps)).collect()
    }
}

/// How the clip of a static activation scale is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ScaleMethod {
    /// The exact absmax (no clipping).
    MinMax,
    /// The `p`-th percentile of `|x|` (`p ∈ [0, 100]`, e.g. 99.99).
    Percentile(f64),
    /// The clip minimising the expected 8-bit quantization MSE of the observed distribution.
    Mse,
}

fn int8_scale(h: &Histogram, method: ScaleMethod) -> Result<f32> {
    let clip = match method {
        ScaleMethod::MinMax => h.min().abs().max(h.max().abs()),
        ScaleMethod::Percentile(p) => h.abs_percentile(p)?,
        ScaleMethod::Mse => h.mse_clip(8, true, DEFAULT_CLIP_STEPS)?.range.hi,
    };
    Ok(nonzero(clip / 127.0))
}

/// The static per-tensor int8 activation scale (W8A8 / W4A8) of a per-tensor observer: `clip / 127`, the
/// scale [`lowbit_core::Int8Activations::quantize_per_tensor`] takes (1 for an all-zero tensor).
/// Errors: no data, a per-channel observer, a percentile outside `[0, 100]`.
pub fn static_scale(observer: &HistogramObserver, method: ScaleMethod) -> Result<f32> {
    int8_scale(observer.tensor()?, method)
}

/// Static int8 scales, one per histogram of `observer` (per-channel observers give one per feature).
pub fn static_scales(observer: &HistogramObserver, method: ScaleMethod) -> Result<Vec<f32>> {
    observer.histograms()?.iter().map(|h| int8_scale(h, method)).collect()
}
