"""Seed racing (search.race): the race's decisions computed by hand, its replay from results, the
searcher's rounds without Ray running, spec validation; end to end through Ray (slow): a race runs
only the trials it needs, and one killed with -9 and run again ends with the same trials."""

from __future__ import annotations

import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from ltsearch.errors import UserError
from ltsearch.results.store import ResultStore
from ltsearch.spec import validate_spec_dict
from ltsearch.tune.race import RACE_FILE, RaceSearcher, interval, judge, race_plan

from conftest import tiny_experiment


def test_interval_by_hand():
    # t_{0.75, 1} = tan(pi/4) = 1: the 50 % interval of [80, 82] is mean ± sd/sqrt(2) = 81 ± 1
    assert interval([80.0, 82.0], 0.5) == pytest.approx((81.0, 80.0, 82.0))
    # t_{0.75, 2} = sqrt(2/3) (Student's CDF with 2 df is 1/2 + t / (2 sqrt(2 + t^2)))
    mean, lo, hi = interval([80.0, 82.0, 81.0], 0.5)
    assert mean == pytest.approx(81.0) and hi - mean == pytest.approx(math.sqrt(2 / 3) * 1.0 / math.sqrt(3))
    assert interval([5.0], 0.95) == (5.0, -math.inf, math.inf)


# A: 80, 82 -> [80, 82]; B: 70, 72 -> [70, 72], out; C: 79, 81 -> [79, 81], overlaps A: undecided
ROUND0 = {(0, 0): 80.0, (0, 1): 82.0, (1, 0): 70.0, (1, 1): 72.0, (2, 0): 79.0, (2, 1): 81.0}


def test_race_decisions_by_hand():
    best, _, states = judge([2, 2, 2], ROUND0, 0.5, "max")
    assert best == 0 and states == ["best", "out", "undecided"]
    state = race_plan(3, 4, ROUND0, min_units=2, confidence=0.5)
    # the undecided configuration and the best get a third seed, B none
    assert state.have == [3, 2, 3] and state.missing == [(0, 2), (2, 2)] and state.rounds == 1
    # A: 80, 82, 81 -> 81 ± sqrt(2/3)/sqrt(3) = [80.53, 81.47]; C: 79, 81, 78 -> 79.33 ± 0.72 = [78.61, 80.05]
    done = race_plan(3, 4, {**ROUND0, (0, 2): 81.0, (2, 2): 78.0}, min_units=2, confidence=0.5)
    assert done.finished and done.best == 0 and done.states == ["best", "out", "out"]
    assert done.trials == 8  # of 3 x 4 for every seed
    lo_a, hi_c = done.stats[0][1], done.stats[2][2]
    assert hi_c == pytest.approx(79 + 1 / 3 + math.sqrt(2 / 3) * math.sqrt(7 / 3) / math.sqrt(3)) and hi_c < lo_a


def test_race_stops_at_max_seeds_and_minimises():
    close = {(0, 0): 1.0, (0, 1): 2.0, (1, 0): 1.5, (1, 1): 2.5}
    state = race_plan(2, 2, close, min_units=2, confidence=0.95)
    assert state.finished and state.have == [2, 2] and state.states == ["undecided", "best"]
    low = race_plan(2, 2, close, min_units=2, confidence=0.95, mode="min")
    assert low.best == 0
    high = race_plan(2, 2, close, min_units=2, confidence=0.95, mode="max")
    assert high.best == 1


def test_a_failed_unit_leaves_the_race():
    values = {**ROUND0, (0, 1): None}
    state = race_plan(3, 4, values, min_units=2, confidence=0.5)
    # A failed: C is the best, B out: nothing undecided, the race is over
    assert state.finished and state.best == 2 and state.states == ["failed", "out", "best"]


