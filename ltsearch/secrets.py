"""Passwords in URLs (``search.optuna_storage``, tracking and storage URIs) never reach disk, logs or
reports.

``mask(text)`` replaces the password of every URL in a text by ``***``
(``postgresql://lt:***@127.0.0.1/db``): ``RUN_DIR/spec.yaml``, the spec handed to trials, the
report and every message go through it. A URL's real form lives only in the driver's memory:
``remember(url)`` keeps it under its masked form, and an object that Ray Tune pickles into its
experiment state (the Optuna searcher) stores the masked form and gets the real one back with
``reveal`` when the same driver (``ltsearch run ... --resume`` with the spec that names the URL)
restores it.
"""

from __future__ import annotations

import re

MASK = "***"
_USERINFO = re.compile(r"(?P<head>[A-Za-z][A-Za-z0-9+.\-]*://[^:/@\s'\"]*):(?P<password>[^@/\s'\"]+)@")
_KNOWN: dict[str, str] = {}


def mask(text: str) -> str:
    """``text`` with the password of every ``scheme://user:password@`` masked."""
    return _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@", text)


def has_password(url: str) -> bool:
    return mask(url) != url


def remember(url: str | None) -> str | None:
    """Keep ``url`` in memory under its masked form; returns the masked form."""
    if url is None:
        return None
    masked = mask(url)
    if masked != url:
        _KNOWN[masked] = url
    return masked


def reveal(masked: str | None) -> str | None:
    """The real URL of a masked one this process remembers, else ``masked`` as it is."""
    if masked is None:
        return None
    return _KNOWN.get(masked, masked)


def is_masked(url: str | None) -> bool:
    return url is not None and f":{MASK}@" in url
