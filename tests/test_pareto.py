"""Head and tail as two objectives: the non-dominated set by hand, the front of a run's rows,
compare's `pareto` column and marks, spec validation of a list of metrics, a multi-objective
study (two named values per trial, the mean over seeds from Parquet) without Ray running; end to
end through Ray (slow): a multi-objective Optuna sweep and its report."""

from __future__ import annotations

import io
import math

import optuna
import pandas as pd
import pyarrow as pa
import pytest
from optuna.trial import TrialState

from ltsearch.errors import UserError
from ltsearch.report import pareto as P
from ltsearch.results import ResultStore
from ltsearch.spec import resolve_experiment, validate_spec_dict
from ltsearch.trial import trial_id_for

from conftest import tiny_experiment


def test_non_dominated_by_hand():
    # (many, few): B is beaten by A on both; C and A trade head for tail; D ties A on many, less few
    pts = [(90, 60), (85, 55), (80, 70), (90, 50), (math.nan, 99)]
    assert P.non_dominated(pts) == [True, False, True, False, False]
    assert P.non_dominated([(1, 1), (1, 1)]) == [True, True]  # equal points do not dominate each other
    assert P.non_dominated([(1, 5), (2, 3)], modes=["min", "max"]) == [True, False]


def _trials() -> pd.DataFrame:
    vals = {"ce": (95, 60), "bs": (88, 80), "focal": (94, 58), "sdnhl": (40, 85)}  # (val many, val few)
    rows = []
    for loss, (m, f) in vals.items():
        for s in (0, 1):
            rows.append({"trial_id": f"{loss}{s}", "status": "ok", "method": "single", "loss": loss, "seed": s,
                         "method.loss": loss, "val_acc": (m + f) / 2, "val_many": m + s, "val_few": f - s,
                         "test_acc": (m + f) / 2, "test_many": m - 1, "test_medium": 70.0, "test_few": f - 1})
    return pd.DataFrame(rows)


def test_front_of_a_run():
    t = P.front_table(_trials()).set_index("config")
    assert t.loc["loss=ce", "val_many"] == pytest.approx(95.5) and t.loc["loss=ce", "val_few"] == pytest.approx(59.5)
    assert P.front(_trials()) == {"loss=ce", "loss=bs", "loss=sdnhl"}  # focal is below CE on both
    marked = P.mark(pd.DataFrame({"configuration": ["loss=ce", "loss=focal"]}), _trials())
    assert list(marked["configuration"]) == ["loss=ce ◆", "loss=focal"]
    assert P.figure(_trials()) is not None


def test_compare_marks_the_front(tmp_path, monkeypatch):
    from ltsearch.report import compare, tables

    monkeypatch.setattr(compare, "load", lambda d: (_trials(), pd.DataFrame(), pd.DataFrame()))
    csv = pd.read_csv(io.StringIO(tables.csv(compare.load_runs([tmp_path]))))
    assert dict(zip(csv["configuration"], csv["pareto"])) == {"loss=ce": True, "loss=bs": True,
                                                             "loss=sdnhl": True, "loss=focal": False}
    md = compare.markdown(compare.load_runs([tmp_path]), top=None)
    assert "loss=bs ◆" in md and "loss=focal ◆" not in md and "non-dominated" in md
    assert r"loss=bs$^\diamond$" in tables.latex(compare.load_runs([tmp_path]), top=None)


def _spec(**search):
    return validate_spec_dict({"name": "mo", "experiment": tiny_experiment(), "resources": {"cpus_per_worker": 1},
                               "search": {"algorithm": "optuna", "seeds": [0, 1], "num_samples": 4,
                                          "space": {"method.loss": {"choice": ["ce", "focal", "balanced_softmax"]},
                                                    "optim.lr": {"choice": [0.1, 0.05]}}, **search}})


def test_metric_list_validation():
    spec = _spec(metric=["val_many", "val_few"], mode="max")
    assert spec.search.metrics == ["val_many", "val_few"] and spec.search.modes == ["max", "max"]
    assert _spec(metric=["val_many", "val_few"], mode=["max", "min"]).search.modes == ["max", "min"]
    for search, words in [({"metric": ["val_many", "test_few"]}, "test-set metric"),
                          ({"metric": ["val_many", "val_few"], "scheduler": "asha"}, "asha stops trials on one metric"),
                          ({"metric": ["val_many", "val_few"], "mode": ["max"]}, "one mode for every metric"),
                          ({"metric": ["val_many", "val_few"], "sampler": "cmaes"}, "CMA-ES"),
                          ({"metric": ["val_many", "val_few"], "warm_start": ["runs/x"]}, "warm start"),
                          ({"metric": ["val_many", "val_many"]}, "two or more distinct")]:
        with pytest.raises(UserError, match=words):
            _spec(**search)
    with pytest.raises(UserError, match="multi-objective Optuna search"):
        validate_spec_dict({"name": "g", "experiment": tiny_experiment(), "search": {"metric": ["val_many", "val_few"]}})


