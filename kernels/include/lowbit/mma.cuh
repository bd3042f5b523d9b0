// lowbit/mma.cuh: named wrappers for the tensor-core and memory PTX idioms the GEMM kernels use.
//
// One inline function per idiom, each with the reason it exists. Everything here works on sm_80,
// sm_89 and sm_90 (the warp-level mma.sync path); wgmma lives in wgmma.cuh.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

namespace lowbit {

// D = A(16x16, row) * B(16x8, col) + C with f32 accumulation: the m16n8k16 HMMA every 16-bit GEMM here is
// built from. A: 4 regs (8 halves), B: 2 regs, C/D: 4 floats (see the PTX ISA fragment layouts).
template <typename T>
__device__ __forceinline__ void mma_m16n8k16(float (&c)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1);

template <>
__device__ __forceinline__ void mma_m16n8k16<__half>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                     uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

template <>
__device__ __forceinline__ void mma_m16n8k16<__nv_bfloat16>(float (&c)[4], const uint32_t (&a)[4], uint32_t b0,
                                                            uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, "
        "{%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

// Four 8x8 b16 matrices from shared memory in one instruction; lane i supplies the row address of
// matrix i/8, row i%8. ldmatrix has no bank conflicts when the 8 rows of a matrix fall in distinct
// 16-byte bank groups, which the padded row strides of the callers guarantee.
__device__ __forceinline__ void ldmatrix_x4(uint32_t (&r)[4], const void* smem_row) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem_row));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(addr));
}

// 16-byte asynchronous global->shared copy that writes zeros when `pred` is false (src-size 0), so
// out-of-range rows and columns of an operand tile read as zeros without a branch around the copy.
__device__ __forceinline__ void cp_async16_zfill(void* smem, const void* gmem, bool pred) {
    const uint32_t addr = static_cast<uint32_t>(__cvta_generic_to_shared(smem));
    const int src_size = pred ? 16 : 0;
    asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(addr), "l"(gmem), "r"(src_size));
}

__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::); }

template <int N>
__device__ __forceinline__ void cp_async_wait() {
    asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// 16-byte global load of data that is read exactly once (quantized weights): bypass L1 allocation so
// the activations and metadata keep the cache. No L2 eviction-policy hint on purpose: Marlin's
// createpolicy hint faults on sm_90 with nvcc 13 (marlin#44).
__device__ __forceinline__ uint4 ld_stream_u4(const void* p) {
    uint4 v;
    asm volatile("ld.global.nc.L1::no_allocate.v4.u32 {%0,%1,%2,%3}, [%4];\n"
                 : "=r"(v.x), "=r"(v.y), "=r"(v.z), "=r"(v.w)
                 : "l"(p));
    return v;
}

// Pull the 128-byte line holding `p` into L2 without reading it into the SM. Safe before griddepcontrol.wait
// (programmatic dependent launch): L2 is the point of coherence, so a line prefetched before the previous kernel's
// stores land is updated by them, whereas a register load issued then could return stale data.
__device__ __forceinline__ void prefetch_l2(const void* p) { asm volatile("prefetch.global.L2 [%0];\n" ::"l"(p)); }

__device__ __forceinline__ uint2 ld_stream_u2(const void* p) {
    uint2 v;
    asm volatile("ld.global.nc.L1::no_allocate.v2.u32 {%0,%1}, [%2];\n" : "=r"(v.x), "=r"(v.y) : "l"(p));
    return v;
}

// Three-input bitwise function with an explicit truth table: dequantizers use (a & b) | c, which the
// compiler does not always fuse into one LOP3 on its own.
template <int LUT>
__device__ __forceinline__ uint32_t lop3(uint32_t a, uint32_t b, uint32_t c) {
    uint32_t d;
    asm("lop3.b32 %0, %1, %2, %3, %4;\n" : "=r"(d) : "r"(a), "r"(b), "r"(c), "n"(LUT));
    return d;
}

// (a & mask) | magic: the core of every "integer into the mantissa of a float" dequantizer.
__device__ __forceinline__ uint32_t and_or(uint32_t a, uint32_t mask, uint32_t magic) {
    return lop3<(0xF0 & 0xCC) | 0xAA>(a, mask, magic);
}

// Byte permute (PRMT): builds 16-bit floats from bytes with one instruction.
__device__ __forceinline__ uint32_t prmt(uint32_t a, uint32_t b, uint32_t sel) { return __byte_perm(a, b, sel); }

}  // namespace lowbit
