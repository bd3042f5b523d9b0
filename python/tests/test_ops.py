"""The torch.library op, its fake implementation, torch.compile, activation fake quantization."""

from __future__ import annotations

import gc

import pytest
import torch
from torch import nn

import lowbit
from lowbit import ops


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(128, 64), nn.GELU(), nn.Linear(64, 32, bias=False))


def test_emulated_op_is_dequantize_then_matmul() -> None:
    m = _model()
    lin = m[0]
    w = lin.weight.detach().clone()
    lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=64), progress=False)
    q = m[0]
    assert isinstance(q, lowbit.LowbitLinear)
    x = torch.randn(5, 7, 128)
    before = ops.stats["emulated"]
    y = q(x)
    assert ops.stats["emulated"] == before + 1
    ref = x @ q.packed.dequantize().T + q.bias
    torch.testing.assert_close(y, ref)
    assert (q.packed.dequantize() - w).abs().max() < w.abs().max() / 7 + 1e-6


def test_fake_impl_and_torch_compile() -> None:
    m = _model()
    lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=32), progress=False)
    x = torch.randn(3, 128)
    eager = m(x)
    compiled = torch.compile(m, backend="aot_eager", fullgraph=True)
    torch.testing.assert_close(compiled(x), eager)
    with torch._subclasses.fake_tensor.FakeTensorMode():
        fx = torch.empty(9, 128)
        out = torch.ops.lowbit.weight_only_linear(fx, m[0].packed.handle, 64)
        assert out.shape == (9, 64)


def test_opcheck() -> None:
    m = _model()
    lowbit.quantize_(m, lowbit.WeightOnly(bits=8, group_size=None), progress=False)
    torch.library.opcheck(torch.ops.lowbit.weight_only_linear, (torch.randn(4, 128), m[0].packed.handle, 64))


def test_op_checks_shapes() -> None:
    m = _model()
    lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=64), progress=False)
    with pytest.raises(ValueError, match="expected"):
        torch.ops.lowbit.weight_only_linear(torch.randn(4, 100), m[0].packed.handle, 64)
    with pytest.raises(RuntimeError, match="handle"):
        torch.ops.lowbit.weight_only_linear(torch.randn(4, 128), 10**9, 64)


def test_registries_share_one_handle_counter_and_name_the_missing_kind() -> None:
    """Weight-only and int8 weights get distinct handles; a freed or foreign handle raises naming the registry."""

    class Holder:
        pass

    a, b = Holder(), Holder()
    ha, hb = ops.register_int8(a), ops.register_int8(b)
    assert ha != hb and ops._lookup_int8(ha) is a and ops._lookup_int8(hb) is b
    del a
    gc.collect()
    with pytest.raises(RuntimeError, match=f"no int8 weight is registered under handle {ha} "):
        ops._lookup_int8(ha)
    with pytest.raises(RuntimeError, match=f"no packed weight is registered under handle {hb} "):
        ops.lookup(hb)


def test_fake_quantize_activations() -> None:
    x = torch.tensor([[0.0, 0.0], [1.0, -0.5], [0.3, 2.54]])
    y = ops.fake_quantize_activations(x, 8)
    assert torch.equal(y[0], torch.zeros(2))
    s = 2.54 / 127
    torch.testing.assert_close(y[2], torch.round(x[2] / s) * s)
    z = ops.fake_quantize_activations(x, 8, scale=0.01)
    assert z.max() == pytest.approx(1.27)
    with pytest.raises(ValueError):
        ops.fake_quantize_activations(x, 8, scale=0.0)
