"""Cluster configurations: offline validation of clusters/*.yaml and a preflight for `ltsearch run`.

Two jobs, both without a cloud account:

* ``validate_file(path)`` / ``validate_files(paths)`` check a Ray cluster-launcher YAML
  (``ray up``: aws, gcp, fake_multinode, ...) with Ray's own schema and ``validate_config``,
  and a KubeRay ``RayCluster`` (ray.io/v1) through the autoscaling config that Ray's KubeRay
  autoscaler derives from it. Every error is one line naming the file and the key.
* ``preflight(storage, spec_resources, address)`` refuses, before a sweep starts, what would fail
  or hang on a multi-node cluster: a local ``--storage`` path other nodes cannot see, a spec asking
  for GPUs (or more CPUs per worker) than any node or autoscaler node type offers; it warns when
  ``search.max_concurrent`` keeps the autoscaler from adding nodes. The rules live in
  ``check_preflight(..., facts)``, a pure function of ``ClusterFacts``; ``gather_facts(address)``
  reads those facts from a running Ray.

Ray is imported lazily (only inside the functions that need it).
"""

from __future__ import annotations

import copy
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml

__all__ = [
    "ClusterFacts",
    "check_preflight",
    "file_kind",
    "gather_facts",
    "kuberay_autoscaling_config",
    "network_mount_for",
    "node_types_from_config",
    "preflight",
    "trial_bundle",
    "validate_file",
    "validate_files",
]

KUBERAY_API_VERSION = "ray.io/v1"
# File-system types of /proc/mounts that every node of a cluster can mount at the same path.
NETWORK_FS_TYPES = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
    "glusterfs", "fuse.glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.juicefs",
    "fuse.sshfs", "9p", "efs", "fuse.cephfs", "fuse.lustre", "wekafs", "fuse.weka",
)
FAKE_PROVIDERS = ("fake_multinode", "fake_multinode_docker")
SHARED_STORAGE_ENV = "LTSEARCH_SHARED_STORAGE"
_MAX_MSG = 240


# ============================================================================ validation


def validate_files(paths: Iterable[str | os.PathLike]) -> dict[str, list[str]]:
    """``{path: [error, ...]}`` for every path, in order; an empty list means the file is valid."""
    return {str(p): validate_file(p) for p in paths}


def validate_file(path: str | os.PathLike) -> list[str]:
    """Errors of one cluster file, each ``"<path>: <key>: <what is wrong>"``; ``[]`` when valid.

    A launcher YAML (has ``provider:``) goes through Ray's schema, Ray's defaults for its
    provider and ``ray.autoscaler._private.util.validate_config``; a KubeRay ``RayCluster``
    (``apiVersion: ray.io/v1``) goes through Ray's derivation of an autoscaling config, which is
    then validated the same way. Nothing is contacted: no cloud credentials are needed.
    """
    name = str(path)
    p = Path(path)
    if not p.is_file():
        return [f"{name}: no such file"]
    if p.suffix.lower() not in (".yaml", ".yml", ".json"):
        return [f"{name}: unknown file kind {p.suffix or '(no extension)'!r}: expected a .yaml cluster config "
                "(a Ray cluster-launcher config or a KubeRay RayCluster)"]
    try:
        docs = [d for d in yaml.safe_load_all(p.read_text()) if d is not None]
    except yaml.YAMLError as e:
        where = getattr(e, "problem_mark", None)
        line = f" (line {where.line + 1})" if where is not None else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        return [f"{name}: not valid YAML{line}: {problem}"]
    if not docs:
        return [f"{name}: the file is empty"]

    errors: list[str] = []
    kinds = []
    for i, doc in enumerate(docs):
        prefix = name if len(docs) == 1 else f"{name} (document {i + 1})"
        kind = file_kind(doc)
        kinds.append(kind)
        if kind == "launcher":
            errors += [f"{prefix}: {m}" for m in _launcher_errors(doc)]
        elif kind == "kuberay":
            errors += [f"{prefix}: {m}" for m in _kuberay_errors(doc)]
        elif kind == "k8s-other" and len(docs) > 1:
            continue  # e.g. a Service or PVC next to the RayCluster
        else:
            errors.append(f"{prefix}: {_unknown_kind(doc)}")
    if errors == [] and "launcher" not in kinds and "kuberay" not in kinds:
        errors.append(f"{name}: no Ray cluster in it (neither a launcher config with `provider:` "
                      "nor a RayCluster of apiVersion ray.io/v1)")
    return errors


