//! The offline calibrator (`lowbit-calib`): Hessian accumulation, GPTQ, BitMoD datatype search, activation
//! observers and static int8 activation scales.

use lowbit_calib::{
    CalibError, ClipSearch, DatatypeSearch, ErrorMetric, GptqOptions, Hessian, HessianAccumulator, HistogramObserver,
    ObserverGranularity, ScaleMethod,
};
use lowbit_core::WeightScheme;
use ndarray::ArrayView2;
use pyo3::exceptions::{PyNotImplementedError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{core_err, value_err};
use crate::weight::{PyQWeight, f32_from_bytes};

/// Whether this build carries the calibrator.
pub(crate) const AVAILABLE: bool = true;

/// Maps a calibrator error to a Python exception: unsupported schemes → `NotImplementedError`, everything
/// else (NaN/Inf, no samples, shapes, indefinite Hessians, bad options) → `ValueError`.
fn calib_err(e: CalibError) -> PyErr {
    let msg = e.to_string();
    match e {
        CalibError::Core(c) => core_err(c),
        CalibError::UnsupportedScheme { .. } => PyNotImplementedError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

fn matrix<'a>(values: &'a [f32], rows: usize, cols: usize, what: &str) -> PyResult<ArrayView2<'a, f32>> {
    ArrayView2::from_shape((rows, cols), values).map_err(|e| value_err(format!("{what}: {e}")))
}

fn search(metric: &str, candidates: Option<Vec<u8>>) -> PyResult<DatatypeSearch> {
    let metric = match metric {
        "mse" => ErrorMetric::Mse,
        "hessian" | "hessian_diag" => ErrorMetric::HessianDiag,
        other => return Err(value_err(format!("datatype metric '{other}' (expected 'mse' or 'hessian')"))),
    };
    let mut s = DatatypeSearch { metric, ..DatatypeSearch::default() };
    if let Some(c) = candidates {
        s.candidates = c;
    }
    Ok(s)
}

/// Accumulates a layer's Hessian `H = (2/n)·Σ xᵀx` from its input activations (`lowbit_calib::HessianAccumulator`).
#[pyclass(name = "HessianAccumulator", module = "lowbit._C")]
pub struct PyHessianAccumulator {
    inner: HessianAccumulator,
}

#[pymethods]
impl PyHessianAccumulator {
    /// An empty accumulator for `k` input features.
    #[new]
    fn new(k: usize) -> PyResult<Self> {
        Ok(Self { inner: HessianAccumulator::new(k).map_err(calib_err)? })
    }

    /// Adds `rows` activation rows (little-endian float32 bytes, `[rows, k]`). NaN or infinity is a `ValueError`.
    fn update(&mut self, py: Python<'_>, data: &[u8], rows: usize) -> PyResult<()> {
        let k = self.inner.k();
        let values = f32_from_bytes(data, rows * k, "activations")?;
        let x = matrix(&values, rows, k, "activations")?;
        let acc = &mut self.inner;
        py.detach(|| acc.update(x)).map_err(calib_err)
    }

    /// Rows seen so far.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples()
    }

    /// Input features.
    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }

    /// The Hessian (`ValueError` before any sample).
    fn finish(&self, py: Python<'_>) -> PyResult<PyHessian> {
        let acc = &self.inner;
        Ok(PyHessian { inner: py.detach(|| acc.finish()).map_err(calib_err)? })
    }
}

/// A layer Hessian (`lowbit_calib::Hessian`).
#[pyclass(name = "Hessian", module = "lowbit._C", frozen)]
pub struct PyHessian {
    inner: Hessian,
}

#[pymethods]
impl PyHessian {
    /// Input features.
    #[getter]
    fn k(&self) -> usize {
        self.inner.k()
    }

    /// Calibration rows it was built from.
    #[getter]
    fn samples(&self) -> usize {
        self.inner.samples()
    }

    /// The diagonal (each input's energy).
    fn diag(&self) -> Vec<f64> {
        self.inner.diag()
    }

    /// `(2/n)·‖XWᵀ − XŴᵀ‖²` for the original weight `w` and `w_hat` (float32 bytes, `[n, k]`).
    fn output_error(&self, py: Python<'_>, w: &[u8], w_hat: &[u8], n: usize) -> PyResult<f64> {
        let k = self.inner.k();
        let a = f32_from_bytes(w, n * k, "w")?;
        let b = f32_from_bytes(w_hat, n * k, "w_hat")?;
        let (a, b) = (matrix(&a, n, k, "w")?, matrix(&b, n, k, "w_hat")?);
        let h = &self.inner;
        py.detach(|| h.output_error(a, b)).map_err(calib_err)
    }
}

/// GPTQ: quantizes `w[n, k]` (float32 bytes) into `scheme` with the layer Hessian. Returns the weight and a
/// dict of statistics (`loss`, `damp_percent`, `attempts`, `dead_columns`, `act_order`, `static_groups`).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (w, n, k, hessian, scheme, *, damp_percent = 0.01, block_size = 128, act_order = false,
    static_groups = false, datatype_metric = "mse", clip_search = false))]
