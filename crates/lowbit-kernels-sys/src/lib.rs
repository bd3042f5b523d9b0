//! Raw FFI to lowbit's CUDA kernels. No logic lives here.
//!
//! `build.rs` compiles every `kernels/**/*.cu` with nvcc into the static library
//! `liblowbit_kernels.a` (linked with the static CUDA runtime) and runs bindgen on the one C
//! header, `kernels/include/lowbit_kernels.h`, whose doc comments appear on the items below.
//! Every launcher returns a [`lowbit_status`]; the safe layer, `lowbit-cuda`, turns it into a
//! `Result` and guarantees the pointer and size contracts that make the calls sound.
//!
//! Building needs nvcc (CUDA 13.0) and libclang; `scripts/setup` installs both into `.tools/`.
//! `LOWBIT_CUDA_ARCHS` (e.g. `sm_90a`) narrows the compiled GPU targets for quick dev builds.
#![allow(non_camel_case_types, non_upper_case_globals, non_snake_case, missing_docs)]
#![allow(clippy::all, clippy::undocumented_unsafe_blocks)]
// The doc comments come verbatim from the C header, where `[n, k]` is a shape, not a link.
#![allow(rustdoc::broken_intra_doc_links, rustdoc::invalid_html_tags, rustdoc::bare_urls)]

include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// `nvcc --version`'s release line for the compiler that built the kernels,
/// e.g. `"Cuda compilation tools, release 13.0, V13.0.88"`.
pub const NVCC_VERSION: &str = env!("LOWBIT_NVCC_VERSION");

/// The GPU targets compiled in (`LOWBIT_CUDA_ARCHS` or the default
/// `"sm_80,sm_89,sm_90a,compute_80"`).
pub const CUDA_ARCHS: &str = env!("LOWBIT_CUDA_ARCHS");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abi_and_runtime_versions() {
        // SAFETY: pure functions returning compile-time constants; no CUDA call is made.
        let (abi, cudart) = unsafe { (lowbit_kernels_abi_version(), lowbit_kernels_cudart_version()) };
        assert_eq!(abi, LOWBIT_KERNELS_ABI_VERSION as i32);
        assert_eq!(cudart / 1000, 13, "built against CUDA 13.x, got {cudart}");
        assert!(NVCC_VERSION.contains("release 13."), "{NVCC_VERSION}");
        assert!(!CUDA_ARCHS.is_empty());
    }

    #[test]
    fn launcher_rejects_null_pointers_before_any_cuda_call() {
        let mut out = [0u16; 8];
        // SAFETY: a NULL `codes` is rejected by the host-side validation before any pointer is
        // dereferenced or any CUDA runtime call is made; `out` is a valid host buffer.
        let st = unsafe {
            lowbit_dequant_int_affine(
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                std::ptr::null(),
                1,
                8,
                4,
                8,
                out.as_mut_ptr().cast(),
                LOWBIT_DTYPE_F16 as i32,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(st.code, LOWBIT_ERR_INVALID_ARGUMENT as i32);
        assert_eq!(st.cuda_error, 0);
    }

    #[test]
    fn error_names_come_from_the_static_runtime() {
        // SAFETY: cudaGetErrorName/String accept any value and return static strings.
        let name = unsafe { std::ffi::CStr::from_ptr(lowbit_cuda_error_name(1)) };
        assert_eq!(name.to_str().unwrap(), "cudaErrorInvalidValue");
    }
}
