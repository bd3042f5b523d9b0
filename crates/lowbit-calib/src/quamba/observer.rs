//! Quamba / Quamba2 activation observers: the percentile EMA observer (Quamba), group absmax observers
//! (Quamba2's per-state-group B/C scales, per-cluster x scales and per-(group, head cluster, channel cluster,
//! state) SSM-state scales), and the per-channel `mean_t |x|` statistic that sort-and-cluster consumes.

use super::cluster::{ChannelLayout, QuambaClusters};
use crate::error::{CalibError, Result};

/// Default quantile of the percentile observer (Quamba2's released code; Quamba's paper used 0.99999).
pub const DEFAULT_PERCENTILE_ALPHA: f64 = 0.9995;
/// Default EMA momentum of the percentile observer.
pub const DEFAULT_PERCENTILE_MOMENTUM: f64 = 0.01;
/// Largest int8 code magnitude (symmetric codes −127..=127).
pub const INT8_QMAX: f32 = 127.0;
/// Smallest static scale handed out (Quamba clamps every calibrated scale to ≥ 1e-6).
pub const MIN_SCALE: f32 = 1e-6;

/// The static symmetric int8 scale of a clip value: `max(clip / 127, 1e-6)`.
pub fn int8_scale(clip: f32) -> f32 {
    (clip / INT8_QMAX).max(MIN_SCALE)
}

/// Fails on the first NaN or infinity of a flat buffer viewed as `[rows, cols]`, naming `[row, col]`.
fn check_finite(what: &str, data: &[f32], cols: usize) -> Result<()> {
    // Σ v·0 is NaN exactly when some element is NaN or infinite; the slow search runs only then.
    let probe: f32 = data.iter().fold(0.0, |a, &v| a + v * 0.0);
    if probe.is_finite() {
        return Ok(());
    }
    let (i, &v) = data.iter().enumerate().find(|(_, v)| !v.is_finite()).expect("a non-finite element exists");
    let cols = cols.max(1);
    Err(CalibError::NonFinite { what: what.into(), index: format!("[{}, {}]", i / cols, i % cols), value: v as f64 })
}

/// The `alpha`-quantile of `|x|` over `data` with linear interpolation between order statistics (the
/// definition of `torch.quantile` / `numpy.quantile(method="linear")`): with `v` the ascending `|x|` and
/// `pos = alpha·(n − 1)`, the result is `v[⌊pos⌋] + (pos − ⌊pos⌋)·(v[⌊pos⌋ + 1] − v[⌊pos⌋])`.
///
/// Exact, by selection (`select_nth_unstable`, expected O(n)) rather than a full sort.
/// Errors: empty `data`, NaN/Inf (naming the element), `alpha` outside `(0, 1]`.
pub fn abs_quantile(data: &[f32], alpha: f64) -> Result<f32> {
    check_alpha(alpha)?;
    if data.is_empty() {
        return Err(CalibError::NoSamples { what: "abs_quantile (empty data)".into() });
    }
    check_finite("activations", data, data.len())?;
    let mut v: Vec<f32> = data.iter().map(|x| x.abs()).collect();
    let pos = alpha * (v.len() - 1) as f64;
    let lo = (pos.floor() as usize).min(v.len() - 1);
    let frac = pos - lo as f64;
    let (_, &mut a, upper) = v.select_nth_unstable_by(lo, f32::total_cmp);
    if frac == 0.0 || upper.is_empty() {
        return Ok(a);
    }
    // The next order statistic is the smallest element of the upper partition.
    let b = upper.iter().copied().fold(f32::INFINITY, f32::min);
    Ok((a as f64 + frac * (b as f64 - a as f64)) as f32)
}

fn check_alpha(alpha: f64) -> Result<()> {
    if !(alpha > 0.0 && alpha <= 1.0) {
        return Err(CalibError::option("alpha", format!("{alpha} is not in (0, 1]")));
    }
    Ok(())
}

/// Quamba's percentile observer: per calibration sample `cur = quantile(|x|, alpha)`; the first sample
/// initializes the running value `m`, every later one moves it by `m ← m + momentum·(cur − m)` (an EMA).
/// Its [`scale`](Self::scale) is `max(m / 127, 1e-6)`.
#[derive(Debug, Clone, PartialEq)]
pub struct PercentileObserver {
    alpha: f64,
    momentum: f64,
    value: Option<f64>,
    samples: usize,
}

impl PercentileObserver {
    /// An empty observer. Errors: `alpha` or `momentum` outside `(0, 1]`.
    pub fn new(alpha: f64, momentum: f64) -> Result<Self> {
        check_alpha(alpha)?;
        if !(momentum > 0.0 && momentum <= 1.0) {
            return Err(CalibError::option("momentum", format!("{momentum} is not in (0, 1]")));
        }
        Ok(Self { alpha, momentum, value: None, samples: 0 })
    }

