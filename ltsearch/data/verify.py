"""``ltsearch data verify``: check a local copy of a dataset against what ltsearch expects.

- CIFAR-10/100: the torchvision batch files exist and have their published md5 (torchvision's own
  table); the long-tailed subset built by the reference protocol has exactly the protocol's
  per-class counts (and the known totals: IF100 → 12,406 / 10,847); the trained subset differs only
  by the documented validation hold-out of a head class whose pool is exhausted.
- digits / synthetic / fashion_mnist: built per-class counts against the protocol's.
- imagenet_lt / inat: each list file exists, its sha256 against the value shipped in
  ``ltsearch.data.listfile.LIST_DATASETS`` (unknown for all of them: the releases publish no
  hashes, so only line counts and class counts are checked), its number of entries, the training
  list's class count and max / min per class, and that every listed image exists.

Each check gives a line; problems are collected, and the CLI exits 2 when there is any.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ltsearch.data.listfile import LIST_DATASETS, list_dir, read_list, sha256_file
from ltsearch.data.longtail import longtail_counts, longtail_subset
from ltsearch.errors import UserError
from ltsearch.spec import DataSpec

KNOWN_TOTALS = {("cifar10", 100.0): 12_406, ("cifar100", 100.0): 10_847}


@dataclass
class Report:
    dataset: str
    lines: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    def ok(self, msg: str) -> None:
        self.lines.append(f"ok       {msg}")

    def info(self, msg: str) -> None:
        self.lines.append(f"         {msg}")

    def bad(self, msg: str) -> None:
        self.lines.append(f"PROBLEM  {msg}")
        self.problems.append(msg)


def _md5(path: Path) -> str:
    h = hashlib.md5()  # noqa: S324 - torchvision publishes md5
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _compact(counts: list[int]) -> str:
    shown = counts if len(counts) <= 20 else counts[:10] + ["…"] + counts[-10:]  # type: ignore[operator]
    return ", ".join(str(c) for c in shown)


def verify_cifar(name: str, root: Path, imbalance: float, seed: int = 0) -> Report:
    import torchvision.datasets as tvd

    from ltsearch.data.datasets import _CIFAR

    rep = Report(name)
    cls = getattr(tvd, _CIFAR[name][0])
    folder = root / cls.base_folder
    for fname, md5 in [*cls.train_list, *cls.test_list]:
        path = folder / fname
        if not path.is_file():
            rep.bad(f"{path} is missing (download {_CIFAR[name][2]} from https://www.cs.toronto.edu/~kriz/ "
                    f"and extract it into {root})")
        elif _md5(path) != md5:
            rep.bad(f"{path} is different from the published file (md5 {_md5(path)}, expected {md5}); "
                    "download it again")
        else:
            rep.ok(f"{path} (md5 {md5})")
    if rep.problems:
        return rep
    train = cls(str(root), train=True, download=False)
    targets = np.asarray(train.targets)
    num_classes = _CIFAR[name][3]
    protocol = longtail_counts(num_classes, 50_000 // num_classes, imbalance)
    built = np.bincount(targets[longtail_subset(targets, protocol, seed)], minlength=num_classes).tolist()
    rep.info(f"protocol counts (IF {imbalance:g}): {sum(protocol):,} images: {_compact(protocol)}")
    if built == protocol:
        rep.ok(f"built long-tailed subset (numpy seed {seed}) matches the protocol class by class ({sum(built):,} images)")
    else:
        diff = [c for c in range(num_classes) if built[c] != protocol[c]]
        rep.bad(f"built subset differs from the protocol in classes {diff[:10]} (built {sum(built):,} images)")
    known = KNOWN_TOTALS.get((name, float(imbalance)))
    if known is not None:
        (rep.ok if sum(protocol) == known else rep.bad)(f"total {sum(protocol):,} (reference protocol: {known:,})")
    from ltsearch.data.datasets import build_dataset

    data = build_dataset(DataSpec(dataset=name, imbalance=imbalance, root=str(root), subset_seed=seed))
    trained = data.class_counts
    held = [(c, protocol[c] - trained[c]) for c in range(num_classes) if trained[c] != protocol[c]]
    rep.info(f"trained subset: {sum(trained):,} images ({len(data.val)} validation images, "
             f"{len(data.val) // num_classes} per class, from images the subset left unused)")
    if all(0 < h <= len(data.val) // num_classes for _, h in held):
        for c, h in held:
            rep.info(f"class {c}: {h} of its {protocol[c]} protocol images held out for validation (its pool is exhausted)")
    else:
        rep.bad(f"trained counts differ from the protocol beyond the validation hold-out: {held[:5]}")
    return rep


def verify_builtin(name: str, root: Path | None, imbalance: float) -> Report:
    from ltsearch.data.datasets import build_dataset

    rep = Report(name)
    data = build_dataset(DataSpec(dataset=name, imbalance=imbalance, root=str(root) if root else None))
    protocol, trained = data.protocol_counts, data.class_counts
    rep.info(f"protocol counts (IF {imbalance:g}): {sum(protocol):,} images: {_compact(protocol)}")
    rep.info(f"trained counts: {sum(trained):,} images: {_compact(trained)}")
    per_class_val = len(data.val) // data.num_classes
    bad = [c for c in range(data.num_classes) if not 0 <= protocol[c] - trained[c] <= per_class_val]
    if bad:
        rep.bad(f"trained counts differ from the protocol in classes {bad[:10]}")
    else:
        rep.ok(f"trained counts match the protocol (up to the {per_class_val}-per-class validation hold-out)")
    return rep


def verify_lists(name: str, root: Path, check_images: bool = True) -> Report:
    ds = LIST_DATASETS[name]
    rep = Report(name)
    folder = list_dir(ds, root)
    parsed = {}
    for split, lf in ds.files.items():
        path = folder / lf.name
        if not path.is_file():
            rep.bad(f"{path} is missing: put {lf.name} (from {ds.source}) in {root / ds.folder}")
            continue
        digest = sha256_file(path)
        if lf.sha256 is None:
            rep.info(f"{path}: sha256 {digest} (no published hash is known to ltsearch; not compared)")
        elif digest != lf.sha256:
            rep.bad(f"{path} is different from the released file (sha256 {digest}, expected {lf.sha256})")
        else:
            rep.ok(f"{path}: sha256 matches")
        try:
            paths, labels = read_list(path)
        except UserError as err:
            rep.bad(str(err))
            continue
        parsed[split] = (paths, labels)
        (rep.ok if len(labels) == lf.lines else rep.bad)(
            f"{path}: {len(labels):,} entries (released file: {lf.lines:,})")
    if "train" in parsed:
        labels = parsed["train"][1]
        counts = np.bincount(labels, minlength=ds.num_classes)
        present = int((counts > 0).sum())
        ok = present == ds.num_classes and counts.max() == ds.max_count and counts.min() == ds.min_count
        (rep.ok if ok else rep.bad)(
            f"training list: {present} classes with images (expected {ds.num_classes}), max {counts.max()} / "
            f"min {counts.min()} per class (expected {ds.max_count} / {ds.min_count})")
    if check_images and parsed:
        missing, total = [], 0
        for paths, _ in parsed.values():
            for p in paths:
                total += 1
                if not (folder / p).is_file():
                    missing.append(p)
        if missing:
            rep.bad(f"{len(missing):,} of {total:,} listed images are missing under {folder}, e.g. {folder / missing[0]}")
        else:
            rep.ok(f"all {total:,} listed images exist under {folder}")
    return rep


def verify(dataset: str, root: Path | None = None, imbalance: float = 100.0, check_images: bool = True) -> Report:
    from ltsearch.data.datasets import data_root
    from ltsearch.registry import DATASETS

    DATASETS.get(dataset, where="dataset")
    base = root if root is not None else data_root(DataSpec())
    if dataset in ("cifar10", "cifar100"):
        return verify_cifar(dataset, base, imbalance)
    if dataset in LIST_DATASETS:
        return verify_lists(dataset, base, check_images)
    return verify_builtin(dataset, root, imbalance)
