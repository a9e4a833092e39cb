"""``ltsearch reproduce``: the papers' headline and ablation rows as data, run and compared.

``papers.yaml`` (shipped with the package) lists rows: id, paper, table, dataset, imbalance,
backbone, a recipe (optimiser settings, each with its source), the method as a spec fragment, the
reported number (accuracy or error, as printed) and many / medium / few where given. A row is not
directly comparable when it says so (``comparable: false``, the reason in its ``note``) or when its
dataset has a caveat (``dataset_caveats``: ImageNet-LT and iNaturalist, whose augmentation and, for
iNaturalist, test split differ from the papers'); ``--list`` and ``--compare`` print the reasons.

Each row becomes one spec (:func:`row_spec`) named ``reproduce_<id>`` (``..._smoke`` under
``--smoke``) whose ``description`` records the row id, so ``--compare`` can map a run directory back
to its row. Rows run one after the other as separate sweeps in one Ray session (rows differ in
data, model, recipe and method, which one grid cannot express without crossing them). ``--compare``
also matches runs that did not come from ``reproduce`` (e.g. ``runs/bbn_adaptor``): a trial matches
a row when dataset, imbalance, backbone, method and every method parameter (defaults filled in)
agree; the recipe is not compared but a differing one is flagged, and so is a run of a list
dataset trained at another image size than the row's (the rows use 224; ltsearch's default is 112).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import yaml

from ltsearch.errors import UserError

PAPERS_FILE = Path(__file__).with_name("papers.yaml")
DESCRIPTION_PREFIX = "ltsearch reproduce: "


@dataclass
class Row:
    id: str
    paper: str
    table: str
    dataset: str
    imbalance: float
    backbone: str
    recipe: str
    method: dict[str, Any]
    metric: str
    reported: float
    many: float | None = None
    medium: float | None = None
    few: float | None = None
    experiment: dict[str, Any] | None = None
    comparable: bool = True
    note: str = ""
    caveats: list[str] = field(default_factory=list)  # from papers.yaml's dataset_caveats

    @property
    def directly_comparable(self) -> bool:
        return self.comparable and not self.caveats

    @property
    def reasons(self) -> list[str]:
        """Why the paper's number and ltsearch's measurement are not directly comparable."""
        return ([self.note] if not self.comparable and self.note else []) + list(self.caveats)

    @property
    def accuracy(self) -> float:
        """The reported number as a top-1 accuracy (100 − error for rows printed as error)."""
        return round(100.0 - self.reported, 4) if self.metric == "error" else float(self.reported)


def load_table(path: Path = PAPERS_FILE) -> tuple[list[Row], dict[str, Any]]:
    raw = yaml.safe_load(path.read_text())
    caveats = raw.get("dataset_caveats") or {}
    rows = [Row(**{**r, "table": str(r["table"])}, caveats=[caveats[r["dataset"]]] if r["dataset"] in caveats else [])
            for r in raw["rows"]]
    recipes = raw["recipes"]
    for r in rows:
        if r.recipe not in recipes:
            raise ValueError(f"{path}: row {r.id}: unknown recipe {r.recipe!r}")
        if r.metric not in ("accuracy", "error"):
            raise ValueError(f"{path}: row {r.id}: metric must be accuracy or error")
    return rows, recipes


def select(rows: Sequence[Row], patterns: Sequence[str]) -> list[Row]:
    """Rows whose id matches any pattern (exact id or a glob such as ``bbn.t4.*``), in table order."""
    out: list[Row] = []
    for pat in patterns:
        hits = [r for r in rows if fnmatch.fnmatchcase(r.id, pat)]
        if not hits:
            import difflib

            close = difflib.get_close_matches(pat, [r.id for r in rows], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"reproduce: no row {pat!r}{hint}; `ltsearch reproduce --list` shows the ids")
        out.extend(h for h in hits if h not in out)
    return out


def _merge(base: dict[str, Any], over: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def row_experiment(row: Row, recipes: dict[str, Any]) -> dict[str, Any]:
    exp = _merge(recipes[row.recipe]["experiment"], {
        "data": {"dataset": row.dataset, "imbalance": row.imbalance},
        "model": {"arch": row.backbone},
    })
    exp["method"] = copy.deepcopy(row.method)
    return _merge(exp, row.experiment or {})


def _resources(dataset: str) -> dict[str, Any]:
    try:
        import torch

        gpu = torch.cuda.is_available()
    except Exception:  # noqa: BLE001
        gpu = False
    if dataset in ("imagenet_lt", "inat"):
        return {"workers": 1, "cpus_per_worker": 8, "gpus_per_worker": 1 if gpu else 0}
    return {"workers": 1, "cpus_per_worker": 2 if gpu else 1, "gpus_per_worker": 0.25 if gpu else 0}


def row_spec(row: Row, recipes: dict[str, Any], seeds: Sequence[int] = (0, 1, 2), smoke: bool = False):
    """The spec that runs ``row`` over ``seeds`` (``--smoke``: toy scale, see ``ltsearch.smoke``)."""
    from ltsearch.spec import validate_spec_dict

    raw = {
        "name": f"reproduce_{row.id}",
        "description": f"{DESCRIPTION_PREFIX}{row.id} ({row.paper} {row.table})",
        "experiment": row_experiment(row, recipes),
        "search": {"algorithm": "grid", "space": {}, "seeds": list(seeds), "metric": "val_acc", "mode": "max"},
        "resources": _resources(row.dataset),
    }
    spec = validate_spec_dict(raw, source=f"ltsearch/reproduce/papers.yaml: row {row.id}")
    if smoke:
        from ltsearch.smoke import smoke_spec

        spec = smoke_spec(spec)
    return spec


def run_rows(rows: Sequence[Row], recipes: dict[str, Any], seeds: Sequence[int], storage: str, smoke: bool,
             address: str | None = None, callbacks: list | None = None) -> list[str]:
    """Run each row as its own sweep (one Ray session for all); returns the run directories."""
    from ltsearch.data import check_available
    from ltsearch.tune.search import ray_session, run_sweep

    specs = [row_spec(r, recipes, seeds, smoke) for r in rows]
    for spec in specs:  # fail fast, before Ray starts, when a dataset is missing
        check_available(spec.experiment.data)
    out = []
    with ray_session(address):
        for spec in specs:
            result = run_sweep(spec, storage=storage, address=address, callbacks=callbacks)
            if result.interrupted:  # Ctrl-C / SIGTERM: the rows after it are not started
                raise UserError(f"interrupted ({result.interrupted}) in {result.run_dir}: {result.finished} of "
                                f"{result.planned} {result.units} finished; run the same command again to go on")
            out.append(result.run_dir)
    return out


# ----------------------------------------------------------------------------------- compare


def _norm_method(method: dict[str, Any]) -> str:
    """A method fragment with every default filled in, as canonical JSON (for matching)."""
    from ltsearch.losses import resolved_loss_params
    from ltsearch.registry import METHODS

    params = {k: v for k, v in method.items() if k != "name"}
    cls = METHODS.get(method.get("name", "single"))
    full = cls.validate_params(params).model_dump()
    if method.get("name", "single") == "single":  # fill the loss's own defaults
        full = {**resolved_loss_params(full.get("loss", "ce"), {}), **full}
    return json.dumps({"name": method.get("name", "single"), **full}, sort_keys=True, default=str)


def _row_key(exp: dict[str, Any]) -> tuple[Any, ...]:
    return (exp["data"]["dataset"], float(exp["data"]["imbalance"]), exp["model"]["arch"], _norm_method(exp["method"]))


@dataclass
class Comparison:
    row: Row
    run_dir: str
    seeds: int
    measured: float
    std: float
    many: float | None
    medium: float | None
    few: float | None
    recipe_differs: bool = False
    run_caveats: list[str] = field(default_factory=list)  # e.g. trained at another image size

    @property
    def diff(self) -> float:
        return self.measured - self.row.accuracy

    @property
    def reasons(self) -> list[str]:
        return self.row.reasons + self.run_caveats


def _image_size(exp: dict[str, Any]) -> int | None:
    """The image size a trial of a list dataset (ImageNet-LT, iNaturalist) was trained at."""
    from ltsearch.data.listfile import DEFAULT_SIZE, LIST_DATASETS

    data = exp.get("data") or {}
    if data.get("dataset") not in LIST_DATASETS:
        return None
    return int((data.get("options") or {}).get("size", DEFAULT_SIZE))


def run_caveats(row: Row, recipes: dict[str, Any], exps: Sequence[dict[str, Any]]) -> list[str]:
    """What makes these trials differ from the row beyond the row's own caveats: the image size."""
    want = _image_size(row_experiment(row, recipes))
    sizes = sorted({s for s in (_image_size(e) for e in exps) if s is not None and s != want})
    if want is None or not sizes:
        return []
    got = ", ".join(f"{s}×{s}" for s in sizes)
    return [f"trained at {got} px; the row (and the paper) at {want}×{want}"]


