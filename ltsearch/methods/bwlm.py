"""``bwlm``: Balanced Weight Learning Mechanism (Fan et al. 2024, Appl. Sci. 14, 454).

Reading of §3.2 ("Data Balanced Review", Eq. 2–4, Figure 1). Classes are sorted by training count
(descending, ties by index); m = ⌊C/2⌋ ("the middle number of classes, m = C/2").

- Stage 1 (``representation``) trains the whole network with cross-entropy (and the spec's
  weight decay, "we also include weight decay in the first stage") on D_stage1 = Σ_{j≤m} D_j: the
  *common* half of the classes only (Eq. 2's first line; Figure 1: "in the first stage, we use
  common class samples"). ``stage1_data: all`` trains on every class instead (plain decoupling).
  Sampler ``bwlm_head``: each epoch a permutation of the common classes' images.
- Stage 2 (``classifier``) freezes the network and trains a *new* fully connected layer (Eq. 4) on
  the balanced review set D̂ = Σ_{j≤m} sam(D_j, n_{m+1}) + Σ_{j>m} D_j: each common class randomly
  sub-sampled (without replacement, once per trial, fixed across epochs) to n_{m+1} images, the
  count of the most frequent rare class; rare classes kept whole (Eq. 2). Sampler
  ``balanced_review``: each epoch a permutation of D̂.
- Stage-2 loss: BFS (``ltsearch.losses.bfs``: α·CB-focal + (1 − α)·balanced softmax, α = 0.1
  by default, §4.3), with weight decay λ‖θ‖² on the new layer (Eq. 14–17): the method's namesake.
  ``stage2_weight_decay`` 5e-3 by default: BWLM "select[s] the value of λ based on [52]"
  (Alshammari et al. 2022, weight balancing), whose CIFAR-100-LT recipe uses 5e-3 (the value of
  ``ltsearch reproduce``'s ``cifar_bwlm`` rows; null inherits the spec's ``optim.weight_decay``,
  which is BFS without BWLM's regulariser). ``stage2_loss: ce`` gives the paper's CE / CEW rows;
  BFS with α = 1 / α = 0 gives CB(W) / BS(W) (Table 2). The CB weights are Eq. 5's raw
  (1 − β)/(1 − β^{n_j}) (``bfs_normalize: true``: Cui et al.'s sum-to-C weights, see the loss).
  With raw weights and few, not very rare classes the CB-focal term is a few per cent of the
  balanced-softmax term, so α changes little: :meth:`BWLM.notices` says so.
- n_j of Eq. 5 and Eq. 9 (``bfs_counts``): ``review`` (default) counts the balanced review set D̂
  that stage 2 trains on; ``train`` counts the long-tailed training set D (§3.1 defines n_j on D).
  The default is ltsearch's reading, from the derivation Eq. 9 takes from Ren et al. 2020: balanced
  softmax adds log n_j to undo the label prior of the set the classifier is fitted on, and stage 2
  fits it on D̂, whose prior is D̂'s counts; with D's counts it corrects a prior D̂ no longer has
  and over-corrects toward the rare classes (on Fashion-MNIST-LT 74.0 → 81.9 test with 10 review
  epochs and stage 1 on all classes, docs/results/fashion_mnist_lt.md).
- Stage 1 uses the spec's ``optim`` (its weight decay included: "we also include weight decay in
  the first stage", §4.3, λ from [52]; ``ltsearch reproduce``'s BWLM recipes set 5e-3 / 5e-4).
- Stage-2 recipe (§4.2: "batch size of 64 ... SGD momentum 0.9 ... cosine ... from 0.01 to 0"):
  ``stage2_lr`` 0.01, ``stage2_batch_size`` 64, ``stage2_momentum`` 0.9, ``stage2_optimizer`` sgd,
  cosine, no warm-up — by default, whatever stage 1's optimiser is (set them to null to inherit
  the spec's ``optim``). §4.2 gives the same recipe for the whole run; BWLM states no stage-2 length:
  ``stage2_epochs`` 10 is Kang et al.'s classifier re-training length (ltsearch's choice), and it
  is not scaled with the recipe: D̂ is small (2,826 images on Fashion-MNIST-LT IF100: 44 steps an
  epoch), so fewer epochs leave a new FC layer under-trained (1 → 10 epochs: 38.5 → 51.1 test there).
- With few classes the common half is a large share of the problem: on 10 classes stage 1 never
  sees 5 of them (on Fashion-MNIST-LT that costs 23 to 24 test points against
  ``stage1_data: all``, with 10 or 1 review epochs, docs/results/fashion_mnist_lt.md).
  That is the paper's design and stays the default; :meth:`BWLM.notices` says so when C ≤ 20.

Parameters: ``stage1_data`` (head | all), ``stage2_loss`` (bfs | ce), ``bfs_alpha`` (0.1),
``bfs_beta`` (0.9999), ``bfs_gamma`` (1.0), ``bfs_normalize`` (false), ``bfs_counts`` (review |
train), ``stage2_weight_decay`` (5e-3), and those of ``ltsearch.methods.two_stage`` (with the stage-2 defaults above).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from ltsearch.data.samplers import Sampler
from ltsearch.losses import build_loss
from ltsearch.methods.base import MethodContext, Plan, Stream, TrainSet
from ltsearch.methods.two_stage import REPRESENTATION, TwoStage, TwoStageParams, reinit_head
from ltsearch.registry import METHODS, SAMPLERS
from ltsearch.spec import OptimSpec


def review_counts(class_counts: Sequence[int]) -> tuple[list[int], list[int]]:
    """(common classes, per-class counts of the balanced review set D̂) for these training counts."""
    order = sorted(range(len(class_counts)), key=lambda c: (-class_counts[c], c))
    m = len(order) // 2
    common = sorted(order[:m])
    cap = class_counts[order[m]] if m < len(order) else 0
    counts = [min(n, cap) if c in common else n for c, n in enumerate(class_counts)]
    return common, counts


class _SubsetSampler(Sampler):
    """A fixed subset of the training set (drawn once from the seed), permuted every epoch."""

    def __init__(self, labels: torch.Tensor, class_counts: Sequence[int]):
        super().__init__(labels, class_counts)
        self.class_counts = [int(n) for n in class_counts]

    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        return counts / counts.sum()  # unused: epoch_indices is overridden

    def subset(self, seed: int) -> torch.Tensor:
        raise NotImplementedError

    def epoch_indices(self, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        idx = self.subset(seed)
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        return idx[torch.randperm(len(idx), generator=g)][rank::world_size]


@SAMPLERS.register("bwlm_head")
class CommonHalfSampler(_SubsetSampler):
    """BWLM's D_stage1: the images of the ⌊C/2⌋ most frequent classes."""

    def subset(self, seed: int) -> torch.Tensor:
        common, _ = review_counts(self.class_counts)
        return torch.nonzero(torch.isin(self.labels, torch.tensor(common))).flatten()


