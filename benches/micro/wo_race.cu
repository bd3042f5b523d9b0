// benches/micro/wo_race.cu: one launch of a weight-only mma.sync small-M kernel (lowbit/wo_gemm.cuh gemm_kernel) on a
// small shape, for compute-sanitizer (racecheck / memcheck) runs that must not share a process: a racecheck abort
// loses the context, so each instance runs in a process of its own.
//
// Measured (twelfth session, NVIDIA H100 80GB HBM3, driver 580.159.04, compute-sanitizer 2025.3.1): racecheck 0 hazards
// and memcheck 0 errors on INT2 / INT3 / INT4 / INT8 at M = 1, 4, 16, 64, 256 (8-warp, 256-row, compact X, split-K,
// MT = 4 / 8, g64 / g128), with the v14 header and with v14's loads / staging / metadata ring undone by the -D
// switches that wo_race_v14_switches.py adds to a copy of it (-I that copy). The "Internal Sanitizer Error" of
// weight_only_gpu under racecheck is the tool's, triggered by the --kernel-name(-exclude) filter that leaves cuBLAS's
// nvjet kernels uninstrumented (kernels/weight_only/NOTES.md "Known issue").
//
//   nvcc -O3 -std=c++17 -arch=sm_90a --expt-relaxed-constexpr -lineinfo -Ikernels/include benches/micro/wo_race.cu -o wo_race
//   ./wo_race FMT M N K [KW] [WIDE] [SPLITS] [MT] [GROUP]
//     FMT int4 | int2 | int3 | int8; KW > 1: in-block split-K (compact X at M <= 8); WIDE 1: the 256-row block (INT4,
//     M = 9..16); SPLITS > 1: split-K (workspace + convert kernel); MT: m-subtiles of 8 rows (default: the library plan's
//     1 / 2 / 4 by M); GROUP: group size (default 128). Prints a checksum of Y (the two runs must agree).
#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#define LOWBIT_WO_PROBE 1
#include "lowbit/wo_gemm.cuh"

using namespace lowbit::wo;

#define CK(...)                                                                                          \
    do {                                                                                                 \
        cudaError_t e_ = (__VA_ARGS__);                                                                  \
        if (e_ != cudaSuccess) {                                                                         \
            fprintf(stderr, "%s:%d %s: %s\n", __FILE__, __LINE__, #__VA_ARGS__, cudaGetErrorString(e_)); \
            exit(1);                                                                                     \
        }                                                                                                \
    } while (0)

template <class Fmt>
static int run(int m, int n, int k, int kw, int wide, int splits, int mt, int gl) {
    constexpr int kstep = Fmt::kTiles * 16;
    const int k_pad = (k + kstep - 1) / kstep * kstep, strips = (n + 15) / 16, ksteps = k_pad / kstep;
    const int groups = (k_pad + gl - 1) / gl;
    std::mt19937 rng(7);
    std::vector<uint32_t> words(size_t(strips) * ksteps * 128), meta(size_t(strips) * groups * 16), hi(size_t(strips) * ksteps * 64);
    for (auto& v : words) v = rng();
    for (auto& v : hi) v = rng();
    for (size_t i = 0; i < meta.size(); i += 2) meta[i] = 0x1C001C00u, meta[i + 1] = (rng() % 4) | ((rng() % 4) << 8);
    std::vector<__half> x(size_t(m) * k);
    for (auto& v : x) v = __float2half(float(int(rng() % 7) - 3) * 0.25f);
    uint32_t *dw, *dm, *dh = nullptr;
    if (Fmt::kHasHi) {
        CK(cudaMalloc(&dh, hi.size() * 4));
        CK(cudaMemcpy(dh, hi.data(), hi.size() * 4, cudaMemcpyHostToDevice));
    }
    __half *dx, *dy;
    float* dws;
    CK(cudaMalloc(&dw, words.size() * 4));
    CK(cudaMalloc(&dm, meta.size() * 4));
    CK(cudaMalloc(&dx, x.size() * 2));
    CK(cudaMalloc(&dy, size_t(m) * n * 2));
    CK(cudaMalloc(&dws, size_t(m) * n * 4));
    CK(cudaMemcpy(dw, words.data(), words.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dm, meta.data(), meta.size() * 4, cudaMemcpyHostToDevice));
    CK(cudaMemcpy(dx, x.data(), x.size() * 2, cudaMemcpyHostToDevice));
    CK(cudaMemset(dws, 0, size_t(m) * n * 4));
    cudaDeviceProp prop{};
    CK(cudaGetDeviceProperties(&prop, 0));
    mt = mt > 0 ? mt : m <= 8 ? 1 : m <= 16 ? 2 : 4;
    const int mtiles = (m + mt * 8 - 1) / (mt * 8);
    Args a{};
    a.words = dw, a.hi_words = dh, a.meta = dm, a.x = dx, a.y = dy;
    a.m = m, a.n = n, a.k = k, a.ldx = k;
    a.strips = strips, a.ksteps = ksteps, a.gtiles = gl / 16, a.groups = groups;
    splits = splits > 1 ? splits : 1;
    a.steps_per_split = (ksteps + splits - 1) / splits;
    splits = (ksteps + a.steps_per_split - 1) / a.steps_per_split;
    a.kc = kw > 1 ? ksteps * kstep : std::min(a.steps_per_split * kstep, std::max(kstep, 2048 / mt / kstep * kstep));
    a.x_vec = k % 8 == 0;
    a.auto_splits = 0;
    a.kw = kw > 1 ? kw : 1;
    a.sms = prop.multiProcessorCount;
    if (splits > 1) a.ws = dws;
    g_wide = wide;
    for (int rep = 0; rep < 2; ++rep) {
        CK((launch_dtype<Fmt, __half>(a, mt, splits, mtiles, nullptr)));
        if (splits > 1) CK(launch_convert<__half>(dws, dy, int64_t(m) * n, nullptr));
        CK(cudaDeviceSynchronize());
        std::vector<uint16_t> y(size_t(m) * n);
        CK(cudaMemcpy(y.data(), dy, y.size() * 2, cudaMemcpyDeviceToHost));
        uint64_t h = 1469598103934665603ull;
        for (auto v : y) h = (h ^ v) * 1099511628211ull;
        printf("wo_race M=%d N=%d K=%d g%d mt=%d kw=%d wide=%d splits=%d run %d: hash %016llx\n", m, n, k, gl, mt, a.kw, wide, splits,
               rep, (unsigned long long)h);
    }
    return 0;
}

int main(int argc, char** argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s int4|int2|int3|int8 M N K [KW] [WIDE] [SPLITS] [MT] [GROUP]\n", argv[0]);
        return 2;
    }
    const int m = atoi(argv[2]), n = atoi(argv[3]), k = atoi(argv[4]);
    const int kw = argc > 5 ? atoi(argv[5]) : 1, wide = argc > 6 ? atoi(argv[6]) : 0, splits = argc > 7 ? atoi(argv[7]) : 1;
    const int mt = argc > 8 ? atoi(argv[8]) : 0, gl = argc > 9 ? atoi(argv[9]) : 128;
    if (strcmp(argv[1], "int2") == 0) return run<IntLow<2>>(m, n, k, kw, wide, splits, mt, gl);
    if (strcmp(argv[1], "int3") == 0) return run<IntLow<3>>(m, n, k, kw, wide, splits, mt, gl);
    if (strcmp(argv[1], "int8") == 0) return run<Int8>(m, n, k, kw, wide, splits, mt, gl);
    return run<Int4>(m, n, k, kw, wide, splits, mt, gl);
}
