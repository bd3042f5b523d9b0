// Warp-specialized persistent int8 GEMM (W8A8 and W4A8, large M, sm_90a): the instances (BX = 64, 128, 256
// activation rows per tile, W8 and W4 weights) and their launchers. See lowbit/i8_ws_gemm.cuh for the algorithm.
//
// The activation tensor map (and, for f16 / bf16 output, the output map of the TMA-store epilogue, v13) is encoded
// per call on the host (lowbit/tma_host.h: cuTensorMapEncodeTiled through the runtime's driver entry point, no
// -lcuda) and passed by value as a __grid_constant__ kernel parameter.
#include <cuda.h>
#include <cuda_runtime.h>
#include <stdlib.h>
#include <string.h>

#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/launch.cuh"
#include "lowbit/pdl.cuh"
#include "lowbit/tma_host.h"

// Automatic rasterization group: 4 activation tiles (measured best of {none, 16 MB of panels, 4} at M >= 1024 on
// 4096x4096, 28672x8192, 8192x28672 for BX = 128 and 256, H100; NOTES.md v5).
int lowbit_i8_ws_group(int m, int k, int bx) {
    (void)m, (void)k, (void)bx;
    return 4;
}

// The ws plan (NOTES v12, v14, v15): tile width BX and split-K factor. Returns BX; *splits = K slices (1 = no
// split-K), *sps = stages per slice. force_bx (64 / 128 / 256, 0 = free) fixes the tile width.
//
// M <= 64 (v15, BX = 64: wider tiles only add rows past M): a bandwidth model fitted on the H100 sweep of NOTES v15
// (M = 16, 11 shapes, W8 and W4-g128, slices 1..8): time = waves x kFixUs + max(weight bytes / HBM, waves x stages
// per unit x per-stage time of one SM) + kSplitUs if split; the per-stage time is 0.234 us (W8, 16 KB through the
// bulk-copy ring) or 0.53 us (W4, the expansion); split units hold >= 8 stages, one wave of <= 2 units per SM; ties go
// to more slices. It picks the swept best on 9 of the 11 shapes (W8 and W4), within 3% on the other two.
//
// Larger M: the wave model. Modeled time of a plan = waves x (stages per unit x BX / eff(BX) + kRedPerKB x slab KB if
// split), waves = ceil(units / SMs), units = tiles x slices; eff = a BX-wide tile's throughput relative to BX = 256,
// fitted on the H200 sweep of NOTES v11 (W8: 0.85 at 128, 0.6 at 64; W4: 0.6 and 0.33, its expansion costing the same
// per stage at every BX); ties go to the wider tile, then to fewer slices. The split-K term (v15) is the slab's red
// time: every unit adds its BX x 128 int32 slab into the workspace at ~3.4 GB/s per SM (H100, NOTES v15: a 128 KB slab
// costs ~37 us, a 32 KB slab ~10 us, whatever the number of units), i.e. kRedPerKB = 91 stage-units per KB. With it
// the plan weighs split-K everywhere (v14 only where the unsplit tiles left > 1/4 of the SMs idle, with a constant
// cost per split) and picks the measured best at all 24 points of the v15 sweep (M = 256 on 11 shapes, 1024x8192 at
// M = 1024; W8 and W4-g128), except 1024x8192 W4 at M = 256 (64 x 4; v14 measured it within 3% of 128 x 8).
// v17 (NOTES v17): W8 at M >= kPPMinM runs its unsplit BX = 128 tiles on the ping-pong consumers (ws_kernel<128,
// false, false, true>: each consumer warpgroup a whole 128 x 128 tile, one warpgroup's epilogue under the other's
// wgmmas). The wave model then also prices the epilogue, which the cooperative tiles leave exposed: kEpiStages
// stage-times of a BX-wide tile per tile (H100, NOTES v17: 3.0-4.4 us per BX = 256 tile against ~0.7 us per stage),
// and once per CTA for the ping-pong tiles (the last unit's epilogue has nothing to hide under); a ping-pong unit's
// mainloop runs at the BX = 256 tile's rate per MAC (kEffPP = 1). Ties go to the wider cooperative tile. Measured
// (H100, same run): ping-pong ahead at M = 4096 on 9 of 11 bench shapes (+2..+17%; the other two within 3%), at
// M = 1024 on the large-N shapes (18560x4096 +18%, 8192x28672 +7%); the plan picks BX 256 where they tied or lost.
// LOWBIT_I8_WS_PP=0 in the environment (read per call) turns it off, =1 on.
constexpr bool kPPDefault = true;
constexpr int64_t kPPMinM = 1024;
constexpr double kEffPP = 1.0, kEpiStages = 5.0;
static bool pp_enabled(int64_t m) {
    const char* e = getenv("LOWBIT_I8_WS_PP");
    return m >= kPPMinM && (e && *e ? *e != '0' : kPPDefault);
}
// v18 (2-CTA weight-multicast ping-pong) and v19 (W4 ping-pong): measured slower (NOTES v18 / v19), code removed.

