// Weight-only GEMM, small-M streaming kernel (M <= 16, mma.sync m16n8k16):
//   Y[M, N] = X[M, K] * dequant(W)[N, K]^T.
//
// Algorithm
//   Decode-time GEMV/GEMM is a weight stream: every weight byte is read once from HBM and used by one
//   warp. The tiled layout (lowbit-core repack.rs) stores a strip's k-steps one after another and the
//   strips one after another, so the whole weight is ONE linear sequence of `strips * ksteps` k-steps of
//   512 bytes (plus the 3-bit high-bit stream and the group metadata, linear in the same order). This
//   kernel cuts that sequence into equal contiguous ranges, one per warp of a persistent grid that
//   exactly fills the GPU, and every warp streams its range with P k-steps of 16-byte loads in flight,
//   crossing strip boundaries without restarting its pipeline.
//   - No shared memory for X and no barriers: X (M <= 16 rows, a few KB to a few hundred KB) is read
//     straight into the mma B fragments with 4-byte loads through L1 (every SM re-reads the same X, so
//     after the first touch it is an L1/L2 hit); lanes whose B column is a row >= M load nothing.
//   - Decoding and the per-group f32 rescale are those of the mma.sync kernel (wo_gemm.cuh).
//   - A strip is usually shared by a few consecutive warps. Each contributor adds its f32 partial into a
//     workspace with atomics and then bumps the strip's arrival counter; the last to arrive reads the
//     sums back with atomicExch(.., 0) (which also re-zeroes them), writes Y and resets the counter. A
//     strip owned by one warp is written directly. The workspace is therefore zero before and after every
//     launch, so one launch does the whole GEMM: no memset, no split-K conversion kernel.
//
// Partitioning
//   block = 8 independent warps; grid = resident blocks of the device (occupancy x SMs) or fewer when the
//   weight is small (at least kMinStepsPerWarp k-steps per warp). Warp w streams k-steps
//   [w * per, min((w + 1) * per, strips * ksteps)) of the linear sequence (Args::steps_per_split = per).
//
// Limits
//   1 <= M <= 8 * MT (MT = 1 or 2 m-subtiles of 8 rows), any N, K (X columns >= K read as zero; X rows
//   need only 2-byte alignment: 4-byte fragment loads when K, ldx are even and X is 4-byte aligned).
//   Workspace: f32 [M, N] partial sums + u32 [strips] counters, zero-filled before the first launch
//   (every launch leaves it zero-filled). Floating-point atomics make the summation order, and so the
//   last bits of Y, run-to-run nondeterministic when a strip has several contributors.
#pragma once

#include "lowbit/wo_gemm.cuh"

