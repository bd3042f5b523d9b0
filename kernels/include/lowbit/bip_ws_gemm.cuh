// lowbit/bip_ws_gemm.cuh: warp-specialized persistent bipolar plane GEMM for large M (BGMMA, sm_90a).
//
// Problem and arithmetic: exactly lowbit/bip_gemm.cuh's (same Args, same correction and epilogue code):
//   T[m, n] = sum_ij 2^(i+j) popc(X_i[m] AND W_j[n]) per plane pair on wgmma m64nNk256 .s32.b1.b1.and.popc,
//   Y_int = 4 T - (2^Q - 1) S_x[m] - (2^P - 1) S_w[n] - K (2^P - 1)(2^Q - 1) modulo 2^32, then the epilogue.
//
// Structure (mirrors lowbit/i8_ws_gemm.cuh): CTA = 3 warpgroups (384 threads), one CTA per SM, persistent.
//   warpgroup 0 = producer: one thread fills an S-slot ring (full / empty mbarrier per slot), setmaxnreg.dec 40;
//   warpgroups 1, 2 = consumers (setmaxnreg.inc 232): each owns 64 weight rows x BX activation rows of the
//     128 x BX output tile, with Q accumulator sets of R = P * BX columns (Q * R / 2 <= 128 registers).
//   Tiles in grouped rasterization (lowbit::i8ws::Tiles: `group` activation tiles, M-fastest inside a group);
//   CTA c takes tiles c, c + gridDim.x, ...
//   Variants (ws v3, kernels/bipolar/NOTES.md): SX = 1, the split-X tile (64 weight rows x 2 BX activation rows; both
//   consumers share the weight rows, each has its own BX activation rows: 48 instead of 72 KB per stage for Q = 4);
//   SX = 2 (ws v4, P = 1): the same tile and stage with the wgmma roles swapped (A = the warpgroup's activation rows,
//   B = the Q weight planes stacked as N = 64 Q): one wgmma per k-step, 10 instead of 16 KB of shared-memory reads
//   (exact, but 1-3% slower on an H100: off by default, LOWBIT_BIP_WS_SPLIT=2);
//   MC = 1 / 2, 2-CTA clusters multicasting half of the X / W stage each (exact; as fast as one CTA per SM once the
//   cluster arrives lost their GPU-scope fences, not faster: L2 does not bound the K loop, nor, ws v4 found, shared
//   memory bandwidth).
//   ws_pp_kernel (ws v5, below): ping-pong consumers, each warpgroup its own tile (W1A1: 128 x 128, the library
//   default for W1A1), K loops alternating under an ordered mbarrier pair so one's epilogue overlaps the other's BGMMAs;
//   since ws v7 the default for W2A4 / W2A2 / W2A1 / W1A2 as well. (ws v6's K-loop and ring variants, all measured
//   slower, were removed after ws v7; their code is in commit 0fa85a6, their numbers in NOTES.md ws v6.)
//
// A stage = 128 bytes of K (1024 bits) of every plane of both operands, loaded by TWO 3-D TMA copies straight
// from the lowbit-core plane layout (no repack): the weight map is (bytes, N rows, Q planes) with box
// (128, 128, Q), the activation map (bytes, M rows, P planes) with box (128, BX, P); both 128-byte swizzle,
// rows >= M / N and bytes beyond ceil(K / 128) * 16 zero-filled by the copy engine. In shared memory the box's
// planes land one after another, so the slot holds Q weight-plane tiles of 128 x 128 B (16 KB each) and the
// stacked X tile of R = P * BX rows x 128 B (plane i at rows i * BX ..), i.e. bip_gemm.cuh's stacking with
// 128-byte-swizzled K-major atoms (8 rows x 128 B = 1024 B, SBO 1024). A k256 step is 32 bytes inside the
// swizzle atom (the same byte geometry as wgmma s8 k32), so per stage and consumer: 4 k-steps x Q wgmmas
// m64nRk256 (A = weight plane j, rows 64 cw.., B = the stacked X tile). The AND-popcount is invariant under any
// k permutation applied to both operands alike; both maps apply the same swizzle, so the order agrees.
// After the K loop: recovery sum_ij 2^(i+j) in registers (as bip_gemm.cuh), correction and epilogue with the
// tile's row vectors from shared memory (RowVecs); meanwhile the producer already streams the next tile's stages.
// f16 / bf16 output (ws v2, when the launcher could build the output tensor map) goes through a shared staging
// buffer and TMA tensor stores (store_tile_tma) that drain while the consumers run the next tile's K loop; other
// outputs as direct global stores (store_tile_ws; f16 / bf16 as 4-byte pairs).
//
// Limits: sm_90a; no split-K (large M); X / W planes 16-byte aligned with ld and plane_stride multiples of 4
// words (TMA strides multiples of 16 bytes; checked by the launcher as for the synchronous kernel);
// slot = Q * 16 KB + P * BX * 128 B with at least 3 slots next to the output staging buffer in 227 KB (Q <= 4);
// TMA-store output: ldy and N multiples of 8 elements, y 16-byte aligned (else the direct stores).
#pragma once

#include <cuda.h>
#include <stdint.h>

#include "lowbit/bip_gemm.cuh"
#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/tma.cuh"
#include "lowbit/wgmma_s8.cuh"

