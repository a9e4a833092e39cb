"""Two-stage methods (crt, lws, tau_norm, glag, bwlm), their losses (gra, bfs) and stage-1 reuse.

Expected values are written out by hand on small tensors, independently of the code under test.
"""

from __future__ import annotations

import math
import threading
import time
from types import SimpleNamespace

import pytest
import torch

from conftest import count_stage1_steps, tiny_experiment
from ltsearch.losses import build_loss
from ltsearch.methods import MethodContext, make_method
from ltsearch.methods.bwlm import review_counts
from ltsearch.methods.afg import calibrate, class_stats, support_sets
from ltsearch.methods.glag import adapt_beta, tukey
from ltsearch.methods.tau_norm import tau_normalised
from ltsearch.models import build_model
from ltsearch.registry import SAMPLERS
from ltsearch.schedules import build_schedule
from ltsearch.spec import ExperimentSpec, OptimSpec
from ltsearch.train import stage_cache
from ltsearch.train.loop import run_trial


def close(t: torch.Tensor, expected) -> None:
    torch.testing.assert_close(t.double(), torch.tensor(expected, dtype=torch.float64), rtol=1e-6, atol=1e-9)


# ------------------------------------------------------------------------------------------ GraLoss


def test_gra_schedule_forms():
    s, c = 1.0, 2.0
    convex, linear, concave = (build_schedule("gra", s=s, c=c, form=f) for f in ("convex", "linear", "concave"))
    assert convex(0.5) == pytest.approx(math.sqrt(2) - 1)  # s(c^p − 1)
    assert linear(0.5) == pytest.approx(0.5)  # s(c − 1)p
    assert concave(0.5) == pytest.approx(2 * (1 - 2 ** -0.5))  # s·c·(1 − c^{−p})
    for f in (convex, linear, concave):  # same end points 0 and s(c − 1)
        assert f(0.0) == pytest.approx(0.0) and f(1.0) == pytest.approx(1.0)
    assert convex(0.5) < linear(0.5) < concave(0.5)
    assert build_schedule("gra", s=0.5, c=4.0)(1.0) == pytest.approx(1.5)


def test_gra_loss_adjusted_logits_and_value():
    loss = build_loss("gra", [6, 3, 1], s=1.0, c=2.0)
    z = torch.tensor([[1.0, 2.0, 3.0]])
    y = torch.tensor([2])
    loss.set_progress(0.0)  # α = 0: plain CE
    ce = -3 + math.log(math.e ** 1 + math.e ** 2 + math.e ** 3)
    assert float(loss(z, y)) == pytest.approx(ce, rel=1e-5)
    loss.set_progress(1.0)  # α = s(c − 1) = 1: z + log π, π = (0.6, 0.3, 0.1)
    assert loss.alpha == pytest.approx(1.0)
    adj = [1 + math.log(0.6), 2 + math.log(0.3), 3 + math.log(0.1)]
    assert loss.adjusted(z)[0].tolist() == pytest.approx(adj, rel=1e-5)
    expected = -adj[2] + math.log(sum(math.exp(a) for a in adj))
    assert float(loss(z, y)) == pytest.approx(expected, rel=1e-5)
    loss.set_progress(0.5)
    assert loss.alpha == pytest.approx(math.sqrt(2) - 1)


# ------------------------------------------------------------------------------------------ BFS


