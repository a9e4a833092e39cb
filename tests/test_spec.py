import pytest
import yaml

from ltsearch.errors import UserError
from ltsearch.spec import load_spec, parse_override, resolve_experiment

BASE = {
    "name": "t",
    "experiment": {"data": {"dataset": "digits"}, "model": {"arch": "small_cnn"},
                   "method": {"name": "single", "loss": "ldam", "max_m": 0.5}},
    "search": {"algorithm": "grid", "space": {"method.max_m": {"grid": [0.3, 0.5]}}},
}


def write(tmp_path, tree):
    p = tmp_path / "spec.yaml"
    p.write_text(yaml.safe_dump(tree))
    return p


def test_valid_spec_loads(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    assert spec.experiment.method.params()["max_m"] == 0.5
    assert spec.search.space["method.max_m"].grid == [0.3, 0.5]


@pytest.mark.parametrize("mutate, fragment", [
    (lambda t: t["experiment"]["optim"].update(lrr=1) if "optim" in t["experiment"] else t["experiment"].update(optim={"lrr": 1}),
     "experiment.optim.lrr: unknown key (did you mean 'lr'?)"),
    (lambda t: t["experiment"]["method"].update(name="bnn"), "experiment.method.name: unknown method 'bnn'"),
    (lambda t: t["experiment"]["method"].update(loss="ldma"), "experiment.method.loss: unknown loss 'ldma'"),
    (lambda t: t["experiment"]["method"].update(max_mm=1), "experiment.method.max_mm: unknown parameter"),
    (lambda t: t["experiment"]["data"].update(dataset="cifar1000"), "experiment.data.dataset: unknown dataset"),
    (lambda t: t["experiment"]["data"].update(imbalance="lots"), "experiment.data.imbalance"),
    (lambda t: t["search"].update(metric="test_acc"), "search.metric"),
    (lambda t: t["search"]["space"].update({"optim.lrr": {"grid": [1]}}), "optim.lrr: unknown key"),
    (lambda t: t["search"]["space"].update({"optim.lr": {"grid": [0.1], "uniform": [0, 1]}}), "exactly one of"),
    (lambda t: t.update(serach={}), "serach: unknown key (did you mean 'search'?)"),
    (lambda t: t["experiment"]["model"].update(arch="lenett"), "experiment.model.arch: unknown model 'lenett'"),
    (lambda t: t["experiment"]["data"].update(splits={"many": 10, "few": 20}), "experiment.data.splits: few (20)"),
    (lambda t: t["experiment"]["data"].update(splits={"many": -1}), "experiment.data.splits.many"),
])
def test_errors_name_the_key(tmp_path, mutate, fragment):
    tree = yaml.safe_load(yaml.safe_dump(BASE))
    mutate(tree)
    with pytest.raises(UserError) as err:
        load_spec(write(tmp_path, tree))
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_unknown_key_lists_allowed(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(BASE))
    tree["experiment"]["optim"] = {"lrr": 1}
    with pytest.raises(UserError, match="allowed: name, lr, momentum"):
        load_spec(write(tmp_path, tree))


def test_overrides_use_dotted_paths(tmp_path):
    spec = load_spec(write(tmp_path, BASE), ["experiment.optim.lr=0.05", "search.seeds=[1, 2]",
                                             "experiment.method.s=20"])
    assert spec.experiment.optim.lr == 0.05
    assert spec.search.seeds == [1, 2] and spec.experiment.method.params()["s"] == 20
    assert parse_override("a.b=x") == ("a.b", "x")
    with pytest.raises(UserError, match="key=value"):
        parse_override("nonsense")


def test_bad_yaml_and_missing_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(UserError, match="invalid YAML"):
        load_spec(p)
    with pytest.raises(UserError, match="not found"):
        load_spec(tmp_path / "nope.yaml")


def test_resolve_experiment_applies_params(tmp_path):
    spec = load_spec(write(tmp_path, BASE))
    exp = resolve_experiment(spec.experiment, {"method.max_m": 0.3, "seed": 4})
    assert exp.method.params()["max_m"] == 0.3 and exp.seed == 4
    assert spec.experiment.method.params()["max_m"] == 0.5  # base untouched


def test_shipped_quickstart_loads():
    spec = load_spec("search_spaces/quickstart.yaml")
    assert spec.experiment.data.dataset == "digits" and spec.search.num_samples >= 8


@pytest.mark.parametrize("method, model, fragment", [
    ({"name": "single", "loss": "focal", "gamma": -1}, {}, "experiment.method.gamma: Input should be greater than or equal to 0"),
    ({"name": "single", "loss": "focal", "form": "softmaxx"}, {}, "experiment.method.form: Input should be 'softmax' or 'sigmoid'"),
    ({"name": "single", "loss": "bfs", "alpha": 1.5}, {}, "experiment.method.alpha: Input should be less than or equal to 1"),
    ({"name": "single", "loss": "ldam", "s": "thirty"}, {}, "experiment.method.s: Input should be a valid number"),
    ({"name": "bbn", "adaptor": "beta", "adaptor_params": {"a": 0}}, {}, "experiment.method.adaptor.a: Input should be greater than 0"),
    ({"name": "glag", "gra_form": "concav"}, {}, "experiment.method.gra_form"),
    ({"name": "single"}, {"arch": "small_cnn", "options": {"width": "wide"}}, "experiment.model.options.width: Input should be a valid integer"),
    ({"name": "single"}, {"arch": "auto", "options": {"width": "wide"}}, "experiment.model.options.width"),  # auto → small_cnn
])
def test_losses_schedules_and_models_validate_their_values(tmp_path, method, model, fragment):
    """Registered losses, schedules and models declare their parameters' types and ranges in their
    signatures; a spec's bad value fails at load time in one line naming the key."""
    tree = yaml.safe_load(yaml.safe_dump(BASE))
    tree["experiment"]["method"] = method
    tree["experiment"]["model"] = {**tree["experiment"]["model"], **model}
    tree["search"]["space"] = {}
    with pytest.raises(UserError) as err:
        load_spec(write(tmp_path, tree))
    assert fragment in str(err.value) and "\n" not in str(err.value)


def test_auto_model_and_dataset_splits_are_the_defaults(tmp_path):
    tree = yaml.safe_load(yaml.safe_dump(BASE))
    del tree["experiment"]["model"]
    exp = load_spec(write(tmp_path, tree)).experiment
    assert exp.model.arch == "auto" and (exp.data.splits.many, exp.data.splits.few) == (None, None)
    tree["experiment"]["data"]["splits"] = {"many": 50}  # one explicit threshold, the other the dataset's
    assert load_spec(write(tmp_path, tree)).experiment.data.splits.many == 50
