"""Explicit pyarrow schemas of the three results datasets (version ``SCHEMA_VERSION``).

``trials``: one row per trial (ok / failed / stopped) with its searched parameters as columns
named by dotted path (``method.gamma``), typed from the search space so every file of a run agrees.
``epochs``: one row per trained epoch, with one float column per schedule value the method's plan
declares (``alpha``, ``lambda``, ...). ``per_class``: one row per class of a finished trial.
Accuracies are percentages; an empty many/medium/few group is null (NaN), never 0; ``split_many`` /
``split_few`` are the thresholds the trial grouped its classes by (many: count > split_many);
``finished_at`` is when the trial's row was written, a UTC timestamp (microseconds).

Readers of a run written by an older ltsearch pass each file's table through ``upgrade`` (the one
place old layouts are converted): version ≤ 3 stored ``finished_at`` as text
(``2026-12-02T00:33:13+0000``), which becomes the same timestamp, so old and new files of one run
concatenate.
"""

from __future__ import annotations

from typing import Any, Iterable

import pyarrow as pa
import pyarrow.compute as pc

# 1: fixed schedule columns + schedules_json; 2: one column per schedule value a method declares,
# trials.resumed_from; 3: trials.split_many, split_few; 4: trials.finished_at a UTC timestamp (was text)
SCHEMA_VERSION = 4

_F, _I, _S = pa.float64(), pa.int64(), pa.string()
TIMESTAMP = pa.timestamp("us", tz="UTC")
OLD_FINISHED_AT = "%Y-%m-%dT%H:%M:%S%z"  # versions 1-3: time.strftime of the local time with its offset

TRIAL_FIELDS = [
    ("trial_id", _S), ("sweep", _S), ("status", _S), ("error", _S), ("method", _S), ("loss", _S), ("dataset", _S),
    ("arch", _S), ("imbalance", _F), ("seed", _I), ("subset_seed", _I), ("epochs", _I), ("epochs_done", _I),
    ("val_acc", _F), ("val_many", _F), ("val_medium", _F), ("val_few", _F),
    ("test_acc", _F), ("test_many", _F), ("test_medium", _F), ("test_few", _F), ("split_many", _I), ("split_few", _I),
    ("train_seconds", _F), ("checkpoint_rule", _S), ("tested_epoch", _I), ("subset_hash", _S),
    ("train_images", _I), ("num_classes", _I), ("config_key", _S), ("config_json", _S),
    ("device", _S), ("workers", _I), ("resumed_from", _I), ("ltsearch_version", _S), ("torch_version", _S),
    ("ray_version", _S),
    ("git_commit", _S), ("finished_at", TIMESTAMP), ("schema_version", _I),
]

EPOCH_FIELDS = [
    ("trial_id", _S), ("stage", _S), ("epoch", _I), ("train_loss", _F), ("lr", _F), ("seconds", _F),
    ("val_acc", _F), ("val_many", _F), ("val_medium", _F), ("val_few", _F),
    ("test_acc", _F), ("test_many", _F), ("test_medium", _F), ("test_few", _F),
]

PER_CLASS_FIELDS = [
    ("trial_id", _S), ("class_index", _I), ("train_count", _I), ("split", _S), ("test_acc", _F), ("val_acc", _F),
    ("weight_norm", _F),
]


def upgrade(table: pa.Table) -> pa.Table:
    """One results file's table as this version reads it: a text ``finished_at`` (schema ≤ 3)
    parsed into the UTC timestamp (null where it does not parse); other tables unchanged."""
    i = table.schema.get_field_index("finished_at")
    if i < 0 or not pa.types.is_string(table.schema.field(i).type):
        return table
    parsed = pc.strptime(table.column(i), format=OLD_FINISHED_AT, unit="us", error_is_null=True)
    return table.set_column(i, pa.field("finished_at", TIMESTAMP), parsed.cast(TIMESTAMP))


def _meta() -> dict[bytes, bytes]:
    return {b"ltsearch_schema_version": str(SCHEMA_VERSION).encode()}


def param_type(values: Iterable[Any], kind: str) -> pa.DataType:
    """Arrow type of a searched parameter, from its distribution (so all trials agree)."""
    if kind in ("uniform", "loguniform"):
        return _F
    if kind == "int":
        return _I
    vals = list(values)
    if vals and all(isinstance(v, bool) for v in vals):
        return pa.bool_()
    if vals and all(isinstance(v, int) and not isinstance(v, bool) for v in vals):
        return _I
    if vals and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
        return _F
    return _S


def param_column(key: str) -> str:
    """The trials column of a searched key: its dotted path (``method.gamma``); a searched whole
    section (``method: {grid: [{name: bbn}, {name: single, loss: ldam}]}``) is ``method.choice``."""
    return key if "." in key else f"{key}.choice"


def param_value(value: Any) -> Any:
    """A whole-section choice is stored as ``name=bbn, adaptor=cosine``; other values as they are."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items())
    return value


def trials_schema(param_types: dict[str, pa.DataType] | None = None) -> pa.Schema:
    extra = [(k, t) for k, t in sorted((param_types or {}).items()) if k not in dict(TRIAL_FIELDS)]
    return pa.schema(TRIAL_FIELDS + extra, metadata=_meta())


def epochs_schema(schedules: Iterable[str] = ()) -> pa.Schema:
    """The base epoch columns plus one float column per schedule value (a method's ``plan().schedules``)."""
    base = dict(EPOCH_FIELDS)
    clash = sorted(set(schedules) & set(base))
    if clash:
        raise ValueError(f"schedule values {clash} would shadow base epoch columns")
    return pa.schema(EPOCH_FIELDS + [(name, _F) for name in sorted(set(schedules))], metadata=_meta())


def schedule_columns(columns: Iterable[str]) -> list[str]:
    """The schedule-value columns among an epochs table's ``columns``."""
    base = dict(EPOCH_FIELDS)
    return sorted(c for c in columns if c not in base and c != "schedules_json")  # version 1's catch-all


def per_class_schema() -> pa.Schema:
    return pa.schema(PER_CLASS_FIELDS, metadata=_meta())
