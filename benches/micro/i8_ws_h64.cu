// i8-ws (thirteenth session) harness: W8A8 at M = 16 on 64-row weight tiles (one 64-row unit per CTA, its two consumer
// warpgroups taking alternate K stages and summing through shared memory) against the library's unsplit ws_kernel<64>
// (128-row tiles), same buffers, same call. Also times ws_kernel<64> with the PDL instance on unsplit grids. NOTES v26
// (measured: 64-row tiles slower on 7 of 8 shapes; not in the library).
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        benches/micro/i8_ws_h64.cu -o i8_ws_h64 && ./i8_ws_h64 [M = 16]
// (no -lcuda: lowbit/tma_host.h takes the driver entry point through the runtime)
#include <cuda.h>
#include <cuda_runtime.h>
#include <cuda_fp16.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/launch.cuh"
#include "lowbit/tma_host.h"

#define CK(x)                                                                                        \
    do {                                                                                             \
        cudaError_t e_ = (x);                                                                        \
        if (e_ != cudaSuccess) {                                                                     \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);       \
            exit(1);                                                                                 \
        }                                                                                            \
    } while (0)

namespace lowbit {
namespace i8ws {

template <int NS>
struct H64Geo {
    static constexpr int BX = 64;
    static constexpr int kW = 64 * kBK;  // 8 KB: one 64-row half of a tiled 128-row block
    static constexpr int kX = BX * kBK;
    static constexpr int kSlot = kW + kX;
    static constexpr int kEpi = 2 * 2 * 64 * 128;  // as Geo: per consumer warpgroup two 8 KB staging buffers
    static constexpr int kMax = (226 * 1024 - kEpi) / kSlot;
    static constexpr int S = NS < kMax ? NS : kMax;
    static constexpr int kSmem = S * kSlot + kEpi + 1024;
};

// 64-row units: unit u = (64-row weight tile nb64, activation tile mb), M-fastest as Tiles with nt = ceil(N / 64).
template <int NS>
__global__ void __launch_bounds__(kThreads, 1) h64_kernel(const __grid_constant__ Args p,
                                                           const __grid_constant__ CUtensorMap xmap,
                                                           const __grid_constant__ CUtensorMap ymap, int flags,
                                                           int group) {
#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ >= 900 && defined(__CUDA_ARCH_FEAT_SM90_ALL)
    using namespace tma;
    using G = H64Geo<NS>;
    constexpr int BX = 64, S = G::S;
    extern __shared__ unsigned char smem_raw[];
    __shared__ __align__(8) uint64_t full[S], empty[S];
    const uint32_t raw = smem_u32(smem_raw);
    unsigned char* ring = smem_raw + ((1024u - (raw & 1023u)) & 1023u);
    const int tid = threadIdx.x, wg = tid >> 7;
    const bool ystore = flags & 1;
    if (tid == 0) {
        for (int s = 0; s < S; ++s) {
            mbar_init(&full[s], 1);
            mbar_init(&empty[s], 4);  // one consumer warpgroup per stage
        }
        asm volatile("fence.mbarrier_init.release.cluster;\n" ::: "memory");
    }
    __syncthreads();
    const int mt = (p.m + BX - 1) / BX, nt = (p.n + 63) / 64;
    const Tiles tiles{mt, nt, group < 1 ? 1 : (group > mt ? mt : group)};
    const int ksteps = p.ksteps, total = nt * mt;
    if (wg == 0) {
        setmaxnreg_dec<40>();
        if (tid == 0) {
            int s = 0;
            uint32_t phase = 0;
            for (int u = blockIdx.x; u < total; u += gridDim.x) {
                int nb, mb;
                tiles.at(u, nb, mb);
                const uint8_t* wsrc = p.w + size_t(nb >> 1) * ksteps * (kBW * kBK) + (nb & 1) * 1024;
                for (int ks = 0; ks < ksteps; ++ks) {
                    mbar_wait(&empty[s], phase ^ 1);
                    unsigned char* slot = ring + s * G::kSlot;
                    mbar_expect_tx(&full[s], G::kSlot);
                    const uint8_t* src = wsrc + size_t(ks) * (kBW * kBK);
#pragma unroll
                    for (int c = 0; c < 8; ++c) bulk_g2s(slot + c * 1024, src + c * 2048, 1024, &full[s]);
                    tma_2d_g2s(slot + G::kW, &xmap, ks * kBK, mb * BX, &full[s]);
                    if (++s == S) s = 0, phase ^= 1;
                }
            }
        }
    } else {
        setmaxnreg_inc<232>();
        const int cw = wg - 1, lt = tid & 127;
        const int lane = tid & 31, warp = (tid >> 5) & 3;
        const int g = lane >> 2, tq = lane & 3;
        const uint32_t ring_a = smem_u32(ring);
        unsigned char* const ebuf = ring + S * G::kSlot;  // warpgroup 0's two staging buffers
        int32_t* const red = reinterpret_cast<int32_t*>(ring + S * G::kSlot + 2 * 64 * 128);  // warpgroup 1's: 16 KB
        uint32_t yq = 0;
        int pos = 0;  // ring position of the unit's first stage
        int32_t acc[BX / 2];
#pragma unroll
        for (int i = 0; i < BX / 2; ++i) acc[i] = 0;
        for (int u = blockIdx.x; u < total; u += gridDim.x) {
            int nb, mb;
            tiles.at(u, nb, mb);
            int prev = -1;
            for (int i = cw; i < ksteps; i += 2) {
                const int q = pos + i, s = q % S;
                mbar_wait(&full[s], (q / S) & 1);
                const uint32_t wa = ring_a + s * G::kSlot, xa = wa + G::kW;
                wgmma_fence();
                wgmma_fence_regs_s32(acc);
#pragma unroll
                for (int j = 0; j < kBK / 32; ++j)
                    wgmma_ss_s8<BX>(acc, desc_plain(wa + 2 * j * 1024, 1024, 128), desc_sw128(xa + 32 * j),
                                    i != cw || j != 0);
                wgmma_commit();
                wgmma_fence_regs_s32(acc);
                wgmma_wait<1>();
                if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
                prev = s;
            }
            pos += ksteps;
            const int nr = nb * 64 + warp * 16 + g;
            EpiVec<BX> ev;
            if (cw == 0) epi_prefetch<BX>(p, ev, mb * BX, nr, lane);
            wgmma_wait<0>();
            wgmma_fence_regs_s32(acc);
            if (prev >= 0 && lane == 0) mbar_arrive(&empty[prev]);
            if (cw == 1) {
#pragma unroll
                for (int j = 0; j < BX / 2; ++j) red[j * 128 + lt] = acc[j];
                asm volatile("bar.sync 7, 256;\n" ::: "memory");
                asm volatile("bar.sync 8, 256;\n" ::: "memory");  // warpgroup 0 has read them
                continue;
            }
            asm volatile("bar.sync 7, 256;\n" ::: "memory");
#pragma unroll
            for (int j = 0; j < BX / 2; ++j) acc[j] += red[j * 128 + lt];
            asm volatile("bar.arrive 8, 256;\n" ::: "memory");
            if (ystore) {
                if (p.epi.out == i8::kOutF16)
                    epilogue_tma<BX, i8::kOutF16>(p, acc, ev, mb * BX, nb * 64, tq, g, warp, 0, ebuf, &ymap, yq);
                else
                    epilogue_tma<BX, i8::kOutBf16>(p, acc, ev, mb * BX, nb * 64, tq, g, warp, 0, ebuf, &ymap, yq);
            } else {
                epilogue<BX>(p, acc, ev, mb * BX, nr, tq);
            }
        }
        if (cw == 0 && ystore && lt == 0) tma::bulk_wait_group<0>();
    }
#endif
}

}  // namespace i8ws
}  // namespace lowbit

