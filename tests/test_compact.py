"""``ltsearch compact``: both layouts read alike, compaction is atomic and idempotent, and a resumed
or rerun sweep after it never duplicates a row (``ltsearch.results.compact``, ``results.store``)."""

from __future__ import annotations

import json
import os
import shutil
import socket
import time

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from conftest import tiny_experiment
from ltsearch.cli import app
from ltsearch.results import ResultStore, load
from ltsearch.results.compact import compact
from ltsearch.results.schema import TRIAL_FIELDS
from ltsearch.results.store import COMPACTED, DATASETS
from ltsearch.spec import validate_spec_dict
from ltsearch.trial import TrialContext, execute
from ltsearch.tune.runner import run_configuration, stored_outcome
from ltsearch.tune.search import param_types_for, plan_sweep

runner = CliRunner()


def files(run_dir) -> dict[str, list[str]]:
    return {d: sorted(p.name for p in (run_dir / d).glob("*.parquet")) for d in DATASETS if (run_dir / d).is_dir()}


def snapshot(run_dir) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in run_dir.rglob("*.parquet")}


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    """A real grid sweep's files (2 learning rates × 2 seeds of the tiny experiment, trained by
    ``execute`` as a Tune worker does), kept as a template each test copies."""
    spec = validate_spec_dict({"name": "c", "experiment": tiny_experiment(), "resources": {"cpus_per_worker": 1},
                               "search": {"algorithm": "grid", "space": {"optim.lr": {"grid": [0.1, 0.05]}},
                                          "seeds": [0, 1]}})
    run_dir = tmp_path_factory.mktemp("template") / "c"
    plan = plan_sweep(spec, str(run_dir))
    assert len(plan.cells) == 4
    ctx = TrialContext("c", str(run_dir), param_types_for(spec))
    for trial in plan.trials:
        execute(trial, ctx)
    return spec, run_dir


@pytest.fixture
def run(swept, tmp_path):
    spec, template = swept
    shutil.copytree(template, tmp_path / "c")
    return spec, tmp_path / "c"


def test_load_before_equals_load_after_and_a_second_compaction_changes_nothing(run):
    spec, run_dir = run
    store = ResultStore(run_dir)
    before, status_before = load(run_dir), store.trial_status()
    rows_before = {tid: store.read_trial(tid) for tid in status_before}
    done = compact(run_dir)
    assert {c.dataset: (c.files, c.rows) for c in done} == {
        "trials": (4, 4), "epochs": (4, len(before[1])), "per_class": (4, len(before[2]))}
    assert files(run_dir) == {d: [COMPACTED] for d in DATASETS}
    after = load(run_dir)
    for b, a in zip(before, after):
        pd.testing.assert_frame_equal(b, a)
    assert store.trial_status() == status_before and all(store.has_trial(t) for t in status_before)
    assert not store.has_trial("0123456789ab")
    assert {tid: store.read_trial(tid) for tid in status_before} == rows_before
    tid = next(iter(status_before))
    own = before[1][before[1]["trial_id"] == tid]
    assert store.read_rows("epochs", tid).to_pandas().reset_index(drop=True).equals(own.reset_index(drop=True))
    snap = snapshot(run_dir)
    assert compact(run_dir) == [] and snapshot(run_dir) == snap  # idempotent
    r = runner.invoke(app, ["compact", str(run_dir)])
    assert r.exit_code == 0 and "already compacted" in r.output and snapshot(run_dir) == snap


def test_a_resumed_sweep_after_compaction_trains_nothing_and_a_rerun_adds_no_row(run):
    spec, run_dir = run
    store = ResultStore(run_dir)
    before = load(run_dir)
    compact(run_dir)
    plan = plan_sweep(spec, str(run_dir))  # what `ltsearch run --resume` plans
    assert plan.cells == [] and plan.skipped == 4
    trained, reported = [], []
    cell = {"optim.lr": 0.1, "seed": 0}
    run_configuration(spec, dict(cell), str(run_dir), train=lambda t, first: trained.append(t), report=reported.append)
    tid = next(t.trial_id for t in plan.trials if t.params.get("optim.lr") == 0.1 and t.exp.seed == 0)
    row = store.read_trial(tid)
    assert trained == [] and reported[0]["val_acc"] == row["val_acc"] and reported[0]["trial_key"] == tid
    status, metrics = stored_outcome(store, tid)
    last_loss = before[1][before[1]["trial_id"] == tid]["train_loss"].iloc[-1]
    assert status == "ok" and metrics["train_loss"] == last_loss
    # a trial trained again after compaction (a retried trial): its own file replaces its compacted rows
    trial = next(t for t in plan.trials if t.trial_id == tid)
    execute(trial, TrialContext("c", str(run_dir), param_types_for(spec)))
    trials, epochs, per_class = load(run_dir)
    assert sorted(trials["trial_id"]) == sorted(before[0]["trial_id"])
    assert len(epochs) == len(before[1]) and len(per_class) == len(before[2])
    newer = trials.set_index("trial_id").loc[tid, "finished_at"]
    assert newer > before[0].set_index("trial_id").loc[tid, "finished_at"]
    compact(run_dir)
    assert files(run_dir) == {d: [COMPACTED] for d in DATASETS}
    again = load(run_dir)[0]
    assert len(again) == 4 and again.set_index("trial_id").loc[tid, "finished_at"] == newer


