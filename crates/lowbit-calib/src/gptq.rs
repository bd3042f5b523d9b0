//! GPTQ (Frantar et al., 2022, "GPTQ: Accurate Post-Training Quantization for Generative Pre-trained
//! Transformers", arXiv 2210.17323) for every lowbit weight format.
//!
//! For `W[N, K]` and the layer Hessian `H = (2/n)·XᵀX`, the columns are quantized one at a time; each
//! column's rounding error, divided by the pivot of the upper Cholesky factor `U` of `H⁻¹`, is spread over
//! the not-yet-quantized columns (`W[:, j] −= err · U[i, j]`), which minimises the growth of
//! `‖X Wᵀ − X Ŵᵀ‖²`. Steps, as the reference implementation, with these choices:
//! 1. **Dead columns** (`H_kk = 0`, an input that never fires): `H_kk ← 1`, `W[:, k] ← 0`.
//! 2. **Act-order** (optional): columns processed by decreasing `H_kk`.
//! 3. **Damping**: `H += λ·mean(diag H)·I` with `λ = damp_percent`; when the Cholesky factorisation fails, `λ`
//!    doubles, up to `max_damp_percent` (then [`CalibError::NotPositiveDefinite`]).
//! 4. `U = chol(H⁻¹)` upper ([`crate::linalg::upper_cholesky_of_inverse`], f64).
//! 5. **Blocks** of `block_size` columns with lazy updates: inside a block the error goes column by column;
//!    the rest of the matrix gets one matrix product per block (`W[:, i2:] −= Errᵀ·U[i1:i2, i2:]`).
//! 6. **Groups**: a group's parameters (scale/zero, LUT scale, BitMoD datatype and scale, bipolar step) are
//!    computed when its first column is reached, from the **current** (error-updated) weights of all its
//!    columns. Blocks are cut so that a group starting inside a block ends inside it, so those values are
//!    exact. With **static groups** all parameters come from the original weights before any update.
//! 7. Act-order groups: INT affine stores `g_idx` (group `i / G` is made of the `i`-th processed columns,
//!    lowbit-core's act-order representation). The other formats have no `g_idx`, so act-order there uses
//!    static groups (consecutive original columns, parameters from the original weights), as GPTQ's
//!    `static_groups`; [`GptqStats::static_groups`] reports it.
//! 8. BitMoD: the per-row `Δ_ch` is fixed from the original weights first (lowbit-core's pass 1), then each
//!    group's datatype and `u8` scale are searched at the group start ([`crate::datatype`] options).
//!
//! The loss reported is GPTQ's: `Σ (w − q)² / U_ii² / 2` over all weights.

use crate::codec::{BipolarCodec, Codec, IntCodec, LutCodec, MixedCodec, Params};
use crate::datatype::DatatypeSearch;
use crate::error::{CalibError, Result, check_finite_f32};
use crate::hessian::Hessian;
use crate::linalg::upper_cholesky_of_inverse;
use lowbit_core::{Granularity, QuantizedWeight, SchemeKind, WeightScheme};
use ndarray::{Array2, ArrayView2, ArrayViewMut2, s};

/// GPTQ options. [`GptqOptions::default`]: damping 1 %, blocks of 128, natural order, dynamic groups, BitMoD
/// search with squared error over all four datatypes.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqOptions {
    /// Relative damping `λ` added to the diagonal (`λ·mean(diag H)`), `0 < λ`; default 0.01.
    pub damp_percent: f64,
    /// Largest relative damping tried when the Cholesky factorisation fails (`λ` doubles each time); default 1.0.
    pub max_damp_percent: f64,
    /// Columns per lazy-update block, ≥ 1; default 128.
    pub block_size: usize,
    /// Process columns by decreasing Hessian diagonal (GPTQ `desc_act`); default false.
    pub act_order: bool,
    /// Compute every group's parameters from the original weights up front (GPTQ `static_groups`); default false.
    pub static_groups: bool,
    /// BitMoD per-group datatype search (mixed schemes only).
    pub datatype_search: DatatypeSearch,
    /// Per-group range shrink search for the scale-based formats (INT, NF4/LUT, bipolar), as GPTQ's `mse`
    /// option: `None` (default) keeps the full group range.
    pub clip_search: Option<ClipSearch>,
}

