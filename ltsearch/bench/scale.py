"""``ltsearch bench --scale``: how the readers grow with the size of a run (docs/performance.md, "Scale").

For each N (default 1,000 and 10,000) a run of N trials is synthesised exactly as a sweep writes
it: one real quickstart trial is trained (the quickstart's experiment, ``template_epochs`` epochs),
and its trial row, epoch rows and per-class rows are written again through
``ResultStore.write_trial`` for each new trial id, with random accuracies, a learning rate and loss
per configuration (``N / 3`` configurations, its ``config_key``) and seeds 0-2; 2 % of the trials
failed, 1 % stopped. Then, in both layouts (the per-trial files, then after ``ltsearch compact``):

- ``load``: ``results.load`` in this process;
- ``report``, ``compare`` (``--format markdown``), ``status``: the CLI commands in a fresh process
  each, as a user runs them (wall seconds, peak resident memory, the HTML's size); ``startup``
  (``ltsearch --version``) is the share every command pays before it reads anything.

``growth`` is time(largest N) / time(smallest N) of each (10× the trials: linear is 10×). The
commands run from this package (``sys.executable -m ltsearch``), so the code measured is the code
installed or on ``PYTHONPATH``. Goals (at 10,000 trials): ``SCALE_GOALS``.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable

from ltsearch.bench.common import timed

SCALE_GOALS = {"report_s": 15.0, "compare_s": 5.0, "status_s": 2.0, "growth": 12.0, "html_mb": 10.0}
QUICKSTART = Path(__file__).resolve().parents[2] / "search_spaces" / "quickstart.yaml"
LOSSES = ("ce", "balanced_softmax", "ldam")
LAYOUTS = ("per-trial", "compacted")
COMMANDS = ("load", "report", "compare", "status")


def template_trial(work: Path, epochs: int = 15) -> dict[str, Any]:
    """Train one quickstart trial (``epochs`` epochs) into ``work/template``; its rows as written."""
    from ltsearch.results import ResultStore
    from ltsearch.spec import load_spec
    from ltsearch.trial import TrialContext, execute, trial_for

    spec = load_spec(QUICKSTART, overrides=[f"experiment.optim.epochs={epochs}",
                                            f"experiment.method.drw_epoch={max(1, epochs - 3)}"])
    trial = trial_for(spec, {"method.loss": "ce", "optim.lr": 0.05})
    run = work / "template"
    execute(trial, TrialContext("quickstart", str(run), param_types()))
    store = ResultStore(run)
    row = store.read_trial(trial.trial_id)
    epochs_t = store.read_rows("epochs", trial.trial_id)
    return {"row": row, "epochs": epochs_t.drop_columns(["trial_id"]).to_pylist(),
            "schedules": [c for c in epochs_t.column_names if c not in _epoch_base()],
            "per_class": store.read_rows("per_class", trial.trial_id).drop_columns(["trial_id"]).to_pylist()}


def _epoch_base() -> set[str]:
    from ltsearch.results.schema import EPOCH_FIELDS

    return set(dict(EPOCH_FIELDS))


def param_types() -> dict[str, Any]:
    """The quickstart's searched columns, typed as a sweep types them (``schema.param_type``)."""
    from ltsearch.results.schema import param_type

    return {"method.loss": param_type(list(LOSSES), "choice"), "optim.lr": param_type([], "loguniform")}