// v20 (NOTES v20): W4 at 64 < M < 1024 may split K in two with the slices in one 2-CTA cluster, reduced through
// distributed shared memory (no workspace, no L2 adds), for BX = 128 / 256 tiles. Measured (H100, same run, 11 bench
// shapes at M = 256): 17-29% faster than the shipped plan on the six shapes where the model takes it (4096x4096 21.4 ->
// 17.5 us, 4096x11008 46.7 -> 34.8, 8192x8192 45.7 -> 37.9, 8192x28672 130.7 -> 103.4, 4096x8192 39.2 -> 27.7,
// 2560x5120 25.0 -> 19.6); 4 or 8 slices per cluster measured slower (fewer clusters of 4 / 8 fit at once). The wave
// model prices the cluster finish at kCsplitRows stage-units per tile row (~3 us at BX 128, ~6 us at BX 256), once
// per wave. LOWBIT_I8_WS_CSPLIT=0 / 1 in the environment (read per call) turns it off / on; unset: kCsplitDefault.
constexpr bool kCsplitDefault = true;
constexpr int64_t kCsplitMaxM = 1023;
constexpr double kCsplitRows = 8.0;
static bool csplit_enabled() {
    const char* e = getenv("LOWBIT_I8_WS_CSPLIT");
    return e && *e ? *e != '0' : kCsplitDefault;
}
// Whether a ws plan (m, W4?, bx, splits) runs as cluster split-K (no workspace) rather than slab split-K.
// v24: W8 too, at BX = 64 only (NOTES v20's W8 sweep at M = 256: 1024x8192 64 x 2 cluster 14.4 us vs the plan's 64 x 4
// slab adds 17.3, cuBLASLt 10.1; 128 x 2 clusters lost to the unsplit BX 64 tiles, e.g. 4096x4096 15.1 vs ~11.5, and
// the wave model at BX 128 comes within 1% of taking them there, so W8 stays off BX 128 / 256 clusters).
bool lowbit_i8_ws_csplit(int64_t m, bool w4, int bx, int splits) {
    return m > 64 && m <= kCsplitMaxM && splits == 2 && (w4 ? bx >= 128 : bx == 64) && csplit_enabled();
}
int lowbit_i8_ws_plan(int64_t n, int64_t m, int64_t k, bool w4, int nsm, int force_bx, int* splits, int* sps) {
    const int64_t nt = (n + lowbit::i8::kBW - 1) / lowbit::i8::kBW, sms = nsm > 0 ? nsm : 1;
    const int ksteps = int((k + lowbit::i8::kBK - 1) / lowbit::i8::kBK);
    if (m <= 64 && (force_bx == 0 || force_bx == 64)) {
        constexpr double kFixUs = 4.2, kHbmBytesPerUs = 3.0e6, kSplitUs = 3.0;
        const double stage_us = w4 ? 0.53 : 0.234;
        const double bytes = double(nt) * ksteps * (w4 ? 8192 : 16384);
        int best_s = 1;
        double best = 0;
        for (int s = 1; s <= 16; ++s) {
            if (s > 1 && nt * s > 2 * sms) break;
            const int per = (ksteps + s - 1) / s, se = (ksteps + per - 1) / per;
            if (se != s || (s > 1 && per < 8)) continue;
            const double waves = double((nt * s + sms - 1) / sms);
            const double stream = bytes / kHbmBytesPerUs, sm = waves * per * stage_us;
            const double t = waves * kFixUs + (stream > sm ? stream : sm) + (s > 1 ? kSplitUs : 0.0);
            if (s == 1 || t <= best) best = t, best_s = s;
        }
        *splits = best_s;
        *sps = (ksteps + best_s - 1) / best_s;
        return 64;
    }
    constexpr double kRedPerKB = 91;
    const double eff[3] = {1.0, w4 ? 0.6 : 0.85, w4 ? 0.33 : 0.6};
    const bool pp = !w4 && pp_enabled(m);
    int best = 0, best_s = 1;
    double best_cost = 0;
    for (int i = 0; i < 3; ++i) {
        const int bx = 256 >> i;
        if (force_bx && bx != force_bx) continue;
        const int64_t tiles = nt * ((m + bx - 1) / bx);
        for (int s = 1; s <= 16; ++s) {
            if (s > 1 && tiles * s > 2 * sms) break;
            const int per = (ksteps + s - 1) / s, se = (ksteps + per - 1) / per;
            if (se != s || (s > 1 && per < 4)) continue;
            const double slab_kb = s > 1 ? bx / 2.0 : 0.0;  // BX x 128 int32
            double cost = double((tiles * s + sms - 1) / sms) * (per * bx / eff[i] + kRedPerKB * slab_kb);
            if (s > 1 && lowbit_i8_ws_csplit(m, w4, bx, s))  // v20: the cluster finish instead of the slab adds
                cost = double((tiles * s + sms - 1) / sms) * (per * bx / eff[i] + kCsplitRows * bx);
            if (pp) {  // v17: the epilogue priced; unsplit BX 128 runs ping-pong
                if (bx == 128 && s == 1) {
                    cost = double((tiles + sms - 1) / sms) * per * bx / kEffPP + kEpiStages * 256;
                } else {
                    cost += double((tiles * s + sms - 1) / sms) * kEpiStages * bx;
                }
            }
            if (best == 0 || cost < best_cost) best = bx, best_cost = cost, best_s = s;
        }
    }
    if (best == 0) best = force_bx ? force_bx : 256;
    *splits = best_s;
    *sps = (ksteps + best_s - 1) / best_s;
    return best;
}

