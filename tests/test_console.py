"""Console output in a terminal and in a log, and ``ltsearch status`` on a sweep in progress."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
import yaml
from rich.console import Console
from typer.testing import CliRunner

from ltsearch.cli import app, print_best, searched_overrides
from ltsearch.results import ResultStore
from ltsearch.report.status import sweep_status
from ltsearch.show import epoch_progress, status_lines
from ltsearch.spec import validate_spec_dict
from ltsearch.train.loop import EpochRecord

LONG = {"method.loss": "balanced_softmax", "optim.lr": 0.0123456, "method.a_rather_long_parameter_name": 1.5}


def trials_frame():
    rows = []
    for i, loss in enumerate(("balanced_softmax", "ce", "focal")):
        for seed in (0, 1):
            rows.append({"trial_id": f"{loss}{seed}", "status": "ok", "method": "single", "loss": loss, "seed": seed,
                         "val_acc": 80.0 - 5 * i + seed, "test_acc": 79.0 - 5 * i, "test_many": 90.0, "test_medium": 70.0,
                         "test_few": 50.0, **{**LONG, "method.loss": loss}})
    return pd.DataFrame(rows)


def test_best_table_in_a_log_prints_whole_configurations():
    buf = io.StringIO()
    print_best("unused", out=Console(file=buf), trials=trials_frame())  # not a terminal: 80 columns by default
    text = buf.getvalue()
    assert "…" not in text and "configuration" in text
    line = next(ln for ln in text.splitlines() if "loss=balanced_softmax" in ln)
    assert "a_rather_long_parameter_name=1.5, loss=balanced_softmax, lr=0.01235" in line  # on one line, whole
    assert "80.50 ± 0.71" in line  # hand: mean of 80, 81; std sqrt(0.5)


@pytest.mark.parametrize("width", [100, 120, 160])
def test_best_table_in_a_terminal_fits_and_folds_without_cutting(width):
    buf = io.StringIO()
    print_best("unused", out=Console(file=buf, force_terminal=True, width=width, color_system=None), trials=trials_frame())
    lines = buf.getvalue().splitlines()
    assert max(len(ln) for ln in lines) <= width and "…" not in buf.getvalue()
    table = [ln for ln in lines if ln.startswith("│")]
    assert lines[-2].startswith("└") and lines[-2].endswith("┘")  # the whole table, no column cropped
    cells = "".join(ln.split("│")[2].strip() for ln in table).replace(" ", "")
    assert "a_rather_long_parameter_name=1.5,loss=balanced_softmax,lr=0.01235" in cells  # folded, never cut
    if width >= 120:
        assert any("a_rather_long_parameter_name=1.5," in ln for ln in table)  # room for whole words


def test_train_progress_bar_in_a_terminal_and_lines_in_a_log():
    recs = [EpochRecord(stage="main", epoch=e, train_loss=1.0 / (e + 1), lr=0.1, seconds=0.1, val={"val_acc": 50.0 + e})
            for e in range(4)]
    term = io.StringIO()
    with epoch_progress(Console(file=term, force_terminal=True, width=120, color_system=None), 4) as show:
        for r in recs:
            show(r, None)
    text = term.getvalue()
    assert "4/4" in text and "━" in text and "val_acc 53.00" in text and "epoch   1" not in text
    log = io.StringIO()
    with epoch_progress(Console(file=log, width=80), 4) as show:
        for r in recs:
            show(r, None)
    assert log.getvalue().splitlines() == [f"epoch {e + 1:>3}  loss {1 / (e + 1):.4f}  val_acc {50 + e:.2f}  lr 0.1"
                                           for e in range(4)]


def test_set_on_a_searched_key_says_the_search_overrides_it(tmp_path, monkeypatch):
    spec = validate_spec_dict({"name": "s", "search": {"space": {"optim.lr": {"grid": [0.1, 0.05]},
                                                                 "method": {"grid": [{"name": "single"}]}}}})
    notes = searched_overrides(spec, ["experiment.optim.lr=0.3", "experiment.method.loss=ce", "experiment.seed=1",
                                      "search.seeds=[1]"])
    assert notes == ["note: --set experiment.optim.lr is overridden by the search: search.space.optim.lr sets it in every trial",
                     "note: --set experiment.method.loss is overridden by the search: search.space.method sets it in every trial"]
    monkeypatch.setenv("LTSEARCH_DATA", str(tmp_path / "data"))
    r = CliRunner().invoke(app, ["run", "search_spaces/quickstart.yaml", "--storage", str(tmp_path / "runs"),
                                 "--set", "experiment.optim.lr=0.3", "--set", "experiment.data.dataset=cifar10",
                                 "--set", "experiment.model.arch=resnet8"])
    assert r.exit_code == 2  # no CIFAR here: the run stops before anything is written, after the note
    assert "note: --set experiment.optim.lr is overridden by the search: search.space.optim.lr" in r.output
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------ ltsearch status


def make_sweep_in_progress(run: Path) -> None:
    """A grid of 3 learning rates × 2 seeds (6 planned, 4 epochs each): 2 ok (epochs of 1.0 s), 1
    failed, 1 running (2 of 4 epochs, 2.0 s each), 2 not started; Tune's newest state half-written."""
    spec = {"name": "prog", "experiment": {"optim": {"epochs": 4}},
            "search": {"algorithm": "grid", "space": {"optim.lr": {"grid": [0.1, 0.05, 0.01]}}, "seeds": [0, 1]}}
    store = ResultStore(run)
    store.write_text("spec.yaml", yaml.safe_dump(spec))
    types = {"optim.lr": pa.float64()}
    epochs = [{"epoch": e + 1, "train_loss": 1.0, "lr": 0.1, "seconds": 1.0, "val_acc": 50.0} for e in range(4)]
    for tid, lr, seed, val in (("a", 0.1, 0, 70.0), ("b", 0.1, 1, 72.0)):
        store.write_trial(tid, {"status": "ok", "method": "single", "loss": "ce", "seed": seed, "val_acc": val,
                                "epochs_done": 4, "optim.lr": lr}, types, epochs=epochs)
    store.write_trial("c", {"status": "failed", "method": "single", "loss": "ce", "seed": 0, "error": "NaN",
                            "epochs_done": 1, "optim.lr": 0.05}, types, epochs=epochs[:1])
    store.write_epochs("d", [{**e, "seconds": 2.0} for e in epochs[:2]])  # running: no trials row yet
    (run / "trials" / "zz-torn.parquet").write_bytes(b"PAR1 not parquet")  # unreadable: skipped
    tune = run / "_tune"
    tune.mkdir()
    trial = lambda s: [json.dumps({"status": s, "trial_id": s}), json.dumps({})]  # noqa: E731
    (tune / "experiment_state-2026-01-01_00-00-00.json").write_text(
        json.dumps({"trial_data": [trial("RUNNING"), trial("TERMINATED"), trial("TERMINATED"), trial("PENDING")]}))
    (tune / "experiment_state-2026-01-01_00-00-09.json").write_text('{"trial_data": [["{\\"sta')  # being written


