"""Re-weighted cross-entropy: class-balanced (Cui et al. 2019) and cost-sensitive."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss, class_balanced_weights
from ltsearch.params import HalfOpenUnit, NonNegative
from ltsearch.registry import LOSSES


@LOSSES.register("cb_ce")
class ClassBalancedCE(LTLoss):
    """Class-balanced softmax cross-entropy (Cui et al. 2019, "Class-Balanced Loss Based on
    Effective Number of Samples"): ℓ_batch = Σ_i w_{y_i} CE(z_i, y_i) / Σ_i w_{y_i} with
    w_c = (1 − β)/(1 − β^{n_c}) normalised to Σ_c w_c = C (``class_balanced_weights``).

    ``beta``: effective-number β in [0, 1); 0 gives CE, β → 1 inverse-frequency weights.
    """

    def __init__(self, class_counts, beta: HalfOpenUnit = 0.9999, weight=None):
        super().__init__(class_counts, weight)
        self.register_buffer("cb_weights", class_balanced_weights(self.counts, beta))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.class_weight(self.cb_weights).to(logits.dtype))


@LOSSES.register("cs_ce")
class CostSensitiveCE(LTLoss):
    """Cost-sensitive cross-entropy: ℓ_batch = Σ_i w_{y_i} CE(z_i, y_i) / Σ_i w_{y_i} with the cost
    w_c ∝ (N_max / N_c)^power, normalised to mean 1.

    Source: the "CS_CE" re-weighting baseline of Zhang et al. 2021, "Bag of Tricks for
    Long-Tailed Visual Recognition with Deep CNNs" (AAAI), whose weights (N_min / N_c)^γ differ
    from these by a constant factor, which the weighted mean cancels. ``power``: γ ≥ 0; 0 gives CE,
    1 inverse class frequency.
    """

    def __init__(self, class_counts, power: NonNegative = 1.0, weight=None):
        super().__init__(class_counts, weight)
        w = (self.counts.double().max() / self.counts.double()) ** power
        self.register_buffer("costs", (w / w.mean()).float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, target, weight=self.class_weight(self.costs).to(logits.dtype))
