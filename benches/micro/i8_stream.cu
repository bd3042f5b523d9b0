// Harness of the int8 core's small-M streaming kernel (kernels/int8/stream.cu) through the C ABI
// (lowbit_i8_gemm): every weight format it streams — W8, W4 per-channel, W4 g128, and the bipolar packed codes
// BIP4 and BIP2 (NOTES v10; multiplied as the codes u since v21) — exact int32 vs a CPU reference, then CUDA-event timings
// beside direct cuBLASLt int8 (int32 out) and cuBLAS f16 in the same process. Every op's weights are rotated
// through >= 200 MB of copies (> 3x the 50 MB L2), baselines included.
//
//   bash benches/micro/i8_stream.sh [modes]   (nvcc on the GPU machine, translation units in parallel), or
//   nvcc -O3 -std=c++17 --expt-relaxed-constexpr -gencode=arch=compute_90a,code=sm_90a -Ikernels/include \
//        benches/micro/i8_stream.cu kernels/int8/{i8_launch,stream,inst_w8,inst_w4,ws_gemm,ws_pdl}.cu -o i8_stream -ldl
//   ./i8_stream check     # exactness (odd shapes, forced splits / tile widths, poisoned outputs, bad inputs)
//   ./i8_stream bench     # M = 1, 16 on the issue's shapes
//   ./i8_stream sweep     # forced splits for BIP2 / BIP4 / W4 on the two 28672-wide shapes
//   built with -DLOWBIT_STREAM_PROBE (I8S_PROBE=1 bash benches/micro/i8_stream.sh probe), NOTES v13:
//   ./i8_stream probe     # where a call's time goes: read line, PDL on/off, graph replay, probe flags, per-CTA
//                         # timelines, the v10 plan and forced 256-row CTAs (each exact against the plan)
//   ./i8_stream one w4g128 1 28672 8192   # four calls of one op (ncu -k regex:stream_kernel -c 1 target)
//   ./i8_stream stag      # NOTES v30: the plan under probe-flag variants on the nine bench shapes (I8S_* env; v32:
//                         # I8S_VARIANTS=0,4096 = cooperative split-K finish on / off, I8S_SHAPES, I8S_OPS filters)
//   ./i8_stream ab        # NOTES v22: the library plan with v22's copy / finish vs v21's (probe flags 16, 32), same
//                         # process, int32 equal, stream and graph timings, M = 16 timelines
// Not the bench of record (lowbit-bench is); it exists to iterate with one device call.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <random>
#include <string>
#include <vector>

#include "baselines.cuh"
#include "lowbit/i8_gemm.cuh"
#include "lowbit_kernels.h"

