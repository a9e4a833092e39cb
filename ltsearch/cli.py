"""The ``ltsearch`` command line. Commands are thin: parse, call one function, print.

Bad input (a spec typo, an unknown name, missing data) prints one ``error:`` line and exits 2.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
from pathlib import Path
from typing import Annotated, Any, Iterator, Optional

import typer
from rich.console import Console
from typer.core import TyperGroup

from ltsearch.errors import UserError, user_errors



class _App(TyperGroup):
    """The ``ltsearch`` group: any command's output (``--help`` and ``--version`` too) may go to a
    reader that stops early (``ltsearch status RUN | head``). The broken pipe then ends it quietly
    with exit 0 (the reader has what it asked for) where click and rich would exit 1: both raise
    ``SystemExit(1)`` while handling the ``BrokenPipeError`` (and point stdout elsewhere, so the
    interpreter's last flush cannot fail again). SIGPIPE stays ignored (Python's default): its
    default action would also kill ``ltsearch run`` on a broken socket."""

    def invoke(self, ctx: Any) -> Any:
        result = super().invoke(ctx)
        sys.stdout.flush()  # a pipe closed after the last write fails here, inside click, not at exit
        return result

    def main(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().main(*args, **kwargs)
        except SystemExit as exit_:
            if exit_.code in (0, None) or not isinstance(exit_.__context__, BrokenPipeError):
                raise
            try:
                os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            except (OSError, ValueError):  # stdout without a file descriptor
                pass
            raise SystemExit(0) from None


app = typer.Typer(cls=_App, add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Hyperparameter search and ablations for long-tailed image classification.")
data_app = typer.Typer(no_args_is_help=True, help="Inspect long-tailed datasets.")
cluster_app = typer.Typer(no_args_is_help=True, help="Ray cluster configurations.")
app.add_typer(data_app, name="data")
app.add_typer(cluster_app, name="cluster")
console = Console(soft_wrap=True)  # long lines are not re-wrapped at 80 columns in a log
err_console = Console(stderr=True)


def _version(value: bool) -> None:
    if value:
        import ltsearch

        typer.echo(f"ltsearch {ltsearch.__version__}")
        raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                          help="print ltsearch's version and exit")] = False,
) -> None:
    pass


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return f"{v:.2f}" if isinstance(v, float) else str(v)


def _load(spec_path: Path, overrides: list[str], smoke: bool):
    from ltsearch.spec import load_spec

    spec = load_spec(spec_path, overrides)
    if smoke:
        from ltsearch.smoke import smoke_spec

        spec = smoke_spec(spec, overrides)  # explicit --set values win over the smoke defaults
    return spec


def searched_overrides(spec: Any, overrides: list[str]) -> list[str]:
    """One note per ``--set experiment.<key>`` that ``search.space`` also sets (the search wins)."""
    notes = []
    for text in overrides:
        key = text.split("=", 1)[0].strip()
        if not key.startswith("experiment."):
            continue
        rel = key[len("experiment."):]
        hits = [k for k in spec.search.space if rel == k or rel.startswith(k + ".") or k.startswith(rel + ".")]
        if hits:
            notes.append(f"note: --set {key} is overridden by the search: search.space.{hits[0]} sets it in every trial")
    return notes


def print_best(run_dir: str, top: int = 5, out: Console | None = None, trials: Any = None) -> None:
    """The best configurations (ranked by mean val_acc over seeds; test only reported)."""
    from ltsearch.report.summary import best_table, split_thresholds, status_counts
    from ltsearch.results import load
    from ltsearch.show import rich_table, table_console

    out = table_console(out or console)
    trials = load(run_dir)[0] if trials is None else trials
    table = best_table(trials, top)
    if table.empty:
        out.print("no finished trials")
        return
    if out.is_terminal:  # room for the configurations: zero counts are in the "trials:" line below
        table = table.drop(columns=[c for c in ("failed", "stopped") if not table[c].any()])
    out.print(rich_table(table, "best configurations (ranked by val acc, mean ± std over seeds; test only reported)",
                         fit=out.is_terminal))
    note = split_thresholds(trials)
    if note:
        out.print(f"many / medium / few: {note}", markup=False)
    out.print("trials: " + ", ".join(f"{k} {v}" for k, v in sorted(status_counts(trials).items()) if v))


@app.command()
@user_errors
def run(
    spec: Annotated[Path, typer.Argument(help="search spec YAML")],
    storage: Annotated[str, typer.Option(help="results root: a directory or s3:// / gs:// URI")] = "runs",
    resume: Annotated[bool, typer.Option(help="restore an interrupted sweep from RUN_DIR/_tune (the same spec)")] = False,
    address: Annotated[Optional[str], typer.Option(help="Ray cluster address ('auto' on a head node)")] = None,
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: dotted.key=value (repeat it)")] = None,
    smoke: Annotated[bool, typer.Option(help="toy scale: digits-LT, tiny model, 2 epochs, few trials")] = False,
    fill_missing: Annotated[bool, typer.Option(help="only run grid cells without an ok row (always done)")] = False,
    report: Annotated[bool, typer.Option(help="write RUN_DIR/report.html at the end")] = True,
    from_: Annotated[Optional[Path], typer.Option("--from", help="stage-1 run whose model stage 2 starts from")] = None,
    trial: Annotated[Optional[str], typer.Option(help="with --from: that trial (default: best val_acc)")] = None,
) -> None:
    """Run a hyperparameter search / ablation sweep with Ray Tune. Ctrl-C (SIGINT) or SIGTERM stops
    it cleanly (exit 130 / 143); `--resume` with the same spec continues it."""
    from ltsearch.tune.search import grace_note, plan_sweep, run_dir_for, run_sweep
    from ltsearch.tune.live import LiveTable

    overrides = list(set_ or [])
    if trial is not None and from_ is None:
        raise UserError("--trial needs --from RUN_DIR (the stage-1 run)")
    if from_ is not None:
        from ltsearch.results.select import check_compatible, saved_model

        tid, path = saved_model(str(from_), trial)
        overrides.append(f"experiment.method.stage1_from={path}")
    s = _load(spec, overrides, smoke)
    for note in searched_overrides(s, list(set_ or [])):
        err_console.print(note, markup=False, highlight=False, soft_wrap=True)
    if from_ is not None:
        check_compatible(str(from_), tid, s.experiment)
        console.print(f"stage 1: trial {tid} of {from_}")
    run_dir = run_dir_for(s, storage)
    plan = plan_sweep(s, run_dir)  # the grid is expanded and its trials resolved once, here
    _preflight_data(s, plan.trials)
    if note := grace_note(s):
        console.print(note, markup=False, highlight=False, soft_wrap=True)
    if plan.skipped and not resume:
        console.print(f"{plan.skipped} trial(s) already finished in {run_dir}; running the {len(plan.cells)} missing")
    again = _resume_command(spec, storage, list(set_ or []), smoke, address, from_, trial)
    live = LiveTable(console)
    try:
        with _signals_as_exceptions():
            result = run_sweep(s, storage=storage, resume=resume, address=address, callbacks=[live],
                               warn=lambda w: err_console.print(w, markup=False), plan=plan, spec_path=str(spec),
                               command=again.replace(" --resume", ""))
    except _Stopped as stop:  # a signal before Tune ran (Ray starting) or a second one: nothing to finish
        live.stop()
        console.print(f"interrupted ({stop.name}) before the sweep finished; resume with `{again}`",
                      markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=stop.code) from None
    finally:
        live.stop()
    if result.interrupted:
        console.print(f"interrupted: {result.finished} of {result.planned} {result.units} finished; "
                      f"resume with `{again}`", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(code=130 if result.interrupted == "SIGINT" else 143)
    console.print(f"results: {result.run_dir}/{{trials,epochs,per_class}}/*.parquet")
    if report:
        from ltsearch.report.html import write_report

        out = write_report(result.run_dir)
        console.print(f"report:  {out}")
    print_best(result.run_dir)


class _Stopped(Exception):
    def __init__(self, name: str, code: int):
        super().__init__(name)
        self.name, self.code = name, code


@contextlib.contextmanager
def _signals_as_exceptions() -> Iterator[None]:
    """SIGINT / SIGTERM outside Tune's run (while Ray starts, or a second signal) end ``ltsearch run``
    with exit 130 / 143 and one line, not a traceback; during ``Tuner.fit`` the sweep's own handler
    (``ltsearch.tune.search.Interrupts``) takes over and stops Tune cleanly."""
    import signal

    def stop(signum: int, frame: Any) -> None:
        raise _Stopped(signal.Signals(signum).name, 128 + signum)

    previous = {s: signal.signal(s, stop) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            yield
        except KeyboardInterrupt:  # Interrupts' second SIGINT
            raise _Stopped("SIGINT", 130) from None
        except SystemExit as err:  # Interrupts' second SIGTERM
            if err.code == 128 + signal.SIGTERM:
                raise _Stopped("SIGTERM", err.code) from None
            raise
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _resume_command(spec: Path, storage: str, sets: list[str], smoke: bool, address: str | None,
                    from_: Path | None, trial: str | None) -> str:
    """The command that resumes this sweep: the same spec, storage and flags, with ``--resume``."""
    import shlex

    words = ["ltsearch", "run", str(spec)]
    if storage != "runs":
        words += ["--storage", storage]
    for text in sets:
        words += ["--set", text]
    if smoke:
        words.append("--smoke")
    if address:
        words += ["--address", address]
    if from_ is not None:
        words += ["--from", str(from_)] + (["--trial", trial] if trial else [])
    from ltsearch.secrets import mask

    return mask(shlex.join(words + ["--resume"]))


def _preflight_data(spec: Any, trials: Any = ()) -> None:
    """Fail fast (exit 2, nothing written) when the dataset is not available; then print the notices
    the spec's methods declare for its class counts (``Method.notices``: of the experiment's method
    and of every method a planned grid / random trial (``trials``) on the same data trains)."""
    from ltsearch.data import check_available
    from ltsearch.methods import method_notices

    data = check_available(spec.experiment.data)
    if data is None:  # list datasets (1,000+ classes) are not decoded here
        return
    exps = [spec.experiment] + [t.exp for t in trials if t.exp.data == spec.experiment.data]  # the base data's counts
    for line in method_notices(exps, data.class_counts):
        console.print(f"notice: {line}", markup=False, highlight=False, soft_wrap=True)
    for line in switch_notes(exps) + phase_notes(exps):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


def phase_notes(experiments: list[Any]) -> list[str]:
    """One ``note:`` per method whose recipe leaves a phase (``Plan.phases``: SDNHL's hard-aware
    phase, DRW, a classifier stage) fewer epochs at its learning rate than it needs: a scaled recipe
    (``--smoke``, a shorter run) compressed it. Distinct lines, in first-seen order."""
    from ltsearch.methods import compressed_phases, method_plan

    out: list[str] = []
    for exp in experiments:
        try:
            plan = method_plan(exp)
            line = compressed_phases(exp.method.name + (f" ({plan.loss})" if exp.method.name == "single" else ""), plan)
        except Exception:  # noqa: BLE001 - an invalid section is reported by its trial
            continue
        if line and f"note: {line}" not in out:
            out.append(f"note: {line}")
    return out


def switch_notes(experiments: list[Any]) -> list[str]:
    """One ``note:`` per method switch (``Plan.switches``: the 0-based epoch where DRW, DRS, hard
    weighting... begins) at or past the end of its trial (``Plan.epochs``): it never takes effect,
    so the trial trains as if it were unset. A note, not an error: in a sweep some cells may cross
    the end on purpose, and the trial is valid. Only switches that a ``switch_field`` of the
    method's parameters sets (named in the note) count: a stage boundary at the end (a two-stage
    method's post-hoc stage 2 of 0 epochs, as τ-norm's) is how such a method works. One line per
    distinct key, value and length."""
    from ltsearch.methods import method_plan
    from ltsearch.registry import METHODS
    from ltsearch.spec import epoch_units

    out: list[str] = []
    for exp in experiments:
        try:
            plan = method_plan(exp)
            cls = METHODS.get(exp.method.name)
            params = cls.validate_params(exp.method.params()).model_dump()
        except Exception:  # noqa: BLE001 - an invalid section is reported by its trial
            continue
        switches = [k for k, unit in epoch_units(cls.Params).items() if unit == "switch"]
        for at in (s for s in plan.switches if s >= plan.epochs):
            keys = [k for k in switches if params.get(k) == at or (isinstance(params.get(k), list) and at in params[k])]
            if not keys:
                continue
            line = (f"note: experiment.method.{keys[0]} = {at} never takes effect: training has {plan.epochs} epochs "
                    f"(0 to {plan.epochs - 1}, counted from 0), so the trial trains as if it were unset")
            if line not in out:
                out.append(line)
    return out


@app.command()
@user_errors
def train(
    spec: Annotated[Path, typer.Argument(help="spec YAML; its search space is ignored")],
    storage: Annotated[str, typer.Option(help="results root")] = "runs",
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="override: dotted.key=value (repeat it)")] = None,
    smoke: Annotated[bool, typer.Option(help="toy scale")] = False,
    seed: Annotated[Optional[int], typer.Option(help="seed (default: the first of search.seeds)")] = None,
) -> None:
    """Train one trial without Ray (same loop, same Parquet output, same trial id and result as
    `ltsearch run` gives that trial: one process, the spec's experiment.threads)."""
    from ltsearch.results.run_dir import RunState, check_run_dir, check_writable, read_state
    from ltsearch.results.store import ResultStore
    from ltsearch.resolved import resolve_trial
    from ltsearch.show import epoch_progress
    from ltsearch.spec import dump_spec
    from ltsearch.trial import TrialContext, execute
    from ltsearch.tune.search import run_dir_for

    s = _load(spec, set_ or [], smoke)
    _preflight_data(s)
    # one process: the trial of a one-worker sweep of this spec (a DDP spec's trials are other trials)
    trial = resolve_trial(s.experiment, seed=s.search.seeds[0] if seed is None else seed,
                          cpus=s.resources.cpus_per_worker)
    run_dir = run_dir_for(s, storage)
    check_writable(run_dir)
    check_run_dir(s, run_dir, resume=False, spec_path=str(spec))
    store = ResultStore(run_dir)
    if read_state(store) is None:  # a new run directory: its identity, as a sweep's would be
        state = RunState(run_dir)
        state.start(f"ltsearch train {spec}", 1, trial.plan.epochs)
        store.write_text("spec.yaml", dump_spec(s))
        state.end("finished")
    with epoch_progress(console, trial.plan.epochs) as show:  # a progress bar in a terminal, lines in a log
        out = execute(trial, TrialContext(s.name, run_dir), reporter=show)
    tid = trial.trial_id
    if out is None:
        console.print(f"trial {tid} failed (non-finite loss); recorded in {run_dir}/trials/{tid}.parquet")
        raise typer.Exit(code=1)
    sm = out.summary
    console.print(f"trial {tid}: val {_fmt(sm['val_acc'])}  test {_fmt(sm['test_acc'])}  many {_fmt(sm['test_many'])}  "
                  f"medium {_fmt(sm['test_medium'])}  few {_fmt(sm['test_few'])}")
    console.print(f"many: > {sm['split_many']}, few: < {sm['split_few']} training images", markup=False)
    console.print(f"results: {run_dir}/{{trials,epochs,per_class}}/{tid}.parquet")


@app.command("report")
@user_errors
def report_cmd(
    run_dir: Annotated[Path, typer.Argument(help="a run directory (<storage>/<name>)")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="output HTML (default RUN_DIR/report.html)")] = None,
    cdn: Annotated[bool, typer.Option(help="load plotly.js from its CDN (smaller file, needs internet)")] = False,
    baseline: Annotated[Optional[str], typer.Option(help="configuration for the paired differences (default: CE, else the first)")] = None,
) -> None:
    """Write the HTML report of a run."""
    from ltsearch.report.html import write_report

    if not (run_dir / "trials").is_dir():
        raise UserError(f"{run_dir}: not a run directory (no trials/ inside)")
    console.print(f"report: {write_report(run_dir, out, cdn, baseline=baseline)}")


