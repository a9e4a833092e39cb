"""clusters/*.yaml validate offline; broken copies fail with readable messages; preflight rules;
and (slow) a fake multi-node Ray cluster really scales up for work that does not fit its head."""

from __future__ import annotations

import copy
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from ltsearch.cluster import (
    ClusterFacts,
    check_preflight,
    file_kind,
    network_mount_for,
    node_types_from_config,
    trial_bundle,
    validate_file,
    validate_files,
)

ROOT = Path(__file__).resolve().parents[1]
CLUSTERS = ROOT / "clusters"
CLUSTER_YAMLS = sorted(CLUSTERS.glob("*.yaml"))


def _write(tmp_path: Path, name: str, data) -> Path:
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else yaml.safe_dump(data, sort_keys=False))
    return p


def _load(name: str) -> dict:
    return yaml.safe_load((CLUSTERS / name).read_text())


# ================================================================== the shipped cluster files


def test_the_four_cluster_files_exist():
    names = {p.name for p in CLUSTER_YAMLS}
    assert {"aws.yaml", "gcp.yaml", "kuberay.yaml", "local-fake.yaml"} <= names
    assert (CLUSTERS / "Dockerfile").is_file()


@pytest.mark.parametrize("path", CLUSTER_YAMLS, ids=lambda p: p.name)
def test_every_cluster_yaml_validates_offline(path):
    assert validate_file(path) == []


def test_validate_files_maps_every_path():
    out = validate_files([str(p) for p in CLUSTER_YAMLS])
    assert list(out) == [str(p) for p in CLUSTER_YAMLS]
    assert all(v == [] for v in out.values())


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_configs_have_what_the_brief_asks(name):
    cfg = _load(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    workers = {n: t for n, t in types.items() if n != cfg["head_node_type"]}
    assert "GPU" not in head["resources"]
    assert any(t["resources"].get("GPU", 0) >= 1 and t["min_workers"] == 0 and t["max_workers"] > 0
               for t in workers.values())
    assert all("resources" in t for t in types.values())
    assert cfg["idle_timeout_minutes"] > 0
    assert any("ltsearch" in c for c in cfg["setup_commands"])
    text = (CLUSTERS / name).read_text()
    assert "# CHANGE" in text and ("s3://" in text or "gs://" in text)
    node = next(iter(workers.values()))["node_config"]
    spot = node.get("InstanceMarketOptions", {}).get("MarketType") == "spot" or node.get(
        "scheduling", {}).get("preemptible") is True
    assert spot


def test_kuberay_config_autoscales_a_gpu_group():
    from ltsearch.cluster import kuberay_autoscaling_config

    cr = _load("kuberay.yaml")
    assert cr["apiVersion"] == "ray.io/v1" and cr["spec"]["enableInTreeAutoscaling"] is True
    derived = kuberay_autoscaling_config(CLUSTERS / "kuberay.yaml")
    gpu = [t for n, t in derived["available_node_types"].items() if n != "headgroup"]
    assert gpu and gpu[0]["resources"]["GPU"] == 1 and gpu[0]["min_workers"] == 0 and gpu[0]["max_workers"] > 0


def test_local_fake_config_is_complete_for_the_fake_provider():
    cfg = _load("local-fake.yaml")
    assert cfg["provider"]["type"] == "fake_multinode"
    assert cfg["head_node_type"] == "ray.head.default"
    assert file_kind(cfg) == "launcher"


# ================================================================== broken copies


def test_broken_launcher_names_each_key(tmp_path):
    cfg = _load("aws.yaml")
    del cfg["available_node_types"]["gpu_worker"]["resources"]
    cfg["max_workers"] = "many"
    p = _write(tmp_path, "aws.yaml", cfg)
    errors = validate_file(p)
    assert f"{p}: available_node_types.gpu_worker: 'resources' is a required property" in errors
    assert f"{p}: max_workers: 'many' is not of type 'integer'" in errors
    assert len(errors) == 2 and all("\n" not in e for e in errors)


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c.__setitem__("head_node_type", "nope"), "head_node_type: 'nope' is not one of"),
    (lambda c: c["available_node_types"]["gpu_worker"].__setitem__("min_workers", 99),
     "available_node_types.gpu_worker: min_workers (99) is larger than max_workers"),
    (lambda c: c.__setitem__("colour", "blue"), "(top level): unknown key(s) 'colour'"),
    (lambda c: c["available_node_types"]["gpu_worker"]["resources"].__setitem__("GPU", 0.5),
     "available_node_types.gpu_worker.resources.GPU: 0.5 is not of type 'integer'"),
    (lambda c: c.pop("idle_timeout_minutes"), "idle_timeout_minutes: missing"),
    (lambda c: c["provider"].__setitem__("type", "floppy"), "provider.type: 'floppy' is not a provider Ray knows"),
])
def test_broken_launcher_variants(tmp_path, mutate, needle):
    cfg = _load("gcp.yaml")
    mutate(cfg)
    errors = validate_file(_write(tmp_path, "gcp.yaml", cfg))
    assert any(needle in e for e in errors), errors


