"""BWLM's BFS loss as the paper prints it (Eq. 5 raw class-balanced weights, n_j of the full training
set D in Eq. 5 and Eq. 9), what α means, the stage-2 recipe of §4.2, and the small-C notice.
Every expected value is computed by hand from the paper's equations."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.losses import build_loss
from ltsearch.methods import MethodContext, make_method
from ltsearch.methods.bwlm import BWLM
from ltsearch.models import build_model
from ltsearch.spec import OptimSpec

REPO = Path(__file__).resolve().parents[1]


def sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def cb_focal_by_hand(z: list[float], y: int, w_y: float, gamma: float) -> float:
    """Eq. 8: w_y · Σ_j −(1 − p_j^t)^γ log p_j^t, p_j^t = σ(z_j) for j = y, σ(−z_j) otherwise."""
    zt = [v if j == y else -v for j, v in enumerate(z)]
    return w_y * sum(-((1 - sig(v)) ** gamma) * math.log(sig(v)) for v in zt)


def balanced_softmax_by_hand(z: list[float], y: int, n: list[int]) -> float:
    """Eq. 9–10: −log(n_y e^{z_y} / Σ_i n_i e^{z_i})."""
    return -math.log(n[y] * math.exp(z[y]) / sum(ni * math.exp(v) for ni, v in zip(n, z)))


def test_eq5_weights_are_raw_by_default():
    counts, beta = [6, 3, 1], 0.9
    raw = [0.1 / (1 - 0.9 ** 6), 0.1 / (1 - 0.9 ** 3), 0.1 / (1 - 0.9)]  # 0.21342, 0.36900, 1.0
    assert raw == pytest.approx([0.213420, 0.369004, 1.0], rel=1e-5)
    assert build_loss("bfs", counts, beta=beta).cb_weights.tolist() == pytest.approx(raw, rel=1e-6)
    normalised = build_loss("bfs", counts, beta=beta, normalize=True).cb_weights.tolist()
    assert normalised == pytest.approx([r / sum(raw) * 3 for r in raw], rel=1e-6)


def test_bfs_value_with_raw_weights():
    counts, alpha, beta, gamma = [6, 3, 1], 0.3, 0.9, 2.0
    z, y = [1.0, -1.0, 0.5], 2
    w_y = 0.1 / (1 - 0.9 ** 1)
    expected = alpha * cb_focal_by_hand(z, y, w_y, gamma) + (1 - alpha) * balanced_softmax_by_hand(z, y, counts)
    loss = build_loss("bfs", counts, alpha=alpha, beta=beta, gamma=gamma)
    assert float(loss(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(expected, rel=1e-6)


TRAIN = [40, 30, 20, 10, 5, 3]  # m = 3 common classes; n_{m+1} = 10 → review set [10, 10, 10, 10, 5, 3]
REVIEW = [10, 10, 10, 10, 5, 3]


def bwlm(**params) -> BWLM:
    torch.manual_seed(0)
    ctx = MethodContext(class_counts=TRAIN, in_channels=1, seed=0,
                        optim=OptimSpec(name="adam", lr=0.1, batch_size=128, momentum=0.5, epochs=3, warmup=2),
                        build_model=lambda head: build_model("mlp", 6, 1, head, hidden=8, size=4))
    return make_method("bwlm", params, ctx)


@pytest.mark.parametrize("y", [0, 4])
def test_alpha_one_is_cb_focal_with_raw_weights_of_the_review_set(y):
    m = bwlm(bfs_alpha=1.0, bfs_beta=0.99, bfs_gamma=1.0)
    z = [0.2, -0.4, 1.0, 0.0, -1.2, 0.3]
    w_y = 0.01 / (1 - 0.99 ** REVIEW[y])  # Eq. 5 with D̂'s count (bfs_counts: review, the default)
    assert float(m.loss2(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(cb_focal_by_hand(z, y, w_y, 1.0), rel=1e-6)
    full = bwlm(bfs_alpha=1.0, bfs_beta=0.99, bfs_gamma=1.0, bfs_counts="train")  # §3.1's n_j on D
    w_y = 0.01 / (1 - 0.99 ** TRAIN[y])
    assert float(full.loss2(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(cb_focal_by_hand(z, y, w_y, 1.0), rel=1e-6)


def test_alpha_zero_is_balanced_softmax_with_the_prior_of_the_set_it_trains_on():
    """Balanced softmax undoes the label prior of the set the classifier is fitted on (Ren et al.,
    BWLM Eq. 9); stage 2 fits it on D̂, so by default n_j are D̂'s counts; ``train`` gives D's."""
    z, y = [0.2, -0.4, 1.0, 0.0, -1.2, 0.3], 5
    assert BWLM.validate_params({}).bfs_counts == "review"
    m = bwlm(bfs_alpha=0.0)
    assert float(m.loss2(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(balanced_softmax_by_hand(z, y, REVIEW), rel=1e-6)
    assert m.loss2.cb_weights.tolist() == pytest.approx([0.0001 / (1 - 0.9999 ** n) for n in REVIEW], rel=1e-5)
    full = bwlm(bfs_alpha=0.0, bfs_counts="train")
    assert float(full.loss2(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(
        balanced_softmax_by_hand(z, y, TRAIN), rel=1e-6)


def test_stage2_recipe_is_the_papers_whatever_stage1_uses():
    s1, s2 = bwlm().stages()
    assert (s1.optim.name, s1.optim.lr, s1.optim.batch_size) == ("adam", 0.1, 128)
    o = s2.optim
    assert (o.name, o.lr, o.batch_size, o.momentum, o.lr_schedule, o.warmup, o.milestones) == \
        ("sgd", 0.01, 64, 0.9, "cosine", 0, [])
    assert (o.weight_decay, s2.epochs) == (5.0e-3, 10)  # λ of Eq. 14-17 from [52]; Kang et al.'s 10 epochs
    inherit = bwlm(stage2_lr=None, stage2_batch_size=None, stage2_momentum=None, stage2_optimizer=None).stages()[1].optim
    assert (inherit.name, inherit.lr, inherit.batch_size, inherit.momentum) == ("adam", 0.1, 128, 0.5)


def test_stage2_weight_decay_is_the_one_reproduce_uses():
    """BWLM takes λ from Alshammari et al. [52]; the default is the value the paper's CIFAR rows run with."""
    import yaml

    papers = yaml.safe_load((REPO / "ltsearch/reproduce/papers.yaml").read_text())
    assert BWLM.validate_params({}).stage2_weight_decay == papers["methods"]["bwlm"]["stage2_weight_decay"] == 5.0e-3
    assert bwlm(stage2_weight_decay=None).stages()[1].optim.weight_decay == OptimSpec().weight_decay  # inherits


