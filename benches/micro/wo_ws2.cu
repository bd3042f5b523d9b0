// Harness of the ws2 weight-only kernel (lowbit/wo_ws2.cuh: decoder warps + shared-memory-operand wgmma) beside
// ws v1 (lowbit/wo_ws.cuh) and cuBLAS f16 in the same process, on synthetic INT4 g128 weights in the tiled layout:
// correctness of every ws2 instance (BX 64/128/256, f16/bf16, sym/asym zero points, K splits, raster groups) against
// an f64 CPU reference on odd shapes (M 1 / 67 / 130 / 333 / 1031, K with odd k-step counts) with poisoned outputs
// and an identity test, then CUDA-event timing on the real shapes (libcublas.so.13 dlopen()ed: put its directory on
// LD_LIBRARY_PATH). Build here (static cudart of the pip toolkit) or on the GPU machine:
//
//   nvcc -O3 -std=c++17 -gencode=arch=compute_90a,code=sm_90a -Ikernels/include benches/micro/wo_ws2.cu \
//        -o dist/wo-large/wo_ws2 -L.tools/cuda/nvidia/cu13/lib -ldl -lpthread
//   wo_ws2           # correctness (full check of every output); exit code 1 on any failure
//   wo_ws2 bench [i] # timings (shape i only if given), M in {256, 1024, 4096}: v1, ws2 variants, cuBLAS f16
//   wo_ws2 s         # ws-S (lowbit/wo_ws.cuh ws_s_kernel): full checks, bit-identity with v1, splits, identity
//   wo_ws2 sbench [i] # ws-S timings beside v1 and cuBLAS f16, M in {64, 256, 1024, 4096} (shape i only if given)
//   wo_ws2 ebench    # ws v1's staged epilogue (ST) against its scalar stores, cuBLAS f16 and the library launcher,
//                    # M in {256, 512, 1024, 4096} (NOTES.md ws-E)
//   wo_ws2 w4        # ws-W (lowbit/wo_ws4.cuh: 3 / 4 consumer warpgroups): full checks, bit-identity with v1, splits,
//                    # identity (NOTES.md ws-W)
//   wo_ws2 w4bench [i] # ws-W timings, M in {32, 64, 128, 256, 512}: cuBLAS f16, the library's ws plan (v1 / ws-S),
//                    # ws-W per NC / BX / K splits (two rounds, minimum; shape i only if given)
//   wo_ws2 diag      # M = 4096 on 28672x8192: v1 with the decode switched off, ws2 with the decode / the wgmmas
//                    # switched off, per BX (timing only)
//
// A kernel that does not finish in 20 s ends the program (exit 3) instead of hanging the GPU session. Weights are
// not rotated through L2 (the bench of record is lowbit-bench weight-only). Results: kernels/weight_only/NOTES.md, ws2.
#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <dlfcn.h>
#include <thread>
#include <chrono>
#include <unistd.h>
#include <algorithm>
#include <atomic>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/tma_host.h"
#include "lowbit/wo_ws.cuh"
#include "lowbit/wo_ws2.cuh"
#include "lowbit/wo_ws4.cuh"
// The library's ws launcher and plan (lowbit_wo_ws_int4 / lowbit_wo_ws_plan), compiled into this program: Cfg ver 5.
#include "../../kernels/weight_only/ws.cu"

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
static void make_problem(Problem& P, int m, int n, int k, bool asym, uint64_t seed, bool identity = false) {
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
        if (identity) P.meta[2 * i] = 0x3C003C00u, P.meta[2 * i + 1] = 8u | (8u << 8);  // scale 1, zero point 8
    }
    P.wdq.assign(size_t(n) * k, 0.f);
    static const int slot_of[8] = {0, 4, 1, 5, 2, 6, 3, 7};  // a_i -> nibble slot
    if (identity) {  // code 9 (= 1 after the zero point 8) on the diagonal, 8 (= 0) elsewhere
        for (int st = 0; st < P.strips; ++st)
            for (int ks = 0; ks < P.ksteps; ++ks)
                for (int lane = 0; lane < 32; ++lane)
                    for (int j = 0; j < 4; ++j) {
                        uint32_t q = 0;
                        const int g = lane >> 2, t = lane & 3;
                        for (int i = 0; i < 8; ++i) {
                            const int reg = i >> 1;
                            const int r = g + ((reg & 1) ? 8 : 0);
                            const int c = 2 * t + (i & 1) + ((reg & 2) ? 8 : 0);
                            const int row = st * 16 + r, col = ks * 64 + j * 16 + c;
                            q |= uint32_t(row == col ? 9 : 8) << (4 * slot_of[i]);
                        }
                        P.words[((size_t(st) * P.ksteps + ks) * 32 + lane) * 4 + j] = q;
                    }
    }
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

// ws v1 (ver 1), ws2 (ver 2, 3 = wide) with raster group gm, or ws-S (ver 4: lowbit/wo_ws.cuh ws_s_kernel, nb A
// buffers per consumer warpgroup, gm ignored), with K splits (splits > 1: f32 partials into ws, then a
// self-cleaning conversion kernel, both inside the timed region).
struct Cfg {
    int ver, bx, gm, splits;
    int diag = 0;  // ws2 diagnostics (wrong results, timing only): 1 = no decoding, 2 = no wgmma
    int nb = 2;    // ws-S: A buffers per warpgroup (2 or 3)
    int wt = 0;    // ws v1 / ws-S: the weight stage by one TMA (1) instead of 8 bulk copies (0)
    int st = 0;    // ws v1: the staged epilogue (stmatrix.trans + 16-byte stores)
    int nc = 4;    // ws-W (ver 6): consumer warpgroups (3 or 4)
};

// ws-W bench: skip the sampled output check (the first round of each configuration checks).
static bool g_skip_check = false;

