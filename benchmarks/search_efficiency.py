"""Search efficiency on digits-LT: the same space (loss × learning rate) searched by a grid and by
Optuna TPE + ASHA with ltsearch's defaults, over several search seeds; prints, per seed, the grid's
best validation accuracy and the epochs TPE + ASHA needed to come within 0.5 points of it.

    python benchmarks/search_efficiency.py [--epochs 12] [--trials 24] [--seeds 3] [--json]

(also ``ltsearch bench --search``; see ``ltsearch/bench/search.py``).
"""

import argparse
import json

from ltsearch.bench.common import BenchOptions, jsonable
from ltsearch.bench.search import measure_search_efficiency


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--trials", type=int, default=24)
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    out = measure_search_efficiency(BenchOptions(search_epochs=a.epochs, search_trials=a.trials, search_seeds=a.seeds))
    if a.json:
        print(json.dumps(jsonable(out)))
        return
    for seed, r in out["per_seed"].items():
        reached = r["epochs_to_grid_best"]
        print(f"seed {seed}: grid best {r['grid_best']:.2f}% after {r['grid_epochs']} epochs; TPE + ASHA "
              + (f"within {out['tolerance']} after {reached} epochs ({r['fraction_of_grid_epochs']:.2f} of the grid's)"
                 if reached is not None else f"never within {out['tolerance']} (best {r['tpe_best']:.2f}% in {r['tpe_epochs']})"))
        print("   TPE + ASHA best-so-far by epochs spent: " + ", ".join(f"{e}:{b:.1f}" for e, b in r["tpe_curve"]))
    print(f"{out['seeds_within_a_third']}/{out['search_seeds']} seeds reached the grid's best at <= 1/3 of its epochs")


if __name__ == "__main__":
    main()
