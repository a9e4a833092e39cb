"""Scaled recipes keep each method's phases (``Plan.phases``, ``compressed_phases``): a phase counts
the epochs whose learning rate is at least RATE_KEPT of its first epoch's, and a recipe that leaves
fewer than 3 (a per-epoch feedback weight's 3 updates) gets one note per method."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from ltsearch.cli import phase_notes
from ltsearch.methods import compressed_phases, method_plan
from ltsearch.methods.base import MIN_PHASE_EPOCHS, RATE_KEPT, Phase, phase_epochs
from ltsearch.smoke import smoke_spec
from ltsearch.spec import ExperimentSpec, OptimSpec, load_spec, resolve_experiment

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "search_spaces/fashion_lt_benchmark.yaml"
LDAM = {"lr": 0.1, "epochs": 200, "warmup": 5, "lr_schedule": "step", "milestones": [160, 180], "lr_decay": 0.01}


def exp(method: dict, **optim) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"data": {"dataset": "digits"}, "method": method, "optim": {**LDAM, **optim}})


def benchmark_methods(spec):
    grid = spec.search.space["method"]
    return [resolve_experiment(spec.experiment, {"method": m, "seed": 0}) for m in grid.grid]


def test_phase_epochs_count_the_epochs_at_the_phases_rate_by_hand():
    assert (RATE_KEPT, MIN_PHASE_EPOCHS) == (0.1, 3)
    plan = method_plan(exp({"name": "sdnhl", "hl_epoch": 160, "drw_epoch": 160}))
    (hl,) = plan.phases  # DRW hands over to the hard-aware phase at the same epoch: no DRW-only phase
    assert (hl.name, hl.start) == ("hard-aware phase", 160)
    assert phase_epochs(hl, plan.stages[0]) == 20  # 160-179 at 1e-3; 180-199 at 1e-5 are < 0.1 · 1e-3
    # a cosine classifier stage of 10 epochs from 0.01: lr_e = 0.005 (1 + cos(π e / 10)) ≥ 0.001 for e ≤ 7
    stage2 = method_plan(exp({"name": "bwlm"})).stages[1]
    by_hand = sum(0.005 * (1 + math.cos(math.pi * e / 10)) >= 0.001 for e in range(10))
    assert by_hand == 8 and phase_epochs(Phase("classifier stage", "classifier", 0), stage2) == by_hand


def test_the_paper_recipes_compress_nothing():
    for method in ({"name": "sdnhl", "hl_epoch": 160, "drw_epoch": 160}, {"name": "single", "loss": "ldam", "drw_epoch": 160},
                   {"name": "crt"}, {"name": "lws"}, {"name": "glag"}, {"name": "bwlm"}, {"name": "tau_norm"}):
        assert compressed_phases(method["name"], method_plan(exp(method))) is None, method


def test_the_old_16_epoch_benchmark_recipe_compressed_sdnhl_drw_and_the_classifier_stages():
    old = {"epochs": 16, "warmup": 1, "milestones": [13, 14]}
    line = compressed_phases("sdnhl", method_plan(exp({"name": "sdnhl", "hl_epoch": 13, "drw_epoch": 13}, **old)))
    assert line == ("sdnhl: the recipe compressed a phase: the hard-aware phase (hl_epoch) has 1 of its 3 epochs at its "
                    "learning rate (lr 0.001 → 1e-05), fewer than the 3 it needs")
    assert "deferred re-weighting (drw_epoch) has 1 of its 3" in compressed_phases(
        "single", method_plan(exp({"name": "single", "loss": "ldam", "drw_epoch": 13}, **old)))
    assert "classifier stage (stage2_epochs) has 1 of its 1" in compressed_phases(
        "crt", method_plan(exp({"name": "crt", "stage2_epochs": 1}, **old)))
    assert compressed_phases("tau_norm", method_plan(exp({"name": "tau_norm"}, **old))) is None  # post-hoc


def test_the_benchmark_keeps_three_hard_aware_updates_and_every_phase():
    spec = load_spec(BENCH)
    exps = benchmark_methods(spec)
    assert phase_notes(exps) == []
    sdnhl = next(e for e in exps if e.method.name == "sdnhl")
    plan = method_plan(sdnhl)
    (hl,) = plan.phases
    assert phase_epochs(hl, plan.stages[0]) >= 3  # w̃ from the epochs hl_epoch - 1, hl_epoch, hl_epoch + 1


def test_smoke_says_per_method_what_it_compressed():
    """--smoke has 2 epochs a stage: SDNHL's hard-aware phase (160 of 200 → 1 of 2) and BWLM's
    classifier stage (10 → 2 epochs of cosine) cannot keep 3 epochs, and each gets its one line."""
    exps = [smoke_spec(load_spec(REPO / f"search_spaces/{name}.yaml")).experiment
            for name in ("hl_momentum", "bwlm_components", "hl_momentum")]
    notes = phase_notes(exps)
    assert len(notes) == 2  # one per distinct method section, not one per trial
    assert notes[0] == ("note: sdnhl: the recipe compressed a phase: the hard-aware phase (hl_epoch) has 1 of its 1 "
                        "epochs at its learning rate (lr 1e-05), fewer than the 3 it needs")  # smoke: milestones [1, 1]
    assert notes[1].startswith("note: bwlm: the recipe compressed a phase: the classifier stage (stage2_epochs) has ")


@pytest.mark.parametrize("method", [{"name": "sdnhl", "hl_epoch": None, "drw_epoch": 8}])
def test_sdnhl_without_hard_aware_phase_keeps_its_drw(method):
    plan = method_plan(exp(method, epochs=11, warmup=1, milestones=[8]))
    (drw,) = plan.phases
    assert (drw.name, drw.start, phase_epochs(drw, plan.stages[0])) == ("deferred re-weighting", 8, 3)
