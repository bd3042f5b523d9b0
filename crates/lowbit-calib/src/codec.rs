//! Per-group quantizers of every weight format, in the form GPTQ needs: group parameters from the group's
//! current values, then the code and exact dequantized value of one weight at a time. Each applies the same
//! rules as lowbit-core's round-to-nearest quantizer of its format (`docs/formats.md`), through the
//! primitives lowbit-core exposes ([`AffineQuantizer`], [`DatatypeGrid`], [`f16_scale`]), so a GPTQ result
//! without error feedback equals lowbit-core's RTN result bit for bit (tested).

use crate::datatype::{DatatypeSearch, ErrorMetric};
use crate::error::{CalibError, Result};
use crate::gptq::ClipSearch;
use half::f16;
use lowbit_core::affine::{AffineQuantizer, f16_scale};
use lowbit_core::bipolar::value as bipolar_value;
use lowbit_core::bitmod::{DatatypeGrid, qmax};
use lowbit_core::bits::pack_rows;
use lowbit_core::{BipolarMatrix, Granularity, IntAffineWeight, LutWeight, MixedWeight, QuantizedWeight};
use ndarray::ArrayView2;

/// One group's parameters for one row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Params {
    /// INT affine: f16 scale and zero point.
    Int { scale: f16, zero: u8 },
    /// LUT: f16 absmax scale.
    Lut { scale: f16 },
    /// BitMoD: datatype selector and u8 group scale.
    Mixed { sel: u8, q: u8 },
    /// bipolar: f32 step.
    Bipolar { delta: f32 },
}

/// INT affine.
#[derive(Debug, Clone)]
pub(crate) struct IntCodec {
    q: AffineQuantizer,
    granularity: Granularity,
}

/// NF4 or any table.
#[derive(Debug, Clone)]
pub(crate) struct LutCodec {
    bits: u32,
    granularity: Granularity,
    table: Vec<f32>,
    mids: Vec<f64>,
}

/// BitMoD mixed datatypes; the per-row channel scales are fixed before quantizing ([`Self::fit_channel_scales`]).
#[derive(Debug, Clone)]
pub(crate) struct MixedCodec {
    bits: u32,
    group: usize,
    search: DatatypeSearch,
    grids: Vec<DatatypeGrid>,
    qmaxes: Vec<f32>,
    channel_scales: Vec<f16>,
}

/// bipolar-INT, native symmetric.
#[derive(Debug, Clone)]
pub(crate) struct BipolarCodec {
    bits: u32,
    granularity: Granularity,
}

/// A weight format's per-group quantizer.
#[derive(Debug, Clone)]
pub(crate) enum Codec {
    Int(IntCodec),
    Lut(LutCodec),
    Mixed(MixedCodec),
    Bipolar(BipolarCodec),
}

fn absmax(vals: &[f32]) -> f32 {
    vals.iter().fold(0f32, |m, v| m.max(v.abs()))
}

impl IntCodec {
    pub(crate) fn new(bits: u32, symmetric: bool, granularity: Granularity) -> Result<Self> {
        Ok(Self { q: AffineQuantizer::new(bits, symmetric)?, granularity })
    }
}

impl LutCodec {
    pub(crate) fn new(table: &[f32], granularity: Granularity) -> Result<Self> {
        let len = table.len();
        if len < 2 || !len.is_power_of_two() || len > 256 {
            return Err(CalibError::option("LUT", format!("{len} entries; need 2^b entries with b in 1..=8")));
        }
        if table.iter().any(|v| !v.is_finite()) || table.windows(2).any(|p| p[0] >= p[1]) {
            return Err(CalibError::option("LUT", "entries must be finite and strictly ascending"));
        }
        // Midpoints in f64, as lowbit-core's LUT quantizer (exact, so ties resolve identically).
        let mids = table.windows(2).map(|p| (p[0] as f64 + p[1] as f64) * 0.5).collect();
        Ok(Self { bits: len.trailing_zeros(), granularity, table: table.to_vec(), mids })
    }
}

