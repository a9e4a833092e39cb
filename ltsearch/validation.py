"""Checks of a spec against the registries (names, method parameters) and plugin loading.

``ltsearch.spec`` is the schema; this module knows what is registered. It imports no plugin module
itself: the registries import theirs lazily (``ltsearch.registry``), so a typo fails before any
trial starts and no import circle forms.

Plugins (a spec's ``plugins:`` list) are Python files or importable module names whose import
registers something (``@METHODS.register("mine")``): a new method, loss or dataset in one file,
outside ltsearch. They are loaded in the driver before validation and in every trial process.
"""

from __future__ import annotations

import hashlib
import importlib
import importlib.util
import sys
from pathlib import Path
from typing import Any, Iterable

from ltsearch.errors import UserError
from ltsearch.models.auto import resolve_arch
from ltsearch.params import validate_kwargs
from ltsearch.registry import DATASETS, METHODS, MODELS


def check_experiment(exp: Any, source: str = "spec") -> None:
    """Registered names and the method's parameters of an ``ExperimentSpec`` (typos fail early)."""
    where = f"{source}: experiment" if source else "experiment"
    DATASETS.get(exp.data.dataset, where=f"{where}.data.dataset")
    arch = resolve_arch(exp.model.arch, exp.data.dataset)  # auto: the dataset's model (ltsearch.models.auto)
    validate_kwargs(MODELS.get(arch, where=f"{where}.model.arch"), exp.model.options, f"{where}.model.options", skip=3)
    method_cls = METHODS.get(exp.method.name, where=f"{where}.method.name")
    method_cls.validate_params(exp.method.params(), where=f"{where}.method")
    many, few = exp.data.splits.many, exp.data.splits.few
    if many is not None and few is not None and few > many:
        raise UserError(f"{where}.data.splits: few ({few}) must not exceed many ({many})")


def _loaded_files() -> set[str]:
    return {str(Path(f).resolve()) for m in list(sys.modules.values()) if (f := getattr(m, "__file__", None))}


def load_plugins(plugins: Iterable[str]) -> None:
    """Import each plugin once per process: a ``.py`` path (absolute, see ``spec.load_spec``) or a
    dotted module name. A file that is already imported (under any module name) is skipped, so
    its registrations never run twice."""
    for i, plugin in enumerate(plugins):
        where = f"plugins[{i}]"
        if plugin.endswith(".py"):
            path = Path(plugin).expanduser().resolve()
            if not path.is_file():
                raise UserError(f"{where}: {plugin} is not a file (give a .py path, relative to the spec, or a module name)")
            if str(path) in _loaded_files():
                continue
            name = f"ltsearch_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
            spec = importlib.util.spec_from_file_location(name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as err:
                del sys.modules[name]
                raise UserError(f"{where}: importing {path} failed: {type(err).__name__}: {err}") from None
        else:
            try:
                importlib.import_module(plugin)
            except ImportError as err:
                raise UserError(f"{where}: cannot import module {plugin!r} ({err}); give a .py path or an "
                                "importable module name") from None
