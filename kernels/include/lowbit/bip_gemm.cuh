// lowbit/bip_gemm.cuh: bipolar-INT GEMM on bit planes (APT-LLM), BGMMA (wgmma b1 .and.popc, sm_90a).
//
// Problem
//   X: M x K activations, P-bit bipolar codes as bit planes [P][M][ldx] u32 (bit k % 32 of word k / 32 = bit of
//   column k; bits beyond K zero). W: N x K weights, Q-bit, planes [Q][N][ldw]. A code u means the value
//   v = sum_i (2 u_i - 1) 2^i (odd, no zero). Wanted: Y_int[m, n] = sum_k v_x[m, k] * v_w[n, k], exact in int32.
//   Per plane pair (i, j) the tensor cores give P_ij = popc(X_i[m] AND W_j[n]); the +-1 dot product of the two
//   planes is D_ij = 4 P_ij - 2 popc(X_i[m]) - 2 popc(W_j[n]) + K, and
//     Y_int = sum_ij 2^(i+j) D_ij = 4 T - (2^Q - 1) S_x[m] - (2^P - 1) S_w[n] - K (2^P - 1)(2^Q - 1),
//     T = sum_ij 2^(i+j) P_ij,   S_x[m] = sum_k v_x[m, k],   S_w[n] = sum_k v_w[n, k]
//   (S_x from the activation kernel, S_w offline: the plane popcounts enter only through them). T is recovered
//   in registers; all of it is computed modulo 2^32, exact whenever |Y_int| < 2^31, which the launcher checks
//   (K (2^P - 1)(2^Q - 1) < 2^31). Then the int8 core's epilogue (lowbit::i8::epi_store, reused as is):
//   v = f32(Y_int) * rs[m] * cs[n] (+ rc[m] cc[n]) (+ bias[n]) to f16 / bf16 / int8, or Y_int itself.
//
// Tiling (one CTA = 256 threads = 2 consumer warpgroups, each issuing its own wgmmas)
//   CTA tile = 128 weight rows (64 per warpgroup, the MMA's M side) x BX activation rows (the N side), all
//   planes of both: the X tile stacks its P planes as R = P * BX rows (row i * BX + mx), so one
//   wgmma.m64nRk256 per weight plane j gives the P plane products of 64 weight rows x BX activation rows, into
//   accumulator set acc[j] (Q sets, Q * R / 2 registers per thread). Because BX % 8 == 0, column i * BX + mx
//   lands in the same thread as column mx for every plane i, so the recovery sum_ij 2^(i+j) acc needs no data
//   exchange: it happens in registers after the K loop.
//   K runs in stages of KC 16-byte chunks (KC * 128 bits) through a ring of S shared-memory slots filled by
//   cp.async (zero-fill outside the matrices), S - 2 stages in flight; one __syncthreads per stage.
//   grid = (ceil(N / 128), ceil(M / BX), splits). splits > 1 (small M): each CTA adds its partial T to an int32
//   workspace (red.global.add), the last CTA of a tile (arrival counter) applies the correction and epilogue
//   and zeroes the workspace again (the int8 core's self-cleaning scheme).
//
// Shared memory: K-major 8-row x 16-byte core matrices, (row r, chunk c) of an R-row tile at
//   c * R * 16 + (r / 8) * 128 + (r % 8) * 16 (as the int8 core), descriptors LBO = R * 16, SBO = 128.
//   Slot = Q weight-plane tiles of 128 rows, then the stacked X tile of R rows.
//
// Limits: sm_90a only (elsewhere the kernel traps; the launcher never sends it there). ldx, ldw multiples of 4
// words (16-byte rows); padding bits beyond K zero; K (2^P - 1)(2^Q - 1) < 2^31; accumulators
// Q * P * BX <= 256 per thread (the instance list in kernels/bipolar respects it). Per-group weight scales are
// not supported by this path (one scale per output channel).
#pragma once

#include <stdint.h>

#include "lowbit/i8_gemm.cuh"
#include "lowbit/mma.cuh"
#include "lowbit/wgmma.cuh"
#include "lowbit/wgmma_b1.cuh"

