"""Atomic one-file-per-trial Parquet writes under ``RUN_DIR/{trials,epochs,per_class}/``, and the
readers of both layouts of a run.

A trial's file is named by its trial id (a hash of its resolved config and seed) and is replaced
as a whole (written to a hidden temporary name, then renamed), so re-running or resuming a trial
never duplicates a row. ``RUN_DIR`` is a local path or a URI that pyarrow understands (s3://, gs://).
Readers (pandas, duckdb, pyarrow.dataset) skip the hidden temporary files.

Layouts: a running sweep writes ``<dataset>/<trial_id>.parquet`` per trial; ``ltsearch compact``
(``results.compact``) merges them into ``<dataset>/compacted.parquet``. A dataset may hold both
(a trial rerun after compaction, or compaction killed between its write and its deletes): a
trial's own file wins over its rows in the compacted file, so no trial is counted twice. Every
reader here (``read``, ``has_trial``, ``read_trial``, ``read_rows``) reads both, with
``pyarrow.dataset`` (parallel reads; the files' schemas unified, older files' through ``upgrade``).
"""

from __future__ import annotations

import io
import json
import math
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable, Union

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pds
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from ltsearch.results.schema import SCHEMA_VERSION, epochs_schema, per_class_schema, trials_schema, upgrade

DATASETS = ("trials", "epochs", "per_class")
COMPACTED = "compacted.parquet"  # one per dataset (``results.compact``); no trial id is "compacted"
_RETRIES = 3  # a file removed between listing and reading (a compaction): list again
Columns = Union[list[str], Callable[[str], bool], None]  # names, or which names to read; None: all


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

    def schema(self, dataset: str) -> pa.Schema:
        return {"trials": trials_schema(), "epochs": epochs_schema(), "per_class": per_class_schema()}[dataset]

    def files(self, dataset: str) -> tuple[dict[str, pafs.FileInfo], pafs.FileInfo | None]:
        """``({trial_id: its own file}, the compacted file or None)`` of ``dataset`` (one listing;
        hidden temporary files skipped)."""
        try:
            infos = self.fs.get_file_info(pafs.FileSelector(self.path(dataset), allow_not_found=True))
        except (OSError, NotADirectoryError):
            return {}, None
        own, compacted = {}, None
        for f in infos:
            name = Path(f.path).name
            if f.type != pafs.FileType.File or not name.endswith(".parquet") or name.startswith((".", "_")):
                continue
            if name == COMPACTED:
                compacted = f
            else:
                own[name[: -len(".parquet")]] = f
        return dict(sorted(own.items())), compacted

    def _compacted(self, dataset: str) -> str | None:
        path = f"{self.path(dataset)}/{COMPACTED}"
        return path if self.fs.get_file_info(path).type == pafs.FileType.File else None

    def has_trial(self, trial_id: str) -> bool:
        if self.fs.get_file_info(self.path("trials", trial_id)).type == pafs.FileType.File:
            return True
        compacted = self._compacted("trials")  # looked at after the own file: a compaction writes it first
        return compacted is not None and trial_id in _compacted_ids(self.fs, compacted)

    def read_rows(self, dataset: str, trial_id: str, columns: Columns = None) -> pa.Table:
        """The rows of one trial in ``dataset``: its own file, else its rows of the compacted file
        (an empty table if it has none)."""
        own = self.path(dataset, trial_id)
        for _ in range(_RETRIES):
            try:
                if self.fs.get_file_info(own).type == pafs.FileType.File:
                    return _scan(self.fs, [own], columns)
                compacted = self._compacted(dataset)
                if compacted is None:
                    break
                return _scan(self.fs, [compacted], columns, pc.field("trial_id") == trial_id)
            except OSError:  # removed or replaced by a compaction meanwhile: look again
                continue
        return _select(self.schema(dataset).empty_table(), columns)

    def read_trial(self, trial_id: str) -> dict[str, Any]:
        table = self.read_rows("trials", trial_id)
        if not table.num_rows:
            raise FileNotFoundError(f"{self.path('trials', trial_id)}: no row of trial {trial_id}")
        return {k: _clean(v[0]) for k, v in table.to_pydict().items()}

    def trial_status(self) -> dict[str, str]:
        df = self.read("trials", columns=["trial_id", "status"])
        return dict(zip(df["trial_id"], df["status"])) if len(df) else {}

    def read_table(self, dataset: str, columns: Columns = None, skip_unreadable: bool = False) -> pa.Table:
        """Every row of ``dataset`` in both layouts, sorted by trial id (a trial's rows in the order it
        wrote them); ``columns``: only these names (those a run lacks are left out), or those a
        predicate accepts (the trial id always). ``skip_unreadable``: leave out a file that is not
        Parquet (``status`` reads a run that others write) instead of raising."""
        for attempt in range(_RETRIES):
            own, compacted = self.files(dataset)
            try:
                try:
                    return self._read_listed(dataset, own, compacted, columns)
                except pa.ArrowInvalid:
                    if not skip_unreadable:
                        raise
                    own = {t: f for t, f in own.items() if _readable(self.fs, f.path)}
                    compacted = compacted if compacted is None or _readable(self.fs, compacted.path) else None
                    return self._read_listed(dataset, own, compacted, columns)
            except OSError:  # removed by a compaction since the listing: list again
                if attempt == _RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _read_listed(self, dataset: str, own: dict[str, pafs.FileInfo], compacted: pafs.FileInfo | None,
                     columns: Columns) -> pa.Table:
        want: Columns = columns
        if isinstance(columns, list):
            want = list(dict.fromkeys(["trial_id", *columns]))
        elif callable(columns):
            want = lambda c: c == "trial_id" or columns(c)  # noqa: E731
        tables = [_scan(self.fs, [f.path for f in own.values()], want)] if own else []
        if compacted is not None:  # read after the own files: a compaction renames its file before deleting them
            rows = _scan(self.fs, [compacted.path], want)
            if own:  # a trial's own file wins over its compacted rows (rerun, or compaction killed midway)
                rows = rows.filter(pc.invert(pc.is_in(rows.column("trial_id"), pa.array(list(own), pa.string()))))
            tables.append(rows)
        if not tables:
            return _select(self.schema(dataset).empty_table(), columns)
        table = tables[0] if len(tables) == 1 else pa.concat_tables(tables, promote_options="permissive")
        if len(tables) > 1:  # one sorted source stays as it is; two interleave by trial id
            table = table.take(pc.sort_indices(table, [("trial_id", "ascending")]))
        return table if not isinstance(columns, list) else _select(table, columns)

    def read(self, dataset: str, columns: Columns = None, skip_unreadable: bool = False) -> pd.DataFrame:
        return self.read_table(dataset, columns, skip_unreadable).to_pandas()

    def write_text(self, name: str, text: str) -> str:
        self.fs.create_dir(self.root, recursive=True)
        tmp = f"{self.root}/.tmp-{uuid.uuid4().hex[:8]}-{name}"
        with self.fs.open_output_stream(tmp) as f:
            f.write(text.encode())
        self.fs.move(tmp, f"{self.root}/{name}")
        return f"{self.root}/{name}"


