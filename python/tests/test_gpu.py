"""GPU: lowbit's kernels inside PyTorch, against the emulated path. Skipped without a GPU; LOWBIT_REQUIRE_GPU=1 makes
a missing GPU a failure (scripts/gpu-run --python)."""

from __future__ import annotations

import time

import helpers
import pytest
import torch
from torch import nn

import lowbit
from lowbit import ops

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("scheme", ["w4-int-g128", "w3-mixed-g128", "w8-int-pc", "w4-nf4-g64"])
@pytest.mark.parametrize("m", [1, 7, 64, 200])
def test_kernel_matches_emulated_linear(cuda_device: str, scheme: str, m: int) -> None:
    torch.manual_seed(0)
    w = torch.randn(384, 1536)
    q = lowbit.PackedWeight(lowbit._C.quantize(w.numpy().tobytes(), 384, 1536, scheme))
    x = torch.randn(m, 1536, device=cuda_device, dtype=torch.float16)
    before = ops.stats["kernel"]
    y = torch.ops.lowbit.weight_only_linear(x, q.handle, 384)
    assert ops.stats["kernel"] == before + 1
    ref = x.float() @ q.dense(torch.device(cuda_device), torch.float32).T
    torch.testing.assert_close(y.float(), ref, rtol=2e-2, atol=2e-2 * ref.abs().max().item())


def test_cuda_graph_capture(cuda_device: str) -> None:
    model = nn.Sequential(nn.Linear(512, 1024), nn.GELU(), nn.Linear(1024, 512)).to(cuda_device).half()
    lowbit.quantize_(model, lowbit.WeightOnly(bits=4, group_size=128), progress=False)
    x = torch.randn(4, 512, device=cuda_device, dtype=torch.float16)
    s = torch.cuda.Stream()
    s.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(s):
        eager = model(x)  # warm-up outside capture (device copies of the weights are made here)
    torch.cuda.current_stream().wait_stream(s)
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        out = model(x)
    x.copy_(torch.randn_like(x))
    g.replay()
    torch.testing.assert_close(out, model(x), rtol=0, atol=0)
    assert eager.shape == out.shape


@pytest.mark.skipif(not helpers.have_minilm(), reason="MiniLM not installed")
def test_minilm_kernels_match_emulated(cuda_device: str) -> None:
    model, tok = helpers.minilm()
    model = model.to(cuda_device).half()
    lowbit.quantize_(model, lowbit.WeightOnly(bits=4, group_size=128), progress=False)
    batches = helpers.minilm_batches(tok, helpers.lines("fortunes-eval.txt"), device=cuda_device)
    before = ops.stats["kernel"]
    kern = helpers.minilm_embed(model, batches)
    assert ops.stats["kernel"] > before
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOWBIT_EMULATE", "1")
        emu = helpers.minilm_embed(model, batches)
    cos = helpers.mean_cosine(kern, emu)
    print(f"MiniLM w4-int-g128 fp16: kernel vs emulated embedding cosine {cos:.6f}")
    assert cos > 0.9995, cos


@pytest.mark.skipif(not helpers.have_smollm2(), reason="SmolLM2 not installed")
def test_smollm2_kernels_match_emulated_and_decode_faster_than_fp16(cuda_device: str) -> None:
    model, tok = helpers.smollm2()
    model = model.to(cuda_device).half()
    windows = helpers.token_windows(tok, "python-docs-eval.txt", 256, 2)
    dense = _decode_ms(model, tok, cuda_device)
    base = helpers.perplexity(model, windows)
    lowbit.quantize_(model, lowbit.WeightOnly(bits=4, group_size=64), filter_fn=helpers.not_lm_head, progress=False)
    ppl_kernel = helpers.perplexity(model, windows)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("LOWBIT_EMULATE", "1")
        ppl_emul = helpers.perplexity(model, windows)
    quant = _decode_ms(model, tok, cuda_device)
    name = torch.cuda.get_device_name(0)
    print(
        f"SmolLM2 w4-int-g64 on {name}: ppl fp16 {base:.3f}, kernel {ppl_kernel:.3f}, emulated {ppl_emul:.3f}; "
        f"batch-1 decode {quant:.2f} ms/token vs fp16 {dense:.2f} ms/token ({dense / quant:.2f}x)"
    )
    assert abs(ppl_kernel - ppl_emul) / ppl_emul < 0.01
    assert quant < dense, (quant, dense)


@torch.no_grad()
def _decode_ms(model: nn.Module, tok: object, device: str, steps: int = 64) -> float:
    """Batch-1 greedy decode with a KV cache: milliseconds per generated token (CUDA events, after a warm-up)."""
    ids = tok("def fibonacci(n):", return_tensors="pt").input_ids.to(device)  # type: ignore[operator]
    model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    model.generate(ids, max_new_tokens=steps, min_new_tokens=steps, do_sample=False)
    end.record()
    torch.cuda.synchronize()
    assert time.perf_counter() - t0 > 0
    return start.elapsed_time(end) / steps
