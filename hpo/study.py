"""Create, join and read hpo studies in an Optuna storage.

A study carries everything needed to run or inspect it as study attributes: the spec, the sampler
and pruner names, the objective and the trial budget. Later commands (``worker``, ``status``,
``export``, ``retrain``) need only the storage and the study name.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import TrialState

from hpo import attrs, optuna_compat
from hpo.errors import HpoError
from hpo.search.pruners import PRUNERS
from hpo.search.samplers import SAMPLERS
from hpo.spec import StudySpec, parse_spec, unfit



@dataclass(frozen=True)
class StudySettings:
    """The run settings of a study, as stored with it."""

    spec: StudySpec
    sampler: str
    pruner: str
    budget: int
    #: Study-wide budget of epochs trained (None: the trial budget alone), see :func:`epoch_use`.
    epoch_budget: int | None = None
    #: What joining the study changed, as ``"sampler ga -> tpe"`` lines (empty on creation).
    changes: tuple[str, ...] = field(default=(), compare=False)

    @property
    def epochs_per_trial(self) -> int:
        """The most epochs one trial trains: the study's, plus the screen pruner's short schedule first."""
        return self.spec.epochs + (self.spec.screen.epochs if self.pruner == "screen" else 0)


def _attrs(settings: StudySettings) -> dict[str, Any]:
    spec = settings.spec
    return {
        attrs.STUDY_SPEC: spec.to_json(),
        attrs.STUDY_SAMPLER: settings.sampler,
        attrs.STUDY_PRUNER: settings.pruner,
        attrs.STUDY_BUDGET: settings.budget,
        attrs.STUDY_EPOCH_BUDGET: settings.epoch_budget,
        attrs.STUDY_OBJECTIVE: spec.objective.model_dump(),
        attrs.STUDY_OBJECTIVES: [o.model_dump() for o in spec.objectives],
    }


def create_or_join(
    storage: optuna.storages.BaseStorage,
    spec: StudySpec,
    *,
    sampler: str | None = None,
    pruner: str | None = None,
    budget: int | None = None,
    epoch_budget: int | None = None,
    allow_spec_change: bool = False,
    allow_budget_cut: bool = False,
) -> StudySettings:
    """Create the study (base hyps enqueued as trial 0) or join it, checking the spec matches.

    Joining keeps the stored sampler, pruner and budgets unless given (or changed in a replaced spec);
    whatever a join changes is listed in the returned settings' ``changes`` (``old -> new``), so it
    is said, not done silently.
    A budget below the trials already finished is refused unless ``allow_budget_cut``.
    """
    for name, registry, option in ((sampler, SAMPLERS, "--sampler"), (pruner, PRUNERS, "--pruner")):
        if name is not None and name not in registry:
            raise HpoError(f"unknown {option[2:]} {name!r} (choose from {', '.join(registry)})", field=option)
    existing = {s.study_name: s for s in storage.get_all_studies()}
    if spec.name in existing:
        stored = load_settings(storage, spec.name)
        changes: list[str] = []
        if stored.spec != spec:
            diff = _first_difference(stored.spec.to_json(), spec.to_json())
            if not allow_spec_change:
                raise HpoError(
                    f"study {spec.name!r} exists with a different spec ({diff}); use --allow-spec-change "
                    "to replace the stored spec, or give the study a new name", field="--study")
            changes.append(f"spec replaced ({diff})")
        study = optuna.load_study(study_name=spec.name, storage=storage)
        # Not given: the stored value, unless the (replaced) study file itself changed it.
        old = stored.spec
        new = StudySettings(spec, sampler or (stored.sampler if spec.sampler == old.sampler else spec.sampler),
                            pruner or (stored.pruner if spec.pruner == old.pruner else spec.pruner),
                            budget or (stored.budget if spec.trials == old.trials else spec.trials),
                            epoch_budget or (stored.epoch_budget if spec.epoch_budget == old.epoch_budget
                                             else spec.epoch_budget))
        finished = progress(study).finished
        if new.budget < finished and new.budget != stored.budget and not allow_budget_cut:
            raise HpoError(f"budget {new.budget} is below the {finished} trials study {spec.name!r} has already "
                           f"finished (stored budget {stored.budget}); use --allow-budget-cut to set it anyway",
                           field="--trials")
        _check_fits(spec, new.sampler, new.pruner)
        for what, before, after in (("sampler", stored.sampler, new.sampler), ("pruner", stored.pruner, new.pruner),
                                    ("budget", stored.budget, new.budget),
                                    ("epoch budget", stored.epoch_budget, new.epoch_budget)):
            if before != after:
                changes.append(f"{what} {before} -> {after}")
        for key, value in _attrs(new).items():
            study.set_user_attr(key, value)
        _name_metric(study, spec)
        return dataclasses.replace(new, changes=tuple(changes))

    settings = StudySettings(spec, sampler or spec.sampler, pruner or spec.pruner, budget or spec.trials,
                             epoch_budget or spec.epoch_budget)
    _check_fits(spec, settings.sampler, settings.pruner)  # before anything is created
    study = optuna.create_study(study_name=spec.name, storage=storage, directions=spec.directions,
                                load_if_exists=True)
    for key, value in _attrs(settings).items():
        study.set_user_attr(key, value)
    _name_metric(study, spec)
    if spec.base_params() and not study.get_trials(deepcopy=False):
        study.enqueue_trial(spec.base_params(), user_attrs={attrs.BASE_TRIAL: True})
    return settings


def _check_fits(spec: StudySpec, sampler: str, pruner: str) -> None:
    """Refuse a sampler or pruner that cannot handle the spec's objectives or constraints."""
    if (problem := unfit(spec, sampler, pruner)) is not None:
        field = f"--{problem[0]}" if problem[0] in ("sampler", "pruner") else f"--pruner (study file {problem[0]})"
        raise HpoError(problem[1], field=field)


