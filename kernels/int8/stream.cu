// The int8 GEMM's small-M streaming path (LOWBIT_I8_PATH_STREAM): W8A8, W4A8 and the bipolar GEMM's packed 2- / 4-bit
// weight codes (LOWBIT_I8_BIP2 / BIP4, NOTES v10) for M <= 16 on IMMA (mma.sync m16n8k32 s8, sm_80+), weights
// streamed from HBM into registers, no shared-memory weight ring.
//
// Why (NOTES v4): the tile kernel (lowbit/i8_gemm.cuh) runs a ~1170-cycle latency chain per 128-column stage per
// CTA (barrier, refill, dependent MMAs, W4 expansion) whatever the stage's bytes, so W4 was no faster than W8 at
// M = 1 and M = 16 ran at 0.57-0.97x cuBLASLt. Here, as in the weight-only family (lowbit/wo_gemm.cuh), each warp
// owns a strip of weight rows and keeps several 16-byte loads per lane in flight; nothing waits on a barrier in
// the loop.
//
// Algorithm: acc[m, n] = sum_k X[m, k] * Wq[n, k] with the weight as the MMA's B operand (n8 = 8 weight rows)
// and the activations as A (m16 = up to 16 activation rows). The dot product is invariant under any permutation
// of k applied to both operands, so each lane loads 16 CONTIGUOUS bytes of one weight row from the tiled layout
// (lowbit-core int8::tile_weight, the same bytes the tile kernel reads: ONE weight layout for both paths) and
// uses them as its B fragments of several k32 steps; the activation fragment is then one or two 16-byte shared
// loads per lane at the matching (permuted) columns.
//
//   Tiled block (128 rows x 128 columns; W8 16 KB, W4 8 KB): byte (row r, 16-byte chunk c) at
//   c * 2048 + (r / 8) * 128 + (r % 8) * 16. Lane (g, t) = (lane / 4, lane % 4) of the warp of strip q loads
//   chunk (4h + t) of row 32q + 8j + g for its four row groups j: one warp load covers four full 128-byte lines
//   (rows 8j..8j+7 of chunks 4h..4h+3) and the four row groups together cover 4 x 512 contiguous bytes.
//   - W8, a "unit" = 64 columns (window h of a block): lane t's 16 bytes are columns 64u + 16t .. + 15;
//     k32 step 0 takes bytes 0..7 (b0 = bytes 0..3 <-> k slots 4t.., b1 = bytes 4..7 <-> slots 16+4t..), step 1
//     bytes 8..15. The A fragment of activation row g is bytes 16t .. 16t+15 of the unit: one LDS.128.
//   - W4, a "unit" = one block (128 columns, 4 chunks of 32 columns): lane t's 16 bytes are the four pack_w4
//     words of chunk t, word s = the m16n8k32 fragment codes of "lane s" (k 4s..4s+3, 16+4s..16+4s+3 of the
//     chunk), so k32 step s uses word s of every lane; the A fragment is activation columns 32t + 4s.. and
//     32t + 16 + 4s.. (two LDS.128 per row per unit).
// W4 expansion without scales: the MMA consumes the unsigned codes u = q + 8 in 0..15 (AND / SHF + 2 PRMT per
// 8 codes, no IMAD), and the offset is removed exactly afterwards: sum_k x (u - 8) s = s (sum_k x u - 8 sum_k x).
// The activation sums sum_k x come from one extra MMA per k32 step against an all-ones B fragment (they land in
// the accumulator lanes that need them). Group scales (groups of a multiple of 128 columns = whole units) are
// applied per unit to an int32 partial; grouped W4 (v27) feeds the MMA signed codes 16 q instead (w4_codes16: the
// same instruction count as the u expansion), so no activation sums: acc += s_n * (part >> 4). Every step is exact
// int32.
// Bipolar codes (v10; the unsigned operand since v21): the bipolar GEMM's int8 mapping multiplies the codes u
// themselves (its epilogue turns sum x u into the value product), so off = 0 and no activation sums are needed.
// BIP4 reads the W4 bytes; BIP2's 256-column unit is one 8 KB block of 128 rows (lowbit-core int8::tile_bip2):
// lane t's word c holds columns 64c + 16t + [0, 16), bit 8b + 2i <-> column 8 (i >> 1) + 4 (i & 1) + b, so
// (w >> 2i) & 0x03030303 is a ready B (or A) fragment register.
// Orientation: at MT = 16 the weights are the MMA's B side (n8 = one row group) and the activations its A side
// (m16); at MT = 8 ("T", v10; grouped W4 since v25) the weights are A (two row groups per m16) and the 8 activation
// rows B, which halves the MMAs; per-channel packed formats' sum x then comes from one dp4a pass over the CTA's
// activation slice; grouped W4 needs none (signed codes 16 q, v27).
//
// Partitioning: CTA = 256 threads = 8 warps = SP strips of 32 weight rows x 8 / SP warps that split each
// strip's units (in-block split-K, reduced through shared memory at the end): SP = 4 (one 128-row tile, 2 warps
// per strip) where the tiles alone give >= one CTA per SM, SP = 1 (8 warps per strip, v7) where they do not, so
// small N needs little or no cross-CTA split-K; SP = 8 (NOTES v13): 512 threads = 16 warps, 256 rows, one CTA per
// SM with a 176 KB activation budget, where the 128-row plan needs a second wave (M = 16 on 28672x8192: unsplit).
// Programmatic dependent launch (NOTES v13): the first weights are prefetched into L2 before griddepcontrol.wait,
// every load into the SM comes after it. grid = (1, ceil(N / (32 SP)), splits) with split-K over
// 128-column steps across CTAs (NOTES v22: each CTA stores its int32 sums into its own workspace slab, the last CTA
// of the row block to arrive adds the slabs and runs the epilogue; finish_slab). The CTA's activation rows [0, MT)
// x its K range sit in shared memory (zero-filled beyond K: the weight padding of the last block is code u = 0),
// copied in up to kXChunks chunks that the warps wait for one by one (v22), W4 group scales too. Two register buffers of
// units_per_buffer units per warp: the next buffer's loads are issued before the current buffer's MMAs.
// Limits: M <= 16 (MT = 8 or 16); W4 group_len a multiple of 128 (or no group scales); the launcher bounds
// steps_per_split so MT rows x the CTA's K range fit kXBudget bytes of shared memory.
#include <cuda_runtime.h>
#include <stdint.h>

#include <atomic>
#include <cstdlib>


#include "lowbit/cp_async_bar.cuh"
#include "lowbit/i8_gemm.cuh"
#include "lowbit/imma.cuh"
#include "lowbit/launch.cuh"
#include "lowbit/mma.cuh"
#include "lowbit/pdl.cuh"
#include "lowbit/tma.cuh"

