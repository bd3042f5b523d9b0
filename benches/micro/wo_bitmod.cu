// Check + micro-benchmark of the BitMoD weight-only decoders on the small-M (mma.sync) GEMM, one process, with INT4 and
// cuBLAS f16 in the same run:
//
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Xptxas=--warn-on-spills \
//        -Ikernels/include benches/micro/wo_bitmod.cu -o wo_bitmod -ldl
//   ./wo_bitmod check   # BitMoD FP4: Mix4 (arithmetic decode) and Lut<4> (pair tables) vs an f64 CPU reference
//                       # (random codes / selectors / u8 group scales / f16 channel scales, odd N, g32 and g128,
//                       # M in {1, 5, 16, 29}, f16 and bf16, NaN-poisoned outputs) + the identity test (X = I gives
//                       # the dequantized weights bit for bit)
//                       # BitMoD FP3: Mix3 (byte-permute decode, f16 / bf16, also at 4 blocks per SM) and Lut<3>
//                       # against the same reference (g32 / g64 / g128), identity bit-exact
//   ./wo_bitmod pdl     # INT4 g128 on the legacy default stream and on a non-blocking stream (run with LOWBIT_PDL=0
//                       # and without it: programmatic dependent launch on either stream)
//   ./wo_bitmod bench   # M in {1, 16} on 28672x8192 and 4096x4096: INT4 g128, BitMoD W4 table / Mix4, BitMoD W3
//                       # table / Mix3 (+ at the old block caps), INT3 g128, Mix4P, cuBLAS f16 (libcublas.so.13, dlopen'ed: put its folder on LD_LIBRARY_PATH)
//   Eighth session (NOTES.md "Mix4 gap"):
//   ./wo_bitmod check4  # Mix4 and its correct variants (Mix4Q, Mix4R3, Mix4V, Mix4W, Mix4V3) vs the f64 reference, split-K and
//                       # the library's compact-X plan at M = 1; identity bit-exact
//   ./wo_bitmod bench2  # 28672x8192, 8192x28672, 4096^2 at M = 1 / 16: INT4 (first and last), Mix4 / Q / P / N (no-patch
//                       # ablation) / R3, Mix3; split-K plan, and at M = 1 also the library plan; cuBLAS f16
//   ./wo_bitmod bench3  # the same shapes, library plan: INT4, Mix4, Mix4V, Mix4W (M = 1) / Mix4V3 (M = 16), Mix4N, twice
//   ./wo_bitmod bench4  # v15 load-ahead: 4 shapes x M = 1 / 16, library plan, INT4 / Mix4 / Mix3 with g_la off / on
//                       # (alternating on one set of weights), cuBLAS f16; checks run with LOWBIT_WO_LA=1 in the environment
//   Round 2 (NOTES.md "Mix4S"):
//   ./wo_bitmod check5  # Mix4S / Mix4SV (SV by a second HMMA) f16 / bf16 vs the f64 reference, split-K and compact X; identity
//   ./wo_bitmod bench5  # 4 shapes x M = 1 / 16, library plan: INT4 (first, last), Mix4 (twice), Mix4S, Mix4SV, cuBLAS f16
//   ./wo_bitmod prof FMT N K M lib|splitk   # 3 launches of one configuration, for ncu -k regex:gemm_kernel --launch-skip 2 -c 1
//
// Launches go through wo_gemm.cuh's launch_mt (the production instances' register caps and split re-pick) with the
// mma.sync plan of wo_launch.cu make_plan (m-tile, ~8 blocks per SM of split-K, X chunk 2048 / MT columns) and the
// convert kernel after split-K. Times are medians of back-to-back calls over weight copies rotated through > 200 MB
// (benches/micro/baselines.cuh); cuBLAS is timed the same way.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <utility>
#include <vector>

#include "baselines.cuh"
#define LOWBIT_WO_PROBE 1  // g_la (v15 load-ahead) and the v13 / v14 toggles (left at the library rule)
#include "lowbit/wo_gemm.cuh"

using namespace lowbit::wo;
using lowbit::prmt;
#define CK MICRO_CK

static int g_sms = 132;

// BitMoD grid values (lowbit-core bitmod.rs): FP4 magnitudes and the special value of code 1000 by selector.
static int grid4(int sel, int code) {
    static const int mag[8] = {0, 1, 2, 3, 4, 6, 8, 12}, sv[4] = {10, -10, 16, -16};
    if (code == 8) return sv[sel];
    return (code & 8) ? -mag[code & 7] : mag[code & 7];
}

// Fragment element e (a0..a7) of lane -> (row within the strip, column within the tile).
static void lane_elem(int e, int lane, int& row, int& col) {
    const int g = lane >> 2, t = lane & 3;
    row = g + ((e >> 1) & 1) * 8;
    col = 2 * t + (e & 1) + (e >> 2) * 8;
}

// Mix4 bit positions of code a_e: magnitude base and sign bit (wo_decode.cuh Mix4 layout).
static void mix4_pos(int e, int& mbase, int& sbit) {
    static const int mb[4] = {9, 0, 3, 12}, sb[4] = {15, 6, 7, 8};
    mbase = mb[e >> 1] + 16 * (e & 1);
    sbit = sb[e >> 1] + 16 * (e & 1);
}

enum Layout { kInt4 = 0, kLut4 = 1, kMix4 = 2, kLut3 = 3, kMix3 = 4, kMix4P = 5 };

// BitMoD FP3 grid values: magnitudes 0, 1, 2, 4; code 100 = the special value by selector.
static int grid3(int sel, int code) {
    static const int mag[4] = {0, 1, 2, 4}, sv[4] = {3, -3, 6, -6};
    if (code == 4) return sv[sel];
    return (code & 4) ? -mag[code & 3] : mag[code & 3];
}

// Mix3: nibble of fragment element a_e within a tile's selector word (a0, a1, a4, a5, a2, a3, a6, a7).
static int mix3_nib(int e) {
    static const int nib[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    return nib[e];
}

// Mix3 at the generic 3-bit block caps (3 per SM at the 8-row m-tile, 2 at the 16-row one), i.e. before the library
// gave f16 Mix3 one block more at both (occupancy lever, v8: blocks per SM decide the speed of this kernel).
struct Mix3Old : Mix3 {};

// ---- Mix4P: BitMoD FP4 by byte permutes (experiment, this harness only; measured no faster than Mix4: NOTES.md) ----
// Every BitMoD FP4 grid value (0, ±1, ±2, ±3, ±4, ±6, ±8, ±12 and the SVs ±10, ±16) is an f16 with a zero low byte.
// Per four codes of one row (selector nibbles: magnitude in bits 0..2, sign in bit 3): one PRMT looks the magnitudes up
// in the positive table, one in the negative table (its byte 0 = the group's SV: code 1000), one sign-replicating PRMT
// turns the four sign bits into byte masks, one LOP3 selects, and two PRMTs spread the bytes into f16 pairs.
// Tile word: code a_i in nibble [0, 1, 4, 5, 2, 3, 6, 7][i] (row g's four codes in the low half). 15 per tile.
__device__ __forceinline__ uint32_t prmt_sx(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("prmt.b32 %0, %1, %2, %3;" : "=r"(d) : "r"(a), "r"(b), "r"(c));  // with the sign-replicate bit of c
    return d;
}
struct Mix4P {
    static constexpr int kTiles = 4, kBits = 4;
    static constexpr bool kHasHi = false, kIsLut = false;
    static constexpr int kEntries = 0;
    static constexpr uint32_t kPos0 = 0x42403C00u, kPos1 = 0x4A484644u, kNeg0 = 0xC2C0BC00u, kNeg1 = 0xCAC8C6C4u;
    // f16 high byte of the SV by selector: +10 (0x4900), -10, +16 (0x4C00), -16.
    __host__ __device__ static constexpr uint32_t sv_f16(uint32_t sel) { return 0x49u + (sel >> 1) * 3u + (sel & 1u) * 0x80u; }
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        c.zc[0] = kNeg0 | sv_f16(aux & 3u);
        c.zc[1] = kNeg0 | sv_f16((aux >> 8) & 3u);
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j], mm = q & 0x77777777u, mm8 = mm >> 16, q4 = q << 4;
        const uint32_t tp = lowbit::prmt(kPos0, kPos1, mm), tn = lowbit::prmt(c.zc[0], kNeg1, mm), mk = prmt_sx(q, q4, 0x9D8Cu);
        const uint32_t tp8 = lowbit::prmt(kPos0, kPos1, mm8), tn8 = lowbit::prmt(c.zc[1], kNeg1, mm8), mk8 = prmt_sx(q, q4, 0xBFAEu);
        const uint32_t t = (tn & mk) | (tp & ~mk), t8 = (tn8 & mk8) | (tp8 & ~mk8);
        uint32_t h[4] = {prmt(t, 0u, 0x1404u), prmt(t8, 0u, 0x1404u), prmt(t, 0u, 0x3424u), prmt(t8, 0u, 0x3424u)};
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            if constexpr (std::is_same_v<T, __half>) {
                a[r] = h[r];
            } else {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[r]));
                a[r] = lowbit::wo::Pair<T>::pack(f.x, f.y);
            }
        }
    }
};


