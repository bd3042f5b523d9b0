#!/usr/bin/env python3
"""Turns the JSON lines of `benches/micro/bipolar.sh suite` into docs/results/<card>/bipolar.{json,md}.

usage: python3 benches/micro/bipolar_report.py <log> <out_dir>

Every ratio is same-run, same-card: the baselines (direct cuBLASLt int8 with its heuristic algorithm, cuBLAS fp16
GemmEx) are timed by the same program right before the kernels of the same shape. The int8 mapping's time is the
lowbit int8 core's W8 time for the shape (the same kernel the mapping launches; only its epilogue vectors differ);
this harness does not time W8A8 (the library runs it through the int8 mapping with a second rank-1
epilogue term; `lowbit-bench bipolar` times it). "best" is the faster of the two mappings (what the chooser should pick).
"""
import json
import sys
from pathlib import Path

BITS = [1, 2, 3, 4, 8]


def main() -> None:
    log, out = Path(sys.argv[1]), Path(sys.argv[2])
    rows = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    out.mkdir(parents=True, exist_ok=True)
    card = rows[0]["card"] if rows else "?"
    (out / "bipolar.json").write_text(json.dumps({"card": card, "source": "benches/micro/bipolar.cu", "rows": rows},
                                                 indent=1) + "\n")
    shapes = []
    for r in rows:
        s = (r["m"], r["n"], r["k"])
        if s not in shapes:
            shapes.append(s)
    md = [f"# bipolar-INT GEMM: {card}", "",
          "Source: `benches/micro/bipolar.sh suite` (one device call), tables by `benches/micro/bipolar_report.py`.",
          "Times are CUDA-event medians (µs); weights rotated over copies > 200 MB when small. Effective TOPS =",
          "2·M·N·K / t. Ratios are against the baselines of the same run on the same card. `planes` = BGMMA bit-plane",
          "mapping, `int8` = the int8 core (W8 kernel time of the shape), `best` = the faster one.", ""]
    for (m, n, k) in shapes:
        sel = [r for r in rows if (r["m"], r["n"], r["k"]) == (m, n, k)]
        get = {r["op"]: r["us"] for r in sel}
        lt, f16, i8 = get.get("cublaslt-int8", -1), get.get("cublas-f16", -1), get.get("lowbit-int8-core", -1)
        md += [f"## M = {m}, N = {n}, K = {k}", "",
               f"cuBLASLt int8 {lt:.1f} µs · cuBLAS fp16 {f16:.1f} µs · lowbit int8 core {i8:.1f} µs", "",
               "| op | planes µs | int8 µs | best µs | eff. TOPS | vs cuBLASLt int8 | vs cuBLAS fp16 |",
               "|---|---|---|---|---|---|---|"]
        for q in BITS:
            for p in BITS:
                op = f"w{q}a{p}-bipolar"
                pl = get.get(op)
                i8m = i8 if (i8 > 0 and not (p == 8 and q == 8)) else None
                cands = [t for t in (pl, i8m) if t is not None and t > 0]
                if not cands:
                    continue
                best = min(cands)
                tops = 2 * m * n * k / (best * 1e-6) / 1e12
                rl = f"{lt / best:.2f}x" if lt > 0 else "n/a"
                rf = f"{f16 / best:.2f}x" if f16 > 0 else "n/a"
                md.append(f"| {op} | {pl:.1f} | {i8m:.1f} | {best:.1f} | {tops:.0f} | {rl} | {rf} |".replace(
                    "None", "—") if pl is not None and i8m is not None else
                    f"| {op} | {pl if pl is not None else '—'} | {i8m if i8m is not None else '—'} | {best:.1f} | "
                    f"{tops:.0f} | {rl} | {rf} |")
        md.append("")
    (out / "bipolar.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
