// Launch-floor probe of ws-W (weight-only NOTES.md "ws-floor", seventeenth session; issue 3): where do the ~7-8 us of
// a ws-W launch with 1-2 k-steps per CTA go? The kernel (lowbit/wo_ws4.cuh ws4_body, NC = 4, BX = 64, f16, weight
// TMA) is cut after each part of its life by a compile-time rung (kProbeEmpty .. kProbeFull, ws4_probe_kernel; the
// library's ws4_kernel is kProbeFull and its SASS is unchanged) and every rung is timed with the graph replay of the
// ws4-C harness (>= 24 calls over weight copies > 3x L2, median of 15 replays), with and without PDL, next to the
// library's own launch, cuBLAS f16 and a trivial copy kernel in the same process. A stamped rung (kProbeStamp:
// %globaltimer / clock64 per CTA at entry, after the ring init, after griddepcontrol.wait, at the first full
// barrier, after the mainloop, after the epilogue) splits one replay's calls into launch gap, CTA start skew, set-up,
// first TMA round trip, mainloop, epilogue and the slowest CTA.
//
// Build: benches/micro/wo_ws4_floor.sh (ws.cu and ws4_c.cu as the library builds them; this file three times:
// FLOOR_PART=1 (the rungs at CS = 1: unsplit and f32-atomics splits), FLOOR_PART=6 (the rungs as clusters of 6),
// FLOOR_PART=0 (host code)). libcublas.so.13 is dlopen()ed (its folder on LD_LIBRARY_PATH).
//
//   wo_ws4_floor check                 # rung 5 (and the stamped and tensormap-prefetch rungs) against the library's
//                                      # output, bit for bit (atomics splits: within 1 ulp, the reds' order), and
//                                      # rung 5 against the f64 CPU reference on two odd shapes
//   wo_ws4_floor ladder [cfg,..] [M,..] [passes]   # the ladder table (cfg: NxK:u | NxK:aS | NxK:c6)
//   wo_ws4_floor stamps [cfg,..] [M]   # the stamped rung: per-call phase table (PDL on and off)
//   wo_ws4_floor carve [cfg]           # carve-out / kernel-switch probe: rung 0 (200 KB and 0 B dynamic smem)
//                                      # alternating with a copy kernel (default and max-shared carve-out)
#include <cuda.h>
#include <cuda_runtime.h>

#include <cstdint>

#include "lowbit/wo_ws4.cuh"

#ifndef FLOOR_PART
#define FLOOR_PART 0
#endif

using lowbit::wo::Args;
namespace wows4 = lowbit::wows4;

// One probe launch: rung pr of the CS instance, launched as wows4::launch / launch_c launch the library kernel
// (grid, 640 threads, Geo<64, 4>::kSmem dynamic shared memory, clusters of CS, the PDL attribute when pdl, pf weight
// stages prefetched into L2 before griddepcontrol.wait), except where smem >= 0 / threads > 0 override the launch
// configuration (rung 0 only).
struct FloorCall {
    Args a;
    int pr = wows4::kProbeFull;
    int splits = 1;  // CS = 1: K splits (f32 atomics into a.ws; the caller converts)
    bool pdl = true;
    int pf = 4;
    unsigned long long* ts = nullptr;
    int smem = -1;
    int threads = 0;
    cudaStream_t st = nullptr;
};
// ws.cu: ws-W's tensor maps.
cudaError_t ws4_maps(const Args& a, CUtensorMap& xmap, CUtensorMap& wmap);

#if FLOOR_PART > 0
template <int CS, int PR>
static cudaError_t launch_pr(const FloorCall& c) {
    using namespace lowbit;
    constexpr int kSmem = wows4::Geo<64, 4>::kSmem;
    auto kern = wows4::ws4_probe_kernel<wo::Int4, __half, 64, 4, CS, PR>;
    static bool attr = false;
    if (!attr) {
        const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, kSmem);
        if (e != cudaSuccess) return e;
        attr = true;
    }
    CUtensorMap xmap, wmap;
    const cudaError_t e = ws4_maps(c.a, xmap, wmap);
    if (e != cudaSuccess) return e;
    const int tiles = (c.a.strips + 15) / 16 * ((c.a.m + 63) / 64);
    int grid, splits;
    if (CS > 1) {
        grid = tiles * CS, splits = CS;
    } else {
        splits = wows4::effective_splits(c.a, c.splits);
        const int64_t units = int64_t(tiles) * splits;
        grid = int(units < c.a.sms ? units : c.a.sms);
    }
    LaunchEx cfg(dim3(unsigned(grid)), dim3(c.threads > 0 ? unsigned(c.threads) : 640u),
                 c.smem >= 0 ? size_t(c.smem) : size_t(kSmem), c.st);
    if (CS > 1) cfg.cluster_x(unsigned(CS));
    cfg.pdl(c.pdl);
    return cfg.launch(kern, c.a, xmap, wmap, splits, c.pdl ? c.pf : 0, c.ts);
}

#if FLOOR_PART == 1
#define FLOOR_FN floor_launch_1
#define FLOOR_CS 1
#else
#define FLOOR_FN floor_launch_6
#define FLOOR_CS 6
#endif
cudaError_t FLOOR_FN(const FloorCall& c) {
    switch (c.pr) {
        case 0: return launch_pr<FLOOR_CS, 0>(c);
        case 1: return launch_pr<FLOOR_CS, 1>(c);
        case 2: return launch_pr<FLOOR_CS, 2>(c);
        case 3: return launch_pr<FLOOR_CS, 3>(c);
        case 4: return launch_pr<FLOOR_CS, 4>(c);
        case 5: return launch_pr<FLOOR_CS, 5>(c);
        case 6: return launch_pr<FLOOR_CS, 6>(c);
        case 7: return launch_pr<FLOOR_CS, 7>(c);
    }
    return cudaErrorInvalidValue;
}

