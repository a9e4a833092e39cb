"""Time the comparison statistics on a synthetic trials frame of a large sweep.

``python benchmarks/stats_scale.py [--configs 3300] [--seeds 3]``: builds a trials frame as the
store returns it (``config_key`` and ``config_json`` stored, three searched parameters, a plain-CE
configuration among them, ``subset_seed`` 0) with ``configs × seeds`` ok rows and times
``summary.config_summary``, ``stats.paired_differences``, ``stats.intervals`` (every
configuration), ``compare.markdown`` (top 5) and ``tables.csv`` (every row; intervals for the top 5, then for
every row), each once,
in one process. Loading is not timed (``benchmarks`` of the store do that).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd


def frame(configs: int, seeds: int, rng_seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(rng_seed)
    losses = np.array(["ce", "focal", "ldam", "balanced_softmax"])
    loss = losses[rng.integers(0, len(losses), configs)]
    loss[0] = "ce"
    lr = np.exp(rng.uniform(np.log(1e-3), np.log(0.3), configs))
    gamma = np.round(rng.uniform(0, 3, configs), 3)
    quality = rng.normal(0, 2, configs)
    rows = []
    for c in range(configs):
        exp = {"method": {"name": "single", "loss": str(loss[c]), "sampler": "instance", "drw_epoch": None,
                          "drs_epoch": None, "mixup_alpha": 0.0, "posthoc_tau": 0.0}, "optim": {"lr": float(lr[c])}}
        for s in range(seeds):
            v = 60 + quality[c] + rng.normal(0, 1)
            rows.append({"trial_id": f"t{c}-{s}", "sweep": "scale", "status": "ok", "method": "single",
                         "loss": str(loss[c]), "seed": s, "subset_seed": 0, "val_acc": v, "test_acc": v - 1,
                         "test_many": v + 10, "test_medium": v - 5, "test_few": v - 20,
                         "config_key": f"k{c:06d}", "config_json": json.dumps({**exp, "seed": s}),
                         "method.loss": str(loss[c]), "optim.lr": float(lr[c]), "loss.gamma": float(gamma[c])})
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--configs", type=int, default=3300)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--only", default="", help="comma-separated step names to time (default: all)")
    args = ap.parse_args()
    from ltsearch.report import compare, stats as T, summary as S, tables

    trials = frame(args.configs, args.seeds)
    runs = {"scale": trials}
    steps = [("config_summary", lambda: S.config_summary(trials)),
             ("paired_differences", lambda: T.paired_differences(runs))]
    if hasattr(T, "intervals"):
        steps.append(("intervals (all configurations)", lambda: T.intervals(runs)))
    steps += [("compare markdown (top 5)", lambda: compare.markdown(runs)), ("compare csv (all)", lambda: tables.csv(runs))]
    if "top" in tables.csv.__code__.co_varnames:
        steps.append(("compare csv (all, --top 0)", lambda: tables.csv(runs, top=None)))
    if args.only:
        steps = [s for s in steps if s[0].split(" (")[0] in args.only.split(",")]
    print(f"{len(trials)} trials, {args.configs} configurations × {args.seeds} seeds")
    for name, fn in steps:
        t0 = time.perf_counter()
        fn()
        print(f"{name:34s} {time.perf_counter() - t0:8.2f} s", flush=True)


if __name__ == "__main__":
    main()
