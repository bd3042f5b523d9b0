//! The Quamba / Quamba2 calibrator (`lowbit_calib::quamba`): percentile and group absmax observers, the
//! sort-and-cluster statistic and reordering, and offline Hadamard fusion. Arrays cross as little-endian
//! float32 `bytes` plus explicit sizes; clusters cross as the plain dict [`quamba_sort_and_cluster`] returns.

use lowbit_calib::CalibError;
use lowbit_calib::quamba::{
    self, ChannelLayout, ChannelMeanAbsMax, GroupAbsMaxObserver, HadamardSide, PercentileObserver, QuambaClusters,
    Segmentation,
};
use pyo3::exceptions::{PyNotImplementedError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict};

use crate::errors::{core_err, value_err};
use crate::weight::f32_from_bytes;

/// Calibrator errors → Python: unsupported schemes → `NotImplementedError`, everything else (NaN/Inf, no
/// samples, shapes, bad options) → `ValueError`.
fn calib_err(e: CalibError) -> PyErr {
    let msg = e.to_string();
    match e {
        CalibError::Core(c) => core_err(c),
        CalibError::UnsupportedScheme { .. } => PyNotImplementedError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

fn layout(s: &str) -> PyResult<ChannelLayout> {
    s.parse().map_err(calib_err)
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The `alpha`-quantile of `|x|` over `n` float32 values (linear interpolation, as `torch.quantile`).
#[pyfunction]
fn abs_quantile(py: Python<'_>, data: &[u8], n: usize, alpha: f64) -> PyResult<f32> {
    let values = f32_from_bytes(data, n, "data")?;
    py.detach(|| quamba::abs_quantile(&values, alpha)).map_err(calib_err)
}

/// Quamba's percentile observer (`lowbit_calib::quamba::PercentileObserver`).
#[pyclass(name = "PercentileObserver", module = "lowbit._C")]
pub struct PyPercentileObserver {
    inner: PercentileObserver,
}

#[pymethods]
impl PyPercentileObserver {
    #[new]
    #[pyo3(signature = (alpha = quamba::DEFAULT_PERCENTILE_ALPHA, momentum = quamba::DEFAULT_PERCENTILE_MOMENTUM))]
    fn new(alpha: f64, momentum: f64) -> PyResult<Self> {
        Ok(Self { inner: PercentileObserver::new(alpha, momentum).map_err(calib_err)? })
    }

    /// Adds one calibration sample of `n` float32 values; returns its quantile.
    fn update(&mut self, py: Python<'_>, data: &[u8], n: usize) -> PyResult<f32> {
        let values = f32_from_bytes(data, n, "data")?;
        let obs = &mut self.inner;
        py.detach(|| obs.update(&values)).map_err(calib_err)
    }

    /// The running clip value.
    fn value(&self) -> PyResult<f32> {
        self.inner.value().map_err(calib_err)
    }

    /// `max(value / 127, 1e-6)`.
    fn scale(&self) -> PyResult<f32> {
        self.inner.scale().map_err(calib_err)
    }

    /// Calibration samples seen.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples()
    }

    /// The quantile.
    #[getter]
    fn alpha(&self) -> f64 {
        self.inner.alpha()
    }

    /// The EMA momentum.
    #[getter]
    fn momentum(&self) -> f64 {
        self.inner.momentum()
    }
}

/// Absmax per group of columns (`lowbit_calib::quamba::GroupAbsMaxObserver`).
#[pyclass(name = "GroupAbsMaxObserver", module = "lowbit._C")]
pub struct PyGroupAbsMaxObserver {
    inner: GroupAbsMaxObserver,
}

#[pymethods]
impl PyGroupAbsMaxObserver {
    /// `col_group[c]`: the flat (row-major over `shape_groups`) group of column `c`, or -1 to ignore it.
    #[new]
    fn new(shape_groups: Vec<usize>, col_group: Vec<i64>) -> PyResult<Self> {
        let map = col_group
            .into_iter()
            .map(|g| match g {
                -1 => Ok(None),
                g if g >= 0 => Ok(Some(g as usize)),
                g => Err(value_err(format!("col_group entry {g} (expected a group index or -1)"))),
            })
            .collect::<PyResult<Vec<_>>>()?;
        Ok(Self { inner: GroupAbsMaxObserver::new(shape_groups, map).map_err(calib_err)? })
    }

    /// One group: `[rows, cols]` → `[1]`.
    #[staticmethod]
    fn per_tensor(cols: usize) -> PyResult<Self> {
        Ok(Self { inner: GroupAbsMaxObserver::per_tensor(cols).map_err(calib_err)? })
    }

    /// B or C: `[rows, ngroups·dstate]` → `[ngroups]`.
    #[staticmethod]
    fn per_state_group(ngroups: usize, dstate: usize) -> PyResult<Self> {
        Ok(Self { inner: GroupAbsMaxObserver::per_state_group(ngroups, dstate).map_err(calib_err)? })
    }

    /// SSD input x: `[rows, nheads·headdim]` → `[ngroups, head_clusters, dim_clusters]`.
    #[staticmethod]
    #[pyo3(signature = (clusters, layout = "original"))]
    fn x_clusters(clusters: &Bound<'_, PyDict>, layout: &str) -> PyResult<Self> {
        let c = clusters_from_dict(clusters)?;
        let l = self::layout(layout)?;
        Ok(Self { inner: GroupAbsMaxObserver::x_clusters(&c, l).map_err(calib_err)? })
    }

    /// SSM state: `[batch, nheads·headdim·dstate]` → `[ngroups, head_clusters, dim_clusters, dstate]`.
    #[staticmethod]
    #[pyo3(signature = (clusters, dstate, layout = "original"))]
    fn ssm_state(clusters: &Bound<'_, PyDict>, dstate: usize, layout: &str) -> PyResult<Self> {
        let c = clusters_from_dict(clusters)?;
        let l = self::layout(layout)?;
        Ok(Self { inner: GroupAbsMaxObserver::ssm_state(&c, dstate, l).map_err(calib_err)? })
    }

    /// Adds `rows` rows of `cols` float32 values.
    fn update(&mut self, py: Python<'_>, data: &[u8], rows: usize) -> PyResult<()> {
        let values = f32_from_bytes(data, rows * self.inner.cols(), "data")?;
        let obs = &mut self.inner;
        py.detach(|| obs.update(&values, rows)).map_err(calib_err)
    }

    /// Running absmax per group, flat.
    fn absmax(&self) -> PyResult<Vec<f32>> {
        self.inner.absmax().map(<[f32]>::to_vec).map_err(calib_err)
    }

    /// `max(absmax / 127, 1e-6)` per group, flat.
    fn scales(&self) -> PyResult<Vec<f32>> {
        self.inner.scales().map_err(calib_err)
    }

    /// Shape of the group tensor.
    #[getter]
    fn shape(&self) -> Vec<usize> {
        self.inner.shape().to_vec()
    }

    /// Columns per row of the data.
    #[getter]
    fn cols(&self) -> usize {
        self.inner.cols()
    }

    /// Rows seen.
    #[getter]
    fn rows(&self) -> usize {
        self.inner.rows()
    }

    /// Non-empty updates seen.
    #[getter]
    fn updates(&self) -> usize {
        self.inner.updates()
    }
}

/// Per channel, `max` over samples of `mean_t |x|` (`lowbit_calib::quamba::ChannelMeanAbsMax`).
#[pyclass(name = "ChannelMeanAbsMax", module = "lowbit._C")]
pub struct PyChannelMeanAbsMax {
    inner: ChannelMeanAbsMax,
}

#[pymethods]
impl PyChannelMeanAbsMax {
    #[new]
    fn new(channels: usize) -> PyResult<Self> {
        Ok(Self { inner: ChannelMeanAbsMax::new(channels).map_err(calib_err)? })
    }

    /// Adds one sample of `rows` rows of `channels` float32 values.
    fn update(&mut self, py: Python<'_>, data: &[u8], rows: usize) -> PyResult<()> {
        let values = f32_from_bytes(data, rows * self.inner.channels(), "data")?;
        let obs = &mut self.inner;
        py.detach(|| obs.update(&values, rows)).map_err(calib_err)
    }

    /// The statistic, float32 bytes `[channels]`.
    fn stat<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let s = self.inner.stat().map_err(calib_err)?;
        Ok(PyBytes::new(py, &f32_bytes(s)))
    }

    /// Calibration samples seen.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples()
    }

    /// Channels.
    #[getter]
    fn channels(&self) -> usize {
        self.inner.channels()
    }
}

