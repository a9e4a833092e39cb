"""Plotly figure builders: each takes DataFrames and returns a ``go.Figure`` (or ``None`` when the
run has nothing to draw). The numbers come from ``ltsearch.report.summary``; this module only
draws them. Plotly is used directly (never ``optuna.visualization``)."""

from __future__ import annotations

import math

import pandas as pd
import plotly.colors as pc
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from ltsearch.report import params as P
from ltsearch.report import summary as S

PALETTE = pc.qualitative.Plotly
GROUP_COLORS = {"many": "#1f77b4", "medium": "#ff7f0e", "few": "#d62728", "overall": "#7f7f7f"}
SPLIT_SYMBOLS = {"many": "circle", "medium": "diamond", "few": "x"}


def _none(v: float) -> float | None:
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v)


def _layout(fig: go.Figure, title: str, height: int = 420) -> go.Figure:
    fig.update_layout(title=title, height=height, template="plotly_white",
                      margin={"l": 60, "r": 20, "t": 60, "b": 60}, legend={"orientation": "h", "y": -0.2})
    return fig


def _rgba(color: str, alpha: float) -> str:
    r, g, b = pc.hex_to_rgb(color) if color.startswith("#") else pc.unlabel_rgb(color)
    return f"rgba({int(r)},{int(g)},{int(b)},{alpha})"


def group_bars(trials: pd.DataFrame, top: int = 20) -> go.Figure | None:
    """Grouped bars: many/medium/few/overall test accuracy per configuration, std over seeds as
    error bars; an empty group has no bar (y is None, never 0) and the text 'n/a' in its slot.

    Nothing is cut or overlaps: the value labels are drawn outside the plot area's clip
    (``cliponaxis=False``) under a y range with room for them above the tallest error bar, the
    legend sits above the plot (not below, where the slanted configuration labels are), and the
    margins grow to fit those labels (``automargin``)."""
    data = S.group_bars(trials, top=top)
    if data.empty:
        return None
    configs = list(dict.fromkeys(data["config"]))
    fig = go.Figure()
    for group in ("many", "medium", "few", "overall"):
        d = data[data["group"] == group].set_index("config").reindex(configs)
        y = [_none(v) for v in d["mean"]]
        fig.add_bar(name=group, x=configs, y=y, marker_color=GROUP_COLORS[group], cliponaxis=False,
                    error_y={"type": "data", "array": [_none(v) for v in d["std"]], "visible": True},
                    text=["n/a" if v is None else f"{v:.1f}" for v in y], textposition="outside",
                    textfont={"size": 10}, hovertemplate="%{x}<br>" + group + ": %{y:.2f}<extra></extra>")
    tops = [m + (0.0 if math.isnan(s) else s) for m, s in zip(data["mean"], data["std"]) if not math.isnan(m)]
    fig.update_layout(barmode="group", yaxis_title="test accuracy (%)", xaxis_tickangle=-20)
    fig.update_yaxes(range=[0, 1.15 * max(tops + [1.0])])  # room for the labels above the highest bar
    fig.update_xaxes(automargin=True)
    _layout(fig, "Test accuracy by class group (mean ± std over seeds; n/a: the group has no class)", 500)
    fig.update_layout(legend={"orientation": "h", "x": 0, "xanchor": "left", "y": 1.0, "yanchor": "bottom"},
                      margin={"l": 60, "r": 20, "t": 90, "b": 60})
    return fig


def _split_curves(trials: pd.DataFrame, param: str) -> go.Figure | None:
    """A numeric parameter whose trials differ in a categorical parameter (loss, method): one
    colour per combination, val solid with a ±std band, test dashed."""
    fig = go.Figure()
    for metric, name, dash in (("val_acc", "val", "solid"), ("test_acc", "test", "dash")):
        d = P.param_curves(trials, param, metric)
        for i, (group, g) in enumerate(d.groupby("group", sort=True)):
            color = PALETTE[i % len(PALETTE)]
            x, m = [float(v) for v in g["value"]], list(g["mean"])
            std = [0.0 if math.isnan(v) else v for v in g["std"]]
            if metric == "val_acc" and any(std):
                fig.add_scatter(x=x + x[::-1], y=[a + b for a, b in zip(m, std)] + [a - b for a, b in zip(m[::-1], std[::-1])],
                                fill="toself", fillcolor=_rgba(color, 0.12), mode="lines", line={"width": 0},
                                hoverinfo="skip", showlegend=False, legendgroup=group, name=f"{name} ± std · {group}")
            fig.add_scatter(x=x, y=m, mode="lines+markers", name=f"{name} · {group}", legendgroup=group,
                            line={"color": color, "dash": dash}, customdata=list(g["n"]),
                            hovertemplate=f"{group}<br>{param}=%{{x}}<br>{name}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>")
    return fig if fig.data else None


