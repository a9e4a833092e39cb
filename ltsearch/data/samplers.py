"""Samplers: each epoch, an index stream over the training set.

A class-aware sampler draws a class with probability P_c, then an image of that class uniformly;
that is one per-sample weight P_c / n_c and ``torch.multinomial`` with replacement:

=================  =====================================================
``instance``       a permutation of the training set (P_c ∝ n_c)
``class_balanced`` P_c = 1 / C
``sqrt``           P_c ∝ sqrt(n_c)  (square-root sampling, Mahajan et al. 2018)
``reversed``       P_c ∝ N_max / n_c  (BBN's reversed sampler, Zhou et al. 2020)
=================  =====================================================

Under DDP every rank draws the same global stream (same seed and epoch) and keeps
``stream[rank::world_size]``, so each rank gets its share of the re-balanced stream.
"""

from __future__ import annotations

from typing import Sequence

import torch

from ltsearch.registry import SAMPLERS


class Sampler:
    """Per-sample probabilities from a class-probability rule; ``epoch_indices`` draws a stream."""

    def __init__(self, labels: torch.Tensor, class_counts: Sequence[int]):
        counts = torch.as_tensor(list(class_counts), dtype=torch.float64)
        if (counts <= 0).any():
            empty = [i for i, n in enumerate(class_counts) if n <= 0]
            raise ValueError(f"classes {empty} have no training samples; every class needs at least one")
        self.labels = labels.long().cpu()
        self.class_probs = self.class_probabilities(counts)
        self.sample_weights = (self.class_probs / counts)[self.labels]

    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def epoch_indices(self, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        n = len(self.labels)
        stream = torch.multinomial(self.sample_weights, n, replacement=True, generator=g)
        return stream[rank::world_size]


@SAMPLERS.register("instance")
class InstanceSampler(Sampler):
    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        return counts / counts.sum()

    def epoch_indices(self, seed: int, epoch: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
        g = torch.Generator().manual_seed(int(seed) * 100_003 + int(epoch))
        return torch.randperm(len(self.labels), generator=g)[rank::world_size]


@SAMPLERS.register("class_balanced")
class ClassBalancedSampler(Sampler):
    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        return torch.full_like(counts, 1.0 / len(counts))


@SAMPLERS.register("sqrt")
class SqrtSampler(Sampler):
    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        w = counts.sqrt()
        return w / w.sum()


@SAMPLERS.register("reversed")
class ReversedSampler(Sampler):
    def class_probabilities(self, counts: torch.Tensor) -> torch.Tensor:
        w = counts.max() / counts
        return w / w.sum()


def build_sampler(name: str, labels: torch.Tensor, class_counts: Sequence[int], where: str = "sampler") -> Sampler:
    return SAMPLERS.get(name, where=where)(labels, class_counts)
