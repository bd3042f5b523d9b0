// Bipolar plane-GEMM launchers (extern "C", declared in lowbit_kernels.h): argument checks, the launch plan
// (activation rows per CTA, split-K) and the dispatch to the instances of inst_{a,b,c,d}.cu.
#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>

#include "lowbit/bip_gemm.cuh"
#include "lowbit/check.cuh"
#include "lowbit/tma_host.h"
#include "lowbit_kernels.h"

cudaError_t lowbit_bip_launch_a(const lowbit::bip::Args&, int, int, int, int, cudaStream_t, int*);
cudaError_t lowbit_bip_launch_b(const lowbit::bip::Args&, int, int, int, int, cudaStream_t, int*);
cudaError_t lowbit_bip_launch_c(const lowbit::bip::Args&, int, int, int, int, cudaStream_t, int*);
cudaError_t lowbit_bip_launch_d(const lowbit::bip::Args&, int, int, int, int, cudaStream_t, int*);
cudaError_t lowbit_bip_launch_ws(const lowbit::bip::Args&, int, int, int, int, cudaStream_t, int*);

namespace {

using lowbit::bip::kBW;

cudaError_t dispatch(const lowbit::bip::Args& a, int p, int q, int bx, int splits, cudaStream_t st, int* kc) {
    switch (p) {
        case 1: return lowbit_bip_launch_a(a, p, q, bx, splits, st, kc);
        case 2: return lowbit_bip_launch_b(a, p, q, bx, splits, st, kc);
        case 3: case 5: case 6: case 7: return lowbit_bip_launch_c(a, p, q, bx, splits, st, kc);
        case 4: case 8: return lowbit_bip_launch_d(a, p, q, bx, splits, st, kc);
        default: return cudaErrorInvalidValue;
    }
}

// The large tile of (p, q): the most activation rows with p * bx <= 256 and p * q * bx <= 256 (instances exist
// for p * q <= 8), or 0.
int large_bx(int p, int q) {
    if (p * q > 8) return 0;
    int best = 0;
    for (int b : {8, 16, 32, 64, 128, 256})
        if (p * b <= 256 && p * q * b <= 256) best = b;
    return best;
}

// Whether the instance (p, q, bx) exists in the library (compile-time list, not the device).
bool has_instance(int p, int q, int bx) {
    int info[2] = {0, 0};
    return bx > 0 && dispatch(lowbit::bip::Args{}, p, q, bx, -2, nullptr, info) == cudaSuccess;
}

// The plane kernels run here: an sm_90 device and sm_90a code in the library (cached per device).
bool plane_runs() {
    static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (dev >= 0 && dev < 64 && cache[dev].load(std::memory_order_relaxed) != 0) return cache[dev].load() == 2;
    if (cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    int info[2] = {0, 0};
    const bool ok = major == 9 && dispatch(lowbit::bip::Args{}, 1, 1, 256, -1, nullptr, info) == cudaSuccess;
    (void)cudaGetLastError();
    if (dev >= 0 && dev < 64) cache[dev].store(ok ? 2 : 1);
    return ok;
}

// Activation rows per tile of the warp-specialized instance of (p, q) that runs on this device (an sm_90 device,
// sm_90a code in the library, the driver's tensor-map encoder), or 0.
int ws_tile(int p, int q) {
    int bx = 0;
    if (lowbit_bip_launch_ws(lowbit::bip::Args{}, p, q, -2, 0, nullptr, &bx) != cudaSuccess) return 0;
    static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
    int dev = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return 0;
    }
    if (dev >= 0 && dev < 64 && cache[dev].load(std::memory_order_relaxed) != 0) return cache[dev].load() == 2 ? bx : 0;
    int unused = 0;
    const bool ok = plane_runs() && lowbit::tma::encode_fn() != nullptr &&
                    lowbit_bip_launch_ws(lowbit::bip::Args{}, 1, 1, -1, 0, nullptr, &unused) == cudaSuccess;
    (void)cudaGetLastError();
    if (dev >= 0 && dev < 64) cache[dev].store(ok ? 2 : 1);
    return ok ? bx : 0;
}

int sm_count(int32_t given) {
    if (given > 0) return given;
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 132;
}

struct Plan {
    bool ws;  // the warp-specialized persistent kernel (lowbit/bip_ws_gemm.cuh)
    int bx, kc, resident, steps, splits, steps_per_split;
    int group;  // ws kernel: activation tiles per rasterization group (ws_group)
    int64_t ws_bytes, counters_off;
};

// The L2 size of the current device in bytes (50 MB if unknown).
int64_t l2_bytes() {
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) != cudaSuccess || cudaDeviceGetAttribute(&n, cudaDevAttrL2CacheSize, dev) != cudaSuccess) {
        (void)cudaGetLastError();
        n = 0;
    }
    return n > 0 ? n : int64_t(50) << 20;
}

