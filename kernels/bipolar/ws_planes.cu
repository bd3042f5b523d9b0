// Warp-specialized persistent bipolar plane GEMM (large M, sm_90a): the instances and their launcher. Algorithm:
// lowbit/bip_ws_gemm.cuh. The two plane tensor maps (X: bytes x M x P, W: bytes x N x Q) are encoded per call on
// the host (lowbit/tma_host.h) and passed by value as __grid_constant__ kernel parameters.
//
// Instances: the large tile of kernels/bipolar/README.md (BX = the most activation rows with P * BX <= 256 and
// P * Q * BX <= 256) for every P * Q <= 8 with Q <= 4 (Q >= 5 leaves fewer than 3 ring slots of 128-byte stages),
// each one CTA per SM and as 2-CTA multicast clusters; for Q = 4 also the split-X tile (the default there); and each
// with ping-pong consumers (ws v5 / v7: tile per warpgroup pp_bx x 64 pp_wh; the default for W1A1, W2A4, W2A2, W2A1,
// W1A2, pingpong_default), W1A1 also with 64 x 256 tiles (LOWBIT_BIP_WS_PINGPONG=2).
#include <cuda.h>
#include <cuda_runtime.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>

#include "lowbit/bip_ws_gemm.cuh"
#include "lowbit/launch.cuh"
#include "lowbit/tma_host.h"

