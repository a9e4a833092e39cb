"""The Tune function trainable: config → resolved experiment → the one loop → Parquet.

Thin on purpose: per epoch it reports metrics to Tune (``epoch`` is ASHA's time attribute).
Checkpoints are the trial's own (``RUN_DIR/checkpoints/<trial_id>.pt``, see ``ltsearch.trial``),
not Tune's: after ``kill -9`` of the driver, Tune's last saved experiment state can point at a
trial checkpoint that ``num_to_keep`` has already deleted, and the restored trial then fails
("Could not recover from checkpoint"); a file keyed by trial id has no such window.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from ray import tune

from ltsearch.spec import resolve_experiment, spec_from_json
from ltsearch.results.store import ResultStore
from ltsearch.trial import TrialContext, execute, final_metrics, planned_epochs, split_config, trial_id_for
from ltsearch.train.loop import EpochRecord, threads_for

__all__ = ["finished_metrics", "tune_trial"]


def tune_trial(config: dict[str, Any], *, spec_json: str, run_dir: str, param_types: dict, cpus: float) -> None:
    spec = spec_from_json(spec_json)
    params = split_config(config)
    torch.set_num_threads(threads_for(cpus))
    if torch.get_num_interop_threads() > threads_for(cpus):
        try:  # settable once per process, before any inter-op work (a reused actor keeps its value)
            torch.set_num_interop_threads(threads_for(cpus))
        except RuntimeError:
            pass
    seeds = [params.pop("seed")] if "seed" in params else list(spec.search.seeds)
    store = ResultStore(run_dir)
    vals: list[float] = []
    for i, seed in enumerate(seeds):
        exp = resolve_experiment(spec.experiment, {**params, "seed": seed}, source="search.space")
        ctx = TrialContext(spec.name, run_dir, param_types, params, spec.resources.workers)
        tid = trial_id_for(exp)
        planned = planned_epochs(exp)
        final = finished_metrics(store, tid)  # a restored trial whose row was written before the kill
        if final is None:

            def report(rec: EpochRecord, state: Callable[[], dict[str, Any]], _tid: str = tid) -> None:
                # later seeds of a multi-seed Optuna trial report only at the end; the last epoch is
                # reported after the trial's rows are written (a scheduler STOP then loses nothing)
                if i == 0 and rec.epoch + 1 < planned:
                    tune.report({**rec.metrics(), "trial_key": _tid})

            out = execute(exp, ctx, reporter=report, checkpoint_every=spec.search.checkpoint_every)
            if out is None:  # NaN loss: recorded as failed; tell Tune the trial ended badly
                tune.report({"epoch": planned, "trial_key": tid, "failed": 1, spec.search.metric: float("nan")})
                return
            final = final_metrics(out)
        vals.append(final.get(spec.search.metric, float("nan")))
        if i == len(seeds) - 1:
            final[spec.search.metric] = sum(vals) / len(vals)  # the mean over seeds for multi-seed trials
            tune.report({**final, "trial_key": tid, "seeds": len(vals)})


def finished_metrics(store: ResultStore, tid: str) -> dict[str, Any] | None:
    """The metrics of a trial that already has an ``ok`` row, or None."""
    if not store.has_trial(tid):
        return None
    row = store.read_trial(tid)
    if row.get("status") != "ok":
        return None
    return {k: v for k, v in row.items() if k.startswith(("val_", "test_")) or k == "train_loss"} | {
        "epoch": int(row.get("epochs_done") or row.get("epochs") or 0)}