fn gptq_quantize<'py>(
    py: Python<'py>,
    w: &[u8],
    n: usize,
    k: usize,
    hessian: PyRef<'_, PyHessian>,
    scheme: &str,
    damp_percent: f64,
    block_size: usize,
    act_order: bool,
    static_groups: bool,
    datatype_metric: &str,
    clip_search: bool,
) -> PyResult<(PyQWeight, Bound<'py, PyDict>)> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    let values = f32_from_bytes(w, n * k, "weight")?;
    let view = matrix(&values, n, k, "weight")?;
    let opts = GptqOptions {
        damp_percent,
        block_size,
        act_order,
        static_groups,
        datatype_search: search(datatype_metric, None)?,
        clip_search: clip_search.then(ClipSearch::default),
        ..GptqOptions::default()
    };
    let h = &hessian.inner;
    let r = py.detach(|| lowbit_calib::gptq_quantize(view, h, &s, &opts)).map_err(calib_err)?;
    let d = PyDict::new(py);
    d.set_item("loss", r.stats.loss)?;
    d.set_item("damp_percent", r.stats.damp_percent)?;
    d.set_item("attempts", r.stats.attempts)?;
    d.set_item("dead_columns", r.stats.dead_columns)?;
    d.set_item("act_order", r.stats.act_order)?;
    d.set_item("static_groups", r.stats.static_groups)?;
    Ok((PyQWeight::new(r.weight), d))
}

/// Round-to-nearest through the calibrator's quantizers, with the BitMoD datatype search options
/// (`datatype_metric` `mse` or `hessian`, the latter needing `hessian`; `candidates` a subset of 0..4).
#[pyfunction]
#[allow(clippy::too_many_arguments)]
#[pyo3(signature = (w, n, k, scheme, *, datatype_metric = "mse", hessian = None, candidates = None))]
fn rtn_quantize(
    py: Python<'_>,
    w: &[u8],
    n: usize,
    k: usize,
    scheme: &str,
    datatype_metric: &str,
    hessian: Option<PyRef<'_, PyHessian>>,
    candidates: Option<Vec<u8>>,
) -> PyResult<PyQWeight> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    let values = f32_from_bytes(w, n * k, "weight")?;
    let view = matrix(&values, n, k, "weight")?;
    let ds = search(datatype_metric, candidates)?;
    let h = hessian.as_ref().map(|h| &h.inner);
    let q = py.detach(|| lowbit_calib::rtn_quantize(view, &s, &ds, h)).map_err(calib_err)?;
    Ok(PyQWeight::new(q))
}

/// A per-tensor streaming histogram of activations (`lowbit_calib::HistogramObserver`), for static int8
/// activation scales (W8A8 / W4A8).
#[pyclass(name = "ActivationObserver", module = "lowbit._C")]
pub struct PyActivationObserver {
    inner: HistogramObserver,
}

#[pymethods]
impl PyActivationObserver {
    /// An empty per-tensor observer with `bins` histogram bins.
    #[new]
    #[pyo3(signature = (bins = 2048))]
    fn new(bins: usize) -> PyResult<Self> {
        Ok(Self { inner: HistogramObserver::new(bins, ObserverGranularity::PerTensor).map_err(calib_err)? })
    }

    /// Adds `rows` rows of `k` activations (float32 bytes).
    fn update(&mut self, py: Python<'_>, data: &[u8], rows: usize, k: usize) -> PyResult<()> {
        let values = f32_from_bytes(data, rows * k, "activations")?;
        let x = matrix(&values, rows, k, "activations")?;
        let obs = &mut self.inner;
        py.detach(|| obs.update(x)).map_err(calib_err)
    }

    /// The static int8 scale (`clip / 127`): `method` `minmax`, `mse`, or `percentile` with `percentile`.
    #[pyo3(signature = (method = "mse", percentile = 99.99))]
    fn static_scale(&self, py: Python<'_>, method: &str, percentile: f64) -> PyResult<f32> {
        let m = match method {
            "minmax" => ScaleMethod::MinMax,
            "mse" => ScaleMethod::Mse,
            "percentile" => ScaleMethod::Percentile(percentile),
            other => return Err(value_err(format!("scale method '{other}' (minmax, mse or percentile)"))),
        };
        let obs = &self.inner;
        py.detach(|| lowbit_calib::static_scale(obs, m)).map_err(calib_err)
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyHessianAccumulator>()?;
    m.add_class::<PyHessian>()?;
    m.add_class::<PyActivationObserver>()?;
    m.add_function(wrap_pyfunction!(gptq_quantize, m)?)?;
    m.add_function(wrap_pyfunction!(rtn_quantize, m)?)?;
    Ok(())
}
