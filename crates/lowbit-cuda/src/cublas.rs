//! cuBLAS through cudarc: locating and loading libcublas, and a handle for the row-major GEMM
//! `Y[M, N] = X[M, K] · W[N, K]ᵀ` in f16 / bf16 with f32 accumulation. The large-M path of the
//! weight-only GEMM (dequantize, then this) and the benchmarks' baselines both use it.
//!
//! # Row-major → column-major (written once, here)
//!
//! cuBLAS is column-major. A row-major `R×C` matrix with leading dimension `C` *is* the
//! column-major `C×R` matrix (its transpose) with the same leading dimension. So, column-major:
//! `X` is `Xᵀ` (`K×M`, ld `K`), `W` is `Wᵀ` (`K×N`, ld `K`), `Y` is `Yᵀ` (`N×M`, ld `N`), and
//! `Yᵀ = (X·Wᵀ)ᵀ = W·Xᵀ = (Wᵀ)ᵀ·(Xᵀ)`. That is one GEMM `C = op(A)·op(B)` with `m = N, n = M,
//! k = K`, `A` = the W buffer with `transa = T` (`lda = K`), `B` = the X buffer with `transb = N`
//! (`ldb = K`) and `C` = the Y buffer (`ldc = N`): the "TN" call, also the layout int8 IMMA wants.

use std::ffi::c_void;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use cudarc::cublas::sys::{
    cublasComputeType_t, cublasGemmAlgo_t, cublasOperation_t, cudaDataType, libraryPropertyType,
};
use cudarc::cublas::{CudaBlas, sys as blas_sys};
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use crate::buffer::OutDtype;
use crate::error::{CudaError, Result};

/// cuBLAS workspace handed to the handle (`cublasSetWorkspace`), so that no call allocates:
/// allocation is not allowed inside graph capture. 32 MiB, PyTorch's size on Hopper.
pub const CUBLAS_WORKSPACE_BYTES: usize = 32 << 20;

/// Whether libcublas can be loaded (no cuBLAS call is made). cudarc's loader panics when the
/// library is missing, so this is checked before anything else touches cuBLAS.
pub fn cublas_present() -> bool {
    // SAFETY: only tries `dlopen` on the candidate names (libloading) and closes what it opened.
    unsafe { blas_sys::is_culib_present() }
}

/// Major version of the CUDA libraries cudarc was built for (`cuda-13000`).
pub const CUDA_LIB_MAJOR: &str = "13";

/// Python that lists directories holding both cuBLAS libraries, best first (toolchain notes §4):
/// PyTorch's `lib/`, then `nvidia/cu13/lib` and `nvidia/cublas/lib` under every site-packages.
const FIND_CUBLAS_PY: &str = r#"
import glob, os, site, sys
c = []
try:
    import torch
    c.append(os.path.join(os.path.dirname(torch.__file__), "lib"))
except Exception:
    pass
roots = []
try:
    roots += list(site.getsitepackages())
except Exception:
    pass
try:
    roots.append(site.getusersitepackages())
except Exception:
    pass
for r in roots + sys.path:
    c += sorted(glob.glob(os.path.join(r, "nvidia", "cu13", "lib")))
    c += sorted(glob.glob(os.path.join(r, "nvidia", "cublas", "lib")))
for d in c:
    if all(os.path.exists(os.path.join(d, f)) for f in ("libcublas.so.13", "libcublasLt.so.13")):
        print(d)
"#;

/// Directories that may hold `libcublas.so.13` and `libcublasLt.so.13`, in search order:
/// `$LOWBIT_CUBLAS_DIR`, what Python finds (PyTorch, pip wheels), `/usr/local/cuda*`, `ldconfig -p`.
pub fn cublas_dir_candidates() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if let Some(d) = std::env::var_os("LOWBIT_CUBLAS_DIR") {
        dirs.push(PathBuf::from(d));
    }
    for py in ["python3", "python"] {
        if let Ok(out) = Command::new(py).args(["-c", FIND_CUBLAS_PY]).stderr(Stdio::null()).output()
            && out.status.success()
        {
            dirs.extend(String::from_utf8_lossy(&out.stdout).lines().map(|l| PathBuf::from(l.trim())));
            break;
        }
    }
    for d in ["/usr/local/cuda/lib64", "/usr/local/cuda-13.0/lib64", "/usr/local/cuda/targets/x86_64-linux/lib"] {
        dirs.push(PathBuf::from(d));
    }
    if let Ok(out) = Command::new("ldconfig").arg("-p").stderr(Stdio::null()).output() {
        let text = String::from_utf8_lossy(&out.stdout);
        let wanted = format!("libcublas.so.{CUDA_LIB_MAJOR} ");
        if let Some(path) =
            text.lines().find(|l| l.trim_start().starts_with(&wanted)).and_then(|l| l.rsplit(' ').next())
            && let Some(dir) = Path::new(path).parent()
        {
            dirs.push(dir.to_path_buf());
        }
    }
    dirs.dedup();
    dirs
}

