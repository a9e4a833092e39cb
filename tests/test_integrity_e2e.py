"""Run integrity end to end through Ray (slow): one trial id one result between `train` and `run`,
SIGINT / SIGTERM, a chaos run of kills and resumes, DDP + Optuna over every seed, and (with a real
PostgreSQL server on 127.0.0.1) passwords that never reach disk and two sweeps sharing one study."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from ltsearch.spec import validate_spec_dict
from ltsearch.trial import trial_for

pytestmark = pytest.mark.slow

EXPERIMENT = {
    "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
    "model": {"arch": "small_cnn", "options": {"width": 8}},
    "method": {"name": "single", "loss": "ce"},
    "optim": {"lr": 0.05, "epochs": 3, "batch_size": 64, "warmup": 0, "milestones": []},
    "device": "cpu",
}


def write(tmp_path: Path, name: str, search: dict, experiment: dict | None = None, resources: dict | None = None) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "experiment": experiment or EXPERIMENT, "search": search,
                                 "resources": resources or {"cpus_per_worker": 1}}))
    return p


def ltsearch(*args: str, timeout: float = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltsearch", *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


def start(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ltsearch", *args], start_new_session=True, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})})


def rows(run_dir: Path, dataset: str = "trials") -> pd.DataFrame:
    files = list((run_dir / dataset).glob("*.parquet"))
    return pd.concat([pd.read_parquet(f) for f in files], ignore_index=True) if files else pd.DataFrame()


def test_train_and_run_give_one_result_for_one_trial_id(tmp_path):
    """`ltsearch train` (no Ray, this process) and `ltsearch run` (a Ray worker) of the same
    configuration: the same trial id and exactly the same numbers (the loop sets the thread count)."""
    spec = write(tmp_path, "same", {"algorithm": "grid", "seeds": [0]}, resources={"cpus_per_worker": 2})
    a = ltsearch("train", str(spec), "--storage", str(tmp_path / "a"))
    b = ltsearch("run", str(spec), "--storage", str(tmp_path / "b"), "--no-report")
    assert a.returncode == 0 and b.returncode == 0, a.stderr[-2000:] + b.stderr[-2000:]
    ta, tb = rows(tmp_path / "a" / "same"), rows(tmp_path / "b" / "same")
    assert len(ta) == len(tb) == 1 and ta.iloc[0]["trial_id"] == tb.iloc[0]["trial_id"]
    assert json.loads(ta.iloc[0]["config_json"])["threads"] == 2
    for col in ("val_acc", "test_acc", "test_many", "test_medium", "test_few"):
        assert ta.iloc[0][col] == tb.iloc[0][col], col
    ea, eb = rows(tmp_path / "a" / "same", "epochs"), rows(tmp_path / "b" / "same", "epochs")
    assert ea.sort_values("epoch")["train_loss"].tolist() == eb.sort_values("epoch")["train_loss"].tolist()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_sweep_cleanly_and_resume_finishes_it(tmp_path, sig):
    """SIGINT (to the process group, as Ctrl-C does) or SIGTERM (to the driver): exit 130 / 143 with an
    'interrupted: N of M' line and the resume command; `status` then says interrupted, not running;
    `--resume` finishes every planned trial exactly once with complete epoch rows."""
    experiment = {**EXPERIMENT, "optim": {**EXPERIMENT["optim"], "epochs": 6}}
    spec = write(tmp_path, "sig", {"algorithm": "grid", "space": {"optim.lr": {"grid": [0.1, 0.05, 0.02, 0.01]}},
                                   "max_concurrent": 1}, experiment)
    storage = tmp_path / "runs"
    proc = start("run", str(spec), "--storage", str(storage), "--no-report")
    deadline = time.time() + 300
    while time.time() < deadline and not list((storage / "sig" / "trials").glob("*.parquet")):
        time.sleep(0.1)
    if sig == signal.SIGINT:
        os.killpg(proc.pid, sig)
    else:
        os.kill(proc.pid, sig)
    out, _ = proc.communicate(timeout=240)
    assert proc.returncode == (130 if sig == signal.SIGINT else 143), out[-3000:]
    line = next(ln for ln in out.splitlines() if ln.startswith("interrupted:"))
    assert " of 4 trials finished; resume with `ltsearch run " in line and "--resume`" in line and "Traceback" not in out
    state = json.loads((storage / "sig" / "run.json").read_text())
    assert state["state"] == "interrupted" and state["signal"] == signal.Signals(sig).name
    st = ltsearch("status", str(storage / "sig"))
    assert st.returncode == 0 and "interrupted (no driver" in st.stdout and "ETA: about" not in st.stdout
    r = ltsearch("run", str(spec), "--storage", str(storage), "--no-report", "--resume")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    trials, epochs = rows(storage / "sig"), rows(storage / "sig", "epochs")
    assert len(trials) == 4 and trials["trial_id"].is_unique and set(trials["status"]) == {"ok"}
    assert len(epochs) == 4 * 6 and not epochs.duplicated(["trial_id", "epoch"]).any()
    assert json.loads((storage / "sig" / "run.json").read_text())["state"] == "finished"


def _study_agrees_with_parquet(run_dir: Path, spec_path: Path, name: str, storage: str | None = None) -> None:
    spec = validate_spec_dict(yaml.safe_load(spec_path.read_text()))
    study = optuna.load_study(study_name=name, storage=storage or f"sqlite:///{run_dir}/optuna.db")
    trials = rows(run_dir)
    assert trials["trial_id"].is_unique
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    complete = [t for t in study.trials if t.state == TrialState.COMPLETE]
    keys = [json.dumps(t.params, sort_keys=True) for t in complete]
    assert len(keys) == len(set(keys)) == spec.search.num_samples  # each configuration once, the budget exactly
    for t in complete:
        seeds = [trials.set_index("trial_id").loc[trial_for(spec, t.params, s).trial_id] for s in spec.search.seeds]
        assert all(r["status"] == "ok" for r in seeds)
        assert t.value == pytest.approx(sum(r["val_acc"] for r in seeds) / len(seeds))
    ok = trials[trials["status"] == "ok"]
    assert len(ok) == len(trials) == spec.search.num_samples * len(spec.search.seeds)


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_chaos_kills_at_ten_random_moments_end_in_one_clean_run(tmp_path, sig):
    """An Optuna sweep over two seeds, its driver stopped at 10 random moments (kill -9 of the whole
    process group, or Ctrl-C) and resumed after each: every planned trial ends exactly once, with
    complete epoch rows, and the study agrees with Parquet."""
    spec = write(tmp_path, "chaos", {"algorithm": "optuna", "num_samples": 4, "seeds": [0, 1], "seed": 5,
                                     "space": {"optim.lr": {"loguniform": [0.01, 0.2]},
                                               "method.loss": {"choice": ["ce", "focal"]}}})
    storage, run_dir = tmp_path / "runs", tmp_path / "runs" / "chaos"
    rng = random.Random(7 + int(sig))
    finished = False
    for _ in range(10):
        resume = (run_dir / "_tune" / "tuner.pkl").is_file()
        proc = start("run", str(spec), "--storage", str(storage), "--no-report", *(["--resume"] if resume else []))
        try:
            proc.wait(timeout=rng.uniform(2.0, 14.0))
            finished = proc.returncode == 0
            out = proc.stdout.read()
            assert proc.returncode == 0, out[-3000:]
            break
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, sig)
            out, _ = proc.communicate(timeout=240)
            if sig == signal.SIGINT:
                assert proc.returncode in (130, 0), out[-3000:]
                finished = proc.returncode == 0
                if finished:
                    break
    if not finished:
        r = ltsearch("run", str(spec), "--storage", str(storage), "--no-report",
                     *(["--resume"] if (run_dir / "_tune" / "tuner.pkl").is_file() else []))
        assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    _study_agrees_with_parquet(run_dir, spec, "chaos")
    epochs = rows(run_dir, "epochs")
    assert len(epochs) == 8 * EXPERIMENT["optim"]["epochs"] and not epochs.duplicated(["trial_id", "epoch"]).any()


def test_ddp_with_optuna_trains_every_seed(tmp_path):
    spec = write(tmp_path, "ddp", {"algorithm": "optuna", "num_samples": 1, "seeds": [0, 1],
                                   "space": {"optim.lr": {"loguniform": [0.02, 0.1]}}},
                 {**EXPERIMENT, "optim": {**EXPERIMENT["optim"], "epochs": 2}},
                 resources={"workers": 2, "cpus_per_worker": 1})
    r = ltsearch("run", str(spec), "--storage", str(tmp_path / "runs"), "--no-report")
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    trials = rows(tmp_path / "runs" / "ddp")
    assert sorted(trials["seed"]) == [0, 1] and set(trials["status"]) == {"ok"} and set(trials["workers"]) == {2}
    _study_agrees_with_parquet(tmp_path / "runs" / "ddp", spec, "ddp")


def concurrent_sweeps_never_repeat(tmp_path: Path, name: str, db: str) -> None:
    """The same spec run twice at once into two storages, one shared study in ``db``: a finite space
    of six configurations, three samples each; together they evaluate six distinct configurations."""
    spec = write(tmp_path, name, {"algorithm": "optuna", "num_samples": 3, "seeds": [0], "seed": 0,
                                  "optuna_storage": db,
                                  "space": {"method.loss": {"choice": ["ce", "focal", "balanced_softmax"]},
                                            "optim.lr": {"choice": [0.05, 0.1]}}},
                 {**EXPERIMENT, "optim": {**EXPERIMENT["optim"], "epochs": 2}})
    procs = [start("run", str(spec), "--storage", str(tmp_path / f"s{i}"), "--no-report") for i in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], "\n".join(o[-2000:] for o in outs)
    study = optuna.load_study(study_name=name, storage=db)
    stood = [json.dumps(t.params, sort_keys=True) for t in study.trials
             if t.params and "ltsearch_duplicate_of" not in t.user_attrs]
    assert len(stood) == 6 and len(set(stood)) == 6
    assert sum(len(rows(tmp_path / f"s{i}" / name)) for i in range(2)) == 6


def test_two_concurrent_sweeps_on_one_sqlite_study_never_repeat(tmp_path):
    concurrent_sweeps_never_repeat(tmp_path, "pair", f"sqlite:///{tmp_path / 'shared.db'}")


# ------------------------------------------------------------------------------------ PostgreSQL


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def postgres():
    """A PostgreSQL server started for the test on 127.0.0.1 (Debian's `postgresql`), a role `lt`
    with a password (host connections authenticate with scram-sha-256); its URL (psycopg 3)."""
    bins = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not bins:
        pytest.skip("PostgreSQL is not installed (apt-get install postgresql; .ci/run installs it)")
    bindir = bins[-1].parent
    as_user: list[str] = []
    if os.geteuid() == 0:  # the server refuses to run as root: run it as Debian's postgres user
        if shutil.which("runuser") is None or subprocess.run(["id", "postgres"], capture_output=True).returncode:
            pytest.skip("PostgreSQL must not run as root and there is no postgres user to run it as")
        as_user = ["runuser", "-u", "postgres", "--"]
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="ltsearch-pg-"))  # not under pytest's root-only tmp directory
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if as_user:
        shutil.chown(root, "postgres")
        shutil.chown(sock, "postgres")
    port = _free_port()
    run = lambda *cmd: subprocess.run([*as_user, *cmd], capture_output=True, text=True, timeout=120)  # noqa: E731
    r = run(str(bindir / "initdb"), "-D", str(data), "--auth-local=trust", "--auth-host=scram-sha-256", "-U", "postgres")
    assert r.returncode == 0, r.stderr
    r = run(str(bindir / "pg_ctl"), "-D", str(data), "-l", str(root / "log"), "-w", "start", "-o",
            f"-p {port} -k {sock} -c listen_addresses=127.0.0.1")
    assert r.returncode == 0, r.stderr + (root / "log").read_text()
    try:
        psql = [str(bindir / "psql"), "-h", str(sock), "-p", str(port), "-U", "postgres", "-v", "ON_ERROR_STOP=1"]
        r = run(*psql, "-c", "CREATE ROLE lt LOGIN PASSWORD 'Pg-s3cret-42'")
        assert r.returncode == 0, r.stderr
        r = run(*psql, "-c", "CREATE DATABASE lt OWNER lt")
        assert r.returncode == 0, r.stderr
        yield f"postgresql://lt:Pg-s3cret-42@127.0.0.1:{port}/lt"
    finally:
        run(str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop")
        shutil.rmtree(root, ignore_errors=True)


def _files_with(root: Path, secret: bytes) -> list[str]:
    found = []
    for p in root.rglob("*"):
        try:
            if p.is_file() and not p.is_symlink() and secret in p.read_bytes():
                found.append(str(p))
        except OSError:  # a socket, or a file another session removed meanwhile
            continue
    return found


def test_a_postgres_password_never_reaches_disk_logs_or_the_report(tmp_path, postgres):
    """A sweep whose study lives in PostgreSQL (the README's `postgresql://` URL, psycopg 3), run,
    interrupted-free, then resumed: no file of the run directory (spec.yaml, Tune's tuner.pkl and
    searcher state, Parquet, report.html) and nothing the commands print holds the password."""
    secret = b"Pg-s3cret-42"
    sessions_before = set(Path("/tmp/ray").glob("session_2*"))
    spec = write(tmp_path, "pg", {"algorithm": "optuna", "num_samples": 2, "seeds": [0], "optuna_storage": postgres,
                                  "space": {"optim.lr": {"loguniform": [0.02, 0.1]}}},
                 {**EXPERIMENT, "optim": {**EXPERIMENT["optim"], "epochs": 2}})
    r = ltsearch("run", str(spec), "--storage", str(tmp_path / "runs"))
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    again = ltsearch("run", str(spec), "--storage", str(tmp_path / "runs"), "--resume")
    assert again.returncode == 0, again.stdout[-2000:] + again.stderr[-2000:]
    status = ltsearch("status", str(tmp_path / "runs" / "pg"))
    for out in (r, again, status):
        assert secret.decode() not in out.stdout + out.stderr
    run_dir = tmp_path / "runs" / "pg"
    assert (run_dir / "report.html").is_file() and (run_dir / "_tune" / "tuner.pkl").is_file()
    assert _files_with(run_dir, secret) == []
    # the Ray sessions these commands started: logs of the driver, raylet and workers, Tune's driver artifacts
    sessions = set(Path("/tmp/ray").glob("session_2*")) - sessions_before
    assert sessions and [f for d in sessions for f in _files_with(d, secret)] == []
    assert "postgresql://lt:***@127.0.0.1" in (run_dir / "spec.yaml").read_text()
    study = optuna.load_study(study_name="pg", storage=postgres)
    assert len([t for t in study.trials if t.state == TrialState.COMPLETE]) == 2


def test_two_concurrent_sweeps_on_one_postgres_study_never_repeat(tmp_path, postgres):
    concurrent_sweeps_never_repeat(tmp_path, "pgpair", postgres)
