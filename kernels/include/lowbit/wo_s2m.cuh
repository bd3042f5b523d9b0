// S2M (weight-only NOTES.md v20): the S2 structure (lowbit/wo_s2.cuh, two 16-row strips per warp) for M = 9..16.
// INT4, groups of whole k-steps (g64 / g128 / per-channel). Not the library default: LOWBIT_WO_S2M=1 selects it at
// M = 9..16 (wo_launch.cu s2m_choice); harness `s2mcheck` / `WO_S2M_AB=1 sweep` (benches/micro/wo_small_m.cu).
//
//   block = NW warps = NW / kw strip pairs x kw warps per pair; grid = (blocks of NW / kw pairs) x splits. A block
//   takes the K range [y * sps, y * sps + sps) of its pairs (split-K across blocks: f32 atomics into the zeroed
//   workspace and the library's convert kernel after, as gemm_kernel; splits = 1: a direct store), its kw warps per
//   pair near-equal shares of that range (in-block split-K, reduced in shared memory as S2).
//   X: the M (<= 16) real rows of the block's K range staged once per block (16-byte cp.async), ldmatrix lanes of rows
//   >= M read a zero line; per k-step four ldmatrix.x4 (two n8 halves of M x 2 tile pairs) feed 16 MMAs (2 strips x
//   4 tiles x 2 halves): ldmatrix per weight byte half of the one-warp-per-strip kernel's, and each warp runs two
//   independent strip chains (4 accumulator sets) instead of one.
//   NW = 16 (512 weight rows per block, one block of 16 warps per SM at <= 128 registers): the block's X is staged
//   once per 512 weight rows, half the X staging and X reads from L2 per weight byte of the shipped 256-row block
//   (v14); NW = 8: 256 rows per block (the shipped block's X traffic), two blocks per SM.
//   Metadata: the block's strips' groups of its K range copied into shared memory with X ([strip][group] x 64 bytes
//   + 128 bytes of padding), flushes read the next group's pairs one group ahead (LDS.64), as S2.
//   Weights: each lane streams 16 bytes per k-step of both strips, P k-steps ahead; PDL as gemm_kernel / S2.
#pragma once

#include "lowbit/wo_s2.cuh"