#else  // FLOOR_PART == 0: host code

#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "baselines.cuh"
#include "wo_int4_problem.cuh"

using micro::BlasCreate, micro::BlasGemmEx, micro::BlasSetStream, micro::graph_us;

cudaError_t floor_launch_1(const FloorCall&);
cudaError_t floor_launch_6(const FloorCall&);
// ws.cu / ws4_c.cu as the library builds them.
cudaError_t lowbit_wo_ws4_int4(const Args&, int, int, int, cudaStream_t);
cudaError_t lowbit_wo_ws4_c_int4(const Args&, int, int, cudaStream_t, int*);

#define CK(...)                                                                                          \
    do {                                                                                                 \
        cudaError_t e_ = (__VA_ARGS__);                                                                  \
        if (e_ != cudaSuccess) {                                                                         \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
            exit(1);                                                                                     \
        }                                                                                                \
    } while (0)

static int g_sms = 132;

// A configuration: the weight N x K and its schedule: 'u' unsplit (K splits 1), 'a' f32-atomics K splits (+ the
// library's convert launch), 'c' clusters of 6 (ws4-C).
struct Cfg {
    int n, k;
    char kind;
    int sp;
    std::string name() const {
        char b[48];
        if (kind == 'u') snprintf(b, sizeof b, "%dx%d unsplit", n, k);
        else if (kind == 'a') snprintf(b, sizeof b, "%dx%d atomics %d", n, k, sp);
        else snprintf(b, sizeof b, "%dx%d clusters %d", n, k, sp);
        return b;
    }
};
static bool parse_cfg(const char* t, Cfg& c) {
    char kind = 'u';
    int sp = 1;
    if (sscanf(t, "%dx%d:%c%d", &c.n, &c.k, &kind, &sp) < 2) return false;
    c.kind = kind, c.sp = kind == 'u' ? 1 : sp;
    if (c.kind == 'c' && c.sp != 6) {
        printf("only clusters of 6 are built (FLOOR_PART=6): %s skipped\n", t);
        return false;
    }
    return c.kind == 'u' || c.kind == 'a' || c.kind == 'c';
}
static std::vector<Cfg> parse_cfgs(const char* arg, const std::vector<Cfg>& dflt) {
    if (!arg || !strcmp(arg, "all")) return dflt;
    std::vector<Cfg> v;
    std::string s(arg);
    for (char* t = strtok(s.data(), ","); t; t = strtok(nullptr, ",")) {
        Cfg c;
        if (parse_cfg(t, c)) v.push_back(c);
    }
    return v;
}

static cudaError_t probe(const Cfg& cfg, FloorCall c) {
    if (cfg.kind == 'c') return floor_launch_6(c);
    c.splits = cfg.sp;
    return floor_launch_1(c);
}
static cudaError_t convert(const Args& a, cudaStream_t s) {
    return lowbit::wo::launch_convert<__half>(a.ws, static_cast<__half*>(a.y), int64_t(a.m) * a.n, s);
}
// The library's launch of the configuration: ws-W unsplit / atomics splits (+ convert, as wo_launch.cu runs it) or
// ws4-C clusters of 6 (PDL and pf as the library decides: on, 4).
static cudaError_t lib_run(const Cfg& cfg, const Args& a, cudaStream_t s) {
    if (cfg.kind == 'c') return lowbit_wo_ws4_c_int4(a, 0, cfg.sp, s, nullptr);
    const cudaError_t e = lowbit_wo_ws4_int4(a, 0, cfg.sp, g_sms, s);
    if (e != cudaSuccess || cfg.kind == 'u') return e;
    return convert(a, s);
}
// Rung pr as the library would run it (atomics: rung 5 and above + convert; conv = false leaves the convert out).
static cudaError_t rung_run(const Cfg& cfg, const Args& a, int pr, bool pdl, cudaStream_t s, bool conv = true,
                            int smem = -1, int threads = 0, unsigned long long* ts = nullptr) {
    FloorCall c;
    c.a = a, c.pr = pr, c.pdl = pdl, c.pf = 4, c.st = s, c.smem = smem, c.threads = threads, c.ts = ts;
    const cudaError_t e = probe(cfg, c);
    if (e != cudaSuccess || cfg.kind != 'a' || pr < wows4::kProbeFull || !conv) return e;
    return convert(a, s);
}

// ------------------------------------------------------------------------------------------------ device buffers
__global__ void fill_words(uint32_t* w, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint64_t z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        w[i] = uint32_t(z ^ (z >> 31));
    }
}
__global__ void fill_meta(uint32_t* m, size_t pairs) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < pairs; i += size_t(gridDim.x) * blockDim.x) {
        m[2 * i] = 0x24002400u + uint32_t(i % 7) * 0x00010001u;
        m[2 * i + 1] = 8u | (8u << 8);
    }
}
// References: a trivial copy (the output's bytes, 16 B per thread, grid-stride over the SMs); TAG 1 is the same
// kernel with the max-shared carve-out preference (no L1 / shared reconfiguration against ws-W's 200 KB).
template <int TAG>
__global__ void copy_kernel(const uint4* __restrict__ src, uint4* __restrict__ dst, size_t n) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x)
        dst[i] = src[i];
}
__global__ void null_kernel() {}

