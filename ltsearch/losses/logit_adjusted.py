"""Losses that shift logits by the class prior: balanced softmax."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.registry import LOSSES


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(LTLoss):
    """Balanced Softmax (Ren et al. 2020): CE on z + log n_i (the training class counts)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits + self.counts.log().to(logits.dtype), target)