@app.command()
@user_errors
def status(
    run_dir: Annotated[str, typer.Argument(help="a run directory <storage>/<name>, local or s3:// / gs://")],
    top: Annotated[int, typer.Option(help="best configurations to list (0: none)")] = 3,
) -> None:
    """What a running or finished sweep has done: planned / ok / failed / stopped / running trials,
    best val so far, ETA. Read-only: safe while the sweep runs."""
    from ltsearch.report.status import sweep_status
    from ltsearch.show import status_lines

    if top < 0:
        raise UserError(f"--top {top}: give 0 (none) or a positive number")
    st = sweep_status(run_dir)
    for line in status_lines(st):
        console.print(line, markup=False, highlight=False, soft_wrap=True)
    if top and st.counts.get("ok"):
        print_best(run_dir, top, trials=st.trials)


@app.command()
@user_errors
def compact(
    run_dir: Annotated[str, typer.Argument(help="a finished run directory <storage>/<name>, local or s3:// / gs://")],
) -> None:
    """Merge a finished run's per-trial Parquet files into one file per dataset (atomic, idempotent;
    every reader reads both layouts)."""
    from ltsearch.results.compact import compact as compact_run

    done = compact_run(run_dir)
    for c in done:
        kept = f"; {c.kept} rewritten meanwhile, kept" if c.kept else ""
        console.print(f"{c.dataset}: {c.files} files -> compacted.parquet ({c.rows} rows){kept}", markup=False)
    if not done:
        console.print(f"{run_dir}: already compacted (no per-trial files)", markup=False)


