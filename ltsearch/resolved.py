"""One resolved trial: the single value every layer of a trial receives.

``resolve_trial(experiment, params, seed)`` applies a trial's searched values to the spec's
experiment, resolves every default (``ltsearch.defaults``: the model of ``model.arch: auto``, the
dataset's many/few thresholds, the CPU thread count; the method's own parameter defaults), asks the method for its plan and hashes the
result, once. What it returns carries everything the driver, the Tune and DDP trainables, the
loop, the store and the method builder need, so none of them resolves again:

- ``exp``: the experiment as trained (this is what ``config_json`` records);
- ``plan``: the method's :class:`~ltsearch.methods.Plan` (stages, switches, schedule columns, loss);
- ``trial_id``: hash of ``exp`` (seed included) and, for a DDP trial, its number of workers (DDP
  shards batch-norm statistics and sums in another order): one resolved configuration, one result;
- ``config_key``: hash of ``exp`` without its seeds (``seed``; ``data.subset_seed`` is the data's
  draw, a seed of its own, when ``search.subset_seeds`` repeats it): rows of one configuration over
  seeds share it, and reports, ``compare``, ``status`` and the study group by it;
- ``params``: the searched values by dotted path (the trials table's parameter columns).
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass, field
from typing import Any

from ltsearch.defaults import resolve_defaults
from ltsearch.methods import Plan, method_plan
from ltsearch.registry import METHODS
from ltsearch.spec import ExperimentSpec, MethodSpec, canonical_json, resolve_experiment

# what a configuration is without its seeds: the rows of one configuration differ only in these
SEED_PATHS = (("seed",), ("data", "subset_seed"))


def _hash(tree: dict[str, Any]) -> str:
    return hashlib.sha256(canonical_json(tree).encode()).hexdigest()[:12]


def identity_tree(exp: ExperimentSpec, workers: int = 1) -> dict[str, Any]:
    """What ``trial_id`` hashes: ``exp`` as a plain tree, and ``workers`` when the trial is DDP."""
    tree = exp.model_dump(by_alias=True)
    if workers > 1:
        tree["workers"] = workers
    return tree


def configuration_tree(exp: ExperimentSpec, workers: int = 1) -> dict[str, Any]:
    """What ``config_key`` hashes: the identity tree without the seeds."""
    tree = identity_tree(exp, workers)
    for path in SEED_PATHS:
        node = tree
        for part in path[:-1]:
            node = node.get(part, {})
        node.pop(path[-1], None)
    return tree


@dataclass(frozen=True)
class ResolvedTrial:
    exp: ExperimentSpec
    plan: Plan
    trial_id: str
    config_key: str
    params: dict[str, Any] = field(default_factory=dict)
    workers: int = 1  # processes training it (DDP when > 1)

    @property
    def seed(self) -> int:
        return self.exp.seed

    def with_exp(self, exp: ExperimentSpec) -> "ResolvedTrial":
        """The same trial with defaults completed from the data (a plugin dataset's thresholds):
        its ids stay those of the configuration as the spec determines it."""
        return dataclasses.replace(self, exp=exp)


def with_method_defaults(exp: ExperimentSpec) -> ExperimentSpec:
    """``exp`` with its method section as the method's ``Params`` validate it, every default filled in,
    so a parameter written out at its default and one left out are one configuration."""
    cls = METHODS.get(exp.method.name, where="experiment.method.name")
    params = cls.validate_params(exp.method.params()).model_dump(mode="json")
    return exp.model_copy(update={"method": MethodSpec.model_validate({"name": exp.method.name, **params})})


def resolve_trial(base: ExperimentSpec, params: dict[str, Any] | None = None, seed: int | None = None,
                  cpus: float | None = None, workers: int = 1, source: str = "search.space",
                  subset_seed: int | None = None) -> ResolvedTrial:
    """The trial of ``base`` with the searched ``params`` (dotted paths below ``experiment``; a
    ``seed`` entry or ``seed`` sets the seed; a ``subset_seed`` entry or ``subset_seed`` sets
    ``data.subset_seed``, the long-tailed subset's draw of ``search.subset_seeds``), ``cpus`` =
    ``resources.cpus_per_worker`` and ``workers`` = ``resources.workers``. Neither seed is a
    searched value (no parameter column: the trials table has ``seed`` and ``subset_seed``)."""
    values = dict(params or {})
    if seed is not None:
        values["seed"] = seed
    subset = values.pop("subset_seed", None) if subset_seed is None else subset_seed
    values.pop("subset_seed", None)
    searched = {k: v for k, v in values.items() if k != "seed" and not k.startswith("_")}
    if subset is not None:
        values["data.subset_seed"] = subset
    exp = resolve_experiment(base, values, source=source) if values else base
    exp = with_method_defaults(resolve_defaults(exp, cpus=cpus))
    return ResolvedTrial(exp=exp, plan=method_plan(exp), trial_id=_hash(identity_tree(exp, workers)),
                         config_key=_hash(configuration_tree(exp, workers)), params=searched, workers=workers)


def as_trial(trial: ResolvedTrial | ExperimentSpec) -> ResolvedTrial:
    """A ``ResolvedTrial`` as it is; an ``ExperimentSpec`` resolved (once) as it stands."""
    return trial if isinstance(trial, ResolvedTrial) else resolve_trial(trial)
