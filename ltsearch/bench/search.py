"""Search efficiency (``ltsearch bench --search``): the same space searched by a grid and by Optuna
TPE + ASHA with ltsearch's defaults, over several search seeds, on digits-LT with a small CNN.

The space is loss ∈ {ce, balanced_softmax, ldam} × learning rate ∈ [0.03, 1.0] (grid: the 4 rates
of ``LRS``, 12 cells of 12 epochs = 144 epochs). For search seed s the grid trains with experiment seed
s, and TPE (sampler seed s, same experiment seed) with ASHA gets ``tpe_trials`` samples; its
best-so-far validation accuracy is read against the epochs spent (trials in the order they
finished, a stopped trial counting the epochs it ran). Reported per seed: the grid's best, the
epochs TPE + ASHA needed to come within ``tolerance`` points of it (``epochs_to_grid_best``; null
if it never did), as a fraction of the grid's epochs, and TPE + ASHA's best within the grid's budget.
"""

from __future__ import annotations

import math
import os
import tempfile
from typing import Any

from ltsearch.bench.common import BenchOptions, median, timed

LOSSES = ["ce", "balanced_softmax", "ldam"]
LRS = [0.03, 0.1, 0.3, 1.0]


def search_spec(algorithm: str, epochs: int, seed: int, trials: int = 24, losses: list[str] | None = None,
                lrs: list[float] | None = None) -> Any:
    from ltsearch.spec import Spec

    losses, lrs = losses or LOSSES, lrs or LRS
    if algorithm == "grid":
        space: dict[str, Any] = {"method.loss": {"grid": losses}, "optim.lr": {"grid": lrs}}
        search: dict[str, Any] = {"algorithm": "grid"}
    else:  # ltsearch's defaults for the sampler and ASHA (grace period, reduction factor)
        space = {"method.loss": {"choice": losses}, "optim.lr": {"loguniform": [min(lrs), max(lrs)]}}
        search = {"algorithm": "optuna", "sampler": "tpe", "num_samples": trials, "scheduler": "asha", "seed": seed}
    return Spec.model_validate({
        "name": f"bench_search_{algorithm}_{seed}",
        "experiment": {"data": {"dataset": "digits", "imbalance": 10, "max_per_class": 80, "val_per_class": 40,
                                "splits": {"many": 50, "few": 15}},
                       "model": {"arch": "small_cnn"}, "method": {"name": "single", "loss": "ce"},
                       "optim": {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 32, "epochs": epochs, "warmup": 1,
                                 "lr_schedule": "cosine"}, "device": "cpu"},
        "search": {**search, "space": space, "seeds": [seed], "checkpoint_every": 0}, "resources": {"cpus_per_worker": 1},
    })


def curve(run_dir: str) -> list[tuple[int, float]]:
    """(epochs spent, best val accuracy so far) after each trial, in the order trials finished."""
    from ltsearch.results import load

    trials = load(run_dir)[0].reset_index(drop=True)
    done = trials["epochs_done"].fillna(trials["epochs"]).astype(int)
    order = trials.assign(_done=done).sort_values(["finished_at", "_done"], kind="stable")
    spent = order["_done"].cumsum().tolist()
    best = order["val_acc"].astype(float).fillna(-math.inf).cummax().tolist()
    return [(int(e), float(b)) for e, b in zip(spent, best)]


def run_search(spec: Any, storage: str) -> tuple[list[tuple[int, float]], float]:
    from ltsearch.tune.search import run_sweep

    seconds = timed(lambda: run_sweep(spec, storage=storage, num_cpus=os.cpu_count() or 1))
    return curve(f"{storage}/{spec.name}"), seconds


def compare(grid: list[tuple[int, float]], tpe: list[tuple[int, float]], tolerance: float = 0.5) -> dict[str, Any]:
    budget, grid_best = grid[-1][0], grid[-1][1]
    reached = next((e for e, b in tpe if b >= grid_best - tolerance), None)
    within = [b for e, b in tpe if e <= budget]
    return {"grid_best": grid_best, "grid_epochs": budget, "tpe_best_within_budget": max(within) if within else None,
            "tpe_best": tpe[-1][1], "tpe_epochs": tpe[-1][0], "epochs_to_grid_best": reached,
            "fraction_of_grid_epochs": reached / budget if reached is not None else None}


def measure_search_efficiency(opts: BenchOptions, tolerance: float = 0.5) -> dict[str, Any]:
    seeds = list(range(opts.search_seeds))
    per_seed = {}
    small = opts.search_epochs < 4  # --smoke: a 2 × 2 grid
    losses, lrs = (LOSSES[:2], LRS[::3]) if small else (LOSSES, LRS)
    with tempfile.TemporaryDirectory() as d:
        for seed in seeds:
            grid, grid_s = run_search(search_spec("grid", opts.search_epochs, seed, losses=losses, lrs=lrs), d)
            tpe, tpe_s = run_search(search_spec("tpe_asha", opts.search_epochs, seed, opts.search_trials, losses, lrs), d)
            per_seed[seed] = {**compare(grid, tpe, tolerance), "grid_s": grid_s, "tpe_s": tpe_s,
                              "grid_curve": grid, "tpe_curve": tpe}
    fractions = [r["fraction_of_grid_epochs"] for r in per_seed.values()]
    return {"search_seeds": len(seeds), "tolerance": tolerance,
            "seeds_within_a_third": sum(f is not None and f <= 1 / 3 for f in fractions),
            "median_fraction_of_grid_epochs": median([f if f is not None else math.inf for f in fractions]),
            "per_seed": per_seed}
