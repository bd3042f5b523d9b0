"""Mamba2-2.7B-shaped decode / prefill bench: HF fp16 PyTorch path vs lowbit W8A8 / W4A8 / W4A16, same run.

    .tools/venv/bin/python python/tools/mamba_bench.py OUTDIR            # GPU, the real shape (issue 7)
    .tools/venv/bin/python python/tools/mamba_bench.py OUTDIR --small    # a 2-layer toy on the CPU (tests the tool)

The model is randomly initialised (HF `Mamba2Config`: d_model 2560, 64 layers, expand 2, headdim 64, d_state 128,
ngroups 1, vocab 50288) in fp16. Quantization is the fast variant: no GPTQ (4-bit weights round-to-nearest),
calibration on random token ids; speed and memory do not depend on either, accuracy is not measured here.

Per variant: decode step latency (one token after a 16-token prefill, batch 1 and 64; the step is captured in a
CUDA graph when capture works, else timed eagerly, reported per row), prefill latency of 1024 tokens (batch 1,
eager), model memory (bytes of parameters + buffers + lowbit's packed weights) and peak GPU memory during the
variant's timings. Writes OUTDIR/mamba_bench.json, OUTDIR/mamba_bench.md and, when matplotlib is installed,
OUTDIR/mamba_bench.png.
"""

from __future__ import annotations

import argparse
import copy
import gc
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import torch
import transformers
from transformers import DynamicCache, Mamba2Config, Mamba2ForCausalLM

import lowbit
from lowbit import mamba as lm

VARIANTS: dict[str, Any] = {
    "fp16": None,
    "w8a8": lowbit.Mamba(w_bits=8, a_bits=8, gptq=False, quantize_head=True),
    "w4a8": lowbit.Mamba(w_bits=4, a_bits=8, gptq=False, quantize_head=True),
    "w4a16": lowbit.Mamba(w_bits=4, a_bits=16, gptq=False, quantize_head=True),
}


def config(small: bool) -> Mamba2Config:
    if small:
        return Mamba2Config(
            vocab_size=1000, hidden_size=128, num_hidden_layers=2, expand=2, head_dim=32, num_heads=8,
            n_groups=1, state_size=32, chunk_size=64, conv_kernel=4,
        )  # fmt: skip
    return Mamba2Config(
        vocab_size=50288, hidden_size=2560, num_hidden_layers=64, expand=2, head_dim=64, num_heads=80,
        n_groups=1, state_size=128, chunk_size=256, conv_kernel=4,
    )  # fmt: skip


def _sync(dev: torch.device) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def _time(fn: Callable[[], Any], dev: torch.device, iters: int, warmup: int) -> float:
    """Mean milliseconds per call."""
    for _ in range(warmup):
        fn()
    _sync(dev)
    if dev.type == "cuda":
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        torch.cuda.synchronize(dev)
        return start.elapsed_time(end) / iters
    t = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - t) * 1e3 / iters


def decode_step(model: torch.nn.Module, batch: int, dev: torch.device, iters: int, graph: bool) -> tuple[float, str]:
    """Latency of one decode step with a cached state; returns (ms, 'cuda-graph' | 'eager' | 'eager (why)')."""
    vocab = model.config.vocab_size
    g = torch.Generator(device="cpu").manual_seed(0)
    prompt = torch.randint(0, vocab, (batch, 16), generator=g).to(dev)
    step = torch.randint(0, vocab, (batch, 1), generator=g).to(dev)
    with torch.no_grad():
        cache = DynamicCache(config=model.config)
        model(input_ids=prompt, cache=cache, use_cache=True)

        def run() -> Any:
            return model(input_ids=step, cache=cache, use_cache=True).logits

        mode = "eager"
        if graph and dev.type == "cuda":
            try:
                s = torch.cuda.Stream(dev)
                s.wait_stream(torch.cuda.current_stream(dev))
                with torch.cuda.stream(s):
                    for _ in range(3):
                        run()
                torch.cuda.current_stream(dev).wait_stream(s)
                cg = torch.cuda.CUDAGraph()
                with torch.cuda.graph(cg):
                    run()
                return _time(cg.replay, dev, iters, 3), "cuda-graph"
            except Exception as e:  # any capture failure falls back to eager timing, reported in the output
                mode = f"eager (graph capture failed: {type(e).__name__}: {str(e)[:120]})"
                torch.cuda.synchronize(dev)
        return _time(run, dev, iters, 3), mode


