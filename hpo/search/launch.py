"""``hpo launch``: start local worker processes on a study and show its progress live.

Each worker is its own process (``python -m hpo worker``): a crashing training takes down one
worker, not the launcher, and on GPUs each process sees exactly one device through
``CUDA_VISIBLE_DEVICES``. The storage URL travels in the environment, never on a command line that
``ps`` would show.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hpo.search.worker import WorkerOptions
from hpo.storage import ENV_VAR
from hpo.study import StudyProgress, StudySettings, best_trial, progress


@dataclass(frozen=True)
class WorkerExit:
    """A worker process that exited with an error, and where its log is."""

    index: int
    returncode: int
    log: Path


@dataclass(frozen=True)
class WorkerPlan:
    index: int
    device: str  # "cpu" or the CUDA index as seen inside the worker ("0")
    env: dict[str, str]


def plan_workers(*, workers: int, gpus: list[str] | None, device: str | None,
                 workers_per_gpu: int = 1) -> list[WorkerPlan]:
    """One worker per GPU (times ``workers_per_gpu``), else ``workers`` CPU workers."""
    if device != "cpu" and gpus is None:
        gpus = visible_gpus()
    if device == "cpu" or not gpus:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
        return [WorkerPlan(i, "cpu", env) for i in range(workers)]
    plans = []
    for gpu in gpus:
        for _ in range(workers_per_gpu):
            env = {"CUDA_VISIBLE_DEVICES": gpu}
            plans.append(WorkerPlan(len(plans), "0", env))
    return plans


def visible_gpus() -> list[str]:
    """Indices of the GPUs this process may use (respecting CUDA_VISIBLE_DEVICES)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip() and g.strip() != "-1"]
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:  # noqa: BLE001 - no usable CUDA means CPU
        return []


class Launcher:
    """Starts the workers, watches the study, stops the workers on Ctrl-C."""

    def __init__(self, *, study: optuna.Study, settings: StudySettings, storage_url: str,
                 plans: list[WorkerPlan], options: WorkerOptions, console: Console | None = None,
                 show_progress: bool = True) -> None:
        self.study = study
        self.settings = settings
        self.storage_url = storage_url
        self.plans = plans
        # Every worker of this machine shares its cores (data loaders are sized from this).
        self.options = dataclasses.replace(options, runs_dir=Path(options.runs_dir).resolve(),
                                           workers_per_machine=len(plans))
        self.runs_dir = self.options.runs_dir
        self.console = console or Console(stderr=True)
        self.show_progress = show_progress and self.console.is_terminal
        self.procs: list[subprocess.Popen[bytes]] = []
        self.started = time.time()
        # The ETA is this launch's own rate: trials finished before it (other launches, other days) do not count.
        self.finished_at_start = progress(study).finished
        self.interrupted = False  # stopped by Ctrl-C / SIGTERM / SIGHUP

    def log_dir(self) -> Path:
        return self.runs_dir / self.settings.spec.name / "logs"

    def start(self) -> None:
        self.log_dir().mkdir(parents=True, exist_ok=True)
        for plan in self.plans:
            env = {**os.environ, **plan.env, ENV_VAR: self.storage_url, "PYTHONUNBUFFERED": "1"}
            cmd = [sys.executable, "-m", "hpo", "worker", "--study", self.settings.spec.name,
                   "--worker-index", str(plan.index), "--device", plan.device, "--verbose",
                   *self.options.to_args()]
            log = open(self.worker_log(plan.index), "ab")
            # Its own session: a terminal's Ctrl-C reaches the launcher only, which forwards exactly one
            # SIGTERM; a worker seeing both would take the second signal for "force" and lose its trial.
            self.procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                               start_new_session=True))
            log.close()

    def worker_log(self, index: int) -> Path:
        return self.log_dir() / f"worker_{index}.log"

    def wait(self) -> list[WorkerExit]:
        """Wait for every worker; returns the workers that exited with an error.

        Ctrl-C, SIGTERM (docker stop, Slurm) or SIGHUP stops the workers cleanly: each hands its trial
        back at once (:attr:`interrupted` is then True); a second Ctrl-C kills them.
        """
        previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
        try:
            if self.show_progress:
                with Live(self.render(), console=self.console, refresh_per_second=1, transient=False) as live:
                    while self._alive():
                        time.sleep(1.0)
                        live.update(self.render())
                    live.update(self.render())
            else:
                while self._alive():
                    time.sleep(1.0)
        except KeyboardInterrupt:
            self.interrupted = True
            self.console.print("stopping workers: their trials go back to the study (Ctrl-C again to force)")
            try:
                self.stop()
            except KeyboardInterrupt:
                self.console.print("forced: workers killed; their trials are retried after the grace period")
                self.kill()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return [WorkerExit(plan.index, p.returncode, self.worker_log(plan.index))
                for plan, p in zip(self.plans, self.procs) if p.returncode not in (0, None)]

    def stop(self, timeout: float = 30.0) -> None:
        """Ask workers to hand their trials back (one SIGTERM each), then make sure they are gone."""
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.time() + timeout
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def kill(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
        for p in self.procs:
            p.wait()

    def _alive(self) -> bool:
        return any(p.poll() is None for p in self.procs)

    def render(self) -> Table:
        state = progress(self.study)
        table = Table(title=f"hpo study {self.settings.spec.name} "
                            f"({self.settings.sampler}, {self.settings.pruner})", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("trials", _progress_text(state, self.settings.budget))
        best = best_trial(self.study)
        if best is not None:
            table.add_row("best", f"{best.values[0]:.5f} (trial {best.number})")
            table.add_row("params", ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
        for label, text in self.running_rows():
            table.add_row(label, text)
        table.add_row("workers", f"{sum(p.poll() is None for p in self.procs)} running "
                                 f"(logs: {self.log_dir()})")
        table.add_row("elapsed / eta", f"{_duration(time.time() - self.started)} / {self._eta(state)}")
        return table

    def running_rows(self, limit: int = 8) -> list[tuple[str, str]]:
        """One row per running trial: its epoch and last objective (from its intermediate values)."""
        running = self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        metric, epochs = self.settings.spec.objective.metric, self.settings.spec.epochs
        rows = []
        for t in running[:limit]:
            step = t.last_step
            text = (f"epoch {step}/{epochs}, {metric} {_fmt(t.intermediate_values[step])}" if step is not None
                    else f"epoch 0/{epochs} (starting)")
            rows.append((f"trial {t.number}", text))
        if len(running) > limit:
            rows.append(("", f"... and {len(running) - limit} more running"))
        return rows

    def _eta(self, state: StudyProgress) -> str:
        """Remaining trials at the rate of this launch (trials finished since it started)."""
        remaining = self.settings.budget - state.finished
        if remaining <= 0:
            return "done"
        done_here = state.finished - self.finished_at_start
        if done_here <= 0:
            return "-"
        return _duration((time.time() - self.started) / done_here * remaining)


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _progress_text(state: StudyProgress, budget: int) -> str:
    refused = f", {state.infeasible} refused as infeasible (not counted)" if state.infeasible else ""
    return (f"{state.finished}/{budget} finished: {state.complete} complete, {state.pruned} pruned; "
            f"{state.running} running, {state.failed} failed{refused}")


def _fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
