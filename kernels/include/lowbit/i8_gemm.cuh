// lowbit/i8_gemm.cuh: the int8 tensor-core GEMM core (kernels/int8): W8A8 and W4A8.
//
// Problem
//   acc[m, n] = sum_k X[m, k] * Wq[n, k]   exact in int32, X int8 [M, K] (row-major, ldx), Wq int8 [N, K]:
//     W8: the int8 weight codes themselves (row-major, K contiguous);
//     W4: 4-bit codes u = q + 8 with an integer group scale s in 1..16, expanded on the way to the tensor cores
//         into the int8 value q * s (QQQ-style two-level quantization: |q * s| <= 128 fits int8 exactly), so
//         the group scale costs nothing after the expansion and the accumulation stays exact.
//   y[m, n] = epilogue(acc): v = f32(acc) * rs[m] * cs[n] (+ rc[m] * cc[n]) (+ rc2[m] * cc2[n]) (+ bias[n]), written
//   as f16 / bf16, int8 (sat(rne(v / os)), os = out_scale or a per-column os[n]) or the raw int32 accumulator (tests,
//   chaining). rs / cs / rc / cc / rc2 / cc2 are the general per-row / per-column vectors (activation scales, weight
//   channel scales, up to two rank-1 corrections: the bipolar GEMM's int8 mapping of W8A8 needs two).
//
// Tiling (one CTA = 256 threads = 8 warps = 2 warpgroups)
//   CTA tile = 128 weight rows (BW) x BX activation rows, K in stages of 128 bytes (BK). D^T = W * X^T: the
//   weight tile is the MMA's M side (64 rows per warpgroup for wgmma, 16 rows per warp for mma.sync) and the
//   activation rows its N side, so small M maps to a narrow N (n8 / n16) instead of a wasted 64-row M.
//   grid = (ceil(N / 128), ceil(M / BX), splits): split-K over K stages when the tiles alone cannot fill the
//   GPU (small M); splits > 1 add exact int32 partials into a workspace (red.global.add.s32) and the last
//   CTA of each tile to arrive (an arrival counter) applies the epilogue and zeroes the workspace again.
//
// Shared memory (both MMA paths use the same layout)
//   Operand tiles are stored K-major in 8-row x 16-byte core matrices: byte (row r, k-chunk c) of an
//   R-row tile at c * R * 16 + (r / 8) * 128 + (r % 8) * 16. wgmma reads it through a no-swizzle descriptor
//   (leading byte offset R * 16 between K-adjacent core matrices, stride byte offset 128 between row
//   groups); mma.sync reads it with ldmatrix (8 contiguous 16-byte rows per matrix: conflict-free).
//   A ring of S slots holds (W8) the weight and X tiles of one stage, filled by 16-byte cp.async with
//   zero-fill outside [N or M] x K; D = S - 2 stages are in flight ahead of the tensor cores.
//   W4: the ring holds the raw 4-bit stage (64 bytes per row, same core-matrix layout over its 4 chunks). The
//   packing puts a lane's A-fragment codes of rows g and g + 8 in one 32-bit word each, so every lane reads two
//   words per k32 block, expands them in registers (exact IMAD trick below) and feeds the tensor cores from
//   registers: wgmma's register-A form (double-buffered across stages) or mma.sync's A fragment. No shared-
//   memory write-back, no proxy fence.
//   Ordering: cp.async writes + cp.async.wait_group + __syncthreads before wgmma reads them (as the weight-only
//   wgmma kernel does). A per-stage fence.proxy.async compiled to MEMBAR.ALL.CTA, which waited for every copy
//   in flight and serialized the pipeline (v1 measurement, NOTES.md).
//
// Weights are stored tiled (lowbit-core int8::tile_weight): per 128-row tile and 128-column stage one contiguous,
// zero-padded block already in the core-matrix order above (16 KB W8, 8 KB W4), so a stage is one linear copy
// with perfect DRAM locality (v2's row-major weights touched 128 DRAM pages per stage: ~1.7 TB/s on an H200).
// Limits: K % 16 == 0 (W8) or K % 32 == 0 (W4), 16-byte aligned X rows (ldx % 16 == 0); the launcher checks.
// W4 group length a multiple of 32 dividing K (a 16-byte chunk = 32 codes never straddles groups).
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "lowbit/imma.cuh"
#include "lowbit/mma.cuh"
#include "lowbit/wgmma.cuh"
#include "lowbit/wgmma_s8.cuh"

