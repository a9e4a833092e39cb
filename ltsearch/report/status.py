"""``ltsearch status RUN_DIR``: what a running or finished sweep has done, read-only.

Reads ``RUN_DIR/spec.yaml`` (what was planned), the Parquet files (finished rows, epoch times and
trials in progress) and Ray Tune's newest experiment state (``RUN_DIR/_tune/experiment_state-*.json``),
through pyarrow's filesystems, so a local path and a storage URI (``s3://``, ``gs://``) work alike.
It writes nothing and tolerates a sweep writing at the same time (Parquet files are replaced
atomically, one that is not Parquet is skipped, and one that vanishes between listing and reading makes the store list again; Tune's
JSON is not atomic, and a half-written one is skipped), and a missing piece (no spec, no Tune state
yet) leaves its numbers out. It reads only the columns it shows (``TRIAL_COLUMNS`` and the searched
parameters; an epoch's trial, number and seconds), from either layout of the run (per-trial files
or ``ltsearch compact``'s).

The driver's record (``RUN_DIR/run.json``, ``ltsearch.results.run_dir``) says whether a driver is on
the run: ``running`` (its heartbeat is fresh), ``interrupted`` (stopped by a signal, killed, or its
heartbeat stale) or ``finished``. Without a live driver nothing runs: trials with epochs but no row
are counted as interrupted (they continue from their checkpoints on ``--resume``) and there is no
ETA.

Units are trials = one configuration × one seed (one Parquet row). Planned: the grid/random cells
(``search.space``), or ``num_samples`` × seeds for Optuna. Running: trials with epoch records but no
row yet. The plan (trials and one trial's epochs) comes from ``run.json``, where the driver records it, so
status never validates the spec (which would import every method, model and torch); a run from
before that record is planned from ``spec.yaml``. ETA: the epochs still to train (at the median epoch time so far) divided by the trials
running in parallel; ASHA stopping trials early makes it an upper bound.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.fs as pafs
import yaml

from ltsearch.errors import UserError
from ltsearch.results.run_dir import driver_state, read_state
from ltsearch.results.store import ResultStore

TUNE_DIR = "_tune"
# what the counts, the best configurations (``summary.config_summary``) and the ETA read
TRIAL_COLUMNS = ("trial_id", "sweep", "status", "method", "loss", "seed", "subset_seed", "epochs_done", "config_key",
                 "split_many", "split_few", "val_acc", "test_acc", "test_many", "test_medium", "test_few")
EPOCH_COLUMNS = ["trial_id", "epoch", "seconds"]


def _shown(column: str) -> bool:
    return column in TRIAL_COLUMNS or "." in column  # a searched parameter (``summary.searched_params``)


@dataclass
class SweepStatus:
    run_dir: str
    name: str = ""
    algorithm: str = ""
    planned: int | None = None
    counts: dict[str, int] = field(default_factory=dict)  # ok / failed / stopped
    running: int = 0  # trials with epochs written but no row, while a driver runs
    interrupted: int = 0  # the same without a live driver
    driver: str | None = None  # running / interrupted / finished / failed (run.json); None: no record
    tune: dict[str, int] = field(default_factory=dict)  # Tune's trial statuses (RUNNING, PENDING, ...)
    best: dict[str, Any] | None = None  # config, val_acc_mean, val_acc_std, n_ok
    epoch_seconds: float | None = None  # median over all recorded epochs
    eta_seconds: float | None = None
    last_update: float | None = None  # seconds since the newest file was written
    trials: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def finished(self) -> int:
        return sum(self.counts.values())

    @property
    def not_started(self) -> int | None:
        return None if self.planned is None else max(0, self.planned - self.finished - self.running - self.interrupted)


def _files(store: ResultStore, dataset: str) -> list[pafs.FileInfo]:
    """The dataset's Parquet files, both layouts (their modification times tell the last update)."""
    own, compacted = store.files(dataset)
    return list(own.values()) + ([compacted] if compacted else [])


def _read_text(store: ResultStore, path: str) -> str | None:
    try:
        with store.fs.open_input_stream(path) as f:
            return f.read().decode()
    except (OSError, UnicodeDecodeError):
        return None


def tune_state(store: ResultStore) -> tuple[dict[str, int], float | None]:
    """Trial statuses from Tune's newest readable experiment state, and its modification time."""
    try:
        infos = store.fs.get_file_info(pafs.FileSelector(f"{store.root}/{TUNE_DIR}", allow_not_found=True))
    except OSError:
        return {}, None
    states = sorted((f for f in infos if Path(f.path).name.startswith("experiment_state-") and f.path.endswith(".json")),
                    key=lambda f: f.path, reverse=True)
    for f in states:  # the newest may be half-written: fall back to the one before
        text = _read_text(store, f.path)
        try:
            data = json.loads(text or "")
            statuses = [json.loads(t[0])["status"] for t in data["trial_data"]]
        except (ValueError, KeyError, TypeError, IndexError):
            continue
        counts: dict[str, int] = {}
        for s in statuses:
            counts[s] = counts.get(s, 0) + 1
        return counts, f.mtime.timestamp() if f.mtime else None
    return {}, None


