"""What the parameter figures show, kept apart by what else changed: pure pandas / scipy.

- ``split_by(trials, param)``: the other searched *categorical* parameters that vary among the ok
  trials setting ``param`` (the loss, the method, a sampler...). A numeric parameter's curve pooled
  over them would average different methods; ``param_curves`` gives one curve per combination.
- ``contour(trials, a, b)``: mean ``val_acc`` over two numeric parameters, interpolated linearly
  (``scipy.interpolate.griddata``; in log10 space for a parameter spanning ≥ 50×, as the axis is
  drawn) on a regular grid inside the trials' convex hull (NaN outside), one panel per combination
  of the categorical parameters — what ``optuna.visualization.plot_contour`` shows, computed here.
"""

from __future__ import annotations

import itertools
import math

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
    keyed = ok.assign(_g=[", ".join(f"{names[p]}={S.fmt_value(r[p])}" for p in by) for _, r in ok[by].iterrows()])
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


def log_scaled(values: pd.Series) -> bool:
    """The axis rule of the report: a positive parameter spanning at least 50× is drawn on a log axis."""
    v = pd.to_numeric(values, errors="coerce").dropna()
    return bool(len(v)) and v.min() > 0 and v.max() / v.min() >= 50


def numeric_pairs(trials: pd.DataFrame, limit: int = 3) -> list[tuple[str, str]]:
    """Pairs of numeric searched parameters that ok trials set together (at most ``limit``)."""
    nums = [p for p in S.searched_params(trials) if p not in S.categorical_params(trials)]
    pairs = [(a, b) for a, b in itertools.combinations(nums, 2) if len(_ok(trials, a, b)[[a, b]].drop_duplicates()) >= 3]
    return pairs[:limit]


def contour(trials: pd.DataFrame, a: str, b: str, metric: str = "val_acc", size: int = 40) -> list[dict]:
    """One panel per categorical combination with ≥ 3 distinct (a, b) points: ``group``, grid ``x``
    (values of a) and ``y`` (b), ``z[j][i]`` at (x[i], y[j]) (NaN outside the hull), the trials'
    mean ``points`` (a, b, metric, n), ``log_x`` / ``log_y``."""
    from scipy.interpolate import griddata

    ok = _ok(trials, a, b, metric)
    log_x, log_y = log_scaled(ok[a]), log_scaled(ok[b])
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
