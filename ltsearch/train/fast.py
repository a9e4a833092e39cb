"""Speed switches of ``experiment.fast`` resolved for one device: bf16 autocast, channels-last
memory format, ``torch.compile``. None of them changes what is trained (autocast changes the
rounding of matmuls/convolutions, the others only change the order of floating-point sums).

- ``amp``: bf16 autocast of the training step and evaluation. ``auto``/``true``: on CUDA only;
  never on CPU (CPU bf16 autocast is slower than fp32 for these models). No GradScaler is needed
  for bf16.
- ``channels_last``: NHWC memory format for the networks and the batches. ``auto``: on when the
  model has 2-D convolutions (measured on CPU with ``ltsearch bench``: a ResNet-32 step 1.29×, a
  small_cnn step 1.19× faster; on GPU it is the layout cuDNN's fast bf16 kernels want).
- ``compile``: ``torch.compile`` each network's body and neck in place (state-dict keys unchanged);
  off by default: the first epoch pays the compilation.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from ltsearch.models.heads import Net


@dataclass(frozen=True)
class Fast:
    amp: bool = False
    channels_last: bool = False
    compile: bool = False
    device_type: str = "cpu"

    @property
    def memory_format(self) -> torch.memory_format:
        return torch.channels_last if self.channels_last else torch.contiguous_format

    def autocast(self) -> ContextManager[Any]:
        if not self.amp:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=torch.bfloat16)


def _has_conv2d(module: torch.nn.Module) -> bool:
    return any(isinstance(m, torch.nn.Conv2d) for m in module.modules())


def resolve_fast(spec: Any, device: torch.device, module: torch.nn.Module) -> Fast:
    """``spec``: an ``experiment.fast`` section (``FastSpec``) or None (the defaults)."""
    amp = getattr(spec, "amp", "auto")
    cl = getattr(spec, "channels_last", "auto")
    return Fast(
        amp=device.type == "cuda" and amp in ("auto", True),
        channels_last=_has_conv2d(module) if cl == "auto" else bool(cl),
        compile=bool(getattr(spec, "compile", False)),
        device_type=device.type,
    )


def apply_fast(module: torch.nn.Module, fast: Fast) -> torch.nn.Module:
    """Convert ``module``'s parameters to the memory format and compile its networks (in place)."""
    if fast.channels_last:
        module.to(memory_format=torch.channels_last)
    if fast.compile:
        for net in [m for m in module.modules() if isinstance(m, Net)]:
            net.body.compile()
            net.neck.compile()
    return module
