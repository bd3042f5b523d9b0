// Weight-only GEMM instances for one format (every output type and m-tile; streaming, mma.sync and wgmma paths): see lowbit/wo_stream.cuh, lowbit/wo_gemm.cuh, lowbit/wo_wgmma.cuh.
#include "lowbit/wo_gemm.cuh"
#include "lowbit/wo_stream.cuh"
#include "lowbit/wo_wgmma.cuh"

LOWBIT_WO_INSTANTIATE(int8, lowbit::wo::Int8)
LOWBIT_WO_INSTANTIATE_WGMMA(int8, lowbit::wo::Int8)
LOWBIT_WO_INSTANTIATE_STREAM(int8, lowbit::wo::Int8)
