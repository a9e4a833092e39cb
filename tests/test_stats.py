"""Paired per-seed statistics against a baseline, bootstrap intervals, IQM and the probability of
improvement, configuration identity and pairing, the baseline rule, and the LaTeX / CSV / markdown
tables of ``compare``.

The expected intervals are computed here by hand: d_s = X_s − B_s, mean, sample std (ddof=1),
half-width t · s / √n with the t quantiles from a printed table (t_0.975 with 2 and 3 degrees of
freedom: 4.302653, 3.182446), not from scipy. P(X > Y) and the IQM are counted by hand in the
tests; bootstrap intervals are checked by their properties (contain the point, collapse on
constant data, none for one run, independent of the other configurations, reproducible).
"""

from __future__ import annotations

import io
import json
import math
import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from scipy import stats as sps
from typer.testing import CliRunner

from ltsearch.cli import app
from ltsearch.errors import UserError
from ltsearch.report import stats as T
from ltsearch.report import summary as S
from ltsearch.report import tables
from ltsearch.results import ResultStore

T2, T3 = 4.302653, 3.182446  # Student t, 97.5 % quantile, 2 and 3 degrees of freedom (printed tables)


def rows(method, loss, test, params=None, seeds=None, many=None):
    """Trials rows of one configuration: test accuracy per seed (many = test + 10 unless given)."""
    seeds = seeds or list(range(len(test)))
    return [{"trial_id": f"{method}-{loss}-{params}-{s}", "status": "ok", "method": method, "loss": loss, "seed": s,
             "val_acc": t + 1, "test_acc": t, "test_many": (many[i] if many else t + 10), "test_medium": t - 5,
             "test_few": math.nan, **(params or {})} for i, (s, t) in enumerate(zip(seeds, test))]


def run_frame():
    """CE baseline [70, 72, 71]; focal: clearly better; ldam: within noise; bs: one seed paired."""
    data = (rows("single", "ce", [70.0, 72.0, 71.0])
            + rows("single", "focal", [73.0, 74.0, 74.5])  # d = 3, 2, 3.5
            + rows("single", "ldam", [71.0, 71.0, 73.0, 79.0], seeds=[0, 1, 2, 7], many=[80, 84, 81, 90])  # seed 7 unpaired
            + rows("single", "balanced_softmax", [75.0, 90.0], seeds=[2, 5]))  # only seed 2 paired
    df = pd.DataFrame(data)
    df["method.loss"] = df["loss"]  # the searched parameter
    return df


def hand_interval(d, t):
    n = len(d)
    mean = sum(d) / n
    sd = math.sqrt(sum((x - mean) ** 2 for x in d) / (n - 1))
    return mean, mean - t * sd / math.sqrt(n), mean + t * sd / math.sqrt(n)


def test_t_interval_matches_the_formula_by_hand():
    mean, lo, hi, n = T.t_interval([1.0, 2.0, 3.0, 6.0])
    m, l, h = hand_interval([1.0, 2.0, 3.0, 6.0], T3)  # mean 3, s = sqrt(14/3)
    assert n == 4 and mean == 3.0 and lo == pytest.approx(l, abs=1e-5) and hi == pytest.approx(h, abs=1e-5)
    assert lo == pytest.approx(3 - T3 * math.sqrt(14 / 3) / 2, abs=1e-5)
    assert T.within_noise(lo, hi) is True and T.within_noise(0.1, 2.0) is False
    assert T.t_interval([2.5])[1:] == (pytest.approx(math.nan, nan_ok=True),) * 2 + (1,)