fn item<'py, T: for<'a> FromPyObject<'a, 'py>>(d: &Bound<'py, PyDict>, key: &str) -> PyResult<T>
where
    for<'a> <T as FromPyObject<'a, 'py>>::Error: Into<PyErr>,
{
    let v = d.get_item(key)?.ok_or_else(|| value_err(format!("clusters dict has no '{key}'")))?;
    v.extract::<T>().map_err(|e| value_err(format!("clusters['{key}']: {}", Into::<PyErr>::into(e))))
}

/// Rebuilds and validates clusters from the dict of [`quamba_sort_and_cluster`] (sizes inferred from the
/// ranges).
fn clusters_from_dict(d: &Bound<'_, PyDict>) -> PyResult<QuambaClusters> {
    let head_perm: Vec<usize> = item(d, "head_perm")?;
    let channel_perm: Vec<usize> = item(d, "channel_perm")?;
    let hgr: Vec<Vec<usize>> = item(d, "head_group_range")?;
    let dgr: Vec<Vec<Vec<usize>>> = item(d, "dim_group_range")?;
    let ngroups = hgr.len();
    let nheads_per_group = hgr.first().and_then(|r| r.last()).copied().unwrap_or(0);
    let headdim = dgr.first().and_then(|g| g.first()).and_then(|r| r.last()).copied().unwrap_or(0);
    QuambaClusters::from_parts(ngroups, nheads_per_group, headdim, head_perm, channel_perm, hgr, dgr).map_err(calib_err)
}

/// Quamba2 sort-and-cluster over `stat[ngroups, nheads_per_group, headdim]` (float32 bytes).
#[pyfunction]
#[pyo3(signature = (stat, ngroups, nheads_per_group, headdim, head_clusters = 4, dim_clusters = 4))]
fn quamba_sort_and_cluster<'py>(
    py: Python<'py>,
    stat: &[u8],
    ngroups: usize,
    nheads_per_group: usize,
    headdim: usize,
    head_clusters: usize,
    dim_clusters: usize,
) -> PyResult<Bound<'py, PyDict>> {
    let values = f32_from_bytes(stat, ngroups * nheads_per_group * headdim, "stat")?;
    let c = py
        .detach(|| quamba::sort_and_cluster(&values, ngroups, nheads_per_group, headdim, head_clusters, dim_clusters))
        .map_err(calib_err)?;
    let d = PyDict::new(py);
    d.set_item("head_perm", &c.head_perm)?;
    d.set_item("channel_perm", &c.channel_perm)?;
    d.set_item("head_group_range", &c.head_group_range)?;
    d.set_item("dim_group_range", &c.dim_group_range)?;
    d.set_item("ngroups", c.ngroups)?;
    d.set_item("nheads_per_group", c.nheads_per_group)?;
    d.set_item("headdim", c.headdim)?;
    d.set_item("head_clusters", c.head_clusters)?;
    d.set_item("dim_clusters", c.dim_clusters)?;
    let seg: Vec<Vec<&str>> = c
        .segmentation
        .iter()
        .map(|g| {
            g.iter()
                .map(|s| match s {
                    Segmentation::KMeans => "kmeans",
                    Segmentation::DynamicProgramming => "dp",
                    Segmentation::Trivial => "trivial",
                })
                .collect()
        })
        .collect();
    d.set_item("segmentation", seg)?;
    Ok(d)
}

