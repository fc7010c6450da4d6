"""Samplers by name: the one registry ``--sampler``, study files and workers share.

YOLOv5's GA and Optuna's own samplers, configured for many parallel workers. Adding a sampler means
adding one entry to :data:`SAMPLERS`.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Callable

import optuna
from optuna.samplers import BaseSampler

from hpo.search.samplers.ga import YoloV5GASampler

if TYPE_CHECKING:
    from hpo.spec import StudySpec

__all__ = ["CONSTRAINED", "MULTI_OBJECTIVE", "SAMPLERS", "YoloV5GASampler", "create_sampler", "nsga2_population",
           "sampler_problem", "worker_seed"]

SamplerFactory = Callable[["StudySpec", "int | None"], BaseSampler]


def _ga(spec: StudySpec, seed: int | None) -> BaseSampler:
    ga = spec.ga
    return YoloV5GASampler(spec.distributions(), spec.gains(), spec.base_params(), seed=seed, top_n=ga.top_n,
                           mutation=ga.mutation, mutation_prob=ga.mutation_prob, sigma=ga.sigma)


def _tpe(spec: StudySpec, seed: int | None) -> BaseSampler:
    # constant_liar: a running trial counts as a bad result, so parallel workers spread out.
    return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=False, constant_liar=True,
                                      n_startup_trials=5)


def _cmaes(spec: StudySpec, seed: int | None) -> BaseSampler:
    # The base hyps reach CMA-ES as the enqueued first trial (its x0 is deprecated).
    return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False, n_startup_trials=1)


def nsga2_population(trials: int) -> int:
    """NSGA-II's population for a budget of ``trials``: 8, but at most a third of the budget (at least 4).

    Its first generation is random sampling; with a population of 8 a 10-trial study never gets
    past it (benchmark 10: NSGA-II proposed what random did), so small budgets get a few generations.
    """
    return max(4, min(8, trials // 3))


def _nsga2(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.NSGAIISampler(seed=seed, population_size=nsga2_population(spec.trials))


def _gp(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5, deterministic_objective=False)


def _random(spec: StudySpec, seed: int | None) -> BaseSampler:
    return optuna.samplers.RandomSampler(seed=seed)


#: name -> factory; the order is the one ``--help`` shows.
SAMPLERS: dict[str, SamplerFactory] = {
    "ga": _ga,
    "tpe": _tpe,
    "cmaes": _cmaes,
    "nsga2": _nsga2,
    "gp": _gp,
    "random": _random,
}


#: Samplers that optimise several objectives at once, and those that honour constraints. A trial's
#: constraint values are set on it with Optuna's ``Trial.set_constraint`` (:mod:`hpo.search.cost`), which
#: TPE, NSGA-II and GP read from every trial: they need no ``constraints_func`` (deprecated in Optuna
#: 5.0). The GA picks feasible parents first, then the least violating. CMA-ES does neither; random
#: needs nothing (its proposals do not depend on earlier trials).
MULTI_OBJECTIVE = frozenset({"ga", "tpe", "nsga2", "gp", "random"})
CONSTRAINED = frozenset({"ga", "tpe", "nsga2", "gp", "random"})


def sampler_problem(name: str, *, multi_objective: bool, constrained: bool) -> str | None:
    """Why sampler ``name`` cannot run a study with these objectives/constraints (None: it can)."""
    if name not in SAMPLERS:
        return None  # the registry check says it
    if multi_objective and name not in MULTI_OBJECTIVE:
        return (f"{name!r} cannot optimise several objectives (choose from "
                f"{', '.join(s for s in SAMPLERS if s in MULTI_OBJECTIVE)})")
    if constrained and name not in CONSTRAINED:
        return f"{name!r} cannot honour constraints (choose from {', '.join(s for s in SAMPLERS if s in CONSTRAINED)})"
    return None


def create_sampler(name: str, spec: StudySpec, seed: int | None) -> BaseSampler:
    """The sampler ``name`` for ``spec``; ``seed`` must differ per worker (see :func:`worker_seed`).

    Optuna's samplers get the base hyps as the study's first, enqueued trial (see
    :func:`hpo.study.create_or_join`); the GA breeds from them directly.
    """
    try:
        factory = SAMPLERS[name]
    except KeyError:
        raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})") from None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        return factory(spec, seed)


def worker_seed(seed: int, worker_index: int) -> int:
    """A distinct, reproducible seed per worker: equal seeds make parallel workers propose twins."""
    return (seed * 1_000_003 + worker_index * 7919) % (2**31 - 1)