def file_kind(doc: Any) -> str:
    """``"launcher"`` (ray up YAML), ``"kuberay"`` (RayCluster CR), ``"k8s-other"`` or ``"unknown"``."""
    if not isinstance(doc, dict):
        return "unknown"
    if "apiVersion" in doc or "kind" in doc:
        api = str(doc.get("apiVersion", ""))
        if doc.get("kind") == "RayCluster" or api.startswith("ray.io/"):
            return "kuberay"
        return "k8s-other"
    if "provider" in doc:
        return "launcher"
    return "unknown"


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


def _short(text: str) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= _MAX_MSG else text[: _MAX_MSG - 3] + "..."


def _key(path: Iterable[Any]) -> str:
    parts = [f"[{p}]" if isinstance(p, int) else str(p) for p in path]
    out = ""
    for part in parts:
        out += part if (not out or part.startswith("[")) else "." + part
    return out or "(top level)"


def _schema_errors(config: Any, key_prefix: tuple = ()) -> list[str]:
    """Every violation of Ray's ray-schema.json, one readable line each, sorted by key."""
    import jsonschema
    import ray.autoscaler

    schema_path = Path(ray.autoscaler.__file__).parent / "ray-schema.json"
    schema = json.loads(schema_path.read_text())
    validator_cls = jsonschema.validators.validator_for(schema)
    out = []
    for err in validator_cls(schema).iter_errors(config):
        out.append((list(err.absolute_path), _schema_message(err)))
    out.sort(key=lambda t: [str(x) for x in t[0]])
    return [f"{_key(key_prefix + tuple(p))}: {m}" for p, m in out]


def _schema_message(err: Any) -> str:
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set((err.schema.get("properties") or {}))
        extra = [k for k in err.instance if k not in allowed]
        if extra and not err.schema.get("patternProperties"):
            return _short(f"unknown key(s) {', '.join(repr(k) for k in extra)} (not allowed here)")
    if err.validator == "type" and not isinstance(err.instance, (dict, list)):
        return _short(f"{err.instance!r} is not of type {err.validator_value!r}")
    return _short(err.message)


