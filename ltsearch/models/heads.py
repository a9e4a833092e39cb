"""Shared building blocks: the ``Net`` container (body → neck → classifier) and classifier heads."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class NormedLinear(nn.Module):
    """Cosine classifier of LDAM-DRW: z = normalize(f) · normalize(W) (logits in [-1, 1])."""

    def __init__(self, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(in_features, out_features))
        self.weight.data.uniform_(-1, 1).renorm_(2, 1, 1e-5).mul_(1e5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(x, dim=1) @ F.normalize(self.weight, dim=0)

    def class_weights(self) -> torch.Tensor:
        """(C, D) weight matrix, one row per class."""
        return self.weight.t()


def make_head(kind: str, in_features: int, num_classes: int) -> nn.Module:
    if kind == "normed":
        return NormedLinear(in_features, num_classes)
    return nn.Linear(in_features, num_classes)


def head_weight(head: nn.Module) -> torch.Tensor:
    """(C, D) per-class weight vectors of a linear or normed head."""
    if isinstance(head, NormedLinear):
        return head.class_weights()
    return head.weight  # type: ignore[return-value]


class Net(nn.Module):
    """A classifier split where multi-branch methods need it.

    ``body``: everything shared (stem and early stages); ``neck``: the last stage plus pooling,
    giving ``feat_dim`` features (BBN duplicates it per branch); ``classifier``: the head.
    """

    def __init__(self, body: nn.Module, neck: nn.Module, feat_dim: int, num_classes: int, head: str = "linear"):
        super().__init__()
        self.body, self.neck, self.feat_dim = body, neck, feat_dim
        self.classifier = make_head(head, feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PoolFlatten(nn.Sequential):
    def __init__(self, *stages: nn.Module):
        super().__init__(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())
