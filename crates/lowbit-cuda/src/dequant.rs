//! GPU dequantization of every lowbit weight format to f16 / bf16 (`kernels/dequant/`).
//!
//! The output is bit-identical to lowbit-core's CPU [`QuantizedWeight::dequantize_f16`] /
//! [`QuantizedWeight::dequantize_bf16`]: the kernels perform exactly the f32 arithmetic that
//! `docs/formats.md` fixes, then one round-to-nearest-even conversion.
//!
//! Entry points, from most to least convenient:
//! - [`dequantize_to_host`]: weight in, `Vec<f16>` / `Vec<bf16>` out;
//! - [`dequantize`]: weight in, [`DeviceTensor`] out (stays on the GPU);
//! - [`DeviceWeight`]: upload once, then [`DeviceWeight::dequantize_into`] a tensor you own, or
//!   [`DeviceWeight::dequantize_raw`] into any device pointer on any stream (e.g. PyTorch's);
//! - [`dequantize_emulated`]: the kernels' own per-thread code run on the CPU, no GPU needed.
//!
//! Every path calls the weight's `validate()` first, so an inconsistent weight is a typed
//! [`CudaError::Core`] error before anything reaches a kernel.

use std::ffi::c_void;

use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, SyncOnDrop};
use half::f16;
use lowbit_core::{QuantizedWeight, WeightScheme};
use lowbit_kernels_sys as sys;

use crate::buffer::{DeviceTensor, OutDtype, OutElement, upload};
use crate::device::Device;
use crate::error::{CudaError, Result, check_with};

/// Where a launch runs: the GPU (on a stream) or the host emulation.
#[derive(Clone, Copy)]
enum Target {
    Gpu { stream: *mut c_void },
    Host,
}

/// Format-specific pointers of one launch (device addresses for the GPU, host ones for the
/// emulation). Null optional pointers mean "absent" exactly as in `lowbit_kernels.h`.
#[derive(Clone, Copy)]
enum Ptrs {
    Int { codes: *const u32, scales: *const u16, zeros: *const u8, g_idx: *const u32 },
    Bipolar { planes: *const u32, scales: *const f32, offsets: *const f32 },
    Mixed { codes: *const u32, group_scales: *const u8, selectors: *const u8, channel_scales: *const u16 },
    Lut { codes: *const u32, lut: *const f32, scales: *const u16 },
}

/// Everything a launcher takes except the output.
#[derive(Clone, Copy)]
struct Launch {
    ptrs: Ptrs,
    n: i64,
    k: i64,
    bits: i32,
    group_len: i64,
}

/// `(n, k, bits, group_len)` of a weight, in the C ABI's integer types.
fn geometry(w: &QuantizedWeight) -> Result<(i64, i64, i32, i64)> {
    let (n, k, bits, group_len) = match w {
        QuantizedWeight::Int(w) => (w.n, w.k, w.bits, w.granularity.group_len(w.k)),
        QuantizedWeight::Bipolar(w) => (w.n, w.k, w.bits, w.granularity.group_len(w.k)),
        QuantizedWeight::Mixed(w) => (w.n, w.k, w.bits, w.group),
        QuantizedWeight::Lut(w) => (w.n, w.k, w.bits, w.granularity.group_len(w.k)),
    };
    let launcher = launcher_name(w);
    let too_big = || CudaError::Shape {
        launcher,
        detail: format!("n={n} k={k}: the dequantizer supports k <= 2^31 - 1 and n * ceil(k/8) <= 2^32 - 1"),
    };
    let chunks = n.checked_mul(k.div_ceil(8)).ok_or_else(too_big)?;
    if k > i32::MAX as usize || chunks > u32::MAX as usize {
        return Err(too_big());
    }
    // Both fit in i64 now (k < 2^31, n <= chunks < 2^32).
    Ok((n as i64, k as i64, bits as i32, group_len as i64))
}

/// The GPU launcher that handles `w`'s format (for error messages before a launch).
fn launcher_name(w: &QuantizedWeight) -> &'static str {
    match w {
        QuantizedWeight::Int(_) => "lowbit_dequant_int_affine",
        QuantizedWeight::Bipolar(_) => "lowbit_dequant_bipolar",
        QuantizedWeight::Mixed(_) => "lowbit_dequant_mixed",
        QuantizedWeight::Lut(_) => "lowbit_dequant_lut",
    }
}