namespace lowbit {
namespace i8 {
namespace stream {

// Warps per CTA: 8 (SP = 1 or 4, two CTAs per SM) or 16 (SP = 8: 256-row CTAs, one per SM, NOTES v13).
__host__ __device__ constexpr int warps_of(int sp) { return sp == 8 ? 16 : 8; }
__host__ __device__ constexpr int ctas_per_sm(int sp) { return sp == 8 ? 1 : 2; }
// Weight formats (= enum lowbit_i8_wformat): int8 codes; 4-bit codes u = q + 8 (pack_w4 order); 4-bit bipolar codes
// u (pack_w4 order: the W4 bytes); 2-bit bipolar codes u (the 2-bit stream order below); both multiplied as u.
constexpr int kW8 = 0, kW4 = 1, kBip4 = 2, kBip2 = 3;
constexpr uint32_t kOnesI = 0x01010101u;  // four int8 ones (dp4a / all-ones MMA operand)
// Packed unsigned codes u whose int32 result is sum x u - off * sum x (W4: q = u - 8, off = 8; bipolar: u itself,
// the int8 mapping's unsigned operand, off = 0). Only W4 needs the activation sums sum x.
__host__ __device__ constexpr bool packed(int f) { return f != kW8; }
__host__ __device__ constexpr int code_off(int f) { return f == kW4 ? 8 : 0; }
__host__ __device__ constexpr bool needs_xsum(int f) { return packed(f) && code_off(f) != 0; }
// Units per register buffer: two buffers per warp, the next one's loads issued before the current one's MMAs,
// so 2-4 units (8-16 loads of 16 B per lane) are always in flight (v5 loaded 4 units, then consumed them with
// nothing in flight: H100, W8 at 87% of the copy bandwidth, W4 no faster than W8).
// Grouped W4 with 16 activation rows keeps one unit per buffer (two spilled 8-36 bytes under the 128-register
// bound, v6). Grouped W4 at MT = 8 runs the T orientation since v25 (123-126 registers): two units per buffer on every CTA
// shape. At MT = 16 two units per buffer spilled 20-76 bytes and measured 0-3 us slower (H100, NOTES v25).
template <int F, bool GS, int MT, int SP>
constexpr int units_per_buffer() { return (F == kW4 && GS && MT > 8) ? 1 : 2; }
// In-block reduction: (warps per strip - 1) x strips x 16 accumulators x 32 lanes.
__host__ __device__ constexpr int red_bytes(int sp) { return (warps_of(sp) / sp - 1) * sp * 16 * 32 * 4; }
// Activation bytes in shared memory per CTA: 80 KB (+ 8 KB reduction + group scales) at two CTAs per SM; 176 KB
// (+ 16 KB + up to 22 KB of group scales <= the 227 KB opt-in) for the one-per-SM 256-row CTAs.
__host__ __device__ constexpr int x_budget(int sp) { return sp == 8 ? 176 * 1024 : 80 * 1024; }

// Row padding of the activation tile: rows g and g + 1 of a quarter-warp land in disjoint banks (W8 lanes read
// 64 contiguous bytes per row, W4 lanes 16 bytes every 32).
// The 2-bit format reads activations as W8 does (16 bytes at 16t of a 64-byte window).
__host__ __device__ constexpr int x_pad(int f) { return f == kW4 || f == kBip4 ? 16 : 64; }

// Epilogue vectors in shared memory: rs, rc [MT] and cs, cc, bias [32 SP] floats, then (only when the second rank-1
// term is present: `two`, so that launches without it keep their shared-memory size) rc2 [MT] and cc2 [32 SP].
__host__ __device__ constexpr int evec_bytes(int mt, int sp, bool two = false) {
    return (2 * mt + 3 * 32 * sp + (two ? mt + 32 * sp : 0)) * 4;
}

// Largest steps_per_split whose activation tile fits x_budget (2-bit: even, a unit is two 128-column steps).
__host__ __device__ constexpr int max_steps(int mt, int f, int sp) {
    return f == kBip2 ? ((x_budget(sp) / mt - x_pad(f)) / kBK) & ~1 : (x_budget(sp) / mt - x_pad(f)) / kBK;
}

// The CTA's activation slice is copied in up to kXChunks pieces of whole 128-column steps, each completing on its own
// mbarrier (NOTES v22). On 128- and 256-row CTAs without T's activation-sum pass (kChunked) the first goes before the
// weight loads, the rest behind them, and a warp waits for a piece only when its unit walk reaches it; elsewhere all
// pieces go behind the weight loads and are waited for before the loop (v21's order).
constexpr int kXChunks = 8;
// NOTES v30: on Hopper, the 256-row W8 / W4 instances at MT = 16 launched as 2-CTA clusters (two row blocks, the same
// K range) copy the activation slice once per cluster: each CTA issues 1-D bulk copies of half its rows, multicast to
// both (H100: 28672x8192 W4-g128 at M = 16 -1.0 us, W8 -2.2 us; the 4-way split 8192x28672 within +-0.3 us). Not on the
// 128-row CTAs (two per SM): there the clusters measured +0.4..+0.5 us (4096x11008, 8192x8192 W4-g128 at M = 16).
constexpr bool kMulticast = true;
__host__ __device__ constexpr bool mc_instance(int f, int mt, int sp) { return mt > 8 && sp == 8 && (f == kW8 || f == kW4); }

// Timing probes (NOTES v13), compiled only into the micro harness (-DLOWBIT_STREAM_PROBE): flags 1 = no MMAs (the
// weights are XOR-consumed), 2 = no activation copy, 4 = no epilogue / split-K finish, 8 = rotated unit walk,
// 16 = v21's activation copy (the whole slice after the weight loads, one wait before the loop), 32 = v21's
// split-K finish (red.global per accumulator into one [M][N] sum), 64 = the pre-v28 unsplit MT = 16 epilogue (scattered
// stores from the accumulators), 512 = kMulticast flipped (host side: the launch's cluster, NOTES v30), 4096 = the
// cooperative split-K finish flipped (host side: Args::coop, NOTES v32), 8192 = the cooperative finish on split grids that
// do not fit one wave too (its waits time out: the fallback path), 16384 = on the 32-row (SP = 1) split grids too; a
// per-CTA timeline
// (globaltimer at entry, after the grid-dependency wait, after the activation copy, after the in-block reduction,
// at exit, and the SM id) when a buffer is set.
#ifdef LOWBIT_STREAM_PROBE
__device__ int g_probe;
__device__ unsigned long long* g_timeline;
__device__ __forceinline__ unsigned long long gtime() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}
#endif

// D = A * B + 0 (a fresh partial).
__device__ __forceinline__ void mma_s8_zero(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%10,%10,%10,%10};\n"
        : "=r"(d[0]), "=r"(d[1]), "=r"(d[2]), "=r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1), "r"(0));
}

// 4-byte asynchronous global -> shared copy (cp.async.ca: the 16-byte .cg form does not take 4 bytes).
__device__ __forceinline__ void cp_async4(void* smem, const void* gmem) {
    const unsigned addr = static_cast<unsigned>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(addr), "l"(gmem));
}

// One accumulator element leaves the CTA (as lowbit/i8_gemm.cuh emit, with the CTA's epilogue vectors `es`).
__device__ __forceinline__ void emit(const Args& p, const Epilogue& es, int32_t v, int m, int n) {
    if (m >= p.m || n >= p.n) return;
    if (p.ws) {
        atomicAdd(p.ws + size_t(m) * p.n + n, v);
    } else {
        epi_store(es, p.y, p.ldy, v, m, n);
    }
}

__device__ __forceinline__ uint4 lds128(const unsigned char* p) { return *reinterpret_cast<const uint4*>(p); }

__device__ __forceinline__ uint32_t word(const uint4& v, int i) { return i == 0 ? v.x : i == 1 ? v.y : i == 2 ? v.z : v.w; }

// The 8 codes u of a pack_w4 word (nibbles hold logical positions [0, 1, 4, 5, 2, 3, 6, 7]) as bytes in logical
// order: lo = positions 0..3 (k 4s..4s+3), hi = 4..7 (k 16+4s..). E = even nibbles = positions [0, 4, 2, 6],
// O = odd nibbles = [1, 5, 3, 7].
__device__ __forceinline__ void w4_codes(uint32_t x, uint32_t& lo, uint32_t& hi) {
    const uint32_t e = x & 0x0F0F0F0Fu, o = (x >> 4) & 0x0F0F0F0Fu;
    lo = prmt(e, o, 0x6240);
    hi = prmt(e, o, 0x7351);
}

// The same 8 codes as signed bytes 16 q = (u ^ 8) << 4 (q = u - 8 in -8..7; NOTES v27): an s8 MMA on them gives
// 16 sum x q exactly (|x * 16 q| <= 2^14), so grouped W4 needs no activation sums; the per-unit partial is shifted
// back (>> 4, exact) before its group scale. Same instruction count as w4_codes (a shift, two LOP3, two PRMT).
// (a & 0xF0F0F0F0) ^ c as one LOP3 (written in C++, ptxas split it into two: an AND and an XOR per use, NOTES v27).
__device__ __forceinline__ uint32_t hi_xor(uint32_t a, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, 0xF0F0F0F0, %2, 0x6A;" : "=r"(d) : "r"(a), "r"(c));
    return d;
}
__device__ __forceinline__ void w4_codes16(uint32_t x, uint32_t& lo, uint32_t& hi) {
    const uint32_t e = hi_xor(x << 4, 0x80808080u), o = hi_xor(x, 0x80808080u);
    lo = prmt(e, o, 0x6240);
    hi = prmt(e, o, 0x7351);
}

// Split-K (as lowbit/i8_gemm.cuh splitk_finish, for an R-row CTA): after its partial sums are in the workspace,
// the last CTA of the row block to arrive applies the epilogue to the block and zeroes its workspace and counter.
template <int MT, int R, int NT>
__device__ __forceinline__ void finish(const Args& p, const Epilogue& es, int n0) {
    __shared__ int last;
    __threadfence();
    __syncthreads();
    if (threadIdx.x == 0) last = atomicAdd(p.counters + blockIdx.y, 1) == int(gridDim.z) - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < MT * R; i += NT) {
        const int m = i / R, n = n0 + i % R;
        if (m < p.m && n < p.n) {
            int32_t* at = p.ws + size_t(m) * p.n + n;
            const int32_t v = __ldcg(at);
            __stcg(at, 0);
            epi_store(es, p.y, p.ldy, v, m, n);
        }
    }
    if (threadIdx.x == 0) p.counters[blockIdx.y] = 0;
}

// One 4-column piece of final sums (activation row m, weight rows n .. n + 3) through the epilogue: f16 / bf16 as one
// 8-byte store where the piece is whole and `al` (the output is f16 / bf16 and 8-byte aligned), else per element.
__device__ __forceinline__ void store_piece(const Args& p, const Epilogue& es, const int4& v, int m, int n, bool al) {
    const int32_t vv[4] = {v.x, v.y, v.z, v.w};
    if (al && n + 3 < p.n) {
        uint32_t w[2];
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const float a = epi_value(es, vv[2 * e], m, n + 2 * e), b = epi_value(es, vv[2 * e + 1], m, n + 2 * e + 1);
            if (es.out == kOutF16) {
                const __half2 h = __floats2half2_rn(a, b);
                w[e] = *reinterpret_cast<const uint32_t*>(&h);
            } else {
                const __nv_bfloat162 h = __floats2bfloat162_rn(a, b);
                w[e] = *reinterpret_cast<const uint32_t*>(&h);
            }
        }
        *reinterpret_cast<uint2*>(static_cast<unsigned char*>(p.y) + (size_t(m) * p.ldy + n) * 2) = make_uint2(w[0], w[1]);
    } else {
#pragma unroll
        for (int e = 0; e < 4; ++e)
            if (n + e < p.n) epi_store(es, p.y, p.ldy, vv[e], m, n + e);
    }
}

