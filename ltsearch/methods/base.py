"""The protocol between a method and the one training loop (``ltsearch.train.loop``).

A method is an ``nn.Module`` built from validated parameters and a :class:`MethodContext`. What the
platform must know before training (stages, switch epochs, recorded schedule values, the loss) it
declares in one place, the classmethod :meth:`Method.plan`; parameters measured in epochs are
declared with ``spec.epochs_field`` / ``spec.switch_field`` (``--smoke`` rescales them). The loop
calls ``forward(batch, progress)`` (which is ``training_step``; going through ``forward`` is what
lets DDP synchronise gradients), ``predict(images)`` for evaluation, and the hooks at named points:

=======================  ==============================================================
``plan(params, optim)``  Plan(stages, switches, schedules, loss): declared, not inferred
``begin_stage(s, train)`` a stage starts: e.g. freeze the backbone, re-initialise the classifier;
                         ``train`` (:class:`TrainSet`) serves the un-augmented training images
``stage_reuse(stage)``   StageReuse(identity, module[, source]) to cache / load a stage's result
``streams(epoch)``       {stream name: Stream(sampler, views)}; the batch holds one entry each
``on_epoch_start(e, p)`` before epoch e (0-based within the stage) at progress p = e / epochs
``training_step(b, p)``  {"loss": scalar tensor, "logits": optional, other logs...}
``on_epoch_end(e, st)``  after the epoch, with :class:`TrainStats` of the training predictions
``schedule_values(p)``   {name: value} of the schedules named in ``plan().schedules``
``predict(x)``           logits for normalised images
=======================  ==============================================================

A batch is ``{stream: {"y": labels, view: images, ...}}``; the default stream is ``"main"`` with
the dataset's standard augmentation as view ``"weak"``. A step that returns ``"logits"`` (for the
``"main"`` stream's labels) gets per-class training accuracy in ``on_epoch_end``: methods never see
the validation or test split, which only select and report. State that is not a parameter or
buffer goes through ``get_extra_state``/``set_extra_state`` so checkpoints restore it. Methods
never import Ray.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, ClassVar, Iterator, Protocol, Sequence

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, ValidationError

from ltsearch.errors import UserError, format_validation_error
from ltsearch.models import Net, head_weight
from ltsearch.spec import OptimSpec, lr_at


@dataclass(frozen=True)
class Stream:
    sampler: str = "instance"
    views: tuple[str, ...] = ("weak",)


@dataclass(frozen=True)
class Stage:
    """``posthoc``: the stage changes the model without training (τ-norm) and runs with 0 epochs;
    any other stage with 0 epochs is skipped, leaving the model as the previous stage left it."""

    name: str
    epochs: int
    optim: OptimSpec
    posthoc: bool = False


@dataclass(frozen=True)
class Phase:
    """A part of a stage whose mechanism needs epochs at the learning rate it starts with (the
    ``plan()``'s ``phases``): SDNHL's hard-aware phase (w̃ learns from each epoch's training
    accuracy), a deferred re-weighting (DRW), a classifier stage. From epoch ``start`` (0-based,
    within stage ``stage``) to ``end`` (exclusive; None: the stage's end); ``min_epochs``: the epochs it needs at its rate
    (:func:`compressed_phases` counts those whose learning rate is at least ``RATE_KEPT`` of the
    phase's first one); ``key``: the parameter that sets it, for the message."""

    name: str
    stage: str
    start: int
    min_epochs: int = 3
    key: str = ""
    end: int | None = None


# ltsearch's choices (docs/methods.md): a phase keeps its rate while the lr is within 10× of its first
# epoch's (a step decay of 0.01 ends it; a cosine stage keeps about 80 % of its epochs), and needs 3 such
# epochs: 3 updates of a per-epoch feedback weight (SDNHL's w̃: with 1 the weight never sees the effect
# of its own correction, docs/results/fashion_mnist_lt.md); DRW and a classifier stage get the same floor.
RATE_KEPT = 0.1
MIN_PHASE_EPOCHS = 3


@dataclass(frozen=True)
class Plan:
    """What the platform needs to know about a method's trial, declared by :meth:`Method.plan`.

    ``switches``: global 0-based epochs where the behaviour changes (DRW, a new stage...), for
    ASHA's grace period; a ``None`` entry (a switch that is off) is dropped; ``schedules``: the
    names :meth:`Method.schedule_values` records (Parquet ``epochs`` columns); ``loss``: the trials
    table's ``loss`` column; ``phases``: the :class:`Phase` s that need epochs at their rate (a
    scaled recipe that squeezes one is reported by :func:`compressed_phases`)."""

    stages: tuple[Stage, ...]
    switches: tuple[int | None, ...] = ()
    schedules: tuple[str, ...] = ()
    loss: str = ""
    phases: tuple[Phase, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "switches", present(*self.switches))

    @property
    def epochs(self) -> int:
        return sum(s.epochs for s in self.stages)


def phase_epochs(phase: Phase, stage: Stage) -> int:
    """Epochs of ``phase`` whose learning rate is at least ``RATE_KEPT`` of its first epoch's."""
    end = stage.epochs if phase.end is None else min(phase.end, stage.epochs)
    if stage.posthoc or phase.start >= end:
        return 0
    first = lr_at(stage.optim, phase.start)
    return sum(lr_at(stage.optim, e) >= RATE_KEPT * first for e in range(phase.start, end))


def compressed_phases(method: str, plan: Plan) -> str | None:
    """One line naming every phase of ``plan`` that has fewer than its ``min_epochs`` at its rate
    (what a scaled recipe -- ``--smoke``, a benchmark, a user's shorter run -- compressed), or None.
    A phase that starts at or past its end is off, not compressed (``switch_notes`` reports a
    switch past the end)."""
    stages = {s.name: s for s in plan.stages}
    parts = []
    for phase in plan.phases:
        stage = stages.get(phase.stage)
        end = None if stage is None else stage.epochs if phase.end is None else min(phase.end, stage.epochs)
        if stage is None or stage.posthoc or phase.start >= end:
            continue
        kept = phase_epochs(phase, stage)
        if kept < phase.min_epochs:
            lrs = sorted({f"{lr_at(stage.optim, e):.3g}" for e in range(phase.start, end)}, key=float, reverse=True)
            where = f" ({phase.key})" if phase.key else ""
            parts.append(f"the {phase.name}{where} has {kept} of its {end - phase.start} epochs at its learning rate "
                         f"(lr {' → '.join(lrs)}), fewer than the {phase.min_epochs} it needs")
    return f"{method}: the recipe compressed a phase: {'; '.join(parts)}" if parts else None


@dataclass
class StageReuse:
    """A stage whose result can be reused (``ltsearch.train.stage_cache``): ``module``'s state at the
    stage's end depends only on ``identity`` (the method's parameters for that stage) plus the data,
    model, seed and the stage's optimiser, so trials that agree on those share it. ``source``: an
    explicit state file to load instead of training (e.g. ``stage1_from``); ``name``: the module's
    attribute name, under which a full method checkpoint holds its keys."""

    identity: dict[str, Any]
    module: nn.Module
    source: str | None = None
    name: str = "net"


@dataclass
class TrainStats:
    """An epoch's training predictions (from the steps' ``"logits"``): per-class accuracy as a
    fraction (NaN for a class the epoch did not draw) and the number of samples per class."""

    per_class_acc: torch.Tensor
    counts: torch.Tensor


class TrainSet(Protocol):
    """The training set as the loop holds it (``ltsearch.data.batches.Batches``)."""

    labels: torch.Tensor

    def images(self, chunk: int = 512) -> Iterator[torch.Tensor]: ...


@dataclass
class MethodContext:
    class_counts: list[int]
    in_channels: int
    optim: OptimSpec
    build_model: Callable[[str], Net]  # head kind ("linear" | "normed") -> a fresh backbone + head
    model_head: str = "auto"
    seed: int = 0
    splits: tuple[int, int] = (100, 20)  # the data's many-shot (count > many) / few-shot (< few) thresholds
    rank: int = 0  # under DDP: this process's rank among world_size (each rank trains on its share of a batch)
    world_size: int = 1

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


def present(*epochs: int | None) -> tuple[int, ...]:
    """The switch epochs that are set (a ``None`` switch never happens)."""
    return tuple(e for e in epochs if e is not None)


class Method(nn.Module):
    Params: ClassVar[type[BaseModel]] = MethodParams
    name: ClassVar[str] = ""
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, params: BaseModel, ctx: MethodContext):
        super().__init__()
        self.params = params
        self.ctx = ctx
        self.class_counts = list(ctx.class_counts)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        """A method declares its stages and switches in :meth:`plan`; one that overrides the earlier
        ``stages()`` / ``change_epochs()`` hooks instead would silently train one stage."""
        super().__init_subclass__(**kwargs)
        old = [name for name in ("stages", "change_epochs") if name in vars(cls)]
        if old and "plan" not in vars(cls):
            raise TypeError(f"method {cls.__qualname__} overrides {', '.join(old)}(): declare stages and switches "
                            "in the classmethod plan(params, optim) -> Plan instead")

    # ---------------------------------------------------------------- declarations
    @classmethod
    def validate_params(cls, raw: dict[str, Any], where: str = "experiment.method") -> BaseModel:
        try:
            return cls.Params.model_validate(raw)
        except ValidationError as err:
            raise UserError(format_validation_error(err, where, cls.Params)) from None

    @classmethod
    def plan(cls, params: Any, optim: OptimSpec) -> Plan:
        """One stage of ``optim.epochs``; no switch, no schedule value, no named loss."""
        return Plan(stages=(Stage("main", optim.epochs, optim),))

    @classmethod
    def notices(cls, params: BaseModel, class_counts: Sequence[int]) -> list[str]:
        """One-line remarks for the user about what these parameters do on these training class
        counts (e.g. BWLM's stage 1 leaving out half of 10 classes); ``ltsearch run`` / ``train``
        print them before training. Not warnings of errors: the configuration is valid."""
        return []

    # ---------------------------------------------------------------- protocol defaults
    def stages(self) -> tuple[Stage, ...]:
        return self.plan(self.params, self.ctx.optim).stages

    def begin_stage(self, stage: Stage, train: TrainSet) -> None:
        pass

    def stage_reuse(self, stage: Stage) -> StageReuse | None:
        """None: the stage is always trained (the default)."""
        return None

    def trainable_parameters(self, stage: Stage) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    def streams(self, epoch: int) -> dict[str, Stream]:
        return {"main": Stream()}

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        pass

    def on_epoch_end(self, epoch: int, stats: TrainStats | None) -> None:
        pass

    def schedule_values(self, progress: float) -> dict[str, float]:
        return {}

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        raise NotImplementedError

    def forward(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        return self.training_step(batch, progress)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classifier_weight_norms(self) -> torch.Tensor | None:
        """Per-class L2 norms of the (main) classifier's weight vectors, if it has one."""
        head = getattr(getattr(self, "net", None), "classifier", None)
        return None if head is None else head_weight(head).detach().norm(dim=1).cpu()


def check_step_output(out: Any, method: str) -> dict[str, Any]:
    """The one place that checks ``training_step``'s return contract."""
    if isinstance(out, torch.Tensor):
        out = {"loss": out}
    if not isinstance(out, dict) or "loss" not in out:
        raise TypeError(f"method {method!r}: training_step must return a tensor or a dict with 'loss'")
    loss = out["loss"]
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0:
        raise TypeError(f"method {method!r}: training_step's 'loss' must be a scalar tensor")
    return out


def check_schedules(values: dict[str, float], plan: Plan, method: str) -> dict[str, float]:
    """``schedule_values`` may only record what ``plan().schedules`` declares (they are Parquet columns)."""
    undeclared = sorted(set(values) - set(plan.schedules))
    if undeclared:
        raise TypeError(f"method {method!r}: schedule_values returned {undeclared}, which plan().schedules "
                        f"does not declare ({list(plan.schedules)})")
    return values
