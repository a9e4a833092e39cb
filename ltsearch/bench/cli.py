"""``ltsearch bench``: run the measurements, print a table or one JSON object. Imports torch (through
``common``) only when a measurement runs, so registering the command costs every CLI call nothing."""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING, Annotated, Any, Callable

import typer

from ltsearch.errors import UserError, user_errors

if TYPE_CHECKING:
    from ltsearch.bench.common import BenchOptions


def run_bench(opts: BenchOptions, log: Callable[[str], None] = lambda s: None) -> dict[str, Any]:
    import ray

    from ltsearch.bench.common import load_average, machine
    from ltsearch.bench.ddp import measure_ddp
    from ltsearch.bench.loop_tax import measure_loop_tax
    from ltsearch.bench.sweep import measure_sweep, measure_trial_io
    from ltsearch.bench.throughput import measure_throughput

    result: dict[str, Any] = {"machine": machine(), "ray": ray.__version__, "threads": opts.threads,
                              "load_average_at_start": load_average()}
    for name, fn in (("loop tax", measure_loop_tax), ("throughput", measure_throughput), ("trial I/O", measure_trial_io),
                     ("sweep", measure_sweep), ("ddp", measure_ddp)):
        log(f"measuring {name} ...")
        result.update(fn(opts))
    import torch

    if torch.cuda.is_available():
        from ltsearch.bench.gpu import measure_gpu

        log("measuring GPU throughput ...")
        result.update(measure_gpu(opts.arch, opts.batch_size, seconds=0.5 if opts.throughput_steps < 2 else 3.0))
    if opts.search:
        from ltsearch.bench.search import measure_search_efficiency

        log("measuring search efficiency ...")
        result["search"] = measure_search_efficiency(opts)
    result["load_average_at_end"] = load_average()
    return result


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    from ltsearch.bench.common import GOALS

    t = Table(title=f"ltsearch bench — {result['machine']}; Ray {result['ray']}; {result['threads']} torch thread(s); "
                    f"load {result.get('load_average_at_start')}")
    for col in ("measure", "value", "goal", "detail"):
        t.add_column(col)

    def num(k: str, fmt: str = "{:.3f}", src: dict[str, Any] | None = None) -> str:
        v = (src or result).get(k)
        return fmt.format(v) if isinstance(v, (int, float)) else str(v if v is not None else "n/a")

    t.add_row("loop tax (run_trial / hand-written)", num("loop_tax_ratio") + "×", f"≤ {GOALS['loop_tax_ratio']}×",
              f"CPU-time ratio, median of {result.get('loop_tax_repeats')} pairs (spread {num('loop_tax_spread')}); "
              f"wall {num('loop_tax_ratio_wall')}×, {result.get('loop_train_images')} images")
    t.add_row(f"sweep overhead (N = {result.get('sweep_trials')})", num("sweep_overhead_ratio") + "×",
              f"≤ {GOALS['sweep_overhead_ratio']}×",
              f"wall {num('sweep_s', '{:.1f}')} s vs {num('sweep_bare_s', '{:.1f}')} s bare Ray tasks (Ray start "
              f"{num('ray_start_s', '{:.1f}')} s in both); {result.get('sweep_slots')} slots, "
              f"{num('trial_train_s', '{:.2f}')} s per bare trial; spread {num('sweep_overhead_spread')}")
    t.add_row("per-trial overhead", num("per_trial_overhead_s", "{:.2f}") + " s", f"≤ {GOALS['per_trial_overhead_s']} s",
              f"idle slot time per trial, sweep − bare (raw {num('per_trial_overhead_raw_s', '{:.2f}')} s)")
    t.add_row("  of which ltsearch's own I/O", num("ltsearch_io_per_trial_s", "{:.2f}") + " s", "",
              "Parquet rows, provenance, a checkpoint per epoch (CPU s, no Ray); the rest is Tune's")
    t.add_row("CPU images/s (ResNet, channels-last)", num("cpu_images_per_s", "{:.0f}"), "",
              f"contiguous {num('cpu_images_per_s_contiguous', '{:.0f}')}")
    for k in sorted(k for k in result if k.startswith("channels_last_speedup_")):
        t.add_row(f"channels-last speed-up, {k.removeprefix('channels_last_speedup_')}", num(k) + "×", "> 1", "CPU")
    t.add_row("augmentation share of a step", num("augment_share", "{:.1%}"), "", "gather + crop/flip + normalise")
    if "gpu_images_per_s" in result:
        t.add_row("GPU images/s (bf16, channels-last)", num("gpu_images_per_s", "{:.0f}"), "≥ 25,000 (H100)",
                  f"fp32 {num('gpu_fp32_images_per_s', '{:.0f}')}; {result.get('gpu_name')}")
        t.add_row("GPU packed speed-up", num("gpu_packed_speedup", "{:.2f}") + "×", "≥ 3×",
                  f"{result.get('gpu_packed_processes')} processes on one GPU vs one")
    ddp = result.get("ddp_startup_s")
    t.add_row("DDP trial start-up", num("ddp_startup_s", "{:.1f}") + ("" if isinstance(ddp, str) else " s"),
              f"≤ {GOALS['ddp_startup_s']:g} s", "workers 2 vs 1, one 1-epoch trial")
    for env, phases in (result.get("ddp_phases") or {}).items():
        t.add_row(f"  TorchTrainer phases ({env})", num("trainer_s", "{:.1f}", phases) + " s", "",
                  ", ".join(f"{k.removesuffix('_s')} {v:.1f}" for k, v in phases.items() if k != "trainer_s"))
    if result.get("ddp_plain_ray"):
        t.add_row("  plain Ray, 2 workers", "", "", ", ".join(f"{k.removesuffix('_s')} {v:.2f} s"
                                                            for k, v in result["ddp_plain_ray"].items()))
    s = result.get("search")
    if s:
        t.add_row("search: TPE + ASHA reaches the grid's best", f"{s['seeds_within_a_third']}/{s['search_seeds']} seeds",
                  "all, at ≤ 1/3 of the epochs", f"median fraction of the grid's epochs "
                  f"{num('median_fraction_of_grid_epochs', '{:.2f}', s)} (within {s['tolerance']} points)")
    return t