// Cooperative split-K finish (NOTES v32, Args::coop; called by finish_slab once the CTA's slab is stored and fenced):
// every CTA counts its arrival as in finish_slab, then waits for the row block's other arrivals and finishes its own
// share of the block (share z = pieces [z per, (z + 1) per) of the block's rows x R / 4 16-byte pieces, per =
// ceil(pieces / splits)): it adds the share's pieces of every slab (its own from the shared tile; up to 4 L2 loads in
// flight per thread before the adds), zeroes them in every slab and runs the epilogue (8-byte f16 / bf16 stores). So
// the block's finish runs on its `splits` CTAs at once instead of on the last arriver alone, with no atomic between the
// last arrival and the sums.
// The row block's counter word packs arrivals (bits 0..7), a give-up mask (bit 8 + z) and CTAs done (bits 24..31);
// the last CTA done resets it to 0 (lowbit_i8_gemm's contract: zero between calls). A CTA waits at most kCoopWaitNs
// (the launcher's rule, the whole grid in one wave, makes the wait short; it is not a residency guarantee): past that
// it sets its give-up bit, and the last arriver, which never waits, finishes its own share and every share whose bit
// its arrival saw; a CTA whose give-up came after the last arrival (the word says all are in) finishes its share
// itself. So every share is finished exactly once, resident together or not (no deadlock).
constexpr int kCoopMaxSplits = 16;
constexpr unsigned long long kCoopWaitNs = 20000;
__device__ __forceinline__ unsigned long long coop_time() {
    unsigned long long t;
    asm volatile("mov.u64 %0, %globaltimer;" : "=l"(t));
    return t;
}
__device__ __forceinline__ unsigned ld_acquire(const unsigned* a) {
    unsigned v;
    asm volatile("ld.acquire.gpu.global.b32 %0, [%1];\n" : "=r"(v) : "l"(a) : "memory");
    return v;
}
template <int MT, int R, int NT>
__device__ __forceinline__ void finish_coop(const Args& p, const Epilogue& es, int n0, const int32_t* tile) {
    __shared__ unsigned todo;  // bit s: share s is this CTA's to finish
    constexpr int kC = R / 4;  // 16-byte pieces per tile row
    constexpr unsigned kArrived = 0xFFu, kDone = 1u << 24;
    const int rows = min(MT, p.m), splits = int(gridDim.z), zme = int(blockIdx.z);
    const size_t slab = size_t(rows) * R, zstride = size_t(gridDim.y) * slab;
    int32_t* const base = p.ws + size_t(blockIdx.y) * slab;  // + split * zstride + m * R + column
    unsigned* const ctr = reinterpret_cast<unsigned*>(p.counters + blockIdx.y);
    auto piece = [&](int m, int c) { return reinterpret_cast<const int4*>(tile + m * R + ((4 * c) ^ ((m & 3) << 3))); };
    if (threadIdx.x == 0) {
        const unsigned old = atomicAdd(ctr, 1u);
        unsigned mine = 1u << zme;
        if ((old & kArrived) == unsigned(splits - 1)) {
            mine |= (old >> 8) & 0xFFFFu;  // the last arrival: the shares given up before it too
        } else {
            bool all;
            const unsigned long long t0 = coop_time();
            do {
                all = (ld_acquire(ctr) & kArrived) == unsigned(splits);
            } while (!all && coop_time() - t0 < kCoopWaitNs);
            // Give up unless all are in by the give-up's own update (then the last arrival did not see the bit).
            if (!all && (atomicAdd(ctr, 1u << (8 + zme)) & kArrived) != unsigned(splits)) mine = 0;
        }
        todo = mine;
    }
    __syncthreads();
    const unsigned mine = todo;
    if (mine) __threadfence();
    const int total = rows * kC, per = (total + splits - 1) / splits;
    const bool al = (es.out == kOutF16 || es.out == kOutBf16) && (p.ldy & 3) == 0 && (reinterpret_cast<uintptr_t>(p.y) & 7) == 0;
    for (unsigned bits = mine; bits != 0; bits &= bits - 1) {
        const int s = __ffs(bits) - 1;
        const int hi = min(total, (s + 1) * per);
        for (int i = s * per + int(threadIdx.x); i < hi; i += NT) {
            const int m = i / kC, c = i % kC;
            int4 v = *piece(m, c);
            int32_t* const at = base + size_t(m) * R + 4 * c;
#pragma unroll 1
            for (int z0 = 0; z0 < splits; z0 += 4) {
                int4 o[4];
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    const int z = z0 + j;
                    o[j] = z < splits && z != zme ? __ldcg(reinterpret_cast<const int4*>(at + z * zstride)) : make_int4(0, 0, 0, 0);
                }
#pragma unroll
                for (int j = 0; j < 4; ++j) v.x += o[j].x, v.y += o[j].y, v.z += o[j].z, v.w += o[j].w;
            }
#pragma unroll 1
            for (int z = 0; z < splits; ++z) __stcg(reinterpret_cast<int4*>(at + z * zstride), make_int4(0, 0, 0, 0));
            store_piece(p, es, v, m, n0 + 4 * c, al);
        }
    }
    // Done (thread 0's last access to the word): the last CTA of the row block to get here resets it.
    if (threadIdx.x == 0 && (atomicAdd(ctr, kDone) >> 24) == unsigned(splits - 1)) atomicExch(ctr, 0u);
}

// Split-K finish through per-split slabs (NOTES v22), the library's: the CTA's [MT][R] int32 partials, staged in
// shared memory (`tile`: row m at m * R, columns XOR-swizzled by 8 (m & 3) so that a warp's accumulator stores spread
// over the banks), go to its own slab of the workspace, [split][row block][M][R], as coalesced 16-byte stores; the
// last CTA of the row block to arrive adds the other splits' slabs to its tile, zeroes every slab (the workspace is
// zero between calls, as lowbit_i8_gemm promises), and applies the epilogue with consecutive threads on consecutive
// columns. Plain stores and loads at L2 bandwidth instead of v21's 16 x R / 2 red.global per CTA, which ran at
// ~3.4 GB/s per SM (v15); int32 sums in any order are exact.
template <int MT, int R, int NT>
__device__ __forceinline__ void finish_slab(const Args& p, const Epilogue& es, int n0, const int32_t* tile) {
    __shared__ int last;
    constexpr int kC = R / 4;  // 16-byte pieces per tile row
    const int rows = min(MT, p.m);
    const size_t slab = size_t(rows) * R, zstride = size_t(gridDim.y) * slab;
    int32_t* const base = p.ws + size_t(blockIdx.y) * slab;  // + split * zstride + m * R + column
    auto piece = [&](int m, int c) { return reinterpret_cast<const int4*>(tile + m * R + ((4 * c) ^ ((m & 3) << 3))); };
    for (int i = threadIdx.x; i < rows * kC; i += NT) {
        const int m = i / kC, c = i % kC;
        __stcg(reinterpret_cast<int4*>(base + blockIdx.z * zstride + size_t(m) * R + 4 * c), *piece(m, c));
    }
    __threadfence();
    __syncthreads();
    if (p.coop) {  // NOTES v32
        finish_coop<MT, R, NT>(p, es, n0, tile);
        return;
    }
    if (threadIdx.x == 0) last = atomicAdd(p.counters + blockIdx.y, 1) == int(gridDim.z) - 1;
    __syncthreads();
    if (!last) return;
    __threadfence();
    for (int i = threadIdx.x; i < rows * kC; i += NT) {
        const int m = i / kC, c = i % kC;
        int4 v = *piece(m, c);
        int32_t* const at = base + size_t(m) * R + 4 * c;
        for (int z = 0; z < int(gridDim.z); ++z) {
            if (z == int(blockIdx.z)) continue;
            const int4 o = __ldcg(reinterpret_cast<const int4*>(at + z * zstride));
            v.x += o.x, v.y += o.y, v.z += o.z, v.w += o.w;
        }
        for (int z = 0; z < int(gridDim.z); ++z) __stcg(reinterpret_cast<int4*>(at + z * zstride), make_int4(0, 0, 0, 0));
        const int n = n0 + 4 * c;
        const int32_t vv[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int e = 0; e < 4; ++e)
            if (n + e < p.n) epi_store(es, p.y, p.ldy, vv[e], m, n + e);
    }
    if (threadIdx.x == 0) p.counters[blockIdx.y] = 0;
}

