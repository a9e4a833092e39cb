"""``lws``: learnable weight scaling (Kang et al. 2020, "Decoupling Representation and Classifier").

Stage 1 as in ``crt`` (``stage1_loss``, cross-entropy by default; instance-balanced). Stage 2 keeps the stage-1 classifier
h(f) = W f + b frozen and learns one scale per class, z_i = f_i · h_i(f) (the scale multiplies
the logit, bias included, as in Kang et al.'s code; equivalently W̃_i = f_i·W_i, b̃_i = f_i·b_i),
with class-balanced sampling; the scales start at 1. Parameters: those of
``ltsearch.methods.two_stage``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn as nn

from ltsearch.losses import build_loss
from ltsearch.methods.base import MethodContext, Stage, TrainSet
from ltsearch.methods.two_stage import REPRESENTATION, TwoStage, TwoStageParams
from ltsearch.registry import METHODS


@METHODS.register("lws")
class LWS(TwoStage):
    Params = TwoStageParams
    name = "lws"

    def __init__(self, params: TwoStageParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.loss_fn = build_loss("ce", ctx.class_counts)
        self.scales = nn.Parameter(torch.ones(ctx.num_classes), requires_grad=False)

    def setup_classifier(self, train: TrainSet) -> None:
        with torch.no_grad():
            self.scales.fill_(1.0)
        self.scales.requires_grad_(True)

    def trainable_parameters(self, stage: Stage) -> list[nn.Parameter]:
        return [self.scales] if stage.name != REPRESENTATION else [p for p in self.net.parameters() if p.requires_grad]

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        if self.stage == REPRESENTATION:
            return self.stage1_step(batch, self.stage1_loss_fn)
        x, y = batch["main"]["weak"], batch["main"]["y"]
        return {"loss": self.loss_fn(self.net.classifier(self.frozen_features(x)) * self.scales, y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x) * self.scales

    def classifier_weight_norms(self) -> torch.Tensor | None:
        """‖f_i·w_i‖ = |f_i|·‖w_i‖: the norms of the scaled classifier."""
        norms = super().classifier_weight_norms()
        return None if norms is None else norms * self.scales.detach().abs().cpu()