impl BipolarCodec {
    pub(crate) fn new(bits: u32, granularity: Granularity) -> Result<Self> {
        if !(1..=8).contains(&bits) {
            return Err(CalibError::option("bipolar bits", format!("{bits} is not in 1..=8")));
        }
        Ok(Self { bits, granularity })
    }
}

impl MixedCodec {
    pub(crate) fn new(bits: u32, group: usize, search: DatatypeSearch) -> Result<Self> {
        search.validate()?;
        let grids = (0..4).map(|s| DatatypeGrid::new(bits, s)).collect::<lowbit_core::Result<Vec<_>>>()?;
        Granularity::Group(group).check(group, "BitMoD mixed")?;
        Ok(Self { bits, group, search, grids, qmaxes: (0..4).map(|s| qmax(bits, s)).collect(), channel_scales: vec![] })
    }

    /// Weighted squared error of `vals` on datatype `sel` with scale `s` (lowbit-core's arithmetic).
    fn error(&self, vals: &[f32], weights: Option<&[f64]>, sel: u8, s: f32) -> f64 {
        let grid = &self.grids[sel as usize];
        let mut err = 0f64;
        for (i, &v) in vals.iter().enumerate() {
            let (_, val) = grid.quantize(if s > 0.0 { v / s } else { 0.0 });
            let d = (val * s - v) as f64;
            err += d * d * weights.map_or(1.0, |w| w[i]);
        }
        err
    }

    fn metric_weights<'a>(&self, weights: Option<&'a [f64]>) -> Option<&'a [f64]> {
        match self.search.metric {
            ErrorMetric::Mse => None,
            ErrorMetric::HessianDiag => weights,
        }
    }

    /// Pass 1 of the BitMoD quantizer: for every row of `wt[K, N]` (original column order), each group's best
    /// float step `Δ_g` among the candidates, then `Δ_ch = f16(max_g Δ_g / 255)`. `weights[K]` are the
    /// per-column error weights (Hessian diagonal) when the metric uses them.
    pub(crate) fn fit_channel_scales(&mut self, wt: ArrayView2<f64>, weights: Option<&[f64]>) -> Result<()> {
        let (k, n) = wt.dim();
        let weights = self.metric_weights(weights);
        let mut row = vec![0f32; k];
        self.channel_scales = Vec::with_capacity(n);
        for r in 0..n {
            for (dst, &v) in row.iter_mut().zip(wt.column(r)) {
                *dst = v as f32;
            }
            let mut dmax = 0f32;
            for (gi, vals) in row.chunks_exact(self.group).enumerate() {
                let w = weights.map(|w| &w[gi * self.group..(gi + 1) * self.group]);
                let am = absmax(vals);
                let mut best = (f64::INFINITY, 0f32);
                for &sel in &self.search.candidates {
                    let d = am / self.qmaxes[sel as usize];
                    let e = self.error(vals, w, sel, d);
                    if e < best.0 {
                        best = (e, d);
                    }
                }
                dmax = dmax.max(best.1);
            }
            let ch = if dmax == 0.0 { f16::ONE } else { f16_scale(dmax / 255.0, "BitMoD channel scale")? };
            self.channel_scales.push(ch);
        }
        Ok(())
    }
}

impl Codec {
    /// Group length for rows of `k` columns.
    pub(crate) fn group_len(&self, k: usize) -> usize {
        match self {
            Codec::Int(c) => c.granularity.group_len(k),
            Codec::Lut(c) => c.granularity.group_len(k),
            Codec::Mixed(c) => c.group,
            Codec::Bipolar(c) => c.granularity.group_len(k),
        }
    }

    /// Whether the format stores an act-order `g_idx` (groups of arbitrary columns).
    pub(crate) fn supports_g_idx(&self) -> bool {
        matches!(self, Codec::Int(_))
    }

