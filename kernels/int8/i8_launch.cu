// int8 GEMM launchers (extern "C", declared in lowbit_kernels.h): argument checks, the launch plan (path,
// activation rows per CTA, split-K) and the dispatch to the instances of inst_w8.cu / inst_w4.cu.
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>

#include "lowbit/check.cuh"
#include "lowbit/i8_gemm.cuh"
#include "lowbit_kernels.h"

cudaError_t lowbit_i8_launch_w8(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st);
cudaError_t lowbit_i8_launch_w4(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st);
cudaError_t lowbit_i8_launch_stream(const lowbit::i8::Args& a, int format, int mt, int sp, int splits, cudaStream_t st);
int lowbit_i8_stream_max_steps(int format, int mt, int sp);
cudaError_t lowbit_i8_launch_ws(const lowbit::i8::Args& a, int bx, int nsm, int group, cudaStream_t st);
cudaError_t lowbit_i8_launch_ws_w4(const lowbit::i8::Args& a, int bx, int nsm, int group, bool smem, cudaStream_t st);
int lowbit_i8_ws_plan(int64_t n, int64_t m, int64_t k, bool w4, int nsm, int force_bx, int* splits, int* sps);
int64_t lowbit_i8_ws_workspace(int64_t n, int64_t m, int bx, int splits, int64_t* counters_off);
bool lowbit_i8_ws_csplit(int64_t m, bool w4, int bx, int splits);

namespace {

using lowbit::i8::kBK;
using lowbit::i8::kBW;

struct Plan {
    bool wg;
    bool stream;  // the small-M streaming kernel (stream.cu): M <= 16, bx = 8 or 16 activation rows
    int sp;       // streaming kernel: strips of 32 weight rows per CTA (4 or 1)
    bool ws;  // the warp-specialized persistent kernel (ws_gemm.cu): W8 / W4, large M, split-K on small grids
    int bx;
    int splits;
    int steps_per_split;
    int64_t ws_bytes;      // int32 accumulator + counters, 0 without split-K
    int64_t counters_off;  // byte offset of the counters in the workspace
};

int sm_count(int32_t given) {
    if (given > 0) return given;
    int dev = 0, n = 0;
    if (cudaGetDevice(&dev) == cudaSuccess) cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, dev);
    return n > 0 ? n : 132;
}

cudaError_t dispatch(const lowbit::i8::Args& a, bool w4, bool wg, int bx, int splits, cudaStream_t st) {
    return w4 ? lowbit_i8_launch_w4(a, wg ? 1 : 0, bx, splits, st) : lowbit_i8_launch_w8(a, wg ? 1 : 0, bx, splits, st);
}

// wgmma runs here: a compute capability 9.x device and sm_90a code in the library. Cached per device ordinal
// (the answer cannot change within a process), so launches pay for the queries once.
bool wgmma_runs() {
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
    bool ok = false;
    if (major == 9) {
        lowbit::i8::Args probe{};
        ok = dispatch(probe, false, true, 8, -1, nullptr) == cudaSuccess;
        (void)cudaGetLastError();
    }
    if (dev >= 0 && dev < 64) cache[dev].store(ok ? 2 : 1);
    return ok;
}

