// lowbit/wo_ws2.cuh: warp-specialized persistent weight-only GEMM with a decoder role and shared-memory-operand
// wgmma (ws2) for M >= 128 on Hopper (sm_90a).
//
// Problem: as lowbit/wo_ws.cuh (same Args, same tiled weight layout, same arithmetic bit for bit: (q - z) exact in
//   the 16-bit type T, times the group scale rounded to T, one rounding; f32 accumulation; y = T(acc * chan[n])).
//   Y^T[N, M] = W[N, K] * X[M, K]^T: the decoded weight tile is wgmma's A operand (64 rows per consumer
//   warpgroup), the activation rows its N side (B, BX = 64 / 128 / 256 rows, m64nBXk16).
//
// Why a second kernel: ws v1 (register-A wgmma, each consumer warp decoding its own strip) measured ~0.5-0.84 us
//   per 64-column k-step and CTA on the H100 where the tensor cores need 0.13-0.52 us (BX 64-256): a large
//   per-step cost on top of the tensor time at every BX (NOTES.md, ws2). ws2 takes decoding off the consumers:
//   they only wait and issue shared-memory-operand wgmmas; decoding runs in other warps, up to 4 k-steps ahead.
//   **Measured: slower than v1** (0.58-0.72x cuBLAS f16 against v1's 0.67-0.97x at M = 256..4096; the one gain
//   is 8192x28672 at M = 256 with 2 K splits, 255 vs 271 us): ~1 us per k-step at every BX, i.e. the three
//   decoder warps (one per scheduler) set the pace. Kept for the harness (benches/micro/wo_ws2.cu, including
//   `diag` timings with the decode or the wgmmas switched off); not wired into the library plan.
//
// CTA = 3 warpgroups (384 threads), one CTA per SM, persistent over work units = (output tile, K split); output
//   tile = 128 weight rows (8 strips of the tiled layout) x BX activation rows; tiles numbered in raster groups of
//   `gm` activation tiles (M-fastest inside a group: the CTAs resident together share a few X panels in L2 and
//   each weight tile), K split `splits` ways (f32 partial sums added into p.ws; splits = 1 stores T directly):
//   warpgroup 0 (setmaxnreg.dec 96):
//     warp 0, one thread = producer: per k-step 8 bulk copies (512 B per strip, 4 KB) of the packed weight into
//       an 8-slot weight ring (wfull / wempty) and one 2-D TMA of a BX x 64-column box of X (128-byte swizzle,
//       zero fill outside) into a kSX-slot activation ring (xfull / xempty); the weights of step i + 5 are issued
//       before the activations of step i (two cursors over the CTA's (unit, k-step) sequence);
//     warps 1..3 = decoders: strips {w, w + 3, w + 6} of the tile per warp; per k-step wait wfull, one 16-byte
//       ld.shared of the lane's codes per strip, arrive wempty, wait dempty[d], register decode
//       (lowbit/wo_decode.cuh) + group scale, one stmatrix.x4 per 16x16 tile into decoded slot d of 4 (f16/bf16
//       128 rows x 64 columns, 16 KB, no-swizzle K-major core matrices: slab j = columns 16j..16j+15 at 4096 j,
//       core matrix (row / 8, (column / 8) % 2) at 256 (row / 8) + 128 ((column / 8) % 2)), fence.proxy.async,
//       arrive dfull[d];
//   warpgroups 1, 2 = consumers (setmaxnreg.inc 200), rows 64 cw .. 64 cw + 63 of the tile: wait xfull[s] and
//     dfull[d], four wgmma m64nBXk16 (A: no-swizzle descriptor, LBO 128 / SBO 256; B: 128B-swizzle descriptor of
//     the X box, +32 bytes per k16), commit, wait_group 1, release the previous step's X slot and decoded slot
//     (one arrive per consumer warp on xempty and dempty). Epilogue straight from the accumulators.
//   The decoder's stores are generic-proxy writes read by wgmma (async proxy): each decoder thread fences
//   (fence.proxy.async.shared::cta) before its arrive on dfull (count 96).
//
// Wide variant (template flag W, not yet run on a GPU): 640 threads = producer warpgroup (one thread), two decoder
//   warpgroups (8 warps, one strip each, two per scheduler: more decode in flight per k-step), two consumer
//   warpgroups; setmaxnreg 24 / 56 / 168. The 640-thread launch caps the kernel at 96 registers, too few for
//   wgmma m64n256 (ptxas C7602), so it exists for BX = 64 and 128 only.
//
// Limits: INT4 (Fmt::kTiles == 4, no high words, no tables); sm_90a; X 16-byte aligned with ldx % 8 == 0 and
// K % 8 == 0 (TMA); splits > 1 needs p.ws (f32 [M][N], zeroed) and a conversion afterwards (the harness's
// convert-and-clear kernel). The caller builds the tensor map (2-D {K, M}, box {64, BX}, 128-byte swizzle).
#pragma once

