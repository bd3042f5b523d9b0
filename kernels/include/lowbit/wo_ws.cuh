// lowbit/wo_ws.cuh: warp-specialized persistent weight-only GEMM for M = 64..4096 on Hopper (sm_90a).
//
// Problem: as lowbit/wo_wgmma.cuh (same Args, same tiled weight layout, same arithmetic bit for bit):
//   Y^T[N, M] = W[N, K] * X[M, K]^T with W dequantized in registers ((q - z) in the 16-bit type T, times the
//   group scale rounded to T, one rounding) as wgmma's A operand (m64nBXk16, A from registers), X the B
//   operand in shared memory; f32 accumulation; y = T(acc * chan[n]).
//
// CTA = 3 warpgroups (384 threads), one CTA per SM, persistent over output tiles of 128 weight rows (8 strips
// of the tiled layout) x BX activation rows, taken M-fastest (consecutive tiles share a weight tile; the
// activation panel stays in L2):
//   warpgroup 0 = producer (setmaxnreg.dec 40): one thread fills an S-slot ring; per 64-column k-step
//     - the weight stage: one 512-byte 1-D bulk copy per strip (the tiled layout keeps a strip's k-step
//       contiguous: 32 lanes x 4 words), i.e. 8 copies, 4 KB;
//     - the activation stage: one 2-D TMA of a BX-row x 64-column (128-byte) box of X with 128-byte swizzle;
//       rows >= M and columns >= K are zero-filled by the copy engine;
//     both complete on the slot's "full" mbarrier (arrive.expect_tx with the stage's bytes).
//   warpgroups 1, 2 = consumers (setmaxnreg.inc 232), 64 weight rows each (one strip per warp): wait full[s],
//     one 16-byte ld.shared of this lane's codes, decode the four 16x16 tiles into registers (lowbit/wo_decode.cuh,
//     group scale/zero handling as wo_wgmma.cuh), four wgmma m64nBXk16 (B: 128B-swizzle descriptor, +32 bytes
//     per k16), commit, wait_group 1, and release the previous stage's slot (one arrive per consumer warp).
//   Decoding step s + 1 overlaps the tensor cores on step s (A registers double-buffered by step parity); the
//   producer streams the next tile's stages while the consumers run the epilogue.
//
// Limits: INT formats without high words (Int4, Int8 share the code path; instantiated: Int4); sm_90a; X
// 16-byte aligned with ldx % 8 == 0 (TMA: global stride a multiple of 16 bytes), K % 8 == 0. K splits: ws-S below
// (f32 atomics into a workspace + convert) or ws-C (CS > 1: the slices of a tile on one thread-block cluster, summed
// over distributed shared memory; cluster_finish / launch_c). The launchers (kernels/weight_only/ws.cu, ws_c.cu)
// build the tensor maps.
#pragma once

#include <cuda.h>

#include "lowbit/launch.cuh"
#include "lowbit/tma.cuh"
#include "lowbit/wo_wgmma.cuh"
#include "lowbit/wo_wgmma_ss.cuh"

namespace lowbit {

template <>
__device__ __forceinline__ void wgmma_rs<__half, 256>(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.f16.f16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}
template <>
__device__ __forceinline__ void wgmma_rs<__nv_bfloat16, 256>(float (&d)[128], const uint32_t (&a)[4], uint64_t desc_b, int accumulate) {
    asm volatile(
        "{\n.reg .pred p;\nsetp.ne.b32 p, %133, 0;\n"
        "wgmma.mma_async.sync.aligned.m64n256k16.f32.bf16.bf16 {%0, %1, %2, %3, %4, %5, %6, %7, %8, %9, %10, %11, %12, %13, %14, %15, %16, %17, %18, %19, %20, %21, %22, %23, %24, %25, %26, %27, %28, %29, %30, %31, %32, %33, %34, %35, %36, %37, %38, %39, %40, %41, %42, %43, %44, %45, %46, %47, %48, %49, %50, %51, %52, %53, %54, %55, %56, %57, %58, %59, %60, %61, %62, %63, %64, %65, %66, %67, %68, %69, %70, %71, %72, %73, %74, %75, %76, %77, %78, %79, %80, %81, %82, %83, %84, %85, %86, %87, %88, %89, %90, %91, %92, %93, %94, %95, %96, %97, %98, %99, %100, %101, %102, %103, %104, %105, %106, %107, %108, %109, %110, %111, %112, %113, %114, %115, %116, %117, %118, %119, %120, %121, %122, %123, %124, %125, %126, %127}, {%128, %129, %130, %131}, %132, p, 1, 1, 0;\n}\n"
        : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3]), "+f"(d[4]), "+f"(d[5]), "+f"(d[6]), "+f"(d[7]), "+f"(d[8]), "+f"(d[9]), "+f"(d[10]), "+f"(d[11]), "+f"(d[12]), "+f"(d[13]), "+f"(d[14]), "+f"(d[15]), "+f"(d[16]), "+f"(d[17]), "+f"(d[18]), "+f"(d[19]), "+f"(d[20]), "+f"(d[21]), "+f"(d[22]), "+f"(d[23]), "+f"(d[24]), "+f"(d[25]), "+f"(d[26]), "+f"(d[27]), "+f"(d[28]), "+f"(d[29]), "+f"(d[30]), "+f"(d[31]), "+f"(d[32]), "+f"(d[33]), "+f"(d[34]), "+f"(d[35]), "+f"(d[36]), "+f"(d[37]), "+f"(d[38]), "+f"(d[39]), "+f"(d[40]), "+f"(d[41]), "+f"(d[42]), "+f"(d[43]), "+f"(d[44]), "+f"(d[45]), "+f"(d[46]), "+f"(d[47]), "+f"(d[48]), "+f"(d[49]), "+f"(d[50]), "+f"(d[51]), "+f"(d[52]), "+f"(d[53]), "+f"(d[54]), "+f"(d[55]), "+f"(d[56]), "+f"(d[57]), "+f"(d[58]), "+f"(d[59]), "+f"(d[60]), "+f"(d[61]), "+f"(d[62]), "+f"(d[63]), "+f"(d[64]), "+f"(d[65]), "+f"(d[66]), "+f"(d[67]), "+f"(d[68]), "+f"(d[69]), "+f"(d[70]), "+f"(d[71]), "+f"(d[72]), "+f"(d[73]), "+f"(d[74]), "+f"(d[75]), "+f"(d[76]), "+f"(d[77]), "+f"(d[78]), "+f"(d[79]), "+f"(d[80]), "+f"(d[81]), "+f"(d[82]), "+f"(d[83]), "+f"(d[84]), "+f"(d[85]), "+f"(d[86]), "+f"(d[87]), "+f"(d[88]), "+f"(d[89]), "+f"(d[90]), "+f"(d[91]), "+f"(d[92]), "+f"(d[93]), "+f"(d[94]), "+f"(d[95]), "+f"(d[96]), "+f"(d[97]), "+f"(d[98]), "+f"(d[99]), "+f"(d[100]), "+f"(d[101]), "+f"(d[102]), "+f"(d[103]), "+f"(d[104]), "+f"(d[105]), "+f"(d[106]), "+f"(d[107]), "+f"(d[108]), "+f"(d[109]), "+f"(d[110]), "+f"(d[111]), "+f"(d[112]), "+f"(d[113]), "+f"(d[114]), "+f"(d[115]), "+f"(d[116]), "+f"(d[117]), "+f"(d[118]), "+f"(d[119]), "+f"(d[120]), "+f"(d[121]), "+f"(d[122]), "+f"(d[123]), "+f"(d[124]), "+f"(d[125]), "+f"(d[126]), "+f"(d[127])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "l"(desc_b), "r"(accumulate));
}

