// Int8 causal depthwise conv1d of Mamba1 / Mamba2 (lowbit_ssm_conv1d_int8, lowbit_ssm_conv1d_update_int8).
//
// Algorithm: y[b, t, c] = sum_{j < W} w[c, j] * x[b, t - W + 1 + j, c] * xs[c] + bias[c] (x = 0 before t = 0),
// optional SiLU, then q = sat127(rne(y / out_scale[c])). The filter is right-aligned into a fixed 4-tap window
// (taps 0 .. 4 - W are zero), so one code path serves every W <= 4 and the window lives in registers.
// The int8 codes are dequantized by the scale only once, after the dot product: acc = sum_j w[c, j] * code,
// y = acc * xs[c] + bias[c] (fmaf), the same order as the CPU reference (lowbit-core ssm::conv1d_int8).
//
// Partitioning (prefill): a thread owns VEC (4 or 1) consecutive channels and a tile of kTileT timesteps of one
// sequence; a warp covers 32 * VEC consecutive channels, so every load and store of a timestep is one
// contiguous 32- or 128-byte segment (coalesced over channels). The thread first reads the W - 1 inputs before
// its tile (the halo, re-read by the neighbouring tile: 3 of 64 rows), then slides the window down the tile.
// Grid: (ceil(C / (kThreads * VEC)), ceil(L / kTileT), B). VEC = 4 when C, ldx and ldy are multiples of 4 and
// x / y are 4-byte aligned (char4 accesses), else 1.
//
// Decode update: one thread per (b, c): reads the W state codes, shifts them left, appends x, writes them back
// and computes the output from the new window. State rows are W bytes apart; a warp touches 32 * W contiguous
// bytes.
//
// Limits: W <= 4; B * L < 2^31; C < 2^31. No shared memory.
#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

