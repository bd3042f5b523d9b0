"""lowbit's PyTorch operators, registered with `torch.library` so that `torch.compile` and CUDA graphs work.

- `torch.ops.lowbit.weight_only_linear(x[M, K], handle, out_features) -> y[M, N]`: `y = x · dequant(W)ᵀ` for the
  packed weight registered under `handle`. On a CUDA device with float16/bfloat16 activations it launches
  lowbit's weight-only GEMM kernel on `torch.cuda.current_stream()` (no synchronization, so the launch can be
  captured in a CUDA graph); everywhere else (CPU, float32, formats without a kernel) it runs the emulated path:
  the exactly dequantized weight (the values the kernels reproduce) times `x` with torch's matmul.
  Its fake (meta) implementation only computes the output shape, so the op traces under `torch.compile`.
- `fake_quantize_activations(x, bits, scale)`: symmetric integer fake quantization of activations, per token
  (dynamic) or with a static per-tensor scale, round-half-to-even as lowbit-core's int8 activations.

- `torch.ops.lowbit.int8_linear(q, x_scale, x_scale_value, handle, out, out_scales, out_scale_value, bias)`: the
  int8 GEMM (W8A8 / W4A8) of a `lowbit.modules.Int8Linear` on int8 activations, with the fused epilogue (per-token or
  per-tensor activation scales, weight channel scales, bias; f16 / bf16 / int8 with per-column output scales /
  int32 output). lowbit's kernel on CUDA; elsewhere `int8_linear_reference`, the same math exactly in torch.
- `act_quant(x, residual, gamma, eps, hadamard, static_scale)`: int8 activation quantization with the optional
  fused residual add, RMSNorm and Hadamard rotation (`lowbit_act_quant` on CUDA f16 / bf16, torch elsewhere).

`stats` counts kernel launches and emulated calls (tests use it to check which path ran).
"""

from __future__ import annotations

import itertools
import math
import os
import threading
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Any, Optional, TypeVar

import torch

from . import _C

if TYPE_CHECKING:
    from .modules import PackedWeight

__all__ = [
    "act_quant",
    "fake_quantize_activations",
    "int8_linear",
    "int8_linear_reference",
    "kernels_enabled",
    "stats",
    "weight_only_linear",
]

_REGISTRY: weakref.WeakValueDictionary[int, PackedWeight] = weakref.WeakValueDictionary()
_NEXT = itertools.count(1)
_LOCK = threading.Lock()
_W = TypeVar("_W")

#: `kernel`: launches of lowbit's GPU GEMM; `emulated`: dequantize + matmul calls.
stats: Counter[str] = Counter()


def _register_in(registry: weakref.WeakValueDictionary[int, _W], weight: _W) -> int:
    """Stores `weight` in `registry` under a fresh handle (one counter for every registry: handles never collide)."""
    with _LOCK:
        handle = next(_NEXT)
        registry[handle] = weight
    return handle


def _lookup_in(registry: weakref.WeakValueDictionary[int, _W], handle: int, what: str) -> _W:
    """The weight registered under `handle`; RuntimeError naming `what` once its module was freed."""
    w = registry.get(handle)
    if w is None:
        raise RuntimeError(f"lowbit: no {what} is registered under handle {handle} (its module was freed)")
    return w


def register(weight: PackedWeight) -> int:
    """Registers a packed weight and returns the integer handle the operator refers to it by."""
    return _register_in(_REGISTRY, weight)


def lookup(handle: int) -> PackedWeight:
    return _lookup_in(_REGISTRY, handle, "packed weight")


def kernels_enabled() -> bool:
    """Whether CUDA inputs use lowbit's kernels (set `LOWBIT_EMULATE=1` to force the emulated path)."""
    return os.environ.get("LOWBIT_EMULATE", "0") != "1"


