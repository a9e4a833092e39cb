"""The seed loop of a Tune trial, one for plain and DDP trials (``tune_trial``, ``ddp_trainable``).

A Tune trial is one configuration. A grid / random / race cell names its seed (and its
``subset_seed`` with ``search.subset_seeds``); an Optuna trial trains its configuration over every
``search.seeds`` (on every subset of ``search.subset_seeds``: ``ltsearch.space.seed_units``) and
reports the mean of each metric of ``search.metric`` (DDP trials too). For each seed the trial is resolved once (``ltsearch.trial.trial_for``); a seed whose ``ok``
row is already in the store (a trial restored after the driver died, whose rows were written before
that) is taken as it is; any other is trained by ``train(trial, report_epochs)``, which writes the
trial's rows (a plain trial in this process, a DDP trial through a ``TorchTrainer``). The outcome
is then read from the row, the same way for both: a ``failed`` seed (NaN loss) ends the trial with
``failed: 1`` and a NaN metric. Only the first seed reports its epochs, and never its last one: the
last epoch is reported once the rows are written, so a scheduler's STOP loses nothing, and ASHA
never sees a multi-seed trial reach ``max_t`` before its last seed.
"""

from __future__ import annotations

import math
from typing import Any, Callable

from ltsearch.resolved import ResolvedTrial
from ltsearch.results.store import ResultStore
from ltsearch.space import seed_units
from ltsearch.spec import Spec
from ltsearch.trial import trial_for

Report = Callable[[dict[str, Any]], None]
Train = Callable[[ResolvedTrial, bool], None]


def stored_outcome(store: ResultStore, tid: str) -> tuple[str, dict[str, Any]] | None:
    """``(status, metrics)`` of a trial that has a row (metrics: its val/test numbers, the last
    epoch's ``train_loss`` and ``epoch`` = epochs trained), or None."""
    if not store.has_trial(tid):
        return None
    row = store.read_trial(tid)
    metrics = {k: v for k, v in row.items() if k.startswith(("val_", "test_"))}
    metrics["epoch"] = int(row.get("epochs_done") or row.get("epochs") or 0)
    metrics.setdefault("train_loss", _last_train_loss(store, tid))
    return str(row.get("status")), metrics


def _last_train_loss(store: ResultStore, tid: str) -> float | None:
    """The last epoch's training loss from the trial's epochs rows (None where there are none)."""
    try:
        table = store.read_rows("epochs", tid, columns=["train_loss"])  # its own file, or a compacted run's rows
    except (OSError, ValueError):
        return None
    if "train_loss" not in table.column_names:
        return None
    losses = table.column("train_loss").to_pylist()
    return losses[-1] if losses else None


def trial_units(spec: Spec, params: dict[str, Any]) -> tuple[dict[str, Any], list[dict[str, int]]]:
    """``(configuration, units)``: a grid / random / race cell names its one unit (``seed``, and
    ``subset_seed`` with ``search.subset_seeds``); an Optuna trial trains every unit of
    ``ltsearch.space.seed_units`` (each seed on each subset)."""
    params = dict(params)
    if "seed" in params:
        unit = {"seed": params.pop("seed")}
        if "subset_seed" in params:
            unit["subset_seed"] = params.pop("subset_seed")
        return params, [unit]
    return params, seed_units(spec.search)


def run_configuration(spec: Spec, params: dict[str, Any], run_dir: str, train: Train, report: Report) -> None:
    """Train (or find) every unit (seed, or subset x seed) of the configuration ``params`` and report
    its result once: each metric of ``search.metric`` as its mean over the units."""
    params, units = trial_units(spec, params)
    metrics = spec.search.metrics
    store = ResultStore(run_dir)
    values: dict[str, list[float]] = {m: [] for m in metrics}
    final: dict[str, Any] = {}
    for i, unit in enumerate(units):
        trial = trial_for(spec, params, unit["seed"], subset_seed=unit.get("subset_seed"))
        outcome = stored_outcome(store, trial.trial_id)
        if outcome is None or outcome[0] != "ok":
            train(trial, i == 0)
            outcome = stored_outcome(store, trial.trial_id)
        if outcome is None or outcome[0] != "ok":  # NaN loss: recorded as failed; tell Tune it ended badly
            report({"epoch": trial.plan.epochs, "trial_key": trial.trial_id, "failed": 1,
                    **{m: math.nan for m in metrics}})
            return
        final = {**outcome[1], "trial_key": trial.trial_id}
        for m in metrics:
            value = final.get(m)
            values[m].append(float(value) if value is not None else math.nan)
    for m in metrics:  # the mean over seeds (and subsets) for multi-seed trials
        final[m] = sum(values[m]) / len(values[m])
    report({**final, "seeds": len(units)})


def epoch_reporter(trial: ResolvedTrial, report: Report) -> Callable[..., None]:
    """The loop's reporter that hands every epoch but the last to ``report`` (see the module)."""

    def on_epoch(rec: Any, state: Any = None) -> None:
        if rec.epoch + 1 < trial.plan.epochs:
            report({**rec.metrics(), "trial_key": trial.trial_id})

    return on_epoch