// The weight (codes + metadata) in copies > 3x L2 (at least 1), X random in [-1, 1], Y, and the split-K workspace.
struct Bufs {
    std::vector<DevW> wc;
    void *x = nullptr, *y = nullptr, *ysrc = nullptr;
    float* ws = nullptr;
    int strips = 0, ksteps = 0, groups = 0, m = 0;
    const Cfg* cfg = nullptr;
    void alloc(const Cfg& c, int mmax, int l2) {
        cfg = &c;
        strips = (c.n + 15) / 16, ksteps = (c.k + 63) / 64, groups = (ksteps * 4 + 7) / 8;
        const size_t nw = size_t(strips) * ksteps * 128, nm = size_t(strips) * groups * 16;
        const size_t qb = (nw + nm) * 4;
        const int q = int(std::max<size_t>(1, 3 * size_t(l2) / qb + 1));
        wc.resize(q);
        for (int i = 0; i < q; ++i) {
            CK(cudaMalloc(&wc[i].w, nw * 4));
            CK(cudaMalloc(&wc[i].m, nm * 4));
            fill_words<<<1024, 256>>>(wc[i].w, nw, 1000003ull * i + c.n + c.k);
            fill_meta<<<1024, 256>>>(wc[i].m, nm / 2);
        }
        CK(cudaMalloc(&x, size_t(mmax) * c.k * 2));
        CK(cudaMalloc(&y, size_t(mmax) * c.n * 2 + 64));
        CK(cudaMalloc(&ysrc, size_t(mmax) * c.n * 2 + 64));
        CK(cudaMalloc(&ws, size_t(mmax) * c.n * 4));
        CK(cudaMemset(ws, 0, size_t(mmax) * c.n * 4));
        CK(cudaMemset(ysrc, 0, size_t(mmax) * c.n * 2 + 64));
        std::mt19937 rng(7 + c.k);
        std::vector<uint16_t> hx(size_t(mmax) * c.k);
        for (auto& v : hx) v = f2h(float(int(rng() % 2001) - 1000) / 1000.f, 0);
        CK(cudaMemcpy(x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
        CK(cudaDeviceSynchronize());
    }
    Args args(int i, int mm) const {
        Args a{};
        a.words = wc[i].w, a.meta = wc[i].m, a.x = x, a.y = y, a.ws = ws;
        a.m = mm, a.n = cfg->n, a.k = cfg->k, a.ldx = cfg->k;
        a.strips = strips, a.ksteps = ksteps, a.gtiles = 8, a.groups = groups;
        a.x_vec = 1, a.sms = g_sms;
        return a;
    }
    int copies() const { return int(wc.size()); }
    void release() {
        for (auto& w : wc) cudaFree(w.w), cudaFree(w.m);
        wc.clear();
        cudaFree(x), cudaFree(y), cudaFree(ysrc), cudaFree(ws);
    }
};

struct Blas {
    void* h = nullptr;
    BlasSetStream set_stream = nullptr;
    BlasGemmEx gemm = nullptr;
    bool init() {
        void* lib = dlopen("libcublas.so.13", RTLD_NOW);
        if (!lib) {
            printf("libcublas.so.13 not found (%s): no cuBLAS rows\n", dlerror());
            return false;
        }
        auto create = (BlasCreate)dlsym(lib, "cublasCreate_v2");
        set_stream = (BlasSetStream)dlsym(lib, "cublasSetStream_v2");
        gemm = (BlasGemmEx)dlsym(lib, "cublasGemmEx");
        return create && gemm && set_stream && create(&h) == 0;
    }
    // cuBLAS f16 of the same problem over f16 weight copies > 3x L2 (as the ws4-C harness).
    double time(int n, int k, int m, const void* x, void* y, int l2) {
        const size_t fb = size_t(n) * k * 2;
        const int fcopies = int(std::max<size_t>(1, 3 * size_t(l2) / fb + 1));
        std::vector<void*> fw(fcopies);
        for (auto& p : fw) {
            CK(cudaMalloc(&p, fb));
            CK(cudaMemset(p, 0x3c, fb));
        }
        const float one = 1.f, zero = 0.f;
        const double us = graph_us(fcopies, [&](int c, cudaStream_t s) {
            set_stream(h, s);
            gemm(h, 1, 0, n, m, k, &one, fw[c], 2, k, x, 2, k, &zero, y, 2, n, 68, -1);
        });
        for (auto& p : fw) cudaFree(p);
        return us;
    }
};

static std::vector<uint16_t> read_y(const Bufs& B, int m) {
    std::vector<uint16_t> v(size_t(m) * B.cfg->n);
    CK(cudaDeviceSynchronize());
    CK(cudaMemcpy(v.data(), B.y, v.size() * 2, cudaMemcpyDeviceToHost));
    return v;
}
static void poison(const Bufs& B, int m) { CK(cudaMemset(B.y, 0xFF, size_t(m) * B.cfg->n * 2)); }

static const std::vector<Cfg> kLadderCfgs = {
    {4096, 64, 'u', 1},   {4096, 128, 'u', 1},  {4096, 384, 'u', 1},  {4096, 384, 'c', 6},   {33792, 64, 'u', 1},
    {11008, 384, 'u', 1}, {4096, 4096, 'c', 6}, {11008, 4096, 'a', 3}, {4096, 384, 'a', 6},
};

// ------------------------------------------------------------------------------------------------ check
static int run_check() {
    int fails = 0, checks = 0;
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    // 1. Bit for bit against the library on the ladder's configurations (one weight copy), PDL on and off.
    for (const Cfg& cfg : kLadderCfgs) {
        for (int m : {64, 16, 33}) {
            Bufs B;
            B.cfg = &cfg;
            // one copy is enough here: alloc with a huge l2 would make many; use l2 = 0 -> 1 copy
            B.alloc(cfg, m, 0);
            const Args a = B.args(0, m);
            poison(B, m);
            CK(lib_run(cfg, a, 0));
            const std::vector<uint16_t> ref = read_y(B, m);
            size_t nan = 0;
            for (uint16_t v : ref) nan += (v & 0x7C00) == 0x7C00;
            if (nan) {
                printf("  %s M=%d: library output has %zu non-finite values FAIL\n", cfg.name().c_str(), m, nan);
                ++fails;
            }
            auto* ts = static_cast<unsigned long long*>(nullptr);
            CK(cudaMalloc(&ts, size_t(4096) * wows4::kStampWords * 8));
            for (int pr : {wows4::kProbeFull, wows4::kProbeStamp, wows4::kProbeTmapPf}) {
                for (bool pdl : {true, false}) {
                    poison(B, m);
                    CK(rung_run(cfg, a, pr, pdl, 0, true, -1, 0, ts));
                    const std::vector<uint16_t> got = read_y(B, m);
                    size_t diff = 0, ulp1 = 0;
                    for (size_t i = 0; i < got.size(); ++i) {
                        if (got[i] == ref[i]) continue;
                        const int d = std::abs(int(got[i]) - int(ref[i]));
                        if (cfg.kind == 'a' && d <= 1 && (got[i] ^ ref[i]) < 0x8000) ++ulp1;
                        else ++diff;
                    }
                    ++checks;
                    const bool ok = diff == 0;
                    if (!ok) ++fails;
                    const std::string note =
                        cfg.kind == 'a' ? ", " + std::to_string(ulp1) + " within 1 ulp (f32 reds' order)" : "";
                    printf("  check %-24s M=%2d rung %d pdl %d: %s (%zu differ%s)\n", cfg.name().c_str(), m, pr, pdl,
                           ok ? "OK" : "FAIL", diff, note.c_str());
                }
            }
            cudaFree(ts);
            B.release();
        }
    }
    // 2. Rung 5 against the f64 reference (odd shapes: M, N, K not multiples of the tile; asym, channel scales).
    struct Shape {
        int m, n, k, gtiles;
        bool asym, chan;
        char kind;
        int sp;
    };
    const Shape shapes[] = {{47, 4100, 576, 8, true, true, 'u', 1}, {64, 1040, 1032, 2, true, false, 'c', 6},
                            {17, 520, 1024, 8, false, true, 'a', 3}};
    for (const Shape& sh : shapes) {
        Problem P;
        make_problem(P, sh.n, sh.k, sh.gtiles, sh.asym, sh.chan, 0, 991 + sh.n);
        std::mt19937 r(5 + sh.m);
        std::uniform_real_distribution<float> xd(-1.f, 1.f);
        std::vector<uint16_t> x(size_t(sh.m) * sh.k), y(size_t(sh.m) * sh.n);
        for (auto& v : x) v = f2h(xd(r), 0);
        std::vector<double> ref, mag;
        reference(P, sh.m, x, 0, ref, mag);
        uint32_t *dw, *dm;
        float *dc = nullptr, *dws;
        void *dx, *dy;
        CK(cudaMalloc(&dw, P.words.size() * 4));
        CK(cudaMalloc(&dm, P.meta.size() * 4));
        CK(cudaMemcpy(dw, P.words.data(), P.words.size() * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(dm, P.meta.data(), P.meta.size() * 4, cudaMemcpyHostToDevice));
        if (!P.chan.empty()) {
            CK(cudaMalloc(&dc, P.chan.size() * 4));
            CK(cudaMemcpy(dc, P.chan.data(), P.chan.size() * 4, cudaMemcpyHostToDevice));
        }
        CK(cudaMalloc(&dx, x.size() * 2));
        CK(cudaMalloc(&dy, y.size() * 2));
        CK(cudaMalloc(&dws, y.size() * 4));
        CK(cudaMemset(dws, 0, y.size() * 4));
        CK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
        Args a{};
        a.words = dw, a.meta = dm, a.chan = dc, a.x = dx, a.y = dy, a.ws = dws;
        a.m = sh.m, a.n = sh.n, a.k = sh.k, a.ldx = sh.k;
        a.strips = P.strips, a.ksteps = P.ksteps, a.gtiles = P.gtiles, a.groups = P.groups;
        a.x_vec = 1, a.sms = g_sms;
        const Cfg cfg{sh.n, sh.k, sh.kind, sh.sp};
        CK(cudaMemset(dy, 0xFF, y.size() * 2));
        CK(rung_run(cfg, a, wows4::kProbeFull, true, 0));
        CK(cudaDeviceSynchronize());
        CK(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
        char what[64];
        snprintf(what, sizeof what, "rung 5 %s M=%d", cfg.name().c_str(), sh.m);
        const int f = compare(y, ref, mag, 0, what, sh.m, P);
        printf("  reference %-34s: %s\n", what, f ? "FAIL" : "OK");
        fails += f, ++checks;
        cudaFree(dw), cudaFree(dm), cudaFree(dc), cudaFree(dx), cudaFree(dy), cudaFree(dws);
    }
    printf("checks: %s (%d of %d failed)\n", fails ? "FAIL" : "ALL OK", fails, checks);
    return fails;
}

// ------------------------------------------------------------------------------------------------ ladder
static const char* kRungName[] = {"0 empty (launch config only)", "1 + barrier init, setmaxnreg, griddep",
                                  "2 + TMA stream (consumers wait only)", "3 + metadata, ld.shared, decode",
                                  "4 + wgmma (no epilogue)", "5 full kernel (probe build)", "6 full + stamps",
                                  "7 full + prefetch.tensormap"};

static int run_ladder(const std::vector<Cfg>& cfgs, const std::vector<int>& ms, int passes) {
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    Blas blas;
    const bool have_blas = blas.init();
    printf("%-26s %3s %-3s %-44s %8s %8s\n", "config", "M", "pdl", "variant", "us/call", "delta");
    struct Row {
        std::string cfg;
        int m;
        std::string var;
        double us;
    };
    std::vector<Row> rows;
    for (const Cfg& cfg : cfgs) {
        int mmax = *std::max_element(ms.begin(), ms.end());
        Bufs B;
        B.alloc(cfg, mmax, l2);
        const int tiles = (B.strips + 15) / 16;
        const int sp = cfg.kind == 'a' ? wows4::effective_splits(B.args(0, 64), cfg.sp) : cfg.sp;
        const int kper = (B.ksteps + sp - 1) / sp;
        const int ctas = cfg.kind == 'c' ? tiles * cfg.sp : std::min(g_sms, tiles * sp);
        const double mb = (size_t(B.strips) * B.ksteps * 128 + size_t(B.strips) * B.groups * 16) * 4 / 1e6;
        printf("# %s: %d tiles, %d CTAs, %d k-steps per CTA, %d weight copies (%.2f MB each)\n", cfg.name().c_str(),
               tiles, ctas, kper, B.copies(), mb);
        for (int m : ms) {
            for (int pass = 0; pass < passes; ++pass) {
                auto row = [&](const char* pdl, const std::string& var, double us, double prev) {
                    const std::string name = cfg.name();
                    if (prev > 0)
                        printf("%-26s %3d %-3s %-44s %8.2f %+8.2f\n", name.c_str(), m, pdl, var.c_str(), us, us - prev);
                    else
                        printf("%-26s %3d %-3s %-44s %8.2f %8s\n", name.c_str(), m, pdl, var.c_str(), us, "");
                    fflush(stdout);
                    rows.push_back({cfg.name(), m, std::string(pdl) + " " + var, us});
                };
                auto t = [&](const std::function<cudaError_t(const Args&, cudaStream_t)>& f) {
                    return graph_us(B.copies(), [&](int c, cudaStream_t s) { CK(f(B.args(c, m), s)); });
                };
                // References.
                if (have_blas) row("-", "ref cuBLAS f16 (same GEMM)", blas.time(cfg.n, cfg.k, m, B.x, B.y, l2), 0);
                const size_t nv = (size_t(m) * cfg.n * 2 + 15) / 16;
                const uint4* ysrc = static_cast<const uint4*>(B.ysrc);
                uint4* ydst = static_cast<uint4*>(B.y);
                row("-", "ref copy kernel (Y's bytes, 132x256)",
                    graph_us(1, [&](int, cudaStream_t s) { copy_kernel<0><<<g_sms, 256, 0, s>>>(ysrc, ydst, nv); }), 0);
                row("-", "ref null kernel 1x32",
                    graph_us(1, [&](int, cudaStream_t s) { null_kernel<<<1, 32, 0, s>>>(); }), 0);
                row("on", "library launch", t([&](const Args& a, cudaStream_t s) { return lib_run(cfg, a, s); }), 0);
                for (bool pdl : {true, false}) {
                    const char* pn = pdl ? "on" : "off";
                    // Rung 0's launch configuration variants.
                    row(pn, "0 empty, 128 threads, 0 B dyn smem",
                        t([&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 0, pdl, s, true, 0, 128); }), 0);
                    const double e0 =
                        t([&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 0, pdl, s, true, 0, 0); });
                    row(pn, "0 empty, 640 threads, 0 B dyn smem", e0, 0);
                    double prev = e0;
                    for (int pr = 0; pr <= 5; ++pr) {
                        const double us =
                            t([&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, pr, pdl, s); });
                        row(pn, kRungName[pr], us, prev);
                        prev = us;
                    }
                    const double full = prev;
                    if (cfg.kind == 'a')
                        row(pn, "5 full kernel without the convert launch",
                            t([&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 5, pdl, s, false); }), full);
                    row(pn, kRungName[7],
                        t([&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 7, pdl, s); }), full);
                    if (pdl)
                        row(pn, "5 full, pf 0 (no L2 prefetch before the wait)", t([&](const Args& a, cudaStream_t s) {
                                FloorCall c;
                                c.a = a, c.pr = 5, c.pdl = true, c.pf = 0, c.st = s;
                                const cudaError_t e = probe(cfg, c);
                                return e != cudaSuccess || cfg.kind != 'a' ? e : convert(a, s);
                            }), full);
                }
            }
        }
        B.release();
    }
    // Summary: one line per (configuration, M): references, the library, rungs 0 .. 5 with PDL, rungs 0 / 5 without.
    printf("\nsummary (us per call, last pass; rungs with PDL unless 'off')\n"
           "%-26s %3s %7s %7s %7s | %6s %6s %6s %6s %6s %6s | %6s %6s %6s\n",
           "config", "M", "null", "cuBLAS", "lib", "r0", "r1", "r2", "r3", "r4", "r5", "r0off", "r5off", "r7");
    std::vector<std::pair<std::string, int>> keys;
    for (const Row& r : rows)
        if (std::find(keys.begin(), keys.end(), std::make_pair(r.cfg, r.m)) == keys.end()) keys.push_back({r.cfg, r.m});
    for (const auto& k : keys) {
        auto get = [&](const std::string& var) {
            double v = NAN;
            for (const Row& r : rows)
                if (r.cfg == k.first && r.m == k.second && r.var == var) v = r.us;
            return v;
        };
        printf("%-26s %3d %7.2f %7.2f %7.2f | %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f\n",
               k.first.c_str(), k.second, get("- ref null kernel 1x32"), get("- ref cuBLAS f16 (same GEMM)"),
               get("on library launch"),
               get(std::string("on ") + kRungName[0]), get(std::string("on ") + kRungName[1]),
               get(std::string("on ") + kRungName[2]), get(std::string("on ") + kRungName[3]),
               get(std::string("on ") + kRungName[4]), get(std::string("on ") + kRungName[5]),
               get(std::string("off ") + kRungName[0]), get(std::string("off ") + kRungName[5]),
               get(std::string("on ") + kRungName[7]));
    }
    return 0;
}

