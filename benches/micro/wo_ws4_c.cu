// Harness of ws4-C (weight-only NOTES.md ws4-C, sixteenth session): ws-W's K splits (four consumer warpgroups, tiles of
// 256 weight rows x 64 activation rows, M = 33..64) as thread-block clusters summed over distributed shared memory
// (lowbit/wo_ws4.cuh launch_c, kernels/weight_only/ws4_c.cu) against the library's ws-W plan (ws.cu lowbit_wo_ws4_plan:
// f32 atomics into a zeroed workspace + a convert launch) and cuBLAS f16, one process.
//
// Build (benches/micro/wo_ws4_c.sh does this): ws.cu, ws4_c.cu as the library builds it, and ws4_c.cu once per
// (dtype, cluster size 2 .. 8) part (-DLOWBIT_WS4_C_PART=p -DLOWBIT_WS4_C_FN=lowbit_wo_ws4_c_int4_p<p>, p = dtype * 8 +
// cs - 1), then this file; link -ldl -lpthread.
//
//   wo_ws4_c check   # odd shapes (M 1 / 17 / 33 / 40 / 47 / 64, N not a multiple of 256, K not a multiple of 64,
//                    # slices starting mid-group, empty last slices, groups 32 / 64 / 128, channel scales), f16 and
//                    # bf16: every cluster size 2 .. 8, the library's atomics plan and the library build's ws4-C entry
//                    # point + plan against an f64 CPU reference of every output, outputs NaN-poisoned first; every
//                    # ws4-C call twice (bit-identical)
//   wo_ws4_c small   # two small shapes, f16 (compute-sanitizer)
//   wo_ws4_c bench [NxK,..] [M,..] [passes]   # graph replay (CUDA graph of >= 24 calls over weight copies > 3x L2,
//                    # median of 15), cuBLAS f16 (f16 weights rotated the same way), the library's ws-W atomics plan,
//                    # ws4-C at every cluster size, the new plan; sampled rows of every variant checked against the
//                    # library plan's output; resident clusters per size
// libcublas.so.13 is dlopen()ed (put its folder on LD_LIBRARY_PATH).
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "baselines.cuh"
#include "wo_int4_problem.cuh"
#include "lowbit/wo_ws4.cuh"

using lowbit::wo::Args;
using micro::BlasCreate, micro::BlasGemmEx, micro::BlasSetStream, micro::graph_us;

// ws.cu (library, linked): ws-W's plan and launcher.
cudaError_t lowbit_wo_ws4_int4(const Args&, int, int, int, cudaStream_t);
void lowbit_wo_ws4_plan(int, int, int, int, int*);
// ws4_c.cu as the library builds it: entry point (its cluster sizes) and plan.
cudaError_t lowbit_wo_ws4_c_int4(const Args&, int, int, cudaStream_t, int*);
int lowbit_wo_ws4_c_plan(int, int, int, int, int);
// ws4_c.cu parts: p = dtype * 8 + cs - 1 (cs 2 .. 8).
#define WS4_C_PART(p) cudaError_t lowbit_wo_ws4_c_int4_p##p(const Args&, int, int, cudaStream_t, int*);
WS4_C_PART(1) WS4_C_PART(2) WS4_C_PART(3) WS4_C_PART(4) WS4_C_PART(5) WS4_C_PART(6) WS4_C_PART(7)
WS4_C_PART(9) WS4_C_PART(10) WS4_C_PART(11) WS4_C_PART(12) WS4_C_PART(13) WS4_C_PART(14) WS4_C_PART(15)
using Ws4CFn = cudaError_t (*)(const Args&, int, int, cudaStream_t, int*);
static const Ws4CFn kParts[16] = {nullptr, lowbit_wo_ws4_c_int4_p1, lowbit_wo_ws4_c_int4_p2, lowbit_wo_ws4_c_int4_p3,
                                  lowbit_wo_ws4_c_int4_p4, lowbit_wo_ws4_c_int4_p5, lowbit_wo_ws4_c_int4_p6,
                                  lowbit_wo_ws4_c_int4_p7, nullptr, lowbit_wo_ws4_c_int4_p9, lowbit_wo_ws4_c_int4_p10,
                                  lowbit_wo_ws4_c_int4_p11, lowbit_wo_ws4_c_int4_p12, lowbit_wo_ws4_c_int4_p13,
                                  lowbit_wo_ws4_c_int4_p14, lowbit_wo_ws4_c_int4_p15};
