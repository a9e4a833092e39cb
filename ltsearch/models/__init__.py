"""Registered backbones; ``build_model(spec, num_classes, in_channels)``."""

from __future__ import annotations

from ltsearch.models import resnet, resnet_cifar, small  # noqa: F401  (register)
from ltsearch.models.heads import Net, NormedLinear, fresh_head, head_weight, make_head
from ltsearch.params import validate_kwargs
from ltsearch.registry import MODELS


def build_model(arch: str, num_classes: int, in_channels: int, head: str = "linear", **options: object) -> Net:
    fn = MODELS.get(arch, where="experiment.model.arch")
    options = validate_kwargs(fn, options, "experiment.model.options", skip=3)
    return fn(num_classes, in_channels=in_channels, head=head, **options)


__all__ = ["Net", "NormedLinear", "build_model", "fresh_head", "head_weight", "make_head"]
