"""Optuna studies in a database (RUN_DIR/optuna.db), their restore after a kill, and warm starts."""

from __future__ import annotations

import math
import pickle

import numpy as np
import optuna
import pandas as pd
import pyarrow as pa
import pytest
from optuna.trial import TrialState

from ltsearch.errors import UserError
from ltsearch.results import ResultStore
from ltsearch.spec import resolve_experiment, validate_spec_dict
from ltsearch.trial import trial_id_for
from ltsearch.tune.search import make_search_alg, run_sweep
from ltsearch.tune.study import optuna_preflight, storage_url
from ltsearch.tune.warm import WARM_KEY, warm_trials

EXPERIMENT = {
    "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
    "model": {"arch": "small_cnn", "options": {"width": 8}},
    "method": {"name": "single", "loss": "ce"},
    "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []},
    "device": "cpu",
}
SPACE = {"optim.lr": {"loguniform": [0.001, 1.0]}, "method.loss": {"choice": ["ce", "focal"]}}


def make_spec(name="s", **search):
    return validate_spec_dict({"name": name, "experiment": EXPERIMENT, "resources": {"cpus_per_worker": 1},
                               "search": {"algorithm": "optuna", "space": SPACE, "seeds": [0, 1], "num_samples": 10,
                                          **search}})


def write_rows(run_dir, spec, params, vals, status="ok"):
    """The Parquet rows a trial of ``params`` writes, one per seed (val_acc = vals[i])."""
    store = ResultStore(run_dir)
    types = {"optim.lr": pa.float64(), "method.loss": pa.string()}
    for seed, v in zip(spec.search.seeds, vals):
        exp = resolve_experiment(spec.experiment, {**params, "seed": seed})
        store.write_trial(trial_id_for(exp), {"sweep": spec.name, "status": status, "method": "single",
                                              "loss": params.get("method.loss", "ce"), "dataset": "digits",
                                              "imbalance": 20.0, "seed": seed, "val_acc": v, **params}, types)


def searcher(spec, run_dir):
    alg = make_search_alg(spec, str(run_dir))
    alg.set_search_properties("val_acc", "max", {})
    return alg


def study_of(run_dir, name="s"):
    return optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir}/optuna.db")


def test_study_in_sqlite_survives_a_kill_without_duplicates(tmp_path):
    """Tune's last checkpoint knows t1..t3; t4, t5, t6 were asked after it: t4 finished and was
    told, t5 wrote its rows but was not told, t6 was killed mid-training. Restored: t4 stays, t5 is
    settled COMPLETE from Parquet, both count towards num_samples; a trial killed while Optuna
    sampled it fails; t6 is marked FAIL and its
    parameters come back as the next trial (which continues its checkpoint); a trial re-run after
    it was told is not told twice; an errored trial re-run to ok gets one COMPLETE twin. In the end
    COMPLETE trials = configurations whose seeds are all ok, and the sweep ends at num_samples."""
    run = tmp_path / "s"
    run.mkdir()
    spec = make_spec(num_samples=7)
    alg = searcher(spec, run)
    assert storage_url(spec, str(run)) == f"sqlite:///{run}/optuna.db"
    cfg = {t: alg.suggest(t) for t in ("t1", "t2", "t3")}
    write_rows(run, spec, cfg["t1"], [80.0, 82.0])
    alg.on_trial_result("t1", {"val_acc": 70.0, "epoch": 1})
    alg.on_trial_complete("t1", {"val_acc": 81.0, "epoch": 2})
    checkpoint = pickle.dumps(alg)  # what Tune saves with its experiment state
    cfg.update({t: alg.suggest(t) for t in ("t4", "t5", "t6")})
    write_rows(run, spec, cfg["t4"], [60.0, 64.0])
    alg.on_trial_complete("t4", {"val_acc": 62.0, "epoch": 2})
    write_rows(run, spec, cfg["t5"], [30.0, 34.0])
    alg._ot_study.ask()  # the next trial: asked, killed before Optuna sampled its parameters
    del alg  # kill -9

    alg = pickle.loads(checkpoint)
    assert alg._ot_study is None  # nothing from the pickle but the link: the database holds the trials
    write_rows(run, spec, cfg["t2"], [90.0, 91.0])
    alg.on_trial_complete("t2", {"val_acc": 90.5, "epoch": 2})
    alg.on_trial_complete("t1", {"val_acc": 81.0, "epoch": 2})  # restored as running, finished again
    alg.on_trial_complete("t3", None, error=True)
    write_rows(run, spec, cfg["t3"], [50.0, 52.0])
    alg.on_trial_complete("t3", {"val_acc": 51.0, "epoch": 2})  # --resume re-ran the errored trial
    assert alg.suggest("t7") == cfg["t6"]  # the killed trial again
    write_rows(run, spec, cfg["t6"], [40.0, 40.0])
    alg.on_trial_complete("t7", {"val_acc": 40.0, "epoch": 2})
    new = alg.suggest("t8")  # Tune knows t1, t2, t3, t7, t8; t4 and t5 finished unknown to it: 7 in all
    assert new not in cfg.values()  # the reseeded sampler does not replay the proposals made after the checkpoint
    assert alg.suggest("t9") == "FINISHED"

    trials = study_of(run).get_trials()
    by_state = {s: [t for t in trials if t.state == s] for s in TrialState}
    assert len(trials) == 10 and [t.number for t in by_state[TrialState.RUNNING]] == [9]  # t8
    complete = {(t.params["method.loss"], t.params["optim.lr"]): t.value for t in by_state[TrialState.COMPLETE]}
    expected = {(cfg[t]["method.loss"], cfg[t]["optim.lr"]): v for t, v in
                (("t1", 81.0), ("t2", 90.5), ("t3", 51.0), ("t4", 62.0), ("t5", 32.0), ("t6", 40.0))}
    assert complete == pytest.approx(expected)
    # t6's killed attempt, the trial killed while sampled and t3's first, errored attempt
    assert len(by_state[TrialState.FAIL]) == 3 and sum(not t.params for t in by_state[TrialState.FAIL]) == 1
    assert study_of(run).trials[0].intermediate_values == {1: 70.0}


