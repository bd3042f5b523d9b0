//! # lowbit-py
//!
//! The Python extension module `lowbit._C`: marshalling only, no numerics of its own. Everything it exposes
//! is a thin wrapper over `lowbit-core` (formats, quantizers, the checkpoint), `lowbit-cuda` (the
//! weight-only GEMM) and, when it is built in, `lowbit-calib` (the offline calibrator).
//!
//! Conventions:
//! - host arrays cross as `bytes` (little-endian, row-major) plus an explicit shape; the Python package
//!   (`python/src/lowbit`) turns them into numpy arrays and torch tensors;
//! - device tensors cross as raw pointers (`tensor.data_ptr()`), a leading dimension, a dtype name and the
//!   caller's stream (`torch.cuda.current_stream().cuda_stream`); nothing here frees or owns memory that
//!   torch allocated, and launches are asynchronous on that stream;
//! - the GIL is released around every piece of real work (`Python::detach`);
//! - errors map to Python exceptions by kind: bad shapes and values → `ValueError`, unsupported
//!   combinations → `NotImplementedError`, file system → `OSError`, CUDA and driver failures →
//!   `RuntimeError`.

// The module must be called `_C` (Python imports `lowbit._C`), which is not a snake-case name.
#![allow(non_snake_case)]

mod calib;
mod checkpoint;
mod errors;
mod gpu;
mod int8;
mod quamba;
mod ssd;
mod ssm;
mod weight;

use pyo3::prelude::*;

/// The `lowbit._C` module.
#[pymodule]
fn _C(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    weight::register(m)?;
    checkpoint::register(m)?;
    gpu::register(m)?;
    calib::register(m)?;
    quamba::register(m)?;
    int8::register(m)?;
    ssm::register(m)?;
    ssd::register(m)?;
    Ok(())
}