namespace wows {

using wo::Args;

constexpr int kThreads = 384;
constexpr int kStrips = 8;             // strips (16 weight rows each) per tile: 128 rows
constexpr int kBK = 64;                // K columns per stage: one k-step of the layout, one 128-byte f16 row
constexpr int kWStage = kStrips * 512; // weight bytes per stage

template <int BX>
struct Geo {
    static constexpr int kXStage = BX * 128;          // activation box bytes (multiple of 1024)
    static constexpr int kSlot = kXStage + kWStage;   // X first: every box stays 1024-aligned
    static constexpr int kFit = (200 * 1024) / kSlot;
    static constexpr int kStages = kFit > 16 ? 16 : kFit;
    static constexpr int kSmem = kStages * kSlot + 1024;  // + alignment slack
};

// Producer (one thread): k-steps k0 .. k1 - 1 of tile (weight tile nb, activation tile mb) into the ring at slot
// s / parity phase (advanced). Per k-step: the X box (TMA, 128-byte swizzle, zero fill outside X) at the slot's
// start, then the weight stage: WT = false, one 512-byte bulk copy per strip (a strip's k-step is contiguous in the
// tiled layout; 8 copies); WT = true, ONE 2-D TMA of the words viewed as [strips][ksteps * 128] u32 (box 8 strips x
// 128 words, no swizzle: the same 8 x 512 bytes in the slot, strips beyond the weight zero-filled).
template <int BX, int kSlot, int S, bool WT>
__device__ __forceinline__ void produce(const Args& p, const CUtensorMap* xmap, const CUtensorMap* wmap,
                                        unsigned char* ring, uint64_t* full, uint64_t* empty, int nb, int mb, int k0,
                                        int k1, int& s, uint32_t& phase) {
    using namespace tma;
    const int s0 = nb * kStrips;
    const int ns = WT ? kStrips : min(kStrips, p.strips - s0);
    const uint32_t* wsrc = p.words + size_t(s0) * p.ksteps * 128;
    for (int ks = k0; ks < k1; ++ks) {
        mbar_wait(&empty[s], phase ^ 1);
        unsigned char* slot = ring + s * kSlot;
        mbar_expect_tx(&full[s], BX * 128 + ns * 512);
        tma_2d_g2s(slot, xmap, ks * kBK, mb * BX, &full[s]);
        if constexpr (WT) {
            tma_2d_g2s(slot + BX * 128, wmap, ks * 128, s0, &full[s]);
        } else {
            for (int i = 0; i < ns; ++i) {
                bulk_g2s(slot + BX * 128 + i * 512, wsrc + (size_t(i) * p.ksteps + ks) * 128, 512, &full[s]);
            }
        }
        if (++s == S) s = 0, phase ^= 1;
    }
}

// The ring set-up of ws_kernel and ws_s_kernel (both kernels' producer and consumers use the same protocol):
// returns the ring base, the dynamic shared memory rounded up to 1024 bytes (the 128-byte-swizzled TMA boxes and
// the wgmma descriptors of the X stage need 1024-byte-aligned slots), and has thread 0 initialize the S slot
// barriers: full[s] takes one arrival (the producer's arrive.expect_tx; the copies' bytes complete the phase),
// empty[s] one arrival per consumer warp (8). The fence publishes the initialization to the async proxy (the TMA
// and bulk copies' complete_tx) and the CTA barrier to every thread before anyone waits or arrives.
// empty_arrivals: one per consumer warp that reads each slot (8 for the two-warpgroup cooperative kernels).
template <int S>
__device__ __forceinline__ unsigned char* init_ring(unsigned char* smem_raw, uint64_t (&full)[S], uint64_t (&empty)[S],
                                                    int empty_arrivals = 8) {
    const uint32_t raw = tma::smem_u32(smem_raw);
    unsigned char* ring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    if (threadIdx.x == 0) {
        for (int s = 0; s < S; ++s) {
            tma::mbar_init(&full[s], 1);   // the producer's arrive.expect_tx (+ the copies' bytes)
            tma::mbar_init(&empty[s], empty_arrivals);  // one arrive per consumer warp that reads the slot
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    return ring;
}

// The group walk of a consumer warp's register decode (ws v1, ws-W) after one 16-column tile: at the end of a group
// (tig reaches gtiles) on to the next one, cur <- nxt, the one after prefetched (load_meta), set_group(). ws-S
// keeps the same lines inline: through this helper 8 of its 12 instances got another register assignment.
template <class LoadMeta, class SetGroup>
__device__ __forceinline__ void group_next_tile(int& tig, int& gi, uint2& cur, uint2& nxt, int gtiles,
                                                LoadMeta&& load_meta, SetGroup&& set_group) {
    if (++tig == gtiles) {
        tig = 0;
        ++gi;
        cur = nxt;
        nxt = load_meta(gi + 1);
        set_group();
    }
}

// One k-step of the register-A consumers (ws v1 ws_kernel, ws-W lowbit/wo_ws4.cuh ws4_kernel): wait full[s], one
// ld.shared.v4 of the lane's codes (the warp's strip wstrip of the slot's weight stage, after the BX x 128-byte X
// box), v1's decode of the four 16x16 tiles times the group scale (sg, sg8; one rounding) into the A registers ab,
// next_tile() after each tile (the caller's group walk: the next group's scale / context at a group's end), four
// wgmma m64nBXk16 (B: the X box, 128-byte swizzle, +32 bytes per k16; the unit's first k-step ks = k0 overwrites
// acc), commit, wait_group 1, then the release of the previous step's slot prev (lane 0: one arrive per warp) and
// the next ring position s / phase; prev becomes this step's slot. kNoDecode (timing only, wrong results): the codes
// as they are. ab must not be the A registers of the still running previous group: the callers unroll by two so
// that the two sets are distinct registers.
// Written so that both kernels' SASS stayed identical to their inline k-steps (cu13.1, sm_90a; NOTES.md, tidy of
// the tenth session), down to the operand order of the k0 < ks test.
// kNoMma (ws-W's launch-floor probe, kProbeDecode; harness only): the decode without the wgmmas. The A registers are
// XOR-folded into acc (16 LOP3 per k-step) that the caller feeds to a store under a condition that never holds: an
// empty asm does not keep them alive (ptxas removes what no PTX instruction reads).
template <class Fmt, typename T, int BX, int kSlot, int S, bool kNoDecode, bool kNoMma = false, class NextTile>
__device__ __forceinline__ void rs_kstep(float (&acc)[BX / 2], uint32_t (&ab)[4][4], uint64_t* full, uint64_t* empty,
                                         uint32_t ring_a, int wstrip, int lane, int ks, int k0, int& s, uint32_t& phase,
                                         int& prev, const wo::GroupCtx& ctx, const uint32_t& sg, const uint32_t& sg8,
                                         NextTile&& next_tile) {
    using namespace tma;
    mbar_wait(&full[s], phase);
    const uint32_t xa = ring_a + s * kSlot;
    uint32_t wb[4];
    asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(wb[0]), "=r"(wb[1]), "=r"(wb[2]), "=r"(wb[3])
                 : "r"(xa + BX * 128 + wstrip * 512 + lane * 16)
                 : "memory");
#pragma unroll
    for (int j = 0; j < 4; ++j) {
        if constexpr (kNoDecode) {
            ab[j][0] = ab[j][1] = ab[j][2] = ab[j][3] = wb[j];
            continue;
        }
        uint32_t a[4];
        Fmt::template decode<T>(wb, nullptr, j, ctx, a);
        ab[j][0] = wo::mul_pair<T>(a[0], sg);
        ab[j][1] = wo::mul_pair<T>(a[1], sg8);
        ab[j][2] = wo::mul_pair<T>(a[2], sg);
        ab[j][3] = wo::mul_pair<T>(a[3], sg8);
        next_tile();
    }
    wgmma_fence();
    if constexpr (kNoMma) {
#pragma unroll
        for (int j = 0; j < 4; ++j) {
#pragma unroll
            for (int r = 0; r < 4; ++r) acc[4 * j + r] = __uint_as_float(__float_as_uint(acc[4 * j + r]) ^ ab[j][r]);
        }
    } else {
#pragma unroll
        for (int j = 0; j < 4; ++j) wgmma_rs<T, BX>(acc, ab[j], desc_sw128(xa + 32 * j), k0 < ks || j > 0);
    }
    wgmma_commit();
    wgmma_wait<1>();
    // The previous step's group has completed: its slot (and its A registers) may be reused.
    if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
    prev = s;
    if (++s == S) s = 0, phase ^= 1;
}

// Staged epilogue (ST, round 2 of the seventh session): each consumer warp owns kStgWarp bytes after the ring and
// writes its strip's output (16 weight rows x BX activation rows) in passes of 64 activation rows: four
// stmatrix.x4.trans turn the accumulator fragments (weight row = fragment row, activation row = fragment column)
// into 64 rows of 16 consecutive outputs (32 bytes, the two 16-byte halves swapped by bit 2 of the row: no
// stmatrix bank conflicts), then four 16-byte ld.shared + st.global.v4 per lane (16 rows x 32 bytes per
// instruction, whole sectors) instead of 32 scalar 2-byte stores (4 half-sectors each). Same values, same bits.
// Measured slower (3-7% on the K = 8192 shapes, H100; weight-only NOTES.md ws-E): the library keeps ST = false.
constexpr int kStgWarp = 64 * 16 * 2;      // one pass: 64 activation rows x 16 weight rows of T
constexpr int kStgBytes = 8 * kStgWarp;    // the 8 consumer warps

__device__ __forceinline__ void stmatrix_x4_t(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
                 "r"(r1), "r"(r2), "r"(r3)
                 : "memory");
}

template <typename T>
__device__ __forceinline__ uint32_t pack_out(float lo, float hi) {
    const T a = wo::to_out<T>(lo), b = wo::to_out<T>(hi);
    uint16_t ua, ub;
    memcpy(&ua, &a, 2);
    memcpy(&ub, &b, 2);
    return uint32_t(ua) | (uint32_t(ub) << 16);
}

// ------------------------------------------------------------------------------------------------------------
// ws-C (eleventh session): split-K through a thread-block cluster, the int8 family's v20 (i8_ws_gemm.cuh
// csplit_finish) for the weight-only kernels. The CS K slices of one output tile are the CS CTAs of one cluster
// (rank = slice; one unit per CTA, grid = tiles x CS); instead of f32 atomics into a zeroed workspace and a convert
// launch (ws-S's splits), each CTA finishes one BX / CS-row part of the tile's activation rows:
//   1. both consumer warpgroups' wgmmas have completed (each waited for its own; named barrier 3 over the 256 consumer
//      threads): the ring is idle. Each consumer thread stores the accumulators of the CS - 1 parts that other ranks
//      finish into its CTA's ring (part q at q * kPart, float4 i of thread ct at (i * 256 + ct) * 16: conflict-free
//      16-byte stores; a warp's remote 16-byte loads cover 512 contiguous bytes);
//   2. barrier.cluster (release / acquire) makes the staging visible to the peers;
//   3. rank r reads part r of every peer over distributed shared memory (mapa + ld.shared::cluster.v4), adds the
//      slices in the fixed order 0 .. CS - 1 (its own from registers: every rank's sums are the same, deterministic),
//      and stores its part as the unsplit kernel does (channel scale, one rounding to T);
//   4. a second barrier.cluster keeps every CTA's staging alive until its peers have read it.
// Only 8-row accumulator blocks below M are staged and read. The producer warpgroup joins both cluster barriers.
// ------------------------------------------------------------------------------------------------------------
template <int BX, int CS>
struct ClusterSplit {
    static_assert(CS == 2 || CS == 4, "2 or 4 K slices per cluster");
    static constexpr int kRows = BX / CS;       // activation rows finished per rank
    static constexpr int kF = kRows / 2;        // accumulators per consumer thread and part
    static constexpr int kV = kF / 4;           // float4 per consumer thread and part
    static constexpr int kPart = kV * 256 * 16; // staging bytes per part
    static constexpr int kStage = CS * kPart;   // parts 0 .. CS - 1 at q * kPart (the own part's slot stays unused)
    // remote float4 loads in flight per peer (the kernels' 168 registers hold BX / 2 accumulators besides)
    static constexpr int kBatch = kV < (BX == 256 ? 4 : 8) ? kV : (BX == 256 ? 4 : 8);
};

template <typename T, int BX, int CS>
__device__ __forceinline__ void cluster_finish(const Args& p, float (&acc)[BX / 2], uint32_t stage, int ct, int m0,
                                               int n0, float cs0, float cs1, int lane, bool active) {
    using C = ClusterSplit<BX, CS>;
    const int nv = min(BX / 2, 4 * ((p.m - m0 + 7) >> 3));  // accumulators of 8-row blocks below M
    const int rank = int(tma::cluster_rank());
    asm volatile("bar.sync 3, 256;\n" ::: "memory");  // both consumer warpgroups are done with the ring
#pragma unroll
    for (int q = 0; q < CS; ++q) {
        if (q == rank) continue;
#pragma unroll
        for (int i = 0; i < C::kV; ++i) {
            const int j = q * C::kF + 4 * i;
            if (j < nv) {
                asm volatile("st.shared.v4.f32 [%0], {%1, %2, %3, %4};\n" ::"r"(stage + uint32_t(q * C::kPart + (i * 256 + ct) * 16)),
                             "f"(acc[j]), "f"(acc[j + 1]), "f"(acc[j + 2]), "f"(acc[j + 3])
                             : "memory");
            }
        }
    }
    tma::cluster_sync();  // release / acquire at cluster scope: every CTA's staging is visible to its peers
#pragma unroll
    for (int r = 0; r < CS; ++r) {
        if (r != rank) continue;
        // The sums replace this rank's accumulators in place (no second array: 168 registers at BX = 256).
        float(&sum)[C::kF] = *reinterpret_cast<float(*)[C::kF]>(&acc[r * C::kF]);
#pragma unroll
        for (int i0 = 0; i0 < C::kV; i0 += C::kBatch) {
            // Slices in order 0 .. CS - 1; slice r (this CTA) from registers, the others' part r from their staging.
            float4 v[CS][C::kBatch];
#pragma unroll
            for (int q = 0; q < CS; ++q) {
                if (q == r) continue;
                const uint32_t base = tma::mapa_shared(stage + uint32_t(r * C::kPart), uint32_t(q));
#pragma unroll
                for (int ii = 0; ii < C::kBatch; ++ii) {
                    if (r * C::kF + 4 * (i0 + ii) < nv) v[q][ii] = tma::ld_cluster_v4f(base + uint32_t(((i0 + ii) * 256 + ct) * 16));
                }
            }
#pragma unroll
            for (int ii = 0; ii < C::kBatch; ++ii) {
                const int j = r * C::kF + 4 * (i0 + ii), o = 4 * (i0 + ii);
                const float4 own = make_float4(acc[j], acc[j + 1], acc[j + 2], acc[j + 3]);
                float4 a = r == 0 ? own : v[0][ii];
#pragma unroll
                for (int q = 1; q < CS; ++q) {
                    const float4 b = q == r ? own : v[q][ii];
                    a.x += b.x, a.y += b.y, a.z += b.z, a.w += b.w;
                }
                sum[o] = a.x, sum[o + 1] = a.y, sum[o + 2] = a.z, sum[o + 3] = a.w;
            }
        }
        if (active) wo::store_strip<T, C::kRows>(p, sum, n0, cs0, cs1, m0 + r * C::kRows, lane, false);
    }
    tma::cluster_sync();  // every CTA's reads of its peers' staging are complete: the peers may exit
}

// kNoDecode (measurements only, wrong results; benches/micro/wo_ws2.cu `diag`): the A registers take the codes as
// they are, to time the pipeline and the register-A wgmmas without the decode. ST: the staged epilogue above.
// CS > 1 (ws-C): the K range of each tile in CS slices on the CTAs of one cluster (launch_c: grid = tiles x CS, one
// unit per CTA), reduced through distributed shared memory (cluster_finish); CS = 1 is ws v1 as before.
template <class Fmt, typename T, int BX, bool kNoDecode = false, bool WT = false, bool ST = false, int CS = 1>
__global__ void __launch_bounds__(kThreads, 1) ws_kernel(const __grid_constant__ Args p,
                                                          const __grid_constant__ CUtensorMap xmap,
                                                          const __grid_constant__ CUtensorMap wmap) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    static_assert(!Fmt::kHasHi && !Fmt::kIsLut && Fmt::kTiles == 4, "one 16-byte word group per lane and k-step");
    using G = Geo<BX>;
    using namespace tma;
    constexpr int S = G::kStages;
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    unsigned char* ring = init_ring(smem_raw, full, empty);

