// Weight-only warp-specialized persistent GEMM (lowbit/wo_ws.cuh): the INT4 instances and their launcher, which
// builds the tensor maps of X (TMA, 128-byte swizzle) and of the weight words (one TMA per k-step), and the plan:
// activation tile BX and K splits.
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdlib>

#include "lowbit/pdl.cuh"
#include "lowbit/tma_host.h"
#include "lowbit/wo_ws.cuh"
#include "lowbit/wo_ws4.cuh"

namespace {

using lowbit::wo::Args;
namespace wows = lowbit::wows;
namespace wows4 = lowbit::wows4;

// The weight stage by one TMA of the words as a [strips][ksteps * 128] u32 tensor (box 8 strips x 128 words)
// instead of 8 bulk copies of 512 bytes per k-step (NOTES.md, ws-S / ws v2): on an H100 (harness, same run) ws v1
// at BX = 256, M = 4096 2998 -> 2723 us on 28672x8192, 3016 -> 2608 us on 8192x28672; 11008x4096 M = 64 35.6 ->
// 29.3 us; M = 256 on 28672x8192 193 -> 184 us (1.04x cuBLAS f16).
constexpr bool kWeightTma = true;

// The unsplit kernel's staged epilogue (lowbit/wo_ws.cuh ST: stmatrix.trans + 16-byte stores instead of scalar
// 2-byte stores): OFF. Measured on an H100 (NOTES.md, ws-E; harness, same run) it is 3-7% SLOWER than the scalar
// stores at M = 256..4096 on 28672x8192 and 8192x28672 (M = 1024: 651 -> 687 us, 619 -> 659 us); only 11008x4096
// M = 256 gained (47.3 -> 45.7 us).
constexpr bool kStagedStore = false;

// X[m][ldx] of 16-bit elements as a 2-D tensor {K, M} with a {64, bx} box and 128-byte swizzle (the copy engine
// zero-fills rows >= M and columns >= K). The bit pattern is copied as is, so f16 serves bf16 too.
cudaError_t make_xmap(CUtensorMap& map, const Args& a, int bx) {
    return lowbit::tma::make_2d_sw128(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.x, uint64_t(a.m), uint64_t(a.k),
                                      uint64_t(a.ldx) * 2, uint32_t(bx), uint32_t(wows::kBK));
}

// The tiled weight words: strip s's k-step ks at words[(s * ksteps + ks) * 128 ..], 128 words.
cudaError_t make_wmap(CUtensorMap& map, const Args& a) {
    return lowbit::tma::make_2d(map, CU_TENSOR_MAP_DATA_TYPE_UINT32, CU_TENSOR_MAP_SWIZZLE_NONE, a.words,
                                uint64_t(a.strips), uint64_t(a.ksteps) * 128, uint64_t(a.ksteps) * 512,
                                uint32_t(wows::kStrips), 128u);
}

// Unsplit: ws v1 (register-A wgmma; 10-20% faster than ws-S at every BX without splits, NOTES.md ws-S). K splits: ws-S
// (shared-memory A, the kernel with split support), 3 A buffers at BX = 64, 2 above (the 5-slot ring of BX = 256
// starves with 3).
template <typename T, int BX>
cudaError_t launch_t(const Args& a, int splits, int nsm, cudaStream_t st) {
    CUtensorMap xmap, wmap;
    cudaError_t e = make_xmap(xmap, a, BX);
    if (e != cudaSuccess) return e;
    if (kWeightTma) {
        e = make_wmap(wmap, a);
        if (e != cudaSuccess) return e;
    }
    const CUtensorMap* wm = kWeightTma ? &wmap : nullptr;
    if (splits <= 1) {
        return wows::launch<lowbit::wo::Int4, T, BX, false, kStagedStore>(a, xmap, nsm, st, wm);
    }
    return wows::launch_s<lowbit::wo::Int4, T, BX, BX == 64 ? 3 : 2>(a, xmap, nsm, splits, st, wm);
}

template <typename T>
cudaError_t launch_bx(const Args& a, int bx, int splits, int nsm, cudaStream_t st) {
    if (bx == 64) return launch_t<T, 64>(a, splits, nsm, st);
    if (bx == 128) return launch_t<T, 128>(a, splits, nsm, st);
    return launch_t<T, 256>(a, splits, nsm, st);
}

}  // namespace

