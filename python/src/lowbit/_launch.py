"""Argument plumbing shared by the Python launchers of lowbit's SSM kernels (`lowbit.ssm_ops`, `lowbit.ssd_ops`):
scalar and per-channel scale arguments, the kernel-or-torch decision, and the raw pointers / stream handles the
`_C` launchers take."""

from __future__ import annotations

import math
from typing import Optional, Union

import torch

from .ops import kernels_enabled

Scale = Union[float, torch.Tensor]


def scalar(v: Scale, what: str, *, finite: bool = False) -> float:
    """`v` (a float or a one-element tensor) as a Python float; with `finite`, NaN / inf raise ValueError."""
    if isinstance(v, torch.Tensor):
        if v.numel() != 1:
            raise ValueError(f"{what} must be a scalar, got a tensor of shape {tuple(v.shape)}")
        v = float(v.item())
    v = float(v)
    if finite and not math.isfinite(v):
        raise ValueError(f"{what} must be finite, got {v}")
    return v


def vector(v: Optional[Scale], n: int, device: torch.device, what: str) -> Optional[torch.Tensor]:
    """An f32 vector `[n]` on `device` (a scalar or one-element tensor is broadcast); None stays None."""
    if v is None:
        return None
    t = torch.as_tensor(v, dtype=torch.float32, device=device)
    if t.numel() == 1:
        return t.reshape(1).expand(n).contiguous()
    if t.numel() != n:
        raise ValueError(f"{what} has {t.numel()} elements, expected {n}")
    return t.reshape(n).contiguous()


def use_kernel(family: str, *ts: Optional[torch.Tensor]) -> bool:
    """Whether lowbit's kernels run for these tensors (all on one CUDA device, kernels enabled); tensors on
    different devices raise ValueError naming `family` ("ssm", "ssd")."""
    present = [t for t in ts if t is not None]
    if not (kernels_enabled() and all(t.is_cuda for t in present)):
        return False
    dev = present[0].device
    if any(t.device != dev for t in present):
        raise ValueError(
            f"lowbit {family} ops: tensors on different devices: {sorted({str(t.device) for t in present})}"
        )
    return True


def ptr(t: Optional[torch.Tensor]) -> int:
    """`t`'s device address for a `_C` launcher (0 for an absent optional tensor)."""
    return 0 if t is None else t.data_ptr()


def stream(t: torch.Tensor) -> int:
    """The handle of torch's current stream on `t`'s device."""
    return torch.cuda.current_stream(t.device).cuda_stream
