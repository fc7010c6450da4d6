"""``hpo launch``: start local worker processes on a study and show its progress live.

Each worker is its own process (``python -m hpo worker``): a crashing training takes down one
worker, not the launcher, and on GPUs each process sees exactly one device through
``CUDA_VISIBLE_DEVICES``. The storage URL travels in the environment, never on a command line that
``ps`` would show.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import optuna
from optuna.trial import TrialState
from rich.console import Console
from rich.live import Live
from rich.table import Table

from hpo.errors import HpoError, shown
from hpo.search.worker import WorkerOptions
from hpo.storage import ENV_VAR
from hpo.study import EpochUse, StudyProgress, StudySettings, best_trial, epoch_use, progress


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
                 workers_per_gpu: int | dict[str, int] = 1) -> list[WorkerPlan]:
    """One worker per GPU (times ``workers_per_gpu``: one number, or one per GPU), else ``workers`` CPU workers."""
    if device != "cpu" and gpus is None:
        gpus = visible_gpus()
    if device == "cpu" or not gpus:
        threads = max(1, (os.cpu_count() or 1) // max(1, workers))
        env = {"OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "CUDA_VISIBLE_DEVICES": ""}
        return [WorkerPlan(i, "cpu", env) for i in range(workers)]
    plans = []
    for gpu in gpus:
        count = workers_per_gpu.get(gpu, 1) if isinstance(workers_per_gpu, dict) else workers_per_gpu
        for _ in range(count):
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


#: Memory one training takes on the GPU, for ``--workers-per-gpu auto`` unless ``--gpu-mem-per-trial``
#: says otherwise: lr_momentum's shape (yolov5m6 at 1280 px, batch 10) peaked at 73 GB for 4 trainings
#: on one H100, about 18 GiB each. Smaller models and images need far less: measure yours (nvidia-smi).
DEFAULT_GPU_MEM_PER_TRIAL_GIB = 18.0
#: Data-loader processes one training needs to keep a GPU fed when the study does not set ``workers``
#: (4 instead of 8 changed an H100 trial by < 15 %): ``auto`` packs no more trainings than the cores feed.
DEFAULT_LOADER_WORKERS = 4


def parse_workers_per_gpu(text: str | int) -> int | None:
    """``--workers-per-gpu``: a positive number, or ``auto`` (returned as None)."""
    if str(text).strip().lower() == "auto":
        return None
    try:
        value = int(str(text).strip())
    except ValueError:
        value = 0
    if value < 1:
        raise HpoError(f"{shown(text)} is neither a positive number nor 'auto'", field="--workers-per-gpu")
    return value


@dataclass(frozen=True)
class GpuFit:
    """How many trainings ``--workers-per-gpu auto`` puts on one GPU, and the figures behind it."""

    gpu: str
    free_gib: float
    by_memory: int  # free memory // memory per trial
    by_cpu: int  # this GPU's share of the cores // loader workers per trial
    workers: int  # min of both, at least 1

    def describe(self, mem_per_trial_gib: float, cpus: int, loader_workers: int) -> str:
        return (f"GPU {self.gpu}: {self.workers} ({self.free_gib:.1f} GiB free / {mem_per_trial_gib:g} GiB per "
                f"trial = {self.by_memory}; {cpus} cores / {loader_workers} loader workers per trial = "
                f"{self.by_cpu} per GPU)")


def fit_workers_per_gpu(free_gib: dict[str, float], *, mem_per_trial_gib: float, cpus: int,
                        loader_workers: int) -> dict[str, GpuFit]:
    """``--workers-per-gpu auto``: per GPU, as many trainings as its free memory holds, no more than the
    cores can feed (the machine's cores split evenly between its GPUs), and at least one."""
    if mem_per_trial_gib <= 0:
        raise HpoError(f"{mem_per_trial_gib:g} must be above 0", field="--gpu-mem-per-trial")
    per_gpu_cores = max(1, cpus // max(1, len(free_gib)))
    fits = {}
    for gpu, free in free_gib.items():
        by_memory = int(max(0.0, free) // mem_per_trial_gib)
        by_cpu = max(1, per_gpu_cores // max(1, loader_workers))
        fits[gpu] = GpuFit(gpu, free, by_memory, by_cpu, max(1, min(by_memory, by_cpu)))
    return fits


Runner = Callable[..., "subprocess.CompletedProcess[str]"]


def query_free_gib(gpu: str, *, run: Runner = subprocess.run, env: dict[str, str] | None = None) -> float:
    """Free memory of one GPU in GiB: ``nvidia-smi`` (``gpu`` as an index or UUID, as in
    CUDA_VISIBLE_DEVICES), else ``torch.cuda.mem_get_info`` in a child process, so the launcher itself
    never holds a CUDA context (hundreds of MB on every GPU for as long as it runs)."""
    env = dict(os.environ if env is None else env)
    problems = []
    smi = shutil.which("nvidia-smi", path=env.get("PATH"))
    if smi is not None:
        try:
            proc = run([smi, "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", gpu],
                       capture_output=True, text=True, timeout=30, env=env)
            if proc.returncode == 0:
                return parse_free_mib(proc.stdout) / 1024
            problems.append(f"nvidia-smi exited with status {proc.returncode}: {(proc.stderr or proc.stdout).strip()[:200]}")
        except (subprocess.TimeoutExpired, ValueError) as exc:
            problems.append(f"nvidia-smi: {exc}")
    else:
        problems.append("nvidia-smi is not on PATH")
    code = "import torch; print(torch.cuda.mem_get_info()[0] / 2**20)"
    try:
        proc = run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                   env={**env, "CUDA_VISIBLE_DEVICES": gpu})
        if proc.returncode == 0:
            return parse_free_mib(proc.stdout) / 1024
        lines = (proc.stderr or proc.stdout).strip().splitlines()
        problems.append(f"torch.cuda.mem_get_info: {lines[-1] if lines else proc.returncode}")
    except (subprocess.TimeoutExpired, ValueError) as exc:
        problems.append(f"torch.cuda.mem_get_info: {exc}")
    raise HpoError(f"cannot read the free memory of GPU {gpu} ({'; '.join(problems)}); give a number instead of "
                   "auto", field="--workers-per-gpu")


def parse_free_mib(text: str) -> float:
    """The one figure (MiB) of ``nvidia-smi --query-gpu=memory.free --format=csv,noheader,nounits``."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    if len(lines) != 1:
        raise ValueError(f"expected one line of free MiB, got {shown(text)}")
    return float(lines[0])


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
        self.epochs_at_start = self._epochs().trained if settings.epoch_budget is not None else 0
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
        with signals_as_interrupt():
            self._wait()
        return [WorkerExit(plan.index, p.returncode, self.worker_log(plan.index))
                for plan, p in zip(self.plans, self.procs) if p.returncode not in (0, None)]

    def _wait(self) -> None:
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
        epochs = self._epochs() if self.settings.epoch_budget is not None else None
        table = Table(title=f"hpo study {self.settings.spec.name} "
                            f"({self.settings.sampler}, {self.settings.pruner})", show_header=False)
        table.add_column(style="bold")
        table.add_column()
        table.add_row("trials", _progress_text(state, self.settings.budget))
        if epochs is not None:
            table.add_row("epochs", f"{epochs.trained}/{self.settings.epoch_budget} trained, "
                                    f"{epochs.reserved} reserved by running trials")
        best = best_trial(self.study)
        if best is not None:
            table.add_row("best", f"{best.values[0]:.5f} (trial {best.number})")
            table.add_row("params", ", ".join(f"{k}={_fmt(v)}" for k, v in best.params.items()))
        for label, text in self.running_rows():
            table.add_row(label, text)
        table.add_row("workers", f"{sum(p.poll() is None for p in self.procs)} running "
                                 f"(logs: {self.log_dir()})")
        table.add_row("elapsed / eta", f"{_duration(time.time() - self.started)} / {self._eta(state, epochs)}")
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

    def _epochs(self) -> EpochUse:
        return epoch_use(self.study, self.settings.epochs_per_trial)

    def _eta(self, state: StudyProgress, epochs: EpochUse | None = None) -> str:
        """Remaining trials (or epochs, with an epoch budget: whichever ends first) at the rate of this
        launch (what it finished since it started)."""
        elapsed = time.time() - self.started
        pending = [(self.settings.budget - state.finished, state.finished - self.finished_at_start)]
        if epochs is not None and self.settings.epoch_budget is not None:
            pending.append((self.settings.epoch_budget - epochs.trained, epochs.trained - self.epochs_at_start))
        if any(remaining <= 0 for remaining, _ in pending):
            return "done"
        etas = [elapsed / done_here * remaining for remaining, done_here in pending if done_here > 0]
        return _duration(min(etas)) if etas else "-"


def _raise_keyboard_interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


@contextmanager
def signals_as_interrupt() -> Iterator[None]:
    """SIGTERM (docker stop, Slurm) and SIGHUP act as Ctrl-C while inside: the launch cleans up
    (workers hand their trials back, an MPS daemon it started is stopped) instead of dying at once."""
    previous = {sig: signal.signal(sig, _raise_keyboard_interrupt) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _progress_text(state: StudyProgress, budget: int) -> str:
    refused = f", {state.infeasible} refused as infeasible (not counted)" if state.infeasible else ""
    return (f"{state.finished}/{budget} finished: {state.complete} complete, {state.pruned} pruned; "
            f"{state.running} running, {state.failed} failed{refused}")


def _fmt(value: object) -> str:
    return f"{value:.5g}" if isinstance(value, float) else str(value)


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"
