"""Aggregate trial rows: configurations (rows sharing ``config_key``) with mean ± std over seeds."""

from __future__ import annotations

import pandas as pd

METRICS = ("val_acc", "test_acc", "test_many", "test_medium", "test_few")


def param_columns(trials: pd.DataFrame) -> list[str]:
    """Searched parameters are the columns named by a dotted path."""
    return [c for c in trials.columns if "." in c]


def best_configs(trials: pd.DataFrame) -> pd.DataFrame:
    ok = trials[trials["status"] == "ok"] if len(trials) else trials
    if ok.empty:
        return pd.DataFrame()
    keys = ["method", "loss", *param_columns(ok)]
    g = ok.groupby("config_key", dropna=False)
    table = g[keys].first()
    table["seeds"] = g.size()
    for m in METRICS:
        table[m] = g[m].mean()
    table["val_std"] = g["val_acc"].std(ddof=0)
    return table.sort_values("val_acc", ascending=False).reset_index(drop=True)
