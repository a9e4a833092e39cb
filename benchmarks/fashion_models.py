"""Which model should ``model.arch: auto`` pick for Fashion-MNIST (28×28 grey images)? Cross-entropy
on Fashion-MNIST-LT IF100 with each candidate, the same recipe and seeds, through ``run_trial``.

    python benchmarks/fashion_models.py [--archs lenet:6 resnet8:6 resnet20:6] [--seeds 0] [--threads 1]

``arch:epochs`` pairs let models be compared at equal epochs or at (about) equal training time.
Recipe: SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, cosine decay, no warm-up (the
parity benchmark's, ``benchmarks/fashion_parity.py``). Prints, per model, validation accuracy
(what a choice may be based on), test accuracy overall / many / medium / few (reported only),
parameters and training seconds per epoch. Needs ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from ltsearch.data import build_dataset
from ltsearch.models import build_model
from ltsearch.spec import DataSpec, ExperimentSpec
from ltsearch.train.loop import run_trial


def experiment(arch: str, epochs: int, seed: int) -> ExperimentSpec:
    return ExperimentSpec.model_validate({
        "data": {"dataset": "fashion_mnist", "imbalance": 100}, "model": {"arch": arch},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 128, "epochs": epochs,
                  "warmup": 0, "lr_schedule": "cosine"},
        "eval": {"save_model": False}, "device": "cpu", "seed": seed,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", nargs="+", default=["lenet:6", "resnet8:6", "resnet20:6"])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = build_dataset(DataSpec(dataset="fashion_mnist", imbalance=100))
    keys = ("val_acc", "test_acc", "test_many", "test_medium", "test_few")
    print(f"Fashion-MNIST-LT IF100, CE, seeds {args.seeds}, {args.threads} thread(s); mean over seeds")
    print("arch       epochs  params   val    test   many   medium few    s/epoch (train)")
    for item in args.archs:
        arch, _, epochs = item.partition(":")
        epochs = int(epochs or 6)
        rows = [run_trial(experiment(arch, epochs, s), data=data, stage_cache=False) for s in args.seeds]
        mean = {k: statistics.mean(r.summary[k] for r in rows) for k in keys}
        per_epoch = statistics.mean(rec.seconds for r in rows for rec in r.epochs)
        params = sum(p.numel() for p in build_model(arch, 10, 1).parameters())
        print(f"{arch:<10} {epochs:>6}  {params / 1e6:5.2f}M  " + "  ".join(f"{mean[k]:5.2f}" for k in keys)
              + f"  {per_epoch:6.1f}", flush=True)
    print(f"(split thresholds: many > {rows[0].summary['split_many']}, few < {rows[0].summary['split_few']})")


if __name__ == "__main__":
    main()