namespace lowbit {
namespace bip {

constexpr int kThreads = 256;
constexpr int kBW = 128;  // weight rows per CTA

struct Args {
    const uint32_t* x;      // [P][M][ldx] planes
    int64_t ldx;            // words per X plane row (multiple of 4)
    int64_t x_plane;        // words between X planes
    int m;
    const uint32_t* w;      // [Q][N][ldw] planes
    int64_t ldw;            // words per W plane row (multiple of 4)
    int64_t w_plane;        // words between W planes
    int n, k;
    const int32_t* sx;      // [M] value row sums of X
    const int32_t* sw;      // [N] value row sums of W
    int kchunks;            // 16-byte chunks per row that hold data: ceil(K / 128)
    int steps;              // stages: ceil(kchunks / KC)
    int steps_per_split;
    int32_t* ws;            // split-K partial T [M][N] (zero between calls) or nullptr
    int32_t* counters;      // arrival counters, one per output tile
    i8::Epilogue epi;
    void* y;
    int64_t ldy;
};

// Chunks per stage of an instance. v2 (default): the largest of 8 / 4 / 2 chunks that leaves 4 ring slots, at most
// 8 slots. LOWBIT_BIP_GEOMETRY_V3 selects v3's smaller stages (2 chunks for decode tiles, 4 for large ones, up to 16
// slots), measured slower for decode and equal for large tiles on H200 (NOTES.md); kept for same-run comparisons
// (benches/micro/bipolar.sh BIP_V3=1).
#ifndef LOWBIT_BIP_GEOMETRY_V3
constexpr int kMaxSlots = 8;
template <int P, int Q, int BX>
constexpr int chunks_for(int budget) {
    return (Q * kBW + P * BX) * 8 * 16 * 4 <= budget ? 8 : (Q * kBW + P * BX) * 4 * 16 * 4 <= budget ? 4 : 2;
}
#else
constexpr int kMaxSlots = 16;
template <int P, int Q, int BX>
constexpr int chunks_for(int budget) {
    return BX <= 16 ? 2 : (Q * kBW + P * BX) * 4 * 16 * 4 <= budget ? 4 : 2;
}
#endif

template <int P, int Q, int BX, int KC>
struct Geometry {
    static constexpr int kR = P * BX;                  // stacked X tile rows
    static constexpr int kWPlane = kBW * KC * 16;      // bytes of one weight-plane tile per stage
    static constexpr int kWStage = Q * kWPlane;
    static constexpr int kXStage = kR * KC * 16;
    static constexpr int kSlot = kWStage + kXStage;
};

template <int P, int Q, int BX, int KC>
constexpr int slots_for(int budget) {
    const int s = budget / Geometry<P, Q, BX, KC>::kSlot;
    return s > kMaxSlots ? kMaxSlots : s;
}

__device__ __forceinline__ int cm_off(int r, int c, int R) { return c * R * 16 + (r >> 3) * 128 + (r & 7) * 16; }

// Y_int from T and the row sums (modulo 2^32, exact when |Y_int| < 2^31).
template <int P, int Q>
__device__ __forceinline__ int32_t correct(const Args& p, uint32_t t, int m, int n) {
    constexpr uint32_t A = (1u << P) - 1, B = (1u << Q) - 1;
    const uint32_t y = 4u * t - B * uint32_t(__ldg(p.sx + m)) - A * uint32_t(__ldg(p.sw + n)) - uint32_t(p.k) * A * B;
    return int32_t(y);
}

template <int P, int Q, int BX>
__device__ __forceinline__ void splitk_finish(const Args& p, int m0, int n0) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    const int tile = blockIdx.y * gridDim.x + blockIdx.x;
    if (threadIdx.x == 0) {
        const int prev = atomicAdd(p.counters + tile, 1);
        last = prev == int(gridDim.z) - 1;
    }
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < BX * kBW; i += kThreads) {
        const int m = m0 + i / kBW, n = n0 + i % kBW;
        if (m < p.m && n < p.n) {
            int32_t* at = p.ws + size_t(m) * p.n + n;
            const uint32_t t = uint32_t(__ldcg(at));
            __stcg(at, 0);
            i8::epi_store(p.epi, p.y, p.ldy, correct<P, Q>(p, t, m, n), m, n);
        }
    }
    if (threadIdx.x == 0) p.counters[tile] = 0;
}

// The epilogue of one thread's recovered outputs (no split-K): the per-column vectors of its two weight rows are
// loaded once, the per-row ones once per activation row, the output type is a template parameter, so the
// arithmetic per element is the int8 core's epi_value (same rounding steps, bit-identical) without its branches.
struct ColVec {
    float cs, cc, bias;
    uint32_t sw;
    bool ok;
};

