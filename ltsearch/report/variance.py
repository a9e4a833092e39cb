"""How much of a configuration's spread comes from the long-tailed subset's draw and how much from
the initialisation (``search.subset_seeds`` × ``search.seeds``).

The model is the nested one-way random-effects model: for subset b of a configuration and
initialisation seed j trained on it,

    y_bj = μ + a_b + e_bj,    a_b ~ N(0, σ²_subset),    e_bj ~ N(0, σ²_init)

(the seed's effect is nested in the subset: one seed on another subset is another data order and
another run). With k subsets, n_b seeds on subset b, N = Σ n_b, subset means ȳ_b and grand mean ȳ:

    MS_between = Σ_b n_b (ȳ_b − ȳ)² / (k − 1)
    MS_within  = Σ_b Σ_j (y_bj − ȳ_b)² / (N − k)
    n0         = (N − Σ_b n_b² / N) / (k − 1)          (= n for n seeds on every subset)
    σ̂²_init   = MS_within,     σ̂²_subset = max(0, (MS_between − MS_within) / n0)

the ANOVA (method-of-moments) estimators of the one-way classification, balanced or not (Searle,
Casella & McCulloch 1992, *Variance Components*, ch. 3, "The 1-way classification": E[MS_within] =
σ²_init, E[MS_between] = σ²_init + n0 σ²_subset; a negative estimate of σ²_subset is truncated at
0, as they discuss). ``subset share`` = σ̂²_subset / (σ̂²_subset + σ̂²_init),
the intraclass correlation. **Pooled** over configurations (each its own mean, the two variances
shared), the sums of squares and their degrees of freedom add up, and so do the n0 numerators:
n0 = Σ_c (N_c − Σ_b n_cb² / N_c) / Σ_c (k_c − 1). ``swing`` is the range of the subset means of a
configuration (the subset draw's effect on a reported mean, as KaihuaTang/Long-Tailed-Recognition.pytorch#9
measures it). A configuration needs two subsets and one subset with two seeds to be decomposed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

import pandas as pd

from ltsearch.report import summary as S

METRICS = (("test_acc", "overall"), ("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"),
           ("val_acc", "val acc"))


@dataclass(frozen=True)
class Sums:
    """The sums of squares of one configuration (or several pooled)."""

    ss_between: float
    df_between: int
    ss_within: float
    df_within: int
    n0_numerator: float  # N − Σ n_b² / N
    mean: float = math.nan
    swing: float = math.nan
    subsets: int = 0
    runs: int = 0

    @property
    def n0(self) -> float:
        return self.n0_numerator / self.df_between if self.df_between else math.nan

    @property
    def var_init(self) -> float:
        return self.ss_within / self.df_within if self.df_within else math.nan

    @property
    def var_subset(self) -> float:
        if not self.df_between or not self.df_within:
            return math.nan
        return max(0.0, (self.ss_between / self.df_between - self.var_init) / self.n0)

    @property
    def subset_share(self) -> float:
        total = self.var_subset + self.var_init
        return self.var_subset / total if total > 0 else math.nan


def sums(groups: Sequence[Sequence[float]]) -> Sums:
    """The sums of squares of one configuration: ``groups[b]`` holds its values on subset b."""
    groups = [[float(v) for v in g if v is not None and not math.isnan(float(v))] for g in groups]
    groups = [g for g in groups if g]
    n = [len(g) for g in groups]
    total = sum(n)
    if len(groups) < 2:
        return Sums(0.0, 0, 0.0, 0, 0.0, subsets=len(groups), runs=total)
    means = [sum(g) / len(g) for g in groups]
    grand = sum(sum(g) for g in groups) / total
    ssb = sum(nb * (m - grand) ** 2 for nb, m in zip(n, means))
    ssw = sum((v - m) ** 2 for g, m in zip(groups, means) for v in g)
    return Sums(ssb, len(groups) - 1, ssw, total - len(groups), total - sum(x * x for x in n) / total,
                mean=grand, swing=max(means) - min(means), subsets=len(groups), runs=total)


def pooled(parts: Iterable[Sums]) -> Sums:
    """Configurations pooled: their sums of squares, degrees of freedom and n0 numerators added."""
    parts = [p for p in parts if p.df_between and p.df_within]
    if not parts:
        return Sums(0.0, 0, 0.0, 0, 0.0)
    return Sums(sum(p.ss_between for p in parts), sum(p.df_between for p in parts),
                sum(p.ss_within for p in parts), sum(p.df_within for p in parts),
                sum(p.n0_numerator for p in parts), subsets=sum(p.subsets for p in parts),
                runs=sum(p.runs for p in parts))


def has_subsets(trials: pd.DataFrame) -> bool:
    """Whether the run's ok trials were trained on more than one subset."""
    return "subset_seed" in trials and trials.loc[trials["status"] == "ok", "subset_seed"].nunique() > 1


