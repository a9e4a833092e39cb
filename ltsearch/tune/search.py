"""``run_sweep(spec)``: a Ray Tune ``Tuner`` from a spec, results in ``<storage>/<name>/``.

grid / random: cells are planned up front (``ltsearch.tune.space``); cells whose trial id already
has an ``ok`` row in the store are skipped, so re-running a spec only runs what is missing; Tune
gets the rest through ``BasicVariantGenerator`` (a ``grid_search`` over the cells). optuna: TPE
(or CMA-ES / GP / random) seeded with ``search.seed``, define-by-run for conditional parameters.
Ray's state lives in ``RUN_DIR/_tune`` so ``--resume`` can restore the experiment.
"""

from __future__ import annotations

import contextlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator

from ltsearch.errors import UserError
from ltsearch.results.schema import param_column, param_type, param_value
from ltsearch.results.store import ResultStore
from ltsearch.spec import Spec, dump_spec, resolve_experiment
from ltsearch.trial import TrialContext, planned_epochs, split_config, trial_id_for, write_outcome
from ltsearch.tune.space import OptunaDefineByRun, plan_cells

TUNE_DIR = "_tune"

# Tune's behaviour that ltsearch relies on, set in the driver before Tune starts (setdefault: a user's
# environment wins): trials keep the driver's working directory, no automatic result loggers (the
# Parquet store is the record), the classic progress output off, no nagging about checkpoint syncs.
TUNE_ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0",
            "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100"}


def set_tune_env() -> None:
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)


@dataclass
class SweepResult:
    run_dir: str
    planned: int
    skipped: int
    ran: int


def run_dir_for(spec: Spec, storage: str) -> str:
    if "://" in storage:
        return f"{storage.rstrip('/')}/{spec.name}"
    return str(Path(storage).expanduser().resolve() / spec.name)


def param_types_for(spec: Spec) -> dict[str, Any]:
    return {param_column(k): param_type([param_value(v) for v in d.candidates()], d.kind)
            for k, d in spec.search.space.items()}