template <typename T>
__global__ void convert_clean(float* ws, T* y, int64_t n) {
    for (int64_t i = blockIdx.x * int64_t(blockDim.x) + threadIdx.x; i < n; i += int64_t(gridDim.x) * blockDim.x) {
        y[i] = wo::to_out<T>(ws[i]);
        ws[i] = 0.f;
    }
}

template <typename T, int BX>
static cudaError_t launch_cfg(Args a, const CUtensorMap& map, const CUtensorMap* wmap, int nsm, const Cfg& c, float* ws) {
    if (c.ver == 1) {
        if (c.st) return wows::launch<wo::Int4, T, BX, false, true>(a, map, nsm, 0, wmap);
        return c.diag == 1 ? wows::launch<wo::Int4, T, BX, true>(a, map, nsm, 0, wmap)
                           : wows::launch<wo::Int4, T, BX>(a, map, nsm, 0, wmap);
    }
    if (c.ver == 5) {  // the library's launcher with its own plan (BX, splits) and weight map
        int bx = 64, sp = 1;
        lowbit_wo_ws_plan(a.m, a.strips, a.ksteps, nsm, &bx, &sp);
        if (sp > 1) a.ws = ws;
        const cudaError_t e = lowbit_wo_ws_int4(a, std::is_same<T, __half>::value ? 0 : 1, bx, sp, nsm, 0);
        if (e != cudaSuccess || sp == 1) return e;
        const int64_t n = int64_t(a.m) * a.n;
        convert_clean<T><<<int(std::min<int64_t>((n + 255) / 256, 4 * nsm)), 256>>>(ws, static_cast<T*>(a.y), n);
        return cudaGetLastError();
    }
    if (c.ver == 7) {  // the library's ws-W launcher with its own plan (NC = 4, BX = 64, K splits) and maps
        int sp = 1;
        lowbit_wo_ws4_plan(a.m, a.strips, a.ksteps, nsm, &sp);
        if (sp > 1) a.ws = ws;
        const cudaError_t e = lowbit_wo_ws4_int4(a, std::is_same<T, __half>::value ? 0 : 1, sp, nsm, 0);
        if (e != cudaSuccess || sp == 1) return e;
        const int64_t n = int64_t(a.m) * a.n;
        convert_clean<T><<<int(std::min<int64_t>((n + 255) / 256, 4 * nsm)), 256>>>(ws, static_cast<T*>(a.y), n);
        return cudaGetLastError();
    }
    if (c.ver == 6) {  // ws-W: NC consumer warpgroups, BX 64 / 128
        if constexpr (BX <= 128) {
            const int sp = wows4::effective_splits(a, c.splits);
            if (sp > 1) a.ws = ws;
            cudaError_t e;
            if constexpr (BX == 64) {
                e = c.nc == 3 ? wows4::launch<wo::Int4, T, BX, 3>(a, map, nsm, sp, 0, wmap)
                              : wows4::launch<wo::Int4, T, BX, 4>(a, map, nsm, sp, 0, wmap);
            } else {  // NC = 4 x BX = 128 serializes its wgmmas (ptxas C7512: 112 registers): not built
                e = c.nc == 3 ? wows4::launch<wo::Int4, T, BX, 3>(a, map, nsm, sp, 0, wmap) : cudaErrorInvalidValue;
            }
            if (e != cudaSuccess || sp == 1) return e;
            const int64_t n = int64_t(a.m) * a.n;
            convert_clean<T><<<int(std::min<int64_t>((n + 255) / 256, 4 * nsm)), 256>>>(ws, static_cast<T*>(a.y), n);
            return cudaGetLastError();
        } else {
            return cudaErrorInvalidValue;
        }
    }
    if (c.ver == 4) {
        const int sp = wows::effective_splits(a, c.splits);
        if (sp > 1) a.ws = ws;
        const cudaError_t e = c.nb == 3 ? wows::launch_s<wo::Int4, T, BX, 3>(a, map, nsm, sp, 0, wmap)
                                        : wows::launch_s<wo::Int4, T, BX, 2>(a, map, nsm, sp, 0, wmap);
        if (e != cudaSuccess || sp == 1) return e;
        const int64_t n = int64_t(a.m) * a.n;
        convert_clean<T><<<int(std::min<int64_t>((n + 255) / 256, 4 * nsm)), 256>>>(ws, static_cast<T*>(a.y), n);
        return cudaGetLastError();
    }
    // ver 2: ws2 (3 decoder warps), ver 3: ws2 wide (8 decoder warps, 640 threads).
    // The wide variant's 640 threads cap the kernel at 96 registers: too few for wgmma m64n256 (ptxas C7602), so
    // it exists for BX <= 128 only.
    auto l2 = [&](int splits) -> cudaError_t {
        if constexpr (BX <= 128) {
            if (c.ver == 3) return wows2::launch<wo::Int4, T, BX, true>(a, map, nsm, c.gm, splits, 0, c.diag);
        } else {
            if (c.ver == 3) return cudaErrorInvalidValue;
        }
        return wows2::launch<wo::Int4, T, BX, false>(a, map, nsm, c.gm, splits, 0, c.diag);
    };
    if (wows2::effective_splits(a, c.splits) == 1) return l2(1);
    a.ws = ws;
    cudaError_t e = l2(c.splits);
    if (e != cudaSuccess) return e;
    const int64_t n = int64_t(a.m) * a.n;
    convert_clean<T><<<int(std::min<int64_t>((n + 255) / 256, 4 * nsm)), 256>>>(ws, static_cast<T*>(a.y), n);
    return cudaGetLastError();
}

