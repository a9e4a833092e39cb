"""GraLoss: GLAG's gradual balanced loss (Zhang & Xiang 2022, "Long-Tailed Classification with
Gradual Balanced Loss and Adaptive Feature Generation")."""

from __future__ import annotations

from typing import Annotated, Literal

import torch
from pydantic import Field

from ltsearch.losses.base import LTLoss
from ltsearch.params import NonNegative
from ltsearch.registry import LOSSES
from ltsearch.schedules import gra as gra_schedule


@LOSSES.register("gra")
class GradualBalancedLoss(LTLoss):
    """Logit-adjusted CE whose adjustment grows during training (Eq. 3–4):

        ℓ = −log softmax(z + α·log π)_y,   α = s·(c^p − 1),   p = T / T_max,

    π being the training label prior (Menon et al.'s logit adjustment with τ replaced by α).
    ``s``, ``c``: scale and base of α (paper: c = 2, s = 1 for CIFAR-100-LT / ImageNet-LT, s = 0.5
    for iNaturalist); ``form``: ``convex`` (Eq. 3), ``linear`` or ``concave`` (Table 5, see
    ``ltsearch.schedules.gra``). The loop sets p through :meth:`set_progress` (α = 0 before).
    """

    def __init__(self, class_counts, s: NonNegative = 1.0, c: Annotated[float, Field(gt=1)] = 2.0,
                 form: Literal["convex", "linear", "concave"] = "convex", weight=None):
        super().__init__(class_counts, weight)
        self.schedule = gra_schedule(s=s, c=c, form=form)
        self.alpha = 0.0

    def set_progress(self, progress: float) -> None:
        self.alpha = float(self.schedule(progress))

    def adjusted(self, logits: torch.Tensor) -> torch.Tensor:
        return logits + self.alpha * self.prior.log().to(logits.dtype)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(self.adjusted(logits), target)
