"""Commands ``ltsearch reproduce`` and ``ltsearch data verify`` (``ltsearch.cli`` registers them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from ltsearch.errors import UserError, user_errors

console = Console()


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return f"{v:.{digits}f}" if isinstance(v, float) else str(v)


def _method_text(method: dict[str, Any]) -> str:
    rest = ", ".join(f"{k}={v}" for k, v in method.items() if k != "name")
    return f"{method.get('name', 'single')}" + (f"({rest})" if rest else "")


def _out(line: str) -> None:
    console.print(line, markup=False, highlight=False, soft_wrap=True)


def print_rows(rows: list[Any]) -> None:
    """One line per row (plain text, never folded): id, paper, table, data, reported, accuracy, groups, method."""
    _out(f"ltsearch/reproduce/papers.yaml: {len(rows)} rows; acc = the reported number as accuracy "
         "(100 − error where the paper prints error); * = not directly comparable (the reason in brackets)")
    w = max(len(r.id) for r in rows)
    _out(f"{'id':<{w}}  {'paper':<6} {'table':<16} {'dataset':<11} {'IF':>4} {'backbone':<9} {'reported':>10} "
         f"{'acc':>6}  {'many/med/few':<16} method")
    for r in rows:
        groups = "/".join(_f(v, 1) for v in (r.many, r.medium, r.few)) if r.many is not None else "-"
        rep = f"{r.reported:g} {'err' if r.metric == 'error' else 'acc'}"
        _out(f"{r.id:<{w}}  {r.paper.split(' ')[0]:<6} {r.table:<16} {r.dataset:<11} {r.imbalance:>4g} {r.backbone:<9} "
             f"{rep:>10} {_f(r.accuracy):>6}{'*' if not r.directly_comparable else ' '} {groups:<16} {_method_text(r.method)}"
             + "".join(f"  [{t}]" for t in ([r.note] if r.note else []) + r.caveats))


def print_comparison(comps: list[Any], unmatched: list[str]) -> None:
    """Paper vs measured, one line per row found (test top-1 %, mean ± std over seeds)."""
    _out("paper vs measured (test top-1 %, mean ± std over ok trials; diff = measured − paper; "
         "many/medium/few as paper/measured)")
    w = max([len(c.row.id) for c in comps] + [3])
    _out(f"{'row':<{w}}    {'paper':>6} {'measured':>15} {'diff':>7} {'n':>2}  {'many':<11} {'medium':<11} {'few':<11} run")
    for c in comps:
        r = c.row
        flags = ("*" if c.reasons else " ") + ("†" if c.recipe_differs else " ")
        groups = [f"{_f(p, 1)}/{_f(m, 1)}" for p, m in ((r.many, c.many), (r.medium, c.medium), (r.few, c.few))]
        _out(f"{r.id:<{w}} {flags}  {_f(r.accuracy):>6} {_f(c.measured) + ' ± ' + _f(c.std):>15} {c.diff:>+7.2f} "
             f"{c.seeds:>2}  {groups[0]:<11} {groups[1]:<11} {groups[2]:<11} {c.run_dir}")
    shown: set[tuple[str, str]] = set()
    for c in comps:  # * rows: why, once per row and reason
        for why in c.reasons:
            if (c.row.id, why) not in shown:
                shown.add((c.row.id, why))
                _out(f"* {c.row.id}: not directly comparable: {why}")
    if any(c.recipe_differs for c in comps):
        _out("† matched by data, model and method, but the run's optimiser differs from the row's recipe")
    for d in unmatched:
        _out(f"no paper row matches the trials of {d}")


@user_errors
def reproduce(
    rows: Annotated[Optional[list[str]], typer.Argument(help="row ids or globs (e.g. 'bbn.t4.*'); see --list")] = None,
    list_: Annotated[bool, typer.Option("--list", help="print the table of paper rows (filtered by ROWS if given)")] = False,
    seeds: Annotated[str, typer.Option(help="comma-separated seeds, e.g. 0,1,2")] = "0,1,2",
    smoke: Annotated[bool, typer.Option(help="toy scale (digits-LT, tiny model, 2 epochs, one seed)")] = False,
    storage: Annotated[str, typer.Option(help="results root; each row runs in <storage>/reproduce_<id>")] = "runs",
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address")] = None,
    compare: Annotated[Optional[list[Path]], typer.Option("--compare", help="RUN_DIR (repeatable) or a storage directory: paper vs measured")] = None,
) -> None:
    """Run the papers' headline and ablation rows (ltsearch/reproduce/papers.yaml) and compare."""
    from ltsearch.reproduce import compare_runs, load_table, run_rows, select

    table, recipes = load_table()
    if compare:
        comps, unmatched = compare_runs(compare, table, recipes)
        if not comps:
            raise UserError(f"--compare: no paper row matches the runs in {', '.join(map(str, compare))}")
        print_comparison(comps, unmatched)
        return
    if list_:
        print_rows(select(table, rows) if rows else table)
        return
    if not rows:
        raise UserError("reproduce: give row ids (or globs), --list or --compare RUN_DIR")
    chosen = select(table, rows)
    from ltsearch.spec import parse_seed_list
    run_dirs = run_rows(chosen, recipes, parse_seed_list(seeds), storage, smoke, address)
    comps, _ = compare_runs([Path(d) for d in run_dirs], table, recipes)
    print_comparison(comps, [])
    _out(f"results: {', '.join(run_dirs)}")


@user_errors
def data_verify(
    dataset: Annotated[str, typer.Argument(help="cifar10, cifar100, imagenet_lt, inat, digits, ...")],
    root: Annotated[Optional[Path], typer.Option(help="data root (default: $LTSEARCH_DATA or ~/.cache/ltsearch)")] = None,
    imbalance: Annotated[float, typer.Option(help="imbalance factor of the subset to check (CIFAR, digits, ...)")] = 100.0,
    images: Annotated[bool, typer.Option(help="check that every listed image exists (list datasets)")] = True,
) -> None:
    """Check a local copy: files, hashes, per-class counts of the long-tailed subset. Exit 2 on problems."""
    from ltsearch.data.verify import verify

    if imbalance < 1:
        raise UserError("--imbalance must be >= 1")
    report = verify(dataset, root, imbalance, images)
    for line in report.lines:
        _out(line)
    if report.problems:
        more = f" (and {len(report.problems) - 1} more above)" if len(report.problems) > 1 else ""
        raise UserError(f"{dataset}: {report.problems[0]}{more}")
    console.print(f"{dataset}: ok")
