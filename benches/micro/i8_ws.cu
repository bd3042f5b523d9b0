// Harness of the warp-specialized int8 GEMM (lowbit/i8_ws_gemm.cuh, kernels/int8/ws_gemm.cu; W8A8, sm_90a):
// exact int32 against a CPU reference on odd shapes (every BX), then CUDA-event timing on 4096x4096,
// 28672x8192, 8192x28672 at M = 64 ... 4096 beside the v4 wgmma tile kernel (BX 128, no split), whose int32
// output every timed point must equal. Weights are not rotated and the calls are short bursts (boost clock):
// not the bench of record (lowbit-bench int8 --path ws is, against cuBLASLt int8).
//
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        benches/micro/i8_ws.cu kernels/int8/ws_gemm.cu kernels/int8/inst_w8.cu -o /tmp/i8_ws
//   /tmp/i8_ws            # correctness + sweep (BX 64/128/256, rasterization group none/auto/4)
//   /tmp/i8_ws quick      # correctness only
//   /tmp/i8_ws epi        # int32 vs fused f16 epilogue (per-token + channel scales) at the automatic config
//   /tmp/i8_ws sustain    # 28672x8192 M = 4096 for ~1.5 s per output type (power-capped clock)
#include <cuda_runtime.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <random>
#include <thread>
#include <vector>

#include "lowbit/i8_gemm.cuh"

cudaError_t lowbit_i8_launch_w8(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st);
cudaError_t lowbit_i8_launch_ws(const lowbit::i8::Args& a, int bx, int nsm, int group, cudaStream_t st);

#define CK(x)                                                                                   \
    do {                                                                                        \
        cudaError_t e_ = (x);                                                                   \
        if (e_ != cudaSuccess) {                                                                \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__);  \
            exit(1);                                                                            \
        }                                                                                       \
    } while (0)

static std::vector<uint8_t> tile(const std::vector<int8_t>& w, int n, int k) {
    const int nt = (n + 127) / 128, kt = (k + 127) / 128;
    std::vector<uint8_t> out(size_t(nt) * kt * 16384, 0);
    for (int bn = 0; bn < nt; ++bn)
        for (int bk = 0; bk < kt; ++bk)
            for (int r = 0; r < 128; ++r) {
                const int row = bn * 128 + r;
                if (row >= n) break;
                for (int c = 0; c < 8; ++c) {
                    const int off = bk * 128 + c * 16;
                    if (off >= k) break;
                    memcpy(&out[size_t(bn * kt + bk) * 16384 + c * 2048 + (r / 8) * 128 + (r % 8) * 16],
                           &w[size_t(row) * k + off], 16);
                }
            }
    return out;
}

struct Problem {
    int m, n, k, ldx;
    int8_t* dx;
    uint8_t* dw;
    std::vector<int8_t> x, w;
};

static Problem make(int m, int n, int k, int ldx, unsigned seed) {
    Problem p{m, n, k, ldx, nullptr, nullptr, {}, {}};
    std::mt19937 rng(seed);
    p.x.assign(size_t(m) * ldx, 0);
    p.w.assign(size_t(n) * k, 0);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < k; ++j) p.x[size_t(i) * ldx + j] = int8_t(int(rng() % 255) - 127);
    for (auto& v : p.w) v = int8_t(int(rng() % 255) - 127);
    auto t = tile(p.w, n, k);
    CK(cudaMalloc(&p.dx, p.x.size()));
    CK(cudaMalloc(&p.dw, t.size()));
    CK(cudaMemcpy(p.dx, p.x.data(), p.x.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p.dw, t.data(), t.size(), cudaMemcpyHostToDevice));
    return p;
}

static lowbit::i8::Args args(const Problem& p, void* y) {
    lowbit::i8::Args a{};
    a.x = p.dx;
    a.ldx = p.ldx;
    a.m = p.m;
    a.w = p.dw;
    a.n = p.n;
    a.k = p.k;
    a.group_len = p.k;
    a.groups = 1;
    a.ksteps = (p.k + 127) / 128;
    a.steps_per_split = a.ksteps;
    a.epi.out = lowbit::i8::kOutI32;
    a.epi.rs_val = 1.f;
    a.y = y;
    a.ldy = p.n;
    return a;
}

