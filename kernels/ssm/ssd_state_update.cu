// Mamba2 SSD single decode step with int8 inputs: lowbit_ssd_state_update.
//
// Math (head h, group g = h / (H / G), channel p, state n), for one token per sequence:
//   delta = clamp(softplus(dt_q * dt_scale + dt_bias[h]), dt_lo, dt_hi)        (fp32)
//   state[p, n] = exp(delta * A[h]) * state[p, n] + delta * x[p] * B[n]        (fp32, in place)
//   y[p] = C_scale[g] * sum_n state[p, n] * C_q[n] + D[h] * x[p]
// with x = x_q * x_scale[h * P + p] and B = B_q * B_scale[g].
//
// Partitioning: memory-bound (the fp32 state is read and written once; everything else is tiny). One warp per
// (batch, head, slice of kRows = 4 channels); a CTA of 4 warps covers 16 channels of one head. Each lane owns
// 4 consecutive states (one 16-byte float4 load and store per channel row when N % 4 == 0 and the state is
// 16-byte aligned; scalar otherwise) and loops over N in steps of 128; the kRows rows' loads are issued together
// for memory-level parallelism. The y reduction over N is a warp butterfly (__shfl_xor_sync).
// Limits: 1 <= N <= 2^20, any P, H % G == 0, B and H <= 65535.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"
#include "ssd_common.cuh"

namespace {

using lowbit::ssd::SsdParams;
using lowbit::ssd::delta_of;

constexpr int kRows = 4;    // channels per warp
constexpr int kWarps = 4;   // warps per CTA
constexpr int kThreads = 32 * kWarps;

template <bool VEC>
__global__ void __launch_bounds__(kThreads) ssd_state_update_kernel(const SsdParams p) {
    const int h = blockIdx.y, b = blockIdx.z;
    const int H = p.H, P = p.P, N = p.N;
    const int g = h / (H / p.G);
    const int lane = threadIdx.x & 31;
    const int pbase = (blockIdx.x * kWarps + (threadIdx.x >> 5)) * kRows;
    if (pbase >= P) return;  // whole warp leaves together
    const float delta = delta_of(p.dt[b * p.lddt + h], p.dt_scale, p.dt_bias ? p.dt_bias[h] : 0.f, p.dt_lo, p.dt_hi);
    const float dA = expf(delta * p.A[h]);
    const float bsc = p.B_scale[g], csc = p.C_scale[g], Dh = p.D ? p.D[h] : 0.f;
    float* state = const_cast<float*>(p.h0) + ((int64_t)b * H + h) * P * N;
    const int8_t* Bq = p.B + b * p.ldbc + (int64_t)g * N;
    const int8_t* Cq = p.C + b * p.ldbc + (int64_t)g * N;
    float xv[kRows], dx[kRows], acc[kRows];
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
        const int pp = min(pbase + i, P - 1);  // rows past P recompute row P-1 and are never stored
        xv[i] = static_cast<float>(p.x[b * p.ldx + (int64_t)h * P + pp]) * p.x_scale[h * P + pp];
        dx[i] = delta * xv[i] * bsc;
        acc[i] = 0.f;
    }
    const bool full = pbase + kRows <= P;
    if (VEC) {
        for (int n = lane * 4; n < N; n += 128) {
            const char4 bq = *reinterpret_cast<const char4*>(Bq + n);
            const char4 cq = *reinterpret_cast<const char4*>(Cq + n);
            float4 s[kRows];
#pragma unroll
            for (int i = 0; i < kRows; ++i)
                if (full || pbase + i < P) s[i] = *reinterpret_cast<const float4*>(state + (int64_t)(pbase + i) * N + n);
#pragma unroll
            for (int i = 0; i < kRows; ++i) {
                if (!(full || pbase + i < P)) continue;
                s[i].x = fmaf(s[i].x, dA, dx[i] * bq.x);
                s[i].y = fmaf(s[i].y, dA, dx[i] * bq.y);
                s[i].z = fmaf(s[i].z, dA, dx[i] * bq.z);
                s[i].w = fmaf(s[i].w, dA, dx[i] * bq.w);
                acc[i] += s[i].x * cq.x + s[i].y * cq.y + s[i].z * cq.z + s[i].w * cq.w;
                *reinterpret_cast<float4*>(state + (int64_t)(pbase + i) * N + n) = s[i];
            }
        }
    } else {
        for (int n = lane; n < N; n += 32) {
            const float bq = Bq[n], cq = Cq[n];
#pragma unroll
            for (int i = 0; i < kRows; ++i) {
                if (!(full || pbase + i < P)) continue;
                float* sp = state + (int64_t)(pbase + i) * N + n;
                const float s = fmaf(*sp, dA, dx[i] * bq);
                *sp = s;
                acc[i] += s * cq;
            }
        }
    }
#pragma unroll
    for (int i = 0; i < kRows; ++i) {
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) acc[i] += __shfl_xor_sync(0xffffffffu, acc[i], o);
    }
    if (lane < kRows && pbase + lane < P) {
        float a = acc[0];
#pragma unroll
        for (int i = 1; i < kRows; ++i)
            if (lane == i) a = acc[i];
        float xl = xv[0];
#pragma unroll
        for (int i = 1; i < kRows; ++i)
            if (lane == i) xl = xv[i];
        p.y[((int64_t)b * H + h) * P + pbase + lane] = __float2half_rn(fmaf(Dh, xl, csc * a));
    }
}

}  // namespace

extern "C" lowbit_status lowbit_ssd_state_update(float* state, const int8_t* x, const float* x_scale, const int8_t* dt,
                                                 float dt_scale, const float* dt_bias, const float* A,
                                                 const int8_t* Bm, const float* B_scale, const int8_t* Cm,
                                                 const float* C_scale, const float* D, float dt_lo, float dt_hi,
                                                 void* y, int64_t batch, int64_t nheads, int64_t headdim,
                                                 int64_t ngroups, int64_t dstate, int64_t ldx, int64_t ldbc,
                                                 int64_t lddt, void* stream) {
    SsdParams prm{};
    const lowbit_status_code c =
        lowbit::ssd::fill_params(prm, x, x_scale, dt, dt_scale, dt_bias, A, Bm, B_scale, Cm, C_scale, D, state, dt_lo,
                                 dt_hi, y, nullptr, batch, 1, nheads, headdim, ngroups, dstate, ldx, ldbc, lddt, false);
    if (c != LOWBIT_OK) return lowbit::status_error(c);
    const bool vec = dstate % 4 == 0 && ldbc % 4 == 0 && lowbit::is_aligned(state, 16) &&
                     lowbit::is_aligned(Bm, 4) && lowbit::is_aligned(Cm, 4);
    const int rows_per_cta = kRows * kWarps;
    const dim3 grid(static_cast<unsigned>((headdim + rows_per_cta - 1) / rows_per_cta), static_cast<unsigned>(nheads),
                    static_cast<unsigned>(batch));
    lowbit::clear_pending_error();
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    if (vec) {
        ssd_state_update_kernel<true><<<grid, kThreads, 0, st>>>(prm);
    } else {
        ssd_state_update_kernel<false><<<grid, kThreads, 0, st>>>(prm);
    }
    return lowbit::launch_status();
}
