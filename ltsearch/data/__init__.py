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
from ltsearch.spec import DataSpec


def check_available(spec: DataSpec) -> LTData | None:
    """Fail fast (``UserError``, exit 2) when a dataset's files are missing. List datasets
    (ImageNet-LT, iNaturalist) are only checked, not decoded: trials decode (and cache) them.
    Returns the data it built (None for a list dataset)."""
    if spec.dataset in listfile.LIST_DATASETS:
        listfile.check_list_files(spec.dataset, spec)
        return None
    return build_dataset(spec)


__all__ = [
    "LTData", "Split", "build_dataset", "check_available", "build_sampler", "class_split_names", "data_root", "longtail_counts",
    "longtail_subset", "split_classes", "split_train_val", "subset_hash",
]