static cudaError_t ws4c(const Args& a, int dtype, int cs, cudaStream_t st, int* clusters = nullptr) {
    return kParts[dtype * 8 + cs - 1](a, dtype, cs, st, clusters);
}

#define CK(...)                                                                                          \
    do {                                                                                                 \
        cudaError_t e_ = (__VA_ARGS__);                                                                  \
        if (e_ != cudaSuccess) {                                                                         \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
            exit(1);                                                                                     \
        }                                                                                                \
    } while (0)

static int g_sms = 132;

// ------------------------------------------------------------------------------------------------ check

// The library's ws-W plan as wo_launch.cu runs it: lowbit_wo_ws4_int4 with the plan's splits (f32 atomics into the
// zeroed workspace) + convert_kernel (converts and re-zeroes) when split.
static cudaError_t lib_run(const Args& a, int dtype, int sp, cudaStream_t s) {
    sp = lowbit::wows4::effective_splits(a, sp);
    cudaError_t e = lowbit_wo_ws4_int4(a, dtype, sp, g_sms, s);
    if (e != cudaSuccess || sp == 1) return e;
    const int64_t total = int64_t(a.m) * a.n;
    const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
    if (dtype == 0)
        lowbit::wo::convert_kernel<__half><<<blocks, 256, 0, s>>>(a.ws, static_cast<__half*>(a.y), total);
    else
        lowbit::wo::convert_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(a.ws, static_cast<__nv_bfloat16*>(a.y), total);
    return cudaGetLastError();
}

// The new plan: ws4-C where lowbit_wo_ws4_c_plan picks a cluster size, else the library's plan.
static cudaError_t new_run(const Args& a, int dtype, int sp, int cs, cudaStream_t s) {
    return cs > 1 ? lowbit_wo_ws4_c_int4(a, dtype, cs, s, nullptr) : lib_run(a, dtype, sp, s);
}

static int run_checks(bool small) {
    struct Shape {
        int m, n, k, gtiles;
        bool asym, chan;
    };
    const Shape shapes[] = {{33, 333, 1000, 8, true, false},  {47, 4100, 576, 8, true, true},
                            {64, 1040, 1032, 2, true, false}, {64, 4096, 4096, 8, false, false},
                            {40, 2056, 2056, 4, true, true},  {1, 48, 64, 8, true, false},
                            {17, 520, 192, 8, false, true},   {63, 11008, 1024, 8, true, false}};
    const Shape small_shapes[] = {{47, 333, 1000, 8, true, true}, {64, 520, 576, 4, true, false}};
    int fails = 0, checks = 0;
    std::vector<Shape> list(small ? std::begin(small_shapes) : std::begin(shapes),
                            small ? std::end(small_shapes) : std::end(shapes));
    for (const Shape& sh : list) {
        for (int dtype = 0; dtype < (small ? 1 : 2); ++dtype) {
            Problem P;
            make_problem(P, sh.n, sh.k, sh.gtiles, sh.asym, sh.chan, dtype, 177 + sh.n * 3 + sh.k + dtype);
            const int m = sh.m;
            std::mt19937 r(199 + m);
            std::uniform_real_distribution<float> xd(-1.f, 1.f);
            std::vector<uint16_t> x(size_t(m) * sh.k), y(size_t(m) * sh.n), y1(y.size());
            for (auto& v : x) v = f2h(xd(r), dtype);
            std::vector<double> ref, mag;
            reference(P, m, x, dtype, ref, mag);
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
            a.m = m, a.n = sh.n, a.k = sh.k, a.ldx = sh.k;
            a.strips = P.strips, a.ksteps = P.ksteps, a.gtiles = P.gtiles, a.groups = P.groups;
            a.x_vec = 1, a.sms = g_sms;
            auto run_get = [&](const std::function<cudaError_t()>& f, std::vector<uint16_t>& out) {
                CK(cudaMemset(dy, 0xFF, y.size() * 2));  // poison: NaN in f16 and bf16
                CK(f());
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(out.data(), dy, out.size() * 2, cudaMemcpyDeviceToHost));
            };
            char what[96];
            const char* dt = dtype ? "bf16" : "f16";
            int sp = 1;
            lowbit_wo_ws4_plan(m, P.strips, P.ksteps, g_sms, &sp);
            run_get([&] { return lib_run(a, dtype, sp, 0); }, y);
            snprintf(what, sizeof what, "%s ws-W lib plan sp=%d", dt, sp);
            fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
            {
                // The library build's entry point: the plan's cluster size (force 1: the cheapest resident one wherever
                // ws-W splits; the plan's own pick, force 0, where it has one), and each library size.
                for (int force : {0, 1}) {
                    const int cs = lowbit_wo_ws4_c_plan(m, P.strips, P.ksteps, g_sms, force);
                    if (cs < 2) continue;
                    run_get([&] { return lowbit_wo_ws4_c_int4(a, dtype, cs, 0, nullptr); }, y);
                    snprintf(what, sizeof what, "%s library ws4-C plan (force %d) cs=%d", dt, force, cs);
                    fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                }
                for (int cs = 2; cs <= 8; ++cs) {
                    const cudaError_t e = lowbit_wo_ws4_c_int4(a, dtype, cs, 0, nullptr);
                    if (e == cudaErrorNotSupported) {
                        (void)cudaGetLastError();
                        continue;
                    }
                    CK(e);
                    run_get([&] { return lowbit_wo_ws4_c_int4(a, dtype, cs, 0, nullptr); }, y);
                    snprintf(what, sizeof what, "%s library ws4-C cs=%d", dt, cs);
                    fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                }
            }
            for (int cs = 2; cs <= 8; ++cs) {
                run_get([&] { return ws4c(a, dtype, cs, 0); }, y);
                snprintf(what, sizeof what, "%s ws4-C cs=%d (kper %d)", dt, cs, (P.ksteps + cs - 1) / cs);
                fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                run_get([&] { return ws4c(a, dtype, cs, 0); }, y1);
                if (memcmp(y.data(), y1.data(), y.size() * 2) != 0) {
                    printf("  %s: second call differs (not deterministic) FAIL\n", what);
                    ++fails;
                }
                ++checks;
            }
            printf("check m=%d n=%d k=%d g%d %s%s %s (ws-W sp %d): %d failures so far\n", m, sh.n, sh.k, sh.gtiles * 16,
                   sh.asym ? "asym" : "sym", sh.chan ? " chan" : "", dt, sp, fails);
            fflush(stdout);
            cudaFree(dw), cudaFree(dm), cudaFree(dc), cudaFree(dx), cudaFree(dy), cudaFree(dws);
        }
    }
    printf("checks: %s (%d of %d failed)\n", fails ? "FAIL" : "ALL OK", fails, checks);
    return fails;
}