def _launcher_errors(config: dict) -> list[str]:
    """Ray cluster-launcher YAML: schema, then Ray's defaults + validate_config (all offline)."""
    from ray.autoscaler._private import util as ray_util

    errors = _schema_errors(config)
    if errors:
        return errors
    provider = config["provider"]
    ptype = provider.get("type")
    types = config.get("available_node_types")
    if types is None:
        return ["available_node_types: missing (ltsearch configs use node types: a head type and "
                "at least one worker type, each with `resources`)"]
    if "head_node_type" not in config:
        return ["head_node_type: missing (name the head entry of available_node_types)"]
    if config["head_node_type"] not in types:
        return [f"head_node_type: {config['head_node_type']!r} is not one of available_node_types "
                f"({', '.join(map(str, types))})"]
    for name, nt in types.items():
        lo, hi = nt.get("min_workers", 0), nt.get("max_workers")
        if hi is not None and lo > hi:
            errors.append(f"available_node_types.{name}: min_workers ({lo}) is larger than max_workers ({hi})")
    if errors:
        return errors

    if ptype in FAKE_PROVIDERS:
        # The fake provider's defaults file (example.yaml) is not in the Ray wheel, and `ray start
        # --autoscaling-config` reads the file as-is anyway: it must be complete on its own.
        prepared = copy.deepcopy(config)
        if config["head_node_type"] != "ray.head.default":
            errors.append(f"head_node_type: the fake_multinode provider needs the head type to be named "
                          f"'ray.head.default', not {config['head_node_type']!r}")
        missing = [k for k in ("max_workers", "file_mounts", "cluster_synced_files", "setup_commands",
                               "head_setup_commands", "worker_setup_commands", "head_start_ray_commands",
                               "worker_start_ray_commands", "initialization_commands", "auth",
                               "idle_timeout_minutes", "upscaling_speed") if k not in config]
        if missing:
            errors.append(f"{', '.join(missing)}: missing (a fake_multinode config is read without Ray's "
                          "defaults, so every key the autoscaler reads must be present; see clusters/local-fake.yaml)")
        if errors:
            return errors
    else:
        try:
            prepared = _quiet(ray_util.prepare_config, copy.deepcopy(config))
        except NotImplementedError:
            return [f"provider.type: {ptype!r} is not a provider Ray knows"]
        except Exception as e:  # noqa: BLE001 -- any failure is reported, not raised
            return [f"(Ray's prepare_config) {_short(f'{type(e).__name__}: {e}')}"]
    try:
        ray_util.validate_config(prepared)
    except Exception as e:  # noqa: BLE001
        return [_ray_exception_line(e)]
    if "idle_timeout_minutes" not in config:
        errors.append("idle_timeout_minutes: missing (set it so idle GPU workers are released; Ray's "
                      f"default for {ptype} would apply silently)")
    return errors


def _quiet(fn: Any, *args: Any) -> Any:
    """Call a Ray autoscaler helper with its INFO logging ("setting max workers ...") silenced."""
    import logging

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


def _ray_exception_line(e: Exception) -> str:
    try:
        import jsonschema

        if isinstance(e, jsonschema.ValidationError):
            return f"{_key(list(e.absolute_path))}: {_schema_message(e)}"
    except ImportError:  # pragma: no cover
        pass
    text = str(e)
    for key in ("head_node_type", "max_workers", "available_node_types", "cluster_synced_files",
                "file_mounts_sync_continuously"):
        if key in text:
            return f"{key}: {_short(text)}"
    return f"(Ray's validate_config) {_short(f'{type(e).__name__}: {text}')}"


# ---------------------------------------------------------------------------------- KubeRay