using namespace lowbit;

static int g_nsm = 132;

struct Prob {
    int n, k, m;
    int8_t* x;
    std::vector<uint8_t*> w;  // rotated copies
    float *rs, *cs;
    __half* y;
    int32_t* yi;
};

static i8::Args args_of(const Prob& P, int c, bool f16) {
    i8::Args a{};
    a.x = P.x;
    a.ldx = P.k;
    a.m = P.m;
    a.w = P.w[c];
    a.n = P.n;
    a.k = P.k;
    a.ksteps = (P.k + 127) / 128;
    a.steps_per_split = a.ksteps;
    a.epi.out = f16 ? i8::kOutF16 : i8::kOutI32;
    a.epi.rs = P.rs;
    a.epi.rs_val = 1.f;
    a.epi.cs = P.cs;
    a.epi.out_scale = 1.f;
    a.y = f16 ? (void*)P.y : (void*)P.yi;
    a.ldy = P.n;
    return a;
}

// variant: 0 = ws_kernel<64> unsplit (library, plain launch), 1 = ws_kernel<64, .., PDL> with the PDL attribute,
// 8 / 12 = h64_kernel<NS>.
static void launch(const Prob& P, int c, bool f16, int variant, cudaStream_t st) {
    i8::Args a = args_of(P, c, f16);
    CUtensorMap xm, ym;
    CK(tma::make_2d_sw128(xm, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.x, a.m, a.k, a.ldx, 64, 128));
    memset(&ym, 0, sizeof ym);
    int flags = 2;
    if (f16) {
        CK(tma::make_2d_sw128(ym, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.y, a.m, a.n, a.ldy * 2, 64, 64));
        flags |= 1;
    }
    if (variant == 0 || variant == 1) {
        constexpr int smem = i8ws::Geo<64>::kSmem;
        const int tiles = (P.n + 127) / 128 * ((P.m + 63) / 64);
        const int grid = std::min(tiles, g_nsm);
        if (variant == 0) {
            auto k = i8ws::ws_kernel<64, false, false, false, false>;
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
            k<<<grid, i8ws::kThreads, smem, st>>>(a, xm, ym, flags, 4);
            CK(cudaGetLastError());
        } else {
            auto k = i8ws::ws_kernel<64, false, false, false, true>;
            CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
            lowbit::LaunchEx cfg(dim3(grid), dim3(i8ws::kThreads), smem, st);
            CK(cfg.pdl(true).launch(k, a, xm, ym, flags | 128, 4));
        }
        return;
    }
    const int units = (P.n + 63) / 64 * ((P.m + 63) / 64);
    const int grid = std::min(units, g_nsm);
    if (variant == 8) {
        constexpr int smem = i8ws::H64Geo<8>::kSmem;
        auto k = i8ws::h64_kernel<8>;
        CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        k<<<grid, i8ws::kThreads, smem, st>>>(a, xm, ym, flags, 4);
    } else {
        constexpr int smem = i8ws::H64Geo<12>::kSmem;
        auto k = i8ws::h64_kernel<12>;
        CK(cudaFuncSetAttribute(k, cudaFuncAttributeMaxDynamicSharedMemorySize, smem));
        k<<<grid, i8ws::kThreads, smem, st>>>(a, xm, ym, flags, 4);
    }
    CK(cudaGetLastError());
}

