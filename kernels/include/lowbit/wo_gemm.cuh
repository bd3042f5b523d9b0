// Weight-only GEMM, warp-level tensor cores (mma.sync m16n8k16): Y[M, N] = X[M, K] * dequant(W)[N, K]^T.
//
// Algorithm
//   W (quantized, tiled fragment layout from lowbit-core repack.rs) is the A operand: every warp owns one
//   16-row strip of W and streams its codes straight from HBM into registers with 16-byte loads,
//   P k-steps ahead (no shared-memory round trip: each weight byte is used by exactly one warp). X is the
//   B operand: the block stages X[m-tile, K-chunk] in shared memory with cp.async (double-buffered) and
//   every warp reads its fragments with ldmatrix. Codes are decoded in registers to exact unscaled
//   values (wo_decode.cuh); the MMAs of one quantization group accumulate into f32 `accg`, which is
//   scaled by the group's scale pair into `acc` when the group ends (per-channel: at the end).
//
// Partitioning
//   block = 8 warps = 8 strips (128 rows of W) x one split of the K range x one m-tile of MT*8 rows of X.
//   grid = (ceil(strips / 8), splits, ceil(M / (8*MT))). With splits > 1 each block atomically adds its
//   f32 partial into the workspace (zero on entry) and a second kernel converts it to the output type and
//   zeroes it again (no memset per call).
//   Small problems (few strips, K short enough for one X chunk) instead split K *inside* the block: with
//   kw > 1 warps per strip the block covers 8/kw strips, warp w works on strip w/kw and the (w%kw)-th
//   share of the k-steps, and the kw partial sums meet in shared memory at the end. One launch, no
//   workspace, kw times more blocks: a 576x576 layer runs 36 blocks instead of 5, and every warp has its
//   one or two k-steps of weights in flight at once instead of a chain of nine. At M = 1 (INT formats) the same
//   in-block split-K runs with compact X (only the real row of X in shared memory, ldmatrix lanes of absent rows
//   reading a zero line), so it also covers long K: the plan (wo_launch.cu compact_kw) uses it where its blocks
//   fill one wave, replacing split-K's atomics and convert kernel (NOTES.md v12).
//   The X chunk of a launch is sized (x_chunk) so that the blocks the registers allow per SM also fit shared
//   memory, as one buffer holding the block's whole K range when it fits.
//   At M = 9..16 (MT = 2) the INT4 one-warp-per-strip grid runs 16-warp blocks (256 rows of W, 2 per SM): one X
//   chunk staged per 256 weight rows instead of 128 (NOTES.md v14).
//
// Programmatic dependent launch (NOTES.md v13): on sm_90 the launcher sets the programmatic-stream-serialization
//   attribute, so a call's blocks start while the previous kernel drains; before griddepcontrol.wait a block only
//   prefetches its first weights into L2 (pdl_pf k-steps), every load into the SM and every store comes after it.
//
// Limits
//   Any M >= 1, N >= 1; K >= 1 (padded to the k-step by the repack; X columns >= K read as zeros).
//   X rows are staged with 16-byte cp.async when K % 8 == 0 and X is 16-byte aligned, element by
//   element otherwise. One m-tile holds at most 64 rows of X; larger M runs several m-tiles, each
//   streaming W again (the large-M path of the Rust layer picks dequantize + cuBLAS beyond that).
#pragma once

#include <climits>
#include <cmath>
#include <cstdlib>
#include <type_traits>

#include "lowbit/launch.cuh"
#include "lowbit/mma.cuh"
#include "lowbit/pdl.cuh"
#include "lowbit/wo_decode.cuh"