def test_paired_differences_on_constructed_rows():
    diffs, base = T.paired_differences({"r": run_frame()})
    assert base == "loss=ce"  # default: single-branch CE
    d = diffs.set_index("config")
    assert bool(d.loc["loss=ce", "is_baseline"]) and d.loc["loss=ce", "delta_overall"] == 0.0

    focal = d.loc["loss=focal"]  # d = [3, 2, 3.5]: mean 2.8333, interval above 0
    m, lo, hi = hand_interval([3.0, 2.0, 3.5], T2)
    assert (focal["pairs"], focal["delta_overall_n"]) == (3, 3)
    assert focal["delta_overall"] == pytest.approx(m) and focal["delta_overall_low"] == pytest.approx(lo, abs=1e-4)
    assert focal["delta_overall_high"] == pytest.approx(hi, abs=1e-4) and lo > 0
    assert focal["delta_overall_noise"] is False or focal["delta_overall_noise"] == False  # noqa: E712

    ldam = d.loc["loss=ldam"]  # seeds 0, 1, 2 paired (7 is not): d = [1, -1, 2] contains 0
    m, lo, hi = hand_interval([1.0, -1.0, 2.0], T2)
    assert ldam["pairs"] == 3 and ldam["delta_overall"] == pytest.approx(m)
    assert (ldam["delta_overall_low"], ldam["delta_overall_high"]) == (pytest.approx(lo, abs=1e-4), pytest.approx(hi, abs=1e-4))
    assert bool(ldam["delta_overall_noise"]) is True
    m, lo, hi = hand_interval([80 - 80.0, 84 - 82.0, 81 - 81.0], T2)  # many: ldam's own values vs CE's test + 10
    assert ldam["delta_many"] == pytest.approx(m) and ldam["delta_many_high"] == pytest.approx(hi, abs=1e-4)
    assert ldam["delta_few_n"] == 0 and math.isnan(ldam["delta_few"])  # no few classes: no pairs

    bs = d.loc["loss=balanced_softmax"]  # one paired seed: a difference, no interval
    assert bs["pairs"] == 1 and bs["delta_overall"] == 75.0 - 71.0 and bs["delta_overall_noise"] is None
    shown = T.delta_display(diffs).set_index("configuration")
    assert shown.loc["loss=ldam", "Δ overall [95% CI]"].endswith("within noise")
    assert shown.loc["loss=focal", "Δ overall [95% CI]"] == f"+2.83 [{lo_str(3.0, 2.0, 3.5)}]"
    assert shown.loc["loss=balanced_softmax", "Δ overall [95% CI]"] == "+4.00 (1 seed)"
    assert shown.loc["loss=ce", "Δ few [95% CI]"] == "baseline"


def test_a_seed_trained_twice_is_averaged_not_a_crash():
    """Two ok rows of one configuration and seed (the same spec re-run with another unsearched
    ``--set`` into one run directory): that seed's value is their mean."""
    df = run_frame()
    again = pd.DataFrame(rows("single", "focal", [76.0], seeds=[0]))
    again["trial_id"] = "focal-rerun-0"
    again["method.loss"] = "focal"
    diffs, _ = T.paired_differences({"r": pd.concat([df, again], ignore_index=True)})
    focal = diffs.set_index("config").loc["loss=focal"]
    m, _, _ = hand_interval([(73.0 + 76.0) / 2 - 70.0, 2.0, 3.5], T2)
    assert focal["pairs"] == 3 and focal["delta_overall"] == pytest.approx(m)


def lo_str(*d):
    _, lo, hi = hand_interval(list(d), T2)
    return f"{lo:+.2f}, {hi:+.2f}"


def test_baseline_by_name_and_fallback():
    runs = {"r": run_frame()}
    diffs, base = T.paired_differences(runs, baseline="loss=ldam")
    d = diffs.set_index("config")
    assert base == "loss=ldam" and d.loc["loss=ce", "delta_overall"] == pytest.approx(-2 / 3)  # -(1, -1, 2) / 3
    with pytest.raises(UserError, match=r"--baseline 'loss=sgd': no such configuration; configurations: "):
        T.paired_differences(runs, baseline="loss=sgd")
    no_ce = {"r": run_frame().query("loss != 'ce'")}
    _, base = T.paired_differences(no_ce)
    assert base == "loss=balanced_softmax"  # no CE: the first configuration (rank 1: mean val 83.5)
    two = {"a": run_frame(), "b": run_frame()}
    with pytest.raises(UserError, match="several runs; write it as 'RUN: loss=ldam'"):
        T.paired_differences(two, baseline="loss=ldam")
    diffs, base = T.paired_differences(two, baseline="b: loss=ldam")
    assert base == "b: loss=ldam" and diffs.set_index("label").loc["a: loss=ldam", "delta_overall"] == 0.0


# ------------------------------------------------------------------ LaTeX, CSV, CLI


