"""``hpo retrain``: the best trials' hyps trained again on the full set, the winner picked there.

A search ranks hyps on a cheap proxy (the mini set, few epochs). This stage pays for the real thing
for the top K of them, with the study's retrain settings (``full.yaml``, more epochs, e.g. a linear
LR), validated every epoch on the real validation set and once more on the kept ``best.pt`` (the
seed picked its final checkpoint on one image). The winner is chosen on those full-set metrics by
:class:`~hpo.final.record.WinnerRule` (``--by METRIC``, default the primary objective; feasible models
only), and with K >= 3 a Spearman coefficient says how well the mini-set ranking predicted the
full-set one (always on the primary objective).

Results go to the study (user attribute ``hpo:final``) for ``status``, ``export --final``, ``report``
and the dashboard; files to ``runs/<study>/final/``; weights and hyps to the artifact store.
A retrained model is reused by the next run when nothing that shaped it changed (``--force``
retrains anyway), so a larger ``--top-k`` only trains the new ones.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState
from rich.console import Console
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)

from hpo import attrs, hyps
from hpo.final.record import WEIGHT_LIMIT_BYTES, FinalModel, WinnerRule, format_value
from hpo.errors import HpoError
from hpo.paths import write_atomic
from hpo.search.cost import violations_text
from hpo.search.objective import objective_value
from hpo.spec import COST_METRICS, StudySpec, render_config
from hpo.study import StudySettings, pareto_front
from hpo.search.trial_runner import ProgressRunner, TrialRecord


@dataclass(frozen=True)
class RetrainPlan:
    """What every retrained model shares: the full data, the epochs, the training overrides."""

    data: Path
    epochs: int
    train: dict[str, Any]
    top_k: int
    front: bool = False  # retrain the Pareto front (multi-objective studies) instead of the top K
    by: str | None = None  # rank the top K and pick the winner by this metric instead of the primary objective

    @classmethod
    def from_spec(cls, spec: StudySpec, *, top_k: int | None = None, data: str | None = None,
                  epochs: int | None = None, front: bool = False, by: str | None = None) -> RetrainPlan:
        if front and top_k is not None:
            raise HpoError("give either --front or --top-k", field="--front")
        WinnerRule.of(spec, by)  # a metric the study did not measure: a one-line error now, not after training
        for name in spec.retrain.train:
            if name in hyps.YOLOV5_ONLY or name in hyps.RESERVED_ARGS or not hyps.is_training_arg(name):
                raise HpoError(f"{name}: not a training argument hpo can set", field=f"retrain.train.{name}")
        return cls(data=spec.resolved_data(data or spec.retrain.data),
                   epochs=int(epochs or spec.retrain.epochs or spec.epochs),
                   train=dict(spec.retrain.train), top_k=int(top_k or spec.retrain.top_k), front=front, by=by)

    def overrides(self) -> dict[str, Any]:
        """The arguments a retrain sets over a trial's (``TrialRunner.train(overrides=...)``)."""
        return {**self.train, "data": str(self.data), "epochs": self.epochs}


def top_trials(study: optuna.Study, k: int, by: str | None = None, spec: StudySpec | None = None) -> list[FrozenTrial]:
    """The ``k`` best complete trials (ties: the earlier trial first), one per distinct set of hyps.

    Ranked by :class:`~hpo.final.record.WinnerRule`: the (primary) objective, or metric ``by``
    (trials without it last); infeasible trials after feasible ones (they only fill up what is left).
    """
    if spec is None:  # a plain Optuna study: its (first) objective
        rule = WinnerRule("value", study.directions[0].name.lower())
    else:
        rule = WinnerRule.of(spec, by)
    ranked = rule.rank_trials(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)), spec)
    chosen: list[FrozenTrial] = []
    seen: set[str] = set()
    for t in ranked:
        key = json.dumps(t.params, sort_keys=True, default=str)
        if key not in seen:
            seen.add(key)
            chosen.append(t)
        if len(chosen) == k:
            break
    return chosen


