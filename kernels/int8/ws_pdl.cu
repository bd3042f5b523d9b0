// The programmatic-dependent-launch instances of the warp-specialized int8 GEMM (lowbit/i8_ws_gemm.cuh ws_kernel with
// PDL = true: griddepcontrol.wait / launch_dependents and the L2 prefetch of the first weight stages, NOTES v24) and
// their launch. v26 (NOTES v26): in their own instances, so that every launch without PDL (unsplit grids, M >= 1024)
// runs the kernel without that code, as before v24; in their own translation unit, so they build beside ws_gemm.cu.
// The plan and the checks stay in ws_gemm.cu, which calls lowbit_i8_ws_launch_pdl for the PDL launches.
#include <cuda.h>
#include <cuda_runtime.h>

#include "lowbit/i8_ws_gemm.cuh"
#include "lowbit/launch.cuh"

namespace {

template <int BX, bool W4>
cudaError_t launch_pdl(const lowbit::i8::Args& a, const CUtensorMap& map, const CUtensorMap& ymap, int flags,
                       int group, unsigned grid, unsigned cluster, cudaStream_t st) {
    using namespace lowbit::i8ws;
    // W4: the shared-memory expansion (W4S), the only W4 form the library launches.
    constexpr int smem = Geo<BX, W4, W4>::kSmem;
    auto kern = ws_kernel<BX, W4, W4, false, true>;
    const cudaError_t e = cudaFuncSetAttribute(kern, cudaFuncAttributeMaxDynamicSharedMemorySize, smem);
    if (e != cudaSuccess) return e;
    lowbit::LaunchEx cfg(dim3(grid), dim3(kThreads), smem, st);
    if (cluster > 1) cfg.cluster_x(cluster);
    return cfg.pdl(true).launch(kern, a, map, ymap, flags | 128, group);
}

}  // namespace

// ws_kernel<bx, w4, w4, false, true> launched with the PDL attribute (kernels/int8/ws_gemm.cu decides when): grid CTAs,
// clusters of `cluster` CTAs along x when cluster > 1 (v20's cluster split-K), flags | 128 (the L2 prefetch).
cudaError_t lowbit_i8_ws_launch_pdl(const lowbit::i8::Args& a, int bx, bool w4, const CUtensorMap& map,
                                    const CUtensorMap& ymap, int flags, int group, unsigned grid, unsigned cluster,
                                    cudaStream_t st) {
    if (w4) {
        if (bx == 64) return launch_pdl<64, true>(a, map, ymap, flags, group, grid, cluster, st);
        if (bx == 128) return launch_pdl<128, true>(a, map, ymap, flags, group, grid, cluster, st);
        if (bx == 256) return launch_pdl<256, true>(a, map, ymap, flags, group, grid, cluster, st);
    } else {
        if (bx == 64) return launch_pdl<64, false>(a, map, ymap, flags, group, grid, cluster, st);
        if (bx == 128) return launch_pdl<128, false>(a, map, ymap, flags, group, grid, cluster, st);
        if (bx == 256) return launch_pdl<256, false>(a, map, ymap, flags, group, grid, cluster, st);
    }
    return cudaErrorInvalidValue;
}