def write_run(path, name, frame):
    store = ResultStore(path)
    for r in frame.to_dict("records"):
        r = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in r.items()}
        store.write_trial(r.pop("trial_id"), {"sweep": name, "dataset": "synthetic", **r},
                          {"method.loss": pa.string()})
    return path


def check_latex_structure(tex):
    """Balanced braces and environments, booktabs rules, and every row with its table's column count."""
    assert tex.count("{") - tex.count(r"\{") == tex.count("}") - tex.count(r"\}")
    envs = re.findall(r"\\(begin|end)\{(\w+)\}", tex)
    stack = []
    for kind, env in envs:
        if kind == "begin":
            stack.append(env)
        else:
            assert stack.pop() == env
    assert not stack
    for block in re.findall(r"\\begin\{tabular\}\{(\w+)\}(.*?)\\end\{tabular\}", tex, re.S):
        cols, body = len(block[0]), block[1]
        assert body.count(r"\toprule") == body.count(r"\midrule") == body.count(r"\bottomrule") == 1
        for line in body.strip().splitlines():
            if line.endswith(r"\\"):
                assert len(re.split(r"(?<!\\)&", line)) == cols, line
    for special in ("_", "%", "&", "#"):  # unescaped specials would break the document
        assert not re.search(rf"(?<!\\){re.escape(special)}", re.sub(r"^%.*$", "", tex.replace(" & ", " "), flags=re.M)
                             .replace(r"\%", "").replace(r"\_", "").replace(r"\&", "").replace(r"\#", "")), special


def test_latex_table_structure_escaping_and_bold(tmp_path):
    frame = run_frame()
    frame.loc[frame["loss"] == "ldam", ["loss", "method.loss"]] = "ldam_50%&#1"  # characters LaTeX must escape
    tex = tables.latex({"runs_a": frame}, baseline=None, top=10)
    check_latex_structure(tex)
    assert r"ldam\_50\%\&\#1" in tex and r"\usepackage{booktabs}" in tex
    first = tex.split(r"\end{table}")[0]
    rows_ = {ln.split(" & ")[0]: ln for ln in first.splitlines() if ln.endswith(r"\\") and "loss=" in ln}
    # best overall mean: balanced_softmax (82.5 = mean of 75, 90); best many: the same (92.5)
    assert r"\textbf{82.50} $\pm$ 10.61" in rows_["loss=balanced\\_softmax"]
    assert rows_["loss=focal"].count(r"\textbf") == 0 and rows_["loss=ce"].endswith(r"-- \\")
    second = tex.split(r"\end{table}")[1]
    ldam = next(ln for ln in second.splitlines() if ln.startswith("loss=ldam"))
    assert ldam.split(" & ")[2].startswith(r"${+}0.67^\dagger$")  # Δ overall within noise: marked
    focal = next(ln for ln in second.splitlines() if ln.startswith("loss=focal"))
    assert focal.split(" & ")[2] == r"${+}2.83$ {\scriptsize [${+}0.94$, ${+}4.73$]}"  # [lo, hi] by hand


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_compiles_with_pdflatex(tmp_path):
    a = write_run(tmp_path / "runs" / "a_run", "a_run", run_frame())
    b = write_run(tmp_path / "runs" / "b", "b", run_frame().query("loss != 'focal'"))
    r = CliRunner().invoke(app, ["compare", str(a), str(b), "--format", "latex"])
    assert r.exit_code == 0, r.output
    check_latex_structure(r.output)
    doc = tmp_path / "doc.tex"
    doc.write_text("\\documentclass{article}\n\\usepackage{booktabs}\n\\begin{document}\n" + r.output
                   + "\\end{document}\n")
    p = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stdout[-3000:]
    assert (tmp_path / "doc.pdf").stat().st_size > 1000 and "Warning" not in p.stdout.split("Output written")[0][-2000:]


