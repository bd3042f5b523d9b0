// Weight-only GEMM launchers (extern "C", declared in lowbit_kernels.h): argument checks, the automatic
// launch plan (m-tile, split-K, X chunk) and the dispatch over format x dtype x m-tile instances.
#include <cuda_runtime.h>

#include <cstdlib>

#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_s2.cuh"
#include "lowbit/wo_s2m.cuh"
#include "lowbit_kernels.h"

using namespace lowbit::wo;

// One function per format, each in its own translation unit (inst_*.cu) so nvcc compiles them in parallel.
#define LOWBIT_WO_DECLARE(NAME) cudaError_t lowbit_wo_launch_##NAME(const Args&, int, int, int, int, cudaStream_t);
LOWBIT_WO_DECLARE(int2)
LOWBIT_WO_DECLARE(int3)
LOWBIT_WO_DECLARE(int4)
LOWBIT_WO_DECLARE(int8)
LOWBIT_WO_DECLARE(lut2)
LOWBIT_WO_DECLARE(lut3)
LOWBIT_WO_DECLARE(lut4)
LOWBIT_WO_DECLARE(mix4)
LOWBIT_WO_DECLARE(mix3)
// S2 (inst_int4.cu, lowbit/wo_s2.cuh, NOTES.md v19): two strips per warp, compact X, in-block split-K; INT4, M <= 8.
// Launch (args with kw, dtype, config: 0 = P 4 / 2 blocks per SM, 1 = P 3 / 3 blocks per SM; + 2 = warp-staged
// prologue, stream).
cudaError_t lowbit_wo_s2_int4(const Args&, int, int, cudaStream_t);
// S2M (inst_int4.cu, lowbit/wo_s2m.cuh, NOTES.md v20): two strips per warp at M = 9..16, X of the block's K range,
// split-K across blocks (f32 atomics; the caller converts). Launch (args with kw / steps_per_split, dtype, config: 0 =
// 256-row blocks 2 per SM, 1 = 512-row blocks 1 per SM, splits, stream); only with LOWBIT_WO_S2M=1 / 2.
cudaError_t lowbit_wo_s2m_int4(const Args&, int, int, int, cudaStream_t);
#define LOWBIT_WO_DECLARE_WGMMA(NAME) cudaError_t lowbit_wo_wgmma_##NAME(const Args&, int, int, cudaStream_t);
LOWBIT_WO_DECLARE_WGMMA(int2)
LOWBIT_WO_DECLARE_WGMMA(int3)
LOWBIT_WO_DECLARE_WGMMA(int4)
LOWBIT_WO_DECLARE_WGMMA(int8)
LOWBIT_WO_DECLARE_WGMMA(lut2)
LOWBIT_WO_DECLARE_WGMMA(lut3)
LOWBIT_WO_DECLARE_WGMMA(lut4)
LOWBIT_WO_DECLARE_WGMMA(mix4)
LOWBIT_WO_DECLARE_WGMMA(mix3)
// Warp-specialized persistent kernel (ws.cu): INT4 only. Launch (args, dtype, bx, splits, sms, stream) and plan
// (m, strips, ksteps, sms -> bx, splits).
cudaError_t lowbit_wo_ws_int4(const Args&, int, int, int, int, cudaStream_t);
void lowbit_wo_ws_plan(int, int, int, int, int*, int*);
// ws-C (ws_c.cu, NOTES.md ws-C: K splits as 2-CTA clusters reduced through distributed shared memory): launch (args,
// dtype, bx, K slices per cluster, mainloop 0 = ws v1, stream, null) and plan (m, strips, ksteps, sms -> bx; returns
// the slices, 0 = keep the ws plan).
cudaError_t lowbit_wo_ws_c_int4(const Args&, int, int, int, int, cudaStream_t, int*);
int lowbit_wo_ws_c_plan(int, int, int, int, int*);
// ws-W (ws.cu, lowbit/wo_ws4.cuh: four consumer warpgroups, 256 x 64 tiles): launch (args, dtype, splits, sms,
// stream; sms < 0: availability) and plan (m, strips, ksteps, sms -> splits).
cudaError_t lowbit_wo_ws4_int4(const Args&, int, int, int, cudaStream_t);
void lowbit_wo_ws4_plan(int, int, int, int, int*);
// ws-W stream-K (ws.cu): plan (m, strips, ksteps, sms -> grid, 0 = the K-split plan), zeroed workspace bytes and
// launch (args with ws, dtype, sms, stream).
int lowbit_wo_ws4_sk_plan(int, int, int, int);
// ws4-C (ws4_c.cu, NOTES.md ws4-C: ws-W's K splits as thread-block clusters summed over distributed shared memory):
// launch (args, dtype, cluster size, stream, null) and plan (m, strips, ksteps, sms, force -> cluster size, 0 = keep
// the atomics split).
cudaError_t lowbit_wo_ws4_c_int4(const Args&, int, int, cudaStream_t, int*);
int lowbit_wo_ws4_c_plan(int, int, int, int, int);
int64_t lowbit_wo_ws4_sk_ws_bytes(int, int, int, int);
cudaError_t lowbit_wo_ws4_sk_int4(const Args&, int, int, cudaStream_t);
// ws-SKv (ws.cu: ws v1's 128 x 256 tiles on ws-W's stream-K schedule): plan (m, strips, ksteps, sms, force -> grid,
// 0 = the ws plan), zeroed workspace bytes and launch (args with ws, dtype, sms, stream).
int lowbit_wo_ws_sk_plan(int, int, int, int, int);
int64_t lowbit_wo_ws_sk_ws_bytes(int, int, int, int);
cudaError_t lowbit_wo_ws_sk_int4(const Args&, int, int, cudaStream_t);
#define LOWBIT_WO_DECLARE_DEQUANT(NAME) cudaError_t lowbit_wo_dequant_##NAME(const Args&, int, void*, int, cudaStream_t);
LOWBIT_WO_DECLARE_DEQUANT(int2)
LOWBIT_WO_DECLARE_DEQUANT(int3)
LOWBIT_WO_DECLARE_DEQUANT(int4)
LOWBIT_WO_DECLARE_DEQUANT(int8)
LOWBIT_WO_DECLARE_DEQUANT(lut2)
LOWBIT_WO_DECLARE_DEQUANT(lut3)
LOWBIT_WO_DECLARE_DEQUANT(lut4)
LOWBIT_WO_DECLARE_DEQUANT(mix4)
LOWBIT_WO_DECLARE_DEQUANT(mix3)

