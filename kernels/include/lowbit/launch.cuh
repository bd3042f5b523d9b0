// lowbit/launch.cuh: host-side launch configurations for cudaLaunchKernelEx with a launch attribute.
//
// Several launchers need one launch attribute: a thread-block cluster of N CTAs along x (the ws kernels' split-K
// and multicast clusters) or programmatic stream serialization (PDL, lowbit/pdl.cuh). LaunchEx owns the attribute
// storage next to the cudaLaunchConfig_t that points at it, so the pair cannot be separated by a copy (it is neither
// copyable nor movable), and every launcher fills it the same way.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>

namespace lowbit {

/// A cudaLaunchKernelEx configuration with at most one cluster and one PDL attribute (int8 ws NOTES v24: the cluster
/// split-K launch takes both).
class LaunchEx {
  public:
    LaunchEx(dim3 grid, dim3 block, size_t smem, cudaStream_t stream) {
        cfg_.gridDim = grid;
        cfg_.blockDim = block;
        cfg_.dynamicSmemBytes = smem;
        cfg_.stream = stream;
        cfg_.attrs = attr_;
        cfg_.numAttrs = 0;
    }
    LaunchEx(const LaunchEx&) = delete;
    LaunchEx& operator=(const LaunchEx&) = delete;

    /// Thread-block clusters of `n` CTAs along x (the grid's x extent must be a multiple of n).
    LaunchEx& cluster_x(unsigned n) {
        cudaLaunchAttribute& a = slot(cudaLaunchAttributeClusterDimension);
        a.val.clusterDim.x = n;
        a.val.clusterDim.y = 1;
        a.val.clusterDim.z = 1;
        return *this;
    }

    /// Programmatic dependent launch when `on` (the kernel must wait in griddepcontrol.wait before touching data the
    /// previous kernel of the stream writes or reads); no attribute otherwise.
    LaunchEx& pdl(bool on) {
        if (on) {
            slot(cudaLaunchAttributeProgrammaticStreamSerialization).val.programmaticStreamSerializationAllowed = 1;
        } else {
            for (unsigned i = 0; i < cfg_.numAttrs; ++i) {
                if (attr_[i].id == cudaLaunchAttributeProgrammaticStreamSerialization) {
                    attr_[i] = attr_[--cfg_.numAttrs];
                    break;
                }
            }
        }
        return *this;
    }

    LaunchEx& grid(dim3 g) {
        cfg_.gridDim = g;
        return *this;
    }

    /// Launches `kern(args...)`; the launch's error, else any error the launch left pending.
    template <typename Kern, typename... A>
    cudaError_t launch(Kern kern, A... args) {
        const cudaError_t e = cudaLaunchKernelEx(&cfg_, kern, args...);
        return e != cudaSuccess ? e : cudaGetLastError();
    }

    /// Clusters of this configuration that can be resident at once (cudaOccupancyMaxActiveClusters); 0 on error,
    /// with the error cleared.
    template <typename Kern>
    int max_active_clusters(Kern kern) {
        int n = 0;
        if (cudaOccupancyMaxActiveClusters(&n, kern, &cfg_) != cudaSuccess) {
            (void)cudaGetLastError();
            return 0;
        }
        return n;
    }

    const cudaLaunchConfig_t& config() const { return cfg_; }

  private:
    // The attribute of this id, appended if not set yet.
    cudaLaunchAttribute& slot(cudaLaunchAttributeID id) {
        for (unsigned i = 0; i < cfg_.numAttrs; ++i)
            if (attr_[i].id == id) return attr_[i];
        cudaLaunchAttribute& a = attr_[cfg_.numAttrs++];
        a = cudaLaunchAttribute{};
        a.id = id;
        return a;
    }

    cudaLaunchConfig_t cfg_{};
    cudaLaunchAttribute attr_[2]{};
};

}  // namespace lowbit
