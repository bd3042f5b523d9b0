/*
 * lowbit_kernels.h: THE C ABI between lowbit's CUDA kernels and every host caller.
 *
 * This is the only header bindgen reads (crates/lowbit-kernels-sys/build.rs), so it is plain C:
 * fixed-width integer types from <stdint.h> only. No <stddef.h>/size_t (bindgen runs on a bare
 * libclang without the compiler's resource directory), no C++ types, no CUDA headers. Sizes and
 * indices are int64_t; device pointers are typed const pointers; streams are `void*`.
 *
 * Conventions for every launcher:
 *   - It is asynchronous: it enqueues work on `stream` and returns. `stream` is a cudaStream_t /
 *     CUstream of the context current on the calling thread; NULL (0) is the legacy default stream.
 *     The caller must make the thread's current context the one that owns every pointer (the Rust
 *     layer binds the device's primary context before each call).
 *   - It validates its arguments on the host before touching the GPU and returns a lowbit_status.
 *     Nothing is launched unless the returned code is LOWBIT_OK. After the launch it captures
 *     cudaGetLastError(): a failed launch (bad configuration, no kernel image for this GPU, an
 *     earlier sticky error) comes back as LOWBIT_ERR_CUDA with the cudaError_t in `cuda_error`.
 *     Errors inside the running kernel surface later, at the next synchronizing call.
 *   - Device pointers must be valid device (or managed) memory of at least the documented number
 *     of elements. Pointer-to-device validity cannot be checked on the host; sizes are the caller's
 *     contract (the Rust layer checks them against the quantized weight before calling).
 *
 * Weight formats and their exact dequantization arithmetic are fixed by docs/formats.md; the
 * GPU results are bit-identical to lowbit-core's CPU dequantizer.
 */
#ifndef LOWBIT_KERNELS_H
#define LOWBIT_KERNELS_H

#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/** Version of this C ABI. Bumped on any incompatible change of a prototype or struct below. */
#define LOWBIT_KERNELS_ABI_VERSION 1

/** Status codes carried in lowbit_status.code. */
enum lowbit_status_code {
    /** Success: the work was enqueued. */
    LOWBIT_OK = 0,
    /** A size is out of range or inconsistent (n or k < 1, group length not dividing k, ...). */
    LOWBIT_ERR_SHAPE = 1,
    /** A pointer or size does not meet an alignment the kernel needs. */
    LOWBIT_ERR_ALIGNMENT = 2,
    /** No kernel is compiled for this combination (e.g. an unsupported bit width). */
    LOWBIT_ERR_NO_KERNEL = 3,
    /** A required pointer is NULL, or an enum argument (dtype) has an unknown value. */
    LOWBIT_ERR_INVALID_ARGUMENT = 4,
    /** The CUDA runtime reported an error; lowbit_status.cuda_error holds the cudaError_t. */
    LOWBIT_ERR_CUDA = 5
};

/** Result of every launcher: a lowbit_status_code and, for LOWBIT_ERR_CUDA, the cudaError_t. */
typedef struct lowbit_status {
    /** One of enum lowbit_status_code. */
    int32_t code;
    /** The cudaError_t value when code == LOWBIT_ERR_CUDA, else 0. */
    int32_t cuda_error;
} lowbit_status;

/** Output element type of the dequantizers (values for their `out_dtype` argument). */
enum lowbit_dtype {
    /** IEEE binary16, written as its 16-bit pattern (`__half`). */
    LOWBIT_DTYPE_F16 = 0,
    /** bfloat16, written as its 16-bit pattern (`__nv_bfloat16`). */
    LOWBIT_DTYPE_BF16 = 1
};

/* ---------------------------------------------------------------------------------------------
 * Build information
 * ------------------------------------------------------------------------------------------- */

/** Returns LOWBIT_KERNELS_ABI_VERSION as compiled into the static library. */
int32_t lowbit_kernels_abi_version(void);

/**
 * Returns CUDART_VERSION of the CUDA runtime the library was compiled and statically linked
 * against (e.g. 13000 for CUDA 13.0).
 */
int32_t lowbit_kernels_cudart_version(void);

/**
 * Read-only streaming probe of the card's memory read bandwidth (kernels/common/read_probe.cu): reads `bytes`
 * bytes at `src` once with 16-byte evict-first loads on num_sms x 8 blocks of 256 threads and XORs every 32-bit
 * word of it into *sink (zero *sink first to get the buffer's XOR; the launcher does not, so that timing a
 * call times the read alone). Asynchronous on `stream`.
 * Errors: LOWBIT_ERR_INVALID_ARGUMENT (NULL pointers, bytes <= 0, num_sms <= 0), LOWBIT_ERR_ALIGNMENT (bytes
 * not a multiple of 16 or src not 16-byte aligned), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_read_probe(const void *src, int64_t bytes, uint32_t *sink, int32_t num_sms, void *stream);

/**
 * Writes the CUDA driver's version (cudaDriverGetVersion, e.g. 13000) to `*version`; 0 when no
 * driver is installed. Returns LOWBIT_ERR_INVALID_ARGUMENT if `version` is NULL.
 */
lowbit_status lowbit_cuda_driver_version(int32_t *version);

/**
 * Returns the symbolic name of a cudaError_t value (cudaGetErrorName, e.g. "cudaErrorInvalidValue").
 * The string is static; never NULL.
 */
const char *lowbit_cuda_error_name(int32_t cuda_error);

/** Returns the description of a cudaError_t value (cudaGetErrorString). Static; never NULL. */
const char *lowbit_cuda_error_string(int32_t cuda_error);

/* ---------------------------------------------------------------------------------------------
 * Dequantization: every weight format of docs/formats.md -> row-major [n, k] f16 or bf16.
 *
 * Common arguments:
 *   n, k       rows (output features) and columns (input features) of W; both >= 1.
 *   group_len  columns per quantization group; must divide k. Per-channel = k.
 *   out        device buffer of n*k 16-bit elements, row-major, written completely.
 *   out_dtype  LOWBIT_DTYPE_F16 or LOWBIT_DTYPE_BF16.
 *   stream     cudaStream_t (NULL = legacy default stream).
 * Code bitstreams (`codes`) hold ceil(k*bits/32) uint32 words per row (docs/formats.md).
 * Any k is supported; 16-byte vector stores are used when k % 8 == 0 and `out` is 16-byte
 * aligned, 2-byte stores otherwise. Limits: k <= 2^31 - 1 and n * ceil(k/8) <= 2^32 - 1
 * (LOWBIT_ERR_SHAPE otherwise). Alignment (LOWBIT_ERR_ALIGNMENT otherwise): uint32/f32 arrays
 * 4-byte, f16 arrays and `out` 2-byte aligned.
 * Errors: NULL required pointer or unknown out_dtype -> LOWBIT_ERR_INVALID_ARGUMENT; bits outside
 * the format's range -> LOWBIT_ERR_NO_KERNEL; bad n, k, group_len -> LOWBIT_ERR_SHAPE.
 * ------------------------------------------------------------------------------------------- */