/// Search of a group's range shrink: candidates `p = 1 − s/grid` for `s = 0 ..= max_shrink·grid`, each
/// giving the group's parameters from its values times `p`; the one with the least squared error of the
/// group's weights (weighted by the Hessian diagonal under GPTQ) wins.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ClipSearch {
    /// Steps per unit of shrink (GPTQ: 100), ≥ 1.
    pub grid: usize,
    /// Largest shrink tried, in `[0, 1)` (GPTQ: 0.8).
    pub max_shrink: f32,
}

impl Default for ClipSearch {
    fn default() -> Self {
        Self { grid: 100, max_shrink: 0.8 }
    }
}

impl Default for GptqOptions {
    fn default() -> Self {
        Self {
            damp_percent: 0.01,
            max_damp_percent: 1.0,
            block_size: 128,
            act_order: false,
            static_groups: false,
            datatype_search: DatatypeSearch::default(),
            clip_search: None,
        }
    }
}

impl GptqOptions {
    /// Checks ranges.
    pub fn validate(&self) -> Result<()> {
        if !(self.damp_percent.is_finite() && self.damp_percent > 0.0) {
            return Err(CalibError::option(
                "damp_percent",
                format!("{} is not finite and positive", self.damp_percent),
            ));
        }
        if !(self.max_damp_percent.is_finite() && self.max_damp_percent >= self.damp_percent) {
            return Err(CalibError::option(
                "max_damp_percent",
                format!("{} must be finite and >= damp_percent = {}", self.max_damp_percent, self.damp_percent),
            ));
        }
        if self.block_size == 0 {
            return Err(CalibError::option("block_size", "must be at least 1"));
        }
        if let Some(c) = self.clip_search
            && (c.grid == 0 || !(0.0..1.0).contains(&c.max_shrink))
        {
            return Err(CalibError::option("clip_search", format!("{c:?}: need grid >= 1 and max_shrink in [0, 1)")));
        }
        self.datatype_search.validate()
    }
}

/// What GPTQ did.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqStats {
    /// GPTQ's loss `Σ (w − q)² / U_ii² / 2` (the increase of the Hessian-weighted output error, up to the
    /// damping).
    pub loss: f64,
    /// The relative damping that succeeded.
    pub damp_percent: f64,
    /// The absolute damping added to the diagonal.
    pub damp: f64,
    /// How many Cholesky factorisations were tried.
    pub attempts: usize,
    /// Columns with a zero Hessian diagonal (quantized as zeros).
    pub dead_columns: usize,
    /// Whether columns were processed in act-order.
    pub act_order: bool,
    /// Whether group parameters came from the original weights (asked for, or implied by act-order on a
    /// format without `g_idx`).
    pub static_groups: bool,
}

/// A GPTQ-quantized weight and its statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct GptqResult {
    /// The quantized weight, an ordinary lowbit-core [`QuantizedWeight`] (validated).
    pub weight: QuantizedWeight,
    /// Statistics.
    pub stats: GptqStats,
}

/// GPTQ quantization of `w[N, K]` (rows = output features) with the layer Hessian `h` (`K × K`) into
/// `scheme`: INT affine 2..=8 bits (symmetric or not, any group size or per-channel, act-order through
/// `g_idx`), BitMoD mixed 3/4-bit, NF4 and bipolar-INT. A custom LUT goes through [`gptq_quantize_lut`].
///
/// Errors: non-finite or empty `w`, `K` differing from the Hessian's, `K` not divisible by the group, an
/// unsupported scheme, bad options, or a Hessian that stays indefinite at `max_damp_percent`.
pub fn gptq_quantize(w: ArrayView2<f32>, h: &Hessian, scheme: &WeightScheme, opts: &GptqOptions) -> Result<GptqResult> {
    scheme.validate()?;
    let codec = codec_for(scheme, w.ncols(), &opts.datatype_search)?;
    run_gptq(w, h, codec, opts)
}

