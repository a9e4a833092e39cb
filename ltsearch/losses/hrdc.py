"""HRDC's hierarchical rebalancing loss (Zhang et al., IEEE Access 2023, Sec. III-D)."""

from __future__ import annotations

from typing import Literal, Sequence

import numpy as np
import torch

from ltsearch.losses.base import LTLoss, counts_tensor
from ltsearch.params import NonNegative
from ltsearch.registry import LOSSES

LEVELS = ("thirds", "shots")


def class_levels(class_counts: Sequence[int] | torch.Tensor, levels: str = "thirds", many: int = 100,
                 few: int = 20) -> list[list[int]]:
    """Head / medium / tail class indices. ``thirds``: classes sorted by count (descending, ties by
    index) cut into three consecutive groups of (nearly) equal size, the larger groups first;
    ``shots``: many (count > ``many``) / medium / few (count < ``few``), possibly empty."""
    counts = counts_tensor(class_counts).tolist()
    if levels == "thirds":
        order = sorted(range(len(counts)), key=lambda i: (-counts[i], i))
        return [list(map(int, g)) for g in np.array_split(np.array(order, dtype=np.int64), 3)]
    if levels == "shots":
        head = [i for i, n in enumerate(counts) if n > many]
        tail = [i for i, n in enumerate(counts) if n < few]
        return [head, [i for i in range(len(counts)) if i not in head and i not in tail], tail]
    raise ValueError(f"levels must be one of {', '.join(LEVELS)}, got {levels!r}")


def hierarchical_factors(class_counts: Sequence[int] | torch.Tensor, gamma: float, levels: str = "thirds",
                         many: int = 100, few: int = 20) -> torch.Tensor:
    """CDT factors a_i = (N_max / N_i)^γ, then within each level every factor ≥ the level's mean
    ā is replaced by ā (Eq. 8): a_i ← min(a_i, ā_level)."""
    counts = counts_tensor(class_counts)
    a = (counts.max() / counts).pow(float(gamma))
    out = a.clone()
    for group in class_levels(counts, levels, many, few):
        if group:
            idx = torch.tensor(group)
            out[idx] = torch.minimum(a[idx], a[idx].mean())
    return out.float()


@LOSSES.register("hrdc")
class HierarchicalRebalancingLoss(LTLoss):
    """ℓ = CE(z / a, y) with the hierarchical factors a of :func:`hierarchical_factors` (Eq. 9):
    class-dependent temperatures (CDT, Ye et al. 2020) whose largest values are capped at their
    level's mean. Dividing the training logits by a_i > 1 makes the classifier learn larger decision
    values for tail classes; at inference the raw logits are used (as in CDT).

    The bias. Eq. 7 divides ω_iᵀf by a_i and Eq. 9 shows no bias, while the re-weighting classifier
    of Eq. 1 has one (b_R). This loss sees the classifier's whole output z_i = ω_iᵀf + b_i and
    divides it, bias included: l_i = (ω_iᵀf + b_i) / a_i (CDT's formulation, a loss on the logits).
    The literal Eq. 7 with a bias added afterwards, ω_iᵀf / a_i + b_i, differs only through b_i;
    with a bias-free head (``model.head: normed``) the two readings coincide.

    What it needs to work: dividing logit i by a_i also divides its gradient by a_i, so the rows of
    the tail classes learn a_i times more slowly, and weight decay keeps them small meanwhile
    (§III-D: "the weights of tail classes in the classifier are slight"). The compensation — larger
    ‖ω_i‖ for tail classes — only builds up over a long schedule, like CDT's and HRDC's 200 CIFAR
    epochs with the lr decays late (160 / 180); on short runs γ makes little difference or hurts:
    measured during ltsearch's paper review (Fashion-MNIST-LT, 16 epochs, one seed), γ = 0.2 was
    indistinguishable from γ = 0, and γ = 0.5 collapsed the rarest classes.

    ``gamma``: CDT exponent. The paper gives no value; 0.2 is ltsearch's default (the same as its
    ``cdt`` loss), a starting point and not a tuned or reported value: search it at the paper's
    schedule length (``hrdc_cdt_gamma.yaml``). ``levels``: how classes are split into
    head/medium/tail: §III-D divides them "into three levels according to their number of training
    samples" without boundaries, so the default ``thirds`` (of the classes sorted by count) is
    ltsearch's choice; ``shots`` cuts at the ``many``/``few`` thresholds (default 100 / 20, the
    CIFAR-100-LT / ImageNet-LT literature's; the methods pass the data's own thresholds).
    """

    def __init__(self, class_counts, gamma: NonNegative = 0.2, levels: Literal["thirds", "shots"] = "thirds",
                 many: int = 100, few: int = 20, weight=None):
        super().__init__(class_counts, weight)
        self.register_buffer("factors", hierarchical_factors(self.counts, gamma, levels, many, few))

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.ce(logits / self.factors.to(logits.dtype), target)
