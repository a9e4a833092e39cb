"""crop + flip per batch: the fused gather (``ltsearch.data.augment``) against the previous
indexing + permute implementation, interleaved, and both against a ResNet-32 training step.

    python benchmarks/augment.py [--batch 128] [--threads 1] [--repeats 7]
"""

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

from ltsearch.bench.throughput import images_per_s
from ltsearch.data.augment import crop_flip, to_float


def reference_crop_flip(x: torch.Tensor, g: torch.Generator, pad: int = 4) -> torch.Tensor:
    n, _, h, w = x.shape
    xp = F.pad(x, (pad, pad, pad, pad))
    oy = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    ox = torch.randint(0, 2 * pad + 1, (n,), generator=g)
    rows = oy[:, None] + torch.arange(h)[None, :]
    cols = ox[:, None] + torch.arange(w)[None, :]
    out = xp.permute(0, 2, 3, 1)[torch.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    out = out.permute(0, 3, 1, 2).contiguous()
    mask = (torch.rand(n, generator=g) < 0.5).view(-1, 1, 1, 1)
    return torch.where(mask, out.flip(-1), out)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x8 = torch.randint(0, 256, (4096, 3, 32, 32), dtype=torch.uint8)
    fns = {"reference": reference_crop_flip, "fused": crop_flip}
    ms: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(a.repeats):
        for name in (list(fns) if r % 2 == 0 else list(fns)[::-1]):
            g = torch.Generator().manual_seed(r)
            t = time.perf_counter()
            for _ in range(20):
                fns[name](to_float(x8[torch.randint(0, 4096, (a.batch,), generator=g)]), g, 4)
            ms[name].append(1000 * (time.perf_counter() - t) / 20)
    step_ms = 1000 * a.batch / images_per_s("resnet32", batch_size=a.batch, steps=3, channels_last=True)
    med = {k: statistics.median(v) for k, v in ms.items()}
    print(f"crop+flip per batch of {a.batch}: reference {med['reference']:.2f} ms, fused {med['fused']:.2f} ms "
          f"(fused/reference {med['fused'] / med['reference']:.2f}×); ResNet-32 step {step_ms:.0f} ms "
          f"→ share of a step {med['reference'] / step_ms:.1%} → {med['fused'] / step_ms:.1%}")


if __name__ == "__main__":
    main()
