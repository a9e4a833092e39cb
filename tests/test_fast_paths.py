"""The GPU path, checked as far as a CPU can: every registered method trains under bf16 autocast
(``fast.amp: true``, which on CPU is ``torch.autocast("cpu", dtype=torch.bfloat16)``, the code path
a GPU takes with ``torch.autocast("cuda", ...)``) and under ``torch.compile`` (``fast.compile:
true``), through the product's own loop (``run_trial``, ``Fast.autocast``, ``apply_fast``).

What this cannot show: CUDA kernels, cuDNN's bf16 convolutions, inductor's Triton code, speed. CPU
autocast is also *stricter* than CUDA's: it leaves softmax, log_softmax, exp, sums and norms in
bf16, where CUDA autocast runs them in float32, so a loss that is accurate enough here is at least
as accurate there.

Tolerances. bf16 keeps 8 significant bits (about 3 decimal digits, relative rounding 2⁻⁹ ≈ 0.2 %
per conv/matmul output), so:

- one training step from the same weights and batch (:func:`test_bf16_step_matches_fp32`): loss
  within 1 % and the gradient's direction within cosine 0.99 of float32 (measured over 6 seeds,
  every case and stage: ≤ 0.08 % and ≥ 0.998);
- the same trained weights evaluated with and without autocast (the product's ``Loop.evaluate``):
  validation accuracy within 3 points (3 of the 100 validation images; measured ≤ 2), ≥ 95 % of
  the predictions equal (measured ≥ 98 %), validation cross-entropy within 2 % (measured ≤ 0.4 %);
- whole runs from the same seed (:func:`test_bf16_training_is_close_to_fp32`): the first epoch's
  loss within 3 % (measured ≤ 1.2 %); the final validation and test accuracy within ``FINAL_TOL``
  = 5 points (measured ≤ 2). Runs with LDAM on a cosine head (``s = 30``: ``single_ldam``,
  ``sdnhl``) are far more sensitive to a perturbation of bf16's size: their bf16 runs ended −13 to
  +3 (``single_ldam``, 10 seeds, mean −4.3) and −3 to +9 (``sdnhl``, 6 seeds) points from float32,
  while float32 runs whose only difference is the order of the sums (channels-last vs contiguous,
  a 1e-7 perturbation) stay within 2. Computing the cosine head or the LDAM loss in float32 moved
  ``single_ldam``'s mean (to −2.3 / −1.4 over 10 seeds) but not its spread, within the noise of
  10 seeds: no single op is the culprit. Their final accuracy gets ``SENSITIVE_TOL`` = 20 points;
  the step test above is their sharp check.

Compile: the ``aot_eager`` backend (dynamo's graph capture + AOT autograd, no C++ code generation:
seconds, not minutes) for every method, counting graphs with a ``CompileCounterWithBackend``;
inductor itself for two methods in the slow tests. ``torch._dynamo.config.fail_on_recompile_limit_hit``
makes a silent fall-back to eager an error.
"""

from __future__ import annotations

import copy
import dataclasses
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import tiny_experiment
from ltsearch.methods import method_plan
from ltsearch.models import build_model
from ltsearch.registry import METHODS
from ltsearch.spec import ExperimentSpec
from ltsearch.train import fast as fast_mod
from ltsearch.train.callbacks import Callback
from ltsearch.train.fast import resolve_fast
from ltsearch.train.loop import run_trial, train_epoch