def test_small_c_notice():
    p = BWLM.validate_params({"bfs_normalize": True})  # normalised weights: no α notice
    ten = [100 - 9 * i for i in range(10)]
    assert BWLM.notices(p, ten) == ["bwlm: stage 1 trains on the 5 most frequent of 10 classes (the paper's design); "
                                    "stage1_data: all trains on every class"]
    assert BWLM.notices(BWLM.validate_params({"stage1_data": "all", "bfs_normalize": True}), ten) == []
    assert BWLM.notices(p, [500 - 4 * i for i in range(100)]) == []


def test_alpha_notice_where_the_cb_focal_term_is_negligible():
    """Fashion-MNIST-LT IF100 (10 classes, 5000 ... 50): D̂ = [387] * 6 + [232, 139, 83, 50]; the largest
    raw Eq. 5 weight is 1e-4 / (1 - 0.9999^50); at zero logits the CB-focal term is w · 10 · ½ · log 2 and
    balanced softmax on D̂ about log 10: a 3 % share, below which α barely matters."""
    from ltsearch.methods.bwlm import cb_focal_share

    fashion = [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    p = BWLM.validate_params({"stage1_data": "all"})
    share = 1e-4 / (1 - 0.9999 ** 50) * 10 * 0.5 * math.log(2) / math.log(10)
    assert cb_focal_share(p, fashion) == pytest.approx(share) and share < 0.05
    assert BWLM.notices(p, fashion) == [f"bwlm: with raw class-balanced weights the CB-focal term is at most "
                                        f"{100 * share:.1f} % of the balanced-softmax term here, so bfs_alpha (0.1) "
                                        "changes little below 1; bfs_normalize: true uses Cui et al.'s sum-to-C weights"]
    # the paper's CIFAR-100-LT IF100 (500 ... 5): the rarest classes' weights make the term matter
    cifar100 = [round(500 * 0.01 ** (i / 99)) for i in range(100)]
    assert cb_focal_share(p, cifar100) > 0.05 and BWLM.notices(p, cifar100) == []
    assert BWLM.notices(BWLM.validate_params({"stage1_data": "all", "bfs_normalize": True}), fashion) == []


def test_cli_train_prints_the_notice(tmp_path):
    r = CliRunner().invoke(app, ["train", str(REPO / "search_spaces/bwlm_components.yaml"), "--smoke",
                                 "--storage", str(tmp_path), "--set", "experiment.method.stage2_epochs=1"])
    assert r.exit_code == 0, r.output
    assert "notice: bwlm: stage 1 trains on the 5 most frequent of 10 classes" in r.output
