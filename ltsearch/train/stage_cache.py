"""Stage reuse: a content-addressed cache of a finished stage's weights (two-stage methods' stage 1).

A sweep over stage-2 parameters (cRT's lr, τ of τ-norm, BWLM's weight decay...) would otherwise
re-train the same stage-1 network once per trial. A method opts in through
``Method.stage_reuse(stage) -> StageReuse(identity, module, source)``; the loop then:

- hashes everything the stage's result depends on — the data spec (less ``root``) and the subset
  hash, the model spec, the seed, the stage's name, epochs and optimiser, ``eval.test_every`` (the
  replayed records carry test metrics) and the method's ``identity`` (its stage-1 parameters) —
  into a key (:func:`stage_key`);
- takes an exclusive lock on ``<dir>/<key>.lock`` (``filelock``, a torch dependency: ``flock`` on
  POSIX), so a second trial that needs the same stage waits while the first trains it instead of
  training it too;
- if ``<dir>/<key>.pt`` exists, loads ``module``'s state from it, releases the lock and skips the
  stage's epochs. Their records are *replayed* from the file (same values as when they were
  trained, renumbered, ``seconds = 0.0`` marking them as replayed), so every trial has a complete
  per-epoch table;
- otherwise trains the stage and writes ``{"module": state, "records": [...], "key": ...}``
  atomically (temp file + rename) before releasing the lock.

Files are written with ``torch.save`` and read with ``torch.load(weights_only=True)``. The directory
is the run's choice (``run_trial(..., stage_cache=DIR)``), else ``$LTSEARCH_CACHE``, else
``~/.cache/ltsearch/stage1``; ``stage_cache=False`` turns caching off. Trials on several machines
share entries only through a shared directory (``LTSEARCH_CACHE``) whose file system honours
``flock`` (local disks do; NFS depends on its version and mount options). Under DDP (world size > 1)
the cache is off: ranks must train a stage together. An explicit ``source`` (a method's
``stage1_from``) is loaded and never written: it may be a file of this cache, a loop checkpoint
(``{"method": state_dict, ...}``, the module's keys taken from under its attribute name) or a bare
state dict of the module.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any, Sequence

import torch
from filelock import FileLock

from ltsearch.errors import UserError

CACHE_VERSION = 2  # 2: the key holds threads, fast and the device type


def default_cache_dir() -> Path:
    env = os.environ.get("LTSEARCH_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "ltsearch" / "stage1"


def stage_key(parts: dict[str, Any]) -> str:
    blob = json.dumps(parts, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def key_parts(exp: Any, data: Any, stage: Any, identity: dict[str, Any], device: str = "cpu") -> dict[str, Any]:
    """Everything a stage's result depends on (``exp``: a resolved ExperimentSpec, ``data``: LTData,
    ``device``: the device type trained on); the CPU thread count and the speed switches change the
    numbers too, so a stage trained with other ones is never reused."""
    return {
        "version": CACHE_VERSION, "data": exp.data.model_dump(exclude={"root"}), "subset_hash": data.subset_hash,
        "model": exp.model.model_dump(), "seed": exp.seed, "stage": stage.name, "epochs": stage.epochs,
        "optim": stage.optim.model_dump(), "test_every": exp.eval.test_every, "method": identity,
        "threads": exp.threads, "fast": exp.fast.model_dump(), "device": device,
    }


def _load(path: Path) -> dict[str, Any]:
    return torch.load(path, map_location="cpu", weights_only=True)


def load_source(path: str | os.PathLike, attr: str) -> dict[str, Any]:
    """An explicit stage file as ``{"module": state_dict, "records": [...]}`` (records may be empty)."""
    p = Path(path).expanduser()
    if not p.is_file():
        raise UserError(f"experiment.method.stage1_from: {p} is not a file")
    try:
        raw = _load(p)
    except Exception as err:  # noqa: BLE001 - any unreadable file is the user's input error
        raise UserError(f"experiment.method.stage1_from: cannot read {p}: {err}") from None
    if not isinstance(raw, dict):
        raise UserError(f"experiment.method.stage1_from: {p} does not hold a state dict")
    if "module" in raw:
        return {"module": raw["module"], "records": list(raw.get("records", []))}
    state = raw.get("method", raw)
    prefix = f"{attr}."
    if any(k.startswith(prefix) for k in state):
        state = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
    return {"module": state, "records": []}


class StageClaim:
    """One stage's cache entry. ``payload`` is the stored result, or None while this trial holds
    the lock and must train the stage, then :meth:`save` it (which releases the lock)."""

    def __init__(self, module: torch.nn.Module, path: Path | None, payload: dict[str, Any] | None,
                 lock: FileLock | None = None, key: str = ""):
        self.module, self.path, self.payload, self._lock, self.key = module, path, payload, lock, key

    def restore(self, offset: int) -> list[dict[str, Any]]:
        """Load the module's state; the stored epoch records, renumbered from ``offset``."""
        assert self.payload is not None
        self.module.load_state_dict(self.payload["module"])
        return [{**r, "epoch": offset + i, "seconds": 0.0} for i, r in enumerate(self.payload.get("records", []))]

    def save(self, records: Sequence[dict[str, Any]]) -> None:
        if self.path is not None:
            state = {k: v.detach().cpu() for k, v in self.module.state_dict().items()}
            fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=self.path.name, suffix=".tmp")
            os.close(fd)
            torch.save({"module": state, "records": list(records), "key": self.key}, tmp)
            os.replace(tmp, self.path)
        self.release()

    def release(self) -> None:
        lock, self._lock = self._lock, None
        if lock is not None:
            lock.release()

    def __del__(self) -> None:  # a trial that failed mid-stage must not keep others waiting
        self.release()


def claim(root: Path, key: str, module: torch.nn.Module) -> StageClaim:
    """Lock ``key`` (waiting while another trial trains it) and read its entry if there is one."""
    root.mkdir(parents=True, exist_ok=True)
    lock = FileLock(root / f"{key}.lock", thread_local=False)  # held until save()/release(), from any thread
    lock.acquire()
    path = root / f"{key}.pt"
    payload = None
    if path.is_file():
        try:
            payload = _load(path)
        except Exception:  # noqa: BLE001 - a damaged entry is re-trained and overwritten
            payload = None
    out = StageClaim(module, path, payload, lock, key)
    if payload is not None:
        out.release()
    return out


def open_stage(reuse: Any, exp: Any, data: Any, stage: Any, cache: str | os.PathLike | bool | None,
               world_size: int = 1, device: str = "cpu") -> StageClaim | None:
    """The claim for a stage the method offers for reuse (``reuse``: a StageReuse or None)."""
    if reuse is None:
        return None
    if reuse.source:
        return StageClaim(reuse.module, None, load_source(reuse.source, reuse.name))
    if cache is False or world_size > 1:
        return None
    root = default_cache_dir() if cache in (None, True) else Path(cache).expanduser()
    return claim(root, stage_key(key_parts(exp, data, stage, reuse.identity, device)), reuse.module)
