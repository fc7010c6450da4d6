"""Pruners by name: the one registry ``--pruner``, study files and workers share.

Every pruner steps over epochs (1..epochs) and never stops a trial before ``spec.prune_after``.
Adding a pruner means adding one entry to :data:`PRUNERS`.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Callable, Sequence

import optuna
from optuna.trial import TrialState

from hpo.attrs import BASE_TRIAL, SCREEN

if TYPE_CHECKING:
    from hpo.spec import StudySpec

PrunerFactory = Callable[["StudySpec"], optuna.pruners.BasePruner]


class ReferenceCurvePruner(optuna.pruners.BasePruner):
    """Prune a trial whose best objective so far falls more than ``margin`` behind a reference trial's
    best at the same epoch.

    Why a reference curve and not Hyperband's ranks: fine-tuning curves are noisy epoch to epoch (a
    warm-up shakes the pretrained head), so ranking trials on one epoch's value prunes on noise. The
    best value up to epoch k is what the trial would report if stopped there (the objective is taken
    at the best epoch), and a margin of the measured seed-to-seed noise keeps trials that only lost a
    coin toss. References:

    - ``"base"``: the base hyps' trial (what a user gets without a search); prunes the hyps that
      break the pretrained model (too high a learning rate, too strong augmentation) and nothing else.
    - ``"incumbent"``: the best finished trial; prunes every trial already out of reach of the best.

    A reference still training counts up to the epochs it has reached, so the first workers of a
    study need not wait for it to finish; no reference at an epoch means no pruning there.

    ``margin`` is one number or one per epoch (epoch 1 first; the last serves later epochs): the best
    objective up to a mid-training epoch swings between seeds several times more than the final one
    (benchmark 11: a std of 0.03-0.04 up to epoch 9 of 15 against 0.009 at the end), and a final-value
    margin there prunes children of good parents on seed luck.
    """

    def __init__(self, reference: str, margin: float | Sequence[float] = 0.0, min_epochs: int = 1) -> None:
        if reference not in ("base", "incumbent"):
            raise ValueError(f"reference must be 'base' or 'incumbent', not {reference!r}")
        margins = [margin] if isinstance(margin, (int, float)) else list(margin)
        if not margins or any(m < 0 for m in margins):
            raise ValueError(f"margin must be >= 0 (one number or one per epoch), not {margin}")
        self.reference, self.margin, self.min_epochs = reference, margin, min_epochs
        self._margins = [float(m) for m in margins]

    def margin_at(self, step: int) -> float:
        """The margin at epoch ``step`` (1-based)."""
        return self._margins[min(step, len(self._margins)) - 1]

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        step = trial.last_step
        if step is None or step < self.min_epochs or trial.user_attrs.get(BASE_TRIAL):
            return False
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        reference = self._reference(study, trial)
        if reference is None or not reference.intermediate_values or max(reference.intermediate_values) < step:
            return False  # no reference at this epoch (yet)
        ref_best = _best_up_to(reference.intermediate_values, step, maximize)
        own_best = _best_up_to(trial.intermediate_values, step, maximize)
        if ref_best is None or own_best is None:
            return False
        margin = self.margin_at(step)
        return own_best < ref_best - margin if maximize else own_best > ref_best + margin

    def _reference(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> optuna.trial.FrozenTrial | None:
        if self.reference == "incumbent":
            try:
                return study.best_trial  # one storage query, not every trial (asked after every epoch)
            except ValueError:  # no complete trial yet
                return None
        # A base trial retried after its worker died: the copy that got furthest.
        bases = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING, TrialState.COMPLETE))
                 if t.number != trial.number and t.user_attrs.get(BASE_TRIAL) and t.intermediate_values]
        return max(bases, key=lambda t: max(t.intermediate_values), default=None)


class ScreenPruner(optuna.pruners.BasePruner):
    """Screening by a short full schedule, a promotion rule rather than a per-epoch pruner.

    The trial runner trains every trial first for ``epochs`` epochs with the whole schedule (warm-up,
    learning-rate decay) compressed into them, and asks :meth:`promotes`: a trial trains in full only if
    its screen value ranks within the top ``keep`` share of every screen value the study has so far
    (its own included; the base hyps always go on, as the yardstick). Measured near the base hyps
    (bench/results.md, section 12): a 3-epoch schedule ranks 15-epoch results with Spearman 0.53 where
    the first 3 epochs of the 15-epoch training manage 0.22, because the improvements a fine-tune
    finds show only once the learning rate has decayed. During the full training it prunes nothing.
    """

    def __init__(self, epochs: int, keep: float) -> None:
        self.epochs = epochs
        self.keep = keep

    def prune(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> bool:
        return False

    def promotes(self, study: optuna.Study, number: int, value: float) -> tuple[bool, str]:
        """Whether trial ``number``, screened at ``value``, trains in full, and a phrase saying why."""
        maximize = study.direction == optuna.study.StudyDirection.MAXIMIZE
        others = [t.user_attrs[SCREEN]["value"] for t in study.get_trials(deepcopy=False)
                  if t.number != number and isinstance(t.user_attrs.get(SCREEN), dict)
                  and t.user_attrs[SCREEN].get("value") is not None]
        screened = len(others) + 1
        rank = 1 + sum(1 for v in others if (v > value if maximize else v < value))
        places = max(1, math.ceil(self.keep * screened))
        verdict = rank <= places
        return verdict, (f"screen value {value:.5f} after a {self.epochs}-epoch schedule ranks {rank} of {screened} "
                         f"screened; the top {places} ({self.keep:.0%}) train in full")


def _best_up_to(values: dict[int, float], step: int, maximize: bool) -> float | None:
    """The best intermediate value at epochs <= ``step`` (NaN ignored); None if there is none."""
    seen = [v for s, v in values.items() if s <= step and v == v]
    if not seen:
        return None
    return max(seen) if maximize else min(seen)


def _hyperband(spec: StudySpec) -> optuna.pruners.BasePruner:
    # max_resource set explicitly: Optuna's "auto" guesses it from the first trial.
    return optuna.pruners.HyperbandPruner(min_resource=spec.prune_after, max_resource=spec.epochs,
                                          reduction_factor=3)


def _median(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=spec.prune_after)


def _successive_halving(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.prune_after, reduction_factor=3)


def _margin(spec: StudySpec) -> float | list[float]:
    # The measured seed-to-seed noise: a trial is only behind when it is behind by more; per epoch
    # (`noise.per_epoch`) where measured, else the final value's (`noise.std`) at every epoch.
    if spec.noise is None:
        return 0.0
    return list(spec.noise.per_epoch) if spec.noise.per_epoch else spec.noise.std


def _base(spec: StudySpec) -> optuna.pruners.BasePruner:
    return ReferenceCurvePruner("base", margin=_margin(spec), min_epochs=spec.prune_after)


def _incumbent(spec: StudySpec) -> optuna.pruners.BasePruner:
    return ReferenceCurvePruner("incumbent", margin=_margin(spec), min_epochs=spec.prune_after)


def _screen(spec: StudySpec) -> optuna.pruners.BasePruner:
    return ScreenPruner(spec.screen.epochs, spec.screen.keep)


def _none(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


#: name -> factory; the order is the one ``--help`` shows.
PRUNERS: dict[str, PrunerFactory] = {
    "hyperband": _hyperband,
    "median": _median,
    "sha": _successive_halving,
    "base": _base,
    "incumbent": _incumbent,
    "screen": _screen,
    "none": _none,
}


def create_pruner(name: str, spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner ``name`` configured for ``spec``."""
    try:
        factory = PRUNERS[name]
    except KeyError:
        raise ValueError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})") from None
    return factory(spec)
