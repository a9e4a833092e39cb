"""Ablation paths (Fawcett & Hoos 2016, "Analysing differences between algorithm configurations
through ablation", J. Heuristics 22): which of the parameters that separate two configurations
make the difference, and how much each contributes.

A configuration is its resolved experiment without seeds (the tree its ``config_key`` hashes),
seen as leaves (``method.loss``, ``optim.lr``, ...). From the source to the target, each step
flips one parameter on which the current configuration and the target differ, to the target's
value, and takes the flip that gains most: the highest mean validation accuracy over the units
(every seed on every subset; test is never used to choose). Where a flip alone is not a valid
configuration (a parameter that only exists beside another one: focal's ``gamma`` without
``loss: focal``, a method's parameters without its ``name``), it is flipped together with the other
differing parameters under the same parent (``method.*``): Fawcett & Hoos's treatment of
conditional parameters, which move with the parameter that activates them. When no flip is
valid the remaining differences are one last step. The path ends at the target.

The path is computed from rows (pure): ``greedy_path`` needs only ``key_of`` (a candidate's
config key, None when it is not a valid configuration) and ``score`` (its mean validation accuracy,
None while some unit has no row); it returns the steps so far and, where it cannot go on, the
candidates whose rows are missing. ``ltsearch ablate`` runs those and asks again.

Each step's Δ (overall / many / medium / few **test** accuracy, reported only) is the paired
difference to the step before it over the units both have ok (same subset, same seed): its mean and
Student-t 95 % interval (``report.stats.t_interval``), so the waterfall's bars add up from the
source to the target.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import pandas as pd

from ltsearch.report import stats as T

GROUPS = (("test_acc", "overall"), ("test_many", "many"), ("test_medium", "medium"), ("test_few", "few"))
SEED_LEAVES = ("seed", "data.subset_seed")
UNSET = "—"
_ABSENT = object()


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Leaves of a configuration tree by dotted path (an empty dict and a list are values)."""
    out: dict[str, Any] = {}
    for k, v in tree.items():
        path = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict) and v:
            out.update(flatten(v, path))
        else:
            out[path] = v
    return out