@SAMPLERS.register("balanced_review")
class BalancedReviewSampler(_SubsetSampler):
    """BWLM's D̂ (Eq. 2): common classes sub-sampled to n_{m+1}, rare classes whole."""

    def subset(self, seed: int) -> torch.Tensor:
        _, counts = review_counts(self.class_counts)
        g = torch.Generator().manual_seed(int(seed) * 100_003 + 424_242)  # sam(·): once per trial
        keep = []
        for c, n in enumerate(counts):
            idx = torch.nonzero(self.labels == c).flatten()
            keep.append(idx[torch.randperm(len(idx), generator=g)[:n]])
        return torch.sort(torch.cat(keep)).values


SMALL_C = 20  # classes: at or below this, BWLM.notices points out what stage 1 leaves out
ALPHA_NEGLIGIBLE = 0.05  # ltsearch's: a CB-focal term below 5 % of the balanced-softmax term is "negligible"


def bfs_counts(params: "BwlmParams", class_counts: Sequence[int]) -> list[int]:
    """The n_j of BFS (Eq. 5, 9): D̂'s counts (``bfs_counts: review``) or D's (``train``)."""
    return list(class_counts) if params.bfs_counts == "train" else review_counts(class_counts)[1]


def cb_focal_share(params: Any, class_counts: Sequence[int]) -> float | None:
    """The largest ratio, over classes y, of BFS's CB-focal term to its balanced-softmax term at
    initialisation (all logits 0): w_y · C · 0.5^γ · log 2 (C sigmoid-focal terms, each
    (1 − ½)^γ · log 2) over log C (balanced softmax on D̂'s near-balanced counts). None where it does
    not apply (another loss, or Cui et al.'s normalised weights)."""
    if getattr(params, "stage2_loss", None) != "bfs" or params.bfs_normalize or len(class_counts) < 2:
        return None
    counts = bfs_counts(params, class_counts)
    c, beta = len(counts), params.bfs_beta
    w_max = max((1.0 - beta) / (1.0 - beta ** n) for n in counts if n > 0)
    return w_max * c * 0.5 ** params.bfs_gamma * math.log(2) / math.log(c)


