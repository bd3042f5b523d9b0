"""Int8 state-space-model operators of Quamba / Quamba2: the Mamba1 side and the pieces Mamba1 and Mamba2 share.

- `causal_conv1d_int8` / `causal_conv1d_update_int8`: int8 causal depthwise conv1d (prefill, decode step with an
  int8 conv state updated in place), per-channel input / output scales, optional SiLU;
- `selective_scan_int8` / `selective_state_update_int8`: the Mamba1 selective scan on int8 u, dt, B, C, z with
  f32 arithmetic and state, f16 y (forward or reverse, optional initial state);
- `gated_rmsnorm_quant`: `y * silu(z)` -> optional group RMSNorm (Mamba2) -> weight -> optional FWHT -> int8.
- `residual_rmsnorm_quant`: f32 residual stream + block output -> the next block's RMSNorm -> FWHT -> int8 (the
  add between two quantized Mamba blocks fused with the next block's activation quantization).

Quantization is symmetric: `value = code * scale`, codes -127..127, `quant(v) = clamp(round_half_even(v / s))`.
With CUDA inputs (and `lowbit.ops.kernels_enabled()`) every function launches lowbit's kernel (kernels/ssm) on
torch's current stream; otherwise it runs the plain-torch implementation below, in float32, of the same math (the
"emulated" path). The two agree to one int8 code at rounding boundaries and to f16 rounding plus f32 error for
the scan's y (see python/tests/test_ssm_ops.py for the stated tolerances). `stats` counts which path ran.

Activations may be slices of wider projection outputs: a `[B, L, K]` tensor whose last dimension is contiguous
and whose tokens are evenly strided is passed to the kernels without a copy.
"""

from __future__ import annotations

from collections import Counter
from typing import Optional, Union

import torch
import torch.nn.functional as F

from . import _C, _launch
from ._launch import ptr as _ptr
from ._launch import stream as _stream
from ._launch import vector as _vec
from .ops import fwht_normalized

__all__ = [
    "causal_conv1d_int8",
    "causal_conv1d_update_int8",
    "gated_rmsnorm_quant",
    "residual_rmsnorm_quant",
    "selective_scan_int8",
    "selective_state_update_int8",
    "stats",
]

#: `kernel`: launches of lowbit's SSM kernels; `emulated`: calls that ran the torch implementation.
stats: Counter[str] = Counter()

Scale = Union[float, torch.Tensor]


#: Largest conv1d width and selective-scan d_state the kernels take (the torch path takes any).
MAX_CONV_WIDTH = 4
MAX_DSTATE = 64
MAX_NORM_DIM = 16384


# ---------------------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------------------


def _scalar(v: Scale, what: str) -> float:
    return _launch.scalar(v, what)


def _use_kernel(*ts: Optional[torch.Tensor]) -> bool:
    return _launch.use_kernel("ssm", *ts)


def _check_int8(t: torch.Tensor, what: str, dims: int) -> None:
    if t.dtype != torch.int8:
        raise ValueError(f"{what} must be int8 codes, got {t.dtype}")
    if t.dim() != dims:
        raise ValueError(f"{what} must be {dims}-D, got shape {tuple(t.shape)}")