namespace lowbit {
namespace bipws {

using bip::Args;
using bip::kBW;

constexpr int kThreads = 384;
constexpr int kStageBytes = 128;  // K bytes per stage (1024 bits): one 128-byte swizzle row

// Row vectors of a tile in shared memory (per consumer warpgroup): the correction's S_x[m] and the epilogue's
// row scale and row correction. Loaded from global memory before the K loop (latency hidden behind it) and
// stored here after it, so the epilogue's stores never wait on a global load (with stores to y in between,
// the compiler cannot hoist loads of the row vectors, and 64 dependent L2 round trips per thread made the
// epilogue of a 128 x 256 tile cost more than its BGMMA work; NOTES.md ws v1).
template <int BX>
struct RowVecs {
    uint32_t sx[BX];
    float rs[BX], rc[BX];
};

// One consumer thread's share of a tile's row vectors in registers (rows ct + 128 r of the tile), loaded before the
// K loop (load_rows) and stored into the warpgroup's RowVecs after it (stash_rows); rows >= BX or >= M read 0.
template <int BX>
struct RowRegs {
    static constexpr int kRPT = (BX + 127) / 128;  // tile rows per thread
    uint32_t sx[kRPT];
    float rs[kRPT], rc[kRPT];
};

template <int BX>
__device__ __forceinline__ RowRegs<BX> load_rows(const Args& p, int m0, int ct) {
    RowRegs<BX> v;
#pragma unroll
    for (int r = 0; r < RowRegs<BX>::kRPT; ++r) {
        const int m = m0 + ct + 128 * r;
        const bool ok = ct + 128 * r < BX && m < p.m;
        v.sx[r] = ok ? uint32_t(__ldg(p.sx + m)) : 0u;
        v.rs[r] = p.epi.rs ? (ok ? __ldg(p.epi.rs + m) : 0.f) : p.epi.rs_val;
        v.rc[r] = p.epi.rc && ok ? __ldg(p.epi.rc + m) : 0.f;
    }
    return v;
}

template <int BX>
__device__ __forceinline__ void stash_rows(RowVecs<BX>& rv, const RowRegs<BX>& v, int ct) {
#pragma unroll
    for (int r = 0; r < RowRegs<BX>::kRPT; ++r) {
        if (ct + 128 * r < BX) {
            rv.sx[ct + 128 * r] = v.sx[r];
            rv.rs[ct + 128 * r] = v.rs[r];
            rv.rc[ct + 128 * r] = v.rc[r];
        }
    }
}

// Shared-memory plan (ws v2): the ring of S slots plus the output staging buffer of the TMA-store epilogue
// (store_tile_tma): per consumer warpgroup OR rows x 128 bytes (its 64 f16 / bf16 columns of OR activation rows),
// written by stmatrix, stored by one TMA tensor store per pass, BX / OR passes per tile. Whole-tile staging
// (OR = BX) lets the stores of tile i drain under the K loop of tile i + 1 with no wait in the epilogue; it is
// kept while it leaves at least kMinSlots ring slots, otherwise OR halves. The CTA limit is 227 KB (232448 B)
// including the static barriers and RowVecs and the 1 KB alignment slack of the dynamic region.
#ifndef LOWBIT_BIP_WS_MIN_SLOTS
#define LOWBIT_BIP_WS_MIN_SLOTS 3  // micro-harness experiment: 4 = more ring slots, staging in smaller passes
#endif
constexpr int kMinSlots = LOWBIT_BIP_WS_MIN_SLOTS;
constexpr int kSmemLimit = 232448;

constexpr int ring_slots(int avail, int slot) { return avail / slot > 8 ? 8 : avail / slot; }

// Staging rows per consumer and pass: the largest OR = BX / 2^i (OR >= 8) that leaves `want` slots, else 0.
constexpr int out_rows_for(int avail, int slot, int bx, int want) {
    return bx < 8 ? 0 : ring_slots(avail - 2 * bx * kStageBytes, slot) >= want ? bx : out_rows_for(avail, slot, bx / 2, want);
}

// SX (ws v3, split X): the CTA tile is 64 weight rows x 2 BX activation rows instead of 128 x BX; both consumer
// warpgroups multiply the same 64 weight rows, each with its own BX activation rows (its own stacked X half). Same
// accumulators and epilogue per warpgroup, but the stage holds Q * 8 KB of weights + 2 * P * BX * 128 B of
// activations: for Q = 4 (W4A1, W4A2) 48 KB instead of 72 KB per 1024 bits for the same binary ops (the
// weight-plane side, 4 planes, is the one the two warpgroups now share).
template <int P, int Q, int BX, int SX = 0>
struct Geo {
    static constexpr int kR = P * BX;                        // stacked X rows (per consumer warpgroup)
    static constexpr int kTW = SX ? kBW / 2 : kBW;           // weight rows per CTA tile
    static constexpr int kTX = SX ? 2 * BX : BX;             // activation rows per CTA tile
    static constexpr int kWPlane = kTW * kStageBytes;        // 16 KB (8 KB split) per weight plane
    static constexpr int kWStage = Q * kWPlane;
    static constexpr int kXHalf = kR * kStageBytes;          // one warpgroup's stacked X tile
    static constexpr int kXStage = (SX ? 2 : 1) * kXHalf;
    static constexpr int kSlot = kWStage + kXStage;          // multiple of 1024 (BX % 8 == 0)
    // dynamic bytes left after the static ones (barriers of up to 8 slots, RowVecs x 2) and the alignment slack
    static constexpr int kAvail = kSmemLimit - 1024 - 2 * 8 * 8 - 2 * int(sizeof(RowVecs<BX>)) - 256;
    static constexpr int kOutRowsPref = out_rows_for(kAvail, kSlot, BX, kMinSlots);
    static constexpr int kOutRows = kOutRowsPref ? kOutRowsPref : out_rows_for(kAvail, kSlot, BX, 3);
    static constexpr int kOutBytes = kOutRows * kStageBytes;  // per consumer warpgroup (1024-byte multiple)
    static constexpr int kStages = ring_slots(kAvail - 2 * kOutBytes, kSlot);
    static constexpr int kSmem = kStages * kSlot + 2 * kOutBytes + 1024;  // + alignment slack (swizzle atoms)
    static_assert(kOutRows >= 8 && BX % kOutRows == 0, "no room for the output staging buffer");
};

template <int OUT>
__device__ __forceinline__ uint32_t to_b16(float v) {
    if constexpr (OUT == i8::kOutF16) {
        return __half_as_ushort(__float2half_rn(v));
    } else {
        return __bfloat16_as_ushort(__float2bfloat16_rn(v));
    }
}

// Y_int and the epilogue of one consumer thread's outputs: t[4 ii + 2 r + h] = T of (weight row nr + 8 r,
// activation row m0 + 8 ii + 2 tq + h). Arithmetic = bip::store_one's (= the int8 core's epi_value, bit for bit);
// f16 / bf16 with an even row pitch leave as 4-byte column pairs (one shuffle between lanes g and g ^ 1, as
// lowbit/i8_ws_gemm.cuh's epilogue).
// Code size: a fully unrolled 128-output body is ~40 KB of straight-line code per output type, fetched cold once
// per tile (ws v1b: ~6 us per 128 x 256 tile, as long as the tile's BGMMA work). So the rows run in a rolled loop
// of chunks of CH row groups; t is consumed from its front and shifted down after each chunk (register moves:
// every index stays a compile-time constant, no local memory). t is clobbered.
template <int P, int Q, int BX, int OUT>
__device__ __forceinline__ void store_tile_ws(const Args& p, int32_t (&t)[P * BX / 2], int m0, int nr, int tq,
                                              const RowVecs<BX>& rv) {
    constexpr int CH = BX / 8 >= 4 ? 4 : BX / 8;  // row groups (8 rows) per chunk
    constexpr int NCH = BX / 8 / CH;
    constexpr int NT = BX / 2;                     // T values of this thread
    constexpr uint32_t A = (1u << P) - 1, B = (1u << Q) - 1;
    const uint32_t kab = uint32_t(p.k) * A * B;
    const i8::Epilogue& e = p.epi;
    uint32_t csw[2];
    float cs[2], cc[2], bs[2], os[2];
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int n = nr + 8 * r;
        const int nn = n < p.n ? n : 0;
        csw[r] = A * uint32_t(__ldg(p.sw + nn)) + kab;
        cs[r] = e.cs ? __ldg(e.cs + nn) : 1.f;
        cc[r] = e.cc ? __ldg(e.cc + nn) : 0.f;
        bs[r] = e.bias ? __ldg(e.bias + nn) : 0.f;
        os[r] = OUT == i8::kOutI8 && e.os ? __ldg(e.os + nn) : e.out_scale;
    }
    const bool pairs = (OUT == i8::kOutF16 || OUT == i8::kOutBf16) && p.ldy % 2 == 0 &&
                       (reinterpret_cast<uintptr_t>(p.y) & 3) == 0;
    const bool odd = nr & 1;  // nr = tile base (multiple of 16) + g
#ifdef LOWBIT_BIP_WS_SECTOR_STORES
    // Experiment (micro harness only, NOTES.md ws v1c): whole 32-byte output sectors per store. The 4 lanes of a
    // quad (same tq, g = 4a + k) hold columns 4a + k and 4a + k + 8 of rows ma, ma + 1; a 4 x 4 transpose (three
    // shuffles) gives lane k the 4 consecutive columns 4a .. 4a + 3 (+ 8 (k >> 1)) of row ma + (k & 1): one
    // 8-byte store per lane and row group, 8 rows x 32 bytes per warp instruction.
    const bool sector = (OUT == i8::kOutF16 || OUT == i8::kOutBf16) && p.ldy % 4 == 0 &&
                        (reinterpret_cast<uintptr_t>(p.y) & 7) == 0;
    const int qk = (nr & 7) & 3, qa = (nr & 7) >> 2;  // g = 4 qa + qk
#endif
#pragma unroll 1
    for (int c = 0; c < NCH; ++c) {
#pragma unroll
    for (int i4 = 0; i4 < CH; ++i4) {
        const int ii = i4;  // index into the shifted t
        const int la = 8 * (c * CH + i4) + 2 * tq;  // tile rows la (h = 0), la + 1 (h = 1)
        const int ma = m0 + la;
#ifdef LOWBIT_BIP_WS_SECTOR_STORES
        if constexpr (OUT == i8::kOutF16 || OUT == i8::kOutBf16) {
            if (sector) {
                uint32_t b[4];  // b[2 r + h]
#pragma unroll
                for (int r = 0; r < 2; ++r)
#pragma unroll
                    for (int h = 0; h < 2; ++h) {
                        const int32_t yv =
                            int32_t(4u * uint32_t(t[4 * ii + 2 * r + h]) - B * rv.sx[la + h] - csw[r]);
                        float v = __fmul_rn(__int2float_rn(yv), rv.rs[la + h]);
                        if (e.cs) v = __fmul_rn(v, cs[r]);
                        if (e.rc) v = __fmaf_rn(rv.rc[la + h], cc[r], v);
                        if (e.bias) v = __fadd_rn(v, bs[r]);
                        b[2 * r + h] = to_b16<OUT>(v);
                    }
                uint32_t o[4] = {b[0], b[1], b[2], b[3]};  // o[qk] = own b[qk]; the others come from the quad
#pragma unroll
                for (int d = 1; d < 4; ++d) {
                    const int want = qk ^ d;  // the partner lane's index, and the value it needs from us
                    const uint32_t send = want == 0 ? b[0] : want == 1 ? b[1] : want == 2 ? b[2] : b[3];
                    const uint32_t got = __shfl_xor_sync(0xffffffffu, send, 4 * d);
                    if (want == 0) o[0] = got;
                    if (want == 1) o[1] = got;
                    if (want == 2) o[2] = got;
                    if (want == 3) o[3] = got;
                }
                const int m = ma + (qk & 1);
                const int c0 = (nr - (nr & 7)) + 8 * (qk >> 1) + 4 * qa;
                if (m < p.m) {
                    uint16_t* at = static_cast<uint16_t*>(p.y) + size_t(m) * p.ldy + c0;
                    if (c0 + 3 < p.n) {
                        *reinterpret_cast<uint2*>(at) = make_uint2(o[0] | (o[1] << 16), o[2] | (o[3] << 16));
                    } else {
#pragma unroll
                        for (int j = 0; j < 4; ++j)
                            if (c0 + j < p.n) at[j] = uint16_t(o[j]);
                    }
                }
                continue;
            }
        }
#endif
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            const int n = nr + 8 * r;
            int32_t yi[2];
            float v[2];
#pragma unroll
            for (int h = 0; h < 2; ++h) {
                yi[h] = int32_t(4u * uint32_t(t[4 * ii + 2 * r + h]) - B * rv.sx[la + h] - csw[r]);
                v[h] = __fmul_rn(__int2float_rn(yi[h]), rv.rs[la + h]);
                if (e.cs) v[h] = __fmul_rn(v[h], cs[r]);
                if (e.rc) v[h] = __fmaf_rn(rv.rc[la + h], cc[r], v[h]);
                if (e.bias) v[h] = __fadd_rn(v[h], bs[r]);
            }
            if constexpr (OUT == i8::kOutI32 || OUT == i8::kOutI8) {
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int m = ma + h;
                    if (m < p.m && n < p.n) {
                        if constexpr (OUT == i8::kOutI32) {
                            static_cast<int32_t*>(p.y)[size_t(m) * p.ldy + n] = yi[h];
                        } else {
                            const float q = fminf(fmaxf(rintf(__fdiv_rn(v[h], os[r])), -128.f), 127.f);
                            static_cast<int8_t*>(p.y)[size_t(m) * p.ldy + n] = static_cast<int8_t>(q);
                        }
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
    if (NCH > 1) {
#pragma unroll
        for (int i = 0; i + 4 * CH < NT; ++i) t[i] = t[i + 4 * CH];
    }
    }
}

__device__ __forceinline__ void stmatrix_x4_trans(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.trans.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0),
                 "r"(r1), "r"(r2), "r"(r3)
                 : "memory");
}

__device__ __forceinline__ void stmatrix_x4(uint32_t addr, uint32_t r0, uint32_t r1, uint32_t r2, uint32_t r3) {
    asm volatile("stmatrix.sync.aligned.m8n8.x4.shared.b16 [%0], {%1, %2, %3, %4};\n" ::"r"(addr), "r"(r0), "r"(r1),
                 "r"(r2), "r"(r3)
                 : "memory");
}

__device__ __forceinline__ void consumer_bar(int cw) { asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory"); }

// ws v2 epilogue for f16 / bf16 (ws v1's store_tile_ws stays for int8 / int32 and for outputs the TMA cannot
// address): the consumer warpgroup's 64 output columns x BX rows go through a shared-memory staging buffer `ob`
// (OR rows x 128 bytes, 128-byte swizzle: 16-byte chunk j of row m at chunk j ^ (m & 7)) and leave by one TMA
// tensor store per pass of OR rows, issued by thread 0 of the warpgroup; the consumers go on to the next tile while
// the copy engine writes (the stores overlap the next K loop). Values: the same arithmetic as store_tile_ws, bit for
// bit. Layout: thread (warp, g, tq) holds T of weight rows n = 16 warp + g + 8 r, activation rows 8 ii + 2 tq + h,
// i.e. for each (ii, r) the mma accumulator fragment of an 8 x 8 block transposed: stmatrix .trans writes it as 8
// activation rows of 8 consecutive columns (16 bytes). One stmatrix.x4 per pair of row groups: matrices (ii, r=0),
// (ii, r=1), (ii+1, r=0), (ii+1, r=1); lanes 8k .. 8k+7 give the row addresses of matrix k. The 8 rows of one
// matrix hit 8 distinct 16-byte chunks of the swizzle: no bank conflicts. Rows >= M and columns >= N are clipped
// by the TMA store. Thread 0 of the warpgroup waits for the staging buffer's previous store to have been read
// before it is written again (bulk_wait_group_read) and at kernel end for all of them. t is read, not clobbered.
// The column vectors of one thread's two weight rows nr, nr + 8 (loaded before the K loop, so that their L2
// latency is hidden behind it rather than exposed at the start of the epilogue).
struct ColVals {
    uint32_t csw[2];  // (2^P - 1) S_w[n] + K (2^P - 1)(2^Q - 1)
    float cs[2], cc[2], bs[2];
};

template <int P, int Q>
__device__ __forceinline__ ColVals load_cols(const Args& p, int nr) {
    constexpr uint32_t A = (1u << P) - 1, B = (1u << Q) - 1;
    const uint32_t kab = uint32_t(p.k) * A * B;
    const i8::Epilogue& e = p.epi;
    ColVals c;
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int n = nr + 8 * r;
        const int nn = n < p.n ? n : 0;
        c.csw[r] = A * uint32_t(__ldg(p.sw + nn)) + kab;
        c.cs[r] = e.cs ? __ldg(e.cs + nn) : 1.f;
        c.cc[r] = e.cc ? __ldg(e.cc + nn) : 0.f;
        c.bs[r] = e.bias ? __ldg(e.bias + nn) : 0.f;
    }
    return c;
}

// FULL = false (ws v3): the epilogue has no row correction and no bias (the common case: row and column scales
// only); those terms are compiled out instead of predicated off (predicated FFMA / FADD / LDS still take issue slots:
// 25 of the 73 SASS instructions per 8 outputs of W1A1 did nothing). The column scale is always multiplied, by 1.0
// when there is none (load_cols), which is exact. Bit for bit the same values as FULL = true.
template <int P, int Q, int BX, int OR, int OUT, bool FULL = true>
__device__ __forceinline__ void store_tile_tma(const Args& p, const int32_t (&t)[P * BX / 2], const ColVals& cv,
                                               int tq, const RowVecs<BX>& rv, unsigned char* obuf,
                                               const CUtensorMap* ymap, int n0, int m0, int cw, int warp, int lane) {
    static_assert(OR % 16 == 0 && BX % OR == 0, "passes of whole stmatrix.x4 row pairs");
    const uint32_t ob = tma::smem_u32(obuf);
    constexpr uint32_t B = (1u << Q) - 1;
    const i8::Epilogue& e = p.epi;
    const uint32_t(&csw)[2] = cv.csw;
    const float(&cs)[2] = cv.cs;
    const float(&cc)[2] = cv.cc;
    const float(&bs)[2] = cv.bs;
    const int mk = lane >> 3, mi = lane & 7;  // stmatrix: matrix k, row i of this lane's address
    const uint32_t lane_off = uint32_t(((mk >> 1) * 8 + mi) * kStageBytes + (((2 * warp + (mk & 1)) ^ mi) << 4));
    const bool issuer = (threadIdx.x & 127) == 0;
    constexpr int NP = BX / OR;
#pragma unroll
    for (int pass = 0; pass < NP; ++pass) {
        if (pass > 0) {  // the previous pass's store must have left the staging buffer
            if (issuer) tma::bulk_wait_group_read<0>();
            consumer_bar(cw);
        }
#pragma unroll
        for (int u = 0; u < OR / 16; ++u) {
            uint32_t reg[4];
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int ii = pass * (OR / 8) + 2 * u + (k >> 1), r = k & 1;
                const int la = 8 * ii + 2 * tq;
                uint32_t b[2];
#pragma unroll
                for (int h = 0; h < 2; ++h) {
                    const int32_t yv = int32_t(4u * uint32_t(t[4 * ii + 2 * r + h]) - B * rv.sx[la + h] - csw[r]);
                    float v = __fmul_rn(__int2float_rn(yv), rv.rs[la + h]);
                    if constexpr (FULL) {
                        if (e.cs) v = __fmul_rn(v, cs[r]);
                        if (e.rc) v = __fmaf_rn(rv.rc[la + h], cc[r], v);
                        if (e.bias) v = __fadd_rn(v, bs[r]);
                    } else {
                        v = __fmul_rn(v, cs[r]);  // cs[r] = 1.0 without column scales
                    }
                    b[h] = to_b16<OUT>(v);
                }
                reg[k] = b[0] | (b[1] << 16);
            }
            stmatrix_x4_trans(ob + lane_off + uint32_t(u) * 2048u, reg[0], reg[1], reg[2], reg[3]);
        }
        tma::fence_proxy_async_shared();  // the generic-proxy writes -> visible to the TMA engine
        consumer_bar(cw);
        if (issuer) {
            tma::tma_2d_s2g(ymap, obuf, n0, m0 + pass * OR);
            tma::bulk_commit_group();
        }
    }
}

// ---------------------------------------------------------------------------------------------------
// SX = 2 (ws v4, "transposed split X", P = 1 only): the split-X tile with the wgmma roles swapped. Each consumer
// warpgroup multiplies A = its 64 activation rows (one plane, m64) by B = the Q weight planes of the shared 64 weight
// rows stacked as N = 64 Q rows: acc[4 (8 j + cc) + e] = popc of activation row 16 warp + g + 8 (e >> 1) and weight
// row 8 cc + 2 tq + (e & 1) of plane j. Per k-step one m64n(64Q)k256 wgmma reads 2 + 8 KB of shared memory where
// SX = 1's Q wgmmas m64n64k256 read Q x (2 + 2) KB (the stacked X tile once per plane): for W4A1 80 instead of
// 128 KB of operand reads per stage, the same 48 KB of TMA writes (NOTES.md ws v4). The output fragment is then in
// the natural orientation (activation rows x weight columns): the staged epilogue uses stmatrix without .trans.
// ---------------------------------------------------------------------------------------------------
template <bool ON>
struct TCols {  // this thread's 16 weight columns n + 8 cc + h (index 2 cc + h) and 2 activation rows m + 8 r
    uint32_t csw[16];  // (2^P - 1) S_w[n] + K (2^P - 1)(2^Q - 1)
    float cs[16];      // column scales (1.0 when absent: exact)
    uint32_t sx[2];
    float rs[2], rc[2];
    int n, m;
};
template <>
struct TCols<false> {};

template <int P, int Q>
__device__ __forceinline__ TCols<true> load_tcols(const Args& p, int n, int m) {
    constexpr uint32_t A = (1u << P) - 1, B = (1u << Q) - 1;
    const uint32_t kab = uint32_t(p.k) * A * B;
    const i8::Epilogue& e = p.epi;
    TCols<true> c;
    c.n = n;
    c.m = m;
#pragma unroll
    for (int i = 0; i < 16; ++i) {
        const int nc = n + 8 * (i >> 1) + (i & 1);
        const int nn = nc < p.n ? nc : 0;
        c.csw[i] = A * uint32_t(__ldg(p.sw + nn)) + kab;
        c.cs[i] = e.cs ? __ldg(e.cs + nn) : 1.f;
    }
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int mr = m + 8 * r;
        const bool ok = mr < p.m;
        c.sx[r] = ok ? uint32_t(__ldg(p.sx + mr)) : 0u;
        c.rs[r] = e.rs ? (ok ? __ldg(e.rs + mr) : 0.f) : e.rs_val;
        c.rc[r] = e.rc && ok ? __ldg(e.rc + mr) : 0.f;
    }
    return c;
}

