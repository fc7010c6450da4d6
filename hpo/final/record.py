"""The record of the final stage (the retrained models, stored with the study as ``hpo:final``) and
the one rule that picks a single winner.

``hpo retrain`` writes the record; ``status``, ``export --final``, ``report`` and the dashboard read
it. It lives apart from the retraining itself so readers never import the trainer.

:class:`WinnerRule` is how one winner is chosen, among a study's trials (``hpo export``) and among
its retrained models (``hpo retrain``, ``--front`` included): the best value of one metric (``--by``,
default the primary objective), feasible trials only, the earlier trial on a tie. A multi-objective
study has no single best, so the choice is said wherever a winner is shown.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import optuna
from optuna.trial import FrozenTrial, TrialState

from hpo import attrs
from hpo.errors import HpoError
from hpo.search.cost import total_violation
from hpo.spec import ACCURACY_METRICS, COST_METRICS, StudySpec

#: The contest's limit on the submitted weight file ("at most 100 MB"), read as 10^8 bytes: the
#: stricter of MB and MiB.
WEIGHT_LIMIT_BYTES = 100_000_000


@dataclass
class FinalModel:
    """One retrained trial: its mini-set result next to its full-set one."""

    trial: int
    params: dict[str, Any]
    mini_value: float
    mini_rank: int
    fingerprint: str
    dir: str
    full_value: float | None = None
    full_rank: int | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0
    weights: str | None = None
    weight_bytes: int | None = None
    fp16_stripped: bool | None = None
    under_limit: bool | None = None
    train_seconds: float = 0.0
    wall_seconds: float = 0.0
    reused: bool = False
    error: str | None = None
    costs: dict[str, Any] = field(default_factory=dict)  # the trial's costs; weights_mb of the retrained best.pt
    feasible: bool | None = None  # the study's constraints on the retrained model (None: the study has none)

    @property
    def ok(self) -> bool:
        return self.error is None and self.full_value is not None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class WinnerRule:
    """Best by one metric, feasible trials only, the earlier trial on a tie.

    ``metric``'s direction is its objective's where it is one, else accuracy is maximised and costs
    minimised. ``primary``: the study's primary objective (no ``--by`` given).
    """

    metric: str
    direction: str
    primary: bool = True

    @classmethod
    def of(cls, spec: StudySpec, by: str | None = None) -> WinnerRule:
        """The rule for ``--by by`` (None: the primary objective); a one-line error for a metric the
        study did not measure."""
        if by is None:
            return cls(spec.objective.metric, spec.objective.direction, True)
        measured = spec.measured_metrics()
        if by not in measured:
            what = f"{by!r} was not measured by this study" if by in (*ACCURACY_METRICS, *COST_METRICS) \
                else f"unknown metric {by!r}"
            raise HpoError(f"{what} (choose from {', '.join(measured)})", field="--by")
        named = {o.metric: o.direction for o in spec.objectives}
        direction = named.get(by, "maximize" if by in ACCURACY_METRICS else "minimize")
        return cls(by, direction, by == spec.objective.metric)

    @property
    def maximize(self) -> bool:
        return self.direction == "maximize"

    def describe(self) -> str:
        """The rule in words, for output and export headers."""
        return (f"best {self.metric} ({self.direction}{', the primary objective' if self.primary else ''}) "
                "among feasible trials")

    def to_json(self) -> dict[str, Any]:
        return {"metric": self.metric, "direction": self.direction, "primary": self.primary, "rule": self.describe()}

    def trial_value(self, trial: FrozenTrial, spec: StudySpec | None) -> float | None:
        """The trial's value of the metric: its objective value where it is one, else its recorded metric
        (no spec: a plain Optuna study, its first value)."""
        if spec is None:
            return float(trial.values[0]) if trial.values else None
        names = [o.metric for o in spec.objectives]
        if self.metric in names and trial.values:
            return float(trial.values[names.index(self.metric)])
        return _number(trial.user_attrs.get(self.metric))

    def model_value(self, model: FinalModel) -> float | None:
        """A retrained model's value: its full-set objective value (the primary objective), its full-set
        metric, or its cost."""
        if self.primary:
            return _number(model.full_value)
        return _number(model.metrics.get(self.metric, model.costs.get(self.metric)))

    def sort_key(self, value: float | None, number: int) -> tuple[bool, float, int]:
        """Smaller is better: trials with the value first, best first, earlier first."""
        if value is None:
            return True, 0.0, number
        return False, -value if self.maximize else value, number

    def rank_trials(self, trials: Sequence[FrozenTrial], spec: StudySpec | None) -> list[FrozenTrial]:
        """Complete trials best first, feasible ones before infeasible ones."""
        complete = [t for t in trials if t.state == TrialState.COMPLETE and t.values]
        return sorted(complete, key=lambda t: (not trial_feasible(t), *self.sort_key(self.trial_value(t, spec),
                                                                                      t.number)))

    def pick_trial(self, study: optuna.Study, spec: StudySpec) -> FrozenTrial:
        """The winning trial; a one-line error when no complete trial is feasible."""
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        ranked = [t for t in self.rank_trials(trials, spec) if trial_feasible(t)
                  and self.trial_value(t, spec) is not None]
        if not ranked:
            why = "no complete trial yet" if not trials else f"none of its {len(trials)} complete trials is feasible"                 f"{'' if self.primary else f' and has {self.metric}'}"
            raise HpoError(f"study {study.study_name!r} has {why}; pick one with --trial N", field="--study")
        return ranked[0]

    def pick_model(self, models: Sequence[FinalModel]) -> FinalModel | None:
        """The winning retrained model (succeeded, feasible, with the metric); None if there is none."""
        candidates = [m for m in models if m.ok and m.feasible is not False and self.model_value(m) is not None]
        if not candidates:
            return None
        return min(candidates, key=lambda m: self.sort_key(self.model_value(m), m.mini_rank))


def trial_feasible(trial: FrozenTrial) -> bool:
    """Every constraint met (or none set)."""
    return trial.user_attrs.get(attrs.FEASIBLE) is not False and total_violation(trial) <= 0


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def final_record(study: optuna.Study) -> dict[str, Any] | None:
    record = study.user_attrs.get(attrs.STUDY_FINAL)
    return record if isinstance(record, dict) else None


def final_winner(study: optuna.Study) -> tuple[dict[str, Any], dict[str, Any]]:
    """The study's final record and its winning model; a one-line error if there is none."""
    record = final_record(study)
    if record is None:
        raise HpoError(f"study {study.study_name!r} has no final model yet: run `hpo retrain --study "
                       f"{study.study_name}` first", field="--final")
    winner = next((m for m in record["models"] if m["trial"] == record.get("winner")), None)
    if winner is None:
        raise HpoError(f"no retrained model of study {study.study_name!r} succeeded", field="--final")
    return record, winner