    /// Checks `k` against the group size.
    pub(crate) fn check_k(&self, k: usize) -> Result<()> {
        let g = match self {
            Codec::Int(c) => c.granularity,
            Codec::Lut(c) => c.granularity,
            Codec::Mixed(c) => Granularity::Group(c.group),
            Codec::Bipolar(c) => c.granularity,
        };
        g.check(k, "GPTQ")?;
        Ok(())
    }

    /// Parameters of a group of row `row` whose current values are `vals`; `weights` are the per-column error
    /// weights of the group's columns (used by the BitMoD output-aware search only).
    pub(crate) fn params(&self, row: usize, vals: &[f32], weights: Option<&[f64]>) -> Result<Params> {
        Ok(match self {
            Codec::Int(c) => {
                let (scale, zero) = c.q.group_params(vals)?;
                Params::Int { scale, zero }
            }
            Codec::Lut(_) => {
                let am = absmax(vals);
                Params::Lut { scale: if am == 0.0 { f16::ONE } else { f16_scale(am, "LUT scale")? } }
            }
            Codec::Mixed(c) => {
                let weights = c.metric_weights(weights);
                let chf = c.channel_scales[row].to_f32();
                let am = absmax(vals);
                let mut best = (f64::INFINITY, 0u8, 0u8);
                for &sel in &c.search.candidates {
                    let q = (am / c.qmaxes[sel as usize] / chf).round_ties_even().clamp(0.0, 255.0) as u8;
                    let e = c.error(vals, weights, sel, q as f32 * chf);
                    if e < best.0 {
                        best = (e, sel, q);
                    }
                }
                Params::Mixed { sel: best.1, q: best.2 }
            }
            Codec::Bipolar(c) => Params::Bipolar { delta: absmax(vals) / ((1u32 << c.bits) - 1) as f32 },
        })
    }

    /// Like [`Self::params`], then, for the scale-based formats (INT, LUT, bipolar; BitMoD searches its own
    /// scales), the shrink `p = 1 − s/grid` of the group's range (`s = 0 ..= max_shrink·grid`) whose
    /// parameters give the least (weighted) squared error of the group's values; `p = 1` wins ties.
    pub(crate) fn params_clipped(
        &self,
        row: usize,
        vals: &[f32],
        weights: Option<&[f64]>,
        clip: Option<&ClipSearch>,
    ) -> Result<Params> {
        let base = self.params(row, vals, weights)?;
        let Some(clip) = clip else { return Ok(base) };
        if matches!(self, Codec::Mixed(_)) {
            return Ok(base);
        }
        let err = |p: &Params| -> f64 {
            vals.iter()
                .enumerate()
                .map(|(i, &v)| {
                    let d = (self.quantize(row, v, p).1 - v) as f64;
                    d * d * weights.map_or(1.0, |w| w[i])
                })
                .sum()
        };
        let mut best = (err(&base), base);
        let mut scaled = vec![0f32; vals.len()];
        let steps = (clip.max_shrink as f64 * clip.grid as f64).floor() as usize;
        for s in 1..=steps.min(clip.grid.saturating_sub(1)) {
            let p = 1.0 - s as f32 / clip.grid as f32;
            for (d, &v) in scaled.iter_mut().zip(vals) {
                *d = v * p;
            }
            let cand = self.params(row, &scaled, weights)?;
            let e = err(&cand);
            if e < best.0 {
                best = (e, cand);
            }
        }
        Ok(best.1)
    }

