"""``glag``: Gradual Balanced Loss and Adaptive Feature Generation (Zhang & Xiang 2022).

Stage 1 (``representation``): the whole network with GraLoss (``ltsearch.losses.gra``),
α = s·(c^p − 1) over stage-1 progress p (Eq. 3–4; paper: c = 2, s = 1 on CIFAR-100-LT).

Stage 2 (``classifier``, the paper's 40 "generation epochs"): the backbone is frozen and a new
linear classifier h₂ is trained on real features plus features drawn by the Adaptive Feature
Generator (AFG). Choices where the paper is silent or ambiguous:

- Tukey's ladder of powers x̂ = x^λ (λ = ``tukey_lambda``, 0.5 as in Yang et al. 2021's "free lunch"
  calibration GLAG follows; λ = 0 → log x; applied sign-preservingly, sign(x)|x|^λ, so features that
  can be negative stay defined). The paper writes the class statistics (Eq. 5–6) over untransformed
  features but transforms the tail samples before calibrating; we compute the means and covariances
  (N_k − 1 denominator; zero for a one-sample class) on *transformed* training features (no
  augmentation), so that the Gaussian assumption, the calibration and the sampling all live in one
  space, and h₂ reads transformed features at training and test time (as in free-lunch calibration).
- Head / tail: classes with more than ``head_threshold`` training images are head; the others are
  tail. The paper gives no number: the default 100 is ltsearch's choice, the many-shot boundary by
  which CIFAR-100-LT / ImageNet-LT results are reported (> 100 images), taken as an absolute count on
  purpose: a tail class is one whose own covariance estimate is unreliable (a class with fewer images
  than feature dimensions has a rank-deficient one), whatever the dataset's many/few reporting
  groups are. Measured on Fashion-MNIST-LT IF100 (docs/results/fashion_mnist_lt.md): the dataset's
  many-shot threshold (> 1077, 7 of 10 classes "tail") gave val 75.8 %, the fixed 100 (2 tail
  classes) 83.1 %. Each class gets N_max − N_c generated features per epoch
  ("the sampling number depends on the gap to the head class"). Head classes (and a tail class that
  no class out-numbers) draw them from their own Gaussian N(μ_c, Σ_c). For a tail class the draws
  are spread evenly over its real samples; for sample x̂_i the support set S is the ``support_k``
  classes with more training images than y_i nearest to x̂_i (d_ij = ‖x̂_i − μ_j‖, Eq. 7),
  ω_j = N_j / d_ij (Eq. 10), and x̂_i's Gaussian is (Eq. 8–9)
      μ = (1 − β)·x̂_i + β·Σω_jμ_j/Σω_j,   Σ = (1 − β)²·Σ_{y_i} + β²·Σω_jΣ_j/Σω_j + γ,
  Σ_{y_i} being the covariance of x̂_i's class (a single sample has none) and γ (``gamma``, paper:
  0 or 0.1) added to every entry, as in free-lunch calibration's code. Draws use a symmetric PSD
  square root (eigendecomposition), which copes with rank-deficient few-shot covariances.
- Real samples come from ``stage2_sampler`` (instance: the real data as it is; generation does the
  balancing). "The generated samples are mixed up with real training samples" is read as mixed into
  the batches (not mixup): each step appends an equal share of the epoch's shuffled generated features.
- Scale (``ltsearch.methods.afg``): with exact covariances, memory and time grow with C·D² (class
  covariances, one eigendecomposition per tail sample per epoch; 16.8 GB of covariances for
  ImageNet-LT at D = 2048, 137 GB for iNaturalist). ``afg_cov: lowrank`` keeps the top ``afg_rank``
  (32) eigenvectors of each class covariance plus an isotropic residual and samples the calibrated
  Gaussian as a sum of independent Gaussians, never forming a D×D matrix; ``auto`` (default) uses
  the exact form when :func:`ltsearch.methods.afg.afg_memory` estimates it within ``afg_memory_gb``
  (2 GB: CIFAR), else the low-rank one. The generated features are drawn step by step from a
  shuffled epoch plan, never held for a whole epoch.
- Adaptive β (one per tail class, start ``beta_init`` = 0.6, §5.1; §5.3 says 0.4): after each
  stage-2 epoch, a tail class whose accuracy rose since the previous epoch gets β += ``beta_step``,
  one whose accuracy fell gets β −= ``beta_step``, clipped to [0, 1]. The paper states only the
  direction ("more confident → increase β"), not the step or the reference, and reads the
  accuracy on a validation set (§1, Fig. 2). Both are ltsearch's choices here: the step 0.05, and
  the accuracy of the epoch's training predictions on the *real* samples (the frozen features of
  the training images, not the generated ones), because ltsearch's validation split only selects
  configurations (it would stop being an honest selection metric if it steered training). At
  ±0.05 a β starting at 0.6 reaches 1 after 8 rises in a row or 0 after 12 falls, so within 40
  epochs it can saturate.
- KD (Eq. 11): loss = CE + α·KL(softmax(h₁(f)/T) ‖ softmax(h₂(x̂)/T))·T² over the *real* head-class
  samples of the batch (the teacher h₁, the stage-1 classifier, reads untransformed features, which
  generated samples do not have); α follows the GraLoss schedule over stage-2 progress ("the α in
  Eq. 11 is set the same as that in GraLoss"); T = ``kd_temperature``
  (not given; 1 is ltsearch's choice).

Table 7's components switch with ``stage1_loss`` (``gra``, the default; ``ce``; ``logit_adjust``
for its "Logitloss" rows — τ is not stated, ``stage1_loss_params: {tau: 1.0}`` is the Table 1 row
closest to Table 7's), ``afg`` (false: no generated features), ``adaptive_beta`` (false: β stays
``beta_init``) and ``kd``; the "stage one only" rows are ``stage2_epochs: 0``: stage 2 never begins
and the stage-1 network (its classifier h₁) is tested. ``graloss`` is shorthand kept from before
``stage1_loss`` existed: ``graloss: true`` = ``stage1_loss: gra`` with ``gra_s`` / ``gra_c`` /
``gra_form`` (the GraLoss parameters, which also drive the KD weight), ``graloss: false`` =
``stage1_loss: ce``; given together they must agree. After validation both are set consistently.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar, Literal

import torch
import torch.nn as nn
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, model_validator

from ltsearch.methods.afg import FeatureGenerator, choose_mode
from ltsearch.methods.base import MethodContext, Stage, TrainSet, TrainStats
from ltsearch.methods.two_stage import CLASSIFIER, REPRESENTATION, TwoStage, TwoStageParams, reinit_head
from ltsearch.registry import METHODS
from ltsearch.schedules import gra as gra_schedule
from ltsearch.spec import epochs_field


class GlagParams(TwoStageParams):
    model_config = ConfigDict(extra="forbid")
    graloss: bool = True
    gra_s: float = Field(1.0, ge=0)
    gra_c: float = Field(2.0, gt=1)
    gra_form: Literal["convex", "linear", "concave"] = "convex"
    afg: bool = True
    adaptive_beta: bool = True
    kd: bool = True
    beta_init: float = Field(0.6, ge=0, le=1)
    beta_step: float = Field(0.05, ge=0, le=1)
    gamma: float = Field(0.0, ge=0)
    support_k: int = Field(2, ge=1)
    tukey_lambda: float = Field(0.5, ge=0)
    head_threshold: int = Field(100, ge=0)
    kd_temperature: float = Field(1.0, gt=0)
    stage2_epochs: int = epochs_field(40)
    stage2_sampler: str = "instance"
    stage1_loss: str | None = None  # None: from graloss (gra, or ce when graloss is false)
    afg_cov: Literal["auto", "exact", "lowrank"] = "auto"
    afg_rank: int = Field(32, ge=1)
    afg_memory_gb: float = Field(2.0, gt=0)

    @model_validator(mode="after")
    def _resolve_stage1_loss(self) -> "GlagParams":
        if self.stage1_loss is not None and "graloss" in self.model_fields_set \
                and self.graloss != (self.stage1_loss == "gra"):
            raise ValueError(f"graloss: {self.graloss} contradicts stage1_loss: {self.stage1_loss} "
                             "(graloss is shorthand for stage1_loss: gra; give one of them)")
        name = self.stage1_loss or ("gra" if self.graloss else "ce")
        if name == "gra" and {"s", "c", "form"} & set(self.stage1_loss_params):
            raise ValueError("stage1_loss_params: GraLoss takes its parameters from gra_s, gra_c, gra_form")
        self.stage1_loss, self.graloss = name, name == "gra"
        return self

    def stage1_loss_spec(self) -> tuple[str, dict[str, Any]]:
        name = self.stage1_loss or ("gra" if self.graloss else "ce")
        if name == "gra":
            return name, {"s": self.gra_s, "c": self.gra_c, "form": self.gra_form, **self.stage1_loss_params}
        return name, dict(self.stage1_loss_params)


def tukey(x: torch.Tensor, lam: float) -> torch.Tensor:
    """Tukey's ladder of powers: x^λ (sign-preserving), log x for λ = 0."""
    if lam == 1:
        return x
    if lam == 0:
        return x.clamp_min(1e-6).log()
    return x.sign() * x.abs().pow(lam)


