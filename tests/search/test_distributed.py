"""Distributed and crash-safe: real PostgreSQL, real worker processes, kills and restarts.

These tests need the PostgreSQL server at 127.0.0.1:5432 and FAIL (never skip) without it: CI
must not go green on a machine where the multi-machine storage was never exercised.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import optuna
import psycopg
import pytest
import yaml
from optuna.trial import TrialState

from conftest import hpo_cmd, tiny_spec_dict, wait_for

PG_ADMIN = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"


@pytest.fixture
def pg_url():
    """A fresh database per test, dropped afterwards."""
    name = f"hpo_test_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:  # fail, not skip: see the module docstring
        pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required for this test: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}", name
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s", (name,))
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')


def curve_study(tmp_path: Path, toy_data: Path, **kwargs) -> Path:
    spec = tiny_spec_dict(toy_data, **kwargs)
    path = tmp_path / f"{spec['name']}.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def launch(study: Path, storage: str, cwd: Path, *extra: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(hpo_cmd("launch", "--study", str(study), "--storage", storage, "--device", "cpu",
                                  "--trainer", "curve", "--json", *extra),
                          capture_output=True, text=True, cwd=cwd, timeout=timeout)


def launch_in_background(study_file: Path, url: str, cwd: Path, *, epoch_seconds: float,
                         workers: int) -> subprocess.Popen:
    """`hpo launch` with curve-trainer workers, returned once every worker is training."""
    name = yaml.safe_load(study_file.read_text())["name"]
    proc = subprocess.Popen(hpo_cmd("launch", "--study", str(study_file), "--storage", url, "--device", "cpu",
                                    "--trainer", "curve", "--curve-epoch-seconds", str(epoch_seconds),
                                    "--workers", str(workers), "--json"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
    storage = optuna.storages.RDBStorage(url)
    wait_for(lambda: any(s.study_name == name for s in storage.get_all_studies()), 60, "the study")
    study = optuna.load_study(study_name=name, storage=storage)
    wait_for(lambda: len(study.trials) >= workers, 120, "the workers to start trials")
    storage.engine.dispose()
    return proc


def finished(study: optuna.Study) -> list[optuna.trial.FrozenTrial]:
    return [t for t in study.trials if t.state in (TrialState.COMPLETE, TrialState.PRUNED)]




def test_pg_workers_share_one_study_exactly(pg_url, toy_data: Path, tmp_path: Path) -> None:
    url, _ = pg_url
    study_file = curve_study(tmp_path, toy_data, name="pgga", trials=16, epochs=3, sampler="ga", pruner="none")
    proc = launch(study_file, url, tmp_path, "--workers", "4", "--curve-epoch-seconds", "0.05")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="pgga", storage=url)
    assert len(finished(study)) == 16
    assert not [t for t in study.trials if t.state == TrialState.RUNNING]
    params = [tuple(sorted(t.params.items())) for t in study.trials if t.params]
    assert len(params) == len(set(params)), "GA proposals duplicated across workers"
    assert len({t.user_attrs["hpo:worker"] for t in study.trials}) >= 2


def test_sigkill_mid_trial_is_retried_and_resumes_from_checkpoint(pg_url, toy_data: Path, tmp_path: Path) -> None:
    """Real Ultralytics training: kill -9 the worker after epoch 2 of 4, a second worker resumes it."""
    url, _ = pg_url
    study_file = curve_study(tmp_path, toy_data, name="kill", trials=1, epochs=4, sampler="random")
    from hpo.spec import load_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    create_or_join(open_storage(url), load_spec(study_file))
    env = {**os.environ, "HPO_STORAGE": url, "OMP_NUM_THREADS": "1"}
    args = hpo_cmd("worker", "--study", "kill", "--device", "cpu", "--heartbeat-interval", "1",
                   "--grace-period", "3", "--runs-dir", str(tmp_path / "runs"))
    first = subprocess.Popen(args, env=env, cwd=tmp_path, stderr=subprocess.DEVNULL)
    study = optuna.load_study(study_name="kill", storage=url)

    def reported_two_epochs() -> bool:
        trials = study.get_trials(deepcopy=False)
        return bool(trials) and len(trials[0].intermediate_values) >= 2

    wait_for(reported_two_epochs, 180, "epoch 2 of the first trial")
    first.send_signal(signal.SIGKILL)
    first.wait()
    killed = study.trials[0]
    assert killed.state == TrialState.RUNNING  # as the dead worker left it
    second = subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-2000:]

    trials = study.trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"].startswith("worker lost")
    retry = trials[1]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[0].params
    assert retry.user_attrs["hpo:retry_of"] == 0
    resumed = retry.user_attrs["hpo:resumed"]
    assert resumed["epoch"] >= 2 and resumed["checkpoint"].endswith("trial_0000/weights/last.pt")
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4]
    for step in range(1, resumed["epoch"] + 1):  # the epochs it did not train again
        assert retry.intermediate_values[step] == killed.intermediate_values[step]
    assert len(retry.user_attrs["hpo:epoch_metrics"]) == 4
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    assert len(finished(study)) == 1


def test_sigterm_exits_cleanly_and_trial_is_retried(pg_url, toy_data: Path, tmp_path: Path) -> None:
    url, _ = pg_url
    study_file = curve_study(tmp_path, toy_data, name="term", trials=1, epochs=6, sampler="random")
    from hpo.spec import load_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    create_or_join(open_storage(url), load_spec(study_file))
    env = {**os.environ, "HPO_STORAGE": url}
    args = hpo_cmd("worker", "--study", "term", "--trainer", "curve", "--curve-epoch-seconds", "1",
                   "--runs-dir", str(tmp_path / "runs"))
    worker = subprocess.Popen(args, env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    study = optuna.load_study(study_name="term", storage=url)
    wait_for(lambda: bool(study.trials) and len(study.trials[0].intermediate_values) >= 2, 60, "epoch 2")
    sent = time.time()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=10) == 0
    assert time.time() - sent < 10
    trials = study.trials
    assert trials[0].state == TrialState.FAIL
    assert trials[0].user_attrs["fail_reason"] == "worker stopped by a signal; trial re-queued"
    assert trials[1].state == TrialState.WAITING and trials[1].params == trials[0].params
    # A later worker finishes it, resuming after the epochs already done.
    again = subprocess.run([*args[:-2], "--runs-dir", str(tmp_path / "runs")], env=env, cwd=tmp_path,
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    retry = study.trials[1]
    assert retry.state == TrialState.COMPLETE and retry.user_attrs["hpo:resumed"]["epoch"] >= 2
    assert sorted(retry.intermediate_values) == [1, 2, 3, 4, 5, 6]


def test_workers_survive_terminated_backend_connections(pg_url, toy_data: Path, tmp_path: Path) -> None:
    url, name = pg_url
    study_file = curve_study(tmp_path, toy_data, name="flaky", trials=12, epochs=4, sampler="tpe")
    proc = launch_in_background(study_file, url, tmp_path, epoch_seconds=0.3, workers=2)
    killed = 0
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        for _ in range(4):
            rows = admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                 "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall()
            killed += len(rows)
            time.sleep(1.5)
    out, err = proc.communicate(timeout=300)
    assert killed > 0
    assert proc.returncode == 0, err[-2000:]
    study = optuna.load_study(study_name="flaky", storage=url)
    assert len(finished(study)) == 12
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.FAIL)]
    assert json.loads(out)["trials"]["finished"] == 12


def test_eight_sqlite_workers_never_fail_on_locks(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="crowd", trials=40, epochs=3, sampler="random")
    db = f"sqlite:///{tmp_path / 'crowd.db'}"
    proc = launch(study_file, db, tmp_path, "--workers", "8")
    assert proc.returncode == 0, proc.stderr
    study = optuna.load_study(study_name="crowd", storage=db)
    assert len(finished(study)) == 40
    failed = [t for t in study.trials if t.state == TrialState.FAIL]
    # With near-instant trials, workers racing for the last slots may open a surplus trial: it is
    # recorded as such and trains nothing. Nothing else may fail.
    assert all(t.user_attrs.get("hpo:surplus") for t in failed), [t.user_attrs for t in failed]
    assert len(failed) < 8
    logs = "".join(p.read_text() for p in (tmp_path / "runs" / "crowd" / "logs").glob("*.log"))
    assert "database is locked" not in logs.replace("storage unavailable (OperationalError)", "")


def test_passwords_never_appear(pg_url, toy_data: Path, tmp_path: Path) -> None:
    url, name = pg_url
    secret = "S3cretPw_" + uuid.uuid4().hex[:6]
    with_password = url.replace("postgres@", f"postgres:{secret}@")  # trust auth accepts any password
    study_file = curve_study(tmp_path, toy_data, name="masked", trials=2, epochs=2, sampler="random")
    outputs = []
    proc = launch(study_file, with_password, tmp_path, "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    outputs += [proc.stdout, proc.stderr]
    for args in (("status", "--storage", with_password), ("status", "--study", "masked", "--json", "--storage",
                                                          with_password),
                 ("export", "--study", "masked", "-o", "-", "--storage", with_password)):
        proc = subprocess.run(hpo_cmd(*args), capture_output=True, text=True, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        outputs += [proc.stdout, proc.stderr]
    unreachable = with_password.replace("127.0.0.1:5432", "127.0.0.1:1")
    proc = subprocess.run(hpo_cmd("status", "--storage", unreachable), capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and "postgres:***@127.0.0.1:1" in proc.stderr
    outputs += [proc.stdout, proc.stderr]
    outputs += [p.read_text() for p in (tmp_path / "runs").rglob("*.log")]
    study = optuna.load_study(study_name="masked", storage=url)
    outputs.append(json.dumps(study.user_attrs, default=str))
    outputs += [json.dumps(t.user_attrs, default=str) for t in study.trials]
    assert "S3cretPw" in with_password
    for text in outputs:
        assert secret not in text


def test_workers_survive_a_postgresql_restart(pg_url, toy_data: Path, tmp_path: Path) -> None:
    """The server goes away mid-study (as in a database failover); workers wait and carry on."""
    url, _ = pg_url
    ctl = shutil.which("pg_ctlcluster")
    assert ctl and Path("/etc/postgresql").is_dir(), "needs the local PostgreSQL cluster tools"
    version = sorted(p.name for p in Path("/etc/postgresql").iterdir())[0]
    study_file = curve_study(tmp_path, toy_data, name="restart", trials=10, epochs=5, sampler="tpe")
    proc = launch_in_background(study_file, url, tmp_path, epoch_seconds=0.5, workers=3)

    def started() -> object:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            return admin.execute("SELECT pg_postmaster_start_time()").fetchone()[0]

    before = started()
    subprocess.run([ctl, "--skip-systemctl-redirect", version, "main", "restart"], check=True, timeout=120)
    assert started() != before  # the server really went away
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    summary = json.loads(out)["trials"]
    study = optuna.load_study(study_name="restart", storage=url)
    reasons = [t.user_attrs.get("fail_reason") for t in study.trials if t.state == TrialState.FAIL]
    # Workers that waited out the restart together race for the last slots together: the losers'
    # empty trials are "surplus" (FAIL in Optuna, nothing trained), not failures.
    assert {k: v for k, v in summary.items() if k != "surplus"} == {
        "finished": 10, "complete": 10, "pruned": 0, "infeasible": 0, "failed": 0, "running": 0, "waiting": 0}, reasons
    assert summary["surplus"] == len(reasons) < 3


def test_queued_trials_are_claimed_once_on_sqlite(tmp_path: Path) -> None:
    """SQLite ignores SELECT ... FOR UPDATE: claiming a WAITING trial must still be atomic."""
    import threading

    from hpo.storage import open_storage

    url = f"sqlite:///{tmp_path / 'claims.db'}"
    study = optuna.create_study(study_name="claims", storage=open_storage(url))
    for i in range(40):
        study.enqueue_trial({"x": float(i)})
    trial_ids = [t._trial_id for t in study.trials]
    claims: list[int] = []
    barrier = threading.Barrier(4)

    def claimer() -> None:
        storage = open_storage(url)  # its own engine and connections, as another process has
        barrier.wait()
        for trial_id in trial_ids:
            if storage.set_trial_state_values(trial_id, TrialState.RUNNING):
                claims.append(trial_id)

    threads = [threading.Thread(target=claimer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(claims) == sorted(trial_ids)  # each queued trial went to exactly one claimer


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_counting_queries_match_the_trials(backend: str, request, tmp_path: Path) -> None:
    """The worker loop counts trials with one query; it must agree with loading every trial."""
    from hpo.storage import open_storage
    from hpo.study import StudyProgress, complete_values, count_trials, progress

    url = f"sqlite:///{tmp_path / 'c.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")[0]
    study = optuna.create_study(study_name="c", storage=open_storage(url), direction="maximize")
    for i, state in enumerate([TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.COMPLETE,
                               TrialState.RUNNING, TrialState.COMPLETE]):
        trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
        trial.report(0.1 * i, step=1)
        if i != 3:
            trial.set_user_attr("hpo:dir", f"/runs/t{i}")
        if state == TrialState.COMPLETE:
            study.tell(trial, float("inf") if i == 5 else 0.5 + i)
        elif state != TrialState.RUNNING:
            study.tell(trial, state=state)
    refused = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})  # a refused-untrained trial
    refused.set_user_attr("hpo:untrained", True)
    study.tell(refused, state=TrialState.PRUNED)
    study.enqueue_trial({"x": 0.5})

    expected_values = [(0, 0.5, "/runs/t0"), (3, 3.5, None), (5, float("inf"), "/runs/t5")]
    full = study.trials

    def no_full_load(*args, **kwargs):
        raise AssertionError("counted by loading every trial")

    study.get_trials = no_full_load  # hpo's storage answers with one query each
    for below in (None, 0, 3, 99):
        expected = {s: 0 for s in TrialState}
        for t in full:
            if below is None or t.number < below:
                expected[t.state] += 1
        assert count_trials(study, number_below=below) == expected
        untrained = sum(t.number == refused.number for t in full if below is None or t.number < below)
        assert progress(study, number_below=below) == StudyProgress(
            expected[TrialState.COMPLETE], expected[TrialState.PRUNED] - untrained, expected[TrialState.FAIL],
            expected[TrialState.RUNNING], expected[TrialState.WAITING], infeasible=untrained)
    assert sorted(complete_values(study, "hpo:dir")) == expected_values


class _Forwarder:
    """A TCP port that forwards to PostgreSQL once opened: until then connections to it are refused,
    as to a database server that is down."""

    def __init__(self, port: int, target: int = 5432) -> None:
        self.port, self.target, self._open = port, target, []

    def open(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._open.append(listener)
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            server = socket.create_connection(("127.0.0.1", self.target))
            self._open += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src, dst) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (src, dst):
                try:
                    sock.close()
                except OSError:
                    pass

    def close(self) -> None:
        for sock in self._open:
            try:
                sock.close()
            except OSError:
                pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_worker_started_while_the_database_is_down_waits_for_it(pg_url, toy_data: Path, tmp_path: Path) -> None:
    """`hpo worker` against a server that refuses connections (down, restarting) waits and then works;
    a database that answers no (it does not exist) fails at once, exit 2, one line."""
    url, name = pg_url
    study_file = curve_study(tmp_path, toy_data, name="late", trials=2, epochs=2, sampler="random")
    from hpo.spec import load_spec
    from hpo.storage import open_storage
    from hpo.study import create_or_join

    storage = open_storage(url)
    create_or_join(storage, load_spec(study_file))
    storage.engine.dispose()
    port = _free_port()
    proxy = _Forwarder(port)
    late_url = f"postgresql+psycopg://postgres@127.0.0.1:{port}/{name}"
    worker = subprocess.Popen(hpo_cmd("worker", "--study", "late", "--storage", late_url, "--device", "cpu",
                                      "--trainer", "curve", "--curve-epoch-seconds", "0.05",
                                      "--runs-dir", str(tmp_path / "runs")),
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(4)
        assert worker.poll() is None, worker.communicate()[1][-2000:]  # still waiting, not failed
        proxy.open()
        out, err = worker.communicate(timeout=120)
    finally:
        if worker.poll() is None:
            worker.kill()
        proxy.close()
    assert worker.returncode == 0, err[-2000:]
    assert "does not answer" in err and "retrying" in err
    study = optuna.load_study(study_name="late", storage=url)
    assert len(finished(study)) == 2

    missing = url.rsplit("/", 1)[0] + "/hpo_no_such_database"
    r = subprocess.run(hpo_cmd("worker", "--study", "late", "--storage", missing, "--device", "cpu",
                               "--trainer", "curve", "--runs-dir", str(tmp_path / "runs2")),
                       cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "does not exist" in r.stderr and "retrying" not in r.stderr, r.stderr[-2000:]
    assert r.stderr.strip().count("\n") == 0 and "Traceback" not in r.stderr