    /// Code of `v` and its exact dequantized value (what lowbit-core's `dequantize` returns for it).
    #[inline]
    pub(crate) fn quantize(&self, row: usize, v: f32, p: &Params) -> (u8, f32) {
        match (self, *p) {
            (Codec::Int(c), Params::Int { scale, zero }) => {
                let code = c.q.code(v, scale, zero);
                (code, c.q.dequantize(code, scale, zero))
            }
            (Codec::Lut(c), Params::Lut { scale }) => {
                let sf = scale.to_f32();
                let x = (v / sf) as f64;
                let code = c.mids.partition_point(|&m| m < x);
                (code as u8, c.table[code] * sf)
            }
            (Codec::Mixed(c), Params::Mixed { sel, q }) => {
                let s = q as f32 * c.channel_scales[row].to_f32();
                let (code, val) = c.grids[sel as usize].quantize(if s > 0.0 { v / s } else { 0.0 });
                (code, val * s)
            }
            (Codec::Bipolar(c), Params::Bipolar { delta }) => {
                let max = ((1u32 << c.bits) - 1) as f32;
                let half = (1u32 << (c.bits - 1)) as f32;
                let t = if delta > 0.0 { v / delta } else { 0.0 };
                let code = ((t / 2.0).floor() + half).clamp(0.0, max) as u8;
                (code, (bipolar_value(code, c.bits) as f32).mul_add(delta, 0.0))
            }
            // Params always come from the same codec's `params`.
            _ => (0, 0.0),
        }
    }

    /// Builds and validates the weight from codes `[n, k]` (original column order), per-group parameters
    /// `[n, n_groups]` and the optional act-order `g_idx`.
    pub(crate) fn assemble(
        &self,
        n: usize,
        k: usize,
        codes: &[u8],
        params: &[Params],
        g_idx: Option<Vec<u32>>,
    ) -> Result<QuantizedWeight> {
        let bad = || CalibError::option("group parameters", "internal mismatch between format and parameters");
        let w = match self {
            Codec::Int(c) => {
                let mut scales = Vec::with_capacity(params.len());
                let mut zeros = Vec::with_capacity(params.len());
                for p in params {
                    let Params::Int { scale, zero } = *p else { return Err(bad()) };
                    scales.push(scale);
                    zeros.push(zero);
                }
                let (bits, sym) = (c.q.bits(), c.q.symmetric());
                QuantizedWeight::Int(IntAffineWeight::from_codes(
                    n,
                    k,
                    bits,
                    sym,
                    c.granularity,
                    codes,
                    scales,
                    zeros,
                    g_idx,
                )?)
            }
            Codec::Lut(c) => {
                let scales = params
                    .iter()
                    .map(|p| if let Params::Lut { scale } = *p { Ok(scale) } else { Err(bad()) })
                    .collect::<Result<Vec<_>>>()?;
                let w = LutWeight {
                    n,
                    k,
                    bits: c.bits,
                    granularity: c.granularity,
                    lut: c.table.clone(),
                    codes: pack_rows(codes, k, c.bits),
                    scales,
                };
                w.validate()?;
                QuantizedWeight::Lut(w)
            }
            Codec::Mixed(c) => {
                let ng = k / c.group;
                let spr = ng.div_ceil(4);
                let mut group_scales = Vec::with_capacity(params.len());
                let mut selectors = vec![0u8; n * spr];
                for (i, p) in params.iter().enumerate() {
                    let Params::Mixed { sel, q } = *p else { return Err(bad()) };
                    let (r, g) = (i / ng, i % ng);
                    group_scales.push(q);
                    selectors[r * spr + g / 4] |= sel << (2 * (g % 4));
                }
                let w = MixedWeight {
                    n,
                    k,
                    bits: c.bits,
                    group: c.group,
                    codes: pack_rows(codes, k, c.bits),
                    group_scales,
                    selectors,
                    channel_scales: c.channel_scales.clone(),
                };
                w.validate()?;
                QuantizedWeight::Mixed(w)
            }
            Codec::Bipolar(c) => {
                let scales = params
                    .iter()
                    .map(|p| if let Params::Bipolar { delta } = *p { Ok(delta) } else { Err(bad()) })
                    .collect::<Result<Vec<_>>>()?;
                QuantizedWeight::Bipolar(BipolarMatrix::from_codes(n, k, c.bits, c.granularity, codes, scales, None)?)
            }
        };
        Ok(w)
    }
}
