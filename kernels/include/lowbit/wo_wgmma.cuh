// Weight-only GEMM on Hopper warpgroup tensor cores (wgmma, sm_90a): the large-M path.
//
// Algorithm
//   Y^T[N, M] = W[N, K] * X[M, K]^T: the dequantized weight tile is wgmma's A operand **from registers**
//   (each warp of a warpgroup decodes its own 16-row strip of the tiled layout, exactly as the mma.sync
//   kernel does, then scales by the group scale in the 16-bit type), X is the B operand in shared memory
//   (K-major, no swizzle, 8x16-byte core matrices), staged by cp.async in a 4-stage ring. Every k-step
//   issues `tiles` wgmma.m64nBNk16 per warpgroup and commits them as one group; decoding step s+1 overlaps
//   the tensor cores working on step s (A registers double-buffered, wait_group 1).
//
// Partitioning
//   block = 2 warpgroups = 8 warps = 8 strips (128 rows of W) x BN rows of X; grid = (ceil(strips/8),
//   ceil(M/BN)). The whole K range per block (no split-K: large M has enough blocks).
//
// Limits
//   sm_90a only (the launcher never selects it elsewhere; other targets compile an empty body). X staged
//   with 16-byte cp.async: K % 8 == 0, ldx % 8 == 0, 16-byte aligned X (the launcher checks). The group
//   scale is applied to the 16-bit weight (one rounding), unlike the mma.sync path's f32 accumulator scaling.
#pragma once

#include "lowbit/mma.cuh"
#include "lowbit/wgmma.cuh"
#include "lowbit/wo_decode.cuh"
#include "lowbit/wo_gemm.cuh"

namespace lowbit {
namespace wo {

template <typename T>
__device__ __forceinline__ uint32_t mul_pair(uint32_t a, uint32_t b);
template <>
__device__ __forceinline__ uint32_t mul_pair<__half>(uint32_t a, uint32_t b) {
    __half2 r = __hmul2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
}
template <>
__device__ __forceinline__ uint32_t mul_pair<__nv_bfloat16>(uint32_t a, uint32_t b) {
    __nv_bfloat162 r = __hmul2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
    return *reinterpret_cast<uint32_t*>(&r);
}

// Scale pair (f16 bits: row g low, row g+8 high) -> two splatted T pairs.
template <typename T>
__device__ __forceinline__ void scale_pairs(uint32_t sp, uint32_t& sg, uint32_t& sg8) {
    const float2 s = __half22float2(*reinterpret_cast<const __half2*>(&sp));
    sg = Pair<T>::splat(s.x);
    sg8 = Pair<T>::splat(s.y);
}

// X ring depth: a stage is refilled two steps after its wgmma group was issued (wait_group 1 + barrier),
// so S - 2 stages are in flight ahead of the tensor cores.
constexpr int kWgStages = 6;
// Weight k-steps in flight per lane (16-byte loads straight from HBM into registers).
constexpr int kWgPrefetch = 4;

// The strip epilogue straight from the accumulators, shared by every register-accumulator wgmma kernel of the
// family (wgmma_kernel below, lowbit/wo_ws.cuh's ws_kernel (scalar stores) and ws_s_kernel, lowbit/wo_ws2.cuh's
// ws2_kernel), so that their outputs stay bit-identical (the harnesses check ws-S against v1).
// One consumer warp's strip: weight rows n0 (= 16 strip + lane / 4) and n0 + 8 with channel scales cs0 / cs1, BX
// activation rows from m0; acc[4c + e] = (weight row n0 + 8 * (e >= 2), activation row m0 + 8c + 2 (lane % 4) +
// (e & 1)) as wgmma m64nBXk16 leaves them. Rows >= M and columns >= N are skipped. add = false: y[m][n] =
// T(acc * cs), one rounding; add = true (K splits): f32 atomicAdd of acc * cs into p.ws[m][n] (zero on entry; the
// caller converts it once every split has added its part). The branch on `add` sits inside the loop for
// readability only: the compiler unswitches it (the SASS equals that of one loop per case, NOTES.md tidy).
template <typename T, int BX>
__device__ __forceinline__ void store_strip(const Args& p, const float (&acc)[BX / 2], int n0, float cs0, float cs1,
                                            int m0, int lane, bool add) {
    const int n1 = n0 + 8;
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int c = 0; c < BX / 8; ++c) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int n = e < 2 ? n0 : n1;
            const int mm = m0 + 8 * c + 2 * (lane & 3) + (e & 1);
            if (mm < p.m && n < p.n) {
                const float v = acc[4 * c + e] * (e < 2 ? cs0 : cs1);
                if (add) {
                    atomicAdd(p.ws + size_t(mm) * p.n + n, v);
                } else {
                    y[size_t(mm) * p.n + n] = to_out<T>(v);
                }
            }
        }
    }
}