def prefill(model: torch.nn.Module, length: int, dev: torch.device, iters: int) -> float:
    ids = torch.randint(0, model.config.vocab_size, (1, length), generator=torch.Generator().manual_seed(1)).to(dev)
    with torch.no_grad():
        return _time(lambda: model(input_ids=ids, use_cache=False, logits_to_keep=1), dev, iters, 1)


def quantize(model: torch.nn.Module, cfg: lowbit.Mamba, dev: torch.device, small: bool) -> tuple[Any, float]:
    g = torch.Generator().manual_seed(2)
    vocab = model.config.vocab_size
    calib = [torch.randint(0, vocab, (1, 64 if small else 256), generator=g).to(dev) for _ in range(2)]
    t = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = lowbit.quantize_(model, cfg, calib_data=calib, progress=False)
    _sync(dev)
    return report, time.perf_counter() - t


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--small", action="store_true", help="2-layer toy model (runs on the CPU in about a minute)")
    ap.add_argument("--device", default=None, help="default: cuda when available, else cpu")
    ap.add_argument("--variants", default=",".join(VARIANTS), help="comma list of " + ", ".join(VARIANTS))
    ap.add_argument("--batches", default="1,64")
    ap.add_argument("--prefill", type=int, default=1024)
    ap.add_argument("--iters", type=int, default=None)
    ap.add_argument("--no-graph", action="store_true", help="time decode steps eagerly")
    args = ap.parse_args()
    dev = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    iters = args.iters or (3 if dev.type == "cpu" else 50)
    batches = [int(b) for b in args.batches.split(",")]
    prefill_len = 128 if args.small and args.prefill == 1024 else args.prefill
    dtype = torch.float16 if dev.type == "cuda" else torch.float32
    args.out.mkdir(parents=True, exist_ok=True)

    torch.manual_seed(0)
    with torch.device(dev):
        base = Mamba2ForCausalLM(config(args.small)).to(dtype).eval()
    fp16_bytes = lm.model_bytes(base)
    rows: list[dict[str, Any]] = []
    for name in args.variants.split(","):
        cfg = VARIANTS[name]
        if cfg is None:
            model, qsec, note = base, 0.0, "HF Mamba2ForCausalLM, PyTorch path"
        else:
            model = copy.deepcopy(base)
            _, qsec = quantize(model, cfg, dev, args.small)
            note = f"lowbit {name} (no GPTQ, random calibration tokens), emb int8 + lm_head W4A16"
        gc.collect()
        if dev.type == "cuda":
            torch.cuda.empty_cache()
            torch.cuda.reset_peak_memory_stats(dev)
        row: dict[str, Any] = {"variant": name, "note": note, "quantize_s": round(qsec, 2)}
        row["model_bytes"] = lm.model_bytes(model)
        row["model_memory_vs_fp16"] = row["model_bytes"] / fp16_bytes
        for b in batches:
            ms, mode = decode_step(model, b, dev, iters, not args.no_graph)
            row[f"decode_b{b}_ms"], row[f"decode_b{b}_mode"] = ms, mode
        row[f"prefill_{prefill_len}_ms"] = prefill(model, prefill_len, dev, max(1, iters // 5))
        row["peak_gpu_bytes"] = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else None
        rows.append(row)
        print(json.dumps(row), flush=True)
        if model is not base:
            del model
    base_row = next((r for r in rows if r["variant"] == "fp16"), None)
    if base_row is not None:
        for r in rows:
            for k in [k for k in r if k.endswith("_ms")]:
                r[k.replace("_ms", "_speedup")] = base_row[k] / r[k]
    meta = {
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "lowbit": lowbit.__version__,
        "small": args.small,
        "config": config(args.small).to_dict(),
        "stand_ins": lm.using_stand_ins(),
        "quantization": "no GPTQ (RTN 4-bit), calibration on 2 random-token sequences; random-init weights",
        "dtype": str(dtype),
    }
    (args.out / "mamba_bench.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=2, default=str))
    (args.out / "mamba_bench.md").write_text(markdown(meta, rows, batches, prefill_len))
    plot(args.out / "mamba_bench.png", rows, batches, prefill_len)
    print((args.out / "mamba_bench.md").read_text())
    return 0


def markdown(meta: dict[str, Any], rows: list[dict[str, Any]], batches: list[int], prefill_len: int) -> str:
    c = meta["config"]
    lines = [
        "# Mamba2-2.7B-shaped bench: HF fp16 PyTorch path vs lowbit (same run)",
        "",
        f"Device: {meta['device']}; torch {meta['torch']}; transformers {meta['transformers']}; lowbit "
        f"{meta['lowbit']}; activations {meta['dtype']}.",
        f"Model: d_model {c['hidden_size']}, {c['num_hidden_layers']} layers, {c['num_heads']} heads x "
        f"{c['head_dim']}, d_state {c['state_size']}, ngroups {c['n_groups']}, vocab {c['vocab_size']}"
        + (" (--small toy)" if meta["small"] else "")
        + f". {meta['quantization']}.",
        f"Ops still on lowbit.mamba stand-ins (emulated; int8 variants only): {', '.join(meta['stand_ins']) or 'none'}."
        " W4A16 runs HF's own Mamba2Mixer code (the fp16 row's conv / SSD path) around lowbit's INT4 weight-only"
        " in_proj / out_proj.",
        "",
    ]
    hdr = ["variant"]
    for b in batches:
        hdr += [f"decode b={b} ms", "x fp16"]
    hdr += [f"prefill {prefill_len} ms", "x fp16", "model MiB", "x fp16", "peak GPU MiB", "quantize s"]
    lines += ["| " + " | ".join(hdr) + " |", "|" + "---|" * len(hdr)]
    for r in rows:
        cells = [r["variant"]]
        for b in batches:
            cells += [f"{r[f'decode_b{b}_ms']:.3f}", f"{r.get(f'decode_b{b}_speedup', float('nan')):.2f}"]
        cells += [
            f"{r[f'prefill_{prefill_len}_ms']:.2f}",
            f"{r.get(f'prefill_{prefill_len}_speedup', float('nan')):.2f}",
            f"{r['model_bytes'] / 2**20:.1f}",
            f"{r['model_memory_vs_fp16']:.3f}",
            "-" if r["peak_gpu_bytes"] is None else f"{r['peak_gpu_bytes'] / 2**20:.0f}",
            f"{r['quantize_s']:.1f}",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "Decode timing mode per row:"]
    for r in rows:
        lines.append(f"- {r['variant']}: " + "; ".join(f"b={b}: {r[f'decode_b{b}_mode']}" for b in batches))
    lines += [
        "",
        "Acceptance (issue 7): W4A8 decode b=1 >= 3x fp16, prefill 1024 >= 1.3x, model memory <= 0.3x fp16.",
        "",
    ]
    return "\n".join(lines)


def plot(path: Path, rows: list[dict[str, Any]], batches: list[int], prefill_len: int) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("matplotlib is not installed: no plot", file=sys.stderr)
        return
    keys = [f"decode_b{b}_ms" for b in batches] + [f"prefill_{prefill_len}_ms"]
    fig, axes = plt.subplots(1, len(keys) + 1, figsize=(4 * (len(keys) + 1), 3.2))
    names = [r["variant"] for r in rows]
    for ax, k in zip(axes, keys):
        ax.bar(names, [r[k] for r in rows], color="tab:blue")
        ax.set_title(k.replace("_ms", " (ms)"))
    axes[-1].bar(names, [r["model_bytes"] / 2**30 for r in rows], color="tab:green")
    axes[-1].set_title("model memory (GiB)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
