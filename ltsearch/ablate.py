"""``ltsearch ablate RUN_DIR``: the Fawcett–Hoos ablation path between two configurations of a run.

The path is computed from the run's rows (``ltsearch.report.ablation``). A candidate configuration
whose rows are missing (on some seed) is trained as a sweep through Ray Tune into
``RUN_DIR/ablation/``: a run directory of its own (its own ``spec.yaml``: the run's spec as a grid
of the candidates, named ``ablation``; its own ``_tune``), so the run's own Tune state, study and
identity are left as they are. Rows are matched by config key (the resolved configuration without
seeds) and (subset seed, seed), in the run and in ``RUN_DIR/ablation``, so a row is never trained
twice: re-running the command (after an interruption, or with other seeds) trains only what is
missing. The path ends up in ``RUN_DIR/ablation/path.json``, which ``ltsearch report RUN_DIR``
shows as a section.
"""

from __future__ import annotations

import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import pandas as pd
import typer
import yaml
from rich.console import Console

from ltsearch.errors import UserError, user_errors

ABLATION_DIR = "ablation"
PATH_FILE = "path.json"
console = Console(soft_wrap=True)
err_console = Console(stderr=True)


def saved_spec(run_dir: str) -> Any:
    from ltsearch.results.run_dir import read_saved_spec
    from ltsearch.results.store import ResultStore
    from ltsearch.spec import validate_spec_dict

    text = read_saved_spec(ResultStore(run_dir))
    if text is None:
        raise UserError(f"{run_dir}: no spec.yaml (ltsearch ablate needs the spec the run was made with)")
    return validate_spec_dict(yaml.safe_load(text) or {}, source=f"{run_dir}/spec.yaml")


def _rows(run_dir: str, default_subset: int) -> pd.DataFrame:
    """The trials of ``run_dir``, ``subset_seed`` filled where a row predates it."""
    from ltsearch.results import load

    rows = load(run_dir)[0]
    if "subset_seed" not in rows:
        rows["subset_seed"] = default_subset
    rows["subset_seed"] = rows["subset_seed"].fillna(default_subset).astype(int)
    return rows


def all_rows(run_dir: str, default_subset: int) -> pd.DataFrame:
    """The trials of the run and of ``RUN_DIR/ablation`` (what the path is computed from)."""
    parts = [_rows(run_dir, default_subset), _rows(f"{run_dir}/{ABLATION_DIR}", default_subset)]
    return pd.concat([p for p in parts if len(p)], ignore_index=True) if len(parts[1]) else parts[0]


def ablation_spec(spec: Any, seeds: list[int]) -> Any:
    """The run's spec as the grid that ``RUN_DIR/ablation`` holds: the same experiment and space
    (so its trials resolve, and are typed, as the run's), one metric, every trial to the end."""
    from ltsearch.spec import validate_spec_dict

    raw = json.loads(spec.model_dump_json(by_alias=True, exclude_none=True))
    raw["name"] = ABLATION_DIR
    raw["description"] = (f"ablation-path candidates of the run {spec.name}, trained by `ltsearch ablate` (not a sweep "
                          "of its own: its cells are the candidates, not this grid)")
    search = raw["search"]
    search.update(algorithm="grid", seeds=seeds, metric="val_acc", mode="max", scheduler="none", num_samples=1,
                  initial=[], warm_start=[])
    for key in ("race", "optuna_storage"):
        search.pop(key, None)
    return validate_spec_dict(raw, source=f"{spec.name}/{ABLATION_DIR}")