    const int tid = threadIdx.x;
    const int wg = tid >> 7;

    static_assert(CS == 1 || (!kNoDecode && !ST), "ws-C: the library's v1 configuration only");
    const int mt = (p.m + BX - 1) / BX, nt = (p.strips + kStrips - 1) / kStrips;
    const int total = nt * mt * CS;
    const int ksteps = p.ksteps;
    const int kper = CS > 1 ? (ksteps + CS - 1) / CS : ksteps;  // k-steps per slice (a last slice may be empty)

    if (wg == 0) {
        // ------------------------------- producer -------------------------------
        setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                const int t = u / CS, sp = u - t * CS;
                const int nb = t / mt, mb = t - nb * mt;
                const int k0 = sp * kper;
                produce<BX, G::kSlot, S, WT>(p, &xmap, &wmap, ring, full, empty, nb, mb, k0, min(ksteps, k0 + kper), s,
                                             phase);
            }
        }
        if constexpr (CS > 1) {
            tma::cluster_sync();  // the consumers' two cluster barriers (cluster_finish)
            tma::cluster_sync();
        }
    } else {
        // ------------------------------- consumers -------------------------------
        setmaxnreg_inc<232>();
        const int cw = wg - 1;  // weight rows 64 cw .. 64 cw + 63 of the tile
        const int lane = tid & 31, warp = (tid >> 5) & 3, g = lane >> 2;
        const uint32_t ring_a = smem_u32(ring);
        int s = 0;
        uint32_t phase = 0;
        float acc[BX / 2];
        uint32_t abuf[2][4][4];
        for (int u = blockIdx.x; u < total; u += gridDim.x) {
            const int t = u / CS, sp = u - t * CS;
            const int nb = t / mt, mb = t - nb * mt;
            const int k0 = sp * kper, k1 = min(ksteps, k0 + kper);
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
            auto next_tile = [&]() { group_next_tile(tig, gi, cur, nxt, p.gtiles, load_meta, set_group); };
            int prev = -1;
            auto step = [&](int ks, uint32_t(&ab)[4][4]) {
                rs_kstep<Fmt, T, BX, G::kSlot, S, kNoDecode>(acc, ab, full, empty, ring_a, cw * 4 + warp, lane, ks, k0,
                                                             s, phase, prev, ctx, sg, sg8, next_tile);
            };
            // Pairs unconditionally, then the odd tail (abuf[0] is free there: its last group was retired by
            // the wait_group 1 of the pair's second step). A conditional second step inside the loop makes
            // ptxas serialize every wgmma (C7513).
            int ks = k0;
            for (; ks + 1 < k1; ks += 2) {
                step(ks, abuf[0]);
                step(ks + 1, abuf[1]);
            }
            if (ks < k1) step(ks, abuf[0]);
            wgmma_wait<0>();
            wgmma_fence_regs(acc);
            if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
            if constexpr (CS > 1) {
                if (k1 <= k0) {  // an empty last slice (ksteps < CS * kper) adds zeros
#pragma unroll
                    for (int j = 0; j < BX / 2; ++j) acc[j] = 0.f;
                }
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = active && p.chan ? p.chan[n0] : 1.f, cs1 = active && p.chan ? p.chan[n1] : 1.f;
                static_assert(S * G::kSlot >= ClusterSplit<BX, CS>::kStage, "ws-C: the staging fits the ring");
                cluster_finish<T, BX, CS>(p, acc, ring_a, tid - 128, mb * BX, n0, cs0, cs1, lane, active);
                break;  // one unit per CTA: no loop-carried accumulators (registers for the finish)
            } else if (active) {
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan ? p.chan[n0] : 1.f, cs1 = p.chan ? p.chan[n1] : 1.f;  // chan: [n_pad]
                if constexpr (ST) {
                    // acc[4c + e] = (row g + 8 * (e >= 2) of the strip, activation row 8c + 2t + (e & 1) of the tile):
                    // per pair of c, one stmatrix.x4.trans of the matrices (rows 0-7, act 8c..), (rows 8-15, act 8c..),
                    // (rows 0-7, act 8c + 8..), (rows 8-15, act 8c + 8..); lane l addresses row l % 8 of matrix l / 8.
                    T* y = static_cast<T*>(p.y);
                    const int m0 = mb * BX, nbase = strip * 16;
                    const bool vec = (p.n % 8) == 0 && (reinterpret_cast<uintptr_t>(p.y) & 15) == 0;
                    const uint32_t stg = ring_a + S * G::kSlot + (cw * 4 + warp) * kStgWarp;
                    const int q = lane >> 3;
#pragma unroll
                    for (int ch = 0; ch < BX / 64; ++ch) {
                        if (m0 + ch * 64 >= p.m) break;
#pragma unroll
                        for (int c2 = 0; c2 < 4; ++c2) {
                            const int c = ch * 8 + c2 * 2;
                            const int ml = c2 * 16 + (q >> 1) * 8 + (lane & 7);
                            stmatrix_x4_t(stg + ml * 32 + (((q & 1) ^ ((ml >> 2) & 1)) << 4),
                                          pack_out<T>(acc[4 * c] * cs0, acc[4 * c + 1] * cs0),
                                          pack_out<T>(acc[4 * c + 2] * cs1, acc[4 * c + 3] * cs1),
                                          pack_out<T>(acc[4 * c + 4] * cs0, acc[4 * c + 5] * cs0),
                                          pack_out<T>(acc[4 * c + 6] * cs1, acc[4 * c + 7] * cs1));
                        }
                        __syncwarp();
#pragma unroll
                        for (int i = 0; i < 4; ++i) {
                            const int idx = i * 32 + lane, ml = idx >> 1, h = idx & 1;
                            uint4 v;
                            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                                         : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                                         : "r"(stg + ml * 32 + ((h ^ ((ml >> 2) & 1)) << 4))
                                         : "memory");
                            const int mm = m0 + ch * 64 + ml, n = nbase + h * 8;
                            if (mm < p.m) {
                                T* dst = y + size_t(mm) * p.n + n;
                                if (vec && n + 8 <= p.n) {
                                    *reinterpret_cast<uint4*>(dst) = v;
                                } else {
                                    const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
                                    for (int e = 0; e < 8; ++e) {
                                        if (n + e < p.n) reinterpret_cast<uint16_t*>(dst)[e] = uint16_t(w[e >> 1] >> (16 * (e & 1)));
                                    }
                                }
                            }
                        }
                        __syncwarp();
                    }
                } else {
                    wo::store_strip<T, BX>(p, acc, n0, cs0, cs1, mb * BX, lane, false);
                }
            }
        }
    }