def test_killed_between_the_write_and_the_deletes_loses_and_doubles_nothing(run, tmp_path):
    """Compaction renames the merged file into place, then deletes the per-trial files: a reader at
    any point between (here: the state a kill there leaves) sees each trial once."""
    _, run_dir = run
    before = load(run_dir)
    saved = tmp_path / "saved"
    shutil.copytree(run_dir, saved)
    compact(run_dir)
    for d in DATASETS:  # half the per-trial files not deleted yet
        for p in sorted((saved / d).glob("*.parquet"))[:2]:
            shutil.copy2(p, run_dir / d / p.name)
    assert all(len(v) == 3 for v in files(run_dir).values())
    for b, a in zip(before, load(run_dir)):
        pd.testing.assert_frame_equal(b, a)
    assert len(ResultStore(run_dir).trial_status()) == 4
    compact(run_dir)  # finishes the job
    assert files(run_dir) == {d: [COMPACTED] for d in DATASETS}
    for b, a in zip(before, load(run_dir)):
        pd.testing.assert_frame_equal(b, a)


def test_old_schema_and_differing_columns_read_alike_in_both_layouts(tmp_path):
    """One run mixing a schema-3 file (text finished_at, no split columns), trials with different
    searched parameters and epochs with different schedule columns."""
    store = ResultStore(tmp_path)
    store.write_trial("a", {"status": "ok", "method": "single", "val_acc": 60.0, "method.gamma": 1.0},
                      {"method.gamma": pa.float64()}, epochs=[{"epoch": 0, "train_loss": 1.0, "schedules": {"alpha": 0.5}}])
    store.write_trial("b", {"status": "ok", "method": "bbn", "val_acc": 61.0, "optim.lr": 0.1},
                      {"optim.lr": pa.float64()}, epochs=[{"epoch": 0, "train_loss": 2.0}, {"epoch": 1, "train_loss": 1.5}])
    old_fields = [(n, pa.string() if n == "finished_at" else t) for n, t in TRIAL_FIELDS if n not in ("split_many", "split_few")]
    old = pa.Table.from_pylist([{"trial_id": "c", "status": "ok", "method": "single", "val_acc": 59.0,
                                 "finished_at": "2026-06-01T13:30:05+0100", "schema_version": 3}],
                               schema=pa.schema(old_fields))
    pq.write_table(old, tmp_path / "trials" / "c.parquet")
    before = load(tmp_path)
    t = before[0].set_index("trial_id")
    assert list(t.index) == ["a", "b", "c"] and t.loc["c", "finished_at"] == pd.Timestamp("2026-06-01T12:30:05Z")
    assert pd.isna(t.loc["b", "method.gamma"]) and t.loc["b", "optim.lr"] == 0.1 and pd.isna(t.loc["c", "split_many"])
    e = before[1]
    assert list(e["trial_id"]) == ["a", "b", "b"] and e["alpha"].iloc[0] == 0.5 and e["alpha"].iloc[1:].isna().all()
    compact(tmp_path)
    assert pq.read_schema(tmp_path / "trials" / COMPACTED).field("finished_at").type == pa.timestamp("us", tz="UTC")
    for b, a in zip(before, load(tmp_path)):
        pd.testing.assert_frame_equal(b, a)
    assert ResultStore(tmp_path).read("trials", columns=["trial_id", "optim.lr", "nope"]).columns.tolist() == [
        "trial_id", "optim.lr"]


def test_a_run_with_a_live_driver_is_refused_in_one_line(run):
    _, run_dir = run
    (run_dir / "run.json").write_text(json.dumps({
        "identity": 2, "state": "running", "host": socket.gethostname(), "pid": os.getpid(),
        "heartbeat_at": time.time(), "started_at": time.time()}))
    snap = snapshot(run_dir)
    r = runner.invoke(app, ["compact", str(run_dir)])
    assert r.exit_code == 2 and "still running" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and snapshot(run_dir) == snap
    r = runner.invoke(app, ["compact", str(run_dir.parent / "nothing")])
    assert r.exit_code == 2 and "no results to compact" in r.output


def test_status_reads_a_compacted_run(run):
    from ltsearch.report.status import sweep_status

    _, run_dir = run
    before = sweep_status(str(run_dir))
    compact(run_dir)
    after = sweep_status(str(run_dir))
    assert after.counts == before.counts == {"ok": 4, "failed": 0, "stopped": 0}
    assert after.best == before.best and after.epoch_seconds == before.epoch_seconds and after.running == 0
    pd.testing.assert_frame_equal(before.trials, after.trials)
