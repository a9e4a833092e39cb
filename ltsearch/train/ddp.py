"""Multi-worker trials: a Ray Train ``TorchTrainer`` (DDP; gloo on CPU, nccl on GPU) launched from
inside a Tune function trial (Ray 2.60's Train V2 cannot be handed to a ``Tuner`` directly).

Each worker runs the same loop with ``DistInfo(rank, world_size, wrap=DDP)``: samplers give every
rank its share of one global stream and the per-rank batch is ``batch_size / world_size``, so the
global batch equals the single-process one. Every rank reports each epoch; ``TuneReportCallback``
forwards the metrics to Tune; only rank 0 writes Parquet (the same columns as a one-worker trial)
and the trial's checkpoint, from which every rank of a restarted trial resumes.

Start-up: a trial's ``TorchTrainer`` starts a controller actor, a placement group and one worker
process per rank, which import Ray Train, torch and ltsearch before ``torch.distributed`` is set up
(``ltsearch bench`` times each phase; docs/performance.md). ``TRAIN_ENV`` trims what Ray Train adds
on top: the controller polls its workers every 0.25 s instead of 2 s (the poll decides when
training starts and when a finished run is noticed), no preemption-watcher actor (one process
fewer per trial; a preempted node fails the trial, which Tune retries from the trial's checkpoint
with ``search.max_failures``) and no Ray Train metrics. A value already in the environment wins.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import torch

from ltsearch.spec import ExperimentSpec, resolve_experiment, spec_from_json
from ltsearch.validation import load_plugins
from ltsearch.train.loop import DistInfo, EpochRecord, threads_for
from ltsearch.trial import TrialContext, execute, final_metrics, planned_epochs, split_config, trial_id_for


TRAIN_ENV = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.25",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
    "RAY_TRAIN_METRICS_ENABLED": "0",
}


def train_env() -> dict[str, str]:
    """``TRAIN_ENV`` with the values already set in this process's environment."""
    return {k: os.environ.get(k, v) for k, v in TRAIN_ENV.items()}


def _worker(cfg: dict[str, Any]) -> None:
    import ray.train
    from torch.nn.parallel import DistributedDataParallel as DDP

    tctx = ray.train.get_context()
    rank, world = tctx.get_world_rank(), tctx.get_world_size()
    torch.set_num_threads(threads_for(cfg["cpus"]))
    load_plugins(cfg["plugins"])
    exp = ExperimentSpec.model_validate_json(cfg["exp_json"])
    ctx = TrialContext(cfg["sweep"], cfg["run_dir"], cfg["param_types"], cfg["params"], world)
    tid = trial_id_for(exp)
    planned = planned_epochs(exp)

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        ids = [torch.cuda.current_device()] if torch.cuda.is_available() and exp.device != "cpu" else None
        return DDP(module, device_ids=ids, find_unused_parameters=getattr(module, "find_unused_parameters", False))

    def report(rec: EpochRecord, state: Callable[[], dict[str, Any]]) -> None:
        if rec.epoch + 1 < planned:  # every rank reports; the last epoch after rank 0 wrote the rows
            ray.train.report({**rec.metrics(), "trial_key": tid})

    # rank 0 writes Parquet and the trial's checkpoint; every rank resumes from that checkpoint
    out = execute(exp, ctx, reporter=report, dist=DistInfo(rank, world, wrap),
                  checkpoint_every=cfg["checkpoint_every"], write=rank == 0)
    if out is not None:
        ray.train.report({**final_metrics(out), "trial_key": tid})


def ddp_trainable(config: dict[str, Any], *, spec_json: str, run_dir: str, param_types: dict) -> None:
    import ray.train
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    for k, v in train_env().items():  # read by TorchTrainer here and propagated to its actors
        os.environ.setdefault(k, v)
    spec = spec_from_json(spec_json)
    params = split_config(config)
    seed = params.pop("seed", spec.search.seeds[0])
    exp = resolve_experiment(spec.experiment, {**params, "seed": seed}, source="search.space")
    res = spec.resources
    use_gpu = res.gpus_per_worker > 0
    trainer = TorchTrainer(
        _worker,
        train_loop_config={"exp_json": exp.model_dump_json(by_alias=True), "sweep": spec.name, "run_dir": run_dir,
                           "param_types": param_types, "params": params, "cpus": res.cpus_per_worker,
                           "checkpoint_every": spec.search.checkpoint_every, "plugins": spec.plugins},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers, use_gpu=use_gpu,
            resources_per_worker={"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}),
        run_config=ray.train.RunConfig(name=f"ddp_{trial_id_for(exp)}", storage_path=f"{run_dir}/_train",
                                       callbacks=[TuneReportCallback()]),
    )
    trainer.fit()
