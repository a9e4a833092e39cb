"""A real sweep of 1,000 short trials end to end on this machine, and the Optuna searcher's ask time
with 1,000 trials in its SQLite study (``ltsearch.bench.real_sweep``; docs/performance.md).

    python benchmarks/real_sweep.py [--trials 1000] [--trial-seconds 1.0] [--ask-trials 1000] [--json]

One sweep and one bare run (about 2 × trials × trial-seconds / cores of wall time, plus Ray's and
Tune's overhead); the figures are ratios measured in the same run.
"""

from __future__ import annotations

import argparse
import json

from ltsearch.bench.common import machine
from ltsearch.bench.real_sweep import measure_real_sweep


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--trial-seconds", type=float, default=1.0)
    ap.add_argument("--ask-trials", type=int, default=1000)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    out = measure_real_sweep(args.trials, args.trial_seconds, args.ask_trials)
    out["machine"] = machine()
    if args.json:
        print(json.dumps(out, indent=1))
        return
    print(f"{out['machine']}")
    print(f"{out['trials']} trials of one epoch ({out['trial_alone_s']:.2f} s as bare tasks, "
          f"{out['trial_in_sweep_s']:.2f} s in the sweep), {out['slots']} at a time")
    print(f"sweep {out['sweep_s']:.0f} s, bare Ray tasks {out['bare_s']:.0f} s; idle slot time per trial, "
          f"sweep minus bare: {out['per_trial_overhead_s']:.3f} s; driver CPU {out['driver_cpu_per_trial_ms']:.0f} ms per trial")
    print(f"each over its ideal (its trials' seconds / slots): sweep {out['sweep_over_ideal']:.2f}x, bare "
          f"{out['bare_over_ideal']:.2f}x (Ray Tune's published 10,000-trial run: {out['tune_published_over_ideal']:.2f}x)")
    print(f"driver memory: {out['driver_start_rss_mb']:.0f} MB at the start, {out['driver_peak_rss_mb']:.0f} MB at peak")
    ask = out["ask_ms"]
    print("Optuna ask: " + ", ".join(f"{v:.1f} ms with {k} trials" for k, v in ask.items())
          + f" ({out['ask_growth']:.2f}x)")


if __name__ == "__main__":
    main()
