"""Study specifications: one YAML file per study, validated on load.

A spec says what to train (model, weights, data, fixed training arguments), what to optimise (the
objective), where to search (the search space, with optional GA gains), where to start (base hyps),
how (default sampler and pruner), how long (trial and epoch budgets) and how to finish (retrain settings).

The validated spec is stored with the study (a study attribute), so workers, ``status``, ``export``
and ``retrain`` work from the storage alone.
"""

from __future__ import annotations

import os
import re
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import optuna
from pydantic import (BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator,
                      model_validator)

from hpo import hyps
from hpo import yamlio
from hpo.errors import HpoError, shown
from hpo.optuna_compat import contains
from hpo.search.pruners import PRUNERS
from hpo.search.samplers import SAMPLERS, sampler_problem


#: The one search-space name that is no training argument: the model (architecture) a trial builds.
SEARCHED_MODEL = "model"

#: True while a spec read back from a storage is validated: its values passed Ultralytics' checks
#: when the study was created, and re-checking them imports torch (seconds for every `hpo status`).
_STORED_SPEC: ContextVar[bool] = ContextVar("hpo_stored_spec", default=False)

_ENV_PATTERN = re.compile(r"\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?::-(?P<default>[^}]*))?\}")


def expand_env(value: str) -> str:
    """Expand ``${VAR}`` and ``${VAR:-default}`` so a study file can name machine-local paths."""

    def repl(match: re.Match[str]) -> str:
        got = os.environ.get(match["name"])
        if got:
            return got
        return match["default"] if match["default"] is not None else ""

    return _ENV_PATTERN.sub(repl, value)


def _check_range(low: float, high: float, log: bool) -> None:
    if low >= high:
        raise ValueError(f"low must be below high (low={low}, high={high})")
    if log and low <= 0:
        raise ValueError(f"log scale needs low > 0 (low={low})")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class FloatParam(_Strict):
    type: Literal["float"] = "float"
    low: float
    high: float
    log: bool = False
    step: float | None = None
    gain: float | None = Field(default=None, ge=0, description="GA mutation gain (YOLOv5 table)")

    @model_validator(mode="after")
    def _check_bounds(self) -> FloatParam:
        _check_range(self.low, self.high, self.log)
        if self.log and self.step is not None:
            raise ValueError("step cannot be combined with log")
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.FloatDistribution(self.low, self.high, log=self.log, step=self.step)


class IntParam(_Strict):
    type: Literal["int"]
    low: int
    high: int
    log: bool = False
    step: int = 1
    gain: float | None = Field(default=None, ge=0)

    @model_validator(mode="after")
    def _check_bounds(self) -> IntParam:
        _check_range(self.low, self.high, self.log)
        return self

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.IntDistribution(self.low, self.high, log=self.log, step=self.step)


class CategoricalParam(_Strict):
    type: Literal["categorical"]
    choices: list[Union[bool, int, float, str]] = Field(min_length=2)
    gain: float | None = Field(default=None, ge=0)

    @field_validator("choices")
    @classmethod
    def _unique(cls, choices: list[Any]) -> list[Any]:
        if len(set(map(repr, choices))) != len(choices):
            raise ValueError("choices must be unique")
        return choices

    def distribution(self) -> optuna.distributions.BaseDistribution:
        return optuna.distributions.CategoricalDistribution(self.choices)


Param = Annotated[Union[FloatParam, IntParam, CategoricalParam], Field(discriminator="type")]


#: Metrics of a trial's best epoch (validation) and what a trained model costs to deploy
#: (measured by :mod:`hpo.search.cost`). Objectives and constraints name these.
ACCURACY_METRICS = ("fitness", "map75", "map50", "map50-95", "precision", "recall")
COST_METRICS = ("latency_ms", "params", "gflops", "weights_mb")
AccuracyMetric = Literal["fitness", "map75", "map50", "map50-95", "precision", "recall"]
Metric = Literal["fitness", "map75", "map50", "map50-95", "precision", "recall",
                 "latency_ms", "params", "gflops", "weights_mb"]


