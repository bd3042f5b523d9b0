// lowbit/wo_decode.cuh: register dequantizers of the weight-only GEMM's tiled fragment layout.
//
// Each decoder turns one lane's codes of one 16x16 weight tile into the four 32-bit registers of an
// mma.m16n8k16 A fragment: register i holds the pair (a_{2i}, a_{2i+1}); registers 0 and 2 belong to
// row g of the tile, 1 and 3 to row g+8 (g = lane / 4). Outputs are *unscaled*: INT formats give the
// exact integers q - z, table formats the table values; the per-group scale is applied to the f32
// accumulators after the group's MMAs, which keeps the dequantization exact and cheap.
//
// The integer decoders place codes in the mantissa of a float whose exponent makes the code the units
// digit ("magic numbers": f16 0x6400 = 1024, bf16 0x4300 = 128, f32 0x4B000000 = 2^23), so one LOP3 or
// PRMT converts two codes at a time and one exact subtraction removes magic + zero point. The layouts
// these decoders read are written by lowbit-core's repack.rs (see docs/formats.md, "Tiled GEMM layout").
#pragma once

#include <type_traits>

#include "lowbit/mma.cuh"

namespace lowbit {
namespace wo {

// ---- 16-bit pair arithmetic on raw 32-bit registers ------------------------------------------------
template <typename T>
struct Pair;

template <>
struct Pair<__half> {
    static constexpr uint32_t kMagic = 0x64006400u;  // (1024, 1024)
    static constexpr int kMagicInt = 1024;
    __device__ static uint32_t sub(uint32_t a, uint32_t b) {
        __half2 r = __hsub2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b));
        return *reinterpret_cast<uint32_t*>(&r);
    }
    __device__ static uint32_t fma(uint32_t a, uint32_t b, uint32_t c) {
        __half2 r = __hfma2(*reinterpret_cast<__half2*>(&a), *reinterpret_cast<__half2*>(&b),
                            *reinterpret_cast<__half2*>(&c));
        return *reinterpret_cast<uint32_t*>(&r);
    }
    __device__ static uint32_t pack(float lo, float hi) {
        __half2 r = __floats2half2_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&r);
    }
    __device__ static uint32_t splat(float v) { return pack(v, v); }
};

template <>
struct Pair<__nv_bfloat16> {
    static constexpr uint32_t kMagic = 0x43004300u;  // (128, 128)
    static constexpr int kMagicInt = 128;
    __device__ static uint32_t sub(uint32_t a, uint32_t b) {
        __nv_bfloat162 r =
            __hsub2(*reinterpret_cast<__nv_bfloat162*>(&a), *reinterpret_cast<__nv_bfloat162*>(&b));
        return *reinterpret_cast<uint32_t*>(&r);
    }
    __device__ static uint32_t pack(float lo, float hi) {
        __nv_bfloat162 r = __floats2bfloat162_rn(lo, hi);
        return *reinterpret_cast<uint32_t*>(&r);
    }
    __device__ static uint32_t splat(float v) { return pack(v, v); }
};

// Per-group decoder context: INT zero-point constants or the two rows' table bases.
struct GroupCtx {
    uint32_t zc[4];          // INT: per-register constants derived from the zero points
    const uint32_t* tab_g;   // tables: pair table of row g (shared memory)
    const uint32_t* tab_g8;  // tables: pair table of row g + 8
};

