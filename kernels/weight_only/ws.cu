// Weight-only warp-specialized persistent GEMM (lowbit/wo_ws.cuh): the INT4 instances and their launcher,
// which builds X's tensor map (TMA, 128-byte swizzle) and picks the activation tile BX.
#include <cuda.h>
#include <cuda_runtime.h>

#include "lowbit/tma_host.h"
#include "lowbit/wo_ws.cuh"

namespace {

// X[m][ldx] of 16-bit elements as a 2-D tensor {K, M} with a {64, bx} box and 128-byte swizzle (the copy engine
// zero-fills rows >= M and columns >= K). The bit pattern is copied as is, so f16 serves bf16 too.
cudaError_t make_xmap(CUtensorMap& map, const lowbit::wo::Args& a, int bx) {
    return lowbit::tma::make_2d_sw128(map, CU_TENSOR_MAP_DATA_TYPE_FLOAT16, a.x, uint64_t(a.m), uint64_t(a.k),
                                      uint64_t(a.ldx) * 2, uint32_t(bx), uint32_t(lowbit::wows::kBK));
}

template <typename T, int BX>
cudaError_t launch_t(const lowbit::wo::Args& a, int nsm, cudaStream_t st) {
    CUtensorMap map;
    const cudaError_t e = make_xmap(map, a, BX);
    if (e != cudaSuccess) return e;
    return lowbit::wows::launch<lowbit::wo::Int4, T, BX>(a, map, nsm, st);
}

template <typename T>
cudaError_t launch_bx(const lowbit::wo::Args& a, int bx, int nsm, cudaStream_t st) {
    if (bx == 64) return launch_t<T, 64>(a, nsm, st);
    if (bx == 128) return launch_t<T, 128>(a, nsm, st);
    return launch_t<T, 256>(a, nsm, st);
}

}  // namespace

// Activation tile of the ws kernel: the largest BX in {256, 128, 64}, but no larger than the smallest one that
// holds M, whose tile count reaches half the SMs (measured on an H100, kernels/weight_only/NOTES.md ws v1:
// M = 256 picks 256 on 28672x8192 and 11008x4096, 128 on 8192x28672, each the fastest of the three there;
// M = 64 picks 64: a 256-row tile for 64 rows costs 2.3x, 318 vs 141 us on 28672x8192).
int lowbit_wo_ws_bx(int m, int strips, int nsm) {
    const int64_t nt = (strips + lowbit::wows::kStrips - 1) / lowbit::wows::kStrips;
    for (int bx = m <= 64 ? 64 : m <= 128 ? 128 : 256; bx > 64; bx /= 2) {
        if (nt * ((m + bx - 1) / bx) * 2 >= nsm) return bx;
    }
    return 64;
}

// INT4 ws launch; dtype 0 = f16, 1 = bf16; bx 64, 128 or 256 (0 = lowbit_wo_ws_bx). nsm < 0 asks only
// whether the kernel was compiled for sm_90a (cudaSuccess if so).
cudaError_t lowbit_wo_ws_int4(const lowbit::wo::Args& a, int dtype, int bx, int nsm, cudaStream_t st) {
    using lowbit::wows::available;
    if (nsm < 0) {
        const bool ok = dtype == 0 ? available<lowbit::wo::Int4, __half, 128>()
                                   : available<lowbit::wo::Int4, __nv_bfloat16, 128>();
        return ok ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    }
    if (bx == 0) bx = lowbit_wo_ws_bx(a.m, a.strips, nsm);
    if (bx != 64 && bx != 128 && bx != 256) return cudaErrorInvalidValue;
    return dtype == 0 ? launch_bx<__half>(a, bx, nsm, st) : launch_bx<__nv_bfloat16>(a, bx, nsm, st);
}
