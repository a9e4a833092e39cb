"""Ray platform behaviour: planning, Optuna determinism, ASHA, failures, reused actors, DDP, kill -9 resume."""

import os
import signal
import subprocess
import sys
import time

import pandas as pd
import pytest
import yaml

from ltsearch.spec import Spec, resolve_experiment, validate_spec_dict
from ltsearch.trial import TrialContext, execute, trial_id_for
from ltsearch.tune.search import grace_period, make_search_alg, run_sweep
from ltsearch.space import plan_cells

EXPERIMENT = {
    "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
    "model": {"arch": "small_cnn", "options": {"width": 8}},
    "method": {"name": "single", "loss": "ce"},
    "optim": {"lr": 0.05, "epochs": 4, "batch_size": 64, "warmup": 0, "milestones": []},
    "device": "cpu",
}


def make_spec(name, search, experiment=None, resources=None):
    return validate_spec_dict({"name": name, "experiment": experiment or EXPERIMENT, "search": search,
                               "resources": resources or {"cpus_per_worker": 1}})


def test_grid_2x2_with_2_seeds_is_8_distinct_trials():
    spec = make_spec("g", {"space": {"method.loss": {"grid": ["ce", "focal", "ce"]},  # a repeated value
                                     "optim.lr": {"grid": [0.1, 0.05]}}, "seeds": [0, 1]})
    cells = plan_cells(spec.search, spec.experiment)
    ids = {trial_id_for(resolve_experiment(spec.experiment, c)) for c in cells}
    assert len(cells) == 8 and len(ids) == 8


def test_conditional_parameter_only_when_active():
    spec = make_spec("c", {"algorithm": "random", "num_samples": 12, "seed": 1, "space": {
        "method.loss": {"choice": ["ce", "ldam"]},
        "method.max_m": {"uniform": [0.2, 0.6], "when": {"method.loss": "ldam"}}}})
    cells = plan_cells(spec.search, spec.experiment)
    assert cells and all(("method.max_m" in c) == (c["method.loss"] == "ldam") for c in cells)


def test_optuna_same_seed_proposes_same_first_three():
    spec = make_spec("o", {"algorithm": "optuna", "num_samples": 3, "seed": 7, "space": {
        "optim.lr": {"loguniform": [0.001, 0.5]}, "method.loss": {"choice": ["ce", "focal", "balanced_softmax"]}}})

    def first_three():
        alg = make_search_alg(spec)
        alg.set_search_properties("val_acc", "max", {})
        return [alg.suggest(f"t{i}") for i in range(3)]

    a, b = first_three(), first_three()
    assert a == b and len({str(x) for x in a}) == 3
    other = make_spec("o", {**spec.search.model_dump(by_alias=True, exclude_none=True), "seed": 8})
    alg = make_search_alg(other)
    alg.set_search_properties("val_acc", "max", {})
    assert [alg.suggest(f"t{i}") for i in range(3)] != a


def test_grace_period_defaults_after_behaviour_change():
    exp = {**EXPERIMENT, "method": {"name": "single", "loss": "ldam", "drw_epoch": 160},
           "optim": {**EXPERIMENT["optim"], "epochs": 200, "milestones": [170, 180]}}
    assert grace_period(make_spec("a", {"scheduler": "asha"}, exp)) == 171  # after the DRW switch and the first lr step
    exp["optim"]["milestones"] = []
    assert grace_period(make_spec("a", {"scheduler": "asha"}, exp)) == 161
    assert grace_period(make_spec("a", {"scheduler": "asha", "grace_period": 3}, exp)) == 3


