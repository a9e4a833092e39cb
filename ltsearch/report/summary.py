"""Pure pandas functions that compute what the report shows; figures.py only draws them.

Rules (the report and compare pages rely on these):

- **Searched parameters** are the ``trials`` columns whose name contains a ``.`` (the dotted path
  of the spec, e.g. ``method.gamma``); ``spec.yaml`` is not needed.
- **A configuration** is one stored ``config_key`` (the resolved experiment without its seeds, as
  the run wrote it); its rows differ only by ``seed`` and ``subset_seed``. Rows of an older run
  without one are keyed by the JSON list of ``(method, loss, *searched parameters)``. ``config`` is
  a short label from the searched values (``#0``, ``#1`` where two keys print alike).
- Every function is a group-by over the rows (labels are built once per configuration), so a
  sweep of 10,000 trials is summarised in a fraction of a second.
- **Statistics** are over the ``ok`` trials of a configuration: mean and sample std (ddof=1, so a
  single seed has no std). ``failed`` / ``stopped`` trials are counted, never averaged.
- **Ranking** is by mean ``val_acc``, descending; configurations without an ok trial come last.
- An empty many/medium/few group is NaN, shown as ``n/a``, never 0.
"""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pandas as pd

from ltsearch.results.schema import schedule_columns

METRICS = ("val_acc", "test_acc", "test_many", "test_medium", "test_few")
GROUPS = (("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"), ("test_acc", "overall"))
STATUSES = ("ok", "failed", "stopped")


def searched_params(trials: pd.DataFrame) -> list[str]:
    """The searched parameters: every trials column whose name contains a '.', sorted."""
    return sorted(c for c in trials.columns if "." in c)


def _plain(v: Any) -> Any:
    if v is None or (isinstance(v, float) and math.isnan(v)) or v is pd.NA:
        return None
    if isinstance(v, np.generic):
        return v.item()
    return v


def fmt_value(v: Any) -> str:
    v = _plain(v)
    if v is None:
        return "—"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def fmt_pm(mean: float, std: float, n: int | None = None) -> str:
    """``'71.20 ± 0.35'``; ``'n/a'`` for NaN; no ± part when std is undefined (one seed)."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return f"{mean:.2f}"
    return f"{mean:.2f} ± {std:.2f}"


def short_names(params: list[str]) -> dict[str, str]:
    """Last path component of each parameter where unique, else the full dotted name."""
    last = [p.rsplit(".", 1)[-1] for p in params]
    return {p: (s if last.count(s) == 1 else p) for p, s in zip(params, last)}


def choice_label(value: Any) -> str:
    """A searched whole section as stored (``name=single, loss=focal``) as ``single(loss=focal)``."""
    parts = [p.split("=", 1) for p in str(value).split(", ")]
    if len(parts[0]) != 2 or parts[0][0] != "name":
        return str(value)
    rest = ", ".join("=".join(p) for p in parts[1:])
    return f"{parts[0][1]}({rest})" if rest else parts[0][1]


def _param_label(param: str, name: str, value: Any) -> str:
    return choice_label(value) if param.endswith(".choice") else f"{name}={fmt_value(value)}"


def _value_keys(df: pd.DataFrame, cols: list[str]) -> pd.Series:
    """``config_key`` of runs written before the store kept one: a JSON list of ``cols``' values,
    computed once per distinct combination (a group-by, not a pass over the rows)."""
    if not cols:
        return pd.Series(json.dumps([]), index=df.index, dtype=object)
    gid = df.groupby(cols, dropna=False, sort=False).ngroup()
    first = df.loc[~gid.duplicated(), cols]
    keys = {g: json.dumps([_plain(v) for v in row], default=str)
            for g, row in zip(gid[first.index], first.itertuples(index=False, name=None))}
    return gid.map(keys).astype(object)


def with_configs(trials: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``trials`` with ``config_key`` and ``config`` (label) filled in.

    ``config_key`` is the stored one (the run writes it: a hash of the resolved experiment without
    ``seed`` and ``data.subset_seed``), so a re-run with an unsearched value changed is another
    configuration, never more seeds of the first; rows without it (runs of an older ltsearch) get
    the JSON list of their method, loss and searched values. Labels are built once per
    configuration; two keys with one label get ``#0``, ``#1``."""
    df = trials.copy().reset_index(drop=True)
    params = searched_params(df)
    ident = [c for c in ("method", "loss") if c in df.columns]
    # method/loss head the label only when they vary and are not themselves searched (method.loss,
    # or the whole method section: method.choice already names them)
    varied = [c for c in ident if df[c].nunique(dropna=False) > 1
              and f"method.{c}" not in params and "method.choice" not in params]
    names = short_names(params)
    stored = df["config_key"].astype(object) if "config_key" in df else pd.Series(None, index=df.index, dtype=object)
    has = stored.notna() & (stored.astype(str) != "")
    # rows of an older ltsearch (no stored key) get the JSON of their values; a run that stores every key skips that
    df["config_key"] = stored if has.all() else stored.where(has, _value_keys(df, ident + params))
    if df.empty:
        df["config"] = pd.Series(dtype=object)
        return df
    first = df.loc[~df["config_key"].duplicated(), ["config_key", *ident, *params]]
    labels = {}
    for row in first.to_dict("records"):
        head = "/".join(fmt_value(row[c]) for c in varied)
        body = ", ".join(_param_label(p, names[p], row[p]) for p in params if _plain(row[p]) is not None)
        label = " ".join(x for x in (head, body) if x)
        labels[row["config_key"]] = label or "/".join(fmt_value(row[c]) for c in ident) or "all"
    df["config"] = df["config_key"].map(labels)
    # two keys with the same printed label (values equal to 4 digits, or an unsearched value
    # changed between two runs into one directory) get a suffix
    dup = df.groupby("config")["config_key"].transform("nunique") > 1
    if dup.any():
        codes = {k: i for i, k in enumerate(dict.fromkeys(df.loc[dup, "config_key"]))}
        df.loc[dup, "config"] = [f"{c} #{codes[k]}" for c, k in zip(df.loc[dup, "config"], df.loc[dup, "config_key"])]
    return df


