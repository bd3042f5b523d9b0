"""`lowbit.save(model, path)` / `lowbit.load(path, model_or_skeleton)` through lowbit's safetensors checkpoint.

The file is lowbit-core's checkpoint (`crates/lowbit-core/src/checkpoint.rs`): every `LowbitLinear` weight as
packed tensors `<fqn>.weight.<field>`, every other floating-point tensor of the state dict as a passthrough
tensor, a versioned header with CRC-32 checksums of every tensor and of the metadata. The Python layer adds, in
the header's `lowbit.source` map (covered by the checksum): `lowbit.python.modules` (per quantized module: bias,
activation quantization, config), `lowbit.python.dtypes` (each passthrough tensor's original dtype) and
`lowbit.python.aliases` (tied tensors stored once) and `lowbit.python.shells` (lowbit.mamba's quantized mixers,
int8 embedding and fused-away block norms: their class, plain attributes and buffer shapes, see
`lowbit.mamba.shell_meta`; load rebuilds them empty and the state dict fills them; a W4A16 Hugging Face mixer is
the skeleton's own mixer with `LowbitLinear` projections, so it needs no shell). Loading validates all of it and
the match with the model.
"""

from __future__ import annotations

import json
import os
from typing import Any, Union

import numpy as np
import torch
from torch import nn

from . import _C
from . import mamba as _mamba
from .modules import Int8Linear, LowbitLinear, PackedWeight

PathLike = Union[str, "os.PathLike[str]"]

FORMAT = "lowbit.python/1"
_KEY_FORMAT = "lowbit.python.format"
_KEY_MODULES = "lowbit.python.modules"
_KEY_DTYPES = "lowbit.python.dtypes"
_KEY_ALIASES = "lowbit.python.aliases"
_KEY_CLASS = "lowbit.python.model_class"
_KEY_SHELLS = "lowbit.python.shells"

_DTYPES = {str(d): d for d in (torch.float32, torch.float16, torch.bfloat16, torch.float64)}
# Integer buffers of `Int8Linear` (codes, group scales) travel as float32 passthrough tensors: exact for 8-bit
# integers, and restored to their dtype on load.
_INT_DTYPES = {str(d): d for d in (torch.int8, torch.uint8)}


def _stored(model: nn.Module) -> tuple[set[str], set[str]]:
    """State-dict keys `save` skips (the packed fields of `LowbitLinear`, stored as checkpoint layers) and the
    buffers of `Int8Linear` it stores exactly as float32 passthrough tensors (integer codes, float32 scales)."""
    skip: set[str] = set()
    ints: set[str] = set()
    for name, m in model.named_modules():
        pre = f"{name}." if name else ""
        if isinstance(m, LowbitLinear):
            skip.update(pre + LowbitLinear._FIELDS + f for f in m.packed.tensors())
        elif isinstance(m, Int8Linear):
            names = ("weight_q", "group_scales", "weight_scale", "input_scale")
            ints.update(pre + b for b in names if getattr(m, b) is not None)
        elif isinstance(m, _mamba.QuantEmbedding):
            ints.add(pre + "codes")
    return skip, ints


