"""Every shipped search space: loads, names its paper table, and runs at --smoke scale.

The smoke runs go through the CLI (``ltsearch run SPEC --smoke``) in one shared Ray session. Every
YAML runs by default (the README's test command, and so CI, covers all of them); set
``LTSEARCH_SMOKE_ALL=0`` for a representative subset (``SMOKE_DEFAULT``) in quick local runs.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.smoke import SMOKE_EPOCHS, smoke_spec
from ltsearch.spec import load_spec, resolve_experiment
from ltsearch.trial import trial_id_for
from ltsearch.space import plan_cells

SPACES = sorted((Path(__file__).resolve().parents[1] / "search_spaces").glob("*.yaml"))
PAPERS = r"BBN|SDNHL|HRDC|GLAG|BWLM|Kang|LDAM"
# one space per method family / search feature: single-branch losses + a data.dataset grid (dropped
# at smoke scale), bbn (stochastic adaptor), sdnhl (d2c), hrdc (strategy × fusion), two-stage glag
# (stage2_epochs grid incl. 0), bwlm (a conditional parameter), cRT/LWS (a method.name grid and the
# shared stage 1), Optuna TPE + ASHA. 1.5-3 minutes on 2 shared cores; all 31 spaces take 7-10 minutes.
SMOKE_DEFAULT = {
    "compare_baselines", "bbn_adaptor", "d2c_gamma", "hrdc_strategy_fusion", "glag_components",
    "bwlm_components", "decoupling", "optuna_lr_wd",
}
SMOKE_ALL = os.environ.get("LTSEARCH_SMOKE_ALL", "1") != "0"


def header(path: Path) -> str:
    lines = []
    for line in path.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return "\n".join(lines)


def test_search_spaces_exist():
    names = {p.stem for p in SPACES}
    for required in ("compare_baselines", "compare_methods", "d2c_gamma", "hl_momentum", "sdnhl_components",
                     "bbn_adaptor", "bbn_sampler", "hrdc_cdt_gamma", "hrdc_branch_loss", "hrdc_strategy_fusion",
                     "glag_alpha", "glag_components", "bwlm_alpha", "decoupling", "optuna_lr_wd", "quickstart"):
        assert required in names
    assert SMOKE_DEFAULT <= names


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_space_loads_and_names_its_table(path):
    spec = load_spec(path)
    assert spec.name == path.stem
    head = header(path)
    if path.stem == "quickstart":  # the offline first run, not a paper reproduction
        assert "offline" in head
        return
    if path.stem.endswith("_benchmark"):  # ltsearch's own benchmarks: where their numbers are published
        assert "offline" in head and re.search(r"docs/results/\S+\.md", head) and re.search(r"[Rr]ecipe", head)
        assert re.search(r"Time: about", head), f"{path.name}: header does not say how long it takes"
        return
    assert re.search(PAPERS, head), f"{path.name}: header names no paper"
    assert re.search(r"(Table|Figure|Fig\.)\s*\d", head), f"{path.name}: header names no table or figure"
    assert re.search(r"[Rr]ecipe", head), f"{path.name}: header does not say where the recipe comes from"


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.stem)
def test_smoke_transform_rescales_epoch_settings(path):
    spec = smoke_spec(load_spec(path))
    exp = spec.experiment
    assert exp.data.dataset == "digits" and exp.optim.epochs == SMOKE_EPOCHS and spec.search.seeds == spec.search.seeds[:1]
    assert not [k for k in spec.search.space if k.split(".")[0] in ("data", "model")]
    for key, value in exp.method.params().items():
        if key.endswith(("_epoch", "_epochs")) and isinstance(value, int):
            assert value <= SMOKE_EPOCHS, f"{path.name}: method.{key} = {value} at smoke scale"
    for cell in plan_cells(spec.search, exp):
        resolve_experiment(exp, cell)  # every planned cell is a valid experiment


def test_smoke_rescales_method_defaults_and_drops_full_scale_search_state(tmp_path):
    """Epoch parameters left at their defaults shrink too (GLAG's 40 stage-2 epochs, SDNHL's
    switches at 160 of 200 land inside the 2 epochs); a searched ``optim.epochs``, warm starts and a
    shared Optuna database do not reach the toy run."""
    from ltsearch.spec import validate_spec_dict

    def smoke(method, **search):
        raw = {"name": "s", "experiment": {"data": {"dataset": "digits", "imbalance": 10},
                                           "method": method, "optim": {"epochs": 200}}, "search": search}
        return smoke_spec(validate_spec_dict(raw, source="test"))

    glag = smoke({"name": "glag"}).experiment.method.params()
    assert glag["stage2_epochs"] == 1  # 40 · 2/200 = 0.4 → a stage that had epochs keeps one
    sdnhl = smoke({"name": "sdnhl"}).experiment.method.params()
    assert sdnhl["hl_epoch"] == sdnhl["drw_epoch"] == 1  # 160 of 200 → epoch 1 of 2: both phases run
    assert smoke({"name": "sdnhl", "hl_epoch": None}).experiment.method.params()["hl_epoch"] is None  # stays off
    spec = smoke({"name": "single"}, algorithm="optuna", num_samples=4, warm_start=[str(tmp_path)],
                 optuna_storage=f"sqlite:///{tmp_path}/shared.db",
                 space={"optim.epochs": {"choice": [100, 200]}, "optim.lr": {"loguniform": [0.01, 0.1]}})
    assert list(spec.search.space) == ["optim.lr"] and spec.experiment.optim.epochs == SMOKE_EPOCHS
    assert spec.search.warm_start == [] and spec.search.optuna_storage is None


def _expected_trials(spec) -> set[str] | None:
    if spec.search.algorithm == "optuna":
        return None
    return {trial_id_for(resolve_experiment(spec.experiment, c)) for c in plan_cells(spec.search, spec.experiment)}


@pytest.fixture(scope="module")
def ray_session(tmp_path_factory):
    """One Ray session for all smoke runs (run_sweep reuses it instead of starting its own)."""
    old = os.environ.get("LTSEARCH_CACHE")
    os.environ["LTSEARCH_CACHE"] = str(tmp_path_factory.mktemp("stage_cache"))
    from ltsearch.tune.search import init_ray

    started = init_ray(None, num_cpus=2)
    yield
    if started:
        import ray

        ray.shutdown()
    if old is None:
        os.environ.pop("LTSEARCH_CACHE", None)
    else:
        os.environ["LTSEARCH_CACHE"] = old


SMOKE_PARAMS = [
    pytest.param(p, id=p.stem, marks=pytest.mark.skipif(
        not SMOKE_ALL and p.stem not in SMOKE_DEFAULT,
        reason="LTSEARCH_SMOKE_ALL=0: not in the representative subset"))
    for p in SPACES
]


@pytest.mark.slow
@pytest.mark.parametrize("path", SMOKE_PARAMS)
def test_smoke_run(path, ray_session, tmp_path):
    result = CliRunner().invoke(app, ["run", str(path), "--smoke", "--storage", str(tmp_path), "--no-report"])
    assert result.exit_code == 0, result.output
    spec = smoke_spec(load_spec(path))
    trials = pd.read_parquet(tmp_path / spec.name / "trials")
    expected = _expected_trials(spec)
    if expected is None:  # optuna: num_samples trials; ASHA may stop some
        assert len(trials) == spec.search.num_samples
        assert set(trials["status"]) <= {"ok", "stopped"}
    else:
        assert set(trials["trial_id"]) == expected, "every planned trial wrote one row"
        assert len(trials) == len(expected)
    failed = trials[trials["status"] == "failed"]
    assert failed["error"].fillna("").str.len().gt(0).all(), "a failed trial says why"
    assert (trials["status"] == "ok").any()


def test_full_scale_spec_without_cifar_fails_fast(tmp_path):
    """No CIFAR-100 here: exit 2, one line on how to get it (or --smoke), nothing written."""
    root = tmp_path / "data"
    (root / "cifar-100-python").mkdir(parents=True)  # present but empty: no download attempt
    storage = tmp_path / "runs"
    spaces = Path(__file__).resolve().parents[1] / "search_spaces"
    result = CliRunner().invoke(app, ["run", str(spaces / "d2c_gamma.yaml"), "--storage", str(storage)],
                                env={"LTSEARCH_DATA": str(root)})
    assert result.exit_code == 2
    lines = [ln for ln in result.output.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:")
    assert "cifar-100-python.tar.gz" in lines[0] and "--smoke" in lines[0]
    assert not storage.exists()
