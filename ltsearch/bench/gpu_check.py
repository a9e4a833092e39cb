"""The GPU check: one command, one JSON object, needing only torch, torchvision and ltsearch's spec
(pydantic) — no Ray, Optuna or plotly. Sized to finish in a few minutes on one H100:

    python -m ltsearch.bench.gpu_check [--device cuda] [--smoke] [--no-compile] [--data-root DIR]
    ltsearch bench --gpu                     # the same
    bash benchmarks/gpu_check.sh             # on a machine with only torch (see docs/performance.md)

What it measures (keys of the JSON object):
- ``step``: ResNet-32 training-step images/s on CIFAR-shaped random data: fp32 / bf16, contiguous /
  channels-last, and bf16 + channels-last + ``torch.compile``;
- ``data_path``: images/s of ``run_trial`` (data kept on the device, batch augmentation there)
  against a ``DataLoader`` with per-sample transforms on the same model and data (``ratio``);
- ``packed``: 4 processes training at once on the device against one alone (``packed_speedup``);
- ``methods``: SDNHL (two views) and BBN (two streams) images/s relative to single-branch CE;
- ``projection``: the wall time of a 200-epoch CIFAR-10-LT (IF 100) ResNet-32 trial, from the
  measured epoch time and the trial's fixed costs;
- ``fashion_mnist``: a short Fashion-MNIST-LT run on the device against the same run on the CPU
  (test accuracy), with the CPU's seed-to-seed difference as the noise it is judged by.
A section that fails reports its error and the others still run.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
import traceback
from dataclasses import dataclass, fields
from typing import Any, Callable

import torch

from ltsearch.bench.common import jsonable, machine

GOALS = {"bf16_channels_last_images_per_s": 25_000, "projected_200_epoch_s": 90.0, "packed_speedup": 3.0,
         "data_path_ratio": 2.0}


@dataclass
class GpuCheckOptions:
    device: str = "cuda"
    arch: str = "resnet32"
    batch_size: int = 128
    step_seconds: float = 3.0        # per step variant
    compile: bool = True
    packed_processes: int = 4
    packed_seconds: float = 10.0
    packed_start_margin: float = 30.0
    scale: float = 1.0               # CIFAR-10-LT-shaped data: 12,406 training images at 1.0
    loop_epochs: int = 3
    method_epochs: int = 2
    dataloader_workers: int | None = None
    fashion_epochs: int = 3
    fashion_imbalance: float = 100
    fashion_max_per_class: int | None = None  # None: the dataset's 5,000
    fashion_cpu_threads: int = 8
    data_root: str | None = None

    @classmethod
    def smoke(cls, device: str = "cpu") -> "GpuCheckOptions":
        """Toy sizes (seconds on a CPU): what the tests run."""
        return cls(device=device, arch="small_cnn", batch_size=32, step_seconds=0.05, compile=False, packed_processes=2,
                   packed_seconds=0.3, packed_start_margin=6.0, scale=0.02, loop_epochs=2, method_epochs=2,
                   dataloader_workers=0, fashion_epochs=1, fashion_imbalance=10, fashion_max_per_class=40,
                   fashion_cpu_threads=1)


def _section(out: dict[str, Any], name: str, fn: Callable[[], dict[str, Any]], log: Callable[[str], None]) -> None:
    log(f"gpu check: {name} ...")
    t = time.perf_counter()
    try:
        out[name] = fn()
    except Exception as err:  # noqa: BLE001 - one failed section must not lose the others' figures
        out[name] = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]}
        log(traceback.format_exc())
    out[name]["seconds"] = round(time.perf_counter() - t, 1)
    log(json.dumps(jsonable({name: out[name]})))  # on stderr as it comes: a run cut short keeps its figures


def _methods(o: GpuCheckOptions, data: Any) -> dict[str, Any]:
    from ltsearch.bench.gpu import cifar_lt_experiment, loop_throughput

    methods = {"ce": {"name": "single", "loss": "ce"}, "sdnhl": {"name": "sdnhl"}, "bbn": {"name": "bbn"}}
    rates = {k: loop_throughput(cifar_lt_experiment(o.device, o.scale, o.method_epochs, m, o.arch, o.batch_size),
                                data)["images_per_s"] for k, m in methods.items()}
    return {"images_per_s": rates, "sdnhl_vs_ce": rates["sdnhl"] / rates["ce"], "bbn_vs_ce": rates["bbn"] / rates["ce"]}


def fashion_check(o: GpuCheckOptions) -> dict[str, Any]:
    """Fashion-MNIST-LT (IF 100), small CNN, ``fashion_epochs`` epochs, seed 0 on the device and
    seeds 0 and 1 on the CPU, on the same data. ``within_noise``: |device − CPU| ≤ the tolerance, which is the larger
    of twice the CPU's seed-to-seed difference and three standard errors of a difference of two
    accuracies on the test set (binomial)."""
    from ltsearch.data import build_dataset
    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial

    data_spec = {"dataset": "fashion_mnist", "imbalance": o.fashion_imbalance, "max_per_class": o.fashion_max_per_class,
                 "val_per_class": 20 if o.fashion_max_per_class else None, "root": o.data_root}
    data = None

    def run(device: str, seed: int, threads: int = 1) -> dict[str, Any]:
        nonlocal data
        exp = ExperimentSpec.model_validate({"threads": threads,
            "data": data_spec,
            "model": {"arch": "small_cnn"}, "method": {"name": "single", "loss": "ce"},
            "optim": {"lr": 0.05, "batch_size": 128, "epochs": o.fashion_epochs, "warmup": 0, "milestones": []},
            "eval": {"save_model": False}, "seed": seed, "device": device})
        data = build_dataset(exp.data) if data is None else data
        t = time.perf_counter()
        s = run_trial(exp, data=data, stage_cache=False).summary
        return {"test_acc": s["test_acc"], "seconds": time.perf_counter() - t}

    dev = run(o.device, 0)
    cpu_threads = min(o.fashion_cpu_threads, os.cpu_count() or 1)
    cpu0, cpu1 = run("cpu", 0, cpu_threads), run("cpu", 1, cpu_threads)
    n_test = len(data.test)
    p = cpu0["test_acc"] / 100
    se = 100 * math.sqrt(max(2 * p * (1 - p) / max(n_test, 1), 0.0))
    seed_diff = abs(cpu0["test_acc"] - cpu1["test_acc"])
    tol = max(2 * seed_diff, 3 * se)
    diff = dev["test_acc"] - cpu0["test_acc"]
    return {"device_test_acc": dev["test_acc"], "cpu_test_acc": cpu0["test_acc"], "cpu_seed1_test_acc": cpu1["test_acc"],
            "difference": diff, "tolerance": tol, "within_noise": abs(diff) <= tol, "test_images": n_test,
            "epochs": o.fashion_epochs, "device_s": dev["seconds"], "cpu_s": cpu0["seconds"]}


def run_gpu_check(o: GpuCheckOptions, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    from ltsearch.bench.common import bench_data
    from ltsearch.bench.gpu import (cifar_lt_experiment, dataloader_throughput, loop_throughput, packed_speedup,
                                    step_throughput)

    if o.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu check: no CUDA device visible (use --device cpu for the CPU parts)")
    t0 = time.perf_counter()
    out: dict[str, Any] = {"machine": machine(), "options": {f.name: getattr(o, f.name) for f in fields(o)}}
    _section(out, "step", lambda: step_throughput(o.arch, o.device, o.batch_size, o.step_seconds, o.compile), log)
    exp = cifar_lt_experiment(o.device, o.scale, o.loop_epochs, arch=o.arch, batch_size=o.batch_size)
    data = bench_data(exp)

    def data_path() -> dict[str, Any]:
        loop = loop_throughput(exp, data)
        base = dataloader_throughput(exp, data, workers=o.dataloader_workers)
        return {"train_images": len(data.train), "ltsearch": loop, "dataloader": base,
                "ratio": loop["images_per_s"] / base["images_per_s"]}

    _section(out, "data_path", data_path, log)

    def projection() -> dict[str, Any]:
        loop = out["data_path"]["ltsearch"]
        fixed = loop["outside_epochs_s"] + loop["first_epoch_s"] - loop["epoch_s"]  # set-up, test, first-epoch extra
        return {"epochs": 200, "epoch_s": loop["epoch_s"], "fixed_s": fixed,
                "projected_200_epoch_s": 200 * loop["epoch_s"] + fixed, "train_images": len(data.train)}

    _section(out, "projection", projection, log)
    _section(out, "methods", lambda: _methods(o, data), log)
    _section(out, "packed", lambda: packed_speedup(o.arch, o.device, o.batch_size, o.packed_seconds, o.packed_processes,
                                                   o.packed_start_margin), log)
    _section(out, "fashion_mnist", lambda: fashion_check(o), log)
    out["goals"] = {"bf16_channels_last_images_per_s": _goal(out, ("step", "bf16_channels_last"), GOALS["bf16_channels_last_images_per_s"], ">="),
                    "projected_200_epoch_s": _goal(out, ("projection", "projected_200_epoch_s"), GOALS["projected_200_epoch_s"], "<="),
                    "packed_speedup": _goal(out, ("packed", "packed_speedup"), GOALS["packed_speedup"], ">="),
                    "data_path_ratio": _goal(out, ("data_path", "ratio"), GOALS["data_path_ratio"], ">=")}
    out["total_s"] = round(time.perf_counter() - t0, 1)
    return out


def _goal(out: dict[str, Any], path: tuple[str, str], goal: float, op: str) -> dict[str, Any]:
    v = out.get(path[0], {}).get(path[1])
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return {"value": None, "goal": goal, "met": None}
    return {"value": v, "goal": f"{op} {goal}", "met": v >= goal if op == ">=" else v <= goal}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    from ltsearch.bench.common import stdout_to_stderr

    p = argparse.ArgumentParser(description="ltsearch GPU check: one JSON object on stdout")
    p.add_argument("--device", default="cuda")
    p.add_argument("--smoke", action="store_true", help="toy sizes (the CPU test)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile variant")
    p.add_argument("--data-root", default=None, help="where fashion-mnist/ lies (default: the usual places)")
    a = p.parse_args(argv)
    o = GpuCheckOptions.smoke(a.device) if a.smoke else GpuCheckOptions(device=a.device)
    o.compile = o.compile and not a.no_compile
    o.data_root = a.data_root
    log = lambda s: print(s, file=sys.stderr, flush=True)  # noqa: E731
    with stdout_to_stderr():
        result = run_gpu_check(o, log)
    print(json.dumps(jsonable(result)), flush=True)
    return result


if __name__ == "__main__":  # pragma: no cover
    main()
