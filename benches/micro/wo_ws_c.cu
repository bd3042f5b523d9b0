// Harness of ws-C (weight-only NOTES.md ws-C): split-K through thread-block clusters for the INT4 ws kernels
// (lowbit/wo_ws.cuh launch_c, kernels/weight_only/ws_c.cu) against the library's current ws plan (ws.cu:
// lowbit_wo_ws_plan -> ws v1 unsplit or ws-S with f32 atomics + convert) and cuBLAS f16, one process.
//
// Build (GPU machine; the ws-C instances in 12 parts, in parallel; dist/wom256/run.sh does this):
//   NV="nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a --expt-relaxed-constexpr -Ikernels/include"
//   $NV -c kernels/weight_only/ws.cu -o ws.o
//   for p in $(seq 0 11); do $NV -c -DLOWBIT_WS_C_PART=$p -DLOWBIT_WS_C_FN=lowbit_wo_ws_c_int4_p$p \
//       kernels/weight_only/ws_c.cu -o wsc$p.o; done
//   $NV -c kernels/weight_only/ws_c.cu -o wsc_lib.o   # the library build of ws_c.cu (plan + entry point)
//   $NV -c benches/micro/wo_ws_c.cu -o main.o && $NV ws.o wsc*.o main.o -o wo_ws_c -ldl -lpthread
//
//   wo_ws_c check   # odd shapes (odd M, N not a multiple of 128, K not a multiple of 64, empty last slices,
//                   # groups 32 / 64 / 128, channel scales), f16 and bf16, every ws-C instance (mainloop v1 / S x
//                   # BX 64 / 128 / 256 x 2 / 4 slices) and the library plan against an f64 CPU reference of every
//                   # output, outputs NaN-poisoned first; every call twice (bit-identical), v1 and S bit-identical
//   wo_ws_c small   # check on two small shapes, f16 only (for compute-sanitizer memcheck / racecheck)
//   wo_ws_c plan [M,..]   # the automatic plan before (atomics splits) and after ws-C (lowbit_wo_ws_c_plan and the
//                   # library build's entry point), graph replay, cuBLAS f16 the same run (f16; bf16 at M = 256)
//   wo_ws_c bench [NxK,..] [M,..]   # graph replay (CUDA graph of >= 24 calls over weight copies > 3x L2, median of
//                   # 15), cuBLAS f16 (cublasGemmEx, f32 compute, f16 weights rotated the same way), the library
//                   # plan, ws v1 unsplit per BX, ws-S + atomics at 2 / 4 splits, ws-C per (mainloop, BX, slices);
//                   # sampled rows of every variant checked against the library plan's output
// libcublas.so.13 is dlopen()ed (put its folder on LD_LIBRARY_PATH).
#include <cuda.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <atomic>
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
#include "lowbit/wo_ws.cuh"

using lowbit::wo::Args;
using micro::BlasCreate, micro::BlasGemmEx, micro::BlasSetStream, micro::graph_us;

// ws.cu (library, linked): plan and launcher of ws v1 / ws-S.
cudaError_t lowbit_wo_ws_int4(const Args&, int, int, int, int, cudaStream_t);
void lowbit_wo_ws_plan(int, int, int, int, int*, int*);
// ws_c.cu parts ((dtype x mainloop) x BX, LOWBIT_WS_C_PART 0..11), cudaErrorNotSupported for the other parts' instances.
#define WS_C_PART(p) cudaError_t lowbit_wo_ws_c_int4_p##p(const Args&, int, int, int, int, cudaStream_t, int*);
WS_C_PART(0) WS_C_PART(1) WS_C_PART(2) WS_C_PART(3) WS_C_PART(4) WS_C_PART(5)
WS_C_PART(6) WS_C_PART(7) WS_C_PART(8) WS_C_PART(9) WS_C_PART(10) WS_C_PART(11)
using WsCFn = cudaError_t (*)(const Args&, int, int, int, int, cudaStream_t, int*);
static const WsCFn kWsCParts[12] = {lowbit_wo_ws_c_int4_p0, lowbit_wo_ws_c_int4_p1, lowbit_wo_ws_c_int4_p2,
                                    lowbit_wo_ws_c_int4_p3, lowbit_wo_ws_c_int4_p4, lowbit_wo_ws_c_int4_p5,
                                    lowbit_wo_ws_c_int4_p6, lowbit_wo_ws_c_int4_p7, lowbit_wo_ws_c_int4_p8,
                                    lowbit_wo_ws_c_int4_p9, lowbit_wo_ws_c_int4_p10, lowbit_wo_ws_c_int4_p11};

