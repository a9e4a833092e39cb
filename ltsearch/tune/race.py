"""Seed racing (``search.race``): seeds go only to the configurations that are still in the race.

Racing (Maron & Moore 1994, "Hoeffding races"; Birattari et al. 2002, "F-Race") spends repeated
evaluations only where they can still change the decision. ltsearch races over seeds: every
configuration of a grid or random search starts with ``min_seeds`` units (``ltsearch.space.race_units``:
the first ``max_seeds`` of ``search.seeds``, each with its subset when ``search.subset_seeds`` is
set). Then, round after round, with n_c units done, configuration c's interval of the mean of
``search.metric`` (validation only; test is never looked at) is the Student-t interval

    mean_c ± t_{(1 + confidence) / 2, n_c − 1} · s_c / √n_c           (scipy.stats.t, s_c: ddof = 1)

The best configuration is the one with the best mean (``search.mode``; ties: the first in plan
order). A configuration whose interval overlaps the best one's is *undecided*. While some are,
each undecided configuration and the best get their next unit (those below ``max_seeds``); the race
ends when none is undecided (the best is decided) or when every undecided one and the best have
``max_seeds``. A configuration with a failed unit leaves the race (it is never the best). Each
round decides on the intervals of every configuration, so one that an earlier round left behind
comes back if the best one's interval widens to meet it again (ltsearch's choice: no elimination
is final, so the race is a function of the results alone).

**Deterministic and resumable.** The race is replayed from the results at every decision
(``race_plan``): starting from ``min_seeds`` units each, a round's units are those its decision
adds; a round with a unit that has no row yet is the current round and its missing units are
what to run. So the trials the race runs are a function of the trials' results only (not of the
order in which parallel trials finish), and a race killed at any point continues where it stopped:
``--resume`` restores the searcher (Tune pickles ``RaceSearcher``: the units in flight) and the
Parquet rows give the results; a fresh re-run of the spec replays the race from the rows and runs
only the units it still needs (an interrupted trial continues from its checkpoint).

``RUN_DIR/race.json`` records the race after every round: per configuration its units, mean,
interval and state (``best``, ``out``: its interval no longer overlaps the best one's,
``undecided``, ``failed``), the trials run and the trials a full run of every seed would need.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from ray.tune.search import Searcher
from scipy import stats as sps

from ltsearch.results.store import ResultStore

RACE_FILE = "race.json"
Unit = tuple[int, int]  # (configuration index, unit index)


def interval(values: list[float], confidence: float) -> tuple[float, float, float]:
    """``(mean, low, high)``: the Student-t interval of the mean (infinite for fewer than 2 values)."""
    n = len(values)
    mean = sum(values) / n if n else math.nan
    if n < 2:
        return mean, -math.inf, math.inf
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(sps.t.ppf((1 + confidence) / 2, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


@dataclass
class RaceState:
    """One moment of a race: ``have[c]`` units of configuration c are in it; ``missing``: the units of
    the current round without a result (empty when the race is over); per configuration its
    ``(mean, low, high)`` and state at the last judgement (the one that opened the current round,
    or the final one; none before the first round is complete)."""

    have: list[int]
    missing: list[Unit] = field(default_factory=list)
    rounds: int = 0
    best: int | None = None
    stats: list[tuple[float, float, float]] = field(default_factory=list)
    states: list[str] = field(default_factory=list)

    @property
    def finished(self) -> bool:
        return not self.missing

    @property
    def trials(self) -> int:
        return sum(self.have)


def judge(have: list[int], values: dict[Unit, float | None], confidence: float, mode: str
          ) -> tuple[int | None, list[tuple[float, float, float]], list[str]]:
    """``(best, stats, states)`` of configurations with ``have[c]`` units each, all with results."""
    stats, states = [], []
    for c, n in enumerate(have):
        vals = [values[(c, u)] for u in range(n)]
        if any(v is None or not math.isfinite(v) for v in vals):
            stats.append((math.nan, math.nan, math.nan))
            states.append("failed")
        else:
            stats.append(interval([float(v) for v in vals], confidence))  # type: ignore[arg-type]
            states.append("")
    alive = [c for c in range(len(have)) if states[c] != "failed"]
    if not alive:
        return None, stats, states
    sign = 1.0 if mode == "max" else -1.0
    best = max(alive, key=lambda c: (sign * stats[c][0], -c))
    _, lo_b, hi_b = stats[best]
    for c in alive:
        _, lo, hi = stats[c]
        states[c] = "best" if c == best else ("undecided" if lo <= hi_b and lo_b <= hi else "out")
    return best, stats, states


def race_plan(n_configs: int, n_units: int, values: dict[Unit, float | None], min_units: int,
              confidence: float, mode: str = "max") -> RaceState:
    """Replay the race from ``values`` (``(configuration, unit) -> metric``; None: the unit failed;
    absent: no result yet) and return where it stands (see the module docstring)."""
    have = [min(min_units, n_units)] * n_configs
    rounds, best, stats, states = 0, None, [], []  # the judgement that opened the current round
    while True:
        missing = [(c, u) for u in range(max(have, default=0)) for c in range(n_configs)
                   if u < have[c] and (c, u) not in values]
        if missing:
            return RaceState(have, missing, rounds, best, stats, states)
        best, stats, states = judge(have, values, confidence, mode)
        undecided = [c for c, s in enumerate(states) if s == "undecided"]
        extend = [c for c in undecided + ([best] if best is not None else []) if have[c] < n_units]
        if not undecided or not extend:
            return RaceState(have, [], rounds, best, stats, states)
        for c in extend:
            have[c] += 1
        rounds += 1


def race_values(store: ResultStore, trial_ids: list[list[str]], metric: str) -> dict[Unit, float | None]:
    """The results of the race's units from the run's Parquet rows: ok → its ``metric``, failed or
    stopped → None; units without a row are absent."""
    df = store.read("trials")
    if df.empty:
        return {}
    rows = {tid: r for tid, r in zip(df["trial_id"], df.to_dict("records"))}
    out: dict[Unit, float | None] = {}
    for c, tids in enumerate(trial_ids):
        for u, tid in enumerate(tids):
            r = rows.get(tid)
            if r is None:
                continue
            v = r.get(metric)
            ok = r.get("status") == "ok" and v is not None and not (isinstance(v, float) and math.isnan(v))
            out[(c, u)] = float(v) if ok else None
    return out


def race_record(state: RaceState, configs: list[dict[str, Any]], units: list[dict[str, int]],
                metric: str, confidence: float) -> dict[str, Any]:
    """What ``RUN_DIR/race.json`` holds (see the module docstring)."""
    rows = []
    for c, params in enumerate(configs):
        mean, lo, hi = state.stats[c] if state.stats else (math.nan,) * 3
        rows.append({"params": params, "units": state.have[c], "state": state.states[c] if state.states else "",
                     "mean": None if math.isnan(mean) else mean,
                     "low": None if not math.isfinite(lo) else lo, "high": None if not math.isfinite(hi) else hi})
    return {"metric": metric, "confidence": confidence, "finished": state.finished, "rounds": state.rounds,
            "best": state.best, "trials": state.trials, "trials_every_seed": len(configs) * len(units),
            "units": units, "configurations": rows}


class RaceSearcher(Searcher):
    """The race as a Ray Tune ``Searcher``: it proposes grid cells (a configuration with one unit:
    ``{"params": {..., "seed": s[, "subset_seed": b]}}``) as the race needs them, waits for a round
    to finish (returns None) and ends the experiment (``FINISHED``) when the race is over.
    Picklable: Tune saves it with its experiment state; the results come from Parquet."""

    def __init__(self, run_dir: str, configs: list[dict[str, Any]], units: list[dict[str, int]],
                 trial_ids: list[list[str]], metric: str, mode: str, min_units: int, confidence: float):
        super().__init__(metric=metric, mode=mode)
        self.run_dir, self.configs, self.units, self.trial_ids = run_dir, configs, units, trial_ids
        self.min_units, self.confidence = min_units, confidence
        self.pending: dict[str, Unit] = {}  # Tune trial id -> unit in flight
        self.values: dict[Unit, float | None] | None = None  # read from Parquet on first use
        self.queue: list[Unit] = []
        self.state: RaceState | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "values": None, "queue": []}  # results come back from Parquet

    def save(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        import pickle

        with open(checkpoint_path, "rb") as f:
            self.__dict__.update(pickle.load(f))

    def _plan(self) -> RaceState:
        if self.values is None:
            self.values = race_values(ResultStore(self.run_dir), self.trial_ids, self.metric)
        state = race_plan(len(self.configs), len(self.units), self.values, self.min_units, self.confidence, self.mode)
        if self.state is None or (state.have, state.finished) != (self.state.have, self.state.finished):
            self._record(state)
        self.state = state
        return state

    def _record(self, state: RaceState) -> None:
        text = json.dumps(race_record(state, self.configs, self.units, self.metric, self.confidence), indent=1)
        try:
            ResultStore(self.run_dir).write_text(RACE_FILE, text + "\n")
        except OSError:  # a storage hiccup: the next round writes it again
            pass

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        if not self.queue:
            state = self._plan()
            in_flight = set(self.pending.values())
            self.queue = [u for u in state.missing if u not in in_flight]
            if not self.queue:
                return None if self.pending else self.FINISHED
        c, u = self.queue.pop(0)
        self.pending[trial_id] = (c, u)
        return {"params": {**self.configs[c], **self.units[u]}}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        unit = self.pending.pop(trial_id, None)
        if unit is None:
            return
        if self.values is None:
            self.values = race_values(ResultStore(self.run_dir), self.trial_ids, self.metric)
        value = (result or {}).get(self.metric)
        bad = error or (result or {}).get("failed") or value is None or not math.isfinite(float(value))
        self.values[unit] = None if bad else float(value)
        if not self.pending and not self.queue:
            self._plan()  # the round is complete: record it now


def race_searcher(spec: Any, run_dir: str) -> RaceSearcher:
    """The race of ``spec`` (a grid / random search with ``search.race``) in ``run_dir``."""
    from ltsearch.space import plan_configurations, race_units
    from ltsearch.trial import trial_for

    s = spec.search
    configs = plan_configurations(s, spec.experiment)
    units = race_units(s)
    tids = [[trial_for(spec, {**c, **u}).trial_id for u in units] for c in configs]
    return RaceSearcher(run_dir, configs, units, tids, s.metric, s.mode, s.race.min_seeds, s.race.confidence)
