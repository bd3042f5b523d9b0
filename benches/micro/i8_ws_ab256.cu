// i8-ws (thirteenth session): v24's kernel code vs the pre-v24 code on unsplit grids, same process, same buffers.
// ws_kernel<BX, false, false, false, PDL>: PDL = true carries v24's griddepcontrol.wait / launch_dependents and the
// out-of-line prefetch (the SASS every v24 instance had); PDL = false is the pre-v24 SASS (byte-identical at BX 256).
// No PDL attribute, flags without bit 7; each code form launched with <<<>>> (pre-v24, v26) and with
// cudaLaunchKernelEx without attributes (lowbit::LaunchEx, v24's unsplit launch). NOTES v26 (measured: all equal).
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        benches/micro/i8_ws_ab256.cu -o i8_ws_ab256 && ./i8_ws_ab256
#include <cuda.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/launch.cuh"
#include "lowbit/tma_host.h"

#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

using namespace lowbit;

struct Prob {
    int n, k, m;
    std::vector<int8_t*> x;
    std::vector<uint8_t*> w;
    float *rs, *cs;
    void* y;
};

template <int BX, bool PDL, bool EX>
static void launch(const Prob& P, int c, int nsm, cudaStream_t st) {
    i8::Args a{};
    a.x = P.x[c % P.x.size()];
    a.ldx = P.k;
    a.m = P.m;
    a.w = P.w[c % P.w.size()];
    a.n = P.n;
    a.k = P.k;
    a.ksteps = (P.k + 127) / 128;
    a.steps_per_split = a.ksteps;
    a.epi.out = i8::kOutF16;
    a.epi.rs = P.rs;
    a.epi.rs_val = 1.f;
    a.epi.cs = P.cs;
    a.epi.out_scale = 1.f;
    a.y = P.y;
    a.ldy = P.n;
    CUtensorMap xm, ym;
    CK(tma::make_2d_sw128(xm, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.x, a.m, a.k, a.ldx, BX, 128));
    CK(tma::make_2d_sw128(ym, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.y, a.m, a.n, a.ldy * 2, 64, 64));
    constexpr int smem = i8ws::Geo<BX>::kSmem;
    auto k = i8ws::ws_kernel<BX, false, false, false, PDL>;
    CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
    const int tiles = (P.n + 127) / 128 * ((P.m + BX - 1) / BX);
    if (EX) {  // main's (v24) unsplit launch: cudaLaunchKernelEx without attributes
        lowbit::LaunchEx cfg(dim3(std::min(tiles, nsm)), dim3(i8ws::kThreads), smem, st);
        CK(cfg.pdl(false).launch(k, a, xm, ym, 3, 4));
    } else {
        k<<<std::min(tiles, nsm), i8ws::kThreads, smem, st>>>(a, xm, ym, 3, 4);
        CK(cudaGetLastError());
    }
}

template <int BX, bool PDL, bool EX>
static double timeit(const Prob& P, int nsm, cudaStream_t st) {
    const int calls = 10;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; ++i) launch<BX, PDL, EX>(P, i, nsm, st);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int r = 0; r < 12; ++r) {
        CK(cudaEventRecord(e0, st));
        CK(cudaGraphLaunch(ge, st));
        CK(cudaEventRecord(e1, st));
        CK(cudaEventSynchronize(e1));
        float ms = 0;
        CK(cudaEventElapsedTime(&ms, e0, e1));
        if (r >= 2) t.push_back(ms * 1000.0 / calls);
    }
    std::sort(t.begin(), t.end());
    CK(cudaGraphExecDestroy(ge));
    CK(cudaGraphDestroy(g));
    return t[t.size() / 2];
}

int main() {
    int nsm = 132;
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    std::mt19937 rng(3);
    printf("ab256: ws_kernel<256> unsplit, f16 out, no PDL attribute; us per call (graph of 10, median of 10); "
           "pre-v24 code (PDL=false) vs v24 code (PDL=true instance), <<<>>> vs cudaLaunchKernelEx, 4 rounds\n");
    const int cases[][3] = {{4096, 11008, 1024}, {4096, 11008, 4096}, {11008, 4096, 1024}};
    for (auto& c : cases) {
        Prob P{};
        P.n = c[0], P.k = c[1], P.m = c[2];
        const size_t wbytes = size_t((P.n + 127) / 128) * ((P.k + 127) / 128) * 16384, xbytes = size_t(P.m) * P.k;
        const int copies = int(std::max<size_t>(2, (128u << 20) / (wbytes + xbytes) + 1));
        for (int i = 0; i < copies; ++i) {
            std::vector<uint32_t> h(std::max(wbytes, xbytes) / 4);
            for (auto& v : h) v = rng();
            uint8_t* w;
            int8_t* x;
            CK(cudaMalloc(&w, wbytes));
            CK(cudaMalloc(&x, xbytes));
            CK(cudaMemcpy(w, h.data(), wbytes, cudaMemcpyHostToDevice));
            CK(cudaMemcpy(x, h.data(), xbytes, cudaMemcpyHostToDevice));
            P.w.push_back(w);
            P.x.push_back(x);
        }
        std::vector<float> hr(P.m, 1e-3f), hc(P.n, 2e-3f);
        CK(cudaMalloc(&P.rs, P.m * 4));
        CK(cudaMalloc(&P.cs, P.n * 4));
        CK(cudaMemcpy(P.rs, hr.data(), P.m * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(P.cs, hc.data(), P.n * 4, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&P.y, size_t(P.m) * P.n * 2));
        double a[4][4];
        for (int r = 0; r < 4; ++r) {
            a[0][r] = timeit<256, false, false>(P, nsm, st);  // v26 (pre-v24 code, <<<>>>)
            a[1][r] = timeit<256, true, true>(P, nsm, st);    // main (v24 code, LaunchEx)
            a[2][r] = timeit<256, true, false>(P, nsm, st);   // v24 code, <<<>>>
            a[3][r] = timeit<256, false, true>(P, nsm, st);   // pre-v24 code, LaunchEx
        }
        printf("%5dx%-5d M=%4d |", P.n, P.k, P.m);
        for (int v = 0; v < 4; ++v) printf(" %s %6.1f %6.1f %6.1f %6.1f |", v == 0 ? "v26" : v == 1 ? "main" : v == 2 ? "v24code<<<>>>" : "prev24+Ex", a[v][0], a[v][1], a[v][2], a[v][3]);
        printf("\n");
        fflush(stdout);
        for (auto p : P.w) CK(cudaFree(p));
        for (auto p : P.x) CK(cudaFree(p));
        CK(cudaFree(P.rs));
        CK(cudaFree(P.cs));
        CK(cudaFree(P.y));
    }
    return 0;
}
