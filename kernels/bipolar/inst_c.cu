// Bipolar plane-GEMM instances with activation bits [3, 5, 6, 7] (list and rationale: kernels/bipolar/README.md).
// One translation unit per group of P so the instances compile in parallel.
#include "lowbit/bip_gemm.cuh"

cudaError_t lowbit_bip_launch_c(const lowbit::bip::Args& a, int p, int q, int bx, int splits, cudaStream_t st,
                                     int* kc_out) {
    LOWBIT_BIP_CASE(3, 1, 64)
    LOWBIT_BIP_CASE(3, 2, 32)
    LOWBIT_BIP_CASE(3, 1, 8)
    LOWBIT_BIP_CASE(3, 2, 8)
    LOWBIT_BIP_CASE(3, 3, 8)
    LOWBIT_BIP_CASE(3, 4, 8)
    LOWBIT_BIP_CASE(3, 8, 8)
    LOWBIT_BIP_CASE(5, 1, 32)
    LOWBIT_BIP_CASE(6, 1, 32)
    LOWBIT_BIP_CASE(7, 1, 32)
    return cudaErrorInvalidValue;
}