namespace lowbit {
namespace wo {

constexpr int kWarps = 8;
constexpr int kThreads = kWarps * 32;

// Everything a launch needs; filled by the launcher from lowbit_wo_weight and the call's arguments.
struct Args {
    const uint32_t* words;     // [strips][ksteps][32][4] codes
    const uint32_t* hi_words;  // [strips][ksteps][32][2] 3-bit high bits, or null
    const uint32_t* meta;      // [strips][groups][8][2]: f16 scale pair, aux
    const float* chan;         // [n_pad] post-reduction row scales, or null (= 1)
    const float* lut;          // [n_tables][2^bits] value tables, or null
    int n_tables;
    int pdl_pf;  // k-steps of each warp's weights prefetched into L2 before griddepcontrol.wait (v13; in n_tables' padding)
    const void* x;  // [m][ldx] activations (T)
    void* y;        // [m][n] output (T), when splits == 1
    float* ws;      // [m][n] f32 partial sums, when splits > 1: zero on entry, left zero by convert_kernel
    int m, n, k, ldx;
    int strips, ksteps, gtiles, groups;
    int steps_per_split, kc;  // K-range per split (k-steps) and X chunk (columns)
    int x_vec;                // 1: 16-byte cp.async staging of X is allowed
    int auto_splits;          // 1: the launch may re-pick the split count (>= 2) to fill whole waves
    int kw;                   // warps per strip (1, 2, 4, 8): in-block split-K; > 1 needs one X chunk
    int sms;                  // multiprocessors of the device (for that choice)
};

// Coherent loads for a block's first weight and metadata reads after griddepcontrol.wait (v14). ptxas moved
// ld.global.nc loads above the wait (an .nc load promises data that is read-only for the kernel's lifetime, which a
// programmatic dependent launch's overlap with the previous kernel does not give): SASS showed the first weight loads
// ahead of ACQBULK in the Mix3 f16 MT = 1 instance (v13 code) and the INT4 bf16 256-row instance, and the harness PDL
// check then failed (H100, NOTES.md v14). Plain ld.global stays behind the wait.
__device__ __forceinline__ uint4 ld_first_u4(const void* p) {
    uint4 v;
    asm volatile("ld.global.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p)
                 : "memory");
    return v;
}
__device__ __forceinline__ uint2 ld_first_u2(const void* p) {
    uint2 v;
    asm volatile("ld.global.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p) : "memory");
    return v;
}

// 8-byte cp.async (zero fill when !pred), for the MS metadata copy.
__device__ __forceinline__ void cp_async8_zfill(void* smem, const void* gmem, bool pred) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    asm volatile("cp.async.ca.shared.global [%0], [%1], 8, %2;\n" ::"r"(addr), "l"(gmem), "r"(pred ? 8 : 0));
}

__device__ __forceinline__ uint2 ld_shared_u2(uint32_t addr) {
    uint2 v;
    asm volatile("ld.shared.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "r"(addr));
    return v;
}

template <typename T>
__device__ __forceinline__ T to_out(float v);
template <>
__device__ __forceinline__ __half to_out<__half>(float v) { return __float2half_rn(v); }
template <>
__device__ __forceinline__ __nv_bfloat16 to_out<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

// Stage X[m0 : m0 + ROWS, c0 : c0 + kc] into shared memory (row stride kc + 8 halves: the 16-byte pad
// keeps ldmatrix's eight row addresses in distinct bank groups). Out-of-range elements become zeros.
// NT threads; piece i = (row r, 8-column piece c) is walked with r, c advanced by NT pieces per iteration
// (v14: one division per call instead of one per piece: the per-piece division was ~40% of the staging loop, and
// staging was ~15% of the M = 16 instruction stream, NOTES.md v14).
template <typename T, int ROWS, int NT = kThreads>
__device__ __forceinline__ void stage_x(const Args& p, T* dst, int m0, int c0) {
    const T* x = static_cast<const T*>(p.x);
    const int lds = p.kc + 8, pieces = p.kc / 8;
    const int dr = NT / pieces, dc = NT - dr * pieces;  // advance per iteration: dr rows and dc pieces
    int r = int(threadIdx.x) / pieces, c = int(threadIdx.x) - r * pieces;
    if (p.x_vec) {
        // (The common case, in its own loop: 16-byte cp.async, K % 8 == 0 so a piece is wholly in or out.)
        const int rows = min(ROWS, p.m - m0);  // rows >= M are zero-filled
        for (; r < ROWS; r += dr) {
            const int gk = c0 + c * 8;
            const bool ok = r < rows && gk < p.k;
            cp_async16_zfill(dst + r * lds + c * 8, ok ? static_cast<const void*>(x + size_t(m0 + r) * p.ldx + gk) : p.x, ok);
            c += dc;
            if (c >= pieces) c -= pieces, ++r;
        }
    } else {
        for (; r < ROWS; r += dr) {
            const int gm = m0 + r, gk = c0 + c * 8;
            T* d = dst + r * lds + c * 8;
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                d[e] = (gm < p.m && gk + e < p.k) ? x[size_t(gm) * p.ldx + gk + e] : to_out<T>(0.f);
            }
            c += dc;
            if (c >= pieces) c -= pieces, ++r;
        }
    }
    cp_async_commit();
}

// The same, one division per piece: for the chunk switches inside the main loop, where the incremental walk's four
// live registers made ptxas spill at the 64-register caps (INT4 bf16 and Mix4 f16 at MT = 2, Mix3 f16 at MT = 1).
template <typename T, int ROWS, int NT = kThreads>
__device__ __forceinline__ void stage_x_div(const Args& p, T* dst, int m0, int c0) {
    const T* x = static_cast<const T*>(p.x);
    const int lds = p.kc + 8, pieces = p.kc / 8;
    for (int i = threadIdx.x; i < ROWS * pieces; i += NT) {
        const int r = i / pieces, c = (i - r * pieces) * 8;
        const int gm = m0 + r, gk = c0 + c;
        T* d = dst + r * lds + c;
        if (p.x_vec) {
            const bool ok = gm < p.m && gk < p.k;
            cp_async16_zfill(d, ok ? static_cast<const void*>(x + size_t(gm) * p.ldx + gk) : p.x, ok);
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) {
                d[e] = (gm < p.m && gk + e < p.k) ? x[size_t(gm) * p.ldx + gk + e] : to_out<T>(0.f);
            }
        }
    }
    cp_async_commit();
}

// Stage X[0 : rows, c0 : c0 + kc] (rows <= M, runtime) for the compact-X variant; same row stride and zero fill.
template <typename T>
__device__ __forceinline__ void stage_x_rows(const Args& p, T* dst, int rows, int c0) {
    const T* x = static_cast<const T*>(p.x);
    const int lds = p.kc + 8, pieces = p.kc / 8;
    const int dr = kThreads / pieces, dc = kThreads - dr * pieces;
    int r = int(threadIdx.x) / pieces, c = int(threadIdx.x) - r * pieces;
    for (; r < rows; r += dr) {
        const int gk = c0 + c * 8;
        T* d = dst + r * lds + c * 8;
        if (p.x_vec) {
            const bool ok = gk < p.k;
            cp_async16_zfill(d, ok ? static_cast<const void*>(x + size_t(r) * p.ldx + gk) : p.x, ok);
        } else {
#pragma unroll
            for (int e = 0; e < 8; ++e) d[e] = gk + e < p.k ? x[size_t(r) * p.ldx + gk + e] : to_out<T>(0.f);
        }
        c += dc;
        if (c >= pieces) c -= pieces, ++r;
    }
    cp_async_commit();
}

// Decoders that take BitMoD's special value off the A operand (NOTES.md "Mix4S"): `Fmt::kSvMma` set means the kernel
// calls Fmt::decode_sv, which returns the plain decode (the SV code decodes to 0) and a 0 / 1 indicator fragment of the
// SV positions; the indicator goes through a second MMA into its own accumulators `accs`, which the group flush adds to
// `accg` times the group's SV (Fmt::sv_scales of the group's metadata word: rows g and g + 8) before the group scale.
// No library decoder sets it (measured slower than Mix4's in-register patch on the large shapes); the harness's Mix4S does.
template <class F, class = void>
struct sv_mma : std::false_type {};
template <class F>
struct sv_mma<F, std::void_t<decltype(F::kSvMma)>> : std::bool_constant<F::kSvMma> {};

// KW: the in-block split-K variant (p.kw > 1 warps per strip). A separate instance, so that the common
// one-warp-per-strip kernel keeps its register budget (its 64-register cap at 8-row m-tiles leaves no room).
// CX (v12, with KW and MT = 1 only, M <= 8): compact X, only the M real rows of the block's K range are staged
// (M x K x 2 bytes: 16 KB for M = 1 at K = 8192 instead of 8 rows' 131 KB); ldmatrix lanes of rows >= M read a
// zero line that does not advance. That lets the in-block split-K cover long K at several blocks per SM: one
// launch and one wave where split-K needs a workspace, atomics, a convert kernel and 2-3 waves of short blocks.
// NW (v14): warps (= 16-row strips) per block of the one-warp-per-strip kernel: 8 (128 rows), or 16 (256 rows: the
// block's X chunk is staged once for twice the weight rows, halving X's shared-memory staging and L2 reads per weight
// byte; two blocks per SM keep the 32 warps of four 8-warp blocks).
// LA (v15, load-ahead): each k-step copies its slot's words into registers and issues the slot's next load at once,
// then decodes from the copy (the slot's reload no longer waits for that k-step's decode and MMAs; 4 registers, 6 with
// high bits, live through one k-step). Per format and m-tile: load_ahead() below (off: NOTES.md v15).
// MS (v16): shared memory of a block's metadata copy: spb strips x the groups a range of `steps` k-steps can touch, and
// two groups of padding (a flush reads one group ahead); rounded to 16 bytes (the X chunk follows it).
__host__ __device__ inline int64_t ms_bytes(int spb, int steps, int ts, int gtiles) {
    return (int64_t(spb) * ((int64_t(steps) * ts + gtiles - 1) / gtiles + 1) * 64 + 128 + 15) / 16 * 16;
}
// ZF (v17): shared memory of a block's activation sums: one f32 per (k-step of its range, X row of the m-tile),
// behind the MS copy and in front of the X chunk.
__host__ __device__ inline int64_t zf_bytes(int steps, int rows) { return (int64_t(steps) * rows * 4 + 15) / 16 * 16; }

// MS (v16, the int8 stream kernel's v6 pattern): the block's group metadata (its strips x the groups its K range
// touches, 64 bytes each) is copied into shared memory by cp.async with the X chunk, and a flush reads the next
// group's pair there (one LDS.64 a group, issued a group ahead) instead of a global load that queues behind the weight
// stream (ncu, NOTES.md v14: the ring's copy of that load was 23-30% of the stall samples at M = 1 / 16).
// ZF (v17, INT4 only): the zero point folded out of the decode. decode_zf leaves the magic in (one LOP3 a register, no
// f16x2 subtraction: 4 of the 9 decode instructions of a tile), so a group's MMAs accumulate sum((magic + q) x) (f16
// rows g + 8: (1024 + 16q) x); the flush subtracts (magic + z) times the sum of the activations over the columns the
// warp took of that group, from `zr`: per (k-step, X row) f32 running sums within each group (restarted at the block's
// first k-step), computed from X in the prologue; a warp's first group starts at R[s_begin - 1] when its share begins
// inside a group (in-block split-K), `zsub`. Groups must be whole k-steps (the launcher: gtiles % kTiles == 0).
template <class Fmt, typename T, int MT, int P, int MINB, bool KW = false, bool CX = false, int NW = kWarps, bool LA = false,
          bool MS = false, bool ZF = false>
__global__ void __launch_bounds__(NW * 32, MINB) gemm_kernel(const Args p) {
    static_assert(!CX || (KW && MT == 1 && !Fmt::kIsLut), "compact X: in-block split-K, 8-row m-tile, INT formats");
    static_assert(!KW || NW == kWarps, "in-block split-K: 8-warp blocks");
    static_assert(!ZF || (std::is_same_v<Fmt, Int4> && !LA && (MS || KW)), "zero-point fold: INT4, a barrier before the loop");
    constexpr int TS = Fmt::kTiles, KSTEP = TS * 16, ROWS = MT * 8;
    // v18 (MS outside INT4, one warp per strip): the launcher runs this instance only where one X chunk holds the block's
    // K range (launch_grid), so the loop has no chunk switch: its inlined X staging made Mix3 f16 at its 4-block cap
    // spill (the k-step bound, then a slot's high-bit words) with the copy's base offset live. INT4 keeps v16's code.
    constexpr bool kOneChunk = MS && !KW && !std::is_same_v<Fmt, Int4>;
    extern __shared__ __align__(128) unsigned char smem[];
    // (MS: the metadata copy first, ZF's activation sums, the X chunk(s) and tables behind them.)
    const int64_t ms_b = MS ? ms_bytes(KW ? kWarps / p.kw : NW, p.steps_per_split, TS, p.gtiles) : 0;
    float* const zr = reinterpret_cast<float*>(smem + ms_b);
    T* xs = reinterpret_cast<T*>(smem + ms_b + (ZF ? zf_bytes(p.steps_per_split, ROWS) : 0));
    const int lds = p.kc + 8;
    uint32_t* tab = reinterpret_cast<uint32_t*>(xs + 2 * ROWS * lds);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    // Grid (m-tiles, strip groups, splits): the m-tiles of one strip group and split are neighbours in
    // launch order, so they run together and all but the first read the weights from L2.
    const int strip = KW ? blockIdx.y * (kWarps / p.kw) + warp / p.kw : blockIdx.y * NW + warp;
    const bool active = strip < p.strips;
    const int m0 = blockIdx.x * ROWS;
    const int b_begin = blockIdx.z * p.steps_per_split;  // this block's k-steps, staged from b_begin
    const int b_end = min(p.ksteps, b_begin + p.steps_per_split);
    if (b_begin >= b_end) return;  // block-uniform, before any barrier
    // This warp's share: all of them (kw = 1), or slice `slice` of kw near-equal shares (may be empty).
    const int b_len = b_end - b_begin, slice = KW ? warp % p.kw : 0;
    const int s_begin = KW ? b_begin + b_len * slice / p.kw : b_begin;
    const int s_end = KW ? b_begin + b_len * (slice + 1) / p.kw : b_end;
    const int spc = p.kc / KSTEP;  // k-steps per X chunk

    // Weight stream of this lane: 16 bytes (and 8 of high bits) per k-step, P steps in flight, through a
    // running pointer (this path is issue-bound: no per-load index arithmetic). Loads past this split's
    // last step are predicated off (their registers are never read); a warp beyond N reads strip 0.
    const size_t lane_off = size_t(active ? strip : 0) * p.ksteps * 32 + lane;
    const uint32_t* wnext = p.words + (lane_off + size_t(s_begin) * 32) * 4;
    const uint32_t* hnext = Fmt::kHasHi ? p.hi_words + (lane_off + size_t(s_begin) * 32) * 2 : nullptr;
    int s_next = s_begin;  // k-step the next load_w fetches
    uint32_t wb[P][4], hb[P][2];
    // Programmatic dependent launch (NOTES.md v13; the launcher sets the attribute on sm_90): this block may run
    // while the previous kernel of the stream is still running, and that kernel may have written X, W, the tables
    // or read Y. Before griddepcontrol.wait nothing is read into the SM and nothing is written: the first pdl_pf
    // k-steps of this warp's weights are only prefetched into L2, which is coherent with the previous
    // kernel's stores (lowbit/mma.cuh prefetch_l2). Without the attribute the wait returns at once.
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    {
        // One prefetch per 128-byte line: a warp's k-steps are contiguous 512-byte pieces (4 lines each).
        const int lines = 4 * min(p.pdl_pf, s_end - s_begin);
        const char* w0 = reinterpret_cast<const char*>(wnext - lane * 4);  // the warp's first k-step
        for (int l = lane; l < lines; l += 32) prefetch_l2(w0 + l * 128);
        // The strip's metadata from its first group on (the ring of four loaded after the wait: 64 bytes a group).
        if (lines > 0 && lane < 2) {
            prefetch_l2(reinterpret_cast<const char*>(p.meta) +
                        (size_t(active ? strip : 0) * p.groups + s_begin * TS / p.gtiles) * 64 + lane * 128);
        }
    }
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    if constexpr (Fmt::kIsLut) {
        // Pair tables in the output type: entry i of table t = (lut[t][c0(i)], lut[t][c1(i)]).
        for (int i = threadIdx.x; i < p.n_tables * Fmt::kEntries; i += NW * 32) {
            const int t = i / Fmt::kEntries, e = i - t * Fmt::kEntries;
            int c0, c1;
            Fmt::split(e, c0, c1);
            tab[i] = Pair<T>::pack(p.lut[t * (1 << Fmt::kBits) + c0], p.lut[t * (1 << Fmt::kBits) + c1]);
        }
    }
    // (first: the prologue's loads, coherent: see ld_first_u4.)
    auto load_w = [&](int i, auto first) {
        if (s_next < s_end) {
            const uint4 v = decltype(first)::value ? ld_first_u4(wnext) : ld_stream_u4(wnext);
            wb[i][0] = v.x, wb[i][1] = v.y, wb[i][2] = v.z, wb[i][3] = v.w;
            if constexpr (Fmt::kHasHi) {
                const uint2 h = decltype(first)::value ? ld_first_u2(hnext) : ld_stream_u2(hnext);
                hb[i][0] = h.x, hb[i][1] = h.y;
            }
        }
        ++s_next;
        wnext += 128;
        if constexpr (Fmt::kHasHi) hnext += 64;
    };
#pragma unroll
    for (int i = 0; i < P; ++i) load_w(i, std::true_type{});

    // Group metadata: the current group's pair is in use, the next one is already loading.
    const uint2* meta = reinterpret_cast<const uint2*>(p.meta) + size_t(active ? strip : 0) * p.groups * 8 + g;
    auto load_meta = [&](int gi) -> uint2 { return gi < p.groups ? ld_first_u2(meta + size_t(gi) * 8) : make_uint2(0, 0); };
    const int tile0 = s_begin * TS;
    int gi = tile0 / p.gtiles, tig = tile0 - gi * p.gtiles;
    // Groups of whole k-steps (every group size >= the k-step: g128 at 4 bits, per-channel, ...) are
    // flushed once per step, with no per-tile bookkeeping; smaller groups (g32/g64 at 2-4 bits) per tile.
    const bool step_groups = p.gtiles >= TS;
    const int spg = step_groups ? p.gtiles / TS : 1;  // k-steps per group
    int sig = tig / TS;                               // k-steps of the current group done
    // Metadata comes from HBM too (it is read once): keep three groups in flight behind the current one,
    // or every group switch waits a full memory latency (the first profile's dominant stall).
    const uint2 z2 = make_uint2(0, 0);  // (MS: the pairs are read after the first cp.async wait, below)
    uint2 cur = MS ? z2 : load_meta(gi), nx1 = MS ? z2 : load_meta(gi + 1), nx2 = MS ? z2 : load_meta(gi + 2),
          nx3 = MS ? z2 : load_meta(gi + 3);
    // MS: the block's groups [g_first, g_first + ngb) of its strips in shared memory, [strip][group][8] uint2 (+ two
    // groups of padding: the flushes read up to two groups past the last), copied here; read after the first cp.async wait.
    uint32_t msn = 0;  // MS: shared-memory address of this lane's next metadata pair
    if constexpr (MS) {
        const int spb = KW ? kWarps / p.kw : NW, strip0 = KW ? blockIdx.y * spb : blockIdx.y * NW;
        const int g_first = b_begin * TS / p.gtiles, ngb = (b_end * TS - 1) / p.gtiles - g_first + 1;
        unsigned char* ms = smem;
        const unsigned char* src = reinterpret_cast<const unsigned char*>(p.meta) + size_t(g_first) * 64;
        // (8-byte pieces: the metadata is only 8-byte aligned; once per block.)
        for (int i = threadIdx.x; i < spb * ngb * 8; i += NW * 32) {
            const int sl = i / (ngb * 8), r = i - sl * (ngb * 8);
            const int st = strip0 + sl;
            const bool ok = st < p.strips;
            cp_async8_zfill(ms + size_t(i) * 8, ok ? src + (size_t(st) * p.groups * 8 + r) * 8 : static_cast<const void*>(p.meta), ok);
        }
        const int sl = KW ? warp / p.kw : warp;
        msn = static_cast<uint32_t>(__cvta_generic_to_shared(ms)) + ((sl * ngb + (gi - g_first)) * 8 + g) * 8;
    }
    // The ring's next load (v14): group gi + 4 through a running pointer and a count of the groups left (no per-group
    // index arithmetic; dereferenced only while groups are left). The load lands in a temporary that the flush copies
    // into nx3 right away, and that copy waits for the load (ncu source counters, NOTES.md v14: the largest single stall
    // at M = 1 and 16); deferring the refill to the next k-step measured slower on the large shapes, so it stays.
    const uint2* mnext = meta + size_t(gi + 4) * 8;
    int mleft = p.groups - (gi + 4);
    GroupCtx ctx;
    auto set_ctx = [&](uint32_t aux) {
        Fmt::template ctx<T>(aux, ctx);
        if constexpr (Fmt::kIsLut) {
            ctx.tab_g = tab + (aux & 0xFF) * Fmt::kEntries;
            ctx.tab_g8 = tab + ((aux >> 8) & 0xFF) * Fmt::kEntries;
        }
    };
    if (!MS && !ZF) set_ctx(cur.y);
    // ZF: shared-memory address of this lane's pair of sums (X rows 2t, 2t + 1 of m-subtile 0) at the last k-step of its
    // current group (zfa; clipped to its last k-step, zend), and k-steps left in the group (zleft).
    uint32_t zfa = 0, zend = 0;
    int zleft = 0;

    constexpr bool kSv = sv_mma<Fmt>::value;
    float acc[MT][4], accg[MT][4], accs[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][e] = 0.f, accg[mt][e] = 0.f, accs[mt][e] = 0.f;
    // kSv: the group's SV contribution (exact products, f32 sums) joins the plain sums before the group scale.
    auto add_sv = [&]() {
        if constexpr (kSv) {
            float k0, k1;  // from the group's metadata word: no register held through the k-steps
            Fmt::sv_scales(cur.y, k0, k1);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                accg[mt][0] += k0 * accs[mt][0], accg[mt][1] += k0 * accs[mt][1];
                accg[mt][2] += k1 * accs[mt][2], accg[mt][3] += k1 * accs[mt][3];
#pragma unroll
                for (int e = 0; e < 4; ++e) accs[mt][e] = 0.f;
            }
        }
    };
    // ZF: a group's accumulators start at -(magic + z) * (its activation sums), read at `za` (the sums up to the warp's
    // last k-step of the group; one LDS.64 per m-subtile): the flush is then acc += scale * accg, as without ZF.
    auto zf_init = [&](uint32_t za) {
        if constexpr (ZF) {
            float z0, z1, f1;
            Fmt::template zf_consts<T>(cur.y, z0, z1, f1);
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                const uint2 sv = ld_shared_u2(za + mt * 32);
                const float sx0 = __uint_as_float(sv.x), sx1 = __uint_as_float(sv.y);
                accg[mt][0] = -z0 * sx0, accg[mt][1] = -z0 * sx1, accg[mt][2] = -z1 * sx0, accg[mt][3] = -z1 * sx1;
            }
        }
    };
    auto flush = [&]() {
        add_sv();
        if constexpr (ZF) {
            float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&cur.x));
            float z0, z1, f1;
            Fmt::template zf_consts<T>(0u, z0, z1, f1);
            sc.y *= f1;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                acc[mt][0] += sc.x * accg[mt][0], acc[mt][1] += sc.x * accg[mt][1];
                acc[mt][2] += sc.y * accg[mt][2], acc[mt][3] += sc.y * accg[mt][3];
            }
        } else {
        const float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&cur.x));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            acc[mt][0] += sc.x * accg[mt][0], acc[mt][1] += sc.x * accg[mt][1];
            acc[mt][2] += sc.y * accg[mt][2], acc[mt][3] += sc.y * accg[mt][3];
