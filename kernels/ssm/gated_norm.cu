// Gated RMSNorm -> Hadamard -> int8 (lowbit_ssm_gated_rmsnorm_quant): the step between the SSM output y and
// out_proj's int8 GEMM in Quamba / Quamba2. Mamba2: g = y * silu(z), RMSNorm per group, times weight
// (norm_before_gate = False); Mamba1: g = y * silu(z) only. Then the optional normalized FWHT of the
// out_proj input rotation and the static per-tensor int8 quantization.
//
// Algorithm: one CTA per row (token). The gated row goes to shared memory as f32 once; each group's sum of
// squares is a CTA reduction (lowbit::block_reduce, shared with lowbit_act_quant), groups one after another
// (Mamba2 has ngroups <= 8 per row); the FWHT is lowbit::fwht_shared, the same butterfly passes as
// lowbit_act_quant; q = sat127(rne(g / s)) with IEEE division.
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
    const int smem = int(dim) * 4;
    LOWBIT_CUDA_TRY(cudaFuncSetAttribute(gated_norm_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const int threads = dim >= 4096 ? kMaxThreads : dim >= 1024 ? 256 : 128;
    lowbit::clear_pending_error();
    gated_norm_kernel<<<unsigned(rows), threads, smem, static_cast<cudaStream_t>(stream)>>>(
        static_cast<const __half*>(y), ldy, z, ldz, z_scale, weight, int(dim), int(norm ? group_size : dim), eps,
        norm != 0, hadamard, out_scale, q, ldq);
    return lowbit::launch_status();
}
