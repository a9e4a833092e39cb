"""``run_sweep(spec)``: a Ray Tune ``Tuner`` from a spec, results in ``<storage>/<name>/``.

grid / random: cells are planned up front (``ltsearch.space``), once per command (``plan_sweep``);
cells whose trial id already has an ``ok`` row in the store are skipped, so re-running a spec only
runs what is missing; Tune gets the rest through ``BasicVariantGenerator`` (a ``grid_search`` over
the cells). A race (``search.race``): the same cells, proposed by ``ltsearch.tune.race.RaceSearcher``
as the race needs them, in one Tune experiment. optuna: TPE (or CMA-ES / GP / random),
define-by-run for conditional parameters, its study in a database (``ltsearch.tune.study``; several
metrics: a multi-objective study). Ray's state lives in ``RUN_DIR/_tune`` so ``--resume`` can
restore the experiment.

Order of a sweep: every check that can refuse runs first and writes nothing (the storage is
writable, the run directory holds no run of another spec, ``--resume`` has a run to resume, the
study's database answers, the loggers can log, the cluster fits); then ``run.json`` and
``spec.yaml`` are written and Tune starts. SIGINT and SIGTERM stop Tune cleanly (it saves its
state; trials keep their checkpoints): the sweep returns ``interrupted`` with the signal's name and
``run.json`` says so.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from ltsearch.errors import UserError
from ltsearch.resolved import ResolvedTrial
from ltsearch.results.run_dir import HEARTBEAT_S, RunState, check_run_dir, check_writable
from ltsearch.results.schema import param_column, param_type, param_value
from ltsearch.results.store import ResultStore
from ltsearch.secrets import mask, remember
from ltsearch.space import plan_cells, plan_configurations, race_units, seed_units
from ltsearch.spec import Spec, dump_spec
from ltsearch.trial import planned_epochs, trial_for

TUNE_DIR = "_tune"

# Tune's behaviour that ltsearch relies on, set in the driver before Tune starts (setdefault: a user's
# environment wins): trials keep the driver's working directory, no automatic result loggers (the
# Parquet store is the record; search.loggers adds Tune's own), the classic progress output off, no
# nagging about checkpoint syncs, and SIGINT left to ltsearch (which hands it to Tune's own stop,
# see ``Interrupts``).
TUNE_ENV = {"RAY_CHDIR_TO_TRIAL_DIR": "0", "TUNE_DISABLE_AUTO_CALLBACK_LOGGERS": "1", "RAY_AIR_NEW_OUTPUT": "0",
            "TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S": "100",
            "TUNE_DISABLE_SIGINT_HANDLER": "1"}


def set_tune_env() -> None:
    for key, value in TUNE_ENV.items():
        os.environ.setdefault(key, value)


@dataclass
class SweepPlan:
    """What one ``ltsearch run`` runs, planned once: for grid / random every planned trial (resolved)
    and the cells still without an ``ok`` row; for optuna ``num_samples`` configurations."""

    run_dir: str
    cells: list[dict[str, Any]] = field(default_factory=list)  # grid / random: to run
    trials: list[ResolvedTrial] = field(default_factory=list)  # grid / random: every planned trial
    skipped: int = 0  # grid / random: planned trials already ok
    planned: int = 0  # trials (a configuration x a seed); optuna: num_samples configurations x seeds


@dataclass
class SweepResult:
    run_dir: str
    planned: int
    skipped: int
    ran: int
    finished: int = 0  # planned units that have a row (grid/random trials; optuna configurations)
    units: str = "trials"
    interrupted: str | None = None  # "SIGINT" / "SIGTERM" when a signal stopped the sweep


def run_dir_for(spec: Spec, storage: str) -> str:
    if "://" in storage:
        return f"{storage.rstrip('/')}/{spec.name}"
    return str(Path(storage).expanduser().resolve() / spec.name)


def plan_sweep(spec: Spec, run_dir: str) -> SweepPlan:
    """Expand the grid / random cells once, resolve each planned trial once, skip those with an ok row.
    A race (``search.race``): every trial it may run, and as ``cells`` the units its current round
    still needs (none once the race is over)."""
    s = spec.search
    if s.algorithm == "optuna":
        return SweepPlan(run_dir, planned=s.num_samples * len(seed_units(s)))
    if s.race is not None:
        return _plan_race(spec, run_dir)
    done = {tid for tid, st in ResultStore(run_dir).trial_status().items() if st == "ok"}
    plan = SweepPlan(run_dir)
    seen: set[str] = set()
    for cell in plan_cells(s, spec.experiment):
        trial = trial_for(spec, cell)
        if trial.trial_id in seen:
            continue
        seen.add(trial.trial_id)
        plan.trials.append(trial)
        if trial.trial_id in done:
            plan.skipped += 1
        else:
            plan.cells.append(cell)
    plan.planned = len(plan.trials)
    return plan


def _plan_race(spec: Spec, run_dir: str) -> SweepPlan:
    from ltsearch.tune.race import race_plan, race_values

    s = spec.search
    configs, units = plan_configurations(s, spec.experiment), race_units(s)
    trials = [[trial_for(spec, {**c, **u}) for u in units] for c in configs]
    store = ResultStore(run_dir)
    values = race_values(store, [[t.trial_id for t in row] for row in trials], s.metric)
    state = race_plan(len(configs), len(units), values, s.race.min_seeds, s.race.confidence, s.mode)
    status = store.trial_status()
    flat = [t for row in trials for t in row]
    return SweepPlan(run_dir, cells=[{**configs[c], **units[u]} for c, u in state.missing], trials=flat,
                     skipped=sum(status.get(t.trial_id) == "ok" for t in flat), planned=len(flat))


def race_summary(run_dir: str) -> str:
    """One line on the race of ``run_dir`` (from ``RUN_DIR/race.json``), or ''."""
    import json

    from ltsearch.tune.race import RACE_FILE

    try:
        with ResultStore(run_dir).fs.open_input_stream(f"{ResultStore(run_dir).root}/{RACE_FILE}") as f:
            race = json.loads(f.read().decode())
    except (OSError, ValueError):
        return ""
    configs = race["configurations"]
    states = [c["state"] for c in configs]
    best = configs[race["best"]] if race.get("best") is not None else None
    done = "over" if race["finished"] else "not over"
    text = (f"race {done}: {race['trials']} of {race['trials_every_seed']} trials "
            f"({race['trials'] / max(1, race['trials_every_seed']):.0%}) over {len(configs)} configurations; ")
    if best is not None:
        text += (f"best {best['params']} ({race['metric']} {best['mean']:.2f} over {best['units']} seeds), "
                 f"{states.count('out')} out, {states.count('undecided')} undecided at the seed limit, "
                 f"{states.count('failed')} failed")
    return text


def param_types_for(spec: Spec) -> dict[str, Any]:
    return {param_column(k): param_type([param_value(v) for v in d.candidates()], d.kind)
            for k, d in spec.search.space.items()}


def _changes(spec: Spec) -> tuple[list[int], int]:
    """The 0-based epochs where the experiment's behaviour changes (its plan's switches: DRW,
    hard-aware loss, stage 2; and the first lr milestone) inside training, and its epochs."""
    plan = trial_for(spec).plan
    changes = list(plan.switches)
    optim = spec.experiment.optim
    if optim.lr_schedule == "step" and optim.milestones:
        changes.append(min(optim.milestones))
    return sorted(c for c in changes if 0 < c < plan.epochs), plan.epochs


def grace_period(spec: Spec) -> int:
    """ASHA's grace period: from the YAML, else just after the method's last behaviour change (the
    switches its plan declares: DRW, hard-aware loss, stage 2; and the first lr milestone), so
    two-phase methods reach their second phase before ASHA may stop them."""
    if spec.search.grace_period:
        return spec.search.grace_period
    changes, epochs = _changes(spec)
    return changes[-1] + 1 if changes else max(1, epochs // 4)


def grace_note(spec: Spec) -> str | None:
    """A ``note:`` when the YAML's ``search.grace_period`` lets ASHA stop trials before a behaviour
    change (a method switch or the first lr milestone): knobs that act from there are judged before
    they act. None without ASHA, without a YAML grace period, or when it waits for every change."""
    if spec.search.scheduler != "asha" or not spec.search.grace_period:
        return None
    changes, _ = _changes(spec)
    early = [c for c in changes if spec.search.grace_period <= c]
    if not early:
        return None
    g = spec.search.grace_period
    return (f"note: search.grace_period {g} lets ASHA stop trials after {g} epochs, before the change at epoch "
            f"{early[-1]} (counted from 0: a method's switch -- DRW, a hard-aware phase, a stage -- or the first "
            f"lr milestone), so what acts from there is judged before it acts; unset, the grace period is "
            f"{changes[-1] + 1}")


def init_ray(address: str | None, num_cpus: int | None = None) -> bool:
    """Start (or connect to) Ray; returns True when this call started it."""
    import ray

    set_tune_env()
    if ray.is_initialized():
        return False
    from ltsearch.tune.ddp import train_env

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


class Interrupts:
    """SIGINT / SIGTERM during ``Tuner.fit()``: the first one asks Tune to stop the way its own Ctrl-C
    does (Tune registers that stop for SIGUSR1 in every run: it stops the trials, saves the
    experiment state one last time and returns), and is remembered as ``signal``; a second one of
    either kind stops the driver at once (KeyboardInterrupt / SystemExit)."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __init__(self) -> None:
        self.signal: str | None = None
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signal is not None:  # the second signal: no more waiting
            if signum == signal.SIGINT:
                raise KeyboardInterrupt
            raise SystemExit(128 + signum)
        self.signal = signal.Signals(signum).name
        os.kill(os.getpid(), signal.SIGUSR1)

    def __enter__(self) -> "Interrupts":
        if threading.current_thread() is threading.main_thread():
            for s in self.SIGNALS:
                self._previous[s] = signal.signal(s, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)


