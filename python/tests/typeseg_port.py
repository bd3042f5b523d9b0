"""A torch port of typeseg 0.2.7's pretrained bidirectional Mamba-1 tagger (reference/real-models.md §4).

The package ships fp32 weights (`typeseg/data/mamba_al.npz`) and a numpy forward (`typeseg._mamba_kernel.
mamba_forward`). Here each block's mixer is a standard Mamba1 mixer (in_proj [x | z], depthwise conv, x_proj,
dt_proj, A_log, D, out_proj) with three flags lowbit's Mamba1 path understands: `conv_same` (the conv is 'SAME'
padded, not causal), `bidirectional` (the scan also runs over the reversed sequence with the same parameters, the
two outputs are summed before the gate) and `dt_add = 1e-4` (added after the softplus). Blocks are pre-LayerNorm
with a residual; the head is a final LayerNorm and a 256 -> 35 classifier. So `lowbit.quantize_(model,
lowbit.Mamba(...), calib)` quantizes it like any Mamba1 model.
"""

from __future__ import annotations

import functools
import sys
from typing import Any, Optional

import numpy as np
import torch
from helpers import MODELS
from torch import nn

import lowbit.mamba as lm

TYPESEG_DIR = MODELS / "typeseg"
N_LAYERS, D_STATE, DT_RANK, D_CONV = 6, 16, 16, 4


def have_typeseg() -> bool:
    return (TYPESEG_DIR / "data" / "mamba_al.npz").is_file()


def _import() -> Any:
    if str(MODELS) not in sys.path:
        sys.path.insert(0, str(MODELS))
    import typeseg
    from typeseg import _mamba_kernel, _runtime, _tokenize

    return typeseg, _mamba_kernel, _runtime, _tokenize


@functools.lru_cache(maxsize=1)
def weights() -> dict[str, np.ndarray]:
    _, _, runtime, _ = _import()
    cfg = runtime._manifest()["mamba"]
    w = runtime._weights(cfg["file"])
    return {k: np.asarray(v, dtype=np.float32) for k, v in w._d.items()}


def tokens(text: str) -> np.ndarray:
    """Byte ids of `text` as the package tokenizes them."""
    return _import()[3].text_to_bytes(text)


def reference_logits(toks: np.ndarray) -> np.ndarray:
    """The package's own numpy forward (sequential scan): logits [L, 35]."""
    _, mk, runtime, _ = _import()
    w = runtime._weights(runtime._manifest()["mamba"]["file"])
    return mk.mamba_forward(np, w, toks, n_layers=N_LAYERS, d_state=D_STATE, dt_rank=DT_RANK, d_conv=D_CONV)


def _lin(kernel: np.ndarray, bias: Optional[np.ndarray]) -> nn.Linear:
    lin = nn.Linear(kernel.shape[0], kernel.shape[1], bias=bias is not None)
    with torch.no_grad():
        lin.weight.copy_(torch.from_numpy(kernel.T.copy()))
        if bias is not None:
            lin.bias.copy_(torch.from_numpy(bias))
    return lin


class TypesegMixer(nn.Module):
    """One typeseg Mamba-1 mixer in the HF `MambaMixer` parameter layout."""

    lowbit_mamba_kind = "mamba1"
    conv_same = True
    bidirectional = True
    dt_add = 1e-4

    def __init__(self, w: dict[str, np.ndarray], prefix: str, layer_idx: int) -> None:
        super().__init__()
        self.layer_idx = layer_idx
        g = lambda k: w[prefix + k]  # noqa: E731
        self.in_proj = _lin(g("Dense_0/kernel"), g("Dense_0/bias"))
        conv = g("Conv_0/kernel")  # (k, 1, C)
        d_inner = conv.shape[2]
        self.conv1d = nn.Conv1d(d_inner, d_inner, conv.shape[0], groups=d_inner, bias=True)
        with torch.no_grad():
            self.conv1d.weight.copy_(torch.from_numpy(conv[:, 0, :].T.copy())[:, None, :])
            self.conv1d.bias.copy_(torch.from_numpy(g("Conv_0/bias")))
        self.x_proj = _lin(g("Dense_1/kernel"), g("Dense_1/bias"))
        self.dt_proj = _lin(g("Dense_2/kernel"), g("Dense_2/bias"))
        self.A_log = nn.Parameter(torch.from_numpy(g("A_log").copy()))
        self.D = nn.Parameter(torch.from_numpy(g("D").copy()))
        self.out_proj = _lin(g("Dense_3/kernel"), g("Dense_3/bias"))

    def forward(self, hidden_states: torch.Tensor, cache: Any = None, attention_mask: Any = None) -> torch.Tensor:
        return lm._m1_forward(lm.spec_of(self), hidden_states)


class TypesegBlock(nn.Module):
    def __init__(self, w: dict[str, np.ndarray], i: int) -> None:
        super().__init__()
        p = f"CheckpointMambaBlock1D_{i}/"
        self.norm = nn.LayerNorm(w[p + "LayerNorm_0/scale"].shape[0], eps=1e-6)
        with torch.no_grad():
            self.norm.weight.copy_(torch.from_numpy(w[p + "LayerNorm_0/scale"]))
            self.norm.bias.copy_(torch.from_numpy(w[p + "LayerNorm_0/bias"]))
        self.mixer = TypesegMixer(w, p, i)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.mixer(self.norm(x))


class Typeseg(nn.Module):
    """The tagger: byte ids [B, L] (as `tokens` returns them) -> logits [B, L, 35]."""

    def __init__(self, w: dict[str, np.ndarray]) -> None:
        super().__init__()
        table = w["Embed_0/embedding"]
        self.embed = nn.Embedding(table.shape[0], table.shape[1])
        with torch.no_grad():
            self.embed.weight.copy_(torch.from_numpy(table))
        _, mk, _, _ = _import()
        remap = (
            mk._COMPACT_TABLE
            if table.shape[0] != mk.NUM_TOKEN_EMBEDDINGS_LEGACY
            else np.arange(mk.NUM_TOKEN_EMBEDDINGS_LEGACY)
        )
        self.register_buffer("remap", torch.from_numpy(np.asarray(remap, dtype=np.int64)))
        self.blocks = nn.ModuleList([TypesegBlock(w, i) for i in range(N_LAYERS)])
        self.norm = nn.LayerNorm(table.shape[1], eps=1e-6)
        with torch.no_grad():
            self.norm.weight.copy_(torch.from_numpy(w["LayerNorm_0/scale"]))
            self.norm.bias.copy_(torch.from_numpy(w["LayerNorm_0/bias"]))
        self.head = _lin(w["Dense_0/kernel"], w["Dense_0/bias"])

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        h = self.embed(self.remap[ids.clamp(0, self.remap.numel() - 1)])
        for blk in self.blocks:
            h = blk(h)
        return self.head(self.norm(h))


def model() -> Typeseg:
    return Typeseg(weights()).eval()


def windows(text: str, size: int, count: Optional[int] = None) -> list[torch.Tensor]:
    """Consecutive non-overlapping windows of `size` bytes of `text` as [1, size] id tensors."""
    ids = torch.from_numpy(tokens(text).astype(np.int64))
    out = [ids[i : i + size][None] for i in range(0, ids.numel() - size + 1, size)]
    return out if count is None else out[:count]