def summarize(df: pd.DataFrame, params: list[str]) -> pd.DataFrame:
    """``config_summary`` of a frame that ``with_configs`` already labelled (group-by operations)."""
    if df.empty:
        return pd.DataFrame()
    ident = [c for c in ("method", "loss") if c in df.columns]
    out = df.loc[~df["config_key"].duplicated(), ["config", "config_key", *ident, *params]].reset_index(drop=True)
    counts = df.groupby(["config_key", "status"]).size().unstack(fill_value=0)
    for s in STATUSES:
        col = counts[s] if s in counts else pd.Series(dtype=int)
        out[f"n_{s}"] = out["config_key"].map(col).fillna(0).astype(int)
    ok = df[df["status"] == "ok"]
    have = [m for m in METRICS if m in ok]
    g = ok[have].apply(pd.to_numeric, errors="coerce").groupby(ok["config_key"])
    means, stds = g.mean(), g.std(ddof=1)
    for m in METRICS:
        out[f"{m}_mean"] = out["config_key"].map(means[m]).astype(float) if m in have else math.nan
        out[f"{m}_std"] = out["config_key"].map(stds[m]).astype(float) if m in have else math.nan
    out["_has"] = out["val_acc_mean"].notna()
    out = out.sort_values(["_has", "val_acc_mean"], ascending=[False, False], kind="stable")
    out = out.drop(columns="_has").reset_index(drop=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    return out


def config_summary(trials: pd.DataFrame) -> pd.DataFrame:
    """One row per configuration, ranked: ``rank, config, config_key, n_ok, n_failed, n_stopped``,
    the method/loss/parameter values, and ``<metric>_mean`` / ``<metric>_std`` for each metric."""
    return summarize(with_configs(trials), searched_params(trials))


# The single-branch method's re-balancing knobs at their off values (``methods.single.SingleParams``'
# defaults; tests/test_stats.py checks they agree): CE with any of them changed is a CE variant
# (class-balanced sampling, DRW, DRS, mixup, post-hoc logit adjustment), not the plain baseline.
PLAIN_SINGLE = {"sampler": "instance", "drw_epoch": None, "drs_epoch": None, "mixup_alpha": 0.0, "posthoc_tau": 0.0}


def _is_default(value: Any, default: Any) -> bool:
    value = _plain(value)
    if value is None:  # not recorded (a conditional parameter left unset): the default
        return True
    if default is None:
        return False
    if isinstance(default, float):
        try:
            return float(value) == default
        except (TypeError, ValueError):
            return False
    return str(value) == str(default)


def plain_ce(df: pd.DataFrame) -> pd.Series:
    """Per row: single-branch cross-entropy with no re-balancing (``PLAIN_SINGLE``). The knobs are
    read from ``config_json`` (the experiment as trained) when the row has it, else from the
    searched columns ``method.<knob>``; a knob neither records is at its default."""
    if not {"method", "loss"} <= set(df.columns):
        return pd.Series(False, index=df.index)
    ce = (df["method"] == "single") & (df["loss"] == "ce")
    out = ce.copy()
    for i in df.index[ce]:
        section: dict[str, Any] | None = None
        text = df.at[i, "config_json"] if "config_json" in df else None
        if isinstance(text, str) and text:
            try:
                section = json.loads(text).get("method")
            except (ValueError, AttributeError):
                section = None
        for knob, default in PLAIN_SINGLE.items():
            if isinstance(section, dict):
                value = section.get(knob, default)
            else:
                value = df.at[i, f"method.{knob}"] if f"method.{knob}" in df else default
            if not _is_default(value, default):
                out[i] = False
                break
    return out


def best_table(trials: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """The best-configurations table as display strings (mean ± std, 'n/a' for empty groups)."""
    s = config_summary(trials)
    if s.empty:
        return pd.DataFrame()
    s = s if top is None else s.head(top)
    table = pd.DataFrame({"rank": s["rank"], "configuration": s["config"]})
    for m, name in (("val_acc", "val acc"), ("test_acc", "test acc"), ("test_many", "many"),
                    ("test_medium", "medium"), ("test_few", "few")):
        table[name] = [fmt_pm(a, b) for a, b in zip(s[f"{m}_mean"], s[f"{m}_std"])]
    table["seeds ok"] = s["n_ok"]
    table["failed"] = s["n_failed"]
    table["stopped"] = s["n_stopped"]
    return table.reset_index(drop=True)


def group_bars(trials: pd.DataFrame, top: int | None = None) -> pd.DataFrame:
    """Long table ``config, group, mean, std`` for the many/medium/few/overall bars (ranked order)."""
    s = config_summary(trials)
    if s.empty:
        return pd.DataFrame(columns=["config", "group", "mean", "std"])
    s = s[s["n_ok"] > 0]
    s = s if top is None else s.head(top)
    rows = [{"config": r["config"], "group": name, "mean": r[f"{m}_mean"], "std": r[f"{m}_std"]}
            for _, r in s.iterrows() for m, name in GROUPS]
    return pd.DataFrame(rows, columns=["config", "group", "mean", "std"])


def is_numeric_param(values: pd.Series) -> bool:
    v = values.dropna()
    return bool(len(v)) and not pd.api.types.is_bool_dtype(v) and pd.api.types.is_numeric_dtype(v) \
        and v.map(lambda x: not isinstance(x, (bool, np.bool_))).all()


def categorical_params(trials: pd.DataFrame) -> list[str]:
    return [p for p in searched_params(trials) if not is_numeric_param(trials[p])]


def param_curve(trials: pd.DataFrame, param: str, metric: str, max_points: int = 12) -> pd.DataFrame:
    """``value, mean, std, n`` of ``metric`` over the ok trials at each value of ``param``
    (pooled over the other parameters and the seeds), sorted by value.

    A numeric parameter with more than ``max_points`` distinct values (sampled by optuna or
    random search) is binned into ``max_points`` quantile bins; ``value`` is then the bin's mean
    parameter value (geometric mean where every value is positive)."""
    ok = trials[(trials["status"] == "ok") & trials[param].notna()]
    if ok.empty or metric not in ok:
        return pd.DataFrame(columns=["value", "mean", "std", "n"])
    vals = pd.to_numeric(ok[metric], errors="coerce")
    key = ok[param].map(_plain)
    if is_numeric_param(ok[param]) and key.nunique() > max_points:
        x = key.astype(float)
        bins = pd.qcut(x.rank(method="first"), max_points, labels=False)
        centre = np.exp(np.log(x).groupby(bins).mean()) if (x > 0).all() else x.groupby(bins).mean()
        key = bins.map(centre)
    g = vals.groupby(key, sort=True)
    out = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1), "n": g.count()})
    out.index.name = "value"
    return out.reset_index()