impl Launch {
    fn launcher(&self, target: Target) -> &'static str {
        let host = matches!(target, Target::Host);
        match (self.ptrs, host) {
            (Ptrs::Int { .. }, false) => "lowbit_dequant_int_affine",
            (Ptrs::Bipolar { .. }, false) => "lowbit_dequant_bipolar",
            (Ptrs::Mixed { .. }, false) => "lowbit_dequant_mixed",
            (Ptrs::Lut { .. }, false) => "lowbit_dequant_lut",
            (Ptrs::Int { .. }, true) => "lowbit_dequant_int_affine_host",
            (Ptrs::Bipolar { .. }, true) => "lowbit_dequant_bipolar_host",
            (Ptrs::Mixed { .. }, true) => "lowbit_dequant_mixed_host",
            (Ptrs::Lut { .. }, true) => "lowbit_dequant_lut_host",
        }
    }

    /// Calls the launcher (or its host emulation) and maps the status.
    ///
    /// # Safety
    /// Every non-null pointer in `self.ptrs` and `out` must be valid for the sizes the launcher
    /// documents (`lowbit_kernels.h`) for `self`'s `n, k, bits, group_len`: device memory of the
    /// context current on this thread for [`Target::Gpu`] (and `stream` a stream of that context),
    /// host memory for [`Target::Host`]. `out` (`n * k` 16-bit elements) must not be read or
    /// written by anything else until the work is done.
    unsafe fn run(&self, out: *mut c_void, dtype: OutDtype, target: Target) -> Result<()> {
        let Launch { ptrs, n, k, bits, group_len } = *self;
        let dt = dtype.to_ffi();
        // SAFETY: forwarded from this function's contract; the C side validates sizes, pointer
        // nullness and alignment before touching anything.
        let status = unsafe {
            match (ptrs, target) {
                (Ptrs::Int { codes, scales, zeros, g_idx }, Target::Gpu { stream }) => {
                    sys::lowbit_dequant_int_affine(codes, scales, zeros, g_idx, n, k, bits, group_len, out, dt, stream)
                }
                (Ptrs::Int { codes, scales, zeros, g_idx }, Target::Host) => {
                    sys::lowbit_dequant_int_affine_host(codes, scales, zeros, g_idx, n, k, bits, group_len, out, dt)
                }
                (Ptrs::Bipolar { planes, scales, offsets }, Target::Gpu { stream }) => {
                    sys::lowbit_dequant_bipolar(planes, scales, offsets, n, k, bits, group_len, out, dt, stream)
                }
                (Ptrs::Bipolar { planes, scales, offsets }, Target::Host) => {
                    sys::lowbit_dequant_bipolar_host(planes, scales, offsets, n, k, bits, group_len, out, dt)
                }
                (Ptrs::Mixed { codes, group_scales, selectors, channel_scales }, Target::Gpu { stream }) => {
                    sys::lowbit_dequant_mixed(
                        codes,
                        group_scales,
                        selectors,
                        channel_scales,
                        n,
                        k,
                        bits,
                        group_len,
                        out,
                        dt,
                        stream,
                    )
                }
                (Ptrs::Mixed { codes, group_scales, selectors, channel_scales }, Target::Host) => {
                    sys::lowbit_dequant_mixed_host(
                        codes,
                        group_scales,
                        selectors,
                        channel_scales,
                        n,
                        k,
                        bits,
                        group_len,
                        out,
                        dt,
                    )
                }
                (Ptrs::Lut { codes, lut, scales }, Target::Gpu { stream }) => {
                    sys::lowbit_dequant_lut(codes, lut, scales, n, k, bits, group_len, out, dt, stream)
                }
                (Ptrs::Lut { codes, lut, scales }, Target::Host) => {
                    sys::lowbit_dequant_lut_host(codes, lut, scales, n, k, bits, group_len, out, dt)
                }
            }
        };
        check_with(status, self.launcher(target), || {
            format!("n={n} k={k} bits={bits} group_len={group_len} dtype={dtype}")
        })
    }
}

/// `f16` slice as the `u16` pattern pointer the C ABI takes (`half::f16` is `repr(transparent)`
/// over `u16`).
fn f16_ptr(v: &[f16]) -> *const u16 {
    v.as_ptr().cast()
}

// ---------------------------------------------------------------------------------------------
// Host emulation
// ---------------------------------------------------------------------------------------------

