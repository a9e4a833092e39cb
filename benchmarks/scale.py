"""How ltsearch's readers grow with the size of a run: load, report, compare and status on synthetic
runs of N trials written as a sweep writes them, per-trial files and compacted
(``ltsearch.bench.scale``; docs/performance.md, "Scale"). Same as ``ltsearch bench --scale``.

    python benchmarks/scale.py [--trials 1000,10000] [--epochs 15] [--limit 600] [--json]

Synthesising 10,000 trials writes 30,000 files (about a minute or two on 2 cores); each command
runs in a fresh process and is stopped after --limit seconds (its time shown as "> limit").
"""

from __future__ import annotations

import argparse

from ltsearch.bench.scale import main as scale_main


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", default="1000,10000", help="comma-separated run sizes")
    ap.add_argument("--epochs", type=int, default=15, help="epochs of the template trial (the quickstart's 15)")
    ap.add_argument("--limit", type=float, default=600.0, help="seconds a command may take before it is stopped")
    ap.add_argument("--partial", help="write the figures so far to this JSON file after each layout")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    scale_main(tuple(int(x) for x in args.trials.split(",")), as_json=args.json, template_epochs=args.epochs,
               limit=args.limit, partial=args.partial)


if __name__ == "__main__":
    main()
