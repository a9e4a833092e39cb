"""Results: explicit Parquet schemas and an atomic per-trial store; ``load(run_dir)``."""

from ltsearch.results.schema import SCHEMA_VERSION
from ltsearch.results.store import ResultStore, load

__all__ = ["SCHEMA_VERSION", "ResultStore", "load"]