// A hung kernel (a pipeline deadlock) must not eat the whole GPU session: poll for 20 s, then exit.
static void wait_or_die(const Cfg& c) {
    cudaEvent_t ev;
    CK(cudaEventCreateWithFlags(&ev, cudaEventDisableTiming));
    CK(cudaEventRecord(ev));
    for (int i = 0; i < 20000; ++i) {
        const cudaError_t q = cudaEventQuery(ev);
        if (q == cudaSuccess) {
            cudaEventDestroy(ev);
            return;
        }
        if (q != cudaErrorNotReady) CK(q);
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    printf("HANG: v%d BX=%d gm=%d sp=%d nb=%d did not finish in 20 s\n", c.ver, c.bx, c.gm, c.splits, c.nb);
    fflush(stdout);
    _exit(3);
}

template <typename T, int BX>
static float run_cfg(const Args& a, const CUtensorMap& map, const CUtensorMap* wmap, int nsm, const Cfg& c, float* ws,
                     int iters) {
    {
        const cudaError_t le = launch_cfg<T, BX>(a, map, wmap, nsm, c, ws);
        CK(le);
    }
    wait_or_die(c);
    if (iters == 0) return 0.f;
    cudaEvent_t e0, e1;
    cudaEventCreate(&e0), cudaEventCreate(&e1);
    cudaEventRecord(e0);
    for (int i = 0; i < iters; ++i) launch_cfg<T, BX>(a, map, wmap, nsm, c, ws);
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
static void dev_make(Dev& D, int n, int k, bool asym, bool dense, bool identity = false) {
    make_problem<T>(D.P, 1, n, k, asym, 1234 + n + k + asym, identity);
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

// The output of the last `one` call (bit patterns): ws-S must reproduce v1 bit for bit.
static std::vector<uint16_t> g_last_y;

// One configuration on M activation rows: poisoned output, run, check (full or sampled), optional timing (and
// cuBLAS f16 on the same X when cub_us is given). identity: the output must equal X bit for bit.
template <typename T, int BX>
static int one(Dev& D, int m, bool full, int nsm, int iters, const Cfg& c, float* us, float* cub_us, const char* tag,
               bool identity = false) {
    Problem& P = D.P;
    P.m = m;
    const int n = P.n, k = P.k;
    std::mt19937 r(99 + m);
    std::uniform_real_distribution<float> xd(-1.f, 1.f);
    std::vector<T> x(size_t(m) * k), y(size_t(m) * n);
    for (auto& v : x) v = fromf<T>(xd(r));
    T *dx, *dy;
    float* dws = nullptr;
    CK(cudaMalloc(&dx, x.size() * sizeof(T)));
    CK(cudaMalloc(&dy, y.size() * sizeof(T)));
    if (c.splits > 1 || c.ver == 5 || c.ver == 7) {
        CK(cudaMalloc(&dws, size_t(m) * n * 4));
        CK(cudaMemset(dws, 0, size_t(m) * n * 4));
    }
    CK(cudaMemcpy(dx, x.data(), x.size() * sizeof(T), cudaMemcpyHostToDevice));
    CK(cudaMemset(dy, 0xFF, y.size() * sizeof(T)));  // poison: NaN in f16 and bf16
    Args a{};
    a.words = D.dw, a.meta = D.dm, a.x = dx, a.y = dy, a.m = m, a.n = n, a.k = k, a.ldx = k;
    a.strips = P.strips, a.ksteps = P.ksteps, a.gtiles = P.gtiles, a.groups = P.groups;
    const CUtensorMap map = xmap_of(dx, m, k, k, BX);
    CUtensorMap wm;
    if (c.wt) CK(tma::make_2d(wm, CU_TENSOR_MAP_DATA_TYPE_UINT32, CU_TENSOR_MAP_SWIZZLE_NONE, D.dw, uint64_t(P.strips),
                                 uint64_t(P.ksteps) * 128, uint64_t(P.ksteps) * 512, c.ver == 6 ? 4 * c.nc : 8, 128));
    const CUtensorMap* wmap = c.wt ? &wm : nullptr;
    run_cfg<T, BX>(a, map, wmap, nsm, c, dws, 0);
    CK(cudaMemcpy(y.data(), dy, y.size() * sizeof(T), cudaMemcpyDeviceToHost));
    char what[96];
    snprintf(what, sizeof what, "%s %s v%d BX=%d gm=%d sp=%d nb=%d wt=%d", std::is_same<T, __half>::value ? "f16" : "bf16",
             tag, c.ver, BX, c.gm, c.splits, c.ver == 4 ? c.nb : c.ver == 6 ? c.nc : 0, c.wt);
    int fails = 0;
    if (c.diag != 0 || g_skip_check) {
        // diagnostics: the output is meaningless, only the timing counts
    } else if (identity) {
        size_t bad = 0;
        for (int i = 0; i < m; ++i)
            for (int j = 0; j < n; ++j)
                if (memcmp(&y[size_t(i) * n + j], &x[size_t(i) * k + j], sizeof(T)) != 0) ++bad;
        printf("  identity %-34s m=%d n=k=%d: %s (%zu differ)\n", what, m, n, bad ? "FAIL" : "OK", bad);
        fails = bad ? 1 : 0;
    } else {
        fails = check<T>(P, x, y, full, std::is_same<T, __half>::value ? 2e-3 : 8e-3, what);
    }
    if (iters > 0) {
        *us = run_cfg<T, BX>(a, map, wmap, nsm, c, dws, iters);
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
    g_last_y.assign(reinterpret_cast<const uint16_t*>(y.data()), reinterpret_cast<const uint16_t*>(y.data()) + y.size());
    cudaFree(dx), cudaFree(dy), cudaFree(dws);
    return fails;
}

template <typename T>
static int one_bx(Dev& D, int m, bool full, int nsm, int iters, const Cfg& c, float* us, float* cub_us,
                  const char* tag, bool identity = false) {
    if (c.bx == 64) return one<T, 64>(D, m, full, nsm, iters, c, us, cub_us, tag, identity);
    if (c.bx == 128) return one<T, 128>(D, m, full, nsm, iters, c, us, cub_us, tag, identity);
    return one<T, 256>(D, m, full, nsm, iters, c, us, cub_us, tag, identity);
}

// ws-S correctness: odd shapes, sym / asym, f16 / bf16, every BX and both A-buffer depths, full check against the
// f64 CPU reference with poisoned outputs; unsplit ws-S must equal ws v1 bit for bit (same products, same wgmma
// order); K splits 2 / 3 (f32 partials) checked against the reference; identity (output = X bit for bit).
static int s_correct(int nsm) {
    int fails = 0;
    float us = 0;
    auto same_as = [&](const std::vector<uint16_t>& ref, const char* what) {
        size_t bad = 0;
        for (size_t i = 0; i < ref.size(); ++i) bad += ref[i] != g_last_y[i];
        printf("  bitwise %-40s vs v1: %s (%zu differ)\n", what, bad ? "FAIL" : "OK", bad);
        return bad ? 1 : 0;
    };
    const int shapes[][3] = {{67, 333, 1000}, {333, 1000, 2048}, {1, 48, 64}, {1031, 1040, 1032}, {130, 2056, 4096},
                             {257, 4100, 576}};
    for (auto& sh : shapes) {
        for (int asym = 0; asym < 2; ++asym) {
            const char* tag = asym ? "asym" : "sym";
            Dev Dh, Db;
            dev_make<__half>(Dh, sh[1], sh[2], asym, false);
            dev_make<__nv_bfloat16>(Db, sh[1], sh[2], asym, false);
            // f16: v1 (bulk copies) is the reference; v1 with the weight TMA and ws-S (both weight stages, both A
            // depths) must equal it bit for bit; K splits checked against the f64 reference.
            for (int bx : {64, 128, 256}) {
                fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{1, bx, 1, 1}, &us, nullptr, tag);
                const std::vector<uint16_t> ref = g_last_y;
                for (const Cfg& c : {Cfg{1, bx, 1, 1, 0, 2, 1}, Cfg{4, bx, 1, 1, 0, 2, 0}, Cfg{4, bx, 1, 1, 0, 3, 1},
                                     Cfg{4, bx, 1, 1, 0, 2, 1}, Cfg{1, bx, 1, 1, 0, 2, 1, 1}, Cfg{1, bx, 1, 1, 0, 2, 0, 1}}) {
                    // sampled rows + every output's bits against v1 (itself fully checked)
                    fails += one_bx<__half>(Dh, sh[0], false, nsm, 0, c, &us, nullptr, tag);
                    char w[80];
                    snprintf(w, sizeof w, "f16 %s v%d BX=%d nb=%d wt=%d st=%d m=%d", tag, c.ver, bx, c.nb, c.wt, c.st, sh[0]);
                    fails += same_as(ref, w);
                }
                fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{4, bx, 1, bx == 64 ? 3 : 2, 0, bx == 128 ? 3 : 2, 1},
                                        &us, nullptr, tag);
                fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{4, bx, 1, 4, 0, 2, 0}, &us, nullptr, tag);
            }
            fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{5, 64, 1, 1}, &us, nullptr, tag);
            for (int bx : {128, 256}) {
                fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, Cfg{1, bx, 1, 1}, &us, nullptr, tag);
                const std::vector<uint16_t> ref = g_last_y;
                for (const Cfg& c : {Cfg{1, bx, 1, 1, 0, 2, 1}, Cfg{4, bx, 1, 1, 0, 2, 1}, Cfg{4, bx, 1, 1, 0, 3, 0},
                                     Cfg{1, bx, 1, 1, 0, 2, 1, 1}}) {
                    fails += one_bx<__nv_bfloat16>(Db, sh[0], false, nsm, 0, c, &us, nullptr, tag);
                    char w[80];
                    snprintf(w, sizeof w, "bf16 %s v%d BX=%d nb=%d wt=%d st=%d m=%d", tag, c.ver, bx, c.nb, c.wt, c.st, sh[0]);
                    fails += same_as(ref, w);
                }
                fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, Cfg{4, bx, 1, 2, 0, 2, 1}, &us, nullptr, tag);
            }
            fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, Cfg{5, 64, 1, 1}, &us, nullptr, tag);
            dev_free(Dh), dev_free(Db);
        }
    }
    {
        Dev Dh, Db;
        dev_make<__half>(Dh, 576, 576, false, false, true);
        dev_make<__nv_bfloat16>(Db, 576, 576, false, false, true);
        for (int bx : {64, 128, 256}) {
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{4, bx, 1, 1, 0, bx == 128 ? 2 : 3, 1}, &us, nullptr, "id", true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{4, bx, 1, 3, 0, 2, 1}, &us, nullptr, "id", true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{1, bx, 1, 1, 0, 2, 1}, &us, nullptr, "id", true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{1, bx, 1, 1, 0, 2, 1, 1}, &us, nullptr, "id", true);
        }
        for (int bx : {128, 256}) {
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{4, bx, 1, 1, 0, 2, 1}, &us, nullptr, "id", true);
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{4, bx, 1, 1, 0, 3, 0}, &us, nullptr, "id", true);
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{1, bx, 1, 1, 0, 2, 1}, &us, nullptr, "id", true);
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{1, bx, 1, 1, 0, 2, 1, 1}, &us, nullptr, "id", true);
        }
        fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{5, 64, 1, 1}, &us, nullptr, "id", true);
        fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{5, 64, 1, 1}, &us, nullptr, "id", true);
        dev_free(Dh), dev_free(Db);
    }
    printf("ws-S correctness: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}

// ws-S timings: M in {64, 256, 1024, 4096} on the four acceptance shapes; cuBLAS f16, ws v1 at every useful BX and
// ws-S at every BX x {2, 3} A buffers in the same process, K splits where the tiles leave SMs idle. Every timed
// configuration's output is checked on sampled rows.
static int s_bench(int nsm, int only) {
    int fails = 0;
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    for (int si = 0; si < 4; ++si) {
        if (only >= 0 && si != only) continue;
        auto& sh = shapes[si];
        Dev D;
        dev_make<__half>(D, sh[0], sh[1], true, true);
        const int64_t nt = (sh[0] / 16 + 7) / 8;
        for (int m : {64, 256, 1024, 4096}) {
            const int it = m >= 1024 ? 10 : 30;
            std::vector<Cfg> cfgs;
            std::vector<int> bxs;
            for (int bx : {64, 128, 256})
                if ((m >= 1024 && bx >= 128) || (m == 256) || (m == 64 && bx == 64)) bxs.push_back(bx);
            for (int bx : bxs) cfgs.push_back({1, bx, 1, 1});
            for (int bx : bxs) cfgs.push_back({1, bx, 1, 1, 0, 2, 1});
            for (int bx : bxs) cfgs.push_back({4, bx, 1, 1, 0, 2, 1});
            for (int bx : bxs) {
                const int64_t tiles = nt * ((m + bx - 1) / bx);
                if (tiles >= nsm) continue;
                for (int sp : {2, 4})
                    if (tiles * sp <= 2 * nsm) cfgs.push_back({4, bx, 1, sp, 0, bx == 64 ? 3 : 2, 1});
            }
            cfgs.push_back({5, 64, 1, 1});  // the library's launcher and plan
            float cu = -1, best1 = 1e9f, bestS = 1e9f, lib = 1e9f;
            Cfg b1{}, bS{};
            for (size_t i = 0; i < cfgs.size(); ++i) {
                float u = 0, c0 = -1;
                fails += one_bx<__half>(D, m, false, nsm, it, cfgs[i], &u, i == 0 ? &c0 : nullptr, "asym");
                if (i == 0) cu = c0;
                printf("   %5dx%-6d M=%-5d v%d BX=%-3d sp=%d nb=%d wt=%d  %9.1f us\n", sh[0], sh[1], m, cfgs[i].ver,
                       cfgs[i].bx, cfgs[i].splits, cfgs[i].ver == 4 ? cfgs[i].nb : 0, cfgs[i].wt, u);
                if (cfgs[i].ver == 1 && cfgs[i].wt == 0 && u < best1) best1 = u, b1 = cfgs[i];
                if ((cfgs[i].ver == 4 || cfgs[i].wt) && u < bestS) bestS = u, bS = cfgs[i];
                if (cfgs[i].ver == 5) lib = u;
            }
            int pbx = 64, psp = 1;
            lowbit_wo_ws_plan(m, int(nt * 8), sh[1] / 64, nsm, &pbx, &psp);
            printf("SRESULT %5dx%-6d M=%-5d cuBLAS %8.1f  v1 %8.1f (BX=%d)  new %8.1f (v%d BX=%d sp=%d wt=%d)  lib %8.1f (BX=%d sp=%d)"
                   "  v1 %.2fx  new %.2fx  lib %.2fx\n",
                   sh[0], sh[1], m, cu, best1, b1.bx, bestS, bS.ver, bS.bx, bS.splits, bS.wt, lib, pbx, psp, cu / best1,
                   cu / bestS, cu / lib);
            fflush(stdout);
            if (si == 0 && m == 4096) {
                // Where v1's time goes: the same kernel with its decode switched off (A = the raw codes; wrong
                // results), with the 8 bulk copies and with the weight TMA.
                for (int bx : {128, 256})
                    for (int wt : {0, 1}) {
                        Cfg c{1, bx, 1, 1, 1, 2, wt};
                        float u = 0;
                        fails += one_bx<__half>(D, m, false, nsm, it, c, &u, nullptr, "asym");
                        printf("SDIAG %5dx%-6d M=%-5d v1 no-decode BX=%d wt=%d %9.1f us\n", sh[0], sh[1], m, bx, wt, u);
                    }
            }
        }
        dev_free(D);
    }
    printf("ws-S bench checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}

// Staged-epilogue timings (ws v1 with the weight TMA, scalar stores vs ST), M in {256, 512, 1024, 4096} on the four
// acceptance shapes, cuBLAS f16 and the library launcher in the same process; the two epilogues alternate over
// three rounds at M <= 1024 (the minimum of each is reported), one at 4096. Every timed configuration's output is
// checked on sampled rows.
static int e_bench(int nsm) {
    int fails = 0;
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    for (auto& sh : shapes) {
        Dev D;
        dev_make<__half>(D, sh[0], sh[1], true, true);
        for (int m : {256, 512, 1024, 4096}) {
            const int it = m >= 1024 ? 10 : 30;
            int pbx = 64, psp = 1;
            lowbit_wo_ws_plan(m, sh[0] / 16, sh[1] / 64, nsm, &pbx, &psp);
            float cu = -1, t0 = 1e9f, t1 = 1e9f, lib = 1e9f;
            for (int round = 0; round < (m >= 4096 ? 1 : 3); ++round) {
                float u = 0, c0 = -1;
                fails += one_bx<__half>(D, m, false, nsm, it, Cfg{1, 256, 1, 1, 0, 2, 1, 0}, &u, round == 0 ? &c0 : nullptr, "asym");
                if (round == 0) cu = c0;
                t0 = std::min(t0, u);
                fails += one_bx<__half>(D, m, false, nsm, it, Cfg{1, 256, 1, 1, 0, 2, 1, 1}, &u, nullptr, "asym");
                t1 = std::min(t1, u);
                fails += one_bx<__half>(D, m, false, nsm, it, Cfg{5, 64, 1, 1}, &u, nullptr, "asym");
                lib = std::min(lib, u);
            }
            printf("ERESULT %5dx%-6d M=%-5d cuBLAS %8.1f  v1 BX=256 scalar %8.1f  staged %8.1f (%.3fx)  lib %8.1f (BX=%d sp=%d)"
                   "  scalar %.3fx  staged %.3fx  lib %.3fx of cuBLAS\n",
                   sh[0], sh[1], m, cu, t0, t1, t0 / t1, lib, pbx, psp, cu / t0, cu / t1, cu / lib);
        }
        dev_free(D);
    }
    printf("ws-E bench checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}

// (ws-PP, ping-pong consumers: `pp` / `ppbench` removed with ws_pp_kernel, measured slower, NOTES.md ws-PP.)

// ws-W correctness (NOTES.md ws-W): NC = 4 (BX 64) and NC = 3 (BX 64 / 128), both weight stages, f16 / bf16, sym / asym,
// odd shapes (partial 256- / 192-row tiles, strips past N, odd k-step counts, M 1 / 17 / 29 / 67 / 130 / 257 / 333),
// outputs NaN-poisoned first; unsplit ws-W must equal ws v1 at the same BX bit for bit (same products, same wgmma
// order per output), and is also checked against the f64 CPU reference; K splits 2 / 3 / 5 fully checked against the
// reference; identity (output = X bit for bit).
static int w4_correct(int nsm) {
    int fails = 0, checks = 0;
    float us = 0;
    auto same_as = [&](const std::vector<uint16_t>& ref, const char* what) {
        size_t bad = 0;
        for (size_t i = 0; i < ref.size(); ++i) bad += ref[i] != g_last_y[i];
        printf("  bitwise %-40s vs v1: %s (%zu differ)\n", what, bad ? "FAIL" : "OK", bad);
        ++checks;
        return bad ? 1 : 0;
    };
    auto w4 = [](int nc, int bx, int sp, int wt) {
        Cfg c{6, bx, 1, sp, 0, 2, wt};
        c.nc = nc;
        return c;
    };
    const int shapes[][3] = {{67, 333, 1000}, {17, 4100, 576}, {1, 48, 64}, {130, 2056, 4096}, {257, 1040, 1032},
                             {29, 3088, 2056}, {333, 1000, 2048}};
    for (auto& sh : shapes) {
        for (int asym = 0; asym < 2; ++asym) {
            const char* tag = asym ? "asym" : "sym";
            Dev Dh, Db;
            dev_make<__half>(Dh, sh[1], sh[2], asym, false);
            dev_make<__nv_bfloat16>(Db, sh[1], sh[2], asym, false);
            for (int bx : {64, 128}) {
                fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{1, bx, 1, 1, 0, 2, 1}, &us, nullptr, tag);
                ++checks;
                const std::vector<uint16_t> ref = g_last_y;
                std::vector<Cfg> cs;
                if (bx == 64) cs = {w4(4, 64, 1, 1), w4(4, 64, 1, 0), w4(3, 64, 1, 1)};
                else cs = {w4(3, 128, 1, 1), w4(3, 128, 1, 0)};
                for (const Cfg& c : cs) {
                    fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, c, &us, nullptr, tag);
                    ++checks;
                    char w[80];
                    snprintf(w, sizeof w, "f16 %s W nc=%d BX=%d wt=%d m=%d", tag, c.nc, bx, c.wt, sh[0]);
                    fails += same_as(ref, w);
                }
            }
            for (const Cfg& c : {w4(4, 64, 2, 1), w4(4, 64, 5, 0), w4(3, 128, 3, 1), w4(3, 64, 2, 1)}) {
                fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, c, &us, nullptr, tag);
                ++checks;
            }
            fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, Cfg{1, 64, 1, 1, 0, 2, 1}, &us, nullptr, tag);
            ++checks;
            const std::vector<uint16_t> ref = g_last_y;
            fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, w4(4, 64, 1, 1), &us, nullptr, tag);
            ++checks;
            char w[80];
            snprintf(w, sizeof w, "bf16 %s W nc=4 BX=64 wt=1 m=%d", tag, sh[0]);
            fails += same_as(ref, w);
            fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, Cfg{7, 64, 1, 1}, &us, nullptr, tag);
            ++checks;
            for (const Cfg& c : {w4(4, 64, 3, 1), w4(3, 128, 1, 1), w4(3, 128, 2, 0), Cfg{7, 64, 1, 1}}) {
                fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, c, &us, nullptr, tag);
                ++checks;
            }
            dev_free(Dh), dev_free(Db);
        }
    }
    {
        Dev Dh, Db;
        dev_make<__half>(Dh, 576, 576, false, false, true);
        dev_make<__nv_bfloat16>(Db, 576, 576, false, false, true);
        for (int m : {29, 333}) {
            for (const Cfg& c : {w4(4, 64, 1, 1), w4(4, 64, 3, 1), w4(3, 128, 1, 1), w4(3, 64, 2, 0), Cfg{7, 64, 1, 1}}) {
                fails += one_bx<__half>(Dh, m, true, nsm, 0, c, &us, nullptr, "id", true);
                fails += one_bx<__nv_bfloat16>(Db, m, true, nsm, 0, c, &us, nullptr, "id", true);
                checks += 2;
            }
        }
        dev_free(Dh), dev_free(Db);
    }
    printf("ws-W correctness: %s (%d failures, %d checks)\n", fails ? "FAIL" : "PASS", fails, checks);
    return fails ? 1 : 0;
}

