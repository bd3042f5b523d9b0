// Activation quantization for the int8 GEMM (lowbit_act_quant): f16 / bf16 rows -> int8 codes + per-token
// (or per-tensor) scales in one pass, optionally fused with residual-add + RMSNorm (the "fused add RMSNorm ->
// int8" of Quamba2 / SmoothQuant deployments) and a Hadamard rotation (normalized FWHT) of power-of-two size.
//
// Algorithm: one CTA per row (token). The row goes to shared memory as f32 once (after the residual add, whose
// sum is rounded to the activation type and written back to `residual`); the RMSNorm sum of squares and the
// absmax are CTA reductions (warp shuffles + one shared word per warp); the FWHT runs log2(H) butterfly passes
// over the whole row in shared memory (each pass pairs elements `len` apart inside blocks of 2 len, so blocks
// of H columns never mix); quantization is q = sat127(rne(h / s)) with IEEE division, as lowbit-core does.
// Shapes: x [m][ldx], residual [m][ldx] (same layout), gamma [k], q [m][ldq], scales [m]. Limits: k <= 16384.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit/row_ops.cuh"
#include "lowbit_kernels.h"

namespace {

constexpr int kThreads = 512;
constexpr int kMaxK = 16384;

__device__ __forceinline__ float to_f32(__half v) { return __half2float(v); }
__device__ __forceinline__ float to_f32(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
__device__ __forceinline__ T from_f32(float v);
template <>
__device__ __forceinline__ __half from_f32<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 from_f32<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

template <typename T>
__global__ void __launch_bounds__(kThreads) act_quant_kernel(const T* __restrict__ x, int64_t ldx, T* residual,
                                                             const T* __restrict__ gamma, float eps, int hadamard,
                                                             float static_scale, int8_t* __restrict__ q, int64_t ldq,
                                                             float* __restrict__ scales, int k) {
    extern __shared__ float row[];
    __shared__ float red[32];
    const int64_t m = blockIdx.x;
    const T* xr = x + m * ldx;
    T* rr = residual ? residual + m * ldx : nullptr;
    float ss = 0.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        float v = to_f32(xr[i]);
        if (rr) {
            const T h = from_f32<T>(v + to_f32(rr[i]));
            rr[i] = h;
            v = to_f32(h);
        }
        row[i] = v;
        ss = fmaf(v, v, ss);
    }
    if (gamma) {
        const float inv = rsqrtf(lowbit::block_reduce<false>(ss, red) / float(k) + eps);
        for (int i = threadIdx.x; i < k; i += blockDim.x) row[i] = row[i] * inv * to_f32(gamma[i]);
    }
    float hs = 1.f;
    if (hadamard > 1) {
        lowbit::fwht_shared(row, k, hadamard);
        hs = rsqrtf(float(hadamard));
    }
    float amax = 0.f;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        const float v = row[i] * hs;
        row[i] = v;
        amax = fmaxf(amax, fabsf(v));
    }
    float s = static_scale;
    if (!(s > 0.f)) {
        s = lowbit::block_reduce<true>(amax, red) / 127.f;
        if (s == 0.f) s = 1.f;
        if (threadIdx.x == 0) scales[m] = s;
    }
    int8_t* qr = q + m * ldq;
    for (int i = threadIdx.x; i < k; i += blockDim.x) {
        qr[i] = static_cast<int8_t>(fminf(fmaxf(rintf(__fdiv_rn(row[i], s)), -127.f), 127.f));
    }
}

template <typename T>
cudaError_t launch(const void* x, int64_t ldx, void* residual, const void* gamma, float eps, int hadamard, float st,
                   int8_t* q, int64_t ldq, float* scales, int64_t m, int k, cudaStream_t stream) {
    auto kern = act_quant_kernel<T>;
    const int smem = k * 4;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const int threads = k >= 4096 ? kThreads : k >= 1024 ? 256 : 128;
    kern<<<unsigned(m), threads, smem, stream>>>(static_cast<const T*>(x), ldx, static_cast<T*>(residual),
                                                 static_cast<const T*>(gamma), eps, hadamard, st, q, ldq, scales, k);
    return cudaGetLastError();
}

}  // namespace

extern "C" lowbit_status lowbit_act_quant(const void* x, int64_t ldx, void* residual, const void* gamma, float eps,
                                          int32_t hadamard, float static_scale, int8_t* q, int64_t ldq, float* scales,
                                          int64_t m, int64_t k, int32_t dtype, void* stream) {
    LOWBIT_REQUIRE(x != nullptr && q != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(dtype == LOWBIT_DTYPE_F16 || dtype == LOWBIT_DTYPE_BF16, LOWBIT_ERR_INVALID_ARGUMENT);
    const bool dynamic = !(static_scale > 0.f);
    LOWBIT_REQUIRE(!dynamic || scales != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(static_scale < INFINITY && !(static_scale != static_scale), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(gamma == nullptr || (eps >= 0.f && eps < INFINITY), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(m >= 1 && m <= INT32_MAX && k >= 1 && k <= kMaxK, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldx >= k && ldq >= k, LOWBIT_ERR_SHAPE);
    if (hadamard > 1) {
        LOWBIT_REQUIRE((hadamard & (hadamard - 1)) == 0 && hadamard <= 8192 && k % hadamard == 0, LOWBIT_ERR_SHAPE);
    } else {
        LOWBIT_REQUIRE(hadamard == 0 || hadamard == 1, LOWBIT_ERR_SHAPE);
    }
    LOWBIT_REQUIRE(lowbit::is_aligned(x, 2) && lowbit::is_aligned(residual, 2) && lowbit::is_aligned(gamma, 2) &&
                       lowbit::is_aligned(scales, 4),
                   LOWBIT_ERR_ALIGNMENT);
    lowbit::clear_pending_error();
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    const cudaError_t e =
        dtype == LOWBIT_DTYPE_F16
            ? launch<__half>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, int(k), st)
            : launch<__nv_bfloat16>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, int(k), st);
    return lowbit::status_from_cuda(e);
}
