// Activation quantization for the int8 GEMM (lowbit_act_quant): f16 / bf16 rows -> int8 codes + per-token
// (or per-tensor) scales in one pass, optionally fused with residual-add + RMSNorm (the "fused add RMSNorm ->
// int8" of Quamba2 / SmoothQuant deployments) and a Hadamard rotation (normalized FWHT) of power-of-two size.
//
// Algorithm: one CTA per row (token). The row goes to shared memory as f32 once (after the residual add, whose
// sum is rounded to the activation type and written back to `residual`); the RMSNorm sum of squares and the
// absmax are CTA reductions (warp shuffles + one shared word per warp); the FWHT runs log2(H) butterfly passes
// over the whole row in shared memory (each pass pairs elements `len` apart inside blocks of 2 len, so blocks
// of H columns never mix); quantization is q = sat127(rne(h / s)) with IEEE division, as lowbit-core does.
// Vector path (act_quant_vec_kernel, taken when k % 8 == 0, k <= 8192 and the rows are 16-byte aligned): one
// CTA of k / 8 threads (rounded up to a warp) per row, thread t holding columns [8t, 8t + 8) in registers from
// one 16-byte load of x (and of residual / gamma); the RMSNorm sum and the absmax are CTA reductions
// (block_reduce), the FWHT is lowbit::fwht_regs (bit-identical to fwht_shared), the codes one 8-byte store.
// Same arithmetic as the shared-memory kernel except the order of the sum of squares. At T = 1 (decode) the
// shared-memory kernel's per-pass barriers over the whole row dominated (12 us for k = 2560, H = 512 on an H100).
// lowbit_ssm_residual_rmsnorm_quant is the vector kernel with an f32 residual stream (Mamba blocks with
// residual_in_fp32): r = residual + x in f32, r written out, the norm input r rounded to x's dtype.
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


template <typename T>
struct Pair;
template <>
struct Pair<__half> {
    using type = __half2;
    static __device__ __forceinline__ float2 to_f2(__half2 v) { return __half22float2(v); }
    static __device__ __forceinline__ __half2 from_f2(float a, float b) { return __floats2half2_rn(a, b); }
};
template <>
struct Pair<__nv_bfloat16> {
    using type = __nv_bfloat162;
    static __device__ __forceinline__ float2 to_f2(__nv_bfloat162 v) { return __bfloat1622float2(v); }
    static __device__ __forceinline__ __nv_bfloat162 from_f2(float a, float b) { return __floats2bfloat162_rn(a, b); }
};

/// 8 values of T (one 16-byte word group) to f32.
template <typename T>
__device__ __forceinline__ void unpack8(const uint32_t (&w)[4], float (&v)[8]) {
#pragma unroll
    for (int i = 0; i < 4; ++i) {
        const float2 f = Pair<T>::to_f2(*reinterpret_cast<const typename Pair<T>::type*>(&w[i]));
        v[2 * i] = f.x, v[2 * i + 1] = f.y;
    }
}

/// The tail of the vector kernels for one row, 8 columns a thread (`v`, with `ss` the thread's sum of squares and
/// `g` its gamma slice): RMSNorm (`norm`), FWHT, quantization with the static scale or the row's absmax (written
/// to `*scale`), codes to `qrow`. Every thread of the CTA calls it (CTA reductions, shuffles).
__device__ __forceinline__ void norm_fwht_quant(float (&v)[8], const float (&g)[8], float ss, bool live, bool norm,
                                                float eps, int hadamard, float static_scale, int8_t* qrow,
                                                float* scale, int k, float* red, float* buf) {
    constexpr int E = 8;
    const int n = k / E;
    if (norm) {
        const float inv = rsqrtf(lowbit::block_reduce<false>(ss, red) / float(k) + eps);
        if (live) {
#pragma unroll
            for (int i = 0; i < E; ++i) v[i] = v[i] * inv * g[i];
        }
    }
    float hs = 1.f;
    if (hadamard > 1) {
        lowbit::fwht_regs<E>(v, n, hadamard, buf);
        hs = rsqrtf(float(hadamard));
    }
    float amax = 0.f;
#pragma unroll
    for (int i = 0; i < E; ++i) {
        v[i] *= hs;
        amax = fmaxf(amax, fabsf(v[i]));
    }
    float s = static_scale;
    if (!(s > 0.f)) {
        s = lowbit::block_reduce<true>(live ? amax : 0.f, red) / 127.f;
        if (s == 0.f) s = 1.f;
        if (threadIdx.x == 0) *scale = s;
    }
    if (live) {
        uint32_t qw[E / 4];
        lowbit::quantize_words<E>(v, s, qw);
        lowbit::store_words<E>(qrow + threadIdx.x * E, qw);
    }
}