// Workspace bytes of a ws plan with split-K (0 without): one BX x 128 int32 slab per output tile, then one arrival
// counter per tile (both zero between calls).
int64_t lowbit_i8_ws_workspace(int64_t n, int64_t m, int bx, int splits, int64_t* counters_off) {
    if (splits <= 1) {
        *counters_off = 0;
        return 0;
    }
    const int64_t tiles = (n + lowbit::i8::kBW - 1) / lowbit::i8::kBW * ((m + bx - 1) / bx);
    *counters_off = tiles * bx * lowbit::i8::kBW * 4;
    return *counters_off + (tiles * 4 + 255) / 256 * 256;
}

// Options of lowbit_i8_launch_ws_ex (v13).
// LOWBIT_I8_WS_BULK_RED (v16, harness only): split-K slabs by bulk reduction from shared memory instead of
// red.global per thread; measured equal (H100, 302 split configurations, median -0.2%), so not in the default.
constexpr int LOWBIT_I8_WS_TMA_STORE = 1, LOWBIT_I8_WS_RING_SCALES = 2, LOWBIT_I8_WS_BULK_RED = 4;
// v17 (harness): LOWBIT_I8_WS_SKIP_EPI = a timing probe without the epilogue (no output written);
// LOWBIT_I8_WS_LAG(d) = W8 consumer warpgroup 1 started d (1..3) stages after warpgroup 0 (NOTES v17).
constexpr int LOWBIT_I8_WS_SKIP_EPI = 8;
constexpr int LOWBIT_I8_WS_LAG_SHIFT = 4;
// v17: LOWBIT_I8_WS_PP = W8 at BX = 128 without split-K on the ping-pong consumers (each warpgroup a whole
// 128 x 128 tile, the two taking turns; ws_kernel<128, false, false, true>).
constexpr int LOWBIT_I8_WS_PP = 64;
// v20: split-K (a.steps_per_split, a.ws == nullptr) with the slices of a tile in one thread-block cluster of 2..8 CTAs,
// reduced through distributed shared memory (kernel flags bit 6; lowbit/i8_ws_gemm.cuh csplit_finish): grid = units,
// one unit per CTA, no workspace. Cooperative consumers only (never ping-pong).
constexpr int LOWBIT_I8_WS_CSPLIT = 256;
// v24: programmatic dependent launch (kernel flags bit 7: the first S weight stages of the CTA's first unit
// prefetched into L2 before griddepcontrol.wait).
constexpr int LOWBIT_I8_WS_PDL = 512;
// v26 (measurement switch): PDL on unsplit cooperative grids too (LOWBIT_I8_WS_PDL=2; never on ping-pong grids).
constexpr int LOWBIT_I8_WS_PDL_UNSPLIT = 1024;
constexpr int LOWBIT_I8_WS_DEFAULT = LOWBIT_I8_WS_TMA_STORE | LOWBIT_I8_WS_RING_SCALES;
// v24 (NOTES v24): the library's split-K ws launches (slab or cluster split) use PDL at M < kPdlMaxM (measured there:
// M = 9..16 and 256 on the issue's nine shapes); unsplit grids keep the plain launch (measured slower with PDL).
// LOWBIT_I8_WS_PDL=0 / 1 in the environment (read per call) turns it off / on (split grids) at every M, =2 on for
// split and unsplit cooperative grids at every M (v26, for measurements); LOWBIT_PDL=0 turns off every PDL launch of
// the library. v26: a PDL launch runs the PDL instance of the kernel (ws_pdl.cu), every other launch the instance
// without the griddepcontrol code (pre-v24 SASS).
constexpr int64_t kPdlMaxM = 1024;
static int pdl_opt(int64_t m) {
    const char* e = getenv("LOWBIT_I8_WS_PDL");
    if (e && *e == '2') return LOWBIT_I8_WS_PDL | LOWBIT_I8_WS_PDL_UNSPLIT;
    return (e && *e ? *e != '0' : m < kPdlMaxM) ? LOWBIT_I8_WS_PDL : 0;
}
// v26 (ws_pdl.cu): launches ws_kernel<bx, w4, w4, false, true> (W8, or W4 with the shared-memory expansion) with the
// PDL attribute (and clusters of `cluster` CTAs along x when cluster > 1), flags | 128.
cudaError_t lowbit_i8_ws_launch_pdl(const lowbit::i8::Args& a, int bx, bool w4, const CUtensorMap& map,
                                    const CUtensorMap& ymap, int flags, int group, unsigned grid, unsigned cluster,
                                    cudaStream_t st);