/// GPTQ into a custom lookup table (`2^b` strictly ascending finite entries, values `lut[code] · absmax`).
pub fn gptq_quantize_lut(
    w: ArrayView2<f32>,
    h: &Hessian,
    table: &[f32],
    granularity: Granularity,
    opts: &GptqOptions,
) -> Result<GptqResult> {
    run_gptq(w, h, Codec::Lut(LutCodec::new(table, granularity)?), opts)
}

/// Round-to-nearest quantization with the calibrator's per-format quantizers (no Hessian, no error feedback):
/// the baseline GPTQ is compared with, and equal to lowbit-core's [`lowbit_core::quantize`] for every scheme
/// with default options. `datatype_search` applies to BitMoD schemes; its `HessianDiag` metric needs `h`.
pub fn rtn_quantize(
    w: ArrayView2<f32>,
    scheme: &WeightScheme,
    datatype_search: &DatatypeSearch,
    h: Option<&Hessian>,
) -> Result<QuantizedWeight> {
    scheme.validate()?;
    check_weight(&w)?;
    if let Some(h) = h
        && h.k() != w.ncols()
    {
        return Err(CalibError::shape("Hessian", format!("[{0}, {0}]", w.ncols()), format!("[{0}, {0}]", h.k())));
    }
    let mut codec = codec_for(scheme, w.ncols(), datatype_search)?;
    let diag = h.map(Hessian::diag);
    let wt = w.t().mapv(f64::from);
    if let Codec::Mixed(m) = &mut codec {
        require_weights(datatype_search, diag.as_deref())?;
        m.fit_channel_scales(wt.view(), diag.as_deref())?;
    }
    round_to_nearest(&codec, wt.view(), diag.as_deref())
}

fn require_weights(search: &DatatypeSearch, diag: Option<&[f64]>) -> Result<()> {
    if search.metric == crate::datatype::ErrorMetric::HessianDiag && diag.is_none() {
        return Err(CalibError::option("datatype search", "the HessianDiag metric needs a Hessian"));
    }
    Ok(())
}

fn check_weight(w: &ArrayView2<f32>) -> Result<()> {
    let (n, k) = w.dim();
    if n == 0 || k == 0 {
        return Err(CalibError::shape("weight", "a non-empty [N, K] matrix", format!("[{n}, {k}]")));
    }
    check_finite_f32("weight", w)
}

fn codec_for(scheme: &WeightScheme, k: usize, search: &DatatypeSearch) -> Result<Codec> {
    let codec = match scheme.kind {
        SchemeKind::Int { symmetric } => Codec::Int(IntCodec::new(scheme.bits, symmetric, scheme.granularity)?),
        SchemeKind::Nf4 => Codec::Lut(LutCodec::new(&lowbit_core::lut::NF4, scheme.granularity)?),
        SchemeKind::Mixed => {
            let Granularity::Group(g) = scheme.granularity else {
                return Err(CalibError::UnsupportedScheme {
                    scheme: scheme.to_string(),
                    reason: "mixed needs a group size".into(),
                });
            };
            Codec::Mixed(MixedCodec::new(scheme.bits, g, search.clone())?)
        }
        SchemeKind::Bipolar => Codec::Bipolar(BipolarCodec::new(scheme.bits, scheme.granularity)?),
        SchemeKind::Lut => {
            return Err(CalibError::UnsupportedScheme {
                scheme: scheme.to_string(),
                reason: "a custom LUT needs its table: use gptq_quantize_lut".into(),
            });
        }
    };
    codec.check_k(k)?;
    Ok(codec)
}

/// RTN through the same engine (no `U`: no error feedback).
pub(crate) fn round_to_nearest(codec: &Codec, wt: ArrayView2<f64>, weights: Option<&[f64]>) -> Result<QuantizedWeight> {
    let (k, n) = wt.dim();
    let perm: Vec<usize> = (0..k).collect();
    let mut wt = wt.to_owned();
    let out =
        Engine { codec, weights, perm: &perm, block: k, static_groups: false, clip: None }.run(wt.view_mut(), None)?;
    codec.assemble(n, k, &out.codes, &out.params, None)
}

