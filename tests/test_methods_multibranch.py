"""BBN, SDNHL and HRDC: their losses, schedules and samplers against hand-written formulas, and a
two-epoch smoke training of each through the one loop (tiny MLP, synthetic data, CPU)."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from ltsearch.data.samplers import build_sampler
from ltsearch.errors import UserError
from ltsearch.losses import build_loss
from ltsearch.losses.hrdc import class_levels, hierarchical_factors
from ltsearch.methods import MethodContext, make_method
from ltsearch.methods.sdnhl import kl_divergence, sdn_loss
from ltsearch.models import build_model
from ltsearch.spec import ExperimentSpec, OptimSpec

torch.set_num_threads(1)

COUNTS = [40, 20, 10, 5]


def make(name: str, counts=COUNTS, **params):
    torch.manual_seed(0)
    ctx = MethodContext(class_counts=list(counts), in_channels=1, optim=OptimSpec(epochs=10),
                        build_model=lambda head: build_model("mlp", len(counts), 1, head, hidden=16, size=4), seed=0)
    return make_method(name, params, ctx)


def ce(z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Cross-entropy written out: mean of −log(e^{z_y} / Σ_j e^{z_j})."""
    return (-(z.gather(1, y[:, None]).squeeze(1) - z.exp().sum(1).log())).mean()


# ------------------------------------------------------------------------------------------ samplers
def test_reversed_sampler_class_frequencies():
    counts = [100, 50, 20, 10]
    labels = torch.cat([torch.full((n,), c) for c, n in enumerate(counts)])
    sampler = build_sampler("reversed", labels, counts)
    drawn = torch.cat([sampler.epoch_indices(seed=0, epoch=e) for e in range(40)])  # 7,200 draws
    freq = torch.bincount(labels[drawn], minlength=4).double() / len(drawn)
    w = [max(counts) / n for n in counts]  # BBN Eq. 4: w_i = N_max / N_i, P_i = w_i / Σ w
    expected = torch.tensor([wi / sum(w) for wi in w], dtype=torch.float64)  # 1/18, 2/18, 5/18, 10/18
    assert torch.allclose(freq, expected, atol=0.02)
    assert freq.argmax() == 3 and freq.argmin() == 0  # the rarest class is drawn most