// ------------------------------------------------------------------------------------------------ stamps
static double median(std::vector<double> v) {
    if (v.empty()) return NAN;
    std::sort(v.begin(), v.end());
    return v[v.size() / 2];
}

static int run_stamps(const std::vector<Cfg>& cfgs, int m) {
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    int clk_khz = 0;
    CK(cudaDeviceGetAttribute(&clk_khz, cudaDevAttrClockRate, 0));
    constexpr int W = wows4::kStampWords, kCalls = 24;
    std::vector<std::string> compact;
    for (const Cfg& cfg : cfgs) {
        Bufs B;
        B.alloc(cfg, m, l2);
        const int tiles = (B.strips + 15) / 16 * ((m + 63) / 64);
        const int sp = cfg.kind == 'a' ? wows4::effective_splits(B.args(0, m), cfg.sp) : 1;
        const int grid = cfg.kind == 'c' ? tiles * cfg.sp : std::min(g_sms, tiles * sp);  // as launch_pr
        const int per = std::max(B.copies(), kCalls);
        unsigned long long *ts, *scratch;
        CK(cudaMalloc(&ts, size_t(kCalls) * grid * W * 8));
        CK(cudaMalloc(&scratch, size_t(grid) * W * 8));
        for (bool pdl : {true, false}) {
            CK(cudaMemset(ts, 0, size_t(kCalls) * grid * W * 8));
            cudaStream_t s;
            CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
            auto call = [&](int i) {
                unsigned long long* t = i >= per - kCalls ? ts + size_t(i - (per - kCalls)) * grid * W : scratch;
                CK(rung_run(cfg, B.args(i % B.copies(), m), wows4::kProbeStamp, pdl, s, true, -1, 0, t));
            };
            for (int i = 0; i < per; ++i) call(i);
            CK(cudaStreamSynchronize(s));
            cudaGraph_t g;
            cudaGraphExec_t ge;
            CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
            for (int i = 0; i < per; ++i) call(i);
            CK(cudaStreamEndCapture(s, &g));
            CK(cudaGraphInstantiate(&ge, g, 0));
            cudaEvent_t e0, e1;
            CK(cudaEventCreate(&e0));
            CK(cudaEventCreate(&e1));
            for (int r = 0; r < 3; ++r) CK(cudaGraphLaunch(ge, s));
            CK(cudaEventRecord(e0, s));
            CK(cudaGraphLaunch(ge, s));
            CK(cudaEventRecord(e1, s));
            CK(cudaEventSynchronize(e1));
            float ms = 0;
            CK(cudaEventElapsedTime(&ms, e0, e1));
            std::vector<unsigned long long> h(size_t(kCalls) * grid * W);
            CK(cudaMemcpy(h.data(), ts, h.size() * 8, cudaMemcpyDeviceToHost));
            cudaGraphExecDestroy(ge), cudaGraphDestroy(g), cudaEventDestroy(e0), cudaEventDestroy(e1);
            cudaStreamDestroy(s);
            // Analysis: calls 4 .. 22 (call i + 1 bounds call i's gap).
            // Stamps relative to the earliest entry (globaltimer, slots 0 .. 14) / the smallest entry clock64 (slots
            // 16 ..), in u64 before the conversion: %globaltimer is ~1.8e18 ns, where a double's step is 256 ns.
            uint64_t gt0 = ~0ull, ck0 = ~0ull;
            for (int c = 0; c < kCalls; ++c)
                for (int b = 0; b < grid; ++b) {
                    gt0 = std::min<uint64_t>(gt0, h[(size_t(c) * grid + b) * W + 0]);
                    ck0 = std::min<uint64_t>(ck0, h[(size_t(c) * grid + b) * W + 16]);
                }
            auto at = [&](int call, int cta, int i) {
                const uint64_t raw = h[(size_t(call) * grid + cta) * W + i];
                if (i == 15) return double(raw);  // SM id
                return double(int64_t(raw - (i < 16 ? gt0 : ck0)));
            };
            const int nc = 4;  // NC consumer warpgroups: end stamps 5 .. 8
            double gmin = 1e30;
            std::vector<double> period, span, gap, dep, skew, init, wait, first, mainl, epi, slow, pwait, ptma;
            std::vector<double> c_init, c_first, c_main, c_epi, sm_gap;
            double clk_sum = 0, gt_sum = 0;
            for (int c = 4; c + 1 < kCalls; ++c) {
                double e_min = 1e30, e_max = 0, end_max = 0, next_min = 1e30, next_dep_min = 1e30;
                std::vector<double> ends;
                for (int b = 0; b < grid; ++b) {
                    const double e = at(c, b, 0);
                    double end = 0, cend = 0;
                    for (int w = 0; w < nc; ++w) {
                        end = std::max(end, at(c, b, 5 + w));
                        cend = std::max(cend, at(c, b, 21 + w));
                    }
                    e_min = std::min(e_min, e), e_max = std::max(e_max, e), end_max = std::max(end_max, end);
                    ends.push_back(end);
                    next_min = std::min(next_min, at(c + 1, b, 0));
                    next_dep_min = std::min(next_dep_min, at(c + 1, b, 2));
                    init.push_back(at(c, b, 1) - e);
                    wait.push_back(at(c, b, 2) - at(c, b, 1));
                    first.push_back(at(c, b, 3) - at(c, b, 2));
                    mainl.push_back(at(c, b, 4) - at(c, b, 3));
                    epi.push_back(end - at(c, b, 4));
                    pwait.push_back(at(c, b, 10) - at(c, b, 1));
                    ptma.push_back(at(c, b, 11) - at(c, b, 10));
                    c_init.push_back(at(c, b, 17) - at(c, b, 16));
                    c_first.push_back(at(c, b, 19) - at(c, b, 18));
                    c_main.push_back(at(c, b, 20) - at(c, b, 19));
                    c_epi.push_back(cend - at(c, b, 20));
                    clk_sum += cend - at(c, b, 16), gt_sum += end - e;
                    for (int i = 1; i <= 11; ++i) {
                        const double d = at(c, b, i) - at(c, b, i - 1);
                        if (d > 0 && i != 5 && i != 10) gmin = std::min(gmin, d);
                    }
                }
                // Same-SM turnaround (clock64, exact on one SM): call c's CTA end on SM q -> call c + 1's entry on q.
                std::map<int, double> end_clk;
                for (int b = 0; b < grid; ++b) {
                    double cend = 0;
                    for (int w = 0; w < nc; ++w) cend = std::max(cend, at(c, b, 21 + w));
                    end_clk[int(at(c, b, 15))] = cend;
                }
                for (int b = 0; b < grid; ++b) {
                    const auto it = end_clk.find(int(at(c + 1, b, 15)));
                    if (it != end_clk.end()) sm_gap.push_back(at(c + 1, b, 16) - it->second);
                }
                std::sort(ends.begin(), ends.end());
                period.push_back(next_min - e_min);
                span.push_back(end_max - e_min);
                gap.push_back(next_min - end_max);
                dep.push_back(next_dep_min - end_max);
                skew.push_back(e_max - e_min);
                slow.push_back(ends.back() - ends[ends.size() / 2]);
            }
            const double ghz = gt_sum > 0 ? clk_sum / gt_sum : clk_khz * 1e-6;
            printf("# stamps %s M=%d pdl %s: %d CTAs, graph replay %.2f us/call (%d calls), "
                   "globaltimer step >= %.0f ns, SM clock %.2f GHz (clock64 / globaltimer)\n",
                   cfg.name().c_str(), m, pdl ? "on" : "off", grid, 1000.0 * ms / per, per, gmin, ghz);
            auto pr = [&](const char* what, const std::vector<double>& v, const std::vector<double>* cyc) {
                if (cyc)
                    printf("  %-58s %8.2f us   (clock64: %8.2f us)\n", what, median(v) / 1000.0,
                           median(*cyc) / ghz / 1000.0);
                else
                    printf("  %-58s %8.2f us\n", what, median(v) / 1000.0);
            };
            if (cfg.kind == 'a') printf("  (atomics: the convert kernel runs between calls, inside gap / release)\n");
            pr("period: first CTA entry to next call's first CTA entry", period, nullptr);
            pr("span: first CTA entry to last CTA end", span, nullptr);
            pr("gap: last CTA end to next call's first CTA entry", gap, nullptr);
            pr("release: last CTA end to next call's first griddep exit", dep, nullptr);
            pr("start skew: first to last CTA entry", skew, nullptr);
            if (!sm_gap.empty()) {
                std::vector<double> g = sm_gap;
                std::sort(g.begin(), g.end());
                printf("  %-58s %8.2f us   (min %.2f, %zu CTA pairs on the same SM)\n",
                       "same SM: CTA end -> next call's CTA entry (clock64)", g[g.size() / 2] / ghz / 1000.0,
                       g.front() / ghz / 1000.0, g.size());
            }
            pr("CTA: entry -> ring init done (init, fence, syncthreads)", init, &c_init);
            pr("CTA: ring init -> consumer past griddepcontrol.wait", wait, nullptr);
            pr("CTA: griddep -> first full barrier (first TMA round trip)", first, &c_first);
            pr("CTA: first stage -> last wgmma done (mainloop)", mainl, &c_main);
            pr("CTA: mainloop -> last warpgroup done (epilogue / finish)", epi, &c_epi);
            pr("CTA: producer: ring init -> past griddepcontrol.wait", pwait, nullptr);
            pr("CTA: producer: griddep -> last TMA issued", ptma, nullptr);
            pr("slowest CTA end - median CTA end", slow, nullptr);
            {
                std::vector<double> g = sm_gap;
                char line[256];
                snprintf(line, sizeof line,
                         "%-22s %-3s %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f | %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f",
                         cfg.name().c_str(), pdl ? "on" : "off", 1000.0 * ms / per, median(period) / 1e3,
                         median(span) / 1e3, median(gap) / 1e3, median(dep) / 1e3, median(skew) / 1e3,
                         g.empty() ? NAN : median(g) / ghz / 1e3, median(c_init) / ghz / 1e3, median(wait) / 1e3,
                         median(c_first) / ghz / 1e3, median(c_main) / ghz / 1e3, median(c_epi) / ghz / 1e3,
                         median(slow) / 1e3);
                compact.push_back(line);
            }
            // Per-SM view of one call: entry offsets and ends (first 8 CTAs and the slowest).
            {
                const int c = kCalls / 2;
                double e_min = 1e30;
                for (int b = 0; b < grid; ++b) e_min = std::min(e_min, at(c, b, 0));
                printf("  call %d, CTA: sm entry init griddep first main end (us from the first entry)\n", c);
                int slowest = 0;
                double se = 0;
                for (int b = 0; b < grid; ++b) {
                    double end = 0;
                    for (int w = 0; w < nc; ++w) end = std::max(end, at(c, b, 5 + w));
                    if (end > se) se = end, slowest = b;
                }
                for (int b = 0; b < grid; ++b) {
                    if (b >= 6 && b != slowest && b != grid - 1) continue;
                    double end = 0;
                    for (int w = 0; w < nc; ++w) end = std::max(end, at(c, b, 5 + w));
                    printf("   %4d: sm %3.0f %6.2f %6.2f %6.2f %6.2f %6.2f %6.2f%s\n", b, at(c, b, 15),
                           (at(c, b, 0) - e_min) / 1e3, (at(c, b, 1) - e_min) / 1e3, (at(c, b, 2) - e_min) / 1e3,
                           (at(c, b, 3) - e_min) / 1e3, (at(c, b, 4) - e_min) / 1e3, (end - e_min) / 1e3,
                           b == slowest ? "  (slowest)" : "");
                }
            }
            fflush(stdout);
        }
        cudaFree(ts), cudaFree(scratch);
        B.release();
    }
    printf("\nstamps summary (M = %d, us, medians over calls 4 .. 22; CTA phases: clock64 except griddep)\n"
           "%-22s %-3s %6s %6s %6s %6s %6s %6s %6s | %6s %6s %6s %6s %6s %6s\n",
           m, "config", "pdl", "graph", "period", "span", "gap", "releas", "skew", "sameSM", "init", "grddep", "first",
           "main", "epi", "slow");
    for (const auto& l : compact) printf("%s\n", l.c_str());
    return 0;
}

