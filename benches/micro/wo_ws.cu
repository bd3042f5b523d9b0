// Harness of the warp-specialized weight-only kernel (lowbit/wo_ws.cuh) on synthetic INT4 g128 weights in
// the tiled layout: correctness of every instance (BX 64/128/256, f16/bf16, sym/asym zero points) against an
// f64 CPU reference on odd shapes with poisoned outputs, then CUDA-event timing on the real shapes beside
// cuBLAS f16 (libcublas.so.13 dlopen()ed; put torch's lib directory on LD_LIBRARY_PATH):
//
//   nvcc -O3 -std=c++17 -arch=sm_90a -Ikernels/include benches/micro/wo_ws.cu -o /tmp/wo_ws -ldl -lpthread
//   /tmp/wo_ws           # correctness (full check of every output)
//   /tmp/wo_ws bench     # timings, M in {64, 256, 1024, 4096}, 2 sampled rows + first/last row checked
//
// Weights are not rotated through L2 (4096x4096 INT4 is 8 MB and stays L2-resident across iterations), so the
// small shapes read faster than in lowbit-bench. Not the bench of record (lowbit-bench weight-only --path ws is).
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>
#include <thread>
#include <atomic>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/wo_ws.cuh"

using namespace lowbit;
using wo::Args;

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);    \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static PFN_cuTensorMapEncodeTiled_v12000 enc() {
    void* f = nullptr;
    cudaDriverEntryPointQueryResult q{};
    CK(cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q));
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
}

static CUtensorMap xmap_of(const void* x, int m, int k, int ldx, int bx) {
    CUtensorMap map;
    const cuuint64_t dims[2] = {cuuint64_t(k), cuuint64_t(m)};
    const cuuint64_t strides[1] = {cuuint64_t(ldx) * 2};
    const cuuint32_t box[2] = {64, cuuint32_t(bx)};
    const cuuint32_t estr[2] = {1, 1};
    CUresult r = enc()(&map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, 2, const_cast<void*>(x), dims, strides, box, estr,
                       CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                       CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    if (r != CUDA_SUCCESS) {
        printf("tensor map encode failed %d\n", int(r));
        exit(1);
    }
    return map;
}

template <typename T>
static float tof(T v);
template <>
float tof<__half>(__half v) { return __half2float(v); }
template <>
float tof<__nv_bfloat16>(__nv_bfloat16 v) { return __bfloat162float(v); }
template <typename T>
static T fromf(float v);
template <>
__half fromf<__half>(float v) { return __float2half_rn(v); }
template <>
__nv_bfloat16 fromf<__nv_bfloat16>(float v) { return __float2bfloat16_rn(v); }

struct Problem {
    int m, n, k, strips, ksteps, gtiles, groups;
    std::vector<uint32_t> words, meta;
    std::vector<float> wdq;  // [n][k] dequantized (T-rounded) weights
};

// Random tiled-layout weights + metadata; dense dequantized copy via the fragment mapping.
template <typename T>
static void make_problem(Problem& P, int m, int n, int k, bool asym, uint64_t seed) {
    P.m = m, P.n = n, P.k = k;
    P.strips = (n + 15) / 16, P.ksteps = (k + 63) / 64, P.gtiles = 8, P.groups = (P.ksteps * 4 + 7) / 8;
    std::mt19937_64 rng(seed);
    P.words.resize(size_t(P.strips) * P.ksteps * 128);
    for (auto& w : P.words) w = uint32_t(rng());
    P.meta.resize(size_t(P.strips) * P.groups * 16);
    std::uniform_real_distribution<float> sd(0.5f / 64, 1.5f / 64);
    for (size_t i = 0; i < P.meta.size() / 2; ++i) {
        const __half s0 = __float2half_rn(sd(rng) * (rng() & 1 ? 1.f : -1.f)), s1 = __float2half_rn(sd(rng));
        uint16_t b0, b1;
        memcpy(&b0, &s0, 2), memcpy(&b1, &s1, 2);
        P.meta[2 * i] = uint32_t(b0) | (uint32_t(b1) << 16);
        const uint32_t z0 = asym ? uint32_t(rng() % 16) : 8u, z1 = asym ? uint32_t(rng() % 16) : 8u;
        P.meta[2 * i + 1] = z0 | (z1 << 8);
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
                        __half sh;
                        memcpy(&sh, &sb, 2);
                        const float sT = tof<T>(fromf<T>(__half2float(sh)));
                        P.wdq[size_t(row) * k + col] = tof<T>(fromf<T>(float(code - z) * sT));
                    }
                }
}

typedef int (*cublasCreate_t)(void**);
typedef int (*cublasGemmEx_t)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int,
                              int, const void*, void*, int, int, int, int);
static void* cublas_h = nullptr;
static cublasGemmEx_t gemmex = nullptr;