// f16 / bf16 value of output (row r, column index i = 2 cc + h) of an SX = 2 thread: bip::store_one's arithmetic
// (cs multiplied always: 1.0 when absent, exact; the row correction and bias read here, only when present).
template <int OUT>
__device__ __forceinline__ uint32_t tval(const Args& p, const TCols<true>& c, uint32_t t, int r, int i, uint32_t B) {
    const i8::Epilogue& e = p.epi;
    const int32_t yv = int32_t(4u * t - B * c.sx[r] - c.csw[i]);
    float v = __fmul_rn(__fmul_rn(__int2float_rn(yv), c.rs[r]), c.cs[i]);
    if (e.rc != nullptr || e.bias != nullptr) {
        const int nc = c.n + 8 * (i >> 1) + (i & 1);
        const int nn = nc < p.n ? nc : 0;
        if (e.rc) v = __fmaf_rn(c.rc[r], e.cc ? __ldg(e.cc + nn) : 0.f, v);
        if (e.bias) v = __fadd_rn(v, __ldg(e.bias + nn));
    }
    return to_b16<OUT>(v);
}

// Recovery sum_j 2^j T_j in place (acc[4 cc + e], cc < 8, later cc only read indices >= 4 cc + 4 or >= 32), then the
// epilogue: f16 / bf16 through the staging buffer (64 activation rows x 128 bytes, 128-byte swizzle) and one TMA
// tensor store of the warpgroup's 64 x 64 block, as store_tile_tma; otherwise direct stores via bip::store_one.
template <int OUT>
__device__ __forceinline__ void tstage(const Args& p, const int32_t* t, const TCols<true>& c, uint32_t ob, int warp,
                                       int lane, uint32_t B) {
    const int mk = lane >> 3, mi = lane & 7;  // stmatrix: matrix mk, row mi of this lane's address
#pragma unroll
    for (int u = 0; u < 4; ++u) {
        uint32_t reg[4];
#pragma unroll
        for (int k = 0; k < 4; ++k) {  // matrix k = (cc = 2 u + (k >> 1), row half r = k & 1)
            const int cc = 2 * u + (k >> 1), r = k & 1;
            const uint32_t lo = tval<OUT>(p, c, uint32_t(t[4 * cc + 2 * r]), r, 2 * cc, B);
            const uint32_t hi = tval<OUT>(p, c, uint32_t(t[4 * cc + 2 * r + 1]), r, 2 * cc + 1, B);
            reg[k] = lo | (hi << 16);
        }
        const int la = 16 * warp + 8 * (mk & 1) + mi, chunk = 2 * u + (mk >> 1);
        stmatrix_x4(ob + uint32_t(la * kStageBytes + ((chunk ^ mi) << 4)), reg[0], reg[1], reg[2], reg[3]);
    }
}