def test_bfs_loss_value():
    counts, alpha, beta, gamma = [6, 3, 1], 0.3, 0.9, 2.0
    z, y = [1.0, -1.0, 0.5], 0
    raw = [(1 - beta) / (1 - beta ** n) for n in counts]
    w = [r / sum(raw) * 3 for r in raw]
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    zt = [z[0], -z[1], -z[2]]  # target sign: +1 for y, −1 for the others
    cb = w[y] * sum(-((1 - sig(v)) ** gamma) * math.log(sig(v)) for v in zt)
    bs = -math.log(counts[y] * math.exp(z[y]) / sum(n * math.exp(v) for n, v in zip(counts, z)))
    loss = build_loss("bfs", counts, alpha=alpha, beta=beta, gamma=gamma, normalize=True)  # Cui et al.'s sum-to-C
    assert float(loss(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(alpha * cb + (1 - alpha) * bs, rel=1e-5)
    only_bs = build_loss("bfs", counts, alpha=0.0)
    assert float(only_bs(torch.tensor([z]), torch.tensor([y]))) == pytest.approx(bs, rel=1e-5)


# ------------------------------------------------------------------------------------------ AFG


def test_tukey_transform():
    x = torch.tensor([4.0, 0.25, -9.0, 1.0])
    assert tukey(x, 0.5).tolist() == pytest.approx([2.0, 0.5, -3.0, 1.0])
    assert tukey(x, 1.0).tolist() == x.tolist()
    assert tukey(torch.tensor([math.e, 1.0]), 0.0).tolist() == pytest.approx([1.0, 0.0])


def test_class_stats_and_calibration_toy():
    # class 0: (0,0), (2,0), (0,2), (2,2) → mean (1,1), cov diag(4/3, 4/3)
    # class 1: (4,0), (6,0) → mean (5,0), cov [[2,0],[0,0]];  class 2: (1,0) alone → cov 0
    x = torch.tensor([[0, 0], [2, 0], [0, 2], [2, 2], [4, 0], [6, 0], [1, 0]], dtype=torch.float64)
    y = torch.tensor([0, 0, 0, 0, 1, 1, 2])
    mu, cov = class_stats(x, y, 3)
    close(mu, [[1, 1], [5, 0], [1, 0]])
    close(cov[0], [[4 / 3, 0], [0, 4 / 3]])
    close(cov[1], [[2, 0], [0, 0]])
    assert cov[2].abs().sum() == 0
    counts = torch.tensor([4, 2, 1])
    xh = torch.tensor([[1.0, 0.0]], dtype=torch.float64)  # the class-2 sample
    # support for class 2: classes 0 and 1 (more samples); d_0 = ‖(1,0) − (1,1)‖ = 1, d_1 = 4
    idx, w = support_sets(xh, mu, counts, cls=2, k=2)
    assert idx.tolist() == [[0, 1]]
    close(w, [[4 / 1, 2 / 4]])  # ω_j = N_j / d_ij
    beta, gamma = 0.6, 0.1
    mean, c = calibrate(xh, cov[2], mu, cov, idx, w, beta, gamma)
    w0, w1 = 4 / 4.5, 0.5 / 4.5
    exp_mean = [(1 - beta) * 1 + beta * (w0 * 1 + w1 * 5), (1 - beta) * 0 + beta * (w0 * 1 + w1 * 0)]
    close(mean[0], exp_mean)
    exp_cov = [[beta ** 2 * (w0 * 4 / 3 + w1 * 2) + gamma, gamma], [gamma, beta ** 2 * (w0 * 4 / 3) + gamma]]
    close(c[0], exp_cov)
    # K = 1 keeps the nearest; class 1's only candidate is class 0; class 0 has none
    assert support_sets(xh, mu, counts, 2, 1)[0].tolist() == [[0]]
    assert support_sets(torch.tensor([[5.0, 0.0]], dtype=torch.float64), mu, counts, 1, 3)[0].tolist() == [[0]]
    assert support_sets(xh, mu, counts, 0, 2)[0].shape == (1, 0)


def test_adaptive_beta_rule():
    beta = torch.tensor([0.6, 0.6, 0.6, 0.98, 0.6])
    prev = torch.tensor([0.4, 0.3, math.nan, 0.1, 0.5])
    acc = torch.tensor([0.5, 0.2, 0.4, 0.3, 0.5])
    tail = torch.tensor([False, True, True, True, True])
    # head unchanged; fell → −0.05; no previous epoch → unchanged; rose → +0.05 clipped to 1; same → unchanged
    assert adapt_beta(beta, acc, prev, tail, 0.05).tolist() == pytest.approx([0.6, 0.55, 0.6, 1.0, 0.6])


# ------------------------------------------------------------------------------------------ τ-norm, LWS, review set


def test_tau_norm_weights():
    w = torch.tensor([[3.0, 4.0], [1.0, 0.0], [0.0, 0.5]])
    close(tau_normalised(w, 1.0), [[0.6, 0.8], [1.0, 0.0], [0.0, 1.0]])
    half = tau_normalised(w, 0.5).tolist()
    assert half[0] == pytest.approx([3 / math.sqrt(5), 4 / math.sqrt(5)])
    assert half[2] == pytest.approx([0.0, 0.5 / math.sqrt(0.5)])
    assert tau_normalised(w, 0.0).tolist() == w.tolist()


def _train_set(xs, ys):
    """A stand-in for the loop's ``Batches`` (the ``TrainSet`` protocol): un-augmented images in order."""
    return SimpleNamespace(labels=ys, images=lambda chunk=512: (xs[i:i + chunk].float() / 255 for i in range(0, len(ys), chunk)))


def _ctx(counts, **optim):
    return MethodContext(class_counts=counts, in_channels=1, optim=OptimSpec(**optim),
                         build_model=lambda head: build_model("mlp", len(counts), 1, head, hidden=8), seed=0)


def test_lws_trains_only_the_scales_with_the_hand_gradient():
    counts = [20, 10, 5]
    m = make_method("lws", {"stage2_epochs": 1}, _ctx(counts))
    stages = m.stages()
    assert [s.name for s in stages] == ["representation", "classifier"]
    m.begin_stage(stages[1], _train_set(torch.zeros(1, 1, 8, 8, dtype=torch.uint8), torch.tensor([0])))
    assert m.trainable_parameters(stages[1]) == [m.scales]
    assert not any(p.requires_grad for p in m.net.parameters())
    x, y = torch.rand(1, 1, 8, 8), torch.tensor([1])
    with torch.no_grad():
        h = m.net(x)[0]
    with torch.no_grad():
        m.scales.copy_(torch.tensor([1.0, 2.0, 0.5]))
    out = m.training_step({"main": {"weak": x, "y": y}}, 0.0)
    out["loss"].backward()
    z = h * torch.tensor([1.0, 2.0, 0.5])
    p = torch.softmax(z, 0)
    grad = [float(h[i] * (p[i] - (1.0 if i == 1 else 0.0))) for i in range(3)]  # ∂CE/∂f_i = h_i (p_i − 1[i=y])
    assert m.scales.grad.tolist() == pytest.approx(grad, rel=1e-4)
    assert m.predict(x)[0].tolist() == pytest.approx(z.tolist(), rel=1e-5)


def test_stage2_optim_from_params():
    m = make_method("crt", {"stage2_epochs": 3, "stage2_lr": 0.01, "stage2_batch_size": 16, "stage2_weight_decay": 0.0},
                     _ctx([5, 3], lr=0.1, epochs=4, milestones=[2]))
    s1, s2 = m.stages()
    assert (s1.epochs, s1.optim.lr) == (4, 0.1)
    assert (s2.epochs, s2.optim.lr, s2.optim.batch_size, s2.optim.weight_decay) == (3, 0.01, 16, 0.0)
    assert s2.optim.lr_schedule == "cosine" and s2.optim.milestones == []


def test_bwlm_review_set():
    counts = [50, 30, 20, 10, 5]  # sorted: m = 2 common classes {0, 1}; n_{m+1} = 20
    common, review = review_counts(counts)
    assert common == [0, 1] and review == [20, 20, 20, 10, 5]
    assert review_counts([3, 9, 4])[0] == [1]  # odd C: m = 1, the most frequent class
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    sampler = SAMPLERS.get("balanced_review")(labels, counts)
    e0, e1 = sampler.epoch_indices(0, 0), sampler.epoch_indices(0, 1)
    assert torch.bincount(labels[e0]).tolist() == review
    assert sorted(e0.tolist()) == sorted(e1.tolist()) and e0.tolist() != e1.tolist()  # fixed D̂, new order
    head = SAMPLERS.get("bwlm_head")(labels, counts).epoch_indices(0, 0)
    assert torch.bincount(labels[head], minlength=5).tolist() == [50, 30, 0, 0, 0]


def test_glag_generation_balances_classes():
    counts = [30, 12, 4]
    torch.manual_seed(0)
    ys = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    xs = (torch.rand(len(ys), 1, 8, 8) * 255).to(torch.uint8)
    m = make_method("glag", {"head_threshold": 20, "support_k": 1, "gamma": 0.1}, _ctx(counts))
    m.begin_stage(m.stages()[1], _train_set(xs, ys))
    x, y = m.generate(0)
    assert torch.bincount(y, minlength=3).tolist() == [0, 18, 26]  # N_max − N_c
    assert torch.isfinite(x).all() and x.shape[1] == m.net.feat_dim
    assert torch.equal(m.generate(0)[0], x)  # seeded by trial seed and epoch


# ------------------------------------------------------------------------------------------ runs


@pytest.mark.parametrize("name, params, arch", [
    ("crt", {}, "mlp"),
    ("lws", {}, "mlp"),
    ("tau_norm", {"tau": 0.5}, "mlp"),
    ("glag", {"head_threshold": 20, "gamma": 0.1}, "small_cnn"),
    ("glag", {"graloss": False, "afg": False, "kd": False, "head_threshold": 20}, "mlp"),
    ("bwlm", {"stage2_weight_decay": 5e-3}, "mlp"),
    ("bwlm", {"stage1_data": "all", "stage2_loss": "ce"}, "small_cnn"),
])
def test_two_stage_run(tmp_path, name, params, arch):
    stage2 = 0 if name == "tau_norm" else 1
    exp = ExperimentSpec.model_validate(tiny_experiment(
        **{"method": {"name": name, "stage2_epochs": stage2, **params}, "model.arch": arch,
           "model.options": {"hidden": 32} if arch == "mlp" else {"width": 8}}))
    out = run_trial(exp, stage_cache=tmp_path)
    assert [r.stage for r in out.epochs] == ["representation"] * 2 + ["classifier"] * stage2
    assert [r.epoch for r in out.epochs] == list(range(2 + stage2))
    assert all(math.isfinite(r.train_loss) for r in out.epochs)
    assert out.summary["epochs"] == 2 + stage2 and 0 <= out.summary["test_acc"] <= 100
    if name == "glag" and params.get("graloss", True):
        assert out.epochs[1].schedules["gra_strength"] == pytest.approx(math.sqrt(2) - 1)  # p = 1/2
        assert out.epochs[2].schedules == {"gra_strength": 0.0, "kd_on": 1.0}


def test_tau_norm_reports_the_normalised_classifier(tmp_path):
    def trial(**params):
        exp = tiny_experiment(**{"method": {"name": "tau_norm", **params}})
        return run_trial(ExperimentSpec.model_validate(exp), stage_cache=tmp_path)

    plain = trial(tau=0.0, keep_bias=True)  # τ = 0 with the bias: the stage-1 classifier unchanged
    assert plain.summary["val_acc"] == pytest.approx(plain.epochs[-1].val["val_acc"])
    normed = trial(tau=1.0)  # same stage 1 (reused), the summary is the τ-normalised classifier's
    assert [r.val for r in normed.epochs] == [r.val for r in plain.epochs]
    assert [r["weight_norm"] for r in normed.per_class] == pytest.approx([1.0] * 10)  # w_i / ‖w_i‖


# ------------------------------------------------------------------------------------------ stage-1 reuse


def test_stage1_trained_once_for_a_stage2_sweep(tmp_path, monkeypatch):
    calls = count_stage1_steps(monkeypatch)

    def trial(lr, cache):
        exp = tiny_experiment(**{"method": {"name": "crt", "stage2_epochs": 2, "stage2_lr": lr}})
        return run_trial(ExperimentSpec.model_validate(exp), stage_cache=cache)

    first = trial(0.05, tmp_path)
    steps_one_stage1 = calls[0]
    assert steps_one_stage1 > 0
    second = trial(0.01, tmp_path)
    assert calls[0] == steps_one_stage1  # the second trial trained no stage-1 step
    assert len(list(tmp_path.glob("*.pt"))) == 1
    rep1 = [r for r in first.epochs if r.stage == "representation"]
    rep2 = [r for r in second.epochs if r.stage == "representation"]
    assert all(r.seconds > 0 for r in rep1) and all(r.seconds == 0.0 for r in rep2)  # replayed records
    assert [r.val for r in rep1] == [r.val for r in rep2]
    # the reused stage 1 gives exactly what training it again would
    fresh = trial(0.01, False)
    assert fresh.summary["test_acc"] == second.summary["test_acc"]
    assert [r.train_loss for r in fresh.epochs] == pytest.approx([r.train_loss for r in second.epochs])
    # a different stage-1 parameter (the optimiser's lr) is a different entry
    exp = tiny_experiment(**{"method": {"name": "crt", "stage2_epochs": 1}, "optim.lr": 0.02})
    run_trial(ExperimentSpec.model_validate(exp), stage_cache=tmp_path)
    assert len(list(tmp_path.glob("*.pt"))) == 2


def test_stage1_shared_across_methods_and_env_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("LTSEARCH_CACHE", str(tmp_path))
    calls = count_stage1_steps(monkeypatch)
    run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {"name": "crt", "stage2_epochs": 1}})))
    n = calls[0]
    for name, extra in (("lws", {"stage2_epochs": 1}), ("tau_norm", {"tau": 0.7}),
                        ("bwlm", {"stage1_data": "all", "stage2_epochs": 1}),
                        ("glag", {"graloss": False, "afg": False, "stage2_epochs": 1})):
        run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {"name": name, **extra}})))
    assert calls[0] == n and len(list(tmp_path.glob("*.pt"))) == 1  # one plain-CE stage 1 for all
    run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"method": {"name": "glag", "stage2_epochs": 1}})))
    assert calls[0] > n and len(list(tmp_path.glob("*.pt"))) == 2  # GraLoss is another stage 1


