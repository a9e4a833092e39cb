"""Registered methods; ``build_method(spec, class_counts, ...)``. One file per method."""

from __future__ import annotations

import importlib
import pkgutil

from ltsearch.methods.base import Method, MethodContext, Stage, Stream, check_step_output
from ltsearch.registry import METHODS

for _mod in pkgutil.iter_modules(__path__):  # each method module registers itself
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")


def build_method(name: str, raw_params: dict, ctx: MethodContext) -> Method:
    cls = METHODS.get(name, where="experiment.method.name")
    params = cls.validate_params(raw_params)
    return cls(params, ctx)


__all__ = ["Method", "MethodContext", "Stage", "Stream", "build_method", "check_step_output"]
