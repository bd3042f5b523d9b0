// S2 (weight-only NOTES.md v19): the small-M compact-X in-block split-K kernel with TWO 16-row strips per warp (a
// 32-row strip pair, the int8 stream kernel's 32-row warp tile), INT4 only, M <= 8, groups of whole k-steps.
//
//   block = 8 warps = 8 / kw strip pairs x kw warps per pair; warp w takes pair w / kw and the (w % kw)-th of kw
//   near-equal shares of the whole K range (in-block split-K: the kw partial sums meet in shared memory, slice 0 adds
//   them in slice order and stores; deterministic, no workspace, no atomics, no convert launch).
//   X: compact (only the M real rows, whole K, in shared memory; ldmatrix lanes of rows >= M read a zero line), as the
//   gemm_kernel CX instance. One pair of ldmatrix.x4 per k-step feeds both strips' MMAs (two independent accumulator
//   chains per warp), so X's shared-memory reads per weight byte halve, and a block covers twice the rows of the CX
//   kernel at the same kw: 8192x28672 at M = 1 (512 strips) runs 256 blocks of 2 strips with kw = 8 in one wave at 2
//   blocks per SM (57 KB of X each), where the CX kernel's 512 blocks are 1.3 waves and the library runs ~41-way
//   split-K with f32 atomics and a convert kernel instead.
//   Metadata: the block's strips' whole group rows ([strip][group] x 64 bytes: contiguous in the tiled layout) are
//   copied into shared memory with X; a group flush reads the next pair of each strip (LDS.64, one group ahead).
//   Weights: each lane streams its 16 bytes per k-step of both strips, P k-steps ahead (2 x P x 16 bytes in flight).
//   PDL as gemm_kernel (prefetch the first P k-steps into L2 before griddepcontrol.wait).
#pragma once

#include "lowbit/wo_gemm.cuh"

