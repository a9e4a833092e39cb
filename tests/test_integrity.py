"""Run integrity without Ray: one resolution per trial, a run directory that knows its spec, conditions
in any order, epoch records with one owner, studies that never repeat themselves, secrets that
stay secret, and error paths that write nothing (the Ray end-to-end cases are in test_integrity_e2e.py)."""

from __future__ import annotations

import json
import os
import time

import optuna
import pandas as pd
import pyarrow as pa
import pytest
import torch
import yaml
from optuna.trial import TrialState
from typer.testing import CliRunner

from conftest import tiny_experiment
from ltsearch.cli import app
from ltsearch.methods.two_stage import REPRESENTATION
from ltsearch.errors import UserError
from ltsearch.resolved import resolve_trial
from ltsearch.results import ResultStore, load
from ltsearch.results.run_dir import RunState, driver_state, spec_differences
from ltsearch.secrets import mask
from ltsearch.space import OptunaDefineByRun, plan_cells
from ltsearch.spec import ExperimentSpec, dump_spec, validate_spec_dict
from ltsearch.train.callbacks import Callback
from ltsearch.trial import TrialContext, execute, trial_for

runner = CliRunner()

TINY = {
    "name": "tiny",
    "experiment": tiny_experiment(),
    "search": {"algorithm": "grid", "space": {"method.loss": {"grid": ["ce", "focal"]}}},
    "resources": {"cpus_per_worker": 1},
}


def write_spec(tmp_path, spec=TINY, name="tiny.yaml"):
    p = tmp_path / name
    p.write_text(yaml.safe_dump(spec))
    return p


def snapshot(root):
    """Every file below ``root`` with its bytes (a refusal must change none)."""
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# ------------------------------------------------------------------------------------ resolve once


def test_a_trial_is_resolved_once_and_never_again(tmp_path, monkeypatch):
    """``resolve_trial`` resolves the defaults and asks the plan once; executing the trial (loop,
    method, rows) resolves nothing again. Writing a method default out is the same configuration."""
    import ltsearch.resolved as R
    import ltsearch.train.loop as L

    calls = {"defaults": 0, "plan": 0}
    real_defaults, real_plan = R.resolve_defaults, R.method_plan

    def defaults(*a, **k):
        calls["defaults"] += 1
        return real_defaults(*a, **k)

    def plan(*a, **k):
        calls["plan"] += 1
        return real_plan(*a, **k)

    for mod in (R, L):
        monkeypatch.setattr(mod, "resolve_defaults", defaults, raising=False)
    monkeypatch.setattr(R, "method_plan", plan)
    import ltsearch.methods as M

    monkeypatch.setattr(M, "method_plan", plan)
    exp = ExperimentSpec.model_validate(tiny_experiment())
    trial = resolve_trial(exp, {"method.loss": "focal"}, seed=1)
    assert calls == {"defaults": 1, "plan": 1}
    assert trial.exp.threads == 1 and trial.exp.model.arch == "mlp" and trial.exp.seed == 1
    assert trial.params == {"method.loss": "focal"}
    out = execute(trial, TrialContext("s", str(tmp_path)))
    assert out is not None and calls == {"defaults": 1, "plan": 1}
    row = load(tmp_path)[0].iloc[0]
    assert row["trial_id"] == trial.trial_id and row["config_key"] == trial.config_key
    assert json.loads(row["config_json"])["threads"] == 1
    spelled = ExperimentSpec.model_validate(tiny_experiment(**{"method.drw_beta": 0.9999}))  # single's default
    assert resolve_trial(spelled).trial_id == resolve_trial(exp).trial_id