// Unsplit MT = 16 epilogue through the same shared-memory tile (NOTES v28): consecutive threads on consecutive 4-column
// pieces of a row, f16 / bf16 written as one 8-byte store per piece where it is whole and aligned, instead of 16 scattered
// 2-byte stores per lane of the accumulator layout (rows g, g + 8 x columns 2t, 2t + 1 of four row groups).
template <int MT, int R, int NT>
__device__ __forceinline__ void store_tile(const Args& p, const Epilogue& es, int n0, const int32_t* tile) {
    constexpr int kC = R / 4;
    const int rows = min(MT, p.m);
    const bool half = es.out == kOutF16 || es.out == kOutBf16;
    const bool al = (p.ldy & 3) == 0 && (reinterpret_cast<uintptr_t>(p.y) & 7) == 0;
    for (int i = threadIdx.x; i < rows * kC; i += NT) {
        const int m = i / kC, c = i % kC;
        const int4 v = *reinterpret_cast<const int4*>(tile + m * R + ((4 * c) ^ ((m & 3) << 3)));
        store_piece(p, es, v, m, n0 + 4 * c, half && al);
    }
}

template <int F, bool GS, int MT, int SP>
__global__ void __launch_bounds__(32 * warps_of(SP), ctas_per_sm(SP)) stream_kernel(const Args p) {
    constexpr int kWarps = warps_of(SP), kThreads = 32 * kWarps;
    constexpr bool W4 = F == kW4 || F == kBip4;  // pack_w4 words, 128-column units
    constexpr bool W2 = F == kBip2;              // 2-bit words, 256-column units (two steps)
    static_assert(!GS || F == kW4, "group scales: W4 only");
    // T (v10): at MT = 8 without group scales the weights are the MMA's A side (16 weight rows = two row groups
    // per m16n8k32) and the activations its B side (n8 = the 8 activation rows), which halves the MMAs of the
    // MT = 16 orientation, half of whose A rows were padding at M <= 8. Packed formats then take the activation
    // sums once per CTA (dp4a over the shared-memory slice) instead of one all-ones MMA per k32 step.
    // Grouped W4 too since v25 (NOTES v25): its group scales apply per unit to the T partials (4 weight rows x 2
    // activation rows per lane); since v27 on signed codes 16 q, without the unit's activation sums.
    constexpr bool T = MT == 8;
    constexpr int NJ = T ? 2 : 4;  // accumulator tiles per warp: 2 pairs of row groups (T) or 4 row groups
    static_assert(MT == 8 || MT == 16, "MT is 8 or 16 activation rows");
    static_assert(SP == 8 || SP == 4 || SP == 1, "SP is 8 (256-row CTAs), 4 (128) or 1 (32) strips per CTA");
    constexpr int kKW = kWarps / SP;  // warps splitting each strip's K range (in-block split-K)
    constexpr int R = 32 * SP;        // weight rows per CTA
    constexpr int UC = W2 ? 256 : W4 ? 128 : 64;      // columns per unit
    constexpr int WSTEP = W2 ? 4096 : W4 ? 8192 : 16384;  // weight bytes per 128-row tile and 128-column step
    extern __shared__ __align__(16) unsigned char smem[];

    constexpr int kB = units_per_buffer<F, GS, MT, SP>();
    const int tid = threadIdx.x, warp = tid >> 5, lane = tid & 31;
    const int g = lane >> 2, t = lane & 3;
    const int strip = warp % SP, kw = warp / SP;
    const int n0 = blockIdx.y * R;  // first weight row of the CTA
    // Tiled block row of this warp's strip and the strip within it (a 256-row CTA spans two block rows).
    const int tile = SP == 8 ? (n0 + 32 * strip) / kBW : n0 / kBW;
    const int tstrip = SP == 8 ? ((n0 + 32 * strip) % kBW) / 32 : (n0 % kBW) / 32 + strip;
    const int s_begin = blockIdx.z * p.steps_per_split;
    const int s_end = min(p.ksteps, s_begin + p.steps_per_split);
    // W2: ksteps and steps_per_split are even (the launcher), so a split holds whole 256-column units.
    // A 256-row CTA's strips past the last tiled block row (N not a multiple of 256) have no weights: no units.
    const int nunits = SP == 8 && n0 + 32 * strip >= p.n ? 0
                       : W2                              ? (s_end - s_begin) / 2
                       : W4                              ? s_end - s_begin
                                                         : 2 * (s_end - s_begin);
    const int xstride = p.steps_per_split * kBK + x_pad(F);
    unsigned char* red = smem + MT * xstride;
    // W4 groups: this CTA's group scales [R rows][gstride] in shared memory (groups g0 .. of its K range).
    unsigned char* gsm = red + red_bytes(SP);
    const int gstride = p.steps_per_split;
    const int g0 = GS ? (s_begin * kBK) / p.group_len : 0;
    // The epilogue's vectors for this CTA (row scale / correction [MT], column scale / correction / bias [R]) in
    // shared memory, copied with the activations: read from global at the end, their latency behind the other CTAs'
    // weight stream was 2.6-3.7 us per CTA on the critical path (NOTES v13 timeline).
    float* evec = reinterpret_cast<float*>(gsm + (GS ? R * gstride : 0));

    // This lane's bytes of unit u: + 128 j for row group j of the strip.
    const uint8_t* wlane = p.w + (size_t(tile) * p.ksteps + s_begin) * WSTEP + t * 2048 + tstrip * 512 + g * 16;
#ifdef LOWBIT_STREAM_PROBE
    // Probe flag 8: each CTA starts its unit walk at a different unit (DRAM channel camping test).
    const int rot = (g_probe & 8) && nunits > 0 ? int((blockIdx.y * 37u + blockIdx.z * 11u) % unsigned(nunits)) : 0;
#else
    constexpr int rot = 0;
#endif
    auto rotu = [&](int u) { return rot == 0 ? u : (u + rot >= nunits ? u + rot - nunits : u + rot); };
    auto unit_ptr = [&](int u) -> const uint8_t* {
        if constexpr (W4 || W2) {
            return wlane + size_t(u) * 8192;  // one 8 KB block per unit
        } else {
            return wlane + size_t(u >> 1) * WSTEP + (u & 1) * 8192;
        }
    };
    // f(i, j, address) for the 16-byte piece j of this lane in each of the kB units of the buffer starting at u0.
    auto each_piece = [&](int u0, auto&& f) {
#pragma unroll
        for (int i = 0; i < kB; ++i) {
            const int u = u0 + i * kKW;
            if (u < nunits) {
                const uint8_t* src = unit_ptr(rotu(u));
#pragma unroll
                for (int j = 0; j < 4; ++j) f(i, j, src + j * 128);
            }
        }
    };
    uint4 wa[kB][4], wb[kB][4];
    auto load = [&](uint4 (&wv)[kB][4], int u0) {
        each_piece(u0, [&](int i, int j, const uint8_t* a) { wv[i][j] = ld_stream_u4(a); });
    };

#ifdef LOWBIT_STREAM_PROBE
    const int probe = g_probe;
    // Timeline stamps are stored as they are taken (no registers held across the loop).
    unsigned long long* const tlo =
        g_timeline && tid == 0 ? g_timeline + 6 * (size_t(blockIdx.z) * gridDim.y + blockIdx.y) : nullptr;
    if (tlo) tlo[0] = gtime();
#else
    constexpr int probe = 0;
#endif
    // The chunked activation copy (below) where a CTA's warps walk K in order (SP = 4 / 8: two warps per strip), at
    // MT = 16, and nothing reads the whole slice first. Elsewhere v21's order (weights, then the whole slice, one
    // wait), compiled without the chunk barriers: with SP = 1 the 8 warps of a strip interleave K, so the first two
    // buffers already need every chunk, and T's dp4a activation sums need the whole slice before the loop; chunk 0
    // ahead of the weights then only put the rest behind them (H100, NOTES v22: 4096x4096 M = 16 W4 13.9 -> 15.2 us,
    // 8192x28672 M = 1 W4 44.4 -> 45.2). At MT = 8 (M <= 8) the chunks' gain was within the noise, and their code
    // made the W4-g128 128-row instance spill. Hopper only: measured there, and on sm_80 / sm_89 the chunk code made
    // the per-channel W4 and BIP2 128-row instances at MT = 16 spill 4 bytes.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 900
    constexpr bool kChunkArch = false;
#else
    constexpr bool kChunkArch = true;
#endif
    constexpr bool kChunked = kChunkArch && MT > 8 && SP != 1 && !(T && needs_xsum(F) && !GS);
    // Multicast copy (NOTES v30): a 2-CTA cluster (launch_one, Hopper, K a multiple of 128) shares the activation
    // slice: rank r copies rows r, r + 2, ... of every chunk with one 1-D bulk copy per row into the same offsets of
    // both CTAs' shared memory (multicast), completing on both CTAs' chunk barriers (complete_tx); each CTA's thread 0
    // adds the chunk's bytes to its own barrier (one extra arrival with expect_tx). Halves the slice's L2 reads.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    bool mc = false;
    uint32_t mrank = 0;
    if constexpr (kChunked && mc_instance(F, MT, SP)) {
        uint32_t ncl;
        asm volatile("mov.u32 %0, %%cluster_nctarank;\n" : "=r"(ncl));
        mc = ncl == 2;
        mrank = tma::cluster_rank();
    }
#else
    constexpr bool mc = false;  // (the cluster rank is only read by the sm_90 multicast copy)
#endif
    // Activation chunk barriers (NOTES v22): one arrival per thread each (+ thread 0's expect_tx arrival when
    // multicast), initialised before any copy is issued.
    __shared__ uint64_t xbar[kChunked ? kXChunks : 1];
    if constexpr (kChunked) {
        if (tid == 0) {
#pragma unroll
            for (int c = 0; c < kXChunks; ++c) cp_async_bar_init(&xbar[c], kThreads + (mc ? 1 : 0));
        }
        __syncthreads();
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if (mc) tma::cluster_sync();  // the partner's barriers are initialised before any multicast reaches them
#endif
    }
    // First weights on their way before the grid-dependency wait: with programmatic dependent launch (the
    // launcher's attribute) this CTA may start while the previous kernel in the stream is still running, and that
    // kernel may have written anything this one reads (a user's kernel may even write the weights), so before
    // griddepcontrol.wait the first two buffers' lines are only prefetched into L2 (coherent: the previous
    // kernel's stores update them) and every register load, activation, scale and output access comes after it.
    constexpr int kStep = kB * kKW;
    auto prefetch = [&](int u0) { each_piece(u0, [](int, int, const uint8_t* a) { prefetch_l2(a); }); };
    prefetch(kw);
    prefetch(kw + kStep);
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    // Let the next kernel's CTAs launch into free SM slots now (they wait in their own griddepcontrol.wait).
    asm volatile("griddepcontrol.launch_dependents;\n");
    asm volatile("griddepcontrol.wait;\n");  // the __syncthreads below orders the later memory operations
#endif
    // Activations [0, min(M, MT)) x this CTA's K range -> shared memory (row stride xstride), zero beyond K, in
    // nch chunks of xcs steps; chunk c's copies, then one arrival on xbar[c] per thread. Rows M .. MT are left
    // unwritten: they only reach outputs of rows >= M (A rows / B columns of the MMAs, their activation sums), which
    // emit() drops; v10 zero-filled them (7 of 8 rows at M = 1).
    // v13-v21 copied the whole slice after the weight loads and waited for all of it before the loop: 16 rows x
    // 7-8 K columns per 256-row CTA at M = 16 queued behind 64 KB of weight loads per SM, a 7.1 us p50 wait (v13
    // timeline) during which the weight stream stalled. Now chunk 0 (with the group scales and epilogue vectors)
    // goes first and the later chunks land behind the first weight buffers while the loop runs.
    const int kb0 = s_begin * kBK;
    const int xsteps = s_end - s_begin;
    const int xcs = kChunked ? max(1, (xsteps + kXChunks - 1) / kXChunks) : max(1, xsteps);  // steps per chunk
    const int nch = kChunked ? max(1, (xsteps + xcs - 1) / xcs) : 1;
    auto copy_x = [&](int c) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
        if (mc) {
            const int st0 = c * xcs, bytes = (min(xsteps, st0 + xcs) - st0) * kBK, rows = min(MT, p.m);
            if (tid == 0) tma::mbar_expect_tx(&xbar[c], (probe & 2) ? 0u : uint32_t(rows * bytes));
            const int m = 2 * tid + int(mrank);
            if (!(probe & 2) && tid < 16 && m < rows) {
                asm volatile(
                    "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1], %2, "
                    "[%3], %4;\n" ::"r"(tma::smem_u32(smem + m * xstride + st0 * kBK)),
                    "l"(p.x + size_t(m) * p.ldx + kb0 + st0 * kBK), "r"(bytes), "r"(tma::smem_u32(&xbar[c])),
                    "h"(uint16_t(3))
                    : "memory");
            }
            cp_async_bar_arrive(&xbar[c]);  // chunk 0: the scales and vectors issued before it
            return;
        }
#endif
        if (!(probe & 2)) {
            const int st0 = c * xcs, pieces = (min(xsteps, st0 + xcs) - st0) * (kBK / 16);
            for (int i = tid; i < min(MT, p.m) * pieces; i += kThreads) {
                const int m = i / pieces, q = st0 * (kBK / 16) + i % pieces;
                const int col = kb0 + 16 * q;
                const bool ok = col < p.k;
                cp_async16_zfill(smem + m * xstride + 16 * q,
                                 ok ? static_cast<const void*>(p.x + size_t(m) * p.ldx + col) : p.x, ok);
            }
        }
        if constexpr (kChunked) cp_async_bar_arrive(&xbar[c]);
    };
    auto copy_gs = [&] {
        if constexpr (GS) {
            // Groups of a multiple of 128 columns: one scale per row and unit, read from shared memory in the loop
            // (a global byte load per use put L2 latency into every unit: v5). Rows beyond N get 1.
            const int g1 = min(p.groups - 1, (s_end * kBK - 1) / p.group_len);
            const int ng = g1 - g0 + 1;
            if ((p.groups & 3) == 0 && (g0 & 3) == 0 && (gstride & 3) == 0 && (reinterpret_cast<uintptr_t>(p.gs) & 3) == 0) {
                // 4-byte words (groups g0 .. g0 + ng4 - 1 stay inside the row; ng4 <= gstride), asynchronously with the
                // activations: byte loads one after another cost 2.4 us more at the start than W8 (NOTES v13).
                const int nw = (ng + 3) >> 2;
                for (int i = tid; i < R * nw; i += kThreads) {
                    const int r = i / nw, c = i % nw;
                    const int n = n0 + r;
                    if (n < p.n) {
                        cp_async4(gsm + r * gstride + 4 * c, p.gs + size_t(n) * p.groups + g0 + 4 * c);
                    } else {
                        *reinterpret_cast<uint32_t*>(gsm + r * gstride + 4 * c) = 0x01010101u;
                    }
                }
            } else {
#pragma unroll 8
                for (int i = tid; i < R * ng; i += kThreads) {
                    const int r = i / ng, c = i % ng;
                    const int n = n0 + r;
                    gsm[r * gstride + c] = n < p.n ? __ldg(p.gs + size_t(n) * p.groups + g0 + c) : 1;
                }
            }
        }
    };
    auto copy_evec = [&] {
        // Epilogue vectors (after griddepcontrol.wait: a previous kernel may have written them). Layout in evec:
        // rs [MT], rc [MT], cs [R], cc [R], bias [R], then rc2 [MT], cc2 [R] (evec_bytes); only rows < M and columns < N
        // are copied (only those are read).
        const Epilogue& e = p.epi;
        const float* src[7] = {e.rs, e.rc, e.cs, e.cc, e.bias, e.rc2, e.cc2};
        const int len[7] = {min(MT, p.m),     min(MT, p.m),     min(R, p.n - n0), min(R, p.n - n0),
                            min(R, p.n - n0), min(MT, p.m),     min(R, p.n - n0)};
        const int off[7] = {0, MT, 2 * MT, 2 * MT + R, 2 * MT + 2 * R, 2 * MT + 3 * R, 3 * MT + 3 * R};
#pragma unroll
        for (int v = 0; v < 7; ++v) {
            if (src[v] == nullptr) continue;
            const float* sv = v < 2 || v == 5 ? src[v] : src[v] + n0;
            for (int i = tid; i < len[v]; i += kThreads) cp_async4(evec + off[v] + i, sv + i);
        }
    };
    const bool xup = !kChunked || (probe & 16);  // probe flag 16: v21's order everywhere (A/B)
    if (!xup) {
        copy_gs();
        copy_evec();
        copy_x(0);  // its arrival also covers the scales and vectors issued before it
    }
    // Both register buffers go out before the later chunks; they hit the prefetched lines.
    load(wa, kw);
    load(wb, kw + kStep);