#define CK MICRO_CK  // baselines.cuh
#define ST(...)                                                                                        \
    do {                                                                                               \
        lowbit_status s_ = (__VA_ARGS__);                                                              \
        if (s_.code != LOWBIT_OK) {                                                                    \
            printf("%s:%d %s: status %d cuda %d\n", __FILE__, __LINE__, #__VA_ARGS__, s_.code, s_.cuda_error); \
            exit(1);                                                                                   \
        }                                                                                              \
    } while (0)

static int g_pass = 0, g_fail = 0;
static std::mt19937 g_rng(1234);

// Formats of the harness: the C format plus group length (W4 only, 0 = per-channel).
struct Fmt {
    int format;
    int group;
    const char* name;
};
static const Fmt kW8{LOWBIT_I8_W8, 0, "w8"}, kW4{LOWBIT_I8_W4, 0, "w4"}, kW4g{LOWBIT_I8_W4, 128, "w4g128"},
    kBip4{LOWBIT_I8_BIP4, 0, "bip4"}, kBip2{LOWBIT_I8_BIP2, 0, "bip2"};

// Host weight: codes (W8: int8 value; W4: u = q + 8; BIP: u), group scales, and the int8 value per element.
struct HostW {
    Fmt f;
    int n, k;
    std::vector<uint8_t> tiled;
    std::vector<uint8_t> gs;
    std::vector<int32_t> val;  // effective integer weight (W4: q * gs; BIP: the code u, v21)
};

static int nib_col(int t, int nib) {
    static const int kCol[8] = {0, 1, 4, 5, 2, 3, 6, 7};
    const int j = kCol[nib];
    return j < 4 ? 4 * t + j : 16 + 4 * t + (j - 4);
}

// lowbit-core int8::tile_weight (rows of row_bytes bytes, 16-byte chunks of `stage`-byte block rows).
static std::vector<uint8_t> tile(const std::vector<uint8_t>& rows, int n, int row_bytes, int stage) {
    const int nt = (n + 127) / 128, kt = (row_bytes + stage - 1) / stage;
    std::vector<uint8_t> out(size_t(nt) * kt * 128 * stage, 0);
    for (int bn = 0; bn < nt; ++bn)
        for (int bk = 0; bk < kt; ++bk)
            for (int r = 0; r < 128; ++r) {
                const int row = bn * 128 + r;
                if (row >= n) break;
                for (int c = 0; c < stage / 16; ++c) {
                    const int off = bk * stage + c * 16;
                    if (off >= row_bytes) break;
                    memcpy(&out[(size_t(bn) * kt + bk) * 128 * stage + c * 2048 + (r / 8) * 128 + (r % 8) * 16],
                           &rows[size_t(row) * row_bytes + off], 16);
                }
            }
    return out;
}

// 2-bit stream order (lowbit-core int8::tile_bip2): per 256-column unit, lane t's word c = codes of columns
// 64c + 16t + [0, 16): bits 8b + 2i <-> column 8 (i >> 1) + 4 (i & 1) + b. As row bytes: 64 per unit, chunk t =
// bytes 16t.. (words c = 0..3), then tiled with 64-byte block rows.
static std::vector<uint8_t> pack_bip2_rows(const std::vector<uint8_t>& u, int n, int k) {
    const int units = (k + 255) / 256;
    std::vector<uint8_t> rows(size_t(n) * units * 64, 0);
    for (int r = 0; r < n; ++r)
        for (int un = 0; un < units; ++un)
            for (int t = 0; t < 4; ++t)
                for (int c = 0; c < 4; ++c) {
                    uint32_t w = 0;
                    for (int b = 0; b < 4; ++b)
                        for (int i = 0; i < 4; ++i) {
                            const int col = 256 * un + 64 * c + 16 * t + 8 * (i >> 1) + 4 * (i & 1) + b;
                            const uint32_t code = col < k ? u[size_t(r) * k + col] : 0;
                            w |= code << (8 * b + 2 * i);
                        }
                    memcpy(&rows[size_t(r) * units * 64 + un * 64 + 16 * t + 4 * c], &w, 4);
                }
    return rows;
}

static HostW make_weight(Fmt f, int n, int k) {
    HostW h{f, n, k, {}, {}, std::vector<int32_t>(size_t(n) * k)};
    std::uniform_int_distribution<int> d8(-128, 127), d16(0, 15), d4(0, 3), dg(1, 16);
    if (f.format == LOWBIT_I8_W8) {
        std::vector<uint8_t> rows(size_t(n) * k);
        for (size_t i = 0; i < rows.size(); ++i) {
            const int v = d8(g_rng);
            rows[i] = uint8_t(int8_t(v));
            h.val[i] = v;
        }
        h.tiled = tile(rows, n, k, 128);
    } else if (f.format == LOWBIT_I8_BIP2) {
        std::vector<uint8_t> u(size_t(n) * k);
        for (size_t i = 0; i < u.size(); ++i) u[i] = uint8_t(d4(g_rng)), h.val[i] = u[i];
        h.tiled = tile(pack_bip2_rows(u, n, k), n, (k + 255) / 256 * 64, 64);
    } else {  // W4 / BIP4: pack_w4 words of u
        const int groups = f.group ? k / f.group : 1;
        if (f.group) {
            h.gs.resize(size_t(n) * groups);
            for (auto& g : h.gs) g = uint8_t(dg(g_rng));
        }
        std::vector<uint8_t> u(size_t(n) * k);
        for (int r = 0; r < n; ++r)
            for (int c = 0; c < k; ++c) {
                // W4 with groups: |q * s| <= 128 (the QQQ form); keep q * s in range by the scale.
                int uu = d16(g_rng);
                const int s = f.group ? h.gs[size_t(r) * groups + c / f.group] : 1;
                if (f.format == LOWBIT_I8_W4 && (uu - 8) * s > 127) uu = 8 + 127 / s;
                u[size_t(r) * k + c] = uint8_t(uu);
                h.val[size_t(r) * k + c] = f.format == LOWBIT_I8_W4 ? (uu - 8) * s : uu;
            }
        std::vector<uint8_t> rows(size_t(n) * k / 2);
        for (int r = 0; r < n; ++r)
            for (int b = 0; b < k / 32; ++b)
                for (int t = 0; t < 4; ++t) {
                    uint32_t w = 0;
                    for (int nib = 0; nib < 8; ++nib) w |= uint32_t(u[size_t(r) * k + 32 * b + nib_col(t, nib)]) << (4 * nib);
                    memcpy(&rows[size_t(r) * k / 2 + b * 16 + t * 4], &w, 4);
                }
        h.tiled = tile(rows, n, k / 2, 64);
    }
    return h;
}

struct DevW {
    uint8_t* codes = nullptr;
    uint8_t* gs = nullptr;
    lowbit_i8_weight w{};
};
static DevW upload(const HostW& h) {
    DevW d;
    CK(cudaMalloc(&d.codes, h.tiled.size()));
    CK(cudaMemcpy(d.codes, h.tiled.data(), h.tiled.size(), cudaMemcpyHostToDevice));
    if (!h.gs.empty()) {
        CK(cudaMalloc(&d.gs, h.gs.size()));
        CK(cudaMemcpy(d.gs, h.gs.data(), h.gs.size(), cudaMemcpyHostToDevice));
    }
    d.w = lowbit_i8_weight{h.f.format, h.n, h.k, d.codes, d.gs, h.f.group ? h.f.group : 0};
    return d;
}
static void release(DevW& d) {
    cudaFree(d.codes);
    if (d.gs) cudaFree(d.gs);
}

// One exactness case: int32 output vs the CPU reference, poisoned output, the call repeated (self-cleaning split-K).
static void check_case(Fmt f, int m, int n, int k, int path, int bx, int splits, int nsm = 0) {
    const HostW h = make_weight(f, n, k);
    const int ldx = (k + 16 + 15) / 16 * 16;
    std::vector<int8_t> x(size_t(m) * ldx);
    std::uniform_int_distribution<int> d8(-128, 127);
    for (auto& v : x) v = int8_t(d8(g_rng));
    std::vector<int32_t> ref(size_t(m) * n);
    for (int r = 0; r < m; ++r)
        for (int c = 0; c < n; ++c) {
            int64_t s = 0;
            for (int kk = 0; kk < k; ++kk) s += int64_t(x[size_t(r) * ldx + kk]) * h.val[size_t(c) * k + kk];
            ref[size_t(r) * n + c] = int32_t(s);
        }
    DevW d = upload(h);
    int8_t* dx;
    CK(cudaMalloc(&dx, x.size()));
    CK(cudaMemcpy(dx, x.data(), x.size(), cudaMemcpyHostToDevice));
    const int ldy = n + 3;
    int32_t* y;
    CK(cudaMalloc(&y, size_t(m) * ldy * 4));
    lowbit_i8_config cfg{path, bx, splits};
    const int64_t wsb = lowbit_i8_gemm_workspace_bytes(&d.w, m, &cfg, nsm);
    bool ok = wsb >= 0;
    void* ws = nullptr;
    if (wsb > 0) {
        CK(cudaMalloc(&ws, wsb));
        CK(cudaMemset(ws, 0, wsb));
    }
    lowbit_i8_epilogue e{};
    e.out_dtype = LOWBIT_I8_OUT_I32;
    e.row_scale_value = 1.f;
    int bad = 0;
    for (int rep = 0; rep < 2 && ok; ++rep) {
        CK(cudaMemset(y, 0xAB, size_t(m) * ldy * 4));
        const lowbit_status s = lowbit_i8_gemm(&d.w, dx, ldx, m, &e, y, ldy, ws, wsb, &cfg, nsm, nullptr);
        if (s.code != LOWBIT_OK) {
            printf("  status %d\n", s.code);
            ok = false;
            break;
        }
        CK(cudaDeviceSynchronize());
        std::vector<int32_t> got(size_t(m) * ldy);
        CK(cudaMemcpy(got.data(), y, got.size() * 4, cudaMemcpyDeviceToHost));
        for (int r = 0; r < m; ++r)
            for (int c = 0; c < n; ++c)
                if (got[size_t(r) * ldy + c] != ref[size_t(r) * n + c]) {
                    if (bad++ < 3)
                        printf("  mismatch r=%d c=%d got %d want %d\n", r, c, got[size_t(r) * ldy + c],
                               ref[size_t(r) * n + c]);
                }
        // Columns n .. ldy - 1 keep the poison.
        for (int r = 0; r < m; ++r)
            for (int c = n; c < ldy; ++c)
                if (got[size_t(r) * ldy + c] != int32_t(0xABABABABu)) ++bad;
    }
    if (ok && ws) {  // the workspace is zero again after every call (lowbit_i8_gemm's contract)
        std::vector<uint8_t> hw(wsb);
        CK(cudaMemcpy(hw.data(), ws, wsb, cudaMemcpyDeviceToHost));
        for (uint8_t b : hw)
            if (b) {
                printf("  workspace not zero after the call\n");
                ++bad;
                break;
            }
    }
    ok = ok && bad == 0;
    printf("%s %-6s m=%-2d n=%-5d k=%-5d path=%d bx=%-2d splits=%d nsm=%d ws=%lld\n", ok ? "PASS" : "FAIL", f.name, m, n,
           k, path, bx, splits, nsm, (long long)wsb);
    ok ? ++g_pass : ++g_fail;
    release(d);
    cudaFree(dx);
    cudaFree(y);
    if (ws) cudaFree(ws);
}

// Bad inputs: typed statuses, no launch.
static void check_errors() {
    auto expect = [](const char* what, lowbit_status s, int code) {
        const bool ok = s.code == code;
        printf("%s error %s: got %d want %d\n", ok ? "PASS" : "FAIL", what, s.code, code);
        ok ? ++g_pass : ++g_fail;
    };
    uint8_t* codes;
    CK(cudaMalloc(&codes, 1 << 20));
    int8_t* x;
    CK(cudaMalloc(&x, 1 << 16));
    int32_t* y;
    CK(cudaMalloc(&y, 1 << 20));
    uint8_t* gs;
    CK(cudaMalloc(&gs, 4096));
    lowbit_i8_epilogue e{};
    e.out_dtype = LOWBIT_I8_OUT_I32;
    e.row_scale_value = 1.f;
    lowbit_i8_weight b2{LOWBIT_I8_BIP2, 128, 256, codes, nullptr, 0};
    lowbit_i8_config wg{LOWBIT_I8_PATH_WGMMA, 0, 0}, ws{LOWBIT_I8_PATH_WS, 0, 0};
    expect("bip2 m=17", lowbit_i8_gemm(&b2, x, 256, 17, &e, y, 128, nullptr, 0, nullptr, 0, nullptr), LOWBIT_ERR_NO_KERNEL);
    expect("bip2 wgmma path", lowbit_i8_gemm(&b2, x, 256, 1, &e, y, 128, nullptr, 0, &wg, 0, nullptr), LOWBIT_ERR_NO_KERNEL);
    lowbit_i8_weight b4{LOWBIT_I8_BIP4, 128, 256, codes, nullptr, 0};
    expect("bip4 ws path", lowbit_i8_gemm(&b4, x, 256, 1, &e, y, 128, nullptr, 0, &ws, 0, nullptr), LOWBIT_ERR_NO_KERNEL);
    lowbit_i8_weight b4g{LOWBIT_I8_BIP4, 128, 256, codes, gs, 128};
    expect("bip4 group scales", lowbit_i8_gemm(&b4g, x, 256, 1, &e, y, 128, nullptr, 0, nullptr, 0, nullptr),
           LOWBIT_ERR_INVALID_ARGUMENT);
    lowbit_i8_weight b2k{LOWBIT_I8_BIP2, 128, 240, codes, nullptr, 0};
    expect("bip2 k=240", lowbit_i8_gemm(&b2k, x, 256, 1, &e, y, 128, nullptr, 0, nullptr, 0, nullptr), LOWBIT_ERR_SHAPE);
    lowbit_i8_weight bad{7, 128, 256, codes, nullptr, 0};
    expect("format 7", lowbit_i8_gemm(&bad, x, 256, 1, &e, y, 128, nullptr, 0, nullptr, 0, nullptr),
           LOWBIT_ERR_INVALID_ARGUMENT);
    lowbit_i8_weight b2a{LOWBIT_I8_BIP2, 128, 256, codes + 8, nullptr, 0};
    expect("bip2 misaligned", lowbit_i8_gemm(&b2a, x, 256, 1, &e, y, 128, nullptr, 0, nullptr, 0, nullptr),
           LOWBIT_ERR_ALIGNMENT);
    cudaFree(codes);
    cudaFree(x);
    cudaFree(y);
    cudaFree(gs);
}

static void run_checks() {
    for (Fmt f : {kBip2, kBip4, kW4, kW4g, kW8}) {
        check_case(f, 1, 300, 2048 + 256, 0, 0, 0);
        check_case(f, 7, 129, 640, 0, 0, 0);
        check_case(f, 16, 1000, 1024, 0, 0, 0);
        check_case(f, 13, 4100, 512 + 128 * (f.group ? 0 : 1), 0, 0, 0);
        check_case(f, 3, 77, 8192 + 256, 0, 0, 0);
        check_case(f, 9, 2000, 12288, 0, 0, 0);  // M > 8: 16-row tile, split by the smem budget
        check_case(f, 2, 520, 1536, LOWBIT_I8_PATH_STREAM, 16, 0);
        check_case(f, 5, 513, 2048, LOWBIT_I8_PATH_STREAM, 0, 3);
        check_case(f, 1, 260, 4096, LOWBIT_I8_PATH_STREAM, 8, 5);
    }
    // The plan's 256-row CTAs (SP = 8, NOTES v13), reached on small shapes through a small SM count: split-K over
    // 2 CTAs, strips past the last block row (N = 640: rows 640..767 have no tiled block), N not a multiple of 256.
    for (Fmt f : {kBip2, kBip4, kW4, kW4g, kW8}) {
        check_case(f, 16, 640, 12288, 0, 0, 0, 6);
        check_case(f, 3, 640, 8448 + 128 * (f.format == LOWBIT_I8_BIP2 ? 2 : 0), 0, 0, 0, 6);
        check_case(f, 9, 900, 12288, 0, 0, 0, 8);
        check_case(f, 1, 600, 4096, 0, 0, 0, 3);  // one split, dead strips
        check_case(f, 14, 600, 4096, 0, 0, 0, 3);
    }
    // v22 (chunked activation copy, split-K slabs): M = 9..16 with odd N on forced splits (SP = 4) and on 256-row
    // CTAs split through a small SM count, K ragged against the chunks.
    for (Fmt f : {kBip2, kBip4, kW4, kW4g, kW8}) {
        check_case(f, 11, 777, 8192 + 256, LOWBIT_I8_PATH_STREAM, 0, 5);
        check_case(f, 15, 1001, 16384 + 512, 0, 0, 0, 8);
        check_case(f, 16, 257, 2560, LOWBIT_I8_PATH_STREAM, 0, 3);
        check_case(f, 10, 3000, 3072, LOWBIT_I8_PATH_STREAM, 0, 0);
    }
    // v32 (cooperative split-K finish at M = 9..16): split counts 2 / 3 / 4 / 7 forced (SP = 4, odd N, ragged K) and
    // the 256-row CTAs split through a small SM count; the finish shares uneven (rows x pieces not a multiple of splits).
    for (Fmt f : {kW4g, kW4, kW8, kBip2}) {
        for (int s : {2, 3, 4, 7}) check_case(f, 9 + s, 1000 + 37 * s, 4096 + 512, LOWBIT_I8_PATH_STREAM, 16, s);
        check_case(f, 13, 600, 16384 + 512, 0, 0, 0, 9);   // SP = 8, 3 blocks x 3 splits
        check_case(f, 16, 600, 16384 + 512, 0, 0, 0, 12);  // SP = 8, 3 blocks x 4 splits
        check_case(f, 16, 3000, 3072 + 256, LOWBIT_I8_PATH_STREAM, 0, 7);
    }
    // A split grid beyond one wave (313 tiles x 3 splits): the last-arriver finish by the launcher's rule; under probe
    // flag 8192 the cooperative one, whose waits then time out (the first waves hold only z = 0 / 1 CTAs).
    check_case(kW4g, 12, 40000, 768, LOWBIT_I8_PATH_STREAM, 16, 3);
    check_case(kW8, 16, 40000 + 8, 768, LOWBIT_I8_PATH_STREAM, 16, 3);
    for (Fmt f : {kBip2, kBip4, kW4}) {  // K not a multiple of 128 / 256 (tail units zero-filled)
        check_case(f, 1, 131, 160, 0, 0, 0);
        check_case(f, 4, 250, 32 * 37, 0, 0, 0);
        check_case(f, 16, 64, 32 * 19, LOWBIT_I8_PATH_STREAM, 0, 2);
    }
    // The warp-specialized kernel at M <= 16 (v15: LOWBIT_I8_PATH_WS forced; BX = 64 tiles, split-K by the ws plan on
    // small grids, slab rows past M skipped): odd M / N / K, every W4 scale path, a small SM count (several units per
    // CTA).
    for (Fmt f : {kW8, kW4, kW4g}) {
        check_case(f, 1, 300, 2048 + 256, LOWBIT_I8_PATH_WS, 0, 0);
        check_case(f, 16, 1000, 1024, LOWBIT_I8_PATH_WS, 0, 0);
        check_case(f, 13, 4100, 512, LOWBIT_I8_PATH_WS, 0, 0);
        check_case(f, 5, 77, 8192 + 256, LOWBIT_I8_PATH_WS, 0, 0);
        check_case(f, 9, 2000, 12288, LOWBIT_I8_PATH_WS, 0, 0);
        check_case(f, 16, 640, 12288, LOWBIT_I8_PATH_WS, 0, 0, 6);
    }
    // v25: grouped W4 at M <= 8 on the T orientation, group index by shift (256) or division (384), M = 16 too.
    {
        const Fmt g256{LOWBIT_I8_W4, 256, "w4g256"}, g384{LOWBIT_I8_W4, 384, "w4g384"};
        check_case(g256, 1, 300, 2048, 0, 0, 0);
        check_case(g256, 8, 1000, 4096, LOWBIT_I8_PATH_STREAM, 0, 3);
        check_case(g256, 16, 640, 12288, 0, 0, 0, 6);
        check_case(g384, 3, 520, 3072, 0, 0, 0);
        check_case(g384, 5, 600, 4608, LOWBIT_I8_PATH_STREAM, 0, 3);
        check_case(g384, 16, 1000, 3072, LOWBIT_I8_PATH_STREAM, 0, 2);
        check_case(g384, 1, 640, 12288, 0, 0, 0, 6);
    }
    check_errors();
    printf("checks: %d passed, %d failed\n", g_pass, g_fail);
}

// ------------------------------------------------------------------ baselines and timing: baselines.cuh
using micro::copies_for;
using micro::time_ms;
static float bench_lt(int m, int n, int k) { return micro::bench_lt_int8(m, n, k, 50); }
static float bench_f16(int m, int n, int k) { return micro::bench_cublas_f16(m, n, k, 50); }

// lowbit_i8_gemm with f16 output (per-token and channel scales), rotated weight copies; splits/bx forced when > 0.
// Random tiled bytes of the right size (the timing does not depend on the values; group scales valid).
static HostW bench_weight(Fmt f, int n, int k) {
    HostW h{f, n, k, {}, {}, {}};
    const size_t nt = (n + 127) / 128;
    const size_t bytes = f.format == LOWBIT_I8_W8 ? nt * ((k + 127) / 128) * 16384
                         : f.format == LOWBIT_I8_BIP2 ? nt * ((k + 255) / 256) * 8192
                                                      : nt * ((k + 127) / 128) * 8192;
    h.tiled.resize(bytes);
    uint64_t st = 0x9E3779B97F4A7C15ull ^ bytes;
    for (size_t i = 0; i < bytes; i += 8) {
        st ^= st << 13, st ^= st >> 7, st ^= st << 17;
        memcpy(&h.tiled[i], &st, 8);
    }
    if (f.group) h.gs.assign(size_t(n) * (k / f.group), 3);
    return h;
}

static float bench_lowbit(Fmt f, int m, int n, int k, int path = 0, int bx = 0, int splits = 0) {
    const HostW h = bench_weight(f, n, k);
    const int nc = copies_for(h.tiled.size());
    std::vector<DevW> ds;
    for (int i = 0; i < nc; ++i) ds.push_back(upload(h));
    int8_t* x;
    CK(cudaMalloc(&x, size_t(m) * k));
    CK(cudaMemset(x, 5, size_t(m) * k));
    micro::F16Epilogue fe = micro::f16_epilogue(m, n);
    const lowbit_i8_epilogue& e = fe.e;
    lowbit_i8_config cfg{path, bx, splits};
    const int64_t wsb = lowbit_i8_gemm_workspace_bytes(&ds[0].w, m, &cfg, 0);
    float ms = -1.f;
    if (wsb >= 0) {
        void* ws = nullptr;
        if (wsb) {
            CK(cudaMalloc(&ws, wsb));
            CK(cudaMemset(ws, 0, wsb));
        }
        __half* y;
        CK(cudaMalloc(&y, size_t(m) * n * 2));
        int it = 0;
        ms = time_ms(50, [&] { ST(lowbit_i8_gemm(&ds[it++ % nc].w, x, k, m, &e, y, n, ws, wsb, &cfg, 0, nullptr)); });
        cudaFree(y);
        if (ws) cudaFree(ws);
    }
    for (auto& d : ds) release(d);
    cudaFree(x);
    fe.release();
    return ms;
}

static void run_bench() {
    const int shapes[][2] = {{8192, 28672}, {28672, 8192}, {11008, 4096}, {10576, 2560}, {4096, 4096}};
    printf("N x K | M | lt-int8 us | f16 us | w8 us (x lt) | w8 stream us (x lt) | w4g128 us (x f16, / w8) | w4 us (x f16) | bip4 us (x f16) | "
           "bip2 us (x f16) | bip2 TB/s\n");
    for (auto& s : shapes) {
        const int n = s[0], k = s[1];
        // M = 2, 4, 8 too on the two 28672-wide shapes (the issue's W4A8 / W8A8 ratio shape among them).
        const std::vector<int> ms = (n == 28672 || k == 28672) ? std::vector<int>{1, 2, 4, 8, 16} : std::vector<int>{1, 16};
        for (int m : ms) {
            const float lt = bench_lt(m, n, k), f16 = bench_f16(m, n, k);
            const float w8s = bench_lowbit(kW8, m, n, k, LOWBIT_I8_PATH_STREAM);
            const float w8 = bench_lowbit(kW8, m, n, k), w4g = bench_lowbit(kW4g, m, n, k),
                        w4 = bench_lowbit(kW4, m, n, k), b4 = bench_lowbit(kBip4, m, n, k),
                        b2 = bench_lowbit(kBip2, m, n, k);
            const double b2bytes = double(n) * ((k + 255) / 256 * 64);
            printf("%dx%d | %d | %.1f | %.1f | %.1f (%.2fx) | %.1f (%.2fx) | %.1f (%.2fx, %.2fx) | %.1f (%.2fx) | %.1f (%.2fx) | "
                   "%.1f (%.2fx) | %.2f\n",
                   n, k, m, lt * 1e3, f16 * 1e3, w8 * 1e3, lt / w8, w8s * 1e3, lt / w8s, w4g * 1e3, f16 / w4g, w8 / w4g, w4 * 1e3,
                   f16 / w4, b4 * 1e3, f16 / b4, b2 * 1e3, f16 / b2, b2bytes / (b2 * 1e-3) / 1e12);
            fflush(stdout);
        }
    }
}

// v25 A/B (one binary per kernel build, run alternately): the library plan on the two large shapes.
// QUICK_M16=1: M = 16 on the two large shapes only; otherwise 4096x11008 too and M = 1, 4, 8, 16 (v28).
static void run_quick() {
    const bool m16 = getenv("QUICK_M16") != nullptr;
    const std::vector<std::pair<int, int>> shapes =
        m16 ? std::vector<std::pair<int, int>>{{28672, 8192}, {8192, 28672}}
            : std::vector<std::pair<int, int>>{{28672, 8192}, {8192, 28672}, {4096, 11008}};
    for (auto& s : shapes) {
        const int n = s.first, k = s.second;
        // QUICK_FULL=1: cuBLAS f16 and W8 too (the kernels this build does not change: once per process set).
        const bool full = getenv("QUICK_FULL") != nullptr;
        for (int m : m16 ? std::vector<int>{16} : std::vector<int>{1, 4, 8, 16}) {
            const float f16 = full ? bench_f16(m, n, k) : 1e-9f, w8 = full ? bench_lowbit(kW8, m, n, k) : 1e-9f;
            const float w4g = bench_lowbit(kW4g, m, n, k), w4 = bench_lowbit(kW4, m, n, k);
            printf("quick %dx%d M=%-2d | f16 %.1f | w8 %.1f | w4g128 %.1f (%.2fx f16, %.3fx w8) | w4 %.1f (%.2fx)\n", n, k, m,
                   f16 * 1e3, w8 * 1e3, w4g * 1e3, f16 / w4g, w8 / w4g, w4 * 1e3, f16 / w4);
            fflush(stdout);
        }
    }
}

static void run_sweep() {
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}};
    for (auto& s : shapes) {
        const int n = s[0], k = s[1];
        for (int m : {1, 16}) {
            const float f16 = bench_f16(m, n, k);
            printf("sweep %dx%d M=%d f16 %.1f us:", n, k, m, f16 * 1e3);
            for (Fmt f : {kBip2, kBip4, kW4g}) {
                printf(" | %s", f.name);
                for (int sp : {0, 1, 2, 3, 4, 6}) {
                    const float t = bench_lowbit(f, m, n, k, sp ? LOWBIT_I8_PATH_STREAM : 0, 0, sp);
                    printf(" s%d %.1f (%.2fx)", sp, t * 1e3, f16 / t);
                }
            }
            printf("\n");
            fflush(stdout);
        }
    }
}