def save(model: nn.Module, path: PathLike, *, half_passthrough: bool = False) -> None:
    """Writes `model` (quantized by `quantize_`) to `path`: packed weights plus every other floating-point tensor.

    `half_passthrough=True` stores the unquantized tensors as float16 (smaller file; lossy for float32 models).
    Integer buffers (e.g. position ids) are not stored: the skeleton given to `load` provides them.
    """
    layers: list[tuple[str, Any]] = []
    modules: dict[str, dict[str, Any]] = {}
    for name, m in model.named_modules():
        if isinstance(m, LowbitLinear):
            layers.append((f"{name}.weight", m.packed.qweight))
            modules[name] = {
                "bias": m.bias is not None,
                "act_bits": m.act_bits,
                "act_scale": m.act_scale,
                "config": m.config,
            }
            if getattr(m, "lowbit_head", False):  # lowbit.mamba's lm_head: an empty `weight` carries the dtype
                modules[name]["head_dtype"] = str(m.weight.dtype)
        elif isinstance(m, Int8Linear):
            modules[name] = {
                "kind": "int8",
                "shape": [m.out_features, m.in_features],
                "w_bits": m.w_bits,
                "group_size": m.group_size,
                "bias": m.bias is not None,
                "act_scale": m.act_scale,
                "config": m.config,
            }
    if not modules:
        raise ValueError("the model has no lowbit layers: quantize it with lowbit.quantize_ first")
    shells = {name: meta for name, m in model.named_modules() if (meta := _mamba.shell_meta(m)) is not None}
    skip, ints = _stored(model)
    passthrough: list[tuple[str, list[int], bytes, bool]] = []
    dtypes: dict[str, str] = {}
    aliases: dict[str, str] = {}
    seen: dict[tuple[int, tuple[int, ...], tuple[int, ...], torch.dtype], str] = {}
    for name, t in model.state_dict(keep_vars=False).items():
        if name in skip or not (t.is_floating_point() or name in ints):
            continue
        key = (t.data_ptr(), tuple(t.shape), tuple(t.stride()), t.dtype)
        if t.numel() > 0 and key in seen:
            aliases[name] = seen[key]
            continue
        seen[key] = name
        dtypes[name] = str(t.dtype)
        data = t.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy().tobytes()
        passthrough.append((name, list(t.shape), data, half_passthrough and name not in ints))
    source = {
        _KEY_FORMAT: FORMAT,
        _KEY_MODULES: json.dumps(modules, sort_keys=True),
        _KEY_DTYPES: json.dumps(dtypes, sort_keys=True),
        _KEY_ALIASES: json.dumps(aliases, sort_keys=True),
        _KEY_CLASS: f"{type(model).__module__}.{type(model).__qualname__}",
        _KEY_SHELLS: json.dumps(shells, sort_keys=True),
        "lowbit.python.version": _C.__version__,
        "lowbit.python.torch": torch.__version__,
    }
    _C.save_checkpoint(os.fspath(path), layers, passthrough, source)


def _json(source: dict[str, str], key: str, path: str) -> Any:
    if key not in source:
        raise ValueError(f"{path}: not a checkpoint written by lowbit.save (header has no '{key}')")
    try:
        return json.loads(source[key])
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: header entry '{key}' is not valid JSON: {e}") from None


