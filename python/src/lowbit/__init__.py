"""lowbit: quantization and low-bit CUDA kernels for PyTorch.

```python
import lowbit
report = lowbit.quantize_(model, lowbit.WeightOnly(bits=4, group_size=128))   # nn.Linear -> LowbitLinear
lowbit.save(model, "model.lowbit.safetensors")
lowbit.load("model.lowbit.safetensors", skeleton)
```

With `calib_data` (an iterable of model inputs) `quantize_` runs GPTQ (or the BitMoD datatype search with
`method="rtn"`). On a CUDA device with float16/bfloat16 activations the layers run lowbit's GPU kernels; everywhere
else an emulated path (exact dequantization + torch matmul) gives the same results without a GPU.
"""

from __future__ import annotations

from . import _C, ops
from .configs import W4A8, W8A8, Bipolar, GPTQOptions, Mamba, WeightOnly
from .modules import Int8Linear, LowbitLinear, PackedWeight
from .quantize import Calibration, LayerReport, QuantizeReport, calibrate, quantize_
from .serialization import load, save

__version__: str = _C.__version__


def gpu_available() -> bool:
    """Whether lowbit's kernels can run on a CUDA GPU in this process (never raises)."""
    return bool(_C.gpu_available())


def build_info() -> dict[str, object]:
    """nvcc version, compiled GPU targets, kernel ABI and whether the calibrator is built in."""
    return dict(_C.build_info())


__all__ = [
    "W4A8",
    "W8A8",
    "Bipolar",
    "Calibration",
    "GPTQOptions",
    "Int8Linear",
    "LayerReport",
    "LowbitLinear",
    "Mamba",
    "PackedWeight",
    "QuantizeReport",
    "WeightOnly",
    "build_info",
    "calibrate",
    "gpu_available",
    "load",
    "ops",
    "quantize_",
    "save",
]
