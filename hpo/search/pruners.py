"""Pruners by name: the one registry ``--pruner``, study files and workers share.

Every pruner steps over epochs (1..epochs) and never stops a trial before ``spec.prune_after``.
Adding a pruner means adding one entry to :data:`PRUNERS`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

import optuna

if TYPE_CHECKING:
    from hpo.spec import StudySpec

PrunerFactory = Callable[["StudySpec"], optuna.pruners.BasePruner]


def _hyperband(spec: StudySpec) -> optuna.pruners.BasePruner:
    # max_resource set explicitly: Optuna's "auto" guesses it from the first trial.
    return optuna.pruners.HyperbandPruner(min_resource=spec.prune_after, max_resource=spec.epochs,
                                          reduction_factor=3)


def _median(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=spec.prune_after)


def _successive_halving(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.SuccessiveHalvingPruner(min_resource=spec.prune_after, reduction_factor=3)


def _none(spec: StudySpec) -> optuna.pruners.BasePruner:
    return optuna.pruners.NopPruner()


#: name -> factory; the order is the one ``--help`` shows.
PRUNERS: dict[str, PrunerFactory] = {
    "hyperband": _hyperband,
    "median": _median,
    "sha": _successive_halving,
    "none": _none,
}


def create_pruner(name: str, spec: StudySpec) -> optuna.pruners.BasePruner:
    """The pruner ``name`` configured for ``spec``."""
    try:
        factory = PRUNERS[name]
    except KeyError:
        raise ValueError(f"unknown pruner {name!r} (choose from {', '.join(PRUNERS)})") from None
    return factory(spec)
