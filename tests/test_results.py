import math

import pandas as pd
import pyarrow.parquet as pq

from conftest import tiny_experiment
from ltsearch.results import load
from ltsearch.resolved import resolve_trial
from ltsearch.results.schema import SCHEMA_VERSION
from ltsearch.spec import ExperimentSpec
from ltsearch.trial import TrialContext, execute, trial_id_for

DESIGN_TRIAL_COLUMNS = {"trial_id", "sweep", "status", "error", "method", "dataset", "imbalance", "seed", "epochs",
                        "val_acc", "test_acc", "test_many", "test_medium", "test_few", "train_seconds"}


def test_trial_writes_three_datasets_idempotently(tmp_path):
    exp = ExperimentSpec.model_validate(tiny_experiment())
    ctx = TrialContext("s", str(tmp_path), {"method.loss": __import__("pyarrow").string()})
    trial = resolve_trial(exp, {"method.loss": "ce"})
    execute(trial, ctx)
    execute(trial, ctx)  # a re-run replaces, never duplicates
    trials, epochs, per_class = load(tmp_path)
    assert len(trials) == 1 and len(epochs) == 2 and len(per_class) == 10
    assert DESIGN_TRIAL_COLUMNS | {"method.loss", "subset_hash", "checkpoint_rule", "config_json"} <= set(trials.columns)
    assert {"trial_id", "epoch", "train_loss", "val_acc", "lr"} <= set(epochs.columns)
    assert {"trial_id", "class_index", "train_count", "split", "test_acc"} <= set(per_class.columns)
    row = trials.iloc[0]
    assert row["trial_id"] == trial_id_for(exp) and row["status"] == "ok" and row["method.loss"] == "ce"
    assert row["schema_version"] == SCHEMA_VERSION
    assert pd.read_parquet(tmp_path / "trials").shape[0] == 1
    meta = pq.read_schema(next((tmp_path / "trials").glob("*.parquet"))).metadata
    assert meta[b"ltsearch_schema_version"] == str(SCHEMA_VERSION).encode()
    assert not list(tmp_path.rglob(".tmp-*"))


def test_nan_trial_is_recorded_failed(tmp_path):
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"optim.lr": 1e30}))
    assert execute(exp, TrialContext("s", str(tmp_path))) is None
    trials, epochs, per_class = load(tmp_path)
    assert trials.iloc[0]["status"] == "failed" and "NonFiniteLoss" in trials.iloc[0]["error"]
    assert math.isnan(trials.iloc[0]["test_acc"]) and per_class.empty