namespace lowbit {
namespace wo {

// Shared memory of an S2 block: the metadata copy of its 2 * pairs strips (+ two groups of padding: the one-ahead read
// of the last strip), the M rows of X over the whole K range, the zero line; at least the reduction's 8 KB.
// Metadata groups per strip in shared memory: the block-wide prologue copies each strip's `groups` once; the warp-staged
// one gives every K slice its own copy of the groups it touches, so a group at a slice border is held twice (at most
// kw - 1 such groups).
__host__ __device__ inline int s2_meta_groups(int groups, int kw, bool wst) { return wst ? groups + kw - 1 : groups; }
__host__ __device__ inline int64_t s2_meta_bytes(int strips_pb, int groups) { return (int64_t(strips_pb) * groups * 64 + 128 + 15) / 16 * 16; }
inline size_t s2_smem_bytes(int m, int ksteps, int groups, int strips_pb, bool wst = false) {
    const int mg = s2_meta_groups(groups, kWarps / (strips_pb / 2), wst);
    const size_t x = size_t(s2_meta_bytes(strips_pb, mg)) + size_t(m) * (size_t(ksteps) * 64 + 8) * 2 + 256;
    const size_t red = size_t(kWarps) * 8 * 32 * 4;
    return x > red ? x : red;
}

template <typename T, int P, int MINB, bool WST = false>
__global__ void __launch_bounds__(kThreads, MINB) s2_kernel(const Args p) {
    constexpr int TS = Int4::kTiles, KSTEP = TS * 16;
    extern __shared__ __align__(128) unsigned char smem[];
    const int kw = p.kw, ppb = kWarps / kw;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int pair = blockIdx.x * ppb + warp / kw;
    const int st0 = 2 * pair;
    const bool act0 = st0 < p.strips, act1 = st0 + 1 < p.strips;
    const int slice = warp % kw;
    const int s_begin = p.ksteps * slice / kw, s_end = p.ksteps * (slice + 1) / kw;
    const int strip0_blk = 2 * blockIdx.x * ppb;                         // first strip of the block
    const int nst = min(2 * ppb, p.strips - strip0_blk);                 // its real strips
    const int64_t meta_b = s2_meta_bytes(2 * ppb, s2_meta_groups(p.groups, kw, WST));
    T* xs = reinterpret_cast<T*>(smem + meta_b);
    const int lds = p.kc + 8;  // (p.kc = ksteps * KSTEP: the whole K range)

    // Weight stream: strip st0 at wnext, strip st0 + 1 at wnext + w1 (the next strip of the tiled layout).
    const size_t lane_off = size_t(act0 ? st0 : 0) * p.ksteps * 32 + lane;
    const uint32_t* wnext = p.words + (lane_off + size_t(s_begin) * 32) * 4;
    const size_t w1 = act1 ? size_t(p.ksteps) * 128 : 0;
    int s_next = s_begin;
    uint32_t wb[P][2][4];
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900
    {
        const int lines = 4 * min(p.pdl_pf, s_end - s_begin);
        const char* w0 = reinterpret_cast<const char*>(wnext - lane * 4);
        for (int l = lane; l < lines; l += 32) {
            prefetch_l2(w0 + l * 128);
            prefetch_l2(w0 + w1 * 4 + l * 128);
        }
    }
    asm volatile("griddepcontrol.launch_dependents;\n" ::: "memory");
    asm volatile("griddepcontrol.wait;\n" ::: "memory");
#endif
    auto load_w = [&](int i, auto first) {
        if (s_next < s_end) {
            const uint4 v = decltype(first)::value ? ld_first_u4(wnext) : ld_stream_u4(wnext);
            const uint4 u = decltype(first)::value ? ld_first_u4(wnext + w1) : ld_stream_u4(wnext + w1);
            wb[i][0][0] = v.x, wb[i][0][1] = v.y, wb[i][0][2] = v.z, wb[i][0][3] = v.w;
            wb[i][1][0] = u.x, wb[i][1][1] = u.y, wb[i][1][2] = u.z, wb[i][1][3] = u.w;
        }
        ++s_next;
        wnext += 128;
    };
#pragma unroll
    for (int i = 0; i < P; ++i) load_w(i, std::true_type{});

    const int spg = p.gtiles / TS;  // k-steps per group (the launcher: gtiles % TS == 0)
    // WST: this lane's shared-memory metadata address (strip sl0, the slice's first group, row pair g), the stride to
    // strip sl0 + 1 and the address of the slice's last group (where the one-ahead read stops).
    uint32_t wst_msn = 0, wst_m1 = 0, wst_mlast = 0;
    if constexpr (!WST) {
        // Metadata copy (contiguous: strips strip0_blk .. + nst, all groups) and compact X, one commit group, one barrier.
        const unsigned char* src = reinterpret_cast<const unsigned char*>(p.meta) + size_t(strip0_blk) * p.groups * 64;
        const int pieces = nst * p.groups * 8;
        for (int i = threadIdx.x; i < pieces; i += kThreads) cp_async8_zfill(smem + size_t(i) * 8, src + size_t(i) * 8, true);
        stage_x_rows<T>(p, xs, p.m, 0);
        uint32_t* zl = reinterpret_cast<uint32_t*>(xs + p.m * lds);
        for (int i = threadIdx.x; i < KSTEP; i += kThreads) zl[i] = 0u;
        // (the copy's padding: read by the one-ahead metadata load of the block's last strip)
        uint32_t* pad = reinterpret_cast<uint32_t*>(smem + size_t(nst) * p.groups * 64);
        if (threadIdx.x < 32) pad[threadIdx.x] = 0u;
        cp_async_wait<0>();
        __syncthreads();
    } else {
        // WST (warp-staged): the warps of K-slice `slice` (one per pair: ppb warps) stage only that slice's X columns
        // (each 1/ppb of them) and each warp only its own two strips' groups of the slice, then meet in a named barrier
        // of ppb warps (kw = 8: none, a warp waits only for its own copies): no block-wide wait for the whole X and
        // metadata before the first MMA. Nothing in shared memory is written by one slice and read by another before
        // the reduction's barrier (racecheck): every slice has its own metadata region ([2 * ppb strips][ng groups]; a
        // group at a slice border is copied twice, to two places),
        // the one-ahead metadata read stops at the slice's last group instead of reading padding or the next strip,
        // and ldmatrix lanes of rows >= M read row 0 (its products land in MMA columns the store drops) instead of a
        // zero line every warp would have to write.
        // This slice's groups [g_lo, g_hi) (the plan keeps ksteps >= kw: every slice has at least one k-step).
        const int g_lo = s_begin / spg, g_hi = s_end > s_begin ? (s_end - 1) / spg + 1 : g_lo;
        const int ng = g_hi - g_lo;
        const int sl0w = 2 * (warp / kw);
        // The region of slice t starts at group g_lo(t) + t: g_hi(t) <= g_lo(t + 1) + 1 (a slice ends inside the group
        // where the next one starts, or at its start), so the regions do not overlap and all end by groups + kw - 1.
        unsigned char* region = smem + size_t(g_lo + slice) * (2 * ppb) * 64;
        const int nsw = act1 ? 2 : (act0 ? 1 : 0);
        const unsigned char* src = reinterpret_cast<const unsigned char*>(p.meta) + size_t(strip0_blk + sl0w) * p.groups * 64;
        for (int i = lane; i < nsw * ng * 8; i += 32) {
            const int st = i / (ng * 8), r = i - st * (ng * 8);
            cp_async8_zfill(region + (size_t(sl0w + st) * ng) * 64 + size_t(r) * 8,
                            src + (size_t(st) * p.groups + g_lo) * 64 + size_t(r) * 8, true);
        }
        wst_msn = static_cast<uint32_t>(__cvta_generic_to_shared(region)) + (sl0w * ng * 8 + g) * 8;
        wst_m1 = uint32_t(ng) * 64;
        wst_mlast = wst_msn + uint32_t(ng - 1) * 64;
        // X columns [s_begin, s_end) x KSTEP of the M rows; piece i of this slice's (rows x cols / 8) among ppb warps.
        const T* x = static_cast<const T*>(p.x);
        const int c_lo = s_begin * KSTEP, cpr = (s_end - s_begin) * (KSTEP / 8);  // 8-column pieces per row
        const int tw = (warp / kw) * 32 + lane, nt = ppb * 32;
        for (int i = tw; i < p.m * cpr; i += nt) {
            const int r = i / cpr, c = c_lo + (i - r * cpr) * 8;
            T* d = xs + r * lds + c;
            if (p.x_vec) {
                const bool ok = c < p.k;
                cp_async16_zfill(d, ok ? static_cast<const void*>(x + size_t(r) * p.ldx + c) : p.x, ok);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) d[e] = c + e < p.k ? x[size_t(r) * p.ldx + c + e] : to_out<T>(0.f);
            }
        }
        cp_async_commit();
        cp_async_wait<0>();
        if (ppb > 1) {
            asm volatile("bar.sync %0, %1;\n" ::"r"(1 + slice), "r"(ppb * 32) : "memory");
        } else {
            __syncwarp();
        }
    }