def test_compare_csv_markdown_and_baseline_option(tmp_path):
    a = write_run(tmp_path / "a", "a", run_frame())
    r = CliRunner().invoke(app, ["compare", str(a), "--format", "csv", "--baseline", "loss=focal"])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(io.StringIO(r.output)).set_index("configuration")
    assert list(csv.index) == ["loss=balanced_softmax", "loss=focal", "loss=ldam", "loss=ce"]  # ranked by val
    assert csv.loc["loss=focal", "is_baseline"] and csv.loc["loss=ce", "delta_overall"] == pytest.approx(-2.8333, abs=1e-4)
    assert csv.loc["loss=ce", "test_acc_mean"] == pytest.approx(71.0) and csv.loc["loss=ce", "test_acc_std"] == pytest.approx(1.0)
    assert csv.loc["loss=ldam", "pairs"] == 3 and csv.loc["loss=ce", "n_ok"] == 3
    r = CliRunner().invoke(app, ["compare", str(a), "--format", "markdown"])
    assert r.exit_code == 0 and "## Paired per-seed differences vs loss=ce" in r.output
    line = next(ln for ln in r.output.splitlines() if ln.startswith("| loss=ldam |"))
    assert "within noise" in line
    r = CliRunner().invoke(app, ["compare", str(a), "--baseline", "nope", "-o", str(tmp_path / "c.html")])
    assert r.exit_code == 2 and "--baseline 'nope'" in r.output and not (tmp_path / "c.html").exists()
    r = CliRunner().invoke(app, ["compare", str(a), "--format", "pdf"])
    assert r.exit_code == 2 and "html, markdown, latex, csv" in r.output
    r = CliRunner().invoke(app, ["report", str(a), "-o", str(tmp_path / "r.html"), "--cdn"])
    assert r.exit_code == 0 and "Paired differences vs loss=ce" in (tmp_path / "r.html").read_text()


def test_compare_top_shows_every_configuration(tmp_path):
    """``compare --top 0`` lists every configuration of a run (the default shows 5)."""
    from typer.testing import CliRunner

    from ltsearch.cli import app

    run = tmp_path / "many_configs"
    store = ResultStore(run)
    for i in range(7):
        for seed in (0, 1):
            store.write_trial(f"t{i}s{seed}", {"sweep": "many_configs", "status": "ok", "method": "single", "loss": "ce",
                                               "seed": seed, "val_acc": 50.0 + i, "test_acc": 50.0 + i + seed,
                                               "method.gamma": float(i)}, {"method.gamma": pa.float64()})
    short = CliRunner().invoke(app, ["compare", str(run), "--format", "markdown"])
    full = CliRunner().invoke(app, ["compare", str(run), "--format", "markdown", "--top", "0"])
    assert short.exit_code == 0 and full.exit_code == 0, full.output
    assert short.output.count("gamma=") < full.output.count("gamma=")
    assert all(f"gamma={i}" in full.output for i in range(7))


# ------------------------------------------------------------------ bootstrap, IQM, P(X > Y)


def test_probability_of_improvement_pair_by_pair():
    """X = [1, 2, 3], Y = [2, 2, 0]: 1 beats only 0 (0, 0, 1); 2 ties twice and beats 0 (½, ½, 1);
    3 beats all (1, 1, 1): 6 of 9 pairs."""
    x, y = np.array([1.0, 2.0, 3.0]), np.array([2.0, 2.0, 0.0])
    assert float(T.p_improve(x, y)) == pytest.approx(6 / 9)
    assert float(T.p_improve(y, x)) == pytest.approx(1 - 6 / 9)  # P(Y > X) = 1 − P(X > Y) with ties half
    assert float(T.p_improve(x, x)) == 0.5  # the baseline against itself
    point, lo, hi = T.bootstrap([x], T.p_improve, y)
    assert point[0] == pytest.approx(6 / 9) and 0 <= lo[0] <= point[0] <= hi[0] <= 1


def test_iqm_by_hand():
    vals = [10.0, 1.0, 7.0, 3.0, 100.0, 5.0, -50.0, 4.0]  # sorted: -50 1 | 3 4 5 7 | 10 100
    assert float(T.iqm(np.array(vals))) == (3 + 4 + 5 + 7) / 4
    assert float(T.iqm(np.array([1.0, 2.0, 9.0]))) == 4.0  # a quarter of 3 rounds down to 0: the mean
    rng = np.random.default_rng(0)
    for n in range(1, 10):  # scipy's trim_mean, whatever the number of runs and the batch shape
        x = rng.normal(size=(4, 7, n))
        assert np.allclose(T.iqm(x, axis=-1), sps.trim_mean(x, 0.25, axis=-1))


