"""lowbit's PyTorch operators, registered with `torch.library` so that `torch.compile` and CUDA graphs work.

- `torch.ops.lowbit.weight_only_linear(x[M, K], handle, out_features) -> y[M, N]`: `y = x · dequant(W)ᵀ` for the
  packed weight registered under `handle`. On a CUDA device with float16/bfloat16 activations it launches
  lowbit's weight-only GEMM kernel on `torch.cuda.current_stream()` (no synchronization, so the launch can be
  captured in a CUDA graph); everywhere else (CPU, float32, formats without a kernel) it runs the emulated path:
  the exactly dequantized weight (the values the kernels reproduce) times `x` with torch's matmul.
  Its fake (meta) implementation only computes the output shape, so the op traces under `torch.compile`.
- `fake_quantize_activations(x, bits, scale)`: symmetric integer fake quantization of activations, per token
  (dynamic) or with a static per-tensor scale, round-half-to-even as lowbit-core's int8 activations.

`stats` counts kernel launches and emulated calls (tests use it to check which path ran).
"""

from __future__ import annotations

import itertools
import os
import threading
import weakref
from collections import Counter
from typing import TYPE_CHECKING, Optional

import torch

from . import _C

if TYPE_CHECKING:
    from .modules import PackedWeight

__all__ = ["fake_quantize_activations", "kernels_enabled", "stats", "weight_only_linear"]

_REGISTRY: weakref.WeakValueDictionary[int, PackedWeight] = weakref.WeakValueDictionary()
_NEXT = itertools.count(1)
_LOCK = threading.Lock()

#: `kernel`: launches of lowbit's GPU GEMM; `emulated`: dequantize + matmul calls.
stats: Counter[str] = Counter()


def register(weight: PackedWeight) -> int:
    """Registers a packed weight and returns the integer handle the operator refers to it by."""
    with _LOCK:
        handle = next(_NEXT)
        _REGISTRY[handle] = weight
    return handle


def lookup(handle: int) -> PackedWeight:
    w = _REGISTRY.get(handle)
    if w is None:
        raise RuntimeError(f"lowbit: no packed weight is registered under handle {handle} (its module was freed)")
    return w


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
    ws_bytes = gemm.workspace_bytes(m, name)
    ws = torch.empty(ws_bytes, dtype=torch.uint8, device=x.device) if ws_bytes > 0 else None
    stream = torch.cuda.current_stream(x.device).cuda_stream
    gemm.run(x.data_ptr(), k, y.data_ptr(), m, name, 0 if ws is None else ws.data_ptr(), ws_bytes, stream)
    return y


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
