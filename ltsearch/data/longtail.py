"""Long-tailed class counts, the reference CIFAR-LT subset protocol, splits and subset hashes."""

from __future__ import annotations

import hashlib
import math
from typing import Sequence

import numpy as np


def longtail_counts(num_classes: int, max_per_class: int, imbalance: float, profile: str = "exp") -> list[int]:
    """Per-class training counts of a long-tailed subset.

    ``exp``:  n_i = int(max_per_class * (1/imbalance) ** (i / (num_classes - 1)))  (Cao et al. 2019)
    ``step``: the first half of the classes keep ``max_per_class``, the rest ``int(max/imbalance)``.
    """
    if num_classes < 1 or max_per_class < 1 or imbalance < 1:
        raise ValueError("num_classes, max_per_class and imbalance must be >= 1")
    if profile == "exp":
        if num_classes == 1:
            return [int(max_per_class)]
        return [int(max_per_class * (1.0 / imbalance) ** (i / (num_classes - 1.0))) for i in range(num_classes)]
    if profile == "step":
        half = num_classes // 2
        return [int(max_per_class)] * half + [int(max_per_class / imbalance)] * (num_classes - half)
    raise ValueError(f"unknown profile {profile!r}; known: exp, step")


def longtail_order(targets: Sequence[int], num_classes: int, seed: int = 0) -> list[np.ndarray]:
    """Each class's indices in the order of the reference protocol.

    Reproduces ``IMBALANCECIFAR.gen_imbalanced_data`` (kaidic/LDAM-DRW): ``np.random.seed(seed)``,
    then for each class in order ``np.random.shuffle`` of that class's indices. The protocol keeps
    the first n_i of each list; ltsearch takes validation images from what follows. The global numpy
    state is left as it was.
    """
    targets_np = np.asarray(targets)
    state = np.random.get_state()
    try:
        np.random.seed(seed)
        orders = []
        for c in range(num_classes):
            idx = np.where(targets_np == c)[0]
            np.random.shuffle(idx)
            orders.append(idx)
    finally:
        np.random.set_state(state)
    return orders


def longtail_subset(targets: Sequence[int], counts: Sequence[int], seed: int = 0) -> np.ndarray:
    """Indices of the reference long-tailed subset (class by class, first n_i after the shuffle)."""
    orders = longtail_order(targets, len(counts), seed)
    for c, (order, n) in enumerate(zip(orders, counts)):
        if n > len(order):
            raise ValueError(f"class {c} has {len(order)} images, the profile asks for {n}")
    return np.concatenate([order[:n] for order, n in zip(orders, counts)]).astype(np.int64)


def split_train_val(
    targets: Sequence[int], counts: Sequence[int], val_per_class: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) index arrays: the protocol's subset and a balanced validation set.

    Validation images of class c are the ``val_per_class`` images that follow the protocol's n_c in
    c's shuffled order (images the long-tailed subset left unused). Where a class has fewer unused
    images than that (only a head class whose n_c is its whole pool), the shortfall is held out
    from the end of its training share, so validation stays balanced and disjoint from training.
    """
    orders = longtail_order(targets, len(counts), seed)
    train, val = [], []
    for c, (order, n) in enumerate(zip(orders, counts)):
        if n > len(order):
            raise ValueError(f"class {c} has {len(order)} images, the profile asks for {n}")
        unused = order[n:]
        if len(unused) >= val_per_class:
            train.append(order[:n])
            val.append(unused[:val_per_class])
        else:
            short = val_per_class - len(unused)
            if n - short < 1:
                raise ValueError(f"class {c}: too few images for {val_per_class} validation images")
            train.append(order[: n - short])
            val.append(np.concatenate([order[n - short : n], unused]))
    return (np.concatenate(train).astype(np.int64), np.concatenate(val).astype(np.int64))


# The literature's many/medium/few thresholds (> 100 / < 20 training images; Liu et al. 2019,
# used for CIFAR-100-LT, ImageNet-LT and iNaturalist 2018); other datasets default to thirds of
# their log-count range (``relative_splits``), so that no group is empty by accident.
CONVENTIONAL_SPLITS: dict[str, tuple[int, int]] = {"cifar100": (100, 20), "imagenet_lt": (100, 20), "inat": (100, 20)}


def relative_splits(class_counts: Sequence[int]) -> tuple[int, int]:
    """``(many, few)`` at the thirds of the log-count range: with n_min, n_max the smallest and
    largest class counts and r = n_max / n_min, many-shot is count > n_min·r^(2/3) and few-shot
    count < n_min·r^(1/3) (returned as integers with the same meaning: ``floor`` and ``ceil``).
    An exponential profile then puts about a third of the classes in each group (CIFAR-10-LT and
    Fashion-MNIST-LT IF100: many > 1077, few < 233, 3 / 3 / 4 classes; digits IF20: > 36 / < 14);
    a step profile leaves medium empty, equal counts put every class in medium."""
    lo, hi = max(min(class_counts), 1), max(max(class_counts), 1)
    r = hi / lo
    many = math.floor(lo * r ** (2 / 3) + 1e-9)
    few = math.ceil(lo * r ** (1 / 3) - 1e-9)
    return many, max(min(few, many), 0)


def default_splits(dataset: str, class_counts: Sequence[int]) -> tuple[int, int]:
    """``(many, few)`` of ``dataset``: the literature's (> 100 / < 20) for the datasets that use them
    (``CONVENTIONAL_SPLITS``), else thirds of the log-count range of ``class_counts``."""
    return CONVENTIONAL_SPLITS.get(dataset) or relative_splits(class_counts)


def split_rule(dataset: str) -> str:
    """A few words naming where ``default_splits`` comes from (printed beside the thresholds)."""
    return "the literature's > 100 / < 20" if dataset in CONVENTIONAL_SPLITS else "thirds of the log-count range"


def resolve_splits(many: int | None, few: int | None, dataset: str, class_counts: Sequence[int]) -> tuple[int, int]:
    """``data.splits`` with ``None`` (the default) replaced by the dataset's default; explicit
    numbers are kept. Raises ``ValueError`` when the result has few > many."""
    m, f = many, few
    if many is None or few is None:
        d_many, d_few = default_splits(dataset, class_counts)
        m = d_many if many is None else many
        f = d_few if few is None else few
    if f > m:
        raise ValueError(f"few ({f}) exceeds many ({m}); give both data.splits.many and data.splits.few")
    return m, f


def split_classes(class_counts: Sequence[int], many: int = 100, few: int = 20) -> dict[str, list[int]]:
    """Many-shot: count > ``many``; few-shot: count < ``few``; medium-shot: the rest."""
    out: dict[str, list[int]] = {"many": [], "medium": [], "few": []}
    for c, n in enumerate(class_counts):
        out["many" if n > many else "few" if n < few else "medium"].append(c)
    return out


def class_split_names(class_counts: Sequence[int], many: int = 100, few: int = 20) -> list[str]:
    groups = split_classes(class_counts, many, few)
    names = [""] * len(class_counts)
    for name, classes in groups.items():
        for c in classes:
            names[c] = name
    return names


def subset_hash(indices: Sequence[int] | np.ndarray) -> str:
    """Short sha256 of the sorted training index list: two runs with the same hash used the same subset."""
    arr = np.sort(np.asarray(indices, dtype=np.int64))
    return hashlib.sha256(arr.tobytes()).hexdigest()[:12]
