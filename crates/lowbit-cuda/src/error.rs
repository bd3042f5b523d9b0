//! [`CudaError`], the one error type of lowbit-cuda, and the mapping from the kernels' C status
//! ([`lowbit_status`]) to it.

use std::ffi::CStr;

use cudarc::driver::DriverError;
use lowbit_core::LowbitError;
use lowbit_kernels_sys as sys;
use sys::lowbit_status;

/// Everything that can go wrong on the GPU side of lowbit.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CudaError {
    /// No GPU can be used: no driver library, no device, an ordinal out of range, or a context
    /// that cannot be created. Tests turn this into a skip unless `LOWBIT_REQUIRE_GPU=1`.
    #[error("no usable CUDA GPU: {reason}")]
    NoGpu {
        /// What was missing, e.g. "libcuda.so(.1) could not be dlopen()ed".
        reason: String,
    },
    /// A launcher rejected the problem's sizes (`LOWBIT_ERR_SHAPE`).
    #[error("{launcher}: shape not supported: {detail}")]
    Shape {
        /// The C launcher, e.g. `lowbit_dequant_int_affine`.
        launcher: &'static str,
        /// The arguments it was given.
        detail: String,
    },
    /// A pointer or size does not meet a kernel's alignment (`LOWBIT_ERR_ALIGNMENT`).
    #[error("{launcher}: misaligned argument: {detail}")]
    Alignment {
        /// The C launcher.
        launcher: &'static str,
        /// The arguments it was given.
        detail: String,
    },
    /// No kernel is compiled for this combination (`LOWBIT_ERR_NO_KERNEL`).
    #[error("{launcher}: no kernel implementation for {detail}")]
    NoKernel {
        /// The C launcher.
        launcher: &'static str,
        /// The arguments it was given.
        detail: String,
    },
    /// A NULL pointer or an unknown enum value reached a launcher (`LOWBIT_ERR_INVALID_ARGUMENT`).
    #[error("{launcher}: invalid argument: {detail}")]
    InvalidArgument {
        /// The C launcher (or the Rust function) that rejected it.
        launcher: &'static str,
        /// What was wrong.
        detail: String,
    },
    /// The CUDA runtime inside the kernel library failed (`LOWBIT_ERR_CUDA`).
    #[error("{launcher}: CUDA error {code} ({name}): {message}")]
    Cuda {
        /// The C launcher.
        launcher: &'static str,
        /// The `cudaError_t` value.
        code: i32,
        /// Its symbolic name, e.g. `cudaErrorNoKernelImageForDevice`.
        name: String,
        /// Its description.
        message: String,
    },
    /// A status code this crate does not know (a kernel library newer than this crate).
    #[error("{launcher}: unknown lowbit status code {code}")]
    UnknownStatus {
        /// The C launcher.
        launcher: &'static str,
        /// The raw code.
        code: i32,
    },
    /// A buffer whose length does not match the problem.
    #[error("buffer {what}: expected {expected} elements, got {got}")]
    BufferSize {
        /// Which buffer.
        what: &'static str,
        /// Elements required.
        expected: usize,
        /// Elements given.
        got: usize,
    },
    /// libcublas (CUDA 13) could not be loaded from any of the usual places.
    #[error(
        "libcublas.so.13 not found (searched LOWBIT_CUBLAS_DIR, PyTorch's lib/, nvidia/cu13/lib under site-packages, /usr/local/cuda, ldconfig)"
    )]
    NoCublas,
    /// A cuBLAS call failed.
    #[error("cuBLAS error: {0:?}")]
    Cublas(#[from] cudarc::cublas::result::CublasError),
    /// A cuBLASLt call failed.
    #[error("cuBLASLt error: {0:?}")]
    CublasLt(#[from] cudarc::cublaslt::result::CublasError),
    /// A CUDA driver API call made through cudarc failed.
    #[error("CUDA driver error: {0}")]
    Driver(#[from] DriverError),
    /// The quantized weight (or another lowbit-core input) is invalid.
    #[error(transparent)]
    Core(#[from] LowbitError),
}

/// `Result` with [`CudaError`].
pub type Result<T> = std::result::Result<T, CudaError>;

/// Name and description of a `cudaError_t`, from the kernel library's own (static) runtime.
///
/// cudaError_t values are not driver `CUresult`s, so they must not be decoded with cudarc's
/// `DriverError`.
pub fn cuda_error_text(code: i32) -> (String, String) {
    // SAFETY: cudaGetErrorName / cudaGetErrorString accept any value (unknown ones give
    // "unrecognized error code") and return pointers to static NUL-terminated strings.
    unsafe {
        let name = CStr::from_ptr(sys::lowbit_cuda_error_name(code));
        let text = CStr::from_ptr(sys::lowbit_cuda_error_string(code));
        (name.to_string_lossy().into_owned(), text.to_string_lossy().into_owned())
    }
}

/// Maps a launcher's status to `Ok(())` or the matching [`CudaError`], naming the launcher.
pub fn check(status: lowbit_status, launcher: &'static str) -> Result<()> {
    check_with(status, launcher, || String::from("(arguments not recorded)"))
}

/// Like [`check`], with `detail` (evaluated only on failure) describing the arguments, e.g.
/// `"n=4096 k=11008 bits=4 group_len=128 dtype=f16"`.
pub fn check_with(status: lowbit_status, launcher: &'static str, detail: impl FnOnce() -> String) -> Result<()> {
    let code = status.code;
    let known = |c: sys::lowbit_status_code| code == c as i32;
    if known(sys::LOWBIT_OK) {
        return Ok(());
    }
    Err(if known(sys::LOWBIT_ERR_SHAPE) {
        CudaError::Shape { launcher, detail: detail() }
    } else if known(sys::LOWBIT_ERR_ALIGNMENT) {
        CudaError::Alignment { launcher, detail: detail() }
    } else if known(sys::LOWBIT_ERR_NO_KERNEL) {
        CudaError::NoKernel { launcher, detail: detail() }
    } else if known(sys::LOWBIT_ERR_INVALID_ARGUMENT) {
        CudaError::InvalidArgument { launcher, detail: detail() }
    } else if known(sys::LOWBIT_ERR_CUDA) {
        let (name, message) = cuda_error_text(status.cuda_error);
        CudaError::Cuda { launcher, code: status.cuda_error, name, message }
    } else {
        CudaError::UnknownStatus { launcher, code }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: sys::lowbit_status_code, cuda_error: i32) -> lowbit_status {
        lowbit_status { code: code as i32, cuda_error }
    }

    #[test]
    fn ok_maps_to_ok() {
        check(status(sys::LOWBIT_OK, 0), "lowbit_dequant_lut").unwrap();
    }

    #[test]
    fn every_code_maps_to_its_variant_and_names_the_launcher() {
        let l = "lowbit_dequant_int_affine";
        let d = || "n=1 k=7 bits=4 group_len=3".to_string();
        let e = check_with(status(sys::LOWBIT_ERR_SHAPE, 0), l, d).unwrap_err();
        assert!(matches!(e, CudaError::Shape { launcher, .. } if launcher == l));
        assert_eq!(e.to_string(), "lowbit_dequant_int_affine: shape not supported: n=1 k=7 bits=4 group_len=3");
        let e = check_with(status(sys::LOWBIT_ERR_ALIGNMENT, 0), l, d).unwrap_err();
        assert!(matches!(e, CudaError::Alignment { .. }), "{e}");
        let e = check_with(status(sys::LOWBIT_ERR_NO_KERNEL, 0), l, d).unwrap_err();
        assert!(matches!(e, CudaError::NoKernel { .. }), "{e}");
        assert!(e.to_string().contains("no kernel implementation for n=1"), "{e}");
        let e = check_with(status(sys::LOWBIT_ERR_INVALID_ARGUMENT, 0), l, d).unwrap_err();
        assert!(matches!(e, CudaError::InvalidArgument { .. }), "{e}");
        let e = check(lowbit_status { code: 99, cuda_error: 0 }, l).unwrap_err();
        assert!(matches!(e, CudaError::UnknownStatus { code: 99, .. }), "{e}");
    }

    #[test]
    fn cuda_errors_carry_the_runtime_name_and_text() {
        // 209 = cudaErrorNoKernelImageForDevice: what an unsupported GPU produces at launch.
        let e = check(status(sys::LOWBIT_ERR_CUDA, 209), "lowbit_dequant_mixed").unwrap_err();
        match &e {
            CudaError::Cuda { launcher, code, name, message } => {
                assert_eq!(*launcher, "lowbit_dequant_mixed");
                assert_eq!(*code, 209);
                assert_eq!(name, "cudaErrorNoKernelImageForDevice");
                assert!(!message.is_empty());
            }
            other => panic!("expected CudaError::Cuda, got {other:?}"),
        }
        assert!(e.to_string().starts_with("lowbit_dequant_mixed: CUDA error 209 (cudaErrorNoKernelImageForDevice)"));
    }

    #[test]
    fn core_errors_convert() {
        let core = LowbitError::KNotDivisible { k: 100, group: 32 };
        let e: CudaError = core.into();
        assert!(matches!(e, CudaError::Core(LowbitError::KNotDivisible { k: 100, group: 32 })));
        assert_eq!(e.to_string(), "K = 100 is not divisible by the group size 32");
    }
}
