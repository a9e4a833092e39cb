import numpy as np
import pytest
import torch

from ltsearch.data import build_sampler, longtail_counts, longtail_subset, split_classes, split_train_val, subset_hash
from ltsearch.data.augment import crop_flip, random_crop, strong
from ltsearch.data.datasets import build_dataset
from ltsearch.spec import DataSpec


@pytest.mark.parametrize("classes, max_pc, imbalance, total", [
    (100, 500, 100, 10847), (10, 5000, 100, 12406), (100, 500, 50, 12608), (100, 500, 200, 9502),
    (100, 500, 10, 19573),
])
def test_cifar_lt_totals(classes, max_pc, imbalance, total):
    assert sum(longtail_counts(classes, max_pc, imbalance)) == total


def test_counts_formula_by_hand():
    # n_i = int(500 * 0.01 ** (i / 99)) for CIFAR-100 IF100
    counts = longtail_counts(100, 500, 100)
    assert counts[0] == 500 and counts[-1] == 5
    assert counts[1] == int(500 * 0.01 ** (1 / 99)) == 477
    assert longtail_counts(4, 100, 10, "step") == [100, 100, 10, 10]


def test_cifar100_if100_splits():
    groups = split_classes(longtail_counts(100, 500, 100))
    assert [len(groups[k]) for k in ("many", "medium", "few")] == [35, 35, 30]
    assert split_classes([101, 100, 20, 19]) == {"many": [0], "medium": [1, 2], "few": [3]}


def test_subset_matches_reference_numpy_protocol():
    rng = np.random.RandomState(3)
    targets = rng.randint(0, 5, size=400)
    counts = [60, 30, 15, 8, 4]
    # the reference protocol written out: seed, then per class shuffle and keep the first n_i
    np.random.seed(0)
    expected = []
    for c, n in enumerate(counts):
        idx = np.where(targets == c)[0]
        np.random.shuffle(idx)
        expected.extend(idx[:n].tolist())
    got = longtail_subset(targets, counts, seed=0)
    assert got.tolist() == expected
    assert longtail_subset(targets, counts, seed=0).tolist() == got.tolist()
    assert longtail_subset(targets, counts, seed=1).tolist() != got.tolist()
    assert subset_hash(got) == subset_hash(got[::-1]) != subset_hash(longtail_subset(targets, counts, seed=1))


def test_val_is_balanced_and_disjoint_with_head_shortfall():
    targets = np.repeat(np.arange(3), 50)
    counts = [50, 20, 5]  # the head class uses its whole pool
    train, val = split_train_val(targets, counts, val_per_class=6, seed=0)
    assert not set(train) & set(val)
    assert np.bincount(targets[val]).tolist() == [6, 6, 6]
    assert np.bincount(targets[train]).tolist() == [44, 20, 5]
    # classes with spare images keep exactly the protocol's subset
    assert set(train[targets[train] == 1]) == set(longtail_subset(targets, counts)[50:70])


def test_digits_splits_disjoint_and_balanced():
    d = build_dataset(DataSpec(dataset="digits", imbalance=20))
    assert d.class_counts == longtail_counts(10, 100, 20)
    assert torch.bincount(d.val.y).tolist() == [20] * 10
    assert torch.bincount(d.test.y).tolist() == [50] * 10
    # no image appears in two splits (rows are compared as bytes; digits has no exact duplicates across them)
    rows = lambda s: {bytes(x.numpy().tobytes()) for x in s.x}  # noqa: E731
    tr, va, te = rows(d.train), rows(d.val), rows(d.test)
    assert not (tr & va) and not (tr & te) and not (va & te)


def test_missing_cifar_is_a_user_error(tmp_path, monkeypatch):
    from ltsearch.errors import UserError
    import torchvision.datasets as tvd

    def offline(*a, **k):
        raise RuntimeError("no internet")

    monkeypatch.setattr(tvd, "CIFAR100", offline)
    with pytest.raises(UserError, match="cifar-100-python.tar.gz"):
        build_dataset(DataSpec(dataset="cifar100", root=str(tmp_path)))


