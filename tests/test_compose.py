"""docker-compose.yml validates offline and wires the services the way the README says."""

from __future__ import annotations

import shutil
import subprocess

import yaml

from hpo.cli import main
from hpo.search.launch import plan_workers

from conftest import REPO


def test_compose_file_validates_with_docker_compose() -> None:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose (Debian's, 1.29) is needed: .ci/run installs it"
    proc = subprocess.run([tool, "config", "-q"], cwd=REPO, capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "HPO_DB_PASSWORD": "x"})
    assert proc.returncode == 0, proc.stderr


def test_compose_services() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"postgres", "launch", "worker", "dashboard"}
    assert "healthcheck" in services["postgres"] and "pgdata" in compose["volumes"]
    assert services["dashboard"]["ports"] == ["127.0.0.1:8080:8080"]  # loopback only
    assert services["postgres"]["ports"][0].startswith("127.0.0.1:")
    gpu = services["worker"]["deploy"]["resources"]["reservations"]["devices"][0]
    assert gpu["capabilities"] == ["gpu"] and services["worker"]["restart"] == "on-failure"
    assert services["launch"]["restart"] == "no"


def test_compose_commands_are_real_cli_options(capsys) -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    for name in ("launch", "worker", "dashboard"):
        command = compose["services"][name]["command"]
        assert main([command[0], "--help"]) == 0
        help_text = capsys.readouterr().out
        for option in (c for c in command if c.startswith("--")):
            assert option in help_text, f"{name}: {option} is not an option of `hpo {command[0]}`"


def test_one_worker_per_gpu() -> None:
    plans = plan_workers(workers=1, gpus=["0", "1", "3"], device=None, workers_per_gpu=2)
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "0", "1", "1", "3", "3"]
    assert {p.device for p in plans} == {"0"}  # each process sees exactly its own GPU as cuda:0
    cpu = plan_workers(workers=2, gpus=None, device="cpu")
    assert [p.device for p in cpu] == ["cpu", "cpu"] and cpu[0].env["CUDA_VISIBLE_DEVICES"] == ""
