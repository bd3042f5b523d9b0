// lowbit/wo_ws4.cuh: ws-W, the weight-only ws kernel with FOUR consumer warpgroups (more independent
// decode -> wgmma -> wait_group chains per SM) for the middle of the M range (about M = 17..512), Hopper (sm_90a).
//
// Problem, arithmetic and layout: exactly those of lowbit/wo_ws.cuh ws_kernel (ws v1): Y^T[N, M] = W[N, K] * X[M, K]^T,
// W dequantized in registers ((q - z) in T times the group scale rounded to T, one rounding) as wgmma's A operand
// (m64nBXk16, A from registers), X the B operand (128-byte swizzled TMA box in shared memory), f32 accumulation,
// y = T(acc * chan[n]). Every output's products and accumulation order equal ws v1's at the same BX (bit-identical).
//
// Why (weight-only NOTES.md, ws-PP / "ws-W"): the register-A mainloop of one warpgroup is latency-bound (~600+ cycles
// per k-step of ld.shared -> decode -> wgmma issue -> wait_group beyond its tensor work); at BX = 64 the tensor work
// per step is ~128 cycles, so ws v1's two warpgroups leave the tensor pipe mostly idle. Four warpgroups give four
// such chains per SM, and one X box per stage serves 256 weight rows instead of 128 (half the L2 -> SM X traffic).
//
// CTA = 4 consumer warpgroups + 1 producer warp (544 threads), one CTA per SM (launch bound 544: 120 registers per
// thread, no setmaxnreg needed), persistent over work units (tile, K split); tiles of 256 weight rows (16 strips)
// x BX activation rows, M-fastest:
//   warp 16 (producer), lane 0: per 64-column k-step one X box (TMA, BX x 128 B, 128-byte swizzle, zero fill) and
//     the weight stage (WT: one 2-D TMA of the words as [strips][ksteps * 128] u32, box 16 strips x 128 words, strips
//     past the weight zero-filled; else one 512-byte bulk copy per strip), both on the slot's full barrier;
//   warpgroup cw (warps 4 cw .. 4 cw + 3, one strip each): weight rows 64 cw .. 64 cw + 63 of the tile; per k-step
//     wait full[s], one ld.shared.v4 of the lane's codes, v1's decode + group scale into the A registers (two sets,
//     by k-step parity), four wgmma m64nBXk16, commit, wait_group 1, release of the previous step's slot (one
//     arrive per warp: 16 per slot). The four warpgroups drift freely within the ring.
// K splits (splits > 1): each unit adds its f32 partials (channel scale applied) into p.ws ([M][N], zero on entry;
// the caller converts and re-zeroes), as ws_s_kernel.
// Stream-K (SK, tenth session, NOTES.md ws-SK): the tiles' k-steps, tile-major, as one run of W = tiles x ksteps
// k-steps; CTA c takes [c W / G, (c + 1) W / G) (G = gridDim.x <= SMs, all CTAs resident), as segments (tile, k0, k1).
// A whole tile stores T directly; a tile cut across CTAs is finished by its OWNER, the CTA holding its k0 = 0
// segment (the last segment of that CTA's run): the others (each the FIRST segment of its CTA's run, so it never
// waits before publishing) store their f32 accumulators to the CTA's slot and raise its flag; the owner waits for
// the flags in k order, adds the slots to its accumulators (a fixed order: deterministic), re-zeroes slots and
// flags, and stores T(sum * chan) as an unsplit tile. p.ws: [G rounded to 64] int flags, then G slots of
// (NC x 128 threads) x BX / 2 floats in the consumers' register order; all zero on entry, left zero (sk_ws_bytes).
// NC = 2, BX = 256 (ws-SKv, thirteenth session, NOTES.md): ws v1's geometry (two consumer warpgroups, tiles of 128
// weight rows x 256 activation rows, 384 threads, consumers at 240 registers) on this kernel's schedules; the library
// runs it with the stream-K schedule only (lowbit_wo_ws_sk_int4), for the unsplit ws plans whose last round of tiles
// leaves SMs idle (e.g. 28672x8192 at M = 256: 224 tiles on 132 SMs).
// ws4-C (CS > 1, sixteenth session, NOTES.md ws4-C): the K splits of a tile on the CS CTAs of one thread-block
// cluster (grid = tiles x CS, one unit per CTA, rank = K slice of ceil(ksteps / CS) k-steps; an empty last slice adds
// zeros), summed over distributed shared memory (cluster_finish4) instead of f32 atomics into p.ws + a convert launch:
// no workspace, one rounding, deterministic (slices added in the fixed order 0 .. CS - 1).
// Limits: INT formats without high words (Int4 instantiated); sm_90a; X 16-byte aligned with ldx % 8 == 0, K % 8 == 0
// (TMA); NC = 3 / 4 at BX = 64 or 128 (BX = 128: 64 accumulators + 32 A registers within the 120-register cap), NC = 2
// at BX = 256.
#pragma once

