// lowbit/check.cuh: building lowbit_status values in launchers, argument checks, and capturing the
// launch error.
//
// Every extern "C" launcher follows the same shape:
//
//     LOWBIT_REQUIRE(codes != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);   // host-side checks first
//     ...
//     lowbit::clear_pending_error();                                   // forget our old errors
//     kernel<<<grid, block, 0, stream>>>(...);
//     return lowbit::launch_status();                                  // cudaGetLastError()
//
// Why clear before the launch: cudaGetLastError() returns the last error recorded by *this*
// runtime on this thread, which may be left over from an earlier, unrelated call. Clearing first
// makes the status after the launch describe this launch. Sticky errors (a previous kernel's
// illegal address, ...) cannot be cleared and are reported again, which is what a caller needs:
// the context is unusable. lowbit links cudart statically, so this error state is lowbit's own;
// a host process's other runtime (e.g. PyTorch's libcudart.so) is not affected.
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit_kernels.h"

namespace lowbit {

/// The success status.
inline lowbit_status status_ok() { return lowbit_status{LOWBIT_OK, 0}; }

/// A lowbit-level failure (shape, alignment, argument, missing kernel); cuda_error stays 0.
inline lowbit_status status_error(lowbit_status_code code) {
    return lowbit_status{static_cast<int32_t>(code), 0};
}

/// Maps a cudaError_t to a status: cudaSuccess -> LOWBIT_OK, anything else -> LOWBIT_ERR_CUDA.
inline lowbit_status status_from_cuda(cudaError_t err) {
    if (err == cudaSuccess) return status_ok();
    return lowbit_status{LOWBIT_ERR_CUDA, static_cast<int32_t>(err)};
}

/// Discards a pending (non-sticky) error of this runtime before a launch; see the file comment.
inline void clear_pending_error() { (void)cudaGetLastError(); }

/// The status of the launch just made: cudaGetLastError() right after `<<<>>>`.
inline lowbit_status launch_status() { return status_from_cuda(cudaGetLastError()); }

/// True when `p` is a multiple of `align` bytes (align a power of two).
inline bool is_aligned(const void *p, uintptr_t align) {
    return (reinterpret_cast<uintptr_t>(p) & (align - 1)) == 0;
}

}  // namespace lowbit

/// Returns `code` from the enclosing launcher unless `cond` holds. Used for host-side validation,
/// so nothing is launched with arguments the kernel was not written for.
#define LOWBIT_REQUIRE(cond, code)                                   \
    do {                                                             \
        if (!(cond)) return ::lowbit::status_error(code);            \
    } while (0)

/// Returns the status of a CUDA runtime call from the enclosing function if it failed.
#define LOWBIT_CUDA_TRY(expr)                                        \
    do {                                                             \
        cudaError_t lowbit_err_ = (expr);                            \
        if (lowbit_err_ != cudaSuccess)                              \
            return ::lowbit::status_from_cuda(lowbit_err_);          \
    } while (0)