def grace_period(spec: Spec) -> int:
    """ASHA's grace period: from the YAML, else just after the method's last behaviour change (the
    switches its plan declares: DRW, hard-aware loss, stage 2; and the first lr milestone), so
    two-phase methods reach their second phase before ASHA may stop them."""
    if spec.search.grace_period:
        return spec.search.grace_period
    from ltsearch.methods import method_plan

    plan = method_plan(spec.experiment)
    changes = list(plan.switches)
    optim = spec.experiment.optim
    if optim.lr_schedule == "step" and optim.milestones:
        changes.append(min(optim.milestones))
    changes = [c for c in changes if 0 < c < plan.epochs]
    return max(changes) + 1 if changes else max(1, plan.epochs // 4)


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Start (or connect to) Ray; returns True when this call started it."""
    import ray

    set_tune_env()
    if ray.is_initialized():
        return False
    from ltsearch.train.ddp import train_env

    # Ray Train's settings for DDP trials are the job's too: its actors then run in the job's own
    # runtime environment (no second environment for Ray to set up)
    env = {"PYTHONWARNINGS": "ignore", **{k: os.environ[k] for k in TUNE_ENV}, **train_env()}  # the user's values win
    kwargs: dict[str, Any] = dict(logging_level="ERROR", log_to_driver=False, runtime_env={"env_vars": env})
    if address:
        if (Path.home() / ".ray" / "auth_token").is_file():  # `ray start --head` enables token auth (Ray 2.60)
            os.environ.setdefault("RAY_AUTH_MODE", "token")
        ray.init(address=address, **kwargs)
    else:
        ray.init(num_cpus=num_cpus or os.cpu_count(), include_dashboard=False, **kwargs)
    return True


@contextlib.contextmanager
def ray_session(address: str | None = None, num_cpus: int | None = None) -> Iterator[None]:
    """Ray started (or joined) for the block; shut down after it only if this call started it."""
    started = init_ray(address, num_cpus)
    try:
        yield
    finally:
        if started:
            import ray

            ray.shutdown()


def _stopped_or_failed_writer(spec: Spec, run_dir: str, param_types: dict[str, Any]):
    from ray.tune import Callback

    class RecordUnfinished(Callback):
        """Driver side: a trial stopped by the scheduler or killed by an error never reached its
        own final write; record it from its last reported result (only if it has no row yet)."""

        def _record(self, trial: Any, status: str, error: str = "") -> None:
            params = split_config(trial.config)
            seed = params.pop("seed", spec.search.seeds[0])
            exp = resolve_experiment(spec.experiment, {**params, "seed": seed})
            if ResultStore(run_dir).has_trial(trial_id_for(exp)):
                return
            ctx = TrialContext(spec.name, run_dir, param_types, params, spec.resources.workers)
            write_outcome(ctx, exp, status, error, last=dict(trial.last_result or {}))

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            self._record(trial, "stopped")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            err = ""
            if getattr(trial, "error_file", None) and os.path.exists(trial.error_file):
                lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
                err = lines[-1][:500] if lines else ""
            self._record(trial, "failed", err or "trial raised an error")

    return RecordUnfinished()


def build_tuner(spec: Spec, run_dir: str, cells: list[dict[str, Any]], resume: bool, callbacks: list) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    from ltsearch.tune.trainable import tune_trial

    s, res = spec.search, spec.resources
    types = param_types_for(spec)
    fn = tune.with_parameters(tune_trial, spec_json=spec.model_dump_json(by_alias=True), run_dir=run_dir,
                              param_types=types, cpus=res.cpus_per_worker)
    if res.workers > 1:
        from ltsearch.train.ddp import ddp_trainable

        fn = tune.with_parameters(ddp_trainable, spec_json=spec.model_dump_json(by_alias=True), run_dir=run_dir,
                                  param_types=types)
        # the trial only launches the TorchTrainer, whose workers hold the CPUs/GPUs: ask for a
        # token amount of memory (a bundle cannot be empty) so it never competes with its workers
        trainable = tune.with_resources(fn, tune.PlacementGroupFactory([{"memory": 1024**2}]))
    else:
        trainable = tune.with_resources(fn, {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker})
    tune_path = f"{run_dir}/{TUNE_DIR}"
    if resume:
        if not tune.Tuner.can_restore(tune_path):
            raise UserError(f"--resume: no Ray Tune state in {tune_path}; run without --resume")
        return tune.Tuner.restore(tune_path, trainable, resume_unfinished=True, resume_errored=True)

    scheduler = None
    if s.scheduler == "asha":
        max_t = planned_epochs(spec.experiment)
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=min(grace_period(spec), max_t),
                                  reduction_factor=s.reduction_factor)
    search_alg = make_search_alg(spec, run_dir)
    if s.algorithm == "optuna":
        param_space: dict[str, Any] = {}
        num_samples = s.num_samples
    else:
        param_space = {"params": tune.grid_search(cells)}
        num_samples = 1
    if s.max_concurrent and s.algorithm == "optuna":
        search_alg = ConcurrencyLimiter(search_alg, max_concurrent=s.max_concurrent)
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=s.metric, mode=s.mode, search_alg=search_alg, scheduler=scheduler,
                                    num_samples=num_samples, reuse_actors=s.reuse_actors),
        run_config=tune.RunConfig(
            name=TUNE_DIR, storage_path=run_dir, verbose=0, callbacks=callbacks,
            failure_config=tune.FailureConfig(max_failures=s.max_failures),
        ),
    )


def tpe_defaults(num_samples: int) -> dict[str, Any]:
    """TPE for ltsearch's small budgets (``ltsearch bench --search``, docs/performance.md): fewer
    random start-up trials than Optuna's 10 (a sixth of the budget, between 4 and 10), a
    multivariate density over the parameters (loss and learning rate interact), ``group`` for
    conditional spaces, and ``constant_liar`` so trials running in parallel are not sampled alike."""
    return {"n_startup_trials": min(10, max(4, num_samples // 6)), "multivariate": True, "group": True,
            "constant_liar": True}


def make_search_alg(spec: Spec, run_dir: str | None = None) -> Any:
    """BasicVariantGenerator for planned grid/random cells; OptunaSearch (seeded sampler,
    define-by-run space, ``search.initial`` evaluated first) for optuna, its study stored in
    ``RUN_DIR/optuna.db`` or ``search.optuna_storage`` (``ltsearch.tune.study``; in memory
    without ``run_dir``) and warm-started from ``search.warm_start``."""
    from ray.tune.search import BasicVariantGenerator

    s = spec.search
    if s.algorithm != "optuna":
        return BasicVariantGenerator(max_concurrent=s.max_concurrent or 0)
    import optuna
    from ltsearch.tune.study import study_options, StoredOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    samplers = {"tpe": lambda: optuna.samplers.TPESampler(seed=s.seed, **tpe_defaults(s.num_samples)),
                "cmaes": lambda: optuna.samplers.CmaEsSampler(seed=s.seed),
                "gp": lambda: optuna.samplers.GPSampler(seed=s.seed),
                "random": lambda: optuna.samplers.RandomSampler(seed=s.seed)}
    return StoredOptunaSearch(space=OptunaDefineByRun(s, spec.experiment), metric=s.metric, mode=s.mode,
                              sampler=samplers[s.sampler](), points_to_evaluate=s.initial or None,
                              **study_options(spec, run_dir))


def plan(spec: Spec, run_dir: str) -> tuple[list[dict[str, Any]], int]:
    """Cells still to run (grid/random) and how many were skipped as already finished."""
    if spec.search.algorithm == "optuna":
        return [], 0
    done = {tid for tid, st in ResultStore(run_dir).trial_status().items() if st == "ok"}
    cells, skipped = [], 0
    seen: set[str] = set()
    for cell in plan_cells(spec.search, spec.experiment):
        tid = trial_id_for(resolve_experiment(spec.experiment, cell, source="search.space"))
        if tid in seen:
            continue
        seen.add(tid)
        if tid in done:
            skipped += 1
        else:
            cells.append(cell)
    return cells, skipped


def run_sweep(spec: Spec, storage: str = "runs", resume: bool = False, address: str | None = None,
              callbacks: list | None = None, num_cpus: int | None = None,
              warn: Callable[[str], None] = print) -> SweepResult:
    """Plan, (with ``address``) check the cluster, then run the missing trials through Tune."""
    set_tune_env()
    run_dir = run_dir_for(spec, storage)
    store = ResultStore(run_dir)
    cells, skipped = plan(spec, run_dir)
    planned = len(cells) + skipped if spec.search.algorithm != "optuna" else spec.search.num_samples
    if spec.search.algorithm == "optuna":  # before anything is written: the study's database, warm starts
        from ltsearch.tune.study import optuna_preflight

        optuna_preflight(spec, run_dir, warn)
    if spec.search.algorithm != "optuna" and not cells and not resume:
        store.write_text("spec.yaml", dump_spec(spec))
        return SweepResult(run_dir, planned, skipped, 0)
    with ray_session(address, num_cpus):
        if address:
            from ltsearch.cluster import preflight

            problems, warnings = preflight(storage, spec, address, num_trials=planned)
            if problems:
                raise UserError("; ".join(problems))
            for w in warnings:
                warn(f"warning: {w}")
        store.write_text("spec.yaml", dump_spec(spec))
        from ltsearch.tune.loggers import build_loggers

        cbs = [_stopped_or_failed_writer(spec, run_dir, param_types_for(spec)), *(callbacks or []),
               *build_loggers(spec.search.loggers, spec.name)]
        tuner = build_tuner(spec, run_dir, cells, resume, cbs)
        ran = len(tuner.fit())
    return SweepResult(run_dir, planned, skipped, ran)