/// The vector path (see the header): thread t owns columns [8t, 8t + 8) of row blockIdx.x.
template <typename T>
__global__ void __launch_bounds__(1024)
    act_quant_vec_kernel(const T* __restrict__ x, int64_t ldx, T* residual, const T* __restrict__ gamma, float eps,
                         int hadamard, float static_scale, int8_t* __restrict__ q, int64_t ldq,
                         float* __restrict__ scales, int k) {
    constexpr int E = 8;
    extern __shared__ float4 dyn4[];
    __shared__ float red[32];
    const int t = threadIdx.x, n = k / E;
    const bool live = t < n;
    const int64_t m = blockIdx.x;
    float v[E], g[E];
    float ss = 0.f;
    if (live) {
        uint32_t w[4];
        lowbit::load_words<16>(x + m * ldx + t * E, w);
        unpack8<T>(w, v);
        if (gamma) {
            uint32_t gw[4];
            lowbit::load_words<16>(gamma + t * E, gw);
            unpack8<T>(gw, g);
        }
        if (residual) {
            T* rp = residual + m * ldx + t * E;
            uint32_t rw[4];
            lowbit::load_words<16>(rp, rw);
            float r[E];
            unpack8<T>(rw, r);
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const typename Pair<T>::type h = Pair<T>::from_f2(v[2 * i] + r[2 * i], v[2 * i + 1] + r[2 * i + 1]);
                rw[i] = *reinterpret_cast<const uint32_t*>(&h);
            }
            lowbit::store_words<16>(rp, rw);
            unpack8<T>(rw, v);
        }
#pragma unroll
        for (int i = 0; i < E; ++i) ss = fmaf(v[i], v[i], ss);
    } else {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = 0.f;
    }
    norm_fwht_quant(v, g, ss, live, gamma != nullptr, eps, hadamard, static_scale, q + m * ldq, scales ? scales + m : nullptr, k, red,
                    reinterpret_cast<float*>(dyn4));
}

/// The f32-residual variant (lowbit_ssm_residual_rmsnorm_quant): r = residual + x in f32 (x may be NULL), r to
/// `out`, then h = r rounded to T (the block's cast before its RMSNorm) into the act_quant tail.
template <typename T>
__global__ void __launch_bounds__(1024)
    residual_quant_vec_kernel(const T* __restrict__ x, int64_t ldx, const float* residual, int64_t ldr, float* out,
                              int64_t ldo, const T* __restrict__ gamma, float eps, int hadamard, float static_scale,
                              int8_t* __restrict__ q, int64_t ldq, int k) {
    constexpr int E = 8;
    extern __shared__ float4 dyn4[];
    __shared__ float red[32];
    const int t = threadIdx.x, n = k / E;
    const bool live = t < n;
    const int64_t m = blockIdx.x;
    float v[E], g[E];
    float ss = 0.f;
    if (live) {
        float r[E];
        uint32_t rw[8];
        lowbit::load_words<32>(residual + m * ldr + t * E, rw);
#pragma unroll
        for (int i = 0; i < E; ++i) r[i] = __uint_as_float(rw[i]);
        if (x) {
            uint32_t w[4];
            lowbit::load_words<16>(x + m * ldx + t * E, w);
            unpack8<T>(w, v);
#pragma unroll
            for (int i = 0; i < E; ++i) {
                r[i] += v[i];
                rw[i] = __float_as_uint(r[i]);
            }
        }
        if (out) lowbit::store_words<32>(out + m * ldo + t * E, rw);
        if (gamma) {
            uint32_t gw[4];
            lowbit::load_words<16>(gamma + t * E, gw);
            unpack8<T>(gw, g);
        }
#pragma unroll
        for (int i = 0; i < E; ++i) {
            v[i] = to_f32(from_f32<T>(r[i]));
            ss = fmaf(v[i], v[i], ss);
        }
    } else {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = 0.f;
    }
    norm_fwht_quant(v, g, ss, live, gamma != nullptr, eps, hadamard, static_scale, q + m * ldq, nullptr, k, red,
                    reinterpret_cast<float*>(dyn4));
}

