// Weight-only ws4-C (lowbit/wo_ws4.cuh launch_c, NOTES.md ws4-C, sixteenth session): ws-W's K splits (four consumer
// warpgroups, tiles of 256 weight rows x 64 activation rows) as thread-block clusters whose CTAs sum their K slices
// over distributed shared memory: no split-K workspace, no f32 atomics, no convert launch. Its own translation unit
// so that nvcc builds these instances beside ws.cu's.
//
// LOWBIT_WS4_C_PART (harness builds only, benches/micro/wo_ws4_c.cu): compile only the instances of dtype
// LOWBIT_WS4_C_PART / 8 and cluster size LOWBIT_WS4_C_PART % 8 + 1 under the name LOWBIT_WS4_C_FN (every cluster size
// 2 .. 8), so that the harness builds them in parallel; the library build (no LOWBIT_WS4_C_PART) holds the plan and
// the cluster sizes of lib_cs.
#include <cuda.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <type_traits>

#include "lowbit/wo_ws4.cuh"

#ifndef LOWBIT_WS4_C_PART
#define LOWBIT_WS4_C_PART -1
#endif
#ifndef LOWBIT_WS4_C_FN
#define LOWBIT_WS4_C_FN lowbit_wo_ws4_c_int4
#endif

using lowbit::wo::Args;
namespace wows4 = lowbit::wows4;

// ws.cu: ws-W's tensor maps, PDL switch and L2 prefetch depth (shared with ws-W's launches).
cudaError_t ws4_maps(const Args& a, CUtensorMap& xmap, CUtensorMap& wmap);
bool ws4_pdl();
int ws4_pf();
void lowbit_wo_ws4_plan(int m, int strips, int ksteps, int nsm, int* splits);

namespace {

// Cluster sizes the library builds (the plan picks among them; NOTES.md ws4-C). Resident at once on an H100 (132 SMs,
// one 640-thread CTA per SM): 66 of 2, 39 of 3, 30 of 4, 22 of 5, 17 of 6, 15 of 7, 15 of 8 CTAs.
constexpr bool lib_cs(int cs) { return cs == 3 || cs == 4 || cs == 6 || cs == 8; }

constexpr bool has_part(int dtype, int cs) {
    return LOWBIT_WS4_C_PART < 0 ? lib_cs(cs) : LOWBIT_WS4_C_PART == dtype * 8 + (cs - 1);
}

template <typename T, int CS>
cudaError_t launch_c_t(const Args& a, cudaStream_t st, int* clusters) {
    if (clusters) {
        *clusters = wows4::max_active_clusters_c<lowbit::wo::Int4, T, 64, 4, CS>();
        return cudaSuccess;
    }
    CUtensorMap xmap, wmap;
    const cudaError_t e = ws4_maps(a, xmap, wmap);
    if (e != cudaSuccess) return e;
    const bool pdl = ws4_pdl();
    return wows4::launch_c<lowbit::wo::Int4, T, 64, 4, CS>(a, xmap, wmap, st, pdl, pdl ? ws4_pf() : 0);
}

template <typename T>
cudaError_t launch_c_cs(const Args& a, int cs, cudaStream_t st, int* clusters) {
    constexpr int dt = std::is_same<T, __half>::value ? 0 : 1;
    if constexpr (has_part(dt, 2)) if (cs == 2) return launch_c_t<T, 2>(a, st, clusters);
    if constexpr (has_part(dt, 3)) if (cs == 3) return launch_c_t<T, 3>(a, st, clusters);
    if constexpr (has_part(dt, 4)) if (cs == 4) return launch_c_t<T, 4>(a, st, clusters);
    if constexpr (has_part(dt, 5)) if (cs == 5) return launch_c_t<T, 5>(a, st, clusters);
    if constexpr (has_part(dt, 6)) if (cs == 6) return launch_c_t<T, 6>(a, st, clusters);
    if constexpr (has_part(dt, 7)) if (cs == 7) return launch_c_t<T, 7>(a, st, clusters);
    if constexpr (has_part(dt, 8)) if (cs == 8) return launch_c_t<T, 8>(a, st, clusters);
    return cs >= 2 && cs <= 8 ? cudaErrorNotSupported : cudaErrorInvalidValue;
}

}  // namespace