/// Makes libcublas loadable without `LD_LIBRARY_PATH` where possible.
///
/// When libcublas cannot be `dlopen()`ed by name, the first of [`cublas_dir_candidates`] holding
/// both `libcublasLt.so.13` and `libcublas.so.13` is loaded **by absolute path** (and kept loaded):
/// a later `dlopen("libcublas.so.13")` by cudarc then finds the loaded library through its soname,
/// as inside a PyTorch process. Returns the directory used (`None` when nothing was needed) or
/// [`CudaError::NoCublas`].
pub fn ensure_cublas() -> Result<Option<PathBuf>> {
    if cublas_present() {
        return Ok(None);
    }
    let names = [format!("libcublasLt.so.{CUDA_LIB_MAJOR}"), format!("libcublas.so.{CUDA_LIB_MAJOR}")];
    for dir in cublas_dir_candidates() {
        if !names.iter().all(|n| dir.join(n).is_file()) {
            continue;
        }
        let mut ok = true;
        for n in &names {
            // SAFETY: loading a shared library runs its initialisers; these are NVIDIA's cuBLAS
            // libraries, which any cuBLAS use loads anyway. The handle is leaked on purpose so the
            // library stays loaded for cudarc's lookup by soname.
            match unsafe { libloading::Library::new(dir.join(n)) } {
                Ok(lib) => std::mem::forget(lib),
                Err(_) => ok = false,
            }
        }
        if ok && cublas_present() {
            return Ok(Some(dir));
        }
    }
    Err(CudaError::NoCublas)
}

/// `(major, minor, patch)` of the loaded libcublas (`cublasGetProperty`), e.g. `(13, 1, 0)`.
pub fn cublas_version() -> Result<(i32, i32, i32)> {
    if !cublas_present() {
        return Err(CudaError::NoCublas);
    }
    let get = |p: libraryPropertyType| -> Result<i32> {
        let mut v = 0i32;
        // SAFETY: writes one int through a valid pointer; needs no handle or context.
        unsafe { blas_sys::cublasGetProperty(p, &mut v) }.result()?;
        Ok(v)
    };
    Ok((
        get(libraryPropertyType::MAJOR_VERSION)?,
        get(libraryPropertyType::MINOR_VERSION)?,
        get(libraryPropertyType::PATCH_LEVEL)?,
    ))
}

/// The file a shared library was loaded from, read from `/proc/self/maps` (first mapping whose
/// file name starts with `stem`, e.g. `libcublas.so`); `None` when not loaded or not on Linux.
pub fn loaded_library_path(stem: &str) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines().filter_map(|l| l.split_whitespace().nth(5)).find_map(|path| {
        let file = path.rsplit('/').next()?;
        file.starts_with(stem).then(|| path.to_string())
    })
}

/// A cuBLAS handle bound to one stream, with its own workspace (so calls can be graph-captured).
#[derive(Debug)]
pub struct Cublas {
    blas: CudaBlas,
    _workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
}