def adapt_beta(beta: torch.Tensor, acc: torch.Tensor, prev: torch.Tensor, tail: torch.Tensor, step: float) -> torch.Tensor:
    """β_c ± step for tail classes whose accuracy rose / fell since the previous epoch, in [0, 1]."""
    move = torch.nan_to_num(torch.sign(acc - prev), nan=0.0) * tail.to(beta.dtype)
    return (beta + step * move).clamp(0.0, 1.0)


@METHODS.register("glag")
class GLAG(TwoStage):
    Params: ClassVar[type[BaseModel]] = GlagParams
    name = "glag"
    schedules = ("gra_strength", "kd_on")

    def __init__(self, params: GlagParams, ctx: MethodContext):
        super().__init__(params, ctx)
        p = params
        self.schedule = gra_schedule(s=p.gra_s, c=p.gra_c, form=p.gra_form)
        self.head2 = nn.Linear(self.net.feat_dim, ctx.num_classes)
        self.head2.requires_grad_(False)
        counts = torch.tensor(ctx.class_counts)
        self.register_buffer("counts", counts)
        self.register_buffer("is_head", counts > p.head_threshold)
        self.register_buffer("beta", torch.full((ctx.num_classes,), p.beta_init))
        self.register_buffer("prev_acc", torch.full((ctx.num_classes,), math.nan))
        self.kd_alpha = 0.0
        self.afg_mode = choose_mode(p.afg_cov, ctx.class_counts, self.net.feat_dim, p.afg_rank, p.afg_memory_gb,
                                    p.head_threshold, p.support_k)
        self._afg: FeatureGenerator | None = None
        self._chunk, self._batch = 0, ctx.optim.batch_size

    def begin_stage(self, stage: Stage, train: TrainSet) -> None:
        self._batch = stage.optim.batch_size
        super().begin_stage(stage, train)

    def setup_classifier(self, train: TrainSet) -> None:
        reinit_head(self.head2, self.ctx.seed + 1)
        self.head2.requires_grad_(True)
        with torch.no_grad():
            self.beta.fill_(self.params.beta_init)
            self.prev_acc.fill_(math.nan)
        if self.params.afg:
            p = self.params
            feats, y = self.train_features(train)
            xh = tukey(feats, p.tukey_lambda)
            del feats
            self._afg = FeatureGenerator(xh, y, self.ctx.class_counts, self.is_head, p.support_k, p.gamma,
                                         self.afg_mode, p.afg_rank)

    def trainable_parameters(self, stage: Stage) -> list[nn.Parameter]:
        if stage.name == REPRESENTATION:
            return [q for q in self.net.parameters() if q.requires_grad]
        return list(self.head2.parameters())

    # ---------------------------------------------------------------- generation
    def start_generation(self, epoch: int) -> None:
        """The epoch's generation plan, seeded by trial seed and epoch (a resumed epoch redraws the same)."""
        assert self._afg is not None
        seed = self.ctx.seed * 1_000_003 + 7919 * (epoch + 1)
        dev = self._afg.mu.device
        self._afg.start_epoch(self.beta, torch.Generator().manual_seed(seed),
                              torch.Generator(device=dev).manual_seed(seed + 1))

    def generate(self, epoch: int) -> tuple[torch.Tensor, torch.Tensor]:
        """All of one epoch's generated (transformed) features and labels, in plan order (for
        inspection; training draws them step by step)."""
        self.start_generation(epoch)
        assert self._afg is not None
        return self._afg.take(self._afg.plan_size)

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        if self.stage == REPRESENTATION:
            super().on_epoch_start(epoch, progress)
            return
        self.kd_alpha = float(self.schedule(progress)) if self.params.kd else 0.0
        if self.params.afg and self._afg is not None:
            self.start_generation(epoch)
            steps = max(math.ceil(sum(self.ctx.class_counts) / self._batch), 1)
            self._chunk = math.ceil(self._afg.plan_size / steps)

    def on_epoch_end(self, epoch: int, stats: TrainStats | None) -> None:
        if self.stage == REPRESENTATION:
            super().on_epoch_end(epoch, stats)
            return
        if not (self.params.afg and self.params.adaptive_beta) or stats is None:
            return
        acc = stats.per_class_acc.to(self.beta.device, self.beta.dtype)
        with torch.no_grad():
            self.beta.copy_(adapt_beta(self.beta, acc, self.prev_acc, ~self.is_head, self.params.beta_step))
            self.prev_acc.copy_(acc)

    def schedule_values(self, progress: float) -> dict[str, float]:
        if self.stage == REPRESENTATION:
            return {"gra_strength": float(getattr(self.stage1_loss_fn, "alpha", 0.0))}
        return {"gra_strength": self.kd_alpha, "kd_on": float(self.params.kd)}

    # ---------------------------------------------------------------- steps
    def next_generated(self) -> tuple[torch.Tensor, torch.Tensor] | None:
        """This step's generated features. Under DDP every rank draws the step's whole share (the
        same generator) and keeps every world_size-th feature from its rank on, as it keeps its part
        of the real batch: together the ranks train on exactly the single-process features."""
        if self._afg is None or self._chunk == 0:
            return None
        x, y = self._afg.take(self._chunk)
        r, w = self.ctx.rank, self.ctx.world_size
        return (x, y) if w == 1 else (x[r::w], y[r::w])

    def training_step(self, batch: dict[str, dict[str, torch.Tensor]], progress: float) -> dict[str, Any]:
        if self.stage == REPRESENTATION:
            return self.stage1_step(batch, self.stage1_loss_fn)
        x, y = batch["main"]["weak"], batch["main"]["y"]
        f = self.frozen_features(x)
        xs, ys = tukey(f, self.params.tukey_lambda), y
        gen = self.next_generated() if self.params.afg else None
        if gen is not None:
            xs, ys = torch.cat([xs, gen[0].to(xs.dtype)]), torch.cat([y, gen[1]])
        logits = self.head2(xs)
        ce = F.cross_entropy(logits, ys)
        out: dict[str, Any] = {"loss": ce, "logits": logits[: len(y)].detach()}  # real samples: adaptive β
        head = self.is_head[y]
        if self.kd_alpha > 0 and bool(head.any()):
            t = self.params.kd_temperature
            with torch.no_grad():
                teacher = F.softmax(self.net.classifier(f[head]) / t, dim=1)
            student = F.log_softmax(logits[: len(y)][head] / t, dim=1)
            kd = F.kl_div(student, teacher, reduction="batchmean") * t * t
            out.update(loss=ce + self.kd_alpha * kd, kd=kd.detach())  # tensors: no host sync per step
        return out

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        if self.stage != CLASSIFIER:
            return self.net(x)
        return self.head2(tukey(self.net.features(x), self.params.tukey_lambda))

    def classifier_weight_norms(self) -> torch.Tensor | None:
        if self.stage != CLASSIFIER:
            return super().classifier_weight_norms()
        return self.head2.weight.detach().norm(dim=1).cpu()