template <typename T>
cudaError_t launch_vec(const void* x, int64_t ldx, void* residual, const void* gamma, float eps, int hadamard,
                       float st, int8_t* q, int64_t ldq, float* scales, int64_t m, int k, cudaStream_t stream) {
    auto kern = act_quant_vec_kernel<T>;
    const int smem = lowbit::fwht_regs_smem_floats(k, hadamard > 1 ? hadamard : 0, 8) * 4;
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
    }
    const int threads = (k / 8 + 31) / 32 * 32;
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
    // The vector path: 16-byte row slices of x / residual / gamma, 8-byte code stores.
    const bool vec = k % 8 == 0 && k <= 8 * 1024 && ldx % 8 == 0 && ldq % 8 == 0 && lowbit::is_aligned(x, 16) &&
                     lowbit::is_aligned(residual, 16) && lowbit::is_aligned(gamma, 16) && lowbit::is_aligned(q, 8);
    if (vec) {
        const cudaError_t e =
            dtype == LOWBIT_DTYPE_F16
                ? launch_vec<__half>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, int(k), st)
                : launch_vec<__nv_bfloat16>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m,
                                            int(k), st);
        return lowbit::status_from_cuda(e);
    }
    const cudaError_t e =
        dtype == LOWBIT_DTYPE_F16
            ? launch<__half>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, int(k), st)
            : launch<__nv_bfloat16>(x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, int(k), st);
    return lowbit::status_from_cuda(e);
}

extern "C" lowbit_status lowbit_ssm_residual_rmsnorm_quant(const void* x, int64_t ldx, const float* residual,
                                                           int64_t ldr, float* out, int64_t ldo, const void* gamma,
                                                           float eps, int32_t hadamard, float static_scale, int8_t* q,
                                                           int64_t ldq, int64_t m, int64_t k, int32_t dtype,
                                                           void* stream) {
    LOWBIT_REQUIRE(residual != nullptr && q != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(dtype == LOWBIT_DTYPE_F16 || dtype == LOWBIT_DTYPE_BF16, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(static_scale > 0.f && static_scale < INFINITY, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(gamma == nullptr || (eps >= 0.f && eps < INFINITY), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(m >= 1 && m <= INT32_MAX && k >= 8 && k <= 8 * 1024 && k % 8 == 0, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldr >= k && ldq >= k && (x == nullptr || ldx >= k) && (out == nullptr || ldo >= k),
                   LOWBIT_ERR_SHAPE);
    if (hadamard > 1) {
        LOWBIT_REQUIRE((hadamard & (hadamard - 1)) == 0 && k % hadamard == 0, LOWBIT_ERR_SHAPE);
    } else {
        LOWBIT_REQUIRE(hadamard == 0 || hadamard == 1, LOWBIT_ERR_SHAPE);
    }
    LOWBIT_REQUIRE(lowbit::is_aligned(x, 16) && ldx % 8 == 0 && lowbit::is_aligned(residual, 16) && ldr % 4 == 0 &&
                       lowbit::is_aligned(out, 16) && ldo % 4 == 0 && lowbit::is_aligned(gamma, 16) &&
                       lowbit::is_aligned(q, 8) && ldq % 8 == 0,
                   LOWBIT_ERR_ALIGNMENT);
    lowbit::clear_pending_error();
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    const int had = hadamard > 1 ? int(hadamard) : 0;
    const int smem = lowbit::fwht_regs_smem_floats(int(k), had, 8) * 4;
    const int threads = (int(k) / 8 + 31) / 32 * 32;
    auto launch_one = [&](auto kern, auto tag) -> cudaError_t {
        using T = decltype(tag);
        if (smem > 48 * 1024) {
            const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
            if (e != cudaSuccess) return e;
        }
        kern<<<unsigned(m), threads, smem, st>>>(static_cast<const T*>(x), ldx, residual, ldr, out, ldo,
                                                 static_cast<const T*>(gamma), eps, had, static_scale, q, ldq, int(k));
        return cudaGetLastError();
    };
    const cudaError_t e = dtype == LOWBIT_DTYPE_F16 ? launch_one(residual_quant_vec_kernel<__half>, __half())
                                                    : launch_one(residual_quant_vec_kernel<__nv_bfloat16>, __nv_bfloat16());
    return lowbit::status_from_cuda(e);
}
