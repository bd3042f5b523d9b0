// kernels/dequant/dequant.cu: GPU dequantization of every lowbit weight format to f16 / bf16.
//
// Algorithm
//   One generic kernel, `dequant_kernel<Decoder, Out>`, instantiated per format (Decoder) and
//   output type (Out = OutF16 / OutBf16). A Decoder turns a chunk of up to 8 consecutive
//   columns of one row into 8 f32 values using exactly the f32 arithmetic of docs/formats.md
//   (lowbit/dequant.cuh); the kernel rounds each value once (RNE) to the 16-bit output type and
//   stores the chunk. Results are bit-identical to lowbit-core's CPU dequantizer.
//
// Partitioning
//   out [n, k] row-major 16-bit, viewed as n rows of ceil(k/8) chunks of 8 columns:
//
//       row r: | chunk 0: c 0..7 | chunk 1: c 8..15 | ... | last chunk (k % 8 columns if k % 8) |
//
//   Global chunk index = r * ceil(k/8) + chunk; thread t of the grid handles chunk t, then
//   t + gridDim.x * blockDim.x, ... (grid-stride loop; blocks of 256 threads, at most 2^16 blocks).
//   Consecutive threads therefore write consecutive 16-byte pieces of a row (a warp writes 512
//   contiguous bytes) and read consecutive code words: both coalesced. A chunk never spans two
//   rows, so its codes come from one row's bitstream (at most 3 words: 8 codes x <= 8 bits start
//   byte-aligned) or one word per bit plane (bipolar: 8 columns = one byte of each plane word).
//   Group metadata is read per chunk and re-read only where a group boundary falls inside it
//   (group lengths need not be multiples of 8) or, with act-order g_idx, per column.
//
// Stores
//   16-byte `uint4` stores when k % 8 == 0 and `out` is 16-byte aligned (every chunk start is then
//   16-byte aligned); otherwise 2-byte stores. Both write exactly n*k elements, nothing else.
//
// Limits
//   k <= 2^31 - 1 and n * ceil(k/8) <= 2^32 - 1 (32-bit index math inside the kernel; 2^32 chunks
//   are 64 GiB of output). Bits: INT 2..8, bipolar 1..8, BitMoD 3..4, LUT 1..8. group_len must
//   divide k (per-channel: group_len = k). LUTs have at most 256 entries (staged in shared memory).
//   This is a utility kernel (reference dequantization, checkpoint export, cuBLAS baselines on
//   dequantized weights); the fused GEMMs decode in registers with the same lowbit/dequant.cuh
//   functions instead of materialising W.
//
// Host emulation
//   `dequant_chunk` is __host__ __device__; the *_host entry points run it for every chunk on the
//   CPU so that GPU-less CI checks this file's index math and decoding bit-exactly.

#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit/dequant.cuh"
#include "lowbit_kernels.h"

namespace lowbit {
namespace dequant {

constexpr int kChunk = 8;                 // columns per chunk: one 16-byte store of 8 x 16-bit
constexpr int kThreads = 256;             // threads per block
constexpr uint32_t kMaxBlocks = 1u << 16; // grid cap; the grid-stride loop covers the rest
constexpr int kMaxLutEntries = 256;       // 2^8: the largest LUT (bits = 8)

/// Problem geometry shared by all formats, computed and validated on the host.
struct Geometry {
    int64_t n;                // rows
    uint32_t k;               // columns (<= 2^31 - 1)
    uint32_t group_len;       // columns per group (divides k)
    uint32_t n_groups;        // k / group_len
    uint32_t chunks_per_row;  // ceil(k / kChunk)
    uint32_t total_chunks;    // n * chunks_per_row (< 2^32)
    bool vector_stores;       // k % 8 == 0 and out 16-byte aligned
};

/// Walks the groups of consecutive columns: `g` is the group of the current column, `next` the
/// first column of group g+1. step(c) moves to column c (= previous column + 1) and says whether a
/// new group started there. One division per chunk instead of one per column.
struct GroupCursor {
    uint32_t g;
    uint32_t next;
    uint32_t len;
    LOWBIT_HD GroupCursor(uint32_t c0, uint32_t group_len)
        : g(c0 / group_len), next((c0 / group_len + 1) * group_len), len(group_len) {}
    LOWBIT_HD bool step(uint32_t c) {
        if (c != next) return false;
        ++g;
        next += len;
        return true;
    }
};

// ---------------------------------------------------------------------------------------------
// Decoders. decode(row, c0, count, v) writes v[0..count) for columns c0..c0+count of `row`
// (count in 1..8, c0 a multiple of 8). prepare_block() runs once per block before the loop.
// ---------------------------------------------------------------------------------------------

/// INT affine: w = f32(q - z) * f32(s); z from `zeros` or 2^(bits-1) when zeros == nullptr.
struct IntAffineDecoder {
    const uint32_t *__restrict__ codes;   // [n, words_per_row]
    const uint16_t *__restrict__ scales;  // [n, n_groups] f16 bits
    const uint8_t *__restrict__ zeros;    // [n, n_groups] or nullptr (symmetric)
    const uint32_t *__restrict__ g_idx;   // [k] or nullptr (contiguous groups)
    int64_t words_per_row;
    uint32_t n_groups;
    uint32_t group_len;
    int bits;