namespace {

lowbit_status make_status(int32_t code, cudaError_t e = cudaSuccess) { return lowbit_status{code, int32_t(e)}; }

struct FormatInfo {
    int tiles;      // tiles per k-step
    bool has_hi;    // 3-bit high-bit stream
    bool is_lut;    // table format
    int bits;
};

bool format_info(int32_t f, FormatInfo& fi) {
    switch (f) {
        case LOWBIT_WO_INT2: fi = {8, false, false, 2}; return true;
        case LOWBIT_WO_INT3: fi = {8, true, false, 3}; return true;
        case LOWBIT_WO_INT4: fi = {4, false, false, 4}; return true;
        case LOWBIT_WO_INT8: fi = {2, false, false, 8}; return true;
        case LOWBIT_WO_LUT2: fi = {8, false, true, 2}; return true;
        case LOWBIT_WO_LUT3: fi = {8, true, true, 3}; return true;
        case LOWBIT_WO_LUT4: fi = {4, false, true, 4}; return true;
        case LOWBIT_WO_MIX4: fi = {4, false, false, 4}; return true;
        case LOWBIT_WO_MIX3: fi = {8, true, false, 3}; return true;
        default: return false;
    }
}

// v16 / v18 (wo_gemm.cuh meta_smem, ms_active): the formats whose 8-row m-tile keeps the block's metadata in shared
// memory in this process (BitMoD: LOWBIT_WO_MS_BITMOD); the plan counts the copy in their shared memory (mma_smem_bytes,
// compact_kw: groups of group_len / 16 tiles).
bool ms_format_of(int32_t f) {
    switch (f) {
        case LOWBIT_WO_INT2: return ms_active<IntLow<2>>();
        case LOWBIT_WO_INT3: return ms_active<IntLow<3>>();
        case LOWBIT_WO_INT4: return ms_active<Int4>();
        case LOWBIT_WO_INT8: return ms_active<Int8>();
        case LOWBIT_WO_LUT2: return ms_active<Lut<2>>();
        case LOWBIT_WO_LUT3: return ms_active<Lut<3>>();
        case LOWBIT_WO_LUT4: return ms_active<Lut<4>>();
        case LOWBIT_WO_MIX4: return ms_active<Mix4>();
        case LOWBIT_WO_MIX3: return ms_active<Mix3>();
        default: return false;
    }
}

constexpr int kWgmmaBn = 128;     // rows of X per wgmma block
constexpr int kWgmmaMinM = 128;  // automatic choice of the wgmma path from this M up (Hopper)

struct Plan {
    bool ws;     // warp-specialized persistent path (INT4, sm_90a)
    bool ws4;    // ... run by ws-W (four consumer warpgroups; K splits in `splits`, bx unused)
    bool ws4_sk; // ... with the stream-K schedule (splits = 1, no convert; its flags and slots in ws_split_bytes)
    int ws4_cs;  // ... with its K splits as clusters of ws4_cs CTAs (ws4-C: splits = 1, no workspace, no convert), else 0
    bool ws_sk;  // ws plan at BX = 256 run by ws-SKv (stream-K, splits = 1, no convert; workspace as ws4_sk)
    int bx;      // its activation tile (lowbit_wo_ws_plan, with its K splits in `splits`)
    int ws_cs;   // ws-C: K slices per thread-block cluster (> 1: splits = 1, no workspace, no convert), else 0
    bool wgmma;  // warpgroup path (else mma.sync)
    int mt;      // m-subtiles of 8 rows per block
    int mtiles;  // blocks along M
    int splits, steps_per_split, kc;
    int kw;      // warps per strip (in-block split-K), 1 = one warp per strip; S2: warps per strip pair
    int s2;      // S2 kernel config + 1 (lowbit_wo_s2_int4), 0 = not S2
    int s2m;     // S2M kernel config + 1 (lowbit_wo_s2m_int4; K splits in `splits`), 0 = not S2M
    int64_t ws_split_bytes, ws_gather_bytes;
};

// Shared memory of the mma.sync kernel for a plan: two X chunks (+ the pair tables, at most 4 x 256 words); the
// compact-X in-block split-K (kw > 1 at M <= 8 on INT formats, launch_mt) only the M rows of X; with ms_gtiles > 0
// (v16 / v18, the 8-row m-tile of the ms_format_of formats: wo_gemm.cuh meta_smem) + the block's metadata copy.
int64_t mma_smem_bytes(const FormatInfo& fi, const Plan& p, int64_t m, int ms_gtiles) {
    int64_t ms = ms_gtiles > 0 && p.mt == 1 ? ms_bytes(p.kw > 1 ? kWarps / p.kw : kWarps, p.steps_per_split, fi.tiles, ms_gtiles) : 0;
    ms = ms > kMsMaxBytes ? 0 : ms;  // (a larger copy runs the instance without it: launch_mt)
    // v17 (wo_gemm.cuh zero_fold): with the copy, INT4 groups of whole k-steps also keep the block's activation sums.
    if (ms > 0 && kZeroFold && ms_gtiles % fi.tiles == 0 && ms_gtiles / fi.tiles <= 8) ms += zf_bytes(p.steps_per_split, 8);
    if (p.kw > 1 && p.mt == 1 && m <= 8 && !fi.is_lut) return int64_t(cx_smem_bytes(int(m), p.kc, fi.tiles * 16)) + ms;
    return 2 * int64_t(p.mt * 8) * (p.kc + 8) * 2 + (fi.is_lut ? 4 * (int64_t(1) << (2 * fi.bits)) * 4 : 0) + ms;
}

bool aligned(const void* p, uintptr_t a) { return (reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0; }

lowbit_status check_weight(const lowbit_wo_weight* w, FormatInfo& fi) {
    if (!w) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (!format_info(w->format, fi)) return make_status(LOWBIT_ERR_NO_KERNEL);
    const int kstep = fi.tiles * 16;
    if (w->n < 1 || w->k < 1 || w->n_pad != (w->n + 15) / 16 * 16 || w->k_pad < w->k || w->k_pad % kstep != 0 ||
        w->k_pad - w->k >= kstep || w->group_len < 16 || w->group_len % 16 != 0 || w->k_pad % w->group_len != 0) {
        return make_status(LOWBIT_ERR_SHAPE);
    }
    if (!w->words || !w->meta || (fi.has_hi && !w->hi_words) || (fi.is_lut && !w->lut)) {
        return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    }
    if (fi.is_lut && (w->lut_tables < 1 || w->lut_tables > 4)) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (!aligned(w->words, 16) || (fi.has_hi && !aligned(w->hi_words, 8)) || !aligned(w->meta, 8) ||
        !aligned(w->channel_scales, 4) || !aligned(w->lut, 4) || !aligned(w->perm, 4)) {
        return make_status(LOWBIT_ERR_ALIGNMENT);
    }
    return make_status(LOWBIT_OK);
}

int sm_count(int32_t given) {
    if (given > 0) return given;
    int dev = 0, n = 132;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n;
}

bool wgmma_usable(int32_t format, int32_t dtype);
bool ws_usable(int32_t format, int32_t dtype);

// M range of the automatic ws choice. Measured on an H100 (kernels/weight_only/NOTES.md, ws v1), INT4 g128 vs
// cuBLAS f16, lowbit-bench: at M = 256 ws 0.51-0.88x where dequantize + cuBLAS gives 0.44-0.46x, and at M = 64
// (harness) ws 0.75-1.23x where mma.sync gives 0.54x; both only where the 128-row weight tiles number >= 0.4 x
// SMs: on 4096x4096 (32 tiles) mma.sync (M = 64) and dequantize + cuBLAS (M = 256: 37.2 vs 39.6 us) win. Up to
// M = 512 since the sixth session (NOTES.md, ws2 section, "plan"): dequantization alone costs ~0.23 ms on the
// 28672x8192 weight, while ws at M = 512 is about twice its M = 256 time (harness: 196 us there); at M = 1024
// ws (H100 harness 0.72-0.78x cuBLAS) and dequantize + cuBLAS (H100 bench 0.67-0.75x) are within noise of each
// other and dequantize + cuBLAS stays; at M = 4096 it wins (0.91-0.97x against ws 0.73-0.81x).
constexpr int kWsMinM = 64;
// Up to M = 768 since the fifth session's plan check (docs/results/h100/weight-only-plan-m384-768.md: ws beats
// dequantize + cuBLAS by 9-17% at M = 768 on 28672x8192, 8192x28672 and 11008x4096, same card, same call). Up to
// M = 1024 since the weight TMA (seventh session, NOTES.md ws-S / ws v2): ws at M = 1024 0.80 / 0.82 / 0.77 / 0.85x
// cuBLAS f16 on the four acceptance shapes (H100 harness, same run) against dequantize + cuBLAS's 0.78 / 0.73 /
// 0.73 / 0.75x in the sixth session's bench of record (not the same run: the next bench decides); at M = 4096 ws
// (0.77-0.79x) stays behind dequantize + cuBLAS (0.93-1.00x in that bench).
constexpr int kWsMaxM = 1024;

// Weight tiles (128 rows) the ws kernel needs, in tenths of the SMs. Since ws-S (seventh session, NOTES.md) small
// grids run K splits (up to 4, lowbit_wo_ws_plan): on an H100 (harness, same run) 8192x28672 (64 tiles = 0.48 x
// SMs) at M = 64 takes 151-153 us split against ws v1's 232 us and cuBLAS f16's 174 us (the mma.sync path: 0.91x
// cuBLAS in the bench of record), 4096x4096 (32 tiles) at M = 256 30 us split against cuBLAS's 20.8 us (0.70x;
// dequantize + cuBLAS: 0.50x in the bench). Below M = 128 4096x4096 (32 tiles, 16.6 us = 0.74x split) stays on the
// mma.sync path (0.85x in the bench): >= 0.4 x SMs there; from M = 128 >= 0.2 x SMs (4 splits fill 0.8).
bool ws_auto(const lowbit_wo_weight* w, int64_t m, int32_t dtype, int sms, bool x_vec) {
    if (w->format != LOWBIT_WO_INT4 || !x_vec || m < kWsMinM || m > kWsMaxM) return false;
    const int64_t weight_tiles = (w->n_pad / 16 + 7) / 8;  // 128-row tiles
    const int64_t tenths = m < 128 ? 4 : 2;                  // of the SMs
    return weight_tiles * 10 >= int64_t(sms) * tenths && ws_usable(w->format, dtype);
}

bool ws4_usable(int32_t dtype);

// ws-W (NOTES.md ws-W, ninth session): four consumer warpgroups per SM, tiles of 256 weight rows x 64 activation
// rows, for 17 <= M <= 64. Measured on an H100 (same run, INT4 g128, graph replay over rotated weights as
// lowbit-bench; benches/micro/wo_small_m.cu mid), us, ws-W vs the path chosen before:
//   28672x8192   M = 32 / 48 / 64: 87.9 / 88.3 / 88.8 vs small-M 101.9 / 169.1, ws v1 133.5 (M = 64)
//   8192x28672   M = 32 / 48 / 64: 81.5 / 82.6 / 83.9 vs small-M 101.9 / 163.9, ws-S 145.6 (M = 64)
//   11008x4096   M = 32 / 48 / 64: 24.0 / 25.5 / 27.6 vs small-M 22.8 / 35.9, ws v1 35.3 (M = 64)
//   4096x4096    M = 32 / 48 / 64: 14.0 / 14.9 / 16.2 vs small-M 11.1 / 14.6 / 16.1
// ws-W's time hardly depends on M up to 64 (one 64-row activation tile); it wins where the weight gives each SM
// enough 256-row tile k-steps: >= kWs4MinSteps per SM at M = 40..64 (11008x4096: 20.8, 4096x4096: 7.8),
// >= kWs4MinStepsMid at M = 33..39 and >= kWs4MinStepsSmall per SM at M = 17..32 (the large shapes: 108.6;
// 11008x4096 loses at M = 32). Twelfth session (NOTES.md ws-PDL, H100, lowbit-bench, same run, twice): 4096x4096 at
// M = 40 / 48 / 56 / 64 ws-W (8 K splits) 13.2 / 13.8 / 14.5 / 15.2 us vs small-M 13.6 / 14.4 / 15.2 / 15.9, so the
// threshold from M = 40 went from 12 to 7 k-steps per SM (M = 33..39 not measured: keeps 12).
// LOWBIT_WO_WS4=0 turns the automatic choice off (measurement); =1 also runs ws-W where the ws path is forced at
// M <= 64 (tests of odd shapes).
constexpr int kWs4MinM = 17;
constexpr int kWs4MaxM = 64;
constexpr int64_t kWs4MinSteps = 7;
constexpr int64_t kWs4MinStepsMid = 12;
constexpr int64_t kWs4MinStepsSmall = 48;

int ws4_env() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS4");
        return e && e[0] == '0' ? 0 : e && e[0] == '1' ? 1 : -1;
    }();
    return v;
}