@app.command()
@user_errors
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="one or more run directories (one: its configurations against the baseline)")],
    out: Annotated[Optional[Path], typer.Option("-o", "--out", help="output file (html default: compare.html; others: stdout)")] = None,
    format_: Annotated[str, typer.Option("--format", help="html, markdown, latex (booktabs) or csv")] = "html",
    baseline: Annotated[Optional[str], typer.Option(help="configuration for the paired differences (default: CE, else the first)")] = None,
    top: Annotated[int, typer.Option(help="configurations shown per run (0: all)")] = 5,
) -> None:
    """Compare sweeps side by side (best configurations, paired differences to a baseline, parameter curves)."""
    from ltsearch.report.compare import FORMATS, write_compare

    if format_ not in FORMATS:
        raise UserError(f"--format: {format_!r} is not one of {', '.join(FORMATS)}")
    for d in run_dirs:
        if not (d / "trials").is_dir():
            raise UserError(f"{d}: not a run directory (no trials/ inside)")
    if top < 0:
        raise UserError(f"--top {top}: give 0 (all) or a positive number")
    result = write_compare(run_dirs, out or (Path("compare.html") if format_ == "html" else None), format_,
                           baseline=baseline, top=top or None)
    if format_ == "html" or out is not None:
        console.print(f"compare: {out or result}")
    else:
        sys.stdout.write(str(result))  # plain text, never re-wrapped by the console