// Plan of the ws kernel: activation tile BX = the smallest of 64 / 128 / 256 that holds M (256 beyond), and K
// splits = SMs / tiles (at most 4, at least 8 k-steps per split) where the tiles leave half the SMs or more idle.
// Measured on an H100 (kernels/weight_only/NOTES.md, ws-S): 8192x28672 M = 64 (64 tiles) 232 -> 153 us at 2
// splits, M = 256 BX = 256 (64 tiles) 2 splits 208 us against the best unsplit 270 us (BX = 128); 4096x4096
// M = 64 (32 tiles) 35.3 -> 16.9 us at 4, M = 256 BX = 256 4 splits 30.1 us against 36.3 (BX = 64); 86 tiles
// (11008x4096 at M = 64 / 256) and 128 tiles (4096x4096 M = 1024) are slower split (45.6 vs 36.3, 81.6 vs 52.8,
// 88.5 vs 55.0 us), hence splits only below half the SMs. M = 256 on 28672x8192 / 11008x4096: BX = 256 the fastest
// unsplit (NOTES.md ws v1).
void lowbit_wo_ws_plan(int m, int strips, int ksteps, int nsm, int* bx, int* splits) {
    const int b = m <= 64 ? 64 : m <= 128 ? 128 : 256;
    const int64_t tiles = int64_t((strips + wows::kStrips - 1) / wows::kStrips) * ((m + b - 1) / b);
    int sp = 1;
    if (tiles * 2 <= nsm) {
        sp = int(nsm / tiles);
        sp = sp > 4 ? 4 : sp;
        while (sp > 1 && ksteps < 8 * sp) --sp;
    }
    *bx = b;
    *splits = sp;
}

// INT4 ws launch; dtype 0 = f16, 1 = bf16; bx 64, 128 or 256 (0 = the plan's); splits >= 1 (> 1 adds f32 partials
// into a.ws, zero on entry; the caller converts). nsm < 0 asks only whether the kernel was compiled for sm_90a
// (cudaSuccess if so).
cudaError_t lowbit_wo_ws_int4(const Args& a, int dtype, int bx, int splits, int nsm, cudaStream_t st) {
    using lowbit::wows::available;
    if (nsm < 0) {
        const bool ok = dtype == 0 ? available<lowbit::wo::Int4, __half, 128>()
                                   : available<lowbit::wo::Int4, __nv_bfloat16, 128>();
        return ok ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    }
    if (bx == 0) {
        int sp = 1;
        lowbit_wo_ws_plan(a.m, a.strips, a.ksteps, nsm, &bx, &sp);
    }
    if ((bx != 64 && bx != 128 && bx != 256) || splits < 1) return cudaErrorInvalidValue;
    return dtype == 0 ? launch_bx<__half>(a, bx, splits, nsm, st) : launch_bx<__nv_bfloat16>(a, bx, splits, nsm, st);
}

// ws-W (lowbit/wo_ws4.cuh: four consumer warpgroups, tiles of 256 weight rows x 64 activation rows) plan: K splits
// minimizing rounds x k-steps per unit plus a per-unit overhead (prologue, epilogue, f32 partials: ~6 k-steps),
// at least 8 k-steps per split, at most 8 splits. E.g. H100 (132 SMs) at M <= 64: 28672x8192 (112 tiles) 1 split,
// 8192x28672 (32 tiles) 4, 11008x4096 (43 tiles) 3, 4096x4096 (16 tiles) 8.
void lowbit_wo_ws4_plan(int m, int strips, int ksteps, int nsm, int* splits) {
    constexpr int kStrips = wows4::Cta<4>::kStrips;
    const int64_t tiles = int64_t((strips + kStrips - 1) / kStrips) * ((m + 63) / 64);
    int best = 1;
    int64_t best_cost = -1;
    for (int sp = 1; sp <= 8; ++sp) {
        if (sp > 1 && ksteps < 8 * sp) break;
        const int64_t units = tiles * sp, rounds = (units + nsm - 1) / nsm;
        const int64_t kper = (ksteps + sp - 1) / sp;
        const int64_t cost = rounds * (kper + 6);
        if (best_cost < 0 || cost < best_cost) best = sp, best_cost = cost;
    }
    *splits = best;
}

