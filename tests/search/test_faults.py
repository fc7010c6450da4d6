"""Operations people can rely on: Ctrl-C, dropped connections, dead and silent workers, full disks.

Every test drives real worker processes (or a real training) and injects a real fault: signals to a
process group, SIGKILL, a commit whose reply is lost at the database driver, a process that dies
inside ``study.ask()``, a runs folder that cannot be written. PostgreSQL tests need the server at
127.0.0.1:5432 (see test_distributed.py).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import psutil
import psycopg
import pytest
import yaml
from optuna.trial import TrialState
from sqlalchemy import event

from hpo import attrs, optuna_compat
from hpo.spec import load_spec, parse_spec
from hpo.storage import open_storage
from hpo.study import create_or_join

from conftest import hpo_cmd, sigint_as_in_a_terminal, tiny_spec_dict
from test_distributed import PG_ADMIN, curve_study, finished, pg_url, wait_for  # noqa: F401 - pg_url: fixture

CURVE = ("--device", "cpu", "--trainer", "curve")


def _training(study: optuna.Study, n: int) -> bool:
    """At least ``n`` trials RUNNING with a reported epoch: the workers are inside their trials."""
    return sum(1 for t in study.get_trials(deepcopy=False)
               if t.state == TrialState.RUNNING and t.intermediate_values) >= n


def _load_when_created(url: str, name: str) -> optuna.Study:
    """The study a background launch creates, once it exists."""
    storage = optuna.storages.RDBStorage(url)

    def created() -> bool:
        try:
            return any(s.study_name == name for s in storage.get_all_studies())
        except Exception:  # noqa: BLE001 - the file or its tables do not exist yet
            return False

    wait_for(created, 60, f"study {name}")
    return optuna.load_study(study_name=name, storage=storage)


def _reason(trial: optuna.trial.FrozenTrial) -> str:
    return str(trial.user_attrs.get(attrs.FAIL_REASON))


# --- 1. Ctrl-C on `hpo launch` -----------------------------------------------------------------------

def test_ctrl_c_on_launch_hands_every_trial_back_at_once(toy_data: Path, tmp_path: Path) -> None:
    """SIGINT to the launch's whole process group, as a terminal sends it: exit 130 within seconds,
    every running trial re-queued (not left RUNNING until the 120 s grace period), and a relaunch
    resumes them at once."""
    study_file = curve_study(tmp_path, toy_data, name="ctrlc", trials=2, epochs=12, sampler="random")
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    args = hpo_cmd("launch", "--study", str(study_file), "--storage", db, *CURVE, "--curve-epoch-seconds", "1",
                   "--workers", "2", "--json")
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True,  # its own process group, like a shell job
                            preexec_fn=sigint_as_in_a_terminal)
    study = _load_when_created(db, "ctrlc")
    wait_for(lambda: _training(study, 2), 120, "both workers to train")
    sent = time.time()
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err[-3000:]
    assert time.time() - sent < 60  # seconds, not the 120 s grace period
    trials = study.trials
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stopped) == 2 and all(_reason(t) == "worker stopped by a signal; trial re-queued" for t in stopped)
    assert sorted(t.user_attrs[attrs.RETRY_OF] for t in trials if t.state == TrialState.WAITING) == \
        sorted(t.number for t in stopped)
    assert "Traceback" not in "".join(p.read_text() for p in (tmp_path / "runs" / "ctrlc" / "logs").glob("*.log"))

    again = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    retries = [t for t in study.trials if t.user_attrs.get(attrs.RETRY_OF) is not None]
    assert len(retries) == 2 and all(t.state == TrialState.COMPLETE for t in retries)
    assert all(t.user_attrs[attrs.RESUMED]["epoch"] >= 1 for t in retries)  # resumed, not restarted
    assert len(finished(study)) == 2


# --- 2. dropped connections ---------------------------------------------------------------------------

def _lose_commit_reply(storage: optuna.storages.RDBStorage) -> dict[str, int]:
    """Make the next commit that creates or claims a trial succeed, then fail as a dropped connection."""
    dialect = storage.engine.dialect
    original = dialect.do_commit
    state = {"armed": 0, "fired": 0}

    def watch(conn, cursor, statement, *args) -> None:  # noqa: ANN001 - SQLAlchemy event signature
        text = statement.lstrip().upper()
        if text.startswith("INSERT INTO TRIALS ") or (text.startswith("UPDATE TRIALS ") and "STATE" in text):
            state["armed"] = 1

    def commit_then_lose_reply(dbapi_connection) -> None:  # noqa: ANN001
        original(dbapi_connection)
        if state["armed"] and not state["fired"]:
            state["fired"] = 1
            raise dialect.loaded_dbapi.OperationalError("server closed the connection unexpectedly")
        state["armed"] = 0

    event.listen(storage.engine, "before_cursor_execute", watch)
    dialect.do_commit = commit_then_lose_reply
    return state


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
@pytest.mark.parametrize("queued", [False, True], ids=["new", "queued"])
def test_a_retried_ask_never_duplicates_a_trial(backend: str, queued: bool, request, tmp_path: Path) -> None:
    """The commit that creates (or claims) the trial goes through, its reply is lost: the retry must
    find that trial instead of creating a second one that nobody runs."""
    url = f"sqlite:///{tmp_path / 'd.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")[0]
    storage = open_storage(url)
    study = optuna.create_study(study_name="dup", storage=storage)
    if queued:
        study.enqueue_trial({"x": 0.5})
    fault = _lose_commit_reply(storage)
    with pytest.warns(UserWarning):  # Optuna: heartbeats outside optimize()
        trial = study.ask()
    assert fault["fired"] == 1
    trials = study.trials
    assert [(t.number, t.state) for t in trials] == [(0, TrialState.RUNNING)]
    assert trial.number == 0


def test_workers_survive_backends_killed_over_and_over(pg_url, toy_data: Path, tmp_path: Path) -> None:
    """4 workers with fast trials while every backend is terminated every 0.3 s: no worker dies, no
    trial is duplicated or lost (an orphan would be failed as "worker lost" by the 3 s grace period)."""
    url, name = pg_url
    study_file = curve_study(tmp_path, toy_data, name="stress", trials=40, epochs=2, sampler="random")
    proc = subprocess.Popen(hpo_cmd("launch", "--study", str(study_file), "--storage", url, *CURVE,
                                    "--curve-epoch-seconds", "0.05", "--workers", "4", "--heartbeat-interval", "1",
                                    "--grace-period", "3", "--json"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = _load_when_created(url, "stress")
    wait_for(lambda: len({t.user_attrs.get(attrs.WORKER) for t in study.trials} - {None}) == 4, 120,
             "all four workers to run trials")  # opening a storage is not retried: start first
    optuna_compat.backend_of(study).engine.dispose()
    killed = 0
    with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
        deadline = time.time() + 300
        while proc.poll() is None and time.time() < deadline:
            killed += len(admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                                        "WHERE datname = %s AND pid <> pg_backend_pid()", (name,)).fetchall())
            time.sleep(0.3)
    _, err = proc.communicate(timeout=60)
    logs = "".join(p.read_text() for p in (tmp_path / "runs" / "stress" / "logs").glob("*.log"))
    assert proc.returncode == 0, err[-3000:] + logs[-3000:]
    assert killed > 10
    assert "Traceback" not in logs, logs[-5000:]
    study = optuna.load_study(study_name="stress", storage=url)
    assert len(finished(study)) == 40
    assert not [t for t in study.trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    others = [_reason(t) for t in study.trials if t.state == TrialState.FAIL and not t.user_attrs.get(attrs.SURPLUS)]
    assert others == []


# --- 3. a trial that never had a heartbeat ----------------------------------------------------------

DIE_IN_ASK = """
import os, sys, warnings
import optuna
from hpo.storage import open_storage
warnings.simplefilter("ignore")
study = optuna.load_study(study_name=sys.argv[2], storage=open_storage(sys.argv[1], heartbeat_interval=1))
study.ask()
os._exit(1)  # dies before its first heartbeat
"""


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_trial_without_any_heartbeat_is_failed_and_requeued(backend: str, request, toy_data: Path,
                                                              tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")[0]
    study_file = curve_study(tmp_path, toy_data, name="silent", trials=1, epochs=2, sampler="random")
    create_or_join(open_storage(url), load_spec(study_file))
    subprocess.run([sys.executable, "-c", DIE_IN_ASK, url, "silent"], check=False, timeout=120)
    study = optuna.load_study(study_name="silent", storage=url)
    assert [t.state for t in study.trials] == [TrialState.RUNNING]  # the base trial, claimed, no heartbeat
    try:
        worker = subprocess.run(hpo_cmd("worker", "--study", "silent", "--storage", url, *CURVE,
                                        "--heartbeat-interval", "1", "--grace-period", "3",
                                        "--runs-dir", str(tmp_path / "runs")),
                                cwd=tmp_path, capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker waited forever for a trial without a heartbeat")
    assert worker.returncode == 0, worker.stderr[-3000:]
    assert len(study.trials) == 2, [(t.number, t.state.name, t.user_attrs) for t in study.trials]
    lost, retry = study.trials
    assert lost.state == TrialState.FAIL
    assert _reason(lost) == "worker lost: no heartbeat within the grace period; trial re-queued"
    assert retry.state == TrialState.COMPLETE and retry.user_attrs[attrs.RETRY_OF] == 0
    assert retry.params == load_spec(study_file).base_params()  # the base hyps were not dropped


# --- 4 + 9. a dead worker is found while others train; the launch still succeeds ----------------------

def test_dead_worker_found_on_a_timer_and_launch_exits_0(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="timer", trials=2, epochs=30, sampler="random")
    db = f"sqlite:///{tmp_path / 'hpo.db'}"
    proc = subprocess.Popen(hpo_cmd("launch", "--study", str(study_file), "--storage", db, *CURVE,
                                    "--curve-epoch-seconds", "0.5", "--workers", "2", "--heartbeat-interval", "1",
                                    "--grace-period", "3", "--json"),
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    study = _load_when_created(db, "timer")
    wait_for(lambda: _training(study, 2), 120, "both workers to train")
    victim = psutil.Process(proc.pid).children()[0]
    victim_index = victim.cmdline()[victim.cmdline().index("--worker-index") + 1]
    victim.kill()
    dead: list[optuna.trial.FrozenTrial] = []

    def detected() -> bool:
        dead[:] = [t for t in study.trials if t.state == TrialState.FAIL]
        return bool(dead)

    wait_for(detected, 60, "the dead worker's trial to be failed")
    survivor = [t for t in study.trials if t.state == TrialState.RUNNING and t.number != dead[0].number]
    assert survivor, "found only after the surviving worker finished its own trial"
    assert _reason(dead[0]).startswith("worker lost")

    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]  # the study has its budget: a dead worker is a warning
    log = tmp_path / "runs" / "timer" / "logs" / f"worker_{victim_index}.log"
    assert f"warning: worker {victim_index} exited with status -9; see {log}" in err
    assert yaml.safe_load(out)["trials"]["finished"] == 2


# --- 5. the GA's claims are atomic ------------------------------------------------------------------

@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_ga_never_proposes_a_point_twice_under_concurrent_asks(backend: str, request, toy_data: Path,
                                                               tmp_path: Path) -> None:
    """4 worker processes asking at once on a small discrete space (440 points, 60 trials)."""
    url = f"sqlite:///{tmp_path / 'ga.db'}" if backend == "sqlite" else request.getfixturevalue("pg_url")[0]
    spec = tiny_spec_dict(toy_data, name="gadup", trials=60, epochs=1, sampler="ga")
    spec["search_space"] = {"lr0": {"type": "float", "low": 0.002, "high": 0.02, "step": 0.002},
                            "lrf": {"type": "float", "low": 0.05, "high": 0.2, "step": 0.05},
                            "momentum": {"type": "float", "low": 0.85, "high": 0.95, "step": 0.01}}
    spec["base"] = {"lr0": 0.01, "lrf": 0.1, "momentum": 0.9}
    path = tmp_path / "gadup.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    proc = subprocess.run(hpo_cmd("launch", "--study", str(path), "--storage", url, *CURVE, "--workers", "4",
                                  "--json"), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    study = optuna.load_study(study_name="gadup", storage=url)
    points = [tuple(sorted(t.params.items())) for t in study.trials if t.params]
    duplicates = len(points) - len(set(points))
    assert duplicates == 0, f"{duplicates} duplicate parameter sets in {len(points)} trials"
    assert len({t.user_attrs[attrs.WORKER] for t in study.trials}) >= 2


# --- 6. SIGTERM during Ultralytics' final validation -------------------------------------------------

def test_sigterm_during_final_validation_keeps_the_trained_trial(toy_data: Path, tmp_path: Path) -> None:
    """Real training; SIGTERM arrives right after the last epoch is saved, i.e. during the final
    validation (when last.pt is already stripped): the trial counts as complete, nothing is retrained."""
    import threading

    from hpo.search.trial_runner import TrialRunner
    from hpo.search.worker import Worker, install_signal_handlers

    storage = open_storage(f"sqlite:///{tmp_path / 's.db'}")
    spec = parse_spec(tiny_spec_dict(toy_data, name="finalval", epochs=2, trials=1))
    settings = create_or_join(storage, spec, sampler="random", pruner="none")
    study = optuna.load_study(study_name="finalval", storage=storage)
    stop = threading.Event()

    class SignalAfterLastEpoch(TrialRunner):
        def build_model(self, checkpoint: Path | None = None, model: str | None = None):  # noqa: ANN201
            model = super().build_model(checkpoint, model)

            def on_model_save(trainer) -> None:  # noqa: ANN001
                if trainer.epoch + 1 == trainer.epochs:
                    os.kill(os.getpid(), signal.SIGTERM)  # the next callback is the final validation's

            model.add_callback("on_model_save", on_model_save)
            return model

    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    install_signal_handlers(stop)
    try:
        runner = SignalAfterLastEpoch(spec, runs_dir=tmp_path / "runs", device="cpu", stop_event=stop)
        summary = Worker(study, settings, runner, runs_dir=tmp_path / "runs", stop_event=stop).run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert stop.is_set() and summary.stopped
    trials = study.trials
    assert [t.state for t in trials] == [TrialState.COMPLETE], [t.user_attrs.get(attrs.FAIL_REASON) for t in trials]
    assert trials[0].user_attrs[attrs.EPOCHS] == 2 and trials[0].value is not None


# --- 7. retries exhausted -----------------------------------------------------------------------------

def test_exhausted_retries_say_so_and_status_shows_them(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="tired", trials=1, epochs=20, sampler="random")
    db = f"sqlite:///{tmp_path / 's.db'}"
    create_or_join(open_storage(db), load_spec(study_file))
    worker = subprocess.Popen(hpo_cmd("worker", "--study", "tired", "--storage", db, *CURVE,
                                      "--curve-epoch-seconds", "0.5", "--max-retry", "0",
                                      "--runs-dir", str(tmp_path / "runs")),
                              cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    study = optuna.load_study(study_name="tired", storage=db)
    wait_for(lambda: _training(study, 1), 120, "epoch 1")
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    trials = study.trials
    assert len(trials) == 1 and trials[0].state == TrialState.FAIL  # no retry was queued ...
    assert _reason(trials[0]) == ("worker stopped by a signal; not re-queued: retried 0 times already "
                                  "(--max-retry 0)")  # ... and the reason says so
    status = subprocess.run(hpo_cmd("status", "--study", "tired", "--storage", db), cwd=tmp_path,
                            capture_output=True, text=True, env={**os.environ, "COLUMNS": "300"})
    assert status.returncode == 0, status.stderr
    assert "trial(s) 0 lost their worker once too often and were not re-queued" in " ".join(status.stdout.split())


# --- 8. a worker that cannot write its runs folder --------------------------------------------------

def test_worker_gives_up_after_consecutive_failures(toy_data: Path, tmp_path: Path) -> None:
    study_file = curve_study(tmp_path, toy_data, name="full", trials=5, epochs=2, sampler="random")
    db = f"sqlite:///{tmp_path / 's.db'}"
    create_or_join(open_storage(db), load_spec(study_file))
    # The runs folder itself is writable (an unwritable one is refused up front, before any trial), but
    # every trial's folder fails: a file stands where the study's folder should be.
    runs = tmp_path / "runs"
    runs.mkdir()
    (runs / "full").write_text("a file where the study's runs folder should be\n")
    try:
        worker = subprocess.run(hpo_cmd("worker", "--study", "full", "--storage", db, *CURVE, "--artifacts", "off",
                                        "--runs-dir", str(runs), "--max-consecutive-failures", "3"),
                                cwd=tmp_path, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        pytest.fail("the worker kept creating failed trials")
    study = optuna.load_study(study_name="full", storage=db)
    assert [t.state for t in study.trials] == [TrialState.FAIL] * 3
    assert worker.returncode == 2
    assert "3 trials in a row failed" in worker.stderr and "NotADirectoryError" in worker.stderr
    status = subprocess.run(hpo_cmd("status", "--storage", db), cwd=tmp_path, capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "300"})
    assert "3 trials in a row failed" in " ".join(status.stdout.split())
    # The default is bounded too, and reaches launched workers through WorkerOptions.
    from hpo.search.worker import WorkerOptions

    args = WorkerOptions().to_args()
    assert args[args.index("--max-consecutive-failures") + 1] == "5"


# --- 10. what a retry inherits ----------------------------------------------------------------------

def test_a_retry_does_not_inherit_the_attributes_of_one_run(tmp_path: Path) -> None:
    from hpo.search.retry import RequeueTrial

    study = optuna.create_study(study_name="inherit", storage=open_storage(f"sqlite:///{tmp_path / 'i.db'}"))
    trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
    for key, value in ((attrs.BASE_TRIAL, True), (attrs.ARTIFACT_ERROR, "upload failed: disk full"),
                       (attrs.SURPLUS, True), (attrs.FAIL_REASON, "worker lost"), (attrs.WORKER, "host#0"),
                       (attrs.EPOCHS, 3)):
        trial.set_user_attr(key, value)
    frozen = study.tell(trial, state=TrialState.FAIL)
    RequeueTrial()(study, frozen)
    retry = study.trials[-1]
    assert retry.state == TrialState.WAITING and retry.params == frozen.params
    assert retry.user_attrs == {attrs.BASE_TRIAL: True, attrs.RETRY_OF: 0}