@pytest.mark.parametrize("name, expected", [
    ("instance", [0.8, 0.15, 0.05]),
    ("class_balanced", [1 / 3] * 3),
    ("sqrt", [np.sqrt(n) / (np.sqrt(160) + np.sqrt(30) + np.sqrt(10)) for n in (160, 30, 10)]),
    ("reversed", [(1 / 160) / (1 / 160 + 1 / 30 + 1 / 10), (1 / 30) / (1 / 160 + 1 / 30 + 1 / 10),
                  (1 / 10) / (1 / 160 + 1 / 30 + 1 / 10)]),
])
def test_sampler_class_frequencies(name, expected):
    labels = torch.tensor([0] * 160 + [1] * 30 + [2] * 10)
    s = build_sampler(name, labels, [160, 30, 10])
    drawn = torch.cat([labels[s.epoch_indices(0, e)] for e in range(60)])
    freq = torch.bincount(drawn, minlength=3).double() / len(drawn)
    assert np.allclose(freq.numpy(), expected, atol=0.015)


def test_sampler_ranks_split_one_stream():
    labels = torch.tensor([0] * 50 + [1] * 10)
    s = build_sampler("reversed", labels, [50, 10])
    full = s.epoch_indices(5, 3)
    parts = [s.epoch_indices(5, 3, rank=r, world_size=2) for r in range(2)]
    assert torch.equal(torch.sort(torch.cat(parts)).values, torch.sort(full).values)


def test_augmentations_keep_shape_and_content():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    for fn in (crop_flip, strong):
        y = fn(x, g)
        assert y.shape == x.shape and torch.isfinite(y).all()
    # a crop with zero offset reproduces the padded image's interior exactly
    one = torch.arange(16.0).view(1, 1, 4, 4)
    crops = {tuple(random_crop(one, torch.Generator().manual_seed(s), 1).flatten().tolist()) for s in range(40)}
    assert tuple(one.flatten().tolist()) in crops and len(crops) > 3


def _write_idx(path, array):
    import gzip
    import struct

    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + struct.pack(">" + "I" * array.ndim, *array.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + array.astype(np.uint8).tobytes())


def test_idx_files_load_writable_without_numpy_warning(tmp_path, monkeypatch):
    """Fashion-MNIST's idx files: the arrays are writable (torch.from_numpy warned on every load
    when they were views of immutable bytes) and hold the file's values."""
    import warnings

    from ltsearch.data.datasets import _read_idx

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(60, 28, 28))
    labels = np.repeat(np.arange(10), 6)
    root = tmp_path / "fashion-mnist"
    root.mkdir()
    for split, n in (("train", 60), ("t10k", 60)):
        _write_idx(root / f"{split}-images-idx3-ubyte.gz", images[:n])
        _write_idx(root / f"{split}-labels-idx1-ubyte.gz", labels[:n])
    arr = _read_idx(root / "train-images-idx3-ubyte.gz")
    assert arr.flags.writeable and arr.shape == (60, 28, 28) and (arr == images).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # "The given NumPy array is not writable" would raise here
        torch.from_numpy(arr)
        torch.from_numpy(_read_idx(root / "t10k-labels-idx1-ubyte.gz"))


@pytest.mark.skipif(not __import__("pathlib").Path("/usr/share/datasets/fashion-mnist").is_dir(),
                    reason="Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
def test_fashion_mnist_loads_without_warnings():
    import warnings

    from ltsearch.spec import DataSpec

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        data = build_dataset(DataSpec(dataset="fashion_mnist", imbalance=100))
    assert data.num_classes == 10 and data.class_counts[0] > 50 * data.class_counts[-1]  # long-tailed (IF 100)