def summary_lines(record: dict[str, Any]) -> list[str]:
    """What ``retrain`` and ``status`` say about the final models, in words."""
    lines = []
    winner = record.get("winner")
    chosen = record.get("chosen_by") or {"metric": record["metric"], "rule": f"best {record['metric']}"}
    if winner is not None:
        w = next(m for m in record["models"] if m["trial"] == winner)
        by = chosen["metric"]
        by_value = (w.get("metrics") or {}).get(by, (w.get("costs") or {}).get(by))
        extra = "" if by == record["metric"] else f", {by} {format_value(by_value, 6)}"
        lines.append(f"winner on the full set: trial {winner} ({record['metric']} {w['full_value']:.5f}{extra}, "
                     f"mAP75 {format_value(w['metrics'].get('map75'))}, weights {_mb(w['weight_bytes'])}"
                     f"{'' if w.get('under_limit') else ' OVER the 100 MB limit'}), chosen by {chosen['rule']}")
        mini = record.get("mini_winner")
        if mini == winner:
            lines.append(f"the mini-set winner (trial {mini}) is also the full-set winner")
        else:
            rank = record.get("mini_winner_full_rank")
            lines.append(f"the mini-set winner (trial {mini}) ranks {rank if rank else 'n/a'} on the full set")
    elif any(m.get("full_value") is not None and not m.get("error") for m in record["models"]):
        lines.append(f"no winner: no retrained model is feasible with {chosen['metric']} measured "
                     f"({chosen['rule']})")
    n_ok = sum(1 for m in record["models"] if m.get("full_value") is not None and not m.get("error"))
    if record.get("spearman") is not None:
        lines.append(f"Spearman rank correlation mini vs full over {n_ok} models: {record['spearman']:+.3f} "
                     "(1: the mini set ranks the hyps exactly as the full set does)")
    elif n_ok >= 3:
        lines.append("Spearman rank correlation mini vs full: undefined (all values tie on one side)")
    return lines


def format_value(value: Any, digits: int = 5) -> str:
    return (f"{value:.5f}" if digits == 5 else f"{value:.{digits}g}") if isinstance(value, (int, float)) else "n/a"


def _mb(n: Any) -> str:
    return f"{n / 1e6:.1f} MB" if isinstance(n, (int, float)) else "n/a"
