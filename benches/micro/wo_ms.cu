// v18 (kernels/weight_only/NOTES.md "v18"): the block's group metadata in shared memory (gemm_kernel MS, v16) for every
// small-M format, A/B in one process. One source, compiled once per format (-DWO_MS_FMT=0..6, so nvcc builds them in
// parallel) and once with -DWO_MS_MAIN (the driver, cuBLAS f16 by dlopen); benches/micro/wo_ms.sh builds and links:
//
//   benches/micro/wo_ms.sh [out-dir]      # -> wo_ms
//   ./wo_ms check    # per format: the library plan and forced plans (splits 1 / 3 / 7, compact X / KW kw 2 / 4 / 8),
//                    # M 1 / 2 / 3 / 5 / 8 / 16, g32 / g64 / g128 / per-channel, odd N / K, f16 (+ bf16 for INT4 / Mix3 /
//                    # Mix4): the MS output (g_ms = 1) bit for bit against the kernel without it (g_ms = 0, main's
//                    # instance), which the library tests check against references; NaN-poisoned outputs
//   ./wo_ms bench    # 28672x8192, 8192x28672, 11008x4096, 4096x4096 at M = 1, 2, 4, 8, 16: cuBLAS f16, then per format
//                    # the library plan with g_ms = 0 (main's instances for Mix3 / Mix4 / the others; v14 for INT4),
//                    # g_ms = -1 (the library rule of this build; BitMoD: LOWBIT_WO_MS_BITMOD) and g_ms = 1, in the order 0 1 0 1 0 1 (CUDA-graph replays
//                    # over weight copies > 200 MB, benches/micro/baselines.cuh graph_us); best of each
//   ./wo_ms bench2   # the other formats (INT3, INT2, INT8, LUT4) at M = 1 / 4 on 28672x8192 and 4096x4096, same A/B
//
// Weights are random words and metadata (finite f16 scales, random aux; LUT: table 0) generated on the device; the plan
// is wo_launch.cu make_plan's mma.sync rule (mirrored below, with compact_kw's metadata bytes for the formats of the
// library rule).
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "baselines.cuh"
#define LOWBIT_WO_PROBE 1
#include "lowbit/wo_gemm.cuh"

using namespace lowbit::wo;
#define CK MICRO_CK

struct HWeight {
    int n, k, k_pad, n_pad, strips, ksteps, groups, gl, tiles, bits;
    bool hi, lut;
    uint32_t *words = nullptr, *hiw = nullptr, *meta = nullptr;
    float *chan = nullptr, *tab = nullptr;
    void free_dev() {
        cudaFree(words), cudaFree(hiw), cudaFree(meta), cudaFree(chan), cudaFree(tab);
    }
};

// Harness entry points of one format (defined in its -DWO_MS_FMT translation unit).
struct FmtOps {
    const char* name;
    int bits;
    // ABAB over g_ms = 0 / -1 / 1 on one set of weight copies: best µs of each; `plan` gets the plan's text.
    void (*bench)(int n, int k, int m, int rounds, float out[3], char* plan);
    // Bit-exact MS on / off over the check list; adds to pass / fail.
    void (*check)(int& pass, int& fail);
};

#ifndef WO_MS_MAIN
namespace {  // (one copy per format object)
__device__ __forceinline__ uint32_t hash32(uint32_t x) {
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}
__global__ void fill_words(uint32_t* p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        p[i] = hash32(uint32_t(i) * 2654435761u ^ seed) ^ hash32(uint32_t(i >> 32) + seed);
}
// Metadata words: even = the f16 scale pair (finite, 1/16 .. 1/8), odd = aux (random; LUT: 0 = table 0).
__global__ void fill_meta(uint32_t* p, size_t n, uint32_t seed, int lut) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        const uint32_t h = hash32(uint32_t(i) * 0x9E3779B9u ^ seed);
        p[i] = (i & 1) ? (lut ? 0u : h) : ((h & 0x03FF03FFu) | 0x2C002C00u);
    }
}
__global__ void fill_f32(float* p, size_t n, uint32_t seed, float lo, float span) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        p[i] = lo + span * float(hash32(uint32_t(i) ^ seed) & 0xFFFF) / 65536.f;
}
template <typename T>
__global__ void fill_x(T* p, size_t n, uint32_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        p[i] = T(float(int(hash32(uint32_t(i) + seed * 7919u) % 2001) - 1000) / 1000.f);
}

