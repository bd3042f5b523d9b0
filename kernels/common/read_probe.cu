// kernels/common/read_probe.cu: the card's HBM read bandwidth, measured by a read-only streaming kernel.
//
// Why: the weight-only issue asks for "≥ 80% of the card's HBM read bandwidth" at M = 1. The spec peak (3352 GB/s
// on an H100 SXM) is not reachable by any kernel and a device-to-device copy mixes reads and writes, so the bench
// measures what a pure read kernel achieves on the same card in the same run and reports both ratios.
//
// Algorithm: every thread streams 16-byte words with `ld.global.cs` (evict-first: the probe must not favour
// itself by L2 hits across repetitions; buffers are much larger than L2 anyway), kUnroll independent loads in
// flight per thread before any is used, grid-stride over the buffer. The words are XOR-folded so the loads
// cannot be removed, reduced per warp with shuffles, and one atomicXor per warp folds the result into *sink: a
// sink that was zero before one call holds the XOR of every 32-bit word of the buffer, which the host can check.
// (The launcher does not zero it, so a timed call is the read kernel alone.)
//
// Partitioning: grid = num_sms x kBlocksPerSm blocks of kThreads (full occupancy: 2048 threads per SM), i.e.
// kUnroll x 16 B x 2048 = 128 KB in flight per SM, enough to cover HBM latency at full bandwidth.
// Limits: `bytes` a multiple of 16 and `src` 16-byte aligned (LOWBIT_ERR_ALIGNMENT otherwise).

#include <cuda_runtime.h>
#include <stdint.h>

#include "lowbit/check.cuh"
#include "lowbit_kernels.h"

namespace {

constexpr int kThreads = 256;
constexpr int kBlocksPerSm = 8;
constexpr int kUnroll = 4;

// One streamed 16-byte load that does not stay in L2 (evict-first).
__device__ __forceinline__ uint4 load_stream(const uint4* p) {
    uint4 v;
    asm volatile("ld.global.cs.v4.u32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

__global__ void __launch_bounds__(kThreads) read_probe_kernel(const uint4* __restrict__ src, int64_t words,
                                                               uint32_t* __restrict__ sink) {
    const int64_t stride = int64_t(gridDim.x) * kThreads;
    int64_t i = int64_t(blockIdx.x) * kThreads + threadIdx.x;
    uint32_t acc = 0;
    // Main loop: kUnroll loads issued back to back (addresses stride apart: each warp load is 512 contiguous bytes).
    for (; i + (kUnroll - 1) * stride < words; i += kUnroll * stride) {
        uint4 v[kUnroll];
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) v[u] = load_stream(src + i + u * stride);
#pragma unroll
        for (int u = 0; u < kUnroll; ++u) acc ^= v[u].x ^ v[u].y ^ v[u].z ^ v[u].w;
    }
    for (; i < words; i += stride) {
        const uint4 v = load_stream(src + i);
        acc ^= v.x ^ v.y ^ v.z ^ v.w;
    }
#pragma unroll
    for (int o = 16; o > 0; o >>= 1) acc ^= __shfl_xor_sync(0xffffffffu, acc, o);
    if ((threadIdx.x & 31) == 0) atomicXor(sink, acc);
}

}  // namespace

extern "C" lowbit_status lowbit_read_probe(const void* src, int64_t bytes, uint32_t* sink, int32_t num_sms,
                                           void* stream) {
    LOWBIT_REQUIRE(src != nullptr && sink != nullptr, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bytes > 0 && num_sms > 0, LOWBIT_ERR_INVALID_ARGUMENT);
    LOWBIT_REQUIRE(bytes % 16 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0, LOWBIT_ERR_ALIGNMENT);
    const cudaStream_t s = static_cast<cudaStream_t>(stream);
    read_probe_kernel<<<num_sms * kBlocksPerSm, kThreads, 0, s>>>(static_cast<const uint4*>(src), bytes / 16, sink);
    LOWBIT_CUDA_TRY(cudaGetLastError());
    return lowbit::status_ok();
}
