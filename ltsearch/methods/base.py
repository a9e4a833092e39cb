"""The protocol between a method and the one training loop (``ltsearch.train.loop``).

A method is an ``nn.Module`` built from validated parameters and a :class:`MethodContext`. The
loop asks it for its stages and its data streams, calls ``forward(batch, progress)`` (which is
``training_step``; going through ``forward`` is what lets DDP synchronise gradients) and
``predict(images)`` for evaluation, and calls the hooks at named points:

=======================  ==============================================================
``stages()``             [Stage(name, epochs, optim)]; one stage unless two-stage
``begin_stage(stage)``   e.g. freeze the backbone, re-initialise the classifier
``stage_reuse(stage)``   StageReuse(identity, module[, source]) to cache / load a stage's result
``streams(epoch)``       {stream name: Stream(sampler, views)}; the batch holds one entry each
``on_epoch_start(e, p)`` before epoch e (0-based) at progress p = e / epochs
``training_step(b, p)``  {"loss": scalar tensor, other float logs...}
``on_epoch_end(e, val)`` after validation, with the val EvalReport (per-class accuracy)
``schedule_values(p)``   {name: value} of its schedules, recorded per epoch (α, λ, ...)
``predict(x)``           logits for normalised images
=======================  ==============================================================

A batch is ``{stream: {"y": labels, view: images, ...}}``; the default stream is
``"main"`` with the dataset's standard augmentation as view ``"weak"``. State that is not a
parameter or buffer goes through ``get_extra_state``/``set_extra_state`` so checkpoints restore it.
Methods never import Ray.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Sequence

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, ValidationError

from ltsearch.errors import UserError
from ltsearch.models import Net, head_weight
from ltsearch.spec import OptimSpec, format_validation_error


@dataclass(frozen=True)
class Stream:
    sampler: str = "instance"
    views: tuple[str, ...] = ("weak",)


@dataclass
class Stage:
    name: str
    epochs: int
    optim: OptimSpec


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
class MethodContext:
    class_counts: list[int]
    in_channels: int
    optim: OptimSpec
    build_model: Callable[[str], Net]  # head kind ("linear" | "normed") -> a fresh backbone + head
    model_head: str = "auto"
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_counts)


class MethodParams(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Method(nn.Module):
    Params: ClassVar[type[BaseModel]] = MethodParams
    name: ClassVar[str] = ""
    find_unused_parameters: ClassVar[bool] = False

    def __init__(self, params: BaseModel, ctx: MethodContext):
        super().__init__()
        self.params = params
        self.ctx = ctx
        self.class_counts = list(ctx.class_counts)

    # ---------------------------------------------------------------- parameters of the spec
    @classmethod
    def validate_params(cls, raw: dict[str, Any], where: str = "experiment.method") -> BaseModel:
        try:
            return cls.Params.model_validate(raw)
        except ValidationError as err:
            raise UserError(format_validation_error(err, where, cls.Params)) from None

    @classmethod
    def notices(cls, params: BaseModel, class_counts: Sequence[int]) -> list[str]:
        """One-line remarks for the user about what these parameters do on these training class
        counts (e.g. BWLM's stage 1 leaving out half of 10 classes); ``ltsearch run`` / ``train``
        print them before training. Not warnings of errors: the configuration is valid."""
        return []

    @classmethod
    def change_epochs(cls, params: BaseModel) -> list[int]:
        """Epochs where the method changes behaviour (DRW switch...), for ASHA's grace period."""
        return [v for k, v in params.model_dump().items() if k.endswith("_epoch") and isinstance(v, int)]

    # ---------------------------------------------------------------- protocol defaults
    def stages(self) -> list[Stage]:
        return [Stage("main", self.ctx.optim.epochs, self.ctx.optim)]

    def begin_stage(self, stage: Stage) -> None:
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

    def on_epoch_end(self, epoch: int, val_report: Any) -> None:
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