// Median us per call of a graph of `calls` launches rotating the weight copies, 7 replays after 2 warm-ups.
static double time_variant(const Prob& P, int variant, cudaStream_t st) {
    const int calls = 40;
    cudaGraph_t g;
    cudaGraphExec_t ge;
    CK(cudaStreamBeginCapture(st, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < calls; ++i) launch(P, i % int(P.w.size()), true, variant, st);
    CK(cudaStreamEndCapture(st, &g));
    CK(cudaGraphInstantiate(&ge, g, 0));
    cudaEvent_t e0, e1;
    CK(cudaEventCreate(&e0));
    CK(cudaEventCreate(&e1));
    std::vector<double> t;
    for (int r = 0; r < 11; ++r) {
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

int main(int argc, char** argv) {
    CK(cudaDeviceGetAttribute(&g_nsm, cudaDevAttrMultiProcessorCount, 0));
    cudaStream_t st;
    CK(cudaStreamCreate(&st));
    const int shapes[][2] = {{4096, 4096}, {11008, 4096}, {18560, 4096}, {1024, 8192}, {4096, 11008},
                             {8192, 8192}, {4096, 8192}, {28672, 8192}};
    const int M = argc > 1 ? atoi(argv[1]) : 16;
    std::mt19937 rng(1);
    printf("h64 harness, M = %d, %d SMs; us per call (graph of 40, median of 9), ABAB\n", M, g_nsm);
    printf("%-12s | %-8s %-8s %-8s %-8s | exact(i32) f16-bitwise\n", "NxK", "ws", "ws+pdl", "h64s8", "h64s12");
    for (auto& sh : shapes) {
        Prob P{};
        P.n = sh[0], P.k = sh[1], P.m = M;
        const int ksteps = (P.k + 127) / 128;
        const size_t wbytes = size_t((P.n + 127) / 128) * ksteps * 16384;
        const int copies = int(std::max<size_t>(2, (128u << 20) / wbytes + 1));
        std::vector<uint32_t> hw(wbytes / 4);
        for (int c = 0; c < copies; ++c) {
            for (auto& b : hw) b = uint32_t(rng());
            uint8_t* d;
            CK(cudaMalloc(&d, wbytes));
            CK(cudaMemcpy(d, hw.data(), wbytes, cudaMemcpyHostToDevice));
            P.w.push_back(d);
        }
        std::vector<int8_t> hx(size_t(P.m) * P.k);
        for (auto& b : hx) b = int8_t(rng());
        CK(cudaMalloc(&P.x, hx.size()));
        CK(cudaMemcpy(P.x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
        std::vector<float> hr(P.m), hc(P.n);
        for (auto& v : hr) v = 1e-3f * float(1 + rng() % 100);
        for (auto& v : hc) v = 1e-3f * float(1 + rng() % 100);
        CK(cudaMalloc(&P.rs, P.m * 4));
        CK(cudaMalloc(&P.cs, P.n * 4));
        CK(cudaMemcpy(P.rs, hr.data(), P.m * 4, cudaMemcpyHostToDevice));
        CK(cudaMemcpy(P.cs, hc.data(), P.n * 4, cudaMemcpyHostToDevice));
        CK(cudaMalloc(&P.y, size_t(P.m) * P.n * 2));
        CK(cudaMalloc(&P.yi, size_t(P.m) * P.n * 4));
        // Correctness: int32 and f16 of every variant against variant 0 on copy 0.
        std::vector<int32_t> ri(size_t(P.m) * P.n), oi(ri.size());
        std::vector<uint16_t> rf(ri.size()), of(ri.size());
        bool ok_i = true, ok_f = true;
        const int vars[4] = {0, 1, 8, 12};
        for (int v : vars) {
            CK(cudaMemset(P.yi, 0x7f, ri.size() * 4));
            CK(cudaMemset(P.y, 0x7f, ri.size() * 2));
            launch(P, 0, false, v, st);
            launch(P, 0, true, v, st);
            CK(cudaStreamSynchronize(st));
            CK(cudaMemcpy(oi.data(), P.yi, oi.size() * 4, cudaMemcpyDeviceToHost));
            CK(cudaMemcpy(of.data(), P.y, of.size() * 2, cudaMemcpyDeviceToHost));
            if (v == 0) {
                ri = oi, rf = of;
            } else {
                ok_i = ok_i && ri == oi;
                ok_f = ok_f && rf == of;
            }
        }
        double best[4] = {1e30, 1e30, 1e30, 1e30};
        for (int rep = 0; rep < 2; ++rep)
            for (int i = 0; i < 4; ++i) best[i] = std::min(best[i], time_variant(P, vars[i], st));
        char name[32];
        snprintf(name, sizeof name, "%dx%d", P.n, P.k);
        printf("%-12s | %8.2f %8.2f %8.2f %8.2f | %s %s\n", name, best[0], best[1], best[2], best[3],
               ok_i ? "yes" : "NO", ok_f ? "yes" : "NO");
        fflush(stdout);
        for (auto d : P.w) CK(cudaFree(d));
        CK(cudaFree(P.x));
        CK(cudaFree(P.rs));
        CK(cudaFree(P.cs));
        CK(cudaFree(P.y));
        CK(cudaFree(P.yi));
    }
    return 0;
}
