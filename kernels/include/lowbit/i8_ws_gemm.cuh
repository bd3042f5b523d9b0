// lowbit/i8_ws_gemm.cuh: warp-specialized persistent int8 GEMM for large M on Hopper (sm_90a), W8A8 and W4A8.
//
// Problem: as lowbit/i8_gemm.cuh (same Args, same epilogue arithmetic, bit for bit):
//   acc[m, n] = sum_k X[m, k] * Wq[n, k] exact in int32; y[m, n] = epilogue(acc).
//   D^T = W * X^T: the weight tile is wgmma's M side (A, 64 rows per consumer warpgroup), the activation rows
//   its N side (B, BX = 64, 128 or 256 rows: wgmma m64nBXk32).
//
// CTA = 3 warpgroups (384 threads), one CTA per SM, persistent over output tiles:
//   warpgroup 0 = producer: one thread issues the copies of every stage into an S-slot ring and gives up most
//     of its registers (setmaxnreg.dec 40);
//   warpgroups 1, 2 = consumers (setmaxnreg.inc 232): each owns 64 weight rows x BX activation rows
//     (BX / 2 int32 accumulators per thread) and issues four wgmma m64nBXk32 per 128-column stage.
//   Output tile = 128 weight rows x BX activation rows; tiles are numbered M-fastest inside groups of `group`
//   activation tiles (consecutive tiles share a weight tile, so the CTAs resident together read each weight
//   tile from HBM about once per group and the group's activation panels from L2) and CTA c takes tiles c,
//   c + gridDim.x, ...
//
// Pipeline (per ring slot: a "full" and an "empty" mbarrier):
//   producer: wait empty[s] (parity), arrive.expect_tx(full[s], 16384 + BX * 128), then
//     - the weight stage: ONE 1-D bulk copy (cp.async.bulk ... complete_tx) of the 16 KB block of the tiled
//       weight (lowbit-core int8::tile_weight: already in the no-swizzle core-matrix order wgmma reads);
//     - the activation stage: ONE 2-D TMA (cp.async.bulk.tensor.2d) of a BX-row x 128-byte box of X with
//       128-byte swizzle; rows >= M and columns >= K are zero-filled by the copy engine.
//   consumers: wait full[s], four wgmmas (A: no-swizzle descriptor of the weight block, B: 128-byte-swizzle
//     descriptor of the X box, K advanced by 32 bytes inside the swizzle atom), commit, wait for the previous
//     stage's group (wgmma.wait_group 1) and release that slot (one arrive per consumer warp: empty count 8).
//   Only asynchronous-proxy writers (bulk copies) fill the ring and only wgmma reads it, so no proxy fence
//   is needed in the loop.
// Epilogue: the column vectors (cs, cc, bias, os) and the tile's row vectors (rs, rc: BX / 32 per lane, coalesced,
//   handed to the owning threads by shuffles) are loaded while the tile's last wgmmas run (v11). f16 / bf16 output
//   (n % 8 == 0, ldy % 8 == 0, y 16-byte aligned; flags bit 0) leaves through shared memory and TMA stores (v13,
//   epilogue_tma): each consumer warpgroup converts 64 activation rows at a time into one of its two 8 KB staging
//   buffers (128-byte swizzle, bank-conflict free), one thread issues the 2-D TMA store, and the warpgroup goes on
//   (to the next chunk or the next tile's wgmmas) while the copy engine writes. Otherwise (int32 / int8 output, or
//   an output the copy engine cannot address) the values are stored straight from the accumulators, f16 / bf16 as
//   4-byte column pairs (one shuffle between neighbouring lanes). While the epilogue runs, the producer already
//   streams the next tile's first stages.
//
// W4 (W4 = true, v9): the ring's weight stage is the 8 KB 4-bit block (lowbit-core int8::tile_weight of pack_w4's
//   words: 16-byte chunk c of row r at c * 2048 + (r / 8) * 128 + (r % 8) * 16, word t of a chunk = lane t's
//   mma A-fragment codes). Each consumer lane reads its two words per k32 block from shared memory (generic
//   loads after the full-barrier wait: the bulk copy's writes are visible once the mbarrier phase completes),
//   expands them exactly to q * s (i8::expand_w4: one IMAD per two codes + PRMT) and issues register-A wgmmas
//   (m64nBXk32, A from registers); the A registers are double-buffered across stages because the group of the
//   previous stage may still read them until wgmma.wait_group 1. Group scales with group_len % 128 == 0 (one per
//   row and stage; flags bit 1, v13) come through the ring: warp 1 of the producer warpgroup (the scale warp) loads
//   the stage's 128 row scales, waits for the slot, writes them as bytes after the staging buffers and arrives on
//   the slot's full barrier (count 1 + 32), so a consumer lane reads its two rows' scales with two LDS.U8. Other
//   group lengths (and flags without bit 1) read them from global memory (L2) into two register sets, one per
//   stage parity, each reloaded right after use for the next stage of its parity (v11); per-channel weights (gs == nullptr) set every scale to 1 once, with no loads in the loop (v14).
//   W4S = true (the faster one, NOTES.md v9): instead of register-A wgmmas (ptxas C7513: serialized) the lanes
//   store the expanded words into a per-warpgroup 64 x 128 int8 block (no-swizzle core-matrix order, LBO 1024,
//   two buffers after the ring, alternating by stage), fence.proxy.async.shared::cta + a 128-thread named barrier
//   make them visible to wgmma, and the wgmmas read A from shared memory (no serialization).
// Limits: K % 16 == 0 (W8) / K % 32 == 0 and group_len % 32 == 0 (W4); X 16-byte aligned with ldx % 16 == 0 (TMA: global stride a multiple of 16);
// M < 2^31. The launcher (kernels/int8/ws_gemm.cu) builds the tensor map.
// Split-K (v14; p.ws != nullptr, for grids with fewer output tiles than SMs): the work units are (tile, K slice of
//   p.steps_per_split stages); each unit's consumers add their int32 partials into the tile's slab of p.ws
//   (BX x 128 int32, fragment order: element j of consumer thread ct at j * 256 + ct, coalesced red.global.add),
//   fence, and one thread counts the arrival in p.counters[tile]; the last slice to arrive reads the slab back
//   (zeroing it and the counter, so the workspace is clean for the next call: it must be zero before the first)
//   and runs the ordinary epilogue, TMA store included; n8 accumulator blocks wholly past M are neither added nor
//   read back (v15). The plan (ws_gemm.cu lowbit_i8_ws_plan) weighs each split against the slab's red time.
//   flags bit 6 (v20, LOWBIT_I8_WS_CSPLIT): the slices of a tile are the CTAs of one thread-block cluster (2..8; BX 256
//   only 2 or 4), one unit per CTA and no workspace: partials staged in each CTA's idle ring, reduced over distributed
//   shared memory (csplit_finish). The library plan takes it for W4 at 64 < M < 1024 with 2 slices (ws_gemm.cu).
//   flags bit 2 (v16, LOWBIT_I8_WS_BULK_RED, harness only): the slab leaves through the TMA-store staging and
//   cp.reduce.async.bulk .add.s32 instead of per-thread reds — measured equal on an H100 (NOTES v16: the cost is the
//   L2's reduction rate, not the instruction form), so the library keeps the reds.
// Ping-pong consumers (v17; PP = true, W8, BX = 128, unsplit): instead of splitting each tile's 128 weight rows
//   between the two consumer warpgroups (cooperative), warpgroup cw takes every other unit of its CTA whole (two wgmma
//   m64n128k32 per k32 block into 2 x 64 accumulators) and the two mainloops take turns (named barriers 5 / 6), so one
//   warpgroup's epilogue runs while the other's wgmmas keep the tensor pipe busy. Same producer, ring and epilogues.
//   The library plan takes it for W8 at M >= 1024 where it models faster (ws_gemm.cu, NOTES v17).
//   (Removed, measured slower, NOTES v18 / v19: the 2-CTA weight-multicast form of this kernel and a W4 ping-pong.)
// Harness-only flags (v17): bit 3 skips the epilogue (timing probe), bits 4-5 start cooperative warpgroup 1 `lag`
//   stages late (measured: no gain).
#pragma once

