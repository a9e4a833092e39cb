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


# ---------------------------------------------------------------- axes, labels, boundaries


def test_log_axis_from_the_spec_else_from_the_values():
    """loguniform in spec.yaml: log even over a small span; uniform: linear; a grid or no spec:
    log only for positive values spanning more than a decade."""
    narrow = pd.Series([0.04, 0.05, 0.06])
    assert P.log_axis(narrow, {"loguniform": [0.04, 0.06]}) and not P.log_axis(narrow)
    assert not P.log_axis(pd.Series([0.001, 1.0]), {"uniform": [0.001, 1.0]})
    assert P.log_axis(pd.Series([0.01, 0.2])) and P.log_axis(pd.Series([0.01, 0.05]), {"grid": [0.01, 0.05]}) is False
    assert not P.log_axis(pd.Series([0.01, 0.1]))  # exactly one decade: not more than one
    assert not P.log_axis(pd.Series([0.0, 0.5, 10.0]))  # a zero: no log axis
    spec = "name: s\nsearch:\n  space:\n    optim.lr: {loguniform: [0.01, 0.2]}\n    method.loss: {choice: [ce, focal]}\n"
    assert P.search_space(spec) == {"optim.lr": {"loguniform": [0.01, 0.2]}, "method.loss": {"choice": ["ce", "focal"]}}
    assert P.search_space("") == {} and P.search_space(": not yaml: [") == {}
    trials = loss_lr_trials()  # lr 0.01 and 0.1: one decade, linear unless the spec says loguniform
    assert F.param_curve(trials, "optim.lr").layout.xaxis.type != "log"
    assert F.param_curve(trials, "optim.lr", P.search_space(spec)).layout.xaxis.type == "log"
    sections = dict(H.param_sections(trials, spec))
    assert '"type":"log"' in sections["Parameter optim.lr"]
    assert '"type":"log"' not in dict(H.param_sections(trials))["Parameter optim.lr"]


def per_class_run(many=50, few=15):
    counts = [100, 80, 60, 40, 20, 10, 5]
    split = ["many" if c > many else "few" if c < few else "medium" for c in counts]
    trials = pd.DataFrame([{"trial_id": t, "status": "ok", "method": "single", "loss": loss, "seed": 0,
                            "val_acc": v, "test_acc": v, "split_many": many, "split_few": few}
                           for t, loss, v in (("a", "ce", 60.0), ("b", "focal", 70.0))])
    pc = pd.DataFrame([{"trial_id": t, "class_index": i, "train_count": c, "split": s, "test_acc": 50.0 + i,
                        "val_acc": 50.0, "weight_norm": 1.0} for t in ("a", "b")
                       for i, (c, s) in enumerate(zip(counts, split))])
    return trials, pc


def test_per_class_boundaries_are_the_runs_thresholds():
    trials, pc = per_class_run(50, 15)
    assert F.group_edges(trials, ["a", "b"]) == [(15.0, "few < 15"), (50.0, "many > 50")]
    fig = F.per_class(trials, pc)
    assert sorted(s.x0 for s in fig.layout.shapes) == [15, 50]  # never the literature's 20 / 100
    marks = {a.text: a.x for a in fig.layout.annotations}  # on the log axis at log10 of the count
    assert marks == pytest.approx({"few < 15": math.log10(15), "many > 50": math.log10(50)})
    old = trials.drop(columns=["split_many", "split_few"])  # rows written before the thresholds were recorded
    assert F.group_edges(old, ["a"]) == [] and not F.per_class(old, pc).layout.shapes


def test_group_bar_labels_have_room_and_the_legend_is_clear_of_the_axis():
    trials, _ = per_class_run()
    trials = trials.assign(test_many=[90.0, 95.0], test_medium=[70.0, 72.0], test_few=[math.nan, 40.0])
    fig = F.group_bars(trials)
    assert all(b.cliponaxis is False and b.textposition == "outside" for b in fig.data)
    assert fig.layout.yaxis.range[1] >= 1.1 * 95.0  # above the tallest bar, for its label
    assert fig.layout.legend.y >= 1.0 and fig.layout.legend.yanchor == "bottom"  # above the plot
    assert fig.layout.xaxis.automargin is True and fig.layout.margin.t >= 90


def test_parcoords_left_margin_fits_the_first_axis_labels():
    trials = loss_lr_trials()
    trials["method.loss"] = trials["method.loss"].replace({"ce": "balanced_softmax"})
    fig = F.parcoords(trials)
    assert fig.data[0].dimensions[0].ticktext[0] == "balanced_softmax"
    assert fig.layout.margin.l >= F.LABEL_PX * len("balanced_softmax")