def load(path: PathLike, model: nn.Module, *, strict: bool = True) -> nn.Module:
    """Loads a checkpoint written by `save` into `model`, an unquantized skeleton of the same architecture (or the
    quantized model itself): its `nn.Linear` layers named in the file become `LowbitLinear`, every other tensor is
    filled in. Returns `model`.

    Everything is validated: the file (version, checksums, packed formats, by lowbit-core), that each quantized
    layer exists in `model` as a linear layer of the same shape, and (with `strict`) that the file and the model
    hold exactly the same floating-point tensors. Mismatches raise `ValueError`.
    """
    p = os.fspath(path)
    layers, passthrough, source = _C.load_checkpoint(p)
    if source.get(_KEY_FORMAT) != FORMAT:
        raise ValueError(
            f"{p}: unsupported lowbit Python checkpoint format {source.get(_KEY_FORMAT)!r} "
            f"(this build reads {FORMAT!r})"
        )
    modules: dict[str, dict[str, Any]] = _json(source, _KEY_MODULES, p)
    dtypes: dict[str, str] = _json(source, _KEY_DTYPES, p)
    aliases: dict[str, str] = _json(source, _KEY_ALIASES, p)
    shells: dict[str, dict[str, Any]] = _json(source, _KEY_SHELLS, p) if _KEY_SHELLS in source else {}

    # lowbit.mamba's modules first (outer before inner), so that the projections below find their places.
    for fqn in sorted(shells, key=lambda n: n.count(".")):
        try:
            old = model.get_submodule(fqn)
        except AttributeError:
            what = shells[fqn].get("class")
            raise ValueError(f"{p}: the model has no module '{fqn}' for the stored {what}") from None
        try:
            new = _mamba.build_shell(shells[fqn], old, f"{p}: '{fqn}'")
        except (KeyError, TypeError) as e:
            raise ValueError(f"{p}: bad metadata for module '{fqn}': {e!r}") from None
        parent_name, _, child = fqn.rpartition(".")
        setattr(model.get_submodule(parent_name) if parent_name else model, child, new)

    for layer_name, qweight in layers:
        if not layer_name.endswith(".weight"):
            raise ValueError(f"{p}: quantized layer '{layer_name}' is not named '<module>.weight'")
        fqn = layer_name[: -len(".weight")]
        meta = modules.get(fqn)
        if meta is None:
            raise ValueError(f"{p}: quantized layer '{fqn}' has no module entry in the header")
        try:
            target = model.get_submodule(fqn)
        except AttributeError:
            raise ValueError(f"{p}: the model has no module '{fqn}' for quantized layer '{layer_name}'") from None
        n, k = qweight.shape
        if isinstance(target, LowbitLinear):
            shape = (target.out_features, target.in_features)
        elif isinstance(target, nn.Linear):
            shape = (target.out_features, target.in_features)
        else:
            raise ValueError(f"{p}: module '{fqn}' is a {type(target).__name__}, not a linear layer")
        if shape != (n, k):
            raise ValueError(f"{p}: layer '{fqn}' is [{n}, {k}] in the file but {list(shape)} in the model")
        bias = None
        if meta.get("bias"):
            ref = target.bias if target.bias is not None else torch.zeros(n)
            bias = torch.zeros(n, dtype=ref.dtype, device=ref.device)
        new = LowbitLinear(
            PackedWeight(qweight),
            bias,
            act_bits=meta.get("act_bits"),
            act_scale=meta.get("act_scale"),
            config=meta.get("config"),
        )
        if meta.get("head_dtype"):
            new.__class__ = _mamba._HeadLinear
            new.register_buffer("weight", torch.empty(0, dtype=_DTYPES[meta["head_dtype"]]))
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new)

    for fqn, meta in modules.items():
        if meta.get("kind") != "int8":
            continue
        try:
            target = model.get_submodule(fqn)
        except AttributeError:
            raise ValueError(f"{p}: the model has no module '{fqn}' for int8 layer '{fqn}'") from None
        if not isinstance(target, (nn.Linear, Int8Linear)):
            raise ValueError(f"{p}: module '{fqn}' is a {type(target).__name__}, not a linear layer")
        n, k = meta["shape"]
        if (target.out_features, target.in_features) != (n, k):
            raise ValueError(
                f"{p}: layer '{fqn}' is [{n}, {k}] in the file but "
                f"{[target.out_features, target.in_features]} in the model"
            )
        new8 = Int8Linear(
            k,
            n,
            w_bits=int(meta["w_bits"]),
            group_size=meta.get("group_size"),
            bias=bool(meta.get("bias")),
            act_scale=meta.get("act_scale"),
            config=meta.get("config"),
        )
        ref = target.bias if target.bias is not None else None
        if new8.bias is not None and ref is not None:
            new8.bias.data = new8.bias.data.to(device=ref.device, dtype=ref.dtype)
        parent_name, _, child = fqn.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, new8)

    state: dict[str, torch.Tensor] = {}
    for name, shape, data, _stored_dtype in passthrough:
        dtype = _DTYPES.get(dtypes.get(name, "torch.float32")) or _INT_DTYPES.get(dtypes.get(name, ""))
        if dtype is None:
            raise ValueError(f"{p}: tensor '{name}' records an unknown dtype {dtypes.get(name)!r}")
        arr = np.frombuffer(data, dtype="<f4").reshape(shape)
        state[name] = torch.from_numpy(arr.copy()).to(dtype)
    for alias, target_name in aliases.items():
        if target_name not in state:
            raise ValueError(f"{p}: alias '{alias}' points to '{target_name}', which the file does not hold")
        state[alias] = state[target_name]

    skip, ints = _stored(model)
    own = {k: v for k, v in model.state_dict().items() if k not in skip and (v.is_floating_point() or k in ints)}
    unexpected = sorted(set(state) - set(own))
    if unexpected:
        raise ValueError(f"{p}: tensors not in the model: {', '.join(unexpected[:10])}")
    for name, t in state.items():
        if tuple(own[name].shape) != tuple(t.shape):
            raise ValueError(
                f"{p}: tensor '{name}' is {list(t.shape)} in the file, {list(own[name].shape)} in the model"
            )
    missing = sorted(set(own) - set(state))
    if strict and missing:
        raise ValueError(f"{p}: the file lacks tensors of the model: {', '.join(missing[:10])}")
    model.load_state_dict(state, strict=False)
    if shells:
        _mamba.link_fused_blocks(model)
    return model
