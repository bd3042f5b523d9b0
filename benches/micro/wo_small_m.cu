// Micro-benchmark of the weight-only small-M kernels on synthetic INT4 g128 weights, built with nvcc on
// the GPU machine itself (no Rust there) so kernel variants can be compared in one device call:
//
//   nvcc -O3 -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -Ikernels/include \
//        benches/micro/wo_small_m.cu -o /tmp/wo_small_m && /tmp/wo_small_m [n k [profile]]
//
// Codes, scales and X are random (the timing does not depend on their values); every variant's output is
// compared with the default build's (MT=2 P=8, no register cap), whose path the GPU tests check. Times are medians
// of CUDA-event-timed batches over enough weight copies to exceed 3x L2. Not a test and not the bench of
// record (lowbit-bench is); it exists to explore tiling/occupancy choices quickly.
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "lowbit/wo_gemm.cuh"

using namespace lowbit::wo;

#define CK(...)                                                                             \
    do {                                                                                    \
        cudaError_t e_ = (__VA_ARGS__);                                                             \
        if (e_ != cudaSuccess) {                                                            \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
            exit(1);                                                                        \
        }                                                                                   \
    } while (0)

struct Problem {
    int n, k, m;
    int strips, ksteps, groups;
    size_t word_bytes, meta_bytes;
    int copies;
    std::vector<uint32_t*> words, meta;
    __half* x;
    __half* y;
    float* ws;
    int sms;
};

static Args base_args(const Problem& p, int c) {
    Args a{};
    a.words = p.words[c];
    a.meta = p.meta[c];
    a.x = p.x;
    a.y = p.y;
    a.m = p.m;
    a.n = p.n;
    a.k = p.k;
    a.ldx = p.k;
    a.strips = p.strips;
    a.ksteps = p.ksteps;
    a.gtiles = 128 / 16;
    a.groups = p.groups;
    a.x_vec = 1;
    a.sms = p.sms;
    return a;
}

// The mma.sync split-K path as wo_launch.cu plans it, with the kernel's compile-time choices (m-subtiles MT,
// k-steps in flight P, resident blocks MINB the registers are capped for) as parameters.
template <int MT, int P, int MINB>
static void run_mma(const Problem& p, int c, cudaStream_t s) {
    Args a = base_args(p, c);
    const int kstep = 64;
    const int nblk = (p.strips + kWarps - 1) / kWarps;
    int splits = (8 * p.sms + nblk - 1) / nblk;
    splits = std::max(1, std::min(splits, std::max(1, p.ksteps / 8)));
    a.steps_per_split = (p.ksteps + splits - 1) / splits;
    auto kern = gemm_kernel<Int4, __half, MT, P, MINB>;
    // Wave-aware split count, as launch_mt does.
    int occ = 0;
    CK(cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, kThreads, smem_bytes<Int4, MT>(2048 / MT, 0)));
    const int64_t slots = int64_t(std::max(occ, 1)) * p.sms;
    double best = -1;
    for (int cnd = 2; cnd <= std::max(p.ksteps / 8, 2); ++cnd) {
        const int sps = (p.ksteps + cnd - 1) / cnd, real = (p.ksteps + sps - 1) / sps;
        const double waves = double(int64_t(nblk) * real) / double(slots);
        const double eff = waves / std::ceil(waves);
        if (eff > best + 0.02) {
            best = eff;
            splits = real;
            a.steps_per_split = sps;
        }
    }
    int kc = a.steps_per_split * kstep;
    if (kc > 2048 / MT) kc = 2048 / MT / kstep * kstep;
    a.kc = kc;
    if (splits > 1) {
        a.ws = p.ws;
        CK(cudaMemsetAsync(p.ws, 0, size_t(p.m) * p.n * 4, s));
    }
    const size_t smem = smem_bytes<Int4, MT>(a.kc, 0);
    if (smem > 48 * 1024) CK(cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, int(smem)));
    kern<<<dim3(1, nblk, splits), kThreads, smem, s>>>(a);
    CK(cudaGetLastError());
    if (splits > 1) {
        const int64_t total = int64_t(p.m) * p.n;
        convert_kernel<__half><<<int((total + 255) / 256), 256, 0, s>>>(p.ws, p.y, total);
    }
}

static bool g_profile = false;  // argv[3] == "profile": run each variant once (for ncu), no timing

template <class F>
static double time_us(const Problem& p, F&& f) {
    if (g_profile) {
        f(0, nullptr);
        CK(cudaDeviceSynchronize());
        return 1.0;
    }
    cudaStream_t s;
    CK(cudaStreamCreate(&s));
    for (int i = 0; i < 3 * p.copies; ++i) f(i % p.copies, s);
    CK(cudaStreamSynchronize(s));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> v;
    const int reps = 20 * p.copies;
    for (int b = 0; b < 15; ++b) {
        CK(cudaEventRecord(e0, s));
        for (int i = 0; i < reps; ++i) f(i % p.copies, s);
        CK(cudaEventRecord(e1, s));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        v.push_back(1000.0 * ms / reps);
    }
    std::sort(v.begin(), v.end());
    CK(cudaStreamDestroy(s));
    return v[v.size() / 2];
}