static std::vector<int32_t> cpu_ref(const Problem& p) {
    std::vector<int32_t> r(size_t(p.m) * p.n);
    const int nth = std::max(1u, std::thread::hardware_concurrency());
    std::vector<std::thread> th;
    for (int t = 0; t < nth; ++t)
        th.emplace_back([&, t] {
            for (int i = t; i < p.m; i += nth)
                for (int j = 0; j < p.n; ++j) {
                    int32_t s = 0;
                    const int8_t* xr = &p.x[size_t(i) * p.ldx];
                    const int8_t* wr = &p.w[size_t(j) * p.k];
                    for (int q = 0; q < p.k; ++q) s += int32_t(xr[q]) * int32_t(wr[q]);
                    r[size_t(i) * p.n + j] = s;
                }
        });
    for (auto& x : th) x.join();
    return r;
}

static int nsm() {
    int d = 0, n = 0;
    cudaGetDevice(&d);
    cudaDeviceGetAttribute(&n, cudaDevAttrMultiProcessorCount, d);
    return n;
}

static bool run_ws(const Problem& p, int bx, std::vector<int32_t>& out) {
    int32_t* dy;
    const size_t bytes = size_t(p.m) * p.n * 4;
    CK(cudaMalloc(&dy, bytes));
    CK(cudaMemset(dy, 0x7F, bytes));
    cudaError_t e = lowbit_i8_launch_ws(args(p, dy), bx, nsm(), 0, nullptr);
    if (e != cudaSuccess) {
        printf("launch ws bx=%d: %s\n", bx, cudaGetErrorString(e));
        return false;
    }
    e = cudaDeviceSynchronize();
    if (e != cudaSuccess) {
        printf("run ws bx=%d: %s\n", bx, cudaGetErrorString(e));
        exit(1);
    }
    out.resize(size_t(p.m) * p.n);
    CK(cudaMemcpy(out.data(), dy, bytes, cudaMemcpyDeviceToHost));
    CK(cudaFree(dy));
    return true;
}

static int compare(const char* what, const std::vector<int32_t>& got, const std::vector<int32_t>& want, int n) {
    size_t bad = 0, first = SIZE_MAX;
    for (size_t i = 0; i < want.size(); ++i)
        if (got[i] != want[i]) {
            if (first == SIZE_MAX) first = i;
            ++bad;
        }
    if (bad) {
        printf("FAIL %s: %zu of %zu differ, first m=%zu n=%zu got %d want %d\n", what, bad, want.size(), first / n,
               first % n, got[first], want[first]);
        return 1;
    }
    printf("ok   %s\n", what);
    return 0;
}

template <typename F>
static float time_us(F f, int iters) {
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    for (int i = 0; i < 3; ++i) f();
    CK(cudaDeviceSynchronize());
    CK(cudaEventRecord(a));
    for (int i = 0; i < iters; ++i) f();
    CK(cudaEventRecord(b));
    CK(cudaEventSynchronize(b));
    float ms = 0;
    CK(cudaEventElapsedTime(&ms, a, b));
    return ms * 1000.f / iters;
}

