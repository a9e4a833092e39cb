"""Every configuration against a baseline: paired Student-t differences, bootstrap intervals of the
mean and the interquartile mean, and the probability of improvement.

**A run** of a configuration is one (subset, seed) unit: ``subset_seed`` (the long-tailed subset's
draw, ``search.subset_seeds``; one subset for runs without the column) and the initialisation
``seed``. A configuration is its stored ``config_key`` (``summary.with_configs``). Two ok rows of
one configuration on one unit (the same resolved configuration trained twice) are averaged into
that unit and counted in ``duplicates``; different subsets of one seed are never averaged.

**Paired differences.** Two configurations trained on the same unit share the subset, the data
order and the initialisation, so their difference on it is far less noisy than either accuracy
alone. For each configuration X and the baseline B, over the units u where both have an ok row:

    d_u = X_u − B_u,   mean d̄,   sample std s_d (ddof=1),   n pairs
    95 % CI = d̄ ± t_{0.975, n−1} · s_d / √n      (scipy.stats.t; undefined for n < 2)

A difference is **within seed noise** when its interval contains 0.

**Bootstrap intervals** (Agarwal et al. 2021, "Deep RL at the edge of the statistical precipice",
the statistics of rliable; rliable itself is not a dependency, ``scipy.stats.bootstrap`` does the
resampling): over X's runs x_1..x_n, the mean, the interquartile mean IQM = ``scipy.stats.trim_mean(x,
0.25)`` (the mean of the middle 50 %, rliable's ``iqm``), and the probability of improvement

    P(X > B) = 1/(n m) Σ_i Σ_j [x_i > b_j] + ½ [x_i = b_j]      (all n·m pairs of runs, ties half)

each with a 95 % percentile bootstrap interval (rliable's default method), X and B resampled
independently for P (scipy resamples each sample on its own: the stratified bootstrap of rliable
with one task). ``RESAMPLES`` resamples, a fixed generator (``SEED``) per call: a configuration's
interval depends only on its own runs and the baseline's, never on which other configurations are
computed with it. A configuration with one run has its point values and no interval (NaN).

The groups are overall test accuracy and the many/medium/few groups (an empty group is NaN).
Every step is a group-by over the rows, so a sweep of thousands of configurations costs one pass;
the bootstrap is vectorised over the configurations of one size (``scipy.stats.bootstrap`` with
``vectorized=True`` over a stack of them) and run only for the configurations a table shows
(``Comparison.intervals(boot=...)``; the point values are exact for every row): at 3,300
configurations an interval for each costs about as much as everything else together.

The baseline (``--baseline``): a configuration named by its label (``run: label`` when several
runs are compared); by default plain single-branch CE (method ``single``, loss ``ce``, the default
``instance`` sampler and no DRW / DRS / mixup / post-hoc adjustment, ``summary.plain_ce``), then
any other single-branch CE configuration (a CE variant), the best by mean validation accuracy
among them; else the first configuration shown.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from ltsearch.errors import UserError
from ltsearch.report import summary as S

LEVEL = 0.95
RESAMPLES = 2000
SEED = 0
CHUNK = 4_000_000  # array elements one bootstrap call may hold (configurations × resamples × runs)
NO_SUBSET = -1  # subset_seed of rows written before runs recorded it (one subset)
DELTA_METRICS = (("test_acc", "overall"), ("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"))
UNIT = ["subset_seed", "seed"]


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


# ------------------------------------------------------------------ the statistics of runs


def mean(x: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis)


def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: ``scipy.stats.trim_mean(x, 0.25)`` (a quarter of the runs cut at each end,
    rounded down: 8 runs keep the middle 4, 3 runs keep all 3). With nothing to cut (under 4 runs)
    it is the mean, computed as one: trim_mean's partition is most of a bootstrap's time."""
    if int(0.25 * np.shape(x)[axis]) == 0:
        return np.mean(x, axis=axis)
    return sps.trim_mean(x, 0.25, axis=axis)


