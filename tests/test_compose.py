"""docker-compose.yml validates offline and wires the services the way the README says: one worker
per GPU that gets exactly its own GPU, a required database password, no database port on the host
unless docker-compose.db-port.yml is added."""

from __future__ import annotations

import shutil
import subprocess

import pytest
import yaml

from hpo.cli import main
from hpo.search.launch import plan_workers

from conftest import REPO

GPUS = 8


def compose_config(*files: str, password: str | None = "x") -> subprocess.CompletedProcess:
    tool = shutil.which("docker-compose")
    assert tool, "docker-compose (Debian's, 1.29) is needed: `make test` installs it (tools/test-deps.sh)"
    env = {"PATH": "/usr/bin:/bin"}
    if password is not None:
        env["HPO_DB_PASSWORD"] = password
    args = [a for f in files for a in ("-f", f)]
    return subprocess.run([tool, *args, "config"], cwd=REPO, capture_output=True, text=True, env=env, timeout=60)


def resolved(*files: str) -> dict:
    proc = compose_config(*files)
    assert proc.returncode == 0, proc.stderr
    return yaml.safe_load(proc.stdout)


def test_compose_file_validates_with_docker_compose() -> None:
    assert resolved("docker-compose.yml")["services"]
    assert resolved("docker-compose.yml", "docker-compose.db-port.yml")["services"]


def test_password_is_required() -> None:
    for files in (("docker-compose.yml",), ("docker-compose.yml", "docker-compose.db-port.yml")):
        proc = compose_config(*files, password=None)
        assert proc.returncode != 0 and "set HPO_DB_PASSWORD" in proc.stderr, proc.stderr
    raw = (REPO / "docker-compose.yml").read_text()
    assert "change-me" not in raw and "HPO_DB_PASSWORD:-" not in raw
    config = resolved("docker-compose.yml")
    assert config["services"]["postgres"]["environment"]["POSTGRES_PASSWORD"] == "x"
    assert config["services"]["worker-0"]["environment"]["HPO_STORAGE"] == \
        "postgresql+psycopg://hpo:x@postgres:5432/hpo"


def test_no_version_key_and_no_database_port_unless_asked() -> None:
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    assert "version" not in compose
    assert "ports" not in resolved("docker-compose.yml")["services"]["postgres"]
    published = resolved("docker-compose.yml", "docker-compose.db-port.yml")["services"]["postgres"]["ports"]
    assert len(published) == 1
    host_ip, host_port, target = published[0].split(":")  # docker-compose 1.29 renders "ip:port:target/tcp"
    assert host_ip == "127.0.0.1" and host_port == "15432" and target == "5432/tcp"


def test_one_worker_per_gpu_each_with_its_own_device() -> None:
    services = resolved("docker-compose.yml")["services"]
    assert "worker" not in services
    workers = sorted((s for s in services if s.startswith("worker-")), key=lambda s: int(s.split("-")[1]))
    assert workers == [f"worker-{i}" for i in range(GPUS)]
    for i, name in enumerate(workers):
        svc = services[name]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices == [{"driver": "nvidia", "device_ids": [str(i)], "capabilities": ["gpu"]}], devices
        assert svc["profiles"] == [f"gpu{i}"] and svc["restart"] == "on-failure"
        command = svc["command"]
        assert command[command.index("--worker-index") + 1] == str(i)
        assert command[command.index("--device") + 1] == "0"  # the one GPU the container sees
        assert "scale" not in svc and "replicas" not in svc.get("deploy", {})


def test_other_services() -> None:
    services = resolved("docker-compose.yml")["services"]
    assert set(services) == {"postgres", "launch", "dashboard", *(f"worker-{i}" for i in range(GPUS))}
    assert "healthcheck" in services["postgres"]
    assert services["launch"]["restart"] == "no" and services["launch"]["profiles"] == ["launch"]
    assert "profiles" not in services["postgres"] and "profiles" not in services["dashboard"]
    ports = services["dashboard"]["ports"]
    assert len(ports) == 1 and str(ports[0]).startswith("127.0.0.1:8080:8080")  # loopback only


@pytest.mark.parametrize("name", ["launch", "worker-0", "worker-7", "dashboard"])
def test_compose_commands_are_real_cli_options(capsys, name: str) -> None:
    command = resolved("docker-compose.yml")["services"][name]["command"]
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
