"""Small models for digits / Fashion-MNIST / tests: ``small_cnn`` (the digits quickstart), ``lenet``
(a LeNet-style CNN for 28×28 grey images) and ``mlp``."""

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


@MODELS.register("lenet")
def lenet(num_classes: int, in_channels: int = 1, head: str = "linear", width: int = 32, hidden: int = 128,
          grid: int = 7) -> Net:
    """LeNet-style CNN for small grey images (Fashion-MNIST): two 3×3 conv–BN–ReLU–2×2 max-pool
    layers (``width``, 2·``width`` channels), an FC layer of ``hidden`` units with ReLU, the classifier.

    ``body`` is the two conv layers (28×28 → 7×7 maps), average-pooled to ``grid``×``grid`` (the
    identity on 28×28 input; other sizes are brought to the same FC input); ``neck`` is the FC
    layer, so the multi-branch methods (BBN, SDNHL, HRDC) give each branch its own ``hidden``-d
    representation over shared convolutional features, as BBN's branches share all but the last
    block; decoupled methods re-train the classifier on these ``hidden`` features.
    ~0.42 M parameters at the defaults for 10 classes (the FC layer holds 95 % of them)."""
    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(nn.Conv2d(cin, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                             nn.MaxPool2d(2))

    body = nn.Sequential(block(in_channels, width), block(width, 2 * width), nn.AdaptiveAvgPool2d(grid))
    neck = nn.Sequential(nn.Flatten(), nn.Linear(2 * width * grid * grid, hidden), nn.ReLU(inplace=True))
    return Net(body, neck, hidden, num_classes, head)