namespace lowbit {
namespace wo {

// Fewest k-steps a warp streams: below this the pipeline fill dominates and fewer warps do better.
constexpr int kMinStepsPerWarp = 8;

// Loads 2 consecutive elements of X as one B-fragment register; zero outside the matrix.
template <typename T>
__device__ __forceinline__ uint32_t load_x_pair(const T* row, int k, int kmax, bool vec) {
    if (vec) {
        return k < kmax ? __ldg(reinterpret_cast<const uint32_t*>(row + k)) : 0u;
    }
    // Unaligned X or odd K: two 2-byte loads, each bounds-checked.
    const uint16_t* r = reinterpret_cast<const uint16_t*>(row);
    const uint32_t lo = k < kmax ? __ldg(r + k) : 0u;
    const uint32_t hi = k + 1 < kmax ? __ldg(r + k + 1) : 0u;
    return lo | (hi << 16);
}

template <class Fmt, typename T, int MT, int P>
__global__ void __launch_bounds__(kThreads, 2) stream_kernel(const Args p) {
    constexpr int TS = Fmt::kTiles, KSTEP = TS * 16;
    extern __shared__ __align__(128) unsigned char smem[];
    uint32_t* tab = reinterpret_cast<uint32_t*>(smem);

    const int warp = threadIdx.x >> 5, lane = threadIdx.x & 31, g = lane >> 2, t = lane & 3;
    if constexpr (Fmt::kIsLut) {
        // Pair tables in the output type (as in gemm_kernel); the kernel's only barrier.
        for (int i = threadIdx.x; i < p.n_tables * Fmt::kEntries; i += kThreads) {
            const int tb = i / Fmt::kEntries, e = i - tb * Fmt::kEntries;
            int c0, c1;
            Fmt::split(e, c0, c1);
            tab[i] = Pair<T>::pack(p.lut[tb * (1 << Fmt::kBits) + c0], p.lut[tb * (1 << Fmt::kBits) + c1]);
        }
        __syncthreads();
    }

    // 32-bit step indices: the launcher checks strips * ksteps < 2^31.
    const int per = p.steps_per_split;
    const int total = p.strips * p.ksteps;
    const int f_begin = (blockIdx.x * kWarps + warp) * per;
    const int f_end = f_begin + per < total ? f_begin + per : total;
    if (f_begin >= f_end) return;

    // ---- weight stream: P k-steps in flight, linear across strips ------------------------------------
    const uint32_t* wnext = p.words + (size_t(f_begin) * 32 + lane) * 4;
    const uint32_t* hnext = Fmt::kHasHi ? p.hi_words + (size_t(f_begin) * 32 + lane) * 2 : nullptr;
    int fload = f_begin;  // next k-step to load
    uint32_t wb[P][4], hb[P][2];
    auto load_w = [&](int i) {
        if (fload < f_end) {
            const uint4 v = ld_stream_u4(wnext);
            wb[i][0] = v.x, wb[i][1] = v.y, wb[i][2] = v.z, wb[i][3] = v.w;
            if constexpr (Fmt::kHasHi) {
                const uint2 h = ld_stream_u2(hnext);
                hb[i][0] = h.x, hb[i][1] = h.y;
            }
        }
        ++fload;
        wnext += 128;
        if constexpr (Fmt::kHasHi) hnext += 64;
    };
#pragma unroll
    for (int i = 0; i < P; ++i) load_w(i);

    // ---- position ---------------------------------------------------------------------------------------
    int strip = f_begin / p.ksteps;
    int step = f_begin - strip * p.ksteps;

    // ---- group metadata: linear over (strip, group) as well; three groups in flight behind the current --
    const int meta_total = p.strips * p.groups;
    const uint2* meta = reinterpret_cast<const uint2*>(p.meta) + g;
    auto load_meta = [&](int mi) -> uint2 { return mi < meta_total ? __ldg(meta + size_t(mi) * 8) : make_uint2(0, 0); };
    const int tile0 = step * TS;
    int gi = tile0 / p.gtiles, tig = tile0 - gi * p.gtiles;
    int mi = strip * p.groups + gi;
    const bool step_groups = p.gtiles >= TS;
    const int spg = step_groups ? p.gtiles / TS : 1;
    int sig = tig / TS;
    uint2 cur = load_meta(mi), nx1 = load_meta(mi + 1), nx2 = load_meta(mi + 2), nx3 = load_meta(mi + 3);
    GroupCtx ctx;
    auto set_ctx = [&](uint32_t aux) {
        Fmt::template ctx<T>(aux, ctx);
        if constexpr (Fmt::kIsLut) {
            ctx.tab_g = tab + (aux & 0xFF) * Fmt::kEntries;
            ctx.tab_g8 = tab + ((aux >> 8) & 0xFF) * Fmt::kEntries;
        }
    };
    set_ctx(cur.y);

    float acc[MT][4], accg[MT][4];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt)
#pragma unroll
        for (int e = 0; e < 4; ++e) acc[mt][e] = 0.f, accg[mt][e] = 0.f;
    auto add_group = [&]() {
        const float2 sc = __half22float2(*reinterpret_cast<const __half2*>(&cur.x));
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
            acc[mt][0] += sc.x * accg[mt][0], acc[mt][1] += sc.x * accg[mt][1];
            acc[mt][2] += sc.y * accg[mt][2], acc[mt][3] += sc.y * accg[mt][3];
#pragma unroll
            for (int e = 0; e < 4; ++e) accg[mt][e] = 0.f;
        }
    };
    auto flush = [&]() {  // end of a group: rescale, move the metadata ring on
        add_group();
        ++mi;
        cur = nx1;
        nx1 = nx2;
        nx2 = nx3;
        nx3 = load_meta(mi + 3);
        set_ctx(cur.y);
    };

