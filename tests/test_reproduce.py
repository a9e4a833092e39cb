"""``ltsearch reproduce`` (papers.yaml, --list, a --smoke row, --compare), ``ltsearch data verify``
and the list-file datasets (imagenet_lt / inat) on fake local copies."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.errors import UserError
from ltsearch.reproduce import compare_runs, load_table, row_experiment, row_spec, select


def invoke(*args: str, **kw):
    return CliRunner().invoke(app, list(args), **kw)


def one_error_line(result) -> str:
    lines = [ln for ln in result.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1, result.output
    return lines[0]


# ------------------------------------------------------------------------------------ the table


def test_table_covers_headlines_and_ablations():
    rows, recipes = load_table()
    assert len({r.id for r in rows}) == len(rows)
    have = {(r.paper, t.strip()) for r in rows for t in r.table.split("/")}
    for paper, tables in {"BBN": [1, 2, 3, 4], "SDNHL": [1, 3, 5, 6], "HRDC": [2, 3, 4, 5, 6],
                          "GLAG": [2, 3, 5, 7], "BWLM": [2, 4]}.items():
        for t in tables:
            assert (paper, f"Table {t}") in have, (paper, t)
    for r in rows:
        assert r.recipe in recipes and recipes[r.recipe]["source"]
        assert 0 < r.accuracy < 100


def test_every_row_is_a_valid_spec_at_full_and_smoke_scale():
    rows, recipes = load_table()
    for r in rows:
        spec = row_spec(r, recipes, seeds=[0, 1])
        assert spec.experiment.data.dataset == r.dataset and spec.experiment.model.arch == r.backbone
        assert spec.description.startswith("ltsearch reproduce: " + r.id)
        smoke = row_spec(r, recipes, seeds=[0], smoke=True)
        assert smoke.experiment.data.dataset == "digits" and smoke.name.endswith("_smoke")


def test_error_rows_convert_to_accuracy():
    rows, _ = load_table()
    (bbn,) = select(rows, ["bbn.t4.parabolic_decay"])
    assert bbn.metric == "error" and bbn.reported == pytest.approx(17.82) and bbn.accuracy == pytest.approx(82.18)
    assert [r.id for r in select(rows, ["bbn.t3.*"])] == ["bbn.t3.uniform", "bbn.t3.balanced", "bbn.t3.reversed"]
    with pytest.raises(UserError, match="did you mean"):
        select(rows, ["bbn.t4.cosin"])


def test_list_prints_rows():
    result = invoke("reproduce", "--list")
    assert result.exit_code == 0, result.output
    for rid in ("bbn.t1.c10.if100", "sdnhl.t6.gamma1", "hrdc.t5.hrdc", "glag.t7.gra_ad_kd", "bwlm.t2.inlt.bwlm"):
        assert rid in result.output
    filtered = invoke("reproduce", "--list", "sdnhl.t6.*")
    assert filtered.exit_code == 0 and "sdnhl.t6.gamma0.3" in filtered.output and "bbn.t1" not in filtered.output


def test_bad_input_exits_2_with_one_line(tmp_path):
    assert invoke("reproduce", "no.such.row").exit_code == 2
    assert "no row 'no.such.row'" in one_error_line(invoke("reproduce", "no.such.row"))
    r = invoke("reproduce", "bbn.t4.equal", "--seeds", "0,x")
    assert r.exit_code == 2 and "--seeds" in one_error_line(r)
    r = invoke("reproduce", "--compare", str(tmp_path))
    assert r.exit_code == 2 and "not a run directory" in one_error_line(r)
    assert invoke("reproduce").exit_code == 2


# ------------------------------------------------------------------------------------ compare


def _fake_run(run_dir: Path, exps: list[dict], accs: list[float], description: str = "") -> None:
    (run_dir / "trials").mkdir(parents=True)
    rows = [{"trial_id": f"t{i}", "status": "ok", "config_json": json.dumps(e), "test_acc": a,
             "test_many": a + 5, "test_medium": a, "test_few": a - 5} for i, (e, a) in enumerate(zip(exps, accs))]
    rows.append({"trial_id": "bad", "status": "failed", "config_json": json.dumps(exps[0]), "test_acc": float("nan"),
                 "test_many": None, "test_medium": None, "test_few": None})
    pd.DataFrame(rows).to_parquet(run_dir / "trials" / "part.parquet")
    if description:
        (run_dir / "spec.yaml").write_text(f"name: {run_dir.name}\ndescription: '{description}'\n")


def test_compare_matches_a_foreign_sweep_by_configuration(tmp_path):
    """A run that did not come from `reproduce` (e.g. bbn_adaptor.yaml at full scale) is matched by
    data, model and method with defaults filled in; a different optimiser is flagged."""
    rows, recipes = load_table()
    (cosine,) = select(rows, ["bbn.t4.cosine"])
    exp = row_experiment(cosine, recipes)
    exp["method"] = {"name": "bbn", "adaptor": "cosine"}  # defaults left out: still the same method
    other = json.loads(json.dumps(exp))
    other["optim"]["weight_decay"] = 5e-4
    _fake_run(tmp_path / "bbn_adaptor", [exp, exp], [80.0, 82.0])
    _fake_run(tmp_path / "other", [other], [70.0])
    comps, unmatched = compare_runs([tmp_path / "bbn_adaptor", tmp_path / "other"])
    assert not unmatched
    by_dir = {Path(c.run_dir).name: c for c in comps}
    c = by_dir["bbn_adaptor"]
    assert c.row.id == "bbn.t4.cosine" and c.seeds == 2 and c.measured == pytest.approx(81.0)
    assert c.diff == pytest.approx(81.0 - 81.96) and c.many == pytest.approx(86.0) and not c.recipe_differs
    assert by_dir["other"].recipe_differs
    result = invoke("reproduce", "--compare", str(tmp_path))  # a storage directory of runs
    assert result.exit_code == 0, result.output
    assert "bbn.t4.cosine" in result.output and "81.96" in result.output and "-0.96" in result.output


def test_compare_uses_the_row_recorded_by_reproduce(tmp_path):
    toy = {"data": {"dataset": "digits", "imbalance": 20}, "model": {"arch": "small_cnn"},
           "method": {"name": "bbn", "adaptor": "equal"}, "optim": {}}
    _fake_run(tmp_path / "reproduce_bbn.t4.equal_smoke", [toy], [40.0],
              description="ltsearch reproduce: bbn.t4.equal (BBN Table 4)")
    comps, _ = compare_runs([tmp_path / "reproduce_bbn.t4.equal_smoke"])
    assert [c.row.id for c in comps] == ["bbn.t4.equal"] and comps[0].diff == pytest.approx(40.0 - 78.44)


@pytest.mark.slow
def test_reproduce_one_row_smoke_then_compare(tmp_path, monkeypatch):
    monkeypatch.setenv("LTSEARCH_CACHE", str(tmp_path / "cache"))
    result = invoke("reproduce", "bbn.t4.equal", "--smoke", "--seeds", "0", "--storage", str(tmp_path))
    assert result.exit_code == 0, result.output
    run_dir = tmp_path / "reproduce_bbn.t4.equal_smoke"
    trials = pd.read_parquet(run_dir / "trials")
    assert list(trials["status"]) == ["ok"] and trials["method"].iloc[0] == "bbn"
    assert "bbn.t4.equal" in result.output and "78.44" in result.output
    compared = invoke("reproduce", "--compare", str(run_dir))
    assert compared.exit_code == 0, compared.output
    assert "bbn.t4.equal" in compared.output and "78.44" in compared.output


# ------------------------------------------------------------------------------------ data verify


def test_verify_digits_counts():
    result = invoke("data", "verify", "digits", "--imbalance", "20")
    assert result.exit_code == 0, result.output
    assert "protocol counts (IF 20): 335 images" in result.output and "digits: ok" in result.output


class _FakeCIFAR10:
    """Stands in for torchvision's CIFAR10: 5,000 / 1,000 images per class (zeros)."""

    base_folder = "cifar-10-batches-py"
    train_list = [["data_batch_1", "md5-train"]]
    test_list = [["test_batch", "md5-test"]]

    def __init__(self, root, train=True, download=False):
        n = 50_000 if train else 10_000
        self.targets = (np.arange(n) % 10).tolist()
        self.data = np.zeros((n, 32, 32, 3), dtype=np.uint8)