// ------------------------------------------------------------------------------------------------ carve-out
static int run_carve(const Cfg& cfg, int m) {
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    CK(cudaFuncSetAttribute(copy_kernel<1>, cudaFuncAttributePreferredSharedMemoryCarveout,
                            int(cudaSharedmemCarveoutMaxShared)));
    Bufs B;
    B.alloc(cfg, m, l2);
    const size_t nv = (size_t(m) * cfg.n * 2 + 15) / 16;
    auto copy0 = [&](cudaStream_t s) {
        copy_kernel<0><<<g_sms, 256, 0, s>>>(static_cast<const uint4*>(B.ysrc), static_cast<uint4*>(B.y), nv);
        return cudaGetLastError();
    };
    auto copy1 = [&](cudaStream_t s) {
        copy_kernel<1><<<g_sms, 256, 0, s>>>(static_cast<const uint4*>(B.ysrc), static_cast<uint4*>(B.y), nv);
        return cudaGetLastError();
    };
    printf("# carve-out / kernel switch: %s M=%d (us per graph call; a call = the kernels listed)\n",
           cfg.name().c_str(), m);
    auto t = [&](const char* what, const std::function<cudaError_t(const Args&, cudaStream_t)>& f) {
        const double us = graph_us(B.copies(), [&](int c, cudaStream_t s) { CK(f(B.args(c, m), s)); });
        printf("  %-62s %8.2f\n", what, us);
        fflush(stdout);
        return us;
    };
    for (bool pdl : {true, false}) {
        printf(" pdl %s\n", pdl ? "on" : "off");
        const double c0 = t("copy (default carve-out)", [&](const Args&, cudaStream_t s) { return copy0(s); });
        const double c1 = t("copy (max-shared carve-out)", [&](const Args&, cudaStream_t s) { return copy1(s); });
        const double rb =
            t("rung 0, 200 KB dyn smem", [&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 0, pdl, s); });
        const double rs = t("rung 0, 0 B dyn smem",
                            [&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 0, pdl, s, true, 0); });
        const double r5 =
            t("rung 5 (full)", [&](const Args& a, cudaStream_t s) { return rung_run(cfg, a, 5, pdl, s); });
        const double a0 = t("rung 0 200 KB + copy (default)", [&](const Args& a, cudaStream_t s) {
            CK(rung_run(cfg, a, 0, pdl, s));
            return copy0(s);
        });
        const double a1 = t("rung 0 200 KB + copy (max-shared)", [&](const Args& a, cudaStream_t s) {
            CK(rung_run(cfg, a, 0, pdl, s));
            return copy1(s);
        });
        const double a2 = t("rung 0 0 B + copy (default)", [&](const Args& a, cudaStream_t s) {
            CK(rung_run(cfg, a, 0, pdl, s, true, 0));
            return copy0(s);
        });
        const double a3 = t("rung 5 + copy (default)", [&](const Args& a, cudaStream_t s) {
            CK(rung_run(cfg, a, 5, pdl, s));
            return copy0(s);
        });
        const double a4 = t("rung 5 + copy (max-shared)", [&](const Args& a, cudaStream_t s) {
            CK(rung_run(cfg, a, 5, pdl, s));
            return copy1(s);
        });
        printf("  switch cost (pair - alone - alone): rung0 200KB/default %+.2f, 200KB/max-shared %+.2f, 0B/default "
               "%+.2f, rung5/default %+.2f, rung5/max-shared %+.2f\n",
               a0 - rb - c0, a1 - rb - c1, a2 - rs - c0, a3 - r5 - c0, a4 - r5 - c1);
    }
    B.release();
    return 0;
}