template <int Q, int OR>
__device__ __forceinline__ void store_tile_t(const Args& p, int32_t (&t)[Q * 32], const TCols<true>& c, bool tma_out,
                                             unsigned char* obuf, const CUtensorMap* ymap, int n0, int m0, int cw,
                                             int warp, int lane) {
    static_assert(OR == 64, "the staging buffer holds the warpgroup's whole 64 x 64 block");
    constexpr uint32_t B = (1u << Q) - 1;
#pragma unroll
    for (int cc = 0; cc < 8; ++cc)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            uint32_t tt = 0;
#pragma unroll
            for (int j = 0; j < Q; ++j) tt += uint32_t(t[4 * (8 * j + cc) + e]) << j;
            t[4 * cc + e] = int32_t(tt);
        }
    if (tma_out) {
        const uint32_t ob = tma::smem_u32(obuf);
        if ((threadIdx.x & 127) == 0) tma::bulk_wait_group_read<0>();  // the previous tile's store has read it
        consumer_bar(cw);
        if (p.epi.out == i8::kOutF16) {
            tstage<i8::kOutF16>(p, t, c, ob, warp, lane, B);
        } else {
            tstage<i8::kOutBf16>(p, t, c, ob, warp, lane, B);
        }
        tma::fence_proxy_async_shared();  // the generic-proxy writes -> visible to the TMA engine
        consumer_bar(cw);
        if ((threadIdx.x & 127) == 0) {
            tma::tma_2d_s2g(ymap, obuf, n0, m0);
            tma::bulk_commit_group();
        }
        return;
    }
