//! The int8 GEMM (`Int8Gemm`: W8A8 / W4A8 on the tensor cores) and the activation quantizer (`act_quant`),
//! launched with raw torch pointers on torch's stream; the CPU quantizers of their weights; and
//! `qweight_from_fields`, which rebuilds a packed weight from a state dict's tensors.

use std::collections::HashMap;
use std::ffi::c_void;

use lowbit_core::int8::{I8Out, W4A8Weight, W8Weight, pack_w4};
use lowbit_core::{QuantizedWeight, WeightScheme};
use lowbit_cuda::int8::{RawEpilogue, act_quant_raw};
use lowbit_cuda::{Device, I8Config, Int8Gemm};
use ndarray::ArrayView2;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::{core_err, cuda_err, value_err};
use crate::gpu::{device_for, out_dtype};
use crate::weight::{PyQWeight, f32_from_bytes, le_bytes};

fn i8_bytes(v: &[i8]) -> Vec<u8> {
    v.iter().map(|&c| c as u8).collect()
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    le_bytes(v, f32::to_le_bytes)
}

fn out_kind(out: &str) -> PyResult<I8Out> {
    match out {
        "f16" | "float16" => Ok(I8Out::F16),
        "bf16" | "bfloat16" => Ok(I8Out::Bf16),
        "i8" | "int8" => Ok(I8Out::I8),
        "i32" | "int32" => Ok(I8Out::I32),
        other => Err(value_err(format!("int8 GEMM output must be f16, bf16, int8 or int32, not {other:?}"))),
    }
}

fn view<'a>(values: &'a [f32], n: usize, k: usize) -> PyResult<ArrayView2<'a, f32>> {
    ArrayView2::from_shape((n, k), values).map_err(|e| value_err(format!("weight [{n}, {k}]: {e}")))
}

/// An int8-GEMM weight uploaded to one GPU (`lowbit_cuda::Int8Gemm`): int8 codes (W8A8) or 4-bit codes with
/// integer group scales (W4A8, QQQ form), per-channel f32 scales. The device memory is lowbit's own and is freed
/// when this object is dropped.
#[pyclass(name = "Int8Gemm", module = "lowbit._C", frozen)]
pub struct PyInt8Gemm {
    dev: Device,
    gemm: Int8Gemm,
}