template <class Fmt, int BN>
constexpr size_t wgmma_smem_bytes(int n_tables) {
    return size_t(kWgStages) * Fmt::kTiles * BN * 32 + (Fmt::kIsLut ? size_t(n_tables) * Fmt::kEntries * 4 : 0);
}

template <class Fmt, typename T, int BN>
__global__ void __launch_bounds__(kThreads, 1) wgmma_kernel(const Args p) {
#if defined(__CUDA_ARCH__) && (__CUDA_ARCH__ >= 900) && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    constexpr int TS = Fmt::kTiles, KSTEP = TS * 16, S = kWgStages;
    constexpr int SLAB = BN * 32;     // bytes of one 16-column slab of the X tile: BN/8 x 2 core matrices
    constexpr int STAGE = TS * SLAB;  // bytes of one k-step of the X tile
    extern __shared__ __align__(128) unsigned char smem[];
    uint32_t* tab = reinterpret_cast<uint32_t*>(smem + S * STAGE);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int strip = blockIdx.x * kWarps + warp;
    const bool active = strip < p.strips;
    const int m0 = blockIdx.y * BN;
    const int ksteps = p.ksteps;

    if constexpr (Fmt::kIsLut) {
        for (int i = threadIdx.x; i < p.n_tables * Fmt::kEntries; i += kThreads) {
            const int t = i / Fmt::kEntries, e = i - t * Fmt::kEntries;
            int c0, c1;
            Fmt::split(e, c0, c1);
            tab[i] = Pair<T>::pack(p.lut[t * (1 << Fmt::kBits) + c0], p.lut[t * (1 << Fmt::kBits) + c1]);
        }
    }

    // X stage s -> ring slot s % S, in core-matrix order: slab j = column / 16; within a slab the core
    // matrix (row / 8, (column / 8) % 2) at 256 * (row / 8) + 128 * ((column / 8) % 2), row % 8 at 16 bytes.
    const T* x = static_cast<const T*>(p.x);
    auto load_stage = [&](int s) {
        if (s < ksteps) {
            unsigned char* dst = smem + (s % S) * STAGE;
            constexpr int PIECES = BN * KSTEP / 8;
#pragma unroll
            for (int i = threadIdx.x; i < PIECES; i += kThreads) {
                const int r = i / (KSTEP / 8), c8 = i - r * (KSTEP / 8);
                const int gm = m0 + r, gk = s * KSTEP + c8 * 8;
                const bool ok = gm < p.m && gk < p.k;
                unsigned char* d = dst + (c8 >> 1) * SLAB + (r >> 3) * 256 + (c8 & 1) * 128 + (r & 7) * 16;
                cp_async16_zfill(d, ok ? static_cast<const void*>(x + size_t(gm) * p.ldx + gk) : p.x, ok);
            }
        }
        cp_async_commit();  // always: keeps the group count uniform for cp_async_wait
    };

    const size_t lane_off = size_t(strip) * ksteps * 32 + lane;
    const uint32_t* wptr = p.words + lane_off * 4;
    const uint32_t* hptr = Fmt::kHasHi ? p.hi_words + lane_off * 2 : nullptr;
    constexpr int PW = kWgPrefetch;
    uint32_t wb[PW][4], hb[PW][2];
    auto load_w = [&](int i, int step) {
        if (active && step < ksteps) {
            const uint4 v = ld_stream_u4(wptr + size_t(step) * 128);
            wb[i][0] = v.x, wb[i][1] = v.y, wb[i][2] = v.z, wb[i][3] = v.w;
            if constexpr (Fmt::kHasHi) {
                const uint2 h = ld_stream_u2(hptr + size_t(step) * 64);
                hb[i][0] = h.x, hb[i][1] = h.y;
            }
        }
    };

    const uint2* meta = reinterpret_cast<const uint2*>(p.meta) + size_t(strip) * p.groups * 8 + g;
    auto load_meta = [&](int gi) -> uint2 {
        return (active && gi < p.groups) ? __ldg(meta + size_t(gi) * 8) : make_uint2(0, 0);
    };
    int gi = 0, tig = 0;
    uint2 cur = load_meta(0), nxt = load_meta(1);
    GroupCtx ctx;
    uint32_t sg, sg8;
    auto set_group = [&]() {
        Fmt::template ctx<T>(cur.y, ctx);
        if constexpr (Fmt::kIsLut) {
            ctx.tab_g = tab + (cur.y & 0xFF) * Fmt::kEntries;
            ctx.tab_g8 = tab + ((cur.y >> 8) & 0xFF) * Fmt::kEntries;
        }
        scale_pairs<T>(cur.x, sg, sg8);
    };
    set_group();

    for (int s = 0; s < S - 2; ++s) load_stage(s);
#pragma unroll
    for (int i = 0; i < PW; ++i) load_w(i, i);

    float acc[BN / 2];
#pragma unroll
    for (int i = 0; i < BN / 2; ++i) acc[i] = 0.f;
    uint32_t abuf[2][TS][4];

    for (int s0 = 0; s0 < ksteps; s0 += PW) {
#pragma unroll
        for (int i = 0; i < PW; ++i) {
            const int s = s0 + i;
            if (s < ksteps) {
                // Stage s has landed for this thread; the barrier makes it everyone's, and also certifies
                // that every warpgroup finished the wgmma groups <= s-2 (their wait_group 1 at step s-1),
                // so ring slot (s-2) % S may be refilled.
                cp_async_wait<S - 3>();  // stages s+1 .. s+S-3 may still be in flight
                __syncthreads();
                load_stage(s + S - 2);
#pragma unroll
                for (int j = 0; j < TS; ++j) {
                    uint32_t a[4];
                    Fmt::template decode<T>(wb[i], hb[i], j, ctx, a);
                    abuf[i & 1][j][0] = mul_pair<T>(a[0], sg);
                    abuf[i & 1][j][1] = mul_pair<T>(a[1], sg8);
                    abuf[i & 1][j][2] = mul_pair<T>(a[2], sg);
                    abuf[i & 1][j][3] = mul_pair<T>(a[3], sg8);
                    if (++tig == p.gtiles) {
                        tig = 0;
                        ++gi;
                        cur = nxt;
                        nxt = load_meta(gi + 1);
                        set_group();
                    }
                }
                load_w(i, s + PW);
                const unsigned char* stage = smem + (s % S) * STAGE;
                wgmma_fence();
#pragma unroll
                for (int j = 0; j < TS; ++j) {
                    wgmma_rs<T, BN>(acc, abuf[i & 1][j], smem_desc(stage + j * SLAB, 128, 256), 1);
                }
                wgmma_commit();
                wgmma_wait<1>();
            }
        }
    }
    wgmma_wait<0>();
    if (!active) return;

    const int n0 = strip * 16 + g, n1 = n0 + 8;
    const float cs0 = p.chan ? p.chan[n0] : 1.f, cs1 = p.chan ? p.chan[n1] : 1.f;  // chan: [n_pad]
    store_strip<T, BN>(p, acc, n0, cs0, cs1, m0, lane, false);
#else
    // Built for a target without wgmma: the launcher never selects this kernel there (it checks the
    // kernel's PTX version); if it ever runs, fail loudly instead of returning garbage.
    __trap();
#endif
}

