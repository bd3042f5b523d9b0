// Gated RMSNorm -> Hadamard -> int8 (lowbit_ssm_gated_rmsnorm_quant): the step between the SSM output y and
// out_proj's int8 GEMM in Quamba / Quamba2. Mamba2: g = y * silu(z), RMSNorm per group, times weight
// (norm_before_gate = False); Mamba1: g = y * silu(z) only. Then the optional normalized FWHT of the
// out_proj input rotation and the static per-tensor int8 quantization.
//
// Algorithm: one CTA per row (token). The gated row goes to shared memory as f32 once; each group's sum of
// squares is a CTA reduction (lowbit::block_reduce, shared with lowbit_act_quant), groups one after another
// (Mamba2 has ngroups <= 8 per row); the FWHT is lowbit::fwht_shared, the same butterfly passes as
// lowbit_act_quant; q = sat127(rne(g / s)) with IEEE division.
// Vector path (gated_norm_vec_kernel, taken when dim % E == 0, dim / E <= 1024, every norm group a multiple of
// E and the rows 16-byte aligned; E = 8, or 16 above dim 8192): one CTA of dim / E threads (rounded up to a
// warp) per row, thread t holding columns [t E, t E + E) in registers from one 16-byte y load, one E-byte z load
// and E / 4 float4 weight loads; the group sums of squares are a CTA reduction (one group) or per-thread
// partials in shared memory summed by one warp per group; the FWHT is lowbit::fwht_regs (bit-identical to
// fwht_shared: in registers, warp shuffles, shared memory only for butterflies wider than 32 E columns); codes
// go out as one E-byte store. At T = 1 this is latency-bound (a handful of dependent steps, no per-pass
// barrier over the row); for prefill it keeps T CTAs of <= 1024 threads.
// Shapes: y f16 [rows][ldy], z int8 [rows][ldz], weight f32 [dim], q int8 [rows][ldq]. Limits: dim <= 16384
// (64 KB of shared memory), rows < 2^31.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit/row_ops.cuh"
#include "lowbit_kernels.h"

namespace {

using namespace lowbit;

constexpr int kMaxThreads = 512;

__global__ void __launch_bounds__(kMaxThreads)
    gated_norm_kernel(const __half* __restrict__ y, int64_t ldy, const int8_t* __restrict__ z, int64_t ldz, float zs,
                      const float* __restrict__ weight, int dim, int group, float eps, bool norm, int hadamard,
                      float out_scale, int8_t* __restrict__ q, int64_t ldq) {
    extern __shared__ float row[];
    __shared__ float red[32];
    const int64_t m = blockIdx.x;
    const __half* yr = y + m * ldy;
    const int8_t* zr = z ? z + m * ldz : nullptr;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        float v = __half2float(yr[i]);
        if (zr) {
            const float zv = float(zr[i]) * zs;
            v *= zv / (1.f + expf(-zv));
        }
        row[i] = v;
    }
    if (norm) {
        // A group starts at any column, so a thread's elements of a group were written by other threads in the
        // loop above (barrier before), and the scaled values are read by other threads below (barrier after).
        // Within a group a thread reads and scales the same elements; block_reduce's barriers separate groups.
        __syncthreads();
        for (int g0 = 0; g0 < dim; g0 += group) {
            float ss = 0.f;
            for (int i = g0 + threadIdx.x; i < g0 + group; i += blockDim.x) ss = fmaf(row[i], row[i], ss);
            const float inv = rsqrtf(lowbit::block_reduce<false>(ss, red) / float(group) + eps);
            for (int i = g0 + threadIdx.x; i < g0 + group; i += blockDim.x) row[i] *= inv;
        }
        __syncthreads();
    }
    if (weight) {
        for (int i = threadIdx.x; i < dim; i += blockDim.x) row[i] *= weight[i];
    }
    float hs = 1.f;
    if (hadamard > 1) {
        lowbit::fwht_shared(row, dim, hadamard);
        hs = rsqrtf(float(hadamard));
    }
    int8_t* qr = q + m * ldq;
    for (int i = threadIdx.x; i < dim; i += blockDim.x) {
        qr[i] = static_cast<int8_t>(fminf(fmaxf(rintf(__fdiv_rn(row[i] * hs, out_scale)), -127.f), 127.f));
    }
}


