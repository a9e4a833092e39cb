"""``write_compare(run_dirs, out, fmt)``: several runs side by side.

Contents: the best configurations of each run (``top``, default 5; 0 or None: all), each searched parameter's
val-accuracy curve with the runs overlaid (HTML) or tabulated (markdown), and a table of the best
configuration of each run (rank 1 by mean val accuracy) with its overall/many/medium/few test
accuracy and the difference to the first run (``+1.20``; ``n/a`` where either side is empty), and
the paired per-seed differences of every configuration to a baseline with 95 % confidence
intervals, the probability of improvement over it and the bootstrap intervals of the mean and the
interquartile mean (``ltsearch.report.stats``). ``fmt="markdown"``, ``"latex"`` and ``"csv"`` return the text
(and write it to ``out`` when given; ``ltsearch.report.tables`` for LaTeX and CSV); ``fmt="html"``
writes ``out`` and returns its path.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Sequence

import pandas as pd

from ltsearch.report import figures as F
from ltsearch.report import params as P
from ltsearch.report import pareto
from ltsearch.report import stats as T
from ltsearch.report import summary as S
from ltsearch.report import tables
from ltsearch.report.html import boot_html, read_spec, figure_div, page, run_name, table_html
from ltsearch.results import load

TOP = 5
FORMATS = ("html", "markdown", "latex", "csv")
COLUMNS = (("test_acc", "overall"), ("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"))


def load_runs(run_dirs: Sequence[str | Path]) -> dict[str, pd.DataFrame]:
    """``{run name: trials}``; a name seen twice gets ``#2``, ``#3`` appended."""
    runs: dict[str, pd.DataFrame] = {}
    for d in run_dirs:
        trials = load(d)[0]
        name, k = run_name(d, trials), 2
        while name in runs:
            name, k = f"{run_name(d, trials)} #{k}", k + 1
        runs[name] = trials
    return runs


