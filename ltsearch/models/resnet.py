"""ImageNet-style backbones from torchvision (no pretrained weights): ResNet-10, ResNet-50,
ResNeXt-50 (32×4d). ``body`` is the stem and layers 1–3; ``neck`` is layer 4 (a ``Stage``, so BBN
can split off its last block) and pooling. torchvision is imported when one is built: importing it
costs every new process (trial actors, DDP workers, the CLI) about 1.5 s of CPU."""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ltsearch.models.heads import Net, PoolFlatten, Stage
from ltsearch.registry import MODELS


def _tvr() -> Any:
    from torchvision.models import resnet

    return resnet


def _from_torchvision(m: nn.Module, num_classes: int, in_channels: int, head: str) -> Net:
    if in_channels != 3:
        m.conv1 = nn.Conv2d(in_channels, 64, 7, 2, 3, bias=False)
    body = nn.Sequential(m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3)
    return Net(body, PoolFlatten(Stage(*m.layer4)), m.fc.in_features, num_classes, head)


@MODELS.register("resnet10")
def resnet10(num_classes: int, in_channels: int = 3, head: str = "linear") -> Net:
    """ResNet-10: basic blocks [1, 1, 1, 1] (the ImageNet-LT baseline of Liu et al. 2019)."""
    tvr = _tvr()
    return _from_torchvision(tvr.ResNet(tvr.BasicBlock, [1, 1, 1, 1]), num_classes, in_channels, head)


@MODELS.register("resnet50")
def resnet50(num_classes: int, in_channels: int = 3, head: str = "linear") -> Net:
    """ResNet-50 (iNaturalist 2018 backbone)."""
    return _from_torchvision(_tvr().resnet50(weights=None), num_classes, in_channels, head)


@MODELS.register("resnext50")
def resnext50(num_classes: int, in_channels: int = 3, head: str = "linear") -> Net:
    """ResNeXt-50 32×4d (ImageNet-LT backbone)."""
    return _from_torchvision(_tvr().resnext50_32x4d(weights=None), num_classes, in_channels, head)
