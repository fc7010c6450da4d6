"""The worker loop: pull trials from the shared study until it has its budget.

Any number of workers, on any number of machines, run this loop against one study. The budget is
study-wide: a worker starts a trial only while finished (complete + pruned while training, see
:class:`hpo.study.StudyProgress`) plus running trials are below it, and checks its trial's rank after
``ask()`` so two workers racing for the last slot never both train (the loser records its trial as a
FAIL marked ``hpo:surplus`` and trains nothing). A study with an epoch budget (the GPU-hour proxy)
stops the same way on epochs: a trial starts only while the epochs its finished trials trained plus a
full trial's for each running one are below it (:func:`hpo.study.epoch_use`), so the study ends less
than one trial's epochs past it, however many workers race; pruned trials leave room for more.

We use ask/tell instead of ``study.optimize()`` for that rank check and for failure reasons, so the
heartbeat is recorded here (Optuna only does it inside ``optimize()``).

Trials refused before training for a cost constraint do not count against the budget, so a sampler
that keeps proposing infeasible models could ask forever: once the study holds ``max_infeasible`` such
refusals per budgeted trial, every worker stops, saying why on the study (``hpo status`` shows it).
"""

from __future__ import annotations

import logging
import shutil
import signal
import threading
import traceback
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import optuna
from optuna.trial import TrialState

from hpo import attrs, optuna_compat
from hpo.errors import HpoError
from hpo.search.pruners import create_pruner
from hpo.search.retry import DEFAULT_MAX_RETRY, RequeueTrial
from hpo.search.trial_runner import StopRequested, suggest_params, trial_dir
from hpo.storage import DEFAULT_GRACE_PERIOD, DEFAULT_HEARTBEAT_INTERVAL
from hpo.study import (EpochUse, StudyProgress, StudySettings, best_trial, complete_values, epoch_use,
                       infeasible_cap, is_multi_objective, pareto_front, progress, trained_twin)

log = logging.getLogger("hpo.search.worker")

DEFAULT_KEEP = 3
# A worker whose every trial fails (full disk, broken driver, missing data) stops after this many in a
# row instead of turning the whole search into FAIL records.
DEFAULT_MAX_CONSECUTIVE_FAILURES = 5
# Trials refused before training (a cost constraint broken) allowed per budgeted trial: refusals train
# nothing (milliseconds each), but a sampler stuck in an infeasible region must not ask forever.
DEFAULT_MAX_INFEASIBLE = 5
IDLE_POLL_SECONDS = 0.5  # cheap: one counting query and the stale-trial check


@dataclass(frozen=True)
class WorkerOptions:
    """How a worker runs: what ``hpo worker`` takes and what ``hpo launch`` hands each worker it starts.

    :meth:`to_args` is the one place these become a command line again, so a new option cannot be
    forgotten on the way from the launcher to its workers.
    """

    seed: int = 0
    runs_dir: Path = Path("runs")
    keep: int = DEFAULT_KEEP
    heartbeat_interval: int = DEFAULT_HEARTBEAT_INTERVAL
    grace_period: int = DEFAULT_GRACE_PERIOD
    max_retry: int = DEFAULT_MAX_RETRY
    artifacts: Path | None = None  # None: no uploads
    workers_per_machine: int = 1  # trainings sharing this machine's cores
    trainer: str = "yolo"  # "curve": the learning-curve stand-in (tests, benchmarks)
    curve_epoch_seconds: float = 0.0
    max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES  # 0: never give up
    max_infeasible: int = DEFAULT_MAX_INFEASIBLE  # refused-untrained trials per budgeted trial; 0: no cap

    def to_args(self) -> list[str]:
        """The ``hpo worker`` options that reproduce these settings."""
        return ["--seed", str(self.seed), "--runs-dir", str(self.runs_dir), "--keep", str(self.keep),
                "--heartbeat-interval", str(self.heartbeat_interval), "--grace-period", str(self.grace_period),
                "--max-retry", str(self.max_retry),
                "--artifacts", str(self.artifacts) if self.artifacts is not None else "off",
                "--workers-per-machine", str(self.workers_per_machine), "--trainer", self.trainer,
                "--curve-epoch-seconds", str(self.curve_epoch_seconds),
                "--max-consecutive-failures", str(self.max_consecutive_failures),
                "--max-infeasible", str(self.max_infeasible)]


