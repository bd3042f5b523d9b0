// Shared pieces of the nvcc-built micro harnesses (benches/micro/*.cu): a CUDA-event timer and the two library
// baselines every kernel family is compared with in the same process, loaded with dlopen so the harnesses build
// with nvcc alone on the GPU machine (no cuBLAS headers or link flags needed):
//   - bench_lt_int8:    cuBLASLt int8 GEMM, int8 in, int32 out (CUBLAS_COMPUTE_32I), heuristic algorithm, 32 MiB
//                       workspace; C[m, n] = A[m, k] · W[n, k]ᵀ as lowbit-bench's `cublaslt-int8`;
//   - bench_cublas_f16: cuBLAS GemmEx f16 in / f16 out, f32 compute, as lowbit-bench's `cublas-f16`.
// Both rotate the weight through copies_for(bytes) copies (>= 200 MB, > 3x the 50 MB L2 of an H100 / H200) so a
// decode-sized GEMM is not an L2 hit. Not the bench of record (lowbit-bench is).
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <functional>
#include <vector>

#include "lowbit_kernels.h"

namespace micro {

#define MICRO_CK(...)                                                                                  \
    do {                                                                                               \
        cudaError_t e_ = (__VA_ARGS__);                                                                \
        if (e_ != cudaSuccess) {                                                                       \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);            \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

// Median over `trials` batches of `reps` back-to-back calls (after `warm` untimed calls), ms per call; the events
// are recorded on `s` (the calls must be enqueued there).
inline float time_ms(int reps, const std::function<void()>& f, int warm = 3, int trials = 7, cudaStream_t s = 0) {
    cudaEvent_t a, b;
    MICRO_CK(cudaEventCreate(&a));
    MICRO_CK(cudaEventCreate(&b));
    for (int i = 0; i < warm; ++i) f();
    std::vector<float> ts;
    for (int t = 0; t < trials; ++t) {
        MICRO_CK(cudaEventRecord(a, s));
        for (int i = 0; i < reps; ++i) f();
        MICRO_CK(cudaEventRecord(b, s));
        MICRO_CK(cudaEventSynchronize(b));
        float ms = 0.f;
        MICRO_CK(cudaEventElapsedTime(&ms, a, b));
        ts.push_back(ms / reps);
    }
    MICRO_CK(cudaGetLastError());
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

// Weight copies to rotate through: >= 200 MB in all, at most 32.
inline int copies_for(size_t bytes) {
    return int(std::min<size_t>(32, (200ull << 20) / std::max<size_t>(bytes, 1) + 1));
}

// Repetitions per batch for about `budget` units of work at `work` units per call (3..200).
inline int reps_for(double work, double budget) { return std::max(3, std::min(200, int(budget / (work + 1e6)))); }

// An f16-output epilogue with uniform row / column scales (1e-3) for timing lowbit's int8-core epilogues; the
// scale buffers are freed by release().
struct F16Epilogue {
    lowbit_i8_epilogue e{};
    float* rs = nullptr;
    float* cs = nullptr;
    void release() {
        cudaFree(rs);
        cudaFree(cs);
    }
};

inline F16Epilogue f16_epilogue(int m, int n) {
    F16Epilogue f;
    MICRO_CK(cudaMalloc(&f.rs, size_t(m) * 4));
    MICRO_CK(cudaMalloc(&f.cs, size_t(n) * 4));
    std::vector<float> v(std::max(m, n), 1e-3f);
    MICRO_CK(cudaMemcpy(f.rs, v.data(), size_t(m) * 4, cudaMemcpyHostToDevice));
    MICRO_CK(cudaMemcpy(f.cs, v.data(), size_t(n) * 4, cudaMemcpyHostToDevice));
    f.e.out_dtype = LOWBIT_I8_OUT_F16;
    f.e.row_scale = f.rs;
    f.e.col_scale = f.cs;
    f.e.out_scale = 1.f;
    return f;
}

// Median µs per call of `f(copy, stream)` over CUDA-graph replays of one pass over all copies (at least 24 calls per
// replay, 15 timed replays after 3 untimed ones), on a non-blocking stream of its own; one warm-up pass outside the
// capture also sets the kernels' attributes.
inline double graph_us(int copies, const std::function<void(int, cudaStream_t)>& f) {
    cudaStream_t s;
    MICRO_CK(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking));
    for (int i = 0; i < copies; ++i) f(i, s);
    MICRO_CK(cudaStreamSynchronize(s));
    const int per = std::max(copies, 24);
    cudaGraph_t g;
    MICRO_CK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < per; ++i) f(i % copies, s);
    MICRO_CK(cudaStreamEndCapture(s, &g));
    cudaGraphExec_t ge;
    MICRO_CK(cudaGraphInstantiate(&ge, g, 0));
    for (int i = 0; i < 3; ++i) MICRO_CK(cudaGraphLaunch(ge, s));
    cudaEvent_t e0, e1;
    MICRO_CK(cudaEventCreate(&e0));
    MICRO_CK(cudaEventCreate(&e1));
    std::vector<double> v;
    for (int r = 0; r < 15; ++r) {
        MICRO_CK(cudaEventRecord(e0, s));
        MICRO_CK(cudaGraphLaunch(ge, s));
        MICRO_CK(cudaEventRecord(e1, s));
        MICRO_CK(cudaEventSynchronize(e1));
        float ms = 0;
        MICRO_CK(cudaEventElapsedTime(&ms, e0, e1));
        v.push_back(1000.0 * ms / per);
    }
    std::sort(v.begin(), v.end());
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    cudaEventDestroy(e0);
    cudaEventDestroy(e1);
    cudaStreamDestroy(s);
    return v[v.size() / 2];
}

// cuBLAS v2 entry points for harnesses that call GemmEx themselves (dlsym'ed from libcublas.so.13).
typedef int (*BlasCreate)(void**);
typedef int (*BlasSetStream)(void*, cudaStream_t);
typedef int (*BlasGemmEx)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                          const void*, void*, int, int, int, int);