namespace {

// LOWBIT_BIP_WS_MULTICAST=1 / 0 forces 2-CTA multicast clusters on / off (same-run comparisons in
// benches/micro/bipolar.cu `wsm`); unset, each instance takes its measured default (multicast_default).
// (Before ws v3 multicast measured ~2x slower: the cluster arrives compiled to two GPU-scope fences each, NOTES.md.)
int multicast_env() {
    const char* v = getenv("LOWBIT_BIP_WS_MULTICAST");
    return v == nullptr || v[0] == 0 ? -1 : v[0] == '1' ? 1 : 0;
}

// Per-instance default of the multicast variant (ws v3). Off everywhere: with the fences gone it runs at the speed
// of one CTA per SM (H100 run 1: -2% .. +5% time on all 8 instances, split-X included), not faster (NOTES.md ws v3).
template <int P, int Q, int BX>
constexpr bool multicast_default() {
    return false;
}

// LOWBIT_BIP_WS_SPLIT=1 / 0 forces the split-X tile (64 weight rows x 2 BX activation rows, lowbit/bip_ws_gemm.cuh
// Geo) on / off where it is instantiated (Q = 4); =2 its transposed form (ws v4, SX = 2: W4A1 only, one CTA per SM;
// elsewhere 2 means 1); unset, split_default decides.
int split_env() {
    const char* v = getenv("LOWBIT_BIP_WS_SPLIT");
    return v == nullptr || v[0] == 0 ? -1 : v[0] == '1' ? 1 : v[0] == '2' ? 2 : 0;
}

// ws v4: the transposed split-X tile for W4A1 (P = 1, Q = 4) is off by default: exact, and it cuts the kernel's
// shared-memory throughput from 78% to 48%, but it measured 1-3% slower than the split-X tile (H100, NOTES.md ws v4).
#ifndef LOWBIT_BIP_WS_SPLIT_T_DEFAULT
#define LOWBIT_BIP_WS_SPLIT_T_DEFAULT 0
#endif
template <int P, int Q, int BX>
constexpr bool split_t_default() {
    return LOWBIT_BIP_WS_SPLIT_T_DEFAULT && P == 1 && Q == 4;
}

// H100 run 1 of ws v3 (NOTES.md): W4A1 257.0 -> 216.3 us, W4A2 477.6 -> 391.3 us at M = 4096, N = K = 8192.
template <int P, int Q, int BX>
constexpr bool split_default() {
    return Q == 4;
}

// LOWBIT_BIP_WS_TMA_STORE=0: ws v1's direct f16 / bf16 stores instead of the staged TMA stores (same-run A/B);
// =2 (diagnosis only): TMA stores even when N is not a multiple of 8 (known to write past column N).
int tma_store_mode() {
    const char* v = getenv("LOWBIT_BIP_WS_TMA_STORE");
    return v == nullptr ? 1 : v[0] == '0' ? 0 : v[0] == '2' ? 2 : 1;
}

// LOWBIT_BIP_WS_DEBUG=1: the cluster grid of the first multicast launch per variant on stderr (diagnosis only).
bool debug_enabled() {
    const char* v = getenv("LOWBIT_BIP_WS_DEBUG");
    return v != nullptr && v[0] == '1';
}

// MC = 0: one CTA per SM, grid = min(tiles, SMs). MC = 1 / 2: clusters of 2 CTAs sharing one operand (X / W) by
// TMA multicast, as many clusters as can be resident at once (cudaOccupancyMaxActiveClusters, at most SMs / 2):
// the kernel is persistent, a second wave of clusters would serialize.
template <int P, int Q, int BX, int MC, int SX = 0>
cudaError_t launch_mc(const lowbit::bip::Args& a, int nsm, int group, cudaStream_t st) {
    using namespace lowbit::bipws;
    using G = Geo<P, Q, BX, SX>;
    const uint64_t cols = uint64_t(a.kchunks) * 16;  // bytes holding data; beyond: zero fill
    CUtensorMap xmap, wmap;
    // The multicast operand's map has a half box of one plane (each CTA sends its half of every plane); split X:
    // the activation box is one warpgroup's half (BX rows, P planes), the weight box 64 rows x Q planes (x Q / 2
    // with W multicast: each CTA sends half of the planes).
    constexpr uint32_t xrows = SX ? BX : MC == 1 ? BX / 2 : BX, xplanes = SX ? P : MC == 1 ? 1 : P;
    constexpr uint32_t wrows = SX ? kBW / 2 : MC == 2 ? kBW / 2 : kBW, wplanes = SX ? (MC == 2 ? Q / 2 : Q) : MC == 2 ? 1 : Q;
    cudaError_t e = lowbit::tma::make_3d_sw128_u8(xmap, a.x, cols, uint64_t(a.m), P, uint64_t(a.ldx) * 4,
                                                  uint64_t(a.x_plane) * 4, kStageBytes, xrows, xplanes);
    if (e != cudaSuccess) return e;
    e = lowbit::tma::make_3d_sw128_u8(wmap, a.w, cols, uint64_t(a.n), Q, uint64_t(a.ldw) * 4, uint64_t(a.w_plane) * 4,
                                      kStageBytes, wrows, wplanes);
    if (e != cudaSuccess) return e;
    // f16 / bf16 output through TMA tensor stores (ws v2) when the copy engine can address it: 16-byte aligned base,
    // row pitch a multiple of 16 bytes; box = 64 columns (128 bytes, 128-byte swizzle) x the staging rows. N must be
    // a multiple of 8 as well: on an H100 the store's clipping at N = 203 / 129 / 250 wrote past column N (the guard
    // columns of benches/micro/bipolar.cu `ws` differed; N = 520 / 640 were exact), i.e. the edge is honoured in
    // 16-byte units only (CUTLASS's TMA epilogues require the same alignment of the extent). Anything else (int8 /
    // int32, odd pitches or N, a map the driver rejects) keeps the direct stores.
    CUtensorMap ymap{};
    int ystore = 0;
    if ((a.epi.out == lowbit::i8::kOutF16 || a.epi.out == lowbit::i8::kOutBf16) && a.ldy % 8 == 0 &&
        (a.n % 8 == 0 || tma_store_mode() == 2) && (reinterpret_cast<uintptr_t>(a.y) & 15) == 0 && tma_store_mode()) {
        ystore = lowbit::tma::make_2d_sw128(ymap, CU_TENSOR_MAP_DATA_TYPE_UINT16, a.y, uint64_t(a.m), uint64_t(a.n),
                                            uint64_t(a.ldy) * 2, G::kOutRows, 64) == cudaSuccess;
    }
    auto kern = ws_plane_kernel<P, Q, BX, MC, SX>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmem);
    if (e != cudaSuccess) return e;
    const int64_t mt = (a.m + G::kTX - 1) / G::kTX, nt = (a.n + G::kTW - 1) / G::kTW;
    if constexpr (MC == 0) {
        const int64_t tiles = mt * nt;
        const int grid = int(tiles < nsm ? tiles : nsm);
        kern<<<grid, kThreads, G::kSmem, st>>>(a, xmap, wmap, group, ymap, ystore);
        return cudaGetLastError();
    } else {
        const int64_t units = MC == 1 ? mt * ((nt + 1) / 2) : ((mt + 1) / 2) * nt;
        lowbit::LaunchEx cfg(dim3(unsigned(2 * (nsm / 2 > 0 ? nsm / 2 : 1))), dim3(kThreads), G::kSmem, st);
        cfg.cluster_x(2);
        const int resident = cfg.max_active_clusters(kern);
        if (resident < 1) return cudaErrorNotSupported;  // the caller falls back to MC = 0
        int64_t clusters = units < resident ? units : resident;
        if (clusters > nsm / 2) clusters = nsm / 2 > 0 ? nsm / 2 : 1;
        cfg.grid(dim3(unsigned(2 * clusters)));
        static std::atomic<bool> told{false};
        if (debug_enabled() && !told.exchange(true))
            fprintf(stderr, "bip ws P=%d Q=%d BX=%d MC=%d SX=%d: %d resident clusters, %lld launched, %lld units\n", P,
                    Q, BX, MC, SX, resident, (long long)clusters, (long long)units);
        return cfg.launch(kern, a, xmap, wmap, group, ymap, ystore);
    }
}

