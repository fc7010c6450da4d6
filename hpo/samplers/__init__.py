"""Samplers by name: YOLOv5's GA and Optuna's own, configured for many parallel workers."""

from __future__ import annotations

import warnings

import optuna
from optuna.samplers import BaseSampler

from hpo.samplers.ga import YoloV5GASampler
from hpo.spec import SAMPLERS, StudySpec

__all__ = ["SAMPLERS", "YoloV5GASampler", "create_sampler"]


def create_sampler(name: str, spec: StudySpec, seed: int | None) -> BaseSampler:
    """The sampler ``name`` for ``spec``; ``seed`` must differ per worker (see :func:`worker_seed`).

    Optuna's samplers get the base hyps as the study's first, enqueued trial (see
    :func:`hpo.study.create_or_join`); the GA breeds from them directly.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        if name == "ga":
            return YoloV5GASampler(spec.distributions(), spec.gains(), spec.base_params(), seed=seed)
        if name == "tpe":
            # constant_liar: a running trial counts as a bad result, so parallel workers spread out.
            return optuna.samplers.TPESampler(seed=seed, multivariate=True, group=False,
                                              constant_liar=True, n_startup_trials=5)
        if name == "cmaes":
            # The base hyps reach CMA-ES as the enqueued first trial (its x0 is deprecated).
            return optuna.samplers.CmaEsSampler(seed=seed, warn_independent_sampling=False,
                                                n_startup_trials=1)
        if name == "nsga2":
            return optuna.samplers.NSGAIISampler(seed=seed, population_size=8)
        if name == "gp":
            return optuna.samplers.GPSampler(seed=seed, n_startup_trials=5, deterministic_objective=False)
        if name == "random":
            return optuna.samplers.RandomSampler(seed=seed)
    raise ValueError(f"unknown sampler {name!r} (choose from {', '.join(SAMPLERS)})")


def worker_seed(seed: int, worker_index: int) -> int:
    """A distinct, reproducible seed per worker: equal seeds make parallel workers propose twins."""
    return (seed * 1_000_003 + worker_index * 7919) % (2**31 - 1)
