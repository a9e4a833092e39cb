"""SDNHL's hard-aware loss (Zhang & Ye, Sec. 2.3)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss, class_balanced_weights
from ltsearch.registry import LOSSES


@LOSSES.register("hard_aware")
class HardAwareLoss(LTLoss):
    """L_HL = −(1/M) Σ_m w̃^{y_m} · w^{y_m} · log p_m^{y_m}: a plain batch mean (1/M, as written in the
    paper, not normalised by Σ w) of cross-entropy weighted by a class weight w (class-balanced,
    Cui et al. 2019, effective number with ``beta``; the ``weight`` argument replaces it) and by
    the hard-aware weight w̃, updated after every epoch from per-class (validation) accuracy:

        w̃_{e+1}^c = m · w̃_e^c + 1 / max(acc_e^c, eps)

    ``momentum`` m ∈ [0, 1) (paper: m ∈ (0, 1), no value given; 0.9 by default); ``eps`` guards a
    class with zero accuracy (1/acc ≤ 1/eps = 100 by default); a class without validation images
    (accuracy NaN) counts as acc = 1; ``init``: w̃_0 before the first update. w̃ is a buffer, so it is
    checkpointed with the model. ``normalize``: divide w̃ by its mean over classes in the loss (keeps
the paper's relative weights but not their growing scale, ~1/(1 − m) times 1/acc; off by default).
    """

    def __init__(self, class_counts, momentum: float = 0.9, beta: float = 0.9999, eps: float = 0.01,
                 init: float = 1.0, normalize: bool = False,
                 weight=None):
        super().__init__(class_counts, weight)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f"hard_aware momentum must be in [0, 1), got {momentum}")
        if not 0.0 < eps <= 1.0:
            raise ValueError(f"hard_aware eps must be in (0, 1], got {eps}")
        if weight is None:
            self.set_weight(class_balanced_weights(self.counts, beta))
        self.momentum, self.eps, self.normalize = float(momentum), float(eps), bool(normalize)
        self.register_buffer("hard_weights", torch.full((self.num_classes,), float(init)))

    def update(self, per_class_acc: torch.Tensor) -> None:
        acc = torch.as_tensor(per_class_acc, dtype=torch.float32).to(self.hard_weights.device)
        acc = torch.nan_to_num(acc, nan=1.0).clamp(min=self.eps)
        self.hard_weights = self.momentum * self.hard_weights + 1.0 / acc

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        nll = -F.log_softmax(logits, dim=1).gather(1, target[:, None]).squeeze(1)
        hard = self.hard_weights / self.hard_weights.mean() if self.normalize else self.hard_weights
        w = hard[target].to(logits.dtype)
        if self.weight is not None:
            w = w * self.weight[target].to(logits.dtype)
        return (w * nll).mean()
