"""``Batches``: the training set in memory (on the training device), drawn, augmented and normalised
as whole tensors: no per-sample Python, no per-step host sync.

Each epoch, the method's streams (``{name: Stream(sampler, views)}``) each get an index stream from
their sampler; batches hold ``{stream: {"y": labels, view: images, ...}}``. Under DDP every rank
draws the same global stream and keeps its share (``ltsearch.data.samplers``), with a per-rank batch
of ``batch_size / world_size``. :meth:`images` serves the un-augmented training images to methods
that read frozen features (two-stage methods' stage 2).
"""

from __future__ import annotations

from typing import Any, Iterator

import torch

from ltsearch.data.augment import normalize, to_float
from ltsearch.data.datasets import LTData
from ltsearch.data.samplers import build_sampler
from ltsearch.registry import AUGMENTS


class Batches:
    """Gathers, augments and normalises batches from in-memory uint8 tensors."""

    def __init__(self, data: LTData, device: torch.device, seed: int, rank: int = 0, world_size: int = 1,
                 memory_format: torch.memory_format = torch.contiguous_format):
        self.data, self.device, self.seed = data, device, seed
        self.rank, self.world_size, self.memory_format = rank, world_size, memory_format
        self.x = data.train.x.to(device)
        self.y = data.train.y.to(device)
        self.mean = torch.tensor(data.mean, device=device)
        self.std = torch.tensor(data.std, device=device)
        self._samplers: dict[str, Any] = {}

    @property
    def labels(self) -> torch.Tensor:
        return self.y

    def prepare(self, x_uint8: torch.Tensor) -> torch.Tensor:
        """uint8 images (any device) → normalised floats on the training device."""
        x = normalize(to_float(x_uint8.to(self.device, non_blocking=True)), self.mean, self.std)
        return x.contiguous(memory_format=self.memory_format)

    def images(self, chunk: int = 512) -> Iterator[torch.Tensor]:
        """The whole training set, un-augmented and prepared, in order, ``chunk`` images at a time."""
        for i in range(0, len(self.y), chunk):
            yield self.prepare(self.x[i:i + chunk])

    def _view(self, x_uint8: torch.Tensor, view: str, g: torch.Generator) -> torch.Tensor:
        x = to_float(x_uint8)
        if view == "weak":
            x = AUGMENTS.get(self.data.augment)(x, g, self.data.pad)
        elif view == "strong":
            x = AUGMENTS.get("strong")(x, g, self.data.pad, weak=self.data.augment)
        else:
            x = AUGMENTS.get(view, where="method stream view")(x, g, self.data.pad)
        return normalize(x, self.mean, self.std).contiguous(memory_format=self.memory_format)

    def epoch(self, streams: dict[str, Any], epoch: int, batch_size: int) -> Iterator[dict[str, dict[str, torch.Tensor]]]:
        order: dict[str, torch.Tensor] = {}
        for name, stream in streams.items():
            if stream.sampler not in self._samplers:
                self._samplers[stream.sampler] = build_sampler(stream.sampler, self.data.train.y, self.data.class_counts)
            order[name] = self._samplers[stream.sampler].epoch_indices(
                self.seed, epoch, self.rank, self.world_size).to(self.device)  # one copy per epoch, no per-step sync
        n = min(len(o) for o in order.values())
        per_rank = max(batch_size // self.world_size, 1)
        g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        for start in range(0, n, per_rank):
            if n - start < 2 and start > 0:  # a batch of one breaks BatchNorm
                break
            batch: dict[str, dict[str, torch.Tensor]] = {}
            for name, stream in streams.items():
                idx = order[name][start : start + per_rank]
                xb = self.x[idx]
                batch[name] = {"y": self.y[idx], **{v: self._view(xb, v, g) for v in stream.views}}
            yield batch