int main(int argc, char** argv) {
    CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB, ws-W dynamic smem %d B, 640 threads\n", prop.name, g_sms,
           prop.l2CacheSize >> 20, wows4::Geo<64, 4>::kSmem);
    const std::string mode = argc > 1 ? argv[1] : "check";
    if (mode == "check") return run_check();
    auto ms_of = [&](int i, std::vector<int> d) {
        if (argc > i) {
            d.clear();
            std::string s(argv[i]);
            for (char* t = strtok(s.data(), ","); t; t = strtok(nullptr, ",")) d.push_back(atoi(t));
        }
        return d;
    };
    if (mode == "ladder") {
        const auto cfgs = parse_cfgs(argc > 2 ? argv[2] : nullptr, kLadderCfgs);
        return run_ladder(cfgs, ms_of(3, {64, 16}), argc > 4 ? atoi(argv[4]) : 1);
    }
    if (mode == "stamps") {
        const auto cfgs = parse_cfgs(argc > 2 ? argv[2] : nullptr, kLadderCfgs);
        return run_stamps(cfgs, argc > 3 ? atoi(argv[3]) : 64);
    }
    if (mode == "carve") {
        const auto cfgs = parse_cfgs(argc > 2 ? argv[2] : "4096x384:u", {});
        return cfgs.empty() ? 2 : run_carve(cfgs[0], argc > 3 ? atoi(argv[3]) : 64);
    }
    printf("modes: check | ladder [cfg,..|all] [M,..] [passes] | stamps [cfg,..|all] [M] | carve [cfg] [M]\n"
           "cfg: NxK:u (unsplit) | NxK:aS (S f32-atomics splits + convert) | NxK:c6 (clusters of 6)\n");
    return 2;
}
#endif