#endif
#endif
}

// ------------------------------------------------------------------------------------------------------------
// ws-S (seventh session): the same CTA, ring and producer, but each consumer warpgroup expands ITS OWN 64 weight
// rows of a k-step into a per-warpgroup shared-memory block (the int8 family's W4S pattern, i8_ws_gemm.cuh) and
// runs wgmma with BOTH operands in shared memory:
//   per k-step and consumer warp: wait full[s], one ld.shared.v4 of the lane's codes, the exact register decode
//   and group scale of v1 (bit-identical products), one stmatrix.x4 per 16x16 tile into A buffer b of its
//   warpgroup (64 rows x 64 columns, 8 KB, lowbit/wo_wgmma_ss.cuh layout; warp w's strip at 512 w),
//   fence.proxy.async.shared::cta (the generic-proxy stores become visible to wgmma), a 128-thread named barrier
//   of the warpgroup (id 1 + cw), four wgmma m64nBXk16 SS, commit, wait_group NB - 1, and release of the ring
//   slot whose group has now completed (the one NB - 1 steps back).
//   NB A buffers per warpgroup alternate by k-step: buffer b is rewritten NB steps later, after the wait_group
//   NB - 1 of the step before has retired the group that read it; with NB = 3 two groups per warpgroup stay
//   queued on the tensor pipe while the next step is decoded.
//   Why: v1's register-A wgmma paid a near-constant ~600 cycles per k-step beyond the tensor work at every BX
//   (NOTES.md, ws2): the A registers of a queued register-A group cannot be rewritten, so decode and tensor
//   work of one warpgroup only overlap one step deep; here the A operand lives in shared memory and the warps
//   are free as soon as their stores are fenced.
// Work units = (tile, K split): units of one tile are adjacent (split fastest), tiles M-fastest as v1. splits > 1
// adds f32 partial sums (channel scale applied) into p.ws ([M][N], zero on entry; the caller converts and
// re-zeroes it); splits = 1 stores T directly like v1.
// Shared memory: ring slots as v1 (fewer: the A buffers take 2 x NB x 8 KB), A buffers after the ring.
constexpr int kABuf = 64 * kBK * 2;  // one warpgroup's decoded k-step: 64 rows x 64 columns of T