#include <cuda.h>

#include <type_traits>

#include "lowbit/wo_ws.cuh"

namespace lowbit {
namespace wows4 {

using wo::Args;

constexpr int kBK = 64;

// NC consumer warpgroups (2, 3 or 4) + one producer warpgroup; tiles of 64 NC weight rows (4 NC strips).
template <int NC>
struct Cta {
    static constexpr int kStrips = 4 * NC;
    static constexpr int kThreads = (NC + 1) * 128;
    static constexpr int kCap = (65536 / kThreads) / 8 * 8;  // registers per thread at the launch bound
    static constexpr int kProdRegs = 24;                      // setmaxnreg of the producer warpgroup
    // setmaxnreg of the consumers: the rest of the launch allocation (NC = 4: 112, NC = 3: 160, NC = 2: 240)
    static constexpr int kConsRegs = ((kThreads * kCap - 128 * kProdRegs) / (NC * 128)) / 8 * 8;
    static constexpr int kWStage = kStrips * 512;  // weight bytes per stage
};

template <int BX, int NC>
struct Geo {
    static constexpr int kXStage = BX * 128;
    static constexpr int kSlot = kXStage + Cta<NC>::kWStage;  // X first: every box 1024-aligned
    static constexpr int kFit = (200 * 1024) / kSlot;
    static constexpr int kStages = kFit > 16 ? 16 : kFit;
    static constexpr int kSmem = kStages * kSlot + 1024;
};

// Stream-K: the CTA holding work index w (tile-major k-steps) of W over G CTAs (the largest c with c W / G <= w).
__device__ __forceinline__ int sk_cta(int64_t w, int64_t W, int G) { return int(((w + 1) * G - 1) / W); }

// Programmatic dependent launch: let the next kernel of the stream launch, then wait for the previous one (its
// stores visible). A no-op pair when the kernel was launched without the attribute.
__device__ __forceinline__ void griddep_start() {
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
}

// Consumer warpgroups' named barrier (id 1: ws4_kernel uses no other named barrier).
template <int NC>
__device__ __forceinline__ void consumer_bar() {
    asm volatile("bar.sync 1, %0;\n" ::"r"(NC * 128) : "memory");
}

// ws4-C's split finish (CS > 1; the ws-C finish of lowbit/wo_ws.cuh cluster_finish for NC consumer warpgroups and any
// cluster size up to 8). The tile's 8-row activation blocks below M (nbv of BX / 8) are dealt to the ranks as
// contiguous runs (block b to rank b CS / nbv, so every rank finishes at most ceil(nbv / CS) blocks and ranks past
// nbv none). After every consumer warpgroup's last wgmma (named barrier 1: the ring is idle, every TMA into it has
// completed, since each slot was waited on), each consumer thread stages the float4 of every block another rank
// finishes into its own ring (block b at (b x NC 128 + ct) x 16: conflict-free 16-byte stores, a warp's remote load
// covers 512 contiguous bytes); barrier.cluster (release / acquire); each rank reads its blocks from every peer over
// DSMEM, adds the slices in the order 0 .. CS - 1 (its own from registers) and stores T(sum * chan) as the unsplit
// kernel; a second barrier.cluster keeps the staging alive until every peer has read it. The producer warpgroup
// joins both cluster barriers.
template <typename T, int BX, int NC, int CS>
__device__ __forceinline__ void cluster_finish4(const Args& p, float (&acc)[BX / 2], uint32_t stage, int ct, int m0,
                                                int n0, float cs0, float cs1, int lane, bool active) {
    static_assert(CS >= 2 && CS <= 8, "2 .. 8 K slices per cluster (portable cluster sizes)");
    constexpr int kCons = NC * 128, NB = BX / 8;
    const int nbv = min(NB, (p.m - m0 + 7) >> 3);  // 8-row blocks below M
    const int rank = int(tma::cluster_rank());
    consumer_bar<NC>();  // every consumer warpgroup is done with the ring
#pragma unroll
    for (int b = 0; b < NB; ++b) {
        if (b < nbv && (b * CS) / nbv != rank) {
            asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(stage + uint32_t((b * kCons + ct) * 16)),
                         "f"(acc[4 * b]), "f"(acc[4 * b + 1]), "f"(acc[4 * b + 2]), "f"(acc[4 * b + 3])
                         : "memory");
        }
    }
    tma::cluster_sync();  // release / acquire at cluster scope: every CTA's staging is visible to its peers
#pragma unroll
    for (int b = 0; b < NB; ++b) {
        if (!(b < nbv && (b * CS) / nbv == rank)) continue;
        float4 v[CS];
        const uint32_t addr = stage + uint32_t((b * kCons + ct) * 16);
#pragma unroll
        for (int q = 0; q < CS; ++q) {
            if (q != rank) v[q] = tma::ld_cluster_v4f(tma::mapa_shared(addr, uint32_t(q)));
        }
        const float4 own = make_float4(acc[4 * b], acc[4 * b + 1], acc[4 * b + 2], acc[4 * b + 3]);
        float4 a = rank == 0 ? own : v[0];
#pragma unroll
        for (int q = 1; q < CS; ++q) {
            const float4 c = q == rank ? own : v[q];
            a.x += c.x, a.y += c.y, a.z += c.z, a.w += c.w;
        }
        float sum[4] = {a.x, a.y, a.z, a.w};
        if (active) wo::store_strip<T, 8>(p, sum, n0, cs0, cs1, m0 + 8 * b, lane, false);
    }
    tma::cluster_sync();  // every CTA's reads of its peers' staging are complete: the peers may exit
}

// Probe rungs of the launch-floor harness (benches/micro/wo_ws4_floor.cu, NOTES.md "ws-floor", seventeenth session):
// ws4_body cut after each part of the kernel's life. The library kernel (ws4_kernel) is kProbeFull; every other rung
// is instantiated only by the harness (ws4_probe_kernel). Rungs: kProbeEmpty returns at once (the launch
// configuration alone); kProbeSetup + the ring barriers' init, fence, __syncthreads, setmaxnreg, the producer's L2
// prefetch and griddep_start, then returns; kProbeTma + the producer's whole TMA stream while the consumers only wait
// on each full barrier and release the slot (no metadata, no ld.shared, no decode); kProbeDecode + the metadata loads,
// ld.shared and decode (no wgmma: the A registers XOR-folded into acc, rs_kstep kNoMma) and no epilogue; kProbeMma +
// the wgmmas (no epilogue: no stores, no split-K reds, no cluster finish; acc kept alive by a store under p.m < 0,
// which never holds); kProbeFull the library kernel; kProbeStamp the full
// kernel plus %globaltimer / clock64 stamps per CTA into ts (ws4_stamp); kProbeTmapPf the full kernel plus
// prefetch.tensormap of both maps by the producer thread at entry (a lever candidate, not a decomposition rung).
constexpr int kProbeEmpty = 0, kProbeSetup = 1, kProbeTma = 2, kProbeDecode = 3, kProbeMma = 4, kProbeFull = 5,
              kProbeStamp = 6, kProbeTmapPf = 7;
// kProbeStamp: per CTA 32 u64 at ts[blockIdx.x * 32 ..]: [i] %globaltimer (ns), [16 + i] clock64 at point i:
// 0 entry (thread 0), 1 after the ring init's __syncthreads (thread 0), 2 consumer thread 0 after griddep_start,
// 3 consumer thread 0 once the first full barrier completed (first X + weight stage landed; the unit's metadata loads
// were issued before, and set_group may have waited for them), 4 consumer thread 0
// after the last wgmma_wait<0>, 5 .. 4 + NC each consumer warpgroup's thread 0 at its end (after the epilogue or the
// cluster finish), 10 the producer thread after griddep_start, 11 the producer thread after its last TMA issue;
// [15] the SM id.
constexpr int kStampWords = 32;

// The CTA's index is read by a volatile asm at each stamp so that its address is not kept live across the mainloop
// (hoisted, it made the stamped rung spill).
__device__ __forceinline__ void ws4_stamp(unsigned long long* ts, int i) {
    unsigned long long g, c;
    uint32_t b;
    asm volatile("mov.u64 %0, %%globaltimer;\n" : "=l"(g));
    asm volatile("mov.u64 %0, %%clock64;\n" : "=l"(c));
    asm volatile("mov.u32 %0, %%ctaid.x;\n" : "=r"(b));
    ts[size_t(b) * kStampWords + i] = g;
    ts[size_t(b) * kStampWords + 16 + i] = c;
}

// The kernel body (ws4_kernel is kProbeFull; ws4_probe_kernel the harness's rungs). ts: kProbeStamp only.
template <class Fmt, typename T, int BX, int NC, bool WT, bool SK, int CS, int PR>
__device__ __forceinline__ void ws4_body(const Args& p, const CUtensorMap& xmap, const CUtensorMap& wmap, int splits,
                                         int pf, unsigned long long* ts) {
    static_assert(!Fmt::kHasHi && !Fmt::kIsLut && Fmt::kTiles == 4, "one 16-byte word group per lane and k-step");
    static_assert(((NC == 3 || NC == 4) && (BX == 64 || BX == 128)) || (NC == 2 && BX == 256),
                  "NC 3 / 4 at BX 64 / 128 (registers), NC 2 at BX 256");
    static_assert(CS == 1 || (!SK && WT), "ws4-C: the K-split schedule with the weight TMA");
    static_assert(PR == kProbeFull || (WT && !SK), "probe rungs: the K-split / cluster schedule with the weight TMA");
    if constexpr (PR == kProbeEmpty) return;
    constexpr bool kStamp = PR == kProbeStamp;
    if constexpr (kStamp) {
        if (threadIdx.x == 0) {
            ws4_stamp(ts, 0);
            unsigned sm;
            asm volatile("mov.u32 %0, %%smid;\n" : "=r"(sm));
            ts[size_t(blockIdx.x) * kStampWords + 15] = sm;
        }
    }
    using G = Geo<BX, NC>;
    using C = Cta<NC>;
    constexpr int kNC = NC, kStrips = C::kStrips;
    using namespace tma;
    constexpr int S = G::kStages;
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    unsigned char* ring = wows::init_ring(smem_raw, full, empty, 4 * kNC);

    const int tid = threadIdx.x;
    if constexpr (kStamp) {
        if (tid == 0) ws4_stamp(ts, 1);
    }
    const int mt = (p.m + BX - 1) / BX, nt = (p.strips + kStrips - 1) / kStrips;
    const int ksteps = p.ksteps;
    if constexpr (CS > 1) splits = CS;  // one unit per CTA (grid = tiles x CS), rank = split
    const int kper = (ksteps + splits - 1) / splits;
    const int total = nt * mt * splits;
    // Work of this CTA as segments (tile t, k-steps k0 .. k1 - 1). K splits: units u = blockIdx.x + i gridDim.x of
    // tile u / splits, split u % splits. Stream-K: the run [c W / G, (c + 1) W / G) cut at tile boundaries.
    const int64_t work = int64_t(nt) * mt * ksteps;
    using UI = std::conditional_t<SK, int64_t, int>;
    UI uw = SK ? UI(int64_t(blockIdx.x) * work / gridDim.x) : UI(blockIdx.x);
    const UI uhi = SK ? UI(int64_t(blockIdx.x + 1) * work / gridDim.x) : UI(total);
    auto next_unit = [&](int& t, int& k0, int& k1) -> bool {
        if (uw >= uhi) return false;
        if constexpr (SK) {
            t = int(uw / ksteps);
            k0 = int(uw - int64_t(t) * ksteps);
            k1 = int(min(int64_t(ksteps), k0 + (uhi - uw)));
            uw += k1 - k0;
        } else {
            t = int(uw) / splits;
            const int sp = int(uw) - t * splits;
            k0 = sp * kper;
            k1 = min(ksteps, k0 + kper);
            uw += int(gridDim.x);
        }
        return true;
    };

    // Programmatic dependent launch (NOTES.md ws-PDL; launch / launch_sk with pdl): this CTA may start while the
    // previous kernel of the stream drains. Before griddepcontrol.wait (griddep_start) nothing is read into the SM and
    // nothing is written: the producer only pulls the first pf weight stages of its first unit into L2 (the point of
    // coherence: a line fetched before the previous kernel's stores is updated by them). Without the launch attribute
    // the wait returns at once.
    if (tid >= kNC * 128) {
        // ------------------------------- producer (one thread) -------------------------------
        setmaxnreg_dec<C::kProdRegs>();
        if constexpr (PR == kProbeTmapPf) {
            if (tid == kNC * 128) {
                asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&xmap)) : "memory");
                asm volatile("prefetch.tensormap [%0];\n" ::"l"(reinterpret_cast<uint64_t>(&wmap)) : "memory");
            }
        }
        if (WT && pf > 0 && tid == kNC * 128) {
            // The first pf weight stages of this CTA's first unit into L2 (before the wait: see above).
            const UI w0 = uw;
            int t, k0, k1;
            if (next_unit(t, k0, k1)) {
                const int s0 = (t / mt) * kStrips, kend = min(k1, k0 + pf);
                for (int ks = k0; ks < kend; ++ks) {
                    asm volatile("cp.async.bulk.prefetch.tensor.2d.L2.global.tile [%0, {%1, %2}];\n" ::"l"(
                                     reinterpret_cast<uint64_t>(&wmap)),
                                 "r"(ks * 128), "r"(s0)
                                 : "memory");
                }
            }
            uw = w0;
        }
        griddep_start();
        if constexpr (PR == kProbeSetup) return;
        if constexpr (kStamp) {
            if (tid == kNC * 128) ws4_stamp(ts, 10);
        }
        if (tid == kNC * 128) {
            int s = 0;
            uint32_t phase = 0;
            int t, k0, k1;
            while (next_unit(t, k0, k1)) {
                const int nb = t / mt, mb = t - nb * mt;
                const int s0 = nb * kStrips;
                const int ns = WT ? kStrips : min(kStrips, p.strips - s0);
                const uint32_t* wsrc = p.words + size_t(s0) * ksteps * 128;
                for (int ks = k0; ks < k1; ++ks) {
                    mbar_wait(&empty[s], phase ^ 1);
                    unsigned char* slot = ring + s * G::kSlot;
                    mbar_expect_tx(&full[s], BX * 128 + ns * 512);
                    tma_2d_g2s(slot, &xmap, ks * kBK, mb * BX, &full[s]);
                    if constexpr (WT) {
                        tma_2d_g2s(slot + BX * 128, &wmap, ks * 128, s0, &full[s]);
                    } else {
                        for (int i = 0; i < ns; ++i) {
                            bulk_g2s(slot + BX * 128 + i * 512, wsrc + (size_t(i) * ksteps + ks) * 128, 512, &full[s]);
                        }
                    }
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
            if constexpr (kStamp) ws4_stamp(ts, 11);
        }
        if constexpr (CS > 1 && PR >= kProbeFull) {
            tma::cluster_sync();  // the consumers' two cluster barriers (cluster_finish4)
            tma::cluster_sync();
        }
    } else {
        // ------------------------------- consumers -------------------------------
        setmaxnreg_inc<C::kConsRegs>();
        griddep_start();
        if constexpr (PR == kProbeSetup) return;
        const int cw = tid >> 7;  // weight rows 64 cw .. 64 cw + 63 of the tile
        const int lane = tid & 31, warp = (tid >> 5) & 3, g = lane >> 2;
        const uint32_t ring_a = smem_u32(ring);
        int s = 0;
        uint32_t phase = 0;
        if constexpr (kStamp) {
            if (tid == 0) ws4_stamp(ts, 2);
        }
        if constexpr (PR == kProbeTma) {
            // The ring protocol alone: wait for each stage, release it (one arrive per warp). This consumes every
            // unit, so the mainloop below runs no unit (a return here made the loop "not reachable", warning 128).
            int t, k0, k1;
            while (next_unit(t, k0, k1)) {
                for (int ks = k0; ks < k1; ++ks) {
                    mbar_wait(&full[s], phase);
                    if (lane == 0) mbar_arrive(&empty[s]);
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        }
        float acc[BX / 2];
        uint32_t abuf[2][4][4];
        int t, k0, k1;
        while (next_unit(t, k0, k1)) {
            const int nb = t / mt, mb = t - nb * mt;
            const int strip = nb * kStrips + cw * 4 + warp;
            const bool active = strip < p.strips;
            const uint2* meta = reinterpret_cast<const uint2*>(p.meta) + size_t(active ? strip : 0) * p.groups * 8 + g;
            auto load_meta = [&](int gi) -> uint2 {
                return (active && gi < p.groups) ? __ldg(meta + size_t(gi) * 8) : make_uint2(0, 0);
            };
            int gi = (k0 * 4) / p.gtiles, tig = k0 * 4 - gi * p.gtiles;
            uint2 cur = load_meta(gi), nxt = load_meta(gi + 1);
            wo::GroupCtx ctx;
            uint32_t sg, sg8;
            auto set_group = [&]() {
                Fmt::template ctx<T>(cur.y, ctx);
                wo::scale_pairs<T>(cur.x, sg, sg8);
            };
            set_group();
            auto next_tile = [&]() { wows::group_next_tile(tig, gi, cur, nxt, p.gtiles, load_meta, set_group); };
            int prev = -1;
            // One k-step, ws v1's (lowbit/wo_ws.cuh rs_kstep).
            auto step = [&](int ks, uint32_t(&ab)[4][4]) {
                wows::rs_kstep<Fmt, T, BX, G::kSlot, S, false, PR == kProbeDecode>(
                    acc, ab, full, empty, ring_a, cw * 4 + warp, lane, ks, k0, s, phase, prev, ctx, sg, sg8, next_tile);
            };
            // Pairs unconditionally, then the odd tail (a conditional second step makes ptxas serialize the
            // wgmmas, C7513; NOTES.md ws v1).
            int ks = k0;
            if constexpr (PR == kProbeDecode) {
#pragma unroll
                for (int j = 0; j < BX / 2; ++j) acc[j] = 0.f;  // defined values for the fold (no wgmma writes acc)
            }
            if constexpr (kStamp) {
                // The first unit's first stage landed (the k-step's own wait follows and returns at once); not where
                // the unit has no k-steps (an empty cluster slice issues no TMA). Probe schedules: K splits only.
                if (tid == 0 && k0 < k1 && int(uw) == int(blockIdx.x + gridDim.x)) {
                    mbar_wait(&full[s], phase);
                    ws4_stamp(ts, 3);
                }
            }
            for (; ks + 1 < k1; ks += 2) {
                step(ks, abuf[0]);
                step(ks + 1, abuf[1]);
            }
            if (ks < k1) step(ks, abuf[0]);
            if constexpr (PR != kProbeDecode) {
                wgmma_wait<0>();
                wgmma_fence_regs(acc);
            }
            if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
            if constexpr (kStamp) {
                if (tid == 0) ws4_stamp(ts, 4);
            }
            if constexpr (PR == kProbeDecode || PR == kProbeMma) {
                // No epilogue / split finish. A store that never runs (M >= 1) keeps the accumulators, and with them
                // the wgmmas (kProbeMma) or the decode folded into them (kProbeDecode), from ptxas's dead-code removal.
                if (p.m < 0) {
                    float f = 0.f;
#pragma unroll
                    for (int j = 0; j < BX / 2; ++j) f += acc[j];
                    p.ws[tid] = f;
                }
                continue;
            }
            if constexpr (CS > 1) {
                if (k1 <= k0) {  // an empty last slice (ksteps < CS * kper) adds zeros
#pragma unroll
                    for (int j = 0; j < BX / 2; ++j) acc[j] = 0.f;
                }
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan && n0 < p.n ? p.chan[n0] : 1.f, cs1 = p.chan && n1 < p.n ? p.chan[n1] : 1.f;
                static_assert(S * G::kSlot >= BX / 8 * kNC * 128 * 16, "ws4-C: the staging fits the ring");
                cluster_finish4<T, BX, kNC, CS>(p, acc, ring_a, tid, mb * BX, n0, cs0, cs1, lane, active);
                break;  // one unit per CTA
            }
            if constexpr (SK) {
                if (k0 > 0 || k1 < ksteps) {
                    // A tile cut across CTAs (see the file comment). Slot layout: float4 i of thread tid at
                    // [i][tid] (one warp instruction = 512 contiguous bytes; the per-thread layout of the first
                    // version, 8 float4 per thread, touched 32 lines per instruction: NOTES.md ws-SK).
                    int* flags = reinterpret_cast<int*>(p.ws);
                    float* slots = p.ws + (gridDim.x + 63) / 64 * 64;
                    constexpr int kCons = kNC * 128, kSlot = kCons * (BX / 2);
                    if (k0 > 0) {
                        // Not the owner: publish the partial (the first segment of this CTA: nothing waited yet).
                        float4* dst = reinterpret_cast<float4*>(slots + size_t(blockIdx.x) * kSlot) + tid;
#pragma unroll
                        for (int i = 0; i < BX / 8; ++i) {
                            __stcg(dst + i * kCons,
                                   make_float4(acc[4 * i], acc[4 * i + 1], acc[4 * i + 2], acc[4 * i + 3]));
                        }
                        // CTA barrier, then one release at gpu scope (cumulative over the CTA's stores ordered
                        // before it by the barrier; the CUTLASS stream-K / GenericBarrier pattern).
                        consumer_bar<kNC>();
                        if (tid == 0) {
                            asm volatile("st.release.gpu.global.u32 [%0], %1;\n" ::"l"(flags + blockIdx.x), "r"(1)
                                         : "memory");
                        }
                        continue;
                    }
                    // The owner: add the partials of CTAs blockIdx.x + 1 .. (the one holding the tile's last k-step)
                    // in k order, then re-zero their slots and flags.
                    const int64_t tw = int64_t(t) * ksteps;
                    const int clast = sk_cta(tw + ksteps - 1, work, gridDim.x);
                    for (int c = blockIdx.x + 1; c <= clast; ++c) {
                        if (tid == 0) {
                            uint32_t f = 0;
                            do {
                                asm volatile("ld.acquire.gpu.global.u32 %0, [%1];\n" : "=r"(f) : "l"(flags + c) : "memory");
                            } while (f == 0);
                            flags[c] = 0;  // its only reader; the next launch sees it zero
                        }
                        consumer_bar<kNC>();
                        float4* src = reinterpret_cast<float4*>(slots + size_t(c) * kSlot) + tid;
                        // Loads in flight per batch: the whole slot at BX <= 128, 8 float4 at BX = 256 (128
                        // accumulators besides).
                        constexpr int kNV = BX / 8, kB = BX == 256 ? 8 : kNV;
#pragma unroll
                        for (int i0 = 0; i0 < kNV; i0 += kB) {
                            float4 v[kB];
#pragma unroll
                            for (int i = 0; i < kB; ++i) v[i] = __ldcg(src + (i0 + i) * kCons);
#pragma unroll
                            for (int ii = 0; ii < kB; ++ii) {
                                const int i = i0 + ii;
                                acc[4 * i] += v[ii].x, acc[4 * i + 1] += v[ii].y, acc[4 * i + 2] += v[ii].z,
                                    acc[4 * i + 3] += v[ii].w;
                                __stcg(src + i * kCons, make_float4(0.f, 0.f, 0.f, 0.f));
                            }
                        }
                    }
                }
            }
            if (active) {
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan && n0 < p.n ? p.chan[n0] : 1.f, cs1 = p.chan && n1 < p.n ? p.chan[n1] : 1.f;
                wo::store_strip<T, BX>(p, acc, n0, cs0, cs1, mb * BX, lane, !SK && splits != 1);
            }
        }
        if constexpr (kStamp) {
            if ((tid & 127) == 0) ws4_stamp(ts, 5 + cw);
        }
    }
}

template <class Fmt, typename T, int BX, int NC, bool WT = false, bool SK = false, int CS = 1>
__global__ void __launch_bounds__(Cta<NC>::kThreads, 1) ws4_kernel(const __grid_constant__ Args p,
                                                           const __grid_constant__ CUtensorMap xmap,
                                                           const __grid_constant__ CUtensorMap wmap, int splits,
                                                           int pf) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    ws4_body<Fmt, T, BX, NC, WT, SK, CS, kProbeFull>(p, xmap, wmap, splits, pf, nullptr);
#endif
#endif
}

// The launch-floor harness's rungs (PR, see kProbeEmpty ..; harness builds only): ws4_kernel<Fmt, T, BX, NC, true,
// false, CS> cut after a part of its life; launched exactly as launch / launch_c launch ws4_kernel (ts: kProbeStamp's
// stamps, else unused).
template <class Fmt, typename T, int BX, int NC, int CS, int PR>
__global__ void __launch_bounds__(Cta<NC>::kThreads, 1) ws4_probe_kernel(const __grid_constant__ Args p,
                                                                 const __grid_constant__ CUtensorMap xmap,
                                                                 const __grid_constant__ CUtensorMap wmap, int splits,
                                                                 int pf, unsigned long long* ts) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();
#else
    ws4_body<Fmt, T, BX, NC, true, false, CS, PR>(p, xmap, wmap, splits, pf, ts);
#endif
#endif
}