class WorkerGaveUp(HpoError):
    """Too many trials in a row failed on this worker: something is wrong with it, not with the hyps;
    or the sampler proposed too many infeasible models: the search space hardly fits the constraints."""


@dataclass
class WorkerSummary:
    trials: dict[str, int] = field(default_factory=lambda: {"complete": 0, "pruned": 0, "fail": 0, "infeasible": 0})
    stopped: bool = False


TrialFunction = Callable[[optuna.Trial], "float | list[float]"]


class Worker:
    """Runs trials of one study until its budget of finished trials is reached.

    Args:
        study: the study, loaded with this worker's sampler and the study's pruner.
        settings: the study's stored settings (spec, budget).
        objective: trains one trial; raises :class:`optuna.TrialPruned` when pruned.
        name: this worker's name, recorded on its trials.
        runs_dir: root of the trial directories, for the weights keep policy.
        keep: how many top trials keep their weights (0 keeps everything).
        poll_seconds: pause while other workers finish the last trials.
        stop_event: set to stop after the current batch (signal handlers set it).
        max_consecutive_failures: stop with :class:`WorkerGaveUp` after this many failed trials in a
            row (0: never), recording why on the study for ``hpo status``.
        max_infeasible: stop with :class:`WorkerGaveUp` once the study holds this many trials refused
            before training per budgeted trial (0: never), recording why on the study.
    """

    def __init__(self, study: optuna.Study, settings: StudySettings, objective: TrialFunction, *,
                 name: str = "worker", runs_dir: Path | None = None, keep: int = DEFAULT_KEEP,
                 poll_seconds: float = IDLE_POLL_SECONDS, stop_event: threading.Event | None = None,
                 requeue: RequeueTrial | None = None,
                 max_consecutive_failures: int = DEFAULT_MAX_CONSECUTIVE_FAILURES,
                 max_infeasible: int = DEFAULT_MAX_INFEASIBLE) -> None:
        self.study = study
        self.settings = settings
        self.objective = objective
        self.name = name
        self.runs_dir = runs_dir
        self.keep = keep
        self.poll_seconds = poll_seconds
        self.stop_event = stop_event or threading.Event()
        self.requeue = requeue or RequeueTrial()
        self._stale_lock = threading.Lock()
        self.max_consecutive_failures = max_consecutive_failures
        self.failures_in_a_row: list[str] = []
        self.max_infeasible = max_infeasible

    @property
    def budget(self) -> int:
        return self.settings.budget

    def _epochs(self, number_below: int | None = None) -> EpochUse | None:
        """Where the study stands against its epoch budget (None without one: no trial scan)."""
        if self.settings.epoch_budget is None:
            return None
        return epoch_use(self.study, self.settings.epochs_per_trial, number_below=number_below)

    def run(self) -> WorkerSummary:
        summary = WorkerSummary()
        with warnings.catch_warnings():
            # We record heartbeats ourselves (ask/tell), which is what these warnings are about.
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed")
            done = threading.Event()
            watcher = self._start_stale_watcher(done)
            try:
                self._loop(summary)
            finally:
                done.set()
                if watcher is not None:
                    watcher.join(timeout=10)  # a daemon: a check waiting out a database restart must not hold us
        summary.stopped = self.stop_event.is_set()
        return summary

    def _start_stale_watcher(self, done: threading.Event) -> threading.Thread | None:
        """Check for dead workers' trials every heartbeat interval, also while this worker trains.

        Checking only between trials left a dead worker's trial RUNNING until a survivor finished its
        own (minutes, on real trainings) although the grace period had long passed.
        """
        storage = optuna_compat.storage_of(self.study)
        if not optuna_compat.heartbeat_enabled(storage):
            return None
        interval = float(storage.get_heartbeat_interval() or 1)  # type: ignore[attr-defined]

        def watch() -> None:
            while not done.wait(interval):
                try:
                    self._fail_stale_trials()
                except Exception:  # noqa: BLE001 - the loop checks too; never kill the worker from here
                    log.debug("stale-trial check failed:\n%s", traceback.format_exc())

        thread = threading.Thread(target=watch, name="hpo-stale-trials", daemon=True)
        thread.start()
        return thread

    def _fail_stale_trials(self) -> None:
        """One check at a time in this worker: the watcher thread and the loop must not both fail (and
        re-queue) the same dead trial, which a retried storage call could otherwise let through."""
        with self._stale_lock:
            fail_stale_trials(self.study, self.requeue)

    def _loop(self, summary: WorkerSummary) -> None:
        while not self.stop_event.is_set():
            self._fail_stale_trials()
            state = progress(self.study)
            epochs = self._epochs()
            if state.finished >= self.budget or (epochs is not None and epochs.trained >= self.settings.epoch_budget):
                break
            self._check_infeasible(state)
            if state.finished + state.running >= self.budget or (
                    epochs is not None and epochs.committed >= self.settings.epoch_budget):
                self.stop_event.wait(self.poll_seconds)  # the last trials are being trained elsewhere
                continue
            self._run_one(summary)

    def _check_infeasible(self, state: StudyProgress) -> None:
        """Stop once the study refused its cap of infeasible models (see :func:`hpo.study.infeasible_cap`)."""
        cap = infeasible_cap(self.budget, self.max_infeasible)
        if cap is None or state.infeasible < cap:
            return
        reason = (f"worker {self.name} stopped: {state.infeasible} trials were refused before training as "
                  f"infeasible (cap {self.max_infeasible} per budgeted trial x budget {self.budget}); "
                  f"{state.finished}/{self.budget} trained. The search space hardly fits the constraints: "
                  "narrow it (e.g. drop the models that break them) or relax the constraints")
        self.study.set_user_attr(attrs.WORKER_STOPPED_PREFIX + self.name,
                                 {"reason": reason, "infeasible": state.infeasible, "cap": cap})
        raise WorkerGaveUp(reason)

    def _is_surplus(self, trial: optuna.Trial) -> bool:
        """Whether the trials numbered below this one already take the whole budget (trials or epochs)."""
        ahead = progress(self.study, number_below=trial.number)
        if ahead.finished + ahead.running >= self.budget:
            return True
        epochs = self._epochs(number_below=trial.number)
        return epochs is not None and epochs.committed >= self.settings.epoch_budget

    def _run_one(self, summary: WorkerSummary) -> None:
        trial = self.study.ask()
        trial.set_user_attr(attrs.WORKER, self.name)
        if self._is_surplus(trial):
            trial.set_user_attr(attrs.SURPLUS, True)
            trial.set_user_attr(attrs.FAIL_REASON, "budget reached by other workers; nothing trained")
            self.study.tell(trial, state=TrialState.FAIL)
            return
        if self._reuse_twin(trial, summary):
            return
        with optuna_compat.heartbeat(trial, self.study):
            state, value, handed_back = self._train(trial)
        try:
            frozen = self.study.tell(trial, value, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another process finished it first (it judged our heartbeat stale): its verdict stands.
            log.warning("[%s] trial %d was already finished elsewhere; result dropped", self.name, trial.number)
            return
        kind = "infeasible" if frozen.user_attrs.get(attrs.UNTRAINED) else state.name.lower()
        summary.trials[kind] = summary.trials.get(kind, 0) + 1
        self._count_failure(trial.number, state, handed_back, frozen)
        if handed_back:
            self.requeue(self.study, frozen)  # handed back: the next worker trains these hyps again
        if log.isEnabledFor(logging.INFO):
            self._log_trial(trial.number, state, value)
        if state == TrialState.PRUNED:
            self._drop_weights(trial.number, frozen.user_attrs.get(attrs.DIR))
        elif state == TrialState.COMPLETE:
            self.apply_keep_policy()

    def _reuse_twin(self, trial: optuna.Trial, summary: WorkerSummary) -> bool:
        """Finish a trial whose hyps a COMPLETE trial already trained with that trial's result, training
        nothing (see :func:`hpo.study.trained_twin`). It counts as a trial of the budget (a sampler that
        keeps re-proposing cannot loop forever), as no epochs of an epoch budget, and owns no weights."""
        params = suggest_params(trial, self.settings.spec)
        twin = trained_twin(self.study, params, number=trial.number)
        if twin is None:
            return False
        for key, value in twin.user_attrs.items():
            if key not in attrs.NOT_REUSED:
                trial.set_user_attr(key, value)
        for key, value in twin.constraints.items():
            trial.set_constraint(key, value)
        trial.set_user_attr(attrs.DUPLICATE_OF, twin.number)
        trial.set_user_attr(attrs.EPOCHS, 0)
        value: float | list[float] = list(twin.values) if len(twin.values) > 1 else twin.values[0]
        try:
            self.study.tell(trial, value)
        except optuna.exceptions.UpdateFinishedTrialError:
            return True
        summary.trials["reused"] = summary.trials.get("reused", 0) + 1
        self.failures_in_a_row.clear()
        log.info("[%s] trial %d re-proposes trial %d's hyps: its result reused, nothing trained", self.name,
                 trial.number, twin.number)
        return True

    def _train(self, trial: optuna.Trial) -> tuple[TrialState, float | list[float] | None, bool]:
        """Train; returns the trial's state, its value, and whether it is handed back for a retry."""
        try:
            return TrialState.COMPLETE, self.objective(trial), False
        except optuna.TrialPruned as exc:
            _note(trial, attrs.PRUNED_REASON, str(exc) or "pruned")
            return TrialState.PRUNED, None, False
        except StopRequested:
            system_attrs = optuna_compat.storage_of(self.study).get_trial_system_attrs(optuna_compat.trial_id(trial))
            exhausted = self.requeue.exhausted(system_attrs)
            if exhausted is not None:
                _note(trial, attrs.RETRIES_EXHAUSTED, exhausted)
            _note(trial, attrs.FAIL_REASON, "worker stopped by a signal; "
                  + self.requeue.verdict(system_attrs, trial.params))
            return TrialState.FAIL, None, True
        except Exception as exc:  # noqa: BLE001 - every failure is recorded, the worker goes on
            _note(trial, attrs.FAIL_REASON, failure_reason(exc))
            log.debug("trial %d failed:\n%s", trial.number, traceback.format_exc())
            return TrialState.FAIL, None, False

    def _count_failure(self, number: int, state: TrialState, handed_back: bool, frozen: Any) -> None:
        """Give up after ``max_consecutive_failures`` failed trials in a row, saying why on the study."""
        if state != TrialState.FAIL:
            self.failures_in_a_row.clear()
            return
        if handed_back:
            return  # stopped, not failed
        self.failures_in_a_row.append(str(frozen.user_attrs.get(attrs.FAIL_REASON, "failed")))
        limit = self.max_consecutive_failures
        if not limit or len(self.failures_in_a_row) < limit:
            return
        reason = (f"worker {self.name} stopped: {limit} trials in a row failed (last: trial {number}, "
                  f"{self.failures_in_a_row[-1]})")
        self.study.set_user_attr(attrs.WORKER_STOPPED_PREFIX + self.name,
                                 {"reason": reason, "failures": limit, "last_trial": number})
        raise WorkerGaveUp(reason)

    def _log_trial(self, number: int, state: TrialState, value: float | list[float] | None) -> None:
        best = best_trial(self.study)
        best_text = f"best {best.values[0]:.5f} (trial {best.number})" if best else "no best yet"
        value_text = ("" if value is None else f" values {[round(v, 5) for v in value]}" if isinstance(value, list)
                      else f" value {value:.5f}")
        log.info("[%s] trial %d %s%s; %s", self.name, number, state.name, value_text, best_text)

    def apply_keep_policy(self) -> None:
        """Delete the weights of complete trials outside the top ``keep`` (pruned ones go at once).

        Run after each complete trial, from one query of the complete trials' values (not whole trials).
        """
        if not self.keep or self.runs_dir is None:
            return
        # by the primary objective; a trial that reused another's result owns no weights, nor a rank
        reused = {number for number, _, twin in complete_values(self.study, attrs.DUPLICATE_OF) if twin is not None}
        complete = [c for c in complete_values(self.study, attrs.DIR) if c[0] not in reused]
        maximize = self.study.directions[0] == optuna.study.StudyDirection.MAXIMIZE
        complete.sort(key=lambda t: t[1], reverse=maximize)
        front = {t.number for t in pareto_front(self.study)} if is_multi_objective(self.study) else set()
        for number, _, directory in complete[self.keep:]:
            if number not in front:  # a multi-objective study keeps its whole Pareto front
                self._drop_weights(number, directory)

    def _drop_weights(self, number: int, directory: str | None) -> None:
        if not self.keep or self.runs_dir is None:
            return
        weights = Path(directory or trial_dir(self.runs_dir, self.settings.spec.name, number)) / "weights"
        if weights.is_dir():
            shutil.rmtree(weights, ignore_errors=True)


def _note(trial: optuna.Trial, key: str, value: Any) -> None:
    """Record why a trial ended, unless another process already finished it (then tell says so)."""
    try:
        trial.set_user_attr(key, value)
    except optuna.exceptions.UpdateFinishedTrialError:
        pass


def fail_stale_trials(study: optuna.Study, callback: Callable[[optuna.Study, Any], None] | None = None) -> None:
    """Fail trials of dead workers, saying why, then run ``callback`` (default: the storage's) on each.

    Optuna's own version fails them silently; the reason has to be written while the trial is still
    RUNNING (finished trials are read-only), hence this small twin of it.
    """
    storage = optuna_compat.storage_of(study)
    if not optuna_compat.heartbeat_enabled(storage):
        return
    on_stale = callback or optuna_compat.stale_trial_callback(storage)
    for trial_id in optuna_compat.stale_trial_ids(storage, study):
        try:
            before = storage.get_trial(trial_id)
            if before.state != TrialState.RUNNING:
                continue
            reason = "worker lost: no heartbeat within the grace period"
            if isinstance(on_stale, RequeueTrial):
                reason += "; " + on_stale.verdict(before.system_attrs, before.params)
                exhausted = on_stale.exhausted(before.system_attrs)
                if exhausted is not None:
                    storage.set_trial_user_attr(trial_id, attrs.RETRIES_EXHAUSTED, exhausted)
            storage.set_trial_user_attr(trial_id, attrs.FAIL_REASON, reason)
            if not storage.set_trial_state_values(trial_id, state=TrialState.FAIL):
                continue
        except optuna.exceptions.UpdateFinishedTrialError:
            continue  # another worker got there first
        if on_stale is not None:
            on_stale(study, storage.get_trial(trial_id))


def failure_reason(exc: BaseException) -> str:
    """One line saying why a trial failed (OOM and NaN spelled out)."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    name = type(exc).__name__
    if "out of memory" in text.lower() or isinstance(exc, MemoryError):
        return f"out of memory: {text or name}"[:500]
    return f"{name}: {text}"[:500] if text else name


def install_signal_handlers(stop_event: threading.Event) -> None:
    """SIGTERM/SIGINT stop the worker after the current batch; a second signal kills it."""

    def handler(signum: int, frame: Any) -> None:
        if stop_event.is_set():
            raise KeyboardInterrupt
        stop_event.set()
        log.warning("signal %d: stopping after the current batch", signum)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def load_worker_study(storage: optuna.storages.BaseStorage, settings: StudySettings,
                      sampler: optuna.samplers.BaseSampler) -> optuna.Study:
    return optuna.load_study(study_name=settings.spec.name, storage=storage, sampler=sampler,
                             pruner=create_pruner(settings.pruner, settings.spec))

