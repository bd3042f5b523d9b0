"""lowbit.ssm_ops: the torch (emulated) path against float64 references written here, and on a GPU the kernels
against the same references and against the torch path.

Tolerances (the implementations compute in float32, the references in float64):
- int8 outputs (conv1d, gated norm): every code within +-1 and at most 1% of codes different (a value on a
  rounding boundary may round either way);
- selective scan y (f16): |got - want| <= 2e-3 |want| + 1e-3 max|want| (f16 rounding is 4.9e-4 relative);
  final state (f32): |got - want| <= 1e-4 (|want| + max|want|).
Outputs the kernels write are fresh tensors, and all-zero references are rejected, so a test cannot pass on an
untouched or trivial output.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch

from lowbit import ssm_ops

# ---------------------------------------------------------------------------------------------------------------
# float64 references
# ---------------------------------------------------------------------------------------------------------------


def _silu(v: np.ndarray) -> np.ndarray:
    return v / (1.0 + np.exp(-v))


def _quant(v: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    return np.clip(np.round(v / s), -127, 127).astype(np.int8)  # np.round is half-to-even


def ref_conv1d(
    x: np.ndarray, xs: np.ndarray, w: np.ndarray, bias: Optional[np.ndarray], os_: np.ndarray, silu: bool
) -> np.ndarray:
    bsz, length, c = x.shape
    width = w.shape[1]
    xf = x.astype(np.float64)
    acc = np.zeros((bsz, length, c))
    for t in range(length):
        for j in range(width):
            src = t - width + 1 + j
            if src >= 0:
                acc[:, t] += w[:, j].astype(np.float64) * xf[:, src]
    y = acc * xs.astype(np.float64) + (0.0 if bias is None else bias.astype(np.float64))
    if silu:
        y = _silu(y)
    return _quant(y, os_.astype(np.float64))


def ref_scan(
    u: np.ndarray,
    us: np.ndarray,
    dt: np.ndarray,
    dt_scale: float,
    dt_bias: Optional[np.ndarray],
    a: np.ndarray,
    bm: np.ndarray,
    b_scale: float,
    cm: np.ndarray,
    c_scale: float,
    dskip: Optional[np.ndarray],
    z: Optional[np.ndarray],
    z_scale: float,
    softplus: bool,
    dt_add: float,
    h0: Optional[np.ndarray],
    reverse: bool,
) -> tuple[np.ndarray, np.ndarray]:
    bsz, length, d = u.shape
    n = bm.shape[-1]
    uf = u.astype(np.float64) * us.astype(np.float64)
    delta = dt.astype(np.float64) * dt_scale + (0.0 if dt_bias is None else dt_bias.astype(np.float64))
    if softplus:
        delta = np.where(delta <= 20.0, np.log1p(np.exp(np.minimum(delta, 20.0))), delta)
    delta = delta + dt_add
    h = np.zeros((bsz, d, n)) if h0 is None else h0.astype(np.float64).copy()
    af = a.astype(np.float64)
    y = np.zeros((bsz, length, d))
    for i in range(length):
        t = length - 1 - i if reverse else i
        dl = delta[:, t][:, :, None]
        h = np.exp(dl * af) * h + dl * bm[:, t, None, :].astype(np.float64) * b_scale * uf[:, t][:, :, None]
        y[:, t] = (h * cm[:, t, None, :].astype(np.float64) * c_scale).sum(-1)
    if dskip is not None:
        y = y + uf * dskip.astype(np.float64)
    if z is not None:
        y = y * _silu(z.astype(np.float64) * z_scale)
    return y, h


def _hadamard(h: int) -> np.ndarray:
    m = np.ones((1, 1))
    while m.shape[0] < h:
        m = np.block([[m, m], [m, -m]])
    return m / math.sqrt(h)


def ref_gated_norm(
    y: np.ndarray,
    z: Optional[np.ndarray],
    z_scale: float,
    w: Optional[np.ndarray],
    group: int,
    eps: float,
    norm: bool,
    had: int,
    out_scale: float,
) -> np.ndarray:
    rows, d = y.shape
    g = y.astype(np.float64)
    if z is not None:
        g = g * _silu(z.astype(np.float64) * z_scale)
    if norm:
        gg = g.reshape(rows, d // group, group)
        g = (gg / np.sqrt((gg**2).mean(-1, keepdims=True) + eps)).reshape(rows, d)
    if w is not None:
        g = g * w.astype(np.float64)
    if had > 1:
        g = (g.reshape(rows, d // had, had) @ _hadamard(had)).reshape(rows, d)
    return _quant(g, out_scale)


# ---------------------------------------------------------------------------------------------------------------
# comparisons and data
# ---------------------------------------------------------------------------------------------------------------


def check_codes(tag: str, got: torch.Tensor, want: np.ndarray) -> None:
    g = got.cpu().numpy().astype(np.int32)
    w = want.astype(np.int32)
    assert g.shape == w.shape, f"{tag}: shape {g.shape} vs {w.shape}"
    assert np.abs(g - w).max(initial=0) <= 1, f"{tag}: codes off by more than one"
    diff = int((g != w).sum())
    assert diff * 100 <= max(g.size, 100), f"{tag}: {diff} of {g.size} codes differ"
    assert w.size < 32 or (np.abs(w) > 2).sum() > w.size // 4, f"{tag}: degenerate reference"


def check_y(tag: str, got: torch.Tensor, want: np.ndarray) -> None:
    assert got.dtype == torch.float16, f"{tag}: y dtype {got.dtype}"
    g = got.float().cpu().numpy().astype(np.float64)
    mx = np.abs(want).max()
    assert mx > 0, f"{tag}: reference all zero"
    err = np.abs(g - want) - (2e-3 * np.abs(want) + 1e-3 * mx)
    assert err.max() <= 0, f"{tag}: y error {np.abs(g - want).max()} (max |y| {mx})"


def check_state(tag: str, got: torch.Tensor, want: np.ndarray) -> None:
    g = got.cpu().numpy().astype(np.float64)
    mx = np.abs(want).max()
    assert np.all(np.abs(g - want) <= 1e-4 * (np.abs(want) + mx)), f"{tag}: state error {np.abs(g - want).max()}"


def close(tag: str, got: torch.Tensor, want: torch.Tensor, rtol: float, atol: float) -> None:
    g, w = got.float().cpu().numpy(), want.float().cpu().numpy()
    assert g.shape == w.shape and np.all(np.abs(g - w) <= atol + rtol * np.abs(w)), f"{tag}: {np.abs(g - w).max()}"


def codes(shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    return torch.randint(-127, 128, shape, generator=gen, dtype=torch.int8)


def uniform(shape: tuple[int, ...], lo: float, hi: float, gen: torch.Generator) -> torch.Tensor:
    return torch.rand(shape, generator=gen, dtype=torch.float32) * (hi - lo) + lo


class ConvCase:
    def __init__(self, bsz: int, length: int, c: int, width: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.x = codes((bsz, length, c), g)
        self.xs = uniform((c,), 0.01, 0.03, g)
        self.w = uniform((c, width), -1.0, 1.0, g)
        self.bias = uniform((c,), -0.5, 0.5, g)
        self.os = uniform((c,), 0.004, 0.012, g)

    def ref(self, x: torch.Tensor, bias: bool, silu: bool) -> np.ndarray:
        b = self.bias.numpy() if bias else None
        return ref_conv1d(x.numpy(), self.xs.numpy(), self.w.numpy(), b, self.os.numpy(), silu)


class ScanCase:
    def __init__(self, bsz: int, length: int, d: int, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.u, self.dt, self.z = (codes((bsz, length, d), g) for _ in range(3))
        self.bm, self.cm = codes((bsz, length, n), g), codes((bsz, length, n), g)
        self.us = uniform((d,), 0.005, 0.02, g)
        self.dt_bias = uniform((d,), -4.0, -1.0, g)
        self.a = uniform((d, n), -8.0, -0.5, g)
        self.dskip = uniform((d,), 0.5, 1.5, g)
        self.h0 = uniform((bsz, d, n), -1.0, 1.0, g)

    def args(self, dev: str, z: bool = True) -> tuple:
        t = lambda v: v.to(dev)  # noqa: E731
        return (
            t(self.u), t(self.us), t(self.dt), 0.02, t(self.dt_bias), t(self.a), t(self.bm), 0.01, t(self.cm),
            0.015, t(self.dskip), t(self.z) if z else None, 0.03,
        )  # fmt: skip

    def ref(self, z: bool, init: bool, reverse: bool) -> tuple[np.ndarray, np.ndarray]:
        return ref_scan(
            self.u.numpy(), self.us.numpy(), self.dt.numpy(), 0.02, self.dt_bias.numpy(), self.a.numpy(),
            self.bm.numpy(), 0.01, self.cm.numpy(), 0.015, self.dskip.numpy(), self.z.numpy() if z else None, 0.03,
            True, 1e-4, self.h0.numpy() if init else None, reverse,
        )  # fmt: skip


class NormCase:
    def __init__(self, rows: int, d: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.y = uniform((rows, d), -3.0, 3.0, g).half()
        self.z = codes((rows, d), g)
        self.w = uniform((d,), 0.5, 1.5, g)

    def ref(self, z: bool, w: bool, group: int, norm: bool, had: int, out_scale: float) -> np.ndarray:
        return ref_gated_norm(
            self.y.float().numpy(), self.z.numpy() if z else None, 0.03, self.w.numpy() if w else None, group, 1e-5,
            norm, had, out_scale,
        )  # fmt: skip


# ---------------------------------------------------------------------------------------------------------------
# CPU: the torch path against the references
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("bsz", "length", "c", "width"), [(1, 1, 4, 4), (2, 37, 13, 4), (3, 9, 8, 3), (1, 20, 5, 1)])
def test_conv1d_torch_matches_reference(bsz: int, length: int, c: int, width: int) -> None:
    case = ConvCase(bsz, length, c, width, seed=length * 10 + width)
    for bias, silu in ((True, True), (False, False)):
        before = ssm_ops.stats["emulated"]
        y = ssm_ops.causal_conv1d_int8(case.x, case.xs, case.w, case.bias if bias else None, case.os, silu)
        assert ssm_ops.stats["emulated"] == before + 1
        check_codes(f"conv1d {bsz}x{length}x{c} W={width} bias={bias}", y, case.ref(case.x, bias, silu))


def test_conv1d_prefill_then_decode_steps_continue_the_sequence() -> None:
    bsz, length, c, width, extra = 2, 11, 7, 4, 5
    case = ConvCase(bsz, length + extra, c, width, seed=3)
    want = case.ref(case.x, True, True)
    y = ssm_ops.causal_conv1d_int8(case.x[:, :length], case.xs, case.w, case.bias, case.os)
    check_codes("prefill", y, want[:, :length])
    # The state after the prefill: the last W inputs, oldest first ([B, C, W]).
    state = case.x[:, length - width : length].transpose(1, 2).contiguous()
    for t in range(length, length + extra):
        yt = ssm_ops.causal_conv1d_update_int8(case.x[:, t], state, case.xs, case.w, case.bias, case.os)
        assert torch.equal(state, case.x[:, t - width + 1 : t + 1].transpose(1, 2)), f"state after step {t}"
        check_codes(f"decode step {t}", yt[:, None], want[:, t : t + 1])


def test_conv1d_accepts_hf_weight_layout_slices_and_scalar_scales() -> None:
    case = ConvCase(2, 6, 8, 4, seed=4)
    wide = torch.cat([case.x, codes((2, 6, 8), torch.Generator().manual_seed(1))], dim=-1)
    sliced = wide[:, :, :8]  # a non-contiguous slice of an in_proj output
    a = ssm_ops.causal_conv1d_int8(sliced, 0.02, case.w[:, None, :], None, case.os)
    b = ssm_ops.causal_conv1d_int8(case.x, torch.full((8,), 0.02), case.w, None, case.os)
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="weight"):
        ssm_ops.causal_conv1d_int8(case.x, case.xs, case.w[:5], None, case.os)
    with pytest.raises(ValueError, match="int8"):
        ssm_ops.causal_conv1d_int8(case.x.float(), case.xs, case.w, None, case.os)
    with pytest.raises(ValueError, match="conv_state"):
        ssm_ops.causal_conv1d_update_int8(case.x[:, 0], torch.zeros(2, 8, 3, dtype=torch.int8), 0.02, case.w, None, 1.0)


@pytest.mark.parametrize(
    ("bsz", "length", "d", "n", "z", "init", "reverse"),
    [(1, 1, 1, 1, True, False, False), (2, 13, 5, 16, True, True, False), (3, 17, 4, 7, False, False, True)],
)
def test_selective_scan_torch_matches_reference(
    bsz: int, length: int, d: int, n: int, z: bool, init: bool, reverse: bool
) -> None:
    case = ScanCase(bsz, length, d, n, seed=bsz * 100 + length)
    h0 = case.h0.clone() if init else None
    y, h = ssm_ops.selective_scan_int8(*case.args("cpu", z), True, 1e-4, h0, reverse)
    want_y, want_h = case.ref(z, init, reverse)
    tag = f"scan {bsz}x{length}x{d}x{n} z={z} init={init} reverse={reverse}"
    check_y(tag, y, want_y)
    check_state(tag, h, want_h)
    if init:
        assert h0 is not None and torch.equal(h0, case.h0), "initial_state must not be modified"


def test_state_update_steps_equal_the_scan() -> None:
    bsz, length, d, n = 2, 6, 5, 16
    case = ScanCase(bsz, length, d, n, seed=9)
    y_full, h_full = ssm_ops.selective_scan_int8(*case.args("cpu"), True, 1e-4, case.h0.clone(), False)
    state = case.h0.clone()
    u, us, dt, s_dt, bias, a, bm, s_b, cm, s_c, dsk, z, s_z = case.args("cpu")
    for t in range(length):
        y = ssm_ops.selective_state_update_int8(
            state, u[:, t], us, dt[:, t], s_dt, bias, a, bm[:, t], s_b, cm[:, t], s_c, dsk, z[:, t], s_z, True, 1e-4
        )
        close(f"step {t} y", y, y_full[:, t], rtol=2e-3, atol=1e-3)
    close("final state", state, h_full, rtol=1e-5, atol=1e-6)


def test_scan_rejects_bad_shapes() -> None:
    case = ScanCase(1, 4, 3, 5, seed=1)
    args = list(case.args("cpu"))
    args[5] = case.a[:, :4]
    with pytest.raises(ValueError, match="A has shape"):
        ssm_ops.selective_scan_int8(*args)
    with pytest.raises(ValueError, match="initial_state"):
        ssm_ops.selective_scan_int8(*case.args("cpu"), True, 0.0, torch.zeros(1, 3, 4))
    with pytest.raises(ValueError, match="state must be float32"):
        u, us, dt, s_dt, bias, a, bm, s_b, cm, s_c, dsk, z, s_z = case.args("cpu")
        ssm_ops.selective_state_update_int8(
            torch.zeros(1, 3, 5, dtype=torch.float64), u[:, 0], us, dt[:, 0], s_dt, bias, a, bm[:, 0], s_b,
            cm[:, 0], s_c, dsk, z[:, 0], s_z,
        )  # fmt: skip


@pytest.mark.parametrize(
    ("rows", "d", "group", "norm", "had", "z", "w"),
    [(1, 64, 64, False, 0, True, False), (3, 96, 32, True, 32, True, True), (5, 40, 20, True, 0, False, True)],
)
def test_gated_norm_torch_matches_reference(
    rows: int, d: int, group: int, norm: bool, had: int, z: bool, w: bool
) -> None:
    case = NormCase(rows, d, seed=rows + d)
    out_scale = 0.03 if norm else 0.02
    q = ssm_ops.gated_rmsnorm_quant(
        case.y, case.z if z else None, 0.03, case.w if w else None, group, 1e-5, norm, had, out_scale
    )
    check_codes(f"gated norm {rows}x{d} g={group} norm={norm} H={had}", q, case.ref(z, w, group, norm, had, out_scale))


def test_gated_norm_rejects_bad_arguments() -> None:
    case = NormCase(2, 48, seed=1)
    with pytest.raises(ValueError, match="group_size"):
        ssm_ops.gated_rmsnorm_quant(case.y, None, 1.0, None, 20, 1e-5, True, 0, 0.1)
    with pytest.raises(ValueError, match="hadamard"):
        ssm_ops.gated_rmsnorm_quant(case.y, None, 1.0, None, 48, 1e-5, True, 32, 0.1)
    with pytest.raises(ValueError, match="out_scale"):
        ssm_ops.gated_rmsnorm_quant(case.y, None, 1.0, None, 48, 1e-5, True, 0, 0.0)


# ---------------------------------------------------------------------------------------------------------------
# GPU: the kernels against the references and the torch path
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bsz", "length", "c", "width"), [(1, 1, 4, 4), (2, 37, 130, 4), (3, 65, 256, 3), (1, 129, 1001, 2)]
)
def test_conv1d_kernel_matches_reference(cuda_device: str, bsz: int, length: int, c: int, width: int) -> None:
    case = ConvCase(bsz, length, c, width, seed=c + width)
    want = case.ref(case.x, True, True)
    before = ssm_ops.stats["kernel"]
    y = ssm_ops.causal_conv1d_int8(
        case.x.to(cuda_device), case.xs.to(cuda_device), case.w.to(cuda_device), case.bias.to(cuda_device),
        case.os.to(cuda_device),
    )  # fmt: skip
    assert ssm_ops.stats["kernel"] == before + 1 and y.is_cuda
    check_codes(f"conv1d kernel {bsz}x{length}x{c} W={width}", y, want)
    # A slice of a wider buffer goes in with its row stride.
    wide = torch.cat([case.x, case.x], dim=-1).to(cuda_device)
    y2 = ssm_ops.causal_conv1d_int8(wide[:, :, :c], case.xs, case.w, case.bias, case.os)
    check_codes("strided conv1d kernel", y2, want)


def test_conv1d_decode_kernel_matches_reference(cuda_device: str) -> None:
    bsz, length, c, width = 3, 8, 131, 4
    case = ConvCase(bsz, length, c, width, seed=5)
    want = case.ref(case.x, True, True)
    dev = cuda_device
    state = torch.zeros((bsz, c, width), dtype=torch.int8, device=dev)
    wide = torch.cat([case.x, case.x], dim=-1).to(dev)
    for t in range(length):
        before = ssm_ops.stats["kernel"]
        y = ssm_ops.causal_conv1d_update_int8(
            wide[:, t, :c], state, case.xs.to(dev), case.w.to(dev), case.bias.to(dev), case.os.to(dev)
        )
        assert ssm_ops.stats["kernel"] == before + 1
        check_codes(f"conv1d decode kernel t={t}", y[:, None], want[:, t : t + 1])
    assert torch.equal(state.cpu(), case.x[:, length - width :].transpose(1, 2))


@pytest.mark.parametrize(
    ("bsz", "length", "d", "n", "z", "init", "reverse"),
    [
        (1, 1, 1, 1, True, False, False),
        (2, 37, 67, 16, True, True, False),
        (3, 100, 130, 16, True, False, True),
        (1, 65, 33, 7, False, True, False),
        (2, 33, 64, 40, True, True, True),
    ],
)
def test_selective_scan_kernel_matches_reference(
    cuda_device: str, bsz: int, length: int, d: int, n: int, z: bool, init: bool, reverse: bool
) -> None:
    case = ScanCase(bsz, length, d, n, seed=7 * length + d)
    h0 = case.h0.to(cuda_device) if init else None
    before = ssm_ops.stats["kernel"]
    y, h = ssm_ops.selective_scan_int8(*case.args(cuda_device, z), True, 1e-4, h0, reverse)
    assert ssm_ops.stats["kernel"] == before + 1 and y.is_cuda and h.is_cuda
    want_y, want_h = case.ref(z, init, reverse)
    tag = f"scan kernel {bsz}x{length}x{d}x{n} z={z} init={init} reverse={reverse}"
    check_y(tag, y, want_y)
    check_state(tag, h, want_h)


def test_scan_kernel_on_projection_slices_and_decode_steps(cuda_device: str) -> None:
    """u / z as slices of one [B, L, 2D] in_proj output, dt / B / C of one [B, L, D + 2N] buffer (the Mamba1
    mixer's layout, passed to the kernel by token stride without a copy), then three decode steps on slices of
    [B, 2D] / [B, D + 2N] rows continuing from the final state."""
    bsz, length, d, n, steps = 2, 45, 96, 16, 3
    case = ScanCase(bsz, length + steps, d, n, seed=11)
    dev = cuda_device
    xz_all = torch.cat([case.u, case.z], dim=-1).to(dev)
    dbc_all = torch.cat([case.dt, case.bm, case.cm], dim=-1).to(dev)
    xz, dbc = xz_all[:, :length].contiguous(), dbc_all[:, :length].contiguous()
    u, z = xz[:, :, :d], xz[:, :, d:]
    dt, bm, cm = dbc[:, :, :d], dbc[:, :, d : d + n], dbc[:, :, d + n :]
    assert not u.is_contiguous() and not bm.is_contiguous()
    us, bias, a, dsk = (v.to(dev) for v in (case.us, case.dt_bias, case.a, case.dskip))
    y, h = ssm_ops.selective_scan_int8(u, us, dt, 0.02, bias, a, bm, 0.01, cm, 0.015, dsk, z, 0.03, True, 1e-4)
    want_y, _ = case.ref(True, False, False)
    check_y("scan on slices", y, want_y[:, :length])
    for t in range(length, length + steps):
        xz_t, dbc_t = xz_all[:, t].contiguous(), dbc_all[:, t].contiguous()
        yt = ssm_ops.selective_state_update_int8(
            h, xz_t[:, :d], us, dbc_t[:, :d], 0.02, bias, a, dbc_t[:, d : d + n], 0.01, dbc_t[:, d + n :],
            0.015, dsk, xz_t[:, d:], 0.03, True, 1e-4,
        )  # fmt: skip
        check_y(f"decode step {t}", yt[:, None], want_y[:, t : t + 1])


@pytest.mark.parametrize(
    ("rows", "d", "group", "norm", "had", "z", "w"),
    [
        (1, 64, 64, False, 0, True, False),
        (3, 5120, 5120, False, 1024, True, False),
        (7, 4096, 512, True, 4096, True, True),
        (2, 1000, 250, True, 0, True, True),
        (33, 96, 96, True, 32, False, True),
        # the vector kernel (D % 8 == 0): Mamba2-2.7B decode and prefill rows, 8 groups, idle threads in the last
        # warp (325 slices), E = 16 slices above D = 8192; D = 1004 takes the shared-memory kernel
        (1, 5120, 5120, True, 1024, True, True),
        (3, 5120, 640, True, 1024, True, True),
        (3, 2600, 520, True, 8, True, True),
        (2, 12288, 3072, True, 4096, True, True),
        (3, 1004, 1004, True, 4, True, True),
    ],
)
def test_gated_norm_kernel_matches_reference(
    cuda_device: str, rows: int, d: int, group: int, norm: bool, had: int, z: bool, w: bool
) -> None:
    case = NormCase(rows, d, seed=rows * d)
    out_scale = 0.03 if norm else 0.02
    before = ssm_ops.stats["kernel"]
    q = ssm_ops.gated_rmsnorm_quant(
        case.y.to(cuda_device), case.z.to(cuda_device) if z else None, 0.03, case.w.to(cuda_device) if w else None,
        group, 1e-5, norm, had, out_scale,
    )  # fmt: skip
    assert ssm_ops.stats["kernel"] == before + 1 and q.is_cuda
    check_codes(
        f"gated norm kernel {rows}x{d} g={group} norm={norm} H={had}", q, case.ref(z, w, group, norm, had, out_scale)
    )


def test_kernels_match_the_emulated_path(cuda_device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same calls with LOWBIT_EMULATE=1 (torch path on the GPU) agree with the kernels."""
    case = ScanCase(2, 20, 33, 16, seed=3)
    args = case.args(cuda_device)
    y_k, h_k = ssm_ops.selective_scan_int8(*args, True, 1e-4, None, False)
    conv = ConvCase(2, 20, 33, 4, seed=3)
    cargs = (conv.x.to(cuda_device), conv.xs, conv.w, conv.bias, conv.os)
    c_k = ssm_ops.causal_conv1d_int8(*cargs)
    monkeypatch.setenv("LOWBIT_EMULATE", "1")
    before = ssm_ops.stats["emulated"]
    y_e, h_e = ssm_ops.selective_scan_int8(*args, True, 1e-4, None, False)
    c_e = ssm_ops.causal_conv1d_int8(*cargs)
    assert ssm_ops.stats["emulated"] == before + 2
    close("y kernel vs emulated", y_k, y_e, rtol=4e-3, atol=2e-3 * y_e.float().abs().max().item())
    close("state kernel vs emulated", h_k, h_e, rtol=1e-4, atol=1e-4 * h_e.abs().max().item())
    assert (c_k.int() - c_e.int()).abs().max().item() <= 1


# ---------------------------------------------------------------------------------------------------------------
# residual add (f32) -> RMSNorm -> FWHT -> int8
# ---------------------------------------------------------------------------------------------------------------


def _residual_ref(
    res: torch.Tensor, x: Optional[torch.Tensor], gamma: Optional[torch.Tensor], had: int, s: float, dt: torch.dtype
) -> tuple[np.ndarray, np.ndarray]:
    """float64 reference of residual_rmsnorm_quant: (codes, f32 sum)."""
    r = res.double() + (x.double() if x is not None else 0.0)
    r32 = r.float()  # the f32 add of the kernel is exact here (f32 + f16 values of moderate range) up to rounding
    h = r32.to(dt).double()
    if gamma is not None:
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + 1e-6) * gamma.double()
    if had > 1:
        v = h.reshape(-1, had)
        n = 1
        while n < had:
            v = v.reshape(-1, had // (2 * n), 2, n)
            v = torch.stack((v[:, :, 0] + v[:, :, 1], v[:, :, 0] - v[:, :, 1]), dim=2)
            n *= 2
        h = v.reshape(h.shape) / math.sqrt(had)
    q = torch.clamp(torch.round(h / s), -127, 127).to(torch.int8)
    return q.numpy(), r32.numpy()


def _residual_case(rows: int, k: int, dt: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    res = torch.randn(rows, k, generator=g) * 2
    x = (torch.randn(rows, k, generator=g) * 0.5).to(dt)
    gamma = (torch.rand(k, generator=g) + 0.5).to(dt)
    return res, x, gamma


@pytest.mark.parametrize("dt", [torch.float32, torch.float16])
def test_residual_norm_quant_torch_matches_reference(dt: torch.dtype) -> None:
    res, x, gamma = _residual_case(3, 96, dt, 1)
    out = torch.full_like(res, float("nan"))
    q = ssm_ops.residual_rmsnorm_quant(res, x, gamma, 1e-6, 32, 0.02, dt, out)
    want_q, want_r = _residual_ref(res, x, gamma, 32, 0.02, dt)
    check_codes("residual norm quant (torch)", q, want_q)
    np.testing.assert_allclose(out.numpy(), want_r, rtol=1e-6, atol=1e-6)
    q2 = ssm_ops.residual_rmsnorm_quant(res, None, None, 1e-6, 0, 0.02, dt)
    check_codes("residual quant, no add / norm (torch)", q2, _residual_ref(res, None, None, 0, 0.02, dt)[0])


def test_residual_norm_quant_rejects_bad_arguments() -> None:
    res, x, gamma = _residual_case(2, 48, torch.float16, 2)
    with pytest.raises(ValueError, match="float32"):
        ssm_ops.residual_rmsnorm_quant(res.half(), x, gamma, 1e-6, 0, 0.1, torch.float16)
    with pytest.raises(ValueError, match="hadamard"):
        ssm_ops.residual_rmsnorm_quant(res, x, gamma, 1e-6, 32, 0.1, torch.float16)
    with pytest.raises(ValueError, match="static_scale"):
        ssm_ops.residual_rmsnorm_quant(res, x, gamma, 1e-6, 16, 0.0, torch.float16)
    with pytest.raises(ValueError, match="x must be"):
        ssm_ops.residual_rmsnorm_quant(res, x.float(), gamma, 1e-6, 16, 0.1, torch.float16)


@pytest.mark.parametrize(
    ("rows", "k", "had", "dt", "add"),
    [
        (1, 2560, 512, torch.float16, True),  # Mamba2-2.7B decode: H crosses warps through shared memory
        (3, 2560, 512, torch.bfloat16, False),
        (5, 1000, 8, torch.float16, True),  # 125 slices: idle threads in the last warp
        (2, 8192, 8192, torch.float16, True),  # 64 KB of shared memory
        (1, 64, 64, torch.bfloat16, True),
        (3, 1004, 4, torch.float16, True),  # K % 8 != 0: the torch path on the GPU
    ],
)
def test_residual_norm_quant_kernel_matches_reference(
    cuda_device: str, rows: int, k: int, had: int, dt: torch.dtype, add: bool
) -> None:
    res, x, gamma = _residual_case(rows, k, dt, rows * k)
    want_q, want_r = _residual_ref(res, x if add else None, gamma, had, 0.03, dt)
    out = torch.full((rows, k), float("nan"), device=cuda_device)
    before = ssm_ops.stats["kernel"]
    q = ssm_ops.residual_rmsnorm_quant(
        res.to(cuda_device), x.to(cuda_device) if add else None, gamma.to(cuda_device), 1e-6, had, 0.03, dt, out
    )
    assert ssm_ops.stats["kernel"] == before + (k % 8 == 0) and q.is_cuda and q.is_contiguous()
    check_codes(f"residual norm quant kernel {rows}x{k} H={had} {dt} add={add}", q, want_q)
    np.testing.assert_array_equal(out.cpu().numpy(), (res + x.float()).numpy() if add else res.numpy())
    np.testing.assert_allclose(out.cpu().numpy(), want_r, rtol=1e-6)
    # the kernel against act_quant's kernel on the rounded sum: the same norm, FWHT and rounding, bit for bit
    from lowbit import ops

    q_ref, _ = ops.act_quant((res + x.float()).to(dt).to(cuda_device) if add else res.to(dt).to(cuda_device),
                             None, gamma.to(cuda_device), 1e-6, had, 0.03)  # fmt: skip
    if k % 8 == 0:
        assert torch.equal(q, q_ref), "fused residual kernel differs from act_quant on the same row"