#pragma unroll
            for (int e = 0; e < 4; ++e) accg[mt][e] = 0.f;
        }
        }
        cur = nx1;
        if constexpr (MS) {
            nx1 = ld_shared_u2(msn);  // (the group after next: read here, used at the next flush)
            msn += 64;
        } else {
            nx1 = nx2;
            nx2 = nx3;
            nx3 = mleft > 0 ? __ldg(mnext) : make_uint2(0, 0);
            mnext += 8;
            --mleft;
        }
        if constexpr (ZF) {
            zfa = min(zfa + uint32_t((p.gtiles / TS) * ROWS * 4), zend);
            zf_init(zfa);
        } else {
            set_ctx(cur.y);
        }
    };

    // (In the chunk loop below s_begin = b_begin and nsteps = the block's k-steps: with kw > 1 there is one
    // chunk and the loop never stages another.)
    const int nsteps = s_end - s_begin;
    if constexpr (CX) {
        stage_x_rows<T>(p, xs, p.m, b_begin * KSTEP);
        // The zero line read by the lanes of rows >= M: two k-steps wide (ldmatrix column offsets up to KSTEP).
        uint32_t* zl = reinterpret_cast<uint32_t*>(xs + p.m * lds);
        for (int i = threadIdx.x; i < KSTEP; i += kThreads) zl[i] = 0u;
    } else {
        stage_x<T, ROWS, NW * 32>(p, xs, m0, b_begin * KSTEP);
    }
    if constexpr (MS) {
        // (The metadata copy is in the staging's commit group; KW waits for it below anyway.)
        if constexpr (!KW) {
            cp_async_wait<0>();
            __syncthreads();
        }
    }
    // ZF: the block's activation sums zr[(s - b_begin) * ROWS + r] = sum of X[m0 + r][c] over the columns c of k-steps
    // max(group start, b_begin) .. s (rows >= M: 0), from the staged X chunk (after the MS / KW wait; call 1 of v17
    // read them from global memory: one round trip behind the weight stream per pass, +3..7 us), or from global memory
    // where the first chunk does not hold the block's range (a forced long split). A team of 8 lanes (16 bytes each: one
    // k-step of one row per pass) walks one (row, group) run; one barrier.
    if constexpr (ZF) {
        if constexpr (KW) {
            // (The in-block split-K's wait, here for the sums; its barrier below is then a formality.)
            cp_async_wait<0>();
            __syncthreads();
        }
        const int rows = min(ROWS, p.m - m0), bsteps = b_end - b_begin;
        for (int i = threadIdx.x; i < bsteps * ROWS; i += NW * 32) {
            if (i % ROWS >= rows) zr[i] = 0.f;
        }
        const bool from_smem = KW || spc >= bsteps;
        const int spg_ = p.gtiles / TS, gf = b_begin / spg_, nruns = (b_end - 1) / spg_ - gf + 1;
        const int tl = threadIdx.x & 7;
        const unsigned tmask = 0xFFu << (threadIdx.x & 24);
        const T* x = static_cast<const T*>(p.x);
        for (int u = threadIdx.x >> 3; u < rows * nruns; u += NW * 4) {
            const int r = u / nruns, gr = gf + (u - r * nruns);
            const int s_lo = max(gr * spg_, b_begin), s_hi = min((gr + 1) * spg_, b_end);
            float run = 0.f;
            for (int s = s_lo; s < s_hi; ++s) {
                uint4 q = make_uint4(0, 0, 0, 0);
                float v = 0.f;
                if (from_smem) {
                    q = *reinterpret_cast<const uint4*>(xs + r * lds + (s - b_begin) * KSTEP + tl * 8);
                } else {
                    const int c = s * KSTEP + tl * 8;
                    const T* xr = x + size_t(m0 + r) * p.ldx + c;
                    if (p.x_vec) {
                        if (c < p.k) q = *reinterpret_cast<const uint4*>(xr);
                    } else {
                        for (int e = 0; e < 8; ++e) {
                            if (c + e < p.k) v += float(xr[e]);
                        }
                    }
                }
                const uint32_t qq[4] = {q.x, q.y, q.z, q.w};
#pragma unroll
                for (int e = 0; e < 4; ++e) {
                    float2 f;
                    if constexpr (std::is_same_v<T, __half>) {
                        f = __half22float2(*reinterpret_cast<const __half2*>(&qq[e]));
                    } else {
                        f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&qq[e]));
                    }
                    v += f.x + f.y;
                }
                v += __shfl_xor_sync(tmask, v, 1);
                v += __shfl_xor_sync(tmask, v, 2);
                v += __shfl_xor_sync(tmask, v, 4);
                run += v;
                if (tl == 0) zr[(s - b_begin) * ROWS + r] = run;
            }
        }
        __syncthreads();
    }
    int chunk = -1, chunk_left = 0;
    const T* xb = xs;
    // ldmatrix row address of this lane within a chunk: rows mt*8 + lane%8, columns 8*(lane/8).
    const int lds_lane = (lane & 7) * lds + (lane >> 3) * 8;
    if constexpr (KW) {
        // One chunk holds the block's whole K range (the plan guarantees it). Wait for it here, with every
        // warp: a warp whose share is empty must still reach this barrier and the ones of the epilogue.
        cp_async_wait<0>();
        __syncthreads();
        chunk = 0;
        chunk_left = INT_MAX;
        if constexpr (CX) {
            const int r = lane & 7;
            xb = r < p.m ? xs + r * lds + (lane >> 3) * 8 + (s_begin - b_begin) * KSTEP : xs + p.m * lds + (lane >> 3) * 8;
        } else {
            xb = xs + lds_lane + (s_begin - b_begin) * KSTEP;
        }
    }
    if constexpr (kOneChunk) xb = xs + lds_lane;  // (the only chunk, staged and waited for above)
    if constexpr (MS) {
        cur = ld_shared_u2(msn);
        nx1 = ld_shared_u2(msn + 64);
        msn += 128;
        if constexpr (!ZF) set_ctx(cur.y);
    }
    if constexpr (ZF) {
        // (After the barrier above: the sums are in shared memory. A share that starts inside a group (in-block
        // split-K) takes the group's sums before its first k-step off its first group.)
        const int spg_ = p.gtiles / TS;
        zleft = spg_ - sig;
        if (s_end > s_begin) {
            const uint32_t zb = static_cast<uint32_t>(__cvta_generic_to_shared(zr)) + (2 * (lane & 3) - b_begin * ROWS) * 4;
            zend = zb + (s_end - 1) * ROWS * 4;
            zfa = min(zb + (s_begin + zleft - 1) * ROWS * 4, zend);
            zf_init(zfa);
            if (KW && sig > 0 && s_begin > b_begin) {
                float z0, z1, f1;
                Fmt::template zf_consts<T>(cur.y, z0, z1, f1);
#pragma unroll
                for (int mt = 0; mt < MT; ++mt) {
                    const uint2 sv = ld_shared_u2(zb + (s_begin - 1) * ROWS * 4 + mt * 32);
                    accg[mt][0] += z0 * __uint_as_float(sv.x), accg[mt][1] += z0 * __uint_as_float(sv.y);
                    accg[mt][2] += z1 * __uint_as_float(sv.x), accg[mt][3] += z1 * __uint_as_float(sv.y);
                }
            }
        }
    }
    // Advance of this lane's X row address per k-step (CX: zero-line lanes stay put).
    const int xstep = CX ? ((lane & 7) < p.m ? KSTEP : 0) : KSTEP;
    // The main loop, compiled once per group bookkeeping (whole k-steps per group, or tiles per group) so the
    // choice costs no instructions per k-step.
    auto main_loop = [&](auto kStepGroups) {
        for (int s0 = s_begin; s0 < s_end; s0 += P) {
#pragma unroll
            for (int i = 0; i < P; ++i) {
                if (s0 + i < s_end) {
                    // (KW: one chunk, staged before the loop; no chunk bookkeeping in the loop.)
                    if (!KW && !kOneChunk && chunk_left == 0) {
                        // Chunk `chunk` + 1 landed; every warp is done with the previous one, whose buffer
                        // takes the chunk after.
                        ++chunk;
                        cp_async_wait<0>();
                        __syncthreads();
                        if ((chunk + 1) * spc < nsteps) {
                            stage_x_div<T, ROWS, NW * 32>(p, xs + ((chunk + 1) & 1) * ROWS * lds, m0, (s_begin + (chunk + 1) * spc) * KSTEP);
                        }
                        // (MS: the lane's ldmatrix offset recomputed here, not held through the loop: the 16-row
                        // instances spilled it at the 64-register cap.)
                        const int ll = MS ? (threadIdx.x & 7) * lds + ((threadIdx.x >> 3) & 3) * 8 : lds_lane;
                        xb = xs + (chunk & 1) * ROWS * lds + ll;
                        chunk_left = spc;
                    }
                    if constexpr (!KW) --chunk_left;
                    // (LA: decode from a copy; the slot's next load is issued here, before the decode.)
                    uint32_t wcp[4], hcp[2];
                    if constexpr (LA) {
#pragma unroll
                        for (int e = 0; e < 4; ++e) wcp[e] = wb[i][e];
                        if constexpr (Fmt::kHasHi) hcp[0] = hb[i][0], hcp[1] = hb[i][1];
                        load_w(i, std::false_type{});
                    }
                    uint32_t* const wd = LA ? wcp : wb[i];
                    uint32_t* const hd = LA ? hcp : hb[i];
                    uint32_t bf[MT][4];
                    auto tile = [&](int j) {
                        if ((j & 1) == 0) {
                            // B fragments of tiles j and j+1 for every m-subtile: one ldmatrix.x4 each.
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) ldmatrix_x4(bf[mt], xb + mt * 8 * lds + j * 16);
                        }
                        uint32_t a[4];
                        if constexpr (kSv) {
                            uint32_t ind[4];
                            (void)hd;  // (no high-bit stream)
                            Fmt::template decode_sv<T>(wd, j, ctx, a, ind);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                mma_m16n8k16<T>(accg[mt], a, bf[mt][(j & 1) * 2], bf[mt][(j & 1) * 2 + 1]);
                                mma_m16n8k16<T>(accs[mt], ind, bf[mt][(j & 1) * 2], bf[mt][(j & 1) * 2 + 1]);
                            }
                        } else if constexpr (ZF) {
                            (void)hd;
                            Fmt::template decode_zf<T>(wd, j, a);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                mma_m16n8k16<T>(accg[mt], a, bf[mt][(j & 1) * 2], bf[mt][(j & 1) * 2 + 1]);
                            }
                        } else {
                            Fmt::template decode<T>(wd, hd, j, ctx, a);
#pragma unroll
                            for (int mt = 0; mt < MT; ++mt) {
                                mma_m16n8k16<T>(accg[mt], a, bf[mt][(j & 1) * 2], bf[mt][(j & 1) * 2 + 1]);
                            }
                        }
                    };
                    if constexpr (decltype(kStepGroups)::value) {
#pragma unroll
                        for (int j = 0; j < TS; ++j) tile(j);
                        if constexpr (ZF) {
                            if (--zleft == 0) {
                                zleft = spg;
                                flush();
                            }
                        } else if (++sig == spg) {
                            sig = 0;
                            flush();
                        }
                    } else {
#pragma unroll
                        for (int j = 0; j < TS; ++j) {
                            tile(j);
                            if (++tig == p.gtiles) {
                                tig = 0;
                                flush();
                            }
                        }
                    }
                    xb += xstep;
                    if constexpr (!LA) load_w(i, std::false_type{});
                }
            }
        }
    };
    if constexpr (ZF) {
        // (The launcher runs ZF only on groups of whole k-steps.)
        main_loop(std::true_type{});
        if (zleft != spg && s_end > s_begin) {
            float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&cur.x));
            float z0, z1, f1;
            Fmt::template zf_consts<T>(0u, z0, z1, f1);
            sc.y *= f1;