// ws-W's stream-K schedule (NOTES.md ws-SK, tenth session; ws.cu lowbit_wo_ws4_sk_plan): each SM takes an equal run
// of the tiles' k-steps instead of whole tiles or K splits. In the automatic plan (kWs4SkAuto) only where the K-split
// plan keeps one split with fewer tiles than SMs (one round, SMs idle): measured on an H100 (wo_small_m mid, graph
// replay, cuBLAS f16 same run) 28672x8192 M = 32 / 48 / 64: 84.3 / 85.6 / 88.1 us vs K-split 88.6 / 89.2 / 90.5
// (1.94-2.02x vs 1.89-1.92x cuBLAS f16). Where the K-split plan splits it lost (8192x28672 86-90 vs 82-85 us,
// 11008x4096 28.3 vs 27.6 at M = 64, 4096x4096 27 vs 14-16), so those keep the K splits.
// LOWBIT_WO_WS4_SK=0 keeps the K-split plan everywhere, =1 runs stream-K on every ws-W plan (tests, A/B).
constexpr bool kWs4SkAuto = true;
int ws4_sk_env() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS4_SK");
        return e && e[0] == '0' ? 0 : e && e[0] == '1' ? 1 : -1;
    }();
    return v;
}

// ws-C (NOTES.md ws-C, eleventh session; ws_c.cu lowbit_wo_ws_c_plan): where the ws plan splits K at M >= 128, the
// splits run as 2-CTA clusters summed over distributed shared memory instead of f32 atomics + convert (H100, same
// run: 8192x28672 M = 256 231.6 -> 181.0 us, 4096x4096 M = 256 30.5 -> 24.8). Also on forced ws plans.
// LOWBIT_WO_WS_C=0 in the environment keeps the atomics splits (measurement, A/B).
int ws_c_env() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS_C");
        return e && e[0] == '0' ? 0 : -1;
    }();
    return v;
}

// ws-SKv (thirteenth session, NOTES.md; ws.cu lowbit_wo_ws_sk_plan): the unsplit ws plans at BX = 256 whose last
// round of tiles leaves SMs idle run on the stream-K schedule (H100: 28672x8192 at M = 129..768, 11008x4096 at
// M = 257..512, 8192x28672 at M = 513..768). LOWBIT_WO_WS_SK=0 in the environment keeps the ws
// plan (A/B), =1 runs ws-SKv on every ws plan at BX = 256 (M > 128; tests), split or not.
int ws_sk_env() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS_SK");
        return e && e[0] == '0' ? 0 : e && e[0] == '1' ? 1 : -1;
    }();
    return v;
}

// ws4-C (NOTES.md ws4-C, sixteenth session; ws4_c.cu lowbit_wo_ws4_c_plan): where ws-W's K-split plan splits, the
// splits run as thread-block clusters summed over distributed shared memory (no f32 atomics, no convert launch,
// deterministic) where the plan's cost model says so and the clusters are all resident at once. On an H100 that is
// 4096x4096 at M = 40..64 (clusters of 6, 8 -> 6 K slices: 16.3 -> 15.2 us at M = 64, 14.0 -> 13.7 at M = 40; harness,
// same process); 11008x4096 keeps its 3 atomics splits (43 clusters of 3 need two waves: 39 resident). LOWBIT_WO_WS4_C=0 keeps the atomics splits (A/B), =1 runs ws4-C wherever
// ws-W splits (the cheapest resident cluster size; tests); LOWBIT_WO_WS4_CS=<n> forces the cluster size (where ws-W
// splits, unless LOWBIT_WO_WS4_C=0).
int ws4_c_env() {
    static const int v = [] {
        const char* e = getenv("LOWBIT_WO_WS4_C");
        return e && e[0] == '0' ? 0 : e && e[0] == '1' ? 1 : -1;
    }();
    return v;
}

