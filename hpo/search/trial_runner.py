"""One trial = one real Ultralytics training, reported to Optuna epoch by epoch.

The runner samples the trial's hyps from the study's search space, trains in the trial's own
absolute directory (``runs/<study>/trial_NNNN``) fully offline, reports the objective after every
epoch (step = epoch, 1-based) and stops as soon as the pruner says so. It raises
:class:`optuna.TrialPruned` for pruned trials and lets every other error propagate, so the worker
decides what is recorded: the runner never talks to the storage beyond ``trial``.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import optuna

from hpo import attrs
from hpo.offline import import_ultralytics
from hpo.search.cost import CostMeter
from hpo.search.objective import METRIC_NAMES, metrics_from_trainer, objective_value
from hpo.search.pruners import ScreenPruner
from hpo.search.retry import resume_point
from hpo.search.val_subset import ValidationSubset
from hpo.spec import CategoricalParam, FloatParam, IntParam, StudySpec, render_config

if TYPE_CHECKING:
    from rich.progress import Progress

log = logging.getLogger("hpo.search.trial")


def log_epoch(trial: optuna.Trial, epoch: int, epochs: int, metric: str, value: float) -> None:
    """One INFO line per epoch in the worker's log: a trial of many minutes is not silent until it ends."""
    log.info("trial %d epoch %d/%d %s %.5f", trial.number, epoch, epochs, metric, value)


class StopRequested(Exception):
    """The worker was asked to stop (SIGTERM/SIGINT): the trial goes back to the study."""


class _FinalValidationStopped(Exception):
    """A stop request during Ultralytics' final validation: every epoch is trained and reported."""


class NaNLossError(RuntimeError):
    """Training loss became NaN/Inf: these hyps diverge, no point in Ultralytics' recovery."""


def trial_dir(runs_dir: Path, study_name: str, number: int) -> Path:
    return (runs_dir / study_name / f"trial_{number:04d}").resolve()


def suggest_params(trial: optuna.Trial, spec: StudySpec) -> dict[str, Any]:
    """Ask the trial for every hyp of the search space, in the spec's order."""
    params: dict[str, Any] = {}
    for name, p in spec.search_space.items():
        if isinstance(p, FloatParam):
            params[name] = trial.suggest_float(name, p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, IntParam):
            params[name] = trial.suggest_int(name, p.low, p.high, log=p.log, step=p.step)
        elif isinstance(p, CategoricalParam):
            params[name] = trial.suggest_categorical(name, p.choices)
    return params