def _trainable(spec: Spec, run_dir: str) -> Any:
    from ray import tune

    from ltsearch.tune.trainable import tune_trial

    res = spec.resources
    spec_json = mask(spec.model_dump_json(by_alias=True))  # trials never see a password
    kwargs = dict(spec_json=spec_json, run_dir=run_dir, param_types=param_types_for(spec))
    if res.workers > 1:
        from ltsearch.tune.ddp import ddp_trainable

        # the trial only launches the TorchTrainer, whose workers hold the CPUs/GPUs: ask for a
        # token amount of memory (a bundle cannot be empty) so it never competes with its workers
        return tune.with_resources(tune.with_parameters(ddp_trainable, **kwargs),
                                   tune.PlacementGroupFactory([{"memory": 1024**2}]))
    return tune.with_resources(tune.with_parameters(tune_trial, **kwargs),
                               {"cpu": res.cpus_per_worker, "gpu": res.gpus_per_worker})


def build_tuner(spec: Spec, run_dir: str, cells: list[dict[str, Any]], resume: bool, callbacks: list) -> Any:
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler
    from ray.tune.search import ConcurrencyLimiter

    s = spec.search
    trainable = _trainable(spec, run_dir)
    tune_path = f"{run_dir}/{TUNE_DIR}"
    if resume:
        return tune.Tuner.restore(tune_path, trainable, resume_unfinished=True, resume_errored=True)

    scheduler = None
    if s.scheduler == "asha":
        max_t = trial_for(spec).plan.epochs
        scheduler = ASHAScheduler(time_attr="epoch", max_t=max_t, grace_period=min(grace_period(spec), max_t),
                                  reduction_factor=s.reduction_factor)
    search_alg = make_search_alg(spec, run_dir)
    if s.algorithm == "optuna":
        param_space: dict[str, Any] = {}
        num_samples = s.num_samples
    elif s.race is not None:  # the race's searcher proposes the cells; at most every unit of every configuration
        param_space = {}
        num_samples = len(plan_configurations(s, spec.experiment)) * len(race_units(s))
    else:
        param_space = {"params": tune.grid_search(cells)}
        num_samples = 1
    if s.max_concurrent and (s.algorithm == "optuna" or s.race is not None):
        search_alg = ConcurrencyLimiter(search_alg, max_concurrent=s.max_concurrent)
    one = isinstance(s.metric, str)  # a multi-objective study: the searcher has the metrics, Tune none
    return tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(metric=s.metric if one else None, mode=s.mode if one else None,
                                    search_alg=search_alg, scheduler=scheduler,
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
    """BasicVariantGenerator for planned grid/random cells; OptunaSearch (sampler seeded per
    session, define-by-run space, ``search.initial`` evaluated first) for optuna, its study stored in
    ``RUN_DIR/optuna.db`` or ``search.optuna_storage`` (``ltsearch.tune.study``; in memory
    without ``run_dir``) and warm-started from ``search.warm_start``."""
    from ray.tune.search import BasicVariantGenerator

    s = spec.search
    if s.race is not None:
        from ltsearch.tune.race import race_searcher

        return race_searcher(spec, run_dir or "")
    if s.algorithm != "optuna":
        return BasicVariantGenerator(max_concurrent=s.max_concurrent or 0)
    import optuna
    from ltsearch.space import OptunaDefineByRun
    from ltsearch.tune.study import study_options, StoredOptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    mode = s.modes if isinstance(s.metric, list) else s.mode  # a multi-objective study: one direction per metric
    return StoredOptunaSearch(space=OptunaDefineByRun(s, spec.experiment), metric=s.metric, mode=mode,
                              sampler_factory=SamplerFactory(s.sampler, s.num_samples),
                              points_to_evaluate=s.initial or None, seed=s.seed, **study_options(spec, run_dir))


class SamplerFactory:
    """The Optuna sampler of a session, made for its seed (``StoredOptunaSearch`` seeds each
    session: ``search.seed`` for a new study, a seed of its own for a session that continues one).
    A class, not a closure, so Tune can pickle it."""

    def __init__(self, name: str, num_samples: int):
        self.name, self.num_samples = name, num_samples

    def __call__(self, seed: int) -> Any:
        import optuna

        if self.name == "tpe":
            return optuna.samplers.TPESampler(seed=seed, **tpe_defaults(self.num_samples))
        if self.name == "cmaes":
            return optuna.samplers.CmaEsSampler(seed=seed)
        if self.name == "gp":
            return optuna.samplers.GPSampler(seed=seed)
        return optuna.samplers.RandomSampler(seed=seed)


def preflight(spec: Spec, run_dir: str, resume: bool, warn: Callable[[str], None], spec_path: str = "") -> None:
    """Every check that may refuse the sweep, before anything is written (each a one-line UserError)."""
    check_writable(run_dir)
    check_run_dir(spec, run_dir, resume, spec_path or "the spec")
    if resume:
        from ray import tune

        if not tune.Tuner.can_restore(f"{run_dir}/{TUNE_DIR}"):
            raise UserError(f"--resume: no Ray Tune state in {run_dir}/{TUNE_DIR} (the sweep never started); "
                            "run without --resume")
    if spec.search.algorithm == "optuna":  # the study's database, warm starts
        from ltsearch.tune.study import optuna_preflight

        optuna_preflight(spec, run_dir, warn)
    from ltsearch.tune.loggers import check_loggers

    check_loggers(spec.search.loggers)


def run_sweep(spec: Spec, storage: str = "runs", resume: bool = False, address: str | None = None,
              callbacks: list | None = None, num_cpus: int | None = None,
              warn: Callable[[str], None] = print, plan: SweepPlan | None = None,
              spec_path: str = "", command: str = "") -> SweepResult:
    """Plan (unless ``plan`` is given), check, then run the missing trials through Tune."""
    set_tune_env()
    run_dir = run_dir_for(spec, storage)
    plan = plan if plan is not None else plan_sweep(spec, run_dir)
    preflight(spec, run_dir, resume, warn, spec_path)
    store = ResultStore(run_dir)
    state = RunState(run_dir)
    optuna = spec.search.algorithm == "optuna"
    if not optuna and not plan.cells and not resume:  # every cell ok, or the race is over
        state.start(command, plan.planned, planned_epochs(spec.experiment))
        store.write_text("spec.yaml", dump_spec(spec))
        state.end("finished")
        if spec.search.race is not None and race_summary(run_dir):
            warn(race_summary(run_dir))
        return SweepResult(run_dir, plan.planned, plan.skipped, 0, finished=plan.planned)
    remember(spec.search.optuna_storage)  # a password stays in memory, for a restored searcher
    with ray_session(address, num_cpus):
        if address:
            from ltsearch.cluster import preflight as cluster_preflight

            problems, notes = cluster_preflight(storage, spec, address, num_trials=plan.planned)
            if problems:
                raise UserError("; ".join(problems))
            for w in notes:
                warn(f"warning: {w}")
        from ltsearch.tune.loggers import build_loggers

        from ltsearch.tune.callbacks import SESSION, Heartbeat, RecordUnfinished

        interrupts = Interrupts()
        SESSION.clear()
        SESSION.update(interrupts=interrupts, state=state, trials=[])
        cbs = [RecordUnfinished(spec, run_dir, param_types_for(spec)), Heartbeat(HEARTBEAT_S), *(callbacks or []),
               *build_loggers(spec.search.loggers, spec.name)]
        state.start(command, plan.planned, planned_epochs(spec.experiment))
        store.write_text("spec.yaml", dump_spec(spec))
        try:
            tuner = build_tuner(spec, run_dir, plan.cells, resume, cbs)
            with interrupts:
                grid = tuner.fit()
        except BaseException:
            state.end("interrupted" if interrupts.signal else "failed", interrupts.signal)
            raise
        if spec.search.algorithm == "optuna":
            from ltsearch.tune.study import exhausted, settle_interrupted

            if interrupts.signal:
                settle_interrupted()
            if exhausted():
                warn("note: every configuration of search.space is evaluated, running or waiting in the study; "
                     "the sweep ended early (widen search.space to search further)")
        if spec.search.race is not None and race_summary(run_dir):
            warn(race_summary(run_dir))
        state.end("interrupted" if interrupts.signal else "finished", interrupts.signal)
    finished, units, planned = _finished(spec, plan, SESSION.get("trials") or [])
    return SweepResult(run_dir, planned, plan.skipped, len(grid), finished=finished, units=units,
                       interrupted=interrupts.signal)


def _finished(spec: Spec, plan: SweepPlan, trials: list) -> tuple[int, str, int]:
    """``(finished, units, planned)``: grid / random trials with a row; optuna configurations done."""
    if spec.search.algorithm == "optuna":
        done = sum(t.status in ("TERMINATED", "ERROR") for t in trials)
        return done, "configurations", spec.search.num_samples
    status = ResultStore(plan.run_dir).trial_status()
    return sum(t.trial_id in status for t in plan.trials), "trials", plan.planned
