"""What a model costs to deploy, and whether a trial meets the study's constraints.

Costs are properties of the architecture and the image size, so they are measured before a trial
trains, on a model built from the trial's model file (Ultralytics' own builder, offline):

- ``params``: parameters of the built detection model (the data's class count);
- ``gflops``: GFLOPs of one image at the trial's imgsz (Ultralytics' ``get_flops``, thop);
- ``latency_ms``: batch 1 at the trial's imgsz, the model fused (conv+bn, as Ultralytics predicts)
  and in eval mode, ``warmup`` untimed runs, then the **median** of ``runs`` timed runs, on the
  deploy device (``latency.device: cpu``, the default, with ``latency.threads`` torch threads, 1 by
  default: several threads on a CPU shared with trainings swing the median tenfold) or the
  training device (``train``); CUDA runs under bf16 autocast where the GPU has it, else fp16, and are
  synchronised around each run; CPU runs in fp32;
- ``weights_mb``: before training an estimate (2 bytes per parameter: the fp16 weights Ultralytics
  strips ``best.pt`` to), after training the size of the trial's stripped ``best.pt`` (MB = 1e6 bytes).

A constraint known before training (``params``, ``gflops``, ``latency_ms``, a ``weights_mb`` maximum
already broken by the estimate) stops the trial before it trains: it is pruned, marked infeasible and
``hpo:untrained``, and does not count against the trial budget (a capped number of such refusals per
budgeted trial is allowed, see :mod:`hpo.search.worker`).
Each constraint becomes one number, its violation relative to the bound (``<= 0``: met), set once on
the trial with Optuna's public ``Trial.set_constraint(metric, value)``. TPE, NSGA-II and GP read
these from every trial (``FrozenTrial.constraints``) without a ``constraints_func``, which Optuna 5.0
deprecates (it would also store the values a second time); ``study.best_trials`` then holds feasible
trials only. The GA reads the same values (:func:`total_violation`). ``feasible`` and ``violations``
(user attributes) say it in words, for ``hpo status`` and the report.
"""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import optuna

from hpo import attrs

if TYPE_CHECKING:
    from hpo.spec import StudySpec

#: Costs a trial knows before it trains (weights_mb: as a lower-bound estimate, for ``max`` only).
KNOWN_BEFORE_TRAINING = ("params", "gflops", "latency_ms")
FP16_BYTES = 2


class Infeasible(optuna.TrialPruned):
    """A trial refused before training because a cost known up front breaks a constraint.

    Recorded as PRUNED (what samplers understand) and marked ``hpo:untrained``: it does not count
    against the study's trial budget (:func:`hpo.study.progress`).
    """


@dataclass(frozen=True)
class Latency:
    """One latency measurement: the median of ``runs`` timed forward passes, and how it was taken."""

    median_ms: float
    runs: int
    warmup: int
    device: str
    dtype: str
    threads: int
    imgsz: int
    times_ms: tuple[float, ...]


def build_model(model: str, nc: int) -> Any:
    """The detection model of ``model`` (a yaml name Ultralytics resolves, or a local .pt), in eval mode."""
    from hpo.offline import import_ultralytics

    import_ultralytics()
    if model.endswith(".pt"):
        from ultralytics import YOLO

        module = YOLO(model).model
    else:
        from ultralytics.nn.tasks import DetectionModel

        module = DetectionModel(model, ch=3, nc=nc, verbose=False)
    return module.float().eval()


def trained_imgsz(module: Any, imgsz: int) -> int:
    """The size Ultralytics really trains and predicts at: ``imgsz`` rounded up to the model's stride."""
    stride = max(int(getattr(module, "stride", [32]).max()) if hasattr(module, "stride") else 32, 32)
    return max(stride, math.ceil(imgsz / stride) * stride)