def param_curve(trials: pd.DataFrame, param: str, space: dict[str, dict] | None = None) -> go.Figure | None:
    """Val and test accuracy vs one searched parameter: a line with a ±std band when numeric (one
    per combination of the categorical parameters that vary with it, ``params.split_by``), bars
    with error bars when categorical. A numeric axis is logarithmic by ``params.log_axis``: the
    spec's ``space`` (``RUN_DIR/spec.yaml``'s ``search.space``) when it draws the parameter from a
    continuous distribution, else the values (positive, spanning more than a decade)."""
    numeric = S.is_numeric_param(trials[param])
    log = numeric and P.log_axis(trials.loc[trials["status"] == "ok", param], (space or {}).get(param))
    if numeric and P.split_by(trials, param):
        fig = _split_curves(trials, param)
        if fig is None:
            return None
        fig.update_layout(xaxis_title=param, yaxis_title="accuracy (%)")
        if log:
            fig.update_xaxes(type="log")
        by = ", ".join(P.split_by(trials, param))
        return _layout(fig, f"{param}: accuracy over ok trials (mean ± std), one curve per {by}", 420)
    fig = go.Figure()
    drawn = False
    for i, (metric, name) in enumerate((("val_acc", "val"), ("test_acc", "test"))):
        d = S.param_curve(trials, param, metric)
        if d.empty:
            continue
        drawn = True
        color = PALETTE[i]
        std = [0.0 if math.isnan(s) else s for s in d["std"]]
        if numeric:
            x = [float(v) for v in d["value"]]
            fig.add_scatter(x=x + x[::-1], y=[m + s for m, s in zip(d["mean"], std)] + [m - s for m, s in zip(d["mean"][::-1], std[::-1])],
                            fill="toself", fillcolor=_rgba(color, 0.18), mode="lines", line={"width": 0}, hoverinfo="skip",
                            showlegend=False, name=f"{name} ± std")
            fig.add_scatter(x=x, y=list(d["mean"]), mode="lines+markers", name=name, line={"color": color},
                            customdata=list(d["n"]), hovertemplate=f"{param}=%{{x}}<br>{name}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>")
        else:
            fig.add_bar(x=[S.fmt_value(v) for v in d["value"]], y=list(d["mean"]), name=name, marker_color=color,
                        error_y={"type": "data", "array": [_none(s) for s in d["std"]], "visible": True},
                        text=[f"{m:.2f}" for m in d["mean"]], textposition="inside", insidetextanchor="middle")
    if not drawn:
        return None
    fig.update_layout(xaxis_title=param, yaxis_title="accuracy (%)", barmode="group")
    if numeric:
        fig.update_xaxes(type="log" if log else "linear")
    else:
        fig.update_xaxes(type="category")
    return _layout(fig, f"{param}: accuracy over ok trials (mean ± std)", 380)


