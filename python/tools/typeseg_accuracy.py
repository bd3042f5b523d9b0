"""typeseg (the real pretrained bidirectional Mamba-1) under lowbit.Mamba W8A8 / W4A8 / W4A16, plus the
sort-and-cluster / per-state-group ablations; writes the "Mamba (Quamba2)" section of docs/results/accuracy.md.

    .tools/venv/bin/python python/tools/typeseg_accuracy.py          # CPU, emulated path; ~15 min on 2 cores
    # or in parallel parts: --part typeseg --configs 'W8A8;W4A8' --save a.json; --part ablation --save b.json;
    # then --assemble a.json b.json ... writes the doc section

typeseg: calibration on `python/tests/data/python-docs-calib.txt` (windows of 256 bytes), evaluation on the
disjoint `python-docs-eval.txt` and `fortunes-eval.txt` (windows of 512 bytes); per-character (per-byte) argmax
agreement of the 35-class tagger vs fp32, and mean KL(fp32 || quantized) per character.

Ablations (W8A8, same model and data per table; relative L2 error of the logits vs fp32):
- typeseg with sort-and-cluster on pseudo-heads of 64 channels vs one per-tensor scale for the SSM input.
- A random-init Mamba2 (Mamba2-8B's layout scaled down: ngroups 8, headdim 64) for per-state-group B/C scales and
  sort-and-cluster vs per-tensor; "structured" variants scale in_proj's B/C rows per group and x rows per head by
  fixed log-spaced factors (different groups / heads get different ranges, as in trained models); both stated.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import sys
import time
import warnings
from pathlib import Path
from typing import Any, Optional

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import helpers
import numpy as np
import torch
import typeseg_port as tp

import lowbit
from lowbit import mamba as lm

OUT = helpers.ROOT / "docs" / "results" / "accuracy.md"
BEGIN, END = "<!-- lowbit.mamba:begin -->", "<!-- lowbit.mamba:end -->"
PCT = 0.99999  # Quamba's percentile for small models (the default 0.9995 is tuned for billion-parameter models)

TYPESEG = {
    "W8A8": lowbit.Mamba(8, 8, percentile=PCT),
    "W4A8": lowbit.Mamba(4, 8, percentile=PCT),
    "W4A16": lowbit.Mamba(4, 16, percentile=PCT),
}


def _kl(ref: torch.Tensor, out: torch.Tensor) -> float:
    lp, lq = ref.log_softmax(-1), out.log_softmax(-1)
    return float((lp.exp() * (lp - lq)).sum(-1).mean())


def _eval(model: Any, windows: list[torch.Tensor], refs: list[torch.Tensor]) -> dict[str, float]:
    agree, kl, err, n = 0.0, 0.0, 0.0, 0
    with torch.no_grad():
        for w, ref in zip(windows, refs):
            out = model(w)
            agree += float((out.argmax(-1) == ref.argmax(-1)).float().sum())
            kl += _kl(ref, out) * w.numel()
            err += float((out - ref).norm() / ref.norm()) * w.numel()
            n += w.numel()
    return {"agree": agree / n, "kl": kl / n, "rel": err / n}


def typeseg_configs() -> dict[str, lowbit.Mamba]:
    configs: dict[str, lowbit.Mamba] = dict(TYPESEG)
    configs["W8A8, sort-and-cluster (pseudo-heads of 64)"] = lowbit.Mamba(8, 8, percentile=PCT, pseudo_headdim=64)
    configs["W8A8, no Hadamard"] = lowbit.Mamba(8, 8, percentile=PCT, hadamard=False)
    return configs


def typeseg_runs(only: Optional[list[str]] = None) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    model = tp.model()
    calib = tp.windows(helpers.text("python-docs-calib.txt"), 256, 8)
    evalw = tp.windows(helpers.text("python-docs-eval.txt"), 512, 8) + tp.windows(
        helpers.text("fortunes-eval.txt"), 512, 4
    )
    with torch.no_grad():
        refs = [model(w) for w in evalw]
        toks = tp.tokens(helpers.text("python-docs-eval.txt")[:600])
        port_err = float(
            np.abs(model(torch.from_numpy(toks.astype(np.int64))[None])[0].numpy() - tp.reference_logits(toks)).max()
        )
    rows = []
    for name, cfg in typeseg_configs().items():
        if only is not None and name not in only:
            continue
        q = copy.deepcopy(model)
        t = time.time()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lowbit.quantize_(q, cfg, calib_data=calib, progress=False)
        r = {"name": name, **_eval(q, evalw, refs), "seconds": time.time() - t}
        print(r, flush=True)
        rows.append(r)
    info = {
        "calib_bytes": sum(w.numel() for w in calib),
        "eval_bytes": sum(w.numel() for w in evalw),
        "port_max_abs": port_err,
    }
    return rows, info


def _mamba2(structured: bool) -> Any:
    from transformers import Mamba2Config, Mamba2ForCausalLM

    torch.manual_seed(5)
    cfg = Mamba2Config(
        vocab_size=512, hidden_size=256, num_hidden_layers=4, expand=2, head_dim=64, num_heads=8, n_groups=8,
        state_size=32, chunk_size=64, conv_kernel=4,
    )  # fmt: skip
    model = Mamba2ForCausalLM(cfg).eval()
    if structured:
        with torch.no_grad():
            for layer in model.backbone.layers:
                m = layer.mixer
                d, gn, n = m.intermediate_size, m.n_groups * m.ssm_state_size, m.ssm_state_size
                w = m.in_proj.weight
                head = torch.logspace(-1, 1, m.num_heads)[torch.randperm(m.num_heads)]
                w[d : 2 * d] *= head.repeat_interleave(m.head_dim)[:, None]
                grp = torch.logspace(-1, 1, m.n_groups)[torch.randperm(m.n_groups)].repeat_interleave(n)[:, None]
                w[2 * d : 2 * d + gn] *= grp
                w[2 * d + gn : 2 * d + 2 * gn] *= grp
    return model


def mamba2_ablation() -> list[dict[str, Any]]:
    g = torch.Generator().manual_seed(11)
    calib = [torch.randint(0, 512, (2, 128), generator=g) for _ in range(4)]
    evalw = [torch.randint(0, 512, (2, 256), generator=g) for _ in range(3)]
    configs = {
        "per-tensor x, per-tensor B/C": lowbit.Mamba(8, 8, sort_and_cluster=False, per_state_group=False),
        "per-tensor x, per-state-group B/C": lowbit.Mamba(8, 8, sort_and_cluster=False, per_state_group=True),
        "sort-and-cluster x, per-tensor B/C": lowbit.Mamba(8, 8, sort_and_cluster=True, per_state_group=False),
        "sort-and-cluster x, per-state-group B/C (Quamba2)": lowbit.Mamba(8, 8),
    }
    rows = []
    for structured in (False, True):
        model = _mamba2(structured)
        with torch.no_grad():
            refs = [model(w).logits for w in evalw]
        for name, cfg in configs.items():
            q = copy.deepcopy(model)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lowbit.quantize_(q, cfg, calib_data=calib, progress=False)
            with torch.no_grad():
                rel = float(np.mean([float((q(w).logits - r).norm() / r.norm()) for w, r in zip(evalw, refs)]))
                kl = float(np.mean([_kl(r, q(w).logits) for w, r in zip(evalw, refs)]))
            row = {"model": "structured" if structured else "plain", "name": name, "rel": rel, "kl": kl}
            print(row, flush=True)
            rows.append(row)
    return rows


def section(rows: list[dict[str, Any]], info: dict[str, Any], abl: list[dict[str, Any]], minutes: float) -> str:
    lines = [
        BEGIN,
        "## Mamba (Quamba2): typeseg, the real pretrained bidirectional Mamba-1",
        "",
        "Generated by `python/tools/typeseg_accuracy.py` (emulated path on the CPU; "
        f"{platform.machine()}, torch {torch.__version__}, {minutes:.1f} CPU-process minutes on a shared, heavily "
        "loaded machine). Ops still on lowbit.mamba's "
        f"stand-ins in this run: {', '.join(lm.using_stand_ins()) or 'none'}.",
        "",
        "typeseg 0.2.7 (6 Mamba-1 blocks, d_model = d_inner = 256, d_state 16, 35-class per-byte tagger, "
        "1.36 M params) through lowbit's torch port (`python/tests/typeseg_port.py`, max |Δlogit| vs the package's "
        f"numpy forward {info['port_max_abs']:.1e}) and `lowbit.quantize_(model, lowbit.Mamba(...), calib)`. "
        f"Calibration: {info['calib_bytes']} bytes of `python-docs-calib.txt`; evaluation: {info['eval_bytes']} "
        "bytes of `python-docs-eval.txt` + `fortunes-eval.txt` (disjoint texts). Quamba recipe for Mamba1: static "
        f"per-tensor scales, percentile {PCT} for the SSM input, Hadamards fused into in_proj / out_proj, 4-bit "
        "weights INT4 g128 with GPTQ (dt_proj stays W8A8), the block LayerNorm stays float.",
        "",
        "| config | per-char argmax agreement vs fp32 | mean KL(fp32 ‖ q) | rel. logit error |",
        "|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {r['name']} | {r['agree']:.4f} | {r['kl']:.2e} | {r['rel']:.4f} |")
    lines += [
        "",
        "Targets (issue 7): W8A8 ≥ 0.995, W4A8 ≥ 0.985.",
        "",
        "### Ablation: SSM-input and B/C scale granularity (W8A8)",
        "",
        "typeseg has no heads; any permutation of d_inner is compute-invariant, so sort-and-cluster runs on "
        "pseudo-heads of 64 channels (4 heads, 4 channel clusters each); the row above compares it with the "
        "per-tensor percentile scale on the same model and data. Mamba1's SSM input also feeds x_proj, whose GEMM "
        "takes one input scale: with clusters, x_proj gets u re-quantized to the per-tensor scale.",
        "",
        "Per-state-group scales need ngroups > 1, which typeseg lacks: a random-init Mamba2 with Mamba2-8B's layout "
        "scaled down (d_model 256, 4 layers, 8 heads of 64, ngroups 8, d_state 32), calibration and evaluation on "
        "disjoint random token ids. *plain*: HF's random init (every group and head alike); *structured*: in_proj's "
        "B/C rows scaled per group and x rows per head by fixed log-spaced factors in [0.1, 10] (a different model, "
        "stated: trained models have such spreads, random init does not).",
        "",
        "| model | scales | rel. logit error | mean KL |",
        "|---|---|---|---|",
    ]
    for r in abl:
        lines.append(f"| {r['model']} | {r['name']} | {r['rel']:.4f} | {r['kl']:.2e} |")
    lines += [
        "",
        "Reading the ablation: the finer scales act on the conv output (the SSD input x, and B / C) only; in_proj's "
        "outputs (x, B, C before the conv, z, dt) keep Quamba2's one scale per segment, so a spread across heads or "
        "groups still costs precision there, which bounds what the finer conv-output scales can recover (the "
        "*structured* rows stay far from fp32). On the plain random init, heads and groups are statistically alike "
        "and the four variants are within noise of each other. On typeseg (real weights, but calibration and "
        "evaluation on different text) per-cluster absmax scales fitted on the calibration text can saturate on "
        "the evaluation text, where the per-tensor percentile scale has headroom: compare the sort-and-cluster row "
        "with W8A8 above.",
        "",
        END,
        "",
    ]
    return "\n".join(lines)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--part", choices=["typeseg", "ablation"], help="run one part and --save it (no doc update)")
    ap.add_argument("--configs", help="with --part typeseg: ';'-separated row names (default all)")
    ap.add_argument("--save", type=Path, help="JSON file for --part")
    ap.add_argument("--assemble", type=Path, nargs="+", help="write the doc section from saved parts")
    args = ap.parse_args()
    t0 = time.time()
    if not tp.have_typeseg():
        print("typeseg is not installed (scripts/setup)", file=sys.stderr)
        return 1
    if args.part:
        if args.part == "typeseg":
            only = args.configs.split(";") if args.configs else None
            rows, info = typeseg_runs(only)
            part: dict[str, Any] = {"rows": rows, "info": info}
        else:
            part = {"ablation": mamba2_ablation()}
        part["minutes"] = (time.time() - t0) / 60
        part["stand_ins"] = lm.using_stand_ins()
        args.save.write_text(json.dumps(part, indent=2))
        return 0
    if args.assemble:
        parts = [json.loads(p.read_text()) for p in args.assemble]
        order = list(typeseg_configs())
        by_name = {r["name"]: r for p in parts for r in p.get("rows", [])}
        rows = sorted(by_name.values(), key=lambda r: order.index(r["name"]))
        info = next(p["info"] for p in parts if "info" in p)
        abl = [r for p in parts for r in p.get("ablation", [])]
        minutes = sum(p["minutes"] for p in parts)
    else:
        rows, info = typeseg_runs()
        abl = mamba2_ablation()
        minutes = (time.time() - t0) / 60
    text = section(rows, info, abl, minutes)
    old = OUT.read_text(encoding="utf-8") if OUT.exists() else ""
    if BEGIN in old and END in old:
        new = old[: old.index(BEGIN)] + text + old[old.index(END) + len(END) + 1 :]
    else:
        new = old.rstrip("\n") + "\n\n" + text
    OUT.write_text(new, encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
