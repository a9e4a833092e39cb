"""An experiment's dataset defaults, resolved in one place.

- ``model.arch: auto`` → the dataset's model (``ltsearch.models.auto.AUTO_ARCH``). Resolved before
  hashing: the trial id, ``config_key``, the trials' ``arch`` column and ``config_json`` see the
  resolved model, so ``auto`` and the model it stands for are the same configuration (and a change
  of the table gives new trial ids, never old rows for a different model).
- ``data.splits: {many: null, few: null}`` → the dataset's many/few thresholds
  (``ltsearch.data.longtail.default_splits``), from the protocol's class counts: before hashing
  where those follow from the spec (every built-in dataset; ImageNet-LT and iNaturalist use the
  literature's thresholds, which need no counts), in the loop from the data for a plugin dataset.
  So a spec with ``null`` and one with the numbers they stand for have one trial id, and the
  CIFAR-100-LT / ImageNet-LT / iNaturalist specs keep the ids they had with ``{many: 100, few: 20}``.
  Every row records the thresholds used (``split_many``, ``split_few``).
- ``threads: auto`` → ``resources.cpus_per_worker`` (at least 1): the CPU threads torch uses in the
  trial's process. On CPU the thread count changes the order of parallel sums and so the numbers,
  which makes it part of the configuration (``ltsearch train`` and ``ltsearch run`` of one trial id
  train with the same count and give the same result).
"""

from __future__ import annotations

from typing import Sequence

from ltsearch.data.datasets import protocol_counts
from ltsearch.data.longtail import CONVENTIONAL_SPLITS, resolve_splits
from ltsearch.errors import UserError
from ltsearch.models.auto import resolve_arch
from ltsearch.spec import ExperimentSpec


def resolve_threads(threads: int | str, cpus: float | None = None) -> int:
    """``experiment.threads``: a number as given; ``auto``: ``cpus`` (``resources.cpus_per_worker``;
    1 without a spec's resources), at least 1. Never the machine's core count, which would make a
    trial's identity depend on where it runs."""
    return threads if isinstance(threads, int) else max(1, int(cpus or 1))


def resolve_defaults(exp: ExperimentSpec, class_counts: Sequence[int] | None = None,
                     cpus: float | None = None) -> ExperimentSpec:
    """``exp`` with ``model.arch``, ``data.splits`` and ``threads`` resolved; ``class_counts``: the
    protocol's counts of the data trained on (default: derived from the spec where possible, else
    splits that need them stay as written); ``cpus``: ``resources.cpus_per_worker``."""
    arch = resolve_arch(exp.model.arch, exp.data.dataset)
    update: dict = {}
    if exp.threads == "auto":
        update["threads"] = resolve_threads(exp.threads, cpus)
    if arch != exp.model.arch:
        update["model"] = exp.model.model_copy(update={"arch": arch})
    if class_counts is None:
        class_counts = protocol_counts(exp.data)
    if class_counts is None and exp.data.dataset in CONVENTIONAL_SPLITS:
        class_counts = []  # the literature's thresholds need no counts
    if class_counts is not None:
        try:
            many, few = resolve_splits(exp.data.splits.many, exp.data.splits.few, exp.data.dataset, class_counts)
        except ValueError as err:
            raise UserError(f"experiment.data.splits: {err}") from None
        if (many, few) != (exp.data.splits.many, exp.data.splits.few):
            splits = exp.data.splits.model_copy(update={"many": many, "few": few})
            update["data"] = exp.data.model_copy(update={"splits": splits})
    return exp.model_copy(update=update) if update else exp