#include <cuda.h>

#include "lowbit/tma.cuh"
#include "lowbit/wo_wgmma.cuh"
#include "lowbit/wo_wgmma_ss.cuh"
#include "lowbit/wo_ws.cuh"  // the tile constants and effective_splits of ws v1 / ws-S

namespace lowbit {

namespace wows2 {

using wo::Args;

// The tile of ws v1 / ws-S: kStrips = 8 strips (128 weight rows) per tile, kBK = 64 K columns per stage (one k-step
// of the layout, one 128-byte f16 row of X), kWStage = 4 KB of packed weight per stage.
using wows::kStrips;
using wows::kBK;
using wows::kWStage;
constexpr int kDStage = 128 * kBK * 2;  // decoded weight bytes per stage (16 KB)
// Roles of the two variants. W = false (384 threads): warpgroup 0 = producer thread + 3 decoder warps (3 strips
// each), warpgroups 1-2 = consumers. W = true ("wide", 640 threads): warpgroup 0 = producer thread, warpgroups 1-2 =
// 8 decoder warps (one strip each, two per scheduler), warpgroups 3-4 = consumers.
// setmaxnreg moves registers inside the CTA's launch allocation (threads x the __launch_bounds__ cap: 384 x 168
// or 640 x 96): the warpgroups' new counts must fit in it or setmaxnreg.inc waits forever.
template <bool W>
struct Roles {
    static constexpr int kThreads = W ? 640 : 384;
    static constexpr int kDecWarps = W ? 8 : 3;
    static constexpr int kV = W ? 1 : 3;  // strips per decoder warp: strip dw + kDecWarps v
    static constexpr int kProdRegs = 24, kDecRegs = W ? 56 : 96, kConsRegs = W ? 168 : 200;
    static constexpr int kCap = W ? 96 : 168;
    static_assert(W ? kProdRegs + 2 * kDecRegs + 2 * kConsRegs <= 5 * kCap : kDecRegs + 2 * kConsRegs <= 3 * kCap,
                  "register pool of one CTA");
};

template <int BX>
struct Geo {
    static constexpr int kXStage = BX * 128;  // activation box bytes (multiple of 1024)
    static constexpr int kND = 4;             // decoded slots (16 KB each)
    static constexpr int kSW = 8;             // packed weight slots (4 KB each)
    // The producer issues the weight of step i + kLead before the activations of step i: the decoders work up
    // to kND steps ahead of the consumers.
    static constexpr int kLead = kND + 1;
    static constexpr int kBudget = 225 * 1024 - kND * kDStage - kSW * kWStage - 1024;
    static constexpr int kFit = kBudget / kXStage;
    static constexpr int kSX = kFit > 12 ? 12 : kFit;  // activation slots
    static_assert(kSX >= 3 && kLead <= kSW + kND - 1, "ring sizes");
    static constexpr int kSmem = kSX * kXStage + kSW * kWStage + kND * kDStage + 1024;  // + alignment slack
};

// Work unit u -> (weight tile nb, activation tile mb, K split sp). Units of one tile are adjacent (split fastest);
// tiles are numbered in groups of gm activation tiles, M-fastest inside a group.
__device__ __forceinline__ void unit_of(int u, int splits, int mt, int nt, int gm, int& nb, int& mb, int& sp) {
    const int t = u / splits;
    sp = u - t * splits;
    const int span = gm * nt;
    const int grp = t / span, r = t - grp * span;
    const int m0 = grp * gm;
    const int gsz = min(gm, mt - m0);
    const int q = r / gsz;
    mb = m0 + (r - q * gsz);
    nb = q;
}

// Walks a CTA's (unit, k-step) sequence: the producer keeps two of them (weights run kLead steps ahead).
struct Cursor {
    int u, ks, k1, nb, mb;
    __device__ __forceinline__ bool done(int total) const { return u >= total; }
    __device__ __forceinline__ void start(int unit, int total, int splits, int kper, int ksteps, int mt, int nt, int gm) {
        u = unit;
        if (u < total) {
            int sp;
            unit_of(u, splits, mt, nt, gm, nb, mb, sp);
            ks = sp * kper;
            k1 = min(ksteps, ks + kper);
        }
    }
    __device__ __forceinline__ void next(int total, int splits, int kper, int ksteps, int mt, int nt, int gm) {
        if (++ks == k1) start(u + gridDim.x, total, splits, kper, ksteps, mt, nt, gm);
    }
};

template <class Fmt, typename T, int BX, bool W = false>
__global__ void __launch_bounds__(Roles<W>::kThreads, 1) ws2_kernel(const __grid_constant__ Args p,
                                                           const __grid_constant__ CUtensorMap xmap, int gm,
                                                           int splits, int diag) {
#if defined(__CUDA_ARCH__)
#if !(__CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL))
    __trap();  // never launched: the launcher checks the kernel's PTX version first
#else
    static_assert(!Fmt::kHasHi && !Fmt::kIsLut && Fmt::kTiles == 4, "one 16-byte word group per lane and k-step");
    using G = Geo<BX>;
    using R = Roles<W>;
    constexpr int kDecWarps = R::kDecWarps, kV = R::kV;
    using namespace tma;
    constexpr int SX = G::kSX, SW = G::kSW, ND = G::kND;
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t xfull[SX], xempty[SX], wfull[SW], wempty[SW], dfull[ND], dempty[ND];
    const uint32_t raw = smem_u32(smem_raw);
    unsigned char* xring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    unsigned char* wring = xring + SX * G::kXStage;
    const uint32_t xring_a = smem_u32(xring);
    const uint32_t wring_a = xring_a + SX * G::kXStage;
    const uint32_t dec_a = wring_a + SW * kWStage;

    const int tid = threadIdx.x;
    const int wg = tid >> 7;
    if (tid == 0) {
        for (int s = 0; s < SX; ++s) {
            mbar_init(&xfull[s], 1);   // the producer's arrive.expect_tx (+ the box's bytes)
            mbar_init(&xempty[s], 8);  // one arrive per consumer warp
        }
        for (int s = 0; s < SW; ++s) {
            mbar_init(&wfull[s], 1);                    // the producer's arrive.expect_tx (+ the copies' bytes)
            mbar_init(&wempty[s], 32 * kDecWarps);      // every decoder thread, after its ld.shared
        }
        for (int d = 0; d < ND; ++d) {
            mbar_init(&dfull[d], 32 * kDecWarps);  // every decoder thread, after its proxy fence
            mbar_init(&dempty[d], 8);              // one arrive per consumer warp
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();

    const int mt = (p.m + BX - 1) / BX, nt = (p.strips + kStrips - 1) / kStrips;
    const int ksteps = p.ksteps;
    const int kper = (ksteps + splits - 1) / splits;
    const int total = nt * mt * splits;
    const int lane = tid & 31, warp = (tid >> 5) & 3;

    {
        auto producer = [&]() {
            // ------------------------------- producer -------------------------------
            // Order: W(0 .. kLead - 1), then X(j), W(j + kLead) for j = 0, 1, ... Every wait depends only on
            // earlier steps (X(j) on the consumers' step j - SX, W(j + kLead) on the decoders' step
            // j + kLead - SW, which needs the consumers' step j + kLead - SW - ND < j), so the order cannot deadlock.
            if (lane == 0) {
                Cursor wc, xc;
                wc.start(blockIdx.x, total, splits, kper, ksteps, mt, nt, gm);
                xc = wc;
                int sw = 0, sx = 0;
                uint32_t wph = 0, xph = 0;
                auto issue_w = [&]() {
                    mbar_wait(&wempty[sw], wph ^ 1);
                    const int s0 = wc.nb * kStrips;
                    const int ns = min(kStrips, p.strips - s0);
                    const uint32_t* wsrc = p.words + size_t(s0) * ksteps * 128 + size_t(wc.ks) * 128;
                    unsigned char* slot = wring + sw * kWStage;
                    mbar_expect_tx(&wfull[sw], ns * 512);
                    for (int i = 0; i < ns; ++i) bulk_g2s(slot + i * 512, wsrc + size_t(i) * ksteps * 128, 512, &wfull[sw]);
                    if (++sw == SW) sw = 0, wph ^= 1;
                    wc.next(total, splits, kper, ksteps, mt, nt, gm);
                };
                for (int i = 0; i < G::kLead && !wc.done(total); ++i) issue_w();
                while (!xc.done(total)) {
                    mbar_wait(&xempty[sx], xph ^ 1);
                    mbar_expect_tx(&xfull[sx], G::kXStage);
                    tma_2d_g2s(xring + sx * G::kXStage, &xmap, xc.ks * kBK, xc.mb * BX, &xfull[sx]);
                    if (++sx == SX) sx = 0, xph ^= 1;
                    xc.next(total, splits, kper, ksteps, mt, nt, gm);
                    if (!wc.done(total)) issue_w();
                }
            }
        };
        auto decoder = [&](const int dw) {
            // ------------------------------- decoders -------------------------------
            const int g = lane >> 2;
            // stmatrix row address of this lane inside a strip's 16x16 tile: matrix q = lane / 8 holds
            // (rows 8 (q & 1) .., columns 8 (q >> 1) ..), its row lane % 8 at 16 bytes.
            const uint32_t lane_st = ((lane >> 3) & 1) * 256 + (lane >> 4) * 128 + (lane & 7) * 16;
            int sw = 0, d = 0;
            uint32_t wph = 0, dphase = 0;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                int nb, mb, sp;
                unit_of(u, splits, mt, nt, gm, nb, mb, sp);
                const int k0 = sp * kper, k1 = min(ksteps, k0 + kper);
                bool act[kV];
                const uint2* meta[kV];
                uint2 cur[kV], nxt[kV];
                wo::GroupCtx ctx[kV];
                uint32_t sg[kV], sg8[kV];
                const int t0 = k0 * 4;  // first 16-column tile of the split
                int gi = t0 / p.gtiles, tig = t0 - gi * p.gtiles;
#pragma unroll
                for (int v = 0; v < kV; ++v) {
                    const int i = dw + kDecWarps * v;
                    const int strip = nb * kStrips + i;
                    act[v] = i < kStrips && strip < p.strips;
                    meta[v] = reinterpret_cast<const uint2*>(p.meta) + size_t(act[v] ? strip : 0) * p.groups * 8 + g;
                    cur[v] = (act[v] && gi < p.groups) ? __ldg(meta[v] + size_t(gi) * 8) : make_uint2(0, 0);
                    nxt[v] = (act[v] && gi + 1 < p.groups) ? __ldg(meta[v] + size_t(gi + 1) * 8) : make_uint2(0, 0);
                    Fmt::template ctx<T>(cur[v].y, ctx[v]);
                    wo::scale_pairs<T>(cur[v].x, sg[v], sg8[v]);
                }
                for (int ks = k0; ks < k1; ++ks) {
                    mbar_wait(&wfull[sw], wph);
                    const uint32_t wa = wring_a + sw * kWStage + lane * 16;
                    uint32_t wb[kV][4];
#pragma unroll
                    for (int v = 0; v < kV; ++v) {
                        if (act[v]) {
                            asm volatile("ld.shared.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                                         : "=r"(wb[v][0]), "=r"(wb[v][1]), "=r"(wb[v][2]), "=r"(wb[v][3])
                                         : "r"(wa + (dw + kDecWarps * v) * 512)
                                         : "memory");
                        }
                    }
                    mbar_arrive(&wempty[sw]);  // the codes are in registers: the packed slot may be refilled
                    if (++sw == SW) sw = 0, wph ^= 1;
                    mbar_wait(&dempty[d], dphase ^ 1);
                    const uint32_t da = dec_a + d * kDStage + lane_st;
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        if (diag == 1) break;
#pragma unroll
                        for (int v = 0; v < kV; ++v) {
                            if (act[v]) {
                                uint32_t a[4], o[4];
                                Fmt::template decode<T>(wb[v], nullptr, j, ctx[v], a);
                                o[0] = wo::mul_pair<T>(a[0], sg[v]);
                                o[1] = wo::mul_pair<T>(a[1], sg8[v]);
                                o[2] = wo::mul_pair<T>(a[2], sg[v]);
                                o[3] = wo::mul_pair<T>(a[3], sg8[v]);
                                stmatrix_x4(da + j * 4096 + (dw + kDecWarps * v) * 512, o);
                            }
                        }
                        if (++tig == p.gtiles) {
                            tig = 0;
                            ++gi;
#pragma unroll
                            for (int v = 0; v < kV; ++v) {
                                cur[v] = nxt[v];
                                nxt[v] = (act[v] && gi + 1 < p.groups) ? __ldg(meta[v] + size_t(gi + 1) * 8)
                                                                       : make_uint2(0, 0);
                                Fmt::template ctx<T>(cur[v].y, ctx[v]);
                                wo::scale_pairs<T>(cur[v].x, sg[v], sg8[v]);
                            }
                        }
                    }
                    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
                    mbar_arrive(&dfull[d]);
                    if (++d == ND) d = 0, dphase ^= 1;
                }
            }
        };
        auto consumer = [&](const int cw) {  // weight rows 64 cw .. 64 cw + 63 of the tile
        // ------------------------------- consumers -------------------------------
        const int g = lane >> 2;
        int s = 0, d = 0;
        uint32_t phase = 0, dphase = 0;
        float acc[BX / 2];
        for (int u = blockIdx.x; u < total; u += gridDim.x) {
            int nb, mb, sp;
            unit_of(u, splits, mt, nt, gm, nb, mb, sp);
            const int k0 = sp * kper, k1 = min(ksteps, k0 + kper);
            int prev_s = -1, prev_d = -1;
            for (int ks = k0; ks < k1; ++ks) {
                mbar_wait(&xfull[s], phase);
                mbar_wait(&dfull[d], dphase);
                const uint32_t xa = xring_a + s * G::kXStage;
                const uint32_t aa = dec_a + d * kDStage + cw * 2048;
                if (diag != 2) {
                    wgmma_fence();
#pragma unroll
                    for (int j = 0; j < 4; ++j) {
                        wgmma_ss<T, BX>(acc, desc_ns(aa + j * 4096, 128, 256), desc_sw128(xa + 32 * j), ks > k0 || j > 0);
                    }
                    wgmma_commit();
                    wgmma_wait<1>();
                }
                // The previous step's group has completed: its X slot and decoded slot may be refilled.
                if (prev_s >= 0 && lane == 0) {
                    mbar_arrive(&xempty[prev_s]);
                    mbar_arrive(&dempty[prev_d]);
                }
                prev_s = s, prev_d = d;
                if (++s == SX) s = 0, phase ^= 1;
                if (++d == ND) d = 0, dphase ^= 1;
            }
            wgmma_wait<0>();
            wgmma_fence_regs(acc);
            if (prev_s >= 0 && lane == 0) {
                mbar_arrive(&xempty[prev_s]);
                mbar_arrive(&dempty[prev_d]);
            }
            const int strip = nb * kStrips + cw * 4 + warp;
            if (strip < p.strips && k1 > k0) {
                const int n0 = strip * 16 + g, n1 = n0 + 8;
                const float cs0 = p.chan ? p.chan[n0 < p.n ? n0 : 0] : 1.f, cs1 = p.chan ? p.chan[n1 < p.n ? n1 : 0] : 1.f;
                wo::store_strip<T, BX>(p, acc, n0, cs0, cs1, mb * BX, lane, splits != 1);
            }
        }
        };
        // One setmaxnreg per warpgroup role, each role one branch.
        if (wg == 0) {
            if constexpr (W) {
                setmaxnreg_dec<R::kProdRegs>();
                if (warp == 0 && lane == 0) producer();
            } else {
                setmaxnreg_dec<R::kDecRegs>();
                if (warp == 0) {
                    if (lane == 0) producer();
                } else {
                    decoder(warp - 1);
                }
            }
        } else if (W && wg <= 2) {
            setmaxnreg_dec<R::kDecRegs>();
            decoder((wg - 1) * 4 + warp);
        } else {
            setmaxnreg_inc<R::kConsRegs>();
            consumer(wg - (W ? 3 : 1));
        }
    }
#endif
#endif
}

template <class Fmt, typename T, int BX, bool W = false>
bool available() {
    cudaFuncAttributes attr{};
    if (cudaFuncGetAttributes(&attr, ws2_kernel<Fmt, T, BX, W>) != cudaSuccess) return false;
    return attr.ptxVersion >= 90;
}

// K splits as launched: at least one k-step per split (so 1 when ksteps is small); the same K partition as ws-S.
using wows::effective_splits;

// Work units of a launch (tiles x splits).
inline int64_t units(const Args& a, int bx, int splits) {
    return int64_t((a.strips + kStrips - 1) / kStrips) * ((a.m + bx - 1) / bx) * splits;
}

// Launch with a prepared tensor map of X (2-D {K, M}, box {64, BX}, 128-byte swizzle, 16-bit elements).
// gm: raster group in activation tiles (>= 1); splits: K splits (>= 1; > 1 adds f32 partials into a.ws, which
// the caller zeroed). splits is clamped so that every split has at least one k-step.
// diag (measurements only, wrong results): 1 = the decoders skip decoding (barriers only), 2 = the consumers
// skip their wgmmas.
template <class Fmt, typename T, int BX, bool W = false>
cudaError_t launch(const Args& a, const CUtensorMap& xmap, int nsm, int gm, int splits, cudaStream_t st,
                   int diag = 0) {
    constexpr int smem = Geo<BX>::kSmem;
    cudaError_t e =
        cudaFuncSetAttribute(ws2_kernel<Fmt, T, BX, W>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    if (splits < 1 || gm < 1) return cudaErrorInvalidValue;
    splits = effective_splits(a, splits);
    if (splits > 1 && a.ws == nullptr) return cudaErrorInvalidValue;
    const int64_t n = units(a, BX, splits);
    const int grid = int(n < nsm ? n : nsm);
    ws2_kernel<Fmt, T, BX, W><<<grid, Roles<W>::kThreads, smem, st>>>(a, xmap, gm, splits, diag);
    return cudaGetLastError();
}

}  // namespace wows2
}  // namespace lowbit
