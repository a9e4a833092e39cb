"""HRDC Tables 5 and 6 measure what they claim: SEQL's λ makes a tail set on CIFAR-10-LT IF50,
label-aware smoothing uses MiSLAS's ε for the dataset, the temperature divides the whole logit (bias
included), and the fusion weight is searched. Expected values by hand."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from ltsearch.data import longtail_counts
from ltsearch.losses import build_loss
from ltsearch.losses.hrdc import hierarchical_factors
from ltsearch.losses.seql import seql_threshold
from ltsearch.methods import MethodContext, make_method
from ltsearch.models import build_model
from ltsearch.spec import OptimSpec, load_spec
from ltsearch.space import plan_cells

CIFAR10_IF50 = longtail_counts(10, 5000, 50)  # 5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100
REPO = Path(__file__).resolve().parents[1]


def ce_by_hand(z: list[float], y: int, keep: list[int] | None = None) -> float:
    keep = list(range(len(z))) if keep is None else keep
    return -z[y] + math.log(sum(math.exp(z[k]) for k in keep))


def test_cifar10_if50_counts_and_the_old_lambda():
    assert CIFAR10_IF50 == [5000, 3237, 2096, 1357, 878, 568, 368, 238, 154, 100]
    total = sum(CIFAR10_IF50)  # 13,996 in the protocol (13,896 once class 0 gives 100 images to validation)
    assert min(CIFAR10_IF50) / total > 5e-3  # Bag of Tricks' λ: no class would be tail
    assert int(build_loss("seql", CIFAR10_IF50, lam=5e-3).tail.sum()) == 0


def test_seql_threshold_by_hand():
    counts = [50, 30, 20, 10]  # frequencies 50/110, 30/110, 20/110, 10/110
    assert seql_threshold(counts, 0.5) == pytest.approx(30 / 110)  # the 2 rarest are below it
    assert seql_threshold(counts, 0.25) == pytest.approx(20 / 110)
    assert seql_threshold(counts, 0.0) == 0.0 and seql_threshold(counts, 1.0) == 1.0
    assert build_loss("seql", counts).tail.tolist() == [False, False, True, True]
    assert build_loss("seql", [10, 10, 10, 10]).tail.tolist() == [False] * 4  # balanced data has no tail


def test_seql_differs_from_ce_on_cifar10_if50():
    loss = build_loss("seql", CIFAR10_IF50, gamma=1.0)  # γ = 1: every tail negative leaves the denominator
    total = sum(CIFAR10_IF50)
    tail = [k for k, n in enumerate(CIFAR10_IF50) if n / total < loss.lam]
    assert tail == [5, 6, 7, 8, 9] and loss.lam == pytest.approx(878 / total)
    z = [0.5, 0.1, -0.2, 0.3, 0.0, 0.4, 0.2, -0.1, 0.6, 0.1]
    for y in (0, 7):
        keep = [k for k in range(10) if k == y or k not in tail]
        seql = float(loss(torch.tensor([z]), torch.tensor([y])))
        assert seql == pytest.approx(ce_by_hand(z, y, keep), rel=1e-6)
        assert abs(seql - ce_by_hand(z, y)) > 0.5  # not CE
    assert build_loss("seql", CIFAR10_IF50, lam=0.02).lam == 0.02  # an explicit λ is used as given


def mislas_concave(counts: list[int], head: float, tail: float) -> list[float]:
    lo, hi = min(counts), max(counts)
    return [tail + (head - tail) * math.sin(math.pi * (n - lo) / (hi - lo) / 2) for n in counts]


@pytest.mark.parametrize("num_classes, n_max, head, tail", [
    (10, 5000, 0.1, 0.0),    # MiSLAS CIFAR-10-LT
    (100, 500, 0.4, 0.1),    # MiSLAS CIFAR-100-LT
    (1000, 1280, 0.3, 0.0),  # MiSLAS ImageNet-LT (and iNaturalist 2018)
])
def test_label_aware_smoothing_uses_mislas_eps_for_the_dataset(num_classes, n_max, head, tail):
    counts = longtail_counts(num_classes, n_max, 50)
    eps = build_loss("label_aware_smooth", counts).eps.tolist()
    assert eps == pytest.approx(mislas_concave(counts, head, tail), abs=1e-6)
    assert build_loss("label_aware_smooth", counts, eps_head=0.2, eps_tail=0.05).eps[0] == pytest.approx(0.2)


def test_hrdc_temperature_divides_the_bias_too():
    counts = [40, 20, 10, 5]
    torch.manual_seed(0)
    ctx = MethodContext(class_counts=counts, in_channels=1, optim=OptimSpec(epochs=4), seed=0,
                        build_model=lambda head: build_model("mlp", 4, 1, head, hidden=8, size=4))
    m = make_method("hrdc", {"strategy": "equal"}, ctx)  # α = 0.5
    a = hierarchical_factors(counts, 0.2).tolist()
    x, y = torch.randn(3, 1, 4, 4), torch.tensor([0, 2, 3])
    with torch.no_grad():
        f = m.net.features(x)
        zc = (f @ m.net.classifier.weight.t() + m.net.classifier.bias).tolist()
        w, b = m.classifier_r.weight, m.classifier_r.bias
        zr = [[(float(f[i] @ w[j]) + float(b[j])) / a[j] for j in range(4)] for i in range(3)]  # (ωᵀf + b) / a
        expected = sum(0.5 * ce_by_hand(zc[i], int(y[i])) + 0.5 * ce_by_hand(zr[i], int(y[i])) for i in range(3)) / 3
        assert float(m.training_step({"main": {"weak": x, "y": y}}, 0.5)["loss"]) == pytest.approx(expected, rel=1e-5)


def test_strategy_fusion_space_searches_the_fusion_weight():
    spec = load_spec(REPO / "search_spaces/hrdc_strategy_fusion.yaml")
    cells = [c for c in plan_cells(spec.search, spec.experiment) if c["seed"] == spec.search.seeds[0]]
    per_fusion = {f: sorted({c.get("method.fusion_weight") for c in cells if c["method.fusion"] == f},
                            key=lambda v: -1 if v is None else v) for f in ("average", "head", "tail")}
    assert per_fusion == {"average": [None], "head": [0.6, 0.75, 1.0], "tail": [0.6, 0.75, 1.0]}
    assert len(cells) == 4 * 7  # 4 strategies × (average + 3 head + 3 tail)