@torch.library.custom_op("lowbit::weight_only_linear", mutates_args=())
def weight_only_linear(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    """`y[M, N] = x[M, K] · dequant(W)ᵀ` for the packed weight registered under `handle`."""
    w = lookup(handle)
    if x.dim() != 2 or x.shape[1] != w.in_features:
        raise ValueError(f"lowbit linear: x has shape {tuple(x.shape)}, expected [M, {w.in_features}]")
    if out_features != w.out_features:
        raise ValueError(f"lowbit linear: out_features={out_features}, the weight has {w.out_features}")
    if x.is_cuda and x.dtype in (torch.float16, torch.bfloat16) and kernels_enabled() and x.shape[0] > 0:
        gemm = w.gpu_gemm(x.device)
        if gemm is not None:
            stats["kernel"] += 1
            return _launch(gemm, x, out_features)
    stats["emulated"] += 1
    return torch.nn.functional.linear(x, w.dense(x.device, x.dtype))


@weight_only_linear.register_fake
def _weight_only_linear_fake(x: torch.Tensor, handle: int, out_features: int) -> torch.Tensor:
    torch._check(x.dim() == 2, lambda: f"lowbit linear: x must be 2-D, got {x.dim()}-D")
    return x.new_empty((x.shape[0], out_features))


_DTYPE_NAMES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


def _launch(gemm: _C.GpuGemm, x: torch.Tensor, n: int) -> torch.Tensor:
    """Launches the weight-only GEMM on torch's current stream with raw pointers (torch owns every buffer)."""
    x = x.contiguous()
    m, k = x.shape
    name = _DTYPE_NAMES[x.dtype]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    ws_bytes, zeroed = gemm.workspace_spec(m, name)
    stream = torch.cuda.current_stream(x.device).cuda_stream
    if ws_bytes == 0:
        ws = None
    elif zeroed == ws_bytes:
        # Split-K partial sums only: the kernel leaves them zero, so one zeroed buffer per stream serves every call.
        ws = _wo_workspace(x.device, stream, ws_bytes)
        ws_bytes = ws.numel()
    elif zeroed > 0:
        ws = torch.zeros(ws_bytes, dtype=torch.uint8, device=x.device)  # split-K + act-order gather (scratch)
    else:
        ws = torch.empty(ws_bytes, dtype=torch.uint8, device=x.device)  # scratch only (e.g. the dense weight)
    gemm.run(x.data_ptr(), k, y.data_ptr(), m, name, 0 if ws is None else ws.data_ptr(), ws_bytes, stream)
    return y


#: Zeroed split-K workspaces of the weight-only GEMM by (device, stream): the kernels leave them zero after each call.
_WO_WORKSPACE: dict[tuple[int, int], torch.Tensor] = {}


def _wo_workspace(device: torch.device, stream: int, nbytes: int) -> torch.Tensor:
    key = (device.index if device.index is not None else torch.cuda.current_device(), stream)
    ws = _WO_WORKSPACE.get(key)
    if ws is None or ws.numel() < nbytes:
        ws = torch.zeros(max(nbytes, 1 << 16), dtype=torch.uint8, device=device)
        _WO_WORKSPACE[key] = ws
    return ws


def fake_quantize_activations(x: torch.Tensor, bits: int, scale: Optional[float] = None) -> torch.Tensor:
    """Symmetric `bits`-bit fake quantization of activations along the last dimension.

    `scale=None`: dynamic, one scale per token (`absmax / (2^(bits-1) - 1)`, 1 for an all-zero token);
    otherwise the static per-tensor scale (values beyond `qmax · scale` saturate). Rounding is half-to-even.
    """
    qmax = float(2 ** (bits - 1) - 1)
    if scale is None:
        s = x.abs().amax(dim=-1, keepdim=True) / qmax
        s = torch.where(s == 0, torch.ones_like(s), s)
    else:
        if not (scale > 0.0):
            raise ValueError(f"static activation scale must be positive, got {scale}")
        s = torch.tensor(scale, dtype=x.dtype, device=x.device)
    return torch.clamp(torch.round(x / s), -qmax, qmax) * s


# ---------------------------------------------------------------------------------------------------------------
# int8 GEMM (W8A8 / W4A8) and activation quantization
# ---------------------------------------------------------------------------------------------------------------

_I8_REGISTRY: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()

#: Output kinds of `int8_linear`: the kernel writes f16, bf16, int8 and int32; float32 is emulated only.
I8_OUTS = ("f16", "bf16", "int8", "int32", "f32")
_OUT_DTYPES = {
    "f16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": torch.int8,
    "int32": torch.int32,
    "f32": torch.float32,
}
_KERNEL_ACT_DTYPES = {torch.float16: "float16", torch.bfloat16: "bfloat16"}


def register_int8(weight: Any) -> int:
    """Registers an int8-GEMM weight holder (`lowbit.modules.Int8Linear`) for `int8_linear`; returns its handle."""
    return _register_in(_I8_REGISTRY, weight)


def _lookup_int8(handle: int) -> Any:
    return _lookup_in(_I8_REGISTRY, handle, "int8 weight")


def _check_int8_args(
    q: torch.Tensor,
    x_scale: Optional[torch.Tensor],
    n: int,
    k: int,
    out: str,
    out_scales: Optional[torch.Tensor],
    out_scale_value: float,
    bias: Optional[torch.Tensor],
) -> None:
    if q.dtype != torch.int8:
        raise ValueError(f"int8 linear: activations must be int8 codes, got {q.dtype}")
    if q.dim() != 2 or q.shape[1] != k:
        raise ValueError(f"int8 linear: activations have shape {tuple(q.shape)}, expected [M, {k}]")
    if out not in I8_OUTS:
        raise ValueError(f"int8 linear: out={out!r} (choose one of {', '.join(I8_OUTS)})")
    if x_scale is not None:
        if x_scale.dtype != torch.float32 or x_scale.shape != (q.shape[0],):
            raise ValueError(
                f"int8 linear: x_scale must be float32 [{q.shape[0]}] (one per row), "
                f"got {x_scale.dtype} {list(x_scale.shape)}"
            )
        if x_scale.device != q.device:
            raise ValueError(f"int8 linear: x_scale is on {x_scale.device}, activations on {q.device}")
    for what, v in (("out_scale", out_scales), ("bias", bias)):
        if v is not None:
            if v.dtype != torch.float32 or v.shape != (n,):
                raise ValueError(f"int8 linear: {what} must be float32 [{n}], got {v.dtype} {list(v.shape)}")
            if v.device != q.device:
                raise ValueError(f"int8 linear: {what} is on {v.device}, activations on {q.device}")
    if out == "int8" and out_scales is None and not (0.0 < out_scale_value < float("inf")):
        raise ValueError(f"int8 linear: int8 output needs a finite positive out_scale, got {out_scale_value}")


@torch.library.custom_op("lowbit::int8_linear", mutates_args=())
def int8_linear(
    q: torch.Tensor,
    x_scale: Optional[torch.Tensor],
    x_scale_value: float,
    handle: int,
    out: str,
    out_scales: Optional[torch.Tensor],
    out_scale_value: float,
    bias: Optional[torch.Tensor],
) -> torch.Tensor:
    """`y = epilogue(q[M, K] · Wqᵀ)` for the int8 weight registered under `handle` (`lowbit.modules.Int8Linear`):
    `acc` exact in int32, `v = ((f32(acc) · rs[m]) · w_scale[n]) + bias[n]` (each step one f32 rounding),
    rs = `x_scale[m]` or `x_scale_value`; written as f16 / bf16 / f32, int8 (`clamp(rne(v / os[n]), -128, 127)`,
    os = `out_scales[n]` or `out_scale_value`) or the raw int32 accumulator."""
    w = _lookup_int8(handle)
    n, k = w.out_features, w.in_features
    _check_int8_args(q, x_scale, n, k, out, out_scales, out_scale_value, bias)
    if q.is_cuda and kernels_enabled() and out != "f32" and q.shape[0] > 0:
        gemm = w.gpu_gemm(q.device)
        if gemm is not None:
            stats["int8_kernel"] += 1
            return _launch_int8(gemm, q, x_scale, x_scale_value, out, out_scales, out_scale_value, bias, n)
    stats["int8_emulated"] += 1
    return int8_linear_reference(
        q,
        w.int8_weight(q.device),
        w.weight_scale.to(q.device),
        x_scale,
        x_scale_value,
        out,
        out_scales,
        out_scale_value,
        bias,
    )


@int8_linear.register_fake
def _int8_linear_fake(
    q: torch.Tensor,
    x_scale: Optional[torch.Tensor],
    x_scale_value: float,
    handle: int,
    out: str,
    out_scales: Optional[torch.Tensor],
    out_scale_value: float,
    bias: Optional[torch.Tensor],
) -> torch.Tensor:
    torch._check(q.dim() == 2, lambda: f"int8 linear: q must be 2-D, got {q.dim()}-D")
    n = _lookup_int8(handle).out_features
    return q.new_empty((q.shape[0], n), dtype=_OUT_DTYPES[out])


def int8_gemm_exact(q: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """`acc[M, N] = q[M, K] · w[N, K]ᵀ` exactly, int32 (int8 operands): `torch._int_mm` on the CPU, a float64
    matmul (exact: |acc| < 2^53) elsewhere or when `_int_mm` refuses the shape."""
    if q.device.type == "cpu":
        try:
            return torch._int_mm(q.contiguous(), w.t().contiguous())
        except RuntimeError:
            pass
    return (q.to(torch.float64) @ w.to(torch.float64).t()).to(torch.int32)


def int8_linear_reference(
    q: torch.Tensor,
    w: torch.Tensor,
    w_scale: torch.Tensor,
    x_scale: Optional[torch.Tensor],
    x_scale_value: float,
    out: str,
    out_scales: Optional[torch.Tensor] = None,
    out_scale_value: float = 1.0,
    bias: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The int8 GEMM's math in torch (the emulated path): exact int32 accumulation of int8 `q` `[M, K]` and the
    int8 operand `w` `[N, K]`, then the kernel's epilogue operation by operation in float32 (bit-identical to
    the kernel for every output type)."""
    acc = int8_gemm_exact(q, w)
    if out == "int32":
        return acc
    v = acc.to(torch.float32)
    if x_scale is not None:
        v = v * x_scale.to(torch.float32)[:, None]
    else:
        v = v * torch.tensor(x_scale_value, dtype=torch.float32, device=v.device)
    v = v * w_scale.to(torch.float32)[None, :]
    if bias is not None:
        v = v + bias.to(torch.float32)[None, :]
    if out == "int8":
        os = out_scales[None, :] if out_scales is not None else torch.tensor(out_scale_value, device=v.device)
        return torch.clamp(torch.round(v / os.to(torch.float32)), -128.0, 127.0).to(torch.int8)
    return v.to(_OUT_DTYPES[out])


#: Zeroed split-K workspaces of the int8 GEMM by (device, stream): the kernel leaves them zero after each call.
_I8_WORKSPACE: dict[tuple[int, int], torch.Tensor] = {}


def _int8_workspace(device: torch.device, stream: int, nbytes: int) -> torch.Tensor:
    key = (device.index if device.index is not None else torch.cuda.current_device(), stream)
    ws = _I8_WORKSPACE.get(key)
    if ws is None or ws.numel() < nbytes:
        ws = torch.zeros(max(nbytes, 1 << 16), dtype=torch.uint8, device=device)
        _I8_WORKSPACE[key] = ws
    return ws


def _gemm_rows(q: torch.Tensor, kk: int) -> tuple[torch.Tensor, int]:
    """Activation rows the int8 GEMM can read: 16-byte aligned, a row stride that is a multiple of 16 bytes, and
    `kk` (the kernel weight's K, the layer's K rounded up to 16 / 32) readable bytes per row; columns beyond the
    layer's K meet zero weight codes, so whatever they hold adds nothing (act_quant's rows are padded this way).
    Other layouts are copied into a zero-padded buffer."""
    m, k = q.shape
    if (
        q.stride(1) == 1
        and q.stride(0) >= kk
        and q.stride(0) % 16 == 0
        and q.data_ptr() % 16 == 0
        and q.untyped_storage().nbytes() >= q.storage_offset() + (m - 1) * q.stride(0) + kk
    ):
        return q, q.stride(0)
    buf = (torch.zeros if kk > k else torch.empty)((m, kk), dtype=torch.int8, device=q.device)
    buf[:, :k].copy_(q)
    return buf, kk


def _launch_int8(
    gemm: _C.Int8Gemm,
    q: torch.Tensor,
    x_scale: Optional[torch.Tensor],
    x_scale_value: float,
    out: str,
    out_scales: Optional[torch.Tensor],
    out_scale_value: float,
    bias: Optional[torch.Tensor],
    n: int,
) -> torch.Tensor:
    """Launches the int8 GEMM on torch's current stream with raw pointers (torch owns every buffer). Activation
    rows are passed in place when the kernel can read them (`_gemm_rows`), else copied."""
    m = q.shape[0]
    q, ldx = _gemm_rows(q, gemm.shape[1])
    y = torch.empty((m, n), dtype=_OUT_DTYPES[out], device=q.device)
    stream = torch.cuda.current_stream(q.device).cuda_stream
    ws_bytes = gemm.workspace_bytes(m)
    ws = _int8_workspace(q.device, stream, ws_bytes) if ws_bytes > 0 else None
    xs = x_scale.contiguous() if x_scale is not None else None
    os = out_scales.contiguous() if out_scales is not None else None
    b = bias.contiguous() if bias is not None else None
    gemm.run(
        q.data_ptr(),
        ldx,
        m,
        y.data_ptr(),
        n,
        out,
        0 if xs is None else xs.data_ptr(),
        float(x_scale_value),
        0 if b is None else b.data_ptr(),
        float(out_scale_value),
        0 if os is None else os.data_ptr(),
        0 if ws is None else ws.data_ptr(),
        0 if ws is None else ws.numel(),
        stream,
    )
    return y


def fwht_normalized(h: torch.Tensor, block: int) -> torch.Tensor:
    """Normalized fast Walsh-Hadamard transform on each block of `block` contiguous values of the last dimension
    (`block` a power of two dividing it): the butterflies of lowbit-core's `int8::fwht_normalized`, in the input's
    dtype, then a multiplication by `1 / sqrt(block)`."""
    if block <= 1:
        return h
    if block & (block - 1) or h.shape[-1] % block:
        raise ValueError(f"hadamard block {block} must be a power of two dividing {h.shape[-1]}")
    shape = h.shape
    v = h.reshape(-1, shape[-1] // block, block)
    length = 1
    while length < block:
        v = v.reshape(v.shape[0], v.shape[1], block // (2 * length), 2, length)
        a, b = v[..., 0, :], v[..., 1, :]
        v = torch.stack((a + b, a - b), dim=-2)
        length *= 2
    v = v.reshape(shape) * torch.tensor(1.0 / math.sqrt(block), dtype=h.dtype, device=h.device)
    return v


def _act_quant_torch(
    x: torch.Tensor,
    residual: Optional[torch.Tensor],
    gamma: Optional[torch.Tensor],
    eps: float,
    hadamard: int,
    static_scale: Optional[float],
) -> tuple[torch.Tensor, torch.Tensor]:
    h = x.to(torch.float32)
    if residual is not None:
        summed = (h + residual.to(torch.float32)).to(x.dtype)
        residual.copy_(summed)
        h = summed.to(torch.float32)
    if gamma is not None:
        ms = h.pow(2).mean(dim=-1, keepdim=True)
        h = h * torch.rsqrt(ms + eps) * gamma.to(torch.float32)
    h = fwht_normalized(h, hadamard)
    if static_scale is None:
        s = h.abs().amax(dim=-1) / 127.0
        s = torch.where(s == 0, torch.ones_like(s), s)
        q = torch.clamp(torch.round(h / s[:, None]), -127.0, 127.0).to(torch.int8)
        return q, s
    s1 = torch.tensor(static_scale, dtype=torch.float32, device=x.device)
    q = torch.clamp(torch.round(h / s1), -127.0, 127.0).to(torch.int8)
    return q, s1.reshape(1)


#: Longest row the activation-quantization kernel holds in shared memory; longer rows use the torch path.
_ACT_QUANT_MAX_K = 16384


@torch.library.custom_op("lowbit::act_quant", mutates_args=("residual",))
def _act_quant_op(
    x: torch.Tensor,
    residual: Optional[torch.Tensor],
    gamma: Optional[torch.Tensor],
    eps: float,
    hadamard: int,
    static_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """`lowbit.ops.act_quant` as a custom op (`static_scale <= 0`: dynamic per-token scales)."""
    static = static_scale if static_scale > 0 else None
    m, k = x.shape
    if x.is_cuda and x.dtype in _KERNEL_ACT_DTYPES and kernels_enabled() and 0 < m and k <= _ACT_QUANT_MAX_K:
        stats["act_quant_kernel"] += 1
        x = x.contiguous()
        ldq = (k + 31) // 32 * 32  # rows padded for the int8 GEMM's K step (see _gemm_rows)
        qbuf = torch.empty((m, ldq), dtype=torch.int8, device=x.device)
        # With a static scale the second output is unspecified (lowbit.ops.act_quant returns None for it): no fill
        # kernel per call (1 us of a ~45 us Mamba2-2.7B decode layer on an H100).
        scales = torch.empty((m if static is None else 1,), dtype=torch.float32, device=x.device)
        g = gamma.contiguous() if gamma is not None else None
        _C.act_quant(
            x.data_ptr(),
            k,
            0 if residual is None else residual.data_ptr(),
            0 if g is None else g.data_ptr(),
            float(eps),
            int(hadamard),
            static,
            qbuf.data_ptr(),
            ldq,
            0 if static is not None else scales.data_ptr(),
            m,
            k,
            _KERNEL_ACT_DTYPES[x.dtype],
            x.device.index if x.device.index is not None else torch.cuda.current_device(),
            torch.cuda.current_stream(x.device).cuda_stream,
        )
        return qbuf[:, :k], scales
    stats["act_quant_emulated"] += 1
    return _act_quant_torch(x, residual, gamma, eps, hadamard, static)


@_act_quant_op.register_fake
def _act_quant_fake(
    x: torch.Tensor,
    residual: Optional[torch.Tensor],
    gamma: Optional[torch.Tensor],
    eps: float,
    hadamard: int,
    static_scale: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    torch._check(x.dim() == 2, lambda: f"act_quant: x must be 2-D, got {x.dim()}-D")
    kernel = x.is_cuda and x.dtype in _KERNEL_ACT_DTYPES and kernels_enabled() and x.shape[1] <= _ACT_QUANT_MAX_K
    ldq = (x.shape[1] + 31) // 32 * 32 if kernel else x.shape[1]
    q = x.new_empty((x.shape[0], ldq), dtype=torch.int8)[:, : x.shape[1]]
    rows = x.shape[0] if static_scale <= 0 else 1
    return q, x.new_empty((rows,), dtype=torch.float32)


def act_quant(
    x: torch.Tensor,
    residual: Optional[torch.Tensor] = None,
    gamma: Optional[torch.Tensor] = None,
    eps: float = 1e-6,
    hadamard: int = 1,
    static_scale: Optional[float] = None,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Quantizes activations `x` `[T, K]` to int8 for the int8 GEMM, one row (token) at a time:

    `h = x + residual` (then `residual := h` in x's dtype, in place) when `residual` is given;
    `h = h · rsqrt(mean(h²) + eps) · gamma` when `gamma` (`[K]`) is given (RMSNorm);
    `h = FWHT(h) / sqrt(H)` on blocks of `hadamard` = H columns when H > 1 (power of two dividing K);
    `q = clamp(rne(h / s), -127, 127)` with `s = absmax(h) / 127` per row (dynamic; 1 for a zero row) or the
    static per-tensor `static_scale`.

    Returns `(q int8 [T, K], scales float32 [T])`, scales `None` with a static scale. CUDA float16 / bfloat16 inputs
    run lowbit's `lowbit_act_quant` kernel on the current stream (`q` is then a view with a row stride rounded up
    to 32 bytes, as the int8 GEMM wants); everything else runs the same steps in torch (float32). The two agree
    exactly without RMSNorm / Hadamard, and to a code of ±1 at rounding boundaries with them."""
    if x.dim() != 2:
        raise ValueError(f"act_quant: x must be [T, K], got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise ValueError(f"act_quant: x must be a floating-point tensor, got {x.dtype}")
    k = x.shape[1]
    if residual is not None and (residual.shape != x.shape or residual.dtype != x.dtype):
        raise ValueError(
            f"act_quant: residual must match x ({x.dtype} {list(x.shape)}), got {residual.dtype} {list(residual.shape)}"
        )
    if residual is not None and not residual.is_contiguous():
        raise ValueError("act_quant: residual must be contiguous (it is updated in place)")
    if gamma is not None and gamma.shape != (k,):
        raise ValueError(f"act_quant: gamma must have shape [{k}], got {list(gamma.shape)}")
    for what, t in (("residual", residual), ("gamma", gamma)):
        if t is not None and t.device != x.device:
            raise ValueError(f"act_quant: {what} is on {t.device}, x on {x.device}")
    if gamma is not None:
        gamma = gamma.to(x.dtype)  # the kernel reads the RMSNorm weight in the activations' dtype
    if hadamard > 1 and (hadamard & (hadamard - 1) or k % hadamard):
        raise ValueError(f"act_quant: hadamard={hadamard} must be a power of two dividing K={k}")
    if static_scale is not None and not (0.0 < static_scale < float("inf")):
        raise ValueError(f"act_quant: static_scale must be finite and positive, got {static_scale}")
    if not (eps >= 0.0 and math.isfinite(eps)):
        raise ValueError(f"act_quant: eps must be finite and >= 0, got {eps}")
    q, s = _act_quant_op(x, residual, gamma, float(eps), int(hadamard), -1.0 if static_scale is None else static_scale)
    return q, (None if static_scale is not None else s)