static std::vector<__half> download_y(const Problem& p) {
    std::vector<__half> h(size_t(p.m) * p.n);
    CK(cudaMemcpy(h.data(), p.y, h.size() * 2, cudaMemcpyDeviceToHost));
    return h;
}

static double max_rel_diff(const std::vector<__half>& a, const std::vector<__half>& b) {
    double num = 0, den = 0;
    for (size_t i = 0; i < a.size(); ++i) {
        const double x = __half2float(a[i]), y = __half2float(b[i]);
        num = std::max(num, std::fabs(x - y));
        den = std::max(den, std::fabs(y));
    }
    return num / (den > 0 ? den : 1);
}

int main(int argc, char** argv) {
    Problem p{};
    p.n = argc > 1 ? atoi(argv[1]) : 28672;
    p.k = argc > 2 ? atoi(argv[2]) : 8192;
    g_profile = argc > 3 && std::string(argv[3]) == "profile";
    CK(cudaDeviceGetAttribute(&p.sms, cudaDevAttrMultiProcessorCount, 0));
    p.strips = (p.n + 15) / 16;
    p.ksteps = (p.k + 63) / 64;
    p.groups = p.ksteps * 64 / 128;
    p.word_bytes = size_t(p.strips) * p.ksteps * 512;
    p.meta_bytes = size_t(p.strips) * p.groups * 64;
    int l2 = 0;
    CK(cudaDeviceGetAttribute(&l2, cudaDevAttrL2CacheSize, 0));
    p.copies = int(std::max<size_t>(1, (3 * size_t(l2)) / (p.word_bytes + p.meta_bytes) + 1));
    std::mt19937 rng(1);
    std::vector<uint32_t> hw(p.word_bytes / 4), hm(p.meta_bytes / 4);
    for (auto& v : hw) v = rng();
    for (size_t i = 0; i < hm.size(); i += 2) {
        const __half s0 = __float2half(0.001f * (1 + rng() % 100)), s1 = __float2half(0.001f * (1 + rng() % 100));
        hm[i] = uint32_t(__half_as_ushort(s0)) | (uint32_t(__half_as_ushort(s1)) << 16);
        hm[i + 1] = (rng() % 16) | ((rng() % 16) << 8);  // zero points of rows g and g + 8
    }
    for (int c = 0; c < p.copies; ++c) {
        uint32_t *w, *m;
        CK(cudaMalloc(&w, p.word_bytes));
        CK(cudaMalloc(&m, p.meta_bytes));
        CK(cudaMemcpy(w, hw.data(), p.word_bytes, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(m, hm.data(), p.meta_bytes, cudaMemcpyHostToDevice));
        p.words.push_back(w);
        p.meta.push_back(m);
    }
    const int max_m = 16;
    std::vector<__half> hx(size_t(max_m) * p.k);
    for (auto& v : hx) v = __float2half(float(int(rng() % 2001) - 1000) / 1000.f);
    CK(cudaMalloc(&p.x, hx.size() * 2));
    CK(cudaMemcpy(p.x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMalloc(&p.y, size_t(max_m) * p.n * 2));
    CK(cudaMalloc(&p.ws, size_t(max_m) * p.n * 4));
    CK(cudaMemset(p.ws, 0, size_t(max_m) * p.n * 4));

    const double gb = double(p.word_bytes + p.meta_bytes) / 1e9;
    printf("n=%d k=%d: %.1f MB of weights, %d copies\n", p.n, p.k, gb * 1e3, p.copies);
    for (int m : {1, 4, 16}) {
        p.m = m;
        run_mma<2, 8, 1>(p, 0, nullptr);
        CK(cudaDeviceSynchronize());
        const auto ref = download_y(p);
        auto report = [&](const char* name, double us) {
            const double err = max_rel_diff(download_y(p), ref);
            printf("  M=%2d %-24s %8.1f us  %6.0f GB/s  max|diff|/max|ref| %.1e%s\n", m, name, us, gb / us * 1e6, err,
                   err > 2e-3 ? "  MISMATCH" : "");
        };
#define VARIANT(MT, P, MINB)                                                                              \
    if ((MT) * 8 >= m) {                                                                                  \
        report("MT=" #MT " P=" #P " MINB=" #MINB,                                                         \
               time_us(p, [&](int c, cudaStream_t s) { run_mma<MT, P, MINB>(p, c, s); }));              \
    }
        VARIANT(1, 8, 1)
        VARIANT(1, 8, 2)
        VARIANT(1, 8, 3)
        VARIANT(1, 8, 4)
        VARIANT(1, 4, 4)
        VARIANT(1, 6, 3)
        VARIANT(2, 8, 1)
        VARIANT(2, 8, 3)
        VARIANT(2, 4, 3)
        VARIANT(2, 4, 4)
    }
    return 0;
}
