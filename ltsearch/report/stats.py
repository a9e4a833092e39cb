"""Paired per-seed differences to a baseline configuration, with Student-t 95 % confidence intervals.

Two configurations trained with the same seed share the data order, the initialisation and the
subset, so their difference on that seed is far less noisy than either accuracy alone. For each
configuration X and the baseline B, over the seeds s where both have an ok trial:

    d_s = X_s − B_s,   mean d̄,   sample std s_d (ddof=1),   n pairs
    95 % CI = d̄ ± t_{0.975, n−1} · s_d / √n      (scipy.stats.t; undefined for n < 2)

A difference is **within seed noise** when its interval contains 0. Computed for overall test
accuracy and the many/medium/few groups (a group that is empty for either side has no pairs).

The baseline (``--baseline``): a configuration named by its label (``run: label`` when several
runs are compared), by default single-branch CE (method ``single``, loss ``ce``; the one with the
best mean validation accuracy if there are several), else the first configuration shown.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ltsearch.errors import UserError
from ltsearch.report import summary as S

LEVEL = 0.95
DELTA_METRICS = (("test_acc", "overall"), ("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"))


def t_interval(diffs: Sequence[float], level: float = LEVEL) -> tuple[float, float, float, int]:
    """``(mean, low, high, n)`` of the Student-t interval of the mean; NaN bounds for n < 2."""
    d = np.asarray([x for x in diffs if x is not None and not math.isnan(x)], dtype=float)
    n = len(d)
    if n == 0:
        return math.nan, math.nan, math.nan, 0
    mean = float(d.mean())
    if n < 2:
        return mean, math.nan, math.nan, 1
    half = float(sps.t.ppf(0.5 + level / 2, n - 1)) * float(d.std(ddof=1)) / math.sqrt(n)
    return mean, mean - half, mean + half, n


def within_noise(low: float, high: float) -> bool | None:
    """True when the interval contains 0; None when there is no interval."""
    if math.isnan(low) or math.isnan(high):
        return None
    return bool(low <= 0.0 <= high)


def configurations(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All configurations of all runs, in display order (runs in order, each ranked by mean val
    accuracy): the ``config_summary`` columns plus ``run`` and ``label`` (``run: config`` when
    there are several runs)."""
    parts = []
    for name, trials in runs.items():
        if trials.empty:
            continue
        s = S.config_summary(trials)
        s.insert(0, "run", name)
        s["label"] = [f"{name}: {c}" for c in s["config"]] if len(runs) > 1 else list(s["config"])
        parts.append(s)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def _rows(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Every ok trial with ``run``, ``config_key`` and ``seed``."""
    parts = []
    for name, trials in runs.items():
        if trials.empty:
            continue
        df = S.with_configs(trials)
        df = df[df["status"] == "ok"].copy()
        df["run"] = name
        parts.append(df)
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def choose_baseline(configs: pd.DataFrame, name: str | None = None) -> int | None:
    """Index (into ``configurations``) of the baseline; UserError for a name that matches none or several."""
    if configs.empty:
        return None
    if name is not None:
        hits = configs.index[(configs["label"] == name) | (configs["config"] == name)
                             | (configs["run"] + ": " + configs["config"] == name)].tolist()
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            raise UserError(f"--baseline {name!r} names a configuration of several runs; "
                            f"write it as 'RUN: {name}' ({', '.join(configs.loc[hits, 'run'])})")
        shown = ", ".join(repr(x) for x in configs["label"].head(8))
        raise UserError(f"--baseline {name!r}: no such configuration; configurations: {shown}"
                        + (" …" if len(configs) > 8 else ""))
    ok = configs[configs["n_ok"] > 0]
    if {"method", "loss"} <= set(ok.columns):
        ce = ok[(ok["method"] == "single") & (ok["loss"] == "ce")]
        if len(ce):
            return int(ce["val_acc_mean"].astype(float).idxmax()) if ce["val_acc_mean"].notna().any() else int(ce.index[0])
    return int(ok.index[0]) if len(ok) else int(configs.index[0])


def paired_differences(runs: dict[str, pd.DataFrame], baseline: str | None = None) -> tuple[pd.DataFrame, str]:
    """One row per configuration (display order): ``run, config, label, is_baseline, pairs``
    and, per group g in overall/many/medium/few, ``delta_g, delta_g_low, delta_g_high, delta_g_n,
    delta_g_noise`` (noise: True/False, None without an interval). Returns the table and the
    baseline's label ('' when there is nothing to compare)."""
    configs = configurations(runs)
    b = choose_baseline(configs, baseline)
    if b is None:
        return pd.DataFrame(), ""
    rows = _rows(runs)
    base = configs.loc[b]
    metrics = [m for m, _ in DELTA_METRICS]

    def per_seed(run: str, key: str) -> pd.DataFrame:
        """One row per seed (a seed trained twice, e.g. a re-run with another --set, is averaged)."""
        return rows[(rows["run"] == run) & (rows["config_key"] == key)].groupby("seed")[metrics].mean()

    base_rows = per_seed(base["run"], base["config_key"])
    out = []
    for i, c in configs.iterrows():
        mine = per_seed(c["run"], c["config_key"])
        seeds = sorted(set(mine.index) & set(base_rows.index))
        row = {"run": c["run"], "config": c["config"], "label": c["label"], "is_baseline": i == b, "pairs": len(seeds)}
        for metric, g in DELTA_METRICS:
            diffs = [float(mine.at[s, metric]) - float(base_rows.at[s, metric]) for s in seeds
                     if pd.notna(mine.at[s, metric]) and pd.notna(base_rows.at[s, metric])]
            mean, lo, hi, n = t_interval(diffs)
            row.update({f"delta_{g}": mean, f"delta_{g}_low": lo, f"delta_{g}_high": hi, f"delta_{g}_n": n,
                        f"delta_{g}_noise": within_noise(lo, hi)})
        out.append(row)
    return pd.DataFrame(out), str(base["label"])


def fmt_delta(row: pd.Series, group: str, noise_mark: str = " within noise") -> str:
    """``'+1.20 [-0.35, +2.75]'`` (+ the noise mark when the interval contains 0); ``'+1.20 (1 seed)'``
    without an interval; ``'n/a'`` without pairs; ``'baseline'`` for the baseline itself."""
    if row["is_baseline"]:
        return "baseline"
    mean, lo, hi, n = (row[f"delta_{group}{k}"] for k in ("", "_low", "_high", "_n"))
    if not n:
        return "n/a"
    if math.isnan(lo):
        return f"{mean:+.2f} (1 seed)"
    return f"{mean:+.2f} [{lo:+.2f}, {hi:+.2f}]" + (noise_mark if row[f"delta_{group}_noise"] else "")


def delta_display(diffs: pd.DataFrame) -> pd.DataFrame:
    """The paired-difference table as display strings (html / markdown)."""
    if diffs.empty:
        return pd.DataFrame()
    table = pd.DataFrame({"configuration": diffs["label"], "paired seeds": diffs["pairs"]})
    for _, g in DELTA_METRICS:
        table[f"Δ {g} [95% CI]"] = [fmt_delta(r, g) for _, r in diffs.iterrows()]
    return table.reset_index(drop=True)


NOTE = ("paired per-seed difference to the baseline (same seed, both ok): mean [95% Student-t CI]; "
        "'within noise': the interval contains 0, the difference is within seed-to-seed noise.")