#pragma unroll
    for (int cc = 0; cc < 8; ++cc)
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int r = e >> 1, i = 2 * cc + (e & 1);
            const int m = c.m + 8 * r, n = c.n + 8 * cc + (e & 1);
            if (m >= p.m || n >= p.n) continue;
            bip::ColVec col;
            col.ok = true;
            col.sw = 0;
            col.cs = c.cs[i];
            col.cc = p.epi.cc ? __ldg(p.epi.cc + n) : 0.f;
            col.bias = p.epi.bias ? __ldg(p.epi.bias + n) : 0.f;
            const int32_t yv = int32_t(4u * uint32_t(t[4 * cc + e]) - B * c.sx[r] - c.csw[i]);
            switch (p.epi.out) {
                case i8::kOutF16: bip::store_one<i8::kOutF16>(p, yv, c.rs[r], c.rc[r], col, m, n); break;
                case i8::kOutBf16: bip::store_one<i8::kOutBf16>(p, yv, c.rs[r], c.rc[r], col, m, n); break;
                case i8::kOutI8: bip::store_one<i8::kOutI8>(p, yv, c.rs[r], c.rc[r], col, m, n); break;
                default: bip::store_one<i8::kOutI32>(p, yv, c.rs[r], c.rc[r], col, m, n); break;
            }
        }
}

// Which operand a 2-CTA cluster shares (multicast): the one with more bytes per stage. 1 = X (the two CTAs take
// neighbouring weight tiles of one activation tile), 2 = W (neighbouring activation tiles of one weight tile).
template <int P, int Q, int BX, int SX = 0>
constexpr int multicast_for() {
    return Geo<P, Q, BX, SX>::kXStage >= Geo<P, Q, BX, SX>::kWStage ? 1 : 2;
}