// ws-W timings: M in {32, 64, 128, 256, 512} on the four acceptance shapes; cuBLAS f16, the library's ws launcher
// and plan (v1 / ws-S; at M = 32 the library runs the small-M kernel instead, not in this program) and ws-W per
// NC / BX / K splits, all on the same X; two rounds (the first checks sampled rows of every configuration), minimum.
static int w4_bench(int nsm, int only) {
    int fails = 0;
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    for (int si = 0; si < 4; ++si) {
        if (only >= 0 && si != only) continue;
        auto& sh = shapes[si];
        Dev D;
        dev_make<__half>(D, sh[0], sh[1], true, true);
        const int ksteps = sh[1] / 64, strips = sh[0] / 16;
        for (int m : {32, 64, 128, 256, 512}) {
            const int it = 30;
            std::vector<Cfg> cfgs;
            cfgs.push_back({5, 64, 1, 1});  // the library's ws plan (first: its call also times cuBLAS)
            cfgs.push_back({7, 64, 1, 1});  // the library's ws-W launcher and plan
            for (int nc : {4, 3}) {
                for (int bx : {64, 128}) {
                    if (bx == 128 && (nc == 4 || m < 128)) continue;  // NC = 4 x BX = 128: serialized wgmma (C7512)
                    const int64_t tiles = int64_t((strips + 4 * nc - 1) / (4 * nc)) * ((m + bx - 1) / bx);
                    for (int sp : {1, 2, 3, 4, 6, 8}) {
                        if (sp > 1 && (tiles * (sp - 1) >= nsm || ksteps < 8 * sp)) continue;
                        Cfg c{6, bx, 1, sp, 0, 2, 1};
                        c.nc = nc;
                        cfgs.push_back(c);
                    }
                }
            }
            std::vector<float> best(cfgs.size(), 1e9f);
            float cu = 1e9f;
            for (int round = 0; round < 2; ++round) {
                g_skip_check = round > 0;
                for (size_t i = 0; i < cfgs.size(); ++i) {
                    float u = 0, c0 = -1;
                    fails += one_bx<__half>(D, m, false, nsm, it, cfgs[i], &u, i == 0 ? &c0 : nullptr, "asym");
                    if (i == 0 && c0 > 0) cu = std::min(cu, c0);
                    best[i] = std::min(best[i], u);
                }
            }
            g_skip_check = false;
            int pbx = 64, psp = 1;
            lowbit_wo_ws_plan(m, strips, ksteps, nsm, &pbx, &psp);
            size_t bi = 2;
            int w4sp = 1;
            lowbit_wo_ws4_plan(m, strips, ksteps, nsm, &w4sp);
            for (size_t i = 1; i < cfgs.size(); ++i) {
                printf("   %5dx%-6d M=%-4d %s nc=%d BX=%-3d sp=%d  %9.1f us  (%.3fx cuBLAS, %.3fx lib)\n", sh[0], sh[1], m,
                       cfgs[i].ver == 7 ? "W-lib" : "W", cfgs[i].nc, cfgs[i].bx, cfgs[i].splits, best[i], cu / best[i],
                       best[0] / best[i]);
                if (cfgs[i].ver == 6 && best[i] < best[bi]) bi = i;
            }
            printf("WRESULT %5dx%-6d M=%-4d cuBLAS %8.1f  lib-ws %8.1f (BX=%d sp=%d, %.3fx)  W-lib %8.1f (sp=%d, %.3fx)  best W "
                   "%8.1f (nc=%d BX=%d sp=%d, %.3fx)  best W vs lib-ws %.3fx\n",
                   sh[0], sh[1], m, cu, best[0], pbx, psp, cu / best[0], best[1], w4sp, cu / best[1], best[bi],
                   cfgs[bi].nc, cfgs[bi].bx, cfgs[bi].splits, cu / best[bi], best[0] / best[bi]);
        }
        dev_free(D);
    }
    printf("ws-W bench checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}

int main(int argc, char** argv) {
    setvbuf(stdout, nullptr, _IOLBF, 0);  // line-buffered: a killed run still leaves its log
    int dev = 0, nsm = 0;
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, dev));
    cudaDeviceProp prop;
    cudaGetDeviceProperties(&prop, dev);
    printf("device %s, %d SMs\n", prop.name, nsm);
    if (!wows2::available<wo::Int4, __half, 128>()) {
        printf("ws2 kernel not available\n");
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
    const bool diag = argc > 1 && strcmp(argv[1], "diag") == 0;
    int fails = 0;
    float us = 0, cu = -1;
    if (argc > 1 && strcmp(argv[1], "s") == 0) return s_correct(nsm);
    if (argc > 1 && strcmp(argv[1], "w4") == 0) return w4_correct(nsm);
    if (argc > 1 && strcmp(argv[1], "w4bench") == 0) return w4_bench(nsm, argc > 2 ? atoi(argv[2]) : -1);
    if (argc > 1 && strcmp(argv[1], "ebench") == 0) return e_bench(nsm);
    if (argc > 1 && strcmp(argv[1], "sbench") == 0) return s_bench(nsm, argc > 2 ? atoi(argv[2]) : -1);
    if (!bench) {
        // Odd shapes (M, N, K), full CPU check of every output, sym and asym zero points.
        const int shapes[][3] = {{67, 333, 1000}, {333, 1000, 2048}, {1, 48, 64}, {1031, 2064, 1032}, {130, 4096, 4096}};
        const Cfg hc[] = {{2, 64, 1, 1}, {2, 128, 1, 1}, {2, 256, 1, 1}, {2, 256, 2, 1}, {2, 128, 3, 3}, {2, 64, 1, 2},
                          {3, 64, 1, 1},  {3, 128, 2, 1}, {3, 128, 1, 2}, {3, 64, 2, 3}};
        const Cfg bc[] = {{2, 128, 1, 1}, {2, 256, 1, 1}, {2, 256, 2, 2}, {3, 128, 1, 1}, {3, 64, 2, 3}};
        for (auto& sh : shapes) {
            for (int asym = 0; asym < 2; ++asym) {
                const char* tag = asym ? "asym" : "sym";
                Dev Dh, Db;
                dev_make<__half>(Dh, sh[1], sh[2], asym, false);
                dev_make<__nv_bfloat16>(Db, sh[1], sh[2], asym, false);
                for (const Cfg& c : hc) fails += one_bx<__half>(Dh, sh[0], true, nsm, 0, c, &us, nullptr, tag);
                for (const Cfg& c : bc) fails += one_bx<__nv_bfloat16>(Db, sh[0], true, nsm, 0, c, &us, nullptr, tag);
                dev_free(Dh), dev_free(Db);
            }
        }
        {
            Dev Dh, Db;
            dev_make<__half>(Dh, 576, 576, false, false, true);
            dev_make<__nv_bfloat16>(Db, 576, 576, false, false, true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{2, 128, 1, 1}, &us, nullptr, "id", true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{2, 256, 2, 1}, &us, nullptr, "id", true);
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{2, 256, 1, 1}, &us, nullptr, "id", true);
            fails += one_bx<__half>(Dh, 333, true, nsm, 0, Cfg{3, 64, 1, 1}, &us, nullptr, "id", true);
            fails += one_bx<__nv_bfloat16>(Db, 333, true, nsm, 0, Cfg{3, 128, 2, 1}, &us, nullptr, "id", true);
            dev_free(Dh), dev_free(Db);
        }
        printf("correctness: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
        return fails ? 1 : 0;
    }
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}, {11008, 4096}, {4096, 4096}};
    if (diag) {
        // Where ws2's time goes (large shape, M = 4096): the full kernel, without decoding (the producer, barriers
        // and wgmma side alone), without wgmma (the decoder side alone), per BX; v1 and cuBLAS beside.
        Dev D;
        dev_make<__half>(D, shapes[0][0], shapes[0][1], true, true);
        const int m = 4096;
        float cu = -1, u = 0;
        fails += one_bx<__half>(D, m, false, nsm, 10, Cfg{1, 256, 1, 1}, &u, &cu, "asym");
        printf("DIAG %dx%d M=%d cuBLAS %.1f us, v1 BX=256 %.1f us\n", shapes[0][0], shapes[0][1], m, cu, u);
        for (int bx : {64, 128, 256}) {
            float t[2];
            for (int dg = 0; dg < 2; ++dg) {
                Cfg c{1, bx, 1, 1};
                c.diag = dg;
                fails += one_bx<__half>(D, m, false, nsm, 10, c, &t[dg], nullptr, "asym");
            }
            printf("DIAG v1 BX=%d: full %.1f us, no-decode %.1f us\n", bx, t[0], t[1]);
        }
        for (int ver : {2, 3}) {
            for (int bx : {64, 128, 256}) {
                if (ver == 3 && bx == 256) continue;
                float t[3];
                for (int dg = 0; dg < 3; ++dg) {
                    Cfg c{ver, bx, 2, 1};
                    c.diag = dg;
                    fails += one_bx<__half>(D, m, false, nsm, 10, c, &t[dg], nullptr, "asym");
                }
                printf("DIAG ws2%s BX=%d: full %.1f us, no-decode %.1f us, no-wgmma %.1f us\n", ver == 3 ? " wide" : "",
                       bx, t[0], t[1], t[2]);
            }
        }
        dev_free(D);
        printf("diag checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
        return fails ? 1 : 0;
    }
    const int ms[] = {256, 1024, 4096};
    const int only = argc > 2 ? atoi(argv[2]) : -1;  // optional: one shape index
    for (int si = 0; si < 4; ++si) {
        if (only >= 0 && si != only) continue;
        auto& sh = shapes[si];
        Dev D;
        dev_make<__half>(D, sh[0], sh[1], true, true);
        for (int m : ms) {
            const int it = m >= 1024 ? 10 : 30;
            // v1 first (with cuBLAS), then ws2 wide (ver 3), then ws2 (ver 2) for reference.
            std::vector<Cfg> cfgs = {{1, 256, 1, 1}, {3, 128, 2, 1}, {3, 128, 1000, 1}, {2, 256, 2, 1}};
            if (m <= 1024) {
                cfgs.push_back({3, 128, 1000, 2});
                cfgs.push_back({3, 64, 1000, 1});
            }
            if (m <= 256) {
                cfgs.push_back({1, 128, 1, 1});
                cfgs.push_back({3, 64, 1000, 2});
                cfgs.push_back({2, 256, 1000, 2});
            }
            cu = -1;
            float best = 1e9f;
            Cfg bestc{};
            for (size_t i = 0; i < cfgs.size(); ++i) {
                float u = 0, c0 = -1;
                fails += one_bx<__half>(D, m, false, nsm, it, cfgs[i], &u, i == 0 ? &c0 : nullptr, "asym");
                if (i == 0) cu = c0;
                printf("   %5dx%-6d M=%-5d v%d BX=%-3d gm=%-4d sp=%d  %9.1f us\n", sh[0], sh[1], m, cfgs[i].ver,
                       cfgs[i].bx, cfgs[i].gm, cfgs[i].splits, u);
                if (cfgs[i].ver >= 2 && u < best) best = u, bestc = cfgs[i];
            }
            printf("RESULT %5dx%-6d M=%-5d cuBLAS %9.1f us  ws2 best %9.1f us (v%d BX=%d gm=%d sp=%d)  ratio %.2fx\n",
                   sh[0], sh[1], m, cu, best, bestc.ver, bestc.bx, bestc.gm, bestc.splits, cu / best);
            fflush(stdout);
        }
        dev_free(D);
    }
    printf("bench checks: %s (%d failures)\n", fails ? "FAIL" : "PASS", fails);
    return fails ? 1 : 0;
}
