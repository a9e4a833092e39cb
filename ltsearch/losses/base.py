"""What every loss shares: class counts as buffers, an optional class weight (DRW), hooks for
progress- or accuracy-dependent losses, and ``class_balanced_weights``."""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F


def counts_tensor(class_counts: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """Class counts as float64, with a clear error for a class that has no samples."""
    counts = torch.as_tensor(class_counts, dtype=torch.float64).flatten()
    if counts.numel() == 0:
        raise ValueError("class_counts is empty")
    if (counts <= 0).any():
        empty = torch.nonzero(counts <= 0).flatten().tolist()
        raise ValueError(f"classes {empty} have no training samples; every class needs at least one")
    return counts


def class_balanced_weights(class_counts: Sequence[int] | torch.Tensor, beta: float,
                           normalize: bool = True) -> torch.Tensor:
    """Cui et al. 2019, effective number: w_i = (1 − β) / (1 − β^{n_i}), normalised to sum to C (as
    in Cui et al.'s code; ``normalize=False``: the raw weights, as BWLM's Eq. 5 prints them).

    β = 0 gives equal weights; β → 1 approaches inverse frequency.
    """
    counts = counts_tensor(class_counts)
    if not 0.0 <= beta < 1.0:
        raise ValueError(f"beta must be in [0, 1), got {beta}")
    w = (1.0 - beta) / (1.0 - torch.pow(torch.tensor(beta, dtype=torch.float64), counts))
    return (w / w.sum() * len(counts)).float() if normalize else w.float()


class LTLoss(nn.Module):
    """Base class: ``forward(logits, target) -> scalar``, mean over the batch.

    With a class ``weight`` (deferred re-weighting sets one through :meth:`set_weight`), the mean is
    weighted as in ``torch.nn.functional.cross_entropy``: Σ w_y ℓ / Σ w_y.
    """

    def __init__(self, class_counts: Sequence[int] | torch.Tensor, weight: Sequence[float] | torch.Tensor | None = None):
        super().__init__()
        counts = counts_tensor(class_counts)
        self.register_buffer("counts", counts.float())
        self.register_buffer("prior", (counts / counts.sum()).float())
        # not persistent: DRW sets it per epoch, and a checkpoint taken before the switch must load
        # into a module after it (and back) without missing/unexpected keys
        self.register_buffer("weight", None if weight is None else torch.as_tensor(weight, dtype=torch.float32),
                             persistent=False)
        if self.weight is not None and self.weight.shape != self.counts.shape:
            raise ValueError(f"weight has {self.weight.numel()} entries for {self.num_classes} classes")

    @property
    def num_classes(self) -> int:
        return int(self.counts.numel())

    def set_weight(self, weight: torch.Tensor | None) -> None:
        self.weight = None if weight is None else weight.to(self.counts.device, torch.float32)

    def set_progress(self, progress: float) -> None:
        """Training progress p = epoch / total_epochs; most losses ignore it."""

    def update(self, per_class_acc: torch.Tensor) -> None:
        """Per-class validation accuracy after an epoch; most losses ignore it."""

    def ce(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        weight = None if self.weight is None else self.weight.to(logits.dtype)
        return F.cross_entropy(logits, target, weight=weight)

    def class_weight(self, extra: torch.Tensor | None = None) -> torch.Tensor | None:
        """The class weight in force: ``extra`` (a loss's own weights) times the DRW ``weight``."""
        if extra is None or self.weight is None:
            return self.weight if extra is None else extra
        return extra * self.weight

    def weighted_mean(self, per_sample: torch.Tensor, target: torch.Tensor,
                      extra: torch.Tensor | None = None) -> torch.Tensor:
        """Σ w_y ℓ / Σ w_y with w = :meth:`class_weight` (plain mean when there is none)."""
        weight = self.class_weight(extra)
        if weight is None:
            return per_sample.mean()
        w = weight.to(per_sample.dtype)[target]
        return (w * per_sample).sum() / w.sum()
