// lowbit/tma.cuh: Hopper (sm_90) mbarrier, bulk-copy and TMA wrappers shared by the warp-specialized GEMMs.
//
// Used by lowbit/i8_ws_gemm.cuh and lowbit/wo_ws.cuh (and new warp-specialized kernels); the host side (tensor
// map encoding) is lowbit/tma_host.h. All wrappers take generic pointers to shared memory and convert them to the shared
// window. Only meaningful on sm_90+; the callers guard their kernel bodies.
#pragma once

#include <cuda.h>
#include <stdint.h>

namespace lowbit {
namespace tma {

__device__ __forceinline__ uint32_t smem_u32(const void* p) { return static_cast<uint32_t>(__cvta_generic_to_shared(p)); }

__device__ __forceinline__ void mbar_init(uint64_t* bar, uint32_t count) {
    asm volatile("mbarrier.init.shared::cta.b64 [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(count) : "memory");
}

// Arrives once and adds `bytes` to the transaction count the current phase waits for.
__device__ __forceinline__ void mbar_expect_tx(uint64_t* bar, uint32_t bytes) {
    asm volatile("mbarrier.arrive.expect_tx.shared::cta.b64 _, [%0], %1;\n" ::"r"(smem_u32(bar)), "r"(bytes)
                 : "memory");
}

__device__ __forceinline__ void mbar_arrive(uint64_t* bar) {
    asm volatile("mbarrier.arrive.shared::cta.b64 _, [%0];\n" ::"r"(smem_u32(bar)) : "memory");
}

// Spins until the phase of parity `parity` has completed (a fresh barrier passes parity 1 at once).
__device__ __forceinline__ void mbar_wait(uint64_t* bar, uint32_t parity) {
    const uint32_t a = smem_u32(bar);
    uint32_t done = 0;
    do {
        asm volatile(
            "{\n.reg .pred p;\nmbarrier.try_wait.parity.shared::cta.b64 p, [%1], %2;\nselp.u32 %0, 1, 0, p;\n}\n"
            : "=r"(done)
            : "r"(a), "r"(parity)
            : "memory");
    } while (!done);
}

// 1-D bulk copy global -> shared (16-byte aligned, size a multiple of 16), completion in bytes on `bar`.
__device__ __forceinline__ void bulk_g2s(void* dst, const void* src, uint32_t bytes, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1], %2, [%3];\n" ::"r"(
            smem_u32(dst)),
        "l"(src), "r"(bytes), "r"(smem_u32(bar))
        : "memory");
}

// 2-D tensor copy of the box at (c0 = innermost coordinate, c1) of `map` into shared memory; elements outside
// the tensor are zero-filled and still counted in the transaction bytes.
__device__ __forceinline__ void tma_2d_g2s(void* dst, const CUtensorMap* map, int c0, int c1, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.2d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3}], [%4];\n" ::"r"(
            smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(smem_u32(bar))
        : "memory");
}

// 3-D tensor copy of the box at (c0 = innermost, c1, c2) of `map` (e.g. bytes x rows x bit planes: the box's
// planes land one after another, each box_rows x 128 bytes); out-of-tensor elements zero-filled and counted.
__device__ __forceinline__ void tma_3d_g2s(void* dst, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes [%0], [%1, {%2, %3, %4}], [%5];\n" ::"r"(
            smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar))
        : "memory");
}

// The same copy multicast to every CTA of the cluster in `cta_mask` (same shared-memory offset in each, each CTA's
// mbarrier at `bar`'s offset receives the bytes written into it).
__device__ __forceinline__ void tma_3d_g2s_mc(void* dst, const CUtensorMap* map, int c0, int c1, int c2, uint64_t* bar,
                                              uint16_t cta_mask) {
    asm volatile(
        "cp.async.bulk.tensor.3d.shared::cluster.global.mbarrier::complete_tx::bytes.multicast::cluster [%0], [%1, {%2, "
        "%3, %4}], [%5], %6;\n" ::"r"(smem_u32(dst)),
        "l"(reinterpret_cast<uint64_t>(map)), "r"(c0), "r"(c1), "r"(c2), "r"(smem_u32(bar)), "h"(cta_mask)
        : "memory");
}

// ---- shared -> global stores through the TMA engine (for epilogues that overlap the next tile) ----
//
// Usage (one tile): every writing thread stores its part of the tile into shared memory, then calls
// `fence_proxy_async_shared()` (makes generic-proxy writes visible to the async proxy); the CTA (or the writing
// warpgroup) synchronizes; ONE thread issues `tma_2d_s2g` for each box and `bulk_commit_group()`. Before the
// same shared buffer is written again, that thread calls `bulk_wait_group_read<0>()` (the engine has finished
// READING shared memory; the global writes may still be in flight) and the writers synchronize on it.
// Global visibility to a later kernel is guaranteed at kernel end; within the kernel use bulk_wait_group<0>().

// Generic-proxy shared-memory writes -> visible to the async (TMA) proxy of this CTA.
__device__ __forceinline__ void fence_proxy_async_shared() {
    asm volatile("fence.proxy.async.shared::cta;\n" ::: "memory");
}

