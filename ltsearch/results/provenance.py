"""Provenance of a result: the versions and the git commit that produced it.

``provenance()`` is cheap and never raises: a package that cannot be imported reports ``''``,
and so does the commit outside a git checkout (or without ``git`` on the PATH). torch and ray
are imported lazily, only here, so reading results never needs them.
"""

from __future__ import annotations

import functools
import importlib
import subprocess
from pathlib import Path

import ltsearch


def _version(module: str) -> str:
    try:
        return str(getattr(importlib.import_module(module), "__version__", ""))
    except Exception:  # noqa: BLE001 - any import failure means "not available"
        return ""


def git_commit(cwd: str | Path | None = None) -> str:
    """``git rev-parse HEAD`` of ``cwd`` (default: the ltsearch source tree), ``''`` if none."""
    where = Path(cwd) if cwd is not None else Path(ltsearch.__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=where, capture_output=True,
                             text=True, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@functools.lru_cache(maxsize=1)
def _provenance() -> tuple[tuple[str, str], ...]:
    return (("ltsearch_version", ltsearch.__version__), ("torch_version", _version("torch")),
            ("ray_version", _version("ray")), ("git_commit", git_commit()))


def provenance() -> dict[str, str]:
    """``{ltsearch_version, torch_version, ray_version, git_commit}``, all strings; computed once
    per process (every trial row carries it, and a reused actor writes many rows)."""
    return dict(_provenance())
