//! A direct cuBLASLt int8 GEMM (cudarc's `cublaslt` result layer): the baseline of the W8A8 / W4A8 kernels.
//!
//! `Y[M, N] (i32) = X[M, K] (i8) · W[N, K]ᵀ (i8)`, all row-major, exact int32 accumulation
//! (`CUBLAS_COMPUTE_32I`, scale type `CUDA_R_32I`, α = 1, β = 0). With the row-major → column-major mapping of
//! [`crate::cublas`], this is the "TN" call int8 IMMA kernels want: `A` = the W buffer (K × N column-major,
//! ld K) with `transa = T`, `B` = the X buffer (K × M, ld K), `C = D` = the Y buffer (N × M, ld N).
//! cuBLASLt's int8 rules (checked here before any call, as [`CudaError::Shape`] / [`CudaError::Alignment`]):
//! K a multiple of 4 (leading dimensions of A and B), N a multiple of 4 (ld of the int32 C), and 16-byte
//! aligned pointers for the fast kernels (4-byte is the minimum; this wrapper asks for 16).
//!
//! The algorithm is the heuristic's first choice for each (M, N, K), cached, with a 32 MiB workspace owned by
//! the handle, so calls allocate nothing and can be captured in CUDA graphs.

use std::collections::HashMap;
use std::ffi::c_void;
use std::sync::{Arc, Mutex};

use cudarc::cublaslt::result as lt;
use cudarc::cublaslt::sys as ltsys;
use cudarc::driver::{CudaSlice, CudaStream, DevicePtr, DevicePtrMut};

use crate::cublas::{CUBLAS_WORKSPACE_BYTES, ensure_cublas};
use crate::error::{CudaError, Result};

const NAME: &str = "cublasLtMatmul (int8)";

/// Descriptors and the chosen algorithm of one (M, N, K).
struct Plan {
    desc: ltsys::cublasLtMatmulDesc_t,
    a: ltsys::cublasLtMatrixLayout_t,
    b: ltsys::cublasLtMatrixLayout_t,
    c: ltsys::cublasLtMatrixLayout_t,
    algo: ltsys::cublasLtMatmulAlgo_t,
}

/// A cuBLASLt handle for int8 GEMMs on one stream, with its workspace and per-shape plans.
pub struct CublasLtInt8 {
    handle: ltsys::cublasLtHandle_t,
    workspace: CudaSlice<u8>,
    stream: Arc<CudaStream>,
    plans: Mutex<HashMap<(usize, usize, usize), Plan>>,
}

impl std::fmt::Debug for CublasLtInt8 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CublasLtInt8").field("handle", &self.handle).finish_non_exhaustive()
    }
}

// SAFETY: the handle and descriptors are plain pointers to cuBLASLt objects, which cuBLASLt allows to be used
// from any thread; every use of the plan map goes through the Mutex.
unsafe impl Send for CublasLtInt8 {}
// SAFETY: as above; `matmul` only reads the handle and plans (behind the Mutex).
unsafe impl Sync for CublasLtInt8 {}

impl Drop for CublasLtInt8 {
    fn drop(&mut self) {
        let _ = self.stream.synchronize();
        if let Ok(plans) = self.plans.get_mut() {
            for (_, p) in plans.drain() {
                // SAFETY: each descriptor was created by this handle's plan() and is destroyed once.
                unsafe {
                    let _ = lt::destroy_matrix_layout(p.a);
                    let _ = lt::destroy_matrix_layout(p.b);
                    let _ = lt::destroy_matrix_layout(p.c);
                    let _ = lt::destroy_matmul_desc(p.desc);
                }
            }
        }
        // SAFETY: created in new(), destroyed once, after the stream finished every call that used it.
        let _ = unsafe { lt::destroy_handle(self.handle) };
    }
}

