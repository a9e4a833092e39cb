"""Ablation paths (Fawcett & Hoos 2016): the greedy path on hand-made rows, conditional parameters
flipped with their parent, the missing candidates it asks for, the paired Δ and its interval by
hand, the CSV columns; a real spec's candidates resolve to the run's own config keys; end to end
through Ray (slow): `ltsearch ablate` trains the missing candidates into RUN_DIR/ablation, reuses
every row on a second call, and its path is a report section."""

from __future__ import annotations

import io
import json
import math
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from ltsearch.report import ablation as A

SOURCE = {"method.name": "single", "method.loss": "ce", "optim.lr": 0.1}
TARGET = {"method.name": "single", "method.loss": "focal", "method.gamma": 2.0, "optim.lr": 0.05}


def key_of(leaves: dict) -> str | None:
    """A configuration's key; focal's gamma exists only beside loss: focal (else not a configuration)."""
    if "method.gamma" in leaves and leaves.get("method.loss") != "focal":
        return None
    return json.dumps(leaves, sort_keys=True)


def K(**changes) -> str:
    leaves = {**SOURCE, **changes}
    return key_of({k: v for k, v in leaves.items() if v is not None})


KEYS = {"source": K(), "loss": K(**{"method.loss": "focal"}), "lossgamma": K(**{"method.loss": "focal", "method.gamma": 2.0}),
        "lr": K(**{"optim.lr": 0.05}), "target": key_of(TARGET)}
# val accuracy per configuration (3 seeds), and test accuracy
VAL = {"source": [70, 70, 70], "loss": [72, 72, 72], "lossgamma": [74, 74, 74], "lr": [73, 73, 73], "target": [76, 76, 76]}
TEST = {"source": [70, 71, 72], "loss": [72, 72, 72], "lossgamma": [78, 81, 81], "lr": [73, 73, 73], "target": [80, 82, 84]}


def rows(names=tuple(KEYS), failed=()) -> pd.DataFrame:
    out = []
    for name in names:
        for s in range(3):
            v, t = VAL[name][s], TEST[name][s]
            out.append({"config_key": KEYS[name], "subset_seed": 0, "seed": s,
                        "status": "failed" if (name, s) in failed else "ok", "val_acc": v,
                        "test_acc": t, "test_many": t - 10, "test_medium": t, "test_few": t + 1.0 * s})
    return pd.DataFrame(out)


UNITS = [(0, 0), (0, 1), (0, 2)]


def test_leaves_and_flips():
    tree = {"seed": 3, "data": {"subset_seed": 2, "dataset": "digits", "options": {}}, "method": {"name": "single"}}
    leaves = A.configuration_leaves(tree)
    assert leaves == {"data.dataset": "digits", "data.options": {}, "method.name": "single"}
    assert A.unflatten(leaves) == {"data": {"dataset": "digits", "options": {}}, "method": {"name": "single"}}
    assert A.differences(SOURCE, TARGET) == ["method.gamma", "method.loss", "optim.lr"]
    assert A.flip(TARGET, SOURCE, ["method.gamma"]) == {k: v for k, v in TARGET.items() if k != "method.gamma"}


def test_conditional_parameters_move_with_their_parent():
    cands = A.candidates(SOURCE, TARGET, key_of)
    # gamma alone is no configuration (ce has no gamma): it is flipped with the other method.* difference
    assert [c.params for c in cands] == [("method.gamma", "method.loss"), ("method.loss",), ("optim.lr",)]


def test_greedy_path_by_hand():
    result = A.greedy_path(SOURCE, TARGET, key_of, A.score_of(rows(), UNITS))
    assert result.done
    assert [s.params for s in result.steps] == [(), ("method.gamma", "method.loss"), ("optim.lr",)]
    assert [s.score for s in result.steps] == [70, 74, 76]  # 74 > 73 (lr) > 72 (loss alone)
    assert result.steps[1].before == ("—", "ce") and result.steps[1].after == ("2", "focal")
    assert [s.candidates for s in result.steps] == [0, 3, 1]
    table = A.path_table(result, rows(), UNITS, labels={KEYS["source"]: "CE", KEYS["target"]: "focal lr=0.05"})
    assert list(table["config"]) == ["CE", "CE + method.gamma=2, method.loss=focal", "focal lr=0.05"]
    # step 2, overall: target − (focal, γ 2) per seed = 80−78, 82−81, 84−81 = 2, 1, 3: mean 2, sd 1,
    # 95 % interval 2 ± t_{0.975, 2} / √3 = 2 ± 4.3027 / 1.7321
    step2 = table.iloc[2]
    assert step2["delta_overall"] == pytest.approx(2.0)
    assert step2["delta_overall_high"] - 2.0 == pytest.approx(4.302653 / math.sqrt(3), rel=1e-5)
    assert table.iloc[1]["delta_few"] == pytest.approx(table.iloc[1]["delta_overall"])  # few = overall + s
    assert math.isnan(table.iloc[0]["delta_overall"]) and table.iloc[0]["overall"] == pytest.approx(71.0)
    # the Δs add up from the source to the target
    assert table["delta_overall"][1:].sum() == pytest.approx(table.iloc[-1]["overall"] - table.iloc[0]["overall"])