def test_initial_points_and_settled_trials_once_per_study(tmp_path):
    """Re-running the spec (no --resume) continues the study: the initial points are not enqueued
    again, and a trial that an earlier driver left RUNNING with all its rows ok is settled."""
    run = tmp_path / "s"
    run.mkdir()
    spec = make_spec(initial=[{"optim.lr": 0.1, "method.loss": "ce"}])
    alg = searcher(spec, run)
    first = alg.suggest("a")
    assert first == {"optim.lr": 0.1, "method.loss": "ce"}
    write_rows(run, spec, first, [70.0, 72.0])  # finished, but the driver died before telling
    alg2 = searcher(spec, run)
    trials = study_of(run).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] and trials[0].value == pytest.approx(71.0)
    assert alg2.suggest("b") != first  # not the initial point again


def test_storage_choices_and_errors(tmp_path):
    assert storage_url(make_spec(), "s3://bucket/runs/s") is None  # SQLite cannot live on S3
    assert storage_url(make_spec(optuna_storage="memory"), str(tmp_path)) is None
    assert storage_url(make_spec(optuna_storage="postgresql://u@h/db"), "s3://b/r") == "postgresql://u@h/db"
    notes = []
    optuna_preflight(make_spec(), "s3://bucket/runs/s", notes.append)
    assert len(notes) == 1 and "search.optuna_storage" in notes[0] and "s3://bucket/runs/s" in notes[0]
    with pytest.raises(UserError, match=r"^search.optuna_storage: cannot open postgresql://nobody:\*\*\*@127.0.0.1:9/x"):
        optuna_preflight(make_spec(optuna_storage="postgresql://nobody:secret@127.0.0.1:9/x"), str(tmp_path), print)
    with pytest.raises(UserError, match="search.optuna_storage.*not a SQLAlchemy URL"):
        make_spec(optuna_storage="localhost:5432")
    with pytest.raises(UserError, match="search.warm_start: .*only an Optuna search"):
        validate_spec_dict({"name": "g", "search": {"algorithm": "grid", "warm_start": ["runs/x"]}})


BEST_LR = 0.03


def objective(lr, loss):
    """The earlier runs' landscape: best at lr = 0.03 with focal loss."""
    return 90.0 - 15.0 * abs(math.log10(lr / BEST_LR)) + (3.0 if loss == "focal" else 0.0)


def make_earlier_run(run_dir, n=24, seed=0):
    spec = make_spec("early")
    rng = np.random.default_rng(seed)
    for _ in range(n):
        params = {"optim.lr": float(10 ** rng.uniform(-3, 0)), "method.loss": str(rng.choice(["ce", "focal"]))}
        v = objective(params["optim.lr"], params["method.loss"])
        write_rows(run_dir, spec, params, [v - 0.5, v + 0.5])
    return run_dir


def test_warm_start_reads_earlier_configurations(tmp_path):
    early = make_earlier_run(tmp_path / "early")
    trials, notes = warm_trials(make_spec(warm_start=[str(early)]))
    rows = pd.read_parquet(early / "trials")
    assert len(trials) == len(rows) // 2 == 24  # one trial per configuration, the mean over its 2 seeds
    for t in trials:
        assert t.state == TrialState.COMPLETE and t.value == pytest.approx(objective(t.params["optim.lr"], t.params["method.loss"]))
        assert t.user_attrs[WARM_KEY].startswith(str(early))
    assert notes == [f"warm start: 24 configuration(s) from {early}"]
    # a narrower range leaves configurations out and says how many
    narrow = make_spec(warm_start=[str(early)], space={**SPACE, "optim.lr": {"loguniform": [0.01, 1.0]}})
    kept, notes = warm_trials(narrow)
    outside = int((rows["optim.lr"] < 0.01).sum()) // 2
    assert len(kept) == 24 - outside and f"{outside} at optim.lr" in notes[0]


