// Bipolar plane-GEMM instances with activation bits [1] (list and rationale: kernels/bipolar/README.md).
// One translation unit per group of P so the instances compile in parallel.
#include "lowbit/bip_gemm.cuh"

cudaError_t lowbit_bip_launch_a(const lowbit::bip::Args& a, int p, int q, int bx, int splits, cudaStream_t st,
                                     int* kc_out) {
    LOWBIT_BIP_CASE(1, 1, 256)
    LOWBIT_BIP_CASE(1, 2, 128)
    LOWBIT_BIP_CASE(1, 3, 64)
    LOWBIT_BIP_CASE(1, 4, 64)
    LOWBIT_BIP_CASE(1, 5, 32)
    LOWBIT_BIP_CASE(1, 6, 32)
    LOWBIT_BIP_CASE(1, 7, 32)
    LOWBIT_BIP_CASE(1, 8, 32)
    LOWBIT_BIP_CASE(1, 1, 8)
    LOWBIT_BIP_CASE(1, 2, 8)
    LOWBIT_BIP_CASE(1, 3, 8)
    LOWBIT_BIP_CASE(1, 4, 8)
    LOWBIT_BIP_CASE(1, 8, 8)
    return cudaErrorInvalidValue;
}
