"""Console output that reads well in a terminal and in a log file.

In a terminal, rich draws tables to its width and ``ltsearch train`` shows a progress bar. Without
one (a log file, CI, ``ray job submit``), tables go to a console wide enough that no cell is cut
(rich would squeeze them into 80 columns and print ``conf…``) and epochs are plain lines.
"""

from __future__ import annotations

import contextlib
import math
from typing import Any, Callable, Iterator

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table


def table_console(out: Console) -> Console:
    """The terminal's own console, or (no terminal) one so wide that no table cell is cut."""
    if out.is_terminal:
        return out
    return Console(file=out.file, width=100_000, color_system=None, highlight=False, emoji=False)


def rich_table(df: Any, title: str = "", wide: str = "configuration", fit: bool = True) -> Table:
    """A rich Table of a DataFrame. With ``fit`` (a terminal) the ``wide`` column takes the room and
    folds long values (never ``conf…``) while the others wrap within 8 characters (or their longest
    header word); without, every cell keeps its natural width (for ``table_console``'s wide console)."""
    t = Table(title=title or None)
    for col in df.columns:
        if col == wide or not fit:
            t.add_column(str(col), overflow="fold")
        else:
            t.add_column(str(col), max_width=max([8] + [len(w) + 2 for w in str(col).split()]))
    for _, row in df.iterrows():
        t.add_row(*[str(v) for v in row])
    return t


def _num(v: Any, fmt: str = ".2f") -> str:
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


@contextlib.contextmanager
def epoch_progress(out: Console, total: int) -> Iterator[Callable[[Any, Any], None]]:
    """A reporter for ``ltsearch.trial.execute``: a rich progress bar over all ``total`` epochs
    (every stage) in a terminal, one plain line per epoch otherwise."""
    if not out.is_terminal:
        def line(rec: Any, state: Any) -> None:
            out.print(f"epoch {rec.epoch + 1:>3}  loss {rec.train_loss:.4f}  val_acc {_num(rec.val.get('val_acc'))}  "
                      f"lr {rec.lr:.4g}", markup=False, highlight=False, soft_wrap=True)

        yield line
        return
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                   TextColumn("loss {task.fields[loss]}  val_acc {task.fields[val]}  lr {task.fields[lr]}"),
                   TimeElapsedColumn(), TimeRemainingColumn(), console=out, transient=False)
    task = bar.add_task("epochs", total=total, loss="…", val="…", lr="…")

    def advance(rec: Any, state: Any) -> None:  # rec.epoch counts across stages (0-based)
        stage = rec.stage if rec.stage and rec.stage != "main" else ""
        bar.update(task, completed=rec.epoch + 1, description=f"epochs ({stage})" if stage else "epochs",
                   loss=f"{rec.train_loss:.4f}", val=_num(rec.val.get("val_acc")), lr=f"{rec.lr:.4g}")

    with bar:
        yield advance


def duration(seconds: float) -> str:
    """``'45 s'``, ``'12 min 5 s'``, ``'3 h 20 min'``."""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def status_lines(st: Any) -> list[str]:
    """``ltsearch status`` as plain lines (``ltsearch.report.status.SweepStatus``)."""
    c = st.counts
    planned = f"{st.planned} trials planned" if st.planned is not None else "plan unknown (no spec.yaml)"
    driver = {"running": "running", "interrupted": "interrupted (no driver is running it: resume it with "
              "`ltsearch run SPEC --resume`)", "finished": "finished", "failed": "stopped by an error"}
    lines = [f"sweep {st.name}" + (f" ({st.algorithm})" if st.algorithm else "") + f": {planned}"
             + (f"; {driver.get(st.driver, st.driver)}" if st.driver else ""),
             f"trials: {c.get('ok', 0)} ok, {c.get('failed', 0)} failed, {c.get('stopped', 0)} stopped, "
             + (f"{st.interrupted} interrupted" if st.interrupted else f"{st.running} running")
             + (f", {st.not_started} not started" if st.not_started is not None else "")]
    if st.tune:
        head = "Ray Tune" if st.driver in (None, "running") else "Ray Tune's last saved state"
        lines.append(f"{head}: " + ", ".join(f"{n} {k.lower()}" for k, n in sorted(st.tune.items())))
    if st.best:
        b = st.best
        spread = "" if math.isnan(b["val_acc_std"]) else f" ± {b['val_acc_std']:.2f}"
        lines.append(f"best val so far: {b['val_acc_mean']:.2f}{spread} ({b['n_ok']} seed{'s' * (b['n_ok'] != 1)}): "
                     f"{b['config']}")
    else:
        lines.append("best val so far: n/a (no ok trial yet)")
    if st.epoch_seconds is not None:
        eta = ("done" if st.eta_seconds == 0 else "n/a" if st.eta_seconds is None else
               f"about {duration(st.eta_seconds)} ({max(1, st.running)} trial{'s' * (max(1, st.running) != 1)} in parallel)")
        lines.append(f"epoch time: {st.epoch_seconds:.2f} s (median); ETA: {eta}")
    if st.last_update is not None:
        lines.append(f"last written: {duration(max(0.0, st.last_update))} ago")
    return lines
