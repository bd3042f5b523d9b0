// Harness of the warp-specialized W4A8 GEMM (lowbit/i8_ws_gemm.cuh with W4 = true; kernels/int8/ws_gemm.cu,
// sm_90a): exact int32 against a CPU reference (Wq = q * s) on odd shapes for both expansion variants (register-A
// wgmma, shared-memory int8 block) and every BX, then CUDA-event timing on 4096x4096, 28672x8192, 8192x28672
// (group 128) beside the v4 W4 wgmma tile kernel (BX 128, no split), whose int32 output every timed point must
// equal. Weights are not rotated, short bursts (boost clock): not the bench of record.
//
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        -DLOWBIT_I8_WS_W4_REGA benches/micro/i8_ws_w4.cu kernels/int8/ws_gemm.cu kernels/int8/inst_w4.cu -o /tmp/i8_ws_w4
//   /tmp/i8_ws_w4 [quick]
#include <cuda_runtime.h>

#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "lowbit/i8_gemm.cuh"

cudaError_t lowbit_i8_launch_w4(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st);
cudaError_t lowbit_i8_launch_ws_w4(const lowbit::i8::Args& a, int bx, int nsm, int group, bool smem, cudaStream_t st);

#define CK(x)                                                                                  \
    do {                                                                                       \
        cudaError_t e_ = (x);                                                                  \
        if (e_ != cudaSuccess) {                                                               \
            printf("CUDA error %s at %s:%d\n", cudaGetErrorString(e_), __FILE__, __LINE__); \
            exit(1);                                                                           \
        }                                                                                      \
    } while (0)