namespace {

// X [m, k] int8 row-major (ldx bytes per row), box = BX rows x 128 bytes, 128-byte swizzle, zero fill.
cudaError_t make_xmap(CUtensorMap& map, const lowbit::i8::Args& a, int bx) {
    return lowbit::tma::make_2d_sw128(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.x, uint64_t(a.m), uint64_t(a.k),
                                      uint64_t(a.ldx), uint32_t(bx), uint32_t(lowbit::i8::kBK));
}

// Y [m, n] f16 / bf16 row-major (ldy elements per row), box = 64 activation rows x 64 columns (128 bytes),
// 128-byte swizzle: the TMA-store epilogue's output map (v13). False when the output does not qualify (int32 /
// int8 output, n % 8 != 0, a row pitch or base the copy engine cannot address: ldy % 8 != 0 or y not 16-byte
// aligned) or the driver rejects the map; the kernel then stores straight from the accumulators (v12's epilogue).
bool make_ymap(CUtensorMap& map, const lowbit::i8::Args& a) {
    const int out = a.epi.out;
    if (out != lowbit::i8::kOutF16 && out != lowbit::i8::kOutBf16) return false;
    // n % 8: the copy engine clips stores at 16-byte granularity, not per element (measured on an H100: with
    // n * 2 % 16 != 0 the columns up to the next 16-byte boundary were written).
    if (a.n % 8 != 0 || (uint64_t(a.ldy) * 2) % 16 != 0 || (reinterpret_cast<uintptr_t>(a.y) & 15) != 0 || a.ldy < a.n)
        return false;
    const CUtensorMapDataType t =
        out == lowbit::i8::kOutF16 ? CU_TENSOR_MAP_DATA_TYPE_FLOAT16 : CU_TENSOR_MAP_DATA_TYPE_BFLOAT16;
    const bool ok = lowbit::tma::make_2d_sw128(map, t, a.y, uint64_t(a.m), uint64_t(a.n), uint64_t(a.ldy) * 2, 64,
                                               64) == cudaSuccess;
    (void)cudaGetLastError();
    return ok;
}

template <int BX, bool W4, bool W4S = false, bool PP = false>
cudaError_t launch(const lowbit::i8::Args& a, int nsm, int group, int opts, cudaStream_t st) {
    using namespace lowbit::i8ws;
    if (nsm < 0) return available<BX, W4, W4S, PP>() ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    CUtensorMap map, ymap;
    cudaError_t e = make_xmap(map, a, BX);
    if (e != cudaSuccess) return e;
    memset(&ymap, 0, sizeof ymap);
    const int flags =
        ((opts & LOWBIT_I8_WS_TMA_STORE) && make_ymap(ymap, a) ? 1 : 0) | (opts & LOWBIT_I8_WS_RING_SCALES ? 2 : 0) |
        (opts & LOWBIT_I8_WS_BULK_RED ? 4 : 0) | (opts & LOWBIT_I8_WS_SKIP_EPI ? 8 : 0) |
        (((opts >> LOWBIT_I8_WS_LAG_SHIFT) & 3) << 4);
    constexpr int smem = Geo<BX, W4, W4S>::kSmem;
    auto kern = ws_kernel<BX, W4, W4S, PP>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    if constexpr (!PP) {
        if (opts & LOWBIT_I8_WS_CSPLIT) {
            // v20: clusters of `splits` CTAs (one K slice each), one unit per CTA; clusters past the resident ones
            // wait for a free slot (the kernel is not persistent in this mode).
            const int splits = a.steps_per_split > 0 ? (a.ksteps + a.steps_per_split - 1) / a.steps_per_split : 0;
            if (a.ws != nullptr || splits < 2 || splits > 8 || (BX == 256 && splits != 2 && splits != 4))
                return cudaErrorInvalidValue;
            // v24: programmatic dependent launch here too (the next grid launches only once every cluster of this
            // one has started and passed its wait, so waiting clusters never compete with it for SMs); v26: through
            // the PDL instance.
            const bool pdl = (opts & LOWBIT_I8_WS_PDL) && (!W4 || W4S) && lowbit::pdl_runs();
            const int64_t units = int64_t((a.n + kBW - 1) / kBW) * ((a.m + BX - 1) / BX) * splits;
            if (pdl)
                return lowbit_i8_ws_launch_pdl(a, BX, W4, map, ymap, flags | 64, group, unsigned(units),
                                               unsigned(splits), st);
            lowbit::LaunchEx cfg(dim3(unsigned(units)), dim3(kThreads), smem, st);
            return cfg.cluster_x(unsigned(splits)).launch(kern, a, map, ymap, flags | 64, group);
        }
    }
    // Work units: output tiles x K slices (split-K when a.ws is set, v14).
    const int splits = a.ws ? (a.ksteps + a.steps_per_split - 1) / a.steps_per_split : 1;
    const int64_t tiles = int64_t((a.n + kBW - 1) / kBW) * ((a.m + BX - 1) / BX) * splits;
    const int grid = int(tiles < nsm ? tiles : nsm);
    // v24: programmatic dependent launch (LOWBIT_I8_WS_PDL and lowbit::pdl_runs()) for split-K grids only (slab split
    // here, cluster split above). H100, same binary, same call (NOTES v24): the slab splits gained (M = 16 W8
    // 4096x11008 / 4096x8192 -1.5 us, 1024x8192 -0.3; W4 1024x8192 M = 256 -1.2), while unsplit grids lost 0.5-1.5 us
    // at M = 16 (4096x4096, 11008x4096, 8192x8192, 8192x28672) and 1-5 us at M = 256 (W8: 4096x11008, 8192x8192,
    // 8192x28672, 4096x8192, 11008x4096).
    // v26 (NOTES v26): the PDL launch runs the PDL instance (ws_pdl.cu); the plain launch runs this one, which has no
    // griddepcontrol code and the pre-v24 SASS (v24 compiled that code into every instance; a bench A/B suggested the
    // unsplit BX 256 grids lost 7-20% by it, but in one process v24's and pre-v24's kernels measured equal: spread).
    const bool pdl = (opts & LOWBIT_I8_WS_PDL) && (a.ws != nullptr || (opts & LOWBIT_I8_WS_PDL_UNSPLIT)) && !PP &&
                     (!W4 || W4S) && lowbit::pdl_runs();
    if (pdl) return lowbit_i8_ws_launch_pdl(a, BX, W4, map, ymap, flags, group, unsigned(grid), 1, st);
    kern<<<grid, kThreads, smem, st>>>(a, map, ymap, flags, group);
    return cudaGetLastError();
}

}  // namespace

