"""Parameter figures keep apart what they would mix: one curve per categorical combination, and a
contour over two numeric parameters (figure data checked against values computed here)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from ltsearch.report import figures as F
from ltsearch.report import html as H
from ltsearch.report import params as P


def frame(rows):
    df = pd.DataFrame(rows)
    df["status"] = df.get("status", "ok")
    df["method"] = "single"
    df["loss"] = df["method.loss"]
    return df


def loss_lr_trials():
    """CE improves with lr, focal gets worse: pooled over the loss, the curve would be flat (66, 66)."""
    val = {("ce", 0.01): 50, ("ce", 0.1): 60, ("focal", 0.01): 80, ("focal", 0.1): 70}
    return frame([{"method.loss": loss, "optim.lr": lr, "seed": s, "val_acc": v + 2 * s, "test_acc": v + 2 * s - 1}
                  for (loss, lr), v in val.items() for s in (0, 1)])


def test_numeric_curve_is_split_by_the_categorical_parameter():
    trials = loss_lr_trials()
    assert P.split_by(trials, "optim.lr") == ["method.loss"]
    d = P.param_curves(trials, "optim.lr", "val_acc")
    got = {(g, v): m for g, v, m in zip(d["group"], d["value"], d["mean"])}
    assert got == {("loss=ce", 0.01): 51.0, ("loss=ce", 0.1): 61.0, ("loss=focal", 0.01): 81.0, ("loss=focal", 0.1): 71.0}
    fig = F.param_curve(trials, "optim.lr")
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"val · loss=ce", "val · loss=focal", "test · loss=ce", "test · loss=focal"}  # nothing pooled
    assert list(lines["val · loss=ce"].y) == [51.0, 61.0] and list(lines["val · loss=focal"].y) == [81.0, 71.0]
    assert list(lines["test · loss=focal"].y) == [80.0, 70.0] and lines["test · loss=focal"].line.dash == "dash"
    assert lines["val · loss=ce"].line.color == lines["test · loss=ce"].line.color != lines["val · loss=focal"].line.color
    band = next(t for t in fig.data if t.name == "val ± std · loss=ce")
    assert list(band.y)[:2] == pytest.approx([51 + math.sqrt(2), 61 + math.sqrt(2)])  # std of (v, v + 2) = √2


def test_conditional_parameter_is_not_split_by_its_condition():
    trials = frame([{"method.loss": "ldam", "method.max_m": m, "seed": 0, "val_acc": 60 + 10 * m, "test_acc": 60.0}
                    for m in (0.3, 0.5)] + [{"method.loss": "ce", "method.max_m": None, "seed": 0, "val_acc": 50.0,
                                             "test_acc": 50.0}])
    assert P.split_by(trials, "method.max_m") == []  # where max_m is set, the loss is always ldam
    fig = F.param_curve(trials, "method.max_m")
    assert list(next(t for t in fig.data if t.name == "val").y) == [63.0, 65.0]


def plane(lr, gamma, loss):
    return 100 + 10 * math.log10(lr) + 3 * gamma + (5 if loss == "focal" else 0)


def test_contour_of_two_numeric_parameters_interpolates_between_trials():
    """val = 100 + 10·log10(lr) + 3·gamma (+5 for focal) is linear in (log10 lr, gamma): linear
    interpolation on the log axis reproduces it at every grid point, per loss."""
    rows = [{"method.loss": loss, "optim.lr": lr, "loss.gamma": g, "seed": s,
             "val_acc": plane(lr, g, loss) + (0.5 if s else -0.5), "test_acc": 0.0}
            for loss in ("ce", "focal") for lr in (0.001, 0.01, 0.1) for g in (0.0, 1.0, 2.0) for s in (0, 1)]
    trials = frame(rows)
    assert P.numeric_pairs(trials) == [("loss.gamma", "optim.lr")]
    panels = P.contour(trials, "optim.lr", "loss.gamma", size=9)
    assert [p["group"] for p in panels] == ["loss=ce", "loss=focal"]
    for p in panels:
        loss = p["group"].split("=")[1]
        assert p["log_x"] and not p["log_y"] and p["x"][0] == pytest.approx(0.001) and p["x"][-1] == pytest.approx(0.1)
        for j, g in enumerate(p["y"]):
            for i, lr in enumerate(p["x"]):
                assert p["z"][j][i] == pytest.approx(plane(lr, g, loss), abs=1e-9)
        pts = p["points"]
        assert len(pts) == 9 and (pts["n"] == 2).all()  # the mean over the two seeds is the plane itself
        assert list(pts["val_acc"]) == pytest.approx([plane(a, b, loss) for a, b in zip(pts["optim.lr"], pts["loss.gamma"])])
    fig = F.contour(trials, "optim.lr", "loss.gamma")
    cont = [t for t in fig.data if t.type == "contour"]
    assert len(cont) == 2 and fig.layout.xaxis.type == "log" and fig.layout.yaxis.type == "linear"
    assert np.nanmax(np.array(cont[1].z, dtype=float)) == pytest.approx(plane(0.1, 2.0, "focal"))
    page = dict(H.param_sections(trials))
    assert "loss.gamma × optim.lr" in page and "contour" in page["loss.gamma × optim.lr"]


def test_contour_needs_points_that_span_a_plane():
    trials = frame([{"method.loss": "ce", "optim.lr": lr, "loss.gamma": 2 * lr, "seed": 0, "val_acc": 50 + lr,
                     "test_acc": 0.0} for lr in (0.1, 0.2, 0.3)])  # collinear
    assert P.contour(trials, "optim.lr", "loss.gamma") == [] and F.contour(trials, "optim.lr", "loss.gamma") is None