// Tile order of the ws kernel (its `group`: activation tiles per rasterization group, lowbit::i8ws::Tiles; inside a
// group the tiles run M-fastest over every weight tile, so each weight tile is read from HBM once per group and the
// group's activation panels are re-read from L2). The int8 ws kernel's group of 4 suits int8 activations (a 4096-row
// int8 X is 32 MB), but bipolar activations are P bits per element: at M = 4096, K = 8192 a 1-bit X is 4 MB, and
// with groups of 4 the 4-plane weights (32 MB) stream from HBM mt / 4 = 8 times per call where once would do.
// Rule (4-plane weights, the split-X tile of TX = 2 BX activation rows): the fewest weight passes whose groups'
// activation panels (group x TX rows x P planes x K / 8 bytes) fit in a quarter of the L2, in equal groups, at least 4
// (K = 8192, M <= 8192: one group, the whole X). H100, one process, same run
// (NOTES.md "bench vs harness"): W4A1 M = 4096 210.2 -> 206.2 us at 1980 MHz, 221.4 -> 210.7 us sustained for 2 s,
// in lowbit-bench 214.7 -> 211.8 (M = 4096) and 430.4 -> 406.4 us (M = 8192). Other weights keep groups of 4: W1A1
// 8192^3 measured 3.1-3.8% slower with the whole X in one group (129.7 -> 134.1 us at 1980 MHz), M = 4096 72.0 ->
// 75.7 us. LOWBIT_BIP_WS_GROUP=<n> overrides both (read on every call: same-process A/B in
// benches/examples/bip_gap.rs).
int ws_group(int m, int p, int q, int bx, int64_t ld_words) {
    if (const char* v = getenv("LOWBIT_BIP_WS_GROUP")) {
        const int g = atoi(v);
        if (g > 0) return g;
    }
    if (q != 4) return 4;
    const int64_t tx = 2 * int64_t(bx);
    const int64_t panel = tx * p * ld_words * 4;  // bytes of one activation tile's planes
    const int64_t mt = (int64_t(m) + tx - 1) / tx;
    const int64_t fit = panel > 0 ? l2_bytes() / 4 / panel : 0;
    if (fit <= 4) return 4;
    // As few weight passes as fit, split into equal groups (e.g. mt = 32, fit = 27: 2 x 16, not 27 + 5).
    const int64_t passes = (mt + fit - 1) / fit;
    const int64_t g = (mt + passes - 1) / passes;
    return int(g < 4 ? 4 : g > (1 << 30) ? (1 << 30) : g);
}

