"""Preflight for ``ltsearch run --address``: refuse, before a sweep starts, what would fail or hang
on a multi-node cluster, and warn about what would keep the autoscaler idle.

The rules live in ``check_preflight(storage, resources, facts)``, a pure function of
``ClusterFacts``; ``gather_facts(address)`` reads those facts from a running Ray (public
``ray.nodes()``, plus the autoscaler's node types, which Ray exposes only through private
internals: all of those probes sit in ``_autoscaler_facts``, which never raises). Mounts come from
psutil (shipped with Ray).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

from ltsearch.cluster.validate import FAKE_PROVIDERS

# File-system types that every node of a cluster can mount at the same path.
NETWORK_FS_TYPES = (
    "nfs", "nfs4", "cifs", "smb3", "smbfs", "lustre", "gpfs", "beegfs", "ceph", "cephfs",
    "glusterfs", "fuse.glusterfs", "fuse.gcsfuse", "fuse.s3fs", "fuse.mountpoint-s3", "fuse.juicefs",
    "fuse.sshfs", "9p", "efs", "fuse.cephfs", "fuse.lustre", "wekafs", "fuse.weka",
)
SHARED_STORAGE_ENV = "LTSEARCH_SHARED_STORAGE"


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
        return self.node_types is None or any(int(t.get("max_workers", 0)) > 0 for t in self.node_types.values())


def trial_bundle(spec_resources: Any) -> tuple[dict[str, float], int]:
    """``({"CPU": c, "GPU": g}, workers)``: what one trial worker needs, and workers per trial.
    Accepts a ``ResourcesSpec``, a whole ``Spec`` (its ``.resources``) or a mapping."""
    res = getattr(spec_resources, "resources", spec_resources)
    get = (res.get if isinstance(res, Mapping) else lambda k, d=None: getattr(res, k, d))
    bundle = {"CPU": float(get("cpus_per_worker", 1.0) or 0.0), "GPU": float(get("gpus_per_worker", 0.0) or 0.0)}
    return {k: v for k, v in bundle.items() if v > 0}, int(get("workers", 1) or 1)


def _fits(bundle: Mapping[str, float], resources: Mapping[str, float]) -> int:
    """How many copies of ``bundle`` fit on a node with ``resources`` (a large number if unbounded)."""
    return min([int(math.floor(float(resources.get(k, 0.0)) / need + 1e-9)) for k, need in bundle.items() if need > 0]
               or [10**9])


def _fmt_res(r: Mapping[str, float]) -> str:
    keep = {k: (int(v) if float(v).is_integer() else v) for k, v in r.items()
            if k in ("CPU", "GPU") or (not k.startswith(("node:", "accelerator_type"))
                                       and k not in ("memory", "object_store_memory"))}
    return "{" + ", ".join(f"{k}: {v}" for k, v in sorted(keep.items())) + "}"


def _system_mounts() -> list[tuple[str, str]]:
    import ray  # noqa: F401 - Ray ships psutil (ray/thirdparty_files) and puts it on sys.path
    import psutil

    return [(p.mountpoint, p.fstype) for p in psutil.disk_partitions(all=True)]


def network_mount_for(path: str | os.PathLike, mounts: Iterable[tuple[str, str]] | None = None) -> str | None:
    """The network-filesystem mount point (NFS, EFS, Filestore, Lustre, gcsfuse, ...) holding
    ``path``; ``mounts`` is ``[(mount_point, fs_type), ...]``, by default this machine's."""
    target = os.path.abspath(os.path.expanduser(str(path)))
    inside = [(p.rstrip("/") or "/", t) for p, t in (_system_mounts() if mounts is None else mounts)
              if target == (p.rstrip("/") or "/") or target.startswith(p.rstrip("/") + "/")]
    if not inside:
        return None
    point, fstype = max(inside, key=lambda m: len(m[0]))
    return point if fstype in NETWORK_FS_TYPES or fstype.split(".")[0] in ("nfs", "nfs4") else None


