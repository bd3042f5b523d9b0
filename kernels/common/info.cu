// kernels/common/info.cu: build and runtime information entry points of lowbit_kernels.h.
//
// These let the Rust layer report which CUDA runtime the static library carries and translate a
// cudaError_t (LOWBIT_ERR_CUDA) into its name and text. cudaError_t and the driver's CUresult are
// different enumerations, so the Rust side must not decode a cudaError_t with cuGetErrorName.

#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

extern "C" int32_t lowbit_kernels_abi_version(void) { return LOWBIT_KERNELS_ABI_VERSION; }

extern "C" int32_t lowbit_kernels_cudart_version(void) { return CUDART_VERSION; }

extern "C" lowbit_status lowbit_cuda_driver_version(int32_t *version) {
    LOWBIT_REQUIRE(version != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    int v = 0;
    // cudaDriverGetVersion does not create a context; with no driver installed it succeeds and
    // reports 0.
    LOWBIT_CUDA_TRY(cudaDriverGetVersion(&v));
    *version = v;
    return lowbit::status_ok();
}

extern "C" const char *lowbit_cuda_error_name(int32_t cuda_error) {
    return cudaGetErrorName(static_cast<cudaError_t>(cuda_error));
}

extern "C" const char *lowbit_cuda_error_string(int32_t cuda_error) {
    return cudaGetErrorString(static_cast<cudaError_t>(cuda_error));
}