    /// Adds one calibration sample (all its elements, any shape, flattened) and returns its quantile `cur`.
    /// Errors (the observer is left unchanged): empty data, NaN/Inf.
    pub fn update(&mut self, data: &[f32]) -> Result<f32> {
        let cur = abs_quantile(data, self.alpha)?;
        let cur64 = cur as f64;
        self.value = Some(match self.value {
            None => cur64,
            Some(m) => m + self.momentum * (cur64 - m),
        });
        self.samples += 1;
        Ok(cur)
    }

    /// The running clip value `m`. Errors: no sample yet.
    pub fn value(&self) -> Result<f32> {
        self.value.map(|v| v as f32).ok_or_else(|| CalibError::NoSamples { what: "PercentileObserver".into() })
    }

    /// The static int8 scale `max(m / 127, 1e-6)`. Errors: no sample yet.
    pub fn scale(&self) -> Result<f32> {
        Ok(int8_scale(self.value()?))
    }

    /// Calibration samples seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// The quantile.
    pub fn alpha(&self) -> f64 {
        self.alpha
    }

    /// The EMA momentum.
    pub fn momentum(&self) -> f64 {
        self.momentum
    }
}

/// Absmax per group of columns: data arrive as `[rows, cols]` (rows = every leading axis flattened, e.g.
/// batch × tokens); column `c` belongs to group `col_group[c]` (or to none), and each group keeps the
/// running `max |x|` over all rows and all its columns. Groups form a row-major tensor of shape `shape`.
///
/// The constructors build the Quamba2 layouts:
/// - [`per_state_group`](Self::per_state_group): B or C, `[rows, G·N]` → `[G]`;
/// - [`x_clusters`](Self::x_clusters): the SSD input x, `[rows, H·P]` → `[G, head_clusters, dim_clusters]`;
/// - [`ssm_state`](Self::ssm_state): the SSM state, `[batch, H·P·N]` → `[G, head_clusters, dim_clusters, N]`;
/// - [`per_tensor`](Self::per_tensor): every other tap, `[rows, cols]` → `[1]`.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupAbsMaxObserver {
    shape: Vec<usize>,
    col_group: Vec<Option<usize>>,
    absmax: Vec<f32>,
    rows: usize,
    updates: usize,
}

impl GroupAbsMaxObserver {
    /// An observer with group tensor `shape` and the column → flat group index map `col_group` (`None`: the
    /// column is ignored). Errors: an empty shape or a zero extent, no columns, an index out of range.
    pub fn new(shape: Vec<usize>, col_group: Vec<Option<usize>>) -> Result<Self> {
        if shape.is_empty() || shape.contains(&0) {
            return Err(CalibError::option("shape", format!("{shape:?} (every extent must be ≥ 1)")));
        }
        if col_group.is_empty() {
            return Err(CalibError::option("col_group", "no columns"));
        }
        let groups: usize = shape.iter().product();
        if let Some((c, g)) = col_group.iter().enumerate().find_map(|(c, g)| g.filter(|&g| g >= groups).map(|g| (c, g)))
        {
            return Err(CalibError::option("col_group", format!("column {c} maps to group {g} ≥ {groups}")));
        }
        Ok(Self { shape, col_group, absmax: vec![0.0; groups], rows: 0, updates: 0 })
    }

    /// One scale per tensor: `[rows, cols]` → `[1]`.
    pub fn per_tensor(cols: usize) -> Result<Self> {
        Self::new(vec![1], vec![Some(0); cols])
    }

    /// Quamba2's B / C scales, one per SSD group (state group): data `[rows, ngroups·dstate]` (group-major,
    /// as Mamba2's `[batch, seqlen, ngroups, dstate]`) → `[ngroups]`. Errors: a zero size.
    pub fn per_state_group(ngroups: usize, dstate: usize) -> Result<Self> {
        if ngroups == 0 || dstate == 0 {
            return Err(CalibError::option("per_state_group", format!("ngroups {ngroups}, dstate {dstate}")));
        }
        Self::new(vec![ngroups], (0..ngroups * dstate).map(|c| Some(c / dstate)).collect())
    }

    /// Quamba2's SSD-input (x) scales: data `[rows, nheads·headdim]` → `[ngroups, head_clusters, dim_clusters]`,
    /// the groups of `clusters`; `layout` tells whether the columns are in the original or the reordered
    /// channel order.
    pub fn x_clusters(clusters: &QuambaClusters, layout: ChannelLayout) -> Result<Self> {
        let map = clusters.channel_groups(layout);
        Self::new(
            vec![clusters.ngroups, clusters.head_clusters, clusters.dim_clusters],
            map.into_iter().map(Some).collect(),
        )
    }