#[pymethods]
impl PyInt8Gemm {
    /// Uploads a weight to device `device` (synchronous). `codes`: `[n, k]` int8 bytes, row-major (W8: any
    /// int8 value; W4: `q` in -8..7). `scales`: `[n]` f32 bytes. W4 only: `group_scales` `[n, k / group_size]`
    /// uint8 bytes in 1..16 with `group_size` (a multiple of 32 dividing k), or `None` for per-channel.
    /// Raises `ValueError` for bad shapes or codes (K must be a multiple of 16 for W8, 32 for W4),
    /// `RuntimeError` when no GPU can be used.
    #[new]
    #[pyo3(signature = (codes, n, k, scales, device, w_bits = 8, group_scales = None, group_size = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        codes: &[u8],
        n: usize,
        k: usize,
        scales: &[u8],
        device: usize,
        w_bits: u32,
        group_scales: Option<&[u8]>,
        group_size: Option<usize>,
    ) -> PyResult<Self> {
        if codes.len() != n * k || n == 0 || k == 0 {
            return Err(value_err(format!("codes: {} bytes for a [{n}, {k}] weight", codes.len())));
        }
        let scales = f32_from_bytes(scales, n, "scales")?;
        let codes: Vec<i8> = codes.iter().map(|&b| b as i8).collect();
        let dev = device_for(py, device)?;
        let gemm = match w_bits {
            8 => {
                if group_scales.is_some() {
                    return Err(value_err("group scales apply to 4-bit weights only"));
                }
                let d = dev.clone();
                py.detach(move || Int8Gemm::new_w8_codes(&d, &codes, n, k, &scales)).map_err(cuda_err)?
            }
            4 => {
                let (group, gs) = match (group_scales, group_size) {
                    (Some(g), Some(size)) => (Some(size), g.to_vec()),
                    (None, None) => (None, Vec::new()),
                    _ => return Err(value_err("group_scales and group_size go together")),
                };
                let packed = pack_w4(&codes, n, k).map_err(core_err)?;
                let w = W4A8Weight { n, k, group, packed, group_scales: gs, scales };
                w.validate().map_err(core_err)?;
                let d = dev.clone();
                py.detach(move || Int8Gemm::new_w4(&d, &w)).map_err(cuda_err)?
            }
            other => return Err(value_err(format!("w_bits = {other} (the int8 GEMM takes 8 or 4)"))),
        };
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

    /// Workspace bytes a launch of `m` rows needs (0 = none); it must be zero-filled before its first use and
    /// stays zero after every completed launch. Host-side only.
    fn workspace_bytes(&self, py: Python<'_>, m: usize) -> PyResult<usize> {
        let plan = py.detach(|| self.gemm.plan(&self.dev, m, I8Config::default())).map_err(cuda_err)?;
        Ok(plan.workspace_bytes)
    }

    /// Launches `y[m, N] = epilogue(x[m, K] · Wqᵀ)` on `stream` (torch's `current_stream().cuda_stream`):
    /// `y = ((f32(acc) · rs[m]) · w_scale[n]) + bias[n]`, rs = `row_scales[m]` (a device pointer to `[m]` f32)
    /// or `row_scale_value` when `row_scales` is 0; written as `out` = `"f16"`, `"bf16"`, `"int8"`
    /// (`sat(rne(y / os))`, os = `out_scales[n]` (device `[N]` f32) or `out_scale` when `out_scales` is 0) or
    /// `"int32"` (the raw accumulator). `x` is int8 with row stride `ldx` bytes (a multiple of 16, 16-byte
    /// aligned), `y` has row stride `ldy` elements. `workspace` holds `workspace_bytes` zeroed bytes (see
    /// [`Self::workspace_bytes`]). Asynchronous (capturable in a CUDA graph).
    ///
    /// The caller (lowbit's custom op) guarantees that the pointers address live tensors of those sizes on this
    /// weight's device; the kernels re-check shapes and alignment.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (x, ldx, m, y, ldy, out, row_scales, row_scale_value, bias, out_scale, out_scales,
                        workspace, workspace_bytes, stream))]
    fn run(
        &self,
        py: Python<'_>,
        x: u64,
        ldx: usize,
        m: usize,
        y: u64,
        ldy: usize,
        out: &str,
        row_scales: u64,
        row_scale_value: f32,
        bias: u64,
        out_scale: f32,
        out_scales: u64,
        workspace: u64,
        workspace_bytes: usize,
        stream: usize,
    ) -> PyResult<()> {
        let out = out_kind(out)?;
        let (n, k) = self.gemm.shape();
        if ldx < k || ldy < n {
            return Err(value_err(format!("ldx = {ldx} / ldy = {ldy} smaller than K = {k} / N = {n}")));
        }
        if x == 0 || y == 0 {
            return Err(value_err("null x or y pointer"));
        }
        if out == I8Out::I8 && out_scales == 0 && !(out_scale > 0.0 && out_scale.is_finite()) {
            return Err(value_err(format!("int8 output scale {out_scale} (need finite > 0)")));
        }
        py.detach(|| {
            let plan = self.gemm.plan(&self.dev, m, I8Config::default())?;
            if workspace_bytes < plan.workspace_bytes || (plan.workspace_bytes > 0 && workspace == 0) {
                return Err(lowbit_cuda::CudaError::BufferSize {
                    what: "int8 GEMM workspace (bytes)",
                    expected: plan.workspace_bytes,
                    got: workspace_bytes,
                });
            }
            let cs = self.gemm.channel_scales_ptr(&self.dev)?;
            let epi = RawEpilogue {
                rs: row_scales,
                rs_val: row_scale_value,
                cs,
                bias,
                out_scale: if out_scales == 0 { out_scale } else { 1.0 },
                os: out_scales,
                ..RawEpilogue::new(out)
            };
            // SAFETY: the caller passes live device tensors of this weight's device (x: m rows of ldx bytes,
            // y: m rows of ldy elements of `out`, the epilogue vectors [m] / [N] f32, the zeroed workspace of
            // `workspace_bytes` >= plan.workspace_bytes) and torch's current stream of that device; torch keeps
            // them alive until the stream's work is done, and `self` (owning the weight and its channel scales)
            // lives as long as the module that owns it. The launcher re-checks sizes, nullness and alignment.
            unsafe {
                self.gemm.run_raw(
                    &self.dev,
                    x,
                    ldx,
                    &epi,
                    y,
                    ldy,
                    &plan,
                    workspace,
                    workspace_bytes,
                    stream as *mut c_void,
                )
            }
        })
        .map_err(cuda_err)
    }
}

/// Quantizes activations for the int8 GEMM on the GPU (`lowbit_act_quant`) on `stream`: `x` f16 / bf16
/// (`dtype`) `[m, k]` with row stride `ldx` elements; `residual` (dense `[m, k]`, updated in place to
/// `x + residual`) and `gamma` (`[k]`, RMSNorm weight with `eps`) are device pointers or 0; `hadamard` a power
/// of two dividing k (0 / 1 = none); `static_scale` `None` = dynamic per-token scales written to `scales`
/// (`[m]` f32). `q` is int8 with row stride `ldq` bytes. Asynchronous.
#[pyfunction]
#[pyo3(signature = (x, ldx, residual, gamma, eps, hadamard, static_scale, q, ldq, scales, m, k, dtype, device,
                    stream))]
#[allow(clippy::too_many_arguments)]
fn act_quant(
    py: Python<'_>,
    x: u64,
    ldx: usize,
    residual: u64,
    gamma: u64,
    eps: f32,
    hadamard: usize,
    static_scale: Option<f32>,
    q: u64,
    ldq: usize,
    scales: u64,
    m: usize,
    k: usize,
    dtype: &str,
    device: usize,
    stream: usize,
) -> PyResult<()> {
    let dt = out_dtype(dtype)?;
    let dev = device_for(py, device)?;
    py.detach(|| {
        // SAFETY: the caller (lowbit.ops.act_quant) passes live device tensors of `device` with the documented
        // sizes and torch's current stream of that device; the launcher validates shapes, nullness, alignment.
        unsafe {
            act_quant_raw(
                &dev,
                x,
                ldx,
                residual,
                gamma,
                eps,
                hadamard,
                static_scale,
                q,
                ldq,
                scales,
                m,
                k,
                dt,
                stream as *mut c_void,
            )
        }
    })
    .map_err(cuda_err)
}

