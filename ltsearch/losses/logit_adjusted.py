"""Losses that shift logits by the class prior: balanced softmax, logit-adjusted CE."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.params import NonNegative
from ltsearch.registry import LOSSES


@LOSSES.register("balanced_softmax")
class BalancedSoftmax(LTLoss):
    """Balanced Softmax (Ren et al. 2020): CE on z + log n_i (the training class counts)."""

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits + self.counts.log().to(logits.dtype), target)


@LOSSES.register("logit_adjust")
class LogitAdjusted(LTLoss):
    """Logit-adjusted loss (Menon et al. 2021, "Long-Tail Learning via Logit Adjustment", ICLR):
    ℓ = CE(z + τ·log π, y), π_i = n_i / Σ n the training prior. Predict with the raw logits z.

    ``tau``: scaling τ of the log prior (≥ 0); 1 is Fisher-consistent for the balanced error and
    equals ``balanced_softmax``; 0 is CE. (The post-hoc variant, z − τ·log π at inference, is the
    ``single`` method's ``posthoc_tau``.)
    """

    def __init__(self, class_counts, tau: NonNegative = 1.0, weight=None):
        super().__init__(class_counts, weight)
        self.tau = float(tau)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits + self.tau * self.prior.log().to(logits.dtype), target)