// ---- INT 4-bit: one word per tile, nibble slots [a0, a2, a4, a6, a1, a3, a5, a7] --------------------
struct Int4 {
    static constexpr int kTiles = 4, kBits = 4;
    static constexpr bool kHasHi = false, kIsLut = false;
    static constexpr int kEntries = 0;
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        // Built with integer ops (this runs once per group on the issue-bound small-M path): for a 4-bit
        // zero point z (0..15), f16(1024 + z) = 0x6400 + z, f16(-(64 + z)) = 0xD400 + 16z and
        // bf16(128 + z) = 0x4300 + z exactly; x * 0x10001 copies a 16-bit pattern into both halves.
        const uint32_t zg = aux & 0xFFu, zg8 = (aux >> 8) & 0xFFu;
        if constexpr (std::is_same_v<T, __half>) {
            c.zc[0] = zg * 0x10001u + 0x64006400u;         // lo nibbles: 1024 + q - (1024 + z)
            c.zc[1] = (zg8 << 4) * 0x10001u + 0xD400D400u;  // hi nibbles: (1024 + 16q)/16 - (64 + z)
        } else {
            c.zc[0] = zg * 0x10001u + 0x43004300u;
            c.zc[1] = zg8 * 0x10001u + 0x43004300u;
        }
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j];
        if constexpr (std::is_same_v<T, __half>) {
            constexpr uint32_t kSixteenth = 0x2C002C00u;  // (1/16, 1/16)
            a[0] = Pair<T>::sub(and_or(q, 0x000F000Fu, Pair<T>::kMagic), c.zc[0]);
            a[1] = Pair<T>::fma(and_or(q, 0x00F000F0u, Pair<T>::kMagic), kSixteenth, c.zc[1]);
            a[2] = Pair<T>::sub(and_or(q >> 8, 0x000F000Fu, Pair<T>::kMagic), c.zc[0]);
            a[3] = Pair<T>::fma(and_or(q >> 8, 0x00F000F0u, Pair<T>::kMagic), kSixteenth, c.zc[1]);
        } else {
            // bf16 has 8 significant bits: a nibble shifted by 4 would leave the exact range, so shift first.
            a[0] = Pair<T>::sub(and_or(q, 0x000F000Fu, Pair<T>::kMagic), c.zc[0]);
            a[1] = Pair<T>::sub(and_or(q >> 4, 0x000F000Fu, Pair<T>::kMagic), c.zc[1]);
            a[2] = Pair<T>::sub(and_or(q >> 8, 0x000F000Fu, Pair<T>::kMagic), c.zc[0]);
            a[3] = Pair<T>::sub(and_or(q >> 12, 0x000F000Fu, Pair<T>::kMagic), c.zc[1]);
        }
    }
    // ZF (NOTES.md v17, zero point folded out): the codes with the magic left in, one LOP3 a register and no
    // subtraction: f16 rows g = 1024 + q, rows g + 8 = 1024 + 16q (the nibble at bits 4..7, exact below 2048);
    // bf16 every register 128 + q. The kernel's group flush subtracts (magic + z) (f16 rows g + 8: 1024 + 16z, then
    // / 16) times the group's activation sums.
    template <typename T>
    __device__ static void decode_zf(const uint32_t* w, int j, uint32_t (&a)[4]) {
        const uint32_t q = w[j];
        if constexpr (std::is_same_v<T, __half>) {
            a[0] = and_or(q, 0x000F000Fu, Pair<T>::kMagic);
            a[1] = and_or(q, 0x00F000F0u, Pair<T>::kMagic);
            a[2] = and_or(q >> 8, 0x000F000Fu, Pair<T>::kMagic);
            a[3] = and_or(q >> 8, 0x00F000F0u, Pair<T>::kMagic);
        } else {
            a[0] = and_or(q, 0x000F000Fu, Pair<T>::kMagic);
            a[1] = and_or(q >> 4, 0x000F000Fu, Pair<T>::kMagic);
            a[2] = and_or(q >> 8, 0x000F000Fu, Pair<T>::kMagic);
            a[3] = and_or(q >> 12, 0x000F000Fu, Pair<T>::kMagic);
        }
    }
    // ZF: (magic + z) of rows g and g + 8 in f32 from the group's aux word, and the factor on the group scale of
    // rows g + 8 (f16: 1/16). f32(1024 + v) = 0x44800000 + (v << 13) for v < 1024, f32(128 + z) = 0x43000000 + (z << 16).
    template <typename T>
    __device__ static void zf_consts(uint32_t aux, float& z0, float& z1, float& f1) {
        const uint32_t zg = aux & 0xFFu, zg8 = (aux >> 8) & 0xFFu;
        if constexpr (std::is_same_v<T, __half>) {
            z0 = __uint_as_float(0x44800000u + (zg << 13));
            z1 = __uint_as_float(0x44800000u + (zg8 << 17));
            f1 = 0.0625f;
        } else {
            z0 = __uint_as_float(0x43000000u + (zg << 16));
            z1 = __uint_as_float(0x43000000u + (zg8 << 16));
            f1 = 1.f;
        }
    }
};

