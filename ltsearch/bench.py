"""``ltsearch bench``: what ltsearch costs on this machine, as ratios measured in one run.

1. Loop tax: ``run_trial`` against a minimal hand-written PyTorch loop doing the same work (same
   model, data, batch size, epochs, augmentation, per-epoch validation and a final test pass).
2. Sweep overhead: N trials through ``run_sweep`` (Tune, Parquet, checkpoints) against the same N
   ``run_trial`` calls as plain Ray tasks with the same parallelism; Ray start-up in both.
   Per-trial overhead = (sweep − bare) × concurrent slots / N: the seconds each trial adds to its slot.
3. Throughput of a ResNet-32 training step on 32×32 random data (images/s): CPU, contiguous and
   channels-last; GPU (fp32, bf16 + channels-last, and 4 processes packed on one GPU) when present.
4. DDP trial start-up (``resources.workers: 2``) when ``ltsearch/train/ddp.py`` exists.
5. ``--search``: grid vs Optuna TPE + ASHA on digits-LT (best val accuracy against epochs spent).

Timings on a shared machine are noisy: the two sides of every ratio are interleaved and repeated,
and medians are reported. Nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from typing import Annotated, Any, Callable, Iterator

import torch
import torch.nn.functional as F
import typer

GOALS = {"loop_tax_ratio": 1.05, "sweep_overhead_ratio": 1.10, "per_trial_overhead_s": 0.3}


@dataclass
class BenchOptions:
    arch: str = "resnet32"          # loop tax and throughput model
    epochs: int = 2                 # loop tax: epochs per run
    images_per_class: int = 64      # loop tax: synthetic 32×32 CIFAR-like data, 10 classes, IF 10
    repeats: int = 3                # loop tax / throughput: interleaved repetitions
    trials: int = 16                # sweep: N
    trial_seconds: float = 1.0      # sweep: target seconds of training per trial
    sweep_repeats: int = 2
    cpus_per_trial: float = 1.0
    threads: int = 1                # torch threads for in-process measurements (a ``cpus: 1`` trial)
    batch_size: int = 128
    throughput_steps: int = 4
    ddp: bool = True
    search: bool = False
    search_epochs: int = 12
    search_trials: int = 12

    @classmethod
    def smoke(cls) -> "BenchOptions":
        return cls(arch="resnet8", epochs=1, images_per_class=16, repeats=1, trials=2, trial_seconds=0.2,
                   sweep_repeats=1, batch_size=32, throughput_steps=1, ddp=False, search_epochs=2, search_trials=2)


def _median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else math.nan


def _timed(fn: Callable[[], Any]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _timed_cpu(fn: Callable[[], Any]) -> tuple[float, float]:
    """(wall seconds, this process's CPU seconds): with one torch thread the CPU time is the work
    itself, little disturbed by other processes on a shared machine."""
    t, c = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - t, time.process_time() - c


def _interleaved(a: Callable[[], Any], b: Callable[[], Any], repeats: int, timer: Callable[[Callable[[], Any]], Any] = _timed
                 ) -> tuple[list[Any], list[Any]]:
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


# ------------------------------------------------------------------------------------ 1. loop tax


def bench_experiment(arch: str, epochs: int, batch_size: int, images_per_class: int, size: int = 32,
                     channels: int = 3, seed: int = 0) -> Any:
    from ltsearch.spec import ExperimentSpec

    return ExperimentSpec.model_validate({
        "data": {"dataset": "synthetic", "imbalance": 10, "max_per_class": images_per_class, "val_per_class": 5,
                 "options": {"size": size, "channels": channels, "test_per_class": 5}},
        "model": {"arch": arch}, "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "batch_size": batch_size, "epochs": epochs, "warmup": 0, "milestones": []},
        "seed": seed, "device": "cpu",
    })


def bench_data(exp: Any) -> Any:
    """The experiment's synthetic data with the CIFAR recipe's crop + flip (pad 4)."""
    from ltsearch.data import build_dataset

    return dataclasses.replace(build_dataset(exp.data), augment="crop_flip", pad=4)


def _accuracy(model: torch.nn.Module, x8: torch.Tensor, y: torch.Tensor, prep: Callable[[torch.Tensor], torch.Tensor],
              batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch_size):
            correct += int((model(prep(x8[s:s + batch_size])).argmax(1) == y[s:s + batch_size]).sum())
    return 100.0 * correct / max(len(y), 1)


def bare_train(exp: Any, data: Any) -> float:
    """The minimal hand-written loop: the same model, optimiser, batches, augmentation, memory
    format and evaluation passes as ``run_trial`` for a ``single``/``ce`` experiment."""
    from ltsearch.data.augment import normalize, to_float
    from ltsearch.models import build_model
    from ltsearch.registry import AUGMENTS
    from ltsearch.train.fast import apply_fast, resolve_fast

    torch.manual_seed(exp.seed)
    model = build_model(exp.model.arch, data.num_classes, data.image_shape[0], "linear")
    fast = resolve_fast(exp.fast, torch.device("cpu"), model)
    apply_fast(model, fast)
    o = exp.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    augment = AUGMENTS.get(data.augment)
    x, y = data.train.x, data.train.y

    def prep(xb: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        xf = to_float(xb) if g is None else augment(to_float(xb), g, data.pad)
        return normalize(xf, mean, std).contiguous(memory_format=fast.memory_format)

    for epoch in range(o.epochs):
        model.train()
        g = torch.Generator().manual_seed(exp.seed * 1_000_003 + epoch)
        order = torch.randperm(len(y), generator=g)
        loss_sum = torch.zeros(())
        for s in range(0, len(y), o.batch_size):
            if len(y) - s < 2 and s > 0:
                break
            idx = order[s:s + o.batch_size]
            loss = F.cross_entropy(model(prep(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
        float(loss_sum)
        _accuracy(model, data.val.x, data.val.y, prep)
    return _accuracy(model, data.test.x, data.test.y, prep)


def measure_loop_tax(opts: BenchOptions) -> dict[str, float]:
    from ltsearch.train.loop import run_trial

    torch.set_num_threads(opts.threads)
    exp = bench_experiment(opts.arch, opts.epochs, opts.batch_size, opts.images_per_class)
    data = bench_data(exp)
    run = lambda: run_trial(exp, data=data, stage_cache=False)  # noqa: E731
    bare = lambda: bare_train(exp, data)  # noqa: E731
    bare()  # warm-up of both sides (allocator, kernels' first calls)
    run()
    t_lt, t_bare = _interleaved(run, bare, opts.repeats, _timed_cpu)
    return {"loop_tax_ratio": _median([a[1] / b[1] for a, b in zip(t_lt, t_bare)]),
            "loop_tax_ratio_wall": _median([a[0] / b[0] for a, b in zip(t_lt, t_bare)]),
            "loop_ltsearch_s": _median([a[0] for a in t_lt]), "loop_bare_s": _median([b[0] for b in t_bare]),
            "loop_train_images": len(data.train)}


# ------------------------------------------------------------------------------- 2. sweep overhead


def sweep_spec(trials: int, epochs: int, images_per_class: int, cpus: float, name: str = "bench_sweep",
               workers: int = 1) -> Any:
    from ltsearch.spec import Spec

    exp = bench_experiment("small_cnn", epochs, 64, images_per_class, size=8, channels=1)
    return Spec.model_validate({
        "name": name, "experiment": {**exp.model_dump(), "data": {**exp.data.model_dump(), "imbalance": 1}},
        "search": {"algorithm": "grid", "seeds": list(range(trials))},
        "resources": {"workers": workers, "cpus_per_worker": cpus},
    })


def _bare_trial(exp_json: str, cpus: float) -> tuple[float, float]:
    """One trial as ``run_trial`` alone: (its seconds, the seconds its epochs trained)."""
    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial, threads_for
    from ltsearch.trial import cached_dataset

    torch.set_num_threads(threads_for(cpus))
    exp = ExperimentSpec.model_validate_json(exp_json)
    t = time.perf_counter()
    out = run_trial(exp, data=cached_dataset(exp.data), stage_cache=False)
    return time.perf_counter() - t, sum(r.seconds for r in out.epochs)


def bare_sweep(spec: Any, num_cpus: int) -> list[tuple[float, float]]:
    """The same trials as plain Ray tasks (no Tune, no Parquet, no checkpoints)."""
    import ray

    from ltsearch.spec import resolve_experiment
    from ltsearch.tune.search import init_ray

    exps = [resolve_experiment(spec.experiment, {"seed": s}) for s in spec.search.seeds]
    started = init_ray(None, num_cpus)
    try:
        task = ray.remote(num_cpus=spec.resources.cpus_per_worker)(_bare_trial)
        return ray.get([task.remote(e.model_dump_json(), spec.resources.cpus_per_worker) for e in exps])
    finally:
        if started:
            ray.shutdown()


def _calibrate_images(epochs: int, seconds: float, cpus: float) -> int:
    """Images per class so that one trial trains for about ``seconds`` (measured in-process)."""
    from ltsearch.spec import resolve_experiment

    spec = sweep_spec(1, epochs, 64, cpus)
    exp = resolve_experiment(spec.experiment, {"seed": 0})
    _bare_trial(exp.model_dump_json(), cpus)
    t = _median([_bare_trial(exp.model_dump_json(), cpus)[0] for _ in range(2)])
    return int(min(max(64 * seconds / max(t, 1e-3), 8), 4000))


def measure_sweep(opts: BenchOptions) -> dict[str, float]:
    """Wall ratio sweep / bare, and the per-trial overhead from idle slot time: (wall × slots − the
    seconds the trials' epochs trained) / N for each side, sweep minus bare. Subtracting the epochs'
    own time keeps noise in training speed (other processes) out of the overhead."""
    from ltsearch.results import load
    from ltsearch.tune.search import run_sweep

    num_cpus = os.cpu_count() or 1
    slots = max(1, min(int(num_cpus // opts.cpus_per_trial), opts.trials))
    images = _calibrate_images(opts.epochs, opts.trial_seconds, opts.cpus_per_trial)
    spec = sweep_spec(opts.trials, opts.epochs, images, opts.cpus_per_trial)
    trained: dict[str, list[float]] = {"bare": [], "sweep": []}
    trial_s: list[float] = []

    def bare() -> None:
        out = bare_sweep(spec, num_cpus)
        trial_s.extend(t for t, _ in out)
        trained["bare"].append(sum(e for _, e in out))

    def tuned() -> None:
        with tempfile.TemporaryDirectory() as d:
            res = run_sweep(spec, storage=d, num_cpus=num_cpus)
            if res.ran != opts.trials:
                raise RuntimeError(f"bench sweep ran {res.ran} of {opts.trials} trials")
            trained["sweep"].append(float(load(res.run_dir)[1]["seconds"].sum()))

    t_sweep, t_bare = _interleaved(tuned, bare, opts.sweep_repeats)
    idle = {k: [(w * slots - e) / opts.trials for w, e in zip(walls, trained[k])]
            for k, walls in (("sweep", t_sweep), ("bare", t_bare))}
    overhead = _median([a - b for a, b in zip(idle["sweep"], idle["bare"])])
    sweep, base = _median(t_sweep), _median(t_bare)
    return {"sweep_overhead_ratio": _median([a / b for a, b in zip(t_sweep, t_bare)]),
            "per_trial_overhead_s": max(overhead, 0.0), "per_trial_overhead_raw_s": overhead,
            "sweep_overhead_ratio_adjusted": 1 + overhead * opts.trials / slots / base,
            "sweep_s": sweep, "sweep_bare_s": base, "sweep_trials": opts.trials, "sweep_slots": slots,
            "trial_train_s": _median(trial_s), "bare_idle_per_trial_s": _median(idle["bare"])}


def measure_trial_io(opts: BenchOptions) -> dict[str, float]:
    """ltsearch's own per-trial work outside training, without Ray: ``execute`` (Parquet rows,
    provenance) with a reporter that writes the epoch rows and saves a checkpoint each epoch, minus
    ``run_trial`` alone (CPU seconds, interleaved). The rest of the sweep overhead is Tune's."""
    from ltsearch.results.store import ResultStore
    from ltsearch.spec import resolve_experiment
    from ltsearch.train.loop import run_trial
    from ltsearch.trial import TrialContext, cached_dataset, epoch_row, execute

    torch.set_num_threads(opts.threads)
    spec = sweep_spec(1, opts.epochs, 64, 1.0)
    exp = resolve_experiment(spec.experiment, {"seed": 0})
    data = cached_dataset(exp.data)

    def with_io() -> None:
        with tempfile.TemporaryDirectory() as d:
            store, rows = ResultStore(d), []

            def report(rec: Any, state: Callable[[], dict[str, Any]]) -> None:
                rows.append(epoch_row(rec))
                store.write_epochs("bench", rows)
                torch.save(state(), os.path.join(d, "state.pt"))

            execute(exp, TrialContext("bench", d, {}, {}), reporter=report)

    bare = lambda: run_trial(exp, data=data, stage_cache=False)  # noqa: E731
    with_io()
    t_io, t_bare = _interleaved(with_io, bare, max(opts.repeats, 3), _timed_cpu)
    return {"ltsearch_io_per_trial_s": _median([a[1] - b[1] for a, b in zip(t_io, t_bare)])}


# ------------------------------------------------------------------------------------ 3. throughput


def images_per_s(arch: str, device: str = "cpu", batch_size: int = 128, steps: int = 4, channels_last: bool = False,
                 amp: bool = False, seconds: float | None = None, start_at: float | None = None) -> float:
    """Training-step throughput (forward, backward, SGD step) on random 32×32 images."""
    from ltsearch.models import build_model

    dev = torch.device(device)
    mf = torch.channels_last if channels_last else torch.contiguous_format
    model = build_model(arch, 10, 3, "linear").to(dev).to(memory_format=mf)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, 3, 32, 32, device=dev).contiguous(memory_format=mf)
    y = torch.randint(0, 10, (batch_size,), device=dev)
    ctx = (lambda: torch.autocast(dev.type, dtype=torch.bfloat16)) if amp else contextlib.nullcontext
    sync = torch.cuda.synchronize if dev.type == "cuda" else (lambda: None)

    def step() -> None:
        with ctx():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3 if dev.type == "cuda" else 1):
        step()
    sync()
    if start_at is not None:
        time.sleep(max(start_at - time.time(), 0))
    t, n = time.perf_counter(), 0
    while (n < steps) if seconds is None else (time.perf_counter() - t < seconds or n == 0):
        step()
        n += 1
        if seconds is not None and n % 10 == 0:
            sync()
    sync()
    return batch_size * n / (time.perf_counter() - t)


