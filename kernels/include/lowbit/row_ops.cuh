// lowbit/row_ops.cuh: CTA-wide helpers of the one-CTA-per-row kernels (lowbit_act_quant in kernels/int8,
// lowbit_ssm_gated_rmsnorm_quant in kernels/ssm): a sum / max reduction over the CTA and the in-place fast
// Walsh-Hadamard transform of a row held in shared memory, or of a row held in registers, E values per thread
// (the small-T "vector" kernels: one CTA of k / E threads per row).
#pragma once

#include <cuda_runtime.h>
#include <stdint.h>

namespace lowbit {

/// Sum (MAX = false) or max (MAX = true) of `v` over the CTA; every thread gets the result. `red` is a
/// shared array of >= 32 floats. blockDim.x must be a multiple of 32 (<= 1024). Starts with a barrier, so
/// back-to-back calls may reuse `red`.
template <bool MAX>
__device__ __forceinline__ float block_reduce(float v, float* red) {
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31;
    __syncthreads();  // red[] may still be read by a previous reduction
    if (lane == 0) red[warp] = v;
    __syncthreads();
    v = lane < int(blockDim.x >> 5) ? red[lane] : 0.f;
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) {
        const float u = __shfl_xor_sync(0xffffffffu, v, o);
        v = MAX ? fmaxf(v, u) : v + u;
    }
    return v;
}

/// Unnormalized FWHT of every block of `h` contiguous values of `row[0, k)` (shared memory; h a power of
/// two >= 2 dividing k): log2(h) butterfly passes, each pairing elements `len` apart inside blocks of 2 len,
/// so blocks of h values never mix. The caller scales by 1/sqrt(h). Barriers before and after every pass:
/// the caller's writes to `row` are visible to the first pass, and the result to the code that follows.
__device__ __forceinline__ void fwht_shared(float* row, int k, int h) {
    __syncthreads();
    for (int len = 1; len < h; len <<= 1) {
        for (int p = threadIdx.x; p < k / 2; p += blockDim.x) {
            const int i = (p / len) * 2 * len + (p % len), j = i + len;
            const float a = row[i], b = row[j];
            row[i] = a + b;
            row[j] = a - b;
        }
        __syncthreads();
    }
}

/// Unnormalized FWHT of every block of `h` contiguous values of a row held in registers: thread `t` (the CTA's
/// threadIdx.x) holds values [t E, t E + E) in `v`; h a power of two (h <= 1: nothing) dividing the row length
/// n E. The butterflies are the passes of fwht_shared in the same order (len = 1, 2, 4, ...), so the f32 result
/// is bit-identical: len < E inside a thread's registers, len < 32 E by warp shuffles (partner lane t ^ len / E),
/// larger len through shared memory `buf` (2 n E floats, double-buffered: one barrier per pass). A pair never
/// leaves its h block, so a thread t < n only meets threads < n; every thread of the CTA (blockDim.x a multiple
/// of 32) must call this (shuffles and barriers), threads t >= n carry junk and touch no memory.
template <int E>
__device__ __forceinline__ void fwht_regs(float (&v)[E], int n, int h, float* buf) {
    const int t = threadIdx.x;
#pragma unroll
    for (int len = 1; len < E; len <<= 1) {
        if (len >= h) break;
#pragma unroll
        for (int i = 0; i < E; ++i) {
            if (!(i & len)) {
                const float a = v[i], b = v[i + len];
                v[i] = a + b;
                v[i + len] = a - b;
            }
        }
    }
    for (int m = 1; m < 32 && m * E < h; m <<= 1) {
        const bool hi = t & m;
#pragma unroll
        for (int i = 0; i < E; ++i) {
            const float p = __shfl_xor_sync(0xffffffffu, v[i], m);
            v[i] = hi ? p - v[i] : v[i] + p;
        }
    }
    int pass = 0;
    for (int m = 32; m * E < h; m <<= 1, ++pass) {
        float* b = buf + (pass & 1) * n * E;
        const bool hi = t & m;
        if (t < n) {
#pragma unroll
            for (int i = 0; i < E; i += 4) *reinterpret_cast<float4*>(b + t * E + i) = make_float4(v[i], v[i + 1], v[i + 2], v[i + 3]);
        }
        __syncthreads();
        if (t < n) {
            const float* pb = b + (t ^ m) * E;
#pragma unroll
            for (int i = 0; i < E; i += 4) {
                const float4 p = *reinterpret_cast<const float4*>(pb + i);
                v[i] = hi ? p.x - v[i] : v[i] + p.x;
                v[i + 1] = hi ? p.y - v[i + 1] : v[i + 1] + p.y;
                v[i + 2] = hi ? p.z - v[i + 2] : v[i + 2] + p.z;
                v[i + 3] = hi ? p.w - v[i + 3] : v[i + 3] + p.w;
            }
        }
    }
}

/// Shared-memory floats fwht_regs<E> needs for a row of k values with blocks of h.
inline int fwht_regs_smem_floats(int k, int h, int e) { return h > 32 * e ? 2 * k : 0; }

/// `NB` bytes (a multiple of 8) from `p` (aligned to min(NB, 16)) into 32-bit words `w[NB / 4]`, 16 bytes per
/// load where possible.
template <int NB>
__device__ __forceinline__ void load_words(const void* p, uint32_t* w) {
    static_assert(NB % 8 == 0, "NB must be a multiple of 8");
    if constexpr (NB % 16 == 0) {
#pragma unroll
        for (int i = 0; i < NB / 16; ++i) {
            const uint4 u = reinterpret_cast<const uint4*>(p)[i];
            w[4 * i] = u.x, w[4 * i + 1] = u.y, w[4 * i + 2] = u.z, w[4 * i + 3] = u.w;
        }
    } else {
#pragma unroll
        for (int i = 0; i < NB / 8; ++i) {
            const uint2 u = reinterpret_cast<const uint2*>(p)[i];
            w[2 * i] = u.x, w[2 * i + 1] = u.y;
        }
    }
}

/// The store of load_words.
template <int NB>
__device__ __forceinline__ void store_words(void* p, const uint32_t* w) {
    static_assert(NB % 8 == 0, "NB must be a multiple of 8");
    if constexpr (NB % 16 == 0) {
#pragma unroll
        for (int i = 0; i < NB / 16; ++i)
            reinterpret_cast<uint4*>(p)[i] = make_uint4(w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]);
    } else {
#pragma unroll
        for (int i = 0; i < NB / 8; ++i) reinterpret_cast<uint2*>(p)[i] = make_uint2(w[2 * i], w[2 * i + 1]);
    }
}

/// sat127(rne(v / s)) of E values (IEEE division, as lowbit-core) packed 4 codes per word.
template <int E>
__device__ __forceinline__ void quantize_words(const float (&v)[E], float s, uint32_t (&w)[E / 4]) {
#pragma unroll
    for (int i = 0; i < E / 4; ++i) {
        uint32_t word = 0;
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const int c = int(fminf(fmaxf(rintf(__fdiv_rn(v[4 * i + j], s)), -127.f), 127.f));
            word |= (uint32_t(c) & 0xffu) << (8 * j);
        }
        w[i] = word;
    }
}

}  // namespace lowbit