// Measurement switches (twelfth session, NOTES.md ws-PDL): LOWBIT_WO_WS4_SPLITS=<n> forces ws-W's K splits (K-split
// plans only), LOWBIT_WO_WS4_MINSTEPS=<n> replaces kWs4MinSteps (M = 40..64). Unset: the plan below.
int env_int(const char* name) {
    const char* e = getenv(name);
    return e && e[0] >= '0' && e[0] <= '9' ? atoi(e) : -1;
}
int ws4_splits_env() {
    static const int v = env_int("LOWBIT_WO_WS4_SPLITS");
    return v;
}
int ws4_cs_env() {
    static const int v = env_int("LOWBIT_WO_WS4_CS");
    return v;
}
int64_t ws4_min_steps() {
    static const int v = env_int("LOWBIT_WO_WS4_MINSTEPS");
    return v >= 0 ? v : kWs4MinSteps;
}

bool ws4_auto(const lowbit_wo_weight* w, int64_t m, int32_t dtype, int sms, bool x_vec) {
    if (w->format != LOWBIT_WO_INT4 || !x_vec || m < kWs4MinM || m > kWs4MaxM || ws4_env() == 0) return false;
    const int64_t steps = (w->n_pad / 16 + 15) / 16 * (w->k_pad / 64);  // 256-row tiles x k-steps
    const int64_t need = m >= 40 ? ws4_min_steps() : m > 32 ? kWs4MinStepsMid : kWs4MinStepsSmall;
    return steps >= need * sms && ws4_usable(dtype);
}

// v12 (NOTES.md): at M = 1 on INT formats the in-block split-K kernel with compact X (only the real row of X in
// shared memory, launch_mt) runs the whole K range in one launch and one wave: no split-K workspace, atomics or
// convert kernel. Chosen with the largest kw (warps per strip: the shortest per-warp chains) whose blocks fit one
// wave of the resident slots (4 per SM where shared memory allows), if those blocks fill >= kCxMinFill of the
// 4-per-SM slots or are at least as many as split-K's (`splitk_blocks`). Measured on an H100 (same run, W4 g128,
// M = 1): 4096x4096 7.5 us vs split-K 8.7 (kw = 8, 256 blocks), 28672x8192 50.6 vs 51.4 (kw = 2), 11008x4096 13.5
// vs 13.6 (kw = 4); where it fits only half a wave it loses (8192x28672: kw = 4, 66.6 vs 53.3: excluded by the
// rule), and at M = 4 it lost on every shape (11008x4096 16.3 vs 14.1): M = 1 only. Returns that kw, or 0.
constexpr double kCxMinFill = 0.6;
int max_smem_optin();
// ms_gtiles > 0: the compact-X instance keeps the block's metadata in shared memory too (v16, wo_gemm.cuh meta_smem:
// ms_format_of), groups of ms_gtiles tiles; its copy grows with the strips per block (kWarps / kw).
int compact_kw(const FormatInfo& fi, int64_t m, int mt, int strips, int ksteps, int sms, int64_t splitk_blocks, int ms_gtiles) {
    if (mt != 1 || m != 1 || fi.is_lut) return 0;
    const int kstep = fi.tiles * 16;
    const int max_b = fi.has_hi || fi.tiles > 4 ? 3 : 4;  // cx_min_blocks<Fmt>()
    for (int kw = kWarps; kw > 1; kw /= 2) {
        const int64_t x = int64_t(cx_smem_bytes(int(m), ksteps * kstep, kstep));
        int64_t ms = ms_gtiles > 0 ? ms_bytes(kWarps / kw, ksteps, fi.tiles, ms_gtiles) : 0;
        // (v17: + the activation sums of the zero-point fold, where launch_mt runs it.)
        if (ms > 0 && ms <= kMsMaxBytes && kZeroFold && ms_gtiles % fi.tiles == 0 && ms_gtiles / fi.tiles <= 8) ms += zf_bytes(ksteps, 8);
        const int64_t per_block = x + ms + 1024;
        int64_t occ = int64_t(smem_per_sm()) / per_block;
        occ = occ > max_b ? max_b : occ;
        if (occ < 1 || per_block - 1024 > max_smem_optin()) return 0;
        const int64_t blocks = (strips + kWarps / kw - 1) / (kWarps / kw);
        if (blocks <= occ * sms && ksteps >= kw) {
            return (blocks >= kCxMinFill * 4 * sms || blocks >= splitk_blocks) ? kw : 0;
        }
    }
    return 0;
}

int max_smem_optin() {
    int dev = 0, v = 48 * 1024;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    return v;
}

