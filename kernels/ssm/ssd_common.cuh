// ssd_common.cuh: what the Mamba2 SSD kernels (ssd_chunk_scan.cu, ssd_state_update.cu) share: the parameter
// block, the fp32 delta (softplus + dt_limit clamp) and the launchers' host-side argument checks.
#pragma once

#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

namespace lowbit {
namespace ssd {

/// Arguments of both SSD kernels (see lowbit_kernels.h for shapes; optional pointers may be NULL).
struct SsdParams {
    const int8_t* x;        // [B, L, H, P] codes (decode: [B, H, P])
    const float* x_scale;   // [H * P]
    const int8_t* dt;       // [B, L, H] codes (decode: [B, H])
    float dt_scale;
    const float* dt_bias;   // [H] or NULL
    const float* A;         // [H]
    const int8_t* B;        // [B, L, G, N] codes (decode: [B, G, N])
    const float* B_scale;   // [G]
    const int8_t* C;        // like B
    const float* C_scale;   // [G]
    const float* D;         // [H] or NULL
    const float* h0;        // [B, H, P, N] initial state or NULL (decode: the state, updated in place)
    float dt_lo, dt_hi;     // dt_limit clamp
    __half* y;              // [B, L, H, P] (decode: [B, H, P])
    float* hT;              // [B, H, P, N] final state or NULL
    int64_t ldx, ldbc, lddt;  // elements between consecutive tokens of x, B/C, dt
    int L, H, P, G, N;
    bool vec_bc, vec_x;     // 16-byte loads possible (set by the launcher)
    bool vec_y;             // 4-byte (half2) y stores possible: P even, y 4-byte aligned
};

/// delta = clamp(softplus(q * scale + bias), lo, hi) in fp32; softplus(v) = v for v > 20 (as in Mamba), else
/// log1p(exp(v)).
__device__ __forceinline__ float delta_of(int8_t q, float scale, float bias, float lo, float hi) {
    const float v = fmaf(static_cast<float>(q), scale, bias);
    const float sp = v > 20.f ? v : log1pf(expf(v));
    return fminf(fmaxf(sp, lo), hi);
}

/// Host-side validation shared by both launchers; fills `p` and returns LOWBIT_OK or the error code.
/// Row strides: ldx >= H * P, ldbc >= G * N, lddt >= H (LOWBIT_ERR_SHAPE otherwise).
/// Prefill: seqlen >= 1 and N <= 256; decode (prefill = false): seqlen is ignored, N <= 2^20.
inline lowbit_status_code fill_params(SsdParams& p, const int8_t* x, const float* x_scale, const int8_t* dt,
                                      float dt_scale, const float* dt_bias, const float* A, const int8_t* Bm,
                                      const float* B_scale, const int8_t* Cm, const float* C_scale, const float* D,
                                      const float* h0, float dt_lo, float dt_hi, void* y, float* hT, int64_t batch,
                                      int64_t seqlen, int64_t nheads, int64_t headdim, int64_t ngroups,
                                      int64_t dstate, int64_t ldx, int64_t ldbc, int64_t lddt, bool prefill) {
    if (!x || !x_scale || !dt || !A || !Bm || !B_scale || !Cm || !C_scale || !y) return LOWBIT_ERR_INVALID_ARGUMENT;
    if (!prefill && !h0) return LOWBIT_ERR_INVALID_ARGUMENT;
    if (!isfinite(dt_scale) || isnan(dt_lo) || isnan(dt_hi) || !(dt_lo < INFINITY) || dt_lo > dt_hi)
        return LOWBIT_ERR_INVALID_ARGUMENT;
    if (!prefill) seqlen = 1;
    if (batch < 1 || batch > 65535 || seqlen < 1 || seqlen > INT32_MAX || nheads < 1 || nheads > 65535 ||
        headdim < 1 || headdim > 65536 || ngroups < 1 || nheads % ngroups != 0 || dstate < 1 ||
        dstate > (prefill ? 256 : (1 << 20)))
        return LOWBIT_ERR_SHAPE;
    // Token indices are int64 in the kernels; int32 counts must not overflow per head.
    if (batch * seqlen > INT32_MAX || nheads * headdim > INT32_MAX) return LOWBIT_ERR_SHAPE;
    if (ldx < nheads * headdim || ldbc < ngroups * dstate || lddt < nheads) return LOWBIT_ERR_SHAPE;
    const void* f32s[] = {x_scale, dt_bias, A, B_scale, C_scale, D, h0, hT};
    for (const void* q : f32s)
        if (!is_aligned(q, 4)) return LOWBIT_ERR_ALIGNMENT;
    if (!is_aligned(y, 2)) return LOWBIT_ERR_ALIGNMENT;
    p.x = x;
    p.x_scale = x_scale;
    p.dt = dt;
    p.dt_scale = dt_scale;
    p.dt_bias = dt_bias;
    p.A = A;
    p.B = Bm;
    p.B_scale = B_scale;
    p.C = Cm;
    p.C_scale = C_scale;
    p.D = D;
    p.h0 = h0;
    p.dt_lo = dt_lo;
    p.dt_hi = dt_hi;
    p.y = static_cast<__half*>(y);
    p.hT = hT;
    p.ldx = ldx;
    p.ldbc = ldbc;
    p.lddt = lddt;
    p.L = static_cast<int>(seqlen);
    p.H = static_cast<int>(nheads);
    p.P = static_cast<int>(headdim);
    p.G = static_cast<int>(ngroups);
    p.N = static_cast<int>(dstate);
    p.vec_bc = p.vec_x = p.vec_y = false;
    return LOWBIT_OK;
}

}  // namespace ssd
}  // namespace lowbit
