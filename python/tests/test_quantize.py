"""quantize_ on small models: replacement, filter_fn, reports, calibration, activation configs."""

from __future__ import annotations

import dataclasses
import warnings

import pytest
import torch
from torch import nn

import lowbit


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.up = nn.Linear(128, 256)
        self.down = nn.Linear(256, 64)
        self.odd = nn.Linear(64, 48)  # K = 64: not divisible by 128
        self.conv = nn.Conv1d(4, 4, 3)
        self.emb = nn.Embedding(10, 128)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.odd(torch.relu(self.down(torch.relu(self.up(x)))))


def test_replaces_linear_and_reports_skipped_and_unsupported() -> None:
    torch.manual_seed(0)
    m = Net()
    with pytest.warns(UserWarning, match="unsupported"):
        r = lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=128), progress=False)
    assert [q.name for q in r.quantized] == ["up", "down"]
    assert r.skipped == [("odd", "in_features=64 is not divisible by group_size=128")]
    assert r.unsupported == [("conv", "Conv1d")]
    assert isinstance(m.up, lowbit.LowbitLinear) and isinstance(m.down, lowbit.LowbitLinear)
    assert type(m.odd) is nn.Linear and type(m.conv) is nn.Conv1d
    assert "w4-int-g128" in repr(m.up)
    assert r.storage_bytes == sum(q.storage_bytes for q in r.quantized)
    assert "2 layers quantized" in str(r)


def test_filter_fn_and_idempotence() -> None:
    m = Net()
    r = lowbit.quantize_(
        m, lowbit.WeightOnly(bits=8, group_size=None), filter_fn=lambda mod, name: name == "down", progress=False
    )
    assert [q.name for q in r.quantized] == ["down"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        r2 = lowbit.quantize_(m, lowbit.WeightOnly(bits=8, group_size=None), progress=False)
    assert "down" not in [q.name for q in r2.quantized]  # already a LowbitLinear


def test_bad_arguments_raise_before_anything_changes() -> None:
    m = Net()
    with pytest.raises(TypeError, match="config"):
        lowbit.quantize_(m, "w4-int-g128")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="act_order"):
        lowbit.quantize_(m, lowbit.WeightOnly(bits=4, act_order=True))
    with pytest.raises(ValueError, match="no samples"):
        lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=64), calib_data=[], progress=False)
    assert type(m.up) is nn.Linear


def test_calibration_with_nan_is_a_clear_error() -> None:
    m = nn.Sequential(nn.Linear(64, 64))
    x = torch.randn(8, 64)
    x[3, 3] = float("nan")
    with pytest.raises(ValueError, match="non-finite"):
        lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=32), calib_data=[x], progress=False)


def _correlated(rows: int, k: int, seed: int) -> torch.Tensor:
    mix = torch.randn(k, k, generator=torch.Generator().manual_seed(1234)) / k**0.5  # one distribution
    return torch.randn(rows, k, generator=torch.Generator().manual_seed(seed)) @ mix


@pytest.mark.parametrize(
    "config",
    [
        lowbit.WeightOnly(bits=3, group_size=64),
        lowbit.WeightOnly(bits=4, group_size=64, act_order=True),
        lowbit.WeightOnly(bits=3, group_size=64, dtype="mixed"),
    ],
)
def test_gptq_beats_rtn_on_held_out_data(config: lowbit.WeightOnly) -> None:
    torch.manual_seed(1)
    base = nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 128))
    calib = [_correlated(512, 256, s) for s in range(4)]
    x = _correlated(512, 256, 99)
    with torch.no_grad():
        ref = base(x)
    rtn, gptq = (nn.Sequential(nn.Linear(256, 256), nn.Tanh(), nn.Linear(256, 128)) for _ in range(2))
    rtn.load_state_dict(base.state_dict())
    gptq.load_state_dict(base.state_dict())
    lowbit.quantize_(rtn, dataclasses.replace(config, act_order=False), progress=False)
    r = lowbit.quantize_(gptq, config, calib_data=calib, progress=False)
    assert r.calib_samples == 4 and all(q.method == "gptq" for q in r.quantized)
    with torch.no_grad():
        e_rtn = (rtn(x) - ref).pow(2).mean().item()
        e_gptq = (gptq(x) - ref).pow(2).mean().item()
    assert e_gptq < e_rtn, (e_gptq, e_rtn)


def test_activation_configs_run_int8_gemm_with_static_scales() -> None:
    torch.manual_seed(2)
    m = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    x = torch.randn(16, 128)
    with torch.no_grad():
        ref = m(x)
    r = lowbit.quantize_(m, lowbit.W8A8(static_scales=True, method="rtn"), calib_data=[x], progress=False)
    assert all(isinstance(mod, lowbit.Int8Linear) for mod in (m[0], m[2]))
    assert m[0].act_scale is not None and m[0].act_scale > 0
    with torch.no_grad():
        y = m(x)
    assert torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.999
    assert len(r.quantized) == 2


def test_bipolar_config() -> None:
    torch.manual_seed(3)
    m = nn.Sequential(nn.Linear(128, 64))
    x = torch.randn(4, 128)
    with torch.no_grad():
        ref = m(x)
    lowbit.quantize_(m, lowbit.Bipolar(w_bits=4, a_bits=8), progress=False)
    assert m[0].scheme == "w4-bipolar-g128"
    with torch.no_grad():
        y = m(x)
    assert torch.nn.functional.cosine_similarity(y.flatten(), ref.flatten(), dim=0) > 0.98


def test_one_calibration_serves_several_configs() -> None:
    torch.manual_seed(4)
    base = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
    calib = lowbit.calibrate(base, [_correlated(256, 128, s) for s in range(2)], progress=False)
    assert calib.samples == 2 and set(calib.hessians) == {"0", "2"}
    for config in (lowbit.WeightOnly(bits=4, group_size=32), lowbit.WeightOnly(bits=3, group_size=64, dtype="mixed")):
        m = nn.Sequential(nn.Linear(128, 128), nn.ReLU(), nn.Linear(128, 64))
        m.load_state_dict(base.state_dict())
        r = lowbit.quantize_(m, config, calib_data=calib, progress=False)
        assert [q.method for q in r.quantized] == ["gptq", "gptq"]
    with pytest.raises(ValueError, match="observers"):
        lowbit.quantize_(nn.Sequential(nn.Linear(128, 128)), lowbit.W8A8(static_scales=True), calib_data=calib)
