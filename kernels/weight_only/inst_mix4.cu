// Weight-only GEMM instances for one format (every output type and m-tile; mma.sync and wgmma paths): see lowbit/wo_gemm.cuh.
// BitMoD FP4 with the arithmetic decoder (lowbit/wo_decode.cuh Mix4: bit placement + one special-value patch, no table).
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_wgmma.cuh"

LOWBIT_WO_INSTANTIATE(mix4, lowbit::wo::Mix4)
LOWBIT_WO_INSTANTIATE_WGMMA(mix4, lowbit::wo::Mix4)