template <class Fmt, typename T, int BX, int NC>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws4_kernel<Fmt, T, BX, NC, true>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

// K splits as launched: at least one k-step per split.
inline int effective_splits(const Args& a, int splits) {
    if (splits <= 1) return 1;
    const int kper = (a.ksteps + splits - 1) / splits;
    return (a.ksteps + kper - 1) / kper;
}

// Launch with a prepared tensor map of X (2-D {K, M}, box {64, BX}, 128-byte swizzle) and optionally of the weight
// words (wmap: 2-D {ksteps * 128, strips} u32, box {128, 4 NC}, no swizzle). splits > 1 needs a.ws (f32 [M][N], zero).
// launch / launch_sk: with the programmatic-stream-serialization attribute where pdl (the caller asks
// lowbit::pdl_runs()); pf: weight stages prefetched into L2 before griddepcontrol.wait (WT only).
template <class Fmt, typename T, int BX, int NC>
cudaError_t launch(const Args& a, const CUtensorMap& xmap, int nsm, int splits, cudaStream_t st,
                   const CUtensorMap* wmap = nullptr, bool pdl = false, int pf = 0) {
    using C = Cta<NC>;
    constexpr int smem = Geo<BX, NC>::kSmem;
    auto kern = wmap ? ws4_kernel<Fmt, T, BX, NC, true> : ws4_kernel<Fmt, T, BX, NC, false>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    splits = effective_splits(a, splits);
    if (splits > 1 && a.ws == nullptr) return cudaErrorInvalidValue;
    const int64_t units = int64_t((a.strips + C::kStrips - 1) / C::kStrips) * ((a.m + BX - 1) / BX) * splits;
    const int grid = int(units < nsm ? units : nsm);
    return LaunchEx(dim3(unsigned(grid)), dim3(C::kThreads), smem, st)
        .pdl(pdl)
        .launch(kern, a, xmap, wmap ? *wmap : xmap, splits, wmap ? pf : 0);
}

