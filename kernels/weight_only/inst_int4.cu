// Weight-only GEMM instances for one format (every output type and m-tile; mma.sync and wgmma paths): see lowbit/wo_gemm.cuh.
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_wgmma.cuh"
#include "lowbit/wo_s2.cuh"

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