def _run_dirs(paths: Sequence[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if (p / "trials").is_dir():
            out.append(p)
        elif p.is_dir() and any((d / "trials").is_dir() for d in p.iterdir() if d.is_dir()):
            out.extend(sorted(d for d in p.iterdir() if (d / "trials").is_dir()))
        else:
            raise UserError(f"--compare {p}: not a run directory (no trials/ inside) nor a storage directory of runs")
    return out


def _mean(values: list[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))]
    return sum(vals) / len(vals) if vals else None


def compare_runs(paths: Sequence[Path], rows: Sequence[Row] | None = None,
                 recipes: dict[str, Any] | None = None) -> tuple[list[Comparison], list[str]]:
    """Paper vs measured for every row found in these run directories (mean over ok trials).
    Returns the comparisons and the run directories that matched no row."""
    from ltsearch.results import load

    if rows is None or recipes is None:
        rows, recipes = load_table()
    by_id = {r.id: r for r in rows}
    keys: dict[tuple[Any, ...], list[Row]] = {}
    for r in rows:
        keys.setdefault(_row_key(row_experiment(r, recipes)), []).append(r)
    out: list[Comparison] = []
    unmatched: list[str] = []
    for run_dir in _run_dirs(paths):
        trials = load(run_dir)[0]  # either layout (per-trial files or compacted)
        ok = trials[trials["status"] == "ok"]
        spec_file = run_dir / "spec.yaml"
        desc = (yaml.safe_load(spec_file.read_text()) or {}).get("description", "") if spec_file.is_file() else ""
        groups: dict[str, tuple[Row, list[int], bool]] = {}
        if desc.startswith(DESCRIPTION_PREFIX) and desc[len(DESCRIPTION_PREFIX):].split(" ")[0] in by_id:
            row = by_id[desc[len(DESCRIPTION_PREFIX):].split(" ")[0]]
            groups[row.id] = (row, list(ok.index), False)
        else:
            for idx, t in ok.iterrows():
                exp = json.loads(t["config_json"])
                try:
                    matches = keys.get(_row_key(exp), [])
                except Exception:  # noqa: BLE001 - a trial of an unknown shape matches nothing
                    matches = []
                differs = {row.id: any(exp["optim"].get(k) != v for k, v in
                                       recipes[row.recipe]["experiment"].get("optim", {}).items()) for row in matches}
                if not all(differs.values()):  # rows whose recipe is the run's own take precedence
                    matches = [row for row in matches if not differs[row.id]]
                for row in matches:
                    entry = groups.setdefault(row.id, (row, [], False))
                    groups[row.id] = (row, entry[1] + [idx], entry[2] or differs[row.id])
        if not groups:
            unmatched.append(str(run_dir))
        for row, idxs, differs in groups.values():
            sel = ok.loc[idxs]
            if sel.empty:
                continue
            accs = sel["test_acc"].astype(float)
            exps = [json.loads(t) for t in sel["config_json"]] if "config_json" in sel else []
            out.append(Comparison(row, str(run_dir), len(sel), float(accs.mean()),
                                  float(accs.std(ddof=1)) if len(sel) > 1 else 0.0,
                                  _mean(sel["test_many"].tolist()), _mean(sel["test_medium"].tolist()),
                                  _mean(sel["test_few"].tolist()), differs, run_caveats(row, recipes, exps)))
    order = {r.id: i for i, r in enumerate(rows)}
    out.sort(key=lambda c: (order[c.row.id], c.run_dir))
    return out, unmatched
