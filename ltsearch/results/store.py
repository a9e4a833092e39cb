"""Atomic one-file-per-trial Parquet writes under ``RUN_DIR/{trials,epochs,per_class}/``.

A trial's file is named by its trial id (a hash of its resolved config and seed) and is replaced
as a whole (written to a hidden temporary name, then renamed), so re-running or resuming a trial
never duplicates a row. ``RUN_DIR`` is a local path or a URI that pyarrow understands (s3://, gs://).
Readers (pandas, duckdb, pyarrow.dataset) skip the hidden temporary files.
"""

from __future__ import annotations

import io
import json
import math
import uuid
from pathlib import Path
from typing import Any, Iterable

import pandas as pd
import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ltsearch.results.schema import SCHEMA_VERSION, epochs_schema, per_class_schema, trials_schema, upgrade

DATASETS = ("trials", "epochs", "per_class")


def _fs(run_dir: str | Path) -> tuple[pafs.FileSystem, str]:
    text = str(run_dir)
    if "://" in text:
        return pafs.FileSystem.from_uri(text)
    return pafs.LocalFileSystem(), str(Path(text).resolve())


def _clean(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def _table(rows: list[dict[str, Any]], schema: pa.Schema) -> pa.Table:
    cols = {f.name: [_clean(r.get(f.name)) for r in rows] for f in schema}
    for f in schema:
        if pa.types.is_string(f.type):
            cols[f.name] = [None if v is None else (v if isinstance(v, str) else json.dumps(v) if isinstance(v, (list, dict)) else str(v)) for v in cols[f.name]]
    return pa.Table.from_pydict(cols, schema=schema)


class ResultStore:
    def __init__(self, run_dir: str | Path):
        self.run_dir = str(run_dir)
        self.fs, self.root = _fs(run_dir)

    def path(self, dataset: str, trial_id: str | None = None) -> str:
        base = f"{self.root}/{dataset}"
        return base if trial_id is None else f"{base}/{trial_id}.parquet"

    def _write(self, dataset: str, trial_id: str, table: pa.Table) -> None:
        self.fs.create_dir(self.path(dataset), recursive=True)
        tmp = f"{self.path(dataset)}/.tmp-{trial_id}-{uuid.uuid4().hex[:8]}.parquet"
        pq.write_table(table, tmp, filesystem=self.fs)
        self.fs.move(tmp, self.path(dataset, trial_id))

    def write_epochs(self, trial_id: str, epochs: Iterable[dict[str, Any]], schedules: Iterable[str] = ()) -> None:
        """One row per epoch, one column per schedule value: those the method declares (``schedules``)
        and any a row carries."""
        rows, names = [], set(schedules)
        for r in epochs:
            sched = dict(r.get("schedules") or {})
            names.update(sched)
            rows.append({"trial_id": trial_id, **{k: v for k, v in r.items() if k != "schedules"}, **sched})
        self._write("epochs", trial_id, _table(rows, epochs_schema(names)))

    def write_trial(
        self,
        trial_id: str,
        row: dict[str, Any],
        param_types: dict[str, pa.DataType],
        epochs: Iterable[dict[str, Any]] | None = None,
        per_class: Iterable[dict[str, Any]] | None = None,
        schedules: Iterable[str] = (),
    ) -> None:
        """Write epochs and per-class rows first, the trial row last (its file marks the trial done)."""
        if epochs is not None:
            self.write_epochs(trial_id, epochs, schedules)
        if per_class is not None:
            rows = [{"trial_id": trial_id, **r} for r in per_class]
            self._write("per_class", trial_id, _table(rows, per_class_schema()))
        full = {"trial_id": trial_id, "schema_version": SCHEMA_VERSION, **row}
        self._write("trials", trial_id, _table([full], trials_schema(param_types)))

    def _write_torch(self, folder: str, trial_id: str, obj: Any) -> str:
        import torch

        buf = io.BytesIO()
        torch.save(obj, buf)
        self.fs.create_dir(self.path(folder), recursive=True)
        final = f"{self.path(folder)}/{trial_id}.pt"
        tmp = f"{self.path(folder)}/.tmp-{trial_id}-{uuid.uuid4().hex[:8]}.pt"
        with self.fs.open_output_stream(tmp) as f:
            f.write(buf.getvalue())
        self.fs.move(tmp, final)
        return final

    def write_model(self, trial_id: str, state: dict[str, Any]) -> str:
        """``models/<trial_id>.pt``: ``{"method": state_dict}`` of the tested model."""
        return self._write_torch("models", trial_id, {"method": state})

    def write_checkpoint(self, trial_id: str, state: dict[str, Any]) -> str:
        """``checkpoints/<trial_id>.pt``: the loop's resumable state (one per trial, replaced)."""
        return self._write_torch("checkpoints", trial_id, state)

    def read_checkpoint(self, trial_id: str) -> dict[str, Any] | None:
        import torch

        path = f"{self.path('checkpoints')}/{trial_id}.pt"
        if self.fs.get_file_info(path).type != pafs.FileType.File:
            return None
        with self.fs.open_input_file(path) as f:
            return torch.load(io.BytesIO(f.read()), weights_only=True, map_location="cpu")

    def remove_checkpoint(self, trial_id: str) -> None:
        path = f"{self.path('checkpoints')}/{trial_id}.pt"
        if self.fs.get_file_info(path).type == pafs.FileType.File:
            self.fs.delete_file(path)

    def has_trial(self, trial_id: str) -> bool:
        return self.fs.get_file_info(self.path("trials", trial_id)).type == pafs.FileType.File

    def read_trial(self, trial_id: str) -> dict[str, Any]:
        table = pq.read_table(self.path("trials", trial_id), filesystem=self.fs)
        return {k: _clean(v[0]) for k, v in table.to_pydict().items()}

    def trial_status(self) -> dict[str, str]:
        df = self.read("trials")
        return dict(zip(df["trial_id"], df["status"])) if len(df) else {}

    def read(self, dataset: str) -> pd.DataFrame:
        info = self.fs.get_file_info(self.path(dataset))
        schema = {"trials": trials_schema(), "epochs": epochs_schema(), "per_class": per_class_schema()}[dataset]
        if info.type != pafs.FileType.Directory:
            return schema.empty_table().to_pandas()
        files = [f.path for f in self.fs.get_file_info(pafs.FileSelector(self.path(dataset)))
                 if f.path.endswith(".parquet") and not Path(f.path).name.startswith((".", "_"))]
        if not files:
            return schema.empty_table().to_pandas()
        tables = [upgrade(pq.read_table(f, filesystem=self.fs)) for f in sorted(files)]  # old runs' text finished_at
        return pa.concat_tables(tables, promote_options="permissive").to_pandas()

    def write_text(self, name: str, text: str) -> str:
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self.fs.move(tmp, f"{self.root}/{name}")
        return f"{self.root}/{name}"


def load(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(trials, epochs, per_class)`` of a run as pandas DataFrames (empty ones if absent)."""
    store = ResultStore(run_dir)
    return store.read("trials"), store.read("epochs"), store.read("per_class")