def p_improve(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    """P(X > Y) over all pairs of runs, ties half (rliable's ``probability_of_improvement`` for one task)."""
    x = np.moveaxis(np.asarray(x, dtype=float), axis, -1)[..., :, None]
    y = np.moveaxis(np.asarray(y, dtype=float), axis, -1)[..., None, :]
    return ((x > y) + 0.5 * (x == y)).mean(axis=(-2, -1))


def bootstrap(samples: Sequence[np.ndarray], statistic: Callable[..., np.ndarray],
              reference: np.ndarray | None = None,
              wanted: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(point, low, high)`` of ``statistic`` for each sample (``statistic(x)``, or ``statistic(x,
    reference)`` when a reference sample is given), with its percentile bootstrap interval where
    ``wanted`` (a boolean per sample; default: every sample) asks for one, NaN elsewhere.

    Samples of one size are stacked and bootstrapped together (``scipy.stats.bootstrap``,
    ``vectorized=True``; each slice gets the same resampled indices, so a sample's interval is the
    one it would get alone). A sample of one value (or a reference of one) has no interval, an empty
    one no point (NaN)."""
    k = len(samples)
    wanted = np.ones(k, dtype=bool) if wanted is None else np.asarray(wanted, dtype=bool)
    point, low, high = (np.full(k, math.nan) for _ in range(3))
    sizes = np.array([len(s) for s in samples], dtype=int)
    m = 1 if reference is None else len(reference)
    if reference is not None and m == 0:
        return point, low, high
    for n in np.unique(sizes):
        if n == 0:
            continue
        idx = np.flatnonzero(sizes == n)
        stack = np.stack([np.asarray(samples[i], dtype=float) for i in idx])
        ref = () if reference is None else (np.asarray(reference, dtype=float)[None, :],)
        point[idx] = statistic(stack, *ref, axis=-1)
        if n < 2 or (reference is not None and m < 2):
            continue
        sel = np.flatnonzero(wanted[idx])
        step = max(1, CHUNK // (RESAMPLES * int(n) * m))
        for a in range(0, len(sel), step):
            part = sel[a:a + step]
            res = sps.bootstrap((stack[part], *ref), statistic, n_resamples=RESAMPLES, vectorized=True,
                                axis=-1, confidence_level=LEVEL, method="percentile", rng=np.random.default_rng(SEED))
            low[idx[part]], high[idx[part]] = res.confidence_interval
    return point, low, high


# ------------------------------------------------------------------ configurations and runs


def _frames(runs: dict[str, pd.DataFrame]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """``(configurations, units)``: every configuration of every run in display order (runs in
    order, each ranked by mean val accuracy: the ``config_summary`` columns plus ``run``, ``label``
    and ``plain_ce``), and one row per (run, config_key, subset_seed, seed) with an ok trial: the
    metrics' means over its rows and ``copies`` (how many rows)."""
    configs, units = [], []
    metrics = [m for m, _ in DELTA_METRICS]
    for name, trials in runs.items():
        if trials.empty:
            continue
        df = S.with_configs(trials)
        s = S.summarize(df, S.searched_params(trials))
        s.insert(0, "run", name)
        s["label"] = [f"{name}: {c}" for c in s["config"]] if len(runs) > 1 else list(s["config"])
        ce = df[(df.get("method") == "single") & (df.get("loss") == "ce")] if {"method", "loss"} <= set(df) else df.iloc[0:0]
        ce = ce.drop_duplicates("config_key")
        s["plain_ce"] = s["config_key"].map(dict(zip(ce["config_key"], S.plain_ce(ce)))).eq(True)
        configs.append(s)
        ok = df[df["status"] == "ok"]
        u = pd.DataFrame({"run": name, "config_key": ok["config_key"],
                          "subset_seed": pd.to_numeric(ok.get("subset_seed", pd.Series(NO_SUBSET, index=ok.index)),
                                                       errors="coerce").fillna(NO_SUBSET).astype(int),
                          "seed": pd.to_numeric(ok["seed"], errors="coerce")})
        for m in metrics:
            u[m] = pd.to_numeric(ok[m], errors="coerce") if m in ok else math.nan
        g = u.groupby(["run", "config_key", *UNIT], sort=False)
        agg = g[metrics].mean()
        agg["copies"] = g.size()
        units.append(agg.reset_index())
    cols = ["run", "config_key", *UNIT, *metrics, "copies"]
    return (pd.concat(configs, ignore_index=True) if configs else pd.DataFrame(),
            pd.concat(units, ignore_index=True) if units else pd.DataFrame(columns=cols))


def configurations(runs: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """All configurations of all runs, in display order (runs in order, each ranked by mean val
    accuracy): the ``config_summary`` columns plus ``run``, ``label`` (``run: config`` when there
    are several runs) and ``plain_ce``."""
    return _frames(runs)[0]


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
        plain = ce[ce["plain_ce"].astype(bool)] if "plain_ce" in ce else ce
        for pool in (plain, ce):  # plain CE first, then CE variants (a sampler, DRW, ...)
            if len(pool):
                val = pool["val_acc_mean"].astype(float)
                return int(val.idxmax()) if val.notna().any() else int(pool.index[0])
    return int(ok.index[0]) if len(ok) else int(configs.index[0])


@dataclass
class Comparison:
    """Configurations of some runs and their runs (``_frames``), and the baseline's index."""

    configs: pd.DataFrame
    units: pd.DataFrame
    baseline: int | None
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def base_label(self) -> str:
        return "" if self.baseline is None else str(self.configs.loc[self.baseline, "label"])

    def _base_units(self) -> pd.DataFrame:
        b = self.configs.loc[self.baseline]
        u = self.units
        return u[(u["run"] == b["run"]) & (u["config_key"] == b["config_key"])]

    def shown(self, top: int | None) -> pd.Series:
        """Mask of the configurations in the tables: the top ``top`` of each run (None: all) and the baseline."""
        keep = self.configs.groupby("run", sort=False).cumcount() < (len(self.configs) if top is None else top)
        return keep | (self.configs.index == self.baseline)

    def differences(self) -> pd.DataFrame:
        """One row per configuration (display order): ``run, config, label, is_baseline, pairs,
        duplicates`` and, per group g in overall/many/medium/few, ``delta_g, delta_g_low,
        delta_g_high, delta_g_n, delta_g_noise`` (noise: True/False, None without an interval).
        ``pairs``: units both trained; ``duplicates``: units of the configuration with more than one ok row."""
        if "diffs" in self._cache:
            return self._cache["diffs"]
        c, metrics = self.configs, [m for m, _ in DELTA_METRICS]
        base = self._base_units()[[*UNIT, *metrics]]
        pairs = self.units.merge(base, on=UNIT, suffixes=("", "_b"))  # each configuration's units × the baseline's
        keys = ["run", "config_key"]
        out = c[["run", "config", "label", "config_key"]].copy()
        out["is_baseline"] = c.index == self.baseline
        out = out.merge(pairs.groupby(keys).size().rename("pairs"), on=keys, how="left")
        dup = self.units[self.units["copies"] > 1].groupby(keys).size().rename("duplicates")
        out = out.merge(dup, on=keys, how="left")
        for col in ("pairs", "duplicates"):
            out[col] = out[col].fillna(0).astype(int)
        for metric, g in DELTA_METRICS:
            d = (pairs[metric] - pairs[f"{metric}_b"]).groupby([pairs["run"], pairs["config_key"]])
            stats = pd.DataFrame({"m": d.mean(), "s": d.std(ddof=1), "n": d.count()})
            stats = out[keys].merge(stats, left_on=keys, right_index=True, how="left")
            n = stats["n"].fillna(0).astype(int).to_numpy()
            m = stats["m"].to_numpy(dtype=float)
            with np.errstate(invalid="ignore", divide="ignore"):
                half = np.where(n >= 2, sps.t.ppf(0.5 + LEVEL / 2, np.maximum(n - 1, 1))
                                * stats["s"].to_numpy(dtype=float) / np.sqrt(np.maximum(n, 1)), math.nan)
            lo, hi = m - half, m + half
            out[f"delta_{g}"], out[f"delta_{g}_low"], out[f"delta_{g}_high"], out[f"delta_{g}_n"] = m, lo, hi, n
            out[f"delta_{g}_noise"] = pd.Series([within_noise(a, b) for a, b in zip(lo, hi)], dtype=object)
        self._cache["diffs"] = out.drop(columns="config_key")
        return self._cache["diffs"]

    def intervals(self, mask: pd.Series | np.ndarray | None = None,
                  boot: pd.Series | np.ndarray | None = None) -> pd.DataFrame:
        """The bootstrap statistics of the configurations in ``mask`` (default: all), display order:
        ``run, config, label, is_baseline, units`` and, per group g, ``mean_g, mean_g_low,
        mean_g_high, iqm_g, iqm_g_low, iqm_g_high, p_improve_g, p_improve_g_low, p_improve_g_high``
        (P(X > baseline) over all pairs of their runs). ``boot`` (a mask over all configurations,
        default ``mask``): the configurations whose intervals are bootstrapped; the others get the
        point values (exact) and NaN intervals, which keeps an all-rows table of thousands of
        configurations fast."""
        whole = np.ones(len(self.configs), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        wanted = (whole if boot is None else np.asarray(boot, dtype=bool))[whole]
        c = self.configs[whole]
        out = c[["run", "config", "label"]].reset_index(drop=True)
        out["is_baseline"] = (c.index == self.baseline)
        keys = pd.MultiIndex.from_frame(c[["run", "config_key"]])
        u = self.units
        pos = keys.get_indexer(pd.MultiIndex.from_frame(u[["run", "config_key"]]))
        u = u[pos >= 0].assign(_pos=pos[pos >= 0])
        out["units"] = np.bincount(u["_pos"], minlength=len(c))
        base = self._base_units()
        for metric, g in DELTA_METRICS:
            v = u.dropna(subset=[metric]).sort_values("_pos", kind="stable")
            counts = np.bincount(v["_pos"], minlength=len(c))
            samples = np.split(v[metric].to_numpy(dtype=float), np.cumsum(counts)[:-1])
            ref = base[metric].dropna().to_numpy(dtype=float)
            for name, stat, reference in (("mean", mean, None), ("iqm", iqm, None), ("p_improve", p_improve, ref)):
                point, low, high = bootstrap(samples, stat, reference, wanted)
                out[f"{name}_{g}"], out[f"{name}_{g}_low"], out[f"{name}_{g}_high"] = point, low, high
        return out


def comparison(runs: dict[str, pd.DataFrame], baseline: str | None = None) -> Comparison:
    """The configurations of ``runs``, their runs and the baseline (``choose_baseline``)."""
    configs, units = _frames(runs)
    return Comparison(configs, units, choose_baseline(configs, baseline))


def paired_differences(runs: dict[str, pd.DataFrame], baseline: str | None = None) -> tuple[pd.DataFrame, str]:
    """``Comparison.differences`` of every configuration and the baseline's label ('' when there is
    nothing to compare)."""
    c = comparison(runs, baseline)
    return (pd.DataFrame(), "") if c.baseline is None else (c.differences(), c.base_label)


def intervals(runs: dict[str, pd.DataFrame], baseline: str | None = None) -> tuple[pd.DataFrame, str]:
    """``Comparison.intervals`` of every configuration and the baseline's label."""
    c = comparison(runs, baseline)
    return (pd.DataFrame(), "") if c.baseline is None else (c.intervals(), c.base_label)


# ------------------------------------------------------------------ display


def fmt_delta(row: pd.Series, group: str, noise_mark: str = " within noise") -> str:
    """``'+1.20 [-0.35, +2.75]'`` (+ the noise mark when the interval contains 0); ``'+1.20 (1 seed)'``
    without an interval; ``'n/a'`` without pairs; ``'baseline'`` for the baseline itself."""
    if row["is_baseline"]:
        return "baseline"
    mean_, lo, hi, n = (row[f"delta_{group}{k}"] for k in ("", "_low", "_high", "_n"))
    if not n:
        return "n/a"
    if math.isnan(lo):
        return f"{mean_:+.2f} (1 seed)"
    return f"{mean_:+.2f} [{lo:+.2f}, {hi:+.2f}]" + (noise_mark if row[f"delta_{group}_noise"] else "")


def delta_display(diffs: pd.DataFrame) -> pd.DataFrame:
    """The paired-difference table as display strings (html / markdown)."""
    if diffs.empty:
        return pd.DataFrame()
    table = pd.DataFrame({"configuration": diffs["label"], "paired seeds": diffs["pairs"]})
    for _, g in DELTA_METRICS:
        table[f"Δ {g} [95% CI]"] = [fmt_delta(r, g) for _, r in diffs.iterrows()]
    return table.reset_index(drop=True)


def fmt_interval(point: float, low: float, high: float, digits: int = 2, signed: bool = False,
                 missing: str = "n/a") -> str:
    """``'71.20 [70.10, 72.30]'`` (``signed``: ``'+1.20 [-0.35, +2.75]'``); the point alone without an
    interval (one run); ``missing`` without a value."""
    if point is None or math.isnan(point):
        return missing
    f = f"{{:{'+' if signed else ''}.{digits}f}}".format
    if math.isnan(low):
        return f(point)
    return f"{f(point)} [{f(low)}, {f(high)}]"


def improvement_display(iv: pd.DataFrame) -> pd.DataFrame:
    """P(X > baseline) per group with its interval (display strings)."""
    if iv.empty:
        return pd.DataFrame()
    table = pd.DataFrame({"configuration": iv["label"], "runs": iv["units"]})
    for _, g in DELTA_METRICS:
        table[f"P(> baseline) {g}"] = ["baseline" if b else fmt_interval(*(r[f"p_improve_{g}{k}"] for k in ("", "_low", "_high")))
                                       for b, (_, r) in zip(iv["is_baseline"], iv.iterrows())]
    return table


def location_display(iv: pd.DataFrame) -> pd.DataFrame:
    """Mean and IQM per group with their bootstrap intervals (display strings)."""
    if iv.empty:
        return pd.DataFrame()
    table = pd.DataFrame({"configuration": iv["label"], "runs": iv["units"]})
    for _, g in DELTA_METRICS:
        for name, head in (("mean", "mean"), ("iqm", "IQM")):
            table[f"{head} {g}"] = [fmt_interval(*(r[f"{name}_{g}{k}"] for k in ("", "_low", "_high"))) for _, r in iv.iterrows()]
    return table


def duplicates_note(diffs: pd.DataFrame) -> str:
    """One line naming the configurations with a unit trained twice (averaged), or ''."""
    if diffs.empty or "duplicates" not in diffs or not (diffs["duplicates"] > 0).any():
        return ""
    hit = diffs[diffs["duplicates"] > 0]
    names = ", ".join(hit["label"].head(5)) + (" …" if len(hit) > 5 else "")
    return (f"{len(hit)} configuration(s) have a (subset, seed) with more than one ok row (the same resolved "
            f"configuration trained twice; averaged): {names}")


NOTE = ("paired difference to the baseline over the (subset, seed) runs both trained: mean [95% Student-t CI]; "
        "'within noise': the interval contains 0, the difference is within seed-to-seed noise.")
BOOT_NOTE = (f"over the runs (subset, seed) of each configuration: mean and interquartile mean (IQM, the mean of "
             f"the middle 50 %) with 95 % percentile bootstrap intervals ({RESAMPLES} resamples, scipy.stats.bootstrap); "
             "P(> baseline): the probability that a run of the configuration beats a run of the baseline, over all "
             "pairs of runs, ties half (Agarwal et al. 2021), with its bootstrap interval (both sides resampled).")