// ---- INT 8-bit: two words per tile, bytes [a0..a3], [a4..a7] --------------------------------------
struct Int8 {
    static constexpr int kTiles = 2, kBits = 8;
    static constexpr bool kHasHi = false, kIsLut = false;
    static constexpr int kEntries = 0;
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        const int zg = aux & 0xFF, zg8 = (aux >> 8) & 0xFF;
        if constexpr (std::is_same_v<T, __half>) {
            c.zc[0] = Pair<T>::splat(float(1024 + zg));
            c.zc[1] = Pair<T>::splat(float(1024 + zg8));
        } else {  // bf16: bytes do not fit its 8-bit significand next to a magic; go through f32
            c.zc[0] = __float_as_uint(8388608.0f + float(zg));
            c.zc[1] = __float_as_uint(8388608.0f + float(zg8));
        }
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t w0 = w[2 * j], w1 = w[2 * j + 1];
        if constexpr (std::is_same_v<T, __half>) {
            constexpr uint32_t m = 0x64646464u;
            a[0] = Pair<T>::sub(prmt(w0, m, 0x4140), c.zc[0]);
            a[1] = Pair<T>::sub(prmt(w0, m, 0x4342), c.zc[1]);
            a[2] = Pair<T>::sub(prmt(w1, m, 0x4140), c.zc[0]);
            a[3] = Pair<T>::sub(prmt(w1, m, 0x4342), c.zc[1]);
        } else {
            constexpr uint32_t m = 0x4B000000u;  // f32 2^23: byte b in the low mantissa gives 2^23 + b
            const float z0 = __uint_as_float(c.zc[0]), z1 = __uint_as_float(c.zc[1]);
            auto f = [](uint32_t v, uint32_t sel, float z) { return __uint_as_float(prmt(v, m, sel)) - z; };
            a[0] = Pair<T>::pack(f(w0, 0x7650, z0), f(w0, 0x7651, z0));
            a[1] = Pair<T>::pack(f(w0, 0x7652, z1), f(w0, 0x7653, z1));
            a[2] = Pair<T>::pack(f(w1, 0x7650, z0), f(w1, 0x7651, z0));
            a[3] = Pair<T>::pack(f(w1, 0x7652, z1), f(w1, 0x7653, z1));
        }
    }
};

// ---- INT 2-bit and 3-bit ------------------------------------------------------------------------------
// Low two bits: two tiles per word; slot 4p + r = a_{2r} and slot 4p + r + 8 = a_{2r+1} of tile p, at bits
// 2*slot. 3-bit high bits: four tiles per word, bit 16h + 4u + r for tile u, register r, half h.
template <int BITS>
struct IntLow {
    static_assert(BITS == 2 || BITS == 3, "2- or 3-bit");
    static constexpr int kTiles = 8, kBits = BITS;
    static constexpr bool kHasHi = BITS == 3, kIsLut = false;
    static constexpr int kEntries = 0;
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        const int zg = aux & 0xFF, zg8 = (aux >> 8) & 0xFF;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            const int z = (r & 1) ? zg8 : zg;
            if constexpr (std::is_same_v<T, __half>) {
                c.zc[r] = Pair<T>::splat(-float((1024 >> (2 * r)) + z));  // v * 4^-r - (1024 * 4^-r + z)
            } else {
                c.zc[r] = Pair<T>::splat(float(128 + z));
            }
        }
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t* h, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j >> 1] >> (8 * (j & 1));
        const int u = j & 3;
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            if constexpr (std::is_same_v<T, __half>) {
                // 1024 + c * 4^r keeps c * 4^r <= 448 inside the exact integer range of f16 at 1024.
                uint32_t v = and_or(q, 0x00030003u << (2 * r), Pair<T>::kMagic);
                if constexpr (BITS == 3) {
                    const int sh = 4 * u - r - 2;  // high bit of (tile u, reg r) -> bit 2r + 2
                    const uint32_t hs = sh >= 0 ? (h[j >> 2] >> sh) : (h[j >> 2] << -sh);
                    v = and_or(hs, 0x00040004u << (2 * r), v);
                }
                const uint32_t inv = r == 0 ? 0x3C003C00u : r == 1 ? 0x34003400u : r == 2 ? 0x2C002C00u : 0x24002400u;
                a[r] = Pair<T>::fma(v, inv, c.zc[r]);
            } else {
                uint32_t v = and_or(q >> (2 * r), 0x00030003u, Pair<T>::kMagic);
                if constexpr (BITS == 3) {
                    const int sh = 4 * u + r - 2;  // high bit -> bit 2
                    const uint32_t hs = sh >= 0 ? (h[j >> 2] >> sh) : (h[j >> 2] << -sh);
                    v = and_or(hs, 0x00040004u, v);
                }
                a[r] = Pair<T>::sub(v, c.zc[r]);
            }
        }
    }
};

