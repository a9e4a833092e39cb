"""Reports: figure data checked against the trial rows, HTML/markdown output, a headless-browser render.

The runs are fake but valid: written with ``ResultStore.write_trial`` exactly as a sweep would.
"""

from __future__ import annotations

import math
import re
import shutil
import subprocess
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from ltsearch.report import compare, figures as F, html as H, summary as S
from ltsearch.results import ResultStore, load
from ltsearch.results.provenance import provenance

COUNTS = [500, 300, 180, 110, 60, 40, 25, 15, 10, 5]  # many: 4, medium: 3, few: 3
SPLIT = ["many"] * 4 + ["medium"] * 3 + ["few"] * 3
EPOCHS = 4


def _trial(store, tid, *, method, loss, params, types, seed, status="ok", quality=0.0, few=True, norms=True,
           schedules=None, sweep="fake"):
    rng = np.random.default_rng(zlib.crc32(f"{tid}:{seed}".encode()))
    noise = float(rng.normal(0, 1.0))
    ok = status == "ok"
    val = 60 + quality + noise
    row = {"sweep": sweep, "status": status, "error": None if status != "failed" else "RuntimeError: boom",
           "method": method, "loss": loss, "dataset": "synthetic", "arch": "small", "imbalance": 100.0,
           "seed": seed, "epochs": EPOCHS, "epochs_done": EPOCHS if status != "stopped" else 2,
           "val_acc": val if ok else None, "test_acc": val - 1 if ok else None,
           "test_many": val + 10 if ok else None, "test_medium": val - 5 if ok else None,
           "test_few": (val - 20 if few else math.nan) if ok else None, "num_classes": len(COUNTS),
           "ltsearch_version": "0.1.0", "torch_version": "2.5.1", "device": "cpu", **params}
    epochs = None
    if status != "failed":
        n = EPOCHS if status == "ok" else 2
        epochs = [{"epoch": e, "train_loss": 2.0 / (e + 1) + 0.01 * seed, "lr": 0.1, "val_acc": val * (e + 1) / EPOCHS,
                   "schedules": {k: f(e) for k, f in (schedules or {}).items()}} for e in range(n)]
    per_class = None
    if ok:
        per_class = [{"class_index": c, "train_count": n, "split": SPLIT[c], "test_acc": 90 - 6 * c + quality,
                      "val_acc": 88 - 6 * c, "weight_norm": (1 + n / 500) if norms else math.nan}
                     for c, n in enumerate(COUNTS)]
    store.write_trial(tid, row, types, epochs=epochs, per_class=per_class)


def make_gamma_run(run: Path) -> Path:
    """Focal loss over loss.gamma (numeric) × optim.lr, 3 seeds, plus a single/CE baseline,
    one failed and one stopped trial. No few-class NaN; weight norms recorded."""
    store = ResultStore(run)
    types = {"loss.gamma": pa.float64(), "optim.lr": pa.float64()}
    quality = {0.0: 0.0, 0.5: 2.0, 1.0: 5.0, 2.0: 3.0}
    for g, q in quality.items():
        for lr in (0.1, 0.01):
            for seed in (0, 1, 2):
                _trial(store, f"g{g}-lr{lr}-s{seed}", method="single", loss="focal", seed=seed,
                       params={"loss.gamma": g, "optim.lr": lr}, types=types, quality=q + (lr == 0.1),
                       schedules={"drw_on": lambda e: float(e >= 2), "drs_on": lambda e: 0.0}, sweep="gamma")
    for seed in (0, 1):
        _trial(store, f"ce-s{seed}", method="single", loss="ce", seed=seed, params={}, types=types,
               quality=-4.0, sweep="gamma")
    _trial(store, "g2-lr0.1-s9", method="single", loss="focal", seed=9, status="failed",
           params={"loss.gamma": 2.0, "optim.lr": 0.1}, types=types, sweep="gamma")
    _trial(store, "g0.5-lr0.01-s9", method="single", loss="focal", seed=9, status="stopped",
           params={"loss.gamma": 0.5, "optim.lr": 0.01}, types=types, sweep="gamma")
    (run / "spec.yaml").write_text("name: gamma\nsearch:\n  space: {loss.gamma: {grid: [0, 0.5, 1, 2]}}\n")
    return run


