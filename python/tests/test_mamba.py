"""lowbit.Mamba (Quamba2-style SSM quantization) on random-init HF Mamba1 / Mamba2 models and the real typeseg tagger.

Tolerances: relative L2 error of the logits vs fp32. Random-init tiny models have unstructured weights, so 4-bit
weights alone cost ~10-30% (the W4A16 row shows the weight-only part); the bounds are about 1.5x what the
emulated path measures here, so a broken scale, permutation or cache path (errors of order 1) fails them.
"""

from __future__ import annotations

import copy
import inspect
import warnings
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch
from torch import nn

import lowbit
from lowbit import mamba as lm

transformers = pytest.importorskip("transformers")

VOCAB = 97


def _mamba1() -> nn.Module:
    torch.manual_seed(1)
    cfg = transformers.MambaConfig(
        vocab_size=VOCAB, hidden_size=64, num_hidden_layers=2, expand=2, state_size=8, conv_kernel=4, time_step_rank=8
    )
    return transformers.MambaForCausalLM(cfg).eval()


def _mamba2() -> nn.Module:
    torch.manual_seed(2)
    cfg = transformers.Mamba2Config(
        vocab_size=VOCAB,
        hidden_size=64,
        num_hidden_layers=2,
        expand=2,
        head_dim=16,
        num_heads=8,
        n_groups=2,
        state_size=16,
        chunk_size=8,
        conv_kernel=4,
    )
    model = transformers.Mamba2ForCausalLM(cfg).eval()
    for layer in model.backbone.layers:
        if not hasattr(layer.mixer.norm, "group_size"):
            layer.mixer.norm = _GroupGatedRMSNorm(layer.mixer.norm, layer.mixer.intermediate_size // cfg.n_groups)
    return model


class _GroupGatedRMSNorm(nn.Module):
    """Mamba2's gated RMSNorm over each SSD group (`group_size` = d_inner / n_groups), as in mamba_ssm and in
    transformers 5.24's `MambaRMSNormGated`. transformers 5.17's torch path normalizes over all of d_inner instead
    (the same for n_groups = 1, not for the n_groups = 2 test model), so on 5.17 the float reference gets this norm;
    lowbit's mixers compute the per-group norm on every version."""

    def __init__(self, hf_norm: nn.Module, group_size: int) -> None:
        super().__init__()
        self.weight = hf_norm.weight
        self.variance_epsilon = hf_norm.variance_epsilon
        self.group_size = group_size

    def forward(self, hidden_states: torch.Tensor, gate: Optional[torch.Tensor] = None) -> torch.Tensor:
        dtype = hidden_states.dtype
        h = hidden_states.float()
        if gate is not None:
            h = h * torch.nn.functional.silu(gate.float())
        g = h.view(*h.shape[:-1], -1, self.group_size)
        g = g * torch.rsqrt(g.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * g.view(h.shape).to(dtype)


def _cached(model: nn.Module, ids: torch.Tensor, cache: Any) -> Any:
    """`model(ids, use_cache=True)` with `cache` under the keyword the installed transformers gives it (`cache`
    in 5.24, `cache_params` in 5.17, whose forward would swallow an unknown `cache=` in its `**kwargs`)."""
    key = "cache" if "cache" in inspect.signature(type(model).forward).parameters else "cache_params"
    return model(ids, use_cache=True, **{key: cache})


def _cache_of(out: Any) -> Any:
    """The cache an HF forward returned: `out.cache` (transformers 5.24) or `out.cache_params` (5.17)."""
    return out.cache if hasattr(out, "cache") else out.cache_params


MODELS = {"mamba1": _mamba1, "mamba2": _mamba2}
CONFIGS = {
    "w8a8": (lowbit.Mamba(w_bits=8, a_bits=8), 0.10),
    "w4a8": (lowbit.Mamba(w_bits=4, a_bits=8, group_size=32), 0.45),
    "w4a16": (lowbit.Mamba(w_bits=4, a_bits=16, group_size=32), 0.45),
}


def _calib(n: int = 3, length: int = 19) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(7)
    return [torch.randint(0, VOCAB, (2, length), generator=g) for _ in range(n)]


def _ids(length: int = 13) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, length), generator=torch.Generator().manual_seed(3))


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / a.float().norm())


def _quantized(kind: str, config: lowbit.Mamba) -> tuple[nn.Module, nn.Module]:
    model = MODELS[kind]()
    q = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowbit.quantize_(q, config, calib_data=_calib(), progress=False)
    return model, q


