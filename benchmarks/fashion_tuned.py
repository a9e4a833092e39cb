"""The equal-budget tuned comparison on Fashion-MNIST-LT (docs/results/fashion_tuned.md): every
method gets the same search budget over its own documented knobs, on the benchmark's recipe
(search_spaces/fashion_lt_benchmark.yaml), then its best configuration is reported on test over
3 seeds next to its defaults, with paired differences to CE.

    LTSEARCH_CACHE=DIR python benchmarks/fashion_tuned.py [--trials 12] [--methods NAME ... | all]
        [--storage runs/fashion_tuned] [--summarize] [--smoke]

First CE on seeds 0-2 (the baseline every method is paired to). Then per method: an Optuna (TPE)
search of ``--trials`` trials on seed 0, ASHA on validation accuracy (grace period 4 epochs,
reduction factor 3), whose first trial is the method's defaults (``search.initial``), so the
search can only keep or improve the default's validation accuracy. The best ok trial (highest
val_acc) and the defaults then run on seeds 1 and 2 (one grid run); their seed-0 rows are the
search's own trials (the same resolved configuration, so the same trial id and result: the loop
is deterministic on CPU). Test accuracy is only read at the end, never to select. The summary is
rewritten after each method, so a run cut short still reports the methods it finished.

Self-contained: it needs no earlier run. With the benchmark's ``LTSEARCH_CACHE`` the two-stage
methods find their stage-1 networks cached (their knobs here are all stage-2 knobs, BWLM's
``stage1_data`` excepted, whose ``all`` is cRT's stage 1); without it they train them once.
Writes ``<storage>/summary.md`` and ``summary.json`` and prints the table.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
SPEC = ROOT / "search_spaces" / "fashion_lt_benchmark.yaml"
# label: (the method section as the benchmark runs it, its documented knobs as a search space); in the
# order they run: the two cheap stage-2 searches, SDNHL (the most expensive), then the rest
METHODS: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "τ-norm": ({"name": "tau_norm"},
               {"method.tau": {"uniform": [0.0, 1.5]}, "method.keep_bias": {"choice": [False, True]}}),
    "cRT": ({"name": "crt", "stage2_epochs": 3},
            {"method.stage2_lr": {"loguniform": [1.0e-3, 0.3]},
             "method.stage2_weight_decay": {"loguniform": [1.0e-5, 1.0e-2]},
             "method.stage2_sampler": {"choice": ["class_balanced", "sqrt"]}}),
    "SDNHL": ({"name": "sdnhl", "hl_epoch": 8, "drw_epoch": 8},
              {"method.hl_eps": {"loguniform": [0.01, 0.5]}, "method.hl_momentum": {"uniform": [0.3, 0.99]},
               "method.gamma": {"uniform": [0.0, 2.0]}}),
    "BWLM": ({"name": "bwlm"},
             {"method.bfs_alpha": {"uniform": [0.0, 1.0]},
              "method.stage2_weight_decay": {"loguniform": [1.0e-4, 5.0e-2]},
              "method.stage1_data": {"choice": ["head", "all"]}, "method.bfs_counts": {"choice": ["review", "train"]}}),
    "GLAG": ({"name": "glag", "stage2_epochs": 3},
             {"method.beta_init": {"uniform": [0.2, 1.0]}, "method.beta_step": {"uniform": [0.0, 0.2]},
              "method.head_threshold": {"int": [50, 700]}, "method.kd_temperature": {"uniform": [1.0, 4.0]}}),
    "LDAM-DRW": ({"name": "single", "loss": "ldam", "drw_epoch": 8},
                 {"method.max_m": {"uniform": [0.1, 1.0]}, "method.s": {"uniform": [5.0, 40.0]},
                  "method.drw_beta": {"choice": [0.99, 0.999, 0.9999]}}),
    "logit adjustment": ({"name": "single", "loss": "logit_adjust"},
                         {"method.tau": {"uniform": [0.0, 2.5]}}),
}
METRICS = ("test_acc", "test_many", "test_medium", "test_few")


def slug(label: str) -> str:
    return {"τ-norm": "tau_norm"}.get(label, label.lower().replace(" ", "_").replace("-", "_"))


def defaults_of(section: dict[str, Any], space: dict[str, Any]) -> dict[str, Any]:
    """The searched knobs at the method's defaults (the search's first trial)."""
    from ltsearch.registry import METHODS as REGISTRY
    from ltsearch.methods.single import SingleParams

    cls = REGISTRY.get(section["name"])
    params = cls.validate_params({k: v for k, v in section.items() if k != "name"}).model_dump()
    out = {}
    optim = base_spec()["experiment"]["optim"]
    for key in space:
        field = key.split(".", 1)[1]
        if field in params and params[field] is None and field.startswith("stage2_"):
            out[key] = optim[field.removeprefix("stage2_")]  # null: stage 2 inherits the recipe's value
        elif field in params:
            out[key] = params[field]
        elif cls.Params is SingleParams:  # a loss parameter (tau, max_m, s): the loss's own default
            from ltsearch.losses import resolved_loss_params

            out[key] = resolved_loss_params(section["loss"], {})[field]
    return out


def base_spec() -> dict[str, Any]:
    spec = yaml.safe_load(SPEC.read_text())
    return {"experiment": spec["experiment"], "resources": spec["resources"]}


def run_spec(spec: dict[str, Any], storage: Path, log: Path, smoke: bool = False) -> Path:
    path = storage / "specs" / f"{spec['name']}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(spec, sort_keys=False, allow_unicode=True))
    with log.open("a") as out:
        subprocess.run([sys.executable, "-m", "ltsearch", "run", str(path), "--storage", str(storage), "--no-report"]
                       + (["--smoke"] if smoke else []), check=True, stdout=out, stderr=subprocess.STDOUT)
    return storage / (spec["name"] + ("_smoke" if smoke else ""))


def ok_rows(run_dir: Path):
    from ltsearch.results import load

    trials = load(run_dir)[0]
    ok = trials[trials["status"] == "ok"]
    ok.attrs["stopped"] = int((trials["status"] == "stopped").sum())  # ASHA stopped them early
    return ok


def fmt(values: list[float]) -> str:
    import statistics

    return f"{statistics.mean(values):.2f} ± {statistics.stdev(values):.2f}" if len(values) > 1 else f"{values[0]:.2f}"


def delta(a: list[float], b: list[float]) -> str:
    from ltsearch.report.stats import t_interval

    mean, low, high, _ = t_interval([x - y for x, y in zip(a, b)])
    noise = " †" if not (math.isnan(low) or low > 0 or high < 0) else ""
    return f"{mean:+.2f} [{low:+.2f}, {high:+.2f}]{noise}"


def method_spec(name: str, section: dict[str, Any] | list[dict[str, Any]], seeds: list[int]) -> dict[str, Any]:
    """A grid run of one method section (or several) on ``seeds``, on the benchmark's recipe."""
    spec = {"name": name, **base_spec()}
    sections = section if isinstance(section, list) else [section]
    spec["experiment"] = {**spec["experiment"], "method": sections[0]}
    spec["search"] = {"algorithm": "grid", "seeds": seeds, "metric": "val_acc", "mode": "max"}
    if len(sections) > 1:
        spec["search"]["space"] = {"method": {"grid": sections}}
    return spec