// ---- Table formats (NF4, any 2^b LUT, BitMoD) --------------------------------------------------------
// Codes in natural fragment order; every register is one lookup of a pair table in shared memory whose
// entry for a pair index holds both (unscaled) values. BitMoD has four tables, chosen per (row, group).
template <int BITS>
struct Lut {
    static_assert(BITS >= 2 && BITS <= 4, "2..4-bit tables");
    static constexpr int kTiles = BITS == 4 ? 4 : 8, kBits = BITS;
    static constexpr bool kHasHi = BITS == 3, kIsLut = true;
    static constexpr int kEntries = 1 << (2 * BITS);  // pair-table entries
    // Codes (c0, c1) of pair index i.
    __host__ __device__ static void split(int i, int& c0, int& c1) {
        if (BITS == 4) {
            c0 = i & 15, c1 = i >> 4;
        } else if (BITS == 2) {
            c0 = i & 3, c1 = i >> 2;
        } else {
            c0 = (i & 3) | ((i >> 4) & 1) << 2;
            c1 = ((i >> 2) & 3) | ((i >> 5) & 1) << 2;
        }
    }
    template <typename T>
    __device__ static void ctx(uint32_t, GroupCtx&) {}
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t* h, int j, const GroupCtx& c, uint32_t (&a)[4]) {
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            uint32_t idx;
            if constexpr (BITS == 4) {
                idx = (w[j] >> (8 * r)) & 0xFF;
            } else {
                idx = (w[j >> 1] >> (16 * (j & 1) + 4 * r)) & 0xF;
                if constexpr (BITS == 3) idx |= ((h[j >> 2] >> (8 * (j & 3) + 2 * r)) & 3) << 4;
            }
            a[r] = ((r & 1) ? c.tab_g8 : c.tab_g)[idx];
        }
    }
};