impl Cublas {
    /// Creates a handle on `stream` and gives it a [`CUBLAS_WORKSPACE_BYTES`] workspace.
    /// Returns [`CudaError::NoCublas`] (not a panic) when libcublas cannot be loaded, after
    /// [`ensure_cublas`] has searched the usual places.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        ensure_cublas()?;
        let blas = CudaBlas::new(stream.clone())?;
        // cuBLAS wants a 256-byte aligned workspace; over-allocate rather than rely on the
        // allocator's alignment.
        let workspace = stream.alloc_zeros::<u8>(CUBLAS_WORKSPACE_BYTES + 256)?;
        {
            let (ptr, _guard) = workspace.device_ptr(&stream);
            let aligned = ptr.next_multiple_of(256);
            // SAFETY: the handle is valid; `aligned` addresses CUBLAS_WORKSPACE_BYTES bytes inside the
            // allocation, which lives as long as `self` (it owns both the handle and the buffer).
            unsafe { blas_sys::cublasSetWorkspace_v2(*blas.handle(), aligned as *mut c_void, CUBLAS_WORKSPACE_BYTES) }
                .result()?;
        }
        stream.synchronize()?;
        Ok(Self { blas, _workspace: workspace, stream })
    }

    /// The raw cuBLAS handle (e.g. to point it at another stream for one call).
    pub fn handle(&self) -> blas_sys::cublasHandle_t {
        *self.blas.handle()
    }

    /// The stream the handle launches on.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// `cublasGetVersion` of the handle's library (e.g. 130100).
    pub fn version(&self) -> Result<i32> {
        let mut v = 0;
        // SAFETY: valid handle, one int written.
        unsafe { blas_sys::cublasGetVersion_v2(*self.blas.handle(), &mut v) }.result()?;
        Ok(v)
    }

    /// Row-major `Y[M, N] = X[M, K] · W[N, K]ᵀ` in `dtype` (f32 accumulation) with raw device
    /// pointers, asynchronous on [`Cublas::stream`] (graph-capturable).
    ///
    /// # Safety
    /// `x`, `w`, `y` must be device allocations of the stream's context holding `m·k`, `n·k` and
    /// `m·n` elements of `dtype`, alive until the call has executed; `y` must not alias the others.
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn gemm_raw(&self, dtype: OutDtype, m: usize, n: usize, k: usize, x: u64, w: u64, y: u64) -> Result<()> {
        let dim = |v: usize, what: &str| {
            i32::try_from(v)
                .map_err(|_| CudaError::Shape { launcher: "cublasGemmEx", detail: format!("{what} = {v} exceeds i32") })
        };
        let (mi, ni, ki) = (dim(m, "m")?, dim(n, "n")?, dim(k, "k")?);
        let ty = match dtype {
            OutDtype::F16 => cudaDataType::CUDA_R_16F,
            OutDtype::Bf16 => cudaDataType::CUDA_R_16BF,
        };
        let (alpha, beta) = (1.0f32, 0.0f32);
        // The TN call of the module documentation: m = N, n = M, k = K; A = W (transposed, lda = K),
        // B = X (not transposed, ldb = K), C = Y (ldc = N).
        // SAFETY: per this function's contract; alpha / beta are host f32 (CUBLAS_COMPUTE_32F's scale
        // type, pointer mode host) that outlive the call, which reads them before returning.
        unsafe {
            cudarc::cublas::result::gemm_ex(
                *self.blas.handle(),
                cublasOperation_t::CUBLAS_OP_T,
                cublasOperation_t::CUBLAS_OP_N,
                ni,
                mi,
                ki,
                (&alpha as *const f32).cast(),
                w as *const c_void,
                ty,
                ki,
                x as *const c_void,
                ty,
                ki,
                (&beta as *const f32).cast(),
                y as *mut c_void,
                ty,
                ni,
                cublasComputeType_t::CUBLAS_COMPUTE_32F,
                cublasGemmAlgo_t::CUBLAS_GEMM_DEFAULT,
            )
        }?;
        Ok(())
    }

    /// Safe wrapper of [`Cublas::gemm_raw`] over 16-bit buffers (f16 or bf16 bit patterns, as
    /// lowbit-cuda's `DeviceTensor` stores them), checking their lengths.
    #[allow(clippy::too_many_arguments)]
    pub fn gemm(
        &self,
        dtype: OutDtype,
        m: usize,
        n: usize,
        k: usize,
        x: &CudaSlice<u16>,
        w: &CudaSlice<u16>,
        y: &mut CudaSlice<u16>,
    ) -> Result<()> {
        for (what, have, want) in
            [("cuBLAS GEMM x", x.len(), m * k), ("cuBLAS GEMM w", w.len(), n * k), ("cuBLAS GEMM y", y.len(), m * n)]
        {
            if have < want {
                return Err(CudaError::BufferSize { what, expected: want, got: have });
            }
        }
        let (xp, _gx) = x.device_ptr(&self.stream);
        let (wp, _gw) = w.device_ptr(&self.stream);
        let (yp, _gy) = y.device_ptr_mut(&self.stream);
        // SAFETY: lengths checked above; the slices belong to the stream's context and outlive the call
        // (the guards order later uses on the stream); `y` is borrowed mutably, so it aliases nothing.
        unsafe { self.gemm_raw(dtype, m, n, k, xp, wp, yp) }
    }
}