template <class Fmt>
static HWeight make_weight(int n, int k, int gl, uint32_t seed) {
    HWeight w{};
    const int kstep = Fmt::kTiles * 16;
    w.n = n, w.k = k, w.tiles = Fmt::kTiles, w.bits = Fmt::kBits, w.hi = Fmt::kHasHi, w.lut = Fmt::kIsLut;
    w.k_pad = (k + kstep - 1) / kstep * kstep;
    w.gl = gl > 0 ? gl : w.k_pad;  // 0: per-channel
    if (w.k_pad % w.gl) w.k_pad = (w.k_pad + w.gl - 1) / w.gl * w.gl;
    w.n_pad = (n + 15) / 16 * 16, w.strips = w.n_pad / 16, w.ksteps = w.k_pad / kstep, w.groups = w.k_pad / w.gl;
    const size_t nw = size_t(w.strips) * w.ksteps * 32 * 4, nm = size_t(w.strips) * w.groups * 8 * 2;
    CK(cudaMalloc(&w.words, nw * 4));
    fill_words<<<1024, 256>>>(w.words, nw, seed);
    if (w.hi) {
        CK(cudaMalloc(&w.hiw, nw / 2 * 4));
        fill_words<<<1024, 256>>>(w.hiw, nw / 2, seed + 1);
    }
    CK(cudaMalloc(&w.meta, nm * 4));
    fill_meta<<<256, 256>>>(w.meta, nm, seed + 2, w.lut);
    if (std::is_same_v<Fmt, Mix3> || std::is_same_v<Fmt, Mix4>) {
        CK(cudaMalloc(&w.chan, size_t(w.n_pad) * 4));
        fill_f32<<<64, 256>>>(w.chan, w.n_pad, seed + 3, 0.5f, 0.5f);
    }
    if (w.lut) {
        CK(cudaMalloc(&w.tab, size_t(1) << Fmt::kBits << 2));
        fill_f32<<<1, 256>>>(w.tab, size_t(1) << Fmt::kBits, seed + 4, -4.f, 8.f);
    }
    CK(cudaGetLastError());
    return w;
}

struct HPlan {
    int mt, mtiles, splits, sps, kc, kw;
};
static int g_sms = 0;
static void init_sms() {
    if (g_sms > 0) return;
    int dev = 0;
    CK(cudaGetDevice(&dev));
    CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, dev));
}
static int optin_smem() {
    int dev = 0, v = 48 * 1024;
    cudaGetDevice(&dev);
    cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev);
    return v;
}
// wo_launch.cu compact_kw (the library's rule; the copy counted for the formats of ms_format()).
template <class Fmt>
static int compact_kw(int m, int mt, int strips, int ksteps, int64_t splitk_blocks, int ms_gtiles) {
    if (mt != 1 || m != 1 || Fmt::kIsLut) return 0;
    const int kstep = Fmt::kTiles * 16;
    const int max_b = Fmt::kHasHi || Fmt::kTiles > 4 ? 3 : 4;
    for (int kw = kWarps; kw > 1; kw /= 2) {
        const int64_t x = int64_t(cx_smem_bytes(m, ksteps * kstep, kstep));
        const int64_t ms = ms_gtiles > 0 ? ms_bytes(kWarps / kw, ksteps, Fmt::kTiles, ms_gtiles) : 0;
        const int64_t per_block = x + ms + 1024;
        int64_t occ = int64_t(smem_per_sm()) / per_block;
        occ = occ > max_b ? max_b : occ;
        if (occ < 1 || per_block - 1024 > optin_smem()) return 0;
        const int64_t blocks = (strips + kWarps / kw - 1) / (kWarps / kw);
        if (blocks <= occ * g_sms && ksteps >= kw) return (blocks >= 0.6 * 4 * g_sms || blocks >= splitk_blocks) ? kw : 0;
    }
    return 0;
}
// wo_launch.cu make_plan (mma.sync path); force_splits / force_kw as lowbit_wo_config's splits / k_warps.
template <class Fmt>
static HPlan make_plan(const HWeight& w, int m, int force_splits = 0, int force_kw = 0) {
    init_sms();
    HPlan p{};
    p.mt = m <= 8 ? 1 : m <= 16 ? 2 : 4;
    p.mtiles = (m + p.mt * 8 - 1) / (p.mt * 8);
    const int kstep = Fmt::kTiles * 16, ksteps = w.ksteps, strips = w.strips, nblk = (strips + kWarps - 1) / kWarps;
    int splits;
    if (force_splits > 0) {
        splits = force_splits;
    } else {
        const int64_t blocks = int64_t(nblk) * p.mtiles;
        splits = int((8 * int64_t(g_sms) + blocks - 1) / blocks);
        splits = std::max(1, std::min(splits, std::max(1, ksteps / 8)));
    }
    splits = std::min(splits, ksteps);
    const int kc_cap = 2048 / p.mt;
    p.kw = 1;
    const int cx = force_kw == 0 && force_splits == 0
                       ? compact_kw<Fmt>(m, p.mt, strips, ksteps, int64_t(nblk) * p.mtiles * splits, ms_format<Fmt>() ? w.gl / 16 : 0)
                       : 0;
    if (force_kw > 1) {
        p.kw = force_kw, splits = 1;
    } else if (cx > 1) {
        p.kw = cx, splits = 1;
    } else if (force_kw == 0 && p.mt <= 2 && force_splits == 0 && ksteps * kstep <= kc_cap && int64_t(nblk) * p.mtiles < g_sms) {
        for (int kw = kWarps; kw > 1; kw /= 2) {
            const int64_t b = int64_t((strips + kWarps / kw - 1) / (kWarps / kw)) * p.mtiles;
            if (b <= g_sms && ksteps >= kw) {
                p.kw = kw, splits = 1;
                break;
            }
        }
    }
    p.sps = (ksteps + splits - 1) / splits;
    p.splits = (ksteps + p.sps - 1) / p.sps;
    int kc = p.sps * kstep;
    if (kc > kc_cap && p.kw == 1) kc = kc_cap / kstep * kstep;
    p.kc = std::max(kc, kstep);
    return p;
}