#include <cuda.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

#include "lowbit/i8_gemm.cuh"
#include "lowbit/tma.cuh"

namespace lowbit {
namespace i8ws {

using i8::Args;
using i8::kBK;
using i8::kBW;

constexpr int kThreads = 384;

template <int BX, bool W4 = false, bool W4S = false>
struct Geo {
    // One tiled weight block (8 / 16 KB).
    static constexpr int kWStage = W4 ? kBW * kBK / 2 : kBW * kBK;
    static constexpr int kXStage = BX * kBK;          // activation box bytes (multiple of 1024)
    static constexpr int kSlot = kWStage + kXStage;   // one ring slot
    // W4S: per consumer warpgroup two 8 KB int8 blocks (64 rows x 128 K) after the ring.
    static constexpr int kExp = W4S ? 2 * 2 * 64 * kBK : 0;
    // f16 / bf16 output staging for the TMA-store epilogue (v13): per consumer warpgroup two 64-row x 128-byte
    // buffers (64 activation rows x its 64 weight rows as f16), 128-byte swizzle, after the expansion blocks.
    static constexpr int kEpiBuf = 64 * 128;
    static constexpr int kEpi = 2 * 2 * kEpiBuf;
    // Ring: what is left of 227 KB (the per-block maximum, less the 1 KB alignment slack and static smem). Against
    // v12's 200 KB budget without staging this keeps every ring depth except W4S BX = 128 (7 -> 6 slots).
    // W4: the stage's group scales (one byte per weight row; group_len % 128 == 0), written by the producer
    // warpgroup's scale warp (v13), one 128-byte array per ring slot after the staging buffers.
    static constexpr int kScl = W4 ? kBW : 0;
    static constexpr int kBudget = 226 * 1024 - kExp - kEpi;
    static constexpr int kStages = kBudget / (kSlot + kScl) > 8 ? 8 : kBudget / (kSlot + kScl);
    // + alignment slack (swizzle atoms need 1024)
    static constexpr int kSmem = kStages * (kSlot + kScl) + kExp + kEpi + 1024;
    static_assert(kSmem <= 227 * 1024, "shared memory over the per-block maximum");
};

// Same as lowbit::smem_desc (no swizzle) from a shared-window address.
__device__ __forceinline__ uint64_t desc_plain(uint32_t addr, uint32_t lbo, uint32_t sbo) {
    uint64_t d = 0;
    d |= uint64_t((addr & 0x3FFFF) >> 4);
    d |= uint64_t((lbo & 0x3FFFF) >> 4) << 16;
    d |= uint64_t((sbo & 0x3FFFF) >> 4) << 32;
    return d;
}

// Tile t -> (weight tile nb, activation tile mb). Grouped rasterization: the activation tiles are taken in
// groups of `group` (the last group may be smaller); inside a group the tiles run M-fastest over every weight
// tile. The CTAs resident together then share a few weight tiles (read from HBM about once per group) and the
// group's activation panels stay in L2 while the group's weight tiles stream past (group = mt: plain M-fastest).
struct Tiles {
    int mt, nt, group;
    __device__ __forceinline__ void at(int t, int& nb, int& mb) const {
        const int per = group * nt;  // tiles of a full group
        const int gi = t / per;
        const int r = t - gi * per;
        const int m_first = gi * group;
        const int gm = min(group, mt - m_first);
        nb = r / gm;
        mb = m_first + (r - nb * gm);
    }
};

// Epilogue of one consumer thread: acc[4i + e] = (weight row nr + 8 (e >> 1), activation row m0 + 8i + 2tq + (e & 1)).
// The arithmetic is epi_value's, in the same order (bit-exact with lowbit-core int8::epilogue_f32). One fully
// unrolled instance per output type (OUT): with all types in one unrolled body (the int8 path's IEEE division
// included) the BX = 256 epilogue was ~35 us per tile on an H100, instruction-fetch bound (NOTES.md v5).
template <int BX>
__device__ __forceinline__ void epilogue_i32(const Args& p, const int32_t (&acc)[BX / 2], int m0, int nr, int tq) {
    const bool nok0 = nr < p.n, nok1 = nr + 8 < p.n;
    int32_t* y = static_cast<int32_t*>(p.y);
#pragma unroll
    for (int i = 0; i < BX / 8; ++i) {
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            const int m = m0 + 8 * i + 2 * tq + h;
            if (m < p.m) {
                if (nok0) y[size_t(m) * p.ldy + nr] = acc[4 * i + h];
                if (nok1) y[size_t(m) * p.ldy + nr + 8] = acc[4 * i + 2 + h];
            }
        }
    }
}

template <int OUT>
__device__ __forceinline__ uint32_t to_b16(float v) {
    if constexpr (OUT == i8::kOutF16) {
        return __half_as_ushort(__float2half_rn(v));
    } else {
        return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
}

// The epilogue's vectors of one consumer thread, loaded by epi_prefetch while the tile's last wgmmas still run
// (v11): the column vectors of its two weight rows, and the tile's BX row vectors spread over the warp (lane l
// holds activation rows m0 + 32 j + l, j < BX / 32; the epilogue takes each row's value with one shuffle). Before
// v11 every one of the BX / 8 row pairs did its own dependent L2 load inside the store loop: ~BX / 8 serial
// load latencies per tile (NOTES.md v11).
// The second rank-1 term (rc2 / cc2, the bipolar W8A8 mapping) is held the same way: rc2 spread over the warp,
// cc2 per weight row, loaded behind a uniform branch on e.rc2; the per-value code uses them only in the R2 = true
// instances of epilogue_t / epilogue_tma (each dispatches to it when e.rc2 is set), so the unrolled bodies of
// launches without the term are those of before (no extra shuffles, FMAs or predicates).
template <int BX>
struct EpiVec {
    float cs[2], cc[2], bs[2], os[2], cc2[2];
    float rs[BX / 32], rc[BX / 32], rc2[BX / 32];
};

template <int BX>
__device__ __forceinline__ void epi_prefetch(const Args& p, EpiVec<BX>& v, int m0, int nr, int lane) {
    const i8::Epilogue& e = p.epi;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int n = nr + 8 * r;
        const bool ok = n < p.n;
        v.cs[r] = e.cs && ok ? __ldg(e.cs + n) : 1.f;
        v.cc[r] = e.rc && ok ? __ldg(e.cc + n) : 0.f;
        v.bs[r] = e.bias && ok ? __ldg(e.bias + n) : 0.f;
        v.os[r] = e.os && ok ? __ldg(e.os + n) : e.out_scale;
        v.cc2[r] = e.rc2 && ok ? __ldg(e.cc2 + n) : 0.f;
    }
#pragma unroll
    for (int j = 0; j < BX / 32; ++j) {
        const int m = m0 + 32 * j + lane;
        const bool ok = m < p.m;
        v.rs[j] = e.rs ? (ok ? __ldg(e.rs + m) : 0.f) : e.rs_val;
        v.rc[j] = e.rc && ok ? __ldg(e.rc + m) : 0.f;
        v.rc2[j] = e.rc2 && ok ? __ldg(e.rc2 + m) : 0.f;
    }
}

// The row vectors of the two activation rows (h = 0, 1) that this lane's register group i holds: row
// 32 (i / 4) + 8 (i % 4) + 2 tq + h of the tile is register i / 4 of lane 8 (i % 4) + 2 tq + h (epi_prefetch).
template <int BX, bool R2>
__device__ __forceinline__ void epi_rows(const i8::Epilogue& e, const EpiVec<BX>& ev, int i, int tq, float (&rs)[2],
                                         float (&rc)[2], float (&rc2)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        const int src = 8 * (i % 4) + 2 * tq + h;
        rs[h] = __shfl_sync(0xffffffffu, ev.rs[i / 4], src);
        rc[h] = e.rc ? __shfl_sync(0xffffffffu, ev.rc[i / 4], src) : 0.f;
        rc2[h] = R2 ? __shfl_sync(0xffffffffu, ev.rc2[i / 4], src) : 0.f;
    }
}

