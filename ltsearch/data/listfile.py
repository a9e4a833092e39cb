"""ImageNet-LT and iNaturalist 2018 from list files ("relative/path label" per line).

``imagenet_lt`` (Liu et al. 2019, OLTR): ``ImageNet_LT_train.txt`` (115,846 images, 1,000 classes,
1,280 → 5 per class), ``ImageNet_LT_val.txt`` (20 per class, drawn from ImageNet's *training*
images) and ``ImageNet_LT_test.txt`` (50 per class, ImageNet's validation images). ltsearch uses
them as they are: validation = the val list (selection), test = the test list (reported).

``inat`` (iNaturalist 2018, Van Horn et al.): ``iNaturalist18_train.txt`` (437,513 images, 8,142
classes, 1,000 → 2) and ``iNaturalist18_val.txt`` (3 per class), which the papers report as their
test set. To keep selection off the reported images, ltsearch splits the val list per class
(seeded by ``data.subset_seed``): ``val_per_class`` images (default 1) for validation, the rest
(default 2 per class, 16,284 images) for test. ``data.options.val_from: train`` instead keeps the
whole val list as the test set (the papers' test set) and holds ``val_per_class`` images per class
out of training (the training set then differs from the papers'). Both are honest; neither is
exactly the papers' protocol, which has no separate validation split.

The files live under ``data.root`` (default ``$LTSEARCH_DATA`` or ``~/.cache/ltsearch``): the list
files in ``<root>/ImageNet_LT/`` (or ``<root>/iNaturalist18/``) or in ``<root>`` itself, the image
paths relative to the directory holding the list files (``data.options.image_root`` overrides).

Loading (minimal, and **not the papers' resolution by default**): every image is decoded with PIL,
converted to RGB, its shorter side resized to ``resize`` (default ``size · 8/7``) and centre-cropped
to ``size`` × ``size`` (``data.options.size``, default 112), then stored as uint8 like the other
datasets; training uses the loop's ``crop_flip`` augmentation (pad ``size // 8``), not
RandomResizedCrop(224). Set ``size: 224`` for the papers' input size: the uint8 arrays then take
about 17 GB (ImageNet-LT train) / 66 GB (iNaturalist train) on disk and in memory — at 112 a
quarter of that. Decoded arrays are cached as ``.npy`` files under ``<root>/ltsearch_cache/``
(keyed by list-file hash, size and split) and memory-mapped, so trials share them and decode once.
``data.max_per_class`` (null) caps training images per class (first in list order) for quick
looks; it is not part of either protocol. ``data.imbalance`` is not used (the lists fix it: 256 and 500).
``ltsearch reproduce`` runs its ImageNet-LT / iNaturalist rows at 224 and marks them not directly
comparable all the same (the augmentation differs; see ``ltsearch/reproduce/papers.yaml``).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ltsearch.data.datasets import LTData, Split, data_root
from ltsearch.data.longtail import subset_hash
from ltsearch.errors import UserError
from ltsearch.registry import DATASETS
from ltsearch.spec import DataSpec

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
DEFAULT_SIZE = 112  # data.options.size when not given (the papers train at 224)


@dataclass(frozen=True)
class ListFile:
    name: str
    lines: int  # expected number of entries
    sha256: str | None  # None: unknown (not published with the lists; see ``ltsearch data verify``)


@dataclass(frozen=True)
class ListDataset:
    name: str
    folder: str  # conventional sub-directory of the data root
    num_classes: int
    files: dict[str, ListFile]  # split -> list file
    max_count: int
    min_count: int
    source: str  # where the list files come from


LIST_DATASETS = {
    "imagenet_lt": ListDataset(
        "imagenet_lt", "ImageNet_LT", 1000,
        {"train": ListFile("ImageNet_LT_train.txt", 115_846, None),
         "val": ListFile("ImageNet_LT_val.txt", 20_000, None),
         "test": ListFile("ImageNet_LT_test.txt", 50_000, None)},
        1280, 5,
        "the OLTR release (Liu et al. 2019, github.com/zhmiao/OpenLongTailRecognition-OLTR); images from "
        "ILSVRC2012 train (train/val lists) and val (test list)",
    ),
    "inat": ListDataset(
        "inat", "iNaturalist18", 8142,
        {"train": ListFile("iNaturalist18_train.txt", 437_513, None),
         "val": ListFile("iNaturalist18_val.txt", 24_426, None)},
        1000, 2,
        "the decoupling release (Kang et al. 2020, github.com/facebookresearch/classifier-balancing); "
        "images from the iNaturalist 2018 competition (train_val2018/)",
    ),
}


def list_dir(ds: ListDataset, root: Path) -> Path:
    """The directory holding the list files: ``<root>/<folder>`` if it exists, else ``<root>``."""
    sub = root / ds.folder
    return sub if sub.is_dir() else root


def missing_list_error(ds: ListDataset, root: Path, path: Path) -> UserError:
    return UserError(
        f"experiment.data.dataset: {ds.name}: list file {path} not found; put {path.name} (from {ds.source}) in "
        f"{root / ds.folder} with the images under that directory, or set data.root / $LTSEARCH_DATA "
        "(or try the spec offline with --smoke)"
    )


def read_list(path: Path) -> tuple[list[str], np.ndarray]:
    """(relative paths, int64 labels) of a "relative/path label" list file."""
    paths, labels = [], []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != 2:
                raise UserError(f"{path}:{i}: expected 'relative/path label', got {line.strip()!r}")
            try:
                labels.append(int(parts[1]))
            except ValueError:
                raise UserError(f"{path}:{i}: label {parts[1]!r} is not an integer") from None
            paths.append(parts[0])
    return paths, np.asarray(labels, dtype=np.int64)


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def _load_image(path: Path, size: int, resize: int) -> np.ndarray:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        w, h = im.size
        scale = resize / min(w, h)
        im = im.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = im.size
        left, top = (w - size) // 2, (h - size) // 2
        im = im.crop((left, top, left + size, top + size))
        return np.asarray(im, dtype=np.uint8).transpose(2, 0, 1)


def decode_images(image_root: Path, rel_paths: Sequence[str], size: int, resize: int, cache: Path | None,
                  workers: int = 8) -> np.ndarray:
    """(N, 3, size, size) uint8 images, from the ``.npy`` cache when present (memory-mapped)."""
    if cache is not None and cache.is_file():
        return np.load(cache, mmap_mode="c")  # copy-on-write: shared pages, writable for torch
    missing = next((p for p in rel_paths if not (image_root / p).is_file()), None)
    if missing is not None:
        raise UserError(f"experiment.data: image {image_root / missing} not found (image paths in the list files are "
                        f"relative to {image_root}; set data.options.image_root if they live elsewhere)")
    out = np.empty((len(rel_paths), 3, size, size), dtype=np.uint8)

    def work(i: int) -> None:
        try:
            out[i] = _load_image(image_root / rel_paths[i], size, resize)
        except OSError as err:  # PIL's UnidentifiedImageError is an OSError
            raise UserError(f"experiment.data: cannot decode image {image_root / rel_paths[i]} ({err}); "
                            "replace the file (ltsearch data verify checks the copy)") from None

    with ThreadPoolExecutor(max(1, workers)) as pool:
        list(pool.map(work, range(len(rel_paths))))
    if cache is not None:
        cache.parent.mkdir(parents=True, exist_ok=True)
        tmp = cache.with_name(cache.name + f".tmp{os.getpid()}.npy")
        np.save(tmp, out)
        os.replace(tmp, cache)
    return out


def _split_val(labels: np.ndarray, per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (first ``per_class`` of each class after a seeded shuffle, the rest)."""
    rng = np.random.RandomState(seed)
    first, rest = [], []
    for c in np.unique(labels):
        idx = np.where(labels == c)[0]
        rng.shuffle(idx)
        first.append(idx[:per_class])
        rest.append(idx[per_class:])
    return np.sort(np.concatenate(first)), np.sort(np.concatenate(rest))


