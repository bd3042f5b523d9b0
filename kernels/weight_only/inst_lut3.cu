// Weight-only GEMM instances for one format (every output type and m-tile; mma.sync and wgmma paths): see lowbit/wo_gemm.cuh.
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_wgmma.cuh"

LOWBIT_WO_INSTANTIATE(lut3, lowbit::wo::Lut<3>)
LOWBIT_WO_INSTANTIATE_WGMMA(lut3, lowbit::wo::Lut<3>)
