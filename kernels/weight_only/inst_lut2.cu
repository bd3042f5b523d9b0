// Weight-only GEMM instances for one format (every output type and m-tile): see lowbit/wo_gemm.cuh.
#include "lowbit/wo_gemm.cuh"

LOWBIT_WO_INSTANTIATE(lut2, lowbit::wo::Lut<2>)
