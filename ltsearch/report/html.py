"""``write_report(run_dir, out=None, cdn=False)``: one self-contained HTML page for a run.

plotly.js is inlined once in the page head (about 5 MB, works offline); ``cdn=True`` references
plotly's CDN instead (small file, needs network to view). Sections: summary and provenance, best
configurations, paired per-seed differences to a baseline (95 % CI), the probability of improvement
over it with bootstrap intervals of the mean and IQM (top 50), class-group bars, each searched
parameter (a numeric one: one curve per combination of the categorical parameters that vary with
it; a contour for each pair of numeric parameters; a heat map when exactly two categorical
parameters are searched), parallel coordinates, parameter importance (10+ ok trials; below that
the section says why), learning curves, per-class accuracy and classifier weight norms of the best trial vs a baseline, failed
trials, and ``spec.yaml`` when the run has one.

A large sweep's report stays bounded (about 5 MB of plotly.js plus under 5 MB at 10,000 trials):
the tables list the first ``TOP_ROWS`` configurations in their order (``FAILED_ROWS`` failed
trials) with a line saying how many are left out; parallel coordinates draw the best
``figures.PARCOORDS_TRIALS`` trials; parameter importance is computed on at most
``IMPORTANCE_TRIALS`` ok trials drawn at random (seeded); learning curves and class-group bars show
the top configurations; the parameter curves and the Pareto front hold one point per value or
configuration, and every number the tables leave out is in ``ltsearch compare --format csv``.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Iterable

import pandas as pd
import plotly.graph_objects as go
import plotly.offline as po

import ltsearch

from ltsearch.report import figures as F
from ltsearch.report import params as P
from ltsearch.report import summary as S
from ltsearch.results import ResultStore, load
from ltsearch.results.provenance import git_commit

CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px auto;max-width:1280px;color:#222;padding:0 16px}
h1{font-size:1.6em;margin-bottom:4px} h2{font-size:1.25em;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:32px}
table.lt{border-collapse:collapse;font-size:13px;margin:8px 0} table.lt th,table.lt td{border:1px solid #ddd;padding:4px 8px;text-align:right}
table.lt th{background:#f4f4f4} table.lt td{white-space:nowrap} table.lt td:nth-child(2){text-align:left;white-space:normal}
.runs{display:flex;gap:16px;flex-wrap:wrap} .runs>div{flex:1 1 560px;min-width:0;overflow-x:auto}
.runs table.lt{font-size:12px} .runs table.lt th,.runs table.lt td{padding:3px 5px} .runs table.lt td:nth-child(2){min-width:140px} .muted{color:#666;font-size:13px}
pre{background:#f7f7f7;padding:8px;overflow:auto;font-size:12px} .na{color:#999}
"""


def plotly_script(cdn: bool) -> str:
    """The one ``<script>`` that loads plotly.js: inline, or from the CDN."""
    if cdn:
        return f'<script charset="utf-8" src="https://cdn.plot.ly/plotly-{po.get_plotlyjs_version()}.min.js"></script>'
    return f'<script type="text/javascript">{po.get_plotlyjs()}</script>'


def figure_div(fig: go.Figure | None, note: str = "") -> str:
    if fig is None:
        return f'<p class="muted">{html.escape(note or "nothing to draw")}</p>'
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


TOP_ROWS = 50  # configurations per table
FAILED_ROWS = 100
IMPORTANCE_TRIALS = 200  # fANOVA's forest grows with the trials; a random sample ranks the parameters alike


ALL_CONFIGS = "<code>ltsearch compare RUN_DIR --format csv --top 0</code>"


def bounded_html(df: pd.DataFrame, rows: int = TOP_ROWS, what: str = "configurations", where: str = ALL_CONFIGS,
                 total: int | None = None) -> str:
    """``table_html`` of the first ``rows`` rows, and a line on how many are left out (and ``where``
    to find them all); ``total``: the rows there are when ``df`` is already only the first ones."""
    total = len(df) if total is None else total
    if total <= rows:
        return table_html(df)
    note = f'<p class="muted">the first {rows} of {total} {what} are shown ({total - rows} left out; all of them: {where})</p>'
    return table_html(df.head(rows)) + note


