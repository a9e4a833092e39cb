"""The GPU check and the training loop run where only torch is installed: a subprocess that refuses
to import Ray, Optuna and plotly imports the loop and the GPU check, trains a tiny trial, and
(slow) runs the whole GPU check's CPU parts at toy sizes. Values are checked for being finite and
positive, never against times."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Prepended to the child's code: any import of these packages fails, as on the GPU machine.
BLOCKER = """
import importlib.abc, sys
class _Refuse(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("ray", "optuna", "plotly"):
            raise ImportError(f"{name} is not installed here (blocked by the test)")
        return None
sys.meta_path.insert(0, _Refuse())
"""


def run_without_ray(code: str, timeout: float = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-c", BLOCKER + code], capture_output=True, text=True, timeout=timeout,
                          env=env, cwd=ROOT)


def test_loop_and_gpu_check_import_and_train_without_ray_optuna_plotly():
    res = run_without_ray("""
import torch
torch.set_num_threads(1)
import ltsearch.train.loop, ltsearch.trial, ltsearch.bench.gpu, ltsearch.bench.gpu_check
from ltsearch.spec import ExperimentSpec
from ltsearch.train.loop import run_trial
exp = ExperimentSpec.model_validate({
    "data": {"dataset": "synthetic", "imbalance": 5, "max_per_class": 20, "val_per_class": 4,
             "options": {"size": 8, "channels": 1, "test_per_class": 4}},
    "model": {"arch": "small_cnn", "options": {"width": 8}}, "method": {"name": "sdnhl"},
    "optim": {"epochs": 2, "batch_size": 16, "warmup": 0, "milestones": []}, "device": "cpu"})
out = run_trial(exp, stage_cache=False)
import json
print(json.dumps({"epochs": len(out.epochs), "val_acc": out.summary["val_acc"],
                  "loaded": sorted({m.split(".")[0] for m in sys.modules} & {"ray", "optuna", "plotly"})}))
""")
    assert res.returncode == 0, res.stderr[-3000:]
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out["epochs"] == 2 and 0 <= out["val_acc"] <= 100 and out["loaded"] == []


def test_the_blocker_really_blocks():
    res = run_without_ray("import ray")
    assert res.returncode != 0 and "blocked by the test" in res.stderr


def _finite_positive(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_gpu_check_cpu_parts_print_one_json_object_without_ray():
    """``python -m ltsearch.bench.gpu_check --device cpu --smoke``: every section runs (compile and
    bf16 are CUDA-only variants and skipped), one JSON object on stdout."""
    res = run_without_ray("from ltsearch.bench.gpu_check import main; main(['--device', 'cpu', '--smoke'])", 900)
    assert res.returncode == 0, res.stderr[-3000:]
    lines = [ln for ln in res.stdout.splitlines() if ln.strip()]
    assert len(lines) == 1, res.stdout[-2000:]
    out = json.loads(lines[0])
    for section in ("step", "data_path", "projection", "methods", "packed"):
        assert "error" not in out[section], (section, out[section])
    assert set(out["step"]) - {"seconds"} == {"fp32", "fp32_channels_last"}
    assert all(_finite_positive(v) for v in out["step"].values())
    dp = out["data_path"]
    assert _finite_positive(dp["ratio"]) and dp["ratio"] == pytest.approx(
        dp["ltsearch"]["images_per_s"] / dp["dataloader"]["images_per_s"])
    pr = out["projection"]
    assert pr["projected_200_epoch_s"] == pytest.approx(200 * pr["epoch_s"] + pr["fixed_s"])
    assert _finite_positive(out["methods"]["sdnhl_vs_ce"]) and _finite_positive(out["methods"]["bbn_vs_ce"])
    assert out["packed"]["packed_processes"] == 2 and _finite_positive(out["packed"]["packed_speedup"])
    assert set(out["goals"]) == {"bf16_channels_last_images_per_s", "projected_200_epoch_s", "packed_speedup",
                                 "data_path_ratio"}
    fm = out["fashion_mnist"]
    if not Path("/usr/share/datasets/fashion-mnist").is_dir():
        assert "fashion" in fm["error"].lower()
        pytest.skip("Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)")
    assert "error" not in fm, fm
    p = fm["cpu_test_acc"] / 100  # the tolerance, recomputed: binomial SE of a difference, seed spread
    se = 100 * math.sqrt(2 * p * (1 - p) / fm["test_images"])
    assert fm["tolerance"] == pytest.approx(max(2 * abs(fm["cpu_test_acc"] - fm["cpu_seed1_test_acc"]), 3 * se))
    assert fm["within_noise"] == (abs(fm["device_test_acc"] - fm["cpu_test_acc"]) <= fm["tolerance"])
    assert fm["test_images"] == 10000
