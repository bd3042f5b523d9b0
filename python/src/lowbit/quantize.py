"""`quantize_(model, config, calib_data=None, filter_fn=None)`: quantize a model's `nn.Linear` layers in place."""

from __future__ import annotations

import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import torch
from torch import nn

from . import _C
from .configs import CONFIG_TYPES, W4A8, W8A8, Bipolar, Config, Mamba, WeightOnly, config_to_dict
from .modules import Int8Linear, LowbitLinear, PackedWeight

FilterFn = Callable[[nn.Module, str], bool]

# Modules that hold a weight matrix but that lowbit does not quantize: reported, left untouched.
_UNSUPPORTED_TYPES: tuple[type[nn.Module], ...] = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.Bilinear,
    nn.MultiheadAttention,
)


@dataclass
class LayerReport:
    """One quantized layer."""

    name: str
    scheme: str
    shape: tuple[int, int]
    storage_bytes: int
    method: str
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class QuantizeReport:
    """What `quantize_` did: quantized layers, layers it skipped (with the reason) and unsupported layers."""

    quantized: list[LayerReport] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    unsupported: list[tuple[str, str]] = field(default_factory=list)
    calib_samples: int = 0

    @property
    def storage_bytes(self) -> int:
        return sum(q.storage_bytes for q in self.quantized)

    def __str__(self) -> str:
        lines = [
            f"lowbit.quantize_: {len(self.quantized)} layers quantized "
            f"({self.storage_bytes / 2**20:.2f} MiB packed), {len(self.skipped)} skipped, "
            f"{len(self.unsupported)} unsupported left untouched"
        ]
        lines += [f"  skipped {name}: {why}" for name, why in self.skipped]
        lines += [f"  unsupported {name}: {why}" for name, why in self.unsupported]
        return "\n".join(lines)


def _progress(iterable: Iterable[Any], desc: str, total: Optional[int], enabled: bool) -> Iterable[Any]:
    if not enabled:
        return iterable
    try:
        from tqdm.auto import tqdm
    except ImportError:  # tqdm is optional
        return iterable
    return tqdm(iterable, desc=desc, total=total, leave=False)


def _float_bytes(t: torch.Tensor) -> bytes:
    return t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()


def _group_ok(config: Config, k: int) -> Optional[str]:
    g = getattr(config, "group_size", None)
    if g is not None and k % g != 0:
        return f"in_features={k} is not divisible by group_size={g}"
    return None


def _run_model(model: nn.Module, batch: Any) -> None:
    if isinstance(batch, Mapping):
        model(**batch)
    elif isinstance(batch, (tuple, list)):
        model(*batch)
    else:
        model(batch)


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device)
    if isinstance(batch, Mapping):
        return {k: _to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (tuple, list)):
        return type(batch)(_to_device(v, device) for v in batch)
    return batch


def _model_device(model: nn.Module) -> torch.device:
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


class _Collector:
    """Per-layer Hessian accumulators and activation observers fed by forward pre-hooks."""

    def __init__(self, targets: dict[str, nn.Linear], observers: bool) -> None:
        self.hessian = {n: _C.HessianAccumulator(m.in_features) for n, m in targets.items()}
        self.observer = {n: _C.ActivationObserver() for n in targets} if observers else {}
        self.handles = [m.register_forward_pre_hook(self._hook(n)) for n, m in targets.items()]

    def _hook(self, name: str) -> Callable[..., None]:
        def hook(module: nn.Module, args: tuple[Any, ...]) -> None:
            k = module.in_features
            x2 = args[0].detach().reshape(-1, k)
            data = _float_bytes(x2)
            self.hessian[name].update(data, x2.shape[0])
            if name in self.observer:
                self.observer[name].update(data, x2.shape[0], k)

        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


class Calibration:
    """Statistics of a model's linear layers collected from calibration data by `lowbit.calibrate`: each layer's
    input Hessian `(2/n)·Σ xᵀx` and, optionally, an activation histogram for static int8 scales.

    Pass it as `calib_data` to `quantize_` to quantize several copies of the same model (different configs) from one
    calibration pass.
    """

    def __init__(self, hessians: dict[str, _C.Hessian], observers: dict[str, _C.ActivationObserver], samples: int):
        self.hessians = hessians
        self.observers = observers
        self.samples = samples

    def __repr__(self) -> str:
        return f"Calibration({len(self.hessians)} layers, {self.samples} batches, observers={bool(self.observers)})"


def calibrate(
    model: nn.Module,
    calib_data: Iterable[Any],
    filter_fn: Optional[FilterFn] = None,
    *,
    observers: bool = False,
    progress: bool = True,
) -> Calibration:
    """Runs `model` over `calib_data` (tensors, tuples of positional arguments or dicts of keyword arguments) and
    collects the input statistics of every `nn.Linear` accepted by `filter_fn(module, fqn)`. NaN/Inf activations or
    an empty `calib_data` raise `ValueError`."""
    targets = {
        n: m
        for n, m in model.named_modules()
        if isinstance(m, nn.Linear) and not isinstance(m, LowbitLinear) and (filter_fn is None or filter_fn(m, n))
    }
    return _calibrate(model, targets, calib_data, observers, progress)


