"""lowbit.ssd_ops (Mamba2 SSD with int8 inputs): the torch (emulated) path against a float64 sequential recurrence
written here, and on a GPU the kernels against the same reference.

Tolerances (the implementations compute in float32, the reference in float64, y is f16):
- torch path: y within 1e-3 |want| + 2e-4 rms(want) (f16 rounding is 4.9e-4 relative); final state within
  1e-4 (|want| + rms(want));
- kernels: the chunked kernel rounds three operands to f16 (S, h_prev, x * delta * decay), so y and the final
  state within 4e-3 |want| + 4e-3 rms(want of the same head); the decode kernel is fp32: y as the torch path,
  state within 1e-5 |want| + 1e-6 rms.
Kernel outputs are fresh tensors and all-zero references are rejected, so a test cannot pass on an untouched or
trivial output.
"""

from __future__ import annotations

import math
from typing import Optional

import numpy as np
import pytest
import torch

from lowbit import ssd_ops

# ---------------------------------------------------------------------------------------------------------------
# float64 reference: the plain recurrence, token by token
# ---------------------------------------------------------------------------------------------------------------


def _softplus(v: np.ndarray) -> np.ndarray:
    return np.where(v > 20.0, v, np.log1p(np.exp(np.minimum(v, 20.0))))


