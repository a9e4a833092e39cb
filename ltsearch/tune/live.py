"""A rich live table of trials, fed by Ray Tune's callback hooks (Ray's own output stays off).

Trials are named by ltsearch's trial id, the one in ``RUN_DIR/trials/<trial_id>.parquet``, which
the trainable reports as ``trial_key`` with every result; Tune's own id follows in brackets
(``trial 1fecf9323624 (tune 365ebf1c) done: ...``). Before a trial's first result only Tune's id is
known. A multi-seed Optuna trial (one Tune trial, ``search.seeds`` trainings) is named by the first
id it reported (its first seed's, unless that seed had finished before a resume) and the number of
seeds (``trial 1fecf9323624 +2 seeds (tune 365ebf1c)``): each seed has its own Parquet row.
"""

from __future__ import annotations

import math
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.table import Table
from ray.tune import Callback


class LiveTable(Callback):
    def __init__(self, console: Console, max_rows: int = 16):
        self.console, self.max_rows = console, max_rows
        self.rows: dict[str, dict[str, Any]] = {}
        self.live: Live | None = None

    def __getstate__(self) -> dict[str, Any]:  # Tune pickles its callbacks with the experiment
        return {"max_rows": self.max_rows}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(Console(), state["max_rows"])

    def _render(self) -> Table:
        t = Table(title="trials", expand=False)
        for col in ("trial", "params", "epoch", "val_acc", "status"):
            t.add_column(col)
        items = list(self.rows.items())
        done = sum(r["status"] != "RUNNING" for _, r in items)
        for tid, r in items[-self.max_rows:]:
            v = r.get("val_acc")
            params = r["params"] if len(r["params"]) <= 70 else r["params"][:69] + "…"  # the terminal's live view only
            t.add_row(self.name(tid), params, str(r.get("epoch", "")),
                      "" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.2f}", r["status"])
        t.caption = f"{done}/{len(items)} finished"
        return t

    def _update(self, trial: Any, status: str, result: dict | None = None) -> None:
        cfg = dict(trial.config.get("params", trial.config))
        text = ", ".join(f"{k.split('.')[-1]}={v:.4g}" if isinstance(v, float) else f"{k.split('.')[-1]}={v}"
                         for k, v in cfg.items())
        row = self.rows.setdefault(trial.trial_id, {"params": text})
        row["status"] = status
        if result:
            if result.get("trial_key"):
                row.setdefault("key", str(result["trial_key"]))
            if result.get("seeds"):
                row["seeds"] = int(result["seeds"])
            row["epoch"] = result.get("epoch", row.get("epoch"))
            row["val_acc"] = result.get("val_acc", row.get("val_acc"))
        if self.live is None and self.console.is_terminal:
            self.live = Live(self._render(), console=self.console, refresh_per_second=4, transient=False)
            self.live.start()
        if self.live is not None:
            self.live.update(self._render())

    def name(self, tune_id: str) -> str:
        """``1fecf9323624 (tune 365ebf1c)``; ``+N seeds`` for a multi-seed trial; Tune's id alone
        until the trial reports its own."""
        r = self.rows.get(tune_id, {})
        if "key" not in r:
            return f"(tune {tune_id})"
        more = r.get("seeds", 1) - 1
        return f"{r['key']}" + (f" +{more} seed{'s' if more > 1 else ''}" if more > 0 else "") + f" (tune {tune_id})"

    def _log(self, trial: Any, what: str) -> None:
        if self.console.is_terminal:
            return
        r = self.rows[trial.trial_id]
        v = r.get("val_acc")
        shown = f"{v:.2f}" if isinstance(v, (int, float)) and not math.isnan(v) else "n/a"
        self.console.print(f"trial {self.name(trial.trial_id)} {what}: {r['params']} val_acc={shown}", markup=False,
                           highlight=False, soft_wrap=True)  # one line, never wrapped at 80 columns

    def on_trial_start(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "RUNNING")

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        self._update(trial, "RUNNING", result)

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "DONE")
        self._log(trial, "done")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._update(trial, "ERROR")
        self._log(trial, "failed")

    def stop(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None