def heatmap(trials: pd.DataFrame, a: str, b: str, metric: str) -> pd.DataFrame:
    """Pivot of the mean ``metric`` over ok trials: rows = values of ``a``, columns = values of ``b``."""
    ok = trials[trials["status"] == "ok"]
    return ok.pivot_table(index=a, columns=b, values=metric, aggfunc="mean", dropna=False).sort_index()


def parcoords(trials: pd.DataFrame) -> tuple[list[dict[str, Any]], list[float]]:
    """Dimensions (``label, values`` and ``tickvals/ticktext`` for categorical) and colour values,
    over the ok trials that set every searched parameter."""
    ok = trials[(trials["status"] == "ok") & trials["val_acc"].notna()].dropna(subset=searched_params(trials))
    dims = []
    for p in searched_params(trials):
        col = ok[p]
        if is_numeric_param(col):
            dims.append({"label": p, "values": [float(x) for x in col]})
        else:
            cats = sorted({fmt_value(x) for x in col}, key=str)
            code = {c: i for i, c in enumerate(cats)}
            dims.append({"label": p, "values": [code[fmt_value(x)] for x in col],
                         "tickvals": list(range(len(cats))), "ticktext": cats})
    dims.append({"label": "val_acc", "values": [float(x) for x in ok["val_acc"]]})
    return dims, [float(x) for x in ok["val_acc"]]


