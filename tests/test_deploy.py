"""Slurm and Kubernetes deployment files, checked offline: the Slurm array script with bash -n,
ShellCheck and a run against a stand-in `hpo` (arguments, SIGTERM delivered once); the Kubernetes
manifests against the Kubernetes API schemas (kubernetes-validate, strict) and for their wiring."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from hpo.cli import main

from conftest import REPO

SBATCH = REPO / "deploy" / "slurm" / "hpo-array.sbatch"
WRAPPER = REPO / "deploy" / "hpo-worker.sh"
K8S = REPO / "deploy" / "k8s"
K8S_VERSION = "1.33"

# A stand-in for `hpo`: records its pid and arguments, counts the SIGTERMs it gets, exits 0 on one.
STUB = """#!/bin/bash
echo "$$ $*" > "$STUB_DIR/args"
echo "${HPO_STORAGE:-}" > "$STUB_DIR/storage"
trap 'echo TERM >> "$STUB_DIR/signals"; exit 0' TERM
touch "$STUB_DIR/ready"
for _ in $(seq 600); do sleep 0.1; done
exit "${STUB_EXIT:-0}"
"""


def stub_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (bin_dir / "hpo").write_text(STUB)
    (bin_dir / "hpo").chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "STUB_DIR": str(tmp_path), "HOME": str(tmp_path), **extra}


def wait_ready(tmp_path: Path, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 20
    while not (tmp_path / "ready").exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the stand-in hpo never started"
        time.sleep(0.05)


def worker_options(capsys) -> str:
    assert main(["worker", "--help"]) == 0
    return capsys.readouterr().out


# --- Slurm ----------------------------------------------------------------------------------------

def test_sbatch_script_parses_and_passes_shellcheck() -> None:
    assert subprocess.run(["bash", "-n", str(SBATCH)], capture_output=True).returncode == 0
    for script in (SBATCH, WRAPPER):
        proc = subprocess.run(["shellcheck", "--shell=bash", str(script)], capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout


def test_sbatch_directives() -> None:
    lines = SBATCH.read_text().splitlines()
    first_command = next(i for i, line in enumerate(lines[1:], 1) if line.strip() and not line.startswith("#"))
    directives = [line.split(None, 1)[1] for line in lines if line.startswith("#SBATCH")]
    # sbatch stops reading directives at the first command: all of them must come before it.
    assert all(i < first_command for i, line in enumerate(lines) if line.startswith("#SBATCH"))
    assert "--gres=gpu:1" in directives and "--requeue" in directives
    assert any(re.fullmatch(r"--array=\d+-\d+", d) for d in directives)
    assert any(re.fullmatch(r"--signal=B:TERM@\d+", d) for d in directives)


def test_sbatch_runs_one_worker_per_task_and_hands_sigterm_on(tmp_path: Path, capsys) -> None:
    env = stub_env(tmp_path, HPO_STORAGE="postgresql+psycopg://hpo:pw@db/hpo", HPO_STUDY="lr_momentum",
                   SLURM_ARRAY_TASK_ID="3", SLURM_SUBMIT_DIR=str(tmp_path))
    proc = subprocess.Popen(["bash", str(SBATCH), "--keep", "5"], env=env, cwd="/",
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(tmp_path, proc)
    pid, *args = (tmp_path / "args").read_text().split()
    assert int(pid) == proc.pid  # exec: the worker is the task's process, so Slurm's SIGTERM reaches it
    assert args == ["worker", "--study", "lr_momentum", "--device", "0", "--worker-index", "3",
                    "--runs-dir", "runs", "--keep", "5"]
    assert (tmp_path / "storage").read_text().strip() == env["HPO_STORAGE"]  # environment, not argv
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert (tmp_path / "signals").read_text().split() == ["TERM"]
    help_text = worker_options(capsys)
    assert all(a in help_text for a in args if a.startswith("--"))


def test_sbatch_refuses_to_start_without_storage(tmp_path: Path) -> None:
    env = stub_env(tmp_path, HPO_STUDY="lr_momentum", SLURM_SUBMIT_DIR=str(tmp_path))
    proc = subprocess.run(["bash", str(SBATCH)], env=env, capture_output=True, text=True, timeout=20)
    assert proc.returncode != 0 and "set HPO_STORAGE" in proc.stderr
    assert not (tmp_path / "args").exists()


# --- the Kubernetes worker wrapper ------------------------------------------------------------------

def test_wrapper_hands_sigterm_on_and_exits_143(tmp_path: Path) -> None:
    env = stub_env(tmp_path)
    env["HPO_BIN"] = str(tmp_path / "bin" / "hpo")
    proc = subprocess.Popen(["bash", str(WRAPPER), "--study", "s", "--worker-index", "2"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    wait_ready(tmp_path, proc)
    assert (tmp_path / "args").read_text().split()[1:] == ["worker", "--study", "s", "--worker-index", "2"]
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=20)
    assert proc.returncode == 143  # a stopped pod: the Job runs this index again
    assert (tmp_path / "signals").read_text().split() == ["TERM"]


def test_wrapper_keeps_the_worker_status_without_a_signal(tmp_path: Path) -> None:
    env = stub_env(tmp_path, STUB_EXIT="3")
    env["HPO_BIN"] = str(tmp_path / "bin" / "hpo")
    (tmp_path / "bin" / "hpo").write_text(STUB.replace("$(seq 600)", "$(seq 2)"))
    proc = subprocess.run(["bash", str(WRAPPER), "--study", "s"], env=env, capture_output=True, timeout=20)
    assert proc.returncode == 3
    assert not (tmp_path / "signals").exists()


def test_image_ships_the_wrapper() -> None:
    assert "COPY deploy/hpo-worker.sh /usr/local/bin/hpo-worker" in (REPO / "Dockerfile").read_text()
    assert os.access(WRAPPER, os.X_OK)  # COPY keeps the mode: the Job runs it as a command


# --- Kubernetes manifests ---------------------------------------------------------------------------

def manifests() -> list[tuple[str, dict]]:
    found = [(p.name, doc) for p in sorted(K8S.glob("*.yaml")) for doc in yaml.safe_load_all(p.read_text()) if doc]
    assert {doc["kind"] for _, doc in found} >= {"StatefulSet", "Service", "Job", "PersistentVolumeClaim"}
    return found


@pytest.mark.parametrize("name,doc", manifests(), ids=lambda v: v if isinstance(v, str) else v["metadata"]["name"])
def test_manifest_validates_against_the_kubernetes_schema(name: str, doc: dict) -> None:
    import kubernetes_validate

    assert kubernetes_validate.validate(doc, K8S_VERSION, strict=True) == K8S_VERSION


def test_the_validator_really_checks() -> None:
    import kubernetes_validate

    job = next(doc for _, doc in manifests() if doc["metadata"]["name"] == "hpo-workers")
    broken = {**job, "spec": {**job["spec"], "completionMod": "Indexed"}}
    with pytest.raises(kubernetes_validate.ValidationError, match="completionMod"):
        kubernetes_validate.validate(broken, K8S_VERSION, strict=True)


def by_name() -> dict[str, dict]:
    return {doc["metadata"]["name"] + "/" + doc["kind"]: doc for _, doc in manifests()}


def test_workers_job_is_one_pod_per_gpu(capsys) -> None:
    job = by_name()["hpo-workers/Job"]
    spec, pod = job["spec"], job["spec"]["template"]["spec"]
    assert spec["completionMode"] == "Indexed" and spec["completions"] == spec["parallelism"]
    assert pod["restartPolicy"] == "Never"
    assert {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]} \
        in spec["podFailurePolicy"]["rules"]
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == 1
    assert container["command"] == ["hpo-worker"]
    args = container["args"]
    assert args[args.index("--worker-index") + 1] == "$(JOB_COMPLETION_INDEX)"
    assert args[args.index("--device") + 1] == "0"
    env = {e["name"]: e for e in container["env"]}
    assert args[args.index("--study") + 1] == "$(HPO_STUDY)" and "value" in env["HPO_STUDY"]
    assert env["HPO_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "hpo-db", "key": "storage-url"}
    help_text = worker_options(capsys)
    assert all(a in help_text for a in args if a.startswith("--"))


def test_launch_job_creates_the_study(capsys) -> None:
    job = by_name()["hpo-launch/Job"]
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[0] == "launch" and "--create-only" in args
    assert main(["launch", "--help"]) == 0
    help_text = capsys.readouterr().out
    assert all(a in help_text for a in args if a.startswith("--"))
    env = {e["name"]: e for e in container["env"]}
    assert env["HPO_STORAGE"]["valueFrom"]["secretKeyRef"] == {"name": "hpo-db", "key": "storage-url"}


def test_postgres_statefulset_takes_its_password_from_the_secret() -> None:
    named = by_name()
    sts, svc = named["hpo-postgres/StatefulSet"], named["hpo-postgres/Service"]
    assert sts["spec"]["serviceName"] == svc["metadata"]["name"]
    assert svc["spec"]["selector"] == sts["spec"]["template"]["metadata"]["labels"]
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container["env"]}
    assert env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"] == {"name": "hpo-db", "key": "password"}
    assert sts["spec"]["volumeClaimTemplates"][0]["metadata"]["name"] == container["volumeMounts"][0]["name"]


def test_no_password_in_any_manifest_and_claims_exist() -> None:
    text = "".join(p.read_text() for p in K8S.glob("*.yaml"))
    assert not re.search(r"postgresql\+psycopg://[^\s\"']*:[^$\s\"']+@", text), \
        "a literal password in a manifest"
    claims = {doc["metadata"]["name"] for _, doc in manifests() if doc["kind"] == "PersistentVolumeClaim"}
    for _, doc in manifests():
        if doc["kind"] == "Job":
            for volume in doc["spec"]["template"]["spec"]["volumes"]:
                if "persistentVolumeClaim" in volume:
                    assert volume["persistentVolumeClaim"]["claimName"] in claims