def test_broken_fake_config_must_be_complete(tmp_path):
    cfg = _load("local-fake.yaml")
    del cfg["cluster_synced_files"]
    errors = validate_file(_write(tmp_path, "fake.yaml", cfg))
    assert len(errors) == 1 and "cluster_synced_files: missing" in errors[0]


@pytest.mark.parametrize("mutate, needle", [
    (lambda c: c["spec"]["workerGroupSpecs"][0].__setitem__("maxReplicas", "many"),
     "spec.workerGroupSpecs[0] (gpu-workers).maxReplicas: 'many' is not a non-negative integer"),
    (lambda c: c["spec"].__setitem__("enableInTreeAutoscaling", False), "spec.enableInTreeAutoscaling: must be true"),
    (lambda c: c["spec"]["headGroupSpec"]["rayStartParams"].__setitem__("num-cpus", 0),
     "spec.headGroupSpec.rayStartParams.num-cpus: 0 must be a string"),
    (lambda c: c.__setitem__("apiVersion", "ray.io/v1alpha1"), "apiVersion: 'ray.io/v1alpha1', expected 'ray.io/v1'"),
    (lambda c: c["spec"]["workerGroupSpecs"][0].pop("minReplicas"),
     "spec.workerGroupSpecs[0] (gpu-workers).minReplicas: missing"),
    (lambda c: (c["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0].pop("resources"),
                c["spec"]["headGroupSpec"]["rayStartParams"].pop("num-cpus")),
     "spec.headGroupSpec: ValueError: Autoscaler failed to detect `CPU` resources"),
])
def test_broken_kuberay_variants(tmp_path, mutate, needle):
    cr = _load("kuberay.yaml")
    mutate(cr)
    p = _write(tmp_path, "kuberay.yaml", cr)
    errors = validate_file(p)
    assert any(e.startswith(f"{p}: ") and needle in e for e in errors), errors


@pytest.mark.parametrize("content, needle", [
    ({"name": "sweep", "search": {}}, "unknown file kind: neither a Ray cluster-launcher config"),
    ("- a\n- b\n", "unknown file kind: the top level is a list"),
    ({"apiVersion": "v1", "kind": "Service"}, "unknown file kind: Service (v1) is not a RayCluster"),
    ("a: [\n", "not valid YAML (line 2)"),
    ("", "the file is empty"),
])
def test_unknown_or_bad_files(tmp_path, content, needle):
    p = _write(tmp_path, "x.yaml", content)
    errors = validate_file(p)
    assert len(errors) == 1 and errors[0].startswith(f"{p}: ") and needle in errors[0], errors


def test_non_yaml_and_missing_files(tmp_path):
    assert "unknown file kind '.toml'" in validate_file(ROOT / "pyproject.toml")[0]
    assert validate_file(tmp_path / "nope.yaml") == [f"{tmp_path / 'nope.yaml'}: no such file"]


def test_kuberay_next_to_other_k8s_objects(tmp_path):
    text = yaml.safe_dump({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "ml"}}) + "---\n" + (
        CLUSTERS / "kuberay.yaml").read_text()
    assert validate_file(_write(tmp_path, "multi.yaml", text)) == []