struct Bufs {
    void* x;
    void* y;
    float* ws;
};
// wo_launch.cu lowbit_wo_gemm + run(): Args, launch_mt, convert after split-K.
template <class Fmt, typename T>
static cudaError_t launch(const HWeight& w, const HPlan& pl, const Bufs& b, int m, cudaStream_t s, bool forced_splits) {
    Args a{};
    a.words = w.words, a.hi_words = w.hiw, a.meta = w.meta, a.chan = w.chan, a.lut = w.tab;
    a.n_tables = Fmt::kIsLut ? 1 : 0;
    a.x = b.x, a.y = b.y, a.ws = pl.splits > 1 ? b.ws : nullptr;
    a.m = m, a.n = w.n, a.k = w.k, a.ldx = w.k;
    a.strips = w.strips, a.ksteps = w.ksteps, a.gtiles = w.gl / 16, a.groups = w.groups;
    a.steps_per_split = pl.sps, a.kc = pl.kc;
    a.x_vec = w.k % 8 == 0;
    a.auto_splits = !forced_splits;
    a.kw = pl.kw;
    a.sms = g_sms;
    cudaError_t e;
    switch (pl.mt) {
        case 1: e = launch_mt<Fmt, T, 1>(a, pl.splits, pl.mtiles, s); break;
        case 2: e = launch_mt<Fmt, T, 2>(a, pl.splits, pl.mtiles, s); break;
        default: e = launch_mt<Fmt, T, 4>(a, pl.splits, pl.mtiles, s); break;
    }
    if (e != cudaSuccess || pl.splits == 1) return e;
    return launch_convert<T>(b.ws, static_cast<T*>(b.y), int64_t(m) * w.n, s);
}

template <class Fmt>
static void bench_fmt(int n, int k, int m, int rounds, float out[3], char* plan) {
    const size_t bytes = size_t(n) * k * Fmt::kBits / 8;
    const int nc = micro::copies_for(bytes);
    std::vector<HWeight> ws;
    for (int i = 0; i < nc; ++i) ws.push_back(make_weight<Fmt>(n, k, 128, 10 + i));
    const HPlan pl = make_plan<Fmt>(ws[0], m);
    snprintf(plan, 64, "mt%d s%d kw%d", pl.mt, pl.splits, pl.kw);
    Bufs b{};
    CK(cudaMalloc(&b.x, size_t(m) * k * 2));
    fill_x<__half><<<256, 256>>>(static_cast<__half*>(b.x), size_t(m) * k, 1);
    CK(cudaMalloc(&b.y, size_t(m) * n * 2));
    CK(cudaMalloc(&b.ws, size_t(m) * n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * n * 4));
    CK(cudaDeviceSynchronize());
    const int modes[3] = {0, -1, 1};
    for (int i = 0; i < 3; ++i) out[i] = 1e30f;
    for (int r = 0; r < rounds; ++r) {
        for (int i = 0; i < 3; ++i) {
            g_ms = modes[i];
            const double us = micro::graph_us(nc, [&](int c, cudaStream_t s) { CK((launch<Fmt, __half>(ws[c], pl, b, m, s, false))); });
            out[i] = std::min(out[i], float(us));
        }
    }
    g_ms = -1;
    for (auto& w : ws) w.free_dev();
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
}

