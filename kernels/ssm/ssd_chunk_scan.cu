// Mamba2 SSD (state-space duality) prefill scan with int8 inputs: lowbit_ssd_chunk_scan.
//
// Math (head h of H, its group g = h / (H / G), token t of L, channel p of P, state n of N):
//   delta_t = clamp(softplus(dt_q[t] * dt_scale + dt_bias[h]), dt_lo, dt_hi)     (fp32)
//   h_t[p, n] = exp(delta_t * A[h]) * h_{t-1}[p, n] + delta_t * x_t[p] * B_t[n]   (fp32 state)
//   y_t[p] = sum_n h_t[p, n] * C_t[n] + D[h] * x_t[p]
// with x = x_q * x_scale[h * P + p], B = B_q * B_scale[g], C = C_q * C_scale[g].
//
// Algorithm: the chunked SSD form. Tokens go in chunks of Q (64, or 32 for N > 128). Inside a chunk, with
// a_s = delta_s * A[h] and the fp32 inclusive cumulative sum acum[t] = sum_{s <= t} a_s ("segsum": the decay
// from s to t is exp(acum[t] - acum[s]) <= 1):
//   S[t, s]  = (C_t . B_s) * exp(acum[t] - acum[s]) * delta_s        for s <= t, else 0     (tensor cores)
//   y_t[p]   = exp(acum[t]) * (C_t . h_prev[p, :]) + sum_s S[t, s] x_s[p] + D x_t[p]    (tensor cores)
//   h_new[p] = exp(acum[Q-1]) h_prev[p] + sum_s exp(acum[Q-1] - acum[s]) delta_s x_s[p] B_s   (tensor cores)
// and the state is passed from chunk to chunk in fp32 registers.
//
// Partitioning: one CTA (4 warps) per (channel block of 32 channels, head, batch); it walks the chunks of its
// sequence in order, so the state never leaves the SM. Per chunk the int8 C, B, x tiles are loaded once into
// shared memory as f16 *codes* (exact: |code| <= 127), so C.B is exact in the fp32 accumulator and the scales
// are applied in fp32 afterwards. Warp w computes S and y for token rows 16w..16w+15 (m16n8k16 mma.sync, f16 in,
// fp32 accumulate; ldmatrix for every fragment); for the state update warp w owns channel rows 16(w&1).. and
// half of the N columns, and keeps that [16 x NMAX/2] fp32 state tile in its accumulator registers.
// Loads: variant ASYNC (16-byte rows of x, B, C) stages the next chunk's int8 tiles with cp.async into a raw
// shared buffer while the current chunk computes, then converts them to f16 codes in shared memory; variant
// DIRECT loads each chunk's tiles from global memory at its start (any layout).
// Operands rounded to f16: S (values), the state h_prev for the C . h_prev product, and x_q * w_s for the state
// update (relative 2^-11 each); everything else is fp32.
//
// Limits: 1 <= N <= 256 (zero-padded to 64, 128 or 256 columns), any P (masked in blocks of 32), any L (the
// last chunk is padded with delta = 0 tokens, which leave the state unchanged), H % G == 0, B and H <= 65535.
// |state| must stay below 65504 (it passes through f16 for the C . h_prev product). Shared memory: 58 KB
// (N <= 128) or 56 KB (N <= 256, chunks of 32) per CTA, +10 / 18 / 17 KB of staging for ASYNC.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "ssd_common.cuh"
#include "lowbit_kernels.h"