EPOCHS = 2  # per stage
CASES = {  # one or more per registered method; small_cnn (conv + BatchNorm) so that autocast matters
    "single": {"name": "single", "loss": "ce", "drw_epoch": 1},
    "single_ldam": {"name": "single", "loss": "ldam", "drw_epoch": 1},  # cosine head, margins, DRW
    "single_mixup": {"name": "single", "mixup_alpha": 0.2},
    "bbn": {"name": "bbn"},
    "sdnhl": {"name": "sdnhl", "hl_epoch": 1, "drw_epoch": 1},
    "hrdc": {"name": "hrdc"},
    "crt": {"name": "crt", "stage2_epochs": EPOCHS},
    "lws": {"name": "lws", "stage2_epochs": EPOCHS},
    "tau_norm": {"name": "tau_norm", "tau": 0.7},
    "glag": {"name": "glag", "stage2_epochs": EPOCHS, "head_threshold": 30},
    "glag_lowrank": {"name": "glag", "stage2_epochs": EPOCHS, "head_threshold": 30, "afg_cov": "lowrank",
                     "afg_rank": 4},
    "bwlm": {"name": "bwlm", "stage2_epochs": EPOCHS},
}
SENSITIVE = {"single_ldam", "sdnhl"}  # LDAM on a cosine head: see the module docstring
COMPILE_CASES = sorted({c for c in CASES if c not in ("single_ldam", "single_mixup", "glag_lowrank")})
FINAL_TOL, SENSITIVE_TOL = 5.0, 20.0


def spec(case: str, **extra) -> ExperimentSpec:
    return ExperimentSpec.model_validate(tiny_experiment(**{
        "method": CASES[case], "optim.epochs": EPOCHS, "model": {"arch": "small_cnn", "options": {"width": 8}},
        **extra}))


class KeepLoop(Callback):
    """Keeps the trial's live ``Loop`` (the product's), to evaluate its final weights again."""

    loop = None

    def on_train_end(self, loop):
        self.loop = loop


class ConvDtypes:
    """(grad enabled, CPU autocast enabled, output dtype) of every Conv2d call."""

    def __init__(self):
        self.seen = set()

    def __enter__(self):
        def hook(module, args, out):
            if isinstance(module, torch.nn.Conv2d):
                self.seen.add((torch.is_grad_enabled(), torch.is_autocast_enabled("cpu"), out.dtype))

        self.handle = torch.nn.modules.module.register_module_forward_hook(hook)
        return self

    def __exit__(self, *exc):
        self.handle.remove()


def run(case: str, **extra):
    keep = KeepLoop()
    with ConvDtypes() as dtypes:
        out = run_trial(spec(case, **extra), stage_cache=False, callbacks=[keep])
    return out, keep.loop, dtypes.seen


def test_every_registered_method_has_a_case():
    ours = {n for n in METHODS if METHODS.get(n).__module__.startswith("ltsearch.")}  # not test plugins
    covered = {c["name"] for c in CASES.values()}
    assert covered == ours, f"add fast-path cases for {sorted(ours - covered)}"
    assert {CASES[c]["name"] for c in COMPILE_CASES} == ours, "every method needs a compile case"


def test_amp_true_means_bf16_autocast_on_cpu_too():
    fast = resolve_fast(spec("single", **{"fast.amp": True}).fast, torch.device("cpu"), build_model("small_cnn", 10, 1))
    assert fast.amp
    with fast.autocast():
        assert torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16


# ---------------------------------------------------------------- bf16 autocast
class StepCheck(Callback):
    """At each trained stage's start (after ``begin_stage``): one training step on one batch, through
    the loop's ``train_epoch``, in float32 and under the loop's bf16 autocast, from the same weights
    (an SGD with lr 0 leaves them as they are; the state and the global RNG are restored before each)."""

    def __init__(self):
        self.results = []

    def on_stage_start(self, loop, stage):
        if stage.epochs == 0:
            return
        method = loop.method
        method.train()
        method.on_epoch_start(0, 0.0)
        batch = next(iter(loop.batches.epoch(method.streams(0), 0, stage.optim.batch_size)))
        params = method.trainable_parameters(stage)
        saved, rng = copy.deepcopy(method.state_dict()), torch.get_rng_state()
        grads, losses = {}, {}
        for amp in (False, True):
            method.load_state_dict(saved)
            torch.set_rng_state(rng)  # the same draws from the global generator (mixup's λ)
            method.on_epoch_start(0, 0.0)  # re-seeds per-epoch draws (mixup, BBN's α, GLAG's plan)
            fast = dataclasses.replace(loop.fast, amp=amp)
            opt = torch.optim.SGD(params, lr=0.0)
            losses[amp], _ = train_epoch(loop.step_fn, opt, [batch], 0.0, fast, loop.dist, loop.device,
                                         loop.exp.method.name, len(loop.counts))
            grads[amp] = torch.cat([p.grad.flatten() for p in params if p.grad is not None])
            assert all(p.grad is None or p.grad.dtype == p.dtype for p in params)
            for p in params:
                p.grad = None
        method.load_state_dict(saved)
        cos = float(F.cosine_similarity(grads[True].double(), grads[False].double(), dim=0))
        self.results.append((stage.name, losses[False], losses[True], cos))


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_step_matches_fp32(case):
    check = StepCheck()
    run_trial(spec(case, **{"optim.epochs": 1}), stage_cache=False, callbacks=[check])
    assert check.results, "no trained stage"
    for stage, l32, l16, cos in check.results:
        assert math.isfinite(l16), f"{case}/{stage}: bf16 step loss {l16}"
        assert l16 == pytest.approx(l32, rel=1e-2), f"{case}/{stage}: bf16 loss {l16} vs fp32 {l32}"
        assert cos >= 0.99, f"{case}/{stage}: bf16 gradient at cosine {cos:.4f} from fp32's"


