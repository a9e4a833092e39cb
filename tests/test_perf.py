"""Performance switches and the bench: batch augmentation against torchvision's reference
transforms, autocast never on CPU, channels-last numerically equal to contiguous, compile off by
default, and ``ltsearch bench`` smoke runs (keys and finite positive values, never times)."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_experiment
from ltsearch.data.augment import crop_flip, random_crop, random_flip
from ltsearch.models import build_model
from ltsearch.spec import ExperimentSpec, FastSpec
from ltsearch.train.fast import apply_fast, resolve_fast
from ltsearch.train.loop import run_trial

tv = pytest.importorskip("torchvision")
T = tv.transforms


def _images(n=8, c=3, s=32, seed=0):
    return torch.rand(n, c, s, s, generator=torch.Generator().manual_seed(seed))


def test_random_crop_equals_torchvision_crop_at_the_drawn_offsets():
    x, pad = _images(), 4
    out = random_crop(x, torch.Generator().manual_seed(5), pad)
    g = torch.Generator().manual_seed(5)  # replay the draws: rows then columns
    oy = torch.randint(0, 2 * pad + 1, (len(x),), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (len(x),), generator=g)
    for i in range(len(x)):
        ref = T.functional.crop(T.functional.pad(x[i], pad, fill=0), int(oy[i]), int(ox[i]), 32, 32)
        assert torch.equal(out[i], ref)
    assert out.shape == x.shape and out.is_contiguous()


def _reference_crop_flip(x, g, pad):
    """The previous implementation (advanced indexing + permutes), kept as a reference."""
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = oy[:, None] + torch.arange(h)[None, :]
    cols = ox[:, None] + torch.arange(w)[None, :]
    out = xp.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2).contiguous()
    mask = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, out.flip(-1), out)


@pytest.mark.parametrize("shape,pad", [((64, 3, 32, 32), 4), ((9, 1, 8, 6), 1), ((5, 2, 7, 7), 2)])
def test_fused_crop_flip_equals_the_reference_exactly(shape, pad):
    x = torch.rand(*shape, generator=torch.Generator().manual_seed(2))
    out = crop_flip(x, torch.Generator().manual_seed(9), pad)
    assert torch.equal(out, _reference_crop_flip(x, torch.Generator().manual_seed(9), pad))
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    assert torch.equal(random_flip(random_crop(x, g1, pad), g1), crop_flip(x, g2, pad))


def test_flip_equals_torchvision_hflip_where_drawn():
    x = _images()
    out = random_flip(x, torch.Generator().manual_seed(3))
    mask = torch.rand(len(x), generator=torch.Generator().manual_seed(3)) < 0.5
    for i in range(len(x)):
        assert torch.equal(out[i], T.functional.hflip(x[i]) if mask[i] else x[i])


def _offsets(batch_out, marker):
    """(dy, dx) of each crop, read from where the marker's top-left pixel landed."""
    flat = (batch_out == marker).flatten(1).float().argmax(1)
    return flat // 32, flat % 32


def test_crop_flip_statistics_match_torchvision_random_crop_and_flip():
    """Offsets uniform over the 9×9 positions and flips at p = 0.5, as RandomCrop(32, padding=4)
    + RandomHorizontalFlip; compared on the marginal frequencies of one marked pixel."""
    n = 3000
    x = torch.zeros(1, 1, 32, 32)
    x[0, 0, 10, 12] = 1.0  # a single marked pixel (away from the borders: always inside the crop)
    ours = crop_flip(x.expand(n, -1, -1, -1).contiguous(), torch.Generator().manual_seed(0), 4)
    torch.manual_seed(0)
    ref_t = T.Compose([T.RandomCrop(32, padding=4), T.RandomHorizontalFlip()])
    ref = torch.stack([ref_t(x[0]) for _ in range(n)])
    for batch in (ours, ref):
        assert batch.shape == (n, 1, 32, 32) and float(batch.sum()) == n  # the marker survives every crop
    ry, rx = _offsets(ours, 1.0)
    ty, tx = _offsets(ref, 1.0)
    hist = lambda v: torch.bincount(v, minlength=32).float() / n  # noqa: E731
    assert (ry.unique() == ty.unique()).all()  # the same 9 rows (10 - 4 .. 10 + 4)
    assert (hist(ry) - hist(ty)).abs().max() < 0.04
    # columns: unflipped 12 - dx, flipped 31 - (12 - dx); the same 18 possible positions
    assert set(rx.tolist()) == set(tx.tolist())
    assert (hist(rx) - hist(tx)).abs().max() < 0.04
    assert abs(float((rx > 15).float().mean()) - 0.5) < 0.04  # flip rate