def _kuberay_errors(cr: dict) -> list[str]:
    """RayCluster CR: shape checks for what the derivation reads, then Ray's derivation."""
    errors: list[str] = []
    if cr.get("apiVersion") != KUBERAY_API_VERSION:
        errors.append(f"apiVersion: {cr.get('apiVersion')!r}, expected {KUBERAY_API_VERSION!r} "
                      "(KubeRay >= 1.0; v1alpha1 is deprecated)")
    if cr.get("kind") != "RayCluster":
        errors.append(f"kind: {cr.get('kind')!r}, expected 'RayCluster'")
    meta = cr.get("metadata")
    if not isinstance(meta, dict) or not meta.get("name"):
        errors.append("metadata.name: missing (the RayCluster needs a name)")
    spec = cr.get("spec")
    if not isinstance(spec, dict):
        return errors + ["spec: missing or not a mapping"]

    def group_errors(g: Any, where: str, head: bool) -> list[str]:
        if not isinstance(g, dict):
            return [f"{where}: not a mapping"]
        out = []
        if not head:
            if not g.get("groupName"):
                out.append(f"{where}.groupName: missing")
            for k in ("minReplicas", "maxReplicas"):
                if k not in g:
                    out.append(f"{where}.{k}: missing (the autoscaler needs it)")
                elif not isinstance(g[k], int) or isinstance(g[k], bool) or g[k] < 0:
                    out.append(f"{where}.{k}: {g[k]!r} is not a non-negative integer")
            if not out and g["minReplicas"] > g["maxReplicas"]:
                out.append(f"{where}: minReplicas ({g['minReplicas']}) is larger than maxReplicas ({g['maxReplicas']})")
        params = g.get("rayStartParams", {})
        if params is None:
            params = {}
        if not isinstance(params, dict):
            out.append(f"{where}.rayStartParams: not a mapping")
        else:
            for k, v in params.items():
                if not isinstance(v, str):
                    out.append(f"{where}.rayStartParams.{k}: {v!r} must be a string (quote it: \"{v}\"); "
                               "the CRD declares map[string]string")
        containers = (((g.get("template") or {}).get("spec") or {}).get("containers"))
        if not isinstance(containers, list) or not containers or not isinstance(containers[0], dict):
            out.append(f"{where}.template.spec.containers: missing (the Ray container must come first)")
        elif not containers[0].get("image"):
            out.append(f"{where}.template.spec.containers[0].image: missing")
        return out

    if "headGroupSpec" not in spec:
        errors.append("spec.headGroupSpec: missing")
    else:
        errors += group_errors(spec["headGroupSpec"], "spec.headGroupSpec", head=True)
    workers = spec.get("workerGroupSpecs", [])
    if not isinstance(workers, list):
        errors.append("spec.workerGroupSpecs: not a list")
        workers = []
    for i, g in enumerate(workers):
        where = f"spec.workerGroupSpecs[{i}]"
        if isinstance(g, dict) and g.get("groupName"):
            where += f" ({g['groupName']})"
        errors += group_errors(g, where, head=False)
    if errors:
        return errors

    scaling = any(g["minReplicas"] != g["maxReplicas"] for g in workers)
    if scaling and spec.get("enableInTreeAutoscaling") is not True:
        errors.append("spec.enableInTreeAutoscaling: must be true when a worker group has minReplicas != "
                      "maxReplicas (otherwise nothing scales between them)")
    opts = spec.get("autoscalerOptions", {}) or {}
    if "idleTimeoutSeconds" in opts and not isinstance(opts["idleTimeoutSeconds"], (int, float)):
        errors.append(f"spec.autoscalerOptions.idleTimeoutSeconds: {opts['idleTimeoutSeconds']!r} is not a number")
    if errors:
        return errors

    cr = copy.deepcopy(cr)
    cr["metadata"].setdefault("namespace", "default")  # kubectl apply's default
    cr["spec"].setdefault("workerGroupSpecs", [])
    try:
        derived = _derive_kuberay_config(cr)
    except Exception as e:  # noqa: BLE001
        return [_kuberay_exception_line(e, workers)]
    return _check_derived(derived, workers)


def _derive_kuberay_config(cr: dict) -> dict:
    """Ray's own RayCluster -> autoscaling config translation (it ends with validate_config)."""
    from ray.autoscaler._private.kuberay.autoscaling_config import _derive_autoscaling_config_from_ray_cr

    return _quiet(_derive_autoscaling_config_from_ray_cr, cr)


def kuberay_autoscaling_config(path: str | os.PathLike) -> dict:
    """The autoscaling config Ray derives from the RayCluster in ``path`` (for preflight/inspection)."""
    for doc in yaml.safe_load_all(Path(path).read_text()):
        if file_kind(doc) == "kuberay":
            cr = copy.deepcopy(doc)
            cr["metadata"].setdefault("namespace", "default")
            return _derive_kuberay_config(cr)
    raise ValueError(f"{path}: no RayCluster in it")