@pytest.mark.parametrize("case", sorted(CASES))
def test_bf16_training_is_close_to_fp32(case):
    out32, _, dtypes32 = run(case)
    out16, loop16, dtypes16 = run(case, **{"fast.amp": True})
    assert dtypes32 == {(True, False, torch.float32), (False, False, torch.float32)}
    # training steps and evaluation autocast; only a stage's set-up pass (GLAG's feature statistics
    # in begin_stage, outside the step) may run without autocast, in float32
    assert {(True, True, torch.bfloat16), (False, True, torch.bfloat16)} <= dtypes16
    assert dtypes16 <= {(True, True, torch.bfloat16), (False, True, torch.bfloat16), (False, False, torch.float32)}
    losses16 = [r.train_loss for r in out16.epochs]
    assert all(math.isfinite(v) for v in losses16), losses16
    assert losses16[0] == pytest.approx(out32.epochs[0].train_loss, rel=3e-2)
    tol = SENSITIVE_TOL if case in SENSITIVE else FINAL_TOL
    for key in ("val_acc", "test_acc"):
        assert math.isfinite(out16.summary[key])
        assert abs(out16.summary[key] - out32.summary[key]) <= tol, (key, out16.summary[key], out32.summary[key])

    # the same (bf16-trained) weights evaluated by the loop with and without autocast
    with_amp = loop16.evaluate("val")
    loop16.fast = dataclasses.replace(loop16.fast, amp=False)
    without = loop16.evaluate("val")
    assert abs(with_amp.acc - without.acc) <= 3.0, (with_amp.acc, without.acc)
    part = loop16.data.val
    x = loop16.batches.prepare(part.x)
    with torch.no_grad():
        p32 = loop16.method.predict(x).float()
        loop16.fast = dataclasses.replace(loop16.fast, amp=True)
        with loop16.fast.autocast():
            p16 = loop16.method.predict(x).float()
    assert float((p16.argmax(1) == p32.argmax(1)).float().mean()) >= 0.95
    ce32, ce16 = (float(F.cross_entropy(p, part.y)) for p in (p32, p16))
    assert ce16 == pytest.approx(ce32, rel=2e-2)


# ---------------------------------------------------------------- torch.compile
def graph_bound(case: str) -> int:
    """Graphs a trial may compile: 2 compiled modules (the network's body and neck) × its phases
    (training; evaluation; for decoupled methods the frozen backbone of stage 2) × 2 batch shapes
    (the first batch size, then one graph with a dynamic batch dimension). Measured with bf16:
    6 graphs for every one-stage method, 8 for every two-stage one; a recompilation per step (a
    Python scalar such as the progress reaching a compiled module) would blow through it."""
    phases = 2 + (len(method_plan(spec(case)).stages) > 1)
    return 2 * phases * 2