// LOWBIT_BIP_WS_PINGPONG (ws v5): ping-pong consumer warpgroups (lowbit/bip_ws_gemm.cuh ws_pp_kernel), each
// warpgroup its own tile, their K loops alternating so one's drain + epilogue runs under the other's BGMMAs. Every
// instance (tiles: pp_bx / pp_wh below; W1A1 128 x 128, two m64n128k256 row blocks; W4A1 64 x 64 x 4 planes). =1: on;
// =2: on, W1A1 with 64 x 256 tiles instead (measured 23% slower); =0: off; unset: pingpong_default.
int pingpong_env() {
    const char* v = getenv("LOWBIT_BIP_WS_PINGPONG");
    return v == nullptr || v[0] == 0 ? -1 : v[0] == '1' ? 1 : v[0] == '2' ? 2 : 0;
}

// Default (H100, NOTES.md ws v5, same run): on for W1A1 (8192^3 136.3 -> 127.1 us short runs, 135.1 -> 132.7 us in
// 200-call runs; M = 4096 69.0 -> 67.3 us), off for W4A1 (M = 4096 204.4 -> 216.9 us: its 64 x 64 x 4 tile fills
// 1.67x the bytes per op of the split-X tile). ws v7 (H100, one process, every op from an idle card, M = 4096,
// N = K = 8192): on for W2A4 (372.6 -> 350.1 us, 1.01 -> 1.08x cuBLASLt int8), W2A2 (198.1 -> 185.5), W2A1 (115.7 ->
// 103.7) and W1A2 (111.3 -> 107.3); off for W4A2 (392.0 -> 409.7: 1.67x the fill bytes, as W4A1) and W1A4 (196.6 ->
// 227.7).
template <int P, int Q>
constexpr bool pingpong_default() {
    return (P == 1 && Q == 1) || (P == 4 && Q == 2) || (P == 2 && Q == 2) || (P == 1 && Q == 2) || (P == 2 && Q == 1);
}

