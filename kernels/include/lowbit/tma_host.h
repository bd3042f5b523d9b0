// lowbit/tma_host.h: host-side tensor-map encoding for the TMA kernels (lowbit/tma.cuh is the device side).
//
// cuTensorMapEncodeTiled is a driver API function; it is reached through the runtime's driver entry point
// (cudaGetDriverEntryPointByVersion), so the library needs no -lcuda. The maps are encoded per call on the host
// and passed by value as __grid_constant__ kernel parameters: no device memory, safe under CUDA-graph capture.
// Used by kernels/int8/ws_gemm.cu and kernels/weight_only/ws.cu (and new warp-specialized launchers).
#pragma once

#include <cuda.h>
#include <cuda_runtime.h>
#include <cudaTypedefs.h>
#include <stdint.h>

#include <atomic>

namespace lowbit {
namespace tma {

// cuTensorMapEncodeTiled (ABI of CUDA 12.0), looked up once; nullptr when the driver does not provide it.
// Inline: the function-local static is one object across translation units.
inline PFN_cuTensorMapEncodeTiled_v12000 encode_fn() {
    static std::atomic<void*> fn{nullptr};
    void* f = fn.load(std::memory_order_acquire);
    if (f == nullptr) {
        cudaDriverEntryPointQueryResult q{};
        if (cudaGetDriverEntryPointByVersion("cuTensorMapEncodeTiled", &f, 12000, cudaEnableDefault, &q) !=
                cudaSuccess ||
            q != cudaDriverEntryPointSuccess) {
            (void)cudaGetLastError();
            return nullptr;
        }
        fn.store(f, std::memory_order_release);
    }
    return reinterpret_cast<PFN_cuTensorMapEncodeTiled_v12000>(f);
}

// A row-major 2-D tensor of `rows` rows x `cols` elements of `type` (row pitch `pitch_bytes`, a multiple of 16;
// base 16-byte aligned) with a box of box_rows x box_cols elements (box_cols * element size = 128 bytes for the
// 128-byte swizzle), 128-byte swizzle, L2 promotion 256 B; elements outside the tensor are zero-filled.
// cudaErrorNotSupported without the driver function, cudaErrorInvalidValue when the driver rejects the map.
inline cudaError_t make_2d_sw128(CUtensorMap& map, CUtensorMapDataType type, const void* base, uint64_t rows,
                                 uint64_t cols, uint64_t pitch_bytes, uint32_t box_rows, uint32_t box_cols) {
    auto enc = encode_fn();
    if (enc == nullptr) return cudaErrorNotSupported;
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(pitch_bytes)};
    const cuuint32_t box[2] = {cuuint32_t(box_cols), cuuint32_t(box_rows)};
    const cuuint32_t estr[2] = {1, 1};
    const CUresult r = enc(&map, type, 2, const_cast<void*>(base), dims, strides, box, estr,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// A row-major 2-D tensor of `rows` rows x `cols` 4-byte words (row pitch `pitch_bytes`, a multiple of 16; base
// 16-byte aligned) with a box of box_rows x box_cols words (box_cols <= 256, box_cols * 4 a multiple of 16), no
// swizzle (the box lands as box_rows rows of box_cols * 4 contiguous bytes), L2 promotion 256 B, zero fill outside.
// Errors as make_2d_sw128.
inline cudaError_t make_2d_u32(CUtensorMap& map, const void* base, uint64_t rows, uint64_t cols, uint64_t pitch_bytes,
                               uint32_t box_rows, uint32_t box_cols) {
    auto enc = encode_fn();
    if (enc == nullptr) return cudaErrorNotSupported;
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(pitch_bytes)};
    const cuuint32_t box[2] = {cuuint32_t(box_cols), cuuint32_t(box_rows)};
    const cuuint32_t estr[2] = {1, 1};
    const CUresult r = enc(&map, CU_TENSOR_MAP_DATA_TYPE_UINT32, 2, const_cast<void*>(base), dims, strides, box, estr,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_NONE, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// A 3-D byte tensor (innermost `cols` bytes, then `rows` rows `pitch_bytes` apart, then `planes` planes
// `plane_bytes` apart; pitches multiples of 16, base 16-byte aligned) with a box of box_cols (128) x box_rows x
// box_planes, 128-byte swizzle, L2 promotion 256 B, zero fill outside. Errors as make_2d_sw128.
inline cudaError_t make_3d_sw128_u8(CUtensorMap& map, const void* base, uint64_t cols, uint64_t rows, uint64_t planes,
                                    uint64_t pitch_bytes, uint64_t plane_bytes, uint32_t box_cols, uint32_t box_rows,
                                    uint32_t box_planes) {
    auto enc = encode_fn();
    if (enc == nullptr) return cudaErrorNotSupported;
    const cuuint64_t dims[3] = {cuuint64_t(cols), cuuint64_t(rows), cuuint64_t(planes)};
    const cuuint64_t strides[2] = {cuuint64_t(pitch_bytes), cuuint64_t(plane_bytes)};
    const cuuint32_t box[3] = {cuuint32_t(box_cols), cuuint32_t(box_rows), cuuint32_t(box_planes)};
    const cuuint32_t estr[3] = {1, 1, 1};
    const CUresult r = enc(&map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, const_cast<void*>(base), dims, strides, box, estr,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, CU_TENSOR_MAP_SWIZZLE_128B, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

}  // namespace tma
}  // namespace lowbit
