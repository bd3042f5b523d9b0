//! Rust errors → Python exceptions.
//!
//! | Rust | Python |
//! |---|---|
//! | shapes, values, schemes, group sizes, bits, non-finite data, corrupt or mismatched checkpoints | `ValueError` |
//! | `LowbitError::Unsupported`, `CudaError::NoKernel` | `NotImplementedError` |
//! | `LowbitError::Io` | `OSError` |
//! | no GPU, CUDA runtime / driver / cuBLAS failures | `RuntimeError` |

use lowbit_core::LowbitError;
use lowbit_cuda::CudaError;
use pyo3::PyErr;
use pyo3::exceptions::{PyNotImplementedError, PyOSError, PyRuntimeError, PyValueError};

/// Maps a lowbit-core error to the matching Python exception.
pub(crate) fn core_err(e: LowbitError) -> PyErr {
    let msg = e.to_string();
    match e {
        LowbitError::Unsupported(_) => PyNotImplementedError::new_err(msg),
        LowbitError::Io { .. } => PyOSError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

/// Maps a lowbit-cuda error to the matching Python exception.
pub(crate) fn cuda_err(e: CudaError) -> PyErr {
    let msg = e.to_string();
    match e {
        CudaError::Core(core) => core_err(core),
        CudaError::Shape { .. }
        | CudaError::Alignment { .. }
        | CudaError::InvalidArgument { .. }
        | CudaError::BufferSize { .. } => PyValueError::new_err(msg),
        CudaError::NoKernel { .. } => PyNotImplementedError::new_err(msg),
        _ => PyRuntimeError::new_err(msg),
    }
}

/// A `ValueError` with `msg`.
pub(crate) fn value_err(msg: impl Into<String>) -> PyErr {
    PyValueError::new_err(msg.into())
}
