"""What the parameter figures show, kept apart by what else changed: pure pandas / scipy.

- ``split_by(trials, param)``: the other searched *categorical* parameters that vary among the ok
  trials setting ``param`` (the loss, the method, a sampler...). A numeric parameter's curve pooled
  over them would average different methods; ``param_curves`` gives one curve per combination.
- ``log_axis(values, dist)``: the axis rule of every parameter figure. A parameter is drawn on a
  log axis when the run's ``spec.yaml`` draws it ``loguniform`` (``search_space``); linear when it
  draws it ``uniform`` or ``int``; otherwise (a grid or choice of numbers, or no spec.yaml, e.g. a
  run written by an older ltsearch) inferred from the values: all positive and spanning more than
  one decade (max / min > 10).
- ``contour(trials, a, b)``: mean ``val_acc`` over two numeric parameters, interpolated linearly
  (``scipy.interpolate.griddata``; in log10 space for a parameter on a log axis, as the axis is
  drawn) on a regular grid inside the trials' convex hull (NaN outside), one panel per combination
  of the categorical parameters — what ``optuna.visualization.plot_contour`` shows, computed here.
- ``shared_curves(runs, param, metric)``: the curves of several runs (``compare``), split like
  ``param_curves`` and binned with the *same* edges in every run, so one value is one row.
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np
import pandas as pd

from ltsearch.report import summary as S

MAX_GROUPS = 6


def _ok(trials: pd.DataFrame, *params: str) -> pd.DataFrame:
    return trials[(trials["status"] == "ok")].dropna(subset=list(params))


def split_by(trials: pd.DataFrame, param: str) -> list[str]:
    """Searched categorical parameters (other than ``param``) with more than one value where ``param`` is set."""
    ok = _ok(trials, param)
    return [p for p in S.categorical_params(trials) if p != param and ok[p].map(S.fmt_value).nunique() > 1]


def _groups(ok: pd.DataFrame, by: list[str]) -> list[tuple[str, pd.DataFrame]]:
    if not by:
        return [("", ok)]
    names = S.short_names(by)
    keyed = ok.assign(_g=[", ".join(f"{names[p]}={S.fmt_value(v)}" for p, v in zip(by, row))
                          for row in ok[by].itertuples(index=False, name=None)])
    return [(str(k), g.drop(columns="_g")) for k, g in keyed.groupby("_g", sort=True)]


def param_curves(trials: pd.DataFrame, param: str, metric: str) -> pd.DataFrame:
    """``group, value, mean, std, n``: ``summary.param_curve`` within each combination of
    ``split_by`` (group '' when nothing else varies)."""
    parts = []
    for name, g in _groups(_ok(trials, param), split_by(trials, param)):
        d = S.param_curve(g, param, metric)
        if len(d):
            parts.append(d.assign(group=name))
    cols = ["group", "value", "mean", "std", "n"]
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def search_space(spec_text: str) -> dict[str, dict[str, Any]]:
    """``search.space`` of a run's ``spec.yaml`` text (``{}`` when absent or unreadable)."""
    import yaml

    try:
        space = ((yaml.safe_load(spec_text or "") or {}).get("search") or {}).get("space") or {}
    except (yaml.YAMLError, AttributeError):
        return {}
    return {k: v for k, v in space.items() if isinstance(v, dict)} if isinstance(space, dict) else {}


def log_axis(values: pd.Series, dist: dict[str, Any] | None = None) -> bool:
    """True: draw the parameter on a log axis. ``dist`` (its ``search.space`` entry) decides when it
    names a continuous distribution (``loguniform``: log; ``uniform`` / ``int``: linear); else the
    values do: all positive and spanning more than one decade (max / min > 10)."""
    kind = next((k for k in ("loguniform", "uniform", "int") if (dist or {}).get(k) is not None), None)
    if kind is not None:
        return kind == "loguniform"
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v)) and v.min() > 0 and math.log10(v.max() / v.min()) > 1 + 1e-9


def numeric_pairs(trials: pd.DataFrame, limit: int = 3) -> list[tuple[str, str]]:
    """Pairs of numeric searched parameters that ok trials set together (at most ``limit``)."""
    nums = [p for p in S.searched_params(trials) if p not in S.categorical_params(trials)]
    pairs = [(a, b) for a, b in itertools.combinations(nums, 2) if len(_ok(trials, a, b)[[a, b]].drop_duplicates()) >= 3]
    return pairs[:limit]


