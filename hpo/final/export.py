"""Hand back what a study found, as files that drop straight into ``yolo train``.

``--format ultralytics`` writes a full training config (model, data, the study's fixed arguments and
the tuned hyps) that ``yolo train cfg=FILE`` accepts as it is; comment lines first, in the spirit of
YOLOv5's ``hyp_evolve.yaml``. ``--format yolov5`` writes a complete YOLOv5 ``hyp.yaml``
(:mod:`hpo.yolov5`). ``--final`` exports the winner of ``hpo retrain`` with the settings it was
retrained with (full data, its epochs).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.final.record import final_winner
from hpo.search.objective import METRIC_NAMES
from hpo.spec import render_config
from hpo.study import StudySettings, best_trial

#: format name -> what it writes (``--format``).
FORMATS = {
    "ultralytics": "a config for `yolo train cfg=FILE`",
    "yolov5": "a YOLOv5 hyp.yaml for `train.py --hyp FILE`",
}


def pick_trial(study: optuna.Study, number: int | None = None) -> FrozenTrial:
    """The best complete trial, or trial ``number`` (which must be complete)."""
    if number is None:
        trial = best_trial(study)
        if trial is None:
            raise HpoError(f"study {study.study_name!r} has no complete trial yet", field="--study")
        return trial
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise HpoError(f"study {study.study_name!r} has no trial {number}", field="--trial")
    if trials[number].state != TrialState.COMPLETE:
        raise HpoError(f"trial {number} is {trials[number].state.name}, not COMPLETE", field="--trial")
    return trials[number]


def header_lines(study: optuna.Study, settings: StudySettings, trial: FrozenTrial) -> list[str]:
    objective = settings.spec.objective
    metrics = ", ".join(f"{m}={trial.user_attrs[m]:.5f}" for m in METRIC_NAMES
                        if isinstance(trial.user_attrs.get(m), (int, float)))
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
    return [
        f"hpo export: study {study.study_name}, trial {trial.number} of {done} finished",
        f"sampler {settings.sampler}, pruner {settings.pruner}, "
        f"objective {objective.metric} ({objective.direction}) = {trial.value:.5f}",
        f"metrics: {metrics or 'n/a'}",
        f"epochs {trial.user_attrs.get(attrs.EPOCHS, '?')}, train seconds {trial.user_attrs.get(attrs.TRAIN_SECONDS, '?')}",
        f"written {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "use: yolo train cfg=<this file>",
    ]


def render(study: optuna.Study, settings: StudySettings, trial: FrozenTrial, fmt: str = "ultralytics") -> str:
    config = settings.spec.training_args(trial.params)
    return _render(fmt, header_lines(study, settings, trial), config, set(trial.params), settings)


def render_final(study: optuna.Study, settings: StudySettings, fmt: str = "ultralytics") -> tuple[str, dict[str, Any]]:
    """The retrained winner's config (with the retrain's data and epochs) and its record."""
    record, winner = final_winner(study)
    config = settings.spec.training_args(winner["params"], record.get("overrides", {}))
    metrics = ", ".join(f"{m}={winner['metrics'][m]:.5f}" for m in METRIC_NAMES
                        if isinstance(winner["metrics"].get(m), (int, float)))
    size = winner.get("weight_bytes")
    header = [
        f"hpo export: study {study.study_name}, final model: trial {winner['trial']} retrained on the full set",
        f"objective {record['metric']} ({record['direction']}): full set {winner['full_value']:.5f}, "
        f"mini set {winner['mini_value']:.5f} (mini rank {winner['mini_rank']} of {len(record['models'])})",
        f"metrics: {metrics or 'n/a'}",
        f"weights {winner.get('weights')} ({size / 1e6:.1f} MB)" if size else "weights: n/a",
        f"epochs {record['epochs']}, data {record['data']}, train seconds {winner.get('train_seconds')}",
        f"written {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "use: yolo train cfg=<this file>",
    ]
    return _render(fmt, header, config, set(winner["params"]), settings), winner


def _render(fmt: str, header: list[str], config: dict[str, Any], tuned: set[str], settings: StudySettings) -> str:
    base_import = settings.spec.base_import
    if fmt == "yolov5":
        from hpo import yolov5

        header = [line for line in header if not line.startswith("use: ")]
        header.insert(1, "format: YOLOv5 hyp.yaml (hyp keys only; training options below)")
        return yolov5.render(header, config, tuned, base_import.yolov5 if base_import else None)
    if fmt != "ultralytics":
        raise HpoError(f"unknown format {fmt!r} (choose from {', '.join(FORMATS)})", field="--format")
    if base_import and base_import.dropped:
        header = [*header, f"base hyps from YOLOv5 file {base_import.source}; not imported (no Ultralytics "
                           f"equivalent): {', '.join(base_import.dropped)}"]
    return render_config(config, header)


def write_atomic(path: Path, text: str) -> None:
    """Never leave a half-written file behind."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