// One configuration: g_ms = 0 and 1 outputs bit for bit (NaN-poisoned first), and the g_ms = 0 output finite.
template <class Fmt, typename T>
static void check_one(const HWeight& w, int m, int fs, int fkw, uint32_t seed, int& pass, int& fail, const char* name) {
    const HPlan pl = make_plan<Fmt>(w, m, fs, fkw);
    Bufs b{};
    CK(cudaMalloc(&b.x, size_t(m) * w.k * sizeof(T)));
    fill_x<T><<<64, 256>>>(static_cast<T*>(b.x), size_t(m) * w.k, seed);
    CK(cudaMalloc(&b.y, size_t(m) * w.n * sizeof(T)));
    CK(cudaMalloc(&b.ws, size_t(m) * w.n * 4));
    CK(cudaMemset(b.ws, 0, size_t(m) * w.n * 4));
    std::vector<uint16_t> y[2];
    for (int v = 0; v < 2; ++v) {
        g_ms = v;
        CK(cudaMemset(b.y, 0xFF, size_t(m) * w.n * sizeof(T)));
        CK((launch<Fmt, T>(w, pl, b, m, 0, fs > 0)));
        CK(cudaDeviceSynchronize());
        y[v].resize(size_t(m) * w.n);
        CK(cudaMemcpy(y[v].data(), b.y, y[v].size() * 2, cudaMemcpyDeviceToHost));
    }
    g_ms = -1;
    std::vector<float> wsh(size_t(m) * w.n);
    CK(cudaMemcpy(wsh.data(), b.ws, wsh.size() * 4, cudaMemcpyDeviceToHost));
    const bool ws_zero = std::all_of(wsh.begin(), wsh.end(), [](float f) { return f == 0.f; });
    int nonfinite = 0;
    for (uint16_t h : y[0]) {
        const bool f16 = std::is_same_v<T, __half>;
        if (f16 ? (h & 0x7C00) == 0x7C00 : (h & 0x7F80) == 0x7F80) ++nonfinite;
    }
    const bool same = y[0] == y[1];
    const bool ok = same && nonfinite == 0 && ws_zero;
    ok ? ++pass : ++fail;
    if (!ok || (pass % 50) == 1) {
        printf("check %-5s %s n=%-5d k=%-5d g=%-4d m=%-2d splits=%d kw=%d (plan mt%d s%d kw%d): %s%s%s%s\n", name,
               std::is_same_v<T, __half> ? "f16 " : "bf16", w.n, w.k, w.gl, m, fs, fkw, pl.mt, pl.splits, pl.kw,
               ok ? "ok" : "FAIL", same ? "" : " (MS differs)", nonfinite ? " (non-finite)" : "", ws_zero ? "" : " (workspace left nonzero)");
        fflush(stdout);
    }
    cudaFree(b.x), cudaFree(b.y), cudaFree(b.ws);
}
template <class Fmt, typename T>
static void check_dtype(int& pass, int& fail, const char* name) {
    // (N, K, group length; 0 = per-channel)
    const int shapes[][3] = {{300, 1024, 128}, {149, 2048, 128}, {45, 320, 32}, {37, 384, 64}, {1000, 4096, 128},
                             {16, 8192, 128}, {77, 1000, 0}, {520, 8192, 64}};
    uint32_t seed = 100;
    for (auto& sh : shapes) {
        const HWeight w = make_weight<Fmt>(sh[0], sh[1], sh[2], ++seed);
        for (int m : {1, 2, 3, 5, 8, 16}) {
            check_one<Fmt, T>(w, m, 0, 0, ++seed, pass, fail, name);
            for (int fs : {1, 3, 7}) check_one<Fmt, T>(w, m, fs, 0, ++seed, pass, fail, name);
            // (kw > 1 stages the whole K range: compact X at M <= 8, two 16-row buffers at M = 16.)
            for (int kw : {2, 4, 8}) {
                if (w.ksteps >= kw && (m <= 8 || w.k_pad <= 2048)) check_one<Fmt, T>(w, m, 0, kw, ++seed, pass, fail, name);
            }
        }
        HWeight ww = w;
        ww.free_dev();
    }
}
template <class Fmt, bool BF>
static void check_fmt(int& pass, int& fail, const char* name) {
    check_dtype<Fmt, __half>(pass, fail, name);
    if constexpr (BF) check_dtype<Fmt, __nv_bfloat16>(pass, fail, name);
}

}  // namespace

