"""Long-tailed data: counts and the CIFAR-LT protocol, datasets, samplers, batch augmentation."""

from ltsearch.data import augment, listfile, samplers  # noqa: F401  (register)
from ltsearch.data.datasets import LTData, Split, build_dataset, data_root
from ltsearch.data.longtail import (
    class_split_names,
    longtail_counts,
    longtail_subset,
    split_classes,
    split_train_val,
    subset_hash,
)
from ltsearch.data.samplers import build_sampler

__all__ = [
    "LTData", "Split", "build_dataset", "build_sampler", "class_split_names", "data_root", "longtail_counts",
    "longtail_subset", "split_classes", "split_train_val", "subset_hash",
]