// ws-W under programmatic dependent launch (NOTES.md ws-PDL, twelfth session): where lowbit::pdl_runs() allows it
// (sm_90, LOWBIT_PDL not 0), ws-W kernels start while the previous kernel of the stream drains and pull the first
// kWs4PdlPf weight stages of their first unit into L2 before griddepcontrol.wait. LOWBIT_WO_WS4_PDL=0 in the
// environment launches them without the attribute (A/B); LOWBIT_WO_WS4_PF=<n> sets the prefetch depth (measurement).
constexpr int kWs4PdlPf = 4;
bool ws4_pdl() {
    static const bool on = [] {
        const char* e = getenv("LOWBIT_WO_WS4_PDL");
        return !(e && e[0] == '0');
    }();
    return on && lowbit::pdl_runs();
}
int ws4_pf() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS4_PF");
        return e && e[0] >= '0' && e[0] <= '9' ? atoi(e) : kWs4PdlPf;
    }();
    return v;
}

// ws-W's maps: X (box 64 x 64) and the weight words (box 16 strips x 128 words).
cudaError_t ws4_maps(const Args& a, CUtensorMap& xmap, CUtensorMap& wmap) {
    cudaError_t e = make_xmap(xmap, a, 64);
    if (e != cudaSuccess) return e;
    return lowbit::tma::make_2d(wmap, CU_TENSOR_MAP_DATA_TYPE_UINT32, CU_TENSOR_MAP_SWIZZLE_NONE, a.words,
                                uint64_t(a.strips), uint64_t(a.ksteps) * 128, uint64_t(a.ksteps) * 512,
                                uint32_t(wows4::Cta<4>::kStrips), 128u);
}

// ws-W INT4 launch (NC = 4, BX = 64); dtype 0 = f16, 1 = bf16; splits >= 1 (0 = the plan's; > 1 adds f32 partials
// into a.ws, zero on entry; the caller converts). nsm < 0 asks only whether the kernel was compiled for sm_90a.
cudaError_t lowbit_wo_ws4_int4(const Args& a, int dtype, int splits, int nsm, cudaStream_t st) {
    using lowbit::wows4::available;
    if (nsm < 0) {
        const bool ok = dtype == 0 ? available<lowbit::wo::Int4, __half, 64, 4>()
                                   : available<lowbit::wo::Int4, __nv_bfloat16, 64, 4>();
        return ok ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    }
    if (splits == 0) lowbit_wo_ws4_plan(a.m, a.strips, a.ksteps, nsm, &splits);
    if (splits < 1) return cudaErrorInvalidValue;
    CUtensorMap xmap, wmap;
    const cudaError_t e = ws4_maps(a, xmap, wmap);
    if (e != cudaSuccess) return e;
    const bool pdl = ws4_pdl();
    const int pf = pdl ? ws4_pf() : 0;
    return dtype == 0
               ? wows4::launch<lowbit::wo::Int4, __half, 64, 4>(a, xmap, nsm, splits, st, &wmap, pdl, pf)
               : wows4::launch<lowbit::wo::Int4, __nv_bfloat16, 64, 4>(a, xmap, nsm, splits, st, &wmap, pdl, pf);
}

