"""Int8 Mamba2 SSD (state-space duality) operators of Quamba2: the prefill scan and the single decode step.

- `ssd_chunk_scan_int8`: x int8 `[B, L, H, P]` (per-channel scales), dt int8 `[B, L, H]` (per-tensor scale,
  per-head bias, softplus, `dt_limit` clamp), A `[H]`, B / C int8 `[B, L, G, N]` (one scale per group), D skip,
  optional initial state -> (y f16 `[B, L, H, P]`, final state f32 `[B, H, P, N]`);
- `ssd_state_update_int8`: one token per sequence, the f32 state `[B, H, P, N]` updated in place -> y f16
  `[B, H, P]`.

Math (head h uses group g = h // (H // G)): `delta = clamp(softplus(dt * dt_scale + dt_bias[h]), *dt_limit)`,
`h_t = exp(delta * A[h]) h_{t-1} + delta * x_t (outer) B_t`, `y_t = h_t C_t + D[h] x_t`, all in float32.

With CUDA inputs (and `lowbit.ops.kernels_enabled()`) both functions launch lowbit's kernels (kernels/ssm/ssd_*.cu)
on torch's current stream; otherwise they run the plain-torch implementation below (the "emulated" path): the
same chunked algorithm as the kernel (intra-chunk C.B^T masked by the decay, inter-chunk state passing) in float32
with `chunk_size`-token chunks (the kernel picks its own chunk of 64 / 32 tokens; the result does not depend on
it beyond rounding). `stats` counts which path ran. Activations may be slices of wider projection outputs (x, B, C
of the conv1d output, dt of in_proj's): a tensor whose per-token block is contiguous and whose tokens are evenly
strided goes to the kernel without a copy.

Kernel limits: N <= 256 (larger N runs the torch path), |state| < 65504 (the kernel passes the state through f16
for the inter-chunk product).
"""

from __future__ import annotations

import math
from collections import Counter
from typing import Optional, Union

import torch
import torch.nn.functional as F

from . import _C, _launch
from ._launch import ptr as _ptr
from ._launch import stream as _stream
from ._launch import vector as _vec

__all__ = ["MAX_DSTATE", "ssd_chunk_scan_int8", "ssd_state_update_int8", "stats"]

#: `kernel`: launches of lowbit's SSD kernels; `emulated`: calls that ran the torch implementation.
stats: Counter[str] = Counter()

#: Largest state size N the prefill kernel takes (the torch path takes any).
MAX_DSTATE = 256