def device_defaults(device: str | None, workers_per_machine: int = 1) -> dict[str, Any]:
    """Training arguments that depend on the device, for any spec that does not set them.

    AMP: Ultralytics' AMP check downloads a model, so on CUDA we use bf16 autocast where the GPU
    supports it (no check needed) and otherwise fp16 AMP with the check bypassed (see
    :func:`_trust_amp`). On CPU AMP is off.
    """
    import torch

    cuda = device not in (None, "cpu") and torch.cuda.is_available()
    if not cuda:
        return {"device": "cpu", "amp": False, "workers": 0}
    cpus = os.cpu_count() or 2  # the machine's cores, shared by the trainings running on it
    return {"device": device, "amp": "bf16" if torch.cuda.is_bf16_supported() else True,
            "workers": max(1, min(8, cpus // max(1, workers_per_machine)))}


def _trust_amp() -> None:
    """Skip Ultralytics' AMP self-test: it downloads yolo26n.pt, which we never do at run time."""
    import ultralytics.engine.trainer as trainer_module

    trainer_module.check_amp = lambda model: True


@dataclass
class TrialRecord:
    """What a training produced, whatever its end."""

    epochs: int = 0
    values: list[float] = field(default_factory=list)
    epoch_metrics: list[dict[str, float]] = field(default_factory=list)
    final_metrics: dict[str, float] | None = None
    train_seconds: float = 0.0
    on_subset: list[bool] = field(default_factory=list)  # per epoch: validated on the val_fraction subset
    val_images: list[int] = field(default_factory=list)  # per epoch: images its validation saw

    def full_epochs(self) -> list[int]:
        """Indices of the epochs validated on the full validation set (every epoch without val_fraction)."""
        return [i for i in range(len(self.values)) if not (i < len(self.on_subset) and self.on_subset[i])]

    def best_index(self, direction: str) -> int:
        """Index of the best epoch (the one Ultralytics-style best.pt keeps for our objective).

        Only epochs validated on the full set compete: a subset's figures steer pruning, never the
        trial's value. With no full-set epoch (a pruned trial), every epoch does.
        """
        pick = max if direction == "maximize" else min
        return pick(self.full_epochs() or range(len(self.values)), key=self.values.__getitem__)

    def value(self, direction: str) -> float:
        """The trial's value: the best epoch's objective on the full validation set, as its best.pt scores."""
        if not self.values:
            raise RuntimeError("training ended without a validated epoch")
        if not self.full_epochs():
            raise RuntimeError("training ended without a validation on the full set (val_fraction: only the last "
                               "epoch validates on every image, and Ultralytics stopped before it)")
        return self.values[self.best_index(direction)]


class TrialRunner:
    """Runs Ultralytics trainings for one study on one device.

    Args:
        spec: the study's validated spec.
        runs_dir: root of the trial directories (absolute paths are passed to Ultralytics).
        device: ``"cpu"``, a CUDA index such as ``"0"``, or None for CPU.
        stop_event: set by the worker's signal handler; checked after every batch.
        artifact_dir: artifact store the trial files are uploaded to (None: no uploads).
        workers_per_machine: trainings sharing this machine, to split its cores between loaders.
    """

    def __init__(self, spec: StudySpec, *, runs_dir: Path, device: str | None = None,
                 stop_event: threading.Event | None = None, study_name: str | None = None,
                 artifact_dir: Path | None = None, workers_per_machine: int = 1) -> None:
        self.spec = spec
        self.study_name = study_name or spec.name
        self.runs_dir = Path(runs_dir).resolve()
        self.device = device
        self.stop_event = stop_event or threading.Event()
        self.artifact_dir = artifact_dir
        self.workers_per_machine = workers_per_machine
        self.cost = CostMeter(spec, train_device=device)

    def train_args(self, params: dict[str, Any], save_dir: Path,
                   overrides: dict[str, Any] | None = None) -> dict[str, Any]:
        """Full Ultralytics arguments: hpo's run defaults < device defaults < the study's
        :meth:`~hpo.spec.StudySpec.training_args` (fixed args < sampled hyps < overrides)."""
        args: dict[str, Any] = {"plots": False, "verbose": False, "val": True}
        args.update(device_defaults(self.device, self.workers_per_machine))
        args.update(self.spec.training_args(params, overrides))
        args.pop("model")  # the model is built by :meth:`build_model`, not passed to train()
        args.update({"project": str(save_dir.parent), "name": save_dir.name, "exist_ok": True})
        return args

    def config_text(self, params: dict[str, Any], overrides: dict[str, Any] | None = None,
                    trial: optuna.Trial | None = None) -> str:
        """The run's ``hyp.yaml``: the full config, as ``hpo export`` writes it (:func:`~hpo.spec.render_config`)."""
        what = f"trial {trial.number} of study {self.study_name}" if trial is not None else f"study {self.study_name}"
        return render_config(self.spec.training_args(params, overrides),
                             [f"hpo: {what}", "use: yolo train cfg=<this file>"])

    def build_model(self, checkpoint: Path | None = None, model: str | None = None) -> Any:
        """The checkpoint to resume, else ``model`` (the trial's sampled one) or the study's."""
        import_ultralytics()
        from ultralytics import YOLO

        if checkpoint is not None:
            return YOLO(str(checkpoint))
        return YOLO(self.spec.resolved_model(model))

    def __call__(self, trial: optuna.Trial) -> float | list[float]:
        """Train one trial; its value, or its values (one per objective) in a multi-objective study."""
        params = suggest_params(trial, self.spec)
        costs = self.cost.before_training(trial, params)  # an infeasible model is pruned untrained
        save_dir = trial_dir(self.runs_dir, self.study_name, trial.number)
        resume = resume_point(trial)
        resume_from = resume[0] if resume else None
        if resume_from is not None:
            save_dir = resume_from.parent.parent  # Ultralytics resumes in the checkpoint's own run dir
        trial.set_user_attr(attrs.DIR, str(save_dir))
        pruner = trial.study.pruner
        screened = (self._screen(trial, params, save_dir, pruner)
                    if isinstance(pruner, ScreenPruner) and resume_from is None else 0)
        record = self.train(params, save_dir, trial=trial, resume_from=resume_from,
                            val_fraction=self.spec.val_fraction)
        if screened:
            trial.set_user_attr(attrs.EPOCHS, screened + record.epochs)
        value = record.value(self.spec.objective.direction)
        if not self.cost.active and not self.spec.multi_objective:
            return value
        best = record.epoch_metrics[record.best_index(self.spec.objective.direction)]
        values = self.cost.after_training(trial, best, costs, save_dir / "weights" / "best.pt")
        return values if self.spec.multi_objective else values[0]

    def _screen(self, trial: optuna.Trial, params: dict[str, Any], save_dir: Path, pruner: ScreenPruner) -> int:
        """The screen pruner's short full schedule (in ``save_dir/screen``); its epochs, or
        :class:`optuna.TrialPruned` when the trial does not rank among the screened trials' best.

        Its value is reported at step 0 (the full training reports epochs 1..n), so samplers that
        learn from pruned trials rank screened-out ones by it."""
        record = self.train(params, save_dir / "screen", overrides={"epochs": pruner.epochs})
        shutil.rmtree(save_dir / "screen" / "weights", ignore_errors=True)  # never used: only its value counts
        value = record.value(self.spec.objective.direction)
        if trial.user_attrs.get(attrs.BASE_TRIAL):
            promoted, why = True, "the base hyps always train in full (the yardstick)"
        else:
            promoted, why = pruner.promotes(trial.study, trial.number, value)
        trial.set_user_attr(attrs.SCREEN, {"epochs": pruner.epochs, "value": value, "values": record.values,
                                           "promoted": promoted, "why": why})
        trial.report(value, 0)
        if not promoted:
            trial.set_user_attr(attrs.EPOCHS, record.epochs)
            raise optuna.TrialPruned(f"screened out: {why}")
        return record.epochs

    def train(self, params: dict[str, Any], save_dir: Path, *, trial: optuna.Trial | None = None,
              overrides: dict[str, Any] | None = None, resume_from: Path | None = None,
              val_fraction: float = 1.0) -> TrialRecord:
        """Train once; report to ``trial`` (if given) after every epoch and honour its pruner.

        With ``resume_from`` the training continues from that Ultralytics checkpoint, and the
        epochs it already holds count from the metrics the dead trial reported. With ``val_fraction``
        below 1, epochs before the last validate on a fixed subset of the validation images
        (:mod:`hpo.search.val_subset`); retrains keep the default, every image every epoch.
        """
        metric = self.spec.objective.metric
        record = TrialRecord()
        if resume_from is not None and trial is not None:
            record.epoch_metrics = list(trial.user_attrs.get(attrs.EPOCH_METRICS, []))
            record.values = [objective_value(m, metric) for m in record.epoch_metrics]
            record.epochs = len(record.values)
            record.on_subset = list(trial.user_attrs.get(attrs.VAL_SUBSET, []))[:record.epochs]
            record.val_images = list(trial.user_attrs.get(attrs.VAL_IMAGES, []))[:record.epochs]
        subset = ValidationSubset(val_fraction, subset_used=any(record.on_subset)) if val_fraction < 1 else None
        seen = {"images": 0, "subset": False}
        epoch_done = {"pending": False}
        stop_event = self.stop_event
        # The base hyps (trial 0) are the yardstick every gain is stated against ("best vs base" in
        # status): they report every epoch, so pruners learn from them, but always train to the end.
        prunable = trial is not None and not self.spec.multi_objective and not trial.user_attrs.get(attrs.BASE_TRIAL)

        def on_batch_end(trainer_or_validator: Any) -> None:
            if stop_event.is_set():
                raise StopRequested("worker asked to stop")

        def on_val_end(validator: Any) -> None:
            seen["images"] = int(getattr(validator, "seen", 0))
            seen["subset"] = subset is not None and subset.on_subset(validator)

        def on_val_batch_end(validator: Any) -> None:
            if not stop_event.is_set():
                return
            if not validator.training and record.values:
                # Ultralytics' final validation of best.pt: last.pt is already stripped (not resumable),
                # but every epoch is trained and its metrics reported: the trial is complete without it.
                raise _FinalValidationStopped
            raise StopRequested("worker asked to stop")

        def on_train_epoch_end(trainer: Any) -> None:
            if not _finite(trainer.tloss):
                raise NaNLossError(f"loss is NaN/Inf at epoch {trainer.epoch + 1}")
            epoch_done["pending"] = True

        def on_fit_epoch_end(trainer: Any) -> None:
            metrics = metrics_from_trainer(trainer)
            if not epoch_done["pending"]:  # Ultralytics' final validation of best.pt
                record.final_metrics = metrics
                return
            epoch_done["pending"] = False
            step = trainer.epoch + 1
            value = objective_value(metrics, metric)
            record.epochs = step
            record.values.append(value)
            record.epoch_metrics.append(metrics)
            record.on_subset.append(bool(seen["subset"]))
            record.val_images.append(int(seen["images"]))
            if trial is not None:
                log_epoch(trial, step, trainer.epochs, metric, value)
                # Saved every epoch so a retry can resume with the metrics of the epochs it keeps.
                trial.set_user_attr(attrs.EPOCH_METRICS, [{k: _clean(v) for k, v in m.items()}
                                                         for m in record.epoch_metrics])
                if subset is not None:
                    trial.set_user_attr(attrs.VAL_SUBSET, record.on_subset)
                    trial.set_user_attr(attrs.VAL_IMAGES, record.val_images)
            if trial is not None and not self.spec.multi_objective:  # Optuna prunes single objectives only
                trial.report(value, step)
                # Never after the last epoch: every epoch is paid for, and pruning would only throw the
                # finished trial's value away (a reference-curve pruner may find it behind there).
                if prunable and step < trainer.epochs and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at epoch {step} ({metric}={value:.5f})")

        def on_pretrain_routine_start(trainer: Any) -> None:
            # Ultralytics' select_device("cpu") resets torch to min(8, cores - 1) threads, ignoring
            # the launcher's split of the cores between workers (OMP_NUM_THREADS).
            threads = os.environ.get("OMP_NUM_THREADS")
            if trainer.device.type == "cpu" and threads and threads.isdigit():
                import torch

                torch.set_num_threads(int(threads))

        model = self.build_model(resume_from, params.get("model"))
        for event, fn in (("on_pretrain_routine_start", on_pretrain_routine_start),
                          ("on_train_batch_end", on_batch_end), ("on_val_batch_end", on_val_batch_end),
                          ("on_train_epoch_end", on_train_epoch_end), ("on_val_end", on_val_end),
                          ("on_fit_epoch_end", on_fit_epoch_end), *(subset.callbacks() if subset else ())):
            model.add_callback(event, fn)
        args = self.train_args(params, save_dir, overrides)
        if resume_from is not None:  # everything else comes from the checkpoint's own arguments
            args = {"resume": True, "device": args["device"], "workers": args["workers"]}
        if args.get("amp") is True:
            _trust_amp()
        save_dir.mkdir(parents=True, exist_ok=True)
        # The trial's full training config (what the dashboard serves): `yolo train cfg=hyp.yaml` reruns it.
        (save_dir / "hyp.yaml").write_text(self.config_text(params, overrides, trial))
        start = time.perf_counter()
        try:
            model.train(**args)
        except _FinalValidationStopped:
            pass  # complete; record.final_metrics stays None (the final validation did not finish)
        finally:
            record.train_seconds = time.perf_counter() - start
            if subset is not None:
                subset.close()
            _close_loaders(model)
            if trial is not None:
                self._record(trial, record, save_dir)
        return record

    def _record(self, trial: optuna.Trial, record: TrialRecord, save_dir: Path) -> None:
        trial.set_user_attr(attrs.EPOCHS, record.epochs)
        trial.set_user_attr(attrs.TRAIN_SECONDS, round(record.train_seconds, 2))
        if record.epoch_metrics:
            best = record.epoch_metrics[record.best_index(self.spec.objective.direction)]
            for name in METRIC_NAMES:
                trial.set_user_attr(name, _clean(best.get(name)))
            trial.set_user_attr(attrs.LAST_EPOCH_METRICS, {k: _clean(v) for k, v in record.epoch_metrics[-1].items()})
        if record.final_metrics is not None:
            trial.set_user_attr(attrs.FINAL_METRICS, {k: _clean(v) for k, v in record.final_metrics.items()})
        best_pt = save_dir / "weights" / "best.pt"
        if best_pt.is_file():
            trial.set_user_attr(attrs.WEIGHT_BYTES, best_pt.stat().st_size)
        from hpo.artifacts import upload_trial_files

        upload_trial_files(trial, save_dir, self.artifact_dir)  # while the trial still runs: Optuna refuses it later


class ProgressRunner(TrialRunner):
    """A runner for trainings outside a study (retrains, noise seeds): one progress bar per training,
    batches over all epochs, its mAP in the description."""

    def __init__(self, *args: Any, progress: Progress | None = None, label: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.progress = progress
        self.label = label

    def build_model(self, *args: Any, **kwargs: Any) -> Any:
        model = super().build_model(*args, **kwargs)
        progress = self.progress
        if progress is None:
            return model
        task = progress.add_task(self.label, total=None)

        def on_train_start(trainer: Any) -> None:
            progress.update(task, total=trainer.epochs * len(trainer.train_loader),
                            completed=trainer.start_epoch * len(trainer.train_loader))

        def on_train_batch_end(trainer: Any) -> None:
            progress.advance(task)

        def on_fit_epoch_end(trainer: Any) -> None:
            m = trainer.metrics or {}
            progress.update(task, description=f"{self.label} epoch {min(trainer.epoch + 1, trainer.epochs)}"
                            f"/{trainer.epochs} mAP50-95 {m.get('metrics/mAP50-95(B)', float('nan')):.3f}")

        model.add_callback("on_train_start", on_train_start)
        model.add_callback("on_train_batch_end", on_train_batch_end)
        model.add_callback("on_fit_epoch_end", on_fit_epoch_end)
        return model


def _finite(losses: Any) -> bool:
    import torch

    items = losses.values() if isinstance(losses, dict) else [losses]
    return all(bool(torch.isfinite(torch.as_tensor(v)).all()) for v in items if v is not None)


def _clean(value: Any) -> Any:
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None
    return value


def _close_loaders(model: Any) -> None:
    """Shut dataloader workers of an aborted training (Ultralytics only does it on success)."""
    trainer = getattr(model, "trainer", None)
    for name in ("train_loader", "test_loader"):
        loader = getattr(trainer, name, None)
        if loader is not None and hasattr(loader, "close"):
            try:
                loader.close()
            except Exception:
                pass
