"""lowbit._C Quamba / Quamba2 calibrator: observers, sort-and-cluster, Hadamard fusion (CPU, through the wheel)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lowbit import _C


def _f32(a: np.ndarray) -> bytes:
    return np.ascontiguousarray(a, dtype="<f4").tobytes()


def test_abs_quantile_matches_torch_quantile() -> None:
    x = np.random.default_rng(0).standard_normal(4099).astype(np.float32)
    for alpha in (0.5, 0.9, 0.9995, 1.0):
        want = torch.quantile(torch.from_numpy(np.abs(x)).double(), alpha).item()
        assert _C.abs_quantile(_f32(x), x.size, alpha) == pytest.approx(want, rel=1e-6)
    with pytest.raises(ValueError, match="alpha"):
        _C.abs_quantile(_f32(x), x.size, 0.0)
    with pytest.raises(ValueError, match="float32"):
        _C.abs_quantile(_f32(x), x.size + 1, 0.5)


def test_percentile_observer_is_quambas_ema() -> None:
    rng = np.random.default_rng(1)
    obs = _C.PercentileObserver()  # alpha 0.9995, momentum 0.01
    assert (obs.alpha, obs.momentum, obs.samples) == (0.9995, 0.01, 0)
    with pytest.raises(ValueError, match="no samples"):
        obs.value()
    m = None
    for i in range(5):
        x = (rng.standard_normal((3, 700)) * (1 + i)).astype(np.float32)
        cur = torch.quantile(torch.from_numpy(np.abs(x)).double().flatten(), 0.9995).item()
        m = cur if m is None else m + 0.01 * (cur - m)
        assert obs.update(_f32(x), x.size) == pytest.approx(cur, rel=1e-6)
    assert obs.samples == 5
    assert obs.value() == pytest.approx(m, rel=1e-6)
    assert obs.scale() == pytest.approx(m / 127, rel=1e-6)
    bad = np.array([1.0, np.nan], dtype=np.float32)
    with pytest.raises(ValueError, match="non-finite"):
        obs.update(_f32(bad), 2)
    assert obs.samples == 5
    with pytest.raises(ValueError, match="momentum"):
        _C.PercentileObserver(0.99, 0.0)


def test_per_state_group_observer() -> None:
    rng = np.random.default_rng(2)
    b, seqlen, g, n = 2, 9, 3, 16
    obs = _C.GroupAbsMaxObserver.per_state_group(g, n)
    xs = [rng.standard_normal((b, seqlen, g, n)).astype(np.float32) for _ in range(2)]
    for x in xs:
        obs.update(_f32(x), b * seqlen)
    want = np.abs(np.stack(xs)).max(axis=(0, 1, 2, 4))
    assert obs.shape == [g]
    np.testing.assert_array_equal(np.array(obs.absmax(), dtype=np.float32), want)
    np.testing.assert_allclose(obs.scales(), np.maximum(want / 127, 1e-6), rtol=1e-6)
    with pytest.raises(ValueError):
        obs.update(_f32(xs[0]), 5)
    t = _C.GroupAbsMaxObserver([2], [0, -1, 1])
    t.update(_f32(np.array([[1.0, 9.0, -2.0], [-3.0, 9.0, 0.5]])), 2)
    assert t.absmax() == [3.0, 2.0]
    with pytest.raises(ValueError):
        _C.GroupAbsMaxObserver([2], [0, -2])


def _planted_stat(rng: np.random.Generator, g: int, nh: int, p: int) -> tuple[np.ndarray, np.ndarray]:
    """Heads drawn from 4 sorted profiles, random scale, shuffled channels, 1% noise."""
    t = np.linspace(0, 1, p)
    profiles = [1 + 0.05 * t, 0.1 + t, 0.01 + t**3, np.where(t > 0.98, 30.0, 0.5 + 0.1 * t)]
    kinds = np.stack([rng.permutation(np.arange(nh) % 4) for _ in range(g)])
    stat = np.empty((g, nh, p), dtype=np.float32)
    for gi in range(g):
        for h in range(nh):
            v = profiles[kinds[gi, h]] * rng.uniform(0.2, 5) * (1 + rng.uniform(-0.01, 0.01, p))
            stat[gi, h] = rng.permutation(v)
    return stat, kinds.reshape(-1)


def test_sort_and_cluster_recovers_planted_heads_and_is_a_valid_reorder() -> None:
    rng = np.random.default_rng(3)
    g, nh, p = 2, 16, 64
    stat, kinds = _planted_stat(rng, g, nh, p)
    c = _C.quamba_sort_and_cluster(_f32(stat), g, nh, p)
    assert c == _C.quamba_sort_and_cluster(_f32(stat), g, nh, p)  # deterministic
    head_perm, channel_perm = np.array(c["head_perm"]), np.array(c["channel_perm"])
    assert sorted(head_perm) == list(range(g * nh))
    assert sorted(channel_perm) == list(range(g * nh * p))
    assert (head_perm // nh == np.arange(g * nh) // nh).all()  # heads stay in their SSD group
    assert (channel_perm.reshape(g * nh, p) // p == head_perm[:, None]).all()  # channels stay in their head
    flat = stat.reshape(-1)[channel_perm].reshape(g * nh, p)
    assert (np.diff(flat, axis=1) >= 0).all()  # sorted ascending inside every head
    assert c["head_group_range"] == [[4, 8, 12, 16]] * g
    for gi in range(g):
        clusters = head_perm[gi * nh : (gi + 1) * nh].reshape(4, 4)
        assert sorted(set(kinds[cl].tolist()) == {kinds[cl[0]]} for cl in clusters) == [True] * 4
        for dims in c["dim_group_range"][gi]:
            assert len(dims) == 4 and dims[-1] == p and all(a < b for a, b in zip(dims, dims[1:]))
    assert {s for row in c["segmentation"] for s in row} <= {"kmeans", "dp"}
    with pytest.raises(ValueError, match="non-finite"):
        bad = stat.copy()
        bad[0, 0, 0] = np.inf
        _C.quamba_sort_and_cluster(_f32(bad), g, nh, p)
    with pytest.raises(ValueError):
        _C.quamba_sort_and_cluster(_f32(stat), g, nh, p, 0, 4)


def test_cluster_observers_agree_across_layouts() -> None:
    rng = np.random.default_rng(4)
    g, nh, p, n, b = 2, 8, 16, 4, 3
    stat = rng.uniform(0.01, 3, (g, nh, p)).astype(np.float32)
    c = _C.quamba_sort_and_cluster(_f32(stat), g, nh, p)
    perm = np.array(c["channel_perm"])
    groups_orig = np.array(_C.quamba_channel_groups(c, "original"))
    groups_new = np.array(_C.quamba_channel_groups(c, "reordered"))
    np.testing.assert_array_equal(groups_orig[perm], groups_new)

    state = rng.standard_normal((b, g * nh * p, n)).astype(np.float32)
    reordered = state[:, perm, :]
    scales = []
    for layout, data in (("original", state), ("reordered", reordered)):
        obs = _C.GroupAbsMaxObserver.ssm_state(c, n, layout)
        assert obs.shape == [g, 4, 4, n]
        obs.update(_f32(data), b)
        scales.append(np.array(obs.absmax(), dtype=np.float32))
    np.testing.assert_array_equal(scales[0], scales[1])
    # Reference: absmax over batch and the channels of each cluster, per state index.
    want = np.zeros((g * 16, n), dtype=np.float32)
    for ch in range(g * nh * p):
        want[groups_orig[ch]] = np.maximum(want[groups_orig[ch]], np.abs(state[:, ch, :]).max(axis=0))
    np.testing.assert_array_equal(scales[0], want.reshape(-1))

    x = rng.standard_normal((b * 5, g * nh * p)).astype(np.float32)
    xo = _C.GroupAbsMaxObserver.x_clusters(c)
    xo.update(_f32(x), b * 5)
    want_x = np.array([np.abs(x[:, groups_orig == k]).max() for k in range(g * 16)], dtype=np.float32)
    np.testing.assert_array_equal(np.array(xo.absmax(), dtype=np.float32), want_x)
    with pytest.raises(ValueError, match="layout"):
        _C.quamba_channel_groups(c, "sideways")
    broken = dict(c, channel_perm=list(range(g * nh * p))[::-1])
    with pytest.raises(ValueError):
        _C.GroupAbsMaxObserver.x_clusters(broken)


def test_channel_mean_abs_max() -> None:
    o = _C.ChannelMeanAbsMax(3)
    a = np.array([[1, -2, 0], [3, 0, 0]], dtype=np.float32)
    b = np.array([[-1, 4, 0.5]], dtype=np.float32)
    o.update(_f32(a), 2)
    o.update(_f32(b), 1)
    np.testing.assert_array_equal(np.frombuffer(o.stat(), dtype="<f4"), [2, 4, 0.5])
    assert (o.samples, o.channels) == (2, 3)


def test_fuse_hadamard_is_compute_invariant() -> None:
    rng = np.random.default_rng(5)
    rows, cols, block = 24, 128, 64
    w = rng.standard_normal((rows, cols)).astype(np.float32)
    eye = np.eye(cols, dtype=np.float32)
    h = np.frombuffer(_C.fuse_hadamard(_f32(eye), cols, cols, "input", block), dtype="<f4").reshape(cols, cols)
    np.testing.assert_allclose(h, h.T, atol=1e-7)
    np.testing.assert_allclose(h @ h, np.eye(cols), atol=1e-5)
    assert np.count_nonzero(h[:block, block:]) == 0  # block diagonal
    np.testing.assert_allclose(np.abs(h[:block, :block]), 1 / np.sqrt(block), rtol=1e-6)
    wh = np.frombuffer(_C.fuse_hadamard(_f32(w), rows, cols, "input", block), dtype="<f4").reshape(rows, cols)
    x = rng.standard_normal(cols)
    np.testing.assert_allclose(wh.astype(np.float64) @ (h @ x), w.astype(np.float64) @ x, rtol=1e-4, atol=1e-4)
    hw = np.frombuffer(_C.fuse_hadamard(_f32(w), rows, cols, "output", 8), dtype="<f4").reshape(rows, cols)
    h8 = np.frombuffer(_C.fuse_hadamard(_f32(np.eye(rows)), rows, rows, "input", 8), dtype="<f4").reshape(rows, rows)
    np.testing.assert_allclose(hw, h8 @ w, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="power of two"):
        _C.fuse_hadamard(_f32(w), rows, cols, "output", 16)
    with pytest.raises(ValueError, match="side"):
        _C.fuse_hadamard(_f32(w), rows, cols, "both", 8)
    assert _C.hadamard_block(1536, 1 << 16) == 512
    assert _C.hadamard_block(768, 64) == 64
