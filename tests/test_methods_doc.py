"""docs/methods.md matches the code: every parameter of every registered method and loss is listed
with the default the code has, and every row names the source of that default.

The defaults are read from the code (a method's ``Params`` fields, a loss's ``__init__`` signature),
never written here. A parameter may be listed in its own method's / loss's table, or in the table of
a base class (``### base `TwoStageParams```, ``### base `LTLoss```) that declares it with the same
default.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import BaseModel

from ltsearch.losses import LTLoss
from ltsearch.params import settable
from ltsearch.registry import LOSSES, METHODS

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "methods.md"
HEADING = re.compile(r"^#{2,4} (method|loss|base) `([^`]+)`\s*$")
KINDS = ("**paper**", "**official code**", "**prior work**", "**ltsearch's choice**")
CITATION = re.compile(r"§|Eq\.|Table|Fig\.")  # what a **paper** source must point to


def parse(text: str) -> dict[tuple[str, str], dict[str, tuple[str, str]]]:
    """{(kind, name): {parameter: (default cell, source cell)}} of every headed section."""
    sections: dict[tuple[str, str], dict[str, tuple[str, str]]] = {}
    current: dict[str, tuple[str, str]] | None = None
    for line in text.splitlines():
        m = HEADING.match(line)
        if m:
            key = (m.group(1), m.group(2))
            assert key not in sections, f"docs/methods.md: section {key} appears twice"
            current = sections[key] = {}
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is None or not line.startswith("|"):
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if cells[0] == "parameter" or set(cells[0]) <= set("-: "):
            continue  # the header and separator rows
        assert len(cells) == 3, f"docs/methods.md: a row needs parameter | default | source: {line!r}"
        name = cells[0].strip("`")
        assert name not in current, f"docs/methods.md: {name} is listed twice in one table"
        current[name] = (cells[1], cells[2])
    return sections


def doc_value(cell: str) -> Any:
    return yaml.safe_load(cell.strip().strip("`"))


def same(doc: Any, code: Any) -> bool:
    if isinstance(doc, bool) or isinstance(code, bool):
        return type(doc) is type(code) and doc == code
    return doc == code


def method_params(cls: type) -> dict[str, Any]:
    return {k: f.get_default(call_default_factory=True) for k, f in cls.model_fields.items()}


def loss_params(cls: type) -> dict[str, Any]:
    return {p.name: (None if p.default is p.empty else p.default) for p in settable(cls.__init__, skip=2)}


def builtin(registry) -> list[str]:
    """Registered members that ship with ltsearch (not a test's plugin)."""
    return [n for n in registry if registry.get(n).__module__.startswith("ltsearch.")]


def documented() -> list[tuple[str, str, type, dict[str, Any], list[tuple[str, dict[str, Any]]]]]:
    """(kind, name, class, its parameters with defaults, [(base name, base parameters)]) for every
    built-in method and loss."""
    out = []
    for name in builtin(METHODS):
        params_cls = METHODS.get(name).Params
        bases = [(b.__name__, method_params(b)) for b in params_cls.__mro__
                 if isinstance(b, type) and issubclass(b, BaseModel) and b is not BaseModel and b.model_fields]
        out.append(("method", name, params_cls, method_params(params_cls), bases))
    for name in builtin(LOSSES):
        cls = LOSSES.get(name)
        bases = [(b.__name__, loss_params(b)) for b in cls.__mro__[1:]
                 if isinstance(b, type) and issubclass(b, LTLoss)]
        out.append(("loss", name, cls, loss_params(cls), bases))
    return out


SECTIONS = parse(DOC.read_text(encoding="utf-8"))
ENTRIES = documented()


def test_the_registries_are_not_empty():
    assert len(builtin(METHODS)) >= 9 and len(builtin(LOSSES)) >= 16


@pytest.mark.parametrize("kind, name, cls, params, bases", ENTRIES, ids=[f"{e[0]}-{e[1]}" for e in ENTRIES])
def test_every_parameter_is_documented_with_the_code_default(kind, name, cls, params, bases):
    assert (kind, name) in SECTIONS, f"docs/methods.md has no section '### {kind} `{name}`'"
    own = SECTIONS[(kind, name)]
    for param, default in params.items():
        if param in own:
            cell = own[param][0]
        else:
            # a base table covers it only where the base declares it with this same default
            cells = [SECTIONS[("base", b)][param][0] for b, bparams in bases
                     if ("base", b) in SECTIONS and param in SECTIONS[("base", b)]
                     and param in bparams and same(bparams[param], default)]
            assert cells, (f"docs/methods.md: {kind} {name}: parameter {param!r} (default {default!r}) is in "
                           f"neither its table nor a base table with the same default")
            cell = cells[0]
        assert same(doc_value(cell), default), (f"docs/methods.md: {kind} {name}.{param}: the document says "
                                                f"{cell}, the code's default is {default!r}")
    stale = sorted(set(own) - set(params))
    assert not stale, f"docs/methods.md: {kind} {name} lists parameters the code does not have: {stale}"


def test_base_tables_list_only_real_parameters_with_their_defaults():
    bases = {b: p for *_, bs in ENTRIES for b, p in bs}
    for (kind, name), rows in SECTIONS.items():
        if kind != "base":
            continue
        assert name in bases, f"docs/methods.md: base `{name}` is no base of a registered method or loss"
        for param, (cell, _) in rows.items():
            assert param in bases[name], f"docs/methods.md: base {name} has no parameter {param!r}"
            assert same(doc_value(cell), bases[name][param]), f"docs/methods.md: base {name}.{param}: {cell}"


def test_no_section_for_something_unregistered():
    known = {(k, n) for k, n, *_ in ENTRIES}
    extra = sorted(key for key in SECTIONS if key[0] != "base" and key not in known)
    assert not extra, f"docs/methods.md documents what is not registered: {extra}"


def test_every_row_names_its_source():
    rows = [(key, param, source) for key, table in SECTIONS.items() for param, (_, source) in table.items()]
    assert len(rows) > 100
    for (kind, name), param, source in rows:
        where = f"docs/methods.md: {kind} {name}.{param}"
        text = re.sub(r"<!--.*?-->", "", source).strip()
        assert text, f"{where}: empty source"
        tag = next((k for k in KINDS if text.startswith(k)), None)
        assert tag, f"{where}: the source must start with one of {', '.join(KINDS)}"
        assert len(text) > len(tag) + 10, f"{where}: {tag} needs its reference or reason"
        if tag == "**paper**":
            assert CITATION.search(text), f"{where}: a paper source names its section, equation, table or figure"


def test_the_document_is_linked_and_never_points_outside_the_repository():
    text = DOC.read_text(encoding="utf-8")
    assert "../shared" not in text and "shared/papers" not in text
    assert "docs/methods.md" in (ROOT / "README.md").read_text(encoding="utf-8")
    assert "methods.md" in (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