def table_html(df: pd.DataFrame) -> str:
    if df.empty:
        return '<p class="muted">no rows</p>'
    out = df.to_html(index=False, classes="lt", border=0, escape=True, na_rep="n/a")
    return out.replace("<td>n/a</td>", '<td class="na">n/a</td>')


def page(title: str, sections: Iterable[tuple[str, str]], cdn: bool, intro: str = "") -> str:
    body = "\n".join(f"<h2>{html.escape(h)}</h2>\n{content}" for h, content in sections)
    return (f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
            f"<style>{CSS}</style>\n{plotly_script(cdn)}\n</head><body>\n<h1>{html.escape(title)}</h1>\n"
            f"{intro}\n{body}\n</body></html>\n")


def _first(trials: pd.DataFrame, col: str) -> str:
    if col not in trials:
        return ""
    vals = trials[col].dropna().astype(str).unique()
    return ", ".join(vals[:4]) + (" …" if len(vals) > 4 else "")


def run_name(run_dir: str | Path, trials: pd.DataFrame) -> str:
    return _first(trials, "sweep") or Path(str(run_dir).rstrip("/")).name


def read_spec(run_dir: str | Path) -> str:
    p = Path(str(run_dir)) / "spec.yaml"
    try:
        return p.read_text() if p.is_file() else ""
    except OSError:
        return ""


def summary_html(trials: pd.DataFrame) -> str:
    counts = S.status_counts(trials)
    params = S.searched_params(trials)
    facts = [("dataset", _first(trials, "dataset")), ("imbalance", _first(trials, "imbalance")),
             ("method", _first(trials, "method")), ("loss", _first(trials, "loss")), ("arch", _first(trials, "arch")),
             ("many / medium / few", S.split_thresholds(trials)),
             ("trials", f"{len(trials)} ({counts.get('ok', 0)} ok, {counts.get('failed', 0)} failed, "
                        f"{counts.get('stopped', 0)} stopped)"),
             ("searched parameters", ", ".join(params) or "none"),
             ("configurations", str(len(S.config_summary(trials))) if len(trials) else "0")]
    for col in ("ltsearch_version", "torch_version", "ray_version", "git_commit", "device"):
        facts.append((f"trained with {col}", _first(trials, col)))
    commit = git_commit()
    facts.append(("report by", f"ltsearch {ltsearch.__version__}" + (f" @ {commit[:12]}" if commit else "")))
    rows = "".join(f"<tr><th>{html.escape(k)}</th><td style='text-align:left'>{html.escape(v or '—')}</td></tr>"
                   for k, v in facts)
    return f'<table class="lt">{rows}</table>'


def param_sections(trials: pd.DataFrame, spec: str = "") -> list[tuple[str, str]]:
    """The parameter figures; ``spec``: the run's ``spec.yaml`` text, whose ``search.space`` sets
    each numeric axis (log for ``loguniform``, ``params.log_axis``)."""
    params = S.searched_params(trials)
    cats = S.categorical_params(trials)
    space = P.search_space(spec)
    out = []
    if len(cats) == 2:  # e.g. HRDC strategy × fusion (pooled over any numeric parameter)
        out.append((f"{cats[0]} × {cats[1]}", figure_div(F.heatmap(trials, *cats))))
    for a, b in P.numeric_pairs(trials):  # e.g. optim.lr × loss.gamma: a contour, like optuna's plot_contour
        out.append((f"{a} × {b}", figure_div(F.contour(trials, a, b, space), "the trials' points lie on a line")))
    for p in params:
        out.append((f"Parameter {p}", figure_div(F.param_curve(trials, p, space), f"no ok trial sets {p}")))
    return out


def importance_sample(trials: pd.DataFrame, n: int = IMPORTANCE_TRIALS) -> tuple[pd.DataFrame, str]:
    """At most ``n`` ok trials drawn at random (seed 0) for fANOVA, and a note when it is a sample."""
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    if len(ok) <= n:
        return trials, ""
    return ok.sample(n=n, random_state=0).sort_index(), f"computed on {n} of the {len(ok)} ok trials, drawn at random"