// The epilogue's f32 values (before the output conversion) of register group i, weight row r, both rows h: the
// operations of lowbit-core's int8::epilogue_f32 in its order (row scale, column scale, correction, second
// correction (R2: present), bias).
template <int BX, bool R2>
__device__ __forceinline__ void epi_values(const i8::Epilogue& e, const EpiVec<BX>& ev, const int32_t (&acc)[BX / 2],
                                           int i, int r, const float (&rs)[2], const float (&rc)[2],
                                           const float (&rc2)[2], float (&v)[2]) {
#pragma unroll
    for (int h = 0; h < 2; ++h) {
        v[h] = __fmul_rn(__int2float_rn(acc[4 * i + 2 * r + h]), rs[h]);
        if (e.cs) v[h] = __fmul_rn(v[h], ev.cs[r]);
        if (e.rc) v[h] = __fmaf_rn(rc[h], ev.cc[r], v[h]);
        if constexpr (R2) v[h] = __fmaf_rn(rc2[h], ev.cc2[r], v[h]);
        if (e.bias) v[h] = __fadd_rn(v[h], ev.bs[r]);
    }
}

template <int BX, int OUT, bool R2 = false>
__device__ __forceinline__ void epilogue_t(const Args& p, const int32_t (&acc)[BX / 2], const EpiVec<BX>& ev, int m0,
                                           int nr, int tq) {
    const i8::Epilogue& e = p.epi;
    if constexpr (!R2) {
        if (e.rc2) {  // uniform: the instance with the second rank-1 term
            epilogue_t<BX, OUT, true>(p, acc, ev, m0, nr, tq);
            return;
        }
    }
    // f16 / bf16 with an even row pitch: lanes g and g ^ 1 swap one value each (shfl.xor 4), so that each stores
    // a 4-byte pair of adjacent columns (n, n + 1) for one row: half the store instructions.
    const bool pairs = OUT != i8::kOutI8 && p.ldy % 2 == 0 && (reinterpret_cast<uintptr_t>(p.y) & 3) == 0;
    const bool odd = nr & 1;  // nr = tile base (multiple of 16) + g
#pragma unroll
    for (int i = 0; i < BX / 8; ++i) {
        const int ma = m0 + 8 * i + 2 * tq;  // rows ma (h = 0) and ma + 1 (h = 1)
        float rs[2], rc[2], rc2[2];
        epi_rows<BX, R2>(e, ev, i, tq, rs, rc, rc2);
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int n = nr + 8 * r;
            float v[2];
            epi_values<BX, R2>(e, ev, acc, i, r, rs, rc, rc2, v);
            if constexpr (OUT == i8::kOutI8) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int m = ma + h;
                    if (m < p.m && n < p.n) {
                        const float q = fminf(fmaxf(rintf(__fdiv_rn(v[h], ev.os[r])), -128.f), 127.f);
                        static_cast<int8_t*>(p.y)[size_t(m) * p.ldy + n] = static_cast<int8_t>(q);
                    }
                }
            } else {
                const uint32_t b0 = to_b16<OUT>(v[0]), b1 = to_b16<OUT>(v[1]);
                if (pairs) {
                    const uint32_t got = __shfl_xor_sync(0xffffffffu, odd ? b0 : b1, 4);
                    // Even lane: row ma, columns (n, n + 1) = (own, partner's h = 0). Odd lane: row ma + 1,
                    // columns (n - 1, n) = (partner's h = 1, own).
                    const int m = odd ? ma + 1 : ma;
                    const int c = odd ? n - 1 : n;
                    const uint32_t lo = odd ? got : b0, hi = odd ? b1 : got;
                    if (m < p.m && c < p.n) {
                        uint16_t* at = static_cast<uint16_t*>(p.y) + size_t(m) * p.ldy + c;
                        if (c + 1 < p.n) {
                            *reinterpret_cast<uint32_t*>(at) = lo | (hi << 16);
                        } else {
                            *at = uint16_t(lo);
                        }
                    }
                } else {
                    uint16_t* y = static_cast<uint16_t*>(p.y);
                    if (n < p.n) {
                        if (ma < p.m) y[size_t(ma) * p.ldy + n] = uint16_t(b0);
                        if (ma + 1 < p.m) y[size_t(ma + 1) * p.ldy + n] = uint16_t(b1);
                    }
                }
            }
        }
    }
}

// Named barrier of one consumer warpgroup (ids 1, 2; 128 threads).
__device__ __forceinline__ void wg_sync(int cw) { asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory"); }

// f16 / bf16 epilogue through shared memory and TMA stores (v13). The warpgroup's 64 weight rows x BX activation
// rows leave in BX / 64 chunks of 64 activation rows: each chunk is converted (epilogue_t's arithmetic, bit for bit),
// written as 4-byte column pairs into one of the warpgroup's two staging buffers (row = activation row, 128 bytes =
// the 64 weight rows as 16-bit values, 128-byte swizzle: 16-byte unit u of row r at (u ^ (r & 7)) * 16), made
// visible to the async proxy, and stored by one thread with a 2-D TMA of the output map (box 64 x 64; rows >= M and
// columns >= N are clipped by the copy engine). The warpgroup then goes on to the next chunk / tile while the copy
// engine writes: only the staging buffer's reuse waits (bulk_wait_group_read<1>: the chunk before the previous one
// has been read). `q` counts the chunks this warpgroup has issued (buffer q & 1).
// Bank conflicts: one STS.32 per (i, r) per lane: lanes (g, tq) write rows 8i + 2tq + (g & 1) (eight distinct r & 7)
// at unit 2 warp + r (XOR r & 7: eight distinct units) and word g >> 1: 32 distinct banks.
template <int BX, int OUT, bool R2 = false>
__device__ __forceinline__ void epilogue_tma(const Args& p, const int32_t (&acc)[BX / 2], const EpiVec<BX>& ev, int m0,
                                             int n0, int tq, int g, int warp, int cw, unsigned char* ebuf,
                                             const CUtensorMap* ymap, uint32_t& q) {
    const i8::Epilogue& e = p.epi;
    if constexpr (!R2) {
        if (e.rc2) {  // uniform: the instance with the second rank-1 term
            epilogue_tma<BX, OUT, true>(p, acc, ev, m0, n0, tq, g, warp, cw, ebuf, ymap, q);
            return;
        }
    }
    const bool odd = g & 1;
    const bool leader = (threadIdx.x & 127) == 0;
#pragma unroll
    for (int c = 0; c < BX / 64; ++c) {
        unsigned char* buf = ebuf + (q & 1) * Geo<BX>::kEpiBuf;
        if (leader) tma::bulk_wait_group_read<1>();  // buffer q & 1's previous chunk (q - 2) has been read
        wg_sync(cw);
#pragma unroll
        for (int ii = 0; ii < 8; ++ii) {
            const int i = 8 * c + ii;
            float rs[2], rc[2], rc2[2];
            epi_rows<BX, R2>(e, ev, i, tq, rs, rc, rc2);
            const int lr = 8 * ii + 2 * tq + (odd ? 1 : 0);  // chunk-relative activation row this lane stores
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                float v[2];
                epi_values<BX, R2>(e, ev, acc, i, r, rs, rc, rc2, v);
                const uint32_t b0 = to_b16<OUT>(v[0]), b1 = to_b16<OUT>(v[1]);
                // As epilogue_t's pairs: even lane -> row ma, columns (n, n + 1); odd lane -> row ma + 1, (n - 1, n).
                const uint32_t got = __shfl_xor_sync(0xffffffffu, odd ? b0 : b1, 4);
                const uint32_t lo = odd ? got : b0, hi = odd ? b1 : got;
                // Column pair (16 warp + 8 r + (g & ~1)) of the warpgroup's 64: 16-byte unit 2 warp + r, word g >> 1.
                const int unit = (2 * warp + r) ^ (lr & 7);
                *reinterpret_cast<uint32_t*>(buf + lr * 128 + unit * 16 + 4 * (g >> 1)) = lo | (hi << 16);
            }
        }
        tma::fence_proxy_async_shared();
        wg_sync(cw);
        if (leader) {
            tma::tma_2d_s2g(ymap, buf, n0, m0 + 64 * c);
            tma::bulk_commit_group();
        }
        ++q;
    }
}

