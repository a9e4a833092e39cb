import math

import pytest
import torch

from ltsearch.models import NormedLinear, build_model


def test_resnet32_size_and_shape():
    m = build_model("resnet32", 10, 3)
    n = sum(p.numel() for p in m.parameters())
    assert 0.45e6 < n < 0.48e6  # ~0.46 M
    assert m(torch.randn(2, 3, 32, 32)).shape == (2, 10)
    assert m.features(torch.randn(2, 3, 32, 32)).shape == (2, 64)


def test_normed_head_is_cosine():
    head = NormedLinear(4, 3)
    f = torch.randn(5, 4)
    w = head.weight
    expected = (f / f.norm(dim=1, keepdim=True)) @ (w / w.norm(dim=0, keepdim=True))
    assert torch.allclose(head(f), expected, atol=1e-6)
    assert head(f).abs().max() <= 1 + 1e-6


def test_small_models():
    assert build_model("small_cnn", 10, 1)(torch.randn(3, 1, 8, 8)).shape == (3, 10)
    assert build_model("mlp", 10, 1, hidden=16)(torch.randn(3, 1, 8, 8)).shape == (3, 10)


def test_lenet_architecture_and_parameter_count_by_hand():
    m = build_model("lenet", 10, 1)
    # conv 1→32 (3×3, no bias) + BN(32), conv 32→64 + BN(64), FC 64·7·7→128, classifier 128→10
    by_hand = 1 * 32 * 9 + 2 * 32 + 32 * 64 * 9 + 2 * 64 + (64 * 7 * 7 * 128 + 128) + (128 * 10 + 10)
    assert sum(p.numel() for p in m.parameters()) == by_hand == 421_738
    x = torch.randn(3, 1, 28, 28)
    assert m.body(x).shape == (3, 64, 7, 7)  # two 2×2 max-pools: 28 → 14 → 7
    assert m.features(x).shape == (3, 128) and m.feat_dim == 128 and m(x).shape == (3, 10)
    assert [type(layer).__name__ for layer in m.neck] == ["Flatten", "Linear", "ReLU"]  # a branch's own FC layer
    # other sizes and colour: the conv maps are pooled to 7×7, so the FC layer keeps its shape
    assert build_model("lenet", 5, 3)(torch.randn(2, 3, 32, 32)).shape == (2, 5)
    assert build_model("lenet", 10, 1)(torch.randn(2, 1, 8, 8)).shape == (2, 10)


@pytest.mark.parametrize("arch, blocks", [("resnet8", 1), ("resnet20", 3), ("resnet32", 5)])
def test_cifar_resnets_on_28x28_grey_images(arch, blocks):
    grey, rgb = build_model(arch, 10, 1), build_model(arch, 10, 3)
    x = torch.randn(2, 1, 28, 28)
    assert grey.body(x).shape == (2, 32, 14, 14)  # stage 2 halves 28 → 14 (option-A shortcut: 28[::2] = 14)
    assert grey.features(x).shape == (2, 64) and grey(x).shape == (2, 10)
    # only the stem differs from the 3-channel model: 16 filters of 3×3 over 1 channel instead of 3
    n = lambda m: sum(p.numel() for p in m.parameters())  # noqa: E731
    assert n(rgb) - n(grey) == 16 * 9 * 2
    # 3 stages × blocks × 2 convs + stem = depth − 1 convolutions
    assert sum(isinstance(mod, torch.nn.Conv2d) for mod in grey.modules()) == 6 * blocks + 1


def _lenet_trial(method: dict):
    from conftest import tiny_experiment
    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial

    exp = tiny_experiment(**{"method": method, "model": {"arch": "lenet", "options": {"width": 8, "hidden": 16}},
                             "data.options": {"size": 28}})
    return run_trial(ExperimentSpec.model_validate(exp), stage_cache=False)


def test_every_method_trains_with_lenet():
    """Every registered method (the resume cases: single, BBN, SDNHL, HRDC, cRT, LWS, τ-norm, GLAG,
    BWLM) builds on ``lenet`` and trains on 28×28 grey images; two-branch methods get their own FC."""
    from test_resume import METHOD_CASES

    for case, method in METHOD_CASES.items():
        method = {**method, **({"stage2_epochs": 1} if "stage2_epochs" in method else {})}
        out = _lenet_trial(method)
        assert out.summary["status"] == "ok" and math.isfinite(out.epochs[-1].train_loss), case
        assert 0 <= out.summary["test_acc"] <= 100, case


@pytest.mark.parametrize("name, branch", [("bbn", "neck_r"), ("sdnhl", "neck_s")])
def test_lenet_branches_have_their_own_fc_layer(name, branch):
    from ltsearch.methods import MethodContext, make_method
    from ltsearch.spec import OptimSpec

    ctx = MethodContext(class_counts=[50, 20, 5], in_channels=1, optim=OptimSpec(),
                        build_model=lambda head: build_model("lenet", 3, 1, head), model_head="auto")
    method = make_method(name, {}, ctx)
    own, shared = getattr(method, branch), method.net.neck
    assert own[1].weight.shape == shared[1].weight.shape == (128, 64 * 7 * 7)
    assert own[1].weight.data_ptr() != shared[1].weight.data_ptr()  # a copy, not the same layer
    assert method.predict(torch.randn(2, 1, 28, 28)).shape == (2, 3)