# ================================================================== preflight rules

GPU_SPEC = {"workers": 1, "cpus_per_worker": 2, "gpus_per_worker": 0.5}
CPU_SPEC = {"workers": 1, "cpus_per_worker": 2, "gpus_per_worker": 0}
HEAD = {"CPU": 4.0}
GPU_NODE = {"CPU": 4.0, "GPU": 1.0}
AWS_TYPES = node_types_from_config(_load("aws.yaml"))


def test_trial_bundle_accepts_mapping_and_objects():
    from types import SimpleNamespace

    assert trial_bundle(GPU_SPEC) == ({"CPU": 2.0, "GPU": 0.5}, 1)
    res = SimpleNamespace(workers=2, cpus_per_worker=1.0, gpus_per_worker=0.0)
    assert trial_bundle(res) == ({"CPU": 1.0}, 2)
    assert trial_bundle(SimpleNamespace(resources=res)) == ({"CPU": 1.0}, 2)


def test_node_types_from_launcher_config():
    assert AWS_TYPES == {"gpu_worker": {"resources": {"CPU": 4.0, "GPU": 1.0}, "max_workers": 8}}


def test_local_storage_on_a_multi_machine_cluster_is_refused():
    facts = ClusterFacts(nodes=[HEAD, GPU_NODE], hosts=2)
    problems, _ = check_preflight("./runs", GPU_SPEC, facts, mounts=[("/", "ext4")], shared_storage=False)
    assert len(problems) == 1
    assert "--storage ./runs is a local path" in problems[0]
    assert "s3://" in problems[0] and "gs://" in problems[0] and "NFS" in problems[0]


def test_local_storage_refused_when_the_autoscaler_can_add_machines():
    facts = ClusterFacts(nodes=[HEAD], hosts=1, autoscaler=True, node_types=AWS_TYPES, provider="aws")
    problems, _ = check_preflight("/home/ubuntu/runs", GPU_SPEC, facts, mounts=[("/", "ext4")], shared_storage=False)
    assert len(problems) == 1 and "the autoscaler adds more" in problems[0]


@pytest.mark.parametrize("storage", ["s3://bucket/runs", "gs://bucket/runs", "/mnt/nfs/runs"])
def test_shared_storage_is_accepted(storage):
    facts = ClusterFacts(nodes=[HEAD, GPU_NODE, GPU_NODE], hosts=3)
    mounts = [("/", "ext4"), ("/mnt/nfs", "nfs4")]
    assert check_preflight(storage, GPU_SPEC, facts, mounts=mounts, shared_storage=False) == ([], [])


def test_declared_shared_storage_and_single_machine_clusters_accept_local_paths(monkeypatch):
    multi = ClusterFacts(nodes=[HEAD, GPU_NODE], hosts=2)
    assert check_preflight("./runs", GPU_SPEC, multi, mounts=[("/", "ext4")], shared_storage=True)[0] == []
    monkeypatch.setenv("LTSEARCH_SHARED_STORAGE", "1")
    assert check_preflight("./runs", GPU_SPEC, multi, mounts=[("/", "ext4")])[0] == []
    monkeypatch.delenv("LTSEARCH_SHARED_STORAGE")
    one = ClusterFacts(nodes=[GPU_NODE], hosts=1)
    assert check_preflight("./runs", GPU_SPEC, one, mounts=[("/", "ext4")]) == ([], [])
    fake = ClusterFacts(nodes=[{"CPU": 1.0}], hosts=1, autoscaler=True,
                        node_types=node_types_from_config(_load("local-fake.yaml")), provider="fake_multinode")
    assert check_preflight("./runs", CPU_SPEC, fake, mounts=[("/", "ext4")])[0] == []