// ws_c.cu as the library builds it (no LOWBIT_WS_C_PART): the shipped entry point and plan (mode `plan`).
cudaError_t lowbit_wo_ws_c_int4(const Args&, int, int, int, int, cudaStream_t, int*);
int lowbit_wo_ws_c_plan(int, int, int, int, int*);

static cudaError_t ws_c(const Args& a, int dtype, int bx, int cs, int ml, cudaStream_t st, int* clusters = nullptr) {
    const int bxi = bx == 64 ? 0 : bx == 128 ? 1 : 2;
    return kWsCParts[(dtype * 2 + ml) * 3 + bxi](a, dtype, bx, cs, ml, st, clusters);
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

// The library's current plan: lowbit_wo_ws_plan's (bx, splits), atomics into the zeroed workspace + convert when split.
static cudaError_t lib_run(const Args& a0, int dtype, int bx, int sp, cudaStream_t s) {
    Args a = a0;
    sp = lowbit::wows::effective_splits(a, sp);  // as launch_s (a clamped split stores T directly, no convert)
    cudaError_t e = lowbit_wo_ws_int4(a, dtype, bx, sp, g_sms, s);
    if (e != cudaSuccess || sp == 1) return e;
    const int64_t total = int64_t(a.m) * a.n;
    const int blocks = int((total + 255) / 256 > 4096 ? 4096 : (total + 255) / 256);
    if (dtype == 0)
        lowbit::wo::convert_kernel<__half><<<blocks, 256, 0, s>>>(a.ws, static_cast<__half*>(a.y), total);
    else
        lowbit::wo::convert_kernel<__nv_bfloat16><<<blocks, 256, 0, s>>>(a.ws, static_cast<__nv_bfloat16*>(a.y), total);
    return cudaGetLastError();
}

// ------------------------------------------------------------------------------------------------ check

static int run_checks(bool small) {
    struct Shape {
        int m, n, k, gtiles;
        bool asym, chan;
    };
    const Shape shapes[] = {{67, 333, 1000, 8, true, false},   {333, 1000, 2048, 4, false, true},
                            {1, 48, 64, 8, true, false},       {257, 4100, 576, 8, true, true},
                            {1000, 2064, 1032, 2, true, false}, {130, 4096, 4096, 8, false, false},
                            {512, 1040, 1984, 8, true, true}};
    const Shape small_shapes[] = {{67, 333, 1000, 8, true, true}, {257, 520, 576, 4, true, false}};
    int fails = 0, checks = 0;
    std::vector<Shape> list(small ? std::begin(small_shapes) : std::begin(shapes),
                            small ? std::end(small_shapes) : std::end(shapes));
    for (const Shape& sh : list) {
        for (int dtype = 0; dtype < (small ? 1 : 2); ++dtype) {
            Problem P;
            make_problem(P, sh.n, sh.k, sh.gtiles, sh.asym, sh.chan, dtype, 77 + sh.n * 3 + sh.k + dtype);
            const int m = sh.m;
            std::mt19937 r(99 + m);
            std::uniform_real_distribution<float> xd(-1.f, 1.f);
            std::vector<uint16_t> x(size_t(m) * sh.k), y(size_t(m) * sh.n), y1(y.size()), yv1(y.size());
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
            {
                int bx = 64, sp = 1;
                lowbit_wo_ws_plan(m, P.strips, P.ksteps, g_sms, &bx, &sp);
                run_get([&] { return lib_run(a, dtype, bx, sp, 0); }, y);
                snprintf(what, sizeof what, "%s lib plan BX=%d sp=%d", dt, bx, sp);
                fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                for (int fsp : {2, 3}) {  // ws-S + atomics forced
                    run_get([&] { return lib_run(a, dtype, 128, fsp, 0); }, y);
                    snprintf(what, sizeof what, "%s ws-S atomics BX=128 sp=%d", dt, fsp);
                    fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                }
            }
            {
                // The library build's entry point and plan (ws_c.cu without LOWBIT_WS_C_PART): the plan's pick where it
                // has one, else BX 128 x 2; and BX 256 x 4.
                int cbx = 128;
                const int cs = lowbit_wo_ws_c_plan(m, P.strips, P.ksteps, g_sms, &cbx);
                run_get([&] { return lowbit_wo_ws_c_int4(a, dtype, cbx, cs > 1 ? cs : 2, 0, 0, nullptr); }, y);
                snprintf(what, sizeof what, "%s library ws-C BX=%d cs=2%s", dt, cbx, cs > 1 ? " (plan)" : "");
                fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                run_get([&] { return lowbit_wo_ws_c_int4(a, dtype, 256, 4, 0, 0, nullptr); }, y);
                snprintf(what, sizeof what, "%s library ws-C BX=256 cs=4", dt);
                fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                if (lowbit_wo_ws_c_int4(a, dtype, 128, 2, 1, 0, nullptr) != cudaErrorNotSupported) {
                    printf("  library ws-C mainloop 1 should be absent FAIL\n");
                    ++fails;
                }
            }
            for (int bx : {64, 128, 256})
                for (int cs : {2, 4}) {
                    for (int ml = 0; ml < 2; ++ml) {
                        run_get([&] { return ws_c(a, dtype, bx, cs, ml, 0); }, y);
                        snprintf(what, sizeof what, "%s ws-C %s BX=%d cs=%d", dt, ml ? "S" : "v1", bx, cs);
                        fails += compare(y, ref, mag, dtype, what, m, P), ++checks;
                        run_get([&] { return ws_c(a, dtype, bx, cs, ml, 0); }, y1);
                        if (memcmp(y.data(), y1.data(), y.size() * 2) != 0) {
                            printf("  %s: second call differs (not deterministic) FAIL\n", what);
                            ++fails;
                        }
                        ++checks;
                        if (ml == 0) {
                            yv1 = y;
                        } else if (memcmp(y.data(), yv1.data(), y.size() * 2) != 0) {
                            printf("  %s: differs from v1's ws-C bit for bit FAIL\n", what);
                            ++fails;
                        }
                    }
                }
            printf("check m=%d n=%d k=%d g%d %s%s %s: %d failures so far\n", m, sh.n, sh.k, sh.gtiles * 16,
                   sh.asym ? "asym" : "sym", sh.chan ? " chan" : "", dt, fails);
            fflush(stdout);
            cudaFree(dw), cudaFree(dm), cudaFree(dc), cudaFree(dx), cudaFree(dy), cudaFree(dws);
        }
    }
    printf("checks: %s (%d of %d failed)\n", fails ? "FAIL" : "ALL OK", fails, checks);
    return fails;
}

// ------------------------------------------------------------------------------------------------ bench
// graph_us and the cuBLAS entry-point types (BlasCreate, BlasSetStream, BlasGemmEx): baselines.cuh.

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

static int run_bench(const std::vector<std::pair<int, int>>& shapes, const std::vector<int>& ms, bool bf16_spot) {
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
    // Resident clusters per ws-C instance (f16).
    for (int ml = 0; ml < 2; ++ml)
        for (int bx : {64, 128, 256})
            for (int cs : {2, 4}) {
                int n = -1;
                Args a{};
                CK(ws_c(a, 0, bx, cs, ml, 0, &n));
                printf("max active clusters: ws-C %s BX=%d cs=%d: %d (%d CTAs)\n", ml ? "S" : "v1", bx, cs, n, n * cs);
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
    printf("%-12s %4s %-30s %9s %9s %8s\n", "shape", "M", "variant", "us", "cublas", "vs cuBLAS");
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
        const int tiles128 = (strips + 7) / 8;
        for (int m : ms) {
            auto args = [&](int c) {
                Args a{};
                a.words = wc[c].w, a.meta = wc[c].m, a.x = x, a.y = y, a.ws = ws;
                a.m = m, a.n = n, a.k = k, a.ldx = k;
                a.strips = strips, a.ksteps = ksteps, a.gtiles = 8, a.groups = groups;
                a.x_vec = 1, a.sms = g_sms;
                return a;
            };
            const float one = 1.f, zero = 0.f;
            const double cub = graph_us(fcopies, [&](int c, cudaStream_t s) {
                set_stream(h, s);
                gemm(h, 1, 0, n, m, k, &one, fw[c], 2, k, x, 2, k, &zero, y, 2, n, 68, -1);
            });
            int pbx = 64, psp = 1;
            lowbit_wo_ws_plan(m, strips, ksteps, g_sms, &pbx, &psp);
            // Reference output: the library plan on copy 0 (sampled rows compared for every other variant).
            std::vector<int> rows = {0, m / 2, m - 1};
            std::vector<uint16_t> ref(size_t(m) * n), got(size_t(m) * n);
            CK(lib_run(args(0), 0, pbx, psp, 0));
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
                if (bad) printf("%5dx%-6d %4d %-30s AGREE FAIL (%zu differ)\n", n, k, m, name, bad), rc |= 1;
            };
            auto row = [&](const char* name, const std::function<cudaError_t(const Args&, cudaStream_t)>& f) {
                agree([&](cudaStream_t s) { return f(args(0), s); }, name);
                const double us = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(f(args(c), s)); });
                printf("%5dx%-6d %4d %-30s %9.1f %9.1f %7.3fx\n", n, k, m, name, us, cub, cub / us);
                fflush(stdout);
            };
            char name[64];
            snprintf(name, sizeof name, "lib plan BX=%d sp=%d%s", pbx, psp, psp > 1 ? " (atomics)" : "");
            row(name, [&](const Args& a, cudaStream_t s) { return lib_run(a, 0, pbx, psp, s); });
            for (int bx : {64, 128, 256}) {
                if ((bx == 64 && m > 256) || (bx == 256 && m <= 128)) continue;
                const int tiles = tiles128 * ((m + bx - 1) / bx);
                if (!(bx == pbx && psp == 1)) {
                    snprintf(name, sizeof name, "v1 unsplit BX=%d (%d tiles)", bx, tiles);
                    row(name, [&, bx](const Args& a, cudaStream_t s) { return lib_run(a, 0, bx, 1, s); });
                }
                for (int cs : {2, 4}) {
                    if (tiles * cs > 2 * g_sms) continue;
                    if (!(bx == pbx && cs == psp)) {
                        snprintf(name, sizeof name, "ws-S atomics BX=%d sp=%d", bx, cs);
                        row(name, [&, bx, cs](const Args& a, cudaStream_t s) { return lib_run(a, 0, bx, cs, s); });
                    }
                    for (int ml = 0; ml < 2; ++ml) {
                        snprintf(name, sizeof name, "ws-C %s BX=%d cs=%d (%d CTAs)", ml ? "S " : "v1", bx, cs, tiles * cs);
                        row(name, [&, bx, cs, ml](const Args& a, cudaStream_t s) { return ws_c(a, 0, bx, cs, ml, s); });
                    }
                }
            }
            if (bf16_spot && m == 256) {
                // bf16 spot timing: the library plan and ws-C v1 / S at the plan's BX, 2 and 4 slices (no cuBLAS bf16).
                const double ub = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(lib_run(args(c), 1, pbx, psp, s)); });
                printf("%5dx%-6d %4d %-30s %9.1f\n", n, k, m, "bf16 lib plan", ub);
                for (int cs : {2, 4})
                    for (int ml = 0; ml < 2; ++ml) {
                        if (tiles128 * ((m + pbx - 1) / pbx) * cs > 2 * g_sms) continue;
                        const double uc = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(ws_c(args(c), 1, pbx, cs, ml, s)); });
                        snprintf(name, sizeof name, "bf16 ws-C %s BX=%d cs=%d", ml ? "S " : "v1", pbx, cs);
                        printf("%5dx%-6d %4d %-30s %9.1f\n", n, k, m, name, uc);
                    }
                fflush(stdout);
            }
        }
        for (auto& p : fw) cudaFree(p);
        for (auto& w : wc) cudaFree(w.w), cudaFree(w.m);
    }
    cudaFree(x), cudaFree(y), cudaFree(ws);
    return rc;
}