// Ping-pong tile of one consumer warpgroup per instance (ws v7, NOTES.md): BX activation rows x WH 64-row weight
// blocks, the largest with WH * Q * P * BX / 2 = 128 accumulators per thread and one wgmma N = P * BX <= 256. The
// multi-plane tiles fill 32 KB per 1024-bit stage for half the ops of the cooperative kernel's 48 KB stage (1.33x the
// bytes per op, as W1A1's 128 x 128), except the 4-plane weights (W4A1, W4A2: 40 KB, 1.67x of the split-X tile).
template <int P, int Q>
constexpr int pp_bx() {
    return P == 1 ? (Q == 4 ? 64 : 128) : P == 2 ? (Q == 4 ? 32 : 64) : 32;
}
template <int P, int Q>
constexpr int pp_wh() {
    return (P == 1 && Q == 1) || (P == 2 && Q == 1) || (P == 4 && Q == 1) ? 2 : 1;
}

// Tile order of the W1A1 ping-pong kernel (ws v6, NOTES.md): the plan's group (bip_launch.cu ws_group: 4 for W1A1,
// LOWBIT_BIP_WS_GROUP=<n> overrides), counted in the ping-pong kernel's own 128-row activation tiles, i.e. groups of
// 512 activation rows. H100, same run: 8192^3 126.3-126.5 -> 122.0-122.3 us (short runs), 133.5 / 137.9 -> 131.7 us
// (200-call runs), M = 4096 67.5-67.8 -> 65.1-65.3 us against ws v5's first rule (ceil(M / 256) tiles, capped by
// L2 / 4: 4096 rows per group at 8192^3).

// (ws v6's K-loop / ring variants, LOWBIT_BIP_WS_PP_KLOOP, all measured slower, were removed after ws v7: code in
// commit 0fa85a6, numbers in NOTES.md ws v6.)

// One CTA per SM, grid = min(tiles, SMs); the tile is one warpgroup's (WH * 64 weight rows x BX activation rows).
template <int P, int Q, int BX, int WH>
cudaError_t launch_pp(const lowbit::bip::Args& a, int nsm, int group, cudaStream_t st) {
    using namespace lowbit::bipws;
    using G = PGeo<P, Q, BX, WH>;
    const uint64_t cols = uint64_t(a.kchunks) * 16;
    CUtensorMap xmap, wmap;
    cudaError_t e = lowbit::tma::make_3d_sw128_u8(xmap, a.x, cols, uint64_t(a.m), P, uint64_t(a.ldx) * 4,
                                                  uint64_t(a.x_plane) * 4, kStageBytes, BX, P);
    if (e != cudaSuccess) return e;
    e = lowbit::tma::make_3d_sw128_u8(wmap, a.w, cols, uint64_t(a.n), Q, uint64_t(a.ldw) * 4, uint64_t(a.w_plane) * 4,
                                      kStageBytes, G::kTW, Q);
    if (e != cudaSuccess) return e;
    CUtensorMap ymap{};  // as launch_mc: f16 / bf16 through TMA stores where the copy engine can address y
    int ystore = 0;
    if ((a.epi.out == lowbit::i8::kOutF16 || a.epi.out == lowbit::i8::kOutBf16) && a.ldy % 8 == 0 &&
        (a.n % 8 == 0 || tma_store_mode() == 2) && (reinterpret_cast<uintptr_t>(a.y) & 15) == 0 && tma_store_mode()) {
        ystore = lowbit::tma::make_2d_sw128(ymap, CU_TENSOR_MAP_DATA_TYPE_UINT16, a.y, uint64_t(a.m), uint64_t(a.n),
                                            uint64_t(a.ldy) * 2, G::kOutRows, 64) == cudaSuccess;
    }
    auto kern = ws_pp_kernel<P, Q, BX, WH>;
    e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, G::kSmem);
    if (e != cudaSuccess) return e;
    const int64_t tiles = int64_t((a.m + BX - 1) / BX) * ((a.n + G::kTW - 1) / G::kTW);
    const int grid = int(tiles < nsm ? tiles : nsm);
    kern<<<grid, kThreads, G::kSmem, st>>>(a, xmap, wmap, group, ymap, ystore);
    return cudaGetLastError();
}

