"""Softmax equalization loss (Tan et al. 2020)."""

from __future__ import annotations

import torch

from ltsearch.losses.base import LTLoss
from ltsearch.registry import LOSSES


@LOSSES.register("seql")
class SoftmaxEqualization(LTLoss):
    """Softmax equalization loss, SEQL (Tan et al. 2020, "Equalization Loss for Long-Tailed Object
    Recognition", CVPR, its softmax variant; as the SEQL of Zhang et al. 2021's Bag of Tricks):

        ℓ = −log p̃_y,   p̃_y = e^{z_y} / Σ_k w_k e^{z_k},   w_k = 1 − β_k · T_λ(f_k) · (1 − 1[k = y])

    with f_k = n_k / Σ n the class frequency, T_λ(f) = 1 if f < λ else 0, and β_k ~ Bernoulli(γ)
    drawn independently per sample and class at each call. A tail class k (f_k < λ) is thus dropped
    from the denominator of a sample of another class with probability γ: its logit receives no
    discouraging (negative) gradient from that sample; the true class is never dropped.

    ``lam``: frequency threshold λ in [0, 1] (0 gives CE); ``gamma``: probability γ in [0, 1] that
    a tail negative is suppressed (0 gives CE, 1 always suppresses).
    """

    def __init__(self, class_counts, lam: float = 5e-3, gamma: float = 0.9, weight=None):
        super().__init__(class_counts, weight)
        if not 0.0 <= lam <= 1.0:
            raise ValueError(f"seql lam must be a class frequency in [0, 1], got {lam}")
        if not 0.0 <= gamma <= 1.0:
            raise ValueError(f"seql gamma must be a probability in [0, 1], got {gamma}")
        self.gamma = float(gamma)
        self.register_buffer("tail", self.prior < lam)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        negative = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
        beta = torch.rand(logits.shape, device=logits.device) < self.gamma
        drop = beta & self.tail[None, :] & negative
        log_denominator = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)
        per_sample = log_denominator - logits.gather(1, target[:, None]).squeeze(1)
        return self.weighted_mean(per_sample, target)