#ifdef LOWBIT_STREAM_PROBE
// ------------------------------------------------------------------ probe mode (NOTES v13): where a call's time goes
// Needs stream.cu built with -DLOWBIT_STREAM_PROBE (i8_stream.sh does): probe flags (1 = no MMAs, 2 = no activation
// copy, 4 = no epilogue / split-K finish), a per-CTA globaltimer timeline, PDL on / off, direct launches of a forced
// (sp, splits) instance, CUDA-graph replay, and a plain read kernel over the same weight bytes (the line).
extern "C" void lowbit_i8_stream_probe(int flags, unsigned long long* timeline, int pdl);
cudaError_t lowbit_i8_launch_stream(const lowbit::i8::Args& a, int format, int mt, int sp, int splits, cudaStream_t st);

static unsigned long long* g_tl = nullptr;
constexpr int kTlCtas = 1 << 14;

__global__ void read_kernel(const uint4* __restrict__ p, size_t n16, unsigned* sink) {
    uint32_t acc = 0;
    const size_t stride = size_t(gridDim.x) * blockDim.x;
    size_t i = size_t(blockIdx.x) * blockDim.x + threadIdx.x;
    for (; i + 7 * stride < n16; i += 8 * stride) {
        uint4 v[8];
#pragma unroll
        for (int j = 0; j < 8; ++j) v[j] = lowbit::ld_stream_u4(p + i + j * stride);
#pragma unroll
        for (int j = 0; j < 8; ++j) acc ^= v[j].x ^ v[j].y ^ v[j].z ^ v[j].w;
    }
    for (; i < n16; i += stride) {
        const uint4 v = lowbit::ld_stream_u4(p + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
    if (acc == 0x12345678u) *sink = acc;
}

struct ProbeOp {
    Fmt f;
    int m, n, k;
    std::vector<DevW> ds;
    int nc;
    int8_t* x;
    micro::F16Epilogue fe;
    void* ws = nullptr;
    int64_t wsb = 0;
    __half* y;
    void* ws8 = nullptr;  // direct launches: int32 workspace + counters, zeroed
    cudaStream_t st;
    lowbit_i8_config cfg{0, 0, 0};  // library calls' config (path forced by make_op's `path`)
};

// Direct launches' split-K workspace: slabs [splits][row blocks][M][R] (stream.cu finish_slab) for up to kDirectSplits
// splits of 256- or 128-row CTAs, then the counters.
constexpr int kDirectSplits = 33;
static size_t direct_slab_bytes(int m, int n) { return (size_t(kDirectSplits) * (n + 256) * m * 4 + 255) / 256 * 256; }

static ProbeOp make_op(Fmt f, int m, int n, int k, int path = 0) {
    ProbeOp o{f, m, n, k, {}, 0, nullptr, micro::f16_epilogue(m, n)};
    o.cfg.path = path;
    const HostW h = bench_weight(f, n, k);
    o.nc = copies_for(h.tiled.size());
    for (int i = 0; i < o.nc; ++i) o.ds.push_back(upload(h));
    CK(cudaMalloc(&o.x, size_t(m) * k));
    CK(cudaMemset(o.x, 5, size_t(m) * k));
    o.wsb = lowbit_i8_gemm_workspace_bytes(&o.ds[0].w, m, &o.cfg, 0);
    if (o.wsb > 0) {
        CK(cudaMalloc(&o.ws, o.wsb));
        CK(cudaMemset(o.ws, 0, o.wsb));
    }
    CK(cudaMalloc(&o.y, size_t(m) * n * 4));
    const size_t w8b = direct_slab_bytes(m, n) + 4 * ((n + 31) / 32) + 256;
    CK(cudaMalloc(&o.ws8, w8b));
    CK(cudaMemset(o.ws8, 0, w8b));
    CK(cudaStreamCreateWithFlags(&o.st, cudaStreamNonBlocking));
    return o;
}
static void free_op(ProbeOp& o) {
    for (auto& d : o.ds) release(d);
    cudaFree(o.x);
    o.fe.release();
    if (o.ws) cudaFree(o.ws);
    cudaFree(o.y);
    cudaFree(o.ws8);
    cudaStreamDestroy(o.st);
}

// Library call (the automatic plan) on the op's stream.
static void lib_call(ProbeOp& o, int it, const lowbit_i8_epilogue* e = nullptr, void* y = nullptr) {
    ST(lowbit_i8_gemm(&o.ds[it % o.nc].w, o.x, o.k, o.m, e ? e : &o.fe.e, y ? y : o.y, o.n, o.ws, o.wsb,
                      o.cfg.path ? &o.cfg : nullptr, 0, o.st));
}

// Direct launch of a forced instance (sp, splits; mt = 8 or 16); int32 output when i32.
static void direct_call(ProbeOp& o, int it, int sp, int splits, bool i32 = false, void* y = nullptr) {
    lowbit::i8::Args a{};
    const int unit = o.f.format == LOWBIT_I8_BIP2 ? 2 : 1;
    a.x = o.x, a.ldx = o.k, a.m = o.m, a.w = o.ds[it % o.nc].codes, a.n = o.n, a.k = o.k;
    a.gs = o.ds[it % o.nc].gs;
    a.group_len = a.gs ? o.f.group : o.k;
    a.groups = o.k / a.group_len;
    a.ksteps = (o.k + 128 * unit - 1) / (128 * unit) * unit;
    int sps = (a.ksteps / unit + splits - 1) / splits * unit;
    a.steps_per_split = sps;
    const int real_splits = (a.ksteps + sps - 1) / sps;
    if (real_splits > kDirectSplits) {
        printf("direct_call: %d splits > %d\n", real_splits, kDirectSplits);
        exit(1);
    }
    a.ws = real_splits > 1 ? static_cast<int32_t*>(o.ws8) : nullptr;
    a.counters = real_splits > 1 ? reinterpret_cast<int32_t*>(static_cast<char*>(o.ws8) + direct_slab_bytes(o.m, o.n)) : nullptr;
    const lowbit_i8_epilogue& e = o.fe.e;
    a.epi = lowbit::i8::Epilogue{i32 ? LOWBIT_I8_OUT_I32 : e.out_dtype, e.row_scale, e.row_scale_value, e.col_scale,
                                 e.row_corr, e.col_corr, e.bias, e.out_scale, e.out_scales};
    a.y = y ? y : o.y;
    a.ldy = o.n;
    CK(lowbit_i8_launch_stream(a, o.f.format, o.m <= 8 ? 8 : 16, sp, real_splits, o.st));
}

// ms per call: stream-launched back-to-back, or replayed as a CUDA graph of 20 calls.
static float time_op(ProbeOp& o, const std::function<void(int)>& call, bool graph) {
    int it = 0;
    cudaEvent_t a, b;
    CK(cudaEventCreate(&a));
    CK(cudaEventCreate(&b));
    cudaGraphExec_t ge = nullptr;
    constexpr int kG = 20;
    if (graph) {
        for (int i = 0; i < 3; ++i) call(it++);
        CK(cudaStreamSynchronize(o.st));
        cudaGraph_t gr;
        CK(cudaStreamBeginCapture(o.st, cudaStreamCaptureModeRelaxed));
        for (int i = 0; i < kG; ++i) call(it++);
        CK(cudaStreamEndCapture(o.st, &gr));
        CK(cudaGraphInstantiate(&ge, gr, 0));
        cudaGraphDestroy(gr);
    }
    std::vector<float> ts;
    const int reps = graph ? 5 : 50;
    for (int t = 0; t < 8; ++t) {
        CK(cudaEventRecord(a, o.st));
        for (int i = 0; i < reps; ++i) {
            if (graph) {
                CK(cudaGraphLaunch(ge, o.st));
            } else {
                call(it++);
            }
        }
        CK(cudaEventRecord(b, o.st));
        CK(cudaEventSynchronize(b));
        float ms;
        CK(cudaEventElapsedTime(&ms, a, b));
        if (t) ts.push_back(ms / (reps * (graph ? kG : 1)));
    }
    if (ge) cudaGraphExecDestroy(ge);
    cudaEventDestroy(a);
    cudaEventDestroy(b);
    std::sort(ts.begin(), ts.end());
    return ts[ts.size() / 2];
}

// Timeline of the last of 30 back-to-back calls: summary in microseconds.
static void timeline(ProbeOp& o, const char* label, const std::function<void(int)>& call) {
    CK(cudaMemset(g_tl, 0, size_t(kTlCtas) * 6 * 8));
    CK(cudaDeviceSynchronize());
    for (int i = 0; i < 30; ++i) call(i);
    CK(cudaStreamSynchronize(o.st));
    std::vector<unsigned long long> h(size_t(kTlCtas) * 6);
    CK(cudaMemcpy(h.data(), g_tl, h.size() * 8, cudaMemcpyDeviceToHost));
    std::vector<double> t0, dw, dc, dl, df, te;
    unsigned long long base = ~0ull;
    int sms[1024] = {0};
    for (int c = 0; c < kTlCtas; ++c)
        if (h[6 * c]) base = std::min(base, h[6 * c]);
    for (int c = 0; c < kTlCtas; ++c) {
        const unsigned long long* r = &h[6 * c];
        if (!r[0]) continue;
        t0.push_back((r[0] - base) * 1e-3);
        dw.push_back((r[1] - r[0]) * 1e-3);
        dc.push_back((r[2] - r[1]) * 1e-3);
        dl.push_back((r[3] - r[2]) * 1e-3);
        df.push_back((r[4] - r[3]) * 1e-3);
        te.push_back((r[4] - base) * 1e-3);
        if (r[5] < 1024) sms[r[5]]++;
    }
    if (t0.empty()) return;
    auto q = [](std::vector<double> v, double f) {
        std::sort(v.begin(), v.end());
        return v[std::min(v.size() - 1, size_t(f * v.size()))];
    };
    int nsm = 0, maxc = 0, minc = 1 << 30;
    for (int i = 0; i < 1024; ++i)
        if (sms[i]) ++nsm, maxc = std::max(maxc, sms[i]), minc = std::min(minc, sms[i]);
    printf("  tl %-22s ctas %zu on %d SMs (%d..%d per SM) | start p50 %.1f max %.1f | wait p50 %.1f | xcopy p50 %.1f max %.1f | "
           "loop p10 %.1f p50 %.1f p90 %.1f | finish p50 %.1f max %.1f | end p10 %.1f p50 %.1f p90 %.1f max %.1f us\n",
           label, t0.size(), nsm, minc, maxc, q(t0, .5), q(t0, 1), q(dw, .5), q(dc, .5), q(dc, 1), q(dl, .1), q(dl, .5),
           q(dl, .9), q(df, .5), q(df, 1), q(te, .1), q(te, .5), q(te, .9), q(te, 1));
}

static size_t weight_bytes(const ProbeOp& o) {
    const size_t nt = (o.n + 127) / 128;
    return o.f.format == LOWBIT_I8_W8 ? nt * ((o.k + 127) / 128) * 16384
           : o.f.format == LOWBIT_I8_BIP2 ? nt * ((o.k + 255) / 256) * 8192
                                          : nt * ((o.k + 127) / 128) * 8192;
}

// SP = 8 split: the fewest that fit the activation budget, raised while blocks x splits fits one CTA per SM.
static int sp8_splits(const ProbeOp& o, int nsm) {
    const int unit = o.f.format == LOWBIT_I8_BIP2 ? 2 : 1;
    const int ksteps = (o.k + 128 * unit - 1) / (128 * unit);
    const int mt = o.m <= 8 ? 8 : 16;
    const int budget = 176 * 1024;
    const int pad = (o.f.format == LOWBIT_I8_W4 || o.f.format == LOWBIT_I8_BIP4) ? 16 : 64;
    int maxs = (budget / mt - pad) / 128 / unit;
    const int smin = (ksteps + maxs - 1) / maxs;
    const int blocks = (o.n + 255) / 256;
    int s = smin;
    while (blocks * (s + 1) <= nsm && s + 1 <= ksteps) ++s;
    return s;
}

// The 128-row plan's split as the v10 launcher chose it (fewest waves of 2 CTAs/SM, then the fullest last wave):
// the lowbit_i8_gemm call with this split forced runs SP = 4, the plan before v13.
static int sp4_splits(const ProbeOp& o, int nsm) {
    const int unit = o.f.format == LOWBIT_I8_BIP2 ? 2 : 1;
    const int ksteps = (o.k + 128 * unit - 1) / (128 * unit);
    const int mt = o.m <= 8 ? 8 : 16;
    const int pad = (o.f.format == LOWBIT_I8_W4 || o.f.format == LOWBIT_I8_BIP4) ? 16 : 64;
    int maxs = (80 * 1024 / mt - pad) / 128;
    if (unit == 2) maxs &= ~1;
    maxs /= unit;
    const int smin = (ksteps + maxs - 1) / maxs, ntiles = (o.n + 127) / 128, slots = 2 * nsm;
    const int smax = ksteps < 32 ? ksteps : 32;
    int splits = smin;
    double best = 0;
    long long best_waves = 1ll << 60;
    for (int sp = smin; sp <= (smax > smin ? smax : smin); ++sp) {
        const int per = (ksteps + sp - 1) / sp;
        const long long ctas = (long long)ntiles * ((ksteps + per - 1) / per);
        const long long waves = (ctas + slots - 1) / slots;
        const double eff = double(ctas) / double(waves * slots);
        if (waves < best_waves || (waves == best_waves && eff > best + 0.02)) best = eff, best_waves = waves, splits = sp;
    }
    return std::min(splits, ksteps);
}

static void run_probe(const std::string& mode) {
    int nsm = 0;
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaMalloc(&g_tl, size_t(kTlCtas) * 6 * 8));
    unsigned* sink;
    CK(cudaMalloc(&sink, 4));
    struct Sh {
        int n, k;
    };
    std::vector<Sh> shapes = {{28672, 8192}, {8192, 28672}, {10576, 2560}, {11008, 4096}};
    printf("probe columns (us per call): read = plain read kernel of the weight bytes (4 CTAs/SM); plan = library call "
           "(new plan, PDL at M <= 8), graph = the same replayed as a CUDA graph; pdl0 / pdl2 = PDL off / on; rot = "
           "per-CTA unit rotation; bare = no MMA, no copy, no finish; v10 = the v10 plan (SP = 4, split forced); "
           "sp8 = 256-row CTAs forced\n");
    for (const Sh& sh : shapes) {
        for (int m : {1, 16}) {
            for (Fmt f : {kW8, kW4g, kBip2}) {
                if (f.format == LOWBIT_I8_BIP2 && sh.n != 28672 && sh.k != 28672) continue;
                ProbeOp o = make_op(f, m, sh.n, sh.k);
                const double mb = weight_bytes(o) / 1e6;
                // Exactness of the forced SP = 8 instance and the v10 plan against the library plan (int32 out).
                int32_t *ya, *yb, *yc;
                CK(cudaMalloc(&ya, size_t(m) * sh.n * 4));
                CK(cudaMalloc(&yb, size_t(m) * sh.n * 4));
                CK(cudaMalloc(&yc, size_t(m) * sh.n * 4));
                std::vector<int8_t> hx(size_t(m) * sh.k);
                for (auto& v : hx) v = int8_t(g_rng() % 255 - 127);
                CK(cudaMemcpy(o.x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
                lowbit_i8_epilogue e32{};
                e32.out_dtype = LOWBIT_I8_OUT_I32;
                e32.row_scale_value = 1.f;
                lowbit_i8_stream_probe(0, nullptr, 1);
                const int s8 = sp8_splits(o, nsm), s4 = sp4_splits(o, nsm);
                lowbit_i8_config c4{LOWBIT_I8_PATH_STREAM, 0, s4};
                const int64_t ws4 = lowbit_i8_gemm_workspace_bytes(&o.ds[0].w, m, &c4, 0);
                void* w4b = nullptr;
                if (ws4 > 0) {
                    CK(cudaMalloc(&w4b, ws4));
                    CK(cudaMemset(w4b, 0, ws4));
                }
                auto v10 = [&](int i, const lowbit_i8_epilogue* e, void* y) {
                    ST(lowbit_i8_gemm(&o.ds[i % o.nc].w, o.x, o.k, o.m, e ? e : &o.fe.e, y ? y : o.y, o.n, w4b, ws4, &c4,
                                      0, o.st));
                };
                lib_call(o, 0, &e32, ya);
                direct_call(o, 0, 8, s8, true, yb);
                direct_call(o, 0, 8, s8, true, yb);  // twice: the split-K workspace cleans itself
                v10(0, &e32, yc);
                CK(cudaStreamSynchronize(o.st));
                std::vector<int32_t> a(size_t(m) * sh.n), b(a.size()), c(a.size()), r(a.size());
                lowbit_i8_stream_probe(8, nullptr, 1);  // the rotated unit walk: same sums, another order
                lib_call(o, 0, &e32, yb);
                CK(cudaStreamSynchronize(o.st));
                CK(cudaMemcpy(r.data(), yb, r.size() * 4, cudaMemcpyDeviceToHost));
                lowbit_i8_stream_probe(0, nullptr, 1);
                direct_call(o, 0, 8, s8, true, yb);
                CK(cudaStreamSynchronize(o.st));
                CK(cudaMemcpy(a.data(), ya, a.size() * 4, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(b.data(), yb, b.size() * 4, cudaMemcpyDeviceToHost));
                CK(cudaMemcpy(c.data(), yc, c.size() * 4, cudaMemcpyDeviceToHost));
                const bool same = a == b && a == c && a == r;
                same ? ++g_pass : ++g_fail;
                cudaFree(ya);
                cudaFree(yb);
                cudaFree(yc);
                CK(cudaMemset(o.x, 5, size_t(m) * sh.k));

                auto lib = [&](int i) { lib_call(o, i); };
                auto sp8 = [&](int i) { direct_call(o, i, 8, s8); };
                auto old = [&](int i) { v10(i, nullptr, nullptr); };
                const float rd = time_op(o, [&](int i) {
                    read_kernel<<<nsm * 4, 256, 0, o.st>>>(reinterpret_cast<const uint4*>(o.ds[i % o.nc].codes),
                                                           weight_bytes(o) / 16, sink);
                }, false);
                const float plan = time_op(o, lib, false), graph = time_op(o, lib, true);
                lowbit_i8_stream_probe(0, nullptr, 0);
                const float pdl0 = time_op(o, lib, false);
                lowbit_i8_stream_probe(0, nullptr, 2);
                const float pdl2 = time_op(o, lib, false);
                lowbit_i8_stream_probe(8, nullptr, 1);
                const float rot = time_op(o, lib, false);
                lowbit_i8_stream_probe(7, nullptr, 1);
                const float bare = time_op(o, lib, false);
                lowbit_i8_stream_probe(0, nullptr, 1);
                const float t10 = time_op(o, old, false), t8 = time_op(o, sp8, false);
                printf("probe %dx%d M=%d %-6s %6.1f MB | read %.1f (%.2f TB/s) | plan %.1f (%.2f TB/s) graph %.1f | pdl0 %.1f "
                       "pdl2 %.1f | rot %.1f | bare %.1f | v10 s%d %.1f | sp8 s%d %.1f | exact %s\n",
                       sh.n, sh.k, m, f.name, mb, rd * 1e3, mb / (rd * 1e3), plan * 1e3, mb / (plan * 1e3), graph * 1e3,
                       pdl0 * 1e3, pdl2 * 1e3, rot * 1e3, bare * 1e3, s4, t10 * 1e3, s8, t8 * 1e3, same ? "yes" : "NO");
                if (sh.n == 28672 || sh.k == 28672) {
                    lowbit_i8_stream_probe(0, g_tl, 0);
                    timeline(o, "plan (pdl off)", lib);
                    lowbit_i8_stream_probe(8, g_tl, 0);
                    timeline(o, "plan rot (pdl off)", lib);
                    lowbit_i8_stream_probe(0, g_tl, 0);
                    timeline(o, "v10 (pdl off)", old);
                    lowbit_i8_stream_probe(0, nullptr, 1);
                }
                fflush(stdout);
                if (w4b) cudaFree(w4b);
                free_op(o);
            }
        }
    }
    printf("probe exactness: %d passed, %d failed\n", g_pass, g_fail);
    cudaFree(g_tl);
    cudaFree(sink);
}

// v28's unsplit MT = 16 tile epilogue (flags 0) against the pre-v28 scattered stores (flags 64): f16 and bf16 outputs
// bitwise equal, with 8-byte stores (ldy % 4 == 0), a partial last piece (N % 4 != 0) and the unaligned fallback.
static void check_epi() {
    const int cases[][2] = {{28672, 0}, {28670, 2}, {28670, 0}, {28668, 4}};  // n, ldy - n
    for (auto& c : cases) {
        const int n = c[0], ldy = c[0] + c[1];
        for (Fmt f : {kW4g, kW4}) {
            for (int m : {16, 13}) {
                if (f.group == 0 && m == 13) continue;
                ProbeOp o = make_op(f, m, n, 8192);
                std::vector<int8_t> hx(size_t(m) * o.k);
                for (auto& v : hx) v = int8_t(g_rng() % 255 - 127);
                CK(cudaMemcpy(o.x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
                for (int dt : {LOWBIT_I8_OUT_F16, LOWBIT_I8_OUT_BF16}) {
                    lowbit_i8_epilogue e = o.fe.e;
                    e.out_dtype = dt;
                    const size_t bytes = size_t(m) * ldy * 2;
                    std::vector<uint8_t> got[2];
                    void* y;
                    CK(cudaMalloc(&y, bytes));
                    for (int v = 0; v < 2; ++v) {
                        lowbit_i8_stream_probe(v ? 64 : 0, nullptr, 1);
                        CK(cudaMemset(y, 0xAB, bytes));
                        ST(lowbit_i8_gemm(&o.ds[0].w, o.x, o.k, m, &e, y, ldy, o.ws, o.wsb, nullptr, 0, o.st));
                        CK(cudaStreamSynchronize(o.st));
                        got[v].resize(bytes);
                        CK(cudaMemcpy(got[v].data(), y, bytes, cudaMemcpyDeviceToHost));
                    }
                    lowbit_i8_stream_probe(0, nullptr, 1);
                    cudaFree(y);
                    const bool same = got[0] == got[1];
                    same ? ++g_pass : ++g_fail;
                    printf("epi %s %-6s m=%-2d n=%d ldy=%d %s\n", same ? "PASS" : "FAIL", f.name, m, n, ldy,
                           dt == LOWBIT_I8_OUT_F16 ? "f16" : "bf16");
                }
                free_op(o);
            }
        }
    }
    printf("epi checks: %d passed, %d failed\n", g_pass, g_fail);
}

// v28 (probe build): where the M = 16 time goes on the two large shapes, W4-g128 and W4 per-channel at M = 1 / 16, one
// process: read line, library plan (stream launches, PDL rule), graph replay, and the probes: no MMA (1), no copy (2),
// no finish (4), bare (7), the pre-v28 unsplit epilogue (64, in-process A/B of v28); timelines with PDL off.
static void run_m16() {
    check_epi();
    int nsm = 0;
    CK(cudaDeviceGetAttribute(&nsm, cudaDevAttrMultiProcessorCount, 0));
    CK(cudaMalloc(&g_tl, size_t(kTlCtas) * 6 * 8));
    unsigned* sink;
    CK(cudaMalloc(&sink, 4));
    const int shapes[][2] = {{28672, 8192}, {8192, 28672}};
    for (auto& sh : shapes) {
        for (int m : {16, 1}) {
            for (Fmt f : {kW4g, kW4}) {
                ProbeOp o = make_op(f, m, sh[0], sh[1]);
                const double mb = weight_bytes(o) / 1e6;
                auto lib = [&](int i) { lib_call(o, i); };
                const float rd = time_op(o, [&](int i) {
                    read_kernel<<<nsm * 4, 256, 0, o.st>>>(reinterpret_cast<const uint4*>(o.ds[i % o.nc].codes),
                                                           weight_bytes(o) / 16, sink);
                }, false);
                float t[8];
                const int fl[8] = {0, 64, 1, 2, 4, 7, 0, 64};
                for (int v = 0; v < 8; ++v) {
                    lowbit_i8_stream_probe(fl[v], nullptr, 1);
                    t[v] = time_op(o, lib, v >= 6);
                }
                lowbit_i8_stream_probe(0, nullptr, 1);
                printf("m16 %dx%d M=%-2d %-6s %6.1f MB | read %.1f | plan %.1f old-epi %.1f | graph %.1f old-epi %.1f | "
                       "noMMA %.1f nocopy %.1f nofin %.1f bare %.1f\n",
                       sh[0], sh[1], m, f.name, mb, rd * 1e3, t[0] * 1e3, t[1] * 1e3, t[6] * 1e3, t[7] * 1e3, t[2] * 1e3,
                       t[3] * 1e3, t[4] * 1e3, t[5] * 1e3);
                if (f.group) {
                    lowbit_i8_stream_probe(0, g_tl, 0);
                    timeline(o, "plan (pdl off)", lib);
                    lowbit_i8_stream_probe(64, g_tl, 0);
                    timeline(o, "old-epi (pdl off)", lib);
                    lowbit_i8_stream_probe(0, nullptr, 1);
                }
                fflush(stdout);
                free_op(o);
            }
        }
    }
    cudaFree(g_tl);
    cudaFree(sink);
}

// v22 A/B (NOTES v22): the library plan with v22's chunked activation copy and split-K slabs (probe flags 0) against
// v21's up-front copy and red.global finish (48), and each v21 half alone (16 = v21 copy, 32 = v21 finish), same
// process, same weights, same workspace; the int32 results of all four equal; stream launches and graph replay;
// timelines of the M = 16 W4-g128 calls on the two 28672-wide shapes.
static void run_ab() {
    CK(cudaMalloc(&g_tl, size_t(kTlCtas) * 6 * 8));
    struct Sh {
        int n, k;
        std::vector<int> ms;
    };
    const std::vector<Sh> shapes = {{8192, 28672, {16, 9, 1}}, {28672, 8192, {16, 9, 1}}, {11008, 4096, {16, 1}},
                                    {10576, 2560, {16, 1}},    {4096, 4096, {16, 1}}};
    printf("ab columns (us per call): v22 = flags 0, v21 = flags 48 (both halves old), c21 = v21 copy only (16), "
           "f21 = v21 finish only (32); g = graph replay of 20 calls; x f16 = cuBLAS f16 / v22\n");
    for (const Sh& sh : shapes) {
        for (int m : sh.ms) {
            const float f16 = bench_f16(m, sh.n, sh.k), lt = bench_lt(m, sh.n, sh.k);
            printf("ab %dx%d M=%d | cuBLASLt int8 %.1f | cuBLAS f16 %.1f\n", sh.n, sh.k, m, lt * 1e3, f16 * 1e3);
            for (Fmt f : {kW4g, kW4, kW8, kBip2}) {
                ProbeOp o = make_op(f, m, sh.n, sh.k);
                // Exactness: int32 of the four variants equal (random activations, twice through one workspace).
                std::vector<int8_t> hx(size_t(m) * sh.k);
                for (auto& v : hx) v = int8_t(g_rng() % 255 - 127);
                CK(cudaMemcpy(o.x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
                lowbit_i8_epilogue e32{};
                e32.out_dtype = LOWBIT_I8_OUT_I32;
                e32.row_scale_value = 1.f;
                int32_t* yi;
                CK(cudaMalloc(&yi, size_t(m) * sh.n * 4));
                std::vector<int32_t> ref, got(size_t(m) * sh.n);
                bool same = true;
                for (int fl : {0, 48, 16, 32, 0}) {
                    lowbit_i8_stream_probe(fl, nullptr, 1);
                    CK(cudaMemsetAsync(yi, 0xAB, size_t(m) * sh.n * 4, o.st));
                    lib_call(o, 1, &e32, yi);
                    CK(cudaStreamSynchronize(o.st));
                    CK(cudaMemcpy(got.data(), yi, got.size() * 4, cudaMemcpyDeviceToHost));
                    if (ref.empty()) {
                        ref = got;
                    } else {
                        same = same && got == ref;
                    }
                }
                same ? ++g_pass : ++g_fail;
                cudaFree(yi);
                CK(cudaMemset(o.x, 5, size_t(m) * sh.k));
                auto lib = [&](int i) { lib_call(o, i); };
                float t[4], g[2];
                const int fl[4] = {0, 48, 16, 32};
                for (int v = 0; v < 4; ++v) {
                    lowbit_i8_stream_probe(fl[v], nullptr, 1);
                    t[v] = time_op(o, lib, false);
                    if (v < 2) g[v] = time_op(o, lib, true);
                }
                // A second v22 timing after the others: the run-to-run spread of one configuration.
                lowbit_i8_stream_probe(0, nullptr, 1);
                const float t0b = time_op(o, lib, false);
                printf("ab %dx%d M=%-2d %-6s | v22 %.1f (again %.1f) g %.1f | v21 %.1f g %.1f | c21 %.1f | f21 %.1f | "
                       "v22/v21 %.3f g %.3f | x f16 %.2f | exact %s\n",
                       sh.n, sh.k, m, f.name, t[0] * 1e3, t0b * 1e3, g[0] * 1e3, t[1] * 1e3, g[1] * 1e3, t[2] * 1e3,
                       t[3] * 1e3, t[0] / t[1], g[0] / g[1], f16 / t[0], same ? "yes" : "NO");
                if (m == 16 && f.format == LOWBIT_I8_W4 && f.group && (sh.n == 28672 || sh.k == 28672)) {
                    lowbit_i8_stream_probe(0, g_tl, 0);
                    timeline(o, "v22 (pdl off)", lib);
                    lowbit_i8_stream_probe(48, g_tl, 0);
                    timeline(o, "v21 (pdl off)", lib);
                }
                lowbit_i8_stream_probe(0, nullptr, 1);
                fflush(stdout);
                free_op(o);
            }
        }
    }
    printf("ab exactness: %d passed, %d failed\n", g_pass, g_fail);
    cudaFree(g_tl);
}

// NOTES v30: the library plan under probe flag variants (I8S_VARIANTS, default 0,512: 512 = the multicast activation
// copy off; v30's call 1 timed the since-removed flags 128 = staggered walk and 256 = every chunk before the weights)
// on the nine bench shapes at M = 1, 8, 16 (I8S_MS): W4-g128 and W8 (plan), and W8 forced onto the streaming kernel at
// M = 16 (variants at M = 16 only). int32 of every variant equal to the first one's (random activations); two
// stream-launched timings per variant (interleaved rounds), one graph replay at M = 16. With main's stream.cu (which
// ignores the flags) I8S_VARIANTS=0 gives the baseline. I8S_BASE=1: cuBLASLt int8 and cuBLAS f16 per point too.
static void run_stag() {
    std::vector<int> vars;
    {
        const char* v = getenv("I8S_VARIANTS");
        std::string sv = v ? v : "0,512";
        size_t pos = 0;
        while (pos <= sv.size()) {
            const size_t c = sv.find(',', pos);
            vars.push_back(atoi(sv.substr(pos, c == std::string::npos ? std::string::npos : c - pos).c_str()));
            if (c == std::string::npos) break;
            pos = c + 1;
        }
    }
    std::vector<int> ms = {1, 8, 16};
    if (const char* e = getenv("I8S_MS")) {
        ms.clear();
        for (const char* q = e; *q;) {
            ms.push_back(atoi(q));
            while (*q && *q != ',') ++q;
            if (*q) ++q;
        }
    }
    const bool base = getenv("I8S_BASE") != nullptr;
    const int shapes[][2] = {{4096, 4096},  {11008, 4096}, {4096, 11008}, {8192, 8192}, {1024, 8192},
                             {28672, 8192}, {8192, 28672}, {18560, 4096}, {4096, 8192}};
    // I8S_SHAPES (e.g. "8192x28672,4096x11008"): only these of the nine; I8S_OPS (e.g. "w4g128,w8-stream"): only these ops.
    const char* only_shapes = getenv("I8S_SHAPES");
    const char* only_ops = getenv("I8S_OPS");
    for (auto& sh : shapes) {
        const int n = sh[0], k = sh[1];
        if (only_shapes && !strstr(only_shapes, (std::to_string(n) + "x" + std::to_string(k)).c_str())) continue;
        for (int m : ms) {
            if (base) {
                printf("stag %dx%d M=%-2d base | cuBLASLt int8 %.1f | cuBLAS f16 %.1f\n", n, k, m, bench_lt(m, n, k) * 1e3,
                       bench_f16(m, n, k) * 1e3);
            }
            struct OpDef {
                Fmt f;
                int path;
                const char* name;
            };
            std::vector<OpDef> ops = {{kW4g, 0, "w4g128"}, {kW8, 0, "w8"}};
            if (m > 8) ops.push_back({kW8, LOWBIT_I8_PATH_STREAM, "w8-stream"});
            for (const OpDef& od : ops) {
                if (only_ops && !strstr((std::string(",") + only_ops + ",").c_str(), (std::string(",") + od.name + ",").c_str())) continue;
                ProbeOp o = make_op(od.f, m, n, k, od.path);
                const std::vector<int> vv = m > 8 ? vars : std::vector<int>{vars[0]};
                std::vector<int8_t> hx(size_t(m) * k);
                for (auto& v : hx) v = int8_t(g_rng() % 255 - 127);
                CK(cudaMemcpy(o.x, hx.data(), hx.size(), cudaMemcpyHostToDevice));
                lowbit_i8_epilogue e32{};
                e32.out_dtype = LOWBIT_I8_OUT_I32;
                e32.row_scale_value = 1.f;
                int32_t* yi;
                CK(cudaMalloc(&yi, size_t(m) * n * 4));
                std::vector<int32_t> ref, got(size_t(m) * n);
                bool same = true;
                for (int rep = 0; rep < 2; ++rep) {
                    for (int fl : vv) {
                        lowbit_i8_stream_probe(fl, nullptr, 1);
                        CK(cudaMemsetAsync(yi, 0xAB, size_t(m) * n * 4, o.st));
                        lib_call(o, rep, &e32, yi);
                        CK(cudaStreamSynchronize(o.st));
                        CK(cudaMemcpy(got.data(), yi, got.size() * 4, cudaMemcpyDeviceToHost));
                        if (ref.empty()) {
                            ref = got;
                        } else {
                            same = same && got == ref;
                        }
                    }
                }
                same ? ++g_pass : ++g_fail;
                cudaFree(yi);
                CK(cudaMemset(o.x, 5, size_t(m) * k));
                auto lib = [&](int i) { lib_call(o, i); };
                std::vector<float> t1(vv.size()), t2(vv.size()), tg(vv.size(), 0.f);
                for (size_t v = 0; v < vv.size(); ++v) {
                    lowbit_i8_stream_probe(vv[v], nullptr, 1);
                    t1[v] = time_op(o, lib, false);
                }
                for (size_t v = 0; v < vv.size(); ++v) {
                    lowbit_i8_stream_probe(vv[v], nullptr, 1);
                    t2[v] = time_op(o, lib, false);
                    if (m > 8) tg[v] = time_op(o, lib, true);
                }
                printf("stag %dx%d M=%-2d %-9s", n, k, m, od.name);
                for (size_t v = 0; v < vv.size(); ++v)
                    printf(" | f%d %.1f %.1f g %.1f", vv[v], t1[v] * 1e3, t2[v] * 1e3, tg[v] * 1e3);
                printf(" | exact %s\n", same ? "yes" : "NO");
                lowbit_i8_stream_probe(0, nullptr, 1);
                fflush(stdout);
                free_op(o);
            }
        }
    }
    printf("stag exactness: %d passed, %d failed\n", g_pass, g_fail);
}

// One op, a few calls (for ncu -k regex:stream_kernel -c 1): one <w8|w4g128|bip2> m n k
static void run_one(int argc, char** argv) {
    const std::string fn = argv[2];
    const Fmt f = fn == "w8" ? kW8 : fn == "w4" ? kW4 : fn == "bip2" ? kBip2 : kW4g;
    ProbeOp o = make_op(f, atoi(argv[3]), atoi(argv[4]), atoi(argv[5]));
    lowbit_i8_stream_probe(0, nullptr, 0);
    for (int i = 0; i < 4; ++i) lib_call(o, i);
    CK(cudaStreamSynchronize(o.st));
    free_op(o);
}

#endif  // LOWBIT_STREAM_PROBE

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "check";
    cudaDeviceProp prop;
    CK(cudaGetDeviceProperties(&prop, 0));
    printf("device: %s, %d SMs\n", prop.name, prop.multiProcessorCount);
#ifdef LOWBIT_STREAM_PROBE
    // I8S_FLAGS: probe flags for every library call of the other modes (e.g. `check` of a variant, NOTES v30).
    if (const char* fl = getenv("I8S_FLAGS")) lowbit_i8_stream_probe(atoi(fl), nullptr, 1);
#endif
    if (mode.find("check") != std::string::npos) run_checks();
    if (mode.find("bench") != std::string::npos) run_bench();
    if (mode.find("sweep") != std::string::npos) run_sweep();
    if (mode.find("quick") != std::string::npos) run_quick();
#ifdef LOWBIT_STREAM_PROBE
    if (mode.find("probe") != std::string::npos) run_probe(mode);
    if (mode.find("ab") != std::string::npos) run_ab();
    if (mode.find("m16") != std::string::npos) run_m16();
    if (mode.find("stag") != std::string::npos) run_stag();
    if (mode == "one") run_one(argc, argv);
#endif
    return g_fail ? 1 : 0;
}
