"""Multi-worker trials: a Ray Train ``TorchTrainer`` (DDP; gloo on CPU, nccl on GPU) launched from
inside a Tune function trial (Ray 2.60's Train V2 cannot be handed to a ``Tuner`` directly).

The Tune side of a DDP trial is the same seed loop as a one-worker trial (``ltsearch.tune.runner``):
an Optuna trial trains every seed, each seed one ``TorchTrainer`` run. Each worker runs the same
loop with ``DistInfo(rank, world_size, wrap=DDP)``: samplers give every rank its share of one global
stream and the per-rank batch is ``batch_size / world_size``, so the global batch equals the
single-process one. The first seed's workers report each epoch but the last; ``TuneReportCallback``
forwards the metrics to Tune; only rank 0 writes Parquet (the same columns as a one-worker trial)
and the trial's checkpoint, from which every rank of a restarted trial resumes; the runner reads
the seed's outcome from rank 0's row.

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
from typing import Any

import torch

from ltsearch.resolved import ResolvedTrial
from ltsearch.spec import spec_from_json
from ltsearch.validation import load_plugins
from ltsearch.trial import TrialContext, execute, split_config
from ltsearch.tune.runner import epoch_reporter, run_configuration

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

    from ltsearch.train.loop import DistInfo

    tctx = ray.train.get_context()
    rank, world = tctx.get_world_rank(), tctx.get_world_size()
    load_plugins(cfg["plugins"])  # the registries of this worker process know what the trial names
    trial: ResolvedTrial = cfg["trial"]  # resolved once, in the Tune trial, and handed over as it is
    ctx = TrialContext(cfg["sweep"], cfg["run_dir"], cfg["param_types"])

    def wrap(module: torch.nn.Module) -> torch.nn.Module:
        ids = [torch.cuda.current_device()] if torch.cuda.is_available() and trial.exp.device != "cpu" else None
        return DDP(module, device_ids=ids, find_unused_parameters=getattr(module, "find_unused_parameters", False))

    reporter = epoch_reporter(trial, ray.train.report) if cfg["report_epochs"] else None
    # rank 0 writes Parquet and the trial's checkpoint; every rank resumes from that checkpoint
    execute(trial, ctx, reporter=reporter, dist=DistInfo(rank, world, wrap),
            checkpoint_every=cfg["checkpoint_every"], write=rank == 0)


def ddp_trainable(config: dict[str, Any], *, spec_json: str, run_dir: str, param_types: dict) -> None:
    import ray.train
    from ray import tune
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    for k, v in train_env().items():  # read by TorchTrainer here and propagated to its actors
        os.environ.setdefault(k, v)
    spec = spec_from_json(spec_json)
    res = spec.resources
    use_gpu = res.gpus_per_worker > 0

    def train(trial: ResolvedTrial, report_epochs: bool) -> None:
        trainer = TorchTrainer(
            _worker,
            train_loop_config={"trial": trial, "plugins": spec.plugins, "sweep": spec.name, "run_dir": run_dir,
                               "param_types": param_types, "checkpoint_every": spec.search.checkpoint_every,
                               "report_epochs": report_epochs},
            torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
            scaling_config=ray.train.ScalingConfig(
                num_workers=res.workers, use_gpu=use_gpu,
                resources_per_worker={"CPU": res.cpus_per_worker, **({"GPU": res.gpus_per_worker} if use_gpu else {})}),
            run_config=ray.train.RunConfig(name=f"ddp_{trial.trial_id}", storage_path=f"{run_dir}/_train",
                                           callbacks=[TuneReportCallback()]),
        )
        trainer.fit()

    run_configuration(spec, split_config(config), run_dir, train, tune.report)
