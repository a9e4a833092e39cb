"""Datasets as in-memory uint8 tensors with a long-tailed train split, a balanced val split and
the balanced test split. Each registered builder takes a ``DataSpec`` and returns ``LTData``.

Missing files end in a ``UserError`` that says where to put them (exit code 2), never a hidden
download failure.
"""

from __future__ import annotations

import gzip
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ltsearch.data.longtail import longtail_counts, split_train_val, subset_hash
from ltsearch.errors import UserError
from ltsearch.registry import DATASETS
from ltsearch.spec import DataSpec

FASHION_MNIST_SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Split:
    x: torch.Tensor  # uint8, (N, C, H, W)
    y: torch.Tensor  # int64, (N,)

    def __len__(self) -> int:
        return len(self.y)


@dataclass
class LTData:
    name: str
    num_classes: int
    train: Split
    val: Split
    test: Split
    mean: tuple[float, ...]
    std: tuple[float, ...]
    augment: str = "crop_flip"  # the dataset's standard (weak) training augmentation
    pad: int = 4
    subset_hash: str = ""
    protocol_counts: list[int] = field(default_factory=list)  # counts of the reference protocol

    @property
    def class_counts(self) -> list[int]:
        return torch.bincount(self.train.y, minlength=self.num_classes).tolist()

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train.x.shape[1:])  # type: ignore[return-value]


def data_root(spec: DataSpec) -> Path:
    root = spec.root or os.environ.get("LTSEARCH_DATA") or "~/.cache/ltsearch"
    return Path(root).expanduser()


def build_dataset(spec: DataSpec) -> LTData:
    return DATASETS.get(spec.dataset, where="experiment.data.dataset")(spec)


def _lt_from_pool(
    name: str, x: np.ndarray, y: np.ndarray, test_x: np.ndarray, test_y: np.ndarray, spec: DataSpec,
    num_classes: int, max_per_class: int, val_per_class: int, mean: Sequence[float], std: Sequence[float],
    augment: str, pad: int,
) -> LTData:
    counts = longtail_counts(num_classes, max_per_class, spec.imbalance, spec.profile)
    try:
        tr, va = split_train_val(y, counts, val_per_class, seed=spec.subset_seed)
    except ValueError as err:
        raise UserError(f"experiment.data: {name}: {err} (lower data.max_per_class or data.val_per_class)") from None
    t = lambda a: torch.from_numpy(np.require(a, requirements=["C", "W"]))  # noqa: E731 - contiguous, writable (copied if not)
    return LTData(
        name=name, num_classes=num_classes,
        train=Split(t(x[tr]), t(y[tr]).long()), val=Split(t(x[va]), t(y[va]).long()),
        test=Split(t(test_x), t(test_y).long()), mean=tuple(mean), std=tuple(std),
        augment=augment, pad=pad, subset_hash=subset_hash(tr), protocol_counts=counts,
    )


@DATASETS.register("digits")
def digits(spec: DataSpec) -> LTData:
    """scikit-learn's bundled 8×8 digits (1,797 images, offline). Per class (seeded by
    ``subset_seed``): 50 test images, then the long-tailed train subset and ``val_per_class``
    (default 20) validation images from the rest; ``max_per_class`` defaults to 100."""
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.clip(d.images * 16, 0, 255).astype(np.uint8)[:, None]  # (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    rng = np.random.RandomState(spec.subset_seed + 12345)
    test_idx, pool_idx = [], []
    for c in range(10):
        idx = np.where(y == c)[0]
        rng.shuffle(idx)
        test_idx.append(idx[:50])
        pool_idx.append(idx[50:])
    te, pool = np.concatenate(test_idx), np.concatenate(pool_idx)
    return _lt_from_pool(
        "digits", images[pool], y[pool], images[te], y[te], spec, 10,
        spec.max_per_class or 100, spec.val_per_class or 20, (0.33,), (0.38,), "shift", 1,
    )


@DATASETS.register("synthetic")
def synthetic(spec: DataSpec) -> LTData:
    """Random class prototypes plus noise, for tests. Options: ``num_classes`` (10), ``size`` (8),
    ``channels`` (1), ``noise`` (0.25), ``test_per_class`` (20)."""
    o: dict[str, Any] = {"num_classes": 10, "size": 8, "channels": 1, "noise": 0.25, "test_per_class": 20, **spec.options}
    c, size, ch = int(o["num_classes"]), int(o["size"]), int(o["channels"])
    max_pc, val_pc = spec.max_per_class or 60, spec.val_per_class or 10
    rng = np.random.RandomState(1000 + spec.subset_seed)
    protos = rng.rand(c, ch, size, size)

    def make(n_per_class: int) -> tuple[np.ndarray, np.ndarray]:
        y = np.repeat(np.arange(c), n_per_class)
        x = protos[y] + o["noise"] * rng.randn(len(y), ch, size, size)
        return (np.clip(x, 0, 1) * 255).astype(np.uint8), y.astype(np.int64)

    x, y = make(max_pc + val_pc)
    tx, ty = make(int(o["test_per_class"]))
    return _lt_from_pool("synthetic", x, y, tx, ty, spec, c, max_pc, val_pc, (0.5,) * ch, (0.3,) * ch, "none", 0)


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as f:  # type: ignore[operator]
        data = bytearray(f.read())  # writable memory: torch.from_numpy needs a writable array
    _, _, dtype, ndim = struct.unpack(">BBBB", data[:4])
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find_idx(dirs: Sequence[Path], stem: str) -> Path | None:
    for d in dirs:
        for name in (stem, stem + ".gz"):
            if (d / name).is_file():
                return d / name
    return None