    __device__ void prepare_block() {}

    LOWBIT_HD int zero_point(const uint8_t *row_zeros, uint32_t g) const {
        return row_zeros ? static_cast<int>(row_zeros[g]) : int_symmetric_zero(bits);
    }

    LOWBIT_HD void decode(int64_t row, uint32_t c0, int count, float (&v)[kChunk]) const {
        const uint64_t win = bitstream_window(codes + row * words_per_row, c0, count, bits);
        const uint16_t *row_scales = scales + row * n_groups;
        const uint8_t *row_zeros = zeros ? zeros + row * n_groups : nullptr;
        if (g_idx) {
            // Act-order: every column names its group; an out-of-range index yields NaN rather
            // than an out-of-bounds read (lowbit-core's validate() rejects such weights earlier).
            LOWBIT_UNROLL
            for (int j = 0; j < kChunk; ++j) {
                if (j >= count) break;
                const uint32_t g = g_idx[c0 + j];
                v[j] = (g < n_groups) ? int_affine_value(window_code(win, j, bits),
                                                         zero_point(row_zeros, g),
                                                         f16_bits_to_float(row_scales[g]))
                                      : quiet_nan();
            }
            return;
        }
        GroupCursor cur(c0, group_len);
        float s = f16_bits_to_float(row_scales[cur.g]);
        int z = zero_point(row_zeros, cur.g);
        LOWBIT_UNROLL
        for (int j = 0; j < kChunk; ++j) {
            if (j >= count) break;
            if (cur.step(c0 + j)) {
                s = f16_bits_to_float(row_scales[cur.g]);
                z = zero_point(row_zeros, cur.g);
            }
            v[j] = int_affine_value(window_code(win, j, bits), z, s);
        }
    }
};

/// bipolar-INT: u from `bits` bit planes, w = fmaf(2u - (2^bits - 1), scale, offset).
struct BipolarDecoder {
    const uint32_t *__restrict__ planes;   // [bits][n][words_per_row]
    const float *__restrict__ scales;      // [n, n_groups]
    const float *__restrict__ offsets;     // [n, n_groups] or nullptr
    int64_t n;
    int64_t words_per_row;                 // ceil(k / 32)
    uint32_t n_groups;
    uint32_t group_len;
    int bits;

    __device__ void prepare_block() {}

    LOWBIT_HD void decode(int64_t row, uint32_t c0, int count, float (&v)[kChunk]) const {
        // c0 % 8 == 0, so the chunk's 8 columns are one byte of one word in every plane.
        const int64_t word = row * words_per_row + (c0 >> 5);
        const int64_t plane_stride = n * words_per_row;
        const uint32_t shift = c0 & 31;
        uint32_t plane_bytes[kChunk] = {0, 0, 0, 0, 0, 0, 0, 0};
        LOWBIT_UNROLL
        for (int i = 0; i < kChunk; ++i) {
            if (i >= bits) break;
            plane_bytes[i] = (planes[i * plane_stride + word] >> shift) & 0xFFu;
        }
        const uint64_t codes8 = bipolar_gather8(plane_bytes, bits);  // code j in byte j

        const float *row_scales = scales + row * n_groups;
        const float *row_offsets = offsets ? offsets + row * n_groups : nullptr;
        GroupCursor cur(c0, group_len);
        float s = row_scales[cur.g];
        float o = row_offsets ? row_offsets[cur.g] : 0.0f;
        LOWBIT_UNROLL
        for (int j = 0; j < kChunk; ++j) {
            if (j >= count) break;
            if (cur.step(c0 + j)) {
                s = row_scales[cur.g];
                o = row_offsets ? row_offsets[cur.g] : 0.0f;
            }
            const uint32_t u = static_cast<uint32_t>(codes8 >> (8 * j)) & 0xFFu;
            v[j] = bipolar_value(u, bits, s, o);
        }
    }
};

/// BitMoD: w = f32(grid(code, selector)) * (f32(q_g) * f32(channel scale)).
struct MixedDecoder {
    const uint32_t *__restrict__ codes;           // [n, words_per_row]
    const uint8_t *__restrict__ group_scales;     // [n, n_groups]
    const uint8_t *__restrict__ selectors;        // [n, selector_bytes_per_row]
    const uint16_t *__restrict__ channel_scales;  // [n] f16 bits
    int64_t words_per_row;
    int64_t selector_bytes_per_row;               // ceil(n_groups / 4)
    uint32_t n_groups;
    uint32_t group_len;
    int bits;

