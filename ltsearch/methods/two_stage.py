"""What the decoupled (two-stage) methods share: ``crt``, ``lws``, ``tau_norm``, ``glag``, ``bwlm``.

Stage ``representation`` trains the whole network (``net``: backbone + classifier) with the
spec's ``optim``; stage ``classifier`` freezes the backbone (its BatchNorm statistics too: the
backbone stays in eval mode) and trains or adjusts the classifier with its own optimiser, built
from ``optim`` and the ``stage2_*`` parameters. The stage-1 result is offered for reuse
(:meth:`stage_reuse`): trials that differ only in stage-2 parameters share one stage-1 network
(``ltsearch.train.stage_cache``), or it is loaded from ``stage1_from`` (a ``.pt`` state file).
The identity of stage 1 is its recipe (:meth:`stage1_identity`), not the method's name, so e.g.
cRT, LWS and τ-norm sweeps with the same data, model, seed and optimiser share one network.

Stage 1's loss is ``stage1_loss`` (any registered loss, default ``ce`` as in Kang et al.) with
``stage1_loss_params`` (its parameters, e.g. ``{tau: 1.0}`` for ``logit_adjust``, ``{s: 1.0, c: 2.0}``
for GLAG's ``gra``); a loss that depends on training progress (``gra``) is given stage-1 progress
every epoch. It is part of stage 1's identity (name and every parameter, defaults filled in), so a
cRT trial with a GraLoss stage 1 shares its network with GLAG's. A loss that learns from per-class
accuracy (``hard_aware``) gets each stage-1 epoch's training accuracy.

Parameters (all methods): ``stage1_loss`` / ``stage1_loss_params``, ``stage2_epochs``,
``stage2_lr`` / ``stage2_batch_size`` / ``stage2_weight_decay`` / ``stage2_momentum`` /
``stage2_optimizer`` (None: the spec's ``optim`` value), ``stage2_warmup`` (0), ``stage2_lr_schedule`` (cosine, no milestones),
``stage1_sampler`` (instance), ``stage2_sampler``, ``stage1_from``.

``stage2_epochs: 0`` skips stage 2 entirely (the loop never begins it): the trial reports the
stage-1 network as it is, its own classifier included (GLAG's "stage one only" rows). τ-norm's
stage 2 is post-hoc (``posthoc_stage2``): it has no epochs and still runs.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltsearch.losses import build_loss, check_loss_params, resolved_loss_params
from ltsearch.methods.base import Method, MethodContext, Phase, Plan, Stage, StageReuse, Stream, TrainSet, TrainStats
from ltsearch.models.heads import NormedLinear
from ltsearch.registry import LOSSES, SAMPLERS
from ltsearch.spec import OptimSpec, epochs_field

REPRESENTATION, CLASSIFIER = "representation", "classifier"


class TwoStageParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    stage2_epochs: int = epochs_field(10)
    stage2_lr: float | None = Field(None, gt=0)
    stage2_batch_size: int | None = Field(None, ge=1)
    stage2_weight_decay: float | None = Field(None, ge=0)
    stage2_momentum: float | None = Field(None, ge=0, lt=1)
    stage2_warmup: int = epochs_field(0)
    stage2_lr_schedule: Literal["step", "cosine", "constant"] = "cosine"
    stage2_optimizer: Literal["sgd", "adam", "adamw"] | None = None
    stage1_sampler: str = "instance"
    stage2_sampler: str = "class_balanced"
    stage1_from: str | None = None
    stage1_loss: str = "ce"
    stage1_loss_params: dict[str, Any] = {}

    @model_validator(mode="after")
    def _samplers(self) -> "TwoStageParams":
        for key in ("stage1_sampler", "stage2_sampler"):
            SAMPLERS.get(getattr(self, key), where=f"experiment.method.{key}")
        return self

    @model_validator(mode="after")
    def _stage1_loss(self) -> "TwoStageParams":
        name, params = self.stage1_loss_spec()
        LOSSES.get(name, where="experiment.method.stage1_loss")
        check_loss_params(name, params, where="experiment.method.stage1_loss_params")
        return self

    def stage1_loss_spec(self) -> tuple[str, dict[str, Any]]:
        """(loss name, its parameters) of stage 1."""
        return self.stage1_loss, dict(self.stage1_loss_params)


def stage2_optim(base: OptimSpec, p: TwoStageParams) -> OptimSpec:
    """Stage 2's optimiser: the spec's, with the ``stage2_*`` values that are set."""
    update: dict[str, Any] = {"epochs": p.stage2_epochs, "warmup": p.stage2_warmup,
                              "lr_schedule": p.stage2_lr_schedule, "milestones": []}
    for key in ("lr", "batch_size", "weight_decay", "momentum"):
        if getattr(p, f"stage2_{key}") is not None:
            update[key] = getattr(p, f"stage2_{key}")
    if p.stage2_optimizer is not None:
        update["name"] = p.stage2_optimizer
    return base.model_copy(update=update)


def reinit_head(head: nn.Module, seed: int) -> None:
    """Re-initialise a linear or normed head as its constructor does, from its own generator (so a
    trial's stage 2 does not depend on how far the global RNG moved in stage 1, or on a cache hit)."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        if isinstance(head, NormedLinear):
            w = torch.empty(head.weight.shape).uniform_(-1, 1, generator=g).renorm_(2, 1, 1e-5).mul_(1e5)
            head.weight.copy_(w)
            return
        w = torch.empty(head.weight.shape)
        nn.init.kaiming_uniform_(w, a=math.sqrt(5), generator=g)
        head.weight.copy_(w)
        if getattr(head, "bias", None) is not None:
            bound = 1 / math.sqrt(w.shape[1]) if w.shape[1] > 0 else 0
            head.bias.copy_(torch.empty(head.bias.shape).uniform_(-bound, bound, generator=g))


class TwoStage(Method):
    """Base class; subclasses set ``Params`` and implement :meth:`setup_classifier` and the
    stage-2 parts of :meth:`training_step` / :meth:`predict`."""

    Params: ClassVar[type[BaseModel]] = TwoStageParams
    posthoc_stage2: ClassVar[bool] = False  # stage 2 adjusts the model without training (τ-norm)
    schedules: ClassVar[tuple[str, ...]] = ()

    def __init__(self, params: TwoStageParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.net = ctx.build_model(ctx.model_head if ctx.model_head != "auto" else "linear")
        self.stage = REPRESENTATION
        name, loss_params = params.stage1_loss_spec()
        self.stage1_loss_fn = build_loss(name, ctx.class_counts, where="experiment.method.stage1_loss_params",
                                         **loss_params)

    # ---------------------------------------------------------------- stages
    @classmethod
    def plan(cls, params: TwoStageParams, optim: OptimSpec) -> Plan:
        """Stage 1 with the spec's optimiser, stage 2 with its own; behaviour changes at stage 2."""
        stage2 = Stage(CLASSIFIER, params.stage2_epochs, stage2_optim(optim, params), posthoc=cls.posthoc_stage2)
        phases = () if cls.posthoc_stage2 else (Phase("classifier stage", CLASSIFIER, 0, key="stage2_epochs"),)
        return Plan((Stage(REPRESENTATION, optim.epochs, optim), stage2), switches=(optim.epochs,),
                    schedules=cls.schedules, loss=params.stage1_loss_spec()[0], phases=phases)

    def begin_stage(self, stage: Stage, train: TrainSet) -> None:
        self.stage = stage.name
        if stage.name == CLASSIFIER:
            for module in (self.net.body, self.net.neck):
                module.requires_grad_(False)
            self.net.classifier.requires_grad_(False)
            self.setup_classifier(train)
            self.train(self.training)

    def setup_classifier(self, train: TrainSet) -> None:
        """Stage 2 starts: make the trainable classifier part (its parameters require grad)."""
        raise NotImplementedError

    def stage1_identity(self) -> dict[str, Any]:
        """What stage 1 depends on besides data, model, seed and optimiser: its loss (name and every
        parameter, defaults filled in; plain CE has none, so its identity is unchanged), sampler, head."""
        name, params = self.params.stage1_loss_spec()
        ident = {"loss": name, "sampler": self.params.stage1_sampler, "head": self.ctx.model_head}
        full = resolved_loss_params(name, params)
        return {**ident, "loss_params": full} if full else ident

    def stage_reuse(self, stage: Stage) -> StageReuse | None:
        if stage.name != REPRESENTATION:
            return None
        return StageReuse(self.stage1_identity(), self.net, self.params.stage1_from, name="net")

    def train(self, mode: bool = True) -> "TwoStage":
        super().train(mode)
        if self.stage == CLASSIFIER:  # frozen backbone: BatchNorm keeps its stage-1 statistics
            self.net.body.eval()
            self.net.neck.eval()
        return self

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        if self.stage == REPRESENTATION:
            self.stage1_loss_fn.set_progress(progress)

    def on_epoch_end(self, epoch: int, stats: TrainStats | None) -> None:
        if self.stage == REPRESENTATION and stats is not None:
            self.stage1_loss_fn.update(stats.per_class_acc)

    def streams(self, epoch: int) -> dict[str, Stream]:
        p = self.params
        return {"main": Stream(sampler=p.stage1_sampler if self.stage == REPRESENTATION else p.stage2_sampler)}

    # ---------------------------------------------------------------- helpers
    def frozen_features(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.net.features(x)

    @torch.no_grad()
    def train_features(self, train: TrainSet) -> tuple[torch.Tensor, torch.Tensor]:
        """Features and labels of the whole (un-augmented) training set, from the frozen backbone."""
        was = [m.training for m in (self.net.body, self.net.neck)]
        self.net.body.eval()
        self.net.neck.eval()
        feats = [self.net.features(x) for x in train.images()]
        self.net.body.train(was[0])
        self.net.neck.train(was[1])
        return torch.cat(feats).float(), train.labels.to(feats[0].device).long()

    def stage1_step(self, batch: dict[str, dict[str, torch.Tensor]], loss_fn: nn.Module) -> dict[str, Any]:
        x, y = batch["main"]["weak"], batch["main"]["y"]
        logits = self.net(x)
        return {"loss": loss_fn(logits, y), "logits": logits.detach()}
