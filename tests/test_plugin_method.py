"""A new method is one file: this test file defines a toy two-stage method with its own schedule
value and loss and nothing else in ltsearch knows about it. The spec names this file in
``plugins:``; ``ltsearch train``, ``--smoke`` and a Tune sweep (whose trial processes import the
file themselves) then get its epochs, ASHA grace period, smoke scaling and Parquet columns from the
method's own declarations (``plan()`` and the units of its parameters), not from naming conventions:
its parameters are deliberately not called ``*_epoch`` / ``*_epochs``.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml
from pydantic import BaseModel, ConfigDict, Field

from ltsearch.methods.base import Method, MethodContext, Plan, Stage
from ltsearch.registry import METHODS
from ltsearch.spec import OptimSpec, epochs_field, switch_field


class ToyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")
    warm: int = epochs_field(2)                  # length of stage "warm"
    sharpen_from: int | None = switch_field(3, ge=0)  # global epoch from which logits are sharpened
    temperature: float = Field(2.0, gt=0)


@METHODS.register("toy_two_stage")
class ToyTwoStage(Method):
    """Stage ``warm`` (``warm`` epochs) then stage ``tune`` (``optim.epochs``), both plain CE on
    logits divided by a temperature that falls from ``temperature`` to 1 over stage ``tune``; from
    the global epoch ``sharpen_from`` on, the logits are also doubled."""

    Params = ToyParams
    name = "toy_two_stage"

    @classmethod
    def plan(cls, params: ToyParams, optim: OptimSpec) -> Plan:
        return Plan((Stage("warm", params.warm, optim), Stage("tune", optim.epochs, optim)),
                    switches=(params.warm, params.sharpen_from),  # an unset switch (None) is dropped
                    schedules=("toy_temp",), loss="toy_ce")

    def __init__(self, params: ToyParams, ctx: MethodContext):
        super().__init__(params, ctx)
        self.net = ctx.build_model("linear")
        self.stage, self.temp, self.scale = "warm", 1.0, 1.0

    def begin_stage(self, stage: Stage, train) -> None:
        self.stage = stage.name

    def on_epoch_start(self, epoch: int, progress: float) -> None:
        p = self.params
        self.temp = 1.0 if self.stage == "warm" else p.temperature - (p.temperature - 1.0) * progress
        global_epoch = epoch + (p.warm if self.stage == "tune" else 0)
        self.scale = 2.0 if p.sharpen_from is not None and global_epoch >= p.sharpen_from else 1.0

    def schedule_values(self, progress: float) -> dict[str, float]:
        return {"toy_temp": self.temp}

    def training_step(self, batch, progress):
        x, y = batch["main"]["weak"], batch["main"]["y"]
        return {"loss": F.cross_entropy(self.scale * self.net(x) / self.temp, y)}

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def write_spec(tmp_path: Path, **search) -> Path:
    spec = {
        "name": "toy", "plugins": [str(Path(__file__).resolve())],
        "experiment": {
            "data": {"dataset": "synthetic", "imbalance": 10, "splits": {"many": 30, "few": 10}},
            "model": {"arch": "mlp", "options": {"hidden": 16}},
            "method": {"name": "toy_two_stage", "warm": 2, "sharpen_from": 3},
            "optim": {"lr": 0.05, "epochs": 3, "batch_size": 32, "warmup": 0, "milestones": []}, "device": "cpu",
        },
        "search": {"space": {"method.temperature": {"grid": [2.0, 4.0]}}, **search},
        "resources": {"cpus_per_worker": 1},
    }
    path = tmp_path / "toy.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_plan_drives_epochs_grace_period_and_smoke(tmp_path):
    from ltsearch.smoke import smoke_spec
    from ltsearch.spec import load_spec
    from ltsearch.trial import planned_epochs
    from ltsearch.tune.search import grace_period

    spec = load_spec(write_spec(tmp_path, scheduler="asha"))
    assert planned_epochs(spec.experiment) == 2 + 3
    assert grace_period(spec) == 3 + 1  # just after the last declared switch (sharpen_from)
    off = load_spec(write_spec(tmp_path, scheduler="asha"), ["experiment.method.sharpen_from=null"])
    assert grace_period(off) == 2 + 1  # sharpen_from: null is no switch; the stage change at 2 remains
    big = load_spec(write_spec(tmp_path), ["experiment.optim.epochs=200", "experiment.method.warm=40",
                                           "experiment.method.sharpen_from=150"])
    small = smoke_spec(big).experiment
    assert small.optim.epochs == 2
    # warm 40 of 200 → 0.4 epochs: a stage length keeps one; the switch at 150 stays inside the 2 epochs
    assert small.method.params() == {"warm": 1, "sharpen_from": 1}


def test_train_writes_the_declared_columns(tmp_path):
    from typer.testing import CliRunner

    from ltsearch.cli import app

    r = CliRunner().invoke(app, ["train", str(write_spec(tmp_path)), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 0, r.output
    run = tmp_path / "runs" / "toy"
    trials, epochs = pd.read_parquet(run / "trials"), pd.read_parquet(run / "epochs").sort_values("epoch")
    assert trials.iloc[0]["loss"] == "toy_ce" and trials.iloc[0]["epochs"] == 5
    assert epochs["stage"].tolist() == ["warm"] * 2 + ["tune"] * 3
    assert epochs["toy_temp"].tolist() == pytest.approx([1.0, 1.0, 2.0, 2 - 1 / 3, 2 - 2 / 3])


@pytest.mark.slow
def test_a_tune_sweep_loads_the_plugin_in_its_trials(tmp_path):
    from ltsearch.spec import load_spec
    from ltsearch.tune.search import run_sweep

    spec = load_spec(write_spec(tmp_path, scheduler="asha"))  # grace period from the plan: 4
    run_sweep(spec, storage=str(tmp_path / "runs"), num_cpus=2)
    run = tmp_path / "runs" / "toy"
    trials, epochs = pd.read_parquet(run / "trials"), pd.read_parquet(run / "epochs")
    assert sorted(trials["method.temperature"]) == [2.0, 4.0] and "ok" in set(trials["status"])
    assert set(trials["loss"]) == {"toy_ce"} and (trials["epochs"] == 5).all()
    done = epochs.groupby("trial_id").size()
    assert (done >= 4).all()  # ASHA stops nothing before the epoch after the declared switch
    assert (done[trials.loc[trials["status"] == "ok", "trial_id"]] == 5).all()
    first_tune = epochs[epochs["stage"] == "tune"].groupby("trial_id")["toy_temp"].max()
    assert sorted(first_tune) == [2.0, 4.0]  # the searched temperature reached each trial's method


def test_a_method_with_the_old_stage_hooks_is_refused_at_definition(tmp_path):
    """Overriding ``stages()`` without ``plan()`` would train one stage silently: the plugin fails to
    load with one line naming the fix."""
    from ltsearch.errors import UserError
    from ltsearch.validation import load_plugins

    old = tmp_path / "old_style.py"
    old.write_text("from ltsearch.methods.base import Method\n\n"
                   "class OldStyle(Method):\n    def stages(self):\n        return ()\n")
    with pytest.raises(UserError, match=r"overrides stages\(\): declare stages and switches in the classmethod plan"):
        load_plugins([str(old)])