template <int BX, int NB>
struct GeoS {
    static constexpr int kXStage = BX * 128;
    static constexpr int kSlot = kXStage + kWStage;
    static constexpr int kA = 2 * NB * kABuf;
    static constexpr int kFit = (225 * 1024 - kA - 1024) / kSlot;
    static constexpr int kStages = kFit > 16 ? 16 : kFit;
    static_assert(kStages >= NB + 1, "ring deeper than the A buffers' lag (the producer needs a free slot)");
    static constexpr int kSmem = kStages * kSlot + kA + 1024;
};

// CS > 1 (ws-C): as ws_kernel's CS (one unit per CTA, the slices of a tile on one cluster, cluster_finish); `splits`
// is then CS.
template <class Fmt, typename T, int BX, int NB, bool WT = false, int CS = 1>
__global__ void __launch_bounds__(kThreads, 1) ws_s_kernel(const __grid_constant__ Args p,
                                                            const __grid_constant__ CUtensorMap xmap,
                                                            const __grid_constant__ CUtensorMap wmap, int splits) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    static_assert(!Fmt::kHasHi && !Fmt::kIsLut && Fmt::kTiles == 4, "one 16-byte word group per lane and k-step");
    static_assert(NB >= 2 && NB <= 4, "A buffers per warpgroup");
    using G = GeoS<BX, NB>;
    using namespace tma;
    constexpr int S = G::kStages;
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    unsigned char* ring = init_ring(smem_raw, full, empty);

    const int tid = threadIdx.x;
    const int wg = tid >> 7;

    const int mt = (p.m + BX - 1) / BX, nt = (p.strips + kStrips - 1) / kStrips;
    const int ksteps = p.ksteps;
    if constexpr (CS > 1) splits = CS;
    const int kper = (ksteps + splits - 1) / splits;
    const int total = nt * mt * splits;

    if (wg == 0) {
        // ------------------------------- producer -------------------------------
        setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                const int t = u / splits, sp = u - t * splits;
                const int nb = t / mt, mb = t - nb * mt;
                const int k0 = sp * kper;
                produce<BX, G::kSlot, S, WT>(p, &xmap, &wmap, ring, full, empty, nb, mb, k0, min(ksteps, k0 + kper), s,
                                             phase);
            }
        }
        if constexpr (CS > 1) {
            tma::cluster_sync();  // the consumers' two cluster barriers (cluster_finish)
            tma::cluster_sync();
        }
    } else {
        // ------------------------------- consumers -------------------------------
        setmaxnreg_inc<232>();
        const int cw = wg - 1;  // weight rows 64 cw .. 64 cw + 63 of the tile
        const int lane = tid & 31, warp = (tid >> 5) & 3, g = lane >> 2;
        const uint32_t ring_a = smem_u32(ring);
        const uint32_t a_base = ring_a + S * G::kSlot + cw * NB * kABuf;
        // stmatrix row address of this lane: matrix q = lane / 8 holds (rows 8 (q & 1) .., columns 8 (q >> 1) ..)
        // of the warp's 16x16 tile, its row lane % 8 at 16 bytes; the warp's strip at 512 warp.
        const uint32_t lane_st = ((lane >> 3) & 1) * 256 + (lane >> 4) * 128 + (lane & 7) * 16 + warp * 512;
        int s = 0, b = 0;
        uint32_t phase = 0;
        int held = 0, oldest = 0;  // ring slots read by groups that may still run, the oldest of them
        float acc[BX / 2];
        for (int u = blockIdx.x; u < total; u += gridDim.x) {
            const int t = u / splits, sp = u - t * splits;
            const int nb = t / mt, mb = t - nb * mt;
            const int k0 = sp * kper, k1 = min(ksteps, k0 + kper);
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
            for (int ks = k0; ks < k1; ++ks) {
                mbar_wait(&full[s], phase);
                const uint32_t xa = ring_a + s * G::kSlot;
                uint32_t wb[4];
                asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                             : "=r"(wb[0]), "=r"(wb[1]), "=r"(wb[2]), "=r"(wb[3])
                             : "r"(xa + G::kXStage + (cw * 4 + warp) * 512 + lane * 16)
                             : "memory");
                const uint32_t ab = a_base + b * kABuf;
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    uint32_t a[4], o[4];
                    Fmt::template decode<T>(wb, nullptr, j, ctx, a);
                    o[0] = wo::mul_pair<T>(a[0], sg);
                    o[1] = wo::mul_pair<T>(a[1], sg8);
                    o[2] = wo::mul_pair<T>(a[2], sg);
                    o[3] = wo::mul_pair<T>(a[3], sg8);
                    stmatrix_x4(ab + j * 2048 + lane_st, o);
                    if (++tig == p.gtiles) {
                        tig = 0;
                        ++gi;
                        cur = nxt;
                        nxt = load_meta(gi + 1);
                        set_group();
                    }
                }
                fence_proxy_async_shared();
                asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
                wgmma_fence();
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    wgmma_ss<T, BX>(acc, desc_ns(ab + j * 2048, 128, 256), desc_sw128(xa + 32 * j), ks > k0 || j > 0);
                }
                wgmma_commit();
                wgmma_wait<NB - 1>();
                // Groups up to step ks - NB + 1 have completed: release that step's ring slot.
                if (++held == NB) {
                    if (lane == 0) mbar_arrive(&empty[oldest]);
                    if (++oldest == S) oldest = 0;
                    --held;
                }
                if (++s == S) s = 0, phase ^= 1;
                if (++b == NB) b = 0;
            }
            wgmma_wait<0>();
            wgmma_fence_regs(acc);
            for (; held > 0; --held) {
                if (lane == 0) mbar_arrive(&empty[oldest]);
                if (++oldest == S) oldest = 0;
            }
            if constexpr (CS > 1) {
                if (k1 <= k0) {  // an empty last slice (ksteps < CS * kper) adds zeros
#pragma unroll
                    for (int j = 0; j < BX / 2; ++j) acc[j] = 0.f;
                }
                static_assert(S * G::kSlot >= ClusterSplit<BX, CS>::kStage, "ws-C: the staging fits the ring");
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan && n0 < p.n ? p.chan[n0] : 1.f, cs1 = p.chan && n1 < p.n ? p.chan[n1] : 1.f;
                cluster_finish<T, BX, CS>(p, acc, ring_a, tid - 128, mb * BX, n0, cs0, cs1, lane, active);
                break;  // one unit per CTA: no loop-carried accumulators (registers for the finish)
            } else if (active && k1 > k0) {
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan && n0 < p.n ? p.chan[n0] : 1.f, cs1 = p.chan && n1 < p.n ? p.chan[n1] : 1.f;
                wo::store_strip<T, BX>(p, acc, n0, cs0, cs1, mb * BX, lane, splits != 1);
            }
        }
    }
