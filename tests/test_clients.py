"""Clients nobody here wrote, on a real default sweep (marked slow: it starts a local Ray): Ray's
own ``ExperimentAnalysis`` reads the run's metrics, the log names the trials as Parquet does."""

from __future__ import annotations

import logging
import re
import warnings

import pandas as pd
import pytest
import yaml
from typer.testing import CliRunner

from ltsearch.cli import app

pytestmark = pytest.mark.slow

SPEC = {
    "name": "clients",
    "experiment": {
        "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
        "model": {"arch": "small_cnn", "options": {"width": 8}},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []},
    },
    "search": {"algorithm": "grid", "space": {"method.loss": {"grid": ["ce", "balanced_softmax"]}}},  # loggers: default
    "resources": {"cpus_per_worker": 1},
}


def test_default_sweep_is_read_by_ray_experiment_analysis_and_logs_ltsearch_ids(tmp_path):
    from ray.tune import ExperimentAnalysis

    p = tmp_path / "clients.yaml"
    p.write_text(yaml.safe_dump(SPEC))
    r = CliRunner().invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs"), "--no-report"])
    assert r.exit_code == 0, r.output
    run_dir = tmp_path / "runs" / "clients"
    trials = pd.read_parquet(run_dir / "trials")
    assert len(trials) == 2 and str(trials["finished_at"].dtype) == "datetime64[us, UTC]"

    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append  # type: ignore[method-assign]
    logging.getLogger("ray").addHandler(handler)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            df = ExperimentAnalysis(str(run_dir / "_tune")).dataframe()
    finally:
        logging.getLogger("ray").removeHandler(handler)
    assert len(df) == 2 and set(df["trial_key"]) == set(trials["trial_id"])  # the json logger's result.json
    assert df["val_acc"].tolist() == pytest.approx(trials.set_index("trial_id").loc[df["trial_key"], "val_acc"].tolist())
    assert [r.getMessage() for r in records] == [] and [str(w.message) for w in caught] == []

    done = re.findall(r"^trial (\w{12}) \(tune (\w+)\) done: loss=(\w+)", r.output, flags=re.M)
    assert {d[0] for d in done} == set(trials["trial_id"])  # the ids of RUN_DIR/trials/<id>.parquet
    assert set(df.set_index("trial_key").loc[[d[0] for d in done], "trial_id"]) == {d[1] for d in done}
