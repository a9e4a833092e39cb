"""Head and tail as two objectives: the Pareto front of many- vs few-shot accuracy.

A configuration (its mean over the ok seeds) is **non-dominated** when no other configuration of
the run is at least as good on both validation many-shot and few-shot accuracy and better on one
(``val_many``, ``val_few``; maximised). The front is decided on validation, the way a
multi-objective search (``search.metric: [val_many, val_few]``) selects; the test accuracies of the
same configurations are drawn beside it, reported only. ``compare`` marks the front (a ``pareto``
column in csv, ◆ in markdown / html, a ⋄ in LaTeX); the report draws every configuration.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import pandas as pd

from ltsearch.report import summary as S

OBJECTIVES = ("val_many", "val_few")
MARK = " ◆"
NOTE = ("◆ non-dominated: no other configuration of the run has at least its mean validation many-shot and "
        "few-shot accuracy and more on one (the Pareto front of head vs tail, decided on validation).")


def non_dominated(points: Sequence[Sequence[float]], modes: Sequence[str] | None = None) -> list[bool]:
    """For each point, whether no other point dominates it (at least as good on every objective,
    better on one; ``modes``: max / min per objective, default max). A point with a NaN is never on
    the front and dominates nothing. Pairwise in numpy, a block of rows at a time (3,300
    configurations: 11 M pairs in well under a second, bounded memory)."""
    if not len(points):
        return []
    x = np.asarray(points, dtype=float)
    signs = np.array([1.0 if m == "max" else -1.0 for m in (modes or ["max"] * x.shape[1])])
    x = x * signs
    valid = ~np.isnan(x).any(axis=1)
    v = x[valid]
    out = np.zeros(len(x), dtype=bool)
    if x.shape[1] == 2 and len(v):  # two objectives: one sort and a running maximum, O(n log n)
        uniq, inverse = np.unique(v, axis=0, return_inverse=True)
        order = np.lexsort((-uniq[:, 1], -uniq[:, 0]))  # first objective descending, then the second
        best_before = np.concatenate([[-np.inf], np.maximum.accumulate(uniq[order, 1])[:-1]])
        front = np.empty(len(uniq), dtype=bool)
        front[order] = uniq[order, 1] > best_before  # an earlier distinct point at least as good on both dominates
        out[valid] = front[inverse.ravel()]
        return out.tolist()
    on = np.empty(len(v), dtype=bool)
    for lo in range(0, len(v), 512):  # dominated[i]: some q >= p everywhere and > somewhere
        p = v[lo:lo + 512, None, :]
        geq, gt = (v[None] >= p).all(axis=2), (v[None] > p).any(axis=2)
        on[lo:lo + 512] = ~(geq & gt).any(axis=1)
    out[valid] = on
    return out.tolist()


def front_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration with an ok trial: ``config``, the mean ``val_many, val_few,
    test_many, test_few`` and ``pareto`` (non-dominated on validation)."""
    cols = ["config", "val_many", "val_few", "test_many", "test_few", "pareto"]
    if trials.empty or not set(OBJECTIVES) <= set(trials.columns):
        return pd.DataFrame(columns=cols)
    df = S.with_configs(trials)
    df = df[df["status"] == "ok"]
    if df.empty:
        return pd.DataFrame(columns=cols)
    values = df[[c for c in cols[1:5] if c in df]].apply(pd.to_numeric, errors="coerce")
    means = values.groupby(df["config"], sort=False).mean().reindex(columns=cols[1:5])
    order = [c for c in S.config_summary(trials)["config"] if c in means.index]
    means = means.loc[order].reset_index()
    means["pareto"] = non_dominated(means[list(OBJECTIVES)].to_numpy(dtype=float).tolist())
    return means[cols]


def front(trials: pd.DataFrame) -> set[str]:
    """The labels of the non-dominated configurations."""
    t = front_table(trials)
    return set(t.loc[t["pareto"], "config"])


def flags(runs: dict[str, pd.DataFrame], configs: pd.DataFrame) -> list[bool]:
    """``pareto`` for each row of ``report.stats.configurations(runs)`` (the front of its own run)."""
    fronts = {name: front(trials) for name, trials in runs.items()}
    return [c in fronts.get(r, set()) for r, c in zip(configs["run"], configs["config"])]


def mark(table: pd.DataFrame, trials: pd.DataFrame, column: str = "configuration") -> pd.DataFrame:
    """``table`` with ◆ after the labels (in ``column``) of the run's non-dominated configurations."""
    if table.empty or column not in table:
        return table
    on = front(trials)
    out = table.copy()
    out[column] = [f"{c}{MARK}" if c in on else c for c in out[column]]
    return out


def figure(trials: pd.DataFrame) -> Any:
    """Many- vs few-shot accuracy of every configuration, validation (the front, joined) and test
    (the same configurations, reported only); None with fewer than two configurations."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    t = front_table(trials)
    t = t.dropna(subset=list(OBJECTIVES))
    if len(t) < 2:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=["validation (decides the front)", "test (reported only)"])
    for col, (x, y) in enumerate((("val_many", "val_few"), ("test_many", "test_few")), start=1):
        for on, colour, name in ((False, "#9aa5b1", "dominated"), (True, "#d62728", "non-dominated")):
            part = t[t["pareto"] == on]
            fig.add_trace(go.Scatter(x=part[x], y=part[y], mode="markers", name=name, showlegend=col == 1,
                                     marker={"color": colour, "size": 9 if on else 7}, text=part["config"],
                                     hovertemplate="%{text}<br>many %{x:.2f}<br>few %{y:.2f}<extra></extra>"),
                          row=1, col=col)
        if col == 1:
            f = t[t["pareto"]].sort_values(x)
            fig.add_trace(go.Scatter(x=f[x], y=f[y], mode="lines", line={"color": "#d62728", "shape": "vh"},
                                     showlegend=False, hoverinfo="skip"), row=1, col=1)
        fig.update_xaxes(title_text="many-shot accuracy (%)", row=1, col=col)
        fig.update_yaxes(title_text="few-shot accuracy (%)", row=1, col=col)
    fig.update_layout(height=440, margin={"t": 40})
    return fig