class Case:
    """Random int8 inputs and realistic scales for one SSD problem (`length=None`: a decode step)."""

    def __init__(self, b: int, length: Optional[int], h: int, p: int, g: int, n: int, seed: int) -> None:
        rng = np.random.default_rng(seed)
        lead = (b,) if length is None else (b, length)
        self.h, self.p, self.g, self.n = h, p, g, n
        self.x = rng.integers(-127, 128, size=(*lead, h, p), dtype=np.int8)
        self.dt = rng.integers(-127, 128, size=(*lead, h), dtype=np.int8)
        self.bm = rng.integers(-127, 128, size=(*lead, g, n), dtype=np.int8)
        self.cm = rng.integers(-127, 128, size=(*lead, g, n), dtype=np.int8)
        self.x_scale = rng.uniform(0.002, 0.03, size=h * p).astype(np.float32)
        self.dt_scale = 0.02
        self.dt_bias: Optional[np.ndarray] = rng.uniform(-4.5, 0.0, size=h).astype(np.float32)
        self.a = (-(0.02 * 400.0 ** rng.uniform(0.0, 1.0, size=h))).astype(np.float32)  # |A| in [0.02, 8]
        self.b_scale = rng.uniform(0.004, 0.02, size=g).astype(np.float32)
        self.c_scale = rng.uniform(0.004, 0.02, size=g).astype(np.float32)
        self.d: Optional[np.ndarray] = rng.uniform(0.5, 1.5, size=h).astype(np.float32)
        self.h0 = rng.uniform(-2.0, 2.0, size=(b, h, p, n)).astype(np.float32)
        self.dt_limit = (0.0, math.inf)

    def step(self, state: np.ndarray, x: np.ndarray, dt: np.ndarray, bm: np.ndarray, cm: np.ndarray) -> np.ndarray:
        """One token for every sequence: updates `state` [B, H, P, N] (float64) in place, returns y [B, H, P]."""
        h, p, g = self.h, self.p, self.g
        xv = x.astype(np.float64) * self.x_scale.astype(np.float64).reshape(h, p)
        v = dt.astype(np.float64) * np.float64(np.float32(self.dt_scale))
        if self.dt_bias is not None:
            v = v + self.dt_bias.astype(np.float64)
        delta = np.clip(_softplus(v), self.dt_limit[0], self.dt_limit[1])  # [B, H]
        rep = h // g
        bv = np.repeat(bm.astype(np.float64) * self.b_scale.astype(np.float64)[:, None], rep, axis=1)  # [B, H, N]
        cv = np.repeat(cm.astype(np.float64) * self.c_scale.astype(np.float64)[:, None], rep, axis=1)
        decay = np.exp(delta * self.a.astype(np.float64))
        state *= decay[:, :, None, None]
        state += (delta[:, :, None] * xv)[..., None] * bv[:, :, None, :]
        y = np.einsum("bhpn,bhn->bhp", state, cv)
        if self.d is not None:
            y = y + self.d.astype(np.float64)[:, None] * xv
        return y

    def reference(self, with_state: bool) -> tuple[np.ndarray, np.ndarray]:
        length = self.x.shape[1]
        state = self.h0.astype(np.float64) if with_state else np.zeros(self.h0.shape)
        y = np.zeros(self.x.shape)
        for t in range(length):
            y[:, t] = self.step(state, self.x[:, t], self.dt[:, t], self.bm[:, t], self.cm[:, t])
        return y, state

    def run(self, device: str, with_state: bool, chunk: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
        def t(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
            return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(device)

        return ssd_ops.ssd_chunk_scan_int8(
            t(self.x),
            t(self.x_scale),
            t(self.dt),
            self.dt_scale,
            t(self.dt_bias),
            t(self.a),
            t(self.bm),
            t(self.b_scale),
            t(self.cm),
            t(self.c_scale),
            t(self.d),
            chunk_size=chunk,
            initial_state=t(self.h0) if with_state else None,
            dt_limit=self.dt_limit,
        )


def _close(what: str, got: torch.Tensor, want: np.ndarray, rtol: float, stol: float, heads: Optional[int]) -> None:
    """|got - want| <= rtol |want| + stol rms(want) (rms per head when `heads` is the head axis of `want`)."""
    g = got.detach().to("cpu", torch.float64).numpy()
    assert g.shape == want.shape, f"{what}: shape {g.shape} != {want.shape}"
    assert np.all(np.isfinite(g)), f"{what}: non-finite output"
    if heads is None:
        rms = np.sqrt(np.mean(want**2))
    else:
        axes = tuple(i for i in range(want.ndim) if i != heads)
        rms = np.expand_dims(np.sqrt(np.mean(want**2, axis=axes)), axes)
    assert np.max(np.abs(want)) > 0, f"{what}: all-zero reference (degenerate test data)"
    tol = rtol * np.abs(want) + stol * rms
    err = np.abs(g - want)
    bad = err > tol
    assert not bad.any(), (
        f"{what}: {int(bad.sum())} of {bad.size} outside tolerance; worst |err| {err.max():.3e} at "
        f"{np.unravel_index(np.argmax(err - tol), err.shape)}"
    )


# ---------------------------------------------------------------------------------------------------------------
# torch path (CPU)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("b", "length", "h", "p", "g", "n", "chunk", "with_state"),
    [
        (1, 1, 2, 4, 1, 8, 16, False),
        (2, 37, 4, 3, 2, 5, 16, True),  # several chunks and a tail, odd P and N
        (1, 70, 3, 5, 3, 7, 32, True),  # G == H
        (2, 33, 6, 8, 1, 16, 256, False),  # one partial chunk
    ],
)
def test_chunk_scan_torch_matches_recurrence(
    b: int, length: int, h: int, p: int, g: int, n: int, chunk: int, with_state: bool
) -> None:
    c = Case(b, length, h, p, g, n, seed=length * 31 + h)
    want_y, want_h = c.reference(with_state)
    before = ssd_ops.stats["emulated"]
    y, hf = c.run("cpu", with_state, chunk)
    assert ssd_ops.stats["emulated"] == before + 1
    assert y.dtype == torch.float16 and hf.dtype == torch.float32
    _close("y", y, want_y, 1e-3, 2e-4, None)
    _close("final_state", hf, want_h, 1e-4, 1e-4, None)


def test_chunk_scan_torch_optional_parameters_and_dt_limit() -> None:
    c = Case(2, 20, 4, 4, 2, 6, seed=5)
    c.d = None
    c.dt_bias = None
    c.dt_limit = (0.05, 0.3)
    want_y, want_h = c.reference(True)
    y, hf = c.run("cpu", True, 8)
    _close("y", y, want_y, 1e-3, 2e-4, None)
    _close("final_state", hf, want_h, 1e-4, 1e-4, None)


def test_chunk_size_does_not_change_the_result() -> None:
    c = Case(1, 30, 2, 4, 1, 8, seed=6)
    y1, h1 = c.run("cpu", True, 7)
    y2, h2 = c.run("cpu", True, 64)
    torch.testing.assert_close(y1.float(), y2.float(), rtol=1e-3, atol=1e-3)
    torch.testing.assert_close(h1, h2, rtol=1e-5, atol=1e-5)


def test_decode_steps_reproduce_the_scan() -> None:
    c = Case(2, 9, 4, 3, 2, 5, seed=7)
    y_scan, h_scan = c.run("cpu", True, 4)
    state = torch.from_numpy(c.h0.copy())
    for t in range(9):
        y = ssd_ops.ssd_state_update_int8(
            state,
            torch.from_numpy(c.x[:, t].copy()),
            torch.from_numpy(c.x_scale),
            torch.from_numpy(c.dt[:, t].copy()),
            c.dt_scale,
            torch.from_numpy(c.dt_bias) if c.dt_bias is not None else None,
            torch.from_numpy(c.a),
            torch.from_numpy(c.bm[:, t].copy()),
            torch.from_numpy(c.b_scale),
            torch.from_numpy(c.cm[:, t].copy()),
            torch.from_numpy(c.c_scale),
            torch.from_numpy(c.d) if c.d is not None else None,
        )
        torch.testing.assert_close(y.float(), y_scan[:, t].float(), rtol=2e-3, atol=2e-3)
    torch.testing.assert_close(state, h_scan, rtol=1e-4, atol=1e-4)


def test_state_update_torch_matches_recurrence() -> None:
    c = Case(3, None, 6, 5, 3, 9, seed=8)
    state64 = c.h0.astype(np.float64)
    want_y = c.step(state64, c.x, c.dt, c.bm, c.cm)
    state = torch.from_numpy(c.h0.copy())
    y = ssd_ops.ssd_state_update_int8(
        state,
        torch.from_numpy(c.x),
        torch.from_numpy(c.x_scale),
        torch.from_numpy(c.dt),
        c.dt_scale,
        torch.from_numpy(c.dt_bias) if c.dt_bias is not None else None,
        torch.from_numpy(c.a),
        torch.from_numpy(c.bm),
        torch.from_numpy(c.b_scale),
        torch.from_numpy(c.cm),
        torch.from_numpy(c.c_scale),
        torch.from_numpy(c.d) if c.d is not None else None,
    )
    _close("y", y, want_y, 1e-3, 2e-4, None)
    _close("state", state, state64, 1e-5, 1e-6, None)


def test_bad_arguments_raise_value_error() -> None:
    c = Case(1, 4, 4, 2, 2, 3, seed=9)
    x, dt, bm, cm = (torch.from_numpy(v) for v in (c.x, c.dt, c.bm, c.cm))
    xs, a, bs, cs = (torch.from_numpy(v) for v in (c.x_scale, c.a, c.b_scale, c.c_scale))
    scan = ssd_ops.ssd_chunk_scan_int8
    with pytest.raises(ValueError, match="int8"):
        scan(x.float(), xs, dt, 0.1, None, a, bm, bs, cm, cs, None)
    with pytest.raises(ValueError, match="H % G"):
        scan(x[:, :, :3], xs[:6], dt[:, :, :3], 0.1, None, a[:3], bm, bs, cm, cs, None)
    with pytest.raises(ValueError, match="Cm"):
        scan(x, xs, dt, 0.1, None, a, bm, bs, cm[:, :, :, :2], cs, None)
    with pytest.raises(ValueError, match="x_scale"):
        scan(x, xs[:5], dt, 0.1, None, a, bm, bs, cm, cs, None)
    with pytest.raises(ValueError, match="dt_limit"):
        scan(x, xs, dt, 0.1, None, a, bm, bs, cm, cs, None, dt_limit=(1.0, 0.5))
    with pytest.raises(ValueError, match="initial_state"):
        scan(x, xs, dt, 0.1, None, a, bm, bs, cm, cs, None, initial_state=torch.zeros(1, 4, 2, 4))
    with pytest.raises(ValueError, match="state"):
        ssd_ops.ssd_state_update_int8(torch.zeros(1, 4, 2, 3, dtype=torch.float64), x[:, 0], xs, dt[:, 0], 0.1,
                                      None, a, bm[:, 0], bs, cm[:, 0], cs, None)  # fmt: skip


def test_token_stride_detection() -> None:
    """What the CUDA path passes in place (token stride) and what it copies."""
    base = torch.zeros(2, 5, 40, dtype=torch.int8)
    x = base[..., 4:28].view(2, 5, 4, 6)  # a slice of a wider row: in place, ld = 40
    t, ld = ssd_ops._tokens(x, 2)
    assert t.data_ptr() == x.data_ptr() and ld == 40
    t, ld = ssd_ops._tokens(base[..., :3], 2)  # [B, L, H] slice (dt): ld = 40
    assert t.data_ptr() == base.data_ptr() and ld == 40
    t, ld = ssd_ops._tokens(base[:1, :1, :24].view(1, 1, 4, 6), 2)  # one token: any stride works
    assert ld == 24
    t, ld = ssd_ops._tokens(base[:, ::2, :24].reshape(2, 3, 4, 6), 2)  # batch stride != L * token stride: copy
    assert t.is_contiguous() and ld == 24
    xt = torch.zeros(2, 5, 6, 4, dtype=torch.int8).transpose(2, 3)  # [H, P] block not contiguous: copy
    t, ld = ssd_ops._tokens(xt, 2)
    assert t.is_contiguous() and ld == 24
    t, ld = ssd_ops._tokens(base[:, 0, :12].view(2, 2, 6), 1)  # decode x [B, H, P]: ld = 200
    assert t.data_ptr() == base.data_ptr() and ld == 200


# ---------------------------------------------------------------------------------------------------------------
# kernels (GPU)
# ---------------------------------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize(
    ("b", "length", "h", "p", "g", "n", "with_state"),
    [
        (1, 1, 2, 64, 1, 128, False),
        (2, 255, 3, 37, 1, 128, True),
        (1, 257, 4, 64, 2, 64, False),
        (1, 600, 6, 16, 3, 24, True),
        (1, 130, 2, 33, 2, 200, True),
        (2, 65, 8, 64, 8, 128, True),
    ],
)
def test_chunk_scan_kernel_matches_recurrence(
    cuda_device: str, b: int, length: int, h: int, p: int, g: int, n: int, with_state: bool
) -> None:
    c = Case(b, length, h, p, g, n, seed=1000 + length + h)
    want_y, want_h = c.reference(with_state)
    before = ssd_ops.stats["kernel"]
    y, hf = c.run(cuda_device, with_state)
    torch.cuda.synchronize()
    assert ssd_ops.stats["kernel"] == before + 1, "the CUDA path did not launch the kernel"
    _close("y", y, want_y, 4e-3, 4e-3, heads=2)
    _close("final_state", hf, want_h, 4e-3, 4e-3, heads=1)


