import os

import pytest

os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
os.environ.setdefault("TUNE_DISABLE_AUTO_CALLBACK_LOGGERS", "1")


@pytest.fixture(autouse=True)
def _single_thread():
    import torch

    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def tiny_experiment(**overrides):
    """An ExperimentSpec dict for fast tests: synthetic data, mlp, 2 epochs."""
    exp = {
        "data": {"dataset": "synthetic", "imbalance": 10, "splits": {"many": 30, "few": 10}},
        "model": {"arch": "mlp", "options": {"hidden": 32}},
        "method": {"name": "single", "loss": "ce"},
        "optim": {"lr": 0.05, "epochs": 2, "batch_size": 32, "warmup": 0, "milestones": []},
        "device": "cpu",
    }
    for key, value in overrides.items():
        node = exp
        parts = key.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = value
    return exp


def count_stage1_steps(monkeypatch) -> list[int]:
    """A counter of two-stage methods' stage-1 training steps (``[n]``), to see a stage-1 cache hit."""
    from ltsearch.methods.two_stage import TwoStage

    calls = [0]
    original = TwoStage.stage1_step

    def counted(self, batch, loss_fn):
        calls[0] += 1
        return original(self, batch, loss_fn)

    monkeypatch.setattr(TwoStage, "stage1_step", counted)
    return calls