# fANOVA's forest (ltsearch's settings): Optuna's default 64 trees of depth 64 took 37 s on 500
# trials of two parameters on a 2-core machine; 16 trees of depth 8 took 3.8 s and ranked
# the parameters alike (0.991 / 0.009 both ways).
FANOVA_TREES, FANOVA_DEPTH = 16, 8


def param_importance(trials: pd.DataFrame, min_trials: int = 10, seed: int = 0) -> dict[str, float] | str:
    """fANOVA importance of the searched parameters for ``val_acc`` (optuna.importance on a study
    rebuilt from the ok trials; ``FANOVA_TREES`` trees of depth ``FANOVA_DEPTH``), or a string
    saying why it is not available.

    Only ok trials with every parameter set take part; parameters with a single value are left
    out (they explain nothing); non-numeric parameters become categorical distributions."""
    import optuna

    params = searched_params(trials)
    ok = trials[(trials["status"] == "ok") & trials["val_acc"].notna()].dropna(subset=params)
    if len(ok) < min_trials:
        return f"needs at least {min_trials} ok trials with every parameter set (has {len(ok)})"
    dists: dict[str, Any] = {}
    for p in params:
        col = ok[p].map(_plain)
        if col.nunique() < 2:
            continue
        if is_numeric_param(ok[p]):
            if all(float(x).is_integer() for x in col) and pd.api.types.is_integer_dtype(ok[p]):
                dists[p] = optuna.distributions.IntDistribution(int(col.min()), int(col.max()))
            else:
                dists[p] = optuna.distributions.FloatDistribution(float(col.min()), float(col.max()))
        else:
            dists[p] = optuna.distributions.CategoricalDistribution(sorted({str(x) for x in col}))
    if not dists:
        return "no searched parameter takes more than one value"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(direction="maximize")
    for _, r in ok.iterrows():
        values = {}
        for p, d in dists.items():
            v = _plain(r[p])
            values[p] = str(v) if isinstance(d, optuna.distributions.CategoricalDistribution) else \
                int(v) if isinstance(d, optuna.distributions.IntDistribution) else float(v)
        study.add_trial(optuna.trial.create_trial(params=values, distributions=dists, value=float(r["val_acc"])))
    if len(dists) == 1:
        return {next(iter(dists)): 1.0}
    try:
        ev = optuna.importance.FanovaImportanceEvaluator(n_trees=FANOVA_TREES, max_depth=FANOVA_DEPTH, seed=seed)
        imp = optuna.importance.get_param_importances(study, evaluator=ev)
    except Exception as e:  # noqa: BLE001 - a report shows why, it does not fail
        return f"importance failed: {type(e).__name__}: {e}"
    return {k: float(v) for k, v in imp.items()}


def _epoch_x(e: pd.DataFrame) -> pd.Series:
    """Epoch axis of one trial; two-stage runs that restart the count are laid end to end."""
    if e["epoch"].is_unique:
        return e["epoch"]
    return pd.Series(np.arange(1, len(e) + 1), index=e.index)


def learning_curves(trials: pd.DataFrame, epochs: pd.DataFrame, configs: list[str] | None = None) -> pd.DataFrame:
    """Long table ``config, column, epoch, mean, std`` over the seeds of each configuration, for
    ``val_acc``, ``train_loss`` and every schedule column with a non-null value."""
    cols = ["config", "column", "epoch", "mean", "std"]
    if epochs.empty:
        return pd.DataFrame(columns=cols)
    df = with_configs(trials)[["trial_id", "config"]]
    e = epochs.merge(df, on="trial_id", how="inner")
    if configs is not None:
        e = e[e["config"].isin(configs)]
    if e.empty:
        return pd.DataFrame(columns=cols)
    e = e.copy()
    e["x"] = pd.concat([_epoch_x(g) for _, g in e.groupby("trial_id", sort=False)])
    wanted = [c for c in ("val_acc", "train_loss", *schedule_columns(epochs.columns)) if c in e and e[c].notna().any()]
    parts = []
    for c in wanted:
        g = pd.to_numeric(e[c], errors="coerce").groupby([e["config"], e["x"]])
        part = pd.DataFrame({"mean": g.mean(), "std": g.std(ddof=1)}).reset_index()
        part = part.rename(columns={"x": "epoch"})
        part["column"] = c
        parts.append(part.dropna(subset=["mean"]))
    return pd.concat(parts, ignore_index=True)[cols] if parts else pd.DataFrame(columns=cols)


