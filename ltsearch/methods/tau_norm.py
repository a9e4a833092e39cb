"""``tau_norm``: τ-normalised classifier (Kang et al. 2020, "Decoupling Representation and Classifier").

Stage 1 as in ``crt`` (``stage1_loss``, cross-entropy by default; instance-balanced). Stage 2 is post-hoc and has no epochs:
each class's weight vector of the stage-1 classifier is rescaled, w̃_i = w_i / ‖w_i‖^τ
(τ = 1: unit norms, τ = 0: unchanged). Kang et al. drop the classifier's bias for τ-norm;
``keep_bias: true`` keeps it. The rescaling is applied in ``predict`` once stage 2 has begun, so
stage 1's records are the plain classifier's (and stage 1 is shared across τ values).
Parameters: ``tau`` (1.0: ltsearch's default, full normalisation; Kang et al. select τ on
validation, and on Fashion-MNIST-LT τ near 0 is better, docs/results/fashion_mnist_lt.md),
``keep_bias`` (false), ``stage1_loss`` / ``stage1_loss_params``, ``stage1_sampler``, ``stage1_from``.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field

from ltsearch.methods.base import TrainSet
from ltsearch.methods.two_stage import CLASSIFIER, REPRESENTATION, TwoStage, TwoStageParams
from ltsearch.models.heads import head_weight
from ltsearch.registry import METHODS
from ltsearch.spec import epochs_field


class TauNormParams(TwoStageParams):
    model_config = ConfigDict(extra="forbid")
    tau: float = Field(1.0, ge=0)
    keep_bias: bool = False
    stage2_epochs: int = epochs_field(0, le=0)


def tau_normalised(weight: torch.Tensor, tau: float) -> torch.Tensor:
    """(C, D) weights with row i divided by ‖w_i‖^τ."""
    return weight / weight.norm(dim=1, keepdim=True).clamp_min(1e-12).pow(tau)


@METHODS.register("tau_norm")
class TauNorm(TwoStage):
    Params: ClassVar[type[BaseModel]] = TauNormParams
    name = "tau_norm"
    posthoc_stage2 = True

    def setup_classifier(self, train: TrainSet) -> None:
        pass  # post-hoc: predict() rescales the stage-1 classifier from here on

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        if self.stage == REPRESENTATION:
            return self.stage1_step(batch, self.stage1_loss_fn)
        raise RuntimeError("tau_norm has no stage-2 training")

    def classifier_logits(self, f: torch.Tensor) -> torch.Tensor:
        head = self.net.classifier
        w = tau_normalised(head_weight(head), self.params.tau)
        bias = getattr(head, "bias", None) if self.params.keep_bias else None
        if not isinstance(head, torch.nn.Linear):  # a normed head normalises the features too
            f = F.normalize(f, dim=1)
        return F.linear(f, w, bias)

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage != CLASSIFIER:
            return self.net(x)
        return self.classifier_logits(self.net.features(x))

    def classifier_weight_norms(self) -> torch.Tensor | None:
        w = head_weight(self.net.classifier).detach()
        return (tau_normalised(w, self.params.tau) if self.stage == CLASSIFIER else w).norm(dim=1).cpu()
