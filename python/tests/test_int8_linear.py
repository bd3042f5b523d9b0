"""`lowbit.Int8Linear` and the int8 ops (`torch.ops.lowbit.int8_linear`, `lowbit.ops.act_quant`).

CPU: the module against an exact integer reference computed here in float64 (integer products and sums are exact
in float64 for these sizes), and the epilogue as the kernel computes it (each step one float32 rounding);
state_dict / lowbit.save round trips bit for bit; bad shapes and dtypes raise ValueError naming the problem.
GPU (skipped without one; LOWBIT_REQUIRE_GPU=1 makes that a failure): lowbit's int8 GEMM and act_quant kernels
against the CPU path: int32 accumulators and every epilogue output bit for bit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import pytest
import torch
from torch import nn

import lowbit
from lowbit import ops


def _weight(n: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, k, generator=g) * (1 + torch.rand(n, 1, generator=g))


def _codes(m: int, k: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(-127, 128, (m, k), generator=g, dtype=torch.int8)


def _reference(
    q: torch.Tensor,
    layer: lowbit.Int8Linear,
    x_scale: torch.Tensor,
    out: str,
    out_scale: Optional[torch.Tensor] = None,
) -> torch.Tensor:
    """Independent reference: the int8 operand rebuilt from the stored codes (W4: unpacked here, times the group
    scales), an exact float64 matmul, the epilogue in float32 one operation at a time."""
    if layer.w_bits == 8:
        w = layer.weight_q.to(torch.float64)
    else:
        p = layer.weight_q.to(torch.int64)
        lo, hi = (p & 15) - 8, (p >> 4) - 8
        w = torch.stack((lo, hi), dim=-1).reshape(layer.out_features, -1).to(torch.float64)
    assert not w[:, layer.in_features :].any(), "padding columns must hold zero codes"
    w = w[:, : layer.in_features]
    if layer.group_scales is not None:
        w = w * layer.group_scales.to(torch.float64).repeat_interleave(layer.group_size or 1, dim=1)
    acc = q.to(torch.float64) @ w.t()
    assert acc.abs().max() < 2**31
    if out == "int32":
        return acc.to(torch.int32)
    v = acc.to(torch.float32) * x_scale.to(torch.float32)[:, None]
    v = v * layer.weight_scale[None, :]
    if layer.bias is not None:
        v = v + layer.bias.float()[None, :]
    if out == "int8":
        assert out_scale is not None
        return torch.clamp(torch.round(v / out_scale[None, :]), -128, 127).to(torch.int8)
    return v.to({"f16": torch.float16, "bf16": torch.bfloat16, "f32": torch.float32}[out])


@pytest.mark.parametrize(
    ("w_bits", "group", "k"), [(8, None, 256), (4, 128, 256), (4, None, 256), (4, 32, 256), (8, None, 40), (4, None, 8)]
)
def test_cpu_path_matches_exact_integer_reference(w_bits: int, group: Optional[int], k: int) -> None:
    n, m = 37, 5
    w, b = _weight(n, k, 1), torch.randn(n)
    layer = lowbit.Int8Linear.from_float(w, b, w_bits=w_bits, group_size=group)
    assert layer.w_bits == w_bits and layer.group_size == (group if w_bits == 4 else None)
    q = _codes(m, k, 2)
    xs = torch.rand(m) * 0.02 + 1e-3
    os = torch.rand(n) * 0.5 + 0.05
    for out in ("int32", "f32", "f16", "bf16", "int8"):
        got = layer.forward_int8(q, xs, out=out, out_scale=os if out == "int8" else None)
        want = _reference(q, layer, xs, out, os)
        assert got.dtype == want.dtype, out
        assert torch.equal(got, want), (out, (got.float() - want.float()).abs().max())
    # one float scale = that scale in every row; a per-tensor out scale = that scale in every column
    got = layer.forward_int8(q, 0.01, out="int8", out_scale=0.3)
    want = _reference(q, layer, torch.full((m,), 0.01), "int8", torch.full((n,), 0.3))
    assert torch.equal(got, want)
    # the int8 output really depends on the per-column scales (test data sanity)
    assert not torch.equal(layer.forward_int8(q, xs, "int8", os), layer.forward_int8(q, xs, "int8", os * 2))


def test_weight_quantizers_are_close_and_exact_in_form() -> None:
    w = _weight(64, 256, 3)
    w8 = lowbit.Int8Linear.from_float(w)
    assert w8.weight_q.dtype == torch.int8 and int(w8.weight_q.abs().max()) == 127
    torch.testing.assert_close(w8.weight_scale, w.abs().amax(dim=1) / 127)
    assert (w8.dequantize() - w).abs().max() <= w8.weight_scale.max() / 2 * 1.0001
    w4 = lowbit.Int8Linear.from_float(w, w_bits=4, group_size=128)
    assert w4.weight_q.shape == (64, 128) and w4.group_scales is not None and w4.group_scales.shape == (64, 2)
    assert 1 <= int(w4.group_scales.min()) and int(w4.group_scales.max()) <= 16
    codes = w4.codes()
    assert int(codes.min()) >= -8 and int(codes.max()) <= 7
    rel = (w4.dequantize() - w).norm() / w.norm()
    assert rel < 0.15, rel  # 4-bit RTN on Gaussian weights: about 0.12


def test_forward_quantizes_activations_per_token_and_static() -> None:
    torch.manual_seed(4)
    n, k = 48, 128
    w, b = _weight(n, k, 5), torch.randn(n)
    x = torch.randn(3, 7, k)
    layer = lowbit.Int8Linear.from_float(w, b)
    y = layer(x)
    assert y.shape == (3, 7, n) and y.dtype == torch.float32
    x2 = x.reshape(-1, k)
    s = x2.abs().amax(dim=1) / 127
    q = torch.clamp(torch.round(x2 / s[:, None]), -127, 127).to(torch.int8)
    assert torch.equal(y.reshape(-1, n), _reference(q, layer, s, "f32"))
    ref = nn.functional.linear(x, w, b)
    assert nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.999
    layer.act_scale = 0.02
    y = layer(x)
    q = torch.clamp(torch.round(x2 / torch.tensor(0.02)), -127, 127).to(torch.int8)
    assert torch.equal(y.reshape(-1, n), _reference(q, layer, torch.full((21,), 0.02), "f32"))


def test_act_quant_torch_path() -> None:
    torch.manual_seed(6)
    x = torch.randn(5, 64, dtype=torch.float16)
    res = torch.randn(5, 64, dtype=torch.float16)
    gamma = torch.rand(64, dtype=torch.float16) + 0.5
    res0 = res.clone()
    q, s = ops.act_quant(x, res, gamma, 1e-6, 16)
    assert s is not None and q.dtype == torch.int8 and q.shape == (5, 64)
    h = (x.float() + res0.float()).half()
    assert torch.equal(res, h)
    h = h.double()
    h = h / torch.sqrt(h.pow(2).mean(dim=1, keepdim=True) + 1e-6) * gamma.double()
    hd = torch.zeros(16, 16, dtype=torch.float64)
    hd[0, 0] = 1
    size = 1
    while size < 16:  # Sylvester construction, normalized at the end
        hd[:size, size : 2 * size] = hd[:size, :size]
        hd[size : 2 * size, :size] = hd[:size, :size]
        hd[size : 2 * size, size : 2 * size] = -hd[:size, :size]
        size *= 2
    h = (h.reshape(5, 4, 16) @ hd / 4).reshape(5, 64)
    want_s = h.abs().amax(dim=1) / 127
    torch.testing.assert_close(s.double(), want_s, rtol=1e-5, atol=0)
    want = torch.clamp(torch.round(h / want_s[:, None]), -127, 127)
    assert (q.double() - want).abs().max() <= 1
    assert (q.double() != want).float().mean() < 0.02
    q2, s2 = ops.act_quant(x, static_scale=0.05)
    assert s2 is None
    assert torch.equal(q2, torch.clamp(torch.round(x.float() / 0.05), -127, 127).to(torch.int8))


def test_state_dict_round_trip_is_bit_exact() -> None:
    torch.manual_seed(7)
    for w_bits, group in ((8, None), (4, 64)):
        a = lowbit.Int8Linear.from_float(_weight(40, 128, 8), torch.randn(40), w_bits=w_bits, group_size=group)
        a.act_scale = 0.03
        sd = a.state_dict()
        assert {"weight_q", "weight_scale", "input_scale", "bias"} <= set(sd)
        assert ("group_scales" in sd) == (w_bits == 4)
        b = lowbit.Int8Linear(128, 40, w_bits=w_bits, group_size=group, bias=True)
        x = torch.randn(6, 128)
        b(x)  # fills b's caches, which loading must drop
        b.load_state_dict(sd)
        assert b.act_scale == a.act_scale == float(torch.tensor(0.03))
        for key, t in sd.items():
            assert torch.equal(b.state_dict()[key], t), key
        assert torch.equal(a(x), b(x))
    with pytest.raises(RuntimeError, match="weight_q"):
        lowbit.Int8Linear(128, 40, bias=True).load_state_dict(
            lowbit.Int8Linear.from_float(_weight(40, 64, 1), torch.randn(40)).state_dict()
        )


def test_half_keeps_float32_scales() -> None:
    layer = lowbit.Int8Linear.from_float(_weight(16, 64, 9), torch.randn(16))
    scales = layer.weight_scale.clone()
    layer.half()
    assert layer.weight_scale.dtype == torch.float32 and torch.equal(layer.weight_scale, scales)
    assert layer.weight_q.dtype == torch.int8 and layer.bias is not None and layer.bias.dtype == torch.float16
    assert layer(torch.randn(2, 64, dtype=torch.float16)).dtype == torch.float16


def test_lowbit_linear_state_dict_holds_packed_weight() -> None:
    torch.manual_seed(10)
    src = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32))
    dst = nn.Sequential(nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, 32))
    cfg = lowbit.WeightOnly(bits=4, group_size=32)
    lowbit.quantize_(src, cfg, progress=False)
    lowbit.quantize_(dst, cfg, progress=False)
    sd = src.state_dict()
    assert {"0.qweight.codes", "0.qweight.scales", "2.qweight.codes", "0.bias"} <= set(sd)
    dst.load_state_dict(sd)
    x = torch.randn(4, 128)
    assert torch.equal(src(x), dst(x))
    for key, t in sd.items():
        assert torch.equal(dst.state_dict()[key], t), key
    bad = dict(sd)
    bad["0.qweight.codes"] = bad["0.qweight.codes"][:, :-1]
    with pytest.raises(RuntimeError, match="codes"):
        dst.load_state_dict(bad)


def test_quantize_w8a8_and_w4a8_make_int8_linear(tmp_path: Path) -> None:
    torch.manual_seed(11)
    base = nn.Sequential(nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 64))
    x = torch.randn(16, 128)
    with torch.no_grad():
        ref = base(x)
    for config in (
        lowbit.W8A8(method="rtn"),
        lowbit.W8A8(static_scales=True, method="rtn"),
        lowbit.W4A8(method="rtn", group_size=32),
        lowbit.W8A8(),
        lowbit.W4A8(group_size=32),
    ):
        m = nn.Sequential(nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 64))
        m.load_state_dict(base.state_dict())
        calib = [x] if (config.static_scales or config.method == "gptq") else None
        r = lowbit.quantize_(m, config, calib_data=calib, progress=False)
        assert all(isinstance(mod, lowbit.Int8Linear) for mod in (m[0], m[2])), config
        assert (m[0].act_scale is not None) == config.static_scales
        if calib is not None and config.method == "gptq":
            assert all(q.method.startswith("gptq") for q in r.quantized)
        with torch.no_grad():
            y = m(x)
        cos = nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0)
        assert cos > (0.999 if isinstance(config, lowbit.W8A8) else 0.99), (config, cos)
        path = tmp_path / "m.safetensors"
        lowbit.save(m, path)
        skel = lowbit.load(path, nn.Sequential(nn.Linear(128, 96), nn.ReLU(), nn.Linear(96, 64)))
        assert isinstance(skel[2], lowbit.Int8Linear) and skel[0].act_scale == m[0].act_scale
        with torch.no_grad():
            assert torch.equal(skel(x), y)


def test_w8a8_gptq_weight_is_exactly_the_int8_weight() -> None:
    """W8A8 through quantize_: the int8 codes and scales hold exactly the dequantized INT weight."""
    lin = nn.Linear(64, 32)
    packed = lowbit.PackedWeight(lowbit._C.quantize(lin.weight.detach().numpy().tobytes(), 32, 64, "w8-int-pc"))
    layer = lowbit.Int8Linear.from_qweight(packed.qweight)
    assert torch.equal(layer.dequantize(), packed.dequantize())


def test_grouped_w8a8_falls_back_to_emulation() -> None:
    m = nn.Sequential(nn.Linear(128, 32))
    with pytest.warns(UserWarning, match="emulated path"):
        lowbit.quantize_(m, lowbit.W8A8(group_size=64, method="rtn"), progress=False)
    assert isinstance(m[0], lowbit.LowbitLinear)


def test_bad_arguments_raise_value_error() -> None:
    layer = lowbit.Int8Linear.from_float(_weight(32, 64, 12))
    q = _codes(3, 64, 13)
    with pytest.raises(ValueError, match="int8 codes"):
        layer.forward_int8(q.float(), 0.1)
    with pytest.raises(ValueError, match=r"expected \[M, 64\]"):
        layer.forward_int8(_codes(3, 48, 1), 0.1)
    with pytest.raises(ValueError, match="x_scale must be float32"):
        layer.forward_int8(q, torch.ones(4))
    with pytest.raises(ValueError, match="out_scale must be float32"):
        layer.forward_int8(q, 0.1, out="int8", out_scale=torch.ones(31))
    with pytest.raises(ValueError, match="needs out_scale"):
        layer.forward_int8(q, 0.1, out="int8")
    with pytest.raises(ValueError, match="out="):
        layer.forward_int8(q, 0.1, out="f64")
    with pytest.raises(ValueError, match="x_scale must be finite"):
        layer.forward_int8(q, 0.0)
    with pytest.raises(ValueError, match="does not divide"):
        lowbit.Int8Linear.from_float(_weight(8, 96, 1), w_bits=4, group_size=64)
    with pytest.raises(ValueError, match="group_size"):
        lowbit.Int8Linear(64, 8, w_bits=4, group_size=48)
    with pytest.raises(ValueError, match="w_bits"):
        lowbit.Int8Linear(64, 8, w_bits=2)
    with pytest.raises(ValueError, match="features"):
        layer(torch.randn(2, 65))
    with pytest.raises(ValueError, match="hadamard"):
        ops.act_quant(torch.randn(2, 64), hadamard=12)
    with pytest.raises(ValueError, match="residual"):
        ops.act_quant(torch.randn(2, 64), residual=torch.randn(2, 32))
    with pytest.raises(ValueError, match="static_scale"):
        ops.act_quant(torch.randn(2, 64), static_scale=-1.0)


def test_torch_compile_traces_int8_linear() -> None:
    layer = lowbit.Int8Linear.from_float(_weight(32, 64, 14), torch.randn(32))
    x = torch.randn(5, 64)
    compiled = torch.compile(layer, backend="eager", fullgraph=True)
    assert torch.equal(compiled(x), layer(x))


# -------------------------------------------------------------------------------------------------------------------
# GPU: the kernels against the CPU path

pytest_gpu = pytest.mark.gpu


@pytest_gpu
@pytest.mark.parametrize(("w_bits", "group"), [(8, None), (4, 128), (4, None)])
@pytest.mark.parametrize(("m", "n", "k"), [(1, 37, 256), (7, 200, 384), (33, 129, 512), (130, 64, 1024), (3, 70, 40)])
def test_kernel_matches_cpu_bit_for_bit(
    cuda_device: str, w_bits: int, group: Optional[int], m: int, n: int, k: int
) -> None:
    if w_bits == 4 and group is not None and k % group:
        pytest.skip("group does not divide K")
    layer = lowbit.Int8Linear.from_float(_weight(n, k, m + n), torch.randn(n), w_bits=w_bits, group_size=group)
    q = _codes(m, k, 15)
    xs = torch.rand(m) * 0.02 + 1e-3
    os = torch.rand(n) * 0.5 + 0.05
    outs = ("int32", "f16", "bf16", "int8")
    wants = {out: _reference(q, layer, xs, out, os) for out in outs}
    want_t = _reference(q, layer, torch.full((m,), 0.01), "int8", torch.full((n,), 0.25))
    layer = layer.to(cuda_device)
    qd, xsd, osd = q.to(cuda_device), xs.to(cuda_device), os.to(cuda_device)
    before = ops.stats["int8_kernel"]
    for out in outs:
        got = layer.forward_int8(qd, xsd, out=out, out_scale=osd if out == "int8" else None).cpu()
        want = wants[out]
        assert got.dtype == want.dtype
        assert torch.equal(got, want), (out, (got.float() - want.float()).abs().max())
    got = layer.forward_int8(qd, 0.01, out="int8", out_scale=0.25).cpu()
    assert torch.equal(got, want_t)
    assert ops.stats["int8_kernel"] == before + 5


@pytest_gpu
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_act_quant_kernel_matches_torch_path(cuda_device: str, dtype: torch.dtype) -> None:
    torch.manual_seed(16)
    x = torch.randn(9, 256, dtype=dtype)
    before = ops.stats["act_quant_kernel"]
    q, s = ops.act_quant(x.to(cuda_device))
    q_cpu, s_cpu = ops.act_quant(x)
    assert ops.stats["act_quant_kernel"] == before + 1
    assert s is not None and s_cpu is not None
    assert torch.equal(q.cpu(), q_cpu) and torch.equal(s.cpu(), s_cpu)
    res, gamma = torch.randn(9, 256, dtype=dtype), torch.rand(256, dtype=dtype) + 0.5
    res_d = res.to(cuda_device)
    q, s = ops.act_quant(x.to(cuda_device), res_d, gamma.to(cuda_device), 1e-5, 64)
    q_cpu, s_cpu = ops.act_quant(x, res, gamma, 1e-5, 64)
    assert s is not None and s_cpu is not None
    assert torch.equal(res_d.cpu(), res)
    assert (q.cpu().int() - q_cpu.int()).abs().max() <= 1
    torch.testing.assert_close(s.cpu(), s_cpu, rtol=1e-4, atol=0)
    q, _ = ops.act_quant(x.to(cuda_device), static_scale=0.02)
    assert torch.equal(q.cpu(), ops.act_quant(x, static_scale=0.02)[0])


@pytest_gpu
def test_quantized_model_runs_int8_kernels(cuda_device: str) -> None:
    torch.manual_seed(17)
    model = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 128))
    x = torch.randn(12, 256)
    for config in (lowbit.W8A8(method="rtn"), lowbit.W4A8(method="rtn")):
        m = nn.Sequential(nn.Linear(256, 512), nn.GELU(), nn.Linear(512, 128))
        m.load_state_dict(model.state_dict())
        lowbit.quantize_(m, config, progress=False)
        m = m.to(cuda_device).half()
        before = ops.stats["int8_kernel"]
        with torch.no_grad():
            y = m(x.to(cuda_device).half())
        assert ops.stats["int8_kernel"] == before + 2
        with torch.no_grad(), pytest.MonkeyPatch.context() as mp:
            mp.setenv("LOWBIT_EMULATE", "1")
            y_emu = m(x.to(cuda_device).half())
        # act_quant (no norm / rotation) and the GEMM epilogue are the same IEEE operations on both paths
        assert torch.equal(y, y_emu)