def test_network_mount_detection():
    mounts = [("/", "overlay"), ("/mnt/efs", "nfs4"), ("/mnt/efs/local", "ext4"), ("/data", "fuse.gcsfuse")]
    assert network_mount_for("/mnt/efs/runs", mounts) == "/mnt/efs"
    assert network_mount_for("/mnt/efs/local/runs", mounts) is None
    assert network_mount_for("/data/x", mounts) == "/data"
    assert network_mount_for("/home/me/runs", mounts) is None
    assert network_mount_for("/mnt/efsx/runs", mounts) is None


def test_gpu_spec_without_any_gpu_is_refused():
    facts = ClusterFacts(nodes=[HEAD, {"CPU": 8.0}], hosts=2)
    problems, _ = check_preflight("s3://b/r", GPU_SPEC, facts)
    assert len(problems) == 1
    assert "0.5 GPU per trial worker" in problems[0] and "no node offers a GPU" in problems[0]
    assert "gpus_per_worker: 0" in problems[0]


def test_gpu_spec_on_gpu_cluster_scaled_to_zero_is_fine():
    facts = ClusterFacts(nodes=[{"CPU": 0.0}], hosts=1, autoscaler=True, node_types=AWS_TYPES, provider="aws")
    assert check_preflight("s3://b/r", GPU_SPEC, facts) == ([], [])


def test_gpu_spec_with_autoscaler_of_unknown_types_only_warns():
    facts = ClusterFacts(nodes=[HEAD], hosts=1, autoscaler=True, node_types=None)
    problems, warnings = check_preflight("s3://b/r", GPU_SPEC, facts)
    assert problems == [] and len(warnings) == 1 and "node types could not be read" in warnings[0]


def test_gpu_spec_with_autoscaler_offering_only_cpu_is_refused():
    types = {"cpu_worker": {"resources": {"CPU": 8.0}, "max_workers": 4}}
    facts = ClusterFacts(nodes=[HEAD], hosts=1, autoscaler=True, node_types=types)
    problems, _ = check_preflight("s3://b/r", GPU_SPEC, facts)
    assert len(problems) == 1 and "cpu_worker {CPU: 8}" in problems[0]


def test_worker_bigger_than_any_node_is_refused():
    spec = {"workers": 1, "cpus_per_worker": 16, "gpus_per_worker": 1}
    facts = ClusterFacts(nodes=[HEAD, GPU_NODE], hosts=2)
    problems, _ = check_preflight("s3://b/r", spec, facts)
    assert len(problems) == 1 and "needs {CPU: 16, GPU: 1}" in problems[0]


def test_max_concurrent_that_blocks_the_autoscaler_warns():
    facts = ClusterFacts(nodes=[HEAD, GPU_NODE], hosts=2, autoscaler=True, node_types=AWS_TYPES, provider="aws")
    # GPU_NODE fits two 0.5-GPU trials: max_concurrent=2 never leaves a trial pending.
    problems, warnings = check_preflight("s3://b/r", GPU_SPEC, facts, max_concurrent=2)
    assert problems == [] and len(warnings) == 1
    assert "search.max_concurrent=2" in warnings[0] and "never adds nodes" in warnings[0]
    assert "up to 18" in warnings[0]
    # more concurrency than the current nodes hold: pending trials make the autoscaler scale
    assert check_preflight("s3://b/r", GPU_SPEC, facts, max_concurrent=8) == ([], [])
    # no autoscaler: nothing to warn about
    static = ClusterFacts(nodes=[HEAD, GPU_NODE], hosts=2)
    assert check_preflight("s3://b/r", GPU_SPEC, static, max_concurrent=2) == ([], [])
    # as many trials as fit anyway: nothing to gain from more nodes
    assert check_preflight("s3://b/r", GPU_SPEC, facts, max_concurrent=2, num_trials=2) == ([], [])