def test_learning_curves_leave_out_a_schedule_that_is_zero_throughout():
    trials = loss_lr_trials().assign(trial_id=lambda d: [f"t{i}" for i in range(len(d))])
    epochs = pd.DataFrame([{"trial_id": t, "epoch": e, "train_loss": 1.0 / e, "val_acc": 10.0 * e,
                            "drw_on": float(e >= 2), "drs_on": 0.0} for t in trials["trial_id"] for e in (1, 2, 3)])
    fig = F.learning_curves(trials, epochs)
    titles = [a.text for a in fig.layout.annotations]
    assert titles == ["val_acc", "train_loss", "drw_on"]  # drs_on: 0 in every epoch of every trial
    epochs.loc[epochs.index[0], "drs_on"] = 1.0  # on once somewhere: drawn
    assert "drs_on" in [a.text for a in F.learning_curves(trials, epochs).layout.annotations]


# ---------------------------------------------------------------- compare: parameter table and figure


def two_runs():
    """Run A: 13 learning rates per loss (binned); run B: 0.001 and 0.1 only (two of A's values).
    CE improves with lr, focal gets worse: averaged over the losses, both would look flat."""
    lrs = list(np.logspace(-3, -1, 13))
    def val(loss, lr):
        return 60 + 10 * math.log10(lr) * (1 if loss == "ce" else -1)
    a = frame([{"method.loss": loss, "optim.lr": lr, "seed": 0, "val_acc": val(loss, lr), "test_acc": 0.0}
               for loss in ("ce", "focal") for lr in lrs])
    b = frame([{"method.loss": loss, "optim.lr": lr, "seed": s, "val_acc": val(loss, lr) + s, "test_acc": 0.0}
               for loss in ("ce", "focal") for lr in (0.001, 0.1) for s in (0, 1)])
    for t in (a, b):
        t[["test_many", "test_medium", "test_few"]] = 0.0
        t["trial_id"] = [f"t{i}" for i in range(len(t))]
    return {"A": a, "B": b}, val


def test_compare_parameter_table_splits_by_loss_and_bins_both_runs_alike():
    from ltsearch.report import compare

    runs, val = two_runs()
    d = P.shared_curves(runs, "optim.lr", "val_acc")
    assert set(d["group"]) == {"loss=ce", "loss=focal"}
    keys = {r: set(zip(g["group"], g["value"])) for r, g in d.groupby("run")}
    assert keys["B"] <= keys["A"] and len(keys["A"]) < 26  # A binned; B's values fall in A's bins
    for group, sign in (("loss=ce", 1), ("loss=focal", -1)):
        b = d[(d["run"] == "B") & (d["group"] == group)].sort_values("value")
        # B alone in its bins: its exact means (over seeds 0, 1), never averaged with the other loss
        assert list(b["mean"]) == pytest.approx([60 - 30 * sign + 0.5, 60 - 10 * sign + 0.5])
    table = compare.param_table(runs, "optim.lr")
    assert list(table.columns) == ["other parameters", "optim.lr", "A", "B"]
    for group, rows in table.groupby("other parameters", sort=False):
        values = [float(v) for v in rows["optim.lr"]]
        assert values == sorted(values)  # rows in parameter order, not as strings
        assert rows.iloc[0]["B"] != "—" and rows.iloc[-1]["B"] != "—"  # both runs tried 0.001 and 0.1
        assert (rows["A"] != "—").all()
    md = compare.markdown(runs)
    assert "| loss=focal |" in md
    fig = F.compare_param_curves(runs, "optim.lr")
    lines = {t.name: t for t in fig.data if t.mode == "lines+markers"}
    assert set(lines) == {"A · loss=ce", "A · loss=focal", "B · loss=ce", "B · loss=focal"}
    assert set(lines["B · loss=ce"].x) <= set(lines["A · loss=ce"].x)  # the same bin centres
    assert fig.layout.xaxis.type == "log"  # two decades
    assert lines["A · loss=ce"].line.color != lines["B · loss=ce"].line.color
    assert lines["A · loss=ce"].line.dash != lines["A · loss=focal"].line.dash


def test_compare_csv_keeps_parameters_at_full_precision():
    from ltsearch.report import tables

    lr = 0.012345678901234
    runs = {"r": frame([{"method.loss": "ce", "optim.lr": v, "seed": 0, "val_acc": 70.123456, "test_acc": 69.0,
                         "trial_id": f"t{i}", "test_many": 1.0, "test_medium": 1.0, "test_few": 1.0}
                        for i, v in enumerate((lr, 0.1))])}
    text = tables.csv(runs)
    assert str(lr) in text and "70.1235" in text and "70.123456" not in text  # metrics still to 4 decimals
