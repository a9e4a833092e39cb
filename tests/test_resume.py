"""Stage transitions and resume, for every registered method.

- A trial stopped mid stage 1 or mid stage 2 and resumed from its checkpoint (saved and loaded as
  ``torch.save`` / ``torch.load(weights_only=True)`` would) gives the same epoch records, final
  metrics and per-class accuracies as an uninterrupted run (CPU, deterministic).
- A 0-epoch stage 2 leaves the model as stage 1 left it: the reported val/test accuracy is the
  stage-1 model's (as measured at the end of stage 1), not a re-initialised classifier's.
"""

from __future__ import annotations

import copy
import io
import math

import pytest
import torch

from conftest import tiny_experiment
from ltsearch.registry import METHODS
from ltsearch.spec import ExperimentSpec
from ltsearch.train.loop import run_trial

STAGE1, STAGE2 = 3, 3
METHOD_CASES = {
    "single_drw": {"name": "single", "loss": "ldam", "drw_epoch": 2},
    "single_mixup_drs": {"name": "single", "mixup_alpha": 0.2, "drs_epoch": 2},
    "single_hard_aware": {"name": "single", "loss": "hard_aware", "reduction": "weighted"},
    "bbn": {"name": "bbn"},
    "bbn_beta": {"name": "bbn", "adaptor": "beta"},
    "sdnhl": {"name": "sdnhl", "hl_epoch": 2, "drw_epoch": 2},
    "hrdc": {"name": "hrdc"},
    "crt": {"name": "crt", "stage2_epochs": STAGE2},
    "lws": {"name": "lws", "stage2_epochs": STAGE2},
    "tau_norm": {"name": "tau_norm", "tau": 0.7},
    "glag": {"name": "glag", "stage2_epochs": STAGE2, "head_threshold": 30},
    "bwlm": {"name": "bwlm", "stage2_epochs": STAGE2},
}


def exp_for(method: dict, **extra) -> ExperimentSpec:
    return ExperimentSpec.model_validate(tiny_experiment(**{"method": method, "optim.epochs": STAGE1,
                                                            "eval.test_every": 1, **extra}))


def comparable(out) -> dict:
    """Everything a trial reports except wall-clock seconds."""
    summary = {k: v for k, v in out.summary.items() if k not in ("train_seconds", "resumed_from")}
    records = [(r.stage, r.epoch, r.train_loss, r.lr, r.val, r.test, r.schedules) for r in out.epochs]
    return {"summary": summary, "records": records, "per_class": out.per_class}


def checkpoint_after(exp: ExperimentSpec, epoch: int) -> dict:
    """The loop state after global epoch ``epoch`` (0-based), through a torch.save round trip."""
    saved = {}

    def keep(rec, state):
        if rec.epoch == epoch:
            buf = io.BytesIO()
            torch.save(state(), buf)
            saved.update(torch.load(io.BytesIO(buf.getvalue()), weights_only=True))

    run_trial(exp, reporter=keep, stage_cache=False)
    assert saved, f"no checkpoint after epoch {epoch}"
    return saved


def test_every_registered_method_has_a_resume_case():
    covered = {case["name"] for case in METHOD_CASES.values()}
    ours = {n for n in METHODS if METHODS.get(n).__module__.startswith("ltsearch.")}  # not test plugins
    assert covered == ours, f"add resume cases for {sorted(ours - covered)}"


@pytest.mark.parametrize("case", sorted(METHOD_CASES))
def test_resume_equals_uninterrupted(case):
    exp = exp_for(METHOD_CASES[case])
    full = comparable(run_trial(exp, stage_cache=False))
    total = len(full["records"])
    stops = [1] + ([STAGE1] if total > STAGE1 else [])  # mid stage 1, and one epoch into stage 2
    for stop in stops:
        resumed = run_trial(exp, resume=checkpoint_after(exp, stop), stage_cache=False)
        assert comparable(resumed) == full, f"{case}: resumed after epoch {stop + 1} differs"


def test_resume_with_the_stage_cache_matches_too(tmp_path):
    """Stage-1 reuse and resume together: a cRT trial resumed mid stage 2 (its stage 1 trained and
    cached by the first run) equals the uninterrupted, cached run."""
    exp = exp_for(METHOD_CASES["crt"])
    full = comparable(run_trial(exp, stage_cache=tmp_path))
    saved = {}

    def keep(rec, state):
        if rec.epoch == STAGE1:
            saved.update(copy.deepcopy(state()))

    assert comparable(run_trial(exp, reporter=keep, stage_cache=tmp_path)) == full  # a cache hit
    assert comparable(run_trial(exp, resume=saved, stage_cache=tmp_path)) == full


@pytest.mark.parametrize("method", [
    {"name": "glag", "head_threshold": 30},
    {"name": "glag", "graloss": False, "afg": False, "kd": False},
    {"name": "crt"},
    {"name": "lws"},
    {"name": "bwlm"},
    {"name": "bwlm", "stage1_data": "all"},
])
def test_zero_epoch_stage_two_keeps_the_stage_one_model(method):
    out = run_trial(exp_for({**method, "stage2_epochs": 0}), stage_cache=False)
    last = out.epochs[-1]
    assert len(out.epochs) == STAGE1 and last.stage == "representation"
    assert out.summary["val_acc"] == last.val["val_acc"] and out.summary["test_acc"] == last.test["test_acc"]
    assert out.summary["tested_epoch"] == STAGE1
    # and stage 1 is the same as that of a trial that does train stage 2
    trained = run_trial(exp_for({**method, "stage2_epochs": 1}), stage_cache=False)
    assert trained.epochs[STAGE1 - 1].val == last.val


def test_zero_epoch_stage_two_is_not_chance_on_real_digits():
    """The issue's case: GLAG, digits-LT, 6 stage-1 epochs, ``stage2_epochs: 0``: the reported
    accuracy is the stage-1 network's, far above chance (10 %)."""
    exp = ExperimentSpec.model_validate({
        "data": {"dataset": "digits", "imbalance": 10}, "model": {"arch": "small_cnn", "options": {"width": 8}},
        "method": {"name": "glag", "stage2_epochs": 0},
        "optim": {"lr": 0.05, "epochs": 6, "batch_size": 64, "warmup": 0, "milestones": []}, "device": "cpu"})
    out = run_trial(exp, stage_cache=False)
    assert out.summary["val_acc"] == out.epochs[-1].val["val_acc"] > 30.0
    assert not math.isclose(out.summary["test_acc"], 10.0)


def test_tau_norm_posthoc_stage_still_runs():
    """τ-norm's stage 2 has no epochs by design and still changes the predictions (τ = 1)."""
    out = run_trial(exp_for({"name": "tau_norm", "tau": 1.0}), stage_cache=False)
    plain = run_trial(exp_for({"name": "tau_norm", "tau": 0.0, "keep_bias": True}), stage_cache=False)
    assert out.epochs[-1].val == plain.epochs[-1].val  # the same stage 1
    assert plain.summary["val_acc"] == plain.epochs[-1].val["val_acc"]  # τ = 0 with its bias: unchanged
    norms = [r["weight_norm"] for r in out.per_class]
    assert norms == pytest.approx([1.0] * len(norms))  # τ = 1: unit-norm class weights are what is tested