#ifdef LOWBIT_STREAM_PROBE
    if (tlo) tlo[1] = gtime();
#endif
    if (xup) {
        for (int c = 0; c < nch; ++c) copy_x(c);
        copy_gs();
        copy_evec();
        cp_async_commit();
        cp_async_wait<0>();
    } else {
        for (int c = 1; c < nch; ++c) copy_x(c);
    }
    __syncthreads();  // the group scales' plain stores (rows past N, unaligned scales)
    if constexpr (kChunked) cp_async_bar_wait(&xbar[0], 0);
#ifdef LOWBIT_STREAM_PROBE
    if (tlo) tlo[2] = gtime();
#endif
    // Chunks 0..xready are in shared memory. Everything up front where the whole slice is read first (T's dp4a
    // activation sums) or the unit walk is out of order (probe rotation); v21's order (probe 16) has it all already.
    int xready = 0;
    if constexpr (kChunked) {
        if (rot != 0 || xup) {
            while (xready < nch - 1) cp_async_bar_wait(&xbar[++xready], 0);
        }
    }
    __shared__ int32_t xsum_s[8];
    if (T && needs_xsum(F) && !GS && warp < min(8, p.m)) {
        // Activation sums of rows 0..M-1 (<= 8) over this CTA's K range (zero-filled beyond K): warp w sums row w.
        const unsigned char* xrow = smem + warp * xstride;
        const int pieces = (s_end - s_begin) * (kBK / 16);
        int32_t sum = 0;
        for (int c = lane; c < pieces; c += 32) {
            const uint4 v = lds128(xrow + 16 * c);
            sum = __dp4a(int(v.x), int(kOnesI), sum);
            sum = __dp4a(int(v.y), int(kOnesI), sum);
            sum = __dp4a(int(v.z), int(kOnesI), sum);
            sum = __dp4a(int(v.w), int(kOnesI), sum);
        }
#pragma unroll
        for (int o = 16; o > 0; o >>= 1) sum += __shfl_xor_sync(0xFFFFFFFFu, sum, o);
        if (lane == 0) xsum_s[warp] = sum;  // read after the reduction's barrier
    }

    int32_t acc[4][4];