def test_thread_count_is_part_of_the_identity_and_set_by_the_loop():
    """``threads: auto`` is ``resources.cpus_per_worker``; the count changes the trial id (it changes
    the numbers on CPU); the loop trains with it and puts the caller's count back."""
    exp = ExperimentSpec.model_validate(tiny_experiment())
    one, two = resolve_trial(exp, cpus=1), resolve_trial(exp, cpus=2)
    assert (one.exp.threads, two.exp.threads) == (1, 2) and one.trial_id != two.trial_id
    assert one.config_key != two.config_key
    assert resolve_trial(exp.model_copy(update={"threads": 2}), cpus=1).trial_id == two.trial_id
    assert resolve_trial(exp, cpus=1, workers=2).trial_id != one.trial_id  # DDP is another trial
    seen = []

    class Threads(Callback):
        def on_epoch_end(self, loop, record):
            seen.append(torch.get_num_threads())

    from ltsearch.train.loop import run_trial

    torch.set_num_threads(1)
    run_trial(two, callbacks=[Threads()])
    assert seen == [2, 2] and torch.get_num_threads() == 1


# ------------------------------------------------------------------------------------ conditions


def test_conditions_in_any_order_match_the_grid_cells():
    """``when:`` on a key written later in search.space: Optuna's define-by-run space suggests exactly
    the parameter sets the grid plans (enumerated with Optuna's brute-force sampler)."""
    spec = validate_spec_dict({**TINY, "search": {"algorithm": "grid", "space": {
        "method.gamma": {"grid": [1.0, 2.0], "when": {"method.loss": "focal"}},
        "method.loss": {"grid": ["ce", "focal"]},
    }}})
    grid = {json.dumps({k: v for k, v in c.items() if k != "seed"}, sort_keys=True)
            for c in plan_cells(spec.search, spec.experiment)}
    assert grid == {'{"method.loss": "ce"}', '{"method.gamma": 1.0, "method.loss": "focal"}',
                    '{"method.gamma": 2.0, "method.loss": "focal"}'}
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    space = OptunaDefineByRun(spec.search, spec.experiment)
    study = optuna.create_study(sampler=optuna.samplers.BruteForceSampler(seed=0))
    study.optimize(lambda t: (space(t), 0.0)[1], n_trials=20)
    suggested = {json.dumps(t.params, sort_keys=True) for t in study.trials if t.state == TrialState.COMPLETE}
    assert suggested == grid