# ------------------------------------------------------------------------------------------ BBN
def test_bbn_mixed_logits_and_loss():
    m = make("bbn")
    m.train()
    assert m.neck_r is not m.net.neck and m.classifier_r is not m.net.classifier
    assert all(torch.equal(a, b) for a, b in zip(m.neck_r.parameters(), m.net.neck.parameters()))  # deepcopy
    assert set(m.streams(0)) == {"main", "rebal"} and m.streams(0)["rebal"].sampler == "reversed"
    torch.manual_seed(1)
    xc, xr = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    yc, yr = torch.tensor([0, 0, 1, 0, 2, 0]), torch.tensor([3, 2, 3, 1, 3, 0])
    batch = {"main": {"weak": xc, "y": yc}, "rebal": {"weak": xr, "y": yr}}
    alpha = 1 - 0.5 ** 2  # parabolic decay at p = 0.5
    with torch.no_grad():
        zc = m.net.classifier(m.net.neck(m.net.body(xc)))
        zr = m.classifier_r(m.neck_r(m.net.body(xr)))
        z = alpha * zc + (1 - alpha) * zr
        expected = alpha * ce(z, yc) + (1 - alpha) * ce(z, yr)
        out = m.training_step(batch, 0.5)
    assert out["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
    assert m.schedule_values(0.5) == {"alpha": pytest.approx(0.75)}
    m.eval()
    with torch.no_grad():
        h = m.net.body(xc)
        z_inf = 0.5 * m.net.classifier(m.net.neck(h)) + 0.5 * m.classifier_r(m.neck_r(h))
        assert torch.allclose(m.predict(xc), z_inf, atol=1e-6)
    norms = m.classifier_weight_norms()
    assert norms.shape == (4,)
    wc, wr = m.net.classifier.weight, m.classifier_r.weight
    assert torch.allclose(norms, (wc.norm(dim=1) ** 2 + wr.norm(dim=1) ** 2).sqrt().detach())


def test_bbn_params():
    m = make("bbn", rebal_sampler="class_balanced", adaptor="equal", infer_alpha=0.3)
    assert m.streams(0)["rebal"].sampler == "class_balanced" and m.adaptor(0.9) == 0.5
    with pytest.raises(UserError, match="rebal_sampler"):
        make("bbn", rebal_sampler="revrsed")
    with pytest.raises(UserError, match="unknown key"):
        make("bbn", alpha=0.5)
    b = make("bbn", adaptor="beta", adaptor_params={"a": 0.2, "b": 0.2})
    b.on_epoch_start(3, 0.3)
    first = [b.adaptor(0.3) for _ in range(3)]
    b.on_epoch_start(3, 0.3)  # re-seeded per epoch: a resumed trial draws the same α
    assert [b.adaptor(0.3) for _ in range(3)] == first


# ------------------------------------------------------------------------------------------ SDNHL
def test_kl_by_hand():
    zs, zw = torch.tensor([[2.0, 0.0, -1.0]]), torch.tensor([[0.0, 1.0, 0.5]])
    ps, pw = zs.softmax(1)[0].tolist(), zw.softmax(1)[0].tolist()
    expected = sum(a * math.log(a / b) for a, b in zip(ps, pw))
    assert kl_divergence(zs, zw).item() == pytest.approx(expected, rel=1e-6)
    assert kl_divergence(zs, zs).item() == pytest.approx(0.0, abs=1e-7)


def test_sdnhl_kl_term_lowers_the_loss_when_branches_diverge():
    cls_s, cls_w, lam, cap = torch.tensor(1.2), torch.tensor(0.8), 0.3, math.log(4)
    zw = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    same = sdn_loss(cls_s, cls_w, kl_divergence(zw, zw), lam, cap)
    apart = sdn_loss(cls_s, cls_w, kl_divergence(torch.tensor([[0.0, 0.0, 0.0, 1.0]]), zw), lam, cap)
    assert same.item() == pytest.approx(lam * 2.0)  # KL = 0: classification only
    assert apart.item() < same.item()  # maximising KL = minimising −KL
    far = sdn_loss(cls_s, cls_w, torch.tensor(50.0), lam, cap)
    assert far.item() == pytest.approx(lam * 2.0 - (1 - lam) * cap)  # bounded below by the cap
    # and through the method counting E_curr from 0, at p = 0 (λ = 0) the loss is −min(KL, log C) ≤ 0
    m = make("sdnhl", e_curr_start=0)
    m.on_epoch_start(0, 0.0)
    torch.manual_seed(2)
    x = torch.randn(5, 1, 4, 4)
    with torch.no_grad():
        out = m.training_step({"main": {"weak": x, "strong": x + 0.5 * torch.randn_like(x), "y": torch.arange(5) % 4}}, 0.0)
    assert out["loss"].item() == pytest.approx(-min(float(out["kl"]), math.log(4)), rel=1e-5)
    assert out["loss"].item() <= 0


def test_sdnhl_kl_sign_cap_and_lambda_start():
    cls_s, cls_w, lam = torch.tensor(1.2), torch.tensor(0.8), 0.3
    kl = torch.tensor(50.0)
    assert sdn_loss(cls_s, cls_w, kl, lam, None).item() == pytest.approx(lam * 2.0 - (1 - lam) * 50.0)  # no cap
    assert sdn_loss(cls_s, cls_w, kl, lam, 1.0, "literal").item() == pytest.approx(lam * 2.0 + (1 - lam) * 50.0)
    assert make("sdnhl").kl_max == pytest.approx(math.log(4)) and make("sdnhl", kl_max=None).kl_max is None
    with pytest.raises(UserError, match="kl_max"):
        make("sdnhl", kl_max=-1.0)
    # λ = (E_curr / E_total)^γ with E_curr = 1 … E (E = 10 here): 1/10 in the first epoch, 1 in the last
    m = make("sdnhl", gamma=2.0)
    assert m.lambda_at(0.0) == pytest.approx(0.1 ** 2) and m.lambda_at(0.9) == pytest.approx(1.0)
    assert make("sdnhl", gamma=2.0, e_curr_start=0).lambda_at(0.0) == 0.0


def test_hard_aware_weight_update_over_two_epochs():
    loss = build_loss("hard_aware", COUNTS, momentum=0.9, beta=0.0)  # beta = 0: class weights all 1
    acc1 = torch.tensor([0.5, 0.25, 0.0, float("nan")])  # 0 → the floor eps = 0.1; NaN (no val images) → 1
    loss.update(acc1)
    w1 = [0.9 * 1 + 1 / 0.5, 0.9 * 1 + 1 / 0.25, 0.9 * 1 + 1 / 0.1, 0.9 * 1 + 1]
    assert loss.hard_weights.tolist() == pytest.approx(w1)
    acc2 = torch.tensor([1.0, 0.5, 0.1, 0.2])
    loss.update(acc2)
    w2 = [0.9 * w + 1 / a for w, a in zip(w1, acc2.tolist())]
    assert loss.hard_weights.tolist() == pytest.approx(w2)
    z, y = torch.tensor([[1.0, 0.0, 0.0, 0.0], [0.0, 2.0, 1.0, 0.0], [0.5, 0.5, 0.5, 0.0]]), torch.tensor([0, 2, 3])
    nll = [-math.log(r.softmax(0)[t].item()) for r, t in zip(z, y.tolist())]
    expected = sum(w2[t] * n for t, n in zip(y.tolist(), nll)) / 3  # (1/M) Σ w̃ w (−log p)
    assert loss(z, y).item() == pytest.approx(expected, rel=1e-5)
    cb = build_loss("hard_aware", COUNTS, momentum=0.9, beta=0.99)  # with class-balanced weights w^c
    beta = 0.99
    w = [(1 - beta) / (1 - beta ** n) for n in COUNTS]
    w = [wi / sum(w) * 4 for wi in w]
    assert cb(z, y).item() == pytest.approx(sum(w[t] * n for t, n in zip(y.tolist(), nll)) / 3, rel=1e-5)
    weighted = build_loss("hard_aware", COUNTS, momentum=0.9, beta=0.99, reduction="weighted")
    weighted.update(acc1)
    ww = [w1[t] * w[t] for t in y.tolist()]  # Σ w̃ w (−log p) / Σ w̃ w: DRW's weighted-mean scale
    assert weighted(z, y).item() == pytest.approx(sum(a * n for a, n in zip(ww, nll)) / sum(ww), rel=1e-5)


def test_sdnhl_switches_to_hard_aware_and_reports_schedules():
    m = make("sdnhl", hl_epoch=3, drw_epoch=2, gamma=2.0)
    stats = SimpleNamespace(per_class_acc=torch.tensor([1.0, 0.5, 0.5, 0.25]))
    m.on_epoch_start(1, 0.1)
    m.on_epoch_end(1, stats)  # before the last epoch ahead of the switch: w̃ does not accumulate yet
    assert m.hl.hard_weights.tolist() == [0.0] * 4
    m.on_epoch_start(2, 0.2)
    assert m.schedule_values(0.2) == {"lambda": pytest.approx(0.3 ** 2), "hl_on": 0.0, "drw_on": 1.0}  # E_curr = 3
    m.on_epoch_end(2, stats)  # the epoch before the switch seeds w̃ = 0.9·0 + 1/acc
    assert m.hl.hard_weights.tolist() == pytest.approx([1.0, 2.0, 2.0, 4.0])
    m.on_epoch_start(3, 0.3)
    assert m.schedule_values(0.3)["hl_on"] == 1.0
    m.on_epoch_end(3, stats)
    assert m.hl.hard_weights.tolist() == pytest.approx([1.9, 3.8, 3.8, 7.6])
    always = make("sdnhl", hl_epoch=3, hl_accumulate="always")
    always.on_epoch_end(0, stats)
    assert always.hl.hard_weights.tolist() == pytest.approx([1.0, 2.0, 2.0, 4.0])
    x, y = torch.randn(4, 1, 4, 4), torch.arange(4)
    with torch.no_grad():
        zs, zw = m.branch_logits(x, x)
        expected = m.hl(30 * zs, y) + m.hl(30 * zw, y)  # cosine head: HL on s·cos
        assert m.cls_loss(zs, y) + m.cls_loss(zw, y) == pytest.approx(expected.item(), rel=1e-5)
        m.eval()
        avg = ((30 * zs).softmax(1) + (30 * zw).softmax(1)) / 2
        assert torch.allclose(m.predict(x).exp(), avg, atol=1e-5)


def test_sdnhl_hard_aware_from_epoch_0_starts_from_uniform_weights():
    """No epoch precedes a switch at 0: w̃ starts at 1 (the classification loss is class-balanced CE,
    not 0); a later switch starts from 0 and is seeded by the epoch before it."""
    m = make("sdnhl", hl_epoch=0, drw_epoch=None)
    assert m.hl.hard_weights.tolist() == [1.0] * 4
    m.on_epoch_start(0, 0.0)
    x, y = torch.randn(4, 1, 4, 4), torch.arange(4)
    with torch.no_grad():
        zs, _ = m.branch_logits(x, x)
        raw = torch.tensor([(1 - 0.9999) / (1 - 0.9999 ** n) for n in COUNTS])  # Cui et al., hl_beta
        w = raw / raw.sum() * 4  # normalised to sum to C
        nll = -torch.log_softmax(30 * zs, 1)[torch.arange(4), y]
        assert m.cls_loss(zs, y).item() == pytest.approx((w[y] * nll).mean().item(), rel=1e-5) and nll.sum() > 0
    assert make("sdnhl", hl_epoch=3).hl.hard_weights.tolist() == [0.0] * 4


# ------------------------------------------------------------------------------------------ HRDC
def test_hierarchical_factor_capping_six_classes():
    counts = [100, 60, 30, 20, 10, 5]
    # CDT factors (N_max / N_i)^γ with γ = 1: 1, 5/3, 10/3, 5, 10, 20
    assert class_levels(counts) == [[0, 1], [2, 3], [4, 5]]  # thirds of the classes by count
    a = hierarchical_factors(counts, gamma=1.0)
    head_mean, med_mean, tail_mean = (1 + 5 / 3) / 2, (10 / 3 + 5) / 2, (10 + 20) / 2
    assert a.tolist() == pytest.approx([1.0, head_mean, 10 / 3, med_mean, 10.0, tail_mean])
    # γ = 0.5, shots levels (many > 50, few < 15): head {0, 1}, medium {2, 3}, tail {4, 5}
    a = hierarchical_factors(counts, gamma=0.5, levels="shots", many=50, few=15)
    raw = [(100 / n) ** 0.5 for n in counts]
    capped = [min(raw[i], (raw[g[0]] + raw[g[1]]) / 2) for g in ([0, 1], [2, 3], [4, 5]) for i in g]
    assert a.tolist() == pytest.approx(capped, rel=1e-6)
    loss = build_loss("hrdc", counts, gamma=1.0)
    z, y = torch.randn(3, 6), torch.tensor([0, 4, 5])
    assert loss(z, y).item() == pytest.approx(ce(z / loss.factors, y).item(), rel=1e-5)


def test_hrdc_loss_and_fusion():
    m = make("hrdc", rebal_loss_params={"gamma": 0.5})
    x, y = torch.randn(5, 1, 4, 4), torch.tensor([0, 1, 2, 3, 3])
    with torch.no_grad():
        f = m.net.features(x)
        zc, zr = m.net.classifier(f), m.classifier_r(f)
        alpha = (0.25 - 1) ** 2
        expected = alpha * ce(zc, y) + (1 - alpha) * ce(zr / m.rebal_loss.factors, y)
        assert m.training_step({"main": {"weak": x, "y": y}}, 0.25)["loss"].item() == pytest.approx(expected.item(), rel=1e-5)
        assert m.schedule_values(0.25) == {"alpha": pytest.approx(0.5625)}
        m.eval()
        assert torch.allclose(m.predict(x), m.classifier_r(m.net.features(x)), atol=1e-6)  # tail fusion, w = 1
    for fusion, w, weights in [("average", 1.0, (0.5, 0.5)), ("head", 0.8, (0.8, 0.2)), ("tail", 0.7, (0.3, 0.7))]:
        assert make("hrdc", fusion=fusion, fusion_weight=w).params.fusion_weights() == pytest.approx(weights)
    assert make("hrdc", strategy="segmented").alpha(0.6) == 0.0
    assert make("hrdc", rebal_loss="ce").rebal_loss.__class__.__name__ == "CrossEntropy"
    with pytest.raises(UserError, match="rebal_loss"):
        make("hrdc", rebal_loss="hrdcc")


# ------------------------------------------------------------------------------------------ smoke
def _spec(method: dict) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "data": {"dataset": "synthetic", "imbalance": 10, "max_per_class": 30, "val_per_class": 5,
                 "options": {"num_classes": 5, "test_per_class": 5}},
        "model": {"arch": "mlp", "options": {"hidden": 32}},
        "method": method,
        "optim": {"epochs": 2, "warmup": 0, "batch_size": 32, "lr": 0.05, "milestones": []},
        "device": "cpu", "seed": 0,
    })


