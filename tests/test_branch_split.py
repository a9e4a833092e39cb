"""BBN's and SDNHL's branches share all but the last residual block (BBN §4.2 and its official code):
the branch-specific part is counted parameter by parameter, by hand, against the official layout."""

from __future__ import annotations

import pytest
import torch

from ltsearch.errors import UserError
from ltsearch.methods import MethodContext, make_method
from ltsearch.models import build_model
from ltsearch.spec import OptimSpec

C = 10


def basic_block_params(ch: int) -> int:
    """BasicBlock(ch→ch): two 3×3 convs without bias + two BatchNorm(ch) (weight and bias each)."""
    return 2 * (ch * ch * 3 * 3) + 2 * (2 * ch)


def bottleneck_params(inp: int, width: int) -> int:
    """torchvision Bottleneck(inp → width → 4·width = inp), no downsample: 1×1, 3×3, 1×1 convs + 3 BN."""
    return inp * width + 2 * width + width * width * 9 + 2 * width + width * inp + 2 * inp


def linear_params(d: int, c: int) -> int:
    return d * c + c


def n_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def trunk_params(arch: str) -> int:
    """The single-branch network without its classifier."""
    net = build_model(arch, C, 3, "linear")
    return n_params(net) - n_params(net.classifier)


def method(name: str, arch: str, **params):
    torch.manual_seed(0)
    ctx = MethodContext(class_counts=[50 - 4 * i for i in range(C)], in_channels=3, optim=OptimSpec(epochs=4),
                        build_model=lambda head: build_model(arch, C, 3, head), seed=0)
    return make_method(name, params, ctx)


def test_block_parameter_formulas_match_the_blocks():
    from torchvision.models.resnet import Bottleneck

    from ltsearch.models.resnet_cifar import BasicBlock

    assert n_params(BasicBlock(64, 64)) == basic_block_params(64) == 73_984
    assert n_params(Bottleneck(2048, 512)) == bottleneck_params(2048, 512) == 4_462_592


def test_bbn_resnet32_duplicates_exactly_one_basic_block():
    m = method("bbn", "resnet32")
    extra = basic_block_params(64) + linear_params(64, C)  # the re-balancing branch: one block + its classifier
    assert n_params(m) == trunk_params("resnet32") + linear_params(64, C) + extra
    assert len(m.neck_r[0]) == 1 and len(m.net.neck[0]) == 1  # one BasicBlock per branch, then pooling
    assert len(m.net.body[1]) == 4  # layer3's first n − 1 = 4 blocks are shared
    # the split moves modules, it does not change the network: the conventional branch is ResNet-32
    ref = build_model("resnet32", C, 3, "linear")
    assert n_params(m.net) == n_params(ref)
    # the old reading (whole last stage per branch) stays available
    whole = method("bbn", "resnet32", branch_blocks=None)
    # layer3 = BasicBlock(32→64, stride 2; option-A shortcut, no parameters) + 4 × BasicBlock(64→64)
    layer3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * (2 * 64)) + 4 * basic_block_params(64)
    assert n_params(whole) == trunk_params("resnet32") + 2 * linear_params(64, C) + layer3


def test_bbn_resnet50_duplicates_the_last_bottleneck_of_layer4():
    m = method("bbn", "resnet50")
    extra = bottleneck_params(2048, 512) + linear_params(2048, C)
    assert n_params(m) == trunk_params("resnet50") + linear_params(2048, C) + extra


def test_sdnhl_follows_bbn_and_share_neck_shares_everything():
    m = method("sdnhl", "resnet32", s=30.0)
    normed = lambda: 64 * C  # noqa: E731 - the cosine head: a weight matrix, no bias
    assert n_params(m) == trunk_params("resnet32") + 2 * normed() + basic_block_params(64)
    shared = method("sdnhl", "resnet32", share_neck=True)
    assert n_params(shared) == trunk_params("resnet32") + 2 * normed()
    assert shared.neck_s is shared.net.neck


def test_branch_blocks_out_of_range_is_a_user_error():
    with pytest.raises(UserError, match=r"branch_blocks: 6: .*has 5 block"):
        method("bbn", "resnet32", branch_blocks=6)
    with pytest.raises(UserError, match="branch_blocks"):
        method("sdnhl", "small_cnn", branch_blocks=2)  # small_cnn's neck is one conv layer
    assert n_params(method("bbn", "small_cnn")) == n_params(method("bbn", "small_cnn", branch_blocks=None))


@pytest.mark.parametrize("name, params", [("bbn", {}), ("sdnhl", {}), ("sdnhl", {"share_neck": True})])
def test_every_parameter_gets_a_gradient(name, params):
    """DDP's find_unused_parameters stays False: one step reaches every parameter."""
    m = method(name, "resnet8", **params)
    assert not m.find_unused_parameters
    m.train()
    m.on_epoch_start(1, 0.5)
    x, y = torch.randn(4, 3, 16, 16), torch.tensor([0, 1, 2, 3])
    batch = {"main": {"weak": x, "strong": x + 0.1, "y": y}, "rebal": {"weak": x.flip(0), "y": y.flip(0)}}
    m.training_step(batch, 0.5)["loss"].backward()
    assert [n for n, p in m.named_parameters() if p.grad is None] == []
