"""Sweep overhead: N trials through ``run_sweep`` (Tune, Parquet, checkpoints) against the same N
``run_trial`` calls as plain Ray tasks with the same parallelism; Ray start-up in both, and timed
on its own. Where the rest goes: ``per_trial_overhead_s`` = (sweep − bare idle slot time) per trial,
of which ``ltsearch_io_per_trial_s`` is ltsearch's own writes (measured without Ray). ``sweep_phases``
splits the sweep's wall time: Ray's start, Tune's set-up until the first trial starts, the trials,
Tune's end of experiment after the last trial (it waits up to 5 s for the trial actors to exit),
Ray's shutdown."""

from __future__ import annotations

import os
import tempfile
import time
from typing import Any, Callable

import torch

from ltsearch.bench.common import BenchOptions, bench_experiment, interleaved, median, spread, timed_cpu


def sweep_spec(trials: int, epochs: int, images_per_class: int, cpus: float, name: str = "bench_sweep",
               workers: int = 1) -> Any:
    from ltsearch.spec import Spec

    exp = bench_experiment("small_cnn", epochs, 64, images_per_class, size=8, channels=1, imbalance=1)
    return Spec.model_validate({
        "name": name, "experiment": exp.model_dump(),
        "search": {"algorithm": "grid", "seeds": list(range(trials))},
        "resources": {"workers": workers, "cpus_per_worker": cpus},
    })


def bare_trial(exp_json: str, cpus: float) -> tuple[float, float]:
    """One trial as ``run_trial`` alone: (its seconds, the seconds its epochs trained)."""
    from ltsearch.resolved import resolve_trial
    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial
    from ltsearch.trial import cached_dataset

    trial = resolve_trial(ExperimentSpec.model_validate_json(exp_json), cpus=cpus)  # the sweep's thread count
    t = time.perf_counter()
    out = run_trial(trial, data=cached_dataset(trial.exp.data), stage_cache=False)
    return time.perf_counter() - t, sum(r.seconds for r in out.epochs)


def bare_sweep(spec: Any, num_cpus: int) -> tuple[list[tuple[float, float]], float]:
    """The same trials as plain Ray tasks (no Tune, no Parquet, no checkpoints); and Ray's start."""
    import ray

    from ltsearch.spec import resolve_experiment
    from ltsearch.tune.search import init_ray

    exps = [resolve_experiment(spec.experiment, {"seed": s}) for s in spec.search.seeds]
    t = time.perf_counter()
    started = init_ray(None, num_cpus)
    ray_start = time.perf_counter() - t
    try:
        task = ray.remote(num_cpus=spec.resources.cpus_per_worker)(bare_trial)
        return ray.get([task.remote(e.model_dump_json(), spec.resources.cpus_per_worker) for e in exps]), ray_start
    finally:
        if started:
            ray.shutdown()


def calibrate_images(epochs: int, seconds: float, cpus: float) -> int:
    """Images per class so that one trial trains for about ``seconds`` (measured in-process)."""
    from ltsearch.spec import resolve_experiment

    spec = sweep_spec(1, epochs, 64, cpus)
    exp = resolve_experiment(spec.experiment, {"seed": 0})
    bare_trial(exp.model_dump_json(), cpus)
    t = median([bare_trial(exp.model_dump_json(), cpus)[0] for _ in range(2)])
    return int(min(max(64 * seconds / max(t, 1e-3), 8), 4000))


def _timeline() -> Any:
    """A Tune callback noting when the first trial started and the last one ended."""
    from ray.tune import Callback

    class Timeline(Callback):
        first_start = last_end = float("nan")

        def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            if self.first_start != self.first_start:  # nan: the first
                self.first_start = time.perf_counter()

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self.last_end = time.perf_counter()

    return Timeline()