    __device__ void prepare_block() {}

    LOWBIT_HD void decode(int64_t row, uint32_t c0, int count, float (&v)[kChunk]) const {
        const uint64_t win = bitstream_window(codes + row * words_per_row, c0, count, bits);
        const uint8_t *row_q = group_scales + row * n_groups;
        const uint8_t *row_sel = selectors + row * selector_bytes_per_row;
        const float ch = f16_bits_to_float(channel_scales[row]);
        GroupCursor cur(c0, group_len);
        float gs = bitmod_group_scale(row_q[cur.g], ch);
        uint32_t sel = bitmod_selector(row_sel, cur.g);
        LOWBIT_UNROLL
        for (int j = 0; j < kChunk; ++j) {
            if (j >= count) break;
            if (cur.step(c0 + j)) {
                gs = bitmod_group_scale(row_q[cur.g], ch);
                sel = bitmod_selector(row_sel, cur.g);
            }
            v[j] = bitmod_value(bitmod_grid_value(window_code(win, j, bits), bits, sel), gs);
        }
    }
};

/// LUT: w = lut[code] * f32(scale). The table is staged in shared memory per block.
struct LutDecoder {
    const uint32_t *__restrict__ codes;   // [n, words_per_row]
    const float *lut;                     // [2^bits]; points to shared memory after prepare_block
    const uint16_t *__restrict__ scales;  // [n, n_groups] f16 bits
    int64_t words_per_row;
    uint32_t n_groups;
    uint32_t group_len;
    int bits;

    // Why shared memory: codes index the table data-dependently, so global/constant loads would
    // serialise a warp on distinct addresses; 2^bits <= 256 floats (1 KiB) fit trivially.
    __device__ void prepare_block() {
        __shared__ float s_lut[kMaxLutEntries];
        const int entries = 1 << bits;
        for (int i = threadIdx.x; i < entries; i += blockDim.x) s_lut[i] = lut[i];
        __syncthreads();
        lut = s_lut;
    }