def test_missing_candidates_are_asked_for_and_failures_lose():
    result = A.greedy_path(SOURCE, TARGET, key_of, A.score_of(rows(names=("source", "loss", "target")), UNITS))
    assert not result.done and len(result.steps) == 1
    assert sorted(c.key for c in result.missing) == sorted([KEYS["lossgamma"], KEYS["lr"]])
    # a candidate with a failed seed scores NaN and is passed over
    failed = A.greedy_path(SOURCE, TARGET, key_of, A.score_of(rows(failed=[("lossgamma", 1)]), UNITS))
    assert failed.steps[1].params == ("optim.lr",)
    # one missing seed is a missing candidate
    partial = rows()[lambda r: ~((r["config_key"] == KEYS["lr"]) & (r["seed"] == 2))]
    assert [c.key for c in A.greedy_path(SOURCE, TARGET, key_of, A.score_of(partial, UNITS)).missing] == [KEYS["lr"]]


def test_csv_columns():
    result = A.greedy_path(SOURCE, TARGET, key_of, A.score_of(rows(), UNITS))
    table = pd.read_csv(io.StringIO(A.csv(A.path_table(result, rows(), UNITS))))
    head = ["step", "parameter", "from", "to", "config"] + [f"delta_{g}{k}" for g in ("overall", "many", "medium", "few")
                                                          for k in ("", "_low", "_high")]
    assert list(table.columns[:len(head)]) == head and list(table["step"]) == [0, 1, 2]
    meta, back = A.read_path(A.path_json({"source": "CE"}, A.path_table(result, rows(), UNITS)))
    assert meta == {"source": "CE"} and list(back["step"]) == [0, 1, 2]
    assert A.waterfall(back) is not None


def test_a_real_spec_resolves_candidates_to_the_runs_keys():
    from conftest import tiny_experiment

    from ltsearch.ablate import Resolver, ablation_spec
    from ltsearch.spec import validate_spec_dict
    from ltsearch.trial import trial_for

    spec = validate_spec_dict({"name": "a", "experiment": tiny_experiment(), "search": {
        "algorithm": "optuna", "metric": ["val_many", "val_few"], "num_samples": 4, "seeds": [0, 1],
        "space": {"method.loss": {"choice": ["ce", "focal"]}, "optim.lr": {"choice": [0.1, 0.05]},
                  "method.gamma": {"choice": [2.0], "when": {"method.loss": "focal"}}}}})
    ce = trial_for(spec, {"method.loss": "ce", "optim.lr": 0.1})
    focal = trial_for(spec, {"method.loss": "focal", "method.gamma": 2.0, "optim.lr": 0.05})
    leaves = [A.configuration_leaves(t.exp.model_dump(by_alias=True)) for t in (ce, focal)]
    resolver = Resolver(spec)
    assert [resolver.key(x) for x in leaves] == [ce.config_key, focal.config_key]
    cands = A.candidates(leaves[0], leaves[1], resolver.key)
    assert [c.params for c in cands] == [("method.gamma", "method.loss"), ("method.loss",), ("optim.lr",)]
    key, params = resolver(cands[2].leaves)
    assert params == {"method.loss": "ce", "optim.lr": 0.05}  # the run's own searched keys, where they say it all
    abl = ablation_spec(spec, [0, 1, 2])
    assert (abl.name, abl.search.algorithm, abl.search.metric, abl.search.seeds) == ("ablation", "grid", "val_acc", [0, 1, 2])
    assert trial_for(abl, {**params, "seed": 2}).config_key == key


# ----------------------------------------------------------------------------------- end to end

EXPERIMENT = {
    "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
    "model": {"arch": "small_cnn", "options": {"width": 8}},
    "method": {"name": "single", "loss": "ce"},
    "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []},
    "device": "cpu",
}


