"""Pick a finished trial's saved model: ``ltsearch run --from RUN_DIR [--trial ID]`` chains a
stage-2 search onto a stage-1 run. Selection is by validation accuracy, never test."""

from __future__ import annotations

import json

from ltsearch.defaults import resolve_defaults
from ltsearch.errors import UserError
from ltsearch.results.store import ResultStore
from ltsearch.spec import ExperimentSpec


def saved_model(run_dir: str, trial_id: str | None = None) -> tuple[str, str]:
    """``(trial_id, path of models/<trial_id>.pt)`` of ``trial_id``, or of the ok trial with the best val_acc."""
    store = ResultStore(run_dir)
    trials = store.read("trials")
    ok = trials[trials["status"] == "ok"] if len(trials) else trials
    if ok.empty:
        raise UserError(f"--from {run_dir}: no finished (ok) trials there")
    if trial_id is not None:
        row = ok[ok["trial_id"] == trial_id]
        if row.empty:
            raise UserError(f"--trial {trial_id}: not an ok trial of {run_dir}; ok trials: {', '.join(ok['trial_id'][:8])}")
    else:
        row = ok.sort_values("val_acc", ascending=False).head(1)
    tid = str(row.iloc[0]["trial_id"])
    path = f"{store.path('models')}/{tid}.pt"
    if store.fs.get_file_info(path).type.name != "File":
        raise UserError(f"--from {run_dir}: trial {tid} saved no model (it ran with experiment.eval.save_model: false)")
    return tid, path


def check_compatible(run_dir: str, trial_id: str, exp: ExperimentSpec) -> None:
    """The stage-1 trial must have used the same data and model as the stage-2 spec."""
    trials = ResultStore(run_dir).read("trials")
    cfg = json.loads(trials[trials["trial_id"] == trial_id].iloc[0]["config_json"])
    exp = resolve_defaults(exp)  # config_json names the resolved model (model.arch: auto)
    ignored = {"root", "splits"}  # where the files are, and how results are grouped: not the training
    for section in ("data", "model"):
        theirs = {k: v for k, v in cfg[section].items() if k not in ignored}
        mine = {k: v for k, v in exp.model_dump(by_alias=True)[section].items() if k not in ignored}
        if theirs != mine:
            diff = sorted(k for k in set(theirs) | set(mine) if theirs.get(k) != mine.get(k))
            raise UserError(f"--from: trial {trial_id} used a different experiment.{section} "
                            f"({', '.join(diff)} differ); a stage-2 search must keep stage 1's {section}")