def check_preflight(storage: str, spec_resources: Any, facts: ClusterFacts, *, max_concurrent: int | None = None,
                    num_trials: int | None = None, mounts: Iterable[tuple[str, str]] | None = None,
                    shared_storage: bool | None = None) -> tuple[list[str], list[str]]:
    """The preflight rules as a pure function: ``(problems, warnings)``; problems stop the run.

    * a local ``storage`` path on a cluster of more than one machine (or one the autoscaler can
      grow) is a problem, unless it lies on a network mount or ``shared_storage`` is true (default:
      env ``LTSEARCH_SHARED_STORAGE=1``);
    * a trial worker (``cpus_per_worker`` + ``gpus_per_worker``) that fits on no node and no
      autoscaler node type is a problem (a warning when the autoscaler's node types are unknown);
    * ``max_concurrent`` trials that already fit on the current nodes, while the autoscaler could
      add nodes for more, is a warning: the autoscaler never sees pending trials.
    """
    problems: list[str] = []
    warnings: list[str] = []
    bundle, workers = trial_bundle(spec_resources)
    if max_concurrent is None:
        max_concurrent = getattr(getattr(spec_resources, "search", None), "max_concurrent", None)
    if shared_storage is None:
        shared_storage = os.environ.get(SHARED_STORAGE_ENV, "").strip().lower() in ("1", "true", "yes")

    storage = str(storage)
    multi = facts.hosts > 1 or (facts.can_add_nodes and facts.provider not in FAKE_PROVIDERS)
    is_uri = "://" in storage and not storage.lower().startswith("file://")
    if not facts.local and multi and not is_uri and not shared_storage:
        local = storage[len("file://"):] if storage.lower().startswith("file://") else storage
        if network_mount_for(local, mounts) is None:
            why = f"{facts.hosts} machines" if facts.hosts > 1 else "one machine now, but the autoscaler adds more"
            problems.append(
                f"--storage {storage} is a local path, but the cluster has {why}: trials on other nodes "
                "cannot write results or checkpoints there; use s3://BUCKET/PATH, gs://BUCKET/PATH or a "
                f"directory on an NFS mount every node shares (or set {SHARED_STORAGE_ENV}=1 if it is shared)")

    types = facts.node_types or {}
    growable = {n: t for n, t in types.items() if int(t.get("max_workers", 0)) > 0}
    fits_now = any(_fits(bundle, r) >= 1 for r in facts.nodes)
    fits_later = any(_fits(bundle, t.get("resources", {})) >= 1 for t in growable.values())
    if bundle and not fits_now and not fits_later:
        any_gpu = any(r.get("GPU", 0) > 0 for r in facts.nodes) or any(
            t.get("resources", {}).get("GPU", 0) > 0 for t in growable.values())
        if bundle.get("GPU", 0) > 0 and not any_gpu:
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
            kinds = ", ".join(f"{n} {_fmt_res(t.get('resources', {}))}" for n, t in growable.items())
            scaler = f"; autoscaler node types: {kinds}" if kinds else (
                "; no autoscaler node type adds one" if facts.autoscaler else "")
            problems.append(f"{what} (nodes: {seen}{scaler}): trials would stay pending forever; {fix}")

    if max_concurrent and facts.can_add_nodes and bundle:
        now = sum(_fits(bundle, r) for r in facts.nodes) // max(workers, 1)
        more = sum(int(t.get("max_workers", 0)) * _fits(bundle, t.get("resources", {}))
                   for t in types.values()) // max(workers, 1)
        wanted = max_concurrent if num_trials is None else min(max_concurrent, num_trials)
        if now >= wanted and (facts.node_types is None or more > 0) and (num_trials is None or num_trials > now):
            extra = f" (the autoscaler could run up to {now + more} at once)" if facts.node_types else ""
            warnings.append(
                f"search.max_concurrent={max_concurrent}: the current nodes already run {now} trials at once, so "
                f"no trial waits for resources and the autoscaler never adds nodes{extra}; raise "
                "search.max_concurrent or remove it to use the autoscaler")
    return problems, warnings


def preflight(storage: str, spec_resources: Any, address: str | None = None, *, max_concurrent: int | None = None,
              num_trials: int | None = None, facts: ClusterFacts | None = None) -> tuple[list[str], list[str]]:
    """``(problems, warnings)`` for ``ltsearch run --storage STORAGE [--address ADDRESS]``; the
    facts are read from the running Ray at ``address`` unless given. The caller prints the problems
    and exits 2 if there are any, prints the warnings and goes on."""
    facts = gather_facts(address) if facts is None else facts
    return check_preflight(storage, spec_resources, facts, max_concurrent=max_concurrent, num_trials=num_trials)


