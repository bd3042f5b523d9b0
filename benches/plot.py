#!/usr/bin/env python3
"""Plot a lowbit-bench result: speedup vs M, one panel per shape, one line per kernel.

Usage:
    python3 benches/plot.py docs/results/h100-sxm/weight-only.json \
        [--baseline cublas-f16] [--out FILE.png]

Reads the JSON written by ``lowbit-bench`` (schema version 1) and writes
``<suite>.png`` next to it (or ``--out``): for every shape a panel with M on a
log2 x-axis and ``speedup = baseline_us / time_us`` on the y-axis, one line per
op (e.g. ``w4a16-int-g128``; of a suite that times several mappings, the automatic
one), a dashed line at 1.0 (the baseline) and hollow red
markers on points whose correctness spot check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

SCHEMA_VERSION = 1


def load(path: Path) -> dict[str, Any]:
    """Load a report and check its schema version."""
    with path.open(encoding="utf-8") as f:
        report: dict[str, Any] = json.load(f)
    version = report.get("schema_version")
    if version != SCHEMA_VERSION:
        msg = f"{path}: schema_version {version!r}, this script reads {SCHEMA_VERSION}"
        raise SystemExit(msg)
    return report


def shape_titles(report: dict[str, Any]) -> dict[tuple[int, int], str]:
    """Map (n, k) to a panel title naming the layers with that shape."""
    titles: dict[tuple[int, int], str] = {}
    for shape in report.get("shapes", []):
        key = (int(shape["n"]), int(shape["k"]))
        layers = "; ".join(shape.get("layers", []))
        titles[key] = f"N={key[0]} K={key[1]}" + (f"\n{layers}" if layers else "")
    return titles


Point = tuple[int, float, bool]
"""One point of a line: (M, speedup, spot check failed)."""

Series = dict[tuple[int, int], dict[str, list[Point]]]
"""Lines per shape: {(n, k): {op: [points sorted by M]}}."""


def series(rows: list[dict[str, Any]], baseline: str) -> Series:
    """Group the rows measured against ``baseline`` into lines per shape."""
    out: Series = defaultdict(lambda: defaultdict(list))
    # Suites that time several mappings of one op (bipolar: planes / int8 / auto) plot the automatic choice,
    # the one a user gets; a suite without "auto" rows keeps every mapping, each its own line.
    has_auto = any(row.get("mapping") == "auto" for row in rows)
    for row in rows:
        if row.get("baseline") != baseline:
            continue
        mapping = row.get("mapping")
        if has_auto and mapping != "auto":
            continue
        speedup = float(row["speedup"])
        if not math.isfinite(speedup) or speedup <= 0:
            continue
        failed = row.get("check_ok") is False
        shape = (int(row["n"]), int(row["k"]))
        label = (
            str(row["op"]) if mapping in (None, "auto") else f"{row['op']}/{mapping}"
        )
        out[shape][label].append((int(row["m"]), speedup, failed))
    for ops in out.values():
        for points in ops.values():
            points.sort()
    return out


def plot(report: dict[str, Any], baseline: str, out_path: Path) -> Path:
    """Draw the speedup panels and save them to ``out_path``."""
    import matplotlib as mpl

    mpl.use("Agg")
    import matplotlib.pyplot as plt

    data = series(report.get("rows", []), baseline)
    if not data:
        msg = f"no rows with baseline {baseline!r}"
        raise SystemExit(msg)
    titles = shape_titles(report)
    shapes = [s for s in titles if s in data] + [s for s in data if s not in titles]
    cols = min(2, len(shapes))
    nrows = math.ceil(len(shapes) / cols)
    size = (6.4 * cols, 4.2 * nrows)
    fig, axes = plt.subplots(nrows, cols, figsize=size, squeeze=False)
    for ax, shape in zip(axes.flat, shapes, strict=False):
        for op, points in sorted(data[shape].items()):
            ms = [p[0] for p in points]
            speedups = [p[1] for p in points]
            (line,) = ax.plot(ms, speedups, marker="o", markersize=4, label=op)
            bad = [p for p in points if p[2]]
            if bad:
                ax.scatter(
                    [p[0] for p in bad],
                    [p[1] for p in bad],
                    s=80,
                    facecolors="none",
                    edgecolors="red",
                    zorder=3,
                    label=f"{op}: check failed",
                )
            line.set_linewidth(1.5)
        ax.axhline(1.0, color="black", linestyle="--", linewidth=1)
        ax.set_xscale("log", base=2)
        ax.set_xlabel("M (rows of X)")
        ax.set_ylabel(f"speedup vs {baseline}")
        ax.set_title(titles.get(shape, f"N={shape[0]} K={shape[1]}"), fontsize=9)
        ax.grid(visible=True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(shapes) :]:
        ax.set_visible(False)
    card = report.get("card", {})
    suite, started = report.get("suite", "?"), report.get("started_utc", "")
    fig.suptitle(f"{suite} on {card.get('name', '?')} ({started})", fontsize=11)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
    return out_path


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("json", type=Path, help="a lowbit-bench result file")
    parser.add_argument(
        "--baseline", default="cublas-f16", help="the speedups' reference"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="output PNG (default: <json>.png)"
    )
    args = parser.parse_args(argv)
    report = load(args.json)
    out_path: Path = args.out if args.out is not None else args.json.with_suffix(".png")
    try:
        written = plot(report, args.baseline, out_path)
    except ImportError as e:
        print(f"plot.py: matplotlib is not available: {e}", file=sys.stderr)
        return 1
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