def test_a_multi_objective_study_without_ray(tmp_path):
    """Two named objectives, one direction each; a trial's values are the means over its seeds of
    the two metrics, read from its Parquet rows (not what Tune last reported)."""
    from ltsearch.tune.search import make_search_alg

    run = tmp_path / "mo"
    run.mkdir()
    spec = _spec(metric=["val_many", "val_few"], mode=["max", "max"])
    alg = make_search_alg(spec, str(run))
    alg.set_search_properties(None, None, {})
    params = alg.suggest("t1")
    types = {"optim.lr": pa.float64(), "method.loss": pa.string()}
    for seed, (m, f) in zip(spec.search.seeds, [(90.0, 50.0), (94.0, 54.0)]):
        exp = resolve_experiment(spec.experiment, {**params, "seed": seed})
        ResultStore(run).write_trial(trial_id_for(exp), {"sweep": "mo", "status": "ok", "seed": seed, "val_many": m,
                                                         "val_few": f, **params}, types)
    alg.on_trial_result("t1", {"val_many": 1.0, "val_few": 2.0, "epoch": 1})  # no intermediate values
    alg.on_trial_complete("t1", {"val_many": 0.0, "val_few": 0.0, "epoch": 2})
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{run}/optuna.db")
    assert study.metric_names == ["val_many", "val_few"]
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MAXIMIZE"]
    t = study.trials[0]
    assert t.state == TrialState.COMPLETE and t.values == [92.0, 52.0] and t.intermediate_values == {}
    assert alg.suggest("t2") is not None  # the sampler proposes with two objectives


@pytest.mark.slow
def test_a_multi_objective_sweep_end_to_end(tmp_path):
    import subprocess
    import sys

    import yaml

    exp = {"data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
           "model": {"arch": "small_cnn", "options": {"width": 8}}, "method": {"name": "single", "loss": "ce"},
           "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []}, "device": "cpu"}
    spec = tmp_path / "mo.yaml"
    spec.write_text(yaml.safe_dump({"name": "mo", "experiment": exp, "search": {
        "algorithm": "optuna", "num_samples": 4, "seeds": [0], "metric": ["val_many", "val_few"],
        "space": {"method.loss": {"choice": ["ce", "balanced_softmax", "focal"]},
                  "optim.lr": {"choice": [0.1, 0.03]}}}}))
    r = subprocess.run([sys.executable, "-m", "ltsearch", "run", str(spec), "--storage", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    study = optuna.load_study(study_name="mo", storage=f"sqlite:///{tmp_path}/mo/optuna.db")
    done = [t for t in study.trials if t.state == TrialState.COMPLETE]
    assert len(done) == 4 and all(len(t.values) == 2 for t in done) and study.metric_names == ["val_many", "val_few"]
    rows = ResultStore(tmp_path / "mo").read("trials")
    for t in done:
        row = rows[(rows["method.loss"] == t.params["method.loss"]) & (rows["optim.lr"] == t.params["optim.lr"])]
        assert t.values == [pytest.approx(row["val_many"].mean()), pytest.approx(row["val_few"].mean())]
    assert "Head vs tail: the Pareto front" in (tmp_path / "mo" / "report.html").read_text()
    front = {(t.params["method.loss"], t.params["optim.lr"]) for t in study.best_trials}
    mine = P.front(rows)
    assert len(front) == len(mine)  # Optuna's Pareto front and the report's are the same configurations


def test_the_vectorised_front_agrees_with_the_definition_pair_by_pair():
    """non_dominated (a sort and a running maximum for two objectives, blocks of pairs for more)
    against the definition written out pair by pair, on random points with ties, NaNs and modes."""
    import math
    import random

    from ltsearch.report.pareto import non_dominated

    def by_definition(points, modes=None):
        signs = [1 if m == "max" else -1 for m in (modes or ["max"] * len(points[0]))]
        pts = [None if any(math.isnan(v) for v in p) else [s * v for s, v in zip(signs, p)] for p in points]
        return [p is not None and not any(q is not None and all(b >= a for a, b in zip(p, q))
                                          and any(b > a for a, b in zip(p, q)) for q in pts) for p in pts]

    rng = random.Random(1)
    for _ in range(200):
        n = rng.randint(1, 30)
        two = [[math.nan if rng.random() < 0.1 else float(rng.randint(0, 5)), float(rng.randint(0, 5))] for _ in range(n)]
        modes = rng.choice([None, ["max", "min"], ["min", "min"]])
        assert non_dominated(two, modes) == by_definition(two, modes)
        three = [[float(rng.randint(0, 3)) for _ in range(3)] for _ in range(n)]
        assert non_dominated(three) == by_definition(three)
