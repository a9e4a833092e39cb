"""``ltsearch compact RUN_DIR``: merge a finished run's per-trial Parquet files into one file per dataset.

A sweep writes ``<dataset>/<trial_id>.parquet`` for every trial (``trials``, ``epochs``,
``per_class``); an object store then serves a 10,000-trial run in 30,000 requests. Compaction
writes, per dataset, ``<dataset>/compacted.parquet`` holding every row of the dataset (those of an
earlier compaction too), then deletes the per-trial files it merged:

1. read the dataset as every reader does (``ResultStore.read_table``: both layouts, a trial's own
   file winning over its compacted rows, older schemas upgraded), sorted by trial id;
2. write it to a hidden temporary name and rename it to ``compacted.parquet`` (atomic: a reader
   sees the old compacted file or the new one, never half of one);
3. delete each merged per-trial file, unless it changed since it was listed (then it stays, and
   wins, being newer).

Killed anywhere, no row is lost: until step 2 completes the per-trial files are all there; after
it, the compacted file holds their rows, and a per-trial file not yet deleted is the same rows
(readers take the trial's own file and skip its compacted rows, so nothing counts twice).
Running it again finds no per-trial file and changes nothing. A trial rerun after compaction (a
failed trial retried by ``--resume``) writes its own file, which wins; the next compaction
merges it. ``models/`` and ``checkpoints/`` (``.pt``) are left as they are.

A run whose driver is alive (``run.json``: running, with a fresh heartbeat) is refused: its trials
still write.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import pyarrow.parquet as pq

from ltsearch.errors import UserError
from ltsearch.results.run_dir import driver_state, read_state
from ltsearch.results.store import COMPACTED, DATASETS, ResultStore


@dataclass
class Compacted:
    dataset: str
    files: int  # per-trial files merged (and deleted)
    rows: int  # rows of the compacted file
    kept: int = 0  # per-trial files that changed while merging (left in place)


def compact(run_dir: str | Path) -> list[Compacted]:
    """Compact every dataset of ``run_dir`` (see the module); one ``Compacted`` per dataset that had
    per-trial files. Refuses (``UserError``) a run with a live driver or no results."""
    store = ResultStore(run_dir)
    if driver_state(read_state(store)) == "running":
        raise UserError(f"{run_dir}: its sweep is still running (run.json: a live driver); compact it once it "
                        "has finished or been interrupted (`ltsearch status` tells)")
    listings = {d: store.files(d) for d in DATASETS}
    if not any(own or compacted for own, compacted in listings.values()):
        raise UserError(f"{run_dir}: no results to compact (no trials/, epochs/ or per_class/ Parquet files)")
    done = []
    for dataset in ("epochs", "per_class", "trials"):  # the trial rows last: they mark a trial done
        own, compacted = listings[dataset]
        if not own:
            continue
        table = store.read_table(dataset)  # both layouts, deduplicated, sorted by trial id
        base = store.path(dataset)
        tmp = f"{base}/.tmp-compacted-{uuid.uuid4().hex[:8]}.parquet"
        # the table's unified schema; row groups of 32k rows sorted by trial id: one trial's read
        # (``read_rows``, a resumed sweep's ``stored_outcome``) skips the others by their statistics
        pq.write_table(table, tmp, filesystem=store.fs, row_group_size=32 * 1024)
        store.fs.move(tmp, f"{base}/{COMPACTED}")
        kept = 0
        for tid, info in own.items():
            now = store.fs.get_file_info(info.path)
            if now.size != info.size or now.mtime_ns != info.mtime_ns:  # rewritten meanwhile: it is newer, keep it
                kept += 1
                continue
            store.fs.delete_file(info.path)
        done.append(Compacted(dataset, len(own) - kept, table.num_rows, kept))
    return done