namespace lowbit {
namespace i8 {

constexpr int kThreads = 256;
constexpr int kBW = 128;  // weight rows per CTA
constexpr int kBK = 128;  // K bytes (int8 elements) per stage

// Output kinds (lowbit_i8_out_dtype).
constexpr int kOutF16 = 0, kOutBf16 = 1, kOutI8 = 2, kOutI32 = 3;

struct Epilogue {
    int out;              // kOut*
    const float* rs;      // [M] row scales or nullptr (then rs_val)
    float rs_val;         // per-tensor row scale
    const float* cs;      // [N] column scales or nullptr (1)
    const float* rc;      // [M] row correction or nullptr
    const float* cc;      // [N] column correction (both or neither)
    const float* bias;    // [N] or nullptr
    float out_scale;      // int8 output scale (when os is nullptr)
    const float* os;      // [N] per-column int8 output scales or nullptr
    // Second rank-1 correction (both or neither; last, so that aggregate initialisers without it leave it null).
    // Absent (nullptr) it costs one uniform branch per value in the generic epilogue (epi_value) and none in the ws
    // kernel's unrolled bodies (i8ws::epilogue_t / epilogue_tma dispatch to their R2 instance when it is set).
    const float* rc2;     // [M] or nullptr
    const float* cc2;     // [N]
};

struct Args {
    const int8_t* x;
    int64_t ldx;
    int m;
    const uint8_t* w;     // tiled weight: [ceil(N/128)][ksteps][stage block] (lowbit-core int8::tile_weight)
    int n, k;
    const uint8_t* gs;    // W4: [N][groups] group scales 1..16 (nullptr: all 1)
    int groups, group_len;
    int ksteps;           // ceil(K / kBK)
    int steps_per_split;
    int32_t* ws;          // split-K accumulator [M][N] (zero between calls) or nullptr (direct epilogue)
    int32_t* counters;    // split-K arrival counters, one per output tile (zero between calls)
    Epilogue epi;
    void* y;
    int64_t ldy;          // elements per output row
    int coop;             // stream split-K at MT = 16: 1 = cooperative slab finish (stream.cu finish_coop), 0 = last arriver
};

// ---------------------------------------------------------------------------------------------------
// 4-bit expansion. A 32-bit word holds 8 codes u = q + 8 of logical positions [0, 1, 4, 5, 2, 3, 6, 7] in
// nibbles 0..7 (lowbit-core int8::pack_w4). Two nibbles go into the two 16-bit lanes of a register, one IMAD
// computes u * s + (4096 - 8 s) per lane (no carry between lanes: the lane value stays in [3968, 4208]), whose
// low byte is (q * s) mod 256, the int8 two's complement of q * s; two PRMTs gather the low bytes in logical
// order: `lo` = positions 0..3, `hi` = positions 4..7.
// ---------------------------------------------------------------------------------------------------
__host__ __device__ __forceinline__ uint32_t w4_offset(uint32_t s) { return (4096u - 8u * s) * 0x00010001u; }

__device__ __forceinline__ void expand_w4(uint32_t x, uint32_t s, uint32_t c, uint32_t& lo, uint32_t& hi) {
    const uint32_t m = 0x000F000Fu;
    const uint32_t r0 = (x & m) * s + c;          // k0 (byte 0), k2 (byte 2)
    const uint32_t r1 = ((x >> 4) & m) * s + c;   // k1, k3
    const uint32_t r2 = ((x >> 8) & m) * s + c;   // k4, k6
    const uint32_t r3 = ((x >> 12) & m) * s + c;  // k5, k7
    lo = prmt(r0, r1, 0x6240);
    hi = prmt(r2, r3, 0x6240);
}

// Byte offset of (row r, 16-byte k-chunk c) in an R-row core-matrix tile.
__device__ __forceinline__ int cm_off(int r, int c, int R) { return c * R * 16 + (r >> 3) * 128 + (r & 7) * 16; }

// ---------------------------------------------------------------------------------------------------
// Epilogue arithmetic, written with explicit round-to-nearest intrinsics so the CPU reference
// (lowbit-core int8::epilogue_f32) reproduces it bit for bit: v = (((f32(acc) * rs) * cs + rc * cc) + rc2 * cc2) + bias,
// each correction one fused multiply-add.
// ---------------------------------------------------------------------------------------------------
__device__ __forceinline__ float epi_value(const Epilogue& e, int32_t acc, int m, int n) {
    const float rs = e.rs ? e.rs[m] : e.rs_val;
    float v = __fmul_rn(__int2float_rn(acc), rs);
    if (e.cs) v = __fmul_rn(v, e.cs[n]);
    if (e.rc) v = __fmaf_rn(e.rc[m], e.cc[n], v);
    if (e.rc2) v = __fmaf_rn(e.rc2[m], e.cc2[n], v);
    if (e.bias) v = __fadd_rn(v, e.bias[n]);
    return v;
}

__device__ __forceinline__ void epi_store(const Epilogue& e, void* y, int64_t ldy, int32_t acc, int m, int n) {
    const size_t at = size_t(m) * ldy + n;
    if (e.out == kOutI32) {
        static_cast<int32_t*>(y)[at] = acc;
        return;
    }
    const float v = epi_value(e, acc, m, n);
    if (e.out == kOutF16) {
        static_cast<__half*>(y)[at] = __float2half_rn(v);
    } else if (e.out == kOutBf16) {
        static_cast<__nv_bfloat16*>(y)[at] = __float2bfloat16_rn(v);
    } else {
        const float os = e.os ? __ldg(e.os + n) : e.out_scale;
        const float q = fminf(fmaxf(rintf(__fdiv_rn(v, os)), -128.f), 127.f);
        static_cast<int8_t*>(y)[at] = static_cast<int8_t>(q);
    }
}

// One accumulator element (weight row n, activation row m) leaves the CTA: into the split-K workspace or
// through the epilogue.
__device__ __forceinline__ void emit(const Args& p, int32_t v, int m, int n) {
    if (m >= p.m || n >= p.n) return;
    if (p.ws) {
        atomicAdd(p.ws + size_t(m) * p.n + n, v);
    } else {
        epi_store(p.epi, p.y, p.ldy, v, m, n);
    }
}

// Split-K: after its partial sums are in the workspace, the last CTA of an output tile to arrive applies the
// epilogue to the tile and zeroes its workspace and counter again, so the next call finds them clean (the
// workspace must be zero before the first call: lowbit-cuda allocates it zeroed).
template <int BX>
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
            const int32_t v = __ldcg(at);
            __stcg(at, 0);
            epi_store(p.epi, p.y, p.ldy, v, m, n);
        }
    }
    if (threadIdx.x == 0) p.counters[tile] = 0;
}

