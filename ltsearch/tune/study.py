"""Optuna studies in a database: ``RUN_DIR/optuna.db`` (SQLite) or ``search.optuna_storage``.

``StoredOptunaSearch`` is Ray Tune's ``OptunaSearch`` with its study in an Optuna RDB storage
(study name = the spec's name), so ``optuna-dashboard sqlite:///RUN_DIR/optuna.db`` shows the sweep
while it runs. What makes it safe across ``--resume`` and ``kill -9``:

- Tune pickles the searcher with its experiment state. Pickled, the searcher keeps only the map
  *Tune trial id → Optuna trial id* and the sampler; restored, it reloads the study from the
  database (the database, not a stale pickle, holds the trials).
- Restored, it looks for this sweep's trials that Tune no longer knows (asked after Tune's last
  experiment checkpoint; every asked trial carries the sweep's ``ltsearch_session`` tag). Those
  already told, and RUNNING ones whose Parquet rows are complete (settled COMPLETE with the mean over
  seeds, PRUNED if a seed was stopped, FAIL if one failed), count towards ``num_samples``: the
  searcher ends the sweep that many trials early. One killed before its rows were written is
  marked FAIL (``ltsearch_killed``) and its parameters are enqueued again, so the next trial
  continues it from its checkpoint; one killed while Optuna sampled it (no parameters) just fails.
  The sampler is then reseeded, as its pickled random state would replay the proposals made after
  the checkpoint. A fresh run on an existing study settles only RUNNING trials whose rows are
  complete (another driver may still be running the rest).
- A trial's final state comes from its Parquet rows too (ok → COMPLETE, stopped → PRUNED, failed →
  FAIL); a trial that is already finished in the study is never told twice (an errored trial that
  ``--resume`` re-runs to ok gets one new COMPLETE trial with the same parameters).
- ``search.initial`` points and warm-start trials (``ltsearch.tune.warm``) are added once per study.
- A study never repeats itself: a proposal whose parameters equal a trial already evaluated
  (complete, pruned, failed), running or waiting — of this sweep, an earlier one, a warm start or a
  sweep running beside it on the same database — is told FAIL with ``ltsearch_duplicate_of`` (the
  number of the trial it repeats; of two concurrent proposals the older one stands) and the sampler
  is asked again (its random state reseeded when another session's trial was the first). After
  ``MAX_REPEATS`` repeats in a row the space is taken to be exhausted and the sweep ends there.
- Each session seeds its sampler: ``search.seed`` for a study without trials, a seed derived from
  ``search.seed`` and the study's size for one that continues a study (the sampler would otherwise
  replay the first session's proposals).
- Sessions leave a heartbeat in the study (user attribute ``ltsearch_session:<id>``: state and
  time). A trial left RUNNING by a session that is gone (interrupted, killed, or silent for
  ``STALE_S``) is settled by the next session as if that session were its own: from Parquet, or
  FAIL and asked again. After SIGINT / SIGTERM (``settle_interrupted``) a session tells the study
  what finished, marks the rest ``ltsearch_interrupted`` and records itself interrupted: ``--resume``
  continues those trials under their Optuna ids.
- The objective is named after ``search.metric`` (``study.set_metric_names``), so optuna-dashboard
  shows ``val_acc``, not "Objective 0". A list of metrics (``search.metric: [val_many, val_few]``)
  is a multi-objective study: one direction per ``search.mode``, one named value per metric, each
  the mean over the configuration's seeds; Optuna's sampler (TPE, random, GP) handles several
  values itself, and ``study.best_trials`` is the Pareto front. Intermediate values are not
  reported (Optuna prunes only one-objective studies).
- A password in ``search.optuna_storage`` never reaches Tune's pickled state (``ltsearch.secrets``).

A run on a remote storage URI (``s3://``, ``gs://``) has no local file for SQLite: unless
``search.optuna_storage`` names a database, its study stays in Tune's pickled state (as Ray does by
default) and the run prints one line saying so.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import pickle
import random
import time
import uuid
import weakref
from pathlib import Path
from typing import Any, Callable, Iterable

import optuna
from optuna.trial import TrialState
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from ltsearch.errors import UserError
from ltsearch.secrets import is_masked, mask, reveal
from ltsearch.space import finite_configurations
from ltsearch.tune.warm import WARM_KEY

DB_FILE = "optuna.db"
SESSION_KEY = "ltsearch_session"  # the sweep (Tune experiment) that asked the trial
RETRY_KEY = "ltsearch_retry_of"  # a killed trial's parameters, asked again
COPY_KEY = "ltsearch_completes"  # the COMPLETE twin of a trial that failed and was re-run to ok
KILLED_KEY = "ltsearch_killed"
DUPLICATE_KEY = "ltsearch_duplicate_of"  # a proposal that repeated this trial number; never run
INTERRUPTED_KEY = "ltsearch_interrupted"
SESSION_ATTR = "ltsearch_session:"  # study user attribute per session: {"state", "heartbeat"}
STALE_S = 300.0  # a session silent this long is gone (a driver beats every few seconds while Tune runs)
BEAT_S = 15.0
MAX_REPEATS = 20
_ACTIVE: "weakref.WeakSet[StoredOptunaSearch]" = weakref.WeakSet()  # this driver's searchers


def storage_url(spec: Any, run_dir: str | None) -> str | None:
    """The study's SQLAlchemy URL: ``search.optuna_storage``, else ``sqlite:///RUN_DIR/optuna.db``
    for a local run directory; None (in-memory, pickled with Tune's state) for ``memory`` or a
    remote run directory without ``search.optuna_storage``."""
    given = spec.search.optuna_storage
    if given == "memory":
        return None
    if given:
        return given
    if run_dir is None:
        return None
    if "://" in run_dir and not run_dir.startswith("file://"):
        return None
    local = run_dir[len("file://"):] if run_dir.startswith("file://") else run_dir
    return f"sqlite:///{Path(local).expanduser().resolve() / DB_FILE}"


def remote_without_database(spec: Any, run_dir: str) -> bool:
    return spec.search.algorithm == "optuna" and storage_url(spec, run_dir) is None \
        and spec.search.optuna_storage != "memory"


def open_storage(url: str) -> optuna.storages.RDBStorage:
    """The study's RDB storage. Two sweeps that open a new database at once would both create its
    tables ("table ... already exists"): the first creation is serialised by a lock file next to a
    SQLite database, and an already-exists error from a concurrent creation is retried (the other
    sweep's tables are then there)."""
    import sqlalchemy.exc

    kwargs = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    lock = contextlib.nullcontext()
    if url.startswith("sqlite:///"):
        from filelock import FileLock

        lock = FileLock(url[len("sqlite:///"):] + ".lock")
    for attempt in range(5):
        try:
            with lock:
                return optuna.storages.RDBStorage(url, engine_kwargs=kwargs)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.ProgrammingError, sqlalchemy.exc.IntegrityError) as err:
            if "already exists" not in str(err) and "duplicate" not in str(err).lower() or attempt == 4:
                raise
            time.sleep(0.5 * (attempt + 1))
    raise AssertionError("unreachable")


def _safe(url: str) -> str:
    return mask(url)


def check_storage(url: str | None) -> None:
    """Connect once before anything is written (a typo'd host or a missing driver is a UserError)."""
    if url is None or url.startswith("sqlite"):
        return
    try:
        import sqlalchemy

        engine = sqlalchemy.create_engine(url)
        with engine.connect():
            pass
        engine.dispose()
    except Exception as err:  # noqa: BLE001 - any failure to connect is the user's to fix
        first = (str(err).strip().splitlines() or [""])[0]
        raise UserError(f"search.optuna_storage: cannot open {_safe(url)} ({type(err).__name__}: {first}); "
                        "give a reachable SQLAlchemy URL (its driver installed) or 'memory'") from None


def study_options(spec: Any, run_dir: str | None) -> dict[str, Any]:
    """``StoredOptunaSearch`` keyword arguments for a spec and its run directory."""
    from ltsearch.tune.warm import warm_trials

    return {"study_name": spec.name, "storage_url": storage_url(spec, run_dir), "warm_trials": warm_trials(spec)[0],
            "budget": spec.search.num_samples,
            "outcome": ParquetOutcome(mask(spec.model_dump_json(by_alias=True)), run_dir) if run_dir else None}


def optuna_preflight(spec: Any, run_dir: str, warn: Any) -> None:
    """Checks that raise (exit 2) before a sweep writes anything, and notes for the user."""
    from ltsearch.tune.warm import warm_trials

    check_storage(storage_url(spec, run_dir))
    for note in warm_trials(spec)[1]:
        warn(note)
    if remote_without_database(spec, run_dir):
        warn(f"note: the Optuna study stays in Ray Tune's state only: SQLite cannot live on {run_dir} "
             "(set search.optuna_storage to a database URL, e.g. postgresql://user@host/db, to keep it in a database)")


Value = float | list[float]  # one objective, or one value per metric of a multi-objective study


def objective(result: dict[str, Any], metric: str | list[str]) -> Value | None:
    """The objective value(s) ``result`` reports for ``metric`` (a list: one per metric), or None
    when one is missing or not finite."""
    names = [metric] if isinstance(metric, str) else list(metric)
    values = []
    for m in names:
        v = result.get(m)
        if v is None or not math.isfinite(float(v)):
            return None
        values.append(float(v))
    return values[0] if isinstance(metric, str) else values


class ParquetOutcome:
    """What the run's Parquet rows say about one configuration: ``(state, value)`` with value the
    mean of ``search.metric`` over its seeds (and subsets) when every one is ok — a list, one mean
    per metric, for a multi-objective study. Picklable (Tune pickles it)."""

    def __init__(self, spec_json: str, run_dir: str):
        self.spec_json, self.run_dir = spec_json, run_dir

    def __call__(self, params: dict[str, Any]) -> tuple[TrialState | None, Value | None]:
        from ltsearch.results.store import ResultStore
        from ltsearch.space import seed_units
        from ltsearch.spec import spec_from_json
        from ltsearch.trial import trial_for

        spec = spec_from_json(self.spec_json)
        store = ResultStore(self.run_dir)
        rows = []
        for unit in seed_units(spec.search):  # every seed on every subset, DDP trials too (one seed loop)
            tid = trial_for(spec, params, unit["seed"], subset_seed=unit.get("subset_seed")).trial_id
            rows.append(store.read_trial(tid) if store.has_trial(tid) else None)
        states = {r["status"] if r else None for r in rows}
        if "failed" in states:
            return TrialState.FAIL, None
        if "stopped" in states:
            return TrialState.PRUNED, None
        if states != {"ok"}:
            return None, None
        means = []
        for m in spec.search.metrics:
            vals = [r.get(m) for r in rows]
            if any(v is None or not math.isfinite(float(v)) for v in vals):
                return TrialState.COMPLETE, None  # metric not a trials column (train_loss): Tune's value is used
            means.append(sum(float(v) for v in vals) / len(vals))
        return TrialState.COMPLETE, means[0] if isinstance(spec.search.metric, str) else means


def _params_key(params: dict[str, Any]) -> str:
    """A configuration's identity among a study's trials (its parameters, floats exactly)."""
    return repr(sorted((k, repr(v)) for k, v in params.items()))


def session_seed(storage: optuna.storages.BaseStorage | None, study_name: str, seed: int) -> int:
    """``seed`` for a study that has no trials yet (or lives in memory); for one that is continued, a
    seed derived from ``seed`` and the study's size, so the sampler does not replay a proposal."""
    if storage is None:
        return seed
    try:
        n = len(optuna.load_study(study_name=study_name, storage=storage).get_trials(deepcopy=False))
    except KeyError:  # no such study yet
        return seed
    if n == 0:
        return seed
    return int(hashlib.sha256(f"{seed}:{n}".encode()).hexdigest()[:8], 16)


def settle_interrupted() -> None:
    """After SIGINT / SIGTERM: every searcher of this driver settles its study (``on_interrupt``)."""
    for searcher in list(_ACTIVE):
        searcher.on_interrupt()


def exhausted() -> bool:
    """Whether a searcher of this driver ran out of configurations the study has not taken."""
    return any(searcher.exhausted for searcher in list(_ACTIVE))


def beat_all() -> None:
    """The heartbeat of every searcher of this driver (the driver's heartbeat thread calls it)."""
    for searcher in list(_ACTIVE):
        searcher.beat()


class StoredOptunaSearch(OptunaSearch):
    """``OptunaSearch`` whose study lives in an RDB storage (see the module docstring)."""

    def __init__(self, space: Any, *, metric: str, mode: str, sampler_factory: Callable[[int], Any], seed: int,
                 study_name: str, storage_url: str | None = None, points_to_evaluate: list[dict] | None = None,
                 warm_trials: Iterable[optuna.trial.FrozenTrial] = (), outcome: ParquetOutcome | None = None,
                 budget: int | None = None):
        self._storage_url = storage_url
        self._budget = budget  # num_samples of this sweep
        self._unknown: set[int] = set()  # this sweep's trials that finished without Tune knowing them
        self._session = uuid.uuid4().hex[:12]
        self._warm = list(warm_trials)
        self._outcome = outcome
        self._ids: dict[str, int] = {}  # Tune trial id -> Optuna trial id
        self._restored = False
        self._initial = list(points_to_evaluate or [])
        self._beat_at = 0.0
        self.exhausted = False
        configs = finite_configurations(space.search, space.experiment) if hasattr(space, "search") else None
        self._finite = None if configs is None else {_params_key(c) for c in configs}
        storage = open_storage(storage_url) if storage_url else None
        super().__init__(space=space, metric=metric, mode=mode, sampler=sampler_factory(session_seed(storage, study_name, seed)),
                         study_name=study_name, storage=storage)
        _ACTIVE.add(self)

    # ------------------------------------------------------------------ study set-up and pickling

    def _setup_study(self, mode: Any) -> None:
        super()._setup_study(mode)  # create_study(load_if_exists=True); self._points_to_evaluate is empty
        if not self._ot_study.metric_names:
            self._ot_study.set_metric_names([self._metric] if isinstance(self._metric, str) else list(self._metric))
        trials = self._ot_study.get_trials(deepcopy=False)
        have = {t.user_attrs.get(WARM_KEY) for t in trials}
        self._ot_study.add_trials([t for t in self._warm if t.user_attrs[WARM_KEY] not in have])
        for point in self._initial:  # once per study: a re-run of the spec does not repeat them
            self._ot_study.enqueue_trial(point, skip_if_exists=True)
        if self._storage_url:
            self.beat(force=True)
            self._settle(own=False)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if self._storage_url:  # the database holds the trials; keep only what rebuilds the link
            state.update(_ot_study=None, _storage=None, _ot_trials={}, _restored=True, _warm=[])
            state["_storage_url"] = mask(self._storage_url)  # a password stays in the driver's memory
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._storage_url = reveal(self._storage_url)
        _ACTIVE.add(self)

    def save(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "wb") as f:
            pickle.dump(self.__getstate__(), f)

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as f:
            self.__setstate__(pickle.load(f))

    def _study(self) -> optuna.Study:
        """The study; after unpickling, reloaded from the database and settled."""
        if self._ot_study is None:
            if is_masked(self._storage_url):
                raise UserError(f"search.optuna_storage: the study's URL {self._storage_url} has a password, which "
                                "ltsearch never saves; resume with the spec that names it")
            self._storage = open_storage(self._storage_url)
            self._ot_study = optuna.load_study(study_name=self._study_name, storage=self._storage,
                                               sampler=self._sampler, pruner=optuna.pruners.NopPruner())
        if self._restored:
            self._restored = False
            self.beat(force=True)
            self._settle(own=True)
        return self._ot_study

    # ------------------------------------------------------------------ sessions

    def beat(self, force: bool = False, state: str = "running") -> None:
        """This session's heartbeat in the study (at most every ``BEAT_S`` unless ``force``)."""
        if self._ot_study is None or not self._storage_url:
            return
        now = time.time()
        if force or now - self._beat_at >= BEAT_S:
            self._beat_at = now
            self._ot_study.set_user_attr(SESSION_ATTR + self._session, {"state": state, "heartbeat": now})

    @staticmethod
    def _alive(attrs: dict[str, Any], session: str | None, now: float) -> bool:
        """Whether a session of the study is still running (a fresh heartbeat, not ended); ``attrs``:
        the study's user attributes."""
        info = attrs.get(SESSION_ATTR + session) if session else None
        return isinstance(info, dict) and info.get("state") == "running" and now - float(info.get("heartbeat", 0)) < STALE_S

    def on_interrupt(self) -> None:
        """SIGINT / SIGTERM stopped the sweep: tell what finished, mark the rest interrupted (Tune's
        saved state holds them: ``--resume`` continues them), record this session as interrupted."""
        if self._ot_study is None:
            return
        for tune_id, ot_id in self._ids.items():
            frozen = self._ot_study._storage.get_trial(ot_id)
            if frozen.state.is_finished():
                continue
            state, value = self._outcome_of(frozen.params) if self._outcome is not None else (None, None)
            if state is not None and not (state is TrialState.COMPLETE and value is None):
                self._ot_study.tell(frozen.number, value if state is TrialState.COMPLETE else None, state=state,
                                    skip_if_finished=True)
                self._completed_trials.add(tune_id)
            else:
                self._ot_study._storage.set_trial_user_attr(ot_id, INTERRUPTED_KEY, True)
        self.beat(force=True, state="interrupted")

    def _settle(self, own: bool) -> None:
        """Finish the study's RUNNING trials that no live Tune trial will report: from Parquet; those
        of this session after a restore (``own``) or of a session that is gone, without rows, fail
        (they were killed) and their parameters are asked again."""
        if self._outcome is None:
            return
        live = set(self._ids.values())
        now, attrs = time.time(), self._ot_study.user_attrs
        found = False
        for t in self._ot_study.get_trials(deepcopy=False):
            running = t.state == TrialState.RUNNING
            session = t.user_attrs.get(SESSION_KEY)
            if session is None and running and own:  # killed between Optuna's ask and the tag: ours
                session = self._session
            ours = session == self._session
            orphan = running and not ours and not self._alive(attrs, session, now)  # its session is gone
            mine = (own and ours) or orphan
            if t._trial_id in live or COPY_KEY in t.user_attrs or KILLED_KEY in t.user_attrs \
                    or DUPLICATE_KEY in t.user_attrs or t.state == TrialState.WAITING \
                    or (own and not ours and not orphan) or (not own and not running):
                continue
            found = True
            if t.state.is_finished():  # told before the kill, after Tune's last checkpoint
                if ours:
                    self._unknown.add(t._trial_id)
                continue
            if mine and not t.params:  # killed while Optuna sampled it: nothing was run
                self._ot_study._storage.set_trial_user_attr(t._trial_id, KILLED_KEY, True)
                self._ot_study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                continue
            state, value = self._outcome_of(t.params)
            if state is TrialState.COMPLETE and value is None:
                state = None
            if state is not None:
                self._ot_study.tell(t.number, value if state is TrialState.COMPLETE else None, state=state,
                                    skip_if_finished=True)
                if own and ours:
                    self._unknown.add(t._trial_id)
            elif mine:  # killed mid-training: run it again (it continues from its checkpoint)
                self._ot_study._storage.set_trial_user_attr(t._trial_id, KILLED_KEY, True)
                self._ot_study.tell(t.number, state=TrialState.FAIL, skip_if_finished=True)
                self._ot_study.enqueue_trial(t.params, user_attrs={RETRY_KEY: t.number})
        if own and found:  # its pickled random state would replay the proposals made after the checkpoint
            self._sampler.reseed_rng()

    def _outcome_of(self, params: dict[str, Any]) -> tuple[TrialState | None, Value | None]:
        try:
            return self._outcome(params)  # type: ignore[misc]
        except (UserError, OSError):  # parameters that no longer resolve, an unreadable file: no verdict
            return None, None

    # ------------------------------------------------------------------ no repeats

    def _repeats(self, number: int, params: dict[str, Any]) -> optuna.trial.FrozenTrial | None:
        """The trial that ``params`` (just proposed as trial ``number``) repeats: one evaluated or
        waiting, or running and older (of two concurrent proposals the older stands); or None."""
        key = _params_key(params)
        for t in self._ot_study.get_trials(deepcopy=False):
            if t.number == number or not t.params or _params_key(t.params) != key:
                continue
            if DUPLICATE_KEY in t.user_attrs or KILLED_KEY in t.user_attrs:
                continue  # never run / asked again under a new number
            if t.state in (TrialState.RUNNING, TrialState.WAITING) and t.number > number:
                continue  # a later concurrent proposal: it gives way to this one
            return t
        return None

    def _untaken(self) -> list[dict[str, Any]]:
        """The configurations of a finite space that no trial of the study has taken yet."""
        taken = self._taken_keys()
        configs = finite_configurations(self._space.search, self._space.experiment) or []
        return [c for c in configs if _params_key(c) not in taken]

    def _taken_keys(self) -> set[str]:
        """The configurations that a new proposal may not repeat (see ``_repeats``)."""
        return {_params_key(t.params) for t in self._ot_study.get_trials(deepcopy=False)
                if t.params and DUPLICATE_KEY not in t.user_attrs and KILLED_KEY not in t.user_attrs}

    # ------------------------------------------------------------------ Tune's searcher hooks

    def suggest(self, trial_id: str) -> dict | str | None:
        self._study()
        self.beat()
        if trial_id not in self._ids and self._budget and len(self._ids) + len(self._unknown) >= self._budget:
            return Searcher.FINISHED
        if self._finite is not None and self._finite <= self._taken_keys():
            self.exhausted = True  # every configuration of the space is evaluated or running
            return Searcher.FINISHED
        for attempt in range(MAX_REPEATS):
            if self._finite is not None and attempt >= 3:  # a finite space nearly taken: ask for what is left
                left = self._untaken()
                if left:
                    self._ot_study.enqueue_trial(left[random.Random(f"{self._session}:{attempt}").randrange(len(left))])
            config = super().suggest(trial_id)
            ot_trial = self._ot_trials[trial_id]
            self._ot_study._storage.set_trial_user_attr(ot_trial._trial_id, SESSION_KEY, self._session)
            first = self._repeats(ot_trial.number, ot_trial.params)
            if first is None:
                self._ids[trial_id] = ot_trial._trial_id
                return config
            self._ot_study._storage.set_trial_user_attr(ot_trial._trial_id, DUPLICATE_KEY, first.number)
            self._ot_study.tell(ot_trial.number, state=TrialState.FAIL, skip_if_finished=True)
            del self._ot_trials[trial_id]
            if first.user_attrs.get(SESSION_KEY) != self._session:  # another session's: stop walking in step
                self._sampler.reseed_rng()
        self.exhausted = True  # every proposal repeats a trial: the space has no configuration left
        return Searcher.FINISHED

    def on_trial_result(self, trial_id: str, result: dict) -> None:
        self.beat()
        if isinstance(self.metric, list):  # a multi-objective study has no intermediate values
            return
        value, step = result.get(self.metric), result.get("epoch", result.get("training_iteration"))
        if trial_id not in self._ids or value is None or step is None:
            return
        if not math.isfinite(float(value)):
            return
        storage = self._study()._storage
        frozen = storage.get_trial(self._ids[trial_id])
        if frozen.state == TrialState.RUNNING and int(step) not in frozen.intermediate_values:
            storage.set_trial_intermediate_value(frozen._trial_id, int(step), float(value))

    def _final(self, frozen: optuna.trial.FrozenTrial, result: dict | None, error: bool) -> tuple[TrialState, Value | None]:
        reported = objective(result or {}, self.metric)
        if error or (result or {}).get("failed"):
            return TrialState.FAIL, None
        if self._outcome is not None:
            state, value = self._outcome_of(frozen.params)
            if state is TrialState.COMPLETE:
                value = value if value is not None else reported
                return (TrialState.COMPLETE, value) if value is not None else (TrialState.FAIL, None)
            if state is not None:
                return state, None
        if reported is not None and self._outcome is None:
            return TrialState.COMPLETE, reported
        return TrialState.PRUNED, None  # stopped by the scheduler (or never started)

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        if trial_id not in self._ids:
            return
        study = self._study()
        self.beat()
        frozen = study._storage.get_trial(self._ids[trial_id])
        state, value = self._final(frozen, result, error)
        if not frozen.state.is_finished():
            study.tell(frozen.number, value if state is TrialState.COMPLETE else None, state=state)
        elif state is TrialState.COMPLETE and frozen.state is not TrialState.COMPLETE:
            # an errored trial that --resume ran again: one COMPLETE trial with the same parameters
            study.add_trial(optuna.trial.create_trial(
                params=frozen.params, distributions=frozen.distributions, value=value,
                user_attrs={**frozen.user_attrs, COPY_KEY: frozen.number}))
        self._completed_trials.add(trial_id)
