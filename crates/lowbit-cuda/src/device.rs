//! Device discovery and the [`Device`] handle: a CUDA context, its stream and cached properties.
//!
//! "No usable GPU" is a typed error ([`CudaError::NoGpu`]), never a panic: cudarc's lazy loader
//! panics when libcuda is missing, so [`Device::open`] first checks that the library can be
//! loaded at all, then asks the driver for its devices, then creates the context.

use std::sync::Arc;

use cudarc::driver::sys::CUdevice_attribute;
use cudarc::driver::{CudaContext, CudaStream};

use crate::error::{CudaError, Result};

/// Properties of a device, queried once when it is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceInfo {
    /// CUDA device ordinal.
    pub ordinal: usize,
    /// Marketing name, e.g. "NVIDIA H100 80GB HBM3".
    pub name: String,
    /// Compute capability `(major, minor)`, e.g. `(9, 0)`.
    pub compute_capability: (u32, u32),
    /// Streaming multiprocessors.
    pub sm_count: u32,
    /// L2 cache size in bytes.
    pub l2_cache_bytes: usize,
    /// Total device memory in bytes.
    pub total_memory_bytes: usize,
    /// Largest dynamic shared memory a block can opt into, in bytes.
    pub max_shared_memory_per_block_optin: usize,
    /// CUDA driver version, e.g. 13000 for a CUDA 13.0 driver.
    pub driver_version: i32,
    /// CUDA runtime version the kernel library was built with (statically linked), e.g. 13000.
    pub kernels_cudart_version: i32,
}

impl DeviceInfo {
    /// `"sm_90"`-style name of the compute capability.
    pub fn sm_name(&self) -> String {
        format!("sm_{}{}", self.compute_capability.0, self.compute_capability.1)
    }
}

/// An opened CUDA device: its primary context, the stream lowbit launches on, and its
/// [`DeviceInfo`].
///
/// The context is the device's *primary* context, the one the CUDA runtime (and so PyTorch) uses,
/// so pointers and streams can be shared with other runtime users in the same process. The stream
/// is the context's legacy default stream (handle 0), which orders lowbit's copies and launches
/// with each other and with other legacy-stream work.
#[derive(Debug, Clone)]
pub struct Device {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    info: DeviceInfo,
}

/// Whether the CUDA driver library can be loaded at all (no driver call is made).
fn driver_library_present() -> bool {
    // SAFETY: `is_culib_present` only tries `dlopen` on the candidate libcuda names (through
    // libloading) and closes what it opened; it calls no CUDA function and has no other side
    // effect. Loading libcuda runs its initialisers, which any CUDA use does anyway. It is
    // `unsafe` only because loading a shared library runs foreign code.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// Number of CUDA devices the driver reports, or [`CudaError::NoGpu`] when there is no driver or
/// `cuInit` fails (e.g. `CUDA_ERROR_NO_DEVICE` with `CUDA_VISIBLE_DEVICES=`).
pub fn device_count() -> Result<usize> {
    if !driver_library_present() {
        return Err(CudaError::NoGpu {
            reason: "libcuda.so(.1) could not be dlopen()ed - no NVIDIA driver installed or \
                     visible"
                .into(),
        });
    }
    let n = CudaContext::device_count()
        .map_err(|e| CudaError::NoGpu { reason: format!("cuInit / cuDeviceGetCount failed: {e}") })?;
    Ok(usize::try_from(n).unwrap_or(0))
}

/// Whether a usable CUDA GPU is present (device 0 can be opened). Never panics.
pub fn gpu_available() -> bool {
    Device::open(0).is_ok()
}

impl Device {
    /// Opens device `ordinal`: driver library, device count, primary context, properties.
    ///
    /// Returns [`CudaError::NoGpu`] when any of these is missing, with the reason.
    pub fn open(ordinal: usize) -> Result<Self> {
        let count = device_count()?;
        if count == 0 {
            return Err(CudaError::NoGpu {
                reason: "the CUDA driver reports no devices (check CUDA_VISIBLE_DEVICES)".into(),
            });
        }
        if ordinal >= count {
            return Err(CudaError::NoGpu {
                reason: format!("device ordinal {ordinal} requested, but only {count} device(s)"),
            });
        }
        let ctx = CudaContext::new(ordinal)
            .map_err(|e| CudaError::NoGpu { reason: format!("cannot create a context on device {ordinal}: {e}") })?;
        let info = query_info(&ctx)?;
        let stream = ctx.default_stream();
        Ok(Self { ctx, stream, info })
    }

    /// The cudarc context (the device's primary context).
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream lowbit's safe API launches on and copies through.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// Cached device properties.
    pub fn info(&self) -> &DeviceInfo {
        &self.info
    }

    /// CUDA device ordinal.
    pub fn ordinal(&self) -> usize {
        self.info.ordinal
    }

    /// `Ok` when data that lives on device `owner` may be used on this device; otherwise the typed error every
    /// resident weight (dequantizer and GEMM families) reports, naming `launcher` and both ordinals.
    pub fn check_owner(&self, owner: usize, launcher: &'static str) -> Result<()> {
        if self.ordinal() != owner {
            return Err(CudaError::InvalidArgument {
                launcher,
                detail: format!("weight lives on device {owner}, launch requested on device {}", self.ordinal()),
            });
        }
        Ok(())
    }

    /// Makes this device's context current on the calling thread (the kernel library's runtime
    /// launches into the current context).
    pub fn bind_to_thread(&self) -> Result<()> {
        self.ctx.bind_to_thread()?;
        Ok(())
    }

    /// Blocks until all work queued on [`Device::stream`] has finished, and surfaces any
    /// asynchronous kernel error.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize()?;
        Ok(())
    }
}

fn query_info(ctx: &Arc<CudaContext>) -> Result<DeviceInfo> {
    let attr = |a: CUdevice_attribute| -> Result<i32> { Ok(ctx.attribute(a)?) };
    let (major, minor) = ctx.compute_capability()?;
    let mut driver_version = 0i32;
    // SAFETY: cuDriverGetVersion writes one int through a valid pointer; libcuda is loaded (the
    // context exists).
    unsafe { cudarc::driver::sys::cuDriverGetVersion(&mut driver_version) }.result()?;
    let to_u32 = |v: i32| u32::try_from(v).unwrap_or(0);
    let to_usize = |v: i32| usize::try_from(v).unwrap_or(0);
    Ok(DeviceInfo {
        ordinal: ctx.ordinal(),
        name: ctx.name()?,
        compute_capability: (to_u32(major), to_u32(minor)),
        sm_count: to_u32(attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT)?),
        l2_cache_bytes: to_usize(attr(CUdevice_attribute::CU_DEVICE_ATTRIBUTE_L2_CACHE_SIZE)?),
        total_memory_bytes: ctx.total_mem()?,
        max_shared_memory_per_block_optin: to_usize(attr(
            CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN,
        )?),
        driver_version,
        kernels_cudart_version: crate::kernels_cudart_version(),
    })
}
