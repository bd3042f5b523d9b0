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

// The one call of the driver's encoder behind every map below: a tiled map of `rank` dimensions (dims and box
// innermost first, `strides` the rank - 1 byte pitches of the outer dimensions, each a multiple of 16; base 16-byte
// aligned), element strides 1, no interleave, the given swizzle, L2 promotion 256 B; elements outside the tensor
// are zero-filled. cudaErrorNotSupported without the driver function, cudaErrorInvalidValue when the driver
// rejects the map.
inline cudaError_t encode_tiled(CUtensorMap& map, CUtensorMapDataType type, uint32_t rank, const void* base,
                                const cuuint64_t* dims, const cuuint64_t* strides, const cuuint32_t* box,
                                CUtensorMapSwizzle swizzle) {
    auto enc = encode_fn();
    if (enc == nullptr) return cudaErrorNotSupported;
    const cuuint32_t estr[5] = {1, 1, 1, 1, 1};  // rank <= 5 (the driver's limit)
    const CUresult r = enc(&map, type, rank, const_cast<void*>(base), dims, strides, box, estr,
                           CU_TENSOR_MAP_INTERLEAVE_NONE, swizzle, CU_TENSOR_MAP_L2_PROMOTION_L2_256B,
                           CU_TENSOR_MAP_FLOAT_OOB_FILL_NONE);
    return r == CUDA_SUCCESS ? cudaSuccess : cudaErrorInvalidValue;
}

// A row-major 2-D tensor of `rows` rows x `cols` elements of `type` (row pitch `pitch_bytes`, a multiple of 16;
// base 16-byte aligned) with a box of box_rows x box_cols elements and the given swizzle:
//   CU_TENSOR_MAP_SWIZZLE_128B: box_cols * element size = 128 bytes (the K-major operand boxes of the wgmma
//     kernels, read through lowbit/tma.cuh's desc_sw128);
//   CU_TENSOR_MAP_SWIZZLE_NONE: box_cols * element size a multiple of 16 (box_cols <= 256); the box lands as
//     box_rows rows of box_cols contiguous elements (e.g. the ws kernels' weight words as u32).
// Errors as encode_tiled.
inline cudaError_t make_2d(CUtensorMap& map, CUtensorMapDataType type, CUtensorMapSwizzle swizzle, const void* base,
                           uint64_t rows, uint64_t cols, uint64_t pitch_bytes, uint32_t box_rows, uint32_t box_cols) {
    const cuuint64_t dims[2] = {cuuint64_t(cols), cuuint64_t(rows)};
    const cuuint64_t strides[1] = {cuuint64_t(pitch_bytes)};
    const cuuint32_t box[2] = {cuuint32_t(box_cols), cuuint32_t(box_rows)};
    return encode_tiled(map, type, 2, base, dims, strides, box, swizzle);
}

// make_2d with the 128-byte swizzle (the name the int8, bipolar and weight-only launchers call).
inline cudaError_t make_2d_sw128(CUtensorMap& map, CUtensorMapDataType type, const void* base, uint64_t rows,
                                 uint64_t cols, uint64_t pitch_bytes, uint32_t box_rows, uint32_t box_cols) {
    return make_2d(map, type, CU_TENSOR_MAP_SWIZZLE_128B, base, rows, cols, pitch_bytes, box_rows, box_cols);
}

// A 3-D byte tensor (innermost `cols` bytes, then `rows` rows `pitch_bytes` apart, then `planes` planes
// `plane_bytes` apart; pitches multiples of 16, base 16-byte aligned) with a box of box_cols (128) x box_rows x
// box_planes, 128-byte swizzle, L2 promotion 256 B, zero fill outside. Errors as encode_tiled.
inline cudaError_t make_3d_sw128_u8(CUtensorMap& map, const void* base, uint64_t cols, uint64_t rows, uint64_t planes,
                                    uint64_t pitch_bytes, uint64_t plane_bytes, uint32_t box_cols, uint32_t box_rows,
                                    uint32_t box_planes) {
    const cuuint64_t dims[3] = {cuuint64_t(cols), cuuint64_t(rows), cuuint64_t(planes)};
    const cuuint64_t strides[2] = {cuuint64_t(pitch_bytes), cuuint64_t(plane_bytes)};
    const cuuint32_t box[3] = {cuuint32_t(box_cols), cuuint32_t(box_rows), cuuint32_t(box_planes)};
    return encode_tiled(map, CU_TENSOR_MAP_DATA_TYPE_UINT8, 3, base, dims, strides, box, CU_TENSOR_MAP_SWIZZLE_128B);
}

}  // namespace tma
}  // namespace lowbit