def _cap(labels: np.ndarray, cap: int | None) -> np.ndarray:
    if not cap:
        return np.arange(len(labels))
    keep, seen = [], {}
    for i, c in enumerate(labels.tolist()):
        if seen.get(c, 0) < cap:
            keep.append(i)
            seen[c] = seen.get(c, 0) + 1
    return np.asarray(keep, dtype=np.int64)


def _options(spec: DataSpec) -> dict[str, Any]:
    o: dict[str, Any] = {"size": DEFAULT_SIZE, "resize": None, "image_root": None, "cache": True, "workers": 8,
                         "val_from": "val_list", **spec.options}
    unknown = sorted(set(o) - {"size", "resize", "image_root", "cache", "workers", "val_from"})
    if unknown:
        raise UserError(f"experiment.data.options.{unknown[0]}: unknown option; allowed: size, resize, image_root, "
                        "cache, workers, val_from")
    if o["val_from"] not in ("val_list", "train"):
        raise UserError(f"experiment.data.options.val_from: {o['val_from']!r} is not one of val_list, train")
    o["size"] = int(o["size"])
    o["resize"] = int(o["resize"] or round(o["size"] * 8 / 7))
    return o


def check_list_files(name: str, spec: DataSpec) -> dict[str, Path]:
    """The list files by split; a ``UserError`` naming the first missing one (a cheap preflight
    that decodes nothing)."""
    ds = LIST_DATASETS[name]
    root = data_root(spec)
    folder = list_dir(ds, root)
    lists: dict[str, Path] = {}
    for split, lf in ds.files.items():
        path = folder / lf.name
        if not path.is_file():
            raise missing_list_error(ds, root, path)
        lists[split] = path
    _options(spec)
    return lists


