//! `save_checkpoint` / `load_checkpoint`: lowbit-core's versioned, checksummed safetensors checkpoint.

use std::collections::{BTreeMap, HashMap};

use lowbit_core::checkpoint::{self, Checkpoint, PassthroughData, PassthroughTensor, QuantizedLayer};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::core_err;
use crate::weight::{PyQWeight, f32_from_bytes, le_bytes};

/// One passthrough tensor as Python hands it over: name, shape, float32 bytes, store as float16.
type PassIn<'py> = (String, Vec<usize>, Bound<'py, PyBytes>, bool);
/// One passthrough tensor as Python gets it back: name, shape, float32 bytes, stored dtype.
type PassOut<'py> = (String, Vec<usize>, Bound<'py, PyBytes>, &'static str);

/// Writes a checkpoint atomically: `layers` `(name, QWeight)`, `passthrough` `(name, shape, float32 bytes,
/// as_f16)` and a `source` map of free-form strings (stored in the header and covered by its checksum).
#[pyfunction]
fn save_checkpoint(
    py: Python<'_>,
    path: &str,
    layers: Vec<(String, PyRef<'_, PyQWeight>)>,
    passthrough: Vec<PassIn<'_>>,
    source: HashMap<String, String>,
) -> PyResult<()> {
    let mut ck = Checkpoint::new();
    for (name, w) in &layers {
        ck.layers.push(QuantizedLayer { name: name.clone(), weight: w.inner.clone() });
    }
    for (name, shape, bytes, as_f16) in passthrough {
        let count = shape.iter().product::<usize>();
        let values = f32_from_bytes(bytes.as_bytes(), count, &format!("passthrough tensor '{name}'"))?;
        ck.passthrough.push(if as_f16 {
            PassthroughTensor::f16_from_f32(name, shape, &values)
        } else {
            PassthroughTensor::f32(name, shape, values)
        });
    }
    ck.source = source.into_iter().collect::<BTreeMap<_, _>>();
    let path = path.to_string();
    py.detach(|| checkpoint::save(&path, &ck)).map_err(core_err)
}

/// Reads and fully validates a checkpoint (version, header checksum, every tensor's CRC-32, shapes, codes).
/// Returns `(layers, passthrough, source)`: `[(name, QWeight)]`, `[(name, shape, float32 bytes, stored
/// dtype)]` and the source map.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn load_checkpoint<'py>(
    py: Python<'py>,
    path: &str,
) -> PyResult<(Vec<(String, PyQWeight)>, Vec<PassOut<'py>>, HashMap<String, String>)> {
    let p = path.to_string();
    let ck = py.detach(|| checkpoint::load(&p)).map_err(core_err)?;
    let layers = ck.layers.into_iter().map(|l| (l.name, PyQWeight::new(l.weight))).collect();
    let mut pass = Vec::with_capacity(ck.passthrough.len());
    for t in ck.passthrough {
        let dtype = match t.data {
            PassthroughData::F32(_) => "float32",
            PassthroughData::F16(_) => "float16",
        };
        let bytes = le_bytes(&t.data.to_f32(), f32::to_le_bytes);
        pass.push((t.name, t.shape, PyBytes::new(py, &bytes), dtype));
    }
    Ok((layers, pass, ck.source.into_iter().collect()))
}

/// Whether `path` looks like a lowbit checkpoint (a safetensors header with `lowbit.format_version`).
#[pyfunction]
fn is_checkpoint(path: &str) -> bool {
    checkpoint::is_checkpoint(path)
}

/// The checkpoint format version this build writes.
#[pyfunction]
fn checkpoint_format_version() -> &'static str {
    checkpoint::FORMAT_VERSION
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(save_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(load_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(is_checkpoint, m)?)?;
    m.add_function(wrap_pyfunction!(checkpoint_format_version, m)?)?;
    Ok(())
}