/**
 * INT affine (w{2..8}-int[-asym]): w = f32(q - z) * f32(s), rounded once to the output type.
 *
 * codes   [n, ceil(k*bits/32)] uint32 bitstream rows of `bits`-bit unsigned codes.
 * scales  [n, k/group_len] f16 bit patterns.
 * zeros   [n, k/group_len] uint8 zero points, or NULL for the symmetric format (z = 2^(bits-1)).
 * g_idx   [k] uint32 act-order group index of every column (each < k/group_len), or NULL for the
 *         contiguous grouping (group of column c = c / group_len). An out-of-range entry produces
 *         NaN outputs for that column instead of an out-of-bounds read.
 * bits    2..8.
 */
lowbit_status lowbit_dequant_int_affine(const uint32_t *codes, const uint16_t *scales,
                                        const uint8_t *zeros, const uint32_t *g_idx, int64_t n,
                                        int64_t k, int32_t bits, int64_t group_len, void *out,
                                        int32_t out_dtype, void *stream);

/**
 * bipolar-INT (w{1..8}-bipolar): value = 2u - (2^bits - 1) from `bits` bit planes,
 * w = fmaf(f32(value), scale, offset) as ONE fused multiply-add (offset = 0 when absent).
 *
 * planes   [bits][n][ceil(k/32)] uint32; bit c%32 of word [i][r][c/32] is bit i of the code of
 *          element (r, c).
 * scales   [n, k/group_len] f32.
 * offsets  [n, k/group_len] f32, or NULL (symmetric: offset 0).
 * bits     1..8.
 */
lowbit_status lowbit_dequant_bipolar(const uint32_t *planes, const float *scales,
                                     const float *offsets, int64_t n, int64_t k, int32_t bits,
                                     int64_t group_len, void *out, int32_t out_dtype,
                                     void *stream);

/**
 * BitMoD mixed datatypes (w{3,4}-mixed): per group one of four FP3/FP4 variants that differ only
 * in the value of the "negative zero" code, chosen by a 2-bit selector.
 * group_scale = f32(q_g) * f32(ch_scale); w = f32(grid value) * group_scale.
 *
 * codes           [n, ceil(k*bits/32)] uint32 bitstream rows (sign = top bit of each code).
 * group_scales    [n, k/group_len] uint8 (q_g).
 * selectors       [n, ceil((k/group_len)/4)] uint8; group j uses bits 2(j%4)..2(j%4)+1 of byte j/4.
 * channel_scales  [n] f16 bit patterns.
 * bits            3 or 4.
 */
lowbit_status lowbit_dequant_mixed(const uint32_t *codes, const uint8_t *group_scales,
                                   const uint8_t *selectors, const uint16_t *channel_scales,
                                   int64_t n, int64_t k, int32_t bits, int64_t group_len,
                                   void *out, int32_t out_dtype, void *stream);

/**
 * LUT formats (NF4, any 2^bits-entry table): w = lut[code] * f32(scale).
 *
 * codes   [n, ceil(k*bits/32)] uint32 bitstream rows.
 * lut     [2^bits] f32 table.
 * scales  [n, k/group_len] f16 bit patterns (group absmax).
 * bits    1..8.
 */
lowbit_status lowbit_dequant_lut(const uint32_t *codes, const float *lut, const uint16_t *scales,
                                 int64_t n, int64_t k, int32_t bits, int64_t group_len, void *out,
                                 int32_t out_dtype, void *stream);

/* ---------------------------------------------------------------------------------------------
 * Host emulation of the dequantizers.
 *
 * Same arguments and validation as the launchers above, but every pointer is HOST memory and the
 * work runs synchronously on the calling CPU thread: the kernel's per-thread function (the same
 * __host__ __device__ code: bit extraction, group walk, decode tables, rounding, the 8-wide store)
 * is called for every thread index in turn. It exists so that machines without a GPU can check
 * the kernels' decode logic bit-exactly against lowbit-core; it is not a fast CPU path.
 * They never call into the CUDA runtime, so they work without a driver.
 * ------------------------------------------------------------------------------------------- */

/** Host emulation of lowbit_dequant_int_affine (host pointers, synchronous). */
lowbit_status lowbit_dequant_int_affine_host(const uint32_t *codes, const uint16_t *scales,
                                             const uint8_t *zeros, const uint32_t *g_idx,
                                             int64_t n, int64_t k, int32_t bits,
                                             int64_t group_len, void *out, int32_t out_dtype);

/** Host emulation of lowbit_dequant_bipolar (host pointers, synchronous). */
lowbit_status lowbit_dequant_bipolar_host(const uint32_t *planes, const float *scales,
                                          const float *offsets, int64_t n, int64_t k, int32_t bits,
                                          int64_t group_len, void *out, int32_t out_dtype);

/** Host emulation of lowbit_dequant_mixed (host pointers, synchronous). */
lowbit_status lowbit_dequant_mixed_host(const uint32_t *codes, const uint8_t *group_scales,
                                        const uint8_t *selectors, const uint16_t *channel_scales,
                                        int64_t n, int64_t k, int32_t bits, int64_t group_len,
                                        void *out, int32_t out_dtype);

/** Host emulation of lowbit_dequant_lut (host pointers, synchronous). */
lowbit_status lowbit_dequant_lut_host(const uint32_t *codes, const float *lut,
                                      const uint16_t *scales, int64_t n, int64_t k, int32_t bits,
                                      int64_t group_len, void *out, int32_t out_dtype);

/* ---------------------------------------------------------------------------------------------
 * Weight-only GEMM: Y[m, n] = X[m, k] * dequant(W)[n, k]^T, X and Y f16 or bf16 (kernels/weight_only).
 *
 * W is in the tiled fragment layout written by lowbit-core's repack.rs (docs/formats.md, "Tiled GEMM
 * layout"): 16-row strips x 16-column tiles, each lane's codes of a k-step in one 16-byte word group.
 * ------------------------------------------------------------------------------------------- */

/** Code arrangement of a tiled weight (lowbit_wo_weight.format); matches lowbit-core TiledFormat. */
enum lowbit_wo_format {
    /** INT 2-bit, zero point per group. */
    LOWBIT_WO_INT2 = 0,
    /** INT 3-bit (2-bit low stream + high-bit stream). */
    LOWBIT_WO_INT3 = 1,
    /** INT 4-bit. */
    LOWBIT_WO_INT4 = 2,
    /** INT 8-bit. */
    LOWBIT_WO_INT8 = 3,
    /** 2-bit table codes. */
    LOWBIT_WO_LUT2 = 4,
    /** 3-bit table codes (BitMoD FP3, 3-bit LUTs). */
    LOWBIT_WO_LUT3 = 5,
    /** 4-bit table codes (NF4, 4-bit LUTs). */
    LOWBIT_WO_LUT4 = 6,
    /** BitMoD FP4 codes decoded arithmetically (no table: lut may be NULL; channel_scales hold 2^15 x the channel
     *  scale, the aux selector picks the special value). */
    LOWBIT_WO_MIX4 = 7,
    /** BitMoD FP3 codes decoded by byte permutes (no table: lut may be NULL; the aux selector picks the special
     *  value; 8 tiles per k-step with the high-bit stream, layout in docs/formats.md). */
    LOWBIT_WO_MIX3 = 8
};