int main(int argc, char** argv) {
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device %s, %d SMs\n", prop.name, prop.multiProcessorCount);
    int fails = 0;
    const bool quick = argc > 1 && strcmp(argv[1], "quick") == 0;
    if (argc > 1 && (strcmp(argv[1], "epi") == 0 || strcmp(argv[1], "sustain") == 0)) {
        const bool sustain = strcmp(argv[1], "sustain") == 0;
        const int big[][2] = {{4096, 4096}, {28672, 8192}, {8192, 28672}};
        for (auto& nk : big) {
            for (int m : {256, 4096}) {
                if (sustain && !(nk[0] == 28672 && m == 4096)) continue;
                Problem p = make(m, nk[0], nk[1], nk[1], 7 + m);
                int32_t* y;
                CK(cudaMalloc(&y, size_t(m) * p.n * 4));
                float *rs, *cs;
                CK(cudaMalloc(&rs, m * 4));
                CK(cudaMalloc(&cs, p.n * 4));
                std::vector<float> ones(std::max(m, p.n), 1e-3f);
                CK(cudaMemcpy(rs, ones.data(), m * 4, cudaMemcpyHostToDevice));
                CK(cudaMemcpy(cs, ones.data(), p.n * 4, cudaMemcpyHostToDevice));
                const double ops = 2.0 * m * double(p.n) * p.k;
                const int sms = nsm();
                const int bx = m <= 256 ? (nk[0] == 28672 ? 256 : (nk[0] == 8192 ? 128 : 64)) : 256;
                for (int out : {lowbit::i8::kOutI32, lowbit::i8::kOutF16}) {
                    auto a = args(p, y);
                    a.epi.out = out;
                    if (out == lowbit::i8::kOutF16) a.epi.rs = rs, a.epi.cs = cs;
                    if (!sustain) {
                        float t = time_us([&] { lowbit_i8_launch_ws(a, bx, sms, 4, nullptr); }, ops > 1e12 ? 10 : 50);
                        printf("epi out=%s n=%d k=%d m=%d bx=%d: %8.1f us %6.0f TOPS\n", out == 0 ? "f16" : "i32", p.n, p.k,
                               m, bx, t, ops / t * 1e-6);
                    } else {
                        for (int chunk = 0; chunk < 12; ++chunk) {
                            float t = time_us([&] { lowbit_i8_launch_ws(a, bx, sms, 4, nullptr); }, 100);
                            printf("sustain out=%s chunk %d: %8.1f us %6.0f TOPS\n", out == 0 ? "f16" : "i32", chunk, t,
                                   ops / t * 1e-6);
                            fflush(stdout);
                        }
                    }
                }
                fflush(stdout);
                cudaFree(y);
                cudaFree(rs);
                cudaFree(cs);
                cudaFree(p.dx);
                cudaFree(p.dw);
            }
        }
        return 0;
    }
    // Correctness vs CPU.
    const int shapes[][4] = {{129, 300, 2080, 2080}, {333, 77, 256, 272}, {1000, 1000, 1040, 1040},
                             {4099, 131, 144, 160},  {7, 129, 160, 160},  {257, 4100, 528, 528},
                             {512, 512, 4096, 4096}};
    for (auto& s : shapes) {
        Problem p = make(s[0], s[1], s[2], s[3], 1234 + s[0]);
        auto want = cpu_ref(p);
        for (int bx : {64, 128, 256}) {
            std::vector<int32_t> got;
            char name[128];
            snprintf(name, sizeof name, "ws bx=%d m=%d n=%d k=%d ldx=%d", bx, s[0], s[1], s[2], s[3]);
            if (!run_ws(p, bx, got)) {
                ++fails;
                continue;
            }
            fails += compare(name, got, want, p.n);
        }
        cudaFree(p.dx);
        cudaFree(p.dw);
    }
    fflush(stdout);
    if (quick) return fails ? 1 : 0;
    // Timing: ws (bx 128, 256) vs the existing wgmma kernel (bx 128, no split), exact comparison between them.
    const int big[][2] = {{4096, 4096}, {28672, 8192}, {8192, 28672}};
    for (auto& nk : big) {
        for (int m : {64, 128, 256, 512, 1024, 2048, 4096}) {
            Problem p = make(m, nk[0], nk[1], nk[1], 99 + m);
            const size_t bytes = size_t(m) * p.n * 4;
            int32_t *y0, *y1;
            CK(cudaMalloc(&y0, bytes));
            CK(cudaMalloc(&y1, bytes));
            const double ops = 2.0 * m * double(p.n) * p.k;
            auto a0 = args(p, y0);
            const int iters = ops > 1e12 ? 10 : 30;
            float t0 = time_us([&] { lowbit_i8_launch_w8(a0, 1, 128, 1, nullptr); }, iters);
            CK(cudaGetLastError());
            std::vector<int32_t> want(size_t(m) * p.n), got(size_t(m) * p.n);
            CK(cudaMemcpy(want.data(), y0, bytes, cudaMemcpyDeviceToHost));
            printf("n=%5d k=%5d m=%4d  wgmma-v4 bx128: %9.1f us %6.0f TOPS\n", p.n, p.k, m, t0, ops / t0 * 1e-6);
            for (int bx : {64, 128, 256}) {
                if (bx == 64 && m > 512) continue;
                for (int group : {1 << 30, 0, 4}) {
                    if (group == 0 && m <= bx) continue;
                    if (group != (1 << 30) && group != 0 && group >= (m + bx - 1) / bx) continue;
                    CK(cudaMemset(y1, 0x7F, bytes));
                    auto a1 = args(p, y1);
                    const int sms = nsm();
                    float t1 = time_us([&] { lowbit_i8_launch_ws(a1, bx, sms, group, nullptr); }, iters);
                    CK(cudaGetLastError());
                    CK(cudaMemcpy(got.data(), y1, bytes, cudaMemcpyDeviceToHost));
                    char name[160];
                    snprintf(name, sizeof name, "ws bx=%d group=%s n=%d k=%d m=%d: %9.1f us %6.0f TOPS (%.2fx v4)", bx,
                             group == (1 << 30) ? "none" : group == 0 ? "auto" : std::to_string(group).c_str(), p.n,
                             p.k, m, t1, ops / t1 * 1e-6, t0 / t1);
                    fails += compare(name, got, want, p.n);
                }
            }
            fflush(stdout);
            cudaFree(y0);
            cudaFree(y1);
            cudaFree(p.dx);
            cudaFree(p.dw);
        }
    }
    printf(fails ? "FAILURES: %d\n" : "ALL OK\n", fails);
    return fails ? 1 : 0;
}
