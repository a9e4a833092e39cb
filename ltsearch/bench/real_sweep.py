"""A real sweep at scale: N short trials (a tiny model, one epoch each) through ``run_sweep`` end to
end — Tune, reused actors, Parquet, checkpoints, the driver's callbacks — against the same N
``run_trial`` calls as plain Ray tasks, and the Optuna searcher's ask time in a study that already
holds 1,000+ trials.

Figures (``measure_real_sweep``):

- ``sweep_s`` / ``bare_s``: wall seconds of the sweep and of the bare tasks (Ray's start included in
  both; the two run one after the other, so load on a shared machine can differ between them).
- ``sweep_over_ideal`` / ``bare_over_ideal``: each side's wall time over its own ideal, the sum of
  its trials' own seconds (``run_trial`` from start to end: the sweep's ``train_seconds`` column,
  the bare tasks' timings) divided by the parallel slots — what Ray Tune's scalability page calls
  ideal (10,000 one-second trials on 16 CPUs: 625 s ideal, 715 s measured, 1.14×). Normalising each
  side by its own trials keeps a change of training speed between the two runs out of the ratio.
- ``per_trial_overhead_s``: idle slot time per trial, sweep minus bare: (wall × slots − the trials'
  own seconds) / N for each side; ``driver_cpu_per_trial_ms``: the driver's CPU time per trial.
- ``driver_peak_rss_mb``: the driver process's peak resident memory while the sweep runs (sampled
  every 0.2 s with psutil, which Ray ships), and at its start.
- ``ask_ms``: the median seconds of ``StoredOptunaSearch.suggest`` (sampling, the repeat check,
  the session's bookkeeping) with ``n`` trials already in the SQLite study, for n = 0 and n =
  ``ask_trials``; ``ask_growth`` their ratio.
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from typing import Any

from ltsearch.bench.common import median


class PeakRSS:
    """The peak resident set size of this process, sampled in a thread while the block runs."""

    def __init__(self, every: float = 0.2):
        import psutil

        self.proc, self.every = psutil.Process(), every
        self.start = self.peak = self.proc.memory_info().rss
        self._stop = threading.Event()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.peak = max(self.peak, self.proc.memory_info().rss)

    def __enter__(self) -> "PeakRSS":
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, self.proc.memory_info().rss)


def _spec(trials: int, images: int) -> Any:
    from ltsearch.bench.sweep import sweep_spec

    spec = sweep_spec(trials, 1, images, 1.0, name="real_sweep")
    return spec.model_copy(update={"search": spec.search.model_copy(update={"checkpoint_every": 1})})


def measure_sweep_at_scale(trials: int = 1000, trial_seconds: float = 1.0) -> dict[str, Any]:
    """The sweep of ``trials`` one-epoch trials and the bare tasks, once each (see the module)."""
    from ltsearch.bench.sweep import bare_sweep, calibrate_images
    from ltsearch.results import load
    from ltsearch.tune.search import init_ray, run_sweep

    import ray

    num_cpus = os.cpu_count() or 1
    slots = max(1, min(num_cpus, trials))
    images = calibrate_images(1, trial_seconds, 1.0)
    spec = _spec(trials, images)
    t = time.perf_counter()
    out, _ = bare_sweep(spec, num_cpus)
    bare_s = time.perf_counter() - t
    bare_trials = sum(s for s, _ in out)
    with tempfile.TemporaryDirectory() as d:
        t, cpu = time.perf_counter(), time.process_time()
        init_ray(None, num_cpus)
        try:
            with PeakRSS() as rss:
                res = run_sweep(spec, storage=d, num_cpus=num_cpus)
        finally:
            ray.shutdown()
        sweep_s, driver_cpu = time.perf_counter() - t, time.process_time() - cpu
        rows = load(res.run_dir)[0]
        if len(rows) != trials or set(rows["status"]) != {"ok"}:
            raise RuntimeError(f"the sweep wrote {len(rows)} rows ({sorted(set(rows['status']))}) for {trials} trials")
        sweep_trials = float(rows["train_seconds"].sum())
    return {"trials": trials, "slots": slots, "images_per_class": images,
            "trial_alone_s": median([s for s, _ in out]), "trial_in_sweep_s": float(rows["train_seconds"].median()),
            "sweep_s": sweep_s, "bare_s": bare_s, "overhead_ratio": sweep_s / bare_s,
            "sweep_ideal_s": sweep_trials / slots, "bare_ideal_s": bare_trials / slots,
            "sweep_over_ideal": sweep_s * slots / sweep_trials, "bare_over_ideal": bare_s * slots / bare_trials,
            "tune_published_over_ideal": 715 / 625,
            "per_trial_overhead_s": ((sweep_s * slots - sweep_trials) - (bare_s * slots - bare_trials)) / trials,
            "driver_cpu_per_trial_ms": 1000 * driver_cpu / trials,
            "driver_start_rss_mb": rss.start / 2**20, "driver_peak_rss_mb": rss.peak / 2**20}


def _ask_spec(name: str) -> Any:
    from ltsearch.spec import validate_spec_dict

    return validate_spec_dict({
        "name": name,
        "experiment": {"data": {"dataset": "synthetic"}, "model": {"arch": "mlp"}, "device": "cpu"},
        "search": {"algorithm": "optuna", "num_samples": 100_000, "seeds": [0], "seed": 0,
                   "space": {"optim.lr": {"loguniform": [1e-3, 1.0]},
                             "method.loss": {"choice": ["ce", "focal", "balanced_softmax"]},
                             "method.gamma": {"uniform": [0.5, 3.0], "when": {"method.loss": "focal"}}}},
    })


def ask_ms(existing: int, asks: int = 25) -> float:
    """Median milliseconds of one ``suggest`` with ``existing`` COMPLETE trials of another session
    already in the SQLite study (each asked trial is then told COMPLETE, as Tune's completion would)."""
    import optuna

    from ltsearch.tune.search import make_search_alg
    from ltsearch.tune.warm import distribution

    spec = _ask_spec("ask")
    with tempfile.TemporaryDirectory() as d:
        alg = make_search_alg(spec, d)
        alg.set_search_properties("val_acc", "max", {})
        study = alg._ot_study
        dists = {k: distribution(v) for k, v in spec.search.space.items()}
        rng = random.Random(0)
        past = []
        for i in range(existing):
            loss = rng.choice(["ce", "focal", "balanced_softmax"])
            params = {"optim.lr": 10 ** rng.uniform(-3, 0), "method.loss": loss}
            if loss == "focal":
                params["method.gamma"] = rng.uniform(0.5, 3.0)
            past.append(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params},
                                                  value=rng.uniform(10, 90), user_attrs={"ltsearch_session": "before"}))
        study.add_trials(past)
        times = []
        for i in range(asks):
            t = time.perf_counter()
            alg.suggest(f"t{i}")
            times.append(time.perf_counter() - t)
            study.tell(alg._ot_trials[f"t{i}"].number, rng.uniform(10, 90))
        return 1000 * median(times)


def measure_real_sweep(trials: int = 1000, trial_seconds: float = 1.0, ask_trials: int = 1000) -> dict[str, Any]:
    out = measure_sweep_at_scale(trials, trial_seconds)
    base, big = ask_ms(0), ask_ms(ask_trials)
    out.update(ask_ms={"0": base, str(ask_trials): big}, ask_growth=big / base)
    return out
