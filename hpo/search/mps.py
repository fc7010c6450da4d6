"""CUDA MPS for ``hpo launch``: several trainings on one GPU run side by side instead of time-slicing.

Without MPS, processes sharing a GPU take turns (time slices), so packing workers barely pays:
measured on one H100, two concurrent trainings took 101 s, under MPS 82 s. ``hpo launch`` therefore
starts the MPS control daemon (``nvidia-cuda-mps-control -d``) when it packs more than one worker on
a GPU and none is running, and shuts it down (``echo quit | nvidia-cuda-mps-control``) when it exits,
but only if it started it: a daemon the administrator (or another launch) runs is left alone.

The daemon and its clients find each other through ``CUDA_MPS_PIPE_DIRECTORY`` (default
``/tmp/nvidia-mps``); the workers inherit the launcher's environment, so they use the daemon the
launcher checked or started. Each host runs its own daemon: a launch on every machine manages its own.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Callable

from hpo.errors import HpoError

CONTROL = "nvidia-cuda-mps-control"
DEFAULT_PIPE_DIRECTORY = "/tmp/nvidia-mps"
MODES = ("auto", "on", "off")
#: Seconds a control command may take: a stale control pipe (a daemon that was killed) can block a
#: client that writes to it, and a launch must not hang on that.
COMMAND_TIMEOUT = 10.0


def pipe_directory(env: dict[str, str] | None = None) -> Path:
    """Where the daemon and its clients meet (``CUDA_MPS_PIPE_DIRECTORY``, else NVIDIA's default)."""
    env = os.environ if env is None else env
    return Path(env.get("CUDA_MPS_PIPE_DIRECTORY") or DEFAULT_PIPE_DIRECTORY)


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise HpoError(f"{mode!r} is not one of {', '.join(MODES)}", field="--mps")
    return mode


def wanted(mode: str, *, gpu_workers: bool, max_per_gpu: int, control: str | None) -> tuple[bool, str]:
    """Whether this launch uses MPS, and why (a phrase for the log line).

    ``auto``: when more than one worker shares a CUDA GPU and the control program is on PATH.
    ``on``: whenever the workers run on CUDA GPUs (an error if the program is missing or they run on
    the CPU). ``off``: never.
    """
    check_mode(mode)
    if mode == "off":
        return False, "off (--mps off)"
    if not gpu_workers:
        if mode == "on":
            raise HpoError("CUDA MPS needs GPU workers; these run on the CPU", field="--mps")
        return False, "off (CPU workers)"
    if control is None:
        if mode == "on":
            raise HpoError(f"{CONTROL} is not on PATH (install the NVIDIA driver utilities, or use --mps off)",
                           field="--mps")
        return False, f"off ({CONTROL} not on PATH)"
    if mode == "auto" and max_per_gpu <= 1:
        return False, "off (one worker per GPU: nothing to share)"
    return True, "on" if mode == "on" else f"on ({max_per_gpu} workers share a GPU)"


@dataclass
class MpsDaemon:
    """The MPS control daemon for one launch: used if running, started if absent, stopped if started here.

    A context manager; ``lines`` collects what was done, for the launch's log. ``log_directory`` is
    where a daemon started here writes its logs (``CUDA_MPS_LOG_DIRECTORY``, unless already set:
    NVIDIA's default, /var/log/nvidia-mps, is often not writable).
    """

    control: str
    env: dict[str, str] = field(default_factory=lambda: dict(os.environ))
    log_directory: Path | None = None
    say: Callable[[str], None] = print
    started: bool = False
    lines: list[str] = field(default_factory=list)

    def _run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run([self.control, *args], input=stdin, env=self.env, capture_output=True, text=True,
                              timeout=COMMAND_TIMEOUT)

    def running(self) -> bool:
        """A daemon answers on the pipe directory. No control pipe there: none runs (and asking
        could block on nothing); otherwise ``get_server_list`` must exit 0."""
        if not (pipe_directory(self.env) / "control").exists():
            return False
        try:
            return self._run([], stdin="get_server_list\n").returncode == 0
        except subprocess.TimeoutExpired:
            raise HpoError(f"the MPS control pipe in {pipe_directory(self.env)} does not answer (a daemon that "
                           "was killed?): remove that folder or start the daemon yourself, or use --mps off",
                           field="--mps") from None

    def _note(self, line: str) -> None:
        self.lines.append(line)
        self.say(line)

    def __enter__(self) -> MpsDaemon:
        where = pipe_directory(self.env)
        if self.running():
            self._note(f"MPS: using the control daemon already running (pipe {where}); left running at exit")
            return self
        if self.log_directory is not None and not self.env.get("CUDA_MPS_LOG_DIRECTORY"):
            self.log_directory.mkdir(parents=True, exist_ok=True)
            self.env["CUDA_MPS_LOG_DIRECTORY"] = str(self.log_directory)
        proc = self._run(["-d"])
        if proc.returncode != 0:
            why = (proc.stderr or proc.stdout).strip().splitlines()
            raise HpoError(f"`{CONTROL} -d` failed with status {proc.returncode}"
                           + (f": {why[0]}" if why else "") + " (or use --mps off)", field="--mps")
        self.started = True
        logs = self.env.get("CUDA_MPS_LOG_DIRECTORY", "/var/log/nvidia-mps")
        self._note(f"MPS: started the control daemon ({CONTROL} -d; pipe {where}, logs {logs}); "
                   "this launch stops it when it exits")
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """``quit`` the daemon if this launch started it (normal end, error, Ctrl-C alike)."""
        if not self.started:
            return
        self.started = False
        try:
            proc = self._run([], stdin="quit\n")
        except subprocess.TimeoutExpired:
            self._note(f"MPS: warning: `echo quit | {CONTROL}` timed out; the daemon may still run")
            return
        if proc.returncode == 0:
            self._note("MPS: stopped the control daemon this launch started")
        else:
            self._note(f"MPS: warning: `echo quit | {CONTROL}` exited with status {proc.returncode}")


def find_control(env: dict[str, str] | None = None) -> str | None:
    """The control program on PATH (the launcher's own PATH unless ``env`` says otherwise)."""
    env = os.environ if env is None else env
    return shutil.which(CONTROL, path=env.get("PATH"))
