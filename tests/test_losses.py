"""Losses against their formulas written out by hand, plus DRW / DRS / post-hoc τ of ``single``.

Every reference value is computed here with plain ``math`` on Python floats, never by calling the
code under test a second time.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn

from ltsearch.errors import UserError
from ltsearch.losses import build_loss, class_balanced_weights
from ltsearch.methods import MethodContext, make_method
from ltsearch.registry import LOSSES
from ltsearch.spec import OptimSpec

COUNTS = [100, 10, 1]
Z = [[2.0, 0.5, -1.0], [0.3, -0.2, 1.5], [-0.7, 1.1, 0.4]]
Y = [0, 1, 2]

# (name, params) for every loss this module covers: the existing ones and those of issue 4
CASES = [
    ("ce", {}),
    ("focal", {"gamma": 2.0}),
    ("focal", {"gamma": 2.0, "form": "sigmoid"}),
    ("cb_ce", {"beta": 0.9}),
    ("cb_focal", {"beta": 0.9, "gamma": 2.0}),
    ("cb_focal", {"beta": 0.9, "gamma": 2.0, "form": "softmax"}),
    ("ldam", {"max_m": 0.5, "s": 30.0}),
    ("balanced_softmax", {}),
    ("logit_adjust", {"tau": 0.5}),
    ("cdt", {"gamma": 0.5}),
    ("label_smooth", {"eps": 0.2}),
    ("label_aware_smooth", {"eps_head": 0.4, "eps_tail": 0.1, "form": "concave"}),
    ("label_aware_smooth", {"eps_head": 0.4, "eps_tail": 0.1, "form": "linear"}),
    ("label_aware_smooth", {"eps_head": 0.4, "eps_tail": 0.1, "form": "convex"}),
    ("cs_ce", {"power": 1.0}),
    ("seql", {"lam": 0.05, "gamma": 1.0}),
]
OWN = ["ce", "focal", "cb_ce", "cb_focal", "ldam", "balanced_softmax", "logit_adjust", "cdt", "label_smooth",
       "label_aware_smooth", "cs_ce", "seql"]


# ---------------------------------------------------------------- hand-written references
def log_softmax(row):
    m = max(row)
    lse = m + math.log(sum(math.exp(v - m) for v in row))
    return [v - lse for v in row]


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def ce_rows(rows, ys):
    return [-log_softmax(r)[y] for r, y in zip(rows, ys)]


def weighted(per_sample, ys, w):
    return sum(w[y] * l for y, l in zip(ys, per_sample)) / sum(w[y] for y in ys)


def mean(xs):
    return sum(xs) / len(xs)


def cb_weights(counts, beta):
    w = [(1 - beta) / (1 - beta**n) for n in counts]
    return [v * len(counts) / sum(w) for v in w]


def focal_softmax(rows, ys, gamma):
    out = []
    for r, y in zip(rows, ys):
        lp = log_softmax(r)[y]
        out.append(-((1 - math.exp(lp)) ** gamma) * lp)
    return out


def focal_sigmoid(rows, ys, gamma):
    out = []
    for r, y in zip(rows, ys):
        total = 0.0
        for k, z in enumerate(r):
            p_correct = sigmoid(z) if k == y else 1 - sigmoid(z)
            total += (1 - p_correct) ** gamma * -math.log(p_correct)
        out.append(total)
    return out


def smoothed(rows, ys, eps_of_class):
    out = []
    for r, y in zip(rows, ys):
        lp = log_softmax(r)
        e = eps_of_class[y]
        out.append((1 - e) * -lp[y] + e * mean([-v for v in lp]))
    return out


def reference(name, p):
    n_max, total = max(COUNTS), sum(COUNTS)
    if name == "ce":
        return mean(ce_rows(Z, Y))
    if name == "focal":
        f = focal_softmax if p.get("form", "softmax") == "softmax" else focal_sigmoid
        return mean(f(Z, Y, p["gamma"]))
    if name == "cb_ce":
        return weighted(ce_rows(Z, Y), Y, cb_weights(COUNTS, p["beta"]))
    if name == "cb_focal":
        f = focal_softmax if p.get("form") == "softmax" else focal_sigmoid
        return weighted(f(Z, Y, p["gamma"]), Y, cb_weights(COUNTS, p["beta"]))
    if name == "ldam":
        m = [n**-0.25 for n in COUNTS]
        m = [v * p["max_m"] / max(m) for v in m]
        rows = [[p["s"] * (z - (m[y] if k == y else 0.0)) for k, z in enumerate(r)] for r, y in zip(Z, Y)]
        return mean(ce_rows(rows, Y))
    if name == "balanced_softmax":
        return mean(ce_rows([[z + math.log(n) for z, n in zip(r, COUNTS)] for r in Z], Y))
    if name == "logit_adjust":
        return mean(ce_rows([[z + p["tau"] * math.log(n / total) for z, n in zip(r, COUNTS)] for r in Z], Y))
    if name == "cdt":
        return mean(ce_rows([[z / (n_max / n) ** p["gamma"] for z, n in zip(r, COUNTS)] for r in Z], Y))
    if name == "label_smooth":
        return mean(smoothed(Z, Y, [p["eps"]] * 3))
    if name == "label_aware_smooth":
        h, t, n_min = p["eps_head"], p["eps_tail"], min(COUNTS)
        r = [(n - n_min) / (n_max - n_min) for n in COUNTS]
        eps = {
            "concave": [t + (h - t) * math.sin(math.pi * v / 2) for v in r],
            "linear": [t + (h - t) * v for v in r],
            "convex": [h + (h - t) * math.sin(1.5 * math.pi + math.pi * v / 2) for v in r],
        }[p["form"]]
        return mean(smoothed(Z, Y, eps))
    if name == "cs_ce":
        w = [(n_max / n) ** p["power"] for n in COUNTS]
        return weighted(ce_rows(Z, Y), Y, [v / mean(w) for v in w])
    if name == "seql":  # γ = 1: every negative tail class (frequency < λ) leaves the denominator
        out = []
        for r, y in zip(Z, Y):
            keep = [k for k in range(3) if k == y or COUNTS[k] / total >= p["lam"]]
            out.append(-(r[y] - math.log(sum(math.exp(r[k]) for k in keep))))
        return mean(out)
    raise KeyError(name)


def logits(requires_grad=False):
    return torch.tensor(Z, dtype=torch.float64, requires_grad=requires_grad)


TARGET = torch.tensor(Y)


# ---------------------------------------------------------------- formulas
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{'-'.join(map(str, p.values()))}" for n, p in CASES])
def test_loss_matches_formula(name, params):
    loss = build_loss(name, COUNTS, **params)
    assert loss(logits(), TARGET).item() == pytest.approx(reference(name, params), rel=1e-5)


def test_every_own_loss_is_registered_and_covered():
    covered = {n for n, _ in CASES}
    assert set(OWN) <= set(LOSSES) and set(OWN) == covered


def test_defaults_build_and_hand_checks():
    # cb_ce with β = 0 is CE; logit_adjust with τ = 1 equals balanced softmax; cdt/cs_ce γ = 0 is CE
    ce = reference("ce", {})
    for name, p in [("cb_ce", {"beta": 0.0}), ("logit_adjust", {"tau": 0.0}), ("cdt", {"gamma": 0.0}),
                    ("cs_ce", {"power": 0.0}), ("label_smooth", {"eps": 0.0}), ("seql", {"gamma": 0.0}),
                    ("focal", {"gamma": 0.0})]:
        assert build_loss(name, COUNTS, **p)(logits(), TARGET).item() == pytest.approx(ce, rel=1e-6)
    la = build_loss("logit_adjust", COUNTS)(logits(), TARGET).item()
    assert la == pytest.approx(reference("balanced_softmax", {}), rel=1e-6)
    for name in OWN:
        assert LOSSES.get(name).__doc__, f"{name} needs a docstring with its formula and paper"
        build_loss(name, COUNTS)  # defaults are valid


def test_seql_random_suppression_between_extremes():
    torch.manual_seed(0)
    loss = build_loss("seql", COUNTS, lam=0.05, gamma=0.5)
    z = torch.tensor(Z * 200, dtype=torch.float64)
    y = torch.tensor(Y * 200)
    value = loss(z, y).item()
    lo, hi = reference("seql", {"lam": 0.05, "gamma": 1.0}), reference("ce", {})
    assert lo < value < hi
    assert value == pytest.approx((lo + hi) / 2, rel=0.02)  # β ~ Bernoulli(0.5) on average


def test_drw_weight_gives_weighted_mean():
    w = [0.5, 2.0, 4.0]
    for name, p in [("ce", {}), ("focal", {"gamma": 2.0}), ("ldam", {}), ("cdt", {"gamma": 0.5})]:
        loss = build_loss(name, COUNTS, weight=w, **p)
        unweighted = build_loss(name, COUNTS, **p)
        per_sample = [unweighted(logits()[i : i + 1], TARGET[i : i + 1]).item() for i in range(3)]
        assert loss(logits(), TARGET).item() == pytest.approx(weighted(per_sample, Y, w), rel=1e-5)
    # a loss with its own class weights multiplies them by the DRW weight
    cb = build_loss("cb_ce", COUNTS, beta=0.9, weight=w)
    both = [a * b for a, b in zip(cb_weights(COUNTS, 0.9), w)]
    assert cb(logits(), TARGET).item() == pytest.approx(weighted(ce_rows(Z, Y), Y, both), rel=1e-5)


# ---------------------------------------------------------------- gradients and errors
@pytest.mark.parametrize("name,params", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_gradients_flow(name, params):
    z = torch.tensor(Z, dtype=torch.float32, requires_grad=True)
    build_loss(name, COUNTS, **params)(z, TARGET).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


@pytest.mark.parametrize("name", OWN)
def test_zero_count_class_raises(name):
    with pytest.raises(ValueError, match="no training samples"):
        LOSSES.get(name)([5, 0, 3])
    with pytest.raises(UserError, match=r"classes \[1\] have no training samples"):
        build_loss(name, [5, 0, 3])


@pytest.mark.parametrize("name", OWN)
def test_unknown_parameter_raises_user_error(name):
    with pytest.raises(UserError, match="unknown parameter"):
        build_loss(name, COUNTS, not_a_param=1)


@pytest.mark.parametrize("name,params", [
    ("focal", {"gamma": -1.0}), ("focal", {"form": "tanh"}), ("cb_ce", {"beta": 1.0}), ("cb_focal", {"beta": -0.1}),
    ("cb_focal", {"form": "hinge"}), ("logit_adjust", {"tau": -1.0}), ("cdt", {"gamma": -0.1}),
    ("label_smooth", {"eps": 1.5}), ("label_aware_smooth", {"eps_tail": -0.1}),
    ("label_aware_smooth", {"form": "wavy"}), ("cs_ce", {"power": -1.0}), ("seql", {"gamma": 2.0}),
    ("seql", {"lam": -0.1}), ("ldam", {"s": 0.0}),
])
def test_invalid_values_raise_user_error(name, params):
    key = next(iter(params))
    with pytest.raises(UserError, match=key):
        build_loss(name, COUNTS, **params)


def test_class_dependent_constants_are_buffers():
    loss = build_loss("cdt", COUNTS, gamma=0.5)
    assert "temperatures" in dict(loss.named_buffers())
    for name, buf in [("cb_ce", "cb_weights"), ("cs_ce", "costs"), ("label_aware_smooth", "eps"), ("seql", "tail")]:
        assert buf in dict(build_loss(name, COUNTS).named_buffers())


def test_class_balanced_weights_by_hand():
    beta = 0.99
    raw = [(1 - beta) / (1 - beta**n) for n in COUNTS]  # 0.01/(1-0.99^n)
    expected = [3 * v / sum(raw) for v in raw]
    got = class_balanced_weights(COUNTS, beta)
    assert got.tolist() == pytest.approx(expected, rel=1e-6)
    assert got.sum().item() == pytest.approx(3.0)
    assert class_balanced_weights(COUNTS, 0.0).tolist() == pytest.approx([1.0, 1.0, 1.0])
    with pytest.raises(ValueError):
        class_balanced_weights(COUNTS, 1.0)


# ---------------------------------------------------------------- the single method
class Tiny(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(0)
        self.classifier = nn.Linear(4, 3)

    def forward(self, x):
        return self.classifier(x.flatten(1))


def single(**params):
    ctx = MethodContext(class_counts=COUNTS, in_channels=1, optim=OptimSpec(epochs=10), build_model=lambda head: Tiny())
    return make_method("single", params, ctx)


def test_drw_switches_at_drw_epoch():
    m = single(loss="ce", drw_epoch=3, drw_beta=0.9999)
    m.on_epoch_start(2, 0.2)
    assert m.loss_fn.weight is None and m.schedule_values(0.2)["drw_on"] == 0.0
    m.on_epoch_start(3, 0.3)
    raw = [(1 - 0.9999) / (1 - 0.9999**n) for n in COUNTS]
    assert m.loss_fn.weight.tolist() == pytest.approx([3 * v / sum(raw) for v in raw], rel=1e-5)
    assert m.schedule_values(0.3)["drw_on"] == 1.0


def test_no_drw_keeps_the_loss_weight_and_checkpoints_cross_the_switch():
    m = single(loss="ce", weight=[1.0, 2.0, 3.0])
    m.on_epoch_start(5, 0.5)
    assert m.loss_fn.weight.tolist() == [1.0, 2.0, 3.0]
    before = single(loss="ldam", drw_epoch=1)
    before.on_epoch_start(0, 0.0)
    state = before.state_dict()
    after = single(loss="ldam", drw_epoch=1)
    after.on_epoch_start(1, 0.1)
    after.load_state_dict(state)  # strict: the DRW weight is not part of the checkpoint
    before.load_state_dict(after.state_dict())


def test_drs_switches_sampler():
    m = single(loss="ce", drs_epoch=4, drs_sampler="class_balanced")
    assert m.streams(3)["main"].sampler == "instance"
    assert m.streams(4)["main"].sampler == "class_balanced"
    assert single(loss="ce").streams(9)["main"].sampler == "instance"


def test_posthoc_tau():
    m = single(loss="ce", posthoc_tau=0.7).eval()
    x = torch.tensor([[1.0, -2.0, 0.5, 3.0]])
    raw = m.net(x)[0].tolist()
    total = sum(COUNTS)
    expected = [v - 0.7 * math.log(n / total) for v, n in zip(raw, COUNTS)]
    assert m.predict(x)[0].tolist() == pytest.approx(expected, rel=1e-5)
    assert single(loss="ce").predict(x)[0].tolist() == pytest.approx(raw)


def test_drw_trial_with_best_val_checkpoint_runs():
    """A best-val checkpoint from before the DRW switch must load into the model after it."""
    from conftest import tiny_experiment

    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial

    exp = ExperimentSpec.model_validate(tiny_experiment(**{
        "method": {"name": "single", "loss": "cb_focal", "drw_epoch": 1, "beta": 0.99},
        "eval.checkpoint_rule": "best_val", "optim.epochs": 3}))
    out = run_trial(exp)
    assert out.summary["status"] == "ok"
    assert [r.schedules["drw_on"] for r in out.epochs] == [0.0, 1.0, 1.0]