type W8Out<'py> = (Bound<'py, PyBytes>, Bound<'py, PyBytes>);
type W4Out<'py> = (Bound<'py, PyBytes>, Option<Bound<'py, PyBytes>>, Bound<'py, PyBytes>);

/// W8A8 weight quantization (lowbit-core `int8::W8Weight::quantize`): `w` `[n, k]` float32 bytes →
/// `(codes int8 [n, k], scales f32 [n])`, `s = absmax / 127`, `q = rne(w / s)` in -127..127.
#[pyfunction]
fn quantize_w8a8<'py>(py: Python<'py>, data: &[u8], n: usize, k: usize) -> PyResult<W8Out<'py>> {
    let values = f32_from_bytes(data, n * k, "weight")?;
    let v = view(&values, n, k)?;
    let w = py.detach(|| W8Weight::quantize(v)).map_err(core_err)?;
    Ok((PyBytes::new(py, &i8_bytes(&w.codes)), PyBytes::new(py, &f32_bytes(&w.scales))))
}

/// W4A8 weight quantization (lowbit-core `int8::W4A8Weight::quantize`, QQQ two-level form): `w` `[n, k]`
/// float32 bytes → `(codes int8 [n, k] in -8..7, group_scales uint8 [n, k / group] in 1..16 or None when
/// per-channel, scales f32 [n])`. K must be a multiple of 32, `group` a multiple of 32 dividing K.
#[pyfunction]
#[pyo3(signature = (data, n, k, group = None))]
fn quantize_w4a8<'py>(py: Python<'py>, data: &[u8], n: usize, k: usize, group: Option<usize>) -> PyResult<W4Out<'py>> {
    let values = f32_from_bytes(data, n * k, "weight")?;
    let v = view(&values, n, k)?;
    let w = py.detach(|| W4A8Weight::quantize(v, group)).map_err(core_err)?;
    let gs = w.group.map(|_| PyBytes::new(py, &w.group_scales));
    Ok((PyBytes::new(py, &i8_bytes(&w.codes())), gs, PyBytes::new(py, &f32_bytes(&w.scales))))
}

/// The int8 GEMM operands of a symmetric per-channel 8-bit INT weight (what `quantize_` makes for W8A8, RTN or
/// GPTQ): `(codes int8 [n, k] = u - 128, scales f32 [n])`, the same values exactly (`w = (u - 128) · f32(s)`).
/// `ValueError` for any other format.
#[pyfunction]
fn int8_operands<'py>(py: Python<'py>, weight: PyRef<'_, PyQWeight>) -> PyResult<W8Out<'py>> {
    let QuantizedWeight::Int(w) = &weight.inner else {
        return Err(value_err(format!("{} is not an INT weight", weight.inner.scheme())));
    };
    if w.bits != 8 || !w.symmetric || w.granularity != lowbit_core::Granularity::PerChannel || w.g_idx.is_some() {
        return Err(value_err(format!(
            "{} is not a symmetric per-channel 8-bit weight without act-order",
            weight.inner.scheme()
        )));
    }
    let codes: Vec<u8> = w.unpacked_codes().iter().map(|&u| (u as i32 - 128) as i8 as u8).collect();
    let scales: Vec<f32> = w.scales.iter().map(|s| s.to_f32()).collect();
    Ok((PyBytes::new(py, &codes), PyBytes::new(py, &f32_bytes(&scales))))
}

/// Rebuilds a packed weight of `scheme` and shape `[n, k]` from its fields (`{name: little-endian bytes}`, the
/// names and dtypes of `QWeight.tensors()`), with the checks of a checkpoint load (`ValueError` otherwise).
#[pyfunction]
fn qweight_from_fields(
    py: Python<'_>,
    scheme: &str,
    n: usize,
    k: usize,
    fields: HashMap<String, Vec<u8>>,
) -> PyResult<PyQWeight> {
    let s: WeightScheme = scheme.parse().map_err(core_err)?;
    let w = py.detach(|| {
        let map: HashMap<&str, &[u8]> = fields.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
        lowbit_core::checkpoint::weight_from_fields(&s, n, k, &map)
    });
    Ok(PyQWeight::new(w.map_err(core_err)?))
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyInt8Gemm>()?;
    m.add_function(wrap_pyfunction!(act_quant, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_w8a8, m)?)?;
    m.add_function(wrap_pyfunction!(quantize_w4a8, m)?)?;
    m.add_function(wrap_pyfunction!(int8_operands, m)?)?;
    m.add_function(wrap_pyfunction!(qweight_from_fields, m)?)?;
    Ok(())
}
