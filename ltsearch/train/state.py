"""The loop's state in one place: what a checkpoint holds and what a resumed trial restores before
any method hook runs.

``TrainState.state_dict()`` is plain tensors and Python values (``torch.load(weights_only=True)``
reads it back); ``TrainState.from_state_dict`` is its inverse. A trial resumed from it continues
exactly where the checkpoint was taken: same stage, same epoch, same records, same optimiser and RNG
state, same callback state (e.g. the best-val snapshot).
"""

from __future__ import annotations

import random
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch

STATE_VERSION = 2


@dataclass
class EpochRecord:
    stage: str
    epoch: int  # global, 0-based, counting across stages
    train_loss: float
    lr: float
    seconds: float
    val: dict[str, float]
    test: dict[str, float] = field(default_factory=dict)
    schedules: dict[str, float] = field(default_factory=dict)

    def metrics(self) -> dict[str, Any]:
        """Flat metrics for Tune: ``epoch`` is 1-based there (ASHA's time attribute)."""
        return {"epoch": self.epoch + 1, "train_loss": self.train_loss, "lr": self.lr, **self.val, **self.test,
                **{f"sched_{k}": v for k, v in self.schedules.items()}}


def rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))


@dataclass
class TrainState:
    """Where a trial is. ``stage``: index of the stage being (or next to be) trained; ``epoch``:
    epochs done over all stages; ``method`` / ``optimizer``: state dicts at the last epoch end;
    ``callbacks``: each callback's state by its ``state_key``."""

    stage: int = 0
    epoch: int = 0
    records: list[EpochRecord] = field(default_factory=list)
    method: dict[str, Any] | None = None
    optimizer: dict[str, Any] | None = None
    rng: dict[str, Any] | None = None
    callbacks: dict[str, Any] = field(default_factory=dict)

    def state_dict(self) -> dict[str, Any]:
        return {"version": STATE_VERSION, "stage": self.stage, "epoch": self.epoch,
                "records": [asdict(r) for r in self.records], "method": self.method, "optimizer": self.optimizer,
                "rng": self.rng, "callbacks": self.callbacks}

    @classmethod
    def from_state_dict(cls, d: dict[str, Any]) -> "TrainState":
        if d.get("version") != STATE_VERSION:
            raise ValueError(f"checkpoint format {d.get('version')!r} is not {STATE_VERSION}")
        return cls(stage=int(d["stage"]), epoch=int(d["epoch"]), records=[EpochRecord(**r) for r in d["records"]],
                   method=d.get("method"), optimizer=d.get("optimizer"), rng=d.get("rng"),
                   callbacks=dict(d.get("callbacks") or {}))