def test_verify_cifar_protocol_counts(tmp_path, monkeypatch):
    import torchvision.datasets as tvd

    import ltsearch.data.verify as verify_mod

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"x")
    (folder / "test_batch").write_bytes(b"y")
    monkeypatch.setattr(tvd, "CIFAR10", _FakeCIFAR10)
    monkeypatch.setattr(verify_mod, "_md5", lambda p: {"data_batch_1": "md5-train", "test_batch": "md5-test"}[p.name])
    result = invoke("data", "verify", "cifar10", "--root", str(tmp_path))
    assert result.exit_code == 0, result.output
    out = result.output
    assert "matches the protocol class by class (12,406 images)" in out
    assert "total 12,406 (reference protocol: 12,406)" in out
    assert "class 0: 100 of its 5000 protocol images held out for validation" in out
    # a corrupted file is named, exit 2
    monkeypatch.setattr(verify_mod, "_md5", lambda p: "0" * 32)
    bad = invoke("data", "verify", "cifar10", "--root", str(tmp_path))
    assert bad.exit_code == 2 and "data_batch_1 is different" in one_error_line(bad)


def test_verify_cifar_missing_files_named(tmp_path):
    result = invoke("data", "verify", "cifar100", "--root", str(tmp_path))
    assert result.exit_code == 2
    line = one_error_line(result)
    assert str(tmp_path / "cifar-100-python" / "train") in line and "cifar-100-python.tar.gz" in line


