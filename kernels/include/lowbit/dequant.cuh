// lowbit/dequant.cuh: per-format value decoding shared by the dequantizer (kernels/dequant) and,
// later, the GEMM kernels' main loops.
//
// Everything here is the arithmetic that docs/formats.md fixes, written once. The GPU results must
// be bit-identical to lowbit-core's CPU dequantizer, so each function is a literal transcription
// of the spec's f32 expression, in the spec's order, followed by one round-to-nearest-even
// conversion to the output type.
//
// Floating-point contraction: nvcc contracts a*b+c into an FMA by default (-fmad=true). None of the
// expressions below has a separate multiply feeding an add, so contraction cannot change them:
// INT affine, LUT and BitMoD are lone multiplies (BitMoD's two multiplies are chained, never added),
// and bipolar's multiply-add is an *explicit* fused fmaf, matching Rust's f32::mul_add. That is why
// the kernels build with the default -fmad and still match the CPU bit for bit. Do not add an
// addition to any of these without making it explicit (__fadd_rn / __fmul_rn).
//
// Functions are __host__ __device__ so that lowbit's host emulation of the kernels (the *_host
// launchers in lowbit_kernels.h) runs the very same code on the CPU.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <math.h>
#include <stdint.h>

#define LOWBIT_HD __host__ __device__ __forceinline__

// `#pragma unroll` for loops in __host__ __device__ code: the host compiler (gcc) would warn
// about the unknown pragma, so it is only emitted in the device compilation pass.
#if defined(__CUDA_ARCH__)
#define LOWBIT_UNROLL _Pragma("unroll")
#else
#define LOWBIT_UNROLL
#endif

namespace lowbit {

// ---------------------------------------------------------------------------------------------
// Code bitstreams (INT affine, BitMoD, LUT)
//
// Each row is an LSB-first stream of `bits`-bit codes: code c occupies stream bits
// [c*bits, c*bits + bits), stream bit j is bit j%32 of word j/32, and each row starts on a fresh
// word (words_per_row = ceil(k*bits/32)). For bits in {3,5,6,7} a code can straddle two words.
// ---------------------------------------------------------------------------------------------

/// Words of one bitstream row: ceil(k*bits / 32).
LOWBIT_HD int64_t bitstream_words_per_row(int64_t k, int bits) { return (k * bits + 31) / 32; }

/// Mask of the low `bits` bits (bits in 1..32).
LOWBIT_HD uint32_t low_mask(int bits) { return bits >= 32 ? 0xFFFFFFFFu : ((1u << bits) - 1u); }

/// One code of a row: code `c` of the stream starting at `row`. Reads the second word only when
/// the code straddles, so it never reads past the row's last word.
LOWBIT_HD uint32_t bitstream_code(const uint32_t *__restrict__ row, int64_t c, int bits) {
    const uint64_t bit = static_cast<uint64_t>(c) * static_cast<uint64_t>(bits);
    const uint64_t w = bit >> 5;
    const uint32_t o = static_cast<uint32_t>(bit & 31);
    uint32_t v = row[w] >> o;
    if (o + bits > 32) v |= row[w + 1] << (32 - o);
    return v & low_mask(bits);
}

/// `count` consecutive codes starting at code `c0` of a row, packed into one 64-bit window:
/// code c0+j sits at bits [j*bits, j*bits + bits). Requires count*bits <= 64.
///
/// Why a window: a thread that decodes 8 neighbouring codes loads the (at most 3) words they span
/// once, instead of one or two loads per code. Words beyond the last one the codes touch are not
/// read, so a row's tail never reads into the next row or past the buffer.
LOWBIT_HD uint64_t bitstream_window(const uint32_t *__restrict__ row, int64_t c0, int count,
                                    int bits) {
    const uint64_t bit0 = static_cast<uint64_t>(c0) * static_cast<uint64_t>(bits);
    const uint64_t w0 = bit0 >> 5;
    const uint32_t o = static_cast<uint32_t>(bit0 & 31);
    const uint64_t w_last = (bit0 + static_cast<uint64_t>(count * bits) - 1) >> 5;
    const uint32_t a = row[w0];
    const uint32_t b = (w_last >= w0 + 1) ? row[w0 + 1] : 0u;
    const uint32_t c = (w_last >= w0 + 2) ? row[w0 + 2] : 0u;
    // o + count*bits <= 31 + 64 < 96 bits: a|b|c always hold the whole window.
    uint64_t win = ((static_cast<uint64_t>(b) << 32) | a) >> o;
    if (o != 0) win |= static_cast<uint64_t>(c) << (64 - o);
    return win;
}

/// Code j of a window made by bitstream_window.
LOWBIT_HD uint32_t window_code(uint64_t window, int j, int bits) {
    return static_cast<uint32_t>(window >> (j * bits)) & low_mask(bits);
}

// ---------------------------------------------------------------------------------------------
// Scalar metadata decoding
// ---------------------------------------------------------------------------------------------

/// f32 value of an f16 stored as its bit pattern (exact).
LOWBIT_HD float f16_bits_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }

