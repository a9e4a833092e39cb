"""The Tune function trainable: config → resolved experiment → the one loop → Parquet.

Thin on purpose: per epoch it reports metrics (``epoch`` is ASHA's time attribute) and, every
``checkpoint_every`` epochs, a checkpoint with model, optimiser, method and RNG state.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Callable

import torch
from ray import tune

from ltsearch.spec import Spec, resolve_experiment
from ltsearch.trial import TrialContext, epoch_row, execute, planned_epochs
from ltsearch.results.store import ResultStore
from ltsearch.train.loop import EpochRecord, threads_for

STATE_FILE = "state.pt"


def load_checkpoint_state() -> dict[str, Any] | None:
    ckpt = tune.get_checkpoint()
    if ckpt is None:
        return None
    with ckpt.as_directory() as d:
        return torch.load(os.path.join(d, STATE_FILE), weights_only=True, map_location="cpu")


def split_config(config: dict[str, Any]) -> dict[str, Any]:
    """Grid/random trials carry their cell under ``params``; Optuna trials are flat."""
    return dict(config["params"]) if "params" in config else dict(config)


def tune_trial(config: dict[str, Any], *, spec_json: str, run_dir: str, param_types: dict, cpus: float) -> None:
    spec = Spec.model_validate_json(spec_json)
    params = split_config(config)
    torch.set_num_threads(threads_for(cpus))
    if torch.get_num_interop_threads() > threads_for(cpus):
        try:  # settable once per process, before any inter-op work (a reused actor keeps its value)
            torch.set_num_interop_threads(threads_for(cpus))
        except RuntimeError:
            pass
    seeds = [params.pop("seed")] if "seed" in params else list(spec.search.seeds)
    every = spec.search.checkpoint_every
    vals: list[float] = []
    for i, seed in enumerate(seeds):
        exp = resolve_experiment(spec.experiment, {**params, "seed": seed}, source="search.space")
        ctx = TrialContext(spec.name, run_dir, param_types, params, spec.resources.workers)
        store = ResultStore(run_dir)
        from ltsearch.trial import trial_id_for

        tid = trial_id_for(exp)
        rows: list[dict[str, Any]] = []
        last_seed = i == len(seeds) - 1
        planned = planned_epochs(exp)

        def report(rec: EpochRecord, state: Callable[[], dict[str, Any]], _tid: str = tid) -> None:
            rows.append(epoch_row(rec))
            store.write_epochs(_tid, rows)
            if i > 0 or rec.epoch + 1 >= planned:
                # later seeds of a multi-seed Optuna trial report only at the end; the last epoch is
                # reported after the trial's rows are written (a scheduler STOP on it then loses nothing)
                return
            metrics = {**rec.metrics(), "trial_key": _tid}
            if every and (rec.epoch + 1) % every == 0:
                with tempfile.TemporaryDirectory() as d:
                    torch.save(state(), os.path.join(d, STATE_FILE))
                    tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(d))
            else:
                tune.report(metrics)

        resume = load_checkpoint_state() if i == 0 else None
        out = execute(exp, ctx, reporter=report, resume=resume, checkpoint_every=every)
        if out is None:  # NaN loss: recorded as failed; tell Tune the trial ended badly
            tune.report({"epoch": exp.optim.epochs, "trial_key": tid, "failed": 1, spec.search.metric: float("nan")})
            return
        vals.append(out.summary.get(spec.search.metric, float("nan")))
        if last_seed:
            final = {**out.epochs[-1].metrics(), **{k: v for k, v in out.summary.items() if k.startswith(("val_", "test_"))},
                     "trial_key": tid, "epoch": len(out.epochs)}
            final[spec.search.metric] = sum(vals) / len(vals)  # the mean over seeds for multi-seed trials
            tune.report({**final, "seeds": len(vals)})
