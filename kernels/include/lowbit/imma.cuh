// lowbit/imma.cuh: the int8 warp-level tensor-core MMA (IMMA) used by the int8 GEMM's sm_80 / sm_89 path.
#pragma once

#include <stdint.h>

namespace lowbit {

// D = A(16x32 s8, row) * B(32x8 s8, col) + D with exact s32 accumulation (SASS: IMMA.16832.S8.S8, native on
// sm_80..sm_90). A: 4 regs of 4 bytes (rows g / g+8, k 4t..4t+3 and 16+4t..), B: 2 regs (column g, k 4t..4t+3
// and 16+4t..), D: (row g, columns 2t, 2t+1), (row g+8, columns 2t, 2t+1). ldmatrix.b16 of 8 rows x 16 bytes
// delivers exactly these fragments for K-major int8 tiles.
__device__ __forceinline__ void mma_s8_m16n8k32(int32_t (&d)[4], const uint32_t (&a)[4], uint32_t b0, uint32_t b1) {
    asm volatile(
        "mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};\n"
        : "+r"(d[0]), "+r"(d[1]), "+r"(d[2]), "+r"(d[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
}

}  // namespace lowbit
