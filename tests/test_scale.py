"""Scale: the synthetic runs of ``ltsearch bench --scale`` are what a sweep writes, the benchmark's
output has its shape (tiny N, no time asserted), and a large sweep's report stays bounded."""

from __future__ import annotations

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltsearch.bench.scale import COMMANDS, LAYOUTS, measure_scale, synthesise
from ltsearch.cli import app
from ltsearch.results import ResultStore, load
from ltsearch.results.compact import compact

EPOCHS = 3


def template(epochs: int = EPOCHS) -> dict:
    """A trial's rows as ``template_trial`` returns them, without training one."""
    row = {"sweep": "quickstart", "status": "ok", "method": "single", "loss": "ce", "dataset": "digits",
           "arch": "small_cnn", "imbalance": 20.0, "epochs": epochs, "epochs_done": epochs, "split_many": 50,
           "split_few": 15, "num_classes": 10, "config_json": '{"optim": {"lr": 0.05}, "method": {"loss": "ce"}}'}
    eps = [{"stage": "main", "epoch": e, "train_loss": 1.0 / (e + 1), "lr": 0.05, "seconds": 0.1, "val_acc": 50.0 + e}
           for e in range(epochs)]
    per_class = [{"class_index": c, "train_count": 100 - 10 * c, "split": "many" if c < 4 else "few", "test_acc": 60.0}
                 for c in range(10)]
    return {"row": row, "epochs": eps, "schedules": [], "per_class": per_class}


def test_a_synthetic_run_is_n_trials_of_n_over_3_configurations_seeds_0_to_2(tmp_path):
    synthesise(tmp_path / "r", 300, template())
    trials, epochs, per_class = load(tmp_path / "r")
    assert len(trials) == 300 and trials["trial_id"].is_unique
    assert trials["config_key"].nunique() == 100 and set(trials["seed"]) == {0, 1, 2}
    assert (trials.groupby("config_key")["seed"].nunique() == 3).all()  # each configuration: every seed once
    assert (trials.groupby("config_key")[["optim.lr", "method.loss"]].nunique() == 1).all().all()
    ok = trials[trials["status"] == "ok"]
    assert 0.9 < len(ok) / 300 < 1 and set(trials["status"]) <= {"ok", "failed", "stopped"}
    assert len(per_class) == 10 * len(ok)
    full = trials[trials["status"] != "stopped"]["trial_id"]
    counts = epochs.groupby("trial_id").size()
    assert (counts.reindex(ok["trial_id"]) == EPOCHS).all() and counts.reindex(full).fillna(0).isin([0, EPOCHS]).all()
    assert len(list((tmp_path / "r" / "trials").glob("*.parquet"))) == 300  # one file per trial, as a sweep writes


def test_the_scale_benchmark_reports_every_command_in_both_layouts(tmp_path):
    r = measure_scale((3, 6), template_epochs=1, work=tmp_path)
    assert r["sizes"] == [3, 6] and r["template_epochs"] == 1 and r["startup_s"] > 0
    for n in ("3", "6"):
        entry = r["runs"][n]
        for layout in LAYOUTS:
            assert all(entry[layout][f"{c}_s"] > 0 for c in COMMANDS)
            assert entry[layout]["html_mb"] > 0
        assert entry["compacted"]["files"] == 3 and entry["per-trial"]["files"] > 3
    assert set(r["growth"]) == set(LAYOUTS) and all(set(g) == set(COMMANDS) for g in r["growth"].values())


def test_bench_scale_refuses_bad_sizes_in_one_line():
    r = CliRunner().invoke(app, ["bench", "--scale", "--scale-trials", "10,x"])
    assert r.exit_code == 2 and "--scale-trials" in r.output and "Traceback" not in r.output


def _trials(n: int) -> pd.DataFrame:
    return pd.DataFrame({
        "trial_id": [f"t{i:05d}" for i in range(n)], "status": ["failed" if i % 10 == 0 else "ok" for i in range(n)],
        "method": "single", "loss": "ce", "seed": [i % 3 for i in range(n)], "optim.lr": [1e-3 * (1 + i // 3) for i in range(n)],
        "method.loss": ["ce", "ldam"] * (n // 2), "val_acc": [50 + (i % 97) / 10 for i in range(n)],
        "error": ["RuntimeError: boom " * 20 if i % 10 == 0 else None for i in range(n)], "epochs_done": 3})


def test_large_tables_and_figures_are_bounded_with_a_note():
    from ltsearch.report import figures as F, html as H

    trials = _trials(10_000)
    failed = H.failed_html(trials)
    assert failed.count("<tr>") == H.FAILED_ROWS and "the first 100 of 1000 failed and stopped trials" in failed
    fig = F.parcoords(trials)
    assert len(fig.data[0].line.color) == F.PARCOORDS_TRIALS and "best 1000 of 9000 ok trials" in fig.layout.title.text
    assert min(fig.data[0].line.color) >= sorted(trials[trials["status"] == "ok"]["val_acc"])[-F.PARCOORDS_TRIALS]
    sample, note = H.importance_sample(trials)
    assert len(sample) == H.IMPORTANCE_TRIALS and note == "computed on 200 of the 9000 ok trials, drawn at random"
    small = _trials(30)
    same, none = H.importance_sample(small)
    assert same is small and none == ""


@pytest.mark.slow
def test_the_report_of_10000_trials_stays_under_10_mb(tmp_path):
    run = tmp_path / "big"
    synthesise(run, 10_000, template(15))
    compact(run)
    from ltsearch.report.html import write_report

    out = write_report(run, tmp_path / "report.html")
    assert out.stat().st_size < 10e6
    assert ResultStore(run).read("trials", columns=["trial_id"]).shape == (10_000, 1)


def test_status_reads_the_plan_from_run_json_without_importing_torch(tmp_path):
    """``ltsearch status`` of a run whose driver recorded its plan never validates the spec, so it
    imports no method, model or torch (3 s of a 6-s status on a 2-core machine); without the record
    (an older run) it plans from spec.yaml as before, with the same answer."""
    import json
    import subprocess
    import sys

    run = tmp_path / "r"
    synthesise(run, 30, template())
    code = ("import sys; from ltsearch.report.status import sweep_status; st = sweep_status(sys.argv[1]); "
            "print(st.planned, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["30", "False"]
    state = json.loads((run / "run.json").read_text())
    state.pop("planned"), state.pop("trial_epochs")
    (run / "run.json").write_text(json.dumps(state))
    out = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["8", "True"]  # quickstart.yaml's num_samples 8 × one seed, from the spec