// ---- BitMoD FP4 (mixed datatype), arithmetic decode: no table ------------------------------------------
// A BitMoD FP4 code is sign s (bit 3) + E2M1 magnitude m (bits 2..0); code 1000 (-0) is the group's special value
// SV (selector 0..3: +10, -10, +16, -16 grid units, grid = 2 x E2M1). Placing m at bits 9..11 and s at bit 15 of
// an f16 gives exactly (-1)^s E2M1(m) x 2^-14 = grid x 2^-15 (m = 1 is the f16 subnormal 2^-15: E2M1's own
// subnormal maps onto f16's), so the decode is bit placement plus a patch of the one SV code:
//   p   = placed bits                                  (1-4 integer ops, by register: see the layout)
//   v   = ~p & 0x8E00 per half                         (1 LOP3; the SV code becomes 0x0E00 = 12 x 2^-15, the
//                                                       unique largest value, every other code <= 8 x 2^-15)
//   ind = relu(v x 2^13 - 2)                           (1 HFMA2.RELU: exactly 1 for the SV code, else 0)
//   a   = ind x K + p                                  (1 HFMA2: K = the group's SV x 2^-15, set once per group)
// The 2^15 lives in the channel scale (the repack multiplies Δ_ch by 2^15; exact). bf16 outputs convert the f16
// pair (exact: every value is a small integer times 2^-15).
// Tile word layout (lowbit-core repack.rs, TiledFormat::Mix4): register r = codes (a_{2r}, a_{2r+1}), the even
// code in the low half at the bit positions below and the odd code at the same positions + 16:
//   r0: m 9..11, s 15 (no shift)   r1: m 0..2, s 6 (<< 9)   r2: m 3..5 (<< 6), s 7 (<< 8)   r3: m 12..14 (>> 3), s 8 (<< 7)
// (no four translates of {9,10,11,15} tile a 16-bit half, so two registers need separate shifts for m and s).
struct Mix4 {
    static constexpr int kTiles = 4, kBits = 4;
    static constexpr bool kHasHi = false, kIsLut = false;
    static constexpr int kEntries = 0;
    // f16 bits of SV x 2^-15 by selector: +10 -> 0x0D00, -10 -> 0x8D00, +16 -> 0x1000, -16 -> 0x9000.
    __host__ __device__ static constexpr uint32_t sv_bits(uint32_t sel) {
        return 0x0D00u + (sel & 2u) * 0x180u + (sel & 1u) * 0x8000u;
    }
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        c.zc[0] = sv_bits(aux & 3u) * 0x10001u;         // row g
        c.zc[1] = sv_bits((aux >> 8) & 3u) * 0x10001u;  // row g + 8
    }
    __device__ static uint32_t patch(uint32_t p, uint32_t k) {
        const uint32_t v = ~p & 0x8E008E00u;
        const uint32_t kScale = 0x70007000u, kMinus2 = 0xC000C000u;  // (8192, 8192), (-2, -2)
        const __half2 ind = __hfma2_relu(*reinterpret_cast<const __half2*>(&v), *reinterpret_cast<const __half2*>(&kScale),
                                         *reinterpret_cast<const __half2*>(&kMinus2));
        const __half2 r = __hfma2(ind, *reinterpret_cast<const __half2*>(&k), *reinterpret_cast<const __half2*>(&p));
        return *reinterpret_cast<const uint32_t*>(&r);
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j];
        uint32_t h[4];
        h[0] = patch(q & 0x8E008E00u, c.zc[0]);
        h[1] = patch((q << 9) & 0x8E008E00u, c.zc[1]);
        h[2] = patch(((q << 6) & 0x0E000E00u) | ((q << 8) & 0x80008000u), c.zc[0]);
        h[3] = patch(((q >> 3) & 0x0E000E00u) | ((q << 7) & 0x80008000u), c.zc[1]);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            if constexpr (std::is_same_v<T, __half>) {
                a[r] = h[r];
            } else {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[r]));
                a[r] = Pair<T>::pack(f.x, f.y);
            }
        }
    }
};

