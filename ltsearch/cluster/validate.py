"""Offline validation of cluster files (``ltsearch cluster validate``): no cloud account, nothing
contacted. Every error is one line ``"<file>: <key>: <what is wrong>"``.

- A Ray cluster-launcher YAML (``ray up``; has ``provider:``): every violation of Ray's own schema
  (``ray/autoscaler/ray-schema.json``, the schema ``validate_config`` applies, here with all
  errors listed instead of the first), then Ray's provider defaults (``prepare_config``) and
  ``validate_config`` itself. ltsearch adds only what Ray accepts but a sweep needs: node types with
  a head type, ``min_workers ≤ max_workers`` per type, ``idle_timeout_minutes`` set, and (fake
  multi-node provider, whose defaults file the Ray wheel lacks) every key the autoscaler reads.
- A KubeRay ``RayCluster`` (``apiVersion: ray.io/v1``): the CRD's OpenAPI schema (the subset in
  ``raycluster-crd.json``) through jsonschema, ``minReplicas ≤ maxReplicas`` and in-tree
  autoscaling for a group that scales, then Ray's own RayCluster → autoscaling-config derivation
  (which ends in ``validate_config``) and a check that a GPU limit became a GPU resource.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Iterable

import yaml

KUBERAY_API_VERSION = "ray.io/v1"
FAKE_PROVIDERS = ("fake_multinode", "fake_multinode_docker")
FAKE_REQUIRED = ("max_workers", "file_mounts", "cluster_synced_files", "setup_commands", "head_setup_commands",
                 "worker_setup_commands", "head_start_ray_commands", "worker_start_ray_commands",
                 "initialization_commands", "auth", "idle_timeout_minutes", "upscaling_speed")
CRD_SCHEMA = Path(__file__).with_name("raycluster-crd.json")
_MAX_MSG = 240


def validate_files(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """``{path: [error, ...]}`` for every path, in order; an empty list means the file is valid."""
    return {str(p): validate_file(p) for p in paths}


def validate_file(path: str | os.PathLike) -> list[str]:
    """Errors of one cluster file; ``[]`` when valid (see the module docstring)."""
    name, p = str(path), Path(path)
    if not p.is_file():
        return [f"{name}: no such file"]
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        return [f"{name}: unknown file kind {p.suffix or '(no extension)'!r}: expected a .yaml cluster config "
                "(a Ray cluster-launcher config or a KubeRay RayCluster)"]
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f" (line {mark.line + 1})" if mark is not None else ""
        return [f"{name}: not valid YAML{line}: {getattr(e, 'problem', None) or str(e).splitlines()[0]}"]
    if not docs:
        return [f"{name}: the file is empty"]
    errors: list[str] = []
    kinds = [file_kind(d) for d in docs]
    for i, (doc, kind) in enumerate(zip(docs, kinds)):
        prefix = name if len(docs) == 1 else f"{name} (document {i + 1})"
        if kind == "k8s-other" and len(docs) > 1:
            continue  # e.g. a Service or PVC next to the RayCluster
        check = {"launcher": launcher_errors, "kuberay": kuberay_errors}.get(kind)
        errors += [f"{prefix}: {m}" for m in (check(doc) if check else [_unknown_kind(doc)])]
    if not errors and not {"launcher", "kuberay"} & set(kinds):
        errors.append(f"{name}: no Ray cluster in it (neither a launcher config with `provider:` "
                      "nor a RayCluster of apiVersion ray.io/v1)")
    return errors


def file_kind(doc: Any) -> str:
    """``"launcher"`` (ray up YAML), ``"kuberay"`` (RayCluster CR), ``"k8s-other"`` or ``"unknown"``."""
    if not isinstance(doc, dict):
        return "unknown"
    if "apiVersion" in doc or "kind" in doc:
        is_ray = doc.get("kind") == "RayCluster" or str(doc.get("apiVersion", "")).startswith("ray.io/")
        return "kuberay" if is_ray else "k8s-other"
    return "launcher" if "provider" in doc else "unknown"


def _unknown_kind(doc: Any) -> str:
    if not isinstance(doc, dict):
        return (f"unknown file kind: the top level is a {type(doc).__name__}, expected a mapping (a Ray "
                "cluster-launcher config with `provider:` or a KubeRay RayCluster with `apiVersion: ray.io/v1`)")
    if "apiVersion" in doc or "kind" in doc:
        return (f"unknown file kind: {doc.get('kind', '?')} ({doc.get('apiVersion', '?')}) is not a RayCluster; "
                f"expected `apiVersion: {KUBERAY_API_VERSION}` and `kind: RayCluster`")
    keys = ", ".join(sorted(map(str, doc))[:6]) or "none"
    return ("unknown file kind: neither a Ray cluster-launcher config (no `provider:` key) nor a KubeRay "
            f"RayCluster (no `apiVersion`/`kind`); top-level keys: {keys}")


# ------------------------------------------------------------------------------- schema errors


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MSG else text[: _MAX_MSG - 3] + "..."


def _key(path: Iterable[Any], names: dict[int, str] | None = None) -> str:
    """``a.b[0].c``; ``names`` labels ``workerGroupSpecs[i]`` with its group name."""
    out, parts = "", list(path)
    for i, part in enumerate(parts):
        if isinstance(part, int):
            label = f" ({names[part]})" if names and i > 0 and parts[i - 1] == "workerGroupSpecs" and part in names else ""
            out += f"[{part}]{label}"
        else:
            out += part if not out else "." + str(part)
    return out or "(top level)"


def _message(err: Any, crd: bool = False) -> str:
    """One readable line for a jsonschema error (an unknown key, a wrong type; ``crd``: in the
    words of a Kubernetes CRD)."""
    v, s = err.instance, err.schema
    if err.validator == "additionalProperties" and isinstance(v, dict) and not s.get("patternProperties"):
        extra = [k for k in v if k not in (s.get("properties") or {})]
        if extra:
            return _short(f"unknown key(s) {', '.join(repr(k) for k in extra)} (not allowed here)")
    if err.validator == "const":
        return f"{v!r}, expected {err.validator_value!r}"
    if crd and err.validator == "type" and err.validator_value == "string" and not isinstance(v, (dict, list)):
        return f"{v!r} must be a string (quote it: \"{v}\"); the CRD declares map[string]string"
    if crd and err.validator in ("type", "minimum") and s.get("type") == "integer" and s.get("minimum") == 0:
        return f"{v!r} is not a non-negative integer"
    if err.validator == "type" and not isinstance(v, (dict, list)):
        return _short(f"{v!r} is not of type {err.validator_value!r}")
    return _short(err.message)


def schema_errors(doc: Any, schema: dict, names: dict[int, str] | None = None, crd: bool = False) -> list[str]:
    """Every violation of ``schema``, one ``key: message`` line each, sorted by key; with ``crd``
    a missing required key is reported at its own key (``a.b: missing``)."""
    import jsonschema

    out = []
    for err in jsonschema.validators.validator_for(schema)(schema).iter_errors(doc):
        path, msg = list(err.absolute_path), _message(err, crd)
        missing = re.match(r"'(.+)' is a required property", err.message) if err.validator == "required" else None
        if missing and crd:
            path, msg = path + [missing.group(1)], "missing"
        out.append((path, msg))
    out.sort(key=lambda t: [str(x) for x in t[0]])
    return [f"{_key(p, names)}: {m}" for p, m in out]


@functools.lru_cache(maxsize=1)
def _ray_schema() -> dict:
    import ray.autoscaler

    return json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())


@functools.lru_cache(maxsize=1)
def _crd_schema() -> dict:
    return json.loads(CRD_SCHEMA.read_text())


def _quiet(fn: Any, *args: Any) -> Any:
    """Call a Ray autoscaler helper with its INFO logging ("setting max workers ...") silenced."""
    loggers = [logging.getLogger(n) for n in ("ray.autoscaler._private.util",
                                                "ray.autoscaler._private.kuberay.autoscaling_config")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        return fn(*args)
    finally:
        for lg, lv in zip(loggers, levels):
            lg.setLevel(lv)


# ------------------------------------------------------------------------------- launcher


def launcher_errors(config: dict) -> list[str]:
    """A ``ray up`` config: Ray's schema, ltsearch's few additions, Ray's defaults + validate_config."""
    from ray.autoscaler._private import util as ray_util

    errors = schema_errors(config, _ray_schema())
    if errors:
        return errors
    types = config.get("available_node_types")
    if types is None:
        return ["available_node_types: missing (ltsearch configs use node types: a head type and "
                "at least one worker type, each with `resources`)"]
    errors = [f"available_node_types.{n}: min_workers ({t['min_workers']}) is larger than max_workers ({t['max_workers']})"
              for n, t in types.items() if t.get("min_workers", 0) > t.get("max_workers", float("inf"))]
    ptype = config["provider"].get("type")
    if ptype in FAKE_PROVIDERS:  # read by `ray start --autoscaling-config` as-is, without defaults
        missing = [k for k in FAKE_REQUIRED if k not in config]
        if missing:
            errors.append(f"{', '.join(missing)}: missing (a fake_multinode config is read without Ray's defaults, "
                          "so every key the autoscaler reads must be present; see clusters/local-fake.yaml)")
        if config.get("head_node_type", "ray.head.default") != "ray.head.default":
            errors.append(f"head_node_type: the fake_multinode provider needs the head type to be named "
                          f"'ray.head.default', not {config['head_node_type']!r}")
    if errors:
        return errors
    try:
        prepared = copy.deepcopy(config) if ptype in FAKE_PROVIDERS else _quiet(ray_util.prepare_config,
                                                                                 copy.deepcopy(config))
        ray_util.validate_config(prepared)
    except NotImplementedError:
        return [f"provider.type: {ptype!r} is not a provider Ray knows"]
    except Exception as e:  # noqa: BLE001 - Ray's rejection, reported as one line
        return [_ray_error_line(e, config)]
    if "idle_timeout_minutes" not in config:
        return [f"idle_timeout_minutes: missing (set it so idle GPU workers are released; Ray's default for "
                f"{ptype} would apply silently)"]
    return []