def make_hrdc_run(run: Path) -> Path:
    """HRDC strategy × fusion (two categorical params), 2 seeds, no few classes (test_few NaN),
    no weight norms, 8 ok trials (< 10: no importance)."""
    store = ResultStore(run)
    types = {"method.strategy": pa.string(), "method.fusion": pa.string()}
    for i, strat in enumerate(("hard", "soft")):
        for j, fusion in enumerate(("sum", "concat")):
            for seed in (0, 1):
                _trial(store, f"{strat}-{fusion}-{seed}", method="hrdc", loss="hrdc", seed=seed,
                       params={"method.strategy": strat, "method.fusion": fusion}, types=types,
                       quality=3 * i + j, few=False, norms=False,
                       schedules={"alpha": lambda e: 1 - (e / EPOCHS) ** 2}, sweep="hrdc")
    return run


@pytest.fixture(scope="module")
def gamma_run(tmp_path_factory) -> Path:
    return make_gamma_run(tmp_path_factory.mktemp("runs") / "gamma")


@pytest.fixture(scope="module")
def hrdc_run(tmp_path_factory) -> Path:
    return make_hrdc_run(tmp_path_factory.mktemp("runs") / "hrdc")


def _ok(trials):
    return trials[trials["status"] == "ok"]


# ---------------------------------------------------------------- results: provenance, duckdb


def test_provenance_fields():
    p = provenance()
    assert set(p) == {"ltsearch_version", "torch_version", "ray_version", "git_commit"}
    assert all(isinstance(v, str) for v in p.values())
    assert p["ltsearch_version"]
    assert p["git_commit"] == "" or re.fullmatch(r"[0-9a-f]{40}", p["git_commit"])


def test_results_readable_by_duckdb(gamma_run):
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    n, best = con.execute(
        f"SELECT count(*), max(val_acc) FROM '{gamma_run}/trials/*.parquet' WHERE status = 'ok'").fetchone()
    trials = load(gamma_run)[0]
    assert n == len(_ok(trials)) == 26
    assert best == pytest.approx(trials["val_acc"].max())
    gam = con.execute(f'SELECT "loss.gamma", avg(val_acc) FROM \'{gamma_run}/trials/*.parquet\' '
                      "WHERE status = 'ok' AND \"loss.gamma\" IS NOT NULL GROUP BY 1 ORDER BY 1").fetchall()
    assert [g for g, _ in gam] == [0.0, 0.5, 1.0, 2.0]
    (epochs,) = con.execute(f"SELECT count(*) FROM '{gamma_run}/epochs/*.parquet'").fetchone()
    assert epochs == 26 * EPOCHS + 2


# ---------------------------------------------------------------- summary and figure data


def test_searched_params_and_configs(gamma_run):
    trials = load(gamma_run)[0]
    assert S.searched_params(trials) == ["loss.gamma", "optim.lr"]
    s = S.config_summary(trials)
    assert len(s) == 4 * 2 + 1  # grid + CE baseline
    row = s[(s["loss.gamma"] == 2.0) & (s["optim.lr"] == 0.1)].iloc[0]
    assert (row["n_ok"], row["n_failed"], row["n_stopped"]) == (3, 1, 0)
    assert s[(s["loss.gamma"] == 0.5) & (s["optim.lr"] == 0.01)].iloc[0]["n_stopped"] == 1
    assert S.with_configs(trials).groupby("config")["config_key"].nunique().max() == 1