// The launcher behind lowbit_i8_launch_ws / lowbit_i8_launch_ws_w4 (W8 when bits == 8, else W4 with the expansion
// through shared memory when smem). opts: LOWBIT_I8_WS_TMA_STORE (f16 / bf16 output through the TMA-store epilogue
// where the output qualifies, else v12's direct stores), LOWBIT_I8_WS_RING_SCALES (W4 with group_len % 128 == 0:
// group scales through the ring from the scale warp, else v12's per-lane loads). The harness times the variants in
// one process; the library passes LOWBIT_I8_WS_DEFAULT.
cudaError_t lowbit_i8_launch_ws_ex(const lowbit::i8::Args& a, int bits, int bx, int nsm, int group, bool smem,
                                   int opts, cudaStream_t st) {
    if (a.ws && (a.steps_per_split < 1 || a.counters == nullptr)) return cudaErrorInvalidValue;
    if ((opts & LOWBIT_I8_WS_CSPLIT) && (a.ws != nullptr || a.steps_per_split < 1)) return cudaErrorInvalidValue;
    if (bits == 8) {
        if (group <= 0) group = lowbit_i8_ws_group(a.m, a.k, bx);
        if (bx == 64) return launch<64, false>(a, nsm, group, opts, st);
        if (bx == 128) {
            if ((opts & LOWBIT_I8_WS_PP) && a.ws == nullptr && !(opts & LOWBIT_I8_WS_CSPLIT))
                return launch<128, false, false, true>(a, nsm, group, opts, st);
            return launch<128, false>(a, nsm, group, opts, st);
        }
        if (bx == 256) return launch<256, false>(a, nsm, group, opts, st);
        return cudaErrorInvalidValue;
    }
    if (a.k % 32 != 0 || (a.gs != nullptr && (a.group_len <= 0 || a.group_len % 32 != 0))) return cudaErrorInvalidValue;
    if (group <= 0) group = lowbit_i8_ws_group(a.m, a.k, bx);
    if (smem) {
        if (bx == 64) return launch<64, true, true>(a, nsm, group, opts, st);
        if (bx == 128) return launch<128, true, true>(a, nsm, group, opts, st);
        if (bx == 256) return launch<256, true, true>(a, nsm, group, opts, st);
        return cudaErrorInvalidValue;
    }
#ifdef LOWBIT_I8_WS_W4_REGA
    // The register-A variant: built only for the harness (benches/micro/i8_ws.cu with -DLOWBIT_I8_WS_W4_REGA), the
    // library plans never take it (ptxas C7513 serializes its wgmmas; 4-8% slower at BX 256, equal otherwise).
    if (bx == 64) return launch<64, true>(a, nsm, group, opts, st);
    if (bx == 128) return launch<128, true>(a, nsm, group, opts, st);
    if (bx == 256) return launch<256, true>(a, nsm, group, opts, st);
#endif
    return cudaErrorInvalidValue;
}

