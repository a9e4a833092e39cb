"""End to end through Ray Tune (marked slow: each test starts a local Ray)."""

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.spec import load_spec
from ltsearch.tune.search import plan_sweep, run_dir_for

pytestmark = pytest.mark.slow
runner = CliRunner()

GRID = {
    "name": "grid2",
    "experiment": {
        "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
        "model": {"arch": "small_cnn", "options": {"width": 8}},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []},
    },
    "search": {"algorithm": "grid", "space": {"method.loss": {"grid": ["ce", "balanced_softmax"]}}},
    "resources": {"cpus_per_worker": 1},
}


def test_two_trial_sweep_end_to_end_and_rerun_skips(tmp_path):
    p = tmp_path / "grid2.yaml"
    p.write_text(yaml.safe_dump(GRID))
    r = runner.invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "runs" / "grid2"
    trials = pd.read_parquet(run_dir / "trials")
    assert len(trials) == 2 and set(trials["status"]) == {"ok"}
    assert set(trials["method.loss"]) == {"ce", "balanced_softmax"}
    for col in ("trial_id", "sweep", "status", "error", "method", "dataset", "imbalance", "seed", "epochs", "val_acc",
                "test_acc", "test_many", "test_medium", "test_few", "train_seconds"):
        assert col in trials.columns
    assert len(pd.read_parquet(run_dir / "epochs")) == 4
    assert len(pd.read_parquet(run_dir / "per_class")) == 20
    assert (run_dir / "report.html").is_file()
    # re-running the same spec finds nothing missing and writes no duplicate
    spec = load_spec(p)
    planned = plan_sweep(spec, run_dir_for(spec, str(tmp_path / "runs")))
    assert planned.cells == [] and planned.skipped == 2
    r = runner.invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs"), "--no-report"])
    assert r.exit_code == 0 and "already finished" in r.output
    assert len(pd.read_parquet(run_dir / "trials")) == 2