/// The vector path (see the header): thread t owns columns [t E, t E + E) of row blockIdx.x.
template <int E>
__global__ void __launch_bounds__(1024)
    gated_norm_vec_kernel(const __half* __restrict__ y, int64_t ldy, const int8_t* __restrict__ z, int64_t ldz,
                          float zs, const float* __restrict__ weight, int dim, int group, float eps, bool norm,
                          int hadamard, float out_scale, int8_t* __restrict__ q, int64_t ldq) {
    extern __shared__ float4 dyn4[];
    __shared__ float red[32];
    __shared__ float part[1024];
    const int t = threadIdx.x, n = dim / E;
    const bool live = t < n;
    const int64_t m = blockIdx.x;
    float v[E];
    float w[E];
    if (live) {
        uint32_t yw[E / 2];
        load_words<2 * E>(y + m * ldy + t * E, yw);
#pragma unroll
        for (int i = 0; i < E / 2; ++i) {
            const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&yw[i]));
            v[2 * i] = f.x, v[2 * i + 1] = f.y;
        }
        if (z) {
            uint32_t zw[E / 4];
            load_words<E>(z + m * ldz + t * E, zw);
#pragma unroll
            for (int i = 0; i < E; ++i) {
                const float zv = float(int8_t(zw[i / 4] >> (8 * (i % 4)))) * zs;
                v[i] *= zv / (1.f + expf(-zv));
            }
        }
        if (weight) {
#pragma unroll
            for (int i = 0; i < E; i += 4) {
                const float4 f = reinterpret_cast<const float4*>(weight + t * E)[i / 4];
                w[i] = f.x, w[i + 1] = f.y, w[i + 2] = f.z, w[i + 3] = f.w;
            }
        }
    } else {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] = 0.f;
    }
    if (norm) {
        float ss = 0.f;
#pragma unroll
        for (int i = 0; i < E; ++i) ss = fmaf(v[i], v[i], ss);
        float inv;
        if (group == dim) {
            inv = rsqrtf(block_reduce<false>(ss, red) / float(group) + eps);
        } else {
            // Several groups, each a whole number of threads: per-thread partials, one warp sums a group.
            const int tpg = group / E, groups = dim / group, warps = blockDim.x >> 5, lane = t & 31;
            if (live) part[t] = ss;
            __syncthreads();
            for (int g = t >> 5; g < groups; g += warps) {
                float s = 0.f;
                for (int i = lane; i < tpg; i += 32) s += part[g * tpg + i];
#pragma unroll
                for (int o = 16; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
                if (lane == 0) red[g] = rsqrtf(s / float(group) + eps);
            }
            __syncthreads();
            inv = live ? red[t / tpg] : 0.f;
        }
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] *= inv;
    }
    if (weight && live) {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] *= w[i];
    }
    float hs = 1.f;
    if (hadamard > 1) {
        fwht_regs<E>(v, n, hadamard, reinterpret_cast<float*>(dyn4));
        hs = rsqrtf(float(hadamard));
    }
    if (live) {
#pragma unroll
        for (int i = 0; i < E; ++i) v[i] *= hs;
        uint32_t qw[E / 4];
        quantize_words<E>(v, out_scale, qw);
        store_words<E>(q + m * ldq + t * E, qw);
    }
}

}  // namespace

extern "C" lowbit_status lowbit_ssm_gated_rmsnorm_quant(const void* y, int64_t ldy, const int8_t* z, int64_t ldz,
                                                        float z_scale, const float* weight, int64_t rows,
                                                        int64_t dim, int64_t group_size, float eps, int32_t norm,
                                                        int32_t hadamard, float out_scale, int8_t* q, int64_t ldq,
                                                        void* stream) {
    LOWBIT_REQUIRE(y != nullptr && q != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(out_scale > 0.f && out_scale < INFINITY, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(z == nullptr || (z_scale == z_scale && fabsf(z_scale) < INFINITY), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(!norm || (eps >= 0.f && eps < INFINITY), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(rows >= 1 && rows <= INT32_MAX && dim >= 1 && dim <= LOWBIT_SSM_MAX_NORM_DIM, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldy >= dim && ldq >= dim && (z == nullptr || ldz >= dim), LOWBIT_ERR_SHAPE);
    if (norm) LOWBIT_REQUIRE(group_size >= 1 && dim % group_size == 0, LOWBIT_ERR_SHAPE);
    if (hadamard > 1) {
        LOWBIT_REQUIRE((hadamard & (hadamard - 1)) == 0 && dim % hadamard == 0, LOWBIT_ERR_SHAPE);
    } else {
        LOWBIT_REQUIRE(hadamard == 0 || hadamard == 1, LOWBIT_ERR_SHAPE);
    }
    LOWBIT_REQUIRE(lowbit::is_aligned(y, 2) && lowbit::is_aligned(weight, 4), LOWBIT_ERR_ALIGNMENT);
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    const int grp = int(norm ? group_size : dim), had = hadamard > 1 ? int(hadamard) : 0;
    // The vector path: E-column thread slices (16-byte y loads), every group a whole number of slices, at most
    // 32 groups (one `red` word each), rows aligned for the vector loads and stores.
    const int e = dim <= 8 * 1024 ? 8 : 16;
    const bool vec = dim % e == 0 && grp % e == 0 && dim / grp <= 32 && lowbit::is_aligned(y, 16) && ldy % 8 == 0 &&
                     lowbit::is_aligned(q, e) && ldq % e == 0 && (z == nullptr || (lowbit::is_aligned(z, e) && ldz % e == 0)) &&
                     (weight == nullptr || lowbit::is_aligned(weight, 16));
    lowbit::clear_pending_error();
    if (vec) {
        auto kern = e == 8 ? gated_norm_vec_kernel<8> : gated_norm_vec_kernel<16>;
        const int smem = lowbit::fwht_regs_smem_floats(int(dim), had, e) * 4;
        if (smem > 48 * 1024)
            LOWBIT_CUDA_TRY(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        const int threads = (int(dim) / e + 31) / 32 * 32;
        kern<<<unsigned(rows), threads, smem, st>>>(static_cast<const __half*>(y), ldy, z, ldz, z_scale, weight,
                                                    int(dim), grp, eps, norm != 0, had, out_scale, q, ldq);
        return lowbit::launch_status();
    }
    const int smem = int(dim) * 4;
    LOWBIT_CUDA_TRY(cudaFuncSetAttribute(gated_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const int threads = dim >= 4096 ? kMaxThreads : dim >= 1024 ? 256 : 128;
    gated_norm_kernel<<<unsigned(rows), threads, smem, st>>>(
        static_cast<const __half*>(y), ldy, z, ldz, z_scale, weight, int(dim), grp, eps, norm != 0, hadamard,
        out_scale, q, ldq);
    return lowbit::launch_status();
}