def unflatten(leaves: dict[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, v in leaves.items():
        node = tree
        parts = path.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return tree


def configuration_leaves(config_json: str | dict[str, Any]) -> dict[str, Any]:
    """The leaves of a trial row's ``config_json`` without its seeds."""
    tree = json.loads(config_json) if isinstance(config_json, str) else config_json
    return {k: v for k, v in flatten(tree).items() if k not in SEED_LEAVES}


def differences(a: dict[str, Any], b: dict[str, Any]) -> list[str]:
    """The leaves where ``a`` and ``b`` differ (a leaf only one of them has counts), sorted."""
    return sorted(k for k in set(a) | set(b) if a.get(k, _ABSENT) != b.get(k, _ABSENT))


def flip(current: dict[str, Any], target: dict[str, Any], keys: Sequence[str]) -> dict[str, Any]:
    """``current`` with ``keys`` set to the target's values (removed where the target has none)."""
    out = dict(current)
    for k in keys:
        if k in target:
            out[k] = target[k]
        else:
            out.pop(k, None)
    return out


def show(v: Any) -> str:
    if v is _ABSENT:
        return UNSET
    if isinstance(v, float):
        return f"{v:g}"
    return json.dumps(v) if isinstance(v, (list, dict)) or v is None else str(v)


@dataclass
class Candidate:
    params: tuple[str, ...]  # the leaves it flips
    leaves: dict[str, Any]
    key: str


@dataclass
class Step:
    step: int
    params: tuple[str, ...]
    before: tuple[str, ...]
    after: tuple[str, ...]
    key: str
    leaves: dict[str, Any]
    score: float
    candidates: int = 0  # flips evaluated at this step

    @property
    def parameter(self) -> str:
        return " + ".join(self.params)


@dataclass
class PathResult:
    steps: list[Step]
    missing: list[Candidate] = field(default_factory=list)  # to evaluate before the path can go on

    @property
    def done(self) -> bool:
        return not self.missing


def candidates(current: dict[str, Any], target: dict[str, Any], key_of: Callable[[dict[str, Any]], str | None]
               ) -> list[Candidate]:
    """The flips from ``current`` towards ``target`` (see the module docstring), each once."""
    remaining = differences(current, target)
    out: dict[tuple[str, ...], Candidate] = {}
    for k in remaining:
        group: tuple[str, ...] = (k,)
        leaves = flip(current, target, group)
        key = key_of(leaves)
        if key is None and "." in k:  # valid only with the other differing parameters of its section
            parent = k.rsplit(".", 1)[0]
            group = tuple(r for r in remaining if r.startswith(parent + "."))
            leaves = flip(current, target, group)
            key = key_of(leaves) if len(group) > 1 else None
        if key is not None and group not in out:
            out[group] = Candidate(group, leaves, key)
    if not out and remaining:
        key = key_of(dict(target))
        if key is not None:
            out[tuple(remaining)] = Candidate(tuple(remaining), dict(target), key)
    return list(out.values())


def greedy_path(source: dict[str, Any], target: dict[str, Any], key_of: Callable[[dict[str, Any]], str | None],
                score: Callable[[str], float | None]) -> PathResult:
    """The greedy ablation path from ``source`` to ``target`` (leaves without seeds). ``score(key)``:
    the candidate's mean validation accuracy (NaN: a unit failed; None: rows missing). Ties go to
    the first candidate in the order of their leaf names."""
    key = key_of(source)
    if key is None:
        raise ValueError("the source is not a valid configuration")
    s0 = score(key)
    if s0 is None:
        return PathResult([], [Candidate((), dict(source), key)])
    steps = [Step(0, (), (), (), key, dict(source), s0)]
    current = dict(source)
    while differences(current, target):
        cands = candidates(current, target, key_of)
        if not cands:
            raise ValueError("no flip towards the target is a valid configuration, nor is the target itself")
        scores = [score(c.key) for c in cands]
        missing = [c for c, s in zip(cands, scores) if s is None]
        if missing:
            return PathResult(steps, missing)
        finite = [i for i, s in enumerate(scores) if s is not None and not math.isnan(s)]
        pick = max(finite, key=lambda i: (scores[i], -i)) if finite else 0
        c = cands[pick]
        steps.append(Step(len(steps), c.params, tuple(show(current.get(p, _ABSENT)) for p in c.params),
                          tuple(show(target.get(p, _ABSENT)) for p in c.params), c.key, c.leaves,
                          float(scores[pick]), len(cands)))  # type: ignore[arg-type]
        current = c.leaves
    return PathResult(steps)


# --------------------------------------------------------------------------------- the numbers


def unit_rows(rows: pd.DataFrame, key: str, units: Sequence[tuple[int, int]]) -> pd.DataFrame:
    """The ok rows of configuration ``key`` on ``units`` ((subset_seed, seed) pairs), indexed by unit
    (a unit trained twice is averaged)."""
    r = rows[(rows["config_key"] == key) & (rows["status"] == "ok")]
    r = r[[(int(b), int(s)) in set(units) for b, s in zip(r["subset_seed"], r["seed"])]] if len(r) else r
    cols = ["val_acc"] + [m for m, _ in GROUPS]
    return r.groupby(["subset_seed", "seed"])[cols].mean()


def score_of(rows: pd.DataFrame, units: Sequence[tuple[int, int]]) -> Callable[[str], float | None]:
    """``score(key)``: the mean validation accuracy over ``units``; None while a unit has no row; NaN
    when one failed."""
    by_key = {k: g for k, g in rows.groupby("config_key")} if len(rows) else {}

    def score(key: str) -> float | None:
        g = by_key.get(key)
        if g is None:
            return None
        have = {(int(b), int(s)): st for b, s, st in zip(g["subset_seed"], g["seed"], g["status"])}
        if any(u not in have for u in units):
            return None
        if any(have[u] != "ok" for u in units):
            return math.nan
        return float(unit_rows(rows, key, units)["val_acc"].mean())

    return score


def path_table(result: PathResult, rows: pd.DataFrame, units: Sequence[tuple[int, int]],
               labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per step: ``step, parameter, from, to, config``, ``delta_<group>`` with ``_low`` /
    ``_high`` (paired over the units, vs the step before; empty at step 0), then ``val_acc`` (the
    step's mean, what the path chose by), ``candidates`` and the step's mean test accuracy per
    group (``overall, many, medium, few``)."""
    labels = labels or {}
    out, prev = [], None
    for st in result.steps:
        mine = unit_rows(rows, st.key, units)
        if st.key in labels:
            label = labels[st.key]
        elif prev is not None:
            label = f"{out[-1]['config']} + " + ", ".join(f"{p}={a}" for p, a in zip(st.params, st.after))
        else:
            label = st.key
        row: dict[str, Any] = {"step": st.step, "parameter": st.parameter, "from": ", ".join(st.before),
                               "to": ", ".join(st.after), "config": label}
        for metric, g in GROUPS:
            if prev is None:
                mean = lo = hi = math.nan
            else:
                both = sorted(set(mine.index) & set(prev.index))
                diffs = [float(mine.at[u, metric]) - float(prev.at[u, metric]) for u in both
                         if pd.notna(mine.at[u, metric]) and pd.notna(prev.at[u, metric])]
                mean, lo, hi, _ = T.t_interval(diffs)
            row.update({f"delta_{g}": mean, f"delta_{g}_low": lo, f"delta_{g}_high": hi})
        row["val_acc"] = st.score
        row["candidates"] = st.candidates
        for metric, g in GROUPS:
            row[g] = float(mine[metric].mean()) if len(mine) and mine[metric].notna().any() else math.nan
        out.append(row)
        prev = mine
    return pd.DataFrame(out)


def display(table: pd.DataFrame) -> pd.DataFrame:
    """The path as display strings: step, flip, configuration, val acc, Δ per group [95 % CI]."""
    if table.empty:
        return table
    out = pd.DataFrame({"step": table["step"],
                        "flip": [("source" if r["step"] == 0 else f"{r['parameter']}: {r['from']} → {r['to']}")
                                 for _, r in table.iterrows()],
                        "val acc": [f"{v:.2f}" for v in table["val_acc"]]})
    out["test overall"] = [f"{v:.2f}" for v in table["overall"]]
    for _, g in GROUPS:
        out[f"Δ {g}"] = [T.fmt_interval(r[f"delta_{g}"], r[f"delta_{g}_low"], r[f"delta_{g}_high"], signed=True, missing="") for _, r in table.iterrows()]
    return out


def csv(table: pd.DataFrame) -> str:
    import io

    buf = io.StringIO()
    table.to_csv(buf, index=False, float_format="%.4f")
    return buf.getvalue()


def waterfall(table: pd.DataFrame) -> Any:
    """A plotly figure: one panel per group, the source's test accuracy then each step's Δ as a
    waterfall (bars add up to the target's), the step's 95 % interval as an error bar at its level."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    if table.empty:
        return None
    names = ["source"] + [f"{s}. {p}" for s, p in zip(table["step"][1:], table["parameter"][1:])]
    fig = make_subplots(rows=1, cols=len(GROUPS), subplot_titles=[f"{g} (test)" for _, g in GROUPS],
                        horizontal_spacing=0.05)
    for i, (_, g) in enumerate(GROUPS, start=1):
        start = float(table[g].iloc[0])
        deltas = [float(d) if not math.isnan(float(d)) else 0.0 for d in table[f"delta_{g}"][1:]]
        fig.add_trace(go.Waterfall(x=names, y=[start] + deltas, measure=["absolute"] + ["relative"] * len(deltas),
                                   showlegend=False, text=[f"{start:.1f}"] + [f"{d:+.2f}" for d in deltas],
                                   textposition="outside"), row=1, col=i)
        levels = [start + sum(deltas[:k + 1]) for k in range(len(deltas))]
        lo, hi = table[f"delta_{g}_low"][1:], table[f"delta_{g}_high"][1:]
        fig.add_trace(go.Scatter(x=names[1:], y=levels, mode="markers", marker={"size": 1, "color": "#333"},
                                 showlegend=False, hoverinfo="skip",
                                 error_y={"type": "data", "symmetric": False,
                                          "array": [h - d if not math.isnan(h) else 0 for h, d in zip(hi, deltas)],
                                          "arrayminus": [d - l if not math.isnan(l) else 0 for l, d in zip(lo, deltas)]}),
                      row=1, col=i)
    fig.update_layout(height=420, margin={"t": 40, "b": 120})
    return fig


PATH_FILE = "ablation/path.json"  # written by ``ltsearch ablate RUN_DIR``


def read_path(text: str) -> tuple[dict[str, Any], pd.DataFrame]:
    """``(meta, table)`` from the text of ``RUN_DIR/ablation/path.json``."""
    data = json.loads(text)
    return data.get("meta", {}), pd.DataFrame(data.get("steps", []))


def load_path(run_dir: str) -> tuple[dict[str, Any], pd.DataFrame] | None:
    """The run's last ablation path (``ltsearch ablate``), or None."""
    from ltsearch.results.store import ResultStore

    store = ResultStore(run_dir)
    try:
        with store.fs.open_input_stream(f"{store.root}/{PATH_FILE}") as f:
            return read_path(f.read().decode())
    except (OSError, ValueError):
        return None


def path_json(meta: dict[str, Any], table: pd.DataFrame) -> str:
    records = json.loads(table.to_json(orient="records"))
    return json.dumps({"meta": meta, "steps": records}, indent=1) + "\n"


NOTE = ("Greedy ablation path (Fawcett & Hoos 2016): each step flips the parameter towards the target that gains "
        "most mean validation accuracy over the seeds; Δ: paired difference in test accuracy (reported only) to the "
        "step before, mean [95% Student-t CI] over the (subset, seed) units both have.")