def test_best_table_ranks_by_val_mean(gamma_run):
    trials = load(gamma_run)[0]
    ok = S.with_configs(_ok(trials))
    means = ok.groupby("config")["val_acc"].mean().sort_values(ascending=False)
    table = S.best_table(trials)
    assert list(table["configuration"]) == list(means.index)
    assert list(table["rank"]) == list(range(1, len(table) + 1))
    top = ok[ok["config"] == means.index[0]]
    assert table["val acc"].iloc[0] == f"{top['val_acc'].mean():.2f} ± {top['val_acc'].std():.2f}"
    assert table["few"].iloc[0] == f"{top['test_few'].mean():.2f} ± {top['test_few'].std():.2f}"
    failed = table[table["failed"] == 1]
    assert len(failed) == 1 and failed["seeds ok"].iloc[0] == 3


def test_group_bars_heights_and_error_bars(gamma_run):
    trials = load(gamma_run)[0]
    fig = F.group_bars(trials)
    ok = S.with_configs(_ok(trials))
    bars = {t.name: t for t in fig.data}
    assert set(bars) == {"many", "medium", "few", "overall"}
    for name, col in (("many", "test_many"), ("medium", "test_medium"), ("few", "test_few"), ("overall", "test_acc")):
        t = bars[name]
        for x, y, e in zip(t.x, t.y, t.error_y.array):
            rows = ok[ok["config"] == x][col]
            assert y == pytest.approx(rows.mean())
            assert e == pytest.approx(rows.std(ddof=1))


def test_empty_group_is_na_not_zero(hrdc_run):
    trials = load(hrdc_run)[0]
    fig = F.group_bars(trials)
    few = next(t for t in fig.data if t.name == "few")
    assert all(y is None for y in few.y) and all(t == "n/a" for t in few.text)
    many = next(t for t in fig.data if t.name == "many")
    assert all(isinstance(y, float) and y > 0 for y in many.y)
    table = S.best_table(trials)
    assert (table["few"] == "n/a").all() and (table["many"] != "n/a").all()
    page = H.table_html(table)
    assert '<td class="na">n/a</td>' in page and "<td>0.00" not in page


def test_param_curve_numeric_line_with_band(gamma_run):
    trials = load(gamma_run)[0]
    fig = F.param_curve(trials, "loss.gamma")
    line = next(t for t in fig.data if t.name == "val")
    band = next(t for t in fig.data if t.name == "val ± std")
    ok = _ok(trials).dropna(subset=["loss.gamma"])
    g = ok.groupby("loss.gamma")["val_acc"]
    assert list(line.x) == [0.0, 0.5, 1.0, 2.0]
    assert list(line.y) == pytest.approx(list(g.mean()))
    upper = list(band.y)[:4]
    assert upper == pytest.approx(list(g.mean() + g.std()))
    assert band.fill == "toself"
    lr = F.param_curve(trials, "optim.lr")  # 0.01..0.1: ratio 10 stays linear
    assert lr.layout.xaxis.type != "log"


def test_param_curve_bins_continuous_values():
    rng = np.random.default_rng(0)
    lr = 10 ** rng.uniform(-4, -1, 60)
    trials = pd.DataFrame({"status": "ok", "optim.lr": lr, "val_acc": 50 + 10 * np.log10(lr)})
    d = S.param_curve(trials, "optim.lr", "val_acc", max_points=6)
    assert len(d) == 6 and d["n"].sum() == 60 and (d["n"] == 10).all()
    assert d["value"].is_monotonic_increasing and d["mean"].is_monotonic_increasing
    first = np.sort(lr)[:10]
    assert d["value"].iloc[0] == pytest.approx(np.exp(np.log(first).mean()))
    assert d["mean"].iloc[0] == pytest.approx((50 + 10 * np.log10(first)).mean())
    assert F.param_curve(trials, "optim.lr").layout.xaxis.type == "log"