// bx: activation rows per tile (64, 128 or 256); nsm: CTAs (one per SM); nsm < 0 only asks whether the instance
// exists for this device (cudaSuccess); group: activation tiles per rasterization group (<= 0: automatic).
// W8 weights only. Split-K when a.ws != nullptr: a.steps_per_split stages per slice, a.ws / a.counters as
// lowbit_i8_ws_workspace lays them out (zero before the first call; every call leaves them zero). f16 / bf16 output leaves through the TMA-store epilogue when the
// output qualifies (make_ymap), else straight from the accumulators.
cudaError_t lowbit_i8_launch_ws(const lowbit::i8::Args& a, int bx, int nsm, int group, cudaStream_t st) {
    // v17: unsplit BX = 128 tiles at M >= kPPMinM on the ping-pong consumers (the plan prices them so).
    const int pp = pp_enabled(a.m) ? LOWBIT_I8_WS_PP : 0;
    // v24: a split plan without a workspace is a cluster split (lowbit_i8_ws_csplit gave it no workspace), as for W4.
    const int cs = a.ws == nullptr && a.steps_per_split > 0 && a.steps_per_split < a.ksteps ? LOWBIT_I8_WS_CSPLIT : 0;
    return lowbit_i8_launch_ws_ex(a, 8, bx, nsm, group, false, LOWBIT_I8_WS_DEFAULT | pp | cs | pdl_opt(a.m), st);
}

// W4A8 (4-bit codes in the tiled pack_w4 layout, integer group scales a.gs or nullptr): as lowbit_i8_launch_ws.
// K % 32 == 0 and a.group_len % 32 == 0 (a 32-column k-block never straddles two groups), else
// cudaErrorInvalidValue.
// smem = true: the expanded block goes through shared memory (wgmma with A from shared memory) instead of the
// register-A wgmma (both measured, NOTES.md v9; smem = false needs LOWBIT_I8_WS_W4_REGA at build time).
cudaError_t lowbit_i8_launch_ws_w4(const lowbit::i8::Args& a, int bx, int nsm, int group, bool smem, cudaStream_t st) {
    // v20: a split plan without a workspace is a cluster split (lowbit_i8_ws_csplit gave it no workspace).
    const int cs = a.ws == nullptr && a.steps_per_split > 0 && a.steps_per_split < a.ksteps ? LOWBIT_I8_WS_CSPLIT : 0;
    return lowbit_i8_launch_ws_ex(a, 4, bx, nsm, group, smem, LOWBIT_I8_WS_DEFAULT | cs | pdl_opt(a.m), st);
}