def _rows3(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`t` `[B, L, K]` and its token stride: as is when rows are contiguous and evenly strided, else a copy."""
    _, length, k = t.shape
    if t.is_contiguous():
        return t, k
    if t.stride(2) == 1 and t.stride(1) >= k and t.stride(0) == length * t.stride(1):
        return t, t.stride(1)
    return t.contiguous(), k


def _rows2(t: torch.Tensor) -> tuple[torch.Tensor, int]:
    """`t` `[B, K]` and its row stride (a copy when the rows are not contiguous)."""
    if t.is_contiguous():
        return t, t.shape[1]
    if t.stride(1) == 1 and t.stride(0) >= t.shape[1]:
        return t, t.stride(0)
    return t.contiguous(), t.shape[1]


def _quant(v: torch.Tensor, s: Union[float, torch.Tensor]) -> torch.Tensor:
    return torch.clamp(torch.round(v / s), -127, 127).to(torch.int8)


def _conv_weight(weight: torch.Tensor, c: int) -> torch.Tensor:
    """`[C, W]` f32 (HF's `[C, 1, W]` conv weight is accepted too)."""
    if weight.dim() == 3 and weight.shape[1] == 1:
        weight = weight[:, 0]
    if weight.dim() != 2 or weight.shape[0] != c:
        raise ValueError(f"conv1d weight has shape {tuple(weight.shape)}, expected [{c}, W]")
    return weight.to(torch.float32).contiguous()


def _conv_vectors(
    x_scale: Scale, out_scale: Scale, bias: Optional[torch.Tensor], c: int, device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, Optional[torch.Tensor]]:
    """The per-channel input scale, output scale and optional bias of both conv1d entry points as f32 `[C]`."""
    xs, os = _vec(x_scale, c, device, "x_scale"), _vec(out_scale, c, device, "out_scale")
    b = _vec(bias, c, device, "bias")
    assert xs is not None and os is not None
    return xs, os, b


def _conv_out(
    acc: torch.Tensor, xs: torch.Tensor, b: Optional[torch.Tensor], silu: bool, os: torch.Tensor
) -> torch.Tensor:
    """The emulated conv1d epilogue of both entry points: `acc * x_scale (+ bias)`, SiLU, int8 with `out_scale`."""
    y = acc * xs if b is None else torch.addcmul(b, acc, xs)
    if silu:
        y = F.silu(y)
    return _quant(y, os)


# ---------------------------------------------------------------------------------------------------------------
# conv1d
# ---------------------------------------------------------------------------------------------------------------


def causal_conv1d_int8(
    x_q: torch.Tensor,
    x_scale: Scale,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    out_scale: Scale,
    silu: bool = True,
) -> torch.Tensor:
    """Causal depthwise conv1d of int8 `x_q` `[B, L, C]`: `y[b, t, c] = sum_j weight[c, j] * x[b, t - W + 1 + j, c]
    * x_scale[c] + bias[c]` (zero before t = 0), SiLU when `silu`, quantized with `out_scale[c]` -> int8 `[B, L, C]`.
    """
    _check_int8(x_q, "conv1d x_q", 3)
    bsz, length, c = x_q.shape
    w = _conv_weight(weight, c).to(x_q.device)
    width = w.shape[1]
    xs, os, b = _conv_vectors(x_scale, out_scale, bias, c, x_q.device)
    if _use_kernel(x_q) and width <= MAX_CONV_WIDTH and bsz * length > 0:
        x, ldx = _rows3(x_q)
        y = torch.empty((bsz, length, c), dtype=torch.int8, device=x.device)
        _C.ssm_conv1d_int8(
            device=x.device.index or 0,
            x=x.data_ptr(),
            ldx=ldx,
            batch=bsz,
            length=length,
            channels=c,
            x_scale=xs.data_ptr(),
            weight=w.data_ptr(),
            width=width,
            bias=_ptr(b),
            out_scale=os.data_ptr(),
            silu=silu,
            y=y.data_ptr(),
            ldy=c,
            stream=_stream(x),
        )
        stats["kernel"] += 1
        return y
    stats["emulated"] += 1
    xf = x_q.to(torch.float32).transpose(1, 2)  # [B, C, L]
    acc = F.conv1d(xf, w[:, None, :], padding=width - 1, groups=c)[..., :length].transpose(1, 2)
    return _conv_out(acc, xs, b, silu, os)


def causal_conv1d_update_int8(
    x_q: torch.Tensor,
    conv_state: torch.Tensor,
    x_scale: Scale,
    weight: torch.Tensor,
    bias: Optional[torch.Tensor],
    out_scale: Scale,
    silu: bool = True,
) -> torch.Tensor:
    """One decode step: `conv_state` int8 `[B, C, W]` (the last W input codes, oldest first) is shifted left and
    `x_q` `[B, C]` appended in place; returns the int8 `[B, C]` output of the new window (as `causal_conv1d_int8`).
    """
    _check_int8(x_q, "conv1d x_q", 2)
    _check_int8(conv_state, "conv_state", 3)
    bsz, c = x_q.shape
    w = _conv_weight(weight, c).to(x_q.device)
    width = w.shape[1]
    if tuple(conv_state.shape) != (bsz, c, width):
        raise ValueError(f"conv_state has shape {tuple(conv_state.shape)}, expected [{bsz}, {c}, {width}]")
    xs, os, b = _conv_vectors(x_scale, out_scale, bias, c, x_q.device)
    if _use_kernel(x_q, conv_state) and width <= MAX_CONV_WIDTH and conv_state.is_contiguous() and bsz > 0:
        x, ldx = _rows2(x_q)
        y = torch.empty((bsz, c), dtype=torch.int8, device=x.device)
        _C.ssm_conv1d_update_int8(
            device=x.device.index or 0,
            x=x.data_ptr(),
            ldx=ldx,
            conv_state=conv_state.data_ptr(),
            batch=bsz,
            channels=c,
            x_scale=xs.data_ptr(),
            weight=w.data_ptr(),
            width=width,
            bias=_ptr(b),
            out_scale=os.data_ptr(),
            silu=silu,
            y=y.data_ptr(),
            ldy=c,
            stream=_stream(x),
        )
        stats["kernel"] += 1
        return y
    stats["emulated"] += 1
    conv_state.copy_(torch.cat([conv_state[:, :, 1:], x_q[:, :, None]], dim=-1))
    acc = (conv_state.to(torch.float32) * w).sum(-1)
    return _conv_out(acc, xs, b, silu, os)


# ---------------------------------------------------------------------------------------------------------------
# selective scan
# ---------------------------------------------------------------------------------------------------------------


def _scan_torch(
    u: torch.Tensor,
    us: torch.Tensor,
    dt: torch.Tensor,
    dt_scale: float,
    dt_bias: Optional[torch.Tensor],
    a: torch.Tensor,
    bm: torch.Tensor,
    b_scale: float,
    cm: torch.Tensor,
    c_scale: float,
    dskip: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    z_scale: float,
    delta_softplus: bool,
    dt_add: float,
    h: torch.Tensor,
    reverse: bool,
) -> torch.Tensor:
    """The recurrence in float32; `h` `[B, D, N]` f32 is advanced in place. Returns y f32 `[B, L, D]`."""
    uf = u.to(torch.float32) * us
    delta = dt.to(torch.float32) * dt_scale
    if dt_bias is not None:
        delta = delta + dt_bias
    if delta_softplus:
        delta = F.softplus(delta)  # threshold 20, as the kernel
    delta = delta + dt_add
    bf, cf = bm.to(torch.float32) * b_scale, cm.to(torch.float32) * c_scale
    length = u.shape[1]
    y = torch.empty_like(uf)
    for i in range(length):
        t = length - 1 - i if reverse else i
        d_t = delta[:, t]  # [B, D]
        h.mul_(torch.exp(d_t[:, :, None] * a)).add_((d_t * uf[:, t])[:, :, None] * bf[:, t, None, :])
        y[:, t] = (h * cf[:, t, None, :]).sum(-1)
    if dskip is not None:
        y = y + uf * dskip
    if z is not None:
        y = y * F.silu(z.to(torch.float32) * z_scale)
    return y


def _launch_scan(
    u: tuple[torch.Tensor, int],
    u_scale: torch.Tensor,
    dt: tuple[torch.Tensor, int],
    scales: tuple[float, float, float, float],
    dt_bias: Optional[torch.Tensor],
    dt_add: float,
    delta_softplus: bool,
    a: torch.Tensor,
    b: tuple[torch.Tensor, int],
    c: tuple[torch.Tensor, int],
    d_skip: Optional[torch.Tensor],
    z: tuple[Optional[torch.Tensor], int],
    dims: tuple[int, int, int, int],
    reverse: bool,
    initial_state: int,
    final_state: int,
    y: torch.Tensor,
    step: bool,
) -> None:
    """One `ssm_selective_scan_int8` launch: each operand as `(rows, row stride)`, `scales` = the dt, B, C and z
    scales, `dims` = (batch, length, dim, dstate), the states as device pointers (0 = none); y is written with
    row stride `dim`. Shared by the prefill scan (`step=False`) and the decode step (`step=True`)."""
    s_dt, s_b, s_c, s_z = scales
    bsz, length, d, n = dims
    _C.ssm_selective_scan_int8(
        device=u[0].device.index or 0,
        u=u[0].data_ptr(),
        ldu=u[1],
        u_scale=u_scale.data_ptr(),
        dt=dt[0].data_ptr(),
        lddt=dt[1],
        dt_scale=s_dt,
        dt_bias=_ptr(dt_bias),
        dt_add=dt_add,
        delta_softplus=delta_softplus,
        a=a.data_ptr(),
        b=b[0].data_ptr(),
        ldb=b[1],
        b_scale=s_b,
        c=c[0].data_ptr(),
        ldc=c[1],
        c_scale=s_c,
        d_skip=_ptr(d_skip),
        z=_ptr(z[0]),
        ldz=z[1],
        z_scale=s_z,
        batch=bsz,
        length=length,
        dim=d,
        dstate=n,
        reverse=reverse,
        initial_state=initial_state,
        final_state=final_state,
        y=y.data_ptr(),
        ldy=d,
        step=step,
        stream=_stream(u[0]),
    )


def _scan_checks(
    u: torch.Tensor,
    dt: torch.Tensor,
    a: torch.Tensor,
    bm: torch.Tensor,
    cm: torch.Tensor,
    z: Optional[torch.Tensor],
    dims: int,
) -> None:
    for t, name in ((u, "u"), (dt, "dt"), (bm, "Bm"), (cm, "Cm")):
        _check_int8(t, name, dims)
    if z is not None:
        _check_int8(z, "z", dims)
        if z.shape != u.shape:
            raise ValueError(f"z has shape {tuple(z.shape)}, expected {tuple(u.shape)}")
    if dt.shape != u.shape:
        raise ValueError(f"dt has shape {tuple(dt.shape)}, expected {tuple(u.shape)}")
    if bm.shape != cm.shape or bm.shape[:-1] != u.shape[:-1]:
        raise ValueError(
            f"Bm / Cm have shapes {tuple(bm.shape)} / {tuple(cm.shape)}, expected {tuple(u.shape[:-1])} + [N]"
        )
    if a.dim() != 2 or a.shape[0] != u.shape[-1] or a.shape[1] != bm.shape[-1]:
        raise ValueError(f"A has shape {tuple(a.shape)}, expected [{u.shape[-1]}, {bm.shape[-1]}]")


def selective_scan_int8(
    u: torch.Tensor,
    u_scale: Scale,
    dt: torch.Tensor,
    dt_scale: Scale,
    dt_bias: Optional[torch.Tensor],
    A: torch.Tensor,
    Bm: torch.Tensor,
    B_scale: Scale,
    Cm: torch.Tensor,
    C_scale: Scale,
    Dskip: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    z_scale: Scale,
    delta_softplus: bool = True,
    dt_add: float = 0.0,
    initial_state: Optional[torch.Tensor] = None,
    reverse: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba1 selective scan on int8 `u`, `dt`, `z` `[B, L, D]` and `Bm`, `Cm` `[B, L, N]`:
    `delta = softplus(dt * dt_scale + dt_bias) + dt_add`; `h = exp(delta * A) * h + delta * B_t * u_t`;
    `y = C_t . h + Dskip * u`; `y *= silu(z)` when `z` is given. `reverse` scans t = L - 1 down to 0.
    Returns `(y f16 [B, L, D], final_state f32 [B, D, N])`.
    """
    _scan_checks(u, dt, A, Bm, Cm, z, 3)
    bsz, length, d = u.shape
    n = Bm.shape[-1]
    dev = u.device
    us = _vec(u_scale, d, dev, "u_scale")
    assert us is not None
    bias, dsk = _vec(dt_bias, d, dev, "dt_bias"), _vec(Dskip, d, dev, "Dskip")
    a = A.to(device=dev, dtype=torch.float32).contiguous()
    s_dt, s_b, s_c, s_z = (
        _scalar(v, w)
        for v, w in ((dt_scale, "dt_scale"), (B_scale, "B_scale"), (C_scale, "C_scale"), (z_scale, "z_scale"))
    )
    if initial_state is not None and tuple(initial_state.shape) != (bsz, d, n):
        raise ValueError(f"initial_state has shape {tuple(initial_state.shape)}, expected [{bsz}, {d}, {n}]")
    if _use_kernel(u, dt, Bm, Cm, z, initial_state) and n <= MAX_DSTATE and bsz * length > 0:
        (u2, ldu), (dt2, lddt), (b2, ldb), (c2, ldc) = (_rows3(t) for t in (u, dt, Bm, Cm))
        z2, ldz = _rows3(z) if z is not None else (None, 0)
        h0 = None if initial_state is None else initial_state.to(torch.float32).contiguous()
        y = torch.empty((bsz, length, d), dtype=torch.float16, device=dev)
        fin = torch.empty((bsz, d, n), dtype=torch.float32, device=dev)
        _launch_scan(
            (u2, ldu),
            us,
            (dt2, lddt),
            (s_dt, s_b, s_c, s_z),
            bias,
            float(dt_add),
            delta_softplus,
            a,
            (b2, ldb),
            (c2, ldc),
            dsk,
            (z2, ldz),
            (bsz, length, d, n),
            reverse,
            _ptr(h0),
            fin.data_ptr(),
            y,
            step=False,
        )
        stats["kernel"] += 1
        return y, fin
    stats["emulated"] += 1
    if initial_state is None:
        h = torch.zeros((bsz, d, n), dtype=torch.float32, device=dev)
    else:
        h = initial_state.to(device=dev, dtype=torch.float32).clone()
    y = _scan_torch(u, us, dt, s_dt, bias, a, Bm, s_b, Cm, s_c, dsk, z, s_z, delta_softplus, float(dt_add), h, reverse)
    return y.to(torch.float16), h


def selective_state_update_int8(
    state: torch.Tensor,
    u: torch.Tensor,
    u_scale: Scale,
    dt: torch.Tensor,
    dt_scale: Scale,
    dt_bias: Optional[torch.Tensor],
    A: torch.Tensor,
    Bm: torch.Tensor,
    B_scale: Scale,
    Cm: torch.Tensor,
    C_scale: Scale,
    Dskip: Optional[torch.Tensor],
    z: Optional[torch.Tensor],
    z_scale: Scale,
    delta_softplus: bool = True,
    dt_add: float = 0.0,
) -> torch.Tensor:
    """One decode step of `selective_scan_int8`: `u`, `dt`, `z` `[B, D]`, `Bm`, `Cm` `[B, N]`; `state` f32
    `[B, D, N]` is updated in place. Returns y f16 `[B, D]`."""
    _scan_checks(u, dt, A, Bm, Cm, z, 2)
    bsz, d = u.shape
    n = Bm.shape[-1]
    if tuple(state.shape) != (bsz, d, n) or state.dtype != torch.float32:
        raise ValueError(f"state must be float32 [{bsz}, {d}, {n}], got {state.dtype} {tuple(state.shape)}")
    dev = u.device
    us = _vec(u_scale, d, dev, "u_scale")
    assert us is not None
    bias, dsk = _vec(dt_bias, d, dev, "dt_bias"), _vec(Dskip, d, dev, "Dskip")
    a = A.to(device=dev, dtype=torch.float32).contiguous()
    s_dt, s_b, s_c, s_z = (
        _scalar(v, w)
        for v, w in ((dt_scale, "dt_scale"), (B_scale, "B_scale"), (C_scale, "C_scale"), (z_scale, "z_scale"))
    )
    if _use_kernel(state, u, dt, Bm, Cm, z) and n <= MAX_DSTATE and state.is_contiguous() and bsz > 0:
        (u2, ldu), (dt2, lddt), (b2, ldb), (c2, ldc) = (_rows2(t) for t in (u, dt, Bm, Cm))
        z2, ldz = _rows2(z) if z is not None else (None, 0)
        y = torch.empty((bsz, d), dtype=torch.float16, device=dev)
        _launch_scan(
            (u2, ldu),
            us,
            (dt2, lddt),
            (s_dt, s_b, s_c, s_z),
            bias,
            float(dt_add),
            delta_softplus,
            a,
            (b2, ldb),
            (c2, ldc),
            dsk,
            (z2, ldz),
            (bsz, 1, d, n),
            False,
            state.data_ptr(),
            0,
            y,
            step=True,
        )
        stats["kernel"] += 1
        return y
    stats["emulated"] += 1
    y = _scan_torch(
        u[:, None],
        us,
        dt[:, None],
        s_dt,
        bias,
        a,
        Bm[:, None],
        s_b,
        Cm[:, None],
        s_c,
        dsk,
        None if z is None else z[:, None],
        s_z,
        delta_softplus,
        float(dt_add),
        state,
        False,
    )
    return y[:, 0].to(torch.float16)


# ---------------------------------------------------------------------------------------------------------------
# gated RMSNorm -> FWHT -> int8
# ---------------------------------------------------------------------------------------------------------------


def _fwht(x: torch.Tensor, h: int) -> torch.Tensor:
    """Normalized FWHT on each block of `h` contiguous values of the last dimension."""
    shape = x.shape
    v = x.reshape(-1, h)
    length = 1
    while length < h:
        v = v.reshape(-1, h // (2 * length), 2, length)
        a, b = v[:, :, 0], v[:, :, 1]
        v = torch.stack((a + b, a - b), dim=2)
        length *= 2
    return (v.reshape(shape) * (h**-0.5)).to(x.dtype)


def gated_rmsnorm_quant(
    y: torch.Tensor,
    z: Optional[torch.Tensor],
    z_scale: Scale,
    weight: Optional[torch.Tensor],
    group_size: int,
    eps: float,
    norm: bool,
    hadamard: int,
    out_scale: Scale,
) -> torch.Tensor:
    """`y` f16 `[T, D]` -> `g = y * silu(z * z_scale)` (z int8 `[T, D]`, optional) -> when `norm`, RMSNorm over
    each group of `group_size` channels -> `* weight` (when given) -> normalized FWHT on blocks of `hadamard`
    channels (power of two; 0 or 1 = none) -> int8 `[T, D]` with the static per-tensor `out_scale`."""
    if y.dim() != 2:
        raise ValueError(f"gated_rmsnorm_quant: y must be [T, D], got shape {tuple(y.shape)}")
    rows, d = y.shape
    if z is not None:
        _check_int8(z, "z", 2)
        if z.shape != y.shape:
            raise ValueError(f"z has shape {tuple(z.shape)}, expected {tuple(y.shape)}")
    if norm and (group_size < 1 or d % group_size != 0):
        raise ValueError(f"group_size {group_size} must divide D = {d}")
    if hadamard > 1 and (hadamard & (hadamard - 1) or d % hadamard != 0):
        raise ValueError(f"hadamard {hadamard} must be a power of two dividing D = {d}")
    if hadamard < 0:
        raise ValueError(f"hadamard must be >= 0, got {hadamard}")
    s_out, s_z = _scalar(out_scale, "out_scale"), _scalar(z_scale, "z_scale")
    if not s_out > 0.0:
        raise ValueError(f"out_scale must be positive, got {s_out}")
    w = _vec(weight, d, y.device, "weight")
    if _use_kernel(y, z) and y.dtype == torch.float16 and d <= MAX_NORM_DIM and rows > 0:
        y2, ldy = _rows2(y)
        z2, ldz = _rows2(z) if z is not None else (None, 0)
        q = torch.empty((rows, d), dtype=torch.int8, device=y.device)
        _C.ssm_gated_rmsnorm_quant(
            device=y.device.index or 0,
            y=y2.data_ptr(),
            ldy=ldy,
            z=_ptr(z2),
            ldz=ldz,
            z_scale=s_z,
            weight=_ptr(w),
            rows=rows,
            dim=d,
            group_size=group_size if norm else d,
            eps=float(eps),
            norm=norm,
            hadamard=max(hadamard, 0),
            out_scale=s_out,
            q=q.data_ptr(),
            ldq=d,
            stream=_stream(y2),
        )
        stats["kernel"] += 1
        return q
    stats["emulated"] += 1
    g = y.to(torch.float32)
    if z is not None:
        g = g * F.silu(z.to(torch.float32) * s_z)
    if norm:
        gg = g.reshape(rows, d // group_size, group_size)
        g = (gg * torch.rsqrt(gg.pow(2).mean(-1, keepdim=True) + eps)).reshape(rows, d)
    if w is not None:
        g = g * w
    if hadamard > 1:
        g = _fwht(g, hadamard)
    return _quant(g, s_out)


# ---------------------------------------------------------------------------------------------------------------
# residual add (f32) -> RMSNorm -> FWHT -> int8
# ---------------------------------------------------------------------------------------------------------------

_RES_DTYPES = {torch.float16: "f16", torch.bfloat16: "bf16"}
#: Largest row of the fused residual kernel (one 1024-thread CTA, 8 columns a thread).
MAX_RESIDUAL_K = 8192


def _aligned(t: Optional[torch.Tensor], n: int) -> bool:
    return t is None or t.data_ptr() % n == 0


def residual_rmsnorm_quant(
    residual: torch.Tensor,
    x: Optional[torch.Tensor],
    gamma: Optional[torch.Tensor],
    eps: float,
    hadamard: int,
    static_scale: float,
    dtype: torch.dtype,
    out: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """The add + norm -> int8 between two quantized Mamba blocks (HF blocks with `residual_in_fp32`), per row of
    `residual` f32 `[T, K]`: `r = residual + x` in f32 (`x` `[T, K]` in `dtype`, the block output; None: no add),
    written to `out` (f32 `[T, K]`, optional); `h = r.to(dtype)` (the block's cast before its norm) ->
    `h * rsqrt(mean(h^2) + eps) * gamma` (when `gamma` `[K]` is given) -> normalized FWHT on blocks of `hadamard`
    -> `q = clamp(rne(h / static_scale))` int8 `[T, K]` (contiguous).

    CUDA float16 / bfloat16 with K % 8 == 0, K <= 8192 and aligned contiguous rows run
    `lowbit_ssm_residual_rmsnorm_quant`; everything else the same steps in torch (float32 after the cast)."""
    if residual.dim() != 2 or residual.dtype != torch.float32:
        raise ValueError(f"residual must be float32 [T, K], got {residual.dtype} {tuple(residual.shape)}")
    rows, k = residual.shape
    for what, t in (("x", x), ("out", out)):
        if t is not None and t.shape != residual.shape:
            raise ValueError(f"{what} has shape {tuple(t.shape)}, expected {tuple(residual.shape)}")
    if x is not None and x.dtype != dtype:
        raise ValueError(f"x must be {dtype}, got {x.dtype}")
    if out is not None and (out.dtype != torch.float32 or not out.is_contiguous()):
        raise ValueError("out must be a contiguous float32 tensor")
    if gamma is not None and gamma.shape != (k,):
        raise ValueError(f"gamma must have shape [{k}], got {tuple(gamma.shape)}")
    if hadamard < 0 or (hadamard > 1 and (hadamard & (hadamard - 1) or k % hadamard != 0)):
        raise ValueError(f"hadamard {hadamard} must be 0, 1 or a power of two dividing K = {k}")
    if not (0.0 < static_scale < float("inf")):
        raise ValueError(f"static_scale must be finite and positive, got {static_scale}")
    g = None if gamma is None else gamma.to(dtype).contiguous()
    if (
        _use_kernel(residual, x, g, out)
        and dtype in _RES_DTYPES
        and k % 8 == 0
        and k <= MAX_RESIDUAL_K
        and rows > 0
        and residual.is_contiguous()
        and (x is None or x.is_contiguous())
        and all(_aligned(t, 16) for t in (residual, x, g, out))
    ):
        q = torch.empty((rows, k), dtype=torch.int8, device=residual.device)
        _C.ssm_residual_rmsnorm_quant(
            device=residual.device.index or 0,
            x=_ptr(x),
            ldx=k,
            residual=residual.data_ptr(),
            ldr=k,
            out=_ptr(out),
            ldo=k,
            gamma=_ptr(g),
            eps=float(eps),
            hadamard=max(hadamard, 0),
            static_scale=float(static_scale),
            q=q.data_ptr(),
            ldq=k,
            rows=rows,
            k=k,
            dtype=_RES_DTYPES[dtype],
            stream=_stream(residual),
        )
        stats["kernel"] += 1
        return q
    stats["emulated"] += 1
    r = residual if x is None else residual + x.to(torch.float32)
    if out is not None:
        out.copy_(r)
    # The same float32 steps, in the same order, as lowbit.ops.act_quant's torch path on r.to(dtype): the fused
    # block path and the unfused one give identical codes on the CPU.
    h = r.to(dtype).to(torch.float32)
    if g is not None:
        h = h * torch.rsqrt(h.pow(2).mean(dim=-1, keepdim=True) + eps) * g.to(torch.float32)
    h = fwht_normalized(h, hadamard)
    s1 = torch.tensor(static_scale, dtype=torch.float32, device=h.device)
    return torch.clamp(torch.round(h / s1), -127.0, 127.0).to(torch.int8)
