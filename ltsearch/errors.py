"""User-facing errors: the CLI prints them as one line and exits with code 2.

``UserError`` is a problem with the user's input (spec, names, data on disk) rather than a bug;
``format_validation_error`` turns a pydantic error into that one line; ``user_errors`` is the
decorator every CLI command wears.
"""

from __future__ import annotations

import difflib
import functools
from typing import Any, Callable, Sequence


class UserError(Exception):
    """A problem with the user's input (spec, names, data on disk) rather than a bug.

    The message must name the offending key or file and say how to fix it.
    """


def _fields_of(root: Any, loc: Sequence[str]) -> Any:
    """The pydantic model class that holds the field at ``loc`` below ``root`` (or None)."""
    from pydantic import BaseModel

    model: Any = root
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            args = getattr(model, "__args__", ())
            model = next((a for a in args if isinstance(a, type) and issubclass(a, BaseModel)), model)
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def format_validation_error(err: Any, prefix: str = "", root: Any = None) -> str:
    """One line for a pydantic ``ValidationError``: ``key.path: problem (allowed: ...)`` for each
    error, joined by '; '. ``root``: the model validated (lists the allowed keys of a typo)."""
    lines = []
    for e in err.errors():
        loc = [str(p) for p in e["loc"]]
        path = ".".join(([prefix] if prefix else []) + loc)
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            holder = _fields_of(root, loc[:-1]) if root is not None else None
            allowed = [f.alias or n for n, f in holder.model_fields.items()] if holder else []
            close = difflib.get_close_matches(loc[-1], allowed, n=1)
            msg = "unknown key" + (f" (did you mean {close[0]!r}?)" if close else "")
            if allowed:
                msg += f"; allowed: {', '.join(allowed)}"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif "input" in e and e["type"] not in ("value_error",):
            msg = f"{msg} (got {e['input']!r})"
        lines.append(f"{path or '<spec>'}: {msg}")
    return "; ".join(lines)


def user_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """CLI commands: a ``UserError`` becomes one ``error:`` line on stderr and exit code 2."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UserError as err:
            import typer
            from rich.console import Console

            Console(stderr=True).print(f"[bold red]error:[/] {err}", markup=True, highlight=False, soft_wrap=True)
            raise typer.Exit(code=2) from None

    return wrapper