#pragma unroll
            for (int mt = 0; mt < MT; ++mt) {
                acc[mt][0] += sc.x * accg[mt][0], acc[mt][1] += sc.x * accg[mt][1];
                acc[mt][2] += sc.y * accg[mt][2], acc[mt][3] += sc.y * accg[mt][3];
            }
        }
    } else {
    if (step_groups) {
        main_loop(std::true_type{});
    } else {
        main_loop(std::false_type{});
    }
    }
    if (!ZF && (step_groups ? sig != 0 : tig != 0)) {
        add_sv();
        const float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&cur.x));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            acc[mt][0] += sc.x * accg[mt][0], acc[mt][1] += sc.x * accg[mt][1];
            acc[mt][2] += sc.y * accg[mt][2], acc[mt][3] += sc.y * accg[mt][3];
        }
    }
    if constexpr (KW) {
        // In-block split-K: slices 1..kw-1 park their partial sums in shared memory (the X chunk is dead
        // once every warp passed the barrier), slice 0 adds them in slice order (deterministic) and stores.
        // (warp and slice are recomputed here so that they hold no register through the main loop.)
        const int wp = threadIdx.x >> 5, kw = p.kw, sl = wp % kw;
        float* red = reinterpret_cast<float*>(smem);  // [kWarps][MT * 4][32]
        __syncthreads();
        if (sl != 0) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) red[(wp * MT * 4 + mt * 4 + e) * 32 + lane] = acc[mt][e];
        }
        __syncthreads();
        if (sl != 0) return;
        for (int o = 1; o < kw; ++o) {
#pragma unroll
            for (int mt = 0; mt < MT; ++mt)
#pragma unroll
                for (int e = 0; e < 4; ++e) acc[mt][e] += red[((wp + o) * MT * 4 + mt * 4 + e) * 32 + lane];
        }
    }
    if (!active) return;

    // Epilogue: C fragment (c0, c1) = row g, (c2, c3) = row g + 8 of the strip; columns 2t, 2t+1 are rows of Y.
    const int n0 = strip * 16 + g, n1 = n0 + 8;
    const float cs0 = p.chan ? p.chan[n0] : 1.f, cs1 = p.chan ? p.chan[n1] : 1.f;
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int n = e < 2 ? n0 : n1;
            const int mm = m0 + mt * 8 + 2 * (lane & 3) + (e & 1);
            const float v = acc[mt][e] * (e < 2 ? cs0 : cs1);
            if (mm < p.m && n < p.n) {
                if (p.ws) {
                    atomicAdd(p.ws + size_t(mm) * p.n + n, v);
                } else {
                    y[size_t(mm) * p.n + n] = to_out<T>(v);
                }
            }
        }
    }
}

