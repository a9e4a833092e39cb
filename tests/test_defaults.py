"""Dataset defaults: ``model.arch: auto`` and ``data.splits: {many: null, few: null}``.

The thresholds are computed here from the rule's formula (thirds of the log-count range,
n_min·r^(1/3) and n_min·r^(2/3)), independently of ``relative_splits``; CIFAR counts come from
``longtail_counts`` (no download).
"""

import json
import math

import pytest
import torch

from conftest import tiny_experiment
from ltsearch.data import longtail_counts, split_classes
from ltsearch.data.longtail import default_splits, relative_splits, resolve_splits
from ltsearch.defaults import resolve_defaults
from ltsearch.errors import UserError
from ltsearch.methods import build_method
from ltsearch.models.auto import AUTO_ARCH, resolve_arch
from ltsearch.registry import DATASETS, MODELS
from ltsearch.results import load
from ltsearch.spec import ExperimentSpec, ModelSpec, SplitSpec
from ltsearch.train.loop import run_trial
from ltsearch.trial import TrialContext, config_key_for, execute, trial_id_for


def sizes(counts, many, few):
    g = split_classes(counts, many, few)
    return [len(g["many"]), len(g["medium"]), len(g["few"])]


# ------------------------------------------------------------------------------------ model.arch: auto


def test_auto_is_the_default_and_every_builtin_dataset_has_a_registered_model():
    assert ModelSpec().arch == "auto"
    assert set(AUTO_ARCH) == set(DATASETS)  # every built-in dataset
    assert all(arch in MODELS for arch in AUTO_ARCH.values())
    datasets = ("digits", "fashion_mnist", "cifar10", "cifar100", "imagenet_lt", "inat")
    assert [resolve_arch("auto", d) for d in datasets] == ["small_cnn", "lenet", "resnet32", "resnet32", "resnext50",
                                                           "resnet50"]
    assert resolve_arch("resnet8", "fashion_mnist") == "resnet8"  # an explicit model is kept


def test_auto_for_an_unknown_dataset_names_the_key_and_the_fix():
    with pytest.raises(UserError, match=r"experiment\.model\.arch: auto has no model for dataset 'mine'.*set exp"):
        resolve_arch("auto", "mine")


def test_build_method_resolves_auto_per_dataset():
    exp = ExperimentSpec.model_validate({"data": {"dataset": "fashion_mnist"}, "method": {"name": "single"}})
    net = build_method(exp, [50, 20, 5], in_channels=1).net
    assert net.neck[1].in_features == 64 * 7 * 7 and net.feat_dim == 128  # lenet's FC layer
    exp = ExperimentSpec.model_validate({"data": {"dataset": "cifar10"}})
    assert sum(p.numel() for p in build_method(exp, [50] * 10, in_channels=3).parameters()) == \
        sum(p.numel() for p in MODELS.get("resnet32")(10).parameters())


def test_trial_id_hashes_the_resolved_model():
    auto = ExperimentSpec.model_validate(tiny_experiment(**{"model": {"arch": "auto"}}))
    explicit = ExperimentSpec.model_validate(tiny_experiment(**{"model": {"arch": "small_cnn"}}))
    other = ExperimentSpec.model_validate(tiny_experiment(**{"model": {"arch": "resnet8"}}))
    assert trial_id_for(auto) == trial_id_for(explicit) != trial_id_for(other)
    assert config_key_for(auto) == config_key_for(explicit)
    assert resolve_defaults(auto).model.arch == "small_cnn" and auto.model.arch == "auto"  # input untouched


def test_trial_id_hashes_the_resolved_thresholds():
    """``splits: null`` and the numbers it stands for are one configuration; the literature's
    datasets keep the ids they had when ``{many: 100, few: 20}`` was the schema's default."""
    def tid(**kw):
        return trial_id_for(ExperimentSpec.model_validate(tiny_experiment(**kw)))

    many, few = relative_splits(longtail_counts(10, 60, 10))  # synthetic: the loop's counts, from the spec
    assert tid(**{"data.splits": {}}) == tid(**{"data.splits": {"many": many, "few": few}}) != tid()
    cifar = {"data.dataset": "cifar100", "model": {"arch": "resnet32"}}
    assert tid(**cifar, **{"data.splits": {}}) == tid(**cifar, **{"data.splits": {"many": 100, "few": 20}})
    inat = {"data.dataset": "inat", "model": {"arch": "resnet50"}}  # no files needed: the literature's numbers
    assert tid(**inat, **{"data.splits": {}}) == tid(**inat, **{"data.splits": {"many": 100, "few": 20}})


def test_rows_record_the_resolved_model_and_the_thresholds(tmp_path):
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"model": {"arch": "auto", "options": {"width": 8}},
                                                           "data.splits": {}, "optim.epochs": 1}))
    execute(exp, TrialContext("s", str(tmp_path)))
    trials, _, per_class = load(tmp_path)
    row = trials.iloc[0]
    assert row["arch"] == "small_cnn" and json.loads(row["config_json"])["model"]["arch"] == "small_cnn"
    counts = longtail_counts(10, 60, 10)  # synthetic: 60 per class at most, imbalance 10
    assert (row["split_many"], row["split_few"]) == (math.floor(6 * 10 ** (2 / 3)), math.ceil(6 * 10 ** (1 / 3)))
    assert sorted(per_class["split"].unique()) == ["few", "many", "medium"]
    assert sizes(counts, row["split_many"], row["split_few"]) == [3, 3, 4]


# ------------------------------------------------------------------------------------ data.splits