def snapshot(root: Path) -> dict[str, tuple[int, float]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime) for p in root.rglob("*")}


@pytest.mark.parametrize("uri", [False, True])
def test_status_of_a_sweep_in_progress_reads_only(tmp_path, uri):
    run = tmp_path / "prog"
    make_sweep_in_progress(run)
    before = snapshot(run)
    st = sweep_status(f"file://{run}" if uri else str(run))
    assert snapshot(run) == before  # nothing written, nothing touched
    assert (st.planned, st.counts, st.running, st.not_started) == (6, {"ok": 2, "failed": 1, "stopped": 0}, 1, 2)
    assert st.tune == {"RUNNING": 1, "TERMINATED": 2, "PENDING": 1}  # from the last complete state file
    assert st.best["val_acc_mean"] == 71.0 and st.best["n_ok"] == 2 and st.best["config"] == "lr=0.1"
    # epochs: 8 + 1 of 1.0 s, 2 of 2.0 s -> median 1.0 s; left: 2 trials × 4 epochs + 2 epochs of the running one
    assert st.epoch_seconds == 1.0 and st.eta_seconds == pytest.approx((2 * 4 + 2) * 1.0 / 1)
    lines = status_lines(st)
    assert lines[1] == "trials: 2 ok, 1 failed, 0 stopped, 1 running, 2 not started"
    assert "best val so far: 71.00 ± 1.41 (2 seeds): lr=0.1" in lines and "ETA: about 10 s" in lines[-2]


