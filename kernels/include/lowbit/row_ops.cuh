// lowbit/row_ops.cuh: CTA-wide helpers of the one-CTA-per-row kernels (lowbit_act_quant in kernels/int8,
// lowbit_ssm_gated_rmsnorm_quant in kernels/ssm): a sum / max reduction over the CTA and the in-place fast
// Walsh-Hadamard transform of a row held in shared memory.
#pragma once

#include <cuda_runtime.h>

namespace lowbit {

/// Sum (MAX = false) or max (MAX = true) of `v` over the CTA; every thread gets the result. `red` is a
/// shared array of >= 32 floats. blockDim.x must be a multiple of 32 (<= 1024). Starts with a barrier, so
/// back-to-back calls may reuse `red`.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // red[] may still be read by a previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < int(blockDim.x >> 5) ? red[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    return v;
}

/// Unnormalized FWHT of every block of `h` contiguous values of `row[0, k)` (shared memory; h a power of
/// two >= 2 dividing k): log2(h) butterfly passes, each pairing elements `len` apart inside blocks of 2 len,
/// so blocks of h values never mix. The caller scales by 1/sqrt(h). Barriers before and after every pass:
/// the caller's writes to `row` are visible to the first pass, and the result to the code that follows.
__device__ __forceinline__ void fwht_shared(float* row, int k, int h) {
    __syncthreads();
    for (int len = 1; len < h; len <<= 1) {
        for (int p = threadIdx.x; p < k / 2; p += blockDim.x) {
            const int i = (p / len) * 2 * len + (p % len), j = i + len;
            const float a = row[i], b = row[j];
            row[i] = a + b;
            row[j] = a - b;
        }
        __syncthreads();
    }
}

}  // namespace lowbit