def measure_sweep(opts: BenchOptions) -> dict[str, Any]:
    """Wall ratio sweep / bare, and the per-trial overhead from idle slot time: (wall × slots − the
    seconds the trials' epochs trained) / N for each side, sweep minus bare. Subtracting the epochs'
    own time keeps noise in training speed (other processes) out of the overhead."""
    from ltsearch.results import load
    from ltsearch.tune.search import run_sweep

    num_cpus = os.cpu_count() or 1
    slots = max(1, min(int(num_cpus // opts.cpus_per_trial), opts.trials))
    images = calibrate_images(opts.sweep_epochs, opts.trial_seconds, opts.cpus_per_trial)
    spec = sweep_spec(opts.trials, opts.sweep_epochs, images, opts.cpus_per_trial)
    trained: dict[str, list[float]] = {"bare": [], "sweep": []}
    trial_s: list[float] = []
    ray_start: list[float] = []
    phases: list[dict[str, float]] = []

    def bare() -> None:
        out, started = bare_sweep(spec, num_cpus)
        ray_start.append(started)
        trial_s.extend(t for t, _ in out)
        trained["bare"].append(sum(e for _, e in out))

    def tuned() -> None:
        import ray

        from ltsearch.tune.search import init_ray

        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            init_ray(None, num_cpus)
            t1 = time.perf_counter()
            timeline = _timeline()
            try:
                res = run_sweep(spec, storage=d, num_cpus=num_cpus, callbacks=[timeline])
                t2 = time.perf_counter()
            finally:
                ray.shutdown()
            if res.ran != opts.trials:
                raise RuntimeError(f"bench sweep ran {res.ran} of {opts.trials} trials")
            trained["sweep"].append(float(load(res.run_dir)[1]["seconds"].sum()))
            phases.append({"ray_start_s": t1 - t0, "to_first_trial_s": timeline.first_start - t1,
                           "trials_s": timeline.last_end - timeline.first_start, "after_last_trial_s": t2 - timeline.last_end,
                           "ray_shutdown_s": time.perf_counter() - t2})

    t_sweep, t_bare = interleaved(tuned, bare, opts.sweep_repeats)
    idle = {k: [(w * slots - e) / opts.trials for w, e in zip(walls, trained[k])]
            for k, walls in (("sweep", t_sweep), ("bare", t_bare))}
    overhead = [a - b for a, b in zip(idle["sweep"], idle["bare"])]
    ratios = [a / b for a, b in zip(t_sweep, t_bare)]
    base = median(t_bare)
    return {"sweep_overhead_ratio": median(ratios), "sweep_overhead_spread": spread(ratios),
            "per_trial_overhead_s": max(median(overhead), 0.0), "per_trial_overhead_raw_s": median(overhead),
            "sweep_overhead_ratio_adjusted": 1 + median(overhead) * opts.trials / slots / base,
            "sweep_s": median(t_sweep), "sweep_bare_s": base, "sweep_trials": opts.trials, "sweep_slots": slots,
            "trial_train_s": median(trial_s), "bare_idle_per_trial_s": median(idle["bare"]),
            "ray_start_s": median(ray_start), "sweep_walls_s": t_sweep, "sweep_bare_walls_s": t_bare,
            "sweep_phases": {k: median([p[k] for p in phases]) for k in phases[0]} if phases else {}}


def measure_trial_io(opts: BenchOptions) -> dict[str, Any]:
    """ltsearch's own per-trial work outside training, without Ray: ``execute`` (Parquet rows,
    provenance) with a reporter that writes the epoch rows and saves a checkpoint each epoch, minus
    ``run_trial`` alone (CPU seconds, interleaved). The rest of the sweep overhead is Tune's."""
    from ltsearch.results.store import ResultStore
    from ltsearch.spec import resolve_experiment
    from ltsearch.train.loop import run_trial
    from ltsearch.trial import TrialContext, cached_dataset, epoch_row, execute

    torch.set_num_threads(opts.threads)
    spec = sweep_spec(1, opts.sweep_epochs, 64, 1.0)
    exp = resolve_experiment(spec.experiment, {"seed": 0})
    data = cached_dataset(exp.data)

    def with_io() -> None:
        with tempfile.TemporaryDirectory() as d:
            store, rows = ResultStore(d), []

            def report(rec: Any, state: Callable[[], dict[str, Any]]) -> None:
                rows.append(epoch_row(rec))
                store.write_epochs("bench", rows)
                torch.save(state(), os.path.join(d, "state.pt"))

            execute(exp, TrialContext("bench", d), reporter=report)

    bare = lambda: run_trial(exp, data=data, stage_cache=False)  # noqa: E731
    with_io()
    t_io, t_bare = interleaved(with_io, bare, max(opts.repeats, 3), timed_cpu)
    return {"ltsearch_io_per_trial_s": median([a[1] - b[1] for a, b in zip(t_io, t_bare)])}