template <int P, int Q, int BX>
cudaError_t launch(const lowbit::bip::Args& a, int nsm, int group, cudaStream_t st) {
    using namespace lowbit::bipws;
    if (nsm < 0) return available<P, Q, BX>() ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    {  // ping-pong consumers (ws v5; every instance since ws v7)
        const int pe = pingpong_env();
        // (a forced LOWBIT_BIP_WS_MULTICAST=1 keeps the multicast kernel unless ping-pong is forced as well)
        if (pe > 0 || (pe < 0 && multicast_env() != 1 && pingpong_default<P, Q>())) {
            if constexpr (P == 1 && Q == 1) {
                if (pe == 2) return launch_pp<1, 1, 256, 1>(a, nsm, group, st);
            }
            return launch_pp<P, Q, pp_bx<P, Q>(), pp_wh<P, Q>()>(a, nsm, group, st);
        }
    }
    const int env = multicast_env();
    const bool mc = env == 1 || (env < 0 && multicast_default<P, Q, BX>());
    if constexpr (Q == 4) {  // split-X tile (ws v3) for the 4-plane weights
        const int se = split_env();
        if constexpr (P == 1 && BX == 64) {  // transposed split X (ws v4): one CTA per SM, no multicast variant
            if (se == 2 || (se < 0 && split_t_default<P, Q, BX>())) return launch_mc<P, Q, BX, 0, 2>(a, nsm, group, st);
        }
        if (se >= 1 || (se < 0 && split_default<P, Q, BX>())) {
            if (mc) {
                const cudaError_t e = launch_mc<P, Q, BX, multicast_for<P, Q, BX, 1>(), 1>(a, nsm, group, st);
                if (e != cudaErrorNotSupported) return e;
            }
            return launch_mc<P, Q, BX, 0, 1>(a, nsm, group, st);
        }
    }
    if (mc) {
        const cudaError_t e = launch_mc<P, Q, BX, multicast_for<P, Q, BX>()>(a, nsm, group, st);
        if (e != cudaErrorNotSupported) return e;
    }
    return launch_mc<P, Q, BX, 0>(a, nsm, group, st);
}

}  // namespace

#define LOWBIT_BIP_WS_CASE(P, Q, BX)                              \
    if (p == P && q == Q) {                                        \
        *bx_out = BX;                                              \
        if (nsm == -2) return cudaSuccess;                         \
        return launch<P, Q, BX>(a, nsm, group, st);                \
    }

// (p, q): activation / weight bits. nsm: CTAs (one per SM); nsm == -1 only asks whether the instance runs on this
// device (cudaSuccess), nsm == -2 only whether it exists in the library. *bx_out = the instance's activation rows
// per tile. a.steps must be ceil(a.kchunks / 8) (128-byte stages); a.ws is ignored (no split-K).
// group: activation tiles per rasterization group (<= 0: 4, the int8 ws kernel's measured choice).
// cudaErrorInvalidValue: no instance for (p, q).
cudaError_t lowbit_bip_launch_ws(const lowbit::bip::Args& a, int p, int q, int nsm, int group, cudaStream_t st,
                                 int* bx_out) {
    if (group <= 0) group = 4;
    LOWBIT_BIP_WS_CASE(1, 1, 256)
#ifndef LOWBIT_BIP_WS_ONE
    LOWBIT_BIP_WS_CASE(1, 2, 128)
    LOWBIT_BIP_WS_CASE(2, 1, 128)
    LOWBIT_BIP_WS_CASE(2, 2, 64)
    LOWBIT_BIP_WS_CASE(1, 4, 64)
    LOWBIT_BIP_WS_CASE(4, 1, 64)
    LOWBIT_BIP_WS_CASE(2, 4, 32)
    LOWBIT_BIP_WS_CASE(4, 2, 32)
#endif
    return cudaErrorInvalidValue;
}