def test_a_cycle_of_conditions_is_one_line_naming_the_keys(tmp_path):
    spec = {**TINY, "search": {"algorithm": "grid", "space": {
        "method.gamma": {"grid": [1.0], "when": {"optim.lr": 0.1}},
        "optim.lr": {"grid": [0.1], "when": {"method.gamma": 1.0}},
    }}}
    r = runner.invoke(app, ["run", str(write_spec(tmp_path, spec)), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "cycle" in r.output and "method.gamma" in r.output and "optim.lr" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------ run directory


def started_run(tmp_path, spec=TINY):
    """A run directory as ``ltsearch train`` leaves it (no Ray): spec.yaml, run.json, one trial."""
    p = write_spec(tmp_path, spec)
    r = runner.invoke(app, ["train", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    return p, tmp_path / "runs" / spec["name"]


def test_a_changed_spec_is_refused_and_nothing_is_written(tmp_path):
    p, run_dir = started_run(tmp_path)
    before = snapshot(run_dir)
    for extra in (["--set", "experiment.optim.lr=0.2"], ["--set", "experiment.optim.epochs=3", "--resume"]):
        r = runner.invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs"), *extra])
        assert r.exit_code == 2, r.output
        assert "holds a run of another spec" in r.output and "Traceback" not in r.output
        key = extra[1].split("=")[0]
        assert key in r.output and "--set name=" in r.output and "--storage" in r.output
        assert snapshot(run_dir) == before
    r = runner.invoke(app, ["train", str(p), "--storage", str(tmp_path / "runs"), "--set", "experiment.optim.lr=0.2"])
    assert r.exit_code == 2 and "experiment.optim.lr" in r.output and snapshot(run_dir) == before


def test_what_a_continued_run_may_change():
    """More grid values, seeds or samples are new configurations (allowed); the experiment outside the
    space, workers or the objective are not; --resume also keeps the search; a default written out
    and a searched key changed outside the space are no difference."""
    saved = validate_spec_dict(TINY)

    def spec(**changes):
        raw = json.loads(json.dumps(TINY))
        for key, value in changes.items():
            node = raw
            *head, last = key.split(".")
            for k in head:
                node = node.setdefault(k, {})
            node[last] = value
        return validate_spec_dict(raw)

    more = spec(**{"search.space": {"method.loss": {"grid": ["ce", "focal", "ldam"]}}, "search.seeds": [0, 1]})
    assert spec_differences(saved, more, resume=False) == []
    assert [k for k, *_ in spec_differences(saved, more, resume=True)] == ["search.seeds", "search.space.method.loss.grid"]
    assert spec_differences(saved, spec(**{"experiment.method.loss": "ldam"}), resume=False) == []  # searched
    assert spec_differences(saved, spec(**{"experiment.method.drw_beta": 0.9999}), resume=False) == []
    assert spec_differences(saved, spec(**{"search.loggers": ["csv"]}), resume=True) == []
    diffs = spec_differences(saved, spec(**{"experiment.optim.lr": 0.2, "resources.workers": 2,
                                            "search.metric": "val_few"}), resume=False)
    assert [k for k, *_ in diffs] == ["experiment.optim.lr", "resources.workers", "search.metric"]
    threads = spec_differences(saved, spec(**{"resources.cpus_per_worker": 2}), resume=False)
    assert [k for k, *_ in threads] == ["experiment.threads"]


def test_resume_of_a_run_that_is_not_there_writes_nothing(tmp_path):
    r = runner.invoke(app, ["run", str(write_spec(tmp_path)), "--storage", str(tmp_path / "runs"), "--resume"])
    assert r.exit_code == 2 and "--resume" in r.output and "holds no run" in r.output
    assert not (tmp_path / "runs").exists()


def test_a_run_directory_of_an_earlier_identity_is_not_continued(tmp_path):
    p, run_dir = started_run(tmp_path)
    (run_dir / "run.json").unlink()  # as an earlier ltsearch left it: trials, spec.yaml, no run.json
    before = snapshot(run_dir)
    r = runner.invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "earlier ltsearch" in r.output and snapshot(run_dir) == before


def test_driver_state_tells_running_from_interrupted(tmp_path):
    state = RunState(str(tmp_path / "r"))
    state.start("ltsearch run x.yaml")
    record = json.loads((tmp_path / "r" / "run.json").read_text())
    assert driver_state(record) == "running" and record["identity"] == 2
    assert driver_state({**record, "heartbeat_at": time.time() - 1000}) == "interrupted"  # no heartbeat
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    assert driver_state({**record, "pid": dead}) == "interrupted"  # its process is gone
    state.end("interrupted", "SIGINT")
    assert driver_state(json.loads((tmp_path / "r" / "run.json").read_text())) == "interrupted"


def test_status_of_a_run_without_a_live_driver_says_interrupted(tmp_path):
    """A driver that died (stale heartbeat) left one trial half-trained: status shows the run as
    interrupted with that trial interrupted, not running, and no ETA."""
    p, run_dir = started_run(tmp_path)
    ResultStore(run_dir).write_epochs("halfdone1234", [{"stage": "main", "epoch": 1, "train_loss": 1.0, "lr": 0.1,
                                                        "seconds": 0.5, "val_acc": 10.0}])
    record = json.loads((run_dir / "run.json").read_text())
    (run_dir / "run.json").write_text(json.dumps({**record, "state": "running", "heartbeat_at": time.time() - 3600}))
    r = runner.invoke(app, ["status", str(run_dir)])
    assert r.exit_code == 0, r.output
    assert "interrupted (no driver is running it" in r.output and "1 interrupted" in r.output
    assert "running" not in r.output.split("\n")[1] and "ETA: n/a" in r.output


# ------------------------------------------------------------------------------------ error paths


def test_unwritable_storage_is_one_line_and_writes_nothing(tmp_path):
    p = write_spec(tmp_path)
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    for storage in (str(blocker / "runs"), "/proc/ltsearch-runs"):
        for cmd in ("run", "train"):
            r = runner.invoke(app, [cmd, str(p), "--storage", storage])
            assert r.exit_code == 2, r.output
            assert r.output.startswith("error: --storage") and r.output.count("\n") == 1, r.output
    assert blocker.read_text() == "x" and sorted(x.name for x in tmp_path.iterdir()) == ["a_file", "tiny.yaml"]


def test_mlflow_file_store_is_refused_before_anything_is_written(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"file://{tmp_path}/mlruns")
    spec = {**TINY, "search": {**TINY["search"], "loggers": ["mlflow"]}}
    r = runner.invoke(app, ["run", str(write_spec(tmp_path, spec)), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "MLFLOW_TRACKING_URI" in r.output and "sqlite:///" in r.output
    assert "Traceback" not in r.output and not (tmp_path / "runs").exists() and not (tmp_path / "mlruns").exists()


# ------------------------------------------------------------------------------------ secrets


def test_passwords_are_masked_in_the_saved_spec_and_the_resume_hint():
    spec = validate_spec_dict({**TINY, "search": {"algorithm": "optuna", "space": {"optim.lr": {"loguniform": [0.01, 0.1]}},
                                                  "optuna_storage": "postgresql://lt:s3cr3t@127.0.0.1:5/db"}})
    text = dump_spec(spec)
    assert "s3cr3t" not in text and "postgresql://lt:***@127.0.0.1:5/db" in text
    assert mask("s3://AKIA:SECRET@bucket/x and sqlite:///a.db") == "s3://AKIA:***@bucket/x and sqlite:///a.db"


# ------------------------------------------------------------------------------------ epoch records


def test_a_stage_restored_from_the_cache_reaches_the_epochs_file_when_stage_2_fails(tmp_path, monkeypatch):
    """Two cRT trials share stage 1 through the cache; the second one's stage 2 diverges (NaN). Its
    rows still hold every epoch it reached: stage 1's, restored from the cache, and stage 2's."""
    monkeypatch.setenv("LTSEARCH_CACHE", str(tmp_path / "cache"))
    first = resolve_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {"name": "crt", "stage2_epochs": 2}})))
    assert execute(first, TrialContext("s", str(tmp_path / "run"))) is not None  # trains stage 1, caches it
    bad = resolve_trial(ExperimentSpec.model_validate(tiny_experiment(
        **{"method": {"name": "crt", "stage2_epochs": 2, "stage2_lr": 1e30}})))
    assert execute(bad, TrialContext("s", str(tmp_path / "run"))) is None
    trials, epochs, _ = load(tmp_path / "run")
    row = trials.set_index("trial_id").loc[bad.trial_id]
    assert row["status"] == "failed" and "NonFiniteLoss" in row["error"]
    mine = epochs[epochs["trial_id"] == bad.trial_id]
    stage1 = mine[mine["stage"] == REPRESENTATION]
    assert len(stage1) == 2 and (stage1["seconds"] == 0.0).all()  # replayed from the cache
    assert row["epochs_done"] == len(mine) == 2  # the stage-2 epoch that diverged has no record


def test_callback_state_key_defaults_to_the_class_name(tmp_path):
    """A stateful callback without ``state_key`` keeps its state across a resume (Lightning's rule);
    two stateful callbacks of one class are refused."""

    class Counter(Callback):
        priority = 10  # before the checkpoint

        def __init__(self):
            self.n = 0

        def on_epoch_end(self, loop, record):
            self.n += 1

        def state_dict(self):
            return {"n": self.n}

        def load_state_dict(self, state):
            self.n = state["n"]

    from ltsearch.train.loop import run_trial, start_trial

    exp = resolve_trial(ExperimentSpec.model_validate(tiny_experiment(**{"optim.epochs": 3})))
    saved = []
    from ltsearch.train.callbacks import Checkpoint

    run_trial(exp, callbacks=[Counter(), Checkpoint(1, 3, saved.append)])
    assert Counter().state_key == "Counter" and saved[0]["callbacks"]["Counter"] == {"n": 1}
    resumed = Counter()
    loop = start_trial(exp, resume=saved[1], callbacks=[resumed])
    assert resumed.n == 2
    loop.run()
    assert resumed.n == 3
    with pytest.raises(ValueError, match="share a state_key"):
        start_trial(exp, callbacks=[Counter(), Counter()])


# ------------------------------------------------------------------------------------ studies


OPTUNA = {
    "name": "study",
    "experiment": tiny_experiment(),
    "search": {"algorithm": "optuna", "space": {"method.loss": {"choice": ["ce", "focal", "ldam"]},
                                                "optim.lr": {"choice": [0.01, 0.1]}},
               "num_samples": 6, "seed": 0},
    "resources": {"cpus_per_worker": 1},
}


def searcher(spec, run_dir):
    from ltsearch.tune.search import make_search_alg

    alg = make_search_alg(spec, str(run_dir))
    alg.set_search_properties("val_acc", "max", {})
    return alg


def finish(alg, run_dir, spec, tune_id, config, value):
    """Rows of an ok configuration (both seeds), then Tune's completion."""
    store = ResultStore(run_dir)
    for seed in spec.search.seeds:
        tid = trial_for(spec, config, seed).trial_id
        store.write_trial(tid, {"status": "ok", "seed": seed, "val_acc": value}, {})
    alg.on_trial_complete(tune_id, {"val_acc": value, "epoch": 2})


def taken(run_dir, name="study"):
    """The parameter sets of the study's trials that stand (not marked as repeats)."""
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{run_dir}/optuna.db")
    return [json.dumps(t.params, sort_keys=True) for t in study.trials
            if t.params and "ltsearch_duplicate_of" not in t.user_attrs]


def test_a_continued_study_never_proposes_an_evaluated_configuration(tmp_path):
    """The same spec run again on a finished study: the sampler is not replayed from search.seed and
    no proposal repeats one of the six configurations, so the exhausted space ends the sweep."""
    spec = validate_spec_dict(OPTUNA)
    run = tmp_path / "study"
    run.mkdir()
    first = searcher(spec, run)
    configs = [first.suggest(f"a{i}") for i in range(6)]
    for i, c in enumerate(configs):
        finish(first, run, spec, f"a{i}", c, float(i))
    assert len({json.dumps(c, sort_keys=True) for c in configs}) == 6  # the whole space, once
    again = searcher(spec, run)
    assert again.suggest("b0") == "FINISHED" and again.exhausted
    assert sorted(taken(run)) == sorted(json.dumps(c, sort_keys=True) for c in configs)
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{run}/optuna.db")
    assert study.metric_names == ["val_acc"]


def test_two_sweeps_on_one_study_never_propose_the_same_configuration(tmp_path):
    """Two sessions start on one SQLite study at once (both see it empty, so both seed with
    search.seed) and ask in turn: no configuration is proposed twice, running or finished."""
    spec = validate_spec_dict({**OPTUNA, "search": {**OPTUNA["search"], "num_samples": 3}})
    run = tmp_path / "study"
    run.mkdir()
    a, b = searcher(spec, run), searcher(spec, run)
    got = []
    for i in range(3):
        got += [a.suggest(f"a{i}"), b.suggest(f"b{i}")]
    assert "FINISHED" not in got
    assert len({json.dumps(c, sort_keys=True) for c in got}) == 6
    assert len(taken(run)) == 6 and len(set(taken(run))) == 6


def test_a_session_that_is_gone_has_its_running_trials_settled(tmp_path):
    """A driver asked a trial and vanished (no heartbeat): the next session settles it from Parquet
    when its rows are complete, else fails it and asks its parameters again."""
    spec = validate_spec_dict(OPTUNA)
    run = tmp_path / "study"
    run.mkdir()
    gone = searcher(spec, run)
    done, killed = gone.suggest("g0"), gone.suggest("g1")
    store = ResultStore(run)
    for seed in spec.search.seeds:
        store.write_trial(trial_for(spec, done, seed).trial_id, {"status": "ok", "seed": seed, "val_acc": 5.0}, {})
    study = optuna.load_study(study_name="study", storage=f"sqlite:///{run}/optuna.db")
    study.set_user_attr(f"ltsearch_session:{gone._session}", {"state": "running", "heartbeat": time.time() - 3600})
    nxt = searcher(spec, run)
    states = {json.dumps(t.params, sort_keys=True): t.state for t in study.get_trials() if t.params}
    assert states[json.dumps(done, sort_keys=True)] == TrialState.COMPLETE
    assert nxt.suggest("n0") == killed  # asked again first (it continues from its checkpoint)