def test_autocast_is_off_on_cpu_and_on_for_cuda_by_default():
    model = build_model("small_cnn", 10, 3)
    for amp in ("auto", False):
        fast = resolve_fast(FastSpec(amp=amp), torch.device("cpu"), model)
        assert fast.amp is False
        with fast.autocast():
            assert not torch.is_autocast_enabled("cpu") and not torch.is_autocast_enabled("cuda")
    assert resolve_fast(FastSpec(amp=True), torch.device("cpu"), model).amp is True  # asked for: bf16 on CPU too
    assert resolve_fast(FastSpec(), torch.device("cuda"), model).amp is True
    assert resolve_fast(FastSpec(amp=False), torch.device("cuda"), model).amp is False


def test_cpu_trial_trains_in_float32():
    """A trial with the default ``amp: auto`` on CPU sees float32 logits (autocast stays off)."""
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"optim.epochs": 1}))
    seen = []
    from ltsearch.models.heads import Net

    orig = Net.forward
    try:
        def forward(self, x):
            out = orig(self, x)
            seen.append(out.dtype)
            return out

        Net.forward = forward
        run_trial(exp, stage_cache=False)
    finally:
        Net.forward = orig
    assert seen and set(seen) == {torch.float32}


@pytest.mark.parametrize("arch", ["resnet32", "small_cnn"])
def test_channels_last_matches_contiguous(arch):
    """Outputs agree in float32 to rounding; outputs and gradients agree to 1e-9 in float64 (in
    float32, train-mode gradients of the deep ResNet differ by a few per cent from rounding alone)."""
    for dtype, tol in ((torch.float32, 1e-4), (torch.float64, 1e-9)):
        torch.manual_seed(0)
        a = build_model(arch, 10, 3).to(dtype)
        b = build_model(arch, 10, 3).to(dtype)
        b.load_state_dict(a.state_dict())
        fast = resolve_fast(FastSpec(), torch.device("cpu"), b)
        assert fast.channels_last  # auto: on for conv nets
        apply_fast(b, fast)
        conv = next(m for m in b.modules() if isinstance(m, torch.nn.Conv2d))
        assert conv.weight.is_contiguous(memory_format=torch.channels_last)
        x = _images(16).to(dtype)
        xl = x.contiguous(memory_format=torch.channels_last)
        y = torch.randint(0, 10, (16,), generator=torch.Generator().manual_seed(1))
        for train in (False, True):
            a.train(train)
            b.train(train)
            la, lb = a(x), b(xl)
            torch.testing.assert_close(lb, la, rtol=tol, atol=tol)
        if dtype == torch.float64:
            F.cross_entropy(la, y).backward()
            F.cross_entropy(lb, y).backward()
            for (name, pa), pb in zip(a.named_parameters(), b.parameters()):
                torch.testing.assert_close(pb.grad, pa.grad, rtol=tol, atol=tol, msg=name)


def test_channels_last_auto_is_off_for_mlp_and_trial_results_agree():
    assert not resolve_fast(FastSpec(), torch.device("cpu"), build_model("mlp", 10, 1)).channels_last
    base = tiny_experiment(**{"model": {"arch": "small_cnn", "options": {"width": 8}}, "optim.epochs": 1})
    on = run_trial(ExperimentSpec.model_validate({**base, "fast": {"channels_last": True}}), stage_cache=False)
    off = run_trial(ExperimentSpec.model_validate({**base, "fast": {"channels_last": False}}), stage_cache=False)
    assert on.epochs[0].train_loss == pytest.approx(off.epochs[0].train_loss, rel=1e-3)


