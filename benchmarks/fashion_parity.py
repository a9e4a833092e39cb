"""Accuracy parity: ltsearch's ``run_trial`` against a plain PyTorch loop, cross-entropy on
Fashion-MNIST-LT IF100 (real images, offline). ltsearch adds no accuracy tax when the paired
per-seed difference is within the seeds' noise (its 95 % interval contains 0).

    python benchmarks/fashion_parity.py [--epochs 6] [--seeds 0 1 2] [--threads 1]

Both sides get the same training images (the tensors of ltsearch's dataset builder: its long-tailed
subset of the 60,000 training images, 12,406 images, ``subset_hash`` printed), the same model (the
LeNet-style CNN, ltsearch's ``lenet``, written out again below, parameter counts compared), the
same recipe (SGD lr 0.05, momentum 0.9, weight decay 5e-4, batch 128, cosine decay per epoch, no
warm-up), the same seed, the same augmentation (zero-pad 2, random 28×28 crop, horizontal flip
p = 0.5; the plain side implements it itself) and normalisation, and both are tested on the full
10,000-image test set with the last epoch's weights. Both build the same layers in the same order
after ``torch.manual_seed(seed)``, so they start from the same initial weights; batch order and
augmentation draws come from different random streams, so per seed the two sides are two draws of
the same training run from the same start. Needs ``apt-get install dataset-fashion-mnist``.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

from ltsearch.data import LTData, build_dataset
from ltsearch.models import build_model
from ltsearch.spec import DataSpec, ExperimentSpec
from ltsearch.train.loop import run_trial

LR, MOMENTUM, WD, BATCH = 0.05, 0.9, 5e-4, 128


def plain_model() -> nn.Module:
    block = lambda cin, cout: [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout),  # noqa: E731
                               nn.ReLU(), nn.MaxPool2d(2)]
    return nn.Sequential(*block(1, 32), *block(32, 64), nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(),
                         nn.Linear(128, 10))


def plain_loop(data: LTData, epochs: int, seed: int) -> float:
    """What a user writes: ~30 lines of PyTorch, no ltsearch."""
    torch.manual_seed(seed)
    mean, std = data.mean[0], data.std[0]
    x, y = data.train.x.float() / 255, data.train.y
    model = plain_model()
    opt = torch.optim.SGD(model.parameters(), lr=LR, momentum=MOMENTUM, weight_decay=WD)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)

    def augment(xb: torch.Tensor) -> torch.Tensor:
        padded, out = F.pad(xb, (2, 2, 2, 2)), torch.empty_like(xb)
        for k, (i, j) in enumerate(torch.randint(0, 5, (len(xb), 2)).tolist()):
            out[k] = padded[k, :, i:i + 28, j:j + 28]
        flip = torch.rand(len(xb)) < 0.5
        out[flip] = out[flip].flip(-1)
        return (out - mean) / std

    for _ in range(epochs):
        model.train()
        for idx in torch.randperm(len(y)).split(BATCH):
            loss = F.cross_entropy(model(augment(x[idx])), y[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
        sched.step()
    model.eval()
    with torch.no_grad():
        tx = (data.test.x.float() / 255 - mean) / std
        pred = torch.cat([model(tx[i:i + 1000]).argmax(1) for i in range(0, len(tx), 1000)])
    return float((pred == data.test.y).float().mean() * 100)


def ltsearch_trial(data: LTData, epochs: int, seed: int) -> float:
    exp = ExperimentSpec.model_validate({
        "data": {"dataset": "fashion_mnist", "imbalance": 100}, "model": {"arch": "lenet"},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": LR, "momentum": MOMENTUM, "weight_decay": WD, "batch_size": BATCH, "epochs": epochs,
                  "warmup": 0, "lr_schedule": "cosine"},
        "eval": {"save_model": False}, "device": "cpu", "seed": seed,
    })
    return float(run_trial(exp, data=data, stage_cache=False).summary["test_acc"])


def interval(diffs: list[float]) -> tuple[float, float]:
    """95 % t-interval of the mean of ``diffs`` (paired per seed); (nan, nan) for one seed."""
    if len(diffs) < 2:
        return float("nan"), float("nan")
    from scipy.stats import t

    half = t.ppf(0.975, len(diffs) - 1) * statistics.stdev(diffs) / len(diffs) ** 0.5
    return statistics.mean(diffs) - half, statistics.mean(diffs) + half


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    data = build_dataset(DataSpec(dataset="fashion_mnist", imbalance=100))
    n_lt, n_plain = (sum(p.numel() for p in m.parameters()) for m in (build_model("lenet", 10, 1), plain_model()))
    assert n_lt == n_plain, f"the two models differ: {n_lt} vs {n_plain} parameters"
    print(f"Fashion-MNIST-LT IF100: {len(data.train):,} training images (subset {data.subset_hash}), "
          f"counts {data.class_counts}; lenet {n_lt:,} parameters; {args.epochs} epochs, {args.threads} thread(s)")
    print("seed  ltsearch  plain   diff   seconds (ltsearch / plain)")
    lt, plain = [], []
    for seed in args.seeds:
        t0 = time.perf_counter()
        lt.append(ltsearch_trial(data, args.epochs, seed))
        t1 = time.perf_counter()
        plain.append(plain_loop(data, args.epochs, seed))
        t2 = time.perf_counter()
        print(f"{seed:>4}  {lt[-1]:8.2f}  {plain[-1]:6.2f}  {lt[-1] - plain[-1]:+5.2f}   {t1 - t0:.0f} / {t2 - t1:.0f}",
              flush=True)
    diffs = [a - b for a, b in zip(lt, plain)]
    sd = lambda v: statistics.stdev(v) if len(v) > 1 else float("nan")  # noqa: E731
    lo, hi = interval(diffs)
    print(f"mean  ltsearch {statistics.mean(lt):.2f} ± {sd(lt):.2f}   "
          f"plain {statistics.mean(plain):.2f} ± {sd(plain):.2f}   (± : std over seeds)")
    print(f"paired difference ltsearch − plain: {statistics.mean(diffs):+.2f}, 95 % CI [{lo:+.2f}, {hi:+.2f}]: "
          + ("within seed noise (no accuracy tax)" if lo <= 0 <= hi else
             "one seed: compare with the seed spread" if lo != lo else "NOT within seed noise"))


if __name__ == "__main__":
    main()