/** A tiled weight in device memory (every pointer is a device pointer). */
typedef struct lowbit_wo_weight {
    /** One of enum lowbit_wo_format. */
    int32_t format;
    /** Logical rows (output features) and columns (input features). */
    int32_t n, k;
    /** n rounded up to 16; k rounded up to the format's k-step (64 for 4-bit, 32 for 8-bit, 128 for 2/3-bit). */
    int32_t n_pad, k_pad;
    /** Columns per group, a multiple of 16 dividing k_pad (per-channel: k_pad). */
    int32_t group_len;
    /** [n_pad/16][k_pad/kstep][32][4] code words; 16-byte aligned. */
    const uint32_t *words;
    /** [n_pad/16][k_pad/kstep][32][2] 3-bit high bits (INT3/LUT3 only, else NULL); 8-byte aligned. */
    const uint32_t *hi_words;
    /** [n_pad/16][k_pad/group_len][8][2]: f16 scale pair (rows g, g+8), aux (zero points or selectors). */
    const uint32_t *meta;
    /** [n_pad] f32 scales applied after the reduction (BitMoD channel scale; LOWBIT_WO_MIX4: 2^15 x it), or NULL for 1. */
    const float *channel_scales;
    /** [lut_tables][2^bits] f32 value tables (table formats only, else NULL). */
    const float *lut;
    /** Number of tables: 1 (NF4 / LUT) or 4 (BitMoD FP3, chosen per group by the aux selector). */
    int32_t lut_tables;
    /** Act-order: kernel column j is X column perm[j] ([k] uint32), or NULL. */
    const uint32_t *perm;
} lowbit_wo_weight;

/** Optional launch overrides for benchmarking and tests; 0 in a field = automatic. */
typedef struct lowbit_wo_config {
    /** Rows of X per block: 8, 16, 32 or 64. */
    int32_t m_tile;
    /** Split-K factor (blocks along K). */
    int32_t splits;
    /** X columns staged per shared-memory chunk (a multiple of the k-step; mma.sync path). */
    int32_t kc;
    /** Kernel path: LOWBIT_WO_PATH_AUTO, LOWBIT_WO_PATH_MMA (any GPU), LOWBIT_WO_PATH_WGMMA or
     *  LOWBIT_WO_PATH_WS (sm_90a). */
    int32_t path;
    /** Warps per 16-row strip of W on the mma.sync path (in-block split-K): 1, 2, 4 or 8; 0 = automatic (more
     *  than one only for grids smaller than one block per SM whose whole K fits one X chunk). > 1 needs an
     *  m-tile of 8 or 16 rows and excludes splits > 1 (else LOWBIT_ERR_INVALID_ARGUMENT). */
    int32_t k_warps;
} lowbit_wo_config;

/** Values of lowbit_wo_config.path. */
enum lowbit_wo_path {
    /** Pick by M, format and GPU (sm_90a builds on Hopper): ws for INT4 with 64 <= M <= 768 where its tiles
     *  fill the GPU (lowbit_wo_gemm_auto_path), wgmma for other M >= 128, mma.sync otherwise. */
    LOWBIT_WO_PATH_AUTO = 0,
    /** Warp-level mma.sync kernel (sm_80+), any M (<= 64 rows of X per block, split-K). */
    LOWBIT_WO_PATH_MMA = 1,
    /** Warpgroup wgmma kernel (sm_90a only; LOWBIT_ERR_NO_KERNEL elsewhere), 128 rows of X per block. */
    LOWBIT_WO_PATH_WGMMA = 2,
    /**
     * Warp-specialized persistent wgmma kernel (sm_90a only, INT formats of 4 bits only; LOWBIT_ERR_NO_KERNEL
     * otherwise): a producer warp brings W (bulk copies) and X (TMA) into an mbarrier ring, two consumer
     * warpgroups decode W into registers for wgmma; 64, 128 or 256 rows of X per tile (kernels/weight_only/ws.cu).
     * Needs 16-byte aligned X with ldx % 8 == 0 and K % 8 == 0 (else LOWBIT_ERR_ALIGNMENT).
     */
    LOWBIT_WO_PATH_WS = 3
};

/**
 * The path (enum lowbit_wo_path, never AUTO) that lowbit_wo_gemm's automatic plan picks for this weight, m and
 * dtype with aligned X on the current device; -1 for invalid arguments. `num_sms` <= 0 queries the device.
 */
int32_t lowbit_wo_gemm_auto_path(const lowbit_wo_weight *w, int64_t m, int32_t dtype, int32_t num_sms);

/**
 * Workspace bytes lowbit_wo_gemm needs for this weight, m and config (split-K partial sums and the
 * act-order gather of X); 0 when none; -1 for invalid arguments. `num_sms` <= 0 queries the current device.
 */
int64_t lowbit_wo_gemm_workspace_bytes(const lowbit_wo_weight *w, int64_t m, int32_t dtype,
                                       const lowbit_wo_config *cfg, int32_t num_sms);

/**
 * How many leading bytes of that workspace must be zero when lowbit_wo_gemm starts (the split-K partial sums;
 * 0 when the plan has no split-K); every completed call leaves them zero again, so one zeroed buffer serves any
 * number of calls on one stream (never two concurrent calls). The bytes after them (act-order gather of X) are
 * scratch. -1 for invalid arguments.
 */
int64_t lowbit_wo_gemm_workspace_zeroed_bytes(const lowbit_wo_weight *w, int64_t m, int32_t dtype,
                                              const lowbit_wo_config *cfg, int32_t num_sms);

/**
 * Y[m, n] = X[m, k] * dequant(W)^T with f32 accumulation, X rows `ldx` elements apart (ldx >= k), Y dense.
 * dtype: LOWBIT_DTYPE_F16 or LOWBIT_DTYPE_BF16 for both X and Y. `workspace` (256-byte aligned) must hold
 * lowbit_wo_gemm_workspace_bytes() bytes, of which the first lowbit_wo_gemm_workspace_zeroed_bytes() must be
 * zero (and are left zero); it may be NULL when that is 0. `cfg` may be NULL (automatic).
 * Errors: LOWBIT_ERR_SHAPE (inconsistent n/k/padding/group, m < 1, ldx < k), LOWBIT_ERR_ALIGNMENT,
 * LOWBIT_ERR_INVALID_ARGUMENT (NULL pointers, bad dtype or config, workspace too small),
 * LOWBIT_ERR_NO_KERNEL (unknown format), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_wo_gemm(const lowbit_wo_weight *w, const void *x, int64_t ldx, void *y, int64_t m, int32_t dtype,
                             void *workspace, int64_t workspace_bytes, const lowbit_wo_config *cfg, int32_t num_sms,
                             void *stream);

/**
 * Dequantizes a tiled weight into a dense row-major [n, k] matrix (`ld_out` >= k elements per row) of
 * f16 or bf16, in the kernel's column order (act-order weights: columns permuted by `perm`). Scaling in f32,
 * one rounding: bit-identical to lowbit-core for INT and BitMoD formats, within 1 ulp for tables. The
 * large-M path runs this and then cuBLAS.
 */