def best_per_run(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Numbers: ``run, config, n_ok, <group>, <group>_std, delta_<group>`` (delta vs the first run)."""
    rows = []
    for name, trials in runs.items():
        s = S.config_summary(trials) if len(trials) else pd.DataFrame()
        s = s[s["n_ok"] > 0] if len(s) else s
        row: dict = {"run": name, "config": s.iloc[0]["config"] if len(s) else "", "n_ok": int(s.iloc[0]["n_ok"]) if len(s) else 0}
        for m, g in COLUMNS:
            row[g] = float(s.iloc[0][f"{m}_mean"]) if len(s) else math.nan
            row[f"{g}_std"] = float(s.iloc[0][f"{m}_std"]) if len(s) else math.nan
        rows.append(row)
    df = pd.DataFrame(rows)
    for _, g in COLUMNS:
        df[f"delta_{g}"] = df[g] - df[g].iloc[0] if len(df) else []
    return df


def _delta(v: float) -> str:
    return "n/a" if v is None or math.isnan(v) else f"{v:+.2f}"


def delta_table(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """``best_per_run`` as display strings."""
    b = best_per_run(runs)
    out = pd.DataFrame({"run": b["run"], "best configuration": b["config"], "seeds ok": b["n_ok"]})
    for _, g in COLUMNS:
        out[g] = [S.fmt_pm(m, s) for m, s in zip(b[g], b[f"{g}_std"])]
    for _, g in COLUMNS:
        out[f"Δ {g}"] = ["—" if i == 0 else _delta(v) for i, v in enumerate(b[f"delta_{g}"])]
    return out


def compact_best(trials: pd.DataFrame, top: int | None = TOP) -> pd.DataFrame:
    """The top rows of ``summary.best_table`` with the trial counts in one ``ok/failed/stopped`` column."""
    t = S.best_table(trials, top=top) if len(trials) else pd.DataFrame()
    if t.empty:
        return t
    t["ok/failed/stopped"] = [f"{a}/{b}/{c}" for a, b, c in zip(t["seeds ok"], t["failed"], t["stopped"])]
    return t.drop(columns=["seeds ok", "failed", "stopped"])


def param_table(runs: dict[str, pd.DataFrame], param: str, metric: str = "val_acc") -> pd.DataFrame:
    """Rows = parameter values (sorted by value; binned alike in every run), one column per run:
    mean ± std of ``metric`` (``params.shared_curves``). A numeric parameter gets one block of rows
    per combination of the categorical parameters that vary with it (column ``other parameters``),
    never an average over them; ``—`` where a run has no ok trial at that value."""
    d = P.shared_curves(runs, param, metric)
    if d.empty:
        return pd.DataFrame(columns=[param])
    d = d.assign(cell=[S.fmt_pm(m, s) for m, s in zip(d["mean"], d["std"])])
    wide = d.pivot_table(index=["group", "value"], columns="run", values="cell", aggfunc="first", sort=True)
    wide = wide[[n for n in runs if n in wide.columns]].fillna("—").reset_index()
    wide.columns.name = None
    wide.insert(1, param, [S.fmt_value(v) for v in wide.pop("value")])
    if (wide["group"] == "").all():
        return wide.drop(columns="group")
    return wide.rename(columns={"group": "other parameters"})


def shared_params(runs: dict[str, pd.DataFrame]) -> list[str]:
    return sorted({p for t in runs.values() for p in S.searched_params(t)})


def to_markdown(df: pd.DataFrame) -> str:
    if df.empty:
        return "_no rows_\n"
    cells = [[str(c) for c in df.columns]] + [["" if v is None else str(v).replace("|", "\\|") for v in r] for r in df.itertuples(index=False)]
    lines = ["| " + " | ".join(cells[0]) + " |", "|" + "|".join("---" for _ in cells[0]) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in cells[1:]]
    return "\n".join(lines) + "\n"


def statistics(runs: dict[str, pd.DataFrame], baseline: str | None, top: int | None = TOP) -> dict[str, object]:
    """What the statistics sections show, for the configurations shown (top ``top`` per run and the
    baseline; the bootstrap is computed for these only): ``base`` (label), ``paired`` (Student-t
    differences), ``improve`` (P(> baseline)), ``location`` (mean and IQM intervals), ``note``
    (duplicated units, or '')."""
    c = T.comparison(runs, baseline)
    if c.baseline is None:
        return {"base": ""}
    keep = c.shown(top)
    diffs, iv = c.differences()[keep.to_numpy()], c.intervals(keep)
    return {"base": c.base_label, "paired": T.delta_display(diffs), "improve": T.improvement_display(iv),
            "location": T.location_display(iv), "note": T.duplicates_note(c.differences())}


def _groups_line(trials: pd.DataFrame) -> str:
    """The run's many/few thresholds (``split_many`` / ``split_few``) as a line, or ``''``."""
    note = S.split_thresholds(trials) if len(trials) else ""
    return f"many / medium / few: {note}\n" if note else ""


def markdown(runs: dict[str, pd.DataFrame], baseline: str | None = None, top: int | None = TOP) -> str:
    names = list(runs)
    st = statistics(runs, baseline, top)
    base = st["base"]
    parts = [f"# ltsearch compare: {', '.join(names)}\n",
             f"## Best configuration of each run (differences vs {names[0]})\n", to_markdown(delta_table(runs))]
    if base:
        parts += [f"## Paired per-seed differences vs {base} (test accuracy, points)\n", f"_{T.NOTE}_\n",
                  *([f"**{st['note']}**\n"] if st["note"] else []), to_markdown(st["paired"]),
                  f"## Probability of improvement over {base} (test accuracy)\n", f"_{T.BOOT_NOTE}_\n",
                  to_markdown(st["improve"]),
                  "## Mean and interquartile mean, 95% bootstrap intervals (test accuracy)\n", to_markdown(st["location"])]
    for name, trials in runs.items():
        parts += [f"## {name}: best configurations\n", _groups_line(trials),
                  to_markdown(pareto.mark(S.best_table(trials, top=top), trials) if len(trials) else pd.DataFrame()),
                  f"_{pareto.NOTE}_\n"]
    for p in shared_params(runs):
        parts += [f"## {p}: val accuracy per run\n", to_markdown(param_table(runs, p))]
    return "\n".join(parts)


def paired_html(table: pd.DataFrame) -> str:
    """The paired-difference table; the 'within noise' marks stand out (bold)."""
    out = f'<p class="muted">{html.escape(T.NOTE)}</p>' + table_html(table)
    return out.replace(" within noise</td>", " <b>within noise</b></td>")


def html_page(runs: dict[str, pd.DataFrame], cdn: bool, baseline: str | None = None, top: int | None = TOP,
              spaces: dict[str, dict[str, dict]] | None = None) -> str:
    """The compare page; ``spaces``: each run's ``search.space`` (the parameter axes, ``params.log_axis``)."""
    names = list(runs)
    side = "".join(f"<div><h3>{html.escape(n)}</h3><p class=\"muted\">{html.escape(_groups_line(t).strip())}</p>"
                   f"{table_html(pareto.mark(compact_best(t, top), t))}</div>" for n, t in runs.items())
    st = statistics(runs, baseline, top)
    base = st["base"]
    sections = [
        (f"Best configuration of each run (differences vs {names[0]})", table_html(delta_table(runs))),
        ("Best configurations, side by side", f'<div class="runs">{side}</div><p class="muted">{html.escape(pareto.NOTE)}</p>'),
    ]
    if base:
        note = f'<p><b>{html.escape(st["note"])}</b></p>' if st["note"] else ""
        sections += [(f"Paired per-seed differences vs {base}", note + paired_html(st["paired"])),
                     (f"Probability of improvement over {base}", boot_html(st["improve"], st["location"]))]
    for p in shared_params(runs):
        sections.append((f"Parameter {p}", figure_div(F.compare_param_curves(runs, p, spaces=spaces), f"no ok trial sets {p}")))
    return page(f"ltsearch compare — {', '.join(names)}", sections, cdn)


def write_compare(run_dirs: Sequence[str | Path], out: str | Path | None, fmt: str = "html", cdn: bool = False,
                  baseline: str | None = None, top: int | None = TOP) -> str | Path:
    """Compare runs; ``fmt`` is ``"html"`` (writes ``out``, returns its path) or ``"markdown"`` /
    ``"latex"`` / ``"csv"`` (returns the text; also writes it to ``out`` when given). ``baseline``
    names the configuration the paired differences are taken against (``stats.choose_baseline``);
    ``top``: configurations shown per run (None: all; csv always has every row, and bootstraps the
    intervals of the ``top`` ones)."""
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if not run_dirs:
        raise ValueError("write_compare needs at least one run directory")
    runs = load_runs(run_dirs)
    if fmt != "html":
        render = {"markdown": lambda r, b: markdown(r, b, top), "latex": lambda r, b: tables.latex(r, b, top),
                  "csv": lambda r, b: tables.csv(r, b, top)}[fmt]
        text = render(runs, baseline)
        if out is not None:
            Path(out).write_text(text, encoding="utf-8")
        return text
    if out is None:
        raise ValueError("fmt='html' needs an output path")
    spaces = {name: P.search_space(read_spec(d)) for name, d in zip(runs, run_dirs)}
    page_text = html_page(runs, cdn, baseline, top, spaces)
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(page_text, encoding="utf-8")
    return target