def _kuberay_exception_line(e: Exception, workers: list) -> str:
    try:
        import jsonschema

        if isinstance(e, jsonschema.ValidationError):
            path = list(e.absolute_path)
            # available_node_types.<group> in the derived config is a worker group of the CR
            if len(path) >= 2 and path[0] == "available_node_types":
                names = [g.get("groupName") for g in workers]
                where = (f"spec.workerGroupSpecs[{names.index(path[1])}] ({path[1]})" if path[1] in names
                         else "spec.headGroupSpec")
                return f"{where}: derived autoscaler {_key(path[2:])}: {_schema_message(e)}"
            return f"derived autoscaler config {_key(path)}: {_schema_message(e)}"
    except ImportError:  # pragma: no cover
        pass
    text = str(e).replace("\n", " ")
    if isinstance(e, KeyError):
        return f"spec: missing key {text} (needed by Ray's KubeRay autoscaler)"
    group = "spec"
    for g in workers:
        if g.get("groupName") and f"group {g['groupName']}" in text:
            group = f"spec.workerGroupSpecs ({g['groupName']})"
    if "group headgroup" in text:
        group = "spec.headGroupSpec"
    return f"{group}: {_short(f'{type(e).__name__}: {text}')}"


def _check_derived(derived: dict, workers: list) -> list[str]:
    errors = []
    for g in workers:
        nt = derived["available_node_types"].get(g["groupName"], {})
        limits = ((g["template"]["spec"]["containers"][0].get("resources") or {}).get("limits") or {})
        gpu_limit = any(k.endswith("/gpu") for k in limits)
        if gpu_limit and not nt.get("resources", {}).get("GPU"):
            errors.append(f"spec.workerGroupSpecs ({g['groupName']}): a GPU limit is set but the autoscaler "
                          "derives no GPU resource from it")
    return errors


# ============================================================================ preflight


@dataclass
class ClusterFacts:
    """What preflight needs to know about a cluster, gathered by ``gather_facts`` or built in tests.

    nodes: the resources of each alive node (``{"CPU": 4.0, "GPU": 1.0, ...}``).
    hosts: how many distinct machines those nodes run on (fake multi-node clusters: 1).
    autoscaler: whether an autoscaler runs (it can add nodes).
    node_types: the node types the autoscaler can add, ``{name: {"resources": {...},
        "max_workers": n}}``; ``None`` when there is an autoscaler but its types are unknown.
    local: the facts describe this machine only (no cluster: Ray would start locally).
    provider: the autoscaler's provider type when known (``"aws"``, ``"fake_multinode"``, ...);
        a fake multi-node cluster adds its nodes on this same machine.
    """

    nodes: list[dict[str, float]] = field(default_factory=list)
    hosts: int = 1
    autoscaler: bool = False
    node_types: dict[str, dict[str, Any]] | None = field(default_factory=dict)
    local: bool = False
    provider: str | None = None

    @property
    def can_add_nodes(self) -> bool:
        if not self.autoscaler:
            return False
        if self.node_types is None:
            return True
        return any(int(t.get("max_workers", 0)) > 0 for t in self.node_types.values())


def trial_bundle(spec_resources: Any) -> tuple[dict[str, float], int]:
    """``({"CPU": c, "GPU": g}, workers)``: what one trial worker needs, and workers per trial.

    Accepts a ``ResourcesSpec``, a whole ``Spec`` (its ``.resources``) or a mapping with
    ``workers``, ``cpus_per_worker``, ``gpus_per_worker``.
    """
    res = getattr(spec_resources, "resources", spec_resources)
    get = (res.get if isinstance(res, Mapping) else lambda k, d=None: getattr(res, k, d))
    bundle = {"CPU": float(get("cpus_per_worker", 1.0) or 0.0), "GPU": float(get("gpus_per_worker", 0.0) or 0.0)}
    return {k: v for k, v in bundle.items() if v > 0}, int(get("workers", 1) or 1)


def _fits(bundle: Mapping[str, float], resources: Mapping[str, float]) -> int:
    """How many copies of ``bundle`` fit on a node with ``resources`` (a large number if unbounded)."""
    n = 10**9
    for k, need in bundle.items():
        if need > 0:
            n = min(n, int(math.floor(float(resources.get(k, 0.0)) / need + 1e-9)))
    return n


