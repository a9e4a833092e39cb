"""``--smoke``: the same spec (method, search space, schedule shapes) at toy scale, offline.

Swaps in digits-LT (the spec's imbalance, capped at 20), a tiny ``small_cnn``, 2 epochs per stage,
CPU, one seed, at most two values per grid dimension and two samples (searched ``data.*`` /
``model.*`` / ``optim.epochs`` keys are dropped, the data, model and length being fixed); every
setting measured in epochs (``optim.warmup``, ``optim.milestones``, and the method parameters its
``Params`` declare with ``epochs_field`` / ``switch_field``, given or default) is rescaled so
schedules keep their shape. ``search.warm_start`` and ``search.optuna_storage`` are dropped.
Results go to ``<name>_smoke``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ltsearch.registry import METHODS
from ltsearch.spec import OptimSpec, Spec, epoch_units, parse_override, set_path, validate_spec_dict

SMOKE_EPOCHS = 2


def _params(name: Any) -> Any:
    """The parameter model of a registered method, or None (unknown names are reported later)."""
    return METHODS.get(name).Params if isinstance(name, str) and name in METHODS else None


def _method_units(*names: str) -> dict[str, str]:
    """``{parameter: unit}`` of the epoch-valued parameters of these methods (unknown names: none)."""
    units: dict[str, str] = {}
    for name in names:
        if (params := _params(name)) is not None:
            units.update(epoch_units(params))
    return units


def _unit(key: str, method_units: dict[str, str]) -> str | None:
    """The unit of a dotted ``experiment`` key (``optim.warmup``, ``method.stage2_epochs``), or None."""
    section, _, field = key.partition(".")
    if section == "optim":  # a searched optim.epochs never gets here: smoke_spec drops it
        return epoch_units(OptimSpec).get(field)
    if section == "method":
        return method_units.get(field)
    return None


def _rescale(value: Any, factor: float, cap: int) -> Any:
    """Scale an epoch count to the smoke run; a switch that happens within training (DRW at 160 of
    200) stays within it (epoch 1 of 2), so the smoke run exercises both phases."""
    if isinstance(value, list):
        return [_rescale(v, factor, cap) for v in value]
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    scaled = int(round(value * factor))
    if value * factor < SMOKE_EPOCHS:
        scaled = min(scaled, SMOKE_EPOCHS - 1)
    return max(0, min(cap, scaled))


def _rescale_unit(value: Any, unit: str, factor: float) -> Any:
    """A switch stays inside the smoke run; a length that had epochs keeps at least one."""
    scaled = _rescale(value, factor, SMOKE_EPOCHS)
    if unit == "epochs" and scaled == 0 and isinstance(value, (int, float)) and value:
        return 1
    return scaled


def _rescale_method(method: dict[str, Any], factor: float, default_name: str = "single") -> None:
    """Rescale a method section's epoch-valued parameters in place, those left at their defaults
    included (GLAG's 40 stage-2 epochs, SDNHL's hard-aware switch at 160 of 200)."""
    name = method.get("name", default_name)
    units, params = _method_units(name), _params(name)
    for key, unit in units.items():
        value = method[key] if key in method else params.model_fields[key].default
        if value is not None:
            method[key] = _rescale_unit(value, unit, factor)


def smoke_spec(spec: Spec, overrides: Sequence[str] = ()) -> Spec:
    """The toy-scale spec; ``overrides`` (``--set key=value``) are applied again on top of it."""
    raw = spec.model_dump(by_alias=True, exclude_none=True)
    exp = raw["experiment"]
    exp["method"] = spec.experiment.method.model_dump(by_alias=True)  # keep an explicit null (a switch off)
    old_epochs = exp["optim"]["epochs"]
    factor = SMOKE_EPOCHS / old_epochs
    exp["data"] = {"dataset": "digits", "imbalance": min(float(exp["data"]["imbalance"]), 20.0),
                   "profile": exp["data"].get("profile", "exp"), "splits": {"many": 50, "few": 15}}
    exp["model"] = {"arch": "small_cnn", "head": exp["model"].get("head", "auto"), "options": {"width": 8}}
    optim = exp["optim"]
    optim.update(epochs=SMOKE_EPOCHS, batch_size=64, warmup=_rescale(optim.get("warmup", 0), factor, SMOKE_EPOCHS),
                 milestones=_rescale(optim.get("milestones", []), factor, SMOKE_EPOCHS))
    _rescale_method(exp["method"], factor)
    search = raw["search"]
    for dist in search["space"].values():  # whole-section choices: {method: {grid: [{name: ...}, ...]}}
        for kind in ("grid", "choice"):
            for value in dist.get(kind) or []:
                if isinstance(value, dict):
                    _rescale_method(value, factor)
    searched_names = [v for key, d in search["space"].items() if key == "method.name"
                      for kind in ("grid", "choice") for v in d.get(kind) or []]
    method_units = _method_units(exp["method"].get("name", "single"), *searched_names)
    exp["device"] = "cpu"
    exp["eval"] = {**exp.get("eval", {}), "test_every": 0}
    # data, model and length are fixed at toy scale: drop searched data.* / model.* / optim.epochs
    # keys (e.g. a data.dataset grid over CIFAR-10 / CIFAR-100) and their values in ``initial`` points
    fixed = [k for k in search["space"] if k.split(".")[0] in ("data", "model") or k == "optim.epochs"]
    for key in fixed:
        del search["space"][key]
    search["initial"] = [{k: v for k, v in point.items() if k not in fixed} for point in search.get("initial", [])]
    for key, dist in search["space"].items():
        unit = _unit(key, method_units)
        for kind in ("grid", "choice"):
            if kind in dist:
                values = dist[kind][:2] if kind == "grid" else dist[kind]
                dist[kind] = [_rescale_unit(v, unit, factor) for v in values] if unit else values
        if unit and "int" in dist:
            lo, hi = _rescale(dist["int"], factor, SMOKE_EPOCHS)
            dist["int"] = [lo, max(hi, lo + 1)]
    search.update(seeds=search["seeds"][:1], num_samples=min(search.get("num_samples", 1), 2), max_failures=0,
                  warm_start=[])  # earlier full-scale runs are not this toy run's history
    search.pop("optuna_storage", None)  # the study goes to <name>_smoke, never a shared database
    if search.get("race"):  # a race of two seeds: the smallest that still decides (search.race)
        search.update(seeds=list(spec.search.seeds[:2]), race={**search["race"], "min_seeds": 2, "max_seeds": 2})
    if search.get("subset_seeds"):
        search["subset_seeds"] = search["subset_seeds"][:2]
    if search.get("grace_period"):
        search["grace_period"] = 1
    raw["resources"] = {"workers": min(raw["resources"]["workers"], 2), "cpus_per_worker": 1, "gpus_per_worker": 0}
    raw["name"] = f"{raw['name']}_smoke"
    for text in overrides:
        set_path(raw, *parse_override(text))
    return validate_spec_dict(raw, source=f"{spec.name} (--smoke)")
