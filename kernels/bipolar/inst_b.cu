// Bipolar plane-GEMM instances with activation bits [2] (list and rationale: kernels/bipolar/README.md).
// One translation unit per group of P so the instances compile in parallel.
#include "lowbit/bip_gemm.cuh"

cudaError_t lowbit_bip_launch_b(const lowbit::bip::Args& a, int p, int q, int bx, int splits, cudaStream_t st,
                                     int* kc_out) {
    LOWBIT_BIP_CASE(2, 1, 128)
    LOWBIT_BIP_CASE(2, 2, 64)
    LOWBIT_BIP_CASE(2, 3, 32)
    LOWBIT_BIP_CASE(2, 4, 32)
    LOWBIT_BIP_CASE(2, 1, 8)
    LOWBIT_BIP_CASE(2, 2, 8)
    LOWBIT_BIP_CASE(2, 3, 8)
    LOWBIT_BIP_CASE(2, 4, 8)
    LOWBIT_BIP_CASE(2, 8, 8)
    return cudaErrorInvalidValue;
}
