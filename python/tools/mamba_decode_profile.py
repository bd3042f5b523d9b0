"""Per-kernel profile of the Mamba2-2.7B-shaped decode step (fp16 vs lowbit W4A8) and T = 1 timings of the
row kernels (gated RMSNorm -> int8, act_quant, the fused residual add -> RMSNorm -> int8), on a CUDA GPU.

    python python/tools/mamba_decode_profile.py [--layers 4] [--steps 5] [--variants fp16,w4a8] [--prefill N]

The model is randomly initialised with `--layers` layers of the real shape (d_model 2560, 80 heads of 64,
d_state 128, ngroups 1); the profile table (torch.profiler, CUDA time per kernel name) covers `--steps` eager
decode steps after a 16-token prefill, so a per-layer figure is a row's total / (steps x layers). The kernel
timings replay a CUDA graph of 200 launches (no launch overhead) and print microseconds per launch. With
`--prefill N` the profile covers `--steps` prefills of N tokens (batch 1) instead of decode steps. Variants: fp16,
w8a8, w4a8, w4a16.
"""

from __future__ import annotations

import argparse
import copy
import sys
import warnings
from functools import partial

import torch
from transformers import DynamicCache, Mamba2Config, Mamba2ForCausalLM

import lowbit
from lowbit import ops, ssm_ops


def kernel_times(dev: torch.device) -> None:
    g = torch.Generator(device="cpu").manual_seed(0)

    def graph_us(fn, n: int = 200) -> float:  # type: ignore[no-untyped-def]
        s = torch.cuda.Stream(dev)
        s.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(s):
            fn()
        torch.cuda.current_stream(dev).wait_stream(s)
        cg = torch.cuda.CUDAGraph()
        with torch.cuda.graph(cg):
            for _ in range(n):
                fn()
        cg.replay()
        torch.cuda.synchronize(dev)
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(5):
            cg.replay()
        b.record()
        torch.cuda.synchronize(dev)
        return a.elapsed_time(b) * 1000 / (5 * n)

    for t in (1, 3, 64, 1024):
        y = torch.randn(t, 5120, generator=g).half().to(dev)
        z = torch.randint(-127, 128, (t, 5120), generator=g, dtype=torch.int8).to(dev)
        w = torch.rand(5120, generator=g).to(dev) + 0.5
        x = torch.randn(t, 2560, generator=g).half().to(dev)
        gam = (torch.rand(2560, generator=g) + 0.5).half().to(dev)
        res = torch.randn(t, 2560, generator=g).to(dev)
        out = torch.empty_like(res)
        gn = graph_us(partial(ssm_ops.gated_rmsnorm_quant, y, z, 0.03, w, 5120, 1e-5, True, 1024, 0.03))
        aq = graph_us(partial(ops.act_quant, x, None, gam, 1e-6, 512, 0.03))
        rq = graph_us(partial(ssm_ops.residual_rmsnorm_quant, res, x, gam, 1e-6, 512, 0.03, torch.float16, out))
        print(
            f"T={t:5d}: gated_rmsnorm_quant [T,5120] H=1024 {gn:7.2f} us | act_quant [T,2560] H=512 static "
            f"{aq:7.2f} us | residual_rmsnorm_quant [T,2560] H=512 {rq:7.2f} us",
            flush=True,
        )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--variants", default="fp16,w4a8")
    ap.add_argument("--no-kernels", action="store_true", help="skip the T = 1 kernel timings")
    ap.add_argument("--prefill", type=int, default=0, help="profile prefills of this many tokens instead of decode")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("mamba_decode_profile: needs a CUDA GPU", file=sys.stderr)
        return 2
    dev = torch.device("cuda")
    print(f"device: {torch.cuda.get_device_name(dev)}", flush=True)
    if not args.no_kernels:
        kernel_times(dev)
    cfg = Mamba2Config(
        vocab_size=50288, hidden_size=2560, num_hidden_layers=args.layers, expand=2, head_dim=64, num_heads=80,
        n_groups=1, state_size=128, chunk_size=256, conv_kernel=4,
    )  # fmt: skip
    torch.manual_seed(0)
    base = Mamba2ForCausalLM(cfg).half().to(dev).eval()
    for name in args.variants.split(","):
        model = copy.deepcopy(base)
        if name != "fp16":
            bits, a_bits = {"w8a8": (8, 8), "w4a8": (4, 8), "w4a16": (4, 16)}[name]
            calib = [torch.randint(0, 50288, (1, 256), generator=torch.Generator().manual_seed(2)).to(dev)]
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                lowbit.quantize_(
                    model, lowbit.Mamba(w_bits=bits, a_bits=a_bits, gptq=False, quantize_head=True), calib_data=calib,
                    progress=False,
                )  # fmt: skip
        ids = torch.randint(0, 50288, (1, 16), generator=torch.Generator().manual_seed(0)).to(dev)
        step = ids[:, :1]
        long_ids = torch.randint(0, 50288, (1, max(args.prefill, 1)), generator=torch.Generator().manual_seed(1))
        long_ids = long_ids.to(dev)
        with torch.no_grad():
            cache = DynamicCache(config=model.config)
            model(input_ids=ids, cache=cache, use_cache=True)
            for _ in range(3):
                model(input_ids=step, cache=cache, use_cache=True)
            torch.cuda.synchronize(dev)
            if args.prefill:
                model(input_ids=long_ids, cache=DynamicCache(config=model.config), use_cache=True)
                torch.cuda.synchronize(dev)
            with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
                for _ in range(args.steps):
                    if args.prefill:
                        model(input_ids=long_ids, cache=DynamicCache(config=model.config), use_cache=True)
                    else:
                        model(input_ids=step, cache=cache, use_cache=True)
                torch.cuda.synchronize(dev)
        what = f"prefills of {args.prefill} tokens" if args.prefill else "decode steps"
        print(f"===== {name}: {args.steps} {what}, {args.layers} layers", flush=True)
        print(prof.key_averages().table(sort_by="cuda_time_total", row_limit=30, max_name_column_width=90))
        del model
        torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