def test_param_curve_categorical_bars_and_heatmap(hrdc_run, gamma_run):
    trials = load(hrdc_run)[0]
    assert S.categorical_params(trials) == ["method.fusion", "method.strategy"]
    fig = F.param_curve(trials, "method.strategy")
    assert {t.type for t in fig.data} == {"bar"}
    val = next(t for t in fig.data if t.name == "val")
    means = trials.groupby("method.strategy")["val_acc"].mean()
    assert dict(zip(val.x, val.y)) == pytest.approx(means.to_dict())
    heat = F.heatmap(trials, "method.fusion", "method.strategy")
    z = heat.data[0]
    expect = trials.groupby(["method.fusion", "method.strategy"])["val_acc"].mean()
    for i, a in enumerate(z.y):
        for j, b in enumerate(z.x):
            assert z.z[i][j] == pytest.approx(expect[(a, b)])
    sections = dict(H.param_sections(trials))
    assert "method.fusion × method.strategy" in sections
    gamma = dict(H.param_sections(load(gamma_run)[0]))  # two numeric parameters: a contour, no heat map
    assert [k for k in gamma if "×" in k] == ["loss.gamma × optim.lr"] and "contour" in gamma["loss.gamma × optim.lr"]


def test_parcoords_dimensions(hrdc_run):
    trials = load(hrdc_run)[0]
    fig = F.parcoords(trials)
    dims = fig.data[0].dimensions
    assert [d.label for d in dims] == ["method.fusion", "method.strategy", "val_acc"]
    assert list(dims[1].ticktext) == ["hard", "soft"]
    assert list(fig.data[0].line.color) == pytest.approx(list(_ok(trials)["val_acc"]))


def test_importance(gamma_run, hrdc_run):
    imp = S.param_importance(load(gamma_run)[0])
    assert isinstance(imp, dict) and set(imp) == {"loss.gamma", "optim.lr"}
    assert sum(imp.values()) == pytest.approx(1.0, abs=1e-6)
    assert F.importance(imp).data[0].x is not None
    few = S.param_importance(load(hrdc_run)[0])
    assert isinstance(few, str) and "10" in few and F.importance(few) is None
    # the report says why instead of leaving the section out (8 ok trials)
    text = H.write_report(hrdc_run, Path(hrdc_run) / "imp.html").read_text()
    assert "Parameter importance (fANOVA) is not shown: needs at least 10 ok trials with every parameter set (has 8)." in text


def test_learning_curves(gamma_run, hrdc_run):
    trials, epochs, _ = load(gamma_run)
    data = S.learning_curves(trials, epochs)
    assert set(data["column"]) == {"val_acc", "train_loss", "drw_on", "drs_on"}  # null schedules left out
    cfg = S.with_configs(trials)
    best = S.config_summary(trials)["config"].iloc[0]
    ids = cfg[cfg["config"] == best]["trial_id"]
    e = epochs[epochs["trial_id"].isin(ids)]
    got = data[(data["config"] == best) & (data["column"] == "train_loss")].sort_values("epoch")
    assert list(got["mean"]) == pytest.approx(list(e.groupby("epoch")["train_loss"].mean()))
    fig = F.learning_curves(trials, epochs)
    assert [a.text for a in fig.layout.annotations] == ["val_acc", "train_loss", "drw_on"]  # drs_on: 0 throughout
    line = next(t for t in fig.data if t.name == best and t.mode == "lines" and t.yaxis == "y")
    assert list(line.y) == pytest.approx(list(e.groupby("epoch")["val_acc"].mean()))
    t2, e2, _ = load(hrdc_run)
    assert set(S.learning_curves(t2, e2)["column"]) == {"val_acc", "train_loss", "alpha"}