// ---- Mix4 variants for the eighth session's Mix4 gap measurement (helper wo-mix4; NOTES.md "Mix4 gap") ----------------
// Mix4N: Mix4's bit placement without the special-value patch (a = p): a timing-only ablation (wrong for the SV code,
// never checked), it prices the patch (4 LOP3 + 8 HFMA2 per tile).
struct Mix4N : Mix4 {
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx&, uint32_t (&a)[4]) {
        const uint32_t q = w[j];
        a[0] = q & 0x8E008E00u;
        a[1] = (q << 9) & 0x8E008E00u;
        a[2] = ((q << 6) & 0x0E000E00u) | ((q << 8) & 0x80008000u);
        a[3] = ((q >> 3) & 0x0E000E00u) | ((q << 7) & 0x80008000u);
    }
};
// Mix4R3: Mix4 at 3 blocks per SM at the 8- and 16-row m-tiles (85 / 80 registers instead of the 64 of 4 blocks):
// whether the register cap, not the instruction count, costs Mix4 its time.
struct Mix4R3 : Mix4 {};
// Mix4Q: Mix4 with a cheaper group context: the SV's f16 high byte by one PRMT from a 4-byte table (selector 0..3 ->
// 0x0D, 0x8D, 0x10, 0x90) instead of the arithmetic of sv_bits (7 instead of ~12 instructions per group).
struct Mix4Q : Mix4 {
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        constexpr uint32_t kTab = 0x90108D0Du;
        const uint32_t s = aux & 0x0303u;
        c.zc[0] = prmt(kTab, 0u, (s & 3u) * 0x1010u + 0x0404u);
        c.zc[1] = prmt(kTab, 0u, (s >> 8) * 0x1010u + 0x0404u);
    }
};
// Mix4V: Mix4 with the SV patch's v = ~p & M computed as M - p by an IMAD (p is a bit subset of M, so the subtraction
// never borrows) on the FMA pipe instead of a LOP3 on the ALU pipe: 4 of the 12 ALU-pipe ops per tile move to the FMA
// pipe (ncu, call 1: Mix4 is bound by the ALU pipe on the 4-block SMs, its FP16 / IMAD work is nearly free). The
// multiplier -1 comes from the group context as (aux >> 31) - 1 (aux < 2^31 by the layout), so that ptxas cannot fold
// the IMAD into an IADD3 (ALU pipe) as it does for a literal -1.
struct Mix4V : Mix4 {
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        Mix4::ctx<T>(aux, c);
        c.zc[2] = (aux >> 31) - 1u;  // 0xFFFFFFFF
    }
    __device__ static uint32_t patch_v(uint32_t p, uint32_t k, uint32_t neg1) {
        uint32_t v;
        asm("mad.lo.u32 %0, %1, %2, %3;" : "=r"(v) : "r"(p), "r"(neg1), "r"(0x8E008E00u));
        const uint32_t kScale = 0x70007000u, kMinus2 = 0xC000C000u;
        const __half2 ind = __hfma2_relu(*reinterpret_cast<const __half2*>(&v), *reinterpret_cast<const __half2*>(&kScale),
                                         *reinterpret_cast<const __half2*>(&kMinus2));
        const __half2 r = __hfma2(ind, *reinterpret_cast<const __half2*>(&k), *reinterpret_cast<const __half2*>(&p));
        return *reinterpret_cast<const uint32_t*>(&r);
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j], n1 = c.zc[2];
        uint32_t h[4];
        h[0] = patch_v(q & 0x8E008E00u, c.zc[0], n1);
        h[1] = patch_v((q << 9) & 0x8E008E00u, c.zc[1], n1);
        h[2] = patch_v(((q << 6) & 0x0E000E00u) | ((q << 8) & 0x80008000u), c.zc[0], n1);
        h[3] = patch_v(((q >> 3) & 0x0E000E00u) | ((q << 7) & 0x80008000u), c.zc[1], n1);
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
// Mix4W: Mix4V, and register 2's m shift (q << 6) as an IMAD by an opaque 64 (ptxas issued it as SHF on the ALU pipe).
struct Mix4W : Mix4V {
    template <typename T>
    __device__ static void ctx(uint32_t aux, GroupCtx& c) {
        Mix4V::ctx<T>(aux, c);
        c.zc[3] = c.zc[2] & 64u;  // 64
    }
    template <typename T>
    __device__ static void decode(const uint32_t* w, const uint32_t*, int j, const GroupCtx& c, uint32_t (&a)[4]) {
        const uint32_t q = w[j], n1 = c.zc[2];
        uint32_t q6;
        asm("mul.lo.u32 %0, %1, %2;" : "=r"(q6) : "r"(q), "r"(c.zc[3]));
        uint32_t h[4];
        h[0] = patch_v(q & 0x8E008E00u, c.zc[0], n1);
        h[1] = patch_v((q << 9) & 0x8E008E00u, c.zc[1], n1);
        h[2] = patch_v((q6 & 0x0E000E00u) | ((q << 8) & 0x80008000u), c.zc[0], n1);
        h[3] = patch_v(((q >> 3) & 0x0E000E00u) | ((q << 7) & 0x80008000u), c.zc[1], n1);
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
// Mix4S (round 2, helper wo-mix4b; NOTES.md "Mix4S"): the SV patch off the A operand. decode_sv gives Mix4's bit placement p
// unpatched (the SV code 1000 places as -0: it contributes nothing) and the indicator ind = relu(v x c - d) of Mix4's patch
// (v = p ^ M: exactly 1 at the SV code, 0 elsewhere); the kernel (wo_gemm.cuh sv_mma) multiplies ind by X in a second
// HMMA into its own accumulators and adds SV x 2^-15 times them to the plain sums at the group flush (sv_scales: from the
// group's metadata word, no group context held in registers). Per tile: placement + 4 LOP3 + 4 HFMA2.RELU + 2 HMMA (Mix4: + 8 HFMA2, 1 HMMA).
// bf16: the indicator by a bf16 HFMA2.RELU on the same v bits (v = 0x0E00 is 2^-99 as bf16, every other positive v <=
// 2^-103: relu(v x 2^100 - 1) is 1 there, 0 elsewhere); p converts through f32 as in Mix4.
struct Mix4S : Mix4 {
    static constexpr bool kSvMma = true;
    // f32 bits of SV x 2^-15 by selector: +10 -> 0x39A00000 (1.25 x 2^-12), +16 -> 0x3A000000 (2^-11), odd selectors negative.
    __host__ __device__ static constexpr uint32_t sv_f32(uint32_t sel) { return 0x39A00000u + (sel & 2u) * 0x300000u + (sel << 31); }
    template <typename T>
    __device__ static void ctx(uint32_t, GroupCtx&) {}
    __device__ static void sv_scales(uint32_t aux, float& k0, float& k1) {
        k0 = __uint_as_float(sv_f32(aux & 3u));
        k1 = __uint_as_float(sv_f32((aux >> 8) & 3u));
    }
    // v = ~p & M (p is a bit subset of M).
    __device__ static uint32_t vbits(uint32_t p, const GroupCtx&) { return p ^ 0x8E008E00u; }
    template <typename T>
    __device__ static uint32_t ind(uint32_t v) {
        uint32_t r;
        if constexpr (std::is_same_v<T, __half>) {
            const uint32_t kScale = 0x70007000u, kMinus2 = 0xC000C000u;  // (8192, 8192), (-2, -2)
            const __half2 h = __hfma2_relu(*reinterpret_cast<const __half2*>(&v), *reinterpret_cast<const __half2*>(&kScale),
                                           *reinterpret_cast<const __half2*>(&kMinus2));
            r = *reinterpret_cast<const uint32_t*>(&h);
        } else {
            const uint32_t kScale = 0x71807180u, kMinus1 = 0xBF80BF80u;  // bf16 (2^100, 2^100), (-1, -1)
            const __nv_bfloat162 h = __hfma2_relu(*reinterpret_cast<const __nv_bfloat162*>(&v),
                                                  *reinterpret_cast<const __nv_bfloat162*>(&kScale),
                                                  *reinterpret_cast<const __nv_bfloat162*>(&kMinus1));
            r = *reinterpret_cast<const uint32_t*>(&h);
        }
        return r;
    }
    template <typename T, class F = Mix4S>
    __device__ static void decode_sv(const uint32_t* w, int j, const GroupCtx& c, uint32_t (&a)[4], uint32_t (&sv)[4]) {
        const uint32_t q = w[j];
        uint32_t h[4];
        h[0] = q & 0x8E008E00u;
        h[1] = (q << 9) & 0x8E008E00u;
        h[2] = ((q << 6) & 0x0E000E00u) | ((q << 8) & 0x80008000u);
        h[3] = ((q >> 3) & 0x0E000E00u) | ((q << 7) & 0x80008000u);
#pragma unroll
        for (int r = 0; r < 4; ++r) {
            sv[r] = ind<T>(F::vbits(h[r], c));
            if constexpr (std::is_same_v<T, __half>) {
                a[r] = h[r];
            } else {
                const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&h[r]));
                a[r] = Pair<T>::pack(f.x, f.y);
            }
        }
    }
};
// Mix4V3: Mix4V with 3 blocks per SM at the 16-row m-tile (Mix4V spills 36 bytes at the 4-block cap of 64 registers there).
struct Mix4V3 : Mix4V {};
// Mix4SV: Mix4S with the indicator's v = M - p by an IMAD (FMA pipe) instead of p ^ M by a LOP3 (ALU pipe), the -1 made
// opaque as a constant-bank operand (kNeg1: ptxas cannot fold it into an IADD3, and no register holds it). In Mix4S the indicator chain feeds only the second HMMA, so the extra
// dependent step that made Mix4V slower is off the plain decode's path; the ALU-pipe ops per tile drop to the placement's.
__constant__ uint32_t kNeg1 = 0xFFFFFFFFu;
struct Mix4SV : Mix4S {
    __device__ static uint32_t vbits(uint32_t p, const GroupCtx&) {
        uint32_t v;
        asm("mad.lo.u32 %0, %1, %2, %3;" : "=r"(v) : "r"(p), "r"(kNeg1), "r"(0x8E008E00u));
        return v;
    }
    template <typename T>
    __device__ static void decode_sv(const uint32_t* w, int j, const GroupCtx& c, uint32_t (&a)[4], uint32_t (&sv)[4]) {
        Mix4S::decode_sv<T, Mix4SV>(w, j, c, a, sv);
    }
};
namespace lowbit {
namespace wo {
template <>
constexpr int min_blocks<Mix4V3, 2, __half>() { return 3; }
// Mix4S at the 16-row m-tile: 3 blocks per SM (80 registers, no spills; at the 4-block cap of 64 it spills ~620 bytes:
// the SV accumulators are 8 more registers there).
template <>
constexpr int min_blocks<Mix4S, 2, __half>() { return 3; }
template <>
constexpr int min_blocks<Mix4S, 2, __nv_bfloat16>() { return 3; }
template <>
constexpr int min_blocks<Mix4SV, 2, __half>() { return 3; }
template <>
constexpr int min_blocks<Mix4SV, 2, __nv_bfloat16>() { return 3; }
template <>
constexpr int min_blocks<Mix4R3, 1, __half>() { return 3; }
template <>
constexpr int min_blocks<Mix4R3, 2, __half>() { return 3; }
}  // namespace wo
}  // namespace lowbit