class Resolver:
    """A candidate's config key and its cell: the run's spec with the candidate's sections (or, where
    they say the same, its searched keys) as the searched values; None for an invalid candidate."""

    def __init__(self, spec: Any):
        self.spec = spec
        self._cache: dict[str, tuple[str, dict[str, Any]] | None] = {}

    def _params(self, leaves: dict[str, Any]) -> list[dict[str, Any]]:
        from ltsearch.report.ablation import unflatten
        from ltsearch.spec import get_path

        tree = unflatten(leaves)
        sections = {k: v for k, v in tree.items() if k not in ("seed",)}
        searched = {k: get_path(tree, k) for k in self.spec.search.space if get_path(tree, k) is not None}
        return [searched, sections] if searched else [sections]

    def __call__(self, leaves: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
        from ltsearch.trial import trial_for

        memo = json.dumps(leaves, sort_keys=True, default=str)
        if memo not in self._cache:
            found = None
            keys = []
            for params in self._params(leaves):
                try:
                    keys.append((trial_for(self.spec, params).config_key, params))
                except (UserError, ValueError):
                    keys.append(None)
            full = keys[-1]  # the whole sections: always the candidate itself when it is valid
            if full is not None:
                found = next((k for k in keys if k is not None and k[0] == full[0]), full)
            self._cache[memo] = found
        return self._cache[memo]

    def key(self, leaves: dict[str, Any]) -> str | None:
        found = self(leaves)
        return None if found is None else found[0]


def choose(configs: pd.DataFrame, name: str | None, role: str) -> int:
    from ltsearch.report import stats as T

    ok = configs[configs["n_ok"] > 0]
    if ok.empty:
        raise UserError("the run has no ok trial to ablate")
    if name is not None:
        try:
            return int(T.choose_baseline(configs, name))  # by label, as --baseline names one
        except UserError as err:
            raise UserError(str(err).replace("--baseline", role)) from None
    if role == "--from":
        return int(T.choose_baseline(configs, None))  # the baseline: single-branch CE, else the first
    return int(ok.index[0])  # the best by mean val accuracy


def ablate(run_dir: str, from_: str | None = None, to: str | None = None, seeds: list[int] | None = None,
           address: str | None = None, log: Any = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The ablation path of ``run_dir`` (training what it needs); ``(table, meta)``, also written to
    ``RUN_DIR/ablation/path.json``."""
    from ltsearch.report import ablation as A
    from ltsearch.report import stats as T
    from ltsearch.report import summary as S
    from ltsearch.results.store import ResultStore

    log = log or (lambda text: None)
    run_dir = str(run_dir).rstrip("/")
    spec = saved_spec(run_dir)
    raw = _rows(run_dir, spec.experiment.data.subset_seed)  # the run's own configurations (not the candidates)
    own = S.with_configs(raw.assign(resolved_key=raw["config_key"]))
    configs = T.configurations({"run": raw})
    src, dst = choose(configs, from_, "--from"), choose(configs, to, "--to")
    if src == dst:
        raise UserError(f"--from and --to are one configuration ({configs.loc[src, 'label']}): nothing to ablate")
    one = own.drop_duplicates("config").set_index("config")  # a row of each configuration

    def leaves_of(i: int) -> dict[str, Any]:
        return A.configuration_leaves(one.loc[configs.loc[i, "label"], "config_json"])

    def key_of(i: int) -> str:
        return str(one.loc[configs.loc[i, "label"], "resolved_key"])

    source, target = leaves_of(src), leaves_of(dst)
    subsets = spec.search.subset_seeds or [spec.experiment.data.subset_seed]
    rows = all_rows(run_dir, spec.experiment.data.subset_seed)
    if seeds is None:
        seeds = _shared_seeds(rows, [key_of(src), key_of(dst)], subsets)
        if not seeds:
            raise UserError("the source and the target share no seed with an ok row on every subset; "
                            "name the seeds with --seeds 0,1,2")
    units = [(b, s) for b in subsets for s in seeds]
    resolver = Resolver(spec)
    labels = {str(k): str(label) for label, k in one["resolved_key"].items()}
    trained, last_asked = 0, None
    with contextlib.ExitStack() as ray_up:  # Ray started at the first training, kept for the next steps
        while True:
            result = A.greedy_path(source, target, resolver.key, A.score_of(rows, units))
            if result.done:
                break
            asked = sorted(c.key for c in result.missing)
            if asked == last_asked:  # trained, and still no rows: do not ask Tune again and again
                raise UserError(f"the candidates' trials ended without rows in {run_dir}/{ABLATION_DIR} (see its "
                                "_tune/ logs); fix the cause and run `ltsearch ablate` again")
            last_asked = asked
            if not trained:
                from ltsearch.tune.search import ray_session

                ray_up.enter_context(ray_session(address))
            cells = []
            for cand in result.missing:
                key, params = resolver(cand.leaves)  # type: ignore[misc]
                have = set(zip(*[rows.loc[(rows["config_key"] == key) & rows["status"].isin(["ok", "failed"]), c]
                                 for c in ("subset_seed", "seed")]))
                cells += [{**params, "subset_seed": b, "seed": s} for b, s in units if (b, s) not in have]
            log(f"ablation step {len(result.steps)}: training {len(cells)} trial(s) of {len(result.missing)} "
                f"candidate(s) into {run_dir}/{ABLATION_DIR}")
            _train(spec, run_dir, seeds, cells, address, log)
            trained += len(cells)
            rows = all_rows(run_dir, spec.experiment.data.subset_seed)
    table = A.path_table(result, rows, units, labels)
    meta = {"run": run_dir, "source": str(configs.loc[src, "label"]), "target": str(configs.loc[dst, "label"]),
            "seeds": seeds, "subset_seeds": subsets, "trained": trained,
            "candidates": int(sum(st.candidates for st in result.steps))}
    ResultStore(f"{run_dir}/{ABLATION_DIR}").write_text(PATH_FILE, A.path_json(meta, table))
    return table, meta


def _shared_seeds(rows: pd.DataFrame, keys: list[str], subsets: list[int]) -> list[int]:
    ok = rows[rows["status"] == "ok"]
    per = [{s for s in ok.loc[ok["config_key"] == k, "seed"].astype(int)
            if all(((ok["config_key"] == k) & (ok["seed"] == s) & (ok["subset_seed"] == b)).any() for b in subsets)}
           for k in keys]
    return sorted(set.intersection(*per)) if per else []


def _train(spec: Any, run_dir: str, seeds: list[int], cells: list[dict[str, Any]], address: str | None,
           log: Any) -> None:
    from ltsearch.trial import trial_for
    from ltsearch.tune.search import SweepPlan, run_sweep

    abl = ablation_spec(spec, seeds)
    out = f"{run_dir}/{ABLATION_DIR}"
    trials = [trial_for(abl, c) for c in cells]
    plan = SweepPlan(out, cells=cells, trials=trials, planned=len(cells))
    result = run_sweep(abl, storage=run_dir, address=address, plan=plan, warn=log,
                       command=f"ltsearch ablate {run_dir}")
    if result.interrupted:
        log(f"interrupted ({result.interrupted}); run `ltsearch ablate {run_dir}` again to go on "
            "(the trials that finished are kept, the others continue from their checkpoints)")
        raise typer.Exit(code=130 if result.interrupted == "SIGINT" else 143)


def print_path(table: pd.DataFrame, meta: dict[str, Any], out: Console) -> None:
    from ltsearch.report import ablation as A
    from ltsearch.show import rich_table, table_console

    out = table_console(out)
    out.print(f"ablation path: {meta['source']} → {meta['target']} (seeds {', '.join(map(str, meta['seeds']))}"
              + (f" on subsets {', '.join(map(str, meta['subset_seeds']))}" if len(meta["subset_seeds"]) > 1 else "")
              + f"; {meta['candidates']} candidates, {meta['trained']} trials trained now)", markup=False)
    out.print(rich_table(A.display(table), "each step: the flip that gains most val accuracy; Δ test accuracy vs "
                                           "the step before, mean [95% CI] over paired seeds", wide="flip", fit=out.is_terminal))
    deltas = [d for d in table["delta_overall"][1:] if not math.isnan(d)]
    scale = max([abs(d) for d in deltas] + [1e-9])
    for _, r in table.iloc[1:].iterrows():
        d = r["delta_overall"]
        bar = "" if math.isnan(d) else ("█" * max(1, round(20 * abs(d) / scale)))
        out.print(f"  {int(r['step']):>2} {r['parameter'][:40]:<40} {'+' if d >= 0 else '-'}{bar} "
                  f"{'' if math.isnan(d) else f'{d:+.2f}'}", markup=False, highlight=False)


@user_errors
def ablate_cmd(
    run_dir: Annotated[str, typer.Argument(help="a run directory (<storage>/<name>)")],
    from_: Annotated[Optional[str], typer.Option("--from", help="source configuration (default: the baseline, single-branch CE, else the first)")] = None,
    to: Annotated[Optional[str], typer.Option("--to", help="target configuration (default: the best by mean val accuracy)")] = None,
    seeds: Annotated[Optional[str], typer.Option(help="seeds of every candidate, e.g. 0,1,2 (default: those the source and target share)")] = None,
    format_: Annotated[str, typer.Option("--format", help="text or csv")] = "text",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address for the candidates' trials")] = None,
) -> None:
    """The greedy ablation path (Fawcett & Hoos 2016) from one configuration of a run to another, one
    parameter per step; candidates without rows are trained into RUN_DIR/ablation."""
    from ltsearch.report import ablation as A

    if format_ not in ("text", "csv"):
        raise UserError(f"--format: {format_!r} is not one of text, csv")
    if "://" not in run_dir and not (Path(run_dir) / "trials").is_dir():
        raise UserError(f"{run_dir}: not a run directory (no trials/ inside)")
    from ltsearch.spec import parse_seed_list  # not at import: ltsearch.spec pulls in the registries

    table, meta = ablate(run_dir, from_, to, None if seeds is None else parse_seed_list(seeds), address,
                         log=lambda text: err_console.print(text, markup=False, highlight=False))
    if format_ == "csv":
        sys.stdout.write(A.csv(table))
        return
    print_path(table, meta, console)
    console.print(f"path: {run_dir.rstrip('/')}/{ABLATION_DIR}/{PATH_FILE} (a section of `ltsearch report {run_dir}`)",
                  markup=False)
