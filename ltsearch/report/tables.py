"""Paper-ready tables of compared runs: LaTeX (booktabs) and CSV.

``latex``: three ``table`` floats for ``\\input{}`` (they need ``\\usepackage{booktabs}``): test accuracy
(%) over all / many / medium / few classes as mean ± std over seeds, the best value of each column
in bold, configurations ranked by mean validation accuracy (the top ``top`` of each run, and the
baseline); then the paired per-seed differences to the baseline, mean [95 % CI], with a dagger
where the interval contains 0 (within seed noise); then the interquartile mean and the probability
of improvement over the baseline with their bootstrap intervals (``stats``). ``csv``: every
configuration of every run, one row each, with the numbers behind the tables (means, stds, counts,
paired differences, bootstrap intervals of the mean and the IQM, probability of improvement); the
numbers to 4 decimals, the searched parameters' values at full precision (as stored).
"""

from __future__ import annotations

import io
import math
import re

import pandas as pd

from ltsearch.report import pareto
from ltsearch.report import stats as T
from ltsearch.report import summary as S

GROUPS = (("test_acc", "Overall"), ("test_many", "Many"), ("test_medium", "Medium"), ("test_few", "Few"))
_LATEX = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_", "{": r"\{",
          "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}", "—": "---", "–": "--", "…": r"\ldots{}",
          "±": r"$\pm$", "×": r"$\times$", "Δ": r"$\Delta$", "τ": r"$\tau$", "α": r"$\alpha$", "β": r"$\beta$",
          "γ": r"$\gamma$", "λ": r"$\lambda$"}
_RE = re.compile("|".join(re.escape(k) for k in _LATEX))


def escape(text: str) -> str:
    """Text for LaTeX's text mode: special characters escaped; other non-ASCII becomes '?'."""
    out = _RE.sub(lambda m: _LATEX[m.group(0)], str(text))
    return "".join(c if ord(c) < 128 else "?" for c in out)


def shown(runs: dict[str, pd.DataFrame], baseline: str | None, top: int | None) -> tuple[pd.DataFrame, pd.DataFrame, str]:
    """The configurations in the tables (top ``top`` per run, None: all, plus the baseline), their
    paired differences, and the baseline's label."""
    c = T.comparison(runs, baseline)
    if c.baseline is None:
        return c.configs, pd.DataFrame(), ""
    keep = c.shown(top)
    return c.configs[keep], c.differences()[keep.to_numpy()], c.base_label


def _num(v: float) -> str:
    return f"{v:.2f}"


def _cell(mean: float, std: float, bold: bool) -> str:
    if mean is None or math.isnan(mean):
        return "--"
    m = rf"\textbf{{{_num(mean)}}}" if bold else _num(mean)
    return m if std is None or math.isnan(std) else rf"{m} $\pm$ {_num(std)}"


def _signed(v: float, mark: str = "") -> str:
    return f"${v:+.2f}{mark}$".replace("+", "{+}")


def _delta_cell(row: pd.Series, group: str) -> str:
    if row["is_baseline"]:
        return "baseline"
    mean, lo, hi, n = (row[f"delta_{group}{k}"] for k in ("", "_low", "_high", "_n"))
    if not n:
        return "--"
    if math.isnan(lo):
        return f"{_signed(mean)} (1 seed)"
    dagger = r"^\dagger" if row[f"delta_{group}_noise"] else ""
    return rf"{_signed(mean, dagger)} {{\scriptsize [{_signed(lo)}, {_signed(hi)}]}}"


def _boot_cell(row: pd.Series, name: str, group: str, digits: int) -> str:
    point, lo, hi = (row[f"{name}_{group}{k}"] for k in ("", "_low", "_high"))
    if math.isnan(point):
        return "--"
    if math.isnan(lo):
        return f"{point:.{digits}f}"
    return rf"{point:.{digits}f} {{\scriptsize [{lo:.{digits}f}, {hi:.{digits}f}]}}"


def latex(runs: dict[str, pd.DataFrame], baseline: str | None = None, top: int | None = 5) -> str:
    c = T.comparison(runs, baseline)
    several = len(runs) > 1
    names = ", ".join(runs)
    lines = [f"% ltsearch compare: {names}", r"% needs \usepackage{booktabs}"]
    if c.baseline is None:
        return "\n".join(lines + ["% no finished configurations"]) + "\n"
    keep, base = c.shown(top), c.base_label
    configs, diffs = c.configs[keep], c.differences()[keep.to_numpy()]
    lead = ["Run", "Configuration"] if several else ["Configuration"]
    spec = "l" * len(lead)
    best = {m: configs[f"{m}_mean"].max() for m, _ in GROUPS}
    lines += [r"\begin{table}[t]", r"\centering",
              r"\caption{Test accuracy (\%) of " + escape(names) + r": mean $\pm$ std over seeds, configurations "
              r"ranked by mean validation accuracy; best per column in bold; -- where the group has no class; "
              r"$^\diamond$ non-dominated in validation many- and few-shot accuracy.}",
              rf"\begin{{tabular}}{{{spec}rrrr}}", r"\toprule",
              " & ".join(lead + [g for _, g in GROUPS]) + r" \\", r"\midrule"]
    fronts = {name: pareto.front(t) for name, t in runs.items()}
    for _, r in configs.iterrows():
        front = r"$^\diamond$" if r["config"] in fronts[r["run"]] else ""  # the many/few front (report.pareto)
        head = [escape(r["run"]), escape(r["config"]) + front] if several else [escape(r["config"]) + front]
        cells = [_cell(r[f"{m}_mean"], r[f"{m}_std"], bool(r[f"{m}_mean"] == best[m])) for m, _ in GROUPS]
        lines.append(" & ".join(head + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    lines += [r"\begin{table}[t]", r"\centering",
              r"\caption{Paired per-seed difference in test accuracy (points) to the baseline "
              + escape(base) + r": mean over the seeds both trained, with its 95\% Student-$t$ confidence "
              r"interval; $^\dagger$ the interval contains 0 (within seed noise).}",
              rf"\begin{{tabular}}{{{spec}r{'l' * len(GROUPS)}}}", r"\toprule",
              " & ".join(lead + ["Seeds"] + [rf"$\Delta$ {g}" for _, g in GROUPS]) + r" \\", r"\midrule"]
    for _, r in diffs.iterrows():
        head = [escape(r["run"]), escape(r["config"])] if several else [escape(r["config"])]
        lines.append(" & ".join(head + [str(int(r["pairs"]))] + [_delta_cell(r, g.lower()) for _, g in GROUPS]) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}", ""]
    iv = c.intervals(keep)
    lines += [r"\begin{table}[t]", r"\centering",
              r"\caption{Interquartile mean of test accuracy (\%) over the runs of each configuration and the "
              r"probability that a run beats a run of the baseline " + escape(base) + r" (all pairs of runs, ties "
              r"half; Agarwal et al.\ 2021), with 95\% percentile bootstrap intervals.}",
              rf"\begin{{tabular}}{{{spec}r{'l' * 2 * len(GROUPS)}}}", r"\toprule",
              " & ".join(lead + ["Runs"] + [f"IQM {g}" for _, g in GROUPS]
                         + [rf"$P(>)$ {g}" for _, g in GROUPS]) + r" \\", r"\midrule"]
    for _, r in iv.iterrows():
        head = [escape(r["run"]), escape(r["config"])] if several else [escape(r["config"])]
        cells = [_boot_cell(r, "iqm", g.lower(), 2) for _, g in GROUPS]
        cells += ["baseline" if r["is_baseline"] else _boot_cell(r, "p_improve", g.lower(), 2) for _, g in GROUPS]
        lines.append(" & ".join(head + [str(int(r["units"]))] + cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


def csv(runs: dict[str, pd.DataFrame], baseline: str | None = None, top: int | None = 5) -> str:
    """Every configuration: ``run, rank, configuration``, method/loss/parameters, trial counts,
    ``<metric>_mean/_std``, ``is_baseline``, ``pairs``, ``duplicates``, the ``delta_<group>*``
    columns, ``units`` and the bootstrap columns ``mean_<group>``, ``iqm_<group>``,
    ``p_improve_<group>`` with ``_low`` / ``_high`` (``stats.Comparison.intervals``), ``pareto``.
    Every row has the point values; the bootstrap intervals are computed for the configurations
    the other formats show (the top ``top`` of each run and the baseline; None: all), empty elsewhere."""
    c = T.comparison(runs, baseline)
    configs = c.configs
    if configs.empty:
        return ""
    diffs = c.differences()
    iv = c.intervals(boot=c.shown(top))
    out = configs.drop(columns=["config_key", "label", "plain_ce"]).rename(columns={"config": "configuration"})
    extra = diffs.drop(columns=["run", "config", "label"]).reset_index(drop=True)
    boot = iv.drop(columns=["run", "config", "label", "is_baseline"]).reset_index(drop=True)
    out = pd.concat([out.reset_index(drop=True), extra, boot], axis=1)
    params = [p for p in S.searched_params(out) if p in out]
    out[params] = out[params].astype(object)  # float_format rounds float columns only: parameters stay exact
    out["pareto"] = pareto.flags(runs, configs)  # non-dominated in (val many, val few) within its run
    buf = io.StringIO()
    out.to_csv(buf, index=False, float_format="%.4f")
    return buf.getvalue()
