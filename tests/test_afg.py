"""GLAG's AFG at scale: the memory estimate by hand, the low-rank covariance (PPCA) by hand, and the
low-rank sampler against the exact one and against the calibrated Gaussian of Eq. 8–9 written out by
hand (many seeded draws; tolerances from the sample size)."""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import pytest
import torch

from ltsearch.data import longtail_counts
from ltsearch.methods import MethodContext, make_method
from ltsearch.methods.afg import BLOCK_BYTES, FeatureGenerator, afg_memory, choose_mode, lowrank_class_stats
from ltsearch.models import build_model
from ltsearch.spec import OptimSpec


def test_memory_estimate_by_hand():
    counts, d, r = [30, 12, 4], 8, 3  # head_threshold 20: tail samples 12 + 4 = 16; plan 0 + 18 + 26 = 44
    exact = afg_memory(counts, d, "exact", rank=r, head_threshold=20, support_k=2)
    assert exact == {"features": 46 * 8 * 4, "means": 3 * 8 * 4, "anchors": 16 * 8 * 4 + 16 * 2 * (8 + 4),
                     "plan": 44 * 2 * 8, "class_covariances": 3 * 64 * 4, "class_roots": 3 * 64 * 4,
                     "anchor_roots": 16 * 64 * 4, "block": BLOCK_BYTES, "calibration": (2 * 2 + 10) * 16 * 64 * 4}
    low = afg_memory(counts, d, "lowrank", rank=r, head_threshold=20, support_k=2)
    assert low["class_factors"] == 3 * 8 * 3 * 4 + 3 * 4 and exact["block"] == BLOCK_BYTES
    assert "class_covariances" not in low and "block" not in low
    # the numbers: 1,000 (ImageNet-LT) and 8,142 (iNaturalist) class covariances at D = 2048
    assert afg_memory([5] * 1000, 2048, "exact")["class_covariances"] == 1000 * 2048 ** 2 * 4  # 16.8 GB
    assert afg_memory([5] * 8142, 2048, "exact")["class_covariances"] / 1e9 == pytest.approx(136.6, abs=0.1)


def test_auto_mode_keeps_exact_for_cifar_and_fits_imagenet_in_a_few_gb():
    cifar100 = longtail_counts(100, 500, 100)
    assert choose_mode("auto", cifar100, 64, 32, 2.0) == "exact"  # ResNet-32 features
    inlt = longtail_counts(1000, 1280, 256)  # an ImageNet-LT-shaped profile
    assert sum(afg_memory(inlt, 2048, "exact").values()) > 100e9
    assert choose_mode("auto", inlt, 2048, 32, 2.0) == "lowrank"
    assert sum(afg_memory(inlt, 2048, "lowrank").values()) < 3e9
    assert choose_mode("exact", inlt, 2048, 32, 2.0) == "exact"  # explicit choice wins
    # the epoch-start calibration peak counts: 2,000 tail images at D = 512 hold 2 GB of anchor
    # roots alone, but calibrating them needs 14 × that again
    few = [101] + [20] * 100
    roots = afg_memory(few, 512, "exact")["anchor_roots"]
    assert roots == 2000 * 512 ** 2 * 4 and sum(afg_memory(few, 512, "exact").values()) > 15 * roots
    assert choose_mode("auto", few, 512, 32, 4.0) == "lowrank"