struct Weight {
    int n, k, k_pad, strips, ksteps, groups, gl, kstep;
    std::vector<uint32_t> words, hi, meta;
    std::vector<float> chan, deq;  // deq: dequantized [n][k] (check only)
    uint32_t *d_words = nullptr, *d_hi = nullptr, *d_meta = nullptr;
    float *d_chan = nullptr, *d_lut = nullptr;
    int tables = 0;
    void upload() {
        CK(cudaMalloc(&d_words, words.size() * 4));
        CK(cudaMemcpy(d_words, words.data(), words.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&d_meta, meta.size() * 4));
        CK(cudaMemcpy(d_meta, meta.data(), meta.size() * 4, cudaMemcpyHostToDevice));
        if (!hi.empty()) {
            CK(cudaMalloc(&d_hi, hi.size() * 4));
            CK(cudaMemcpy(d_hi, hi.data(), hi.size() * 4, cudaMemcpyHostToDevice));
        }
        if (!chan.empty()) {
            CK(cudaMalloc(&d_chan, chan.size() * 4));
            CK(cudaMemcpy(d_chan, chan.data(), chan.size() * 4, cudaMemcpyHostToDevice));
        }
    }
    void free_dev() {
        cudaFree(d_words), cudaFree(d_hi), cudaFree(d_meta), cudaFree(d_chan), cudaFree(d_lut);
        d_words = d_hi = d_meta = nullptr, d_chan = d_lut = nullptr;
    }
};

static void upload_bitmod_tables(Weight& w, int bits) {
    std::vector<float> lut(4 * 16, 0.f);
    for (int s = 0; s < 4; ++s)
        for (int c = 0; c < (1 << bits); ++c) {
            if (bits == 4) {
                lut[s * 16 + c] = float(grid4(s, c));
            } else {
                static const int mag3[4] = {0, 1, 2, 4}, sv3[4] = {3, -3, 6, -6};
                lut[s * 8 + c] = c == 4 ? float(sv3[s]) : float((c & 4) ? -mag3[c & 3] : mag3[c & 3]);
            }
        }
    w.tables = 4;
    CK(cudaMalloc(&w.d_lut, lut.size() * 4));
    CK(cudaMemcpy(w.d_lut, lut.data(), lut.size() * 4, cudaMemcpyHostToDevice));
}

// A random BitMoD FP4 weight in the Mix4 or Lut4 tiled layout (same codes for the same seed), with its dequantized
// values grid * (q_g * chan) (exact in f32).
static Weight make_bitmod4(int n, int k, int gl, Layout lay, uint32_t seed) {
    std::mt19937 rng(seed);
    Weight w{};
    w.n = n, w.k = k, w.kstep = 64, w.gl = gl;
    w.k_pad = (k + 63) / 64 * 64;
    w.strips = (n + 15) / 16, w.ksteps = w.k_pad / 64, w.groups = w.k_pad / gl;
    const int ng = w.groups;
    std::vector<int> code(size_t(n) * k), sel(size_t(n) * ng), q(size_t(n) * ng);
    std::vector<float> ch(n);
    for (auto& c : code) c = int(rng() % 16);
    for (auto& s : sel) s = int(rng() % 4);
    for (auto& v : q) v = 1 + int(rng() % 255);
    for (auto& c : ch) c = __half2float(__float2half(1e-4f * float(1 + rng() % 400)));
    w.deq.assign(size_t(n) * k, 0.f);
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < k; ++c)
            w.deq[size_t(r) * k + c] =
                float(grid4(sel[size_t(r) * ng + c / gl], code[size_t(r) * k + c])) * (float(q[size_t(r) * ng + c / gl]) * ch[r]);
    w.words.assign(size_t(w.strips) * w.ksteps * 128, 0);
    for (int s = 0; s < w.strips; ++s)
        for (int ks = 0; ks < w.ksteps; ++ks)
            for (int lane = 0; lane < 32; ++lane)
                for (int j = 0; j < 4; ++j) {
                    uint32_t word = 0;
                    for (int e = 0; e < 8; ++e) {
                        int rr, cc;
                        lane_elem(e, lane, rr, cc);
                        const int row = s * 16 + rr, col = ks * 64 + j * 16 + cc;
                        const uint32_t c = (row < n && col < k) ? uint32_t(code[size_t(row) * k + col]) : 0u;  // pad: +0
                        if (lay == kLut4) {
                            word |= c << (4 * e);
                        } else if (lay == kMix4P) {
                            word |= c << (4 * mix3_nib(e));
                        } else {
                            int mb, sb;
                            mix4_pos(e, mb, sb);
                            word |= (c & 7u) << mb;
                            word |= ((c >> 3) & 1u) << sb;
                        }
                    }
                    w.words[((size_t(s) * w.ksteps + ks) * 32 + lane) * 4 + j] = word;
                }
    w.meta.assign(size_t(w.strips) * ng * 16, 0);
    for (int s = 0; s < w.strips; ++s)
        for (int gi = 0; gi < ng; ++gi)
            for (int g = 0; g < 8; ++g) {
                const int ra = s * 16 + g, rb = ra + 8;
                auto sc = [&](int r) -> uint32_t { return r < n ? __half_as_ushort(__float2half(float(q[size_t(r) * ng + gi]))) : 0u; };
                auto ax = [&](int r) -> uint32_t { return r < n ? uint32_t(sel[size_t(r) * ng + gi]) : 0u; };
                uint32_t* m = &w.meta[((size_t(s) * ng + gi) * 8 + g) * 2];
                m[0] = sc(ra) | (sc(rb) << 16);
                m[1] = ax(ra) | (ax(rb) << 8);
            }
    // Mix4 decodes grid x 2^-15: the channel scale carries the 2^15 (exact), as the repack stores it.
    const float fold = lay == kMix4 ? 32768.f : 1.f;
    w.chan.assign(size_t(w.strips) * 16, 0.f);
    for (int r = 0; r < n; ++r) w.chan[r] = ch[r] * fold;
    w.upload();
    if (lay == kLut4) upload_bitmod_tables(w, 4);
    return w;
}