def importance_html(imp: dict[str, float] | str, note: str = "") -> str:
    """The importance figure, or one line saying why there is none (e.g. fewer than 10 ok trials)."""
    fig = F.importance(imp)
    if fig is not None:
        return (f'<p class="muted">{html.escape(note)}</p>' if note else "") + figure_div(fig)
    why = imp if isinstance(imp, str) and imp else "no parameter importance computed"
    return f'<p class="muted">{html.escape(f"Parameter importance (fANOVA) is not shown: {why}.")}</p>'


def failed_html(trials: pd.DataFrame) -> str:
    bad = trials[trials["status"].isin(["failed", "stopped"])] if "status" in trials else trials.iloc[0:0]
    if bad.empty:
        return '<p class="muted">none</p>'
    df = S.with_configs(bad)
    cols = [c for c in ("trial_id", "config", "seed", "status", "epochs_done", "error") if c in df]
    view = df[cols].copy()
    if "error" in view:
        view["error"] = view["error"].fillna("").astype(str).str.slice(0, 200)
    return bounded_html(view, FAILED_ROWS, "failed and stopped trials",
                        "the rows of <code>RUN_DIR/trials/</code> whose status is failed or stopped")


ONE_RUN_NOTE = ("Not shown: every configuration has one run (one seed), and a paired interval or P(> baseline) "
                "needs two or more runs of a configuration. Set search.seeds (for example [0, 1, 2]) or search.race, "
                "or run the best configurations on more seeds.")


def comparison_sections(trials: pd.DataFrame, baseline: str | None) -> list[tuple[str, str]]:
    """The paired differences and the probability of improvement; where no configuration has two runs (a
    one-seed search), one line saying why they are not shown instead of tables of single values."""
    ok = trials[trials["status"] == "ok"] if "status" in trials else trials
    if not ok.empty:
        df = S.with_configs(ok)
        unit = [c for c in ("config_key", "subset_seed", "seed") if c in df]
        runs = df[unit].drop_duplicates().groupby("config_key").size()
        if len(runs) >= 2 and runs.max() < 2:
            return [("Paired differences and probability of improvement",
                     f'<p class="muted">{html.escape(ONE_RUN_NOTE)}</p>')]
    return [*paired_section(trials, baseline), *improvement_section(trials, baseline)]


def paired_section(trials: pd.DataFrame, baseline: str | None) -> list[tuple[str, str]]:
    """Paired per-seed differences of every configuration to the baseline (``report.stats``)."""
    from ltsearch.report import stats as T

    diffs, base = T.paired_differences({"run": trials}, baseline)
    if diffs.empty or len(diffs) < 2:
        return []
    shown = T.delta_display(diffs.head(TOP_ROWS))  # formatted only where shown (thousands of rows at scale)
    table = bounded_html(shown, total=len(diffs)).replace(" within noise</td>", " <b>within noise</b></td>")
    return [(f"Paired differences vs {base}", f'<p class="muted">{html.escape(T.NOTE)}</p>' + table)]


def boot_html(improve: pd.DataFrame, location: pd.DataFrame) -> str:
    """The probability-of-improvement table, then the mean / IQM bootstrap intervals (``report.stats``)."""
    from ltsearch.report import stats as T

    return (f'<p class="muted">{html.escape(T.BOOT_NOTE)}</p>' + table_html(improve)
            + "<p>mean and interquartile mean of test accuracy, 95% bootstrap intervals:</p>" + table_html(location))


def improvement_section(trials: pd.DataFrame, baseline: str | None, top: int = 50) -> list[tuple[str, str]]:
    """P(> baseline) and the bootstrap intervals of the top ``top`` configurations and the baseline."""
    from ltsearch.report import stats as T

    c = T.comparison({"run": trials}, baseline)
    if c.baseline is None or len(c.configs) < 2:
        return []
    iv = c.intervals(c.shown(top))
    return [(f"Probability of improvement over {c.base_label}",
             boot_html(T.improvement_display(iv), T.location_display(iv)))]


