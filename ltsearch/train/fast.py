"""Speed switches of ``experiment.fast`` resolved for one device: bf16 autocast, channels-last
memory format, ``torch.compile``. None of them changes what is trained (autocast changes the
rounding of matmuls/convolutions, the others only change the order of floating-point sums).

- ``amp``: bf16 autocast of the training step and evaluation. ``auto``: on CUDA only (CPU bf16
  autocast is slower than fp32 for these models); ``true``: on any device, on CPU as
  ``torch.autocast("cpu", dtype=torch.bfloat16)`` — the same code path as on a GPU, which is how
  the CPU test suite checks every method under bf16 (``tests/test_fast_paths.py``); ``false``: off.
  No GradScaler is needed for bf16.
- ``channels_last``: NHWC memory format for the networks and the batches. ``auto``: on when the
  model has 2-D convolutions (measured on CPU with ``ltsearch bench``: a ResNet-32 step 1.29×, a
  small_cnn step 1.19× faster; on GPU it is the layout cuDNN's fast bf16 kernels want).
- ``compile``: ``torch.compile`` each network's body and neck in place (state-dict keys unchanged);
  off by default: the first epoch pays the compilation. The backend is :data:`COMPILE_BACKEND`
  (inductor, torch's default); the CPU tests swap in a graph-counting ``aot_eager`` backend, which
  traces the same graphs (dynamo + AOT autograd) without generating C++.

  Graphs: each compiled module gets one graph per phase — training (grad on, BatchNorm in train
  mode), evaluation (``no_grad``, eval mode), and for the decoupled methods the frozen backbone of
  stage 2 (parameters without grad) — times two batch shapes (the first batch size, then one graph
  with a dynamic batch dimension once another size is seen): with bf16, 6 graphs for body + neck
  of a one-stage method, 8 for a two-stage one; BWLM in float32 needs 10 (a CPU convolution guard
  gives its batches under 16 their own graph); measured on CPU with ``aot_eager``. Every compiled
  module runs through the same wrapper function, whose cache dynamo limits to
  ``torch._dynamo.config.recompile_limit`` graphs (8) *in total*: BWLM's last two graphs silently
  ran eagerly. :func:`apply_fast` raises the limit to :data:`RECOMPILE_LIMIT`, room for a
  few architectures in one process (a Ray worker with ``reuse_actors``; another trial of the same
  architecture reuses the graphs: measured 0 new ones), while a recompilation storm (a graph per
  step) still stops there. ``tests/test_fast_paths.py`` counts the graphs of every method.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, ContextManager

import torch

from ltsearch.models.heads import Net

COMPILE_BACKEND: Any = "inductor"  # a torch.compile backend: a name or a callable (tests count graphs with one)
RECOMPILE_LIMIT = 64  # graphs dynamo may compile for the compiled bodies and necks together (its default: 8)


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
        amp=amp is True or (amp == "auto" and device.type == "cuda"),
        channels_last=_has_conv2d(module) if cl == "auto" else bool(cl),
        compile=bool(getattr(spec, "compile", False)),
        device_type=device.type,
    )


def apply_fast(module: torch.nn.Module, fast: Fast) -> torch.nn.Module:
    """Convert ``module``'s parameters to the memory format and compile its networks (in place)."""
    if fast.channels_last:
        module.to(memory_format=torch.channels_last)
    if fast.compile:
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, RECOMPILE_LIMIT)
        for net in [m for m in module.modules() if isinstance(m, Net)]:
            net.body.compile(backend=COMPILE_BACKEND)
            net.neck.compile(backend=COMPILE_BACKEND)
    return module