// A random BitMoD FP3 weight in the Mix3 or Lut3 tiled layout (same codes for the same seed), with its dequantized
// values grid * (q_g * chan) (exact in f32).
static Weight make_bitmod3(int n, int k, int gl, Layout lay, uint32_t seed) {
    std::mt19937 rng(seed);
    Weight w{};
    w.n = n, w.k = k, w.kstep = 128, w.gl = gl;
    w.k_pad = (k + 127) / 128 * 128;
    w.strips = (n + 15) / 16, w.ksteps = w.k_pad / 128, w.groups = w.k_pad / gl;
    const int ng = w.groups;
    std::vector<int> code(size_t(n) * k), sel(size_t(n) * ng), q(size_t(n) * ng);
    std::vector<float> ch(n);
    for (auto& c : code) c = int(rng() % 8);
    for (auto& s : sel) s = int(rng() % 4);
    for (auto& v : q) v = 1 + int(rng() % 255);
    for (auto& c : ch) c = __half2float(__float2half(1e-4f * float(1 + rng() % 400)));
    w.deq.assign(size_t(n) * k, 0.f);
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < k; ++c)
            w.deq[size_t(r) * k + c] =
                float(grid3(sel[size_t(r) * ng + c / gl], code[size_t(r) * k + c])) * (float(q[size_t(r) * ng + c / gl]) * ch[r]);
    w.words.assign(size_t(w.strips) * w.ksteps * 128, 0);
    w.hi.assign(size_t(w.strips) * w.ksteps * 64, 0);
    for (int s = 0; s < w.strips; ++s)
        for (int ks = 0; ks < w.ksteps; ++ks)
            for (int lane = 0; lane < 32; ++lane) {
                uint32_t* wd = &w.words[((size_t(s) * w.ksteps + ks) * 32 + lane) * 4];
                uint32_t* hd = &w.hi[((size_t(s) * w.ksteps + ks) * 32 + lane) * 2];
                auto word6 = [&](int i) -> uint32_t& { return i < 4 ? wd[i] : hd[i - 4]; };
                for (int j = 0; j < 8; ++j)
                    for (int e = 0; e < 8; ++e) {
                        int rr, cc;
                        lane_elem(e, lane, rr, cc);
                        const int row = s * 16 + rr, col = ks * 128 + j * 16 + cc;
                        const uint32_t c = (row < n && col < k) ? uint32_t(code[size_t(row) * k + col]) : 0u;  // pad: +0
                        if (lay == kLut3) {
                            wd[j / 2] |= (c & 3u) << (16 * (j % 2) + 2 * e);
                            hd[j / 4] |= ((c >> 2) & 1u) << (8 * (j % 4) + e);
                        } else if (j < 6) {
                            word6(j) |= c << (4 * mix3_nib(e));
                        } else {
                            for (int b = 0; b < 3; ++b) word6(3 * (j - 6) + b) |= ((c >> b) & 1u) << (4 * mix3_nib(e) + 3);
                        }
                    }
            }
    w.meta.assign(size_t(w.strips) * ng * 16, 0);
    for (int s = 0; s < w.strips; ++s)
        for (int gi = 0; gi < ng; ++gi)
            for (int g = 0; g < 8; ++g) {
                const int ra = s * 16 + g, rb = ra + 8;
                auto sc = [&](int r) -> uint32_t { return r < n ? __half_as_ushort(__float2half(float(q[size_t(r) * ng + gi]))) : 0u; };
                auto ax = [&](int r) -> uint32_t { return r < n ? uint32_t(sel[size_t(r) * ng + gi]) : 0u; };
                uint32_t* m = &w.meta[((size_t(s) * ng + gi) * 8 + g) * 2];
                m[0] = sc(ra) | (sc(rb) << 16);
                m[1] = ax(ra) | (ax(rb) << 8);
            }
    w.chan.assign(size_t(w.strips) * 16, 0.f);
    for (int r = 0; r < n; ++r) w.chan[r] = ch[r];
    w.upload();
    if (lay == kLut3) upload_bitmod_tables(w, 3);
    return w;
}

// Random 32-bit words on the device (timing weights: a host RNG over 100+ MB per copy dominated the call's time).
__global__ void fill_hash(uint32_t* p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint32_t x = uint32_t(i) * 0x9E3779B9u ^ (uint32_t(i >> 32) + seed * 0x85EBCA6Bu);
        x ^= x >> 16, x *= 0x7FEB352Du, x ^= x >> 15, x *= 0x846CA68Bu, x ^= x >> 16;
        p[i] = x;
    }
}

// Random codes of any layout (timing only); the code words are filled on the device.
static Weight make_random(int n, int k, Layout lay, uint32_t seed) {
    std::mt19937 rng(seed);
    Weight w{};
    const int tiles = lay == kLut3 || lay == kMix3 ? 8 : 4;
    w.n = n, w.k = k, w.kstep = tiles * 16, w.gl = 128;
    w.k_pad = (k + w.kstep - 1) / w.kstep * w.kstep;
    w.strips = (n + 15) / 16, w.ksteps = w.k_pad / w.kstep, w.groups = w.k_pad / 128;
    const size_t nwords = size_t(w.strips) * w.ksteps * 128, nhi = lay == kLut3 || lay == kMix3 ? nwords / 2 : 0;
    w.meta.resize(size_t(w.strips) * w.groups * 16);
    for (size_t i = 0; i < w.meta.size(); i += 2) {
        w.meta[i] = 0x1C001C00u;
        w.meta[i + 1] = lay == kInt4 ? (rng() % 16) | ((rng() % 16) << 8) : (rng() % 4) | ((rng() % 4) << 8);
    }
    if (lay != kInt4) w.chan.assign(size_t(w.strips) * 16, 1e-3f);
    w.words.assign(1, 0u);
    if (nhi) w.hi.assign(1, 0u);
    w.upload();
    cudaFree(w.d_words);
    CK(cudaMalloc(&w.d_words, nwords * 4));
    fill_hash<<<1024, 256>>>(w.d_words, nwords, seed);
    if (nhi) {
        cudaFree(w.d_hi);
        CK(cudaMalloc(&w.d_hi, nhi * 4));
        fill_hash<<<1024, 256>>>(w.d_hi, nhi, seed + 7777u);
    }
    CK(cudaGetLastError());
    CK(cudaDeviceSynchronize());
    if (lay == kLut4) upload_bitmod_tables(w, 4);
    if (lay == kLut3) upload_bitmod_tables(w, 3);
    return w;
}

// ------------------------------------------------------------------------------------------------ launch
struct Buffers {
    void* x;
    void* y;
    float* ws;  // split-K partial sums [m][n] f32, zero between calls
};