def augment_ms(batch_size: int, pad: int = 4, reps: int = 20) -> float:
    """Milliseconds to gather, crop + flip and normalise one uint8 32×32 batch."""
    from ltsearch.data.augment import crop_flip, normalize, to_float

    x8 = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)
    t = time.perf_counter()
    for _ in range(reps):
        normalize(crop_flip(to_float(x8[torch.randint(0, 4096, (batch_size,), generator=g)]), g, pad), mean, std)
    return 1000 * (time.perf_counter() - t) / reps


def measure_throughput(opts: BenchOptions) -> dict[str, float]:
    torch.set_num_threads(opts.threads)
    out: dict[str, float] = {}
    for arch in dict.fromkeys([opts.arch, "small_cnn"]):
        cl, plain, ratio = [], [], []
        for r in range(opts.repeats):
            pair = [(cl, True), (plain, False)] if r % 2 == 0 else [(plain, False), (cl, True)]
            cpu = {}
            for dest, flag in pair:
                c = time.process_time()
                dest.append(images_per_s(arch, "cpu", opts.batch_size, opts.throughput_steps, channels_last=flag))
                cpu[flag] = time.process_time() - c
            ratio.append(cpu[False] / cpu[True])
        out[f"channels_last_speedup_{arch}"] = _median(ratio)  # CPU seconds contiguous / channels-last
        if arch == opts.arch:
            out["cpu_images_per_s"] = _median(cl)  # the default (fast.channels_last: auto)
            out["cpu_images_per_s_contiguous"] = _median(plain)
            step_ms = 1000 * opts.batch_size / _median(cl)
            aug = augment_ms(opts.batch_size)
            out["augment_ms_per_batch"] = aug
            out["augment_share"] = aug / (aug + step_ms)
    if torch.cuda.is_available():
        out.update(measure_gpu(opts))
    return out