template <int BX, bool W4>
struct Geometry {
    static constexpr int kWStage = W4 ? kBW * kBK / 2 : kBW * kBK;  // ring bytes of the weight stage
    static constexpr int kXStage = BX * kBK;
    static constexpr int kSlot = kWStage + kXStage;
};

// Shared-memory slots of an instance: as many as fit `budget` bytes, at most 10.
template <int BX, bool W4>
constexpr int slots_for(int budget) {
    const int s = budget / Geometry<BX, W4>::kSlot;
    return s > 10 ? 10 : s;
}

template <int BX, bool W4, int S>
constexpr size_t smem_bytes() {
    return size_t(S) * Geometry<BX, W4>::kSlot;
}

// CTAs per SM an instance is built for: the narrow wgmma tiles of small M (BX <= 16) run three CTAs per SM
// (72 KB of ring each, <= 85 registers), so that one CTA's per-stage latency chain (barrier, dependent wgmmas,
// W4 expansion) overlaps the others' and the weight stream stays near HBM bandwidth (v3: one CTA per SM spent
// ~1100 cycles per stage whatever the stage's bytes).
template <int BX, bool WG>
constexpr int min_blocks() {
    return (WG && BX <= 16) ? 3 : 1;
}

// W4: the A fragment (mma.m16n8k32 / wgmma register layout) of k32 block j for the 16 weight rows from `row0`
// of the raw stage: word t of the 16-byte chunk of rows g and g + 8 holds exactly this lane's 8 + 8 codes
// (lowbit-core int8::pack_w4), expanded with the rows' group scales s0 / s1.
__device__ __forceinline__ void w4_fragment(const unsigned char* raw, int row0, int j, int g, int t, uint32_t s0,
                                            uint32_t s1, uint32_t (&a)[4]) {
    const uint32_t w0 = *reinterpret_cast<const uint32_t*>(raw + cm_off(row0 + g, j, kBW) + 4 * t);
    const uint32_t w1 = *reinterpret_cast<const uint32_t*>(raw + cm_off(row0 + g + 8, j, kBW) + 4 * t);
    expand_w4(w0, s0, w4_offset(s0), a[0], a[2]);
    expand_w4(w1, s1, w4_offset(s1), a[1], a[3]);
}