def _calibrate(
    model: nn.Module, targets: dict[str, nn.Linear], calib_data: Iterable[Any], observers: bool, progress: bool
) -> Calibration:
    if isinstance(calib_data, (torch.Tensor, Mapping)):
        calib_data = [calib_data]
    collector = _Collector(targets, observers)
    device = _model_device(model)
    seen = 0
    try:
        with torch.no_grad():
            for batch in _progress(calib_data, "lowbit: calibration", None, progress):
                _run_model(model, _to_device(batch, device))
                seen += 1
    finally:
        collector.remove()
    if seen == 0:
        raise ValueError("calib_data has no samples")
    hessians = {n: acc.finish() for n, acc in collector.hessian.items() if acc.samples > 0}
    return Calibration(hessians, collector.observer, seen)


def quantize_(
    model: nn.Module,
    config: Config,
    calib_data: Optional[Iterable[Any]] = None,
    filter_fn: Optional[FilterFn] = None,
    *,
    progress: bool = True,
) -> QuantizeReport:
    """Quantizes `model` in place: every `nn.Linear` accepted by `filter_fn(module, fqn)` (all by default) is replaced
    by a `LowbitLinear` holding its weight in `config`'s format, or, for `W8A8` (per-channel) and `W4A8`, by an
    `Int8Linear` on lowbit's int8 GEMM (int8 activations per token or with the calibrated static scale).

    - Without `calib_data`: round-to-nearest.
    - With `calib_data` (an iterable of model inputs: tensors, tuples of positional arguments or dicts of keyword
      arguments): one calibration pass with forward hooks collects each layer's input activations into a Hessian
      (and, for `static_scales`, an activation histogram); then `config.method` `"gptq"` runs GPTQ, `"rtn"` runs
      round-to-nearest with the activation-aware datatype search for BitMoD mixed formats.

    Layers whose `in_features` the group size does not divide are skipped, and modules lowbit cannot quantize
    (convolutions, attention blocks with fused weights, ...) are left untouched; both are listed in the returned
    report and in a warning. Bad configs and empty or non-finite calibration data raise before anything changes.
    """
    if not isinstance(config, CONFIG_TYPES):
        raise TypeError(
            f"config must be one of {', '.join(t.__name__ for t in CONFIG_TYPES)}, got {type(config).__name__}"
        )
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if isinstance(config, Mamba):  # SSM-aware: whole Mamba mixers, not single nn.Linear layers (lowbit.mamba)
        from .mamba import quantize_mamba_

        return quantize_mamba_(model, config, calib_data, filter_fn, progress=progress)
    if isinstance(config, WeightOnly) and config.act_order and calib_data is None:
        raise ValueError("act_order needs calib_data (the column order comes from the Hessian)")
    if isinstance(config, (W8A8, W4A8)) and config.static_scales and calib_data is None:
        raise ValueError("static_scales needs calib_data")

    report = QuantizeReport()
    targets: dict[str, nn.Linear] = {}
    for name, module in model.named_modules():
        if isinstance(module, LowbitLinear):
            continue
        if isinstance(module, nn.Linear):
            if filter_fn is not None and not filter_fn(module, name):
                continue
            why = _group_ok(config, module.in_features)
            if name == "":
                why = "the model itself is an nn.Linear: wrap it in a module to quantize it in place"
            if why is not None:
                report.skipped.append((name, why))
                continue
            targets[name] = module
        elif isinstance(module, _UNSUPPORTED_TYPES) or (
            type(module).__name__ == "Conv1D" and hasattr(module, "weight")  # transformers' GPT-2 style Conv1D
        ):
            if filter_fn is None or filter_fn(module, name):
                report.unsupported.append((name, type(module).__name__))

    static = bool(getattr(config, "static_scales", False))
    calib: Optional[Calibration] = None
    if isinstance(calib_data, Calibration):
        calib = calib_data
        if static and not calib.observers:
            raise ValueError("static_scales needs a Calibration made with observers=True")
    elif calib_data is not None and targets:
        calib = _calibrate(model, targets, calib_data, static, progress)
    if calib is not None:
        report.calib_samples = calib.samples
        for n in [n for n in targets if n not in calib.hessians]:
            report.skipped.append((n, "no calibration activations reached this layer"))
            del targets[n]

    act_bits = config.act_bits
    emulated: list[str] = []
    for name, module in _progress(list(targets.items()), "lowbit: quantize", len(targets), progress):
        act_scale = None
        if calib is not None and static and name in calib.observers:
            act_scale = float(calib.observers[name].static_scale(getattr(config, "scale_method", "mse")))
        if _int8_gemm_ok(config, module.in_features):
            new8, method, stats = _quantize_int8_layer(module, config, calib, name, act_scale)
            _set_module(model, name, new8)
            report.quantized.append(
                LayerReport(name, new8.scheme, (new8.out_features, new8.in_features), new8.storage_bytes, method, stats)
            )
            continue
        if isinstance(config, (W8A8, W4A8)):
            emulated.append(name)
        packed, method, stats = _quantize_layer(module, config, calib, name)
        new = LowbitLinear(
            packed,
            module.bias,
            act_bits=act_bits,
            act_scale=act_scale,
            config=config_to_dict(config),
        )
        _set_module(model, name, new)
        report.quantized.append(
            LayerReport(
                name, packed.scheme, (packed.out_features, packed.in_features), packed.storage_bytes, method, stats
            )
        )
    if emulated:
        warnings.warn(
            f"lowbit: {type(config).__name__} layers the int8 GEMM cannot take (per-group int8 weights, or K not a "
            f"multiple of 16 / 32) run on the emulated path (int8 fake quantization + dequantized weights): "
            f"{', '.join(emulated[:8])}{' ...' if len(emulated) > 8 else ''}",
            stacklevel=2,
        )

    if report.skipped or report.unsupported:
        warnings.warn(str(report), stacklevel=2)
    return report


