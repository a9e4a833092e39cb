"""The one training loop. Methods plug in through ``ltsearch.methods.base``; behaviour around the
loop (periodic test, best-val weights, checkpoints, reporting) through ``ltsearch.train.callbacks``;
Ray plugs in only from outside (``ltsearch.tune.trainable``, ``ltsearch.tune.ddp``: a reporter
and ``dist``). Nothing here imports Ray, Optuna or plotly.

    output = run_trial(resolved_trial)                    # no Ray, e.g. ``ltsearch train``
    output = run_trial(trial, reporter=report_to_tune)    # inside a Tune trial

``run_trial`` takes the trial as ``ltsearch.trial.resolve_trial`` made it (its experiment with every
default resolved, its plan and ids), or an ``ExperimentSpec``, which it resolves once. The loop
sets torch's CPU thread count to the trial's ``threads`` (part of its identity: the count changes
the numbers on CPU) and puts the caller's back when it ends.

All the loop's state is one :class:`~ltsearch.train.state.TrainState`. A resumed trial restores it
— the method's weights and every callback's state included — before any method hook runs, then
re-enters its stage: ``begin_stage`` sees the checkpoint's weights (a frozen backbone's feature
statistics are computed from the trained backbone), and the weights are loaded once more after it,
so whatever ``begin_stage`` re-initialises is restored too.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Iterable, Protocol

import numpy as np
import torch

from ltsearch.data import LTData, build_dataset
from ltsearch.data.batches import Batches
from ltsearch.data.longtail import class_split_names
from ltsearch.defaults import resolve_defaults
from ltsearch.errors import UserError
from ltsearch.methods import Method, Stage, TrainStats, build_method, check_schedules, check_step_output
from ltsearch.spec import ExperimentSpec, OptimSpec, lr_at
from ltsearch.resolved import ResolvedTrial, as_trial
from ltsearch.train import stage_cache as stage_cache_mod
from ltsearch.train.callbacks import BestVal, Callback, PeriodicTest, Report
from ltsearch.train.evaluate import EvalReport, evaluate
from ltsearch.train.fast import Fast, apply_fast, resolve_fast
from ltsearch.train.state import EpochRecord, TrainState, rng_state, set_rng_state

__all__ = ["DistInfo", "EpochRecord", "Loop", "NonFiniteLoss", "TrialOutput", "lr_at", "make_optimizer",
           "run_trial", "start_trial", "train_epoch"]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


@dataclass
class TrialOutput:
    summary: dict[str, Any]
    epochs: list[EpochRecord]
    per_class: list[dict[str, Any]]
    state: dict[str, torch.Tensor] = field(default_factory=dict)  # the tested method's weights (CPU)


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    wrap: Callable[[torch.nn.Module], torch.nn.Module] | None = None  # DDP wrapper


class Reporter(Protocol):
    def __call__(self, record: EpochRecord, state: Callable[[], dict[str, Any]]) -> None: ...


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def select_device(name: str) -> torch.device:
    if name == "cuda" or (name == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            raise UserError("experiment.device: cuda requested but no GPU is visible (use auto or cpu)")
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def make_optimizer(params: list[torch.nn.Parameter], optim: OptimSpec) -> torch.optim.Optimizer:
    if not params:
        raise UserError("experiment.method: this stage has no trainable parameters")
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov and optim.momentum > 0,
                               weight_decay=optim.weight_decay)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)


def train_epoch(step_fn: Callable[..., Any], opt: torch.optim.Optimizer, batch_iter: Iterable[Any], progress: float,
                fast: Fast, dist: DistInfo, device: torch.device, method_name: str,
                num_classes: int = 0) -> tuple[float, TrainStats | None]:
    """One pass over the batches: forward (through DDP when wrapped), backward, step. The loss, and
    the per-class training accuracy of steps that return ``"logits"``, are summed on the device (no
    host sync per step) and, under DDP, over all ranks."""
    loss_sum = torch.zeros((), device=device, dtype=torch.float64)
    hits = torch.zeros(2, max(num_classes, 1), device=device, dtype=torch.float64)  # correct, seen
    seen, with_logits = 0, False
    for batch in batch_iter:
        with fast.autocast():
            out = check_step_output(step_fn(batch, progress), method_name)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        y = batch["main"]["y"] if "main" in batch else next(iter(batch.values()))["y"]
        loss_sum += out["loss"].detach().double() * len(y)
        seen += len(y)
        if "logits" in out and num_classes:  # index_add_, not bincount: no host sync on a GPU
            with_logits = True
            hits[0].index_add_(0, y, (out["logits"].argmax(1) == y).double())
            hits[1].index_add_(0, y, torch.ones_like(y, dtype=torch.float64))
    totals = torch.cat([torch.stack([loss_sum, torch.tensor(float(seen), device=device, dtype=torch.float64)]),
                        hits.flatten()])
    if dist.world_size > 1 and torch.distributed.is_initialized():
        torch.distributed.all_reduce(totals)
    totals = totals.cpu()
    correct, count = totals[2:].view(2, -1)
    stats = None
    if with_logits:
        stats = TrainStats(torch.where(count > 0, correct / count.clamp_min(1), torch.nan).float(), count.long())
    return float(totals[0]) / max(float(totals[1]), 1.0), stats


class Loop:
    """One trial's live objects: data on the device, the method, the evaluator, the state (its
    ``TrainState`` is the one owner of the epoch records, restored ones included)."""

    def __init__(self, trial: ResolvedTrial, data: LTData, dist: DistInfo, callbacks: list[Callback],
                 stage_cache: str | os.PathLike | bool | None = None):
        self.trial, self.exp, self.data, self.dist = trial, trial.exp, data, dist
        self.plan = trial.plan
        self.stage_cache = stage_cache
        self.device = select_device(self.exp.device)
        self.counts = data.class_counts
        self.splits = (self.exp.data.splits.many, self.exp.data.splits.few)
        self.method: Method = build_method(self.exp, self.counts, data.image_shape[0], dist.rank,
                                           dist.world_size).to(self.device)
        self.fast = resolve_fast(self.exp.fast, self.device, self.method)
        apply_fast(self.method, self.fast)
        self.batches = Batches(data, self.device, self.exp.seed, dist.rank, dist.world_size, self.fast.memory_format)
        self.step_fn = dist.wrap(self.method) if dist.wrap else self.method
        self.callbacks = sorted(callbacks, key=lambda c: c.priority)
        keys = [c.state_key for c in self.stateful()]
        if len(keys) != len(set(keys)):
            raise ValueError(f"two stateful loop callbacks share a state_key ({sorted(keys)}): give each its own")
        self.state = TrainState()
        self.opt: torch.optim.Optimizer | None = None
        self.started = time.perf_counter()

    def stateful(self) -> list[Callback]:
        """The callbacks with state to checkpoint (those that define ``state_dict``)."""
        return [c for c in self.callbacks if type(c).state_dict is not Callback.state_dict]

    def evaluate(self, split: str) -> EvalReport:
        part = self.data.val if split == "val" else self.data.test
        self.method.eval()
        with self.fast.autocast():
            return evaluate(self.method.predict, self.batches.prepare, part.x, part.y, self.counts, self.splits,
                            self.exp.eval.batch_size)

    def snapshot(self) -> dict[str, Any]:
        """The whole state as a checkpoint holds it (``TrainState.state_dict()``)."""
        s = self.state
        s.method = self.method.state_dict()
        s.optimizer = self.opt.state_dict() if self.opt is not None else None
        s.rng = rng_state()
        s.callbacks = {c.state_key: c.state_dict() for c in self.stateful()}
        return s.state_dict()

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Everything a checkpoint holds, before any method hook runs."""
        self.state = TrainState.from_state_dict(checkpoint)
        self.method.load_state_dict(self.state.method)
        for c in self.stateful():
            if c.state_key in self.state.callbacks:
                c.load_state_dict(self.state.callbacks[c.state_key])

    def notify(self, point: str, *args: Any) -> None:
        for c in self.callbacks:
            getattr(c, point)(self, *args)

    def run_stage(self, index: int, stage: Stage, cache: Any) -> None:
        """Train stage ``index`` (or the rest of it, when resumed inside it)."""
        start = sum(s.epochs for s in self.plan.stages[:index])
        resumed, claim = self.state.epoch > start, None
        if stage.epochs == 0 and not stage.posthoc:  # nothing to do: keep the model as it is
            self.state.stage = index + 1
            return
        self.method.begin_stage(stage, self.batches)
        if resumed:  # begin_stage saw the checkpoint's weights; restore what it re-initialised
            self.method.load_state_dict(self.state.method)
        else:
            claim = stage_cache_mod.open_stage(self.method.stage_reuse(stage), self.exp, self.data, stage, cache,
                                               self.dist.world_size, self.device.type)
            if claim is not None and claim.payload is not None:  # the stage's stored result
                restored = [EpochRecord(**r) for r in claim.restore(start)]
                self.state.records += restored
                self.state.epoch, self.state.stage = start + stage.epochs, index + 1
                self.notify("on_stage_restored", stage, restored)
                return
            self.notify("on_stage_start", stage)
        self.opt = make_optimizer(self.method.trainable_parameters(stage), stage.optim) if stage.epochs else None
        if resumed:  # continue exactly where the checkpoint was taken
            if self.opt is not None and self.state.optimizer:
                self.opt.load_state_dict(self.state.optimizer)
            set_rng_state(self.state.rng)
        for e in range(self.state.epoch - start, stage.epochs):
            self.state.records.append(self.run_epoch(stage, e, start + e))
            self.state.epoch += 1
            self.notify("on_epoch_end", self.state.records[-1])
        if claim is not None:
            claim.save([asdict(r) for r in self.state.records[start:]])
        self.state.stage = index + 1

    def run_epoch(self, stage: Stage, e: int, global_epoch: int) -> EpochRecord:
        progress = e / stage.epochs
        lr = lr_at(stage.optim, e)
        for group in self.opt.param_groups:
            group["lr"] = lr
        t0 = time.perf_counter()
        self.method.train()
        self.method.on_epoch_start(e, progress)
        batches = self.batches.epoch(self.method.streams(e), global_epoch, stage.optim.batch_size)
        loss, stats = train_epoch(self.step_fn, self.opt, batches, progress, self.fast, self.dist, self.device,
                                  self.exp.method.name, len(self.counts))
        if not math.isfinite(loss):
            raise NonFiniteLoss(f"training loss became {loss} in epoch {global_epoch + 1} "
                                f"(stage {stage.name}); lower optim.lr or check the loss parameters")
        self.method.on_epoch_end(e, stats)
        schedules = check_schedules(self.method.schedule_values(progress), self.plan, self.exp.method.name)
        val = self.evaluate("val").as_dict("val")
        return EpochRecord(stage.name, global_epoch, loss, lr, time.perf_counter() - t0, val, {}, schedules)

    def run(self) -> TrialOutput:
        """Train every stage not done yet (all of them, unless restored), then test; with torch's
        CPU threads at the trial's ``threads`` meanwhile."""
        previous = set_threads(self.exp.threads)
        try:
            for index, stage in enumerate(self.plan.stages):
                if index >= self.state.stage:
                    self.run_stage(index, stage, self.stage_cache)
            return self.finish(time.perf_counter() - self.started)
        finally:
            torch.set_num_threads(previous)

    def finish(self, seconds: float) -> TrialOutput:
        """Test the final model (the best-val one under that rule) and assemble the trial's output."""
        self.notify("on_train_end")
        best = next((c for c in self.callbacks if isinstance(c, BestVal)), None)
        tested = best.tested_epoch if best is not None and best.tested_epoch is not None else self.state.epoch - 1
        test, val = self.evaluate("test"), self.evaluate("val")
        names = class_split_names(self.counts, *self.splits)
        norms = self.method.classifier_weight_norms()
        per_class = [
            {"class_index": c, "train_count": n, "split": names[c], "test_acc": float(test.per_class_acc[c] * 100),
             "val_acc": float(val.per_class_acc[c] * 100),
             "weight_norm": float(norms[c]) if norms is not None and len(norms) == len(self.counts) else math.nan}
            for c, n in enumerate(self.counts)
        ]
        summary = {
            "status": "ok", "error": "", "epochs": self.plan.epochs, "checkpoint_rule": self.exp.eval.checkpoint_rule,
            "tested_epoch": tested + 1, **val.as_dict("val"), **test.as_dict("test"), "train_seconds": seconds,
            "subset_hash": self.data.subset_hash, "train_images": len(self.data.train), "device": str(self.device),
            "num_classes": self.data.num_classes, "split_many": self.splits[0], "split_few": self.splits[1],
        }
        state = {k: v.detach().cpu() for k, v in self.method.state_dict().items()} if self.exp.eval.save_model else {}
        return TrialOutput(summary, self.state.records, per_class, state)


