// int8 GEMM instances with 4-bit weights expanded to int8 (W4A8): wgmma (sm_90a) for BX in {8, 16, 64, 128},
// mma.sync for BX in {16, 64}. See lowbit/i8_gemm.cuh.
#include "lowbit/i8_gemm.cuh"

cudaError_t lowbit_i8_launch_w4(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st) {
    using namespace lowbit::i8;
    if (wg) {
        LOWBIT_I8_CASE(8, true, true, kBudgetWgSmall)
        LOWBIT_I8_CASE(16, true, true, kBudgetWgSmall)
        LOWBIT_I8_CASE(64, true, true, kBudgetWg)
        LOWBIT_I8_CASE(128, true, true, kBudgetWg)
    } else {
        LOWBIT_I8_CASE(16, true, false, kBudgetMma)
        LOWBIT_I8_CASE(64, true, false, kBudgetMma)
    }
    return cudaErrorInvalidValue;
}
