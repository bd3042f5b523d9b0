"""lowbit._C: marshalling, packed fields, error mapping."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import lowbit
from lowbit import _C


def _w(n: int, k: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, k)).astype(np.float32)


def test_quantize_int_matches_the_format_spec() -> None:
    w = _w(16, 256)
    q = _C.quantize(w.tobytes(), 16, 256, "w4-int-g128")
    assert q.shape == (16, 256)
    assert q.scheme == "w4-int-g128"
    fields = {name: (dtype, shape) for name, dtype, shape, _ in q.tensors()}
    assert fields["codes"] == ("uint32", [16, 32])
    assert fields["scales"] == ("float16", [16, 2])
    # docs/formats.md: symmetric scale = f16(absmax / 7), code = clamp(rne(w / s), -7, 7) + 8, w = (q - 8) * s
    g = w.reshape(16, 2, 128)
    s = (np.abs(g).max(-1, keepdims=True) / 7).astype(np.float16).astype(np.float32)
    ref = (np.clip(np.round(g / s), -7, 7) * s).reshape(16, 256)
    deq = np.frombuffer(q.dequantize(), dtype="<f4").reshape(16, 256)
    np.testing.assert_array_equal(deq, ref)


@pytest.mark.parametrize(
    "scheme", ["w8-int-pc", "w3-mixed-g64", "w4-mixed-g128", "w4-nf4-g32", "w2-bipolar-g128", "w4-int-asym-g32"]
)
def test_every_scheme_round_trips_through_packed_weight(scheme: str) -> None:
    w = _w(8, 256, 1)
    q = _C.quantize(w.tobytes(), 8, 256, scheme)
    p = lowbit.PackedWeight(q)
    d = p.dequantize()
    assert d.shape == (8, 256) and d.dtype == torch.float32
    rel = (d - torch.from_numpy(w)).norm() / torch.from_numpy(w).norm()
    assert rel < 0.8, rel
    assert all(t.numel() > 0 for t in p.tensors().values())
    assert q.storage_bytes < w.nbytes


def test_errors_map_to_python_exceptions() -> None:
    w = _w(4, 100)
    with pytest.raises(ValueError, match="divisible"):
        _C.quantize(w.tobytes(), 4, 100, "w4-int-g32")
    with pytest.raises(ValueError, match="bytes"):
        _C.quantize(w.tobytes()[:-4], 4, 100, "w4-int-pc")
    with pytest.raises(ValueError, match="scheme"):
        _C.quantize(w.tobytes(), 4, 100, "w9-int-g32")
    bad = w.copy()
    bad[1, 3] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        _C.quantize(bad.tobytes(), 4, 100, "w4-int-pc")
    with pytest.raises(NotImplementedError):
        _C.quantize(_w(4, 128).tobytes(), 4, 128, "w4-mixed-g128", perm=list(range(128)))
    with pytest.raises(ValueError, match="permutation"):
        _C.quantize(_w(4, 128).tobytes(), 4, 128, "w4-int-g32", perm=[0] * 128)
    with pytest.raises(OSError):
        _C.load_checkpoint("/nonexistent/dir/x.lowbit.safetensors")


def test_calibrator_rejects_non_finite_and_empty_data() -> None:
    acc = _C.HessianAccumulator(64)
    with pytest.raises(ValueError):
        acc.finish()
    x = np.ones((4, 64), dtype=np.float32)
    x[2, 5] = np.inf
    with pytest.raises(ValueError, match="non-finite"):
        acc.update(x.tobytes(), 4)


def test_act_order_rtn_stores_g_idx() -> None:
    w = _w(8, 128, 2)
    perm = list(np.random.default_rng(3).permutation(128))
    q = _C.quantize(w.tobytes(), 8, 128, "w4-int-g32", perm=[int(i) for i in perm])
    assert q.act_order
    assert "g_idx" in {name for name, *_ in q.tensors()}


def test_gptq_beats_rtn_on_correlated_activations() -> None:
    rng = np.random.default_rng(4)
    n, k, rows = 64, 256, 2048
    mix = rng.standard_normal((k, k)).astype(np.float32) / np.sqrt(k)
    x = (rng.standard_normal((rows, k)).astype(np.float32) @ mix) * (1 + 4 * (rng.random(k) < 0.05)).astype(np.float32)
    w = _w(n, k, 5)
    acc = _C.HessianAccumulator(k)
    acc.update(x.astype(np.float32).tobytes(), rows)
    h = acc.finish()
    rtn = _C.quantize(w.tobytes(), n, k, "w3-int-g128")
    gptq, stats = _C.gptq_quantize(w.tobytes(), n, k, h, "w3-int-g128")
    e_rtn = h.output_error(w.tobytes(), rtn.dequantize(), n)
    e_gptq = h.output_error(w.tobytes(), gptq.dequantize(), n)
    assert e_gptq < 0.8 * e_rtn, (e_gptq, e_rtn)
    assert stats["attempts"] >= 1


def test_static_activation_scale() -> None:
    obs = _C.ActivationObserver()
    x = np.linspace(-3, 3, 64 * 32, dtype=np.float32).reshape(64, 32)
    obs.update(x.tobytes(), 64, 32)
    assert obs.static_scale("minmax") == pytest.approx(3 / 127, rel=1e-5)
    assert 0 < obs.static_scale("mse") <= 3 / 127 + 1e-6
    with pytest.raises(ValueError):
        obs.static_scale("max")


def test_build_info_and_gpu_probe_never_raise() -> None:
    info = lowbit.build_info()
    assert info["calibrator"] is True
    assert "13.0" in str(info["nvcc"])
    assert isinstance(lowbit.gpu_available(), bool)