def build_list_dataset(name: str, spec: DataSpec) -> LTData:
    lists = check_list_files(name, spec)
    root = data_root(spec)
    folder = list_dir(LIST_DATASETS[name], root)
    o = _options(spec)
    image_root = Path(o["image_root"]).expanduser() if o["image_root"] else folder
    cache_dir = root / "ltsearch_cache" if o["cache"] else None

    list_hashes = "|".join(sha256_file(p) for p in lists.values())

    def images(split: str, rel: list[str], tag: str) -> np.ndarray:
        key = hashlib.sha256(f"{list_hashes}|{split}|{tag}|{o['size']}|{o['resize']}".encode()).hexdigest()[:16]
        cache = cache_dir / f"{name}_{split}_{o['size']}_{key}.npy" if cache_dir else None
        return decode_images(image_root, rel, o["size"], o["resize"], cache, o["workers"])

    tr_paths, tr_y = read_list(lists["train"])
    val_pc = spec.val_per_class or (20 if name == "imagenet_lt" else 1)
    if name == "imagenet_lt":
        va_paths, va_y = read_list(lists["val"])
        te_paths, te_y = read_list(lists["test"])
        tr_idx = _cap(tr_y, spec.max_per_class)
    else:
        v_paths, v_y = read_list(lists["val"])
        if o["val_from"] == "val_list":
            val_idx, test_idx = _split_val(v_y, val_pc, spec.subset_seed)
            va_paths, va_y = [v_paths[i] for i in val_idx], v_y[val_idx]
            te_paths, te_y = [v_paths[i] for i in test_idx], v_y[test_idx]
            tr_idx = _cap(tr_y, spec.max_per_class)
        else:
            held, kept = _split_val(tr_y, val_pc, spec.subset_seed)
            va_paths, va_y = [tr_paths[i] for i in held], tr_y[held]
            te_paths, te_y = v_paths, v_y
            tr_idx = kept[_cap(tr_y[kept], spec.max_per_class)]
    tr_sel = [tr_paths[i] for i in tr_idx]
    tag = f"seed{spec.subset_seed}|{o['val_from']}|{val_pc}|{spec.max_per_class}"
    x_tr = images("train", tr_sel, tag if (o["val_from"] == "train" or spec.max_per_class) else "all")
    x_va = images("val", va_paths, tag if name == "inat" else "all")
    x_te = images("test" if name == "imagenet_lt" else "val", te_paths, "test" + tag if name == "inat" else "all")
    t = torch.from_numpy
    num_classes = int(max(tr_y.max(), va_y.max(), te_y.max())) + 1  # from the lists (1,000 / 8,142 for the releases)
    counts = np.bincount(tr_y, minlength=num_classes).tolist()
    return LTData(
        name=name, num_classes=num_classes,
        train=Split(t(np.asarray(x_tr)), t(tr_y[tr_idx]).long()), val=Split(t(np.asarray(x_va)), t(va_y).long()),
        test=Split(t(np.asarray(x_te)), t(te_y).long()), mean=IMAGENET_MEAN, std=IMAGENET_STD,
        augment="crop_flip", pad=max(1, o["size"] // 8), subset_hash=subset_hash(tr_idx), protocol_counts=counts,
    )


@DATASETS.register("imagenet_lt")
def imagenet_lt(spec: DataSpec) -> LTData:
    """ImageNet-LT from its list files (see ``ltsearch.data.listfile``): val list → validation,
    test list → test; images decoded to ``data.options.size`` (112) and cached."""
    return build_list_dataset("imagenet_lt", spec)


@DATASETS.register("inat")
def inat(spec: DataSpec) -> LTData:
    """iNaturalist 2018 from its list files (see ``ltsearch.data.listfile``): the official val list
    split per class into validation (``val_per_class``, 1) and test (the rest), unless
    ``data.options.val_from: train``."""
    return build_list_dataset("inat", spec)