def spearman(xs: list[float], ys: list[float]) -> float | None:
    """Spearman's rank correlation (average ranks for ties); None when a side has no spread."""
    import numpy as np
    import pandas as pd

    if len(xs) != len(ys) or len(xs) < 2:
        return None
    rx = pd.Series(xs, dtype=float).rank().to_numpy()
    ry = pd.Series(ys, dtype=float).rank().to_numpy()
    if np.std(rx) == 0 or np.std(ry) == 0:
        return None
    return float(np.corrcoef(rx, ry)[0, 1])


def inspect_weights(path: Path) -> tuple[int, bool]:
    """Size of a checkpoint as shipped, made fp16 and optimizer-free first if it is not already."""
    from hpo.offline import import_ultralytics

    import_ultralytics()
    import torch
    from ultralytics.utils.patches import torch_load
    from ultralytics.utils.torch_utils import strip_optimizer

    ckpt = torch_load(path, map_location="cpu")
    model = ckpt.get("model") if isinstance(ckpt, dict) else None
    first = next(iter(model.parameters()), None) if model is not None else None
    stripped = ckpt.get("optimizer") is None and first is not None and first.dtype == torch.float16
    if not stripped:
        strip_optimizer(path)
        stripped = True
    return path.stat().st_size, stripped


class Retrainer:
    """Retrains a study's top trials on the full set and records the outcome with the study.

    Args:
        study: the study (its storage receives the results).
        settings: the study's stored settings.
        plan: data, epochs, overrides and K.
        runs_dir: root of the run folders; models go to ``runs_dir/<study>/final/trial_NNNN``.
        device: ``cpu`` or a CUDA index.
        console: where progress and results are shown.
        force: retrain even models an earlier run already produced with the same settings.
        artifact_dir: artifact store for the final files (None: no uploads).
    """

    def __init__(self, study: optuna.Study, settings: StudySettings, plan: RetrainPlan, *, runs_dir: Path,
                 device: str | None = None, console: Console | None = None, force: bool = False,
                 stop_event: threading.Event | None = None, artifact_dir: Path | None = None) -> None:
        self.study = study
        self.artifact_dir = artifact_dir
        self.settings = settings
        self.spec = settings.spec
        self.plan = plan
        self.final_dir = (Path(runs_dir) / study.study_name / "final").resolve()
        self.device = device
        self.console = console or Console(stderr=True)
        self.force = force
        self.stop_event = stop_event
        self.rule = WinnerRule.of(self.spec, plan.by)

    @property
    def metric(self) -> str:
        return self.spec.objective.metric

    @property
    def direction(self) -> str:
        return self.spec.objective.direction

    def fingerprint(self, params: dict[str, Any]) -> str:
        """Everything that shapes a retrained model: equal fingerprints, equal trainings."""
        shaping = {"params": params, "overrides": self.plan.overrides(), "model": self.spec.model,
                   "weights": self.spec.weights, "fixed": self.spec.fixed_args(), "device": self.device}
        return hashlib.sha256(json.dumps(shaping, sort_keys=True, default=str).encode()).hexdigest()[:16]

    def run(self) -> dict[str, Any]:
        if self.plan.front:
            trials = self.rule.rank_trials(pareto_front(self.study), self.spec)
        else:
            trials = top_trials(self.study, self.plan.top_k, self.plan.by, self.spec)
        if not trials:
            raise HpoError(f"study {self.study.study_name!r} has no complete trial to retrain", field="--study")
        if len(trials) < self.plan.top_k and not self.plan.front:
            self.console.print(f"[yellow]only {len(trials)} distinct complete trial(s); retraining those[/]")
        started = _dt.datetime.now(_dt.timezone.utc)
        models: list[FinalModel] = []
        with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                      TimeElapsedColumn(), TimeRemainingColumn(), console=self.console, transient=False) as bar:
            for rank, trial in enumerate(trials, start=1):
                model = self._retrain(trial, rank, bar)
                models.append(model)
                self._print_model(model)
        record = self._summarise(models, started)
        self._save(record, models)
        return record

    # --- one model -------------------------------------------------------------------------------

    def _retrain(self, trial: FrozenTrial, rank: int, bar: Progress) -> FinalModel:
        save_dir = self.final_dir / f"trial_{trial.number:04d}"
        model = FinalModel(trial=trial.number, params=dict(trial.params), mini_value=float(trial.values[0]),
                           mini_rank=rank, fingerprint=self.fingerprint(trial.params), dir=str(save_dir))
        reused = None if self.force else self._reusable(model)
        if reused is not None:
            self._judge(reused, trial)
            return reused
        runner = ProgressRunner(self.spec, runs_dir=self.final_dir.parent, device=self.device,
                                 study_name=self.study.study_name, stop_event=self.stop_event,
                                 progress=bar, label=f"trial {trial.number} (mini rank {rank})")
        if save_dir.exists():  # a stale or interrupted run: start clean, Ultralytics would resume oddly
            shutil.rmtree(save_dir)
        start = time.perf_counter()
        record = TrialRecord()
        try:
            record = runner.train(model.params, save_dir, overrides=self.plan.overrides())
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one diverging model must not cost the others
            from hpo.search.worker import failure_reason

            model.error = failure_reason(exc)
        model.wall_seconds = round(time.perf_counter() - start, 2)
        model.train_seconds = round(record.train_seconds, 2)
        model.epochs = record.epochs
        self._measure(model, record, save_dir)
        self._judge(model, trial)
        _write_json(save_dir / "metrics.json", model.to_json())
        return model

    def _judge(self, model: FinalModel, trial: FrozenTrial) -> None:
        """The model's costs (the trial's; weights_mb of its own best.pt) and whether it meets the
        study's constraints with its full-set metrics: what the winner rule reads."""
        model.costs = {m: trial.user_attrs[m] for m in COST_METRICS if m in trial.user_attrs}
        if model.weight_bytes:
            model.costs["weights_mb"] = round(model.weight_bytes / 1e6, 4)
        if self.spec.constraints:
            broken = violations_text(self.spec, {**model.costs, **model.metrics})
            model.feasible = not broken and trial.user_attrs.get(attrs.FEASIBLE) is not False

    def _measure(self, model: FinalModel, record: TrialRecord, save_dir: Path) -> None:
        metrics = record.final_metrics
        if metrics is None and record.epoch_metrics:
            metrics = record.epoch_metrics[record.best_index(self.direction)]
        if metrics is not None:
            model.metrics = {k: _clean(v) for k, v in metrics.items()}
            if model.error is None:
                try:
                    model.full_value = _clean(objective_value(metrics, self.metric))  # as rounded as its metrics
                except ValueError as exc:
                    model.error = str(exc)
        best = save_dir / "weights" / "best.pt"
        if best.is_file():
            model.weights = str(best)
            model.weight_bytes, model.fp16_stripped = inspect_weights(best)
            model.under_limit = model.weight_bytes <= WEIGHT_LIMIT_BYTES
        elif model.error is None:
            model.error = "training produced no best.pt"

    def _reusable(self, model: FinalModel) -> FinalModel | None:
        saved = Path(model.dir) / "metrics.json"
        try:
            old = json.loads(saved.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if old.get("fingerprint") != model.fingerprint or old.get("error") or not old.get("weights") \
                or not Path(old["weights"]).is_file():
            return None
        known = {k: v for k, v in old.items() if k in FinalModel.__dataclass_fields__}
        reused = FinalModel(**{**known, "mini_value": model.mini_value, "mini_rank": model.mini_rank,
                               "full_rank": None, "reused": True})
        self.console.print(f"trial {model.trial}: reusing the model trained with the same settings in {model.dir}")
        return reused

    def _print_model(self, m: FinalModel) -> None:
        if not m.ok:
            self.console.print(f"[red]trial {m.trial}: retrain failed: {m.error}[/]")
            return
        size = f"{m.weight_bytes / 1e6:.1f} MB" if m.weight_bytes else "?"
        self.console.print(f"trial {m.trial}: full-set {self.metric} {m.full_value:.5f} (mini {m.mini_value:.5f}), "
                           f"mAP75 {format_value(m.metrics.get('map75'))}, weights {size}, {m.wall_seconds:.0f} s"
                           + (" (reused)" if m.reused else ""))

    # --- the study's result ----------------------------------------------------------------------

    def _summarise(self, models: list[FinalModel], started: _dt.datetime) -> dict[str, Any]:
        ok = [m for m in models if m.ok]
        maximize = self.direction == "maximize"
        for rank, m in enumerate(sorted(ok, key=lambda m: (-m.full_value if maximize else m.full_value,
                                                               m.mini_rank)), start=1):
            m.full_rank = rank
        winner = self.rule.pick_model(ok)
        rho = spearman([m.mini_value for m in ok], [m.full_value for m in ok]) if len(ok) >= 3 else None
        mini_best = min(models, key=lambda m: m.mini_rank)
        return {
            "version": 1,
            "started": started.isoformat(timespec="seconds"),
            "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "top_k": self.plan.top_k,
            "data": str(self.plan.data),
            "epochs": self.plan.epochs,
            "train": self.plan.train,
            "overrides": self.plan.overrides(),
            "device": self.device,
            "metric": self.metric,  # the primary objective: mini vs full values, ranks, Spearman
            "direction": self.direction,
            "chosen_by": self.rule.to_json(),  # how the winner was picked
            "weight_limit_bytes": WEIGHT_LIMIT_BYTES,
            "dir": str(self.final_dir),
            "winner": None if winner is None else winner.trial,
            "mini_winner": mini_best.trial,
            "mini_winner_full_rank": mini_best.full_rank,
            "spearman": None if rho is None or not math.isfinite(rho) else round(rho, 4),
            "models": [m.to_json() for m in models],
        }

    def _save(self, record: dict[str, Any], models: list[FinalModel]) -> None:
        self.final_dir.mkdir(parents=True, exist_ok=True)
        winner = next((m for m in models if m.trial == record["winner"]), None)
        if winner is not None and winner.weights:
            _link_or_copy(Path(winner.weights), self.final_dir / "best.pt")
            config = self.spec.training_args(winner.params, self.plan.overrides())
            header = [f"hpo retrain: study {self.study.study_name}, trial {winner.trial}, full-set "
                      f"{self.metric} {winner.full_value:.5f}", f"chosen by {self.rule.describe()}",
                      "use: yolo train cfg=<this file>"]
            (self.final_dir / "hyp.yaml").write_text(render_config(config, header), encoding="utf-8")
        _write_json(self.final_dir / "metrics.json", record)
        self.study.set_user_attr(attrs.STUDY_FINAL, record)
        self._upload(record, models)

    def _upload(self, record: dict[str, Any], models: list[FinalModel]) -> None:
        """Final weights, hyps and metrics as study artifacts: the dashboard serves them."""
        from hpo.artifacts import artifact_names, open_store, upload

        if self.artifact_dir is None:
            return
        try:
            store = open_store(self.artifact_dir)
            present = set(artifact_names(self.study))
            for m in models:
                tag = f"final_trial_{m.trial:04d}_{m.fingerprint[:8]}"
                for path in (Path(m.dir) / "weights" / "best.pt", Path(m.dir) / "hyp.yaml",
                             Path(m.dir) / "results.csv", Path(m.dir) / "metrics.json"):
                    name = f"{tag}_{path.name}"
                    if path.is_file() and name not in present:
                        upload(store, self.study, path, name=name)
            upload(store, self.study, self.final_dir / "metrics.json", name="final_summary.json")
        except Exception as exc:  # noqa: BLE001 - the models and the study record are what matter
            self.console.print(f"[yellow]artifact upload failed: {exc}[/]")
            self.study.set_user_attr(attrs.STUDY_ARTIFACT_ERROR, f"{type(exc).__name__}: {exc}"[:300])


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


def _write_json(path: Path, data: Any) -> None:
    write_atomic(path, json.dumps(data, indent=2, default=str))


def _link_or_copy(src: Path, dst: Path) -> None:
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copyfile(src, dst)

