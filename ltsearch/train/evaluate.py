"""Evaluation: overall, per-class and many/medium/few accuracy (percentages; NaN for an empty split)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch

from ltsearch.data.longtail import split_classes


@dataclass
class EvalReport:
    acc: float
    per_class_acc: torch.Tensor  # fraction correct per class, float (C,)
    groups: dict[str, float] = field(default_factory=dict)  # many/medium/few in percent (NaN if empty)
    loss: float = float("nan")

    def as_dict(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}_acc": self.acc}
        out.update({f"{prefix}_{k}": v for k, v in self.groups.items()})
        return out


def group_accuracy(per_class_acc: torch.Tensor, class_counts: Sequence[int], many: int, few: int) -> dict[str, float]:
    """Mean per-class accuracy (percent) over the many/medium/few classes; NaN for an empty group."""
    out = {}
    for name, classes in split_classes(class_counts, many, few).items():
        out[name] = float(per_class_acc[classes].mean() * 100) if classes else math.nan
    return out


@torch.no_grad()
def evaluate(
    predict: Callable[[torch.Tensor], torch.Tensor],
    images: Callable[[torch.Tensor], torch.Tensor],
    x: torch.Tensor,
    y: torch.Tensor,
    class_counts: Sequence[int],
    splits: tuple[int, int] = (100, 20),
    batch_size: int = 512,
) -> EvalReport:
    """``predict`` maps prepared images to logits; ``images`` prepares a uint8 slice (to device,
    float, normalised). Per-class accuracy is the mean over that class's samples; the overall
    accuracy is over all samples (the test splits are balanced, so both agree there)."""
    num_classes = len(class_counts)
    correct = torch.zeros(num_classes, dtype=torch.float64)
    total = torch.zeros(num_classes, dtype=torch.float64)
    for start in range(0, len(y), batch_size):
        xb = images(x[start : start + batch_size])
        yb = y[start : start + batch_size]
        pred = predict(xb).argmax(1).cpu()
        yb = yb.cpu()
        total += torch.bincount(yb, minlength=num_classes).double()
        correct += torch.bincount(yb[pred == yb], minlength=num_classes).double()
    per_class = torch.where(total > 0, correct / total.clamp(min=1), torch.full_like(total, math.nan))
    acc = float(correct.sum() / total.sum() * 100) if total.sum() > 0 else math.nan
    return EvalReport(acc, per_class.float(), group_accuracy(per_class, class_counts, *splits))