// lowbit-core int8::w4_column / pack_w4 / tile_weight (w4 = true).
static int w4_column(int t, int nib) {
    static const int col[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    const int j = col[nib];
    return j < 4 ? 4 * t + j : 16 + 4 * t + (j - 4);
}

static std::vector<uint8_t> pack_tile(const std::vector<int8_t>& q, int n, int k) {
    const int rb = k / 2;
    std::vector<uint8_t> rows(size_t(n) * rb);
    for (int r = 0; r < n; ++r)
        for (int b = 0; b < k / 32; ++b)
            for (int t = 0; t < 4; ++t) {
                uint32_t w = 0;
                for (int nib = 0; nib < 8; ++nib)
                    w |= uint32_t(q[size_t(r) * k + 32 * b + w4_column(t, nib)] + 8) << (4 * nib);
                memcpy(&rows[size_t(r) * rb + b * 16 + t * 4], &w, 4);
            }
    const int nt = (n + 127) / 128, kt = (k + 127) / 128;
    std::vector<uint8_t> out(size_t(nt) * kt * 8192, 0);
    for (int bn = 0; bn < nt; ++bn)
        for (int bk = 0; bk < kt; ++bk)
            for (int r = 0; r < 128; ++r) {
                const int row = bn * 128 + r;
                if (row >= n) break;
                for (int c = 0; c < 4; ++c) {
                    const int off = bk * 64 + c * 16;
                    if (off >= rb) break;
                    memcpy(&out[size_t(bn * kt + bk) * 8192 + c * 2048 + (r / 8) * 128 + (r % 8) * 16],
                           &rows[size_t(row) * rb + off], 16);
                }
            }
    return out;
}

struct Problem {
    int m, n, k, ldx, glen;  // glen 0: per-channel (no group scales)
    int8_t* dx;
    uint8_t *dw, *dgs;
    std::vector<int8_t> x, wq;  // wq = q * s (int8)
};

static Problem make(int m, int n, int k, int ldx, int glen, unsigned seed) {
    Problem p{m, n, k, ldx, glen, nullptr, nullptr, nullptr, {}, {}};
    std::mt19937 rng(seed);
    p.x.assign(size_t(m) * ldx, 0);
    for (int i = 0; i < m; ++i)
        for (int j = 0; j < k; ++j) p.x[size_t(i) * ldx + j] = int8_t(int(rng() % 255) - 127);
    std::vector<int8_t> q(size_t(n) * k);
    for (auto& v : q) v = int8_t(int(rng() % 16) - 8);
    const int groups = glen ? k / glen : 1;
    std::vector<uint8_t> gs(size_t(n) * groups, 1);
    if (glen)
        for (auto& s : gs) s = uint8_t(1 + rng() % 16);
    p.wq.resize(q.size());
    for (int r = 0; r < n; ++r)
        for (int c = 0; c < k; ++c)
            p.wq[size_t(r) * k + c] = int8_t(q[size_t(r) * k + c] * (glen ? gs[size_t(r) * groups + c / glen] : 1));
    auto t = pack_tile(q, n, k);
    CK(cudaMalloc(&p.dx, p.x.size()));
    CK(cudaMalloc(&p.dw, t.size()));
    CK(cudaMemcpy(p.dx, p.x.data(), p.x.size(), cudaMemcpyHostToDevice));
    CK(cudaMemcpy(p.dw, t.data(), t.size(), cudaMemcpyHostToDevice));
    if (glen) {
        CK(cudaMalloc(&p.dgs, gs.size()));
        CK(cudaMemcpy(p.dgs, gs.data(), gs.size(), cudaMemcpyHostToDevice));
    }
    return p;
}

static void release(Problem& p) {
    cudaFree(p.dx);
    cudaFree(p.dw);
    if (p.dgs) cudaFree(p.dgs);
}

static lowbit::i8::Args args(const Problem& p, void* y) {
    lowbit::i8::Args a{};
    a.x = p.dx;
    a.ldx = p.ldx;
    a.m = p.m;
    a.w = p.dw;
    a.n = p.n;
    a.k = p.k;
    a.gs = p.dgs;
    a.group_len = p.glen ? p.glen : p.k;
    a.groups = p.glen ? p.k / p.glen : 1;
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
                    const int8_t* wr = &p.wq[size_t(j) * p.k];
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
    // m, n, k, ldx, group_len (0 = per-channel)
    const int shapes[][5] = {{129, 300, 2080, 2080, 160}, {333, 77, 256, 272, 128}, {1000, 1000, 1024, 1040, 0},
                             {257, 4100, 512, 512, 64},     {7, 129, 160, 160, 32},    {1000, 131, 4096, 4096, 128}};
    for (auto& s : shapes) {
        Problem p = make(s[0], s[1], s[2], s[3], s[4], 1234 + s[0]);
        auto want = cpu_ref(p);
        const size_t bytes = size_t(p.m) * p.n * 4;
        int32_t* dy;
        CK(cudaMalloc(&dy, bytes));
        for (int smem = 0; smem < 2; ++smem)
            for (int bx : {64, 128, 256}) {
                CK(cudaMemset(dy, 0x7F, bytes));
                cudaError_t e = lowbit_i8_launch_ws_w4(args(p, dy), bx, nsm(), 0, smem, nullptr);
                char name[160];
                snprintf(name, sizeof name, "ws-w4 %s bx=%d m=%d n=%d k=%d ldx=%d group=%d", smem ? "smem" : "regA", bx,
                         s[0], s[1], s[2], s[3], s[4]);
                if (e != cudaSuccess) {
                    printf("FAIL launch %s: %s\n", name, cudaGetErrorString(e));
                    ++fails;
                    continue;
                }
                CK(cudaDeviceSynchronize());
                std::vector<int32_t> got(size_t(p.m) * p.n);
                CK(cudaMemcpy(got.data(), dy, bytes, cudaMemcpyDeviceToHost));
                fails += compare(name, got, want, p.n);
            }
        cudaFree(dy);
        release(p);
    }
    // A group length the kernel refuses (not a multiple of 32).
    {
        Problem p = make(300, 200, 256, 256, 128, 5);
        auto a = args(p, nullptr);
        a.group_len = 48;
        const bool refused = lowbit_i8_launch_ws_w4(a, 128, nsm(), 0, false, nullptr) == cudaErrorInvalidValue;
        printf("%s group_len 48 refused\n", refused ? "ok  " : "FAIL");
        fails += refused ? 0 : 1;
        release(p);
    }
    fflush(stdout);
    if (quick) {
        printf(fails ? "FAILURES: %d\n" : "ALL OK\n", fails);
        return fails ? 1 : 0;
    }
    const int big[][2] = {{4096, 4096}, {28672, 8192}, {8192, 28672}};
    for (auto& nk : big) {
        for (int m : {256, 512, 1024, 2048, 4096}) {
            Problem p = make(m, nk[0], nk[1], nk[1], 128, 99 + m);
            const size_t bytes = size_t(m) * p.n * 4;
            int32_t *y0, *y1;
            CK(cudaMalloc(&y0, bytes));
            CK(cudaMalloc(&y1, bytes));
            const double ops = 2.0 * m * double(p.n) * p.k;
            auto a0 = args(p, y0);
            const int iters = ops > 1e12 ? 10 : 30;
            float t0 = time_us([&] { lowbit_i8_launch_w4(a0, 1, 128, 1, nullptr); }, iters);
            CK(cudaGetLastError());
            std::vector<int32_t> want(size_t(m) * p.n), got(size_t(m) * p.n);
            CK(cudaMemcpy(want.data(), y0, bytes, cudaMemcpyDeviceToHost));
            printf("n=%5d k=%5d m=%4d  w4 wgmma-v4 bx128: %9.1f us %6.0f TOPS\n", p.n, p.k, m, t0, ops / t0 * 1e-6);
            for (int smem = 0; smem < 2; ++smem)
                for (int bx : {64, 128, 256}) {
                    if (bx == 64 && m > 512) continue;
                    CK(cudaMemset(y1, 0x7F, bytes));
                    auto a1 = args(p, y1);
                    const int sms = nsm();
                    float t1 = time_us([&] { lowbit_i8_launch_ws_w4(a1, bx, sms, 0, smem, nullptr); }, iters);
                    CK(cudaGetLastError());
                    CK(cudaMemcpy(got.data(), y1, bytes, cudaMemcpyDeviceToHost));
                    char name[160];
                    snprintf(name, sizeof name, "ws-w4 %s bx=%d n=%d k=%d m=%d: %9.1f us %6.0f TOPS (%.2fx v4)",
                             smem ? "smem" : "regA", bx, p.n, p.k, m, t1, ops / t1 * 1e-6, t0 / t1);
                    fails += compare(name, got, want, p.n);
                }
            fflush(stdout);
            cudaFree(y0);
            cudaFree(y1);
            release(p);
        }
    }
    printf(fails ? "FAILURES: %d\n" : "ALL OK\n", fails);
    return fails ? 1 : 0;
}