def _gpu_worker(arch: str, batch_size: int, seconds: float, start_at: float) -> None:
    print(images_per_s(arch, "cuda", batch_size, channels_last=True, amp=True, seconds=seconds, start_at=start_at))


def measure_gpu(opts: BenchOptions, packed: int = 4, seconds: float = 8.0) -> dict[str, float]:
    """Single-process fp32 and bf16 + channels-last throughput, and ``packed`` processes on one GPU
    (what fractional ``gpus_per_worker`` does) as a speed-up of the aggregate over one process."""
    fp32 = images_per_s(opts.arch, "cuda", opts.batch_size, channels_last=False, seconds=seconds)
    fast = images_per_s(opts.arch, "cuda", opts.batch_size, channels_last=True, amp=True, seconds=seconds)
    start_at = time.time() + 30
    code = "import sys; from ltsearch.bench import _gpu_worker; _gpu_worker(sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]))"
    procs = [subprocess.Popen([sys.executable, "-c", code, opts.arch, str(opts.batch_size), str(seconds), str(start_at)],
                              stdout=subprocess.PIPE, text=True) for _ in range(packed)]
    rates = []
    for p in procs:
        try:
            rates.append(float(p.communicate(timeout=120)[0].strip().splitlines()[-1]))
        except (ValueError, IndexError, subprocess.TimeoutExpired):
            p.kill()
            rates.append(math.nan)  # reported as null in the JSON
    return {"gpu_images_per_s": fast, "gpu_fp32_images_per_s": fp32, "gpu_packed_speedup": sum(rates) / fast,
            "gpu_packed_processes": packed, "gpu_name": torch.cuda.get_device_name()}


