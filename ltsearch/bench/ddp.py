"""DDP trial start-up (``resources.workers: 2``) and where it goes.

- ``ddp_startup_s``: a 1-trial, 1-epoch sweep with 2 workers minus the same with 1 worker (one Ray
  session for all, so Ray's own start is not counted; the trial's training time is the same).
- The phases of a bare ``TorchTrainer`` (2 gloo workers, an empty train function that records
  timestamps) launched from a Ray task, as a Tune trial launches it: ``to_worker_processes`` (the
  controller actor, the placement group, scheduling the worker actors: ``fit()`` until the later
  worker process exists), ``worker_init`` (a worker process's Ray start, Ray Train's and torch's
  imports, ``torch.distributed`` set-up, Ray Train's context: process creation until the train
  function runs), ``import_loop`` (ltsearch's loop imported in the train function), ``finish`` (the
  train function's end until ``fit()`` returns); with ltsearch's ``TRAIN_ENV`` and with Ray Train's
  defaults.
- Plain Ray for scale: a placement group of 2 CPU bundles, 2 actors started in it, and a gloo
  process group initialised between them.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

from ltsearch.bench.common import BenchOptions, median, timed

RAY_TRAIN_DEFAULTS = {"RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "2.0", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "1",
                      "RAY_TRAIN_METRICS_ENABLED": "1"}


def _stamp_fn(cfg: dict[str, Any]) -> None:
    """Train function: record when this worker process was created, entered, imported the loop."""
    import psutil  # shipped with Ray (ray/thirdparty_files), on sys.path in Ray workers
    import ray.train

    enter = time.time()
    import ltsearch.train.loop  # noqa: F401

    stamps = {"created": psutil.Process().create_time(), "enter": enter, "imported": time.time(), "exit": time.time()}
    rank = ray.train.get_context().get_world_rank()
    with open(os.path.join(cfg["dir"], f"rank{rank}.json"), "w") as f:
        json.dump(stamps, f)


def _launch(env: dict[str, str], stamp_dir: str) -> dict[str, float]:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer

    os.environ.update(env)
    t0 = time.time()
    TorchTrainer(_stamp_fn, train_loop_config={"dir": stamp_dir}, torch_config=TorchConfig(backend="gloo"),
                 scaling_config=ray.train.ScalingConfig(num_workers=2, resources_per_worker={"CPU": 1}),
                 run_config=ray.train.RunConfig(name=f"bench_{os.getpid()}_{t0:.0f}",
                                                storage_path=os.path.join(stamp_dir, "train"))).fit()
    t1 = time.time()
    ranks = []
    for r in (0, 1):
        with open(os.path.join(stamp_dir, f"rank{r}.json")) as f:
            ranks.append(json.load(f))
    return {"to_worker_processes_s": max(s["created"] for s in ranks) - t0,
            "worker_init_s": max(s["enter"] - s["created"] for s in ranks),
            "import_loop_s": max(s["imported"] - s["enter"] for s in ranks),
            "finish_s": t1 - max(s["exit"] for s in ranks), "trainer_s": t1 - t0}


def _plain_ray() -> dict[str, float]:
    import ray
    from ray.util.placement_group import placement_group, remove_placement_group
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    @ray.remote(num_cpus=1)
    class Peer:
        def init_gloo(self, rank: int, port: int) -> float:
            import torch.distributed as dist

            t = time.perf_counter()
            dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
            dist.barrier()
            dist.destroy_process_group()
            return time.perf_counter() - t

        def ready(self) -> None:
            return None

    t = time.perf_counter()
    pg = placement_group([{"CPU": 1}] * 2)
    ray.get(pg.ready())
    pg_s = time.perf_counter() - t
    t = time.perf_counter()
    peers = [Peer.options(scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=i)).remote()
             for i in range(2)]
    ray.get([p.ready.remote() for p in peers])
    actors_s = time.perf_counter() - t
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    gloo_s = max(ray.get([p.init_gloo.remote(i, port) for i, p in enumerate(peers)]))
    for p in peers:
        ray.kill(p)
    remove_placement_group(pg)
    return {"placement_group_s": pg_s, "actor_start_s": actors_s, "gloo_init_s": gloo_s}


def measure_ddp(opts: BenchOptions) -> dict[str, Any]:
    if not opts.ddp:
        return {"ddp_startup_s": "not measured (--no-ddp)"}
    import ray

    from ltsearch.bench.sweep import sweep_spec
    from ltsearch.tune.ddp import train_env
    from ltsearch.tune.search import init_ray, run_sweep

    out: dict[str, Any] = {}
    started = init_ray(None, os.cpu_count() or 1)
    try:
        times = {}
        for workers in (1, 2, 1):  # the second 1-worker run counts (warm)
            spec = sweep_spec(1, 1, 64, 1.0, name=f"bench_ddp{workers}", workers=workers)
            with tempfile.TemporaryDirectory() as d:
                times[workers] = timed(lambda: run_sweep(spec, storage=d))
        out.update(ddp_startup_s=times[2] - times[1], ddp_trial_s=times[2])
        launch = ray.remote(num_cpus=0)(_launch)
        phases: dict[str, dict[str, list[float]]] = {"ltsearch": {}, "ray_defaults": {}}
        for rep in range(opts.ddp_repeats):
            for name, env in (("ltsearch", train_env()), ("ray_defaults", RAY_TRAIN_DEFAULTS))[:: 1 if rep % 2 == 0 else -1]:
                with tempfile.TemporaryDirectory() as d:
                    for k, v in ray.get(launch.remote(env, d)).items():
                        phases[name].setdefault(k, []).append(v)
        out["ddp_phases"] = {name: {k: median(v) for k, v in p.items()} for name, p in phases.items()}
        out["ddp_plain_ray"] = _plain_ray()
    finally:
        if started:
            ray.shutdown()
    return out
