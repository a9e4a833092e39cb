"""The long-tailed subset's draw as a second seed (search.subset_seeds): cells cross subsets and
seeds, one identity per (configuration, subset, seed), rows carry subset_seed, Optuna trials train
every pair; the variance decomposition checked against sums of squares computed by hand; end to end
through Ray (slow): a grid over two subsets, its rows, its report section."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from ltsearch.errors import UserError
from ltsearch.report import variance as V
from ltsearch.results.store import ResultStore
from ltsearch.space import plan_cells, seed_units
from ltsearch.spec import validate_spec_dict
from ltsearch.trial import TrialContext, execute, trial_for
from ltsearch.tune.runner import run_configuration

from conftest import tiny_experiment


def _spec(**search):
    return validate_spec_dict({"name": "subsets", "experiment": tiny_experiment(), "search": search})


def test_cells_cross_subsets_and_seeds():
    spec = _spec(space={"optim.lr": {"grid": [0.1, 0.05]}}, seeds=[0, 1], subset_seeds=[3, 4])
    cells = plan_cells(spec.search, spec.experiment)
    assert len(cells) == 8 and cells[:4] == [{"optim.lr": 0.1, "subset_seed": b, "seed": s} for b in (3, 4) for s in (0, 1)]
    trials = [trial_for(spec, c) for c in cells]
    assert len({t.trial_id for t in trials}) == 8  # one identity per configuration, subset and seed
    assert len({t.config_key for t in trials}) == 2  # a configuration's rows over subsets share its key
    assert [t.exp.data.subset_seed for t in trials[:4]] == [3, 3, 4, 4]
    assert all("subset_seed" not in t.params and "data.subset_seed" not in t.params for t in trials)
    # without subset_seeds: cells and trial ids as before (the experiment's own subset)
    plain = _spec(space={"optim.lr": {"grid": [0.1]}}, seeds=[0])
    assert plan_cells(plain.search, plain.experiment) == [{"optim.lr": 0.1, "seed": 0}]
    assert trial_for(plain, {"optim.lr": 0.1, "seed": 0}).exp.data.subset_seed == 0


def test_subset_seed_validation():
    with pytest.raises(UserError, match="search.subset_seeds"):
        _spec(subset_seeds=[1, 1])
    with pytest.raises(UserError, match="data.subset_seed"):
        _spec(subset_seeds=[0, 1], space={"data.subset_seed": {"grid": [0, 1]}})


def test_an_optuna_trial_trains_every_seed_on_every_subset(tmp_path):
    spec = _spec(algorithm="optuna", seeds=[0, 1], subset_seeds=[0, 2], space={"optim.lr": {"uniform": [0.01, 0.1]}})
    assert seed_units(spec.search) == [{"subset_seed": b, "seed": s} for b in (0, 2) for s in (0, 1)]
    ctx = TrialContext("subsets", str(tmp_path))
    reports: list[dict] = []
    run_configuration(spec, {"optim.lr": 0.05}, str(tmp_path), lambda t, first: execute(t, ctx), reports.append)
    rows = ResultStore(tmp_path).read("trials")
    assert sorted(zip(rows["subset_seed"], rows["seed"])) == [(0, 0), (0, 1), (2, 0), (2, 1)]
    assert reports[-1]["seeds"] == 4 and reports[-1]["val_acc"] == pytest.approx(rows["val_acc"].mean())
    assert rows["config_key"].nunique() == 1
    # a different subset is different data: the subset hash of its trials differs
    assert rows.groupby("subset_seed")["subset_hash"].nunique().tolist() == [1, 1]
    assert rows["subset_hash"].nunique() == 2


def test_variance_components_by_hand():
    # subsets [1, 3] and [5, 7]: means 2 and 6, grand mean 4; SSB = 2·4 + 2·4 = 16 (1 df), SSW = 4 (2 df)
    # n0 = (4 − 8/4) / 1 = 2; σ²_init = 4/2 = 2; σ²_subset = (16 − 2) / 2 = 7; share 7/9
    s = V.sums([[1, 3], [5, 7]])
    assert (s.ss_between, s.df_between, s.ss_within, s.df_within, s.n0) == (16, 1, 4, 2, 2)
    assert s.var_init == 2 and s.var_subset == 7 and s.subset_share == pytest.approx(7 / 9) and s.swing == 4
    # unbalanced: [1, 3, 2] and [6]: N = 4, n0 = (4 − 10/4) / 1 = 1.5; grand mean 3, SSB = 3·1 + 1·9 = 12,
    # SSW = 2 (2 df): σ²_init = 1, σ²_subset = (12 − 1) / 1.5
    u = V.sums([[1, 3, 2], [6]])
    assert u.n0 == pytest.approx(1.5) and u.var_init == 1 and u.var_subset == pytest.approx(11 / 1.5)
    # subsets that differ less than the seeds: MS_between < MS_within, σ²_subset truncated at 0
    z = V.sums([[0, 10], [1, 9]])
    assert z.var_subset == 0 and z.subset_share == 0
    # pooled: sums of squares, degrees of freedom and n0 numerators add: SSB 16 + 12, df 2; SSW 4 + 2, df 4
    p = V.pooled([s, u])
    assert p.var_init == pytest.approx(6 / 4) and p.n0 == pytest.approx((2 + 1.5) / 2)
    assert p.var_subset == pytest.approx((28 / 2 - 1.5) / 1.75)
    assert math.isnan(V.sums([[1, 2]]).var_subset)  # one subset: nothing to split


def _rows(values: dict[tuple[str, int, int], float]) -> pd.DataFrame:
    return pd.DataFrame([{"trial_id": f"{c}{b}{s}", "status": "ok", "method": "single", "loss": "ce",
                          "method.gamma": {"a": 0.0, "b": 1.0}[c], "subset_seed": b, "seed": s, "val_acc": v,
                          "test_acc": v, "test_many": v, "test_medium": v, "test_few": v}
                         for (c, b, s), v in values.items()])


def test_variance_tables_from_rows():
    rows = _rows({("a", 0, 0): 1, ("a", 0, 1): 3, ("a", 1, 0): 5, ("a", 1, 1): 7,
                  ("b", 0, 0): 1, ("b", 0, 1): 3, ("b", 1, 0): 2, ("b", 1, 1): 6})
    assert V.has_subsets(rows) and not V.has_subsets(rows[rows["subset_seed"] == 0])
    per = V.configuration_table(rows)
    a = per[per["configuration"] == "gamma=0"].iloc[0]
    assert (a["subsets"], a["runs"], a["σ subset"], a["σ init"], a["subset share"]) == (2, 4, f"{math.sqrt(7):.2f}",
                                                                                       f"{math.sqrt(2):.2f}", "78%")
    pooled = V.pooled_table(rows).set_index("metric")
    # b: [1, 3], [2, 6]: means 2 and 4, grand 3: SSB = 4, SSW = 2 + 8 = 10; pooled with a: SSB 20 (2 df), SSW 14 (4 df)
    assert pooled.loc["overall", "σ init"] == f"{math.sqrt(14 / 4):.2f}"
    assert pooled.loc["overall", "σ subset"] == f"{math.sqrt((20 / 2 - 14 / 4) / 2):.2f}"
    assert pooled.loc["overall", "df subset / init"] == "2 / 4"


@pytest.mark.slow
def test_a_grid_over_subsets_end_to_end(tmp_path):
    import json
    import subprocess
    import sys

    import yaml

    exp = {"data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
           "model": {"arch": "small_cnn", "options": {"width": 8}}, "method": {"name": "single", "loss": "ce"},
           "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []}, "device": "cpu"}
    spec = tmp_path / "sub.yaml"
    spec.write_text(yaml.safe_dump({"name": "sub", "experiment": exp, "search": {
        "space": {"method.loss": {"grid": ["ce", "balanced_softmax"]}}, "seeds": [0, 1], "subset_seeds": [0, 1]}}))
    r = subprocess.run([sys.executable, "-m", "ltsearch", "run", str(spec), "--storage", str(tmp_path)],
                       capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stderr[-3000:]
    rows = ResultStore(tmp_path / "sub").read("trials")
    assert len(rows) == 8 and (rows["status"] == "ok").all()
    assert sorted(rows.groupby("subset_seed").size()) == [4, 4] and rows["config_key"].nunique() == 2
    page = (tmp_path / "sub" / "report.html").read_text()
    assert "Subset draw vs initialisation" in page and "Head vs tail: the Pareto front" in page
    assert json.loads(rows.iloc[0]["config_json"])["data"]["subset_seed"] == rows.iloc[0]["subset_seed"]