    // ---- X: rows of the B fragments of this lane (column g of subtile mt = row mt*8 + g of X) -----------
    // MMA columns are independent and the epilogue drops columns >= M, so a lane whose column is a row
    // >= M simply re-reads row M - 1 (no predicate, no branch, and the loads coalesce with that row's).
    const T* x = static_cast<const T*>(p.x);
    const T* xrow[MT];
#pragma unroll
    for (int mt = 0; mt < MT; ++mt) xrow[mt] = x + size_t(min(mt * 8 + g, p.m - 1)) * p.ldx;
    const bool vec = p.x_vec;

    // Strip epilogue: C fragment (c0, c1) = row g, (c2, c3) = row g + 8 of the strip; columns 2t, 2t+1
    // are rows of Y.
    T* y = static_cast<T*>(p.y);
    uint32_t* counters = p.counters;
    auto finish_strip = [&](int s) {
        const int n0 = s * 16 + g, n1 = n0 + 8;
        const float cs0 = p.chan ? p.chan[n0] : 1.f, cs1 = p.chan ? p.chan[n1] : 1.f;
        // Contributors of strip s: the warps whose ranges meet [s * ksteps, (s + 1) * ksteps).
        const int first = s * p.ksteps / per, last = ((s + 1) * p.ksteps - 1) / per;
        const bool shared = last > first;
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int n = e < 2 ? n0 : n1;
                const int mm = mt * 8 + 2 * t + (e & 1);
                const float v = acc[mt][e] * (e < 2 ? cs0 : cs1);
                if (mm < p.m && n < p.n) {
                    if (shared) {
                        atomicAdd(p.ws + size_t(mm) * p.n + n, v);
                    } else {
                        y[size_t(mm) * p.n + n] = to_out<T>(v);
                    }
                }
                acc[mt][e] = 0.f;
            }
        }
        if (!shared) return;
        __threadfence();  // this warp's partials are visible before its arrival is
        __syncwarp();
        uint32_t arrived = 0;
        if (lane == 0) arrived = atomicAdd(counters + s, 1u);
        arrived = __shfl_sync(0xffffffffu, arrived, 0);
        if (arrived != uint32_t(last - first)) return;
        __threadfence();  // the other contributors' partials are visible to the reads below
#pragma unroll
        for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int n = e < 2 ? n0 : n1;
                const int mm = mt * 8 + 2 * t + (e & 1);
                if (mm < p.m && n < p.n) {
                    const float v = atomicExch(p.ws + size_t(mm) * p.n + n, 0.f);
                    y[size_t(mm) * p.n + n] = to_out<T>(v);
                }
            }
        }
        if (lane == 0) counters[s] = 0u;  // no other contributor touches it again in this launch
    };

    const int k_tail = p.k - (p.ksteps - 1) * KSTEP;  // valid columns of a strip's last k-step
    for (int f0 = f_begin; f0 < f_end; f0 += P) {
#pragma unroll
        for (int i = 0; i < P; ++i) {
            if (f0 + i < f_end) {
                // B fragments of this k-step: tile j = registers (b0, b1) at columns 16j + 2t, 16j + 8 + 2t.
                const int kb = step * KSTEP;
                const int kmax = step == p.ksteps - 1 ? k_tail : KSTEP;
                uint32_t bf[MT][TS][2];
                if (kmax == KSTEP && vec) {
                    // Interior k-step (uniform branch): unconditional 4-byte loads for the rows < M.
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
                        const uint32_t* xr = reinterpret_cast<const uint32_t*>(xrow[mt] + kb) + t;
#pragma unroll
                        for (int j = 0; j < TS; ++j) {
                            bf[mt][j][0] = __ldg(xr + 8 * j);
                            bf[mt][j][1] = __ldg(xr + 8 * j + 4);
                        }
                    }
                } else {
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) {
#pragma unroll
                        for (int j = 0; j < TS; ++j) {
                            bf[mt][j][0] = load_x_pair(xrow[mt] + kb, 16 * j + 2 * t, kmax, vec);
                            bf[mt][j][1] = load_x_pair(xrow[mt] + kb, 16 * j + 8 + 2 * t, kmax, vec);
                        }
                    }
                }
                auto tile = [&](int j) {
                    uint32_t a[4];
                    Fmt::template decode<T>(wb[i], hb[i], j, ctx, a);
#pragma unroll
                    for (int mt = 0; mt < MT; ++mt) mma_m16n8k16<T>(accg[mt], a, bf[mt][j][0], bf[mt][j][1]);
                };
                if (step_groups) {
#pragma unroll
                    for (int j = 0; j < TS; ++j) tile(j);
                    if (++sig == spg) {
                        sig = 0;
                        flush();
                    }
                } else {
#pragma unroll
                    for (int j = 0; j < TS; ++j) {
                        tile(j);
                        if (++tig == p.gtiles) {
                            tig = 0;
                            flush();
                        }
                    }
                }
                load_w(i);
                // Groups partition the padded K, so at the end of a strip the last group has just been
                // flushed and the metadata ring already holds the next strip's first groups.
                if (++step == p.ksteps) {
                    finish_strip(strip);
                    ++strip;
                    step = 0;
                }
            }
        }
    }
    if (step != 0) {
        // The range ends inside a strip: add the open group and hand in the partial.
        if (step_groups ? sig != 0 : tig != 0) add_group();
        finish_strip(strip);
    }
}