namespace {

using lowbit::ssd::SsdParams;
using lowbit::ssd::delta_of;

constexpr int kThreads = 128;
constexpr int kPb = 32;  // channels per CTA

template <int NMAX, int Q>
struct Cfg {
    static constexpr int kNP = NMAX + 8;  // row pitches in halfs: +16 bytes keeps ldmatrix conflict-free
    static constexpr int kXP = kPb + 8;
    static constexpr int kSP = Q + 8;
    static constexpr int kCs = 0;                    // C codes  [Q][kNP]
    static constexpr int kBs = kCs + Q * kNP;        // B codes  [Q][kNP]
    static constexpr int kXs = kBs + Q * kNP;        // x codes  [Q][kXP]
    static constexpr int kHs = kXs + Q * kXP;        // h_prev   [kPb][kNP] (f16 values)
    static constexpr int kSs = kHs + kPb * kNP;      // S        [Q][kSP]   (f16 values)
    static constexpr int kHalfs = kSs + Q * kSP;
    static constexpr int kBytes = kHalfs * 2 + 2 * Q * 4;  // + acum[Q], delta[Q] (fp32)
    // ASYNC variant: raw int8 staging of the next chunk (cp.async), [Q][NMAX] C and B, [Q][kPb] x.
    static constexpr int kRawBytes = 2 * Q * NMAX + Q * kPb;
    static_assert(Q % 32 == 0 && Q <= 64 && NMAX % 64 == 0, "tile shape");
};

__device__ __forceinline__ uint32_t smem_u32(const void* p) {
    return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

__device__ __forceinline__ void ldsm_x4(uint32_t (&r)[4], const __half* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void ldsm_x4_t(uint32_t (&r)[4], const __half* p) {
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(smem_u32(p)));
}

__device__ __forceinline__ void cp_async16(void* dst, const void* src) {
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(dst)), "l"(src));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_group 0;\n" ::: "memory"); }

// c += a (16x16, row-major) * b (16x8, col-major); f16 in, fp32 accumulate.
__device__ __forceinline__ void mma16816(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

__device__ __forceinline__ uint32_t h2_bits(__half2 v) { return *reinterpret_cast<uint32_t*>(&v); }
__device__ __forceinline__ __half2 bits_h2(uint32_t v) { return *reinterpret_cast<__half2*>(&v); }

// rows [rows] of `cols` int8 codes (row r at src + r * stride) -> f16 codes in dst [rows][pitch], zero beyond
// `valid_rows` rows and `cols` columns up to `width`. vec: 16-byte loads (cols % 16 == 0, src 16-byte aligned).
__device__ __forceinline__ void load_codes(__half* dst, int pitch, const int8_t* src, int64_t stride, int rows,
                                           int valid_rows, int cols, int width, bool vec) {
    if (vec) {
        const int per_row = width / 16;
        for (int i = threadIdx.x; i < rows * per_row; i += kThreads) {
            const int r = i / per_row, c = (i % per_row) * 16;
            int4 v = make_int4(0, 0, 0, 0);
            if (r < valid_rows && c < cols) v = *reinterpret_cast<const int4*>(src + r * stride + c);
            const int8_t* q = reinterpret_cast<const int8_t*>(&v);
            uint32_t o[8];
#pragma unroll
            for (int j = 0; j < 8; ++j) o[j] = h2_bits(__halves2half2(__int2half_rn(q[2 * j]), __int2half_rn(q[2 * j + 1])));
            uint4* d = reinterpret_cast<uint4*>(dst + r * pitch + c);
            d[0] = make_uint4(o[0], o[1], o[2], o[3]);
            d[1] = make_uint4(o[4], o[5], o[6], o[7]);
        }
    } else {
        for (int i = threadIdx.x; i < rows * width; i += kThreads) {
            const int r = i / width, c = i % width;
            const int v = (r < valid_rows && c < cols) ? src[r * stride + c] : 0;
            dst[r * pitch + c] = __int2half_rn(v);
        }
    }
}

// Starts 16-byte cp.async copies of `valid_rows` rows x `cols` int8 codes (cols % 16 == 0, 16-byte aligned rows)
// into raw [rows][width]; rows / columns beyond stay stale and are zeroed by the conversion (load_codes).
__device__ __forceinline__ void issue_raw(int8_t* raw, const int8_t* src, int64_t stride, int valid_rows, int cols,
                                          int width) {
    const int per_row = width / 16;
    for (int i = threadIdx.x; i < valid_rows * per_row; i += kThreads) {
        const int r = i / per_row, c = (i % per_row) * 16;
        if (c < cols) cp_async16(raw + r * width + c, src + r * stride + c);
    }
}

// ASYNC = true: the next chunk's int8 tiles are copied with cp.async into a raw staging buffer while the current
// chunk computes (and its dt codes loaded into a register), hiding the global-load latency; needs the 16-byte
// paths (vec_bc and vec_x). ASYNC = false: direct loads at the start of each chunk (any layout).
template <int NMAX, int Q, bool ASYNC>
__global__ void __launch_bounds__(kThreads, 1) ssd_chunk_scan_kernel(const SsdParams p) {
    using C = Cfg<NMAX, Q>;
    constexpr int kNP = C::kNP, kXP = C::kXP, kSP = C::kSP;
    constexpr int kNT = NMAX / 16;  // 8-column state tiles per warp (half of NMAX)
    extern __shared__ __align__(16) unsigned char smem[];
    __half* Cs = reinterpret_cast<__half*>(smem) + C::kCs;
    __half* Bs = reinterpret_cast<__half*>(smem) + C::kBs;
    __half* Xs = reinterpret_cast<__half*>(smem) + C::kXs;
    __half* Hs = reinterpret_cast<__half*>(smem) + C::kHs;
    __half* Ss = reinterpret_cast<__half*>(smem) + C::kSs;
    float* acum = reinterpret_cast<float*>(smem + C::kHalfs * 2);
    float* dls = acum + Q;
    int8_t* Craw = reinterpret_cast<int8_t*>(smem + C::kBytes);  // ASYNC only
    int8_t* Braw = Craw + Q * NMAX;
    int8_t* Xraw = Braw + Q * NMAX;

    const int p0 = blockIdx.x * kPb, h = blockIdx.y, b = blockIdx.z;
    const int L = p.L, H = p.H, P = p.P, N = p.N;
    const int g = h / (H / p.G);
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, gid = lane >> 2, tq = lane & 3;
    const float A = p.A[h], bias = p.dt_bias ? p.dt_bias[h] : 0.f, Dh = p.D ? p.D[h] : 0.f;
    const float bsc = p.B_scale[g], csc = p.C_scale[g];
    const int pv = min(kPb, P - p0);  // valid channels of this block

    // This warp's state tile: channel rows sm + gid (+8), columns sn + j*8 + tq*2 (+1).
    const int sm = (warp & 1) * 16, sn = (warp >> 1) * (NMAX / 2);
    float hst[kNT][4];
    float srow[2];  // x_scale[p] * B_scale: the state update's per-row factor
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        const int pl = sm + gid + 8 * r;
        srow[r] = pl < pv ? p.x_scale[h * P + p0 + pl] * bsc : 0.f;
    }
    const int64_t state_base = ((int64_t)b * H + h) * P * N;
#pragma unroll
    for (int j = 0; j < kNT; ++j) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
            const int pl = sm + gid + 8 * (e >> 1), n = sn + j * 8 + tq * 2 + (e & 1);
            hst[j][e] = (p.h0 && pl < pv && n < N) ? p.h0[state_base + (int64_t)(p0 + pl) * N + n] : 0.f;
        }
    }
    // x_scale of this thread's output columns (y epilogue): nt*8 + tq*2 + e.
    float xsc[kPb / 8][2];