/// Runs the dequantization kernels' per-thread code on the CPU (the `*_host` entry points of
/// `lowbit_kernels.h`) and returns the row-major `[N, K]` result.
///
/// It needs no GPU or driver. It exists to check, on any machine, that the kernel code (bit
/// extraction, group walk, decode tables, rounding, vector and scalar stores) agrees bit for bit
/// with lowbit-core; it is single-threaded and not meant as a fast CPU path.
pub fn dequantize_emulated<T: OutElement>(w: &QuantizedWeight) -> Result<Vec<T>> {
    w.validate()?;
    let (n, k, bits, group_len) = geometry(w)?;
    let ptrs = match w {
        QuantizedWeight::Int(w) => Ptrs::Int {
            codes: w.codes.as_ptr(),
            scales: f16_ptr(&w.scales),
            zeros: w.zeros.as_ptr(),
            g_idx: w.g_idx.as_ref().map_or(std::ptr::null(), |g| g.as_ptr()),
        },
        QuantizedWeight::Bipolar(w) => Ptrs::Bipolar {
            planes: w.planes.as_ptr(),
            scales: w.scales.as_ptr(),
            offsets: w.offsets.as_ref().map_or(std::ptr::null(), |o| o.as_ptr()),
        },
        QuantizedWeight::Mixed(w) => Ptrs::Mixed {
            codes: w.codes.as_ptr(),
            group_scales: w.group_scales.as_ptr(),
            selectors: w.selectors.as_ptr(),
            channel_scales: f16_ptr(&w.channel_scales),
        },
        QuantizedWeight::Lut(w) => {
            Ptrs::Lut { codes: w.codes.as_ptr(), lut: w.lut.as_ptr(), scales: f16_ptr(&w.scales) }
        }
    };
    let launch = Launch { ptrs, n, k, bits, group_len };
    let mut out = vec![0u16; (n * k) as usize];
    // SAFETY: `validate()` checked every array's length against (n, k, bits, group); the pointers
    // borrow `w`'s vectors, alive for this call; `out` holds n*k elements and is ours alone.
    unsafe { launch.run(out.as_mut_ptr().cast(), T::DTYPE, Target::Host)? };
    Ok(out.into_iter().map(T::from_bits).collect())
}

// ---------------------------------------------------------------------------------------------
// Device weights and GPU launches
// ---------------------------------------------------------------------------------------------

/// The device copies of one weight's arrays.
#[derive(Debug)]
enum DeviceArrays {
    Int {
        codes: CudaSlice<u32>,
        scales: CudaSlice<f16>,
        zeros: CudaSlice<u8>,
        g_idx: Option<CudaSlice<u32>>,
    },
    Bipolar {
        planes: CudaSlice<u32>,
        scales: CudaSlice<f32>,
        offsets: Option<CudaSlice<f32>>,
    },
    Mixed {
        codes: CudaSlice<u32>,
        group_scales: CudaSlice<u8>,
        selectors: CudaSlice<u8>,
        channel_scales: CudaSlice<f16>,
    },
    Lut {
        codes: CudaSlice<u32>,
        lut: CudaSlice<f32>,
        scales: CudaSlice<f16>,
    },
}

/// A validated quantized weight uploaded to one device, ready to be dequantized any number of
/// times.
#[derive(Debug)]
pub struct DeviceWeight {
    arrays: DeviceArrays,
    scheme: WeightScheme,
    ordinal: usize,
    n: i64,
    k: i64,
    bits: i32,
    group_len: i64,
}

impl DeviceWeight {
    /// Validates `w` (a typed [`CudaError::Core`] error if inconsistent) and uploads its arrays
    /// to `dev`. Returns once the copies are complete, so the weight may be used from any stream.
    pub fn upload(dev: &Device, w: &QuantizedWeight) -> Result<Self> {
        w.validate()?;
        let (n, k, bits, group_len) = geometry(w)?;
        let arrays = match w {
            QuantizedWeight::Int(w) => DeviceArrays::Int {
                codes: upload(dev, &w.codes)?,
                scales: upload(dev, &w.scales)?,
                zeros: upload(dev, &w.zeros)?,
                g_idx: w.g_idx.as_ref().map(|g| upload(dev, g)).transpose()?,
            },
            QuantizedWeight::Bipolar(w) => DeviceArrays::Bipolar {
                planes: upload(dev, &w.planes)?,
                scales: upload(dev, &w.scales)?,
                offsets: w.offsets.as_ref().map(|o| upload(dev, o)).transpose()?,
            },
            QuantizedWeight::Mixed(w) => DeviceArrays::Mixed {
                codes: upload(dev, &w.codes)?,
                group_scales: upload(dev, &w.group_scales)?,
                selectors: upload(dev, &w.selectors)?,
                channel_scales: upload(dev, &w.channel_scales)?,
            },
            QuantizedWeight::Lut(w) => DeviceArrays::Lut {
                codes: upload(dev, &w.codes)?,
                lut: upload(dev, &w.lut)?,
                scales: upload(dev, &w.scales)?,
            },
        };
        // Make the uploads visible to streams other than the device's own (dequantize_raw).
        dev.synchronize()?;
        Ok(Self { arrays, scheme: w.scheme(), ordinal: dev.ordinal(), n, k, bits, group_len })
    }

