"""``bbn``: Bilateral-Branch Network with cumulative learning (Zhou et al., CVPR 2020).

Two branches share everything but their last ``branch_blocks`` residual blocks (+ pooling) and
their classifiers: BBN shares "all the weights except for the last residual block" (§4.2), and its
official code (Megvii-Nanjing/BBN) builds ResNet-32's layer3 as n − 1 shared blocks followed by one
``cb_block`` and one ``rb_block``, and ResNet-50's branches as one bottleneck each after a shared
layer4 minus its last block. So ``branch_blocks`` defaults to 1; ``branch_blocks: null`` duplicates
the whole last stage (ltsearch's earlier reading: 5 blocks on ResNet-32, all of layer4 on
ResNet-50). The model is split with ``Net.split_branch``: ``net.neck`` is the conventional branch's
part and ``neck_r`` a ``copy.deepcopy`` of it (same initial weights). A model whose neck is not a
residual stage (``small_cnn``, ``mlp``) has one block there. Each branch has its own classifier.
The conventional branch sees the instance stream ``main``, the re-balancing branch the ``rebal``
stream (BBN's reversed sampler by default, Table 3: ``instance`` = "uniform", ``class_balanced``,
``reversed``). Cumulative learning (Eqs. 1, 3):

    z = α · W_c f_c + (1 − α) · W_r f_r          L = α · CE(z, y_c) + (1 − α) · CE(z, y_r)

α comes from the ``adaptor`` schedule of progress p = epoch / epochs with 0-based epochs, so α = 1
in the first epoch (the official code computes 1 − ((T − 1)/T_max)² with 1-based T: the same
values). Table 4's adaptors: ``parabolic_decay`` (default), ``cosine``, ``linear_decay``,
``equal``, ``parabolic_increment``, ``beta`` (``adaptor_params: {a: 0.2, b: 0.2}``; a fresh draw
per training step, seeded from the trial seed and the epoch; the epoch's mean α is recorded).
Inference: α fixed to ``infer_alpha`` (0.5, Sec. 4.4), both branches on the same image.

Notes: the branch weight multiplies each branch's logits (bias included), which equals weighting
the features for a bias-free linear head and stays meaningful for a cosine (normed) head. The
official code instead concatenates 2·[α f_c, (1 − α) f_r] into one linear layer; that is a
factor 2 on the logits and a single bias, otherwise identical.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltsearch.errors import UserError
from ltsearch.methods.base import Method, MethodContext, Plan, Stage, Stream
from ltsearch.models import Net, fresh_head, head_weight
from ltsearch.registry import METHODS, SAMPLERS
from ltsearch.schedules import build_schedule
from ltsearch.spec import OptimSpec


class BBNParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    adaptor: str = "parabolic_decay"
    adaptor_params: dict[str, Any] = {}
    rebal_sampler: str = "reversed"
    infer_alpha: float = Field(0.5, ge=0, le=1)
    branch_blocks: int | None = Field(1, ge=1)

    @model_validator(mode="after")
    def _check(self) -> "BBNParams":
        build_schedule(self.adaptor, where="experiment.method.adaptor", **self.adaptor_params)
        SAMPLERS.get(self.rebal_sampler, where="experiment.method.rebal_sampler")
        return self


def branch_net(ctx: MethodContext, head: str, blocks: int | None) -> Net:
    """A fresh backbone whose ``neck`` is its last ``blocks`` residual blocks + pooling (``None``: the
    whole last stage): the part a two-branch method duplicates (``Net.split_branch``)."""
    net = ctx.build_model(head)
    try:
        return net.split_branch(blocks)
    except ValueError as err:
        raise UserError(f"experiment.method.branch_blocks: {blocks}: {err}") from None


def mixed_logits(logits_c: torch.Tensor, logits_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 1: z = α · (W_c f_c) + (1 − α) · (W_r f_r)."""
    return alpha * logits_c + (1.0 - alpha) * logits_r


def bbn_loss(z: torch.Tensor, y_c: torch.Tensor, y_r: torch.Tensor, alpha: float) -> torch.Tensor:
    """Eq. 3: L = α · CE(z, y_c) + (1 − α) · CE(z, y_r)."""
    return alpha * F.cross_entropy(z, y_c) + (1.0 - alpha) * F.cross_entropy(z, y_r)


@METHODS.register("bbn")
class BBN(Method):
    Params = BBNParams
    name = "bbn"

    def __init__(self, params: BBNParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.net = branch_net(ctx, ctx.model_head if ctx.model_head != "auto" else "linear", params.branch_blocks)
        self.neck_r = copy.deepcopy(self.net.neck)
        self.classifier_r = fresh_head(self.net.classifier, self.net.feat_dim, ctx.num_classes)
        self._stochastic = params.adaptor == "beta"
        self.adaptor = self._build_adaptor(0)
        self._alpha_sum, self._alpha_n = 0.0, 0

    @classmethod
    def plan(cls, params: BBNParams, optim: OptimSpec) -> Plan:
        return Plan((Stage("main", optim.epochs, optim),), schedules=("alpha",))

    def _build_adaptor(self, epoch: int):
        """The α schedule; a stochastic one is re-seeded from (seed, epoch) every epoch, so a trial
        resumed at an epoch boundary draws the same α values as an uninterrupted one."""
        sched = dict(self.params.adaptor_params)
        if self._stochastic:
            sched["seed"] = int(sched.get("seed", self.ctx.seed)) * 100_003 + epoch
        return build_schedule(self.params.adaptor, where="experiment.method.adaptor", **sched)

    def streams(self, epoch: int) -> dict[str, Stream]:
        return {"main": Stream("instance"), "rebal": Stream(self.params.rebal_sampler)}

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        self._alpha_sum, self._alpha_n = 0.0, 0
        if self._stochastic:
            self.adaptor = self._build_adaptor(epoch)

    def schedule_values(self, progress: float) -> dict[str, float]:
        if self._alpha_n:
            return {"alpha": self._alpha_sum / self._alpha_n}
        return {"alpha": float(self.adaptor(progress))}

    def branch_logits(self, x_c: torch.Tensor, x_r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """W_c f_c and W_r f_r; the shared body runs once per input (as in the official code)."""
        logits_c = self.net.classifier(self.net.neck(self.net.body(x_c)))
        logits_r = self.classifier_r(self.neck_r(self.net.body(x_r)))
        return logits_c, logits_r

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        alpha = float(self.adaptor(progress))
        self._alpha_sum += alpha
        self._alpha_n += 1
        main, rebal = batch["main"], batch["rebal"]
        logits_c, logits_r = self.branch_logits(main["weak"], rebal["weak"])
        z = mixed_logits(logits_c, logits_r, alpha)
        return {"loss": bbn_loss(z, main["y"], rebal["y"], alpha)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net.body(x)
        logits_c = self.net.classifier(self.net.neck(h))
        logits_r = self.classifier_r(self.neck_r(h))
        return mixed_logits(logits_c, logits_r, self.params.infer_alpha)

    def classifier_weight_norms(self) -> torch.Tensor:
        """Per-class norm of the combined classifier [W_c, W_r] (BBN's Fig. 4 "BBN-ALL"):
        sqrt(‖w_c‖² + ‖w_r‖²), one value per class."""
        w_c = head_weight(self.net.classifier).detach()
        w_r = head_weight(self.classifier_r).detach()
        return (w_c.pow(2).sum(1) + w_r.pow(2).sum(1)).sqrt().cpu()