// The automatic plan before (lowbit_wo_ws_plan: atomics splits) and after ws-C (lowbit_wo_ws_c_plan + the library
// entry point), graph replay as run_bench, cuBLAS f16 the same run; f16, and bf16 at M = 256.
static int run_plan_bench(const std::vector<std::pair<int, int>>& shapes, const std::vector<int>& ms) {
    void* lib = dlopen("libcublas.so.13", RTLD_NOW);
    if (!lib) return 1;
    auto create = (BlasCreate)dlsym(lib, "cublasCreate_v2");
    auto set_stream = (BlasSetStream)dlsym(lib, "cublasSetStream_v2");
    auto gemm = (BlasGemmEx)dlsym(lib, "cublasGemmEx");
    void* h = nullptr;
    if (!create || !gemm || !set_stream || create(&h)) return 1;
    int l2 = 0, rc = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    const int mmax = *std::max_element(ms.begin(), ms.end());
    int nmax = 0, kmax = 0;
    for (auto& s : shapes) nmax = std::max(nmax, s.first), kmax = std::max(kmax, s.second);
    void *x, *y;
    float* ws;
    CK(cudaMalloc(&x, size_t(mmax) * kmax * 2));
    CK(cudaMalloc(&y, size_t(mmax) * nmax * 2));
    CK(cudaMalloc(&ws, size_t(mmax) * nmax * 4));
    CK(cudaMemset(ws, 0, size_t(mmax) * nmax * 4));
    CK(cudaMemset(x, 0x33, size_t(mmax) * kmax * 2));
    printf("%-12s %4s %-22s %9s %-24s %9s %9s %8s %8s\n", "shape", "M", "old plan", "us", "new plan", "us", "cublas",
           "old x", "new x");
    for (auto& sh : shapes) {
        const int n = sh.first, k = sh.second, strips = (n + 15) / 16, ksteps = (k + 63) / 64, groups = ksteps / 2;
        const size_t fb = size_t(n) * k * 2;
        const int fcopies = int(std::max<size_t>(1, 3 * size_t(l2) / fb + 1));
        std::vector<void*> fw(fcopies);
        for (auto& p : fw) {
            CK(cudaMalloc(&p, fb));
            CK(cudaMemset(p, 0x3c, fb));
        }
        const size_t nw = size_t(strips) * ksteps * 128, nm = size_t(strips) * groups * 16;
        const int qcopies = int(std::max<size_t>(1, 3 * size_t(l2) / ((nw + nm) * 4) + 1));
        std::vector<DevW> wc(qcopies);
        for (int c = 0; c < qcopies; ++c) {
            CK(cudaMalloc(&wc[c].w, nw * 4));
            CK(cudaMalloc(&wc[c].m, nm * 4));
            fill_words<<<1024, 256>>>(wc[c].w, nw, 7777ull * c);
            fill_meta<<<1024, 256>>>(wc[c].m, nm / 2);
        }
        CK(cudaDeviceSynchronize());
        for (int m : ms) {
            auto args = [&](int c) {
                Args a{};
                a.words = wc[c].w, a.meta = wc[c].m, a.x = x, a.y = y, a.ws = ws;
                a.m = m, a.n = n, a.k = k, a.ldx = k;
                a.strips = strips, a.ksteps = ksteps, a.gtiles = 8, a.groups = groups;
                a.x_vec = 1, a.sms = g_sms;
                return a;
            };
            const float one = 1.f, zero = 0.f;
            const double cub = graph_us(fcopies, [&](int c, cudaStream_t s) {
                set_stream(h, s);
                gemm(h, 1, 0, n, m, k, &one, fw[c], 2, k, x, 2, k, &zero, y, 2, n, 68, -1);
            });
            int pbx = 64, psp = 1, cbx = 0;
            lowbit_wo_ws_plan(m, strips, ksteps, g_sms, &pbx, &psp);
            const int cs = psp > 1 ? lowbit_wo_ws_c_plan(m, strips, ksteps, g_sms, &cbx) : 0;
            for (int dtype = 0; dtype < (m == 256 ? 2 : 1); ++dtype) {
                auto newp = [&](const Args& a, cudaStream_t s) {
                    return cs > 1 ? lowbit_wo_ws_c_int4(a, dtype, cbx, cs, 0, s, nullptr) : lib_run(a, dtype, pbx, psp, s);
                };
                // agreement of the two plans on copy 0 (sampled rows)
                std::vector<uint16_t> r0(size_t(m) * n), r1(size_t(m) * n);
                CK(lib_run(args(0), dtype, pbx, psp, 0));
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(r0.data(), y, r0.size() * 2, cudaMemcpyDeviceToHost));
                CK(cudaMemset(y, 0xFF, size_t(m) * n * 2));
                CK(newp(args(0), 0));
                CK(cudaDeviceSynchronize());
                CK(cudaMemcpy(r1.data(), y, r1.size() * 2, cudaMemcpyDeviceToHost));
                size_t bad = 0;
                for (int i : {0, m / 2, m - 1}) {
                    double mx = 0;
                    for (int j = 0; j < n; ++j) mx = std::max(mx, double(fabsf(h2f(r0[size_t(i) * n + j], dtype))));
                    for (int j = 0; j < n; ++j)
                        if (!(fabs(h2f(r0[size_t(i) * n + j], dtype) - h2f(r1[size_t(i) * n + j], dtype)) <= 1e-2 * mx + 1e-3)) ++bad;
                }
                if (bad) printf("AGREE FAIL %dx%d M=%d dtype %d (%zu)\n", n, k, m, dtype, bad), rc |= 1;
                const double uo = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(lib_run(args(c), dtype, pbx, psp, s)); });
                const double un = graph_us(qcopies, [&](int c, cudaStream_t s) { CK(newp(args(c), s)); });
                char on[40], nn[40];
                snprintf(on, sizeof on, "%sBX=%d sp=%d", dtype ? "bf16 " : "", pbx, psp);
                if (cs > 1)
                    snprintf(nn, sizeof nn, "%sws-C BX=%d cs=%d", dtype ? "bf16 " : "", cbx, cs);
                else
                    snprintf(nn, sizeof nn, "%s(same)", dtype ? "bf16 " : "");
                printf("%5dx%-6d %4d %-22s %9.1f %-24s %9.1f %9.1f %7.3fx %7.3fx\n", n, k, m, on, uo, nn, un, cub, cub / uo,
                       cub / un);
                fflush(stdout);
            }
        }
        for (auto& p : fw) cudaFree(p);
        for (auto& w : wc) cudaFree(w.w), cudaFree(w.m);
    }
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
    if (mode == "small") return run_checks(true);  // two small shapes, f16 (compute-sanitizer)
    if (mode == "bench") {
        std::vector<std::pair<int, int>> shapes = {{8192, 28672}, {4096, 4096}, {11008, 4096}, {28672, 8192}};
        std::vector<int> ms = {128, 256, 512, 1024};
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
        return run_bench(shapes, ms, argc > 4 && strcmp(argv[4], "bf16") == 0);
    }
    if (mode == "plan") {
        std::vector<std::pair<int, int>> shapes = {{8192, 28672}, {4096, 4096}, {11008, 4096}, {28672, 8192}};
        std::vector<int> ms = {128, 192, 256, 333, 384, 512, 768, 1024};
        if (argc > 2) {
            ms.clear();
            for (char* t = strtok(argv[2], ","); t; t = strtok(nullptr, ",")) ms.push_back(atoi(t));
        }
        return run_plan_bench(shapes, ms);
    }
    printf("modes: check | small | bench [NxK,..|all] [M,..] [bf16] | plan [M,..]\n");
    return 2;
}
