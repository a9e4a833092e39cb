"""Softmax equalization loss (Tan et al. 2020)."""

from __future__ import annotations

from typing import Sequence

import torch

from ltsearch.losses.base import LTLoss, counts_tensor
from ltsearch.params import Unit
from ltsearch.registry import LOSSES


def seql_threshold(class_counts: Sequence[int] | torch.Tensor, tail_ratio: float) -> float:
    """The frequency threshold λ that makes the ⌊tail_ratio · C⌉ least frequent classes tail
    (f_k < λ): the (k+1)-th smallest frequency (fewer tail classes where counts tie at the
    boundary; 0 for k = 0, 1 for k = C)."""
    counts = counts_tensor(class_counts)
    freq = torch.sort(counts / counts.sum()).values.tolist()
    k = int(round(tail_ratio * len(freq)))
    if k <= 0:
        return 0.0
    return 1.0 if k >= len(freq) else float(freq[k])


@LOSSES.register("seql")
class SoftmaxEqualization(LTLoss):
    """Softmax equalization loss, SEQL (Tan et al. 2020, "Equalization Loss for Long-Tailed Object
    Recognition", CVPR, its softmax variant; as the SEQL of Zhang et al. 2021's Bag of Tricks):

        ℓ = −log p̃_y,   p̃_y = e^{z_y} / Σ_k w_k e^{z_k},   w_k = 1 − β_k · T_λ(f_k) · (1 − 1[k = y])

    with f_k = n_k / Σ n the class frequency, T_λ(f) = 1 if f < λ else 0, and β_k ~ Bernoulli(γ)
    drawn independently per sample and class at each call. A tail class k (f_k < λ) is thus dropped
    from the denominator of a sample of another class with probability γ: its logit receives no
    discouraging (negative) gradient from that sample; the true class is never dropped.

    λ is a property of the dataset, not a constant: EQL tunes it per dataset, reading it through the
    share of categories it makes tail. A fixed λ that suits one dataset can leave another without
    any tail class, and then SEQL *is* CE: Bag of Tricks' λ = 5e-3 (its CIFAR-100-LT value, where it
    makes 52 of 100 classes tail at IF 100) lies below the smallest class frequency of CIFAR-10-LT
    IF 50 (100 / 13,896 ≈ 0.0072). So by default (``lam: null``) λ is derived from the class counts:
    the ``tail_ratio`` (0.5) least frequent classes are tail (:func:`seql_threshold`); 0.5 is the share
    5e-3 gives on CIFAR-100-LT IF 100. An explicit ``lam`` is used as given (the resolved λ is the
    attribute ``lam``; ``tail`` the mask).

    ``lam``: frequency threshold λ in [0, 1] or null (derived; 0 gives CE); ``tail_ratio``: share of
    classes made tail when λ is derived, in [0, 1]; ``gamma``: probability γ in [0, 1] that a tail
    negative is suppressed (0 gives CE, 1 always suppresses; 0.9 as Bag of Tricks).
    """

    def __init__(self, class_counts, lam: Unit | None = None, gamma: Unit = 0.9, tail_ratio: Unit = 0.5,
                 weight=None):
        super().__init__(class_counts, weight)
        self.gamma = float(gamma)
        self.lam = float(lam) if lam is not None else seql_threshold(self.counts, tail_ratio)
        self.register_buffer("tail", self.prior < self.lam)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        negative = torch.ones_like(logits, dtype=torch.bool).scatter_(1, target[:, None], False)
        beta = torch.rand(logits.shape, device=logits.device) < self.gamma
        drop = beta & self.tail[None, :] & negative
        log_denominator = torch.logsumexp(logits.masked_fill(drop, float("-inf")), dim=1)
        per_sample = log_denominator - logits.gather(1, target[:, None]).squeeze(1)
        return self.weighted_mean(per_sample, target)