lowbit_status lowbit_wo_dequantize(const lowbit_wo_weight *w, void *out, int64_t ld_out, int32_t dtype, void *stream);

/**
 * Act-order helper: out[m][j] = x[m][perm[j]] for j < k (`out` dense [m, k]); needs w->perm.
 */
lowbit_status lowbit_wo_gather_columns(const lowbit_wo_weight *w, const void *x, int64_t ldx, int64_t m, void *out,
                                       int32_t dtype, void *stream);

/* ---------------------------------------------------------------------------------------------
 * int8 tensor-core GEMM (kernels/int8): W8A8 and W4A8.
 *
 *   acc[m, n] = sum_k X[m, k] * Wq[n, k]          exact int32 (X int8 [m, k] row-major, `ldx` bytes apart)
 *   y[m, n]   = (((f32(acc) * rs[m]) * cs[n] + rc[m] * cc[n]) + rc2[m] * cc2[n]) + bias[n]
 *             (each step rounded once, f32; each correction one fused multiply-add; absent terms skipped)
 *
 * Wq is the int8 weight (LOWBIT_I8_W8) or the 4-bit weight expanded to int8 as q * s, q = u - 8 in -8..7,
 * s the integer group scale 1..16 (LOWBIT_I8_W4; lowbit-core int8::W4A8Weight). The output is f16, bf16,
 * int8 (sat(rne(y / out_scale)), one out_scale or one per column) or the raw int32 accumulator.
 * Limits (LOWBIT_ERR_SHAPE): 1 <= m < 2^31, 1 <= n <= 128 * 65535; k >= 16 and k % 16 == 0 (W8) / k >= 32
 * and k % 32 == 0 (W4); W4 group_len a multiple of 32 dividing k. Alignment (LOWBIT_ERR_ALIGNMENT): x, codes
 * 16-byte aligned, ldx a multiple of 16; y aligned to its element, ldy >= n.
 * ------------------------------------------------------------------------------------------- */

/** Weight formats of lowbit_i8_weight.format. */
enum lowbit_i8_wformat {
    /** int8 codes. */
    LOWBIT_I8_W8 = 0,
    /** 4-bit codes u = q + 8 in lowbit-core int8::pack_w4's fragment order (docs/formats.md). */
    LOWBIT_I8_W4 = 1,
    /**
     * 4-bit unsigned codes u in 0..15 in the W4 layout, multiplied as u (acc = sum_k x u; the bipolar GEMM's int8
     * mapping turns it into the value product in its epilogue); per-channel (group_scales NULL); streaming kernel
     * only (m <= 16, LOWBIT_ERR_NO_KERNEL otherwise). The bipolar GEMM's int8 mapping at small M.
     */
    LOWBIT_I8_BIP4 = 2,
    /**
     * 2-bit unsigned codes u in 0..3, multiplied as u (as BIP4), lowbit-core int8::tile_bip2:
     * [ceil(n/128)][ceil(k/256)] blocks of 128 rows x 256 columns (8192 bytes, same chunk order as W4); k % 32 == 0;
     * per-channel; streaming kernel only (m <= 16).
     */
    LOWBIT_I8_BIP2 = 3
};

/** Output types of lowbit_i8_epilogue.out_dtype. */
enum lowbit_i8_out_dtype {
    /** f16 (round to nearest). */
    LOWBIT_I8_OUT_F16 = 0,
    /** bf16 (round to nearest). */
    LOWBIT_I8_OUT_BF16 = 1,
    /** int8: sat(rne(y / out_scale)) to -128..127. */
    LOWBIT_I8_OUT_I8 = 2,
    /** The raw int32 accumulator (no scales). */
    LOWBIT_I8_OUT_I32 = 3
};

/** Kernel paths (lowbit_i8_config.path). */
enum lowbit_i8_path {
    /** wgmma on sm_90 when compiled for sm_90a, else mma.sync. */
    LOWBIT_I8_PATH_AUTO = 0,
    /** mma.sync m16n8k32 (IMMA), any sm_80+ GPU. */
    LOWBIT_I8_PATH_MMA = 1,
    /** wgmma m64nNk32 s8 (sm_90a only; LOWBIT_ERR_NO_KERNEL elsewhere). */
    LOWBIT_I8_PATH_WGMMA = 2,
    /**
     * Small-M weight streaming on mma.sync (IMMA, sm_80+; kernels/int8/stream.cu): M <= 16; W4 per-channel or
     * with groups of a multiple of 128 columns (LOWBIT_ERR_INVALID_ARGUMENT otherwise); bx 8 or 16 (>= M).
     * The automatic plan takes it at M <= 16 (W8, W4 per-channel or with such groups, the bipolar formats).
     */
    LOWBIT_I8_PATH_STREAM = 3,
    /**
     * Warp-specialized persistent wgmma kernel for large M (sm_90a only, W8 and W4, bx 64, 128 or 256; split-K
     * only where its plan finds the output tiles leave SMs idle, never forced: splits must be 0 or 1): TMA / bulk
     * copies by a producer warp, mbarrier ring, two consumer warpgroups (W4 expanded to int8 in shared memory;
     * kernels/int8/ws_gemm.cu). The automatic plan takes it for M >= 256 where it runs.
     */
    LOWBIT_I8_PATH_WS = 4
};

/** An int8 GEMM weight in device memory. */
typedef struct lowbit_i8_weight {
    /** One of enum lowbit_i8_wformat. */
    int32_t format;
    /** Rows (output features) and columns (input features). */
    int32_t n, k;
    /**
     * Tiled codes (lowbit-core int8::tile_weight): [ceil(n/128)][ceil(k/128)] blocks of 128 rows x 128 columns,
     * 16384 bytes (W8) or 8192 bytes (W4), zero-padded; inside a block byte (row r, 16-byte chunk c) sits at
     * c * 2048 + (r / 8) * 128 + (r % 8) * 16 (W4 chunks hold the packed words of 32 columns). 16-byte aligned.
     */
    const void *codes;
    /** W4 only: [n][k / group_len] integer group scales 1..16, or NULL for all 1 (per-channel). */
    const uint8_t *group_scales;
    /** W4 only: columns per group scale (a multiple of 32 dividing k); ignored when group_scales is NULL. */
    int32_t group_len;
} lowbit_i8_weight;