template <class Fmt>
constexpr size_t stream_smem_bytes(int n_tables) {
    return Fmt::kIsLut ? size_t(n_tables) * Fmt::kEntries * 4 : 0;
}

// k-steps in flight per lane.
template <class Fmt>
constexpr int stream_prefetch() {
    return 8;
}

template <class Fmt, typename T, int MT>
cudaError_t launch_stream_mt(const Args& a0, cudaStream_t s) {
    auto kern = stream_kernel<Fmt, T, MT, stream_prefetch<Fmt>()>;
    Args a = a0;
    const size_t smem = stream_smem_bytes<Fmt>(a.n_tables);
    int occ = 0;
    cudaOccupancyMaxActiveBlocksPerMultiprocessor(&occ, kern, kThreads, smem);
    cudaGetLastError();
    const int64_t total = int64_t(a.strips) * a.ksteps;
    const int64_t slots = int64_t(occ > 0 ? occ : 1) * (a.sms > 0 ? a.sms : 1);  // resident blocks
    int64_t blocks = (total + int64_t(kWarps) * kMinStepsPerWarp - 1) / (int64_t(kWarps) * kMinStepsPerWarp);
    blocks = blocks < slots ? blocks : slots;
    blocks = blocks < 1 ? 1 : blocks;
    const int64_t warps = blocks * kWarps;
    a.steps_per_split = int((total + warps - 1) / warps);
    blocks = (total + int64_t(kWarps) * a.steps_per_split - 1) / (int64_t(kWarps) * a.steps_per_split);
    kern<<<dim3(unsigned(blocks)), kThreads, smem, s>>>(a);
    return cudaGetLastError();
}

template <class Fmt, typename T>
cudaError_t launch_stream(const Args& a, int mt, cudaStream_t s) {
    return mt <= 1 ? launch_stream_mt<Fmt, T, 1>(a, s) : launch_stream_mt<Fmt, T, 2>(a, s);
}

}  // namespace wo
}  // namespace lowbit

// Defines the streaming launcher of one format (both output types, both m-tiles); used once per inst_*.cu.
#define LOWBIT_WO_INSTANTIATE_STREAM(NAME, FMT)                                                              \
    cudaError_t lowbit_wo_stream_##NAME(const lowbit::wo::Args& a, int dtype, int mt, cudaStream_t s) {      \
        return dtype == 0 ? lowbit::wo::launch_stream<FMT, __half>(a, mt, s)                                 \
                          : lowbit::wo::launch_stream<FMT, __nv_bfloat16>(a, mt, s);                         \
    }
