// lowbit/cp_async_bar.cuh: cp.async completion tracked by shared-memory mbarriers (sm_80+, PTX 7.0), for a copy that
// is consumed piece by piece: each thread issues its cp.async of piece c and then one cp_async_bar_arrive on piece
// c's barrier (initialised with one arrival per thread); a consumer that waits for the barrier's phase 0 sees every
// thread's copies of pieces 0..c (an arrival fires only once all earlier cp.async of its thread have landed). Unlike
// cp.async.wait_group + __syncthreads this needs no CTA barrier per piece, so warps start on piece 0 while the later
// pieces are still in flight (stream.cu, NOTES v22). Unlike the bulk-copy mbarriers of lowbit/tma.cuh (sm_90) these
// work on every architecture the streaming kernel is built for.
#pragma once

#include <stdint.h>

namespace lowbit {

__device__ __forceinline__ uint32_t cab_smem(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

// One thread initialises; __syncthreads before any other thread arrives or waits.
__device__ __forceinline__ void cp_async_bar_init(uint64_t* bar, uint32_t arrivals) {
    asm volatile("mbarrier.init.shared.b64 [%0], %1;\n" ::"r"(cab_smem(bar)), "r"(arrivals) : "memory");
}

// One of the barrier's arrivals, triggered when every cp.async this thread issued before it has completed (.noinc:
// the arrival counts against the number the barrier was initialised with).
__device__ __forceinline__ void cp_async_bar_arrive(uint64_t* bar) {
    asm volatile("cp.async.mbarrier.arrive.noinc.shared.b64 [%0];\n" ::"r"(cab_smem(bar)) : "memory");
}

// Spins until phase `parity` of the barrier has completed (acquire: the tracked copies are visible afterwards).
__device__ __forceinline__ void cp_async_bar_wait(uint64_t* bar, uint32_t parity) {
    const uint32_t a = cab_smem(bar);
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.test_wait.parity.shared.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(a), "r"(parity)
            : "memory");
    } while (!done);
}

}  // namespace lowbit