// wo_launch.cu make_plan (mma.sync path, automatic config) + run(): GEMM, then convert after split-K.
template <class Fmt, typename T>
static cudaError_t launch(const Weight& w, const Buffers& b, int m, cudaStream_t s) {
    const int mt = m <= 8 ? 1 : m <= 16 ? 2 : 4;
    const int mtiles = (m + mt * 8 - 1) / (mt * 8);
    const int nblk = (w.strips + kWarps - 1) / kWarps;
    int splits = int((8 * int64_t(g_sms) + int64_t(nblk) * mtiles - 1) / (int64_t(nblk) * mtiles));
    splits = std::max(1, std::min(splits, std::max(1, w.ksteps / 8)));
    splits = std::min(splits, w.ksteps);
    Args a{};
    a.words = w.d_words, a.hi_words = w.d_hi, a.meta = w.d_meta, a.chan = w.d_chan, a.lut = w.d_lut;
    a.n_tables = Fmt::kIsLut ? w.tables : 0;
    a.x = b.x, a.y = b.y;
    a.m = m, a.n = w.n, a.k = w.k, a.ldx = w.k;
    a.strips = w.strips, a.ksteps = w.ksteps, a.gtiles = w.gl / 16, a.groups = w.groups;
    a.steps_per_split = (w.ksteps + splits - 1) / splits;
    splits = (w.ksteps + a.steps_per_split - 1) / a.steps_per_split;
    int kc = a.steps_per_split * w.kstep;
    const int kc_max = 2048 / mt;
    if (kc > kc_max) kc = kc_max / w.kstep * w.kstep;
    a.kc = std::max(kc, w.kstep);
    a.x_vec = w.k % 8 == 0;
    a.auto_splits = 1;
    a.kw = 1;
    a.sms = g_sms;
    a.ws = splits > 1 ? b.ws : nullptr;
    cudaError_t e;
    switch (mt) {
        case 1: e = launch_mt<Fmt, T, 1>(a, splits, mtiles, s); break;
        case 2: e = launch_mt<Fmt, T, 2>(a, splits, mtiles, s); break;
        default: e = launch_mt<Fmt, T, 4>(a, splits, mtiles, s); break;
    }
    if (e != cudaSuccess || splits == 1) return e;
    const int64_t total = int64_t(m) * w.n;
    convert_kernel<T><<<int(std::min<int64_t>(4096, (total + 255) / 256)), 256, 0, s>>>(b.ws, static_cast<T*>(b.y), total);
    return cudaGetLastError();
}

// The library's M = 1 plan (wo_launch.cu compact_kw): the in-block split-K compact-X kernel when its blocks fill one
// wave of cx_min_blocks() per SM (>= 0.6 of 4 per SM, or at least split-K's blocks); otherwise the split-K plan above.
template <class Fmt, typename T>
static cudaError_t launch_lib(const Weight& w, const Buffers& b, int m, cudaStream_t s, int* kw_out = nullptr) {
    int kw = 0;
    if (m == 1 && !Fmt::kIsLut) {
        const int kstep = Fmt::kTiles * 16;
        const int64_t per_block = int64_t(cx_smem_bytes(1, w.ksteps * kstep, kstep)) + 1024;
        int64_t occ = int64_t(smem_per_sm()) / per_block;
        occ = std::min<int64_t>(occ, cx_min_blocks<Fmt>());
        const int nblk = (w.strips + kWarps - 1) / kWarps;
        int splits = int((8 * int64_t(g_sms) + nblk - 1) / nblk);
        splits = std::max(1, std::min(splits, std::max(1, w.ksteps / 8)));
        const int64_t splitk_blocks = int64_t(nblk) * splits;
        for (int c = kWarps; c > 1 && occ >= 1; c /= 2) {
            const int64_t blocks = (w.strips + kWarps / c - 1) / (kWarps / c);
            if (blocks <= occ * g_sms && w.ksteps >= c) {
                kw = (blocks >= 0.6 * 4 * g_sms || blocks >= splitk_blocks) ? c : 0;
                break;
            }
        }
    }
    if (kw_out) *kw_out = kw;
    if (kw <= 1) return launch<Fmt, T>(w, b, m, s);
    Args a{};
    a.words = w.d_words, a.hi_words = w.d_hi, a.meta = w.d_meta, a.chan = w.d_chan, a.lut = w.d_lut;
    a.x = b.x, a.y = b.y;
    a.m = m, a.n = w.n, a.k = w.k, a.ldx = w.k;
    a.strips = w.strips, a.ksteps = w.ksteps, a.gtiles = w.gl / 16, a.groups = w.groups;
    a.steps_per_split = w.ksteps;
    a.kc = w.ksteps * Fmt::kTiles * 16;
    a.x_vec = w.k % 8 == 0;
    a.auto_splits = 0;
    a.kw = kw;
    a.sms = g_sms;
    a.ws = nullptr;
    return launch_mt<Fmt, T, 1>(a, 1, 1, s);
}

// ------------------------------------------------------------------------------------------------ check
template <typename T>
static float to_f(T v) {
    if constexpr (std::is_same_v<T, __half>) return __half2float(v);
    else return __bfloat162float(v);
}
template <typename T>
static T from_f(float v) {
    if constexpr (std::is_same_v<T, __half>) return __float2half_rn(v);
    else return __float2bfloat16_rn(v);
}

static int g_fail = 0, g_pass = 0;

