"""``single``: one network, any registered loss, with the usual single-branch re-balancing options.

Parameters (YAML ``method:``): ``loss`` and that loss's own parameters as siblings (e.g.
``{name: single, loss: ldam, max_m: 0.5, s: 30}``); ``sampler`` (instance); deferred re-weighting
``drw_epoch`` (class-balanced weights with ``drw_beta`` from that epoch on, Cao et al. 2019 use 160
of 200 and β = 0.9999); deferred re-sampling ``drs_epoch`` with ``drs_sampler``; ``mixup_alpha``
(> 0 turns on mixup, Zhang et al. 2018); ``posthoc_tau`` (logit adjustment at inference,
z − τ·log π, Menon et al. 2021).
"""

from __future__ import annotations

from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltsearch.losses import build_loss, check_loss_params, class_balanced_weights
from ltsearch.methods.base import Method, MethodContext, Phase, Plan, Stage, Stream, TrainStats, present
from ltsearch.registry import METHODS, SAMPLERS
from ltsearch.spec import OptimSpec, switch_field


class SingleParams(BaseModel):
    model_config = ConfigDict(extra="allow")
    loss: str = "ce"
    sampler: str = "instance"
    drw_epoch: int | None = switch_field(None, ge=0)
    drw_beta: float = Field(0.9999, ge=0, lt=1)
    drs_epoch: int | None = switch_field(None, ge=0)
    drs_sampler: str = "class_balanced"
    mixup_alpha: float = Field(0.0, ge=0)
    posthoc_tau: float = 0.0

    @model_validator(mode="after")
    def _check(self) -> "SingleParams":
        check_loss_params(self.loss, self.loss_params(), where="experiment.method",
                          also={"method single": list(type(self).model_fields)})  # a typo of drw_beta lands here
        if self.mixup_alpha > 0 and self.loss == "hard_aware":
            raise ValueError("mixup_alpha: a mixed image has two labels, so there is no per-class training "
                             "accuracy for hard_aware's weights; use mixup_alpha: 0 with loss: hard_aware")
        for key in ("sampler", "drs_sampler"):
            SAMPLERS.get(getattr(self, key), where=f"experiment.method.{key}")
        return self

    def loss_params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


@METHODS.register("single")
class Single(Method):
    Params = SingleParams
    name = "single"

    def __init__(self, params: SingleParams, ctx: MethodContext):
        super().__init__(params, ctx)
        head = ctx.model_head if ctx.model_head != "auto" else ("normed" if params.loss == "ldam" else "linear")
        self.net = ctx.build_model(head)
        loss_params = params.loss_params()
        if params.loss == "hrdc":  # levels: shots cut at the data's many/few thresholds unless given (as hrdc)
            loss_params = {"many": ctx.splits[0], "few": ctx.splits[1], **loss_params}
        self.loss_fn = build_loss(params.loss, ctx.class_counts, where="experiment.method", **loss_params)
        prior = torch.tensor(ctx.class_counts, dtype=torch.float32)
        self.register_buffer("log_prior", (prior / prior.sum()).log())
        self.register_buffer("drw_weights", class_balanced_weights(ctx.class_counts, params.drw_beta))
        self._own_weight = None if self.loss_fn.weight is None else self.loss_fn.weight.clone()
        self._drw_on = self._drs_on = False
        self._mix_gen = torch.Generator()

    @classmethod
    def plan(cls, params: SingleParams, optim: OptimSpec) -> Plan:
        phases = [Phase(name, "main", at, key=key) for name, at, key in
                  (("deferred re-weighting", params.drw_epoch, "drw_epoch"),
                   ("deferred re-sampling", params.drs_epoch, "drs_epoch")) if at is not None]
        return Plan((Stage("main", optim.epochs, optim),), switches=present(params.drw_epoch, params.drs_epoch),
                    schedules=("drw_on", "drs_on"), loss=params.loss, phases=tuple(phases))

    def streams(self, epoch: int) -> dict[str, Stream]:
        p = self.params
        return {"main": Stream(sampler=p.drs_sampler if self.drs_on(epoch) else p.sampler)}

    def drw_on(self, epoch: int) -> bool:
        """DRW is on from the 0-based ``drw_epoch`` (LDAM-DRW: ``epoch // 160`` picks β = 0.9999)."""
        return self.params.drw_epoch is not None and epoch >= self.params.drw_epoch

    def drs_on(self, epoch: int) -> bool:
        """Deferred re-sampling (``drs_sampler``) from the 0-based ``drs_epoch``."""
        return self.params.drs_epoch is not None and epoch >= self.params.drs_epoch

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        self._drw_on = self.drw_on(epoch)
        self._drs_on = self.drs_on(epoch)
        self._mix_gen.manual_seed(self.ctx.seed * 1_000_003 + 7 + epoch)  # per epoch: a resumed trial draws the same
        if self.params.drw_epoch is not None:  # without DRW, keep the loss's own weight (if any)
            self.loss_fn.set_weight(self.drw_weights if self._drw_on else self._own_weight)
        self.loss_fn.set_progress(progress)

    def on_epoch_end(self, epoch: int, stats: TrainStats | None) -> None:
        if stats is not None:  # losses that weight classes by their (training) accuracy
            self.loss_fn.update(stats.per_class_acc)

    def schedule_values(self, progress: float) -> dict[str, float]:
        return {"drw_on": float(self._drw_on), "drs_on": float(self._drs_on)}

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        x, y = batch["main"]["weak"], batch["main"]["y"]
        if self.params.mixup_alpha > 0:  # no training accuracy: a mixed image has two labels
            lam = float(torch.distributions.Beta(self.params.mixup_alpha, self.params.mixup_alpha).sample())
            perm = torch.randperm(x.shape[0], generator=self._mix_gen).to(x.device, non_blocking=True)
            logits = self.net(lam * x + (1 - lam) * x[perm])
            return {"loss": lam * self.loss_fn(logits, y) + (1 - lam) * self.loss_fn(logits, y[perm])}
        logits = self.net(x)
        return {"loss": self.loss_fn(logits, y), "logits": logits.detach()}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.net(x)
        if self.params.posthoc_tau:
            logits = logits - self.params.posthoc_tau * self.log_prior.to(logits.dtype)
        return logits
