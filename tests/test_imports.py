"""The layers stay layers: ltsearch's import graph (every import statement, module level or inside a
function, read with ``ast``) has no cycle; no module imports one of a higher layer (the layers of
docs/architecture.md, ``LAYERS`` below); Ray is imported only in ``tune/``, ``cluster`` and
``bench``; no method or loss imports Ray; the loop imports no Ray, Optuna or plotly.

Registries import their plugin packages by name (``Registry(locations=...)``), which is not an
import statement and so no edge here: that is what lets the spec check names without a circle.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "ltsearch"
RAY_HOMES = ("ltsearch.tune", "ltsearch.cluster", "ltsearch.bench")

# docs/architecture.md's layers, lowest first; a module belongs to the layer of its longest prefix.
# A module may import its own layer and those below it, never one above.
LAYERS = {
    0: ("ltsearch", "ltsearch.errors", "ltsearch.registry", "ltsearch.params", "ltsearch.secrets"),
    # the schema, and what its names mean: the dataset -> model table of model.arch: auto
    1: ("ltsearch.spec", "ltsearch.validation", "ltsearch.space", "ltsearch.models.auto"),
    2: ("ltsearch.data", "ltsearch.models", "ltsearch.losses", "ltsearch.schedules", "ltsearch.methods",
        "ltsearch.defaults", "ltsearch.resolved"),
    3: ("ltsearch.train", "ltsearch.data.batches"),
    4: ("ltsearch.trial", "ltsearch.results"),
    5: ("ltsearch.tune", "ltsearch.cluster", "ltsearch.bench"),
    6: ("ltsearch.report",),
    7: ("ltsearch.cli", "ltsearch.__main__", "ltsearch.reproduce", "ltsearch.show", "ltsearch.smoke", "ltsearch.ablate"),
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in ROOT.rglob("*.py")}


def _type_checking_lines(tree: ast.AST) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            for child in node.body:
                lines.update(range(child.lineno, (child.end_lineno or child.lineno) + 1))
    return lines


def imports_of(name: str) -> set[str]:
    """Every module (ltsearch's or external, top-level name for external) that ``name`` imports."""
    path = MODULES[name]
    tree = ast.parse(path.read_text())
    skip = _type_checking_lines(tree)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out: set[str] = set()
    for node in ast.walk(tree):
        if getattr(node, "lineno", None) in skip:
            continue
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            for a in node.names:  # ``from pkg import submodule`` imports the submodule
                out.add(f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base)
    return out


GRAPH = {m: {i for i in imports_of(m) if i in MODULES and i != m} for m in MODULES}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle of ``graph`` as ``[a, b, ..., a]`` (depth-first search), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_cycle_finder_finds_cycles():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    # the circle issue 17 removed: spec imported build, which imported every plugin, which import spec
    assert find_cycle({"spec": {"build"}, "build": {"methods"}, "methods": {"spec"}}) is not None


def layer_of(module: str) -> int:
    best, rank = "", None
    for r, prefixes in LAYERS.items():
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > len(best):
                best, rank = p, r
    assert rank is not None, f"{module} is in no layer: add it to LAYERS (and docs/architecture.md)"
    return rank


def test_layer_table_by_hand():
    assert layer_of("ltsearch.train.loop") == 3 and layer_of("ltsearch.data.batches") == 3
    assert layer_of("ltsearch.data.longtail") == 2 and layer_of("ltsearch.models.auto") == 1
    assert layer_of("ltsearch") == 0 and layer_of("ltsearch.report.status") == 6


def test_no_import_climbs_up_a_layer():
    climbs = sorted(f"{m} (layer {layer_of(m)}) imports {d} (layer {layer_of(d)})"
                    for m, deps in GRAPH.items() for d in deps if layer_of(d) > layer_of(m))
    assert climbs == [], "imports that climb up a layer:\n" + "\n".join(climbs)


def test_no_import_cycle():
    cycle = find_cycle(GRAPH)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def _external(m: str) -> set[str]:
    return {i.split(".")[0] for i in imports_of(m)}


def test_ray_lives_only_in_its_homes():
    offenders = sorted(m for m in MODULES if "ray" in _external(m) and not m.startswith(RAY_HOMES))
    assert offenders == [], f"these modules import Ray outside {RAY_HOMES}: {offenders}"


def test_methods_and_losses_never_import_ray():
    for m in MODULES:
        if m.startswith(("ltsearch.methods", "ltsearch.losses", "ltsearch.models", "ltsearch.data")):
            assert "ray" not in _external(m), m


def test_the_loop_needs_no_ray_optuna_or_plotly():
    """Everything ``ltsearch.train.loop`` imports, transitively, is free of Ray, Optuna and plotly
    (the GPU machine runs the loop without them)."""
    seen, todo = set(), ["ltsearch.train.loop"]
    while todo:
        m = todo.pop()
        if m in seen:
            continue
        seen.add(m)
        assert not _external(m) & {"ray", "optuna", "plotly"}, m
        todo.extend(GRAPH[m])