#endif
#endif
}

// K splits as launched: at least one k-step per split.
inline int effective_splits(const Args& a, int splits) {
    if (splits <= 1) return 1;
    const int kper = (a.ksteps + splits - 1) / splits;
    return (a.ksteps + kper - 1) / kper;
}

template <class Fmt, typename T, int BX, int NB>
bool available_s() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws_s_kernel<Fmt, T, BX, NB>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

// ws-S launch with a prepared tensor map of X (as launch below; wmap as there). splits > 1 needs a.ws (f32 [M][N],
// zeroed); it is clamped so that every split has at least one k-step.
template <class Fmt, typename T, int BX, int NB>
cudaError_t launch_s(const Args& a, const CUtensorMap& xmap, int nsm, int splits, cudaStream_t st,
                     const CUtensorMap* wmap = nullptr) {
    constexpr int smem = GeoS<BX, NB>::kSmem;
    auto kern = wmap ? ws_s_kernel<Fmt, T, BX, NB, true> : ws_s_kernel<Fmt, T, BX, NB, false>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    splits = effective_splits(a, splits);
    if (splits > 1 && a.ws == nullptr) return cudaErrorInvalidValue;
    const int64_t units = int64_t((a.strips + kStrips - 1) / kStrips) * ((a.m + BX - 1) / BX) * splits;
    const int grid = int(units < nsm ? units : nsm);
    kern<<<grid, kThreads, smem, st>>>(a, xmap, wmap ? *wmap : xmap, splits);
    return cudaGetLastError();
}

