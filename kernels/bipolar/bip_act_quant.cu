// lowbit_bip_act_quant: f16/bf16 activations -> per-token scale, p-bit bipolar codes as bit planes and/or int8
// operands of the int8 mapping, and the value row sums, in one kernel.
//
// Algorithm (bit-exact with lowbit-core BipolarMatrix::quantize per token): s = absmax / (2^p - 1) (IEEE f32
// division), t = x / s (0 when s = 0), u = clamp(floor(t / 2) + 2^(p-1), 0, 2^p - 1), value v = 2u - (2^p - 1).
// Partitioning: one CTA (256 threads) per row. Pass 1 reduces the absmax; pass 2 gives each thread one 32-column
// word at a time (32 codes -> p plane words, one bit each), writes the planes (zero bits beyond k, zero words up to
// the next multiple of 4 words so the GEMM's 16-byte chunks are clean), the int8 operand (the code u for p <= 7,
// u - 128 for p = 8: bipolar.rs int8_operand) and adds the values for the row sum. The row is read twice (the second time mostly from L1/L2).
// Limits: see lowbit_kernels.h.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

namespace {

constexpr int kThreads = 256;

template <typename T>
__device__ __forceinline__ float to_f32(T v);
template <>
__device__ __forceinline__ float to_f32<__half>(__half v) { return __half2float(v); }
template <>
__device__ __forceinline__ float to_f32<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads) bip_act_kernel(const T* __restrict__ x, int64_t ldx, int64_t k, int p,
                                                           float* scales, int32_t* row_sums, float* row_corr, uint32_t* planes,
                                                           int64_t ld, int64_t plane_stride, int8_t* codes8,
                                                           int64_t ldc) {
    __shared__ float red_f[kThreads / 32];
    __shared__ int red_i[kThreads / 32];
    const int64_t row = blockIdx.x;
    const T* xr = x + row * ldx;
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;

    // Pass 1: absmax.
    float amax = 0.f;
    for (int64_t c = threadIdx.x; c < k; c += kThreads) amax = fmaxf(amax, fabsf(to_f32(xr[c])));
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) amax = fmaxf(amax, __shfl_xor_sync(0xffffffffu, amax, o));
    if (lane == 0) red_f[warp] = amax;
    __syncthreads();
    amax = red_f[0];
#pragma unroll
    for (int i = 1; i < kThreads / 32; ++i) amax = fmaxf(amax, red_f[i]);

    const int maxc = (1 << p) - 1, half = 1 << (p - 1);
    const float s = __fdiv_rn(amax, float(maxc));

    // Pass 2: codes, planes, int8 operand, value sum.
    const int64_t words = (k + 31) / 32, words_pad = (words + 3) / 4 * 4;
    int sum = 0;
    for (int64_t wi = threadIdx.x; wi < words_pad; wi += kThreads) {
        uint32_t pw[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if (wi < words) {
            for (int b = 0; b < 32; ++b) {
                const int64_t c = wi * 32 + b;
                if (c >= k) break;
                const float t = s > 0.f ? __fdiv_rn(to_f32(xr[c]), s) : 0.f;
                const float uf = fminf(fmaxf(floorf(t * 0.5f) + float(half), 0.f), float(maxc));
                const int u = int(uf);
                sum += 2 * u - maxc;
#pragma unroll
                for (int i = 0; i < 8; ++i)
                    if (i < p) pw[i] |= uint32_t((u >> i) & 1) << b;
                if (codes8) codes8[row * ldc + c] = int8_t(p == 8 ? u - 128 : u);
            }
        }
        if (planes) {
            for (int i = 0; i < p; ++i) planes[i * plane_stride + row * ld + wi] = pw[i];
        }
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xffffffffu, sum, o);
    if (lane == 0) red_i[warp] = sum;
    __syncthreads();
    if (threadIdx.x == 0) {
        int total = 0;
        for (int i = 0; i < kThreads / 32; ++i) total += red_i[i];
        row_sums[row] = total;
        scales[row] = s;
        if (row_corr) row_corr[row] = __fmul_rn(s, float(total));
    }
}

}  // namespace

extern "C" lowbit_status lowbit_bip_act_quant(const void* x, int64_t ldx, int64_t m, int64_t k, int32_t dtype,
                                              int32_t p, float* scales, int32_t* row_sums, float* row_corr, uint32_t* planes,
                                              int64_t ld, int64_t plane_stride, int8_t* codes8, int64_t ldc,
                                              void* stream) {
    LOWBIT_REQUIRE(x != nullptr && scales != nullptr && row_sums != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(planes != nullptr || codes8 != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(dtype == LOWBIT_DTYPE_F16 || dtype == LOWBIT_DTYPE_BF16, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(p >= 1 && p <= 8, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(m >= 1 && m <= INT32_MAX && k >= 1 && k <= INT32_MAX && ldx >= k, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(lowbit::is_aligned(x, 2) && lowbit::is_aligned(scales, 4) && lowbit::is_aligned(row_sums, 4) &&
                       lowbit::is_aligned(row_corr, 4),
                   LOWBIT_ERR_ALIGNMENT);
    if (planes) {
        LOWBIT_REQUIRE(ld >= (k + 31) / 32 && plane_stride >= m * ld, LOWBIT_ERR_SHAPE);
        LOWBIT_REQUIRE(ld % 4 == 0 && plane_stride % 4 == 0 && lowbit::is_aligned(planes, 16), LOWBIT_ERR_ALIGNMENT);
    }
    if (codes8) LOWBIT_REQUIRE(ldc >= k, LOWBIT_ERR_SHAPE);
    lowbit::clear_pending_error();
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (dtype == LOWBIT_DTYPE_F16) {
        bip_act_kernel<__half><<<unsigned(m), kThreads, 0, st>>>(static_cast<const __half*>(x), ldx, k, p, scales,
                                                                 row_sums, row_corr, planes, ld, plane_stride, codes8, ldc);
    } else {
        bip_act_kernel<__nv_bfloat16><<<unsigned(m), kThreads, 0, st>>>(static_cast<const __nv_bfloat16*>(x), ldx, k,
                                                                         p, scales, row_sums, row_corr, planes, ld,
                                                                         plane_stride, codes8, ldc);
    }
    return lowbit::launch_status();
}