def test_the_replay_ignores_arrival_order_and_extra_results():
    partial = race_plan(3, 4, {**ROUND0, (2, 2): 78.0}, min_units=2, confidence=0.5)
    assert partial.missing == [(0, 2)]  # the round waits for A's third seed, whatever finished first
    extra = race_plan(3, 4, {**ROUND0, (1, 2): 71.0, (1, 3): 73.0}, min_units=2, confidence=0.5)
    assert extra.have == [3, 2, 3]  # B's extra rows (an earlier, longer race) change nothing


def test_the_searcher_runs_rounds_and_records_them(tmp_path):
    configs = [{"optim.lr": 0.1}, {"optim.lr": 0.01}, {"optim.lr": 0.05}]
    units = [{"seed": s} for s in range(4)]
    tids = [[f"t{c}{u}" for u in range(4)] for c in range(3)]
    r = RaceSearcher(str(tmp_path), configs, units, tids, "val_acc", "max", min_units=2, confidence=0.5)
    first = {f"tune{i}": r.suggest(f"tune{i}") for i in range(7)}
    assert list(first.values())[:6] == [{"params": {**configs[c], "seed": u}} for u in range(2) for c in range(3)]
    assert first["tune6"] is None  # the round is in flight: wait
    for i, (c, u) in enumerate([(0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]):
        r.on_trial_complete(f"tune{i}", {"val_acc": ROUND0[(c, u)]})
    record = json.loads((tmp_path / RACE_FILE).read_text())
    assert record["trials"] == 8 and not record["finished"]
    assert [c["state"] for c in record["configurations"]] == ["best", "out", "undecided"]
    again = pickle.loads(pickle.dumps(r))  # Tune's experiment state: the units in flight survive
    assert again.values is None and again.pending == {}
    nxt = [r.suggest("tune7"), r.suggest("tune8"), r.suggest("tune9")]
    assert nxt == [{"params": {**configs[0], "seed": 2}}, {"params": {**configs[2], "seed": 2}}, None]
    r.on_trial_complete("tune7", {"val_acc": 81.0})
    r.on_trial_complete("tune8", {"val_acc": 78.0})
    assert r.suggest("tune10") == RaceSearcher.FINISHED
    record = json.loads((tmp_path / RACE_FILE).read_text())
    assert record["finished"] and record["best"] == 0 and record["trials"] == 8 and record["trials_every_seed"] == 12


def test_a_restored_searcher_reads_results_from_parquet(tmp_path):
    """A fresh searcher (a re-run after kill -9) replays the race from the rows and proposes only
    what the race still needs."""
    store = ResultStore(tmp_path)
    tids = [[f"t{c}{u}" for u in range(4)] for c in range(3)]
    for (c, u), v in ROUND0.items():
        store.write_trial(tids[c][u], {"status": "ok", "val_acc": v}, {})
    r = RaceSearcher(str(tmp_path), [{"a": 1}, {"a": 2}, {"a": 3}], [{"seed": s} for s in range(4)], tids,
                     "val_acc", "max", min_units=2, confidence=0.5)
    assert [r.suggest("x"), r.suggest("y"), r.suggest("z")] == [{"params": {"a": 1, "seed": 2}},
                                                               {"params": {"a": 3, "seed": 2}}, None]


def _spec(search: dict) -> dict:
    return {"name": "race", "experiment": tiny_experiment(), "search": search}


def test_race_spec_validation():
    spec = validate_spec_dict(_spec({"space": {"optim.lr": {"grid": [0.1, 0.01]}}, "race": {"max_seeds": 3}}))
    assert spec.search.seeds == [0, 1, 2] and spec.search.race.min_seeds == 2
    for search, words in [
        ({"algorithm": "optuna", "race": {}}, "search.race"),
        ({"seeds": [0, 1], "race": {"max_seeds": 3}}, "give at least 3 seeds"),
        ({"race": {"min_seeds": 1}}, "search.race.min_seeds"),
        ({"race": {"min_seeds": 4, "max_seeds": 3}}, "max_seeds"),
        ({"scheduler": "asha", "race": {}}, "scheduler: none"),
    ]:
        with pytest.raises(UserError, match=words):
            validate_spec_dict(_spec(search))
    dumped = yaml.safe_load(__import__("ltsearch.spec", fromlist=["dump_spec"]).dump_spec(spec))
    assert validate_spec_dict(dumped).search.seeds == [0, 1, 2]  # the saved spec reads back


def test_race_plan_of_a_spec_and_subset_units(tmp_path):
    from ltsearch.space import race_units
    from ltsearch.tune.search import plan_sweep

    spec = validate_spec_dict(_spec({"space": {"optim.lr": {"grid": [0.1, 0.01]}}, "seeds": [5, 6, 7],
                                     "subset_seeds": [0, 1], "race": {"max_seeds": 3}}))
    assert race_units(spec.search) == [{"subset_seed": 0, "seed": 5}, {"subset_seed": 1, "seed": 6},
                                       {"subset_seed": 0, "seed": 7}]
    plan = plan_sweep(spec, str(tmp_path / "run"))
    assert plan.planned == 6 and len(plan.cells) == 4  # round 0: two units of each configuration
    assert {c["subset_seed"] for c in plan.cells} == {0, 1}
    assert len({t.trial_id for t in plan.trials}) == 6


# ----------------------------------------------------------------------------------- end to end

EXPERIMENT = {
    "data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
    "model": {"arch": "small_cnn", "options": {"width": 8}},
    "method": {"name": "single", "loss": "ce"},
    "optim": {"lr": 0.05, "epochs": 2, "batch_size": 64, "warmup": 0, "milestones": []},
    "device": "cpu",
}
RACE = {"algorithm": "grid", "space": {"optim.lr": {"grid": [0.3, 0.1, 0.003, 0.0003]}},
        "race": {"min_seeds": 2, "max_seeds": 4, "confidence": 0.9}}


def _write(tmp_path: Path, name: str) -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(yaml.safe_dump({"name": name, "experiment": EXPERIMENT, "search": RACE,
                                 "resources": {"cpus_per_worker": 1}}))
    return p


def _ltsearch(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ltsearch", *args], capture_output=True, text=True, timeout=900)


def _trial_ids(run_dir: Path) -> set[str]:
    return {p.stem for p in (run_dir / "trials").glob("*.parquet") if not p.name.startswith(".")}


@pytest.mark.slow
def test_a_race_runs_what_it_needs_and_a_killed_one_ends_the_same(tmp_path):
    spec = _write(tmp_path, "race")
    done = _ltsearch("run", str(spec), "--storage", str(tmp_path / "a"), "--no-report")
    assert done.returncode == 0, done.stderr[-3000:]
    assert "race over" in done.stderr
    run = tmp_path / "a" / "race"
    record = json.loads((run / RACE_FILE).read_text())
    ids = _trial_ids(run)
    assert record["finished"] and len(ids) == record["trials"] == sum(c["units"] for c in record["configurations"])
    assert record["trials"] < record["trials_every_seed"]  # lr 0.0003 is far behind after two seeds
    again = _ltsearch("run", str(spec), "--storage", str(tmp_path / "a"), "--no-report")
    assert again.returncode == 0 and _trial_ids(run) == ids  # nothing more to run

    proc = subprocess.Popen([sys.executable, "-m", "ltsearch", "run", str(spec), "--storage", str(tmp_path / "b"),
                             "--no-report"], start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    other = tmp_path / "b" / "race"
    deadline = time.time() + 600
    while len(_trial_ids(other)) < 3 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    rerun = _ltsearch("run", str(spec), "--storage", str(tmp_path / "b"), "--no-report")
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert _trial_ids(other) == ids  # the same race: deterministic trials, replayed from the rows
    assert json.loads((other / RACE_FILE).read_text())["best"] == record["best"]