#pragma unroll
    for (int nt = 0; nt < kPb / 8; ++nt)
#pragma unroll
        for (int e = 0; e < 2; ++e) {
            const int pl = nt * 8 + tq * 2 + e;
            xsc[nt][e] = pl < pv ? p.x_scale[h * P + p0 + pl] : 0.f;
        }

    const int64_t row_bc = p.ldbc, row_x = p.ldx, row_y = (int64_t)H * P;  // token strides
    const int8_t* Cg = p.C + (int64_t)b * L * row_bc + (int64_t)g * N;  // this sequence's token 0
    const int8_t* Bg = p.B + (int64_t)b * L * row_bc + (int64_t)g * N;
    const int8_t* Xg = p.x + (int64_t)b * L * row_x + (int64_t)h * P + p0;
    const int8_t* Dg = p.dt + (int64_t)b * L * p.lddt + h;
    int8_t dt_next = 0;  // ASYNC: this thread's dt code of the chunk about to start
    if (ASYNC) {
        const int len = min(Q, L);
        issue_raw(Craw, Cg, row_bc, len, N, NMAX);
        issue_raw(Braw, Bg, row_bc, len, N, NMAX);
        issue_raw(Xraw, Xg, row_x, len, pv, kPb);
        cp_async_commit();
        if (threadIdx.x < len) dt_next = Dg[threadIdx.x * p.lddt];
    }
    for (int t0 = 0; t0 < L; t0 += Q) {
        const int len = min(Q, L - t0);
        const int64_t tok0 = (int64_t)b * L + t0;
        if (threadIdx.x < Q) {
            const int t = threadIdx.x;
            float d = 0.f;
            if (t < len) d = delta_of(ASYNC ? dt_next : Dg[(t0 + t) * p.lddt], p.dt_scale, bias, p.dt_lo, p.dt_hi);
            dls[t] = d;
            acum[t] = d * A;  // padded tokens: delta = 0, a = 0
        }
        // h_prev -> f16 for the inter-chunk product.
#pragma unroll
        for (int j = 0; j < kNT; ++j)
#pragma unroll
            for (int r = 0; r < 2; ++r)
                *reinterpret_cast<__half2*>(Hs + (sm + gid + 8 * r) * kNP + sn + j * 8 + tq * 2) =
                    __floats2half2_rn(hst[j][2 * r], hst[j][2 * r + 1]);
        if (ASYNC) {
            cp_async_wait_all();  // this thread's copies of the chunk have landed; the barrier publishes all
            __syncthreads();
            load_codes(Cs, kNP, Craw, NMAX, Q, len, N, NMAX, true);
            load_codes(Bs, kNP, Braw, NMAX, Q, len, N, NMAX, true);
            load_codes(Xs, kXP, Xraw, kPb, Q, len, pv, kPb, true);
        } else {
            load_codes(Cs, kNP, Cg + (int64_t)t0 * row_bc, row_bc, Q, len, N, NMAX, p.vec_bc);
            load_codes(Bs, kNP, Bg + (int64_t)t0 * row_bc, row_bc, Q, len, N, NMAX, p.vec_bc);
            load_codes(Xs, kXP, Xg + (int64_t)t0 * row_x, row_x, Q, len, pv, kPb, p.vec_x);
            __syncthreads();
        }
        if (warp == 0) {  // inclusive scan of a over the chunk (fp32)
            constexpr int kPer = Q / 32;
            float v[kPer], s = 0.f;
#pragma unroll
            for (int i = 0; i < kPer; ++i) {
                s += acum[lane * kPer + i];
                v[i] = s;
            }
            float inc = s;
#pragma unroll
            for (int o = 1; o < 32; o <<= 1) {
                const float u = __shfl_up_sync(0xffffffffu, inc, o);
                if (lane >= o) inc += u;
            }
#pragma unroll
            for (int i = 0; i < kPer; ++i) acum[lane * kPer + i] = v[i] + (inc - s);
        }
        __syncthreads();
        if (ASYNC && t0 + Q < L) {  // the raw buffers are free again: start the next chunk's copies
            const int t1 = t0 + Q, len1 = min(Q, L - t1);
            issue_raw(Craw, Cg + (int64_t)t1 * row_bc, row_bc, len1, N, NMAX);
            issue_raw(Braw, Bg + (int64_t)t1 * row_bc, row_bc, len1, N, NMAX);
            issue_raw(Xraw, Xg + (int64_t)t1 * row_x, row_x, len1, pv, kPb);
            cp_async_commit();
            if (threadIdx.x < len1) dt_next = Dg[(int64_t)(t1 + threadIdx.x) * p.lddt];
        }
        const float alast = acum[Q - 1];

        // ---- intra-chunk: S = (C B^T) masked by the decay, then y = exp(acum) C h_prev^T + S x + D x ----
        for (int mt = warp; mt < Q / 16; mt += kThreads / 32) {
            float sacc[Q / 8][4], y1[kPb / 8][4], y2[kPb / 8][4];
#pragma unroll
            for (int i = 0; i < Q / 8; ++i) sacc[i][0] = sacc[i][1] = sacc[i][2] = sacc[i][3] = 0.f;
#pragma unroll
            for (int i = 0; i < kPb / 8; ++i) {
                y1[i][0] = y1[i][1] = y1[i][2] = y1[i][3] = 0.f;
                y2[i][0] = y2[i][1] = y2[i][2] = y2[i][3] = 0.f;
            }
            const int ntiles = 2 * mt + 2;  // S columns s < 16 (mt + 1): the causal part
#pragma unroll 8
            for (int k0 = 0; k0 < NMAX; k0 += 16) {
                uint32_t a[4];
                ldsm_x4(a, Cs + (mt * 16 + (lane & 15)) * kNP + k0 + (lane >> 4) * 8);
#pragma unroll
                for (int nt = 0; nt < Q / 8; nt += 2) {
                    if (nt < ntiles) {
                        uint32_t bf[4];
                        ldsm_x4(bf, Bs + (nt * 8 + (lane >> 4) * 8 + (lane & 7)) * kNP + k0 + ((lane >> 3) & 1) * 8);
                        mma16816(sacc[nt], a, bf[0], bf[1]);
                        mma16816(sacc[nt + 1], a, bf[2], bf[3]);
                    }
                }
#pragma unroll
                for (int nt = 0; nt < kPb / 8; nt += 2) {
                    uint32_t bf[4];
                    ldsm_x4(bf, Hs + (nt * 8 + (lane >> 4) * 8 + (lane & 7)) * kNP + k0 + ((lane >> 3) & 1) * 8);
                    mma16816(y1[nt], a, bf[0], bf[1]);
                    mma16816(y1[nt + 1], a, bf[2], bf[3]);
                }
            }
            // Decay mask in fp32, S -> f16 (this warp's rows only: the same warp reads them back below).
            const float sc = bsc * csc;
#pragma unroll
            for (int nt = 0; nt < Q / 8; ++nt) {
                if (nt < ntiles) {
#pragma unroll
                    for (int r = 0; r < 2; ++r) {
                        const int t = mt * 16 + gid + 8 * r, s = nt * 8 + tq * 2;
                        const float at = acum[t];
                        const float v0 = s <= t ? sacc[nt][2 * r] * sc * expf(at - acum[s]) * dls[s] : 0.f;
                        const float v1 = s + 1 <= t ? sacc[nt][2 * r + 1] * sc * expf(at - acum[s + 1]) * dls[s + 1] : 0.f;
                        *reinterpret_cast<__half2*>(Ss + t * kSP + s) = __floats2half2_rn(v0, v1);
                    }
                }
            }
            __syncwarp();
#pragma unroll
            for (int k0 = 0; k0 < Q; k0 += 16) {
                if (k0 <= mt * 16) {
                    uint32_t a[4];
                    ldsm_x4(a, Ss + (mt * 16 + (lane & 15)) * kSP + k0 + (lane >> 4) * 8);
#pragma unroll
                    for (int nt = 0; nt < kPb / 8; nt += 2) {
                        uint32_t bf[4];
                        ldsm_x4_t(bf, Xs + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kXP + nt * 8 + (lane >> 4) * 8);
                        mma16816(y2[nt], a, bf[0], bf[1]);
                        mma16816(y2[nt + 1], a, bf[2], bf[3]);
                    }
                }
            }
#pragma unroll
            for (int r = 0; r < 2; ++r) {
                const int t = mt * 16 + gid + 8 * r;
                if (t >= len) continue;
                const float dec = csc * expf(acum[t]);
                __half* yrow = p.y + (tok0 + t) * row_y + (int64_t)h * P + p0;
#pragma unroll
                for (int nt = 0; nt < kPb / 8; ++nt) {
                    float v[2];
#pragma unroll
                    for (int e = 0; e < 2; ++e) {
                        const int pl = nt * 8 + tq * 2 + e;
                        const float xv = __half2float(Xs[t * kXP + pl]) * xsc[nt][e];  // 0 beyond pv
                        v[e] = dec * y1[nt][2 * r + e] + xsc[nt][e] * y2[nt][2 * r + e] + Dh * xv;
                    }
                    const int pl = nt * 8 + tq * 2;
                    if (p.vec_y && pl + 1 < pv) {  // P even and y 4-byte aligned: one 4-byte store
                        *reinterpret_cast<__half2*>(yrow + pl) = __floats2half2_rn(v[0], v[1]);
                    } else {
                        if (pl < pv) yrow[pl] = __float2half_rn(v[0]);
                        if (pl + 1 < pv) yrow[pl + 1] = __float2half_rn(v[1]);
                    }
                }
            }
        }

        // ---- state passing: h = exp(alast) h + (x_q * w)^T B_q * x_scale * B_scale, w_s = exp(alast - acum_s) delta_s
        const float dlast = expf(alast);
        __half2 wq[Q / 16][2];
#pragma unroll
        for (int ks = 0; ks < Q / 16; ++ks)
#pragma unroll
            for (int hi = 0; hi < 2; ++hi) {
                const int s = ks * 16 + hi * 8 + tq * 2;
                wq[ks][hi] = __floats2half2_rn(expf(alast - acum[s]) * dls[s], expf(alast - acum[s + 1]) * dls[s + 1]);
            }
#pragma unroll
        for (int ng = 0; ng < kNT; ng += 4) {
            float tmp[4][4];
#pragma unroll
            for (int j = 0; j < 4; ++j) tmp[j][0] = tmp[j][1] = tmp[j][2] = tmp[j][3] = 0.f;
#pragma unroll
            for (int ks = 0; ks < Q / 16; ++ks) {
                const int k0 = ks * 16;
                uint32_t a[4];
                ldsm_x4_t(a, Xs + (k0 + (lane >> 4) * 8 + (lane & 7)) * kXP + sm + ((lane >> 3) & 1) * 8);
                a[0] = h2_bits(__hmul2(bits_h2(a[0]), wq[ks][0]));
                a[1] = h2_bits(__hmul2(bits_h2(a[1]), wq[ks][0]));
                a[2] = h2_bits(__hmul2(bits_h2(a[2]), wq[ks][1]));
                a[3] = h2_bits(__hmul2(bits_h2(a[3]), wq[ks][1]));
#pragma unroll
                for (int j = 0; j < 4; j += 2) {
                    uint32_t bf[4];
                    ldsm_x4_t(bf, Bs + (k0 + ((lane >> 3) & 1) * 8 + (lane & 7)) * kNP + sn + (ng + j) * 8 + (lane >> 4) * 8);
                    mma16816(tmp[j], a, bf[0], bf[1]);
                    mma16816(tmp[j + 1], a, bf[2], bf[3]);
                }
            }
#pragma unroll
            for (int j = 0; j < 4; ++j)
#pragma unroll
                for (int e = 0; e < 4; ++e) hst[ng + j][e] = fmaf(hst[ng + j][e], dlast, tmp[j][e] * srow[e >> 1]);
        }
        __syncthreads();  // every warp is done with this chunk's shared tiles
    }

    if (p.hT) {
#pragma unroll
        for (int j = 0; j < kNT; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int pl = sm + gid + 8 * (e >> 1), n = sn + j * 8 + tq * 2 + (e & 1);
                if (pl < pv && n < N) p.hT[state_base + (int64_t)(p0 + pl) * N + n] = hst[j][e];
            }
    }
}