Scale = Union[float, torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------
# argument handling
# ---------------------------------------------------------------------------------------------------------------


def _scalar(v: Scale, what: str) -> float:
    return _launch.scalar(v, what, finite=True)


def _use_kernel(*ts: Optional[torch.Tensor]) -> bool:
    return _launch.use_kernel("ssd", *ts)


def _int8(t: torch.Tensor, what: str, shape: tuple[int, ...]) -> None:
    if not isinstance(t, torch.Tensor) or t.dtype != torch.int8:
        raise ValueError(f"{what} must be an int8 tensor of codes, got {getattr(t, 'dtype', type(t))}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{what} has shape {tuple(t.shape)}, expected {list(shape)}")


def _limit(dt_limit: tuple[float, float]) -> tuple[float, float]:
    lo, hi = float(dt_limit[0]), float(dt_limit[1])
    if math.isnan(lo) or math.isnan(hi) or lo == math.inf or lo > hi:
        raise ValueError(f"dt_limit {dt_limit} must satisfy lo <= hi with lo finite")
    return lo, hi


def _state(t: Optional[torch.Tensor], shape: tuple[int, ...], what: str) -> None:
    if t is None:
        return
    if t.dtype != torch.float32:
        raise ValueError(f"{what} must be float32, got {t.dtype}")
    if tuple(t.shape) != shape:
        raise ValueError(f"{what} has shape {tuple(t.shape)}, expected {list(shape)}")


def _tokens(t: torch.Tensor, lead: int) -> tuple[torch.Tensor, int]:
    """`t` with `lead` leading (token) dims over a contiguous per-token block, and the token stride `ld` (token
    i of the flattened leading dims starts at element i * ld): as is when that holds, else a contiguous copy."""
    block = math.prod(t.shape[lead:])
    if t.is_contiguous():
        return t, block
    expect = 1
    for d in range(t.dim() - 1, lead - 1, -1):
        if t.shape[d] != 1 and t.stride(d) != expect:
            return t.contiguous(), block
        expect *= t.shape[d]
    ld = None
    for d in range(lead - 1, -1, -1):
        if t.shape[d] == 1:
            continue
        inner = math.prod(t.shape[d + 1 : lead])
        if ld is None:
            if t.stride(d) % inner != 0:
                return t.contiguous(), block
            ld = t.stride(d) // inner
        elif t.stride(d) != ld * inner:
            return t.contiguous(), block
    if ld is None:
        return t, block
    if ld < block:
        return t.contiguous(), block
    return t, ld


def _delta(dt: torch.Tensor, dt_scale: float, dt_bias: Optional[torch.Tensor], lo: float, hi: float) -> torch.Tensor:
    v = dt.to(torch.float32) * dt_scale
    if dt_bias is not None:
        v = v + dt_bias
    return torch.clamp(F.softplus(v), min=lo, max=hi)  # softplus threshold 20, as in Mamba and the kernels


# ---------------------------------------------------------------------------------------------------------------
# prefill
# ---------------------------------------------------------------------------------------------------------------


def _scan_torch(
    x: torch.Tensor,
    x_scale: torch.Tensor,
    dt: torch.Tensor,
    dt_scale: float,
    dt_bias: Optional[torch.Tensor],
    A: torch.Tensor,
    Bm: torch.Tensor,
    B_scale: torch.Tensor,
    Cm: torch.Tensor,
    C_scale: torch.Tensor,
    Dskip: Optional[torch.Tensor],
    chunk: int,
    h0: Optional[torch.Tensor],
    lo: float,
    hi: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    bsz, length, nh, hd = x.shape
    ng, ns = Bm.shape[2], Bm.shape[3]
    rep = nh // ng
    xf = x.to(torch.float32) * x_scale.view(nh, hd)  # [B, L, H, P]
    delta = _delta(dt, dt_scale, dt_bias, lo, hi)  # [B, L, H]
    bf = (Bm.to(torch.float32) * B_scale.view(ng, 1)).repeat_interleave(rep, dim=2)  # [B, L, H, N]
    cf = (Cm.to(torch.float32) * C_scale.view(ng, 1)).repeat_interleave(rep, dim=2)
    a = delta * A  # [B, L, H]
    state = (
        h0.to(torch.float32).clone()
        if h0 is not None
        else torch.zeros(bsz, nh, hd, ns, dtype=torch.float32, device=x.device)
    )
    y = torch.empty(bsz, length, nh, hd, dtype=torch.float32, device=x.device)
    for c0 in range(0, length, chunk):
        sl = slice(c0, min(c0 + chunk, length))
        q = sl.stop - sl.start
        xc, bc, cc, dc = xf[:, sl], bf[:, sl], cf[:, sl], delta[:, sl]
        acum = torch.cumsum(a[:, sl], dim=1)  # [B, q, H] (fp32 segsum)
        ah = acum.permute(0, 2, 1)  # [B, H, q]
        causal = torch.ones(q, q, dtype=torch.bool, device=x.device).tril()
        seg = (ah[..., :, None] - ah[..., None, :]).masked_fill(~causal, -math.inf)
        s = torch.einsum("bthn,bshn->bhts", cc, bc) * torch.exp(seg) * dc.permute(0, 2, 1)[:, :, None, :]
        y_intra = torch.einsum("bhts,bshp->bthp", s, xc)
        y_inter = torch.einsum("bthn,bhpn->bthp", cc, state) * torch.exp(acum)[..., None]
        yc = y_intra + y_inter
        if Dskip is not None:
            yc = yc + Dskip.view(nh, 1) * xc
        y[:, sl] = yc
        last = acum[:, -1]  # [B, H]
        w = torch.exp(last[:, None, :] - acum) * dc  # [B, q, H]
        state = state * torch.exp(last)[:, :, None, None] + torch.einsum("bshp,bshn->bhpn", xc * w[..., None], bc)
    return y.to(torch.float16), state


def ssd_chunk_scan_int8(
    x: torch.Tensor,
    x_scale: Scale,
    dt: torch.Tensor,
    dt_scale: Scale,
    dt_bias: Optional[Scale],
    A: torch.Tensor,
    Bm: torch.Tensor,
    B_scale: Scale,
    Cm: torch.Tensor,
    C_scale: Scale,
    Dskip: Optional[Scale],
    chunk_size: int = 256,
    initial_state: Optional[torch.Tensor] = None,
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mamba2 SSD over whole sequences with int8 inputs; returns `(y f16 [B, L, H, P], final_state f32 [B, H, P,
    N])`. `x_scale` has one scale per channel (`[H*P]`; a scalar is broadcast), `B_scale` / `C_scale` one per
    group (`[G]`), `dt_bias`, `A`, `Dskip` one per head. `chunk_size` is the torch path's chunk length."""
    if not isinstance(x, torch.Tensor) or x.dim() != 4:
        raise ValueError(f"x must be int8 [B, L, H, P], got {getattr(x, 'shape', type(x))}")
    bsz, length, nh, hd = x.shape
    if not isinstance(Bm, torch.Tensor) or Bm.dim() != 4:
        raise ValueError(f"Bm must be int8 [B, L, G, N], got {getattr(Bm, 'shape', type(Bm))}")
    ng, ns = Bm.shape[2], Bm.shape[3]
    _int8(x, "x", (bsz, length, nh, hd))
    _int8(dt, "dt", (bsz, length, nh))
    _int8(Bm, "Bm", (bsz, length, ng, ns))
    _int8(Cm, "Cm", (bsz, length, ng, ns))
    if min(bsz, nh, hd, ng, ns) < 1 or nh % ng != 0:
        raise ValueError(f"bad SSD shape: B={bsz} H={nh} P={hd} G={ng} N={ns} (every size >= 1, H % G == 0)")
    if int(chunk_size) < 1:
        raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
    lo, hi = _limit(dt_limit)
    dts = _scalar(dt_scale, "dt_scale")
    dev = x.device
    xs = _vec(x_scale, nh * hd, dev, "x_scale")
    bias = _vec(dt_bias, nh, dev, "dt_bias")
    a = _vec(A, nh, dev, "A")
    bs = _vec(B_scale, ng, dev, "B_scale")
    cs = _vec(C_scale, ng, dev, "C_scale")
    dsk = _vec(Dskip, nh, dev, "Dskip")
    assert xs is not None and a is not None and bs is not None and cs is not None
    _state(initial_state, (bsz, nh, hd, ns), "initial_state")
    if length == 0:
        h = initial_state.clone() if initial_state is not None else torch.zeros(bsz, nh, hd, ns, device=dev)
        return torch.empty(bsz, 0, nh, hd, dtype=torch.float16, device=dev), h
    if _use_kernel(x, dt, Bm, Cm, initial_state) and ns <= MAX_DSTATE:
        xk, ldx = _tokens(x, 2)
        dtk, lddt = _tokens(dt, 2)
        bk, ldb = _tokens(Bm, 2)
        ck, ldc = _tokens(Cm, 2)
        if ldb != ldc:  # B and C share one stride in the kernel
            bk, ck, ldb = bk.contiguous(), ck.contiguous(), ng * ns
        h0 = initial_state.contiguous() if initial_state is not None else None
        y = torch.empty(bsz, length, nh, hd, dtype=torch.float16, device=dev)
        hf = torch.empty(bsz, nh, hd, ns, dtype=torch.float32, device=dev)
        _C.ssd_chunk_scan_int8(
            device=dev.index or 0,
            x=xk.data_ptr(),
            ldx=ldx,
            x_scale=xs.data_ptr(),
            dt=dtk.data_ptr(),
            lddt=lddt,
            dt_scale=dts,
            dt_bias=_ptr(bias),
            a=a.data_ptr(),
            b=bk.data_ptr(),
            c=ck.data_ptr(),
            ldbc=ldb,
            b_scale=bs.data_ptr(),
            c_scale=cs.data_ptr(),
            d=_ptr(dsk),
            dt_lo=lo,
            dt_hi=hi,
            initial_state=_ptr(h0),
            y=y.data_ptr(),
            final_state=hf.data_ptr(),
            batch=bsz,
            length=length,
            nheads=nh,
            headdim=hd,
            ngroups=ng,
            dstate=ns,
            stream=_stream(x),
        )
        stats["kernel"] += 1
        return y, hf
    stats["emulated"] += 1
    return _scan_torch(x, xs, dt, dts, bias, a, Bm, bs, Cm, cs, dsk, int(chunk_size), initial_state, lo, hi)


# ---------------------------------------------------------------------------------------------------------------
# decode step
# ---------------------------------------------------------------------------------------------------------------


def ssd_state_update_int8(
    state: torch.Tensor,
    x: torch.Tensor,
    x_scale: Scale,
    dt: torch.Tensor,
    dt_scale: Scale,
    dt_bias: Optional[Scale],
    A: torch.Tensor,
    Bm: torch.Tensor,
    B_scale: Scale,
    Cm: torch.Tensor,
    C_scale: Scale,
    Dskip: Optional[Scale],
    dt_limit: tuple[float, float] = (0.0, math.inf),
) -> torch.Tensor:
    """One Mamba2 SSD decode step: `state` f32 `[B, H, P, N]` is updated in place; x int8 `[B, H, P]`, dt int8
    `[B, H]`, Bm / Cm int8 `[B, G, N]`; returns y f16 `[B, H, P]`."""
    if not isinstance(state, torch.Tensor) or state.dim() != 4 or state.dtype != torch.float32:
        raise ValueError(f"state must be float32 [B, H, P, N], got {getattr(state, 'dtype', type(state))}")
    bsz, nh, hd, ns = state.shape
    if not isinstance(Bm, torch.Tensor) or Bm.dim() != 3:
        raise ValueError(f"Bm must be int8 [B, G, N], got {getattr(Bm, 'shape', type(Bm))}")
    ng = Bm.shape[1]
    _int8(x, "x", (bsz, nh, hd))
    _int8(dt, "dt", (bsz, nh))
    _int8(Bm, "Bm", (bsz, ng, ns))
    _int8(Cm, "Cm", (bsz, ng, ns))
    if min(bsz, nh, hd, ng, ns) < 1 or nh % ng != 0:
        raise ValueError(f"bad SSD shape: B={bsz} H={nh} P={hd} G={ng} N={ns} (every size >= 1, H % G == 0)")
    lo, hi = _limit(dt_limit)
    dts = _scalar(dt_scale, "dt_scale")
    dev = x.device
    xs = _vec(x_scale, nh * hd, dev, "x_scale")
    bias = _vec(dt_bias, nh, dev, "dt_bias")
    a = _vec(A, nh, dev, "A")
    bs = _vec(B_scale, ng, dev, "B_scale")
    cs = _vec(C_scale, ng, dev, "C_scale")
    dsk = _vec(Dskip, nh, dev, "Dskip")
    assert xs is not None and a is not None and bs is not None and cs is not None
    if _use_kernel(state, x, dt, Bm, Cm):
        if not state.is_contiguous():
            raise ValueError("state must be contiguous to be updated in place by the kernel")
        xk, ldx = _tokens(x, 1)
        dtk, lddt = _tokens(dt, 1)
        bk, ldb = _tokens(Bm, 1)
        ck, ldc = _tokens(Cm, 1)
        if ldb != ldc:
            bk, ck, ldb = bk.contiguous(), ck.contiguous(), ng * ns
        y = torch.empty(bsz, nh, hd, dtype=torch.float16, device=dev)
        _C.ssd_state_update_int8(
            device=dev.index or 0,
            state=state.data_ptr(),
            x=xk.data_ptr(),
            ldx=ldx,
            x_scale=xs.data_ptr(),
            dt=dtk.data_ptr(),
            lddt=lddt,
            dt_scale=dts,
            dt_bias=_ptr(bias),
            a=a.data_ptr(),
            b=bk.data_ptr(),
            c=ck.data_ptr(),
            ldbc=ldb,
            b_scale=bs.data_ptr(),
            c_scale=cs.data_ptr(),
            d=_ptr(dsk),
            dt_lo=lo,
            dt_hi=hi,
            y=y.data_ptr(),
            batch=bsz,
            nheads=nh,
            headdim=hd,
            ngroups=ng,
            dstate=ns,
            stream=_stream(x),
        )
        stats["kernel"] += 1
        return y
    stats["emulated"] += 1
    rep = nh // ng
    xf = x.to(torch.float32) * xs.view(nh, hd)  # [B, H, P]
    delta = _delta(dt, dts, bias, lo, hi)  # [B, H]
    bf = (Bm.to(torch.float32) * bs.view(ng, 1)).repeat_interleave(rep, dim=1)  # [B, H, N]
    cf = (Cm.to(torch.float32) * cs.view(ng, 1)).repeat_interleave(rep, dim=1)
    decay = torch.exp(delta * a)[:, :, None, None]
    new = state * decay + (delta[:, :, None] * xf)[..., None] * bf[:, :, None, :]
    state.copy_(new)
    y = torch.einsum("bhpn,bhn->bhp", new, cf)
    if dsk is not None:
        y = y + dsk.view(nh, 1) * xf
    return y.to(torch.float16)
