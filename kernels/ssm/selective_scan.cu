// Mamba1 selective scan with int8 inputs (lowbit_ssm_selective_scan_int8) and its one-step decode form
// (lowbit_ssm_state_update_int8): the Quamba W8A8 SSM, whose inputs u, dt, B, C, z arrive as int8 codes from
// the int8 conv1d / x_proj / in_proj and whose arithmetic and state stay f32.
//
// Algorithm: the sequential recurrence, exactly as in the header. For every (b, d) and t in scan order:
//   delta = softplus(dt * dt_scale + dt_bias) + dt_add; du = delta * u
//   h[n] = exp2(delta * A[n] * log2(e)) * h[n] + du * B[t, n];  y = sum_n C[t, n] h[n] + D u;  y *= silu(z)
// The N states are independent within a step (ILP = N per thread); the only serial chain is h through t.
//
// Partitioning: one thread owns one channel d of one sequence b and all its N states, in registers (h and
// A * log2 e, padded to kN in {16, 32, 64} with A = B = C = 0, so padded states stay 0 and add nothing).
// A CTA is kThreads consecutive channels of one sequence; grid (ceil(D / kThreads), B). Time runs in chunks of
// kChunk steps: the CTA stages the chunk's B_t and C_t rows (N int8 codes each, shared by all its channels),
// dequantized to f32, in shared memory; inside the chunk every thread reads them as broadcasts. u, dt, z, y
// of a step are one byte (two for y) per channel: consecutive threads read consecutive bytes (coalesced).
// The decode step is the same kernel with len = 1 and the state buffer as both initial and final state (each
// thread reads its own states before it writes them, so the in-place update needs no extra synchronization).
//
// Limits: N <= 64 (LOWBIT_SSM_MAX_DSTATE); B <= 65535; B * L < 2^31. Static shared memory 2 * kChunk * kN * 4
// bytes (<= 16 KB).
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