def main(opts: BenchOptions, as_json: bool = False) -> dict[str, Any]:
    from rich.console import Console

    from ltsearch.bench.common import jsonable, stdout_to_stderr

    err = Console(stderr=True)
    if as_json:
        with stdout_to_stderr():
            result = run_bench(opts, log=lambda s: err.print(s, highlight=False))
        print(json.dumps(jsonable(result)))
    else:
        result = run_bench(opts, log=lambda s: err.print(s, highlight=False))
        Console().print(table(result))
    return result


@user_errors
def bench(
    json_: Annotated[bool, typer.Option("--json", help="print exactly one JSON object on stdout")] = False,
    smoke: Annotated[bool, typer.Option(help="smallest sizes (seconds, for CI)")] = False,
    gpu: Annotated[bool, typer.Option(help="run the GPU check instead (needs torch, torchvision, PyYAML, pydantic; no Ray; see docs/performance.md)")] = False,
    trials: Annotated[int, typer.Option(help="sweep: number of trials N")] = 16,
    trial_seconds: Annotated[float, typer.Option(help="sweep: target training seconds per trial")] = 1.0,
    repeats: Annotated[int, typer.Option(help="interleaved repetitions of the loop-tax and throughput runs")] = 5,
    sweep_repeats: Annotated[int, typer.Option(help="interleaved repetitions of the sweep pair")] = 2,
    threads: Annotated[int, typer.Option(help="torch threads for in-process measurements")] = 1,
    arch: Annotated[str, typer.Option(help="model for loop tax and throughput")] = "resnet32",
    ddp: Annotated[bool, typer.Option(help="measure DDP trial start-up")] = True,
    search: Annotated[bool, typer.Option(help="also run grid vs TPE + ASHA over search seeds")] = False,
    search_seeds: Annotated[int, typer.Option(help="search efficiency: search seeds")] = 3,
    scale: Annotated[bool, typer.Option(help="time load / report / compare / status on synthetic runs of --scale-trials trials, both layouts, instead (docs/performance.md)")] = False,
    scale_trials: Annotated[str, typer.Option(help="--scale: comma-separated run sizes")] = "1000,10000",
) -> None:
    """Measure ltsearch's overheads on this machine (ratios against bare PyTorch / bare Ray)."""
    if scale:
        try:
            sizes = tuple(int(x) for x in scale_trials.split(","))
        except ValueError:
            sizes = ()
        if not sizes or min(sizes) < 3:
            raise UserError(f"--scale-trials {scale_trials}: give comma-separated sizes of at least 3 trials, e.g. 1000,10000")
        from ltsearch.bench.scale import main as scale_main

        scale_main(sizes, as_json=json_, template_epochs=2 if smoke else 15)
        return
    if gpu:
        from ltsearch.bench.gpu_check import main as gpu_main

        gpu_main(["--smoke", "--device", "cpu"] if smoke else [])
        return
    from ltsearch.registry import MODELS

    MODELS.get(arch, where="--arch")  # an unknown name: one line with the known ones
    for name, value in (("--trials", trials), ("--repeats", repeats), ("--sweep-repeats", sweep_repeats),
                        ("--threads", threads), ("--search-seeds", search_seeds)):
        if value < 1:
            raise UserError(f"{name} {value}: give a positive number")
    if trial_seconds <= 0:
        raise UserError(f"--trial-seconds {trial_seconds}: give a positive number of seconds")
    from ltsearch.bench.common import BenchOptions

    opts = BenchOptions.smoke() if smoke else BenchOptions()
    if not smoke:
        opts = dataclasses.replace(opts, trials=trials, trial_seconds=trial_seconds, repeats=repeats,
                                   sweep_repeats=sweep_repeats, arch=arch, search_seeds=search_seeds)
    opts = dataclasses.replace(opts, threads=threads, ddp=ddp and not smoke, search=search)
    main(opts, as_json=json_)
