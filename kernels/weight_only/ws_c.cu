// Weight-only ws-C (lowbit/wo_ws.cuh launch_c, NOTES.md ws-C): split-K through thread-block clusters for the INT4 ws
// kernels. The K slices of a tile run on the CTAs of one 2- or 4-CTA cluster and are summed over distributed shared
// memory: no split-K workspace, no atomics, no convert launch. Its own translation unit so that nvcc builds these
// instances beside ws.cu's.
//
// LOWBIT_WS_C_PART (harness builds only, benches/micro/wo_ws_c.cu): compile one part ((2 x dtype + mainloop) x 3 + BX
// index) of the instances under the name LOWBIT_WS_C_FN, so that the harness builds them in parallel; the library
// build (no LOWBIT_WS_C_PART) holds the plan and the v1-mainloop instances.
#include <cuda.h>
#include <cuda_runtime.h>

#include <type_traits>

#include "lowbit/tma_host.h"
#include "lowbit/wo_ws.cuh"

#ifndef LOWBIT_WS_C_PART
#define LOWBIT_WS_C_PART -1
#endif
#ifndef LOWBIT_WS_C_FN
#define LOWBIT_WS_C_FN lowbit_wo_ws_c_int4
#endif

namespace {

using lowbit::wo::Args;
namespace wows = lowbit::wows;

template <typename T, int BX, int CS, bool SS>
cudaError_t launch_c_t(const Args& a, cudaStream_t st, int* clusters) {
    if (clusters) {
        *clusters = wows::max_active_clusters<lowbit::wo::Int4, T, BX, CS, SS>();
        return cudaSuccess;
    }
    CUtensorMap xmap, wmap;
    cudaError_t e = lowbit::tma::make_2d_sw128(xmap, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.x, uint64_t(a.m), uint64_t(a.k),
                                               uint64_t(a.ldx) * 2, uint32_t(BX), uint32_t(wows::kBK));
    if (e != cudaSuccess) return e;
    e = lowbit::tma::make_2d(wmap, CU_TENSOR_MAP_DATA_TYPE_UINT32, CU_TENSOR_MAP_SWIZZLE_NONE, a.words,
                             uint64_t(a.strips), uint64_t(a.ksteps) * 128, uint64_t(a.ksteps) * 512,
                             uint32_t(wows::kStrips), 128u);
    if (e != cudaSuccess) return e;
    return wows::launch_c<lowbit::wo::Int4, T, BX, CS, SS>(a, xmap, wmap, st);
}

// Part p of the harness builds holds (dtype, mainloop, BX) = (p / 6, p / 3 % 2, 64 << p % 3). The library builds
// the v1 mainloop only (ws-C on ws-S's mainloop measured 7-45% slower everywhere: harness only).
constexpr bool has_part(int dtype, int mainloop, int bxi) {
    return LOWBIT_WS_C_PART < 0 ? mainloop == 0 : LOWBIT_WS_C_PART == (dtype * 2 + mainloop) * 3 + bxi;
}

template <typename T, bool SS>
cudaError_t launch_c_bx(const Args& a, int bx, int cs, cudaStream_t st, int* clusters) {
    constexpr int dt = std::is_same<T, __half>::value ? 0 : 1, ml = SS ? 1 : 0;
    if constexpr (has_part(dt, ml, 0)) {
        if (bx == 64 && cs == 2) return launch_c_t<T, 64, 2, SS>(a, st, clusters);
        if (bx == 64 && cs == 4) return launch_c_t<T, 64, 4, SS>(a, st, clusters);
    }
    if constexpr (has_part(dt, ml, 1)) {
        if (bx == 128 && cs == 2) return launch_c_t<T, 128, 2, SS>(a, st, clusters);
        if (bx == 128 && cs == 4) return launch_c_t<T, 128, 4, SS>(a, st, clusters);
    }
    if constexpr (has_part(dt, ml, 2)) {
        if (bx == 256 && cs == 2) return launch_c_t<T, 256, 2, SS>(a, st, clusters);
        if (bx == 256 && cs == 4) return launch_c_t<T, 256, 4, SS>(a, st, clusters);
    }
    return (bx == 64 || bx == 128 || bx == 256) && (cs == 2 || cs == 4) ? cudaErrorNotSupported : cudaErrorInvalidValue;
}

}  // namespace