/** The fused epilogue: per-row / per-column scale and correction vectors (device pointers, f32). */
typedef struct lowbit_i8_epilogue {
    /** One of enum lowbit_i8_out_dtype. */
    int32_t out_dtype;
    /** [m] row scales (per-token activation scales), or NULL: row_scale_value for every row. */
    const float *row_scale;
    /** Per-tensor row scale used when row_scale is NULL. */
    float row_scale_value;
    /** [n] column scales (weight channel scales), or NULL for 1. */
    const float *col_scale;
    /** [m] and [n] rank-1 correction y += row_corr[m] * col_corr[n]: both or neither. */
    const float *row_corr;
    /** See row_corr. */
    const float *col_corr;
    /** [n] bias, or NULL. */
    const float *bias;
    /** Output scale of LOWBIT_I8_OUT_I8 (finite, > 0) when out_scales is NULL. */
    float out_scale;
    /**
     * [n] per-column output scales of LOWBIT_I8_OUT_I8 (q[m, n] = sat(rne(y / out_scales[n]))), or NULL for
     * out_scale everywhere. The values are not read by the launcher: each must be finite and > 0 (a caller bug
     * otherwise gives saturated codes, never a fault). Ignored by the other output types.
     */
    const float *out_scales;
    /**
     * [m] and [n] second rank-1 correction y += row_corr2[m] * col_corr2[n] (after the first, before the bias):
     * both or neither (NULL: absent, no cost). The bipolar GEMM's int8 mapping of 8-bit activations with 8-bit
     * weights (or with weight offsets) needs two rank-1 terms. The bipolar plane kernels take no second term
     * (LOWBIT_ERR_INVALID_ARGUMENT when set there).
     */
    const float *row_corr2;
    /** See row_corr2. */
    const float *col_corr2;
} lowbit_i8_epilogue;

/** Launch overrides (tests, benchmarks); 0 in a field = automatic. */
typedef struct lowbit_i8_config {
    /** One of enum lowbit_i8_path. */
    int32_t path;
    /** Activation rows per CTA: wgmma 8, 16, 64, 128, 256 (256: W8 only); mma.sync 16 or 64. */
    int32_t bx;
    /** Split-K factor (>= 1). */
    int32_t splits;
} lowbit_i8_config;

/**
 * Workspace bytes lowbit_i8_gemm needs for this weight, m and config (the split-K int32 partial sums -- on the
 * streaming path one slab per K split and row block, summed by the last CTA to arrive -- and their arrival
 * counters), 0 when none, -1 for invalid arguments. `num_sms` <= 0 queries the current device.
 */
int64_t lowbit_i8_gemm_workspace_bytes(const lowbit_i8_weight *w, int64_t m, const lowbit_i8_config *cfg,
                                       int32_t num_sms);

/**
 * y[m, n] = epilogue(X[m, k] * Wq^T) (see above). `y` has `ldy` elements per row of the output type.
 * `workspace` (256-byte aligned) holds lowbit_i8_gemm_workspace_bytes() bytes (may be NULL when 0); it must
 * be zero before its first use, and every completed call leaves it zero again (the split-K partial sums and
 * arrival counters clean up after themselves), so one workspace serves any number of calls on one stream
 * (never two concurrent calls). `cfg` may be NULL.
 * Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT (NULL pointers, unknown enum,
 * a lone correction vector (of either pair), out_scale <= 0 for int8 output, bad config, workspace too small),
 * LOWBIT_ERR_NO_KERNEL (wgmma requested where it cannot run), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_i8_gemm(const lowbit_i8_weight *w, const int8_t *x, int64_t ldx, int64_t m,
                             const lowbit_i8_epilogue *epi, void *y, int64_t ldy, void *workspace,
                             int64_t workspace_bytes, const lowbit_i8_config *cfg, int32_t num_sms, void *stream);

/** Whether the wgmma path can run on the current device (sm_90 with sm_90a code compiled in): 1 or 0. */
int32_t lowbit_i8_wgmma_available(void);

/**
 * Activation quantization, one pass per row (token): f16/bf16 X[m, k] (`ldx` elements apart) ->
 *   h = x + residual (then residual := h, rounded to the dtype) when `residual` is not NULL;
 *   h = h * rsqrt(mean(h^2) + eps) * gamma when `gamma` ([k], dtype) is not NULL (RMSNorm);
 *   h = FWHT_H(h) / sqrt(H) on each block of `hadamard` = H contiguous columns when H > 1 (power of two,
 *       2..8192, dividing k);
 *   q = sat127(rne(h / s)) with s = absmax(h) / 127 per row (1 for an all-zero row) written to scales[m]
 *       when static_scale <= 0, else s = static_scale (per-tensor; `scales` may be NULL).
 * q is int8 [m][ldq] (codes in -127..127). Limits: 1 <= k <= 16384 (one row in shared memory); x, residual,
 * gamma 2-byte and scales 4-byte aligned. Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT,
 * LOWBIT_ERR_INVALID_ARGUMENT (NULL x / q, NULL scales with a dynamic scale, bad dtype, NaN / inf scale or eps).
 */
lowbit_status lowbit_act_quant(const void *x, int64_t ldx, void *residual, const void *gamma, float eps,
                               int32_t hadamard, float static_scale, int8_t *q, int64_t ldq, float *scales,
                               int64_t m, int64_t k, int32_t dtype, void *stream);

/* -------------------------------------------------------------------------------------------
 * Bipolar-INT GEMM on bit planes (kernels/bipolar, APT-LLM): BGMMA (wgmma b1 .and.popc) on sm_90a.
 * Y_int[m, n] = sum_k v_x[m, k] * v_w[n, k] exact in int32 for p-bit activations x q-bit weights, where a
 * b-bit code u means v = 2u - (2^b - 1); then the int8 GEMM's epilogue (lowbit_i8_epilogue, the same formula:
 * y = f32(Y_int) * row_scale[m] * col_scale[n] (+ row_corr[m] * col_corr[n]) (+ bias[n]), or Y_int for
 * LOWBIT_I8_OUT_I32; row_corr2 / col_corr2 must be NULL here). The int8 mapping of the same product runs through
 * lowbit_i8_gemm (lowbit-cuda chooses).
 * Limits (LOWBIT_ERR_SHAPE): 1 <= rows < 2^31, 1 <= k, k * (2^p - 1) * (2^q - 1) < 2^31, ld >= ceil(k / 32),
 * plane_stride >= rows * ld; plane bits beyond k zero up to the next multiple of 128 columns (the kernel reads
 * whole 16-byte chunks). Alignment (LOWBIT_ERR_ALIGNMENT): planes 16-byte aligned, ld a multiple of 4
 * words, plane_stride a multiple of 4, row sums 4-byte aligned. LOWBIT_ERR_NO_KERNEL: no plane instance for
 * (p, q, bx) or not an sm_90 device with sm_90a code. Padding bits beyond k must be zero. ceil(m / bx) <= 65535.
 * ------------------------------------------------------------------------------------------- */

