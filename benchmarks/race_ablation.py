"""The showcase of docs/results/fashion_lt_race_ablation.md: seed racing, the ablation path and the
subset draw's share of the variance, on Fashion-MNIST-LT (imbalance 100), offline.

    python benchmarks/race_ablation.py [--storage runs/showcase] [--epochs 6] [--max-seeds 10]

1. **Racing.** An 8-configuration grid (whole method sections: CE, focal, class-balanced CE,
   CE with a class-balanced sampler, CE-DRW, LDAM-DRW, balanced softmax, CDT) raced with
   ``search.race: {min_seeds: 2, max_seeds: 10, confidence: 0.95}`` (``ltsearch run``).
2. **Every seed.** The same spec without the race into the same run directory: the race's trials
   are the same trials (one trial id, one result) and are kept; the rest of the 8 × 10 are trained.
   The best configuration by mean validation accuracy over all 10 seeds is compared with the race's.
3. **Ablation paths** (``ltsearch ablate``): CE → the best configuration (every seed), and CE →
   LDAM-DRW over seeds 0–4 (is it the margin or the deferred re-weighting? LDAM without DRW is not
   in the grid: it is trained into ``RUN_DIR/ablation``).
4. **Subset draw vs initialisation.** CE and balanced softmax over ``search.subset_seeds: [0, 1, 2]``
   × seeds 0–2 (a run of its own), decomposed by ``ltsearch.report.variance``.

Everything goes through the ``ltsearch`` command line (Ray Tune, two 1-thread trials at a time on
2 cores). Writes ``<storage>/showcase.json`` (every number of the page, the commit, the machine and
the wall time of each step) and prints the page's tables as markdown.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
METHODS = [  # whole method sections, one configuration each
    {"name": "single", "loss": "ce"},
    {"name": "single", "loss": "focal"},
    {"name": "single", "loss": "cb_ce"},
    {"name": "single", "loss": "ce", "sampler": "class_balanced"},
    {"name": "single", "loss": "ce", "drw_epoch": "DRW"},
    {"name": "single", "loss": "ldam", "drw_epoch": "DRW"},
    {"name": "single", "loss": "balanced_softmax"},
    {"name": "single", "loss": "cdt"},
]


def experiment(epochs: int) -> dict[str, Any]:
    """fashion_lt_benchmark's recipe (LDAM-DRW's: SGD, lr 0.1, momentum 0.9, weight decay 2e-4, batch
    128), scaled from 200 epochs to ``epochs`` with every epoch setting at the same fraction of
    training, floored: warm-up 1, lr × 0.01 at 80 % and 90 % (6 epochs: 4 and 5), DRW from 80 %."""
    m1 = drw_epoch(epochs)
    m2 = max(m1 + 1, int(0.9 * epochs))
    return {"data": {"dataset": "fashion_mnist", "imbalance": 100}, "model": {"arch": "auto"},
            "method": {"name": "single", "loss": "ce"},
            "optim": {"lr": 0.1, "momentum": 0.9, "weight_decay": 2.0e-4, "batch_size": 128, "epochs": epochs,
                      "warmup": 1, "lr_schedule": "step", "milestones": [m1, m2], "lr_decay": 0.01},
            "device": "cpu"}


def drw_epoch(epochs: int) -> int:
    return int(0.8 * epochs)  # 160 of 200


def specs(epochs: int, max_seeds: int) -> dict[str, dict[str, Any]]:
    drw = drw_epoch(epochs)
    methods = [{k: (drw if v == "DRW" else v) for k, v in m.items()} for m in METHODS]
    race = {"name": "fashion_race", "experiment": experiment(epochs),
            "search": {"algorithm": "grid", "space": {"method": {"grid": methods}}, "seeds": list(range(max_seeds)),
                       "race": {"min_seeds": 2, "max_seeds": max_seeds, "confidence": 0.95}},
            "resources": {"workers": 1, "cpus_per_worker": 1}}
    subsets = {"name": "fashion_subsets", "experiment": experiment(epochs),
               "search": {"algorithm": "grid", "space": {"method": {"grid": [methods[0], methods[6]]}},
                          "seeds": [0, 1, 2], "subset_seeds": [0, 1, 2]},
               "resources": {"workers": 1, "cpus_per_worker": 1}}
    return {"race": race, "subsets": subsets}


def ltsearch(*args: str) -> tuple[subprocess.CompletedProcess, float]:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "ltsearch", *args], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if r.returncode != 0:
        sys.stderr.write(r.stdout[-3000:] + r.stderr[-3000:])
        raise SystemExit(f"ltsearch {' '.join(args)} failed with exit code {r.returncode}")
    return r, wall


def machine() -> dict[str, Any]:
    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
                if ln.startswith("model name")), platform.processor()) if Path("/proc/cpuinfo").is_file() else ""
    import ray
    import torch

    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip()
    return {"commit": commit, "cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "torch": torch.__version__, "ray": ray.__version__, "load_average_at_start": os.getloadavg()[0]}


def best_by_val(trials: Any) -> tuple[str, float, int]:
    from ltsearch.report import summary as S

    s = S.config_summary(trials)
    s = s[s["n_ok"] > 0]
    return str(s.iloc[0]["config"]), float(s.iloc[0]["val_acc_mean"]), int(s.iloc[0]["n_ok"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--storage", default="runs/showcase")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--max-seeds", type=int, default=10)
    args = ap.parse_args()
    storage = Path(args.storage).resolve()
    storage.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {"machine": machine(), "epochs": args.epochs, "wall_s": {}}
    paths = {}
    for key, spec in specs(args.epochs, args.max_seeds).items():
        paths[key] = storage / f"{spec['name']}.yaml"
        paths[key].write_text(yaml.safe_dump(spec, sort_keys=False))
    race_dir = storage / "fashion_race"
    from ltsearch.results import load

    # 1. the race
    r, out["wall_s"]["race"] = ltsearch("run", str(paths["race"]), "--storage", str(storage), "--no-report")
    out["race"] = json.loads((race_dir / "race.json").read_text())
    race_trials = load(race_dir)[0]
    out["race_trials"] = len(race_trials)
    out["race_train_seconds"] = float(race_trials["train_seconds"].sum())
    out["race_best"] = best_by_val(race_trials)
    # 2. every seed: the race's trials are kept (same trial ids), the rest trained
    r, out["wall_s"]["every_seed_rest"] = ltsearch("run", str(paths["race"]), "--storage", str(storage),
                                                   "--set", "search.race=null")
    full = load(race_dir)[0]
    out["every_seed_trials"] = len(full)
    out["every_seed_train_seconds"] = float(full["train_seconds"].sum())
    out["every_seed_best"] = best_by_val(full)
    out["same_best"] = out["race_best"][0] == out["every_seed_best"][0]
    out["compare_every_seed"] = ltsearch("compare", str(race_dir), "--format", "markdown", "--top", "0")[0].stdout
    # 3. ablation paths
    out["ablation"] = {}
    ldam_drw = f"single(loss=ldam, drw_epoch={drw_epoch(args.epochs)})"  # the report's label of the section
    for name, extra in (("ce_to_best", []), ("ce_to_ldam_drw", ["--to", ldam_drw, "--seeds", "0,1,2,3,4"])):
        r, wall = ltsearch("ablate", str(race_dir), "--from", "single(loss=ce)", *extra, "--format", "csv")
        text, _ = ltsearch("ablate", str(race_dir), "--from", "single(loss=ce)", *extra)
        out["wall_s"][f"ablate_{name}"] = wall
        out["ablation"][name] = {"csv": r.stdout, "log": r.stderr, "text": text.stdout}
    # 4. the subset draw
    r, out["wall_s"]["subsets"] = ltsearch("run", str(paths["subsets"]), "--storage", str(storage))
    from ltsearch.report import variance as V

    sub = load(storage / "fashion_subsets")[0]
    out["variance_pooled"] = V.pooled_table(sub).to_dict("records")
    out["variance_per_config"] = {m: V.configuration_table(sub, m).to_dict("records")
                                  for m in ("test_acc", "test_few")}
    ltsearch("report", str(race_dir))
    out["wall_s"]["total"] = sum(out["wall_s"].values())
    (storage / "showcase.json").write_text(json.dumps(out, indent=1, default=str) + "\n")
    print(json.dumps({k: out[k] for k in ("machine", "wall_s", "race_trials", "every_seed_trials", "race_best",
                                          "every_seed_best", "same_best")}, indent=1, default=str))
    for name, a in out["ablation"].items():
        print(f"\n## ablation {name}\n{a['text']}")
    import pandas as pd

    from ltsearch.report.compare import to_markdown

    for m, rows in out["variance_per_config"].items():
        print(f"\n## variance {m}\n{to_markdown(pd.DataFrame(rows))}")
    print(f"\n## variance pooled\n{to_markdown(pd.DataFrame(out['variance_pooled']))}")


if __name__ == "__main__":
    main()
