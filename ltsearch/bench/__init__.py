"""``ltsearch bench``: what ltsearch costs on this machine, as ratios measured in one run.

One module per measurement: ``loop_tax`` (``run_trial`` against a hand-written loop),
``throughput`` (training-step images/s, augmentation cost), ``sweep`` (``run_sweep`` against bare
Ray tasks; ltsearch's own per-trial writes), ``ddp`` (DDP trial start-up and its phases),
``search`` (grid against TPE + ASHA over search seeds), ``gpu`` + ``gpu_check`` (the GPU check:
one JSON object, without Ray, Optuna or plotly). ``cli.bench`` is the command; ``common`` holds the
options and the interleaved timing. Timings on a shared machine are noisy: the two sides of every
ratio are interleaved and repeated, medians and spreads are reported, and nothing asserts a time.
Only ``sweep``, ``ddp`` and ``search`` import Ray; ``scale`` times the readers (``ltsearch bench --scale``).
Nothing here is imported until used: the CLI registers ``cli.bench`` without importing torch.
"""

from typing import Any

__all__ = ["BenchOptions"]


def __getattr__(name: str) -> Any:
    if name == "BenchOptions":
        from ltsearch.bench.common import BenchOptions

        return BenchOptions
    raise AttributeError(name)