#pragma unroll
    for (int j = 0; j < 4; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0;
    int32_t xacc[4] = {0, 0, 0, 0};  // packed per-channel: running activation sums (rows g, g + 8 in [0], [2])
    constexpr uint32_t kOnes = 0x01010101u;
    (void)kOnes;
    // W4 group of unit u relative to g0 (groups are whole 128-column steps): a shift where the steps per group are a
    // power of two (g128: none), else one division per unit (v25: the division per unit was ~20 instructions).
    const int gsteps = GS ? p.group_len / kBK : 1;
    const int gshift = (gsteps & (gsteps - 1)) == 0 ? __ffs(gsteps) - 1 : -1;
    auto group_of = [&](int ur) {
        const int st = s_begin + ur;
        return (gshift >= 0 ? st >> gshift : st / gsteps) - g0;
    };
    (void)group_of;

    auto compute = [&](const uint4 (&wv)[kB][4], int u0) {
#pragma unroll
        for (int i = 0; i < kB; ++i) {
            const int u = u0 + i * kKW;
            if (u >= nunits) break;
            const int ur = rotu(u);
            if constexpr (kChunked) {
                // The activation chunk of this unit's last step (units only move forward: a warp waits at most once
                // per chunk, and not at all once the copy is ahead; the no-MMA probe waits too, so that no copy is
                // still in flight when the CTA exits). Without chunks every chunk was waited for before the loop.
                // Chunk (last step) / xcs, without an integer division per unit (v25): wait while the next chunk
                // starts at or before the unit's last step.
                // Grouped W4 only: elsewhere the form changed the register allocation (8-byte spills in the
                // per-channel W4 and BIP4 128-row instances at MT = 16).
                const int last = W2 ? 2 * ur + 1 : W4 ? ur : ur >> 1;
                if constexpr (GS) {
                    while ((xready + 1) * xcs <= last) cp_async_bar_wait(&xbar[++xready], 0);
                } else {
                    const int need = last / xcs;
                    while (xready < need) cp_async_bar_wait(&xbar[++xready], 0);
                }
            }
            if (probe & 1) {  // timing probe: consume the loads without MMAs
#pragma unroll
                for (int j = 0; j < 4; ++j) acc[0][0] ^= int32_t(wv[i][j].x ^ wv[i][j].y ^ wv[i][j].z ^ wv[i][j].w);
                continue;
            }
            const unsigned char* xr = smem + g * xstride + ur * UC;
            if constexpr (T) {
                // A = weights: rows g / g + 8 of the pair (2jp, 2jp + 1) of row groups; B = activation row g.
                if constexpr (F == kW8) {
                    const uint4 a = lds128(xr + 16 * t);
#pragma unroll
                    for (int jp = 0; jp < 2; ++jp) {
                        const uint4 w0 = wv[i][2 * jp], w1 = wv[i][2 * jp + 1];
                        const uint32_t f0[4] = {w0.x, w1.x, w0.y, w1.y}, f1[4] = {w0.z, w1.z, w0.w, w1.w};
                        mma_s8_m16n8k32(acc[jp], f0, a.x, a.y);
                        mma_s8_m16n8k32(acc[jp], f1, a.z, a.w);
                    }
                } else if constexpr (W2) {
                    constexpr uint32_t m3 = 0x03030303u;
#pragma unroll
                    for (int c = 0; c < 4; ++c) {
                        const uint4 a = lds128(xr + 64 * c + 16 * t);
#pragma unroll
                        for (int jp = 0; jp < 2; ++jp) {
                            const uint32_t w0 = word(wv[i][2 * jp], c), w1 = word(wv[i][2 * jp + 1], c);
                            const uint32_t f0[4] = {w0 & m3, w1 & m3, (w0 >> 2) & m3, (w1 >> 2) & m3};
                            mma_s8_m16n8k32(acc[jp], f0, a.x, a.y);
                        }
#pragma unroll
                        for (int jp = 0; jp < 2; ++jp) {
                            const uint32_t w0 = word(wv[i][2 * jp], c), w1 = word(wv[i][2 * jp + 1], c);
                            const uint32_t f1[4] = {(w0 >> 4) & m3, (w1 >> 4) & m3, (w0 >> 6) & m3, (w1 >> 6) & m3};
                            mma_s8_m16n8k32(acc[jp], f1, a.z, a.w);
                        }
                    }
                } else if constexpr (GS) {
                    // Grouped W4 (v25; v27: signed codes 16 q, no activation sums): the unit's partials part[jp]
                    // (fresh int32 per unit, 16 x the true partial), then acc += s_n (part >> 4) with the group scale of
                    // each of the lane's weight rows 16 jp + 8 h + g of the strip.
                    const uint4 l = lds128(xr + 32 * t), h = lds128(xr + 32 * t + 16);
                    int32_t part[2][4];
#pragma unroll
                    for (int s = 0; s < 4; ++s) {
#pragma unroll
                        for (int jp = 0; jp < 2; ++jp) {
                            uint32_t lo0, hi0, lo1, hi1;
                            w4_codes16(word(wv[i][2 * jp], s), lo0, hi0);
                            w4_codes16(word(wv[i][2 * jp + 1], s), lo1, hi1);
                            const uint32_t f[4] = {lo0, lo1, hi0, hi1};
                            if (s == 0) {
                                mma_s8_zero(part[jp], f, word(l, s), word(h, s));
                            } else {
                                mma_s8_m16n8k32(part[jp], f, word(l, s), word(h, s));
                            }
                        }
                    }
                    const unsigned char* sg = gsm + (strip * 32 + g) * gstride + group_of(ur);
#pragma unroll
                    for (int jp = 0; jp < 2; ++jp) {
                        const int32_t sc0 = sg[(16 * jp) * gstride], sc1 = sg[(16 * jp + 8) * gstride];
                        acc[jp][0] += sc0 * (part[jp][0] >> 4);
                        acc[jp][1] += sc0 * (part[jp][1] >> 4);
                        acc[jp][2] += sc1 * (part[jp][2] >> 4);
                        acc[jp][3] += sc1 * (part[jp][3] >> 4);
                    }
                } else {
                    const uint4 l = lds128(xr + 32 * t), h = lds128(xr + 32 * t + 16);
#pragma unroll
                    for (int s = 0; s < 4; ++s) {
#pragma unroll
                        for (int jp = 0; jp < 2; ++jp) {
                            uint32_t lo0, hi0, lo1, hi1;
                            w4_codes(word(wv[i][2 * jp], s), lo0, hi0);
                            w4_codes(word(wv[i][2 * jp + 1], s), lo1, hi1);
                            const uint32_t f[4] = {lo0, lo1, hi0, hi1};
                            mma_s8_m16n8k32(acc[jp], f, word(l, s), word(h, s));
                        }
                    }
                }
            } else if constexpr (W2) {
                // 2-bit unit: lane t's word c holds the codes of columns 64c + 16t .. + 15 (as W8's 16 bytes of
                // window c): register e_i = (w >> 2i) & 0x03030303 is b0 (i = 0) / b1 (1) of k32 step 0 and b0 (2)
                // / b1 (3) of step 1 of that window, so the expansion is 3 SHF + 4 LOP per 16 codes, no PRMT.
#pragma unroll
                for (int c = 0; c < 4; ++c) {
                    const uint4 a = lds128(xr + 64 * c + 16 * t);
                    const uint4 a8 = MT > 8 ? lds128(xr + 8 * xstride + 64 * c + 16 * t) : make_uint4(0, 0, 0, 0);
                    const uint32_t a0[4] = {a.x, a8.x, a.y, a8.y}, a1[4] = {a.z, a8.z, a.w, a8.w};
                    if constexpr (needs_xsum(F)) {
                        mma_s8_m16n8k32(xacc, a0, kOnes, kOnes);
                        mma_s8_m16n8k32(xacc, a1, kOnes, kOnes);
                    }
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        const uint32_t w = word(wv[i][j], c), m3 = 0x03030303u;
                        mma_s8_m16n8k32(acc[j], a0, w & m3, (w >> 2) & m3);
                        mma_s8_m16n8k32(acc[j], a1, (w >> 4) & m3, (w >> 6) & m3);
                    }
                }
            } else if constexpr (!W4) {
                const uint4 a = lds128(xr + 16 * t);
                const uint4 c = MT > 8 ? lds128(xr + 8 * xstride + 16 * t) : make_uint4(0, 0, 0, 0);
                const uint32_t a0[4] = {a.x, c.x, a.y, c.y}, a1[4] = {a.z, c.z, a.w, c.w};
#pragma unroll
                for (int j = 0; j < 4; ++j) {
                    mma_s8_m16n8k32(acc[j], a0, wv[i][j].x, wv[i][j].y);
                    mma_s8_m16n8k32(acc[j], a1, wv[i][j].z, wv[i][j].w);
                }
            } else {
                const uint4 l = lds128(xr + 32 * t), h = lds128(xr + 32 * t + 16);
                const uint4 l8 = MT > 8 ? lds128(xr + 8 * xstride + 32 * t) : make_uint4(0, 0, 0, 0);
                const uint4 h8 = MT > 8 ? lds128(xr + 8 * xstride + 32 * t + 16) : make_uint4(0, 0, 0, 0);
                uint32_t af[4][4];
#pragma unroll
                for (int s = 0; s < 4; ++s) {
                    af[s][0] = word(l, s), af[s][1] = word(l8, s), af[s][2] = word(h, s), af[s][3] = word(h8, s);
                }
                if constexpr (GS) {
                    // Signed codes 16 q (v27): the partial is 16 x the unit's true partial, no activation sums.
                    const int gi = group_of(ur);
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        int32_t part[4];
                        uint32_t lo, hi;
                        w4_codes16(word(wv[i][j], 0), lo, hi);
                        mma_s8_zero(part, af[0], lo, hi);
#pragma unroll
                        for (int s = 1; s < 4; ++s) {
                            w4_codes16(word(wv[i][j], s), lo, hi);
                            mma_s8_m16n8k32(part, af[s], lo, hi);
                        }
                        // part[e]: activation row g (e < 2) / g + 8, weight row 8j + 2t + (e & 1) of the strip.
                        const unsigned char* sg = gsm + (strip * 32 + 8 * j + 2 * t) * gstride + gi;
                        const int32_t sc0 = sg[0], sc1 = sg[gstride];
                        acc[j][0] += sc0 * (part[0] >> 4);
                        acc[j][1] += sc1 * (part[1] >> 4);
                        acc[j][2] += sc0 * (part[2] >> 4);
                        acc[j][3] += sc1 * (part[3] >> 4);
                    }
                } else {
#pragma unroll
                    for (int s = 0; s < 4; ++s) {
                        if constexpr (needs_xsum(F)) mma_s8_m16n8k32(xacc, af[s], kOnes, kOnes);
#pragma unroll
                        for (int j = 0; j < 4; ++j) {
                            uint32_t lo, hi;
                            w4_codes(word(wv[i][j], s), lo, hi);
                            mma_s8_m16n8k32(acc[j], af[s], lo, hi);
                        }
                    }
                }
            }
        }
    };
    // Two register buffers: the next buffer's loads go out before the current buffer's MMAs. (Prefetching the lines
    // of later buffers into L2 as well, 2 or 4 buffers ahead, measured 0-6 us slower: NOTES v25.)
    for (int u0 = kw; u0 < nunits; u0 += 2 * kStep) {
        compute(wa, u0);
        load(wa, u0 + 2 * kStep);
        compute(wb, u0 + kStep);
        load(wb, u0 + 3 * kStep);
    }
    if constexpr (needs_xsum(F) && !GS && !T) {
        // acc = sum x u - off * sum x: exact int32 (wrapping intermediates, the final value fits).
        constexpr int kOff = code_off(F);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            acc[j][0] -= kOff * xacc[0], acc[j][1] -= kOff * xacc[0];
            acc[j][2] -= kOff * xacc[2], acc[j][3] -= kOff * xacc[2];
        }
    }

    // In-block split-K: warps kw >= 1 of each strip hand their accumulators to warp kw = 0.
    int32_t* r = reinterpret_cast<int32_t*>(red) + strip * 16 * 32 + lane;  // + (kw - 1) * SP * 512
    if (kw > 0) {
#pragma unroll
        for (int j = 0; j < NJ; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) r[(kw - 1) * SP * 512 + (4 * j + e) * 32] = acc[j][e];
    }
    __syncthreads();
    // The epilogue reads its vectors from shared memory (generic pointers offset so that [m] / [n] index them).
    Epilogue es = p.epi;
    if (es.rs) es.rs = evec;
    if (es.rc) es.rc = evec + MT;
    if (es.cs) es.cs = evec + 2 * MT - n0;
    if (es.cc) es.cc = evec + 2 * MT + R - n0;
    if (es.bias) es.bias = evec + 2 * MT + 2 * R - n0;
    if (es.rc2) es.rc2 = evec + 2 * MT + 3 * R, es.cc2 = evec + 3 * MT + 3 * R - n0;
    // Split-K (NOTES v22): the CTA's sums go through the shared-memory tile (the in-block reduction's buffer, free
    // once warp kw = 0 has read it) into its own workspace slab (finish_slab); v21's red.global per element (emit
    // into p.ws, then finish) at MT = 8 and under probe flag 32. At MT = 8 (M <= 8) a CTA has at most 8 x R / 2 reds
    // and the tile's staging cost registers (the W4-g128 128-row instance spilled 8 bytes with it); the slab layout
    // holds v21's [M][N] sum, so the workspace serves both.
    static_assert(red_bytes(SP) >= MT * R * 4, "the split-K tile reuses the in-block reduction buffer");
    // Unsplit at MT = 16 the tile serves the epilogue too (store_tile, NOTES v28).
    const bool slab = MT > 8 && !(probe & 32) && !(p.ws == nullptr && (probe & 64));
    int32_t* const stile = reinterpret_cast<int32_t*>(red);
    // One final sum of the CTA (activation row m, weight row n0 + nl) leaves: to the tile (swizzled as finish_slab
    // reads it) or through emit().
    auto out = [&](int32_t v, int m, int nl) {
        if (slab) {
            stile[m * R + (nl ^ ((m & 3) << 3))] = v;
        } else {
            emit(p, es, v, m, n0 + nl);
        }
    };