template <int NMAX, int Q, bool ASYNC>
cudaError_t launch(const SsdParams& prm, int batch, cudaStream_t stream) {
    auto kern = ssd_chunk_scan_kernel<NMAX, Q, ASYNC>;
    constexpr int smem = Cfg<NMAX, Q>::kBytes + (ASYNC ? Cfg<NMAX, Q>::kRawBytes : 0);
    cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const dim3 grid((prm.P + kPb - 1) / kPb, prm.H, batch);
    kern<<<grid, kThreads, smem, stream>>>(prm);
    return cudaGetLastError();
}

}  // namespace

extern "C" lowbit_status lowbit_ssd_chunk_scan(const int8_t* x, const float* x_scale, const int8_t* dt,
                                               float dt_scale, const float* dt_bias, const float* A, const int8_t* Bm,
                                               const float* B_scale, const int8_t* Cm, const float* C_scale,
                                               const float* D, const float* initial_state, float dt_lo, float dt_hi,
                                               void* y, float* final_state, int64_t batch, int64_t seqlen,
                                               int64_t nheads, int64_t headdim, int64_t ngroups, int64_t dstate,
                                               int64_t ldx, int64_t ldbc, int64_t lddt, int32_t variant,
                                               void* stream) {
    SsdParams prm{};
    const lowbit_status_code c =
        lowbit::ssd::fill_params(prm, x, x_scale, dt, dt_scale, dt_bias, A, Bm, B_scale, Cm, C_scale, D, initial_state,
                                 dt_lo, dt_hi, y, final_state, batch, seqlen, nheads, headdim, ngroups, dstate, ldx, ldbc,
                                 lddt, true);
    if (c != LOWBIT_OK) return lowbit::status_error(c);
    // 16-byte int8 loads where every row start is 16-byte aligned.
    prm.vec_bc = dstate % 16 == 0 && ldbc % 16 == 0 && lowbit::is_aligned(Bm, 16) && lowbit::is_aligned(Cm, 16);
    prm.vec_x = headdim % 16 == 0 && ldx % 16 == 0 && lowbit::is_aligned(x, 16);
    prm.vec_y = headdim % 2 == 0 && lowbit::is_aligned(y, 4);
    lowbit::clear_pending_error();
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    const int b = static_cast<int>(batch);
    // cp.async staging needs 16-byte rows of B, C and x.
    LOWBIT_REQUIRE(variant >= LOWBIT_SSD_AUTO && variant <= LOWBIT_SSD_ASYNC, LOWBIT_ERR_INVALID_ARGUMENT);
    const bool can_async = prm.vec_bc && prm.vec_x;
    LOWBIT_REQUIRE(variant != LOWBIT_SSD_ASYNC || can_async, LOWBIT_ERR_NO_KERNEL);
    const bool async = can_async && variant != LOWBIT_SSD_DIRECT;
    cudaError_t e;
    if (async) {
        e = dstate <= 64 ? launch<64, 64, true>(prm, b, st) : dstate <= 128 ? launch<128, 64, true>(prm, b, st)
                                                                            : launch<256, 32, true>(prm, b, st);
    } else {
        e = dstate <= 64 ? launch<64, 64, false>(prm, b, st) : dstate <= 128 ? launch<128, 64, false>(prm, b, st)
                                                                             : launch<256, 32, false>(prm, b, st);
    }
    return lowbit::status_from_cuda(e);
}
