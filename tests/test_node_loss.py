"""A lost worker node is survivable: a multi-node Ray cluster on this machine
(``ray.cluster_utils.Cluster``: nodes added and removed in-process, on private ports, touching no
other Ray), a trial running on a worker node, that node killed mid-trial; with
``search.max_failures`` Tune restarts the trial on a new node, which resumes from the trial's own
checkpoint (``checkpoints/<trial_id>.pt``) instead of starting over. The sweep ends with exactly
one ok row, a complete epoch table without duplicates, and ``resumed_from`` > 0.
"""

from __future__ import annotations

import threading
import time

import pandas as pd
import pytest

from ltsearch.spec import validate_spec_dict

pytestmark = pytest.mark.slow

EPOCHS = 40


def test_trial_on_a_removed_node_resumes_from_its_checkpoint(tmp_path, monkeypatch):
    import ray
    from ray.cluster_utils import Cluster

    from ltsearch.tune.search import run_sweep

    monkeypatch.setenv("RAY_CHDIR_TO_TRIAL_DIR", "0")
    spec = validate_spec_dict({
        "name": "node_loss",
        "experiment": {"data": {"dataset": "digits", "imbalance": 10}, "model": {"arch": "small_cnn", "options": {"width": 8}},
                       "method": {"name": "single"}, "device": "cpu",
                       "optim": {"lr": 0.05, "epochs": EPOCHS, "batch_size": 64, "warmup": 0, "milestones": []}},
        "search": {"max_failures": 3, "checkpoint_every": 1},
        "resources": {"cpus_per_worker": 1},
    })
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no trial
    worker = cluster.add_node(num_cpus=1)
    ray.init(address=cluster.address, logging_level="ERROR", log_to_driver=False)
    run_dir = tmp_path / "runs" / "node_loss"
    errors: list[BaseException] = []

    def sweep() -> None:
        try:
            run_sweep(spec, storage=str(tmp_path / "runs"))
        except BaseException as err:  # noqa: BLE001 - re-raised in the test thread
            errors.append(err)

    thread = threading.Thread(target=sweep)
    try:
        thread.start()
        deadline = time.time() + 240
        while time.time() < deadline and not list((run_dir / "checkpoints").glob("*.pt")):
            time.sleep(0.05)
        assert list((run_dir / "checkpoints").glob("*.pt")), "the trial never wrote a checkpoint"
        cluster.remove_node(worker, allow_graceful=False)  # the node (and the trial on it) is gone
        cluster.add_node(num_cpus=1)  # a replacement node, as an autoscaler would bring up
        thread.join(timeout=300)
        assert not thread.is_alive(), "the sweep did not finish after the node was replaced"
    finally:
        ray.shutdown()
        cluster.shutdown()
    assert not errors, errors
    trials = pd.read_parquet(run_dir / "trials")
    epochs = pd.read_parquet(run_dir / "epochs")
    assert len(trials) == 1 and trials.iloc[0]["status"] == "ok"
    assert 0 < trials.iloc[0]["resumed_from"] < EPOCHS  # resumed mid-trial, not from scratch
    assert sorted(epochs["epoch"]) == list(range(1, EPOCHS + 1))  # every epoch once