template <class Fmt, typename T, int BX>
static float run_ws(const Args& a, const CUtensorMap& map, int nsm, int iters) {
    { cudaError_t r_ = wows::launch<Fmt, T, BX>(a, map, nsm, 0); CK(r_); }
    CK(cudaDeviceSynchronize());
    if (iters == 0) return 0.f;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    cudaEventRecord(e0);
    for (int i = 0; i < iters; ++i) wows::launch<Fmt, T, BX>(a, map, nsm, 0);
    cudaEventRecord(e1);
    CK(cudaEventSynchronize(e1));
    float ms;
    cudaEventElapsedTime(&ms, e0, e1);
    return ms * 1000.f / iters;
}

template <typename T>
static int check(const Problem& P, const std::vector<T>& x, const std::vector<T>& y, bool full, double rel,
                 const char* what) {
    // Poison check everywhere, values on all rows (full) or 12 sampled rows.
    size_t bad_nan = 0;
    for (size_t i = 0; i < y.size(); ++i)
        if (!std::isfinite(tof<T>(y[i]))) ++bad_nan;
    std::vector<int> rows;
    if (full) {
        for (int i = 0; i < P.m; ++i) rows.push_back(i);
    } else {
        std::mt19937 r(7);
        for (int i = 0; i < 2; ++i) rows.push_back(int(r() % P.m));
        rows.push_back(0), rows.push_back(P.m - 1);
    }
    std::atomic<long> bad{0};
    std::vector<double> worsts(64, 0.0);
    const int total = int(rows.size()) * P.n;
    const int nth = std::max(1, std::min(64, int(std::thread::hardware_concurrency())));
    std::vector<std::thread> th;
    for (int w = 0; w < nth; ++w) {
        th.emplace_back([&, w]() {
            long b = 0;
            double wst = 0;
            for (int ri = w; ri < total; ri += nth) {
                const int mi = rows[ri / P.n], ni = ri % P.n;
                double s = 0, sa = 0;
                const T* xr = &x[size_t(mi) * P.k];
                const float* wr = &P.wdq[size_t(ni) * P.k];
                for (int kk = 0; kk < P.k; ++kk) {
                    const double v = double(tof<T>(xr[kk])) * wr[kk];
                    s += v, sa += fabs(v);
                }
                const double got = tof<T>(y[size_t(mi) * P.n + ni]);
                const double err = fabs(got - s), tol = rel * fabs(s) + 1e-5 * sa + 1e-6;
                if (!(err <= tol)) ++b;
                const double q = err / (fabs(s) + 1e-5 * sa + 1e-6);
                if (!(q <= wst)) wst = q;
            }
            bad += b;
            worsts[w] = wst;
        });
    }
    for (auto& t : th) t.join();
    double worst = 0;
    for (double v : worsts) worst = std::max(worst, v);
    printf("  check %-28s m=%d n=%d k=%d: %s (nonfinite %zu, bad %ld, worst err/scale %.3g)\n", what, P.m, P.n,
           P.k, (bad == 0 && bad_nan == 0) ? "OK" : "FAIL", bad_nan, bad.load(), worst);
    return (bad == 0 && bad_nan == 0) ? 0 : 1;
}

struct Dev {
    Problem P;
    uint32_t *dw = nullptr, *dm = nullptr;
    void* dwd = nullptr;  // dense f16 weight for cuBLAS (zeros; timing only)
};