template <int P, int Q, int BX, int MC, int SX = 0>
__global__ void __launch_bounds__(kThreads, 1) ws_plane_kernel(const __grid_constant__ Args p,
                                                                const __grid_constant__ CUtensorMap xmap,
                                                                const __grid_constant__ CUtensorMap wmap, int group,
                                                                const __grid_constant__ CUtensorMap ymap, int ystore) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    using G = Geo<P, Q, BX, SX>;
    static_assert(SX == 0 || MC != 2 || Q % 2 == 0, "split-X W multicast sends half of the weight planes");
    static_assert(SX != 2 || (P == 1 && BX == 64 && Q * 64 <= 256 && MC == 0), "transposed split X: W4A1 / W2A1");
    constexpr int S = G::kStages;
    constexpr int R = G::kR;
    static_assert(S >= 3, "ring too small");
    static_assert(BX % 8 == 0 && R <= 256, "wgmma N = P * BX: a multiple of 8, at most 256");
    static_assert(Q * R <= 256, "accumulators: Q * P * BX / 2 registers per thread");
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    __shared__ RowVecs<BX> rowv[2];  // per consumer warpgroup
    const uint32_t raw = tma::smem_u32(smem_raw);
    unsigned char* ring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    unsigned char* outbuf = ring + S * G::kSlot;  // 2 x kOutBytes: the consumers' output staging (ws v2)

    const int tid = threadIdx.x;
    const int wg = tid >> 7;
    constexpr int CL = MC ? 2 : 1;  // CTAs per cluster
    if (tid == 0) {
        for (int s = 0; s < S; ++s) {
            tma::mbar_init(&full[s], 1);        // the producer's arrive.expect_tx (+ the copies' bytes)
            tma::mbar_init(&empty[s], 8 * CL);  // one arrive per consumer warp of every CTA writing the slot
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    if constexpr (MC != 0) {
        tma::cluster_sync();  // the partner's barriers are initialised before any multicast or remote arrive
    } else {
        __syncthreads();
    }
    const uint32_t rank = MC ? tma::cluster_rank() : 0;

    // Work units: output tiles (MC = 0) or pairs of tiles sharing one operand (MC = 1: weight tiles 2 u, 2 u + 1 of
    // one activation tile; MC = 2: activation tiles 2 u, 2 u + 1 of one weight tile), in grouped rasterization; the
    // cluster takes units c, c + clusters, ... and its CTA `rank` the tile `rank` of the pair (tiles past the edge
    // load zeros and store nothing).
    constexpr int TW = G::kTW, TX = G::kTX;  // CTA tile: TW weight rows x TX activation rows
    const int mt = (p.m + TX - 1) / TX, nt = (p.n + TW - 1) / TW;
    const int umt = MC == 2 ? (mt + 1) / 2 : mt, unt = MC == 1 ? (nt + 1) / 2 : nt;
    const i8ws::Tiles tiles{umt, unt, group < 1 ? 1 : (group > umt ? umt : group)};
    const int total = unt * umt;
    const int ksteps = p.steps;
    const int first = int(blockIdx.x) / CL, stride = int(gridDim.x) / CL;
    auto tile_of = [&](int u, int& nb, int& mb) {
        tiles.at(u, nb, mb);
        if (MC == 1) nb = 2 * nb + int(rank);
        if (MC == 2) mb = 2 * mb + int(rank);
    };

    if (wg == 0) {
        // ------------------------------- producer -------------------------------
        tma::setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int t = first; t < total; t += stride) {
                int nb, mb;
                tile_of(t, nb, mb);
                for (int ks = 0; ks < ksteps; ++ks) {
                    // MC: the slot is free once the consumers of both CTAs released it (empty count 16).
                    tma::mbar_wait(&empty[s], phase ^ 1);  // a fresh barrier passes parity 1 at once
                    unsigned char* slot = ring + s * G::kSlot;
                    const int kb = ks * kStageBytes;
                    tma::mbar_expect_tx(&full[s], G::kSlot);  // own copies + the partner's multicast half
                    if constexpr (SX != 0) {
                        // Split X: weights box (128, 64, Q) [MC = 2: this CTA's half of the planes, box (128, 64,
                        // Q / 2), to both]; activations as two halves of box (128, BX, P) [MC = 1: half `rank` to both].
                        if constexpr (MC == 2) {
                            tma::tma_3d_g2s_mc(slot + int(rank) * (Q / 2) * G::kWPlane, &wmap, kb, nb * TW,
                                               int(rank) * (Q / 2), &full[s], 3);
                        } else {
                            tma::tma_3d_g2s(slot, &wmap, kb, nb * TW, 0, &full[s]);
                        }
                        if constexpr (MC == 1) {
                            tma::tma_3d_g2s_mc(slot + G::kWStage + int(rank) * G::kXHalf, &xmap, kb,
                                               mb * TX + int(rank) * BX, 0, &full[s], 3);
                        } else {
                            tma::tma_3d_g2s(slot + G::kWStage, &xmap, kb, mb * TX, 0, &full[s]);
                            tma::tma_3d_g2s(slot + G::kWStage + G::kXHalf, &xmap, kb, mb * TX + BX, 0, &full[s]);
                        }
                    } else if constexpr (MC == 1) {
                        // Own weight tile; half of the shared X tile (rows rank * BX / 2 .. of every plane) to both.
                        tma::tma_3d_g2s(slot, &wmap, kb, nb * kBW, 0, &full[s]);
                        for (int i = 0; i < P; ++i)
                            tma::tma_3d_g2s_mc(slot + G::kWStage + (i * BX + int(rank) * (BX / 2)) * kStageBytes, &xmap,
                                               kb, mb * BX + int(rank) * (BX / 2), i, &full[s], 3);
                    } else if constexpr (MC == 2) {
                        // Half of the shared weight tile (rows rank * 64 .. of every plane) to both; own X tile.
                        for (int j = 0; j < Q; ++j)
                            tma::tma_3d_g2s_mc(slot + (j * kBW + int(rank) * 64) * kStageBytes, &wmap, kb,
                                               nb * kBW + int(rank) * 64, j, &full[s], 3);
                        tma::tma_3d_g2s(slot + G::kWStage, &xmap, kb, mb * BX, 0, &full[s]);
                    } else {
                        tma::tma_3d_g2s(slot, &wmap, kb, nb * kBW, 0, &full[s]);
                        tma::tma_3d_g2s(slot + G::kWStage, &xmap, kb, mb * BX, 0, &full[s]);
                    }
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        }
    } else {
        // ------------------------------- consumers -------------------------------
        tma::setmaxnreg_inc<232>();
        const int cw = wg - 1;  // weight rows 64 cw .. 64 cw + 63 of the tile (SX: activation rows BX cw ..)
        const int wofs = SX ? 0 : cw * 64, xofs = SX ? cw * BX : 0;
        const int lane = tid & 31, warp = (tid >> 5) & 3;
        const int g = lane >> 2, tq = lane & 3;
        const uint32_t ring_a = tma::smem_u32(ring);
        int s = 0;
        uint32_t phase = 0;
        int32_t acc[Q][R / 2];
        const int ct = tid & 127;            // thread within the consumer warpgroup
        // Release of a consumed slot: one arrive per warp on the slot's empty barrier of every CTA that writes it.
        // MC: lane r of each warp arrives on CTA r's barrier (both in one instruction slot, as CUTLASS spreads its
        // cluster arrives over the warp's lanes), with the default .release.cta semantics (tma.cuh: the explicit
        // .release.cluster form costs two GPU-scope fences per arrive).
        auto release = [&](int slot) {
            if constexpr (MC != 0) {
                if (lane < CL) tma::mbar_arrive_cluster(&empty[slot], uint32_t(lane));
            } else {
                if (lane == 0) tma::mbar_arrive(&empty[slot]);
            }
        };
        for (int t = first; t < total; t += stride) {
            int nb, mb;
            tile_of(t, nb, mb);
            const int m0 = mb * TX + xofs;                        // this warpgroup's activation rows m0 ..
            const int nr = nb * TW + wofs + warp * 16 + g;  // this thread's weight rows nr, nr + 8
            const bool tma_out = ystore && (p.epi.out == i8::kOutF16 || p.epi.out == i8::kOutBf16);
            ColVals cv{};
            if (tma_out) cv = load_cols<P, Q>(p, nr);
            const RowRegs<BX> lrow = load_rows<BX>(p, m0, ct);
            // SX == 2: this thread's 2 activation rows and 16 weight columns, loaded before the K loop.
            TCols<SX == 2> tc;
            if constexpr (SX == 2) tc = load_tcols<P, Q>(p, nb * TW + 2 * tq, m0 + warp * 16 + g);
#pragma unroll
            for (int j = 0; j < Q; ++j)
#pragma unroll
                for (int i = 0; i < R / 2; ++i) acc[j][i] = 0;
            int prev = -1;
            for (int ks = 0; ks < ksteps; ++ks) {
                tma::mbar_wait(&full[s], phase);
                const uint32_t wa = ring_a + s * G::kSlot + wofs * kStageBytes;
                const uint32_t xa = ring_a + s * G::kSlot + G::kWStage + (SX ? cw * G::kXHalf : 0);
                wgmma_fence();
#pragma unroll
                for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);
                if constexpr (SX == 2) {
                    // Transposed split X (ws v4): A = this warpgroup's 64 activation rows, B = the Q weight planes
                    // stacked as N = 64 Q rows (plane j at rows 64 j .., contiguous in the slot): one wgmma per
                    // k-step reads 2 + 8 KB instead of Q x (2 + 2) KB.
                    int32_t(&af)[Q * R / 2] = reinterpret_cast<int32_t(&)[Q * R / 2]>(acc);
#pragma unroll
                    for (int kk = 0; kk < kStageBytes / 32; ++kk)
                        wgmma_ss_b1<Q * 64>(af, tma::desc_sw128(xa + 32 * kk), tma::desc_sw128(wa + 32 * kk), 1);
                } else {
#pragma unroll
                    for (int kk = 0; kk < kStageBytes / 32; ++kk) {
                        const uint64_t db = tma::desc_sw128(xa + 32 * kk);
#pragma unroll
                        for (int j = 0; j < Q; ++j)
                            wgmma_ss_b1<R>(acc[j], tma::desc_sw128(wa + j * G::kWPlane + 32 * kk), db, 1);
                    }
                }
                wgmma_commit();
#pragma unroll
                for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);
                wgmma_wait<1>();
                // The previous stage's group has completed: its slot may be refilled.
                if (prev >= 0) release(prev);
                prev = s;
                if (++s == S) s = 0, phase ^= 1;
            }
            wgmma_wait<0>();
#pragma unroll
            for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[j]);
            if (prev >= 0) release(prev);
            if constexpr (SX == 2) {
                const bool tma_out2 = ystore && (p.epi.out == i8::kOutF16 || p.epi.out == i8::kOutBf16);
                store_tile_t<Q, G::kOutRows>(p, reinterpret_cast<int32_t(&)[Q * R / 2]>(acc), tc, tma_out2,
                                             outbuf + cw * G::kOutBytes, &ymap, nb * TW, m0, cw, warp, lane);
            } else {
                // Recovery (bip_gemm.cuh): acc[j][4 (pi * BX / 8 + ii) + e] is plane pair (pi, j) of output column
                // 8 ii + 2 tq + (e & 1); T overwrites acc[0][4 ii + e], which later ii never read.
#pragma unroll
                for (int ii = 0; ii < BX / 8; ++ii) {
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        uint32_t tt = 0;
#pragma unroll
                        for (int j = 0; j < Q; ++j)
#pragma unroll
                            for (int pi = 0; pi < P; ++pi)
                                tt += uint32_t(acc[j][4 * (pi * BX / 8 + ii) + e]) << (pi + j);
                        acc[0][4 * ii + e] = int32_t(tt);
                    }
                }
                // Row vectors into shared memory (the previous tile's epilogue reads are done: first barrier; with
                // TMA stores the staging buffer's last store of the previous tile has been read, too).
                RowVecs<BX>& rv = rowv[cw];
                if (tma_out && ct == 0) tma::bulk_wait_group_read<0>();
                asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
                stash_rows<BX>(rv, lrow, ct);
                asm volatile("bar.sync %0, 128;\n" ::"r"(1 + cw) : "memory");
                if (tma_out) {
                    unsigned char* ob = outbuf + cw * G::kOutBytes;
                    const int n0 = nb * TW + wofs;
                    constexpr int OR = G::kOutRows;
#ifdef LOWBIT_BIP_WS_EPI_FULL  // micro-harness A/B only: ws v2's epilogue (every term predicated)
                    const bool full = true;
#else
                    const bool full = p.epi.rc != nullptr || p.epi.bias != nullptr;
#endif
                    if (p.epi.out == i8::kOutF16) {
                        if (full) {
                            store_tile_tma<P, Q, BX, OR, i8::kOutF16, true>(p, acc[0], cv, tq, rv, ob, &ymap, n0, m0,
                                                                            cw, warp, lane);
                        } else {
                            store_tile_tma<P, Q, BX, OR, i8::kOutF16, false>(p, acc[0], cv, tq, rv, ob, &ymap, n0, m0,
                                                                             cw, warp, lane);
                        }
                    } else {
                        if (full) {
                            store_tile_tma<P, Q, BX, OR, i8::kOutBf16, true>(p, acc[0], cv, tq, rv, ob, &ymap, n0, m0,
                                                                             cw, warp, lane);
                        } else {
                            store_tile_tma<P, Q, BX, OR, i8::kOutBf16, false>(p, acc[0], cv, tq, rv, ob, &ymap, n0, m0,
                                                                              cw, warp, lane);
                        }
                    }
                    continue;
                }
                switch (p.epi.out) {
                    case i8::kOutF16: store_tile_ws<P, Q, BX, i8::kOutF16>(p, acc[0], m0, nr, tq, rv); break;
                    case i8::kOutBf16: store_tile_ws<P, Q, BX, i8::kOutBf16>(p, acc[0], m0, nr, tq, rv); break;
                    case i8::kOutI8: store_tile_ws<P, Q, BX, i8::kOutI8>(p, acc[0], m0, nr, tq, rv); break;
                    default: store_tile_ws<P, Q, BX, i8::kOutI32>(p, acc[0], m0, nr, tq, rv); break;
                }
            }
        }
        // The CTA's shared memory must outlive the copy engine's reads of the last staged tile.
        if (ystore && ct == 0) tma::bulk_wait_group_read<0>();
    }
    // MC: no CTA leaves while its partner may still multicast into its ring or arrive on its barriers.
    if constexpr (MC != 0) tma::cluster_sync();
