"""Label smoothing (Szegedy et al. 2016) and label-aware smoothing (Zhong et al. 2021, MiSLAS)."""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F

from ltsearch.losses.base import LTLoss
from ltsearch.params import Unit
from ltsearch.registry import LOSSES

def smoothed_ce(logits: torch.Tensor, target: torch.Tensor, eps: torch.Tensor) -> torch.Tensor:
    """Per sample: (1 − ε) (−log p_y) + ε · mean_k(−log p_k), i.e. CE against the target
    (1 − ε)·onehot(y) + ε/C (``eps`` of shape (B,))."""
    logp = F.log_softmax(logits, dim=1)
    nll = -logp.gather(1, target[:, None]).squeeze(1)
    return (1 - eps) * nll + eps * (-logp.mean(dim=1))


@LOSSES.register("label_smooth")
class LabelSmoothing(LTLoss):
    """Label-smoothed CE (Szegedy et al. 2016, "Rethinking the Inception Architecture"): CE against
    (1 − ε)·onehot(y) + ε/C. ``eps``: smoothing ε in [0, 1]; 0 gives CE."""

    def __init__(self, class_counts, eps: Unit = 0.1, weight=None):
        super().__init__(class_counts, weight)
        self.eps = float(eps)

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        eps = torch.full_like(target, self.eps, dtype=logits.dtype)
        return self.weighted_mean(smoothed_ce(logits, target, eps), target)


# MiSLAS's (ε_1, ε_K) per benchmark (Zhong et al. 2021, official configs dvlab-research/MiSLAS):
# CIFAR-10-LT 0.1 / 0.0, CIFAR-100-LT 0.4 / 0.1, ImageNet-LT and iNaturalist 2018 0.3 / 0.0.
MISLAS_EPS = {"cifar10": (0.1, 0.0), "cifar100": (0.4, 0.1), "imagenet_lt": (0.3, 0.0), "inat": (0.3, 0.0)}


def mislas_eps(num_classes: int) -> tuple[float, float]:
    """MiSLAS's (ε_1, ε_K) for the benchmark with this many classes: ≤ 10 → CIFAR-10-LT's,
    ≤ 100 → CIFAR-100-LT's, more → ImageNet-LT's / iNaturalist's (the same values)."""
    if num_classes <= 10:
        return MISLAS_EPS["cifar10"]
    return MISLAS_EPS["cifar100"] if num_classes <= 100 else MISLAS_EPS["imagenet_lt"]


@LOSSES.register("label_aware_smooth")
class LabelAwareSmoothing(LTLoss):
    """Label-aware smoothing (Zhong et al. 2021, "Improving Calibration for Long-Tailed
    Recognition", CVPR, MiSLAS): label smoothing with a class-dependent ε_y, from ``eps_head`` for
    the most frequent class (N_1) to ``eps_tail`` for the least frequent (N_K). With
    r = (N_y − N_K)/(N_1 − N_K) ∈ [0, 1]:

    - concave: ε_y = ε_K + (ε_1 − ε_K)·sin(π r / 2)
    - linear:  ε_y = ε_K + (ε_1 − ε_K)·r
    - convex:  ε_y = ε_1 + (ε_1 − ε_K)·sin(3π/2 + π r / 2)

    ``eps_head``/``eps_tail``: ε_1, ε_K in [0, 1]; null (the default) takes MiSLAS's values for the
    benchmark of this size (:data:`MISLAS_EPS`, :func:`mislas_eps`: 0.1/0.0 for 10 classes as
    CIFAR-10-LT, 0.4/0.1 up to 100 as CIFAR-100-LT, 0.3/0.0 beyond as ImageNet-LT / iNaturalist) —
    the class count stands in for the dataset, which a loss does not know; set both for other data.
    ``form``: the mapping above (MiSLAS: concave). With all counts equal every class gets ε_1.
    """

    def __init__(self, class_counts, eps_head: Unit | None = None, eps_tail: Unit | None = None,
                 form: Literal["concave", "linear", "convex"] = "concave", weight=None):
        super().__init__(class_counts, weight)
        head, tail = mislas_eps(self.num_classes)
        eps_head = head if eps_head is None else eps_head
        eps_tail = tail if eps_tail is None else eps_tail
        self.eps_head, self.eps_tail = float(eps_head), float(eps_tail)
        n = self.counts.double()
        span = n.max() - n.min()
        r = (n - n.min()) / span if span > 0 else torch.ones_like(n)
        if form == "concave":
            eps = eps_tail + (eps_head - eps_tail) * torch.sin(math.pi * r / 2)
        elif form == "linear":
            eps = eps_tail + (eps_head - eps_tail) * r
        else:
            eps = eps_head + (eps_head - eps_tail) * torch.sin(1.5 * math.pi + math.pi * r / 2)
        self.register_buffer("eps", eps.float())

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return self.weighted_mean(smoothed_ce(logits, target, self.eps.to(logits.dtype)[target]), target)