// ws-W stream-K (lowbit/wo_ws4.cuh SK, NOTES.md ws-SK): every SM takes ~tiles x ksteps / SMs k-steps, tiles cut across
// CTAs are summed in the kernel (no convert launch). Plan: stream-K only where the K-split plan (lowbit_wo_ws4_plan)
// keeps one split and its tiles leave SMs idle in its single round (tiles < SMs), the one case it measured faster:
// H100 (132 SMs, wo_small_m mid, graph replay, cuBLAS f16 same run) 28672x8192 (112 tiles x 128 k-steps, 20 SMs idle)
// M = 32 / 48 / 64: 84.3 / 85.6 / 88.1 us vs K-split 88.6 / 89.2 / 90.5. Where the K-split plan splits, stream-K lost:
// 8192x28672 (32 tiles, 4 splits) 86-90 vs 82-85 us, 11008x4096 (43 tiles, 3 splits) 28.3 vs 27.6 at M = 64,
// 4096x4096 (16 tiles, 8 splits) 27 vs 14-16. Also each SM's run at least 8 k-steps (the K splits' minimum): small
// weights (forced ws plans only) keep the unsplit tiles. Returns the stream-K grid, or 0 for the split plan.
int lowbit_wo_ws4_sk_plan(int m, int strips, int ksteps, int nsm) {
    int sp = 1;
    lowbit_wo_ws4_plan(m, strips, ksteps, nsm, &sp);
    Args a{};
    a.m = m, a.strips = strips, a.ksteps = ksteps;
    const int64_t work = wows4::sk_work<64, 4>(a), tiles = work / ksteps;
    return sp == 1 && tiles < nsm && work >= 8 * int64_t(nsm) ? wows4::sk_grid<64, 4>(a, nsm) : 0;
}

// Zeroed workspace bytes of the stream-K launch on nsm SMs.
int64_t lowbit_wo_ws4_sk_ws_bytes(int m, int strips, int ksteps, int nsm) {
    Args a{};
    a.m = m, a.strips = strips, a.ksteps = ksteps;
    return (wows4::sk_ws_bytes<64, 4>(wows4::sk_grid<64, 4>(a, nsm)) + 255) / 256 * 256;
}

// ws-W stream-K INT4 launch (NC = 4, BX = 64) on nsm SMs; a.ws: lowbit_wo_ws4_sk_ws_bytes zeroed bytes (left zero).
cudaError_t lowbit_wo_ws4_sk_int4(const Args& a, int dtype, int nsm, cudaStream_t st) {
    if (nsm < 1) return cudaErrorInvalidValue;
    CUtensorMap xmap, wmap;
    const cudaError_t e = ws4_maps(a, xmap, wmap);
    if (e != cudaSuccess) return e;
    const bool pdl = ws4_pdl();
    const int pf = pdl ? ws4_pf() : 0;
    return dtype == 0 ? wows4::launch_sk<lowbit::wo::Int4, __half, 64, 4>(a, xmap, nsm, st, &wmap, pdl, pf)
                      : wows4::launch_sk<lowbit::wo::Int4, __nv_bfloat16, 64, 4>(a, xmap, nsm, st, &wmap, pdl, pf);
}