def _fmt_res(r: Mapping[str, float]) -> str:
    keep = {k: (int(v) if float(v).is_integer() else v) for k, v in r.items()
            if k in ("CPU", "GPU") or (not k.startswith("node:") and k not in ("memory", "object_store_memory")
                                       and not k.startswith("accelerator_type"))}
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(keep.items())) + "}"


def _is_uri(storage: str) -> bool:
    return "://" in storage and not storage.lower().startswith("file://")


def network_mount_for(path: str | os.PathLike, mounts: Iterable[tuple[str, str]] | None = None) -> str | None:
    """The network-filesystem mount point (NFS, EFS, Filestore, Lustre, gcsfuse, ...) holding ``path``.

    ``mounts`` is ``[(mount_point, fs_type), ...]``; by default read from /proc/mounts.
    """
    if mounts is None:
        mounts = []
        try:
            for line in Path("/proc/mounts").read_text().splitlines():
                parts = line.split()
                if len(parts) >= 3:
                    mounts.append((parts[1].replace("\\040", " "), parts[2]))
        except OSError:
            return None
    target = os.path.abspath(os.path.expanduser(str(path)))
    best = None
    for point, fstype in mounts:
        point = point.rstrip("/") or "/"
        if target == point or target.startswith(point.rstrip("/") + "/"):
            if best is None or len(point) > len(best[0]):
                best = (point, fstype)
    if best and (best[1] in NETWORK_FS_TYPES or best[1].split(".")[0] in ("nfs", "nfs4")):
        return best[0]
    return None