def synthesise(run_dir: Path, n: int, template: dict[str, Any], seed: int = 0, threads: int = 4) -> None:
    """Write ``n`` trials into ``run_dir`` as a sweep does (see the module)."""
    from ltsearch.results import ResultStore

    store, rng = ResultStore(run_dir), random.Random(seed)
    types, base = param_types(), template["row"]
    config = json.loads(base.get("config_json") or "{}")
    n_configs = max(1, n // 3)
    configs = [(LOSSES[c % len(LOSSES)], round(10 ** rng.uniform(-2, -0.7), 6)) for c in range(n_configs)]
    quality = [rng.gauss(0, 3) for _ in configs]

    def one(i: int) -> None:
        c, s = i % n_configs, i // n_configs % 3  # seeds 0-2 of each configuration
        loss, lr = configs[c]
        r = random.Random(seed * 1_000_003 + i)
        u = r.random()
        status = "failed" if u < 0.02 else "stopped" if u < 0.03 else "ok"
        val = 70 + quality[c] + r.gauss(0, 1)
        acc = {k: (val + d + r.gauss(0, 1) if status == "ok" else None) for k, d in (
            ("test_acc", -1), ("test_many", 8), ("test_medium", -3), ("test_few", -15))}
        exp = {**config, "seed": s, "optim": {**config.get("optim", {}), "lr": lr},
               "method": {**config.get("method", {}), "loss": loss}}
        row = {**{k: v for k, v in base.items() if k not in ("trial_id", "schema_version")},
               "status": status, "error": "RuntimeError: synthetic" if status == "failed" else None,
               "seed": s, "loss": loss, "method.loss": loss, "optim.lr": lr,
               "val_acc": val if status != "failed" else None, **acc,
               "val_many": val + 8 if status == "ok" else None, "val_few": val - 15 if status == "ok" else None,
               "config_key": hashlib.sha256(f"{loss}:{lr}".encode()).hexdigest()[:12],
               "config_json": json.dumps(exp, sort_keys=True)}
        epochs = template["epochs"] if status != "stopped" else template["epochs"][: max(1, len(template["epochs"]) // 2)]
        tid = hashlib.sha256(f"scale:{seed}:{i}".encode()).hexdigest()[:12]
        store.write_trial(tid, row, types, epochs=[] if status == "failed" else epochs,
                          per_class=template["per_class"] if status == "ok" else None,
                          schedules=template["schedules"])

    with ThreadPoolExecutor(threads) as pool:  # pyarrow writes without the GIL
        list(pool.map(one, range(n)))
    (run_dir / "spec.yaml").write_text(QUICKSTART.read_text())
    from ltsearch.results.run_dir import RunState

    state = RunState(str(run_dir))  # a finished driver's record, with its plan, as a sweep leaves it
    state.start("ltsearch run search_spaces/quickstart.yaml", planned=n, trial_epochs=len(template["epochs"]))
    state.end("finished")


_LAUNCH = ("import atexit, os, runpy, sys\n"  # the child's own peak RSS (VmHWM; a fork's exec keeps the parent's in rusage)
           "def hwm():\n"
           "    with open('/proc/self/status') as f, open(os.environ['LTSEARCH_HWM_FILE'], 'w') as out:\n"
           "        out.write(next((l.split()[1] for l in f if l.startswith('VmHWM')), ''))\n"
           "atexit.register(hwm)\n"
           "sys.argv = ['ltsearch', *sys.argv[1:]]\n"
           "runpy.run_module('ltsearch', run_name='__main__')\n")


def _command(args: list[str], cwd: Path, limit: float | None = None) -> dict[str, Any]:
    """Run ``ltsearch ARGS`` in a fresh process: wall seconds and its peak resident memory (MB;
    None where ``/proc`` does not tell); past ``limit`` seconds it is killed and its time is None."""
    hwm = cwd / ".hwm"
    env = {**os.environ, "LTSEARCH_HWM_FILE": str(hwm),
           "PYTHONPATH": os.pathsep.join([str(Path(__file__).resolve().parents[2]),
                                          os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    hwm.unlink(missing_ok=True)
    t = time.perf_counter()
    try:
        proc = subprocess.run([sys.executable, "-c", _LAUNCH, *args], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, timeout=limit)
    except subprocess.TimeoutExpired:
        return {"s": None, "rss_mb": None}
    seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise RuntimeError(f"ltsearch {' '.join(args)} exited {proc.returncode}: {proc.stderr.decode()[-500:]}")
    kb = hwm.read_text().strip() if hwm.is_file() else ""
    return {"s": seconds, "rss_mb": int(kb) / 1024 if kb.isdigit() else None}


def measure_layout(run_dir: Path, work: Path, limit: float | None = None) -> dict[str, Any]:
    from ltsearch.results import load

    out: dict[str, Any] = {"load_s": timed(lambda: load(run_dir))}
    html = work / "report.html"
    for name, args in (("report", ["report", str(run_dir), "-o", str(html)]),
                       ("compare", ["compare", str(run_dir), "--format", "markdown"]),
                       ("status", ["status", str(run_dir)])):
        html.unlink(missing_ok=True)
        r = _command(args, work, limit)
        out[f"{name}_s"], out[f"{name}_rss_mb"] = r["s"], r["rss_mb"]
        if name == "report":
            out["html_mb"] = html.stat().st_size / 1e6 if html.is_file() else None
    out["files"] = sum(1 for _ in run_dir.rglob("*.parquet"))
    out["bytes_mb"] = sum(p.stat().st_size for p in run_dir.rglob("*.parquet")) / 1e6
    return out


def measure_scale(sizes: tuple[int, ...] = (1000, 10000), template_epochs: int = 15, work: Path | None = None,
                  log: Callable[[str], None] = lambda s: None, limit: float | None = 600.0,
                  save: Callable[[dict[str, Any]], None] = lambda r: None) -> dict[str, Any]:
    """The figures of the module, for each N in ``sizes`` and both layouts; a command past ``limit``
    seconds is stopped and its time left None (shown as "> limit"). ``save`` gets the figures so far
    after each layout (a long run killed midway keeps them)."""
    from ltsearch.results.compact import compact

    own = work is None
    work = Path(tempfile.mkdtemp(prefix="ltsearch-scale-")) if work is None else work
    try:
        log(f"training the template trial ({template_epochs} epochs) ...")
        template = template_trial(work, template_epochs)
        result: dict[str, Any] = {"sizes": list(sizes), "template_epochs": len(template["epochs"]),
                                  "startup_s": _command(["--version"], work)["s"], "limit_s": limit, "runs": {}}
        for n in sizes:
            run_dir = work / f"scale{n}"
            log(f"N = {n}: synthesising ...")
            entry: dict[str, Any] = {"synthesise_s": timed(lambda: synthesise(run_dir, n, template))}
            log(f"N = {n}: per-trial layout ...")
            result["runs"][str(n)] = entry
            entry["per-trial"] = measure_layout(run_dir, work, limit)
            save(result)
            entry["compact_s"] = timed(lambda: compact(run_dir))
            log(f"N = {n}: compacted layout ...")
            entry["compacted"] = measure_layout(run_dir, work, limit)
            save(result)
            shutil.rmtree(run_dir, ignore_errors=True)
        lo, hi = str(min(sizes)), str(max(sizes))
        result["growth"] = {layout: {c: _ratio(result["runs"][hi][layout][f"{c}_s"], result["runs"][lo][layout][f"{c}_s"])
                                     for c in COMMANDS} for layout in LAYOUTS} if lo != hi else {}
        return result
    finally:
        if own:
            shutil.rmtree(work, ignore_errors=True)


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    hi = str(max(result["sizes"]))
    t = Table(title=f"ltsearch bench --scale — {result.get('machine', '')}; load {result.get('load_average_at_start')}; "
                    f"startup (ltsearch --version) {result['startup_s']:.2f} s; {result['template_epochs']} epochs per trial")
    for col in ("layout", "command", *(f"N = {n}" for n in result["sizes"]), "growth", f"goal at N = {hi}"):
        t.add_column(col)
    goals = {"report": SCALE_GOALS["report_s"], "compare": SCALE_GOALS["compare_s"], "status": SCALE_GOALS["status_s"]}
    for layout in LAYOUTS:
        for c in COMMANDS:
            times = [result["runs"][str(n)][layout][f"{c}_s"] for n in result["sizes"]]
            rss = [result["runs"][str(n)][layout].get(f"{c}_rss_mb") for n in result["sizes"]]
            cells = [(f"> {result.get('limit_s'):g} s" if s is None else f"{s:.2f} s") + (f" ({m:.0f} MB)" if m else "")
                     for s, m in zip(times, rss)]
            g = (result.get("growth") or {}).get(layout, {}).get(c)
            goal = f"≤ {goals[c]:g} s" if c in goals else ""
            t.add_row(layout, c, *cells, "" if g is None else f"{g:.1f}× (≤ {SCALE_GOALS['growth']:g})", goal)
        t.add_row(layout, "report HTML", *("n/a" if result["runs"][str(n)][layout]["html_mb"] is None else
                                           f"{result['runs'][str(n)][layout]['html_mb']:.1f} MB" for n in result["sizes"]),
                  "", f"≤ {SCALE_GOALS['html_mb']:g} MB")
        t.add_row(layout, "Parquet files", *(str(result["runs"][str(n)][layout]["files"]) for n in result["sizes"]), "", "")
    t.add_row("", "synthesise / compact", *(f"{result['runs'][str(n)]['synthesise_s']:.1f} s / "
                                            f"{result['runs'][str(n)]['compact_s']:.1f} s" for n in result["sizes"]), "", "")
    return t


def main(sizes: tuple[int, ...], as_json: bool = False, template_epochs: int = 15,
         limit: float | None = 600.0, partial: str | None = None) -> dict[str, Any]:
    """Measure and print (a table, or one JSON object); ``partial``: a file the figures so far are
    written to after each layout."""
    from rich.console import Console

    from ltsearch.bench.common import jsonable, load_average, machine, stdout_to_stderr

    err = Console(stderr=True)
    start = load_average()
    with stdout_to_stderr():
        result = measure_scale(sizes, template_epochs, log=lambda s: err.print(s, highlight=False), limit=limit,
                               save=lambda r: partial and Path(partial).write_text(json.dumps(jsonable(r))))
    result.update(machine=machine(), load_average_at_start=start, load_average_at_end=load_average())
    if as_json:
        print(json.dumps(jsonable(result)))
    else:
        Console().print(table(result))
    return result