#endif
#endif
}

// ---------------------------------------------------------------------------------------------------
// Ping-pong consumers (ws v5, kernels/bipolar/NOTES.md): ws_pp_kernel. The same producer, ring, operand layout,
// recovery and epilogues as ws_plane_kernel, but each consumer warpgroup owns a whole tile of its own (WH * 64 weight
// rows x BX activation rows: WH wgmma row blocks per plane, acc[WH][Q][P * BX / 2], WH * Q * P * BX / 2 <= 128
// registers), and the two warpgroups take the CTA's tiles alternately (CTA-local tile i -> warpgroup i % 2). The
// producer fills the ring with the stages of tile 0, tile 1, tile 2, ... in order, so each warpgroup consumes the
// ring positions of its own tiles and skips (advances its slot and phase over) the other's. An ordered barrier pair
// (order[0], order[1]: mbarriers of 4 arrivals, lane 0 of each warp) makes the K loops alternate: a warpgroup waits
// for its turn before its first BGMMA of a tile and hands the turn over right after issuing its last one, before
// wgmma.wait_group 0, so the tensor pipe always has the other warpgroup's BGMMAs queued while this one drains,
// recovers and runs its epilogue (CUTLASS's KernelTmaWarpSpecializedPingpong pattern, written for this kernel). The
// ordering is a schedule only: exactness rests on the full / empty ring barriers as in ws_plane_kernel (each slot is
// released by the 4 warps of the one warpgroup that consumed it: empty counts 4), and each warpgroup has its own
// RowVecs and output staging buffer (WH x OR rows x 128 bytes), so the two epilogues never share memory.
// Turn parity: warpgroup cw's k-th turn needs k (cw = 0) or k + 1 (cw = 1) hand-overs from the other one, i.e. phase
// k - 1 resp. k of order[cw] completed: parity (k & 1) ^ (cw == 0) (a fresh barrier passes parity 1 at once). The
// arrivals cannot run two phases ahead of a waiter (each hand-over needs the other's previous one), and a dangling
// hand-over at the end (odd tile counts) is harmless on an mbarrier.
// Limits: one CTA per SM (no multicast), no split X; tile counts and edges as ws_plane_kernel (rows past M / N load
// zeros and store nothing).
// ---------------------------------------------------------------------------------------------------
#ifndef LOWBIT_BIP_WS_PP_SLOTS
#define LOWBIT_BIP_WS_PP_SLOTS 4  // micro-harness experiment (ws v5): 5 = one more ring slot, staging in 2 passes
#endif
constexpr int out_rows_pp(int avail, int slot, int bx, int want, int wh) {
    return bx < 8 ? 0
                  : ring_slots(avail - 2 * wh * bx * kStageBytes, slot) >= want ? bx
                                                                               : out_rows_pp(avail, slot, bx / 2, want, wh);
}

template <int P, int Q, int BX, int WH>
struct PGeo {
    static constexpr int kR = P * BX;                  // stacked X rows
    static constexpr int kTW = 64 * WH;                // weight rows per (warpgroup) tile
    static constexpr int kTX = BX;                     // activation rows per tile
    static constexpr int kWPlane = kTW * kStageBytes;  // 8 KB per weight plane and row block
    static constexpr int kWStage = Q * kWPlane;
    static constexpr int kXStage = kR * kStageBytes;
    static constexpr int kSlot = kWStage + kXStage;
    // as Geo, plus the order barriers (24 bytes: ws v6 had three)
    static constexpr int kAvail = kSmemLimit - 1024 - 2 * 8 * 8 - 24 - 2 * int(sizeof(RowVecs<BX>)) - 256;
    // whole-tile staging while it leaves LOWBIT_BIP_WS_PP_SLOTS slots (4 x 512 cycles of BGMMA at peak for W1A1),
    // else passes of half the rows
    static constexpr int kOutRowsPref = out_rows_pp(kAvail, kSlot, BX, LOWBIT_BIP_WS_PP_SLOTS, WH);
    static constexpr int kOutRows = kOutRowsPref ? kOutRowsPref : out_rows_pp(kAvail, kSlot, BX, 3, WH);
    static constexpr int kOutHalf = kOutRows * kStageBytes;  // one 64-column block's staging
    static constexpr int kOutBytes = WH * kOutHalf;          // per consumer warpgroup
    static constexpr int kStages = ring_slots(kAvail - 2 * kOutBytes, kSlot);
    static constexpr int kSmem = kStages * kSlot + 2 * kOutBytes + 1024;
    static_assert(kOutRows >= 16 && BX % kOutRows == 0, "no room for the output staging buffer");
};