def contour(trials: pd.DataFrame, a: str, b: str, metric: str = "val_acc", size: int = 40,
            space: dict[str, dict[str, Any]] | None = None) -> list[dict]:
    """One panel per categorical combination with ≥ 3 distinct (a, b) points: ``group``, grid ``x``
    (values of a) and ``y`` (b), ``z[j][i]`` at (x[i], y[j]) (NaN outside the hull), the trials'
    mean ``points`` (a, b, metric, n), ``log_x`` / ``log_y`` (``log_axis`` with ``space``)."""
    from scipy.interpolate import griddata

    ok = _ok(trials, a, b, metric)
    space = space or {}
    log_x, log_y = log_axis(ok[a], space.get(a)), log_axis(ok[b], space.get(b))
    fx = (lambda v: np.log10(v)) if log_x else (lambda v: v)
    fy = (lambda v: np.log10(v)) if log_y else (lambda v: v)
    panels = []
    for name, g in _groups(ok, split_by(trials, a) + [p for p in split_by(trials, b) if p not in split_by(trials, a)]):
        pts = g.assign(_a=g[a].astype(float), _b=g[b].astype(float), _m=pd.to_numeric(g[metric], errors="coerce")) \
            .groupby(["_a", "_b"])["_m"].agg(["mean", "count"]).reset_index()
        px, py = fx(pts["_a"].to_numpy()), fy(pts["_b"].to_numpy())
        if len(pts) < 3 or np.ptp(px) == 0 or np.ptp(py) == 0:
            continue
        gx, gy = np.linspace(px.min(), px.max(), size), np.linspace(py.min(), py.max(), size)
        try:
            z = griddata(np.column_stack([px, py]), pts["mean"].to_numpy(), tuple(np.meshgrid(gx, gy)), method="linear")
        except Exception:  # noqa: BLE001 - collinear points (QhullError): nothing to draw for this panel
            continue
        panels.append({"group": name, "x": (10 ** gx if log_x else gx).tolist(), "y": (10 ** gy if log_y else gy).tolist(),
                       "z": [[None if math.isnan(v) else float(v) for v in row] for row in z],
                       "points": pts.rename(columns={"_a": a, "_b": b, "mean": metric, "count": "n"}),
                       "log_x": log_x, "log_y": log_y})
        if len(panels) == MAX_GROUPS:
            break
    return panels


def shared_edges(values: list[pd.Series], max_points: int = 12) -> np.ndarray | None:
    """Common bin edges for a numeric parameter over several runs' values: None (no binning) when
    they take at most ``max_points`` distinct values together; else ``max_points`` quantile bins of
    the pooled values (fewer where quantiles coincide), the first and last edge at the extremes."""
    pooled = pd.concat([pd.to_numeric(v, errors="coerce") for v in values]).dropna().astype(float)
    if pooled.nunique() <= max_points:
        return None
    return np.unique(np.quantile(pooled.to_numpy(), np.linspace(0, 1, max_points + 1)))


def _binned(values: pd.Series, edges: np.ndarray | None, pooled: pd.Series) -> pd.Series:
    """Each value's row key: itself, or (binned) its bin's centre over the pooled values of all runs
    (geometric mean where all are positive, else the mean), so one bin has one key in every run."""
    x = values.astype(float)
    if edges is None:
        return x
    cut = lambda v: pd.cut(v, edges, include_lowest=True, labels=False)  # noqa: E731
    p = pooled.astype(float)
    centre = (np.exp(np.log(p).groupby(cut(p)).mean()) if (p > 0).all() else p.groupby(cut(p)).mean())
    return cut(x).map(centre)


def shared_curves(runs: dict[str, pd.DataFrame], param: str, metric: str = "val_acc",
                  max_points: int = 12) -> pd.DataFrame:
    """``run, group, value, mean, std, n`` of ``metric`` over the ok trials of each run at each value
    of ``param``, sorted by group then value.

    A numeric parameter is split by the categorical parameters that vary where it is set (as in
    ``param_curves``, decided over the runs together: a run without such a column has group value
    '—') and binned with the same edges in every run (``shared_edges``); a categorical one is pooled
    (the report's bars are too) and keyed by its printed value."""
    cols = ["run", "group", "value", "mean", "std", "n"]
    oks = {name: _ok(t, param) for name, t in runs.items() if param in t and metric in t}
    oks = {k: v for k, v in oks.items() if len(v)}
    if not oks:
        return pd.DataFrame(columns=cols)
    numeric = all(S.is_numeric_param(v[param]) for v in oks.values())
    by: list[str] = []
    if numeric:
        both = pd.concat(list(oks.values()), ignore_index=True)
        by = [p for p in S.categorical_params(both) if p != param and both[p].map(S.fmt_value).nunique() > 1]
        edges = shared_edges([v[param] for v in oks.values()], max_points)
        pooled = both[param]
    parts = []
    for name, ok in oks.items():
        ok = ok.assign(**{p: None for p in by if p not in ok})
        key = _binned(ok[param], edges, pooled) if numeric else ok[param].map(S.fmt_value)
        vals = pd.to_numeric(ok[metric], errors="coerce")
        for group, g in _groups(ok.assign(_key=key, _m=vals), by):
            agg = g.groupby("_key", sort=True)["_m"]
            parts.append(pd.DataFrame({"run": name, "group": group, "mean": agg.mean(), "std": agg.std(ddof=1),
                                       "n": agg.count()}).rename_axis("value").reset_index())
    out = pd.concat(parts, ignore_index=True)[cols]
    return out.sort_values(["group", "value"], kind="stable", ignore_index=True)
