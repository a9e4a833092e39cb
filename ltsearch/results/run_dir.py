"""What a run directory knows about itself: the spec it was run with, and whether a driver is on it.

- ``RUN_DIR/spec.yaml`` is the run's identity. ``ltsearch run`` into a directory that holds a run
  refuses a spec that differs where it would mix configurations (``spec_differences``): the
  experiment outside ``search.space`` (with every default resolved, so writing a default out is no
  difference), ``resources.workers``, and ``search.algorithm`` / ``metric`` / ``mode`` (a list of
  metrics too), for an Optuna run also ``search.seeds`` / ``subset_seeds`` (each value in its study
  is the mean over them); with
  ``--resume`` the whole search section too (Tune restores the search it saved), less the keys
  that only steer how it runs (loggers, concurrency, retries, actor reuse, checkpoint interval).
  A continued grid / random run (a race too) may add grid values, seeds, subset seeds or samples:
  those are new trials; a race's ``min_seeds`` / ``max_seeds`` / ``confidence`` may change (its
  rows are ordinary trials, and the race is replayed from them).
- ``RUN_DIR/run.json`` is the driver's record: ``{"identity": IDENTITY_VERSION, "state": running |
  finished | interrupted, "signal", "host", "pid", "started_at", "heartbeat_at", "ended_at"}``. A
  running driver rewrites ``heartbeat_at`` every ``HEARTBEAT_S``; ``ltsearch status`` calls a run
  whose driver is gone (a stale heartbeat, or a dead pid on this host) interrupted, not running.
- ``IDENTITY_VERSION``: how trial ids are computed. Version 2 hashes the CPU thread count and the
  method's defaults; a run directory with trials but no ``run.json`` was written by an earlier
  ltsearch, whose ids differ, and is not continued (its rows and new ones would be two
  configurations that are one).
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from ltsearch.errors import UserError
from ltsearch.results.store import ResultStore
from ltsearch.secrets import mask

IDENTITY_VERSION = 2
STATE_FILE = "run.json"
SPEC_FILE = "spec.yaml"
HEARTBEAT_S = 15.0
STALE_S = 90.0  # a heartbeat older than this: the driver is gone

_SEARCH_IDENTITY = ("search.algorithm", "search.metric", "search.mode")
# an Optuna study's values are means over these: other seeds or subsets would mix two objectives
_OPTUNA_IDENTITY = ("search.seeds", "search.subset_seeds")
_RESUME_FREE = ("search.loggers", "search.max_failures", "search.max_concurrent", "search.reuse_actors",
                "search.checkpoint_every")
_MISSING = object()


def _flat(tree: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(tree, dict) or not tree:
        return {prefix: tree} if prefix else {}
    out: dict[str, Any] = {}
    for k, v in tree.items():
        out.update(_flat(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def _experiment_tree(spec: Any) -> dict[str, Any]:
    """The spec's experiment with every default resolved (its seed is the search's, not compared)."""
    from ltsearch.resolved import resolve_trial

    exp = resolve_trial(spec.experiment, cpus=spec.resources.cpus_per_worker).exp
    tree = exp.model_dump(by_alias=True)
    tree.pop("seed", None)
    return tree


def spec_differences(saved: Any, new: Any, resume: bool) -> list[tuple[str, Any, Any]]:
    """``(key, saved value, new value)`` for every key where ``new`` would mix configurations with
    the run of ``saved`` (both validated ``Spec`` objects)."""
    searched = set(saved.search.space) | set(new.search.space)

    def free_experiment_key(rel: str) -> bool:
        return any(rel == s or rel.startswith(s + ".") for s in searched)

    a = {f"experiment.{k}": v for k, v in _flat(_experiment_tree(saved)).items() if not free_experiment_key(k)}
    b = {f"experiment.{k}": v for k, v in _flat(_experiment_tree(new)).items() if not free_experiment_key(k)}
    a["resources.workers"], b["resources.workers"] = saved.resources.workers, new.resources.workers
    sa = _flat(json.loads(mask(saved.search.model_dump_json(by_alias=True))), "search")
    sb = _flat(json.loads(mask(new.search.model_dump_json(by_alias=True))), "search")
    identity = _SEARCH_IDENTITY + (_OPTUNA_IDENTITY if saved.search.algorithm == "optuna" else ())
    for key in set(sa) | set(sb):
        if key in identity or (resume and not any(key == f or key.startswith(f + ".") for f in _RESUME_FREE)):
            a[key], b[key] = sa.get(key, _MISSING), sb.get(key, _MISSING)
    return [(k, a.get(k, _MISSING), b.get(k, _MISSING)) for k in sorted(set(a) | set(b))
            if a.get(k, _MISSING) != b.get(k, _MISSING)]


def _show(v: Any) -> str:
    if v is _MISSING:
        return "unset"
    text = json.dumps(v, default=str) if not isinstance(v, str) else v
    return text if len(text) <= 40 else text[:39] + "…"


def read_saved_spec(store: ResultStore) -> str | None:
    try:
        with store.fs.open_input_stream(f"{store.root}/{SPEC_FILE}") as f:
            return f.read().decode()
    except (OSError, UnicodeDecodeError):
        return None


def read_state(store: ResultStore) -> dict[str, Any] | None:
    try:
        with store.fs.open_input_stream(f"{store.root}/{STATE_FILE}") as f:
            return json.loads(f.read().decode())
    except (OSError, UnicodeDecodeError, ValueError):
        return None


def _has_trials(store: ResultStore) -> bool:
    import pyarrow.fs as pafs

    try:
        infos = store.fs.get_file_info(pafs.FileSelector(store.path("trials"), allow_not_found=True))
    except OSError:
        return False
    return any(i.path.endswith(".parquet") and not Path(i.path).name.startswith((".", "_")) for i in infos)


def check_run_dir(spec: Any, run_dir: str, resume: bool, spec_path: str = "SPEC.yaml") -> None:
    """Raise a ``UserError`` (nothing written) when ``spec`` may not run into ``run_dir``: ``--resume``
    of a run that is not there, a run of an earlier identity version, or a saved spec that differs."""
    from ltsearch.spec import validate_spec_dict

    store = ResultStore(run_dir)
    saved_text = read_saved_spec(store)
    state = read_state(store)
    if resume and saved_text is None:
        raise UserError(f"--resume: {run_dir} holds no run (no {SPEC_FILE}); run without --resume to start it")
    if saved_text is None and not _has_trials(store):
        return
    if state is None or state.get("identity") != IDENTITY_VERSION:
        raise UserError(f"{run_dir} was written by an earlier ltsearch, whose trial ids are computed differently "
                        "(this version's hold the CPU thread count and the method's defaults): read it with "
                        "`ltsearch report` / `compare`, and run this spec under another name (--set name=...) "
                        "or --storage")
    if saved_text is None:
        return
    try:
        saved = validate_spec_dict(yaml.safe_load(saved_text) or {}, source=f"{run_dir}/{SPEC_FILE}")
    except UserError as err:
        raise UserError(f"{run_dir}/{SPEC_FILE} cannot be read by this ltsearch ({err}); run this spec under "
                        "another name (--set name=...) or --storage") from None
    diffs = spec_differences(saved, spec, resume)
    if diffs:
        shown = "; ".join(f"{k}: {_show(a)} there, {_show(b)} here" for k, a, b in diffs[:6])
        more = f" (and {len(diffs) - 6} more)" if len(diffs) > 6 else ""
        how = "resume it with the spec it ran with" if resume else "run the spec it ran with"
        raise UserError(f"{run_dir} holds a run of another spec ({shown}{more}); {how} "
                        f"(saved in {run_dir}/{SPEC_FILE}: `ltsearch run {run_dir}/{SPEC_FILE}"
                        f"{' --resume' if resume else ''}`), or run {spec_path} under another name "
                        "(--set name=...) or --storage")


def check_writable(run_dir: str) -> None:
    """A local run directory can be created and written (probed with a temporary file in its nearest
    existing ancestor, removed at once); a ``UserError`` naming the path otherwise."""
    if "://" in run_dir and not run_dir.startswith("file://"):
        return  # object stores: the first write tells (their permissions are not files')
    path = Path(run_dir[len("file://"):] if run_dir.startswith("file://") else run_dir).expanduser()
    probe = path
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise UserError(f"--storage: {probe} is a file, so {path} cannot be created; give a directory")
    try:
        fd, name = tempfile.mkstemp(prefix=".ltsearch-probe-", dir=probe)
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        raise UserError(f"--storage: cannot write in {probe} ({err.strerror or err}); give a writable directory "
                        "(e.g. --storage ./runs)") from None


class RunState:
    """The driver's ``run.json``: written when the sweep starts, its heartbeat refreshed while it
    runs (``beat``), its end recorded (``end``)."""

    def __init__(self, run_dir: str):
        self.store = ResultStore(run_dir)
        self.data: dict[str, Any] = {}

    def _write(self) -> None:
        self.store.write_text(STATE_FILE, json.dumps(self.data, indent=1) + "\n")

    def start(self, command: str = "", planned: int | None = None, trial_epochs: int | None = None) -> None:
        """``planned``: the trials the sweep plans (at most, for a race); ``trial_epochs``: one
        trial's epochs over all its stages. ``ltsearch status`` reads both from here, so it need
        not validate the spec (which imports every registered method and model, and torch)."""
        now = time.time()
        self.data = {"identity": IDENTITY_VERSION, "state": "running", "signal": None, "host": socket.gethostname(),
                     "pid": os.getpid(), "command": mask(command), "started_at": now, "heartbeat_at": now,
                     "ended_at": None, "planned": planned, "trial_epochs": trial_epochs}
        self._write()

    def beat(self) -> None:
        self.data["heartbeat_at"] = time.time()
        self._write()

    def end(self, state: str, signal: str | None = None) -> None:
        self.data.update(state=state, signal=signal, ended_at=time.time(), heartbeat_at=time.time())
        self._write()


def driver_state(state: dict[str, Any] | None, now: float | None = None) -> str | None:
    """``running`` (a live driver), ``interrupted`` (ended by a signal, or its driver gone without a
    word: a stale heartbeat, or a dead pid on this host), ``finished``; None without a record."""
    if not state:
        return None
    if state.get("state") != "running":
        return str(state.get("state"))
    now = time.time() if now is None else now
    if now - float(state.get("heartbeat_at") or 0) > STALE_S:
        return "interrupted"
    if state.get("host") == socket.gethostname() and state.get("pid"):
        try:
            os.kill(int(state["pid"]), 0)
        except ProcessLookupError:
            return "interrupted"
        except PermissionError:
            pass
    return "running"
