from __future__ import annotations

import pytest

import lowbit


@pytest.mark.parametrize(
    ("config", "scheme"),
    [
        (lowbit.WeightOnly(bits=4, group_size=128), "w4-int-g128"),
        (lowbit.WeightOnly(bits=8, group_size=None), "w8-int-pc"),
        (lowbit.WeightOnly(bits=4, group_size=64, symmetric=False), "w4-int-asym-g64"),
        (lowbit.WeightOnly(bits=3, group_size=128, dtype="mixed"), "w3-mixed-g128"),
        (lowbit.WeightOnly(bits=4, group_size=32, dtype="nf4"), "w4-nf4-g32"),
        (lowbit.W8A8(), "w8-int-pc"),
        (lowbit.W4A8(), "w4-int-g128"),
        (lowbit.Bipolar(w_bits=2, a_bits=4), "w2-bipolar-g128"),
    ],
)
def test_config_names_its_scheme(config: object, scheme: str) -> None:
    assert config.scheme == scheme  # type: ignore[attr-defined]
    assert lowbit._C.parse_scheme(scheme) == scheme


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"bits": 1}, ValueError),
        ({"bits": 4, "group_size": 100}, ValueError),
        ({"bits": 5, "dtype": "mixed"}, ValueError),
        ({"bits": 4, "dtype": "mixed", "group_size": None}, ValueError),
        ({"bits": 4, "dtype": "fp8"}, ValueError),
        ({"bits": 4, "dtype": "nf4", "symmetric": False}, ValueError),
        ({"bits": 4, "dtype": "mixed", "act_order": True}, ValueError),
        ({"bits": 4.0}, TypeError),
        ({"bits": True}, TypeError),
        ({"bits": 4, "method": "awq"}, ValueError),
    ],
)
def test_bad_weight_only_configs_raise_early(kwargs: dict[str, object], error: type[Exception]) -> None:
    with pytest.raises(error):
        lowbit.WeightOnly(**kwargs)  # type: ignore[arg-type]


def test_bad_activation_configs_raise_early() -> None:
    with pytest.raises(ValueError):
        lowbit.W8A8(scale_method="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        lowbit.Bipolar(w_bits=9)
    with pytest.raises(ValueError):
        lowbit.Bipolar(w_bits=2, a_bits=1)
    with pytest.raises(ValueError):
        lowbit.GPTQOptions(damp_percent=0.0)