// ws4-C launch (CS > 1, NOTES.md ws4-C): grid = tiles x CS in clusters of CS CTAs (one unit per CTA: clusters beyond
// the resident ones wait for free SMs), the K slices summed over DSMEM; no workspace, no convert launch. wmap: the
// weight-word tensor map (as launch). PDL and pf as launch.
template <class Fmt, typename T, int BX, int NC, int CS>
cudaError_t launch_c(const Args& a, const CUtensorMap& xmap, const CUtensorMap& wmap, cudaStream_t st, bool pdl = false,
                     int pf = 0) {
    using C = Cta<NC>;
    constexpr int smem = Geo<BX, NC>::kSmem;
    auto kern = ws4_kernel<Fmt, T, BX, NC, true, false, CS>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const int64_t units = int64_t((a.strips + C::kStrips - 1) / C::kStrips) * ((a.m + BX - 1) / BX) * CS;
    return LaunchEx(dim3(unsigned(units)), dim3(C::kThreads), smem, st)
        .cluster_x(unsigned(CS))
        .pdl(pdl)
        .launch(kern, a, xmap, wmap, CS, pf);
}

// Clusters of CS ws4-C CTAs that can be resident at once (cudaOccupancyMaxActiveClusters; 0 on error).
template <class Fmt, typename T, int BX, int NC, int CS>
int max_active_clusters_c() {
    constexpr int smem = Geo<BX, NC>::kSmem;
    auto kern = ws4_kernel<Fmt, T, BX, NC, true, false, CS>;
    if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return 0;
    LaunchEx cfg(dim3(unsigned(CS * 64)), dim3(Cta<NC>::kThreads), smem, nullptr);
    cfg.cluster_x(unsigned(CS));
    return cfg.max_active_clusters(kern);
}

