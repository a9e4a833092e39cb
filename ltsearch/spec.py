"""The YAML spec as pydantic models, and ``load_spec(path, overrides)``.

A spec has a ``name``, an ``experiment`` (what one trial trains), a ``search`` (what Ray Tune
explores) and ``resources`` (what one trial gets). Unknown keys are errors; every error names its
dotted key path and the allowed values, and surfaces as a :class:`UserError` (exit code 2).
"""

from __future__ import annotations

import copy
import difflib
import graphlib
import json
import math
from pathlib import Path
from typing import Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from ltsearch.errors import UserError, format_validation_error
from ltsearch.secrets import mask
from ltsearch.validation import check_experiment, load_plugins

# Parameters measured in epochs carry a unit (``--smoke`` rescales them by it):
# ``epochs``: a length (a stage's epochs, warm-up); ``switch``: a 0-based epoch at which behaviour changes.
UNIT_KEY = "ltsearch_unit"


def epochs_field(default: Any, **kwargs: Any) -> Any:
    """A parameter that is a number of epochs (a stage's length, a warm-up)."""
    return Field(default, ge=0, json_schema_extra={UNIT_KEY: "epochs"}, **kwargs)


def switch_field(default: Any, **kwargs: Any) -> Any:
    """A parameter that is the 0-based epoch (or list of epochs) where behaviour changes."""
    return Field(default, json_schema_extra={UNIT_KEY: "switch"}, **kwargs)


def epoch_units(model: type[BaseModel]) -> dict[str, str]:
    """``{field name: "epochs" | "switch"}`` for the fields of ``model`` measured in epochs."""
    return {name: f.json_schema_extra[UNIT_KEY] for name, f in model.model_fields.items()
            if isinstance(f.json_schema_extra, dict) and UNIT_KEY in f.json_schema_extra}


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class SplitSpec(Strict):
    """Many-shot: train count > ``many``; few-shot: count < ``few``; medium: the rest. ``None``
    (the default): the dataset's default (``ltsearch.data.longtail.default_splits``: > 100 / < 20
    for CIFAR-100-LT, ImageNet-LT and iNaturalist, else thirds of the log-count range)."""

    many: int | None = Field(None, ge=0)
    few: int | None = Field(None, ge=0)


class DataSpec(Strict):
    dataset: str = "digits"
    imbalance: float = Field(100.0, ge=1.0)
    profile: Literal["exp", "step"] = "exp"
    root: str | None = None
    subset_seed: int = 0
    max_per_class: int | None = None
    val_per_class: int | None = None
    splits: SplitSpec = SplitSpec()
    options: dict[str, Any] = {}


class ModelSpec(Strict):
    """``arch``: a registered model, or ``auto`` (the dataset's usual model, ``ltsearch.models.auto``)."""

    arch: str = "auto"
    head: Literal["auto", "linear", "normed"] = "auto"
    options: dict[str, Any] = {}