def test_bootstrap_interval_properties():
    rng = np.random.default_rng(3)
    samples = [rng.normal(70, 2, 5), np.full(4, 71.5), np.array([69.0]), np.array([]), rng.normal(70, 2, 5)]
    for stat in (T.mean, T.iqm):
        point, lo, hi = T.bootstrap(samples, stat)
        assert lo[0] <= point[0] <= hi[0] and lo[0] < hi[0]
        assert (lo[1], point[1], hi[1]) == (pytest.approx(71.5),) * 3  # constant data: the interval collapses
        assert point[2] == 69.0 and math.isnan(lo[2]) and math.isnan(hi[2])  # one run: a value, no interval
        assert math.isnan(point[3])  # no run: nothing
        alone = T.bootstrap(samples[4:5], stat)  # a sample's interval does not depend on the others'
        assert (alone[1][0], alone[2][0]) == (lo[4], hi[4])
        assert np.array_equal(T.bootstrap(samples, stat)[1], lo, equal_nan=True)  # fixed generator: reproducible
    # point values everywhere, intervals only where wanted
    point, lo, hi = T.bootstrap(samples, T.mean, wanted=np.array([False, True, True, True, False]))
    assert not np.isnan(point[0]) and math.isnan(lo[0]) and lo[1] == pytest.approx(71.5)
    # P: one baseline run gives a value, no interval
    p, lo, _ = T.bootstrap(samples[:1], T.p_improve, np.array([70.0]))
    assert 0 <= p[0] <= 1 and math.isnan(lo[0])


def test_intervals_of_constructed_rows():
    iv, base = T.intervals({"r": run_frame()})
    d = iv.set_index("config")
    assert base == "loss=ce" and bool(d.loc["loss=ce", "is_baseline"])
    focal = d.loc["loss=focal"]  # [73, 74, 74.5] against CE [70, 72, 71]: every run beats every run
    assert focal["units"] == 3 and focal["p_improve_overall"] == 1.0
    assert (focal["p_improve_overall_low"], focal["p_improve_overall_high"]) == (1.0, 1.0)
    assert focal["mean_overall"] == pytest.approx((73 + 74 + 74.5) / 3)
    assert 73.0 <= focal["mean_overall_low"] <= focal["mean_overall"] <= focal["mean_overall_high"] <= 74.5
    ldam = d.loc["loss=ldam"]  # four runs [71, 71, 73, 79] (seed 7 counts: P is over all runs, not pairs)
    # 71 vs (70, 72, 71): 1 + 0 + ½, twice; 73 and 79 beat all three: (1.5 + 1.5 + 3 + 3) / 12
    assert ldam["units"] == 4 and ldam["p_improve_overall"] == pytest.approx(9 / 12)
    assert ldam["iqm_overall"] == pytest.approx((71 + 73) / 2) and ldam["mean_overall"] == pytest.approx(73.5)
    assert ldam["p_improve_overall_low"] <= 0.75 <= ldam["p_improve_overall_high"]
    assert d.loc["loss=ce", "p_improve_overall"] == 0.5
    assert math.isnan(ldam["p_improve_few"]) and math.isnan(ldam["iqm_few"])  # no few classes: n/a
    shown = T.improvement_display(iv).set_index("configuration")
    assert shown.loc["loss=focal", "P(> baseline) overall"] == "1.00 [1.00, 1.00]"
    assert shown.loc["loss=ce", "P(> baseline) overall"] == "baseline" and shown.loc["loss=ldam", "P(> baseline) few"] == "n/a"


# ------------------------------------------------------------------ identity, pairing, baseline


def unit_rows(name, values, key=None, sampler=None, drw=None, gamma=None):
    """Rows of one configuration: ``values[(subset_seed, seed)] = test accuracy``."""
    out = []
    for (b, s), v in values.items():
        method = {"name": "single", "loss": name, "sampler": sampler or "instance", "drw_epoch": drw,
                  "drs_epoch": None, "mixup_alpha": 0.0, "posthoc_tau": 0.0}
        out.append({"trial_id": f"{name}-{key}-{b}-{s}-{v}", "status": "ok", "method": "single", "loss": name,
                    "subset_seed": b, "seed": s, "val_acc": v + 1, "test_acc": v, "test_many": v, "test_medium": v,
                    "test_few": v, "config_key": key, "config_json": json.dumps({"method": method, "seed": s}),
                    "method.loss": name, **({"loss.gamma": gamma} if gamma is not None else {})})
    return out