template <class Fmt, typename T>
static void check_gemm(const char* name, const Weight& w, int m, uint32_t seed, bool lib = false) {
    std::mt19937 rng(seed);
    std::vector<T> x(size_t(m) * w.k);
    std::vector<double> xd(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
        x[i] = from_f<T>(float(int(rng() % 2001) - 1000) / 500.f);
        xd[i] = to_f(x[i]);
    }
    Buffers b{};
    CK(cudaMalloc(&b.x, x.size() * sizeof(T)));
    CK(cudaMemcpy(b.x, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMalloc(&b.y, size_t(m) * w.n * sizeof(T)));
    CK(cudaMemset(b.y, 0xFF, size_t(m) * w.n * sizeof(T)));  // NaN poison
    CK(cudaMalloc(&b.ws, size_t(m) * w.n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * w.n * 4));
    int kw = 0;
    CK(lib ? launch_lib<Fmt, T>(w, b, m, 0, &kw) : launch<Fmt, T>(w, b, m, 0));
    CK(cudaDeviceSynchronize());
    std::vector<T> y(size_t(m) * w.n);
    CK(cudaMemcpy(y.data(), b.y, y.size() * sizeof(T), cudaMemcpyDeviceToHost));
    const double tol = std::is_same_v<T, __half> ? 2e-3 : 1e-2;
    double worst = 0;
    int bad = 0;
    for (int i = 0; i < m; ++i)
        for (int r = 0; r < w.n; ++r) {
            double ref = 0, mag = 0;
            for (int c = 0; c < w.k; ++c) {
                const double p = xd[size_t(i) * w.k + c] * double(w.deq[size_t(r) * w.k + c]);
                ref += p, mag += std::fabs(p);
            }
            const double got = to_f(y[size_t(i) * w.n + r]);
            const double err = std::fabs(got - ref) / (mag + 1e-30);
            if (!(err <= tol)) ++bad;
            if (err > worst || std::isnan(err)) worst = std::isnan(err) ? 1e30 : err;
        }
    printf("check %-6s %-4s n=%-5d k=%-5d g=%-3d m=%-3d%s worst |err|/sum|xw| %.2e %s\n", name,
           std::is_same_v<T, __half> ? "f16" : "bf16", w.n, w.k, w.gl, m, lib ? (kw > 1 ? " cx" : " lib") : "", worst,
           bad ? "FAIL" : "ok");
    (bad ? g_fail : g_pass)++;
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
}

// X = I (rows m of X pick columns off + m): Y[m][n] = W[n][off + m] must be T(grid * q * chan) bit for bit.
template <class Fmt, typename T>
static void check_identity(const char* name, const Weight& w) {
    const int m = 32;
    int bad = 0;
    for (int off = 0; off + m <= w.k; off += m) {
        std::vector<T> x(size_t(m) * w.k, from_f<T>(0.f));
        for (int i = 0; i < m; ++i) x[size_t(i) * w.k + off + i] = from_f<T>(1.f);
        Buffers b{};
        CK(cudaMalloc(&b.x, x.size() * sizeof(T)));
        CK(cudaMemcpy(b.x, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice));
        CK(cudaMalloc(&b.y, size_t(m) * w.n * sizeof(T)));
        CK(cudaMemset(b.y, 0xFF, size_t(m) * w.n * sizeof(T)));
        CK(cudaMalloc(&b.ws, size_t(m) * w.n * 4));
        CK(cudaMemset(b.ws, 0, size_t(m) * w.n * 4));
        CK(launch<Fmt, T>(w, b, m, 0));
        CK(cudaDeviceSynchronize());
        std::vector<T> y(size_t(m) * w.n);
        CK(cudaMemcpy(y.data(), b.y, y.size() * sizeof(T), cudaMemcpyDeviceToHost));
        for (int i = 0; i < m; ++i)
            for (int r = 0; r < w.n; ++r) {
                const T want = from_f<T>(w.deq[size_t(r) * w.k + off + i]);
                const T got = y[size_t(i) * w.n + r];
                if (memcmp(&want, &got, sizeof(T)) != 0) {
                    if (bad < 4) printf("  identity %s: row %d col %d got %g want %g\n", name, r, off + i, to_f(got), to_f(want));
                    ++bad;
                }
            }
        cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
    }
    printf("identity %-6s %-4s n=%d k=%d: %s\n", name, std::is_same_v<T, __half> ? "f16" : "bf16", w.n, w.k,
           bad ? "FAIL" : "bit-exact");
    (bad ? g_fail : g_pass)++;
}

static void run_checks() {
    const int shapes[][3] = {{37, 384, 128}, {300, 1024, 128}, {149, 2048, 128}, {45, 320, 32}, {16, 8192, 128}};
    uint32_t seed = 1;
    for (auto& sh : shapes) {
        Weight mix = make_bitmod4(sh[0], sh[1], sh[2], kMix4, 100 + seed);
        Weight lut = make_bitmod4(sh[0], sh[1], sh[2], kLut4, 100 + seed);
        for (int m : {1, 5, 16, 29}) {
            check_gemm<Mix4, __half>("mix4", mix, m, ++seed);
            check_gemm<Mix4, __nv_bfloat16>("mix4", mix, m, ++seed);
            check_gemm<Lut<4>, __half>("lut4", lut, m, ++seed);
        }
        Weight mixp = make_bitmod4(sh[0], sh[1], sh[2], kMix4P, 100 + seed);
        for (int m : {1, 5, 16, 29}) {
            check_gemm<Mix4P, __half>("mix4p", mixp, m, ++seed);
            check_gemm<Mix4P, __nv_bfloat16>("mix4p", mixp, m, ++seed);
        }
        mixp.free_dev();
        mix.free_dev(), lut.free_dev();
    }
    // BitMoD FP3: Mix3 (byte-permute decode) against the pair tables and the f64 reference, same codes.
    const int shapes3[][3] = {{37, 384, 128}, {300, 1024, 128}, {149, 2048, 128}, {45, 320, 32}, {16, 8192, 128}, {53, 8192, 64}};
    for (auto& sh : shapes3) {
        Weight mix = make_bitmod3(sh[0], sh[1], sh[2], kMix3, 300 + seed);
        Weight lut = make_bitmod3(sh[0], sh[1], sh[2], kLut3, 300 + seed);
        for (int m : {1, 5, 16, 29}) {
            check_gemm<Mix3, __half>("mix3", mix, m, ++seed);
            check_gemm<Mix3, __nv_bfloat16>("mix3", mix, m, ++seed);
            check_gemm<Mix3Old, __half>("mix3old", mix, m, ++seed);
            check_gemm<Lut<3>, __half>("lut3", lut, m, ++seed);
        }
        mix.free_dev(), lut.free_dev();
    }
    {
        Weight mix3 = make_bitmod3(40, 384, 128, kMix3, 9);
        Weight lut3 = make_bitmod3(40, 384, 128, kLut3, 9);
        check_identity<Mix3, __half>("mix3", mix3);
        check_identity<Mix3, __nv_bfloat16>("mix3", mix3);
        check_identity<Mix3Old, __half>("mix3old", mix3);
        check_identity<Lut<3>, __half>("lut3", lut3);
        mix3.free_dev(), lut3.free_dev();
    }
    Weight mix = make_bitmod4(40, 256, 128, kMix4, 7);
    Weight lut = make_bitmod4(40, 256, 128, kLut4, 7);
    check_identity<Mix4, __half>("mix4", mix);
    check_identity<Mix4, __nv_bfloat16>("mix4", mix);
    {
        Weight mixp = make_bitmod4(40, 256, 128, kMix4P, 7);
        check_identity<Mix4P, __half>("mix4p", mixp);
        check_identity<Mix4P, __nv_bfloat16>("mix4p", mixp);
        mixp.free_dev();
    }
    check_identity<Lut<4>, __half>("lut4", lut);
    mix.free_dev(), lut.free_dev();
    printf("checks: %d passed, %d failed\n", g_pass, g_fail);
}

// Mix4 and the eighth session's correct variants (Mix4Q, Mix4R3) against the f64 reference, split-K plan and, at M = 1,
// the library's compact-X plan; identity bit-exact.
static void run_checks4() {
    const int shapes[][3] = {{37, 384, 128}, {300, 1024, 128}, {149, 2048, 128}, {45, 320, 32}, {16, 8192, 128}, {16, 384, 128}};
    uint32_t seed = 900;
    for (auto& sh : shapes) {
        Weight mix = make_bitmod4(sh[0], sh[1], sh[2], kMix4, 100 + seed);
        for (int m : {1, 5, 16, 29}) {
            check_gemm<Mix4, __half>("mix4", mix, m, ++seed);
            check_gemm<Mix4Q, __half>("mix4q", mix, m, ++seed);
            check_gemm<Mix4Q, __nv_bfloat16>("mix4q", mix, m, ++seed);
            check_gemm<Mix4R3, __half>("mix4r3", mix, m, ++seed);
            check_gemm<Mix4V, __half>("mix4v", mix, m, ++seed);
            check_gemm<Mix4V, __nv_bfloat16>("mix4v", mix, m, ++seed);
            check_gemm<Mix4W, __half>("mix4w", mix, m, ++seed);
            check_gemm<Mix4V3, __half>("mix4v3", mix, m, ++seed);
        }
        check_gemm<Mix4V, __half>("mix4v", mix, 1, ++seed, true);
        check_gemm<Mix4V, __nv_bfloat16>("mix4v", mix, 1, ++seed, true);
        check_gemm<Mix4W, __half>("mix4w", mix, 1, ++seed, true);
        check_gemm<Mix4, __half>("mix4", mix, 1, ++seed, true);
        check_gemm<Mix4Q, __half>("mix4q", mix, 1, ++seed, true);
        check_gemm<Mix4Q, __nv_bfloat16>("mix4q", mix, 1, ++seed, true);
        check_gemm<Mix4R3, __half>("mix4r3", mix, 1, ++seed, true);
        mix.free_dev();
    }
    Weight mix = make_bitmod4(40, 256, 128, kMix4, 7);
    check_identity<Mix4Q, __half>("mix4q", mix);
    check_identity<Mix4Q, __nv_bfloat16>("mix4q", mix);
    check_identity<Mix4R3, __half>("mix4r3", mix);
    check_identity<Mix4V, __half>("mix4v", mix);
    check_identity<Mix4V, __nv_bfloat16>("mix4v", mix);
    check_identity<Mix4W, __half>("mix4w", mix);
    mix.free_dev();
    printf("checks4: %d passed, %d failed\n", g_pass, g_fail);
}

// ------------------------------------------------------------------------------------------------ bench
template <class Fmt>
static float bench_fmt(int n, int k, Layout lay, int m, cudaStream_t st = 0, bool lib = false) {
    const Weight probe = make_random(16, 128, lay, 1);
    const size_t bytes = size_t(n) * k * (lay == kLut3 || lay == kMix3 ? 3 : 4) / 8;
    const int nc = micro::copies_for(bytes);
    std::vector<Weight> ws;
    for (int i = 0; i < nc; ++i) ws.push_back(make_random(n, k, lay, 10 + i));
    Buffers b{};
    CK(cudaMalloc(&b.x, size_t(m) * k * 2));
    CK(cudaMemset(b.x, 0x30, size_t(m) * k * 2));
    CK(cudaMalloc(&b.y, size_t(m) * n * 2));
    CK(cudaMalloc(&b.ws, size_t(m) * n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * n * 4));
    int it = 0;
    const float ms = micro::time_ms(
        100, [&] { CK(lib ? launch_lib<Fmt, __half>(ws[it++ % nc], b, m, st) : launch<Fmt, __half>(ws[it++ % nc], b, m, st)); },
        3, 7, st);
    for (auto& w : ws) w.free_dev();
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
    (void)probe;
    return ms * 1e3f;
}

static void run_bench() {
    const int shapes[][2] = {{28672, 8192}, {4096, 4096}};
    for (auto& sh : shapes) {
        for (int m : {1, 16}) {
            const int n = sh[0], k = sh[1];
            const float cub = micro::bench_cublas_f16(m, n, k) * 1e3f;
            const float i4 = bench_fmt<Int4>(n, k, kInt4, m);
            const float l4 = bench_fmt<Lut<4>>(n, k, kLut4, m);
            const float x4 = bench_fmt<Mix4>(n, k, kMix4, m);
            const float x4p = bench_fmt<Mix4P>(n, k, kMix4P, m);
            const float l3 = bench_fmt<Lut<3>>(n, k, kLut3, m);
            const float x3 = bench_fmt<Mix3>(n, k, kMix3, m);
            const float x3b = bench_fmt<Mix3Old>(n, k, kMix3, m);
            const float i3 = bench_fmt<IntLow<3>>(n, k, kLut3, m);
            printf("bench %5dx%-5d m=%-2d cublas_f16 %7.1f us | int4-g128 %6.1f (%.2fx cuBLAS) | bitmod-w4 table %6.1f "
                   "(%.2fx int4 speed) | bitmod-w4 mix4 %6.1f (%.2fx int4 speed, %.2fx cuBLAS) | bitmod-w3 table %6.1f "
                   "(W4-int4 time / W3 = %.2f) | bitmod-w3 mix3 %6.1f (int4 / W3 = %.2f, mix4 / W3 = %.2f, %.2fx cuBLAS) "
                   "| mix3 at the old caps (3 / 2 blocks per SM) %6.1f | int3-g128 %6.1f | bitmod-w4 mix4p (PRMT) %6.1f (%.2fx int4 speed)\n",
                   n, k, m, cub, i4, cub / i4, l4, i4 / l4, x4, i4 / x4, cub / x4, l3, i4 / l3, x3, i4 / x3, x4 / x3,
                   cub / x3, x3b, i3, x4p, i4 / x4p);
            fflush(stdout);
        }
    }
}

// Eighth session (NOTES.md "Mix4 gap"): INT4 g128 against Mix4 and its variants on the three shapes at M = 1 and 16, the
// harness's split-K plan for every format and, at M = 1, the library's plan (compact X where compact_kw picks it);
// INT4 is timed first and again last (an earlier call saw the first format after cuBLAS read 4x slow once).
static void run_bench2() {
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {4096, 4096}};
    for (auto& sh : shapes) {
        for (int m : {1, 16}) {
            const int n = sh[0], k = sh[1];
            const float cub = micro::bench_cublas_f16(m, n, k) * 1e3f;
            const float i4 = bench_fmt<Int4>(n, k, kInt4, m);
            const float x4 = bench_fmt<Mix4>(n, k, kMix4, m);
            const float x4q = bench_fmt<Mix4Q>(n, k, kMix4, m);
            const float x4p = bench_fmt<Mix4P>(n, k, kMix4P, m);
            const float x4n = bench_fmt<Mix4N>(n, k, kMix4, m);
            const float x4r = bench_fmt<Mix4R3>(n, k, kMix4, m);
            const float x3 = bench_fmt<Mix3>(n, k, kMix3, m);
            const float i4b = bench_fmt<Int4>(n, k, kInt4, m);
            const float i4m = std::min(i4, i4b);
            printf("bench2 %5dx%-5d m=%-2d splitk | cublas %6.1f | int4 %6.1f / %6.1f (%.2fx cuBLAS) | mix4 %6.1f (%.3f) | mix4q %6.1f (%.3f) | "
                   "mix4p %6.1f (%.3f) | mix4n(no patch) %6.1f (%.3f) | mix4r3 %6.1f (%.3f) | mix3 %6.1f (%.3f)   [(x) = int4 speed ratio]\n",
                   n, k, m, cub, i4, i4b, cub / i4m, x4, i4m / x4, x4q, i4m / x4q, x4p, i4m / x4p, x4n, i4m / x4n, x4r, i4m / x4r, x3,
                   i4m / x3);
            fflush(stdout);
            if (m == 1) {
                const float li4 = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
                const float lx4 = bench_fmt<Mix4>(n, k, kMix4, m, 0, true);
                const float lx4q = bench_fmt<Mix4Q>(n, k, kMix4, m, 0, true);
                const float lx4r = bench_fmt<Mix4R3>(n, k, kMix4, m, 0, true);
                const float lx4n = bench_fmt<Mix4N>(n, k, kMix4, m, 0, true);
                const float li4b = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
                const float lm = std::min(li4, li4b);
                printf("bench2 %5dx%-5d m=%-2d lib    | cublas %6.1f | int4 %6.1f / %6.1f (%.2fx cuBLAS) | mix4 %6.1f (%.3f) | mix4q %6.1f (%.3f) | "
                       "mix4r3 %6.1f (%.3f) | mix4n %6.1f (%.3f)\n",
                       n, k, m, cub, li4, li4b, cub / lm, lx4, lm / lx4, lx4q, lm / lx4q, lx4r, lm / lx4r, lx4n, lm / lx4n);
                fflush(stdout);
            }
        }
    }
}

