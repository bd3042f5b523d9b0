//! # lowbit-cuda
//!
//! The safe GPU layer of lowbit. Three tiers, as in cudarc:
//!
//! 1. **raw**: `lowbit-kernels-sys`, the bindgen declarations of `kernels/include/lowbit_kernels.h`
//!    (asynchronous `extern "C"` launchers returning a `lowbit_status`);
//! 2. **result**: [`error::check`] / [`error::check_with`] turn every status into
//!    `Result<(), CudaError>`, naming the launcher and its arguments;
//! 3. **safe**: [`Device`] (context, stream, cached properties), [`DeviceTensor`] and the
//!    upload/download helpers in [`buffer`], and the kernel families, so far [`dequant`]
//!    (every weight format of `docs/formats.md` to f16 / bf16, bit-exact with lowbit-core).
//!
//! cudarc owns devices, memory and streams; the kernels are a static library linked into this
//! crate (route A of the toolchain notes). Nothing here needs a GPU to *build*, and with no GPU
//! [`Device::open`] returns [`CudaError::NoGpu`] instead of panicking.
//!
//! ```no_run
//! use half::f16;
//! use lowbit_core::{WeightScheme, quantize};
//! use lowbit_cuda::{Device, dequantize_to_host};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let w = ndarray::Array2::<f32>::ones((256, 4096));
//! let q = quantize(w.view(), &"w4-int-g128".parse::<WeightScheme>()?)?;
//! let dev = Device::open(0)?;
//! let out: Vec<f16> = dequantize_to_host(&dev, &q)?;
//! assert_eq!(out, q.dequantize_f16());
//! # Ok(())
//! # }
//! ```

pub mod bipolar;
pub mod buffer;
pub mod cublas;
pub mod cublaslt;
pub mod dequant;
pub mod device;
pub mod error;
pub mod int8;
mod launch;
pub mod probe;
pub mod ssd;
pub mod ssm;
pub mod weight_only;

pub use bipolar::{BipConfig, BipMapping, BipPlan, BipPlanePath, BipolarActivations, BipolarGemm};
pub use buffer::{DeviceTensor, OutDtype, OutElement, download, upload};
pub use dequant::{DeviceWeight, dequantize, dequantize_emulated, dequantize_to_host};
pub use device::{Device, DeviceInfo, device_count, gpu_available};
pub use error::{CudaError, Result};
pub use int8::{I8Config, I8Epilogue, I8Path, I8Plan, Int8Gemm, RowScale};
pub use weight_only::{DEQUANT_CUBLAS_MIN_M, GemmConfig, GemmPath, GemmPlan, WeightOnlyGemm};

/// `nvcc --version`'s release line of the compiler that built the kernels.
pub const NVCC_VERSION: &str = lowbit_kernels_sys::NVCC_VERSION;

/// GPU targets compiled into the kernel library (e.g. `"sm_80,sm_89,sm_90a,compute_80"`).
pub const CUDA_ARCHS: &str = lowbit_kernels_sys::CUDA_ARCHS;

/// CUDA runtime version statically linked into the kernel library (e.g. 13000).
pub fn kernels_cudart_version() -> i32 {
    // SAFETY: returns a compile-time constant; no CUDA call is made.
    unsafe { lowbit_kernels_sys::lowbit_kernels_cudart_version() }
}

/// Version of the kernels' C ABI (`LOWBIT_KERNELS_ABI_VERSION`) compiled into the library.
pub fn kernels_abi_version() -> i32 {
    // SAFETY: returns a compile-time constant; no CUDA call is made.
    unsafe { lowbit_kernels_sys::lowbit_kernels_abi_version() }
}
