// Warp-specialized persistent int8 GEMM (W8A8 and W4A8, large M, sm_90a): the instances (BX = 64, 128, 256
// activation rows per tile, W8 and W4 weights) and their launchers. See lowbit/i8_ws_gemm.cuh for the algorithm.
//
// The activation tensor map is encoded per call on the host (lowbit/tma_host.h: cuTensorMapEncodeTiled through
// the runtime's driver entry point, no -lcuda) and passed by value as a __grid_constant__ kernel parameter.
#include <cuda.h>
#include <cuda_runtime.h>

#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/tma_host.h"

// Automatic rasterization group: 4 activation tiles (measured best of {none, 16 MB of panels, 4} at M >= 1024 on
// 4096x4096, 28672x8192, 8192x28672 for BX = 128 and 256, H100; NOTES.md v5).
int lowbit_i8_ws_group(int m, int k, int bx) {
    (void)m, (void)k, (void)bx;
    return 4;
}

namespace {

// X [m, k] int8 row-major (ldx bytes per row), box = BX rows x 128 bytes, 128-byte swizzle, zero fill.
cudaError_t make_xmap(CUtensorMap& map, const lowbit::i8::Args& a, int bx) {
    return lowbit::tma::make_2d_sw128(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, a.x, uint64_t(a.m), uint64_t(a.k),
                                      uint64_t(a.ldx), uint32_t(bx), uint32_t(lowbit::i8::kBK));
}

template <int BX, bool W4, bool W4S = false>
cudaError_t launch(const lowbit::i8::Args& a, int nsm, int group, cudaStream_t st) {
    using namespace lowbit::i8ws;
    if (nsm < 0) return available<BX, W4, W4S>() ? cudaSuccess : cudaErrorNoKernelImageForDevice;
    CUtensorMap map;
    cudaError_t e = make_xmap(map, a, BX);
    if (e != cudaSuccess) return e;
    constexpr int smem = Geo<BX, W4, W4S>::kSmem;
    e = cudaFuncSetAttribute(ws_kernel<BX, W4, W4S>, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    const int64_t tiles = int64_t((a.n + kBW - 1) / kBW) * ((a.m + BX - 1) / BX);
    const int grid = int(tiles < nsm ? tiles : nsm);
    ws_kernel<BX, W4, W4S><<<grid, kThreads, smem, st>>>(a, map, group);
    return cudaGetLastError();
}

}  // namespace

// bx: activation rows per tile (64, 128 or 256); nsm: CTAs (one per SM); nsm < 0 only asks whether the instance
// exists for this device (cudaSuccess); group: activation tiles per rasterization group (<= 0: automatic).
// W8 weights only, no split-K (a.ws is ignored).
cudaError_t lowbit_i8_launch_ws(const lowbit::i8::Args& a, int bx, int nsm, int group, cudaStream_t st) {
    if (group <= 0) group = lowbit_i8_ws_group(a.m, a.k, bx);
    if (bx == 64) return launch<64, false>(a, nsm, group, st);
    if (bx == 128) return launch<128, false>(a, nsm, group, st);
    if (bx == 256) return launch<256, false>(a, nsm, group, st);
    return cudaErrorInvalidValue;
}

// W4A8 (4-bit codes in the tiled pack_w4 layout, integer group scales a.gs or nullptr): as lowbit_i8_launch_ws.
// K % 32 == 0 and a.group_len % 32 == 0 (a 32-column k-block never straddles two groups), else
// cudaErrorInvalidValue.
// smem = true: the expanded block goes through shared memory (wgmma with A from shared memory) instead of the
// register-A wgmma (both measured, NOTES.md v9; smem = false needs LOWBIT_I8_WS_W4_REGA at build time).
cudaError_t lowbit_i8_launch_ws_w4(const lowbit::i8::Args& a, int bx, int nsm, int group, bool smem, cudaStream_t st) {
    if (a.k % 32 != 0 || (a.gs != nullptr && (a.group_len <= 0 || a.group_len % 32 != 0))) return cudaErrorInvalidValue;
    if (group <= 0) group = lowbit_i8_ws_group(a.m, a.k, bx);
    if (smem) {
        if (bx == 64) return launch<64, true, true>(a, nsm, group, st);
        if (bx == 128) return launch<128, true, true>(a, nsm, group, st);
        if (bx == 256) return launch<256, true, true>(a, nsm, group, st);
        return cudaErrorInvalidValue;
    }
#ifdef LOWBIT_I8_WS_W4_REGA
    // The register-A variant: built only for the harness (benches/micro/i8_ws.cu with -DLOWBIT_I8_WS_W4_REGA), the
    // library plans never take it (ptxas C7513 serializes its wgmmas; 4-8% slower at BX 256, equal otherwise).
    if (bx == 64) return launch<64, true>(a, nsm, group, st);
    if (bx == 128) return launch<128, true>(a, nsm, group, st);
    if (bx == 256) return launch<256, true>(a, nsm, group, st);
#endif
    return cudaErrorInvalidValue;
}