// Dequantizes the tiled weight to a dense row-major [n, k] matrix of T (the large-M path hands it to cuBLAS).
// Block = 8 warps = 8 strips (128 rows) x kDequantSteps k-steps. Each lane decodes its eight codes per tile
// with the GEMM's own decoder, scales in f32 (one rounding: bit-identical to lowbit-core for INT and BitMoD,
// within 1 ulp for tables, whose values are rounded to T first) and writes the pairs into a shared-memory
// tile [128 rows][k-step columns]; the block then writes the tile out with 16-byte row-contiguous stores
// (direct 4-byte fragment stores reached only 0.7 TB/s: v5 in NOTES.md). Columns are in kernel order
// (act-order weights: permuted; X is gathered the same way).
constexpr int kDequantSteps = 8;

template <class Fmt>
constexpr size_t dequant_smem_bytes(int n_tables) {
    return (Fmt::kIsLut ? size_t(n_tables) * Fmt::kEntries * 4 : 0) + size_t(kWarps * 16) * (Fmt::kTiles * 16 + 8) * 2;
}

template <class Fmt, typename T>
__global__ void __launch_bounds__(kThreads) dequant_kernel(const Args p, T* out, int ld_out) {
    constexpr int TS = Fmt::kTiles, KSTEP = TS * 16, LDS = KSTEP + 8;  // tile row pitch: +16 B, no conflicts
    extern __shared__ __align__(128) unsigned char smem[];
    uint32_t* tab = reinterpret_cast<uint32_t*>(smem);
    const size_t tab_bytes = Fmt::kIsLut ? size_t(p.n_tables) * Fmt::kEntries * 4 : 0;
    T* tile_s = reinterpret_cast<T*>(smem + tab_bytes);  // [128][LDS]
    if constexpr (Fmt::kIsLut) {
        for (int i = threadIdx.x; i < p.n_tables * Fmt::kEntries; i += kThreads) {
            const int t = i / Fmt::kEntries, e = i - t * Fmt::kEntries;
            int c0, c1;
            Fmt::split(e, c0, c1);
            tab[i] = Pair<T>::pack(p.lut[t * (1 << Fmt::kBits) + c0], p.lut[t * (1 << Fmt::kBits) + c1]);
        }
        __syncthreads();
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    const int strip = blockIdx.x * kWarps + warp;
    const bool active = strip < p.strips;
    // kDequantSteps k-steps per warp, all loads issued before the first decode.
    const int step0 = blockIdx.y * kDequantSteps;
    const size_t lane_off = size_t(active ? strip : 0) * p.ksteps * 32 + lane;
    uint32_t wv[kDequantSteps][4], hv[kDequantSteps][2];
#pragma unroll
    for (int i = 0; i < kDequantSteps; ++i) {
        const int step = min(step0 + i, p.ksteps - 1);
        const size_t off = lane_off + size_t(step) * 32;
        const uint4 v = ld_stream_u4(p.words + off * 4);
        wv[i][0] = v.x, wv[i][1] = v.y, wv[i][2] = v.z, wv[i][3] = v.w;
        if constexpr (Fmt::kHasHi) {
            const uint2 h2 = ld_stream_u2(p.hi_words + off * 2);
            hv[i][0] = h2.x, hv[i][1] = h2.y;
        } else {
            hv[i][0] = hv[i][1] = 0;
        }
    }
    const int n0 = (active ? strip : 0) * 16 + g;
    const float c0 = p.chan ? p.chan[n0] : 1.f, c1 = p.chan ? p.chan[n0 + 8] : 1.f;
    const uint2* meta = reinterpret_cast<const uint2*>(p.meta) + size_t(active ? strip : 0) * p.groups * 8 + g;
    const int row0 = blockIdx.x * kWarps * 16;  // first row of the block
    const bool vec_out = (ld_out % 8 == 0) && (reinterpret_cast<uintptr_t>(out) % 16 == 0);
#pragma unroll
    for (int i = 0; i < kDequantSteps; ++i) {
        const int step = step0 + i;
        // Block-uniform guard (not a break: that would stop the unrolling and index wv[] at run time).
        if (step < p.ksteps) {
#pragma unroll
            for (int j = 0; j < TS; ++j) {
                const int tile = step * TS + j;
                const uint2 m = __ldg(meta + size_t(tile / p.gtiles) * 8);
                GroupCtx ctx;
                Fmt::template ctx<T>(m.y, ctx);
                if constexpr (Fmt::kIsLut) {
                    ctx.tab_g = tab + (m.y & 0xFF) * Fmt::kEntries;
                    ctx.tab_g8 = tab + ((m.y >> 8) & 0xFF) * Fmt::kEntries;
                }
                uint32_t a[4];
                Fmt::template decode<T>(wv[i], hv[i], j, ctx, a);
                const float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&m.x));
#pragma unroll
                for (int r = 0; r < 4; ++r) {
                    // BitMoD: (grid * q_g) * chan in f32 is exact like lowbit-core's grid * (q_g * chan).
                    const float sr = (r & 1) ? sc.y * c1 : sc.x * c0;
                    float lo, hi;
                    if constexpr (std::is_same_v<T, __half>) {
                        const float2 f = __half22float2(*reinterpret_cast<const __half2*>(&a[r]));
                        lo = f.x, hi = f.y;
                    } else {
                        const float2 f = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(&a[r]));
                        lo = f.x, hi = f.y;
                    }
                    const int rr = warp * 16 + g + ((r & 1) ? 8 : 0);
                    const int cc = j * 16 + 2 * t + ((r & 2) ? 8 : 0);
                    *reinterpret_cast<uint32_t*>(tile_s + rr * LDS + cc) = Pair<T>::pack(lo * sr, hi * sr);
                }
            }
            __syncthreads();
            // 128 rows x KSTEP columns: KSTEP / 8 16-byte pieces per row, consecutive threads along a row.
            const int col0 = step * KSTEP;
            for (int q = threadIdx.x; q < kWarps * 16 * (KSTEP / 8); q += kThreads) {
                const int rr = q / (KSTEP / 8), c8 = (q - rr * (KSTEP / 8)) * 8;
                const int row = row0 + rr, col = col0 + c8;
                if (row >= p.n || col >= p.k) continue;
                const T* src = tile_s + rr * LDS + c8;
                T* dst = out + size_t(row) * ld_out + col;
                if (vec_out && col + 8 <= p.k) {
                    *reinterpret_cast<uint4*>(dst) = *reinterpret_cast<const uint4*>(src);
                } else {
                    for (int e = 0; e < 8 && col + e < p.k; ++e) dst[e] = src[e];
                }
            }
            __syncthreads();  // the tile is rewritten by the next step
        }
    }
}