    int gi = s_begin / spg, sig = s_begin - gi * spg;
    const int sl0 = 2 * (warp / kw);
    // Metadata addresses of this lane: strip sl0 (and sl0 + 1 at + m1 bytes), group gi.
    uint32_t msn = WST ? wst_msn : static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + ((sl0 * p.groups + gi) * 8 + g) * 8;
    const uint32_t m1 = WST ? wst_m1 : uint32_t(p.groups) * 64;
    // The one-ahead read's address: the warp-staged copy stops at the slice's last group (the block-wide one reads the
    // next strip's first group or the padding, both copied before its barrier).
    auto ahead = [&](uint32_t a) { return WST ? min(a, wst_mlast) : a; };
    uint2 c0 = ld_shared_u2(msn), c1 = ld_shared_u2(msn + m1);
    uint2 n0 = ld_shared_u2(ahead(msn + 64)), n1 = ld_shared_u2(ahead(msn + 64) + m1);
    msn += 128;
    GroupCtx x0, x1;
    Int4::template ctx<T>(c0.y, x0);
    Int4::template ctx<T>(c1.y, x1);

    float acc[2][4], accg[2][4];
#pragma unroll
    for (int s = 0; s < 2; ++s)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[s][e] = 0.f, accg[s][e] = 0.f;
    auto scale = [&]() {
        const float2 a0 = __half22float2(*reinterpret_cast<const __half2*>(&c0.x));
        const float2 a1 = __half22float2(*reinterpret_cast<const __half2*>(&c1.x));
        acc[0][0] += a0.x * accg[0][0], acc[0][1] += a0.x * accg[0][1], acc[0][2] += a0.y * accg[0][2], acc[0][3] += a0.y * accg[0][3];
        acc[1][0] += a1.x * accg[1][0], acc[1][1] += a1.x * accg[1][1], acc[1][2] += a1.y * accg[1][2], acc[1][3] += a1.y * accg[1][3];
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
            for (int e = 0; e < 4; ++e) accg[s][e] = 0.f;
    };
    auto flush = [&]() {
        scale();
        c0 = n0, c1 = n1;
        n0 = ld_shared_u2(ahead(msn)), n1 = ld_shared_u2(ahead(msn) + m1);
        msn += 64;
        Int4::template ctx<T>(c0.y, x0);
        Int4::template ctx<T>(c1.y, x1);
    };

