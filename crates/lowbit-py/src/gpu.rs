//! `GpuGemm`: a quantized weight resident on a GPU, launched on torch's stream with raw pointers.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use lowbit_core::LowbitError;
use lowbit_cuda::{CudaError, Device, GemmConfig, OutDtype, WeightOnlyGemm};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{cuda_err, value_err};
use crate::weight::PyQWeight;

/// Devices opened so far, by ordinal (each one retains the device's primary context, the one torch uses).
fn device(ordinal: usize) -> PyResult<Device> {
    static DEVICES: OnceLock<Mutex<HashMap<usize, Device>>> = OnceLock::new();
    let map = DEVICES.get_or_init(|| Mutex::new(HashMap::new()));
    let mut map = map.lock().map_err(|_| value_err("device table poisoned by a panic"))?;
    if let Some(d) = map.get(&ordinal) {
        return Ok(d.clone());
    }
    let d = Device::open(ordinal).map_err(cuda_err)?;
    map.insert(ordinal, d.clone());
    Ok(d)
}

pub(crate) fn out_dtype(dtype: &str) -> PyResult<OutDtype> {
    match dtype {
        "float16" | "f16" | "torch.float16" => Ok(OutDtype::F16),
        "bfloat16" | "bf16" | "torch.bfloat16" => Ok(OutDtype::Bf16),
        other => Err(pyo3::exceptions::PyNotImplementedError::new_err(format!(
            "the weight-only GEMM takes float16 or bfloat16 activations, not {other}"
        ))),
    }
}

/// A quantized weight uploaded to one GPU in the weight-only GEMM's tiled layout (`lowbit_cuda::WeightOnlyGemm`).
/// The device memory is lowbit's own (never torch's) and is freed when this object is dropped.
#[pyclass(name = "GpuGemm", module = "lowbit._C", frozen)]
pub struct PyGpuGemm {
    dev: Device,
    gemm: WeightOnlyGemm,
}

#[pymethods]
impl PyGpuGemm {
    /// Repacks `weight` for the GPU and uploads it to device `device` (synchronous).
    /// Raises `NotImplementedError` for formats the weight-only GEMM does not run (bipolar, INT 5-7 bits),
    /// `RuntimeError` when no GPU can be used.
    #[new]
    fn new(py: Python<'_>, weight: PyRef<'_, PyQWeight>, device: usize) -> PyResult<Self> {
        if let lowbit_core::QuantizedWeight::Bipolar(_) = &weight.inner {
            return Err(pyo3::exceptions::PyNotImplementedError::new_err(
                "bipolar weights run on the bipolar GEMM, not the weight-only GEMM",
            ));
        }
        let dev = device_for(py, device)?;
        let w = &weight.inner;
        let d = dev.clone();
        let gemm = py.detach(move || WeightOnlyGemm::new(&d, w)).map_err(|e| match e {
            // A format the weight-only GEMM has no kernel for (e.g. INT 5-7 bits): the caller falls back to the
            // emulated path.
            CudaError::Core(LowbitError::UnsupportedBits { .. } | LowbitError::Unsupported(_))
            | CudaError::NoKernel { .. } => pyo3::exceptions::PyNotImplementedError::new_err(e.to_string()),
            e => cuda_err(e),
        })?;
        Ok(Self { dev, gemm })
    }

    /// `(N, K)`.
    #[getter]
    fn shape(&self) -> (usize, usize) {
        self.gemm.shape()
    }

    /// The device ordinal the weight lives on.
    #[getter]
    fn device(&self) -> usize {
        self.dev.ordinal()
    }

    /// Workspace bytes a launch of `m` rows of `dtype` needs (0 = none). Host-side only.
    fn workspace_bytes(&self, py: Python<'_>, m: usize, dtype: &str) -> PyResult<usize> {
        let dt = out_dtype(dtype)?;
        let plan = py.detach(|| self.gemm.plan(&self.dev, m, dt, GemmConfig::default())).map_err(cuda_err)?;
        Ok(plan.workspace_bytes)
    }

    /// `(bytes, zeroed)`: the workspace a launch of `m` rows of `dtype` needs and how many of its leading bytes
    /// must be zero when it starts (the split-K partial sums; every completed launch leaves them zero, so a
    /// zeroed buffer can be kept per stream). Host-side only.
    fn workspace_spec(&self, py: Python<'_>, m: usize, dtype: &str) -> PyResult<(usize, usize)> {
        let dt = out_dtype(dtype)?;
        let plan = py.detach(|| self.gemm.plan(&self.dev, m, dt, GemmConfig::default())).map_err(cuda_err)?;
        Ok((plan.workspace_bytes, plan.zeroed_bytes))
    }

