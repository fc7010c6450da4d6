"""A lost trial is re-queued exactly once, however many processes find it lost at the same moment.

Real processes, real storages (SQLite and PostgreSQL): one RUNNING trial whose worker stopped
beating, then several processes released at once that each run the stale-trial check a worker runs
(``fail_stale_trials`` with the re-queue callback). Exactly one retry may come out of it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hpo import attrs
from hpo.storage import open_storage

from conftest import wait_for
from test_distributed import pg_url  # noqa: F401 - fixture

CHECKER = """
import os, sys, time
import optuna
from hpo.storage import open_storage
from hpo.search.retry import RequeueTrial
from hpo.search.worker import fail_stale_trials
url, name, go, ready = sys.argv[1:5]
storage = open_storage(url, heartbeat_interval=1, grace_period=1)
study = optuna.load_study(study_name=name, storage=storage)
study.get_trials()  # connected and warm before the start signal
open(ready, "w").close()
while not os.path.exists(go):
    time.sleep(0.001)
fail_stale_trials(study, RequeueTrial())
"""


def _lost_trial(url: str, name: str) -> int:
    """A study with one RUNNING trial (hyps sampled) whose heartbeat stopped: a dead worker's."""
    storage = open_storage(url, heartbeat_interval=1, grace_period=1)
    study = optuna.create_study(study_name=name, storage=storage, direction="maximize")
    trial = study.ask()
    trial.suggest_float("lr0", 1e-4, 1e-1, log=True)
    storage.record_heartbeat(trial._trial_id)
    storage.engine.dispose()
    time.sleep(2.5)  # past the grace period
    return trial.number


def _race(url: str, name: str, tmp_path: Path, processes: int) -> list[optuna.trial.FrozenTrial]:
    go = tmp_path / f"go-{name}"
    ready = [tmp_path / f"ready-{name}-{i}" for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", CHECKER, url, name, str(go), str(r)], stderr=subprocess.PIPE,
                              text=True) for r in ready]
    wait_for(lambda: all(r.exists() for r in ready), 120, "every checker connected and waiting")
    go.touch()
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err[-2000:]
    return optuna.load_study(study_name=name, storage=url).get_trials(deepcopy=False)


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_lost_trial_is_requeued_once_by_racing_processes(backend: str, request, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'race.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")[0]
    for round_ in range(3):
        name = f"race{round_}"
        lost = _lost_trial(url, name)
        trials = _race(url, name, tmp_path, processes=6)
        assert trials[lost].state == TrialState.FAIL
        retries = [t for t in trials if t.user_attrs.get(attrs.RETRY_OF) == lost]
        assert len(retries) == 1, f"round {round_}: {len(retries)} retries of trial {lost}"
        assert retries[0].state == TrialState.WAITING and retries[0].params == trials[lost].params