@DATASETS.register("fashion_mnist")
def fashion_mnist(spec: DataSpec) -> LTData:
    """Fashion-MNIST from idx files in /usr/share/datasets/fashion-mnist (Debian's
    ``dataset-fashion-mnist``), ``<root>/fashion-mnist`` or ``<root>/FashionMNIST/raw``;
    ``max_per_class`` defaults to 5,000 (so every class leaves images for validation)."""
    root = data_root(spec)
    dirs = [FASHION_MNIST_SYSTEM_DIR, root / "fashion-mnist", root / "FashionMNIST" / "raw", root]
    stems = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
    paths = [_find_idx(dirs, s) for s in stems]
    if any(p is None for p in paths):
        try:
            from torchvision.datasets import FashionMNIST

            FashionMNIST(str(root), train=True, download=True)
            FashionMNIST(str(root), train=False, download=True)
            paths = [_find_idx(dirs, s) for s in stems]
        except Exception as err:  # noqa: BLE001 - reported to the user, not hidden
            raise UserError(
                f"experiment.data.dataset: fashion_mnist files not found in {FASHION_MNIST_SYSTEM_DIR} or "
                f"{root}/fashion-mnist and the download failed ({type(err).__name__}); run "
                "'apt-get install dataset-fashion-mnist' or put the four idx files in "
                f"{root}/fashion-mnist"
            ) from None
    xtr, ytr, xte, yte = (_read_idx(p) for p in paths)  # type: ignore[arg-type]
    return _lt_from_pool(
        "fashion_mnist", xtr[:, None], ytr.astype(np.int64), xte[:, None], yte.astype(np.int64), spec, 10,
        spec.max_per_class or 5000, spec.val_per_class or 100, (0.286,), (0.353,), "crop_flip", 2,
    )


_CIFAR = {
    "cifar10": ("CIFAR10", "cifar-10-batches-py", "cifar-10-python.tar.gz", 10, 100,
                (0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)),
    "cifar100": ("CIFAR100", "cifar-100-python", "cifar-100-python.tar.gz", 100, 20,
                 (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _cifar(name: str, spec: DataSpec) -> LTData:
    cls_name, folder, archive, num_classes, val_default, mean, std = _CIFAR[name]
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    root = data_root(spec)
    existed = root.exists()
    try:
        train = cls(str(root), train=True, download=not (root / folder).is_dir())
        test = cls(str(root), train=False, download=False)
    except Exception as err:  # noqa: BLE001 - reported, with what to do
        if not existed and root.is_dir() and not any(root.iterdir()):
            root.rmdir()  # leave nothing behind from the failed download
        raise UserError(
            f"experiment.data.dataset: {name} not found under {root}/{folder} and it could not be "
            f"downloaded ({type(err).__name__}); download {archive} from "
            f"https://www.cs.toronto.edu/~kriz/ and extract it into {root} (or set data.root / "
            "$LTSEARCH_DATA), or try the spec offline with --smoke"
        ) from None
    x = np.asarray(train.data).transpose(0, 3, 1, 2)
    tx = np.asarray(test.data).transpose(0, 3, 1, 2)
    return _lt_from_pool(
        name, x, np.asarray(train.targets, dtype=np.int64), tx, np.asarray(test.targets, dtype=np.int64), spec,
        num_classes, spec.max_per_class or (50000 // num_classes), spec.val_per_class or val_default,
        mean, std, "crop_flip", 4,
    )


@DATASETS.register("cifar10")
def cifar10(spec: DataSpec) -> LTData:
    """CIFAR-10-LT by the reference protocol (torchvision files; IF100 → 12,406 images)."""
    return _cifar("cifar10", spec)


@DATASETS.register("cifar100")
def cifar100(spec: DataSpec) -> LTData:
    """CIFAR-100-LT by the reference protocol (torchvision files; IF100 → 10,847 images)."""
    return _cifar("cifar100", spec)


PROTOCOL_SIZES = {"cifar10": (10, 5000), "cifar100": (100, 500), "digits": (10, 100), "fashion_mnist": (10, 5000),
                  "synthetic": (10, 60)}


def protocol_counts(spec: DataSpec) -> list[int] | None:
    """The long-tailed protocol's class counts of a built-in dataset, from the spec alone (what its
    builder puts in ``LTData.protocol_counts``); None where they need the files (ImageNet-LT,
    iNaturalist: their lists) or the dataset is a plugin."""
    if spec.dataset not in PROTOCOL_SIZES:
        return None
    num_classes, max_per_class = PROTOCOL_SIZES[spec.dataset]
    if spec.dataset == "synthetic":
        num_classes = int(spec.options.get("num_classes", num_classes))
    return longtail_counts(num_classes, spec.max_per_class or max_per_class, spec.imbalance, spec.profile)
