"""GPU measurements that need only torch and ltsearch's spec (no Ray, Optuna, plotly): ResNet-32
step throughput per precision / memory format / compile, several processes sharing one device,
the training loop's own throughput per method, and a ``torch.utils.data.DataLoader`` baseline.

Every function takes the device and the sizes, so the CPU test runs them all at toy sizes."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from ltsearch.bench.common import bench_experiment, median
from ltsearch.bench.throughput import images_per_s, run_for, train_step

STEP_VARIANTS = {  # name: (channels_last, bf16 autocast, torch.compile)
    "fp32": (False, False, False),
    "fp32_channels_last": (True, False, False),
    "bf16": (False, True, False),
    "bf16_channels_last": (True, True, False),
    "bf16_channels_last_compile": (True, True, True),
}


def step_throughput(arch: str, device: str, batch_size: int, seconds: float, compile: bool = True) -> dict[str, Any]:
    """Images/s of one training step per variant of ``STEP_VARIANTS`` (bf16 only on CUDA); a variant
    that fails (``torch.compile`` without a working compiler, say) reports its error instead."""
    out: dict[str, Any] = {}
    for name, (cl, amp, comp) in STEP_VARIANTS.items():
        if (comp and not compile) or (amp and device == "cpu"):
            continue
        try:
            out[name] = images_per_s(arch, device, batch_size, channels_last=cl, amp=amp, compile=comp,
                                     min_seconds=seconds)
        except Exception as err:  # noqa: BLE001 - keep the other variants' figures
            out[name] = f"failed: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"[:300]
    return out


def _packed_worker(arch: str, device: str, batch_size: int, seconds: float, start_at: float) -> None:
    torch.set_num_threads(1)
    step = train_step(arch, device, batch_size, channels_last=True, amp=device != "cpu")
    print(json.dumps({"images_per_s": batch_size * run_for(step, seconds, start_at, cuda=device != "cpu")}))


def packed_speedup(arch: str, device: str, batch_size: int, seconds: float, processes: int = 4,
                   start_margin: float = 30.0) -> dict[str, Any]:
    """``processes`` processes training at once on one device (what fractional
    ``gpus_per_worker`` does) against one process alone: aggregate images/s over the single one."""

    def launch(n: int) -> list[float]:
        start_at = time.time() + start_margin
        code = ("import sys; from ltsearch.bench.gpu import _packed_worker; "
                "_packed_worker(sys.argv[1], sys.argv[2], int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5]))")
        procs = [subprocess.Popen([sys.executable, "-c", code, arch, device, str(batch_size), str(seconds), str(start_at)],
                                  stdout=subprocess.PIPE, text=True) for _ in range(n)]
        rates = []
        for p in procs:
            try:
                out = p.communicate(timeout=start_margin + seconds + 120)[0]
                rates.append(float(json.loads(out.strip().splitlines()[-1])["images_per_s"]))
            except (ValueError, IndexError, KeyError, subprocess.TimeoutExpired):
                p.kill()
                rates.append(math.nan)
        return rates

    single = launch(1)[0]
    packed = launch(processes)
    return {"packed_processes": processes, "single_process_images_per_s": single,
            "packed_images_per_s": sum(packed), "packed_speedup": sum(packed) / single}


def loop_throughput(exp: Any, data: Any) -> dict[str, float]:
    """``run_trial`` on ``data``: training images/s of the epochs after the first (data on the
    device, batch augmentation there; each epoch's time includes its validation pass), the first
    epoch's seconds, and the trial's seconds outside its epochs (set-up, final test pass)."""
    from ltsearch.train.loop import run_trial

    out = run_trial(exp, data=data, stage_cache=False)
    secs = [r.seconds for r in out.epochs]
    steady = median(secs[1:] or secs)
    return {"images_per_s": len(data.train) / steady, "epoch_s": steady, "first_epoch_s": secs[0],
            "outside_epochs_s": out.summary["train_seconds"] - sum(secs), "val_acc": out.summary["val_acc"],
            "test_acc": out.summary["test_acc"]}


def dataloader_throughput(exp: Any, data: Any, epochs: int = 2, workers: int | None = None) -> dict[str, float]:
    """The usual PyTorch pipeline on the same model and data: a ``DataLoader`` over the uint8
    images with per-sample torchvision transforms (random crop with padding 4, horizontal flip,
    scale, normalise) in ``workers`` processes, pinned memory, a non-blocking copy per batch, and a
    validation pass per epoch. Images/s of the epochs after the first."""
    from torch.utils.data import DataLoader, Dataset
    from torchvision.transforms import v2

    from ltsearch.models import build_model
    from ltsearch.train.fast import apply_fast, resolve_fast
    from ltsearch.train.loop import select_device

    device = select_device(exp.device)
    size = data.image_shape[-1]
    tf = v2.Compose([v2.RandomCrop(size, padding=data.pad), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))])
    plain = v2.Compose([v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(data.mean), list(data.std))])

    class Images(Dataset):
        def __init__(self, split: Any, transform: Any):
            self.x, self.y, self.t = split.x, split.y, transform

        def __len__(self) -> int:
            return len(self.y)

        def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
            return self.t(self.x[i]), self.y[i]

    workers = min(8, max((os.cpu_count() or 1) - 1, 0)) if workers is None else workers
    kw = dict(batch_size=exp.optim.batch_size, num_workers=workers, pin_memory=device.type == "cuda",
              persistent_workers=workers > 0)
    train = DataLoader(Images(data.train, tf), shuffle=True, drop_last=False, **kw)
    val = DataLoader(Images(data.val, plain), shuffle=False, **kw)
    torch.manual_seed(exp.seed)
    model = build_model(exp.model.arch, data.num_classes, data.image_shape[0], "linear").to(device)
    fast = resolve_fast(exp.fast, device, model)
    apply_fast(model, fast)
    opt = torch.optim.SGD(model.parameters(), lr=exp.optim.lr, momentum=exp.optim.momentum,
                          weight_decay=exp.optim.weight_decay)
    secs = []
    for _ in range(epochs):
        t = time.perf_counter()
        model.train()
        loss_sum = torch.zeros((), device=device)
        for x, y in train:
            x = x.to(device, non_blocking=True).contiguous(memory_format=fast.memory_format)
            y = y.to(device, non_blocking=True)
            with fast.autocast():
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += loss.detach()
        float(loss_sum)
        model.eval()
        with torch.no_grad(), fast.autocast():
            for x, y in val:
                model(x.to(device, non_blocking=True).contiguous(memory_format=fast.memory_format)).argmax(1)
        if device.type == "cuda":
            torch.cuda.synchronize()
        secs.append(time.perf_counter() - t)
    steady = median(secs[1:] or secs)
    return {"images_per_s": len(data.train) / steady, "epoch_s": steady, "workers": workers}


def measure_gpu(arch: str = "resnet32", batch_size: int = 128, seconds: float = 3.0) -> dict[str, Any]:
    """The GPU figures of ``ltsearch bench`` (when CUDA is visible): fp32 and bf16 + channels-last
    step throughput and the 4-process packed speed-up. ``--gpu`` runs the whole GPU check."""
    fp32 = images_per_s(arch, "cuda", batch_size, min_seconds=seconds)
    fast = images_per_s(arch, "cuda", batch_size, channels_last=True, amp=True, min_seconds=seconds)
    packed = packed_speedup(arch, "cuda", batch_size, 2 * seconds)
    return {"gpu_images_per_s": fast, "gpu_fp32_images_per_s": fp32, "gpu_packed_speedup": packed["packed_speedup"],
            "gpu_packed_processes": packed["packed_processes"], "gpu_name": torch.cuda.get_device_name()}


def cifar_lt_experiment(device: str, scale: float = 1.0, epochs: int = 3, method: dict | None = None,
                        arch: str = "resnet32", batch_size: int = 128, fast: dict | None = None) -> Any:
    """Synthetic data of CIFAR-10-LT's shape (IF 100: 12,406 32×32×3 training images at
    ``scale`` 1; 100 validation and 1,000 test images per class), ResNet-32 and batch 128 by default."""
    return bench_experiment(arch, epochs, batch_size, max(int(5000 * scale), 2), device=device, method=method, fast=fast,
                            imbalance=100, val_per_class=max(int(100 * scale), 1),
                            test_per_class=max(int(1000 * scale), 1))


__all__ = ["STEP_VARIANTS", "cifar_lt_experiment", "dataloader_throughput", "loop_throughput", "measure_gpu",
           "packed_speedup", "step_throughput"]