// The warp-specialized kernel runs here: wgmma runs and ws_gemm.cu has its sm_90a instances.
bool ws_runs() {
    static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
    int dev = 0;
    if (!wgmma_runs() || cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (dev >= 0 && dev < 64 && cache[dev].load(std::memory_order_relaxed) != 0) return cache[dev].load() == 2;
    lowbit::i8::Args probe{};
    const bool ok = lowbit_i8_launch_ws(probe, 128, -1, 0, nullptr) == cudaSuccess;
    (void)cudaGetLastError();
    if (dev >= 0 && dev < 64) cache[dev].store(ok ? 2 : 1);
    return ok;
}

// Smallest M at which the automatic plan takes the warp-specialized kernel for W8: measured 2.3-3.6x faster than
// the wgmma kernel at M = 256, 1024, 4096 on 4096x4096, 28672x8192, 8192x28672 (H100, NOTES.md v5).
constexpr int64_t kWsMinM = 256;

// M up to which the automatic plan takes the streaming kernel (stream.cu).
constexpr int64_t kStreamMaxM = 16;

// The streaming kernel's plan: 8 or 16 activation rows per CTA; split-K at least as far as each CTA's activation
// slice fits its shared-memory budget. SP = 8 (256-row CTAs, one per SM) replaces the 128-row plan where that one
// needs a second wave or leaves slots empty (NOTES v13). Where the 128-row tiles give at least one CTA per SM
// (SP = 4), the split that needs the fewest waves of 2 CTAs/SM; else 32-row CTAs with 8 warps splitting K in the
// block (SP = 1) and about one CTA per SM in all, so small N needs little or no cross-CTA split-K (its red.global
// sums, fence and arrival counter are a latency chain per CTA: v6, 4096x4096 at 0.83 TB/s) when those fit one wave
// of 2 CTAs/SM.
// A forced split uses SP = 4.
// Steps (128 columns) per planning unit: the 2-bit bipolar format streams 256-column units, so its splits hold
// whole pairs of steps.
int stream_unit(const lowbit_i8_weight* w) { return w->format == LOWBIT_I8_BIP2 ? 2 : 1; }

lowbit_status stream_plan(const lowbit_i8_weight* w, int64_t m, const lowbit_i8_config* cfg, int nsm, Plan& p) {
    const int unit = stream_unit(w);
    p.stream = true;
    p.wg = false;
    if (cfg && cfg->bx) {
        LOWBIT_REQUIRE((cfg->bx == 8 || cfg->bx == 16) && cfg->bx >= m, LOWBIT_ERR_INVALID_ARGUMENT);
        p.bx = cfg->bx;
    } else {
        p.bx = m <= 8 ? 8 : 16;
    }
    const int ksteps = (w->k + kBK * unit - 1) / (kBK * unit);  // in planning units
    const int ntiles = (w->n + kBW - 1) / kBW;
    LOWBIT_REQUIRE(ntiles <= 65535, LOWBIT_ERR_SHAPE);
    int max_steps = lowbit_i8_stream_max_steps(w->format, p.bx, 4) / unit;
    const int smin = (ksteps + max_steps - 1) / max_steps;
    const int strips = (w->n + 31) / 32;
    int splits = smin;
    p.sp = 4;
    if (cfg && cfg->splits) {
        splits = cfg->splits;
    } else if (int64_t(ntiles) * smin < nsm &&
               int64_t(strips) * std::max(smin, (nsm + strips / 2) / strips) <= 2 * int64_t(nsm)) {
        // One wave of 32-row CTAs (v7, H100: 2.2 vs 2.6 TB/s on 4096x8192 W4; a second wave of them, as for
        // 10576x2560 or 8192x8192 at M = 16, measured slower than the 128-row plan below).
        p.sp = 1;
        splits = std::max(smin, (nsm + strips / 2) / strips);
    } else {
        // Fewest waves first (each CTA pays a fixed start-up and split-K finish: long CTAs amortize it, and the
        // weight stream needs bytes in flight, not full SMs), then the fullest last wave.
        const int slots = 2 * nsm;  // two 256-thread CTAs per SM (<= 128 registers, <= 100 KB shared memory)
        const int smax = ksteps < 32 ? ksteps : 32;
        double best = 0;
        int64_t best_waves = INT64_MAX;
        for (int s = smin; s <= (smax > smin ? smax : smin); ++s) {
            const int per = (ksteps + s - 1) / s;  // the split that launches: ceil(ksteps / per) CTAs per tile
            const int64_t ctas = int64_t(ntiles) * ((ksteps + per - 1) / per);
            const int64_t waves = (ctas + slots - 1) / slots;
            const double eff = double(ctas) / double(waves * slots);
            if (waves < best_waves || (waves == best_waves && eff > best + 0.02)) {
                best = eff, best_waves = waves, splits = s;
            }
        }
        // One 256-row CTA of 16 warps per SM (SP = 8, 176 KB activation budget) where the 128-row plan needs a
        // second wave or leaves > 10% of its wave's slots empty, and the 256-row CTAs fill >= 80% of the SMs in one
        // wave (NOTES v13, H100: 28672x8192 M = 16 W8 105.8 -> 90.6 us, W4-g128 73.6 -> 54.2 us; M = 1 -2 us;
        // 8192x28672 M = 16 W8 98.1 -> 92.0, W4-g128 64.9 -> 59.1 us).
        if (best_waves > 1 || best < 0.9) {
            const int max8 = lowbit_i8_stream_max_steps(w->format, p.bx, 8) / unit;
            const int64_t blocks = (w->n + 255) / 256;
            int s8 = (ksteps + max8 - 1) / max8;
            while (blocks * (s8 + 1) <= nsm && s8 + 1 <= ksteps) ++s8;
            if (blocks * s8 <= nsm && 10 * blocks * s8 >= 8 * int64_t(nsm)) {
                p.sp = 8;
                splits = s8;
                max_steps = max8;
            }
        }
    }
    if (splits > ksteps) splits = ksteps;
    p.steps_per_split = (ksteps + splits - 1) / splits;
    LOWBIT_REQUIRE(p.steps_per_split <= max_steps, LOWBIT_ERR_INVALID_ARGUMENT);
    p.splits = (ksteps + p.steps_per_split - 1) / p.steps_per_split;
    p.steps_per_split *= unit;
    if (p.splits > 1) {
        // One int32 slab [M][32 SP] per split and CTA row block (stream.cu finish_slab, NOTES v22: plain stores
        // summed by the last CTA to arrive, instead of red.global into one [M][N] sum).
        const int64_t rows = 32 * int64_t(p.sp), blocks = (w->n + rows - 1) / rows;
        const int64_t acc = (int64_t(p.splits) * blocks * m * rows * 4 + 255) / 256 * 256;
        p.counters_off = acc;
        p.ws_bytes = acc + int64_t(strips) * 4;  // one arrival counter per CTA row block (<= strips)
    } else {
        p.ws_bytes = 0;
        p.counters_off = 0;
    }
    return lowbit::status_ok();
}

// 9 <= M <= 16 on the warp-specialized kernel instead of the streaming kernel (NOTES v15, H100 sweep at M = 16 on the 11
// bench shapes, same run): W8 on every shape (BX = 64 tiles, split-K by the ws plan's bandwidth model: 1.00-1.69x the
// streaming kernel's speed, e.g. 10576x2560 23.8 -> 14.1 us, 11008x4096 28.8 -> 20.1 us, 4096x4096 13.2 -> 11.7 us;
// its int32 split-K finish with 16 x 128 red.global per CTA and the activation copy were the cost), W4 where the
// unsplit 128-row tiles fill 60-100% of the SMs in one wave (10576x2560 22.5 -> 15.2 us, 11008x4096 26.4 -> 21.6 us;
// elsewhere the streaming kernel's W4 stays ahead: the ws consumers' expansion costs ~0.5 us per 128-column stage).
// M <= 8 keeps the streaming kernel (weights on the MMA's A side, PDL: ahead at M = 1 on 10 of 11 shapes).
bool ws_small_m(const lowbit_i8_weight* w, int64_t m, int nsm) {
    if (m < 9 || m > 16) return false;
    if (w->format == LOWBIT_I8_W4) {
        const int64_t tiles = (w->n + kBW - 1) / kBW;
        if (10 * tiles < 6 * int64_t(nsm) || tiles > nsm) return false;
    } else if (w->format != LOWBIT_I8_W8) {
        return false;
    }
    return ws_runs();
}

bool valid_bx(bool wg, bool w4, int bx) {
    if (wg) return bx == 8 || bx == 16 || bx == 64 || bx == 128 || (bx == 256 && !w4);
    return bx == 16 || bx == 64;
}

lowbit_status check_weight(const lowbit_i8_weight* w) {
    LOWBIT_REQUIRE(w != nullptr && w->codes != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(w->format >= LOWBIT_I8_W8 && w->format <= LOWBIT_I8_BIP2, LOWBIT_ERR_INVALID_ARGUMENT);
    const bool w4 = w->format == LOWBIT_I8_W4;
    const bool k32 = w->format != LOWBIT_I8_W8;
    LOWBIT_REQUIRE(w->n >= 1 && w->k >= (k32 ? 32 : 16) && w->k % (k32 ? 32 : 16) == 0, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(lowbit::is_aligned(w->codes, 16), LOWBIT_ERR_ALIGNMENT);
    // Bipolar codes: per-channel only (the bipolar GEMM's weight scales are f32 channel scales in the epilogue).
    LOWBIT_REQUIRE(w4 || w->format == LOWBIT_I8_W8 || w->group_scales == nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    if (w4 && w->group_scales) {
        LOWBIT_REQUIRE(w->group_len >= 32 && w->group_len % 32 == 0 && w->k % w->group_len == 0, LOWBIT_ERR_SHAPE);
    }
    return lowbit::status_ok();
}

lowbit_status make_plan(const lowbit_i8_weight* w, int64_t m, const lowbit_i8_config* cfg, int nsm, Plan& p) {
    const lowbit_status ws = check_weight(w);
    if (ws.code != LOWBIT_OK) return ws;
    LOWBIT_REQUIRE(m >= 1 && m <= INT32_MAX, LOWBIT_ERR_SHAPE);
    const bool w4 = w->format == LOWBIT_I8_W4;
    const int path = cfg ? cfg->path : LOWBIT_I8_PATH_AUTO;
    // The streaming kernel serves M <= kStreamMaxM (W4: per-channel or groups of a multiple of 128 columns); the
    // automatic plan takes it there unless a tile width or split is forced.
    p.stream = false;
    // Measured crossover (H100): W4 streams faster at every M <= 16 (NOTES v7); W8 at M = 1 too since the
    // streaming kernel puts the weights on the MMA's A side at M <= 8 (NOTES v10b: equal on the 28672-wide shapes,
    // 0.3-1.4 us faster on 4096x4096, 11008x4096, 10576x2560).
    const bool stream_fits = m <= kStreamMaxM && (!w4 || !w->group_scales || w->group_len % kBK == 0);
    // Bipolar packed codes (kernels/int8/NOTES.md v10) run on the streaming kernel only (M <= 16).
    if (w->format == LOWBIT_I8_BIP4 || w->format == LOWBIT_I8_BIP2) {
        LOWBIT_REQUIRE(path == LOWBIT_I8_PATH_AUTO || path == LOWBIT_I8_PATH_STREAM, LOWBIT_ERR_NO_KERNEL);
        LOWBIT_REQUIRE(m <= kStreamMaxM, LOWBIT_ERR_NO_KERNEL);
        LOWBIT_REQUIRE(!cfg || (cfg->bx >= 0 && cfg->splits >= 0), LOWBIT_ERR_INVALID_ARGUMENT);
        return stream_plan(w, m, cfg, nsm, p);
    }
    const bool small_ws = ws_small_m(w, m, nsm);
    const bool stream_auto = stream_fits && !small_ws;
    if (path == LOWBIT_I8_PATH_STREAM ||
        (path == LOWBIT_I8_PATH_AUTO && stream_auto && !(cfg && (cfg->bx || cfg->splits)))) {
        LOWBIT_REQUIRE(!cfg || (cfg->bx >= 0 && cfg->splits >= 0), LOWBIT_ERR_INVALID_ARGUMENT);
        LOWBIT_REQUIRE(stream_fits, LOWBIT_ERR_INVALID_ARGUMENT);
        return stream_plan(w, m, cfg, nsm, p);
    }
    LOWBIT_REQUIRE(path == LOWBIT_I8_PATH_AUTO || path == LOWBIT_I8_PATH_MMA || path == LOWBIT_I8_PATH_WGMMA ||
                       path == LOWBIT_I8_PATH_WS,
                   LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(!cfg || (cfg->bx >= 0 && cfg->splits >= 0), LOWBIT_ERR_INVALID_ARGUMENT);
    // W4 too (NOTES v9, H100: 2.0-4.0x the v4 W4 tile kernel at every M >= 256 measured; check_weight already
    // limits W4 groups to multiples of 32 columns, which the kernel serves).
    const bool want_ws = path == LOWBIT_I8_PATH_WS ||
                         (path == LOWBIT_I8_PATH_AUTO && (m >= kWsMinM || small_ws) && !(cfg && (cfg->bx || cfg->splits)));
    if (want_ws) {
        // 64, 128 or 256 activation rows per tile; split-K only where the tiles leave SMs idle (the wave model of
        // lowbit_i8_ws_plan, NOTES v14), never forced.
        LOWBIT_REQUIRE(!cfg || cfg->splits <= 1, LOWBIT_ERR_INVALID_ARGUMENT);
        LOWBIT_REQUIRE(!cfg || cfg->bx == 0 || cfg->bx == 64 || cfg->bx == 128 || cfg->bx == 256,
                       LOWBIT_ERR_INVALID_ARGUMENT);
        if (ws_runs()) {
            LOWBIT_REQUIRE((w->n + kBW - 1) / kBW <= 65535, LOWBIT_ERR_SHAPE);
            p.ws = true;
            p.wg = true;
            p.bx = lowbit_i8_ws_plan(w->n, m, w->k, w4, nsm, cfg ? cfg->bx : 0, &p.splits, &p.steps_per_split);
            // v20: a cluster split (W4, 2 slices) reduces through distributed shared memory: no workspace.
            p.ws_bytes = lowbit_i8_ws_csplit(m, w4, p.bx, p.splits)
                             ? 0
                             : lowbit_i8_ws_workspace(w->n, m, p.bx, p.splits, &p.counters_off);
            return lowbit::status_ok();
        }
        LOWBIT_REQUIRE(path != LOWBIT_I8_PATH_WS, LOWBIT_ERR_NO_KERNEL);
    }
    p.ws = false;
    if (path == LOWBIT_I8_PATH_WGMMA) {
        LOWBIT_REQUIRE(wgmma_runs(), LOWBIT_ERR_NO_KERNEL);
        p.wg = true;
    } else {
        p.wg = path == LOWBIT_I8_PATH_AUTO && wgmma_runs();
    }
    if (cfg && cfg->bx) {
        LOWBIT_REQUIRE(valid_bx(p.wg, w4, cfg->bx), LOWBIT_ERR_INVALID_ARGUMENT);
        p.bx = cfg->bx;
    } else if (p.wg) {
        // BX = 256 (W8 only) was measured slower than 128 at M = 1024 / 4096 on an H200 (NOTES v3).
        p.bx = m <= 8 ? 8 : m <= 16 ? 16 : m <= 64 ? 64 : 128;
    } else {
        p.bx = m <= 16 ? 16 : 64;
    }
    const int ksteps = (w->k + kBK - 1) / kBK;
    const int64_t tiles = int64_t((w->n + kBW - 1) / kBW) * ((m + p.bx - 1) / p.bx);
    LOWBIT_REQUIRE((w->n + kBW - 1) / kBW <= 65535, LOWBIT_ERR_SHAPE);
    int splits = 1;
    if (cfg && cfg->splits) {
        splits = cfg->splits;
    } else if (m <= 64) {
        // Weight streaming: fill every SM, and choose the split whose last wave is fullest (the narrow wgmma
        // instances run three CTAs per SM, lowbit/i8_gemm.cuh min_blocks).
        const int slots = nsm * ((p.wg && p.bx <= 16) ? 3 : 1);
        const int smax = ksteps / 2 < 16 ? ksteps / 2 : 16;
        double best = 0;
        for (int s = 1; s <= (smax > 1 ? smax : 1); ++s) {
            const int64_t ctas = tiles * s;
            const int64_t waves = (ctas + slots - 1) / slots;
            const double eff = double(ctas) / double(waves * slots);
            if (eff > best + 0.02) best = eff, splits = s;
        }
    } else if (tiles < nsm / 2) {
        const int64_t s = nsm / tiles;
        const int smax = ksteps / 4 > 1 ? ksteps / 4 : 1;
        splits = int(s < smax ? s : smax);
    }
    if (splits > ksteps) splits = ksteps;
    p.steps_per_split = (ksteps + splits - 1) / splits;
    p.splits = (ksteps + p.steps_per_split - 1) / p.steps_per_split;
    if (p.splits > 1) {
        const int64_t acc = (m * int64_t(w->n) * 4 + 255) / 256 * 256;
        p.counters_off = acc;
        p.ws_bytes = acc + tiles * 4;
    } else {
        p.ws_bytes = 0;
        p.counters_off = 0;
    }
    return lowbit::status_ok();
}

}  // namespace

extern "C" int32_t lowbit_i8_wgmma_available(void) { return wgmma_runs() ? 1 : 0; }

extern "C" int64_t lowbit_i8_gemm_workspace_bytes(const lowbit_i8_weight* w, int64_t m, const lowbit_i8_config* cfg,
                                                  int32_t num_sms) {
    Plan p{};
    if (make_plan(w, m, cfg, sm_count(num_sms), p).code != LOWBIT_OK) return -1;
    return p.ws_bytes;
}

extern "C" lowbit_status lowbit_i8_gemm(const lowbit_i8_weight* w, const int8_t* x, int64_t ldx, int64_t m,
                                        const lowbit_i8_epilogue* epi, void* y, int64_t ldy, void* workspace,
                                        int64_t workspace_bytes, const lowbit_i8_config* cfg, int32_t num_sms,
                                        void* stream) {
    LOWBIT_REQUIRE(x != nullptr && epi != nullptr && y != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    // The second rank-1 pair: both or neither, 4-byte aligned (checked before planning: host-only, testable on CPU).
    LOWBIT_REQUIRE((epi->row_corr2 == nullptr) == (epi->col_corr2 == nullptr), LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(lowbit::is_aligned(epi->row_corr2, 4) && lowbit::is_aligned(epi->col_corr2, 4),
                   LOWBIT_ERR_ALIGNMENT);
    Plan p{};
    const lowbit_status ps = make_plan(w, m, cfg, sm_count(num_sms), p);
    if (ps.code != LOWBIT_OK) return ps;
    LOWBIT_REQUIRE(ldx >= w->k && ldy >= w->n, LOWBIT_ERR_SHAPE);
    LOWBIT_REQUIRE(ldx % 16 == 0 && lowbit::is_aligned(x, 16), LOWBIT_ERR_ALIGNMENT);
    const int out = epi->out_dtype;
    LOWBIT_REQUIRE(out >= LOWBIT_I8_OUT_F16 && out <= LOWBIT_I8_OUT_I32, LOWBIT_ERR_INVALID_ARGUMENT);
    const int esize = out == LOWBIT_I8_OUT_I32 ? 4 : out == LOWBIT_I8_OUT_I8 ? 1 : 2;
    LOWBIT_REQUIRE(lowbit::is_aligned(y, esize), LOWBIT_ERR_ALIGNMENT);
    LOWBIT_REQUIRE((epi->row_corr == nullptr) == (epi->col_corr == nullptr), LOWBIT_ERR_INVALID_ARGUMENT);
    if (out == LOWBIT_I8_OUT_I8)
        LOWBIT_REQUIRE(epi->out_scales != nullptr || (epi->out_scale > 0.f && epi->out_scale < INFINITY),
                       LOWBIT_ERR_INVALID_ARGUMENT);
    for (const void* v : {static_cast<const void*>(epi->row_scale), static_cast<const void*>(epi->col_scale),
                          static_cast<const void*>(epi->row_corr), static_cast<const void*>(epi->col_corr),
                          static_cast<const void*>(epi->bias), static_cast<const void*>(epi->out_scales)}) {
        LOWBIT_REQUIRE(lowbit::is_aligned(v, 4), LOWBIT_ERR_ALIGNMENT);
    }
    if (p.ws_bytes > 0) {
        LOWBIT_REQUIRE(workspace != nullptr && workspace_bytes >= p.ws_bytes, LOWBIT_ERR_INVALID_ARGUMENT);
        LOWBIT_REQUIRE(lowbit::is_aligned(workspace, 256), LOWBIT_ERR_ALIGNMENT);
    }

    lowbit::i8::Args a{};
    a.x = x;
    a.ldx = ldx;
    a.m = int(m);
    a.w = static_cast<const uint8_t*>(w->codes);
    a.n = w->n;
    a.k = w->k;
    const bool w4 = w->format == LOWBIT_I8_W4;
    a.gs = w4 ? w->group_scales : nullptr;
    a.group_len = a.gs ? w->group_len : w->k;
    a.groups = w->k / a.group_len;
    a.ksteps = p.stream ? (w->k + kBK * stream_unit(w) - 1) / (kBK * stream_unit(w)) * stream_unit(w)
                        : (w->k + kBK - 1) / kBK;
    a.steps_per_split = p.steps_per_split;
    a.ws = p.splits > 1 && p.ws_bytes > 0 ? static_cast<int32_t*>(workspace) : nullptr;
    a.counters = p.splits > 1 && p.ws_bytes > 0
                     ? reinterpret_cast<int32_t*>(static_cast<char*>(workspace) + p.counters_off)
                     : nullptr;
    a.epi = lowbit::i8::Epilogue{out,          epi->row_scale, epi->row_scale_value, epi->col_scale,
                                 epi->row_corr, epi->col_corr,  epi->bias,            epi->out_scale, epi->out_scales,
                                 epi->row_corr2, epi->col_corr2};
    a.y = y;
    a.ldy = ldy;

    lowbit::clear_pending_error();
    if (p.stream) {
        const cudaError_t es =
            lowbit_i8_launch_stream(a, w->format, p.bx, p.sp, p.splits, static_cast<cudaStream_t>(stream));
        if (es == cudaErrorInvalidValue) return lowbit::status_error(LOWBIT_ERR_NO_KERNEL);
        return lowbit::status_from_cuda(es);
    }
    const cudaStream_t st = static_cast<cudaStream_t>(stream);
    // W4: the shared-memory expansion variant (4-8% faster than register-A at BX = 256, equal otherwise; NOTES v9).
    const cudaError_t e = !p.ws ? dispatch(a, w4, p.wg, p.bx, p.splits, st)
                          : w4  ? lowbit_i8_launch_ws_w4(a, p.bx, sm_count(num_sms), 0, true, st)
                                : lowbit_i8_launch_ws(a, p.bx, sm_count(num_sms), 0, st);
    if (e == cudaErrorInvalidValue) return lowbit::status_error(LOWBIT_ERR_NO_KERNEL);
    return lowbit::status_from_cuda(e);
}
