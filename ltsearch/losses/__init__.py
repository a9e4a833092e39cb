"""Registered losses; ``build_loss(name, class_counts, **params)``.

Every loss is an ``LTLoss`` (``forward(logits, target) -> scalar``, mean over the batch) whose
docstring gives its formula and paper. Losses that depend on training progress or on per-class
accuracy implement ``set_progress(p)`` / ``update(per_class_acc)``.
"""

from __future__ import annotations

import importlib
import pkgutil
from typing import Any, Sequence

import torch

from ltsearch.errors import UserError
from ltsearch.losses.base import LTLoss, class_balanced_weights, counts_tensor
from ltsearch.params import settable, validate_kwargs
from ltsearch.registry import LOSSES

for _mod in pkgutil.iter_modules(__path__):  # one module per loss family, each registers itself
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")


def check_loss_params(name: str, params: dict[str, Any], where: str = "method",
                      also: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """Loss ``name``'s parameters checked (names, types, ranges from its signature); coerced.
    ``also``: the other keys of the section they sit in (``params.validate_kwargs``)."""
    cls = LOSSES.get(name, where=f"{where}.loss")
    return validate_kwargs(cls.__init__, params, where, skip=2, owner=f"loss {name}", also=also)


def resolved_loss_params(name: str, params: dict[str, Any]) -> dict[str, Any]:
    """``params`` with the loss's own defaults filled in (``weight`` left out): what the loss is
    built with, e.g. for a cache identity that must not depend on how a default was spelled."""
    defaults = {p.name: p.default for p in settable(LOSSES.get(name).__init__, skip=2)
                if p.name != "weight" and p.default is not p.empty}
    return {**defaults, **params}


def build_loss(name: str, class_counts: Sequence[int] | torch.Tensor, where: str = "method", **params: Any) -> LTLoss:
    """Build loss ``name`` for these training class counts (parameters validated first)."""
    params = check_loss_params(name, params, where)
    try:
        return LOSSES.get(name)(class_counts, **params)
    except (ValueError, TypeError) as err:
        raise UserError(f"{where}: loss {name!r}: {err}") from None


__all__ = ["LTLoss", "build_loss", "check_loss_params", "class_balanced_weights", "counts_tensor", "resolved_loss_params"]