    // ldmatrix row address of this lane (rows >= M: the zero line, which does not advance; warp-staged: row 0).
    const int r = lane & 7;
    const bool real_row = r < p.m || WST;
    const T* xb = real_row ? xs + (r < p.m ? r : 0) * lds + (lane >> 3) * 8 + s_begin * KSTEP : xs + p.m * lds + (lane >> 3) * 8;
    const int xstep = real_row ? KSTEP : 0;
    for (int s0 = s_begin; s0 < s_end; s0 += P) {
#pragma unroll
        for (int i = 0; i < P; ++i) {
            if (s0 + i < s_end) {
                uint32_t bf[2][4];
                ldmatrix_x4(bf[0], xb);
                ldmatrix_x4(bf[1], xb + 32);
#pragma unroll
                for (int j = 0; j < TS; ++j) {
                    uint32_t a[4];
                    Int4::template decode<T>(wb[i][0], nullptr, j, x0, a);
                    mma_m16n8k16<T>(accg[0], a, bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
                    Int4::template decode<T>(wb[i][1], nullptr, j, x1, a);
                    mma_m16n8k16<T>(accg[1], a, bf[j >> 1][(j & 1) * 2], bf[j >> 1][(j & 1) * 2 + 1]);
                }
                if (++sig == spg) {
                    sig = 0;
                    flush();
                }
                xb += xstep;
                load_w(i, std::false_type{});
            }
        }
    }
    if (sig != 0) scale();

    // In-block reduction: slices 1..kw-1 park their sums (the X region is dead after the barrier), slice 0 adds them.
    float* red = reinterpret_cast<float*>(smem);  // [kWarps][8][32]
    __syncthreads();
    if (slice != 0) {
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
            for (int e = 0; e < 4; ++e) red[(warp * 8 + s * 4 + e) * 32 + lane] = acc[s][e];
    }
    __syncthreads();
    if (slice != 0 || !act0) return;
    for (int o = 1; o < kw; ++o) {
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[s][e] += red[((warp + o) * 8 + s * 4 + e) * 32 + lane];
    }
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int n0r = (st0 + s) * 16 + g, n1r = n0r + 8;
        const float cs0 = p.chan && n0r < p.n ? p.chan[n0r] : 1.f, cs1 = p.chan && n1r < p.n ? p.chan[n1r] : 1.f;
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int n = e < 2 ? n0r : n1r;
            const int mm = 2 * (lane & 3) + (e & 1);
            if (mm < p.m && n < p.n) y[size_t(mm) * p.n + n] = to_out<T>(acc[s][e] * (e < 2 ? cs0 : cs1));
        }
    }
}

// The S2 plan: warps per strip pair (kw: 8, 4, 2 or 1), or 0 where S2 does not apply (M > 8, groups that are not whole
// k-steps, too little shared memory) or its blocks do not fit one wave of `minb` blocks per SM. The largest kw whose
// blocks fit one wave (shortest per-warp chains). force_kw > 0: that kw (if it fits shared memory).
inline int s2_plan_kw(int m, int strips, int ksteps, int gtiles, int groups, int sms, int minb, int smem_sm, int optin, int force_kw = 0,
                      bool wst = false) {
    if (m < 1 || m > 8 || gtiles % Int4::kTiles != 0) return 0;
    const int pairs = (strips + 1) / 2;
    for (int kw = kWarps; kw >= 1; kw /= 2) {
        if (force_kw > 0 && kw != force_kw) continue;
        const int ppb = kWarps / kw;
        const int64_t blocks = (pairs + ppb - 1) / ppb;
        const int64_t smem = int64_t(s2_smem_bytes(m, ksteps, groups, 2 * ppb, wst));
        if (smem > optin) continue;
        int64_t occ = int64_t(smem_sm) / (smem + 1024);
        occ = occ > minb ? minb : occ;
        if (occ < 1 || ksteps < kw) continue;
        if (force_kw > 0 || blocks <= occ * sms) return kw;
    }
    return 0;
}

template <typename T, int P, int MINB, bool WST = false>
cudaError_t launch_s2(const Args& a0, cudaStream_t s) {
    Args a = a0;
    a.kc = a.ksteps * Int4::kTiles * 16;
    a.steps_per_split = a.ksteps;
    const int ppb = kWarps / a.kw;
    const size_t smem = s2_smem_bytes(a.m, a.ksteps, a.groups, 2 * ppb, WST);
    auto kern = s2_kernel<T, P, MINB, WST>;
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (e != cudaSuccess) return e;
    }
    a.pdl_pf = pdl_prefetch_steps(P, 2);
    const int pairs = (a.strips + 1) / 2;
    return launch_pdl(kern, dim3((pairs + ppb - 1) / ppb), dim3(kThreads), smem, s, pdl_want(true), a);
}

}  // namespace wo
}  // namespace lowbit
