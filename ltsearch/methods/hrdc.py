"""``hrdc``: Hierarchical Rebalancing Dual-Classifier (Zhang et al., IEEE Access 2023).

One backbone (shared entirely) fed by the instance sampler, two classifiers on the same pooled
feature f: a plain classifier trained with CE and a re-weighting classifier trained with
``rebal_loss`` (default ``hrdc``, the hierarchical rebalancing loss of
``ltsearch.losses.hrdc``; Table 5 swaps in any registered loss, whose parameters go in
``rebal_loss_params``). Eq. 5:

    ℓ = α · CE(W_C f, y) + (1 − α) · ℓ_R(W_R f, y)

with α from the ``strategy`` schedule (Table 6): ``hrdc`` (default, α = ((T − T_max)/T_max)² =
(p − 1)², p = epoch / epochs with 0-based epochs, so α = 1 in the first epoch), ``equal`` (0.5),
``segmented`` (1 before half-way, then 0; ``strategy_params`` change it), ``cosine``
(cos(p·π/2)); parameters in ``strategy_params``.

Inference fuses the two classifiers' raw logits (the re-weighting loss's temperatures are a
training device, removed at test time as in CDT). The paper names three fusions (Table 6) without
formulas; we read them as weights on the two logits, w = ``fusion_weight``:
``average``: ½ z_C + ½ z_R; ``head``: w · z_C + (1 − w) · z_R (favouring the plain,
head-friendly classifier); ``tail`` (the fusion the paper adopts, Table 6; the default):
(1 − w) · z_C + w · z_R. The paper gives no weight: the default w = 1 is ltsearch's choice, and with
it "tail fusion" is the re-weighting classifier alone (head fusion the plain classifier alone),
which matches the training weights at the start (α = 1) and the end (α → 0) of the ``hrdc``
strategy. The paper's numbers imply mixtures, though: Table 6's head fusion reaches 83.2 with the
``hrdc`` strategy, far above the plain CE classifier alone (Table 5's CE/CE row: 76.75).
``hrdc_strategy_fusion.yaml`` searches the weight (``fusion_weight`` ∈ [0.5, 1]; 0.5 is the
average fusion).

The re-weighting loss's own parameters (``rebal_loss_params``) default per loss: ``hrdc``'s
``levels`` (thirds of the classes) and ``gamma`` (0.2) are ltsearch's choices, not the paper's;
``seql`` derives its λ from the class counts, ``label_aware_smooth`` takes MiSLAS's ε for the
dataset's size (see those losses and docs/methods.md).
"""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltsearch.losses import build_loss, check_loss_params
from ltsearch.methods.base import Method, MethodContext, Plan, Stage, TrainStats
from ltsearch.models import NormedLinear, fresh_head, head_weight
from ltsearch.registry import LOSSES, METHODS
from ltsearch.schedules import build_schedule
from ltsearch.spec import OptimSpec


class HRDCParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    strategy: str = "hrdc"
    strategy_params: dict[str, Any] = {}
    rebal_loss: str = "hrdc"
    rebal_loss_params: dict[str, Any] = {}
    fusion: Literal["average", "head", "tail"] = "tail"
    fusion_weight: float = Field(1.0, ge=0.5, le=1.0)

    @model_validator(mode="after")
    def _check(self) -> "HRDCParams":
        build_schedule(self.strategy, where="experiment.method.strategy", **self.strategy_params)
        LOSSES.get(self.rebal_loss, where="experiment.method.rebal_loss")
        check_loss_params(self.rebal_loss, self.rebal_loss_params, where="experiment.method.rebal_loss_params")
        return self

    def fusion_weights(self) -> tuple[float, float]:
        """(weight of the plain classifier, weight of the re-weighting classifier) at inference."""
        w = self.fusion_weight
        return {"average": (0.5, 0.5), "head": (w, 1.0 - w), "tail": (1.0 - w, w)}[self.fusion]


@METHODS.register("hrdc")
class HRDC(Method):
    Params = HRDCParams
    name = "hrdc"

    def __init__(self, params: HRDCParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.net = ctx.build_model(ctx.model_head if ctx.model_head != "auto" else "linear")
        self.classifier_r = fresh_head(self.net.classifier, self.net.feat_dim, ctx.num_classes)
        loss_params = dict(params.rebal_loss_params)
        if params.rebal_loss == "hrdc":  # levels: shots cut at the data's many/few thresholds unless given
            loss_params = {"many": ctx.splits[0], "few": ctx.splits[1], **loss_params}
        self.rebal_loss = build_loss(params.rebal_loss, ctx.class_counts, where="experiment.method.rebal_loss_params",
                                     **loss_params)
        self.alpha = build_schedule(params.strategy, where="experiment.method.strategy", **params.strategy_params)

    @classmethod
    def plan(cls, params: HRDCParams, optim: OptimSpec) -> Plan:
        return Plan((Stage("main", optim.epochs, optim),), schedules=("alpha",), loss=params.rebal_loss)

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        self.rebal_loss.set_progress(progress)

    def on_epoch_end(self, epoch: int, stats: TrainStats | None) -> None:
        if stats is not None:  # a re-weighting loss that weights classes by their training accuracy
            self.rebal_loss.update(stats.per_class_acc)

    def schedule_values(self, progress: float) -> dict[str, float]:
        return {"alpha": float(self.alpha(progress))}

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        x, y = batch["main"]["weak"], batch["main"]["y"]
        f = self.net.features(x)
        alpha = float(self.alpha(progress))
        z_c, z_r = self.net.classifier(f), self.classifier_r(f)
        loss = alpha * F.cross_entropy(z_c, y) + (1.0 - alpha) * self.rebal_loss(z_r, y)
        w_c, w_r = self.params.fusion_weights()
        return {"loss": loss, "logits": (w_c * z_c + w_r * z_r).detach()}  # the fused prediction, as at inference

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        f = self.net.features(x)
        w_c, w_r = self.params.fusion_weights()
        return w_c * self.net.classifier(f) + w_r * self.classifier_r(f)

    def classifier_weight_norms(self) -> torch.Tensor:
        """Per-class norms of the fused inference classifier w_C·W_C + w_R·W_R (both heads see the
        same feature, so the fusion is itself a linear classifier; normed heads are normalised first)."""
        w_c, w_r = self.params.fusion_weights()
        mats = [head_weight(h).detach() for h in (self.net.classifier, self.classifier_r)]
        if isinstance(self.classifier_r, NormedLinear):
            mats = [F.normalize(m, dim=1) for m in mats]
        return (w_c * mats[0] + w_r * mats[1]).norm(dim=1).cpu()