    /// `(N, K)` of the weight, i.e. of its dequantized output.
    pub fn shape(&self) -> (usize, usize) {
        (self.n as usize, self.k as usize)
    }

    /// The weight's scheme (kind, bits, granularity).
    pub fn scheme(&self) -> WeightScheme {
        self.scheme
    }

    /// Ordinal of the device holding the arrays.
    pub fn device_ordinal(&self) -> usize {
        self.ordinal
    }

    /// Device pointers of the arrays, each with the guard cudarc uses to order the access on
    /// `stream` (kept alive until the launch is enqueued).
    fn device_launch<'a>(&'a self, stream: &'a cudarc::driver::CudaStream, guards: &mut Vec<SyncOnDrop<'a>>) -> Launch {
        let mut ptr = |p: (u64, SyncOnDrop<'a>)| {
            guards.push(p.1);
            p.0
        };
        let ptrs = match &self.arrays {
            DeviceArrays::Int { codes, scales, zeros, g_idx } => Ptrs::Int {
                codes: ptr(codes.device_ptr(stream)) as *const u32,
                scales: ptr(scales.device_ptr(stream)) as *const u16,
                zeros: ptr(zeros.device_ptr(stream)) as *const u8,
                g_idx: g_idx.as_ref().map_or(std::ptr::null(), |g| ptr(g.device_ptr(stream)) as *const u32),
            },
            DeviceArrays::Bipolar { planes, scales, offsets } => Ptrs::Bipolar {
                planes: ptr(planes.device_ptr(stream)) as *const u32,
                scales: ptr(scales.device_ptr(stream)) as *const f32,
                offsets: offsets.as_ref().map_or(std::ptr::null(), |o| ptr(o.device_ptr(stream)) as *const f32),
            },
            DeviceArrays::Mixed { codes, group_scales, selectors, channel_scales } => Ptrs::Mixed {
                codes: ptr(codes.device_ptr(stream)) as *const u32,
                group_scales: ptr(group_scales.device_ptr(stream)) as *const u8,
                selectors: ptr(selectors.device_ptr(stream)) as *const u8,
                channel_scales: ptr(channel_scales.device_ptr(stream)) as *const u16,
            },
            DeviceArrays::Lut { codes, lut, scales } => Ptrs::Lut {
                codes: ptr(codes.device_ptr(stream)) as *const u32,
                lut: ptr(lut.device_ptr(stream)) as *const f32,
                scales: ptr(scales.device_ptr(stream)) as *const u16,
            },
        };
        Launch { ptrs, n: self.n, k: self.k, bits: self.bits, group_len: self.group_len }
    }

    fn check_device(&self, dev: &Device) -> Result<()> {
        dev.check_owner(self.ordinal, "DeviceWeight")
    }

    /// Dequantizes into `out` (shape `[N, K]`, its own dtype) on `dev`'s stream. Asynchronous:
    /// download `out` (or synchronize the device) to wait for it.
    pub fn dequantize_into(&self, dev: &Device, out: &mut DeviceTensor) -> Result<()> {
        self.check_device(dev)?;
        if out.rows() != self.n as usize || out.cols() != self.k as usize {
            return Err(CudaError::BufferSize {
                what: "dequantize output",
                expected: (self.n * self.k) as usize,
                got: out.len(),
            });
        }
        dev.bind_to_thread()?;
        let stream = dev.stream();
        let dtype = out.dtype();
        let mut guards = Vec::with_capacity(4);
        let launch = self.device_launch(stream, &mut guards);
        let (out_ptr, out_guard) = out.data_mut().device_ptr_mut(stream);
        // SAFETY: the arrays were validated against (n, k, bits, group) before upload and live as
        // long as `self`; `out` holds exactly n*k elements (checked above) and is borrowed
        // mutably; all are allocations of `dev`'s context, which is current on this thread, and
        // the launch goes to that context's stream.
        unsafe { launch.run(out_ptr as *mut c_void, dtype, Target::Gpu { stream: stream.cu_stream().cast() }) }?;
        drop(out_guard);
        drop(guards);
        Ok(())
    }

    /// Dequantizes into a caller-owned device buffer on a caller-owned stream, e.g. a PyTorch
    /// tensor's `data_ptr()` on `torch.cuda.current_stream().cuda_stream`.
    ///
    /// The device's primary context is made current for the call and the thread's previous
    /// current context is restored afterwards, so a host framework's device state is untouched.
    /// The launch is asynchronous on `stream`; nothing is synchronized.
    ///
    /// # Safety
    /// - `out` must be the device address of at least `N * K` writable 16-bit elements allocated
    ///   in `dev`'s primary context (the one PyTorch and the CUDA runtime use), not accessed by
    ///   other work until this launch has completed on `stream`;
    /// - `stream` must be a valid `CUstream` / `cudaStream_t` of that context, or null for the
    ///   legacy default stream, and stay valid until the launch has completed;
    /// - `self` must not be dropped before the launch has completed on `stream` (its arrays are
    ///   freed on the device's own stream, which is not ordered with `stream`).
    pub unsafe fn dequantize_raw(&self, dev: &Device, out: u64, dtype: OutDtype, stream: *mut c_void) -> Result<()> {
        self.check_device(dev)?;
        if out == 0 {
            return Err(CudaError::InvalidArgument {
                launcher: "DeviceWeight::dequantize_raw",
                detail: "null output pointer".into(),
            });
        }
        let previous = cudarc::driver::result::ctx::get_current()?;
        dev.bind_to_thread()?;
        let mut guards = Vec::with_capacity(4);
        let launch = self.device_launch(dev.stream(), &mut guards);
        // SAFETY: the weight's arrays are valid for (n, k, bits, group) (validated before upload);
        // `out` and `stream` are valid per this function's contract; the context is current.
        let result = unsafe { launch.run(out as *mut c_void, dtype, Target::Gpu { stream }) };
        drop(guards);
        if let Some(prev) = previous
            && prev != dev.context().cu_ctx()
        {
            // SAFETY: `prev` was the current context of this thread a moment ago and is still
            // alive (its owner made it current and has not been given control since).
            unsafe { cudarc::driver::result::ctx::set_current(prev) }?;
        }
        result
    }
}

