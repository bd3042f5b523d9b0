//! `QWeight` (a packed [`QuantizedWeight`]), `quantize`, `parse_scheme`.

use lowbit_core::bits::words_per_row;
use lowbit_core::{QuantizedWeight, WeightScheme};
use ndarray::ArrayView2;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{core_err, value_err};

/// A quantized weight matrix `[N, K]` in any lowbit format, held by Rust (codes and metadata packed as
/// `docs/formats.md` describes).
#[pyclass(name = "QWeight", module = "lowbit._C", frozen)]
pub struct PyQWeight {
    pub(crate) inner: QuantizedWeight,
}

impl PyQWeight {
    /// Wraps a weight.
    pub(crate) fn new(inner: QuantizedWeight) -> Self {
        Self { inner }
    }
}

/// Little-endian bytes of a slice of plain numbers.
pub(crate) fn le_bytes<T: Copy, const B: usize>(v: &[T], f: impl Fn(T) -> [u8; B]) -> Vec<u8> {
    let mut out = Vec::with_capacity(v.len() * B);
    for &x in v {
        out.extend_from_slice(&f(x));
    }
    out
}

/// f32 values from little-endian bytes; `what` names the argument in the error.
pub(crate) fn f32_from_bytes(data: &[u8], count: usize, what: &str) -> PyResult<Vec<f32>> {
    if data.len() != count * 4 {
        return Err(value_err(format!(
            "{what}: expected {count} float32 values ({} bytes), got {} bytes",
            count * 4,
            data.len()
        )));
    }
    Ok(data.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect())
}

type Field = (String, &'static str, Vec<usize>, Vec<u8>);

/// The stored fields of a weight: name, dtype (`uint32`, `float16`, `uint8`, `float32`), shape, bytes.
fn fields(w: &QuantizedWeight) -> Vec<Field> {
    let (n, k) = w.shape();
    let u32s = |v: &[u32]| le_bytes(v, u32::to_le_bytes);
    let f16s = |v: &[half::f16]| le_bytes(v, |x: half::f16| x.to_bits().to_le_bytes());
    let f32s = |v: &[f32]| le_bytes(v, f32::to_le_bytes);
    let f =
        |name: &str, dtype: &'static str, shape: Vec<usize>, bytes: Vec<u8>| (name.to_string(), dtype, shape, bytes);
    match w {
        QuantizedWeight::Int(w) => {
            let ng = w.granularity.n_groups(k);
            let mut v = vec![
                f("codes", "uint32", vec![n, words_per_row(k, w.bits)], u32s(&w.codes)),
                f("scales", "float16", vec![n, ng], f16s(&w.scales)),
                f("zeros", "uint8", vec![n, ng], w.zeros.clone()),
            ];
            if let Some(g) = &w.g_idx {
                v.push(f("g_idx", "uint32", vec![k], u32s(g)));
            }
            v
        }
        QuantizedWeight::Bipolar(w) => {
            let ng = w.granularity.n_groups(k);
            let mut v = vec![
                f("planes", "uint32", vec![w.bits as usize, n, k.div_ceil(32)], u32s(&w.planes)),
                f("scales", "float32", vec![n, ng], f32s(&w.scales)),
            ];
            if let Some(o) = &w.offsets {
                v.push(f("offsets", "float32", vec![n, ng], f32s(o)));
            }
            v
        }
        QuantizedWeight::Mixed(w) => {
            let ng = w.n_groups();
            vec![
                f("codes", "uint32", vec![n, words_per_row(k, w.bits)], u32s(&w.codes)),
                f("group_scales", "uint8", vec![n, ng], w.group_scales.clone()),
                f("selectors", "uint8", vec![n, ng.div_ceil(4)], w.selectors.clone()),
                f("channel_scales", "float16", vec![n], f16s(&w.channel_scales)),
            ]
        }
        QuantizedWeight::Lut(w) => {
            let ng = w.granularity.n_groups(k);
            vec![
                f("lut", "float32", vec![w.lut.len()], f32s(&w.lut)),
                f("codes", "uint32", vec![n, words_per_row(k, w.bits)], u32s(&w.codes)),
                f("scales", "float16", vec![n, ng], f16s(&w.scales)),
            ]
        }
    }
}

#[pymethods]
impl PyQWeight {
    /// `(N, K)`: output features, input features.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        self.inner.shape()
    }

    /// The canonical scheme name, e.g. `w4-int-g128`.
    #[getter]
    fn scheme(&self) -> String {
        self.inner.scheme().to_string()
    }

    /// Bytes of packed storage (codes and metadata).
    #[getter]
    fn storage_bytes(&self) -> usize {
        self.inner.storage_bytes()
    }

    /// Whether the weight carries an act-order column-to-group map (`g_idx`).
    #[getter]
    fn act_order(&self) -> bool {
        matches!(&self.inner, QuantizedWeight::Int(w) if w.g_idx.is_some())
    }

    /// The dequantized weight as little-endian float32 bytes, row-major `[N, K]`: exactly the values every
    /// lowbit kernel reproduces.
    fn dequantize<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let w = &self.inner;
        let bytes = py.detach(|| {
            let d = w.dequantize();
            let flat: Vec<f32> = d.iter().copied().collect();
            le_bytes(&flat, f32::to_le_bytes)
        });
        PyBytes::new(py, &bytes)
    }

    /// The packed fields: a list of `(name, dtype, shape, bytes)`, dtype one of `uint32`, `uint8`,
    /// `float16`, `float32` (the field names of `docs/formats.md`).
    fn tensors<'py>(&self, py: Python<'py>) -> Vec<(String, &'static str, Vec<usize>, Bound<'py, PyBytes>)> {
        let w = &self.inner;
        let raw = py.detach(|| fields(w));
        raw.into_iter().map(|(name, dtype, shape, bytes)| (name, dtype, shape, PyBytes::new(py, &bytes))).collect()
    }

    /// BitMoD weights: how many groups chose each datatype (ER+, ER−, EA+, EA−); `None` for other formats.
    fn type_histogram(&self) -> Option<[usize; 4]> {
        match &self.inner {
            QuantizedWeight::Mixed(w) => Some(w.type_histogram()),
            _ => None,
        }
    }

    fn __repr__(&self) -> String {
        let (n, k) = self.inner.shape();
        format!("QWeight({}, n={n}, k={k}, {} bytes)", self.inner.scheme(), self.inner.storage_bytes())
    }
}