@pytest.mark.parametrize("imbalance, n_min", [(10, 500), (20, 250), (50, 100), (100, 50), (200, 25)])
def test_cifar10_lt_thirds_of_the_log_count_range(imbalance, n_min):
    counts = longtail_counts(10, 5000, imbalance)
    assert min(counts) == n_min
    r = 5000 / n_min
    many, few = math.floor(n_min * r ** (2 / 3)), math.ceil(n_min * r ** (1 / 3))
    assert default_splits("cifar10", counts) == (many, few)
    assert sizes(counts, many, few) == [3, 3, 4]  # the conventional > 100 / < 20 left few empty
    assert sizes(counts, 100, 20)[2] == 0


def test_cifar10_and_fashion_if100_thresholds_by_hand():
    counts = longtail_counts(10, 5000, 100)
    assert counts == [5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50]
    # 50·100^(2/3) = 1077.2 → many: > 1077;  50·100^(1/3) = 232.1 → few: < 233 (232 is few)
    assert default_splits("cifar10", counts) == default_splits("fashion_mnist", counts) == (1077, 233)
    assert split_classes(counts, 1077, 233) == {"many": [0, 1, 2], "medium": [3, 4, 5], "few": [6, 7, 8, 9]}


@pytest.mark.parametrize("imbalance", [10, 20, 50, 100])
def test_digits_groups_all_have_classes(imbalance):
    counts = longtail_counts(10, 100, imbalance)
    assert all(n > 0 for n in sizes(counts, *default_splits("digits", counts)))


@pytest.mark.parametrize("dataset", ["cifar100", "imagenet_lt", "inat"])
def test_literature_thresholds_where_the_literature_uses_them(dataset):
    counts = longtail_counts(100, 500, 100)
    assert default_splits(dataset, counts) == (100, 20)
    if dataset == "cifar100":
        assert sizes(counts, 100, 20) == [35, 35, 30]  # the published CIFAR-100-LT IF100 groups


def test_explicit_numbers_win_and_edge_cases():
    counts = longtail_counts(10, 100, 20)
    assert resolve_splits(50, 15, "digits", counts) == (50, 15)
    assert resolve_splits(50, None, "digits", counts) == (50, math.ceil(5 * 20 ** (1 / 3)))
    with pytest.raises(ValueError, match="few .* exceeds many"):
        resolve_splits(5, None, "digits", counts)
    assert relative_splits([40] * 6) == (40, 40) and sizes([40] * 6, 40, 40) == [0, 6, 0]  # balanced: all medium
    assert SplitSpec().many is None and SplitSpec().few is None
    with pytest.raises(UserError, match=r"experiment\.data\.splits"):
        run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"data.splits": {"many": 2}})))


def test_loop_resolves_null_splits_and_keeps_explicit_ones():
    exp = ExperimentSpec.model_validate(tiny_experiment(**{"data.splits": {"many": None, "few": None},
                                                           "optim.epochs": 1}))
    out = run_trial(exp)
    assert (out.summary["split_many"], out.summary["split_few"]) == relative_splits(longtail_counts(10, 60, 10))
    assert not any(math.isnan(out.summary[f"test_{g}"]) for g in ("many", "medium", "few"))
    explicit = run_trial(ExperimentSpec.model_validate(tiny_experiment(**{"optim.epochs": 1})))
    assert (explicit.summary["split_many"], explicit.summary["split_few"]) == (30, 10)


def test_methods_cut_head_and_tail_at_the_datas_thresholds():
    """HRDC's ``levels: shots`` follows the data's many/few thresholds (Fashion-MNIST-LT IF100:
    many > 1077, few < 233 by the dataset rule), not a fixed 100 / 20; GLAG's head/tail split is an
    absolute count (100, the paper's), measured better on this data than the data's many threshold."""
    from ltsearch.data import longtail_counts
    from ltsearch.methods import build_method
    from ltsearch.spec import ExperimentSpec

    counts = longtail_counts(10, 5000, 100)  # 5000, 2997, 1796, 1077, 645, 387, 232, 139, 83, 50
    exp = ExperimentSpec.model_validate({"data": {"dataset": "fashion_mnist", "imbalance": 100},
                                         "model": {"arch": "mlp", "options": {"size": 28}},
                                         "method": {"name": "glag"}})
    glag = build_method(exp, counts, in_channels=1)
    assert glag.ctx.splits == (1077, 233)
    assert glag.is_head.tolist() == [n > 100 for n in counts] == [True] * 8 + [False] * 2
    assert build_method(exp.model_copy(update={"method": exp.method.model_validate(
        {"name": "glag", "head_threshold": 1077})}), counts, 1).is_head.sum() == 3
    hrdc = build_method(exp.model_copy(update={"method": exp.method.model_validate(
        {"name": "hrdc", "rebal_loss_params": {"levels": "shots", "gamma": 1.0}})}), counts, 1)
    a = (5000 / torch.tensor(counts, dtype=torch.float64))  # CDT factors, γ = 1
    groups = [[0, 1, 2], [3, 4, 5], [6, 7, 8, 9]]  # > 1077 / 233 … 1077 / < 233
    expected = [min(float(a[i]), float(a[g].mean())) for g in groups for i in g]
    assert hrdc.rebal_loss.factors.tolist() == pytest.approx(expected, rel=1e-6)
    single = build_method(exp.model_copy(update={"method": exp.method.model_validate(
        {"name": "single", "loss": "hrdc", "levels": "shots", "gamma": 1.0})}), counts, 1)
    assert single.loss_fn.factors.tolist() == pytest.approx(expected, rel=1e-6)  # the same cut for single