    /// Launches `y[m, N] = x[m, K] · dequant(W)ᵀ` on `stream` (a `cudaStream_t` as an int: torch's
    /// `torch.cuda.current_stream().cuda_stream`). `x` has row stride `ldx` (elements), `y` is contiguous,
    /// both of `dtype`; `workspace` holds `workspace_bytes` bytes (from [`Self::workspace_bytes`]; 0 when
    /// none is needed), its leading `zeroed` bytes ([`Self::workspace_spec`]) zero. Asynchronous: nothing is
    /// synchronized, so the launch can be captured in a CUDA graph.
    ///
    /// The caller (lowbit's custom op) guarantees that the pointers address live tensors of those sizes on
    /// this weight's device; the kernels re-check sizes and alignment.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, ldx, y, m, dtype, workspace, workspace_bytes, stream))]
    fn run(
        &self,
        py: Python<'_>,
        x: u64,
        ldx: usize,
        y: u64,
        m: usize,
        dtype: &str,
        workspace: u64,
        workspace_bytes: usize,
        stream: usize,
    ) -> PyResult<()> {
        let dt = out_dtype(dtype)?;
        let (_, k) = self.gemm.shape();
        if ldx < k {
            return Err(value_err(format!("ldx = {ldx} is smaller than K = {k}")));
        }
        if x == 0 || y == 0 {
            return Err(value_err("null x or y pointer"));
        }
        py.detach(|| {
            let plan = self.gemm.plan(&self.dev, m, dt, GemmConfig::default())?;
            if workspace_bytes < plan.workspace_bytes || (plan.workspace_bytes > 0 && workspace == 0) {
                return Err(lowbit_cuda::CudaError::BufferSize {
                    what: "weight-only GEMM workspace (bytes)",
                    expected: plan.workspace_bytes,
                    got: workspace_bytes,
                });
            }
            // SAFETY: the caller passes live device tensors of this weight's device: x with m rows of ldx
            // elements, y with m·N elements, the workspace with `workspace_bytes` >= plan.workspace_bytes
            // bytes, and torch's current stream of that device; torch keeps them alive until the work on that
            // stream is done (caching allocator + stream order) and `self` lives as long as the module that
            // owns it. The launcher re-checks sizes, nullness and alignment.
            unsafe { self.gemm.run_raw(&self.dev, x, ldx, y, &plan, workspace, stream as *mut std::ffi::c_void) }
        })
        .map_err(cuda_err)
    }
}

pub(crate) fn device_for(py: Python<'_>, ordinal: usize) -> PyResult<Device> {
    py.detach(|| device(ordinal))
}

/// Whether a CUDA GPU can be used by lowbit's kernels (device 0 opens). Never raises.
#[pyfunction]
fn gpu_available(py: Python<'_>) -> bool {
    py.detach(lowbit_cuda::gpu_available)
}

/// Facts about the compiled kernels: nvcc version, GPU targets, kernel ABI and CUDA runtime versions.
#[pyfunction]
fn build_info(py: Python<'_>) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    d.set_item("version", env!("CARGO_PKG_VERSION"))?;
    d.set_item("nvcc", lowbit_cuda::NVCC_VERSION)?;
    d.set_item("cuda_archs", lowbit_cuda::CUDA_ARCHS)?;
    d.set_item("kernels_abi", lowbit_cuda::kernels_abi_version())?;
    d.set_item("kernels_cudart", lowbit_cuda::kernels_cudart_version())?;
    d.set_item("calibrator", crate::calib::AVAILABLE)?;
    Ok(d)
}

/// Properties of GPU `ordinal` as a dict (name, compute capability, SM count, memory); `RuntimeError` when
/// no GPU can be used.
#[pyfunction]
fn device_info(py: Python<'_>, ordinal: usize) -> PyResult<Bound<'_, PyDict>> {
    let dev = device_for(py, ordinal)?;
    let i = dev.info();
    let d = PyDict::new(py);
    d.set_item("ordinal", i.ordinal)?;
    d.set_item("name", i.name.clone())?;
    d.set_item("sm", i.sm_name())?;
    d.set_item("sm_count", i.sm_count)?;
    d.set_item("total_memory_bytes", i.total_memory_bytes)?;
    d.set_item("driver_version", i.driver_version)?;
    Ok(d)
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyGpuGemm>()?;
    m.add_function(wrap_pyfunction!(gpu_available, m)?)?;
    m.add_function(wrap_pyfunction!(build_info, m)?)?;
    m.add_function(wrap_pyfunction!(device_info, m)?)?;
    Ok(())
}