template <int OUT>
__device__ __forceinline__ void store_one(const Args& p, int32_t yint, float rs, float rc, const ColVec& c, int m,
                                          int n) {
    const size_t at = size_t(m) * p.ldy + n;
    if constexpr (OUT == i8::kOutI32) {
        static_cast<int32_t*>(p.y)[at] = yint;
    } else {
        const i8::Epilogue& e = p.epi;
        float v = __fmul_rn(__int2float_rn(yint), rs);
        if (e.cs) v = __fmul_rn(v, c.cs);
        if (e.rc) v = __fmaf_rn(rc, c.cc, v);
        if (e.bias) v = __fadd_rn(v, c.bias);
        if constexpr (OUT == i8::kOutF16) {
            static_cast<__half*>(p.y)[at] = __float2half_rn(v);
        } else if constexpr (OUT == i8::kOutBf16) {
            static_cast<__nv_bfloat16*>(p.y)[at] = __float2bfloat16_rn(v);
        } else {
            const float os = e.os ? __ldg(e.os + n) : e.out_scale;
            const float q = fminf(fmaxf(rintf(__fdiv_rn(v, os)), -128.f), 127.f);
            static_cast<int8_t*>(p.y)[at] = static_cast<int8_t>(q);
        }
    }
}

template <int P, int Q, int BX, int OUT>
__device__ __forceinline__ void store_tile(const Args& p, const int32_t (&t)[P * BX / 2], int m0, int nr, int tq) {
    constexpr uint32_t A = (1u << P) - 1, B = (1u << Q) - 1;
    const uint32_t kab = uint32_t(p.k) * A * B;
    ColVec col[2];
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int n = nr + 8 * h;
        col[h].ok = n < p.n;
        const int nn = col[h].ok ? n : 0;
        col[h].sw = uint32_t(__ldg(p.sw + nn));
        col[h].cs = p.epi.cs ? __ldg(p.epi.cs + nn) : 1.f;
        col[h].cc = p.epi.cc ? __ldg(p.epi.cc + nn) : 0.f;
        col[h].bias = p.epi.bias ? __ldg(p.epi.bias + nn) : 0.f;
    }
