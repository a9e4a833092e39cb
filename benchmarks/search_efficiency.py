"""Search efficiency on digits-LT: the same space (loss × learning rate) searched by a grid and by
Optuna TPE + ASHA; prints the best validation accuracy reached against the total epochs spent.

    python benchmarks/search_efficiency.py [--epochs 12] [--trials 12] [--json]

(also ``ltsearch bench --search``; the grid has 3 losses × 4 learning rates = 12 cells, TPE samples
``--trials`` configurations from the continuous range and ASHA stops the weak ones early).
"""

import argparse
import json

from ltsearch.bench import BenchOptions, measure_search_efficiency


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--trials", type=int, default=12)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    out = measure_search_efficiency(BenchOptions(search_epochs=a.epochs, search_trials=a.trials))
    if a.json:
        print(json.dumps(out))
        return
    for algo, r in out.items():
        print(f"{algo:>9}: best val {r['best_val_acc']:.2f}% (test of best {r['test_acc_of_best']:.2f}%) after "
              f"{r['epochs_spent']} epochs in {r['trials']} trials, {r['seconds']:.0f} s")
        print("           best-so-far by epochs spent: " + ", ".join(f"{e}:{b:.1f}" for e, b in r["curve"]))


if __name__ == "__main__":
    main()