def test_a_grace_period_before_a_switch_gets_a_note():
    """The tuned comparison's lesson: grace 4 with DRW / hard-aware from epoch 8 lets ASHA judge the
    phase's knobs before they act; the note names the epoch and the default that waits for it."""
    from ltsearch.tune.search import grace_note

    exp = {**EXPERIMENT, "method": {"name": "sdnhl", "hl_epoch": 8, "drw_epoch": 8},
           "optim": {**EXPERIMENT["optim"], "epochs": 11, "lr_schedule": "cosine", "milestones": []}}
    early = make_spec("a", {"scheduler": "asha", "grace_period": 4}, exp)
    assert grace_note(early) == (
        "note: search.grace_period 4 lets ASHA stop trials after 4 epochs, before the change at epoch 8 (counted "
        "from 0: a method's switch -- DRW, a hard-aware phase, a stage -- or the first lr milestone), so what acts "
        "from there is judged before it acts; unset, the grace period is 9")
    assert grace_period(make_spec("a", {"scheduler": "asha"}, exp)) == 9
    assert grace_note(make_spec("a", {"scheduler": "asha", "grace_period": 9}, exp)) is None  # sees epoch 8
    assert grace_note(make_spec("a", {"scheduler": "asha"}, exp)) is None  # the default waits for it
    assert grace_note(make_spec("a", {"grace_period": 4}, exp)) is None  # no ASHA, no rung
    plain = {**exp, "method": {"name": "single", "loss": "ce"}}
    assert grace_note(make_spec("a", {"scheduler": "asha", "grace_period": 4}, plain)) is None  # nothing switches


@pytest.mark.slow
def test_asha_stops_bad_trials_nan_fails_and_reused_actors_reset(tmp_path):
    spec = make_spec("asha", {
        "space": {"optim.lr": {"grid": [0.1, 1.0e-7, 1.0e30]}}, "seeds": [0, 1, 2],
        "scheduler": "asha", "grace_period": 1, "reduction_factor": 2, "max_concurrent": 1})
    run_sweep(spec, storage=str(tmp_path))
    trials = pd.read_parquet(tmp_path / "asha" / "trials")
    assert len(trials) == 9 and trials["trial_id"].is_unique
    by_lr = {lr: set(g["status"]) for lr, g in trials.groupby("optim.lr")}
    assert "ok" in by_lr[0.1]  # the first configuration always finishes (it sets the rungs' bar)
    assert by_lr[1.0e-7] == {"stopped"}  # hopeless trials stopped early, with their last metrics
    stopped = trials[trials["status"] == "stopped"]
    assert (stopped["epochs_done"] < 4).all() and stopped["val_acc"].notna().all()
    nan = trials[trials["optim.lr"] == 1.0e30]
    assert set(nan["status"]) == {"failed"} and nan["error"].str.contains("NonFiniteLoss").all()
    # a reused actor resets everything: the sixth trial (after five others in the same actor, one at a
    # time) trains exactly as it does alone in a fresh process
    exp = resolve_experiment(spec.experiment, {"optim.lr": 1.0e-7, "seed": 2})
    alone = execute(exp, TrialContext("x", str(tmp_path / "alone")), write=False)
    epochs = pd.read_parquet(tmp_path / "asha" / "epochs")
    mine = epochs[epochs["trial_id"] == trial_id_for(exp)].sort_values("epoch")
    assert len(mine) >= 1
    for _, r in mine.iterrows():
        rec = alone.epochs[int(r["epoch"]) - 1]
        assert r["train_loss"] == pytest.approx(rec.train_loss) and r["val_acc"] == pytest.approx(rec.val["val_acc"])


@pytest.mark.slow
def test_ddp_two_workers_matches_single_process(tmp_path):
    exp = {"data": {"dataset": "synthetic", "imbalance": 10, "splits": {"many": 30, "few": 10}},
           "model": {"arch": "mlp", "options": {"hidden": 32}}, "method": {"name": "single", "loss": "ce"},
           "optim": {"lr": 0.05, "epochs": 2, "batch_size": 32, "warmup": 0, "milestones": []}, "device": "cpu"}
    spec = make_spec("ddp", {}, exp, {"workers": 2, "cpus_per_worker": 1})
    run_sweep(spec, storage=str(tmp_path))
    ddp_trials = pd.read_parquet(tmp_path / "ddp" / "trials")
    ddp_epochs = pd.read_parquet(tmp_path / "ddp" / "epochs")
    single = make_spec("single", {}, exp)
    out = execute(resolve_experiment(single.experiment, {"seed": 0}), TrialContext("single", str(tmp_path / "single")))
    single_trials = pd.read_parquet(tmp_path / "single" / "trials")
    assert ddp_trials.iloc[0]["status"] == "ok" and ddp_trials.iloc[0]["workers"] == 2
    assert list(ddp_trials.columns) == list(single_trials.columns)
    # same global batches (each rank takes every other index of one stream), no augmentation and no
    # BatchNorm in this model, gradients averaged by DDP: the first epoch's loss matches
    assert ddp_epochs.sort_values("epoch")["train_loss"].iloc[0] == pytest.approx(out.epochs[0].train_loss, rel=1e-4)