/** One operand of the bipolar plane GEMM in device memory. */
typedef struct lowbit_bip_operand {
    /** Bit planes: plane i (bit i of every code) at planes + i * plane_stride, rows of `ld` words; column k is
     *  bit k % 32 of word k / 32; bits beyond k zero. */
    const uint32_t *planes;
    /** Words per plane row (a multiple of 4, >= ceil(k / 32)). */
    int64_t ld;
    /** Words between planes (a multiple of 4, >= rows * ld). */
    int64_t plane_stride;
    /** [rows] sum over k of the row's values v (int32). */
    const int32_t *row_sums;
    /** Bits per code, 1..8. */
    int32_t bits;
    /** Rows: M (activations) or N (weights). */
    int32_t rows;
} lowbit_bip_operand;

/** Launch overrides of the plane GEMM; 0 = automatic. */
typedef struct lowbit_bip_config {
    /** Activation rows per CTA (an instance's: 8, or the large tile of kernels/bipolar/README.md). */
    int32_t bx;
    /** Split-K factor (>= 1). */
    int32_t splits;
    /** Kernel: LOWBIT_BIP_PATH_AUTO (0: the warp-specialized kernel where it has an instance, bx and splits are
     *  automatic and its tiles fill every SM, else the synchronous one), LOWBIT_BIP_PATH_SYNC (the synchronous
     *  cp.async kernel, every instance) or LOWBIT_BIP_PATH_WS (the warp-specialized persistent kernel, sm_90a:
     *  TMA producer warp + two BGMMA consumer warpgroups, no split-K; bx 0 or lowbit_bip_ws_tile's). */
    int32_t path;
} lowbit_bip_config;

#define LOWBIT_BIP_PATH_AUTO 0
#define LOWBIT_BIP_PATH_SYNC 1
#define LOWBIT_BIP_PATH_WS 2

/** Activation rows per tile of the warp-specialized plane kernel for p-bit activations x q-bit weights when it
 *  has an instance that runs on the current device (p * q <= 8, q <= 4, sm_90a), else 0. */
int32_t lowbit_bip_ws_tile(int32_t p, int32_t q);

/** 1 when the plane GEMM has an instance for p-bit activations x q-bit weights with `bx` activation rows per
 *  CTA (0 = any) that runs on the current device, else 0. */
int32_t lowbit_bip_plane_available(int32_t p, int32_t q, int32_t bx);

/** Workspace bytes of lowbit_bip_gemm (split-K partial sums and counters), 0 when none, -1 for invalid
 *  arguments. */
int64_t lowbit_bip_gemm_workspace_bytes(const lowbit_bip_operand *x, const lowbit_bip_operand *w, int32_t k,
                                        const lowbit_bip_config *cfg, int32_t num_sms);

/**
 * y = epilogue(Y_int) for X (x, p = x->bits) and W (w, q = w->bits), see above. `workspace` as for
 * lowbit_i8_gemm (zero before first use, left zero, one stream at a time). `cfg` may be NULL.
 * Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT, LOWBIT_ERR_NO_KERNEL,
 * LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_bip_gemm(const lowbit_bip_operand *x, const lowbit_bip_operand *w, int32_t k,
                              const lowbit_i8_epilogue *epi, void *y, int64_t ldy, void *workspace,
                              int64_t workspace_bytes, const lowbit_bip_config *cfg, int32_t num_sms, void *stream);

/**
 * Activation quantization to p-bit bipolar codes, one CTA per row: f16/bf16 X[m, k] (`ldx` elements apart) ->
 *   s = absmax(row) / (2^p - 1) (IEEE f32 division; 0 for an all-zero row), t = x / s (0 when s = 0),
 *   u = clamp(floor(t / 2) + 2^(p-1), 0, 2^p - 1) (the nearest odd value; lowbit-core BipolarMatrix::quantize);
 *   scales[m] = s; row_sums[m] = sum_k (2u - (2^p - 1)); row_corr[m] = s * f32(row_sums[m]) when row_corr is not
 *   NULL (the epilogue's row correction of weight offsets: sum_k x~ * b_w = b_w * s * row_sums);
 *   planes (may be NULL): bit planes [p][m][ld] as lowbit_bip_operand (ld a multiple of 4 words >= ceil(k/32),
 *   plane i at planes + i * plane_stride; padding bits and words up to the next multiple of 4 written 0);
 *   codes8 (may be NULL): int8 [m][ldc]: the code u when p <= 7, the signed code u - 128 when p = 8 (the int8
 *   mapping's operand: narrow non-negative codes switch fewer tensor-core bits than odd values, kernels/bipolar
 *   NOTES "operand codes").
 * Limits: 1 <= p <= 8, 1 <= k < 2^31; x 2-byte, scales/row_sums 4-byte, planes 16-byte aligned.
 * Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT (NULL x / scales / row_sums, both
 * outputs NULL, bad dtype), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_bip_act_quant(const void *x, int64_t ldx, int64_t m, int64_t k, int32_t dtype, int32_t p,
                                   float *scales, int32_t *row_sums, float *row_corr, uint32_t *planes, int64_t ld,
                                   int64_t plane_stride, int8_t *codes8, int64_t ldc, void *stream);

/* ---------------------------------------------------------------------------------------------
 * State-space models, Mamba1 side and shared pieces (kernels/ssm): int8 causal depthwise conv1d, the
 * Mamba1 selective scan with int8 inputs, gated RMSNorm -> FWHT -> int8. Quantization is symmetric:
 * value = code * scale, codes -127..127, quantize = sat127(rne(v / s)). Activations are row-major
 * [batch, len, channels] with `ld*` elements between consecutive tokens (rows), so a slice of a wider
 * projection output can be passed without a copy; token (b, t) starts at (b * len + t) * ld.
 * ------------------------------------------------------------------------------------------- */

/** Largest conv1d width the kernels take (Mamba uses 4). */
#define LOWBIT_SSM_MAX_CONV_WIDTH 4
/** Largest Mamba1 d_state the selective scan takes. */
#define LOWBIT_SSM_MAX_DSTATE 64
/** Largest row length of lowbit_ssm_gated_rmsnorm_quant (one row in shared memory). */
#define LOWBIT_SSM_MAX_NORM_DIM 16384

