"""One trial, with or without Ray: resolve → train → write its Parquet rows (idempotently).

The trial id is a hash of the fully resolved experiment (seed included), so a configuration that
has finished is recognised in the store and never run or written twice.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import pyarrow as pa

from ltsearch.data import LTData, build_dataset
from ltsearch.defaults import resolve_defaults
from ltsearch.errors import UserError
from ltsearch.results.schema import param_column, param_value
from ltsearch.results.store import ResultStore
from ltsearch.methods import method_plan
from ltsearch.spec import DataSpec, ExperimentSpec, canonical_json
from ltsearch.train.callbacks import Checkpoint
from ltsearch.train.loop import DistInfo, EpochRecord, NonFiniteLoss, Reporter, TrialOutput, run_trial
from ltsearch.train.state import STATE_VERSION


def trial_id_for(exp: ExperimentSpec) -> str:
    """Hash of the resolved experiment (``model.arch: auto`` as the model it picks; see ``ltsearch.defaults``)."""
    return hashlib.sha256(canonical_json(resolve_defaults(exp).model_dump(by_alias=True)).encode()).hexdigest()[:12]


def config_key_for(exp: ExperimentSpec) -> str:
    """Hash of the configuration without its seed: rows of one configuration over seeds share it."""
    tree = resolve_defaults(exp).model_dump(by_alias=True)
    tree.pop("seed", None)
    return hashlib.sha256(canonical_json(tree).encode()).hexdigest()[:12]


@dataclass
class TrialContext:
    sweep: str
    run_dir: str
    param_types: dict[str, pa.DataType] = field(default_factory=dict)
    params: dict[str, Any] = field(default_factory=dict)  # searched dotted path -> value
    workers: int = 1


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
    Optuna trials are flat. (Here, not in ``ltsearch.tune``, so ``train/ddp.py`` needs no Tune module.)"""
    return dict(config["params"]) if "params" in config else dict(config)


def planned_epochs(exp: ExperimentSpec) -> int:
    """Epochs over all stages, as the method's plan declares them."""
    return method_plan(exp).epochs


def epoch_row(rec: EpochRecord) -> dict[str, Any]:
    d = asdict(rec)
    return {"stage": d["stage"], "epoch": d["epoch"] + 1, "train_loss": d["train_loss"], "lr": d["lr"],
            "seconds": d["seconds"], **d["val"], **d["test"], "schedules": d["schedules"]}


def base_row(exp: ExperimentSpec, ctx: TrialContext) -> dict[str, Any]:
    from ltsearch.results.provenance import provenance

    plan = method_plan(exp)
    exp = resolve_defaults(exp)  # the arch column and config_json name the resolved model
    return {
        "sweep": ctx.sweep, "method": exp.method.name, "loss": plan.loss,
        "dataset": exp.data.dataset, "arch": exp.model.arch, "imbalance": exp.data.imbalance, "seed": exp.seed,
        "epochs": plan.epochs, "config_key": config_key_for(exp),
        "config_json": json.dumps(exp.model_dump(by_alias=True), sort_keys=True, default=str),
        "workers": ctx.workers, "finished_at": time.time_ns() // 1000, **provenance(),
        **{param_column(k): param_value(v) for k, v in ctx.params.items() if k != "seed"},
    }


def write_outcome(ctx: TrialContext, exp: ExperimentSpec, status: str, error: str = "",
                  out: TrialOutput | None = None, records: list[EpochRecord] | None = None,
                  last: dict[str, Any] | None = None) -> str:
    """Write the trial's rows: ``ok`` with its output, or ``failed``/``stopped`` with what it
    reached — its epoch ``records``, or (driver side) Tune's ``last`` result, in which case the
    epochs file the trial wrote itself is left as it is."""
    tid = trial_id_for(exp)
    row = base_row(exp, ctx)
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
        per_class=out.per_class if out is not None else None, schedules=method_plan(exp).schedules,
    )
    return tid


def final_metrics(out: TrialOutput) -> dict[str, Any]:
    """What a finished trial reports last: its last epoch's metrics with the summary's val/test
    numbers (those of the tested model) and ``epoch`` = epochs trained."""
    summary = {k: v for k, v in out.summary.items() if k.startswith(("val_", "test_"))}
    return {**out.epochs[-1].metrics(), **summary, "epoch": len(out.epochs)}


def first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return f"{type(err).__name__}: {text[0] if text else ''}"[:500]


def execute(
    exp: ExperimentSpec,
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
    recorded as ``failed`` and re-raised (so Tune may retry it).
    """
    store = ResultStore(ctx.run_dir)
    tid = trial_id_for(exp)
    schedules = method_plan(exp).schedules
    if resume is None and checkpoint_every:
        resume = store.read_checkpoint(tid)
        if resume is not None and resume.get("version") != STATE_VERSION:
            resume = None  # written by an older ltsearch: start over rather than misread it
    records: list[EpochRecord] = [EpochRecord(**r) for r in (resume or {}).get("records", [])]
    resumed_from = len(records)

    def collect(rec: EpochRecord, state: Callable[[], dict[str, Any]]) -> None:
        records.append(rec)
        if write:
            store.write_epochs(tid, [epoch_row(r) for r in records], schedules)
        if reporter is not None:
            reporter(rec, state)

    callbacks = []
    if write and checkpoint_every:
        callbacks.append(Checkpoint(checkpoint_every, planned_epochs(exp), lambda s: store.write_checkpoint(tid, s)))
    try:
        out = run_trial(exp, data=cached_dataset(exp.data), reporter=collect, resume=resume, dist=dist,
                        callbacks=callbacks)
    except NonFiniteLoss as err:
        if write:
            write_outcome(ctx, exp, "failed", first_line(err), records=records)
        return None
    except UserError:
        raise
    except Exception as err:
        if write:
            write_outcome(ctx, exp, "failed", first_line(err), records=records)
        raise
    out.summary["resumed_from"] = resumed_from
    if write:
        write_outcome(ctx, exp, "ok", out=out)
        store.remove_checkpoint(tid)
    return out