def _mixer_input(model: nn.Module, ids: torch.Tensor, layer: int = 0) -> torch.Tensor:
    bb = model.backbone
    with torch.no_grad():
        return bb.layers[layer].norm(bb.embeddings(ids))


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_float_replay_matches_hf_mixer(kind: str) -> None:
    model = MODELS[kind]()
    h = _mixer_input(model, _ids())
    mixer = model.backbone.layers[0].mixer
    with torch.no_grad():
        ref = mixer(h)
        mine = lm._m1_forward(lm.spec_of(mixer), h) if kind == "mamba1" else lm._m2_forward(lm.spec_of(mixer), h)
    assert _rel(ref, mine) < 1e-5


def test_fwht_is_an_orthonormal_symmetric_transform() -> None:
    x = torch.randn(3, 96)
    for block in (2, 8, 32):
        y = lm.fwht(x, block)
        torch.testing.assert_close(lm.fwht(y, block), x, atol=1e-5, rtol=1e-5)  # H·H = I
        torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), atol=1e-4, rtol=1e-5)
    h = lm.fwht(torch.eye(16), 16)
    torch.testing.assert_close(h, h.T)
    assert lm.hadamard_block(2560) == 512 and lm.hadamard_block(5120) == 1024 and lm.hadamard_block(33) == 1
    with pytest.raises(ValueError):
        lm.fwht(x, 64)


