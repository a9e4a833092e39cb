"""One trial, with or without Ray: a resolved trial → train → write its Parquet rows (idempotently).

The trial arrives resolved (``ltsearch.resolved.resolve_trial``: every default, its plan, its trial
id and config key, made once); nothing here resolves it again. Its trial id is a hash of the fully
resolved experiment (seed included), so a configuration that has finished is recognised in the
store and never run or written twice.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pyarrow as pa

from ltsearch.data import LTData, build_dataset
from ltsearch.errors import UserError
from ltsearch.resolved import ResolvedTrial, as_trial, resolve_trial
from ltsearch.results.schema import param_column, param_value
from ltsearch.results.store import ResultStore
from ltsearch.spec import DataSpec, ExperimentSpec, Spec, canonical_json
from ltsearch.train.callbacks import Callback, Checkpoint
from ltsearch.train.loop import DistInfo, EpochRecord, Loop, NonFiniteLoss, Reporter, TrialOutput, start_trial
from ltsearch.train.state import STATE_VERSION


def trial_for(spec: Spec, params: dict[str, Any] | None = None, seed: int | None = None,
              subset_seed: int | None = None) -> ResolvedTrial:
    """The resolved trial of a spec's experiment with a Tune trial's searched ``params`` (a ``seed``
    entry or ``seed``; default: the first of ``search.seeds``; a ``subset_seed`` entry or
    ``subset_seed``; default: the first of ``search.subset_seeds`` when it is set, else the
    experiment's own ``data.subset_seed``) and the spec's resources."""
    values = dict(params or {})
    if seed is None and "seed" not in values:
        seed = spec.search.seeds[0]
    if subset_seed is None and "subset_seed" not in values and spec.search.subset_seeds:
        subset_seed = spec.search.subset_seeds[0]
    return resolve_trial(spec.experiment, values, seed, cpus=spec.resources.cpus_per_worker,
                         workers=spec.resources.workers, subset_seed=subset_seed)


def trial_id_for(exp: ExperimentSpec) -> str:
    """Hash of the resolved experiment (``model.arch: auto`` as the model it picks; see ``ltsearch.defaults``)."""
    return as_trial(exp).trial_id


def config_key_for(exp: ExperimentSpec) -> str:
    """Hash of the configuration without its seeds: rows of one configuration over seeds share it."""
    return as_trial(exp).config_key


@dataclass
class TrialContext:
    sweep: str
    run_dir: str
    param_types: dict[str, pa.DataType] = field(default_factory=dict)


_DATA_CACHE: dict[str, LTData] = {}


def cached_dataset(spec: DataSpec) -> LTData:
    """The dataset for ``spec``, kept for the next trial in this process (a reused actor).
    Keyed by the whole data spec and read-only for trials, so it carries no trial state."""
    key = canonical_json(spec.model_dump())
    if key not in _DATA_CACHE:
        _DATA_CACHE.clear()
        _DATA_CACHE[key] = build_dataset(spec)
    return _DATA_CACHE[key]


def split_config(config: dict[str, Any]) -> dict[str, Any]:
    """A Tune trial's searched values: grid/random trials carry their cell under ``params``;
    Optuna trials are flat. (Here, not in ``ltsearch.tune``, so a Tune-free caller can read them.)"""
    return dict(config["params"]) if "params" in config else dict(config)


def planned_epochs(exp: ExperimentSpec | ResolvedTrial) -> int:
    """Epochs over all stages, as the method's plan declares them."""
    return as_trial(exp).plan.epochs


def epoch_row(rec: EpochRecord) -> dict[str, Any]:
    d = asdict(rec)
    return {"stage": d["stage"], "epoch": d["epoch"] + 1, "train_loss": d["train_loss"], "lr": d["lr"],
            "seconds": d["seconds"], **d["val"], **d["test"], "schedules": d["schedules"]}


def base_row(trial: ResolvedTrial, ctx: TrialContext) -> dict[str, Any]:
    from ltsearch.results.provenance import provenance

    exp = trial.exp  # the arch column and config_json name the resolved model
    return {
        "sweep": ctx.sweep, "method": exp.method.name, "loss": trial.plan.loss,
        "dataset": exp.data.dataset, "arch": exp.model.arch, "imbalance": exp.data.imbalance, "seed": exp.seed,
        "subset_seed": exp.data.subset_seed,
        "epochs": trial.plan.epochs, "config_key": trial.config_key,
        "config_json": json.dumps(exp.model_dump(by_alias=True), sort_keys=True, default=str),
        "workers": trial.workers, "finished_at": time.time_ns() // 1000, **provenance(),
        **{param_column(k): param_value(v) for k, v in trial.params.items()},
    }


def write_outcome(ctx: TrialContext, trial: ResolvedTrial, status: str, error: str = "",
                  out: TrialOutput | None = None, records: list[EpochRecord] | None = None,
                  last: dict[str, Any] | None = None) -> str:
    """Write the trial's rows: ``ok`` with its output, or ``failed``/``stopped`` with what it
    reached — its epoch ``records``, or (driver side) Tune's ``last`` result, in which case the
    epochs file the trial wrote itself is left as it is."""
    tid = trial.trial_id
    row = base_row(trial, ctx)
    recs = out.epochs if out is not None else records
    if out is not None:
        row.update(out.summary)
    else:
        last_metrics = dict(last or (recs[-1].val if recs else {}))
        row.update({k: v for k, v in last_metrics.items() if k.startswith("val_")})
    done = len(recs) if recs is not None else int((last or {}).get("epoch", 0))
    row.update(status=status, error=error, epochs_done=done)
    store = ResultStore(ctx.run_dir)
    if out is not None and out.state:
        store.write_model(tid, out.state)
    store.write_trial(
        tid, row, ctx.param_types, epochs=None if recs is None else [epoch_row(r) for r in recs],
        per_class=out.per_class if out is not None else None, schedules=trial.plan.schedules,
    )
    return tid


class WriteEpochs(Callback):
    """``epochs/<trial_id>.parquet`` rewritten from ``TrainState.records`` after every epoch and
    after a stage restored from the stage cache, so a trial that stops anywhere leaves every epoch
    it reached on disk."""

    priority = 35

    def __init__(self, store: ResultStore, trial: ResolvedTrial):
        self.store, self.trial = store, trial

    def _write(self, loop: Any) -> None:
        self.store.write_epochs(self.trial.trial_id, [epoch_row(r) for r in loop.state.records],
                                self.trial.plan.schedules)

    def on_epoch_end(self, loop: Any, record: EpochRecord) -> None:
        self._write(loop)

    def on_stage_restored(self, loop: Any, stage: Any, records: list[EpochRecord]) -> None:
        self._write(loop)


def final_metrics(out: TrialOutput) -> dict[str, Any]:
    """What a finished trial reports last: its last epoch's metrics with the summary's val/test
    numbers (those of the tested model) and ``epoch`` = epochs trained."""
    summary = {k: v for k, v in out.summary.items() if k.startswith(("val_", "test_"))}
    return {**out.epochs[-1].metrics(), **summary, "epoch": len(out.epochs)}


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


def execute(
    trial: ResolvedTrial | ExperimentSpec,
    ctx: TrialContext,
    reporter: Reporter | None = None,
    resume: dict[str, Any] | None = None,
    dist: DistInfo | None = None,
    checkpoint_every: int = 1,
    write: bool = True,
) -> TrialOutput | None:
    """Run one trial and record it; everything it persists is keyed by its trial id.

    With ``write`` (rank 0 of a DDP trial, every plain trial): the epochs file is rewritten after
    each epoch, and every ``checkpoint_every`` epochs ``checkpoints/<trial_id>.pt`` is replaced
    atomically. A trial that starts and finds its checkpoint (after a crash, ``kill -9`` of the
    driver, a preempted node or a Tune retry) continues from it; the file is removed once the trial
    is recorded ok. A NaN/inf loss is recorded as ``failed`` and returns None; any other error is
    recorded as ``failed`` and re-raised (so Tune may retry it). The rows of a failed trial hold
    every epoch it reached (the loop's records, those restored from a checkpoint or the stage
    cache included).
    """
    trial = as_trial(trial)
    store = ResultStore(ctx.run_dir)
    tid = trial.trial_id
    if resume is None and checkpoint_every:
        resume = store.read_checkpoint(tid)
        if resume is not None and resume.get("version") != STATE_VERSION:
            resume = None  # written by an older ltsearch: start over rather than misread it
    resumed_from = len((resume or {}).get("records", []))
    callbacks: list[Callback] = []
    if write:
        callbacks.append(WriteEpochs(store, trial))
        if checkpoint_every:
            callbacks.append(Checkpoint(checkpoint_every, trial.plan.epochs, lambda s: store.write_checkpoint(tid, s)))
    loop: Loop | None = None

    def reached() -> list[EpochRecord]:
        if loop is not None:
            return list(loop.state.records)
        return [EpochRecord(**r) for r in (resume or {}).get("records", [])]

    try:
        loop = start_trial(trial, data=cached_dataset(trial.exp.data), reporter=reporter, resume=resume, dist=dist,
                           callbacks=callbacks)
        out = loop.run()
    except NonFiniteLoss as err:
        if write:
            write_outcome(ctx, trial, "failed", first_line(err), records=reached())
        return None
    except UserError:
        raise
    except Exception as err:
        if write:
            write_outcome(ctx, trial, "failed", first_line(err), records=reached())
        raise
    out.summary["resumed_from"] = resumed_from
    if write:
        write_outcome(ctx, trial, "ok", out=out)
        store.remove_checkpoint(tid)
    return out
