"""The tuned comparison's driver (benchmarks/fashion_tuned.py): every method's search is a valid spec
on the benchmark's recipe, and its first trial (search.initial) is the method at its defaults, so a
search can only keep or beat the default on validation."""

import importlib.util
from pathlib import Path

import pytest

from ltsearch.losses import resolved_loss_params
from ltsearch.registry import METHODS as REGISTRY
from ltsearch.spec import resolve_experiment, validate_spec_dict

REPO = Path(__file__).resolve().parents[1]


def _driver():
    spec = importlib.util.spec_from_file_location("fashion_tuned", REPO / "benchmarks" / "fashion_tuned.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DRIVER = _driver()


@pytest.mark.parametrize("label", list(DRIVER.METHODS))
def test_first_trial_is_the_method_at_its_defaults(label):
    section, space = DRIVER.METHODS[label]
    spec = validate_spec_dict(DRIVER.search_spec(label, 12), source=label)
    assert (spec.search.algorithm, spec.search.num_samples, spec.search.scheduler) == ("optuna", 12, "asha")
    assert spec.experiment.optim == validate_spec_dict(DRIVER.base_spec() | {"name": "b"}).experiment.optim
    (initial,) = spec.search.initial
    assert set(initial) == set(space)  # every searched knob has its default in the first trial
    cls = REGISTRY.get(section["name"])

    def params(method):  # the validated parameters, and the section's loss parameters (single: tau, max_m, ...)
        raw = method.model_dump()
        return {**raw, **cls.validate_params({k: v for k, v in raw.items() if k != "name"}).model_dump()}

    first = params(resolve_experiment(spec.experiment, initial).method)
    plain = params(spec.experiment.method)  # the section alone: every knob at its default
    recipe = spec.experiment.optim.model_dump()
    for key in space:
        field = key.split(".", 1)[1]
        if plain.get(field) is None and field.startswith("stage2_"):  # stage 2 inherits the recipe's value
            assert first[field] == recipe[field.removeprefix("stage2_")]
        elif plain.get(field) is None:  # single's loss parameters: None is the loss's own default
            assert first[field] == resolved_loss_params(section["loss"], {})[field]
        else:
            assert first[field] == plain[field]
        plain[field] = first[field]
    assert first == plain  # and nothing else differs


def test_loss_knobs_default_to_the_losss_own_values():
    for label in ("logit adjustment", "LDAM-DRW"):
        section, space = DRIVER.METHODS[label]
        defaults = DRIVER.defaults_of(section, space)
        loss = resolved_loss_params(section["loss"], {})
        assert {k: v for k, v in defaults.items() if k.split(".", 1)[1] in loss} == \
            {k: loss[k.split(".", 1)[1]] for k in space if k.split(".", 1)[1] in loss}
    assert DRIVER.defaults_of(*DRIVER.METHODS["logit adjustment"]) == {"method.tau": 1.0}
    assert DRIVER.defaults_of(*DRIVER.METHODS["τ-norm"]) == {"method.tau": 1.0, "method.keep_bias": False}
    assert DRIVER.defaults_of(*DRIVER.METHODS["SDNHL"])["method.hl_eps"] == 0.1


def test_rows_are_matched_on_the_method_and_its_searched_knobs():
    import json

    import pandas as pd

    rows = pd.DataFrame({"seed": [2, 0, 1], "config_json": [json.dumps({"method": m}) for m in (
        {"name": "tau_norm", "tau": 1.0}, {"name": "tau_norm", "tau": 1.0}, {"name": "tau_norm", "tau": 0.5})]})
    assert [int(r["seed"]) for r in DRIVER.by_section(rows, {"name": "tau_norm", "tau": 1.0})] == [0, 2]
    assert DRIVER.by_section(rows, {"name": "crt"}) == []