def default_callbacks(exp: ExperimentSpec, reporter: Reporter | None = None) -> list[Callback]:
    cbs: list[Callback] = []
    if exp.eval.test_every:
        cbs.append(PeriodicTest(exp.eval.test_every))
    if exp.eval.checkpoint_rule == "best_val":
        cbs.append(BestVal())
    if reporter is not None:
        cbs.append(Report(reporter))
    return cbs


def set_threads(n: int) -> int:
    """Torch's intra-op CPU threads to ``n`` (the inter-op pool too where this process has not used it
    yet: settable once per process); returns the previous intra-op count."""
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    if torch.get_num_interop_threads() > n:
        try:
            torch.set_num_interop_threads(n)
        except RuntimeError:  # already used in this process (a reused actor): it keeps its pool
            pass
    return previous


def start_trial(
    trial: ResolvedTrial | ExperimentSpec,
    data: LTData | None = None,
    reporter: Reporter | None = None,
    resume: dict[str, Any] | None = None,
    dist: DistInfo | None = None,
    stage_cache: str | os.PathLike | bool | None = None,
    callbacks: Iterable[Callback] = (),
) -> Loop:
    """The trial's :class:`Loop`, built and (with ``resume``) restored, ready to ``run()``."""
    trial = as_trial(trial)
    seed_everything(trial.exp.seed)
    data = data if data is not None else build_dataset(trial.exp.data)
    if trial.exp.data.splits.many is None or trial.exp.data.splits.few is None:
        # a plugin dataset's default thresholds follow from its class counts, known only now
        trial = trial.with_exp(resolve_defaults(trial.exp, data.protocol_counts or data.class_counts))
    loop = Loop(trial, data, dist or DistInfo(), [*default_callbacks(trial.exp, reporter), *callbacks], stage_cache)
    if resume is not None:
        loop.restore(resume)
    return loop


def run_trial(
    trial: ResolvedTrial | ExperimentSpec,
    data: LTData | None = None,
    reporter: Reporter | None = None,
    resume: dict[str, Any] | None = None,
    dist: DistInfo | None = None,
    stage_cache: str | os.PathLike | bool | None = None,
    callbacks: Iterable[Callback] = (),
) -> TrialOutput:
    """Train and evaluate one trial; ``resume``: a checkpoint (``TrainState.state_dict()``).
    ``stage_cache``: directory of reusable stage results (None: ``$LTSEARCH_CACHE`` or
    ``~/.cache/ltsearch/stage1``; False: off), see ``ltsearch.train.stage_cache``."""
    return start_trial(trial, data, reporter, resume, dist, stage_cache, callbacks).run()
