"""Class-dependent temperatures (Ye et al. 2020)."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.params import NonNegative
from ltsearch.registry import LOSSES


@LOSSES.register("cdt")
class ClassDependentTemperature(LTLoss):
    """CDT loss (Ye et al. 2020, "Identifying and Compensating for Feature Deviation in Imbalanced
    Deep Learning"): ℓ = CE(z / a, y), the logit of class i divided by a_i = (N_max / N_i)^γ during
    training only; predict with the raw logits z. The whole logit is divided, a linear head's bias
    included (see ``ltsearch.losses.hrdc`` for the bias and the schedule length the compensation needs).

    ``gamma``: γ ≥ 0; 0 gives CE, larger γ makes tail classes need larger logits in training. The
    default 0.2 is ltsearch's starting value to search from, not a value taken from Ye et al.
    """

    def __init__(self, class_counts, gamma: NonNegative = 0.2, weight=None):
        super().__init__(class_counts, weight)
        a = (self.counts.double().max() / self.counts.double()) ** gamma
        self.register_buffer("temperatures", a.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits / self.temperatures.to(logits.dtype), target)