@pytest.mark.parametrize("method,keys", [
    ({"name": "bbn"}, {"alpha": [1.0, 0.75]}),
    ({"name": "sdnhl", "hl_epoch": 1, "drw_epoch": 1}, {"lambda": [0.5, 1.0], "hl_on": [0.0, 1.0]}),
    ({"name": "hrdc"}, {"alpha": [1.0, 0.25]}),
])
def test_smoke_two_epochs(method, keys):
    from ltsearch.train.loop import run_trial

    out = run_trial(_spec(method))
    assert len(out.epochs) == 2
    assert all(math.isfinite(r.train_loss) for r in out.epochs)
    for key, values in keys.items():
        assert [r.schedules[key] for r in out.epochs] == pytest.approx(values)
    assert math.isfinite(out.summary["test_acc"])
    assert all(math.isfinite(row["weight_norm"]) for row in out.per_class)


def test_sdnhl_accuracy_floor_is_ltsearchs_cap_of_the_hard_weight():
    """The paper writes w̃ += 1/acc with no floor; ltsearch's default hl_eps = 0.1 caps an update at 10.
    Fashion-MNIST-LT's shirt class at the switch: 0.9 % training accuracy → w̃ = 10 (0.01 gave 100)."""
    from ltsearch.methods import sdnhl

    assert sdnhl.SDNHLParams().hl_eps == 0.1
    assert "ltsearch's choice" in sdnhl.__doc__ and "cap" in sdnhl.__doc__
    acc = torch.tensor([0.97, 0.5, 0.009, 1.0])
    m = make("sdnhl", hl_epoch=3)  # w̃ starts at 0 and its first update is 1/max(acc, 0.1)
    m.on_epoch_end(2, SimpleNamespace(per_class_acc=acc))
    assert m.hl.hard_weights.tolist() == pytest.approx([1 / 0.97, 2.0, 10.0, 1.0])
    old = make("sdnhl", hl_epoch=3, hl_eps=0.01)
    old.on_epoch_end(2, SimpleNamespace(per_class_acc=acc))
    assert old.hl.hard_weights.tolist() == pytest.approx([1 / 0.97, 2.0, 100.0, 1.0])