// cuBLASLt / cuBLAS entry points (the C ABI, declared here by hand).
typedef int (*LtCreate)(void**);
typedef int (*LtDescCreate)(void**, int, int);
typedef int (*LtDescSet)(void*, int, const void*, size_t);
typedef int (*LtLayoutCreate)(void**, int, uint64_t, uint64_t, int64_t);
typedef int (*LtPrefCreate)(void**);
typedef int (*LtPrefSet)(void*, int, const void*, size_t);
struct LtHeur {  // cublasLtMatmulHeuristicResult_t
    uint64_t algo[8];
    size_t ws;
    int state;
    float waves;
    int reserved[4];
};
typedef int (*LtHeuristic)(void*, void*, void*, void*, void*, void*, void*, int, LtHeur*, int*);
typedef int (*LtMatmul)(void*, void*, const void*, const void*, void*, const void*, void*, const void*, const void*,
                        void*, void*, void*, const void*, void*, size_t, cudaStream_t);
typedef int (*BlasCreate)(void**);
typedef int (*BlasGemmEx)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                          const void*, void*, int, int, int, int);

inline void* lib(const char* name) {
    void* h = dlopen(name, RTLD_NOW);
    if (!h) printf("baseline: %s not found (%s)\n", name, dlerror());
    return h;
}

