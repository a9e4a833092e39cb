"""Registered methods; ``build_method(spec, class_counts, ...)``. One file per method."""

from __future__ import annotations

import importlib
import json
import pkgutil
from typing import Any, Iterable, Sequence

from ltsearch.methods.base import (
    Method, MethodContext, Phase, Plan, Stage, Stream, TrainStats, check_schedules, check_step_output,
    compressed_phases,
)
from ltsearch.data.longtail import resolve_splits
from ltsearch.models import Net, build_model
from ltsearch.models.auto import resolve_arch
from ltsearch.registry import METHODS
from ltsearch.spec import ExperimentSpec

for _mod in pkgutil.iter_modules(__path__):  # each method module registers itself
    if _mod.name != "base":
        importlib.import_module(f"{__name__}.{_mod.name}")


def make_method(name: str, raw_params: dict[str, Any], ctx: MethodContext) -> Method:
    """Method ``name`` from its (unvalidated) parameters and a context."""
    cls = METHODS.get(name, where="experiment.method.name")
    return cls(cls.validate_params(raw_params), ctx)


def method_plan(exp: ExperimentSpec) -> Plan:
    """The plan of ``exp``'s method (stages, switches, schedules, loss) without building it."""
    cls = METHODS.get(exp.method.name, where="experiment.method.name")
    return cls.plan(cls.validate_params(exp.method.params()), exp.optim)


def build_method(spec: ExperimentSpec, class_counts: Sequence[int], in_channels: int = 3, rank: int = 0,
                 world_size: int = 1) -> Method:
    """The method of ``spec.method`` for these training class counts, with the backbone of
    ``spec.model`` (the loop uses it too; ``rank`` / ``world_size``: this DDP process)."""
    num_classes = len(class_counts)
    arch = resolve_arch(spec.model.arch, spec.data.dataset)  # model.arch: auto -> the dataset's model

    def model_factory(head: str) -> Net:
        return build_model(arch, num_classes, in_channels, head if head != "auto" else "linear", **spec.model.options)

    splits = resolve_splits(spec.data.splits.many, spec.data.splits.few, spec.data.dataset, class_counts)
    ctx = MethodContext(class_counts=list(class_counts), in_channels=in_channels, optim=spec.optim,
                        build_model=model_factory, model_head=spec.model.head, seed=spec.seed, splits=splits,
                        rank=rank, world_size=world_size)
    return make_method(spec.method.name, spec.method.params(), ctx)


def method_notices(experiments: Iterable[ExperimentSpec], class_counts: Sequence[int]) -> list[str]:
    """The distinct notices (``Method.notices``) of the methods these experiments train, for these
    training class counts, in first-seen order (a method section that does not validate is skipped:
    the trial reports that error itself)."""
    out: list[str] = []
    seen: set[str] = set()
    for exp in experiments:
        key = json.dumps({"name": exp.method.name, **exp.method.params()}, sort_keys=True, default=str)
        if key in seen:
            continue
        seen.add(key)
        cls = METHODS.get(exp.method.name, where="experiment.method.name")
        try:
            params = cls.validate_params(exp.method.params())
        except Exception:  # noqa: BLE001 - reported by the trial
            continue
        out.extend(n for n in cls.notices(params, list(class_counts)) if n not in out)
    return out


__all__ = ["Method", "MethodContext", "Phase", "Plan", "Stage", "Stream", "TrainStats", "build_method", "check_schedules",
           "check_step_output", "compressed_phases", "make_method", "method_notices", "method_plan"]