/// A quiet NaN, used to mark outputs whose metadata index was out of range.
LOWBIT_HD float quiet_nan() { return NAN; }

// ---------------------------------------------------------------------------------------------
// INT affine: w = f32(q - z) * f32(s)
// ---------------------------------------------------------------------------------------------

/// Zero point of the symmetric INT format: 2^(bits-1).
LOWBIT_HD int int_symmetric_zero(int bits) { return 1 << (bits - 1); }

/// INT affine value: q - z is an exact small integer, so f32(q - z) is exact and the product is the
/// spec's single rounding in f32.
LOWBIT_HD float int_affine_value(uint32_t q, int z, float scale) {
    return static_cast<float>(static_cast<int>(q) - z) * scale;
}

// ---------------------------------------------------------------------------------------------
// bipolar-INT: value = 2u - (2^p - 1), w = fma(value, scale, offset)
// ---------------------------------------------------------------------------------------------

/// The odd integer a p-bit bipolar code stands for: sum_i (2*u_i - 1) * 2^i = 2u - (2^p - 1).
LOWBIT_HD float bipolar_level(uint32_t u, int bits) {
    return static_cast<float>(2 * static_cast<int>(u) - ((1 << bits) - 1));
}

/// One fused multiply-add in f32, exactly as Rust's `level.mul_add(scale, offset)`.
LOWBIT_HD float bipolar_value(uint32_t u, int bits, float scale, float offset) {
#ifdef __CUDA_ARCH__
    return __fmaf_rn(bipolar_level(u, bits), scale, offset);
#else
    return fmaf(bipolar_level(u, bits), scale, offset);  // correctly rounded fused op (C99)
#endif
}

/// Transposes 8 bits of each of `bits` planes into 8 codes: `plane_bytes[i]` holds bit i of the
/// codes of 8 consecutive elements (element j at bit j); returns code j in byte j of the result.
/// Planes beyond `bits` are ignored.
LOWBIT_HD uint64_t bipolar_gather8(const uint32_t (&plane_bytes)[8], int bits) {
    uint64_t codes = 0;
    for (int i = 0; i < bits; ++i) {
        // Spread the 8 bits of plane i to bit i of each of the 8 output bytes.
        uint64_t b = plane_bytes[i] & 0xFFu;
        b = (b | (b << 28)) & 0x0000000F0000000Full;
        b = (b | (b << 14)) & 0x0003000300030003ull;
        b = (b | (b << 7)) & 0x0101010101010101ull;
        codes |= b << i;
    }
    return codes;
}

// ---------------------------------------------------------------------------------------------
// BitMoD mixed datatypes (FP3 / FP4 with one redefined special value per group)
//
// Values are in grid units (integers); the per-group scale absorbs the paper's factor. The code's
// top bit is the sign, the rest index the magnitude table. The "negative zero" code (sign set,
// magnitude 0) is the group's special value, picked by the 2-bit selector:
//
//   bits | magnitudes (code 0..)     | special by selector 0, 1, 2, 3
//   4    | 0 1 2 3 4 6 8 12          | +10 -10 +16 -16     (FP4 E2M1 x2; paper's +-5, +-8)
//   3    | 0 1 2 4                   | +3  -3  +6  -6      (FP3 E2M0)
//
// Magnitudes are packed one nibble each into a 32-bit constant and picked with a shift, so the
// decode is a few ALU ops with no memory lookup (and no divergent constant-cache access).
// ---------------------------------------------------------------------------------------------