def best_and_baseline(trials: pd.DataFrame) -> tuple[pd.Series | None, pd.Series | None, str]:
    """The best ok trial (highest val_acc) and the baseline it is compared with.

    Baseline: the ok trial with method 'single' and loss 'ce' (highest val_acc; plain CE, without
    re-balancing, ``plain_ce``, before CE variants) if the run has one and it is not the best trial's
    own configuration; else a trial of the worst-ranked configuration. Within the baseline
    configuration the trial with the best trial's seed is preferred."""
    df = with_configs(trials)
    ok = df[(df["status"] == "ok") & df["val_acc"].notna()]
    if ok.empty:
        return None, None, ""
    best = ok.loc[ok["val_acc"].idxmax()]
    ce = ok[(ok.get("method") == "single") & (ok.get("loss") == "ce")] if {"method", "loss"} <= set(ok) else ok.iloc[0:0]
    ce = ce[ce["config_key"] != best["config_key"]]
    plain = ce[plain_ce(ce)]
    if len(plain):
        pool, why = plain, "single-branch CE (method 'single', loss 'ce', no re-balancing)"
    elif len(ce):
        pool, why = ce, "single-branch CE (method 'single', loss 'ce')"
    else:
        ranked = config_summary(trials)
        ranked = ranked[ranked["n_ok"] > 0]
        worst = ranked.iloc[-1]["config_key"]
        if worst == best["config_key"]:
            return best, None, ""
        pool, why = ok[ok["config_key"] == worst], "worst configuration (no single-branch CE trial)"
    same_seed = pool[pool["seed"] == best["seed"]]
    pool = same_seed if len(same_seed) else pool
    return best, pool.loc[pool["val_acc"].idxmax()], why


def per_class_pair(trials: pd.DataFrame, per_class: pd.DataFrame, column: str = "test_acc") -> pd.DataFrame:
    """``role, trial_id, config, class_index, train_count, split, value`` for the best and baseline
    trials (``split`` is the class's many/medium/few group), rows where ``column`` is non-null only."""
    cols = ["role", "trial_id", "config", "class_index", "train_count", "split", "value"]
    best, base, _ = best_and_baseline(trials)
    rows = []
    for role, t in (("best", best), ("baseline", base)):
        if t is None or per_class.empty:
            continue
        pc = per_class[(per_class["trial_id"] == t["trial_id"]) & per_class[column].notna()]
        for _, r in pc.sort_values("class_index").iterrows():
            rows.append({"role": role, "trial_id": t["trial_id"], "config": t["config"],
                         "class_index": int(r["class_index"]), "train_count": r["train_count"],
                         "split": r.get("split"), "value": float(r[column])})
    return pd.DataFrame(rows, columns=cols)


def status_counts(trials: pd.DataFrame) -> dict[str, int]:
    return {s: int((trials["status"] == s).sum()) for s in STATUSES} if "status" in trials else {}


def split_thresholds(trials: pd.DataFrame) -> str:
    """The many/few thresholds the trials grouped their classes by (``split_many`` / ``split_few``):
    ``'many > 1077, few < 233 training images'``, one entry per dataset and imbalance where they
    differ; ``''`` for rows written before ltsearch recorded them."""
    if not {"split_many", "split_few"} <= set(trials.columns):
        return ""
    df = trials.dropna(subset=["split_many", "split_few"])
    if df.empty:
        return ""
    pairs = df[["split_many", "split_few"]].astype(int).drop_duplicates()
    if len(pairs) == 1:
        m, f = pairs.iloc[0]
        return f"many > {m}, few < {f} training images"
    keys = [c for c in ("dataset", "imbalance") if c in df.columns]
    if not keys:
        return "varies by trial"
    parts = []
    for values, g in df.groupby(keys, sort=True):
        values = values if isinstance(values, tuple) else (values,)
        label = " ".join(("IF" if c == "imbalance" else "") + fmt_value(v) for c, v in zip(keys, values))
        parts.append(f"{label}: > {int(g['split_many'].iloc[0])} / < {int(g['split_few'].iloc[0])}")
    return "; ".join(parts)