/// Per x channel (in `layout` order) its flat cluster index `(g·head_clusters + hc)·dim_clusters + dc`.
#[pyfunction]
#[pyo3(signature = (clusters, layout = "original"))]
fn quamba_channel_groups(clusters: &Bound<'_, PyDict>, layout: &str) -> PyResult<Vec<usize>> {
    let c = clusters_from_dict(clusters)?;
    Ok(c.channel_groups(self::layout(layout)?))
}

/// Fuses the normalized block-diagonal Hadamard into `w[rows, cols]` (float32 bytes): `side` `"input"`
/// (`W·H`) or `"output"` (`H·W`). Returns the new weight as float32 bytes.
#[pyfunction]
fn fuse_hadamard<'py>(
    py: Python<'py>,
    w: &[u8],
    rows: usize,
    cols: usize,
    side: &str,
    block: usize,
) -> PyResult<Bound<'py, PyBytes>> {
    let side: HadamardSide = side.parse().map_err(calib_err)?;
    let mut values = f32_from_bytes(w, rows * cols, "weight")?;
    py.detach(|| quamba::fuse_hadamard_in_place(&mut values, rows, cols, side, block)).map_err(calib_err)?;
    Ok(PyBytes::new(py, &f32_bytes(&values)))
}

/// The largest power of two dividing `dim` and at most `max_block`.
#[pyfunction]
fn hadamard_block(dim: usize, max_block: usize) -> usize {
    quamba::hadamard_block(dim, max_block)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyPercentileObserver>()?;
    m.add_class::<PyGroupAbsMaxObserver>()?;
    m.add_class::<PyChannelMeanAbsMax>()?;
    m.add_function(wrap_pyfunction!(abs_quantile, m)?)?;
    m.add_function(wrap_pyfunction!(quamba_sort_and_cluster, m)?)?;
    m.add_function(wrap_pyfunction!(quamba_channel_groups, m)?)?;
    m.add_function(wrap_pyfunction!(fuse_hadamard, m)?)?;
    m.add_function(wrap_pyfunction!(hadamard_block, m)?)?;
    Ok(())
}
