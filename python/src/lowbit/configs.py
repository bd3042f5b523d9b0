"""Quantization configs: what `lowbit.quantize_` turns each `nn.Linear` into.

Every config validates itself when it is built (a bad config raises `ValueError` / `TypeError` before any
model is touched) and names its lowbit weight scheme (`w4-int-g128`, `w3-mixed-g128`, ... see
`docs/formats.md`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Literal, Optional, Union

from . import _C

WeightDtype = Literal["int", "mixed", "nf4"]
ScaleMethod = Literal["minmax", "mse", "percentile"]

_GROUPS = (32, 64, 128)


def _check_int(name: str, value: object, allowed: tuple[int, ...]) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value not in allowed:
        raise ValueError(f"{name}={value} is not supported (choose from {', '.join(map(str, allowed))})")


def _check_group(group_size: Optional[int]) -> None:
    if group_size is None:
        return
    _check_int("group_size", group_size, _GROUPS)


def _group_suffix(group_size: Optional[int]) -> str:
    return "pc" if group_size is None else f"g{group_size}"


@dataclass(frozen=True)
class GPTQOptions:
    """GPTQ settings used when `quantize_` is given calibration data.

    `damp_percent`: Hessian damping as a fraction of its mean diagonal; `block_size`: lazy-update block;
    `static_groups`: group parameters from the original weights; `clip_search`: per-group range shrink search.
    """

    damp_percent: float = 0.01
    block_size: int = 128
    static_groups: bool = False
    clip_search: bool = False

    def __post_init__(self) -> None:
        if not (0.0 < self.damp_percent <= 1.0):
            raise ValueError(f"damp_percent={self.damp_percent} must be in (0, 1]")
        if self.block_size < 1:
            raise ValueError(f"block_size={self.block_size} must be positive")


@dataclass(frozen=True)
class WeightOnly:
    """Weight-only quantization: `Y = X · dequant(W)ᵀ` with float activations.

    - `bits`: 2, 3, 4 or 8 for `dtype="int"`; 3 or 4 for `"mixed"` (BitMoD FP3/FP4 with a per-group datatype);
      4 for `"nf4"`.
    - `group_size`: 32, 64, 128, or `None` for one group per output channel.
    - `symmetric`: INT only (`False` adds a zero point per group).
    - `act_order`: GPTQ's column order by decreasing Hessian diagonal (INT only; needs calibration data).
    - `method`: with `calib_data`, `"gptq"` (error feedback) or `"rtn"` (round-to-nearest; for `"mixed"` the
      datatype of each group is then searched with the activation-weighted error instead of the plain MSE).
    """

    bits: int = 4
    group_size: Optional[int] = 128
    dtype: WeightDtype = "int"
    symmetric: bool = True
    act_order: bool = False
    method: Literal["gptq", "rtn"] = "gptq"
    gptq: GPTQOptions = dataclasses.field(default_factory=GPTQOptions)

    def __post_init__(self) -> None:
        if self.dtype not in ("int", "mixed", "nf4"):
            raise ValueError(f"dtype={self.dtype!r} is not supported (choose 'int', 'mixed' or 'nf4')")
        allowed = {"int": (2, 3, 4, 5, 6, 7, 8), "mixed": (3, 4), "nf4": (4,)}[self.dtype]
        _check_int("bits", self.bits, allowed)
        _check_group(self.group_size)
        if self.dtype == "mixed" and self.group_size is None:
            raise ValueError("dtype='mixed' needs a group_size (32, 64 or 128)")
        if self.dtype != "int" and not self.symmetric:
            raise ValueError(f"symmetric=False applies to dtype='int' only, not {self.dtype!r}")
        if self.act_order and self.dtype != "int":
            raise ValueError("act_order applies to dtype='int' only")
        if self.method not in ("gptq", "rtn"):
            raise ValueError(f"method={self.method!r} (choose 'gptq' or 'rtn')")
        _C.parse_scheme(self.scheme)  # the Rust side agrees

    @property
    def scheme(self) -> str:
        kind = self.dtype if self.dtype != "int" else ("int" if self.symmetric else "int-asym")
        return f"w{self.bits}-{kind}-{_group_suffix(self.group_size)}"

    @property
    def act_bits(self) -> Optional[int]:
        return None


@dataclass(frozen=True)
class _ActQuant:
    """Shared fields of configs that also quantize activations to int8 (symmetric)."""

    group_size: Optional[int] = None
    static_scales: bool = False
    scale_method: ScaleMethod = "mse"
    method: Literal["gptq", "rtn"] = "gptq"
    gptq: GPTQOptions = dataclasses.field(default_factory=GPTQOptions)

    def _validate_act(self) -> None:
        _check_group(self.group_size)
        if self.scale_method not in ("minmax", "mse", "percentile"):
            raise ValueError(f"scale_method={self.scale_method!r} (choose 'minmax', 'mse' or 'percentile')")
        if self.method not in ("gptq", "rtn"):
            raise ValueError(f"method={self.method!r} (choose 'gptq' or 'rtn')")

    @property
    def act_bits(self) -> Optional[int]:
        return 8

    @property
    def act_order(self) -> bool:
        return False


@dataclass(frozen=True)
class W8A8(_ActQuant):
    """int8 weights (symmetric, per output channel by default) and int8 activations (dynamic per-token, or a
    static per-tensor scale calibrated from `calib_data` when `static_scales=True`)."""

    def __post_init__(self) -> None:
        self._validate_act()

    @property
    def scheme(self) -> str:
        return f"w8-int-{_group_suffix(self.group_size)}"


@dataclass(frozen=True)
class W4A8(_ActQuant):
    """4-bit INT weights (symmetric, groups of 128 by default) and int8 activations."""

    group_size: Optional[int] = 128

    def __post_init__(self) -> None:
        self._validate_act()

    @property
    def scheme(self) -> str:
        return f"w4-int-{_group_suffix(self.group_size)}"


@dataclass(frozen=True)
class Bipolar:
    """bipolar-INT weights (APT-LLM: every stored bit means ±1) of `w_bits` bits, and activations fake-quantized to
    `a_bits` bits (symmetric, per token; `None` keeps them in floating point)."""

    w_bits: int = 2
    a_bits: Optional[int] = 8
    group_size: Optional[int] = 128
    method: Literal["gptq", "rtn"] = "gptq"
    gptq: GPTQOptions = dataclasses.field(default_factory=GPTQOptions)

    def __post_init__(self) -> None:
        _check_int("w_bits", self.w_bits, tuple(range(1, 9)))
        if self.a_bits is not None:
            _check_int("a_bits", self.a_bits, tuple(range(2, 9)))
        _check_group(self.group_size)
        if self.method not in ("gptq", "rtn"):
            raise ValueError(f"method={self.method!r} (choose 'gptq' or 'rtn')")

    @property
    def scheme(self) -> str:
        return f"w{self.w_bits}-bipolar-{_group_suffix(self.group_size)}"

    @property
    def act_bits(self) -> Optional[int]:
        return self.a_bits

    @property
    def act_order(self) -> bool:
        return False

    @property
    def static_scales(self) -> bool:
        return False


@dataclass(frozen=True)
class Mamba:
    """Quamba2-style SSM-aware quantization of Mamba1 / Mamba2 mixers (`lowbit.mamba`): W8A8, W4A8 or W4A16.

    - `w_bits` 8 (int8 per output channel) or 4 (INT4 groups of `group_size`, GPTQ with `calib_data`);
      `a_bits` 8 (int8 activations with static calibrated scales end to end) or 16 (float activations, only
      with `w_bits=4`: Hugging Face mixers stay as they are, only their projections become INT4 weight-only).
    - `sort_and_cluster`: Mamba2's sort-and-cluster scales of the SSM input x (`head_clusters` x
      `dim_clusters` per SSD group); for Mamba1 it needs `pseudo_headdim` (channels of d_inner treated as a
      head); off, x gets one per-tensor percentile scale (`percentile`, Quamba).
    - `per_state_group`: one scale per SSD group for B and C (Mamba2), else per-tensor.
    - `fine_conv_input`: in_proj's int8 x / B / C outputs (the conv input) get the conv output's scale
      granularity (x per sort-and-cluster cluster, B / C per SSD group; Mamba1: x per cluster with
      `pseudo_headdim`) instead of Quamba2's one scale per segment; the kernels take per-column / per-channel
      scale vectors, so it costs nothing at run time.
    - `hadamard`: fuse block Hadamards into in_proj / out_proj with the online FWHTs (not for W4A16 on
      Hugging Face mixers, which keep their projections' basis).
    - `gptq`: GPTQ for 4-bit weights when calibration data is given (else round-to-nearest).
    - `quantize_head`: also quantize the embedding (int8 / int4 per row) and lm_head (as the blocks' linears).
    """

    w_bits: int = 8
    a_bits: int = 8
    group_size: int = 128
    sort_and_cluster: bool = True
    per_state_group: bool = True
    fine_conv_input: bool = True
    hadamard: bool = True
    gptq: bool = True
    percentile: float = 0.9995
    head_clusters: int = 4
    dim_clusters: int = 4
    pseudo_headdim: Optional[int] = None
    quantize_head: bool = False

    def __post_init__(self) -> None:
        _check_int("w_bits", self.w_bits, (4, 8))
        _check_int("a_bits", self.a_bits, (8, 16))
        if self.w_bits == 8 and self.a_bits == 16:
            raise ValueError("Mamba(w_bits=8, a_bits=16) is not a lowbit configuration (choose W8A8, W4A8 or W4A16)")
        _check_group(self.group_size)
        if not (0.5 < self.percentile <= 1.0):
            raise ValueError(f"percentile={self.percentile} must be in (0.5, 1]")
        for name in ("head_clusters", "dim_clusters"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or not (1 <= v <= 64):
                raise ValueError(f"{name}={v!r} must be an int in 1..64")
        if self.pseudo_headdim is not None and (
            isinstance(self.pseudo_headdim, bool) or not isinstance(self.pseudo_headdim, int) or self.pseudo_headdim < 1
        ):
            raise ValueError(f"pseudo_headdim={self.pseudo_headdim!r} must be a positive int or None")

    @property
    def scheme(self) -> str:
        return f"mamba-w{self.w_bits}a{self.a_bits}"

    @property
    def act_bits(self) -> Optional[int]:
        return 8 if self.a_bits == 8 else None


Config = Union[WeightOnly, W8A8, W4A8, Bipolar, Mamba]
CONFIG_TYPES = (WeightOnly, W8A8, W4A8, Bipolar, Mamba)


def config_to_dict(config: Config) -> dict[str, object]:
    """A JSON-friendly description of a config (stored in checkpoints)."""
    d = dataclasses.asdict(config)
    d["type"] = type(config).__name__
    return d
