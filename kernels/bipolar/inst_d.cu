// Bipolar plane-GEMM instances with activation bits [4, 8] (list and rationale: kernels/bipolar/README.md).
// One translation unit per group of P so the instances compile in parallel.
#include "lowbit/bip_gemm.cuh"

cudaError_t lowbit_bip_launch_d(const lowbit::bip::Args& a, int p, int q, int bx, int splits, cudaStream_t st,
                                     int* kc_out) {
    LOWBIT_BIP_CASE(4, 1, 64)
    LOWBIT_BIP_CASE(4, 2, 32)
    LOWBIT_BIP_CASE(4, 1, 8)
    LOWBIT_BIP_CASE(4, 2, 8)
    LOWBIT_BIP_CASE(4, 3, 8)
    LOWBIT_BIP_CASE(4, 4, 8)
    LOWBIT_BIP_CASE(4, 8, 8)
    LOWBIT_BIP_CASE(8, 1, 32)
    LOWBIT_BIP_CASE(8, 1, 8)
    LOWBIT_BIP_CASE(8, 2, 8)
    LOWBIT_BIP_CASE(8, 3, 8)
    LOWBIT_BIP_CASE(8, 4, 8)
    return cudaErrorInvalidValue;
}
