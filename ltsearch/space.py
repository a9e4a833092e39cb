"""From a ``SearchSpec`` to concrete trials: grid/random cells (planned here, deterministically, so
re-runs can skip finished cells) and an Optuna define-by-run space (conditional parameters).

A conditional parameter (``when: {method.loss: focal}``) is active when every ``when`` key has the
given value (or one of a list). Conditions are evaluated in dependency order (``space_order``: a
key comes after the searched keys its ``when`` names), whatever the order of ``search.space`` in
the YAML, so a grid's cells and Optuna's suggestions agree; a cycle of conditions is an error that
names its keys. No Ray here: the driver, ``ltsearch status`` and tests plan without it.
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from ltsearch.spec import Dist, ExperimentSpec, SearchSpec, get_path, space_order


def _sample(dist: Dist, rng: np.random.Generator) -> Any:
    kind, v = dist.kind, dist.values_for(dist.kind)
    if kind in ("grid", "choice"):
        return v[int(rng.integers(len(v)))]
    if kind == "uniform":
        return float(rng.uniform(v[0], v[1]))
    if kind == "loguniform":
        return float(np.exp(rng.uniform(np.log(v[0]), np.log(v[1]))))
    return int(rng.integers(v[0], v[1] + 1))


def active(dist: Dist, chosen: dict[str, Any], base: dict[str, Any]) -> bool:
    """A conditional parameter is active when every ``when`` key has the given value (or one of a
    list): a searched key's value in ``chosen`` (absent: not active, so the experiment's value), else
    the experiment's own value."""
    for key, want in (dist.when or {}).items():
        have = chosen.get(key, get_path(base, key))
        if (have not in want) if isinstance(want, list) else (have != want):
            return False
    return True


def _prune(params: dict[str, Any], search: SearchSpec, base: dict[str, Any], order: list[str]) -> dict[str, Any]:
    """The active parameters of a full assignment, decided in dependency order (a parameter whose
    condition names an inactive one sees the experiment's value there)."""
    kept: dict[str, Any] = {}
    for key in order:
        if key in params and active(search.space[key], kept, base):
            kept[key] = params[key]
    return {k: kept[k] for k in params if k in kept}


def plan_cells(search: SearchSpec, experiment: ExperimentSpec) -> list[dict[str, Any]]:
    """Every trial of a grid or random search as ``{dotted path: value, "seed": s}``, no duplicates.

    grid: the Cartesian product of the ``grid`` entries; other distributions get ``num_samples``
    seeded draws, each crossed with the grid. random: ``num_samples`` seeded draws of everything.
    Each configuration is repeated over ``seed_units`` (``search.seeds``, crossed with
    ``search.subset_seeds`` when it is set: the cell then also names its ``subset_seed``).
    """
    return [{**c, **unit} for c in plan_configurations(search, experiment) for unit in seed_units(search)]


def seed_units(search: SearchSpec) -> list[dict[str, int]]:
    """The seeds every configuration is trained with, in the order a trial's seed loop trains them:
    ``{"seed": s}`` for each of ``search.seeds``; with ``search.subset_seeds``, ``{"subset_seed": b,
    "seed": s}`` for each subset b and each seed s (subset by subset, so a process that trains them
    in turn builds each subset once). Two configurations trained on one unit share its subset and
    its initialisation seed: they are paired."""
    if not search.subset_seeds:
        return [{"seed": s} for s in search.seeds]
    return [{"subset_seed": b, "seed": s} for b in search.subset_seeds for s in search.seeds]


def race_units(search: SearchSpec) -> list[dict[str, int]]:
    """The units a race adds one at a time (``search.race``): the first ``max_seeds`` of
    ``search.seeds``; with ``search.subset_seeds``, the k-th seed is trained on the subset
    ``subset_seeds[k % len(subset_seeds)]``, so the race's spread covers both sources of variance."""
    assert search.race is not None
    seeds = search.seeds[: search.race.max_seeds]
    subsets = search.subset_seeds
    if not subsets:
        return [{"seed": s} for s in seeds]
    return [{"subset_seed": subsets[k % len(subsets)], "seed": s} for k, s in enumerate(seeds)]


def plan_configurations(search: SearchSpec, experiment: ExperimentSpec) -> list[dict[str, Any]]:
    """The configurations of a grid or random search (active parameters only, no seeds), in plan order."""
    base = experiment.model_dump(by_alias=True)
    rng = np.random.default_rng(search.seed)
    space = search.space
    order = space_order(space)
    grid_keys = [k for k, d in space.items() if d.kind == "grid"] if search.algorithm == "grid" else []
    rest = [k for k in space if k not in grid_keys]
    samples = [{k: _sample(space[k], rng) for k in rest} for _ in range(search.num_samples if rest else 1)]
    configs: list[dict[str, Any]] = []
    seen: set[str] = set()
    for combo in itertools.product(*(space[k].grid for k in grid_keys)):
        for sample in samples:
            params = _prune({**dict(zip(grid_keys, combo)), **sample}, search, base, order)
            key = repr(sorted(params.items()))
            if key not in seen:
                seen.add(key)
                configs.append(params)
    return configs


def finite_configurations(search: SearchSpec, experiment: ExperimentSpec, limit: int = 100_000) -> list[dict[str, Any]] | None:
    """Every configuration (active parameters only) of a space whose parameters all take finitely
    many values (grid, choice, int) — what Optuna's define-by-run space can propose — or None for a
    space with a continuous parameter or more than ``limit`` combinations."""
    space = search.space
    if any(d.kind in ("uniform", "loguniform") for d in space.values()):
        return None
    values = {k: (list(d.values_for(d.kind)) if d.kind != "int" else list(range(d.int_[0], d.int_[1] + 1)))
              for k, d in space.items()}
    total = 1
    for v in values.values():
        total *= len(v)
    if total > limit:
        return None
    base, order = experiment.model_dump(by_alias=True), space_order(space)
    out: dict[str, dict[str, Any]] = {}
    for combo in itertools.product(*values.values()):
        params = _prune(dict(zip(values, combo)), search, base, order)
        out.setdefault(repr(sorted((k, repr(v)) for k, v in params.items())), params)
    return list(out.values())


class OptunaDefineByRun:
    """An Optuna define-by-run space: conditional parameters are suggested only when active, in
    dependency order (``space_order``). A class (not a closure) so Tune can pickle the searcher into
    its experiment checkpoint."""

    def __init__(self, search: SearchSpec, experiment: ExperimentSpec):
        # Tune pickles the space with the searcher: it keeps no database URL (a password stays in memory)
        self.search, self.experiment = search.model_copy(update={"optuna_storage": None}), experiment
        self.base = experiment.model_dump(by_alias=True)
        self.order = space_order(search.space)

    def __call__(self, trial: Any) -> None:
        chosen: dict[str, Any] = {}
        for key in self.order:
            d = self.search.space[key]
            if not active(d, chosen, self.base):
                continue
            v = d.values_for(d.kind)
            if d.kind in ("grid", "choice"):
                chosen[key] = trial.suggest_categorical(key, list(v))
            elif d.kind == "uniform":
                chosen[key] = trial.suggest_float(key, v[0], v[1])
            elif d.kind == "loguniform":
                chosen[key] = trial.suggest_float(key, v[0], v[1], log=True)
            else:
                chosen[key] = trial.suggest_int(key, v[0], v[1])
        return None
