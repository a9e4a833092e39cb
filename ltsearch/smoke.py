"""``--smoke``: the same spec (method, search space, schedule shapes) at toy scale, offline.

Swaps in digits-LT (the spec's imbalance, capped at 20), a tiny ``small_cnn``, 2 epochs per stage,
CPU, one seed, at most two values per grid dimension and two samples (searched ``data.*`` /
``model.*`` keys are dropped, the data and model being fixed); every epoch-valued setting
(``optim.warmup``, ``optim.milestones``, method keys ending in ``_epoch``/``_epochs``) is rescaled
so schedules keep their shape. Results go to ``<name>_smoke``.
"""

from __future__ import annotations

from typing import Any, Sequence

from ltsearch.spec import Spec, parse_override, set_path, validate_spec_dict

SMOKE_EPOCHS = 2


def _is_epoch_key(key: str) -> bool:
    last = key.split(".")[-1]
    return last.endswith("_epoch") or last.endswith("_epochs") or key in ("optim.warmup", "optim.milestones")


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


def _rescale_method(method: dict[str, Any], factor: float) -> None:
    """Rescale a method section's epoch-valued keys (``*_epoch``, ``*_epochs``) in place."""
    for key, value in list(method.items()):
        if _is_epoch_key(key):
            cap = SMOKE_EPOCHS if key.endswith("_epoch") else max(1, SMOKE_EPOCHS)
            method[key] = _rescale(value, factor, cap)
            if key.endswith("_epochs") and method[key] == 0 and value:
                method[key] = 1


def smoke_spec(spec: Spec, overrides: Sequence[str] = ()) -> Spec:
    """The toy-scale spec; ``overrides`` (``--set key=value``) are applied again on top of it."""
    raw = spec.model_dump(by_alias=True, exclude_none=True)
    exp = raw["experiment"]
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
    exp["device"] = "cpu"
    exp["eval"] = {**exp.get("eval", {}), "test_every": 0}
    # data and model are fixed at toy scale: drop searched data.* / model.* keys (e.g. a
    # data.dataset grid over CIFAR-10 / CIFAR-100) and their values in ``initial`` points
    fixed = [k for k in search["space"] if k.split(".")[0] in ("data", "model")]
    for key in fixed:
        del search["space"][key]
    search["initial"] = [{k: v for k, v in point.items() if k not in fixed} for point in search.get("initial", [])]
    for key, dist in search["space"].items():
        for kind in ("grid", "choice"):
            if kind in dist:
                values = dist[kind][:2] if kind == "grid" else dist[kind]
                dist[kind] = _rescale(values, factor, SMOKE_EPOCHS) if _is_epoch_key(key) else values
                if key.endswith("_epochs"):  # as for method keys: a stage that has epochs keeps one
                    dist[kind] = [1 if r == 0 and isinstance(v, (int, float)) and v else r for r, v in zip(dist[kind], values)]
        if _is_epoch_key(key) and "int" in dist:
            lo, hi = _rescale(dist["int"], factor, SMOKE_EPOCHS)
            dist["int"] = [lo, max(hi, lo + 1)]
    search.update(seeds=search["seeds"][:1], num_samples=min(search.get("num_samples", 1), 2), max_failures=0)
    if search.get("grace_period"):
        search["grace_period"] = 1
    raw["resources"] = {"workers": min(raw["resources"]["workers"], 2), "cpus_per_worker": 1, "gpus_per_worker": 0}
    raw["name"] = f"{raw['name']}_smoke"
    for text in overrides:
        set_path(raw, *parse_override(text))
    return validate_spec_dict(raw, source=f"{spec.name} (--smoke)")