class MethodSpec(BaseModel):
    """``name`` picks the method; the remaining keys are that method's parameters, validated by
    the method's own ``Params`` model (see ``ltsearch.methods``)."""

    model_config = ConfigDict(extra="allow")
    name: str = "single"

    def params(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class OptimSpec(Strict):
    name: Literal["sgd", "adam", "adamw"] = "sgd"
    lr: float = Field(0.1, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = False
    weight_decay: float = Field(2e-4, ge=0)
    batch_size: int = Field(128, ge=1)
    epochs: int = Field(200, ge=1, json_schema_extra={UNIT_KEY: "epochs"})
    warmup: int = epochs_field(5)
    lr_schedule: Literal["step", "cosine", "constant"] = "step"
    milestones: list[int] = switch_field([160, 180])
    lr_decay: float = Field(0.01, gt=0, le=1)


def lr_at(optim: OptimSpec, epoch: int) -> float:
    """Linear warm-up over ``warmup`` epochs, then step decay (×``lr_decay`` at each milestone)
    or cosine decay to 0, per epoch (LDAM-DRW's recipe: warm-up 5, ×0.01 at 160 and 180)."""
    if epoch < optim.warmup:
        return optim.lr * (epoch + 1) / optim.warmup
    if optim.lr_schedule == "step":
        return optim.lr * optim.lr_decay ** sum(epoch >= m for m in optim.milestones)
    if optim.lr_schedule == "cosine":
        span = max(optim.epochs - optim.warmup, 1)
        return 0.5 * optim.lr * (1 + math.cos(math.pi * (epoch - optim.warmup) / span))
    return optim.lr


class EvalSpec(Strict):
    checkpoint_rule: Literal["last", "best_val"] = "last"
    test_every: int = Field(0, ge=0)
    batch_size: int = Field(512, ge=1)
    save_model: bool = True  # RUN_DIR/models/<trial_id>.pt: the tested weights (for --from, stage 2)


class FastSpec(Strict):
    """Speed switches (``ltsearch.train.fast``): bf16 autocast (``auto``: on CUDA, never on CPU),
    ``torch.compile`` of the networks, channels-last memory format (``auto``: for conv nets)."""

    amp: bool | Literal["auto"] = "auto"
    compile: bool = False
    channels_last: bool | Literal["auto"] = "auto"


class ExperimentSpec(Strict):
    data: DataSpec = DataSpec()
    model: ModelSpec = ModelSpec()
    method: MethodSpec = MethodSpec()
    optim: OptimSpec = OptimSpec()
    eval: EvalSpec = EvalSpec()
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    fast: FastSpec = FastSpec()
    # torch's CPU threads in the trial's process: the order of a parallel sum changes the numbers on
    # CPU, so the count is part of the trial's identity; auto: resources.cpus_per_worker (at least 1)
    threads: int | Literal["auto"] = "auto"

    @field_validator("threads")
    @classmethod
    def _threads(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("give at least 1 thread, or auto")
        return v


_DIST_KEYS = ("grid", "choice", "uniform", "loguniform", "int")


class Dist(Strict):
    """One searched parameter: exactly one of grid / choice / uniform / loguniform / int."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    grid: list[Any] | None = None
    choice: list[Any] | None = None
    uniform: tuple[float, float] | None = None
    loguniform: tuple[float, float] | None = None
    int_: tuple[int, int] | None = Field(None, alias="int")
    when: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> "Dist":
        given = [k for k in _DIST_KEYS if self.values_for(k) is not None]
        if len(given) != 1:
            raise ValueError(f"give exactly one of {', '.join(_DIST_KEYS)} (got {given or 'none'})")
        if self.loguniform is not None and min(self.loguniform) <= 0:
            raise ValueError("loguniform bounds must be > 0")
        for k in ("uniform", "loguniform", "int_"):
            lo_hi = getattr(self, k)
            if lo_hi is not None and lo_hi[0] >= lo_hi[1]:
                raise ValueError(f"{k.rstrip('_')}: lower bound must be below upper bound")
        for k in ("grid", "choice"):
            if getattr(self, k) == []:
                raise ValueError(f"{k}: give at least one value")
        return self

    def values_for(self, key: str) -> Any:
        return getattr(self, "int_" if key == "int" else key)

    @property
    def kind(self) -> str:
        return next(k for k in _DIST_KEYS if self.values_for(k) is not None)

    def candidates(self) -> list[Any]:
        """Values that must all validate: every grid/choice value, or the bounds."""
        return list(self.values_for(self.kind))


def space_order(space: dict[str, "Dist"]) -> list[str]:
    """The keys of ``space`` with every key after the searched keys its ``when`` names (the YAML's
    order otherwise kept), so conditions do not depend on the order the keys are written in; a
    key conditional on itself, or a cycle of conditions, is a ``ValueError`` naming the keys."""
    for key, d in space.items():
        if key in (d.when or {}):
            raise ValueError(f"{key}.when: a parameter cannot be conditional on itself")
    sorter: graphlib.TopologicalSorter = graphlib.TopologicalSorter()
    for key, d in space.items():  # insertion order: keys that depend on nothing keep the YAML's order
        sorter.add(key, *[w for w in (d.when or {}) if w in space])
    try:
        return list(sorter.static_order())
    except graphlib.CycleError as err:
        cycle = " -> ".join(err.args[1])
        raise ValueError(f"the when: conditions form a cycle ({cycle}: each key's when names the key "
                         "before it); a conditional parameter cannot depend on itself through others") from None


class RaceSpec(Strict):
    """Seed racing (``search.race``, ``ltsearch.tune.race``): every configuration starts with
    ``min_seeds`` seeds; a seed is added only to configurations whose ``confidence`` Student-t
    interval of the mean ``search.metric`` still overlaps the best configuration's, until the best
    is the only one left or they reach ``max_seeds``. The seeds are the first ``max_seeds`` of
    ``search.seeds`` (default ``0 .. max_seeds - 1``)."""

    min_seeds: int = Field(2, ge=2)
    max_seeds: int = Field(10, ge=2)
    confidence: float = Field(0.95, gt=0, lt=1)

    @model_validator(mode="after")
    def _bounds(self) -> "RaceSpec":
        if self.max_seeds < self.min_seeds:
            raise ValueError(f"max_seeds ({self.max_seeds}) must be at least min_seeds ({self.min_seeds})")
        return self


Mode = Literal["max", "min"]


class SearchSpec(Strict):
    algorithm: Literal["grid", "random", "optuna"] = "grid"
    sampler: Literal["tpe", "cmaes", "gp", "random"] = "tpe"
    space: dict[str, Dist] = {}
    seeds: list[int] = [0]
    # the long-tailed subset's draw (experiment.data.subset_seed) as a second seed: every
    # configuration is repeated over these subsets x search.seeds (None: the experiment's own subset)
    subset_seeds: list[int] | None = None
    num_samples: int = Field(1, ge=1)
    metric: str | list[str] = "val_acc"  # a list of two or more: a multi-objective Optuna search
    mode: Mode | list[Mode] = "max"  # one for every metric, or one per metric
    scheduler: Literal["none", "asha"] = "none"
    grace_period: int | None = Field(None, ge=1)
    reduction_factor: float = Field(3.0, gt=1)
    max_concurrent: int | None = Field(None, ge=1)
    max_failures: int = Field(0, ge=0)
    seed: int = 0
    checkpoint_every: int = Field(1, ge=0)
    reuse_actors: bool = True
    initial: list[dict[str, Any]] = []  # optuna: configurations to evaluate first (points_to_evaluate)
    # Ray Tune result loggers; json (result.json per trial) by default, so Ray's ExperimentAnalysis /
    # ResultGrid on RUN_DIR/_tune have every trial's metrics; [] writes none (Parquet is the record)
    loggers: list[Literal["csv", "json", "tensorboard", "mlflow", "wandb"]] = ["json"]
    optuna_storage: str | None = None  # optuna: SQLAlchemy URL of the study (default RUN_DIR/optuna.db) or "memory"
    warm_start: list[str] = []  # optuna: earlier run directories whose ok trials the sampler starts from
    race: RaceSpec | None = None  # seed racing over a grid / random search (RaceSpec)

    @field_validator("optuna_storage")
    @classmethod
    def _storage_url(cls, v: str | None) -> str | None:
        if v is None or v == "memory":
            return v
        from sqlalchemy.engine import make_url
        from sqlalchemy.exc import ArgumentError

        try:
            make_url(v)
        except ArgumentError:
            raise ValueError(f"{v!r} is not a SQLAlchemy URL (e.g. sqlite:///runs/optuna.db, "
                             "postgresql://user@host/db) or 'memory'") from None
        return v

    @field_validator("optuna_storage", "warm_start", mode="after")
    @classmethod
    def _optuna_only(cls, v: Any, info: ValidationInfo) -> Any:
        algorithm = info.data.get("algorithm", "grid")
        if v and algorithm != "optuna":
            raise ValueError(f"only an Optuna search uses it (search.algorithm is {algorithm!r}, not 'optuna')")
        if v and info.field_name == "warm_start" and isinstance(info.data.get("metric"), list):
            raise ValueError("a warm start gives the sampler one value per trial; a multi-objective search "
                             "(search.metric is a list) starts without one")
        return v

    @model_validator(mode="before")
    @classmethod
    def _race_seeds(cls, data: Any) -> Any:
        """A race without ``search.seeds`` races over ``0 .. max_seeds - 1``."""
        if isinstance(data, dict) and isinstance(data.get("race"), dict) and "seeds" not in data:
            data = {**data, "seeds": list(range(int(data["race"].get("max_seeds", 10))))}
        return data

    @field_validator("metric")
    @classmethod
    def _no_test_metric(cls, v: str | list[str], info: ValidationInfo) -> str | list[str]:
        for m in ([v] if isinstance(v, str) else v):
            if m.startswith("test"):
                raise ValueError(
                    f"{m!r} is a test-set metric; search and selection run on the validation split "
                    "(use val_acc, val_many, val_medium, val_few or train_loss)"
                )
        if isinstance(v, list):
            if len(v) < 2 or len(set(v)) != len(v):
                raise ValueError("a list of metrics (a multi-objective search) needs two or more distinct metrics; "
                                 "give one metric as a plain value")
            algorithm = info.data.get("algorithm", "grid")
            if algorithm != "optuna":
                raise ValueError(f"a list of metrics is a multi-objective Optuna search (search.algorithm is "
                                 f"{algorithm!r}; set it to optuna, or give one metric)")
            if info.data.get("sampler") == "cmaes":
                raise ValueError("CMA-ES optimises one objective; a multi-objective search (a list of metrics) "
                                 "runs with search.sampler: tpe, gp or random")
        return v

    @field_validator("mode")
    @classmethod
    def _modes(cls, v: str | list[str], info: ValidationInfo) -> str | list[str]:
        metric = info.data.get("metric")
        if isinstance(v, list) and (not isinstance(metric, list) or len(v) != len(metric)):
            n = len(metric) if isinstance(metric, list) else 1
            raise ValueError(f"give one mode for every metric, or a list of {n} (one per search.metric)")
        return v

    @field_validator("scheduler")
    @classmethod
    def _one_metric_scheduler(cls, v: str, info: ValidationInfo) -> str:
        if v == "asha" and isinstance(info.data.get("metric"), list):
            raise ValueError("asha stops trials on one metric; a multi-objective search (search.metric is a list) "
                             "runs with scheduler: none")
        return v

    @field_validator("subset_seeds")
    @classmethod
    def _subset_seeds(cls, v: list[int] | None, info: ValidationInfo) -> list[int] | None:
        if v is not None and (not v or len(set(v)) != len(v)):
            raise ValueError("give at least one subset seed, without repeats (or leave it out)")
        if v is not None and "data.subset_seed" in (info.data.get("space") or {}):
            raise ValueError("search.space also searches data.subset_seed; give the subsets in one place "
                             "(search.subset_seeds)")
        return v

    @field_validator("race")
    @classmethod
    def _race(cls, v: RaceSpec | None, info: ValidationInfo) -> RaceSpec | None:
        if v is None:
            return v
        d = info.data
        if d.get("algorithm", "grid") not in ("grid", "random"):
            raise ValueError(f"a race runs over the finite list of configurations of a grid or random search "
                             f"(search.algorithm is {d.get('algorithm')!r})")
        if isinstance(d.get("metric"), list):
            raise ValueError("a race compares configurations on one metric (search.metric is a list)")
        if d.get("scheduler", "none") != "none":
            raise ValueError("a race needs every trial trained to the end: use scheduler: none")
        seeds = d.get("seeds") or []
        if len(seeds) < v.max_seeds:
            raise ValueError(f"max_seeds is {v.max_seeds} but search.seeds has {len(seeds)}: give at least "
                             f"{v.max_seeds} seeds, or leave search.seeds out (the race then uses 0 .. {v.max_seeds - 1})")
        return v

    @property
    def metrics(self) -> list[str]:
        """``search.metric`` as a list (one entry for a one-metric search)."""
        return [self.metric] if isinstance(self.metric, str) else list(self.metric)

    @property
    def modes(self) -> list[str]:
        """One mode per entry of ``metrics``."""
        return list(self.mode) if isinstance(self.mode, list) else [self.mode] * len(self.metrics)

    @field_validator("space")
    @classmethod
    def _conditions_in_order(cls, v: dict[str, Dist]) -> dict[str, Dist]:
        space_order(v)
        return v

    @field_validator("seeds")
    @classmethod
    def _seeds(cls, v: list[int]) -> list[int]:
        if not v or len(set(v)) != len(v):
            raise ValueError("give at least one seed, without repeats")
        return v


class ResourcesSpec(Strict):
    workers: int = Field(1, ge=1)
    cpus_per_worker: float = Field(1.0, gt=0)
    gpus_per_worker: float = Field(0.0, ge=0)


class Spec(Strict):
    name: str = Field(..., pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    plugins: list[str] = []  # .py files (relative to the spec) or module names that register methods, losses...
    experiment: ExperimentSpec = ExperimentSpec()
    search: SearchSpec = SearchSpec()
    resources: ResourcesSpec = ResourcesSpec()


# --------------------------------------------------------------------------------------- helpers


def set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``tree["a"]["b"]["c"] = value`` for ``dotted == "a.b.c"``, creating dicts on the way."""
    keys = dotted.split(".")
    node = tree
    for k in keys[:-1]:
        nxt = node.get(k)
        if nxt is None:
            nxt = node[k] = {}
        if not isinstance(nxt, dict):
            raise UserError(f"{dotted}: {k!r} is a value, not a section; cannot set {dotted}")
        node = nxt
    node[keys[-1]] = value


def get_path(tree: dict[str, Any], dotted: str, default: Any = None) -> Any:
    node: Any = tree
    for k in dotted.split("."):
        if not isinstance(node, dict) or k not in node:
            return default
        node = node[k]
    return node


def parse_override(text: str) -> tuple[str, Any]:
    """``"experiment.optim.lr=0.05"`` -> ``("experiment.optim.lr", 0.05)`` (value parsed as YAML)."""
    if "=" not in text:
        raise UserError(f"--set {text!r}: expected key=value, e.g. --set experiment.optim.lr=0.05")
    key, raw = text.split("=", 1)
    key = key.strip()
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    return key, value


def parse_seed_list(text: str) -> list[int]:
    """``--seeds 0,1,2`` of a command (``ablate``, ``reproduce``): distinct integers, at least one."""
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--seeds {text!r}: give comma-separated integers, e.g. --seeds 0,1,2") from None
    if not seeds or len(set(seeds)) != len(seeds):
        raise UserError(f"--seeds {text!r}: give at least one seed, without repeats")
    return seeds


def validate_spec_dict(raw: dict[str, Any], source: str = "spec") -> Spec:
    plugins = raw.get("plugins") or []
    if not isinstance(plugins, list) or not all(isinstance(p, str) for p in plugins):
        raise UserError(f"{source}: plugins: give a list of .py paths or module names")
    load_plugins(plugins)
    try:
        spec = Spec.model_validate(raw)
    except ValidationError as err:
        raise UserError(f"{source}: {format_validation_error(err, root=Spec)}") from None
    check_experiment(spec.experiment, source=source)
    for i, point in enumerate(spec.search.initial):
        unknown = sorted(set(point) - set(spec.search.space))
        if unknown:
            raise UserError(f"{source}: search.initial[{i}]: {unknown[0]!r} is not a key of search.space")
        resolve_experiment(spec.experiment, point, source=f"{source}: search.initial[{i}]")
    for key, dist in spec.search.space.items():
        context = {k: (v[0] if isinstance(v, list) else v) for k, v in (dist.when or {}).items()}
        for value in dist.candidates():  # a conditional parameter is checked where it is active
            resolve_experiment(spec.experiment, {**context, key: value}, source=f"{source}: search.space")
        if dist.when:
            for wkey in dist.when:
                if wkey not in spec.search.space and get_path(spec.experiment.model_dump(), wkey) is None:
                    raise UserError(f"{source}: search.space.{key}.when: {wkey!r} is neither searched nor set")
    return spec


def load_spec(path: str | Path, overrides: Sequence[str] = ()) -> Spec:
    """Read, override (``--set dotted.key=value``) and validate a spec file."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{p}: spec file not found (ls search_spaces/ lists the shipped ones)")
    try:
        raw = yaml.safe_load(p.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise UserError(f"{p}:{where}: invalid YAML: {problem}") from None
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise UserError(f"{p}: the top level must be a mapping with name/experiment/search/resources")
    raw.setdefault("name", p.stem)
    for text in overrides:
        key, value = parse_override(text)
        set_path(raw, key, value)
    if isinstance(raw.get("plugins"), list):  # plugin files are relative to the spec; workers get absolute paths
        raw["plugins"] = [str((p.parent / x).resolve()) if isinstance(x, str) and x.endswith(".py") else x
                          for x in raw["plugins"]]
    return validate_spec_dict(raw, source=str(p))


def spec_from_json(text: str) -> Spec:
    """A spec serialised by the driver (``Spec.model_dump_json``), in a trial process: its plugins
    are imported first, so the registries know what it names."""
    load_plugins(json.loads(text).get("plugins") or [])
    return Spec.model_validate_json(text)


def resolve_experiment(base: ExperimentSpec, params: dict[str, Any], source: str = "") -> ExperimentSpec:
    """Apply searched ``params`` (dotted paths relative to ``experiment``) and re-validate."""
    tree = base.model_dump(by_alias=True)
    for key, value in params.items():
        if key == "seed" or key.startswith("_"):
            continue
        first = key.split(".")[0]
        if first not in ExperimentSpec.model_fields:
            close = difflib.get_close_matches(first, list(ExperimentSpec.model_fields), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(
                f"{source}.{key}: unknown section {first!r}{hint}; paths start with one of "
                f"{', '.join(ExperimentSpec.model_fields)} (e.g. method.gamma, optim.lr)"
            )
        set_path(tree, key, value)
    if "seed" in params:
        tree["seed"] = params["seed"]
    try:
        exp = ExperimentSpec.model_validate(tree)
    except ValidationError as err:
        raise UserError(f"{source}: {format_validation_error(err, 'experiment', ExperimentSpec)}") from None
    check_experiment(exp, source=source)
    return exp


def canonical_json(obj: Any) -> str:
    def default(o: Any) -> Any:
        if isinstance(o, float) and math.isnan(o):
            return "nan"
        return str(o)

    return json.dumps(obj, sort_keys=True, default=default, separators=(",", ":"))


def dump_spec(spec: Spec) -> str:
    """The spec as YAML (``RUN_DIR/spec.yaml``), every password in a URL masked (``ltsearch.secrets``)."""
    return mask(yaml.safe_dump(copy.deepcopy(spec.model_dump(by_alias=True, exclude_none=True)), sort_keys=False))