template <class Fmt, typename T>
cudaError_t launch_dequant(const Args& a, T* out, int ld_out, cudaStream_t s) {
    const size_t smem = dequant_smem_bytes<Fmt>(a.n_tables);
    if (smem > 48 * 1024) {
        const cudaError_t e =
            cudaFuncSetAttribute(dequant_kernel<Fmt, T>, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (e != cudaSuccess) return e;
    }
    const dim3 grid((a.strips + kWarps - 1) / kWarps, (a.ksteps + kDequantSteps - 1) / kDequantSteps);
    dequant_kernel<Fmt, T><<<grid, kThreads, smem, s>>>(a, out, ld_out);
    return cudaGetLastError();
}

// Split-K finish: Y = T(workspace), and the workspace back to zero. The split-K workspace is zero on entry and
// left zero, so the GEMM needs no memset before it: two graph nodes per call instead of three (NOTES.md v11;
// an in-GEMM finish by the last-arriving block measured slower: its per-block fence).
// Under programmatic dependent launch (launch_pdl, after the GEMM) it may start before the GEMM finished: nothing is
// read or written before griddepcontrol.wait; it lets the next kernel launch at once (that one waits in turn).
template <typename T>
__global__ void convert_kernel(float* ws, T* y, int64_t count) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < count; i += int64_t(gridDim.x) * blockDim.x) {
        y[i] = to_out<T>(ws[i]);
        ws[i] = 0.f;
    }
}

// Act-order: X'[m][j] = X[m][perm[j]], so the kernel sees groups as contiguous column ranges.
template <typename T>
__global__ void gather_kernel(const T* x, int64_t ldx, const uint32_t* perm, T* out, int m, int k) {
    const int64_t total = int64_t(m) * k;
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < total; i += int64_t(gridDim.x) * blockDim.x) {
        const int64_t r = i / k;
        out[i] = x[r * ldx + perm[i - r * k]];
    }
}

// Shared memory of one block: two X chunks plus the pair tables.
template <class Fmt, int MT>
constexpr size_t smem_bytes(int kc, int n_tables) {
    size_t s = 2 * size_t(MT * 8) * (kc + 8) * 2;
    if (Fmt::kIsLut) s += size_t(n_tables) * Fmt::kEntries * 4;
    // The in-block split-K reduction reuses the buffer: [kWarps][MT * 4][32] floats.
    const size_t red = size_t(kWarps) * MT * 4 * 32 * 4;
    return s > red ? s : red;
}

// k-steps of weights in flight per lane. Measured on an H200 (NOTES.md v7): with the small m-tiles the
// kernel is issue-bound, so resident warps beat deeper per-warp prefetch: 4 steps at 4 blocks per SM ran
// M = 1 on 28672x8192 in 48.5 us, 8 steps at 3 blocks in 55 us, at 2 blocks in 64 us.
template <class Fmt, int MT>
constexpr int prefetch_steps() {
    return 4;
}

// Resident blocks per SM each m-tile is compiled for (registers capped at 65536 / (256 * MINB)): 4 for one
// 8-row m-subtile (63 registers) and, since v12, for two (64 registers, no spills on sm_90a: the v8 cap of 3 dated
// from a longer loop that needed 80); none for the larger m-tiles. Formats whose decoders need more registers
// (3-bit high-bit stream, tables, the 8-tile k-steps of 2/3-bit) get one block less, where the cap would spill
// (checked with --warn-on-spills for sm_80, sm_89, sm_90a).
// Mix3 (BitMoD FP3, byte-permute decode) with f16 output fits one block more at the 8- and 16-row m-tiles without
// spills (64 and 80 registers; H100, harness, same run, 28672x8192: M = 1 49.0 vs 52.5 us, M = 16 66.2 vs 74.5; NOTES.md
// Mix3); bf16 spills there, and its compact-X instance keeps 3 (cx_min_blocks).
template <class Fmt, int MT, typename T = __half>
constexpr int min_blocks() {
    constexpr bool heavy = Fmt::kHasHi || Fmt::kIsLut || Fmt::kTiles > 4;  // 3-bit, tables, 8 tiles per step
    if constexpr (std::is_same_v<Fmt, Mix3> && std::is_same_v<T, __half> && MT <= 2) return MT == 1 ? 4 : 3;
    return MT == 1 ? (heavy ? 3 : 4) : MT == 2 ? (heavy ? (Fmt::kTiles > 4 ? 2 : 3) : 4) : 1;
}
// Load-ahead (v15, the LA instances): where it is the library default. Off everywhere: measured on one H100 (NOTES.md v15)
// it made Mix4 3-7% slower at M = 1 and moved INT4 / Mix3 by +-2% (ptxas already issues each slot's reload right after
// the k-step's last decode; the copies cost issue slots). The harness switches it with g_la.
template <class Fmt, int MT, typename T = __half>
constexpr bool load_ahead() {
    return false;
}
// Instances where load-ahead's extra registers fit the cap without spills (ptxas -v, sm_90a): the 8-row m-tile, except
// Mix3 f16 at its 4-block cap outside compact X (72 bytes spilled). At the 16-row m-tile the 64-register caps spill
// (INT4 336 bytes, Mix4 48-52, Mix3 72), so LA there would need one block per SM less.
template <class Fmt, int MT, typename T, bool CX>
constexpr bool la_fits() {
    return MT == 1 && (CX || !(std::is_same_v<Fmt, Mix3> && std::is_same_v<T, __half>));
}
// MS (v16, metadata in shared memory): where it is the library default. INT4 at the 8-row m-tile (M <= 8: split-K,
// in-block split-K and compact X), measured on one H100 (NOTES.md v16): 8192x28672 M = 1 52.6 -> 50.1 us, M = 2..8
// -1.0..-2.1 us; 28672x8192 M = 2..8 -1.1..-1.6 us (M = 1 -0.2); 11008x4096 -0.1..-0.5; 4096^2 M = 2..8 -0.3..-0.5 (M = 1
// +0.2). At the 16-row m-tile it was 0..0.7 us slower (M = 16 on all four shapes): off there.
// v18 (NOTES.md v18): the formats whose MS instances are compiled (INT4, BitMoD W3 / W4), and where they run. One rule
// for the launches and the host plan (wo_launch.cu ms_format_of, which sizes the copy in the plan's shared memory).
template <class Fmt>
constexpr bool ms_format() {
    return std::is_same_v<Fmt, Int4> || std::is_same_v<Fmt, Mix3> || std::is_same_v<Fmt, Mix4>;
}
template <class Fmt, int MT, typename T = __half>
constexpr bool meta_smem() {
    return ms_format<Fmt>() && MT == 1;
}
// BitMoD's rule, from v18's A/B (one H100, same process, NOTES.md v18): Mix3 with MS 28672x8192 M = 1 47.3 -> 45.8 us,
// M = 2..8 -4..-14% on 28672x8192 / 11008x4096 / 4096^2 (8192x28672 equal; 4096^2 M = 1 +0.2 us): on. Mix4 with MS
// +1..6% at M = 1..8 on both large shapes: off. LOWBIT_WO_MS_BITMOD in the environment overrides: 0 = both off, 1 = both
// on (the A/B switch of benches/micro/wo_ms.cu).
inline int ms_bitmod_env() {
    static const int v = [] {
        const char* e = std::getenv("LOWBIT_WO_MS_BITMOD");
        return e ? std::atoi(e) : -1;
    }();
    return v;
}
template <class Fmt>
inline bool ms_active() {
    if constexpr (std::is_same_v<Fmt, Int4>) {
        return true;
    } else if constexpr (std::is_same_v<Fmt, Mix3>) {
        return ms_bitmod_env() != 0;
    } else if constexpr (std::is_same_v<Fmt, Mix4>) {
        return ms_bitmod_env() > 0;
    } else {
        return false;
    }
}
// Blocks per SM of the compact-X instance (wo_launch.cu compact_kw assumes the same: 3 for the 3-bit and 8-tile formats).
template <class Fmt>
constexpr int cx_min_blocks() {
    return Fmt::kHasHi || Fmt::kTiles > 4 ? 3 : min_blocks<Fmt, 1>();
}

// Shared memory of the device's multiprocessors available to blocks (228 KB on sm_90, 164 KB sm_80, 100 KB sm_89).
inline int smem_per_sm() {
    int dev = 0, v = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerMultiprocessor, dev) != cudaSuccess) {
        cudaGetLastError();
        return 100 * 1024;
    }
    return v;
}

