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


def test_finished_at_is_a_utc_timestamp_and_old_text_values_still_read(tmp_path):
    """Schema 4 stores ``finished_at`` as ``timestamp[us, UTC]``; a run that also holds files of
    schema 3 (text with the writer's local offset) reads as one timestamp column, here and in status."""
    import pyarrow as pa

    from ltsearch.results.schema import TIMESTAMP, TRIAL_FIELDS, trials_schema, upgrade
    from ltsearch.report.status import sweep_status

    assert SCHEMA_VERSION == 4 and dict(TRIAL_FIELDS)["finished_at"] == pa.timestamp("us", tz="UTC")
    before = pd.Timestamp.now(tz="UTC").floor("s")
    exp = ExperimentSpec.model_validate(tiny_experiment())
    execute(exp, TrialContext("s", str(tmp_path)))
    after = pd.Timestamp.now(tz="UTC")
    new_file = next((tmp_path / "trials").glob("*.parquet"))
    assert pq.read_schema(new_file).field("finished_at").type == TIMESTAMP
    # a file as schema 3 wrote it: the same columns, finished_at as text in UTC+01:00
    old = pa.Table.from_pylist([{"trial_id": "old", "sweep": "s", "status": "ok", "method": "single", "seed": 7,
                                 "val_acc": 50.0, "finished_at": "2026-06-01T13:30:05+0100", "schema_version": 3}],
                               schema=pa.schema([(n, pa.string() if n == "finished_at" else t)
                                                 for n, t in TRIAL_FIELDS]))
    pq.write_table(old, tmp_path / "trials" / "old.parquet")
    trials = load(tmp_path)[0].set_index("trial_id")
    assert str(trials["finished_at"].dtype) == "datetime64[us, UTC]"
    assert trials.loc["old", "finished_at"] == pd.Timestamp("2026-06-01T12:30:05Z")
    assert before <= trials.loc[trial_id_for(exp), "finished_at"] <= after
    st = sweep_status(str(tmp_path))
    assert len(st.trials) == 2 and "finished_at" not in st.trials and "config_json" not in st.trials  # only what it shows
    # the conversion itself: unparseable text becomes null, a table without the column is unchanged
    t = upgrade(pa.table({"finished_at": ["2026-01-01T00:00:00+0000", "soon", None]}))
    assert t.schema.field("finished_at").type == TIMESTAMP and t.column(0).null_count == 2
    plain = pa.table({"x": [1]})
    assert upgrade(plain) is plain and trials_schema().field("finished_at").type == TIMESTAMP