def test_pairing_on_subset_and_seed_and_duplicates_flagged():
    """Seeds 0 and 1 on subsets 0 and 1: four pairs, d = 2, 1, 1, 4 (pairing by seed alone would
    average subsets: two pairs, 1.5 and 2.5)."""
    base = unit_rows("ce", {(0, 0): 70, (0, 1): 71, (1, 0): 60, (1, 1): 62}, key="kce")
    x = unit_rows("focal", {(0, 0): 72, (0, 1): 72, (1, 0): 61, (1, 1): 66}, key="kfocal")
    diffs, _ = T.paired_differences({"r": pd.DataFrame(base + x)})
    f = diffs.set_index("config").loc["loss=focal"]
    m, lo, hi = hand_interval([2.0, 1.0, 1.0, 4.0], T3)
    assert (f["pairs"], f["delta_overall_n"], f["duplicates"]) == (4, 4, 0)
    assert f["delta_overall"] == pytest.approx(m) and f["delta_overall_low"] == pytest.approx(lo, abs=1e-4)
    # the same configuration trained twice on (0, 0): that unit is the mean, and the table says so
    again = unit_rows("focal", {(0, 0): 76}, key="kfocal")
    c = T.comparison({"r": pd.DataFrame(base + x + again)})
    f = c.differences().set_index("config").loc["loss=focal"]
    assert (f["pairs"], f["duplicates"]) == (4, 1) and f["delta_overall"] == pytest.approx((4 + 1 + 1 + 4) / 4)
    assert "loss=focal" in T.duplicates_note(c.differences())
    assert c.intervals().set_index("config").loc["loss=focal", "units"] == 4


def test_stored_config_key_keeps_unsearched_changes_apart():
    """Two runs into one directory with the same searched values but another unsearched value (another
    stored ``config_key``) are two configurations, not six seeds of one; old rows without a stored key
    fall back to the searched values."""
    first = unit_rows("focal", {(0, 0): 70, (0, 1): 71, (0, 2): 72}, key="k1", gamma=2.0)
    second = unit_rows("focal", {(0, 0): 80, (0, 1): 81, (0, 2): 82}, key="k2", gamma=2.0)
    summary = S.config_summary(pd.DataFrame(first + second))
    assert sorted(summary["config"]) == ["gamma=2, loss=focal #0", "gamma=2, loss=focal #1"] and list(summary["n_ok"]) == [3, 3]
    assert sorted(summary["test_acc_mean"]) == [71.0, 81.0]
    old = pd.DataFrame(first + second).drop(columns="config_key")
    assert list(S.config_summary(old)["n_ok"]) == [6]  # no stored key: one configuration, as before


def test_baseline_prefers_plain_ce_over_ce_variants():
    plain = unit_rows("ce", {(0, 0): 60, (0, 1): 61}, key="plain")
    balanced = unit_rows("ce", {(0, 0): 70, (0, 1): 71}, key="cb", sampler="class_balanced")  # better val
    drw = unit_rows("ce", {(0, 0): 72, (0, 1): 73}, key="drw", drw=160)
    focal = unit_rows("focal", {(0, 0): 75, (0, 1): 76}, key="focal")
    runs = {"r": pd.DataFrame(plain + balanced + drw + focal)}
    configs = T.configurations(runs)
    assert configs.set_index("config_key").loc[["plain", "cb", "drw", "focal"], "plain_ce"].tolist() == [True, False, False, False]
    assert configs.loc[T.choose_baseline(configs), "config_key"] == "plain"
    only_variants = T.configurations({"r": pd.DataFrame(balanced + drw + focal)})
    assert only_variants.loc[T.choose_baseline(only_variants), "config_key"] == "drw"  # CE variants: best val
    # without config_json the searched column method.drw_epoch tells
    rows = pd.DataFrame(plain + drw).drop(columns="config_json")
    rows["method.drw_epoch"] = [None, None, 160, 160]
    assert S.plain_ce(rows).tolist() == [True, True, False, False]
    best, base, why = S.best_and_baseline(pd.DataFrame(plain + balanced + drw + focal))
    assert base["config_key"] == "plain" and "no re-balancing" in why