// 2-D tensor store of the box at (c0 = innermost coordinate, c1) of `map` from shared memory `src` (laid out as
// the map's box, with the map's swizzle); elements outside the tensor are not written (free edge clipping).
__device__ __forceinline__ void tma_2d_s2g(const CUtensorMap* map, const void* src, int c0, int c1) {
    asm volatile("cp.async.bulk.tensor.2d.global.shared::cta.bulk_group [%0, {%1, %2}], [%3];\n" ::"l"(
                     reinterpret_cast<uint64_t>(map)),
                 "r"(c0), "r"(c1), "r"(smem_u32(src))
                 : "memory");
}

// Close the bulk-async group of the stores issued by this thread since the last commit.
__device__ __forceinline__ void bulk_commit_group() { asm volatile("cp.async.bulk.commit_group;\n" ::: "memory"); }

// Wait until at most N of this thread's committed bulk groups still READ their shared-memory source.
template <int N>
__device__ __forceinline__ void bulk_wait_group_read() {
    asm volatile("cp.async.bulk.wait_group.read %0;\n" ::"n"(N) : "memory");
}

// Wait until at most N of this thread's committed bulk groups are still incomplete (writes done).
template <int N>
__device__ __forceinline__ void bulk_wait_group() {
    asm volatile("cp.async.bulk.wait_group %0;\n" ::"n"(N) : "memory");
}

// This CTA's rank in its cluster.
__device__ __forceinline__ uint32_t cluster_rank() {
    uint32_t r;
    asm volatile("mov.u32 %0, %%cluster_ctarank;\n" : "=r"(r));
    return r;
}

// Arrive on the mbarrier at `bar`'s offset in the shared memory of cluster CTA `rank`, with the default semantics
// (.release.cta, as CUTLASS's ClusterBarrier::arrive(cta_id)). For releasing a ring slot whose reads were wgmma
// reads already completed by wgmma.wait_group, nothing else must be ordered. The explicit `.release.cluster` form
// compiles on sm_90a to MEMBAR.ALL.CTA + MEMBAR.ALL.GPU + ERRBAR + CGAERRBAR before every arrive: two GPU-scope
// fences per stage on the consumers' critical path, which made the bipolar 2-CTA multicast kernel ~2x slower than
// one CTA per SM (kernels/bipolar/NOTES.md ws v3).
__device__ __forceinline__ void mbar_arrive_cluster(uint64_t* bar, uint32_t rank) {
    uint32_t remote;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(remote) : "r"(smem_u32(bar)), "r"(rank));
    asm volatile("mbarrier.arrive.shared::cluster.b64 _, [%0];\n" ::"r"(remote) : "memory");
}

// Distributed shared memory (split-K through clusters: int8 v20 csplit_finish, weight-only ws-C): the address in the
// shared window of cluster CTA `rank` of this CTA's shared-window address `addr` (mapa), and 16-byte loads from it.
__device__ __forceinline__ uint32_t mapa_shared(uint32_t addr, uint32_t rank) {
    uint32_t r;
    asm volatile("mapa.shared::cluster.u32 %0, %1, %2;\n" : "=r"(r) : "r"(addr), "r"(rank));
    return r;
}
__device__ __forceinline__ int4 ld_cluster_v4(uint32_t addr) {
    int4 v;
    asm volatile("ld.shared::cluster.v4.s32 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}
__device__ __forceinline__ float4 ld_cluster_v4f(uint32_t addr) {
    float4 v;
    asm volatile("ld.shared::cluster.v4.f32 {%0, %1, %2, %3}, [%4];\n"
                 : "=f"(v.x), "=f"(v.y), "=f"(v.z), "=f"(v.w)
                 : "r"(addr)
                 : "memory");
    return v;
}

// Whole-cluster barrier (every thread of every CTA; not .aligned, so divergent warps may call it).
__device__ __forceinline__ void cluster_sync() {
    asm volatile("barrier.cluster.arrive.release;\nbarrier.cluster.wait.acquire;\n" ::: "memory");
}

// wgmma descriptor of a K-major operand written by TMA with 128-byte swizzle: 128-byte rows, 8-row atoms of
// 1024 bytes (stride byte offset 1024), layout type 1 (128B swizzle) in bits 62-63. The atom base must be
// 1024-byte aligned; a 32-byte K step inside the atom advances the start address by 32 bytes.
__device__ __forceinline__ uint64_t desc_sw128(uint32_t addr) {
    uint64_t d = 0;
    d |= uint64_t((addr & 0x3FFFF) >> 4);
    d |= uint64_t(1) << 16;
    d |= uint64_t(1024 >> 4) << 32;
    d |= uint64_t(1) << 62;
    return d;
}

template <int R>
__device__ __forceinline__ void setmaxnreg_inc() {
    asm volatile("setmaxnreg.inc.sync.aligned.u32 %0;\n" ::"n"(R));
}
template <int R>
__device__ __forceinline__ void setmaxnreg_dec() {
    asm volatile("setmaxnreg.dec.sync.aligned.u32 %0;\n" ::"n"(R));
}

}  // namespace tma
}  // namespace lowbit