/// Dequantizes `w` on `dev` into a new `[N, K]` [`DeviceTensor`] of `dtype`.
///
/// Validates `w`, uploads it, launches on the device's stream and returns without waiting (the
/// temporary weight arrays are freed in stream order after the kernel).
pub fn dequantize(dev: &Device, w: &QuantizedWeight, dtype: OutDtype) -> Result<DeviceTensor> {
    let dw = DeviceWeight::upload(dev, w)?;
    let (n, k) = dw.shape();
    let mut out = DeviceTensor::zeros(dev, n, k, dtype)?;
    dw.dequantize_into(dev, &mut out)?;
    Ok(out)
}

/// Dequantizes `w` on `dev` and downloads the result: row-major `[N, K]` `half::f16` or
/// `half::bf16`, bit-identical to `w.dequantize_f16()` / `w.dequantize_bf16()`.
pub fn dequantize_to_host<T: OutElement>(dev: &Device, w: &QuantizedWeight) -> Result<Vec<T>> {
    dequantize(dev, w, T::DTYPE)?.to_host::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::bf16;
    use lowbit_core::{Granularity, IntAffineWeight, LowbitError};

    fn small_int() -> QuantizedWeight {
        let w = ndarray::Array2::from_shape_fn((3, 64), |(r, c)| ((r * 64 + c) as f32 * 0.37).sin());
        QuantizedWeight::Int(IntAffineWeight::quantize(w.view(), 4, false, Granularity::Group(32)).unwrap())
    }

    #[test]
    fn emulation_matches_cpu_for_a_small_int_weight() {
        let w = small_int();
        let got: Vec<f16> = dequantize_emulated(&w).unwrap();
        assert_eq!(got, w.dequantize_f16());
        let got: Vec<bf16> = dequantize_emulated(&w).unwrap();
        assert_eq!(got, w.dequantize_bf16());
    }

    #[test]
    fn inconsistent_weight_is_rejected_before_any_launch() {
        let mut w = small_int();
        if let QuantizedWeight::Int(iw) = &mut w {
            iw.scales.pop();
        }
        let e = dequantize_emulated::<f16>(&w).unwrap_err();
        assert!(matches!(e, CudaError::Core(LowbitError::ShapeMismatch { .. })), "{e}");
    }
}
