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


def fresh_head(like: nn.Module, in_features: int, num_classes: int) -> nn.Module:
    """A newly initialised head of the same kind (linear or normed) as ``like`` (a second branch's)."""
    return make_head("normed" if isinstance(like, NormedLinear) else "linear", in_features, num_classes)


def head_weight(head: nn.Module) -> torch.Tensor:
    """(C, D) per-class weight vectors of a linear or normed head."""
    if isinstance(head, NormedLinear):
        return head.class_weights()
    return head.weight  # type: ignore[return-value]


class Stage(nn.Sequential):
    """The residual blocks of one stage, in order (a plain ``nn.Sequential``: same state-dict keys).
    Marks where :meth:`Net.split_branch` may cut a model between blocks."""


class Net(nn.Module):
    """A classifier split where multi-branch methods need it.

    ``body``: everything shared (stem and early stages); ``neck``: the last stage plus pooling,
    giving ``feat_dim`` features; ``classifier``: the head. A multi-branch method that shares all
    but the last k residual blocks (BBN, SDNHL) calls :meth:`split_branch` first, so that ``neck`` is
    exactly the part it duplicates per branch.
    """

    def __init__(self, body: nn.Module, neck: nn.Module, feat_dim: int, num_classes: int, head: str = "linear"):
        super().__init__()
        self.body, self.neck, self.feat_dim = body, neck, feat_dim
        self.classifier = make_head(head, feat_dim, num_classes)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.neck(self.body(x))

    def tail_blocks(self) -> int:
        """How many blocks the neck holds: those of its :class:`Stage` (a ResNet's last stage), else 1
        (a neck without a marked stage, e.g. ``small_cnn``'s last conv or ``mlp``'s last layer, is one block)."""
        stage = _neck_stage(self.neck)
        return 1 if stage is None else len(stage)

    def split_branch(self, blocks: int | None) -> "Net":
        """Re-partition in place: ``neck`` becomes the last ``blocks`` residual blocks plus pooling,
        and the earlier blocks of the last stage move to the end of ``body`` (the same modules, so the
        function computed by the network is unchanged). ``None`` or all the blocks: unchanged (the whole
        last stage stays the neck). Returns ``self``; raises ``ValueError`` for an impossible split.

        Only a split model's own state-dict keys change (``body.0.*`` the former body, ``body.1.*``
        the shared blocks); models that are not split keep theirs."""
        n = self.tail_blocks()
        if blocks is None or blocks == n:
            return self
        if not 1 <= blocks <= n:
            raise ValueError(f"the last stage of this model has {n} block(s); choose 1 to {n} (or null: all of it)")
        stage = _neck_stage(self.neck)
        assert stage is not None  # n > 1 implies a marked stage
        shared, own = list(stage)[: n - blocks], list(stage)[n - blocks:]
        self.body = nn.Sequential(self.body, Stage(*shared))
        self.neck = PoolFlatten(Stage(*own))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(x))


class PoolFlatten(nn.Sequential):
    def __init__(self, *stages: nn.Module):
        super().__init__(*stages, nn.AdaptiveAvgPool2d(1), nn.Flatten())


def _neck_stage(neck: nn.Module) -> Stage | None:
    """The :class:`Stage` a ``PoolFlatten`` neck starts with, if any."""
    if isinstance(neck, PoolFlatten) and len(neck) == 3 and isinstance(neck[0], Stage):
        return neck[0]
    return None
