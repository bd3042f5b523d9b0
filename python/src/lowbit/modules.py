"""`LowbitLinear`, the module `quantize_` puts in place of `nn.Linear`, and `PackedWeight`, its weight."""

from __future__ import annotations

import threading
from typing import Optional

import numpy as np
import torch
from torch import nn

from . import _C, ops


def _numpy_from(dtype: str, shape: list[int], data: bytes) -> np.ndarray:
    return np.frombuffer(data, dtype=np.dtype(dtype).newbyteorder("<")).reshape(shape).copy()


class PackedWeight:
    """A quantized `[out_features, in_features]` weight, held packed by lowbit's Rust core (`_C.QWeight`).

    Device copies are made on first use and cached: the GPU layout for lowbit's kernels (`gpu_gemm`) and, for
    the emulated path, the dequantized dense matrix (`dense`).
    """

    def __init__(self, qweight: _C.QWeight) -> None:
        self.qweight = qweight
        self.out_features, self.in_features = qweight.shape
        self.scheme: str = qweight.scheme
        self._dense: dict[tuple[torch.device, torch.dtype], torch.Tensor] = {}
        self._gpu: dict[int, Optional[_C.GpuGemm]] = {}
        self._lock = threading.Lock()
        self.handle = ops.register(self)

    @property
    def storage_bytes(self) -> int:
        return int(self.qweight.storage_bytes)

    def dequantize(self) -> torch.Tensor:
        """The dequantized weight, float32 on the CPU: exactly the values lowbit's kernels reproduce."""
        raw = self.qweight.dequantize()
        return torch.from_numpy(_numpy_from("float32", [self.out_features, self.in_features], raw))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The packed fields (codes, scales, ...) as CPU tensors, named as in `docs/formats.md`."""
        out: dict[str, torch.Tensor] = {}
        for name, dtype, shape, data in self.qweight.tensors():
            arr = _numpy_from(dtype, shape, data)
            if dtype == "uint32":  # torch has no general uint32 arithmetic: keep the bits in int32
                arr = arr.view(np.int32)
            out[name] = torch.from_numpy(arr)
        return out

    def dense(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The dequantized weight on `device` in `dtype` (cached): the emulated path's operand."""
        key = (device, dtype)
        t = self._dense.get(key)
        if t is None:
            with self._lock:
                t = self._dense.get(key)
                if t is None:
                    t = self.dequantize().to(device=device, dtype=dtype)
                    self._dense[key] = t
        return t

    def gpu_gemm(self, device: torch.device) -> Optional[_C.GpuGemm]:
        """The weight in the GPU GEMM layout on `device`, or `None` when no lowbit kernel runs this format there
        (the caller then uses the emulated path)."""
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index in self._gpu:
            return self._gpu[index]
        with self._lock:
            if index not in self._gpu:
                try:
                    self._gpu[index] = _C.GpuGemm(self.qweight, index)
                except NotImplementedError:
                    self._gpu[index] = None
        return self._gpu[index]

    def release_caches(self) -> None:
        """Drops the cached dense and GPU copies (they are rebuilt on the next call)."""
        with self._lock:
            self._dense.clear()
            self._gpu.clear()


class LowbitLinear(nn.Module):
    """A drop-in replacement of `nn.Linear` whose weight is quantized by lowbit.

    `forward` runs `torch.ops.lowbit.weight_only_linear` (lowbit's GPU kernel for float16/bfloat16 CUDA inputs, the
    emulated dequantize + matmul path otherwise) after an optional fake quantization of the activations
    (`act_bits`, per token or with the static `act_scale`). The bias stays a regular float parameter.
    """

    def __init__(
        self,
        packed: PackedWeight,
        bias: Optional[torch.Tensor] = None,
        *,
        act_bits: Optional[int] = None,
        act_scale: Optional[float] = None,
        config: Optional[dict[str, object]] = None,
    ) -> None:
        super().__init__()
        self.packed = packed
        self.in_features = packed.in_features
        self.out_features = packed.out_features
        self.act_bits = act_bits
        self.act_scale = act_scale
        self.config = dict(config or {})
        if bias is not None:
            if bias.shape != (self.out_features,):
                raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({self.out_features},)")
            self.bias: Optional[nn.Parameter] = nn.Parameter(bias.detach().clone(), requires_grad=False)
        else:
            self.register_parameter("bias", None)

    @property
    def scheme(self) -> str:
        return self.packed.scheme

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        if self.act_bits is not None:
            x2 = ops.fake_quantize_activations(x2, self.act_bits, self.act_scale)
        y = torch.ops.lowbit.weight_only_linear(x2, self.packed.handle, self.out_features)
        y = y.reshape(*lead, self.out_features)
        if self.bias is not None:
            y = y + self.bias.to(y.dtype)
        return y

    def extra_repr(self) -> str:
        act = (
            "float"
            if self.act_bits is None
            else f"int{self.act_bits}" + (" static" if self.act_scale is not None else " per-token")
        )
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"scheme={self.scheme}, activations={act}"
        )