def test_stage1_from_explicit_file(tmp_path, monkeypatch):
    calls = count_stage1_steps(monkeypatch)
    exp = tiny_experiment(**{"method": {"name": "crt", "stage2_epochs": 1}})
    ref = run_trial(ExperimentSpec.model_validate(exp), stage_cache=tmp_path / "c")
    n = calls[0]
    entry = next((tmp_path / "c").glob("*.pt"))
    # a cache file, and a loop checkpoint holding the whole method's state dict
    payload = torch.load(entry, weights_only=True)
    ckpt = tmp_path / "trial.pt"
    torch.save({"method": {f"net.{k}": v for k, v in payload["module"].items()}, "stage": "x"}, ckpt)
    for source in (entry, ckpt):
        exp["method"]["stage1_from"] = str(source)
        out = run_trial(ExperimentSpec.model_validate(exp), stage_cache=False)
        assert calls[0] == n
        assert out.summary["test_acc"] == ref.summary["test_acc"]
    assert [r.stage for r in out.epochs] == ["classifier"]  # no records to replay from a checkpoint
    exp["method"]["stage1_from"] = str(tmp_path / "missing.pt")
    with pytest.raises(Exception, match="stage1_from"):
        run_trial(ExperimentSpec.model_validate(exp), stage_cache=False)


def test_cache_lock_makes_the_second_trial_wait(tmp_path):
    module = torch.nn.Linear(2, 2)
    first = stage_cache.claim(tmp_path, "k", module)
    assert first.payload is None
    got: list = []

    def second():
        got.append(stage_cache.claim(tmp_path, "k", torch.nn.Linear(2, 2)))

    t = threading.Thread(target=second)
    t.start()
    time.sleep(0.2)
    assert not got  # blocked while the first trial trains
    first.save([{"epoch": 0}])
    t.join(5)
    assert got and got[0].payload is not None
    target = torch.nn.Linear(2, 2)
    got[0].module = target
    assert got[0].restore(3) == [{"epoch": 3, "seconds": 0.0}]
    assert torch.equal(target.weight, module.weight)
