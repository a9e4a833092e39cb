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