def test_max_concurrent_read_from_a_whole_spec():
    from types import SimpleNamespace

    spec = SimpleNamespace(resources=SimpleNamespace(**GPU_SPEC), search=SimpleNamespace(max_concurrent=1))
    facts = ClusterFacts(nodes=[GPU_NODE], hosts=1, autoscaler=True, node_types=AWS_TYPES, provider="aws")
    _, warnings = check_preflight("s3://b/r", spec, facts)
    assert len(warnings) == 1 and "search.max_concurrent=1" in warnings[0]


def test_preflight_without_a_cluster_uses_this_machine():
    from ltsearch.cluster import preflight

    problems, warnings = preflight("./runs", CPU_SPEC, None)
    assert problems == [] and warnings == []


def test_preflight_with_given_facts():
    from ltsearch.cluster import preflight

    facts = ClusterFacts(nodes=[HEAD, {"CPU": 8.0}], hosts=2)
    problems, _ = preflight("s3://b/r", GPU_SPEC, "10.0.0.1:6379", facts=facts)
    assert len(problems) == 1


# ================================================================== fake autoscaling cluster (slow)
#
# ray.cluster_utils.AutoscalingCluster is not used: in Ray 2.60 it reads
# fake_multi_node/example.yaml, which the wheel does not ship, and its start()/shutdown() run
# `ray stop --force`, which would kill every Ray process of this user on the machine (other test
# runs included). FakeAutoscalingCluster below does the same thing (`RAY_FAKE_CLUSTER=1 ray start
# --head --autoscaling-config=...`) on free ports and a private temp dir, and stops only the
# processes it started.


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return s.getsockname()[1]


class FakeAutoscalingCluster:
    def __init__(self, tmp_path: Path, head_resources: dict, worker_node_types: dict, idle_timeout_minutes: float):
        import ray._private.services as services

        self.ip = services.get_node_ip_address()
        self.port = _free_port()
        self.address = f"{self.ip}:{self.port}"
        self.head_cpus = head_resources["CPU"]
        cfg = _load("local-fake.yaml")  # the shipped file is the base config
        cfg["provider"]["gcs_address"] = self.address
        cfg["available_node_types"] = {
            "ray.head.default": {"resources": dict(head_resources), "node_config": {}, "max_workers": 0},
            **copy.deepcopy(worker_node_types),
        }
        cfg["max_workers"] = sum(t["max_workers"] for t in worker_node_types.values())
        cfg["idle_timeout_minutes"] = idle_timeout_minutes
        self.config_path = _write(tmp_path, "fake-cluster.yaml", cfg)
        assert validate_file(self.config_path) == []
        # short private temp dir: unix socket paths must stay < 108 chars, and `ray.init()` calls
        # of other processes must not discover this cluster through /tmp/ray/ray_current_cluster
        self.temp_dir = Path(f"/tmp/ltsr{os.getpid()}")
        self.proc: subprocess.Popen | None = None
        self.log = tmp_path / "ray-start.log"

    def start(self, timeout: float = 90) -> str:
        # Ray 2.60's `ray start` turns on token authentication with a token in ~/.ray/auth_token,
        # shared by every cluster of this user; a driver that looked for a token before the file
        # existed is refused. This throw-away local cluster runs without it.
        env = dict(os.environ, RAY_FAKE_CLUSTER="1", AUTOSCALER_UPDATE_INTERVAL_S="1",
                   RAY_AUTOSCALER_FATESHARE_WORKERS="1", RAY_USAGE_STATS_ENABLED="0", RAY_AUTH_MODE="disabled")
        env.pop("RAY_ADDRESS", None)
        cmd = ["ray", "start", "--head", "--block", f"--port={self.port}", f"--num-cpus={self.head_cpus}",
               f"--autoscaling-config={self.config_path}", f"--temp-dir={self.temp_dir}",
               "--include-dashboard=false", "--disable-usage-stats",
               "--dashboard-agent-listen-port=0"]  # no ray client server: ray[client] is not installed
        self.proc = subprocess.Popen(cmd, env=env, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ray start exited: {self.log.read_text()[-3000:]}")
            if "Ray runtime started" in self.log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        else:
            raise TimeoutError(f"fake cluster did not start: {self.log.read_text()[-3000:]}")
        # the autoscaler's monitor publishes its first status only after it has received load
        # metrics (1-2 s here, longer on a busy CI machine): until then Ray shows no autoscaler
        from ltsearch.cluster import gather_facts

        while time.time() < deadline:
            if gather_facts(self.address).autoscaler:
                return self.address
            time.sleep(0.5)
        raise TimeoutError(f"the fake cluster's autoscaler published no status in {timeout} s")

    def shutdown(self) -> None:
        if self.proc is None:
            return
        import psutil  # ships with Ray (ray/thirdparty_files)

        try:
            mine = psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.Error:
            mine = []
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        for p in mine:  # only processes started by this cluster
            try:
                p.kill()
            except psutil.Error:
                pass
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)  # its own process group (start_new_session)
        except OSError:
            pass
        self.proc = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)