// X chunk of a launch (v12): the chunk (kc columns, one or two buffers) is sized so that as many blocks as the
// registers allow (`blocks` per SM) also fit the SM's shared memory, with one buffer that holds the block's whole
// K range whenever it fits (no barrier and no second stage inside the block). Before v12 the plan's 2048 / MT
// columns were double-buffered whatever the split length: at M = 16 that was 66 KB per block, so shared memory
// alone allowed only 3 blocks per SM, and a 19-step split ran as a 16-step and a 3-step chunk with a block-wide
// barrier between them.
struct XChunk {
    int kc, bufs;
};
// Largest copy the launcher takes (else it runs the MS = false instance): the automatic plans stay far below it
// (28672x8192 M = 1, compact X kw = 2: 16.8 KB; split-K blocks: 8 strips x a few groups); a forced long split would not.
constexpr int64_t kMsMaxBytes = 48 * 1024;
template <class Fmt, int MT>
XChunk x_chunk(int steps_per_split, int plan_kc, int n_tables, int smem_sm, int blocks, int64_t extra = 0) {
    constexpr int ROWS = MT * 8, KSTEP = Fmt::kTiles * 16;
    const int64_t tab = Fmt::kIsLut ? int64_t(n_tables) * Fmt::kEntries * 4 : 0;
    // 1 KB per block is the driver's reservation.
    const int64_t budget = int64_t(smem_sm) / (blocks > 0 ? blocks : 1) - 1024 - tab - extra;
    const int64_t whole = int64_t(steps_per_split) * KSTEP;
    // The pair tables sit behind two X buffers (gemm_kernel), so table formats keep both allocated.
    if ((Fmt::kIsLut ? 2 : 1) * int64_t(ROWS) * (whole + 8) * 2 <= budget) return {int(whole), Fmt::kIsLut ? 2 : 1};
    int64_t kc = (budget / (2 * ROWS * 2) - 8) / KSTEP * KSTEP;
    if (kc > plan_kc) kc = plan_kc;
    if (kc > whole) kc = whole;
    if (kc < KSTEP) kc = KSTEP;
    return {int(kc), 2};
}

// Whether a launch with kw > 1 runs the compact-X instance (MT = 1, INT formats, M <= 8), and its shared memory:
// the M rows of the K range, the zero line, at least the in-block reduction's [kWarps][4][32] floats.
template <class Fmt, int MT>
constexpr bool cx_format() {
    return MT == 1 && !Fmt::kIsLut;
}
inline size_t cx_smem_bytes(int m, int kc, int kstep) {
    const size_t x = size_t(m) * (kc + 8) * 2 + size_t(kstep) * 4, red = size_t(kWarps) * 4 * 32 * 4;
    return x > red ? x : red;
}

// Programmatic dependent launch (NOTES.md v13): where lowbit::pdl_runs() allows it (lowbit/pdl.cuh: compute
// capability >= 9.0, not turned off by LOWBIT_PDL=0), the small-M kernels and the split-K convert kernel are launched
// with the programmatic-stream-serialization attribute, so their blocks start (and prefetch their first weights into
// L2) while the previous kernel drains; every kernel launched this way waits in griddepcontrol.wait before its first
// read or write.

#ifdef LOWBIT_WO_PROBE
inline int g_pdl_mode = 1;  // harness toggle: 0 off, 1 the library rule, 2 always
inline int g_pdl_pf = -1;   // harness: k-steps prefetched before the wait (-1: the library's)
#endif

// Whether a launch uses PDL: every small-M grid where the device has it (the kernels are correct either way).
inline bool pdl_want(bool rule) {
#ifdef LOWBIT_WO_PROBE
    return (g_pdl_mode == 2 || (g_pdl_mode == 1 && rule)) && pdl_runs();
#else
    return rule && pdl_runs();
#endif
}

// k-steps per warp prefetched into L2 before griddepcontrol.wait: the P steps of the first register loads for the
// one-launch in-block split-K grids (kw > 1: compact X, KW), none for the one-warp-per-strip grids. H100, NOTES.md v13:
// on the one-wave compact-X grids the prefetch is worth 0.3-0.7 us per call (28672x8192, 11008x4096, 4096^2 at M = 1),
// on the split-K grids (2-3 waves, or 41 splits on 8192x28672) it cost 0.5-2.4 us (M = 1 / 4 / 16 on 28672x8192 and
// 8192x28672); 16 steps cost 3-5 us on the large shapes.
inline int pdl_prefetch_steps(int p, int kw) {
#ifdef LOWBIT_WO_PROBE
    if (g_pdl_pf >= 0) return g_pdl_pf;
#endif
    return kw > 1 ? p : 0;
}

template <typename Kern, typename... A>
cudaError_t launch_pdl(Kern kern, dim3 grid, dim3 block, size_t smem, cudaStream_t s, bool pdl, A... args) {
    return LaunchEx(grid, block, smem, s).pdl(pdl).launch(kern, args...);
}

// The split-K finish after the GEMM (wo_launch.cu run, the harness): Y = T(ws), ws = 0.
template <typename T>
cudaError_t launch_convert(float* ws, T* y, int64_t total, cudaStream_t s) {
    const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
    return launch_pdl(convert_kernel<T>, dim3(blocks), dim3(256), 0, s, pdl_want(true), ws, y, total);
}

#ifdef LOWBIT_WO_PROBE
inline int g_wide = -1;  // harness: 256-row blocks (v14) -1 the library rule, 0 off, 1 on
#endif

// v14: the one-warp-per-strip INT4 kernel runs 16-warp (256-row) blocks at 2 per SM instead of 8-warp blocks at 4: same
// warps per SM and registers (64), half the X staging and X reads from L2 per weight byte. INT4 only (the format
// measured, NOTES.md v14); formats capped below 4 blocks per SM would lose warps.
constexpr bool kWideBlocks = true;
template <class Fmt, int MT, typename T>
constexpr bool wide_format() {
    return std::is_same_v<Fmt, Int4> && MT == 2 && min_blocks<Fmt, MT, T>() == 4;
}
inline bool wide_want() {
#ifdef LOWBIT_WO_PROBE
    if (g_wide >= 0) return g_wide == 1;
#endif
    return kWideBlocks;
}

// The one-warp-per-strip (kw = 1) and in-block split-K (kw > 1, NW = kWarps) launches: NW warps per block.
// (plain: the MS = false instance, for the MS instances outside INT4 where one X chunk cannot hold a block's K range.)
template <class Fmt, typename T, int MT, int NW, bool MS = false, bool ZF = false, typename Kern>
cudaError_t launch_grid(Kern kern, const Args& a0, int splits, int mtiles, cudaStream_t s, Kern plain = nullptr) {
    Args a = a0;
    const int splits0 = splits;
    // Strips per block: NW, or kWarps / kw with kw warps per strip (in-block split-K).
    const int spb = a.kw > 1 ? kWarps / a.kw : NW;
    const int nblk = (a.strips + spb - 1) / spb;
    size_t smem = smem_bytes<Fmt, MT>(a.kc, a.n_tables);
    if (a.kw <= 1) {
        // Blocks per SM that the registers allow; the X chunk is then sized to let them all fit.
        int occ = 0;
        cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, NW * 32, 0);
        cudaGetLastError();
        occ = occ > 0 ? occ : 1;
        const int smem_sm = smem_per_sm();
        if (a.auto_splits && splits > 1) {
            // Pick the split count whose blocks fill the resident slots in the most nearly whole waves
            // (a last wave that is 10% full costs almost a whole wave). At least 8 k-steps per split.
            const int64_t slots = int64_t(occ) * (a.sms > 0 ? a.sms : 1);
            const int max_s = a.ksteps / 8 > 2 ? a.ksteps / 8 : 2;
            double best = -1;
            for (int c = 2; c <= max_s; ++c) {
                const int sps = (a.ksteps + c - 1) / c, real = (a.ksteps + sps - 1) / sps;
                if (MS && ms_bytes(NW, sps, Fmt::kTiles, a.gtiles) > kMsMaxBytes) continue;  // (launch_mt's bound)
                const double waves = double(int64_t(nblk) * mtiles * real) / double(slots);
                const double eff = waves / std::ceil(waves);
                if (eff > best + 0.02) {
                    best = eff;
                    splits = real;
                    a.steps_per_split = sps;
                }
            }
        }
        const int64_t ms = (MS ? ms_bytes(NW, a.steps_per_split, Fmt::kTiles, a.gtiles) : 0) +
                           (ZF ? zf_bytes(a.steps_per_split, MT * 8) : 0);
        const XChunk xc = x_chunk<Fmt, MT>(a.steps_per_split, a.kc, a.n_tables, smem_sm, occ, ms);
        if constexpr (MS && !std::is_same_v<Fmt, Int4>) {
            // (v18: these MS instances have no chunk switch in the loop, gemm_kernel kOneChunk.)
            if (xc.kc < a.steps_per_split * Fmt::kTiles * 16) {
                return plain ? launch_grid<Fmt, T, MT, NW, false, ZF>(plain, a0, splits0, mtiles, s) : cudaErrorInvalidValue;
            }
        }
        a.kc = xc.kc;
        smem = size_t(xc.bufs) * (MT * 8) * (xc.kc + 8) * 2 + (Fmt::kIsLut ? size_t(a.n_tables) * Fmt::kEntries * 4 : 0);
    }
    if constexpr (MS) smem += size_t(ms_bytes(spb, a.steps_per_split, Fmt::kTiles, a.gtiles));  // (in front of X)
    if constexpr (ZF) smem += size_t(zf_bytes(a.steps_per_split, MT * 8));                        // (the same)
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (e != cudaSuccess) return e;
    }
    a.pdl_pf = pdl_prefetch_steps(prefetch_steps<Fmt, MT>(), a.kw);
    return launch_pdl(kern, dim3(mtiles, nblk, splits), dim3(NW * 32), smem, s, pdl_want(true), a);
}

