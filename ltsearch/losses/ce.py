"""Cross-entropy and focal loss."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss
from ltsearch.registry import LOSSES


@LOSSES.register("ce")
class CrossEntropy(LTLoss):
    """ℓ = −log softmax(z)_y."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits, target)


@LOSSES.register("focal")
class FocalLoss(LTLoss):
    """Softmax focal loss (Lin et al. 2017, as used by LDAM-DRW's baselines):
    ℓ = −(1 − p_y)^γ log p_y with p = softmax(z). ``gamma``: focusing strength (0 = CE)."""

    def __init__(self, class_counts, gamma: float = 1.0, weight=None):
        super().__init__(class_counts, weight)
        if gamma < 0:
            raise ValueError("focal gamma must be >= 0")
        self.gamma = float(gamma)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        per_sample = -((1 - logp.exp()) ** self.gamma) * logp
        return self.weighted_mean(per_sample, target)