def check_preflight(
    storage: str,
    spec_resources: Any,
    facts: ClusterFacts,
    *,
    max_concurrent: int | None = None,
    num_trials: int | None = None,
    mounts: Iterable[tuple[str, str]] | None = None,
    shared_storage: bool | None = None,
) -> tuple[list[str], list[str]]:
    """The preflight rules as a pure function: ``(problems, warnings)``; problems stop the run.

    * a local ``storage`` path on a cluster of more than one machine (or one the autoscaler can
      grow) is a problem, unless it lies on a network mount (``mounts``, /proc/mounts by default)
      or ``shared_storage`` is true (default: env ``LTSEARCH_SHARED_STORAGE=1``);
    * a trial worker (``cpus_per_worker`` + ``gpus_per_worker``) that fits on no node and no
      autoscaler node type is a problem (a warning when the autoscaler's node types are unknown);
    * ``max_concurrent`` trials that already fit on the current nodes, while the autoscaler could
      add nodes for more, is a warning: the autoscaler never sees pending trials.
    """
    problems: list[str] = []
    warnings: list[str] = []
    bundle, workers = trial_bundle(spec_resources)
    if max_concurrent is None:
        search = getattr(spec_resources, "search", None)
        max_concurrent = getattr(search, "max_concurrent", None)
    if shared_storage is None:
        shared_storage = os.environ.get(SHARED_STORAGE_ENV, "").strip().lower() in ("1", "true", "yes")

    # --- storage -------------------------------------------------------------------------
    storage = str(storage)
    multi = facts.hosts > 1 or (facts.can_add_nodes and facts.provider not in FAKE_PROVIDERS)
    if not facts.local and multi and not _is_uri(storage) and not shared_storage:
        local = storage[len("file://"):] if storage.lower().startswith("file://") else storage
        mount = network_mount_for(local, mounts)
        if mount is None:
            why = (f"{facts.hosts} machines" if facts.hosts > 1 else "one machine now, but the autoscaler adds more")
            problems.append(
                f"--storage {storage} is a local path, but the cluster has {why}: trials on other nodes "
                "cannot write results or checkpoints there; use s3://BUCKET/PATH, gs://BUCKET/PATH or a "
                f"directory on an NFS mount every node shares (or set {SHARED_STORAGE_ENV}=1 if it is shared)")

    # --- does one trial worker fit anywhere? ------------------------------------------------
    where_now = [r for r in facts.nodes if _fits(bundle, r) >= 1]
    types = facts.node_types or {}
    where_later = [n for n, t in types.items() if int(t.get("max_workers", 0)) > 0
                   and _fits(bundle, t.get("resources", {})) >= 1]
    if bundle and not where_now and not where_later:
        gpu = bundle.get("GPU", 0) > 0
        any_gpu = any(r.get("GPU", 0) > 0 for r in facts.nodes) or any(
            t.get("resources", {}).get("GPU", 0) > 0 for t in types.values() if int(t.get("max_workers", 0)) > 0)
        if gpu and not any_gpu:
            what = (f"the spec asks for {bundle['GPU']:g} GPU per trial worker (resources.gpus_per_worker) but no node "
                    "offers a GPU")
            fix = "set resources.gpus_per_worker: 0, or add a GPU worker type to the cluster"
        else:
            what = f"one trial worker needs {_fmt_res(bundle)} (resources.cpus_per_worker/gpus_per_worker) and no node has that much"
            fix = "lower resources.cpus_per_worker / gpus_per_worker, or use bigger nodes"
        seen = ", ".join(sorted({_fmt_res(r) for r in facts.nodes})) or "none"
        if facts.autoscaler and facts.node_types is None:
            warnings.append(f"{what} now (nodes: {seen}); the autoscaler may add one, but its node types "
                            f"could not be read: if it cannot, trials stay pending forever ({fix})")
        else:
            kinds = ", ".join(f"{n} {_fmt_res(t.get('resources', {}))}" for n, t in types.items()
                              if int(t.get("max_workers", 0)) > 0)
            scaler = f"; autoscaler node types: {kinds}" if kinds else (
                "; no autoscaler node type adds one" if facts.autoscaler else "")
            problems.append(f"{what} (nodes: {seen}{scaler}): trials would stay pending forever; {fix}")

    # --- max_concurrent vs autoscaling -------------------------------------------------------
    if max_concurrent and facts.can_add_nodes and bundle:
        now = sum(_fits(bundle, r) for r in facts.nodes) // max(workers, 1)
        more = 0
        if facts.node_types:
            more = sum(int(t.get("max_workers", 0)) * _fits(bundle, t.get("resources", {}))
                       for t in facts.node_types.values()) // max(workers, 1)
        wanted = max_concurrent if num_trials is None else min(max_concurrent, num_trials)
        if now >= wanted and (facts.node_types is None or more > 0) and (num_trials is None or num_trials > now):
            extra = f" (the autoscaler could run up to {now + more} at once)" if facts.node_types else ""
            warnings.append(
                f"search.max_concurrent={max_concurrent}: the current nodes already run {now} trials at once, so "
                f"no trial waits for resources and the autoscaler never adds nodes{extra}; raise "
                "search.max_concurrent or remove it to use the autoscaler")
    return problems, warnings


def preflight(
    storage: str,
    spec_resources: Any,
    address: str | None = None,
    *,
    max_concurrent: int | None = None,
    num_trials: int | None = None,
    facts: ClusterFacts | None = None,
) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for ``ltsearch run --storage STORAGE [--address ADDRESS]``.

    ``spec_resources`` is the spec's ``resources`` (or the whole spec, whose ``search.max_concurrent``
    is then used when ``max_concurrent`` is not given). The cluster facts are gathered from the
    running Ray at ``address`` (``gather_facts``) unless ``facts`` is given. The caller prints the
    problems and exits 2 if there are any, prints the warnings and goes on.
    """
    if facts is None:
        facts = gather_facts(address)
    return check_preflight(storage, spec_resources, facts, max_concurrent=max_concurrent, num_trials=num_trials)


# ---------------------------------------------------------------------- facts from a running Ray


def node_types_from_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"resources": ..., "max_workers": n}}`` of the worker node types of an autoscaling config
    (a launcher YAML, or the config derived from a RayCluster)."""
    head = config.get("head_node_type")
    global_max = int(config.get("max_workers", 0) or 0)
    out = {}
    for name, nt in (config.get("available_node_types") or {}).items():
        if name == head:
            continue
        mx = nt.get("max_workers", global_max)
        out[str(name)] = {"resources": {k: float(v) for k, v in (nt.get("resources") or {}).items()},
                          "max_workers": int(min(mx, global_max) if global_max else mx)}
    return out


