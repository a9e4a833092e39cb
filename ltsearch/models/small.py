"""Small models for digits / Fashion-MNIST / tests."""

from __future__ import annotations

import torch.nn as nn

from ltsearch.models.heads import Net, PoolFlatten
from ltsearch.registry import MODELS


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


@MODELS.register("small_cnn")
def small_cnn(num_classes: int, in_channels: int = 1, head: str = "linear", width: int = 32) -> Net:
    """Three 3×3 conv-BN-ReLU layers (width, 2·width, 2·width; the second strided) and global pooling."""
    body = nn.Sequential(_conv(in_channels, width), _conv(width, 2 * width, 2))
    return Net(body, PoolFlatten(_conv(2 * width, 2 * width)), 2 * width, num_classes, head)


@MODELS.register("mlp")
def mlp(num_classes: int, in_channels: int = 1, head: str = "linear", hidden: int = 128, size: int = 8) -> Net:
    """Flatten → Linear(hidden) → ReLU → Linear(hidden) → ReLU (for ``size``×``size`` inputs)."""
    body = nn.Sequential(nn.Flatten(), nn.Linear(in_channels * size * size, hidden), nn.ReLU(inplace=True))
    neck = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(inplace=True))
    return Net(body, neck, hidden, num_classes, head)
