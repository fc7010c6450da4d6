"""A stand-in for YOLO training, for tests and benchmarks of the machinery around trials.

:func:`curve_value` is the one synthetic learning curve hpo has (the benchmarks' no-op trials use it
too). ``LearningCurveTrainer`` behaves like :class:`hpo.search.trial_runner.TrialRunner` from the worker's point
of view (per-epoch reports, pruning, stop requests, ``last.pt`` checkpoints a retry resumes from) but
each "epoch" is a deterministic learning-curve value and an optional sleep. Never used for a real
study: `hpo worker --trainer curve` is a hidden option.
"""

from __future__ import annotations

import math
import threading
import time
from pathlib import Path
from typing import Any

import optuna

from hpo import attrs
from hpo.search.retry import resume_point
from hpo.search.cost import CostMeter
from hpo.search.trial_runner import StopRequested, log_epoch, suggest_params, trial_dir
from hpo.spec import ACCURACY_METRICS, StudySpec


def curve_value(spec: StudySpec, params: dict[str, Any], epoch: int) -> float:
    """Quality of the params (peak at 60% of each range, log-aware) times a saturating curve."""
    distance = 0.0
    for name, dist in spec.distributions().items():
        value = params[name]
        if isinstance(dist, optuna.distributions.CategoricalDistribution):
            distance += 0.0 if dist.choices.index(value) == 0 else 0.05
            continue
        low, high = float(dist.low), float(dist.high)
        if getattr(dist, "log", False):
            u = (math.log(value) - math.log(low)) / (math.log(high) - math.log(low))
        else:
            u = (value - low) / (high - low)
        distance += (u - 0.6) ** 2
    quality = math.exp(-4.0 * distance)
    return round(quality * (1.0 - math.exp(-epoch / 3.0)), 6)


class LearningCurveTrainer:
    """Trains nothing: reports :func:`curve_value` per epoch, honours pruning, stop requests and resumes."""

    def __init__(self, spec: StudySpec, *, runs_dir: Path, epoch_seconds: float = 0.0,
                 stop_event: threading.Event | None = None) -> None:
        self.spec = spec
        self.runs_dir = Path(runs_dir).resolve()
        self.epoch_seconds = epoch_seconds
        self.stop_event = stop_event or threading.Event()
        self.cost = CostMeter(spec)  # real costs of the sampled model (built, not trained)

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        import torch

        params = suggest_params(trial, self.spec)
        costs = self.cost.before_training(trial, params)
        metrics: list[dict[str, float]] = []
        save_dir = trial_dir(self.runs_dir, self.spec.name, trial.number)
        resume = resume_point(trial)
        if resume is not None:
            checkpoint, done = resume
            save_dir = checkpoint.parent.parent
            metrics = list(trial.user_attrs.get(attrs.EPOCH_METRICS, []))[:done]
        trial.set_user_attr(attrs.DIR, str(save_dir))
        (save_dir / "weights").mkdir(parents=True, exist_ok=True)
        for epoch in range(len(metrics) + 1, self.spec.epochs + 1):
            deadline = time.monotonic() + self.epoch_seconds
            while time.monotonic() < deadline:
                if self.stop_event.is_set():
                    raise StopRequested("worker asked to stop")
                time.sleep(min(0.05, max(0.0, deadline - time.monotonic())))
            value = curve_value(self.spec, params, epoch)
            metrics.append({self.spec.objective.metric: value})
            torch.save({"epoch": epoch - 1, "optimizer": {}}, save_dir / "weights" / "last.pt")
            log_epoch(trial, epoch, self.spec.epochs, self.spec.objective.metric, value)
            trial.set_user_attr(attrs.EPOCH_METRICS, metrics)
            trial.set_user_attr(attrs.EPOCHS, epoch)
            if not self.spec.multi_objective:
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
        values = [m[self.spec.objective.metric] for m in metrics]
        best = max(values) if self.spec.objective.direction == "maximize" else min(values)
        if not self.cost.active and not self.spec.multi_objective:
            return best
        stand_in = {name: best for name in ACCURACY_METRICS}  # the curve stands in for every accuracy metric
        for name, value in stand_in.items():
            trial.set_user_attr(name, value)
        result = self.cost.after_training(trial, stand_in, costs, None)
        return result if self.spec.multi_objective else result[0]
