"""One test per private Optuna name hpo uses (hpo/optuna_compat.py): an upgrade breaks here, loudly."""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import TrialState
from sqlalchemy import select

from hpo import optuna_compat
from hpo.storage import open_storage


def _study(tmp_path: Path, **kwargs) -> optuna.Study:
    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}", **kwargs)
    return optuna.create_study(study_name="c", storage=storage)


def test_rdb_session_and_models(tmp_path: Path) -> None:
    study = _study(tmp_path)
    study.enqueue_trial({"x": 1.0})
    storage = optuna_compat.backend_of(study)
    with optuna_compat.rdb_session(storage) as session:
        states = list(session.execute(select(optuna_compat.rdb_models.TrialModel.state)))
    assert states == [(TrialState.WAITING,)]
    assert {"TrialModel", "TrialValueModel", "TrialUserAttributeModel"} <= set(vars(optuna_compat.rdb_models))


def test_storage_ids_and_backend(tmp_path: Path) -> None:
    study = _study(tmp_path)
    trial = study.ask()
    assert optuna_compat.storage_of(study) is study._storage
    backend = optuna_compat.backend_of(study)
    assert isinstance(backend, optuna.storages.RDBStorage)  # not Optuna's caching wrapper
    assert backend.get_study_id_from_name("c") == optuna_compat.study_id(study)
    assert backend.get_trial(optuna_compat.trial_id(trial)).number == trial.number


def test_whole_study_behind_hyperbands_bracket_view(tmp_path: Path) -> None:
    seen: list[optuna.Study] = []

    class Spy(optuna.samplers.RandomSampler):
        def sample_relative(self, study, trial, search_space):  # type: ignore[no-untyped-def]
            seen.append(study)
            return super().sample_relative(study, trial, search_space)

    storage = open_storage(f"sqlite:///{tmp_path / 'c.db'}")
    study = optuna.create_study(study_name="h", storage=storage, sampler=Spy(seed=0),
                                pruner=optuna.pruners.HyperbandPruner(min_resource=1, max_resource=9))
    study.optimize(lambda t: t.suggest_float("x", 0, 1), n_trials=3)
    bracket_views = [s for s in seen if s is not study]
    assert bracket_views, "Hyperband no longer hands samplers a per-bracket study"
    assert all(optuna_compat.whole_study(s) is study for s in bracket_views)


def test_heartbeat_and_stale_trials(tmp_path: Path) -> None:
    calls: list[int] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = _study(tmp_path, heartbeat_interval=1, grace_period=1,
                       stale_trial_callback=lambda s, t: calls.append(t.number))
    storage = optuna_compat.storage_of(study)
    assert optuna_compat.heartbeat_enabled(storage)
    trial = study.ask()
    with optuna_compat.heartbeat(trial, study):
        time.sleep(1.5)
        assert optuna_compat.stale_trial_ids(storage, study) == []  # beating: not stale
    time.sleep(2.5)
    assert optuna_compat.stale_trial_ids(storage, study) == [optuna_compat.trial_id(trial)]
    optuna_compat.stale_trial_callback(storage)(study, study.trials[0])
    assert calls == [0]


def test_contains() -> None:
    assert optuna_compat.contains(FloatDistribution(0, 1), 0.5)
    assert not optuna_compat.contains(FloatDistribution(0, 1), 2.0)
    assert optuna_compat.contains(IntDistribution(1, 9, step=2), 3)
    assert not optuna_compat.contains(IntDistribution(1, 9, step=2), 4)
    assert optuna_compat.contains(CategoricalDistribution(["SGD", "Adam"]), "Adam")
    assert not optuna_compat.contains(CategoricalDistribution(["SGD", "Adam"]), "AdamW")


def test_heartbeat_stale_trial_ids_skips_trials_that_never_beat(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        study = _study(tmp_path, heartbeat_interval=1, grace_period=1)
        study.ask()  # never beats
    time.sleep(1.5)
    storage = optuna_compat.backend_of(study)
    assert optuna_compat.heartbeat_stale_trial_ids(storage, optuna_compat.study_id(study)) == []  # Optuna skips it
    assert optuna_compat.stale_trial_ids(storage, study) == [optuna_compat.trial_id(study.trials[0])]  # hpo does not


def test_trial_start_column_is_naive_utc(tmp_path: Path) -> None:
    from datetime import datetime, timezone

    study = _study(tmp_path)
    study.ask()
    with optuna_compat.rdb_session(optuna_compat.backend_of(study)) as session:
        (start,) = session.execute(select(optuna_compat.trial_start_column())).one()
    now = datetime.now(timezone.utc).replace(tzinfo=None)
    assert start.tzinfo is None and abs((now - start).total_seconds()) < 60


def test_prepare_new_trial_and_the_caching_wrappers_private_calls(tmp_path: Path) -> None:
    """The private RDBStorage methods Optuna's caching wrapper calls are exactly the ones hpo retries."""
    import inspect
    import re

    from optuna.storages._cached_storage import _CachedStorage

    called = set(re.findall(r"_backend\.(_[a-z_]+)\(", inspect.getsource(_CachedStorage)))
    assert called == {*optuna_compat.CACHED_STORAGE_PRIVATE_CALLS, optuna_compat.CREATE_TRIAL_METHOD}
    study = _study(tmp_path)
    storage = optuna_compat.backend_of(study)
    template = optuna.trial.create_trial(state=TrialState.WAITING, params={"x": 0.5},
                                         distributions={"x": FloatDistribution(0, 1)}, user_attrs={"a": 1})
    with optuna_compat.rdb_session(storage) as session:
        model = optuna_compat.prepare_new_trial(storage, optuna_compat.study_id(study), template, session)
        session.flush()
        assert model.number == 0
    (trial,) = study.trials
    assert trial.state == TrialState.WAITING and trial.params == {"x": 0.5} and trial.user_attrs == {"a": 1}
