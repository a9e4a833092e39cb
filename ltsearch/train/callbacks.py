"""Loop callbacks: behaviour around the one loop at named points, each with its own checkpointed
state (Lightning's callbacks, mmengine's hooks).

=====================  ===========================================================================
``on_stage_start``     a stage starts training afresh (not when a trial resumes inside it, nor for a
                       stage restored from the stage cache or skipped with 0 epochs: best-val then
                       keeps the previous stage's best)
``on_stage_restored``  a stage's result came from the stage cache: its replayed epoch records (already
                       in ``TrainState.records``, the records' one owner), for callbacks that pass
                       records on (reporting, the epochs file)
``on_epoch_end``       after an epoch's training and validation; may add to the record (test metrics)
``on_train_end``       after the last stage, before the final evaluation
``state_dict``         what the callback must carry across a resume, under its ``state_key`` (by
                       default the class name, as Lightning does; two callbacks of one trial must not
                       share one)
=====================  ===========================================================================

Callbacks run in ``priority`` order (lower first): periodic test (10) amends the record, best-val
(20) snapshots the weights, checkpointing (30) saves the whole state, reporting (40) hands the
record on. ``loop`` is the running trial (:class:`LoopView`).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Protocol

import torch

from ltsearch.train.evaluate import EvalReport
from ltsearch.train.state import EpochRecord, TrainState


class LoopView(Protocol):
    method: torch.nn.Module
    state: TrainState

    def evaluate(self, split: str) -> EvalReport: ...

    def snapshot(self) -> dict[str, Any]: ...


class Callback:
    priority: int = 50

    @property
    def state_key(self) -> str:
        """Where the checkpoint keeps this callback's ``state_dict``: the class name unless a
        subclass names its own."""
        return type(self).__name__

    def on_stage_start(self, loop: LoopView, stage: Any) -> None:
        pass

    def on_stage_restored(self, loop: LoopView, stage: Any, records: list[EpochRecord]) -> None:
        pass

    def on_epoch_end(self, loop: LoopView, record: EpochRecord) -> None:
        pass

    def on_train_end(self, loop: LoopView) -> None:
        pass

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass


class PeriodicTest(Callback):
    """``eval.test_every`` > 0: test accuracy every that many epochs, in the epoch's record (the test
    curve of the report; never used to select anything)."""

    priority = 10

    def __init__(self, every: int):
        self.every = every

    def on_epoch_end(self, loop: LoopView, record: EpochRecord) -> None:
        if (record.epoch + 1) % self.every == 0:
            record.test = loop.evaluate("test").as_dict("test")


class BestVal(Callback):
    """``eval.checkpoint_rule: best_val``: keep the weights of the epoch with the best validation
    accuracy within the stage being trained, and test those at the end."""

    priority = 20
    state_key = "best_val"  # type: ignore[assignment]  # the name checkpoints have always used

    def __init__(self) -> None:
        self.best: dict[str, Any] = {}

    def on_stage_start(self, loop: LoopView, stage: Any) -> None:
        self.best = {}

    def on_epoch_end(self, loop: LoopView, record: EpochRecord) -> None:
        acc = record.val.get("val_acc", math.nan)
        if not self.best or acc > self.best["val_acc"]:
            weights = {k: v.detach().cpu().clone() for k, v in loop.method.state_dict().items()}
            self.best = {"val_acc": acc, "epoch": record.epoch, "state": weights}

    def on_train_end(self, loop: LoopView) -> None:
        if self.best:
            loop.method.load_state_dict(self.best["state"])

    @property
    def tested_epoch(self) -> int | None:
        return self.best["epoch"] if self.best else None

    def state_dict(self) -> dict[str, Any]:
        return dict(self.best)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.best = dict(state)


class Checkpoint(Callback):
    """Every ``every`` epochs (never after the last one: the trial's result supersedes it), hand the
    whole loop state to ``save`` (e.g. ``checkpoints/<trial_id>.pt``, replaced atomically)."""

    priority = 30

    def __init__(self, every: int, last_epoch: int, save: Callable[[dict[str, Any]], Any]):
        self.every, self.last_epoch, self.save = every, last_epoch, save

    def on_epoch_end(self, loop: LoopView, record: EpochRecord) -> None:
        done = record.epoch + 1
        if self.every and done % self.every == 0 and done < self.last_epoch:
            self.save(loop.snapshot())


class Report(Callback):
    """Hand each epoch's record to ``reporter(record, state)``; ``state()`` gives the loop state
    (``TrainState.state_dict()``) on demand."""

    priority = 40

    def __init__(self, reporter: Callable[[EpochRecord, Callable[[], dict[str, Any]]], Any]):
        self.reporter = reporter

    def on_epoch_end(self, loop: LoopView, record: EpochRecord) -> None:
        self.reporter(record, loop.snapshot)

    def on_stage_restored(self, loop: LoopView, stage: Any, records: list[EpochRecord]) -> None:
        for record in records:
            self.reporter(record, loop.snapshot)