def search_spec(label: str, trials: int) -> dict[str, Any]:
    """The method's search: ``trials`` Optuna (TPE) trials on seed 0, ASHA on validation, defaults first."""
    section, space = METHODS[label]
    spec = {"name": f"fashion_tuned_search_{slug(label)}", **base_spec()}
    spec["experiment"] = {**spec["experiment"], "method": section}
    spec["search"] = {"algorithm": "optuna", "sampler": "tpe", "space": space, "initial": [defaults_of(section, space)],
                      "num_samples": trials, "seed": 0, "seeds": [0], "metric": "val_acc", "mode": "max",
                      "scheduler": "asha", "grace_period": 4, "reduction_factor": 3}
    return spec


def by_section(rows, section: dict[str, Any]) -> list:
    """The ok rows whose resolved method section holds ``section``'s values, by seed."""
    match = [r for _, r in rows.iterrows()
             if all(json.loads(r["config_json"])["method"].get(k) == v for k, v in section.items())]
    return sorted(match, key=lambda r: int(r["seed"]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=12, help="search budget per method (trials on seed 0)")
    ap.add_argument("--methods", nargs="*", default=["all"], help=f"default all: {', '.join(METHODS)}")
    ap.add_argument("--storage", type=Path, default=ROOT / "runs" / "fashion_tuned")
    ap.add_argument("--smoke", action="store_true", help="check the driver at toy scale (ltsearch run --smoke)")
    ap.add_argument("--summarize", action="store_true",
                    help="only rewrite summary.md / .json from the methods already in summary.json")
    args = ap.parse_args()
    if args.methods == ["all"]:
        args.methods = list(METHODS)
    unknown = [m for m in args.methods if m not in METHODS]
    if unknown:
        print(f"--methods: unknown {', '.join(unknown)}; choose from {', '.join(METHODS)} or all", file=sys.stderr)
        sys.exit(2)
    storage = args.storage.resolve()
    storage.mkdir(parents=True, exist_ok=True)
    log = storage / "log.txt"
    if args.summarize:
        old = json.loads((storage / "summary.json").read_text())
        write_summary(storage, old["trials_per_method"], old["wall_seconds"], old["ce_test"], old["methods"])
        return
    started = time.time()
    ce = by_section(ok_rows(run_spec(method_spec("fashion_tuned_ce", {"name": "single", "loss": "ce"}, [0, 1, 2]),
                                     storage, log, args.smoke)), {"name": "single", "loss": "ce"})
    ce_test = [float(r["test_acc"]) for r in ce]
    results = []
    for label in args.methods:  # search; then the best and the defaults on seeds 1 and 2
        section, space = METHODS[label]
        default = defaults_of(section, space)
        t0 = time.time()
        search = ok_rows(run_spec(search_spec(label, args.trials), storage, log, args.smoke))
        best = search.sort_values(["val_acc", "trial_id"], ascending=[False, True]).iloc[0]
        best_method = json.loads(best["config_json"])["method"]
        default_section = {**section, **{k.split(".", 1)[1]: v for k, v in default.items()}}
        # the method and its searched knobs (a --smoke run rescales the section's epochs)
        key = {k: v for k, v in default_section.items() if k in ("name", "loss") or f"method.{k}" in space}
        default0 = by_section(search, key)  # the search's first trial, unless ASHA stopped it
        is_default = all(best_method.get(k) == v for k, v in key.items())
        sections = [best_method] if is_default else [best_method, default_section]
        final = ok_rows(run_spec(method_spec(f"fashion_tuned_best_{slug(label)}", sections, [1, 2]),
                                 storage, log, args.smoke))
        rows = [best] + by_section(final, {k: best_method[k] for k in key})
        default_rows = rows if is_default else default0[:1] + by_section(final, key)
        if len(default_rows) < 3:  # ASHA stopped the defaults on seed 0: run them in full
            extra = ok_rows(run_spec(method_spec(f"fashion_tuned_default0_{slug(label)}", default_section, [0]),
                                     storage, log, args.smoke))
            default_rows = by_section(extra, key) + default_rows
        results.append({"method": label, "best": {k: best_method.get(k.split(".", 1)[1]) for k in space},
                        "default": default, "best_is_default": is_default,
                        "search_trials": int(len(search)) + search.attrs.get("stopped", 0),
                        "search_stopped": search.attrs.get("stopped", 0), "search_val_best": float(best["val_acc"]),
                        "seconds": round(time.time() - t0), "trial_ids": [r["trial_id"] for r in rows],
                        "default_trial_ids": [r["trial_id"] for r in default_rows],
                        "seeds": [int(r["seed"]) for r in rows], "section": section,
                        **{m: [float(r[m]) for r in rows] for m in METRICS},
                        "default_val": [float(r["val_acc"]) for r in default_rows],
                        "default_test": [float(r["test_acc"]) for r in default_rows]})
        print(json.dumps(results[-1], default=str), flush=True)
        write_summary(storage, args.trials, time.time() - started, ce_test, results)


def write_summary(storage: Path, trials: int, wall: float, ce_test: list[float], results: list[dict[str, Any]]) -> None:
    lines = ["| method | best configuration (searched knobs) | default test | tuned test | tuned many / medium / few "
             "| Δ tuned − default | Δ tuned − CE | Δ default − CE |", "|---|---|---|---|---|---|---|---|"]
    for res in results:
        d = res["default_test"]
        knobs = ", ".join(f"{k.split('.', 1)[1]} {v:.4g}" if isinstance(v, float) else f"{k.split('.', 1)[1]} {v}"
                          for k, v in res["best"].items())
        groups = " / ".join(f"{sum(res[m]) / len(res[m]):.1f}" for m in METRICS[1:])
        lines.append(f"| {res['method']} | {knobs} | {fmt(d) if d else 'n/a'} | {fmt(res['test_acc'])} | {groups} | "
                     f"{delta(res['test_acc'], d) if len(d) == 3 else 'n/a'} | {delta(res['test_acc'], ce_test)} | "
                     f"{delta(d, ce_test) if len(d) == 3 else 'n/a'} |")
    lines.append(f"| CE (the baseline) | | {fmt(ce_test)} | | | | | |")
    table = "\n".join(lines)
    summary = {"trials_per_method": trials, "wall_seconds": round(wall), "ce_test": ce_test, "methods": results}
    (storage / "summary.json").write_text(json.dumps(summary, indent=1, default=str))
    (storage / "summary.md").write_text(table + f"\n\nwall: {wall:.0f} s\n")
    print(table, f"\nwall: {wall:.0f} s", flush=True)

if __name__ == "__main__":
    main()