namespace {

constexpr int kThreads = 64;
constexpr int kChunk = 32;
constexpr float kLog2e = 1.4426950408889634f;

// softplus with PyTorch's / Mamba's threshold: v for v > 20.
__device__ __forceinline__ float softplus(float v) { return v <= 20.f ? log1pf(expf(v)) : v; }

template <int kN>
__global__ void __launch_bounds__(kThreads)
    scan_kernel(const lowbit_ssm_scan_params p, const float* init, float* fin, __half* __restrict__ y, int64_t ldy) {
    __shared__ __align__(16) float sB[kChunk][kN];
    __shared__ __align__(16) float sC[kChunk][kN];
    const int64_t d = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    const bool active = d < p.dim;
    const int64_t b = blockIdx.y;
    const int n_state = int(p.dstate), len = int(p.len);
    float h[kN], a2[kN];
    const int64_t state_off = (b * p.dim + d) * n_state;
#pragma unroll
    for (int n = 0; n < kN; ++n) {
        const bool real = active && n < n_state;
        a2[n] = real ? p.a[d * n_state + n] * kLog2e : 0.f;
        h[n] = real && init ? init[state_off + n] : 0.f;
    }
    const float us = active ? p.u_scale[d] : 0.f;
    const float dtb = active && p.dt_bias ? p.dt_bias[d] : 0.f;
    const float dsk = active && p.d_skip ? p.d_skip[d] : 0.f;
    for (int i0 = 0; i0 < len; i0 += kChunk) {
        const int cnt = min(kChunk, len - i0);
        __syncthreads();  // the previous chunk's sB / sC are no longer read
        for (int e = threadIdx.x; e < kChunk * kN; e += kThreads) {
            const int il = e / kN, n = e % kN;
            float bv = 0.f, cv = 0.f;
            if (il < cnt && n < n_state) {
                const int t = p.reverse ? len - 1 - (i0 + il) : i0 + il;
                const int64_t row = b * len + t;
                bv = float(p.b[row * p.ldb + n]) * p.b_scale;
                cv = float(p.c[row * p.ldc + n]) * p.c_scale;
            }
            sB[il][n] = bv;
            sC[il][n] = cv;
        }
        __syncthreads();
        if (!active) continue;
        for (int il = 0; il < cnt; ++il) {
            const int t = p.reverse ? len - 1 - (i0 + il) : i0 + il;
            const int64_t row = b * len + t;
            const float uv = float(p.u[row * p.ldu + d]) * us;
            float delta = fmaf(float(p.dt[row * p.lddt + d]), p.dt_scale, dtb);
            if (p.delta_softplus) delta = softplus(delta);
            delta += p.dt_add;
            const float du = delta * uv;
            float acc = 0.f;
#pragma unroll
            for (int n = 0; n < kN; ++n) {
                h[n] = fmaf(exp2f(delta * a2[n]), h[n], du * sB[il][n]);
                acc = fmaf(sC[il][n], h[n], acc);
            }
            float out = fmaf(dsk, uv, acc);
            if (p.z) {
                const float zv = float(p.z[row * p.ldz + d]) * p.z_scale;
                out *= zv / (1.f + expf(-zv));
            }
            y[row * ldy + d] = __float2half_rn(out);
        }
    }
    if (active && fin) {
#pragma unroll
        for (int n = 0; n < kN; ++n) {
            if (n < n_state) fin[state_off + n] = h[n];
        }
    }
}

bool finite(float v) { return v == v && v < INFINITY && v > -INFINITY; }

lowbit_status check_params(const lowbit_ssm_scan_params* p, const float* init, const float* fin, const void* y,
                           int64_t ldy) {
    LOWBIT_REQUIRE(p != nullptr && y != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(p->u && p->u_scale && p->dt && p->a && p->b && p->c, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(finite(p->dt_scale) && finite(p->dt_add) && finite(p->b_scale) && finite(p->c_scale) &&
                       (p->z == nullptr || finite(p->z_scale)),
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(p->batch >= 1 && p->batch <= 65535 && p->len >= 1 && p->batch * p->len <= INT32_MAX,
                   LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(p->dim >= 1 && p->dim <= INT32_MAX, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(p->dstate >= 1 && p->dstate <= LOWBIT_SSM_MAX_DSTATE, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(p->ldu >= p->dim && p->lddt >= p->dim && (p->z == nullptr || p->ldz >= p->dim) &&
                       p->ldb >= p->dstate && p->ldc >= p->dstate && ldy >= p->dim,
                   LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(lowbit::is_aligned(p->u_scale, 4) && lowbit::is_aligned(p->dt_bias, 4) &&
                       lowbit::is_aligned(p->a, 4) && lowbit::is_aligned(p->d_skip, 4) &&
                       lowbit::is_aligned(init, 4) && lowbit::is_aligned(fin, 4) && lowbit::is_aligned(y, 2),
                   LOWBIT_ERR_ALIGNMENT);
    return lowbit::status_ok();
}

lowbit_status launch(const lowbit_ssm_scan_params* p, const float* init, float* fin, void* y, int64_t ldy,
                     cudaStream_t st) {
    const dim3 grid(unsigned((p->dim + kThreads - 1) / kThreads), unsigned(p->batch));
    __half* yh = static_cast<__half*>(y);
    lowbit::clear_pending_error();
    if (p->dstate <= 16) {
        scan_kernel<16><<<grid, kThreads, 0, st>>>(*p, init, fin, yh, ldy);
    } else if (p->dstate <= 32) {
        scan_kernel<32><<<grid, kThreads, 0, st>>>(*p, init, fin, yh, ldy);
    } else {
        scan_kernel<64><<<grid, kThreads, 0, st>>>(*p, init, fin, yh, ldy);
    }
    return lowbit::launch_status();
}

}  // namespace

extern "C" lowbit_status lowbit_ssm_selective_scan_int8(const lowbit_ssm_scan_params* p, const float* initial_state,
                                                        float* final_state, void* y, int64_t ldy, void* stream) {
    const lowbit_status s = check_params(p, initial_state, final_state, y, ldy);
    if (s.code != LOWBIT_OK) return s;
    return launch(p, initial_state, final_state, y, ldy, static_cast<cudaStream_t>(stream));
}

extern "C" lowbit_status lowbit_ssm_state_update_int8(const lowbit_ssm_scan_params* p, float* state, void* y,
                                                      int64_t ldy, void* stream) {
    LOWBIT_REQUIRE(state != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    const lowbit_status s = check_params(p, state, state, y, ldy);
    if (s.code != LOWBIT_OK) return s;
    LOWBIT_REQUIRE(p->len == 1 && p->reverse == 0, LOWBIT_ERR_SHAPE);
    return launch(p, state, state, y, ldy, static_cast<cudaStream_t>(stream));
}