#ifdef LOWBIT_STREAM_PROBE
    if (tlo) tlo[3] = gtime();
    if (probe & 4) {  // timing probe: no epilogue / split-K finish (acc kept live by a store that never happens)
        if (acc[0][0] == 0x7fffffff && acc[1][1] == 0x7ffffffe && p.m < 0) p.ws[0] = acc[0][0];
    } else
#endif
    {
        if (kw == 0) {
#pragma unroll
            for (int q = 1; q < kKW; ++q)
#pragma unroll
                for (int j = 0; j < NJ; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[j][e] += r[(q - 1) * SP * 512 + (4 * j + e) * 32];
            if constexpr (T && needs_xsum(F) && !GS) {
                // acc[jp][e]: weight row 16 jp + 8 (e >> 1) + g of the strip, activation row 2t + (e & 1).
                constexpr int kOff = code_off(F);
                const int32_t s0 = xsum_s[2 * t], s1 = xsum_s[2 * t + 1];
#pragma unroll
                for (int jp = 0; jp < 2; ++jp) {
                    acc[jp][0] -= kOff * s0, acc[jp][1] -= kOff * s1;
                    acc[jp][2] -= kOff * s0, acc[jp][3] -= kOff * s1;
                }
            }
        }
        if (slab) __syncthreads();  // every warp kw = 0 has read `red` before it becomes the tile `stile`
        if (kw == 0) {
            if constexpr (T) {
#pragma unroll
                for (int jp = 0; jp < 2; ++jp)
#pragma unroll
                    for (int e = 0; e < 4; ++e) out(acc[jp][e], 2 * t + (e & 1), strip * 32 + 16 * jp + 8 * (e >> 1) + g);
            } else {
#pragma unroll
                for (int j = 0; j < 4; ++j)
#pragma unroll
                    for (int e = 0; e < 4; ++e) out(acc[j][e], g + 8 * (e >> 1), strip * 32 + 8 * j + 2 * t + (e & 1));
            }
        }
        if (slab) {
            __syncthreads();  // the tile is complete
            if (p.ws) {
                finish_slab<MT, R, kThreads>(p, es, n0, stile);
            } else {
                store_tile<MT, R, kThreads>(p, es, n0, stile);
            }
        } else if (p.ws) {
            finish<MT, R, kThreads>(p, es, n0);
        }
    }
#ifdef LOWBIT_STREAM_PROBE
    if (tlo) {
        unsigned int smid;
        asm volatile("mov.u32 %0, %smid;" : "=r"(smid));
        tlo[4] = gtime(), tlo[5] = smid;
    }
#endif
}

// Programmatic dependent launch (NOTES v13) where lowbit::pdl_runs() allows it (lowbit/pdl.cuh): the kernel's
// prologue (launch, first weight prefetches) overlaps the previous kernel's tail.
#ifdef LOWBIT_STREAM_PROBE
inline int g_pdl_host = 1;  // harness toggle (lowbit_i8_stream_probe): 0 off, 1 the library rule, 2 always
inline int g_flags_host = 0;  // the probe flags, host side: 512 flips kMulticast
#endif

// Clusters of two of this launch configuration that can be resident at once (0: none, or no cluster launch on this
// device), cached in `cache` (the caller's per-instance static: Kern is the same function-pointer type for every
// instance, so a static here would be shared by all of them) for the last shared-memory size asked.
template <typename Kern>
int mc_max_clusters(std::atomic<unsigned long long>& cache, Kern kern, const cudaLaunchConfig_t& cfg) {
    // cache: smem << 32 | (clusters + 1); 0 = not asked yet
    const unsigned long long c = cache.load(std::memory_order_relaxed);
    if (c != 0 && (c >> 32) == cfg.dynamicSmemBytes) return int(c & 0xFFFFFFFFu) - 1;
    int n = 0;
    if (cudaOccupancyMaxActiveClusters(&n, kern, &cfg) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 0;
    }
    cache.store((static_cast<unsigned long long>(cfg.dynamicSmemBytes) << 32) | unsigned(n + 1), std::memory_order_relaxed);
    return n;
}

