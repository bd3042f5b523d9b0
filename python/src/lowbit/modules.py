"""`LowbitLinear`, the module `quantize_` puts in place of `nn.Linear`, and `PackedWeight`, its weight;
`Int8Linear`, the W8A8 / W4A8 layer on lowbit's int8 GEMM."""

from __future__ import annotations

import threading
from typing import Any, Optional, Union

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

    # The packed weight in `state_dict()`: `<prefix>qweight.<field>` (the fields of `PackedWeight.tensors()`, uint32
    # fields as int32 bit patterns). Loading rebuilds the weight with the checks of a checkpoint load; the layer's
    # scheme comes from the module (quantize a skeleton with the same config first, or use `lowbit.load`).
    _FIELDS = "qweight."

    def _save_to_state_dict(self, destination: Any, prefix: str, keep_vars: bool) -> None:
        super()._save_to_state_dict(destination, prefix, keep_vars)
        for name, t in self.packed.tensors().items():
            destination[prefix + self._FIELDS + name] = t

    def _load_from_state_dict(
        self,
        state_dict: Any,
        prefix: str,
        local_metadata: Any,
        strict: bool,
        missing_keys: list[str],
        unexpected_keys: list[str],
        error_msgs: list[str],
    ) -> None:
        head = prefix + self._FIELDS
        fields = {key[len(head) :]: state_dict.pop(key) for key in [k for k in state_dict if k.startswith(head)]}
        super()._load_from_state_dict(
            state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        )
        if not fields:
            if strict:
                missing_keys.extend(head + name for name in self.packed.tensors())
            return
        try:
            raw = {name: t.detach().to("cpu").contiguous().numpy().tobytes() for name, t in fields.items()}
            qweight = _C.qweight_from_fields(self.scheme, self.out_features, self.in_features, raw)
        except ValueError as e:
            error_msgs.append(f"{head}*: {e}")
            return
        self.packed = PackedWeight(qweight)

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


def _bytes_of(t: torch.Tensor) -> bytes:
    return t.detach().to("cpu").contiguous().numpy().tobytes()


def _pack_w4(q: torch.Tensor) -> torch.Tensor:
    """int8 codes `q` in -8..7 `[N, K]` -> uint8 `[N, K/2]`: `u = q + 8`, even column in the low nibble."""
    u = (q.to(torch.int16) + 8).to(torch.uint8)
    return u[:, 0::2] | (u[:, 1::2] << 4)


def _unpack_w4(p: torch.Tensor) -> torch.Tensor:
    """Inverse of `_pack_w4`."""
    lo = (p & 0xF).to(torch.int8) - 8
    hi = (p >> 4).to(torch.int8) - 8
    return torch.stack((lo, hi), dim=-1).reshape(p.shape[0], p.shape[1] * 2)


