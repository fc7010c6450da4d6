"""bench.common.run_measured: a benchmark's subprocess leaves nothing running behind it."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

from bench.common import run_measured

# A parent that starts a long-lived child, writes the child's pid, and sleeps itself.
PARENT = """
import subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
open(sys.argv[1], "w").write(str(child.pid))
time.sleep(120 if sys.argv[2] == "hang" else 0)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) is not running.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(")")[-1].split()[0] != "Z"


def _wait_gone(pid: int, seconds: float = 10.0) -> bool:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        if not _alive(pid):
            return True
        time.sleep(0.05)
    return False


def test_timeout_kills_the_commands_children_too(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    r = run_measured([sys.executable, "-c", PARENT, str(pid_file), "hang"], timeout=3)
    assert r["rc"] == 124 and r["seconds"] < 60
    assert _wait_gone(int(pid_file.read_text())), "the grandchild outlived the timeout"


def test_children_left_behind_by_an_exiting_command_are_killed(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    r = run_measured([sys.executable, "-c", PARENT, str(pid_file), "exit"], timeout=60)
    assert r["rc"] == 0
    assert _wait_gone(int(pid_file.read_text())), "an orphan of the command kept running"