# ------------------------------------------------------------------------------------------ 4. DDP


def measure_ddp(opts: BenchOptions) -> dict[str, Any]:
    """Wall time of a 1-trial, 1-epoch sweep with ``workers: 2`` minus the same with ``workers: 1``
    (one Ray session for both, so Ray's own start-up is not counted)."""
    if importlib.util.find_spec("ltsearch.train.ddp") is None:
        return {"ddp_startup_s": "not measured (ltsearch/train/ddp.py absent)"}
    if not opts.ddp:
        return {"ddp_startup_s": "not measured (--no-ddp)"}
    import ray

    from ltsearch.tune.search import init_ray, run_sweep

    times = {}
    started = init_ray(None, os.cpu_count() or 1)
    try:
        for workers in (1, 2, 1):
            spec = sweep_spec(1, 1, 64, 1.0, name=f"bench_ddp{workers}", workers=workers)
            with tempfile.TemporaryDirectory() as d:
                times[workers] = _timed(lambda: run_sweep(spec, storage=d))  # the second 1-worker run counts
    except Exception as err:  # ddp.py may be work in progress: report, don't fail the bench
        return {"ddp_startup_s": f"failed: {type(err).__name__}: {str(err)[:200]}"}
    finally:
        if started:
            ray.shutdown()
    return {"ddp_startup_s": times[2] - times[1], "ddp_trial_s": times[2]}