class BwlmParams(TwoStageParams):
    model_config = ConfigDict(extra="forbid")
    stage1_data: Literal["head", "all"] = "head"
    stage2_loss: Literal["bfs", "ce"] = "bfs"
    bfs_alpha: float = Field(0.1, ge=0, le=1)
    bfs_beta: float = Field(0.9999, ge=0, lt=1)
    bfs_gamma: float = Field(1.0, ge=0)
    bfs_normalize: bool = False
    bfs_counts: Literal["train", "review"] = "review"  # ltsearch's reading: the prior of the set stage 2 fits
    stage2_sampler: str = "balanced_review"
    stage2_weight_decay: float | None = Field(5.0e-3, ge=0)  # λ of Eq. 14-17 "based on [52]": 5e-3
    stage2_lr: float | None = Field(0.01, gt=0)
    stage2_batch_size: int | None = Field(64, ge=1)
    stage2_momentum: float | None = Field(0.9, ge=0, lt=1)
    stage2_optimizer: Literal["sgd", "adam", "adamw"] | None = "sgd"


@METHODS.register("bwlm")
class BWLM(TwoStage):
    Params: ClassVar[type[BaseModel]] = BwlmParams
    name = "bwlm"

    @classmethod
    def plan(cls, params: BwlmParams, optim: OptimSpec) -> Plan:
        return dataclasses.replace(super().plan(params, optim), loss=params.stage2_loss)  # the loss BWLM is about

    def __init__(self, params: BwlmParams, ctx: MethodContext):
        super().__init__(params, ctx)
        p = params
        _, self.review = review_counts(ctx.class_counts)
        if p.stage2_loss == "bfs":
            self.loss2 = build_loss("bfs", bfs_counts(p, ctx.class_counts), where="experiment.method", alpha=p.bfs_alpha, beta=p.bfs_beta,
                                    gamma=p.bfs_gamma, normalize=p.bfs_normalize)
        else:
            self.loss2 = build_loss("ce", ctx.class_counts)

    @classmethod
    def notices(cls, params: BaseModel, class_counts: Sequence[int]) -> list[str]:
        c = len(class_counts)
        out = []
        if getattr(params, "stage1_data", "all") == "head" and c <= SMALL_C:
            out.append(f"bwlm: stage 1 trains on the {len(review_counts(class_counts)[0])} most frequent of {c} classes "
                       "(the paper's design); stage1_data: all trains on every class")
        share = cb_focal_share(params, class_counts)
        if share is not None and share < ALPHA_NEGLIGIBLE:
            out.append(f"bwlm: with raw class-balanced weights the CB-focal term is at most {100 * share:.1f} % of the "
                       f"balanced-softmax term here, so bfs_alpha ({params.bfs_alpha}) changes little below 1; "
                       "bfs_normalize: true uses Cui et al.'s sum-to-C weights")
        return out

    def stage1_identity(self) -> dict[str, Any]:
        ident = super().stage1_identity()  # "all" is plain CE stage 1: shared with crt / lws / tau_norm
        return {**ident, "data": "head"} if self.params.stage1_data == "head" else ident

    def streams(self, epoch: int) -> dict[str, Stream]:
        if self.stage == REPRESENTATION and self.params.stage1_data == "head":
            return {"main": Stream(sampler="bwlm_head")}
        return super().streams(epoch)

    def setup_classifier(self, train: TrainSet) -> None:
        reinit_head(self.net.classifier, self.ctx.seed + 1)  # Eq. 4: a new FC layer
        self.net.classifier.requires_grad_(True)

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        if self.stage == REPRESENTATION:
            return self.stage1_step(batch, self.stage1_loss_fn)
        x, y = batch["main"]["weak"], batch["main"]["y"]
        return {"loss": self.loss2(self.net.classifier(self.frozen_features(x)), y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
