// lowbit/pdl.cuh: whether a launcher may use programmatic dependent launch (PDL).
//
// Kernels launched with cudaLaunchAttributeProgrammaticStreamSerialization start while the previous kernel of the
// stream drains; each of them waits in griddepcontrol.wait before its first read of user data or its first write
// (int8 NOTES v13b, weight-only NOTES v13). PDL needs compute capability >= 9.0; elsewhere the attribute is not set
// and griddepcontrol is compiled out. `LOWBIT_PDL=0` in the environment turns it off for the whole process (read
// once): the kernels are correct either way, so this is a switch for measuring and for working around a driver or
// stream setup where the early start costs more than it saves.
#pragma once

#include <cuda_runtime.h>

#include <atomic>
#include <cstdlib>
#include <cstring>

namespace lowbit {

/// True when the process has not opted out with `LOWBIT_PDL=0` (read once per process).
inline bool pdl_allowed_by_env() {
    static const bool allowed = [] {
        const char* v = std::getenv("LOWBIT_PDL");
        return v == nullptr || std::strcmp(v, "0") != 0;
    }();
    return allowed;
}

/// Whether launches on the current device may use PDL: compute capability >= 9.0 and not opted out.
/// Cached per device ordinal.
inline bool pdl_runs() {
    if (!pdl_allowed_by_env()) return false;
    static std::atomic<int> cache[64];  // 0 unknown, 1 no, 2 yes
    int dev = 0, major = 0;
    if (cudaGetDevice(&dev) != cudaSuccess) {
        (void)cudaGetLastError();
        return false;
    }
    if (dev >= 0 && dev < 64) {
        const int c = cache[dev].load(std::memory_order_relaxed);
        if (c != 0) return c == 2;
    }
    const bool ok = cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, dev) == cudaSuccess && major >= 9;
    (void)cudaGetLastError();
    if (dev >= 0 && dev < 64) cache[dev].store(ok ? 2 : 1, std::memory_order_relaxed);
    return ok;
}

}  // namespace lowbit