template <typename T>
static void dev_make(Dev& D, int n, int k, bool asym, bool dense) {
    make_problem<T>(D.P, 1, n, k, asym, 1234 + n + k + asym);
    CK(cudaMalloc(&D.dw, D.P.words.size() * 4));
    CK(cudaMalloc(&D.dm, D.P.meta.size() * 4));
    CK(cudaMemcpy(D.dw, D.P.words.data(), D.P.words.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(D.dm, D.P.meta.data(), D.P.meta.size() * 4, cudaMemcpyHostToDevice));
    if (dense) {
        CK(cudaMalloc(&D.dwd, size_t(n) * k * 2));
        CK(cudaMemset(D.dwd, 0, size_t(n) * k * 2));
    }
}
static void dev_free(Dev& D) { cudaFree(D.dw), cudaFree(D.dm), cudaFree(D.dwd); }

template <typename T, int BX>
static int one(Dev& D, int m, bool full, int nsm, int iters, float* us, float* cub_us, const char* tag) {
    Problem& P = D.P;
    P.m = m;
    const int n = P.n, k = P.k;
    std::mt19937 r(99 + m);
    std::uniform_real_distribution<float> xd(-1.f, 1.f);
    std::vector<T> x(size_t(m) * k), y(size_t(m) * n);
    for (auto& v : x) v = fromf<T>(xd(r));
    T *dx, *dy;
    CK(cudaMalloc(&dx, x.size() * sizeof(T)));
    CK(cudaMalloc(&dy, y.size() * sizeof(T)));
    CK(cudaMemcpy(dx, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0xFF, y.size() * sizeof(T)));  // poison: NaN in f16 and bf16
    Args a{};
    a.words = D.dw, a.meta = D.dm, a.x = dx, a.y = dy, a.m = m, a.n = n, a.k = k, a.ldx = k;
    a.strips = P.strips, a.ksteps = P.ksteps, a.gtiles = P.gtiles, a.groups = P.groups;
    const CUtensorMap map = xmap_of(dx, m, k, k, BX);
    run_ws<wo::Int4, T, BX>(a, map, nsm, 0);
    CK(cudaMemcpy(y.data(), dy, y.size() * sizeof(T), cudaMemcpyDeviceToHost));
    char what[64];
    snprintf(what, sizeof what, "%s %s BX=%d", std::is_same<T, __half>::value ? "f16" : "bf16", tag, BX);
    const int fails = check<T>(P, x, y, full, std::is_same<T, __half>::value ? 2e-3 : 8e-3, what);
    if (iters > 0) {
        *us = run_ws<wo::Int4, T, BX>(a, map, nsm, iters);
        if (cub_us && gemmex && D.dwd) {
            const float al = 1.f, be = 0.f;
            auto g = [&]() { return gemmex(cublas_h, 1, 0, n, m, k, &al, D.dwd, 2, k, dx, 2, k, &be, dy, 2, n, 68, -1); };
            const int st = g();
            CK(cudaDeviceSynchronize());
            cudaEvent_t e0, e1;
            cudaEventCreate(&e0), cudaEventCreate(&e1);
            cudaEventRecord(e0);
            for (int i = 0; i < iters; ++i) g();
            cudaEventRecord(e1);
            CK(cudaEventSynchronize(e1));
            float ms;
            cudaEventElapsedTime(&ms, e0, e1);
            *cub_us = st == 0 ? ms * 1000.f / iters : -1.f;
        }
    }
    cudaFree(dx), cudaFree(dy);
    return fails;
}

int main(int argc, char** argv) {
    int dev = 0, nsm = 0;
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, dev);
    printf("device %s, %d SMs\n", prop.name, nsm);
    if (!wows::available<wo::Int4, __half, 128>()) {
        printf("ws kernel not available\n");
        return 1;
    }
    if (void* lib = dlopen("libcublas.so.13", RTLD_NOW)) {
        auto cr = reinterpret_cast<cublasCreate_t>(dlsym(lib, "cublasCreate_v2"));
        gemmex = reinterpret_cast<cublasGemmEx_t>(dlsym(lib, "cublasGemmEx"));
        if (!cr || cr(&cublas_h) != 0) gemmex = nullptr;
    } else {
        printf("no libcublas.so.13: %s\n", dlerror());
    }
    const bool bench = argc > 1 && strcmp(argv[1], "bench") == 0;
    int fails = 0;
    float us = 0, cu = -1;
    if (!bench) {
        // Odd shapes (M, N, K), full CPU check of every output, every instance, sym and asym zero points.
        const int shapes[][3] = {{67, 333, 1000}, {333, 1000, 2048}, {1, 48, 64}, {1000, 2064, 1032}, {130, 4096, 4096}};
        for (auto& sh : shapes) {
            for (int asym = 0; asym < 2; ++asym) {
                const char* tag = asym ? "asym" : "sym";
                Dev Dh, Db;
                dev_make<__half>(Dh, sh[1], sh[2], asym, false);
                dev_make<__nv_bfloat16>(Db, sh[1], sh[2], asym, false);
                fails += one<__half, 64>(Dh, sh[0], true, nsm, 0, &us, nullptr, tag);
                fails += one<__half, 128>(Dh, sh[0], true, nsm, 0, &us, nullptr, tag);
                fails += one<__half, 256>(Dh, sh[0], true, nsm, 0, &us, nullptr, tag);
                fails += one<__nv_bfloat16, 128>(Db, sh[0], true, nsm, 0, &us, nullptr, tag);
                fails += one<__nv_bfloat16, 256>(Db, sh[0], true, nsm, 0, &us, nullptr, tag);
                dev_free(Dh), dev_free(Db);
            }
        }
        printf("correctness: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
        return fails ? 1 : 0;
    }
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    const int ms[] = {64, 256, 1024, 4096};
    printf("%-12s %5s %9s %9s %9s %9s  %s\n", "NxK", "M", "BX64 us", "BX128 us", "BX256 us", "cuBLAS us", "cuBLAS/best");
    for (auto& sh : shapes) {
        Dev D;
        dev_make<__half>(D, sh[0], sh[1], true, true);
        for (int m : ms) {
            const int it = m >= 1024 ? 10 : 30;
            float u64 = 1e9f, u128 = 1e9f, u256 = 1e9f;
            cu = -1;
            fails += one<__half, 64>(D, m, false, nsm, it, &u64, &cu, "asym");
            if (m >= 128) fails += one<__half, 128>(D, m, false, nsm, it, &u128, nullptr, "asym");
            if (m >= 256) fails += one<__half, 256>(D, m, false, nsm, it, &u256, nullptr, "asym");
            const float best = fminf(u64, fminf(u128, u256));
            printf("%5dx%-6d %5d %9.1f %9.1f %9.1f %9.1f  %.2fx\n", sh[0], sh[1], m, u64, u128, u256, cu, cu / best);
            fflush(stdout);
        }
        dev_free(D);
    }
    printf("bench checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}