template <int BX>
__device__ __forceinline__ void epilogue(const Args& p, const int32_t (&acc)[BX / 2], const EpiVec<BX>& ev, int m0,
                                         int nr, int tq) {
    switch (p.epi.out) {
        case i8::kOutI32:
            epilogue_i32<BX>(p, acc, m0, nr, tq);
            break;
        case i8::kOutF16:
            epilogue_t<BX, i8::kOutF16>(p, acc, ev, m0, nr, tq);
            break;
        case i8::kOutBf16:
            epilogue_t<BX, i8::kOutBf16>(p, acc, ev, m0, nr, tq);
            break;
        default:
            epilogue_t<BX, i8::kOutI8>(p, acc, ev, m0, nr, tq);
            break;
    }
}

// ---------------------------------------------------------------------------------------------------
// The kernel (grid = min(tiles, SMs), 384 threads, Geo<BX>::kSmem bytes of dynamic shared memory).
// ---------------------------------------------------------------------------------------------------
// W4: one group scale (as i8::w4_scale), with the group index a shift when group_len is a power of two
// (glog = log2(group_len), else -1): i8::w4_scale's runtime division sat in series with the expansion (v12).
__device__ __forceinline__ uint32_t ws_scale(const Args& p, int gn, int gk, int glog) {
    if (p.gs == nullptr || gn >= p.n || gk >= p.k) return 1;
    const int gi = glog >= 0 ? gk >> glog : gk / p.group_len;
    return __ldg(p.gs + size_t(gn) * p.groups + gi);
}