// Group scale of weight row `gn` at column `gk` (1 without group scales or outside the matrix).
__device__ __forceinline__ uint32_t w4_scale(const Args& p, int gn, int gk) {
    if (p.gs == nullptr || gn >= p.n || gk >= p.k) return 1;
    return __ldg(p.gs + size_t(gn) * p.groups + gk / p.group_len);
}

// ---------------------------------------------------------------------------------------------------
// The kernel. WG = true: wgmma (sm_90a); false: mma.sync m16n8k32 (sm_80+). S ring slots.
// ---------------------------------------------------------------------------------------------------
template <int BX, bool W4, bool WG, int S>
__global__ void __launch_bounds__(kThreads, min_blocks<BX, WG>()) gemm_kernel(const Args p) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    if constexpr (WG) {
        __trap();  // never launched: the launcher checks the kernel's PTX version first
    } else
#endif
    {
    static_assert(S >= 3, "ring too small");
    using G = Geometry<BX, W4>;
    constexpr int D = S - 2;  // stages in flight ahead of the MMA
    extern __shared__ __align__(128) unsigned char smem[];

    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, tq = lane & 3;
    // blockIdx.x walks the M tiles of one weight tile: CTAs resident together share weight tiles through L2.
    const int n0 = blockIdx.y * kBW, m0 = blockIdx.x * BX;
    const int s_begin = blockIdx.z * p.steps_per_split;
    const int s_end = min(p.ksteps, s_begin + p.steps_per_split);
    const int nsteps = s_end - s_begin;
    const int row0 = warp * 16;  // this warp's 16-row strip of the weight tile (both paths)

    // Copy of one stage (local index t, global stage s_begin + t) into ring slot t % S; always commits a
    // group so the group count stays uniform. Warp unit u covers 8 rows x 4 chunks (64 contiguous bytes per row).
    auto load_stage = [&](int t) {
        if (t < nsteps) {
            unsigned char* slot = smem + (t % S) * G::kSlot;
            const int kb = (s_begin + t) * kBK;  // first K column of the stage
            for (int i = tid; i < BX * 8; i += kThreads) {
                const int u = i >> 5, l = i & 31;
                const int r = (u >> 1) * 8 + (l & 7), c = (u & 1) * 4 + (l >> 3);
                const int gm = m0 + r, gk = kb + c * 16;
                const bool ok = gm < p.m && gk < p.k;
                cp_async16_zfill(slot + G::kWStage + cm_off(r, c, BX),
                                 ok ? static_cast<const void*>(p.x + size_t(gm) * p.ldx + gk) : p.x, ok);
            }
            // Weight stage: one contiguous, zero-padded block of the tiled layout, already in core-matrix order.
            const uint8_t* wsrc = p.w + (size_t(blockIdx.y) * p.ksteps + (s_begin + t)) * G::kWStage;
#pragma unroll
            for (int i = tid; i < G::kWStage / 16; i += kThreads) cp_async16_zfill(slot + i * 16, wsrc + i * 16, true);
        }
        cp_async_commit();
    };

    // W4 fragments of stage t (rows row0 + g, row0 + g + 8), all four k32 blocks.
    auto w4_stage = [&](int t, uint32_t (&ab)[kBK / 32][4]) {
        const unsigned char* slot = smem + (t % S) * G::kSlot;
        const int kb = (s_begin + t) * kBK;
        const int gn = n0 + row0 + g;
        // Groups of a multiple of 128 columns: one scale per row for the whole stage.
        const bool per_stage = p.group_len % kBK == 0;
        uint32_t s0 = w4_scale(p, gn, kb), s1 = w4_scale(p, gn + 8, kb);
#pragma unroll
        for (int j = 0; j < kBK / 32; ++j) {
            if (!per_stage && j > 0) s0 = w4_scale(p, gn, kb + 32 * j), s1 = w4_scale(p, gn + 8, kb + 32 * j);
            w4_fragment(slot, row0, j, g, tq, s0, s1, ab[j]);
        }
    };

    for (int t = 0; t < D; ++t) load_stage(t);

    if constexpr (WG) {
        // ------------------------------- wgmma path (sm_90a) -------------------------------
        const int wg = tid >> 7;
        int32_t acc[BX / 2];
#pragma unroll
        for (int i = 0; i < BX / 2; ++i) acc[i] = 0;
        // One stage: operands landed (own copies) + barrier (everyone's copies, and every warpgroup has finished
        // the wgmma group two stages back, so its ring slot may be refilled), refill, MMA, keep one group in flight.
        auto step = [&](int t, uint32_t (&ab)[kBK / 32][4]) {
            cp_async_wait<D - 1>();
            __syncthreads();
            load_stage(t + D);
            const unsigned char* slot = smem + (t % S) * G::kSlot;
            const unsigned char* xt = slot + G::kWStage;
            if constexpr (W4) {
                w4_stage(t, ab);
                // Pin the A registers' definitions before the warpgroup arrive (volatile asms keep their order), so
                // no expansion instruction lands inside the wgmma pipeline stage (ptxas would serialize the wgmmas).
#pragma unroll
                for (int j = 0; j < kBK / 32; ++j)
                    asm volatile("" : "+r"(ab[j][0]), "+r"(ab[j][1]), "+r"(ab[j][2]), "+r"(ab[j][3]));
            }
            wgmma_fence();
            wgmma_fence_regs_s32(acc);
#pragma unroll
            for (int j = 0; j < kBK / 32; ++j) {
                const uint64_t db = smem_desc(xt + 2 * j * BX * 16, BX * 16, 128);
                if constexpr (W4) {
                    wgmma_rs_s8<BX>(acc, ab[j], db, 1);
                } else {
                    const uint64_t da = smem_desc(slot + wg * 1024 + 2 * j * kBW * 16, kBW * 16, 128);
                    wgmma_ss_s8<BX>(acc, da, db, 1);
                }
            }
            wgmma_commit();
            wgmma_fence_regs_s32(acc);
            wgmma_wait<1>();
        };
        // A registers double-buffered (W4): the group of stage t may still read ab0 while stage t + 1 fills ab1.
        uint32_t ab0[kBK / 32][4], ab1[kBK / 32][4];
        for (int t = 0; t < nsteps; t += 2) {
            step(t, ab0);
            if (t + 1 < nsteps) step(t + 1, ab1);
        }
        wgmma_wait<0>();
        wgmma_fence_regs_s32(acc);
        // acc[4i + e]: weight row 16 warp + g + 8 (e >= 2), activation row 8i + 2t + (e & 1).
        const int nr = n0 + row0 + g;
#pragma unroll
        for (int i = 0; i < BX / 8; ++i) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                emit(p, acc[4 * i + e], m0 + 8 * i + 2 * tq + (e & 1), nr + 8 * (e >> 1));
            }
        }
        if (p.ws) splitk_finish<BX>(p, m0, n0);
    } else {
        // ------------------------------- mma.sync path (sm_80+) -------------------------------
        // Warp w owns weight rows 16 w .. 16 w + 15 of the tile and all BX activation rows.
        constexpr int NT = BX / 8;
        int32_t acc[NT][4];
#pragma unroll
        for (int i = 0; i < NT; ++i) acc[i][0] = acc[i][1] = acc[i][2] = acc[i][3] = 0;
        const int lm = lane >> 3, lr = lane & 7;  // ldmatrix: matrix index, row within it
        for (int t = 0; t < nsteps; ++t) {
            cp_async_wait<D - 1>();
            __syncthreads();
            load_stage(t + D);
            const unsigned char* slot = smem + (t % S) * G::kSlot;
            const unsigned char* xt = slot + G::kWStage;
            uint32_t aw[kBK / 32][4];
            if constexpr (W4) w4_stage(t, aw);
#pragma unroll
            for (int j = 0; j < kBK / 32; ++j) {
                uint32_t a[4];
                if constexpr (W4) {
                    a[0] = aw[j][0], a[1] = aw[j][1], a[2] = aw[j][2], a[3] = aw[j][3];
                } else {
                    // (rows 0-7, chunk 2j), (rows 8-15, chunk 2j), (rows 0-7, 2j+1), (rows 8-15, 2j+1)
                    ldmatrix_x4(a, slot + cm_off(row0 + (lm & 1) * 8 + lr, 2 * j + (lm >> 1), kBW));
                }
#pragma unroll
                for (int nt = 0; nt < NT; nt += 2) {
                    // (tile nt, chunk 2j), (nt, 2j+1), (nt+1, 2j), (nt+1, 2j+1); a lone last tile repeats itself.
                    const int tile = (nt + 1 < NT) ? nt + (lm >> 1) : nt;
                    uint32_t b[4];
                    ldmatrix_x4(b, xt + cm_off(tile * 8 + lr, 2 * j + (lm & 1), BX));
                    mma_s8_m16n8k32(acc[nt], a, b[0], b[1]);
                    if (nt + 1 < NT) mma_s8_m16n8k32(acc[nt + 1], a, b[2], b[3]);
                }
            }
        }
        const int nr = n0 + row0 + g;
#pragma unroll
        for (int i = 0; i < NT; ++i) {
#pragma unroll
            for (int e = 0; e < 4; ++e) emit(p, acc[i][e], m0 + 8 * i + 2 * tq + (e & 1), nr + 8 * (e >> 1));
        }
        if (p.ws) splitk_finish<BX>(p, m0, n0);
    }
    }