// v19 (NOTES.md v19, one H100, harness A/B in one process against the library launch, and lowbit-bench default vs
// LOWBIT_WO_S2=0 in one call): S2, two 16-row strips per warp in the compact-X in-block split-K kernel
// (lowbit/wo_s2.cuh), INT4 with groups of whole k-steps at M <= 8. Faster where its plan reaches kw = 8 (8 warps per
// strip pair, one wave): lowbit-bench 8192x28672 M = 1 50.6 -> 47.7 us (the library ran 41-way split-K), 4096^2 M = 1 /
// 2 / 4 7.4 / 8.4 / 8.4 -> 6.6 / 7.3 / 7.6, 11008x4096 M = 1 (3 blocks per SM, P = 3, warp-staged prologue) 13.2 ->
// 10.8; harness: 2048^2 and 1536x576 M = 1..4 10-20% faster. Slower at M = 8 (4096^2 +0.3 us), where kw < 8
// (28672x8192 M = 1 kw = 2 +0.4 us; M = 2..8 and 8192x28672 M = 2: the library's grids win) and on the smallest grids
// (576x1536 M = 1, 18 pairs, +0.15 us). Rule: M <= 4, >= 32 strip pairs, kw = 8 at 2 blocks per SM (config 0,
// block-wide prologue), or at M = 1 at 3 blocks per SM (config 1; the warp-staged prologue measured 11.3 -> 10.8 us
// there and made config 0 0.3 us slower on 8192x28672 and 0.1-0.3 us slower on the small shapes).
// LOWBIT_WO_S2=0 turns it off, =1 runs it wherever its plan fits one wave at M <= 8 (tests, measurement);
// LOWBIT_WO_S2_WST=0 / 1 forces the block-wide / warp-staged prologue for both configs.
// The warp-staged prologue is OFF by default since the lead's racecheck of gpu_weight_only_s2_shapes (one H100, bundle
// 8e9d082, NOTES v19 "racecheck"): its warps write the shared zero line and the metadata padding that other warps already
// read, and copy / read the groups at slice borders without a barrier between them (same values, so the outputs were
// right in every test, but they are races); config 1 runs the block-wide prologue (harness: 11008x4096 M = 1 11.2 us
// against 10.8 warp-staged, 13.2 without S2). v19b (NOTES) rebuilt the warp-staged copy so that no shared byte is
// shared between slices (per-slice metadata regions, the one-ahead read clamped, no zero line); it stays opt-in until
// a racecheck and an A/B of it have run on a GPU.
int s2_env() {
    static const int v = [] {
        const char* e = std::getenv("LOWBIT_WO_S2");
        return e ? std::atoi(e) : -1;
    }();
    return v;
}
int s2_wst_env() {
    static const int v = [] {
        const char* e = std::getenv("LOWBIT_WO_S2_WST");
        return e ? std::atoi(e) : -1;
    }();
    return v;
}
// v20 (NOTES.md v20; not measured on a GPU when written): S2M, the S2 structure at M = 9..16 (lowbit/wo_s2m.cuh). Off by
// default: LOWBIT_WO_S2M=1 runs its 256-row config (8 warps x 2 strips, 2 blocks per SM), =2 its 512-row config (16
// warps x 2 strips, 1 block per SM) wherever it applies (INT4, M = 9..16, groups of whole k-steps, no explicit
// m-tile / splits / chunk / k_warps in the config); unset or 0: the v14 256-row block as before.
int s2m_env() {
    static const int v = [] {
        const char* e = std::getenv("LOWBIT_WO_S2M");
        return e ? std::atoi(e) : 0;
    }();
    return v;
}
// The S2M config + 1 for this call (0 = not S2M) with its kw, splits and k-steps per split.
int s2m_choice(const lowbit_wo_weight* w, const FormatInfo& fi, int64_t m, int strips, int ksteps, int sms, int& kw, int& splits,
               int& sps) {
    const int env = s2m_env();
    if ((env != 1 && env != 2) || w->format != LOWBIT_WO_INT4 || m < 9 || m > 16 || fi.tiles != 4) return 0;
    const int nw = env == 1 ? 8 : 16, minb = env == 1 ? 2 : 1;
    if (!s2m_plan(int(m), strips, ksteps, w->group_len / 16, int(w->k_pad / w->group_len), sms, nw, minb, smem_per_sm(),
                  max_smem_optin(), 0, 0, kw, splits, sps)) {
        return 0;
    }
    return env;
}
// The S2 config + 1 for this call (0 = not S2) and its kw.
int s2_choice(const lowbit_wo_weight* w, const FormatInfo& fi, int64_t m, int strips, int ksteps, int sms, int& kw) {
    const int env = s2_env();
    if (env == 0 || w->format != LOWBIT_WO_INT4 || m > 8 || fi.tiles != 4) return 0;
    const int gtiles = w->group_len / 16, groups = int(w->k_pad / w->group_len);
    const int smem_sm = smem_per_sm(), optin = max_smem_optin();
    // Warp-staged prologue: only when LOWBIT_WO_S2_WST=1 (racecheck, see above). Its per-slice metadata copies take
    // up to (kw - 1) groups more shared memory, so the plan is made for the prologue that will run.
    const bool wst = s2_wst_env() == 1;
    const int kw2 = s2_plan_kw(int(m), strips, ksteps, gtiles, groups, sms, 2, smem_sm, optin, 0, wst);
    const int kw3 = s2_plan_kw(int(m), strips, ksteps, gtiles, groups, sms, 3, smem_sm, optin, 0, wst);
    auto pick = [&](int config, int k) {
        kw = k;
        return 1 + config + (wst ? 2 : 0);
    };
    if (env == 1) {
        // (forced: the config with the larger kw, 2 blocks per SM on ties)
        if (kw2 == 0 && kw3 == 0) return 0;
        return kw3 > kw2 ? pick(1, kw3) : pick(0, kw2);
    }
    if (m > 4 || (strips + 1) / 2 < 32) return 0;
    if (kw2 == kWarps) return pick(0, kw2);
    if (m == 1 && kw3 == kWarps) return pick(1, kw3);
    return 0;
}