def _quantize_layer(
    module: nn.Linear, config: Config, calib: Optional[Calibration], name: str
) -> tuple[PackedWeight, str, dict[str, Any]]:
    w = module.weight
    n, k = w.shape
    data = _float_bytes(w)
    scheme = config.scheme
    if calib is None:
        return PackedWeight(_C.quantize(data, n, k, scheme)), "rtn", {}
    hessian = calib.hessians[name]
    is_mixed = isinstance(config, WeightOnly) and config.dtype == "mixed"
    metric = "hessian" if is_mixed else "mse"
    if config.method == "rtn":
        q = _C.rtn_quantize(data, n, k, scheme, datatype_metric=metric, hessian=hessian)
        return PackedWeight(q), "rtn+search" if is_mixed else "rtn", {}
    opts = config.gptq
    act_order = bool(getattr(config, "act_order", False))
    q, stats = _C.gptq_quantize(
        data,
        n,
        k,
        hessian,
        scheme,
        damp_percent=opts.damp_percent,
        block_size=opts.block_size,
        act_order=act_order,
        static_groups=opts.static_groups,
        datatype_metric=metric,
        clip_search=opts.clip_search,
    )
    return PackedWeight(q), "gptq", dict(stats)


def _int8_gemm_ok(config: Config, k: int) -> bool:
    """Whether `config` maps to lowbit's int8 GEMM (`Int8Linear`) for a layer of `k` input features: W8A8 with
    per-channel weights and K a multiple of 16, W4A8 with K a multiple of 32 (every supported group size is)."""
    if isinstance(config, W8A8):
        return config.group_size is None and k % 16 == 0
    if isinstance(config, W4A8):
        return k % 32 == 0 and (config.group_size is None or config.group_size % 32 == 0)
    return False


def _quantize_int8_layer(
    module: nn.Linear, config: Config, calib: Optional[Calibration], name: str, act_scale: Optional[float]
) -> tuple[Int8Linear, str, dict[str, Any]]:
    """W8A8: the 8-bit per-channel INT weight of `_quantize_layer` (RTN or GPTQ) as int8 codes, exactly.
    W4A8: round-to-nearest in QQQ's two-level form; with GPTQ, the two-level form of the GPTQ weight."""
    cfg = config_to_dict(config)
    device = module.weight.device
    if isinstance(config, W8A8):
        packed, method, stats = _quantize_layer(module, config, calib, name)
        new = Int8Linear.from_qweight(packed.qweight, module.bias, act_scale=act_scale, config=cfg)
        return new.to(device), method, stats
    assert isinstance(config, W4A8)
    if calib is None or config.method == "rtn":
        new = Int8Linear.from_float(
            module.weight, module.bias, w_bits=4, group_size=config.group_size, act_scale=act_scale, config=cfg
        )
        return new.to(device), "rtn", {}
    packed, method, stats = _quantize_layer(module, config, calib, name)
    new = Int8Linear.from_float(
        packed.dequantize(), module.bias, w_bits=4, group_size=config.group_size, act_scale=act_scale, config=cfg
    )
    return new.to(device), f"{method}+qqq", stats


def _set_module(model: nn.Module, name: str, new: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    parent = model.get_submodule(parent_name) if parent_name else model
    setattr(parent, child, new)


__all__ = ["W4A8", "W8A8", "Bipolar", "LayerReport", "QuantizeReport", "WeightOnly", "calibrate", "quantize_"]
