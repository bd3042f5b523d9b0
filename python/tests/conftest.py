from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))


@pytest.fixture
def cuda_device() -> str:
    """A CUDA device on which lowbit's kernels can run. Skips without one, unless LOWBIT_REQUIRE_GPU=1 (then the
    missing GPU is a failure)."""
    import torch

    import lowbit

    if torch.cuda.is_available() and lowbit.gpu_available():
        return "cuda:0"
    reason = f"no usable CUDA GPU (torch.cuda.is_available()={torch.cuda.is_available()})"
    if os.environ.get("LOWBIT_REQUIRE_GPU") == "1":
        pytest.fail(f"LOWBIT_REQUIRE_GPU=1: {reason}")
    pytest.skip(f"needs an NVIDIA GPU: {reason}")
