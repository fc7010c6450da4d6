"""Every private Optuna name hpo relies on, in one place.

hpo needs a few things Optuna keeps to itself: one-statement SQL on its RDB tables (an atomic claim
of a queued trial, counting queries), the heartbeat thread that ``study.optimize()`` runs (we use
ask/tell), the stale-trial query, the whole study behind Hyperband's per-bracket view, and a
distribution's membership test. Each is wrapped here and has a test (``tests/test_optuna_compat.py``)
that fails loudly when an Optuna upgrade moves it, so the upgrade breaks in one module, not in many.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages._heartbeat import get_heartbeat_thread as _get_heartbeat_thread
from optuna.storages._heartbeat import is_heartbeat_enabled as _is_heartbeat_enabled
from optuna.storages._rdb import models as rdb_models  # the ORM tables (TrialModel, ...)
from optuna.storages._rdb.storage import _create_scoped_session

__all__ = ["rdb_models", "rdb_session", "storage_of", "backend_of", "study_id", "trial_id", "whole_study",
           "heartbeat", "heartbeat_enabled", "stale_trial_ids", "heartbeat_stale_trial_ids", "prepare_new_trial",
           "trial_start_column", "CREATE_TRIAL_METHOD", "CACHED_STORAGE_PRIVATE_CALLS", "stale_trial_callback",
           "contains"]


@contextlib.contextmanager
def rdb_session(storage: optuna.storages.RDBStorage) -> Iterator[Any]:
    """A session on the storage's database that commits on success and rolls back on error."""
    with _create_scoped_session(storage.scoped_session) as session:
        yield session


def storage_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage a study object talks to (possibly Optuna's caching wrapper)."""
    return study._storage


def backend_of(study: optuna.Study) -> optuna.storages.BaseStorage:
    """The storage itself: Optuna wraps RDB storages in a cache (``_CachedStorage._backend``)."""
    storage = storage_of(study)
    return getattr(storage, "_backend", storage)


def study_id(study: optuna.Study) -> int:
    return study._study_id


def trial_id(trial: optuna.Trial | optuna.trial.FrozenTrial) -> int:
    return trial._trial_id


def whole_study(study: optuna.Study) -> optuna.Study:
    """The study itself: Hyperband hands samplers a per-bracket view (``_BracketStudy._study``)."""
    return getattr(study, "_study", study)


def heartbeat(trial: optuna.Trial, study: optuna.Study) -> contextlib.AbstractContextManager[Any]:
    """The heartbeat thread ``study.optimize()`` runs around a trial, for ask/tell loops."""
    return _get_heartbeat_thread(trial_id(trial), storage_of(study))


def heartbeat_enabled(storage: optuna.storages.BaseStorage) -> bool:
    return _is_heartbeat_enabled(storage)


def stale_trial_ids(storage: optuna.storages.BaseStorage, study: optuna.Study) -> list[int]:
    """RUNNING trials of dead workers: hpo's storage also counts those that never had a heartbeat."""
    backend = getattr(storage, "_backend", storage)
    if hasattr(backend, "stale_trial_ids"):
        return list(backend.stale_trial_ids(study_id(study)))
    return heartbeat_stale_trial_ids(storage, study_id(study))


def heartbeat_stale_trial_ids(storage: optuna.storages.BaseStorage, study_id: int) -> list[int]:
    """Optuna's own check: RUNNING trials whose last heartbeat is older than the grace period.

    Trials that never recorded a heartbeat are skipped by it.
    """
    return list(storage._get_stale_trial_ids(study_id))  # type: ignore[attr-defined]


#: Private RDBStorage methods that Optuna's caching wrapper (``_CachedStorage``) calls directly: each
#: opens its own session, so for hpo's retrying storage they are outermost calls like the public API.
CACHED_STORAGE_PRIVATE_CALLS = ("_get_best_trial_id", "_get_stale_trial_ids", "_get_trials", "_set_trial_param")

#: The storage method Optuna's caching wrapper (``_CachedStorage.create_new_trial``) calls to create a
#: trial; it returns the new FrozenTrial and retries failed attempts itself, also ones that committed.
CREATE_TRIAL_METHOD = "_create_new_trial"


def trial_start_column() -> Any:
    """The trials table's start-time column: naive UTC (Optuna 5 hides it behind a local-time property)."""
    return rdb_models.TrialModel._datetime_start_utc


def prepare_new_trial(storage: optuna.storages.RDBStorage, study_id: int, template: optuna.trial.FrozenTrial,
                      session: Any) -> Any:
    """Add a trial built from ``template`` (numbered, attributes, params) to ``session``, uncommitted."""
    return storage._get_prepared_new_trial(study_id, template, session)  # type: ignore[attr-defined]


def stale_trial_callback(storage: optuna.storages.BaseStorage) -> Any:
    return storage.get_heartbeat_stale_trial_callback()  # type: ignore[attr-defined]


def contains(dist: BaseDistribution, value: Any) -> bool:
    """Whether ``value`` (external representation) lies in ``dist``; False if it cannot be one."""
    try:
        internal = dist.to_internal_repr(value)
    except Exception:  # noqa: BLE001 - a value of the wrong kind is simply not in it
        return False
    return bool(dist._contains(internal))