class Int8Linear(nn.Module):
    """A linear layer on lowbit's int8 tensor-core GEMM: int8 activations times int8 weights (W8A8) or 4-bit
    weights in QQQ's two-level form (W4A8: `w = s[n] · g[n][j] · q`, q in -8..7, integer group scales g in 1..16),
    exact int32 accumulation and a fused f32 epilogue.

    State (all in `state_dict()`): `weight_q` (W8: int8 `[N, K']`; W4: uint8 `[N, K'/2]`, `u = q + 8` with the
    even column in the low nibble; K' = K rounded up to the kernel's K step, 16 for W8 and 32 for W4, with zero
    codes in the padding), `weight_scale` float32 `[N]`, `group_scales` uint8 `[N, K/G]` (grouped W4
    only), `input_scale` float32 scalar (the static per-tensor activation scale, 0 for dynamic per-token scales)
    and the float `bias`.

    - `forward(x)`: quantizes `x` to int8 (`lowbit.ops.act_quant`: dynamic per token, or the static scale) and runs
      the GEMM; f16 / bf16 CUDA inputs use lowbit's kernels, everything else the exact emulated path (an exact
      integer matmul and the kernel's epilogue in float32).
    - `forward_int8(q, x_scale, out, out_scale)`: the GEMM on already quantized activations, with f16 / bf16 /
      float32 / int32 output or int8 output with one output scale per column.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        w_bits: int = 8,
        group_size: Optional[int] = None,
        bias: bool = False,
        act_scale: Optional[float] = None,
        config: Optional[dict[str, object]] = None,
    ) -> None:
        super().__init__()
        if w_bits not in (8, 4):
            raise ValueError(f"w_bits={w_bits}: Int8Linear holds 8-bit (W8A8) or 4-bit (W4A8) weights")
        if in_features <= 0:
            raise ValueError(f"in_features={in_features} must be positive")
        if out_features <= 0:
            raise ValueError(f"out_features={out_features} must be positive")
        if w_bits == 8 and group_size is not None:
            raise ValueError("W8 weights are per-channel: group_size applies to w_bits=4 only")
        if group_size is not None and (group_size <= 0 or group_size % 32 or in_features % group_size):
            raise ValueError(f"group_size={group_size} must be a multiple of 32 dividing in_features={in_features}")
        self.in_features = in_features
        # The kernel's K step: 16 (W8) or 32 (W4) columns. Other K are stored zero-padded (zero codes add nothing).
        self.k_pad = -(-in_features // (16 if w_bits == 8 else 32)) * (16 if w_bits == 8 else 32)
        self.out_features = out_features
        self.w_bits = w_bits
        self.group_size = group_size
        self.config = dict(config or {})
        if w_bits == 8:
            self.register_buffer("weight_q", torch.zeros((out_features, self.k_pad), dtype=torch.int8))
        else:
            self.register_buffer("weight_q", torch.full((out_features, self.k_pad // 2), 0x88, dtype=torch.uint8))
        self.register_buffer("weight_scale", torch.ones(out_features, dtype=torch.float32))
        if group_size is not None:
            gs = torch.ones((out_features, in_features // group_size), dtype=torch.uint8)
            self.register_buffer("group_scales", gs)
        else:
            self.register_buffer("group_scales", None)
        self.register_buffer("input_scale", torch.tensor(0.0, dtype=torch.float32))
        self.act_scale = act_scale
        if bias:
            self.bias: Optional[nn.Parameter] = nn.Parameter(torch.zeros(out_features), requires_grad=False)
        else:
            self.register_parameter("bias", None)
        self._gpu: dict[int, Optional[_C.Int8Gemm]] = {}
        self._int8: dict[torch.device, torch.Tensor] = {}
        self._lock = threading.Lock()
        self.handle = ops.register_int8(self)

    # ----------------------------------------------------------------------------------------------------------
    # construction

    @property
    def act_scale(self) -> Optional[float]:
        """The static per-tensor activation scale, or `None` for dynamic per-token scales."""
        return self._act_scale

    @act_scale.setter
    def act_scale(self, value: Optional[float]) -> None:
        if value is not None and not (0.0 < float(value) < float("inf")):
            raise ValueError(f"act_scale must be finite and positive, got {value}")
        self.input_scale.fill_(0.0 if value is None else float(value))
        # the kernels take it as a float32: keep the float32 value, so that the buffer and the attribute agree
        self._act_scale = None if value is None else float(self.input_scale)

    @classmethod
    def from_codes(
        cls,
        codes: torch.Tensor,
        weight_scale: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        *,
        w_bits: int = 8,
        group_scales: Optional[torch.Tensor] = None,
        act_scale: Optional[float] = None,
        config: Optional[dict[str, object]] = None,
    ) -> Int8Linear:
        """Builds the layer from integer codes: `codes` int8 `[N, K]` (W8: any int8; W4: -8..7), `weight_scale`
        `[N]`, W4 `group_scales` uint8 `[N, K/G]` in 1..16 (or `None`: per-channel)."""
        if codes.dtype != torch.int8 or codes.dim() != 2:
            raise ValueError(f"codes must be a 2-D int8 tensor, got {codes.dtype} {list(codes.shape)}")
        n, k = codes.shape
        group = None
        if group_scales is not None:
            if group_scales.dtype != torch.uint8 or group_scales.dim() != 2 or group_scales.shape[0] != n:
                raise ValueError(
                    f"group_scales must be uint8 [{n}, K/G], got {group_scales.dtype} {list(group_scales.shape)}"
                )
            if group_scales.shape[1] == 0 or k % group_scales.shape[1]:
                raise ValueError(f"group_scales has {group_scales.shape[1]} groups, which do not divide K={k}")
            group = k // group_scales.shape[1]
        m = cls(k, n, w_bits=w_bits, group_size=group, bias=bias is not None, act_scale=act_scale, config=config)
        if weight_scale.shape != (n,):
            raise ValueError(f"weight_scale has shape {list(weight_scale.shape)}, expected [{n}]")
        padded = torch.nn.functional.pad(codes, (0, m.k_pad - k))  # zero codes: no contribution
        if w_bits == 4:
            if int(codes.min()) < -8 or int(codes.max()) > 7:
                raise ValueError("W4 codes must lie in -8..7")
            m.weight_q.copy_(_pack_w4(padded))
        else:
            m.weight_q.copy_(padded)
        m.weight_scale.copy_(weight_scale.to(torch.float32))
        if group_scales is not None:
            if int(group_scales.min()) < 1 or int(group_scales.max()) > 16:
                raise ValueError("W4 group scales must lie in 1..16")
            assert m.group_scales is not None
            m.group_scales.copy_(group_scales)
        if bias is not None:
            if bias.shape != (n,):
                raise ValueError(f"bias has shape {tuple(bias.shape)}, expected ({n},)")
            assert m.bias is not None
            m.bias.data.copy_(bias.detach())
        return m

    @classmethod
    def from_float(
        cls,
        weight: torch.Tensor,
        bias: Optional[torch.Tensor] = None,
        *,
        w_bits: int = 8,
        group_size: Optional[int] = 128,
        gptq_hessian: Optional[Any] = None,
        act_scale: Optional[float] = None,
        gptq_options: Optional[dict[str, Any]] = None,
        config: Optional[dict[str, object]] = None,
    ) -> Int8Linear:
        """Quantizes a float weight `[N, K]`.

        - `w_bits=8`: symmetric per-channel int8 (`s = absmax / 127`; `group_size` is ignored: W8 is per-channel).
        - `w_bits=4`: QQQ two-level form with integer group scales per `group_size` columns (`None`: per-channel),
          lowbit-core's `int8::W4A8Weight::quantize`.
        - `gptq_hessian` (a `lowbit._C.Hessian` of the layer's inputs, e.g. from `lowbit.calibrate`): GPTQ first
          (8-bit per-channel, or 4-bit symmetric groups for W4), then the int8 GEMM's form: exact for W8 (codes
          `u - 128` with the f16 scales as f32), for W4 the two-level form of the GPTQ weight (one more
          rounding). `gptq_options` are passed to `lowbit._C.gptq_quantize`.
        """
        if weight.dim() != 2:
            raise ValueError(f"weight must be 2-D [N, K], got shape {tuple(weight.shape)}")
        if not weight.is_floating_point():
            raise ValueError(f"weight must be floating point, got {weight.dtype}")
        n, k = weight.shape
        group = group_size if w_bits == 4 else None
        if w_bits not in (8, 4):
            raise ValueError(f"w_bits={w_bits}: Int8Linear holds 8-bit (W8A8) or 4-bit (W4A8) weights")
        if group is not None and k % group:
            raise ValueError(f"group_size={group} does not divide in_features={k}")
        data = _bytes_of(weight.to(torch.float32))
        if gptq_hessian is not None:
            scheme = "w8-int-pc" if w_bits == 8 else f"w4-int-{'pc' if group is None else f'g{group}'}"
            qw, _ = _C.gptq_quantize(data, n, k, gptq_hessian, scheme, **(gptq_options or {}))
            if w_bits == 8:
                return cls.from_qweight(qw, bias, act_scale=act_scale, config=config)
            data = qw.dequantize()
        if w_bits == 8:
            codes_b, scales_b = _C.quantize_w8a8(data, n, k)
            gs = None
        else:
            kp = -(-k // 32) * 32  # the quantizer wants K % 32 == 0: zero columns quantize to code 0
            if kp != k:
                wf = torch.frombuffer(bytearray(data), dtype=torch.float32).reshape(n, k)
                data = _bytes_of(torch.nn.functional.pad(wf, (0, kp - k)))
            codes_b, gs_b, scales_b = _C.quantize_w4a8(data, n, kp, group)
            gs = None
            if gs_b is not None and group is not None:
                gs = torch.frombuffer(bytearray(gs_b), dtype=torch.uint8).reshape(n, k // group)
            codes_b = _bytes_of(torch.frombuffer(bytearray(codes_b), dtype=torch.int8).reshape(n, kp)[:, :k])
        codes = torch.frombuffer(bytearray(codes_b), dtype=torch.int8).reshape(n, k)
        scales = torch.frombuffer(bytearray(scales_b), dtype=torch.float32)
        return cls.from_codes(codes, scales, bias, w_bits=w_bits, group_scales=gs, act_scale=act_scale, config=config)

    @classmethod
    def from_qweight(
        cls,
        qweight: _C.QWeight,
        bias: Optional[torch.Tensor] = None,
        *,
        act_scale: Optional[float] = None,
        config: Optional[dict[str, object]] = None,
    ) -> Int8Linear:
        """Builds a W8A8 layer from a symmetric per-channel 8-bit INT `QWeight` (`quantize_`'s RTN or GPTQ output):
        the same values exactly."""
        n, k = qweight.shape
        codes_b, scales_b = _C.int8_operands(qweight)
        codes = torch.frombuffer(bytearray(codes_b), dtype=torch.int8).reshape(n, k)
        scales = torch.frombuffer(bytearray(scales_b), dtype=torch.float32)
        return cls.from_codes(codes, scales, bias, w_bits=8, act_scale=act_scale, config=config)

    # ----------------------------------------------------------------------------------------------------------
    # weight views and caches

    def codes(self) -> torch.Tensor:
        """The weight codes, int8 `[N, K]` (W4: q in -8..7, before the group scales)."""
        return self._padded_codes()[:, : self.in_features]

    def _padded_codes(self) -> torch.Tensor:
        return self.weight_q if self.w_bits == 8 else _unpack_w4(self.weight_q)

    def int8_weight(self, device: torch.device) -> torch.Tensor:
        """The GEMM's int8 operand on `device` (W4: `q · g`), cached."""
        t = self._int8.get(device)
        if t is None:
            with self._lock:
                q = self.codes().contiguous()
                if self.group_scales is not None:
                    g = self.group_scales.to(torch.int16).repeat_interleave(self.group_size or 1, dim=1)
                    q = (q.to(torch.int16) * g).to(torch.int8)
                t = q.to(device)
                self._int8[device] = t
        return t

    def dequantize(self) -> torch.Tensor:
        """The weight the GEMM multiplies by, float32 `[N, K]` (`w_scale[n] · int8 operand`)."""
        return self.int8_weight(self.weight_scale.device).to(torch.float32) * self.weight_scale[:, None]

    def gpu_gemm(self, device: torch.device) -> Optional[_C.Int8Gemm]:
        """The weight uploaded for lowbit's int8 GEMM on `device` (cached), `None` when the kernel cannot take it."""
        index = device.index if device.index is not None else torch.cuda.current_device()
        if index in self._gpu:
            return self._gpu[index]
        with self._lock:
            if index not in self._gpu:
                gs = self.group_scales
                try:
                    self._gpu[index] = _C.Int8Gemm(
                        _bytes_of(self._padded_codes()),
                        self.out_features,
                        self.k_pad,
                        _bytes_of(self.weight_scale.to(torch.float32)),
                        index,
                        self.w_bits,
                        None if gs is None else _bytes_of(gs),
                        self.group_size if gs is not None else None,
                    )
                except NotImplementedError:
                    self._gpu[index] = None
        return self._gpu[index]

    def release_caches(self) -> None:
        """Drops the cached device copies (rebuilt on the next call)."""
        with self._lock:
            self._gpu.clear()
            self._int8.clear()

    def _load_from_state_dict(self, state_dict: Any, prefix: str, *args: Any, **kwargs: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
        self.release_caches()
        s = float(self.input_scale)
        self._act_scale = s if s > 0 else None

    def _apply(self, fn: Any, *args: Any, **kwargs: Any) -> Int8Linear:
        # `.half()` / `.to(dtype)` would convert the float32 scales: keep the original values (moved to the new
        # device) so that the quantized layer stays bit-identical whatever the model's float dtype.
        old = {name: getattr(self, name) for name in ("weight_scale", "input_scale")}
        out = super()._apply(fn, *args, **kwargs)
        for name, t in old.items():
            new = getattr(self, name)
            if new.dtype != t.dtype:
                setattr(self, name, t.to(device=new.device))
        return out

    # ----------------------------------------------------------------------------------------------------------
    # compute

    def forward_int8(
        self,
        q: torch.Tensor,
        x_scale: Union[torch.Tensor, float],
        out: str = "f16",
        out_scale: Union[torch.Tensor, float, None] = None,
    ) -> torch.Tensor:
        """`y = epilogue(q · Wqᵀ)` on int8 activations `q` `[T, K]` with scales `x_scale` (float32 `[T]` per token or
        one float): `out="f16"` / `"bf16"` / `"f32"`: `y = acc · x_scale · w_scale[n] + bias[n]`;
        `out="int8"`: `clamp(rne(y / out_scale[n]), -128, 127)` with `out_scale` float32 `[N]` (one per output
        column, e.g. in_proj's per-segment scales expanded) or one float; `out="int32"`: the raw accumulator."""
        if isinstance(x_scale, torch.Tensor):
            xs: Optional[torch.Tensor] = x_scale
            xv = 1.0
        else:
            xs, xv = None, float(x_scale)
            if not (0.0 < xv < float("inf")):
                raise ValueError(f"x_scale must be finite and positive, got {x_scale}")
        if out == "int8" and out_scale is None:
            raise ValueError("out='int8' needs out_scale (float32 [N] or a float)")
        if isinstance(out_scale, torch.Tensor):
            os_t: Optional[torch.Tensor] = out_scale
            ov = 1.0
        else:
            os_t, ov = None, 1.0 if out_scale is None else float(out_scale)
        bias = None if self.bias is None else self.bias.detach().to(device=q.device, dtype=torch.float32)
        return torch.ops.lowbit.int8_linear(q, xs, xv, self.handle, out, os_t, ov, bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"Int8Linear: input has {x.shape[-1]} features, expected {self.in_features}")
        lead = x.shape[:-1]
        x2 = x.reshape(-1, self.in_features)
        q, s = ops.act_quant(x2, static_scale=self.act_scale)
        out = {torch.float16: "f16", torch.bfloat16: "bf16"}.get(x.dtype, "f32")
        y = self.forward_int8(q, s if s is not None else float(self.act_scale or 1.0), out=out)
        return y.to(x.dtype).reshape(*lead, self.out_features)

    @property
    def scheme(self) -> str:
        g = "pc" if self.group_size is None else f"g{self.group_size}"
        return f"w{self.w_bits}a8-{g}"

    @property
    def storage_bytes(self) -> int:
        gs = 0 if self.group_scales is None else self.group_scales.numel()
        return self.weight_q.numel() + gs + 4 * self.out_features

    def extra_repr(self) -> str:
        act = "int8 per-token" if self.act_scale is None else f"int8 static {self.act_scale:.4g}"
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, "
            f"scheme={self.scheme}, activations={act}"
        )