// ------------------------------------------------------------------------------------------------ bench
__global__ void fill_words(uint32_t* w, size_t n, uint64_t seed) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < n; i += size_t(gridDim.x) * blockDim.x) {
        uint64_t z = (i + seed) * 0x9E3779B97F4A7C15ull;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
        w[i] = uint32_t(z ^ (z >> 31));
    }
}
// Metadata: scale pairs ~ 1/64 (f16), zero points 8 (values do not change the time).
__global__ void fill_meta(uint32_t* m, size_t pairs) {
    for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < pairs; i += size_t(gridDim.x) * blockDim.x) {
        m[2 * i] = 0x24002400u + uint32_t(i % 7) * 0x00010001u;
        m[2 * i + 1] = 8u | (8u << 8);
    }
}

static int run_bench(const std::vector<std::pair<int, int>>& shapes, const std::vector<int>& ms, int passes) {
    void* lib = dlopen("libcublas.so.13", RTLD_NOW);
    if (!lib) {
        printf("libcublas.so.13 not found: %s\n", dlerror());
        return 1;
    }
    auto create = (BlasCreate)dlsym(lib, "cublasCreate_v2");
    auto set_stream = (BlasSetStream)dlsym(lib, "cublasSetStream_v2");
    auto gemm = (BlasGemmEx)dlsym(lib, "cublasGemmEx");
    void* h = nullptr;
    if (!create || !gemm || !set_stream || create(&h)) return 1;
    int l2 = 0, rc = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    int resident[9] = {0};
    for (int cs = 2; cs <= 8; ++cs) {
        Args a{};
        CK(ws4c(a, 0, cs, 0, &resident[cs]));
        printf("max active clusters: ws4-C cs=%d: %d (%d CTAs)\n", cs, resident[cs], resident[cs] * cs);
    }
    int mmax = 0, nmax = 0, kmax = 0;
    for (int m : ms) mmax = std::max(mmax, m);
    for (auto& s : shapes) nmax = std::max(nmax, s.first), kmax = std::max(kmax, s.second);
    void *x, *y;
    float* ws;
    CK(cudaMalloc(&x, size_t(mmax) * kmax * 2));
    CK(cudaMalloc(&y, size_t(mmax) * nmax * 2));
    CK(cudaMalloc(&ws, size_t(mmax) * nmax * 4));
    CK(cudaMemset(ws, 0, size_t(mmax) * nmax * 4));
    {
        std::mt19937 rng(1);
        std::vector<uint16_t> hx(size_t(mmax) * kmax);
        for (auto& v : hx) v = f2h(float(int(rng() % 2001) - 1000) / 1000.f, 0);
        CK(cudaMemcpy(x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
    }
    struct Sum {
        int n, k, m, sp, cs;
        double cub, lib, nw;
    };
    std::vector<Sum> sums;
    printf("%-12s %4s %-34s %9s %9s %8s\n", "shape", "M", "variant", "us", "cublas", "vs cuBLAS");
    for (auto& sh : shapes) {
        const int n = sh.first, k = sh.second, strips = (n + 15) / 16, ksteps = (k + 63) / 64, groups = ksteps / 2;
        const size_t fb = size_t(n) * k * 2;
        const int fcopies = int(std::max<size_t>(1, 3 * size_t(l2) / fb + 1));
        std::vector<void*> fw(fcopies);
        for (auto& p : fw) {
            CK(cudaMalloc(&p, fb));
            CK(cudaMemset(p, 0x3c, fb));  // f16 ~1.06: finite
        }
        const size_t nw = size_t(strips) * ksteps * 128, nm = size_t(strips) * groups * 16;
        const size_t qb = (nw + nm) * 4;
        const int qcopies = int(std::max<size_t>(1, 3 * size_t(l2) / qb + 1));
        std::vector<DevW> wc(qcopies);
        for (int c = 0; c < qcopies; ++c) {
            CK(cudaMalloc(&wc[c].w, nw * 4));
            CK(cudaMalloc(&wc[c].m, nm * 4));
            fill_words<<<1024, 256>>>(wc[c].w, nw, 1000003ull * c);
            fill_meta<<<1024, 256>>>(wc[c].m, nm / 2);
        }
        CK(cudaDeviceSynchronize());
        printf("# %dx%d: %d f16 copies, %d INT4 copies (%.1f MB each)\n", n, k, fcopies, qcopies, qb / 1e6);
        const int tiles = (strips + 15) / 16;
        for (int m : ms) {
            auto args = [&](int c) {
                Args a{};
                a.words = wc[c].w, a.meta = wc[c].m, a.x = x, a.y = y, a.ws = ws;
                a.m = m, a.n = n, a.k = k, a.ldx = k;
                a.strips = strips, a.ksteps = ksteps, a.gtiles = 8, a.groups = groups;
                a.x_vec = 1, a.sms = g_sms;
                return a;
            };
            int sp = 1;
            lowbit_wo_ws4_plan(m, strips, ksteps, g_sms, &sp);
            const int pcs = lowbit_wo_ws4_c_plan(m, strips, ksteps, g_sms, 0);
            std::vector<int> rows = {0, m / 2, m - 1};
            std::vector<uint16_t> ref(size_t(m) * n), got(size_t(m) * n);
            CK(lib_run(args(0), 0, sp, 0));
            CK(cudaDeviceSynchronize());
            CK(cudaMemcpy(ref.data(), y, ref.size() * 2, cudaMemcpyDeviceToHost));
            auto agree = [&](const std::function<cudaError_t(cudaStream_t)>& f, const char* name) {
                CK(cudaMemset(y, 0xFF, size_t(m) * n * 2));
                CK(f(0));
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(got.data(), y, got.size() * 2, cudaMemcpyDeviceToHost));
                size_t bad = 0;
                for (int i : rows) {
                    double mx = 0;
                    for (int j = 0; j < n; ++j) mx = std::max(mx, double(fabsf(h2f(ref[size_t(i) * n + j], 0))));
                    for (int j = 0; j < n; ++j) {
                        const double r = h2f(ref[size_t(i) * n + j], 0), g = h2f(got[size_t(i) * n + j], 0);
                        if (!(fabs(r - g) <= 1e-2 * mx + 1e-3)) ++bad;
                    }
                }
                if (bad) printf("%5dx%-6d %4d %-34s AGREE FAIL (%zu differ)\n", n, k, m, name, bad), rc |= 1;
            };
            for (int pass = 0; pass < passes; ++pass) {
                const float one = 1.f, zero = 0.f;
                const double cub = graph_us(fcopies, [&](int c, cudaStream_t s) {
                    set_stream(h, s);
                    gemm(h, 1, 0, n, m, k, &one, fw[c], 2, k, x, 2, k, &zero, y, 2, n, 68, -1);
                });
                auto row = [&](const char* name, const std::function<cudaError_t(const Args&, cudaStream_t)>& f) {
                    if (pass == 0) agree([&](cudaStream_t s) { return f(args(0), s); }, name);
                    const double us = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(f(args(c), s)); });
                    printf("%5dx%-6d %4d %-34s %9.2f %9.2f %7.3fx\n", n, k, m, name, us, cub, cub / us);
                    fflush(stdout);
                    return us;
                };
                char name[80];
                snprintf(name, sizeof name, "lib ws-W sp=%d%s", sp, sp > 1 ? " (atomics)" : "");
                const double ul = row(name, [&](const Args& a, cudaStream_t s) { return lib_run(a, 0, sp, s); });
                snprintf(name, sizeof name, "new plan (%s cs=%d)", pcs > 1 ? "ws4-C" : "lib", pcs);
                const double un = row(name, [&](const Args& a, cudaStream_t s) { return new_run(a, 0, sp, pcs, s); });
                sums.push_back({n, k, m, sp, pcs, cub, ul, un});
                for (int cs = 2; cs <= 8; ++cs) {
                    if (cs == pcs || ksteps < cs) continue;
                    snprintf(name, sizeof name, "ws4-C cs=%d (%d CTAs, kper %d)%s", cs, tiles * cs, (ksteps + cs - 1) / cs,
                             tiles > resident[cs] ? " 2 waves" : "");
                    row(name, [&, cs](const Args& a, cudaStream_t s) { return ws4c(a, 0, cs, s); });
                }
                for (int fsp : {2, 4, 6}) {
                    if (fsp == sp || pass > 0) continue;
                    snprintf(name, sizeof name, "ws-W atomics sp=%d", fsp);
                    row(name, [&, fsp](const Args& a, cudaStream_t s) { return lib_run(a, 0, fsp, s); });
                }
                if (m == 64 && pass == 0 && pcs > 1) {
                    const double ub = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(lib_run(args(c), 1, sp, s)); });
                    const double uc = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(new_run(args(c), 1, sp, pcs, s)); });
                    printf("%5dx%-6d %4d %-34s %9.2f -> %.2f\n", n, k, m, "bf16 lib -> new plan", ub, uc);
                }
            }
        }
        for (auto& p : fw) cudaFree(p);
        for (auto& w : wc) cudaFree(w.w), cudaFree(w.m);
    }
    printf("\nsummary (us; ratio = cuBLAS f16 / kernel, same pass)\n%-12s %4s %4s %4s %9s %9s %9s %8s %8s %7s\n", "shape",
           "M", "sp", "cs", "cublas", "lib", "new", "lib x", "new x", "new/lib");
    for (auto& s : sums)
        printf("%5dx%-6d %4d %4d %4d %9.2f %9.2f %9.2f %7.3fx %7.3fx %7.3f\n", s.n, s.k, s.m, s.sp, s.cs, s.cub, s.lib,
               s.nw, s.cub / s.lib, s.cub / s.nw, s.nw / s.lib);
    cudaFree(x), cudaFree(y), cudaFree(ws);
    return rc;
}

int main(int argc, char** argv) {
    CK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, 0));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs, L2 %d MB\n", prop.name, g_sms, prop.l2CacheSize >> 20);
    const std::string mode = argc > 1 ? argv[1] : "check";
    if (mode == "check") return run_checks(false);
    if (mode == "small") return run_checks(true);
    if (mode == "bench") {
        std::vector<std::pair<int, int>> shapes = {{11008, 4096}, {4096, 4096}, {8192, 28672}, {28672, 8192}};
        std::vector<int> ms = {40, 48, 56, 64};
        if (argc > 2 && strcmp(argv[2], "all") != 0) {
            shapes.clear();
            for (char* t = strtok(argv[2], ","); t; t = strtok(nullptr, ",")) {
                int a = 0, b = 0;
                if (sscanf(t, "%dx%d", &a, &b) == 2) shapes.push_back({a, b});
            }
        }
        if (argc > 3) {
            ms.clear();
            for (char* t = strtok(argv[3], ","); t; t = strtok(nullptr, ",")) ms.push_back(atoi(t));
        }
        return run_bench(shapes, ms, argc > 4 ? atoi(argv[4]) : 1);
    }
    printf("modes: check | small | bench [NxK,..|all] [M,..] [passes]\n");
    return 2;
}