def load(run_dir: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """``(trials, epochs, per_class)`` of a run as pandas DataFrames (empty ones if absent), from
    either layout (per-trial files, ``compacted.parquet``, or both)."""
    store = ResultStore(run_dir)
    return store.read("trials"), store.read("epochs"), store.read("per_class")


def _readable(fs: pafs.FileSystem, path: str) -> bool:
    try:
        pq.read_metadata(path, filesystem=fs)
        return True
    except pa.ArrowInvalid:
        return False


def _names(names: list[str], columns: Columns) -> list[str] | None:
    if columns is None:
        return None
    return [c for c in names if columns(c)] if callable(columns) else [c for c in columns if c in names]


def _select(table: pa.Table, columns: Columns) -> pa.Table:
    return table if columns is None else table.select(_names(table.column_names, columns))


def _scan(fs: pafs.FileSystem, paths: list[str], columns: Columns = None,
          where: pc.Expression | None = None) -> pa.Table:
    """One table of Parquet ``paths`` read with ``pyarrow.dataset`` (in parallel), their schemas
    unified: a column some files lack is null in their rows; files of an older schema (text
    ``finished_at``) are read as their own group and passed through ``upgrade``."""
    factory = pds.FileSystemDatasetFactory(fs, paths, pds.ParquetFileFormat())
    try:
        groups = [(paths, factory.inspect(promote_options="permissive"))]
    except (pa.ArrowTypeError, pa.ArrowInvalid, pa.ArrowNotImplementedError):  # old and new types of one column
        by_schema: dict[pa.Schema, list[str]] = {}
        for frag in pds.dataset(paths, format="parquet", filesystem=fs).get_fragments():
            by_schema.setdefault(frag.physical_schema.remove_metadata(), []).append(frag.path)
        groups = [(ps, schema) for schema, ps in by_schema.items()]
    tables = []
    for ps, schema in groups:
        cols = _names(schema.names, columns)
        t = pds.dataset(ps, schema=schema, format="parquet", filesystem=fs).to_table(columns=cols, filter=where)
        tables.append(upgrade(t))
    if len(tables) == 1:
        return tables[0]
    table = pa.concat_tables(tables, promote_options="permissive")  # the groups interleave by trial id
    return table.take(pc.sort_indices(table, [("trial_id", "ascending")])) if "trial_id" in table.column_names else table


_IDS: dict[tuple[str, int | None, int | None], frozenset[str]] = {}


def _compacted_ids(fs: pafs.FileSystem, path: str) -> frozenset[str]:
    """The trial ids of a compacted ``trials`` file, cached by its path, size and mtime."""
    info = fs.get_file_info(path)
    key = (path, info.size, info.mtime_ns)
    if key not in _IDS:
        _IDS.clear()
        table = pq.read_table(path, columns=["trial_id"], filesystem=fs)
        _IDS[key] = frozenset(table.column("trial_id").to_pylist())
    return _IDS[key]
