"""LDAM: label-distribution-aware margin loss (Cao et al. 2019, kaidic/LDAM-DRW)."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.params import Positive
from ltsearch.registry import LOSSES


@LOSSES.register("ldam")
class LDAMLoss(LTLoss):
    """Margins Δ_i ∝ n_i^{-1/4}, scaled so that max Δ = ``max_m``; the true-class logit is reduced
    by Δ_y and all logits are scaled by ``s``: ℓ = CE(s·(z − Δ_y·1_y), y). Meant for a normalised
    (cosine) head, whose logits lie in [−1, 1]."""

    def __init__(self, class_counts, max_m: Positive = 0.5, s: Positive = 30.0, weight=None):
        super().__init__(class_counts, weight)
        m = 1.0 / self.counts.double().pow(0.25)
        self.register_buffer("margins", (m * (max_m / m.max())).float())
        self.s = float(s)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)
        adjusted = logits - onehot * self.margins.to(logits.dtype)[target][:, None]
        return self.ce(self.s * adjusted, target)
