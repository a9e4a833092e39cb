"""Parameters of registered callables (losses, schedules, models), validated the way methods'
``Params`` are: by pydantic, from the callable's own signature.

A loss writes its constraints where it declares its parameters::

    def __init__(self, class_counts, alpha: Unit = 0.1, gamma: NonNegative = 1.0, weight=None): ...

and ``validate_kwargs(LossClass.__init__, params, where, skip=2)`` checks a spec's values before
anything is built: an unknown name, a wrong type or a value out of range is one ``UserError`` line
naming ``where.<key>``. The reusable constraint types are below.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from functools import lru_cache
from typing import Annotated, Any, Callable, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ltsearch.errors import UserError, format_validation_error

NonNegative = Annotated[float, Field(ge=0)]
Positive = Annotated[float, Field(gt=0)]
Unit = Annotated[float, Field(ge=0, le=1)]             # a probability or a mixing weight, [0, 1]
HalfOpenUnit = Annotated[float, Field(ge=0, lt=1)]    # [0, 1): β of effective numbers, momenta
PositiveUnit = Annotated[float, Field(gt=0, le=1)]    # (0, 1]

def settable(fn: Callable[..., Any], skip: int = 0) -> list[inspect.Parameter]:
    """``fn``'s keyword parameters a spec may set: after ``skip`` leading ones (``self`` counts),
    without ``*args`` and ``**kwargs``."""
    params = list(inspect.signature(fn).parameters.values())[skip:]
    return [p for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]


@lru_cache(maxsize=None)
def params_model(fn: Callable[..., Any], skip: int = 0) -> type[BaseModel]:
    """A pydantic model of ``fn``'s settable parameters: their annotations (constraints included)
    and defaults."""
    hints = typing.get_type_hints(fn, include_extras=True)
    fields = {p.name: (hints.get(p.name, Any), ... if p.default is p.empty else p.default) for p in settable(fn, skip)}
    return create_model(f"{getattr(fn, '__qualname__', 'fn')}.params".replace(".", "_"),
                        __config__=ConfigDict(extra="forbid", arbitrary_types_allowed=True), **fields)


def validate_kwargs(fn: Callable[..., Any], params: dict[str, Any], where: str, skip: int = 0, *,
                    owner: str = "", also: dict[str, Sequence[str]] | None = None) -> dict[str, Any]:
    """``params`` checked against ``fn``'s signature (names, types, ranges); returns them coerced
    (e.g. an int where a float is declared). Raises a one-line ``UserError`` naming ``where.<key>``.

    ``also``: the other keys of the same YAML section, by whose they are (``{"method single":
    [loss, drw_beta, ...]}`` beside ``owner`` ``"loss focal"``): a section that mixes a method's
    own keys with its loss's sends every key it does not know to the loss, so an unknown key's
    did-you-mean looks at all of them and the error lists both sets."""
    names = [p.name for p in settable(fn, skip)]
    groups = {**(also or {}), owner: names}
    for key in params:
        if key not in names:
            close = difflib.get_close_matches(key, [k for keys in groups.values() for k in keys], n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            allowed = "; ".join(f"{who}'s {', '.join(keys) or 'none'}" if who else ", ".join(keys) or "none"
                                for who, keys in groups.items()) if also else ", ".join(names) or "none"
            raise UserError(f"{where}.{key}: unknown parameter{hint}; allowed: {allowed}")
    model = params_model(fn, skip)
    try:
        validated = model.model_validate(params)
    except ValidationError as err:
        raise UserError(format_validation_error(err, where, model)) from None
    return {k: getattr(validated, k) for k in params}