@pytest.fixture
def counted_compile(monkeypatch):
    """``fast.compile: true`` with a graph-counting backend; a recompile-limit hit (dynamo's silent
    fall-back to eager) raises; dynamo's caches and counters start empty."""
    from torch._dynamo.testing import CompileCounterWithBackend
    from torch._dynamo.utils import counters

    def make(backend: str):
        counter = CompileCounterWithBackend(backend)
        monkeypatch.setattr(fast_mod, "COMPILE_BACKEND", counter)
        return counter

    torch._dynamo.reset()
    counters.clear()
    monkeypatch.setattr(torch._dynamo.config, "fail_on_recompile_limit_hit", True)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", torch._dynamo.config.recompile_limit)
    yield make
    torch._dynamo.reset()


def compiled_run(case: str, counter, amp: bool = True, **extra):
    from torch._dynamo.utils import counters

    out = run_trial(spec(case, **{"fast.amp": amp, "fast.compile": True, **extra}), stage_cache=False)
    return out, counter.frame_count, dict(counters["graph_break"])


def assert_same_losses(case: str, got, want) -> None:
    """Compiled vs eager: the same ops, fused or decomposed differently, so bf16 rounds a little
    differently; the first epoch within 1 %, then 2 % (the sensitive cases: only finite later)."""
    got, want = [r.train_loss for r in got.epochs], [r.train_loss for r in want.epochs]
    assert all(math.isfinite(v) for v in got), got
    assert got[0] == pytest.approx(want[0], rel=1e-2)
    if case not in SENSITIVE:
        assert got == pytest.approx(want, rel=2e-2)


@pytest.mark.parametrize("case", COMPILE_CASES)
def test_compile_trains_with_bounded_graphs(case, counted_compile):
    """bf16 + compile (the GPU configuration, channels-last being on for conv nets): no error, no
    graph break, at most :func:`graph_bound` graphs, and the losses of the eager bf16 run."""
    counter = counted_compile("aot_eager")
    out, graphs, breaks = compiled_run(case, counter)
    assert breaks == {}, f"graph breaks: {breaks}"
    assert 0 < graphs <= graph_bound(case), f"{case}: {graphs} graphs (bound {graph_bound(case)})"
    assert_same_losses(case, out, run_trial(spec(case, **{"fast.amp": True}), stage_cache=False))


def test_recompile_limit_covers_a_two_stage_method(counted_compile, monkeypatch):
    """BWLM in float32 + compile needs 10 graphs (training, evaluation and the frozen stage 2, each
    at two batch shapes, and a CPU convolution guard that gives batches under 16 their own graph).
    With dynamo's default limit (8, shared by every compiled body and neck) the last ones fell back
    to eager; ``apply_fast`` raises it to ``fast.RECOMPILE_LIMIT``."""
    counter = counted_compile("aot_eager")
    out, graphs, breaks = compiled_run("bwlm", counter, amp=False)
    assert 8 < graphs <= graph_bound("bwlm") and breaks == {}, (graphs, breaks)
    torch._dynamo.reset()
    monkeypatch.setattr(fast_mod, "RECOMPILE_LIMIT", 8)
    monkeypatch.setattr(torch._dynamo.config, "recompile_limit", 8)
    with pytest.raises(Exception, match="recompile_limit"):
        compiled_run("bwlm", counted_compile("aot_eager"), amp=False)


def test_a_second_trial_of_the_same_model_reuses_the_graphs(counted_compile):
    """What a Ray worker with ``reuse_actors`` does: the next trials (another seed, another method
    on the same model) compile nothing new."""
    counter = counted_compile("aot_eager")
    compiled_run("crt", counter)
    first = counter.frame_count
    compiled_run("crt", counter, seed=1)
    compiled_run("single", counter)
    assert counter.frame_count == first


@pytest.mark.slow
@pytest.mark.parametrize("case", ["single", "crt"])
def test_compile_with_inductor(case, counted_compile):
    """Inductor's C++ code generation on CPU (minutes on a cold cache: slow)."""
    counter = counted_compile("inductor")
    out, graphs, breaks = compiled_run(case, counter)
    assert breaks == {} and 0 < graphs <= graph_bound(case), (graphs, breaks)
    eager = run_trial(spec(case, **{"fast.amp": True}), stage_cache=False)
    assert_same_losses(case, out, eager)
    assert abs(out.summary["val_acc"] - eager.summary["val_acc"]) <= FINAL_TOL