def test_plain_single_knobs_are_the_single_methods_defaults():
    from ltsearch.methods.single import SingleParams

    defaults = SingleParams().model_dump()
    assert {k: defaults[k] for k in S.PLAIN_SINGLE} == S.PLAIN_SINGLE


def test_compare_formats_carry_the_bootstrap_columns(tmp_path):
    a = write_run(tmp_path / "a", "a", run_frame())
    r = CliRunner().invoke(app, ["compare", str(a), "--format", "csv", "--top", "2"])
    assert r.exit_code == 0, r.output
    csv = pd.read_csv(io.StringIO(r.output)).set_index("configuration")
    for g in ("overall", "many", "medium", "few"):
        for name in ("p_improve", "iqm", "mean"):
            assert {f"{name}_{g}", f"{name}_{g}_low", f"{name}_{g}_high"} <= set(csv.columns)
    assert csv.loc["loss=focal", "p_improve_overall"] == 1.0 and csv.loc["loss=ldam", "iqm_overall"] == 72.0
    # intervals for the configurations shown (top 2 and the baseline); every row has its point values
    assert csv.loc["loss=focal", "p_improve_overall_low"] == 1.0 and not math.isnan(csv.loc["loss=ce", "mean_overall_low"])
    assert math.isnan(csv.loc["loss=ldam", "p_improve_overall_low"]) and csv.loc["loss=ldam", "p_improve_overall"] == 0.75
    full = pd.read_csv(io.StringIO(CliRunner().invoke(app, ["compare", str(a), "--format", "csv", "--top", "0"]).output))
    assert full.set_index("configuration").loc["loss=ldam", "p_improve_overall_low"] <= 0.75
    md = CliRunner().invoke(app, ["compare", str(a), "--format", "markdown"]).output
    assert "## Probability of improvement over loss=ce" in md and "| loss=focal | 3 | 1.00 [1.00, 1.00] |" in md
    assert "## Mean and interquartile mean" in md
    tex = CliRunner().invoke(app, ["compare", str(a), "--format", "latex"]).output
    check_latex_structure(tex)
    assert r"$P(>)$ Overall" in tex
    assert CliRunner().invoke(app, ["compare", str(a), "-o", str(tmp_path / "c.html")]).exit_code == 0
    assert "Probability of improvement over loss=ce" in (tmp_path / "c.html").read_text()
    assert CliRunner().invoke(app, ["report", str(a), "-o", str(tmp_path / "r.html"), "--cdn"]).exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "Probability of improvement over loss=ce" in page and "1.00 [1.00, 1.00]" in page


def test_variance_counts_a_duplicated_run_once():
    """The subset/initialisation split sees runs as the pairing does: a (subset, seed) trained twice
    is one run, their mean (subsets [1, 3] and [5, 7]: σ²_init = 2, σ²_subset = 7, as by hand in
    tests/test_subsets.py)."""
    from ltsearch.report import variance as V

    values = {(0, 0): 1, (0, 1): 3, (1, 0): 5, (1, 1): 7}
    rows = unit_rows("ce", values, key="k") + unit_rows("ce", {(0, 0): 0}, key="k") + unit_rows("ce", {(0, 0): 2}, key="k")
    s = V.by_configuration(pd.DataFrame(rows), "test_acc")["loss=ce"]
    assert s.runs == 4 and s.var_init == 2 and s.var_subset == 7


def test_a_one_seed_search_report_says_why_it_has_no_paired_tables(tmp_path):
    """A one-seed search (every configuration one run): no tables of single values under 'paired
    differences' and 'P(> baseline)', one line saying what would give them."""
    one = run_frame()
    one = one[one["seed"] == 2]  # four configurations, one run each
    a = write_run(tmp_path / "one", "one", one)
    assert CliRunner().invoke(app, ["report", str(a), "-o", str(tmp_path / "r.html"), "--cdn"]).exit_code == 0
    page = (tmp_path / "r.html").read_text()
    assert "Paired differences vs" not in page and "Probability of improvement over" not in page
    assert "every configuration has one run (one seed)" in page and "search.seeds" in page