#endif
}

}  // namespace i8
}  // namespace lowbit

namespace lowbit {
namespace i8 {

// Whether an instance's kernel was compiled for sm_90a (PTX version >= 90), i.e. its wgmma body exists.
template <int BX, bool W4, bool WG, int S>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, gemm_kernel<BX, W4, WG, S>) != cudaSuccess) return false;
    return !WG || attr.ptxVersion >= 90;
}

template <int BX, bool W4, bool WG, int S>
cudaError_t launch(const Args& a, int splits, cudaStream_t st) {
    auto kern = gemm_kernel<BX, W4, WG, S>;
    constexpr size_t smem = smem_bytes<BX, W4, S>();
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
    const dim3 grid((a.m + BX - 1) / BX, (a.n + kBW - 1) / kBW, splits);
    kern<<<grid, kThreads, smem, st>>>(a);
    return cudaGetLastError();
}

// Shared-memory budgets of the two paths: Hopper (227 KB per block) and sm_80 / sm_89 (99 KB on sm_89).
constexpr int kBudgetWg = 200 * 1024;
constexpr int kBudgetMma = 96 * 1024;
constexpr int kBudgetWgSmall = 72 * 1024;  // three CTAs per SM (min_blocks)

}  // namespace i8
}  // namespace lowbit

// The launcher of one weight format: `wg` selects the wgmma (1) or mma.sync (0) instances, `bx` the
// activation rows per CTA; splits < 0 only asks whether the instance exists and can run (cudaSuccess).
#define LOWBIT_I8_CASE(BX, W4, WG, BUDGET)                                                                  \
    if (bx == BX) {                                                                                         \
        constexpr int S = lowbit::i8::slots_for<BX, W4>(BUDGET);                                           \
        if (splits < 0)                                                                                     \
            return lowbit::i8::available<BX, W4, WG, S>() ? cudaSuccess : cudaErrorNoKernelImageForDevice; \
        return lowbit::i8::launch<BX, W4, WG, S>(a, splits, st);                                          \
    }