// ws-C launch (NOTES.md ws-C): the K slices of each tile on the CS CTAs of one thread-block cluster, grid = tiles x CS
// (one unit per CTA; clusters beyond the resident ones wait for free SMs), reduced through distributed shared memory:
// no workspace, no convert launch. SS = false: ws v1's register-A mainloop (ws_kernel), true: ws-S's (ws_s_kernel,
// NB A buffers). wmap: the weight-word tensor map (one TMA per k-step), as launch / launch_s.
template <class Fmt, typename T, int BX, int CS, bool SS, int NB = (BX == 64 ? 3 : 2)>
cudaError_t launch_c(const Args& a, const CUtensorMap& xmap, const CUtensorMap& wmap, cudaStream_t st) {
    constexpr int smem = SS ? GeoS<BX, NB>::kSmem : Geo<BX>::kSmem;
    const int64_t units = int64_t((a.strips + kStrips - 1) / kStrips) * ((a.m + BX - 1) / BX) * CS;
    LaunchEx cfg(dim3(unsigned(units)), dim3(kThreads), smem, st);
    cfg.cluster_x(unsigned(CS));
    if constexpr (SS) {
        auto kern = ws_s_kernel<Fmt, T, BX, NB, true, CS>;
        cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        return cfg.launch(kern, a, xmap, wmap, CS);
    } else {
        auto kern = ws_kernel<Fmt, T, BX, false, true, false, CS>;
        cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
        if (e != cudaSuccess) return e;
        return cfg.launch(kern, a, xmap, wmap);
    }
}