// Stream-K (SK): the grid (one CTA per SM, at most one per k-step of work) and its workspace (flags, then one slot
// of f32 accumulators per CTA; zero on entry, left zero).
template <int BX, int NC>
inline int64_t sk_work(const Args& a) {
    return int64_t((a.strips + Cta<NC>::kStrips - 1) / Cta<NC>::kStrips) * ((a.m + BX - 1) / BX) * a.ksteps;
}
template <int BX, int NC>
inline int sk_grid(const Args& a, int nsm) {
    const int64_t w = sk_work<BX, NC>(a);
    return int(w < nsm ? w : nsm);
}
template <int BX, int NC>
inline int64_t sk_ws_bytes(int grid) {
    return int64_t(grid + 63) / 64 * 64 * 4 + int64_t(grid) * NC * 128 * (BX / 2) * 4;
}

// Stream-K launch (maps as launch); a.ws: sk_ws_bytes(sk_grid(a, nsm)) zeroed bytes.
template <class Fmt, typename T, int BX, int NC>
cudaError_t launch_sk(const Args& a, const CUtensorMap& xmap, int nsm, cudaStream_t st,
                      const CUtensorMap* wmap = nullptr, bool pdl = false, int pf = 0) {
    using C = Cta<NC>;
    constexpr int smem = Geo<BX, NC>::kSmem;
    auto kern = wmap ? ws4_kernel<Fmt, T, BX, NC, true, true> : ws4_kernel<Fmt, T, BX, NC, false, true>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    if (a.ws == nullptr) return cudaErrorInvalidValue;
    const int grid = sk_grid<BX, NC>(a, nsm);
    return LaunchEx(dim3(unsigned(grid)), dim3(C::kThreads), smem, st)
        .pdl(pdl)
        .launch(kern, a, xmap, wmap ? *wmap : xmap, 1, wmap ? pf : 0);
}

}  // namespace wows4
}  // namespace lowbit
