//! Prologue helpers shared by the SSM / SSD launch wrappers (`ssm.rs`, `ssd.rs`): the caller's CUDA context is
//! saved and restored around a launch (PyTorch may have another one current on the thread), and buffer lengths
//! are checked into typed errors before any pointer reaches a kernel.

use crate::device::Device;
use crate::error::{CudaError, Result};

/// Binds `dev`'s context, runs `f`, and makes the previously current context current again (PyTorch may have
/// another one current on this thread).
pub(crate) fn in_context<T>(dev: &Device, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let previous = cudarc::driver::result::ctx::get_current()?;
    dev.bind_to_thread()?;
    let r = f();
    if let Some(prev) = previous
        && prev != dev.context().cu_ctx()
    {
        // SAFETY: `prev` was current on this thread a moment ago and is still alive.
        unsafe { cudarc::driver::result::ctx::set_current(prev) }?;
    }
    r
}

/// `CudaError::BufferSize` naming `what` when a buffer of `got` elements is shorter than `expected`.
pub(crate) fn need(what: &'static str, got: usize, expected: usize) -> Result<()> {
    if got < expected { Err(CudaError::BufferSize { what, expected, got }) } else { Ok(()) }
}
