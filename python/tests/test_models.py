"""End to end on real pretrained models (emulated path, CPU): all-MiniLM-L6-v2 and SmolLM2-135M.

Lean by design (CI has 2 cores): 64 evaluation sentences / 2×256 evaluation tokens; one calibration pass per model
(64 sentences / 16×256 tokens, `lowbit.calibrate`) shared by every config. `python/tools/accuracy.py` runs the
same experiments and writes docs/results/accuracy.md.
"""

from __future__ import annotations

import functools

import helpers
import pytest

pytestmark = pytest.mark.model

minilm = pytest.mark.skipif(not helpers.have_minilm(), reason="MiniLM not installed (scripts/setup)")
smollm2 = pytest.mark.skipif(not helpers.have_smollm2(), reason="SmolLM2 not installed (scripts/setup)")


@functools.cache
def _minilm(name: str, method: str) -> float:
    return helpers.minilm_run(helpers.minilm_configs()[name], method)


@functools.cache
def _smollm2(name: str, method: str) -> float:
    cfg = None if name == "fp32" else helpers.smollm2_configs()[name]
    return helpers.smollm2_run(cfg, method)


MINILM_RTN_FLOOR = {"W8 per-channel INT": 0.999, "W4 g128 INT": 0.95, "W4 g128 mixed": 0.95, "W3 g128 mixed": 0.85}


@minilm
@pytest.mark.parametrize("name", list(MINILM_RTN_FLOOR))
def test_minilm_rtn(name: str) -> None:
    cos = _minilm(name, "rtn")
    assert cos > MINILM_RTN_FLOOR[name], cos


@minilm
@pytest.mark.parametrize("name", ["W8 per-channel INT", "W4 g128 INT", "W4 g128 mixed", "W3 g128 mixed"])
def test_minilm_gptq_beats_rtn(name: str) -> None:
    rtn, gptq = _minilm(name, "rtn"), _minilm(name, "gptq")
    if name.startswith("W8"):
        assert gptq > 0.999, gptq  # W8 is near-lossless either way
    else:
        assert gptq > rtn, (gptq, rtn)


@minilm
def test_minilm_w4_g128_gptq_keeps_cosine() -> None:
    assert _minilm("W4 g128 INT", "gptq") >= 0.98


@minilm
@pytest.mark.parametrize("name", ["W4 g128 mixed", "W3 g128 mixed"])
def test_minilm_datatype_search_beats_rtn(name: str) -> None:
    assert _minilm(name, "search") > _minilm(name, "rtn")


@smollm2
def test_smollm2_w8_is_near_lossless() -> None:
    base = _smollm2("fp32", "rtn")
    assert 5 < base < 40, base
    assert _smollm2("W8 per-channel INT", "rtn") < base * 1.02


@smollm2
@pytest.mark.parametrize("name", ["W4 g64 INT", "W4 g64 mixed", "W3 g64 mixed"])
def test_smollm2_gptq_beats_rtn(name: str) -> None:
    rtn, gptq = _smollm2(name, "rtn"), _smollm2(name, "gptq")
    assert gptq < rtn, (gptq, rtn)
    assert rtn < _smollm2("fp32", "rtn") * 3


@smollm2
@pytest.mark.parametrize("name", ["W3 g64 mixed"])
def test_smollm2_datatype_search_beats_rtn(name: str) -> None:
    assert _smollm2(name, "search") < _smollm2(name, "rtn")