// ws-SKv (thirteenth session, NOTES.md): ws v1's geometry (tiles of 128 weight rows x 256 activation rows, two
// consumer warpgroups) on ws-W's stream-K schedule (lowbit/wo_ws4.cuh ws4_kernel NC = 2, BX = 256): every SM takes
// ~tiles x ksteps / SMs k-steps instead of whole tiles, tiles cut across CTAs are summed by their owner through the
// zeroed workspace (no convert launch). Plan: where the ws plan (lowbit_wo_ws_plan) runs BX = 256 unsplit, its last
// round of tiles leaves SMs idle (tiles < kWsSkMaxFill x rounds x SMs) and each SM's run is at least one tile's
// k-steps (a tile is cut across at most two CTAs: one 128 KB slot per owner). Measured on an H100 (lowbit-bench graph
// replay, short passes, same call as main's bench; NOTES.md ws-SKv): 28672x8192 M = 256 / 512 / 768 -6 / -5 / -8%
// (224 / 448 / 672 tiles: 0.85 of the rounds' SMs; hot passes at M = 256: 0), 11008x4096 M = 512 -11% (172: 0.65),
// 8192x28672 M = 768 -8% (192: 0.73); left out as measured behind: 11008x4096 M = 256 (runs of 42 k-steps, 3 CTAs per
// tile: +2% short, +11% hot), 4096x4096 M = 768 (+4%), 11008x4096 M = 1024 (0.87 filled: +1%). force: 1 = every
// BX = 256 ws plan, split or not (tests). Returns the stream-K grid, or 0 for the ws plan.
constexpr double kWsSkMaxFill = 0.86;
int lowbit_wo_ws_sk_plan(int m, int strips, int ksteps, int nsm, int force) {
    Args a{};
    a.m = m, a.strips = strips, a.ksteps = ksteps;
    int bx = 0, sp = 1;
    lowbit_wo_ws_plan(m, strips, ksteps, nsm, &bx, &sp);
    if (bx != 256 || nsm < 1) return 0;
    const int grid = wows4::sk_grid<256, 2>(a, nsm);
    if (force == 1) return grid;
    const int64_t work = wows4::sk_work<256, 2>(a), tiles = work / ksteps, rounds = (tiles + nsm - 1) / nsm;
    const bool tail = double(tiles) < kWsSkMaxFill * double(rounds * nsm);
    return sp == 1 && tail && work >= int64_t(ksteps) * nsm && ksteps >= 16 ? grid : 0;
}

// Zeroed workspace bytes of the ws-SKv launch on nsm SMs.
int64_t lowbit_wo_ws_sk_ws_bytes(int m, int strips, int ksteps, int nsm) {
    Args a{};
    a.m = m, a.strips = strips, a.ksteps = ksteps;
    return (wows4::sk_ws_bytes<256, 2>(wows4::sk_grid<256, 2>(a, nsm)) + 255) / 256 * 256;
}

// ws-SKv INT4 launch (NC = 2, BX = 256) on nsm SMs; a.ws: lowbit_wo_ws_sk_ws_bytes zeroed bytes (left zero). PDL and
// the L2 prefetch of the first weight stages as ws-W (ws4_pdl / ws4_pf). nsm < 0 asks only whether the kernel was
// compiled for sm_90a.
cudaError_t lowbit_wo_ws_sk_int4(const Args& a, int dtype, int nsm, cudaStream_t st) {
    static_assert(wows4::Cta<2>::kStrips == wows::kStrips, "make_wmap's box is the NC = 2 tile's strips");
    if (nsm < 0) {
        cudaFuncAttributes attr{};
        const cudaError_t e = dtype == 0
                                  ? cudaFuncGetAttributes(&attr, wows4::ws4_kernel<lowbit::wo::Int4, __half, 256, 2, true, true>)
                                  : cudaFuncGetAttributes(&attr, wows4::ws4_kernel<lowbit::wo::Int4, __nv_bfloat16, 256, 2, true, true>);
        return e == cudaSuccess && attr.ptxVersion >= 90 ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    }
    if (nsm < 1) return cudaErrorInvalidValue;
    CUtensorMap xmap, wmap;
    cudaError_t e = make_xmap(xmap, a, 256);
    if (e != cudaSuccess) return e;
    e = make_wmap(wmap, a);  // box 8 strips x 128 words = Cta<2>::kStrips
    if (e != cudaSuccess) return e;
    const bool pdl = ws4_pdl();
    const int pf = pdl ? ws4_pf() : 0;
    return dtype == 0 ? wows4::launch_sk<lowbit::wo::Int4, __half, 256, 2>(a, xmap, nsm, st, &wmap, pdl, pf)
                      : wows4::launch_sk<lowbit::wo::Int4, __nv_bfloat16, 256, 2>(a, xmap, nsm, st, &wmap, pdl, pf);
}