def model_costs(module: Any, imgsz: int) -> dict[str, float]:
    """Parameters and GFLOPs of a built model at ``imgsz``."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    return {"params": int(get_num_params(module)), "gflops": round(float(get_flops(module, imgsz)), 4)}


def measure_latency(module: Any, imgsz: int, *, device: str = "cpu", runs: int = 20, warmup: int = 5,
                    threads: int | None = None) -> Latency:
    """Median latency of one image (batch 1, ``imgsz`` square) through ``module`` on ``device``.

    ``threads``: torch's CPU threads for the measurement (restored afterwards); None keeps the current.
    """
    import torch

    before = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        return _measure(module, imgsz, device, runs, warmup)
    finally:
        torch.set_num_threads(before)


def _measure(module: Any, imgsz: int, device: str, runs: int, warmup: int) -> Latency:
    import contextlib

    import torch

    cuda = device not in ("cpu", "") and torch.cuda.is_available()
    target = torch.device(f"cuda:{device}" if cuda and device.isdigit() else device if cuda else "cpu")
    if hasattr(module, "fuse"):
        module = module.fuse(verbose=False) if "verbose" in module.fuse.__code__.co_varnames else module.fuse()
    module = module.to(target).eval()
    image = torch.rand(1, 3, imgsz, imgsz, device=target)
    if cuda:
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        autocast: Any = lambda: torch.autocast("cuda", dtype=dtype)  # noqa: E731
        dtype_name = str(dtype).removeprefix("torch.")
    else:
        autocast = contextlib.nullcontext
        dtype_name = "float32"

    def once() -> float:
        if cuda:
            torch.cuda.synchronize(target)
        start = time.perf_counter()
        with autocast():
            module(image)
        if cuda:
            torch.cuda.synchronize(target)
        return (time.perf_counter() - start) * 1000.0

    times = []
    with torch.inference_mode():
        for _ in range(warmup):
            once()
        for _ in range(runs):
            times.append(once())
    return Latency(median_ms=round(statistics.median(times), 4), runs=runs, warmup=warmup, device=str(target),
                   dtype=dtype_name, threads=torch.get_num_threads(), imgsz=imgsz,
                   times_ms=tuple(round(t, 4) for t in times))


def weights_mb(path: Path) -> float:
    return round(Path(path).stat().st_size / 1e6, 4)


def violation(value: float | None, bound: Any) -> float:
    """How far ``value`` breaks ``bound`` (relative to the bound where it is not 0); <= 0: met."""
    if value is None or not math.isfinite(value):
        return 0.0  # not measured (yet): nothing to hold against the trial
    worst = -math.inf
    for limit, over in ((bound.max, value - (bound.max or 0)), (bound.min, (bound.min or 0) - value)):
        if limit is not None:
            worst = max(worst, over / abs(limit) if limit else over)
    return round(worst, 6)


def constraint_values(spec: StudySpec, measured: dict[str, Any]) -> list[float]:
    """One violation per constraint of ``spec``, in its order."""
    return [violation(measured.get(name), bound) for name, bound in spec.constraints.items()]


def violations_text(spec: StudySpec, measured: dict[str, Any]) -> list[str]:
    out = []
    for (name, bound), v in zip(spec.constraints.items(), constraint_values(spec, measured)):
        if v > 0:
            value = measured[name]
            side = f"> max {bound.max:g}" if bound.max is not None and value > bound.max else f"< min {bound.min:g}"
            out.append(f"{name} {value:.6g} {side}")
    return out


def stored_constraints(trial: optuna.trial.FrozenTrial) -> Sequence[float]:
    """The violations set on the trial (none set: none broken), as a ``constraints_func`` would return."""
    return list(trial.constraints.values())


def total_violation(trial: optuna.trial.FrozenTrial) -> float:
    """Sum of the broken constraints' violations (0: feasible, or no constraints)."""
    return float(sum(max(0.0, v) for v in stored_constraints(trial)))


def objective_values(spec: StudySpec, measured: dict[str, Any]) -> list[float]:
    """The trial's values, one per objective, from its best epoch's metrics and its costs."""
    values = []
    for objective in spec.objectives:
        value = measured.get(objective.metric)
        if value is None or not math.isfinite(float(value)):
            raise ValueError(f"objective {objective.metric} is {value}")
        values.append(float(value))
    return values