def run_workload(address: str, tmp_path: Path) -> None:
    """A `ltsearch run --smoke` sweep that does not fit on the 1-CPU head."""
    # two trials of 2 CPUs each: the 1-CPU head cannot hold either, so the autoscaler must add workers
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    r = subprocess.run([sys.executable, "-m", "ltsearch", "run", str(ROOT / "search_spaces/quickstart.yaml"), "--smoke",
                        "--address", address, "--storage", str(tmp_path / "runs"), "--no-report",
                        "--set", "resources.cpus_per_worker=2", "--set", "search.num_samples=2"],
                       timeout=240, capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    import pandas as pd

    trials = pd.read_parquet(tmp_path / "runs" / "quickstart_smoke" / "trials")
    assert len(trials) == 2 and set(trials["status"]) == {"ok"}


def _alive(ray) -> list[dict]:
    return [n for n in ray.nodes() if n["Alive"]]


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_fake_cluster_scales_up_for_work_and_back_down(tmp_path):
    import ray

    from ltsearch.cluster import gather_facts, preflight

    cluster = FakeAutoscalingCluster(
        tmp_path, head_resources={"CPU": 1},
        worker_node_types={"cpu_worker": {"resources": {"CPU": 2}, "node_config": {}, "min_workers": 0,
                                          "max_workers": 2}},
        idle_timeout_minutes=0.1)
    address = cluster.start()
    try:
        facts = gather_facts(address)  # connects, reads, disconnects
        assert not ray.is_initialized()
        assert facts.nodes == [facts.nodes[0]] and facts.nodes[0]["CPU"] == 1 and facts.hosts == 1
        assert facts.autoscaler and facts.provider == "fake_multinode"
        assert facts.node_types == {"cpu_worker": {"resources": {"CPU": 2.0}, "max_workers": 2}}
        ray.init(address=address, log_to_driver=False)
        assert [n["Resources"]["CPU"] for n in _alive(ray)] == [1.0]  # the head only
        assert gather_facts(address) == facts  # now through the open connection
        problems, _ = preflight(str(tmp_path / "runs"), {"workers": 1, "cpus_per_worker": 2}, address)
        assert problems == []  # fake nodes share this machine's disk
        problems, _ = preflight("s3://b/r", {"workers": 1, "cpus_per_worker": 2, "gpus_per_worker": 1}, address)
        assert len(problems) == 1 and "GPU" in problems[0]

        peak = [1]
        done = threading.Event()

        def watch():
            while not done.is_set():
                peak[0] = max(peak[0], len(_alive(ray)))
                time.sleep(0.5)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        try:
            run_workload(address, tmp_path)  # finishes only if workers were added
        finally:
            done.set()
            watcher.join()
        assert peak[0] >= 2, "the autoscaler never added a worker node"

        # Scale-down: idle_timeout_minutes=0.1 (6 s) plus a few autoscaler rounds.
        deadline = time.time() + 90
        while time.time() < deadline and len(_alive(ray)) > 1:
            time.sleep(1)
        assert len(_alive(ray)) == 1, "idle worker nodes were not removed"
    finally:
        ray.shutdown()
        cluster.shutdown()
