// Weight-only GEMM instances for one format (every output type and m-tile; mma.sync and wgmma paths): see lowbit/wo_gemm.cuh.
// BitMoD FP3 with the byte-permute decoder (lowbit/wo_decode.cuh Mix3: per-group table registers, no shared-memory table).
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_wgmma.cuh"

LOWBIT_WO_INSTANTIATE(mix3, lowbit::wo::Mix3)
LOWBIT_WO_INSTANTIATE_WGMMA(mix3, lowbit::wo::Mix3)