def _fake_imagenet_lt(root: Path, with_val: bool = True) -> Path:
    from PIL import Image

    folder = root / "ImageNet_LT"
    (folder / "train" / "n0").mkdir(parents=True)
    rng = np.random.RandomState(0)
    sizes = {"train": [6, 4, 2], "val": [2, 2, 2], "test": [3, 3, 3]}
    for split, per_class in sizes.items():
        if split == "val" and not with_val:
            continue
        lines = []
        for c, n in enumerate(per_class):
            for i in range(n):
                rel = f"train/n0/{split}_{c}_{i}.png"
                Image.fromarray((rng.rand(30, 40, 3) * 255).astype("uint8")).save(folder / rel)
                lines.append(f"{rel} {c}")
        (folder / f"ImageNet_LT_{split}.txt").write_text("\n".join(lines) + "\n")
    return folder


def test_verify_list_files_missing_file_named(tmp_path):
    _fake_imagenet_lt(tmp_path, with_val=False)
    result = invoke("data", "verify", "imagenet_lt", "--root", str(tmp_path))
    assert result.exit_code == 2
    assert f"{tmp_path / 'ImageNet_LT' / 'ImageNet_LT_val.txt'} is missing" in result.output
    assert "sha256" in result.output and "no published hash" in result.output
    assert "12 entries (released file: 115,846)" in result.output
    one_error_line(result)


def test_verify_list_files_missing_image(tmp_path):
    folder = _fake_imagenet_lt(tmp_path)
    (folder / "train" / "n0" / "test_1_2.png").unlink()
    result = invoke("data", "verify", "imagenet_lt", "--root", str(tmp_path))
    assert result.exit_code == 2 and "1 of 27 listed images are missing" in result.output


def test_list_dataset_loads_decodes_and_caches(tmp_path):
    from ltsearch.data import build_dataset
    from ltsearch.spec import DataSpec

    _fake_imagenet_lt(tmp_path)
    spec = DataSpec(dataset="imagenet_lt", root=str(tmp_path), options={"size": 16})
    data = build_dataset(spec)
    assert tuple(data.train.x.shape) == (12, 3, 16, 16) and data.train.x.dtype.__str__() == "torch.uint8"
    assert len(data.val) == 6 and len(data.test) == 9 and data.class_counts[:3] == [6, 4, 2]
    assert len(list((tmp_path / "ltsearch_cache").glob("imagenet_lt_*_16_*.npy"))) == 3
    again = build_dataset(spec)  # from the cache
    assert bool((again.train.x == data.train.x).all())
    with pytest.raises(UserError, match="data.options.colour: unknown option"):
        build_dataset(DataSpec(dataset="imagenet_lt", root=str(tmp_path), options={"colour": 1}))
    (tmp_path / "ImageNet_LT" / "ImageNet_LT_test.txt").unlink()
    with pytest.raises(UserError, match="ImageNet_LT_test.txt not found; put ImageNet_LT_test.txt"):
        build_dataset(spec)


def test_inat_validation_is_split_from_the_val_list(tmp_path):
    from PIL import Image

    from ltsearch.data import build_dataset
    from ltsearch.spec import DataSpec

    folder = tmp_path / "iNaturalist18"
    (folder / "img").mkdir(parents=True)
    for split, per_class in {"train": [5, 3, 2], "val": [3, 3, 3]}.items():
        lines = []
        for c, n in enumerate(per_class):
            for i in range(n):
                rel = f"img/{split}_{c}_{i}.jpg"
                Image.new("RGB", (20, 24), (c * 60, i * 20, 0)).save(folder / rel)
                lines.append(f"{rel} {c}")
        (folder / f"iNaturalist18_{split}.txt").write_text("\n".join(lines) + "\n")
    data = build_dataset(DataSpec(dataset="inat", root=str(tmp_path), options={"size": 8, "cache": False}))
    assert len(data.train) == 10 and len(data.val) == 3 and len(data.test) == 6  # 1 + 2 per class of the val list
    held = build_dataset(DataSpec(dataset="inat", root=str(tmp_path), options={"size": 8, "cache": False,
                                                                              "val_from": "train"}))
    assert len(held.train) == 7 and len(held.val) == 3 and len(held.test) == 9  # the whole val list is test


def test_list_dataset_trains_end_to_end(tmp_path):
    """The one loop trains on a (tiny, fake) ImageNet-LT copy: memory-mapped cache, 3 classes."""
    from ltsearch.spec import ExperimentSpec
    from ltsearch.train.loop import run_trial

    _fake_imagenet_lt(tmp_path)
    exp = ExperimentSpec.model_validate({
        "data": {"dataset": "imagenet_lt", "root": str(tmp_path), "options": {"size": 16},
                 "splits": {"many": 4, "few": 3}},
        "model": {"arch": "small_cnn", "options": {"width": 8}},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "epochs": 2, "batch_size": 4, "warmup": 0, "milestones": []}, "device": "cpu"})
    out = run_trial(exp, stage_cache=False)
    assert out.summary["train_images"] == 12 and out.summary["num_classes"] == 3
    assert 0 <= out.summary["test_acc"] <= 100