/**
 * Causal depthwise conv1d on int8 activations, prefill over a whole sequence:
 *   y[b, t, c] = sum_{j < W} weight[c, j] * (x[b, t - W + 1 + j, c] * x_scale[c]) + bias[c]
 * with x = 0 before t = 0 (each sequence starts from an empty state), then SiLU when `silu` != 0, then
 * q[b, t, c] = sat127(rne(y / out_scale[c])). f32 arithmetic. x int8 [batch, len, channels] (`ldx`),
 * y int8 [batch, len, channels] (`ldy`, must not overlap x); x_scale, bias (may be NULL), out_scale f32 [channels];
 * weight f32 [channels, width]. Limits: 1 <= width <= LOWBIT_SSM_MAX_CONV_WIDTH, batch <= 65535,
 * batch * len < 2^31, channels < 2^31; scale / weight / bias 4-byte aligned; out_scale entries > 0 (not checked:
 * device memory).
 * Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT (NULL pointer), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_ssm_conv1d_int8(const int8_t *x, int64_t ldx, int64_t batch, int64_t len, int64_t channels,
                                     const float *x_scale, const float *weight, int32_t width, const float *bias,
                                     const float *out_scale, int32_t silu, int8_t *y, int64_t ldy, void *stream);

/**
 * One decode step of the same conv1d: conv_state int8 [batch, channels, width] holds the last `width` input
 * codes of each channel (oldest first, same x_scale); it is shifted left by one and x[b, c] appended (in
 * place), then y[b, c] = quant(act(sum_j weight[c, j] * state[b, c, j] * x_scale[c] + bias[c])) as above.
 * x int8 [batch, channels] (`ldx`), y int8 [batch, channels] (`ldy`). Limits and errors as the prefill.
 */
lowbit_status lowbit_ssm_conv1d_update_int8(const int8_t *x, int64_t ldx, int8_t *conv_state, int64_t batch,
                                            int64_t channels, const float *x_scale, const float *weight,
                                            int32_t width, const float *bias, const float *out_scale, int32_t silu,
                                            int8_t *y, int64_t ldy, void *stream);

/** Inputs of the Mamba1 selective scan (lowbit_ssm_selective_scan_int8 / lowbit_ssm_state_update_int8). */
typedef struct lowbit_ssm_scan_params {
    /** u (the conv output x) int8 [batch, len, dim], `ldu` elements per token; scale per channel [dim]. */
    const int8_t *u;
    int64_t ldu;
    const float *u_scale;
    /** dt int8 [batch, len, dim] (`lddt`), per-tensor scale; dt_bias f32 [dim] (may be NULL = 0). */
    const int8_t *dt;
    int64_t lddt;
    float dt_scale;
    const float *dt_bias;
    /** delta = softplus(dt * dt_scale + dt_bias) + dt_add (softplus skipped when delta_softplus == 0). */
    float dt_add;
    int32_t delta_softplus;
    /** A f32 [dim, dstate] (already negative: -exp(A_log)). */
    const float *a;
    /** B and C int8 [batch, len, dstate] (`ldb` / `ldc`), per-tensor scales. */
    const int8_t *b;
    int64_t ldb;
    float b_scale;
    const int8_t *c;
    int64_t ldc;
    float c_scale;
    /** D skip f32 [dim] (may be NULL = none). */
    const float *d_skip;
    /** z gate int8 [batch, len, dim] (`ldz`, may be NULL = no gate), per-tensor scale. */
    const int8_t *z;
    int64_t ldz;
    float z_scale;
    /** Sizes. dstate <= LOWBIT_SSM_MAX_DSTATE. */
    int64_t batch;
    int64_t len;
    int64_t dim;
    int64_t dstate;
    /** Nonzero: scan t = len - 1 down to 0 (the backward half of a bidirectional Mamba). */
    int32_t reverse;
} lowbit_ssm_scan_params;

/**
 * Mamba1 selective scan with int8 inputs, f32 arithmetic and state: for every (b, d), over t in scan order,
 *   delta = softplus(dt * dt_scale + dt_bias[d]) + dt_add         (softplus(v) = v for v > 20)
 *   h[n]  = exp(delta * A[d, n]) * h[n] + delta * (B[b, t, n] * b_scale) * (u * u_scale[d])
 *   y     = sum_n (C[b, t, n] * c_scale) * h[n] + d_skip[d] * u * u_scale[d];  y *= silu(z * z_scale) if z
 * h starts at initial_state f32 [batch, dim, dstate] (NULL: zeros); the last h goes to final_state (same shape,
 * may be NULL; may equal initial_state: each element is read before it is written). y is f16 [batch, len, dim]
 * (`ldy`). Limits: 1 <= dstate <= LOWBIT_SSM_MAX_DSTATE, batch <= 65535, batch * len < 2^31, dim < 2^31;
 * float pointers 4-byte, y 2-byte aligned; scales finite. Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT,
 * LOWBIT_ERR_INVALID_ARGUMENT, LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_ssm_selective_scan_int8(const lowbit_ssm_scan_params *p, const float *initial_state,
                                             float *final_state, void *y, int64_t ldy, void *stream);

/**
 * One decode step of the selective scan: p->len must be 1 (inputs [batch, dim] / [batch, dstate] with `ld*`
 * elements between batch rows) and p->reverse 0; state f32 [batch, dim, dstate] is updated in place; y f16
 * [batch, dim] (`ldy`). Same arithmetic, limits and errors as lowbit_ssm_selective_scan_int8.
 */
lowbit_status lowbit_ssm_state_update_int8(const lowbit_ssm_scan_params *p, float *state, void *y, int64_t ldy,
                                           void *stream);

/**
 * Gated RMSNorm -> Hadamard -> int8, one CTA per row (token): y f16 [rows, dim] (`ldy`) ->
 *   g = y * silu(z * z_scale) when z (int8 [rows, dim], `ldz`) is not NULL, else y;
 *   when norm != 0: g = g * rsqrt(mean(g^2 over its group) + eps) on each group of `group_size` contiguous
 *       channels (group_size divides dim; Mamba2's norm_before_gate = False);
 *   g = g * weight[i] when weight (f32 [dim]) is not NULL;
 *   g = FWHT_H(g) / sqrt(H) on each block of `hadamard` = H contiguous channels when H > 1 (power of two
 *       dividing dim, the lowbit_act_quant transform);
 *   q = sat127(rne(g / out_scale)) (static per-tensor scale), int8 [rows, dim] (`ldq`).
 * Limits: 1 <= dim <= LOWBIT_SSM_MAX_NORM_DIM, rows < 2^31; y, z rows, weight aligned to their element size.
 * Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT (NULL y / q, out_scale <= 0 or not
 * finite, eps < 0), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_ssm_gated_rmsnorm_quant(const void *y, int64_t ldy, const int8_t *z, int64_t ldz, float z_scale,
                                             const float *weight, int64_t rows, int64_t dim, int64_t group_size,
                                             float eps, int32_t norm, int32_t hadamard, float out_scale, int8_t *q,
                                             int64_t ldq, void *stream);

/**
 * Residual add -> RMSNorm -> FWHT -> int8 with an f32 residual stream (kernels/int8/act_quant.cu; between two
 * quantized Mamba blocks with residual_in_fp32, Quamba2's fused "add + norm -> int8"), per row m:
 *   r = residual[m] + x[m] in f32 (x f16 / bf16 `dtype`, NULL: r = residual[m]); r written to out[m] when `out`
 *       is not NULL (f32, may equal residual);
 *   h = r rounded to `dtype` (the block's cast before its norm), then as lowbit_act_quant with a static scale:
 *   h = h * rsqrt(mean(h^2) + eps) * gamma (gamma [k] in `dtype`, NULL: no norm), FWHT on blocks of `hadamard`,
 *   q = sat127(rne(h / static_scale)).
 * Limits: 8 <= k <= 8192, k % 8 == 0, rows < 2^31; x, residual, out, gamma 16-byte aligned with ldx % 8 == 0 and
 * ldr, ldo % 4 == 0; q 8-byte aligned with ldq % 8 == 0. Errors: LOWBIT_ERR_SHAPE, LOWBIT_ERR_ALIGNMENT,
 * LOWBIT_ERR_INVALID_ARGUMENT (NULL residual / q, bad dtype, static_scale not finite and > 0, bad eps).
 */