namespace lowbit {
namespace wo {

// Metadata groups per strip held in shared memory for a K range of sps k-steps (spg k-steps per group): the most
// groups such a range touches at any offset, at most the weight's groups.
__host__ __device__ inline int s2m_meta_groups(int sps, int spg, int groups) {
    const int g = (sps + spg - 1) / spg + 1;
    return g < groups ? g : groups;
}
__host__ __device__ inline int64_t s2m_meta_bytes(int strips_pb, int mg) { return (int64_t(strips_pb) * mg * 64 + 128 + 15) / 16 * 16; }
// Shared memory of an S2M block: metadata, the M rows of X over sps k-steps (+ 8 columns of padding per row), the
// zero line; at least the in-block reduction's NW x 16 x 32 floats.
inline size_t s2m_smem_bytes(int m, int sps, int spg, int groups, int strips_pb, int nw) {
    const size_t x = size_t(s2m_meta_bytes(strips_pb, s2m_meta_groups(sps, spg, groups))) +
                     size_t(m) * (size_t(sps) * 64 + 8) * 2 + 128;
    const size_t red = size_t(nw) * 16 * 32 * 4;
    return x > red ? x : red;
}

template <typename T, int P, int MINB, int NW>
__global__ void __launch_bounds__(NW * 32, MINB) s2m_kernel(const Args p) {
    constexpr int TS = Int4::kTiles, KSTEP = TS * 16, NT = NW * 32;
    extern __shared__ __align__(128) unsigned char smem[];
    const int kw = p.kw, ppb = NW / kw;
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2;
    const int pair = blockIdx.x * ppb + warp / kw;
    const int st0 = 2 * pair;
    const bool act0 = st0 < p.strips, act1 = st0 + 1 < p.strips;
    const int slice = warp % kw;
    const int spg = p.gtiles / TS;  // k-steps per group (the launcher: gtiles % TS == 0)
    const int sps = p.steps_per_split;
    const int b_begin = blockIdx.y * sps, b_end = min(p.ksteps, b_begin + sps), nb = b_end - b_begin;
    const int s_begin = b_begin + nb * slice / kw, s_end = b_begin + nb * (slice + 1) / kw;
    const int g_lo = b_begin / spg, ng = (b_end - 1) / spg + 1 - g_lo;  // the block's groups [g_lo, g_lo + ng)
    const int strip0_blk = 2 * blockIdx.x * ppb;                         // first strip of the block
    const int nst = min(2 * ppb, p.strips - strip0_blk);                 // its real strips
    const int64_t meta_b = s2m_meta_bytes(2 * ppb, s2m_meta_groups(sps, spg, p.groups));
    T* xs = reinterpret_cast<T*>(smem + meta_b);
    const int lds = p.kc + 8;  // (p.kc = sps * KSTEP)

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

    {
        // Metadata of the block's strips, groups [g_lo, g_lo + ng) ([strip][ng] x 64 bytes), and X rows [0, M) x the
        // block's K range, one commit group, one barrier.
        const unsigned char* src = reinterpret_cast<const unsigned char*>(p.meta) + (size_t(strip0_blk) * p.groups + g_lo) * 64;
        const int per = ng * 8;
        for (int i = threadIdx.x; i < nst * per; i += NT) {
            const int st = i / per, r = i - st * per;
            cp_async8_zfill(smem + size_t(i) * 8, src + size_t(st) * p.groups * 64 + size_t(r) * 8, true);
        }
        const T* x = static_cast<const T*>(p.x);
        const int pieces = p.kc / 8, c0 = b_begin * KSTEP;
        for (int i = threadIdx.x; i < p.m * pieces; i += NT) {
            const int r = i / pieces, c = (i - r * pieces) * 8, gk = c0 + c;
            T* d = xs + r * lds + c;
            if (p.x_vec) {
                const bool ok = gk < p.k;
                cp_async16_zfill(d, ok ? static_cast<const void*>(x + size_t(r) * p.ldx + gk) : p.x, ok);
            } else {
#pragma unroll
                for (int e = 0; e < 8; ++e) d[e] = gk + e < p.k ? x[size_t(r) * p.ldx + gk + e] : to_out<T>(0.f);
            }
        }
        cp_async_commit();
        uint32_t* zl = reinterpret_cast<uint32_t*>(xs + p.m * lds);
        for (int i = threadIdx.x; i < KSTEP / 2; i += NT) zl[i] = 0u;
        // (the copy's padding: read by the one-ahead metadata load of the block's last strip)
        uint32_t* pad = reinterpret_cast<uint32_t*>(smem + size_t(nst) * ng * 64);
        if (threadIdx.x < 32) pad[threadIdx.x] = 0u;
        cp_async_wait<0>();
        __syncthreads();
    }

    int sig = s_begin % spg;
    const int sl0 = 2 * (warp / kw);
    // Metadata addresses of this lane: strip sl0 (and sl0 + 1 at + m1 bytes), group s_begin / spg.
    uint32_t msn = static_cast<uint32_t>(__cvta_generic_to_shared(smem)) + ((sl0 * ng + s_begin / spg - g_lo) * 8 + g) * 8;
    const uint32_t m1 = uint32_t(ng) * 64;
    uint2 c0 = ld_shared_u2(msn), c1 = ld_shared_u2(msn + m1);
    uint2 n0 = ld_shared_u2(msn + 64), n1 = ld_shared_u2(msn + 64 + m1);
    msn += 128;
    GroupCtx x0, x1;
    Int4::template ctx<T>(c0.y, x0);
    Int4::template ctx<T>(c1.y, x1);

    // acc[strip][half][e]: half h = MMA columns (rows of M) 8h .. 8h + 7.
    float acc[2][2][4], accg[2][2][4];
#pragma unroll
    for (int s = 0; s < 2; ++s)
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 4; ++e) acc[s][h][e] = 0.f, accg[s][h][e] = 0.f;
    auto scale = [&]() {
        const float2 a0 = __half22float2(*reinterpret_cast<const __half2*>(&c0.x));
        const float2 a1 = __half22float2(*reinterpret_cast<const __half2*>(&c1.x));
#pragma unroll
        for (int h = 0; h < 2; ++h) {
            acc[0][h][0] += a0.x * accg[0][h][0], acc[0][h][1] += a0.x * accg[0][h][1];
            acc[0][h][2] += a0.y * accg[0][h][2], acc[0][h][3] += a0.y * accg[0][h][3];
            acc[1][h][0] += a1.x * accg[1][h][0], acc[1][h][1] += a1.x * accg[1][h][1];
            acc[1][h][2] += a1.y * accg[1][h][2], acc[1][h][3] += a1.y * accg[1][h][3];
        }
#pragma unroll
        for (int s = 0; s < 2; ++s)
#pragma unroll
            for (int h = 0; h < 2; ++h)
#pragma unroll
                for (int e = 0; e < 4; ++e) accg[s][h][e] = 0.f;
    };
    auto flush = [&]() {
        scale();
        c0 = n0, c1 = n1;
        n0 = ld_shared_u2(msn), n1 = ld_shared_u2(msn + m1);
        msn += 64;
        Int4::template ctx<T>(c0.y, x0);
        Int4::template ctx<T>(c1.y, x1);
    };

