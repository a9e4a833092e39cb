"""The one training loop. Methods plug in through ``ltsearch.methods.base``; Ray plugs in through
the ``reporter`` callback (``ltsearch.tune.trainable``) and ``dist`` (``ltsearch.train.ddp``).

    output = run_trial(experiment_spec)                   # no Ray, e.g. ``ltsearch train``
    output = run_trial(spec, reporter=report_to_tune)     # inside a Tune trial

Data lives in memory as uint8 tensors (on the GPU when training there); each epoch, samplers draw
index streams and batches are gathered, augmented and normalised as whole tensors.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Protocol

import numpy as np
import torch

from ltsearch.data import LTData, build_dataset, build_sampler
from ltsearch.data.augment import normalize, to_float
from ltsearch.data.longtail import class_split_names
from ltsearch.errors import UserError
from ltsearch.methods import build_method, check_step_output
from ltsearch.registry import AUGMENTS
from ltsearch.spec import ExperimentSpec, OptimSpec
from ltsearch.train import stage_cache as stage_cache_mod
from ltsearch.train.fast import apply_fast, resolve_fast
from ltsearch.train.evaluate import EvalReport, evaluate


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""


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


def lr_at(optim: OptimSpec, epoch: int) -> float:
    """Linear warm-up over ``warmup`` epochs, then step decay (×``lr_decay`` at each milestone)
    or cosine decay to 0, per epoch (LDAM-DRW's recipe: warm-up 5, ×0.01 at 160 and 180)."""
    if epoch < optim.warmup:
        return optim.lr * (epoch + 1) / optim.warmup
    if optim.lr_schedule == "step":
        return optim.lr * optim.lr_decay ** sum(epoch >= m for m in optim.milestones)
    if optim.lr_schedule == "cosine":
        span = max(optim.epochs - optim.warmup, 1)
        return 0.5 * optim.lr * (1 + math.cos(math.pi * (epoch - optim.warmup) / span))
    return optim.lr


def make_optimizer(params: list[torch.nn.Parameter], optim: OptimSpec) -> torch.optim.Optimizer:
    if not params:
        raise UserError("experiment.method: this stage has no trainable parameters")
    if optim.name == "sgd":
        return torch.optim.SGD(params, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov and optim.momentum > 0,
                               weight_decay=optim.weight_decay)
    cls = torch.optim.Adam if optim.name == "adam" else torch.optim.AdamW
    return cls(params, lr=optim.lr, weight_decay=optim.weight_decay)


class Batches:
    """Gathers, augments and normalises batches from in-memory uint8 tensors."""

    memory_format = torch.contiguous_format  # channels_last when ``experiment.fast`` says so

    def __init__(self, data: LTData, device: torch.device, seed: int, dist: DistInfo):
        self.data, self.device, self.seed, self.dist = data, device, seed, dist
        self.x = data.train.x.to(device)
        self.y = data.train.y.to(device)
        self.mean = torch.tensor(data.mean, device=device)
        self.std = torch.tensor(data.std, device=device)
        self.counts = data.class_counts
        self._samplers: dict[str, Any] = {}

    def prepare(self, x_uint8: torch.Tensor) -> torch.Tensor:
        x = normalize(to_float(x_uint8.to(self.device, non_blocking=True)), self.mean, self.std)
        return x.contiguous(memory_format=self.memory_format)

    def _view(self, x_uint8: torch.Tensor, view: str, g: torch.Generator) -> torch.Tensor:
        x = to_float(x_uint8)
        if view == "weak":
            x = AUGMENTS.get(self.data.augment)(x, g, self.data.pad)
        elif view == "strong":
            x = AUGMENTS.get("strong")(x, g, self.data.pad, weak=self.data.augment)
        else:
            x = AUGMENTS.get(view, where="method stream view")(x, g, self.data.pad)
        return normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)

    def epoch(self, streams: dict[str, Any], epoch: int, batch_size: int):
        order: dict[str, torch.Tensor] = {}
        for name, stream in streams.items():
            if stream.sampler not in self._samplers:
                self._samplers[stream.sampler] = build_sampler(stream.sampler, self.data.train.y, self.counts)
            order[name] = self._samplers[stream.sampler].epoch_indices(
                self.seed, epoch, self.dist.rank, self.dist.world_size).to(self.device)  # one copy per epoch, no per-step sync
        n = min(len(o) for o in order.values())
        per_rank = max(batch_size // self.dist.world_size, 1)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for start in range(0, n, per_rank):
            if n - start < 2 and start > 0:  # a batch of one breaks BatchNorm
                break
            batch: dict[str, dict[str, torch.Tensor]] = {}
            for name, stream in streams.items():
                idx = order[name][start : start + per_rank]
                xb = self.x[idx]
                batch[name] = {"y": self.y[idx], **{v: self._view(xb, v, g) for v in stream.views}}
            yield batch


def _rng_state() -> dict[str, Any]:
    """RNG states as tensors and plain Python values (loadable with ``weights_only=True``)."""
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return {"torch": torch.get_rng_state(), "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached],
            "python": random.getstate()}


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    kind, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    random.setstate(tuple(x if not isinstance(x, list) else tuple(x) for x in state["python"]))


def train_epoch(step_fn: Callable[..., Any], opt: torch.optim.Optimizer, batch_iter: Any, progress: float,
                fast: Any, dist: DistInfo, device: torch.device, method_name: str) -> float:
    """One pass over the batches: forward (through DDP when wrapped), backward, step. The loss is
    summed on the device (no host sync per step) and, under DDP, averaged over all ranks."""
    loss_sum = torch.zeros((), device=device)
    seen = 0
    for batch in batch_iter:
        with fast.autocast():
            out = check_step_output(step_fn(batch, progress), method_name)
        opt.zero_grad(set_to_none=True)
        out["loss"].backward()
        opt.step()
        n = len(next(iter(batch.values()))["y"])
        loss_sum += out["loss"].detach() * n
        seen += n
    if dist.world_size > 1 and torch.distributed.is_initialized():
        totals = torch.stack([loss_sum.double(), torch.tensor(float(seen), device=device, dtype=torch.float64)])
        torch.distributed.all_reduce(totals)
        loss_sum, seen = totals[0], int(totals[1])
    return float(loss_sum) / max(seen, 1)


def run_trial(
    exp: ExperimentSpec,
    data: LTData | None = None,
    reporter: Reporter | None = None,
    resume: dict[str, Any] | None = None,
    dist: DistInfo | None = None,
    stage_cache: str | os.PathLike | bool | None = None,
) -> TrialOutput:
    """Train and evaluate one trial. ``stage_cache``: directory of reusable stage results (None:
    ``$LTSEARCH_CACHE`` or ``~/.cache/ltsearch/stage1``; False: off), see ``ltsearch.train.stage_cache``."""
    dist = dist or DistInfo()
    t0 = time.perf_counter()
    seed_everything(exp.seed)
    data = data if data is not None else build_dataset(exp.data)
    device = select_device(exp.device)
    counts = data.class_counts
    in_ch = data.image_shape[0]
    splits = (exp.data.splits.many, exp.data.splits.few)

    method = build_method(exp, counts, in_ch).to(device)
    ctx = method.ctx
    fast = resolve_fast(exp.fast, device, method)
    apply_fast(method, fast)
    batches = Batches(data, device, exp.seed, dist)
    batches.memory_format = fast.memory_format
    ctx.extra["train_batches"] = batches  # frozen-feature methods read the training set's features

    def run_eval(x: torch.Tensor, y: torch.Tensor) -> EvalReport:
        method.eval()
        with fast.autocast():
            return evaluate(method.predict, batches.prepare, x, y, counts, splits, exp.eval.batch_size)

    records: list[EpochRecord] = []
    best: dict[str, Any] = {"val_acc": -math.inf, "epoch": -1, "state": None}
    done = 0
    if resume is not None:
        records = [EpochRecord(**r) for r in resume["records"]]
        best = resume["best"]
        done = len(records)

    stages = method.stages()
    total_epochs = sum(s.epochs for s in stages)
    offset = 0
    for stage in stages:
        method.begin_stage(stage)
        if offset + stage.epochs <= done:
            offset += stage.epochs
            continue
        claim = None
        if done <= offset:  # starting this stage afresh: reuse a stored result, or select within it
            claim = stage_cache_mod.open_stage(method.stage_reuse(stage), exp, data, stage, stage_cache, dist.world_size)
            if claim is not None and claim.payload is not None:
                records += [EpochRecord(**r) for r in claim.restore(offset)]
                offset += stage.epochs
                continue
            best = {"val_acc": -math.inf, "epoch": -1, "state": None}
        if stage.epochs == 0:  # a post-hoc stage (tau_norm): begin_stage did all of it
            continue
        opt = make_optimizer(method.trainable_parameters(stage), stage.optim)
        step_fn = dist.wrap(method) if dist.wrap else method
        if resume is not None and done > offset - 1:
            method.load_state_dict(resume["method"])
            if resume.get("stage") == stage.name and resume.get("optimizer"):
                opt.load_state_dict(resume["optimizer"])
            _set_rng_state(resume["rng"])
            resume = None
        for e in range(max(done - offset, 0), stage.epochs):
            global_epoch = offset + e
            progress = e / stage.epochs
            lr = lr_at(stage.optim, e)
            for group in opt.param_groups:
                group["lr"] = lr
            te = time.perf_counter()
            method.train()
            method.on_epoch_start(e, progress)
            batch_iter = batches.epoch(method.streams(e), global_epoch, stage.optim.batch_size)
            train_loss = train_epoch(step_fn, opt, batch_iter, progress, fast, dist, device, exp.method.name)
            if not math.isfinite(train_loss):
                raise NonFiniteLoss(f"training loss became {train_loss} in epoch {global_epoch + 1} "
                                    f"(stage {stage.name}); lower optim.lr or check the loss parameters")
            val = run_eval(data.val.x, data.val.y)
            method.on_epoch_end(e, val)
            test: dict[str, float] = {}
            if exp.eval.test_every and (global_epoch + 1) % exp.eval.test_every == 0:
                test = run_eval(data.test.x, data.test.y).as_dict("test")
            rec = EpochRecord(stage.name, global_epoch, train_loss, lr, time.perf_counter() - te, val.as_dict("val"),
                              test, method.schedule_values(progress))
            records.append(rec)
            if exp.eval.checkpoint_rule == "best_val" and val.acc > best["val_acc"]:
                best = {"val_acc": val.acc, "epoch": global_epoch,
                        "state": {k: v.detach().cpu().clone() for k, v in method.state_dict().items()}}
            if reporter is not None:
                def state(stage_name: str = stage.name, optimizer: Any = opt) -> dict[str, Any]:
                    return {"method": method.state_dict(), "optimizer": optimizer.state_dict(), "stage": stage_name,
                            "records": [asdict(r) for r in records], "best": best, "rng": _rng_state()}

                reporter(rec, state)
        if claim is not None:
            claim.save([asdict(r) for r in records[len(records) - stage.epochs:]])
        offset += stage.epochs

    last_val = records[-1].val if records else {}
    tested_epoch = len(records) - 1
    if exp.eval.checkpoint_rule == "best_val" and best["state"] is not None:
        method.load_state_dict(best["state"])
        tested_epoch = best["epoch"]
        last_val = records[tested_epoch].val
    test = run_eval(data.test.x, data.test.y)
    val = run_eval(data.val.x, data.val.y)
    if stages[-1].epochs == 0:  # a post-hoc last stage changed the predictions after the last record
        last_val = val.as_dict("val")
    names = class_split_names(counts, *splits)
    norms = method.classifier_weight_norms()
    per_class = [
        {"class_index": c, "train_count": counts[c], "split": names[c], "test_acc": float(test.per_class_acc[c] * 100),
         "val_acc": float(val.per_class_acc[c] * 100),
         "weight_norm": float(norms[c]) if norms is not None and len(norms) == len(counts) else math.nan}
        for c in range(len(counts))
    ]
    summary = {
        "status": "ok", "error": "", "epochs": total_epochs, "checkpoint_rule": exp.eval.checkpoint_rule,
        "tested_epoch": tested_epoch + 1, **{k: v for k, v in last_val.items()}, **test.as_dict("test"),
        "train_seconds": time.perf_counter() - t0, "subset_hash": data.subset_hash, "train_images": len(data.train),
        "device": str(device), "num_classes": data.num_classes,
    }
    state = {k: v.detach().cpu() for k, v in method.state_dict().items()} if exp.eval.save_model else {}
    return TrialOutput(summary, records, per_class, state)


def threads_for(cpus: float) -> int:
    """Torch intra-op threads for a trial with ``cpus`` CPUs (never more than the machine has)."""
    return max(1, min(int(cpus), os.cpu_count() or 1))