// Clusters of CS ws-C CTAs that can be resident at once (cudaOccupancyMaxActiveClusters; 0 on error).
template <class Fmt, typename T, int BX, int CS, bool SS, int NB = (BX == 64 ? 3 : 2)>
int max_active_clusters() {
    constexpr int smem = SS ? GeoS<BX, NB>::kSmem : Geo<BX>::kSmem;
    LaunchEx cfg(dim3(unsigned(CS * 64)), dim3(kThreads), smem, nullptr);
    cfg.cluster_x(unsigned(CS));
    if constexpr (SS) {
        auto kern = ws_s_kernel<Fmt, T, BX, NB, true, CS>;
        if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return 0;
        return cfg.max_active_clusters(kern);
    } else {
        auto kern = ws_kernel<Fmt, T, BX, false, true, false, CS>;
        if (cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem) != cudaSuccess) return 0;
        return cfg.max_active_clusters(kern);
    }
}

template <class Fmt, typename T, int BX>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws_kernel<Fmt, T, BX>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

// Launch with a prepared tensor map of X (2-D {K, M}, box {64, BX}, 128-byte swizzle, 16-bit elements) and
// optionally of the weight words (wmap: 2-D {ksteps * 128, strips} u32, box {128, 8}, no swizzle; then one TMA
// per k-step instead of 8 bulk copies).
// ST: the staged epilogue (kStgBytes more shared memory).
template <class Fmt, typename T, int BX, bool kNoDecode = false, bool ST = false>
cudaError_t launch(const Args& a, const CUtensorMap& xmap, int nsm, cudaStream_t st, const CUtensorMap* wmap = nullptr) {
    constexpr int smem = Geo<BX>::kSmem + (ST ? kStgBytes : 0);
    auto kern = wmap ? ws_kernel<Fmt, T, BX, kNoDecode, true, ST> : ws_kernel<Fmt, T, BX, kNoDecode, false, ST>;
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const int64_t tiles = int64_t((a.strips + kStrips - 1) / kStrips) * ((a.m + BX - 1) / BX);
    const int grid = int(tiles < nsm ? tiles : nsm);
    kern<<<grid, kThreads, smem, st>>>(a, xmap, wmap ? *wmap : xmap);
    return cudaGetLastError();
}

}  // namespace wows
}  // namespace lowbit