    // ldmatrix row addresses of this lane: row r (half 0) and r + 8 (half 1); rows >= M read the zero line, which does
    // not advance.
    const int r = lane & 7;
    const int coff = (lane >> 3) * 8;
    const T* zline = xs + p.m * lds + coff;
    const int soff = (s_begin - b_begin) * KSTEP;
    const T* xb0 = r < p.m ? xs + r * lds + coff + soff : zline;
    const T* xb1 = r + 8 < p.m ? xs + (r + 8) * lds + coff + soff : zline;
    const int xstep0 = r < p.m ? KSTEP : 0, xstep1 = r + 8 < p.m ? KSTEP : 0;
    for (int s0 = s_begin; s0 < s_end; s0 += P) {
#pragma unroll
        for (int i = 0; i < P; ++i) {
            if (s0 + i < s_end) {
                uint32_t bf[2][2][4];  // [half][tile pair][4]
                ldmatrix_x4(bf[0][0], xb0);
                ldmatrix_x4(bf[1][0], xb1);
                ldmatrix_x4(bf[0][1], xb0 + 32);
                ldmatrix_x4(bf[1][1], xb1 + 32);
#pragma unroll
                for (int j = 0; j < TS; ++j) {
                    const int q = j >> 1, o = (j & 1) * 2;
                    uint32_t a[4];
                    Int4::template decode<T>(wb[i][0], nullptr, j, x0, a);
                    mma_m16n8k16<T>(accg[0][0], a, bf[0][q][o], bf[0][q][o + 1]);
                    mma_m16n8k16<T>(accg[0][1], a, bf[1][q][o], bf[1][q][o + 1]);
                    Int4::template decode<T>(wb[i][1], nullptr, j, x1, a);
                    mma_m16n8k16<T>(accg[1][0], a, bf[0][q][o], bf[0][q][o + 1]);
                    mma_m16n8k16<T>(accg[1][1], a, bf[1][q][o], bf[1][q][o + 1]);
                }
                if (++sig == spg) {
                    sig = 0;
                    flush();
                }
                xb0 += xstep0;
                xb1 += xstep1;
                load_w(i, std::false_type{});
            }
        }
    }
    if (sig != 0) scale();