@pytest.mark.slow
def test_ddp_trains_a_rebalancing_two_stream_method(tmp_path):
    """BBN under DDP: each rank draws its share of both the instance and the reversed stream
    (the index split itself is checked in test_data.test_sampler_ranks_split_one_stream)."""
    exp = {"data": {"dataset": "synthetic", "imbalance": 10, "splits": {"many": 30, "few": 10}},
           "model": {"arch": "mlp", "options": {"hidden": 32}}, "method": {"name": "bbn"},
           "optim": {"lr": 0.05, "epochs": 2, "batch_size": 32, "warmup": 0, "milestones": []}, "device": "cpu"}
    run_sweep(make_spec("ddp_bbn", {}, exp, {"workers": 2, "cpus_per_worker": 1}), storage=str(tmp_path))
    trials = pd.read_parquet(tmp_path / "ddp_bbn" / "trials")
    epochs = pd.read_parquet(tmp_path / "ddp_bbn" / "epochs").sort_values("epoch")
    assert trials.iloc[0]["status"] == "ok" and trials.iloc[0]["workers"] == 2
    assert epochs["alpha"].tolist() == pytest.approx([1.0, 0.75])  # parabolic decay 1 − (e/E)², e = 0, 1


KILL_SEARCH = {
    "grid": {"space": {"optim.lr": {"grid": [0.1, 0.05, 0.02]}}, "seeds": [0, 1]},
    # Optuna: the searcher's state (the study) is part of Tune's experiment checkpoint; restored, it
    # finishes the planned number of trials instead of starting a new study
    "optuna": {"algorithm": "optuna", "num_samples": 6, "seed": 3,
               "space": {"optim.lr": {"loguniform": [0.01, 0.2]}}},
}


@pytest.mark.slow
@pytest.mark.parametrize("algorithm", ["grid", "optuna"])
def test_kill_9_then_resume_runs_every_trial_exactly_once(tmp_path, algorithm):
    epochs = 20  # long enough trials that the kill lands while some are unfinished (two run at a time)
    exp = {**EXPERIMENT, "optim": {**EXPERIMENT["optim"], "epochs": epochs}}
    spec_path = tmp_path / "k.yaml"
    spec_path.write_text(yaml.safe_dump({"name": "k", "experiment": exp, "resources": {"cpus_per_worker": 1},
                                         "search": KILL_SEARCH[algorithm]}))
    storage = tmp_path / "runs"
    cmd = [sys.executable, "-m", "ltsearch", "run", str(spec_path), "--storage", str(storage), "--no-report"]
    proc = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    trials_dir = storage / "k" / "trials"
    deadline = time.time() + 240
    while time.time() < deadline and len(list(trials_dir.glob("*.parquet"))) < 2:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and every Ray process it started
    proc.wait()
    done_before = len(list(trials_dir.glob("*.parquet")))
    assert 2 <= done_before < 6
    r = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, timeout=400)
    assert r.returncode == 0, r.stderr[-2000:]
    trials = pd.read_parquet(trials_dir)
    assert len(trials) == 6 and trials["trial_id"].is_unique and set(trials["status"]) == {"ok"}
    if algorithm == "grid":
        spec = Spec.model_validate(yaml.safe_load(spec_path.read_text()))
        planned = {trial_id_for(resolve_experiment(spec.experiment, c)) for c in plan_cells(spec.search, spec.experiment)}
        assert set(trials["trial_id"]) == planned
    epochs_per_trial = epochs
    epochs = pd.read_parquet(storage / "k" / "epochs")
    assert len(epochs) == 6 * epochs_per_trial and not epochs.duplicated(["trial_id", "epoch"]).any()


def test_loggers_are_ray_callbacks_and_missing_packages_are_user_errors(monkeypatch):
    import importlib.util

    from ray.tune.logger import CSVLoggerCallback, JsonLoggerCallback

    from ltsearch.errors import UserError
    from ltsearch.tune.loggers import build_loggers

    cbs = build_loggers(["csv", "json"], "p")
    assert isinstance(cbs[0], CSVLoggerCallback) and isinstance(cbs[1], JsonLoggerCallback)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(UserError, match="pip install mlflow"):
        build_loggers(["mlflow"], "p")
