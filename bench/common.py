"""Shared pieces of the benchmark suite: statistics, machine facts, storages, subprocess helpers.

Every figure of the suite is the median of repeated runs with their min and max; every ratio is
taken per repeat between an hpo run and its baseline run of the same repeat (interleaved in time, or
run side by side), and then summarised the same way. Nothing here asserts a time.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sqlite3
import statistics
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable

REPO = Path(__file__).resolve().parents[1]
DEFAULT_WORKDIR = REPO / "bench" / ".work"
DEFAULT_PG = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
PG_ENV = "HPO_BENCH_PG"


# --- statistics --------------------------------------------------------------------------------

def stat(values: Iterable[float | None]) -> dict[str, Any]:
    """Median, min and max of the repeats (None values, from failed repeats, are left out)."""
    vals = [float(v) for v in values if v is not None]
    if not vals:
        return {"median": None, "min": None, "max": None, "n": 0, "values": []}
    return {"median": statistics.median(vals), "min": min(vals), "max": max(vals), "n": len(vals),
            "values": [round(v, 6) for v in vals]}


def fmt_num(value: float | None, digits: int = 3) -> str:
    if value is None:
        return "-"
    if value != 0 and abs(value) < 10 ** -(digits - 1):
        return f"{value:.{digits}g}"
    return f"{value:.{digits}f}" if abs(value) < 1000 else f"{value:,.0f}"


def fmt_stat(s: dict[str, Any] | None, digits: int = 3, unit: str = "", pct: bool = False) -> str:
    """``median [min–max] unit``; a single run shows its value alone."""
    if not s or s.get("median") is None:
        return "-"
    conv: Callable[[float], str]
    if pct:
        conv = lambda v: f"{100 * v:.{max(0, digits - 2)}f}%"  # noqa: E731
    else:
        conv = lambda v: fmt_num(v, digits)  # noqa: E731
    text = conv(s["median"])
    if s["n"] > 1:
        text += f" [{conv(s['min'])}–{conv(s['max'])}]"
    return text + (f" {unit}" if unit else "")


def ratios(hpo: list[float | None], base: list[float | None]) -> list[float | None]:
    """Per-repeat ratios hpo / baseline (a failed repeat on either side gives None)."""
    return [h / b if h is not None and b else None for h, b in zip(hpo, base)]


# --- logging -----------------------------------------------------------------------------------

_T0 = time.perf_counter()


def say(msg: str) -> None:
    """Progress on stderr, with the time since the suite started."""
    elapsed = time.perf_counter() - _T0
    print(f"[bench {int(elapsed) // 60:3d}:{int(elapsed) % 60:02d}] {msg}", file=sys.stderr, flush=True)


# --- machine and versions ----------------------------------------------------------------------

def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gib() -> float | None:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return None


def load_average() -> list[float] | None:
    try:
        return [round(x, 2) for x in os.getloadavg()]
    except OSError:
        return None


def machine_info() -> dict[str, Any]:
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "usable_cores": affinity,
        "memory_gib": _memory_gib(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "gpu": "none used (all training on CPU)",
    }


PACKAGES = ("hpo", "optuna", "ultralytics", "torch", "torchvision", "sqlalchemy", "psycopg", "numpy",
            "iterative-stratification")


def versions(pg_url: str | None) -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = "not installed"
    out["sqlite"] = sqlite3.sqlite_version
    out["postgresql"] = pg_server_version(pg_url) if pg_url else "not used"
    try:
        rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True,
                             text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "hpo"], cwd=REPO,
                               capture_output=True, text=True, timeout=10)
        if rev.returncode == 0:
            out["hpo_commit"] = rev.stdout.strip() + (" (hpo/ modified)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        pass
    return out


# --- storages ----------------------------------------------------------------------------------

def _pg_connect(pg_url: str):  # type: ignore[no-untyped-def]
    import psycopg
    from sqlalchemy.engine import make_url

    u = make_url(pg_url)
    return psycopg.connect(host=u.host or "127.0.0.1", port=u.port or 5432, user=u.username,
                           password=u.password, dbname="postgres", autocommit=True, connect_timeout=5)


def pg_server_version(pg_url: str) -> str:
    try:
        with _pg_connect(pg_url) as conn:
            return str(conn.execute("SHOW server_version").fetchone()[0])
    except Exception as exc:  # noqa: BLE001 - reported, not fatal
        return f"unreachable ({type(exc).__name__})"


def pg_available(pg_url: str) -> str | None:
    """None if the server answers, else why not."""
    try:
        with _pg_connect(pg_url) as conn:
            conn.execute("SELECT 1")
        return None
    except Exception as exc:  # noqa: BLE001
        return f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"


@dataclass
class StorageFactory:
    """Fresh, empty storages: one SQLite file or one PostgreSQL database per measurement."""

    workdir: Path
    pg_url: str = DEFAULT_PG
    created: list[tuple[str, str]] = field(default_factory=list)

    def new(self, kind: str, tag: str) -> str:
        name = f"hpo_bench_{os.getpid()}_{tag}_{uuid.uuid4().hex[:6]}".replace("-", "_").lower()
        if kind == "sqlite":
            path = self.workdir / "db" / f"{name}.db"
            path.parent.mkdir(parents=True, exist_ok=True)
            url = f"sqlite:///{path}"
        elif kind == "postgresql":
            with _pg_connect(self.pg_url) as conn:
                conn.execute(f'CREATE DATABASE "{name}"')
            from sqlalchemy.engine import make_url

            url = make_url(self.pg_url).set(database=name).render_as_string(hide_password=False)
        else:
            raise ValueError(f"unknown storage kind {kind!r}")
        self.created.append((kind, url))
        return url

    def drop(self, url: str) -> None:
        from sqlalchemy.engine import make_url

        u = make_url(url)
        if u.get_backend_name() == "sqlite":
            for suffix in ("", "-wal", "-shm", "-journal"):
                Path(f"{u.database}{suffix}").unlink(missing_ok=True)
        else:
            try:
                with _pg_connect(self.pg_url) as conn:
                    conn.execute(f'DROP DATABASE IF EXISTS "{u.database}" WITH (FORCE)')
            except Exception as exc:  # noqa: BLE001 - leftovers are named hpo_bench_*, easy to find
                say(f"could not drop database {u.database}: {exc}")
        self.created = [(k, x) for k, x in self.created if x != url]

    def drop_all(self) -> None:
        for _, url in list(self.created):
            self.drop(url)


# --- processes ---------------------------------------------------------------------------------

def child_env(threads: int | None = None, **extra: str) -> dict[str, str]:
    """Environment of a benchmark subprocess: offline Ultralytics, the repo importable, N threads."""
    from hpo.offline import configure_offline

    configure_offline()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    env.pop("HPO_STORAGE", None)
    env["PYTHONUNBUFFERED"] = "1"
    if threads is not None:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
            env[var] = str(threads)
        env["CUDA_VISIBLE_DEVICES"] = ""
    env.update(extra)
    return env


def run_measured(cmd: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None,
                 log: Path | None = None, timeout: float | None = None) -> dict[str, Any]:
    """Run ``cmd``: wall time, exit status, stdout, stderr and peak memory of that very process.

    The process is reaped with ``wait4``, whose ``ru_maxrss`` is the child's own peak resident set
    (plus any of its children it waited for), unlike ``RUSAGE_CHILDREN`` which mixes all children.
    ``log`` (if given) receives stdout and stderr.

    The command runs in its own process group: at ``timeout``, or when the benchmark itself is
    interrupted, the whole group is killed, so a worker's own children (data loaders, a trial's
    training) do not live on as orphans that load the machine under the next measurement.
    """
    import signal
    import tempfile

    def kill_group() -> None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=out, stderr=err, start_new_session=True)
        deadline = None if timeout is None else start + timeout
        timed_out = False
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                if pid:
                    break
                if deadline is not None and time.perf_counter() > deadline:
                    kill_group()
                    timed_out = True
                    pid, status, usage = os.wait4(proc.pid, 0)
                    break
                time.sleep(0.02)
        except BaseException:  # Ctrl-C of the benchmark: its children go with it
            kill_group()
            raise
        kill_group()  # children the command left behind when it exited
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(stdout + ("\n" if stdout and stderr else "") + stderr)
    return {"seconds": seconds, "rc": 124 if timed_out else proc.returncode, "stdout": stdout,
            "stderr": stderr, "maxrss_mib": round(usage.ru_maxrss / 1024, 1)}


def tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str) + "\n")
    os.replace(tmp, path)


def fresh_dir(path: Path) -> Path:
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)
    return path


def gpu_sharing(gpu: bool, side_by_side: int, workdir: Path, env: dict[str, str]) -> Any:
    """CUDA MPS around a benchmark that runs several trainings on one GPU (as ``hpo launch`` does when it
    packs workers): without it they time-slice the GPU. Measured on an H200, 12 tiny fine-tunings side
    by side without MPS: 5.4 s per epoch each, SM 99 % busy. A no-op on CPU, for one training at a time,
    or where the control program is missing; ``env`` gets the daemon's pipe and log directories."""
    import contextlib

    from hpo.search import mps

    control = mps.find_control(env)
    if not gpu or side_by_side < 2 or control is None:
        if gpu and side_by_side > 1:
            say(f"no {mps.CONTROL} on PATH: {side_by_side} trainings time-slice the GPU")
        return contextlib.nullcontext()
    env["CUDA_MPS_PIPE_DIRECTORY"] = str(mps.pipe_directory({**os.environ, **env}))  # the clients' way in
    return mps.MpsDaemon(control, env={**os.environ, **env}, log_directory=workdir / "mps", say=say)