def test_lowrank_covariance_by_hand():
    # 7 samples: ±3·e1, ±2·e2, ±1·e3, 0 → mean 0, Σ = diag(18, 8, 2, 0) / 6 = diag(3, 4/3, 1/3, 0)
    e = torch.eye(4, dtype=torch.float64)
    x = torch.stack([3 * e[0], -3 * e[0], 2 * e[1], -2 * e[1], e[2], -e[2], 0 * e[0]])
    y = torch.zeros(7, dtype=torch.long)
    mu, f, s2 = lowrank_class_stats(x, y, 1, rank=1)
    assert mu[0].tolist() == pytest.approx([0, 0, 0, 0], abs=1e-12)
    # rank 1: the top eigenvalue kept, the rest (4/3 + 1/3 + 0) spread over 3 dimensions: σ² = 5/9
    assert float(s2[0]) == pytest.approx(5 / 9)
    model = f[0] @ f[0].t() + s2[0] * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(model, torch.diag(torch.tensor([3, 5 / 9, 5 / 9, 5 / 9], dtype=torch.float64)))
    mu, f, s2 = lowrank_class_stats(x, y, 1, rank=3)  # rank ≥ N − 1 … here 3 of 4 dims: exact
    exact = f[0] @ f[0].t() + s2[0] * torch.eye(4, dtype=torch.float64)
    torch.testing.assert_close(exact, torch.diag(torch.tensor([3, 4 / 3, 1 / 3, 0], dtype=torch.float64)))


def check_gaussian(draws: torch.Tensor, mean: torch.Tensor, cov: torch.Tensor, sigmas: float = 5.0) -> None:
    """Sample mean and covariance within ``sigmas`` standard errors: SE(mean_i) = √(Σ_ii / n),
    SE(cov_ij) = √((Σ_ii Σ_jj + Σ_ij²) / n) for Gaussian data."""
    n = len(draws)
    m = draws.mean(0)
    c = torch.cov(draws.t())
    se_m = (cov.diagonal() / n).sqrt()
    se_c = ((cov.diagonal()[:, None] * cov.diagonal()[None, :] + cov ** 2) / n).sqrt()
    assert ((m - mean).abs() <= sigmas * se_m + 1e-12).all(), (m, mean)
    assert ((c - cov).abs() <= sigmas * se_c + 1e-12).all(), (c, cov)


def generator(mode: str, x, y, counts, threshold, gamma, rank=8) -> FeatureGenerator:
    g = FeatureGenerator(x, y, counts, torch.tensor(counts) > threshold, support_k=2, gamma=gamma, mode=mode, rank=rank)
    g.start_epoch(torch.full((len(counts),), 0.6, dtype=torch.float64), torch.Generator().manual_seed(0),
                  torch.Generator().manual_seed(1))
    return g