void lowbit_wo_ws_plan(int, int, int, int, int*, int*);  // ws.cu

// ws-C INT4 launch: dtype 0 = f16, 1 = bf16; bx 64 / 128 / 256; cs (K slices = CTAs per cluster) 2 or 4; mainloop 0 =
// ws v1 (register-A wgmma), 1 = ws-S (shared-memory A). X as the ws kernels need it (TMA: 16-byte aligned, ldx % 8 == 0,
// K % 8 == 0). clusters != null: only report the resident clusters of that instance (cudaOccupancyMaxActiveClusters)
// in *clusters and launch nothing. cudaErrorNotSupported: that instance was not compiled here (mainloop 1 in the
// library; the other parts' instances in a harness part).
cudaError_t LOWBIT_WS_C_FN(const Args& a, int dtype, int bx, int cs, int mainloop, cudaStream_t st, int* clusters) {
    if (dtype != 0 && dtype != 1) return cudaErrorInvalidValue;
    if (mainloop != 0 && mainloop != 1) return cudaErrorInvalidValue;
    if (dtype == 0) return mainloop ? launch_c_bx<__half, true>(a, bx, cs, st, clusters)
                                    : launch_c_bx<__half, false>(a, bx, cs, st, clusters);
    return mainloop ? launch_c_bx<__nv_bfloat16, true>(a, bx, cs, st, clusters)
                    : launch_c_bx<__nv_bfloat16, false>(a, bx, cs, st, clusters);
}

// ws-C plan (NOTES.md ws-C): where the ws plan (lowbit_wo_ws_plan) splits K (its tiles leave half the SMs or more
// idle) and M >= kWsCMinM, the split runs as 2-CTA clusters with the smallest activation tile BX whose 2 x tiles CTAs
// fit one wave (<= nsm), if they fill more than half of it; returns the K slices per cluster (2) and *bx, else 0
// (keep the plan). Measured on an H100 (harness, graph replay, rotated weights, cuBLAS f16 same run), ws-C v1 vs the
// atomics split: 8192x28672 M = 128 BX 128 136.1 vs 159.0 us, M = 256 BX 256 181.0 vs 231.6; 4096x4096 M = 128 BX 64
// 20.9 vs 22.9, M = 256 BX 128 24.8 vs 30.5, M = 512 BX 256 30.6 vs 44.5. 4-CTA clusters lost everywhere (30 of them
// resident on 132 SMs: 128 CTAs take two waves), 2 x tiles beyond one wave too (8192x28672 M = 512 381 vs 366 unsplit,
// 11008x4096 M = 256 60.0 vs 46.3), and with 64 CTAs it is a toss-up (4096x4096 M = 128 BX 128: 24.3 vs 22.9).
#if LOWBIT_WS_C_PART < 0  // (the harness parts leave the plan to the library build)
constexpr int kWsCMinM = 128;
int lowbit_wo_ws_c_plan(int m, int strips, int ksteps, int nsm, int* bx) {
    int pbx = 0, psp = 1;
    lowbit_wo_ws_plan(m, strips, ksteps, nsm, &pbx, &psp);
    if (psp < 2 || m < kWsCMinM) return 0;
    const int64_t nt = (strips + wows::kStrips - 1) / wows::kStrips;
    for (int b = 64; b <= 256; b *= 2) {
        const int64_t ctas = nt * ((m + b - 1) / b) * 2;
        if (ctas <= nsm) {
            if (2 * ctas <= nsm) return 0;
            *bx = b;
            return 2;
        }
    }
    return 0;
}
#endif
