"""The driver's Tune callbacks: recording trials that ended without their own write, and the
heartbeats of ``run.json`` and of the Optuna study's session.

Tune pickles its callbacks into ``RUN_DIR/_tune/tuner.pkl`` and ``Tuner.restore`` (``--resume``)
uses those pickled copies, not the ones the resuming driver builds. So these callbacks hold only
what pickles safely (the spec, passwords masked, and the run directory) and reach the live objects
of the sweep that is running now (its ``Interrupts`` and ``RunState``) through ``SESSION``, which
``run_sweep`` fills and which is never pickled.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from ray.tune import Callback

from ltsearch.results.store import ResultStore
from ltsearch.secrets import mask
from ltsearch.spec import Spec, spec_from_json
from ltsearch.trial import TrialContext, split_config, trial_for, write_outcome

SESSION: dict[str, Any] = {}  # "interrupts": Interrupts, "state": RunState of the sweep in this driver


def interrupted() -> bool:
    interrupts = SESSION.get("interrupts")
    return interrupts is not None and interrupts.signal is not None


class RecordUnfinished(Callback):
    """A trial stopped by the scheduler or killed by an error never reached its own final write;
    record it from its last reported result (only if it has no row yet). Not while the sweep is
    being interrupted: those trials are resumed, not finished. Keeps Tune's list of trials for the
    driver's summary (``trials``)."""

    def __init__(self, spec: Spec, run_dir: str, param_types: dict[str, Any]):
        self.spec_json = mask(spec.model_dump_json(by_alias=True))
        self.run_dir, self.param_types = run_dir, param_types
        self.trials: list = []

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "trials": []}

    def _record(self, trial: Any, status: str, error: str = "") -> None:
        if interrupted():
            return
        spec = spec_from_json(self.spec_json)
        resolved = trial_for(spec, split_config(trial.config))
        if ResultStore(self.run_dir).has_trial(resolved.trial_id):
            return
        ctx = TrialContext(spec.name, self.run_dir, self.param_types)
        write_outcome(ctx, resolved, status, error, last=dict(trial.last_result or {}))

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        self.trials = trials
        SESSION["trials"] = trials

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if spec_from_json(self.spec_json).search.scheduler != "none":  # only a scheduler stops a trial early
            self._record(trial, "stopped")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        err = ""
        if getattr(trial, "error_file", None) and os.path.exists(trial.error_file):
            lines = [ln for ln in Path(trial.error_file).read_text().splitlines() if ln.strip()]
            err = lines[-1][:500] if lines else ""
        self._record(trial, "failed", mask(err) or "trial raised an error")


class Heartbeat(Callback):
    """Refreshes ``run.json``'s heartbeat and the study's session heartbeat at most every ``every``
    seconds, from Tune's own loop (its steps come many times a second)."""

    def __init__(self, every: float):
        self.every = every
        self.last = 0.0

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        if time.monotonic() - self.last < self.every:
            return
        self.last = time.monotonic()
        state = SESSION.get("state")
        if state is not None:
            try:
                state.beat()
            except OSError:  # a storage hiccup: the next beat tries again
                pass
        from ltsearch.tune.study import beat_all

        beat_all()
