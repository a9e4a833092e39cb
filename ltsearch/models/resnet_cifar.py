"""ResNet-32 (and -20/-44/-56) for 32×32 inputs, as in kaidic/LDAM-DRW's ``resnet_cifar.py``:
3 stages of basic blocks with 16/32/64 channels, option-A (zero-padding) shortcuts, Kaiming init."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ltsearch.models.heads import Net, PoolFlatten, Stage
from ltsearch.registry import MODELS


def _init(m: nn.Module) -> None:
    if isinstance(m, (nn.Conv2d, nn.Linear)):
        nn.init.kaiming_normal_(m.weight)


class ShortcutA(nn.Module):
    """Option A: subsample by 2 and zero-pad the channel dimension (no parameters)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class BasicBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_planes != planes:
            self.shortcut = ShortcutA(planes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> Stage:
    layers = [BasicBlock(in_planes, planes, stride)] + [BasicBlock(planes, planes) for _ in range(blocks - 1)]
    return Stage(*layers)


def _resnet_cifar(depth: int, num_classes: int, in_channels: int = 3, head: str = "linear", width: int = 16) -> Net:
    if (depth - 2) % 6:
        raise ValueError("ResNet-CIFAR depth must be 6n + 2")
    n = (depth - 2) // 6
    w = [width, 2 * width, 4 * width]
    body = nn.Sequential(
        nn.Conv2d(in_channels, w[0], 3, 1, 1, bias=False), nn.BatchNorm2d(w[0]), nn.ReLU(inplace=True),
        _stage(w[0], w[0], n, 1), _stage(w[0], w[1], n, 2),
    )
    net = Net(body, PoolFlatten(_stage(w[1], w[2], n, 2)), w[2], num_classes, head)
    net.apply(_init)
    return net


@MODELS.register("resnet32")
def resnet32(num_classes: int, in_channels: int = 3, head: str = "linear", width: int = 16) -> Net:
    """ResNet-32: 3 stages × 5 basic blocks, 16/32/64 channels (~0.46 M parameters for 100 classes)."""
    return _resnet_cifar(32, num_classes, in_channels, head, width)


@MODELS.register("resnet20")
def resnet20(num_classes: int, in_channels: int = 3, head: str = "linear", width: int = 16) -> Net:
    """ResNet-20: 3 stages × 3 basic blocks."""
    return _resnet_cifar(20, num_classes, in_channels, head, width)


@MODELS.register("resnet8")
def resnet8(num_classes: int, in_channels: int = 3, head: str = "linear", width: int = 16) -> Net:
    """ResNet-8: 3 stages × 1 basic block (a tiny CIFAR-style model for smoke runs)."""
    return _resnet_cifar(8, num_classes, in_channels, head, width)