def test_per_class_best_vs_baseline(gamma_run, hrdc_run):
    trials, _, per_class = load(gamma_run)
    best, base, why = S.best_and_baseline(trials)
    assert best["val_acc"] == trials["val_acc"].max()
    assert (base["method"], base["loss"]) == ("single", "ce") and "single" in why
    fig = F.per_class(trials, per_class)
    assert fig.layout.xaxis.type == "log"
    b = next(t for t in fig.data if t.name.startswith("best"))
    rows = per_class[per_class["trial_id"] == best["trial_id"]].sort_values("class_index")
    assert list(b.x) == COUNTS and list(b.y) == pytest.approx(list(rows["test_acc"]))
    norms = F.weight_norms(trials, per_class)
    assert list(norms.data[0].y) == pytest.approx([1 + n / 500 for n in COUNTS])
    # no single/CE trial: the baseline is the worst configuration; no weight norms: no figure
    t2, _, pc2 = load(hrdc_run)
    _, base2, why2 = S.best_and_baseline(t2)
    assert base2["config"] == S.config_summary(t2)["config"].iloc[-1] and "worst" in why2
    assert F.weight_norms(t2, pc2) is None


# ---------------------------------------------------------------- pages


def test_write_report_self_contained_and_cdn(gamma_run, tmp_path):
    path = H.write_report(gamma_run)
    assert path == Path(gamma_run) / "report.html"
    text = path.read_text()
    assert 'src="https://cdn.plot.ly' not in text
    assert text.count(H.po.get_plotlyjs()[:200]) == 1  # plotly.js inlined exactly once
    n_plots = text.count('class="plotly-graph-div"')
    assert n_plots >= 7
    for heading in ("Best configurations", "Parameter importance", "Learning curves", "spec.yaml", "RuntimeError: boom"):
        assert heading in text
    cdn = H.write_report(gamma_run, tmp_path / "r.html", cdn=True)
    small = cdn.read_text()
    assert 'src="https://cdn.plot.ly/plotly-' in small and H.po.get_plotlyjs()[:200] not in small
    assert len(small) < len(text) / 5


def test_compare_markdown_differences(gamma_run, hrdc_run, tmp_path):
    md = compare.write_compare([gamma_run, hrdc_run], None, fmt="markdown")
    assert isinstance(md, str)
    b = compare.best_per_run(compare.load_runs([gamma_run, hrdc_run]))
    assert list(b["run"]) == ["gamma", "hrdc"]
    delta = b["overall"].iloc[1] - b["overall"].iloc[0]
    line = next(ln for ln in md.splitlines() if ln.startswith("| hrdc |"))
    assert f"{delta:+.2f}" in line
    assert line.rstrip(" |").endswith("n/a")  # Δ few: hrdc has no few classes
    assert "| gamma |" in md and "## loss.gamma: val accuracy per run" in md
    out = compare.write_compare([gamma_run, gamma_run], tmp_path / "c.html", fmt="html")
    page = Path(out).read_text()
    assert "gamma #2" in page and page.count('class="plotly-graph-div"') == 2
    with pytest.raises(ValueError):
        compare.write_compare([gamma_run], tmp_path / "x", fmt="pdf")


def test_pages_for_degenerate_runs(tmp_path):
    """No results yet; only failed trials; a single training without searched parameters."""
    empty = H.write_report(tmp_path / "empty", tmp_path / "empty.html")
    assert "no finished trials" in empty.read_text()
    store = ResultStore(tmp_path / "failed")
    for seed in (0, 1):
        _trial(store, f"f{seed}", method="single", loss="ce", seed=seed, status="failed", params={}, types={},
               sweep="failed")
    text = H.write_report(tmp_path / "failed").read_text()
    assert "RuntimeError: boom" in text and "no ok trials" in text
    assert S.best_table(load(tmp_path / "failed")[0])["failed"].tolist() == [2]
    single = ResultStore(tmp_path / "single")
    _trial(single, "t0", method="single", loss="ce", seed=0, params={}, types={}, sweep="single")
    trials = load(tmp_path / "single")[0]
    assert S.searched_params(trials) == [] and F.parcoords(trials) is None
    assert 'class="plotly-graph-div"' in H.write_report(tmp_path / "single").read_text()
    md = compare.write_compare([tmp_path / "single", tmp_path / "failed"], tmp_path / "c.md", fmt="markdown")
    assert (tmp_path / "c.md").read_text() == md
    row = next(ln for ln in md.splitlines() if ln.startswith("| failed |"))
    assert row.count("n/a") == 8  # 4 groups + 4 differences