def _planned(spec: dict[str, Any]) -> int | None:
    from ltsearch.spec import Spec
    from ltsearch.space import plan_cells, plan_configurations, race_units, seed_units

    try:
        s = Spec.model_validate(spec)
    except Exception:  # noqa: BLE001 - a spec this version cannot read: no plan shown
        return None
    if s.search.algorithm == "optuna":
        return s.search.num_samples * len(seed_units(s.search))  # every seed on every subset, DDP trials too
    if s.search.race is not None:  # at most: a race stops most configurations early (RUN_DIR/race.json)
        return len(plan_configurations(s.search, s.experiment)) * len(race_units(s.search))
    return len(plan_cells(s.search, s.experiment))


def sweep_status(run_dir: str, now: float | None = None) -> SweepStatus:
    store = ResultStore(run_dir)
    spec_text = _read_text(store, f"{store.root}/spec.yaml")
    tfiles, efiles = _files(store, "trials"), _files(store, "epochs")
    tune, tune_mtime = tune_state(store)
    if spec_text is None and not tfiles and not tune:
        raise UserError(f"{run_dir}: not a run directory (no spec.yaml, trials/ or _tune/ inside)")
    spec = yaml.safe_load(spec_text) if spec_text else {}
    st = SweepStatus(run_dir, name=str((spec or {}).get("name", Path(run_dir.rstrip("/")).name)),
                     algorithm=str(((spec or {}).get("search") or {}).get("algorithm", "")), tune=tune)
    state = read_state(store)
    recorded = (state or {}).get("planned")  # the driver's own plan (run.json); older runs: from the spec
    st.planned = int(recorded) if recorded is not None else (_planned(spec) if spec else None)
    trials = store.read("trials", columns=_shown, skip_unreadable=True) if tfiles else pd.DataFrame()
    st.trials = trials
    st.counts = {s: int((trials["status"] == s).sum()) if len(trials) else 0 for s in ("ok", "failed", "stopped")}
    epochs = store.read("epochs", columns=EPOCH_COLUMNS, skip_unreadable=True) if efiles else pd.DataFrame()
    done_ids = set(trials["trial_id"]) if len(trials) else set()
    in_progress = epochs[~epochs["trial_id"].isin(done_ids)] if len(epochs) else epochs
    st.driver = driver_state(state, now)
    started = int(in_progress["trial_id"].nunique()) if len(in_progress) else 0
    if st.driver in (None, "running"):  # None: a run from before run.json, judged by its files alone
        st.running = started
    else:
        st.interrupted = started
    secs = pd.to_numeric(epochs["seconds"], errors="coerce").dropna() if len(epochs) and "seconds" in epochs else pd.Series()
    st.epoch_seconds = float(secs.median()) if len(secs) else None
    ok = trials[trials["status"] == "ok"] if len(trials) else trials
    if len(ok) and ok["val_acc"].notna().any():
        from ltsearch.report.summary import config_summary

        top = config_summary(ok).iloc[0]
        st.best = {"config": top["config"], "val_acc_mean": float(top["val_acc_mean"]),
                   "val_acc_std": float(top["val_acc_std"]), "n_ok": int(top["n_ok"])}
    st.eta_seconds = _eta(st, trials, in_progress, spec, (state or {}).get("trial_epochs")) if st.driver in (None, "running") else None
    mtimes = [f.mtime.timestamp() for f in tfiles + efiles if f.mtime] + ([tune_mtime] if tune_mtime else [])
    st.last_update = (now or time.time()) - max(mtimes) if mtimes else None
    return st


def _eta(st: SweepStatus, trials: pd.DataFrame, in_progress: pd.DataFrame, spec: dict[str, Any],
         trial_epochs: int | None = None) -> float | None:
    if st.planned is None or st.epoch_seconds is None:
        return None
    if st.finished >= st.planned:
        return 0.0
    done = pd.to_numeric(trials.get("epochs_done"), errors="coerce").dropna() if len(trials) else pd.Series()
    per_trial = float(done[trials["status"] == "ok"].median()) if len(done) and (trials["status"] == "ok").any() \
        else (float(trial_epochs) if trial_epochs else _planned_epochs(spec))
    if not per_trial or math.isnan(per_trial):
        return None
    running_left = sum(max(0.0, per_trial - len(g)) for _, g in in_progress.groupby("trial_id")) if len(in_progress) else 0.0
    left = (st.not_started or 0) * per_trial + running_left
    return left * st.epoch_seconds / max(1, st.running)


def _planned_epochs(spec: dict[str, Any]) -> float:
    """Epochs of one trial over all its stages (the method's plan), before any trial has finished;
    the spec's ``optim.epochs`` if the spec cannot be read here (e.g. a plugin that is not installed)."""
    try:
        from ltsearch.spec import validate_spec_dict
        from ltsearch.trial import planned_epochs

        return float(planned_epochs(validate_spec_dict(spec, source="spec.yaml").experiment))
    except Exception:  # noqa: BLE001 - an estimate for the ETA only
        return float(((spec.get("experiment") or {}).get("optim") or {}).get("epochs", 0) or 0)