/// Checks cuBLASLt's int8 shape rules; `Ok` when the problem can be called.
pub fn int8_shape_supported(m: usize, n: usize, k: usize) -> Result<()> {
    let bad = |detail: String| Err(CudaError::Shape { launcher: NAME, detail });
    if m == 0 || n == 0 || k == 0 || m > i32::MAX as usize || n > i32::MAX as usize || k > i32::MAX as usize {
        return bad(format!("m={m} n={n} k={k} (each 1..=2^31-1)"));
    }
    if !k.is_multiple_of(4) {
        return bad(format!("k = {k} is not a multiple of 4 (int8 leading dimensions)"));
    }
    if !n.is_multiple_of(4) {
        return bad(format!("n = {n} is not a multiple of 4 (ld of the int32 output)"));
    }
    Ok(())
}

impl CublasLtInt8 {
    /// Creates a handle launching on `stream`, with a [`CUBLAS_WORKSPACE_BYTES`] workspace.
    /// [`CudaError::NoCublas`] when libcublasLt cannot be loaded.
    pub fn new(stream: Arc<CudaStream>) -> Result<Self> {
        ensure_cublas()?;
        let handle = lt::create_handle()?;
        let workspace = stream.alloc_zeros::<u8>(CUBLAS_WORKSPACE_BYTES + 256)?;
        Ok(Self { handle, workspace, stream, plans: Mutex::new(HashMap::new()) })
    }