def test_status_cli_without_a_terminal_and_on_a_non_run(tmp_path):
    run = tmp_path / "prog"
    make_sweep_in_progress(run)
    store = ResultStore(run)
    store.write_trial("e", {"status": "ok", "method": "single", "loss": "balanced_softmax", "seed": 0, "val_acc": 90.0,
                            "epochs_done": 4, "optim.lr": 0.0123456, "method.a_rather_long_parameter_name": 1.5},
                      {"optim.lr": pa.float64(), "method.a_rather_long_parameter_name": pa.float64()})
    r = CliRunner().invoke(app, ["status", str(run)])
    assert r.exit_code == 0, r.output
    assert "trials: 3 ok, 1 failed, 0 stopped, 1 running, 1 not started" in r.output
    assert "a_rather_long_parameter_name=1.5, lr=0.01235" in r.output and "…" not in r.output
    r = CliRunner().invoke(app, ["status", str(tmp_path / "nothing")])
    assert r.exit_code == 2 and "not a run directory" in r.output and not (tmp_path / "nothing").exists()


def test_live_table_in_a_log_prints_whole_parameters():
    from types import SimpleNamespace

    from ltsearch.tune.live import LiveTable

    params = {"method.a_rather_long_parameter_name": 1.5, "method.loss": "balanced_softmax",
              "optim.lr": 0.0123456, "optim.weight_decay": 0.0005, "method.another_long_name": "label_aware_smooth"}
    buf = io.StringIO()
    live = LiveTable(Console(file=buf))  # not a terminal: one line per finished trial
    trial = SimpleNamespace(trial_id="t1", config={"params": params})
    live.on_trial_start(0, [], trial)
    live.on_trial_result(0, [], trial, {"epoch": 2, "val_acc": 61.25, "trial_key": "1fecf9323624"})
    live.on_trial_complete(0, [], trial)
    assert buf.getvalue() == ("trial 1fecf9323624 (tune t1) done: a_rather_long_parameter_name=1.5, loss=balanced_softmax, "
                              "lr=0.01235, weight_decay=0.0005, another_long_name=label_aware_smooth val_acc=61.25\n")


def test_live_table_names_ltsearch_trial_ids_and_multi_seed_trials():
    """ltsearch's id (the Parquet file's name) first, Tune's beside it; a multi-seed Optuna trial:
    its first reported id and the number of seeds; before any result only Tune's id is known."""
    from types import SimpleNamespace

    from ltsearch.tune.live import LiveTable

    buf = io.StringIO()
    live = LiveTable(Console(file=buf))
    multi = SimpleNamespace(trial_id="365ebf1c", config={"params": {"optim.lr": 0.1}})
    live.on_trial_start(0, [], multi)
    assert live.name("365ebf1c") == "(tune 365ebf1c)"
    live.on_trial_result(0, [], multi, {"epoch": 1, "val_acc": 50.0, "trial_key": "aaaaaaaaaaaa"})  # seed 0's epochs
    live.on_trial_result(0, [], multi, {"epoch": 2, "val_acc": 55.0, "trial_key": "cccccccccccc", "seeds": 3})
    live.on_trial_complete(0, [], multi)
    failed = SimpleNamespace(trial_id="b2", config={"params": {"optim.lr": 0.2}})
    live.on_trial_start(0, [], failed)
    live.on_trial_result(0, [], failed, {"epoch": 1, "val_acc": 10.0, "trial_key": "dddddddddddd"})
    live.on_trial_error(0, [], failed)
    assert buf.getvalue().splitlines() == ["trial aaaaaaaaaaaa +2 seeds (tune 365ebf1c) done: lr=0.1 val_acc=55.00",
                                           "trial dddddddddddd (tune b2) failed: lr=0.2 val_acc=10.00"]


def test_eta_before_any_trial_counts_every_stage():
    """Before a trial has finished, a trial's length is its method's plan: cRT's 4 + 3 epochs, not optim's 4."""
    from ltsearch.report.status import _planned_epochs

    spec = {"name": "two", "experiment": {"method": {"name": "crt", "stage2_epochs": 3}, "optim": {"epochs": 4}}}
    assert _planned_epochs(spec) == 7.0
    assert _planned_epochs({"name": "p", "plugins": ["not_installed_mod"], "experiment": {"optim": {"epochs": 4}}}) == 4.0