// cuBLASLt int8 GEMM time, ms per call (-1 when the library or an algorithm is missing). `reps` 0 = automatic.
inline float bench_lt_int8(int m, int n, int k, int reps = 0) {
    static void* g = lib("libcublasLt.so.13");
    if (!g) return -1.f;
    auto create = (LtCreate)dlsym(g, "cublasLtCreate");
    auto dcreate = (LtDescCreate)dlsym(g, "cublasLtMatmulDescCreate");
    auto dset = (LtDescSet)dlsym(g, "cublasLtMatmulDescSetAttribute");
    auto lcreate = (LtLayoutCreate)dlsym(g, "cublasLtMatrixLayoutCreate");
    auto pcreate = (LtPrefCreate)dlsym(g, "cublasLtMatmulPreferenceCreate");
    auto pset = (LtPrefSet)dlsym(g, "cublasLtMatmulPreferenceSetAttribute");
    auto heur = (LtHeuristic)dlsym(g, "cublasLtMatmulAlgoGetHeuristic");
    auto mm = (LtMatmul)dlsym(g, "cublasLtMatmul");
    void *h, *desc, *la, *lb, *lc, *pref, *ws;
    if (!create || !mm || create(&h)) return -1.f;
    dcreate(&desc, 72 /*CUBLAS_COMPUTE_32I*/, 10 /*CUDA_R_32I*/);
    int trans = 1;
    dset(desc, 3 /*TRANSA*/, &trans, 4);
    lcreate(&la, 3 /*CUDA_R_8I*/, k, n, k);
    lcreate(&lb, 3, k, m, k);
    lcreate(&lc, 10, n, m, n);
    pcreate(&pref);
    size_t wsb = 32 << 20;
    pset(pref, 1 /*MAX_WORKSPACE_BYTES*/, &wsb, 8);
    LtHeur hr;
    int got = 0;
    if (heur(h, desc, la, lb, lc, lc, pref, 1, &hr, &got) || got < 1) return -1.f;
    MICRO_CK(cudaMalloc(&ws, wsb));
    const int nc = copies_for(size_t(n) * k);
    std::vector<int8_t*> a(nc);
    for (auto& p : a) {
        MICRO_CK(cudaMalloc(&p, size_t(n) * k));
        MICRO_CK(cudaMemset(p, 3, size_t(n) * k));
    }
    int8_t* b;
    int32_t* c;
    MICRO_CK(cudaMalloc(&b, size_t(m) * k));
    MICRO_CK(cudaMalloc(&c, size_t(m) * n * 4));
    MICRO_CK(cudaMemset(b, 5, size_t(m) * k));
    int32_t alpha = 1, beta = 0;
    int it = 0;
    if (reps <= 0) reps = reps_for(double(m) * n * k / 2, 2e9);
    const float ms = time_ms(reps, [&] {
        mm(h, desc, &alpha, a[it++ % nc], la, b, lb, &beta, c, lc, c, lc, hr.algo, ws, wsb, nullptr);
    });
    for (auto p : a) cudaFree(p);
    cudaFree(b);
    cudaFree(c);
    cudaFree(ws);
    return ms;
}

// cuBLAS f16 GEMM time (f32 compute), ms per call (-1 when the library is missing). `reps` 0 = automatic.
inline float bench_cublas_f16(int m, int n, int k, int reps = 0) {
    static void* g = lib("libcublas.so.13");
    if (!g) return -1.f;
    auto create = (BlasCreate)dlsym(g, "cublasCreate_v2");
    auto gemm = (BlasGemmEx)dlsym(g, "cublasGemmEx");
    void* h;
    if (!create || !gemm || create(&h)) return -1.f;
    const int nc = copies_for(size_t(n) * k * 2);
    std::vector<__half*> a(nc);
    for (auto& p : a) {
        MICRO_CK(cudaMalloc(&p, size_t(n) * k * 2));
        MICRO_CK(cudaMemset(p, 0x3c, size_t(n) * k * 2));
    }
    __half *b, *c;
    MICRO_CK(cudaMalloc(&b, size_t(m) * k * 2));
    MICRO_CK(cudaMalloc(&c, size_t(m) * n * 2));
    MICRO_CK(cudaMemset(b, 0x30, size_t(m) * k * 2));
    float alpha = 1.f, beta = 0.f;
    int it = 0;
    if (reps <= 0) reps = reps_for(double(m) * n * k / 16, 1e9);
    const float ms = time_ms(reps, [&] {
        gemm(h, 1, 0, n, m, k, &alpha, a[it++ % nc], 2 /*CUDA_R_16F*/, k, b, 2, k, &beta, c, 2, n,
             68 /*CUBLAS_COMPUTE_32F*/, -1);
    });
    for (auto p : a) cudaFree(p);
    cudaFree(b);
    cudaFree(c);
    return ms;
}

}  // namespace micro