def test_compile_off_by_default_and_fast_is_part_of_the_trial_id():
    from ltsearch.trial import trial_id_for

    exp = ExperimentSpec()
    assert exp.fast.compile is False
    assert not resolve_fast(exp.fast, torch.device("cpu"), build_model("small_cnn", 10, 3)).compile
    changed = ExperimentSpec.model_validate({"fast": {"compile": True}})
    assert changed.model_dump()["fast"]["compile"] is True and trial_id_for(changed) != trial_id_for(exp)
    assert ExperimentSpec.model_validate_json(changed.model_dump_json()) == changed
    with pytest.raises(Exception):
        ExperimentSpec.model_validate({"fast": {"amp": "fp8"}})
    with pytest.raises(Exception):
        ExperimentSpec.model_validate({"fast": {"compiled": True}})  # extra keys are refused


def test_compile_flag_compiles_body_and_neck_in_place():
    model = build_model("small_cnn", 10, 3)
    keys = list(model.state_dict())
    apply_fast(model, resolve_fast(FastSpec(compile=True, channels_last=False), torch.device("cpu"), model))
    assert model.body._compiled_call_impl is not None and model.neck._compiled_call_impl is not None
    assert model.classifier._compiled_call_impl is None and list(model.state_dict()) == keys


def _finite_positive(v):
    return isinstance(v, (int, float)) and math.isfinite(v) and v > 0


def test_bench_loop_tax_and_throughput_smoke():
    from ltsearch.bench import BenchOptions
    from ltsearch.bench.loop_tax import measure_loop_tax
    from ltsearch.bench.throughput import measure_throughput

    opts = BenchOptions.smoke()
    out = {**measure_loop_tax(opts), **measure_throughput(opts)}
    for key in ("loop_tax_ratio", "cpu_images_per_s", "augment_share", "channels_last_speedup_small_cnn"):
        assert _finite_positive(out[key]), (key, out[key])


@pytest.mark.slow
def test_bench_cli_json_smoke():
    """``bench --smoke --json`` (starts Ray): exactly one JSON object on stdout with the keys."""
    import typer
    from typer.testing import CliRunner

    from ltsearch.bench.cli import bench

    app = typer.Typer()
    app.callback()(lambda: None)
    app.command("bench")(bench)
    res = CliRunner().invoke(app, ["bench", "--smoke", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout.strip())
    for key in ("loop_tax_ratio", "sweep_overhead_ratio", "per_trial_overhead_s", "cpu_images_per_s"):
        assert key in out
    for key in ("loop_tax_ratio", "sweep_overhead_ratio", "cpu_images_per_s"):
        assert _finite_positive(out[key]), (key, out[key])
    assert isinstance(out["per_trial_overhead_s"], (int, float)) and out["per_trial_overhead_s"] >= 0
    if torch.cuda.is_available():
        assert _finite_positive(out["gpu_images_per_s"]) and _finite_positive(out["gpu_packed_speedup"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU (torch.cuda.set_sync_debug_mode)")
def test_gpu_batches_and_augmentations_do_not_sync():
    """On CUDA the per-step data path (index slicing, gather, crop/flip, strong view) never waits
    for the GPU: copies of host random numbers are pinned and asynchronous."""
    from ltsearch.data import build_dataset
    from ltsearch.methods.base import Stream
    from ltsearch.train.loop import Batches, DistInfo

    exp = ExperimentSpec.model_validate(tiny_experiment(**{"data.options": {"size": 32, "channels": 3}}))
    data = build_dataset(exp.data)
    import dataclasses

    data = dataclasses.replace(data, augment="crop_flip", pad=4)
    batches = Batches(data, torch.device("cuda"), 0, DistInfo())
    streams = {"main": Stream(sampler="instance", views=("weak", "strong"))}
    it = batches.epoch(streams, 0, 16)
    next(it)  # the epoch's one index copy happens before the first batch
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        for batch in it:
            assert batch["main"]["weak"].is_cuda
    finally:
        torch.cuda.set_sync_debug_mode("default")
