"""Cross-entropy."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.registry import LOSSES


@LOSSES.register("ce")
class CrossEntropy(LTLoss):
    """ℓ = −log softmax(z)_y."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target)