// Second call: the library's plan (compact X at M = 1 where compact_kw picks it, split-K otherwise), INT4 first and last,
// Mix4 / Mix4V / Mix4W / Mix4N (no-patch floor), every shape twice (rounds a and b) to show the run-to-run spread.
static void run_bench3() {
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {4096, 4096}};
    for (const char* round : {"a", "b"}) {
        for (auto& sh : shapes) {
            for (int m : {1, 16}) {
                const int n = sh[0], k = sh[1];
                const float cub = micro::bench_cublas_f16(m, n, k) * 1e3f;
                const float i4 = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
                const float x4 = bench_fmt<Mix4>(n, k, kMix4, m, 0, true);
                const float x4v = bench_fmt<Mix4V>(n, k, kMix4, m, 0, true);
                const float x4w = m == 1 ? bench_fmt<Mix4W>(n, k, kMix4, m, 0, true) : bench_fmt<Mix4V3>(n, k, kMix4, m, 0, true);
                const float x4n = bench_fmt<Mix4N>(n, k, kMix4, m, 0, true);
                const float i4b = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
                const float i4m = std::min(i4, i4b);
                printf("bench3%s %5dx%-5d m=%-2d lib | cublas %6.1f | int4 %6.1f / %6.1f (%.2fx cuBLAS) | mix4 %6.1f (%.3f, %.2fx cuBLAS) | "
                       "mix4v %6.1f (%.3f, %.2fx cuBLAS) | %s %6.1f (%.3f) | mix4n %6.1f (%.3f)   [(x) = int4 speed ratio]\n",
                       round, n, k, m, cub, i4, i4b, cub / i4m, x4, i4m / x4, cub / x4, x4v, i4m / x4v, cub / x4v, m == 1 ? "mix4w" : "mix4v3(3 blocks)", x4w, i4m / x4w,
                       x4n, i4m / x4n);
                fflush(stdout);
            }
        }
    }
}

// v15 (NOTES.md "v15: load-ahead"): one set of weight copies per format, the library plan timed with the load-ahead
// instances off (g_la = 0: the HEAD kernels) and on (g_la = 1), alternating off / on / off / on; {best off, best on}.
template <class Fmt>
static std::pair<float, float> bench_la(int n, int k, Layout lay, int m) {
    const size_t bytes = size_t(n) * k * (lay == kLut3 || lay == kMix3 ? 3 : 4) / 8;
    const int nc = micro::copies_for(bytes);
    std::vector<Weight> ws;
    for (int i = 0; i < nc; ++i) ws.push_back(make_random(n, k, lay, 10 + i));
    Buffers b{};
    CK(cudaMalloc(&b.x, size_t(m) * k * 2));
    CK(cudaMemset(b.x, 0x30, size_t(m) * k * 2));
    CK(cudaMalloc(&b.y, size_t(m) * n * 2));
    CK(cudaMalloc(&b.ws, size_t(m) * n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * n * 4));
    int it = 0;
    float best[2] = {1e30f, 1e30f};
    for (int r = 0; r < 4; ++r) {
        g_la = r & 1;
        const float ms = micro::time_ms(100, [&] { CK(launch_lib<Fmt, __half>(ws[it++ % nc], b, m, 0)); }, 3, 7, 0);
        best[r & 1] = std::min(best[r & 1], ms * 1e3f);
    }
    g_la = -1;
    for (auto& w : ws) w.free_dev();
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
    return {best[0], best[1]};
}
static void run_bench4() {
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    for (auto& sh : shapes) {
        for (int m : {1, 16}) {
            const int n = sh[0], k = sh[1];
            const float cub = micro::bench_cublas_f16(m, n, k) * 1e3f;
            const auto i4 = bench_la<Int4>(n, k, kInt4, m);
            const auto x4 = bench_la<Mix4>(n, k, kMix4, m);
            const auto x3 = bench_la<Mix3>(n, k, kMix3, m);
            printf("bench4 %5dx%-5d m=%-2d lib | cublas %6.1f | int4 %6.1f -> %6.1f (%.3f) | mix4 %6.1f -> %6.1f (%.3f) | "
                   "mix3 %6.1f -> %6.1f (%.3f) | mix4 / int4 speed %.3f -> %.3f (best int4 %.3f) | cuBLAS/la: int4 %.2f mix4 %.2f mix3 %.2f\n",
                   n, k, m, cub, i4.first, i4.second, i4.first / i4.second, x4.first, x4.second, x4.first / x4.second, x3.first,
                   x3.second, x3.first / x3.second, i4.first / x4.first, i4.second / x4.second,
                   std::min(i4.first, i4.second) / x4.second, cub / i4.second, cub / x4.second, cub / x3.second);
            fflush(stdout);
        }
    }
}