// ---- BitMoD FP3 (mixed datatype), byte-permute decode: no shared-memory table -------------------------------
// A BitMoD FP3 code is sign (bit 2) + E2M0 magnitude (bits 1..0: 0, 1, 2, 4); code 100 (-0) is the group's special value
// (selector 0..3: +3, -3, +6, -6). Every value v of the 8 codes, as f16 (and as bf16), has at most two significant bits,
// so its f16 is (high byte) << 8: one PRMT against two per-group table registers looks up FOUR codes at once (a 3-bit
// index per selector nibble, bit 3 of each nibble clear), and two more PRMTs spread the four high bytes into the two
// f16 pairs of the A fragment with zero low bytes:
//   tg  = prmt(kF16Lo, hi_g, sel)        bytes (v(a0), v(a1), v(a4), v(a5)) of row g   (selector nibbles 0..3)
//   a0  = prmt(tg, 0, 0x1404)            f16 pair (a0, a1): bytes (0, tg.0, 0, tg.1)
//   a2  = prmt(tg, 0, 0x3424)            f16 pair (a4, a5)
// and the same for row g + 8 from sel >> 16 (nibbles 4..7: a2, a3, a6, a7). kF16Lo holds codes 0..3 (0, 1, 2, 4: the
// same for every group), hi_g codes 4..7 (SV, -1, -2, -4: byte 0 set once per group from the selector, like INT4's
// zero-point constants). Outputs are the grid values themselves (no scale to fold). bf16 values need both bytes
// (1.0 = 0x3F80): two lookups per four codes (high and low byte tables) and one PRMT per pair interleaving them.
// Per tile: 2 (selector) + 2 + 4 PRMTs (f16) against INT4's 10 and the pair table's 4 shared-memory loads + ~8.
// Tile words (lowbit-core repack.rs, TiledFormat::Mix3): the lane's six words of a k-step (w[0..3], then the
// high-bit stream's h[0..1]: 24 bytes for 8 tiles, as INT3) W0..W5. Tile j < 6 has its 8 codes in word Wj, code of
// nibble n at bits 4n..4n+2, nibbles (a0, a1, a4, a5, a2, a3, a6, a7); bit 4n+3 of every word is spare. Tiles 6 and
// 7 live in the spare bits: bit b of tile 6's nibble-n code is bit 4n+3 of W_b, of tile 7's of W_{3+b}.
struct Mix3 {
    static constexpr int kTiles = 8, kBits = 3;
    static constexpr bool kHasHi = true, kIsLut = false;
    static constexpr int kEntries = 0;
    // f16 high bytes of the codes 0..3 (0, 1, 2, 4) and 5..7 (-1, -2, -4); byte 0 of the second word = the SV's.
    static constexpr uint32_t kF16Lo = 0x44403C00u, kF16Hi = 0xC4C0BC00u;
    // bf16 high and low bytes of the same values (1 = 0x3F80, 2 = 0x4000, 4 = 0x4080).
    static constexpr uint32_t kBfHiLo = 0x40403F00u, kBfHiHi = 0xC0C0BF00u, kBfLoLo = 0x80008000u, kBfLoHi = 0x80008000u;
    // The SV's bytes by selector: +3 (f16 0x4200, bf16 0x4040), -3, +6 (0x4600, 0x40C0), -6.
    __host__ __device__ static constexpr uint32_t sv_f16(uint32_t sel) { return 0x42u + (sel & 2u) * 2u + (sel & 1u) * 0x80u; }
    __host__ __device__ static constexpr uint32_t sv_bf16_hi(uint32_t sel) { return 0x40u + (sel & 1u) * 0x80u; }
    __host__ __device__ static constexpr uint32_t sv_bf16_lo(uint32_t sel) { return 0x40u + (sel & 2u) * 0x40u; }
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        const uint32_t sg = aux & 3u, sg8 = (aux >> 8) & 3u;
        if constexpr (std::is_same_v<T, __half>) {
            c.zc[0] = kF16Hi | sv_f16(sg);
            c.zc[1] = kF16Hi | sv_f16(sg8);
        } else {
            c.zc[0] = kBfHiHi | sv_bf16_hi(sg);
            c.zc[1] = kBfHiHi | sv_bf16_hi(sg8);
            c.zc[2] = kBfLoHi | sv_bf16_lo(sg);
            c.zc[3] = kBfLoHi | sv_bf16_lo(sg8);
        }
    }
    // Selector nibbles of tile j: code of nibble n at bits 4n..4n+2, bit 4n+3 clear (PRMT reads bits 15..0 only).
    __device__ static uint32_t selectors(const uint32_t* w, const uint32_t* h, int j) {
        if (j < 6) return (j < 4 ? w[j] : h[j - 4]) & 0x77777777u;
        const uint32_t x0 = j == 6 ? w[0] : w[3], x1 = j == 6 ? w[1] : h[0], x2 = j == 6 ? w[2] : h[1];
        return ((x0 >> 3) & 0x11111111u) | ((x1 >> 2) & 0x22222222u) | ((x2 >> 1) & 0x44444444u);
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t* h, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t sel = selectors(w, h, j), sel8 = sel >> 16;
        if constexpr (std::is_same_v<T, __half>) {
            const uint32_t tg = prmt(kF16Lo, c.zc[0], sel), tg8 = prmt(kF16Lo, c.zc[1], sel8);
            a[0] = prmt(tg, 0u, 0x1404u);
            a[1] = prmt(tg8, 0u, 0x1404u);
            a[2] = prmt(tg, 0u, 0x3424u);
            a[3] = prmt(tg8, 0u, 0x3424u);
        } else {
            const uint32_t hg = prmt(kBfHiLo, c.zc[0], sel), hg8 = prmt(kBfHiLo, c.zc[1], sel8);
            const uint32_t lg = prmt(kBfLoLo, c.zc[2], sel), lg8 = prmt(kBfLoLo, c.zc[3], sel8);
            a[0] = prmt(lg, hg, 0x5140u);
            a[1] = prmt(lg8, hg8, 0x5140u);
            a[2] = prmt(lg, hg, 0x7362u);
            a[3] = prmt(lg8, hg8, 0x7362u);
        }
    }
};

}  // namespace wo
}  // namespace lowbit