def variance_section(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """Subset draw vs initialisation (``report.variance``), for a run over several subsets."""
    from ltsearch.report import variance as V

    if not V.has_subsets(trials):
        return []
    return [("Subset draw vs initialisation", f'<p class="muted">{html.escape(V.NOTE)}</p>'
             + table_html(V.pooled_table(trials)) + "<p>test accuracy, per configuration:</p>"
             + bounded_html(V.configuration_table(trials)))]


def pareto_section(trials: pd.DataFrame) -> list[tuple[str, str]]:
    """The many- vs few-shot Pareto front of every configuration (``report.pareto``)."""
    from ltsearch.report import pareto as PF

    fig = PF.figure(trials)
    return [] if fig is None else [("Head vs tail: the Pareto front", f'<p class="muted">{html.escape(PF.NOTE)}</p>'
                                    + figure_div(fig))]


def ablation_section(run_dir: str | Path) -> list[tuple[str, str]]:
    """The run's ablation path (``ltsearch ablate``, ``report.ablation``), when it has one."""
    from ltsearch.report import ablation as A

    found = A.load_path(str(run_dir))
    if found is None or found[1].empty:
        return []
    meta, table = found
    head = f"Ablation path: {meta.get('source', '')} → {meta.get('target', '')}"
    return [(head, f'<p class="muted">{html.escape(A.NOTE)}</p>' + figure_div(A.waterfall(table))
             + bounded_html(A.display(table), TOP_ROWS, "steps", "<code>ltsearch ablate RUN_DIR --format csv</code>"))]


def build_sections(run_dir: str | Path, trials: pd.DataFrame, epochs: pd.DataFrame, per_class: pd.DataFrame,
                   baseline: str | None = None) -> list[tuple[str, str]]:
    if trials.empty:
        return [("Results", '<p class="muted">this run has no finished trials yet</p>')]
    sample, sampled = importance_sample(trials)
    imp = S.param_importance(sample)
    _, _, why = S.best_and_baseline(trials)
    spec = read_spec(run_dir)
    sections = [
        ("Summary", summary_html(trials)),
        ("Best configurations", '<p class="muted">mean ± std over the ok seeds, ranked by mean val accuracy; '
                                'many/medium/few are test accuracies, n/a where the group is empty.</p>'
                                + bounded_html(S.best_table(trials))),
        *comparison_sections(trials, baseline),
        *variance_section(trials),
        *ablation_section(run_dir),
        ("Accuracy by class group", figure_div(F.group_bars(trials), "no ok trials")),
        *pareto_section(trials),
        *param_sections(trials, spec),
        ("Parallel coordinates", figure_div(F.parcoords(trials), "no searched parameters")),
        ("Parameter importance", importance_html(imp, sampled)),
        ("Learning curves", figure_div(F.learning_curves(trials, epochs), "no epoch records")),
        ("Per-class test accuracy", (f'<p class="muted">baseline: {html.escape(why)}</p>' if why else "")
         + figure_div(F.per_class(trials, per_class), "no per-class records")),
        ("Classifier weight norms", figure_div(F.weight_norms(trials, per_class), "no weight norms recorded")),
        ("Failed and stopped trials", failed_html(trials)),
    ]
    if spec:
        sections.append(("spec.yaml", f"<details><summary>show</summary><pre>{html.escape(spec)}</pre></details>"))
    return sections


def write_report(run_dir: str | Path, out: str | Path | None = None, cdn: bool = False,
                 baseline: str | None = None) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default ``RUN_DIR/report.html``); return its path.

    A run without results yet still gets a page (saying so); ``cdn=True`` links plotly.js instead
    of inlining it; ``baseline`` names the configuration of the paired differences (default: CE, else
    the best)."""
    trials, epochs, per_class = load(run_dir)
    sections = build_sections(run_dir, trials, epochs, per_class, baseline)
    text = page(f"ltsearch report — {run_name(run_dir, trials)}", sections, cdn)
    if out is None:  # next to the results, through the store (atomic; also for s3:// / gs:// run dirs)
        return Path(ResultStore(run_dir).write_text("report.html", text))
    target = Path(out)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(target)
    return target