def _local_facts() -> ClusterFacts:
    gpus = 0
    try:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    except Exception:  # noqa: BLE001
        gpus = 0
    return ClusterFacts(nodes=[{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}], hosts=1, local=True)


def gather_facts(address: str | None = None) -> ClusterFacts:
    """Read ``ClusterFacts`` from a running Ray (``ray.nodes()`` and the autoscaler's state).

    Uses the current connection when ``ray.is_initialized()``; otherwise connects to ``address``
    and disconnects afterwards. With no address and no connection there is no cluster: the facts
    describe this machine (Ray would start a local single-node instance).
    """
    import ray

    if not ray.is_initialized() and not address:
        return _local_facts()
    connected_here = False
    if not ray.is_initialized():
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        connected_here = True
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive") or n.get("alive")]
        resources = [{k: float(v) for k, v in (n.get("Resources") or {}).items()} for n in nodes]
        hosts = len({n.get("NodeManagerAddress") for n in nodes}) or 1
        autoscaler, node_types, provider = _autoscaler_facts()
        return ClusterFacts(nodes=resources, hosts=hosts, autoscaler=autoscaler, node_types=node_types,
                            provider=provider)
    finally:
        if connected_here:
            ray.shutdown()


def _autoscaler_facts() -> tuple[bool, dict[str, dict[str, Any]] | None, str | None]:
    """(an autoscaler runs, its worker node types or None when unknown, its provider type or None).

    Best effort, never raises."""
    # 1. Autoscaler v2 (and KubeRay) publish their node groups in the GCS.
    try:
        from ray._private.state import state

        cfg = state.get_cluster_config()
        if cfg is not None and list(cfg.node_group_configs):
            types = {}
            for g in cfg.node_group_configs:
                mx = int(g.max_count)
                types[g.name] = {"resources": {k: float(v) for k, v in g.resources.items()},
                                 "max_workers": 10**6 if mx < 0 else mx}
            head_like = [n for n, t in types.items() if t["max_workers"] == 0]
            for n in head_like:
                types.pop(n)
            return True, types, None
    except Exception:  # noqa: BLE001
        pass
    # 2. Autoscaler v1: it writes its status to the GCS; its config file is readable when we run on
    #    the head (ray job submit runs the driver there): ~/ray_bootstrap_config.yaml for `ray up`,
    #    or the monitor's --autoscaling-config argument (fake multi-node, `ray start --head`).
    status = None
    try:
        from ray._private import ray_constants
        from ray.experimental.internal_kv import _internal_kv_get

        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        status = json.loads(raw) if raw else None
    except Exception:  # noqa: BLE001
        status = None
    if not status or "autoscaler_report" not in status:
        return False, {}, None
    candidates = []
    pid = status.get("monitor_pid")
    if pid:
        try:
            args = Path(f"/proc/{int(pid)}/cmdline").read_bytes().split(b"\0")
            for a in args:
                a = a.decode(errors="replace")
                if a.startswith("--autoscaling-config="):
                    candidates.append(os.path.expanduser(a.split("=", 1)[1]))
        except (OSError, ValueError):
            pass
    candidates.append(os.path.expanduser("~/ray_bootstrap_config.yaml"))
    for c in candidates:
        try:
            cfg = yaml.safe_load(Path(c).read_text())
            if isinstance(cfg, dict) and "available_node_types" in cfg:
                return True, node_types_from_config(cfg), (cfg.get("provider") or {}).get("type")
        except (OSError, yaml.YAMLError):
            continue
    return True, None, None