def _ray_error_line(e: Exception, config: dict) -> str:
    import jsonschema

    if isinstance(e, jsonschema.ValidationError):
        return f"{_key(e.absolute_path)}: {_message(e)}"
    text = str(e)
    if "head_node_type" in text:
        types = config.get("available_node_types") or {}
        if config.get("head_node_type") is not None and config["head_node_type"] not in types:
            return (f"head_node_type: {config['head_node_type']!r} is not one of available_node_types "
                    f"({', '.join(map(str, types))})")
        return "head_node_type: missing (name the head entry of available_node_types)"
    for key in ("max_workers", "available_node_types", "cluster_synced_files"):
        if key in text:
            return f"{key}: {_short(text)}"
    return f"(Ray's validate_config) {_short(f'{type(e).__name__}: {text}')}"


# ------------------------------------------------------------------------------- KubeRay


def kuberay_errors(cr: dict) -> list[str]:
    """A RayCluster: the CRD schema, ltsearch's scaling rules, then Ray's derivation."""
    spec = cr.get("spec") if isinstance(cr.get("spec"), dict) else {}
    workers = spec.get("workerGroupSpecs") or []
    names = {i: g["groupName"] for i, g in enumerate(workers) if isinstance(g, dict) and g.get("groupName")}
    errors = schema_errors(cr, _crd_schema(), names, crd=True)
    if errors:
        return errors
    for i, g in enumerate(workers):
        if g["minReplicas"] > g["maxReplicas"]:
            errors.append(f"spec.workerGroupSpecs[{i}] ({g['groupName']}): minReplicas ({g['minReplicas']}) is "
                          f"larger than maxReplicas ({g['maxReplicas']})")
    if any(g["minReplicas"] != g["maxReplicas"] for g in workers) and spec.get("enableInTreeAutoscaling") is not True:
        errors.append("spec.enableInTreeAutoscaling: must be true when a worker group has minReplicas != "
                      "maxReplicas (otherwise nothing scales between them)")
    if errors:
        return errors
    try:
        derived = derive_kuberay_config(cr)
    except Exception as e:  # noqa: BLE001
        return [_kuberay_error_line(e, workers)]
    return [f"spec.workerGroupSpecs ({g['groupName']}): a GPU limit is set but the autoscaler derives no GPU resource from it"
            for g in workers if any(k.endswith("/gpu") for k in _limits(g))
            and not derived["available_node_types"].get(g["groupName"], {}).get("resources", {}).get("GPU")]