// NOTES v32: the cooperative split-K finish (finish_coop) on split MT = 16 grids that fit one wave. LOWBIT_I8_STREAM_COOP=0 /
// 1 in the environment (read per call) turns it off / on; unset: kCoopDefault.
constexpr bool kCoopDefault = true;
inline bool coop_enabled() {
    const char* e = getenv("LOWBIT_I8_STREAM_COOP");
    return e && *e ? *e != '0' : kCoopDefault;
}
// Whether `blocks` CTAs of instance `kern` at this shared-memory size are resident at once on the current device
// (resident CTAs per SM x SMs, cached in the instance's `cache`: smem << 32 | (resident CTAs + 1)).
template <typename Kern>
bool one_wave(std::atomic<unsigned long long>& cache, Kern kern, int threads, size_t smem, int64_t blocks) {
    unsigned long long c = cache.load(std::memory_order_relaxed);
    if (c == 0 || (c >> 32) != smem) {
        int per_sm = 0, dev = 0, sms = 0;
        if (cudaOccupancyMaxActiveBlocksPerMultiprocessor(&per_sm, kern, threads, smem) != cudaSuccess ||
            cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&sms, cudaDevAttrMultiProcessorCount, dev) != cudaSuccess) {
            (void)cudaGetLastError();
            per_sm = 0, sms = 0;
        }
        c = (static_cast<unsigned long long>(smem) << 32) | unsigned(per_sm * sms + 1);
        cache.store(c, std::memory_order_relaxed);
    }
    return blocks <= int64_t(c & 0xFFFFFFFFu) - 1;
}

template <int F, bool GS, int MT, int SP>
cudaError_t launch_one(const Args& a0, int splits, cudaStream_t st) {
    auto kern = stream_kernel<F, GS, MT, SP>;
    if (splits < 0) {
        cudaFuncAttributes attr{};
        return cudaFuncGetAttributes(&attr, kern);
    }
    Args a = a0;
    const size_t smem = size_t(MT) * (a.steps_per_split * kBK + x_pad(F)) + red_bytes(SP) +
                        (GS ? size_t(32 * SP) * a.steps_per_split : 0) + evec_bytes(MT, SP, a.epi.rc2 != nullptr);
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
    if (e != cudaSuccess) return e;
    // PDL at MT = 8 and for unsplit grids (H100, NOTES v13 run 2: -2.5..-4.7 us per call at M = 1 on every shape and
    // format measured, -3.1..-3.9 us for the unsplit 256-row grid of 28672x8192 at M = 16; +0.2..+1.9 us for split-K
    // grids at M = 16, whose next call's early CTAs slow the split-K tail).
    const bool want = MT == 8 || splits == 1;
#ifdef LOWBIT_STREAM_PROBE
    const bool pdl = (g_pdl_host == 2 || (g_pdl_host == 1 && want)) && pdl_runs();
#else
    const bool pdl = want && pdl_runs();
#endif
    const dim3 grid(1, (a.n + 32 * SP - 1) / (32 * SP), splits);
    a.coop = 0;
    // Not on the 32-row CTAs (SP = 1): there v32's first protocol (share claims: three more atomics in the chain) measured
    // ~1 us slower (H100, NOTES v32: 1024x8192, 4096x8192 at M = 16).
#ifdef LOWBIT_STREAM_PROBE
    const bool sp_ok = SP >= 4 || (g_flags_host & 16384) != 0;  // harness: SP = 1 too
#else
    constexpr bool sp_ok = SP >= 4;
#endif
    if (MT > 8 && sp_ok && splits > 1 && splits <= kCoopMaxSplits && a.ws != nullptr) {
#ifdef LOWBIT_STREAM_PROBE
        const bool want_coop = coop_enabled() != ((g_flags_host & 4096) != 0);
#else
        const bool want_coop = coop_enabled();
#endif
#ifdef LOWBIT_STREAM_PROBE
        const bool force = (g_flags_host & 8192) != 0;  // harness: the waits' time-out path on grids beyond one wave
#else
        constexpr bool force = false;
#endif
        static std::atomic<unsigned long long> wave_cache{0};  // one per instance (launch_one's template arguments)
        a.coop = want_coop && (force || one_wave(wave_cache, kern, 32 * warps_of(SP), smem, int64_t(grid.y) * grid.z)) ? 1 : 0;
    }
    if constexpr (mc_instance(F, MT, SP)) {
        // NOTES v30: 2-CTA clusters along y (row blocks 2i, 2i + 1 share the activation slice) where every cluster fits
        // one wave, K is whole 128-column steps (the bulk copies do not zero-fill) and the grid pairs up.
#ifdef LOWBIT_STREAM_PROBE
        const bool want_mc = kMulticast != ((g_flags_host & 512) != 0);
#else
        constexpr bool want_mc = kMulticast;
#endif
        if (want_mc && a.k % kBK == 0 && grid.y % 2 == 0) {
            cudaLaunchAttribute attr[2];
            attr[0].id = cudaLaunchAttributeClusterDimension;
            attr[0].val.clusterDim.x = 1;
            attr[0].val.clusterDim.y = 2;
            attr[0].val.clusterDim.z = 1;
            attr[1].id = cudaLaunchAttributeProgrammaticStreamSerialization;
            attr[1].val.programmaticStreamSerializationAllowed = 1;
            cudaLaunchConfig_t cfg{};
            cfg.gridDim = grid;
            cfg.blockDim = dim3(32 * warps_of(SP));
            cfg.dynamicSmemBytes = smem;
            cfg.stream = st;
            cfg.attrs = attr;
            cfg.numAttrs = 1;
            static std::atomic<unsigned long long> mc_cache{0};  // one per instance (launch_one's template arguments)
            const int per_wave = mc_max_clusters(mc_cache, kern, cfg);
            if (int64_t(grid.y / 2) * grid.z <= per_wave) {
                cfg.numAttrs = pdl ? 2 : 1;
                const cudaError_t le = cudaLaunchKernelEx(&cfg, kern, a);
                return le != cudaSuccess ? le : cudaGetLastError();
            }
        }
    }
    return LaunchEx(grid, dim3(32 * warps_of(SP)), smem, st).pdl(pdl).launch(kern, a);
}

}  // namespace stream
}  // namespace i8
}  // namespace lowbit

// The streaming path's dispatch (i8_launch.cu plans it): mt = 8 or 16 activation rows; splits < 0 only asks
// whether the instance exists (cudaSuccess).
namespace {
template <int SP>
cudaError_t launch_sp(const lowbit::i8::Args& a, int format, int mt, int splits, cudaStream_t st) {
    using namespace lowbit::i8::stream;
    const bool gs = format == kW4 && a.gs != nullptr;
#define LOWBIT_STREAM_MT(MT)                                                                                 \
    switch (format) {                                                                                        \
        case kW8: return launch_one<kW8, false, MT, SP>(a, splits, st);                                      \
        case kW4: return gs ? launch_one<kW4, true, MT, SP>(a, splits, st) : launch_one<kW4, false, MT, SP>(a, splits, st); \
        case kBip4: return launch_one<kBip4, false, MT, SP>(a, splits, st);                                  \
        case kBip2: return launch_one<kBip2, false, MT, SP>(a, splits, st);                                  \
        default: return cudaErrorInvalidValue;                                                               \
    }
    if (mt == 8) LOWBIT_STREAM_MT(8)
    if (mt == 16) LOWBIT_STREAM_MT(16)
#undef LOWBIT_STREAM_MT
    return cudaErrorInvalidValue;
}
}  // namespace

// format = enum lowbit_i8_wformat (W8, W4, BIP4, BIP2); sp = strips of 32 weight rows per CTA (8, 4 or 1). BIP2
// needs a.ksteps and a.steps_per_split even (256-column units).
cudaError_t lowbit_i8_launch_stream(const lowbit::i8::Args& a, int format, int mt, int sp, int splits, cudaStream_t st) {
    if (sp == 8) return launch_sp<8>(a, format, mt, splits, st);
    if (sp == 4) return launch_sp<4>(a, format, mt, splits, st);
    if (sp == 1) return launch_sp<1>(a, format, mt, splits, st);
    return cudaErrorInvalidValue;
}

// Largest steps_per_split of an instance (the activation tile's shared-memory budget; even for BIP2).
int lowbit_i8_stream_max_steps(int format, int mt, int sp) { return lowbit::i8::stream::max_steps(mt, format, sp); }

#ifdef LOWBIT_STREAM_PROBE
// Harness-only: probe flags, per-CTA timeline buffer (6 u64 per CTA, nullptr = off), PDL on / off.
extern "C" void lowbit_i8_stream_probe(int flags, unsigned long long* timeline, int pdl) {
    cudaMemcpyToSymbol(lowbit::i8::stream::g_probe, &flags, sizeof(int));
    cudaMemcpyToSymbol(lowbit::i8::stream::g_timeline, &timeline, sizeof(timeline));
    lowbit::i8::stream::g_pdl_host = pdl;
    lowbit::i8::stream::g_flags_host = flags;
}
#endif
