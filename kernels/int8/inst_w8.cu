// int8 GEMM instances with int8 weights (W8A8): wgmma (sm_90a) for BX in {8, 16, 64, 128, 256}, mma.sync for
// BX in {16, 64}. See lowbit/i8_gemm.cuh.
#include "lowbit/i8_gemm.cuh"

cudaError_t lowbit_i8_launch_w8(const lowbit::i8::Args& a, int wg, int bx, int splits, cudaStream_t st) {
    using namespace lowbit::i8;
    if (wg) {
        LOWBIT_I8_CASE(8, false, true, kBudgetWgSmall)
        LOWBIT_I8_CASE(16, false, true, kBudgetWgSmall)
        LOWBIT_I8_CASE(64, false, true, kBudgetWg)
        LOWBIT_I8_CASE(128, false, true, kBudgetWg)
        LOWBIT_I8_CASE(256, false, true, kBudgetWg)
    } else {
        LOWBIT_I8_CASE(16, false, false, kBudgetMma)
        LOWBIT_I8_CASE(64, false, false, kBudgetMma)
    }
    return cudaErrorInvalidValue;
}