/// FP4 magnitudes {0,1,2,3,4,6,8,12}, nibble m = magnitude of code m.
constexpr uint32_t kBitmodFp4Magnitudes = 0xC8643210u;
/// FP3 magnitudes {0,1,2,4}, nibble m = magnitude of code m.
constexpr uint32_t kBitmodFp3Magnitudes = 0x00004210u;

/// The table as docs/formats.md writes it, for checking the packed constants.
constexpr int kBitmodFp4Table[8] = {0, 1, 2, 3, 4, 6, 8, 12};
constexpr int kBitmodFp3Table[4] = {0, 1, 2, 4};
constexpr int kBitmodFp4Special[4] = {10, -10, 16, -16};
constexpr int kBitmodFp3Special[4] = {3, -3, 6, -6};

constexpr bool bitmod_tables_consistent() {
    for (int m = 0; m < 8; ++m)
        if (static_cast<int>((kBitmodFp4Magnitudes >> (4 * m)) & 0xF) != kBitmodFp4Table[m])
            return false;
    for (int m = 0; m < 4; ++m)
        if (static_cast<int>((kBitmodFp3Magnitudes >> (4 * m)) & 0xF) != kBitmodFp3Table[m])
            return false;
    return true;
}
static_assert(bitmod_tables_consistent(), "packed BitMoD magnitudes disagree with the spec table");

/// Special value of a group: +-10/+-16 (FP4) or +-3/+-6 (FP3). Selector bit 0 = sign,
/// bit 1 = the larger magnitude (EA instead of ER).
LOWBIT_HD int bitmod_special(int bits, uint32_t selector) {
    const int mag = (bits == 4) ? ((selector & 2u) ? 16 : 10) : ((selector & 2u) ? 6 : 3);
    return (selector & 1u) ? -mag : mag;
}

/// Grid value of a `bits`-bit (3 or 4) BitMoD code under a group's 2-bit selector.
LOWBIT_HD int bitmod_grid_value(uint32_t code, int bits, uint32_t selector) {
    const uint32_t sign = (code >> (bits - 1)) & 1u;
    const uint32_t m = code & low_mask(bits - 1);
    if (sign && m == 0) return bitmod_special(bits, selector);
    const uint32_t table = (bits == 4) ? kBitmodFp4Magnitudes : kBitmodFp3Magnitudes;
    const int mag = static_cast<int>((table >> (4 * m)) & 0xFu);
    return sign ? -mag : mag;
}

/// Group scale: f32(q_g) * f32(channel scale); exact in f32 (8-bit x 11-bit significands).
LOWBIT_HD float bitmod_group_scale(uint8_t q_g, float channel_scale) {
    return static_cast<float>(q_g) * channel_scale;
}

/// BitMoD value: f32(grid) * group_scale; exact in f32 (<= 5-bit x 19-bit significands).
LOWBIT_HD float bitmod_value(int grid, float group_scale) {
    return static_cast<float>(grid) * group_scale;
}

/// 2-bit selector of group g of a row: bits 2(g%4)..2(g%4)+1 of byte g/4.
LOWBIT_HD uint32_t bitmod_selector(const uint8_t *__restrict__ row_selectors, int64_t g) {
    return (static_cast<uint32_t>(row_selectors[g >> 2]) >> (2 * (g & 3))) & 3u;
}

// ---------------------------------------------------------------------------------------------
// LUT formats: w = lut[code] * f32(scale)
// ---------------------------------------------------------------------------------------------

/// LUT value: one f32 multiply of the table entry by the group's f16 absmax.
LOWBIT_HD float lut_value(float entry, float scale) { return entry * scale; }

// ---------------------------------------------------------------------------------------------
// Output conversion: one round-to-nearest-even f32 -> 16-bit conversion, returned as bits.
// ---------------------------------------------------------------------------------------------

/// Output element types; `bits(x)` is the RNE-rounded 16-bit pattern of x.
struct OutF16 {
    static LOWBIT_HD uint16_t bits(float x) { return __half_as_ushort(__float2half_rn(x)); }
};
struct OutBf16 {
    static LOWBIT_HD uint16_t bits(float x) {
        return __bfloat16_as_ushort(__float2bfloat16_rn(x));
    }
};

}  // namespace lowbit
