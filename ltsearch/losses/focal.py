"""Focal loss (Lin et al. 2017) and class-balanced focal loss (Cui et al. 2019)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss, class_balanced_weights
from ltsearch.params import HalfOpenUnit, NonNegative
from ltsearch.registry import LOSSES

Form = Literal["softmax", "sigmoid"]


def focal_per_sample(logits: torch.Tensor, target: torch.Tensor, gamma: float, form: str) -> torch.Tensor:
    """Unweighted focal loss of each sample.

    softmax: −(1 − p_y)^γ log p_y, p = softmax(z).
    sigmoid: Σ_k (1 − q_k)^γ · BCE(z_k, y_k), q_k = σ(z_k) if k = y else 1 − σ(z_k), summed over the
    C one-vs-rest outputs (Cui et al.'s CB-focal code, with no α).
    """
    if form == "softmax":
        logp = F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        return -((1 - logp.exp()) ** gamma) * logp
    onehot = torch.zeros_like(logits).scatter_(1, target[:, None], 1.0)
    bce = F.binary_cross_entropy_with_logits(logits, onehot, reduction="none")
    modulator = torch.exp(gamma * F.logsigmoid(logits * (1 - 2 * onehot)))  # (1 − q)^γ, stably
    return (modulator * bce).sum(dim=1)


@LOSSES.register("focal")
class FocalLoss(LTLoss):
    """Focal loss (Lin et al. 2017, "Focal Loss for Dense Object Detection").

    ``form="softmax"`` (default, as LDAM-DRW's baselines): ℓ = −(1 − p_y)^γ log p_y, p = softmax(z).
    ``form="sigmoid"``: ℓ = Σ_k (1 − q_k)^γ BCE(z_k, 1[k = y]), q_k the sigmoid probability of the
    correct one-vs-rest answer for class k. ``gamma``: focusing strength (0 = CE / BCE; the default
    1.0 is LDAM-DRW's focal baseline, kaidic/LDAM-DRW).
    The batch mean is weighted by the DRW ``weight`` when one is set: Σ w_y ℓ / Σ w_y.
    """

    def __init__(self, class_counts, gamma: NonNegative = 1.0, form: Form = "softmax", weight=None):
        super().__init__(class_counts, weight)
        self.gamma, self.form = float(gamma), form

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weighted_mean(focal_per_sample(logits, target, self.gamma, self.form), target)


@LOSSES.register("cb_focal")
class ClassBalancedFocal(LTLoss):
    """Class-balanced focal loss (Cui et al. 2019, "Class-Balanced Loss Based on Effective Number
    of Samples"): the focal loss of each sample times w_y = (1 − β)/(1 − β^{n_y}), normalised to
    Σ w = C (``class_balanced_weights``); ℓ_batch = Σ w_y ℓ_i / Σ w_y.

    ``beta``: effective-number β in [0, 1) (0: no re-weighting, → 1: inverse frequency; Cui et al.
    use 0.9999 on CIFAR). ``gamma``: focusing strength. ``form``: "sigmoid" (default, as Cui et al.,
    who use one-vs-rest sigmoid outputs for CB-focal) or "softmax" (as in LDAM-DRW's CB-focal
    baseline). See :func:`focal_per_sample`.
    """

    def __init__(self, class_counts, beta: HalfOpenUnit = 0.9999, gamma: NonNegative = 1.0, form: Form = "sigmoid",
                 weight=None):
        super().__init__(class_counts, weight)
        self.gamma, self.form = float(gamma), form
        self.register_buffer("cb_weights", class_balanced_weights(self.counts, beta))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = focal_per_sample(logits, target, self.gamma, self.form)
        return self.weighted_mean(per_sample, target, self.cb_weights)