#define WO_MS_OPS(ID, FMT, NAME, BF)                                                                            \
    static void bench_##ID(int n, int k, int m, int r, float o[3], char* p) { bench_fmt<FMT>(n, k, m, r, o, p); } \
    static void check_##ID(int& pass, int& fail) { check_fmt<FMT, BF>(pass, fail, NAME); }                   \
    FmtOps ops_##ID() { return {NAME, FMT::kBits, bench_##ID, check_##ID}; }

#if WO_MS_FMT == 0
WO_MS_OPS(0, Int4, "int4", true)
#elif WO_MS_FMT == 1
WO_MS_OPS(1, Mix4, "mix4", true)
#elif WO_MS_FMT == 2
WO_MS_OPS(2, Mix3, "mix3", true)
#elif WO_MS_FMT == 3
WO_MS_OPS(3, IntLow<3>, "int3", false)
#elif WO_MS_FMT == 4
WO_MS_OPS(4, IntLow<2>, "int2", false)
#elif WO_MS_FMT == 5
WO_MS_OPS(5, Int8, "int8", false)
#elif WO_MS_FMT == 6
WO_MS_OPS(6, Lut<4>, "lut4", false)
#endif

#else  // WO_MS_MAIN

FmtOps ops_0();
FmtOps ops_1();
FmtOps ops_2();
FmtOps ops_3();
FmtOps ops_4();
FmtOps ops_5();
FmtOps ops_6();

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "bench";
    const std::string only = argc > 2 ? argv[2] : "";
    int dev = 0;
    CK(cudaGetDevice(&dev));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, dev));
    printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    // (Each format's translation unit keeps its own g_sms; the plans use the device's count there too.)
    const FmtOps all[7] = {ops_0(), ops_1(), ops_2(), ops_3(), ops_4(), ops_5(), ops_6()};
    if (mode == "check") {
        int pass = 0, fail = 0;
        for (const auto& o : all) {
            if (!only.empty() && only.find(o.name) == std::string::npos) continue;
            const int p0 = pass, f0 = fail;
            o.check(pass, fail);
            printf("check %s: %d passed, %d failed\n", o.name, pass - p0, fail - f0);
            fflush(stdout);
        }
        printf("checks: %d passed, %d failed\n", pass, fail);
        return fail ? 1 : 0;
    }
    if (mode == "bench" || mode == "bench2") {
        const bool b2 = mode == "bench2";
        const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
        const std::vector<int> fmts = b2 ? std::vector<int>{3, 4, 5, 6} : std::vector<int>{0, 2, 1};
        const std::vector<int> ms = b2 ? std::vector<int>{1, 4} : std::vector<int>{1, 2, 4, 8, 16};
        const int rounds = argc > 3 ? atoi(argv[3]) : 3;
        for (auto& sh : shapes) {
            if (b2 && sh[0] != 28672 && sh[0] != 4096) continue;
            for (int m : ms) {
                const float cub = micro::bench_cublas_f16(m, sh[0], sh[1]) * 1e3f;
                printf("%s %5dx%-5d m=%-2d cublas-f16 %7.1f", mode.c_str(), sh[0], sh[1], m, cub);
                for (int f : fmts) {
                    if (!only.empty() && only.find(all[f].name) == std::string::npos) continue;
                    float o[3];
                    char plan[64];
                    all[f].bench(sh[0], sh[1], m, rounds, o, plan);
                    printf(" | %s [%s] off %6.1f lib %6.1f on %6.1f (on/off %.3f)", all[f].name, plan, o[0], o[1], o[2], o[2] / o[0]);
                    fflush(stdout);
                }
                printf("\n");
                fflush(stdout);
            }
        }
    }
    return 0;
}
#endif