@pytest.mark.parametrize("mode", ["exact", "lowrank"])
def test_sampler_matches_the_calibrated_gaussian_by_hand(mode):
    # class 0: (0,0), (2,0), (0,2), (2,2) → mean (1,1), cov diag(4/3, 4/3); class 1: (4,0), (6,0) →
    # mean (5,0), cov [[2,0],[0,0]]; class 2: (1,0) alone (no covariance). Head: class 0 (> 3 images).
    x = torch.tensor([[0, 0], [2, 0], [0, 2], [2, 2], [4, 0], [6, 0], [1, 0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    beta, gamma, n = 0.6, 0.1, 200_000
    g = generator(mode, x, y, [4, 2, 1], 3, gamma)
    # class 2's anchor (1,0): support {0: d = 1, ω = 4}, {1: d = 4, ω = 0.5}
    w0, w1 = 4 / 4.5, 0.5 / 4.5
    mean = torch.tensor([(1 - beta) * 1 + beta * (w0 * 1 + w1 * 5), beta * w0], dtype=torch.float64)
    cov = torch.tensor([[beta ** 2 * (w0 * 4 / 3 + w1 * 2) + gamma, gamma],
                        [gamma, beta ** 2 * (w0 * 4 / 3) + gamma]], dtype=torch.float64)
    anchor = g.anchor_start[2]
    check_gaussian(g.draw(torch.full((n,), 2), torch.full((n,), anchor)), mean, cov)
    # a head class draws from its own Gaussian, without γ
    check_gaussian(g.draw(torch.zeros(n, dtype=torch.long), torch.full((n,), -1)),
                   torch.tensor([1.0, 1.0], dtype=torch.float64), torch.eye(2, dtype=torch.float64) * 4 / 3)


def test_lowrank_sampler_matches_the_exact_one_in_six_dimensions():
    torch.manual_seed(0)
    counts = [12, 7, 4, 2]  # head: > 6 images (classes 0, 1); rank 8 ≥ every N_c − 1: low-rank is exact
    x = torch.randn(sum(counts), 6, dtype=torch.float64) * torch.tensor([2.0, 1.0, 0.5, 1.5, 0.3, 1.0], dtype=torch.float64)
    y = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    x = x + y[:, None].double()  # separate the class means
    beta, gamma, n = 0.6, 0.1, 200_000
    exact, low = generator("exact", x, y, counts, 6, gamma), generator("lowrank", x, y, counts, 6, gamma)
    a = low.anchor_start[2] + 1  # the second sample of class 2
    xi, idx, w = low.anchor_x[a], low.support_idx[a], low.support_w[a]
    sig = {c: torch.cov(x[y == c].t()) for c in range(4)}  # 1/(N − 1), as Eq. 6
    mu = {c: x[y == c].mean(0) for c in range(4)}
    mean = (1 - beta) * xi + beta * sum(w[j] * mu[int(idx[j])] for j in range(2))
    cov = (1 - beta) ** 2 * sig[2] + beta ** 2 * sum(w[j] * sig[int(idx[j])] for j in range(2)) + gamma
    assert sorted(idx.tolist()) == sorted({int(i) for i in idx}) and all(counts[int(i)] > counts[2] for i in idx)
    for g in (exact, low):
        check_gaussian(g.draw(torch.full((n,), 2), torch.full((n,), a)), mean, cov)


@pytest.mark.parametrize("mode", ["exact", "lowrank"])
def test_glag_generation_balances_classes_in_both_modes(mode):
    counts = [30, 12, 4]
    torch.manual_seed(0)
    ys = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    xs = (torch.rand(len(ys), 1, 8, 8) * 255).to(torch.uint8)
    ctx = MethodContext(class_counts=counts, in_channels=1, optim=OptimSpec(epochs=2), seed=0,
                        build_model=lambda head: build_model("mlp", 3, 1, head, hidden=16, size=8))
    train = SimpleNamespace(labels=ys, images=lambda chunk=512: (xs[i:i + chunk].float() / 255 for i in range(0, len(ys), chunk)))
    m = make_method("glag", {"head_threshold": 20, "support_k": 1, "gamma": 0.1, "afg_cov": mode, "afg_rank": 4}, ctx)
    assert m.afg_mode == mode
    assert make_method("glag", {}, ctx).afg_mode == "exact"  # auto on 16-d features
    m.begin_stage(m.stages()[1], train)
    x, y = m.generate(0)
    assert torch.bincount(y, minlength=3).tolist() == [0, 18, 26]  # N_max − N_c
    assert torch.isfinite(x).all() and x.shape[1] == m.net.feat_dim
    assert torch.equal(m.generate(0)[0], x)  # seeded by trial seed and epoch
    m.on_epoch_start(2, 0.0)  # stage-2 epoch: each step takes an equal share of the plan
    steps = math.ceil(sum(counts) / m._batch)
    drawn = [m.next_generated()[1] for _ in range(steps)]
    assert sum(len(d) for d in drawn) >= 44 and all(len(d) == math.ceil(44 / steps) for d in drawn)
    # DDP, 2 ranks: each keeps every other feature of the step's draw; together they are the one process's
    ranks = []
    for r in range(2):
        mr = make_method("glag", {"head_threshold": 20, "support_k": 1, "gamma": 0.1, "afg_cov": mode, "afg_rank": 4},
                         dataclasses.replace(ctx, rank=r, world_size=2))
        mr.load_state_dict(m.state_dict())
        mr.begin_stage(mr.stages()[1], train)
        mr.on_epoch_start(2, 0.0)
        ranks.append(mr.next_generated())
    m.on_epoch_start(2, 0.0)
    x1, y1 = m.next_generated()
    assert torch.equal(torch.stack([ranks[0][1], ranks[1][1]], 1).flatten()[: len(y1)], y1)
    assert torch.allclose(torch.stack([ranks[0][0], ranks[1][0]], 1).flatten(0, 1)[: len(x1)], x1)
