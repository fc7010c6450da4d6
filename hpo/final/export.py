"""Hand back what a study found, as files that drop straight into ``yolo train``.

``--format ultralytics`` writes a full training config (model, data, the study's fixed arguments and
the tuned hyps) that ``yolo train cfg=FILE`` accepts as it is; comment lines first, in the spirit of
YOLOv5's ``hyp_evolve.yaml``. ``--format yolov5`` writes a complete YOLOv5 ``hyp.yaml``
(:mod:`hpo.yolov5`). ``--final`` exports the winner of ``hpo retrain`` with the settings it was
retrained with (full data, its epochs).
"""

from __future__ import annotations

import datetime as _dt
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.final.record import WinnerRule, final_winner
from hpo.search.objective import METRIC_NAMES
from hpo.spec import ACCURACY_METRICS, COST_METRICS, StudySpec, render_config
from hpo.study import StudySettings, pareto_front

#: format name -> what it writes (``--format``).
FORMATS = {
    "ultralytics": "a config for `yolo train cfg=FILE`",
    "yolov5": "a YOLOv5 hyp.yaml for `train.py --hyp FILE`",
}


def pick_trial(study: optuna.Study, number: int | None = None, *, spec: StudySpec | None = None,
               rule: WinnerRule | None = None) -> FrozenTrial:
    """The winner by ``rule`` (default: the primary objective, feasible trials only), or trial
    ``number`` (which must be complete)."""
    if number is None:
        if spec is None:
            raise HpoError("pick_trial needs the study's spec to choose a winner")
        return (rule or WinnerRule.of(spec)).pick_trial(study, spec)
    trials = {t.number: t for t in study.get_trials(deepcopy=False)}
    if number not in trials:
        raise HpoError(f"study {study.study_name!r} has no trial {number}", field="--trial")
    if trials[number].state != TrialState.COMPLETE:
        raise HpoError(f"trial {number} is {trials[number].state.name}, not COMPLETE", field="--trial")
    return trials[number]


def header_lines(study: optuna.Study, settings: StudySettings, trial: FrozenTrial,
                 rule: WinnerRule | None = None) -> list[str]:
    """The export's comment lines: where the trial comes from, what it scored, and how it was chosen
    (``rule``; None: picked by hand with ``--trial``)."""
    spec = settings.spec
    metrics = ", ".join(f"{m}={trial.user_attrs[m]:.5f}" for m in METRIC_NAMES
                        if isinstance(trial.user_attrs.get(m), (int, float)))
    done = sum(t.state in (TrialState.COMPLETE, TrialState.PRUNED) for t in study.get_trials(deepcopy=False))
    objectives = ", ".join(f"{o.metric} ({o.direction}) = " + (f"{v:.5f}" if o.metric in ACCURACY_METRICS else f"{v:.6g}")
                           for o, v in zip(spec.objectives, trial.values))
    lines = [
        f"hpo export: study {study.study_name}, trial {trial.number} of {done} finished",
        f"sampler {settings.sampler}, pruner {settings.pruner}, "
        f"objective{'s' if spec.multi_objective else ''} {objectives}",
        f"metrics: {metrics or 'n/a'}",
        f"chosen by {rule.describe()}" if rule is not None else f"chosen by hand (--trial {trial.number})",
    ]
    if spec.multi_objective:
        front = [t.number for t in pareto_front(study)]
        where = "chosen from" if trial.number in front else "NOT on"
        lines.append(f"{where} the Pareto front of {len(front)} trial(s): {', '.join(map(str, front))}")
    costs = ", ".join(f"{m}={trial.user_attrs[m]:.6g}" for m in COST_METRICS if m in trial.user_attrs)
    if costs:
        lines.append(f"costs: {costs}")
    if spec.constraints:
        broken = trial.user_attrs.get(attrs.VIOLATIONS) or []
        bounds = ", ".join(f"{n} in [{b.min if b.min is not None else '-inf'}, {b.max if b.max is not None else 'inf'}]"
                           for n, b in spec.constraints.items())
        lines.append(f"constraints {bounds}: " + ("met" if not broken else "BROKEN: " + "; ".join(broken)))
    return lines + [
        f"epochs {trial.user_attrs.get(attrs.EPOCHS, '?')}, train seconds {trial.user_attrs.get(attrs.TRAIN_SECONDS, '?')}",
        f"written {_dt.datetime.now(_dt.timezone.utc).strftime('%Y-%m-%d %H:%M:%S UTC')}",
        "use: yolo train cfg=<this file>",
    ]


def render(study: optuna.Study, settings: StudySettings, trial: FrozenTrial, fmt: str = "ultralytics",
           rule: WinnerRule | None = None) -> str:
    config = settings.spec.training_args(trial.params)
    return _render(fmt, header_lines(study, settings, trial, rule), config, set(trial.params), settings)


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
        f"chosen by {(record.get('chosen_by') or {}).get('rule', 'best ' + record['metric'])} (hpo retrain)",
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
