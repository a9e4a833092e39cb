"""Evidence for SDNHL's hard-aware loss scale (``method.hl_reduction``): the paper's plain batch
mean against the weighted mean on DRW's scale, on Fashion-MNIST-LT IF100 (real images, offline).

    python benchmarks/hard_aware_scale.py [--epochs 16] [--seeds 0] [--arch resnet8] [--threads 2] [--accumulate switch|always]

LDAM-DRW's recipe scaled to ``--epochs`` (warm-up, the lr milestones and the hard-aware / DRW switch
at the same fractions of training as 5, 160/180 and 160 of 200). Prints, per reduction and seed,
the validation and test accuracy (overall, many, medium, few), the training loss in the last epoch
before the switch and in the first after it. Needs ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import json

import torch

from ltsearch.spec import ExperimentSpec
from ltsearch.train.loop import run_trial


def experiment(reduction: str, seed: int, epochs: int, arch: str, accumulate: str) -> ExperimentSpec:
    at = lambda e: round(e * epochs / 200)  # noqa: E731 - LDAM-DRW's epochs, scaled
    return ExperimentSpec.model_validate({
        "data": {"dataset": "fashion_mnist", "imbalance": 100, "splits": {"many": 1000, "few": 200}},
        "model": {"arch": arch},
        "method": {"name": "sdnhl", "hl_epoch": at(160), "drw_epoch": at(160), "hl_reduction": reduction,
                   "hl_accumulate": accumulate},
        "optim": {"lr": 0.1, "epochs": epochs, "batch_size": 128, "warmup": max(1, at(5)),
                  "milestones": [at(160), at(180)], "weight_decay": 2e-4},
        "device": "cpu", "seed": seed,
    })


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=16)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--arch", default="resnet8")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--accumulate", default="switch", choices=["switch", "always"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for reduction in ("mean", "weighted"):
        for seed in args.seeds:
            exp = experiment(reduction, seed, args.epochs, args.arch, args.accumulate)
            out = run_trial(exp, stage_cache=False)
            switch = exp.method.params()["hl_epoch"]
            s = out.summary
            print(json.dumps({
                "reduction": reduction, "seed": seed, "accumulate": args.accumulate,
                **{k: round(s[k], 2) for k in ("val_acc", "test_acc", "test_many", "test_medium", "test_few")},
                "loss_before_switch": round(out.epochs[switch - 1].train_loss, 3),
                "loss_after_switch": round(out.epochs[switch].train_loss, 3),
                "val_curve": [round(r.val["val_acc"], 1) for r in out.epochs],
            }), flush=True)


if __name__ == "__main__":
    main()
