"""The follow-up runs behind docs/results/fashion_mnist_lt.md's findings: the benchmark's recipe
(search_spaces/fashion_lt_benchmark.yaml) with one thing changed per variant, 3 seeds each.

    LTSEARCH_CACHE=... python benchmarks/fashion_investigate.py [--only NAME ...] [--seeds 0 1 2] [--jobs 2]

Two-stage variants reuse the benchmark's stage-1 networks through the stage cache (run the
benchmark first with the same ``LTSEARCH_CACHE`` and they only train their stage 2). Prints one JSON
line per variant: val and test accuracy (overall, many, medium, few), mean ± std over the seeds, and
each seed's values (``per_seed``, in ``--seeds`` order) for paired differences.
The variants follow the benchmark's current (11-epoch) recipe; the follow-ups of the earlier 16-epoch
recipe that docs/results/fashion_mnist_lt.md also cites are this script at commit 78c524d.
"""

from __future__ import annotations

import argparse
import json
import statistics
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any


SPEC = Path(__file__).resolve().parents[1] / "search_spaces" / "fashion_lt_benchmark.yaml"
VARIANTS: dict[str, dict[str, Any]] = {
    # τ-norm: τ and the bias (Kang et al. select τ on validation; the benchmark uses the default τ = 1)
    **{f"tau_norm_tau{t}": {"name": "tau_norm", "tau": t} for t in (0.0, 0.25, 0.5, 0.75)},
    "tau_norm_tau1_bias": {"name": "tau_norm", "tau": 1.0, "keep_bias": True},
    # BWLM: the stage-1 data (the paper's common half vs all classes), the n_j reading, the stage-2 λ
    "bwlm_stage1_all": {"name": "bwlm", "stage1_data": "all"},
    "bwlm_train_counts": {"name": "bwlm", "bfs_counts": "train"},
    "bwlm_no_stage2_decay": {"name": "bwlm", "stage2_weight_decay": None},  # BFS with the recipe's 2e-4
    # GLAG: which part of stage 2 moves the medium classes (the stage-1 network is the benchmark's)
    "glag_head_threshold_1077": {"name": "glag", "stage2_epochs": 3, "head_threshold": 1077},  # the data's many
    "glag_no_afg": {"name": "glag", "stage2_epochs": 3, "afg": False},
    "glag_no_kd": {"name": "glag", "stage2_epochs": 3, "kd": False},
    # SDNHL: the accuracy floor hl_eps (the cap of 1/acc), the hard-aware phase and the loss's scale
    **{f"sdnhl_hl_eps_{e}": {"name": "sdnhl", "hl_epoch": 8, "drw_epoch": 8, "hl_eps": e} for e in (0.01, 0.1, 0.3)},
    "sdnhl_weighted": {"name": "sdnhl", "hl_epoch": 8, "drw_epoch": 8, "hl_reduction": "weighted"},
    "sdnhl_no_hard_aware": {"name": "sdnhl", "hl_epoch": None, "drw_epoch": 8},
    # re-weighting from the start vs deferred (CB-CE against CE-DRW)
    "ce_drw": {"name": "single", "loss": "ce", "drw_epoch": 8},
}
KEYS = ("val_acc", "test_acc", "test_many", "test_medium", "test_few")


def one(job: tuple[str, int]) -> tuple[str, int, dict[str, float]]:
    import torch

    from ltsearch.spec import load_spec, resolve_experiment
    from ltsearch.train.loop import run_trial

    name, seed = job
    torch.set_num_threads(1)
    spec = load_spec(SPEC)
    exp = resolve_experiment(spec.experiment, {"method": VARIANTS[name], "seed": seed})
    out = run_trial(exp)
    return name, seed, {k: out.summary[k] for k in KEYS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", nargs="*", default=None, help=f"variants (default all): {', '.join(VARIANTS)}")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--jobs", type=int, default=2)
    args = ap.parse_args()
    names = args.only or list(VARIANTS)
    jobs = [(n, s) for n in names for s in args.seeds]
    results: dict[str, list[dict[str, float]]] = {n: [] for n in names}
    with ProcessPoolExecutor(args.jobs) as pool:
        for name, seed, metrics in pool.map(one, jobs):
            results[name].append(metrics)
            if len(results[name]) == len(args.seeds):
                row = {"variant": name, "method": VARIANTS[name]}
                for k in KEYS:
                    vals = [m[k] for m in results[name]]
                    row[k] = f"{statistics.mean(vals):.2f} ± {statistics.stdev(vals):.2f}" if len(vals) > 1 else f"{vals[0]:.2f}"
                row["per_seed"] = {k: [round(m[k], 2) for m in results[name]] for k in KEYS}  # seeds in --seeds order
                print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
