"""``stage1_loss`` for the two-stage methods (cRT, LWS, τ-norm, GLAG, BWLM): any registered loss in
stage 1, given stage-1 progress, part of the stage-1 cache identity; GLAG's ``graloss`` maps onto it.
Expected losses are written out by hand (GLAG Eq. 3–4, Menon et al.'s logit adjustment)."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import count_stage1_steps, tiny_experiment
from ltsearch.errors import UserError
from ltsearch.methods import MethodContext, make_method
from ltsearch.models import build_model
from ltsearch.spec import ExperimentSpec, OptimSpec
from ltsearch.train.loop import run_trial

COUNTS = [8, 4, 2, 1]


def make(name: str, **params):
    torch.manual_seed(0)
    ctx = MethodContext(class_counts=COUNTS, in_channels=1, optim=OptimSpec(epochs=2), seed=0,
                        build_model=lambda head: build_model("mlp", 4, 1, head, hidden=8, size=4))
    return make_method(name, params, ctx)


def ce_by_hand(z: list[float], y: int) -> float:
    return -z[y] + math.log(sum(math.exp(v) for v in z))


def stage1_loss_value(m, z: list[float], y: int) -> float:
    m.net.forward = lambda x: torch.tensor([z])  # the stage-1 step sees these logits
    return float(m.training_step({"main": {"weak": torch.zeros(1, 1, 4, 4), "y": torch.tensor([y])}}, 0.5)["loss"])


def test_default_stage1_is_cross_entropy_with_the_old_identity():
    for name in ("crt", "lws", "tau_norm"):
        m = make(name)
        assert m.stage1_identity() == {"loss": "ce", "sampler": "instance", "head": "auto"}  # cache keys unchanged
        assert stage1_loss_value(m, [1.0, 0.0, -1.0, 0.5], 2) == pytest.approx(ce_by_hand([1.0, 0.0, -1.0, 0.5], 2))


@pytest.mark.parametrize("name", ["crt", "lws", "tau_norm", "bwlm"])
def test_graloss_stage1_gets_stage1_progress(name):
    m = make(name, stage1_loss="gra", stage1_loss_params={"s": 1.0, "c": 2.0})
    m.on_epoch_start(1, 0.5)  # epoch 1 of 2 in stage 1: α = s·(c^p − 1) = √2 − 1
    alpha = math.sqrt(2) - 1
    z, y = [1.0, 0.0, -1.0, 0.5], 3
    prior = [n / sum(COUNTS) for n in COUNTS]
    adjusted = [v + alpha * math.log(q) for v, q in zip(z, prior)]
    assert stage1_loss_value(m, z, y) == pytest.approx(ce_by_hand(adjusted, y), rel=1e-6)


def test_logit_adjusted_stage1_and_its_identity():
    m = make("crt", stage1_loss="logit_adjust", stage1_loss_params={"tau": 0.5})
    z, y = [0.3, -0.2, 0.1, 0.0], 1
    prior = [n / sum(COUNTS) for n in COUNTS]
    assert stage1_loss_value(m, z, y) == pytest.approx(ce_by_hand([v + 0.5 * math.log(q) for v, q in zip(z, prior)], y))
    assert m.stage1_identity()["loss_params"] == {"tau": 0.5}
    assert make("crt", stage1_loss="logit_adjust").stage1_identity()["loss_params"] == {"tau": 1.0}  # default filled


def test_glag_graloss_maps_onto_stage1_loss():
    default = make("glag")
    assert (default.params.stage1_loss, default.params.graloss) == ("gra", True)
    # GLAG's stage 1 and cRT with a GraLoss stage 1 of the same parameters are one cache entry
    assert make("crt", stage1_loss="gra").stage1_identity() == default.stage1_identity()
    assert make("crt", stage1_loss="gra", stage1_loss_params={"c": 4.0}).stage1_identity() == \
        make("glag", gra_c=4.0).stage1_identity()
    ce = make("glag", graloss=False)
    assert (ce.params.stage1_loss, ce.stage1_identity()) == ("ce", make("crt").stage1_identity())
    la = make("glag", stage1_loss="logit_adjust", stage1_loss_params={"tau": 1.0})
    assert la.params.graloss is False and la.stage1_identity()["loss"] == "logit_adjust"
    # the validated parameters re-validate to the same thing (Parquet's config_json round trip)
    again = make("glag", **la.params.model_dump())
    assert again.params == la.params
    with pytest.raises(UserError, match="graloss"):
        make("glag", graloss=True, stage1_loss="ce")
    with pytest.raises(UserError, match="gra_s"):
        make("glag", stage1_loss="gra", stage1_loss_params={"s": 2.0})


def test_stage1_loss_bad_input_names_the_key():
    with pytest.raises(UserError, match="stage1_loss"):
        make("crt", stage1_loss="graloss")
    with pytest.raises(UserError, match=r"stage1_loss_params\.tua"):
        make("lws", stage1_loss="logit_adjust", stage1_loss_params={"tua": 1.0})


def test_crt_with_graloss_stage1_reuses_glags_stage1(tmp_path, monkeypatch):
    calls = count_stage1_steps(monkeypatch)
    glag = run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {
        "name": "glag", "afg": False, "kd": False, "stage2_epochs": 1}})), stage_cache=tmp_path)
    n = calls[0]
    assert n > 0 and glag.epochs[1].schedules["gra_strength"] == pytest.approx(math.sqrt(2) - 1)
    crt = run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {
        "name": "crt", "stage1_loss": "gra", "stage2_epochs": 1}})), stage_cache=tmp_path)
    assert calls[0] == n  # no stage-1 step: the GraLoss stage 1 was reused
    assert [r.val for r in crt.epochs[:2]] == [r.val for r in glag.epochs[:2]]
    run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {
        "name": "lws", "stage1_loss": "logit_adjust", "stage2_epochs": 1}})), stage_cache=tmp_path)
    assert calls[0] > n and len(list(tmp_path.glob("*.pt"))) == 2


def test_an_accuracy_driven_stage1_loss_gets_training_accuracy():
    """A stage-1 loss that re-weights by per-class accuracy (hard_aware) is updated from each
    stage-1 epoch's training predictions: w̃ = m·w̃ + 1/acc, checked by hand."""
    from types import SimpleNamespace

    m = make("crt", stage1_loss="hard_aware", stage1_loss_params={"momentum": 0.5})  # w̃ starts at 1
    m.on_epoch_end(0, SimpleNamespace(per_class_acc=torch.tensor([1.0, 0.5, 0.25, 0.1])))
    assert m.stage1_loss_fn.hard_weights.tolist() == pytest.approx([0.5 + 1.0, 0.5 + 2.0, 0.5 + 4.0, 0.5 + 10.0])