template <class Fmt, typename T, int MT, bool LA, bool MS = false, bool ZF = false, int PZ = 0>
cudaError_t launch_mt_la(const Args& a0, int splits, int mtiles, cudaStream_t s) {
    // (LA applies where la_fits(); elsewhere the request compiles to the LA = false instance.)
    constexpr bool la = LA && la_fits<Fmt, MT, T, false>() && !ZF;
    // (PZ: the harness's k-steps in flight per lane, 0 = prefetch_steps.)
    constexpr int PP = PZ ? PZ : prefetch_steps<Fmt, MT>(), PP1 = PZ ? PZ : prefetch_steps<Fmt, 1>();
    auto kern = gemm_kernel<Fmt, T, MT, PP, min_blocks<Fmt, MT, T>(), false, false, kWarps, la, MS, ZF>;
    if constexpr (cx_format<Fmt, MT>()) {
        // In-block split-K with compact X (v12): up to cx_min_blocks() blocks per SM, one wave (the plan's rule).
        if (a0.kw > 1 && a0.m <= 8) {
            constexpr bool la_cx = LA && la_fits<Fmt, 1, T, true>() && !ZF;
            auto kx = gemm_kernel<Fmt, T, 1, PP1, cx_min_blocks<Fmt>(), true, true, kWarps, la_cx, MS, ZF>;
            Args a = a0;
            size_t smem = cx_smem_bytes(a0.m, a0.kc, Fmt::kTiles * 16);
            if constexpr (MS) smem += size_t(ms_bytes(kWarps / a0.kw, a0.steps_per_split, Fmt::kTiles, a0.gtiles));
            if constexpr (ZF) smem += size_t(zf_bytes(a0.steps_per_split, 8));
            if (smem > 48 * 1024) {
                const cudaError_t e = cudaFuncSetAttribute(kx, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
                if (e != cudaSuccess) return e;
            }
            const int spb = kWarps / a0.kw;
            a.pdl_pf = pdl_prefetch_steps(prefetch_steps<Fmt, 1>(), a0.kw);
            return launch_pdl(kx, dim3(1, (a0.strips + spb - 1) / spb, 1), dim3(kThreads), smem, s, pdl_want(true), a);
        }
    }
    if constexpr (wide_format<Fmt, MT, T>()) {
        if (a0.kw <= 1 && wide_want()) {
            constexpr int NW = 2 * kWarps;
            return launch_grid<Fmt, T, MT, NW, MS, ZF>(
                gemm_kernel<Fmt, T, MT, PP, min_blocks<Fmt, MT, T>() / 2, false, false, NW, la, MS, ZF>, a0,
                splits, mtiles, s);
        }
    }
    if constexpr (MT <= 2) {
        // Its grid is at most one block per SM (the plan's rule), so it needs no multi-block register cap.
        if (a0.kw > 1) kern = gemm_kernel<Fmt, T, MT, PP, 1, true, false, kWarps, la, MS, ZF>;
    }
    if constexpr (MS && !std::is_same_v<Fmt, Int4>) {
        // (v18: the MS = false instance, where one X chunk cannot hold a block's K range: launch_grid.)
        return launch_grid<Fmt, T, MT, kWarps, MS, ZF>(kern, a0, splits, mtiles, s,
                                                       gemm_kernel<Fmt, T, MT, PP, min_blocks<Fmt, MT, T>(), false, false, kWarps, la, false, false>);
    }
    return launch_grid<Fmt, T, MT, kWarps, MS, ZF>(kern, a0, splits, mtiles, s);
}

#ifdef LOWBIT_WO_PROBE
// harness: load-ahead (v15) -1 the library rule, 0 off, 1 on (INT4, Mix4, Mix3 only; initial value from LOWBIT_WO_LA)
inline int g_la = std::getenv("LOWBIT_WO_LA") ? std::atoi(std::getenv("LOWBIT_WO_LA")) : -1;
#endif

#ifdef LOWBIT_WO_PROBE
// harness: metadata in shared memory (v16) -1 the library rule, 0 off, 1 on (every format at MT = 1 / 2 since v18; initial
// value from LOWBIT_WO_MS)
inline int g_ms = std::getenv("LOWBIT_WO_MS") ? std::atoi(std::getenv("LOWBIT_WO_MS")) : -1;
#endif

#ifdef LOWBIT_WO_PROBE
// harness: zero-point fold (v17) -1 the library rule, 0 off, 1 on (INT4 at MT = 1 / 2 with MS as the library has it;
// initial value from LOWBIT_WO_ZF)
inline int g_zf = std::getenv("LOWBIT_WO_ZF") ? std::atoi(std::getenv("LOWBIT_WO_ZF")) : -1;
#endif

// ZF (v17, the zero-point fold): where it would be the library default (INT4 at the 8-row m-tile with the MS copy,
// groups of whole k-steps: zf_groups_ok). Off: measured slower on one H100 (NOTES.md v17: 28672x8192 M = 1 47.7 -> 52.3
// us, 8192x28672 50.5 -> 52.7, every M = 1..8 point of four shapes +0.7..+4.6 us) although its loop issues 16% fewer
// instructions per weight byte. With it off, inst_int4's sm_90a SASS is identical to v16's; the harness runs ZF with g_zf.
constexpr bool kZeroFold = false;
template <class Fmt, int MT, typename T = __half>
constexpr bool zero_fold() {
    return kZeroFold && meta_smem<Fmt, MT, T>() && std::is_same_v<Fmt, Int4>;
}
// ZF (v17): groups of whole k-steps, at most 8 k-steps (the prologue's running sums are serial within a group).
template <class Fmt>
inline bool zf_groups_ok(const Args& a) {
    return a.gtiles % Fmt::kTiles == 0 && a.gtiles / Fmt::kTiles <= 8;
}

template <class Fmt, typename T, int MT>
cudaError_t launch_mt(const Args& a0, int splits, int mtiles, cudaStream_t s) {
#ifdef LOWBIT_WO_PROBE
    if constexpr (std::is_same_v<Fmt, Int4> && MT == 1) {
        // (g_zf = 0: the MS = library, ZF = false instances, i.e. main's before v17.)
        if (g_zf >= 0 && g_ms < 0) {
            const bool ms_ok = ms_bytes(a0.kw > 1 ? kWarps / a0.kw : kWarps, a0.steps_per_split, Fmt::kTiles, a0.gtiles) <= kMsMaxBytes;
            if (g_zf > 0 && ms_ok && zf_groups_ok<Fmt>(a0)) {
                return g_zf == 2 ? launch_mt_la<Fmt, T, MT, false, true, true, 5>(a0, splits, mtiles, s)
                                 : launch_mt_la<Fmt, T, MT, false, true, true>(a0, splits, mtiles, s);
            }
            return ms_ok ? launch_mt_la<Fmt, T, MT, false, true>(a0, splits, mtiles, s)
                         : launch_mt_la<Fmt, T, MT, false, false>(a0, splits, mtiles, s);
        }
    }
#endif
#ifdef LOWBIT_WO_PROBE
    if constexpr (MT <= 2) {
        if (g_ms >= 0) {
            const bool ms_ok = ms_bytes(a0.kw > 1 ? kWarps / a0.kw : kWarps, a0.steps_per_split, Fmt::kTiles, a0.gtiles) <= kMsMaxBytes;
            return g_ms && ms_ok ? launch_mt_la<Fmt, T, MT, false, true>(a0, splits, mtiles, s)
                                 : launch_mt_la<Fmt, T, MT, false, false>(a0, splits, mtiles, s);
        }
    }
    if constexpr (std::is_same_v<Fmt, Int4> || std::is_same_v<Fmt, Mix4> || std::is_same_v<Fmt, Mix3>) {
        if (g_la >= 0) {
            return g_la ? launch_mt_la<Fmt, T, MT, true>(a0, splits, mtiles, s)
                        : launch_mt_la<Fmt, T, MT, false>(a0, splits, mtiles, s);
        }
    }
#endif
    if constexpr (meta_smem<Fmt, MT, T>()) {
        if (!ms_active<Fmt>() ||
            ms_bytes(a0.kw > 1 ? kWarps / a0.kw : kWarps, a0.steps_per_split, Fmt::kTiles, a0.gtiles) > kMsMaxBytes) {
            return launch_mt_la<Fmt, T, MT, load_ahead<Fmt, MT, T>(), false>(a0, splits, mtiles, s);
        }
        if constexpr (zero_fold<Fmt, MT, T>()) {
            if (zf_groups_ok<Fmt>(a0)) return launch_mt_la<Fmt, T, MT, false, true, true>(a0, splits, mtiles, s);
        }
    }
    return launch_mt_la<Fmt, T, MT, load_ahead<Fmt, MT, T>(), meta_smem<Fmt, MT, T>()>(a0, splits, mtiles, s);
}

template <class Fmt, typename T>
cudaError_t launch_dtype(const Args& a, int mt, int splits, int mtiles, cudaStream_t s) {
    switch (mt) {
        case 1: return launch_mt<Fmt, T, 1>(a, splits, mtiles, s);
        case 2: return launch_mt<Fmt, T, 2>(a, splits, mtiles, s);
        case 4: return launch_mt<Fmt, T, 4>(a, splits, mtiles, s);
        default: return launch_mt<Fmt, T, 8>(a, splits, mtiles, s);
    }
}

}  // namespace wo
}  // namespace lowbit

// Defines the launchers of one format (both output types: every m-tile of the GEMM, and the dense
// dequantizer); used once per inst_*.cu.
#define LOWBIT_WO_INSTANTIATE(NAME, FMT)                                                                    \
    cudaError_t lowbit_wo_launch_##NAME(const lowbit::wo::Args& a, int dtype, int mt, int splits, int mtiles, \
                                        cudaStream_t s) {                                                  \
        return dtype == 0 ? lowbit::wo::launch_dtype<FMT, __half>(a, mt, splits, mtiles, s)                \
                          : lowbit::wo::launch_dtype<FMT, __nv_bfloat16>(a, mt, splits, mtiles, s);        \
    }                                                                                                       \
    cudaError_t lowbit_wo_dequant_##NAME(const lowbit::wo::Args& a, int dtype, void* out, int ld, cudaStream_t s) { \
        return dtype == 0 ? lowbit::wo::launch_dequant<FMT, __half>(a, static_cast<__half*>(out), ld, s)    \
                          : lowbit::wo::launch_dequant<FMT, __nv_bfloat16>(a, static_cast<__nv_bfloat16*>(out), ld, s); \
    }
