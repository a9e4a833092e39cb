"""Every row of papers.yaml trains at ``--smoke`` scale: the smoke spec of each distinct row (rows that
differ only in data, model or recipe share one, since smoke fixes those) runs through the one loop
without Ray (the Ray path of ``reproduce --smoke`` is covered by test_reproduce.py's end-to-end row).
159 rows, 92 distinct smoke experiments, about 15 s on one core."""

from __future__ import annotations

import json
import math

from ltsearch.data import build_dataset
from ltsearch.reproduce import load_table, row_spec
from ltsearch.spec import resolve_experiment
from ltsearch.train.loop import run_trial


def test_every_row_trains_at_smoke_scale(tmp_path):
    rows, recipes = load_table()
    distinct: dict[str, str] = {}
    for r in rows:
        spec = row_spec(r, recipes, seeds=[0], smoke=True)
        exp = resolve_experiment(spec.experiment, {"seed": 0})
        distinct.setdefault(json.dumps(exp.model_dump(), sort_keys=True, default=str), r.id)
    data = None
    for key, rid in distinct.items():
        exp = resolve_experiment(row_spec(next(r for r in rows if r.id == rid), recipes, [0], True).experiment, {"seed": 0})
        data = data if data is not None and exp.data == data[0] else (exp.data, build_dataset(exp.data))
        out = run_trial(exp, data=data[1], stage_cache=tmp_path)
        assert all(math.isfinite(e.train_loss) for e in out.epochs), rid
        assert 0 <= out.summary["test_acc"] <= 100, rid