@data_app.command("show")
@user_errors
def data_show(
    dataset: Annotated[str, typer.Argument(help="cifar10, cifar100, digits, fashion_mnist, ...")],
    imbalance: Annotated[float, typer.Option(help="imbalance factor N_max / N_min")] = 100.0,
    profile: Annotated[str, typer.Option(help="exp or step")] = "exp",
    many: Annotated[Optional[int], typer.Option(help="many-shot: more images than this (default: the dataset's)")] = None,
    few: Annotated[Optional[int], typer.Option(help="few-shot: fewer images than this (default: the dataset's)")] = None,
) -> None:
    """Per-class counts of the long-tailed training subset and its many/medium/few sizes."""
    from ltsearch.data import longtail_counts, split_classes
    from ltsearch.data.longtail import resolve_splits, split_rule
    from ltsearch.data.datasets import PROTOCOL_SIZES
    from ltsearch.registry import DATASETS

    DATASETS.get(dataset, where="dataset")
    if dataset not in PROTOCOL_SIZES:
        raise UserError(f"dataset: {dataset!r} has no fixed protocol counts; known: {', '.join(PROTOCOL_SIZES)}")
    if profile not in ("exp", "step") or imbalance < 1:
        raise UserError("--profile must be exp or step and --imbalance >= 1")
    num_classes, max_per_class = PROTOCOL_SIZES[dataset]
    counts = longtail_counts(num_classes, max_per_class, imbalance, profile)
    try:
        m, f = resolve_splits(many, few, dataset, counts)
    except ValueError as err:
        raise UserError(f"--many/--few: {err}") from None
    groups = split_classes(counts, m, f)
    console.print(f"{dataset}-LT, imbalance {imbalance:g} ({profile}): {sum(counts):,} training images in {num_classes} classes")
    console.print(f"many (> {m}): {len(groups['many'])} classes   medium: {len(groups['medium'])} classes   "
                  f"few (< {f}): {len(groups['few'])} classes", markup=False)
    if many is None or few is None:
        console.print(f"thresholds: the {dataset} default, {split_rule(dataset)}", markup=False)
    shown = counts if len(counts) <= 20 else counts[:10] + ["…"] + counts[-10:]
    console.print("per-class counts: " + ", ".join(str(c) for c in shown), markup=False)


@cluster_app.command("validate")
@user_errors
def cluster_validate(files: Annotated[list[Path], typer.Argument(help="cluster YAML files")]) -> None:
    """Validate Ray cluster-launcher and KubeRay YAML offline with Ray's own validation."""
    from ltsearch.cluster import validate_files

    results = validate_files([str(f) for f in files])
    bad = {f: errs for f, errs in results.items() if errs}
    for f, errs in results.items():
        if not errs:
            console.print(f"ok: {f}")
    if bad:
        raise UserError("; ".join(e for errs in bad.values() for e in errs))


def _register_commands() -> None:
    """Commands that live beside their implementation (``reproduce``, ``data verify``, ``bench``, ``ablate``),
    registered the same way as those above: their function, under their name."""
    from ltsearch import ablate
    from ltsearch.bench import cli as bench_cli
    from ltsearch.reproduce import cli as reproduce_cli

    app.command("reproduce")(reproduce_cli.reproduce)
    data_app.command("verify")(reproduce_cli.data_verify)
    app.command("bench")(bench_cli.bench)
    app.command("ablate")(ablate.ablate_cmd)


_register_commands()


def main() -> None:  # pragma: no cover
    sys.exit(app())