def _name_metric(study: optuna.Study, spec: StudySpec) -> None:
    """The objectives' names on the study, so the dashboard says "fitness", not "Objective 0"."""
    names = [o.metric for o in spec.objectives]
    if study.metric_names != names:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            study.set_metric_names(names)


def load_settings(storage: optuna.storages.BaseStorage, name: str) -> StudySettings:
    """The stored settings of study ``name``; a one-line error if it is no hpo study."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        names = sorted(s.study_name for s in storage.get_all_studies())
        hint = f" (studies here: {', '.join(names)})" if names else " (the storage holds no study)"
        raise HpoError(f"no study named {name!r} in this storage{hint}", field="--study") from None
    stored = storage.get_study_user_attrs(study_id)
    if attrs.STUDY_SPEC not in stored:
        raise HpoError(f"study {name!r} was not created by hpo (no stored spec)", field="--study")
    spec = parse_spec(stored[attrs.STUDY_SPEC], source=f"study {name!r} in storage", stored=True)
    return StudySettings(spec, stored.get(attrs.STUDY_SAMPLER, spec.sampler),
                         stored.get(attrs.STUDY_PRUNER, spec.pruner), int(stored.get(attrs.STUDY_BUDGET, spec.trials)),
                         stored.get(attrs.STUDY_EPOCH_BUDGET, spec.epoch_budget))


def study_names(storage: optuna.storages.BaseStorage) -> list[str]:
    return [s.study_name for s in storage.get_all_studies()]


@dataclass(frozen=True)
class StudyProgress:
    """Trials of a study per state, and how many count against its budget.

    The budget counts the trials that trained: ``complete`` and ``pruned`` (stopped by the pruner
    while training). Trials refused before training because a cost constraint known up front broke
    (``infeasible``, marked ``hpo:untrained``) are PRUNED in Optuna but trained nothing, so they do not
    count; neither do ``failed`` ones (a crashed or lost trial is retried). This is the one definition
    the workers' stop condition, ``hpo launch``'s progress and ``hpo status`` use.
    """

    complete: int
    pruned: int  # pruned while training (the refused-untrained ones are in ``infeasible``)
    failed: int
    running: int
    waiting: int
    infeasible: int = 0  # refused before training (cost constraint): outside the budget

    @property
    def finished(self) -> int:
        """Trials that count against the budget."""
        return self.complete + self.pruned


def count_trials(study: optuna.Study, *, number_below: int | None = None) -> dict[TrialState, int]:
    """Trials per state, with one counting query where the storage has it (hpo's RDB storage)."""
    return _counts(study, number_below)[0]


def _counts(study: optuna.Study, number_below: int | None) -> tuple[dict[TrialState, int], int]:
    """Trials per state and the PRUNED ones refused untrained; one query on hpo's RDB storage."""
    storage = optuna_compat.backend_of(study)
    if hasattr(storage, "count_trials"):
        return storage.count_trials(optuna_compat.study_id(study), number_below=number_below,
                                    marked=attrs.UNTRAINED)
    counts = {state: 0 for state in TrialState}
    untrained = 0
    for t in study.get_trials(deepcopy=False):
        if number_below is None or t.number < number_below:
            counts[t.state] += 1
            untrained += t.state == TrialState.PRUNED and bool(t.user_attrs.get(attrs.UNTRAINED))
    return counts, untrained


def complete_values(study: optuna.Study, attr: str) -> list[tuple[int, float, Any]]:
    """``(number, value, user attribute attr)`` of the COMPLETE trials, without loading whole trials."""
    storage = optuna_compat.backend_of(study)
    if hasattr(storage, "complete_trial_values"):
        return storage.complete_trial_values(optuna_compat.study_id(study), attr)
    return [(t.number, t.values[0], t.user_attrs.get(attr))  # the primary objective
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]


def progress(study: optuna.Study, *, number_below: int | None = None) -> StudyProgress:
    """The study's trials per state (only those numbered below ``number_below`` if given)."""
    counts, untrained = _counts(study, number_below)
    return StudyProgress(counts[TrialState.COMPLETE], counts[TrialState.PRUNED] - untrained, counts[TrialState.FAIL],
                         counts[TrialState.RUNNING], counts[TrialState.WAITING], infeasible=untrained)


@dataclass(frozen=True)
class EpochUse:
    """Where a study stands against its epoch budget: the epochs its finished trials trained, and a full
    trial's epochs for each running one (what it may still train; a pruner may free some of it)."""

    trained: int
    reserved: int

    @property
    def committed(self) -> int:
        return self.trained + self.reserved


def epoch_use(study: optuna.Study, epochs_per_trial: int, *, number_below: int | None = None) -> EpochUse:
    """The epochs of the trials that count against the budget (complete, and pruned while training: their
    recorded epochs) and those reserved by running trials; trials numbered ``number_below`` or above are
    left out (the rank check of a trial just asked). Failed trials are retried, resuming what they
    trained, so their epochs count once, with the retry."""
    trained = reserved = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING)):
        if number_below is not None and t.number >= number_below:
            continue
        if t.state == TrialState.RUNNING:
            reserved += epochs_per_trial
        elif not t.user_attrs.get(attrs.UNTRAINED):
            trained += int(t.user_attrs.get(attrs.EPOCHS) or t.last_step or 0)
    return EpochUse(trained, reserved)