// ws4-C INT4 launch (NC = 4, BX = 64): dtype 0 = f16, 1 = bf16; cs = K slices = CTAs per cluster (2 .. 8). X as ws-W
// needs it (TMA: 16-byte aligned, ldx % 8 == 0, K % 8 == 0). No workspace (a.ws unused). clusters != null: only report
// the resident clusters of that instance (cudaOccupancyMaxActiveClusters) in *clusters and launch nothing.
// cudaErrorNotSupported: that cluster size was not compiled here.
cudaError_t LOWBIT_WS4_C_FN(const Args& a, int dtype, int cs, cudaStream_t st, int* clusters) {
    if (dtype == 0) return launch_c_cs<__half>(a, cs, st, clusters);
    if (dtype == 1) return launch_c_cs<__nv_bfloat16>(a, cs, st, clusters);
    return cudaErrorInvalidValue;
}

#if LOWBIT_WS4_C_PART < 0  // (the harness parts leave the plan to the library build)
namespace {
// Resident clusters of cs CTAs on the current device (cached per device and size; 0 where unknown).
int resident_clusters(int cs) {
    static std::atomic<int> cache[16][9];  // value + 1; 0 = not asked yet
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (dev < 0 || dev >= 16 || cs < 2 || cs > 8) return 0;
    int c = cache[dev][cs].load(std::memory_order_relaxed);
    if (c == 0) {
        int n = 0;
        if (LOWBIT_WS4_C_FN(Args{}, 0, cs, nullptr, &n) != cudaSuccess) n = 0;
        c = n + 1;
        cache[dev][cs].store(c, std::memory_order_relaxed);
    }
    return c - 1;
}
}  // namespace

// ws4-C plan (NOTES.md ws4-C): where ws-W's K-split plan (lowbit_wo_ws4_plan) splits and M >= kWs4CMinM, the cluster
// size among the library's (lib_cs) whose tiles clusters are all resident at once on this device
// (cudaOccupancyMaxActiveClusters, scaled to nsm SMs) and whose cost, k-steps per slice + kFixC, is below the atomics
// split's k-steps per split + kFixA. Returns the cluster size, or 0 (keep the atomics split). force > 1: that cluster size wherever ws-W splits
// (measurement, tests); force == 1: the cheapest resident size wherever ws-W splits, gain or not.
// Cost constants (k-steps of ~0.6 us) from the H100 measurement (harness wo_ws4_c bench, graph replay, same process,
// M = 64): 4096x4096 (16 tiles) atomics at 2 / 4 / 6 / 8 splits 27.7 / 18.4 / 17.2 / 16.3 us (~9 us above its
// k-steps), clusters of 2 / 3 / 4 / 5 / 6 CTAs 26.6 / 20.3 / 16.8 / 15.7 / 15.2 (~7 us above); 8 CTAs (15 clusters
// resident) 24.7: two waves. 11008x4096 (43 tiles): atomics 3 splits 27.75 us, clusters of 2 28.2, of 3 40.8 (39
// resident: two waves). So the plan takes 4096x4096 at M = 40..64 to clusters of 6 (-2..-7%) and keeps the atomics
// split on 11008x4096 and 8192x28672 (32 clusters of 3 would fit: 150 k-steps per slice vs 112, 104.1 vs 84.1 us).
// Below M = 40 the atomics split's finish is cheaper (fewer rows of f32 partials) and the cluster split lost: 4096x4096
// M = 8 / 24 11.6 / 12.6 us atomics vs 13.0 / 13.4 clusters of 6 (M = 40: 13.8-14.0 vs 13.7): kWs4CMinM (the automatic
// plan; force runs any M).
constexpr int kFixA = 12, kFixC = 6, kWs4CMinM = 40;
int lowbit_wo_ws4_c_plan(int m, int strips, int ksteps, int nsm, int force) {
    int sp = 1;
    lowbit_wo_ws4_plan(m, strips, ksteps, nsm, &sp);
    if (sp < 2 || nsm < 1 || (force == 0 && m < kWs4CMinM)) return 0;
    if (force > 1) return force <= 8 && lib_cs(force) ? force : 0;
    int dev_sms = nsm, dev = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) {
        cudaDeviceGetAttribute(&dev_sms, cudaDevAttrMultiProcessorCount, dev);
    }
    (void)cudaGetLastError();
    const int64_t tiles = int64_t((strips + wows4::Cta<4>::kStrips - 1) / wows4::Cta<4>::kStrips) * ((m + 63) / 64);
    const int kper_a = (ksteps + sp - 1) / sp;
    int best = 0, best_cost = force == 1 ? 1 << 30 : kper_a + kFixA;
    for (int cs = 2; cs <= 8; ++cs) {
        if (!lib_cs(cs) || ksteps < cs) continue;
        const int64_t fit = int64_t(resident_clusters(cs)) * nsm / (dev_sms > 0 ? dev_sms : nsm);
        if (tiles > fit) continue;
        const int cost = (ksteps + cs - 1) / cs + kFixC;
        if (cost < best_cost) best = cs, best_cost = cost;
    }
    return best;
}
#endif