def test_mamba2_reordering_alone_is_compute_invariant() -> None:
    model = _mamba2()
    h = _mixer_input(model, _ids(11))
    p = lm.spec_of(model.backbone.layers[0].mixer)
    stat = torch.rand(p.d_inner)
    snc = lm.sort_and_cluster(stat, p.ngroups, p.nheads // p.ngroups, p.headdim, 2, 4)
    assert snc["head_perm"] != list(range(p.nheads)) or snc["channel_perm"] != list(range(p.d_inner))
    q = lm.reorder_mamba2(p, snc["head_perm"], snc["channel_perm"])
    with torch.no_grad():
        torch.testing.assert_close(lm._m2_forward(q, h), lm._m2_forward(p, h), atol=1e-5, rtol=1e-5)
    # channels that leave their head are rejected
    bad = list(range(p.d_inner))
    bad[0], bad[p.headdim] = bad[p.headdim], bad[0]
    with pytest.raises(ValueError):
        lm.reorder_mamba2(p, list(range(p.nheads)), bad)


def test_mamba1_reordering_alone_is_compute_invariant() -> None:
    model = _mamba1()
    h = _mixer_input(model, _ids(11))
    p = lm.spec_of(model.backbone.layers[0].mixer)
    perm = torch.randperm(p.d_inner, generator=torch.Generator().manual_seed(0)).tolist()
    with torch.no_grad():
        torch.testing.assert_close(lm._m1_forward(lm.reorder_mamba1(p, perm), h), lm._m1_forward(p, h))


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_hadamard_fusion_alone_is_compute_invariant(kind: str) -> None:
    model = MODELS[kind]()
    h = _mixer_input(model, _ids(9))
    p = lm.spec_of(model.backbone.layers[0].mixer)
    q = lm.fuse_hadamard(p, lm.hadamard_block(p.w_in.shape[1]), lm.hadamard_block(p.w_out.shape[1]))
    assert q.had_in == 64 and q.had_out == 128
    fwd = lm._m1_forward if kind == "mamba1" else lm._m2_forward
    with torch.no_grad():
        torch.testing.assert_close(fwd(q, h), fwd(p, h), atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("cfg", list(CONFIGS))
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_quantized_model_stays_close_to_fp32(kind: str, cfg: str) -> None:
    config, tol = CONFIGS[cfg]
    model, q = _quantized(kind, config)
    mixers = [m for m in q.modules() if isinstance(m, (lm.QuantMamba1Mixer, lm.QuantMamba2Mixer))]
    kept = [m for m in q.modules() if lm._kind(m) is not None and isinstance(m.in_proj, lowbit.LowbitLinear)]
    assert (len(mixers), len(kept)) == ((0, 2) if config.a_bits == 16 else (2, 0))
    ids = _ids(13)
    with torch.no_grad():
        err = _rel(model(ids).logits, q(ids).logits)
    assert err < tol, f"{kind} {cfg}: relative logit error {err:.4f} >= {tol}"


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_w4a16_keeps_hf_mixers_with_lowbit_projections(kind: str) -> None:
    """W4A16 keeps HF's mixer modules (their forward and cache code) and swaps only the projections for
    `LowbitLinear` (Mamba1's dt_proj stays nn.Linear); the result equals the float model with the dequantized
    weights put into plain nn.Linear layers, prefill and cached decode."""
    model, q = _quantized(kind, CONFIGS["w4a16"][0])
    names = ("in_proj", "x_proj", "out_proj") if kind == "mamba1" else ("in_proj", "out_proj")
    ref = copy.deepcopy(model)
    for layer, ref_layer in zip(q.backbone.layers, ref.backbone.layers):
        mixer = layer.mixer
        assert type(mixer) is type(ref_layer.mixer) and not getattr(mixer, "lowbit_quantized", False)
        if kind == "mamba1":
            assert type(mixer.dt_proj) is nn.Linear
        for n in names:
            lin = getattr(mixer, n)
            assert isinstance(lin, lowbit.LowbitLinear) and lin.scheme == "w4-int-g32", (n, lin)
            with torch.no_grad():
                getattr(ref_layer.mixer, n).weight.copy_(lin.packed.dequantize())
    ids = _ids(9)
    with torch.no_grad():
        torch.testing.assert_close(q(ids).logits, ref(ids).logits, atol=1e-4, rtol=1e-4)
        c1, c2 = transformers.DynamicCache(config=q.config), transformers.DynamicCache(config=ref.config)
        o1, o2 = _cached(q, ids[:, :5], c1), _cached(ref, ids[:, :5], c2)
        for t in range(5, ids.shape[1]):
            o1 = _cached(q, ids[:, t : t + 1], _cache_of(o1))
            o2 = _cached(ref, ids[:, t : t + 1], _cache_of(o2))
            torch.testing.assert_close(o1.logits, o2.logits, atol=1e-4, rtol=1e-4)
    # quantizing again finds nothing left to quantize
    with pytest.raises(ValueError, match="no Mamba1 / Mamba2 mixer"):
        lowbit.quantize_(q, CONFIGS["w4a16"][0], calib_data=_calib(), progress=False)


@pytest.mark.parametrize("cfg", ["w8a8", "w4a16"])
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_decode_with_cache_equals_prefill(kind: str, cfg: str) -> None:
    _, q = _quantized(kind, CONFIGS[cfg][0] if cfg == "w8a8" else lowbit.Mamba(4, 16, group_size=32, gptq=False))
    ids = _ids(9)
    with torch.no_grad():
        full = q(ids).logits
        cache = transformers.DynamicCache(config=q.config)
        out = _cached(q, ids[:, :5], cache)
        steps = [out.logits]
        for t in range(5, ids.shape[1]):
            out = _cached(q, ids[:, t : t + 1], _cache_of(out))
            steps.append(out.logits)
        stepped = torch.cat(steps, dim=1)
    # int8 path: identical codes everywhere; y passes through f16 in both paths, the state update order differs
    assert _rel(full, stepped) < 2e-3
    with torch.no_grad():
        gen = q.generate(ids[:1, :4], max_new_tokens=5, do_sample=False)
        manual = ids[:1, :4]
        for _ in range(5):
            manual = torch.cat([manual, q(manual).logits[:, -1:].argmax(-1)], dim=1)
    assert torch.equal(gen, manual)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_layer_state_cache_adapter_decodes_like_prefill(kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The adapter for caches without the state getters (transformers 5.17: states read from `cache.layers[i]`)
    gives the same cached decode as the cache the installed transformers hands over; forced here by hiding the
    getters from the feature detection, so CI's transformers covers both adapters."""
    _, q = _quantized(kind, CONFIGS["w8a8"][0])
    ids = _ids(9)

    def run() -> torch.Tensor:
        with torch.no_grad():
            out = _cached(q, ids[:, :5], transformers.DynamicCache(config=q.config))
            steps = [out.logits]
            for t in range(5, ids.shape[1]):
                out = _cached(q, ids[:, t : t + 1], _cache_of(out))
                steps.append(out.logits)
        return torch.cat(steps, dim=1)

    native = run()
    seen: list[str] = []
    state_cache = lm._state_cache
    monkeypatch.setattr(lm, "_GETTERS", ("a_getter_no_cache_has",))
    monkeypatch.setattr(lm, "_state_cache", lambda c: seen.append(type(state_cache(c)).__name__) or state_cache(c))
    layered = run()
    assert seen and set(seen) == {"_LayerStateCache"}
    torch.testing.assert_close(layered, native, rtol=0, atol=0)


def test_cache_without_the_linear_attention_api_is_rejected() -> None:
    """A cache from before the linear-attention cache API (transformers 4's `MambaCache`: no `update_conv_state`)
    raises the named error, with the minimum transformers version in its message."""

    class MambaCache:
        def __init__(self) -> None:
            self.conv_states: list[torch.Tensor] = []
            self.ssm_states: list[torch.Tensor] = []

    _, q = _quantized("mamba2", CONFIGS["w8a8"][0])
    mixer = q.backbone.layers[0].mixer
    x = torch.randn(1, 3, 64)
    with pytest.raises(lm.UnsupportedTransformersError, match=r"transformers >= 5\.17\.0") as e:
        mixer(x, cache_params=MambaCache())
    assert isinstance(e.value, NotImplementedError) and lm.MIN_TRANSFORMERS == "5.17.0"
    assert lm._state_cache(None) is None


def test_whole_width_gated_norm_warns() -> None:
    """An HF Mamba2 mixer with n_groups > 1 whose gated norm has no `group_size` (transformers 5.17) gets a warning:
    the quantized mixer keeps the per-group norm."""

    class Mamba2Mixer(nn.Module):
        n_groups = 2

        def __init__(self, norm: nn.Module) -> None:
            super().__init__()
            self.norm = norm

    with pytest.warns(UserWarning, match="ignores n_groups=2"):
        lm._warn_whole_width_norm(Mamba2Mixer(nn.Identity()), "layers.0.mixer")
    grouped = nn.Identity()
    grouped.group_size = 64
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        lm._warn_whole_width_norm(Mamba2Mixer(grouped), "layers.0.mixer")


def test_sort_and_cluster_and_per_state_group_options_run() -> None:
    model = _mamba2()
    ids = _ids(13)
    errs = {}
    for name, cfg in {
        "quamba2": lowbit.Mamba(8, 8),
        "per_tensor": lowbit.Mamba(8, 8, sort_and_cluster=False, per_state_group=False),
    }.items():
        q = copy.deepcopy(model)
        lowbit.quantize_(q, cfg, calib_data=_calib(), progress=False)
        with torch.no_grad():
            errs[name] = _rel(model(ids).logits, q(ids).logits)
    assert all(e < 0.2 for e in errs.values()), errs


def test_fine_conv_input_scales() -> None:
    """fine_conv_input: in_proj's int8 x / B / C outputs (the conv input) take the conv output's granularity (x per
    sort-and-cluster cluster, B / C per SSD group); on a model whose group-0 B / C rows and half of the x heads are
    30x smaller, this measurably cuts the logit error vs Quamba2's one scale per segment."""
    model = _mamba2()
    with torch.no_grad():
        for layer in model.backbone.layers:
            m = layer.mixer
            d, n = m.intermediate_size, m.ssm_state_size
            w = m.in_proj.weight
            w[d : d + d // 2] /= 30.0  # heads 0..3 (group 0's x)
            w[2 * d : 2 * d + n] /= 30.0  # group 0's B rows
            w[2 * d + 2 * n : 2 * d + 3 * n] /= 30.0  # group 0's C rows
    ids = _ids(13)
    errs, qs = {}, {}
    for fine in (False, True):
        q = copy.deepcopy(model)
        lowbit.quantize_(q, lowbit.Mamba(8, 8, fine_conv_input=fine), calib_data=_calib(), progress=False)
        qs[fine] = q.backbone.layers[0].mixer
        with torch.no_grad():
            errs[fine] = _rel(model(ids).logits, q(ids).logits)
    d, gn, n = 128, 32, 16
    for fine, mx in qs.items():
        s_in = mx.xbc_in_scale
        # in_proj's per-column output scales carry the conv input scales (z | xBC | dt)
        assert torch.equal(mx.in_out_scale[d : 2 * d + 2 * gn], s_in)
        b0, b1 = float(s_in[d]), float(s_in[d + gn - 1])
        if fine:
            assert torch.unique(s_in[:d]).numel() > 1  # one per cluster
            assert torch.equal(s_in[d : d + n], torch.full((n,), b0)) and b1 > 10 * b0  # per group
        else:
            assert torch.unique(s_in[:d]).numel() == 1 and b0 == b1  # one per segment
    assert errs[True] < 0.7 * errs[False], errs
    # Mamba1 with pseudo-heads: the conv input x (in_proj's x rows) per cluster, as its output u
    for fine in (False, True):
        q1 = copy.deepcopy(_mamba1())
        cfg = lowbit.Mamba(8, 8, pseudo_headdim=32, fine_conv_input=fine)
        lowbit.quantize_(q1, cfg, calib_data=_calib(), progress=False)
        m1 = q1.backbone.layers[0].mixer
        assert torch.equal(m1.in_out_scale[:128], m1.x_scale)
        assert (torch.unique(m1.x_scale).numel() > 1) == fine


def test_bare_mixer() -> None:
    model = _mamba2()
    mixer = model.backbone.layers[1].mixer
    calib = [torch.randn(2, 17, 64) for _ in range(3)]
    q = lm.quantize_mixer(mixer, lowbit.Mamba(8, 8), calib)
    assert isinstance(q, lm.QuantMamba2Mixer) and q.gamma is None
    h = torch.randn(2, 11, 64)
    with torch.no_grad():
        assert _rel(mixer(h), q(h)) < 0.1
    with pytest.raises(ValueError, match="quantize_mixer"):
        lowbit.quantize_(mixer, lowbit.Mamba(8, 8), calib_data=calib)


def test_bad_configs_raise() -> None:
    with pytest.raises(ValueError):
        lowbit.Mamba(w_bits=8, a_bits=16)
    with pytest.raises(ValueError):
        lowbit.Mamba(w_bits=3)
    with pytest.raises(ValueError):
        lowbit.Mamba(a_bits=4)
    with pytest.raises(ValueError):
        lowbit.Mamba(head_clusters=0)
    with pytest.raises(ValueError):
        lowbit.Mamba(percentile=0.2)
    with pytest.raises(ValueError, match="calib_data"):
        lowbit.quantize_(_mamba1(), lowbit.Mamba(8, 8))
    with pytest.raises(ValueError, match="no Mamba"):
        lowbit.quantize_(nn.Sequential(nn.Linear(4, 4)), lowbit.Mamba(4, 16))
    with pytest.raises(ValueError, match="pseudo_headdim"):
        lowbit.quantize_(_mamba1(), lowbit.Mamba(8, 8, pseudo_headdim=48), calib_data=_calib(1))


# ---- typeseg: the real pretrained bidirectional Mamba-1 -------------------------------------------------------


def _typeseg():
    tp = pytest.importorskip("typeseg_port")
    if not tp.have_typeseg():
        pytest.skip("typeseg is not installed in .tools/models (scripts/setup)")
    return tp


@pytest.mark.model
def test_typeseg_port_matches_package_forward() -> None:
    tp = _typeseg()
    toks = tp.tokens("def f(x):\n    return x * 2\n<div>hi</div>\nSELECT 1;  -- end\n")
    ref = tp.reference_logits(toks)
    with torch.no_grad():
        out = tp.model()(torch.from_numpy(toks.astype(np.int64))[None])[0].numpy()
    assert np.abs(out - ref).max() < 1e-4 * max(1.0, float(np.abs(ref).max()))


@pytest.mark.model
def test_typeseg_w8a8_agreement() -> None:
    tp = _typeseg()
    from helpers import text

    model = tp.model()
    calib = tp.windows(text("python-docs-calib.txt"), 256, 4)
    evalw = tp.windows(text("python-docs-eval.txt"), 512, 2)
    q = copy.deepcopy(model)
    lowbit.quantize_(q, lowbit.Mamba(8, 8, percentile=0.99999), calib_data=calib, progress=False)
    assert isinstance(q.blocks[0].mixer, lm.QuantMamba1Mixer)
    with torch.no_grad():
        agree = np.mean([float((model(w).argmax(-1) == q(w).argmax(-1)).float().mean()) for w in evalw])
    assert agree >= 0.995, agree  # issue 7's W8A8 bar (python/tools/typeseg_accuracy.py measures more text)


# ---- GPU: kernels == emulated ------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.parametrize("cfg", ["w8a8", "w4a8", "w4a16"])
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_gpu_kernels_match_emulated(kind: str, cfg: str, cuda_device: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fp16 model quantized on the GPU: lowbit's kernels (prefill and cached decode) == the emulated path."""
    model = MODELS[kind]().to(cuda_device).half()
    calib = [c.to(cuda_device) for c in _calib()]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lowbit.quantize_(model, CONFIGS[cfg][0], calib_data=calib, progress=False)
    ids = _ids(37).to(cuda_device)

    def run() -> torch.Tensor:
        with torch.no_grad():
            cache = transformers.DynamicCache(config=model.config)
            out = _cached(model, ids[:, :30], cache)
            steps = [out.logits]
            for t in range(30, ids.shape[1]):
                out = _cached(model, ids[:, t : t + 1], _cache_of(out))
                steps.append(out.logits)
            return torch.cat(steps, dim=1).float()

    kern = run()
    monkeypatch.setenv("LOWBIT_EMULATE", "1")
    emu = run()
    assert torch.isfinite(kern).all()
    assert _rel(emu, kern) < 2e-2, f"{kind} {cfg}: kernels vs emulated {_rel(emu, kern):.4f}"


@pytest.mark.parametrize(
    "cfg",
    [
        lowbit.Mamba(w_bits=4, a_bits=8, group_size=32, quantize_head=True),
        lowbit.Mamba(w_bits=8, a_bits=8),
        lowbit.Mamba(w_bits=4, a_bits=16, group_size=32, gptq=False),
    ],
    ids=["w4a8-head", "w8a8", "w4a16"],
)
@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_save_load_round_trip(kind: str, cfg: lowbit.Mamba, tmp_path: Path) -> None:
    _, q = _quantized(kind, cfg)
    path = tmp_path / f"{kind}.lowbit.safetensors"
    lowbit.save(q, path)
    skel = MODELS[kind]()  # a fresh float model (seeded like the original: the test must not depend on that)
    for prm in skel.parameters():
        prm.data.normal_()
    lowbit.load(path, skel)
    assert [type(m).__name__ for m in skel.modules()] == [type(m).__name__ for m in q.modules()]
    want, got = q.state_dict(), skel.state_dict()
    assert sorted(got) == sorted(want)
    for k, t in want.items():
        assert got[k].dtype == t.dtype and torch.equal(got[k], t), k
    for (name, a), b in zip(q.named_modules(), skel.modules()):
        if isinstance(a, (lm.QuantMamba1Mixer, lm.QuantMamba2Mixer)):
            plain = {k: v for k, v in vars(a).items() if not k.startswith("_") and k != "training"}
            assert plain == {k: getattr(b, k) for k in plain}, name
        if isinstance(a, lowbit.LowbitLinear):
            for f, t in a.packed.tensors().items():
                assert torch.equal(b.packed.tensors()[f], t), f"{name}.{f}"
    ids = _ids(7)
    with torch.no_grad():
        torch.testing.assert_close(skel(ids).logits, q(ids).logits, rtol=0, atol=0)
        # the decode path (cache) too
        c1, c2 = transformers.DynamicCache(config=q.config), transformers.DynamicCache(config=skel.config)
        o1, o2 = _cached(q, ids[:, :5], c1), _cached(skel, ids[:, :5], c2)
        s1 = _cached(q, ids[:, 5:6], _cache_of(o1)).logits
        s2 = _cached(skel, ids[:, 5:6], _cache_of(o2)).logits
        torch.testing.assert_close(s2, s1, rtol=0, atol=0)


def test_load_rejects_a_skeleton_without_the_mixer(tmp_path: Path) -> None:
    _, q = _quantized("mamba2", CONFIGS["w8a8"][0])
    lowbit.save(q, tmp_path / "m.safetensors")
    skel = _mamba2()
    del skel.backbone.layers[1]
    with pytest.raises(ValueError, match=r"layers\.1"):
        lowbit.load(tmp_path / "m.safetensors", skel)


@pytest.mark.parametrize("kind", ["mamba1", "mamba2"])
def test_fused_blocks_equal_hf_block_forward(kind: str) -> None:
    """The fused block path (residual add + next norm + quantizer in one op) gives the same logits as HF's block
    forward over the same quantized mixers, in prefill, in decode steps with a cache and with a mask."""
    _, q = _quantized(kind, CONFIGS["w8a8"][0])
    blocks = [b for b in q.modules() if "forward" in vars(b)]
    assert len(blocks) == 2 and lm.link_fused_blocks(q) == 2
    ids = _ids(9)

    def run(model: nn.Module) -> list[torch.Tensor]:
        with torch.no_grad():
            outs = [model(ids).logits, model(ids, attention_mask=torch.ones_like(ids)).logits]
            cache = transformers.DynamicCache(config=model.config)
            out = _cached(model, ids[:, :5], cache)
            outs.append(out.logits)
            for t in range(5, 8):
                out = _cached(model, ids[:, t : t + 1], _cache_of(out))
                outs.append(out.logits)
            hs = model(ids, output_hidden_states=True).hidden_states
        return outs + list(hs)

    fused = run(q)
    for b in blocks:
        del b.forward  # back to HF's class forward
    plain = run(q)
    for a, b in zip(fused, plain):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