// Whether the wgmma kernel of this instance was compiled for sm_90a (PTX version >= 90) and so can run.
template <class Fmt, typename T, int BN>
bool wgmma_available() {
    cudaFuncAttributes attr{};
    return cudaFuncGetAttributes(&attr, wgmma_kernel<Fmt, T, BN>) == cudaSuccess && attr.ptxVersion >= 90;
}

template <class Fmt, typename T, int BN>
cudaError_t launch_wgmma(const Args& a, int mtiles, cudaStream_t s) {
    auto kern = wgmma_kernel<Fmt, T, BN>;
    const size_t smem = wgmma_smem_bytes<Fmt, BN>(a.n_tables);
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
    const dim3 grid((a.strips + kWarps - 1) / kWarps, mtiles);
    kern<<<grid, kThreads, smem, s>>>(a);
    return cudaGetLastError();
}

}  // namespace wo
}  // namespace lowbit

// Defines the wgmma launcher of one format (both output types, BN = 128); used once per inst_*.cu.
// `mtiles` < 0 asks only whether the kernel is available (returns cudaSuccess if so).
#define LOWBIT_WO_INSTANTIATE_WGMMA(NAME, FMT)                                                          \
    cudaError_t lowbit_wo_wgmma_##NAME(const lowbit::wo::Args& a, int dtype, int mtiles, cudaStream_t s) { \
        if (mtiles < 0) {                                                                               \
            const bool ok = dtype == 0 ? lowbit::wo::wgmma_available<FMT, __half, 128>()                \
                                       : lowbit::wo::wgmma_available<FMT, __nv_bfloat16, 128>();        \
            return ok ? cudaSuccess : cudaErrorNoKernelImageForDevice;                                   \
        }                                                                                               \
        return dtype == 0 ? lowbit::wo::launch_wgmma<FMT, __half, 128>(a, mtiles, s)                     \
                          : lowbit::wo::launch_wgmma<FMT, __nv_bfloat16, 128>(a, mtiles, s);             \
    }