def node_types_from_config(config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """``{name: {"resources": ..., "max_workers": n}}`` of the worker node types of an autoscaling
    config (a launcher YAML, or the config derived from a RayCluster)."""
    head, global_max = config.get("head_node_type"), int(config.get("max_workers", 0) or 0)
    out = {}
    for name, nt in (config.get("available_node_types") or {}).items():
        if name != head:
            mx = nt.get("max_workers", global_max)
            out[str(name)] = {"resources": {k: float(v) for k, v in (nt.get("resources") or {}).items()},
                              "max_workers": int(min(mx, global_max) if global_max else mx)}
    return out


def gather_facts(address: str | None = None) -> ClusterFacts:
    """``ClusterFacts`` of the running Ray: the current connection when ``ray.is_initialized()``,
    else a connection to ``address`` for the occasion. With neither there is no cluster: the facts
    describe this machine (Ray would start a local single-node instance)."""
    import ray

    if not ray.is_initialized() and not address:
        import torch

        gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
        return ClusterFacts(nodes=[{"CPU": float(os.cpu_count() or 1), "GPU": float(gpus)}], hosts=1, local=True)
    connected_here = not ray.is_initialized()
    if connected_here:
        ray.init(address=address, logging_level="ERROR", log_to_driver=False)
    try:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        autoscaler, node_types, provider = _autoscaler_facts()
        return ClusterFacts(nodes=[{k: float(v) for k, v in (n.get("Resources") or {}).items()} for n in nodes],
                            hosts=len({n.get("NodeManagerAddress") for n in nodes}) or 1, autoscaler=autoscaler,
                            node_types=node_types, provider=provider)
    finally:
        if connected_here:
            ray.shutdown()


def _autoscaler_facts() -> tuple[bool, dict[str, dict[str, Any]] | None, str | None]:
    """(an autoscaler runs, its worker node types or None when unknown, its provider type or None).

    Ray has no public API for this; every private probe is here, and any failure means "unknown".
    1. Autoscaler v2 (and KubeRay) publish their node groups in the GCS (``get_cluster_config``).
    2. Autoscaler v1 writes its status to the GCS; its config file is readable on the head (where
       ``ray job submit`` runs the driver): the monitor's ``--autoscaling-config`` argument (fake
       multi-node, ``ray start --head``) or ``~/ray_bootstrap_config.yaml`` (``ray up``).
    """
    import json

    import yaml

    try:
        from ray._private import ray_constants
        from ray._private.state import state
        from ray.experimental.internal_kv import _internal_kv_get

        cfg = state.get_cluster_config()
        if cfg is not None and list(cfg.node_group_configs):
            types = {g.name: {"resources": {k: float(v) for k, v in g.resources.items()},
                              "max_workers": 10**6 if int(g.max_count) < 0 else int(g.max_count)}
                     for g in cfg.node_group_configs}
            return True, {n: t for n, t in types.items() if t["max_workers"] != 0}, None
        raw = _internal_kv_get(ray_constants.DEBUG_AUTOSCALING_STATUS)
        status = json.loads(raw) if raw else {}
        if "autoscaler_report" not in status:
            return False, {}, None
        import psutil

        candidates = []
        if status.get("monitor_pid"):
            args = psutil.Process(int(status["monitor_pid"])).cmdline()
            candidates = [os.path.expanduser(a.split("=", 1)[1]) for a in args if a.startswith("--autoscaling-config=")]
        for c in candidates + [os.path.expanduser("~/ray_bootstrap_config.yaml")]:
            if Path(c).is_file():
                cfg = yaml.safe_load(Path(c).read_text())
                if isinstance(cfg, dict) and "available_node_types" in cfg:
                    return True, node_types_from_config(cfg), (cfg.get("provider") or {}).get("type")
        return True, None, None
    except Exception:  # noqa: BLE001 - private Ray internals moved or a process vanished: unknown
        return False, {}, None
