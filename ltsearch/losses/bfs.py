"""BFS: balanced focal softmax loss of BWLM (Fan et al. 2024, "BWLM: A Balanced Weight Learning
Mechanism for Long-Tailed Image Recognition", Appl. Sci. 14, 454)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss, class_balanced_weights
from ltsearch.params import HalfOpenUnit, NonNegative, Unit
from ltsearch.registry import LOSSES


@LOSSES.register("bfs")
class BalancedFocalSoftmax(LTLoss):
    """Eq. 11–13: ℓ = α·ℓ_CB + (1 − α)·ℓ_BS with

    - ℓ_CB = w_y · Σ_j −(1 − p_j^t)^γ log p_j^t, the class-balanced sigmoid focal loss of Cui et al.
      2019 (Eq. 6–8): p_j^t = σ(z_j) for j = y and σ(−z_j) otherwise; w_y = (1 − β)/(1 − β^{n_y}),
      Eq. 5 as printed (raw, ≈ 1/n_y for β → 1). ``normalize: true`` rescales w to sum to C as in
      Cui et al.'s code: the other reading, which multiplies the CB term by Σ_j w_j / C relative to
      the balanced-softmax term (C / Σ_j w_j: 19× with the CIFAR-100 IF100 review set's counts, 22×
      with its full training set's, β = 0.9999), and
      so changes what a given α means (BWLM Fig. 4);
    - ℓ_BS = −log(n_y e^{z_y} / Σ_i n_i e^{z_i}), balanced softmax (Ren et al. 2020, Eq. 9–10).

    ``alpha``: weight of the CB-focal part (paper's default 0.1; 1 → CB focal, 0 → balanced softmax);
    ``beta``: effective-number β ∈ [0, 1); ``gamma``: focal γ ≥ 0. BWLM states neither β nor γ;
    the defaults are Cui et al.'s CIFAR values. ``class_counts`` are the n_j of both Eq. 5 and
    Eq. 9; BWLM defines n_j on the whole long-tailed training set D (§3.1), and its method passes
    those by default (``bfs_counts``). The batch mean follows the LTLoss rule.
    """

    def __init__(self, class_counts, alpha: Unit = 0.1, beta: HalfOpenUnit = 0.9999, gamma: NonNegative = 1.0,
                 normalize: bool = False, weight=None):
        super().__init__(class_counts, weight)
        self.alpha, self.gamma = float(alpha), float(gamma)
        self.register_buffer("cb_weights", class_balanced_weights(self.counts, beta, normalize=normalize))

    def cb_focal(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Per-sample w_y Σ_j −(1 − p_j^t)^γ log p_j^t."""
        sign = 2.0 * F.one_hot(target, logits.shape[1]).to(logits.dtype) - 1.0
        zt = sign * logits  # log p_j^t = log σ(zt)
        focal = -((1.0 - torch.sigmoid(zt)) ** self.gamma) * F.logsigmoid(zt)
        return self.cb_weights.to(logits.dtype)[target] * focal.sum(1)

    def balanced_softmax(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits + self.counts.log().to(logits.dtype), target, reduction="none")

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        per_sample = self.alpha * self.cb_focal(logits, target) + (1.0 - self.alpha) * self.balanced_softmax(logits, target)
        return self.weighted_mean(per_sample, target)