// Round 2 (NOTES.md "Mix4S"): Mix4S against the f64 reference (f16 and bf16, NaN-poisoned outputs, split-K plan at
// M = 1 / 5 / 16 / 29 and the library's compact-X plan at M = 1, g128 and g32), identity bit-exact; Mix4 alongside.
static void run_checks5() {
    const int shapes[][3] = {{37, 384, 128}, {300, 1024, 128}, {149, 2048, 128}, {45, 320, 32}, {16, 8192, 128}, {16, 384, 128}};
    uint32_t seed = 5000;
    for (auto& sh : shapes) {
        Weight mix = make_bitmod4(sh[0], sh[1], sh[2], kMix4, 100 + seed);
        for (int m : {1, 5, 16, 29}) {
            check_gemm<Mix4, __half>("mix4", mix, m, ++seed);
            check_gemm<Mix4S, __half>("mix4s", mix, m, ++seed);
            check_gemm<Mix4S, __nv_bfloat16>("mix4s", mix, m, ++seed);
            check_gemm<Mix4SV, __half>("mix4sv", mix, m, ++seed);
            check_gemm<Mix4SV, __nv_bfloat16>("mix4sv", mix, m, ++seed);
        }
        check_gemm<Mix4S, __half>("mix4s", mix, 1, ++seed, true);
        check_gemm<Mix4S, __nv_bfloat16>("mix4s", mix, 1, ++seed, true);
        check_gemm<Mix4SV, __half>("mix4sv", mix, 1, ++seed, true);
        check_gemm<Mix4SV, __nv_bfloat16>("mix4sv", mix, 1, ++seed, true);
        mix.free_dev();
    }
    Weight mix = make_bitmod4(40, 256, 128, kMix4, 7);
    check_identity<Mix4S, __half>("mix4s", mix);
    check_identity<Mix4S, __nv_bfloat16>("mix4s", mix);
    check_identity<Mix4SV, __half>("mix4sv", mix);
    check_identity<Mix4SV, __nv_bfloat16>("mix4sv", mix);
    mix.free_dev();
    Weight mix32 = make_bitmod4(40, 256, 32, kMix4, 8);
    check_identity<Mix4S, __half>("mix4s", mix32);
    check_identity<Mix4S, __nv_bfloat16>("mix4s", mix32);
    mix32.free_dev();
    printf("checks5: %d passed, %d failed\n", g_pass, g_fail);
}
// Library plan, 4 shapes x M = 1 / 16: cuBLAS f16, INT4 (first and last), Mix4 (shipped, second and second to last), Mix4S,
// Mix4SV.
static void run_bench5() {
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    for (auto& sh : shapes) {
        for (int m : {1, 16}) {
            const int n = sh[0], k = sh[1];
            const float cub = micro::bench_cublas_f16(m, n, k) * 1e3f;
            const float i4 = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
            const float x4 = bench_fmt<Mix4>(n, k, kMix4, m, 0, true);
            const float x4s = bench_fmt<Mix4S>(n, k, kMix4, m, 0, true);
            const float x4sv = bench_fmt<Mix4SV>(n, k, kMix4, m, 0, true);
            const float x4b = bench_fmt<Mix4>(n, k, kMix4, m, 0, true);
            const float i4b = bench_fmt<Int4>(n, k, kInt4, m, 0, true);
            const float i4m = std::min(i4, i4b), x4m = std::min(x4, x4b);
            printf("bench5 %5dx%-5d m=%-2d lib | cublas %6.1f | int4 %6.1f / %6.1f (%.2fx cuBLAS) | mix4 %6.1f / %6.1f (%.3f) | "
                   "mix4s %6.1f (%.3f, %.2fx cuBLAS, %.3f of mix4 time) | mix4sv %6.1f (%.3f, %.2fx cuBLAS, %.3f of mix4 time)   [(x) = best int4 / fmt]\n",
                   n, k, m, cub, i4, i4b, cub / i4m, x4, x4b, i4m / x4m, x4s, i4m / x4s, cub / x4s, x4s / x4m, x4sv, i4m / x4sv, cub / x4sv, x4sv / x4m);
            fflush(stdout);
        }
    }
}

// One format / shape / M / plan, 3 launches (for ncu -k regex:gemm_kernel --launch-skip 2 -c 1).
template <class Fmt>
static void prof_one(int n, int k, Layout lay, int m, bool lib) {
    Weight w = make_random(n, k, lay, 5);
    Buffers b{};
    CK(cudaMalloc(&b.x, size_t(m) * k * 2));
    CK(cudaMemset(b.x, 0x30, size_t(m) * k * 2));
    CK(cudaMalloc(&b.y, size_t(m) * n * 2));
    CK(cudaMalloc(&b.ws, size_t(m) * n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * n * 4));
    for (int i = 0; i < 3; ++i) CK(lib ? launch_lib<Fmt, __half>(w, b, m, 0) : launch<Fmt, __half>(w, b, m, 0));
    CK(cudaDeviceSynchronize());
    w.free_dev();
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
}
static void run_prof(int argc, char** argv) {
    if (argc < 7) return;
    const std::string f = argv[2];
    const int n = atoi(argv[3]), k = atoi(argv[4]), m = atoi(argv[5]);
    const bool lib = std::string(argv[6]) == "lib";
    if (f == "int4") prof_one<Int4>(n, k, kInt4, m, lib);
    if (f == "mix4") prof_one<Mix4>(n, k, kMix4, m, lib);
    if (f == "mix4q") prof_one<Mix4Q>(n, k, kMix4, m, lib);
    if (f == "mix4p") prof_one<Mix4P>(n, k, kMix4P, m, lib);
    if (f == "mix4n") prof_one<Mix4N>(n, k, kMix4, m, lib);
    if (f == "mix4r3") prof_one<Mix4R3>(n, k, kMix4, m, lib);
    if (f == "mix3") prof_one<Mix3>(n, k, kMix3, m, lib);
    if (f == "mix4v") prof_one<Mix4V>(n, k, kMix4, m, lib);
    if (f == "mix4w") prof_one<Mix4W>(n, k, kMix4, m, lib);
    if (f == "mix4s") prof_one<Mix4S>(n, k, kMix4, m, lib);
    if (f == "mix4sv") prof_one<Mix4SV>(n, k, kMix4, m, lib);
}

// INT4 g128 on the legacy default stream (what PyTorch's default stream is) and on a non-blocking stream, back-to-back
// host launches: run once with LOWBIT_PDL=0 and once without it to see what programmatic dependent launch does on each.
static void run_pdl() {
    cudaStream_t nb;
    CK(cudaStreamCreateWithFlags(&nb, cudaStreamNonBlocking));
    const int shapes[][3] = {{4096, 4096, 1}, {4096, 4096, 16}, {11008, 4096, 1}, {28672, 8192, 1}, {28672, 8192, 16}};
    for (auto& sh : shapes) {
        const float legacy = bench_fmt<Int4>(sh[0], sh[1], kInt4, sh[2], 0);
        const float nonblocking = bench_fmt<Int4>(sh[0], sh[1], kInt4, sh[2], nb);
        printf("pdl %s %5dx%-5d m=%-2d int4-g128 legacy stream %7.1f us | non-blocking stream %7.1f us\n",
               lowbit::pdl_runs() ? "on " : "off", sh[0], sh[1], sh[2], legacy, nonblocking);
        fflush(stdout);
    }
    CK(cudaStreamDestroy(nb));
}

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "all";
    int dev = 0;
    CK(cudaGetDevice(&dev));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, dev));
    g_sms = prop.multiProcessorCount;
    printf("device %s, %d SMs\n", prop.name, g_sms);
    if (mode == "check" || mode == "all") run_checks();
    if (mode == "bench" || mode == "all") run_bench();
    if (mode == "pdl") run_pdl();
    if (mode == "check4") run_checks4();
    if (mode == "bench2") run_bench2();
    if (mode == "bench3") run_bench3();
    if (mode == "bench4") run_bench4();
    if (mode == "check5") run_checks5();
    if (mode == "bench5") run_bench5();
    if (mode == "prof") run_prof(argc, argv);
    return g_fail ? 1 : 0;
}