# -------------------------------------------------------------------------------- 5. search efficiency


def search_spec(algorithm: str, epochs: int, trials: int) -> Any:
    """digits-LT (IF 20), small CNN, loss × learning rate; grid: 3 losses × 4 lrs (log-spaced over
    the same range TPE samples from)."""
    from ltsearch.spec import Spec

    lrs = [0.01, 0.025, 0.06, 0.15] if trials >= 12 else [0.01, 0.15]
    space: dict[str, Any] = {"method.loss": {"grid" if algorithm == "grid" else "choice": ["ce", "balanced_softmax", "ldam"]},
                             "optim.lr": {"grid": lrs} if algorithm == "grid" else {"loguniform": [0.01, 0.15]}}
    if algorithm == "grid" and trials < 12:
        space["method.loss"] = {"grid": ["ce", "balanced_softmax"]}
    search: dict[str, Any] = {"algorithm": "grid", "space": space, "checkpoint_every": 0}
    if algorithm != "grid":
        search.update(algorithm="optuna", sampler="tpe", num_samples=trials, scheduler="asha",
                      grace_period=max(1, epochs // 4), reduction_factor=3, seed=0)
    return Spec.model_validate({
        "name": f"bench_search_{algorithm}",
        "experiment": {"data": {"dataset": "digits", "imbalance": 20, "splits": {"many": 50, "few": 15}},
                       "model": {"arch": "small_cnn"}, "method": {"name": "single", "loss": "ce"},
                       "optim": {"lr": 0.05, "weight_decay": 5e-4, "batch_size": 64, "epochs": epochs, "warmup": 1,
                                 "lr_schedule": "cosine"}, "device": "cpu"},
        "search": search, "resources": {"cpus_per_worker": 1},
    })


def measure_search_efficiency(opts: BenchOptions) -> dict[str, Any]:
    """Best validation accuracy reached against total training epochs spent, grid vs TPE + ASHA."""
    from ltsearch.results import load
    from ltsearch.tune.search import run_sweep

    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        for algo in ("grid", "tpe_asha"):
            spec = search_spec(algo, opts.search_epochs, opts.search_trials)
            t = _timed(lambda: run_sweep(spec, storage=d, num_cpus=os.cpu_count() or 1))
            trials, epochs, _ = load(f"{d}/{spec.name}")
            trials = trials.sort_values("finished_at")
            spent = epochs.groupby("trial_id").size().reindex(trials["trial_id"]).fillna(0).cumsum()
            best = trials["val_acc"].astype(float).cummax()
            top = trials.loc[trials["val_acc"].astype(float).idxmax()]
            out[algo] = {"best_val_acc": float(best.iloc[-1]), "epochs_spent": int(spent.iloc[-1]),
                         "trials": len(trials), "seconds": t, "test_acc_of_best": float(top.get("test_acc", math.nan)),
                         "curve": [[int(e), float(b)] for e, b in zip(spent.tolist(), best.tolist())]}
    return out


# ------------------------------------------------------------------------------------------- run


def machine() -> str:
    import platform

    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        cpu = next(ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name"))
    gpu = f", GPU {torch.cuda.get_device_name()}" if torch.cuda.is_available() else ", no GPU"
    return f"{cpu}, {os.cpu_count()} CPUs{gpu}; torch {torch.__version__}"


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import ray

    result: dict[str, Any] = {"machine": machine(), "ray": ray.__version__, "threads": opts.threads}
    for name, fn in (("loop tax", measure_loop_tax), ("throughput", measure_throughput), ("trial I/O", measure_trial_io),
                     ("sweep", measure_sweep), ("ddp", measure_ddp)):
        log(f"measuring {name} ...")
        result.update(fn(opts))
    if opts.search:
        log("measuring search efficiency ...")
        result["search"] = measure_search_efficiency(opts)
    return result


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    t = Table(title=f"ltsearch bench — {result['machine']}; Ray {result['ray']}; {result['threads']} torch thread(s)")
    for col in ("measure", "value", "goal", "detail"):
        t.add_column(col)

    def num(k: str, fmt: str = "{:.3f}") -> str:
        v = result.get(k)
        return fmt.format(v) if isinstance(v, (int, float)) else str(v if v is not None else "n/a")

    t.add_row("loop tax (run_trial / hand-written)", num("loop_tax_ratio") + "×", "≤ 1.05×",
              f"CPU-time ratio; wall {num('loop_tax_ratio_wall')}× ({num('loop_ltsearch_s', '{:.2f}')} s vs "
              f"{num('loop_bare_s', '{:.2f}')} s)")
    t.add_row(f"sweep overhead (N = {result.get('sweep_trials')})", num("sweep_overhead_ratio") + "×", "≤ 1.10×",
              f"wall {num('sweep_s', '{:.1f}')} s vs {num('sweep_bare_s', '{:.1f}')} s bare Ray tasks; "
              f"{result.get('sweep_slots')} slots, {num('trial_train_s', '{:.2f}')} s per bare trial; "
              f"adjusted {num('sweep_overhead_ratio_adjusted')}×")
    t.add_row("per-trial overhead", num("per_trial_overhead_s", "{:.2f}") + " s", "≤ 0.3 s",
              f"idle slot time per trial, sweep − bare (raw {num('per_trial_overhead_raw_s', '{:.2f}')} s)")
    t.add_row("  of which ltsearch's own I/O", num("ltsearch_io_per_trial_s", "{:.2f}") + " s", "",
              "Parquet rows, provenance, a checkpoint per epoch (CPU s, no Ray); the rest is Tune's")
    t.add_row("CPU images/s (ResNet, channels-last)", num("cpu_images_per_s", "{:.0f}"), "",
              f"contiguous {num('cpu_images_per_s_contiguous', '{:.0f}')}")
    for k in sorted(k for k in result if k.startswith("channels_last_speedup_")):
        t.add_row(f"channels-last speed-up, {k.removeprefix('channels_last_speedup_')}", num(k) + "×", "> 1", "CPU")
    t.add_row("augmentation share of a step", num("augment_share", "{:.1%}"), "", "gather + crop/flip + normalise")
    if "gpu_images_per_s" in result:
        t.add_row("GPU images/s (bf16, channels-last)", num("gpu_images_per_s", "{:.0f}"), "",
                  f"fp32 {num('gpu_fp32_images_per_s', '{:.0f}')}; {result.get('gpu_name')}")
        t.add_row("GPU packed speed-up", num("gpu_packed_speedup", "{:.2f}") + "×", "",
                  f"{result.get('gpu_packed_processes')} processes on one GPU vs one")
    else:
        t.add_row("GPU images/s", "n/a", "", "no GPU visible")
    t.add_row("DDP trial start-up", num("ddp_startup_s", "{:.1f}") + ("" if isinstance(result.get("ddp_startup_s"), str) else " s"),
              "", "workers 2 vs 1, one 1-epoch trial")
    for algo, s in (result.get("search") or {}).items():
        t.add_row(f"search {algo}", f"{s['best_val_acc']:.2f}% val", "", f"{s['epochs_spent']} epochs, {s['trials']} trials, "
                  f"{s['seconds']:.0f} s")
    return t


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


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {k: _jsonable(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_jsonable(x) for x in v]
    return v


def register(app: typer.Typer) -> None:
    """Add the ``bench`` command to the ``ltsearch`` typer app."""

    @app.command("bench")
    def bench(
        json_: Annotated[bool, typer.Option("--json", help="print exactly one JSON object on stdout")] = False,
        smoke: Annotated[bool, typer.Option(help="smallest sizes (seconds, for CI)")] = False,
        trials: Annotated[int, typer.Option(help="sweep: number of trials N")] = 16,
        trial_seconds: Annotated[float, typer.Option(help="sweep: target training seconds per trial")] = 1.0,
        repeats: Annotated[int, typer.Option(help="interleaved repetitions of the loop-tax and throughput runs")] = 3,
        sweep_repeats: Annotated[int, typer.Option(help="interleaved repetitions of the sweep pair")] = 2,
        threads: Annotated[int, typer.Option(help="torch threads for in-process measurements")] = 1,
        arch: Annotated[str, typer.Option(help="model for loop tax and throughput")] = "resnet32",
        ddp: Annotated[bool, typer.Option(help="measure DDP trial start-up when ltsearch/train/ddp.py exists")] = True,
        search: Annotated[bool, typer.Option(help="also run the grid vs TPE + ASHA search-efficiency benchmark")] = False,
    ) -> None:
        """Measure ltsearch's overheads on this machine (ratios against bare PyTorch / bare Ray)."""
        opts = BenchOptions.smoke() if smoke else BenchOptions()
        if not smoke:
            opts = dataclasses.replace(opts, trials=trials, trial_seconds=trial_seconds, repeats=repeats,
                                       sweep_repeats=sweep_repeats, arch=arch)
        opts = dataclasses.replace(opts, threads=threads, ddp=ddp and not smoke, search=search)
        main(opts, as_json=json_)


def main(opts: BenchOptions, as_json: bool = False) -> dict[str, Any]:
    from rich.console import Console

    err = Console(stderr=True)
    if as_json:
        with stdout_to_stderr():
            result = run_bench(opts, log=lambda s: err.print(s, highlight=False))
        print(json.dumps(_jsonable(result)))
    else:
        result = run_bench(opts, log=lambda s: err.print(s, highlight=False))
        Console().print(table(result))
    return result


def _standalone() -> None:  # pragma: no cover
    app = typer.Typer(add_completion=False)
    app.callback()(lambda: None)
    register(app)
    app()


if __name__ == "__main__":  # pragma: no cover
    _standalone()