    /// Quamba2's SSM-state scales: data `[batch, nheads·headdim·dstate]` (the state `[B, H, P, N]`) →
    /// `[ngroups, head_clusters, dim_clusters, dstate]`: absmax over the batch, the heads of a head cluster
    /// and the channels of a channel cluster, per state index. Errors: `dstate` 0.
    pub fn ssm_state(clusters: &QuambaClusters, dstate: usize, layout: ChannelLayout) -> Result<Self> {
        if dstate == 0 {
            return Err(CalibError::option("dstate", "0"));
        }
        let map = clusters.channel_groups(layout);
        let cols = map.iter().flat_map(|&g| (0..dstate).map(move |n| Some(g * dstate + n))).collect();
        Self::new(vec![clusters.ngroups, clusters.head_clusters, clusters.dim_clusters, dstate], cols)
    }

    /// Adds `rows` rows of `cols()` values. Errors (nothing is updated): a length that is not
    /// `rows·cols()`, NaN/Inf (naming `[row, col]`). Zero rows is a no-op.
    pub fn update(&mut self, data: &[f32], rows: usize) -> Result<()> {
        let cols = self.col_group.len();
        if data.len() != rows * cols {
            return Err(CalibError::shape("group absmax data", format!("{rows}·{cols} values"), data.len()));
        }
        if rows == 0 {
            return Ok(());
        }
        check_finite("activations", data, cols)?;
        for row in data.chunks_exact(cols) {
            for (&v, g) in row.iter().zip(&self.col_group) {
                if let Some(g) = *g {
                    let a = &mut self.absmax[g];
                    *a = a.max(v.abs());
                }
            }
        }
        self.rows += rows;
        self.updates += 1;
        Ok(())
    }

    /// Running absmax per group (flat, row-major over [`shape`](Self::shape)); a group no column maps to
    /// stays 0. Errors: no rows yet.
    pub fn absmax(&self) -> Result<&[f32]> {
        if self.rows == 0 {
            return Err(CalibError::NoSamples { what: "GroupAbsMaxObserver".into() });
        }
        Ok(&self.absmax)
    }

    /// The static int8 scales `max(absmax / 127, 1e-6)`, flat. Errors: no rows yet.
    pub fn scales(&self) -> Result<Vec<f32>> {
        Ok(self.absmax()?.iter().map(|&a| int8_scale(a)).collect())
    }

    /// Shape of the group tensor.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Columns per row of the data.
    pub fn cols(&self) -> usize {
        self.col_group.len()
    }

    /// The column → flat group map.
    pub fn col_group(&self) -> &[Option<usize>] {
        &self.col_group
    }

    /// Rows seen.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Non-empty updates seen (calibration samples, when each update is one sample).
    pub fn updates(&self) -> usize {
        self.updates
    }
}

/// The sort-and-cluster statistic of Quamba2's reference code: per channel, `max` over calibration samples
/// of `mean_t |x_t[c]|` (the mean over one sample's rows / tokens).
#[derive(Debug, Clone, PartialEq)]
pub struct ChannelMeanAbsMax {
    stat: Vec<f32>,
    samples: usize,
}

impl ChannelMeanAbsMax {
    /// An empty observer over `channels` channels. Errors: 0 channels.
    pub fn new(channels: usize) -> Result<Self> {
        if channels == 0 {
            return Err(CalibError::option("channels", "0"));
        }
        Ok(Self { stat: vec![0.0; channels], samples: 0 })
    }

    /// Adds one calibration sample `[rows, channels]` (rows ≥ 1). Errors (nothing is updated): a wrong
    /// length, zero rows, NaN/Inf.
    pub fn update(&mut self, data: &[f32], rows: usize) -> Result<()> {
        let c = self.stat.len();
        if rows == 0 || data.len() != rows * c {
            return Err(CalibError::shape("channel statistic data", format!("rows ≥ 1, rows·{c} values"), data.len()));
        }
        check_finite("activations", data, c)?;
        let mut sum = vec![0f64; c];
        for row in data.chunks_exact(c) {
            for (s, &v) in sum.iter_mut().zip(row) {
                *s += v.abs() as f64;
            }
        }
        for (st, s) in self.stat.iter_mut().zip(sum) {
            *st = st.max((s / rows as f64) as f32);
        }
        self.samples += 1;
        Ok(())
    }

    /// The statistic per channel. Errors: no sample yet.
    pub fn stat(&self) -> Result<&[f32]> {
        if self.samples == 0 {
            return Err(CalibError::NoSamples { what: "ChannelMeanAbsMax".into() });
        }
        Ok(&self.stat)
    }

    /// Calibration samples seen.
    pub fn samples(&self) -> usize {
        self.samples
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.stat.len()
    }
}