    /// The stream the calls go to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    fn plan(&self, m: usize, n: usize, k: usize) -> Result<()> {
        let mut plans = self.plans.lock().map_err(|_| CudaError::InvalidArgument {
            launcher: NAME,
            detail: "plan cache poisoned by a panic in another thread".into(),
        })?;
        if plans.contains_key(&(m, n, k)) {
            return Ok(());
        }
        let (m64, n64, k64) = (m as u64, n as u64, k as u64);
        let desc =
            lt::create_matmul_desc(ltsys::cublasComputeType_t::CUBLAS_COMPUTE_32I, ltsys::cudaDataType::CUDA_R_32I)?;
        let trans = cudarc::cublas::sys::cublasOperation_t::CUBLAS_OP_T;
        // SAFETY: `desc` is valid; the attribute buffer is a cublasOperation_t of the size passed.
        unsafe {
            lt::set_matmul_desc_attribute(
                desc,
                ltsys::cublasLtMatmulDescAttributes_t::CUBLASLT_MATMUL_DESC_TRANSA,
                (&trans as *const cudarc::cublas::sys::cublasOperation_t).cast(),
                std::mem::size_of::<cudarc::cublas::sys::cublasOperation_t>(),
            )
        }?;
        let a = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_8I, k64, n64, k as i64)?;
        let b = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_8I, k64, m64, k as i64)?;
        let c = lt::create_matrix_layout(ltsys::cudaDataType::CUDA_R_32I, n64, m64, n as i64)?;
        let pref = lt::create_matmul_pref()?;
        let ws = CUBLAS_WORKSPACE_BYTES;
        // SAFETY: valid preference; the buffer is a usize (size_t) of the size passed.
        let heur = unsafe {
            lt::set_matmul_pref_attribute(
                pref,
                ltsys::cublasLtMatmulPreferenceAttributes_t::CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                (&ws as *const usize).cast(),
                std::mem::size_of::<usize>(),
            )
            .and_then(|()| lt::get_matmul_algo_heuristic(self.handle, desc, a, b, c, c, pref))
        };
        // SAFETY: created above, destroyed once.
        let _ = unsafe { lt::destroy_matmul_pref(pref) };
        match heur {
            Ok(h) => {
                plans.insert((m, n, k), Plan { desc, a, b, c, algo: h.algo });
                Ok(())
            }
            Err(e) => {
                // SAFETY: created above and not stored anywhere.
                unsafe {
                    let _ = lt::destroy_matrix_layout(a);
                    let _ = lt::destroy_matrix_layout(b);
                    let _ = lt::destroy_matrix_layout(c);
                    let _ = lt::destroy_matmul_desc(desc);
                }
                Err(CudaError::NoKernel { launcher: NAME, detail: format!("m={m} n={n} k={k}: no algorithm ({e:?})") })
            }
        }
    }

    /// Prepares (and caches) the algorithm for `(m, n, k)` without launching: a typed error when cuBLASLt
    /// has none (call it before graph capture).
    pub fn prepare(&self, m: usize, n: usize, k: usize) -> Result<()> {
        int8_shape_supported(m, n, k)?;
        self.plan(m, n, k)
    }

    /// `y[m, n] = x[m, k] · w[n, k]ᵀ` in int32 with raw device pointers, on [`Self::stream`].
    ///
    /// # Safety
    /// `x`, `w`, `y` are device allocations of the stream's context holding `m·k` i8, `n·k` i8 and `m·n` i32,
    /// alive until the call has executed; `y` aliases neither input.
    pub unsafe fn matmul_raw(&self, m: usize, n: usize, k: usize, x: u64, w: u64, y: u64) -> Result<()> {
        int8_shape_supported(m, n, k)?;
        if !x.is_multiple_of(16) || !w.is_multiple_of(16) || !y.is_multiple_of(16) {
            return Err(CudaError::Alignment { launcher: NAME, detail: "x, w and y must be 16-byte aligned".into() });
        }
        self.plan(m, n, k)?;
        let plans = self.plans.lock().map_err(|_| CudaError::InvalidArgument {
            launcher: NAME,
            detail: "plan cache poisoned by a panic in another thread".into(),
        })?;
        let p = &plans[&(m, n, k)];
        let (alpha, beta) = (1i32, 0i32);
        let (wsp, _g) = self.workspace.device_ptr(&self.stream);
        let ws = wsp.next_multiple_of(256);
        // SAFETY: per this function's contract; the descriptors describe exactly these buffers; alpha / beta are
        // host i32 (CUDA_R_32I scale type, host pointer mode) read before the call returns; the workspace holds
        // CUBLAS_WORKSPACE_BYTES bytes from `ws` and lives as long as `self`.
        unsafe {
            lt::matmul(
                self.handle,
                p.desc,
                (&alpha as *const i32).cast(),
                (&beta as *const i32).cast(),
                w as *const c_void,
                p.a,
                x as *const c_void,
                p.b,
                y as *const c_void,
                p.c,
                y as *mut c_void,
                p.c,
                &p.algo,
                ws as *mut c_void,
                CUBLAS_WORKSPACE_BYTES,
                self.stream.cu_stream().cast(),
            )
        }?;
        Ok(())
    }

    /// Safe wrapper of [`Self::matmul_raw`] over device slices (lengths checked).
    pub fn matmul(
        &self,
        m: usize,
        n: usize,
        k: usize,
        x: &CudaSlice<i8>,
        w: &CudaSlice<i8>,
        y: &mut CudaSlice<i32>,
    ) -> Result<()> {
        for (what, have, want) in [
            ("cuBLASLt int8 x", x.len(), m * k),
            ("cuBLASLt int8 w", w.len(), n * k),
            ("cuBLASLt int8 y", y.len(), m * n),
        ] {
            if have < want {
                return Err(CudaError::BufferSize { what, expected: want, got: have });
            }
        }
        let (xp, _gx) = x.device_ptr(&self.stream);
        let (wp, _gw) = w.device_ptr(&self.stream);
        let (yp, _gy) = y.device_ptr_mut(&self.stream);
        // SAFETY: lengths checked; the slices belong to the stream's context and outlive the call (the guards
        // order later uses); y is borrowed mutably.
        unsafe { self.matmul_raw(m, n, k, xp, wp, yp) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_rules_are_typed_errors() {
        int8_shape_supported(1, 4096, 4096).unwrap();
        int8_shape_supported(3, 8, 16).unwrap();
        for (m, n, k) in [(0, 8, 16), (1, 8, 18), (1, 6, 16), (1, 8, 0)] {
            let e = int8_shape_supported(m, n, k).unwrap_err();
            assert!(matches!(e, CudaError::Shape { .. }), "{e}");
        }
    }
}