// W4: group scales of this lane's rows (gn, gn + 8) for the four k32 blocks of stage ks (1 outside the matrix or
// without group scales); sc[j] = (row gn, row gn + 8).
__device__ __forceinline__ void w4_scales(const Args& p, int gn, int ks, int glog, uint32_t (&sc)[kBK / 32][2]) {
    const int kb = ks * kBK;
    if (p.group_len % kBK == 0) {
        const uint32_t s0 = ws_scale(p, gn, kb, glog), s1 = ws_scale(p, gn + 8, kb, glog);
#pragma unroll
        for (int j = 0; j < kBK / 32; ++j) sc[j][0] = s0, sc[j][1] = s1;
    } else {
#pragma unroll
        for (int j = 0; j < kBK / 32; ++j) {
            sc[j][0] = ws_scale(p, gn, kb + 32 * j, glog);
            sc[j][1] = ws_scale(p, gn + 8, kb + 32 * j, glog);
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// v20: split-K through a thread-block cluster. The K slices of one output tile run on the CTAs of one cluster (rank =
// slice, one unit per CTA); instead of adding BX x 128 int32 slabs in the L2 (v14-v16: the L2's reduction rate,
// ~250-350 GB/s grid-wide), each CTA stages its partial sums in its own (now idle) ring, one cluster barrier makes
// them visible, and the sums are read back over distributed shared memory (ld.shared::cluster). Where the tile splits
// evenly into 64- or 128-row parts (BX 256 x 2 / 4, BX 128 x 2) every rank sums and stores its own part of the tile's
// activation rows (the epilogue of a BX / splits-wide tile on that part); otherwise rank 0 sums the whole tile (only
// the n8 blocks below M: at M <= 16 a quarter of a BX 64 tile) and runs the ordinary epilogue. A second cluster
// barrier keeps every CTA's staging alive until its peers have read it. No workspace, no atomics.
// ---------------------------------------------------------------------------------------------------
using tma::ld_cluster_v4;  // the DSMEM helpers live in lowbit/tma.cuh (shared with the weight-only ws-C)
using tma::mapa_shared;

// The epilogue of one BX-wide tile's activation rows [m0, m0 + BX) of weight rows n0 + (warp 16 + g, + 8).
template <int BX>
__device__ __forceinline__ void csplit_epilogue(const Args& p, const int32_t (&acc)[BX / 2], int m0, int n0, int tq,
                                                int g, int warp, int lane, int cw, bool ystore, unsigned char* ebuf,
                                                const CUtensorMap* ymap, uint32_t& yq) {
    const int nr = n0 + warp * 16 + g;
    EpiVec<BX> ev;
    epi_prefetch<BX>(p, ev, m0, nr, lane);
    if (ystore) {
        if (p.epi.out == i8::kOutF16) {
            epilogue_tma<BX, i8::kOutF16>(p, acc, ev, m0, n0, tq, g, warp, cw, ebuf, ymap, yq);
        } else {
            epilogue_tma<BX, i8::kOutBf16>(p, acc, ev, m0, n0, tq, g, warp, cw, ebuf, ymap, yq);
        }
    } else {
        epilogue<BX>(p, acc, ev, m0, nr, tq);
    }
}

// Part `part` (activation rows m0 + part SUB ..) of the tile: summed over every CTA's staging and stored.
template <int SUB>
__device__ __forceinline__ void csplit_part(const Args& p, uint32_t stage, int splits, int part, int m0, int n0, int ct,
                                            int nv, int tq, int g, int warp, int lane, int cw, bool ystore,
                                            unsigned char* ebuf, const CUtensorMap* ymap, uint32_t& yq) {
    const int ms = m0 + part * SUB;
    if (ms >= p.m) return;
    int32_t sum[SUB / 2];
#pragma unroll
    for (int j = 0; j < SUB / 2; ++j) sum[j] = 0;
    const int i0 = part * (SUB / 8);
    for (int q = 0; q < splits; ++q) {
        const uint32_t base = mapa_shared(stage, uint32_t(q));
#pragma unroll
        for (int ii = 0; ii < SUB / 8; ++ii) {
            if (4 * (i0 + ii) < nv) {
                const int4 v = ld_cluster_v4(base + uint32_t(((i0 + ii) * 256 + ct) * 16));
                sum[4 * ii] += v.x, sum[4 * ii + 1] += v.y, sum[4 * ii + 2] += v.z, sum[4 * ii + 3] += v.w;
            }
        }
    }
    csplit_epilogue<SUB>(p, sum, ms, n0, tq, g, warp, lane, cw, ystore, ebuf, ymap, yq);
}

// Called by the 256 consumer threads of every CTA of the cluster after the unit's last wgmma.wait_group 0 (the
// producer warpgroup calls cluster_sync twice to match). ct = consumer thread 0..255.
template <int BX>
__device__ __forceinline__ void csplit_finish(const Args& p, int32_t (&acc)[BX / 2], unsigned char* ring, int splits,
                                              int m0, int n0, int ct, int tq, int g, int warp, int lane, int cw,
                                              bool ystore, unsigned char* ebuf, const CUtensorMap* ymap,
                                              uint32_t& yq) {
    // n8 accumulator blocks below M (v15's skip): accumulator j holds activation row m0 + 8 (j / 4) + 2 tq + (j & 1).
    const int nv = min(BX / 2, 4 * ((p.m - m0 + 7) >> 3));
    const uint32_t stage = tma::smem_u32(ring);
    // Both consumer warpgroups' wgmmas have completed (each waited for its own): the ring is free. Staging layout:
    // accumulators 4 i .. 4 i + 3 of consumer thread ct at (i * 256 + ct) * 16 (conflict-free 16-byte stores, and
    // each warp's remote 16-byte loads cover 512 contiguous bytes).
    asm volatile("bar.sync 3, 256;\n" ::: "memory");
#pragma unroll
    for (int i = 0; i < BX / 8; ++i) {
        if (4 * i < nv) {
            asm volatile("st.shared.v4.s32 [%0], {%1, %2, %3, %4};\n" ::"r"(stage + uint32_t((i * 256 + ct) * 16)),
                         "r"(acc[4 * i]), "r"(acc[4 * i + 1]), "r"(acc[4 * i + 2]), "r"(acc[4 * i + 3])
                         : "memory");
        }
    }
    tma::cluster_sync();  // release / acquire at cluster scope: every CTA's staging is visible to its peers
    const uint32_t rank = tma::cluster_rank();
    // Where the tile splits into 64-row parts evenly over the ranks (BX 256 x 2 / 4, BX 128 x 2), rank r sums and
    // stores parts r P .. r P + P - 1 (P = BX / 64 / splits), one 64-row part at a time (registers: 32 sums).
    // BX = 256 takes only this path (the launcher admits 2 and 4 slices there): rank 0 holding the 256-row tile's 128
    // accumulators while it reads its peers' would not fit the kernel's 168 registers.
    if (BX == 256 || (BX == 128 && splits == 2)) {
        const int per = BX / 64 / splits;
        for (int h = 0; h < per; ++h)
            csplit_part<64>(p, stage, splits, int(rank) * per + h, m0, n0, ct, nv, tq, g, warp, lane, cw, ystore, ebuf,
                            ymap, yq);
        tma::cluster_sync();  // every CTA's reads of its peers' staging are complete: the peers may leave
        return;
    }
    if constexpr (BX == 256) return;
    if (rank == 0) {
        for (int q = 1; q < splits; ++q) {
            const uint32_t base = mapa_shared(stage, uint32_t(q));
#pragma unroll
            for (int i = 0; i < BX / 8; ++i) {
                if (4 * i < nv) {
                    const int4 v = ld_cluster_v4(base + uint32_t((i * 256 + ct) * 16));
                    acc[4 * i] += v.x, acc[4 * i + 1] += v.y, acc[4 * i + 2] += v.z, acc[4 * i + 3] += v.w;
                }
            }
        }
    }
    tma::cluster_sync();  // rank 0 has read every peer's staging
    if (rank == 0) csplit_epilogue<BX>(p, acc, m0, n0, tq, g, warp, lane, cw, ystore, ebuf, ymap, yq);
}

// v24: the L2 prefetch of a CTA's first weight stages before griddepcontrol.wait (ws_kernel, flags bit 7): the first
// min(S, stages of the unit) 16 KB / 8 KB tiled blocks of unit blockIdx.x, one bulk prefetch each. Out of line so
// that the kernel's register allocation is the one without it.
template <int BX>
__device__ __noinline__ void pdl_prefetch(const Args& p, int group, int S, int wstage, bool csplit) {
    const int mt = (p.m + BX - 1) / BX, nt = (p.n + kBW - 1) / kBW;
    const Tiles tiles{mt, nt, group < 1 ? 1 : (group > mt ? mt : group)};
    const int sps = p.ws || csplit ? p.steps_per_split : p.ksteps;
    const int splits = p.ws || csplit ? (p.ksteps + sps - 1) / sps : 1;
    const int u = int(blockIdx.x);
    if (u >= nt * mt * splits) return;
    const int t = u / splits, k0 = (u - t * splits) * sps, k1 = min(p.ksteps, k0 + min(sps, S));
    int nb, mb;
    tiles.at(t, nb, mb);
    const uint8_t* wsrc = p.w + size_t(nb) * p.ksteps * wstage;
    for (int ks = k0; ks < k1; ++ks)
        asm volatile("cp.async.bulk.prefetch.L2.global [%0], %1;\n" ::"l"(wsrc + size_t(ks) * wstage),
                     "r"(uint32_t(wstage))
                     : "memory");
}

// PDL (v26): the instance launched with programmatic dependent launch (v24's griddepcontrol.wait /
// launch_dependents and the flags-bit-7 L2 prefetch compiled in). The library launches it only for split-K grids
// (kernels/int8/ws_pdl.cu); every other launch runs PDL = false, whose code is exactly the pre-v24 kernel's (v24 had
// the PDL code in every instance; NOTES v26).
template <int BX, bool W4 = false, bool W4S = false, bool PP = false, bool PDL = false>
__global__ void __launch_bounds__(kThreads, 1) ws_kernel(const __grid_constant__ Args p,
                                                          const __grid_constant__ CUtensorMap xmap,
                                                          const __grid_constant__ CUtensorMap ymap, int flags,
                                                          int group) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    using namespace tma;
    using G = Geo<BX, W4, W4S>;
    constexpr int S = G::kStages;
    constexpr int kWStage = G::kWStage;
    static_assert(S * G::kSlot >= BX * 512, "v20: the cluster split-K staging (BX x 128 int32) fits the ring");
    static_assert(!PP || !W4, "ping-pong consumers: W8 only");
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    // Ring base aligned to 1024 bytes (128-byte swizzle atoms); every slot and X box stays 1024-aligned.
    const uint32_t raw = smem_u32(smem_raw);
    unsigned char* ring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);

    const int tid = threadIdx.x;
    const int wg = tid >> 7;
    // flags bit 0: f16 / bf16 output through the TMA-store epilogue (ymap valid); bit 1 (W4 with group scales and
    // group_len % 128 == 0): the stage's scales come through the ring from the scale warp (v13).
    const bool ystore = flags & 1;
    const bool bulkred = flags & 4;  // split-K slab by bulk reduction from shared memory (v16)
    // v20 (flags bit 6): split-K slices of a tile in one thread-block cluster (p.ws == nullptr, grid = units, one unit
    // per CTA), partial sums reduced through distributed shared memory (csplit_finish).
    const bool csplit = flags & 64;
    // v17 (harness probes / options): bit 3 skips the epilogue (timing probe only: the output is not written);
    // bits 4-5 = lag (W8): consumer warpgroup 1 starts lag stages after warpgroup 0, so that one warpgroup's
    // epilogue runs while the other still issues its last wgmmas (one warpgroup alone saturates the tensor pipe).
    const bool skip_epi = flags & 8;
    const int lag = W4 ? 0 : (flags >> 4) & 3;
    const bool sscale = W4 && (flags & 2) && p.gs != nullptr && p.group_len % kBK == 0;
    unsigned char* const scl = ring + S * G::kSlot + G::kExp + G::kEpi;  // W4: S x 128 scale bytes
    if (tid == 0) {
        for (int s = 0; s < S; ++s) {
            // The producer's arrive.expect_tx (+ the copies' bytes) and, with ring scales, one arrive per scale-warp
            // lane after its stores (release: the consumers' full-barrier wait makes the bytes visible).
            mbar_init(&full[s], sscale ? 1 + 32 : 1);
            // One arrive per consumer warp (PP: of the slot's one warpgroup).
            mbar_init(&empty[s], PP ? 4 : 8);
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
        // v24 (NOTES v24): programmatic dependent launch (PDL instances only, v26). Launched with the
        // programmatic-stream-serialization attribute (ws_pdl.cu), this CTA may start while the previous kernel of
        // the stream still runs, and that kernel may have written anything this one reads (weights included). So
        // before griddepcontrol.wait this thread only prefetches the first S weight stages of the CTA's first unit
        // into L2 (flags bit 7; L2 is coherent with the previous kernel's stores), and every copy into shared memory,
        // load and store of every thread comes after the wait. Without the attribute the wait returns at once.
        if constexpr (PDL) {
            if (flags & 128) pdl_prefetch<BX>(p, group, S, kWStage, csplit);
        }
    }
    if constexpr (PDL) {
        asm volatile("griddepcontrol.wait;\n" ::: "memory");
        // The next kernel's CTAs may launch into free SMs once every CTA of this grid is past its wait (one call
        // ahead).
        asm volatile("griddepcontrol.launch_dependents;\n");
    }
    __syncthreads();

    const int mt = (p.m + BX - 1) / BX, nt = (p.n + kBW - 1) / kBW;
    const Tiles tiles{mt, nt, group < 1 ? 1 : (group > mt ? mt : group)};
    const int ksteps = p.ksteps;
    // Split-K (v14, p.ws != nullptr): work unit u = (output tile u / splits, K slice u % splits of sps stages); the
    // slices of one tile are consecutive units, so they run at the same time on neighbouring CTAs.
    const int sps = p.ws || csplit ? p.steps_per_split : ksteps;
    const int splits = p.ws || csplit ? (ksteps + sps - 1) / sps : 1;
    const int total = nt * mt * splits;
    // Work unit u = tile u (with split-K: one K slice of it); CTA blockIdx.x takes units blockIdx.x, + gridDim.x, ...
    const int utotal = total;
    const int ufirst = int(blockIdx.x), ustride = int(gridDim.x);
    auto unit_tile = [&](int u, int& nb, int& mb) { tiles.at(u, nb, mb); };
    __shared__ int split_last;  // split-K: this CTA arrived last at its tile (consumer broadcast)

    if (wg == 0) {
        // ------------------------------- producer -------------------------------
        setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                const int t = u / splits, k0 = (u - t * splits) * sps, k1 = min(ksteps, k0 + sps);
                int nb, mb;
                tiles.at(t, nb, mb);
                const uint8_t* wsrc = p.w + size_t(nb) * ksteps * kWStage;
                for (int ks = k0; ks < k1; ++ks) {
                    mbar_wait(&empty[s], phase ^ 1);  // a fresh barrier passes parity 1 at once
                    unsigned char* slot = ring + s * G::kSlot;
                    mbar_expect_tx(&full[s], G::kSlot);
                    bulk_g2s(slot, wsrc + size_t(ks) * kWStage, kWStage, &full[s]);
                    tma_2d_g2s(slot + kWStage, &xmap, ks * kBK, mb * BX, &full[s]);
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        } else if (sscale && (tid >> 5) == 1) {
            // Scale warp (v13): lane l writes the group scales of weight rows l, l + 32, l + 64, l + 96 of each stage
            // into the slot's 128-byte array (1 outside the matrix), loaded before the empty-slot wait so the L2
            // latency runs while the slot drains. Before v13 every consumer lane loaded its two rows' scales from
            // global memory with the group-index and address arithmetic in series with the expansion (NOTES v12).
            const int lane = tid & 31;
            const int glog = (p.group_len & (p.group_len - 1)) == 0 ? __ffs(p.group_len) - 1 : -1;
            int s = 0;
            uint32_t phase = 0;
            // 40 registers (setmaxnreg.dec): one row pointer, 32-bit offsets, the four bytes packed in one word.
            const int rstride = 32 * p.groups;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                const int t = u / splits;
                const int k0 = (u - t * splits) * sps, k1 = min(ksteps, k0 + sps);
                int nb, mb;
                tiles.at(t, nb, mb);
                const int rows_left = p.n - (nb * kBW + lane);  // rows lane + 32 q exist while 32 q < rows_left
                const uint8_t* gsr = p.gs + size_t(nb * kBW + lane) * p.groups;
                for (int ks = k0; ks < k1; ++ks) {
                    const int gk = ks * kBK;
                    const int gi = glog >= 0 ? gk >> glog : gk / p.group_len;
                    uint32_t v = 0;
#pragma unroll
                    for (int q = 0; q < 4; ++q)
                        v |= (32 * q < rows_left ? uint32_t(__ldg(gsr + q * rstride + gi)) : 1u) << (8 * q);
                    mbar_wait(&empty[s], phase ^ 1);
#pragma unroll
                    for (int q = 0; q < 4; ++q) scl[s * kBW + lane + 32 * q] = uint8_t(v >> (8 * q));
                    mbar_arrive(&full[s]);
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        }
        // v20: the producer warpgroup's part in the consumers' two cluster barriers (csplit_finish).
        if (csplit) {
            cluster_sync();
            cluster_sync();
        }
    } else if constexpr (PP) {
        // ------------------------- ping-pong consumers (v17) -------------------------
        // W8, unsplit. Consumer warpgroup cw takes the CTA's units cw, cw + 2, ... (unit i = tile blockIdx.x +
        // i * gridDim.x) whole: 128 weight rows x BX activation rows, two wgmma m64nBXk32 per k32 block (weight rows
        // 0-63 into acc0, 64-127 into acc1, one activation descriptor). The producer fills the ring in unit order, so
        // unit i's stages sit at ring positions i * ksteps ... The two warpgroups' mainloops take turns (named
        // barriers 5 / 6: after issuing its last stage a warpgroup lets the other one start), so every full-barrier
        // wait is for the next position in ring order (a parity wait must never run two phases ahead) and one
        // warpgroup's epilogue runs while the other one's wgmmas keep the tensor pipe busy (cuBLASLt's int8 kernel
        // on these shapes is such a 128 x 128 ping-pong with a 2 x 1 cluster, ncu NOTES v17).
        setmaxnreg_inc<232>();
        const int cw = wg - 1;
        const int lane = tid & 31, warp = (tid >> 5) & 3;
        const int g = lane >> 2, tq = lane & 3;
        const uint32_t ring_a = smem_u32(ring);
        uint32_t yq = 0;
        int32_t acc0[BX / 2], acc1[BX / 2];
#pragma unroll
        for (int i = 0; i < BX / 2; ++i) acc0[i] = 0, acc1[i] = 0;
        const int nunits = ufirst < utotal ? (utotal - 1 - ufirst) / ustride + 1 : 0;
        // Release of a consumed slot: one arrive per warp on the slot's empty barrier.
        auto release = [&](int slot) {
            if (lane == 0) mbar_arrive(&empty[slot]);
        };
        for (int i = cw; i < nunits; i += 2) {
            int nb, mb;
            unit_tile(ufirst + i * ustride, nb, mb);
            if (i > 0) asm volatile("bar.sync %0, 256;\n" ::"r"(cw == 0 ? 6 : 5) : "memory");  // the other's turn ended
            const int pos = i * ksteps;
            int s = pos % S;
            uint32_t phase = (pos / S) & 1;
            int prev = -1;
            for (int ks = 0; ks < ksteps; ++ks) {
                mbar_wait(&full[s], phase);
                const uint32_t wa = ring_a + s * G::kSlot;
                const uint32_t xa = wa + kWStage;
                wgmma_fence();
                wgmma_fence_regs_s32(acc0);
                wgmma_fence_regs_s32(acc1);
#pragma unroll
                for (int j = 0; j < kBK / 32; ++j) {
                    const uint64_t db = desc_sw128(xa + 32 * j);
                    const uint64_t da = desc_plain(wa + 2 * j * kBW * 16, kBW * 16, 128);
                    wgmma_ss_s8<BX>(acc0, da, db, ks != 0 || j != 0);
                    const uint64_t da1 = desc_plain(wa + 1024 + 2 * j * kBW * 16, kBW * 16, 128);  // rows 64-127
                    wgmma_ss_s8<BX>(acc1, da1, db, ks != 0 || j != 0);
                }
                wgmma_commit();
                wgmma_fence_regs_s32(acc0);
                wgmma_fence_regs_s32(acc1);
                wgmma_wait<1>();
                if (prev >= 0) release(prev);
                prev = s;
                if (++s == S) s = 0, phase ^= 1;
            }
            // The other warpgroup's turn (its next unit exists): its stages follow in ring order.
            if (i + 1 < nunits) asm volatile("bar.arrive %0, 256;\n" ::"r"(cw == 0 ? 5 : 6) : "memory");
            const int nr = nb * kBW + warp * 16 + g;
            EpiVec<BX> ev;
            epi_prefetch<BX>(p, ev, mb * BX, nr, lane);
            wgmma_wait<0>();
            wgmma_fence_regs_s32(acc0);
            wgmma_fence_regs_s32(acc1);
            release(prev);
            if (skip_epi) continue;
            unsigned char* ebuf = ring + S * G::kSlot + G::kExp + cw * 2 * G::kEpiBuf;
            // Weight rows 0-63 (acc0), then 64-127 (acc1; its column vectors loaded after the first half).
            auto half = [&](const int32_t(&acc)[BX / 2], int h) {
                if (ystore) {
                    if (p.epi.out == i8::kOutF16) {
                        epilogue_tma<BX, i8::kOutF16>(p, acc, ev, mb * BX, nb * kBW + 64 * h, tq, g, warp, cw, ebuf,
                                                      &ymap, yq);
                    } else {
                        epilogue_tma<BX, i8::kOutBf16>(p, acc, ev, mb * BX, nb * kBW + 64 * h, tq, g, warp, cw, ebuf,
                                                       &ymap, yq);
                    }
                } else {
                    epilogue<BX>(p, acc, ev, mb * BX, nr + 64 * h, tq);
                }
            };
            half(acc0, 0);
            epi_prefetch<BX>(p, ev, mb * BX, nr + 64, lane);
            half(acc1, 1);
        }
        if (ystore && (tid & 127) == 0) tma::bulk_wait_group<0>();
    } else {
        // ------------------------------- consumers -------------------------------
        setmaxnreg_inc<232>();
        const int cw = wg - 1;  // consumer warpgroup: weight rows 64 cw .. 64 cw + 63 of the tile
        const int lane = tid & 31, warp = (tid >> 5) & 3;
        const int g = lane >> 2, tq = lane & 3;
        const uint32_t ring_a = smem_u32(ring);
        int s = 0;
        uint32_t phase = 0;
        uint32_t yq = 0;  // TMA-store epilogue: chunks issued by this warpgroup (staging buffer yq & 1)
        bool stagger = lag > 0 && lag < S && !p.ws;  // v17: first unit only
        // The tile's first wgmma overwrites the accumulators (scale-d = 0): zeroing them with ordinary instructions
        // at each tile start made ptxas serialize every wgmma of the W4 instances (C7515; v11).
        int32_t acc[BX / 2];
#pragma unroll
        for (int i = 0; i < BX / 2; ++i) acc[i] = 0;
        // W4: this lane's weight rows of the tile (tile-relative row0 + g, + 8) and two sets of group scales, one
        // per stage parity (v11): set A serves the even stages of a tile, set B the odd ones, and each is reloaded
        // right after use for the next stage of its parity, so the L2 latency of the scale loads has two stage
        // times to hide instead of one (v9 loaded one stage ahead and stalled at BX <= 128).
        const int row0 = cw * 64 + warp * 16;
        uint32_t sca[kBK / 32][2], scb[kBK / 32][2];
        const int glog = (p.group_len & (p.group_len - 1)) == 0 ? __ffs(p.group_len) - 1 : -1;
        // Per-channel W4 (p.gs == nullptr, with flags bit 1, v14): every scale is 1, set once here; no scale loads
        // in the loop (without bit 1: v13's per-stage w4_scales calls, kept for the harness's comparison).
        const bool lscale = W4 && !sscale && (p.gs != nullptr || !(flags & 2));
        if (W4 && !sscale) {
            int nb0 = 0, mb0 = 0, k00 = 0;
            if (blockIdx.x < total) {
                const int t0 = blockIdx.x / splits;
                tiles.at(t0, nb0, mb0);
                k00 = (blockIdx.x - t0 * splits) * sps;
            }
            w4_scales(p, nb0 * kBW + row0 + g, k00, glog, sca);
            // Stage k0 + 1: all 1 past K (columns >= K), never used then.
            w4_scales(p, nb0 * kBW + row0 + g, k00 + 1, glog, scb);
        }
        for (int u = blockIdx.x; u < total; u += gridDim.x) {
            const int t = u / splits, k0 = (u - t * splits) * sps, k1 = min(ksteps, k0 + sps);
            int nb, mb;
            tiles.at(t, nb, mb);
            int nb_next = nb, k0_next = 0;
            if constexpr (W4) {
                int mb_next = 0;
                if (u + int(gridDim.x) < total) {
                    const int tn = (u + int(gridDim.x)) / splits;
                    tiles.at(tn, nb_next, mb_next);
                    k0_next = (u + int(gridDim.x) - tn * splits) * sps;
                }
            }
            int prev = -1;
            // One stage into A-register buffer ab with the scale set sc of its parity (W4 only; unused for W8).
            auto step = [&](int ks, uint32_t (&ab)[kBK / 32][4], uint32_t (&sc)[kBK / 32][2]) {
                mbar_wait(&full[s], phase);
                const uint32_t wa = ring_a + s * G::kSlot;
                const uint32_t xa = wa + kWStage;
                if constexpr (W4) {
                    const unsigned char* raw = ring + s * G::kSlot;
                    if (sscale) {  // this stage's scales of rows row0 + g, row0 + g + 8 from the ring (v13)
                        const uint32_t s0 = scl[s * kBW + row0 + g], s1 = scl[s * kBW + row0 + g + 8];
#pragma unroll
                        for (int j = 0; j < kBK / 32; ++j) sc[j][0] = s0, sc[j][1] = s1;
                    }
#pragma unroll
                    for (int j = 0; j < kBK / 32; ++j) {
                        const uint32_t w0 = *reinterpret_cast<const uint32_t*>(raw + i8::cm_off(row0 + g, j, kBW) + 4 * tq);
                        const uint32_t w1 =
                            *reinterpret_cast<const uint32_t*>(raw + i8::cm_off(row0 + g + 8, j, kBW) + 4 * tq);
                        i8::expand_w4(w0, sc[j][0], i8::w4_offset(sc[j][0]), ab[j][0], ab[j][2]);
                        i8::expand_w4(w1, sc[j][1], i8::w4_offset(sc[j][1]), ab[j][1], ab[j][3]);
                    }
                    // The next stage of this parity: ks + 2 of this tile, else stage ks & 1 of this CTA's next tile
                    // (the loop below restarts at an even stage on every tile; an odd stage exists only if
                    // ksteps > 1, so stage 1 of the next tile does too).
                    if (lscale) {
                        if (ks + 2 < k1) {
                            w4_scales(p, nb * kBW + row0 + g, ks + 2, glog, sc);
                        } else {
                            w4_scales(p, nb_next * kBW + row0 + g, k0_next + ((ks - k0) & 1), glog, sc);
                        }
                    }
                    if constexpr (W4S) {
                        // Write the expanded 64 x 128 int8 block of this warpgroup (core-matrix order, 64 rows:
                        // chunk c of row r at c * 1024 + (r / 8) * 128 + (r % 8) * 16) into buffer ks & 1, make the
                        // generic-proxy writes visible to wgmma (async proxy) and sync the warpgroup.
                        unsigned char* eb = ring + S * G::kSlot + (cw * 2 + (ks & 1)) * 64 * kBK;
                        const int r = warp * 16 + g;
#pragma unroll
                        for (int j = 0; j < kBK / 32; ++j) {
                            *reinterpret_cast<uint32_t*>(eb + i8::cm_off(r, 2 * j, 64) + 4 * tq) = ab[j][0];
                            *reinterpret_cast<uint32_t*>(eb + i8::cm_off(r + 8, 2 * j, 64) + 4 * tq) = ab[j][1];
                            *reinterpret_cast<uint32_t*>(eb + i8::cm_off(r, 2 * j + 1, 64) + 4 * tq) = ab[j][2];
                            *reinterpret_cast<uint32_t*>(eb + i8::cm_off(r + 8, 2 * j + 1, 64) + 4 * tq) = ab[j][3];
                        }
                        asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                        asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
                    }
                    // Pin the A registers before the warpgroup arrive so no expansion instruction lands between
                    // the wgmmas (ptxas would serialize them, C7513).
#pragma unroll
                    for (int j = 0; j < kBK / 32; ++j)
                        asm volatile("" : "+r"(ab[j][0]), "+r"(ab[j][1]), "+r"(ab[j][2]), "+r"(ab[j][3]));
                }
                wgmma_fence();
                wgmma_fence_regs_s32(acc);
#pragma unroll
                for (int j = 0; j < kBK / 32; ++j) {
                    const uint64_t db = desc_sw128(xa + 32 * j);
                    if constexpr (W4S) {
                        const uint32_t ea = ring_a + S * G::kSlot + (cw * 2 + (ks & 1)) * 64 * kBK;
                        wgmma_ss_s8<BX>(acc, desc_plain(ea + 2 * j * 1024, 1024, 128), db, ks != k0 || j != 0);
                    } else if constexpr (W4) {
                        wgmma_rs_s8<BX>(acc, ab[j], db, ks != k0 || j != 0);
                    } else {
                        // A: chunks 2j, 2j + 1 of this warpgroup's 64 rows (core-matrix order, LBO 2048, SBO 128).
                        const uint64_t da = desc_plain(wa + cw * 1024 + 2 * j * kBW * 16, kBW * 16, 128);
                        wgmma_ss_s8<BX>(acc, da, db, ks != k0 || j != 0);
                    }
                }
                wgmma_commit();
                wgmma_fence_regs_s32(acc);
                wgmma_wait<1>();
                // The group of the previous stage has completed: its slot (and A buffer) may be reused.
                if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
                prev = s;
                if (++s == S) s = 0, phase ^= 1;
            };
            if constexpr (W4) {
                uint32_t ab0[kBK / 32][4], ab1[kBK / 32][4];
                for (int ks = k0; ks < k1; ks += 2) {
                    step(ks, ab0, sca);
                    if (ks + 1 < k1) step(ks + 1, ab1, scb);
                }
            } else {
                uint32_t unused[kBK / 32][4];
                if (stagger) {
                    // v17: warpgroup 0 lets warpgroup 1 start after its first `lag` stages (or its whole first unit
                    // if shorter; lag < ring depth, so warpgroup 0 never waits on a slot warpgroup 1 must release).
                    if (cw == 1) {
                        asm volatile("bar.sync 4, 256;\n" ::: "memory");
                    }
                    for (int ks = k0; ks < k1; ++ks) {
                        step(ks, unused, sca);
                        if (cw == 0 && (ks - k0 + 1 == lag || ks + 1 == k1) && stagger) {
                            asm volatile("bar.arrive 4, 256;\n" ::: "memory");
                            stagger = false;
                        }
                    }
                    stagger = false;
                } else {
                    for (int ks = k0; ks < k1; ++ks) step(ks, unused, sca);
                }
            }
            // The epilogue's vectors are loaded while the last stage's wgmmas still run (their latency hides).
            const int nr = nb * kBW + cw * 64 + warp * 16 + g;
            EpiVec<BX> ev;
            epi_prefetch<BX>(p, ev, mb * BX, nr, lane);
            wgmma_wait<0>();
            wgmma_fence_regs_s32(acc);
            if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
            if (splits > 1 && csplit) {
                // v20: the tile's slices are this cluster's CTAs (rank = slice); reduce through DSMEM, no workspace.
                // One unit per CTA in this mode: `break` (not `continue`) ends the accumulators' live range here, so
                // the reduction's registers do not add to theirs (with `continue` the BX = 256 instances spilled).
                if (skip_epi) {
                    cluster_sync();
                    cluster_sync();
                    break;
                }
                unsigned char* ebuf = ring + S * G::kSlot + G::kExp + cw * 2 * G::kEpiBuf;
                csplit_finish<BX>(p, acc, ring, splits, mb * BX, nb * kBW + cw * 64, tid - 128, tq, g, warp, lane, cw,
                                  ystore, ebuf, &ymap, yq);
                break;
            }
            if (splits > 1) {
                // Split-K (v14): add this slice's partial sums into the tile's int32 slab of the workspace (element
                // j of consumer thread ct at j * 256 + ct: one coalesced 128-byte red per warp instruction), then
                // count the arrival; the last slice of the tile to arrive takes the sums back (and zeroes the slab
                // and the counter for the next call: the workspace is zero before the first call) and runs the
                // epilogue. Everyone else goes on to its next unit.
                // Accumulator j holds activation row mb * BX + 8 (j / 4) + 2 tq + (j & 1): n8 blocks that start at or
                // past M carry only rows the epilogue drops, so they are neither added nor read back (v15: at M = 16
                // on BX = 64 tiles 3/4 of the slab; those slab words stay zero).
                const int ct = tid - 128, mrem = p.m - mb * BX;
                int32_t* slab = p.ws + size_t(t) * (BX * kBW);
                if (bulkred) {
                    // v16 (flags bit 2): the slab leaves through shared memory and the copy engine's bulk reduction
                    // (cp.reduce.async.bulk .add.s32: whole 128-byte lines added in the L2) instead of BX / 2
                    // red.global per thread (v15: ~3.4 GB/s per SM). The 32 KB TMA-store staging holds two 16 KB
                    // chunks of 16 accumulators per thread (slab order: element j of thread ct at j * 256 + ct, so a
                    // chunk is one contiguous 16 KB range of the slab and the stores are bank-conflict free); thread
                    // ct 0 issues each chunk's reduction and waits for the chunk before the previous one to be read
                    // before its buffer is rewritten. nv = accumulators of n8 blocks that start below M (v15's skip:
                    // a prefix of j). Before the staging is first written, each warpgroup's TMA-store leader waits
                    // for its epilogue stores to have read it.
                    constexpr int kJ = 16;
                    const int nv = min(BX / 2, 4 * ((mrem + 7) >> 3));
                    int32_t* const stage = reinterpret_cast<int32_t*>(ring + S * G::kSlot + G::kExp);
                    if ((tid & 127) == 0) tma::bulk_wait_group_read<0>();
#pragma unroll
                    for (int c = 0; c < BX / 2 / kJ; ++c) {
                        if (kJ * c >= nv) break;
                        int32_t* const buf = stage + (c & 1) * (kJ * 256);
                        if (c >= 2 && ct == 0) tma::bulk_wait_group_read<1>();
                        asm volatile("bar.sync 3, 256;\n" ::: "memory");
#pragma unroll
                        for (int jj = 0; jj < kJ; ++jj) buf[jj * 256 + ct] = acc[kJ * c + jj];
                        tma::fence_proxy_async_shared();
                        asm volatile("bar.sync 3, 256;\n" ::: "memory");
                        if (ct == 0) {
                            const uint32_t bytes = uint32_t(min(kJ, nv - kJ * c)) * 1024u;
                            asm volatile(
                                "cp.reduce.async.bulk.global.shared::cta.bulk_group.add.s32 [%0], [%1], %2;\n" ::"l"(
                                    slab + kJ * c * 256),
                                "r"(smem_u32(buf)), "r"(bytes)
                                : "memory");
                            tma::bulk_commit_group();
                        }
                    }
                    if (ct == 0) {
                        // Every chunk's reduction complete (writes performed), ordered before the generic-proxy
                        // release of the arrival count.
                        tma::bulk_wait_group<0>();
                        asm volatile("fence.proxy.async.global;\n" ::: "memory");
                        __threadfence();
                        split_last = atomicAdd(p.counters + t, 1) == splits - 1;
                    }
                    asm volatile("bar.sync 3, 256;\n" ::: "memory");
                    if (!split_last) continue;
                    asm volatile("fence.proxy.async.global;\n" ::: "memory");
                } else {
#pragma unroll
                    for (int j = 0; j < BX / 2; ++j)
                        if (8 * (j >> 2) < mrem)
                            asm volatile("red.relaxed.gpu.global.add.s32 [%0], %1;\n" ::"l"(slab + j * 256 + ct),
                                         "r"(acc[j])
                                         : "memory");
                    __threadfence();
                    asm volatile("bar.sync 3, 256;\n" ::: "memory");
                    if (ct == 0) split_last = atomicAdd(p.counters + t, 1) == splits - 1;
                    asm volatile("bar.sync 3, 256;\n" ::: "memory");
                    if (!split_last) continue;
                }
                __threadfence();
#pragma unroll
                for (int j = 0; j < BX / 2; ++j) {
                    if (8 * (j >> 2) < mrem) {
                        acc[j] = __ldcg(slab + j * 256 + ct);
                        __stcg(slab + j * 256 + ct, 0);
                    }
                }
                if (ct == 0) p.counters[t] = 0;
            }
            if (skip_epi) continue;
            if (ystore) {
                unsigned char* ebuf = ring + S * G::kSlot + G::kExp + cw * 2 * G::kEpiBuf;
                if (p.epi.out == i8::kOutF16) {
                    epilogue_tma<BX, i8::kOutF16>(p, acc, ev, mb * BX, nb * kBW + cw * 64, tq, g, warp, cw, ebuf,
                                                  &ymap, yq);
                } else {
                    epilogue_tma<BX, i8::kOutBf16>(p, acc, ev, mb * BX, nb * kBW + cw * 64, tq, g, warp, cw, ebuf,
                                                   &ymap, yq);
                }
            } else {
                epilogue<BX>(p, acc, ev, mb * BX, nr, tq);
            }
        }
        // The staging buffers must stay valid until the copy engine has read them (the global writes complete
        // before the grid does).
        if (ystore && (tid & 127) == 0) tma::bulk_wait_group<0>();
    }
#endif
#endif
}

template <int BX, bool W4 = false, bool W4S = false, bool PP = false, bool PDL = false>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws_kernel<BX, W4, W4S, PP, PDL>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

}  // namespace i8ws
}  // namespace lowbit