lowbit_status check_operand(const lowbit_bip_operand* o, int32_t k) {
    LOWBIT_REQUIRE(o != nullptr && o->planes != nullptr && o->row_sums != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(o->bits >= 1 && o->bits <= 8 && o->rows >= 1, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(o->ld >= (int64_t(k) + 31) / 32 && o->plane_stride >= int64_t(o->rows) * o->ld, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(o->ld % 4 == 0 && o->plane_stride % 4 == 0 && lowbit::is_aligned(o->planes, 16) &&
                       lowbit::is_aligned(o->row_sums, 4),
                   LOWBIT_ERR_ALIGNMENT);
    return lowbit::status_ok();
}

lowbit_status make_plan(const lowbit_bip_operand* x, const lowbit_bip_operand* w, int32_t k,
                        const lowbit_bip_config* cfg, int nsm, Plan& pl) {
    LOWBIT_REQUIRE(k >= 1, LOWBIT_ERR_SHAPE);
    for (const lowbit_bip_operand* o : {x, w}) {
        const lowbit_status s = check_operand(o, k);
        if (s.code != LOWBIT_OK) return s;
    }
    const int p = x->bits, q = w->bits;
    // |Y_int| <= k (2^p - 1)(2^q - 1) must fit int32.
    LOWBIT_REQUIRE(int64_t(k) * ((1 << p) - 1) * ((1 << q) - 1) < (int64_t(1) << 31), LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(!cfg || (cfg->bx >= 0 && cfg->splits >= 0), LOWBIT_ERR_INVALID_ARGUMENT);
    const int path = cfg ? cfg->path : LOWBIT_BIP_PATH_AUTO;
    LOWBIT_REQUIRE(path >= LOWBIT_BIP_PATH_AUTO && path <= LOWBIT_BIP_PATH_WS, LOWBIT_ERR_INVALID_ARGUMENT);
    const int m = x->rows;
    // The warp-specialized kernel: asked for, or automatic (no bx / splits override) when its tiles fill every SM.
    const int wsbx = path == LOWBIT_BIP_PATH_SYNC ? 0 : ws_tile(p, q);
    if (path == LOWBIT_BIP_PATH_WS) {
        LOWBIT_REQUIRE(wsbx > 0 && (!cfg->bx || cfg->bx == wsbx), LOWBIT_ERR_NO_KERNEL);
        LOWBIT_REQUIRE(cfg->splits <= 1, LOWBIT_ERR_INVALID_ARGUMENT);
    }
    const bool automatic = !cfg || (cfg->bx == 0 && cfg->splits == 0);
    pl.ws = path == LOWBIT_BIP_PATH_WS ||
            (wsbx > 0 && automatic &&
             int64_t((w->rows + kBW - 1) / kBW) * ((int64_t(m) + wsbx - 1) / wsbx) >= int64_t(nsm));
    if (pl.ws) {
        pl.bx = wsbx;
        pl.kc = 8;  // 128-byte stages
        pl.resident = 1;
        pl.steps = ((k + 127) / 128 + pl.kc - 1) / pl.kc;
        pl.splits = 1;
        pl.steps_per_split = pl.steps;
        pl.ws_bytes = 0;
        pl.counters_off = 0;
        pl.group = ws_group(m, p, q, wsbx, x->ld);
        return lowbit::status_ok();
    }
    if (cfg && cfg->bx) {
        LOWBIT_REQUIRE(has_instance(p, q, cfg->bx), LOWBIT_ERR_NO_KERNEL);
        pl.bx = cfg->bx;
    } else {
        // The decode tile for small M where it exists, else the large tile (and the other as the fallback).
        const int big = large_bx(p, q);
        const bool small = has_instance(p, q, 8);
        pl.bx = ((m <= 16 && small) || big == 0) ? 8 : big;
        LOWBIT_REQUIRE(has_instance(p, q, pl.bx), LOWBIT_ERR_NO_KERNEL);
    }
    LOWBIT_REQUIRE((int64_t(m) + pl.bx - 1) / pl.bx <= 65535, LOWBIT_ERR_SHAPE);  // gridDim.y
    LOWBIT_REQUIRE(plane_runs(), LOWBIT_ERR_NO_KERNEL);
    int info[2] = {0, 0};
    dispatch(lowbit::bip::Args{}, p, q, pl.bx, -2, nullptr, info);
    pl.kc = info[0];
    pl.resident = info[1];
    const int kchunks = (k + 127) / 128;
    pl.steps = (kchunks + pl.kc - 1) / pl.kc;
    const int64_t tiles = int64_t((w->rows + kBW - 1) / kBW) * ((m + pl.bx - 1) / pl.bx);
    int splits = 1;
    if (cfg && cfg->splits) {
        splits = cfg->splits;
    } else if (tiles < 2 * int64_t(nsm) * pl.resident) {
        // Few tiles (small M): split K so the last wave over all resident CTA slots is as full as possible, at
        // least 3 stages per split.
        const int64_t slots = int64_t(nsm) * pl.resident;
        const int smax = pl.steps / 3 < 16 ? pl.steps / 3 : 16;
        double best = 0;
        for (int s = 1; s <= (smax > 1 ? smax : 1); ++s) {
            const int64_t ctas = tiles * s;
            const int64_t waves = (ctas + slots - 1) / slots;
            const double eff = double(ctas) / double(waves * slots);
            if (eff > best + 0.02) best = eff, splits = s;
        }
    }
    if (splits > pl.steps) splits = pl.steps;
    pl.steps_per_split = (pl.steps + splits - 1) / splits;
    pl.splits = (pl.steps + pl.steps_per_split - 1) / pl.steps_per_split;
    if (pl.splits > 1) {
        const int64_t acc = (int64_t(m) * w->rows * 4 + 255) / 256 * 256;
        pl.counters_off = acc;
        pl.ws_bytes = acc + tiles * 4;
    } else {
        pl.ws_bytes = 0;
        pl.counters_off = 0;
    }
    return lowbit::status_ok();
}

}  // namespace

extern "C" int32_t lowbit_bip_plane_available(int32_t p, int32_t q, int32_t bx) {
    if (p < 1 || p > 8 || q < 1 || q > 8 || bx < 0) return 0;
    if (bx == 0) bx = large_bx(p, q) ? large_bx(p, q) : 8;
    return has_instance(p, q, bx) && plane_runs() ? 1 : 0;
}

extern "C" int32_t lowbit_bip_ws_tile(int32_t p, int32_t q) {
    if (p < 1 || p > 8 || q < 1 || q > 8) return 0;
    return ws_tile(p, q);
}

extern "C" int64_t lowbit_bip_gemm_workspace_bytes(const lowbit_bip_operand* x, const lowbit_bip_operand* w,
                                                   int32_t k, const lowbit_bip_config* cfg, int32_t num_sms) {
    Plan pl{};
    if (make_plan(x, w, k, cfg, sm_count(num_sms), pl).code != LOWBIT_OK) return -1;
    return pl.ws_bytes;
}

extern "C" lowbit_status lowbit_bip_gemm(const lowbit_bip_operand* x, const lowbit_bip_operand* w, int32_t k,
                                         const lowbit_i8_epilogue* epi, void* y, int64_t ldy, void* workspace,
                                         int64_t workspace_bytes, const lowbit_bip_config* cfg, int32_t num_sms,
                                         void* stream) {
    LOWBIT_REQUIRE(epi != nullptr && y != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    Plan pl{};
    const lowbit_status ps = make_plan(x, w, k, cfg, sm_count(num_sms), pl);
    if (ps.code != LOWBIT_OK) return ps;
    LOWBIT_REQUIRE(ldy >= w->rows, LOWBIT_ERR_SHAPE);
    const int out = epi->out_dtype;
    LOWBIT_REQUIRE(out >= LOWBIT_I8_OUT_F16 && out <= LOWBIT_I8_OUT_I32, LOWBIT_ERR_INVALID_ARGUMENT);
    const int esize = out == LOWBIT_I8_OUT_I32 ? 4 : out == LOWBIT_I8_OUT_I8 ? 1 : 2;
    LOWBIT_REQUIRE(lowbit::is_aligned(y, esize), LOWBIT_ERR_ALIGNMENT);
    LOWBIT_REQUIRE((epi->row_corr == nullptr) == (epi->col_corr == nullptr), LOWBIT_ERR_INVALID_ARGUMENT);
    // The plane kernels' epilogue has one rank-1 term (the int8 core's second one is for its bipolar mapping).
    LOWBIT_REQUIRE(epi->row_corr2 == nullptr && epi->col_corr2 == nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    if (out == LOWBIT_I8_OUT_I8)
        LOWBIT_REQUIRE(epi->out_scales != nullptr || (epi->out_scale > 0.f && epi->out_scale < INFINITY),
                       LOWBIT_ERR_INVALID_ARGUMENT);
    for (const void* v : {static_cast<const void*>(epi->row_scale), static_cast<const void*>(epi->col_scale),
                          static_cast<const void*>(epi->row_corr), static_cast<const void*>(epi->col_corr),
                          static_cast<const void*>(epi->bias), static_cast<const void*>(epi->out_scales)}) {
        LOWBIT_REQUIRE(lowbit::is_aligned(v, 4), LOWBIT_ERR_ALIGNMENT);
    }
    if (pl.ws_bytes > 0) {
        LOWBIT_REQUIRE(workspace != nullptr && workspace_bytes >= pl.ws_bytes, LOWBIT_ERR_INVALID_ARGUMENT);
        LOWBIT_REQUIRE(lowbit::is_aligned(workspace, 256), LOWBIT_ERR_ALIGNMENT);
    }

    lowbit::bip::Args a{};
    a.x = x->planes;
    a.ldx = x->ld;
    a.x_plane = x->plane_stride;
    a.m = x->rows;
    a.w = w->planes;
    a.ldw = w->ld;
    a.w_plane = w->plane_stride;
    a.n = w->rows;
    a.k = k;
    a.sx = x->row_sums;
    a.sw = w->row_sums;
    a.kchunks = (k + 127) / 128;
    a.steps = pl.steps;
    a.steps_per_split = pl.steps_per_split;
    a.ws = pl.splits > 1 ? static_cast<int32_t*>(workspace) : nullptr;
    a.counters = pl.splits > 1 ? reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + pl.counters_off) : nullptr;
    a.epi = lowbit::i8::Epilogue{out,           epi->row_scale, epi->row_scale_value, epi->col_scale,
                                 epi->row_corr, epi->col_corr,  epi->bias,            epi->out_scale, epi->out_scales,
                                 nullptr,       nullptr};  // no second rank-1 term on the plane path (checked above)
    a.y = y;
    a.ldy = ldy;

    lowbit::clear_pending_error();
    if (pl.ws) {
        int bx = 0;
        const cudaError_t e = lowbit_bip_launch_ws(a, x->bits, w->bits, sm_count(num_sms), pl.group,
                                                   static_cast<cudaStream_t>(stream), &bx);
        if (e == cudaErrorInvalidValue) return lowbit::status_error(LOWBIT_ERR_NO_KERNEL);
        return lowbit::status_from_cuda(e);
    }
    int info[2] = {0, 0};
    const cudaError_t e = dispatch(a, x->bits, w->bits, pl.bx, pl.splits, static_cast<cudaStream_t>(stream), info);
    if (e == cudaErrorInvalidValue) return lowbit::status_error(LOWBIT_ERR_NO_KERNEL);
    return lowbit::status_from_cuda(e);
}
