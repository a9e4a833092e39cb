"""One tiny registry per kind of extension point (datasets, models, samplers, ...).

    @LOSSES.register("ldam")
    class LDAMLoss(nn.Module): ...

    LOSSES.get("ldam", where="method.loss")   # unknown -> UserError listing known names

Each registry knows where its members live (``locations``, as mmengine's ``Registry(locations=...)``)
and imports those modules on first use, so importing a registry imports no plugin module: the spec
can check names against registries without an import circle. Members defined elsewhere (a spec's
``plugins:``) register themselves when imported.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any, Callable, Iterator

from ltsearch.errors import UserError


class Registry:
    def __init__(self, kind: str, locations: tuple[str, ...] = ()):
        self.kind = kind
        self.locations = locations
        self._items: dict[str, Callable[..., Any]] = {}
        self._imported = False

    def _import_locations(self) -> None:
        if self._imported:
            return
        self._imported = True  # before importing: a location may use this registry while it loads
        try:
            for module in self.locations:
                importlib.import_module(module)
        except BaseException:
            self._imported = False
            raise

    def register(self, name: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def deco(obj: Callable[..., Any]) -> Callable[..., Any]:
            if name in self._items:
                first = self._items[name]
                raise KeyError(
                    f"{self.kind} {name!r} is already registered by "
                    f"{first.__module__}.{first.__qualname__}"
                )
            self._items[name] = obj
            return obj

        return deco

    def get(self, name: str, where: str | None = None) -> Callable[..., Any]:
        self._import_locations()
        try:
            return self._items[name]
        except KeyError:
            pass
        close = difflib.get_close_matches(str(name), self._items, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        loc = f"{where}: " if where else ""
        raise UserError(
            f"{loc}unknown {self.kind} {name!r}{hint}; known: {', '.join(sorted(self._items))}"
        ) from None

    def __contains__(self, name: object) -> bool:
        self._import_locations()
        return name in self._items

    def __iter__(self) -> Iterator[str]:
        self._import_locations()
        return iter(sorted(self._items))

    def __len__(self) -> int:
        self._import_locations()
        return len(self._items)


DATASETS = Registry("dataset", ("ltsearch.data",))
MODELS = Registry("model", ("ltsearch.models",))
SAMPLERS = Registry("sampler", ("ltsearch.data.samplers", "ltsearch.methods"))  # bwlm's samplers live with it
LOSSES = Registry("loss", ("ltsearch.losses",))
SCHEDULES = Registry("schedule", ("ltsearch.schedules",))
METHODS = Registry("method", ("ltsearch.methods",))
AUGMENTS = Registry("augmentation", ("ltsearch.data.augment",))