# ---------------------------------------------------------------- browser


def _browser() -> str | None:
    return next((shutil.which(b) for b in ("chromium", "chromium-browser", "google-chrome") if shutil.which(b)), None)


@pytest.mark.skipif(_browser() is None, reason="no chromium/chrome on PATH (apt-get install -y chromium)")
def test_report_renders_in_headless_browser(gamma_run, tmp_path):
    path = H.write_report(gamma_run, tmp_path / "report.html")
    flags = [_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", path.as_uri()],
                         capture_output=True, text=True, timeout=120).stdout
    n_divs = dom.count('class="plotly-graph-div')
    assert n_divs >= 7
    # every figure got drawn: plotly adds an <svg class="main-svg"> to each rendered div
    assert dom.count('class="main-svg"') >= n_divs
    assert dom.count('class="parcoords"') >= 1 or "parcoords" in dom
    png = tmp_path / "shot.png"
    subprocess.run(flags + [f"--screenshot={png}", "--window-size=1400,3000", "--virtual-time-budget=5000",
                            path.as_uri()], capture_output=True, timeout=120)
    assert png.exists() and png.stat().st_size > 20_000


def test_thresholds_shown_in_summary_report_and_compare(tmp_path):
    """``split_many`` / ``split_few`` rows: the report and compare print the thresholds used."""
    def run(name, rows):
        store = ResultStore(tmp_path / name)
        for i, (dataset, many, few) in enumerate(rows):
            store.write_trial(f"{name}{i}", {"sweep": name, "status": "ok", "method": "single", "loss": "ce",
                                             "dataset": dataset, "imbalance": 100.0, "seed": i, "val_acc": 70.0,
                                             "test_acc": 69.0, "split_many": many, "split_few": few}, {})
        return tmp_path / name

    fashion = run("fashion", [("fashion_mnist", 1077, 233)] * 2)
    mixed = run("mixed", [("cifar10", 1077, 233), ("cifar100", 100, 20)])
    assert S.split_thresholds(load(fashion)[0]) == "many > 1077, few < 233 training images"
    assert S.split_thresholds(load(mixed)[0]) == "cifar10 IF100: > 1077 / < 233; cifar100 IF100: > 100 / < 20"
    assert S.split_thresholds(load(fashion)[0].drop(columns=["split_many", "split_few"])) == ""  # older runs
    assert "many &gt; 1077, few &lt; 233 training images" in H.write_report(fashion, tmp_path / "r.html").read_text()
    md = compare.write_compare([fashion, mixed], None, fmt="markdown")
    assert "many / medium / few: many > 1077, few < 233 training images" in md
    assert "many / medium / few: cifar10 IF100: > 1077 / < 233; cifar100 IF100: > 100 / < 20" in md


def test_whole_section_choices_are_labelled_by_the_section():
    """A searched method section (``method.choice``) labels a configuration as ``name(params)``,
    without repeating method and loss in front of it."""
    assert S.choice_label("name=single, loss=focal") == "single(loss=focal)"
    assert S.choice_label("name=bbn") == "bbn" and S.choice_label("lr=0.1") == "lr=0.1"
    trials = pd.DataFrame({"trial_id": ["a", "b"], "status": ["ok", "ok"], "method": ["single", "sdnhl"],
                           "loss": ["focal", ""], "seed": [0, 0], "val_acc": [70.0, 71.0],
                           "method.choice": ["name=single, loss=focal", "name=sdnhl, hl_epoch=13"]})
    assert S.with_configs(trials)["config"].tolist() == ["single(loss=focal)", "sdnhl(hl_epoch=13)"]