class ObjectiveSpec(_Strict):
    """One objective: a metric of the trial (its best epoch's, or its model's cost), and which way is better."""

    metric: Metric = "fitness"
    direction: Literal["maximize", "minimize"] = "maximize"


class Bound(_Strict):
    """A constraint on one metric: ``min`` and/or ``max`` (inclusive)."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _some(self) -> Bound:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self


class LatencySpec(_Strict):
    """How ``latency_ms`` is measured: batch 1 at the study's imgsz, ``warmup`` untimed runs, then the
    median of ``runs`` timed ones, on the deploy device (``cpu``) or the training device (``train``)."""

    device: Literal["cpu", "train"] = "cpu"
    runs: int = Field(default=20, gt=0)
    warmup: int = Field(default=5, ge=0)
    threads: int = Field(default=1, gt=0, description="torch CPU threads while measuring on the CPU (several "
                         "threads on a CPU shared with trainings make the median swing tenfold)")


class NoiseSpec(_Strict):
    """How much the objective moves when only the training seed changes (base hyps, several seeds).

    Measured once per problem; with it, ``hpo status`` says whether the best trial's gain over the
    base hyps is real (a few times this) or seed luck (about this).
    """

    std: float = Field(gt=0, description="sample standard deviation of the objective over training seeds")
    source: str = Field(default="", description="how and where it was measured")
    per_epoch: list[Annotated[float, Field(gt=0)]] | None = Field(
        default=None, description="the same std of the best objective up to each epoch (epoch 1 first): the "
                                  "base/incumbent pruners' margin at that epoch, where mid-training values swing "
                                  "far more than the final one")


class GASpec(_Strict):
    """Settings of the ``ga`` sampler (YOLOv5's evolve GA); other samplers ignore them.

    YOLOv5's parent selection (one parent from the top 5) with, by default, Ultralytics 8.4's bounded
    step, a share of each gene's range: in benchmark 4 it beat YOLOv5's multiplicative step on every
    seed and reached model.tune()'s median best with a quarter of its epochs. ``mutation: yolov5``
    reproduces YOLOv5's evolve exactly (see :mod:`hpo.search.samplers.ga`).
    """

    mutation: Literal["yolov5", "bounded"] = Field(default="bounded", description="bounded: a share of the "
                                                   "gene's range (Ultralytics 8.4); yolov5: multiplicative")
    top_n: int = Field(default=5, gt=0, description="the best trials one parent is drawn from")
    mutation_prob: float | None = Field(default=None, gt=0, le=1, description="chance that a gene moves "
                                        "(default 0.8 for yolov5, 0.5 for bounded)")
    sigma: float = Field(default=0.2, gt=0, description="step scale: of the factor (yolov5), of the range "
                         "(bounded)")


class ScreenSpec(_Strict):
    """Settings of the ``screen`` pruner: every trial first trains a short full schedule (warm-up and
    learning-rate decay compressed into ``epochs``), and only the best ``keep`` share of the trials
    screened so far go on to the study's full training. Near the base hyps a short schedule ranks
    trials better than the same first epochs of a full one (bench/results.md, section 12)."""

    epochs: int = Field(default=3, gt=0, description="epochs of the screening schedule (fewer than the study's)")
    keep: float = Field(default=0.25, gt=0, lt=1, description="share of the screened trials that train in full: "
                        "a trial goes on if its screen value ranks within the top keep of all screen values so far")


class Retrain(_Strict):
    data: str | None = Field(default=None, description="data yaml of the full set; default: the study's")
    epochs: int | None = Field(default=None, gt=0)
    top_k: int = Field(default=1, gt=0)
    train: dict[str, Any] = Field(default_factory=dict, description="training arguments overriding the study's")

    @field_validator("train")
    @classmethod
    def _valid_args(cls, named: dict[str, Any]) -> dict[str, Any]:
        return _check_training_args(named)


class BaseImport(_Strict):
    """What a YOLOv5 hyp file given as ``base_from`` brought in: kept with the study, so the file is
    read once (where the study is created) and its left-out keys stay on record."""

    source: str
    imported: dict[str, Any]
    dropped: dict[str, str] = Field(description="YOLOv5 keys not carried over, and why")
    yolov5: dict[str, Any] = Field(description="the file as read, for an export back to YOLOv5")

    def warning_lines(self) -> list[str]:
        return [f"base_from {self.source}: {key}={self.yolov5.get(key)!r} not imported: {why}"
                for key, why in self.dropped.items()]


class StudySpec(_Strict):
    """A validated study definition."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    model: str | None = Field(default=None, description="Ultralytics model yaml (e.g. yolov5m6.yaml) or a local "
                              ".pt; may instead be a categorical dimension of search_space")
    weights: str | dict[str, str] | None = Field(
        default=None, description="local pretrained .pt loaded into the model, or a mapping model -> .pt")
    data: str
    train: dict[str, Any] = Field(default_factory=dict)
    objective: ObjectiveSpec = Field(default=ObjectiveSpec(), description="the primary (first) objective")
    objectives: list[ObjectiveSpec] = Field(default_factory=list, description="every objective, primary first")
    constraints: dict[str, Bound] = Field(default_factory=dict, description="metric -> {min, max}")
    latency: LatencySpec = LatencySpec()
    search_space: dict[str, Param] = Field(min_length=1)
    base: dict[str, Any] = Field(default_factory=dict)
    base_from: str | None = Field(default=None, description="a YOLOv5 hyp.yaml whose values start `base`")
    base_import: BaseImport | None = None
    sampler: str = Field(default="tpe", description="default sampler (a name of hpo.search.samplers.SAMPLERS)")
    pruner: str = Field(default="hyperband", description="default pruner (a name of hpo.search.pruners.PRUNERS)")
    prune_after: int = Field(default=1, gt=0, description="epochs every trial trains before it may be pruned")
    val_fraction: float = Field(default=1.0, gt=0, le=1, description="share of the validation images the "
                                "epochs before the last validate on (pruning signals); the last epoch, whose "
                                "value the trial reports, always validates on all of them")
    trials: int = Field(default=20, gt=0, description="study-wide budget of finished trials")
    epoch_budget: int | None = Field(
        default=None, gt=0, description="study-wide budget of epochs trained, all trials together (the GPU-hour "
                                        "proxy): no trial starts once the finished trials' epochs plus a full "
                                        "trial's for each running one reach it; the study ends at this or "
                                        "`trials`, whichever comes first")
    noise: NoiseSpec | None = Field(default=None, description="the objective's seed-to-seed noise, measured")
    ga: GASpec = Field(default=GASpec(), description="settings of the ga sampler")
    screen: ScreenSpec = Field(default=ScreenSpec(), description="settings of the screen pruner")
    retrain: Retrain = Retrain()

    @model_validator(mode="before")
    @classmethod
    def _import_yolov5_base(cls, data: Any, info: ValidationInfo) -> Any:
        """``base_from: FILE`` (or ``base: FILE``): a YOLOv5 hyp file under the study's own ``base``."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("base"), str):
            if data.get("base_from"):
                raise ValueError("base: give the YOLOv5 hyp file as base_from, and base as a mapping")
            data["base_from"] = data.pop("base")
        source = data.get("base_from")
        if source and data.get("base_import") is None:  # a stored spec carries its import already
            from hpo import yolov5

            path = _find_relative(str(source), (info.context or {}).get("source"))
            try:
                found = yolov5.import_hyps(path)
            except ValueError as exc:
                raise ValueError(f"base_from: {exc}") from None
            explicit = data.get("base") or {}
            if isinstance(explicit, dict):
                data["base"] = {**found.imported, **explicit}
            data["base_import"] = {"source": found.source, "imported": found.imported,
                                   "dropped": found.dropped, "yolov5": found.original}
        return data

    @model_validator(mode="before")
    @classmethod
    def _objectives(cls, data: Any) -> Any:
        """``objective:`` (one) or ``objectives:`` (a list); internally both: ``objective`` is the first.

        Every entry of ``objectives`` names its direction; a multi-objective study defaults to no pruner.
        """
        if not isinstance(data, dict):
            return data
        data = dict(data)
        listed = data.get("objectives")
        if listed is None or listed == []:
            data["objectives"] = [data.get("objective") or {}]
            return data
        if not isinstance(listed, list):
            return data  # pydantic says what is wrong with it
        for i, entry in enumerate(listed):
            if isinstance(entry, dict) and "direction" not in entry:
                raise ValueError(f"objectives.{i}.direction: required field is missing (maximize or minimize)")
        first = listed[0]
        given = data.get("objective")
        if given is not None and isinstance(first, dict) and isinstance(given, dict) \
                and {"metric": "fitness", "direction": "maximize", **given} != {"metric": "fitness", **first}:
            raise ValueError("objective: give either objective (one) or objectives (a list), not both")
        data["objective"] = first
        if len(listed) > 1 and "pruner" not in data:
            data["pruner"] = "none"
        return data

    @field_validator("constraints")
    @classmethod
    def _measured(cls, constraints: dict[str, Bound]) -> dict[str, Bound]:
        known = (*ACCURACY_METRICS, *COST_METRICS)
        for name in constraints:
            if name not in known:
                raise ValueError(f"{name}: is not a measured metric (choose from {', '.join(known)})")
        return constraints

    @field_validator("sampler", "pruner")
    @classmethod
    def _registered(cls, name: str, info: ValidationInfo) -> str:
        registry = SAMPLERS if info.field_name == "sampler" else PRUNERS
        if name not in registry:
            raise ValueError(f"unknown {info.field_name} {name!r} (choose from {', '.join(registry)})")
        return name

    @field_validator("train")
    @classmethod
    def _valid_args(cls, named: dict[str, Any]) -> dict[str, Any]:
        return _check_training_args(named)

    @field_validator("search_space")
    @classmethod
    def _valid_space(cls, space: dict[str, Param]) -> dict[str, Param]:
        for name, param in space.items():
            if name == SEARCHED_MODEL:  # the architecture: a choice of model files, checked when built
                continue
            _check_training_arg(name)
            if isinstance(param, CategoricalParam):
                values = {f"choices.{i}": choice for i, choice in enumerate(param.choices)}
            else:
                values = {"low": param.low, "high": param.high}
            for where, value in values.items():
                if (problem := _value_problem(name, value)) is not None:
                    raise ValueError(f"search_space.{name}.{where}: {problem}")
        return space

    @model_validator(mode="after")
    def _consistent(self) -> StudySpec:
        self._check_objectives()
        self._check_model()
        for name in self.base:
            if not (name == SEARCHED_MODEL and name in self.search_space):
                _check_training_arg(name)
        for name, value in self.base.items():
            origin = (f" (from base_from {self.base_import.source})"
                      if self.base_import and name in self.base_import.imported else "")
            if name in self.search_space:
                dist = self.search_space[name].distribution()
                try:
                    dist.to_internal_repr(value)
                except Exception:
                    raise ValueError(f"base.{name}: {shown(value)} is not a valid value of the search space")
                if not contains(dist, value):
                    raise ValueError(f"base.{name}: {shown(value)} lies outside the search space{origin}")
            if name != SEARCHED_MODEL and (problem := _value_problem(name, value)) is not None:
                raise ValueError(f"base.{name}: {problem}{origin}")
        if self.prune_after > self.epochs:
            raise ValueError(f"prune_after: {self.prune_after} is more than the {self.epochs} training epochs")
        if self.noise is not None and self.noise.per_epoch is not None and len(self.noise.per_epoch) != self.epochs:
            raise ValueError(f"noise.per_epoch: {len(self.noise.per_epoch)} values for {self.epochs} training "
                             "epochs; give one per epoch")
        for name in self.search_space:
            if name in self.train:
                raise ValueError(f"train.{name}: is also in search_space; fix it in one place only")
        searched = self.search_space.get("optimizer")
        optimizers = (list(searched.choices) if isinstance(searched, CategoricalParam)
                      else [self.fixed_args().get("optimizer", "auto")])
        if {"lr0", "momentum"} & set(self.search_space) and "auto" in optimizers:
            raise ValueError("train.optimizer: 'auto' ignores lr0 and momentum; name an optimizer (e.g. SGD)")
        return self

    def _check_objectives(self) -> None:
        seen: set[str] = set()
        for i, objective in enumerate(self.objectives):
            if objective.metric in seen:
                raise ValueError(f"objectives.{i}.metric: {objective.metric!r} is already an objective")
            seen.add(objective.metric)
        if self.objectives[0].metric not in ACCURACY_METRICS:
            raise ValueError(f"objectives.0.metric: the first (primary) objective must be an accuracy metric "
                             f"({', '.join(ACCURACY_METRICS)}); costs come after it")
        if (problem := unfit(self, self.sampler, self.pruner)) is not None:
            raise ValueError(f"{problem[0]}: {problem[1]}")

    def _check_model(self) -> None:
        searched = self.search_space.get("model")
        if searched is None:
            if not self.model:
                raise ValueError("model: required field is missing")
        else:
            if not isinstance(searched, CategoricalParam):
                raise ValueError("search_space.model: must be {type: categorical, choices: [...]}")
            if self.model:
                raise ValueError("model: is also in search_space; fix it in one place only")
        if isinstance(self.weights, dict):
            models = self.model_choices()
            for name in self.weights:
                if name not in models:
                    raise ValueError(f"weights.{name}: is not a model of this study ({', '.join(models)})")

    # --- derived views -------------------------------------------------------------------------

    @property
    def multi_objective(self) -> bool:
        return len(self.objectives) > 1

    @property
    def directions(self) -> list[str]:
        return [o.direction for o in self.objectives]

    def cost_metrics(self) -> list[str]:
        """The cost metrics a trial must measure: those its objectives and constraints name."""
        named = [o.metric for o in self.objectives] + list(self.constraints)
        return [m for m in COST_METRICS if m in named]

    def measured_metrics(self) -> list[str]:
        """Every metric a trial of this study records: the accuracy metrics always; params, gflops and
        weights_mb once any cost is named (the cost meter measures them together); latency_ms only
        where named (it takes time)."""
        costs = self.cost_metrics()
        if costs or self.constraints:
            costs = [m for m in COST_METRICS if m != "latency_ms" or m in costs]
        return [*ACCURACY_METRICS, *costs]

    def model_choices(self) -> list[str]:
        searched = self.search_space.get("model")
        return [str(c) for c in searched.choices] if isinstance(searched, CategoricalParam) else [str(self.model)]

    def imgsz(self, params: dict[str, Any] | None = None) -> int:
        """The image size a trial with ``params`` trains (and is measured) at."""
        chosen = {**self.fixed_args(), **(params or {})}
        return int(chosen.get("imgsz", hyps.ultralytics_defaults()["imgsz"]))

    def distributions(self) -> dict[str, optuna.distributions.BaseDistribution]:
        return {name: p.distribution() for name, p in self.search_space.items()}

    def gains(self) -> dict[str, float]:
        """GA gain per searched hyp: the spec's, else YOLOv5's table, else 1."""
        return {n: p.gain if p.gain is not None else hyps.default_gain(n)
                for n, p in self.search_space.items()}

    def base_params(self) -> dict[str, Any]:
        """Base hyps that lie in the search space: the GA's first individual, every sampler's warm start."""
        return {n: v for n, v in self.base.items() if n in self.search_space}

    def fixed_args(self) -> dict[str, Any]:
        """Training arguments shared by every trial: ``train`` plus base hyps outside the space."""
        fixed = {n: v for n, v in self.base.items() if n not in self.search_space}
        fixed.update(self.train)
        return fixed

    def training_args(self, params: dict[str, Any] | None = None,
                      overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """The Ultralytics training arguments of one run: what ``yolo train cfg=`` needs.

        Model, data (resolved), pretrained weights, the study's fixed arguments, then ``params``
        (the tuned hyps), then ``overrides`` (e.g. a retrain's data and epochs). The one place these
        are assembled: trials, retrains and exports all train exactly what this says.
        """
        chosen: dict[str, Any] = {**self.fixed_args(), **(params or {}), **(overrides or {})}
        model = chosen.pop("model", None)
        args: dict[str, Any] = {"model": self.resolved_model(model),
                                "data": str(self.resolved_data(chosen.pop("data", None)))}
        weights = self.resolved_weights(model)
        if weights is not None:
            args["pretrained"] = str(weights)
        args.update(chosen)
        return args

    def resolved_model(self, name: str | None = None) -> str:
        """A model yaml name as given (Ultralytics resolves it), a local ``.pt`` as an absolute path.

        ``name``: the trial's sampled model where the model is searched (default: the first choice).
        """
        model = expand_env(str(name or self.model or self.model_choices()[0]))
        return str(Path(model).expanduser().resolve()) if model.endswith(".pt") else model

    @property
    def epochs(self) -> int:
        return int(self.train.get("epochs", hyps.ultralytics_defaults()["epochs"]))

    def resolved_data(self, data: str | None = None) -> Path:
        return Path(expand_env(data or self.data)).expanduser().resolve()

    def resolved_weights(self, model: str | None = None) -> Path | None:
        """The pretrained weights of ``model`` (a mapping model -> .pt: that model's, else none)."""
        if not self.weights:
            return None
        raw = self.weights
        if isinstance(raw, dict):
            raw = raw.get(str(model or self.model_choices()[0]))
            if not raw:
                return None
        expanded = expand_env(raw)
        return Path(expanded).expanduser().resolve() if expanded else None

    def check_files(self, source: str | Path = "study") -> None:
        """Fail early, before any training, if the data or the weights are not on this machine."""
        data = self.resolved_data()
        if not data.is_file():
            raise HpoError(f"data yaml {data} not found (run `hpo data prepare` or fix the path)",
                           path=source, field="data")
        for model in self.model_choices():
            self._check_model_files(model, source)

    def _check_model_files(self, name: str, source: str | Path) -> None:
        weights = self.resolved_weights(name)
        if weights is not None and not weights.is_file():
            raise HpoError(
                f"pretrained weights {weights} not found: put the local file there (e.g. yolov5m6u.pt "
                "from the Ultralytics release assets, copied by hand; nothing is downloaded), set the "
                "environment variable the path names, or set `weights: null` to train from scratch",
                path=source, field="weights")
        model = self.resolved_model(name)
        if model.endswith(".pt") and not Path(model).is_file():
            raise HpoError(f"model checkpoint {model} not found", path=source, field="model")

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def render_config(config: dict[str, Any], header: list[str] | tuple[str, ...] = ()) -> str:
    """A training config as ``yolo train cfg=FILE`` reads it: ``# `` comment lines, then the arguments.

    The one renderer of Ultralytics configs: a trial's ``hyp.yaml``, ``hpo export`` and the retrain's
    ``hyp.yaml`` all write :meth:`StudySpec.training_args` through it, so each trains the same thing.
    """
    import yaml

    return "".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False)


def unfit(spec: StudySpec, sampler: str, pruner: str) -> tuple[str, str] | None:
    """Why ``sampler``/``pruner`` cannot run ``spec``'s objectives and constraints, as (field, what), or None.

    The one check behind both the study file's own sampler/pruner and the ones ``hpo launch`` is given.
    """
    if spec.multi_objective and pruner != "none":
        return "pruner", (f"{pruner!r} cannot prune a multi-objective study (Optuna does not prune them, and "
                          "hpo does not prune on the primary objective alone); use pruner: none")
    if pruner == "screen" and spec.screen.epochs >= spec.epochs:
        return "screen.epochs", (f"{spec.screen.epochs} is not fewer than the {spec.epochs} training epochs; the "
                                 "screen pruner's short schedule must be cheaper than the training it screens for")
    problem = sampler_problem(sampler, multi_objective=spec.multi_objective, constrained=bool(spec.constraints))
    return ("sampler", problem) if problem else None


def _find_relative(raw: str, source: Any) -> Path:
    """A path from a study file: as given (working directory), else next to the study file."""
    path = Path(expand_env(raw)).expanduser()
    if not path.is_absolute() and not path.exists() and source and Path(str(source)).is_file():
        beside = Path(str(source)).parent / path
        if beside.exists():
            path = beside
    return path.resolve()


def _check_training_args(named: dict[str, Any]) -> dict[str, Any]:
    """Names and values of fixed training arguments (``train``, ``retrain.train``), as Ultralytics
    would check them in ``model.train()``: a bad value fails the study on load, not every trial."""
    for name in named:
        _check_training_arg(name)
    for name, value in named.items():
        if (problem := _value_problem(name, value)) is not None:
            raise ValueError(f"{name}: {problem}")
    return named


def _value_problem(name: str, value: Any) -> str | None:
    """Ultralytics' verdict on one value; none for a spec read back from a storage (checked at creation)."""
    return None if _STORED_SPEC.get() else hyps.check_value(name, value)


def _check_training_arg(name: str) -> None:
    if name in hyps.YOLOV5_ONLY:
        raise ValueError(f"{name}: does not exist in Ultralytics ({hyps.YOLOV5_ONLY[name]})")
    if name in hyps.RESERVED_ARGS:
        raise ValueError(f"{name}: is set by hpo for every trial and cannot be part of a study")
    if not hyps.is_training_arg(name):
        raise ValueError(f"{name}: is not an Ultralytics training argument")


def _format_error(err: dict[str, Any]) -> tuple[str, str]:
    loc = [str(p) for p in err.get("loc", ()) if p not in ("float", "int", "categorical")]
    msg = str(err.get("msg", "invalid"))
    msg = msg.removeprefix("Value error, ")
    field = ".".join(loc)
    # Our validators put "name: ..." first when they know the field better than pydantic does.
    head, sep, rest = msg.partition(": ")
    if sep and re.fullmatch(r"[A-Za-z0-9_.-]+", head) and " " not in head:
        field = f"{field}.{head}" if field and not head.startswith(field) and "." not in head else head
        msg = rest
    if err.get("type") == "extra_forbidden":
        msg = "unknown field"
    elif err.get("type") == "missing":
        msg = "required field is missing"
    if "input" in err and err.get("type", "").endswith(("_type", "_parsing")):
        msg += f" (got {shown(err['input'])})"
    return field or "<root>", msg


def parse_spec(data: Any, source: str | Path = "<spec>", *, stored: bool = False) -> StudySpec:
    """Validate a spec mapping; the first problem becomes a one-line :class:`HpoError`.

    ``stored``: the spec comes from a study's storage, so its values were checked against
    Ultralytics when the study was created; names and structure are still validated.
    """
    if not isinstance(data, dict):
        raise HpoError("a study file must be a YAML mapping", path=source)
    token = _STORED_SPEC.set(stored)
    try:
        return StudySpec.model_validate(data, context={"source": str(source)})
    except ValidationError as exc:
        field, msg = _format_error(exc.errors()[0])
        raise HpoError(msg, path=source, field=field) from None
    finally:
        _STORED_SPEC.reset(token)


def load_spec(path: str | Path) -> StudySpec:
    """Load and validate a study YAML file (:func:`hpo.yamlio.load`: safe, size and aliases bounded)."""
    path = Path(path)
    if not path.is_file():
        raise HpoError("study file not found", path=path)
    return parse_spec(yamlio.load(path), path)


def find_spec_file(study: str, studies_dir: str | Path = "studies") -> Path:
    """``--study`` takes a path to a YAML file or a study name looked up in ``./studies/``."""
    candidate = Path(study)
    if candidate.suffix in (".yaml", ".yml") or candidate.is_file():
        return candidate
    for suffix in (".yaml", ".yml"):
        path = Path(studies_dir) / f"{study}{suffix}"
        if path.is_file():
            return path
    known = sorted(p.stem for p in Path(studies_dir).glob("*.y*ml")) if Path(studies_dir).is_dir() else []
    hint = f" (known: {', '.join(known)})" if known else ""
    raise HpoError(f"no study file {studies_dir}/{study}.yaml{hint}", field="--study")
