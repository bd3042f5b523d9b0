//! The card's memory read bandwidth as a pure read kernel achieves it (`kernels/common/read_probe.cu`).
//!
//! The benches report how close a memory-bound kernel gets to this measured ceiling beside the spec peak, so
//! "percent of the card's read bandwidth" is a ratio of two numbers from the same run on the same card.

use std::ffi::c_void;
use std::sync::Arc;

use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};
use lowbit_kernels_sys as sys;

use crate::device::Device;
use crate::error::{CudaError, Result, check_with};

const LAUNCHER: &str = "lowbit_read_probe";

/// Reads all of `src` once on `stream` with the read-only streaming kernel (16-byte evict-first loads, full
/// occupancy of `dev`'s SMs) and XORs its 32-bit words into `sink[0]`: zero the sink first to get the buffer's
/// XOR (a check that the whole buffer was read). Asynchronous; time it with events on `stream`.
///
/// Errors: `src` empty or not a multiple of 16 bytes, an empty sink, a buffer or the stream on another device.
pub fn read_probe(
    dev: &Device,
    stream: &Arc<CudaStream>,
    src: &CudaSlice<u8>,
    sink: &mut CudaSlice<u32>,
) -> Result<()> {
    if src.is_empty() || !src.len().is_multiple_of(16) {
        return Err(CudaError::Alignment {
            launcher: LAUNCHER,
            detail: format!("source of {} bytes: need a positive multiple of 16", src.len()),
        });
    }
    if sink.is_empty() {
        return Err(CudaError::BufferSize { what: "read probe sink", expected: 1, got: 0 });
    }
    let on = [("source", src.ordinal()), ("sink", sink.ordinal()), ("stream", stream.context().ordinal())];
    for (what, ordinal) in on {
        if ordinal != dev.ordinal() {
            return Err(CudaError::InvalidArgument {
                launcher: LAUNCHER,
                detail: format!("{what} lives on device {ordinal}, launch requested on device {}", dev.ordinal()),
            });
        }
    }
    dev.bind_to_thread()?;
    let (src_ptr, src_guard) = src.device_ptr(stream);
    let (sink_ptr, sink_guard) = sink.device_ptr_mut(stream);
    // SAFETY: both are live allocations of `dev`'s context (checked above), current on this thread; the kernel
    // reads exactly src.len() bytes (a multiple of 16; cudarc allocations are 256-byte aligned) and writes one
    // u32 of the non-empty sink; the launch goes to that context's stream, which the guards order against.
    let status = unsafe {
        sys::lowbit_read_probe(
            src_ptr as *const c_void,
            src.len() as i64,
            sink_ptr as *mut u32,
            dev.info().sm_count as i32,
            stream.cu_stream().cast(),
        )
    };
    drop(sink_guard);
    drop(src_guard);
    check_with(status, LAUNCHER, || format!("bytes={}", src.len()))
}