lowbit_status lowbit_ssm_residual_rmsnorm_quant(const void *x, int64_t ldx, const float *residual, int64_t ldr,
                                                float *out, int64_t ldo, const void *gamma, float eps,
                                                int32_t hadamard, float static_scale, int8_t *q, int64_t ldq,
                                                int64_t m, int64_t k, int32_t dtype, void *stream);

/* ---------------------------------------------------------------------------------------------
 * Mamba2 SSD (state-space duality) with int8 inputs (kernels/ssm/ssd_*.cu). Head h of `nheads` uses group
 * g = h / (nheads / ngroups) of B and C. Per token, in fp32:
 *   delta = clamp(softplus(dt_q * dt_scale + dt_bias[h]), dt_lo, dt_hi)    (softplus(v) = v for v > 20)
 *   state[p, n] = exp(delta * A[h]) * state[p, n] + delta * x[p] * B[n]
 *   y[p] = sum_n state[p, n] * C[n] + D[h] * x[p]                            (y written as f16)
 * with x = x_q * x_scale[h * headdim + p], B = B_q * B_scale[g], C = C_q * C_scale[g] (symmetric int8 codes).
 * Layouts (row-major; a "token row" may be a slice of a wider projection output, hence the strides):
 *   x int8 [batch, len, nheads, headdim], token rows `ldx` >= nheads * headdim elements apart;
 *   dt int8 [batch, len, nheads], rows `lddt` >= nheads apart; B, C int8 [batch, len, ngroups, dstate], rows
 *   `ldbc` >= ngroups * dstate apart (B and C share the stride); y f16 [batch, len, nheads, headdim]
 *   contiguous; states f32 [batch, nheads, headdim, dstate] contiguous; x_scale f32 [nheads * headdim];
 *   dt_bias, A, D f32 [nheads]; B_scale, C_scale f32 [ngroups]. The decode step drops the `len` axis.
 * Limits (LOWBIT_ERR_SHAPE): batch, nheads <= 65535; nheads % ngroups == 0; batch * len < 2^31; headdim <=
 * 65536; nheads * headdim < 2^31. Alignment (LOWBIT_ERR_ALIGNMENT): f32 arrays 4-byte, y 2-byte (int8
 * arrays: none; 16-byte aligned rows take a vectorized path). dt_lo <= dt_hi, dt_lo finite, dt_scale finite
 * (LOWBIT_ERR_INVALID_ARGUMENT otherwise).
 * ------------------------------------------------------------------------------------------- */

/** Kernel variants of lowbit_ssd_chunk_scan (its `variant` argument). */
enum lowbit_ssd_variant {
    /** cp.async staging when B, C and x rows are 16-byte aligned multiples of 16 codes, else direct loads. */
    LOWBIT_SSD_AUTO = 0,
    /** Direct global loads at the start of every chunk (any layout). */
    LOWBIT_SSD_DIRECT = 1,
    /** The next chunk's int8 tiles staged with cp.async during the current chunk; LOWBIT_ERR_NO_KERNEL unless
     *  dstate, headdim, ldx and ldbc are multiples of 16 and x, Bm, Cm are 16-byte aligned. */
    LOWBIT_SSD_ASYNC = 2
};

/**
 * SSD prefill over whole sequences (chunked algorithm on tensor cores; see kernels/ssm/README.md).
 * initial_state may be NULL (zero state); final_state may be NULL (not written); dt_bias and D may be NULL
 * (zero). Limits: len >= 1, 1 <= dstate <= 256. The state passes through f16 for the inter-chunk product, so
 * |state| must stay below 65504. `variant`: enum lowbit_ssd_variant (0 = automatic). Errors: LOWBIT_ERR_SHAPE,
 * LOWBIT_ERR_ALIGNMENT, LOWBIT_ERR_INVALID_ARGUMENT (NULL required pointer, bad dt limits, unknown variant),
 * LOWBIT_ERR_NO_KERNEL (LOWBIT_SSD_ASYNC on a layout it cannot take), LOWBIT_ERR_CUDA.
 */
lowbit_status lowbit_ssd_chunk_scan(const int8_t *x, const float *x_scale, const int8_t *dt, float dt_scale,
                                    const float *dt_bias, const float *A, const int8_t *Bm, const float *B_scale,
                                    const int8_t *Cm, const float *C_scale, const float *D,
                                    const float *initial_state, float dt_lo, float dt_hi, void *y,
                                    float *final_state, int64_t batch, int64_t len, int64_t nheads, int64_t headdim,
                                    int64_t ngroups, int64_t dstate, int64_t ldx, int64_t ldbc, int64_t lddt,
                                    int32_t variant, void *stream);

/**
 * One SSD decode step: `state` f32 [batch, nheads, headdim, dstate] is updated in place (16-byte loads when
 * dstate % 4 == 0 and state is 16-byte aligned), y f16 [batch, nheads, headdim]. Inputs as above without the
 * `len` axis (x rows `ldx`, dt rows `lddt`, B/C rows `ldbc` apart, per batch entry). Limits: 1 <= dstate <=
 * 2^20. Errors as lowbit_ssd_chunk_scan (NULL state -> LOWBIT_ERR_INVALID_ARGUMENT).
 */
lowbit_status lowbit_ssd_state_update(float *state, const int8_t *x, const float *x_scale, const int8_t *dt,
                                      float dt_scale, const float *dt_bias, const float *A, const int8_t *Bm,
                                      const float *B_scale, const int8_t *Cm, const float *C_scale, const float *D,
                                      float dt_lo, float dt_hi, void *y, int64_t batch, int64_t nheads,
                                      int64_t headdim, int64_t ngroups, int64_t dstate, int64_t ldx, int64_t ldbc,
                                      int64_t lddt, void *stream);

#ifdef __cplusplus
} /* extern "C" */
static_assert(sizeof(lowbit_status) == 8, "lowbit_status is two int32_t");
#endif

#endif /* LOWBIT_KERNELS_H */
