// Weight-only GEMM instances for one format (every output type and m-tile; mma.sync and wgmma paths): see lowbit/wo_gemm.cuh.
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_wgmma.cuh"
#include "lowbit/wo_s2.cuh"
#include "lowbit/wo_s2m.cuh"

LOWBIT_WO_INSTANTIATE(int4, lowbit::wo::Int4)
LOWBIT_WO_INSTANTIATE_WGMMA(int4, lowbit::wo::Int4)

// S2 (lowbit/wo_s2.cuh, NOTES.md v19): config 0 = P 4 / 2 blocks per SM, 1 = P 3 / 3 blocks per SM; + 2 = warp-staged
// prologue. a.kw from the plan (wo_launch.cu s2_choice).
cudaError_t lowbit_wo_s2_int4(const lowbit::wo::Args& a, int dtype, int config, cudaStream_t s) {
    using namespace lowbit::wo;
    if (dtype == 0) {
        switch (config) {
            case 0: return launch_s2<__half, 4, 2>(a, s);
            case 1: return launch_s2<__half, 3, 3>(a, s);
            case 2: return launch_s2<__half, 4, 2, true>(a, s);
            default: return launch_s2<__half, 3, 3, true>(a, s);
        }
    }
    switch (config) {
        case 0: return launch_s2<__nv_bfloat16, 4, 2>(a, s);
        case 1: return launch_s2<__nv_bfloat16, 3, 3>(a, s);
        case 2: return launch_s2<__nv_bfloat16, 4, 2, true>(a, s);
        default: return launch_s2<__nv_bfloat16, 3, 3, true>(a, s);
    }
}

// S2M (lowbit/wo_s2m.cuh, NOTES.md v20; only with LOWBIT_WO_S2M): config 0 = 8 warps x 2 strips (256 rows), P 4, 2 blocks
// per SM; 1 = 16 warps x 2 strips (512 rows), P 4, 1 block per SM. a.kw / a.steps_per_split from the plan
// (wo_launch.cu s2m_choice); splits > 1: a.ws is the zeroed f32 workspace and the caller converts.
cudaError_t lowbit_wo_s2m_int4(const lowbit::wo::Args& a, int dtype, int config, int splits, cudaStream_t s) {
    using namespace lowbit::wo;
    if (dtype == 0) return config == 0 ? launch_s2m<__half, 4, 2, 8>(a, splits, s) : launch_s2m<__half, 4, 1, 16>(a, splits, s);
    return config == 0 ? launch_s2m<__nv_bfloat16, 4, 2, 8>(a, splits, s) : launch_s2m<__nv_bfloat16, 4, 1, 16>(a, splits, s);
}
