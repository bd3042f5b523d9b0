"""Quamba2-style quantization of Mamba1 / Mamba2 mixers: `lowbit.quantize_(model, lowbit.Mamba(...), calib_data)`.

Works on Hugging Face `MambaForCausalLM` / `Mamba2ForCausalLM` (or their backbones, blocks, or a bare
`MambaMixer` / `Mamba2Mixer`), and on any module built like them (`Mamba1Spec`-compatible mixers, e.g. the
typeseg port in `lowbit.typeseg`). With int8 activations (and for W4A16 on mixers that are not HF's; W4A16 keeps
HF's mixers, see below) each mixer is replaced by a `QuantMamba1Mixer` / `QuantMamba2Mixer` that keeps
HF's call signature `mixer(hidden_states, cache=None, attention_mask=None)` (or `cache_params=`) and its cache API
(conv and recurrent states through `cache.update_conv_state` / `update_recurrent_state`; transformers >= 5.17, tested
with 5.17.0 and 5.24.0, see `_StateCache`; older versions raise `UnsupportedTransformersError`), so `model.generate`
and manual decode loops work: a call with a cache and one token runs the one-step decode path, anything else the
whole-sequence path.

Calibration (forward pre-hooks on every mixer; the hook replays the mixer in float with `_m1_forward` /
`_m2_forward` and records every intermediate). Pass 1 gathers statistics in the original basis; the
transforms are then fixed; pass 2 replays the transformed float mixer to get the scales that depend on the
transforms (out_proj input) and, for 4-bit weights with `gptq=True`, the input Hessians of the projections in
their final basis.

Transforms (all exactly compute-invariant in float; tests check it):
- Sort-and-cluster (Mamba2; Mamba1 with `pseudo_headdim`): per channel of the SSM input x, max over samples of
  mean_t |x|; channels sorted within heads, heads clustered within SSD groups, contiguous channel clusters per head
  cluster (`_C.quamba_sort_and_cluster`); in_proj z / x rows and dt rows (by head), conv x channels, A_log, D,
  dt_bias (by head), the gated-norm weight and out_proj columns are permuted offline. x then gets one scale per
  (group, head cluster, channel cluster); B and C one per SSD group (`per_state_group`); with `fine_conv_input`
  (default) the conv input (in_proj's int8 x / B / C outputs) gets the same granularity (Quamba2: one per segment).
- Hadamard (`hadamard=True`): in_proj W <- W·H (H = normalized block-diagonal Sylvester Hadamard, block = the
  largest power of two dividing d_model, <= 8192) with the FWHT applied online to the mixer input by the
  activation quantizer right after the block RMSNorm; out_proj W <- W·H with the online FWHT fused into the gated
  norm that feeds it. We rotate only the mixer's inputs (not the residual stream, unlike Quamba2's rotated
  embedding), so embeddings, norms and the residual stay as they are.

Dataflow per configuration (T = batch x tokens; "q" = int8 codes, static per-tensor or per-channel scales):

W8A8 / W4A8 (`a_bits=8`; the projections are `Int8Linear`: int8 per-output-channel weights, or INT4 g128 GPTQ for
W4A8 (QQQ-style int8 rebuild), int32 accumulation):
- Mamba2: residual -> `act_quant` (RMSNorm with the block's gamma, FWHT, static scale) -> q[T, d_model] ->
  in_proj (int8 out, per-column scales: z, dt one each; x | B | C as the conv output with `fine_conv_input`, else
  one per segment) -> `causal_conv1d_int8` over xBC (per-channel input scales; int8 out: x with
  the cluster scales, B / C per state group) -> `ssd_chunk_scan_int8` (fp32 state, f16 y) -> `gated_rmsnorm_quant`
  (y * silu(z), group RMSNorm, weight, FWHT, int8) -> out_proj (f16 out). Decode: `causal_conv1d_update_int8`
  (int8 conv state in the cache) and `ssd_state_update_int8` (fp32 SSM state in the cache).
- Mamba1: mixer input -> `act_quant` -> in_proj (int8 out, x and z scales; x per cluster with `pseudo_headdim`
  and `fine_conv_input`) -> `causal_conv1d_int8` (int8 out u,
  percentile scale, or cluster scales with `pseudo_headdim`) -> x_proj (int8 in with u's per-tensor scale: with
  cluster scales u is re-quantized to it first; int8 out with dt_low / B / C scales) -> dt_proj (always W8A8,
  int8 out; its bias is the scan's dt_bias) -> `selective_scan_int8` (fp32 state, f16 y; a bidirectional mixer
  adds the reverse scan) -> `gated_rmsnorm_quant` (y * silu(z), no norm, FWHT, int8) -> out_proj (f16 out).
  Decode: `causal_conv1d_update_int8` + `selective_state_update_int8`.
W4A16 (`a_bits=16`, weight-only): a Hugging Face `MambaMixer` / `Mamba2Mixer` is kept as it is (its forward, its
cache handling, its fp16 math and whatever fast kernels HF picks); only its in_proj / out_proj (and Mamba1's
x_proj) become `LowbitLinear` INT4 g128 weight-only layers (GPTQ with calibration data), in the original basis (no
Hadamard: its online FWHT would cost more than it gains without int8 activations). dt_proj (K = dt_rank) stays
float (HF's code reads `dt_proj.weight`). Other mixers (`lowbit_mamba_kind` modules such as the typeseg port, whose
forward does not call its linear layers) become a `QuantMamba1Mixer` / `QuantMamba2Mixer` running the float
reference dataflow: the online FWHTs in torch; conv, scan / SSD, gated norm in float32.

`Mamba.quantize_head`: the embedding becomes int8 per row (`QuantEmbedding`) and lm_head INT4 g128 weight-only.
"""

from __future__ import annotations

import functools
import inspect
import math
import types
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Optional, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from . import _C
from .configs import Mamba
from .modules import LowbitLinear, PackedWeight

Tensor = torch.Tensor

# --------------------------------------------------------------------------------------------------------------
# Hadamard
# --------------------------------------------------------------------------------------------------------------


def hadamard_block(dim: int, cap: int = 8192) -> int:
    """The largest power of two dividing `dim`, at most `cap` (1 when `dim` is odd)."""
    b = 1
    while dim % (2 * b) == 0 and 2 * b <= cap:
        b *= 2
    return b


