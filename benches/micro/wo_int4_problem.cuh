// Shared host side of the INT4 weight-only harnesses (wo_ws_c.cu, wo_ws4_c.cu): f16 / bf16 bit conversions, a random
// tiled INT4 problem in the library's layout (codes, per-(row pair, group) metadata, channel scales) with its
// dequantized weights, the f64 CPU reference of every output and the tolerance check. Host code only; include after the
// CUDA headers and <cuda_fp16.h> / <cuda_bf16.h>.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

static float h2f(uint16_t b, int dtype) {
    if (dtype == 0) {
        __half h;
        memcpy(&h, &b, 2);
        return __half2float(h);
    }
    uint32_t u = uint32_t(b) << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
static uint16_t f2h(float v, int dtype) {
    uint16_t b;
    if (dtype == 0) {
        const __half h = __float2half_rn(v);
        memcpy(&b, &h, 2);
    } else {
        const __nv_bfloat16 h = __float2bfloat16_rn(v);
        memcpy(&b, &h, 2);
    }
    return b;
}

struct Problem {
    int n, k, strips, ksteps, gtiles, groups;
    std::vector<uint32_t> words, meta;
    std::vector<float> chan;
    std::vector<float> wdq;  // [n][k] dequantized (T-rounded) weights
};

static void make_problem(Problem& P, int n, int k, int gtiles, bool asym, bool chan, int dtype, uint64_t seed) {
    P.n = n, P.k = k;
    P.strips = (n + 15) / 16, P.ksteps = (k + 63) / 64, P.gtiles = gtiles, P.groups = (P.ksteps * 4 + gtiles - 1) / gtiles;
    std::mt19937_64 rng(seed);
    P.words.resize(size_t(P.strips) * P.ksteps * 128);
    for (auto& w : P.words) w = uint32_t(rng());
    P.meta.resize(size_t(P.strips) * P.groups * 16);
    std::uniform_real_distribution<float> sd(0.5f / 64, 1.5f / 64);
    for (size_t i = 0; i < P.meta.size() / 2; ++i) {
        const uint16_t b0 = f2h(sd(rng) * (rng() & 1 ? 1.f : -1.f), 0), b1 = f2h(sd(rng), 0);
        P.meta[2 * i] = uint32_t(b0) | (uint32_t(b1) << 16);
        const uint32_t z0 = asym ? uint32_t(rng() % 16) : 8u, z1 = asym ? uint32_t(rng() % 16) : 8u;
        P.meta[2 * i + 1] = z0 | (z1 << 8);
    }
    P.chan.clear();
    if (chan) {
        std::uniform_real_distribution<float> cd(0.5f, 2.f);
        P.chan.resize(size_t(P.strips) * 16);
        for (auto& c : P.chan) c = cd(rng);
    }
    P.wdq.assign(size_t(n) * k, 0.f);
    static const int slot_of[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // a_i -> nibble slot
    for (int st = 0; st < P.strips; ++st)
        for (int ks = 0; ks < P.ksteps; ++ks)
            for (int lane = 0; lane < 32; ++lane)
                for (int j = 0; j < 4; ++j) {
                    const uint32_t q = P.words[((size_t(st) * P.ksteps + ks) * 32 + lane) * 4 + j];
                    const int g = lane >> 2, t = lane & 3;
                    const int gi = (ks * 4 + j) / P.gtiles;
                    for (int i = 0; i < 8; ++i) {
                        const int reg = i >> 1;
                        const int r = g + ((reg & 1) ? 8 : 0);
                        const int c = 2 * t + (i & 1) + ((reg & 2) ? 8 : 0);
                        const int row = st * 16 + r, col = ks * 64 + j * 16 + c;
                        if (row >= n || col >= k) continue;
                        const int code = (q >> (4 * slot_of[i])) & 15;
                        const uint32_t* mm = &P.meta[((size_t(st) * P.groups + gi) * 8 + g) * 2];
                        const uint16_t sb = (r < 8) ? uint16_t(mm[0] & 0xFFFF) : uint16_t(mm[0] >> 16);
                        const int z = (r < 8) ? int(mm[1] & 0xFF) : int((mm[1] >> 8) & 0xFF);
                        const float sT = h2f(f2h(h2f(sb, 0), dtype), dtype);
                        P.wdq[size_t(row) * k + col] = h2f(f2h(float(code - z) * sT, dtype), dtype);
                    }
                }
}

// f64 reference of every output ([m][n], channel scale applied), and the L1 scale of each sum.
static void reference(const Problem& P, int m, const std::vector<uint16_t>& x, int dtype, std::vector<double>& ref,
                      std::vector<double>& mag) {
    ref.assign(size_t(m) * P.n, 0.0), mag.assign(size_t(m) * P.n, 0.0);
    std::vector<float> xf(x.size());
    for (size_t i = 0; i < x.size(); ++i) xf[i] = h2f(x[i], dtype);
    const int nth = std::max(1, std::min(64, int(std::thread::hardware_concurrency())));
    std::vector<std::thread> th;
    for (int w = 0; w < nth; ++w)
        th.emplace_back([&, w]() {
            for (int64_t idx = w; idx < int64_t(m) * P.n; idx += nth) {
                const int mi = int(idx / P.n), ni = int(idx % P.n);
                const float* xr = &xf[size_t(mi) * P.k];
                const float* wr = &P.wdq[size_t(ni) * P.k];
                double s = 0, sa = 0;
                for (int kk = 0; kk < P.k; ++kk) {
                    const double v = double(xr[kk]) * wr[kk];
                    s += v, sa += fabs(v);
                }
                const double c = P.chan.empty() ? 1.0 : P.chan[ni];
                ref[idx] = s * c, mag[idx] = sa * c;
            }
        });
    for (auto& t : th) t.join();
}

static int compare(const std::vector<uint16_t>& y, const std::vector<double>& ref, const std::vector<double>& mag,
                   int dtype, const char* what, int m, const Problem& P) {
    const double rel = dtype == 0 ? 2e-3 : 8e-3;
    size_t bad = 0, nonfinite = 0;
    double worst = 0;
    for (size_t i = 0; i < y.size(); ++i) {
        const double got = h2f(y[i], dtype);
        if (!std::isfinite(got)) {
            ++nonfinite;
            continue;
        }
        const double err = fabs(got - ref[i]), tol = rel * fabs(ref[i]) + 1e-5 * mag[i] + 1e-6;
        if (!(err <= tol)) ++bad;
        worst = std::max(worst, err / (fabs(ref[i]) + 1e-5 * mag[i] + 1e-6));
    }
    const bool ok = bad == 0 && nonfinite == 0;
    if (!ok || getenv("WS_C_VERBOSE"))
        printf("  %-34s m=%d n=%d k=%d g=%d: %s (nonfinite %zu, bad %zu, worst %.3g)\n", what, m, P.n, P.k, P.gtiles * 16,
               ok ? "OK" : "FAIL", nonfinite, bad, worst);
    return ok ? 0 : 1;
}

// Device copies of a problem's codes and metadata.
struct DevW {
    uint32_t *w = nullptr, *m = nullptr;
};