    if (kw > 1) {
        // In-block reduction: slices 1..kw-1 park their sums (the X region is dead after the barrier), slice 0 adds them.
        float* red = reinterpret_cast<float*>(smem);  // [NW][16][32]
        __syncthreads();
        if (slice != 0) {
#pragma unroll
            for (int s = 0; s < 2; ++s)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int e = 0; e < 4; ++e) red[(warp * 16 + s * 8 + h * 4 + e) * 32 + lane] = acc[s][h][e];
        }
        __syncthreads();
        if (slice != 0) return;
        for (int o = 1; o < kw; ++o) {
#pragma unroll
            for (int s = 0; s < 2; ++s)
#pragma unroll
                for (int h = 0; h < 2; ++h)
#pragma unroll
                    for (int e = 0; e < 4; ++e) acc[s][h][e] += red[((warp + o) * 16 + s * 8 + h * 4 + e) * 32 + lane];
        }
    }
    if (!act0) return;
    T* y = static_cast<T*>(p.y);
#pragma unroll
    for (int s = 0; s < 2; ++s) {
        const int n0r = (st0 + s) * 16 + g, n1r = n0r + 8;
        const float cs0 = p.chan && n0r < p.n ? p.chan[n0r] : 1.f, cs1 = p.chan && n1r < p.n ? p.chan[n1r] : 1.f;
#pragma unroll
        for (int h = 0; h < 2; ++h)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int n = e < 2 ? n0r : n1r;
                const int mm = 8 * h + 2 * (lane & 3) + (e & 1);
                const float v = acc[s][h][e] * (e < 2 ? cs0 : cs1);
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

// The S2M plan for NW-warp blocks at `minb` blocks per SM: kw (warps per strip pair) and the K split (splits blocks
// of sps k-steps along K). Among the (kw, splits) whose blocks fit shared memory at `minb` per SM and give every warp
// at least 4 k-steps, the first (kw ascending, splits ascending) whose waves are filled best (a last wave that is
// nearly empty costs a whole wave; 3% tolerance: 8192x28672 at NW = 16 takes 8 splits of 56 k-steps, 0.97 of a
// wave, not 41 splits of 11 k-steps, 0.99 of 5 waves). force_kw / force_splits > 0: those
// (if they fit). Returns false where S2M does not apply (M outside 1..16, groups that are not whole k-steps) or no
// plan fits.
inline bool s2m_plan(int m, int strips, int ksteps, int gtiles, int groups, int sms, int nw, int minb, int smem_sm, int optin,
                     int force_kw, int force_splits, int& kw_out, int& splits_out, int& sps_out) {
    if (m < 1 || m > 16 || gtiles % Int4::kTiles != 0 || ksteps < 1) return false;
    const int spg = gtiles / Int4::kTiles;
    const int pairs = (strips + 1) / 2;
    double best = -1;
    for (int kw = 1; kw <= nw && kw <= 8; kw *= 2) {
        if (force_kw > 0 && kw != force_kw) continue;
        const int ppb = nw / kw;
        const int64_t nblk = (pairs + ppb - 1) / ppb;
        for (int c = 1; c <= ksteps; ++c) {
            if (force_splits > 0 && c != force_splits) continue;
            const int sps = (ksteps + c - 1) / c, real = (ksteps + sps - 1) / sps;
            if (real != c) continue;
            if (force_splits <= 0 && sps < 4 * kw) break;  // (sps only shrinks from here)
            const int64_t smem = int64_t(s2m_smem_bytes(m, sps, spg, groups, 2 * ppb, nw));
            if (smem > optin) continue;
            const int64_t occ = int64_t(smem_sm) / (smem + 1024);
            if (occ < (force_splits > 0 || force_kw > 0 ? 1 : minb)) continue;
            const double slots = double(occ < minb ? occ : minb) * sms;
            const double waves = double(nblk * c) / slots;
            const double eff = waves / std::ceil(waves);
            if (eff > best + 0.03) {
                best = eff;
                kw_out = kw, splits_out = c, sps_out = sps;
            }
        }
    }
    return best > 0;
}

// Launch with a.kw and a.steps_per_split from s2m_plan and `splits` blocks along K (splits > 1: a.ws = the zeroed
// f32 workspace, and the caller runs the convert kernel after).
template <typename T, int P, int MINB, int NW>
cudaError_t launch_s2m(const Args& a0, int splits, cudaStream_t s) {
    Args a = a0;
    a.kc = a.steps_per_split * Int4::kTiles * 16;
    if (splits <= 1) a.ws = nullptr;
    const int ppb = NW / a.kw;
    const int spg = a.gtiles / Int4::kTiles;
    const size_t smem = s2m_smem_bytes(a.m, a.steps_per_split, spg, a.groups, 2 * ppb, NW);
    auto kern = s2m_kernel<T, P, MINB, NW>;
    if (smem > 48 * 1024) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem));
        if (e != cudaSuccess) return e;
    }
    a.pdl_pf = pdl_prefetch_steps(P, 2);
    const int pairs = (a.strips + 1) / 2;
    return launch_pdl(kern, dim3((pairs + ppb - 1) / ppb, splits), dim3(NW * 32), smem, s, pdl_want(true), a);
}

}  // namespace wo
}  // namespace lowbit