def heatmap(trials: pd.DataFrame, a: str, b: str) -> go.Figure | None:
    """Mean val and test accuracy over two categorical parameters (e.g. HRDC strategy × fusion),
    both panels on one colour scale."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("val accuracy", "test accuracy"), horizontal_spacing=0.15)
    pivots = [S.heatmap(trials, a, b, m) for m in ("val_acc", "test_acc")]
    if any(p.empty for p in pivots):
        return None
    zmin = min(float(p.min().min()) for p in pivots)
    zmax = max(float(p.max().max()) for p in pivots)
    for col, p in enumerate(pivots, start=1):
        z = [[_none(v) for v in row] for row in p.to_numpy(dtype=float)]
        fig.add_heatmap(z=z, x=[S.fmt_value(v) for v in p.columns], y=[S.fmt_value(v) for v in p.index],
                        text=[["n/a" if v is None else f"{v:.1f}" for v in row] for row in z], texttemplate="%{text}",
                        colorscale="Viridis", zmin=zmin, zmax=zmax, showscale=col == 2, row=1, col=col)
        fig.update_xaxes(title_text=b, type="category", row=1, col=col)
        fig.update_yaxes(title_text=a, type="category", row=1, col=col)
    return _layout(fig, f"{a} × {b} (mean over ok trials)", 420)


def contour(trials: pd.DataFrame, a: str, b: str, space: dict[str, dict] | None = None) -> go.Figure | None:
    """Mean val accuracy over two numeric parameters (``params.contour``): interpolated contours
    with the trials as points, one panel per combination of the categorical parameters."""
    panels = P.contour(trials, a, b, space=space)
    if not panels:
        return None
    fig = make_subplots(rows=1, cols=len(panels), subplot_titles=[p["group"] or "all ok trials" for p in panels],
                        horizontal_spacing=0.08)
    zs = [v for p in panels for row in p["z"] for v in row if v is not None] + \
        [float(v) for p in panels for v in p["points"]["val_acc"]]
    for col, p in enumerate(panels, start=1):
        fig.add_contour(x=p["x"], y=p["y"], z=p["z"], colorscale="Viridis", zmin=min(zs), zmax=max(zs),
                        contours={"coloring": "heatmap", "showlabels": True}, connectgaps=False,
                        showscale=col == len(panels), colorbar={"title": {"text": "val acc"}}, row=1, col=col,
                        hovertemplate=f"{a}=%{{x:.4g}}<br>{b}=%{{y:.4g}}<br>val: %{{z:.2f}}<extra></extra>")
        pts = p["points"]
        fig.add_scatter(x=list(pts[a]), y=list(pts[b]), mode="markers", showlegend=False, row=1, col=col,
                        marker={"color": list(pts["val_acc"]), "colorscale": "Viridis", "cmin": min(zs), "cmax": max(zs),
                                "line": {"color": "white", "width": 1}, "size": 8},
                        customdata=list(zip(pts["val_acc"], pts["n"])),
                        hovertemplate=f"{a}=%{{x:.4g}}<br>{b}=%{{y:.4g}}<br>val %{{customdata[0]:.2f}} (n=%{{customdata[1]}})<extra></extra>")
        fig.update_xaxes(title_text=a, type="log" if p["log_x"] else "linear", row=1, col=col)
        fig.update_yaxes(title_text=b, type="log" if p["log_y"] else "linear", row=1, col=col)
    return _layout(fig, f"{a} × {b}: val accuracy (mean over seeds; interpolated between trials)", 440)


LABEL_PX = 7  # about the width of one character of plotly's 12 px axis labels


PARCOORDS_TRIALS = 1000  # lines beyond these make the figure unreadable (and the page large)


def parcoords(trials: pd.DataFrame, top: int = PARCOORDS_TRIALS) -> go.Figure | None:
    """Parallel coordinates over the searched parameters, one line per ok trial, coloured by val acc;
    of a larger run the ``top`` trials by val acc (the title says so).

    Plotly writes the first axis's tick labels to its left and centres each axis title over its
    axis, outside the plot area: the left margin fits the first axis's longest tick label (e.g.
    ``balanced_softmax``) or half its title, the right margin half the last title and the colour
    bar, so no label is cut at the page's edge."""
    if not S.searched_params(trials):
        return None
    ok = trials[(trials["status"] == "ok") & trials["val_acc"].notna()] if "status" in trials else trials
    title = "Searched parameters, coloured by val accuracy (ok trials with every parameter set)"
    if len(ok) > top:
        trials = ok.sort_values("val_acc", ascending=False, kind="stable").head(top)
        title = f"Searched parameters, coloured by val accuracy (the best {top} of {len(ok)} ok trials)"
    dims, color = S.parcoords(trials)
    if not color:
        return None
    fig = go.Figure(go.Parcoords(dimensions=dims, line={"color": color, "colorscale": "Viridis", "showscale": True,
                                                         "colorbar": {"title": {"text": "val acc"}}}))
    _layout(fig, title, 460)
    first, last = dims[0], dims[-1]
    ticks = [str(t) for t in first.get("ticktext", [])] or [f"{max(first['values'], default=0):.4g}"]
    left = LABEL_PX * max(max(map(len, ticks)) + 2, len(first["label"]) // 2 + 2)
    right = LABEL_PX * (len(last["label"]) // 2 + 2) + 100
    fig.update_layout(margin={"l": max(80, left), "r": max(40, right), "t": 110, "b": 40})
    return fig


def importance(result: dict[str, float] | str) -> go.Figure | None:
    """Horizontal bars of parameter importance (``summary.param_importance``); None if unavailable."""
    if isinstance(result, str) or not result:
        return None
    items = sorted(result.items(), key=lambda kv: kv[1])
    fig = go.Figure(go.Bar(x=[v for _, v in items], y=[k for k, _ in items], orientation="h",
                           marker_color=PALETTE[0], text=[f"{v:.2f}" for _, v in items], textposition="auto"))
    fig.update_layout(xaxis_title="fANOVA importance (sums to 1)")
    return _layout(fig, "Parameter importance for val accuracy", 160 + 40 * len(items))


def _flat_zero(d: pd.DataFrame) -> bool:
    """Every value of a column is 0 at every epoch (mean 0 with no spread): e.g. ``drs_on`` with
    deferred re-sampling off."""
    return bool((d["mean"] == 0).all() and d["std"].fillna(0).eq(0).all())


def learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, top: int = 8) -> go.Figure | None:
    """Mean (± std band) val_acc, train_loss and non-null schedule values per epoch for the ``top``
    ranked configurations; a schedule value that is 0 throughout for every one of them (a switch
    that is off) gets no panel."""
    ranked = S.config_summary(trials)
    configs = list(ranked["config"].head(top)) if len(ranked) else []
    data = S.learning_curves(trials, epochs, configs)
    if data.empty:
        return None
    columns = [c for c in dict.fromkeys(data["column"])
               if c in ("val_acc", "train_loss") or not _flat_zero(data[data["column"] == c])]
    fig = make_subplots(rows=len(columns), cols=1, shared_xaxes=True, subplot_titles=columns, vertical_spacing=0.06)
    for i, config in enumerate(c for c in configs if c in set(data["config"])):
        color = PALETTE[i % len(PALETTE)]
        for r, column in enumerate(columns, start=1):
            d = data[(data["config"] == config) & (data["column"] == column)]
            if d.empty:
                continue
            x, m = list(d["epoch"]), list(d["mean"])
            s = [0.0 if math.isnan(v) else v for v in d["std"]]
            if any(s):
                fig.add_scatter(x=x + x[::-1], y=[a + b for a, b in zip(m, s)] + [a - b for a, b in zip(m[::-1], s[::-1])],
                                fill="toself", fillcolor=_rgba(color, 0.12), mode="lines", line={"width": 0}, hoverinfo="skip",
                                showlegend=False, legendgroup=config, row=r, col=1)
            fig.add_scatter(x=x, y=m, mode="lines", name=config, legendgroup=config, showlegend=r == 1,
                            line={"color": color}, row=r, col=1)
    fig.update_xaxes(title_text="epoch", row=len(columns), col=1)
    fig.update_xaxes(tickformat="d")
    return _layout(fig, f"Learning curves (mean ± std over seeds, top {top} configurations)", 220 * len(columns) + 160)


def group_edges(trials: pd.DataFrame, trial_ids: list[str]) -> list[tuple[float, str]]:
    """Where the many/medium/few groups of these trials meet on the training-count axis: their
    ``split_many`` (many: count > split_many) and ``split_few`` (few: count < split_few), with a
    label; none for rows written before ltsearch recorded the thresholds."""
    if not {"split_many", "split_few"} <= set(trials.columns):
        return []
    rows = trials[trials["trial_id"].isin(trial_ids)].dropna(subset=["split_many", "split_few"])
    edges: dict[float, str] = {}
    for m, f in rows[["split_many", "split_few"]].drop_duplicates().itertuples(index=False):
        edges.setdefault(float(m), f"many > {int(m)}")
        edges.setdefault(float(f), f"few < {int(f)}")
    return sorted(edges.items())


def per_class(trials: pd.DataFrame, per_class_df: pd.DataFrame, column: str = "test_acc") -> go.Figure | None:
    """Per-class accuracy (or weight norm) vs the class's training count (log x): best vs baseline,
    dotted lines at the run's own many/medium/few thresholds (``group_edges``)."""
    data = S.per_class_pair(trials, per_class_df, column)
    if data.empty:
        return None
    _, _, why = S.best_and_baseline(trials)
    fig = go.Figure()
    for i, role in enumerate(("best", "baseline")):
        d = data[data["role"] == role]
        if d.empty:
            continue
        label = f"{role}: {d['config'].iloc[0]}"
        fig.add_scatter(x=list(d["train_count"]), y=list(d["value"]), mode="markers", name=label,
                        marker={"color": PALETTE[i], "size": 7, "opacity": 0.8,
                                "symbol": [SPLIT_SYMBOLS.get(s, "circle") for s in d["split"]]},
                        customdata=list(zip(d["class_index"], d["split"])),
                        hovertemplate="class %{customdata[0]} (%{customdata[1]})<br>train count %{x}<br>%{y:.2f}<extra></extra>")
    for edge, text in group_edges(trials, list(dict.fromkeys(data["trial_id"]))):
        fig.add_vline(x=edge, line={"dash": "dot", "color": "#999"})
        # on a log axis a shape takes the value, an annotation its log10 (plotly's convention)
        fig.add_annotation(x=math.log10(edge), y=1, yref="paper", yanchor="bottom", text=text, showarrow=False,
                           font={"size": 10, "color": "#666"})
    name = {"test_acc": "test accuracy (%)", "weight_norm": "classifier weight norm"}.get(column, column)
    fig.update_xaxes(type="log", title_text="training images of the class (log)")
    fig.update_yaxes(title_text=name)
    title = f"Per-class {name} vs training count" + (f" — baseline: {why}" if why else "")
    return _layout(fig, title, 440)


def weight_norms(trials: pd.DataFrame, per_class_df: pd.DataFrame) -> go.Figure | None:
    """Classifier weight norm per class (classes ordered by training count), best vs baseline."""
    if per_class_df.empty or "weight_norm" not in per_class_df or per_class_df["weight_norm"].isna().all():
        return None
    fig = per_class(trials, per_class_df, "weight_norm")
    return fig


GROUP_DASHES = ("solid", "dash", "dot", "dashdot", "longdash", "longdashdot")


def compare_param_curves(runs: dict[str, pd.DataFrame], param: str, metric: str = "val_acc",
                         spaces: dict[str, dict[str, dict]] | None = None) -> go.Figure | None:
    """One parameter's curve for several runs overlaid (``params.shared_curves``: never averaged
    over the losses or methods the runs search, binned alike in every run). Numeric: one line per
    run (colour) and categorical combination (dash) with a ±std band, on a log axis when
    ``params.log_axis`` says so for any run (``spaces``: each run's ``search.space``); else
    grouped bars per run."""
    data = P.shared_curves(runs, param, metric)
    if data.empty:
        return None
    numeric = pd.api.types.is_numeric_dtype(data["value"])
    names = list(runs)
    groups = sorted(set(data["group"]))
    fig = go.Figure()
    for (name, group), d in data.groupby(["run", "group"], sort=False):
        color = PALETTE[names.index(name) % len(PALETTE)]
        label = f"{name} · {group}" if group else name
        if numeric:
            x, m = [float(v) for v in d["value"]], list(d["mean"])
            std = [0.0 if math.isnan(v) else v for v in d["std"]]
            if any(std):
                fig.add_scatter(x=x + x[::-1], y=[a + b for a, b in zip(m, std)] + [a - b for a, b in zip(m[::-1], std[::-1])],
                                fill="toself", fillcolor=_rgba(color, 0.12), mode="lines", line={"width": 0},
                                hoverinfo="skip", showlegend=False, legendgroup=label, name=f"{label} ± std")
            fig.add_scatter(x=x, y=m, mode="lines+markers", name=label, legendgroup=label, customdata=list(d["n"]),
                            line={"color": color, "dash": GROUP_DASHES[groups.index(group) % len(GROUP_DASHES)]},
                            hovertemplate=f"{label}<br>{param}=%{{x:.4g}}<br>{metric}: %{{y:.2f}} (n=%{{customdata}})<extra></extra>")
        else:
            fig.add_bar(x=list(d["value"]), y=list(d["mean"]), name=label, marker_color=color,
                        error_y={"type": "data", "array": [_none(s) for s in d["std"]], "visible": True})
    fig.update_layout(xaxis_title=param, yaxis_title=f"{metric} (%)", barmode="group")
    if numeric:
        spaces = spaces or {}
        log = any(P.log_axis(t.loc[t["status"] == "ok", param], spaces.get(n, {}).get(param))
                  for n, t in runs.items() if param in t)
        fig.update_xaxes(type="log" if log else "linear")
    else:
        fig.update_xaxes(type="category")
    by = " (one curve per run and combination of the other categorical parameters)" if any(groups) else ""
    return _layout(fig, f"{param} vs {metric}, runs overlaid{by}", 400)
