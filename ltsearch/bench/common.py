"""What every measurement shares: options, interleaved timing, medians and spreads, the bench's
synthetic experiment, the machine's description. Imports only torch and ltsearch's spec/data
(no Ray, Optuna or plotly), so the GPU check runs without Ray, Optuna and plotly."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import torch

GOALS = {"loop_tax_ratio": 1.05, "sweep_overhead_ratio": 1.08, "per_trial_overhead_s": 0.3, "ddp_startup_s": 10.0}


@dataclass
class BenchOptions:
    arch: str = "resnet32"          # loop tax and throughput model
    epochs: int = 1                 # loop tax: epochs per run
    images_per_class: int = 500     # loop tax: synthetic 32×32 CIFAR-like data, 10 classes, IF 10 (2,040 images)
    repeats: int = 5                # loop tax / throughput: interleaved repetitions
    trials: int = 16                # sweep: N
    trial_seconds: float = 1.0      # sweep: target seconds of training per trial
    sweep_epochs: int = 2           # sweep: epochs per trial
    sweep_repeats: int = 2
    cpus_per_trial: float = 1.0
    threads: int = 1                # torch threads for in-process measurements (a ``cpus: 1`` trial)
    batch_size: int = 128
    throughput_steps: int = 4
    ddp: bool = True
    ddp_repeats: int = 2            # DDP: bare TorchTrainer runs per environment
    search: bool = False
    search_epochs: int = 12
    search_seeds: int = 3
    search_trials: int = 24         # TPE + ASHA samples per search seed

    @classmethod
    def smoke(cls) -> "BenchOptions":
        return cls(arch="resnet8", epochs=1, images_per_class=16, repeats=1, trials=2, trial_seconds=0.2, sweep_epochs=1,
                   sweep_repeats=1, batch_size=32, throughput_steps=1, ddp=False, search_epochs=2, search_seeds=1, search_trials=3, ddp_repeats=1)


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def spread(xs: list[float]) -> float:
    """Max − min of the repetitions (0 for one)."""
    return max(xs) - min(xs) if xs else math.nan


def timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): with one torch thread the CPU time is the work
    itself, little disturbed by other processes on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int,
                timer: Callable[[Callable[[], Any]], Any] = timed) -> tuple[list[Any], list[Any]]:
    """Time ``a`` and ``b`` alternately (a b, b a, a b, ...), so drifting load hits both alike."""
    ta, tb = [], []
    for r in range(repeats):
        if r % 2 == 0:
            ta.append(timer(a))
            tb.append(timer(b))
        else:
            tb.append(timer(b))
            ta.append(timer(a))
    return ta, tb


def bench_experiment(arch: str, epochs: int, batch_size: int, images_per_class: int, size: int = 32,
                     channels: int = 3, seed: int = 0, device: str = "cpu", method: dict | None = None,
                     fast: dict | None = None, imbalance: float = 10, val_per_class: int = 5,
                     test_per_class: int = 5, threads: int = 1) -> Any:
    """An experiment (default ``single``/``ce``) on synthetic data, 10 classes, of the given size,
    trained with ``threads`` CPU threads (the loop sets them)."""
    from ltsearch.spec import ExperimentSpec

    return ExperimentSpec.model_validate({
        "data": {"dataset": "synthetic", "imbalance": imbalance, "max_per_class": images_per_class,
                 "val_per_class": val_per_class,
                 "options": {"size": size, "channels": channels, "test_per_class": test_per_class}},
        "model": {"arch": arch}, "method": method or {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "warmup": 0, "milestones": []},
        "seed": seed, "device": device, "threads": threads, **({"fast": fast} if fast else {}),
    })


def bench_data(exp: Any) -> Any:
    """The experiment's synthetic data with the CIFAR recipe's crop + flip (pad 4)."""
    from ltsearch.data import build_dataset

    return dataclasses.replace(build_dataset(exp.data), augment="crop_flip", pad=4)


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError, StopIteration):
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__}"


def load_average() -> float | None:
    """The 1-minute load average when the bench starts (other work on a shared machine)."""
    with contextlib.suppress(OSError, AttributeError):
        return round(os.getloadavg()[0], 2)
    return None


@contextlib.contextmanager
def stdout_to_stderr() -> Iterator[None]:
    """Keep stdout clean for the JSON object: Python and child-process output go to stderr."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    old, sys.stdout = sys.stdout, sys.stderr
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)
        sys.stdout = old


def jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [jsonable(x) for x in v]
    return v