template <int P, int Q, int BX, int WH>
__global__ void __launch_bounds__(kThreads, 1) ws_pp_kernel(const __grid_constant__ Args p,
                                                             const __grid_constant__ CUtensorMap xmap,
                                                             const __grid_constant__ CUtensorMap wmap, int group,
                                                             const __grid_constant__ CUtensorMap ymap, int ystore) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    using G = PGeo<P, Q, BX, WH>;
    constexpr int S = G::kStages;
    constexpr int R = G::kR;
    static_assert(S >= 3, "ring too small");
    static_assert(BX % 8 == 0 && R <= 256, "wgmma N = P * BX: a multiple of 8, at most 256");
    static_assert(WH * Q * R <= 256, "accumulators: WH * Q * P * BX / 2 registers per thread");
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S], order[2];
    __shared__ RowVecs<BX> rowv[2];  // per consumer warpgroup
    const uint32_t raw = tma::smem_u32(smem_raw);
    unsigned char* ring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    unsigned char* outbuf = ring + S * G::kSlot;  // 2 x kOutBytes

    const int tid = threadIdx.x;
    const int wg = tid >> 7;
    if (tid == 0) {
        for (int s = 0; s < S; ++s) {
            tma::mbar_init(&full[s], 1);  // the producer's arrive.expect_tx (+ the copies' bytes)
            tma::mbar_init(&empty[s], 4);  // one arrive per warp of the consuming warpgroup
        }
        tma::mbar_init(&order[0], 4);  // hand-overs to warpgroup 0 (from warpgroup 1's 4 warps)
        tma::mbar_init(&order[1], 4);
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    constexpr int TW = G::kTW;
    const int mt = (p.m + BX - 1) / BX, nt = (p.n + TW - 1) / TW;
    const i8ws::Tiles tiles{mt, nt, group < 1 ? 1 : (group > mt ? mt : group)};
    const int total = nt * mt;
    const int ksteps = p.steps;

    if (wg == 0) {
        // ------------------------------- producer: every tile of the CTA, in order -------------------------------
        tma::setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int t = int(blockIdx.x); t < total; t += int(gridDim.x)) {
                int nb, mb;
                tiles.at(t, nb, mb);
                for (int ks = 0; ks < ksteps; ++ks) {
                    tma::mbar_wait(&empty[s], phase ^ 1);  // a fresh barrier passes parity 1 at once
                    unsigned char* slot = ring + s * G::kSlot;
                    const int kb = ks * kStageBytes;
                    tma::mbar_expect_tx(&full[s], G::kSlot);
                    tma::tma_3d_g2s(slot, &wmap, kb, nb * TW, 0, &full[s]);
                    tma::tma_3d_g2s(slot + G::kWStage, &xmap, kb, mb * BX, 0, &full[s]);
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        }
    } else {
        // ------------------------------- consumers: alternate tiles -------------------------------
        tma::setmaxnreg_inc<232>();
        const int cw = wg - 1;
        const int lane = tid & 31, warp = (tid >> 5) & 3;
        const int g = lane >> 2, tq = lane & 3;
        const int ct = tid & 127;
        const uint32_t ring_a = tma::smem_u32(ring);
        unsigned char* ob = outbuf + cw * G::kOutBytes;
        const bool tma_out = ystore && (p.epi.out == i8::kOutF16 || p.epi.out == i8::kOutBf16);
        int s = 0;
        uint32_t phase = 0, turn = 0;
        int32_t acc[WH][Q][R / 2];
        int i = 0;
        for (int t = int(blockIdx.x); t < total; t += int(gridDim.x), ++i) {
            if ((i & 1) != cw) {  // the other warpgroup's tile: skip its ring positions
                const int adv = s + ksteps;
                phase ^= uint32_t(adv / S) & 1u;
                s = adv % S;
                continue;
            }
            int nb, mb;
            tiles.at(t, nb, mb);
            const int m0 = mb * BX;
            const int nr = nb * TW + warp * 16 + g;  // this thread's weight rows nr + 64 h, nr + 64 h + 8
            ColVals cv[WH];
#pragma unroll
            for (int h = 0; h < WH; ++h) cv[h] = tma_out ? load_cols<P, Q>(p, nr + 64 * h) : ColVals{};
            const RowRegs<BX> lrow = load_rows<BX>(p, m0, ct);
#pragma unroll
            for (int h = 0; h < WH; ++h)
#pragma unroll
                for (int j = 0; j < Q; ++j)
#pragma unroll
                    for (int e = 0; e < R / 2; ++e) acc[h][j][e] = 0;
            tma::mbar_wait(&order[cw], (turn & 1u) ^ (cw == 0 ? 1u : 0u));  // my turn for the tensor pipe
            {  // K loop (ws v5): one 1024-bit stage per wgmma commit group, wgmma.wait_group 1
                int prev = -1;
                for (int ks = 0; ks < ksteps; ++ks) {
                    tma::mbar_wait(&full[s], phase);
                    const uint32_t wa = ring_a + s * G::kSlot;
                    const uint32_t xa = wa + G::kWStage;
                    wgmma_fence();
#pragma unroll
                    for (int h = 0; h < WH; ++h)
#pragma unroll
                        for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[h][j]);
#pragma unroll
                    for (int kk = 0; kk < kStageBytes / 32; ++kk) {
                        const uint64_t db = tma::desc_sw128(xa + 32 * kk);
#pragma unroll
                        for (int j = 0; j < Q; ++j)
#pragma unroll
                            for (int h = 0; h < WH; ++h)  // plane j's row block h: 64 rows = 8 KB from the plane start
                                wgmma_ss_b1<R>(acc[h][j], tma::desc_sw128(wa + j * G::kWPlane + h * 8192 + 32 * kk), db,
                                               1);
                    }
                    wgmma_commit();
#pragma unroll
                    for (int h = 0; h < WH; ++h)
#pragma unroll
                        for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[h][j]);
                    wgmma_wait<1>();
                    if (prev >= 0 && lane == 0) tma::mbar_arrive(&empty[prev]);
                    prev = s;
                    if (++s == S) s = 0, phase ^= 1;
                }
                // Every BGMMA of this tile is issued: hand the tensor pipe to the other warpgroup, then drain.
                __syncwarp();
                if (lane == 0) tma::mbar_arrive(&order[cw ^ 1]);
                ++turn;
                wgmma_wait<0>();
#pragma unroll
                for (int h = 0; h < WH; ++h)
#pragma unroll
                    for (int j = 0; j < Q; ++j) wgmma_fence_regs_s32(acc[h][j]);
                if (prev >= 0 && lane == 0) tma::mbar_arrive(&empty[prev]);
            }
            // Recovery per row block (as ws_plane_kernel): T into acc[h][0][4 ii + e].
#pragma unroll
            for (int h = 0; h < WH; ++h)
#pragma unroll
                for (int ii = 0; ii < BX / 8; ++ii)
#pragma unroll
                    for (int e = 0; e < 4; ++e) {
                        uint32_t tt = 0;
#pragma unroll
                        for (int j = 0; j < Q; ++j)
#pragma unroll
                            for (int pi = 0; pi < P; ++pi)
                                tt += uint32_t(acc[h][j][4 * (pi * BX / 8 + ii) + e]) << (pi + j);
                        acc[h][0][4 * ii + e] = int32_t(tt);
                    }
            RowVecs<BX>& rv = rowv[cw];
            if (tma_out && ct == 0) tma::bulk_wait_group_read<0>();  // this warpgroup's previous stores have read
            consumer_bar(cw);
            stash_rows<BX>(rv, lrow, ct);
            consumer_bar(cw);
#pragma unroll
            for (int h = 0; h < WH; ++h) {
                const int n0 = nb * TW + 64 * h;
                if (tma_out) {
                    constexpr int OR = G::kOutRows;
                    unsigned char* obh = ob + h * G::kOutHalf;
                    const bool full_epi = p.epi.rc != nullptr || p.epi.bias != nullptr;
                    if (p.epi.out == i8::kOutF16) {
                        if (full_epi) {
                            store_tile_tma<P, Q, BX, OR, i8::kOutF16, true>(p, acc[h][0], cv[h], tq, rv, obh, &ymap,
                                                                            n0, m0, cw, warp, lane);
                        } else {
                            store_tile_tma<P, Q, BX, OR, i8::kOutF16, false>(p, acc[h][0], cv[h], tq, rv, obh, &ymap,
                                                                             n0, m0, cw, warp, lane);
                        }
                    } else {
                        if (full_epi) {
                            store_tile_tma<P, Q, BX, OR, i8::kOutBf16, true>(p, acc[h][0], cv[h], tq, rv, obh, &ymap,
                                                                             n0, m0, cw, warp, lane);
                        } else {
                            store_tile_tma<P, Q, BX, OR, i8::kOutBf16, false>(p, acc[h][0], cv[h], tq, rv, obh, &ymap,
                                                                              n0, m0, cw, warp, lane);
                        }
                    }
                } else {
                    switch (p.epi.out) {
                        case i8::kOutF16: store_tile_ws<P, Q, BX, i8::kOutF16>(p, acc[h][0], m0, nr + 64 * h, tq, rv); break;
                        case i8::kOutBf16: store_tile_ws<P, Q, BX, i8::kOutBf16>(p, acc[h][0], m0, nr + 64 * h, tq, rv); break;
                        case i8::kOutI8: store_tile_ws<P, Q, BX, i8::kOutI8>(p, acc[h][0], m0, nr + 64 * h, tq, rv); break;
                        default: store_tile_ws<P, Q, BX, i8::kOutI32>(p, acc[h][0], m0, nr + 64 * h, tq, rv); break;
                    }
                }
            }
        }
        // The CTA's shared memory must outlive the copy engine's reads of the last staged tile.
        if (ystore && ct == 0) tma::bulk_wait_group_read<0>();
    }
#endif
#endif
}

template <int P, int Q, int BX, int WH>
bool available_pp() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws_pp_kernel<P, Q, BX, WH>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

template <int P, int Q, int BX>
bool available() {  // (the split-X and multicast variants come from the same sm_90a cubin)
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws_plane_kernel<P, Q, BX, 0>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

}  // namespace bipws
}  // namespace lowbit
