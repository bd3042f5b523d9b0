"""lowbit.save / lowbit.load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

import lowbit


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(50, 64)
        self.body = nn.Linear(64, 128)
        self.norm = nn.LayerNorm(128)
        self.proj = nn.Linear(128, 64, bias=False)
        self.head = nn.Linear(64, 50, bias=False)
        self.head.weight = self.emb.weight  # tied
        self.register_buffer("ids", torch.arange(5))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        return self.head(self.proj(self.norm(self.body(self.emb(t)))))


def test_round_trip_is_exact(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = Tied()
    lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=32), filter_fn=lambda mod, n: n != "head", progress=False)
    t = torch.randint(0, 50, (2, 7))
    y = m(t)
    path = tmp_path / "tied.lowbit.safetensors"
    lowbit.save(m, path)
    assert lowbit._C.is_checkpoint(str(path))
    torch.manual_seed(1)
    skel = Tied()
    lowbit.load(path, skel)
    assert isinstance(skel.body, lowbit.LowbitLinear) and isinstance(skel.proj, lowbit.LowbitLinear)
    assert skel.head.weight is skel.emb.weight
    torch.testing.assert_close(skel(t), y, rtol=0, atol=0)


def test_activation_settings_survive(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(64, 64))
    x = torch.randn(8, 64)
    lowbit.quantize_(m, lowbit.W8A8(static_scales=True, method="rtn"), calib_data=[x], progress=False)
    lowbit.save(m, tmp_path / "a.safetensors")
    skel = lowbit.load(tmp_path / "a.safetensors", nn.Sequential(nn.Linear(64, 64)))
    assert isinstance(skel[0], lowbit.Int8Linear) and skel[0].act_scale == m[0].act_scale
    for key, t in m.state_dict().items():
        assert torch.equal(skel.state_dict()[key], t), key
    torch.testing.assert_close(skel(x), m(x), rtol=0, atol=0)
    # per-group int8 weights have no int8 GEMM: LowbitLinear with fake-quantized activations
    m = nn.Sequential(nn.Linear(64, 64))
    with pytest.warns(UserWarning, match="emulated"):
        lowbit.quantize_(
            m, lowbit.W8A8(group_size=32, static_scales=True, method="rtn"), calib_data=[x], progress=False
        )
    lowbit.save(m, tmp_path / "a.safetensors")
    skel = lowbit.load(tmp_path / "a.safetensors", nn.Sequential(nn.Linear(64, 64)))
    assert skel[0].act_bits == 8 and skel[0].act_scale == m[0].act_scale
    torch.testing.assert_close(skel(x), m(x), rtol=0, atol=0)


def test_load_validates(tmp_path: Path) -> None:
    m = nn.Sequential(nn.Linear(64, 32))
    lowbit.quantize_(m, lowbit.WeightOnly(bits=4, group_size=32), progress=False)
    path = tmp_path / "m.safetensors"
    lowbit.save(m, path)
    with pytest.raises(ValueError, match="in the model"):
        lowbit.load(path, nn.Sequential(nn.Linear(64, 48)))
    with pytest.raises(ValueError, match="no module"):
        lowbit.load(path, nn.Sequential(nn.Identity(), nn.Linear(64, 32)).get_submodule("0"))
    with pytest.raises(ValueError, match="lacks"):
        lowbit.load(path, nn.Sequential(nn.Linear(64, 32), nn.LayerNorm(32)))
    raw = bytearray(path.read_bytes())
    raw[-3] ^= 0xFF
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="checksum"):
        lowbit.load(bad, nn.Sequential(nn.Linear(64, 32)))
    with pytest.raises(ValueError, match="no lowbit layers"):
        lowbit.save(nn.Sequential(nn.Linear(4, 4)), tmp_path / "x.safetensors")
