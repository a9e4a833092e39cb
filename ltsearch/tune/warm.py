"""Warm starts: ``search.warm_start: [RUN_DIR, ...]`` gives Optuna the finished trials of earlier runs.

Each earlier run's ok Parquet rows are grouped by configuration (the values of the searched
parameters); the objective is the mean of ``search.metric`` over its seeds, as an Optuna trial of
this sweep reports it. The earlier run must have searched exactly the parameters of
``search.space`` (same dotted keys) on the same dataset and imbalance; otherwise a one-line
``UserError`` names the parameter. Configurations whose values lie outside this space's ranges or
choices (a narrowed follow-up) are left out and counted; a run none of whose configurations fits is
an error. Every warm-start trial carries the user attribute ``ltsearch_warm_start`` (its run and
configuration), so it is added to a study once and can be told apart in the dashboard.
"""

from __future__ import annotations

import json
import math
from typing import Any

import optuna
import pandas as pd

from ltsearch.errors import UserError
from ltsearch.results.schema import param_column, param_value
from ltsearch.spec import Dist, Spec

WARM_KEY = "ltsearch_warm_start"


def distribution(dist: Dist) -> optuna.distributions.BaseDistribution:
    """The Optuna distribution that ``OptunaDefineByRun`` suggests from for this parameter."""
    v = dist.values_for(dist.kind)
    if dist.kind in ("grid", "choice"):
        return optuna.distributions.CategoricalDistribution(list(v))
    if dist.kind == "int":
        return optuna.distributions.IntDistribution(int(v[0]), int(v[1]))
    return optuna.distributions.FloatDistribution(float(v[0]), float(v[1]), log=dist.kind == "loguniform")


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    return v.item() if hasattr(v, "item") else v


def _value_for(key: str, dist: optuna.distributions.BaseDistribution, stored: Any) -> tuple[bool, Any]:
    """``(fits, value)``: the Parquet value as this space's parameter value."""
    if isinstance(dist, optuna.distributions.CategoricalDistribution):
        for choice in dist.choices:  # a whole-section choice is stored as "name=bbn, adaptor=cosine"
            if param_value(choice) == stored or (isinstance(choice, float) and isinstance(stored, (int, float))
                                                 and float(stored) == choice):
                return True, choice
        return False, stored
    x = float(stored)
    if isinstance(dist, optuna.distributions.IntDistribution):
        return (x.is_integer() and dist.low <= x <= dist.high), int(x)
    return dist.low <= x <= dist.high, x


def _read(run_dir: str) -> pd.DataFrame:
    from ltsearch.results.store import ResultStore

    try:
        trials = ResultStore(run_dir).read("trials")
    except OSError as err:
        raise UserError(f"search.warm_start: cannot read {run_dir}/trials ({err})") from None
    if trials.empty:
        raise UserError(f"search.warm_start: {run_dir} has no trials (is it a run directory <storage>/<name>?)")
    return trials


def warm_trials(spec: Spec) -> tuple[list[optuna.trial.FrozenTrial], list[str]]:
    """The earlier runs' configurations as COMPLETE Optuna trials, and notes (left-out counts)."""
    s = spec.search
    dists = {key: distribution(d) for key, d in s.space.items()}
    columns = {param_column(key): key for key in s.space}
    data = spec.experiment.data
    out: list[optuna.trial.FrozenTrial] = []
    notes: list[str] = []
    for run_dir in s.warm_start:
        trials = _read(run_dir)
        searched = {c for c in trials.columns if "." in c}
        missing = sorted(set(columns) - searched)
        if missing:
            raise UserError(f"search.warm_start: {run_dir} did not search {columns[missing[0]]!r} "
                            f"(it searched: {', '.join(sorted(searched)) or 'nothing'}); warm starts need the same search.space keys")
        extra = sorted(searched - set(columns))
        if extra:
            raise UserError(f"search.warm_start: {run_dir} also searched {extra[0]!r}, which search.space does not; "
                            "warm starts need the same search.space keys")
        for col, mine in (("dataset", data.dataset), ("imbalance", data.imbalance)):
            theirs = set(trials[col].dropna().unique()) if col in trials else set()
            if theirs and theirs != {mine}:
                raise UserError(f"search.warm_start: {run_dir} trained experiment.data.{col} {sorted(theirs)}, "
                                f"this spec {mine!r}; its objective is not comparable")
        ok = trials[trials["status"] == "ok"]
        if s.metric not in ok or ok[s.metric].isna().all():
            raise UserError(f"search.warm_start: {run_dir} has no ok trial with {s.metric!r}")
        groups: dict[str, tuple[dict[str, Any], list[float]]] = {}
        left_out: dict[str, set] = {}  # parameter -> configurations left out
        for _, row in ok.iterrows():
            metric = _plain(row[s.metric])
            if metric is None:
                continue
            params, fits = {}, True
            for col, key in columns.items():
                stored = _plain(row[col])
                if stored is None:
                    continue  # a conditional parameter that was not active
                good, value = _value_for(key, dists[key], stored)
                if not good:
                    left_out.setdefault(key, set()).add(tuple(str(_plain(row[c])) for c in columns))
                    fits = False
                    break
                params[key] = value
            if fits:
                ident = json.dumps({k: param_value(v) for k, v in sorted(params.items())}, default=str)
                groups.setdefault(ident, (params, []))[1].append(float(metric))
        if not groups:
            key = next(iter(left_out), next(iter(s.space), "?"))
            raise UserError(f"search.warm_start: no ok configuration of {run_dir} lies inside search.space.{key}")
        for ident, (params, vals) in groups.items():
            out.append(optuna.trial.create_trial(
                params=params, distributions={k: dists[k] for k in params}, value=sum(vals) / len(vals),
                user_attrs={WARM_KEY: f"{run_dir}#{ident}", "seeds": len(vals)}))
        note = f"warm start: {len(groups)} configuration(s) from {run_dir}"
        if left_out:
            note += " (left out, outside search.space: " + ", ".join(f"{len(n)} at {k}" for k, n in left_out.items()) + ")"
        notes.append(note)
    return out, notes
