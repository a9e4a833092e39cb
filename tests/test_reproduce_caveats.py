"""Large-scale rows of papers.yaml run at the papers' 224 px, say why they are still not directly
comparable, and ``reproduce --compare`` prints the reasons (and flags a run at another size)."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.reproduce import compare_runs, load_table, row_experiment, row_spec, select


def fake_run(run_dir: Path, exps: list[dict], accs: list[float]) -> None:
    (run_dir / "trials").mkdir(parents=True)
    rows = [{"trial_id": f"t{i}", "status": "ok", "config_json": json.dumps(e), "test_acc": a,
             "test_many": a, "test_medium": a, "test_few": a} for i, (e, a) in enumerate(zip(exps, accs))]
    pd.DataFrame(rows).to_parquet(run_dir / "trials" / "part.parquet")


def test_large_scale_rows_run_at_224_and_say_why_they_are_not_comparable():
    rows, recipes = load_table()
    large = [r for r in rows if r.dataset in ("imagenet_lt", "inat")]
    assert len(large) >= 25
    for r in large:
        assert row_spec(r, recipes).experiment.data.options["size"] == 224, r.id
        assert not r.directly_comparable and any("augmentation" in why for why in r.reasons), r.id
    assert all("2 of the 3 val-list images" in " ".join(r.reasons) for r in large if r.dataset == "inat")
    cifar = [r for r in rows if r.dataset.startswith("cifar")]
    assert all(not r.caveats and "size" not in (row_experiment(r, recipes)["data"].get("options") or {}) for r in cifar)
    (head,) = select(rows, ["hrdc.t6.hrdc.head"])  # not comparable through its own note
    assert not head.directly_comparable and "weight" in head.reasons[0]


def test_compare_flags_a_run_at_another_resolution(tmp_path):
    rows, recipes = load_table()
    (row,) = select(rows, ["sdnhl.t3.inlt.r50"])
    at224 = row_experiment(row, recipes)
    at112 = json.loads(json.dumps(at224))
    del at112["data"]["options"]  # ltsearch's default size: 112
    fake_run(tmp_path / "sdnhl_imagenet_lt", [at112], [40.0])
    fake_run(tmp_path / "sdnhl_imagenet_lt_224", [at224], [50.0])
    comps, _ = compare_runs([tmp_path / "sdnhl_imagenet_lt", tmp_path / "sdnhl_imagenet_lt_224"], rows, recipes)
    by_dir = {Path(c.run_dir).name: c for c in comps if c.row.id == row.id}
    assert by_dir["sdnhl_imagenet_lt"].run_caveats == ["trained at 112×112 px; the row (and the paper) at 224×224"]
    assert by_dir["sdnhl_imagenet_lt_224"].run_caveats == []
    assert by_dir["sdnhl_imagenet_lt_224"].reasons == row.caveats  # still the augmentation caveat
    out = CliRunner().invoke(app, ["reproduce", "--compare", str(tmp_path)]).output
    assert "* sdnhl.t3.inlt.r50: not directly comparable: trained at 112×112 px" in out
    assert "* sdnhl.t3.inlt.r50: not directly comparable: augmentation differs" in out
    listed = CliRunner().invoke(app, ["reproduce", "--list", "sdnhl.t3.inlt.r50"]).output
    assert "augmentation differs" in listed