class CostMeter:
    """Measures and records a study's costs and constraints for the trials of one worker.

    Measurements are cached per (model, imgsz): the architecture decides them, not the hyps.
    """

    def __init__(self, spec: StudySpec, *, train_device: str | None = None) -> None:
        self.spec = spec
        self.device = "cpu" if spec.latency.device == "cpu" else (train_device or "cpu")
        self._cache: dict[tuple[str, int], dict[str, Any]] = {}

    @property
    def active(self) -> bool:
        return bool(self.spec.cost_metrics() or self.spec.constraints)

    def costs(self, params: dict[str, Any]) -> dict[str, Any]:
        """params, gflops, estimated weights_mb and (if the study needs it) latency_ms of ``params``' model."""
        model = self.spec.resolved_model(params.get("model"))
        imgsz = self.spec.imgsz(params)
        key = (model, imgsz)
        if key not in self._cache:
            module = build_model(model, _class_count(self.spec))
            imgsz = trained_imgsz(module, imgsz)
            costs: dict[str, Any] = model_costs(module, imgsz)
            costs["weights_mb"] = round(costs["params"] * FP16_BYTES / 1e6, 4)
            detail: dict[str, Any] = {"imgsz": imgsz, "weights_mb_source": "estimate (fp16 parameters)"}
            if "latency_ms" in self.spec.cost_metrics():
                lat = measure_latency(module, imgsz, device=self.device, runs=self.spec.latency.runs,
                                      warmup=self.spec.latency.warmup, threads=self.spec.latency.threads)
                costs["latency_ms"] = lat.median_ms
                detail.update({k: v for k, v in asdict(lat).items() if k not in ("median_ms", "times_ms")})
            costs["detail"] = detail
            self._cache[key] = costs
        return dict(self._cache[key])

    def before_training(self, trial: optuna.Trial, params: dict[str, Any]) -> dict[str, Any]:
        """Measure and record the costs; raise :class:`optuna.TrialPruned` if a known one breaks a constraint."""
        if not self.active:
            return {}
        costs = self.costs(params)
        detail = costs.pop("detail")
        for name in ("params", "gflops", "weights_mb", "latency_ms"):
            if name in costs:
                trial.set_user_attr(name, costs[name])
        trial.set_user_attr(attrs.COST, detail)
        known = {k: costs[k] for k in KNOWN_BEFORE_TRAINING if k in costs}
        if "weights_mb" in self.spec.constraints and self.spec.constraints["weights_mb"].max is not None \
                and costs["weights_mb"] > self.spec.constraints["weights_mb"].max:
            known["weights_mb"] = costs["weights_mb"]  # even the lower bound is too big
        broken = violations_text(self.spec, known)
        if broken:
            self._record(trial, known)
            trial.set_user_attr(attrs.UNTRAINED, True)  # refused, not trained: outside the budget
            raise Infeasible(f"infeasible before training: {'; '.join(broken)}")
        return costs

    def after_training(self, trial: optuna.Trial, metrics: dict[str, Any], costs: dict[str, Any],
                       best_pt: Path | None) -> list[float]:
        """Record the final costs and constraints; the trial's objective values."""
        measured = {**metrics, **costs}
        if self.active and best_pt is not None and best_pt.is_file():
            measured["weights_mb"] = weights_mb(best_pt)
            trial.set_user_attr(attrs.WEIGHTS_MB, measured["weights_mb"])
            detail = dict(trial.user_attrs.get(attrs.COST) or {})
            detail["weights_mb_source"] = "best.pt (fp16, stripped)"
            trial.set_user_attr(attrs.COST, detail)
        if self.spec.constraints:
            self._record(trial, measured)
        return objective_values(self.spec, measured)

    def _record(self, trial: optuna.Trial, measured: dict[str, Any]) -> None:
        if not self.spec.constraints:
            return
        broken = violations_text(self.spec, measured)
        for name, value in zip(self.spec.constraints, constraint_values(self.spec, measured)):
            trial.set_constraint(name, value)  # once per trial: Optuna ignores a second value
        trial.set_user_attr(attrs.FEASIBLE, not broken)
        trial.set_user_attr(attrs.VIOLATIONS, broken)


def _class_count(spec: StudySpec) -> int:
    """Classes of the study's data (the detection head's size); 80 if the data yaml cannot be read."""
    from hpo import yamlio

    try:
        names = yamlio.load(spec.resolved_data()).get("names")
    except Exception:  # noqa: BLE001 - costs only need a plausible head; the data check says what is wrong
        return 80
    return len(names) if isinstance(names, (list, dict)) and names else 80