def _ltsearch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltsearch", *args], capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_ablate_end_to_end(tmp_path):
    """Two configurations of a whole-section grid differ in loss and DRW: the path's first step has two
    candidates that no row has (LDAM without DRW, CE with DRW), trained into RUN_DIR/ablation."""
    spec = tmp_path / "abl.yaml"
    spec.write_text(yaml.safe_dump({"name": "abl", "experiment": EXPERIMENT, "search": {
        "space": {"method": {"grid": [{"name": "single", "loss": "ce"},
                                      {"name": "single", "loss": "ldam", "drw_epoch": 1}]}}, "seeds": [0, 1]}},
                                    sort_keys=False))  # a section's label starts with its name
    r = _ltsearch("run", str(spec), "--storage", str(tmp_path), "--no-report")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "abl"
    out = _ltsearch("ablate", str(run), "--from", "single(loss=ce)", "--to", "single(loss=ldam, drw_epoch=1)", "--format", "csv")
    assert out.returncode == 0, out.stderr[-3000:]
    table = pd.read_csv(io.StringIO(out.stdout))
    assert list(table["step"]) == [0, 1, 2] and set(table["parameter"][1:]) == {"method.loss", "method.drw_epoch"}
    assert "training 4 trial(s) of 2 candidate(s)" in out.stderr  # 2 candidates x 2 seeds, nothing else
    abl = pd.concat([pd.read_parquet(p) for p in (run / "ablation" / "trials").glob("*.parquet")])
    assert len(abl) == 4 and (abl["status"] == "ok").all() and abl["sweep"].eq("ablation").all()
    assert table["delta_overall"][1:].sum() == pytest.approx(table["overall"].iloc[-1] - table["overall"].iloc[0], abs=1e-3)
    again = _ltsearch("ablate", str(run), "--from", "single(loss=ce)", "--to", "single(loss=ldam, drw_epoch=1)")
    assert again.returncode == 0 and "training" not in again.stderr  # every row reused
    assert "ablation path: single(loss=ce) → single(loss=ldam, drw_epoch=1)" in again.stdout
    rep = _ltsearch("report", str(run))
    assert rep.returncode == 0 and "Ablation path: single(loss=ce) → single(loss=ldam, drw_epoch=1)" in (run / "report.html").read_text()
    bad = _ltsearch("ablate", str(run), "--to", "nope")
    assert bad.returncode == 2 and "--to 'nope': no such configuration" in bad.stderr


def test_the_command_on_a_run_whose_candidates_all_have_rows(tmp_path):
    """A run of CE and LDAM-DRW plus, trained beside them, the two candidates of the path's first step:
    `ltsearch ablate` needs no Ray, prints the path, its CSV, and writes RUN_DIR/ablation/path.json."""
    from typer.testing import CliRunner

    from conftest import tiny_experiment

    from ltsearch.cli import app
    from ltsearch.results.run_dir import RunState
    from ltsearch.results.store import ResultStore
    from ltsearch.spec import dump_spec, validate_spec_dict
    from ltsearch.trial import TrialContext, execute, trial_for
    from ltsearch.tune.search import param_types_for

    methods = [{"name": "single", "loss": "ce"}, {"name": "single", "loss": "ldam", "drw_epoch": 1}]
    spec = validate_spec_dict({"name": "abl", "experiment": tiny_experiment(),
                               "search": {"space": {"method": {"grid": methods}}, "seeds": [0, 1]}})
    run = tmp_path / "abl"
    RunState(str(run)).start("test")
    ResultStore(run).write_text("spec.yaml", dump_spec(spec))
    ctx = TrialContext("abl", str(run), param_types_for(spec))
    for m in methods:
        for s in (0, 1):
            execute(trial_for(spec, {"method": m}, s), ctx)
    # the candidates (LDAM without DRW, CE with DRW), as `ablate` would train them into RUN_DIR/ablation
    abl_ctx = TrialContext("ablation", str(run / "ablation"))
    for m in ({"name": "single", "loss": "ldam"}, {"name": "single", "loss": "ce", "drw_epoch": 1}):
        for s in (0, 1):
            execute(trial_for(spec, {"method": m}, s), abl_ctx)
    runner = CliRunner()
    r = runner.invoke(app, ["ablate", str(run), "--from", "single(loss=ce)", "--format", "csv"])
    assert r.exit_code == 0, r.output
    table = pd.read_csv(io.StringIO(r.stdout))
    assert list(table["step"]) == [0, 1, 2] and sorted(table["parameter"][1:]) == ["method.drw_epoch", "method.loss"]
    assert table["config"].iloc[0] == "single(loss=ce)" and table["config"].iloc[-1] == "single(loss=ldam, drw_epoch=1)"
    assert table["delta_overall"][1:].sum() == pytest.approx(table["overall"].iloc[-1] - table["overall"].iloc[0], abs=1e-3)
    meta, path = A.read_path((run / "ablation" / "path.json").read_text())
    assert meta["trained"] == 0 and meta["seeds"] == [0, 1] and len(path) == 3
    text = runner.invoke(app, ["ablate", str(run), "--from", "single(loss=ce)"])
    assert text.exit_code == 0 and "ablation path: single(loss=ce) → single(loss=ldam, drw_epoch=1)" in text.stdout
    from ltsearch.report.html import ablation_section

    assert ablation_section(run)[0][0] == "Ablation path: single(loss=ce) → single(loss=ldam, drw_epoch=1)"
    same = runner.invoke(app, ["ablate", str(run), "--from", "single(loss=ce)", "--to", "single(loss=ce)"])
    assert same.exit_code == 2 and "nothing to ablate" in same.output
    bad = runner.invoke(app, ["ablate", str(run), "--seeds", "0,x"])
    assert bad.exit_code == 2 and "--seeds" in bad.output