/// Parses and validates a scheme string; returns its canonical name (`w4-int-g128`).
#[pyfunction]
fn parse_scheme(scheme: &str) -> PyResult<String> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    Ok(s.to_string())
}

/// Storage bits per weight of `scheme` for rows of `k` input features, metadata included.
#[pyfunction]
fn bits_per_weight(scheme: &str, k: usize) -> PyResult<f64> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    Ok(s.bits_per_weight(k))
}

/// Round-to-nearest quantization of `w[N, K]` (little-endian float32 bytes, row-major) with `scheme`.
/// `perm`: an act-order column permutation (INT schemes only; group `i / G` holds columns `perm[i]`).
#[pyfunction]
#[pyo3(signature = (data, n, k, scheme, perm = None))]
fn quantize(
    py: Python<'_>,
    data: &[u8],
    n: usize,
    k: usize,
    scheme: &str,
    perm: Option<Vec<usize>>,
) -> PyResult<PyQWeight> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    let values = f32_from_bytes(data, n * k, "weight")?;
    let w = py.detach(|| -> lowbit_core::Result<QuantizedWeight> {
        let view = ArrayView2::from_shape((n, k), &values)
            .map_err(|e| lowbit_core::LowbitError::shape("weight", format!("[{n}, {k}]"), e))?;
        match perm {
            None => lowbit_core::quantize(view, &s),
            Some(p) => match s.kind {
                lowbit_core::SchemeKind::Int { symmetric } => Ok(QuantizedWeight::Int(
                    lowbit_core::IntAffineWeight::quantize_act_order(view, s.bits, symmetric, s.granularity, &p)?,
                )),
                _ => Err(lowbit_core::LowbitError::Unsupported(format!("act-order needs an INT scheme, not {s}"))),
            },
        }
    });
    Ok(PyQWeight::new(w.map_err(core_err)?))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyQWeight>()?;
    m.add_function(wrap_pyfunction!(parse_scheme, m)?)?;
    m.add_function(wrap_pyfunction!(bits_per_weight, m)?)?;
    m.add_function(wrap_pyfunction!(quantize, m)?)?;
    Ok(())
}