Plan make_plan(const lowbit_wo_weight* w, const FormatInfo& fi, int64_t m, int32_t dtype, int32_t elem_bytes,
               const lowbit_wo_config* cfg, int sms, bool x_vec) {
    Plan p{};
    const int path = cfg ? cfg->path : LOWBIT_WO_PATH_AUTO;
    p.ws4 = path == LOWBIT_WO_PATH_AUTO ? ws4_auto(w, m, dtype, sms, x_vec)
                                        : path == LOWBIT_WO_PATH_WS && m <= kWs4MaxM && ws4_env() == 1;
    p.ws = p.ws4 || path == LOWBIT_WO_PATH_WS || (path == LOWBIT_WO_PATH_AUTO && ws_auto(w, m, dtype, sms, x_vec));
    p.ws_gather_bytes = w->perm ? (m * w->k * elem_bytes + 255) / 256 * 256 : 0;
    if (p.ws) {
        const int strips = int(w->n_pad / 16), ksteps = int(w->k_pad / 64);
        if (p.ws4) {
            lowbit_wo_ws4_plan(int(m), strips, ksteps, sms, &p.splits);
            if (ws4_splits_env() > 0) p.splits = ws4_splits_env() < ksteps ? ws4_splits_env() : ksteps;
            const int sk = ws4_splits_env() > 0 ? 0 : ws4_sk_env();
            p.ws4_sk = sk == 1 || (kWs4SkAuto && sk == -1 && lowbit_wo_ws4_sk_plan(int(m), strips, ksteps, sms) > 0);
            if (!p.ws4_sk && p.splits > 1 && ws4_splits_env() <= 0 && ws4_c_env() != 0) {
                const int force = ws4_cs_env() > 1 ? ws4_cs_env() : ws4_c_env() == 1 ? 1 : 0;
                const int cs = lowbit_wo_ws4_c_plan(int(m), strips, ksteps, sms, force);
                if (cs > 1) p.ws4_cs = cs, p.splits = 1;  // ws4-C: no split-K workspace
            }
        } else {
            lowbit_wo_ws_plan(int(m), strips, ksteps, sms, &p.bx, &p.splits);
            p.ws_sk = ws_sk_env() != 0 && lowbit_wo_ws_sk_plan(int(m), strips, ksteps, sms, ws_sk_env()) > 0;
            if (p.ws_sk) p.splits = 1;  // forced (=1) over a split plan: the stream-K schedule replaces the splits
            int cbx = 0;
            const int cs = p.splits > 1 && ws_c_env() != 0 ? lowbit_wo_ws_c_plan(int(m), strips, ksteps, sms, &cbx) : 0;
            if (cs > 1) p.bx = cbx, p.ws_cs = cs, p.splits = 1;  // ws-C: no split-K workspace
        }
        p.mtiles = 1;
        p.kw = 1;
        if (p.ws4_sk) {
            p.splits = 1;
            p.ws_split_bytes = lowbit_wo_ws4_sk_ws_bytes(int(m), strips, ksteps, sms);
        } else if (p.ws_sk) {
            p.ws_split_bytes = lowbit_wo_ws_sk_ws_bytes(int(m), strips, ksteps, sms);
        } else {
            p.ws_split_bytes = p.splits > 1 ? ((m * w->n * 4 + 255) / 256 * 256) : 0;
        }
        return p;
    }
    p.wgmma = path == LOWBIT_WO_PATH_WGMMA ||
              (path == LOWBIT_WO_PATH_AUTO && m >= kWgmmaMinM && x_vec && wgmma_usable(w->format, dtype));
    p.ws_gather_bytes = w->perm ? (m * w->k * elem_bytes + 255) / 256 * 256 : 0;
    if (p.wgmma) {
        p.mtiles = int((m + kWgmmaBn - 1) / kWgmmaBn);
        p.splits = 1;
        p.kw = 1;
        return p;
    }
    const int want_mt = cfg && cfg->m_tile > 0 ? cfg->m_tile / 8 : 0;
    // m-tiles of 32 rows beyond M = 16: the 64-row tile needs ~150 registers (one block per SM, too few
    // warps to hide HBM latency), while 32-row tiles run two or three blocks per SM and the second m-tile of
    // a strip group reads its weights from L2 (the grid puts m-tiles next to each other).
    p.mt = want_mt > 0 ? want_mt : (m <= 8 ? 1 : m <= 16 ? 2 : 4);
    p.mtiles = int((m + p.mt * 8 - 1) / (p.mt * 8));
    const int kstep = fi.tiles * 16, ksteps = w->k_pad / kstep;
    const int strips = w->n_pad / 16, nblk = (strips + kWarps - 1) / kWarps;
    int splits;
    if (cfg && cfg->splits > 0) {
        splits = cfg->splits;
    } else {
        // About 8 blocks per SM (2-3 resident at a time): many short blocks keep the last wave's tail
        // small (224 blocks on 132 SMs would leave 40 SMs with half the work of the others). Keep at
        // least 8 k-steps (8 16-byte loads per lane) per split.
        const int64_t blocks = int64_t(nblk) * p.mtiles;
        splits = int((8 * int64_t(sms) + blocks - 1) / blocks);
        splits = splits < 1 ? 1 : splits;
        const int max_splits = ksteps / 8 > 0 ? ksteps / 8 : 1;
        splits = splits > max_splits ? max_splits : splits;
    }
    splits = splits > ksteps ? ksteps : splits;
    // In-block split-K for small problems: when the whole K range fits one X chunk and there are too few
    // strip groups to occupy the GPU, give each strip kw warps (the largest kw whose grid still fits one
    // wave) instead of splitting K across blocks, which costs a memset and a convert launch beside the GEMM
    // (three graph nodes where cuBLAS's GEMV has one: the batch-1 decode of small models is made of such
    // layers). An explicit splits or k_warps in the config wins.
    const int kc_cap = (cfg && cfg->kc > 0) ? cfg->kc : 2048 / p.mt;
    const int want_kw = cfg ? cfg->k_warps : 0;
    p.kw = 1;
    // v19: S2 where its rule picks it (no explicit m-tile, splits, chunk or k_warps in the config).
    if (want_kw == 0 && want_mt == 0 && !(cfg && (cfg->splits > 0 || cfg->kc > 0))) {
        int kw2 = 0;
        p.s2 = s2_choice(w, fi, m, strips, ksteps, sms, kw2);
        if (p.s2) {
            p.mt = 1;
            p.mtiles = 1;
            p.kw = kw2;
            p.splits = 1;
            p.steps_per_split = ksteps;
            p.kc = ksteps * kstep;
            p.ws_split_bytes = 0;
            return p;
        }
    }
    // v20: S2M where LOWBIT_WO_S2M selects it (the same conditions on the config as S2).
    if (want_kw == 0 && want_mt == 0 && !(cfg && (cfg->splits > 0 || cfg->kc > 0))) {
        int kw3 = 0, sp3 = 0, sps3 = 0;
        p.s2m = s2m_choice(w, fi, m, strips, ksteps, sms, kw3, sp3, sps3);
        if (p.s2m) {
            p.mt = 2;
            p.mtiles = 1;
            p.kw = kw3;
            p.splits = sp3;
            p.steps_per_split = sps3;
            p.kc = sps3 * kstep;
            p.ws_split_bytes = sp3 > 1 ? ((m * w->n * 4 + 255) / 256 * 256) : 0;
            return p;
        }
    }
    const int cx_kw = want_kw == 0 && !(cfg && (cfg->splits > 0 || cfg->kc > 0)) ? compact_kw(fi, m, p.mt, strips, ksteps, sms, int64_t(nblk) * p.mtiles * splits,
                                                                                     ms_format_of(w->format) ? w->group_len / 16 : 0)
                                                                        : 0;
    if (want_kw > 1) {
        p.kw = want_kw;
        splits = 1;
    } else if (cx_kw > 1) {
        p.kw = cx_kw;
        splits = 1;
    } else if (want_kw == 0 && p.mt <= 2 && !(cfg && cfg->splits > 0) && ksteps * kstep <= kc_cap &&
               int64_t(nblk) * p.mtiles < sms) {
        for (int kw = kWarps; kw > 1; kw /= 2) {
            const int64_t blocks = int64_t((strips + kWarps / kw - 1) / (kWarps / kw)) * p.mtiles;
            if (blocks <= sms && ksteps >= kw) {
                p.kw = kw;
                splits = 1;
                break;
            }
        }
    }
    p.steps_per_split = (ksteps + splits - 1) / splits;
    p.splits = (ksteps + p.steps_per_split - 1) / p.steps_per_split;
    const int kc_max = (cfg && cfg->kc > 0) ? cfg->kc : 2048 / p.mt;
    int kc = p.steps_per_split * kstep;
    if (kc > kc_max && p.kw == 1) kc = kc_max / kstep * kstep;  // kw > 1 needs the whole range in one chunk
    if (kc < kstep) kc = kstep;
    p.kc = kc;
    // Split-K partial sums [m][n] f32: zero before the first call, and every completed call leaves them zero.
    p.ws_split_bytes = p.splits > 1 ? ((m * w->n * 4 + 255) / 256 * 256) : 0;
    return p;
}

cudaError_t wgmma_format(int32_t format, int32_t dtype, const Args& a, int mtiles, cudaStream_t s) {
    switch (format) {
        case LOWBIT_WO_INT2: return lowbit_wo_wgmma_int2(a, dtype, mtiles, s);
        case LOWBIT_WO_INT3: return lowbit_wo_wgmma_int3(a, dtype, mtiles, s);
        case LOWBIT_WO_INT4: return lowbit_wo_wgmma_int4(a, dtype, mtiles, s);
        case LOWBIT_WO_INT8: return lowbit_wo_wgmma_int8(a, dtype, mtiles, s);
        case LOWBIT_WO_LUT2: return lowbit_wo_wgmma_lut2(a, dtype, mtiles, s);
        case LOWBIT_WO_LUT3: return lowbit_wo_wgmma_lut3(a, dtype, mtiles, s);
        case LOWBIT_WO_MIX4: return lowbit_wo_wgmma_mix4(a, dtype, mtiles, s);
        case LOWBIT_WO_MIX3: return lowbit_wo_wgmma_mix3(a, dtype, mtiles, s);
        default: return lowbit_wo_wgmma_lut4(a, dtype, mtiles, s);
    }
}

// Whether an sm_90a-only kernel can run here: a Hopper GPU (compute capability 9.x) and probe(), its launcher's
// availability query (cudaSuccess where the kernel was compiled for sm_90a), succeeds. Leaves no error behind.
template <class Probe>
bool sm90a_usable(Probe probe) {
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess ||
        cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        cudaGetLastError();
        return false;
    }
    if (major != 9) return false;
    const bool ok = probe() == cudaSuccess;
    cudaGetLastError();  // clear a failed attribute query
    return ok;
}

// Whether the wgmma path can run here: a Hopper GPU and kernels compiled for sm_90a.
bool wgmma_usable(int32_t format, int32_t dtype) {
    return sm90a_usable([&] { return wgmma_format(format, dtype, Args{}, -1, nullptr); });
}

// Whether the ws path can run here: INT4, a Hopper GPU and the kernel compiled for sm_90a.
bool ws_usable(int32_t format, int32_t dtype) {
    if (format != LOWBIT_WO_INT4) return false;
    return sm90a_usable([&] { return lowbit_wo_ws_int4(Args{}, dtype, 0, 1, -1, nullptr); });
}

// Whether ws-W can run here: a Hopper GPU and the kernel compiled for sm_90a.
bool ws4_usable(int32_t dtype) {
    return sm90a_usable([&] { return lowbit_wo_ws4_int4(Args{}, dtype, 1, -1, nullptr); });
}

