"""``crt``: classifier re-training (Kang et al. 2020, "Decoupling Representation and Classifier for
Long-Tailed Recognition").

Stage 1 trains the network with ``stage1_loss`` (plain cross-entropy by default, as Kang et al.;
GLAG Table 6 swaps in GraLoss or the logit-adjusted loss) and instance-balanced sampling; stage 2
re-initialises the classifier and trains it alone on the frozen features with class-balanced
sampling and cross-entropy (Kang et al.: 10 epochs, cosine learning rate). Parameters: those of
``ltsearch.methods.two_stage``.
"""

from __future__ import annotations

from typing import Any

import torch

from ltsearch.losses import build_loss
from ltsearch.methods.base import MethodContext, TrainSet
from ltsearch.methods.two_stage import REPRESENTATION, TwoStage, TwoStageParams, reinit_head
from ltsearch.registry import METHODS


@METHODS.register("crt")
class CRT(TwoStage):
    Params = TwoStageParams
    name = "crt"

    def __init__(self, params: TwoStageParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.loss_fn = build_loss("ce", ctx.class_counts)

    def setup_classifier(self, train: TrainSet) -> None:
        reinit_head(self.net.classifier, self.ctx.seed + 1)
        self.net.classifier.requires_grad_(True)

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        if self.stage == REPRESENTATION:
            return self.stage1_step(batch, self.stage1_loss_fn)
        x, y = batch["main"]["weak"], batch["main"]["y"]
        return {"loss": self.loss_fn(self.net.classifier(self.frozen_features(x)), y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
