"""`make test` installs the system tools its tests drive (tools/test-deps.sh), quietly and only once;
.ci/run only starts PostgreSQL and calls `make test`, as the README's command does on any machine."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import REPO

SCRIPT = REPO / "tools" / "test-deps.sh"
TOOLS = ("chromium", "docker-compose", "shellcheck")


def sandbox(tmp_path: Path, present: tuple[str, ...], driver: bool) -> dict[str, str]:
    """A PATH with only the basics, the tools in ``present`` and an apt-get that records its calls."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("id", "mktemp", "cat", "rm", "env"):
        (bin_dir / tool).symlink_to(shutil.which(tool))
    for tool in present:
        (bin_dir / tool).write_text("#!/bin/sh\nexit 0\n")
        (bin_dir / tool).chmod(0o755)
    (bin_dir / "apt-get").write_text(f'#!/bin/sh\necho "$DEBIAN_FRONTEND $*" >> {tmp_path}/apt.log\n')
    (bin_dir / "apt-get").chmod(0o755)
    driver_path = tmp_path / "chromedriver"
    if driver:
        driver_path.write_text("#!/bin/sh\n")
        driver_path.chmod(0o755)
    return {"PATH": str(bin_dir), "TEST_DEPS_CHROMEDRIVER": str(driver_path), "HOME": str(tmp_path)}


def run_script(env: dict[str, str]) -> subprocess.CompletedProcess:
    assert os.geteuid() == 0, "the sandbox stands in for apt-get as root"
    return subprocess.run(["/bin/bash", str(SCRIPT)], env=env, capture_output=True, text=True, timeout=60)


def test_silent_and_touches_nothing_when_everything_is_there(tmp_path: Path) -> None:
    proc = run_script(sandbox(tmp_path, TOOLS, driver=True))
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == ""
    assert not (tmp_path / "apt.log").exists()


@pytest.mark.parametrize("absent,driver,packages", [
    (("docker-compose",), True, "docker-compose"),
    (("chromium", "shellcheck"), False, "chromium chromium-driver shellcheck"),
])
def test_installs_exactly_what_is_missing(tmp_path: Path, absent: tuple[str, ...], driver: bool,
                                          packages: str) -> None:
    present = tuple(t for t in TOOLS if t not in absent)
    proc = run_script(sandbox(tmp_path, present, driver=driver))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == f"installing test tools: {packages}\n"
    assert (tmp_path / "apt.log").read_text().splitlines() == [
        " update -qq", f"noninteractive install -y -qq {packages}"]


def test_make_test_runs_it_before_pytest_and_ci_only_calls_make_test() -> None:
    dry = subprocess.run(["make", "-n", "test", "VENV=/nonexistent"], cwd=REPO, capture_output=True,
                         text=True, timeout=60)
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    deps = lines.index("bash tools/test-deps.sh")
    assert any("pytest" in line for line in lines[deps + 1:])
    ci = (REPO / ".ci" / "run").read_text()
    assert "apt-get" not in ci and ci.rstrip().endswith("make test")


def test_every_tool_the_tests_need_is_there() -> None:
    """After `make test`'s step: what test_compose, test_deploy and the dashboard test run for real."""
    for tool in TOOLS:
        assert shutil.which(tool), f"{tool} missing: tools/test-deps.sh installs it"
    assert Path("/usr/bin/chromedriver").is_file()