cudaError_t launch_format(int32_t format, int32_t dtype, const Args& a, const Plan& pl, cudaStream_t s) {
    switch (format) {
        case LOWBIT_WO_INT2: return lowbit_wo_launch_int2(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_INT3: return lowbit_wo_launch_int3(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_INT4: return lowbit_wo_launch_int4(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_INT8: return lowbit_wo_launch_int8(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_LUT2: return lowbit_wo_launch_lut2(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_LUT3: return lowbit_wo_launch_lut3(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_MIX4: return lowbit_wo_launch_mix4(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        case LOWBIT_WO_MIX3: return lowbit_wo_launch_mix3(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
        default: return lowbit_wo_launch_lut4(a, dtype, pl.mt, pl.splits, pl.mtiles, s);
    }
}

template <typename T>
cudaError_t run(const lowbit_wo_weight* w, const Args& a0, const Plan& pl, void* workspace, cudaStream_t s) {
    Args a = a0;
    char* ws = static_cast<char*>(workspace);
    if (w->perm) {
        T* gathered = reinterpret_cast<T*>(ws + pl.ws_split_bytes);
        const int64_t total = int64_t(a.m) * a.k;
        const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
        gather_kernel<T><<<blocks, 256, 0, s>>>(static_cast<const T*>(a.x), a.ldx, w->perm, gathered, a.m, a.k);
        cudaError_t e = cudaGetLastError();
        if (e != cudaSuccess) return e;
        a.x = gathered;
        a.ldx = a.k;
        a.x_vec = a.k % 8 == 0;
    }
    if (pl.splits > 1 || pl.ws4_sk || pl.ws_sk) {
        // Zero on entry (the caller's contract), zero again after convert_kernel (stream-K: after the kernel): no
        // memset per call.
        a.ws = reinterpret_cast<float*>(ws);
    }
    const int32_t dtype = std::is_same_v<T, __half> ? LOWBIT_DTYPE_F16 : LOWBIT_DTYPE_BF16;
    if (pl.ws) {
        // K splits (small grids): f32 partials into the zeroed workspace, converted (and re-zeroed) after.
        if (pl.ws4_sk) return lowbit_wo_ws4_sk_int4(a, dtype, a.sms, s);
        if (pl.ws_sk) return lowbit_wo_ws_sk_int4(a, dtype, a.sms, s);
        if (pl.ws_cs > 1) return lowbit_wo_ws_c_int4(a, dtype, pl.bx, pl.ws_cs, 0, s, nullptr);
        if (pl.ws4_cs > 1) return lowbit_wo_ws4_c_int4(a, dtype, pl.ws4_cs, s, nullptr);
        cudaError_t e = pl.ws4 ? lowbit_wo_ws4_int4(a, dtype, pl.splits, a.sms, s)
                               : lowbit_wo_ws_int4(a, dtype, pl.bx, pl.splits, a.sms, s);
        if (e != cudaSuccess || pl.splits == 1) return e;
        const int64_t total = int64_t(a.m) * a.n;
        const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
        convert_kernel<T><<<blocks, 256, 0, s>>>(a.ws, static_cast<T*>(a.y), total);
        return cudaGetLastError();
    }
    if (pl.wgmma) return wgmma_format(w->format, dtype, a, pl.mtiles, s);
    if (pl.s2) return lowbit_wo_s2_int4(a, dtype, pl.s2 - 1, s);
    if (pl.s2m) {
        cudaError_t e = lowbit_wo_s2m_int4(a, dtype, pl.s2m - 1, pl.splits, s);
        if (e != cudaSuccess || pl.splits == 1) return e;
        return launch_convert<T>(a.ws, static_cast<T*>(a.y), int64_t(a.m) * a.n, s);
    }
    cudaError_t e = launch_format(w->format, dtype, a, pl, s);
    if (e != cudaSuccess || pl.splits == 1) return e;
    return launch_convert<T>(a.ws, static_cast<T*>(a.y), int64_t(a.m) * a.n, s);  // PDL where the device has it
}

// The plan the queries below report, for a valid weight, M >= 1 and dtype (else false). X alignment is unknown
// here: planned as if aligned (the launch falls back to a split-free mma.sync plan for misaligned X, which needs no
// more workspace than this).
bool query_plan(const lowbit_wo_weight* w, int64_t m, int32_t dtype, const lowbit_wo_config* cfg, int32_t num_sms,
                Plan& p) {
    FormatInfo fi;
    if (m < 1 || check_weight(w, fi).code != LOWBIT_OK || (dtype != LOWBIT_DTYPE_F16 && dtype != LOWBIT_DTYPE_BF16)) {
        return false;
    }
    p = make_plan(w, fi, m, dtype, 2, cfg, sm_count(num_sms), w->k % 8 == 0);
    return true;
}

}  // namespace

extern "C" int64_t lowbit_wo_gemm_workspace_bytes(const lowbit_wo_weight* w, int64_t m, int32_t dtype,
                                                  const lowbit_wo_config* cfg, int32_t num_sms) {
    Plan p;
    if (!query_plan(w, m, dtype, cfg, num_sms, p)) return -1;
    return p.ws_split_bytes + p.ws_gather_bytes;
}

extern "C" int64_t lowbit_wo_gemm_workspace_zeroed_bytes(const lowbit_wo_weight* w, int64_t m, int32_t dtype,
                                                         const lowbit_wo_config* cfg, int32_t num_sms) {
    Plan p;
    if (!query_plan(w, m, dtype, cfg, num_sms, p)) return -1;
    return p.ws_split_bytes;  // the split-K partial sums lead the workspace; the act-order gather follows
}

extern "C" int32_t lowbit_wo_gemm_auto_path(const lowbit_wo_weight* w, int64_t m, int32_t dtype, int32_t num_sms) {
    Plan p;
    if (!query_plan(w, m, dtype, nullptr, num_sms, p)) return -1;
    return p.ws ? LOWBIT_WO_PATH_WS : p.wgmma ? LOWBIT_WO_PATH_WGMMA : LOWBIT_WO_PATH_MMA;
}

extern "C" lowbit_status lowbit_wo_gemm(const lowbit_wo_weight* w, const void* x, int64_t ldx, void* y, int64_t m,
                                        int32_t dtype, void* workspace, int64_t workspace_bytes,
                                        const lowbit_wo_config* cfg, int32_t num_sms, void* stream) {
    FormatInfo fi;
    lowbit_status st = check_weight(w, fi);
    if (st.code != LOWBIT_OK) return st;
    if (!x || !y) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (dtype != LOWBIT_DTYPE_F16 && dtype != LOWBIT_DTYPE_BF16) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (m < 1 || m > (int64_t(1) << 31) - 1 || ldx < w->k) return make_status(LOWBIT_ERR_SHAPE);
    if (!aligned(x, 2) || !aligned(y, 2)) return make_status(LOWBIT_ERR_ALIGNMENT);
    if (cfg && (cfg->m_tile < 0 || cfg->splits < 0 || cfg->kc < 0 || cfg->path < 0 || cfg->path > 3 ||
                (cfg->k_warps != 0 && cfg->k_warps != 1 && cfg->k_warps != 2 && cfg->k_warps != 4 &&
                 cfg->k_warps != 8) ||
                (cfg->k_warps > 1 && cfg->splits > 1) ||
                (cfg->m_tile != 0 && cfg->m_tile != 8 && cfg->m_tile != 16 && cfg->m_tile != 32 && cfg->m_tile != 64) ||
                (cfg->kc != 0 && cfg->kc % (fi.tiles * 16) != 0))) {
        return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    }
    // With act-order, X is gathered into an aligned workspace first, so only ldx/K/alignment of that matter.
    const bool x_vec = w->perm ? (w->k % 8 == 0) : ((ldx % 8 == 0) && (w->k % 8 == 0) && aligned(x, 16));
    Plan pl = make_plan(w, fi, m, dtype, 2, cfg, sm_count(num_sms), x_vec);
    if (pl.wgmma && !x_vec) {
        if (cfg && cfg->path == LOWBIT_WO_PATH_WGMMA) return make_status(LOWBIT_ERR_ALIGNMENT);
        lowbit_wo_config one = cfg ? *cfg : lowbit_wo_config{};
        one.path = LOWBIT_WO_PATH_MMA;
        one.splits = 1;
        pl = make_plan(w, fi, m, dtype, 2, &one, sm_count(num_sms), x_vec);
    }
    if (pl.wgmma && !wgmma_usable(w->format, dtype)) return make_status(LOWBIT_ERR_NO_KERNEL);
    if (pl.ws && !ws_usable(w->format, dtype)) return make_status(LOWBIT_ERR_NO_KERNEL);
    if (pl.ws4 && !ws4_usable(dtype)) return make_status(LOWBIT_ERR_NO_KERNEL);
    // The ws kernel reads X by TMA (16-byte aligned rows); the automatic plan only picks it with such X.
    if (pl.ws && !x_vec) return make_status(LOWBIT_ERR_ALIGNMENT);
    if (pl.ws && cfg && (cfg->k_warps > 1 || cfg->splits > 1 || cfg->m_tile != 0 || cfg->kc != 0)) {
        return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    }
    // The in-block split-K kernels exist for 8- and 16-row m-tiles of the mma.sync path only.
    if (pl.kw > 1 && (pl.wgmma || pl.ws || pl.mt > 2)) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (!pl.wgmma && !pl.ws && !pl.s2 && !pl.s2m && mma_smem_bytes(fi, pl, m, ms_format_of(w->format) ? w->group_len / 16 : 0) > max_smem_optin()) {
        // Only an explicit kc can get here (the automatic chunk always fits): refuse it by name.
        return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    }
    const int64_t need = pl.ws_split_bytes + pl.ws_gather_bytes;
    if (need > 0 && (!workspace || workspace_bytes < need || !aligned(workspace, 256))) {
        return make_status(workspace && workspace_bytes >= need ? LOWBIT_ERR_ALIGNMENT : LOWBIT_ERR_INVALID_ARGUMENT);
    }
    Args a{};
    a.words = w->words;
    a.hi_words = w->hi_words;
    a.meta = w->meta;
    a.chan = w->channel_scales;
    a.lut = w->lut;
    a.n_tables = fi.is_lut ? w->lut_tables : 0;
    a.x = x;
    a.y = y;
    a.ws = nullptr;
    a.m = int(m);
    a.n = w->n;
    a.k = w->k;
    a.ldx = int(ldx);
    a.strips = w->n_pad / 16;
    a.ksteps = w->k_pad / (fi.tiles * 16);
    a.gtiles = w->group_len / 16;
    a.groups = w->k_pad / w->group_len;
    a.steps_per_split = pl.steps_per_split;
    a.kc = pl.kc;
    a.x_vec = (ldx % 8 == 0) && (w->k % 8 == 0) && aligned(x, 16);
    a.auto_splits = !(cfg && cfg->splits > 0);
    a.kw = pl.kw;
    a.sms = sm_count(num_sms);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    const cudaError_t e = dtype == LOWBIT_DTYPE_F16 ? run<__half>(w, a, pl, workspace, s)
                                                    : run<__nv_bfloat16>(w, a, pl, workspace, s);
    return e == cudaSuccess ? make_status(LOWBIT_OK) : make_status(LOWBIT_ERR_CUDA, e);
}

namespace {

cudaError_t dequant_format(int32_t format, int32_t dtype, const Args& a, void* out, int ld, cudaStream_t s) {
    switch (format) {
        case LOWBIT_WO_INT2: return lowbit_wo_dequant_int2(a, dtype, out, ld, s);
        case LOWBIT_WO_INT3: return lowbit_wo_dequant_int3(a, dtype, out, ld, s);
        case LOWBIT_WO_INT4: return lowbit_wo_dequant_int4(a, dtype, out, ld, s);
        case LOWBIT_WO_INT8: return lowbit_wo_dequant_int8(a, dtype, out, ld, s);
        case LOWBIT_WO_LUT2: return lowbit_wo_dequant_lut2(a, dtype, out, ld, s);
        case LOWBIT_WO_LUT3: return lowbit_wo_dequant_lut3(a, dtype, out, ld, s);
        case LOWBIT_WO_MIX4: return lowbit_wo_dequant_mix4(a, dtype, out, ld, s);
        case LOWBIT_WO_MIX3: return lowbit_wo_dequant_mix3(a, dtype, out, ld, s);
        default: return lowbit_wo_dequant_lut4(a, dtype, out, ld, s);
    }
}

// The descriptor's fields as kernel arguments (no X / Y).
Args weight_args(const lowbit_wo_weight* w, const FormatInfo& fi) {
    Args a{};
    a.words = w->words;
    a.hi_words = w->hi_words;
    a.meta = w->meta;
    a.chan = w->channel_scales;
    a.lut = w->lut;
    a.n_tables = fi.is_lut ? w->lut_tables : 0;
    a.n = w->n;
    a.k = w->k;
    a.strips = w->n_pad / 16;
    a.ksteps = w->k_pad / (fi.tiles * 16);
    a.gtiles = w->group_len / 16;
    a.groups = w->k_pad / w->group_len;
    return a;
}

}  // namespace

extern "C" lowbit_status lowbit_wo_dequantize(const lowbit_wo_weight* w, void* out, int64_t ld_out, int32_t dtype,
                                              void* stream) {
    FormatInfo fi;
    const lowbit_status st = check_weight(w, fi);
    if (st.code != LOWBIT_OK) return st;
    if (!out || (dtype != LOWBIT_DTYPE_F16 && dtype != LOWBIT_DTYPE_BF16)) return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    if (ld_out < w->k || ld_out > INT32_MAX) return make_status(LOWBIT_ERR_SHAPE);
    if (!aligned(out, 2)) return make_status(LOWBIT_ERR_ALIGNMENT);
    const cudaError_t e = dequant_format(w->format, dtype, weight_args(w, fi), out, int(ld_out), static_cast<cudaStream_t>(stream));
    return e == cudaSuccess ? make_status(LOWBIT_OK) : make_status(LOWBIT_ERR_CUDA, e);
}

extern "C" lowbit_status lowbit_wo_gather_columns(const lowbit_wo_weight* w, const void* x, int64_t ldx, int64_t m,
                                                  void* out, int32_t dtype, void* stream) {
    FormatInfo fi;
    const lowbit_status st = check_weight(w, fi);
    if (st.code != LOWBIT_OK) return st;
    if (!w->perm || !x || !out || (dtype != LOWBIT_DTYPE_F16 && dtype != LOWBIT_DTYPE_BF16)) {
        return make_status(LOWBIT_ERR_INVALID_ARGUMENT);
    }
    if (m < 1 || m > INT32_MAX || ldx < w->k) return make_status(LOWBIT_ERR_SHAPE);
    if (!aligned(x, 2) || !aligned(out, 2)) return make_status(LOWBIT_ERR_ALIGNMENT);
    const int64_t total = m * w->k;
    const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    if (dtype == LOWBIT_DTYPE_F16) {
        gather_kernel<__half><<<blocks, 256, 0, s>>>(static_cast<const __half*>(x), ldx, w->perm,
                                                     static_cast<__half*>(out), int(m), w->k);
    } else {
        gather_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(static_cast<const __nv_bfloat16*>(x), ldx, w->perm,
                                                            static_cast<__nv_bfloat16*>(out), int(m), w->k);
    }
    const cudaError_t e = cudaGetLastError();
    return e == cudaSuccess ? make_status(LOWBIT_OK) : make_status(LOWBIT_ERR_CUDA, e);
}