namespace {

constexpr int kThreads = 128;
constexpr int kTileT = 64;
constexpr int kTaps = LOWBIT_SSM_MAX_CONV_WIDTH;  // 4: the register window

__device__ __forceinline__ float silu(float v) { return v / (1.f + expf(-v)); }

__device__ __forceinline__ int8_t quant(float v, float s) {
    return static_cast<int8_t>(fminf(fmaxf(rintf(__fdiv_rn(v, s)), -127.f), 127.f));
}

// Filter taps of channel c right-aligned into kTaps slots: tap[k] multiplies x[t - kTaps + 1 + k].
__device__ __forceinline__ void load_taps(const float* __restrict__ w, int64_t c, int width, float (&tap)[kTaps]) {
#pragma unroll
    for (int k = 0; k < kTaps; ++k) {
        const int j = k - (kTaps - width);
        tap[k] = j >= 0 ? w[c * width + j] : 0.f;
    }
}

__device__ __forceinline__ float finish(float acc, float xs, float bias, bool act, float os) {
    float y = fmaf(acc, xs, bias);
    if (act) y = silu(y);
    return static_cast<float>(quant(y, os));
}

template <int VEC>
struct Vec;
template <>
struct Vec<1> {
    __device__ static void load(const int8_t* p, float (&v)[1]) { v[0] = float(*p); }
    __device__ static void store(int8_t* p, const float (&v)[1]) { *p = static_cast<int8_t>(v[0]); }
};
template <>
struct Vec<4> {
    __device__ static void load(const int8_t* p, float (&v)[4]) {
        const char4 c = *reinterpret_cast<const char4*>(p);
        v[0] = float(c.x), v[1] = float(c.y), v[2] = float(c.z), v[3] = float(c.w);
    }
    __device__ static void store(int8_t* p, const float (&v)[4]) {
        *reinterpret_cast<char4*>(p) = make_char4(static_cast<signed char>(v[0]), static_cast<signed char>(v[1]),
                                                  static_cast<signed char>(v[2]), static_cast<signed char>(v[3]));
    }
};

// Prefill. x [B][L][ldx] int8, y [B][L][ldy] int8; channel vectors [C]; w [C][width].
template <int VEC>
__global__ void __launch_bounds__(kThreads)
    conv1d_kernel(const int8_t* __restrict__ x, int64_t ldx, int len, int64_t channels, const float* __restrict__ xs,
                  const float* __restrict__ w, int width, const float* __restrict__ bias,
                  const float* __restrict__ os, bool act, int8_t* __restrict__ y, int64_t ldy) {
    const int64_t c0 = (int64_t(blockIdx.x) * kThreads + threadIdx.x) * VEC;
    if (c0 >= channels) return;
    const int t0 = blockIdx.y * kTileT;
    const int t1 = min(t0 + kTileT, len);
    const int64_t seq = int64_t(blockIdx.z) * len;
    float tap[VEC][kTaps], sx[VEC], sb[VEC], so[VEC];
#pragma unroll
    for (int v = 0; v < VEC; ++v) {
        load_taps(w, c0 + v, width, tap[v]);
        sx[v] = xs[c0 + v];
        sb[v] = bias ? bias[c0 + v] : 0.f;
        so[v] = os[c0 + v];
    }
    // win[v][k]: x[t - kTaps + 1 + k] for the next output t (k = kTaps - 1 is filled inside the loop).
    float win[VEC][kTaps];
#pragma unroll
    for (int k = 0; k < kTaps - 1; ++k) {
        const int t = t0 - (kTaps - 1) + k;
        float v4[VEC];
        if (t >= 0 && k >= kTaps - width) {
            Vec<VEC>::load(x + (seq + t) * ldx + c0, v4);
        } else {
#pragma unroll
            for (int v = 0; v < VEC; ++v) v4[v] = 0.f;
        }
#pragma unroll
        for (int v = 0; v < VEC; ++v) win[v][k] = v4[v];
    }
    for (int t = t0; t < t1; ++t) {
        float cur[VEC], out[VEC];
        Vec<VEC>::load(x + (seq + t) * ldx + c0, cur);
#pragma unroll
        for (int v = 0; v < VEC; ++v) {
            win[v][kTaps - 1] = cur[v];
            float acc = 0.f;
#pragma unroll
            for (int k = 0; k < kTaps; ++k) acc = fmaf(tap[v][k], win[v][k], acc);
            out[v] = finish(acc, sx[v], sb[v], act, so[v]);
#pragma unroll
            for (int k = 0; k < kTaps - 1; ++k) win[v][k] = win[v][k + 1];
        }
        Vec<VEC>::store(y + (seq + t) * ldy + c0, out);
    }
}

// Decode step. x [B][ldx], state [B][C][width] (in place), y [B][ldy].
__global__ void __launch_bounds__(kThreads)
    conv1d_update_kernel(const int8_t* __restrict__ x, int64_t ldx, int8_t* __restrict__ state, int64_t channels,
                         const float* __restrict__ xs, const float* __restrict__ w, int width,
                         const float* __restrict__ bias, const float* __restrict__ os, bool act,
                         int8_t* __restrict__ y, int64_t ldy) {
    const int64_t c = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    if (c >= channels) return;
    const int64_t b = blockIdx.y;
    int8_t* st = state + (b * channels + c) * width;
    float tap[kTaps];
    load_taps(w, c, width, tap);
    // New window, right-aligned: codes st[1 .. width) then x; slots before kTaps - width stay zero.
    int8_t win[kTaps];
#pragma unroll
    for (int k = 0; k < kTaps; ++k) {
        const int j = k - (kTaps - width);  // index into the new state
        win[k] = (j >= 0 && j < width - 1) ? st[j + 1] : 0;
    }
    win[kTaps - 1] = x[b * ldx + c];
    float acc = 0.f;
#pragma unroll
    for (int k = 0; k < kTaps; ++k) acc = fmaf(tap[k], float(win[k]), acc);
#pragma unroll
    for (int k = 0; k < kTaps; ++k) {
        const int j = k - (kTaps - width);
        if (j >= 0) st[j] = win[k];
    }
    y[b * ldy + c] = static_cast<int8_t>(finish(acc, xs[c], bias ? bias[c] : 0.f, act, os[c]));
}

lowbit_status check_common(int64_t channels, const float* xs, const float* w, int32_t width, const float* bias,
                           const float* os, const int8_t* x, const int8_t* y) {
    LOWBIT_REQUIRE(x != nullptr && y != nullptr && xs != nullptr && w != nullptr && os != nullptr,
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(width >= 1 && width <= kTaps, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(channels >= 1 && channels <= INT32_MAX, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(lowbit::is_aligned(xs, 4) && lowbit::is_aligned(w, 4) && lowbit::is_aligned(bias, 4) &&
                       lowbit::is_aligned(os, 4),
                   LOWBIT_ERR_ALIGNMENT);
    return lowbit::status_ok();
}

}  // namespace

extern "C" lowbit_status lowbit_ssm_conv1d_int8(const int8_t* x, int64_t ldx, int64_t batch, int64_t len,
                                                int64_t channels, const float* x_scale, const float* weight,
                                                int32_t width, const float* bias, const float* out_scale,
                                                int32_t silu, int8_t* y, int64_t ldy, void* stream) {
    const lowbit_status s = check_common(channels, x_scale, weight, width, bias, out_scale, x, y);
    if (s.code != LOWBIT_OK) return s;
    LOWBIT_REQUIRE(batch >= 1 && len >= 1 && batch <= 65535 && batch * len <= INT32_MAX, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldx >= channels && ldy >= channels, LOWBIT_ERR_SHAPE);
    const bool vec4 = channels % 4 == 0 && ldx % 4 == 0 && ldy % 4 == 0 && lowbit::is_aligned(x, 4) &&
                      lowbit::is_aligned(y, 4);
    const int per_block = kThreads * (vec4 ? 4 : 1);
    const dim3 grid(unsigned((channels + per_block - 1) / per_block), unsigned((len + kTileT - 1) / kTileT),
                    unsigned(batch));
    LOWBIT_REQUIRE(grid.y <= 65535, LOWBIT_ERR_SHAPE);
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    lowbit::clear_pending_error();
    if (vec4) {
        conv1d_kernel<4><<<grid, kThreads, 0, st>>>(x, ldx, int(len), channels, x_scale, weight, width, bias,
                                                    out_scale, silu != 0, y, ldy);
    } else {
        conv1d_kernel<1><<<grid, kThreads, 0, st>>>(x, ldx, int(len), channels, x_scale, weight, width, bias,
                                                    out_scale, silu != 0, y, ldy);
    }
    return lowbit::launch_status();
}

extern "C" lowbit_status lowbit_ssm_conv1d_update_int8(const int8_t* x, int64_t ldx, int8_t* conv_state,
                                                       int64_t batch, int64_t channels, const float* x_scale,
                                                       const float* weight, int32_t width, const float* bias,
                                                       const float* out_scale, int32_t silu, int8_t* y, int64_t ldy,
                                                       void* stream) {
    const lowbit_status s = check_common(channels, x_scale, weight, width, bias, out_scale, x, y);
    if (s.code != LOWBIT_OK) return s;
    LOWBIT_REQUIRE(conv_state != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(batch >= 1 && batch <= 65535, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldx >= channels && ldy >= channels, LOWBIT_ERR_SHAPE);
    const dim3 grid(unsigned((channels + kThreads - 1) / kThreads), unsigned(batch));
    lowbit::clear_pending_error();
    conv1d_update_kernel<<<grid, kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
        x, ldx, conv_state, channels, x_scale, weight, width, bias, out_scale, silu != 0, y, ldy);
    return lowbit::launch_status();
}