def test_warm_start_mismatched_space_is_one_line_naming_the_parameter(tmp_path):
    early = make_earlier_run(tmp_path / "early", n=3)
    other = dict(SPACE, **{"optim.momentum": {"uniform": [0.5, 0.99]}})
    with pytest.raises(UserError, match=r"did not search 'optim.momentum'") as err:
        warm_trials(make_spec(warm_start=[str(early)], space=other))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match=r"also searched 'method.loss'"):
        warm_trials(make_spec(warm_start=[str(early)], space={"optim.lr": SPACE["optim.lr"]}))
    with pytest.raises(UserError, match=r"no ok configuration .* inside search.space.optim.lr"):
        warm_trials(make_spec(warm_start=[str(early)], space={**SPACE, "optim.lr": {"loguniform": [2.0, 3.0]}}))
    with pytest.raises(UserError, match=r"has no trials"):
        warm_trials(make_spec(warm_start=[str(tmp_path / "nothing")]))
    with pytest.raises(UserError, match=r"experiment.data.imbalance"):
        spec = make_spec(warm_start=[str(early)])
        spec.experiment.data.imbalance = 50.0
        warm_trials(spec)


def test_warm_started_tpe_proposes_near_the_earlier_best(tmp_path):
    """Same sampler seed, cold vs warm: the warm TPE's first proposals lie closer to the earlier
    runs' best learning rate (in log10 units) and use its loss more often."""
    early = make_earlier_run(tmp_path / "early")
    cold_d, warm_d, cold_focal, warm_focal = [], [], 0, 0
    for seed in range(5):
        for warm, dist in ((False, cold_d), (True, warm_d)):
            spec = make_spec(f"w{seed}{warm}", seed=seed, warm_start=[str(early)] if warm else [])
            alg = make_search_alg(spec)  # in-memory study
            alg.set_search_properties("val_acc", "max", {})
            for i in range(5):
                p = alg.suggest(f"t{i}")
                dist.append(abs(math.log10(p["optim.lr"] / BEST_LR)))
                if p["method.loss"] == "focal":
                    warm_focal, cold_focal = (warm_focal + 1, cold_focal) if warm else (warm_focal, cold_focal + 1)
    assert np.mean(warm_d) < 0.5 * np.mean(cold_d)
    assert np.mean(warm_d) < 0.4  # within a factor 2.5 of the earlier best
    assert warm_focal > cold_focal


def _ok_configurations(run_dir):
    """Parquet: mean val_acc of each configuration whose seeds are all ok, keyed by its parameters."""
    rows = pd.read_parquet(run_dir / "trials")
    out = {}
    for key, g in rows.groupby(["method.loss", "optim.lr"]):
        if (g["status"] == "ok").all():
            out[key] = g["val_acc"].mean()
    return out, rows


@pytest.mark.slow
def test_real_sweep_study_matches_parquet_and_resume_adds_nothing(tmp_path):
    spec = make_spec("real", num_samples=3, initial=[{"method.loss": "focal", "optim.lr": 0.05}])
    result = run_sweep(spec, storage=str(tmp_path), num_cpus=2)
    run = tmp_path / "real"
    assert result.run_dir == str(run) and (run / "optuna.db").is_file()
    configs, rows = _ok_configurations(run)
    assert len(rows) == 6 and len(configs) == 3  # 3 configurations × 2 seeds

    def complete():
        study = optuna.load_study(study_name="real", storage=f"sqlite:///{run}/optuna.db")
        return {(t.params["method.loss"], t.params["optim.lr"]): t.value
                for t in study.get_trials(states=(TrialState.COMPLETE,))}, len(study.trials)

    done, n_trials = complete()
    assert n_trials == 3 and done == pytest.approx(configs)  # same parameters, same values (mean over seeds)
    assert ("focal", 0.05) in done  # the initial point ran first
    run_sweep(spec, storage=str(tmp_path), resume=True, num_cpus=2)  # a second --resume: nothing to add
    assert complete() == (done, n_trials)
    assert len(pd.read_parquet(run / "trials")) == 6


def test_cli_unreachable_storage_exits_2_and_writes_nothing(tmp_path):
    import yaml
    from typer.testing import CliRunner

    from ltsearch.cli import app

    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump({"name": "s", "experiment": EXPERIMENT, "search": {
        "algorithm": "optuna", "space": SPACE, "optuna_storage": "postgresql://u:pw@127.0.0.1:9/db"}}))
    r = CliRunner().invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "search.optuna_storage: cannot open" in r.output and "pw" not in r.output
    assert "Traceback" not in r.output and not (tmp_path / "runs").exists()