def _limits(group: dict) -> dict:
    return ((group["template"]["spec"]["containers"][0].get("resources") or {}).get("limits") or {})


def derive_kuberay_config(cr: dict) -> dict:
    """Ray's own RayCluster → autoscaling-config translation (it ends with ``validate_config``)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    cr = copy.deepcopy(cr)
    cr["metadata"].setdefault("namespace", "default")  # kubectl apply's default
    cr["spec"].setdefault("workerGroupSpecs", [])
    return _quiet(_derive_autoscaling_config_from_ray_cr, cr)


def kuberay_autoscaling_config(path: str | os.PathLike) -> dict:
    """The autoscaling config Ray derives from the RayCluster in ``path``."""
    for doc in yaml.safe_load_all(Path(path).read_text()):
        if file_kind(doc) == "kuberay":
            return derive_kuberay_config(doc)
    raise ValueError(f"{path}: no RayCluster in it")


def _kuberay_error_line(e: Exception, workers: list) -> str:
    import jsonschema

    if isinstance(e, jsonschema.ValidationError):  # the derived config failed Ray's schema
        path = list(e.absolute_path)
        if len(path) >= 2 and path[0] == "available_node_types":
            names = [g.get("groupName") for g in workers]
            where = (f"spec.workerGroupSpecs[{names.index(path[1])}] ({path[1]})" if path[1] in names
                     else "spec.headGroupSpec")
            return f"{where}: derived autoscaler {_key(path[2:])}: {_message(e)}"
        return f"derived autoscaler config {_key(path)}: {_message(e)}"
    text = str(e).replace("\n", " ")
    if isinstance(e, KeyError):
        return f"spec: missing key {text} (needed by Ray's KubeRay autoscaler)"
    group = "spec.headGroupSpec" if "group headgroup" in text else next(
        (f"spec.workerGroupSpecs ({g['groupName']})" for g in workers if f"group {g['groupName']}" in text), "spec")
    return f"{group}: {_short(f'{type(e).__name__}: {text}')}"
