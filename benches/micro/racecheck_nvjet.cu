// benches/micro/racecheck_nvjet.cu: does compute-sanitizer racecheck survive cuBLAS GEMMs whose kernels a kernel-name
// filter leaves uninstrumented? No lowbit code: the weight-only tests' dequantize + cuBLAS path reduced to what it
// launches (a small kernel that writes W through shared memory, then cublasGemmEx f16 in / out, f32 compute, Y[m, n] =
// X[m, k] W[n, k]^T at the identity test's shapes: n = 48, k = 256, m = 64 and 256).
//
// Build: nvcc -O2 -arch=sm_90a -lineinfo racecheck_nvjet.cu -o rj -ldl   (cuBLAS is dlopen'ed: libcublas.so.13 on
//        LD_LIBRARY_PATH)
// Run:   ./rj
//        compute-sanitizer --tool racecheck ./rj                                   (cuBLAS instrumented)
//        compute-sanitizer --tool racecheck --kernel-name-exclude kns=nvjet ./rj   (cuBLAS not instrumented)
//        compute-sanitizer --tool racecheck --kernel-name kns=fill_w ./rj          (only the small kernel checked)
// Expected from the weight-only tests (kernels/weight_only/NOTES.md "Known issue", twelfth session): the filtered
// runs stop with "Internal Sanitizer Error: The Sanitizer failed to handle a hardware exception". NOT YET RUN (the
// helper's device budget was spent): run it before quoting it as the reproducer.
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>
#include <vector>

typedef int (*CreateFn)(void**);
typedef int (*GemmExFn)(void*, int, int, int, int, int, const void*, const void*, int, int, const void*, int, int,
                        const void*, void*, int, int, int, int);

// W[n][k] = small integers / 8 through a shared-memory staging (one block per row).
__global__ void fill_w(__half* w, int k) {
    extern __shared__ __half row[];
    for (int c = threadIdx.x; c < k; c += blockDim.x) row[c] = __float2half(float(int((blockIdx.x * 7 + c * 3) % 9) - 4) * 0.125f);
    __syncthreads();
    for (int c = threadIdx.x; c < k; c += blockDim.x) w[size_t(blockIdx.x) * k + c] = row[k - 1 - c];
}

int main() {
    void* lib = dlopen("libcublas.so.13", RTLD_NOW);
    if (!lib) {
        printf("racecheck_nvjet: libcublas.so.13 not found (%s)\n", dlerror());
        return 2;
    }
    auto create = reinterpret_cast<CreateFn>(dlsym(lib, "cublasCreate_v2"));
    auto gemm = reinterpret_cast<GemmExFn>(dlsym(lib, "cublasGemmEx"));
    void* h = nullptr;
    if (!create || !gemm || create(&h) != 0) {
        printf("racecheck_nvjet: cuBLAS init failed\n");
        return 2;
    }
    const int n = 48, k = 256;
    int bad = 0;
    for (int m : {64, 256}) {
        __half *w, *x, *y;
        cudaMalloc(&w, size_t(n) * k * 2);
        cudaMalloc(&x, size_t(m) * k * 2);
        cudaMalloc(&y, size_t(m) * n * 2);
        std::vector<__half> hx(size_t(m) * k, __float2half(0.f));
        for (int r = 0; r < m; ++r) hx[size_t(r) * k + (r % k)] = __float2half(1.f);  // X = rows of I_k
        cudaMemcpy(x, hx.data(), hx.size() * 2, cudaMemcpyHostToDevice);
        fill_w<<<n, 128, k * 2>>>(w, k);
        // Column-major cuBLAS: Y^T[n, m] = W[n, k] (k-major: op T of the k x n column-major W^T) x X^T[k, m].
        const float one = 1.f, zero = 0.f;
        const int CUDA_R_16F = 2, CUBLAS_OP_T = 1, CUBLAS_OP_N = 0, CUBLAS_COMPUTE_32F = 68, CUBLAS_GEMM_DEFAULT = -1;
        const int st = gemm(h, CUBLAS_OP_T, CUBLAS_OP_N, n, m, k, &one, w, CUDA_R_16F, k, x, CUDA_R_16F, k, &zero, y,
                            CUDA_R_16F, n, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        const cudaError_t e = cudaDeviceSynchronize();
        std::vector<__half> hy(size_t(m) * n), hw(size_t(n) * k);
        cudaMemcpy(hy.data(), y, hy.size() * 2, cudaMemcpyDeviceToHost);
        cudaMemcpy(hw.data(), w, hw.size() * 2, cudaMemcpyDeviceToHost);
        int wrong = 0;
        for (int r = 0; r < m; ++r)
            for (int c = 0; c < n; ++c) wrong += __half2float(hy[size_t(r) * n + c]) != __half2float(hw[size_t(c) * k + (r % k)]);
        printf("racecheck_nvjet m=%d: gemm status %d, %s, %d wrong\n", m, st, cudaGetErrorString(e), wrong);
        bad += st != 0 || e != cudaSuccess || wrong != 0;
        cudaFree(w), cudaFree(x), cudaFree(y);
    }
    return bad ? 1 : 0;
}
