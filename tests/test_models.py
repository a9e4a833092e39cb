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