def fwht(x: Tensor, block: int) -> Tensor:
    """Normalized fast Walsh-Hadamard transform (Sylvester order) on each block of `block` contiguous entries of the
    last dimension, computed in float32: x·H with H symmetric and orthonormal. `block` 1 returns `x`."""
    if block <= 1:
        return x
    shape, dtype = x.shape, x.dtype
    if shape[-1] % block != 0 or block & (block - 1):
        raise ValueError(f"fwht: block={block} must be a power of two dividing the last dimension {shape[-1]}")
    y = x.reshape(-1, block).to(torch.float32)
    h = 1
    while h < block:
        y = y.view(-1, block // (2 * h), 2, h)
        a, b = y[:, :, 0, :], y[:, :, 1, :]
        y = torch.stack((a + b, a - b), dim=2)
        h *= 2
    return (y.reshape(shape) * (1.0 / math.sqrt(block))).to(dtype)


# --------------------------------------------------------------------------------------------------------------
# Float math shared by calibration, the W4A16 path and the stand-in ops
# --------------------------------------------------------------------------------------------------------------


def _conv_causal(x: Tensor, w: Tensor, b: Optional[Tensor]) -> Tensor:
    """Depthwise causal conv: x [B, L, C], w [C, W] -> [B, L, C] (no activation), zero history."""
    width = w.shape[1]
    xt = F.pad(x.transpose(1, 2), (width - 1, 0))
    y = F.conv1d(xt.to(w.dtype), w.unsqueeze(1), b, groups=w.shape[0])
    return y.transpose(1, 2)


def _scan1(
    u: Tensor, delta: Tensor, A: Tensor, Bm: Tensor, Cm: Tensor, D: Optional[Tensor], h0: Optional[Tensor]
) -> tuple[Tensor, Tensor]:
    """Mamba1 selective scan, float32, sequential over t: u, delta [B, L, D]; A [D, N]; Bm, Cm [B, L, N]."""
    bsz, length, dim = u.shape
    h = torch.zeros(bsz, dim, A.shape[1], dtype=torch.float32, device=u.device) if h0 is None else h0.float()
    dA = torch.exp(delta.unsqueeze(-1) * A)  # [B, L, D, N]
    hs = (delta * u).unsqueeze(-1) * Bm.unsqueeze(2)  # delta*B*u, overwritten by the states h_t
    for t in range(length):
        h = torch.addcmul(hs[:, t], dA[:, t], h)
        hs[:, t] = h
    y = torch.einsum("bldn,bln->bld", hs, Cm)
    if D is not None:
        y = y + u * D
    return y, h


def _ssd(
    x: Tensor,
    delta: Tensor,
    A: Tensor,
    Bm: Tensor,
    Cm: Tensor,
    D: Optional[Tensor],
    h0: Optional[Tensor],
    chunk: int = 256,
) -> tuple[Tensor, Tensor]:
    """Mamba2 SSD, float32, chunked (exact recurrence semantics): x [B, L, H, P]; delta [B, L, H] (already
    softplus'd and clamped); A [H] (negative); Bm, Cm [B, L, G, N]; h0 [B, H, P, N]. Returns y, final state."""
    bsz, length, nheads, hdim = x.shape
    rep = nheads // Bm.shape[2]
    Bh = Bm.float().repeat_interleave(rep, dim=2)
    Ch = Cm.float().repeat_interleave(rep, dim=2)
    h = torch.zeros(bsz, nheads, hdim, Bm.shape[3], device=x.device) if h0 is None else h0.float().clone()
    dA = delta * A  # [B, L, H]
    ys = []
    for s in range(0, length, chunk):
        e = min(length, s + chunk)
        xc, dc, Bc, Cc = x[:, s:e].float(), delta[:, s:e], Bh[:, s:e], Ch[:, s:e]
        cum = torch.cumsum(dA[:, s:e], dim=1)  # [B, l, H]
        seg = cum[:, :, None, :] - cum[:, None, :, :]  # [B, t, s, H]
        causal = torch.ones(e - s, e - s, dtype=torch.bool, device=x.device).tril()
        decay = torch.exp(seg.masked_fill(~causal[None, :, :, None], float("-inf")))
        cb = torch.einsum("bthn,bshn->btsh", Cc, Bc) * decay * dc[:, None, :, :]
        y = torch.einsum("btsh,bshp->bthp", cb, xc)
        y = y + torch.einsum("bthn,bhpn->bthp", Cc, h) * torch.exp(cum)[..., None]
        w = torch.exp(cum[:, -1:, :] - cum) * dc
        h = h * torch.exp(cum[:, -1, :])[:, :, None, None] + torch.einsum("bsh,bshp,bshn->bhpn", w, xc, Bc)
        ys.append(y)
    y = torch.cat(ys, dim=1) if ys else x.new_zeros(x.shape, dtype=torch.float32)
    if D is not None:
        y = y + x.float() * D[:, None]
    return y, h


def _gated_norm(y: Tensor, z: Optional[Tensor], weight: Optional[Tensor], group: int, eps: float, norm: bool) -> Tensor:
    g = y.float()
    if z is not None:
        g = g * F.silu(z.float())
    if norm:
        shp = g.shape
        gg = g.reshape(*shp[:-1], shp[-1] // group, group)
        g = (gg * torch.rsqrt(gg.pow(2).mean(-1, keepdim=True) + eps)).reshape(shp)
    if weight is not None:
        g = g * weight
    return g


def _q8(v: Tensor, scale: Any) -> Tensor:
    """Symmetric int8 codes: clamp(rne(v / scale), -127, 127)."""
    return torch.clamp(torch.round(v.float() / scale), -127, 127).to(torch.int8)


def _dq(q: Tensor, scale: Any) -> Tensor:
    return q.float() * scale


# --------------------------------------------------------------------------------------------------------------
# Ops of the other issue-7 modules (ssm_ops / ssd_ops / Int8Linear / act_quant); stand-ins with the agreed
# signatures are used while a module is missing (they dequantize and run the float math above).
# --------------------------------------------------------------------------------------------------------------


class _StandIn:
    @staticmethod
    def act_quant(
        x: Tensor, residual: Optional[Tensor], gamma: Optional[Tensor], eps: float, hadamard: int, static_scale: Any
    ) -> tuple[Tensor, Optional[Tensor]]:
        h = x.float()
        if residual is not None:
            h = h + residual.float()
            residual.copy_(h.to(residual.dtype))
        if gamma is not None:
            h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps) * gamma.float()
        h = fwht(h, hadamard)
        return _q8(h, static_scale), None

    @staticmethod
    def causal_conv1d_int8(
        x_q: Tensor, x_scale: Tensor, weight: Tensor, bias: Optional[Tensor], out_scale: Tensor, silu: bool = True
    ) -> Tensor:
        y = _conv_causal(_dq(x_q, x_scale), weight, bias)
        return _q8(F.silu(y) if silu else y, out_scale)

    @staticmethod
    def causal_conv1d_update_int8(
        x_q: Tensor,
        conv_state: Tensor,
        x_scale: Tensor,
        weight: Tensor,
        bias: Optional[Tensor],
        out_scale: Tensor,
        silu: bool = True,
    ) -> Tensor:
        conv_state.copy_(torch.cat([conv_state[:, :, 1:], x_q[:, :, None]], dim=-1))
        y = (conv_state.float() * x_scale[:, None] * weight).sum(-1)
        if bias is not None:
            y = y + bias
        return _q8(F.silu(y) if silu else y, out_scale)

    @staticmethod
    def selective_scan_int8(
        u: Tensor,
        u_scale: Tensor,
        dt: Tensor,
        dt_scale: float,
        dt_bias: Optional[Tensor],
        A: Tensor,
        Bm: Tensor,
        B_scale: float,
        Cm: Tensor,
        C_scale: float,
        Dskip: Optional[Tensor],
        z: Optional[Tensor],
        z_scale: float,
        delta_softplus: bool = True,
        dt_add: float = 0.0,
        initial_state: Optional[Tensor] = None,
        reverse: bool = False,
    ) -> tuple[Tensor, Tensor]:
        uf, dtf, bf, cf = _dq(u, u_scale), _dq(dt, dt_scale), _dq(Bm, B_scale), _dq(Cm, C_scale)
        if dt_bias is not None:
            dtf = dtf + dt_bias
        delta = (F.softplus(dtf) if delta_softplus else dtf) + dt_add
        if reverse:
            uf, delta, bf, cf = (t.flip(1) for t in (uf, delta, bf, cf))
        y, h = _scan1(uf, delta, A, bf, cf, Dskip, initial_state)
        if reverse:
            y = y.flip(1)
        if z is not None:
            y = y * F.silu(_dq(z, z_scale))
        return y.to(torch.float16), h

    @staticmethod
    def selective_state_update_int8(
        state: Tensor,
        u: Tensor,
        u_scale: Tensor,
        dt: Tensor,
        dt_scale: float,
        dt_bias: Optional[Tensor],
        A: Tensor,
        Bm: Tensor,
        B_scale: float,
        Cm: Tensor,
        C_scale: float,
        Dskip: Optional[Tensor],
        z: Optional[Tensor],
        z_scale: float,
        delta_softplus: bool = True,
        dt_add: float = 0.0,
    ) -> Tensor:
        y, h = _StandIn.selective_scan_int8(
            u[:, None],
            u_scale,
            dt[:, None],
            dt_scale,
            dt_bias,
            A,
            Bm[:, None],
            B_scale,
            Cm[:, None],
            C_scale,
            Dskip,
            None if z is None else z[:, None],
            z_scale,
            delta_softplus,
            dt_add,
            state,
        )
        state.copy_(h)
        return y[:, 0]

    @staticmethod
    def gated_rmsnorm_quant(
        y: Tensor,
        z: Optional[Tensor],
        z_scale: float,
        weight: Optional[Tensor],
        group_size: int,
        eps: float,
        norm: bool,
        hadamard: int,
        out_scale: float,
    ) -> Tensor:
        g = _gated_norm(y, None if z is None else _dq(z, z_scale), weight, group_size, eps, norm)
        return _q8(fwht(g, hadamard), out_scale)

    @staticmethod
    def ssd_chunk_scan_int8(
        x: Tensor,
        x_scale: Tensor,
        dt: Tensor,
        dt_scale: float,
        dt_bias: Tensor,
        A: Tensor,
        Bm: Tensor,
        B_scale: Tensor,
        Cm: Tensor,
        C_scale: Tensor,
        Dskip: Optional[Tensor],
        chunk_size: int = 256,
        initial_state: Optional[Tensor] = None,
        dt_limit: tuple[float, float] = (0.0, float("inf")),
    ) -> tuple[Tensor, Tensor]:
        _bsz, _length, nheads, hdim = x.shape
        xf = _dq(x, x_scale.view(nheads, hdim))
        delta = torch.clamp(F.softplus(_dq(dt, dt_scale) + dt_bias), dt_limit[0], dt_limit[1])
        bf = _dq(Bm, B_scale[:, None])
        cf = _dq(Cm, C_scale[:, None])
        y, h = _ssd(xf, delta, A, bf, cf, Dskip, initial_state, chunk_size)
        return y.to(torch.float16), h

    @staticmethod
    def ssd_state_update_int8(
        state: Tensor,
        x: Tensor,
        x_scale: Tensor,
        dt: Tensor,
        dt_scale: float,
        dt_bias: Tensor,
        A: Tensor,
        Bm: Tensor,
        B_scale: Tensor,
        Cm: Tensor,
        C_scale: Tensor,
        Dskip: Optional[Tensor],
        dt_limit: tuple[float, float] = (0.0, float("inf")),
    ) -> Tensor:
        y, h = _StandIn.ssd_chunk_scan_int8(
            x[:, None], x_scale, dt[:, None], dt_scale, dt_bias, A, Bm[:, None], B_scale, Cm[:, None], C_scale,
            Dskip, 256, state, dt_limit,
        )  # fmt: skip
        state.copy_(h)
        return y[:, 0]


class _StandInInt8Linear(nn.Module):
    """Stand-in for `lowbit.modules.Int8Linear` (emulated: exact integer products in float64, same epilogue)."""

    def __init__(self, w_deq: Tensor, bias: Optional[Tensor], w_bits: int) -> None:
        super().__init__()
        self.register_buffer("weight", w_deq.float().contiguous())
        self.register_buffer("bias", None if bias is None else bias.detach().float().clone())
        self.w_bits = w_bits
        self.out_features, self.in_features = w_deq.shape

    @classmethod
    def from_float(
        cls,
        weight: Tensor,
        bias: Optional[Tensor],
        w_bits: int = 8,
        group_size: Optional[int] = 128,
        gptq_hessian: Any = None,
    ) -> _StandInInt8Linear:
        w = weight.detach().float().cpu()
        if w_bits == 8:
            s = (w.abs().amax(dim=1, keepdim=True) / 127).clamp(min=1e-12)
            deq = torch.clamp(torch.round(w / s), -127, 127) * s
        else:
            deq = _w4_packed(w, group_size, gptq_hessian).dequantize()
        return cls(deq.to(weight.device), bias, w_bits)

    def forward_int8(self, q: Tensor, x_scale: Any, out: str = "f16", out_scale: Optional[Tensor] = None) -> Tensor:
        acc = q.double() @ self.weight.double().t()
        xs = x_scale.double()[:, None] if isinstance(x_scale, Tensor) else float(x_scale)
        y = acc * xs
        if self.bias is not None:
            y = y + self.bias.double()
        if out == "int8":
            assert out_scale is not None
            return _q8(y, out_scale.double())
        return y.to({"bf16": torch.bfloat16, "f32": torch.float32}.get(out, torch.float16))


def _module(name: str) -> Any:
    import importlib

    try:
        return importlib.import_module(f"lowbit.{name}")
    except ImportError:
        return None


def _op(name: str) -> Callable[..., Any]:
    """The agreed op `name` from lowbit.ssm_ops / lowbit.ssd_ops / lowbit.ops, else the stand-in."""
    for mod in ("ssm_ops", "ssd_ops", "ops"):
        m = _module(mod)
        if m is not None and hasattr(m, name):
            return getattr(m, name)
    return getattr(_StandIn, name)


def _int8_linear_cls() -> Any:
    m = _module("modules")
    return getattr(m, "Int8Linear", _StandInInt8Linear)


def using_stand_ins() -> list[str]:
    """Names of agreed ops that are not available yet and run on this module's stand-ins (empty when none)."""
    names = [
        "act_quant",
        "causal_conv1d_int8",
        "causal_conv1d_update_int8",
        "selective_scan_int8",
        "selective_state_update_int8",
        "gated_rmsnorm_quant",
        "ssd_chunk_scan_int8",
        "ssd_state_update_int8",
    ]
    out = [n for n in names if _op(n) is getattr(_StandIn, n)]
    if _int8_linear_cls() is _StandInInt8Linear:
        out.append("Int8Linear")
    return out


# --------------------------------------------------------------------------------------------------------------
# Weight helpers
# --------------------------------------------------------------------------------------------------------------


def _w4_scheme(k: int, group_size: Optional[int]) -> str:
    """INT4 scheme for in_features k: groups of `group_size`, else the largest of 128 / 64 / 32 dividing k, else
    per-channel (`None` asks for per-channel)."""
    if group_size is None:
        return "w4-int-pc"
    for g in (group_size, 128, 64, 32):
        if k % g == 0:
            return f"w4-int-g{g}"
    return "w4-int-pc"


def _fbytes(t: Tensor) -> bytes:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()


def _w4_packed(w: Tensor, group_size: Optional[int], hessian: Any) -> PackedWeight:
    n, k = w.shape
    scheme = _w4_scheme(k, group_size)
    if hessian is None:
        return PackedWeight(_C.quantize(_fbytes(w), n, k, scheme))
    q, _ = _C.gptq_quantize(
        _fbytes(w),
        n,
        k,
        hessian,
        scheme,
        damp_percent=0.01,
        block_size=128,
        act_order=False,
        static_groups=False,
        datatype_metric="mse",
        clip_search=False,
    )
    return PackedWeight(q)


class _Lin(nn.Module):
    """A float linear on given tensors (used for the float replay of a mixer)."""

    def __init__(self, weight: Tensor, bias: Optional[Tensor]) -> None:
        super().__init__()
        self.weight, self.bias = weight, bias

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(x, self.weight.to(x.dtype), None if self.bias is None else self.bias.to(x.dtype))


def _t(x: Optional[Tensor]) -> Optional[Tensor]:
    return None if x is None else x.detach().float().clone()


# --------------------------------------------------------------------------------------------------------------
# Mixer specs: the float parameters of one mixer in a common layout, plus the float replay
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Mamba1Spec:
    """Float parameters of a Mamba1 mixer. in_proj rows are [x | z]; `conv_same`: the conv is 'SAME' padded
    (typeseg) instead of causal; `bidirectional`: the scan also runs on the reversed sequence and the two are
    summed before the gate; `dt_add` is added after the softplus."""

    w_in: Tensor
    b_in: Optional[Tensor]
    conv_w: Tensor
    conv_b: Optional[Tensor]
    w_x: Tensor
    b_x: Optional[Tensor]
    w_dt: Tensor
    dt_bias: Tensor
    A_log: Tensor
    D: Tensor
    w_out: Tensor
    b_out: Optional[Tensor]
    dt_add: float = 0.0
    conv_same: bool = False
    bidirectional: bool = False
    had_in: int = 1
    had_out: int = 1

    @property
    def d_inner(self) -> int:
        return self.D.shape[0]

    @property
    def d_state(self) -> int:
        return self.A_log.shape[1]

    @property
    def dt_rank(self) -> int:
        return self.w_dt.shape[1]

    @property
    def width(self) -> int:
        return self.conv_w.shape[1]


@dataclass
class Mamba2Spec:
    """Float parameters of a Mamba2 mixer. in_proj rows are [z | x | B | C | dt]."""

    w_in: Tensor
    b_in: Optional[Tensor]
    conv_w: Tensor
    conv_b: Optional[Tensor]
    dt_bias: Tensor
    A_log: Tensor
    D: Tensor
    norm_w: Tensor
    w_out: Tensor
    b_out: Optional[Tensor]
    nheads: int
    headdim: int
    ngroups: int
    d_state: int
    eps: float
    chunk_size: int = 256
    dt_limit: tuple[float, float] = (0.0, float("inf"))
    had_in: int = 1
    had_out: int = 1

    @property
    def d_inner(self) -> int:
        return self.nheads * self.headdim

    @property
    def width(self) -> int:
        return self.conv_w.shape[1]


def _conv_same_shift(width: int) -> int:
    """'SAME' padding puts (width-1)//2 taps before t: the SAME output at t is the causal output at t + shift."""
    return (width - 1) - (width - 1) // 2


def _m1_forward(p: Mamba1Spec, h: Tensor, rec: Optional[dict[str, Tensor]] = None) -> Tensor:
    """Float replay of a Mamba1 mixer on a whole sequence h [B, L, d_model] (online FWHTs per `p.had_*`)."""
    xin = fwht(h.float(), p.had_in)
    xz = F.linear(xin, p.w_in, p.b_in)
    x, z = xz.split(p.d_inner, dim=-1)
    u = _m1_conv(p, x)
    u = F.silu(u)
    xdbl = F.linear(u, p.w_x, p.b_x)
    dtl, Bm, Cm = xdbl.split([p.dt_rank, p.d_state, p.d_state], dim=-1)
    dt = F.linear(dtl, p.w_dt)
    delta = F.softplus(dt + p.dt_bias) + p.dt_add
    A = -torch.exp(p.A_log)
    y, _ = _scan1(u, delta, A, Bm, Cm, p.D, None)
    if p.bidirectional:
        yr, _ = _scan1(u.flip(1), delta.flip(1), A, Bm.flip(1), Cm.flip(1), p.D, None)
        y = y + yr.flip(1)
    g = fwht(y * F.silu(z), p.had_out)
    if rec is not None:
        rec.update(dict(xin=xin, x=x, z=z, u=u, dtl=dtl, B=Bm, C=Cm, dt=dt, g=g))
    return F.linear(g, p.w_out, p.b_out)


def _m1_conv(p: Mamba1Spec, x: Tensor) -> Tensor:
    if not p.conv_same:
        return _conv_causal(x, p.conv_w, p.conv_b)
    shift = _conv_same_shift(p.width)
    y = _conv_causal(F.pad(x, (0, 0, 0, shift)), p.conv_w, p.conv_b)
    return y[:, shift:]


def _m2_forward(p: Mamba2Spec, h: Tensor, rec: Optional[dict[str, Tensor]] = None) -> Tensor:
    """Float replay of a Mamba2 mixer on a whole sequence h [B, L, d_model]."""
    bsz, length, _ = h.shape
    d, gn = p.d_inner, p.ngroups * p.d_state
    xin = fwht(h.float(), p.had_in)
    proj = F.linear(xin, p.w_in, p.b_in)
    z, xbc, dt = proj.split([d, d + 2 * gn, p.nheads], dim=-1)
    xbc_c = F.silu(_conv_causal(xbc, p.conv_w, p.conv_b))
    x, Bm, Cm = xbc_c.split([d, gn, gn], dim=-1)
    delta = torch.clamp(F.softplus(dt + p.dt_bias), p.dt_limit[0], p.dt_limit[1])
    y, _ = _ssd(
        x.reshape(bsz, length, p.nheads, p.headdim),
        delta,
        -torch.exp(p.A_log),
        Bm.reshape(bsz, length, p.ngroups, p.d_state),
        Cm.reshape(bsz, length, p.ngroups, p.d_state),
        p.D,
        None,
        p.chunk_size,
    )
    g = _gated_norm(y.reshape(bsz, length, d), z, p.norm_w, d // p.ngroups, p.eps, True)
    g = fwht(g, p.had_out)
    if rec is not None:
        rec.update(dict(xin=xin, z=z, xbc=xbc, dt=dt, x=x, B=Bm, C=Cm, g=g))
    return F.linear(g, p.w_out, p.b_out)


def _kind(module: nn.Module) -> Optional[str]:
    kind = getattr(module, "lowbit_mamba_kind", None)
    if kind in ("mamba1", "mamba2"):
        return str(kind)
    name = type(module).__name__
    if name == "MambaMixer" and hasattr(module, "x_proj"):
        return "mamba1"
    if name == "Mamba2Mixer" and hasattr(module, "dt_bias"):
        return "mamba2"
    return None


def spec_of(module: nn.Module) -> Mamba1Spec | Mamba2Spec:
    """The float spec of a HF `MambaMixer` / `Mamba2Mixer` (or a module with the same parameters)."""
    kind = _kind(module)
    m: Any = module
    if kind == "mamba1":
        dt_b = m.dt_proj.bias
        return Mamba1Spec(
            w_in=_t(m.in_proj.weight),
            b_in=_t(m.in_proj.bias),
            conv_w=_t(m.conv1d.weight[:, 0, :]),
            conv_b=_t(m.conv1d.bias),
            w_x=_t(m.x_proj.weight),
            b_x=_t(m.x_proj.bias),
            w_dt=_t(m.dt_proj.weight),
            dt_bias=_t(dt_b) if dt_b is not None else torch.zeros(m.D.shape[0], device=m.D.device),
            A_log=_t(m.A_log),
            D=_t(m.D),
            w_out=_t(m.out_proj.weight),
            b_out=_t(m.out_proj.bias),
            dt_add=float(getattr(m, "dt_add", 0.0)),
            conv_same=bool(getattr(m, "conv_same", False)),
            bidirectional=bool(getattr(m, "bidirectional", False)),
        )
    if kind == "mamba2":
        limit = tuple(float(v) for v in getattr(m, "time_step_limit", (0.0, float("inf"))))
        return Mamba2Spec(
            w_in=_t(m.in_proj.weight),
            b_in=_t(m.in_proj.bias),
            conv_w=_t(m.conv1d.weight[:, 0, :]),
            conv_b=_t(m.conv1d.bias),
            dt_bias=_t(m.dt_bias),
            A_log=_t(m.A_log),
            D=_t(m.D),
            norm_w=_t(m.norm.weight),
            w_out=_t(m.out_proj.weight),
            b_out=_t(m.out_proj.bias),
            nheads=int(m.num_heads),
            headdim=int(m.head_dim),
            ngroups=int(m.n_groups),
            d_state=int(m.ssm_state_size),
            eps=float(m.norm.variance_epsilon),
            chunk_size=int(m.chunk_size),
            dt_limit=(limit[0], limit[1]),
        )
    raise ValueError(f"{type(module).__name__} is not a Mamba1 / Mamba2 mixer lowbit knows")


# --------------------------------------------------------------------------------------------------------------
# Offline transforms: channel / head reordering and Hadamard fusion (float, compute-invariant)
# --------------------------------------------------------------------------------------------------------------


def reorder_mamba2(p: Mamba2Spec, head_perm: list[int], channel_perm: list[int]) -> Mamba2Spec:
    """Permutes the SSM heads (`head_perm[new] = old`, within SSD groups) and the x channels (`channel_perm`,
    over d_inner, within heads) of a Mamba2 spec; the output is unchanged (float, up to summation order)."""
    d, gn, nh = p.d_inner, p.ngroups * p.d_state, p.nheads
    cp = torch.as_tensor(channel_perm, dtype=torch.long, device=p.w_in.device)
    hp = torch.as_tensor(head_perm, dtype=torch.long, device=p.w_in.device)
    _check_perm(cp, d, "channel_perm")
    _check_perm(hp, nh, "head_perm")
    heads_of = torch.div(cp, p.headdim, rounding_mode="floor").view(nh, p.headdim)
    if not bool((heads_of == hp[:, None]).all()):
        raise ValueError("channel_perm must keep channels inside their head and follow head_perm")
    rows = torch.cat([cp, d + cp, torch.arange(2 * d, 2 * d + 2 * gn, device=cp.device), 2 * d + 2 * gn + hp])
    conv = torch.cat([cp, torch.arange(d, d + 2 * gn, device=cp.device)])
    return replace(
        p,
        w_in=p.w_in[rows],
        b_in=None if p.b_in is None else p.b_in[rows],
        conv_w=p.conv_w[conv],
        conv_b=None if p.conv_b is None else p.conv_b[conv],
        dt_bias=p.dt_bias[hp],
        A_log=p.A_log[hp],
        D=p.D[hp],
        norm_w=p.norm_w[cp],
        w_out=p.w_out[:, cp],
    )


def reorder_mamba1(p: Mamba1Spec, channel_perm: list[int]) -> Mamba1Spec:
    """Permutes the d_inner channels of a Mamba1 spec (any permutation is compute-invariant)."""
    d = p.d_inner
    cp = torch.as_tensor(channel_perm, dtype=torch.long, device=p.w_in.device)
    _check_perm(cp, d, "channel_perm")
    rows = torch.cat([cp, d + cp])
    return replace(
        p,
        w_in=p.w_in[rows],
        b_in=None if p.b_in is None else p.b_in[rows],
        conv_w=p.conv_w[cp],
        conv_b=None if p.conv_b is None else p.conv_b[cp],
        w_x=p.w_x[:, cp],
        w_dt=p.w_dt[cp],
        dt_bias=p.dt_bias[cp],
        A_log=p.A_log[cp],
        D=p.D[cp],
        w_out=p.w_out[:, cp],
    )


def _check_perm(perm: Tensor, n: int, name: str) -> None:
    if perm.numel() != n or not torch.equal(torch.sort(perm).values, torch.arange(n, device=perm.device)):
        raise ValueError(f"{name} must be a permutation of range({n})")


def fuse_hadamard(p: Any, had_in: int, had_out: int) -> Any:
    """W_in <- W_in·H (input side) and W_out <- W_out·H; the replay then applies the FWHTs online."""
    if p.had_in != 1 or p.had_out != 1:
        raise ValueError("this spec already has fused Hadamards")
    return replace(p, w_in=fwht(p.w_in, had_in), w_out=fwht(p.w_out, had_out), had_in=had_in, had_out=had_out)


# --------------------------------------------------------------------------------------------------------------
# Calibration statistics
# --------------------------------------------------------------------------------------------------------------


class _Percentile:
    """Quamba's percentile observer: cur = quantile(|x|, alpha) per sample; EMA with momentum 0.01."""

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        obs = getattr(_C, "PercentileObserver", None)
        self.native = obs(alpha, 0.01) if obs is not None else None
        self.m: Optional[float] = None

    def update(self, x: Tensor) -> None:
        if self.native is not None:
            self.native.update(_fbytes(x.reshape(-1)), x.numel())
            return
        a = x.detach().abs().reshape(-1).float()
        k = max(1, min(a.numel(), math.ceil(self.alpha * a.numel())))
        cur = float(torch.kthvalue(a.cpu(), k).values)
        self.m = cur if self.m is None else self.m + 0.01 * (cur - self.m)

    def value(self) -> float:
        return float(self.native.value()) if self.native is not None else float(self.m or 0.0)


@dataclass
class _Stats:
    """Per-mixer calibration statistics (pass 1: original basis; pass 2: final basis)."""

    absmax: dict[str, float] = field(default_factory=dict)
    chan_absmax: dict[str, Tensor] = field(default_factory=dict)
    chan_meanabs: Optional[Tensor] = None
    pct: Optional[_Percentile] = None
    hess: dict[str, Any] = field(default_factory=dict)
    samples: int = 0

    def amax(self, name: str, v: Tensor) -> None:
        self.absmax[name] = max(self.absmax.get(name, 0.0), float(v.detach().abs().max()) if v.numel() else 0.0)

    def chan(self, name: str, v: Tensor) -> None:
        a = v.detach().abs().reshape(-1, v.shape[-1]).amax(0).float().cpu()
        old = self.chan_absmax.get(name)
        self.chan_absmax[name] = a if old is None else torch.maximum(old, a)

    def hessian(self, name: str, v: Tensor) -> None:
        v2 = v.detach().reshape(-1, v.shape[-1])
        acc = self.hess.get(name)
        if acc is None:
            acc = self.hess[name] = _C.HessianAccumulator(v2.shape[1])
        acc.update(_fbytes(v2), v2.shape[0])


def _scale(amax: float) -> float:
    return max(amax, 1e-6) / 127.0


# --------------------------------------------------------------------------------------------------------------
# Sort-and-cluster
# --------------------------------------------------------------------------------------------------------------


def sort_and_cluster(
    stat: Tensor, ngroups: int, nheads_per_group: int, headdim: int, head_clusters: int, dim_clusters: int
) -> dict[str, Any]:
    """Quamba2's sort-and-cluster on the per-channel statistic `stat` [ngroups*nheads_per_group*headdim]: the
    calibrator's `_C.quamba_sort_and_cluster` when built in, else a simple stand-in (channels sorted ascending
    within heads; heads ordered by their max and cut into equal-count clusters; equal-width channel clusters)."""
    hc = min(head_clusters, nheads_per_group)
    dc = min(dim_clusters, headdim)
    native = getattr(_C, "quamba_sort_and_cluster", None)
    if native is not None:
        return dict(native(_fbytes(stat), ngroups, nheads_per_group, headdim, hc, dc))
    s = stat.float().view(ngroups, nheads_per_group, headdim)
    head_perm: list[int] = []
    channel_perm: list[int] = []
    hgr: list[list[int]] = []
    dgr: list[list[list[int]]] = []
    for g in range(ngroups):
        order = torch.argsort(s[g].amax(-1), stable=True).tolist()
        bounds = [round(nheads_per_group * (i + 1) / hc) for i in range(hc)]
        hgr.append(bounds)
        dgr.append([[round(headdim * (j + 1) / dc) for j in range(dc)] for _ in range(hc)])
        for h in order:
            old = g * nheads_per_group + h
            head_perm.append(old)
            channel_perm += [old * headdim + int(c) for c in torch.argsort(s[g, h], stable=True)]
    return dict(head_perm=head_perm, channel_perm=channel_perm, head_group_range=hgr, dim_group_range=dgr)


def _cluster_scales(
    chan_absmax_new: Tensor, snc: dict[str, Any], ngroups: int, nheads_per_group: int, headdim: int
) -> Tensor:
    """Per-channel scale vector (new channel order) with one absmax scale per (group, head cluster, dim cluster)."""
    a = chan_absmax_new.view(ngroups, nheads_per_group, headdim)
    out = torch.empty_like(a)
    for g in range(ngroups):
        h0 = 0
        for ci, h1 in enumerate(snc["head_group_range"][g]):
            c0 = 0
            for c1 in snc["dim_group_range"][g][ci]:
                if h1 > h0 and c1 > c0:
                    out[g, h0:h1, c0:c1] = _scale(float(a[g, h0:h1, c0:c1].max()))
                c0 = c1
            h0 = h1
    return out.reshape(-1)


# --------------------------------------------------------------------------------------------------------------
# Quantized mixers
# --------------------------------------------------------------------------------------------------------------


# The transformers cache API. lowbit.mamba's mixers keep their conv and recurrent (SSM) states in the Hugging Face cache
# the model hands them, through one small interface (`_StateCache`). transformers gives it two shapes, told apart by
# feature detection (no version strings): from some 5.2x release on, `Cache` has the getters itself
# (`get_conv_state`, `get_recurrent_state`, `is_recording_past`; 5.24 has them), and the cache is used as it is;
# before that (5.17) `Cache` only has the updaters (`update_conv_state`, `update_recurrent_state`) and the states
# live on its linear-attention layers (`layers[i].conv_states[0]` / `recurrent_states[0]` / `has_previous_state[0]`
# / `record_past`, which is where 5.17's own mixers read them), wrapped by `_LayerStateCache`. Older caches
# (transformers 4's `MambaCache` / `Mamba2Cache`, no `update_conv_state`) raise `UnsupportedTransformersError`.

MIN_TRANSFORMERS = "5.17.0"
"""The oldest transformers whose Mamba / Mamba2 cache the quantized mixers support (tested with 5.17.0 and 5.24.0)."""


class UnsupportedTransformersError(NotImplementedError):
    """The installed transformers predates the linear-attention cache API (`Cache.update_conv_state`) that
    lowbit.mamba's quantized mixers keep their states in; they need transformers >= `MIN_TRANSFORMERS`."""

    def __init__(self, what: str) -> None:
        super().__init__(
            f"lowbit.mamba needs transformers >= {MIN_TRANSFORMERS} (its linear-attention cache API, "
            f"Cache.update_conv_state / update_recurrent_state), got {what}"
        )


class _StateCache(Protocol):
    """What the quantized mixers use of the HF cache (state index 0 of the layer `layer_idx`); the getters return
    None until the layer's first update (or after a reset)."""

    def get_conv_state(self, layer_idx: int) -> Optional[Tensor]: ...

    def update_conv_state(self, conv_states: Tensor, layer_idx: int, *, conv_kernel_size: int) -> Tensor: ...

    def get_recurrent_state(self, layer_idx: int) -> Optional[Tensor]: ...

    def update_recurrent_state(self, recurrent_states: Tensor, layer_idx: int) -> Tensor: ...

    def is_recording_past(self, layer_idx: int) -> bool: ...


_GETTERS = ("get_conv_state", "get_recurrent_state", "is_recording_past")
_UPDATERS = ("update_conv_state", "update_recurrent_state")


class _LayerStateCache:
    """`_StateCache` over a cache whose `Cache` has only the updaters (transformers 5.17): the states are read from
    its linear-attention layer, as the 5.17 mixers read them, with the later getters' semantics (None while the
    layer has no previous state)."""

    __slots__ = ("hf",)

    def __init__(self, hf: Any) -> None:
        self.hf = hf

    def get_conv_state(self, layer_idx: int) -> Optional[Tensor]:
        layer = self.hf.layers[layer_idx]
        return layer.conv_states[0] if layer.has_previous_state[0] else None

    def update_conv_state(self, conv_states: Tensor, layer_idx: int, *, conv_kernel_size: int) -> Tensor:
        return self.hf.update_conv_state(conv_states, layer_idx, conv_kernel_size=conv_kernel_size)

    def get_recurrent_state(self, layer_idx: int) -> Optional[Tensor]:
        layer = self.hf.layers[layer_idx]
        return layer.recurrent_states[0] if layer.has_previous_state[0] else None

    def update_recurrent_state(self, recurrent_states: Tensor, layer_idx: int) -> Tensor:
        return self.hf.update_recurrent_state(recurrent_states, layer_idx)

    def is_recording_past(self, layer_idx: int) -> bool:
        return bool(getattr(self.hf.layers[layer_idx], "record_past", False))


def _state_cache(cache: Any) -> Optional[_StateCache]:
    """The `_StateCache` view of an HF cache (None stays None): the cache itself when it has the getters, a
    `_LayerStateCache` when it has only the updaters and `layers`; anything older raises
    `UnsupportedTransformersError`."""
    if cache is None or isinstance(cache, _LayerStateCache):
        return cache
    if all(hasattr(cache, n) for n in (*_GETTERS, *_UPDATERS)):
        return cache
    if all(hasattr(cache, n) for n in (*_UPDATERS, "layers")):
        return _LayerStateCache(cache)
    raise UnsupportedTransformersError(f"a {type(cache).__name__} without that API")


def _hf_cache(cache: Any, kw: dict[str, Any]) -> Any:
    """The HF cache a forward was called with: `cache=` (transformers >= 5.2x) or `cache_params=` (5.17, and the
    deprecated name later)."""
    return kw.get("cache_params") if cache is None else cache


def _cache_arg(cache: Any, kw: dict[str, Any]) -> Optional[_StateCache]:
    return _state_cache(_hf_cache(cache, kw))


@functools.cache
def _cache_kwarg(forward: Callable[..., Any]) -> str:
    """The keyword under which an HF forward takes the cache: `cache` (transformers >= 5.2x) or `cache_params`
    (5.17, whose forwards would swallow an unknown `cache=` in their `**kwargs`)."""
    return "cache" if "cache" in inspect.signature(forward).parameters else "cache_params"


def _require_cache_api(module: nn.Module) -> None:
    """Raises `UnsupportedTransformersError` up front when `module` comes from a transformers whose `Cache` lacks
    the linear-attention updaters (the quantized mixers could not keep their states in its cache)."""
    if not type(module).__module__.startswith("transformers."):
        return
    from transformers import cache_utils

    cache_cls = getattr(cache_utils, "Cache", None)
    if cache_cls is None or not all(hasattr(cache_cls, n) for n in _UPDATERS):
        import transformers

        raise UnsupportedTransformersError(f"transformers {getattr(transformers, '__version__', '?')}")


def _warn_whole_width_norm(module: nn.Module, name: str) -> None:
    """Warns when an HF `Mamba2Mixer` with n_groups > 1 has a gated norm without `group_size` (transformers 5.17's
    torch path normalizes over all of d_inner; mamba_ssm, HF's fused kernel path and transformers 5.24 normalize each
    SSD group): the quantized mixer computes the per-group norm, so it differs from that float forward by more than
    quantization error."""
    if type(module).__name__ != "Mamba2Mixer" or int(getattr(module, "n_groups", 1)) <= 1:
        return
    if hasattr(getattr(module, "norm", None), "group_size"):
        return
    warnings.warn(
        f"{name or 'the mixer'}: this transformers' Mamba2 gated norm ignores n_groups={module.n_groups} (it "
        "normalizes over all of d_inner); lowbit's quantized mixer uses the per-group norm of mamba_ssm and of "
        "later transformers (5.24), so its outputs differ from this float model's beyond quantization error",
        stacklevel=3,
    )


def _conv_prefill(
    mixer: nn.Module, xq: Tensor, cache: Optional[_StateCache], conv_fn: Callable[[Tensor], Tensor], same_shift: int = 0
) -> Tensor:
    """Whole-sequence conv through the HF cache API: the cache keeps the last `width` conv inputs (int8 codes for the
    int8 path) and hands back the history to prepend when a prefill continues from a cached state."""
    length = xq.shape[1]
    if cache is not None:
        full = cache.update_conv_state(xq.transpose(1, 2), mixer.layer_idx, conv_kernel_size=mixer.width)
        return conv_fn(full.transpose(1, 2))[:, -length:]
    if same_shift:
        xq = F.pad(xq, (0, 0, 0, same_shift))
        return conv_fn(xq)[:, same_shift:]
    return conv_fn(xq)


def _decoding(mixer: nn.Module, cache: Optional[_StateCache], length: int) -> bool:
    return (
        cache is not None
        and length == 1
        and cache.get_conv_state(mixer.layer_idx) is not None
        and not cache.is_recording_past(mixer.layer_idx)
    )


def _out_kind(dtype: torch.dtype) -> str:
    return {torch.float16: "f16", torch.bfloat16: "bf16"}.get(dtype, "f32")


class _F32Buffers(nn.Module):
    """Keeps the float32 buffers float32 under `model.half()` / `.to(dtype)` (the SSM parameters and the scales are
    f32 by contract); only their device follows."""

    def _apply(self, fn: Callable[..., Any], recurse: bool = True) -> Any:  # type: ignore[override]
        keep = {k: b for k, b in self._buffers.items() if b is not None and b.dtype == torch.float32}
        super()._apply(fn, recurse)
        for k, b in keep.items():
            self._buffers[k] = b.to(self._buffers[k].device)  # type: ignore[union-attr]
        return self


def _buf(module: nn.Module, name: str, t: Optional[Tensor]) -> None:
    module.register_buffer(name, None if t is None else t.detach().float().contiguous())


class QuantMamba2Mixer(_F32Buffers):
    """A quantized Mamba2 mixer (W8A8 / W4A8 int8 dataflow, or W4A16 for mixers that are not HF's: the float
    reference dataflow); see the module docstring."""

    lowbit_quantized = True

    def __init__(self, p: Mamba2Spec, layer_idx: int, a_bits: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.a_bits = a_bits
        self.nheads, self.headdim, self.ngroups, self.d_state = p.nheads, p.headdim, p.ngroups, p.d_state
        self.d_inner, self.width, self.eps, self.chunk_size = p.d_inner, p.width, p.eps, p.chunk_size
        self.dt_limit = p.dt_limit
        self.had_in, self.had_out = p.had_in, p.had_out
        _buf(self, "conv_w", p.conv_w)
        _buf(self, "conv_b", p.conv_b)
        _buf(self, "dt_bias", p.dt_bias)
        _buf(self, "A", -torch.exp(p.A_log))
        _buf(self, "D", p.D)
        _buf(self, "norm_w", p.norm_w)
        self.in_proj: nn.Module = nn.Identity()
        self.out_proj: nn.Module = nn.Identity()
        self.gamma: Optional[Tensor] = None
        self.gamma_eps = 1e-6
        self.s_in = 1.0
        self.s_z = self.s_dt = self.s_y = 1.0

    def set_int8_scales(
        self, s_in: float, s_z: float, s_xbc_in: Tensor, s_dt: float, s_xbc_out: Tensor, s_y: float
    ) -> None:
        d, gn = self.d_inner, self.ngroups * self.d_state
        self.s_in, self.s_z, self.s_dt, self.s_y = s_in, s_z, s_dt, s_y
        dev = self.A.device
        out_vec = torch.cat([torch.full((d,), s_z), s_xbc_in.cpu(), torch.full((self.nheads,), s_dt)])
        _buf(self, "in_out_scale", out_vec.to(dev))
        _buf(self, "xbc_in_scale", s_xbc_in.to(dev))
        _buf(self, "xbc_out_scale", s_xbc_out.to(dev))
        _buf(self, "x_scale", s_xbc_out[:d].to(dev))
        _buf(self, "B_scale", s_xbc_out[d : d + gn].view(self.ngroups, self.d_state)[:, 0].contiguous().to(dev))
        _buf(self, "C_scale", s_xbc_out[d + gn :].view(self.ngroups, self.d_state)[:, 0].contiguous().to(dev))

    def forward(self, hidden_states: Tensor, cache: Any = None, attention_mask: Optional[Tensor] = None, **kw: Any):
        cache = _cache_arg(cache, kw)
        if self.a_bits == 8:
            return self._forward_int8(hidden_states, cache, attention_mask)
        return self._forward_float(hidden_states, cache, attention_mask)

    def forward_quantized(self, h: Tensor, q: Tensor, out_dtype: torch.dtype, cache: Any = None) -> Tensor:
        """The int8 mixer from its already quantized input `q` `[T, d_model]` (the fused block path: the previous
        block's residual add, this block's norm and the activation quantizer ran in one kernel); `h` `[B, L, d_model]`
        only gives the shape, `out_dtype` the output dtype."""
        return self._forward_int8(h, _state_cache(cache), None, q, out_dtype)

    def _forward_int8(
        self,
        h: Tensor,
        cache: Optional[_StateCache],
        mask: Optional[Tensor],
        q: Optional[Tensor] = None,
        odt: Optional[torch.dtype] = None,
    ) -> Tensor:
        bsz, length, dm = h.shape
        odt = h.dtype if odt is None else odt
        d, gn, nh = self.d_inner, self.ngroups * self.d_state, self.nheads
        if q is None:
            if mask is not None:
                h = h * mask[:, :, None].to(h.dtype)
            q, _ = _op("act_quant")(h.reshape(-1, dm), None, self.gamma, self.gamma_eps, self.had_in, self.s_in)
        proj = self.in_proj.forward_int8(q, self.s_in, "int8", self.in_out_scale).view(bsz, length, -1)
        z, xbc, dt = proj.split([d, d + 2 * gn, nh], dim=-1)
        if _decoding(self, cache, length):
            conv_state = cache.get_conv_state(self.layer_idx)
            xbc_c = _op("causal_conv1d_update_int8")(
                xbc[:, 0], conv_state, self.xbc_in_scale, self.conv_w, self.conv_b, self.xbc_out_scale
            )
            x, Bm, Cm = xbc_c.split([d, gn, gn], dim=-1)
            state = cache.get_recurrent_state(self.layer_idx)
            y = _op("ssd_state_update_int8")(
                state,
                x.reshape(bsz, nh, self.headdim),
                self.x_scale,
                dt[:, 0],
                self.s_dt,
                self.dt_bias,
                self.A,
                Bm.reshape(bsz, self.ngroups, self.d_state),
                self.B_scale,
                Cm.reshape(bsz, self.ngroups, self.d_state),
                self.C_scale,
                self.D,
                self.dt_limit,
            ).reshape(bsz, 1, d)
        else:
            conv = _op("causal_conv1d_int8")

            def conv_fn(v: Tensor) -> Tensor:
                return conv(v, self.xbc_in_scale, self.conv_w, self.conv_b, self.xbc_out_scale)

            xbc_c = _conv_prefill(self, xbc, cache, conv_fn)
            if mask is not None:
                xbc_c = xbc_c * mask[:, :, None].to(xbc_c.dtype)
            x, Bm, Cm = xbc_c.split([d, gn, gn], dim=-1)
            init = cache.get_recurrent_state(self.layer_idx) if cache is not None else None
            y, final = _op("ssd_chunk_scan_int8")(
                x.reshape(bsz, length, nh, self.headdim),
                self.x_scale,
                dt,
                self.s_dt,
                self.dt_bias,
                self.A,
                Bm.reshape(bsz, length, self.ngroups, self.d_state),
                self.B_scale,
                Cm.reshape(bsz, length, self.ngroups, self.d_state),
                self.C_scale,
                self.D,
                self.chunk_size,
                None if init is None else init.float(),
                self.dt_limit,
            )
            if cache is not None:
                cache.update_recurrent_state(final.float(), self.layer_idx)
            y = y.reshape(bsz, length, d)
        g = _op("gated_rmsnorm_quant")(
            y.reshape(-1, d).to(torch.float16),
            z.reshape(-1, d),
            self.s_z,
            self.norm_w,
            d // self.ngroups,
            self.eps,
            True,
            self.had_out,
            self.s_y,
        )
        out = self.out_proj.forward_int8(g, self.s_y, _out_kind(odt))
        return out.view(bsz, length, -1).to(odt)

    def _forward_float(self, h: Tensor, cache: Optional[_StateCache], mask: Optional[Tensor]) -> Tensor:
        bsz, length, _ = h.shape
        d, gn, nh = self.d_inner, self.ngroups * self.d_state, self.nheads
        if mask is not None:
            h = h * mask[:, :, None].to(h.dtype)
        proj = self.in_proj(fwht(h, self.had_in))
        z, xbc, dt = proj.split([d, d + 2 * gn, nh], dim=-1)
        conv_w = self.conv_w
        if _decoding(self, cache, length):
            conv_state = cache.get_conv_state(self.layer_idx)
            conv_state.copy_(torch.cat([conv_state[:, :, 1:], xbc[:, 0, :, None].to(conv_state.dtype)], dim=-1))
            xc = (conv_state.float() * conv_w).sum(-1)
            if self.conv_b is not None:
                xc = xc + self.conv_b
            xbc_c = F.silu(xc)[:, None]
            init = cache.get_recurrent_state(self.layer_idx)
        else:
            xbc_c = F.silu(_conv_prefill(self, xbc, cache, lambda v: _conv_causal(v.float(), conv_w, self.conv_b)))
            if mask is not None:
                xbc_c = xbc_c * mask[:, :, None].to(xbc_c.dtype)
            init = cache.get_recurrent_state(self.layer_idx) if cache is not None else None
        x, Bm, Cm = xbc_c.split([d, gn, gn], dim=-1)
        delta = torch.clamp(F.softplus(dt.float() + self.dt_bias), self.dt_limit[0], self.dt_limit[1])
        y, final = _ssd(
            x.reshape(bsz, length, nh, self.headdim),
            delta,
            self.A,
            Bm.reshape(bsz, length, self.ngroups, self.d_state),
            Cm.reshape(bsz, length, self.ngroups, self.d_state),
            self.D,
            None if init is None else init.float(),
            self.chunk_size,
        )
        if cache is not None:
            cache.update_recurrent_state(final, self.layer_idx)
        g = _gated_norm(y.reshape(bsz, length, d), z, self.norm_w, d // self.ngroups, self.eps, True)
        return self.out_proj(fwht(g.to(h.dtype), self.had_out)).to(h.dtype)


class QuantMamba1Mixer(_F32Buffers):
    """A quantized Mamba1 mixer (W8A8 / W4A8 int8 dataflow, or W4A16 for mixers that are not HF's: the float
    reference dataflow); see the module docstring."""

    lowbit_quantized = True

    def __init__(self, p: Mamba1Spec, layer_idx: int, a_bits: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        self.a_bits = a_bits
        self.d_inner, self.d_state, self.dt_rank, self.width = p.d_inner, p.d_state, p.dt_rank, p.width
        self.dt_add, self.conv_same, self.bidirectional = p.dt_add, p.conv_same, p.bidirectional
        self.had_in, self.had_out = p.had_in, p.had_out
        _buf(self, "conv_w", p.conv_w)
        _buf(self, "conv_b", p.conv_b)
        _buf(self, "dt_bias", p.dt_bias)
        _buf(self, "A", -torch.exp(p.A_log))
        _buf(self, "D", p.D)
        _buf(self, "w_dt", p.w_dt)
        self.in_proj: nn.Module = nn.Identity()
        self.x_proj: nn.Module = nn.Identity()
        self.dt_proj: nn.Module = nn.Identity()
        self.out_proj: nn.Module = nn.Identity()
        self.gamma: Optional[Tensor] = None
        self.gamma_eps = 1e-6
        self.s_in = self.s_z = self.s_dtl = self.s_B = self.s_C = self.s_dt = self.s_y = self.s_u = 1.0
        self.register_buffer("u_requant", None)

    def set_int8_scales(self, scales: dict[str, Any]) -> None:
        d, n = self.d_inner, self.d_state
        for k in ("s_in", "s_z", "s_dtl", "s_B", "s_C", "s_dt", "s_y"):
            setattr(self, k, float(scales[k]))
        dev = self.A.device
        x_vec = scales.get("x_scale")  # per-channel conv input scales (fine_conv_input with clusters)
        if x_vec is None:
            x_vec = torch.full((d,), float(scales["s_x"]))
        _buf(self, "x_scale", x_vec.to(dev))
        _buf(self, "u_scale", scales["u_scale"].to(dev))
        self.s_u = float(scales["s_u"])
        uniform = bool((scales["u_scale"] == self.s_u).all())
        _buf(self, "u_requant", None if uniform else scales["u_scale"].to(dev) / self.s_u)
        in_vec = torch.cat([x_vec.cpu(), torch.full((d,), self.s_z)])
        _buf(self, "in_out_scale", in_vec.to(dev))
        xp = torch.cat(
            [torch.full((self.dt_rank,), self.s_dtl), torch.full((n,), self.s_B), torch.full((n,), self.s_C)]
        )
        _buf(self, "x_out_scale", xp.to(dev))
        _buf(self, "dt_out_scale", torch.full((d,), self.s_dt, device=dev))

    def forward(self, hidden_states: Tensor, cache: Any = None, attention_mask: Optional[Tensor] = None, **kw: Any):
        cache = _cache_arg(cache, kw)
        if self.bidirectional and cache is not None:
            raise NotImplementedError("a bidirectional Mamba mixer has no step-by-step decode")
        if self.a_bits == 8:
            return self._forward_int8(hidden_states, cache, attention_mask)
        return self._forward_float(hidden_states, cache, attention_mask)

    def forward_quantized(self, h: Tensor, q: Tensor, out_dtype: torch.dtype, cache: Any = None) -> Tensor:
        """As QuantMamba2Mixer.forward_quantized."""
        if self.bidirectional and cache is not None:
            raise NotImplementedError("a bidirectional Mamba mixer has no step-by-step decode")
        return self._forward_int8(h, _state_cache(cache), None, q, out_dtype)

    def _forward_int8(
        self,
        h: Tensor,
        cache: Optional[_StateCache],
        mask: Optional[Tensor],
        q: Optional[Tensor] = None,
        odt: Optional[torch.dtype] = None,
    ) -> Tensor:
        bsz, length, dm = h.shape
        odt = h.dtype if odt is None else odt
        d, n, r = self.d_inner, self.d_state, self.dt_rank
        if q is None:
            if mask is not None:
                h = h * mask[:, :, None].to(h.dtype)
            q, _ = _op("act_quant")(h.reshape(-1, dm), None, self.gamma, self.gamma_eps, self.had_in, self.s_in)
        xz = self.in_proj.forward_int8(q, self.s_in, "int8", self.in_out_scale).view(bsz, length, 2 * d)
        x, z = xz.split(d, dim=-1)
        decode = _decoding(self, cache, length)
        if decode:
            u = _op("causal_conv1d_update_int8")(
                x[:, 0],
                cache.get_conv_state(self.layer_idx),
                self.x_scale,
                self.conv_w,
                self.conv_b,
                self.u_scale,
            )[:, None]
        else:
            conv = _op("causal_conv1d_int8")

            def conv_fn(v: Tensor) -> Tensor:
                return conv(v, self.x_scale, self.conv_w, self.conv_b, self.u_scale)

            shift = _conv_same_shift(self.width) if self.conv_same else 0
            u = _conv_prefill(self, x, cache, conv_fn, shift)
            if mask is not None:
                u = u * mask[:, :, None].to(u.dtype)
        u2 = u.reshape(-1, d)
        if self.u_requant is not None:  # cluster scales: x_proj's GEMM needs one per-tensor input scale
            u2 = torch.clamp(torch.round(u2.float() * self.u_requant), -127, 127).to(torch.int8)
        xdbl = self.x_proj.forward_int8(u2.contiguous(), self.s_u, "int8", self.x_out_scale).view(bsz, length, -1)
        dtl, Bm, Cm = xdbl.split([r, n, n], dim=-1)
        dt = self.dt_proj.forward_int8(dtl.reshape(-1, r), self.s_dtl, "int8", self.dt_out_scale)
        dt = dt.view(bsz, length, d)
        args = (self.dt_bias, self.A)
        if decode:
            y = _op("selective_state_update_int8")(
                cache.get_recurrent_state(self.layer_idx),
                u[:, 0],
                self.u_scale,
                dt[:, 0],
                self.s_dt,
                *args,
                Bm[:, 0],
                self.s_B,
                Cm[:, 0],
                self.s_C,
                self.D,
                None,
                1.0,
                True,
                self.dt_add,
            )[:, None]
        else:
            scan = _op("selective_scan_int8")
            init = cache.get_recurrent_state(self.layer_idx) if cache is not None else None
            sargs = (u, self.u_scale, dt, self.s_dt, *args, Bm, self.s_B, Cm)
            y, final = scan(*sargs, self.s_C, self.D, None, 1.0, True, self.dt_add, init, False)
            if self.bidirectional:
                yr, _ = scan(*sargs, self.s_C, self.D, None, 1.0, True, self.dt_add, None, True)
                y = y.float() + yr.float()
            if cache is not None:
                cache.update_recurrent_state(final.float(), self.layer_idx)
        g = _op("gated_rmsnorm_quant")(
            y.reshape(-1, d).to(torch.float16),
            z.reshape(-1, d),
            self.s_z,
            None,
            d,
            0.0,
            False,
            self.had_out,
            self.s_y,
        )
        out = self.out_proj.forward_int8(g, self.s_y, _out_kind(odt))
        return out.view(bsz, length, -1).to(odt)

    def _forward_float(self, h: Tensor, cache: Optional[_StateCache], mask: Optional[Tensor]) -> Tensor:
        _bsz, length, _ = h.shape
        d, n, r = self.d_inner, self.d_state, self.dt_rank
        if mask is not None:
            h = h * mask[:, :, None].to(h.dtype)
        xz = self.in_proj(fwht(h, self.had_in))
        x, z = xz.split(d, dim=-1)
        if _decoding(self, cache, length):
            conv_state = cache.get_conv_state(self.layer_idx)
            conv_state.copy_(torch.cat([conv_state[:, :, 1:], x[:, 0, :, None].to(conv_state.dtype)], dim=-1))
            uc = (conv_state.float() * self.conv_w).sum(-1)
            if self.conv_b is not None:
                uc = uc + self.conv_b
            u = F.silu(uc)[:, None]
            init = cache.get_recurrent_state(self.layer_idx)
        else:
            shift = _conv_same_shift(self.width) if self.conv_same else 0
            uc = _conv_prefill(self, x, cache, lambda v: _conv_causal(v.float(), self.conv_w, self.conv_b), shift)
            u = F.silu(uc)
            if mask is not None:
                u = u * mask[:, :, None].to(u.dtype)
            init = cache.get_recurrent_state(self.layer_idx) if cache is not None else None
        xdbl = self.x_proj(u.to(h.dtype)).float()
        dtl, Bm, Cm = xdbl.split([r, n, n], dim=-1)
        delta = F.softplus(F.linear(dtl, self.w_dt) + self.dt_bias) + self.dt_add
        y, final = _scan1(u.float(), delta, self.A, Bm, Cm, self.D, None if init is None else init.float())
        if self.bidirectional:
            yr, _ = _scan1(u.float().flip(1), delta.flip(1), self.A, Bm.flip(1), Cm.flip(1), self.D, None)
            y = y + yr.flip(1)
        if cache is not None:
            cache.update_recurrent_state(final, self.layer_idx)
        g = y * F.silu(z.float())
        return self.out_proj(fwht(g.to(h.dtype), self.had_out)).to(h.dtype)


class _Chain:
    """What a fused block hands to the next one: the f32 hidden state it returned and that state already put through
    the next block's norm and activation quantizer (valid only while the next block is called with that very
    tensor, which HF's layer loop does)."""

    def __init__(self) -> None:
        self.h: Optional[Tensor] = None
        self.q: Optional[Tensor] = None


def _fused_block_forward(
    block: nn.Module, hidden_states: Tensor, cache: Any = None, attention_mask: Any = None, **kw: Any
):
    """forward of an HF Mamba / Mamba2 block (residual_in_fp32) whose mixer is a lowbit int8 mixer with the block
    norm fused in: the same values as HF's block, with the residual add of this block, the next block's cast,
    RMSNorm, FWHT and activation quantization in one kernel (`ssm_ops.residual_rmsnorm_quant`). A mask, a
    non-float input or a caller other than the layer loop take HF's own forward (bit-identical results)."""
    mixer = block.mixer
    hf_cache = _hf_cache(cache, kw)
    state = _state_cache(hf_cache)
    if attention_mask is not None or not hidden_states.is_floating_point() or hidden_states.dim() != 3:
        forward = type(block).forward
        return forward(block, hidden_states, attention_mask=attention_mask, **{_cache_kwarg(forward): hf_cache})
    from .ssm_ops import residual_rmsnorm_quant

    chain: _Chain = mixer._lowbit_chain
    dt = block.norm.weight.dtype
    shape = hidden_states.shape
    if chain.h is hidden_states and chain.q is not None:
        q = chain.q
    else:
        hidden_states = hidden_states.to(torch.float32)
        q = residual_rmsnorm_quant(
            hidden_states.reshape(-1, shape[-1]), None, mixer.gamma, mixer.gamma_eps, mixer.had_in, mixer.s_in, dt
        )
    chain.h = chain.q = None
    out = mixer.forward_quantized(hidden_states, q, dt, state)
    nxt = mixer._lowbit_next
    if nxt is None:
        return hidden_states + out
    h = torch.empty(shape, dtype=torch.float32, device=out.device)
    chain.q = residual_rmsnorm_quant(
        hidden_states.reshape(-1, shape[-1]),
        out.reshape(-1, shape[-1]),
        nxt.gamma,
        nxt.gamma_eps,
        nxt.had_in,
        nxt.s_in,
        dt,
        h.view(-1, shape[-1]),
    )
    chain.h = h
    return h


def link_fused_blocks(model: nn.Module) -> int:
    """Installs the fused block forward (`_fused_block_forward`) on every HF Mamba / Mamba2 block of `model` whose
    mixer is a lowbit int8 mixer with the block norm fused in and whose residual is float32, and links consecutive
    ones. `quantize_` and `lowbit.load` call it; returns the number of fused blocks."""
    blocks = [
        b
        for b in model.modules()
        if isinstance(getattr(b, "mixer", None), (QuantMamba1Mixer, QuantMamba2Mixer))
        and b.mixer.a_bits == 8
        and b.mixer.gamma is not None
        and isinstance(getattr(b, "norm", None), _NormPassthrough)
        and getattr(b, "residual_in_fp32", False)
        and type(b).__name__ in ("MambaBlock", "Mamba2Block")  # HF's blocks: the forward this one replaces
        and type(b).__module__.startswith("transformers.")
    ]
    chain = _Chain()
    for i, b in enumerate(blocks):
        nxt = blocks[i + 1].mixer if i + 1 < len(blocks) else None
        # plain attributes (object.__setattr__): not submodules, so no state-dict entries and no double traversal
        object.__setattr__(b.mixer, "_lowbit_next", nxt)
        object.__setattr__(b.mixer, "_lowbit_chain", chain)
        b.forward = types.MethodType(_fused_block_forward, b)
    return len(blocks)


class QuantEmbedding(nn.Module):
    """int8 per-row embedding (scale = absmax(row) / 127); lookup dequantizes to `dtype`."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        w = weight.detach().float()
        s = (w.abs().amax(dim=1) / 127).clamp(min=1e-12)
        self.register_buffer("codes", torch.clamp(torch.round(w / s[:, None]), -127, 127).to(torch.int8))
        self.register_buffer("scales", s.to(weight.dtype))
        self.num_embeddings, self.embedding_dim = w.shape
        self.out_dtype = weight.dtype

    def forward(self, ids: Tensor) -> Tensor:
        return self.codes[ids].to(self.out_dtype) * self.scales[ids, None]


class _NormPassthrough(nn.Module):
    """Stands in for a block RMSNorm whose work moved into the quantized mixer's activation quantizer."""

    def __init__(self, weight: Tensor) -> None:
        super().__init__()
        self.register_buffer("weight", torch.empty(0, dtype=weight.dtype, device=weight.device))

    def forward(self, x: Tensor) -> Tensor:
        return x


# --------------------------------------------------------------------------------------------------------------
# quantize_ for Mamba models
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _Site:
    name: str
    module: nn.Module
    kind: str
    spec: Any
    block: Optional[nn.Module]
    stats: _Stats = field(default_factory=_Stats)
    final: Any = None  # the transformed spec
    snc: Optional[dict[str, Any]] = None


def _find_sites(model: nn.Module, filter_fn: Optional[Callable[[nn.Module, str], bool]]) -> list[_Site]:
    sites: list[_Site] = []
    parents = {id(m): (n, p) for n, p in model.named_modules() for m in p.children()}
    for name, module in model.named_modules():
        kind = _kind(module)
        if kind is None or getattr(module, "lowbit_quantized", False):
            continue
        if isinstance(getattr(module, "in_proj", None), LowbitLinear):  # a kept W4A16 HF mixer (or a loaded one)
            continue
        if filter_fn is not None and not filter_fn(module, name):
            continue
        block = parents.get(id(module), (None, None))[1]
        if block is not None and getattr(block, "mixer", None) is not module:
            block = None
        sites.append(_Site(name, module, kind, spec_of(module), block))
    return sites


def _fused_norm(site: _Site) -> Optional[nn.Module]:
    """The block's RMSNorm that the int8 activation quantizer can absorb (HF Mamba/Mamba2 blocks)."""
    norm = getattr(site.block, "norm", None) if site.block is not None else None
    if norm is not None and type(norm).__name__ in ("MambaRMSNorm", "Mamba2RMSNorm"):
        return norm
    return None


def _run(model: nn.Module, batch: Any) -> None:
    from .quantize import _model_device, _run_model, _to_device

    _run_model(model, _to_device(batch, _model_device(model)))


def _calibrate(
    model: nn.Module, sites: list[_Site], calib: list[Any], hook: Callable[[_Site, Tensor], None], what: str
) -> None:
    handles = []
    for site in sites:

        def pre(module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], site: _Site = site) -> None:
            x = args[0] if args else kwargs["hidden_states"]
            if not torch.isfinite(x).all():
                raise ValueError(f"{what}: non-finite activations reach {site.name or 'the mixer'}")
            hook(site, x.detach())
            site.stats.samples += 1

        handles.append(site.module.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            for batch in calib:
                _run(model, batch)
    finally:
        for hd in handles:
            hd.remove()


def _pass1(cfg: Mamba, site: _Site, x: Tensor) -> None:
    p, st = site.spec, site.stats
    rec: dict[str, Tensor] = {}
    if site.kind == "mamba2":
        _m2_forward(replace(p, had_in=1, had_out=1), x, rec)
        st.amax("z", rec["z"])
        st.amax("dt", rec["dt"])
        d, gn = p.d_inner, p.ngroups * p.d_state
        xin, bin_, cin = rec["xbc"].split([d, gn, gn], dim=-1)
        for k, v in (("x_in", xin), ("B_in", bin_), ("C_in", cin)):
            st.amax(k, v)
            st.chan(k, v)
        st.chan("B", rec["B"])
        st.chan("C", rec["C"])
        ssm_x = rec["x"]
    else:
        _m1_forward(replace(p, had_in=1, had_out=1), x, rec)
        for k in ("x", "z", "dtl", "B", "C", "dt"):
            st.amax(k, rec[k])
        st.chan("x_in", rec["x"])
        ssm_x = rec["u"]
    st.amax("in", fwht(rec["xin"], hadamard_block(x.shape[-1]) if cfg.hadamard else 1))
    st.chan("ssm_x", ssm_x)
    m = ssm_x.detach().abs().float().mean(dim=1).amax(0).cpu()  # max over samples of mean_t |x|
    st.chan_meanabs = m if st.chan_meanabs is None else torch.maximum(st.chan_meanabs, m)
    if st.pct is None:
        st.pct = _Percentile(cfg.percentile)
    st.pct.update(ssm_x)


def _keeps_mixer(cfg: Mamba, module: nn.Module) -> bool:
    """W4A16 on a Hugging Face mixer: the module stays, only its projections become `LowbitLinear`."""
    return (
        cfg.a_bits == 16
        and getattr(module, "lowbit_mamba_kind", None) is None
        and type(module).__name__ in ("MambaMixer", "Mamba2Mixer")
    )


def _use_hadamard(cfg: Mamba, site: _Site) -> bool:
    return cfg.hadamard and not _keeps_mixer(cfg, site.module)


def _transform(cfg: Mamba, site: _Site) -> None:
    p, st = site.spec, site.stats
    snc = None
    if cfg.a_bits == 8 and cfg.sort_and_cluster:
        assert st.chan_meanabs is not None
        if site.kind == "mamba2":
            snc = sort_and_cluster(
                st.chan_meanabs, p.ngroups, p.nheads // p.ngroups, p.headdim, cfg.head_clusters, cfg.dim_clusters
            )
            p = reorder_mamba2(p, snc["head_perm"], snc["channel_perm"])
        elif cfg.pseudo_headdim is not None:
            hd = cfg.pseudo_headdim
            if p.d_inner % hd:
                raise ValueError(f"pseudo_headdim={hd} does not divide d_inner={p.d_inner}")
            snc = sort_and_cluster(st.chan_meanabs, 1, p.d_inner // hd, hd, cfg.head_clusters, cfg.dim_clusters)
            p = reorder_mamba1(p, snc["channel_perm"])
    if _use_hadamard(cfg, site):
        p = fuse_hadamard(p, hadamard_block(p.w_in.shape[1]), hadamard_block(p.w_out.shape[1]))
    site.final, site.snc = p, snc


def _ssm_x_scale(cfg: Mamba, site: _Site) -> Tensor:
    """Per-channel scale vector of the SSM input x in the final channel order."""
    st, p = site.stats, site.final
    d = p.d_inner
    if site.snc is not None:
        perm = torch.as_tensor(site.snc["channel_perm"], dtype=torch.long)
        a = st.chan_absmax["ssm_x"][perm]
        if site.kind == "mamba2":
            return _cluster_scales(a, site.snc, p.ngroups, p.nheads // p.ngroups, p.headdim)
        hd = int(cfg.pseudo_headdim or d)
        return _cluster_scales(a, site.snc, 1, d // hd, hd)
    assert st.pct is not None
    return torch.full((d,), _scale(st.pct.value()))


def _conv_input_scales(cfg: Mamba, site: _Site) -> Tensor:
    """Mamba2: per-channel scale vector of in_proj's int8 x | B | C outputs (the conv input), final channel order.
    Quamba2 keeps one scale per segment (`fine_conv_input=False`). With `fine_conv_input` the conv input takes the
    conv output's granularity: x one scale per (group, head cluster, dim cluster) of sort-and-cluster (the conv is
    depthwise, so the clusters carry over), B / C one per SSD group with `per_state_group`; otherwise per segment.
    The int8 GEMM's per-column output scales and the conv's per-channel input scales take the vector at no cost."""
    st, p = site.stats, site.final
    d, ng, n = p.d_inner, p.ngroups, p.d_state
    a = st.absmax
    if cfg.fine_conv_input and site.snc is not None:
        perm = torch.as_tensor(site.snc["channel_perm"], dtype=torch.long)
        x = _cluster_scales(st.chan_absmax["x_in"][perm], site.snc, ng, p.nheads // ng, p.headdim)
    else:
        x = torch.full((d,), _scale(a["x_in"]))
    bc = []
    for k in ("B_in", "C_in"):
        if cfg.fine_conv_input and cfg.per_state_group:
            g = st.chan_absmax[k].view(ng, n).amax(1)
            bc.append(torch.tensor([_scale(float(v)) for v in g]).repeat_interleave(n))
        else:
            bc.append(torch.full((ng * n,), _scale(a[k])))
    return torch.cat([x, *bc])


def _pass2(cfg: Mamba, site: _Site, x: Tensor, hessians: bool) -> None:
    p, st = site.final, site.stats
    rec: dict[str, Tensor] = {}
    (_m2_forward if site.kind == "mamba2" else _m1_forward)(p, x, rec)
    st.amax("y", rec["g"])
    if hessians:
        st.hessian("in_proj", rec["xin"])
        st.hessian("out_proj", rec["g"])
        if site.kind == "mamba1":
            st.hessian("x_proj", rec["u"])


def _calib_list(calib_data: Any) -> list[Any]:
    if calib_data is None:
        return []
    if isinstance(calib_data, (Tensor, dict)):
        return [calib_data]
    out = list(calib_data)
    if not out:
        raise ValueError("calib_data has no samples")
    return out


def _int8_linear(w: Tensor, b: Optional[Tensor], bits: int, cfg: Mamba, hess: Any) -> nn.Module:
    cls = _int8_linear_cls()
    if bits == 4:
        scheme = _w4_scheme(w.shape[1], cfg.group_size)
        group = None if scheme.endswith("-pc") else int(scheme.rsplit("-g", 1)[1])
        return cls.from_float(w, b, w_bits=4, group_size=group, gptq_hessian=hess)
    return cls.from_float(w, b, w_bits=8)


def _w4a16_linear(w: Tensor, b: Optional[Tensor], cfg: Mamba, hess: Any) -> LowbitLinear:
    return LowbitLinear(_w4_packed(w, cfg.group_size, hess), b, config={"type": "Mamba", "scheme": "w4a16"})


def _build(cfg: Mamba, site: _Site, use_gptq: bool) -> nn.Module:
    p, st = site.final, site.stats
    idx = int(getattr(site.module, "layer_idx", 0) or 0)
    hs = {k: a.finish() for k, a in st.hess.items()} if use_gptq else {}
    wb = cfg.w_bits
    if _keeps_mixer(cfg, site.module):
        m: Any = site.module
        names = ("in_proj", "x_proj", "out_proj") if site.kind == "mamba1" else ("in_proj", "out_proj")
        for name in names:
            lin = getattr(m, name)
            bias = None if lin.bias is None else lin.bias.detach()  # the original basis: HF's bias, its dtype
            setattr(m, name, _w4a16_linear(lin.weight.detach().float(), bias, cfg, hs.get(name)))
        return m
    if site.kind == "mamba2":
        q2 = QuantMamba2Mixer(p, idx, cfg.a_bits)
        if cfg.a_bits == 16:
            q2.in_proj = _w4a16_linear(p.w_in, p.b_in, cfg, hs.get("in_proj"))
            q2.out_proj = _w4a16_linear(p.w_out, p.b_out, cfg, hs.get("out_proj"))
            return q2
        a = st.absmax
        if cfg.per_state_group:
            bsc = [st.chan_absmax[k].view(p.ngroups, p.d_state).amax(1) for k in ("B", "C")]
        else:
            bsc = [st.chan_absmax[k].max().expand(p.ngroups) for k in ("B", "C")]
        b_vec, c_vec = (torch.tensor([_scale(float(v)) for v in s]).repeat_interleave(p.d_state) for s in bsc)
        s_xbc_in = _conv_input_scales(cfg, site)
        s_xbc_out = torch.cat([_ssm_x_scale(cfg, site), b_vec, c_vec])
        q2.set_int8_scales(_scale(a["in"]), _scale(a["z"]), s_xbc_in, _scale(a["dt"]), s_xbc_out, _scale(a["y"]))
        q2.in_proj = _int8_linear(p.w_in, p.b_in, wb, cfg, hs.get("in_proj"))
        q2.out_proj = _int8_linear(p.w_out, p.b_out, wb, cfg, hs.get("out_proj"))
        return q2
    q1 = QuantMamba1Mixer(p, idx, cfg.a_bits)
    if cfg.a_bits == 16:
        q1.in_proj = _w4a16_linear(p.w_in, p.b_in, cfg, hs.get("in_proj"))
        q1.x_proj = _w4a16_linear(p.w_x, p.b_x, cfg, hs.get("x_proj"))
        q1.out_proj = _w4a16_linear(p.w_out, p.b_out, cfg, hs.get("out_proj"))
        return q1
    a = st.absmax
    u_scale = _ssm_x_scale(cfg, site)
    scales = {k: _scale(a[src]) for k, src in [("s_in", "in"), ("s_x", "x"), ("s_z", "z"), ("s_dtl", "dtl")]}
    scales.update(s_B=_scale(a["B"]), s_C=_scale(a["C"]), s_dt=_scale(a["dt"]), s_y=_scale(a["y"]), u_scale=u_scale)
    assert st.pct is not None
    scales["s_u"] = _scale(st.pct.value())  # x_proj's per-tensor input scale (equal to u_scale without clusters)
    if cfg.fine_conv_input and site.snc is not None:  # conv input x per pseudo-head cluster, as its output u
        hd = int(cfg.pseudo_headdim or p.d_inner)
        perm = torch.as_tensor(site.snc["channel_perm"], dtype=torch.long)
        scales["x_scale"] = _cluster_scales(st.chan_absmax["x_in"][perm], site.snc, 1, p.d_inner // hd, hd)
    q1.set_int8_scales(scales)
    q1.in_proj = _int8_linear(p.w_in, p.b_in, wb, cfg, hs.get("in_proj"))
    q1.x_proj = _int8_linear(p.w_x, p.b_x, wb, cfg, hs.get("x_proj"))
    q1.dt_proj = _int8_linear(p.w_dt, None, 8, cfg, None)
    q1.out_proj = _int8_linear(p.w_out, p.b_out, wb, cfg, hs.get("out_proj"))
    return q1


def _set(model: nn.Module, name: str, new: nn.Module) -> None:
    parent, _, child = name.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, child, new)


def quantize_mamba_(
    model: nn.Module,
    config: Mamba,
    calib_data: Optional[Iterable[Any]] = None,
    filter_fn: Optional[Callable[[nn.Module, str], bool]] = None,
    *,
    progress: bool = True,
) -> Any:
    """`lowbit.quantize_` for `lowbit.Mamba` configs (see the module docstring). Returns a `QuantizeReport`."""
    from .quantize import LayerReport, QuantizeReport

    if not isinstance(config, Mamba):
        raise TypeError(f"config must be lowbit.Mamba, got {type(config).__name__}")
    if hasattr(calib_data, "hessians") and hasattr(calib_data, "observers"):
        raise ValueError("lowbit.Mamba needs raw calib_data (model inputs), not a lowbit.Calibration")
    calib = _calib_list(calib_data)
    if config.a_bits == 8 and not calib:
        raise ValueError("lowbit.Mamba with a_bits=8 needs calib_data (static activation scales)")
    sites = _find_sites(model, filter_fn)
    if not sites:
        raise ValueError(f"no Mamba1 / Mamba2 mixer found in {type(model).__name__}")
    if any(s.name == "" for s in sites):
        raise ValueError("the model itself is a mixer: use lowbit.mamba.quantize_mixer, which returns the new module")
    for s in sites:
        _require_cache_api(s.module)
        if not _keeps_mixer(config, s.module):
            _warn_whole_width_norm(s.module, s.name)
    use_gptq = config.w_bits == 4 and config.gptq and bool(calib)
    report = QuantizeReport(calib_samples=len(calib))
    if calib:
        _calibrate(model, sites, calib, lambda s, x: _pass1(config, s, x), "lowbit.Mamba calibration")
    for s in sites:
        if calib and s.stats.samples == 0:
            raise ValueError(f"no calibration activations reached {s.name or 'the mixer'}")
        if calib:
            _transform(config, s)
            s.spec = None  # only the transformed copy is needed from here on
        else:
            p = s.spec
            s.final = (
                fuse_hadamard(p, hadamard_block(p.w_in.shape[1]), hadamard_block(p.w_out.shape[1]))
                if _use_hadamard(config, s)
                else p
            )
    if calib and (config.a_bits == 8 or use_gptq):
        _calibrate(
            model,
            sites,
            calib,
            lambda s, x: _pass2(config, s, x, use_gptq),
            "lowbit.Mamba calibration (pass 2)",
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for s in sites:
            new = _build(config, s, use_gptq)
            norm = _fused_norm(s) if config.a_bits == 8 else None
            if norm is not None:
                new.gamma = nn.Parameter(norm.weight.detach().clone(), requires_grad=False)  # type: ignore[assignment]
                new.gamma_eps = float(norm.variance_epsilon)
                s.block.norm = _NormPassthrough(norm.weight)  # type: ignore[union-attr]
            new.to(next(s.module.parameters()).device)
            _set(model, s.name, new)
            shape = (s.final.w_out.shape[0], s.final.w_in.shape[1])
            report.quantized.append(LayerReport(s.name, config.scheme, shape, _bytes(new), "quamba2", {}))
            s.spec = s.final = None  # free the float copies as we go (large models)
            s.stats = _Stats()
    if config.quantize_head:
        _quantize_head(model, report)
    link_fused_blocks(model)
    return report


class _Holder(nn.Module):
    def __init__(self, mixer: nn.Module) -> None:
        super().__init__()
        self.mixer = mixer

    def forward(self, x: Tensor) -> Tensor:
        return self.mixer(x)


def quantize_mixer(mixer: nn.Module, config: Mamba, calib_data: Optional[Iterable[Any]] = None) -> nn.Module:
    """Quantizes a bare mixer (HF `MambaMixer` / `Mamba2Mixer` or alike) and returns the new quantized mixer;
    `calib_data` are mixer inputs (hidden states [B, L, d_model]). No block norm is fused: the mixer's input is
    quantized as given (after the online FWHT)."""
    holder = _Holder(mixer)
    quantize_mamba_(holder, config, calib_data, progress=False)
    return holder.mixer


def _bytes(m: nn.Module) -> int:
    n = sum(t.numel() * t.element_size() for t in list(m.parameters()) + list(m.buffers()))
    for sub in m.modules():
        if isinstance(sub, LowbitLinear):
            n += sub.packed.storage_bytes
    return n


class _HeadLinear(LowbitLinear):
    """lm_head as INT4 weight-only; `weight` is an empty tensor that only carries the dtype (HF casts the hidden
    states to `lm_head.weight.dtype`)."""

    lowbit_head = True


def _quantize_head(model: nn.Module, report: Any) -> None:
    from .quantize import LayerReport

    emb_get = getattr(model, "get_input_embeddings", None)
    emb = emb_get() if emb_get is not None else None
    head = getattr(model, "lm_head", None)
    if isinstance(head, nn.Linear):
        packed = _w4_packed(head.weight.detach().float(), 128, None)
        new = _HeadLinear(packed, head.bias, config={"type": "Mamba", "scheme": "lm_head w4a16"})
        new.register_buffer("weight", torch.empty(0, dtype=head.weight.dtype, device=head.weight.device))
        model.lm_head = new
        report.quantized.append(
            LayerReport("lm_head", packed.scheme, tuple(head.weight.shape), packed.storage_bytes, "rtn", {})
        )
    if isinstance(emb, nn.Embedding):
        q = QuantEmbedding(emb.weight)
        model.set_input_embeddings(q)
        report.quantized.append(LayerReport("embedding", "int8-per-row", tuple(emb.weight.shape), _bytes(q), "rtn", {}))


# --------------------------------------------------------------------------------------------------------------
# lowbit.save / lowbit.load: the modules of a quantized Mamba model that are not linear layers
# --------------------------------------------------------------------------------------------------------------

_JSON_SCALARS = (bool, int, float, str)


def shell_meta(module: nn.Module) -> Optional[dict[str, Any]]:
    """What `lowbit.load` needs to rebuild `module` as an empty shell before the state dict fills it (None for
    modules that are not lowbit.mamba's): the class, the plain attributes (shapes, flags, static scales), the
    shapes and dtypes of the buffers and parameters, and the child modules (the projections, which `lowbit.load`
    replaces by the stored Int8Linear / LowbitLinear layers)."""
    if isinstance(module, (QuantMamba1Mixer, QuantMamba2Mixer)):
        attrs: dict[str, Any] = {}
        tuples: list[str] = []
        for k, v in vars(module).items():
            if k.startswith("_") or k == "training":
                continue
            if v is None or isinstance(v, _JSON_SCALARS):
                attrs[k] = v
            elif isinstance(v, (tuple, list)) and all(isinstance(e, _JSON_SCALARS) for e in v):
                attrs[k] = list(v)
                if isinstance(v, tuple):
                    tuples.append(k)
            else:
                raise TypeError(f"{type(module).__name__}.{k}: cannot store a {type(v).__name__} attribute")

        # [name, ...] lists, not dicts: the header is written with sorted keys, and the registration order is the
        # order of state_dict() and modules()
        def shapes(d: dict[str, Optional[Tensor]]) -> list[Any]:
            return [[k, None if t is None else [list(t.shape), str(t.dtype)]] for k, t in d.items()]

        return {
            "class": type(module).__name__,
            "attrs": attrs,
            "tuples": tuples,
            "buffers": shapes(dict(module._buffers)),
            "params": shapes(dict(module._parameters)),
            "children": [[k, type(c).__name__] for k, c in module._modules.items() if c is not None],
        }
    if isinstance(module, QuantEmbedding):
        return {
            "class": "QuantEmbedding",
            "shape": [module.num_embeddings, module.embedding_dim],
            "dtype": str(module.out_dtype),
        }
    if isinstance(module, _NormPassthrough):
        return {"class": "_NormPassthrough", "dtype": str(module.weight.dtype)}
    return None


def _dtype(name: str) -> torch.dtype:
    dt = getattr(torch, name.removeprefix("torch."), None)
    if not isinstance(dt, torch.dtype):
        raise ValueError(f"unknown dtype {name!r}")
    return dt


def build_shell(meta: dict[str, Any], old: Optional[nn.Module], where: str) -> nn.Module:
    """The empty module `shell_meta` describes, on the device of `old` (the skeleton's module at that place, whose
    linear children stand in for the projections until `lowbit.load` replaces them). Bad metadata or a skeleton
    without the needed linear layers raise ValueError naming `where`."""
    cls = meta.get("class")
    params = list(old.parameters()) if old is not None else []
    dev = params[0].device if params else torch.device("cpu")
    if cls == "_NormPassthrough":
        return _NormPassthrough(torch.empty(0, dtype=_dtype(meta["dtype"]), device=dev))
    if cls == "QuantEmbedding":
        e = QuantEmbedding.__new__(QuantEmbedding)
        nn.Module.__init__(e)
        v, d = (int(x) for x in meta["shape"])
        dt = _dtype(meta["dtype"])
        e.register_buffer("codes", torch.zeros(v, d, dtype=torch.int8, device=dev))
        e.register_buffer("scales", torch.zeros(v, dtype=dt, device=dev))
        e.num_embeddings, e.embedding_dim, e.out_dtype = v, d, dt
        return e
    classes: dict[str, type[nn.Module]] = {"QuantMamba1Mixer": QuantMamba1Mixer, "QuantMamba2Mixer": QuantMamba2Mixer}
    if cls not in classes:
        raise ValueError(f"{where}: unknown lowbit.mamba module class {cls!r}")
    if old is not None:
        _require_cache_api(old)
    m = classes[cls].__new__(classes[cls])
    nn.Module.__init__(m)
    tuples = set(meta.get("tuples", []))
    for k, v in meta["attrs"].items():
        setattr(m, k, tuple(v) if k in tuples else v)
    for k, spec in meta["buffers"]:
        m.register_buffer(k, None if spec is None else torch.zeros(spec[0], dtype=_dtype(spec[1]), device=dev))
    for k, spec in meta["params"]:
        t = None if spec is None else torch.zeros(spec[0], dtype=_dtype(spec[1]), device=dev)
        m.register_parameter(k, None if t is None else nn.Parameter(t, requires_grad=False))
    for k, kind in meta["children"]:
        if kind == "Identity":
            child: nn.Module = nn.Identity()
        else:
            got = getattr(old, k, None) if old is not None else None
            if not isinstance(got, nn.Linear):
                raise ValueError(f"{where}: the model has no linear layer '{k}' for the stored {kind} projection")
            child = got
        setattr(m, k, child)
    return m


def model_bytes(model: nn.Module) -> int:
    """Bytes of a model's parameters and buffers, plus the packed storage of its `LowbitLinear` weights
    (shared tensors counted once)."""
    seen: set[int] = set()
    n = 0
    for t in list(model.parameters()) + list(model.buffers()):
        if t.data_ptr() in seen:
            continue
        seen.add(t.data_ptr())
        n += t.numel() * t.element_size()
    for sub in model.modules():
        if isinstance(sub, LowbitLinear):
            n += sub.packed.storage_bytes
        w = getattr(sub, "packed_bytes", None)
        if isinstance(w, int):
            n += w
    return n


__all__ = [
    "MIN_TRANSFORMERS",
    "Mamba1Spec",
    "Mamba2Spec",
    "QuantEmbedding",
    "QuantMamba1Mixer",
    "QuantMamba2Mixer",
    "UnsupportedTransformersError",
    "fuse_hadamard",
    "fwht",
    "hadamard_block",
    "link_fused_blocks",
    "model_bytes",
    "quantize_mamba_",
    "quantize_mixer",
    "reorder_mamba1",
    "reorder_mamba2",
    "sort_and_cluster",
    "spec_of",
    "using_stand_ins",
]