fn run_gptq(w: ArrayView2<f32>, h: &Hessian, mut codec: Codec, opts: &GptqOptions) -> Result<GptqResult> {
    opts.validate()?;
    check_weight(&w)?;
    let (n, k) = w.dim();
    if h.k() != k {
        return Err(CalibError::shape(
            "Hessian",
            format!("[{k}, {k}] (K of the weight)"),
            format!("[{0}, {0}]", h.k()),
        ));
    }
    codec.check_k(k)?;
    let mut hm = h.matrix().to_owned();
    let mut wt = w.t().mapv(f64::from); // [K, N]: column k of W is a contiguous row
    let mut dead_columns = 0;
    for i in 0..k {
        if hm[[i, i]] == 0.0 {
            hm[[i, i]] = 1.0;
            wt.row_mut(i).fill(0.0);
            dead_columns += 1;
        }
    }
    let diag: Vec<f64> = hm.diag().to_vec();
    if let Codec::Mixed(m) = &mut codec {
        m.fit_channel_scales(wt.view(), Some(&diag))?;
    }
    let perm: Vec<usize> = if opts.act_order {
        let mut p: Vec<usize> = (0..k).collect();
        p.sort_by(|&a, &b| diag[b].total_cmp(&diag[a]).then(a.cmp(&b)));
        p
    } else {
        (0..k).collect()
    };
    let static_groups = opts.static_groups || (opts.act_order && !codec.supports_g_idx());
    // Static parameters are taken from `wt` in original order before the permutation below.
    let static_params = if static_groups {
        let identity: Vec<usize> = (0..k).collect();
        Some(
            Engine {
                codec: &codec,
                weights: Some(&diag),
                perm: &identity,
                block: k,
                static_groups: false,
                clip: opts.clip_search,
            }
            .group_params_all(wt.view())?,
        )
    } else {
        None
    };
    let mut wp = Array2::from_shape_fn((k, n), |(i, r)| wt[[perm[i], r]]);
    let hp = Array2::from_shape_fn((k, k), |(i, j)| hm[[perm[i], perm[j]]]);
    let mean_diag = diag.iter().sum::<f64>() / k as f64;
    let mut lambda = opts.damp_percent;
    let mut attempts = 0;
    let u = loop {
        attempts += 1;
        let mut hd = hp.clone();
        hd.diag_mut().mapv_inplace(|v| v + lambda * mean_diag);
        if let Some(u) = upper_cholesky_of_inverse(hd.view())? {
            break u;
        }
        if lambda >= opts.max_damp_percent {
            return Err(CalibError::NotPositiveDefinite { max_damp_percent: opts.max_damp_percent, attempts });
        }
        lambda = (lambda * 2.0).min(opts.max_damp_percent);
    };
    let weights_p: Vec<f64> = perm.iter().map(|&p| diag[p]).collect();
    let engine = Engine {
        codec: &codec,
        weights: Some(&weights_p),
        perm: &perm,
        block: opts.block_size,
        static_groups,
        clip: opts.clip_search,
    };
    let out = match static_params {
        Some(sp) => engine.run_with(wp.view_mut(), Some(u.view()), sp)?,
        None => engine.run(wp.view_mut(), Some(u.view()))?,
    };
    let g = codec.group_len(k);
    let g_idx = (opts.act_order && !static_groups && g < k).then(|| {
        let mut gi = vec![0u32; k];
        for (i, &p) in perm.iter().enumerate() {
            gi[p] = (i / g) as u32;
        }
        gi
    });
    let weight = codec.assemble(n, k, &out.codes, &out.params, g_idx)?;
    Ok(GptqResult {
        weight,
        stats: GptqStats {
            loss: out.loss,
            damp_percent: lambda,
            damp: lambda * mean_diag,
            attempts,
            dead_columns,
            act_order: opts.act_order,
            static_groups,
        },
    })
}

/// The column loop shared by GPTQ and RTN.
struct Engine<'a> {
    codec: &'a Codec,
    /// Per processed column error weights (Hessian diagonal, processing order), for the BitMoD search.
    weights: Option<&'a [f64]>,
    /// Processing position → original column.
    perm: &'a [usize],
    block: usize,
    /// Parameters indexed by original group (`perm[i] / G`) rather than processing group (`i / G`).
    static_groups: bool,
    /// Range shrink search of group parameters.
    clip: Option<ClipSearch>,
}

