"""SDNHL's hard-aware loss (Zhang & Ye, Sec. 2.3)."""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss, class_balanced_weights
from ltsearch.params import HalfOpenUnit, NonNegative, PositiveUnit
from ltsearch.registry import LOSSES

@LOSSES.register("hard_aware")
class HardAwareLoss(LTLoss):
    """L_HL = −(1/M) Σ_m w̃^{y_m} · w^{y_m} · log p_m^{y_m}: cross-entropy weighted by a class weight w
    (class-balanced, Cui et al. 2019, effective number with ``beta``, normalised to sum C as in
    LDAM-DRW's code; the ``weight`` argument replaces it) and by the hard-aware weight w̃, updated
    after an epoch from that epoch's per-class *training* accuracy (``update``):

        w̃_{e+1}^c = m · w̃_e^c + 1 / max(acc_e^c, eps)

    ``momentum`` m ∈ [0, 1) (paper: m ∈ (0, 1), no value given; 0.9 is ltsearch's choice).
    ``eps`` has no source in the paper (ltsearch's choice): a floor on the accuracy and therefore
    a cap on the weight, not only a guard against zero accuracy. Each update adds at most 1/eps,
    so w̃ ≤ 1/(eps·(1 − m)); for a class whose training accuracy is below eps the update adds
    1/eps whatever the accuracy, i.e. eps sets its weight (SDNHL's ``hl_eps`` default 0.1, see
    ``ltsearch.methods.sdnhl`` and docs/methods.md). A class the epoch did not see (accuracy NaN)
    counts as acc = 1; ``init``: w̃ before the first update. w̃ is a buffer, checkpointed with the
    model. The class weight w (§2.3's w^c) is not specified by the paper: class-balanced weights
    with ``beta`` are ltsearch's choice.

    ``reduction``: ``mean`` is the paper's plain batch mean (1/M), whose scale follows w̃·w (up to
    ~1/((1 − m)·eps) times the CB weight); ``weighted`` divides by Σ_m w̃^{y_m} w^{y_m} instead, the
    weighted mean that ``F.cross_entropy(weight=...)`` and LDAM-DRW's DRW use, so only the relative
    weights matter. ``normalize``: divide w̃ by its class mean first (a milder rescaling; off).
    """

    def __init__(self, class_counts, momentum: HalfOpenUnit = 0.9, beta: HalfOpenUnit = 0.9999,
                 eps: PositiveUnit = 0.1, init: NonNegative = 1.0, normalize: bool = False,
                 reduction: Literal["mean", "weighted"] = "mean", weight=None):
        super().__init__(class_counts, weight)
        if weight is None:
            self.set_weight(class_balanced_weights(self.counts, beta))
        self.momentum, self.eps, self.normalize, self.reduction = float(momentum), float(eps), bool(normalize), reduction
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
        if self.reduction == "weighted":
            return (w * nll).sum() / w.sum().clamp_min(1e-12)
        return (w * nll).mean()
