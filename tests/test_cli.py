from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from ltsearch.cli import app

runner = CliRunner()


def test_data_show_cifar100():
    r = runner.invoke(app, ["data", "show", "cifar100", "--imbalance", "100"])
    assert r.exit_code == 0, r.output
    assert "10,847" in r.output and "many (> 100): 35" in r.output and "medium: 35" in r.output
    assert "few (< 20): 30" in r.output


def test_data_show_cifar10():
    r = runner.invoke(app, ["data", "show", "cifar10", "--imbalance", "100"])
    assert r.exit_code == 0 and "12,406" in r.output
    # dataset default: thirds of the log-count range (the literature's > 100 / < 20 leaves few empty)
    assert "many (> 1077): 3 classes" in r.output and "few (< 233): 4 classes" in r.output
    assert "thirds of the log-count range" in r.output
    r = runner.invoke(app, ["data", "show", "fashion_mnist", "--imbalance", "100", "--many", "100", "--few", "20"])
    assert r.exit_code == 0 and "few (< 20): 0 classes" in r.output and "thresholds" not in r.output
    r = runner.invoke(app, ["data", "show", "digits", "--imbalance", "20", "--many", "5"])
    assert r.exit_code == 2 and "--many/--few" in r.output


def test_typo_exits_2_with_one_line(tmp_path):
    spec = yaml.safe_load(open("search_spaces/quickstart.yaml"))
    spec["experiment"]["optim"]["lrr"] = spec["experiment"]["optim"].pop("lr")
    p = tmp_path / "typo.yaml"
    p.write_text(yaml.safe_dump(spec))
    r = runner.invoke(app, ["run", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2
    assert "experiment.optim.lrr" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "runs").exists()  # nothing half-written


def test_unknown_dataset_and_missing_cifar_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("LTSEARCH_DATA", str(tmp_path / "data"))
    r = runner.invoke(app, ["train", "search_spaces/quickstart.yaml", "--set", "experiment.data.dataset=cifar100",
                            "--set", "experiment.model.arch=resnet8", "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and "cifar-100-python" in r.output
    assert not (tmp_path / "runs").exists()
    r = runner.invoke(app, ["data", "show", "imagenet"])
    assert r.exit_code == 2 and "unknown dataset" in r.output


def test_train_writes_parquet(tmp_path):
    r = runner.invoke(app, ["train", "search_spaces/quickstart.yaml", "--storage", str(tmp_path), "--set",
                            "experiment.optim.epochs=2"])
    assert r.exit_code == 0, r.output
    assert len(list((tmp_path / "quickstart" / "trials").glob("*.parquet"))) == 1
    assert "many: > 50, few: < 15 training images" in r.output  # the thresholds with the summary


def test_bad_command_options_exit_2_with_one_line(tmp_path):
    """Options outside a spec follow the same rule: one line naming the option, exit 2, no traceback."""
    for args, says in ((["bench", "--arch", "resnt32"], "did you mean 'resnet32'"),
                       (["bench", "--trials", "0"], "--trials 0"),
                       (["status", str(tmp_path), "--top", "-1"], "--top -1")):
        r = runner.invoke(app, args)
        assert r.exit_code == 2 and says in r.output and "Traceback" not in r.output, (args, r.output)


def test_mixup_with_hard_aware_is_refused(tmp_path):
    """hard_aware weights classes by their training accuracy, which mixed images do not give."""
    r = runner.invoke(app, ["train", "search_spaces/quickstart.yaml", "--storage", str(tmp_path / "runs"),
                            "--set", "experiment.method.loss=hard_aware", "--set", "experiment.method.mixup_alpha=0.2"])
    assert r.exit_code == 2 and "mixup_alpha" in r.output and "Traceback" not in r.output
    assert len(r.output.strip().splitlines()) == 1 and not (tmp_path / "runs").exists()


def test_typo_beside_a_loss_names_the_method_and_the_loss_keys(tmp_path):
    """single's section holds its own keys and its loss's: a typo of either gets a did-you-mean
    over both and the error lists both sets."""
    spec = yaml.safe_load(open("search_spaces/quickstart.yaml"))
    spec["experiment"]["method"] = {"name": "single", "loss": "focal", "drw_epoch": 12, "drw_betta": 0.9}
    p = tmp_path / "typo.yaml"
    p.write_text(yaml.safe_dump(spec))
    r = runner.invoke(app, ["train", str(p), "--storage", str(tmp_path / "runs")])
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1, r.output
    line = " ".join(r.output.split())  # rich may fold the line at the terminal width
    assert "experiment.method.drw_betta: unknown parameter (did you mean 'drw_beta'?)" in line
    assert "method single's loss, sampler, drw_epoch, drw_beta," in line and "loss focal's gamma, form, weight" in line
    assert not (tmp_path / "runs").exists()


def test_switch_past_the_end_of_training_prints_one_note(tmp_path, capsys):
    """drw_epoch 40 of 15 epochs never switches: one note (at train, and at run for every planned
    cell), and the trial still runs."""
    from ltsearch.cli import _preflight_data, switch_notes
    from ltsearch.spec import ExperimentSpec, load_spec

    spec = yaml.safe_load(open("search_spaces/quickstart.yaml"))
    spec["search"] = {"algorithm": "grid", "space": {"method.drw_epoch": {"grid": [5, 40]},
                                                      "method.loss": {"grid": ["ce", "focal"]}}}
    p = tmp_path / "late.yaml"
    p.write_text(yaml.safe_dump(spec))
    from ltsearch.tune.search import plan_sweep

    late = load_spec(p, [])
    _preflight_data(late, plan_sweep(late, str(tmp_path / "runs" / "late")).trials)  # as `ltsearch run` plans it
    notes = [ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("note:")]
    assert notes == ["note: experiment.method.drw_epoch = 40 never takes effect: training has 15 epochs (0 to 14, "
                     "counted from 0), so the trial trains as if it were unset"]
    exp = lambda **kw: ExperimentSpec.model_validate({"method": {"name": "single", **kw}, "optim": {"epochs": 15}})  # noqa: E731
    assert switch_notes([exp(drw_epoch=14), exp(drs_epoch=3)]) == []  # the last epoch still switches
    assert "drs_epoch = 15" in switch_notes([exp(drs_epoch=15)])[0]
    tau = ExperimentSpec.model_validate({"method": {"name": "tau_norm"}, "optim": {"epochs": 15}})
    assert switch_notes([tau]) == []  # its post-hoc stage 2 (0 epochs) starts at the end: how it works
    sdnhl = ExperimentSpec.model_validate({"method": {"name": "sdnhl", "hl_epoch": 20, "drw_epoch": 3},
                                           "optim": {"epochs": 15}})
    assert [n.split(" never")[0] for n in switch_notes([sdnhl])] == ["note: experiment.method.hl_epoch = 20"]
    r = runner.invoke(app, ["train", "search_spaces/quickstart.yaml", "--storage", str(tmp_path / "runs"),
                            "--set", "experiment.optim.epochs=1"])
    assert r.exit_code == 0 and r.output.count("note: experiment.method.drw_epoch = 12 never takes effect") == 1


def test_version_and_compare_help():
    import ltsearch

    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.output.strip() == f"ltsearch {ltsearch.__version__}"
    r = runner.invoke(app, ["compare", "--help"])
    assert r.exit_code == 0 and "one or more run directories" in " ".join(r.output.split())


def test_a_reader_that_stops_early_is_not_an_error(tmp_path):
    """``ltsearch status RUN | head``: the closed pipe ends every command with exit 0, no traceback."""
    import os
    import subprocess
    import sys

    from ltsearch.results import ResultStore

    ResultStore(tmp_path / "run").write_trial("t0", {"status": "ok", "method": "single", "loss": "ce", "seed": 0,
                                                     "val_acc": 70.0, "test_acc": 69.0}, {})
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    for args in (["status", str(tmp_path / "run")], ["compare", str(tmp_path / "run"), "--format", "markdown"],
                 ["data", "show", "cifar100"], ["--help"], ["--version"]):
        p = subprocess.Popen([sys.executable, "-m", "ltsearch", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             env=env)
        p.stdout.close()  # the reader is gone before the first line
        err = p.stderr.read().decode()
        assert p.wait(timeout=120) == 0 and err == "", (args, err)


def test_ctrl_c_while_the_cli_is_still_importing_is_one_line_and_exit_130(monkeypatch, capsys):
    """torch and Ray take seconds to import on a busy machine; a Ctrl-C then is an interrupt like
    any other (CI's chaos test once hit that window and got a traceback and a bare -SIGINT)."""
    import builtins

    import ltsearch.__main__ as entry

    real_import = builtins.__import__

    def interrupted(name, *args, **kwargs):
        if name == "ltsearch.cli":
            raise KeyboardInterrupt
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", interrupted)
    with pytest.raises(SystemExit) as exit_:
        entry.main()
    err = capsys.readouterr().err
    assert exit_.value.code == 130
    assert err.strip() == "interrupted: ltsearch was still starting; nothing was written"