    LOWBIT_HD void decode(int64_t row, uint32_t c0, int count, float (&v)[kChunk]) const {
        const uint64_t win = bitstream_window(codes + row * words_per_row, c0, count, bits);
        const uint16_t *row_scales = scales + row * n_groups;
        GroupCursor cur(c0, group_len);
        float s = f16_bits_to_float(row_scales[cur.g]);
        LOWBIT_UNROLL
        for (int j = 0; j < kChunk; ++j) {
            if (j >= count) break;
            if (cur.step(c0 + j)) s = f16_bits_to_float(row_scales[cur.g]);
            v[j] = lut_value(lut[window_code(win, j, bits)], s);
        }
    }
};

// ---------------------------------------------------------------------------------------------
// The generic kernel
// ---------------------------------------------------------------------------------------------

/// Decodes and stores chunk `chunk` (see the partitioning in the file comment).
template <class Decoder, class Out>
LOWBIT_HD void dequant_chunk(const Decoder &dec, const Geometry &geo, uint32_t chunk,
                             uint16_t *__restrict__ out) {
    const uint32_t row = chunk / geo.chunks_per_row;
    const uint32_t c0 = (chunk - row * geo.chunks_per_row) * kChunk;
    const int count = (geo.k - c0 < static_cast<uint32_t>(kChunk)) ? static_cast<int>(geo.k - c0)
                                                                     : kChunk;
    float v[kChunk] = {};  // fully written when count == kChunk; zeroed to keep it obvious
    dec.decode(row, c0, count, v);

    uint16_t *dst = out + static_cast<int64_t>(row) * geo.k + c0;
    if (geo.vector_stores && count == kChunk) {
        uint4 packed;
        packed.x = Out::bits(v[0]) | (static_cast<uint32_t>(Out::bits(v[1])) << 16);
        packed.y = Out::bits(v[2]) | (static_cast<uint32_t>(Out::bits(v[3])) << 16);
        packed.z = Out::bits(v[4]) | (static_cast<uint32_t>(Out::bits(v[5])) << 16);
        packed.w = Out::bits(v[6]) | (static_cast<uint32_t>(Out::bits(v[7])) << 16);
        *reinterpret_cast<uint4 *>(dst) = packed;
    } else {
        for (int j = 0; j < count; ++j) dst[j] = Out::bits(v[j]);
    }
}

/// Grid-stride loop over all chunks of W (one chunk = 8 outputs of one row per iteration).
template <class Decoder, class Out>
__global__ void __launch_bounds__(kThreads)
    dequant_kernel(Decoder dec, Geometry geo, uint16_t *__restrict__ out) {
    dec.prepare_block();
    const uint64_t stride = static_cast<uint64_t>(gridDim.x) * blockDim.x;
    // 64-bit loop counter: chunk + stride must not wrap around near 2^32.
    for (uint64_t chunk = static_cast<uint64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
         chunk < geo.total_chunks; chunk += stride) {
        dequant_chunk<Decoder, Out>(dec, geo, static_cast<uint32_t>(chunk), out);
    }
}

/// Validates what every format shares and fills `geo`. `out` may be a host pointer (emulation).
inline lowbit_status make_geometry(int64_t n, int64_t k, int64_t group_len, const void *out,
                                   int32_t out_dtype, Geometry *geo) {
    LOWBIT_REQUIRE(out != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(out_dtype == LOWBIT_DTYPE_F16 || out_dtype == LOWBIT_DTYPE_BF16,
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(n >= 1 && k >= 1, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(k <= INT32_MAX, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(group_len >= 1 && group_len <= k && k % group_len == 0, LOWBIT_ERR_SHAPE);
    const int64_t chunks_per_row = (k + kChunk - 1) / kChunk;
    LOWBIT_REQUIRE(n <= static_cast<int64_t>(UINT32_MAX) / chunks_per_row, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(is_aligned(out, 2), LOWBIT_ERR_ALIGNMENT);
    geo->n = n;
    geo->k = static_cast<uint32_t>(k);
    geo->group_len = static_cast<uint32_t>(group_len);
    geo->n_groups = static_cast<uint32_t>(k / group_len);
    geo->chunks_per_row = static_cast<uint32_t>(chunks_per_row);
    geo->total_chunks = static_cast<uint32_t>(n * chunks_per_row);
    geo->vector_stores = (k % kChunk == 0) && is_aligned(out, 16);
    return status_ok();
}

template <class Decoder, class Out>
lowbit_status launch_typed(const Decoder &dec, const Geometry &geo, void *out, void *stream) {
    const uint32_t wanted = (geo.total_chunks + kThreads - 1) / kThreads;
    const uint32_t blocks = wanted < kMaxBlocks ? wanted : kMaxBlocks;
    clear_pending_error();
    dequant_kernel<Decoder, Out><<<blocks, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        dec, geo, static_cast<uint16_t *>(out));
    return launch_status();
}

/// Launches the kernel for `dec` on `stream` (GPU) or runs every chunk on this thread (host).
template <class Decoder>
lowbit_status run(const Decoder &dec, const Geometry &geo, void *out, int32_t out_dtype,
                  void *stream, bool on_host) {
    if (on_host) {
        uint16_t *o = static_cast<uint16_t *>(out);
        for (uint64_t c = 0; c < geo.total_chunks; ++c) {
            if (out_dtype == LOWBIT_DTYPE_F16)
                dequant_chunk<Decoder, OutF16>(dec, geo, static_cast<uint32_t>(c), o);
            else
                dequant_chunk<Decoder, OutBf16>(dec, geo, static_cast<uint32_t>(c), o);
        }
        return status_ok();
    }
    if (out_dtype == LOWBIT_DTYPE_F16) return launch_typed<Decoder, OutF16>(dec, geo, out, stream);
    return launch_typed<Decoder, OutBf16>(dec, geo, out, stream);
}

// ---------------------------------------------------------------------------------------------
// Per-format argument validation + dispatch (shared by the GPU launchers and host emulation)
// ---------------------------------------------------------------------------------------------

lowbit_status int_affine(const uint32_t *codes, const uint16_t *scales, const uint8_t *zeros,
                         const uint32_t *g_idx, int64_t n, int64_t k, int32_t bits,
                         int64_t group_len, void *out, int32_t out_dtype, void *stream,
                         bool on_host) {
    LOWBIT_REQUIRE(codes != nullptr && scales != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bits >= 2 && bits <= 8, LOWBIT_ERR_NO_KERNEL);
    Geometry geo;
    lowbit_status st = make_geometry(n, k, group_len, out, out_dtype, &geo);
    if (st.code != LOWBIT_OK) return st;
    LOWBIT_REQUIRE(is_aligned(codes, 4) && is_aligned(scales, 2), LOWBIT_ERR_ALIGNMENT);
    LOWBIT_REQUIRE(g_idx == nullptr || is_aligned(g_idx, 4), LOWBIT_ERR_ALIGNMENT);
    IntAffineDecoder dec;
    dec.codes = codes;
    dec.scales = scales;
    dec.zeros = zeros;
    dec.g_idx = g_idx;
    dec.words_per_row = bitstream_words_per_row(k, bits);
    dec.n_groups = geo.n_groups;
    dec.group_len = geo.group_len;
    dec.bits = bits;
    return run(dec, geo, out, out_dtype, stream, on_host);
}

lowbit_status bipolar(const uint32_t *planes, const float *scales, const float *offsets,
                      int64_t n, int64_t k, int32_t bits, int64_t group_len, void *out,
                      int32_t out_dtype, void *stream, bool on_host) {
    LOWBIT_REQUIRE(planes != nullptr && scales != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bits >= 1 && bits <= 8, LOWBIT_ERR_NO_KERNEL);
    Geometry geo;
    lowbit_status st = make_geometry(n, k, group_len, out, out_dtype, &geo);
    if (st.code != LOWBIT_OK) return st;
    LOWBIT_REQUIRE(is_aligned(planes, 4) && is_aligned(scales, 4), LOWBIT_ERR_ALIGNMENT);
    LOWBIT_REQUIRE(offsets == nullptr || is_aligned(offsets, 4), LOWBIT_ERR_ALIGNMENT);
    BipolarDecoder dec;
    dec.planes = planes;
    dec.scales = scales;
    dec.offsets = offsets;
    dec.n = n;
    dec.words_per_row = (k + 31) / 32;
    dec.n_groups = geo.n_groups;
    dec.group_len = geo.group_len;
    dec.bits = bits;
    return run(dec, geo, out, out_dtype, stream, on_host);
}

lowbit_status mixed(const uint32_t *codes, const uint8_t *group_scales, const uint8_t *selectors,
                    const uint16_t *channel_scales, int64_t n, int64_t k, int32_t bits,
                    int64_t group_len, void *out, int32_t out_dtype, void *stream, bool on_host) {
    LOWBIT_REQUIRE(codes != nullptr && group_scales != nullptr && selectors != nullptr &&
                       channel_scales != nullptr,
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bits == 3 || bits == 4, LOWBIT_ERR_NO_KERNEL);
    Geometry geo;
    lowbit_status st = make_geometry(n, k, group_len, out, out_dtype, &geo);
    if (st.code != LOWBIT_OK) return st;
    LOWBIT_REQUIRE(is_aligned(codes, 4) && is_aligned(channel_scales, 2), LOWBIT_ERR_ALIGNMENT);
    MixedDecoder dec;
    dec.codes = codes;
    dec.group_scales = group_scales;
    dec.selectors = selectors;
    dec.channel_scales = channel_scales;
    dec.words_per_row = bitstream_words_per_row(k, bits);
    dec.selector_bytes_per_row = (geo.n_groups + 3) / 4;
    dec.n_groups = geo.n_groups;
    dec.group_len = geo.group_len;
    dec.bits = bits;
    return run(dec, geo, out, out_dtype, stream, on_host);
}

lowbit_status lut(const uint32_t *codes, const float *table, const uint16_t *scales, int64_t n,
                  int64_t k, int32_t bits, int64_t group_len, void *out, int32_t out_dtype,
                  void *stream, bool on_host) {
    LOWBIT_REQUIRE(codes != nullptr && table != nullptr && scales != nullptr,
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bits >= 1 && bits <= 8, LOWBIT_ERR_NO_KERNEL);
    static_assert(kMaxLutEntries == (1 << 8), "shared LUT must hold the 8-bit table");
    Geometry geo;
    lowbit_status st = make_geometry(n, k, group_len, out, out_dtype, &geo);
    if (st.code != LOWBIT_OK) return st;
    LOWBIT_REQUIRE(is_aligned(codes, 4) && is_aligned(table, 4) && is_aligned(scales, 2),
                   LOWBIT_ERR_ALIGNMENT);
    LutDecoder dec;
    dec.codes = codes;
    dec.lut = table;
    dec.scales = scales;
    dec.words_per_row = bitstream_words_per_row(k, bits);
    dec.n_groups = geo.n_groups;
    dec.group_len = geo.group_len;
    dec.bits = bits;
    return run(dec, geo, out, out_dtype, stream, on_host);
}

}  // namespace dequant
}  // namespace lowbit

// ---------------------------------------------------------------------------------------------
// extern "C" entry points (documented in lowbit_kernels.h)
// ---------------------------------------------------------------------------------------------

extern "C" lowbit_status lowbit_dequant_int_affine(const uint32_t *codes, const uint16_t *scales,
                                                   const uint8_t *zeros, const uint32_t *g_idx,
                                                   int64_t n, int64_t k, int32_t bits,
                                                   int64_t group_len, void *out,
                                                   int32_t out_dtype, void *stream) {
    return lowbit::dequant::int_affine(codes, scales, zeros, g_idx, n, k, bits, group_len, out,
                                       out_dtype, stream, false);
}

extern "C" lowbit_status lowbit_dequant_bipolar(const uint32_t *planes, const float *scales,
                                                const float *offsets, int64_t n, int64_t k,
                                                int32_t bits, int64_t group_len, void *out,
                                                int32_t out_dtype, void *stream) {
    return lowbit::dequant::bipolar(planes, scales, offsets, n, k, bits, group_len, out,
                                    out_dtype, stream, false);
}

extern "C" lowbit_status lowbit_dequant_mixed(const uint32_t *codes, const uint8_t *group_scales,
                                              const uint8_t *selectors,
                                              const uint16_t *channel_scales, int64_t n,
                                              int64_t k, int32_t bits, int64_t group_len,
                                              void *out, int32_t out_dtype, void *stream) {
    return lowbit::dequant::mixed(codes, group_scales, selectors, channel_scales, n, k, bits,
                                  group_len, out, out_dtype, stream, false);
}

extern "C" lowbit_status lowbit_dequant_lut(const uint32_t *codes, const float *lut,
                                            const uint16_t *scales, int64_t n, int64_t k,
                                            int32_t bits, int64_t group_len, void *out,
                                            int32_t out_dtype, void *stream) {
    return lowbit::dequant::lut(codes, lut, scales, n, k, bits, group_len, out, out_dtype, stream,
                                false);
}

extern "C" lowbit_status lowbit_dequant_int_affine_host(const uint32_t *codes,
                                                        const uint16_t *scales,
                                                        const uint8_t *zeros,
                                                        const uint32_t *g_idx, int64_t n,
                                                        int64_t k, int32_t bits,
                                                        int64_t group_len, void *out,
                                                        int32_t out_dtype) {
    return lowbit::dequant::int_affine(codes, scales, zeros, g_idx, n, k, bits, group_len, out,
                                       out_dtype, nullptr, true);
}

extern "C" lowbit_status lowbit_dequant_bipolar_host(const uint32_t *planes, const float *scales,
                                                     const float *offsets, int64_t n, int64_t k,
                                                     int32_t bits, int64_t group_len, void *out,
                                                     int32_t out_dtype) {
    return lowbit::dequant::bipolar(planes, scales, offsets, n, k, bits, group_len, out,
                                    out_dtype, nullptr, true);
}

extern "C" lowbit_status lowbit_dequant_mixed_host(const uint32_t *codes,
                                                   const uint8_t *group_scales,
                                                   const uint8_t *selectors,
                                                   const uint16_t *channel_scales, int64_t n,
                                                   int64_t k, int32_t bits, int64_t group_len,
                                                   void *out, int32_t out_dtype) {
    return lowbit::dequant::mixed(codes, group_scales, selectors, channel_scales, n, k, bits,
                                  group_len, out, out_dtype, nullptr, true);
}

extern "C" lowbit_status lowbit_dequant_lut_host(const uint32_t *codes, const float *lut,
                                                 const uint16_t *scales, int64_t n, int64_t k,
                                                 int32_t bits, int64_t group_len, void *out,
                                                 int32_t out_dtype) {
    return lowbit::dequant::lut(codes, lut, scales, n, k, bits, group_len, out, out_dtype,
                                nullptr, true);
}