struct EngineOut {
    codes: Vec<u8>,
    params: Vec<Params>,
    loss: f64,
}

impl Engine<'_> {
    /// Parameters of every group `[n, n_groups]` from `wt` (rows in processing order, groups consecutive).
    fn group_params_all(&self, wt: ArrayView2<f64>) -> Result<Vec<Params>> {
        let (k, n) = wt.dim();
        let g = self.codec.group_len(k);
        let ng = k / g;
        let mut params = vec![Params::Bipolar { delta: 0.0 }; n * ng];
        for gi in 0..ng {
            self.fill_group(wt, gi * g, &mut params)?;
        }
        Ok(params)
    }

    /// Parameters of the group starting at processing position `start`, for every row.
    fn fill_group(&self, wt: ArrayView2<f64>, start: usize, params: &mut [Params]) -> Result<()> {
        let (k, n) = wt.dim();
        let g = self.codec.group_len(k);
        let ng = k / g;
        let w = self.weights.map(|w| &w[start..start + g]);
        let mut vals = vec![0f32; g];
        for r in 0..n {
            for (t, v) in vals.iter_mut().enumerate() {
                *v = wt[[start + t, r]] as f32;
            }
            params[r * ng + start / g] = self.codec.params_clipped(r, &vals, w, self.clip.as_ref())?;
        }
        Ok(())
    }

    fn run(&self, wt: ArrayViewMut2<f64>, u: Option<ArrayView2<f64>>) -> Result<EngineOut> {
        let (k, n) = wt.dim();
        let ng = k / self.codec.group_len(k);
        self.run_with(wt, u, vec![Params::Bipolar { delta: 0.0 }; n * ng])
    }

    fn run_with(
        &self,
        mut wt: ArrayViewMut2<f64>,
        u: Option<ArrayView2<f64>>,
        mut params: Vec<Params>,
    ) -> Result<EngineOut> {
        let (k, n) = wt.dim();
        let g = self.codec.group_len(k);
        let ng = k / g;
        let mut codes = vec![0u8; n * k];
        let mut loss = 0f64;
        let mut err = Array2::<f64>::zeros((self.block.min(k), n));
        let mut i1 = 0;
        while i1 < k {
            let mut i2 = (i1 + self.block).min(k);
            if !self.static_groups {
                // A group starting inside the block must end inside it (its values are read at its start).
                let last_start = (i2 - 1) / g * g;
                if last_start > i1 && last_start + g > i2 {
                    i2 = last_start;
                }
            }
            for i in i1..i2 {
                if !self.static_groups && i % g == 0 {
                    self.fill_group(wt.view(), i, &mut params)?;
                }
                let gi = if self.static_groups { self.perm[i] / g } else { i / g };
                let col = self.perm[i];
                let d = u.map_or(1.0, |u| u[[i, i]]);
                let mut e = err.row_mut(i - i1);
                for r in 0..n {
                    let v = wt[[i, r]];
                    let (code, q) = self.codec.quantize(r, v as f32, &params[r * ng + gi]);
                    codes[r * k + col] = code;
                    let x = (v - q as f64) / d;
                    e[r] = x;
                    loss += x * x * 0.5;
                }
                if let Some(u) = u {
                    let e = err.row(i - i1);
                    for j in i + 1..i2 {
                        let c = u[[i, j]];
                        if c != 0.0 {
                            wt.row_mut(j).scaled_add(-c, &e);
                        }
                    }
                }
            }
            if let Some(u) = u
                && i2 < k
            {
                let ub = u.slice(s![i1..i2, i2..]);
                let eb = err.slice(s![..i2 - i1, ..]);
                let mut rest = wt.slice_mut(s![i2.., ..]);
                ndarray::linalg::general_mat_mul(-1.0, &ub.t(), &eb, 1.0, &mut rest);
            }
            i1 = i2;
        }
        Ok(EngineOut { codes, params, loss })
    }
}