@pytest.mark.gpu
def test_chunk_scan_kernel_takes_strided_slices(cuda_device: str) -> None:
    """x, B, C as slices of one conv1d output [B, L, H*P + 2*G*N] and dt as a slice of a wider tensor: the kernel
    reads them in place (token strides) and matches the contiguous run."""
    c = Case(2, 100, 4, 32, 2, 64, seed=11)
    want_y, want_h = c.reference(True)
    b, length = 2, 100
    hp, gn = 4 * 32, 2 * 64
    xbc = torch.zeros(b, length, hp + 2 * gn + 16, dtype=torch.int8)
    xbc[..., :hp] = torch.from_numpy(c.x).reshape(b, length, hp)
    xbc[..., hp : hp + gn] = torch.from_numpy(c.bm).reshape(b, length, gn)
    xbc[..., hp + gn : hp + 2 * gn] = torch.from_numpy(c.cm).reshape(b, length, gn)
    zdt = torch.zeros(b, length, 12, dtype=torch.int8)
    zdt[..., 8:12] = torch.from_numpy(c.dt)
    xbc, zdt = xbc.to(cuda_device), zdt.to(cuda_device)

    def dv(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
        return None if a is None else torch.from_numpy(a).to(cuda_device)

    y, hf = ssd_ops.ssd_chunk_scan_int8(
        xbc[..., :hp].view(b, length, 4, 32),
        dv(c.x_scale),
        zdt[..., 8:12],
        c.dt_scale,
        dv(c.dt_bias),
        dv(c.a),
        xbc[..., hp : hp + gn].view(b, length, 2, 64),
        dv(c.b_scale),
        xbc[..., hp + gn : hp + 2 * gn].view(b, length, 2, 64),
        dv(c.c_scale),
        dv(c.d),
        initial_state=dv(c.h0),
    )
    _close("y", y, want_y, 4e-3, 4e-3, heads=2)
    _close("final_state", hf, want_h, 4e-3, 4e-3, heads=1)


@pytest.mark.gpu
@pytest.mark.parametrize(("b", "h", "p", "g", "n"), [(1, 80, 64, 1, 128), (3, 6, 37, 3, 16), (2, 4, 33, 2, 130)])
def test_state_update_kernel_matches_recurrence(cuda_device: str, b: int, h: int, p: int, g: int, n: int) -> None:
    c = Case(b, None, h, p, g, n, seed=2000 + h + n)
    state64 = c.h0.astype(np.float64)
    want_y = c.step(state64, c.x, c.dt, c.bm, c.cm)

    def dv(a: Optional[np.ndarray]) -> Optional[torch.Tensor]:
        return None if a is None else torch.from_numpy(np.ascontiguousarray(a)).to(cuda_device)

    state = dv(c.h0)
    assert state is not None
    before = ssd_ops.stats["kernel"]
    y = ssd_ops.ssd_state_update_int8(
        state, dv(c.x), dv(c.x_scale), dv(c.dt), c.dt_scale, dv(c.dt_bias), dv(c.a), dv(c.bm), dv(c.b_scale),
        dv(c.cm), dv(c.c_scale), dv(c.d),
    )  # fmt: skip
    torch.cuda.synchronize()
    assert ssd_ops.stats["kernel"] == before + 1
    _close("y", y, want_y, 1e-3, 2e-4, None)
    _close("state", state, state64, 1e-5, 1e-6, None)
