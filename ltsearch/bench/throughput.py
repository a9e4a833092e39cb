"""Training-step throughput of a model on random 32×32 images (forward, backward, SGD step), timed
with ``torch.utils.benchmark`` (which synchronises CUDA), and the cost of the batch augmentation.
``measure_throughput``: the CPU figures of ``ltsearch bench`` (channels-last against contiguous)."""

from __future__ import annotations

import time
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch.utils import benchmark

from ltsearch.bench.common import BenchOptions, median


def train_step(arch: str, device: str = "cpu", batch_size: int = 128, channels_last: bool = False, amp: bool = False,
               compile: bool = False, size: int = 32, channels: int = 3) -> Callable[[], None]:
    """One training step of ``arch`` (10 classes) on a fixed random batch, as a closure."""
    from ltsearch.models import build_model
    from ltsearch.train.fast import Fast, apply_fast

    dev = torch.device(device)
    fast = Fast(amp=amp, channels_last=channels_last, compile=compile, device_type=dev.type)
    model = apply_fast(build_model(arch, 10, channels, "linear").to(dev), fast)
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    x = torch.randn(batch_size, channels, size, size, device=dev).contiguous(memory_format=fast.memory_format)
    y = torch.randint(0, 10, (batch_size,), device=dev)

    def step() -> None:
        with fast.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def images_per_s(arch: str, device: str = "cpu", batch_size: int = 128, steps: int = 4, channels_last: bool = False,
                 amp: bool = False, compile: bool = False, min_seconds: float | None = None) -> float:
    """Images per second of ``train_step``: ``steps`` timed steps after warm-up, or with
    ``min_seconds`` as many blocks as fill that time (the median block is used)."""
    step = train_step(arch, device, batch_size, channels_last, amp, compile)
    for _ in range(3 if (device != "cpu" or compile) else 1):  # kernels' first calls, autotuning, compilation
        step()
    timer = benchmark.Timer(stmt="step()", globals={"step": step})
    m = timer.blocked_autorange(min_run_time=min_seconds) if min_seconds else timer.timeit(steps)
    return batch_size / m.median


def run_for(step: Callable[[], None], seconds: float, start_at: float | None = None, cuda: bool = False) -> float:
    """Steps per second of ``step`` run for ``seconds`` of wall time, starting at ``start_at``
    (``time.time()``), so that several processes sharing one device measure the same window."""
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    step()
    sync()
    if start_at is not None:
        time.sleep(max(start_at - time.time(), 0))
    t, n = time.perf_counter(), 0
    while time.perf_counter() - t < seconds or n == 0:
        step()
        n += 1
        if n % 10 == 0:
            sync()
    sync()
    return n / (time.perf_counter() - t)


def augment_ms(batch_size: int, pad: int = 4, reps: int = 20) -> float:
    """Milliseconds to gather, crop + flip and normalise one uint8 32×32 batch."""
    from ltsearch.data.augment import crop_flip, normalize, to_float

    x8 = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
    g = torch.Generator().manual_seed(0)
    mean, std = torch.full((3,), 0.5), torch.full((3,), 0.25)

    def one() -> None:
        normalize(crop_flip(to_float(x8[torch.randint(0, 4096, (batch_size,), generator=g)]), g, pad), mean, std)

    return 1000 * benchmark.Timer(stmt="one()", globals={"one": one}).timeit(reps).median


def measure_throughput(opts: BenchOptions) -> dict[str, Any]:
    """CPU images/s of ``opts.arch`` and small_cnn, channels-last and contiguous (interleaved; the
    speed-up is the ratio of the CPU seconds the two took), and the augmentation's share of a step."""
    torch.set_num_threads(opts.threads)
    out: dict[str, Any] = {}
    for arch in dict.fromkeys([opts.arch, "small_cnn"]):
        rates: dict[bool, list[float]] = {True: [], False: []}
        ratio = []
        for r in range(opts.repeats):
            cpu = {}
            for flag in ((True, False) if r % 2 == 0 else (False, True)):
                c = time.process_time()
                rates[flag].append(images_per_s(arch, "cpu", opts.batch_size, opts.throughput_steps, channels_last=flag))
                cpu[flag] = time.process_time() - c
            ratio.append(cpu[False] / cpu[True])
        out[f"channels_last_speedup_{arch}"] = median(ratio)
        if arch == opts.arch:
            out["cpu_images_per_s"] = median(rates[True])  # the default (fast.channels_last: auto)
            out["cpu_images_per_s_contiguous"] = median(rates[False])
            step_ms = 1000 * opts.batch_size / median(rates[True])
            aug = augment_ms(opts.batch_size)
            out["augment_ms_per_batch"] = aug
            out["augment_share"] = aug / (aug + step_ms)
    return out


__all__ = ["augment_ms", "images_per_s", "measure_throughput", "run_for", "train_step"]