def trained_twin(study: optuna.Study, params: dict[str, Any], *,
                 number: int) -> optuna.trial.FrozenTrial | None:
    """The first COMPLETE trial other than ``number`` trained with exactly ``params``, if any.

    Samplers do re-propose points (NSGA-II's crossover of two parents that share genes, TPE on small
    categorical spaces: 3 of 30 NSGA-II trials on the deploy demo): with a study's fixed training seed
    a second training of the same hyps costs a whole trial and tells nothing new."""
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        if t.number != number and t.params == params and not t.user_attrs.get(attrs.UNTRAINED):
            return t
    return None


def infeasible_cap(budget: int, per_trial: int) -> int | None:
    """How many trials refused before training a study of ``budget`` may have before its workers stop
    (``per_trial`` refusals per budgeted trial; 0: no cap). Refusals are cheap (no training), but a
    sampler that keeps proposing infeasible models must not loop forever."""
    return per_trial * budget if per_trial > 0 else None


def best_trial(study: optuna.Study) -> optuna.trial.FrozenTrial | None:
    """The best trial; in a multi-objective study the front's best by the primary (first) objective."""
    if is_multi_objective(study):
        front = pareto_front(study)
        if not front:
            return None
        sign = -1.0 if study.directions[0] == optuna.study.StudyDirection.MAXIMIZE else 1.0
        return min(front, key=lambda t: (sign * t.values[0], t.number))
    try:
        return study.best_trial
    except ValueError:
        return None


def gain_over_base(study: optuna.Study, spec: StudySpec) -> dict[str, Any] | None:
    """The best trial against the base hyps (trial 0), in the objective's units and, where the spec
    states the measured seed-to-seed noise, in multiples of it: is the search's gain real or luck?

    None for multi-objective studies and before both the base and a best trial are complete.
    """
    if is_multi_objective(study):
        return None
    base = next((t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
                 if t.user_attrs.get(attrs.BASE_TRIAL)), None)
    best = best_trial(study)
    if base is None or best is None or base.value is None or best.value is None:
        return None
    sign = 1.0 if study.direction == optuna.study.StudyDirection.MAXIMIZE else -1.0
    gain = sign * (best.value - base.value)
    out: dict[str, Any] = {"base": {"number": base.number, "value": base.value},
                           "best": {"number": best.number, "value": best.value}, "gain": gain}
    if spec.noise is not None:
        out["noise_std"] = spec.noise.std
        out["gain_in_noise"] = gain / spec.noise.std
        out["noise_source"] = spec.noise.source
    return out


def is_multi_objective(study: optuna.Study) -> bool:
    return len(study.directions) > 1


def pareto_front(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    """The complete trials no other dominates (``study.best_trials``: feasible ones first, as Optuna
    ranks with constraints), in trial order; a single-objective study's best trial. A trial that reused a
    re-proposed point's result is left out: its twin, with the same values, is on the front."""
    if not is_multi_objective(study):
        best = best_trial(study)
        return [best] if best is not None else []
    return sorted((t for t in study.best_trials if attrs.DUPLICATE_OF not in t.user_attrs), key=lambda t: t.number)


def _first_difference(old: Any, new: Any, path: str = "") -> str:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                return _first_difference(old.get(key), new.get(key), f"{path}.{key}" if path else key)
    return f"{path or 'spec'}: stored {json.dumps(old)}, given {json.dumps(new)}"