#pragma unroll
    for (int ii = 0; ii < BX / 8; ++ii) {
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int m = m0 + 8 * ii + 2 * tq + r;
            if (m >= p.m) continue;
            const uint32_t sx = uint32_t(__ldg(p.sx + m));
            const float rs = p.epi.rs ? __ldg(p.epi.rs + m) : p.epi.rs_val;
            const float rc = p.epi.rc ? __ldg(p.epi.rc + m) : 0.f;
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                if (!col[h].ok) continue;
                const uint32_t y = 4u * uint32_t(t[4 * ii + 2 * h + r]) - B * sx - A * col[h].sw - kab;
                store_one<OUT>(p, int32_t(y), rs, rc, col[h], m, nr + 8 * h);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// The kernel: P activation bits, Q weight bits, BX activation rows per CTA, KC chunks per stage, S slots.
// ---------------------------------------------------------------------------------------------------
template <int P, int Q, int BX, int KC, int S, int MB>
__global__ void __launch_bounds__(kThreads, MB) plane_kernel(const Args p) {
#if defined(__CUDA_ARCH__)
#if __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using G = Geometry<P, Q, BX, KC>;
    constexpr int R = G::kR;
    static_assert(S >= 3, "ring too small");
    static_assert(BX % 8 == 0 && R <= 256, "wgmma N = P * BX must be a multiple of 8, at most 256");
    static_assert(Q * R <= 256, "accumulators: Q * P * BX / 2 registers per thread");
    static_assert(KC % 2 == 0, "a stage holds whole k256 steps");
    constexpr int D = S - 2;  // stages in flight ahead of the tensor cores
    extern __shared__ __align__(128) unsigned char smem[];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3, wg = tid >> 7;
    const int n0 = blockIdx.x * kBW, m0 = blockIdx.y * BX;
    const int s_begin = blockIdx.z * p.steps_per_split;
    const int s_end = min(p.steps, s_begin + p.steps_per_split);
    const int nsteps = s_end - s_begin;

    // Copy of stage t (global stage s_begin + t) into slot t % S; always commits a group.
    // A warp covers 8 rows x 4 chunks per instruction (lane l: row l % 8, chunk l / 8): 64 contiguous bytes of
    // each global row, 4 whole core matrices in shared memory.
    auto load_stage = [&](int t) {
        if (t < nsteps) {
            unsigned char* slot = smem + (t % S) * G::kSlot;
            const int cb = (s_begin + t) * KC;  // first 16-byte chunk of the stage
            constexpr int CU = KC / 4 > 0 ? KC / 4 : 1;  // 4-chunk units per row (KC = 2: half units)
            // Weight planes: Q x 128 rows x KC chunks.
            for (int i = tid; i < Q * kBW * KC; i += kThreads) {
                int j, r, c;
                if constexpr (KC >= 4) {
                    const int u = i >> 5, l = i & 31;  // unit u: (plane, 8-row group, 4-chunk group)
                    const int cg = u % CU, rg = (u / CU) % (kBW / 8);
                    j = u / (CU * (kBW / 8));
                    r = rg * 8 + (l & 7), c = cg * 4 + (l >> 3);
                } else {
                    c = i & 1, r = (i >> 1) % kBW, j = i / (2 * kBW);
                }
                const int gn = n0 + r, gc = cb + c;
                const bool ok = gn < p.n && gc < p.kchunks;
                const uint32_t* src = p.w + j * p.w_plane + size_t(gn) * p.ldw + gc * 4;
                cp_async16_zfill(slot + j * G::kWPlane + cm_off(r, c, kBW), ok ? src : p.w, ok);
            }
            // X planes: P x BX rows, stacked as R rows.
            unsigned char* xs = slot + G::kWStage;
            for (int i = tid; i < R * KC; i += kThreads) {
                int r, c;
                if constexpr (KC >= 4) {
                    const int u = i >> 5, l = i & 31;
                    r = (u / CU) * 8 + (l & 7), c = (u % CU) * 4 + (l >> 3);
                } else {
                    c = i & 1, r = i >> 1;
                }
                const int pi = r / BX, mx = r % BX;
                const int gm = m0 + mx, gc = cb + c;
                const bool ok = gm < p.m && gc < p.kchunks;
                const uint32_t* src = p.x + pi * p.x_plane + size_t(gm) * p.ldx + gc * 4;
                cp_async16_zfill(xs + cm_off(r, c, R), ok ? src : p.x, ok);
            }
        }
        cp_async_commit();
    };

    for (int t = 0; t < D; ++t) load_stage(t);

    int32_t acc[Q][R / 2];
#pragma unroll
    for (int j = 0; j < Q; ++j)
#pragma unroll
        for (int i = 0; i < R / 2; ++i) acc[j][i] = 0;

    for (int t = 0; t < nsteps; ++t) {
        cp_async_wait<D - 1>();
        __syncthreads();
        load_stage(t + D);
        const unsigned char* slot = smem + (t % S) * G::kSlot;
        const unsigned char* xt = slot + G::kWStage;
        wgmma_fence();
#pragma unroll
        for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);
#pragma unroll
        for (int kk = 0; kk < KC / 2; ++kk) {
            const uint64_t db = smem_desc(xt + 2 * kk * R * 16, R * 16, 128);
#pragma unroll
            for (int j = 0; j < Q; ++j) {
                // Weight plane j, this warpgroup's 64 rows (8 core-matrix rows of 128 bytes each).
                const uint64_t da = smem_desc(slot + j * G::kWPlane + wg * 1024 + 2 * kk * kBW * 16, kBW * 16, 128);
                wgmma_ss_b1<R>(acc[j], da, db, 1);
            }
        }
        wgmma_commit();
#pragma unroll
        for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);
        wgmma_wait<1>();
    }
    wgmma_wait<0>();
#pragma unroll
    for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);

    // Recovery in registers. acc[j][4i + e] = P_{plane, j}(weight row 16 warp + g + 8 (e >= 2), X-tile column
    // c = 8i + 2t + (e & 1)), c = plane * BX + mx: for output column mx = 8 ii + 2t + (e & 1) and plane pi the
    // index is 4 (pi * BX / 8 + ii) + e. The recovered T overwrites acc[0] (index 4 ii + e), which the sums of
    // later ii never read.
    const int nr = n0 + warp * 16 + g;
#pragma unroll
    for (int ii = 0; ii < BX / 8; ++ii) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            uint32_t t = 0;
#pragma unroll
            for (int j = 0; j < Q; ++j)
