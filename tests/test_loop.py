import copy
import math

import pytest

from conftest import tiny_experiment
from ltsearch.spec import ExperimentSpec, OptimSpec
from ltsearch.train.loop import NonFiniteLoss, lr_at, run_trial


def test_lr_schedule_by_hand():
    o = OptimSpec(lr=0.1, epochs=200, warmup=5, milestones=[160, 180], lr_decay=0.01)
    assert lr_at(o, 0) == pytest.approx(0.02) and lr_at(o, 4) == pytest.approx(0.1)
    assert lr_at(o, 159) == pytest.approx(0.1) and lr_at(o, 160) == pytest.approx(1e-3)
    assert lr_at(o, 199) == pytest.approx(1e-5)
    c = OptimSpec(lr=0.1, epochs=10, warmup=0, lr_schedule="cosine")
    assert lr_at(c, 5) == pytest.approx(0.05) and lr_at(c, 0) == pytest.approx(0.1)


def test_trial_output_and_determinism():
    exp = ExperimentSpec.model_validate(tiny_experiment())
    a, b = run_trial(exp), run_trial(exp)
    assert a.summary["status"] == "ok" and len(a.epochs) == 2
    assert a.summary["val_acc"] == b.summary["val_acc"] and a.epochs[-1].train_loss == b.epochs[-1].train_loss
    assert {"test_many", "test_medium", "test_few", "subset_hash", "checkpoint_rule"} <= set(a.summary)
    assert len(a.per_class) == 10 and {r["split"] for r in a.per_class} <= {"many", "medium", "few"}
    # per-class test accuracies average to the many/medium/few numbers
    many = [r["test_acc"] for r in a.per_class if r["split"] == "many"]
    assert a.summary["test_many"] == pytest.approx(sum(many) / len(many))


def test_resume_equals_uninterrupted():
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"optim.epochs": 3}))
    full = run_trial(exp)
    saved = {}

    def keep(rec, state):
        if rec.epoch == 0:
            saved.update(copy.deepcopy(state()))  # a checkpoint is a snapshot

    run_trial(exp, reporter=keep)
    resumed = run_trial(exp, resume=saved)
    assert [r.train_loss for r in resumed.epochs] == pytest.approx([r.train_loss for r in full.epochs])
    assert resumed.summary["test_acc"] == full.summary["test_acc"]


def test_best_val_rule_records_tested_epoch():
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"eval.checkpoint_rule": "best_val", "optim.epochs": 3}))
    out = run_trial(exp)
    best = max(range(3), key=lambda i: out.epochs[i].val["val_acc"])
    assert out.summary["checkpoint_rule"] == "best_val" and out.summary["tested_epoch"] == best + 1


def test_nan_loss_raises_readable_error():
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"optim.lr": 1e30}))
    with pytest.raises(NonFiniteLoss, match="lower optim.lr"):
        run_trial(exp)


def test_empty_split_is_nan_not_zero():
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"data.splits": {"many": 1000, "few": 0}}))
    out = run_trial(exp)
    assert math.isnan(out.summary["test_many"]) and math.isnan(out.summary["test_few"])
    assert not math.isnan(out.summary["test_medium"])