def by_configuration(trials: pd.DataFrame, metric: str) -> dict[str, Sums]:
    """``{configuration label: Sums}`` of ``metric`` over the ok trials (ranked order). A
    configuration is its stored ``config_key`` (``summary.with_configs``); two ok rows on one
    (subset, seed) — the same configuration trained twice — are one run, their mean (as the
    paired statistics of ``report.stats`` count them). One group-by over the rows."""
    if not has_subsets(trials) or metric not in trials:
        return {}
    df = S.with_configs(trials)
    order = list(S.summarize(df, S.searched_params(trials))["config"])
    ok = df[df["status"] == "ok"]
    runs = (pd.to_numeric(ok[metric], errors="coerce").groupby([ok["config"], ok["subset_seed"], ok["seed"]])
            .mean().dropna())
    by_subset = {label: [list(g.to_numpy(dtype=float)) for _, g in per.groupby(level=1, sort=True)]
                 for label, per in runs.groupby(level=0, sort=False)}
    return {label: sums(by_subset.get(label, [])) for label in order}


def configuration_table(trials: pd.DataFrame, metric: str = "test_acc") -> pd.DataFrame:
    """One row per configuration that can be decomposed: subsets × runs, mean, σ subset, σ init,
    subset share and swing (display strings)."""
    rows = []
    for label, s in by_configuration(trials, metric).items():
        if not (s.df_between and s.df_within):
            continue
        rows.append({"configuration": label, "subsets": s.subsets, "runs": s.runs, "mean": f"{s.mean:.2f}",
                     "σ subset": f"{math.sqrt(s.var_subset):.2f}", "σ init": f"{math.sqrt(s.var_init):.2f}",
                     "subset share": f"{s.subset_share:.0%}" if not math.isnan(s.subset_share) else "n/a",
                     "swing of subset means": f"{s.swing:.2f}"})
    return pd.DataFrame(rows)


def pooled_table(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per metric (overall / many / medium / few test accuracy, val accuracy): the pooled
    σ subset, σ init, subset share and degrees of freedom."""
    rows = []
    for metric, name in METRICS:
        p = pooled(by_configuration(trials, metric).values())
        if not (p.df_between and p.df_within):
            continue
        rows.append({"metric": name, "σ subset": f"{math.sqrt(p.var_subset):.2f}",
                     "σ init": f"{math.sqrt(p.var_init):.2f}",
                     "subset share": f"{p.subset_share:.0%}" if not math.isnan(p.subset_share) else "n/a",
                     "df subset / init": f"{p.df_between} / {p.df_within}"})
    return pd.DataFrame(rows)


NOTE = ("Spread of a configuration's accuracy split into the subset draw (search.subset_seeds) and the "
        "initialisation (search.seeds): nested one-way random-effects model, ANOVA estimators (Searle, Casella & "
        "McCulloch 1992, Variance Components, ch. 3), σ² subset = (MS between − MS within) / n0 truncated at 0, σ² init = MS within; "
        "subset share = σ² subset / (σ² subset + σ² init). Pooled: the configurations' sums of squares added "
        "(each configuration its own mean). Swing: the range of a configuration's subset means.")