#pragma unroll
                for (int pi = 0; pi < P; ++pi) t += uint32_t(acc[j][4 * (pi * BX / 8 + ii) + e]) << (pi + j);
            acc[0][4 * ii + e] = int32_t(t);
        }
    }
    if (p.ws) {
#pragma unroll
        for (int ii = 0; ii < BX / 8; ++ii)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int m = m0 + 8 * ii + 2 * tq + (e & 1), n = nr + 8 * (e >> 1);
                if (m < p.m && n < p.n) atomicAdd(p.ws + size_t(m) * p.n + n, acc[0][4 * ii + e]);
            }
    } else {
        switch (p.epi.out) {
            case i8::kOutF16: store_tile<P, Q, BX, i8::kOutF16>(p, acc[0], m0, nr, tq); break;
            case i8::kOutBf16: store_tile<P, Q, BX, i8::kOutBf16>(p, acc[0], m0, nr, tq); break;
            case i8::kOutI8: store_tile<P, Q, BX, i8::kOutI8>(p, acc[0], m0, nr, tq); break;
            default: store_tile<P, Q, BX, i8::kOutI32>(p, acc[0], m0, nr, tq); break;
        }
    }
    if (p.ws) splitk_finish<P, Q, BX>(p, m0, n0);
#else
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#endif
#endif
}

template <int P, int Q, int BX, int KC, int S>
constexpr size_t smem_bytes() {
    return size_t(S) * Geometry<P, Q, BX, KC>::kSlot;
}

// Whether an instance's kernel was compiled for sm_90a (PTX version >= 90).
template <int P, int Q, int BX, int KC, int S, int MB>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, plane_kernel<P, Q, BX, KC, S, MB>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

template <int P, int Q, int BX, int KC, int S, int MB>
cudaError_t launch(const Args& a, int splits, cudaStream_t st) {
    auto kern = plane_kernel<P, Q, BX, KC, S, MB>;
    constexpr size_t smem = smem_bytes<P, Q, BX, KC, S>();
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
    const dim3 grid((a.n + kBW - 1) / kBW, (a.m + BX - 1) / BX, splits);
    kern<<<grid, kThreads, smem, st>>>(a);
    return cudaGetLastError();
}

// Shared memory and residency per instance: large tiles one CTA per SM with a 200 KB ring; decode tiles (BX <= 16)
// 100 KB, and two CTAs per SM where their accumulators (Q * P * BX / 2 registers) leave room under the 128-register
// cap (v3: 110 KB for those, 200 KB for the others).
template <int P, int Q, int BX>
constexpr int min_blocks_for() {
    return (BX <= 16 && Q * P * BX <= 128) ? 2 : 1;
}
template <int P, int Q, int BX>
constexpr int budget_for() {
#ifndef LOWBIT_BIP_GEOMETRY_V3
    return BX <= 16 ? 100 * 1024 : 200 * 1024;
#else
    return min_blocks_for<P, Q, BX>() == 2 ? 110 * 1024 : 200 * 1024;
#endif
}

}  // namespace bip
}  // namespace lowbit

// One instance case of a dispatcher `(a, p, q, bx, splits, st, kc_out)`: sets kc_out[0] to the instance's chunks per
// stage and kc_out[1] to its CTAs per SM; splits == -2 only asks for that, splits == -1 whether the instance can run here (cudaSuccess).
#define LOWBIT_BIP_CASE(P, Q, BX)                                                                        \
    if (p == P && q == Q && bx == BX) {                                                                  \
        constexpr int BUD = lowbit::bip::budget_for<P, Q, BX>();                                         \
        constexpr int KC = lowbit::bip::chunks_for<P, Q, BX>(BUD);                                       \
        constexpr int S = lowbit::bip::slots_for<P, Q, BX, KC>(BUD);                                     \
        constexpr int MB = lowbit::bip::min_blocks_for<P, Q, BX>();                                      \
        kc_out[0] = KC;                                                                                  \
        kc_out[1] = MB;                                                                                  \
        if (splits == -2) return cudaSuccess;                                                            \
        if (splits < 0)                                                                                  \
            return lowbit::bip::available<P, Q, BX, KC, S, MB>() ? cudaSuccess : cudaErrorNoKernelImageForDevice; \
        return lowbit::bip::launch<P, Q, BX, KC, S, MB>(a, splits, st);                                 \
    }
