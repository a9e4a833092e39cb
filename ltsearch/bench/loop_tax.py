"""Loop tax: ``run_trial`` against a minimal hand-written PyTorch loop doing the same work (same
model, data, batch size, epochs, augmentation, memory format, per-epoch validation and a final test
pass). Both sides run in this process with one torch thread, interleaved, and the ratio of their
CPU times is taken per pair (whole runs of thousands of images, so the per-pair ratios agree to a
few thousandths); the median and the spread (max − min) of the pairs are reported."""

from __future__ import annotations

from typing import Any, Callable

import torch
import torch.nn.functional as F

from ltsearch.bench.common import BenchOptions, bench_data, bench_experiment, interleaved, median, spread, timed_cpu


def _accuracy(model: torch.nn.Module, x8: torch.Tensor, y: torch.Tensor, prep: Callable[[torch.Tensor], torch.Tensor],
              batch_size: int = 512) -> float:
    model.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(y), batch_size):
            correct += int((model(prep(x8[s:s + batch_size])).argmax(1) == y[s:s + batch_size]).sum())
    return 100.0 * correct / max(len(y), 1)


def bare_train(exp: Any, data: Any) -> float:
    """The minimal hand-written loop: the same model, optimiser, batches, augmentation, memory
    format and evaluation passes as ``run_trial`` for a ``single``/``ce`` experiment."""
    from ltsearch.data.augment import normalize, to_float
    from ltsearch.models import build_model
    from ltsearch.registry import AUGMENTS
    from ltsearch.train.fast import apply_fast, resolve_fast

    torch.manual_seed(exp.seed)
    model = build_model(exp.model.arch, data.num_classes, data.image_shape[0], "linear")
    fast = resolve_fast(exp.fast, torch.device("cpu"), model)
    apply_fast(model, fast)
    o = exp.optim
    opt = torch.optim.SGD(model.parameters(), lr=o.lr, momentum=o.momentum, weight_decay=o.weight_decay)
    mean, std = torch.tensor(data.mean), torch.tensor(data.std)
    augment = AUGMENTS.get(data.augment)
    x, y = data.train.x, data.train.y

    def prep(xb: torch.Tensor, g: torch.Generator | None = None) -> torch.Tensor:
        xf = to_float(xb) if g is None else augment(to_float(xb), g, data.pad)
        return normalize(xf, mean, std).contiguous(memory_format=fast.memory_format)

    for epoch in range(o.epochs):
        model.train()
        g = torch.Generator().manual_seed(exp.seed * 1_000_003 + epoch)
        order = torch.randperm(len(y), generator=g)
        loss_sum = torch.zeros(())
        for s in range(0, len(y), o.batch_size):
            if len(y) - s < 2 and s > 0:
                break
            idx = order[s:s + o.batch_size]
            loss = F.cross_entropy(model(prep(x[idx], g)), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach() * len(idx)
        float(loss_sum)
        _accuracy(model, data.val.x, data.val.y, prep)
    return _accuracy(model, data.test.x, data.test.y, prep)


def measure_loop_tax(opts: BenchOptions) -> dict[str, Any]:
    from ltsearch.train.loop import run_trial

    torch.set_num_threads(opts.threads)
    exp = bench_experiment(opts.arch, opts.epochs, opts.batch_size, opts.images_per_class, threads=opts.threads)
    data = bench_data(exp)
    run = lambda: run_trial(exp, data=data, stage_cache=False)  # noqa: E731
    bare = lambda: bare_train(exp, data)  # noqa: E731
    bare()  # warm-up of both sides (allocator, kernels' first calls)
    run()
    t_lt, t_bare = interleaved(run, bare, opts.repeats, timed_cpu)
    cpu = [a[1] / b[1] for a, b in zip(t_lt, t_bare)]
    wall = [a[0] / b[0] for a, b in zip(t_lt, t_bare)]
    return {"loop_tax_ratio": median(cpu), "loop_tax_spread": spread(cpu), "loop_tax_ratio_wall": median(wall),
            "loop_tax_repeats": opts.repeats, "loop_ltsearch_s": median([a[0] for a in t_lt]),
            "loop_bare_s": median([b[0] for b in t_bare]), "loop_train_images": len(data.train)}
